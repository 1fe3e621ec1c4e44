"Helpers shared by the test files: hand-built maps, small data, a free port for torchrun."
import socket
import torch
from fastsom.som import Som


def som_with(codebook, topology='rect', toroidal=False, **kw)->Som:
    "A `Som` whose codebook is the (rows, cols) or (rows, cols, D) tensor `codebook`; `kw` goes to `Som`"
    codebook = torch.as_tensor(codebook, dtype=torch.float32)
    if codebook.ndim == 2: codebook = codebook[..., None]
    rows, cols, d = codebook.shape
    som = Som((rows, cols), d, topology, toroidal, **kw)
    som.codebook.copy_(codebook)
    return som


def blobs(n=600, d=4, k=3, seed=0):
    "Tiny data: `k` Gaussian blobs of `n` rows in `d` dimensions"
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(k, d, generator=g) * 4
    return c[torch.randint(k, (n,), generator=g)] + torch.randn(n, d, generator=g)


def free_port()->int:
    "A TCP port free on the loopback interface now"
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def holey(x, p=.3, seed=0):
    "`x` with a share `p` of its entries set to NaN at random (seeded); a row left with no value keeps its first entry"
    x = torch.as_tensor(x, dtype=torch.float32).clone()
    holes = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)) < p
    holes[holes.all(1), 0] = False
    return x.masked_fill_(holes, float('nan'))
