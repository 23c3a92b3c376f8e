"""
Training objectives and likelihood bounds of nanoCoDA, each next to the formula it implements.

  mdm    masked diffusion (LLaDA, MDLM, CoDA) + CoDA's progressive masking S1/S2/S3
         + Seed Diffusion's edit corruption late in training
  block  block diffusion (BD3-LM, Stable-DiffCoder): [x_t ; x_0] layout, clipped per-block noise
  sft    masked diffusion on the answer only (LLaDA / CoDA instruction tuning)
  ar     next-token cross-entropy (the causal baseline), optionally on fill-in-the-middle
         rearranged documents (Bavarian et al. 2022): the AR model that can infill
  varlen (an option of mdm and sft, varlen_rate > 0) DreamOn's variable-length infilling rows:
         the middle of a FIM cut is padded with delete targets and pairs of its masks are merged
         into one mask whose target is <|expand|>

Logit-shift convention (decided once, here; training, ELBO and the sampler all use it):
model(idx) returns RAW logits, row i computed at position i. predict() returns ALIGNED logits:
row i is the distribution of token i. For a model with config.shift_logits (CoDA / Dream, or any
AR-initialised Qwen3) aligned[:, i] = raw[:, i-1] and aligned[:, 0] = raw[:, 0]; otherwise
aligned = raw. Everything below works on aligned logits; only predict() and block_predict() shift
(and sampling.generate, which reads only its block's rows and shifts them itself).
Only the rows that are read are computed (model(..., rows=)): the losses score the masked rows and
pass targets, so the lm_head and the cross-entropy run on those rows, a chunk at a time.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model import UserError, block_diffusion_mask


# -----------------------------------------------------------------------------
# logit shift

def shift_logits(logits, first=None):
    """Dream/CoDA shift: out[:, i] = logits[:, i-1]; out[:, 0] = logits[:, 0], or `first` (B, V)
    when the chunk continues a sequence whose previous position's logits are known (KV cache)."""
    head = logits[:, :1] if first is None else first.reshape(logits.size(0), 1, -1).to(logits.dtype)
    return torch.cat([head, logits[:, :-1]], dim=1)


def source_rows(rows, T):
    """Aligned rows -> the raw rows they read under the shift (i -> i-1, 0 -> 0). rows: indices (B, R),
    or a bool mask (B, T) / flat indices into B*T (-> flat indices)."""
    if rows.dtype == torch.bool:
        rows = rows.flatten().nonzero().squeeze(1)
    return (rows - 1).clamp(min=0) if rows.dim() == 2 else rows - (rows % T > 0).long()


def predict(model, idx, first=None, rows=None, **fw_kwargs):
    """Aligned logits (row i predicts token i) for a single-stream forward. With a KV cache and
    start > 0, pass first = the raw logits (B, V) of the position before the chunk, if known.
    rows (aligned) / targets / weights: only those rows, or their CE (see model.forward)."""
    if rows is not None:
        return model(idx, rows=source_rows(rows, idx.size(1)) if model.config.shift_logits else rows, **fw_kwargs)
    logits = model(idx, **fw_kwargs)
    return shift_logits(logits, first) if model.config.shift_logits else logits


def block_predict(model, xt, x0, rows=None, **fw_kwargs):
    """Aligned logits of the noisy stream in the [x_t ; x_0] layout (BD3-LM, vectorised training), (B, L, V);
    rows: a bool mask (B, L) of the noisy rows wanted -> (N, V) (or their CE, with targets=...).
    With shift_logits, noisy position i reads noisy logits at i-1, except at a block start i = b*bs > 0:
    the token before it is the last CLEAN token of block b-1, read from the clean stream at L+i-1
    (it sees exactly clean blocks < b). This is what the single-stream shift gives at inference
    with an exact block cache, where block b-1 was committed clean."""
    B, L = x0.shape
    bs = model.config.block_size
    pos = torch.arange(L, device=x0.device).repeat(2)
    i = torch.arange(L, device=x0.device)
    src = torch.where((i % bs == 0) & (i > 0), L + i - 1, (i - 1).clamp(min=0)) if model.config.shift_logits else i
    if rows is not None:  # (flat indices of) noisy rows -> flat indices into the (B, 2L) layout
        rows = rows.flatten().nonzero().squeeze(1) if rows.dtype == torch.bool else rows
        fw_kwargs['rows'] = rows // L * 2 * L + src[rows % L]
    raw = model(torch.cat([xt, x0], 1), pos=pos, attn_mask=block_diffusion_mask(L, bs, x0.device), **fw_kwargs)
    return raw if rows is not None else raw[:, src]


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
        if self.max_delete < 0:
            raise UserError(f"max_delete={self.max_delete} is negative; use 0 or more delete targets")
        block_sizes(self)
        block_schedule(self)


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
# noise: all random numbers come from a CPU generator and are moved to the data's device,
# so a run draws the same noise on CPU, GPU and TPU and for any number of processes

