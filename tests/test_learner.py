"Tests of the fastai integration: `som_learner`, schedules, metrics, save/load and export"
import math, subprocess, sys, textwrap
import numpy as np, pytest, torch
from fastai.callback.schedule import ParamScheduler, SchedLin, combined_cos
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastsom.data import SomDataLoaders
from fastsom.learner import *
from fastsom.som import Som

def blobs(n=600, d=4, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(k, d, generator=g) * 4
    return c[torch.randint(k, (n,), generator=g)] + torch.randn(n, d, generator=g)

def quiet(learn):
    "Silence the progress bar and table"
    learn.remove_cb(learn.progress)
    learn.logger = lambda *a: None
    return learn

@pytest.fixture(scope='module')
def tiny():
    return SomDataLoaders.from_tensor(blobs(40, 3), bs=16, valid_pct=.25, seed=0)

def per_epoch(learn, key, n_epoch):
    "The value of hyper-parameter `key` at the first batch of each epoch, and check it is constant within epochs"
    v = np.array(learn.recorder.hps[key]).reshape(n_epoch, -1)
    np.testing.assert_array_equal(v.min(1), v.max(1))
    return v[:, 0]

# --- formulas, written out independently of the implementation ---
def f_exp(a, b, p): return a * (b / a) ** p
def f_lin(a, b, p): return a + (b - a) * p
def f_cos(a, b, p): return a + (1 + math.cos(math.pi * (1 - p))) * (b - a) / 2
def f_two(a, mid, b, p, pct=.25):
    return f_exp(a, mid, p / pct) if p < pct else f_exp(mid, b, (p - pct) / (1 - pct))

def expected(sched, key, p, a0=.9, s0=5.):
    if sched == 'two_phase':
        return f_two(a0, a0 / 10, a0 / 100, p) if key == 'lr' else f_two(s0, max(1., s0 / 4), 1., p)
    f = dict(exp=f_exp, linear=f_lin, cos=f_cos)[sched]
    return f(a0, a0 / 9, p) if key == 'lr' else f(s0, 1., p)


def test_digits_fit_lowers_qe_and_prints_metrics(capsys):
    from sklearn.datasets import load_digits
    X = load_digits().data  # 1797 x 64, pixel values 0..16; some columns are constant, so no z-score
    dls = SomDataLoaders.from_array(X, bs=256, seed=0, norm=None)
    learn = som_learner(dls, (8, 8), seed=0)
    qe0 = learn.model.quantization_error(dls.valid.x)
    learn.fit(5)
    out = capsys.readouterr().out
    for col in ('epoch', 'train_loss', 'valid_loss', 'topographic_error', 'units_hit'): assert col in out
    assert learn.recorder.metric_names[1:5] == ['train_loss', 'valid_loss', 'topographic_error', 'units_hit']
    qes = [v[1] for v in learn.recorder.values]
    assert qes[-1] < .85 * qe0 and qes[-1] < qes[0]
    assert qes[-1] == pytest.approx(learn.model.quantization_error(dls.valid.x), rel=1e-4)
    te, hit = learn.recorder.values[-1][2:4]
    assert te == pytest.approx(learn.model.topographic_error(dls.valid.x), abs=1e-6)
    assert 0 <= te <= 1 and .5 < hit <= 1
    assert not learn.model.codebook.requires_grad and learn.model.codebook.grad is None


@pytest.mark.parametrize('sched', ['exp', 'linear', 'cos', 'two_phase'])
@pytest.mark.parametrize('n', [1, 3, 50])
def test_schedule_per_epoch(tiny, sched, n):
    learn = quiet(som_learner(tiny, (4, 10), sched=sched, seed=0))  # default sigma: 10 / 2 = 5
    learn.fit(n)
    for key in ('lr', 'sigma'):
        got = per_epoch(learn, key, n)
        want = [expected(sched, key, e / (n - 1) if n > 1 else 0.) for e in range(n)]
        np.testing.assert_allclose(got, want, rtol=1e-5)
        assert all(type(v) is float for v in learn.recorder.hps[key])
    assert set(learn.opt.state_dict()['hypers'][0]) == {'lr', 'sigma'}


@pytest.mark.parametrize('sched', ['exp', 'linear', 'cos'])
def test_schedule_per_batch(tiny, sched):
    learn = quiet(som_learner(tiny, (4, 10), sched=SomScheduler(sched, per_batch=True), seed=0))
    learn.fit(3)
    N = 3 * len(tiny.train)
    for key in ('lr', 'sigma'):
        want = [expected(sched, key, i / (N - 1)) for i in range(N)]
        np.testing.assert_allclose(learn.recorder.hps[key], want, rtol=1e-5)


def test_fit_lr_and_sigma_arguments(tiny):
    learn = quiet(som_learner(tiny, (4, 4), seed=0, sigma=3., lr=.5))
    learn.fit(2)
    np.testing.assert_allclose(per_epoch(learn, 'lr', 2), [.5, .5 / 9])
    np.testing.assert_allclose(per_epoch(learn, 'sigma', 2), [3., 1.])
    learn.fit(3, lr=.3, sigma=2.)
    np.testing.assert_allclose(per_epoch(learn, 'lr', 3), [.3, .1, .3 / 9])
    np.testing.assert_allclose(per_epoch(learn, 'sigma', 3), [2., 2 ** .5, 1.])
    w = learn.codebook.clone()
    learn.fit(2, lr=0.)  # alpha 0: the minibatch rule leaves the codebook alone
    assert torch.equal(learn.codebook, w)


def test_fit_one_cycle_drives_alpha(tiny):
    learn = quiet(som_learner(tiny, (4, 4), seed=0))
    w = learn.codebook.clone()
    learn.fit_one_cycle(2, lr_max=0.)
    assert torch.equal(learn.codebook, w)  # alpha comes from the one-cycle schedule: 0 everywhere
    learn.fit_one_cycle(4, lr_max=.6)
    N = 4 * len(tiny.train)
    f = combined_cos(.25, .6 / 25, .6, .6 / 1e5)
    np.testing.assert_allclose(learn.recorder.hps['lr'], [f(i / N) for i in range(N)], rtol=1e-6)
    assert learn.recorder.lrs == learn.recorder.hps['lr']
    assert not torch.equal(learn.codebook, w)
    np.testing.assert_allclose(per_epoch(learn, 'sigma', 4), [f_exp(2., 1., e / 3) for e in range(4)])  # SOM schedule still owns sigma
    assert all(type(v) is float for v in learn.opt.hypers[0].values())


def test_user_param_scheduler(tiny):
    learn = quiet(som_learner(tiny, (4, 4), sched=None, seed=0))
    learn.fit(2, cbs=ParamScheduler({'sigma': SchedLin(2., .5)}))
    N = 2 * len(tiny.train)
    np.testing.assert_allclose(learn.recorder.hps['sigma'], [2 - 1.5 * i / N for i in range(N)])
    assert learn.opt.hypers[0]['lr'] == .9  # no SOM schedule: alpha constant


def test_validate_does_not_touch_schedule(tiny):
    learn = quiet(som_learner(tiny, (4, 4), seed=0))
    learn.fit(2)
    hps, last = {k: list(v) for k, v in learn.recorder.hps.items()}, learn.recorder.values[-1]
    assert list(learn.validate()) == pytest.approx(list(last[1:]))  # same QE, TE and units hit as the last epoch
    assert learn.recorder.hps == hps and learn.opt.hypers[0]['sigma'] == 1.


@pytest.mark.parametrize('update', ['minibatch', 'batch', 'online'])
@pytest.mark.parametrize('topology', ['rect', 'hex'])
def test_same_codebook_as_som_fit(update, topology):
    x = blobs(700, 5)
    dls = SomDataLoaders.from_tensor(x, bs=100, valid_pct=0, shuffle=False, norm=None)
    learn = quiet(som_learner(dls, (6, 8), topology, update=update, seed=0))
    som = Som((6, 8), 5, topology, update=update).init_codebook(x, seed=0)
    torch.testing.assert_close(learn.codebook, som.codebook, atol=1e-4, rtol=0)
    som.codebook.data.copy_(learn.codebook)
    learn.fit(4)
    som.fit(x, epochs=4, bs=100, alpha=(.9, .1), decay='exp', shuffle=False, init=None)  # sigma 4 -> 1
    torch.testing.assert_close(learn.codebook, som.codebook, atol=1e-5, rtol=1e-5)


def test_same_codebook_as_som_fit_batches_shuffled_two_phase():
    "Shuffled: `Som.fit_batches` fed the batches of an identical `SomDataLoader`, and the same annealers"
    x = blobs(500, 3)
    mk = lambda: SomDataLoaders.from_tensor(x, bs=64, valid_pct=0, seed=3, norm=None)
    dls, twin = mk(), mk()
    sch = TwoPhaseScheduler()
    learn = quiet(som_learner(dls, (5, 5), sched=sch, seed=0))
    som = Som((5, 5), 3)
    som.codebook.data.copy_(learn.codebook)
    f = sch.annealers(.9, 2.5)
    learn.fit(6)
    def batches(epoch):
        twin.train.set_epoch(epoch)  # what the learner does before each epoch
        yield from (b[0] for b in twin.train)
    som.fit_batches(batches, 6, alpha=f['lr'], sigma=f['sigma'])
    torch.testing.assert_close(learn.codebook, som.codebook, atol=1e-5, rtol=1e-5)


def test_second_fit_repeats_schedule_on_current_codebook():
    x = blobs(400, 3)
    dls = SomDataLoaders.from_tensor(x, bs=50, valid_pct=0, shuffle=False, norm=None)
    learn = quiet(som_learner(dls, (5, 6), seed=0))
    som = Som((5, 6), 3)
    som.codebook.data.copy_(learn.codebook)
    learn.fit(3); learn.fit(2)
    som.fit(x, 3, 50, shuffle=False, init=None); som.fit(x, 2, 50, shuffle=False, init=None)
    torch.testing.assert_close(learn.codebook, som.codebook, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(per_epoch(learn, 'sigma', 2), [3., 1.])  # the recorder holds the last fit


def test_save_load_round_trip(tiny, tmp_path):
    learn = quiet(som_learner(tiny, (4, 5), seed=0))
    learn.path = tmp_path
    learn.fit(2)
    learn.save('m')
    w, hp = learn.codebook.clone(), dict(learn.opt.hypers[0])
    learn.model.codebook.data.normal_()
    learn.opt.set_hypers(lr=.123, sigma=7.)
    learn.load('m')
    assert torch.equal(learn.codebook, w) and learn.opt.hypers[0] == hp
    assert not learn.model.codebook.requires_grad
    fresh = quiet(som_learner(tiny, (4, 5), init='random', seed=1))
    fresh.path = tmp_path
    fresh.load('m')
    assert torch.equal(fresh.codebook, w)


def test_export_load_learner_in_fresh_process(tmp_path):
    x = blobs(500, 4) * 3 + 10
    dls = SomDataLoaders.from_tensor(x, bs=64, seed=0, path=tmp_path)
    learn = quiet(som_learner(dls, (5, 5), 'hex', seed=0))
    learn.fit(2)
    learn.export('som.pkl')
    new = torch.randn(200, 4) * 6 + 10
    np.save(tmp_path / 'new.npy', new.numpy())
    code = textwrap.dedent(f"""
        import numpy as np, torch, warnings
        warnings.simplefilter('ignore')
        from fastai.learner import load_learner
        learn = load_learner({str(tmp_path / 'som.pkl')!r})
        new = torch.from_numpy(np.load({str(tmp_path / 'new.npy')!r}))
        np.save({str(tmp_path / 'bmus.npy')!r}, learn.bmus(new).numpy())
        np.save({str(tmp_path / 'cb.npy')!r}, learn.codebook.numpy())
        print(type(learn).__name__, learn.opt)
    """)
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == 'SomLearner'
    np.testing.assert_array_equal(np.load(tmp_path / 'bmus.npy'), learn.bmus(new).numpy())
    np.testing.assert_array_equal(np.load(tmp_path / 'cb.npy'), learn.codebook.numpy())
    # raw data went through the exported preprocessing (z-score): not the same BMUs as unprocessed input
    assert not torch.equal(learn.bmus(new), learn.bmus(new, preprocess=False))


def test_freeze_unfreeze_fine_tune_raise(tiny):
    learn = som_learner(tiny, (3, 3), seed=0)
    for f in (learn.freeze, learn.unfreeze, lambda: learn.freeze_to(1), lambda: learn.fine_tune(1)):
        with pytest.raises(TypeError, match='no layers to freeze'): f()
    assert not learn.model.codebook.requires_grad


def test_codebook_df_bmus_transform(tmp_path):
    x = blobs(300, 3) * torch.tensor([1., 10., 100.])
    dls = SomDataLoaders.from_tensor(x, names=['a', 'b', 'c'], bs=64, seed=0)
    learn = quiet(som_learner(dls, (3, 4), seed=0))
    learn.fit(2)
    df = learn.codebook_df()
    assert list(df.columns) == ['row', 'col', 'a', 'b', 'c'] and len(df) == 12
    assert df[['row', 'col']].values.tolist() == [[r, c] for r in range(3) for c in range(4)]
    np.testing.assert_allclose(df[['a', 'b', 'c']].values, dls.denormalize(learn.model.weights).numpy(), rtol=1e-5)
    np.testing.assert_allclose(learn.codebook_df(denorm=False)[['a', 'b', 'c']].values, learn.model.weights.numpy())
    assert learn.codebook.shape == (3, 4, 3)
    enc = dls.preprocessor.encode(x[:20])
    assert torch.equal(learn.bmus(x[:20]), learn.model.bmu(enc))
    assert torch.equal(learn.bmus(x[:20].numpy()), learn.model.bmu(enc))
    assert torch.equal(learn.bmus(dls.valid), learn.model.bmu(dls.valid.x))
    rc = learn.transform(x[:20])
    assert torch.equal(rc[:, 0] * 4 + rc[:, 1], learn.bmus(x[:20]))


def test_get_preds_gives_bmus_and_per_sample_qe(tiny):
    learn = quiet(som_learner(tiny, (3, 3), seed=0))
    learn.fit(1)
    (bmu, dist), _, loss = learn.get_preds(with_loss=True)
    assert torch.equal(bmu, learn.model.bmu(tiny.valid.x))
    torch.testing.assert_close(loss, dist)
    assert learn.model.k == 1


@pytest.mark.parametrize('with_target', [True, False])
def test_plain_fastai_dataloaders(with_target):
    "Any DataLoaders of (x, x) or (x,) batches work; features inferred from a batch; float64 is converted"
    x = blobs(300, 4).double()
    class DS(torch.utils.data.Dataset):
        def __init__(self, x): self.x = x
        def __len__(self): return len(self.x)
        def __getitem__(self, i): return (self.x[i], self.x[i]) if with_target else (self.x[i],)
    dls = DataLoaders(DataLoader(DS(x[:240]), bs=60, shuffle=True), DataLoader(DS(x[240:]), bs=60))
    learn = quiet(som_learner(dls, (4, 4), seed=0))
    assert learn.model.n_features == 4
    qe0 = learn.model.quantization_error(x[240:])
    learn.fit(3)
    assert learn.recorder.values[-1][1] < qe0
    assert learn.recorder.values[-1][2] is not None  # topographic error computed
    assert learn.bmus(x[:5]).shape == (5,)


def test_bad_input():
    with pytest.raises(ValueError, match="two_phase"): som_learner(SomDataLoaders.from_tensor(blobs(50, 2)), sched='step')
    with pytest.raises(ValueError, match="pct_order"): TwoPhaseScheduler(pct_order=1.)
    with pytest.raises(ValueError, match="decay='linear'"): SomScheduler(sigma_end=0.).annealers(.9, 2.)


def test_reduce_stats_hook(tiny):
    "A subclass sees hits and sums between `batch_stats` and the update (where distributed training all-reduces)"
    seen = []
    class Spy(SomLearner):
        def reduce_stats(self, hits, sums):
            seen.append((hits.sum().item(), sums.shape))
            return hits, sums
    som = Som((3, 3), 3).init_codebook(tiny.train.x, seed=0)
    learn = quiet(Spy(tiny, som, cbs=SomScheduler()))
    learn.fit(2)
    assert len(seen) == 2 * len(tiny.train) and sum(h for h, _ in seen) == 2 * len(tiny.train.x)
    assert all(s == (9, 3) for _, s in seen)
    # a function assigned to the instance works too, e.g. `learn.reduce_stats = all_reduce_stats`
    learn.reduce_stats = lambda hits, sums: (hits * 0, sums * 0)  # no statistics: nothing moves
    w = learn.codebook.clone()
    learn.fit(1)
    assert torch.equal(learn.codebook, w)


def test_start_epoch_resumes_schedule(tiny):
    learn = quiet(som_learner(tiny, (4, 6), seed=0))  # sigma 3 -> 1
    learn.fit(5, start_epoch=2)
    np.testing.assert_allclose(per_epoch(learn, 'sigma', 3), [f_exp(3., 1., e / 4) for e in (2, 3, 4)])
    np.testing.assert_allclose(per_epoch(learn, 'lr', 3), [f_exp(.9, .1, e / 4) for e in (2, 3, 4)])


def test_sigma_larger_than_map_warns(tiny):
    with pytest.warns(UserWarning, match="larger than the map"): som_learner(tiny, (3, 4), sigma=10.)
