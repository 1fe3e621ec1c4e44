"The public API of fastsom: `from fastsom.all import *`"
from . import (checks, grid, functions, som, quality, preprocess, modelfile, data, learner, metrics, plot, interp,
               distributed, distributed_learner)
from .checks import *
from .grid import *
from .functions import *
from .som import *
from .quality import *
from .preprocess import *
from .modelfile import *
from .data import *
from .learner import *
from .metrics import *
from .plot import *
from .interp import *
from .distributed import *
from .distributed_learner import *
from fastai.learner import load_learner

_modules = (checks, grid, functions, som, quality, preprocess, modelfile, data, learner, metrics, plot, interp,
            distributed, distributed_learner)
__all__ = [n for m in _modules for n in m.__all__] + ['load_learner']
