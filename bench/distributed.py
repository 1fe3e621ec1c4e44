"""Throughput of data-parallel training: 1 process x 2 threads against 2 processes x 1 thread (gloo, CPU).

    python bench/distributed.py            # runs both and prints a table
Inside torchrun (the 2-process case) it trains on its shard and rank 0 prints samples/s.
"""
import json, os, socket, subprocess, sys, time, torch
from fastsom.all import *
from cases import make

N, D, SIZE, EPOCHS, BS = 50_000, 32, (32, 32), 5, 4096  # as bench/cases.py's 'blobs'


def blobs(): return torch.from_numpy(make('blobs')[0])  # the benchmark suite's 50,000 x 32 blobs


def train(threads):
    torch.set_num_threads(threads)
    init_distributed()
    rank, world = rank_world()
    x, som = blobs(), Som(SIZE, D)
    payload = som.n_units * (D + 1) * 4
    start = time.perf_counter()
    som.fit_distributed(shard(x), epochs=EPOCHS, bs=BS // world, sigma=(16., 1.), seed=0, shuffle=False)
    secs = time.perf_counter() - start
    if is_main():
        print(json.dumps(dict(world=world, threads=threads, secs=round(secs, 3), samples_per_s=round(N * EPOCHS / secs),
                              qe=round(som.quantization_error(x), 4), te=round(som.topographic_error(x), 4),
                              allreduce_bytes_per_step=payload if world > 1 else 0, steps=EPOCHS * -(-N // BS))))


def launch(nproc, threads):
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    cmd = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={nproc}', '--master_addr=127.0.0.1',
           f'--master_port={port}', __file__, str(threads)] if nproc > 1 else [sys.executable, __file__, str(threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


if __name__ == '__main__':
    if len(sys.argv) > 1: train(int(sys.argv[1]))
    else:
        print(f"{N:,} x {D} blobs, {SIZE[0]}x{SIZE[1]} map, {EPOCHS} epochs, global batch {BS}; load {os.getloadavg()[0]:.2f}")
        print("| processes x threads | seconds | samples/s | QE | TE | all_reduce bytes/step |\n|---|---|---|---|---|---|")
        for nproc, threads in [(1, 2), (2, 1)]:
            runs = sorted((launch(nproc, threads) for _ in range(3)), key=lambda r: r['secs'])
            r = runs[1]
            print(f"| {nproc} x {threads} | {r['secs']} | {r['samples_per_s']:,} | {r['qe']} | {r['te']} | {r['allreduce_bytes_per_step']:,} |")
