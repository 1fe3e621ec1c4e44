"""The one scorer for every library's final codebook, in plain numpy (no library's own metrics).

QE: mean Euclidean distance from each sample to its BMU. TE: share of samples whose first and second BMU are not
adjacent on the rectangular lattice (8-neighbourhood, no wrap), or with lattice='hex' on a hexagonal one with odd rows
shifted right by half a unit (SimpSOM's; 6-neighbourhood, no wrap). Hit: share of units that are the BMU of at least one
sample. Purity: share of samples whose label equals the majority label of their BMU's samples.
"""
import numpy as np

def two_bmus(x, w, chunk=4096):
    "Indices of the two nearest rows of `w` (m, d) for each row of `x` (n, d), and the distance to the first; float64"
    x, w = x.astype(np.float64), w.astype(np.float64)
    w2 = (w * w).sum(1)
    i1, i2, d1 = [], [], []
    for s in range(0, len(x), chunk):
        xc = x[s:s + chunk]
        d = w2 - 2 * xc @ w.T  # + |x|^2, which does not change the ranking
        top = np.argpartition(d, 1, axis=1)[:, :2]
        first = np.take_along_axis(d, top, 1).argmin(1)
        r = np.arange(len(xc))
        i1.append(top[r, first]); i2.append(top[r, 1 - first])
        d1.append(np.sqrt(np.maximum(d[r, top[r, first]] + (xc * xc).sum(1), 0)))
    return np.concatenate(i1), np.concatenate(i2), np.concatenate(d1)

def score(x, codebook, labels=None, lattice='rect'):
    "QE, TE, units hit and label purity of `codebook` (rows, cols, d) on data `x` (n, d); `lattice` 'rect' or 'hex'"
    rows, cols, d = codebook.shape
    i1, i2, d1 = two_bmus(x, codebook.reshape(rows * cols, d))
    r1, dr, dc = i1 // cols, i2 // cols - i1 // cols, i2 % cols - i1 % cols
    if lattice == 'rect': adjacent = np.maximum(abs(dr), abs(dc)) == 1
    elif lattice == 'hex':  # same row: c +- 1; row above or below: c - 1 or c from an even row, c or c + 1 from an odd one
        adjacent = ((dr == 0) & (abs(dc) == 1)) | ((abs(dr) == 1) & (dc - r1 % 2 >= -1) & (dc - r1 % 2 <= 0))
    else: raise ValueError(f'lattice {lattice!r}: rect or hex')
    res = dict(qe=d1.mean(), te=1 - adjacent.mean(), hit=len(np.unique(i1)) / (rows * cols))
    if labels is not None:
        k = labels.max() + 1
        counts = np.bincount(i1 * k + labels, minlength=rows * cols * k).reshape(rows * cols, k)
        res['purity'] = counts.max(1).sum() / len(x)
    return {n: float(v) for n, v in res.items()}

if __name__ == '__main__':  # checks on hand-built codebooks with known scores
    cb = np.array([[[0.], [1.], [2.]]])  # 1 x 3 map on a line
    x = np.array([[0.], [1.], [2.], [1.9]])
    s = score(x, cb, labels=np.array([0, 1, 1, 1]))
    assert np.isclose(s['qe'], .1 / 4) and s['te'] == 0 and s['hit'] == 1 and s['purity'] == 1, s
    s = score(np.array([[0.], [.1], [.6]]), np.array([[[0.], [2.], [1.]]]), labels=np.array([0, 1, 1]))  # BMUs 0, 0, 2
    assert s['te'] == 1 and np.isclose(s['qe'], .5 / 3) and s['hit'] == 2 / 3 and s['purity'] == 2 / 3, s
    g = np.stack(np.meshgrid(np.arange(4.), np.arange(5.), indexing='ij'), -1)  # 4 x 5 map, unit (r, c) at (r, c)
    x = g.reshape(-1, 2) + [.3, .3]  # 2nd BMU is the diagonal or a side neighbour: adjacent
    bad = g.transpose(1, 0, 2).reshape(4, 5, 2)  # a (cols, rows, d) buffer read as (rows, cols, d)
    assert score(x, g)['te'] == 0 and score(x, bad)['te'] > .2  # the wrong layout shows
    cb = np.array([[[0.], [5.]], [[6.], [1.]]])  # 2 x 2 hex map: unit (0, 0) touches (0, 1) and (1, 0), not (1, 1)
    x = np.array([[.1], [.9]])  # BMUs (0, 0) then (1, 1), and (1, 1) then (0, 0): diagonal on a square lattice
    assert score(x, cb)['te'] == 0 and score(x, cb, lattice='hex')['te'] == 1
    h = np.stack(np.meshgrid(np.arange(5.), np.arange(6.), indexing='ij'), -1)  # 5 x 6 hex map at its positions
    h = np.stack([h[..., 1] + .5 * (h[..., 0] % 2), h[..., 0] * np.sqrt(3) / 2], -1)
    rng = np.random.default_rng(0)
    x = h.reshape(-1, 2)[rng.integers(30, size=500)] + rng.normal(0, .2, (500, 2))
    assert score(x, h, lattice='hex')['te'] == 0  # an ordered hex map: every 2nd BMU is one of the 6 neighbours
    print('score.py: hand-built checks pass')
