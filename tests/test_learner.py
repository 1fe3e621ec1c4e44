"Tests of the fastai integration: `som_learner`, schedules, training more, fastai's calls, save/load and export"
import subprocess, sys, textwrap
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np, pandas as pd, pytest, torch
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.schedule import ParamScheduler, SchedLin, combined_cos
from fastai.callback.training import GradientAccumulation
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.interpret import ClassificationInterpretation, Interpretation
from fastai.learner import AvgMetric, CastToTensor, Recorder
from fastai.metrics import accuracy, error_rate, F1Score, RocAuc, rmse
from fastsom.data import SomDataLoaders
from fastsom.learner import *
from fastsom.som import Som, default_size, defaults, progress, schedules
from conftest import blobs


def quiet(learn):
    "Silence the progress bar and table"
    learn.remove_cb(learn.progress)
    learn.logger = lambda *a: None
    return learn

@pytest.fixture(scope='module')
def tiny():
    return SomDataLoaders.from_tensor(blobs(40, 3), bs=16, valid_pct=.25, seed=0)

@pytest.fixture(scope='module')
def digits():
    from sklearn.datasets import load_digits
    return load_digits().data  # 1797 x 64, pixel values 0..16

A1, S1 = defaults.alpha_end, defaults.sigma_end  # where the default schedule ends

def engine_values(sched, start, end, n):
    "The engine's value at each of `n` mini-batches: `sched(start, end, progress(i, n))`"
    return [schedules[sched](start, end, progress(i, n)) for i in range(n)]

class StopAfter(Callback):
    "Interrupt a fit after epoch `stop`, as a crash would"
    def __init__(self, stop): self.stop = stop
    def after_epoch(self):
        if self.epoch == self.stop: raise CancelFitException()


def test_digits_fit_lowers_qe_and_prints_metrics(digits, capsys):
    dls = SomDataLoaders.from_array(digits, bs=256, valid_pct=.2, seed=0, norm=None)
    learn = som_learner(dls, (8, 8), seed=0)
    qe0 = learn.model.quantization_error(dls.valid.x)
    learn.fit(5)
    out = capsys.readouterr().out
    for col in ('epoch', 'train_loss', 'valid_loss', 'topographic_error', 'units_hit'): assert col in out
    assert learn.recorder.metric_names[1:5] == ['train_loss', 'valid_loss', 'topographic_error', 'units_hit']
    qes = [v[1] for v in learn.recorder.values]
    assert qes[-1] < .87 * qe0 and qes[-1] < qes[0]  # 0.862 with the default schedule (0.846 before it ended at .05, .925)
    assert qes[-1] == pytest.approx(learn.model.quantization_error(dls.valid.x), rel=1e-4)
    te, hit = learn.recorder.values[-1][2:4]
    assert te == pytest.approx(learn.model.topographic_error(dls.valid.x), abs=1e-6)
    assert hit == pytest.approx((learn.model.activation_response(dls.valid.x) > 0).float().mean().item())
    assert not learn.model.codebook.requires_grad and learn.model.codebook.grad is None


# --- schedules: the engine's, per mini-batch ---
@pytest.mark.parametrize('sched', [s for s in schedules if s != 'linear_decay_to_zero'])  # that one ends at sigma 0
@pytest.mark.parametrize('n', [1, 3])
def test_schedule_is_the_engines_per_batch(tiny, sched, n):
    learn = quiet(som_learner(tiny, (4, 10), sched=sched, seed=0))  # sigma 10 / 2 = 5 -> 1
    learn.fit(n)
    N = n * len(tiny.train)
    assert learn.recorder.hps['lr'] == engine_values(sched, .9, A1, N)
    assert learn.recorder.hps['sigma'] == engine_values(sched, 5., S1, N)
    assert all(type(v) is float for k in ('lr', 'sigma') for v in learn.recorder.hps[k])
    ends = {'lr': schedules[sched](.9, A1, 1.), 'sigma': schedules[sched](5., S1, 1.)}  # MiniSom's decays: their own
    assert learn.opt.state_dict()['hypers'][0] == pytest.approx(ends, rel=1e-12)
    assert not learn.cbs.filter(lambda cb: isinstance(cb, ParamScheduler))  # fastai removed the fit's scheduler


