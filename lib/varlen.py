"""
Variable-length infilling: DreamOn (Wu et al., arXiv 2602.01326; code DreamLM/DreamOn) lets a
masked-diffusion model grow and shrink the hole it fills, so a user never gives the hole's length.
A masked slot gets two outcomes beyond an ordinary token:

  <|expand|>     the slot becomes two masks (tokenizer.expand_id)
  delete         the slot goes away; its target is <|endoftext|> = pad_id (docs/tokenizers.md)

Training (fim.varlen_rows, called by diffusion.training_loss when varlen_rate > 0): a row's document is
cut into prefix | middle | suffix (fim.fim_cut, the FIM cut); the middle gets D ~ U{0..max_delete}
delete targets (max_delete = 64, bounded by the row), is masked at rate t (the deletes always), and
adjacent masked pairs are merged into one mask whose target is <|expand|> with probability

  p = merge_prob (1 - masked / |middle|)   ('dynamic_inverse'),  or merge_prob in 40% of rows ('static').

A row's deletes share one token's weight (pool_deletes, DreamOn's weight_eos), so the slots before the
suffix are not the sampler's most confident commits (docs/objectives.md, step 5).

Sampling (generate_varlen, = sample.generate(..., variable_length=True)): the hole starts as a
canvas of k masks; each step commits the most confident slot(s) as generate does, then a committed
<|expand|> becomes two masks and a committed delete leaves the canvas (with truncate, DreamOn's
pad_eos_to_right, the masks after it go too). Expansion is off (logit -inf) once the canvas holds
gen_length slots or the expansion budget is spent.
"""
import time

import torch

from lib.cli import UserError
from diffusion import gumbel, predict, propose, top_ranks
from lib.rows import as_rows, check_tokens, left_pad
from model import Context

# -----------------------------------------------------------------------------
# a canvas that grows and shrinks


def check_varlen(model, canvas, gen_length, budget, expand_id, delete_id, cache, alg, prompt_len, suffix_len):
    cfg = model.config
    if cfg.attention != 'bidirectional':
        raise UserError(f"variable-length infilling needs a bidirectional diffusion model; this one is {cfg.attention}")
    if expand_id is None or not 0 <= expand_id < cfg.vocab_size:
        raise UserError(f"the model was never trained with expand tokens (<|expand|> = {expand_id} is outside its "
                        f"vocab of {cfg.vocab_size}); train it with varlen_rate > 0 (config/toy_varlen.py) or drop "
                        f"--variable_length")
    if delete_id is None:
        raise UserError("variable-length infilling needs the delete token; pass delete_id (the tokenizer's pad_id)")
    if cache != 'none':
        raise UserError(f"cache={cache!r}: the hole's canvas grows and shrinks as it is filled, which moves the "
                        f"suffix's positions, so no cached K/V stays exact; use cache=none")
    if alg not in ('maskgit_plus', 'topk_margin', 'entropy'):
        raise UserError(f"alg={alg!r} does not fill a canvas that grows and shrinks; use maskgit_plus, topk_margin "
                        f"or entropy")
    if not 1 <= canvas <= gen_length:
        raise UserError(f"the initial canvas of {canvas} masks is not within 1..{gen_length} (the maximum length); "
                        f"raise the maximum (--max_hole) or start from fewer masks (--canvas)")
    if budget is not None and budget < 0:
        raise UserError(f"expansion budget {budget} is negative; use 0 or more")
    n = prompt_len + gen_length + suffix_len
    if n > cfg.max_position_embeddings:
        raise UserError(f"prompt ({prompt_len}) + maximum hole ({gen_length}) + suffix ({suffix_len}) = {n} tokens "
                        f"exceeds the model's context of {cfg.max_position_embeddings}; lower the hole's maximum")


