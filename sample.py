"""
Sampling. generate() turns a prompt into tokens with the model's own kind of decoding:

  bidirectional / block   masked-diffusion denoising (LLaDA, Dream, CoDA, Fast-dLLM, BD3-LM)
  causal                  plain AR decoding with a KV cache (generate_ar)

Denoising, semi-autoregressive (LLaDA): the answer starts as <|mask|> tokens and is cut into
blocks, finished left to right. A block of n tokens gets s = ceil(n * steps / gen_length) steps;
each step runs the model, proposes a token x_i for every masked slot of the block (argmax, or a
Gumbel-max draw from softmax(l/T) after top-k / top-p) and commits some of them:
  origin        each masked token with probability 1 - s'/t, t -> s' along linspace(1, eps, s+1) (Dream)
  maskgit_plus  the k most confident by p(x_i)
  topk_margin   the k most confident by p_top1 - p_top2
  entropy       the k most confident by sum_v p_v log p_v (= -H)
                alg_temp > 0 samples the k slots from softmax(conf / alg_temp) instead of the top k
  threshold     (Fast-dLLM) every slot with p(x_i) >= tau, at least the top-k (k below, 1 by default): dynamic steps
  factor        (Fast-dLLM) sort c_1 >= c_2 >= ...; the largest n with c_i >= 1 - f/(i+1), at least k
The count k at step j of a block (schedule=):
  llada  n // s, plus one in the first n % s steps: LLaDA's even spread (the default without a shift)
  coda   int(m * (1 - t_{j+1}/t_j)), t = linspace(1, eps, s+1), m = slots still masked: Dream's
         and CoDA's diffusion_generate (the default with shift_logits); the last step takes the rest
Slots outside a row's current block are never chosen (confidence -inf).

Editing (edit_threshold, LLaDA 2.1's token-to-token editing): the same forward also reads the block's visible
answer tokens, and one whose prediction disagrees with p >= edit_threshold is replaced (choose_edits), within
budgets per step and per slot. A draft= starts the answer from given tokens instead of masks (a repair).

Caches. 'none' runs the whole sequence every step. For a 'block' model 'prefix' (= 'dual') is exact:
the K/V of finished blocks are committed once and each step recomputes only the current block's
window (the tokens are identical to 'none'). For a bidirectional model they are Fast-dLLM's
approximations, refreshed by one full forward at each block start: 'prefix' then recomputes the
block and all after it, 'dual' only the block (the masked suffix's K/V stay stale).

Index space: prompts are left-padded to a common length G, so the answer is x[:, G:G+gen_length]
in every row, then the (infilling) suffix; a row's positions are index - pad (Context.pad), so it
computes what its batch-of-one run computes. A block model's blocks lie on each row's own position
grid: one forward window covers every row's current block and only indices finished in every row
are committed. Logits are read through diffusion.predict, the loss's own logit-shift rule.
A slot's proposal and confidence (sample_tokens, propose, confidence) are in diffusion.py.

From the command line:

  python sample.py                                                     # the default out_dir, out-toy
  python sample.py --ckpt=out-toy --prompt='def fib(n):' --show         # watch the denoising live
  python sample.py --prompt='def fib(n):' --frames=denoise.png          # ... or save it as a picture
  python sample.py --ckpt=out-toy --prompt='def add(a, b):' --suffix='\n\nprint(add(1, 2))\n' --gen_length=16
  python sample.py --ckpt=out-toy-varlen --prompt='def add(a, b):\n' --suffix='\n\nprint(add(1, 2))\n' --variable_length
  python sample.py --hf=path/to/CoDA-v0-Instruct --chat --prompt='Write quicksort in Python.' \\
      --gen_length=256 --threshold=0.9 --cache=dual --dtype=bfloat16

Every option of generate() is a flag: python sample.py --help lists them (lib/sample_cli.py).
"""
import sys
import time
import warnings
from types import SimpleNamespace

import torch

from diffusion import confidence, gumbel, predict, propose, sample_tokens, top_ranks, uniform
from model import Context
from lib.cli import UserError, parse_options, run_cli
from lib.display import canvas_segments, frame_segments, live_display, read_text, recorder, save_frames
from lib.rows import as_rows, check_tokens, cut_after_eos, left_pad
from lib.runtime import load_model
from lib.sample_cli import DEFAULTS, HELP, KINDS, check_args, check_request, print_samples
from lib.varlen import generate_varlen

ALGS = ('origin', 'maskgit_plus', 'topk_margin', 'entropy')
CACHES = ('none', 'prefix', 'dual')
SCHEDULES = ('llada', 'coda')

# -----------------------------------------------------------------------------
# one denoising step commits the k most confident proposals: LLaDA's or CoDA's count k, or
# Fast-dLLM's threshold / factor rules


