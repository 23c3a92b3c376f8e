"""
(h) The small world (data/pyworld): every arm at equal compute, on every tier, seen and held-out
compositions apart. Each arm spends 2,500 iterations of 8 x 512 byte tokens (block arms: batch 4, whose
[x_t ; x_0] layout doubles the forward tokens), the AR iterations of an adapted arm's source included:

  ar          AR, next-token loss                    config/world_ar.py
  ar_fim      AR + FIM (the infilling baseline)      config/world_ar_fim.py
  mdm         masked diffusion from scratch          config/world.py
  block       block-4 diffusion from scratch         config/world_block.py
  adapt       AR 2,000 -> mdm 500, logit shift       config/world_adapt.py
  adapt_block AR 2,000 -> block-4 500, logit shift   config/world_adapt_block.py
  adapt_block_wsd  the same, blocks growing 1 -> 2 -> 4 (LLaDA 2.0)   config/world_adapt_block_wsd.py
  edit        AR 2,000 -> mdm 500 with Seed Diffusion's edit stage   config/world_edit.py
  varlen      AR 2,000 -> mdm 500 with DreamOn's rows (infill only)   config/world_varlen.py

Measured per arm, with eval.py's world tasks: write pass@1 on seen (train) and held-out (test)
compositions per tier, one token per step and (diffusion) at Fast-dLLM's threshold 0.9, with tokens per
forward and wall time (bidirectional arms write with Fast-dLLM's dual cache, which makes the table
affordable on a CPU; block arms' cache is exact); infill pass@1 on held-out holes (diffusion: prefix + suffix at the oracle length;
AR + FIM: PSM; AR: the prefix only); the final val loss of the training log.

  python -m experiments.run world --runs=DIR --n_world=50
"""
from experiments.common import evaluate, find_only, markdown, only_runs, save, train_info

ARMS = ('ar', 'ar_fim', 'mdm', 'block', 'adapt', 'adapt_block', 'adapt_block_wsd', 'edit', 'varlen')
DIFFUSION = ARMS[2:]
CANVASES = (4, 16)  # varlen: the masks a hole starts from
TIERS = (1, 2, 3, 4)


def cells(summary, split):
    return {t: summary['pass_at_1'].get(f'{split}/tier{t}') for t in TIERS}


def table(cfg):
    names, rows = only_runs(cfg, 'world', ARMS)
    rows = [dict(r, **{k: {int(t): v for t, v in r[k].items()} for k in ('seen', 'held_out') if r.get(k)})
            for r in rows]  # a kept row's tiers come back from JSON as strings
    for name in names:
        path = find_only(cfg, 'w_' + name)
        if path is None:
            continue
        info = train_info(path)
        base = [f'--ckpt={path}', f'--limit={cfg["n_world"]}', f'--data_path={cfg["world"]}']
        decoders = [('one token per step', [])] + ([('threshold 0.9', ['--threshold=0.9'])] if name in DIFFUSION else [])
        # a bidirectional model writes with Fast-dLLM's dual cache (block models' cache is exact)
        cache = ['--cache=dual'] if info['objective'] == 'mdm' else []
        for label, flags in decoders if name != 'varlen' else ():
            s = evaluate(cfg, '--task=world_write', *base, '--split=train,test', f'--gen_length={cfg["world_gen"]}',
                         *cache, *flags)
            rows.append(dict(run=name, task='write', decoder=label, iters=info['iters'], val_bpb=info['log_val_bpb'],
                             seen=cells(s, 'train'), held_out=cells(s, 'test'), seen_all=s['pass_at_1'].get('train'),
                             held_out_all=s['pass_at_1'].get('test'), tokens_per_forward=s['tokens_per_forward'],
                             seconds=s['seconds']))
        fills = [('one token per step', [])] + [('prefix only', ['--infill_mode=prefix'])] * (name == 'ar_fim') + \
            [(f'canvas {c} (no length)', ['--variable_length', f'--canvas={c}', '--max_hole=64']) for c in CANVASES
             if name == 'varlen']
        for label, flags in fills:
            s = evaluate(cfg, '--task=world_infill', *base, '--split=test', *flags)
            rows.append(dict(run=name, task='infill', decoder=label, iters=info['iters'], held_out=cells(s, 'test'),
                             held_out_all=s['pass_at_1'].get('test'), tokens_per_forward=s['tokens_per_forward'],
                             seconds=s['seconds']))
    rows.sort(key=lambda r: ARMS.index(r['run']))  # stable: --only's rows take their run's place
    flat = [dict(r, **{f'seen t{t}': (r.get('seen') or {}).get(t) for t in TIERS},
                 **{f'held-out t{t}': r['held_out'].get(t) for t in TIERS}) for r in rows]
    markdown(flat, ['run', 'task', 'decoder', *[f'seen t{t}' for t in TIERS], *[f'held-out t{t}' for t in TIERS],
                    'tokens_per_forward', 'seconds'])

    def plot(axes):  # held-out write pass@1 per tier (one token per step), and held-out infill pass@1 per tier
        for ax, task in zip(axes, ('write', 'infill')):
            part = [r for r in rows if r['task'] == task and r['decoder'] != 'threshold 0.9']
            for k, r in enumerate(part):
                ax.bar([t + (k - len(part) / 2) * 0.8 / len(part) for t in TIERS],
                       [100 * (r['held_out'][t] or 0) for t in TIERS], 0.8 / len(part),
                       label=r['run'] + ('' if r['decoder'] == 'one token per step' else f" ({r['decoder']})"))
            ax.set_xticks(TIERS, [f'tier {t}' for t in TIERS]), ax.set_ylim(0, 100), ax.legend(fontsize=6)
            ax.set_ylabel(f'{task} pass@1, held-out compositions (%)')
    save(cfg, 'world', dict(rows=rows, n_per_tier=cfg['n_world'], gen_length=cfg['world_gen'], world=cfg['world']),
         plot, panels=2)


