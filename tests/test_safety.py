"""
Nothing the user has is lost, and a mistake is one line: python -m pytest tests/test_safety.py -q
Tables of mistakes, tool by tool. Each case asserts the error line and, where a file was at stake, that
every file is byte-identical afterwards. Almost all fail in the argument / config checks, in-process.
"""
import json
import os
import re
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
import speedrun
from evals import evaluation as E
import sample
import train
from conftest import error_line, tiny_pycode
from data import prepare_custom
from data.common import load_meta
from data.pycode import prepare as pycode
from data.pycode_sft import prepare as pycode_sft
from lib.cli import run_cli
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
     r"export_hf=.*hf already holds a model \(config.json\); pick another directory, or pass --overwrite"),
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
# 2. flags

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
    ('a ckpt.pt without its log', lambda run: (run / 'log.jsonl').unlink(), r"mdm: .*out-toy holds a ckpt.pt but no log.jsonl"),
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


# -----------------------------------------------------------------------------
# 5. nothing lost (part two): runs that collide, exports over old shards, a recipe that keeps every measurement

def test_two_runs_into_one_out_dir(env, tmp_path):
    """Two train.py processes started together into one new out_dir: one trains, the other is refused in one
    line naming it; the log holds the winner's iterations once each, in step with its checkpoint."""
    args = [sys.executable, os.path.join(REPO, 'train.py')] + argv(dataset=env.pt, out_dir=tmp_path / 'out',
                                                                    max_iters=10**6, eval_interval=0)
    procs = [subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, OMP_NUM_THREADS='1')) for _ in range(2)]
    deadline = time.time() + 120
    while all(p.poll() is None for p in procs) and time.time() < deadline:
        time.sleep(0.1)
    loser, winner = sorted(procs, key=lambda p: p.poll() is None)  # the one that ended first
    log = tmp_path / 'out' / 'log.jsonl'
    while (not log.exists() or len(log.read_text().splitlines()) < 3) and time.time() < deadline:
        time.sleep(0.1)
    winner.send_signal(signal.SIGTERM)  # it checkpoints and stops
    (_, lost), (_, won) = loser.communicate(timeout=60), winner.communicate(timeout=120)
    assert loser.returncode == 1 and lost == f"error: {tmp_path / 'out'} is in use by another train.py run " \
        f"(pid {winner.pid}); wait for it to end, or pick another out_dir\n"
    assert winner.returncode == 1 and 'error: stopped by SIGTERM' in won and 'Traceback' not in won
    iters = [json.loads(line)['iter'] for line in log.read_text().splitlines()]
    assert iters == list(range(1, len(iters) + 1))
    assert torch.load(tmp_path / 'out' / 'ckpt.pt', weights_only=True)['iter_num'] == iters[-1]
    assert sorted(os.listdir(tmp_path / 'out')) == ['ckpt.pt', 'log.jsonl']  # the lock file went with its run


def test_rollback_never_removes_another_writers_log(tmp_path):
    from lib.runtime import RunLog
    log = RunLog(SimpleNamespace(out_dir=str(tmp_path)), SimpleNamespace(master=True), 0)
    with pytest.raises(RuntimeError), log.rollback_on_error():
        log.append('{"iter": 1}')
        (tmp_path / 'other').write_text('{"iter": 7}\n')
        os.replace(tmp_path / 'other', tmp_path / 'log.jsonl')  # another process's log replaces this one's
        raise RuntimeError
    assert (tmp_path / 'log.jsonl').read_text() == '{"iter": 7}\n'


OLD_MODEL = {'config.json': '{"model_type": "qwen3"}', 'model.safetensors.index.json': '{"weight_map": {}}',
             'model-00001-of-00002.safetensors': 'old', 'model-00002-of-00002.safetensors': 'old',
             'tokenizer.json': '{}', 'generation_config.json': '{}'}
EXPORTS = [  # (what is in the directory, overwrite, the error or None); notes.md and model-card.md are the user's
    ('a sharded model', False, r"already holds a model \(config.json, generation_config.json, model-00001-of-00002."
                               r"safetensors, model-00002-of-00002.safetensors, model.safetensors.index.json, tokenizer.json\)"),
    ('a sharded model', True, None),
    ('only files of the user', False, None),
]


