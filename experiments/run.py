"""
What code diffusion buys, measured against honest baselines: one subcommand per table. Each reuses
the toy runs it finds (a train.py out_dir with ckpt.pt and log.jsonl under one of --runs), or trains a
missing one with --train (its train.py command is printed either way), and writes
experiments/results/<table>.json plus <table>.png (when matplotlib is installed).

  python -m experiments.run infill    # (a) diffusion vs AR+FIM vs AR prefix-only: infill metrics, pass@1
  python -m experiments.run samplers  # (a') the diffusion model's infilling under four decoders
  python -m experiments.run fimprobe  # (a'') do the models use the suffix? the middle's bits with it and without
  python -m experiments.run blocks    # (b) val bits/byte: AR, block 4/16/64, full bidirectional
  python -m experiments.run frontier  # (c) tokens per forward vs infill quality (steps, threshold, factor)
  python -m experiments.run masking   # (d) CoDA progressive masking none / pretrain / strong
  python -m experiments.run curves    # (e) val loss vs training tokens, diffusion vs AR
  python -m experiments.run varlen    # (g) infilling without the oracle length (DreamOn; experiments/table_varlen.py)
  python -m experiments.run adapt     # (f) AR -> diffusion adaptation at equal total compute (experiments/adapt.py)
  python -m experiments.run world     # (h) the small world: every arm on every tier, seen and held-out (experiments/world.py)
  python -m experiments.run world_parallel  # (i) the world: pass@1 against tokens per forward, AUP, wall clock vs AR
  python -m experiments.run all --runs=/path/to/runs,. --n_infill=100 --n_he=1033
  python -m experiments.run blocks --logs_only   # refresh the log-based part while runs still train
  python -m experiments.run infill --only=mdm_long  # re-evaluate the named runs, keep the table's other rows (infill, frontier)

Every evaluation runs in this process on one thread (--threads), through evaluation.main (the code of
eval.py), with the task counts given on the command line (they are in each JSON).
"""
import math
import os
import sys

if not __package__:  # typed by path (python experiments/run.py): import from the repository root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lib.cli import UserError, check_ranges, check_writable, parse_args, run_cli
from experiments import table_varlen, world
from experiments.adapt import table_adapt  # (f) AR -> diffusion adaptation at equal total compute
from experiments.common import (REPO, at_common_iteration, evaluate, fimprobe_rows, find_only, find_run, log_curve,
                                markdown, only_runs, pick, previous_rows, read_log, save, tokens_to_reach, train_info,
                                val_data, val_windows)

DEFAULTS = dict(runs='.', train=False, partial=False, threads=1, n_infill=100, n_he=1033, n_frontier=50, eval_batches=10,
                hole_length=32, max_hole=64, sampler='', logs_only=False, only='', overwrite=False,
                n_world=20, world_gen=160, world='data/pyworld', n_parallel=6, rounds=1,
                out_dir=os.path.join(REPO, 'experiments', 'results'))
RANGES = dict(threads='[1, inf)', n_infill='[1, inf)', n_he='[1, inf)', n_frontier='[1, inf)', eval_batches='[1, inf)',
              hole_length='[0, inf)', max_hole='[1, inf)', n_world='[1, inf)', world_gen='[1, inf)',
              n_parallel='[1, inf)', rounds='[1, inf)')

METRICS = ('tasks', 'mode', 'hole_length', 'exact_match', 'edit_similarity', 'parse_rate', 'cond_bpb', 'pass@1',
           'tokens_per_forward')

# -----------------------------------------------------------------------------
# (a) infilling: diffusion vs AR + FIM vs AR prefix-only


def table_infill(cfg):
    runs = dict(mdm=[''], mdm_long=[''], ar_fim=['', 'prefix'], ar=[''])
    names, rows = only_runs(cfg, 'infill', runs)
    for name in names:
        path = find_only(cfg, name)
        if path is None:
            continue
        modes = runs[name]
        for mode in modes:
            for task, n in (('infill', cfg['n_infill']), ('humaneval_infill', cfg['n_he'])):
                holes = [0, cfg['hole_length']] if name.startswith('mdm') else [0]  # oracle hole length, then a fixed one
                for hole in holes:
                    s = evaluate(cfg, f'--task={task}', f'--ckpt={path}', f'--limit={n}', f'--infill_mode={mode}',
                                 f'--hole_length={hole}')
                    rows.append(dict(run=name, iters=train_info(path)['iters'], task=task, **pick(s, *METRICS)))
    rows.sort(key=lambda r: list(runs).index(r['run']))  # stable: --only's rows take their run's place
    markdown(rows, ['run', 'mode', 'task', 'hole_length', 'tasks', 'exact_match', 'edit_similarity', 'cond_bpb',
                    'pass@1', 'parse_rate'])
    plot = lambda ax: bars(ax, rows, 'edit_similarity', 'edit similarity (infill)')
    save(cfg, 'infill', dict(rows=rows, n_infill=cfg['n_infill'], n_he=cfg['n_he']), plot)


