"""
train.py: python -m pytest tests/test_train.py -q
Every test prepares a tiny corpus in a temp dir and trains the 'tiny' preset for a few steps,
in-process through train.main(argv) (subprocesses only for the CLI's error lines, torchrun and XLA).
"""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import train
from conftest import tiny_pycode
from data.pycode_sft.prepare import prepare as prepare_sft
from model import Transformer, UserError, make_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(model='tiny', seq_len=32, batch_size=4, max_iters=8, warmup_iters=2, lr=3e-3, min_lr=3e-4,
             eval_interval=0, eval_iters=2, elbo_samples=1, log_interval=1, checkpoint_interval=0, sample_interval=0)


def module_source(i):
    """A small module of documented functions (SFT examples) that also makes a pre-training corpus."""
    return textwrap.dedent(f'''\
        import math


        def scale_{i}(x, k={i}):
            """Multiply x by {i} and add one."""
            return x * k + 1


        def norm_{i}(a, b):
            """Return the length of the vector (a, b)."""
            return math.sqrt(a * a + b * b) + {i}


        class Counter{i}:
            def tick(self, n=1):
                """Advance the counter by n steps."""
                self.n = getattr(self, "n", 0) + n
                return self.n
        ''')


pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('train')
    src = tiny_pycode(root, [module_source(i) * 3 for i in range(12)], name='mod')  # tests/conftest.py
    prepare_sft(roots=[str(src)], stdlib=False, out_dir=str(root / 'sft'), max_len=256, val_frac=0.25)
    return root


def argv(**kw):
    return [f'--{k}={v}' for k, v in {**SMALL, **kw}.items()]


def run(data, out, **kw):
    """Train in-process; returns the records of out/log.jsonl."""
    kw.setdefault('dataset', str(data / 'pycode'))
    train.main(argv(out_dir=str(out), **kw))
    with open(os.path.join(out, 'log.jsonl')) as f:
        return [json.loads(line) for line in f]


def losses(recs):
    return [r['loss'] for r in recs]


def cli(*args, env=None):
    env = dict(env or os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, os.path.join(REPO, 'train.py'), *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300)


# -----------------------------------------------------------------------------

def test_config_file_and_overrides(tmp_path):
    cfg_file = tmp_path / 'c.py'
    cfg_file.write_text("import math\nobjective = 'ar'\nlr = 1\nmax_iters = 7\n_private = 'ignored'\n")
    cfg = train.get_config([str(cfg_file), '--max_iters=9', 'compile=true', '--masking=pretrain'])
    assert (cfg.objective, cfg.lr, cfg.max_iters, cfg.compile, cfg.masking) == ('ar', 1.0, 9, True, 'pretrain')
    assert isinstance(cfg.lr, float) and cfg.model == 'toy'
    # every DiffusionOptions field is a config key with the same name
    from diffusion import DiffusionOptions
    from dataclasses import fields
    assert {f.name for f in fields(DiffusionOptions)} <= {f.name for f in fields(train.TrainConfig)}
    with pytest.raises(UserError, match="unknown config key 'max_iter'.*valid keys:.*max_iters"):
        train.get_config(['--max_iter=3'])
    with pytest.raises(UserError, match='max_iters must be a int'):
        train.get_config(['--max_iters=ten'])
    cfg_file.write_text("compile = 'yes'\n")
    with pytest.raises(UserError, match='compile must be a bool'):
        train.get_config([str(cfg_file)])


