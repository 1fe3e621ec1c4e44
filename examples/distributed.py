"""Data-parallel training of a SOM with the fastai learner. Run from the repo root:

    torchrun --nproc_per_node=2 examples/distributed.py

Each process trains on its shard of scikit-learn's digits; hits and sums are added across processes every step, so
every process ends with the same codebook. Only rank 0 prints. The same script runs in one process (`python ...`).
"""
import warnings
from sklearn.datasets import load_digits
from fastsom.all import *

warnings.filterwarnings('ignore', message='.*constant in the training split')  # digits' blank border pixels
df = load_digits(as_frame=True).frame
dls = SomDataLoaders.from_df(df, label_names='target', seed=0)
learn = som_learner(dls, size=(12, 12), topology='hex', seed=0)
with learn.distrib_ctx(), learn.no_bar():  # the table of losses and metrics is printed by rank 0 only
    learn.fit(5)
    main, world = is_main(), rank_world()[1]
if main: print(f"{world} process(es): QE {learn.model.quantization_error(dls.valid.x):.3f} on the validation rows")
