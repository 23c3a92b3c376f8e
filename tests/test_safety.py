"""
Nothing the user has is lost, and a mistake is one line: python -m pytest tests/test_safety.py -q
Tables of mistakes, tool by tool. Each case asserts the error line and, where a file was at stake, that
every file is byte-identical afterwards. Almost all fail in the argument / config checks, in-process.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest
import torch

import bench
from evals import evaluation as E
from evals import coda as C
import sample
import train
from conftest import tiny_pycode
from data import prepare_custom
from data.common import load_meta
from data.pycode import prepare as pycode
from data.pycode_sft import prepare as pycode_sft
from model import UserError

from experiments import run as X

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py
SMALL = dict(model='tiny', seq_len=32, batch_size=4, max_iters=4, warmup_iters=1, eval_interval=2, eval_iters=1,
             elbo_samples=1, log_interval=1, checkpoint_interval=0, sample_interval=0)
BIG = 2**64  # a seed beyond int64


def source(i):
    return textwrap.dedent(f'''\
        def scale_{i}(x, k={i}):
            """Multiply x by {i} and add one to it."""
            return x * k + 1


        def norm_{i}(a, b):
            """Return the length of the vector (a, b) plus {i}."""
            return (a * a + b * b) ** 0.5 + {i}
        ''') * 3


def argv(**kw):
    return [f'--{k}={v}' for k, v in {**SMALL, **kw}.items()]


def files(root):
    """{relative path: bytes} of every file under root: the state a failed command must leave alone."""
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = open(p, 'rb').read() if os.path.isfile(p) else 'not a file'
    return out


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    """A tiny corpus (and an SFT set from the same sources), one finished tiny run, an MBPP file."""
    root = tmp_path_factory.mktemp('safety')
    src = tiny_pycode(root, [source(i) for i in range(8)])
    pycode_sft.prepare(roots=[str(src)], stdlib=False, out_dir=str(root / 'sft'), max_len=256, val_frac=0.25)
    src2 = root / 'src2'
    src2.mkdir()
    for i in range(3):
        (src2 / f'o{i}.py').write_text(source(10 + i))
    train.main(argv(dataset=root / 'pycode', out_dir=root / 'done'))
    (root / 'mbpp.jsonl').write_text(json.dumps(dict(task_id=1, text='Return one.', code='def f():\n    return 1',
                                                     test_list=['assert f() == 1'])) + '\n')
    return SimpleNamespace(root=root, src=src, src2=src2, pt=root / 'pycode', sft=root / 'sft', done=root / 'done',
                           mbpp=root / 'mbpp.jsonl')


@pytest.fixture
def run_dir(env, tmp_path):
    """A copy of the finished run, to make mistakes on."""
    shutil.copytree(env.done, tmp_path / 'run')
    return tmp_path / 'run'


# -----------------------------------------------------------------------------
# 1. train.py: an out_dir that holds a run is continued (init_from=resume) or, with --overwrite, replaced

TRAIN_MISTAKES = [  # (what, arguments, the error line); {run} = a finished run, {done} = another one
    ('from scratch into a run', ['--out_dir={run}'],
     r"{run} already holds a run \(ckpt.pt, log.jsonl\); continue it with --init_from=resume, pick another "
     r"--out_dir, or pass --overwrite to replace it"),
    ("the README's export without init_from=resume", ['--out_dir={run}', '--max_iters=0', '--export_hf={run}/hf'],
     r"already holds a run .*--init_from=resume.*--overwrite"),
    ("another run's weights into a run", ['--out_dir={run}', '--init_from={done}'], r"already holds a run"),
    ('export over a model already there', ['--out_dir={run}', '--init_from=resume', '--max_iters=0', '--export_hf={hf}'],
     r"export_hf=.*hf already holds a model; pick another directory, or pass --overwrite"),
    ('resume with another model', ['--out_dir={run}', '--init_from=resume', '--model=toy'],
     r"model='toy' differs from the run's model='tiny': a resume continues the same model"),
    ('resume with another objective', ['--out_dir={run}', '--init_from=resume', '--objective=ar'],
     r"objective='ar' differs from the run's objective='mdm'"),
    ('a resume that diverges', ['--out_dir={run}', '--init_from=resume', '--max_iters=40', '--lr=1e30', '--min_lr=1e30',
                                '--warmup_iters=0', '--grad_clip=0'], r"loss is (nan|inf) at iteration \d+"),
    ('a replacing run that diverges', ['--out_dir={run}', '--overwrite', '--max_iters=40', '--lr=1e30', '--min_lr=1e30',
                                       '--warmup_iters=0', '--grad_clip=0'], r"loss is (nan|inf)"),
]


@pytest.mark.parametrize('what,args,match', TRAIN_MISTAKES, ids=[c[0] for c in TRAIN_MISTAKES])
def test_train_never_loses_a_run(env, run_dir, tmp_path, what, args, match):
    (tmp_path / 'hf').mkdir()
    (tmp_path / 'hf' / 'config.json').write_text('{}')
    before = files(tmp_path)
    fmt = dict(run=run_dir, done=env.done, hf=tmp_path / 'hf')
    with pytest.raises(UserError, match=match.format(**fmt)):
        train.main(argv(dataset=env.pt, max_iters=6) + [a.format(**fmt) for a in args])
    assert files(tmp_path) == before


def test_train_export_only_and_overwrite(env, run_dir, tmp_path, monkeypatch):
    before = files(run_dir)
    # export only: no training, ckpt.pt / log.jsonl / loss.png untouched
    train.main(['--init_from=resume', f'--out_dir={run_dir}', '--max_iters=0', f'--export_hf={tmp_path}/hf'])
    assert files(run_dir) == before and (tmp_path / 'hf' / 'config.json').is_file()
    # Ctrl-C while setting up a replacing run: nothing changes
    monkeypatch.setattr(train, 'open_dataset', lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        train.main(argv(dataset=env.pt, out_dir=run_dir, overwrite='true'))
    monkeypatch.undo()
    assert files(run_dir) == before
    # --overwrite replaces the run: a new log, a new checkpoint
    train.main(argv(dataset=env.pt, out_dir=run_dir, overwrite='true', max_iters=3, eval_interval=0))
    assert [json.loads(l)['iter'] for l in open(run_dir / 'log.jsonl')] == [1, 2, 3]
    assert torch.load(run_dir / 'ckpt.pt', weights_only=True)['train_config']['overwrite'] is True
    # ... and that permission is not inherited by a resume, nor its export_hf
    cfg = train.get_config([f'--out_dir={run_dir}', '--init_from=resume'])
    assert (cfg.overwrite, cfg.export_hf) == (False, '')
    # a first run that fails before its first checkpoint leaves no directory behind
    with pytest.raises(UserError, match='loss is'):
        train.main(argv(dataset=env.pt, out_dir=tmp_path / 'new', max_iters=40, lr=1e30, min_lr=1e30, warmup_iters=0,
                        grad_clip=0))
    assert not (tmp_path / 'new').exists()


# -----------------------------------------------------------------------------
# 2. config files and flags

CONFIG_MISTAKES = [  # (config file text, the error)
    ('batch_size = 2,\n', r"batch_size must be a int, got \(2,\) \(a trailing comma makes a tuple\) \(from .*c\.py line 1\)"),
    ('lr = None\n', r"lr must be a float, got None \(from .*c\.py line 1\)"),
    ('import math\nbatch_size = [2, 4]\n', r"batch_size must be a int, got \[2, 4\] \(from .*c\.py line 2\)"),
    ('max_iters = 10 +\n', r"c\.py line 1: invalid syntax; fix the config file"),
    ('lr = learning_rate\n', r"c\.py line 1: NameError: name 'learning_rate' is not defined"),
    ('x = 3\nmax_iters = x // 0\n', r"c\.py line 2: ZeroDivisionError"),
    ('learning_rate = 0.1\n', r"unknown config key 'learning_rate' \(from .*c\.py line 1\)"),
    (f'seed = {BIG}\n', r"seed=18446744073709551616 is out of range: an integer must fit in 64 bits"),
]


@pytest.mark.parametrize('text,match', CONFIG_MISTAKES, ids=[c[0].strip() for c in CONFIG_MISTAKES])
def test_config_file_mistakes(tmp_path, text, match):
    (tmp_path / 'c.py').write_text(text)
    with pytest.raises(UserError, match=match):
        train.get_config([str(tmp_path / 'c.py')])


def test_config_error_is_one_line(tmp_path):
    (tmp_path / 'c.py').write_text('objective = "ar"\nbatch_size = 2,\n')
    p = subprocess.run([sys.executable, os.path.join(REPO, 'train.py'), str(tmp_path / 'c.py')], capture_output=True,
                       text=True, cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS='1'), timeout=120)
    assert p.returncode == 1 and p.stderr.startswith('error: batch_size must be a int, got (2,)')
    assert len(p.stderr.strip().splitlines()) == 1 and 'c.py line 2' in p.stderr


FLAG_MISTAKES = [  # (entry point, arguments, the error); {done} = a train.py run
    (train.get_config, [f'--seed={BIG}'], 'an integer must fit in 64 bits'),
    (train.get_config, ['--batch_size=99999999999999999999'], 'batch_size=99999999999999999999 is out of range'),
    (sample.main, ['--ckpt={done}', '--hf={done}'], '--ckpt and --hf both name a model; pass one of them'),
    (sample.main, ['--ckpt={done}', '--prompt=x', '--prompt_file={done}/log.jsonl'], '--prompt and --prompt_file both give'),
    (sample.main, ['--ckpt={done}', '--suffix=x', '--suffix_file={done}/log.jsonl'], '--suffix and --suffix_file both give'),
    (sample.main, ['--ckpt={done}', f'--seed={BIG}'], 'seed=18446744073709551616 is out of range'),
    (E.main, ['--task=mbpp', '--ckpt={done}', '--hf={done}', '--data_path=x'], '--ckpt=.* and --hf=.* both name a model'),
    (E.main, ['--task=humaneval', '--ckpt={done}', '--data_path=x.jsonl'],
     r'--data_path is not used by --task=humaneval \(only by mbpp, infill, elbo'),
    (E.main, ['--task=elbo', '--ckpt={done}', '--gen_length=16'], '--gen_length is not used by --task=elbo'),
    (E.main, ['--task=infill', '--ckpt={done}', '--steps=4'], '--steps is not used by --task=infill'),
    (E.main, ['--task=elbo', '--ckpt={done}', '--n_infill=4'], '--n_infill is not used by --task=elbo'),
    (E.main, ['--task=humaneval', '--canonical', '--ckpt={done}'], '--canonical scores fixed answers, no model: drop --ckpt'),
    (E.main, ['--task=elbo', '--ckpt={done}', f'--seed={BIG}'], 'seed=18446744073709551616 is out of range'),
    (bench.main, ['--ckpt={done}', '--hf={done}'], 'both name a model'),
    (bench.main, [f'--seed={BIG}'], 'an integer must fit in 64 bits'),
    (X.main, ['curves', '--threads=0'], r'--threads=0 is out of range'),
]


@pytest.mark.parametrize('main,args,match', FLAG_MISTAKES, ids=[f'{m.__module__} {" ".join(a)}' for m, a, _ in FLAG_MISTAKES])
def test_flag_mistakes(env, main, args, match):
    with pytest.raises(UserError, match=match):
        main([a.format(done=env.done) for a in args])


# -----------------------------------------------------------------------------
# 1 and 3. the prepare scripts: never over another dataset, never a mixed directory, never a hang

DATA_MISTAKES = [  # (script, arguments, the error); {pt} pre-training set, {sft} SFT set, {src}/{src2} sources
    (pycode.main, ['--roots={src2}', '--stdlib=false', '--out_dir={pt}'],
     r"{pt} holds another dataset \(roots .*, this one .*src2.*\); pass another --out_dir, or --overwrite"),
    (pycode.main, ['--roots={src}', '--stdlib=false', '--tokenizer=qwen3', '--out_dir={pt}'],
     r"holds another dataset \(tokenizer 'bytes', this one 'qwen3'\)"),
    (pycode.main, ['--roots={src}', '--stdlib=false', '--skip_tests=true', '--out_dir={pt}'], r"\(skip_tests False"),
    (prepare_custom.main, ['--input={src2}', '--out_dir={pt}'], r"holds another dataset \(source 'pycode', this one 'custom'\)"),
    (prepare_custom.main, ['--input={src}', '--out_dir={sft}'], r"holds another dataset \(kind 'sft', this one 'pretrain'\)"),
    (pycode_sft.main, ['--roots={src}', '--stdlib=false', '--out_dir={pt}'], r"\(kind 'pretrain', this one 'sft'\)"),
    (pycode.main, ['--roots={src}', '--stdlib=false', '--out_dir={bare}'], r"holds dataset files \(train.bin\) without a readable meta.json"),
    (prepare_custom.main, ['--input={fifo}', '--out_dir={new}'], r"--input .*fifo is not a regular file"),
]


@pytest.mark.parametrize('main,args,match', DATA_MISTAKES, ids=[f'{m.__module__} {" ".join(a)}' for m, a, _ in DATA_MISTAKES])
def test_prepare_never_replaces_another_dataset(env, tmp_path, main, args, match):
    shutil.copytree(env.pt, tmp_path / 'pt')
    shutil.copytree(env.sft, tmp_path / 'sft')
    (tmp_path / 'bare').mkdir()
    (tmp_path / 'bare' / 'train.bin').write_bytes(b'\1\2')
    os.mkfifo(tmp_path / 'fifo')
    fmt = dict(pt=tmp_path / 'pt', sft=tmp_path / 'sft', src=env.src, src2=env.src2, bare=tmp_path / 'bare',
               fifo=tmp_path / 'fifo', new=tmp_path / 'new')
    before = files(tmp_path)
    with pytest.raises(UserError, match=match.format(**fmt)):
        main([a.format(**fmt) for a in args])
    assert files(tmp_path) == before and not (tmp_path / 'new').exists()


def test_prepare_rebuilds_overwrites_whole_and_skips_pipes(env, tmp_path):
    shutil.copytree(env.sft, tmp_path / 'sft')
    # --overwrite: a pre-training set replaces the SFT set, and none of the SFT files stays behind
    prepare_custom.main([f'--input={env.src}', f'--out_dir={tmp_path / "sft"}', '--overwrite'])
    assert sorted(os.listdir(tmp_path / 'sft')) == ['meta.json', 'train.bin', 'val.bin']
    assert load_meta(tmp_path / 'sft')['kind'] == 'pretrain'
    # the same sources and tokenizer again: a rebuild, allowed
    prepare_custom.main([f'--input={env.src}', f'--out_dir={tmp_path / "sft"}'])
    # a named pipe among the sources is skipped and counted, not read (which would block for ever)
    shutil.copytree(env.src, tmp_path / 'src')
    os.mkfifo(tmp_path / 'src' / 'pipe.py')
    p = subprocess.run([sys.executable, '-m', 'data.prepare_custom', f'--input={tmp_path / "src"}',
                        f'--out_dir={tmp_path / "ds"}'], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    assert load_meta(tmp_path / 'ds')['skipped'] == {'special': 1}
    pycode_sft.prepare(roots=[str(tmp_path / 'src')], stdlib=False, out_dir=str(tmp_path / 'sft2'), max_len=256,
                       val_frac=0.25)
    assert load_meta(tmp_path / 'sft2')['skipped'].get('special') == 1


META_MISTAKES = [  # (meta.json text, the error)
    ('[1, 2]', r"meta.json holds a list, not a JSON object"),
    ('{}', r"meta.json: 'tokenizer' must be a str, got nothing"),
    ('{"tokenizer": "bytes", "vocab_size": "263", "mask_id": 1, "eos_id": 2, "pad_id": 3, "dtype": "uint16"}',
     r"'vocab_size' must be a non-negative int, got '263'"),
    ('{"tokenizer": "bytes", "vocab_size": 263, "mask_id": 1, "eos_id": 2, "pad_id": 3, "dtype": "int8"}',
     r"dtype 'int8' is unknown \(use uint16 or uint32\)"),
    ('{"tokenizer": "bytes", "vocab_size": 263, "mask_id": 1, "eos_id": 2, "pad_id": 3, "dtype": "uint16", '
     '"train_tokens": -4}', r"'train_tokens' must be a non-negative int, got -4"),
    ('{"tokenizer": ', 'meta.json is corrupt'),
]


@pytest.mark.parametrize('text,match', META_MISTAKES, ids=[c[1] for c in META_MISTAKES])
def test_meta_json_checked_field_by_field(env, tmp_path, text, match):
    (tmp_path / 'meta.json').write_text(text)
    with pytest.raises(UserError, match=match):
        load_meta(tmp_path)
    with pytest.raises(UserError, match=match):  # what train.py says about it
        train.main(argv(dataset=tmp_path, out_dir=tmp_path / 'out'))
    assert not (tmp_path / 'out').exists()


# -----------------------------------------------------------------------------
# 1. --out: never a file of another kind, an earlier result only with --overwrite

OUT_MISTAKES = [  # (entry point, arguments, the error); {run} a run, {res} an eval.py result, {pic} a picture
    (E.main, ['--task=mbpp', '--canonical', '--data_path={mbpp}', '--out={run}/ckpt.pt'],
     r"--out=.*ckpt.pt exists and is not an earlier eval.py result; it is never replaced: pick another path"),
    (E.main, ['--task=mbpp', '--canonical', '--data_path={mbpp}', '--out={run}/log.jsonl'], r"is not an earlier eval.py result"),
    (E.main, ['--task=mbpp', '--canonical', '--data_path={mbpp}', '--out={res}', '--overwrite'], r"is not an earlier eval.py"),
    (E.main, ['--task=mbpp', '--canonical', '--data_path={mbpp}', '--out={evalres}'],
     r"--out=.*exists; pick another path, or pass --overwrite to replace it"),
    (bench.main, ['--case=train', '--quick', '--out={run}/ckpt.pt'], r"exists and is not an earlier bench.py result"),
    (bench.main, ['--case=train', '--quick', '--out={evalres}', '--overwrite'], r"is not an earlier bench.py result"),
    (sample.main, ['--ckpt={run}', '--frames={run}/notes.png'], r"--frames=.*notes.png exists and is not a picture"),
    (sample.main, ['--ckpt={run}', '--frames={pic}'], r"--frames=.*exists; pick another path, or pass --overwrite"),
]


@pytest.mark.parametrize('main,args,match', OUT_MISTAKES, ids=[f'{m.__module__} {" ".join(a)}' for m, a, _ in OUT_MISTAKES])
def test_out_never_replaces_another_kind(env, run_dir, tmp_path, main, args, match):
    (run_dir / 'notes.png').write_text('my notes\n')
    (tmp_path / 'res.json').write_text('{"rows": []}')
    (tmp_path / 'pic.html').write_text('<html><body>my picture</body></html>\n')
    (tmp_path / 'evalres.json').write_text(json.dumps(dict(summary={}, config={}, problems=[])))
    fmt = dict(run=run_dir, mbpp=env.mbpp, res=tmp_path / 'res.json', pic=tmp_path / 'pic.html',
               evalres=tmp_path / 'evalres.json')
    before = files(tmp_path)
    with pytest.raises(UserError, match=match):
        main([a.format(**fmt) for a in args])
    assert files(tmp_path) == before


def test_out_replaces_its_own_kind_with_overwrite(env, tmp_path):
    out = tmp_path / 'r.json'
    E.main(['--task=mbpp', '--canonical', f'--data_path={env.mbpp}', f'--out={out}'])
    E.main(['--task=mbpp', '--canonical', f'--data_path={env.mbpp}', f'--out={out}', '--overwrite'])
    assert json.loads(out.read_text())['summary']['pass@1'] == 1.0
    assert os.listdir(tmp_path) == ['r.json']  # no temporary file left


# -----------------------------------------------------------------------------
# 1 and 3. experiments/run.py: never a smaller table, never a traceback on a damaged run

@pytest.fixture
def published(tmp_path):
    """A copy of the published curves table and picture."""
    out = tmp_path / 'results'
    out.mkdir()
    for name in ('curves.json', 'curves.png'):
        shutil.copy(os.path.join(REPO, 'experiments', 'results', name), out / name)
    return out


EXPERIMENT_MISTAKES = [  # (damage done to a copy of a finished run named out-toy, the error)
    ('no runs at all', lambda run: shutil.rmtree(run), r"curves: no finished run found under --runs=.*; nothing written"),
    ('a truncated ckpt.pt', lambda run: (run / 'ckpt.pt').write_bytes((run / 'ckpt.pt').read_bytes()[:300]),
     r"ckpt.pt is not a readable checkpoint"),
    ('a malformed log.jsonl', lambda run: (run / 'log.jsonl').write_text('{"iter": 1, "loss": 2.0}\n{"iter": \n'),
     r"log.jsonl line 2 is not a train.py log record"),
    ('a log of lists', lambda run: (run / 'log.jsonl').write_text('[1, 2]\n'), r"log.jsonl line 1 is not a train.py log"),
    ('fewer runs than published', lambda run: None, r"curves: .*curves.json holds \d+ rows/runs, this one 1; nothing written"),
]


@pytest.mark.parametrize('what,damage,match', EXPERIMENT_MISTAKES, ids=[c[0] for c in EXPERIMENT_MISTAKES])
def test_experiments_never_shrink_a_table(env, tmp_path, published, monkeypatch, what, damage, match):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(env.done, tmp_path / 'runs' / 'out-toy')
    damage(tmp_path / 'runs' / 'out-toy')
    before = files(published)
    with pytest.raises(UserError, match=match):
        X.main(['curves', f'--runs={tmp_path / "runs"}', f'--out_dir={published}'])
    assert files(published) == before


def test_experiments_overwrite_replaces_a_table(env, tmp_path, published, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(env.done, tmp_path / 'runs' / 'out-toy')
    X.main(['curves', f'--runs={tmp_path / "runs"}', f'--out_dir={published}', '--overwrite'])
    assert list(json.loads((published / 'curves.json').read_text())['curves']) == ['mdm']
    assert sorted(os.listdir(published)) == ['curves.json', 'curves.png']  # written whole, no temporary files


# -----------------------------------------------------------------------------
# 3. task files, record by record

MBPP_MISTAKES = [  # (one JSONL line, the error)
    (json.dumps(dict(text='Add.', code='', test_list='assert f() == 1')),
     r"m.jsonl line 1: not an MBPP record: 'test_list' must be a list of strings, got str 'assert f\(\) == 1'"),
    (json.dumps(dict(code='x = 1', test_list=['assert x'])), r"line 1: not an MBPP record: no field 'text'"),
    (json.dumps([1, 2]), r"line 1: not an MBPP record: a JSON list, not an object"),
    (json.dumps(dict(text='Add.', test_list=[])), r"line 1: not an MBPP record: an empty test_list"),
    (json.dumps(dict(text=5, test_list=['assert 1'])), r"'text' must be a string, got int"),
    (json.dumps(dict(text='A', test_list=['assert 1'], test_imports='import os')), r"'test_imports' must be a list of strings"),
    (json.dumps(dict(text='A', test_list=['assert 1', 2])), r"'test_list' must be a list of strings, got list"),
    ('{oops', r"line 1: not an MBPP record: not valid JSON"),
]


@pytest.mark.parametrize('line,match', MBPP_MISTAKES, ids=[c[1] for c in MBPP_MISTAKES])
def test_mbpp_records(tmp_path, line, match):
    (tmp_path / 'm.jsonl').write_text(line + '\n')
    with pytest.raises(UserError, match=match):
        E.load_mbpp(str(tmp_path / 'm.jsonl'))


HE = dict(task_id='HumanEval/0', prompt='def f():\n', entry_point='f', test='def check(c):\n    assert c() == 1\n')
MB = dict(task_id=11, text='Return 2.', code='def g():\n    return 2', test_list=['assert g() == 2'] * 3)
CODA_MISTAKES = [  # (task, record, the error)
    ('humanevalplus', dict(HE, prompt=5), r"line 1: 'prompt' must be a string, got int"),
    ('humanevalplus', dict(HE, test=['x']), r"'test' must be a string, got list"),
    ('humanevalplus', dict(HE, task_id=None), r"'task_id' must be an integer or a string, got NoneType"),
    ('humanevalplus', {k: v for k, v in HE.items() if k != 'entry_point'}, r"no field 'entry_point'"),
    ('mbppplus', dict(MB, prompt='x', test_list='assert 1'), r"'test_list' must be a list of strings, got str"),
    ('mbpp', dict(MB, task_id=[11]), r"'task_id' must be an integer or a string, got list"),
    ('mbpp', dict(MB, text=None), r"'text' must be a string, got NoneType"),
    ('mbpp', dict(MB, code=7), r"'code' must be a string, got int"),
    ('mbpp', dict(MB, test_list=MB['test_list'][:2]), r"line 1: task 11 has 2 tests"),
]


@pytest.mark.parametrize('task,rec,match', CODA_MISTAKES, ids=[c[2] for c in CODA_MISTAKES])
def test_coda_protocol_records(tmp_path, task, rec, match):
    (tmp_path / 't.jsonl').write_text(json.dumps(rec) + '\n')
    with pytest.raises(UserError, match=match):
        C.load_problems(task, str(tmp_path / 't.jsonl'))


# -----------------------------------------------------------------------------
# 4. evaluation matches its model

@pytest.fixture(scope='module')
def qwen_labelled(env):
    """The tiny run's checkpoint, labelled as read with Qwen3's tokenizer."""
    ck = torch.load(env.done / 'ckpt.pt', weights_only=True)
    (env.root / 'qwen').mkdir()
    torch.save(dict(ck, tokenizer='qwen3'), env.root / 'qwen' / 'ckpt.pt')
    return env.root / 'qwen'


MODEL_MISMATCHES = [  # (arguments, the error)
    (['--task=elbo', '--ckpt={qwen}', '--data_path={pt}'],
     r"pycode was tokenized with 'bytes', the model reads 'qwen3'; pass --data_path of a dataset made with"),
    (['--task=elbo', '--ckpt={done}', '--ctx_len=5000'], r"--ctx_len=5000 exceeds the model's context of 4096 tokens"),
    (['--task=infill', '--ckpt={done}', '--ctx_len=4097'], r"exceeds the model's context of 4096"),
    (['--protocol=coda', '--task=mbpp', '--ckpt={done}', '--data_path={mbpp}'],
     r"--protocol=coda prompts with the chat template \(format=instruct\), but this model was trained from scratch "
     r"with objective=mdm, never on chat; pass --format=completion"),
]


@pytest.mark.parametrize('args,match', MODEL_MISMATCHES, ids=[c[1][:40] for c in MODEL_MISMATCHES])
def test_evaluation_matches_its_model(env, qwen_labelled, args, match):
    with pytest.raises(UserError, match=match):
        E.main([a.format(qwen=qwen_labelled, done=env.done, pt=env.pt, mbpp=env.mbpp) for a in args])


def test_same_tokenizer_by_behaviour(tmp_path):
    import lzma
    from lib.tokenizer import load_tokenizer
    bytes_tok = load_tokenizer('bytes')
    assert E.same_tokenizer(bytes_tok, 'bytes') and not E.same_tokenizer(bytes_tok, 'qwen3')
    # Qwen3's tokenizer.json in a model directory of its own: the same tokenizer by another name
    with lzma.open(os.path.join(REPO, 'data', 'qwen3_tokenizer', 'tokenizer.json.xz')) as f:
        (tmp_path / 'tokenizer.json').write_bytes(f.read())
    shutil.copy(os.path.join(REPO, 'data', 'qwen3_tokenizer', 'tokenizer_config.json'), tmp_path)
    qwen = load_tokenizer('qwen3')
    assert E.same_tokenizer(qwen, str(tmp_path)) and not E.same_tokenizer(qwen, '/no/such/tokenizer')


# -----------------------------------------------------------------------------
# 5. the fp16 loss scale survives a resume; a second Ctrl-C on XLA ends cleanly

def test_grad_scaler_state_is_checkpointed(env, tmp_path):
    from model import Transformer, make_config
    cfg = train.TrainConfig(out_dir=str(tmp_path))
    model = Transformer(make_config('tiny', vocab_size=264, mask_token_id=259))
    opt = torch.optim.AdamW(model.parameters())
    ONE = SimpleNamespace(master=True, fsdp=False, xla=False)  # one process
    scaler = torch.amp.GradScaler('cpu', enabled=True)
    scaler.scale(torch.ones(()))
    scaler.update(1024.0)  # the scale an fp16 run had backed off to
    train.save_checkpoint(cfg, ONE, model, opt, dict(tokenizer='bytes'), 7, 1.0, scaler)
    ck = train.load_checkpoint(str(tmp_path / 'ckpt.pt'))
    fresh = torch.amp.GradScaler('cpu', enabled=True)
    assert train.resume_state(ONE, ck, torch.optim.AdamW(model.parameters()), fresh) == (7, 1.0)
    assert fresh.get_scale() == 1024.0 and fresh.state_dict() == scaler.state_dict()
    off = torch.amp.GradScaler('cpu', enabled=False)  # float32 / bfloat16 runs store none and load none
    train.save_checkpoint(cfg, ONE, model, opt, dict(tokenizer='bytes'), 7, 1.0, off)
    assert train.load_checkpoint(str(tmp_path / 'ckpt.pt'))['scaler'] is None
    train.resume_state(ONE, ck, torch.optim.AdamW(model.parameters()), off)


FAKE_XLA = '''
"""A stand-in for torch_xla.launch's process layout: a pool of spawned workers, each running the
loop in a thread while its main thread waits (torch_xla._internal.pjrt.run_multiprocess)."""
import concurrent.futures, multiprocessing, os, threading, time


def _loop(i, ready):
    from types import SimpleNamespace
    from lib.runtime import stop_on_signal
    with stop_on_signal(SimpleNamespace(out_dir='out')) as stop:
        open(os.path.join(ready, str(i)), 'w').close()
        while not stop:
            time.sleep(0.01)
        time.sleep(120)  # a slow checkpoint: only a second Ctrl-C ends it


def _worker(i, ready):
    t = threading.Thread(target=_loop, args=(i, ready))
    t.start()
    t.join()


def launch(fn, args=()):
    ready = os.environ['FAKE_XLA_READY']
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context('spawn')) as ex:
        return list(ex.map(_worker, range(2), [ready] * 2))
'''


def test_xla_second_ctrl_c_exits_cleanly(tmp_path):
    (tmp_path / 'fake' / 'torch_xla').mkdir(parents=True)
    (tmp_path / 'fake' / 'torch_xla' / '__init__.py').write_text(FAKE_XLA)
    (tmp_path / 'ready').mkdir()
    env = dict(os.environ, PYTHONPATH=f"{tmp_path / 'fake'}{os.pathsep}{REPO}", FAKE_XLA_READY=str(tmp_path / 'ready'),
               OMP_NUM_THREADS='1')
    p = subprocess.Popen([sys.executable, os.path.join(REPO, 'train.py'), '--device=xla', f'--out_dir={tmp_path}/out'],
                         stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, start_new_session=True)
    deadline = time.time() + 120
    while len(os.listdir(tmp_path / 'ready')) < 2 and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    for _ in range(2):  # Ctrl-C twice: the terminal signals the whole process group
        os.killpg(p.pid, signal.SIGINT)
        time.sleep(0.5)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 1 and 'Traceback' not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith('error:')]
    assert errors == [f"error: interrupted twice; stopped at once; the last checkpoint in {tmp_path}/out is kept"], err
