"""
bench.py smoke test on tiny sizes (seconds): every row is produced, with sane counts.

  python -m pytest tests/test_bench.py -q
"""
import json

import pytest
import torch

import bench


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_train_and_sample_rows(tmp_path, restore_threads):
    rows = bench.main(['--case=train', '--model=tiny', '--attention=bidirectional,block,causal', '--batch_size=2',
                       '--seq_len=32', '--block_size=8', '--train_iters=1', '--threads=1'])
    assert [r['objective'] for r in rows] == ['mdm', 'block', 'ar']
    assert all(r['tokens_per_s'] > 0 and r['mfu'] is None for r in rows)  # no MFU without a known peak (CPU)
    out = tmp_path / 'bench.json'
    rows = bench.main(['--case=sample', '--model=tiny', '--attention=block', '--prompt_len=8', '--gen_length=16',
                       '--block_length=8', '--block_size=8', '--threads=1', f'--out={out}'])
    assert [(r['cache'], r['threshold']) for r in rows[:6]] == [
        (c, t) for t in (None, 0.9) for c in ('none', 'prefix', 'dual')]
    assert rows[-1]['attention'] == 'causal' and rows[-1]['nfe'] == 16  # AR: one forward per token
    for r in rows[:3]:  # steps default to gen_length: one token per forward
        assert r['nfe'] == 16 and r['tokens_per_forward'] == 1
    assert len(json.loads(out.read_text())['results']) == len(rows)


def test_bad_case_is_a_user_error():
    with pytest.raises(bench.UserError, match='case'):
        bench.main(['--case=nope'])


def test_vocab_and_coda_rows(restore_threads):
    """The vocab case's rows on tiny shapes: every contender computes the same first loss (same weights, same noise)."""
    rows = bench.main(['--case=vocab', '--quick', '--vocabs=300', '--mem=false', '--batch_size=2', '--seq_len=32'])
    assert {r['contender'] for r in rows} >= {'ours', 'full'}
    assert all(r['first_loss'] == pytest.approx(rows[0]['first_loss'], rel=1e-4) for r in rows)
    rows = bench.main(['--case=coda', '--quick'])  # without --coda_repo: our row only
    assert rows[0]['sampler'] == 'ours' and rows[0]['tokens_per_s'] > 0


@pytest.mark.parametrize('arg,match', [
    ('--case=nope', 'case'), ('--batch_size=0', 'batch_size=0'), ('--train_iters=0', 'train_iters=0'),
    ('--gen_length=0', 'gen_length=0'), ('--block_length=0', 'block_length=0'), ('--threshold=1.5', 'threshold=1.5'),
    ('--prompt_len=0', 'prompt_len=0'), ('--dtype=float8', "dtype='float8'"), ('--device=tpu', "device='tpu'"),
    ('--out=/nonexistent-dir/b.json', 'no directory'), ('--shards=0', 'shards'), ('--shard_row=zero', 'shard_row')])
def test_bad_options_are_user_errors(arg, match):
    with pytest.raises(bench.UserError, match=match):
        bench.main([arg])


def test_ar_rows(restore_threads):
    """The ar case: ours (KV cache), ours without a cache and transformers' generate on the same weights give the
    same tokens; every row has a time."""
    pytest.importorskip('transformers')
    rows = bench.main(['--case=ar', '--quick', '--ar_lengths=8', '--prompt_len=8'])
    assert [r['contender'] for r in rows] == ['ours', 'ours_no_cache', 'hf']
    assert rows[0]['same_tokens_as_hf'] and rows[0]['hf_over_ours'] > 0 and all(r['ms_per_token'] > 0 for r in rows)
    with pytest.raises(bench.UserError, match='ar_lengths'):
        bench.main(['--case=ar', '--ar_lengths=0'])
