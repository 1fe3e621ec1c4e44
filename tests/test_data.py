"Tests of fastsom.data: encoding round trips, split statistics, labels, bad input, streaming, export."
import inspect, pickle, re, subprocess, sys, textwrap, warnings
import numpy as np, pandas as pd, pytest, torch
from torch import nn
from fastsom.data import SomDataLoaders, SomPreprocessor, SomDataLoader, NpyRows
from fastsom.som import defaults, default_bs, minibatches
from fastsom.checks import check_int

warnings.filterwarnings('ignore', category=UserWarning)


def mixed_df(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        'age': rng.integers(18, 90, n),                                   # int
        'color': rng.choice(['red', 'green', 'blue'], n),                  # categorical
        'income': rng.lognormal(10, 1, n),                                 # float64, skewed
        'city': pd.Categorical(rng.choice([f'c{i:02d}' for i in range(40)], n)),  # 40 levels
        'score': rng.normal(0, 1, n).astype(np.float16),                   # float16
        'member': rng.random(n) < 0.3,                                     # bool -> continuous 0/1
        'species': rng.choice(['a', 'b'], n),                              # label
        'target': rng.normal(size=n),                                      # numeric label
    })


def mixed_dls(df=None, **kw):
    df = mixed_df() if df is None else df
    return SomDataLoaders.from_df(df, cat_names=['color', 'city'], label_names=['species', 'target'],
                                  bs=64, seed=0, **kw)


CONT = ['age', 'income', 'score', 'member']


def int_message(name, v, lo=1):
    "The shared message of `fastsom.checks.check_int` for `v`, as a regex"
    with pytest.raises(ValueError) as e: check_int(name, v, lo)
    return re.escape(str(e.value))


# ---------------------------------------------------------------- round trips

def test_mixed_round_trip():
    df = mixed_df()
    dls = mixed_dls(df)
    assert dls.cont_names == CONT and dls.cat_names == ['color', 'city'] and dls.label_names == ['species', 'target']
    assert dls.n_features == 4 + 3 + 40 == len(dls.feature_names)
    assert dls.feature_names[:7] == CONT + ['color_blue', 'color_green', 'color_red']
    assert dls.feature_names[-1] == 'city_c39'
    for dl in (dls.train, dls.valid):
        dec = dls.decode(dl.x)
        orig = df.iloc[dl.rows].reset_index(drop=True)
        assert list(dec.columns) == ['age', 'color', 'income', 'city', 'score', 'member']
        np.testing.assert_allclose(dec[CONT].to_numpy(float), orig[CONT].to_numpy(float), rtol=1e-5, atol=1e-3)
        assert dec['color'].tolist() == orig['color'].tolist()
        assert dec['city'].tolist() == orig['city'].tolist()
    # preprocessor.encode of the raw rows gives the loader's tensors
    torch.testing.assert_close(dls.preprocessor.encode(df.iloc[dls.valid.rows]), dls.valid.x)


def test_decode_probs_and_denormalize():
    dls = mixed_dls()
    x = dls.train.x[:50]
    dec = dls.decode(x.mean(0), probs=True)
    shares = dec[['color_blue', 'color_green', 'color_red']].to_numpy()[0]
    raw = dls.decode(x)['color']
    np.testing.assert_allclose(shares, [(raw == c).mean() for c in ['blue', 'green', 'red']], atol=1e-5)
    assert dec['color'].item() == ['blue', 'green', 'red'][shares.argmax()]
    d = dls.denormalize(x)
    assert d.shape == x.shape
    blocks = d[:, 4:]
    assert set(blocks.unique().tolist()) <= {0., 1.}           # one-hot blocks come back as exact 0/1
    np.testing.assert_allclose(blocks.sum(1).numpy(), 2.)        # one level per categorical column


def test_balanced_weights():
    "Each one-hot block has the total training variance of one z-scored column"
    dls = mixed_dls()
    x = dls.train.x.double()
    v = x.var(0, unbiased=False)
    np.testing.assert_allclose(v[:4].numpy(), 1, atol=1e-4)
    np.testing.assert_allclose(v[4:7].sum().item(), 1, atol=1e-4)   # color, 3 levels
    np.testing.assert_allclose(v[7:].sum().item(), 1, atol=1e-4)    # city, 40 levels
    # a balanced binary categorical is encoded like the z-scored 0/1 column: +-1 apart by 2
    df = pd.DataFrame({'a': np.arange(10.), 'b': ['x', 'y'] * 5})
    d = SomDataLoaders.from_df(df, cat_names='b', valid_pct=0)
    np.testing.assert_allclose(d.preprocessor.weights.numpy(), [np.sqrt(2)], rtol=1e-6)
    d1 = SomDataLoaders.from_df(df, cat_names='b', valid_pct=0, cat_weight=1)
    assert set(d1.train.x[:, 1:].unique().tolist()) == {0., 1.}