# -----------------------------------------------------------------------------
# (i) parallel decoding on the world: pass@1 against tokens per forward, AUP, wall clock against AR


def table_parallel(cfg):
    """Held-out write tasks (--n_parallel per tier, test split) decoded by every rule of experiments/parallel.py,
    judged by their asserts in the sandbox, for the mdm-type and the block-type diffusion arm, beside the AR arm
    with its KV cache on the same prompts (batch 1 and batch 8, timings alternated, --rounds rounds)."""
    import torch
    from evals.execution import run_programs
    from evals.tasks import cut_completion, keep_definitions
    from evals.world import load_tasks
    from experiments.common import find_run
    from experiments.parallel import measure_parallel, plot_parallel
    from lib.runtime import load_model
    recs = load_tasks(cfg['world'], 'write', ['test'], {1, 2, 3, 4}, cfg['n_parallel'])
    ar_path = find_run(cfg, 'w_ar')
    ar = load_model(ar_path, 'cpu', torch.float32)[0] if ar_path else None
    result = {}
    for name, common in (('adapt', dict(block_length=32)), ('adapt_block', {})):
        path = find_run(cfg, 'w_' + name)
        if path is None:
            continue
        model, tok = load_model(path, 'cpu', torch.float32)
        prompts = [[tok.eos_id] + tok.encode(r['prompt']) for r in recs]

        def judge(i, tokens):
            code = keep_definitions(recs[i]['prompt'] + cut_completion(tok.decode(
                [t for t in tokens if t not in (tok.eos_id, tok.pad_id)]), 'completion'))
            return run_programs([code + '\n' + recs[i]['tests']], desc=None)[0] == 'passed'
        result[name] = measure_parallel(model, prompts, judge, ar_model=ar, gen_length=cfg['world_gen'], batch=8,
                                        rounds=cfg['rounds'], eos_id=tok.eos_id, pad_id=tok.pad_id, **common)
        markdown(result[name]['rows'], ['rule', 'pass_at_1', 'tokens_per_forward', 'seconds_b1', 'speedup_vs_ar_b1',
                                        'seconds_batch', 'speedup_vs_ar_batch', 'batch_equal'])
        print(f"{name}: AUP {result[name]['aup']:.1f}", result[name]['aup_by_family'])
    first = next(iter(result.values()), None)
    save(cfg, 'world_parallel', dict(runs=result, n_per_tier=cfg['n_parallel'], gen_length=cfg['world_gen']),
         plot_parallel(first) if first else None, panels=2)