CONFIG_MISTAKES = [  # (config file text, the error)
    ('batch_size = 2,\n', r"batch_size must be a int, got \(2,\) \(a trailing comma makes a tuple\) \(from .*c\.py line 1\)"),
    ('lr = None\n', r"lr must be a float, got None \(from .*c\.py line 1\)"),
    ('import math\nbatch_size = [2, 4]\n', r"batch_size must be a int, got \[2, 4\] \(from .*c\.py line 2\)"),
    ('max_iters = 10 +\n', r"c\.py line 1: invalid syntax; fix the config file"),
    ('lr = learning_rate\n', r"c\.py line 1: NameError: name 'learning_rate' is not defined"),
    ('x = 3\nmax_iters = x // 0\n', r"c\.py line 2: ZeroDivisionError"),
    ('learning_rate = 0.1\n', r"unknown config key 'learning_rate' \(from .*c\.py line 1\)"),
    (f'seed = {2**64}\n', r"seed=18446744073709551616 is out of range: an integer must fit in 64 bits"),
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


def test_mdm_loss_falls_and_checkpoint_format(data, tmp_path):
    recs = run(data, tmp_path, max_iters=40, eval_interval=20, lr=1e-2, min_lr=1e-3, batch_size=8)
    first, last = sum(losses(recs)[:5]) / 5, sum(losses(recs)[-5:]) / 5
    assert last < first - 1.0, (first, last)  # from ~log(260) = 5.6 nats
    assert [r['iter'] for r in recs] == list(range(1, 41))
    assert {'iter', 'loss', 'lr', 'tokens_per_s'} <= set(recs[0])
    val = [r for r in recs if 'val_loss' in r]
    assert [r['iter'] for r in val] == [20, 40] and val[1]['val_loss'] < 5.0
    assert val[1]['val_bpb'] == pytest.approx(val[1]['val_loss'] / 0.6931471805599453)
    ck = torch.load(tmp_path / 'ckpt.pt', map_location='cpu', weights_only=True)
    assert ck['iter_num'] == 40 and ck['tokenizer'] == 'bytes' and ck['best_val_loss'] == val[1]['val_loss']
    assert ck['model_config']['attention'] == 'bidirectional' and ck['model_config']['mask_token_id'] == 259
    assert ck['train_config']['max_iters'] == 40 and {'optimizer', 'rng', 'model'} <= set(ck)
    assert not os.path.exists(tmp_path / 'ckpt.pt.tmp')


def test_resume_equals_uninterrupted(data, tmp_path):
    full = run(data, tmp_path / 'a', max_iters=10, lr_decay_iters=10, grad_accum=2, checkpoint_interval=4)
    run(data, tmp_path / 'b', max_iters=4, lr_decay_iters=10, grad_accum=2)
    # resume takes the run's settings from its checkpoint; only max_iters changes
    resumed = run(data, tmp_path / 'b', init_from='resume', max_iters=10)
    assert [r['iter'] for r in resumed] == list(range(1, 11))
    assert losses(resumed) == losses(full)


def sigterm_after(p, log, n):
    """Send SIGTERM to process p once `log` holds n iterations; returns (returncode, stderr)."""
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        if os.path.isfile(log) and len(open(log).read().splitlines()) >= n:
            p.send_signal(signal.SIGTERM)
            break
        time.sleep(0.05)
    try:
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
    return p.returncode, err


def test_sigterm_checkpoints_and_resume_equals_uninterrupted(data, tmp_path):
    """SIGTERM (SLURM preemption, Kubernetes, torchrun) saves the last complete iteration; resuming it
    gives the losses and weights of a run that was never stopped."""
    kw = dict(lr_decay_iters=1000, grad_accum=2, dataset=data / 'pycode')
    out = tmp_path / 'stopped'
    p = subprocess.Popen([sys.executable, os.path.join(REPO, 'train.py'), *argv(out_dir=out, max_iters=100000, **kw)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
                         env=dict(os.environ, OMP_NUM_THREADS='1'))
    code, err = sigterm_after(p, out / 'log.jsonl', 3)
    assert code == 1 and err.strip().splitlines()[-1].startswith('error: stopped by SIGTERM; checkpoint at iteration'), err
    k = torch.load(out / 'ckpt.pt', weights_only=True)['iter_num']
    assert k >= 3 and not (out / 'ckpt.pt.tmp').exists()
    resumed = run(data, out, init_from='resume', max_iters=k + 2)
    full = run(data, tmp_path / 'full', max_iters=k + 2, **kw)
    assert [r['iter'] for r in resumed] == list(range(1, k + 3))
    assert losses(resumed) == pytest.approx(losses(full), rel=1e-6)
    a, b = (torch.load(d / 'ckpt.pt', weights_only=True)['model'] for d in (out, tmp_path / 'full'))
    assert all(torch.allclose(a[n], b[n], rtol=1e-5, atol=1e-7) for n in a)


def test_sigterm_under_torchrun_stops_every_rank_at_one_iteration(data, tmp_path):
    """torchrun forwards SIGTERM to every rank; the ranks agree on the iteration to stop at (through the
    loss all-reduce, so none waits in a collective) and rank 0 alone writes that iteration's checkpoint."""
    out = tmp_path / 'ddp'
    p = subprocess.Popen([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                          os.path.join(REPO, 'train.py'), *argv(max_iters=100000, grad_accum=2, dataset=data / 'pycode',
                                                                out_dir=out)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
                         env=dict(os.environ, OMP_NUM_THREADS='1'))
    _, err = sigterm_after(p, out / 'log.jsonl', 3)
    k = torch.load(out / 'ckpt.pt', weights_only=True)['iter_num']
    # both ranks share one stderr pipe: a rank's line can follow the other's progress bar on the same line
    stops = re.findall(r'error: stopped by SIGTERM; [^\n]*', err)
    assert stops == [f'error: stopped by SIGTERM; checkpoint at iteration {k} saved in {out}, '
                     f'continue with init_from=resume'] * 2, err[-3000:]
    assert [json.loads(l)['iter'] for l in open(out / 'log.jsonl')] == list(range(1, k + 1))


def test_signal_during_checkpoint_write_keeps_it_whole(data, tmp_path, monkeypatch):
    """A SIGTERM that lands while ckpt.pt is being written: the write completes, the run stops at the next
    iteration boundary with that iteration checkpointed, and nothing half-written is left."""
    real_save, sent = torch.save, []

    def save_and_signal(obj, f, *a, **k):
        if obj.get('iter_num') == 2 and not sent:
            sent.append(os.kill(os.getpid(), signal.SIGTERM))  # arrives in the middle of save_checkpoint
        return real_save(obj, f, *a, **k)
    monkeypatch.setattr(torch, 'save', save_and_signal)
    with pytest.raises(UserError, match='stopped by SIGTERM; checkpoint at iteration 2 saved'):
        run(data, tmp_path, max_iters=6, checkpoint_interval=2)
    monkeypatch.undo()
    assert torch.load(tmp_path / 'ckpt.pt', weights_only=True)['iter_num'] == 2
    assert sorted(os.listdir(tmp_path)) == ['ckpt.pt', 'log.jsonl']
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are given back


def test_ddp_two_processes_equal_one(data, tmp_path):
    """DDP over 2 gloo processes: the losses and val ELBO of one process; FSDP continues its checkpoint
    exactly (the losses of an uninterrupted one-process run)."""
    kw = dict(grad_accum=4, eval_interval=5, lr_decay_iters=7)
    one = run(data, tmp_path / 'one', max_iters=7, **kw)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    p = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                        os.path.join(REPO, 'train.py'), *argv(max_iters=5, **kw,
                                                              dataset=data / 'pycode', out_dir=tmp_path / 'two')],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    two = [json.loads(line) for line in open(tmp_path / 'two' / 'log.jsonl')]
    assert [r['iter'] for r in two] == [1, 2, 3, 4, 5]  # rank 0 alone writes the log
    assert losses(two) == pytest.approx(losses(one[:5]), rel=1e-5)
    assert two[-1]['val_loss'] == pytest.approx(one[4]['val_loss'], rel=1e-5)
    p = torchrun(2, out_dir=tmp_path / 'two', init_from='resume', max_iters=7, parallel='fsdp')
    assert p.returncode == 0, p.stderr[-3000:]
    resumed = [json.loads(line) for line in open(tmp_path / 'two' / 'log.jsonl')]
    assert [r['iter'] for r in resumed] == list(range(1, 8))
    assert losses(resumed) == pytest.approx(losses(one), rel=1e-5)


def torchrun(n, **kw):
    """train.py under torchrun with n gloo processes; -> the CompletedProcess."""
    return subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={n}',
                           os.path.join(REPO, 'train.py'), *argv(**kw)], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, OMP_NUM_THREADS='1'), timeout=300)


