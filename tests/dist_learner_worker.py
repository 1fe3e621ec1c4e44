"Run by tests/test_distributed.py under torchrun: a SomLearner trained inside distrib_ctx; rank 0 writes the results."
import os, sys, torch
import torch.distributed as dist
from pathlib import Path
from fastai.callback.progress import CSVLogger
from fastsom.all import *

out, rank = Path(sys.argv[1]), int(os.environ['RANK'])
torch.set_num_threads(1)
x = torch.randn(1001, 5, generator=torch.Generator().manual_seed(0))
dls = SomDataLoaders.from_tensor(x, bs=40, valid_pct=.2, seed=0, shuffle=False, norm=None)
(out / f'rank{rank}').mkdir()
learn = som_learner(dls, size=(6, 7), topology='hex', seed=0, path=out / f'rank{rank}', cbs=CSVLogger())
with learn.distrib_ctx():
    learn.fit(3)
    valid = learn.validate()
    learn.save('model')
    books = [torch.empty_like(learn.codebook) for _ in range(rank_world()[1])]
    dist.all_gather(books, learn.codebook.contiguous())
    if is_main(): torch.save(dict(books=torch.stack(books), valid=[float(v) for v in valid], n_valid=len(dls.valid.dataset)), out / 'learner.pt')