VARIANTS = [('greedy, entropy order (default)', []), ('greedy, left to right (block_length=1)', ['--block_length=1']),
            ('temperature 0.8, top-k 10', ['--temperature=0.8', '--top_k=10']),
            ('random order (origin), temperature 0.5', ['--alg=origin', '--temperature=0.5'])]


def table_samplers(cfg):
    """Is the diffusion model's infilling limited by its sampler? The same checkpoint and tasks, four decoders."""
    names, rows = only_runs(cfg, 'samplers', ('mdm', 'mdm_long'))
    for name in names:
        path = find_only(cfg, name)
        for label, args in VARIANTS if path else []:
            s = evaluate(cfg, '--task=infill', f'--ckpt={path}', f'--limit={cfg["n_infill"]}', '--cond_samples=0', *args)
            rows.append(dict(run=name, sampler=label, **pick(s, 'tasks', 'exact_match', 'edit_similarity', 'parse_rate')))
    rows.sort(key=lambda r: ('mdm', 'mdm_long').index(r['run']))
    markdown(rows, ['run', 'sampler', 'tasks', 'exact_match', 'edit_similarity', 'parse_rate'])
    save(cfg, 'samplers', dict(rows=rows, n_infill=cfg['n_infill']))


def table_fimprobe(cfg):
    rows = [r for name in ('ar', 'ar_fim', 'mdm', 'mdm_long') if (path := find_run(cfg, name))
            for r in fimprobe_rows(name, path)]
    markdown(rows, ['run', 'cut', 'windows', 'with_suffix_bpb', 'without_suffix_bpb', 'l2r_with_suffix_bpb',
                    'l2r_without_suffix_bpb'])

    def plot(ax):  # per run and middle length: the middle's bits/byte with the suffix and without it
        labels = [f"{r['run']}\n{r['cut'][1] - r['cut'][0]} tok" for r in rows]
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], [r['without_suffix_bpb'] for r in rows], 0.4, label='without the suffix')
        ax.bar([i + 0.2 for i in x], [r['with_suffix_bpb'] or 0 for r in rows], 0.4, label='with the suffix')
        ax.set_xticks(list(x), labels, fontsize=6, rotation=45), ax.legend(fontsize=7)
        ax.set_ylabel('bits/byte of the middle (lower is better)')
    save(cfg, 'fimprobe', dict(rows=rows, window=120, elbo_samples=8), plot)


def bars(ax, rows, key, ylabel):
    labels = [f"{r['run']}/{r['mode']}\n{'he' if r['task'] == 'humaneval_infill' else 'stdlib'}"
              f"{'' if r['hole_length'] == 'oracle' else ' L=' + str(r['hole_length'])}" for r in rows]
    ax.bar(range(len(rows)), [100 * r.get(key, 0) for r in rows])
    ax.set_xticks(range(len(rows)), labels, rotation=60, fontsize=6)
    ax.set_ylabel(ylabel + ' (%)')

# -----------------------------------------------------------------------------
# (b) block size: AR -> block 4 -> 16 -> 64 -> bidirectional