def test_fsdp_two_processes_equal_one_with_full_checkpoints(data, tmp_path):
    """FSDP2 over 2 gloo processes: the losses of one process; its ckpt.pt is the one-process checkpoint
    (model and AdamW state, tied head shared), which one process resumes; FSDP resumes a one-process
    checkpoint (here with activation checkpointing and ZeRO-2-like resharding) and continues exactly."""
    kw = dict(max_iters=6, lr_decay_iters=6, grad_accum=4, dataset=data / 'pycode')
    full = run(data, tmp_path / 'full', **kw)
    run(data, tmp_path / 'one', **{**kw, 'max_iters': 3})
    p = torchrun(2, parallel='fsdp', out_dir=tmp_path / 'fsdp', eval_interval=3, eval_iters=3, sample_interval=3,
                 export_hf=tmp_path / 'hf', **{**kw, 'max_iters': 3})
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count('--- sample at iter 3') == 1  # rank 0 samples from the gathered weights
    assert losses(json.loads(l) for l in open(tmp_path / 'fsdp' / 'log.jsonl')) == pytest.approx(losses(full[:3]), rel=1e-5)
    a, b = (torch.load(tmp_path / d / 'ckpt.pt', weights_only=True) for d in ('one', 'fsdp'))
    assert a['model'].keys() == b['model'].keys() and a['iter_num'] == b['iter_num'] == 3
    assert all(torch.allclose(a['model'][k], b['model'][k], rtol=1e-4, atol=1e-6) for k in a['model'])
    assert b['model']['lm_head.weight'].data_ptr() == b['model']['model.embed_tokens.weight'].data_ptr()
    oa, ob = a['optimizer'], b['optimizer']
    assert oa['param_groups'] == ob['param_groups'] and oa['state'].keys() == ob['state'].keys()
    assert all(torch.allclose(oa['state'][i][k], ob['state'][i][k], rtol=1e-4, atol=1e-8) for i in oa['state'] for k in oa['state'][i])
    hf = Transformer.from_pretrained(str(tmp_path / 'hf'))
    assert all(torch.equal(v, b['model'][k]) for k, v in hf.state_dict().items())
    # one process continues the FSDP checkpoint; FSDP continues the one-process checkpoint
    resumed = run(data, tmp_path / 'fsdp', init_from='resume', max_iters=6, export_hf='')
    assert losses(resumed) == pytest.approx(losses(full), rel=1e-5)
    p = torchrun(2, out_dir=tmp_path / 'one', init_from='resume', max_iters=6, parallel='fsdp',
                 activation_checkpointing='true', reshard_after_forward='false')
    assert p.returncode == 0, p.stderr[-3000:]
    resumed = [json.loads(l) for l in open(tmp_path / 'one' / 'log.jsonl')]
    assert [r['iter'] for r in resumed] == list(range(1, 7))
    assert losses(resumed) == pytest.approx(losses(full), rel=1e-5)


