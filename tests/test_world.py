"""
The small world's tasks in eval.py (evals/world.py): python -m pytest tests/test_world.py -q
The canonical answers pass every task through the same path a model's answers take; a tiny model's
answers are scored per split and tier with tokens per forward; bad selections are one line.
"""
from dataclasses import asdict

import pytest
import torch

from data.pyworld.prepare import prepare
from evals import evaluation
from evals.world import repair_prompt
from lib.cli import UserError
from model import Transformer, make_config


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp('pyworld')
    prepare(out_dir=str(out), n_programs=190, tasks_per_tier=2, train_repair=10)
    return out


def tiny_ckpt(path, attention, seq_len=512):
    """An untrained tiny byte-level model saved as a train.py checkpoint."""
    torch.manual_seed(0)
    cfg = make_config('tiny', vocab_size=264, attention=attention, mask_token_id=259, block_size=4)
    model = Transformer(cfg)
    path.mkdir()
    torch.save(dict(model=model.state_dict(), model_config=asdict(cfg), train_config=dict(seq_len=seq_len, objective='mdm'),
                    tokenizer='bytes', iter_num=0, optimizer={}, rng={}, best_val_loss=0.0), path / 'ckpt.pt')
    return str(path)


@pytest.mark.parametrize('task,splits', [('world_write', 'train,val,test'), ('world_infill', 'train,val,test'),
                                         ('world_repair', 'val,test')])
def test_canonical_answers_pass_every_task(world, task, splits):
    """The executor check (as --task=humaneval --canonical): the canonical answers, put where a model's answer
    goes, pass 100% on seen and held-out compositions of every tier."""
    s = evaluation.main([f'--task={task}', '--canonical', f'--data_path={world}', f'--split={splits}'])
    assert s['problems'] >= 2 * len(splits.split(',')) and s['solved'] == s['problems']
    assert {k.split('/')[0] for k in s['pass_at_1'] if k != 'all'} == set(splits.split(','))


def test_a_model_is_scored_per_split_and_tier(world, tmp_path, one_thread):
    """A tiny untrained model: every task runs end to end, with tokens per forward and the split x tier cells."""
    mdm, ar = tiny_ckpt(tmp_path / 'mdm', 'bidirectional'), tiny_ckpt(tmp_path / 'ar', 'causal')
    s = evaluation.main(['--task=world_write', f'--ckpt={mdm}', f'--data_path={world}', '--split=train,test',
                         '--tiers=1,2', '--gen_length=32', '--block_length=16', '--steps=8'])
    assert s['problems'] == 8 and s['tokens_per_forward'] == pytest.approx(32 / 8)
    assert set(s['pass_at_1']) == {'all', 'train', 'test', 'train/tier1', 'train/tier2', 'test/tier1', 'test/tier2'}
    s = evaluation.main(['--task=world_infill', f'--ckpt={mdm}', f'--data_path={world}', '--tiers=3'])
    assert s['problems'] == 2 and s['tokens_per_forward'] == pytest.approx(1.0)  # one token per step at the oracle length
    s = evaluation.main(['--task=world_infill', f'--ckpt={ar}', f'--data_path={world}', '--tiers=3'])
    assert s['problems'] == 2
    s = evaluation.main(['--task=world_repair', f'--ckpt={ar}', f'--data_path={world}', '--tiers=4', '--gen_length=8'])
    assert s['problems'] == 2 and s['solved'] == 0  # 8 tokens of an untrained model fix nothing
    s = evaluation.main(['--task=world_repair', f'--ckpt={mdm}', f'--data_path={world}', '--tiers=4'])
    assert s['solved'] == 0 and s['tokens_changed'] == 0  # editing off: the draft, the bug itself, comes back


def test_the_repair_prompt_shows_the_bug_and_its_tests(world):
    import json
    rec = json.loads(open(world / 'tasks' / 'test_repair.jsonl').readline())
    text = repair_prompt(rec)
    assert text.startswith(rec['buggy'].rstrip()) and rec['tests'].strip() in text
    assert text.endswith('# fixed\n' + rec['canonical'].split('\n')[0] + '\n')


@pytest.mark.parametrize('flags,match', [(['--split=dev'], "--split='dev'"), (['--tiers=5'], "--tiers='5'"),
                                         (['--n_infill=3'], 'n_infill'), (['--canonical', '--gen_length=8'], 'gen_length')])
def test_bad_selections_are_one_line(world, flags, match):
    with pytest.raises(UserError, match=match):
        evaluation.main(['--task=world_write', f'--data_path={world}', *flags] + ([] if '--canonical' in flags else ['--canonical']))


def test_a_missing_world_says_how_to_build_it(tmp_path):
    with pytest.raises(UserError, match='data.pyworld.prepare'):
        evaluation.main(['--task=world_write', '--canonical', f'--data_path={tmp_path}'])


def test_the_world_table_on_tiny_runs(world, tmp_path, one_thread):
    """python -m experiments.run world: every arm found under --runs is measured (write on seen and held-out
    compositions, threshold decoding for the diffusion arms, infill; AR + FIM also prefix-only) into world.json."""
    import json
    from experiments import run as X
    from experiments.common import RUNS
    runs = tmp_path / 'runs'
    runs.mkdir()
    for name, attention in (('w_ar', 'causal'), ('w_ar_fim', 'causal'), ('w_mdm', 'bidirectional'),
                            ('w_adapt_block', 'block')):
        path = runs / RUNS[name][0]
        tiny_ckpt(path, attention)
        ck = torch.load(path / 'ckpt.pt', weights_only=True)
        objective = {'causal': 'ar', 'bidirectional': 'mdm', 'block': 'block'}[attention]
        ck['train_config'] = dict(seq_len=512, objective=objective, max_iters=0, batch_size=8, grad_accum=1,
                                  fim_rate=0.9 if name == 'w_ar_fim' else 0.0, dataset=str(world))
        torch.save(ck, path / 'ckpt.pt')
        (path / 'log.jsonl').write_text(json.dumps(dict(iter=0, loss=5.0, val_loss=5.0, val_bpb=7.2)) + '\n')
    X.main(['world', f'--runs={runs}', '--n_world=1', '--world_gen=8', f'--world={world}', f'--out_dir={tmp_path}'])
    rows = json.load(open(tmp_path / 'world.json'))['rows']
    got = {(r['run'], r['task'], r['decoder']) for r in rows}
    assert ('mdm', 'write', 'threshold 0.9') in got and ('ar', 'write', 'threshold 0.9') not in got
    assert ('ar_fim', 'infill', 'prefix only') in got and len({r['run'] for r in rows}) == 4
    assert all(set(r['held_out']) == {'1', '2', '3', '4'} for r in rows)  # every tier, held out
    X.main(['world', f'--runs={runs}', '--n_world=1', '--world_gen=8', f'--world={world}', f'--out_dir={tmp_path}',
            '--only=ar'])  # one run again: the others' rows are kept, and drawn
    assert len(json.load(open(tmp_path / 'world.json'))['rows']) == len(rows)