def llada_count(n, s, j):
    """LLaDA's schedule: n tokens over s steps as evenly as possible, the remainder in the first
    steps: n // s + (j < n % s) tokens at step j (n, s tensors (B,), s >= 1)."""
    s = s.clamp(min=1)
    return n // s + (j < n % s).long()


def coda_count(m, s, j, eps=1e-3):
    """Dream's / CoDA's schedule: at step j of s, int(m * (1 - t[j+1] / t[j])) of the m still-masked
    tokens, t = linspace(1, eps, s+1) in float32 exactly as their diffusion_generate computes it (so
    the truncation matches token for token); the step may commit none; the last step takes all m."""
    out = []
    for mi, si in zip(m.tolist(), s.tolist()):
        t = torch.linspace(1, eps, max(si, 1) + 1, dtype=torch.float32)
        frac = 1 - t[j + 1] / t[j] if j < si - 1 else None
        out.append(mi if frac is None else int(torch.tensor(mi, dtype=torch.float32) * frac))
    return torch.tensor(out, device=m.device)


def step_counts(schedule, n, s):
    """The number of tokens each step of one block commits when nothing else interferes, e.g.
    step_counts('coda', 32, 16): for tests and for reading (generate applies the rule step by step)."""
    size, budget, out = torch.tensor([n]), torch.tensor([s]), []
    for j in range(s):
        k = llada_count(size, budget, j) if schedule == 'llada' else coda_count(size - sum(out), budget, j)
        out.append(int(k.clamp(max=n - sum(out))) if j < s - 1 else n - sum(out))
    return out


def choose(alg, masked, p_tok, conf, *, step, n, s, alg_temp, threshold, factor, generator, schedule='llada',
           finish_threshold=None):
    """Which block slots to commit this step. masked (B, n_max) = slots still masked; p_tok = p(token)
    and conf = the alg's confidence of each slot's proposal, (B, n_max) (see propose); n, s (B,) =
    the block's size and step budget per row. Returns a bool (B, n_max), never empty for a row that
    has masked slots (except a step of the 'coda' schedule whose count truncates to 0)."""
    ninf = torch.tensor(float('-inf'), device=masked.device)
    remaining = masked.sum(1)
    last = step >= s - 1  # the block's last step reveals everything still masked
    dynamic = threshold is not None or factor is not None
    if alg == 'origin' and not dynamic:
        # Dream's reverse process: timesteps linspace(1, eps, s+1); from t to s' < t every masked
        # token is revealed independently with probability 1 - s'/t (all at the last step)
        eps = 1e-3
        t = 1 - step * (1 - eps) / s.clamp(min=1)
        t_next = 1 - (step + 1) * (1 - eps) / s.clamp(min=1)
        p_reveal = torch.where(last, 1.0, 1 - t_next / t)
        return masked & (uniform(masked.shape, generator, masked.device, torch.float64) < p_reveal[:, None])
    count = coda_count(remaining, s, step) if schedule == 'coda' else llada_count(n, s, step)
    k = torch.where(last, remaining, torch.minimum(count, remaining))
    if dynamic:
        # Fast-dLLM: the score is the proposed token's probability; steps are dynamic. The floor is the
        # schedule's count k, at least 1 (k <= 1 with the default steps = gen_length; fewer steps bound the NFE)
        p, floor = torch.where(masked, p_tok, ninf), k.clamp(min=1)
        if threshold is not None:  # every slot with p >= tau, and always the top-k
            return masked & ((p >= threshold) | top_ranks(p, floor))
        # factor: sort c1 >= c2 >= ...; the largest n with c_i >= 1 - f/(i+1) for all i <= n (>= 1).
        # (Fast-dLLM's released get_transfer_index_dynamic is off by one here: when only the last
        # remaining slot fails its bound it commits every slot; this is the paper's formula.)
        c = p.sort(dim=-1, descending=True).values
        i = torch.arange(1, c.size(1) + 1, device=c.device)
        ok = (c >= 1 - factor / (i + 1)).long().cumprod(-1).sum(-1)
        return masked & top_ranks(p, torch.maximum(ok, floor))
    score = torch.where(masked, conf, ninf)
    if alg_temp > 0:  # Dream: sample k positions from softmax(conf / alg_temp) (Gumbel-top-k)
        score = score.double() / alg_temp + gumbel(score.shape, generator, score.device)
    sel = masked & top_ranks(score, k)
    if finish_threshold is not None:  # every slot still masked is that sure: the whole block in this step
        sure = torch.where(masked, p_tok, 1.0).amin(1) >= finish_threshold
        sel |= masked & sure[:, None]
    return sel