def test_activation_checkpointing_leaves_losses_and_gradients_unchanged(data, tmp_path):
    import diffusion
    from lib.sharding import checkpoint_layers
    grads = []
    for ac in (False, True):
        torch.manual_seed(0)
        model = Transformer(make_config('tiny', vocab_size=260, mask_token_id=259))
        if ac:
            checkpoint_layers(model)
        x0 = torch.randint(0, 259, (4, 32), generator=torch.Generator().manual_seed(1))
        loss, _ = diffusion.training_loss(model, x0, objective='mdm', opts=diffusion.DiffusionOptions(), progress=0.5,
                                          step=0, generator=torch.Generator().manual_seed(2))
        loss.backward()
        grads.append((loss.item(), {n: p.grad for n, p in model.named_parameters()}))
    assert grads[0][0] == grads[1][0]
    assert all(torch.allclose(g, grads[1][1][n], rtol=1e-6, atol=1e-9) for n, g in grads[0][1].items())
    kw = dict(max_iters=3, grad_accum=2)
    assert losses(run(data, tmp_path / 'ac', activation_checkpointing='true', **kw)) == \
        pytest.approx(losses(run(data, tmp_path / 'plain', **kw)), rel=1e-6)
    ck = torch.load(tmp_path / 'ac' / 'ckpt.pt', weights_only=True)  # the same names as without it
    assert ck['model'].keys() == Transformer(make_config('tiny', vocab_size=260)).state_dict().keys()