@torch.no_grad()
def generate_varlen(model, prompt, *, suffix=None, canvas=16, gen_length=64, budget=None, alg='entropy',
                    temperature=0.0, top_p=None, top_k=None, alg_temp=0.0, threshold=None, cache='none',
                    expand_id=None, delete_id=None, pad_id=None, truncate=True, generator=None, callback=None):
    """Fill the hole between each prompt and its suffix with a middle of 0..gen_length tokens.

    Every row starts with `canvas` masks. A step runs the model once and, in every row with masks
    left, commits the most confident slot (alg: Dream's scores; threshold: every slot with
    p >= threshold, at least that one), then rewrites the canvas: <|expand|> -> two masks, delete_id
    -> nothing (truncate: also every mask after it). <|expand|> is never proposed in a row whose canvas
    holds gen_length slots or that has spent its budget (default gen_length) of expansions; a step
    commits at most as many expansions as fit. Rows are left-padded into one batch each step (the
    model's Context.pad), so a row computes what its batch-of-one run computes, however the others grow.
    Returns (tokens (B, G + gen_length + S), info): a row is its left-padded prompt (G = the longest),
    its middle, pad_id up to gen_length, then its suffix. info: middles, lengths, nfe, steps,
    expansions, deletions, seconds, tokens_per_s, prompt_len. callback(step_info) after every step:
    step_info['canvas'] / ['born'] are row 0's slots and the step each was committed at (-1: masked).
    """
    cfg = model.config
    rows = as_rows(prompt)
    B = len(rows)
    suf = as_rows(suffix if suffix is not None else [[]] * B)
    suf = suf * B if len(suf) == 1 and B > 1 else suf
    if len(suf) != B:
        raise UserError("suffix must be one token list, or one per prompt")
    G, S = max(len(r) for r in rows), max(len(s) for s in suf)
    check_varlen(model, canvas, gen_length, budget, expand_id, delete_id, cache, alg, G, S)
    check_tokens(rows + suf, cfg.vocab_size, 'prompt/suffix')
    t0 = time.perf_counter()
    dev, mask_id = model.lm_head.weight.device, cfg.mask_token_id
    fill = pad_id if pad_id is not None else delete_id
    ninf = float('-inf')
    mid = [[mask_id] * canvas for _ in range(B)]
    born = [[-1] * canvas for _ in range(B)]
    left = [gen_length if budget is None else budget] * B  # expansions each row may still make
    nfe, n_expand, n_delete = 0, 0, 0
    while True:
        live = [b for b in range(B) if mask_id in mid[b]]
        if not live:
            break
        # 1. one forward over the rows as they are now; logits only for the masked slots, each read
        #    where the loss's logit shift says (diffusion.predict)
        seqs = [rows[b] + mid[b] + suf[b] for b in range(B)]
        x, pad = left_pad(seqs, fill, dev)
        T = x.size(1)
        slots = [(b, k) for b in live for k, t in enumerate(mid[b]) if t == mask_id]
        sb = torch.tensor([b for b, _ in slots])
        idx = torch.tensor([T - len(seqs[b]) for b, _ in slots]) + torch.tensor([len(rows[b]) + k for b, k in slots])
        logits = predict(model, x, Context(pad=pad), rows=(sb * T + idx).to(dev))
        nfe += 1
        # 2. propose a token per slot; <|mask|> never, <|expand|> not once the canvas is full or the budget spent
        logits[:, mask_id] = ninf
        full = torch.tensor([len(mid[b]) >= gen_length or left[b] <= 0 for b, _ in slots], device=dev)
        logits[:, expand_id] = logits[:, expand_id].masked_fill(full, ninf)
        tok, p_tok, conf = propose(logits, alg if threshold is None else None, temperature, top_p, top_k, generator)
        # 3. choose the slots to commit, per row (generate's rules on a (B, slots) score matrix)
        col = torch.tensor([j for b in live for j in range(sum(t == mask_id for t in mid[b]))])
        n_max = int(col.max()) + 1
        dense = lambda v, f: torch.full((B, n_max), f, dtype=v.dtype, device=dev).index_put_((sb.to(dev), col.to(dev)), v)
        score, p_all, tok_all = dense(conf if threshold is None else p_tok, ninf), dense(p_tok, 0.0), dense(tok, -1)
        valid = score > ninf
        if alg_temp > 0 and threshold is None:  # Dream: sample the slot from softmax(conf / alg_temp)
            score = score.double() / alg_temp + gumbel(score.shape, generator, dev)
        sel = top_ranks(score.masked_fill(~valid, ninf), torch.ones(B, dtype=torch.long, device=dev)) & valid
        if threshold is not None:
            sel |= valid & (p_all >= threshold)
        # 4. commit, then rewrite each canvas: expand -> two masks, delete -> gone
        order = score.argsort(dim=1, descending=True, stable=True).tolist()
        sel, tok_all = sel.tolist(), tok_all.tolist()
        for b in live:
            where = [k for k, t in enumerate(mid[b]) if t == mask_id]  # column j -> canvas slot where[j]
            room = min(gen_length - len(mid[b]), left[b])
            for j in order[b]:
                if j < len(where) and sel[b][j]:
                    if tok_all[b][j] == expand_id:
                        if room <= 0:
                            continue  # no space for another slot: it stays masked
                        room -= 1
                    mid[b][where[j]], born[b][where[j]] = tok_all[b][j], nfe
            if truncate and delete_id in mid[b]:  # DreamOn's pad_eos_to_right: a delete ends the middle
                f = mid[b].index(delete_id)
                mid[b] = mid[b][:f] + [delete_id if t == mask_id else t for t in mid[b][f:]]
            new, new_born = [], []
            for t, s in zip(mid[b], born[b]):
                if t == expand_id:
                    new += [mask_id, mask_id]
                    new_born += [-1, -1]
                    left[b] -= 1
                    n_expand += 1
                elif t == delete_id:
                    n_delete += 1
                else:
                    new.append(t)
                    new_born.append(s)
            mid[b], born[b] = new, new_born
        if callback is not None:
            callback(dict(tokens=left_pad([rows[b] + mid[b] + suf[b] for b in range(B)], fill, dev)[0], block=0,
                          step=nfe, nfe=nfe, canvas=list(mid[0]), born=list(born[0]), prompt_len=len(rows[0]),
                          mask_id=mask_id, lengths=[len(m) for m in mid]))
    out = torch.tensor([[fill] * (G - len(rows[b])) + rows[b] + mid[b] + [fill] * (gen_length - len(mid[b]))
                        + suf[b] + [fill] * (S - len(suf[b])) for b in range(B)], dtype=torch.long, device=dev)
    dt = time.perf_counter() - t0
    made = sum(len(m) for m in mid)
    return out, dict(middles=mid, lengths=[len(m) for m in mid], nfe=nfe, steps=nfe, expansions=n_expand,
                     deletions=n_delete, seconds=dt, tokens_per_s=made / dt, tokens_per_forward=made / max(nfe, 1),
                     prompt_len=G, steps_per_block=[nfe], blocks=1, block_length=gen_length)
