"""
One denoising step, the pieces every sampler here shares (sampling.py's generate_reference and
generate, varlen.py's generate_varlen):

  sample_tokens / propose   a token per masked slot: argmax, or a Gumbel-max draw from softmax(l/T)
                            after top-k / top-p (Dream's sample_tokens), with its probability
  confidence                how sure the model is of it: p, p_top1 - p_top2, or -entropy (Dream's algs)
  llada_count / coda_count  how many slots a step commits (LLaDA's even spread, CoDA's Dream schedule)
  choose                    which slots: the k most confident, or Fast-dLLM's threshold / factor rules

and the row utilities that let prompts of any length share one batch (as_rows, left_pad, cut_after_eos).
Random draws come from diffusion.uniform in float64, so every device draws the same.
"""
import torch

from cli import UserError
from diffusion import uniform

# -----------------------------------------------------------------------------
# one denoising step: propose a token per masked slot (Dream's sample_tokens), score it
# (Dream's confidences), and commit the k best (LLaDA's or CoDA's count k)


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


def choose(alg, masked, p_tok, conf, *, step, n, s, alg_temp, threshold, factor, generator, schedule='llada'):
    """Which block slots to commit this step. masked (B, n_max) = slots still masked; p_tok = p(token)
    and conf = the alg's confidence of each slot's proposal, (B, n_max) (see propose); n, s (B,) =
    the block's size and step budget per row. Returns a bool (B, n_max), never empty for a row that
    has masked slots (except a step of the 'coda' schedule whose count truncates to 0)."""
    ninf = torch.tensor(float('-inf'), device=masked.device)
    remaining = masked.sum(1)
    if threshold is not None or factor is not None:
        # Fast-dLLM: the score is the proposed token's probability; steps are dynamic
        p = torch.where(masked, p_tok, ninf)
        if threshold is not None:  # every slot with p >= tau, and always the top-1
            return masked & ((p >= threshold) | top_ranks(p, torch.ones_like(remaining)))
        # factor: sort c1 >= c2 >= ...; the largest n with c_i >= 1 - f/(i+1) for all i <= n (>= 1).
        # (Fast-dLLM's released get_transfer_index_dynamic is off by one here: when only the last
        # remaining slot fails its bound it commits every slot; this is the paper's formula.)
        c = p.sort(dim=-1, descending=True).values
        i = torch.arange(1, c.size(1) + 1, device=c.device)
        ok = (c >= 1 - factor / (i + 1)).long().cumprod(-1).sum(-1)
        return masked & top_ranks(p, ok.clamp(min=1))
    last = step >= s - 1  # the block's last step reveals everything still masked
    if alg == 'origin':
        # Dream's reverse process: timesteps linspace(1, eps, s+1); from t to s' < t every masked
        # token is revealed independently with probability 1 - s'/t (all at the last step)
        eps = 1e-3
        t = 1 - step * (1 - eps) / s.clamp(min=1)
        t_next = 1 - (step + 1) * (1 - eps) / s.clamp(min=1)
        p_reveal = torch.where(last, 1.0, 1 - t_next / t)
        return masked & (uniform(masked.shape, generator, masked.device, torch.float64) < p_reveal[:, None])
    count = coda_count(remaining, s, step) if schedule == 'coda' else llada_count(n, s, step)
    k = torch.where(last, remaining, torch.minimum(count, remaining))
    score = torch.where(masked, conf, ninf)
    if alg_temp > 0:  # Dream: sample k positions from softmax(conf / alg_temp) (Gumbel-top-k)
        score = score.double() / alg_temp + gumbel(score.shape, generator, score.device)
    return masked & top_ranks(score, k)


# -----------------------------------------------------------------------------
# rows of any length: prompts arrive as lists, are left-padded to one batch, and end at EOS


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
