"""
experiments/: python -m pytest tests/test_experiments.py -q
The tables' arithmetic and probes on hand-made inputs, and the CLI on tiny runs trained here: it writes
what it measured, keeps the rows it was not asked to redo, and never replaces a table with nothing.
"""
import json
import math

import pytest
import torch

import train
from conftest import tiny_pycode
from diffusion import elbo
from model import Transformer, UserError, make_config
from experiments import common as C, run as X

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def test_tokens_to_reach_interpolates():
    curve = [(0, 4.0), (10, 3.0), (20, 2.0)]
    assert C.tokens_to_reach(curve, 2.5) == pytest.approx(15)
    assert C.tokens_to_reach(curve, 3.0) == pytest.approx(10)
    assert C.tokens_to_reach(curve, 1.0) is None  # never reached
    assert C.tokens_to_reach([(5, 1.0), (9, 0.5)], 2.0) == 5  # already below at the first point


def tiny(attention='bidirectional', vocab=40):
    torch.manual_seed(0)
    cfg = make_config('tiny', vocab_size=vocab, attention=attention, mask_token_id=vocab - 1)
    return Transformer(cfg).eval()


def test_left_to_right_nll_uniform_and_single_token():
    model = tiny()
    x0 = torch.randint(0, 30, (3, 16))
    with torch.no_grad():
        # one hidden token: the left-to-right NLL and the ELBO are the same single prediction
        one = C.left_to_right_nats(model, x0, x0, 7, 8)
        bound = float(elbo(model, x0, n_samples=2, maskable=(torch.arange(16) == 7).expand(3, 16)).sum())
        assert one == pytest.approx(bound, rel=1e-5)
        # uniform logits: log V per hidden token, whatever the order
        torch.nn.init.zeros_(model.lm_head.weight)
        assert C.left_to_right_nats(model, x0, x0, 4, 10) == pytest.approx(3 * 6 * math.log(40), rel=1e-5)


def test_left_to_right_nll_is_the_sum_of_its_steps():
    """Unmasking left to right: step k sees the tokens before k in the span and masks from k on."""
    model = tiny()
    x0 = torch.randint(0, 30, (2, 12))
    mask = model.config.mask_token_id
    with torch.no_grad():
        want = 0.0
        for k in range(3, 6):
            xt = x0.clone()
            xt[:, k:6] = mask
            logp = torch.log_softmax(model(xt)[:, k], -1)
            want -= float(logp.gather(1, x0[:, k:k + 1]).sum())
        assert C.left_to_right_nats(model, x0, x0, 3, 6) == pytest.approx(want, rel=1e-5)


def test_judge_bits_uniform_and_entropy():
    judge = tiny('causal')
    torch.nn.init.zeros_(judge.lm_head.weight)  # uniform: log2 V bits per token
    prompts = [[1, 2, 3, 4]] * 3
    cont = torch.tensor([[5, 5, 6, 6]] * 3)
    bpb, ent = X.judge_bits(judge, prompts, cont)
    assert bpb == pytest.approx(math.log2(40), rel=1e-5) and ent == pytest.approx(1.0)  # two tokens, equally often
    assert X.judge_bits(judge, prompts, torch.full((3, 4), 7))[1] == 0


def test_continue_val_follows_the_setting():
    model = tiny()
    prompts = [list(range(1, 9))] * 2
    for args, forwards in (([], 16), (['--steps_div=4'], 4), (['--steps_div=2', '--temperature=0.8', '--top_k=5'], 8)):
        cont, info = X.continue_val(model, prompts, args, 16)
        assert cont.shape == (2, 16) and info['nfe'] == forwards
        assert (cont != model.config.mask_token_id).all()


# -----------------------------------------------------------------------------
# the CLI on tiny runs (a few iterations each: the point is the plumbing, not the numbers); run.main
# changes into the repository, monkeypatch.chdir puts the working directory back after each test