def table_blocks(cfg):
    rows = previous_rows(cfg, 'blocks') if cfg['logs_only'] else []
    for name in () if cfg['logs_only'] else ('ar', 'block4', 'block16', 'block64', 'mdm'):
        path = find_run(cfg, name)
        if path is None:
            continue
        s = evaluate(cfg, '--task=elbo', f'--ckpt={path}', f'--eval_batches={cfg["eval_batches"]}', '--batch_size=16',
                     '--elbo_samples=4')
        rows.append(dict(run=name, **train_info(path), val_bpb=s['bits_per_byte'], sequences=s['sequences']))
    ar = next((r['val_bpb'] for r in rows if r['run'] == 'ar'), None)
    for r in rows:
        r['ratio_to_ar'] = r['val_bpb'] / ar if ar else None
    markdown(rows, ['run', 'iters', 'train_tokens', 'forward_tokens', 'val_bpb', 'ratio_to_ar', 'log_val_bpb'])
    names = ('ar', 'block4', 'block16', 'block64', 'mdm')
    common, at = at_common_iteration(cfg, names)
    curves = {n: log_curve(cfg, n) for n in names if log_curve(cfg, n)}
    print(f'val bits/byte from the training logs at iteration {common}:', at)

    def plot(ax):
        for n, c in curves.items():
            ax.plot([i for i, _ in c], [v for _, v in c], 'o-', label=n)
        ax.set_xlabel('iteration (equal FLOPs per iteration)'), ax.legend()
        ax.set_ylabel('val bits/byte (AR: NLL; others: ELBO bound)')
    save(cfg, 'blocks', dict(rows=rows, common_iteration=common, log_val_bpb_at_common_iteration=at, curves=curves,
                             note='block runs: batch 16 with the 2L layout = the forward FLOPs of batch 32, '
                                  'half the data tokens per iteration'), plot)

# -----------------------------------------------------------------------------
# (c) speed / quality frontier of the diffusion decoders


SETTINGS = [('steps=gen', ['--steps_div=1']), ('steps=gen/2', ['--steps_div=2']), ('steps=gen/4', ['--steps_div=4'])] + \
    [(f'threshold={t}', [f'--threshold={t}']) for t in (0.5, 0.7, 0.8, 0.9, 0.95)] + \
    [(f'factor={f}', [f'--factor={f}']) for f in (0.5, 1.0, 2.0)]


def judge_bits(judge, prompts, cont):
    """Val-set generation quality (MDLM's generative perplexity, with the AR toy run as the judge): the judge's
    bits/byte of each continuation given its prompt, and the continuations' unigram entropy in bits. A
    degenerate, repetitive sample scores low on both, so both are reported."""
    import torch
    from diffusion import token_ce
    with torch.no_grad():
        x = torch.cat([torch.tensor(prompts), cont], 1)
        bpb = float(token_ce(judge(x)[:, :-1], x[:, 1:])[:, -cont.size(1):].mean()) / math.log(2)
    p = torch.bincount(cont.flatten()).float()
    p = p[p > 0] / p.sum()
    return bpb, float(-(p * p.log2()).sum())


def continue_val(model, prompts, args, gen):
    """Continue each val prompt by gen tokens with one decoder setting (eval.py's flags) -> (tokens, info)."""
    import torch
    from sample import generate
    from evals.evaluation import DEFAULTS
    from evals.tasks import sampler_kwargs
    ecfg = parse_args(args, DEFAULTS)
    kw = dict(sampler_kwargs(ecfg, model), gen_length=gen)
    kw['steps'] = math.ceil(gen / ecfg['steps_div']) if ecfg['steps_div'] else kw['steps']
    out, info = generate(model, torch.tensor(prompts), **kw, generator=torch.Generator().manual_seed(0))
    return out[:, len(prompts[0]):], info


FRONTIER_RUNS = ('mdm', 'mdm_long', 'block4', 'block16')