def uniform(shape, generator, device):
    return torch.rand(shape, generator=generator).to(device)


def sample_t(n, *, eps=1e-3, low_discrepancy=False, u_max=1.0, generator=None, device='cpu'):
    """t = (1 - eps) u + eps, u ~ U(0, u_max) (LLaDA Sec. 2.2)."""
    if low_discrepancy:  # MDLM's low-discrepancy sampler (after VDM): u_i = (r + i/n) mod 1
        u = (torch.rand(1, generator=generator) + torch.arange(n) / n) % 1
    else:
        u = torch.rand(n, generator=generator)
    return ((1 - eps) * u * u_max + eps).to(device)


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


def forward_process(x0, mask_id, maskable=None, eps=1e-3, t=None, generator=None, low_discrepancy=False):
    """q(x_t | x_0): each maskable token becomes mask_id independently with probability t, one t per
    row (LLaDA Sec. 2.1, MDLM's absorbing process). Returns (xt, masked, t)."""
    B, L = x0.shape
    if t is None:
        t = sample_t(B, eps=eps, low_discrepancy=low_discrepancy, generator=generator, device=x0.device)
    t = torch.as_tensor(t, dtype=torch.float32).to(x0.device).expand(B)
    masked = uniform((B, L), generator, x0.device) < t[:, None]
    if maskable is not None:
        masked &= maskable
    return torch.where(masked, mask_id, x0), masked, t


def span_mask(t, k, L, generator, device):
    """CoDA S3: every window of k tokens starts a fully masked span with prob q = 1 - (1-t)^(1/k).
    A token stays visible iff none of the k windows covering it starts a span: (1-q)^k = 1-t, so each
    position is masked with probability exactly t. Starts are also drawn at the k-1 virtual positions
    before 0 (spans clipped at the edge), so the first tokens get rate t too; clipping a span to the
    maskable region (a contiguous run) keeps it contiguous and the rate inside the region at t."""
    q = 1 - (1 - t).clamp(min=0) ** (1.0 / k)
    starts = uniform((len(t), L + k - 1), generator, device) < q[:, None]
    return starts.unfold(1, k, 1).any(-1)  # position j is covered by the starts at j-k+1 .. j


def corruption_mask(t, maskable, p3=0.0, sizes=(2, 4, 8), generator=None):
    """Which tokens to mask: i.i.d. at rate t, or, for a row drawn with probability p3 (a real
    probability per row; CoDA's released code makes it an on/off switch), S3 spans of a length k drawn
    from `sizes`. Both mask each maskable token with marginal probability t."""
    (B, L), dev = maskable.shape, maskable.device
    masked = uniform((B, L), generator, dev) < t[:, None]
    if p3 > 0:
        s3 = uniform(B, generator, dev) < p3
        which = torch.randint(len(sizes), (B,), generator=generator).to(dev)
        for i, k in enumerate(sizes):
            masked = torch.where((s3 & (which == i))[:, None], span_mask(t, k, L, generator, dev), masked)
    return masked & maskable


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
# fill-in-the-middle for the AR baseline (Bavarian et al. 2022, arXiv 2207.14255)

def fim_cut(n, a, b):
    """The FIM cut of a document of n tokens from two uniform draws a, b in [0, 1): i <= j in 0..n."""
    i, j = sorted((int(a * (n + 1)), int(b * (n + 1))))
    return i, j


