"""
Parallel decoding measured as users need it: for a diffusion model, a set of prompts and a judge, sweep the
decoding rules (fixed steps at several tokens per step, Fast-dLLM's threshold and factor, editing on and off)
and report for each rule

  pass@1              the judge's verdicts on the batch-of-one answers (greedy)
  tokens_per_forward  answer tokens (up to and including the first EOS) / forward passes, over all prompts
  wall clock          seconds and tokens/s at batch 1 (each prompt alone) and at batch B (chunks of B), the same
                      prompts through AR decoding with its KV cache beside them, and the speed-up against it
  batch_equal         whether batch B gave every row its batch-of-one tokens

and AUP (d3LLM): the area under pass@1 (in %) against tokens per forward, sorted by tokens per forward, each
point weighted by W(y) = min(exp(-3 (1 - y / y_max)), 1), only the points within 5 points of the reference
(the one-token-per-step rule):
  AUP = rho_1 y_1 + sum_i (rho_i - rho_{i-1}) (y_i W(y_i) + y_{i-1} W(y_{i-1})) / 2.

The judge is any callable judge(i, tokens) -> bool (prompt index, the answer's token ids up to its EOS), so the
same sweep runs on a toy with a trivial judge (tests/test_parallel.py) and on a small world whose judge runs each
function's tests. Timings alternate the contenders inside each of `rounds` rounds (one process), and report the
median and the spread.
"""
import math
import statistics
import time

import torch

from sample import generate