def test_state_dict_round_trip(tmp_path):
    dls = mixed_dls(fill_missing='mean')
    sd = dls.preprocessor.state_dict()
    torch.save(sd, tmp_path / 'prep.pt')
    p2 = SomPreprocessor.from_state_dict(torch.load(tmp_path / 'prep.pt', weights_only=True))
    df = mixed_df(50, seed=1)
    torch.testing.assert_close(p2.encode(df), dls.preprocessor.encode(df))
    assert p2.feature_names == dls.feature_names and p2.label_names == ['species', 'target']
    pd.testing.assert_frame_equal(p2.decode(dls.valid.x), dls.decode(dls.valid.x))
    # numeric options survive too
    p = SomPreprocessor(['a'], norm='minmax', fill_missing=0.5, cat_weight=2).fit(np.array([[0.], [np.nan], [4.]]))
    torch.save(p.state_dict(), tmp_path / 'p.pt')
    q = SomPreprocessor.from_state_dict(torch.load(tmp_path / 'p.pt', weights_only=True))
    torch.testing.assert_close(q.encode([[2.], [np.nan]]), torch.tensor([[0.5], [0.125]]))


# ---------------------------------------------------------------- statistics and labels

@pytest.mark.parametrize('norm', ['zscore', 'minmax', None])
def test_stats_from_training_split_only(norm):
    rng = np.random.default_rng(3)
    a = rng.normal(5, 3, (1000, 4))
    dls = SomDataLoaders.from_array(a, valid_pct=0.25, seed=1, norm=norm)
    tr = a[dls.train.rows]
    assert len(dls.train.rows) == 750 and len(dls.valid.rows) == 250
    assert not set(dls.train.rows) & set(dls.valid.rows)
    p = dls.preprocessor
    if norm == 'zscore': shift, scale = tr.mean(0), tr.std(0)
    elif norm == 'minmax': shift, scale = tr.min(0), tr.max(0) - tr.min(0)
    else: shift, scale = np.zeros(4), np.ones(4)
    np.testing.assert_allclose(p.shift.numpy(), shift, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(p.scale.numpy(), scale, rtol=1e-6)
    if norm == 'zscore': assert not np.allclose(p.shift.numpy(), a.mean(0), rtol=1e-4)  # not the full data's
    np.testing.assert_allclose(dls.valid.x.numpy(), (a[dls.valid.rows] - shift) / scale, rtol=1e-5, atol=1e-5)


def test_fill_missing_stats():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(500, 3)); a[rng.random((500, 3)) < 0.1] = np.nan
    for fill in ['mean', 'median', 2.5]:
        dls = SomDataLoaders.from_array(a, valid_pct=0.2, seed=0, fill_missing=fill)
        tr = a[dls.train.rows]
        v = np.nanmean(tr, 0) if fill == 'mean' else np.nanmedian(tr, 0) if fill == 'median' else np.full(3, 2.5)
        filled = np.where(np.isnan(tr), v, tr)
        np.testing.assert_allclose(dls.preprocessor.fill.numpy(), v, rtol=1e-6)
        np.testing.assert_allclose(dls.preprocessor.shift.numpy(), filled.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dls.preprocessor.scale.numpy(), filled.std(0), rtol=1e-5)
        assert torch.isfinite(dls.valid.x).all()


def test_labels_aside_and_aligned():
    df = mixed_df()
    dls = mixed_dls(df)
    assert 'target' not in dls.feature_names and 'species' not in dls.feature_names
    for dl in (dls.train, dls.valid):
        assert isinstance(dl.labels, pd.DataFrame) and list(dl.labels.columns) == ['species', 'target']
        assert len(dl.labels) == len(dl.x)
        assert dl.labels['target'].tolist() == df['target'].iloc[dl.rows].tolist()
        # unshuffled batches run in label order
        xs = torch.cat([b[0] for b in dl.new(shuffle=False)])
        torch.testing.assert_close(xs, dl.x)
        np.testing.assert_allclose(dls.decode(xs)['income'], df['income'].iloc[dl.rows], rtol=1e-5)
    one = SomDataLoaders.from_df(df, cat_names=['color', 'city'], label_name='species', valid_pct=0.1, seed=2)
    assert isinstance(one.train.labels, pd.Series) and one.train.labels.tolist() == df['species'].iloc[one.train.rows].tolist()
    t = SomDataLoaders.from_tensor(torch.randn(100, 3), labels=torch.arange(100), seed=0)
    np.testing.assert_array_equal(t.train.labels, t.train.rows)
    np.testing.assert_array_equal(t.valid.labels, t.valid.rows)


def test_dtypes_to_float32():
    for a in [np.arange(40).reshape(20, 2), np.random.rand(20, 2), np.random.rand(20, 2).astype(np.float16),
              np.random.rand(20, 2) > .5]:
        dls = SomDataLoaders.from_array(a, norm=None, valid_pct=0)
        assert dls.train.x.dtype == torch.float32 and dls.one_batch()[0].dtype == torch.float32
        np.testing.assert_allclose(dls.train.x.numpy(), a.astype(np.float32))
    dls = mixed_dls()
    assert dls.one_batch()[0].dtype == torch.float32


# ---------------------------------------------------------------- batches

