"""
speedrun.py: python -m pytest tests/test_speedrun.py -q
The whole recipe at the tiny preset on a tiny corpus and SFT set built here, a few iterations per
stage and two tasks per evaluation: the stage hand-offs, the report card, reruns and bad input.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import speedrun
import train
from conftest import tiny_pycode
from data.pycode_sft.prepare import prepare as prepare_sft
from model import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITERS = dict(ar=4, adapt=3, midtrain=3, sft=3)
pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def module_source(i):
    return textwrap.dedent(f'''\
        import math


        def scale_{i}(x, k={i}):
            """Multiply x by {i} and add one."""
            y = x * k
            return y + 1


        def norm_{i}(a, b):
            """Return the length of the vector (a, b)."""
            s = a * a + b * b
            return math.sqrt(s) + {i}
        ''')


@pytest.fixture(scope='module')
def recipe(tmp_path_factory):
    """(argv, run_dir, report) of one tiny recipe run."""
    root = tmp_path_factory.mktemp('speedrun')
    src = tiny_pycode(root, [module_source(i) * 3 for i in range(12)], name='mod')  # tests/conftest.py
    prepare_sft(roots=[str(src)], stdlib=False, out_dir=str(root / 'sft'), max_len=256, val_frac=0.25)
    mbpp = root / 'mbpp.jsonl'
    mbpp.write_text(''.join(json.dumps(dict(task_id=i, text=f'Write a function f{i} that adds {i}.',
                                            code=f'def f{i}(x):\n    return x + {i}\n',
                                            test_list=[f'assert f{i}(1) == {i + 1}'])) + '\n' for i in range(3)))
    run_dir = root / 'run'
    argv = ['--preset=tiny', f'--dataset={root / "pycode"}', f'--sft_dataset={root / "sft"}', f'--run_dir={run_dir}',
            '--n_infill=2', '--n_humaneval=2', f'--mbpp={mbpp}', '--n_mbpp=2', '--gen_length=16',
            *[f'--{k}_iters={v}' for k, v in ITERS.items()]]
    return argv, run_dir, speedrun.main(argv)


def snapshot(d):
    return {os.path.relpath(os.path.join(r, p), d): open(os.path.join(r, p), 'rb').read() for r, _, fs in os.walk(d) for p in fs}


def test_stages_feed_each_other(recipe):
    argv, run_dir, report = recipe
    assert [s['name'] for s in report['stages']] == ['ar', 'adapt', 'midtrain', 'sft']
    prev, attention = None, ['causal', 'bidirectional', 'bidirectional', 'bidirectional']
    for k, rec in enumerate(report['stages']):
        ck = torch.load(os.path.join(rec['out_dir'], 'ckpt.pt'), map_location='cpu', weights_only=True)
        tc, mc = ck['train_config'], ck['model_config']
        assert tc['init_from'] == (prev or 'scratch') and ck['iter_num'] == ITERS[rec['name']]
        assert (mc['attention'], mc['hidden_size']) == (attention[k], 64)  # the tiny shape goes through every stage
        assert tc['objective'] == speedrun.STAGES[k]['keys']['objective'] and tc['masking'] == speedrun.STAGES[k]['keys'].get('masking', 'none')
        log = speedrun.read_log(rec['out_dir'])
        assert log[-1]['iter'] == ITERS[rec['name']] and 'val_loss' in log[-1]
        prev = rec['out_dir']
    # adapted from a causal run, the diffusion stages keep its next-token head through the logit shift
    assert [s['shift_logits'] for s in report['stages']] == [False, True, True, True]


def test_report_card_has_every_field(recipe):
    argv, run_dir, report = recipe
    assert json.loads((run_dir / 'report.json').read_text()) == report
    total = 0
    for rec in report['stages']:
        tc = torch.load(os.path.join(rec['out_dir'], 'ckpt.pt'), map_location='cpu', weights_only=True)['train_config']
        total += rec['iters'] * tc['batch_size'] * tc['seq_len'] * tc['grad_accum']
        assert rec['tokens'] > 0 and rec['cum_tokens'] == total
        assert rec['train_seconds'] > 0 and rec['eval_seconds'] > 0 and rec['val_bpb'] > 0
        inf = rec['infill']
        assert inf['tasks'] == 2 and 0 <= inf['edit_similarity'] <= 1 and inf['cond_bpb'] > 0
        assert inf['mode'] == ('prefix' if rec['name'] == 'ar' else 'diffusion')
        assert isinstance(rec['sample'], str) and rec['sample_prompt']
    sft = report['stages'][-1]
    assert (sft['humaneval']['problems'], sft['mbpp']['problems']) == (2, 2)
    assert 0 <= sft['humaneval']['pass@1'] <= 1 and 0 <= sft['mbpp']['pass@1'] <= 1
    md = (run_dir / 'report.md').read_text()
    for k, rec in enumerate(report['stages']):
        assert f"## Stage {k}: {rec['title']}" in md and f"| {rec['name']} | {rec['iters']:,} |" in md
        assert rec['sample'] in md
    assert '  - HumanEval pass@1: ' in md and '  - MBPP pass@1: ' in md and 'cache dual' in md
    assert report['loss_png'] == 'loss.png' and (run_dir / 'loss.png').stat().st_size > 0


def test_recipe_stages_are_the_configs():
    """Stages 2 and 3 are config/toy_midtrain.py and config/toy_sft.py (but for init_from / out_dir)."""
    for k, name in ((2, 'toy_midtrain'), (3, 'toy_sft')):
        cfg = train.get_config([os.path.join(REPO, 'config', name + '.py')])
        st = speedrun.STAGES[k]
        for key, v in st['keys'].items():
            if key not in ('eval_interval', 'sample_interval'):
                assert getattr(cfg, key) == v, (name, key)
        assert cfg.max_iters == st['iters']


def test_rerun_refuses_or_resumes(recipe):
    argv, run_dir, report = recipe
    before = snapshot(run_dir)
    assert sorted(f for f in before if f.endswith('.pt')) == [f'{k}-{n}/ckpt.pt' for k, n in enumerate(ITERS)]
    p = subprocess.run([sys.executable, os.path.join(REPO, 'speedrun.py'), *argv], capture_output=True, text=True,
                       cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS='1'), timeout=120)
    assert p.returncode == 1 and p.stderr.count('\n') == 1 and p.stderr.startswith('error: ')
    assert '--resume' in p.stderr and '--overwrite' in p.stderr
    assert snapshot(run_dir) == before
    # --resume: every stage is finished, nothing trains, the checkpoints and the measurements stay
    again = speedrun.main(argv + ['--resume'])
    keep = lambda s: {k: v for k, v in s.items() if k != 'cum_tokens'}
    assert [keep(s) for s in again['stages']] == [keep(s) for s in report['stages']]
    after = snapshot(run_dir)
    assert all(after[f] == before[f] for f in before if f.endswith(('.pt', '.jsonl')))
    with pytest.raises(UserError, match='holds 4 iterations, more than the 2 asked'):
        speedrun.main(argv + ['--resume', '--ar_iters=2'])
    with pytest.raises(UserError, match="--preset=toy is not used by --resume: the run's AR stage holds model=tiny"):
        speedrun.main(argv + ['--resume', '--preset=toy'])
    # --overwrite: every stage trains again, from the new AR run
    new = speedrun.main(argv + ['--overwrite', '--ar_iters=2'])
    assert [s['iters'] for s in new['stages']] == [2, 3, 3, 3]
    after = snapshot(run_dir)
    assert all(after[f] != before[f] for f in before if f.endswith('.pt'))


def test_bad_input(recipe, tmp_path):
    argv, run_dir, _ = recipe
    with pytest.raises(UserError, match='no dataset at .*missing meta.json'):
        speedrun.main(['--dataset=' + str(tmp_path / 'none'), f'--run_dir={tmp_path / "r"}'])
    with pytest.raises(UserError, match='is an SFT set'):
        speedrun.main([f'--dataset={argv[2].split("=", 1)[1]}', f'--run_dir={tmp_path / "r"}'])
    (tmp_path / 'f').write_text('x')
    with pytest.raises(UserError, match='is a file; pass a directory'):
        speedrun.main([f'--run_dir={tmp_path / "f"}'])
    with pytest.raises(UserError, match='unknown option --iters'):
        speedrun.main(['--iters=3'])
    with pytest.raises(UserError, match='contradict'):
        speedrun.main(['--resume', '--overwrite', f'--run_dir={tmp_path / "r"}'])
    with pytest.raises(UserError, match="--cache='prefix' is unknown"):
        speedrun.main(['--cache=prefix', f'--run_dir={tmp_path / "r"}'])
    with pytest.raises(UserError, match='--mbpp=.*no such file'):
        speedrun.main([f'--mbpp={tmp_path / "m.jsonl"}', f'--run_dir={tmp_path / "r"}'])
    assert not (tmp_path / 'r').exists()
