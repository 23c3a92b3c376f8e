"""
Rows of any length in one batch: prompts arrive as lists, are left-padded to a common length, and
every answer ends at its EOS (the samplers: sample.py, lib/varlen.py).
"""
import torch

from lib.cli import UserError


def as_rows(tokens):
    """A LongTensor (B,T) / (T,), a list of ints or a list of lists -> a list of int lists."""
    if torch.is_tensor(tokens):
        tokens = tokens.tolist() if tokens.dim() == 2 else [tokens.tolist()]
    elif len(tokens) == 0 or not isinstance(tokens[0], (list, tuple)) and not torch.is_tensor(tokens[0]):
        tokens = [tokens]
    return [[int(t) for t in row] for row in tokens]


def left_pad(rows, fill, device):
    """Rows -> (B, G) LongTensor left-padded with fill, and pad (B,) (None when no row is padded)."""
    G = max(len(r) for r in rows)
    x = torch.full((len(rows), G), fill, dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            x[i, G - len(r):] = torch.tensor(r, dtype=torch.long)
    pads = torch.tensor([G - len(r) for r in rows], device=device)
    return x.to(device), (pads if pads.any() else None)


def cut_after_eos(x, start, end, eos_id, fill):
    """Everything after the first EOS in x[:, start:end] becomes `fill` (the EOS itself stays)."""
    if eos_id is None:
        return x
    gen = x[:, start:end]
    after = (gen == eos_id).long().cumsum(1) - (gen == eos_id).long() > 0
    x[:, start:end] = gen.masked_fill(after, fill)
    return x


def check_tokens(rows, vocab_size, what):
    bad = [t for r in rows for t in r if not 0 <= t < vocab_size]
    if bad:
        raise UserError(f"{what} holds token id {bad[0]} outside the model's vocab [0, {vocab_size}); "
                        f"use the model's own tokenizer")