def table_frontier(cfg, n_prompts=32, P=64, gen=64):
    import torch
    from lib.runtime import load_model
    names, rows = only_runs(cfg, 'frontier' + ('_sampled' if cfg['sampler'] else ''), FRONTIER_RUNS)
    judge_path = find_run(cfg, 'ar')
    judge = load_model(judge_path, 'cpu', torch.float32)[0] if judge_path else None
    for name in names:
        path = find_only(cfg, name)
        if path is None:
            continue
        model, _, docs = val_windows(path, n_prompts, P + gen)  # val prompts of P tokens, their true continuations
        prompts, truth = [d[:P] for d in docs], [d[P:] for d in docs]
        real = judge_bits(judge, prompts, torch.tensor(truth)) if judge else None
        for label, args in SETTINGS:
            args = [*args, *cfg['sampler'].split()]  # e.g. --sampler='--temperature=0.8 --top_k=10'
            s = evaluate(cfg, '--task=infill', f'--ckpt={path}', f'--limit={cfg["n_frontier"]}', '--cond_samples=0', *args)
            rows.append(dict(run=name, setting=label, **pick(s, 'tasks', 'exact_match', 'edit_similarity', 'parse_rate',
                                                            'tokens_per_forward', 'tokens_per_s')))
            if judge:
                cont, info = continue_val(model, prompts, args, gen)
                bpb, ent = judge_bits(judge, prompts, cont)
                rows[-1].update(continuation_tokens_per_forward=gen / info['nfe'], continuation_judge_bpb=bpb,
                                continuation_entropy=ent, val_text_judge_bpb=real[0], val_text_entropy=real[1])
    rows.sort(key=lambda r: FRONTIER_RUNS.index(r['run']))
    best = {}
    for name in {r['run'] for r in rows}:
        mine = [r for r in rows if r['run'] == name]
        base = next(r for r in mine if r['setting'] == 'steps=gen')
        ok = [r for r in mine if 100 * (base['edit_similarity'] - r['edit_similarity']) <= 1.0]
        best[name] = max(ok, key=lambda r: r['tokens_per_forward'])
    markdown(rows, ['run', 'setting', 'tokens_per_forward', 'tokens_per_s', 'exact_match', 'edit_similarity', 'parse_rate',
                    'continuation_tokens_per_forward', 'continuation_judge_bpb', 'continuation_entropy'])
    print('best within 1 point:', {k: (v['setting'], round(v['tokens_per_forward'], 2)) for k, v in best.items()})

    def plot(axes):  # left: infill quality; right: continuation quality (the judge's bits/byte; real text dashed)
        ax, ax2 = axes
        for name in sorted({r['run'] for r in rows}):
            mine = [r for r in rows if r['run'] == name]
            ax.plot([r['tokens_per_forward'] for r in mine], [100 * r['edit_similarity'] for r in mine], 'o', label=name)
            if 'continuation_judge_bpb' in mine[0]:
                ax2.plot([r['continuation_tokens_per_forward'] for r in mine], [r['continuation_judge_bpb'] for r in mine],
                         'o', label=name)
        if rows and 'val_text_judge_bpb' in rows[0]:
            ax2.axhline(rows[0]['val_text_judge_bpb'], ls='--', c='gray', label='real val text')
        ax.set_xlabel('tokens per forward'), ax.set_ylabel('infill edit similarity (%)'), ax.legend()
        ax2.set_xlabel('tokens per forward'), ax2.set_ylabel("continuation: AR judge's bits/byte"), ax2.legend()
    tag = '_sampled' if cfg['sampler'] else ''  # frontier_sampled.json: the same sweep with --sampler's decoder
    save(cfg, 'frontier' + tag, dict(rows=rows, best_within_1_point=best, n_tasks=cfg['n_frontier'],
                                     sampler=cfg['sampler'] or 'greedy, alg=entropy', prompt_tokens=P,
                                     continuation_tokens=gen, prompts=n_prompts), plot, panels=2)

# -----------------------------------------------------------------------------
# (d) CoDA's progressive masking


