"""
What adapting a trained AR model buys a diffusion coder (CoDA, Dream, Stable-DiffCoder, Fast-dLLM v2), at
equal total compute: every arm spends the toy budget of 2,500 iterations of 32 x 128 tokens, counted in
forward tokens with the AR iterations of its source included (block runs take batch 16: their [x_t ; x_0]
layout reads each token twice).

  python -m experiments.run adapt --runs=DIR     # adapt.json/png, adapt_curve.json/png, shift.json/png

The arms (train.py commands in ARMS; --train trains the missing ones):
  ar                  AR 2,500                     mdm                diffusion from scratch 2,500
  ar_fim              AR + FIM 2,500               ar2000             AR 2,000, the source of every adapted arm
  adapt_mdm           + mdm 500, logit shift       adapt_mdm_noshift  + mdm 500, no shift
  adapt_mdm_anneal    + mdm 500, shift, attention annealed over 100 steps (DiffuLLaMA)
  adapt_block4        + block-4 500 x 16 x (2 x 128), shift           adapt_block4_noshift  the same, no shift
  adapt_mdm_lr3e-4, adapt_mdm_lr3e-3   the lr sweep around adapt_mdm's 1e-3
  adapt_curve         + mdm 1,000 (its own schedule), val every 50: the adaptation curve
"""
import json
import math
import os
import time

from lib.cli import UserError
from experiments.common import (RUNS, evaluate, find_run, fimprobe_rows, left_to_right_nats, markdown, pick, read_checkpoint,
                                read_log, save, tokens_to_reach, train_info, val_windows)

ADAPT = ['config/toy_adapt.py', '--init_from=out-toy-ar2000']
ARMS = {  # name: (out_dir, train.py args)
    'ar2000': ('out-toy-ar2000', ['config/toy_ar.py', '--max_iters=2000', '--out_dir=out-toy-ar2000']),
    'adapt_mdm': ('out-toy-adapt', ADAPT + ['--out_dir=out-toy-adapt']),
    'adapt_mdm_noshift': ('out-toy-adapt-noshift', ADAPT + ['--shift_logits=false', '--out_dir=out-toy-adapt-noshift']),
    'adapt_mdm_anneal': ('out-toy-adapt-anneal', ADAPT + ['--attn_anneal_iters=100', '--out_dir=out-toy-adapt-anneal']),
    'adapt_block4': ('out-toy-adapt-block', ['config/toy_adapt_block.py', '--init_from=out-toy-ar2000',
                                             '--out_dir=out-toy-adapt-block']),
    'adapt_block4_noshift': ('out-toy-adapt-block-noshift', ['config/toy_adapt_block.py', '--init_from=out-toy-ar2000',
                                                             '--shift_logits=false', '--out_dir=out-toy-adapt-block-noshift']),
    'adapt_mdm_lr3e-4': ('out-toy-adapt-lr3e-4', ADAPT + ['--lr=3e-4', '--min_lr=3e-5', '--out_dir=out-toy-adapt-lr3e-4']),
    'adapt_mdm_lr3e-3': ('out-toy-adapt-lr3e-3', ADAPT + ['--lr=3e-3', '--min_lr=3e-4', '--out_dir=out-toy-adapt-lr3e-3']),
    'adapt_curve': ('out-toy-adapt-curve', ADAPT + ['--max_iters=1000', '--out_dir=out-toy-adapt-curve']),
}
RUNS.update(ARMS)  # find_run knows them
TABLE = ('ar', 'ar_fim', 'mdm', 'adapt_mdm', 'adapt_mdm_noshift', 'adapt_mdm_anneal', 'adapt_block4', 'adapt_block4_noshift')
SCRATCH_MDM_BPB = 2.91  # the from-scratch mdm run's val ELBO at 2,500 iterations (README, curves.json)


# -----------------------------------------------------------------------------
# per-arm measurements

def total_forward_tokens(path):
    """The run's forward tokens plus those of the run it was initialised from (AR iterations included)."""
    info = train_info(path)
    src = json_ckpt(path)['train_config']['init_from']
    if src not in ('scratch', 'resume') and os.path.isfile(os.path.join(src, 'ckpt.pt')):
        return info['forward_tokens'] + total_forward_tokens(src)
    return info['forward_tokens']


def json_ckpt(path):  # a damaged ckpt.pt is one error line (run.read_checkpoint)
    return read_checkpoint(path)