def test_memory_plan(capsys):
    """--plan: FSDP divides parameters, gradients and AdamW state by the shards; CoDA-1.7B at 8 devices
    of 24 GB fits with FSDP, not with DDP."""
    from lib import memplan
    c = make_config('1.7B')
    ddp, fsdp = (memplan.plan(c, tokens=4096, dtype='bfloat16', world=8, engine=e) for e in ('ddp', 'fsdp'))
    for k in ('params', 'grads', 'optimizer'):
        assert fsdp[k] == pytest.approx(ddp[k] / 8)
    assert ddp['params'] + ddp['grads'] + ddp['optimizer'] == pytest.approx(16 * 1_720_574_976)
    ac = memplan.plan(c, tokens=4096, dtype='bfloat16', world=8, engine='fsdp', checkpointing=True)
    assert ac['activations'] < fsdp['activations'] / 2 and ac['peak'] < fsdp['peak']
    rows = train.main([os.path.join(REPO, 'config', 'coda_pretrain.py'), '--plan', '--world_size=8', '--device_memory=24GB'])
    out = capsys.readouterr().out
    assert '1.721B parameters' in out and '8 device(s)' in out
    fits = {name: line.split()[-1] for name, _ in rows for line in out.splitlines() if line.startswith(name + ' ')}
    assert fits['ddp'] == 'no' and fits['fsdp'] == 'yes' and fits['fsdp + activation checkpointing'] == 'yes'
    assert memplan.parse_size('16GiB') == 16 * 2**30 and memplan.parse_size('512MB') == 512e6


def test_sharded_bad_inputs(data, tmp_path, monkeypatch):
    with pytest.raises(UserError, match='parallel=fsdp shards over processes: launch with torchrun'):
        run(data, tmp_path, parallel='fsdp')
    with pytest.raises(UserError, match="parallel='zero' is unknown; use one of ddp, fsdp"):
        train.get_config(['--parallel=zero'])
    monkeypatch.setenv('WORLD_SIZE', '2')  # found before the process waits for the other one
    with pytest.raises(UserError, match='grad_accum=3 is the total over all 2 processes; use a multiple of 2'):
        run(data, tmp_path, parallel='fsdp', grad_accum=3)
    monkeypatch.delenv('WORLD_SIZE')
    p = cli('--plan', '--device_memory=lots')
    assert p.returncode == 1 and p.stderr.strip() == \
        "error: device_memory='lots' is not a size; write it like 24GB, 80GB, 16GiB or 512MB"
    assert not os.listdir(tmp_path)


def test_init_from_hf_qwen3_and_export(data, tmp_path):
    torch.manual_seed(0)
    qwen = Transformer(make_config('tiny', vocab_size=264, attention='causal'))
    qwen.save_pretrained(tmp_path / 'qwen3')
    # max_iters=0: load, convert to CoDA's conventions, export unchanged weights
    run(data, tmp_path / 'out', init_from=tmp_path / 'qwen3', max_iters=0, export_hf=tmp_path / 'hf')
    coda = Transformer.from_pretrained(str(tmp_path / 'hf'))
    c = coda.config
    assert (c.attention, c.shift_logits, c.mask_token_id, c.vocab_size) == ('bidirectional', True, 259, 264)
    for (k, v), w in zip(qwen.state_dict().items(), coda.state_dict().values()):
        assert torch.equal(v, w), k
    # train from the Qwen3 weights: an AR head kept through the logit shift starts below log V
    recs = run(data, tmp_path / 'out2', init_from=tmp_path / 'qwen3', max_iters=3)
    assert all(r['loss'] == r['loss'] for r in recs)
    # continue a CoDA directory (the export above), and a causal AR run stays causal
    run(data, tmp_path / 'out3', init_from=tmp_path / 'hf', max_iters=2)
    assert torch.load(tmp_path / 'out3' / 'ckpt.pt', weights_only=True)['model_config']['shift_logits'] is True
    run(data, tmp_path / 'out4', init_from=tmp_path / 'qwen3', max_iters=2, objective='ar')
    mc = torch.load(tmp_path / 'out4' / 'ckpt.pt', weights_only=True)['model_config']
    assert (mc['attention'], mc['shift_logits']) == ('causal', False)


@pytest.mark.parametrize('objective', ['ar', 'block', 'sft'])
def test_other_objectives(data, tmp_path, objective):
    kw = dict(objective=objective, max_iters=12, eval_interval=12, lr=1e-2)
    if objective == 'sft':  # a new stage from the weights of a pre-training run (fresh optimizer)
        run(data, tmp_path / 'pre', max_iters=2)
        kw.update(dataset=data / 'sft', seq_len=256, batch_size=2, max_iters=6, eval_interval=6, init_from=tmp_path / 'pre')
    recs = run(data, tmp_path / 'out', **kw)
    assert losses(recs)[-1] < losses(recs)[0] and recs[-1]['val_loss'] > 0
    attention = {'ar': 'causal', 'block': 'block', 'sft': 'bidirectional'}[objective]
    assert torch.load(tmp_path / 'out' / 'ckpt.pt', weights_only=True)['model_config']['attention'] == attention


