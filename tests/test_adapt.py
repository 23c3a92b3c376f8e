"""
AR -> diffusion adaptation (CoDA, Dream, DiffuLLaMA, LLaDA 2.0): the logit shift that keeps an AR
model's head, attention annealing and the block-size schedule.  python -m pytest tests/test_adapt.py -q
"""
import json
import os

import pytest
import torch

import train
from conftest import tiny_pycode
from diffusion import (DiffusionOptions, anneal_mask, block_predict, block_size_at, diffusion_loss, mdm_batch, predict,
                       training_loss)
from model import ModelConfig, Transformer, UserError, make_config

SMALL = dict(model='tiny', seq_len=32, batch_size=4, max_iters=4, warmup_iters=1, lr=3e-3, min_lr=3e-4,
             eval_interval=0, eval_iters=1, elbo_samples=1, log_interval=1, checkpoint_interval=0, sample_interval=0)

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """A tiny corpus and a tiny AR run trained on it: the source every adaptation starts from."""
    root = tmp_path_factory.mktemp('adapt')
    tiny_pycode(root, [f"def f{i}(x):\n    return x * {i} + 1\n\n\nclass C{i}:\n    pass\n" * 6 for i in range(10)])
    train_in(root, 'ar', objective='ar')
    return root


def train_in(root, out, **kw):
    """train.main in-process; returns (model_config, train_config, log records) of root/out."""
    args = {**SMALL, 'dataset': str(root / 'pycode'), 'out_dir': str(root / out), **kw}
    train.main([f'--{k}={v}' for k, v in args.items()])
    ck = torch.load(root / out / 'ckpt.pt', weights_only=True)
    with open(root / out / 'log.jsonl') as f:
        return ck['model_config'], ck['train_config'], [json.loads(line) for line in f]


@pytest.mark.parametrize('kw, source, shifted', [
    (dict(objective='mdm'), 'ar', True),                          # the default keeps the AR head
    (dict(objective='mdm', shift_logits='false'), 'ar', False),   # the ablation
    (dict(objective='block'), 'ar', True),
    (dict(objective='mdm', attn_anneal_iters=2), 'ar', True),
    (dict(objective='mdm'), 'scratch', False),                    # from scratch, as LLaDA
    (dict(objective='mdm', shift_logits='true'), 'scratch', True),
])
def test_the_logit_shift_is_on_for_an_ar_source_by_default(runs, kw, source, shifted):
    out = f"s{abs(hash((source, tuple(sorted(kw.items()))))) % 10**8}"
    config, _, _ = train_in(runs, out, init_from=str(runs / source) if source != 'scratch' else 'scratch', **kw)
    assert config['shift_logits'] is shifted
    assert config['attention'] == {'block': 'block'}.get(kw['objective'], 'bidirectional')


def test_a_diffusion_source_keeps_its_own_shift_and_resume_keeps_the_model(runs):
    train_in(runs, 'adapted', init_from=str(runs / 'ar'), objective='mdm')
    train_in(runs, 'plain', init_from='scratch', objective='mdm')
    assert train_in(runs, 'adapted-more', init_from=str(runs / 'adapted'), objective='mdm')[0]['shift_logits'] is True
    assert train_in(runs, 'plain-more', init_from=str(runs / 'plain'), objective='mdm')[0]['shift_logits'] is False
    config, cfg, recs = train_in(runs, 'adapted', init_from='resume', max_iters=6)
    assert config['shift_logits'] is True and recs[-1]['iter'] == 6
    with pytest.raises(UserError, match='resume keeps its model'):
        train_in(runs, 'adapted', init_from='resume', max_iters=8, shift_logits='false')


def test_the_shift_survives_hf_export_and_sampling(runs, tmp_path):
    from sample import generate
    train_in(runs, 'exported', init_from=str(runs / 'ar'), objective='mdm', export_hf=str(tmp_path / 'hf'))
    ck = torch.load(runs / 'exported' / 'ckpt.pt', weights_only=True)
    a = Transformer(ModelConfig(**ck['model_config']))
    a.load_state_dict(ck['model'])
    b = Transformer.from_pretrained(str(tmp_path / 'hf'))
    assert b.config.shift_logits is True and b.config.attention == 'bidirectional'
    kw = dict(gen_length=8, block_length=8, steps=8, eos_id=None, pad_id=0)
    out_a, _ = generate(a.eval(), [[10, 20, 30]], **kw)
    out_b, _ = generate(b.eval(), [[10, 20, 30]], **kw)
    assert torch.equal(out_a, out_b)
    x = torch.tensor([[10, 20, 30, 39, 39, 5]])
    torch.testing.assert_close(predict(a, x), predict(b, x))
    a.config.shift_logits = False  # the flag is what the sampler and the losses read
    assert not torch.allclose(predict(a, x), predict(b, x))


