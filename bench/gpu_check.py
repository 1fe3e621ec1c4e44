"""The blob benchmark on one CUDA GPU through the same code path as on CPU: codebook agreement and samples/s.

    python bench/gpu_check.py
"""
import time, torch
from fastsom.all import *
from cases import make

N, D, SIZE, EPOCHS, BS = 50_000, 32, (32, 32), 5, 4096  # as bench/cases.py's 'blobs'


def blobs(): return torch.from_numpy(make('blobs')[0])  # the benchmark suite's 50,000 x 32 blobs


def run(device):
    x, som = blobs().to(device), Som(SIZE, D).to(device)
    som.fit(x, epochs=1, bs=BS, sigma=(16., 1.), shuffle=False)  # warm-up (kernels, allocator)
    if device == 'cuda': torch.cuda.synchronize()
    start = time.perf_counter()
    som.fit(x, epochs=EPOCHS, bs=BS, sigma=(16., 1.), shuffle=False)
    if device == 'cuda': torch.cuda.synchronize()
    secs = time.perf_counter() - start
    return som, secs, som.quantization_error(x), som.topographic_error(x)


if __name__ == '__main__':
    if not torch.cuda.is_available(): raise SystemExit("No CUDA device: this check needs a GPU.")
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__}")
    cpu, gpu = run('cpu'), run('cuda')
    diff = (gpu[0].codebook.cpu() - cpu[0].codebook).abs().max().item()
    for name, (som, secs, qe, te) in [('cpu', cpu), ('cuda', gpu)]:
        print(f"{name:5s} {secs:7.3f}s {N * EPOCHS / secs:12,.0f} samples/s  QE {qe:.4f}  TE {te:.4f}")
    print(f"max |codebook(cuda) - codebook(cpu)| = {diff:.2e} (TF32 off: {not torch.backends.cuda.matmul.allow_tf32})")
