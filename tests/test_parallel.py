"""experiments/parallel.py: the parallel-decoding sweep on a tiny trained model with a trivial judge (pass@1, tokens
per forward, wall clock against AR, the batch check) and d3LLM's AUP on hand-computed points.
Run: python -m pytest tests/test_parallel.py -q"""
import math

import pytest
import torch

from diffusion import DiffusionOptions, training_loss
from experiments.parallel import answer, aup, default_rules, measure_parallel, plot_parallel
from model import Transformer, make_config
from sample import generate

pytestmark = pytest.mark.usefixtures('one_thread')
V, MASK, EOS, PAD = 32, 31, 29, 30


def test_aup_by_hand():
    w = lambda y: min(math.exp(-3 * (1 - y / 80)), 1)
    pts = [(4.0, 60.0), (1.0, 80.0), (2.0, 78.0)]  # 60 is more than 5 points below the reference: left out
    assert aup(pts) == pytest.approx(1 * 80 + (2 - 1) * (78 * w(78) + 80 * w(80)) / 2)
    assert aup([(1.0, 50.0)]) == 50.0 and aup([]) == 0.0
    assert aup([(1.0, 50.0), (3.0, 50.0)], y_max=100) == pytest.approx(50 + 2 * 50 * math.exp(-1.5))


def test_sweep_on_a_tiny_model():
    """A tiny model trained on one sequence (8 tokens, EOS, padding) continues prefixes of it; the judge asks for
    the answer one-token-per-step decoding gives (does parallel decoding keep it?). The sweep reports every rule and
    AR, steps=gen/2 commits 2 tokens per forward, and batch 4 gives every row its batch-of-one tokens."""
    g = torch.Generator().manual_seed(0)
    seq = torch.cat([torch.randint(0, V - 4, (8,), generator=g), torch.tensor([EOS] + [PAD] * 7)])
    torch.manual_seed(0)
    cfg = dict(vocab_size=V, mask_token_id=MASK, hidden_size=32, intermediate_size=64, num_attention_heads=2,
               num_key_value_heads=1, head_dim=16)
    m = Transformer(make_config('tiny', **cfg))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    for it in range(150):
        loss, _ = training_loss(m, seq.repeat(32, 1), objective='mdm', opts=DiffusionOptions(), progress=0.0, step=it,
                                generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ar = Transformer(make_config('tiny', attention='causal', **cfg)).eval()  # untrained: it fails the judge
    prompts = [seq[:n].tolist() for n in (2, 3, 4, 5, 6)]
    want = [answer(generate(m.eval(), [p], gen_length=8, block_length=8, eos_id=EOS, pad_id=PAD)[0][0, -8:].tolist(), EOS)
            for p in prompts]
    judge = lambda i, tokens: tokens == want[i]
    rules = [r for r in default_rules(8) if r[0] in ('steps=gen', 'steps=gen/2', 'threshold=0.9', 'threshold=0.5+edit')]
    res = measure_parallel(m.eval(), prompts, judge, rules=rules, ar_model=ar, gen_length=8, batch=4, block_length=8,
                           eos_id=EOS, pad_id=PAD)
    rows = {r['rule']: r for r in res['rows']}
    assert list(rows) == ['steps=gen', 'steps=gen/2', 'threshold=0.9', 'threshold=0.5+edit', 'AR']
    assert rows['steps=gen']['pass_at_1'] == 100 and rows['AR']['pass_at_1'] == 0
    assert rows['steps=gen']['tokens_per_forward'] == pytest.approx(rows['steps=gen']['tokens'] / rows['steps=gen']['nfe'])
    assert rows['steps=gen/2']['nfe'] == 4 * len(prompts)  # 8 slots in 4 steps for every prompt
    assert all(r['batch_equal'] for r in res['rows'])
    assert all(r['seconds_b1'] > 0 and r['speedup_vs_ar_b1'] > 0 for r in res['rows'])
    assert res['reference'] == 'steps=gen' and res['aup'] >= 100  # one token per step at 100% already
    assert set(res['aup_by_family']) == {'steps', 'threshold', 'editing'}
    plot_parallel(res)  # builds the plot function (drawn by experiments.common.save)