SMALL = dict(model='tiny', seq_len=32, batch_size=4, max_iters=4, warmup_iters=1, eval_interval=2, eval_iters=1,
             elbo_samples=1, log_interval=1, checkpoint_interval=0, sample_interval=0)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('exp')
    tiny_pycode(root, [f'def f{i}(x):\n    """Add {i}."""\n    return x + {i}\n\n\n' * 20 for i in range(8)])
    for out, extra in (('out-toy', {}), ('out-toy-ar-fim', dict(objective='ar', fim_rate=0.9)),
                       ('out-toy-ar', dict(objective='ar')),
                       ('out-toy-varlen', dict(init_from=root / 'runs' / 'out-toy', varlen_rate=0.5, max_delete=8))):
        kw = {**SMALL, **extra, 'dataset': str(root / 'pycode'), 'out_dir': str(root / 'runs' / out)}
        train.main([f'--{k}={v}' for k, v in kw.items()])
    return root


def test_fimprobe_writes_both_kinds_of_rows(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    X.main(['fimprobe', f'--runs={runs / "runs"}', f'--out_dir={tmp_path}'])
    rows = json.load(open(tmp_path / 'fimprobe.json'))['rows']
    assert {r['run'] for r in rows} == {'ar', 'ar_fim', 'mdm'} and len(rows) == 3 * len(C.CUTS)
    for r in rows:  # plain AR cannot read the suffix
        assert (r['with_suffix_bpb'] is None) == (r['run'] == 'ar') and 0 < r['without_suffix_bpb'] < 20
        assert r['run'] == 'ar' or 0 < r['with_suffix_bpb'] < 20
    assert all(r['l2r_with_suffix_bpb'] > 0 for r in rows if r['run'] == 'mdm')


def test_frontier_rows_and_continuation_columns(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    X.main(['frontier', f'--runs={runs / "runs"}', f'--out_dir={tmp_path}', '--n_frontier=2'])
    out = json.load(open(tmp_path / 'frontier.json'))
    rows = out['rows']
    assert [r['setting'] for r in rows] == [label for label, _ in X.SETTINGS] and out['best_within_1_point']['mdm']
    by = {r['setting']: r for r in rows}
    assert by['steps=gen']['continuation_tokens_per_forward'] == 1
    assert by['steps=gen/4']['continuation_tokens_per_forward'] == 4
    for r in rows:  # the real continuations are the same reference in every row
        assert 0 < r['continuation_judge_bpb'] < 20 and 0 <= r['continuation_entropy'] <= 8
        assert r['val_text_judge_bpb'] == rows[0]['val_text_judge_bpb']


def test_infill_only_keeps_the_other_rows(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    kept = dict(run='mdm', iters=7, task='infill', mode='diffusion', hole_length='oracle', tasks=1, edit_similarity=0.5)
    (tmp_path / 'infill.json').write_text(json.dumps(dict(rows=[kept])))
    X.main(['infill', f'--runs={runs / "runs"}', f'--out_dir={tmp_path}', '--only=ar_fim', '--n_infill=2', '--n_he=2'])
    rows = json.load(open(tmp_path / 'infill.json'))['rows']
    assert rows[0] == kept  # the old mdm row first, untouched: --only redid ar_fim alone
    fim = rows[1:]
    assert [(r['run'], r['mode'], r['task']) for r in fim] == [
        ('ar_fim', 'fim', 'infill'), ('ar_fim', 'fim', 'humaneval_infill'),
        ('ar_fim', 'prefix', 'infill'), ('ar_fim', 'prefix', 'humaneval_infill')]
    assert all(r['tasks'] == 2 and 0 <= r['edit_similarity'] <= 1 for r in fim)


def test_varlen_table_rows(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # --max_hole=16: the runs' context is 32 tokens (a hole of 64 would leave no room); canvas 64 is left out
    X.main(['varlen', f'--runs={runs / "runs"}', f'--out_dir={tmp_path}', '--n_infill=2', '--n_he=2', '--max_hole=16'])
    out = json.load(open(tmp_path / 'varlen.json'))
    fills = ['canvas 4 (variable)', 'canvas 16 (variable)', 'oracle length', 'fixed 32']
    want = [('varlen', f, t) for t in ('infill', 'humaneval_infill') for f in fills] + [
        ('ar_fim', 'AR + FIM', t) for t in ('infill', 'humaneval_infill')] + [
        ('ar', 'AR prefix-only', t) for t in ('infill', 'humaneval_infill')]
    rows = out['rows']
    assert [(r['run'], r['fill'], r['task']) for r in rows] == want and out['max_hole'] == 16
    for r in rows:
        assert r['tasks'] == 2 and r['length_error'] >= 0 and r['tokens_per_forward'] >= 0  # 0: every hole emptied
        assert (r['hole_length'] == 'variable') == r['fill'].endswith('(variable)')
        assert ('pass@1' in r) == (r['task'] == 'humaneval_infill')
    assert [r['canvas'] for r in rows[:2]] == [4, 16]
    assert (tmp_path / 'varlen.png').exists()


def test_bad_runs_write_nothing(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'infill.json').write_text('{"rows": [{"run": "mdm_long"}]}')
    before = (tmp_path / 'infill.json').read_text()
    with pytest.raises(UserError, match='unknown run nope'):
        X.main(['infill', f'--runs={runs / "runs"}', f'--out_dir={tmp_path}', '--only=nope'])
    with pytest.raises(UserError, match='--only=mdm_long: no finished run'):
        X.main(['infill', f'--runs={runs / "runs"}', f'--out_dir={tmp_path}', '--only=mdm_long'])
    with pytest.raises(UserError, match='no finished run found'):
        X.main(['infill', f'--runs={tmp_path / "nowhere"}', f'--out_dir={tmp_path}'])
    assert (tmp_path / 'infill.json').read_text() == before
    with pytest.raises(UserError, match='name a table'):
        X.main(['tables'])


def test_adapt_counts_the_source_and_keeps_its_measurements(runs, tmp_path, monkeypatch, capsys):
    """experiments/run.py adapt on tiny runs: an adapted arm's compute includes its AR source's, and
    each arm's measurements are kept beside its checkpoint and reused while the checkpoint is the same."""
    from experiments import adapt as A
    monkeypatch.chdir(tmp_path)
    base = {**SMALL, 'dataset': str(runs / 'pycode')}
    src, out = runs / 'runs' / 'out-toy-ar2000', runs / 'runs' / 'out-toy-adapt'
    train.main([f'--{k}={v}' for k, v in {**base, 'objective': 'ar', 'out_dir': str(src)}.items()])
    train.main([f'--{k}={v}' for k, v in {**base, 'init_from': str(src), 'max_iters': 2, 'out_dir': str(out)}.items()])
    with pytest.raises(UserError, match='needs at least the ar and adapt_mdm runs'):
        X.main(['adapt', f'--runs={tmp_path}', f'--out_dir={tmp_path}'])
    assert not (tmp_path / 'adapt.json').exists()
    argv = ['adapt', f'--runs={runs / "runs"}', f'--out_dir={tmp_path}', '--n_infill=2', '--n_he=2']
    X.main(argv)
    res = json.load(open(tmp_path / 'adapt.json'))
    arms = {r['run']: r for r in res['arms']}
    assert set(arms) == {'ar', 'ar_fim', 'mdm', 'adapt_mdm'} and arms['adapt_mdm']['shift_logits'] is True
    tokens = SMALL['batch_size'] * SMALL['seq_len']
    assert arms['adapt_mdm']['total_forward_tokens'] == (4 + 2) * tokens == arms['ar']['total_forward_tokens'] + 2 * tokens
    assert arms['ar']['val_elbo_bpb'] == arms['ar']['val_l2r_bpb']  # AR: both are its exact NLL
    assert all(0 < arms['adapt_mdm'][f'ce_bits_t{t}'] < 20 for t in A.MASK_RATES)
    assert {r['run'] for r in res['infill'] if r.get('setting') == 'threshold 0.9'} == {'mdm', 'adapt_mdm'}
    assert [r['shift'] for r in json.load(open(tmp_path / 'shift.json'))['rows']] == [True]
    capsys.readouterr()
    X.main(argv)  # nothing changed: every arm's measurements are read back, the tables are the same
    assert capsys.readouterr().out.count('measurements from') == 4
    assert json.load(open(tmp_path / 'adapt.json'))['arms'] == res['arms']
