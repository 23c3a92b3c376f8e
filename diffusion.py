"""
Training objectives and likelihood bounds of nanoCoDA, each next to the formula it implements.
After the logit shift, the textbook: LLaDA's forward process and loss (forward_process, diffusion_loss),
which every diffusion objective trains through; then training_loss and one function per objective: mdm
(CoDA's S1/S2/S3, Seed Diffusion's edits), block (BD3-LM), sft (LLaDA), ar (next-token CE; FIM: lib/fim.py),
DreamOn's variable-length rows an option of mdm and sft (fim.varlen_rows); the ELBO; the machinery last.

Logit-shift convention (decided once, here; training, ELBO and the sampler all use it):
model(idx) returns RAW logits, row i computed at position i. predict() returns ALIGNED logits:
row i is the distribution of token i. For a model with config.shift_logits (CoDA / Dream, or any
AR-initialised Qwen3) aligned[:, i] = raw[:, i-1] and aligned[:, 0] = raw[:, 0]; otherwise
aligned = raw. Everything below works on aligned logits; only predict() and block_predict() shift,
both by shift_source(), the one rule (the samplers read their rows through predict() too).
Only the rows that are read are computed (model(..., rows=), flat indices b * T + i): the losses
score the masked rows and pass targets, so the lm_head and the cross-entropy run on those rows, a
chunk at a time.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lib.cli import UserError
from lib.fim import varlen_rows
from model import Context, block_diffusion_mask


# -----------------------------------------------------------------------------
# logit shift: one rule, for training, the ELBO and every sampler

def shift_source(i, first=0):
    """The raw position whose logits predict token i under the shift (Dream / CoDA): i - 1, except a
    sequence's first token (index `first`: 0, or its row's left padding), which reads its own logits.
    i: indices (any shape); first: an int or a tensor broadcasting with i."""
    return torch.maximum(i - 1, torch.as_tensor(first, device=i.device))


def shift_logits(logits, first=None):
    """Aligned logits of whole sequences: out[:, i] = logits[:, shift_source(i)], so out[:, 0] = logits[:, 0],
    or `first` (B, V) when the chunk continues a sequence whose previous position's logits are known."""
    out = logits[:, shift_source(torch.arange(logits.size(1), device=logits.device))]
    if first is not None:
        out[:, 0] = first.reshape(logits.size(0), -1).to(logits.dtype)
    return out


def predict(model, idx, ctx=None, *, rows=None, **head):
    """Aligned logits (row i predicts token i) of a single-stream forward over idx (B, T) placed by ctx
    (model.Context): every row (B, T, V), or rows = flat aligned indices b * T + i -> (N, V); with
    targets / weights, their cross-entropy instead (model.forward). With a shift, row i reads the raw
    row shift_source(i) of its own sequence (which starts at the row's pad), inside the window
    [ctx.start, ctx.start + T) (a window's first row, whose source lies before it, reads itself)."""
    if not model.config.shift_logits:
        return model(idx, ctx=ctx, rows=rows, **head)
    if rows is None:
        return shift_logits(model(idx, ctx=ctx, **head))
    T, start = idx.size(1), ctx.start if ctx is not None else 0
    b, i = rows // T, rows % T
    first = ctx.pad[b] if ctx is not None and ctx.pad is not None else 0
    src = (shift_source(i + start, first) - start).clamp(0, T - 1)
    return model(idx, ctx=ctx, rows=b * T + src, **head)


