"Tests of fastsom.data: encoding round trips, split statistics, labels, bad input, streaming, export."
import pickle, subprocess, sys, textwrap, warnings
import numpy as np, pandas as pd, pytest, torch
from torch import nn
from fastsom.data import SomDataLoaders, SomPreprocessor, SomDataLoader, NpyRows

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
    dls = SomDataLoaders.from_tensor(x, bs=128, seed=0, device='cpu')
    assert dls.n_inp == 1 and dls.train.n_inp == 1
    xb, yb = dls.one_batch()
    assert xb is yb and xb.shape == (128, 5)
    assert len(dls.train) == 7 and [len(b[0]) for b in dls.train] == [128] * 6 + [32]
    e1, e2 = [torch.cat([b[0] for b in dls.train]) for _ in range(2)]
    assert not torch.equal(e1, e2)                                   # reshuffled every epoch
    torch.testing.assert_close(e1.sort(0).values, dls.train.x.sort(0).values)   # every row once
    a, b = [SomDataLoaders.from_tensor(x, bs=128, seed=0).train for _ in range(2)]
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
    # constant columns
    const = np.c_[np.random.rand(20), np.full(20, 3.)]
    fails(ValueError, r"\['x1'\] are constant .* norm=None", SomDataLoaders.from_array, const)
    fails(ValueError, r"\['x1'\] are constant", SomDataLoaders.from_array, const, norm='minmax')
    assert SomDataLoaders.from_array(const, norm=None).n_features == 2
    one = df.assign(color='red')
    fails(ValueError, "'color' has a single level", mixed_dls, one)
    # shapes
    fails(ValueError, r"reshape\(-1, 1\)", SomDataLoaders.from_array, np.ones(10))
    fails(ValueError, r"2-D .* shape \(2, 3, 4\)", SomDataLoaders.from_tensor, torch.ones(2, 3, 4))
    fails(TypeError, "from_df", SomDataLoaders.from_array, np.array([['a', 'b'], ['c', 'd']]))
    fails(ValueError, "labels has 9 rows but the data has 10", SomDataLoaders.from_array, np.random.rand(10, 2), labels=range(9))
    # options
    fails(ValueError, "Unknown norm 'std'", SomDataLoaders.from_array, np.random.rand(10, 2), norm='std')
    fails(ValueError, "Unknown fill_missing 'zero'", SomDataLoaders.from_array, np.random.rand(10, 2), fill_missing='zero')
    fails(ValueError, "cat_weight", mixed_dls, df, cat_weight='sqrt')
    fails(ValueError, "bs must be a positive integer", SomDataLoaders.from_array, np.random.rand(10, 2), bs=0)
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