def prefix_elbo(path, n_windows=64, batch=16, samples=4, seed=0):
    """ELBO (bits/byte) of the second half of val windows given the first half (prompt-conditioned
    generation, which CoDA's S1 trains for)."""
    import numpy as np
    import torch
    from diffusion import elbo
    model, tok, meta, data = val_data(path)
    L = model.train_config['seq_len']
    starts = np.linspace(0, len(data) - L, n_windows).astype(np.int64)
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for i in range(0, n_windows, batch):
        x0 = torch.from_numpy(np.stack([data[s:s + L] for s in starts[i:i + batch]]).astype(np.int64))
        maskable = torch.zeros_like(x0, dtype=torch.bool)
        maskable[:, L // 2:] = True
        total += float(elbo(model, x0, n_samples=samples, generator=g, maskable=maskable).sum())
    return total / n_windows / math.log(2)


def table_masking(cfg):
    rows = previous_rows(cfg, 'masking') if cfg['logs_only'] else []
    for name in () if cfg['logs_only'] else ('mdm', 'pretrain', 'strong'):
        path = find_run(cfg, name)
        if path is None:
            continue
        s = evaluate(cfg, '--task=infill', f'--ckpt={path}', f'--limit={cfg["n_infill"]}')
        rows.append(dict(run=name, **pick(s, *METRICS), prefix_elbo_bpb=prefix_elbo(path),
                         log_val_bpb=train_info(path)['log_val_bpb']))
    markdown(rows, ['run', 'tasks', 'exact_match', 'edit_similarity', 'parse_rate', 'cond_bpb', 'prefix_elbo_bpb', 'log_val_bpb'])
    common, at = at_common_iteration(cfg, ('mdm', 'pretrain', 'strong'))
    print(f'val bits/byte from the training logs at iteration {common}:', at)

    curves = {n: log_curve(cfg, n) for n in ('mdm', 'pretrain', 'strong') if log_curve(cfg, n)}

    def plot(ax):
        for n, c in curves.items():
            ax.plot([i for i, _ in c], [v for _, v in c], 'o-', label=n)
        ax.set_xlabel('iteration'), ax.set_ylabel('val ELBO bits/byte'), ax.legend()
    save(cfg, 'masking', dict(rows=rows, n_infill=cfg['n_infill'], common_iteration=common,
                              log_val_bpb_at_common_iteration=at, curves=curves), plot)

# -----------------------------------------------------------------------------
# (e) training budget: val loss against training tokens


def table_curves(cfg):
    """Val bits/byte against training compute, counted in forward tokens (equal FLOPs per forward token for
    every run; a block run's [x_t ; x_0] layout reads each data token twice). For each diffusion run, how
    many times AR's compute it spent to reach the loss it ends at."""
    curves = {}
    for name in ('mdm', 'mdm_long', 'ar', 'ar_fim', 'block4'):
        path = find_run(cfg, name)
        if path is None:
            continue
        info = train_info(path)
        per_iter = info['forward_tokens'] / max(1, info['iters'])
        curves[name] = [(r['iter'] * per_iter, r['val_bpb']) for r in read_log(os.path.join(path, 'log.jsonl'))
                        if 'val_bpb' in r]
    out = dict(curves=curves, vs_ar={})
    if 'ar' in curves:
        # AR's val points start at iteration 250, where it may already be below a diffusion run's final loss
        # (the multiple is then a lower bound). AR's training loss (one epoch: an estimate of its val NLL),
        # logged every 10 iterations and averaged over 5 records, resolves the early part of its curve
        path = find_run(cfg, 'ar')
        recs = read_log(os.path.join(path, 'log.jsonl'))
        per_iter = train_info(path)['train_tokens'] / max(1, train_info(path)['iters'])
        smooth = [(recs[i]['iter'] * per_iter, sum(r['loss'] for r in recs[i - 2:i + 3]) / 5 / math.log(2))
                  for i in range(2, len(recs) - 2)]
        out['ar_final_bpb'] = curves['ar'][-1][1]
        for name in ('mdm', 'mdm_long', 'block4'):
            if name not in curves:
                continue
            # the run spent T to reach `final`; AR reached it after t: the run needs T / t times AR's compute
            T, final = curves[name][-1]
            t_val, t_train = tokens_to_reach(curves['ar'], final), tokens_to_reach(smooth, final)
            out['vs_ar'][name] = dict(final_bpb=final, forward_tokens=T, ar_tokens_val=t_val, ar_tokens_train_loss=t_train,
                                      multiple_val=T / t_val if t_val else None,
                                      multiple_val_is_lower_bound=bool(t_val == curves['ar'][0][0]),
                                      multiple_train_loss=T / t_train if t_train else None)

    def plot(ax):
        for name, c in curves.items():
            ax.plot([t / 1e6 for t, _ in c], [v for _, v in c], 'o-', label=name, ms=3)
        ax.set_xscale('log'), ax.legend()
        ax.set_xlabel('training compute (forward tokens, M; log scale)')
        ax.set_ylabel('val bits/byte (AR: NLL; diffusion: ELBO)')
    print({k: v for k, v in out.items() if k != 'curves'})
    save(cfg, 'curves', out, plot)


TABLES = dict(infill=table_infill, samplers=table_samplers, fimprobe=table_fimprobe, blocks=table_blocks, frontier=table_frontier, masking=table_masking,
              curves=table_curves, adapt=table_adapt, varlen=table_varlen.table, world=world.table,
              world_parallel=world.table_parallel)


def main(argv):
    if argv[:1] in (['-h'], ['--help']):
        parse_args(argv, DEFAULTS, __doc__)  # prints the help and exits
    if not argv or argv[0] not in (*TABLES, 'all'):
        raise UserError(f"name a table: {', '.join(TABLES)} or all (python -m experiments.run infill --runs=DIR)")
    cfg = parse_args(argv[1:], DEFAULTS, __doc__)
    check_ranges(cfg, RANGES, DEFAULTS)
    check_writable(cfg['out_dir'])  # now, not after the evaluations
    import torch
    torch.set_num_threads(cfg['threads'])
    os.chdir(REPO)  # eval.py resolves dataset names under data/
    for name in (TABLES if argv[0] == 'all' else [argv[0]]):
        TABLES[name](cfg)


if __name__ == '__main__':
    run_cli(main)