@pytest.mark.parametrize('what,overwrite,match', EXPORTS, ids=[f'{c[0]}, overwrite={c[1]}' for c in EXPORTS])
def test_export_replaces_a_model_whole(env, run_dir, tmp_path, capsys, what, overwrite, match):
    hf = tmp_path / 'hf'
    hf.mkdir()
    for name, text in {'notes.md': 'mine', 'model-card.md': 'mine', **(OLD_MODEL if 'sharded' in what else {})}.items():
        (hf / name).write_text(text)
    before = files(tmp_path)
    args = ['--init_from=resume', f'--out_dir={run_dir}', '--max_iters=0', f'--export_hf={hf}'] + ['--overwrite'] * overwrite
    if match:
        with pytest.raises(UserError, match=match):
            train.main(args)
        assert files(tmp_path) == before
        return
    train.main(args)
    after = files(hf)
    assert sorted(after) == ['config.json', 'model-card.md', 'model.safetensors', 'notes.md']
    assert after['notes.md'] == after['model-card.md'] == b'mine' and files(run_dir) == files(env.done)
    assert json.loads(after['config.json'])['nanocoda_tokenizer'] == 'bytes'  # a byte model has no tokenizer.json
    capsys.readouterr()
    texts = set()
    for flag in (f'--hf={hf}', f'--ckpt={run_dir}'):  # the export samples the checkpoint's tokens
        sample.main([flag, '--prompt=def f(x):', '--gen_length=8', '--num_samples=2', '--temperature=1'])
        texts.add(capsys.readouterr().out.rsplit('\n', 2)[0])  # (all but the timing line)
    assert len(texts) == 1


def stage_record(name, k):
    """A finished stage as speedrun.measure records it."""
    return dict(name=name, title=speedrun.STAGES[k]['title'], out_dir='', init_from='', objective='mdm', masking='none',
                attention='bidirectional', shift_logits=False, iters=4, tokens=512, train_seconds=60.0 + k, val_bpb=5.0,
                val_on='corpus', infill=dict(mode='diffusion', tasks=2, edit_similarity=0.5, exact_match=0.0, cond_bpb=4.0),
                sample_prompt='def ', sample='f(x)', eval_seconds=1.0)


def test_recipe_keeps_every_measurement(env, tmp_path):
    """--resume after a stage's checkpoint was damaged: it is reported as such, the others keep their figures."""
    run = tmp_path / 'run'
    for k, st in enumerate(speedrun.STAGES):
        shutil.copytree(env.done, run / f"{k}-{st['name']}")
    (run / 'report.json').write_text(json.dumps(dict(command='', preset='tiny', torch_threads=1, stages=[
        stage_record(st['name'], k) for k, st in enumerate(speedrun.STAGES)])))
    (run / '2-midtrain' / 'ckpt.pt').write_bytes((run / '2-midtrain' / 'ckpt.pt').read_bytes()[:300])
    argv = [f'--run_dir={run}', f'--dataset={env.pt}', f'--sft_dataset={env.sft}', '--resume',
            *[f"--{st['name']}_iters=4" for st in speedrun.STAGES]]
    stages = lambda: [{k: v for k, v in s.items() if k != 'cum_tokens'} for s in json.loads((run / 'report.json').read_text())['stages']]
    before = stages()
    with pytest.raises(UserError, match=r"stage midtrain: .*2-midtrain/ckpt.pt is not a readable checkpoint"):
        speedrun.main(argv)
    after = stages()
    assert [after[k] for k in (0, 1, 3)] == [before[k] for k in (0, 1, 3)]
    assert 'is not a readable checkpoint' in after[2]['unreadable']
    assert 'cannot be read' in (run / 'report.md').read_text()


# -----------------------------------------------------------------------------
# 6. what goes wrong outside the program is one line: a read-only, forbidden or full disk, a file in a path, a
# half-set torchrun environment, a damaged config.json

OS_FAILURES = [  # (command, arguments, errno); {x} = the broken directory
    (train.main, ['--out_dir={x}/out'], 'EROFS'),
    (train.main, ['--out_dir={x}/out'], 'EACCES'),
    (train.main, ['--init_from=resume', '--out_dir={run}', '--max_iters=0', '--export_hf={x}/hf'], 'EROFS'),
    (pycode.main, ['--roots={src}', '--stdlib=false', '--out_dir={x}/ds'], 'ENOSPC'),
    (prepare_custom.main, ['--input={src}', '--out_dir={x}/ds'], 'EACCES'),
    (E.main, ['--task=mbpp', '--canonical', '--data_path={mbpp}', '--out={x}/r.json'], 'EROFS'),
    (bench.main, ['--case=train', '--quick', '--out={x}/b.json'], 'ENOSPC'),
    (X.main, ['curves', '--runs={run}', '--out_dir={x}/results'], 'EACCES'),
    (speedrun.main, ['--run_dir={x}/speedrun', '--dataset={pt}', '--sft_dataset={sft}'], 'EROFS'),
]