def test_bad_inputs_in_process(data, tmp_path):
    with pytest.raises(UserError, match='no checkpoint at .* to resume'):
        train.main(argv(out_dir=tmp_path / 'none', init_from='resume', dataset=data / 'pycode'))
    with pytest.raises(UserError, match='not scratch, resume'):
        train.main(argv(out_dir=tmp_path / 'x', init_from=tmp_path / 'missing', dataset=data / 'pycode'))
    (tmp_path / 'notamodel').mkdir()
    with pytest.raises(UserError, match='no config.json'):
        train.main(argv(out_dir=tmp_path / 'x', init_from=tmp_path / 'notamodel', dataset=data / 'pycode'))
    with pytest.raises(UserError, match='does not fit'):
        train.main(argv(out_dir=tmp_path / 'x', objective='sft', dataset=data / 'pycode'))
    assert not (tmp_path / 'x').exists()
    # a run's checkpoint is never overwritten by another run (of another shape here)
    run(data, tmp_path / 'o', max_iters=2)
    before = (tmp_path / 'o' / 'ckpt.pt').read_bytes()
    with pytest.raises(UserError, match='already holds a run.*init_from=resume'):
        run(data, tmp_path / 'o', max_iters=2, model='toy')
    assert (tmp_path / 'o' / 'ckpt.pt').read_bytes() == before
    # weights of a run whose tokenizer is not the dataset's
    ck = torch.load(tmp_path / 'o' / 'ckpt.pt', weights_only=True)
    (tmp_path / 'g').mkdir()
    torch.save(dict(ck, tokenizer='gpt2'), tmp_path / 'g' / 'ckpt.pt')
    with pytest.raises(UserError, match="tokenised with 'bytes'.*--tokenizer=gpt2"):
        run(data, tmp_path / 'x', init_from=tmp_path / 'g')
    # a diverging run stops with the last good checkpoint in place
    with pytest.raises(UserError, match='loss is (nan|inf).*last good checkpoint'):
        run(data, tmp_path / 'nan', max_iters=20, lr=1e30, min_lr=1e30, warmup_iters=0, grad_clip=0.0,
            checkpoint_interval=1)
    ck = torch.load(tmp_path / 'nan' / 'ckpt.pt', weights_only=True)
    recs = [json.loads(line) for line in open(tmp_path / 'nan' / 'log.jsonl')]
    assert ck['iter_num'] == recs[-1]['iter'] < 20


BAD_OPTIONS = [  # (arguments, what the one-line error says)
    (['--lr=-0.001'], r'lr=-0.001 is out of range: it must be in \(0, inf\); the default is 0.002'),
    (['--lr=nan'], 'lr=nan is out of range'), (['--min_lr=-1'], 'min_lr=-1.0 is out of range'),
    (['--lr=1e-4', '--min_lr=1e-3'], 'min_lr=0.001 is above lr=0.0001'), (['--beta2=1'], r'beta2=1.0 .*\[0, 1\)'),
    (['--warmup_iters=-1'], 'warmup_iters=-1'), (['--weight_decay=-0.1'], 'weight_decay'), (['--grad_clip=-1'], 'grad_clip'),
    (['--batch_size=0'], 'batch_size=0'), (['--grad_accum=0'], 'grad_accum=0'), (['--seq_len=0'], 'seq_len=0'),
    (['--max_iters=-5'], 'max_iters=-5'), (['--log_interval=0'], 'log_interval=0'), (['--eval_iters=0'], 'eval_iters=0'),
    (['--elbo_samples=0'], 'elbo_samples=0'), (['--sample_interval=-1'], 'sample_interval'), (['--block_size=0'], 'block_size=0'),
    (['--eps=0'], r'eps=0.0 .*\(0, 1\)'), (['--s3_prob=1.5'], 's3_prob=1.5 is not a probability'),
    (['--dtype=float8'], "dtype='float8' is unknown"), (['--device=gpu'], "device='gpu' is unknown"),
    (['--device=cuda:7'], 'not available on this machine'), (['--device=xla:1'], 'use device=xla'),
]


@pytest.mark.parametrize('args,match', BAD_OPTIONS, ids=lambda a: a if isinstance(a, str) else ' '.join(a))
def test_bad_options_are_refused_before_anything_runs(args, match):
    with pytest.raises(UserError, match=match):
        train.get_config(args)


