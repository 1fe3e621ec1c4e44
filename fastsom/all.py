"The public API of fastsom: `from fastsom.all import *`"
from . import grid, functions, som, quality, data, learner, metrics, interp, distributed
from .grid import *
from .functions import *
from .som import *
from .quality import *
from .data import *
from .learner import *
from .metrics import *
from .interp import *
from .distributed import *
from .cli import save_som, load_som
from fastai.learner import load_learner

__all__ = ([n for m in (grid, functions, som, quality, data, learner, metrics, interp, distributed) for n in m.__all__]
           + ['save_som', 'load_som', 'load_learner'])
