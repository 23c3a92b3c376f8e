"""diffusion.py: forward processes, progressive masking, block diffusion, edits, losses and ELBO.
Run: python -m pytest tests/test_diffusion.py -q"""
import math

import pytest
import torch
import torch.nn as nn

import diffusion as D
from lib.head import cross_entropy
from model import ModelConfig, Transformer, UserError

V, MASK = 64, 63


def tiny(attention='bidirectional', shift=False, zero_head=False, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=8, attention=attention, block_size=4, mask_token_id=MASK,
                      shift_logits=shift, tie_word_embeddings=not zero_head, **kw)
    m = Transformer(cfg).eval()
    if zero_head:  # zero output head -> uniform logits
        nn.init.zeros_(m.lm_head.weight)
    return m


class UniformSpy(nn.Module):
    """A stand-in model: uniform logits, and it remembers the last input it saw."""
    def __init__(self, config):
        super().__init__()
        self.config, self.seen = config, None

    def forward(self, idx, rows=None, targets=None, weights=None, **kw):
        self.seen = idx
        if targets is not None:  # the losses ask for the CE of the scored rows (model.cross_entropy)
            return cross_entropy(torch.zeros(len(targets), 1), torch.zeros(self.config.vocab_size, 1), targets, weights)
        return torch.zeros(*idx.shape, self.config.vocab_size)


class FixedLogits(nn.Module):
    """A stand-in model whose aligned logits are a given (B, L, V) tensor."""
    def __init__(self, config, logits):
        super().__init__()
        self.config, self.logits = config, logits

    def forward(self, idx, rows=None, targets=None, weights=None, **kw):
        return cross_entropy(self.logits.flatten(0, 1)[rows], torch.eye(self.config.vocab_size), targets, weights)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def data(B=8, L=32, seed=1):
    return torch.randint(0, MASK, (B, L), generator=gen(seed))