def likelihoods(path, n_windows=64, samples=8):
    """(val ELBO, exact left-to-right NLL) in bits/byte over n_windows val windows of the training length. AR:
    both are its exact NLL. Diffusion: the ELBO averages over unmasking orders; the left-to-right NLL is one
    order's exact likelihood (experiments/common.py left_to_right_nats), comparable with AR's."""
    import torch
    from diffusion import elbo
    model, _, docs = val_windows(path, n_windows, model_len(path))
    x0 = torch.tensor(docs)
    with torch.no_grad():
        e = float(elbo(model, x0, n_samples=samples, generator=torch.Generator().manual_seed(0)).mean()) / math.log(2)
        if model.config.attention == 'causal':
            return e, e
        n = x0.numel() - len(docs)  # positions 1..L-1, as AR predicts them
        return e, left_to_right_nats(model, x0, x0, 1, x0.size(1)) / n / math.log(2)


MASK_RATES = (0.05, 0.25, 0.5, 0.75, 0.95)


def loss_by_mask_rate(path, n_windows=64):
    """Where does a diffusion model lose its bits? Mean CE (bits per masked byte) of val windows masked
    i.i.d. at each fixed rate t. The ELBO integrates these (weighted 1/t over t ~ U(0, 1)); an AR source
    helps most at small t, where almost all the context is visible, as it was in AR training."""
    import torch
    import torch.nn.functional as F
    from diffusion import forward_process, mask_id_of, predict
    model, _, docs = val_windows(path, n_windows, model_len(path))
    x0, out = torch.tensor(docs), {}
    if model.config.attention != 'bidirectional':
        return {}
    with torch.no_grad():
        for t in MASK_RATES:
            xt, masked, _ = forward_process(x0, mask_id_of(model), t=t, generator=torch.Generator().manual_seed(0))
            ce = F.cross_entropy(predict(model, xt)[masked], x0[masked])
            out[f'ce_bits_t{t}'] = float(ce) / math.log(2)
    return out


def model_len(path):
    return json_ckpt(path)['train_config']['seq_len']