def block_predict(model, xt, x0, *, rows=None, **head):
    """Aligned logits of the noisy stream in the [x_t ; x_0] layout (BD3-LM, vectorised training), (B, L, V);
    rows: flat indices b * L + i of the noisy rows wanted -> (N, V) (or their CE, with targets=...).
    With shift_logits, noisy position i reads noisy logits at shift_source(i), except at a block start
    i = b*bs > 0: the token before it is the last CLEAN token of block b-1, read from the clean stream
    at L+i-1 (it sees exactly clean blocks < b). This is what the single-stream shift gives at
    inference with an exact block cache, where block b-1 was committed clean."""
    B, L = x0.shape
    bs = model.config.block_size
    i = torch.arange(L, device=x0.device)
    src = torch.where((i % bs == 0) & (i > 0), L + i - 1, shift_source(i)) if model.config.shift_logits else i
    ctx = Context(pos=i.repeat(2), attn_mask=block_diffusion_mask(L, bs, x0.device))
    if rows is not None:  # noisy rows -> flat indices into the (B, 2L) layout
        return model(torch.cat([xt, x0], 1), ctx=ctx, rows=rows // L * 2 * L + src[rows % L], **head)
    return model(torch.cat([xt, x0], 1), ctx=ctx, **head)[:, src]


# -----------------------------------------------------------------------------
# the textbook: the forward process q(x_t | x_0) and the masked-diffusion loss (LLaDA Sec. 2.1-2.2, Eq. 3)

def sample_t(n, *, eps=1e-3, low_discrepancy=False, u_max=1.0, generator=None, device='cpu'):
    """t = (1 - eps) u + eps, u ~ U(0, u_max) (LLaDA Sec. 2.2)."""
    if low_discrepancy:  # MDLM's low-discrepancy sampler (after VDM): u_i = (r + i/n) mod 1
        u = (torch.rand(1, generator=generator) + torch.arange(n) / n) % 1
    else:
        u = torch.rand(n, generator=generator)
    return ((1 - eps) * u * u_max + eps).to(device)


def forward_process(x0, mask_id, maskable=None, eps=1e-3, t=None, generator=None, low_discrepancy=False,
                    p3=0.0, sizes=(2, 4, 8)):
    """q(x_t | x_0): each maskable token becomes mask_id independently with probability t (LLaDA Sec. 2.1,
    MDLM's absorbing process) -> (xt, masked, t). t: one per row, t ~ U(eps, 1) unless given ((B,) or a
    scalar), or one per token (B, L) (block diffusion). CoDA S3: a row drawn with probability p3 (a real
    probability per row; CoDA's released code makes it an on/off switch) masks spans of a length drawn
    from `sizes` instead, at the same per-token rate t (span_mask). CoDA S1/S2 shape `maskable`."""
    (B, L), dev = x0.shape, x0.device
    if t is None:
        t = sample_t(B, eps=eps, low_discrepancy=low_discrepancy, generator=generator, device=dev)
    t = torch.as_tensor(t, dtype=torch.float32).to(dev)
    t = t.expand(B) if t.dim() < 2 else t  # one level per row (B,), or per token (B, L)
    masked = uniform((B, L), generator, dev) < (t[:, None] if t.dim() == 1 else t)
    if p3 > 0:  # S3 rows, and the span length of each
        s3 = uniform(B, generator, dev) < p3
        which = torch.randint(len(sizes), (B,), generator=generator).to(dev)
        for i, k in enumerate(sizes):
            masked = torch.where((s3 & (which == i))[:, None], span_mask(t, k, L, generator, dev), masked)
    if maskable is not None:
        masked &= maskable
    return torch.where(masked, mask_id, x0), masked, t


def diffusion_loss(model, xt, x0, weight, scale, block=False, attn_mask=None):
    """The masked-diffusion loss (LLaDA Eq. 3; MDLM's continuous-time NELBO), on aligned rows:
        loss = scale · Σ_bi weight_bi · −log p_θ(x0_bi | x_t),  weight_bi = [i masked] / t_b,  scale = 1/(B·L)
    Its expectation bounds the NLL per token; with uniform logits it is log V. Each objective below
    chooses only the weights and the scale. Only the rows with weight != 0 reach the head, fused with the
    cross-entropy a chunk at a time (head.cross_entropy). block: x_t is read in the [x_t ; x_0] layout
    (block_predict); attn_mask: the annealed attention (single stream only)."""
    weight = weight * scale
    rows = scored_rows(weight)
    head = dict(rows=rows, targets=x0.flatten()[rows], weights=weight.flatten()[rows])
    if block:
        return block_predict(model, xt, x0, **head)
    return predict(model, xt, Context(attn_mask=attn_mask), **head)


# -----------------------------------------------------------------------------
# training: a dispatcher, then one function per objective

ATTENTION_FOR_OBJECTIVE = {'mdm': ('bidirectional',), 'sft': ('bidirectional', 'block'), 'block': ('block',),
                           'ar': ('causal',)}


def training_loss(model, x0, *, objective, opts, progress, step, generator=None, prompt_len=None, pad_id=None,
                  eos_id=None, expand_id=None):
    """One micro-batch loss -> (loss, info). info holds detached 0-dim tensors (call .item() at log time).
    varlen_rate > 0 (mdm, sft) needs eos_id, expand_id and pad_id (the delete target)."""
    cfg, L, block = model.config, x0.size(1), model.config.attention == 'block'
    check_attention(cfg, objective)
    if objective == 'ar':
        return ar_loss(model, x0, prompt_len), {}
    mask_id = mask_id_of(model)
    if opts.varlen_rate > 0:
        check_varlen(cfg, objective, eos_id, expand_id, pad_id)
    common = dict(mask_id=mask_id, opts=opts, step=step, generator=generator)
    if objective == 'mdm':
        batch = mdm_batch(x0, vocab_size=cfg.vocab_size, progress=progress, pad_id=pad_id, **common)
    elif objective == 'block':
        batch = block_batch(x0, block_size=cfg.block_size, **common)
    else:  # sft; a block model trains it in the block layout
        batch = sft_batch(x0, prompt_len, progress=progress, block_size=cfg.block_size if block else None, **common)
    xt, masked, weight, scale = batch
    if opts.varlen_rate > 0:  # DreamOn rows replace some of the rows above (fim.varlen_rows)
        x0, xt, weight, scale, _ = varlen_rows(x0, xt, weight, scale, opts=opts, step=step, mask_id=mask_id,
                                               expand_id=expand_id, delete_id=pad_id, eos_id=eos_id,
                                               prompt_len=prompt_len, generator=generator,
                                               noise_level=noise_level)
    # while an AR model is being adapted its attention opens gradually (drawn last: the corruption is the same)
    attn = anneal_mask(L, step, opts, generator, x0.device) if cfg.attention == 'bidirectional' else None
    loss = diffusion_loss(model, xt, x0, weight, scale, block=block, attn_mask=attn)
    return loss, {'mask_rate': masked.float().mean().detach(), 'scored': (weight > 0).float().mean().detach()}


def mdm_batch(x0, *, mask_id, vocab_size, opts, progress, step, generator=None, pad_id=None):
    """mdm, masked diffusion with CoDA's progressive masking -> (xt, masked, weight, scale): S1/S2 shape the
    maskable region, one t per row, the forward process (S3 spans in a fraction p3 of the rows); weight 1/t,
    scale 1/(B·L) (LLaDA Eq. 3) even with S2's padding: a scored token weighs the same whatever the other
    rows drew (unbiased, and a static division on XLA). From progress edit_start: edit_batch."""
    (B, L), dev = x0.shape, x0.device
    p1, p2, p3 = masking_probs(opts, progress)
    if p2 > 0 and pad_id is None:
        raise UserError("progressive masking S2 pads a suffix but no pad_id was given; pass pad_id (tokenizer pad)")
    maskable, keep = coda_regions(B, L, p1, p2, generator, dev)  # S1 prefix, S2 padded suffix
    x = x0 if pad_id is None else torch.where(keep, x0, pad_id)
    t, w = noise_level(B, opts, step, generator, dev)  # w = 1/t
    if progress >= opts.edit_start:
        xt, masked, weight = edit_batch(x, maskable, t, w, mask_id=mask_id, vocab_size=vocab_size, opts=opts, p3=p3,
                                        generator=generator)
    else:
        xt, masked, _ = forward_process(x, mask_id, maskable, t=t, p3=p3, sizes=block_sizes(opts), generator=generator)
        weight = masked * w[:, None]
    return xt, masked, weight, 1 / (B * L)


def edit_batch(x, maskable, t, w, *, mask_id, vocab_size, opts, p3, generator=None):
    """Seed Diffusion's edit stage (mdm from progress edit_start) -> (xt, masked, weight): random substitutions,
    insertions and deletions (edit_corrupt), then the forward process at rate t on top (the mask rate stays t).
    Masked tokens keep w = 1/t; a changed token left visible is scored with plain CE (the model learns to revise);
    an unchanged visible one with weight edit_keep (the model learns to keep a correct token, which token-to-token
    editing at inference needs: with 0 its prediction there is never trained, and the sampler revises good tokens)."""
    x, changed, _ = edit_corrupt(x, maskable, opts.edit_rate, vocab_size, mask_id, generator)
    xt, masked, _ = forward_process(x, mask_id, maskable, t=t, p3=p3, sizes=block_sizes(opts), generator=generator)
    return xt, masked, masked * w[:, None] + (changed & ~masked) + opts.edit_keep * (maskable & ~changed & ~masked)


def block_batch(x0, *, mask_id, block_size, opts, step, generator=None, maskable=None):
    """block, block diffusion (BD3-LM, Stable-DiffCoder's noise) -> (xt, masked, weight, scale): one u per block,
    clipped t_blk = min(1, max(u, 1/block_size)) so a block rarely has nothing masked, the forward process at
    t_blk, one token forced in a block that still has none; weight 1/t_blk, scale 1/(B·L), [x_t ; x_0] layout."""
    (B, L), dev = x0.shape, x0.device
    if L % block_size:
        raise UserError(f"sequence length {L} is not a multiple of block_size {block_size}; "
                        f"use a block_size that divides it (or a block_size-multiple length)")
    nb = L // block_size
    maskable = torch.ones_like(x0, dtype=torch.bool) if maskable is None else maskable
    t, w = noise_level(B * nb, opts, step, generator, dev, t_min=1 / block_size)  # weight 1/t of the clipped t
    per_token = lambda v: v.view(B, nb).repeat_interleave(block_size, 1)
    _, masked, _ = forward_process(x0, mask_id, maskable, t=per_token(t), generator=generator)
    blk, mb = masked.view(B, nb, block_size), maskable.view(B, nb, block_size)
    pick = uniform((B, nb, block_size), generator, dev).masked_fill(~mb, -1.0).argmax(-1, keepdim=True)
    force = torch.zeros_like(blk).scatter_(-1, pick, True) & mb & ~blk.any(-1, keepdim=True)
    masked = (blk | force).view(B, L)
    return torch.where(masked, mask_id, x0), masked, masked * per_token(w), 1 / (B * L)


def sft_batch(x0, prompt_len, *, mask_id, opts, progress, step, generator=None, block_size=None):
    """sft, LLaDA's instruction tuning (Sec. 2.3) -> (xt, masked, weight, scale): the prompt is never masked,
    the answer and its trailing pad/EOS are (the model learns to emit padding); per row Σ_masked CE/t / the
    answer length, the mean over rows. S3 spans on the answer are CoDA's progressive conditioning (S1 is
    moot: the prompt is an unmaskable prefix; S2 would cut the answer). block_size: a block model's layout."""
    if prompt_len is None:
        raise UserError("objective=sft needs prompt_len per row; use a dataset prepared for SFT")
    (B, L), dev = x0.shape, x0.device
    maskable = torch.arange(L, device=dev)[None] >= prompt_len.to(dev)[:, None]
    norm = (L - prompt_len.to(dev)).clamp(min=1).float()  # per-row answer length
    if block_size:
        xt, masked, weight, _ = block_batch(x0, mask_id=mask_id, block_size=block_size, opts=opts, step=step,
                                            generator=generator, maskable=maskable)
    else:
        t, w = noise_level(B, opts, step, generator, dev)
        xt, masked, _ = forward_process(x0, mask_id, maskable, t=t, p3=masking_probs(opts, progress)[2],
                                        sizes=block_sizes(opts), generator=generator)
        weight = masked * w[:, None]
    return xt, masked, weight, 1 / (norm[:, None] * B)


def ar_loss(model, x0, prompt_len=None):
    """ar, the causal baseline: next-token CE, the mean over the predicted tokens (the answer's only
    when prompt_len is given). The head at i predicts token i+1 (a causal model reads raw logits)."""
    (B, L), dev = x0.shape, x0.device
    scored = torch.ones(B, L - 1, device=dev)
    if prompt_len is not None:  # SFT data: answer only
        scored = (torch.arange(1, L, device=dev)[None] >= prompt_len.to(dev)[:, None]).float()
    w = F.pad(scored / scored.sum().clamp(min=1), (0, 1))  # the last position predicts nothing
    rows = scored_rows(w)
    return model(x0, rows=rows, targets=F.pad(x0[:, 1:], (0, 1)).flatten()[rows], weights=w.flatten()[rows])


# -----------------------------------------------------------------------------
# likelihood

@torch.no_grad()
def elbo(model, x0, *, n_samples=16, generator=None, maskable=None):
    """Upper bound on the NLL, nats per scored token, (B,). causal: exact AR NLL over predicted tokens.
    bidirectional: LLaDA's low-variance form -log p(x0) <= E_m [ N/m sum_{masked} -log p(x0_i | x_m) ],
    m ~ U{1..N} masked tokens (LLaDA Sec. 2.4, likelihood evaluation), with m stratified over the n_samples.
    block: the same bound per block, conditioned on the clean blocks before it (BD3-LM's block NELBO)."""
    cfg, (B, L), dev = model.config, x0.shape, x0.device
    maskable = torch.ones_like(x0, dtype=torch.bool) if maskable is None else maskable.to(dev)
    if cfg.attention == 'causal':  # the head at i predicts token i+1, over the maskable targets
        m = F.pad(maskable[:, 1:], (0, 1))
        rows = scored_rows(m)
        ce = torch.zeros(B * L, device=dev).index_add_(0, rows, model(x0, rows=rows, targets=x0.roll(-1, 1).flatten()[rows]))
        return (ce.view(B, L) * m).sum(1) / m.sum(1).clamp(min=1)
    mask_id, block = mask_id_of(model), cfg.attention == 'block'
    size = cfg.block_size if block else L  # the bound's group: a block, or the whole sequence
    if L % size:
        raise UserError(f"sequence length {L} is not a multiple of block_size {size}; evaluate a multiple of it")
    groups = maskable.view(B, L // size, size)
    N = groups.sum(-1)
    r = uniform(N.shape, generator, dev)
    total = torch.zeros(B, device=dev)
    for k in range(n_samples):
        m = torch.ceil((k + r) / n_samples * N).clamp(min=1)  # the k-th stratum of U{1..N}
        keys = uniform(groups.shape, generator, dev).masked_fill(~groups, 2.0)
        masked = (keys.argsort(-1).argsort(-1) < m[..., None]) & groups
        xt = torch.where(masked.view(B, L), mask_id, x0)
        rows = scored_rows(masked)  # only the masked rows are scored
        fw = dict(rows=rows, targets=x0.flatten()[rows])
        ce = block_predict(model, xt, x0, **fw) if block else predict(model, xt, **fw)
        ce = torch.zeros(B * L, device=dev).index_add_(0, rows, ce).view(B, -1, size)
        total += (N / m * (ce * masked).sum(-1)).sum(-1)
    return total / n_samples / maskable.sum(1).clamp(min=1)


def bits_per_byte(nats):
    """For the bytes tokenizer (one token = one byte): bits/byte = nats / ln 2."""
    return nats / math.log(2)


# -----------------------------------------------------------------------------
# options and CoDA's progressive-masking schedule

@dataclass
class DiffusionOptions:  # every field is also a train.py config key with the same name
    eps: float = 1e-3                # t = (1 - eps) u + eps
    low_discrepancy: bool = True     # MDLM's u_i = (r + i/B) mod 1
    masking: str = 'none'            # CoDA progressive masking preset: none | pretrain | midtrain | custom
    s1_prob: float = 0.0             # custom: unmaskable prefix
    s2_prob: float = 0.0             # custom: truncated (padded) suffix
    s3_prob: float = 0.0             # custom: block (span) masking
    mask_schedule: str = 'constant'  # custom: constant | linear (0 -> value over training)
    s3_block_sizes: str = '2,4,8'    # S3 span lengths, one drawn per row
    block_warmup_iters: int = 0      # Stable-DiffCoder warm-up of u_max (and no 1/t) for this many steps
    edit_start: float = 1.0          # Seed Diffusion: progress from which edit corruption is added (paper: 0.8)
    edit_rate: float = 0.1           # max edit operations as a fraction of the editable length
    edit_keep: float = 0.0           # edit stage: weight of the unchanged visible tokens (1: learn to keep them; editing needs it)
    fim_rate: float = 0.0            # objective=ar: fraction of documents rearranged for FIM (Bavarian: 0.5-0.9)
    fim_spm_rate: float = 0.0        # of those, the fraction in SPM order (else PSM)
    varlen_rate: float = 0.0         # mdm / sft: fraction of rows made DreamOn variable-length infilling rows
    max_delete: int = 64             # varlen: at most this many delete targets after the middle
    merge_prob: float = 0.5          # varlen: probability that a pair of adjacent masks becomes one <|expand|>
    merge_static: float = 0.4        # varlen: fraction of rows using merge_prob as is (else scaled by 1 - masked fraction)
    pool_deletes: bool = True        # varlen: a row's delete targets share one token's weight (DreamOn's weight_eos)
    attn_anneal_iters: int = 0       # AR adaptation (DiffuLLaMA): attention opens from causal to bidirectional over these steps
    block_schedule: str = ''         # objective=block (LLaDA 2.0): 'size@progress,...', e.g. '1@0,4@0.1,128@0.3,4@0.8'

    def __post_init__(self):
        if self.masking not in ('none', 'pretrain', 'midtrain', 'custom'):
            raise UserError(f"masking={self.masking!r} is unknown; use none, pretrain, midtrain or custom")
        if self.mask_schedule not in ('constant', 'linear'):
            raise UserError(f"mask_schedule={self.mask_schedule!r} is unknown; use constant or linear")
        for k in ('s1_prob', 's2_prob', 's3_prob', 'edit_rate', 'fim_rate', 'fim_spm_rate', 'varlen_rate',
                  'merge_prob', 'merge_static'):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise UserError(f"{k}={getattr(self, k)} is not a probability; use a value in [0, 1]")
        if self.edit_keep < 0:
            raise UserError(f"edit_keep={self.edit_keep} is negative; use 0 (score only changed tokens) to 1")
        if self.max_delete < 0:
            raise UserError(f"max_delete={self.max_delete} is negative; use 0 or more delete targets")
        block_sizes(self), block_schedule(self)  # each raises on a bad value


def block_sizes(opts):
    try:
        sizes = [int(s) for s in str(opts.s3_block_sizes).split(',') if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise UserError(f"s3_block_sizes={opts.s3_block_sizes!r} is invalid; use positive integers like '2,4,8'")
    return sizes


def block_schedule(opts):
    """LLaDA 2.0's block-size schedule as [(from_progress, block_size)]: from that fraction of training on,
    block diffusion uses that block size. Warm-up grows the block from 1 (next-token prediction, with the
    logit shift) to the whole sequence (plain masked diffusion), the stable phase stays there, and the
    decay returns to a small block for cached inference: '1@0,4@0.1,32@0.2,128@0.3,4@0.8' at seq_len 128."""
    if not opts.block_schedule:
        return []
    try:
        steps = [(float(p), int(s)) for s, p in (item.split('@') for item in opts.block_schedule.split(','))]
    except ValueError:
        steps = []
    if not steps or steps[0][0] != 0 or any(s < 1 for _, s in steps) or \
            any(not a < b < 1 for (a, _), (b, _) in zip(steps, steps[1:])):
        raise UserError(f"block_schedule={opts.block_schedule!r} is invalid; use 'size@progress,...' with sizes >= 1 "
                        f"and progress rising from 0 below 1, e.g. '1@0,4@0.1,128@0.3,4@0.8'")
    return steps


def block_size_at(opts, progress):
    """The scheduled block size at training progress in [0, 1] (block_schedule must be set)."""
    return [s for p, s in block_schedule(opts) if p <= progress][-1]


# CoDA mid-training: S1:S2:S3 per epoch, 5 epochs -> here 5 equal stages of progress
MIDTRAIN_STAGES = [(0.01, 0.01, 0.05), (0.05, 0.05, 0.10), (0.10, 0.10, 0.15), (0.15, 0.15, 0.20), (0.20, 0.20, 0.25)]


def masking_probs(opts, progress):
    """(p1, p2, p3) at training progress in [0, 1]."""
    if opts.masking == 'none':
        return 0.0, 0.0, 0.0
    if opts.masking == 'pretrain':  # CoDA pre-training: S1, S2 and S3 at 1% each
        return 0.01, 0.01, 0.01
    if opts.masking == 'midtrain':
        return MIDTRAIN_STAGES[min(int(progress * len(MIDTRAIN_STAGES)), len(MIDTRAIN_STAGES) - 1)]
    ramp = min(max(progress, 0.0), 1.0) if opts.mask_schedule == 'linear' else 1.0
    return opts.s1_prob * ramp, opts.s2_prob * ramp, opts.s3_prob * ramp


# -----------------------------------------------------------------------------
# the reverse process, one slot at a time: propose a token for a masked slot from p_theta(x_0 | x_t)
# (Dream's sample_tokens), and how sure the model is of it (Dream's confidences). The samplers
# (sample.py, lib/varlen.py) decide which proposals to commit.


def gumbel(shape, generator, device):
    """Gumbel(0, 1) noise in float64, from the generator's uniforms (diffusion.uniform)."""
    return -torch.log(-torch.log(uniform(shape, generator, device, torch.float64).clamp_(min=1e-300)))


def sample_tokens(logits, temperature=0.0, top_p=None, top_k=None, generator=None):
    """logits (..., V) -> (tokens (...), probs (..., V)). temperature 0 = argmax. Filtering follows
    Dream (applied at any temperature, so it shapes the confidences too); sampling is LLaDA's
    Gumbel-max in float64: argmax(l/T + g), g ~ Gumbel(0,1), is a draw from softmax(l/T)."""
    logits = logits.float()
    if temperature > 0:
        logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float('-inf'))
    if top_p is not None and top_p < 1:  # nucleus: keep the smallest set of tokens with mass >= top_p
        srt, order = logits.sort(dim=-1, descending=True)
        p = srt.softmax(-1)
        drop = (p.cumsum(-1) - p) >= top_p  # the mass before this token already reaches top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float('-inf'))
    probs = logits.softmax(-1)
    if temperature > 0:
        tokens = (logits.double() + gumbel(logits.shape, generator, logits.device)).argmax(-1)
    else:
        tokens = probs.argmax(-1)
    return tokens, probs


def confidence(alg, probs, tokens):
    """Dream's position scores (higher = commit sooner)."""
    if alg == 'maskgit_plus':  # probability of the proposed token (= top-1 prob at temperature 0)
        return probs.gather(-1, tokens[..., None]).squeeze(-1)
    if alg == 'topk_margin':  # top1 - top2: how decisively the model prefers its top choice
        top2 = probs.topk(2, dim=-1).values
        return top2[..., 0] - top2[..., 1]
    return torch.xlogy(probs, probs).sum(-1)  # entropy: sum p log p = -H (low entropy first)


def top_ranks(score, k):
    """Bool mask of the k[b] highest scores of each row (ties: lower slot first)."""
    order = score.argsort(dim=-1, descending=True, stable=True)
    take = torch.arange(score.size(1), device=score.device)[None] < k[:, None]
    return torch.zeros_like(take).scatter(1, order, take)


def propose(logits, alg, temperature, top_p, top_k, generator):
    """Logits (N, V) of the masked slots -> (tokens, p(token), confidence), each (N,): the only
    vocabulary-sized work of a sampler step, done once per masked slot. The entropy is computed in
    place in the probabilities' buffer (no second N x V tensor)."""
    tokens, probs = sample_tokens(logits, temperature, top_p, top_k, generator)
    p_tok = probs.gather(-1, tokens[:, None]).squeeze(-1)
    if alg == 'entropy':
        conf = probs.xlogy_(probs).sum(-1)
    elif alg == 'topk_margin':
        conf = confidence(alg, probs, tokens)
    else:  # maskgit_plus ranks by p(token); origin, threshold and factor need no other score
        conf = p_tok
    return tokens, p_tok, conf


# -----------------------------------------------------------------------------
# noise: all random numbers come from a CPU generator and are moved to the data's device,
# so a run draws the same noise on CPU, GPU and TPU and for any number of processes

def uniform(shape, generator, device, dtype=torch.float32):
    """U[0, 1) drawn on the generator's device (the CPU by convention) and moved to device: the same
    draws on every device. The samplers draw float64 (gumbel), the losses float32."""
    gdev = generator.device if generator is not None else 'cpu'
    return torch.rand(shape, generator=generator, device=gdev, dtype=dtype).to(device)


def noise_level(n, opts, step, generator, device, t_min=0.0):
    """n noise levels t >= t_min and their loss weights 1/t. Stable-DiffCoder's warm-up: for step <
    block_warmup_iters, u ~ U(0, u_max) with u_max rising linearly from 1e-3 to 1, and weight 1 (no 1/t)."""
    warm = step < opts.block_warmup_iters
    u_max = 1e-3 + (1 - 1e-3) * step / opts.block_warmup_iters if warm else 1.0
    t = sample_t(n, eps=opts.eps, low_discrepancy=opts.low_discrepancy, u_max=u_max, generator=generator, device=device)
    t = t.clamp(min=t_min, max=1.0)
    return t, torch.ones_like(t) if warm else 1 / t


def anneal_mask(L, step, opts, generator, device):
    """DiffuLLaMA's attention-mask annealing for AR adaptation: the causal mask OR an (L, L) random mask
    whose entries are open with probability r = step / attn_anneal_iters, one for the whole batch. r = 0 is
    exactly causal; from r = 1 on the attention is fully bidirectional and no mask is needed (None)."""
    r = step / opts.attn_anneal_iters if opts.attn_anneal_iters else 1.0
    if r >= 1:
        return None
    i = torch.arange(L)
    return ((i[None, :] <= i[:, None]) | (torch.rand((L, L), generator=generator) < r)).to(device)


def span_mask(t, k, L, generator, device):
    """CoDA S3: every window of k tokens starts a fully masked span with prob q = 1 - (1-t)^(1/k).
    A token stays visible iff none of the k windows covering it starts a span: (1-q)^k = 1-t, so each
    position is masked with probability exactly t. Starts are also drawn at the k-1 virtual positions
    before 0 (spans clipped at the edge), so the first tokens get rate t too; clipping a span to the
    maskable region (a contiguous run) keeps it contiguous and the rate inside the region at t."""
    q = 1 - (1 - t).clamp(min=0) ** (1.0 / k)
    starts = uniform((len(t), L + k - 1), generator, device) < q[:, None]
    return starts.unfold(1, k, 1).any(-1)  # position j is covered by the starts at j-k+1 .. j


def coda_regions(B, L, p1, p2, generator, device):
    """CoDA S1/S2 -> (maskable, keep), both (B, L). S1: with prob p1 a row gets an unmaskable prefix
    [0, c), c ~ U{1..L-1} (prompt conditioning). S2: a row without S1, with prob p2, keeps only [0, c):
    the suffix becomes padding, neither maskable nor scored (variable length)."""
    s1 = torch.rand(B, generator=generator) < p1
    s2 = ~s1 & (torch.rand(B, generator=generator) < p2)
    cut = torch.randint(1, max(L, 2), (B,), generator=generator)[:, None]
    i = torch.arange(L)[None]
    keep = ~s2[:, None] | (i < cut)
    maskable = keep & (~s1[:, None] | (i >= cut))
    return maskable.to(device), keep.to(device)


def edit_corrupt(x, editable, rate, vocab_size, fill_id, generator=None):
    """Seed Diffusion's two-stage curriculum, edit stage: random substitutions, insertions and deletions,
    their number n = floor(rate * N * s), s ~ U(0, 1), N = editable tokens (length x a noise level:
    about a Levenshtein budget). Edits stay inside the editable region (one contiguous run per row:
    true for S1/S2/SFT), which keeps its length: tokens pushed past its end are cut, and the gap left
    by net deletions is filled with fill_id (the mask token). Returns (x_edit, changed = x_edit != x, n)."""
    (B, L), dev = x.shape, x.device
    N = editable.sum(1)
    n = (rate * N * uniform(B, generator, dev)).floor().long()
    keys = uniform((B, L), generator, dev).masked_fill(~editable, 2.0)
    chosen = keys.argsort(1).argsort(1) < n[:, None]  # n distinct editable positions per row
    op = torch.randint(3, (B, L), generator=generator).to(dev)
    sub, ins, dele = chosen & (op == 0), chosen & (op == 1), chosen & (op == 2)
    new = torch.randint(vocab_size, (2, B, L), generator=generator).to(dev)
    new = torch.where(new == fill_id, (new + 1) % vocab_size, new)  # random tokens are never the mask
    # source token j emits [an inserted token] + [itself unless deleted]; an exclusive cumsum places them
    emit = (ins.long() + (~dele).long()) * editable
    start = editable.long().argmax(1, keepdim=True)
    off = start + emit.cumsum(1) - emit
    end = start + N[:, None]
    buf = torch.cat([torch.where(editable, fill_id, x), x[:, :1]], 1)  # column L collects what falls off
    for write, at, val in ((ins, off, new[0]), (editable & ~dele, off + ins.long(), torch.where(sub, new[1], x))):
        buf.scatter_(1, torch.where(write & (at < end), at, L), val)
    out = buf[:, :L]
    return out, out != x, n


# -----------------------------------------------------------------------------
# scoring and checks

def scored_rows(weight):
    """Flat indices of the rows with weight != 0: the only rows whose logits a loss needs. On XLA every
    row (weight 0 elsewhere): a data-dependent count would compile a new graph at every step."""
    if weight.device.type == 'xla':
        return torch.arange(weight.numel(), device=weight.device)
    return weight.flatten().nonzero().squeeze(1)


def token_ce(logits, x0):
    """Per-token cross-entropy (B, L) in float32 (aligned logits: row i predicts x0[:, i])."""
    B, L = x0.shape
    return F.cross_entropy(logits.reshape(B * L, -1).float(), x0.reshape(-1), reduction='none').view(B, L)


def mask_id_of(model):
    if model.config.mask_token_id is None:
        raise UserError("the model config has no mask_token_id; set mask_token_id (151669 for Qwen3 vocabularies)")
    return model.config.mask_token_id


def check_attention(cfg, objective):
    if objective not in ATTENTION_FOR_OBJECTIVE:
        raise UserError(f"objective={objective!r} is unknown; use mdm, block, sft or ar")
    if cfg.attention not in ATTENTION_FOR_OBJECTIVE[objective]:
        raise UserError(f"objective={objective} needs attention={' or '.join(ATTENTION_FOR_OBJECTIVE[objective])}, "
                        f"the model has {cfg.attention!r}; set the model's attention or choose another objective")


def check_varlen(cfg, objective, eos_id, expand_id, pad_id):
    if objective not in ('mdm', 'sft') or cfg.attention != 'bidirectional':
        raise UserError(f"varlen_rate > 0 is for objective mdm or sft on a bidirectional model, not {objective} "
                        f"with {cfg.attention} attention; set varlen_rate=0")
    if None in (eos_id, expand_id, pad_id) or expand_id >= cfg.vocab_size:
        raise UserError(f"varlen_rate > 0 needs the <|expand|> id ({expand_id}) inside the model's vocab "
                        f"({cfg.vocab_size}) and the eos / pad ids; pass the tokenizer's ids")
