"Run by tests/test_distributed.py under torchrun: data-parallel training, results gathered and written by rank 0 only."
import sys, torch
import torch.distributed as dist
from pathlib import Path
from fastsom.all import *

out = Path(sys.argv[1])
torch.set_num_threads(1)
assert init_distributed()
rank, world = rank_world()
x = torch.randn(1001, 5, generator=torch.Generator().manual_seed(0))  # 1001 rows: shards of 501 and 500
for rule in update_rules:
    som = Som((6, 7), 5, 'hex', update=rule)
    som.fit_distributed(shard(x), epochs=3, bs=60, alpha=(.9, .2) if rule != 'online' else (5., 1.), shuffle=False)
    books = [torch.empty_like(som.codebook) for _ in range(world)]
    dist.all_gather(books, som.codebook.data.contiguous())
    if is_main(): torch.save(torch.stack(books), out / f'{rule}.pt')
# resume: a run interrupted after epoch 1 and resumed from its checkpoint ends as the uninterrupted run
ckpt = {}
full = Som((6, 7), 5).fit_distributed(shard(x), epochs=4, bs=50, seed=3,
                                      after_epoch=lambda som, e: ckpt.update({e: som.codebook.detach().clone()}))
resumed = Som((6, 7), 5)
resumed.codebook.data.copy_(ckpt[1])
resumed.fit_distributed(shard(x), epochs=4, bs=50, seed=3, init=None, start_epoch=2)
if is_main(): torch.save(dict(full=full.codebook.data, resumed=resumed.codebook.data, first=ckpt[0]), out / 'resume.pt')
dist.destroy_process_group()
