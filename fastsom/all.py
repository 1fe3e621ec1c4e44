"The public API of fastsom: `from fastsom.all import *`"
from .grid import *
from .functions import *
from .som import *
from .distributed import *
from .data import *
