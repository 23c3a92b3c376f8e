"""model.py against its reference, Hugging Face's Qwen3ForCausalLM, and the invariants of each
attention mode and of the KV cache.  Run: python -m pytest tests/test_model.py -q"""
import json
import os

import pytest
import torch

from model import Context, ModelConfig, Transformer, UserError, block_diffusion_mask, make_config

TINY = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, rope_theta=10000.0, rms_norm_eps=1e-6, max_position_embeddings=128)


def tiny(attention='bidirectional', seed=0, **kw):
    torch.manual_seed(seed)
    return Transformer(ModelConfig(**{**TINY, 'attention': attention, **kw})).eval()


def hf_model(tie, seed=0):
    transformers = pytest.importorskip('transformers')
    torch.manual_seed(seed)
    cfg = transformers.Qwen3Config(**TINY, tie_word_embeddings=tie, attention_bias=False, torch_dtype='float32')
    cfg._attn_implementation = 'eager'
    m = transformers.Qwen3ForCausalLM(cfg).eval()
    with torch.no_grad():  # HF initialises norms to 1: perturb them so they are tested too
        for n, p in m.named_parameters():
            if 'norm' in n:
                p.add_(0.1 * torch.randn_like(p))
    return m


@pytest.mark.parametrize('tie', [True, False])
@pytest.mark.parametrize('shard', [None, '20KB'])
def test_causal_equals_hf_qwen3(tmp_path, tie, shard):
    hf = hf_model(tie)
    hf.save_pretrained(tmp_path, **({'max_shard_size': shard} if shard else {}))
    if shard:
        assert os.path.isfile(tmp_path / 'model.safetensors.index.json')
    ours = Transformer.from_pretrained(str(tmp_path), attention='causal').eval()
    assert ours.config.tie_word_embeddings == tie
    assert (ours.lm_head.weight is ours.model.embed_tokens.weight) == tie
    idx = torch.randint(0, TINY['vocab_size'], (3, 21))
    with torch.no_grad():
        ref = hf(idx).logits
        out = ours(idx)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_bidirectional_equals_hf_with_zero_4d_mask(tmp_path):
    hf = hf_model(True)
    hf.save_pretrained(tmp_path)
    ours = Transformer.from_pretrained(str(tmp_path)).eval()  # qwen3 file, default mode: bidirectional
    idx = torch.randint(0, TINY['vocab_size'], (2, 17))
    with torch.no_grad():
        ref = hf(idx, attention_mask=torch.zeros(2, 1, 17, 17)).logits  # additive mask 0 = see everything
        out = ours(idx)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_left_padding_equals_hf_attention_mask(tmp_path):
    hf = hf_model(False)
    hf.save_pretrained(tmp_path)
    ours = Transformer.from_pretrained(str(tmp_path), attention='causal').eval()
    idx = torch.randint(0, TINY['vocab_size'], (2, 12))
    am = torch.ones(2, 12, dtype=torch.long)
    am[0, :5] = 0
    pos = (am.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ref = hf(idx, attention_mask=am, position_ids=pos).logits
        out = ours(idx, Context(pad=torch.tensor([5, 0])))
    torch.testing.assert_close(out[0, 5:], ref[0, 5:], atol=1e-4, rtol=0)
    torch.testing.assert_close(out[1], ref[1], atol=1e-4, rtol=0)


def changed_rows(model, idx, j):
    """Which output positions change when input token j changes."""
    idx2 = idx.clone()
    idx2[0, j] = (idx2[0, j] + 1) % model.config.vocab_size
    with torch.no_grad():
        d = (model(idx) - model(idx2)).abs().amax(-1)[0]
    return set(torch.nonzero(d > 1e-6).flatten().tolist())


@pytest.mark.parametrize('attention', ['causal', 'bidirectional', 'block'])
def test_visibility_by_perturbation(attention):
    m, T = tiny(attention, block_size=4), 12
    idx = torch.randint(0, 97, (1, T))
    for j in range(T):
        expect = {'causal': set(range(j, T)), 'bidirectional': set(range(T)),
                  'block': set(range(j // 4 * 4, T))}[attention]
        assert changed_rows(m, idx, j) == expect, (attention, j)


def test_block_diffusion_mask_structure_and_layout():
    L, bs = 8, 4
    m = block_diffusion_mask(L, bs)
    for i in range(2 * L):
        for j in range(2 * L):
            qb, kb = (i % L) // bs, (j % L) // bs
            if i < L:
                expect = (kb == qb) if j < L else (kb < qb)
            else:
                expect = j >= L and kb <= qb
            assert bool(m[i, j]) == expect
    # the noisy stream of [x_t ; x_0] equals a block-causal pass over (clean blocks < b, noisy block b)
    model = tiny('block', block_size=bs)
    x0, xt = torch.randint(0, 97, (1, L)), torch.randint(0, 97, (1, L))
    with torch.no_grad():
        out = model(torch.cat([xt, x0], 1), Context(pos=torch.cat([torch.arange(L)] * 2), attn_mask=m))
        for b in range(L // bs):
            seq = torch.cat([x0[:, :b * bs], xt[:, b * bs:(b + 1) * bs]], 1)
            torch.testing.assert_close(out[:, b * bs:(b + 1) * bs], model(seq)[:, b * bs:], atol=1e-5, rtol=0)
        torch.testing.assert_close(out[:, L:], model(x0), atol=1e-5, rtol=0)  # clean stream = plain pass


@pytest.mark.parametrize('attention', ['block', 'causal'])
def test_kv_cache_block_forward_equals_full_forward(attention):
    m = tiny(attention, block_size=4)
    idx = torch.randint(0, 97, (2, 16))
    with torch.no_grad():
        full = m(idx)
        cache = m.new_cache(2, 16)
        m(idx[:, :8], Context(cache=cache, start=0))  # commit the first two blocks
        peek = m(idx[:, 8:12], Context(cache=cache, start=8, write=False))  # a block being denoised
        k_before = cache.k[0].clone()
        m(idx[:, 8:12] * 0, Context(cache=cache, start=8, write=False))  # peeking leaves the cache alone
        assert torch.equal(cache.k[0], k_before)
        commit = m(idx[:, 8:12], Context(cache=cache, start=8))
        last = m(idx[:, 12:], Context(cache=cache, start=12))
    torch.testing.assert_close(peek, full[:, 8:12], atol=1e-5, rtol=0)
    torch.testing.assert_close(commit, full[:, 8:12], atol=1e-5, rtol=0)
    torch.testing.assert_close(last, full[:, 12:], atol=1e-5, rtol=0)


def test_bidirectional_cache_with_all_keys_equals_full_forward():
    """Fast-dLLM's dual cache is exact when the cached K/V are fresh: attend to all kv_len keys."""
    m = tiny('bidirectional')
    idx = torch.randint(0, 97, (1, 16))
    with torch.no_grad():
        full = m(idx)
        cache = m.new_cache(1, 16)
        m(idx, Context(cache=cache, start=0))
        mid = m(idx[:, 4:8], Context(cache=cache, start=4, kv_len=16, write=False))
    torch.testing.assert_close(mid, full[:, 4:8], atol=1e-5, rtol=0)


@pytest.mark.parametrize('attention', ['causal', 'bidirectional', 'block'])
def test_left_padded_row_equals_its_batch_of_one(attention):
    m = tiny(attention, block_size=4)
    a, b = torch.randint(0, 97, (1, 6)), torch.randint(0, 97, (1, 10))
    batch = torch.cat([torch.cat([torch.zeros(1, 4, dtype=torch.long), a], 1), b])
    pad = torch.tensor([4, 0])
    with torch.no_grad():
        out = m(batch, Context(pad=pad))
        torch.testing.assert_close(out[0, 4:], m(a)[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(out[1], m(b)[0], atol=1e-5, rtol=0)
        if attention == 'bidirectional':
            return  # a bidirectional prefix cache is approximate by design (Fast-dLLM)
        # and through the cache: whole blocks of every row committed, then a block, both padded
        cache = m.new_cache(2, 10)
        m(batch[:, :8], Context(pad=pad, cache=cache, start=0))
        blk = m(batch[:, 8:], Context(pad=pad, cache=cache, start=8, write=False))
    torch.testing.assert_close(blk, out[:, 8:], atol=1e-5, rtol=0)


def test_save_load_roundtrip_identical(tmp_path):
    for tie in (True, False):
        m = tiny('block', block_size=4, tie_word_embeddings=tie, mask_token_id=96, shift_logits=True)
        m.save_pretrained(str(tmp_path / str(tie)), max_shard_size=10_000)
        m2 = Transformer.from_pretrained(str(tmp_path / str(tie)))
        assert m2.config == m.config
        sd, sd2 = m.state_dict(), m2.state_dict()
        assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)


def test_causal_save_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip('transformers')
    m = tiny('causal')
    m.save_pretrained(str(tmp_path))
    hf = transformers.Qwen3ForCausalLM.from_pretrained(str(tmp_path)).eval()
    idx = torch.randint(0, 97, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(m(idx), hf(idx).logits, atol=1e-4, rtol=0)


def test_coda_config_sets_diffusion_conventions(tmp_path):
    m = tiny('causal', tie_word_embeddings=False)
    m.save_pretrained(str(tmp_path))
    cfg = json.loads((tmp_path / 'config.json').read_text())
    for k in ('attention', 'shift_logits', 'mask_token_id', 'block_size'):
        cfg.pop(k)
    cfg['model_type'] = 'CoDA'
    (tmp_path / 'config.json').write_text(json.dumps(cfg))
    c = Transformer.from_pretrained(str(tmp_path)).config
    assert (c.attention, c.shift_logits, c.mask_token_id) == ('bidirectional', True, 151669)


def test_bf16_close_to_float32(tmp_path):
    m = tiny('bidirectional')
    m.save_pretrained(str(tmp_path))
    m16 = Transformer.from_pretrained(str(tmp_path), dtype=torch.bfloat16)
    assert m16.lm_head.weight.dtype == torch.bfloat16
    idx = torch.randint(0, 97, (2, 16))
    with torch.no_grad():
        ref, out = m(idx), m16(idx).float()
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    assert (out.argmax(-1) == ref.argmax(-1)).float().mean() > 0.9


def test_bad_checkpoints_give_one_clear_error(tmp_path):
    with pytest.raises(UserError, match='no config.json'):
        Transformer.from_pretrained(str(tmp_path))
    m = tiny('causal')
    m.save_pretrained(str(tmp_path / 'a'), max_shard_size=10_000)
    cfg = json.loads((tmp_path / 'a' / 'config.json').read_text())
    (tmp_path / 'a' / 'config.json').write_text(json.dumps({**cfg, 'model_type': 'llama'}))
    with pytest.raises(UserError, match='not supported'):
        Transformer.from_pretrained(str(tmp_path / 'a'))
    (tmp_path / 'a' / 'config.json').write_text(json.dumps(cfg))
    with pytest.raises(UserError, match='fit the config.*hidden_size|shape'):
        Transformer.from_pretrained(str(tmp_path / 'a'), intermediate_size=48)
    os.remove(sorted((tmp_path / 'a').glob('model-*.safetensors'))[1])
    with pytest.raises(UserError, match='missing shard'):
        Transformer.from_pretrained(str(tmp_path / 'a'))


def _truncate(path, keep):
    path.write_bytes(path.read_bytes()[:keep(path.stat().st_size)])


def _first_shard(d):
    return sorted(d.glob('model-*.safetensors'))[0]


# a damaged Hugging Face directory -> (what names the damaged file in the message)
DAMAGED_HF = {
    'truncated safetensors': (lambda d: _truncate(d / 'model.safetensors', lambda n: n // 2), 'model.safetensors is not a readable safetensors'),
    'safetensors header only': (lambda d: _truncate(d / 'model.safetensors', lambda n: 5), 'model.safetensors is not a readable safetensors'),
    'not safetensors at all': (lambda d: (d / 'model.safetensors').write_bytes(b'PK\x03\x04' * 100), 'model.safetensors is not a readable'),
    'config.json not JSON': (lambda d: (d / 'config.json').write_text('{"model_type": "qwen3",'), 'config.json is not valid JSON'),
    'config.json a list': (lambda d: (d / 'config.json').write_text('[]'), 'config.json is not a JSON object'),
    'config.json without hidden_size': (lambda d: (d / 'config.json').write_text('{"model_type": "qwen3"}'),
                                        'config.json: vocab_size, hidden_size.* missing'),
    'index not JSON': (lambda d: (d / 'model.safetensors.index.json').write_text('nope'), 'index.json is not valid JSON'),
    'index without weight_map': (lambda d: (d / 'model.safetensors.index.json').write_text('{}'), 'index.json has no weight_map'),
    'missing shard': (lambda d: _first_shard(d).unlink(), 'missing shard.*model-00001-of-'),
    'truncated shard': (lambda d: _truncate(_first_shard(d), lambda n: n - 7), 'model-00001-of-.*not a readable safetensors'),
}


@pytest.mark.parametrize('damage', list(DAMAGED_HF))
def test_damaged_hf_files_are_one_clear_error(tmp_path, damage):
    spoil, match = DAMAGED_HF[damage]
    sharded = 'shard' in damage or 'index' in damage
    tiny('bidirectional').save_pretrained(str(tmp_path), max_shard_size=10_000 if sharded else None)
    spoil(tmp_path)
    with pytest.raises(UserError, match=match):
        Transformer.from_pretrained(str(tmp_path))


def test_check_ranges_parse_dtype_check_device():
    from lib.cli import check_device, check_ranges, parse_dtype
    check_ranges(dict(a=0.0, b=1, c=None), dict(a='[0, 1)', b='(0, inf)', c='(0, 1)'))
    for v, interval in ((1.0, '[0, 1)'), (0, '(0, inf)'), (float('nan'), '[0, inf)'), (float('inf'), '[0, inf)')):
        with pytest.raises(UserError, match=rf'--a={v} is out of range: it must be in \{interval[0]}.*the default is 7'):
            check_ranges(dict(a=v), dict(a=interval), defaults=dict(a=7))
    assert parse_dtype('bfloat16') is torch.bfloat16
    for bad in ('float8', 'int8', 'Tensor', 'auto'):
        with pytest.raises(UserError, match='not supported; use float32, bfloat16, float16'):
            parse_dtype(bad)
    assert check_device('cpu') == 'cpu'
    for bad in ('gpu', 'xla', 'cuda:99'):
        with pytest.raises(UserError, match='not a device|not available'):
            check_device(bad)


def test_presets():
    c = make_config('1.7B')
    assert (c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads,
            c.num_key_value_heads, c.head_dim, c.vocab_size) == (2048, 6144, 28, 16, 8, 128, 151936)
    with torch.device('meta'):
        assert abs(Transformer(c).num_params() / 1e9 - 1.72) < 0.02  # Qwen3-1.7B, tied
    with pytest.raises(UserError, match='unknown model preset'):
        make_config('2B')
    with pytest.raises(UserError, match='unknown model config key'):
        make_config('tiny', hiden_size=3)


def test_empty_or_foreign_checkpoint_is_one_clear_error(tmp_path):
    from lib.runtime import load_checkpoint
    (tmp_path / 'empty.pt').write_bytes(b'')
    with pytest.raises(UserError, match='not a readable checkpoint'):
        load_checkpoint(str(tmp_path / 'empty.pt'))
    torch.save({'weights': torch.zeros(2)}, tmp_path / 'other.pt')
    with pytest.raises(UserError, match='not a nanoCoDA checkpoint'):
        load_checkpoint(str(tmp_path / 'other.pt'))


# ----------------------------------------------------------------------------- rows and the chunked CE

@pytest.mark.parametrize('attention', ['bidirectional', 'block', 'causal'])
def test_rows_equal_the_same_rows_of_the_full_forward(attention):
    """model(idx, rows=...) computes the head only where asked; the values are the full forward's.
    rows are flat indices b * T + i: here from (B, R) indices, from a bool mask, and given directly."""
    m = tiny(attention, block_size=4)
    idx, pad = torch.randint(0, 97, (2, 16)), torch.tensor([0, 3])
    r = torch.tensor([[0, 5, 5, 15], [3, 1, 9, 2]])  # (B, R) indices, repeats allowed
    mask = torch.rand(2, 16, generator=torch.Generator().manual_seed(1)) < 0.5
    flat = torch.tensor([31, 0, 17, 17, 4])
    of = lambda r, T: (torch.arange(2)[:, None] * T + r).flatten()  # (B, R) -> flat
    with torch.no_grad():
        for ctx in (None, Context(pad=pad)):
            full = m(idx, ctx)
            torch.testing.assert_close(m(idx, ctx, rows=of(r, 16)).view(2, 4, -1), full[torch.arange(2)[:, None], r],
                                       atol=1e-5, rtol=0)
            torch.testing.assert_close(m(idx, ctx, rows=mask.flatten().nonzero().squeeze(1)), full[mask], atol=1e-5, rtol=0)
            torch.testing.assert_close(m(idx, ctx, rows=flat), full.flatten(0, 1)[flat], atol=1e-5, rtol=0)
        full = m(idx)
        cache = m.new_cache(2, 16)  # a KV cache holding every key; peek at a window's rows
        m(idx, Context(cache=cache, start=0))
        peek = Context(cache=cache, start=8, kv_len=16, write=False)
        got = m(idx[:, 8:12], peek, rows=of(torch.tensor([[0, 3], [2, 1]]), 4)).view(2, 2, -1)
        torch.testing.assert_close(got, full[:, 8:12][torch.arange(2)[:, None], torch.tensor([[0, 3], [2, 1]])],
                                   atol=1e-5, rtol=0)
        win = m(idx[:, 8:12], peek, rows=torch.tensor([1, 6]))  # flat
        torch.testing.assert_close(win, full[:, 8:12].flatten(0, 1)[[1, 6]], atol=1e-5, rtol=0)


def test_chunked_cross_entropy_equals_full_logits():
    """Values and gradients of the chunked CE (3 rows x V at a time) equal F.cross_entropy on full logits."""
    from lib.head import cross_entropy
    torch.manual_seed(0)
    h, W = torch.randn(37, 16, requires_grad=True), torch.randn(50, 16, requires_grad=True)
    y, w = torch.randint(0, 50, (37,)), torch.rand(37)
    ref = torch.nn.functional.cross_entropy(h @ W.t(), y, reduction='none')
    torch.testing.assert_close(cross_entropy(h, W, y, chunk_floats=150), ref)  # per row
    (ref * w).sum().backward()
    gh, gW = h.grad.clone(), W.grad.clone()
    h.grad = W.grad = None
    loss = cross_entropy(h, W, y, w, chunk_floats=150)
    (2 * loss).backward()  # the upstream gradient scales the precomputed one
    torch.testing.assert_close(loss, (ref * w).sum().detach())
    torch.testing.assert_close(h.grad, 2 * gh)
    torch.testing.assert_close(W.grad, 2 * gW)
    assert cross_entropy(h[:0], W, y[:0], w[:0]).item() == 0  # no rows
    with torch.no_grad():
        torch.testing.assert_close(cross_entropy(h, W, y, w, chunk_floats=150), (ref * w).sum())
