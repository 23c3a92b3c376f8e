"""
Fill-in-the-middle for the AR baseline (Bavarian et al. 2022, arXiv 2207.14255): with fim_rate > 0,
train.py rearranges the documents of each objective=ar training window, so that a left-to-right
model learns to write a middle after seeing both sides.

The same cut makes DreamOn's variable-length rows (varlen_rows, an option of mdm and sft with
varlen_rate > 0): the middle gets D ~ U{0..max_delete} delete targets (<|endoftext|>), is masked at
rate t (the deletes always), and adjacent masked pairs merge into one <|expand|> target with
probability p = merge_prob (1 - masked / |middle|) ('dynamic_inverse'), or merge_prob in 40% of rows
('static'). A row's deletes share one token's weight (pool_deletes, DreamOn's weight_eos), so the
slots before the suffix are not the sampler's most confident commits (docs/objectives.md).
"""
import torch


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
# DreamOn's variable-length middles (Wu et al., arXiv 2602.01326; lib/varlen.py samples with them)


def varlen_middle(mid, m, t, u_mask, u_merge, p_merge, *, mask_id, expand_id, w_delete=1.0):
    """A middle of m real tokens followed by its delete targets -> canvas (input, target, weight) lists.
    Each real token is masked with probability t, every delete target always. Then, left to right,
    a masked real token and the masked real token after it become ONE masked slot with target
    <|expand|>, with probability p_merge; the pairs never overlap (DreamOn's loop lets a merged-away
    position merge again, so one slot could stand for three tokens), so splitting each expand into
    two masks and dropping the deletes restores the middle's m positions. Weights are 1 / P(masked):
    1/t for a real token, 2/t for an expand (two real tokens), w_delete for a delete, 0 for visible
    tokens; their expected sum is m + w_delete (len(mid) - m), the row's normaliser (uniform logits:
    the loss is log V)."""
    masked = [k >= m or u_mask[k] < t for k in range(len(mid))]
    inp, tgt, w, k = [], [], [], 0
    while k < len(mid):
        if k + 1 < m and masked[k] and masked[k + 1] and u_merge[k] < p_merge:
            inp.append(mask_id), tgt.append(expand_id), w.append(2 / t)
            k += 2
        else:
            inp.append(mask_id if masked[k] else mid[k]), tgt.append(mid[k])
            w.append(0.0 if not masked[k] else 1 / t if k < m else w_delete)
            k += 1
    return inp, tgt, w


def merge_rate(opts, n_masked, n, static):
    """DreamOn's merge probability: merge_prob ('static', in a fraction merge_static of the rows), else
    'dynamic_inverse' merge_prob * (1 - masked fraction of the middle): fewer merges when most is masked."""
    return opts.merge_prob if static else opts.merge_prob * (1 - n_masked / max(n, 1))


def varlen_row(row, lo, hi, t, u, *, opts, mask_id, expand_id, delete_id):
    """One training row (a list of L ids) -> (input, target, weight, n), each a list of L. The document
    row[lo:hi] is cut as FIM cuts it (fim_cut) into prefix | middle | suffix; the middle gets D delete
    targets, D ~ U{0..min(max_delete, L - j)} (they must fit the row), and becomes a varlen_middle canvas;
    the row is cut back to L (the suffix's end falls off) or filled with pads (never scored).
    pool_deletes (DreamOn's weight_eos): the D deletes share the weight of one token, 1/D each, so
    "delete" is learned as one token's worth, not D, and is not the sampler's easiest commit.
    n = the expected weight sum, the row's normaliser: m + 1 (pooled, D > 0) or m + D.
    u: 5 + 2L uniform draws (u[4] is varlen_rows')."""
    L = len(row)
    i, j = fim_cut(hi - lo, u[0], u[1])
    i, j = i + lo, j + lo
    d = int(u[2] * (min(opts.max_delete, L - j) + 1))
    mid = row[i:j] + [delete_id] * d
    n_masked = sum(x < t for x in u[5:5 + j - i])
    p = merge_rate(opts, n_masked, len(mid), static=u[3] < opts.merge_static)
    w_delete = 1 / d if opts.pool_deletes and d else 1.0  # DreamOn's weight_eos: the deletes weigh one token
    inp, tgt, w = varlen_middle(mid, j - i, t, u[5:5 + L], u[5 + L:], p, mask_id=mask_id, expand_id=expand_id,
                                w_delete=w_delete)
    fit = lambda s, fill: (s + [fill] * L)[:L]
    return (fit(row[:i] + inp + row[j:], delete_id), fit(row[:i] + tgt + row[j:], delete_id),
            fit([0.0] * i + w, 0.0), j - i + d * w_delete)


def varlen_rows(x0, xt, weight, scale, *, opts, step, mask_id, expand_id, delete_id, eos_id, prompt_len, generator,
                noise_level):
    """Replace a fraction varlen_rate of the rows by varlen_row rows. The hole lies in one document:
    mdm, the one holding a uniformly drawn position (documents end at eos_id); sft, the answer (from
    prompt_len to its first pad). A replaced row's loss is sum weight * CE / n, 1/B of the batch's.
    Returns (x0, xt, weight, scale (B, 1), picked (B,) bool: the rows replaced). noise_level is
    diffusion.noise_level, passed in by diffusion.training_loss (this module sits below diffusion.py)."""
    (B, L), dev = x0.shape, x0.device
    pick = (torch.rand(B, generator=generator) < opts.varlen_rate).tolist()
    t, _ = noise_level(B, opts, step, generator, 'cpu')
    u = torch.rand(B, 5 + 2 * L, generator=generator).tolist()
    x0, xt, weight = x0.clone(), xt.clone(), weight.clone()
    scale = torch.as_tensor(scale, dtype=torch.float32, device=dev).expand(B, 1).clone()
    for b in [b for b in range(B) if pick[b]]:
        row = x0[b].tolist()
        if prompt_len is not None:  # sft: the answer
            lo = int(prompt_len[b])
            hi = next((k for k in range(lo, L) if row[k] == delete_id), L)
        else:  # mdm: the document around a uniform position
            pos = min(int(u[b][4] * L), L - 1)
            hi = next((k for k in range(pos, L) if row[k] == eos_id), L)
            lo = next((k + 1 for k in range(hi - 1, -1, -1) if row[k] == eos_id), 0)
        inp, tgt, w, n = varlen_row(row, lo, hi, float(t[b]), u[b], opts=opts, mask_id=mask_id,
                                    expand_id=expand_id, delete_id=delete_id)
        xt[b], x0[b] = torch.tensor(inp), torch.tensor(tgt)
        weight[b] = torch.tensor(w, dtype=weight.dtype)
        scale[b] = 1 / (max(n, 1) * B)
    return x0, xt, weight, scale, torch.tensor(pick)
