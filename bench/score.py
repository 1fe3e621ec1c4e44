"""The one scorer for every library's final codebook, in plain numpy (no library's own metrics).

QE: mean Euclidean distance from each sample to its BMU. TE: share of samples whose first and second BMU are not
adjacent on the rectangular lattice (8-neighbourhood, no wrap). Hit: share of units that are the BMU of at least one
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

def score(x, codebook, labels=None):
    "QE, TE, units hit and label purity of `codebook` (rows, cols, d) on data `x` (n, d)"
    rows, cols, d = codebook.shape
    i1, i2, d1 = two_bmus(x, codebook.reshape(rows * cols, d))
    adjacent = np.maximum(abs(i1 // cols - i2 // cols), abs(i1 % cols - i2 % cols)) == 1
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
    print('score.py: hand-built checks pass')