def test_cli_error_lines(data, tmp_path):
    p = cli('--max_iter=3')
    assert p.returncode == 1 and p.stderr.startswith('error: unknown config key') and 'max_iters' in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    p = cli('--lr=-0.001')
    assert p.returncode == 1 and p.stderr.strip() == \
        'error: lr=-0.001 is out of range: it must be in (0, inf); the default is 0.002'
    (tmp_path / 'file').write_text('')  # outputs that cannot be written are found before training
    for key in ('out_dir', 'export_hf'):
        with pytest.raises(UserError, match=f'{key}=.*is a file; pass a directory'):
            train.get_config([f'--{key}={tmp_path}/file'])
    p = cli(f'--dataset={tmp_path}/nodata', '--lr=fast')
    assert p.returncode == 1 and p.stderr.strip() == "error: lr must be a float, got 'fast' (from command line); e.g. lr=0.002"
    p = cli(f'--dataset={tmp_path}/nodata', f'--out_dir={tmp_path}/out')
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1
    assert 'no dataset at' in p.stderr and 'prepare.py' in p.stderr and not (tmp_path / 'out').exists()


def test_xla_matches_cpu(data, tmp_path):
    """The XLA path (PJRT_DEVICE=CPU): same losses as the eager CPU run. Runs where torch_xla is
    importable, e.g. venv-xla/bin/python -m pytest tests/test_train.py -k xla."""
    pytest.importorskip('torch_xla')
    kw = dict(max_iters=4, grad_accum=2, eval_interval=4, dtype='float32', dataset=data / 'pycode')
    cpu = run(data, tmp_path / 'cpu', **kw)
    env = dict(os.environ, PJRT_DEVICE='CPU')
    p = cli(*argv(device='xla', out_dir=tmp_path / 'xla', **kw), env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    xla = [json.loads(line) for line in open(tmp_path / 'xla' / 'log.jsonl')]
    assert losses(xla) == pytest.approx(losses(cpu), rel=1e-4)
    assert xla[-1]['val_loss'] == pytest.approx(cpu[-1]['val_loss'], rel=1e-4)
    ck = torch.load(tmp_path / 'xla' / 'ckpt.pt', weights_only=True)
    assert ck['iter_num'] == 4 and all(v.device.type == 'cpu' for v in ck['model'].values())
    # dtype=auto is bf16 autocast on XLA; resume it for two more steps
    p = cli(*argv(device='xla', out_dir=tmp_path / 'bf16', max_iters=2, dataset=data / 'pycode'), env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    p = cli(*argv(device='xla', out_dir=tmp_path / 'bf16', max_iters=4, init_from='resume'), env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    bf16 = [json.loads(line) for line in open(tmp_path / 'bf16' / 'log.jsonl')]
    assert [r['iter'] for r in bf16] == [1, 2, 3, 4] and all(0 < r['loss'] < 10 for r in bf16)


def test_sample_py_defaults_to_out_toy(data, tmp_path, monkeypatch, capsys):
    """nanoGPT's workflow: `python train.py` then `python sample.py` with no argument; --frames saves the
    denoising as a picture (PNG through matplotlib, HTML without it)."""
    import sample
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match='run `python train.py` first'):
        sample.main(['--gen_length=4'])
    run(data, 'out-toy')  # the default out_dir, relative to the working directory
    sample.main(['--gen_length=8', '--block_length=4', '--frames=d.html', '--n_frames=3'])
    out = capsys.readouterr().out
    assert 'sampling from out-toy/ckpt.pt' in out and 'saved d.html' in out
    html = (tmp_path / 'd.html').read_text()
    assert html.count('<td>') == 3 and 'forward 0' in html and '\u2591' in html  # the first frame is all masks
    pytest.importorskip('matplotlib')  # requirements-dev.txt installs it: CI runs this part
    sample.main(['--gen_length=8', '--block_length=4', '--frames=d.png'])
    assert (tmp_path / 'd.png').read_bytes()[:4] == b'\x89PNG'
    with pytest.raises(UserError, match='.png, .svg or .html'):
        sample.main(['--frames=d.gif'])


def test_xla_default_run_samples_and_compiles_a_bounded_number_of_graphs(data, tmp_path):
    """The README's toy TPU run (the toy model, default batch and masking) on PJRT's CPU backend, shortened,
    with evaluation and sampling every 2 iterations: it finishes, and no graph is compiled after the first
    evaluation and sample (the sampler runs on a CPU copy of the weights; the ELBO compiles once per shape)."""
    pytest.importorskip('torch_xla')
    out = tmp_path / 'xla'
    p = cli('--device=xla', '--max_iters=4', '--eval_interval=2', '--sample_interval=2', '--log_interval=1',
            f'--dataset={data / "pycode"}', f'--out_dir={out}', env=dict(os.environ, PJRT_DEVICE='CPU'))
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count('--- sample at iter') == 2 and '--- sample at iter 4' in p.stdout
    recs = [json.loads(line) for line in open(out / 'log.jsonl')]
    assert [r['iter'] for r in recs] == [1, 2, 3, 4] and 'val_loss' in recs[1] and 'val_loss' in recs[3]
    compiles = [r['xla_compiles'] for r in recs]
    assert compiles[1] == compiles[3] <= 8, compiles  # training + evaluation graphs, compiled once each


def test_xla_sigterm_to_the_launcher_checkpoints(data, tmp_path):
    """torch_xla.launch runs train() in a thread of a worker process: a SIGTERM sent to the launching
    process alone is forwarded, caught by the worker's main thread, and the last iteration is saved."""
    pytest.importorskip('torch_xla')
    out = tmp_path / 'xla'
    p = subprocess.Popen([sys.executable, os.path.join(REPO, 'train.py'),
                          *argv(device='xla', dtype='float32', max_iters=100000, dataset=data / 'pycode', out_dir=out)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
                         env=dict(os.environ, OMP_NUM_THREADS='1', PJRT_DEVICE='CPU'))
    code, err = sigterm_after(p, out / 'log.jsonl', 3)
    k = torch.load(out / 'ckpt.pt', weights_only=True)['iter_num']
    assert code == 1 and err.strip().splitlines()[-1] == \
        f'error: stopped by SIGTERM; checkpoint at iteration {k} saved in {out}, continue with init_from=resume', err[-2000:]
    assert [json.loads(l)['iter'] for l in open(out / 'log.jsonl')] == list(range(1, k + 1))


def test_xla_spmd_fsdp_on_4_devices_equals_one_device(data, tmp_path):
    """--parallel=fsdp on XLA: one SPMD process shards the model and the batch over 4 PJRT CPU devices
    (SpmdFullyShardedDataParallel); the losses and the checkpoint are those of the eager one-device run,
    and it resumes on the mesh. A batch the devices do not divide is refused."""
    pytest.importorskip('torch_xla')
    kw = dict(grad_accum=2, eval_interval=4, dtype='float32', dataset=data / 'pycode', lr_decay_iters=4)
    one = run(data, tmp_path / 'cpu', max_iters=4, **kw)
    env = dict(os.environ, PJRT_DEVICE='CPU', CPU_NUM_DEVICES='4')
    p = cli(*argv(device='xla', parallel='fsdp', out_dir=tmp_path / 'xla', max_iters=2, **kw), env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert 'SPMD FSDP over 4 devices' in p.stdout and 'devices=[4,1]' in p.stdout  # embed_tokens (V, h): rows on 4 devices
    p = cli(*argv(device='xla', parallel='fsdp', out_dir=tmp_path / 'xla', init_from='resume', max_iters=4,
                  eval_interval=4), env=env)  # (argv passes SMALL's eval_interval=0 otherwise)
    assert p.returncode == 0, p.stderr[-3000:]
    xla = [json.loads(line) for line in open(tmp_path / 'xla' / 'log.jsonl')]
    assert [r['iter'] for r in xla] == [1, 2, 3, 4]
    assert losses(xla) == pytest.approx(losses(one), rel=1e-4)
    assert xla[-1]['val_loss'] == pytest.approx(one[-1]['val_loss'], rel=1e-4)
    a, b = (torch.load(tmp_path / d / 'ckpt.pt', weights_only=True)['model'] for d in ('cpu', 'xla'))
    assert all(torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-5) for k in a)
    p = cli(*argv(device='xla', parallel='fsdp', out_dir=tmp_path / 'bad', batch_size=6), env=env)
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1] == \
        'error: batch_size=6 is split over the 4 devices of the SPMD mesh; use a multiple of 4'
