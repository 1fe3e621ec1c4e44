"""Peak memory of training a large map: 200 x 200 units on 100,000 x 16 rows, one epoch (issue: memory bounds).

    python bench/memory.py [rows cols n features epochs]
Prints the data size, the peak resident memory above the baseline after creating the data, and the time.
"""
import resource, sys, time, torch
from fastsom.all import Som

rows, cols, n, d, epochs = (int(a) for a in (sys.argv[1:] or [200, 200, 100_000, 16, 1]))
x = torch.randn(n, d, generator=torch.Generator().manual_seed(0))
som = Som((rows, cols), d)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
start = time.perf_counter()
som.fit(x, epochs=epochs, bs=4096, seed=0)
secs = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
print(f"{rows}x{cols} map ({rows * cols:,} units), {n:,} x {d} rows ({x.numel() * 4 / 2**20:.0f} MiB), {epochs} epoch(s): "
      f"{secs:.1f}s, peak RSS {peak:.0f} MiB, {peak - base:.0f} MiB above the baseline after creating the data "
      f"(a dense {rows * cols:,}^2 kernel would be {(rows * cols) ** 2 * 4 / 2**30:.1f} GiB)")