def fim_document(doc, i, j, fim_ids, spm=False):
    """Cut doc (a token list) at i <= j into prefix, middle, suffix and rearrange it:
      PSM  <PRE> prefix <SUF> suffix <MID> middle
      SPM  <PRE> <SUF> suffix <MID> prefix middle   (the paper's SPM: prefix and middle stay contiguous)
    A left-to-right model trained on these learns to write the middle after seeing both sides."""
    pre, mid, suf = fim_ids
    if spm:
        return [pre, suf, *doc[j:], mid, *doc[:i], *doc[i:j]]
    return [pre, *doc[:i], suf, *doc[j:], mid, *doc[i:j]]


def fim_transform(x, *, eos_id, fim_ids, rate, spm_rate, generator=None):
    """Context-level FIM (Bavarian, App. C) on a batch of training windows x (B, L): split each row at
    its EOS tokens into documents (window edges cut the first and last one), rearrange each document
    with probability `rate` (SPM with probability spm_rate, else PSM), cut at two uniform positions
    (token positions: bytes for the byte tokenizer, i.e. characters of ASCII code; BPE tokens
    otherwise, so a cut never splits a token), keep the EOS after it, and truncate the row back to L
    (each rearranged document adds 3 sentinels). Noise comes from `generator`: four draws per
    document, the same on any device or number of processes. Returns a new (B, L) tensor."""
    B, L = x.shape
    out = []
    for row in x.tolist():
        new, start = [], 0
        for end in [k for k, t in enumerate(row) if t == eos_id] + [L]:
            doc = row[start:end]
            if doc:
                apply, spm, a, b = torch.rand(4, generator=generator).tolist()
                if apply < rate:
                    i, j = fim_cut(len(doc), a, b)
                    doc = fim_document(doc, i, j, fim_ids, spm=spm < spm_rate)
            new += doc + row[end:end + 1]  # the document's EOS, if the window holds it
            start = end + 1
        out.append(new[:L])
    return torch.tensor(out, dtype=x.dtype).to(x.device)


# -----------------------------------------------------------------------------
# losses

def scored_rows(weight):
    """Flat indices of the rows with weight != 0: the only rows whose logits a loss needs. On XLA every
    row (weight 0 elsewhere): a data-dependent count would compile a new graph at every step."""
    if weight.device.type == 'xla':
        return torch.arange(weight.numel(), device=weight.device)
    return weight.flatten().nonzero().squeeze(1)


def scored_ce(model, xt, x0, weight, block=False, attn_mask=None):
    """sum_i weight_i CE_i over the aligned rows of xt (targets x0), computing only the rows with
    weight != 0 (fused with the cross-entropy, a chunk at a time; model.cross_entropy)."""
    rows = scored_rows(weight)
    fw = dict(rows=rows, targets=x0.flatten()[rows], weights=weight.flatten()[rows])
    if attn_mask is not None:  # attention annealing (single stream only)
        fw['attn_mask'] = attn_mask
    return block_predict(model, xt, x0, **fw) if block else predict(model, xt, **fw)


def token_ce(logits, x0):
    """Per-token cross-entropy (B, L) in float32 (aligned logits: row i predicts x0[:, i])."""
    B, L = x0.shape
    return F.cross_entropy(logits.reshape(B * L, -1).float(), x0.reshape(-1), reduction='none').view(B, L)


def diffusion_loss(logits, x0, masked, t):
    """MDM loss: sum over masked positions of CE / t, divided by B*L (LLaDA Eq. 3; MDLM's continuous-time NELBO).
    Its expectation bounds the NLL per token; with uniform logits it is log V."""
    B, L = x0.shape
    return (token_ce(logits, x0) * masked / t[:, None]).sum() / (B * L)


