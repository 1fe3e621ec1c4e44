__version__ = "0.1.0"

import warnings
# fastai 2.8 calls `torch.jit.script` when it is imported, which torch 2.14 deprecates: a warning fastsom's users cannot
# act on, printed on every import. Only that message is silenced.
warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)