def test_one_epoch_fit_ends_at_end_values(digits):
    dls = SomDataLoaders.from_array(digits, valid_pct=0, seed=0, norm=None)
    learn = quiet(som_learner(dls, (20, 20), seed=0))
    learn.fit(1)
    assert learn.opt.hypers[-1] == {'lr': defaults.alpha_end, 'sigma': defaults.sigma_end}
    assert [learn.recorder.hps[k][0] for k in ('lr', 'sigma')] == [defaults.alpha, 10.]
    assert len(set(learn.recorder.hps['sigma'])) == len(dls.train)  # decays within the epoch


def test_constant_schedule_and_hand_built_learner(tiny):
    learn = quiet(som_learner(tiny, (4, 4), sched=None, lr=.5, sigma=3., seed=0))
    learn.fit(2)
    assert set(learn.recorder.hps['lr']) == {.5} and set(learn.recorder.hps['sigma']) == {3.}
    som = Som((3, 5), 3).init_codebook(tiny.train.x, seed=0)
    hand = quiet(SomLearner(tiny, som))  # the default schedule, as `som_learner`
    assert (hand.lr, hand.sigma, hand.schedule) == (defaults.alpha, 2.5, defaults.schedule)
    hand.fit(2)
    assert hand.recorder.hps['sigma'] == engine_values('exp', 2.5, S1, 2 * len(tiny.train))


# --- training more, resuming ---
def test_second_fit_continues_from_end_values(tiny):
    learn = quiet(som_learner(tiny, (4, 6), seed=0))
    learn.fit(3)
    assert (learn.lr, learn.sigma, learn.fit_start) == (A1, S1, (.9, 3.))
    learn.fit(1)  # starts at the end values: sigma is not re-expanded
    assert set(learn.recorder.hps['lr']) == {A1} and set(learn.recorder.hps['sigma']) == {S1}
    learn.fit(2, lr=.5, sigma=2.)
    N = 2 * len(tiny.train)
    assert learn.recorder.hps['lr'] == engine_values('exp', .5, A1, N)
    assert learn.recorder.hps['sigma'] == engine_values('exp', 2., S1, N)
    learn.fit(1, lr=.03, sigma=.5, schedule='linear')  # below the end values: they stay
    assert set(learn.recorder.hps['lr']) == {.03} and set(learn.recorder.hps['sigma']) == {.5}
    w = learn.codebook.clone()
    learn.fit(2, lr=0.)  # alpha 0: the minibatch rule leaves the codebook alone
    assert torch.equal(learn.codebook, w)


def test_fit_more_matches_one_long_fit(digits):
    "Digits 20x20: fit(10)+fit(1) and fit(5)+fit(5) within 5% of fit(10) (measured 19.55, 19.06, 18.77)"
    dls = SomDataLoaders.from_array(digits, valid_pct=0, seed=0, norm=None)
    def qe(*plan):
        learn = quiet(som_learner(dls, (20, 20), seed=0))
        for n in plan: learn.fit(n)
        return learn.model.quantization_error(dls.train.x)
    q10 = qe(10)
    assert q10 == pytest.approx(19.55, rel=.01)
    assert qe(10, 1) == pytest.approx(q10, rel=.05)
    assert qe(5, 5) == pytest.approx(q10, rel=.05)


def test_start_epoch_resume_is_exact(tmp_path):
    x = blobs(500, 3)
    mk = lambda: quiet(som_learner(SomDataLoaders.from_tensor(x, bs=64, valid_pct=0, seed=3, path=tmp_path), (5, 5), seed=0))
    whole = mk()
    whole.fit(5)
    cut = mk()  # the same session: interrupted, then resumed
    cut.fit(5, cbs=StopAfter(1))
    assert cut.sigma < 2.5  # stopped midway
    cut.save('epoch1')
    reached = cut.lr, cut.sigma
    cut.fit(5, start_epoch=2)
    torch.testing.assert_close(cut.codebook, whole.codebook, atol=1e-6, rtol=0)
    fresh = mk()  # a new process: the same learner, the checkpoint, then resume
    fresh.load('epoch1')
    assert (fresh.lr, fresh.sigma) == reached and fresh.fit_start == (.9, 2.5)
    fresh.fit(5, start_epoch=2)
    torch.testing.assert_close(fresh.codebook, whole.codebook, atol=1e-6, rtol=0)
    assert fresh.recorder.hps['sigma'] == engine_values('exp', 2.5, S1, 5 * 8)[2 * 8:]