def default_rules(gen_length, edit_threshold=0.9):
    """(name, family, generate() options) of the standard sweep; 'steps=gen' (one token per step) is the reference."""
    rules = [('steps=gen', 'steps', {})]
    rules += [(f'steps=gen/{k}', 'steps', dict(steps=gen_length // k)) for k in (2, 4, 8) if gen_length // k >= 1]
    rules += [(f'threshold={t}', 'threshold', dict(threshold=t)) for t in (0.95, 0.9, 0.7, 0.5)]
    rules += [(f'factor={f}', 'factor', dict(factor=f)) for f in (0.5, 1.0, 2.0)]
    rules += [(f'threshold={t}+edit', 'editing', dict(threshold=t, edit_threshold=edit_threshold, edit_budget=2))
              for t in (0.9, 0.7, 0.5)]
    return rules


def aup(points, y_ref=None, y_max=None, alpha=3.0, window=5.0):
    """d3LLM's Accuracy Under Parallelism of (tokens per forward, accuracy in %) points; y_ref: the reference
    accuracy (default: that of the fewest tokens per forward), y_max: the best accuracy (default: the points')."""
    pts = sorted(points)
    if not pts:
        return 0.0
    y_ref = pts[0][1] if y_ref is None else y_ref
    y_max = max(y for _, y in pts) if y_max is None else y_max
    pts = [(r, y) for r, y in pts if y >= y_ref - window]
    if not pts or y_max <= 0:
        return 0.0
    w = lambda y: min(math.exp(-alpha * (1 - y / y_max)), 1.0)
    area = pts[0][0] * pts[0][1]
    for (r0, y0), (r1, y1) in zip(pts, pts[1:]):
        area += (r1 - r0) * (y1 * w(y1) + y0 * w(y0)) / 2
    return area


def answer(tokens, eos_id):
    """An answer's tokens up to and including its first EOS."""
    return tokens[:tokens.index(eos_id) + 1] if eos_id is not None and eos_id in tokens else tokens


def run_contender(model, prompts, gen_length, batch, opts):
    """One contender over every prompt: alone (batch 1), then in chunks of `batch` -> what was decoded and timed."""
    singles, nfe, t0 = [], 0, time.perf_counter()
    for p in prompts:
        out, info = generate(model, [p], gen_length=gen_length, **opts)
        singles.append(out[0])
        nfe += info['nfe']
    t1 = time.perf_counter()
    equal = True
    for i in range(0, len(prompts), batch):
        chunk = prompts[i:i + batch]
        out, _ = generate(model, chunk, gen_length=gen_length, **opts)
        G = max(len(p) for p in chunk)
        equal &= all(torch.equal(out[j, G - len(p):], singles[i + j]) for j, p in enumerate(chunk))
    return dict(singles=singles, nfe=nfe, seconds_b1=t1 - t0, seconds_batch=time.perf_counter() - t1, batch_equal=equal)


def measure_parallel(model, prompts, judge, *, rules=None, ar_model=None, gen_length=64, batch=8, rounds=1,
                     eos_id=None, pad_id=None, **common):
    """The sweep of the module docstring -> dict(rows, aup, aup_by_family, reference). prompts: token lists;
    judge(i, tokens) -> bool; rules: [(name, family, generate() options)] (default_rules); ar_model: a causal model
    decoded with its KV cache on the same prompts (an 'AR' row; the speed-ups are against it); common: options for
    every diffusion rule (block_length, cache, alg, ...)."""
    rules = rules or default_rules(gen_length)
    contenders = [(name, family, model, dict(common, **opts, eos_id=eos_id, pad_id=pad_id))
                  for name, family, opts in rules]
    if ar_model is not None:
        contenders.append(('AR', 'ar', ar_model, dict(eos_id=eos_id, pad_id=pad_id)))
    times = {name: ([], []) for name, *_ in contenders}
    runs = {}
    with torch.no_grad():
        for _ in range(rounds):  # A B C ... A B C: the machine's drift hits every contender alike
            for name, _, m, opts in contenders:
                runs[name] = run_contender(m, prompts, gen_length, batch, opts)
                times[name][0].append(runs[name]['seconds_b1'])
                times[name][1].append(runs[name]['seconds_batch'])
    rows = []
    for name, family, _, _ in contenders:
        r = runs[name]
        ans = [answer(s[-gen_length:].tolist(), eos_id) for s in r['singles']]  # each answer, its prompt dropped
        verdicts = [bool(judge(i, a)) for i, a in enumerate(ans)]
        n_tokens = sum(len(a) for a in ans)
        b1, bb = statistics.median(times[name][0]), statistics.median(times[name][1])
        rows.append(dict(rule=name, family=family, pass_at_1=100 * sum(verdicts) / len(verdicts), tokens=n_tokens,
                         nfe=r['nfe'], tokens_per_forward=n_tokens / max(r['nfe'], 1), seconds_b1=b1,
                         spread_b1=max(times[name][0]) - min(times[name][0]), tokens_per_s_b1=n_tokens / b1,
                         seconds_batch=bb, spread_batch=max(times[name][1]) - min(times[name][1]),
                         tokens_per_s_batch=n_tokens / bb, batch=batch, batch_equal=r['batch_equal']))
    if ar_model is not None:  # the speed-up against AR, per round, then the median
        for row in rows:
            for k, col in ((0, 'speedup_vs_ar_b1'), (1, 'speedup_vs_ar_batch')):
                row[col] = statistics.median(a / d for a, d in zip(times['AR'][k], times[row['rule']][k]))
    diffusion = [r for r in rows if r['family'] != 'ar']
    ref = next((r for r in diffusion if r['rule'] == 'steps=gen'), min(diffusion, key=lambda r: r['tokens_per_forward']))
    y_max = max(r['pass_at_1'] for r in rows)
    curve = lambda rs: aup([(r['tokens_per_forward'], r['pass_at_1']) for r in rs], ref['pass_at_1'], y_max)
    by_family = {f: curve([ref] + [r for r in diffusion if r['family'] == f and r is not ref])
                 for f in dict.fromkeys(r['family'] for r in diffusion)}
    return dict(rows=rows, aup=curve(diffusion), aup_by_family=by_family, reference=ref['rule'], gen_length=gen_length,
                prompts=len(prompts), rounds=rounds)


def plot_parallel(result):
    """A plot for experiments.common.save(..., panels=2): pass@1 against tokens per forward per family (AR as a
    line), and tokens/s at batch 1 and batch B against tokens per forward."""
    rows = result['rows']

    def plot(axes):
        ax, ax2 = axes
        ar = [r for r in rows if r['family'] == 'ar']
        for fam in dict.fromkeys(r['family'] for r in rows if r['family'] != 'ar'):
            mine = sorted((r for r in rows if r['family'] == fam), key=lambda r: r['tokens_per_forward'])
            ax.plot([r['tokens_per_forward'] for r in mine], [r['pass_at_1'] for r in mine], 'o-', label=fam)
        for r in ar:
            ax.axhline(r['pass_at_1'], ls='--', c='gray', label='AR (KV cache)')
        ax.set_xlabel('tokens per forward'), ax.set_ylabel('pass@1 (%)'), ax.legend()
        ax.set_title(f"AUP {result['aup']:.1f}")
        diff = sorted((r for r in rows if r['family'] != 'ar'), key=lambda r: r['tokens_per_forward'])
        for col, label in (('tokens_per_s_b1', 'batch 1'), ('tokens_per_s_batch', f"batch {rows[0]['batch']}")):
            ax2.plot([r['tokens_per_forward'] for r in diff], [r[col] for r in diff], 'o', label=f'diffusion, {label}')
            for r in ar:
                ax2.axhline(r[col], ls='--', c='gray' if col.endswith('b1') else 'black', label=f'AR, {label}')
        ax2.set_xlabel('tokens per forward'), ax2.set_ylabel('tokens/s'), ax2.legend()
    return plot