def mdm_batch(x0, *, mask_id, vocab_size, opts, progress, step, generator=None, pad_id=None):
    """Corrupt x0 for the mdm objective -> (xt, masked, weight). weight (B, L) is the per-token loss
    weight: 1/t on masked tokens, 1 on edited-but-visible tokens, 0 elsewhere (incl. S2 padding)."""
    (B, L), dev = x0.shape, x0.device
    p1, p2, p3 = masking_probs(opts, progress)
    if p2 > 0 and pad_id is None:
        raise UserError("progressive masking S2 pads a suffix but no pad_id was given; pass pad_id (tokenizer pad)")
    maskable, keep = coda_regions(B, L, p1, p2, generator, dev)
    x = x0 if pad_id is None else torch.where(keep, x0, pad_id)
    t, w = noise_level(B, opts, step, generator, dev)
    changed = torch.zeros_like(maskable)
    if progress >= opts.edit_start:  # edits first, then masking at rate t on top: the mask rate stays t
        x, changed, _ = edit_corrupt(x, maskable, opts.edit_rate, vocab_size, mask_id, generator)
    masked = corruption_mask(t, maskable, p3, block_sizes(opts), generator)
    weight = masked * w[:, None] + (changed & ~masked)  # Seed: every changed token is scored, plain CE
    return torch.where(masked, mask_id, x), masked, weight


def block_batch(x0, *, mask_id, block_size, opts, step, generator=None, maskable=None):
    """Block-diffusion noise (Stable-DiffCoder): one u per block, clipped u_blk = min(1, max(u, 1/bs))
    so a block rarely has nothing masked, and one token forced when it still does. Returns (xt, masked, weight)."""
    (B, L), dev = x0.shape, x0.device
    if L % block_size:
        raise UserError(f"sequence length {L} is not a multiple of block_size {block_size}; "
                        f"use a block_size that divides it (or a block_size-multiple length)")
    nb = L // block_size
    maskable = torch.ones_like(x0, dtype=torch.bool) if maskable is None else maskable
    t, w = noise_level(B * nb, opts, step, generator, dev, t_min=1 / block_size)  # weight 1/t of the clipped t
    masked = (uniform((B, L), generator, dev) < t.view(B, nb).repeat_interleave(block_size, 1)) & maskable
    blk, mb = masked.view(B, nb, block_size), maskable.view(B, nb, block_size)
    pick = uniform((B, nb, block_size), generator, dev).masked_fill(~mb, -1.0).argmax(-1, keepdim=True)
    force = torch.zeros_like(blk).scatter_(-1, pick, True) & mb & ~blk.any(-1, keepdim=True)
    masked = (blk | force).view(B, L)
    weight = masked * w.view(B, nb).repeat_interleave(block_size, 1)
    return torch.where(masked, mask_id, x0), masked, weight


def mask_id_of(model):
    if model.config.mask_token_id is None:
        raise UserError("the model config has no mask_token_id; set mask_token_id (151669 for Qwen3 vocabularies)")
    return model.config.mask_token_id


NEEDS = {'mdm': ('bidirectional',), 'sft': ('bidirectional', 'block'), 'block': ('block',), 'ar': ('causal',)}


