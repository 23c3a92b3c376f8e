"""
The output head's cross-entropy, chunked and fused: the CE of logits h @ W.T (W the lm_head's (V, H))
without ever holding all N x V logits, which at a 152k vocabulary are most of a forward's memory.
model.Transformer calls it when a forward is given targets (model(idx, rows=..., targets=...)).
"""
import torch

CE_CHUNK_FLOATS = 2**24  # logits computed at once by cross_entropy: 64 MiB of float32


def cross_entropy(h, weight, targets, weights=None, chunk_floats=None):
    """CE of logits h @ weight.T (h: (N, H) hidden rows, weight: the lm_head's (V, H)) against targets
    (N,), computed `chunk` rows at a time so that at most chunk x V logits exist (64 MiB of float32).
    weights None: the per-row CE (N,). weights (N,): the scalar sum_i weights_i CE_i; when it needs a
    gradient, the gradient is computed during the forward, chunk by chunk (Liger-Kernel's fused linear
    cross-entropy): dCE/dlogits = softmax - onehot, three matmuls per chunk and no N x V tensor kept."""
    chunk = max(1, (chunk_floats or CE_CHUNK_FLOATS) // weight.size(0))
    if weights is not None and torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
        return _FusedCE.apply(h, weight, targets, weights.float(), chunk)
    ce = torch.cat([_ce(h[i:i + chunk] @ weight.t(), targets[i:i + chunk]) for i in range(0, max(len(h), 1), chunk)])
    return ce if weights is None else (ce * weights).sum()


def _ce(logits, y):
    logits = logits.float()
    return logits.logsumexp(-1) - logits.gather(-1, y[:, None]).squeeze(-1)


class _FusedCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, y, w, chunk):
        loss, gh, gw = h.new_zeros((), dtype=torch.float32), torch.empty_like(h), torch.zeros_like(weight)
        for i in range(0, len(h), chunk):
            hc, yc, wc = h[i:i + chunk], y[i:i + chunk], w[i:i + chunk]
            logits = (hc @ weight.t()).float()
            lse = logits.logsumexp(-1)
            loss += (wc * (lse - logits.gather(-1, yc[:, None]).squeeze(-1))).sum()
            g = logits.sub_(lse[:, None]).exp_().mul_(wc[:, None])  # w * softmax, in place
            g[torch.arange(len(yc), device=g.device), yc] -= wc      # - w * onehot
            g = g.to(h.dtype)
            gh[i:i + chunk] = g @ weight
            gw += g.t() @ hc
        ctx.save_for_backward(gh, gw)
        return loss

    @staticmethod
    def backward(ctx, grad):
        gh, gw = ctx.saved_tensors
        return gh * grad, gw * grad, None, None, None