def decode_speed(path, ar_path, n_prompts=8, P=64, gen=64, rounds=3):
    """Continuation tokens/s of the arm (threshold 0.9, Fast-dLLM; AR models: next-token with the KV cache)
    against the AR run with its KV cache, alternated in this process; the median ratio of the rounds."""
    import torch
    from lib.runtime import load_model
    from sample import generate, generate_ar
    model, _, docs = val_windows(path, n_prompts, P)
    ar = load_model(ar_path, 'cpu', torch.float32)[0]
    prompts = torch.tensor(docs)

    def arm():
        if model.config.attention == 'causal':
            return generate_ar(model, prompts, gen_length=gen, cache='prefix')[1]
        cache = 'prefix' if model.config.attention == 'block' else 'none'
        return generate(model, prompts, gen_length=gen, block_length=4 if cache == 'prefix' else 32, threshold=0.9,
                        cache=cache)[1]
    ratios, tps = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        info = arm()
        t1 = time.perf_counter()
        generate_ar(ar, prompts, gen_length=gen, cache='prefix')
        t2 = time.perf_counter()
        ratios.append((t2 - t1) / (t1 - t0))
        tps.append(gen * len(docs) / (t1 - t0))
    return dict(decode_tokens_per_s=sorted(tps)[rounds // 2], decode_speed_vs_ar_cache=sorted(ratios)[rounds // 2],
                decode_tokens_per_forward=gen / max(1, info['nfe']))


def infill_rows(cfg, name, path):
    """The 100 stdlib holes and the HumanEval single-line holes (oracle length), plus threshold 0.9 on the stdlib
    holes for the diffusion arms: tokens per forward against one-token-per-step quality."""
    rows, causal = [], json_ckpt(path)['model_config']['attention'] == 'causal'
    fim = json_ckpt(path)['train_config'].get('fim_rate', 0) > 0
    modes = ['fim', 'prefix'] if fim else ['prefix'] if causal else ['diffusion']
    for mode in modes:
        for task, n in (('infill', cfg['n_infill']), ('humaneval_infill', cfg['n_he'])):
            s = evaluate(cfg, f'--task={task}', f'--ckpt={path}', f'--limit={n}', f'--infill_mode={mode}')
            rows.append(dict(run=name, task=task, **pick(s, 'tasks', 'mode', 'exact_match', 'edit_similarity',
                                                         'parse_rate', 'cond_bpb', 'pass@1', 'tokens_per_forward')))
    if not causal:
        s = evaluate(cfg, '--task=infill', f'--ckpt={path}', f'--limit={cfg["n_infill"]}', '--threshold=0.9',
                     '--cond_samples=0')
        rows.append(dict(run=name, task='infill', setting='threshold 0.9',
                         **pick(s, 'tasks', 'mode', 'exact_match', 'edit_similarity', 'parse_rate', 'tokens_per_forward')))
    return rows


def arm_row(cfg, name, path, ar_path):
    info, ck = train_info(path), json_ckpt(path)
    elbo_bpb, l2r_bpb = likelihoods(path)
    return dict(run=name, objective=info['objective'], iters=info['iters'], init_from=os.path.basename(
        ck['train_config']['init_from']), shift_logits=ck['model_config']['shift_logits'],
        total_forward_tokens=total_forward_tokens(path), log_val_bpb=info['log_val_bpb'], val_elbo_bpb=elbo_bpb,
        val_l2r_bpb=l2r_bpb, **loss_by_mask_rate(path), **decode_speed(path, ar_path))


def measured(cfg, name, path, ar_path):
    """Every measurement of one arm, kept beside its checkpoint (<run>/eval_adapt.json) for the checkpoint
    and task counts it was made with: arms are measured as they finish, and a re-run reuses them."""
    st = os.stat(os.path.join(path, 'ckpt.pt'))
    key = dict(ckpt_mtime=st.st_mtime, ckpt_size=st.st_size, n_infill=cfg['n_infill'], n_he=cfg['n_he'],
               ar=os.path.realpath(ar_path))
    cache = os.path.join(path, 'eval_adapt.json')
    if os.path.isfile(cache):
        with open(cache) as f:
            old = json.load(f)
        if old.get('key') == key:
            print(f"{name}: measurements from {cache}")
            return old
    out = dict(key=key, arm=arm_row(cfg, name, path, ar_path), infill=infill_rows(cfg, name, path),
               fimprobe=fimprobe_rows(name, path))
    with open(cache + '.tmp', 'w') as f:
        json.dump(out, f, indent=1)
    os.replace(cache + '.tmp', cache)
    return out


# -----------------------------------------------------------------------------
# the tables

def table_adapt(cfg):
    paths = {n: find_run(cfg, n) for n in (*TABLE, 'ar2000', 'adapt_curve', 'adapt_mdm_lr3e-4', 'adapt_mdm_lr3e-3')}
    if paths['ar'] is None or paths['adapt_mdm'] is None:
        raise UserError(f"adapt: needs at least the ar and adapt_mdm runs under --runs={cfg['runs']}; nothing written "
                        f"(train them with the commands above, or pass --train)")
    done = {n: measured(cfg, n, paths[n], paths['ar']) for n in TABLE if paths[n]}
    arms = [d['arm'] for d in done.values()]
    infill = [r for d in done.values() for r in d['infill']]
    probe = [r for d in done.values() for r in d['fimprobe']]
    markdown(arms, ['run', 'iters', 'init_from', 'shift_logits', 'total_forward_tokens', 'val_elbo_bpb', 'val_l2r_bpb',
                    'log_val_bpb', 'decode_tokens_per_forward', 'decode_tokens_per_s', 'decode_speed_vs_ar_cache'])
    markdown([r for r in arms if 'ce_bits_t0.5' in r], ['run', *(f'ce_bits_t{t}' for t in MASK_RATES)])
    markdown(infill, ['run', 'task', 'mode', 'setting', 'tasks', 'exact_match', 'edit_similarity', 'cond_bpb', 'pass@1',
                      'parse_rate', 'tokens_per_forward'])
    markdown(probe, ['run', 'cut', 'with_suffix_bpb', 'without_suffix_bpb', 'l2r_with_suffix_bpb'])
    sweep = lr_sweep(paths)
    goals = check_goals(arms, infill, paths, sweep)
    for g in goals:
        print(f"{'MET   ' if g['met'] else 'MISSED'} {g['goal']}: {g['measured']}")

    def plot(axes):  # left: val bits/byte (ELBO and left-to-right NLL); right: stdlib infill edit similarity
        ax, ax2 = axes
        x = range(len(arms))
        ax.bar([i - 0.2 for i in x], [r['val_elbo_bpb'] for r in arms], 0.4, label='val ELBO (AR: NLL)')
        ax.bar([i + 0.2 for i in x], [r['val_l2r_bpb'] for r in arms], 0.4, label='left-to-right NLL')
        ax.set_xticks(list(x), [r['run'] for r in arms], rotation=45, fontsize=7, ha='right')
        ax.set_ylabel('val bits/byte at equal total compute'), ax.legend(fontsize=7)
        mine = [r for r in infill if r['task'] == 'infill' and 'setting' not in r]
        ax2.bar(range(len(mine)), [100 * r['edit_similarity'] for r in mine])
        ax2.set_xticks(range(len(mine)), [f"{r['run']}/{r['mode']}" for r in mine], rotation=45, fontsize=7, ha='right')
        ax2.set_ylabel('stdlib infill edit similarity (%)')
    save(cfg, 'adapt', dict(arms=arms, infill=infill, fimprobe=probe, goals=goals, n_infill=cfg['n_infill'],
                            n_he=cfg['n_he']), plot, panels=2)
    table_curve(cfg, paths, arms, sweep)
    table_shift(cfg, arms, infill)


def curve_of(path):
    """[(iteration, val bits/byte)] of a run's log, with iteration 0 = its source model's val ELBO."""
    return [(r['iter'], r['val_bpb']) for r in read_log(os.path.join(path, 'log.jsonl')) if 'val_bpb' in r]


def lr_sweep(paths):
    """Val bits/byte (training log) of adapt_mdm at three learning rates."""
    return [dict(run=n, lr=json_ckpt(paths[n])['train_config']['lr'], log_val_bpb=train_info(paths[n])['log_val_bpb'])
            for n in ('adapt_mdm_lr3e-4', 'adapt_mdm', 'adapt_mdm_lr3e-3') if paths.get(n)]


def table_curve(cfg, paths, arms, sweep):
    """Val bits/byte against adaptation iterations (0 to 1,000), beside from-scratch mdm against its own
    iterations; the lr sweep at 500 adaptation iterations; the loss at each mask rate."""
    curves = {n: curve_of(paths[n]) for n in ('adapt_curve', 'adapt_mdm', 'mdm') if paths.get(n)}
    if paths.get('adapt_curve'):  # iteration 0: the AR source read as a shifted bidirectional model
        curves['adapt_curve'].insert(0, (0, source_elbo(paths['adapt_curve'])))
    reach = {n: tokens_to_reach(c, SCRATCH_MDM_BPB) for n, c in curves.items()}
    markdown(sweep, ['run', 'lr', 'log_val_bpb'])
    print(f'diffusion iterations to reach {SCRATCH_MDM_BPB} bits/byte:', reach)

    rates = [r for r in arms if 'ce_bits_t0.5' in r]

    def plot(axes):
        ax, ax2 = axes
        for n, c in curves.items():
            ax.plot([i for i, _ in c], [v for _, v in c], 'o-', ms=3, label=n)
        ax.axhline(SCRATCH_MDM_BPB, ls='--', c='gray', label='from scratch at 2,500')
        ax.set_xscale('symlog', linthresh=50), ax.set_xlim(left=0)
        ax.set_xlabel('diffusion iterations (adapted: after AR 2,000)')
        ax.set_ylabel('val ELBO bits/byte'), ax.legend(fontsize=7)
        for r in rates:
            ax2.plot(MASK_RATES, [r[f'ce_bits_t{t}'] for t in MASK_RATES], 'o-', ms=3, label=r['run'])
        ax2.set_xlabel('mask rate t'), ax2.set_ylabel('bits per masked byte'), ax2.legend(fontsize=7)
    save(cfg, 'adapt_curve', dict(curves=curves, iterations_to_reach_scratch=reach, target_bpb=SCRATCH_MDM_BPB,
                                  lr_sweep=sweep, mask_rates=list(MASK_RATES),
                                  ce_by_mask_rate={r['run']: [r[f'ce_bits_t{t}'] for t in MASK_RATES] for r in rates}),
         plot, panels=2)


def source_elbo(path, n_windows=64, samples=8):
    """Val ELBO (bits/byte) of the run's source weights read as the run's model (adaptation at iteration 0)."""
    import torch
    from diffusion import elbo
    from model import ModelConfig, Transformer
    ck = json_ckpt(path)
    src = json_ckpt(ck['train_config']['init_from'])
    model = Transformer(ModelConfig(**ck['model_config'])).eval()
    model.load_state_dict(src['model'])
    _, _, docs = val_windows(path, n_windows, ck['train_config']['seq_len'])
    with torch.no_grad():
        return float(elbo(model, torch.tensor(docs), n_samples=samples,
                          generator=torch.Generator().manual_seed(0)).mean()) / math.log(2)


def table_shift(cfg, arms, infill):
    """The logit-shift ablation at equal tokens, under full (mdm) and block attention. No published
    head-to-head ablation of the shift exists (CoDA, Dream and Fast-dLLM v2 use it; LLaDA and dllm's
    Tiny-A2D do not)."""
    by = {r['run']: r for r in arms}
    stdlib = {r['run']: r for r in infill if r['task'] == 'infill' and 'setting' not in r}
    rows = [dict(attention=att, shift=s, run=n, val_elbo_bpb=by[n]['val_elbo_bpb'], val_l2r_bpb=by[n]['val_l2r_bpb'],
                 infill_edit_similarity=stdlib[n]['edit_similarity'], infill_cond_bpb=stdlib[n].get('cond_bpb'))
            for att, s, n in (('full', True, 'adapt_mdm'), ('full', False, 'adapt_mdm_noshift'),
                              ('block 4', True, 'adapt_block4'), ('block 4', False, 'adapt_block4_noshift'))
            if n in by and n in stdlib]
    markdown(rows, ['attention', 'shift', 'run', 'val_elbo_bpb', 'val_l2r_bpb', 'infill_edit_similarity', 'infill_cond_bpb'])

    def plot(ax):
        x = range(len(rows))
        ax.bar(x, [r['val_elbo_bpb'] for r in rows], color=['C0' if r['shift'] else 'C1' for r in rows])
        ax.set_xticks(list(x), [f"{r['attention']}\n{'shift' if r['shift'] else 'no shift'}" for r in rows])
        ax.set_ylabel('val ELBO bits/byte (AR 2,000 + 500 adaptation)')
    save(cfg, 'shift', dict(rows=rows), plot)


def check_goals(arms, infill, paths, sweep):
    """The goals of the adaptation experiment, each measured -> [{goal, measured, met}]."""
    by = {r['run']: r for r in arms}
    out = []
    if paths.get('adapt_curve'):
        it = tokens_to_reach([(0, source_elbo(paths['adapt_curve']))] + curve_of(paths['adapt_curve']), SCRATCH_MDM_BPB)
        out.append(dict(goal=f'adapted mdm reaches {SCRATCH_MDM_BPB} bits/byte in <= 250 iterations',
                        measured=f'{it:.0f} iterations' if it else 'not reached in 1,000', met=bool(it and it <= 250)))
    best = min((r for n, r in by.items() if n.startswith('adapt_mdm')), key=lambda r: r['val_elbo_bpb'])
    if 'mdm' in by:
        gain = by['mdm']['val_elbo_bpb'] - best['val_elbo_bpb']
        lr = min(sweep, key=lambda r: r['log_val_bpb']) if sweep else None  # the sweep: training-log figures
        log_gain = by['mdm']['log_val_bpb'] - lr['log_val_bpb'] if lr else gain
        out.append(dict(goal='best adapted mdm beats from-scratch mdm by >= 0.3 bits/byte at equal compute',
                        measured=f"{best['run']} {best['val_elbo_bpb']:.3f} vs {by['mdm']['val_elbo_bpb']:.3f} (ELBO here)"
                                 + (f"; lr sweep best {lr['run']} {lr['log_val_bpb']:.3f} vs {by['mdm']['log_val_bpb']:.3f}"
                                    f" (training logs)" if lr else ''),
                        met=max(gain, log_gain) >= 0.3))
    if 'adapt_block4' in by:
        ratio = by['adapt_block4']['val_elbo_bpb'] / by['ar']['val_elbo_bpb']
        out.append(dict(goal="adapted block-4 within 1.15x AR's val bits/byte", measured=f'{ratio:.2f}x', met=ratio <= 1.15))
    std = {(r['run'], r['mode']): r for r in infill if r['task'] == 'infill' and 'setting' not in r}
    ar = std.get(('ar', 'prefix'))
    for n in ('adapt_mdm', 'adapt_block4'):
        if (n, 'diffusion') in std and ar:
            d = std[(n, 'diffusion')]
            out.append(dict(goal=f'{n} beats AR prefix-only by >= 10 points of stdlib edit similarity and on the '
                            f"hole's bits/byte", measured=f"{100 * d['edit_similarity']:.1f}% vs {100 * ar['edit_similarity']:.1f}%,"
                            f" {d['cond_bpb']:.2f} vs {ar['cond_bpb']:.2f} bits/byte",
                            met=d['edit_similarity'] - ar['edit_similarity'] >= 0.10 and d['cond_bpb'] < ar['cond_bpb']))
        thr = [r for r in infill if r['run'] == n and r.get('setting') == 'threshold 0.9']
        if thr and (n, 'diffusion') in std:
            one = std[(n, 'diffusion')]
            out.append(dict(goal=f'{n}: threshold 0.9 commits >= 2 tokens per forward within 1 point of one token per step',
                            measured=f"{thr[0]['tokens_per_forward']:.2f} tokens/forward, "
                                     f"{100 * thr[0]['edit_similarity']:.1f}% vs {100 * one['edit_similarity']:.1f}%",
                            met=thr[0]['tokens_per_forward'] >= 2 and one['edit_similarity'] - thr[0]['edit_similarity'] <= 0.01))
    return out
