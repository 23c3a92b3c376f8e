"""
Fill-in-the-middle for the AR baseline (Bavarian et al. 2022, arXiv 2207.14255): with fim_rate > 0,
train.py rearranges the documents of each objective=ar training window, so that a left-to-right
model learns to write a middle after seeing both sides. varlen.py cuts its holes with fim_cut too.
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