def choose_edits(editable, current, logits, *, threshold, budget):
    """Token-to-token editing (LLaDA 2.1's T2T), bounded: which visible slots to revise this step, and to what.
    editable (B, n_max) = the current block's visible answer slots that may still be revised, current = their
    tokens, logits (N, V) = the aligned logits of the editable slots in row-major order. Slot i becomes
        x̂_i = argmax_v p_θ(v | x)   when   x̂_i != x_i  and  p_θ(x̂_i | x) >= edit_threshold,
    at most `budget` slots per row, the most confident first (greedy at any temperature: a revision must be
    the model's clear preference, not a draw). -> (revise (B, n_max) bool, x̂ (B, n_max))."""
    p, proposal = logits.float().softmax(-1).max(-1)
    x_hat = current.clone().masked_scatter_(editable, proposal)
    conf = torch.full(current.shape, float('-inf'), device=current.device).masked_scatter_(editable, p)
    want = (x_hat != current) & (conf >= threshold)
    budget = torch.full_like(want[:, 0], budget, dtype=torch.long)
    return want & top_ranks(torch.where(want, conf, float('-inf')), budget), x_hat


# -----------------------------------------------------------------------------
# the method on one screen: a reference sampler (no cache, rows of equal length, no EOS stop).
# generate() below is the same algorithm made fast; the tests check it gives these tokens.


