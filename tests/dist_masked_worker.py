"Run by tests/test_missing.py under torchrun: masked training of the engine and of a learner in distrib_ctx; rank 0 writes."
import sys, torch
import torch.distributed as dist
from pathlib import Path
from fastsom.all import *
from conftest import holey

out = Path(sys.argv[1])
torch.set_num_threads(1)
assert init_distributed()
x = holey(torch.randn(1001, 5, generator=torch.Generator().manual_seed(0)), .3)  # shards of 501 and 500 rows

def gathered(t):
    ts = [torch.empty_like(t) for _ in range(rank_world()[1])]
    dist.all_gather(ts, t.contiguous())
    return torch.stack(ts)

res = {}
for rule in update_rules:
    som = Som((6, 7), 5, 'hex', update=rule)
    som.fit_distributed(shard(x), epochs=3, bs=60, alpha=(.9, .2) if rule != 'online' else (5., 1.), shuffle=False,
                        missing='mask')
    res[rule] = gathered(som.codebook.data)
dls = SomDataLoaders.from_tensor(x, bs=40, valid_pct=.2, seed=0, shuffle=False, norm=None, missing='mask')
learn = som_learner(dls, size=(6, 7), topology='hex', seed=0)
with learn.distrib_ctx():
    learn.fit(3)
    res['valid'] = [float(v) for v in learn.validate()]
    res['learner'] = gathered(learn.codebook)
if is_main(): torch.save(res, out / 'masked.pt')
dist.destroy_process_group()
