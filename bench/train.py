"""Train one library on one case in this process and save its final codebook (rows, cols, D) and fit time.

    python bench/train.py LIB CASE SEED OUT_PREFIX

Each library is trained its documented way, with PCA initialisation where it has one, on the same data, map
size and epochs. The sigma start is half the longer side of the map wherever a library does not pick it
itself, and it decays to about 1. The timer covers initialisation and training, after a warm-up fit on 500 rows.
Called by run.py with OMP/MKL/OpenBLAS threads fixed in the environment.
"""
import json, os, sys, time
import numpy as np
from cases import CASES, load

def fastsom(x, rows, cols, epochs, seed):
    import torch
    from fastsom.som import Som
    som = Som((rows, cols), x.shape[1])  # defaults: mini-batch rule, bs default_bs(n), alpha .9 -> .1, sigma max(size)/2 -> 1, exp decay
    som.fit(torch.from_numpy(x), epochs=epochs, seed=seed, init='pca')
    return som.codebook.numpy()

def fastsom_learner(x, rows, cols, epochs, seed):
    import torch
    from fastsom.learner import som_learner
    from fastsom.data import SomDataLoaders
    from fastsom.som import default_bs
    dls = SomDataLoaders.from_tensor(torch.from_numpy(x), bs=default_bs(len(x)), valid_pct=0, norm=None, seed=seed)
    learn = som_learner(dls, size=(rows, cols), seed=seed)  # defaults: PCA init, alpha .9, sigma max(size)/2, exp schedule
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    return learn.model.codebook.detach().numpy()

def _minisom(x, rows, cols, seed):
    from minisom import MiniSom
    som = MiniSom(rows, cols, x.shape[1], sigma=max(rows, cols) / 2, random_seed=seed,  # lr 0.5, asymptotic decay (defaults)
                  sigma_decay_function='inverse_decay_to_one')
    som.pca_weights_init(x)
    return som

def minisom_online(x, rows, cols, epochs, seed):
    som = _minisom(x, rows, cols, seed)
    som.train(x, epochs * len(x), random_order=True)  # one sample per update
    return som.get_weights()

def minisom_batch(x, rows, cols, epochs, seed):
    som = _minisom(x, rows, cols, seed)
    som.train_batch_offline(x, epochs)  # Kohonen batch rule, one update per pass over the data
    return som.get_weights()

def xpysom(x, rows, cols, epochs, seed):
    from xpysom import XPySom
    som = XPySom(rows, cols, x.shape[1], xp=np, random_seed=seed)  # defaults: sigma min(size)/2 -> 1, lr .5 -> .01, exp decay
    som.pca_weights_init(x)
    som.train(x, epochs)  # batch SOM
    return np.asarray(som.get_weights())

def torchsom(x, rows, cols, epochs, seed):
    import torch
    from torchsom import SOM
    t = torch.from_numpy(x)
    som = SOM(x=rows, y=cols, num_features=x.shape[1], epochs=epochs, batch_size=16, learning_rate=0.95,  # its quick start
              sigma=max(rows, cols) / 2, sigma_decay_function='sig_inverse_decay_to_one', initialization_mode='pca',
              search_backend='torch', device='cpu', random_seed=seed)
    som.initialize_weights(t, mode='pca')
    som.fit(t, verbose=False)
    return som.weights.detach().numpy()

def somoclu(x, rows, cols, epochs, seed):
    import somoclu
    som = somoclu.Somoclu(cols, rows, initialization='pca')  # defaults: radius min(size)/2 -> 1, scale .1 -> .01, linear
    som.train(np.ascontiguousarray(x), epochs=epochs)  # batch SOM in C++/OpenMP
    return som.codebook.reshape(rows, cols, -1)  # already (n_rows, n_columns, dim)

def _quicksom(module, x, rows, cols, epochs, seed):
    import importlib, torch
    np.random.seed(seed); torch.manual_seed(seed)  # its init is np.random.randn, its loader shuffles with torch's RNG
    som = importlib.import_module(module).SOM(rows, cols, x.shape[1], n_epoch=epochs)  # defaults: alpha None, i.e.
    # units / batches per epoch; sigma sqrt(units)/2; both times (1 - samples seen / total), linear to 0; random
    # normal init (no PCA); no wrap; fit's batch_size 20 (its README example and quicksom_fit use 100, which makes
    # alpha 5x larger and diverges on digits and wine). num_workers 0, not os.cpu_count(), so it keeps to the thread
    # count (the data is in memory); no log file in the cwd. fit then computes its U-matrix and all-to-all distances
    som.fit(x, logfile=None, num_workers=0)
    return np.asarray(som.centroids).reshape(rows, cols, -1)  # locations (i, j) for i < m for j < n: row-major

def quicksom(x, rows, cols, epochs, seed): return _quicksom('quicksom.som', x, rows, cols, epochs, seed)
def quicksom_jax(x, rows, cols, epochs, seed): return _quicksom('quicksom.somax', x, rows, cols, epochs, seed)

def simpsom(x, rows, cols, epochs, seed):
    import simpsom as sps
    net = sps.SOMNet(rows, cols, x, random_seed=seed)  # defaults: PCA init, no PBC, euclidean; hexagonal lattice only
    # train's defaults: the batch algorithm (one update per pass), sigma max(size)/2 -> 1, exponential; no learning
    # rate in batch mode. Its default epochs (10 x samples) are meant for online training; the case's are used.
    # batch_size only splits the sums over samples (same result); its default, the whole data at once, builds
    # (n, units, D) float64 arrays, which would not fit in memory on blobs and large
    net.train(epochs=epochs, batch_size=max(1, 2 ** 24 // (rows * cols * x.shape[1])))
    w = np.array([n.weights for n in net.node_list])  # nodes for x < width for y < height: column-major
    return w.reshape(cols, rows, -1).transpose(1, 0, 2)

LATTICE = {'simpsom': 'hex'}  # odd rows shifted right by half a unit; the others are rectangular

LIBS = {'fastsom': fastsom, 'fastsom-learner': fastsom_learner, 'minisom-online': minisom_online,
        'minisom-batch': minisom_batch, 'xpysom': xpysom, 'torchsom': torchsom, 'somoclu': somoclu,
        'quicksom': quicksom, 'quicksom-jax': quicksom_jax, 'simpsom': simpsom}

if __name__ == '__main__':
    lib, case, seed, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    import torch; torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))
    rows, cols, epochs, _ = CASES[case]
    x = load(case)
    LIBS[lib](x[:500], rows, cols, 1, seed)  # warm-up, so one-time start-up costs (imports, thread pools) are not timed
    t0 = time.perf_counter()
    cb = LIBS[lib](x, rows, cols, epochs, seed)
    fit_s = time.perf_counter() - t0
    assert cb.shape == (rows, cols, x.shape[1]), cb.shape
    np.save(out + '.npy', np.asarray(cb, dtype=np.float32))
    json.dump({'fit_s': fit_s, 'threads': torch.get_num_threads(), 'lattice': LATTICE.get(lib, 'rect')}, open(out + '.json', 'w'))