@pytest.mark.parametrize('main,args,code', OS_FAILURES, ids=[f'{m.__module__} {c}' for m, _, c in OS_FAILURES])
def test_os_failures_are_one_line(env, run_dir, broken, capsys, monkeypatch, main, args, code):
    x = broken(code)
    fmt = dict(x=x, run=run_dir, src=env.src, mbpp=env.mbpp, pt=env.pt, sft=env.sft)
    args = [a.format(**fmt) for a in (argv(dataset=env.pt) if main is train.main else []) + args]
    why = {'EROFS': 'Read-only file system', 'EACCES': 'Permission denied', 'ENOSPC': 'No space left on device'}[code]
    assert re.fullmatch(rf"error: {x}\S*: {why}; .+", error_line(main, args, capsys, monkeypatch))
    assert os.listdir(x) == []


def test_disk_full_during_a_checkpoint_keeps_the_old_one(env, tmp_path, small_disk, capsys, monkeypatch):
    """The next checkpoint does not fit (a real full tmpfs, or torch's zip writer failing as it does on one):
    one line, and the previous ckpt.pt and log.jsonl stay byte-identical."""
    run = (small_disk or tmp_path) / 'run'
    shutil.copytree(env.done, run)
    if small_disk is None:
        def full(obj, f):
            f.write(b'\0' * 1000)
            try:
                raise OSError(28, 'No space left on device')
            except OSError:
                raise RuntimeError('[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598')
        monkeypatch.setattr(torch, 'save', full)
    before = files(run)
    line = error_line(train.main, argv(dataset=env.pt, out_dir=run, init_from='resume', max_iters=6), capsys, monkeypatch)
    assert line == f"error: {run / 'ckpt.pt'}: No space left on device; free some space or pick another disk"
    assert files(run) == before