def test_batches():
    x = torch.randn(1000, 5)
    dls = SomDataLoaders.from_tensor(x, bs=128, valid_pct=0.2, seed=0, device='cpu')
    assert dls.n_inp == 1 and dls.train.n_inp == 1
    xb, yb = dls.one_batch()
    assert xb is yb and xb.shape == (128, 5)
    assert len(dls.train) == 7 and [len(b[0]) for b in dls.train] == [128] * 6 + [32]
    e1, e2 = [torch.cat([b[0] for b in dls.train]) for _ in range(2)]
    assert not torch.equal(e1, e2)                                   # reshuffled every epoch
    torch.testing.assert_close(e1.sort(0).values, dls.train.x.sort(0).values)   # every row once
    a, b = [SomDataLoaders.from_tensor(x, bs=128, valid_pct=0.2, seed=0).train for _ in range(2)]
    torch.testing.assert_close(torch.cat([o[0] for o in a]), torch.cat([o[0] for o in b]))   # seeded: reproducible
    dl = dls.train.new(shuffle=False, drop_last=True)
    assert len(dl) == 6 and sum(len(b[0]) for b in dl) == 768
    v = dls.valid
    assert not v.shuffle and torch.equal(torch.cat([b[0] for b in v]), v.x)
    s = dls.train.sample(100, seed=1)
    assert s.shape == (100, 5) and torch.equal(s, dls.train.sample(100, seed=1))
    assert dls.train.sample(10_000).shape == (800, 5)


def test_valid_pct_zero():
    dls = SomDataLoaders.from_tensor(torch.randn(50, 2), valid_pct=0, bs=16)
    assert len(dls.valid) == 0 and len(dls.valid.x) == 0 and list(dls.valid) == []
    assert len(dls.train.x) == 50
    with pytest.raises(ValueError, match='does not contain any batches'): dls.valid.one_batch()


def test_show_batch(capsys):
    dls = mixed_dls()
    df = dls.train.show_batch(max_n=3, show=False)
    assert df.shape == (3, 6) and set(df['color']) <= {'red', 'green', 'blue'}
    dls.show_batch(max_n=2)
    out = capsys.readouterr().out
    assert 'color' in out and 'income' in out


def test_test_dl():
    df = mixed_df()
    dls = mixed_dls(df)
    new = mixed_df(30, seed=9)
    tdl = dls.test_dl(new, bs=8)
    assert not tdl.shuffle and len(tdl) == 4
    torch.testing.assert_close(torch.cat([b[0] for b in tdl]), dls.preprocessor.encode(new))
    assert tdl.labels['species'].tolist() == new['species'].tolist()
    raw = new[['age', 'color', 'income', 'city', 'score', 'member']]
    torch.testing.assert_close(dls.test_dl(raw.to_numpy(object)).x, tdl.x)     # array in column order
    torch.testing.assert_close(dls.test_dl(raw.iloc[3]).x, tdl.x[3:4])         # a single row
    x = torch.randn(20, 3)
    d = SomDataLoaders.from_tensor(x, seed=0)
    torch.testing.assert_close(d.test_dl(x.numpy()).x, (x - d.preprocessor.shift) / d.preprocessor.scale)


# ---------------------------------------------------------------- bad input