def levenshtein(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


# ----------------------------------------------------------------------------- shift

def test_shift_logits_and_predict():
    x = torch.arange(2 * 5 * 3, dtype=torch.float).view(2, 5, 3)
    s = D.shift_logits(x)
    assert torch.equal(s[:, 0], x[:, 0]) and torch.equal(s[:, 1:], x[:, :-1])
    first = torch.full((2, 3), -1.0)
    assert torch.equal(D.shift_logits(x, first)[:, 0], first)
    idx = data(2, 8)
    for shift in (False, True):
        m = tiny(shift=shift)
        with torch.no_grad():
            raw, out = m(idx), D.predict(m, idx)
        assert torch.equal(out, D.shift_logits(raw) if shift else raw)


# ----------------------------------------------------------------------------- forward process and loss

@pytest.mark.parametrize('t', [0.1, 0.5, 0.9])
def test_forward_process_rate_maskable_and_values(t):
    x0 = data(64, 256)
    maskable = torch.rand(64, 256, generator=gen(2)) < 0.7
    xt, masked, tt = D.forward_process(x0, MASK, maskable, t=torch.full((64,), t), generator=gen(3))
    rate = masked.sum() / maskable.sum()
    n = maskable.sum().item()
    assert abs(rate.item() - t) < 4 * math.sqrt(t * (1 - t) / n)  # binomial, 4 sigma
    assert not masked[~maskable].any()
    assert (xt[masked] == MASK).all() and torch.equal(xt[~masked], x0[~masked])
    assert torch.equal(tt, torch.full((64,), t))


def test_sampled_t_range_and_low_discrepancy():
    _, _, t = D.forward_process(data(16, 8), MASK, eps=1e-3, generator=gen(), low_discrepancy=True)
    assert t.min() >= 1e-3 and t.max() <= 1
    u = ((t - 1e-3) / (1 - 1e-3)).sort().values  # one point per stratum of width 1/B
    assert torch.allclose(u[1:] - u[:-1], torch.full((15,), 1 / 16), atol=1e-5)


def test_uniform_logits_loss_is_log_v():
    B, L, g = 8, 64, gen(4)
    x0, spy = data(B, L), UniformSpy(tiny().config)
    losses = []
    for _ in range(200):
        xt, masked, t = D.forward_process(x0, MASK, generator=g, low_discrepancy=True)
        losses.append(D.diffusion_loss(spy, xt, x0, masked / t[:, None], 1 / (B * L)).item())
    assert abs(sum(losses) / len(losses) / math.log(V) - 1) < 0.05


def test_only_masked_positions_carry_gradient():
    x0 = data(4, 16)
    xt, masked, t = D.forward_process(x0, MASK, t=torch.full((4,), 0.5), generator=gen(5))
    logits = torch.randn(4, 16, V, requires_grad=True)
    D.diffusion_loss(FixedLogits(tiny().config, logits), xt, x0, masked / t[:, None], 1 / x0.numel()).backward()
    per_row = logits.grad.abs().sum(-1)
    assert (per_row[~masked] == 0).all() and (per_row[masked] > 0).all()


# ----------------------------------------------------------------------------- CoDA progressive masking

def test_masking_schedules():
    O = D.DiffusionOptions
    assert D.masking_probs(O(), 0.5) == (0.0, 0.0, 0.0)
    assert D.masking_probs(O(masking='pretrain'), 0.0) == D.masking_probs(O(masking='pretrain'), 1.0) == (0.01,) * 3
    mid = O(masking='midtrain')
    expect = {0.0: (0.01, 0.01, 0.05), 0.19: (0.01, 0.01, 0.05), 0.2: (0.05, 0.05, 0.10), 0.5: (0.10, 0.10, 0.15),
              0.79: (0.15, 0.15, 0.20), 0.8: (0.20, 0.20, 0.25), 1.0: (0.20, 0.20, 0.25)}
    for p, probs in expect.items():
        assert D.masking_probs(mid, p) == pytest.approx(probs)
    const = O(masking='custom', s1_prob=0.1, s2_prob=0.2, s3_prob=0.4)
    lin = O(masking='custom', s1_prob=0.1, s2_prob=0.2, s3_prob=0.4, mask_schedule='linear')
    assert D.masking_probs(const, 0.3) == pytest.approx((0.1, 0.2, 0.4))
    assert D.masking_probs(lin, 0.0) == pytest.approx((0, 0, 0))
    assert D.masking_probs(lin, 0.5) == pytest.approx((0.05, 0.1, 0.2))
    for bad in (dict(masking='zzz'), dict(mask_schedule='cosine'), dict(s3_prob=2.0), dict(s3_block_sizes='a')):
        with pytest.raises(UserError):
            O(**bad)


def test_s1_prefix_and_s2_padded_suffix():
    B, L = 4000, 16
    maskable, keep = D.coda_regions(B, L, 0.3, 0.5, gen(6), 'cpu')
    s1, s2 = ~maskable[:, 0], ~keep[:, -1]
    assert not (s1 & s2).any()  # S2 only for rows without S1
    assert abs(s1.float().mean() - 0.3) < 0.03 and abs(s2.float().mean() - 0.7 * 0.5) < 0.03
    pre = (~maskable[s1]).sum(1)  # S1 prefix: contiguous, length in 1..L-1
    assert pre.min() >= 1 and pre.max() <= L - 1 and (maskable[s1] == (torch.arange(L) >= pre[:, None])).all()
    kept = keep[s2].sum(1)  # S2: the kept part is a prefix [0, cut), cut in 1..L-1
    assert kept.min() >= 1 and kept.max() <= L - 1 and (keep[s2] == (torch.arange(L) < kept[:, None])).all()
    assert torch.equal(maskable[s2], keep[s2])
    # through the mdm batch: S1 prefix never masked; S2 suffix is pad, never masked, never scored
    x0, PAD = data(256, L).clamp(max=61), 62
    for opts in (D.DiffusionOptions(masking='custom', s1_prob=1.0), D.DiffusionOptions(masking='custom', s2_prob=1.0)):
        xt, masked, w, _ = D.mdm_batch(x0, mask_id=MASK, vocab_size=V, opts=opts, progress=0.0, step=0,
                                       generator=gen(7), pad_id=PAD)
        if opts.s1_prob:  # the first token of a row is always in the S1 prefix; prefix = before the first mask
            assert torch.equal(xt[:, 0], x0[:, 0]) and not masked[:, 0].any()
            assert torch.equal(xt[~masked], x0[~masked])
        else:
            pad = xt == PAD
            assert pad[:, -1].all() and not pad[:, 0].any()
            assert (pad.int().diff(dim=1) >= 0).all()  # padding is a suffix
            assert not masked[pad].any() and (w[pad] == 0).all()
    with pytest.raises(UserError):  # S2 needs a pad id
        D.mdm_batch(x0, mask_id=MASK, vocab_size=V, opts=D.DiffusionOptions(masking='custom', s2_prob=0.5),
                    progress=0.0, step=0)


@pytest.mark.parametrize('t', [0.15, 0.5])
def test_s3_spans_are_contiguous_and_rate_is_t(t):
    B, L, k = 2000, 32, 4
    start = torch.randint(0, 12, (B, 1), generator=gen(8))
    maskable = torch.arange(L)[None] >= start  # an S1-like region

    def masks(p3, g, **kw):
        return D.forward_process(torch.zeros(B, L, dtype=torch.long), MASK, maskable, t=torch.full((B,), t), p3=p3,
                                 generator=g, **kw)[1]
    masked = masks(1.0, gen(9), sizes=[k])
    assert not masked[~maskable].any()
    n = maskable.sum().item()
    rate = (masked.sum() / n).item()
    assert abs(rate - t) < 0.02
    # per-position rate is t at the region's first token too (virtual starts before the region)
    first = masked.gather(1, start).float().mean().item()
    assert abs(first - t) < 4 * math.sqrt(t * (1 - t) / B)
    # every maximal masked run is >= k long unless it touches the region's start or the row's end
    for row, s in zip(masked.tolist(), start[:, 0].tolist()):
        j = 0
        while j < L:
            if row[j]:
                e = j
                while e < L and row[e]:
                    e += 1
                assert e - j >= k or j == s or e == L
                j = e
            j += 1
    # p3 is a real probability per row: with p3=0.3 about 30% of rows have spans
    iid = masks(0.0, gen(10))
    mixed = masks(0.3, gen(10), sizes=[k])
    assert not torch.equal(iid, mixed) and abs(mixed.sum().item() / n - t) < 0.02


# ----------------------------------------------------------------------------- SFT

def test_sft_never_masks_prompt_and_normalises_by_answer_length():
    spy, L = UniformSpy(tiny().config), 32
    x0, prompt_len = data(8, L), torch.tensor([3, 5, 8, 10, 12, 16, 20, 24])
    opts, g, losses = D.DiffusionOptions(masking='custom', s3_prob=0.5), gen(11), []
    for step in range(300):
        loss, info = D.training_loss(spy, x0, objective='sft', opts=opts, progress=0.5, step=step, generator=g,
                                     prompt_len=prompt_len)
        xt, prompt = spy.seen, torch.arange(L)[None] < prompt_len[:, None]
        assert torch.equal(xt[prompt], x0[prompt])
        assert (xt[~prompt] == MASK).any()
        losses.append(loss.item())
    # uniform logits: per row E[sum_masked log V / t] / answer length = log V
    assert abs(sum(losses) / len(losses) / math.log(V) - 1) < 0.05


# ----------------------------------------------------------------------------- block diffusion

@pytest.mark.parametrize('shift', [False, True])
def test_block_layout_equals_single_stream_with_shift(shift):
    m, L, bs = tiny('block', shift=shift), 16, 4
    x0, xt = data(2, L), data(2, L, seed=3)
    with torch.no_grad():
        aligned = D.block_predict(m, xt, x0)
        for b in range(L // bs):  # inference with an exact block cache: clean blocks < b, then noisy block b
            seq = torch.cat([x0[:, :b * bs], xt[:, b * bs:(b + 1) * bs]], 1)
            single = D.predict(m, seq)[:, b * bs:]
            torch.testing.assert_close(aligned[:, b * bs:(b + 1) * bs], single, atol=1e-5, rtol=0)


def test_block_noise_clipping_and_forced_mask():
    x0, bs = data(64, 32), 4
    maskable = torch.ones_like(x0, dtype=torch.bool)
    maskable[:, :6] = False  # a prompt: block 0 has no maskable token, block 1 has two
    for step in range(10):
        xt, masked, w, _ = D.block_batch(x0, mask_id=MASK, block_size=bs, opts=D.DiffusionOptions(), step=step,
                                         generator=gen(step), maskable=maskable)
        blocks = masked.view(64, -1, bs)
        assert blocks[:, 1:].any(-1).all() and not blocks[:, 0].any()  # >= 1 masked per block with maskable tokens
        assert not masked[~maskable].any() and (xt[masked] == MASK).all() and torch.equal(xt[~masked], x0[~masked])
        assert (w[masked] <= bs + 1e-4).all() and (w[masked] >= 1).all()  # weight 1/t with t clipped to [1/bs, 1]
        assert (w[~masked] == 0).all()
    with pytest.raises(UserError):
        D.block_batch(data(2, 30), mask_id=MASK, block_size=4, opts=D.DiffusionOptions(), step=0)


def test_warmup_drops_inverse_t_and_caps_u():
    opts = D.DiffusionOptions(block_warmup_iters=100, low_discrepancy=False)
    for step, u_max in ((0, 1e-3), (50, 1e-3 + (1 - 1e-3) * 0.5)):
        t, w = D.noise_level(4000, opts, step, gen(12), 'cpu')
        assert (w == 1).all() and t.max() <= u_max + 1e-3 and t.max() > 0.9 * u_max
    t, w = D.noise_level(4000, opts, 100, gen(12), 'cpu')
    assert torch.allclose(w, 1 / t) and t.max() > 0.99
    _, masked, w, _ = D.block_batch(data(8, 32), mask_id=MASK, block_size=4, opts=opts, step=10, generator=gen(13))
    assert torch.equal(w, masked.float())  # warm-up: plain CE on the masked tokens


# ----------------------------------------------------------------------------- edits

def test_edit_corruption_bounds_and_changes():
    B, L, rate = 200, 32, 0.3
    x0 = data(B, L)
    start = torch.randint(0, 10, (B, 1), generator=gen(14))
    end = start + torch.randint(8, 22, (B, 1), generator=gen(15))
    editable = (torch.arange(L)[None] >= start) & (torch.arange(L)[None] < end)
    out, changed, n = D.edit_corrupt(x0, editable, rate, V - 1, MASK, generator=gen(16))
    assert out.shape == x0.shape and torch.equal(changed, out != x0) and changed.any()
    assert torch.equal(out[~editable], x0[~editable])  # nothing moves outside the region
    N = editable.sum(1)
    assert (n <= (rate * N).floor()).all() and (n > 0).any()
    for b in range(B):  # region keeps its length; each op costs at most 2 (the op and the cut/fill at the end)
        s, e = start[b, 0].item(), end[b, 0].item()
        assert levenshtein(out[b, s:e].tolist(), x0[b, s:e].tolist()) <= 2 * n[b].item()
    same, ch, n0 = D.edit_corrupt(x0, editable, 0.0, V - 1, MASK, generator=gen(17))
    assert torch.equal(same, x0) and not ch.any() and (n0 == 0).all()
    # mdm after edit_start: every changed visible token is scored (weight 1), masked ones 1/t
    opts = D.DiffusionOptions(edit_start=0.8, edit_rate=0.3)
    xt, masked, w, _ = D.mdm_batch(x0, mask_id=MASK, vocab_size=V - 1, opts=opts, progress=0.9, step=0, generator=gen(18))
    vis = (xt != x0) & ~masked
    assert vis.any() and (w[vis] == 1).all() and (w[masked] >= 1).all() and (w[(xt == x0) & ~masked] == 0).all()
    xt, masked, w, _ = D.mdm_batch(x0, mask_id=MASK, vocab_size=V - 1, opts=opts, progress=0.5, step=0, generator=gen(18))
    assert torch.equal(xt != x0, masked)  # before edit_start: masking only


# ----------------------------------------------------------------------------- objectives and ELBO

def test_training_loss_objectives_and_errors():
    x0 = data(4, 16)
    opts = D.DiffusionOptions(masking='midtrain', edit_start=0.5)
    for attention, objective in (('bidirectional', 'mdm'), ('block', 'block'), ('block', 'sft'), ('causal', 'ar')):
        m = tiny(attention, shift=True)
        loss, info = D.training_loss(m, x0, objective=objective, opts=opts, progress=0.9, step=5, generator=gen(19),
                                     prompt_len=torch.tensor([2, 3, 4, 5]), pad_id=0)
        loss.backward()
        assert torch.isfinite(loss) and all(torch.is_tensor(v) and v.dim() == 0 for v in info.values())
    m = tiny('causal')  # ar = exact next-token CE
    loss, _ = D.training_loss(m, x0, objective='ar', opts=opts, progress=0, step=0)
    ref = nn.functional.cross_entropy(m(x0)[:, :-1].reshape(-1, V), x0[:, 1:].reshape(-1))
    torch.testing.assert_close(loss, ref)
    loss, _ = D.training_loss(m, x0, objective='ar', opts=opts, progress=0, step=0, prompt_len=torch.tensor([4] * 4))
    ref = nn.functional.cross_entropy(m(x0)[:, 3:-1].reshape(-1, V), x0[:, 4:].reshape(-1))  # answer tokens only
    torch.testing.assert_close(loss, ref)
    bad = (('bidirectional', 'ar'), ('causal', 'mdm'), ('bidirectional', 'block'), ('block', 'xx'))
    for attention, objective in bad:
        with pytest.raises(UserError):
            D.training_loss(tiny(attention), x0, objective=objective, opts=opts, progress=0, step=0)
    with pytest.raises(UserError):
        D.training_loss(tiny('block'), data(2, 18), objective='block', opts=opts, progress=0, step=0)


@pytest.mark.parametrize('attention', ['bidirectional', 'block', 'causal'])
def test_elbo_of_uniform_logits_is_log_v(attention):
    m, x0 = tiny(attention, shift=True, zero_head=True), data(3, 16)
    maskable = torch.arange(16)[None] >= torch.tensor([[0], [3], [9]])
    for mk in (None, maskable):
        nll = D.elbo(m, x0, n_samples=4, generator=gen(20), maskable=mk)
        torch.testing.assert_close(nll, torch.full((3,), math.log(V)), atol=1e-4, rtol=0)


def test_elbo_of_causal_model_is_exact_ce():
    m, x0 = tiny('causal', seed=3), data(3, 16)
    ref = nn.functional.cross_entropy(m(x0)[:, :-1].transpose(1, 2), x0[:, 1:], reduction='none').mean(1)
    torch.testing.assert_close(D.elbo(m, x0), ref.detach())
    assert D.bits_per_byte(math.log(2)) == pytest.approx(1.0)


def test_mdm_elbo_is_stratified_and_matches_the_loss_on_average():
    """Both the count-stratified ELBO and the 1/t training loss estimate the same bound."""
    m, x0 = tiny(seed=5), data(4, 16)
    with torch.no_grad():
        m.lm_head.weight.mul_(30)  # sharpen the logits so CE varies across contexts
    e1 = D.elbo(m, x0, n_samples=64, generator=gen(21)).mean()
    e2 = D.elbo(m, x0, n_samples=64, generator=gen(22)).mean()
    assert abs(e1 - e2) / e1 < 0.02
    g, losses = gen(23), []
    with torch.no_grad():
        for _ in range(400):
            xt, masked, t = D.forward_process(x0, MASK, generator=g, low_discrepancy=True)
            losses.append(D.diffusion_loss(m, xt, x0, masked / t[:, None], 1 / x0.numel()))
    assert abs(torch.stack(losses).mean() / e1 - 1) < 0.05


# ----------------------------------------------------------------------------- only the scored rows

@pytest.mark.parametrize('shift', [False, True])
def test_predict_rows_equal_rows_of_the_aligned_logits(shift):
    m, L = tiny('bidirectional', shift=shift), 16
    xt, mask = data(2, L), torch.rand(2, L, generator=gen(40)) < 0.5
    r = torch.tensor([[0, 1, 15], [7, 0, 3]])
    b = tiny('block', shift=shift)
    x0 = data(2, L, seed=3)
    with torch.no_grad():
        full = D.predict(m, xt)
        flat = mask.flatten().nonzero().squeeze(1)  # rows are flat indices b * L + i
        torch.testing.assert_close(D.predict(m, xt, rows=flat), full[mask], atol=1e-5, rtol=0)
        torch.testing.assert_close(D.predict(m, xt, rows=(torch.arange(2)[:, None] * L + r).flatten()).view(2, 3, -1),
                                   full[torch.arange(2)[:, None], r], atol=1e-5, rtol=0)
        torch.testing.assert_close(D.block_predict(b, xt, x0, rows=flat), D.block_predict(b, xt, x0)[mask],
                                   atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- training and the ELBO = their equations

def log_probs(m, xt, x0, shift):
    """log p(x0_i | x_t) (B, L) by hand, from the full raw logits. Aligned row i reads raw row i-1 under the
    shift (row 0 its own). A block model: noisy block b sees the clean blocks before it (BD3-LM), i.e. it is
    the last block of the single stream [x0 blocks < b ; x_t block b]."""
    def aligned(seq):
        raw = m(seq)
        return torch.cat([raw[:, :1], raw[:, :-1]], 1) if shift else raw
    if m.config.attention == 'block':
        bs = m.config.block_size
        logits = torch.cat([aligned(torch.cat([x0[:, :b], xt[:, b:b + bs]], 1))[:, b:] for b in range(0, x0.size(1), bs)], 1)
    else:
        logits = aligned(xt)
    return logits.float().log_softmax(-1).gather(-1, x0[..., None]).squeeze(-1)


def recording(monkeypatch, m):
    """Record every forward_process call (its input x and (xt, masked, t)) and every input the model sees."""
    seen, real = dict(fp=[], idx=[]), D.forward_process

    def forward_process(x, *a, **kw):
        out = real(x, *a, **kw)
        seen['fp'].append((x, *out))
        return out
    monkeypatch.setattr(D, 'forward_process', forward_process)
    hook = m.register_forward_pre_hook(lambda mod, args: seen['idx'].append(args[0]))
    return seen, hook


EQUATION_CASES = {  # objective, attention, shift_logits, options
    'mdm': ('mdm', 'bidirectional', False, dict(masking='custom', s1_prob=0.5, s3_prob=0.5)),
    'mdm_shift': ('mdm', 'bidirectional', True, dict(masking='custom', s1_prob=0.5, s3_prob=0.5)),
    'edit': ('mdm', 'bidirectional', True, dict(edit_start=0.0, edit_rate=0.3)),
    'block': ('block', 'block', False, {}),
    'block_shift': ('block', 'block', True, {}),
    'sft': ('sft', 'bidirectional', True, dict(masking='custom', s3_prob=0.5)),
    'sft_block': ('sft', 'block', True, {}),
    'ar': ('ar', 'causal', False, {}),
}


@pytest.mark.parametrize('case', list(EQUATION_CASES))
def test_training_loss_is_the_equation(case, monkeypatch):
    """training_loss (only the scored rows reach the head, the chunked fused CE: here 5 rows x V at a time)
    equals its objective's equation computed by hand from the model's full logits, loss and gradients,
    for the masks and t the forward process drew:
      mdm / block   Σ_{masked} -log p(x0_i | x_t) / t / (B·L)    (block: t per block, [x_t ; x_0] form)
      edit          + Σ_{changed, visible} -log p(x0_i | x_t), the same normaliser (Seed Diffusion)
      sft           per row Σ_{masked} -log p / t / (L - prompt_len), the mean over rows; the prompt never masked
      ar            the mean next-token -log p(x0_{i+1} | x0_{<=i}) over the answer tokens"""
    from lib import head
    monkeypatch.setattr(head, 'CE_CHUNK_FLOATS', 5 * V)
    objective, attention, shift, kw = EQUATION_CASES[case]
    m, x0, prompt_len = tiny(attention, shift=shift, seed=7), data(4, 16), torch.tensor([2, 5, 9, 0])
    (B, L), prompt = x0.shape, torch.arange(16)[None] < prompt_len[:, None]
    seen, hook = recording(monkeypatch, m)
    loss, _ = D.training_loss(m, x0, objective=objective, opts=D.DiffusionOptions(**kw), progress=0.5, step=0,
                              generator=gen(30), prompt_len=prompt_len if objective in ('sft', 'ar') else None)
    hook.remove()
    loss.backward()
    grads = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    if objective == 'ar':
        answer = ~prompt[:, 1:]
        logp = m(x0)[:, :-1].float().log_softmax(-1).gather(-1, x0[:, 1:, None]).squeeze(-1)
        ref = -(logp * answer).sum() / answer.sum()
    else:
        assert len(seen['fp']) == 1  # the objective's masks come from the forward process
        x, xt, masked, t = seen['fp'][0]
        if attention == 'block':  # the model reads [x_t ; x_0]; a block left without a mask got one forced
            xt = seen['idx'][0][:, :L]
            assert torch.equal(seen['idx'][0][:, L:], x0) and not (masked & (xt != MASK)).any()
            masked = xt == MASK
        assert torch.equal(seen['idx'][0][:, :L], xt) and torch.equal(xt, torch.where(masked, MASK, x))
        weight = masked / (t if t.dim() == 2 else t[:, None]) + ((x != x0) & ~masked)  # x != x0: the edits
        nll = -log_probs(m, xt, x0, shift) * weight
        if objective == 'sft':
            assert not masked[prompt].any() and masked[~prompt].any()
            ref = (nll.sum(1) / (L - prompt_len)).mean()
        else:
            ref = nll.sum() / (B * L)
        assert (case == 'edit') == bool(((x != x0) & ~masked).any())
    ref.backward()
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    for g1, p in zip(grads, m.parameters()):
        torch.testing.assert_close(g1, p.grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize('attention,shift', [('bidirectional', False), ('bidirectional', True), ('block', True)])
def test_elbo_is_the_equation(attention, shift, monkeypatch):
    """elbo = 1/n Σ_samples Σ_groups N/m Σ_{masked} -log p(x0_i | x_t), divided by L, for the masks it drew
    (m of the N tokens of a group masked: the sequence, or a block), computed by hand from the full logits."""
    m, x0 = tiny(attention, shift=shift, seed=8), data(3, 16)
    seen, hook = recording(monkeypatch, m)
    with torch.no_grad():
        nll = D.elbo(m, x0, n_samples=4, generator=gen(31))
        hook.remove()
        assert len(seen['idx']) == 4
        size, total = m.config.block_size if attention == 'block' else 16, torch.zeros(3)
        for idx in seen['idx']:
            xt = idx[:, :16]
            masked = (xt == MASK).view(3, -1, size)
            ce = -log_probs(m, xt, x0, shift).view(3, -1, size)
            assert (masked.sum(-1) >= 1).all()
            total += (size / masked.sum(-1) * (ce * masked).sum(-1)).sum(-1)
    torch.testing.assert_close(nll, total / 4 / 16, atol=1e-5, rtol=1e-5)