def test_launch_and_typed_path_errors_are_one_line(env, tmp_path):
    """Each on the command line: one `error:` line, exit status 1."""
    (tmp_path / 'file').write_text('')
    (tmp_path / 'hf').mkdir()
    (tmp_path / 'hf' / 'config.json').write_text('{"model_type": ')
    cases = [(['train.py', '--plan', f'--init_from={tmp_path / "hf"}'], {}, r"hf/config.json is not valid JSON"),
             (['train.py', *argv(dataset=env.pt, out_dir=tmp_path / 'out', grad_accum=2)], {'WORLD_SIZE': '2'},
              r"WORLD_SIZE=2 is set but RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT are not; launch with torchrun"),
             (['data/pycode/prepare.py', f'--roots={env.src}', '--stdlib=false', f'--out_dir={tmp_path}/file/ds'], {},
              r"file/ds: Not a directory; a part of the path is a file"),
             (['experiments/run.py', 'curves', f'--out_dir={tmp_path}/file/results'], {}, r"/file: Not a directory")]
    procs = [subprocess.Popen([sys.executable, *args], cwd=REPO, stderr=subprocess.PIPE, text=True,
                              env={k: v for k, v in {**os.environ, 'OMP_NUM_THREADS': '1', **env_vars}.items()
                                   if k not in ('RANK', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')})
             for args, env_vars, _ in cases]
    for p, (args, _, match) in zip(procs, cases):
        err = p.communicate(timeout=120)[1]
        assert p.returncode == 1 and err.count('\n') == 1 and err.startswith('error: ') and re.search(match, err), (args, err)
    assert not (tmp_path / 'out').exists()


# -----------------------------------------------------------------------------
# 7. no flag silently ignored, and no answer that misleads

@pytest.fixture(scope='module')
def models(env):
    """The tiny run relabelled as an AR model, and a tiny model trained with variable-length rows."""
    from dataclasses import asdict
    from lib.tokenizer import load_tokenizer
    from model import Transformer, make_config
    ck = torch.load(env.done / 'ckpt.pt', weights_only=True)
    (env.root / 'ar').mkdir()
    torch.save(dict(ck, model_config=dict(ck['model_config'], attention='causal')), env.root / 'ar' / 'ckpt.pt')
    tok = load_tokenizer('bytes')
    cfg = make_config('tiny', attention='bidirectional', vocab_size=tok.expand_id + 1, mask_token_id=tok.mask_id)
    (env.root / 'varlen').mkdir()
    torch.save(dict(ck, model=Transformer(cfg).state_dict(), model_config=asdict(cfg),
                    train_config=dict(ck['train_config'], varlen_rate=0.5)), env.root / 'varlen' / 'ckpt.pt')
    return SimpleNamespace(ar=env.root / 'ar', varlen=env.root / 'varlen')


VARLEN = ['--prompt=def f(x):\n', '--suffix=\n    return y\n', '--variable_length']
IGNORED = [  # (command, arguments, the error); {done} bidirectional, {ar} causal, {varlen} a varlen model
    (sample.main, ['--ckpt={done}', *VARLEN, '--steps=8'], r"--steps is not used by --variable_length \(only by fixed-length diffusion\); drop it"),
    (sample.main, ['--ckpt={done}', *VARLEN, '--block_length=8'], r"--block_length is not used by --variable_length"),
    (sample.main, ['--ckpt={done}', *VARLEN, '--gen_length=8'], r"--gen_length is not used by --variable_length \(only by fixed-length diffusion, a varlen model's fixed hole, AR decoding\)"),
    (sample.main, ['--ckpt={done}', *VARLEN, '--schedule=coda'], r"--schedule is not used by --variable_length"),
    (sample.main, ['--ckpt={done}', '--canvas=4'], r"--canvas is not used by fixed-length diffusion \(only by --variable_length\)"),
    (sample.main, ['--ckpt={ar}', '--steps=8'], r"--steps is not used by AR decoding"),
    (sample.main, ['--ckpt={varlen}', *VARLEN[:2], '--steps=8'], r"--steps is not used by a varlen model's fixed hole"),
    (sample.main, ['--ckpt={varlen}', *VARLEN[:2], '--gen_length=8', '--cache=dual'],  # (names no flag the user did not type)
     r"^cache='dual': the hole's canvas grows and shrinks as it is filled, which moves the suffix's positions, so no "
     r"cached K/V stays exact; use cache=none$"),
    (E.main, ['--task=mbpp', '--canonical', '--data_path={mbpp}', '--steps=8'], r"--steps is not used by --canonical"),
    (E.main, ['--task=infill', '--ckpt={done}', '--canvas=4'], r"--canvas is used by --variable_length only"),
    (train.main, ['--objective=mdm', '--init_from={ar}', '--attn_anneal_iters=10'],
     r"attn_anneal_iters=10 is longer than the run \(max_iters=4\): it would end with attention still partly causal"),
    (train.main, ['--plan', '--device=xla', '--parallel=fsdp', '--world_size=3', '--batch_size=8'],
     r"batch_size=8 is split over the 3 devices of the SPMD mesh"),  # what training would say
    (speedrun.main, ['--n_mbpp=3'], r"--n_mbpp is not used without --mbpp"),
    (speedrun.main, ['--mbpp={bad_mbpp}'], r"bad.jsonl line 1: not an MBPP record"),  # before any stage trains
    (speedrun.main, ['--resume'], r"--resume: .*new does not exist; nothing to resume: drop --resume"),
    (speedrun.main, ['--resume', '--run_dir={empty}'], r"--resume: .*empty holds no stage checkpoint"),
]


@pytest.mark.parametrize('main,args,match', IGNORED, ids=[f'{m.__module__} {" ".join(a)}' for m, a, _ in IGNORED])
def test_no_flag_silently_ignored(env, models, tmp_path, main, args, match):
    (tmp_path / 'bad.jsonl').write_text('{"text": "no tests"}\n')
    (tmp_path / 'empty').mkdir()
    fmt = dict(done=env.done, ar=models.ar, varlen=models.varlen, mbpp=env.mbpp, bad_mbpp=tmp_path / 'bad.jsonl',
               empty=tmp_path / 'empty')
    args = [a.format(**fmt) for a in args]
    if main is train.main:
        args = argv(dataset=env.pt, out_dir=tmp_path / 'out') + args
    elif main is speedrun.main:
        args = [f'--run_dir={tmp_path / "new"}', f'--dataset={env.pt}', f'--sft_dataset={env.sft}'] + args
    before = files(tmp_path)
    with pytest.raises(UserError, match=match):
        main(args)
    assert files(tmp_path) == before