# --- learner == engine on defaults ---
def frame(x):
    return pd.DataFrame(x.numpy(), columns=[f'f{i}' for i in range(x.shape[1])]).assign(label=np.arange(len(x)) % 3)

@pytest.mark.parametrize('source', ['array', 'frame'])
@pytest.mark.parametrize('topology', ['rect', 'hex'])
def test_same_codebook_as_som_fit_on_defaults(source, topology):
    x = blobs(900, 5) * 3 + 7
    dls = (SomDataLoaders.from_array(x.numpy(), valid_pct=0, seed=4) if source == 'array' else
           SomDataLoaders.from_df(frame(x), label_names='label', valid_pct=0, seed=4))
    learn = quiet(som_learner(dls, (6, 8), topology, seed=4))
    learn.fit(4)
    som = Som((6, 8), 5, topology).fit(dls.train.x, 4, seed=4)  # the data as the loaders encoded it
    torch.testing.assert_close(learn.codebook, som.codebook, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('update', ['batch', 'online'])
def test_same_codebook_as_som_fit_other_rules(update):
    x = blobs(700, 4)
    dls = SomDataLoaders.from_tensor(x, valid_pct=0, seed=5)
    learn = quiet(som_learner(dls, (5, 7), update=update, lr=.5, seed=5))
    learn.fit(3)
    som = Som((5, 7), 4, update=update).fit(dls.train.x, 3, alpha=(.5, A1), seed=5)
    torch.testing.assert_close(learn.codebook, som.codebook, atol=1e-5, rtol=1e-5)


def test_size_none_is_default_size():
    x = blobs(800, 4) * torch.tensor([5., 1., 1., 1.])
    dls = SomDataLoaders.from_tensor(x, valid_pct=.1, seed=0)
    learn = som_learner(dls, topology='hex', seed=0)
    assert learn.model.size == default_size(dls.train.x, 'hex') and learn.model.grid.topology == 'hex'


# --- other schedulers ---
def test_fit_one_cycle_drives_alpha_and_sigma_decays(tiny):
    learn = quiet(som_learner(tiny, (4, 4), seed=0))
    w = learn.codebook.clone()
    learn.fit_one_cycle(4, lr_max=.6)
    N = 4 * len(tiny.train)
    f = combined_cos(.25, .6 / 25, .6, .6 / 1e5)
    np.testing.assert_allclose(learn.recorder.hps['lr'], [f(i / N) for i in range(N)], rtol=1e-6)
    assert learn.recorder.lrs == learn.recorder.hps['lr'] and set(learn.recorder.hps) == {'lr', 'mom', 'sigma'}
    assert learn.recorder.hps['sigma'] == engine_values('exp', 2., S1, N)  # the SOM schedule still owns sigma
    assert not torch.equal(learn.codebook, w)
    assert learn.lr == pytest.approx(f((N - 1) / N)) and type(learn.lr) is float  # the next fit starts where this one ended
    learn.recorder.plot_sched()
    w = learn.codebook.clone()
    learn.fit_one_cycle(2, lr_max=0.)
    assert torch.equal(learn.codebook, w)  # alpha comes from the one-cycle schedule: 0 everywhere
    assert set(learn.recorder.hps['sigma']) == {S1}  # sigma continues at its end value


def test_user_param_scheduler(tiny):
    learn = quiet(som_learner(tiny, (4, 4), sched=None, seed=0))
    learn.fit(2, cbs=ParamScheduler({'sigma': SchedLin(2., .5)}))
    N = 2 * len(tiny.train)
    np.testing.assert_allclose(learn.recorder.hps['sigma'], [2 - 1.5 * i / N for i in range(N)])
    assert set(learn.recorder.hps['lr']) == {.9}  # no SOM schedule: alpha constant
    assert learn.sigma == pytest.approx(2 - 1.5 * (N - 1) / N)


def test_validate_does_not_touch_schedule(tiny):
    learn = quiet(som_learner(tiny, (4, 4), seed=0))
    learn.fit(2)
    hps, last = {k: list(v) for k, v in learn.recorder.hps.items()}, learn.recorder.values[-1]
    assert list(learn.validate()) == pytest.approx(list(last[1:]))  # same QE, TE and units hit as the last epoch
    assert learn.recorder.hps == hps and learn.opt.hypers[0] == {'lr': A1, 'sigma': S1}


# --- fastai tools ---
def test_gradient_accumulation_is_one_bigger_batch():
    x = blobs(120, 3)
    dls = SomDataLoaders.from_tensor(x, bs=20, valid_pct=0, shuffle=False, norm=None)
    learn = quiet(som_learner(dls, (4, 5), sched=None, sigma=2., seed=0))
    som = Som((4, 5), 3)
    som.codebook.data.copy_(learn.codebook)
    learn.fit(2, cbs=GradientAccumulation(60))  # 6 batches of 20 per epoch: one update per 3 batches
    for _ in range(2):
        for xb in x.split(60): som.step(xb, .9, 2.)
    torch.testing.assert_close(learn.codebook, som.codebook, atol=1e-6, rtol=0)
    plain = quiet(som_learner(dls, (4, 5), sched=None, sigma=2., seed=0))
    plain.fit(2)
    assert not torch.allclose(plain.codebook, learn.codebook, atol=1e-3)  # 12 updates are not 4


def test_summary_counts_codebook(tiny):
    s = som_learner(tiny, (3, 7), 'hex', update='online', seed=0).summary()
    assert "a 3 x 7 hex map" in s and "3 x 7 units x 3 features = 63 values" in s
    assert "'online' update rule (no gradients, no optimizer)" in s and "Adam" not in s
    assert "alpha (lr) from 0.9 and sigma from 3.5, 'exp' schedule" in s and "Metrics: topographic_error, units_hit" in s


def test_forward_returns_what_metrics_need():
    "Validation asks the search for 2 units when TopographicError is a metric, 1 otherwise; get_preds always 1"
    shapes = []
    class Spy(Callback):
        def after_pred(self): shapes.append((self.training, tuple(self.pred[0].shape)))
    dls = SomDataLoaders.from_tensor(blobs(100, 3), bs=40, valid_pct=.2, seed=0)
    learn = quiet(som_learner(dls, (3, 3), cbs=Spy(), seed=0))
    learn.fit(1)
    assert shapes == [(True, (40,)), (True, (40,)), (False, (20, 2))]
    assert learn.recorder.values[-1][2] == pytest.approx(learn.model.topographic_error(dls.valid.x))
    shapes.clear(); bmu, dist = learn.get_preds()[0]
    assert shapes == [(False, (20,))] and bmu.shape == dist.shape == (20,)
    learn.metrics = [UnitsHit()]
    shapes.clear(); learn.validate()
    assert shapes == [(False, (20,))]


@pytest.mark.parametrize('item', ['series', 'dict', 'frame'])
def test_predict_one_row(item):
    df = frame(blobs(300, 3) * 10)
    dls = SomDataLoaders.from_df(df, label_names='label', valid_pct=.2, seed=0)
    learn = quiet(som_learner(dls, (4, 6), seed=0))
    learn.fit(2)
    row = df.drop(columns='label').iloc[7]
    arg = dict(series=row, dict=row.to_dict(), frame=df.iloc[[7]])[item]
    (r, c), i, d = learn.predict(arg)
    enc = dls.preprocessor.encode(df.iloc[[7]])
    bmu, dist = learn.model.search(enc)
    assert (r * 6 + c, i) == (bmu.item(), bmu.item()) and (r, c) == tuple(learn.model.bmu_rc(enc)[0].tolist())
    assert type(i) is int and type(d) is float and d == pytest.approx(dist.item())
    dec, *res = learn.predict(arg, with_input=True)
    assert res == [(r, c), i, d]
    np.testing.assert_allclose(dec[['f0', 'f1', 'f2']].values[0], row.values.astype(float), rtol=1e-5)
    with pytest.raises(ValueError, match="predict takes one sample, got 2"): learn.predict(df.iloc[:2])


def test_predict_plain_tensor_dataloaders():
    x = blobs(200, 4)
    dls = DataLoaders.from_dsets(list(x[:160]), list(x[160:]), bs=40)
    learn = quiet(som_learner(dls, (3, 3), seed=0))
    (r, c), i, d = learn.predict(x[5])
    assert i == learn.model.bmu(x[5:6]).item() and (r, c) == divmod(i, 3)


def test_show_results(tiny, capsys):
    learn = quiet(som_learner(tiny, (3, 4), seed=0))
    learn.fit(1)
    df = learn.show_results(max_n=5, shuffle=False, show=False)
    assert list(df.columns) == ['row', 'col', 'unit', 'dist', 'x0', 'x1', 'x2'] and len(df) == 5
    x = tiny.valid.x[:5]
    bmu, dist = learn.model.search(x)
    assert df['unit'].tolist() == bmu[:, 0].tolist() and df['row'].tolist() == (bmu[:, 0] // 4).tolist()
    np.testing.assert_allclose(df['dist'], dist[:, 0], rtol=1e-6)
    np.testing.assert_allclose(df[['x0', 'x1', 'x2']].values, tiny.denormalize(x).numpy(), rtol=1e-5)
    learn.show_results(max_n=2)
    assert 'unit' in capsys.readouterr().out
    empty = quiet(som_learner(SomDataLoaders.from_tensor(blobs(50, 3), valid_pct=0), (2, 2)))
    with pytest.raises(ValueError, match="pass ds_idx=0"): empty.show_results()
    assert len(empty.show_results(ds_idx=0, show=False)) == 9


def test_refused_fastai_tools(tiny):
    learn = quiet(som_learner(tiny, (3, 3), seed=0))
    w = learn.codebook.clone()
    with pytest.raises(TypeError, match="lr_find sweeps the learning rate"): learn.lr_find()
    with pytest.raises(TypeError, match="SomInterpretation.from_learner"): learn.tta()
    for f in (learn.to_fp16, learn.to_bf16, lambda: learn.fit(1, cbs=MixedPrecision()),
              lambda: som_learner(tiny, (3, 3), cbs=MixedPrecision)):
        with pytest.raises(TypeError, match="A SOM trains in float32, on CPU and CUDA"): f()
    with pytest.raises(TypeError, match="ClassificationInterpretation, plot_top_losses"):
        ClassificationInterpretation.from_learner(learn)
    with pytest.raises(TypeError, match="SomInterpretation.from_learner"): Interpretation.from_learner(learn)
    assert torch.equal(learn.codebook, w) and not learn.cbs.filter(lambda cb: isinstance(cb, MixedPrecision))
    assert (learn.lr, learn.sigma) == (.9, 1.5)  # refused calls leave the next fit's start alone
    for f in (learn.freeze, learn.unfreeze, lambda: learn.freeze_to(1), lambda: learn.fine_tune(1)):
        with pytest.raises(TypeError, match='no layers to freeze'): f()
    assert not learn.model.codebook.requires_grad


@pytest.mark.parametrize('metric', [accuracy, error_rate, F1Score(), RocAuc(), rmse, AvgMetric(accuracy)])
def test_class_metrics_refused_at_build(tiny, metric):
    with pytest.raises(ValueError, match=r"BMU|best matching unit \(index\) and the distance.*TopographicError\(\), UnitsHit\(\)"):
        som_learner(tiny, (3, 3), metrics=[TopographicError(), metric])
    learn = som_learner(tiny, (3, 3))
    with pytest.raises(ValueError, match="has no targets"): learn.metrics = metric


def test_bad_fit_arguments(tiny):
    learn = quiet(som_learner(tiny, (3, 3), seed=0))
    w = learn.codebook.clone()
    for kw, err, msg in [(dict(n_epoch=2.5), ValueError, "n_epoch.*2.5"), (dict(n_epoch=0), ValueError, "n_epoch.*0"),
                         (dict(n_epoch=-1), ValueError, "n_epoch.*-1"),
                         (dict(n_epoch=1, lr=float('inf')), ValueError, r"lr \(alpha\) must be a finite number in \[0, 1\], got inf"),
                         (dict(n_epoch=1, lr=1.5), ValueError, r"lr \(alpha\).*\[0, 1\]"),
                         (dict(n_epoch=1, sigma='2'), TypeError, r"sigma must be a number, got '2' \(str\)"),
                         (dict(n_epoch=1, sigma=0.), ValueError, "sigma must be a finite number"),
                         (dict(n_epoch=2, start_epoch=2), ValueError, "leaves nothing of a 2-epoch fit"),
                         (dict(n_epoch=1, schedule='step'), ValueError, "choose one of \\['exp', 'linear', 'cos', 'two_phase', 'inverse_decay_to_zero', ")]:
        with pytest.raises(err, match=msg): learn.fit(**kw)
    assert torch.equal(learn.codebook, w)
    with pytest.raises(ValueError, match="two_phase"): som_learner(tiny, (3, 3), sched='step')
    with pytest.raises(TypeError, match="sigma must be a number"): som_learner(tiny, (3, 3), sigma='2')
    with pytest.raises(ValueError, match=r"lr \(alpha\).*\[0, 1\]"): som_learner(tiny, (3, 3), lr=3.)


def test_reduce_stats_hook(tiny):
    "A subclass sees hits and sums between `batch_stats` and the update (where distributed training all-reduces)"
    seen = []
    class Spy(SomLearner):
        def reduce_stats(self, hits, sums):
            seen.append((hits.sum().item(), sums.shape))
            return hits, sums
    som = Som((3, 3), 3).init_codebook(tiny.train.x, seed=0)
    learn = quiet(Spy(tiny, som))
    learn.fit(2)
    assert len(seen) == 2 * len(tiny.train) and sum(h for h, _ in seen) == 2 * len(tiny.train.x)
    assert all(s == (9, 3) for _, s in seen)
    learn.reduce_stats = lambda hits, sums: (hits * 0, sums * 0)  # no statistics: nothing moves
    w = learn.codebook.clone()
    learn.fit(1, lr=.5, sigma=1.)
    assert torch.equal(learn.codebook, w)


# --- save, load, export, the trained map ---
def test_save_load_round_trip(tiny, tmp_path):
    learn = quiet(som_learner(tiny, (4, 5), seed=0))
    learn.path = tmp_path
    learn.fit(2)
    learn.save('m')
    w, hp = learn.codebook.clone(), dict(learn.opt.hypers[0])
    learn.model.codebook.data.normal_()
    learn.fit(1, lr=.5, sigma=2., schedule='linear')
    learn.load('m')
    assert torch.equal(learn.codebook, w) and learn.opt.hypers[0] == hp and (learn.lr, learn.sigma) == (A1, S1)
    assert not learn.model.codebook.requires_grad
    fresh = quiet(som_learner(tiny, (4, 5), init='random', seed=1))
    fresh.path = tmp_path
    fresh.load('m')
    assert torch.equal(fresh.codebook, w) and fresh.fit_start == (.9, 2.5)


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
        try: learn.fit(1)
        except ValueError as e: print('refused:', e)
        print(type(learn).__name__, learn.lr, learn.sigma, learn.predict(new[3]))
    """)
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "refused: The training DataLoader is empty" in r.stdout
    assert r.stdout.splitlines()[-1] == f"SomLearner {A1} {S1} {learn.predict(new[3])}"
    np.testing.assert_array_equal(np.load(tmp_path / 'bmus.npy'), learn.bmus(new).numpy())
    np.testing.assert_array_equal(np.load(tmp_path / 'cb.npy'), learn.codebook.numpy())
    assert not torch.equal(learn.bmus(new), learn.bmus(new, preprocess=False))  # raw data went through the z-score


def test_codebook_df_bmus_transform():
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
    assert learn.recorder.values[-1][2] == pytest.approx(learn.model.topographic_error(x[240:]))
    assert learn.bmus(x[:5]).shape == (5,)


def test_sigma_larger_than_map_warns(tiny):
    with pytest.warns(UserWarning, match="larger than the map"): som_learner(tiny, (3, 4), sigma=10.)


def test_out_of_range_user_schedule_is_refused_before_training(tiny):
    learn = quiet(som_learner(tiny, (3, 4), seed=0))
    before, start = learn.codebook.clone(), (learn.lr, learn.sigma)
    with pytest.raises(ValueError, match=r"lr \(alpha\) must be a finite number in \[0, 1\], got 1.10.*ParamScheduler of this fit at 13%"):
        learn.fit_one_cycle(1, lr_max=2)
    assert torch.equal(learn.codebook, before) and (learn.lr, learn.sigma) == start  # nothing trained, nothing moved
    learn.fit(1)  # the learner is still usable
    assert not torch.equal(learn.codebook, before)


class Events(Callback):
    "Counts the events it defines; stops running after the first batch when `stop`; adds `late` at epoch 1"
    def __init__(self, stop=False, late=None): self.n, self.stop, self.late = {}, stop, late
    def _count(self, e): self.n[e] = self.n.get(e, 0) + 1
    def before_fit(self): self._count('before_fit')
    def before_batch(self):
        self._count('before_batch')
        if self.stop: self.run = False
    def after_step(self): self._count('after_step')
    def before_epoch(self):
        if self.late is not None and self.epoch == 1: self.learn.add_cb(self.late)


def test_events_reach_the_callbacks_that_define_them(tiny):
    n = len(tiny.train) + len(tiny.valid)  # batches of an epoch, training and validation
    learn = quiet(som_learner(tiny, (3, 4), seed=0))
    late, stop = Events(), Events(stop=True)
    every = Events(late=late)
    learn.fit(3, cbs=[every, stop])
    assert every.n == {'before_fit': 1, 'before_batch': 3 * n, 'after_step': 3 * len(tiny.train)}
    assert late.n == {'before_batch': 2 * n, 'after_step': 2 * len(tiny.train)}  # added at epoch 1: seen from then on
    assert stop.n == {'before_fit': 1, 'before_batch': 1} and stop.run  # `run=False` held until fastai's after_fit reset
    assert late in learn.cbs and every not in learn.cbs and stop not in learn.cbs  # the fit's callbacks are gone


def test_lean_recorder_records_fastai_smooth_loss(tiny):
    class RawLoss(Callback):
        order = 51  # after the Recorder: the batch's loss, as fastai's `AvgSmoothLoss` reads it
        def before_fit(self): self.raw = []
        def after_batch(self):
            if self.training: self.raw.append(self.loss.item())
    learn, raw = quiet(som_learner(tiny, (3, 4), seed=0)), RawLoss()
    assert isinstance(learn.recorder, Recorder) and isinstance(learn.cast_to_tensor, CastToTensor)
    learn.fit(3, cbs=raw)
    ref, v, beta = [], 0., .98  # fastai's smooth loss, by hand in float64: lerp, debiased
    for t, l in enumerate(raw.raw, 1):
        v = beta * v + (1 - beta) * l
        ref.append(v / (1 - beta ** t))
    np.testing.assert_allclose(learn.recorder.losses, ref, rtol=1e-5)  # float32 sums
    # floats, not 0-d tensors: one small allocation kept a batch fragments the heap of a long epoch (bench/big.py)
    assert {type(s) for s in learn.recorder.losses} == {float}
    learn.recorder.plot_loss(with_valid=False); plt.close('all')  # fastai's plot reads them
    assert learn.recorder.lrs == learn.recorder.hps['lr'] and len(ref) == 3 * len(tiny.train)
    assert learn.recorder.values[-1][0] == pytest.approx(ref[-1], rel=1e-5)  # the table's train_loss


def test_subclassed_tensor_batches_reach_the_step_as_plain_tensors():
    from fastai.torch_core import TensorBase
    seen = []
    class Types(Callback):
        order = 10  # after `CastToTensor` (9)
        def before_batch(self): seen.append(type(self.xb[0]))
    x = blobs(40, 3)
    dl = DataLoader(list(TensorBase(x)), bs=10, create_batch=lambda b: TensorBase(torch.stack(b)))
    learn = quiet(som_learner(DataLoaders(dl, dl.new(shuffle=False)), (3, 4), seed=0, cbs=Types()))
    assert {type(b) for b in dl} == {TensorBase}
    learn.fit(1)
    assert set(seen) == {torch.Tensor}


def test_default_callbacks_are_fastai_s_or_none(tiny):
    from fastai.callback.core import TrainEvalCallback
    from fastai.callback.progress import ProgressCallback
    learn = som_learner(tiny, (3, 4), seed=0)
    types = [type(c) for c in learn.cbs]
    assert types == [SomTrainEval, SomRecorder, SomCastToTensor, ProgressCallback]
    assert learn.recorder is learn.cbs[1] and learn.progress is learn.cbs[3] and learn.train_eval is learn.cbs[0]
    assert all(isinstance(c, t) for c, t in zip(learn.cbs, [TrainEvalCallback, Recorder, CastToTensor]))
    assert not SomLearner(tiny, learn.model, default_cbs=False).cbs  # fastai's `default_cbs=False`: none