def test_bad_input_messages():
    df = mixed_df()
    def fails(exc, match, f, *a, **kw):
        with pytest.raises(exc, match=match): f(*a, **kw)
    from_df = SomDataLoaders.from_df
    # non-numeric columns not named
    fails(TypeError, r"\['color', 'city', 'species'\] are not numeric .* cat_names", from_df, df)
    # unknown names
    fails(KeyError, r"Unknown column\(s\) \['colour'\] in cat_names", from_df, df, cat_names='colour')
    fails(KeyError, r"Unknown column\(s\) \['lab'\] in label_names", from_df, df, label_names='lab')
    fails(KeyError, r"Unknown column\(s\) \['x'\] in cont_names", from_df, df, cont_names=['age', 'x'])
    fails(ValueError, "more than one role", from_df, df, cont_names=['age'], cat_names=['age'])
    fails(TypeError, r"\['color'\] are not numeric", from_df, df, cont_names=['age', 'color'])
    # NaN / inf
    nan = df.copy(); nan.loc[7, 'income'] = np.nan; nan.loc[9, 'age'] = np.nan
    fails(ValueError, r"\['age', 'income'\] contain NaN \(2 values\).*fill_missing", mixed_dls, nan)
    assert torch.isfinite(mixed_dls(nan, fill_missing='median').train.x).all()
    inf = df.copy(); inf.loc[3, 'income'] = np.inf
    fails(ValueError, r"\['income'\] contain inf", mixed_dls, inf)
    fails(ValueError, r"\['income'\] contain inf", mixed_dls, inf, fill_missing='mean')
    nacat = df.copy(); nacat.loc[2, 'color'] = None
    fails(ValueError, "'color' has 1 missing values", mixed_dls, nacat)
    assert 'color_#na#' in mixed_dls(nacat, fill_missing='mean').feature_names
    # empty data and a single row
    fails(ValueError, "no rows", mixed_dls, df.iloc[:0])
    fails(ValueError, "single row", mixed_dls, df.iloc[:1])
    fails(ValueError, "no rows", SomDataLoaders.from_tensor, torch.zeros(0, 3))
    fails(ValueError, "single row", SomDataLoaders.from_array, np.ones((1, 3)))
    fails(ValueError, "leaves 1 training row", SomDataLoaders.from_array, np.random.rand(3, 2), valid_pct=0.5)
    # constant columns are kept (test_constant_columns)
    # shapes
    fails(ValueError, r"reshape\(-1, 1\)", SomDataLoaders.from_array, np.ones(10))
    fails(ValueError, r"2-D .* shape \(2, 3, 4\)", SomDataLoaders.from_tensor, torch.ones(2, 3, 4))
    fails(TypeError, "from_df", SomDataLoaders.from_array, np.array([['a', 'b'], ['c', 'd']]))
    fails(ValueError, "labels has 9 rows but the data has 10", SomDataLoaders.from_array, np.random.rand(10, 2), labels=range(9))
    # options
    fails(ValueError, "Unknown norm 'std'", SomDataLoaders.from_array, np.random.rand(10, 2), norm='std')
    fails(ValueError, "Unknown fill_missing 'zero'", SomDataLoaders.from_array, np.random.rand(10, 2), fill_missing='zero')
    fails(ValueError, "cat_weight", mixed_dls, df, cat_weight='sqrt')
    fails(ValueError, int_message('bs', 0), SomDataLoaders.from_array, np.random.rand(10, 2), bs=0)
    # test_dl
    dls = mixed_dls(df)
    fails(ValueError, r"has 5 columns but the preprocessor expects 6", dls.test_dl, np.ones((3, 5)))
    fails(ValueError, "looks already encoded", dls.test_dl, dls.valid.x)
    fails(KeyError, r"lacks column\(s\) \['city'\]", dls.test_dl, df.drop(columns='city'))
    new = df.iloc[:5].copy(); new['color'] = 'purple'
    fails(ValueError, r"'color' has level\(s\) \['purple'\] not seen.*unknown='zeros'", dls.test_dl, new)
    assert dls.test_dl(new, unknown='zeros').x[:, 4:7].abs().sum() == 0
    d = SomDataLoaders.from_array(np.random.rand(10, 3))
    fails(ValueError, "has 4 columns but the preprocessor expects 3", d.test_dl, np.ones((2, 4)))
    fails(ValueError, r"\['x2'\] contain NaN", d.test_dl, np.array([[1., 2., np.nan]]))
    fails(ValueError, "Expected encoded rows with 3 features", d.decode, torch.ones(2, 4))


# ---------------------------------------------------------------- streaming