@torch.no_grad()
def generate_reference(model, prompt, gen_length=64, block_length=32, steps=None, alg='entropy',
                       temperature=0.0, suffix=None, generator=None, schedule=None):
    """prompt (B, P) LongTensor -> (B, P + gen_length [+ suffix]). LLaDA's semi-autoregressive
    low-confidence remasking with Dream's confidence rules (alg: maskgit_plus | topk_margin | entropy)
    and LLaDA's or CoDA's count of tokens per step (schedule, default as generate())."""
    mask_id = model.config.mask_token_id
    schedule = schedule or ('coda' if model.config.shift_logits else 'llada')
    B, P = prompt.shape
    suffix = prompt.new_zeros(B, 0) if suffix is None else suffix
    # 1. the answer starts as all masks between the prompt and the (infilling) suffix
    x = torch.cat([prompt, torch.full((B, gen_length), mask_id), suffix], dim=1)
    steps = steps or gen_length
    for lo in range(P, P + gen_length, block_length):  # 2. blocks, left to right
        hi = min(lo + block_length, P + gen_length)
        n = hi - lo
        s = -(-n * steps // gen_length)  # this block's share of the steps, ceil(n * steps / gen_length)
        for j in range(s):
            masked = x[:, lo:hi] == mask_id
            # 3. one forward predicts every masked slot at once (row i predicts token i: the logit shift)
            logits = predict(model, x)[:, lo:hi][masked]  # (slots, V)
            logits[:, mask_id] = float('-inf')  # never propose the mask itself
            tokens, probs = sample_tokens(logits, temperature, generator=generator)
            # 4. score each proposal (Dream): p(x_i), top1 - top2, or -entropy; visible slots never compete
            score = torch.full(masked.shape, float('-inf'))
            score[masked] = confidence(alg, probs, tokens)
            proposal = x[:, lo:hi].clone()
            proposal[masked] = tokens
            # 5. commit the k best: LLaDA's even split of n over s steps, or CoDA's int(m (1 - t_j+1 / t_j))
            #    of the m still masked; everything left at the block's last step
            left, size, budget = masked.sum(1), torch.full((B,), n), torch.full((B,), s)
            k = llada_count(size, budget, j) if schedule == 'llada' else coda_count(left, budget, j)
            k = left if j == s - 1 else torch.minimum(k, left)
            commit = top_ranks(score, k) & masked
            x[:, lo:hi] = torch.where(commit, proposal, x[:, lo:hi])  # the rest stay masked (remasking)
    return x


# -----------------------------------------------------------------------------
# generate: the reference made fast. The vocabulary-sized work runs once per masked slot
# (propose), the choice on (B, slots) matrices (choose); rows of any length share one batch


def block_grid(pads, G, gen_length, block_length, on_grid, device):
    """Every row's blocks in index space, (R, B, 2): block k of row b is [lo, hi). A row's blocks are cut
    in its own positions (index - pad, its answer starting at its prompt's length): block models
    (on_grid) follow the model's position grid coarsened to block_length, so the first block is the
    rest of the prompt's last partial block and the last one may be short; otherwise LLaDA's blocks
    from the answer's start. Rows with fewer blocks get empty blocks at the answer's end: they sit
    out the last rounds."""
    per_row = []
    for p in pads:
        blocks, lo, end = [], G - p, G - p + gen_length
        while lo < end:
            hi = min(((lo // block_length + 1) * block_length) if on_grid else lo + block_length, end)
            blocks.append((lo + p, hi + p))
            lo = hi
        per_row.append(blocks)
    return torch.tensor([[b[k] if k < len(b) else (G + gen_length,) * 2 for b in per_row]
                         for k in range(max(map(len, per_row)))], device=device)


def model_block_span(lo, hi, pad, block_size):
    """Per row, the start of the model block holding index lo and the end of the one holding hi - 1,
    on the row's own position grid (index - pad)."""
    down = pad + torch.div(lo - pad, block_size, rounding_mode='floor') * block_size
    up = pad - torch.div(pad - hi, block_size, rounding_mode='floor') * block_size
    return down, up


def forward_window(cache, step, L, lo, hi, shift, exact=None):
    """(w0, w1, kv_len) of one step's forward: queries x[:, w0:w1], keys [0, kv_len) (None: no cache).
    The rows' current blocks span [lo, hi); with a shift the window starts at lo - 1, whose logits
    predict the block's first token. exact = (start, end), a block model's cache: every K/V left of
    start is committed and nothing right of end is visible. Fast-dLLM (prefix / dual): the first step
    refreshes every K/V, later ones recompute the block and all after it (prefix) or the block only (dual)."""
    if cache == 'none':
        return 0, L, None
    if exact is not None:
        start, end = exact
        return max(0, min(start, lo - shift)), end, end
    if step == 0:
        return 0, L, L
    return max(0, lo - shift), (L if cache == 'prefix' else hi), L


def check_options(model, gen_length, block_length, steps, alg, temperature, top_p, top_k, alg_temp, threshold,
                  factor, cache, schedule='llada', edit_threshold=None, edit_budget=1, max_edits_per_slot=1,
                  finish_threshold=None, fill_after_eos=False, eos_id=None):
    """Check generate()'s options (a UserError names the first bad one); -> (block_length, steps) as used."""
    cfg = model.config
    checks = [
        (schedule not in SCHEDULES, f"schedule={schedule!r} is unknown; use one of {', '.join(SCHEDULES)}"),
        (alg not in ALGS, f"alg={alg!r} is unknown; use one of {', '.join(ALGS)}"),
        (cache not in CACHES, f"cache={cache!r} is unknown; use one of {', '.join(CACHES)}"),
        (cfg.mask_token_id is None or not 0 <= cfg.mask_token_id < cfg.vocab_size,
         "the model has no valid mask_token_id; set it in the model config (diffusion models need one)"),
        (gen_length < 1, f"gen_length={gen_length} must be >= 1"),
        (temperature < 0 or alg_temp < 0, "temperature and alg_temp must be >= 0"),
        (top_p is not None and not 0 < top_p <= 1, f"top_p={top_p} must be in (0, 1]"),
        (top_k is not None and top_k < 1, f"top_k={top_k} must be >= 1"),
        (threshold is not None and factor is not None, "threshold and factor are two alternative rules; give one of them"),
        (threshold is not None and not 0 < threshold <= 1, f"threshold={threshold} must be in (0, 1]"),
        (factor is not None and factor <= 0, f"factor={factor} must be > 0"),
        (edit_threshold is not None and not 0 < edit_threshold <= 1, f"edit_threshold={edit_threshold} must be in (0, 1]"),
        (edit_budget < 0, f"edit_budget={edit_budget} must be >= 0 (revisions per row and step; 0 = editing off)"),
        (max_edits_per_slot < 1, f"max_edits_per_slot={max_edits_per_slot} must be >= 1"),
        (finish_threshold is not None and not 0 < finish_threshold <= 1, f"finish_threshold={finish_threshold} must be in (0, 1]"),
        (fill_after_eos and eos_id is None, "fill_after_eos needs eos_id (the token after which the answer is padding)"),
    ]
    for bad, message in checks:
        if bad:
            raise UserError(message)
    if cfg.attention == 'block':
        bs = cfg.block_size
        block_length = bs if block_length is None else block_length or -(-gen_length // bs) * bs  # 0: one block
        if block_length % bs:  # sampler blocks must be whole model blocks for the cache to be exact
            fixed = max(bs, round(block_length / bs) * bs)
            warnings.warn(f"block_length={block_length} is not a multiple of the model's block_size {bs}; using {fixed}")
            block_length = fixed
    else:
        block_length = min(32 if block_length is None else block_length or gen_length, gen_length)  # 0: one block
        if block_length < 1:
            raise UserError(f"block_length={block_length} must be >= 1")
        if gen_length % block_length:
            warnings.warn(f"gen_length={gen_length} is not a multiple of block_length={block_length}; the last block is shorter")
    steps = gen_length if steps is None else steps
    if steps < 1:
        raise UserError(f"steps={steps} must be >= 1")
    if steps > gen_length:
        warnings.warn(f"steps={steps} > gen_length={gen_length}; using {gen_length} (one token per step)")
        steps = gen_length
    if threshold is None and factor is None and (steps * block_length) % gen_length:
        warnings.warn(f"steps={steps} does not split evenly over the blocks of {block_length}; each block of n "
                      f"tokens gets ceil(n * steps / gen_length) steps")
    return block_length, steps


def draft_canvas(draft, B, gen_length, mask_id, vocab_size):
    """The answer's first state (B, gen_length): each row's draft (one token list per row, or one for all), then masks."""
    canvas = torch.full((B, gen_length), mask_id, dtype=torch.long)
    rows = as_rows(draft) if draft is not None else []
    if len(rows) == 1 and B > 1:
        rows = rows * B
    if draft is not None and len(rows) != B:
        raise UserError(f"draft must be one token list, or one per prompt ({B}); got {len(rows)}")
    check_tokens(rows, vocab_size, 'draft')
    for i, r in enumerate(rows):
        if len(r) > gen_length:
            raise UserError(f"the draft ({len(r)} tokens) is longer than the canvas (gen_length={gen_length}); "
                            f"raise gen_length or shorten the draft")
        canvas[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return canvas


@torch.no_grad()
def generate(model, prompt, *, gen_length=128, block_length=None, steps=None, alg='entropy', temperature=0.0,
             top_p=None, top_k=None, alg_temp=0.0, threshold=None, factor=None, cache=None, suffix=None,
             eos_id=None, pad_id=None, generator=None, callback=None, schedule=None, draft=None, edit_threshold=None,
             edit_budget=1, max_edits_per_slot=1, finish_threshold=None, fill_after_eos=False, variable_length=False,
             **varlen):
    """Sample gen_length tokens after each prompt (and before suffix: infilling).

    prompt: LongTensor (B,P) / (P,) or a list of token lists (left-padded here). block_length
    defaults to 32 (bidirectional) or the model's block_size (block models; must be a multiple of it);
    0 = one block over the whole answer (CoDA's diffusion_generate).
    steps (default gen_length) are spread over the blocks: a block of n tokens gets
    ceil(n * steps / gen_length). schedule: tokens per step, 'llada' | 'coda' (default: 'coda' for
    models with shift_logits, else 'llada'). threshold / factor: Fast-dLLM's dynamic rules, at least the schedule's
    count a step (1 with the default steps). finish_threshold: the fixed-count rules commit a row's whole block
    at once when every slot still masked has p(x_i) >= it. fill_after_eos (with eos_id): a masked slot after a
    row's first EOS is given pad_id at once (the output pads it anyway) instead of being denoised.
    cache: 'none' | 'prefix' | 'dual' (exact for block models, Fast-dLLM's approximation otherwise); default
    (None) by the model's kind, as the command line: 'prefix' for causal (the KV cache) and block models, else 'none'.
    Returns (tokens (B, G + gen_length [+ S]), info) where G = the longest prompt; after the first
    eos_id in the answer everything is pad_id (or eos_id). info: nfe, seconds, tokens_per_s,
    steps_per_block, edits, ... callback(step_info) runs after every step; step_info['tokens'] is live.
    draft: a token list per row (or one for all) of at most gen_length tokens that the answer starts from instead
    of masks (a repair starts from the buggy code); the slots after it, and <|mask|> tokens in it, are masks.
    edit_threshold (in (0, 1]; None = off): token-to-token editing (LLaDA 2.1), see choose_edits: at each step a
    visible answer token of the current block whose prediction disagrees with p >= edit_threshold is replaced,
    at most edit_budget per row and step and max_edits_per_slot per slot, so revising cannot oscillate. Edits stay
    inside the current block (finished blocks are final: the exact block cache stays exact), and a block whose masks
    are all filled takes more steps, edits only, until one finds nothing to revise.
    variable_length=True: a hole of unknown length, gen_length its maximum (DreamOn; lib/varlen.py, whose
    canvas=, expand_id=, delete_id=, budget=, truncate= pass through; blocks, steps and schedule unused).
    """
    cfg = model.config
    cache = cache or ('none' if cfg.attention == 'bidirectional' else 'prefix')
    if (draft is not None or edit_threshold is not None) and (variable_length or cfg.attention == 'causal'):
        raise UserError(f"a draft and editing revise a fixed canvas of a diffusion model; not available "
                        f"{'with variable_length' if variable_length else 'for a causal (AR) model'}")
    if variable_length:
        if factor is not None:
            raise UserError("the factor rule is not available with variable_length; use threshold or alg")
        return generate_varlen(model, prompt, suffix=suffix, gen_length=gen_length, alg=alg, temperature=temperature,
                               top_p=top_p, top_k=top_k, alg_temp=alg_temp, threshold=threshold, cache=cache,
                               pad_id=pad_id, generator=generator, callback=callback, **varlen)
    if varlen:
        raise TypeError(f"generate() got unexpected keyword arguments {sorted(varlen)}")
    if cfg.attention == 'causal':
        if suffix is not None and len(as_rows(suffix)[0]):
            raise UserError("infilling (a suffix) needs a diffusion model; this one is causal (AR)")
        return generate_ar(model, prompt, gen_length=gen_length, temperature=temperature, top_p=top_p, top_k=top_k,
                           cache=cache, eos_id=eos_id, pad_id=pad_id, generator=generator, callback=callback)
    schedule = schedule or ('coda' if cfg.shift_logits else 'llada')
    block_length, steps = check_options(model, gen_length, block_length, steps, alg, temperature, top_p, top_k,
                                        alg_temp, threshold, factor, cache, schedule, edit_threshold, edit_budget,
                                        max_edits_per_slot, finish_threshold, fill_after_eos, eos_id)
    editing = edit_threshold is not None and edit_budget > 0
    t0 = time.perf_counter()
    dev, mask_id = model.lm_head.weight.device, cfg.mask_token_id
    block_model, shift = cfg.attention == 'block', int(cfg.shift_logits)
    rows = as_rows(prompt)
    B = len(rows)
    suf = as_rows(suffix if suffix is not None else [[]] * B)
    if len(suf) == 1 and B > 1:
        suf = suf * B
    if len(suf) != B or len({len(r) for r in suf}) > 1:
        raise UserError("suffix must be one token list, or one per prompt, all of the same length")
    check_tokens(rows + suf, cfg.vocab_size, 'prompt/suffix')
    fill = pad_id if pad_id is not None else (eos_id if eos_id is not None else 0)
    head, pad = left_pad(rows, fill, dev)
    G, S = head.size(1), len(suf[0])
    L = G + gen_length + S
    if L > cfg.max_position_embeddings:
        raise UserError(f"prompt ({G}) + gen_length ({gen_length}) + suffix ({S}) = {L} tokens exceeds the "
                        f"model's context of {cfg.max_position_embeddings}; shorten the prompt or gen_length")
    x = torch.cat([head, draft_canvas(draft, B, gen_length, mask_id, cfg.vocab_size).to(dev),
                   torch.tensor(suf, dtype=torch.long, device=dev).view(B, S)], dim=1)
    edits = torch.zeros(B, L, dtype=torch.long, device=dev)  # revisions made at each index
    pad_t = pad if pad is not None else torch.zeros(B, dtype=torch.long, device=dev)
    bounds = block_grid(pad_t.tolist(), G, gen_length, block_length, block_model, dev)  # (R, B, 2)

    kv = model.new_cache(B, L) if cache != 'none' else None
    committed = 0  # block models: the cache holds exact K/V for indices < committed
    nfe, steps_per_block, info_steps = 0, [], 0
    for k in range(len(bounds)):
        lo, hi = bounds[k, :, 0], bounds[k, :, 1]
        n = hi - lo
        active = n > 0
        s = torch.where(active, torch.minimum(n, -(-n * steps // gen_length)), 0)  # ceil(n * steps / gen)
        n_max = int(n.max())
        slot = lo[:, None] + torch.arange(n_max, device=dev)  # index of each block slot
        valid = slot < hi[:, None]
        slot = slot.clamp(max=L - 1)
        min_lo = int(lo[active].min())
        if block_model:
            # finished blocks are final in every row below the frontier: their K/V get committed by
            # this round's first forward and are never recomputed (exact, BD3-LM)
            down, up = model_block_span(lo, hi, pad_t, cfg.block_size)
            frontier = int(down[active].min())
            block_end = min(L, int(up[active].max()))  # the model blocks holding every row's current block
        j = 0
        settled = ~active  # editing: a row whose block is filled and whose last step found nothing to revise
        while True:
            if fill_after_eos:  # a slot after the row's first EOS is padding in the output: never denoise it
                after_eos = ((x == eos_id) & (torch.arange(L, device=dev) >= G)).cumsum(1).gather(1, slot) > 0
                b, r = (valid & after_eos & (x.gather(1, slot) == mask_id)).nonzero(as_tuple=True)
                x[b, slot[b, r]] = fill
            masked = valid & (x.gather(1, slot) == mask_id)
            # the block's visible answer tokens that may still be revised (none without editing)
            editable = valid & ~masked & (edits.gather(1, slot) < max_edits_per_slot) & ~settled[:, None] \
                if editing else torch.zeros_like(masked)
            if not (masked | editable).any():
                break
            exact = ((committed if j == 0 else frontier), block_end) if block_model else None
            w0, w1, kv_len = forward_window(cache, j, L, min_lo, int(hi.max()), shift, exact)
            # logits only for the masked slots, then the editable ones, as flat indices into the window's B x T
            # rows; predict reads each from the index the logit shift says. Always write=True: cache entries past
            # the exact part are scratch, rewritten before being read
            (mb, mr), (eb, er) = masked.nonzero(as_tuple=True), editable.nonzero(as_tuple=True)
            rb, rr = torch.cat([mb, eb]), torch.cat([mr, er])
            ctx = Context(pad=pad, cache=kv, start=w0, kv_len=kv_len)
            logits = predict(model, x[:, w0:w1], ctx, rows=rb * (w1 - w0) + slot[rb, rr] - w0)
            nfe += 1
            if block_model and j == 0:
                committed = frontier
            logits[..., mask_id] = float('-inf')  # never propose <|mask|> itself
            tok, p_tok, conf = propose(logits[:len(mb)], alg if threshold is None and factor is None else None,
                                       temperature, top_p, top_k, generator)
            tokens, p_all, c_all = (torch.zeros(masked.shape, dtype=v.dtype, device=dev).index_put_((mb, mr), v)
                                    for v in (tok, p_tok, conf))
            sel = choose(alg, masked, p_all, c_all, step=j, n=n, s=s, alg_temp=alg_temp, threshold=threshold,
                         factor=factor, generator=generator, schedule=schedule, finish_threshold=finish_threshold)
            fix = torch.zeros_like(sel)
            if editing:  # LLaDA 2.1: fill masks (M2T) and revise visible tokens (T2T) from the same forward
                fix, x_hat = choose_edits(editable, x.gather(1, slot), logits[len(mb):], threshold=edit_threshold,
                                          budget=edit_budget)
                settled |= ~masked.any(1) & ~fix.any(1)  # filled, and nothing left to revise: done with this block
                sel, tokens = sel | fix, torch.where(fix, x_hat, tokens)
                edits.scatter_add_(1, slot, fix.long())
            b, r = sel.nonzero(as_tuple=True)
            x[b, slot[b, r]] = tokens[b, r]
            j += 1
            if callback is not None:
                callback(dict(tokens=x, block=k, step=j, nfe=nfe, committed=(sel & ~fix).sum(1), revised=fix.sum(1),
                              prompt_len=G, gen_length=gen_length, mask_id=mask_id, edited=edits > 0))
        steps_per_block.append(j)
        info_steps += j
        # EOS: stop once every row's finished blocks hold an EOS (text after it is never needed)
        if eos_id is not None:
            idx = torch.arange(L, device=dev)
            done = ((x == eos_id) & (idx >= G) & (idx < hi[:, None])).any(1)
            if bool(done.all()) and k < len(bounds) - 1:
                break
    x = cut_after_eos(x, G, G + gen_length, eos_id, fill)
    dt = time.perf_counter() - t0
    return x, dict(nfe=nfe, seconds=dt, tokens_per_s=B * gen_length / dt, steps=info_steps,
                   steps_per_block=steps_per_block, blocks=len(steps_per_block), block_length=block_length,
                   prompt_len=G, edits=edits.sum(1).tolist())

# -----------------------------------------------------------------------------
# AR decoding for causal models (the baseline)


@torch.no_grad()
def generate_ar(model, prompt, *, gen_length=128, temperature=0.0, top_p=None, top_k=None, cache='prefix',
                eos_id=None, pad_id=None, generator=None, callback=None):
    """Next-token decoding; with a cache (any cache != 'none') each step feeds one token. Stops when
    every row has produced eos_id. (generate() routes a causal model here with these options only.)"""
    cfg = model.config
    if gen_length < 1:
        raise UserError(f"gen_length={gen_length} must be >= 1")
    t0 = time.perf_counter()
    dev = model.lm_head.weight.device
    rows = as_rows(prompt)
    if min(len(r) for r in rows) == 0:
        raise UserError("AR decoding needs a prompt of at least one token in every row")
    check_tokens(rows, cfg.vocab_size, 'prompt')
    fill = pad_id if pad_id is not None else (eos_id if eos_id is not None else 0)
    head, pad = left_pad(rows, fill, dev)
    B, G = head.shape
    L = G + gen_length
    if L > cfg.max_position_embeddings:
        raise UserError(f"prompt ({G}) + gen_length ({gen_length}) = {L} tokens exceeds the model's context of "
                        f"{cfg.max_position_embeddings}; shorten the prompt or gen_length")
    x = torch.cat([head, torch.full((B, gen_length), fill, device=dev)], dim=1)
    kv = model.new_cache(B, L) if cache != 'none' else None
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    start, nfe = 0, 0
    for t in range(G, L):
        w0 = 0 if kv is None else start  # no cache: the whole prefix again; cache: prefill once, then one token
        last = torch.arange(B, device=dev) * (t - w0) + t - w0 - 1  # only the last position reaches the lm_head
        logits = model(x[:, w0:t], Context(pad=pad, cache=kv, start=w0), rows=last)
        start = t
        nfe += 1
        tok, _ = sample_tokens(logits, temperature, top_p, top_k, generator)
        x[:, t] = tok
        if callback is not None:
            callback(dict(tokens=x, block=0, step=t - G + 1, nfe=nfe, prompt_len=G, gen_length=gen_length,
                          mask_id=None))
        if eos_id is not None:
            done |= tok == eos_id
            if bool(done.all()):
                break
    x = cut_after_eos(x, G, L, eos_id, fill)
    dt = time.perf_counter() - t0
    return x, dict(nfe=nfe, seconds=dt, tokens_per_s=B * gen_length / dt, steps=nfe, steps_per_block=[nfe],
                   blocks=1, block_length=gen_length, prompt_len=G)


# -----------------------------------------------------------------------------
# the command line

def main(argv):
    given = parse_options(argv, DEFAULTS, __doc__ + HELP, KINDS)
    args = SimpleNamespace(**{**DEFAULTS, **given})
    path = check_args(args, ALGS, CACHES)
    torch.manual_seed(args.seed)
    model, tok = load_model(path, args.device, args.dtype)
    cfg, kind = model.config, model.config.attention
    prompt_text = read_text(args.prompt, args.prompt_file)
    prompt_text = '\n' if prompt_text is None else prompt_text
    suffix_text, draft_text = read_text(args.suffix, args.suffix_file), read_text(None, args.draft_file)
    ids = tok.encode_chat([{'role': 'user', 'content': prompt_text}]) if args.chat else tok.encode(prompt_text)
    suffix = tok.encode(suffix_text) if suffix_text else None
    draft = tok.encode(draft_text) if args.draft_file else None
    fixed_hole = check_request(args, given, model, tok, ids, suffix, draft)
    cache = args.cache or ('none' if kind == 'bidirectional' else 'prefix')
    generator = torch.Generator().manual_seed(args.seed)  # CPU generator: same samples on every device
    varlen = dict(variable_length=True, canvas=args.gen_length if fixed_hole else args.canvas, expand_id=tok.expand_id,
                  delete_id=tok.pad_id) if args.variable_length or fixed_hole else {}
    editing = dict(draft=draft, edit_threshold=args.edit_threshold, edit_budget=args.edit_budget,
                   max_edits_per_slot=args.max_edits_per_slot, finish_threshold=args.finish_threshold,
                   fill_after_eos=args.fill_after_eos) if not varlen else {}
    frames = []
    callback = live_display(tok) if args.show else recorder(frames) if args.frames else None
    if varlen and args.frames:  # the canvas of sample 0 after each step, and when each slot was committed
        frames.append((0, 0, varlen['canvas'], None))
        callback = lambda s: frames.append((s['nfe'], s['nfe'], s['canvas'], s['born']))
    out, info = generate(model, [ids] * args.num_samples, gen_length=args.gen_length, block_length=args.block_length,
                         steps=args.steps, alg=args.alg, temperature=args.temperature, top_p=args.top_p,
                         top_k=args.top_k, alg_temp=args.alg_temp, threshold=args.threshold, factor=args.factor,
                         cache=cache, suffix=suffix, eos_id=None if args.no_eos else tok.eos_id, pad_id=tok.pad_id,
                         generator=generator, callback=callback, schedule=args.schedule, **editing, **varlen)
    if args.show:
        sys.stdout.write('\x1b[2J\x1b[H')
    print_samples(tok, out, info, args, ids, (prompt_text, suffix_text), varlen, cache, kind, fixed_hole)
    if args.frames and varlen:
        save_frames(args.frames, canvas_segments(tok, frames, ids, suffix or [], cfg.mask_token_id, args.n_frames))
        print(f"saved {args.frames}: {args.n_frames} snapshots of sample 0's canvas")
    elif args.frames:
        start = out.shape[1] - args.gen_length - len(suffix or [])
        hole = tok.pad_id if kind == 'causal' else cfg.mask_token_id  # AR: not-yet-decoded slots hold pad
        first = (draft + [hole] * (args.gen_length - len(draft))) if draft else None
        save_frames(args.frames, frame_segments(tok, frames, ids, start, start + args.gen_length, hole, args.n_frames, first))
        print(f"saved {args.frames}: {args.n_frames} snapshots of sample 0's denoising")


if __name__ == '__main__':
    warnings.formatwarning = lambda msg, *a, **k: f"warning: {msg}\n"  # one line, no source echo
    run_cli(main)
