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
  threshold     (Fast-dLLM) every slot with p(x_i) >= tau, at least the top-1: steps become dynamic
  factor        (Fast-dLLM) sort c_1 >= c_2 >= ...; the largest n with c_i >= 1 - f/(i+1), at least 1
The count k at step j of a block (schedule=):
  llada  n // s, plus one in the first n % s steps: LLaDA's even spread (the default without a shift)
  coda   int(m * (1 - t_{j+1}/t_j)), t = linspace(1, eps, s+1), m = slots still masked: Dream's
         and CoDA's diffusion_generate (the default with shift_logits); the last step takes the rest
Slots outside a row's current block are never chosen (confidence -inf).

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
One step's pieces (sample_tokens, propose, confidence, the counts, choose) are in denoise.py.
"""
import time
import warnings

import torch

from denoise import (as_rows, check_tokens, choose, coda_count, confidence, cut_after_eos, left_pad, llada_count, propose,
                     sample_tokens, top_ranks)
from diffusion import predict
from cli import UserError
from model import Context
from varlen import generate_varlen

ALGS = ('origin', 'maskgit_plus', 'topk_margin', 'entropy')
CACHES = ('none', 'prefix', 'dual')
SCHEDULES = ('llada', 'coda')

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
                  factor, cache, schedule='llada'):
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


@torch.no_grad()
def generate(model, prompt, *, gen_length=128, block_length=None, steps=None, alg='entropy', temperature=0.0,
             top_p=None, top_k=None, alg_temp=0.0, threshold=None, factor=None, cache='none', suffix=None,
             eos_id=None, pad_id=None, generator=None, callback=None, schedule=None, variable_length=False, **varlen):
    """Sample gen_length tokens after each prompt (and before suffix: infilling).

    prompt: LongTensor (B,P) / (P,) or a list of token lists (left-padded here). block_length
    defaults to 32 (bidirectional) or the model's block_size (block models; must be a multiple of it);
    0 = one block over the whole answer (CoDA's diffusion_generate).
    steps (default gen_length) are spread over the blocks: a block of n tokens gets
    ceil(n * steps / gen_length). schedule: tokens per step, 'llada' | 'coda' (default: 'coda' for
    models with shift_logits, else 'llada'). threshold / factor: Fast-dLLM's dynamic rules (steps ignored).
    cache: 'none' | 'prefix' | 'dual' (exact for block models, Fast-dLLM's approximation otherwise).
    Returns (tokens (B, G + gen_length [+ S]), info) where G = the longest prompt; after the first
    eos_id in the answer everything is pad_id (or eos_id). info: nfe, seconds, tokens_per_s,
    steps_per_block, ... callback(step_info) runs after every step; step_info['tokens'] is live.
    variable_length=True: a hole of unknown length, gen_length its maximum (DreamOn; varlen.py, whose
    canvas=, expand_id=, delete_id=, budget=, truncate= pass through; blocks, steps and schedule unused).
    """
    cfg = model.config
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
                                        alg_temp, threshold, factor, cache, schedule)
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
    x = torch.cat([head, torch.full((B, gen_length), mask_id, device=dev),
                   torch.tensor(suf, dtype=torch.long, device=dev).view(B, S)], dim=1)
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
        while True:
            masked = valid & (x.gather(1, slot) == mask_id)
            if not masked.any():
                break
            exact = ((committed if j == 0 else frontier), block_end) if block_model else None
            w0, w1, kv_len = forward_window(cache, j, L, min_lo, int(hi.max()), shift, exact)
            # logits only for the masked slots, as flat indices into the window's B x T rows; predict
            # reads each from the index the logit shift says. Always write=True: cache entries past
            # the exact part are scratch, rewritten before being read
            mb, mr = masked.nonzero(as_tuple=True)
            ctx = Context(pad=pad, cache=kv, start=w0, kv_len=kv_len)
            logits = predict(model, x[:, w0:w1], ctx, rows=mb * (w1 - w0) + slot[mb, mr] - w0)
            nfe += 1
            if block_model and j == 0:
                committed = frontier
            logits[..., mask_id] = float('-inf')  # never propose <|mask|> itself
            tok, p_tok, conf = propose(logits, alg if threshold is None and factor is None else None,
                                       temperature, top_p, top_k, generator)
            tokens, p_all, c_all = (torch.zeros(masked.shape, dtype=v.dtype, device=dev).index_put_((mb, mr), v)
                                    for v in (tok, p_tok, conf))
            sel = choose(alg, masked, p_all, c_all, step=j, n=n, s=s, alg_temp=alg_temp, threshold=threshold,
                         factor=factor, generator=generator, schedule=schedule)
            b, r = sel.nonzero(as_tuple=True)
            x[b, slot[b, r]] = tokens[b, r]
            j += 1
            if callback is not None:
                callback(dict(tokens=x, block=k, step=j, nfe=nfe, committed=sel.sum(1), prompt_len=G,
                              gen_length=gen_length, mask_id=mask_id))
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
                   prompt_len=G)

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
        if kv is None:
            logits = model(x[:, :t], Context(pad=pad))[:, -1]
        else:  # prefill once, then one new token per step
            logits = model(x[:, start:t], Context(pad=pad, cache=kv, start=start))[:, -1]
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