def test_npy_streaming_equals_memory(tmp_path):
    rng = np.random.default_rng(5)
    a = rng.normal(3, 2, (5000, 6)).astype(np.float32)
    a[rng.random(a.shape) < 0.01] = np.nan
    np.save(tmp_path / 'a.npy', a)
    lab = rng.integers(0, 3, 5000)
    np.save(tmp_path / 'lab.npy', lab)
    for shuffle in (False, True):
        kw = dict(bs=300, seed=7, shuffle=shuffle, fill_missing='mean', valid_pct=0.2)
        dm = SomDataLoaders.from_npy(tmp_path / 'a.npy', labels=tmp_path / 'lab.npy', chunk_rows=777, **kw)
        dt = SomDataLoaders.from_array(a, labels=lab, **kw)
        assert isinstance(dm.train.x, NpyRows)
        np.testing.assert_allclose(dm.preprocessor.shift, dt.preprocessor.shift, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dm.preprocessor.scale, dt.preprocessor.scale, rtol=1e-5)
        np.testing.assert_array_equal(dm.train.labels, dt.train.labels)
        for dl_m, dl_t in ((dm.train, dt.train), (dm.valid, dt.valid)):
            bm, bt = list(dl_m), list(dl_t)
            assert len(bm) == len(bt) == len(dl_t)
            for x, y in zip(bm, bt):
                assert x[0].dtype == torch.float32
                torch.testing.assert_close(x[0], y[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dm.train.sample(50, seed=3), dt.train.sample(50, seed=3), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dm.test_dl(str(tmp_path / 'a.npy')).one_batch()[0], dt.test_dl(a[:300]).x)
    with pytest.raises(ValueError, match="median.*streaming"):
        SomDataLoaders.from_npy(tmp_path / 'a.npy', fill_missing='median')
    with pytest.raises(ValueError, match="contain NaN"):
        SomDataLoaders.from_npy(tmp_path / 'a.npy')
    np.save(tmp_path / 'b.npy', np.ones(10))
    with pytest.raises(ValueError, match="expected 2-D"): SomDataLoaders.from_npy(tmp_path / 'b.npy')
    # pickles as a path, not as data
    assert len(pickle.dumps(dm.train.x)) < 8 * len(dm.train.x) + 2000   # the row numbers and little else


# ---------------------------------------------------------------- fastai and export

def test_fastai_learner_get_preds_and_export(tmp_path):
    from fastai.learner import Learner
    from fastai.losses import MSELossFlat
    df = mixed_df()
    dls = mixed_dls(df)
    learn = Learner(dls, nn.Linear(dls.n_features, dls.n_features), loss_func=MSELossFlat(), path=tmp_path)
    learn.fit(1, 1e-3)
    for i, dl in enumerate((dls.train, dls.valid)):
        inp, preds, targ = learn.get_preds(ds_idx=i, with_input=True)
        torch.testing.assert_close(inp, dl.x)                      # data order, although train shuffles
        torch.testing.assert_close(targ, dl.x)
        with torch.no_grad(): torch.testing.assert_close(preds, learn.model(dl.x))
    new = mixed_df(20, seed=3)
    preds = learn.get_preds(dl=dls.test_dl(new))[0]
    learn.export('export.pkl')
    (tmp_path / 'new.pkl').write_bytes(pickle.dumps(new))
    code = textwrap.dedent(f"""
        import pickle, warnings, torch; warnings.filterwarnings('ignore')
        from fastai.learner import load_learner
        learn = load_learner({str(tmp_path / 'export.pkl')!r})
        new = pickle.loads(open({str(tmp_path / 'new.pkl')!r}, 'rb').read())
        dl = learn.dls.test_dl(new)
        torch.save(dict(preds=learn.get_preds(dl=dl)[0], x=dl.x, names=learn.dls.feature_names,
                        dec=learn.dls.decode(dl.x)['city'].tolist()), {str(tmp_path / 'out.pt')!r})
        """)
    subprocess.run([sys.executable, '-c', code], check=True, timeout=120)
    out = torch.load(tmp_path / 'out.pt', weights_only=False)
    torch.testing.assert_close(out['preds'], preds)
    torch.testing.assert_close(out['x'], dls.preprocessor.encode(new))
    assert out['names'] == dls.feature_names and out['dec'] == new['city'].tolist()


def test_pickle_dls():
    dls = mixed_dls()
    d2 = pickle.loads(pickle.dumps(dls))
    torch.testing.assert_close(d2.valid.x, dls.valid.x)
    torch.testing.assert_close(torch.cat([b[0] for b in d2.train]).sort(0).values, dls.train.x.sort(0).values)
    e = pickle.loads(pickle.dumps(dls.new_empty()))
    assert len(e.train.x) == 0 and e.feature_names == dls.feature_names
    assert isinstance(e.train, SomDataLoader)


def test_csv(tmp_path):
    df = mixed_df(100)
    df.to_csv(tmp_path / 'd.csv', index=False)
    d = SomDataLoaders.from_csv(tmp_path / 'd.csv', cat_names=['color', 'city'], label_names=['species', 'target'], seed=0)
    m = mixed_dls(df)
    torch.testing.assert_close(d.preprocessor.shift, m.preprocessor.shift, rtol=1e-3, atol=1e-3)
    assert d.feature_names == m.feature_names
    torch.testing.assert_close(d.valid.x, m.valid.x, rtol=1e-3, atol=1e-3)


# ---------------------------------------------------------------- defaults from fastsom.som (issue 13)

def builders(tmp_path, a):
    "Each builder as a function of options, on the same rows `a`"
    np.save(tmp_path / 'a.npy', a)
    df = pd.DataFrame(a, columns=[f'x{i}' for i in range(a.shape[1])])
    return dict(from_tensor=lambda **kw: SomDataLoaders.from_tensor(torch.from_numpy(a), **kw),
                from_array=lambda **kw: SomDataLoaders.from_array(a, **kw),
                from_df=lambda **kw: SomDataLoaders.from_df(df, **kw),
                from_npy=lambda **kw: SomDataLoaders.from_npy(tmp_path / 'a.npy', **kw))


def test_defaults_from_the_table(tmp_path):
    a = np.random.default_rng(0).normal(5, 2, (2000, 3)).astype(np.float32)
    sig = inspect.signature(SomDataLoaders.from_tensor).parameters
    assert sig['bs'].default is None and sig['val_bs'].default is None
    assert sig['valid_pct'].default == defaults.valid_pct and sig['norm'].default == defaults.norm
    from fastsom.data import _options
    assert set(_options) == set(sig) - {'cls', 'x', 'labels', 'names'}   # the options from_df/from_npy pass on
    for name, build in builders(tmp_path, a).items():
        dls = build(seed=0)
        n_tr = 2000 - round(2000 * defaults.valid_pct)
        assert len(dls.train.x) == n_tr and len(dls.valid.x) == 2000 - n_tr, name
        assert dls.train.bs == default_bs(n_tr) == dls.valid.bs, name               # val_bs: the training bs
        tr = a[dls.train.rows].astype(np.float64)
        np.testing.assert_allclose(dls.preprocessor.shift, tr.mean(0), rtol=1e-5)  # defaults.norm == 'zscore'
        np.testing.assert_allclose(dls.preprocessor.scale, tr.std(0), rtol=1e-5)
        assert build(bs=np.int64(100), val_bs=np.int32(7), seed=np.int64(3)).valid.bs == 7, name
        for bad in (0, -1, 2.5, True):
            with pytest.raises(ValueError, match=int_message('bs', bad)): build(bs=bad)
        with pytest.raises(ValueError, match=int_message('val_bs', 0)): build(val_bs=0)
    d = SomDataLoaders.from_npy(tmp_path / 'a.npy', chunk_rows=np.int64(300), seed=1)
    torch.testing.assert_close(d.preprocessor.shift, SomDataLoaders.from_array(a, seed=1).preprocessor.shift)
    with pytest.raises(ValueError, match=int_message('chunk_rows', 0)): SomDataLoaders.from_npy(tmp_path / 'a.npy', chunk_rows=0)
    assert len(d.test_dl(a[:20], bs=np.int64(6))) == 4
    assert d.train.sample(np.int64(10), seed=np.int64(1)).shape == (10, 3)


def test_shuffle_is_som_fit_shuffle():
    x = torch.randn(300, 4)
    for bs in (64, None):
        dls = SomDataLoaders.from_tensor(x, valid_pct=0, norm=None, seed=7, bs=bs, device='cpu')
        bs = bs or default_bs(300)
        assert dls.train.bs == bs
        for e in range(3):
            dls.one_batch()                                  # not a pass: does not move on to the next epoch
            got, ref = [b[0] for b in dls.train], list(minibatches(x, bs, True, 7)(e))
            assert len(got) == len(ref) and all(torch.equal(g, r) for g, r in zip(got, ref))
        dls.train.set_epoch(np.int64(9))                     # what SomLearner calls before each epoch
        assert all(torch.equal(g, r) for g, r in zip([b[0] for b in dls.train], minibatches(x, bs, True, 7)(9)))
        assert not torch.equal(list(minibatches(x, bs, True, 7)(9))[0], list(minibatches(x, bs, True, 7)(10))[0])


# ---------------------------------------------------------------- constant columns (issue 13)

def test_constant_columns_kept_like_sklearn():
    from sklearn.preprocessing import StandardScaler, MinMaxScaler
    rng = np.random.default_rng(1)
    a = np.c_[rng.normal(3, 2, 200), np.full(200, 3.), rng.random(200), np.zeros(200)]
    for norm, ref in (('zscore', StandardScaler()), ('minmax', MinMaxScaler())):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            dls = SomDataLoaders.from_array(a, norm=norm, seed=0)
        msgs = [str(o.message) for o in w if issubclass(o.category, UserWarning)]
        assert len(msgs) == 1 and "['x1', 'x3'] are constant" in msgs[0]
        ref.fit(a[dls.train.rows])
        np.testing.assert_allclose(dls.train.x.numpy(), ref.transform(a[dls.train.rows]), atol=1e-5)
        np.testing.assert_allclose(dls.valid.x.numpy(), ref.transform(a[dls.valid.rows]), atol=1e-5)
        new = np.array([[1., 5., .5, -2.]])                  # off the constant: its distance from it, scale 1
        np.testing.assert_allclose(dls.test_dl(new).x.numpy(), ref.transform(new), atol=1e-5)
        np.testing.assert_allclose(dls.decode(dls.test_dl(new).x).to_numpy(float), new, atol=1e-5)
        np.testing.assert_allclose(dls.decode(dls.valid.x).to_numpy(float), a[dls.valid.rows], atol=1e-5)
    # a DataFrame with a constant column and a single-level categorical one: kept, one warning each
    df = mixed_df().assign(const=7.5, colour='red')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        dls = SomDataLoaders.from_df(df, cat_names=['color', 'city', 'colour'], label_names=['species', 'target'], seed=0)
    msgs = [str(o.message) for o in w if issubclass(o.category, UserWarning)]
    assert len(msgs) == 2 and "['const'] are constant" in msgs[0] and "['colour'] have a single level" in msgs[1]
    p = dls.preprocessor
    i = p.cont_names.index('const')
    assert p.shift[i] == 7.5 and p.scale[i] == 1 and (dls.train.x[:, i] == 0).all()
    assert p.weights[-1] == 1 and torch.isfinite(dls.train.x).all()
    dec = dls.decode(dls.valid.x)
    assert (dec['const'] == 7.5).all() and (dec['colour'] == 'red').all()
    # the other weights ignore the constant column: the same as without it
    torch.testing.assert_close(p.weights[:2], mixed_dls(df.drop(columns=['const', 'colour'])).preprocessor.weights)


def test_digits_default_options():
    from sklearn.datasets import load_digits
    digits = load_digits(as_frame=True)
    x = digits.data.to_numpy()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        dls = SomDataLoaders.from_array(x, seed=0)
    const = [f'x{j}' for j in np.flatnonzero(np.ptp(x[dls.train.rows], 0) == 0)]
    assert len(const) >= 3
    assert [str(o.message).startswith(f"Column(s) {const}") for o in w if issubclass(o.category, UserWarning)] == [True]
    assert torch.isfinite(dls.train.x).all() and dls.n_features == 64
    np.testing.assert_allclose(dls.decode(dls.valid.x).to_numpy(float), x[dls.valid.rows], atol=1e-4)
    d = SomDataLoaders.from_df(digits.frame, label_names='target', seed=0)
    assert d.n_features == 64 and d.train.labels.tolist() == digits.target.iloc[d.train.rows].tolist()


# ---------------------------------------------------------------- fastai's vocabulary (issue 13)

def test_fastai_names():
    df = mixed_df()
    kw = dict(cat_names=['color', 'city'], seed=0)
    a = SomDataLoaders.from_df(df, y_names=['species', 'target'], **kw)
    b = SomDataLoaders.from_df(df, label_names=['species', 'target'], **kw)
    assert a.label_names == ['species', 'target'] and 'target' not in a.feature_names
    torch.testing.assert_close(a.valid.x, b.valid.x)
    assert a.valid.labels.equals(b.valid.labels)
    for two in (dict(y_names='species', label_names='species'), dict(label_name='species', y_names='species'),
                dict(label_name='species', label_names='target')):
        with pytest.raises(TypeError, match="aliases"): SomDataLoaders.from_df(df, **two, **kw)
    hints = dict(procs=r"norm=.*fill_missing=.*cat_names=", y_block="label_names=", splits=r"valid_pct=.*seed=",
                 valid_idx=r"valid_pct=.*seed=", shuffle_train="shuffle=", reduce_memory="never changes",
                 num_workers="no workers", dl_type="bs=", n="subsample")
    for k, hint in hints.items():
        with pytest.raises(TypeError, match=rf"from_df\(\) does not take fastai's {k}=: .*{hint}"):
            SomDataLoaders.from_df(df, label_names='species', **{k: None}, **kw)
    with pytest.raises(TypeError, match=r"from_array\(\) does not take fastai's procs="):
        SomDataLoaders.from_array(np.random.rand(10, 2), procs=[])
    with pytest.raises(TypeError, match=r"from_df\(\) got an unknown option foo=: its options are bs, "):
        SomDataLoaders.from_df(df, label_names='species', foo=1, **kw)
    # every option of fastai's tabular builders is either taken or refused with a hint
    from fastai.tabular.all import TabularDataLoaders, TabularPandas
    from fastai.data.core import FilteredBase
    from fastsom.data import _fastai_options
    theirs = {*inspect.signature(TabularDataLoaders.from_df).parameters, *inspect.signature(TabularPandas).parameters,
              *inspect.signature(FilteredBase.dataloaders).parameters, 'skipinitialspace'} - {'self', 'kwargs', 'df'}
    ours = set(inspect.signature(SomDataLoaders.from_df).parameters) | set(_fastai_options)
    assert theirs <= ours, theirs - ours


# ---------------------------------------------------------------- decode_batch, predict and show_results (issue 13)

def test_decode_batch():
    df = mixed_df()
    dls = mixed_dls(df)
    x = dls.valid.x[:12]
    rows = df.iloc[dls.valid.rows[:12]]
    items = dls.decode_batch(dls.valid.one_batch())          # fastai's format: one tuple per row, max_n=9
    assert len(items) == 9 and all(len(t) == 2 for t in items)
    for i, (inp, targ) in enumerate(items):
        assert isinstance(inp, pd.Series) and list(inp.index) == ['age', 'color', 'income', 'city', 'score', 'member']
        assert inp['color'] == rows['color'].iloc[i] and inp['city'] == rows['city'].iloc[i]
        np.testing.assert_allclose(float(inp['income']), rows['income'].iloc[i], rtol=1e-5)
        assert targ.equals(inp)                               # the target is x itself
    assert len(dls.decode_batch(x, max_n=12)) == 12 and dls.decode_batch(x)[3].equals(items[3][0])
    idx, dist = torch.arange(12), torch.rand(12)
    dec = dls.decode_batch((x, idx, dist), max_n=20)         # inputs and predictions, as `Learner.predict` passes
    assert len(dec) == 12 and dec[5][0].equals(items[5][0]) and dec[5][1] == 5 and dec[5][2] == dist[5]
    w = dls.valid.x[12:24]                                    # a float tensor of x's shape is decoded too (codebook vectors)
    assert dls.decode_batch((x, w))[2][1].equals(dls.decode(w).iloc[2])
    res = dls.valid.show_results(dls.valid.one_batch(), (idx, torch.stack([dist, dist], 1)), max_n=4, show=False,
                                 names=['bmu', 'dist'])
    assert list(res.columns)[-3:] == ['bmu', 'dist_0', 'dist_1'] and res['bmu'].tolist() == [0, 1, 2, 3]
    assert res['city'].tolist() == rows['city'].iloc[:4].tolist()
    with pytest.raises(ValueError, match="names has 1 entries for 2 outputs"):
        dls.valid.show_results(dls.valid.one_batch(), (idx, dist), names=['bmu'], show=False)


def test_test_dl_of_single_rows():
    df = mixed_df()
    dls = mixed_dls(df)
    enc = dls.preprocessor.encode(df.iloc[:2])
    row, d = df.iloc[1], df.iloc[1].to_dict()
    for one in (row, d, df.iloc[1:2], [row], [d], [df.iloc[1:2]]):   # `Learner.predict(item)` calls `test_dl([item])`
        tdl = dls.test_dl(one)
        torch.testing.assert_close(tdl.x, enc[1:2])
        assert tdl.labels['species'].tolist() == [df['species'].iloc[1]]
    torch.testing.assert_close(dls.test_dl([row, d]).x, enc[[1, 1]])
    nolab = {k: v for k, v in d.items() if k not in ('species', 'target')}
    assert dls.test_dl(nolab).labels is None
    assert dls.test_dl(df.iloc[:3].assign(species=np.nan, target=np.nan)).labels is None   # unknown labels: unlabelled
    t = SomDataLoaders.from_array(np.random.rand(50, 3), seed=0)
    r = torch.tensor([.1, .2, .3])
    for one in ([r], [r[None]], [r.numpy()], r[None], {'x0': .1, 'x1': .2, 'x2': .3}):
        torch.testing.assert_close(t.test_dl(one).x, t.preprocessor.encode(r[None]))


def test_fastai_predict_and_show_results(tmp_path, capsys):
    from fastai.learner import Learner
    from fastai.losses import MSELossFlat
    df = mixed_df()
    dls = mixed_dls(df)
    learn = Learner(dls, nn.Linear(dls.n_features, dls.n_features), loss_func=MSELossFlat(), path=tmp_path)
    with torch.no_grad(): learn.model.weight.copy_(torch.eye(dls.n_features)); learn.model.bias.zero_()
    for item in (df.iloc[3], df.iloc[3].to_dict(), df.iloc[3:4]):
        inp, dec, dec_preds, preds = learn.predict(item, with_input=True)     # fastai's own predict, unchanged
        assert inp['city'] == df['city'].iloc[3] and dec['city'] == df['city'].iloc[3]   # identity model
        np.testing.assert_allclose(float(dec['income']), df['income'].iloc[3], rtol=1e-4)
        torch.testing.assert_close(preds, dls.preprocessor.encode(df.iloc[3:4])[0])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        capsys.readouterr()
        learn.show_results(max_n=3)                           # fastai's own: the loader's `show_results`
    out = capsys.readouterr().out.splitlines()
    h = next(i for i, o in enumerate(out) if 'city' in o)      # after fastprogress's bar, if any
    assert f'out0_{dls.n_features - 1}' in out[h]                  # decoded rows, then the model's outputs
    assert [o.split()[0] for o in out[h + 1:h + 4]] == ['0', '1', '2']


# ---------------------------------------------------------------- bad input (issue 12)

def test_bad_frames_and_labels(tmp_path):
    df = mixed_df()
    dup = pd.concat([df, df[['age']]], axis=1)
    with pytest.raises(ValueError, match=r"duplicated column name\(s\) \['age'\]: rename them"):
        mixed_dls(dup)
    dls = mixed_dls(df)
    with pytest.raises(ValueError, match=r"duplicated column name\(s\) \['age'\]"): dls.test_dl(dup)
    with pytest.raises(ValueError, match=r"duplicated column name\(s\) \['target'\]"):   # a label column too
        dls.test_dl(pd.concat([df, df[['target']]], axis=1))
    extra = pd.DataFrame(np.ones((len(df), 2)), columns=['extra', 'extra'])
    torch.testing.assert_close(dls.test_dl(pd.concat([df, extra], axis=1)).x, dls.test_dl(df).x)   # unused: harmless
    # an all-NaN label column: refused (it carries nothing), and never a crash downstream
    with pytest.raises(ValueError, match=r"Label column\(s\) \['target'\] have no values"):
        mixed_dls(df.assign(target=np.nan))
    with pytest.raises(ValueError, match=r"have no values"):
        SomDataLoaders.from_array(np.random.rand(10, 2), labels=np.full(10, np.nan))
    # zero rows: "no rows", not "not numeric"
    (tmp_path / 'h.csv').write_text('a,b,c\n')
    with pytest.raises(ValueError, match=r"The CSV file .*h.csv has no rows"): SomDataLoaders.from_csv(tmp_path / 'h.csv')
    for empty in (pd.DataFrame(columns=['a', 'b']), df.iloc[:0]):
        with pytest.raises(ValueError, match="The DataFrame has no rows"): SomDataLoaders.from_df(empty)
    with pytest.raises(ValueError, match="The test data has no rows"): dls.test_dl(df.iloc[:0])


@pytest.mark.parametrize('dtype', [np.float32, np.float64, np.int16])
def test_read_only_arrays(tmp_path, dtype):
    a = (np.random.default_rng(2).normal(size=(500, 3)) * 10).astype(dtype)
    np.save(tmp_path / 'a.npy', a)
    mm = np.load(tmp_path / 'a.npy', mmap_mode='r')
    assert not mm.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter('error')                        # torch's "not writable" warning would fail here
        dls = SomDataLoaders.from_array(mm, seed=0)
        ref = SomDataLoaders.from_array(np.array(mm), seed=0)
        torch.testing.assert_close(dls.valid.x, ref.valid.x)
        torch.testing.assert_close(dls.preprocessor.encode(mm), ref.preprocessor.encode(a))   # what `predict` does
        torch.testing.assert_close(dls.test_dl(mm).x, ref.test_dl(a).x)
        raw = SomDataLoaders.from_array(mm, norm=None, valid_pct=0, seed=0)                  # kept as is: a copy
        enc = raw.preprocessor.encode(mm)
        for t in (raw.train.x, enc):
            assert not np.may_share_memory(t.numpy(), mm)
            t[0, 0] = 1.                                      # writable, the file untouched
    np.testing.assert_array_equal(np.load(tmp_path / 'a.npy'), a)
