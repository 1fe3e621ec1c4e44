"Data-parallel training on 2 gloo processes started with torchrun: identical to one process over the same data and order."
import subprocess, sys, torch, pytest
from pathlib import Path
from fastsom.all import *
from conftest import free_port

HERE = Path(__file__).parent


def torchrun(script, *args, nproc=2):
    cmd = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={nproc}', '--master_addr=127.0.0.1',
           f'--master_port={free_port()}', str(script), *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope='module')
def engine_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('dist')
    torchrun(HERE / 'dist_worker.py', out)
    return out


@pytest.mark.parametrize('rule', update_rules)
def test_two_processes_match_one(engine_run, rule):
    books = torch.load(engine_run / f'{rule}.pt')
    assert torch.equal(books[0], books[1])  # every rank holds the same codebook
    x = torch.randn(1001, 5, generator=torch.Generator().manual_seed(0))
    ref = Som((6, 7), 5, 'hex', update=rule).fit(x, epochs=3, bs=120, alpha=(.9, .2) if rule != 'online' else (5., 1.), shuffle=False)
    torch.testing.assert_close(books[0], ref.codebook.data, atol=2e-4, rtol=1e-4)


def test_only_rank0_writes(engine_run):
    assert sorted(p.name for p in engine_run.iterdir()) == sorted([f'{r}.pt' for r in update_rules] + ['resume.pt'])


def test_two_process_resume_is_exact(engine_run):
    r = torch.load(engine_run / 'resume.pt')
    assert torch.equal(r['resumed'], r['full'])
    assert not torch.equal(r['first'], r['full'])  # the resumed epochs did train


@pytest.fixture(scope='module')
def learner_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('dist_learner')
    torchrun(HERE / 'dist_learner_worker.py', out)
    return out


def test_learner_in_distrib_ctx_matches_one_process(learner_run):
    res = torch.load(learner_run / 'learner.pt')
    books = res['books']
    assert torch.equal(books[0], books[1])
    x = torch.randn(1001, 5, generator=torch.Generator().manual_seed(0))
    dls = SomDataLoaders.from_tensor(x, bs=80, valid_pct=.2, seed=0, shuffle=False, norm=None)  # 2 processes x bs 40
    learn = som_learner(dls, size=(6, 7), topology='hex', seed=0)
    with learn.no_bar(), learn.no_logging(): learn.fit(3); valid = learn.validate()
    torch.testing.assert_close(books[0], learn.codebook, atol=2e-4, rtol=1e-4)
    # loss (QE), TE and units hit reduced over both processes = those of the whole validation set
    torch.testing.assert_close(torch.tensor(res['valid']), torch.tensor([float(v) for v in valid]), atol=1e-4, rtol=1e-4)


def test_learner_writes_from_rank0_only(learner_run):
    assert sorted(p.name for p in (learner_run / 'rank0').iterdir()) == ['history.csv', 'models']
    assert (learner_run / 'rank0' / 'models' / 'model.pth').is_file()
    assert list((learner_run / 'rank1').iterdir()) == []  # rank 1 wrote nothing, not even a folder