def training_loss(model, x0, *, objective, opts, progress, step, generator=None, prompt_len=None, pad_id=None,
                  eos_id=None, expand_id=None):
    """One micro-batch loss -> (loss, info). info holds detached 0-dim tensors (call .item() at log time).
    varlen_rate > 0 (mdm, sft) needs eos_id, expand_id and pad_id (the delete target)."""
    cfg, (B, L), dev = model.config, x0.shape, x0.device
    if objective not in NEEDS:
        raise UserError(f"objective={objective!r} is unknown; use mdm, block, sft or ar")
    if cfg.attention not in NEEDS[objective]:
        raise UserError(f"objective={objective} needs attention={' or '.join(NEEDS[objective])}, the model has "
                        f"{cfg.attention!r}; set the model's attention or choose another objective")
    if objective == 'ar':  # next-token CE: the head at i predicts token i+1 (a raw model: no shift)
        scored = torch.ones(B, L - 1, device=dev)
        if prompt_len is not None:  # SFT data: answer only
            scored = (torch.arange(1, L, device=dev)[None] >= prompt_len.to(dev)[:, None]).float()
        w = F.pad(scored / scored.sum().clamp(min=1), (0, 1))  # the last position predicts nothing
        rows = scored_rows(w)
        return model(x0, rows=rows, targets=F.pad(x0[:, 1:], (0, 1)).flatten()[rows], weights=w.flatten()[rows]), {}
    mask_id = mask_id_of(model)
    if opts.varlen_rate > 0:
        if objective not in ('mdm', 'sft') or cfg.attention != 'bidirectional':
            raise UserError(f"varlen_rate > 0 is for objective mdm or sft on a bidirectional model, not {objective} "
                            f"with {cfg.attention} attention; set varlen_rate=0")
        if None in (eos_id, expand_id, pad_id) or expand_id >= cfg.vocab_size:
            raise UserError(f"varlen_rate > 0 needs the <|expand|> id ({expand_id}) inside the model's vocab "
                            f"({cfg.vocab_size}) and the eos / pad ids; pass the tokenizer's ids")
    maskable, norm = None, B * L
    if objective == 'sft':
        if prompt_len is None:
            raise UserError("objective=sft needs prompt_len per row; use a dataset prepared for SFT")
        # LLaDA SFT (Sec. 2.3): the prompt is never masked; answer + trailing pad/EOS are maskable
        maskable = torch.arange(L, device=dev)[None] >= prompt_len.to(dev)[:, None]
        norm = (L - prompt_len.to(dev)).clamp(min=1).float()  # per-row answer length
    if objective == 'block' or (objective == 'sft' and cfg.attention == 'block'):
        xt, masked, weight = block_batch(x0, mask_id=mask_id, block_size=cfg.block_size, opts=opts, step=step,
                                         generator=generator, maskable=maskable)
    elif objective == 'sft':
        # progressive conditioning in SFT = S3 spans on the answer (CoDA stage 3 keeps the masking recipe);
        # S1 is moot (the prompt already is an unmaskable prefix) and S2 would cut the answer
        t, w = noise_level(B, opts, step, generator, dev)
        masked = corruption_mask(t, maskable, masking_probs(opts, progress)[2], block_sizes(opts), generator)
        xt, weight = torch.where(masked, mask_id, x0), masked * w[:, None]
    else:
        xt, masked, weight = mdm_batch(x0, mask_id=mask_id, vocab_size=cfg.vocab_size, opts=opts, progress=progress,
                                       step=step, generator=generator, pad_id=pad_id)
    if objective == 'sft':  # LLaDA SFT: per row, sum CE/t over masked / answer length; mean over rows
        scale = 1 / (norm[:, None] * B)
    else:
        # S2 keeps the B*L normaliser (METHOD): every scored token then weighs 1/(B*L) whatever other rows
        # drew, the estimate stays unbiased (a count of real tokens in the denominator is a ratio
        # estimator) and the shape is static (no data-dependent division on XLA)
        scale = 1 / norm
    if opts.varlen_rate > 0:  # DreamOn rows replace some of the rows above (varlen.py)
        from varlen import varlen_rows
        x0, xt, weight, scale, _ = varlen_rows(x0, xt, weight, scale, opts=opts, step=step, mask_id=mask_id,
                                               expand_id=expand_id, delete_id=pad_id, eos_id=eos_id,
                                               prompt_len=prompt_len, generator=generator)
    # = sum_i weight_i CE_i * scale over the scored rows only (the others have weight 0); while an AR
    # model is being adapted its attention opens gradually (drawn last: the corruption is the same either way)
    attn = anneal_mask(L, step, opts, generator, dev) if cfg.attention == 'bidirectional' else None
    loss = scored_ce(model, xt, x0, weight * scale, block=cfg.attention == 'block', attn_mask=attn)
    info = {'mask_rate': masked.float().mean().detach(), 'scored': (weight > 0).float().mean().detach()}
    return loss, info


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
    g = cfg.block_size if block else L
    if L % g:
        raise UserError(f"sequence length {L} is not a multiple of block_size {g}; evaluate a multiple of it")
    groups = maskable.view(B, L // g, g)
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
        ce = torch.zeros(B * L, device=dev).index_add_(0, rows, ce).view(B, -1, g)
        total += (N / m * (ce * masked).sum(-1)).sum(-1)
    return total / n_samples / maskable.sum(1).clamp(min=1)


def bits_per_byte(nats):
    """For the bytes tokenizer (one token = one byte): bits/byte = nats / ln 2."""
    return nats / math.log(2)