def tiny(attention='bidirectional', shift=True, **kw):
    torch.manual_seed(0)
    return Transformer(make_config('tiny', vocab_size=40, mask_token_id=39, attention=attention,
                                   shift_logits=shift, **kw)).eval()


def test_annealing_starts_causal_and_ends_bidirectional():
    """DiffuLLaMA: at step 0 the loss is the causal model's, from step N on the bidirectional one's."""
    model, x0 = tiny(), torch.randint(0, 39, (3, 24), generator=torch.Generator().manual_seed(1))
    causal = tiny('causal')
    causal.load_state_dict(model.state_dict())
    opts = DiffusionOptions(attn_anneal_iters=10)

    def loss(step, o=opts):
        return training_loss(model, x0, objective='mdm', opts=o, progress=0.0, step=step,
                             generator=torch.Generator().manual_seed(7))[0]
    xt, _, weight, _ = mdm_batch(x0, mask_id=39, vocab_size=40, opts=opts, progress=0.0, step=0,
                                 generator=torch.Generator().manual_seed(7))
    assert loss(0).item() == pytest.approx(diffusion_loss(causal, xt, x0, weight, 1 / x0.numel()).item(), rel=1e-5)
    assert loss(0).item() != pytest.approx(loss(0, DiffusionOptions()).item(), rel=1e-3)
    assert loss(10).item() == loss(10, DiffusionOptions()).item()  # same noise, no mask: identical
    assert anneal_mask(24, 10, opts, None, 'cpu') is None
    m = anneal_mask(200, 5, opts, torch.Generator().manual_seed(0), 'cpu')  # r = 0.5
    upper = ~torch.ones(200, 200, dtype=torch.bool).tril()
    assert m[~upper].all() and m[upper].float().mean().item() == pytest.approx(0.5, abs=0.01)


def test_block_size_one_with_the_shift_is_next_token_prediction():
    """With the shift, block diffusion at block size 1 reads token i's prediction from the clean stream
    at i-1, which sees exactly tokens < i: the AR model's next-token logits."""
    model = tiny('block', block_size=1)
    causal = tiny('causal')
    causal.load_state_dict(model.state_dict())
    x0 = torch.randint(0, 39, (2, 16), generator=torch.Generator().manual_seed(3))
    aligned = block_predict(model, torch.full_like(x0, 39), x0)
    torch.testing.assert_close(aligned[:, 1:], causal(x0)[:, :-1], rtol=1e-5, atol=1e-5)


def test_the_block_size_schedule_is_followed_and_ends_at_block_size(runs):
    opts = DiffusionOptions(block_schedule='1@0,8@0.25,32@0.5,4@0.75')
    assert [block_size_at(opts, p) for p in (0, 0.2, 0.25, 0.6, 0.75, 1.0)] == [1, 1, 8, 32, 4, 4]
    config, _, recs = train_in(runs, 'wsd', init_from=str(runs / 'ar'), objective='block', max_iters=8,
                               block_schedule='1@0,8@0.25,32@0.5,4@0.75')
    assert [r['block_size'] for r in recs] == [1, 1, 8, 8, 32, 32, 4, 4]
    assert config['block_size'] == 4 and config['shift_logits'] is True


@pytest.mark.parametrize('kw, message', [
    (dict(objective='mdm', attn_anneal_iters=4), 'a model from scratch has none'),
    (dict(objective='mdm', attn_anneal_iters=4, init_from='{plain}'), 'is already bidirectional'),
    (dict(objective='block', attn_anneal_iters=5, init_from='{ar}'), 'use block_schedule instead'),
    (dict(objective='ar', attn_anneal_iters=5, init_from='{ar}'), 'stays causal'),
    (dict(objective='mdm', block_schedule='1@0,4@0.5'), 'is for objective=block'),
    (dict(objective='block', block_schedule='1@0,8@0.5'), 'the last must be block_size=4'),
    (dict(objective='block', block_schedule='1@0,3@0.5,4@0.7'), 'every size must divide seq_len=32'),
    (dict(objective='block', block_schedule='4@0.5'), 'progress rising from 0'),
    (dict(objective='block', block_schedule='four'), "use 'size@progress,...'"),
    (dict(objective='mdm', shift_logits='maybe'), 'use auto, true or false'),
    (dict(objective='ar', shift_logits='true'), 'is for the diffusion objectives'),
])
def test_adaptation_options_that_do_not_fit_get_one_line(runs, kw, message):
    if not (runs / 'plain').exists():
        train_in(runs, 'plain', init_from='scratch', objective='mdm')
    kw = {k: v.format(ar=runs / 'ar', plain=runs / 'plain') if isinstance(v, str) else v for k, v in kw.items()}
    with pytest.raises(UserError, match=message.replace('(', r'\(').replace('.', r'\.')):
        train_in(runs, 'refused', **kw)
    assert not os.path.exists(runs / 'refused')
