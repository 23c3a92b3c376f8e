"""
What code diffusion buys, measured against honest baselines: one subcommand per table. Each reuses
the toy runs it finds (a train.py out_dir with ckpt.pt and log.jsonl under one of --runs), or trains a
missing one with --train (its train.py command is printed either way), and writes
experiments/results/<table>.json plus <table>.png (when matplotlib is installed).

  python experiments/run.py infill    # (a) diffusion vs AR+FIM vs AR prefix-only: infill metrics, pass@1
  python experiments/run.py samplers  # (a') the diffusion model's infilling under four decoders
  python experiments/run.py fimprobe  # (a'') do the models use the suffix? the middle's bits with it and without
  python experiments/run.py blocks    # (b) val bits/byte: AR, block 4/16/64, full bidirectional
  python experiments/run.py frontier  # (c) tokens per forward vs infill quality (steps, threshold, factor)
  python experiments/run.py masking   # (d) CoDA progressive masking none / pretrain / strong
  python experiments/run.py curves    # (e) val loss vs training tokens, diffusion vs AR
  python experiments/run.py varlen    # (g) infilling without the oracle length (DreamOn; experiments/table_varlen.py)
  python experiments/run.py adapt     # (f) AR -> diffusion adaptation at equal total compute (experiments/adapt.py)
  python experiments/run.py all --runs=/path/to/runs,. --n_infill=100 --n_he=1033
  python experiments/run.py blocks --logs_only   # refresh the log-based part while runs still train
  python experiments/run.py infill --only=mdm_long  # re-evaluate the named runs, keep the table's other rows (infill, frontier)

Every evaluation runs in this process on one thread (--threads), through eval.main, with the task
counts given on the command line (they are in each JSON).
"""
import json
import math
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from data.common import check_ranges, parse_args, run_cli, write_atomic, write_json  # noqa: E402
from model import UserError, load_checkpoint  # noqa: E402

# the toy runs (2500 iterations x 32 x 128 byte tokens, seed 1337); block runs take batch 16: their
# [x_t ; x_0] layout doubles the tokens per forward, so batch 16 costs the FLOPs of batch 32 elsewhere
RUNS = {
    'mdm': ('out-toy', []),
    'mdm_long': ('out-toy-long', ['config/toy_long.py']),  # 12,000 iterations: about one CPU hour
    'ar': ('out-toy-ar', ['config/toy_ar.py']),
    'ar_fim': ('out-toy-ar-fim', ['config/toy_ar_fim.py']),
    'block4': ('out-toy-block4', ['config/toy_block.py', '--block_size=4', '--batch_size=16', '--out_dir=out-toy-block4']),
    'block16': ('out-toy-block16', ['config/toy_block.py', '--block_size=16', '--batch_size=16', '--out_dir=out-toy-block16']),
    'block64': ('out-toy-block64', ['config/toy_block.py', '--block_size=64', '--batch_size=16', '--out_dir=out-toy-block64']),
    'pretrain': ('out-toy-pretrain', ['--masking=pretrain', '--out_dir=out-toy-pretrain']),
    'strong': ('out-toy-strong', ['--masking=custom', '--s1_prob=0.2', '--s3_prob=0.25', '--out_dir=out-toy-strong']),
    'varlen': ('out-toy-varlen', ['config/toy_varlen.py']),  # continues out-toy (mdm) with DreamOn's rows
}
DEFAULTS = dict(runs='.', train=False, partial=False, threads=1, n_infill=100, n_he=1033, n_frontier=50, eval_batches=10,
                hole_length=32, max_hole=64, sampler='', logs_only=False, only='', overwrite=False,
                out_dir=os.path.join(REPO, 'experiments', 'results'))
RANGES = dict(threads='[1, inf)', n_infill='[1, inf)', n_he='[1, inf)', n_frontier='[1, inf)', eval_batches='[1, inf)',
              hole_length='[0, inf)', max_hole='[1, inf)')


def read_checkpoint(path):
    """A run's ckpt.pt (model.load_checkpoint: a damaged file is one error line), with its iteration and config."""
    ck = load_checkpoint(os.path.join(path, 'ckpt.pt'), mmap=True)
    tc = ck.get('train_config')
    if not isinstance(ck.get('iter_num'), int) or not isinstance(tc, dict) or not isinstance(tc.get('max_iters'), int):
        raise UserError(f"{path}/ckpt.pt has no iter_num / train_config; pass a train.py out_dir under --runs")
    return ck


def read_log(path):
    """The records of a run's log.jsonl, each checked: a JSON object with an integer iter and numbers."""
    recs = []
    with open(path, encoding='utf-8', errors='replace') as f:
        for lineno, line in enumerate(f, 1):
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if not (isinstance(rec, dict) and isinstance(rec.get('iter'), int) and all(
                    isinstance(rec.get(k, 0.0), (int, float)) for k in ('loss', 'val_loss', 'val_bpb'))):
                raise UserError(f"{path} line {lineno} is not a train.py log record (JSON with iter, loss ...); "
                                f"the log is damaged: retrain the run, or remove it from --runs")
            recs.append(rec)
    return recs


def find_run(cfg, name):
    """The out_dir of a finished run (ckpt.pt at its last iteration), else None (trained first with --train)."""
    out, args = RUNS[name]
    for root in cfg['runs'].split(','):
        path = os.path.join(root, out)
        log = os.path.join(path, 'log.jsonl')
        if os.path.isfile(os.path.join(path, 'ckpt.pt')) and os.path.isfile(log):
            ck = read_checkpoint(path)
            if ck['iter_num'] >= ck['train_config']['max_iters'] or cfg['partial']:  # --partial: smoke tests only
                return path
            print(f"{name}: {path} is at iteration {ck['iter_num']} of {ck['train_config']['max_iters']}; skipped")
    cmd = [sys.executable, 'train.py', *args]
    if cfg['train']:
        print(f"{name}: training: {' '.join(cmd)}")
        subprocess.run(cmd, cwd=REPO, check=True, env=dict(os.environ, OMP_NUM_THREADS=str(cfg['threads'])))
        return os.path.join(REPO, out)
    print(f"{name}: no finished run; train it with `python {' '.join(cmd[1:])}` (or pass --train)")
    return None


def log_curve(cfg, name):
    """[(iteration, val bits/byte)] from a run's log.jsonl, finished or still training (or None)."""
    for root in cfg['runs'].split(','):
        log = os.path.join(root, RUNS[name][0], 'log.jsonl')
        if os.path.isfile(log):
            return [(r['iter'], r['val_bpb']) for r in read_log(log) if 'val_bpb' in r]
    return None


def at_common_iteration(cfg, names):
    """Val bits/byte of each run at the last evaluated iteration that every run has reached (runs still
    training included: a fair comparison at equal steps while the longer runs are unfinished)."""
    curves = {n: c for n in names if (c := log_curve(cfg, n))}
    if not curves:
        return None, {}
    common = min(c[-1][0] for c in curves.values())
    return common, {n: dict(c).get(common) for n, c in curves.items()}


def evaluate(cfg, *args):
    import eval as E
    return E.main([f'--threads={cfg["threads"]}', *args])


def save(cfg, name, result, plot=None, panels=1):
    """Write <name>.json and .png atomically; never an empty table, and never one smaller (fewer rows or runs)
    than the table already there unless --overwrite."""
    if not size(result):
        raise UserError(f"{name}: no finished run found under --runs={cfg['runs']}; nothing written "
                        f"(train the runs named above, or pass --train)")
    os.makedirs(cfg['out_dir'], exist_ok=True)
    path = os.path.join(cfg['out_dir'], f'{name}.json')
    old = size(published(path)) if os.path.isfile(path) else 0
    if size(result) < old and not cfg['overwrite']:
        raise UserError(f"{name}: {path} holds {old} rows/runs, this one {size(result)}; nothing written (find the "
                        f"missing runs with --runs, or pass --overwrite to replace the table)")
    write_json(path, result)
    print(f"wrote {path}")
    if plot is None:
        return
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:  # optional, as train.py's loss plot
        return
    fig, ax = plt.subplots(1, panels, figsize=(6 * panels, 4))
    plot(ax)
    fig.tight_layout()
    write_atomic(os.path.join(cfg['out_dir'], f'{name}.png'), lambda f: fig.savefig(f, dpi=100, format='png'), 'wb')
    plt.close(fig)


def markdown(rows, cols):
    """Print rows as a markdown table (the README's tables are pasted from this)."""
    fmt = lambda v: f'{v:.3f}' if isinstance(v, float) else '' if v is None else str(v)
    print('| ' + ' | '.join(cols) + ' |\n|' + '---|' * len(cols))
    for r in rows:
        print('| ' + ' | '.join(fmt(r.get(c, '')) for c in cols) + ' |')


def pick(summary, *keys):
    return {k: summary[k] for k in keys if k in summary}


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


def val_data(path):
    """(model, tokenizer, meta, val tokens) of a run."""
    import torch
    from data.common import load_meta, load_tokens
    from sample import load_model
    import eval as E
    model, tok = load_model(path, 'cpu', torch.float32)
    data_dir = E.dataset_dir(dict(data_path=''), model.train_config)
    meta = load_meta(data_dir)
    return model, tok, meta, load_tokens(data_dir, 'val', meta)


def val_windows(path, n_windows, L):
    """(model, tokenizer, windows): a run's model and n_windows evenly spaced val windows of L tokens that
    hold no EOS (one document each)."""
    import numpy as np
    model, tok, meta, data = val_data(path)
    docs = [d for s in np.linspace(0, len(data) - L, n_windows).astype(np.int64)
            if meta['eos_id'] not in (d := data[s:s + L].astype(np.int64).tolist())]
    return model, tok, docs


CUTS = ((40, 80), (50, 70), (58, 62))  # the middle [i, j) of each window: 40, 20 and 4 tokens


def left_to_right_nats(model, x, x0, i, j):
    """Exact NLL (nats, summed over windows) of x0[:, i:j] under a diffusion model unmasking the span one token
    at a time from the left: sum_k -log p(x0_k | x outside the span, x0[i:k], masks at [k, j)). A proper
    likelihood (one fixed order of the model's factorisations), so it compares with AR's NLL; the ELBO
    averages over all orders and bounds it from above."""
    import torch.nn.functional as F
    from diffusion import mask_id_of, predict
    total = 0.0
    for k in range(i, j):
        xt = x.clone()
        xt[:, k:j] = mask_id_of(model)
        total += float(F.cross_entropy(predict(model, xt)[:, k], x0[:, k], reduction='sum'))
    return total


def fimprobe_rows(name, path, n_windows=64, L=120, samples=8):
    """Does a model use the suffix? Bits/byte of the same middle tokens of val windows (L tokens, cut at
    fixed positions i < j), with the suffix and without it. AR + FIM: PSM order (the suffix first) against
    left to right (exact NLLs). Diffusion: the span's ELBO with the suffix visible against the suffix
    masked (the model knows only that L - j tokens follow), from the same masks (one seed), and the exact
    NLL of its left-to-right order (left_to_right_nats)."""
    import torch
    from diffusion import elbo, mask_id_of, token_ce
    from fim import fim_document
    rows = []
    model, tok, docs = val_windows(path, n_windows, L)
    fim = model.train_config.get('fim_rate', 0) > 0
    with torch.no_grad():
        for i, j in CUTS:
            n = len(docs) * (j - i) * math.log(2)
            if model.config.attention == 'causal':  # all windows in one batch; plain AR cannot read the suffix
                y = torch.tensor(docs)
                plain = float(token_ce(model(y)[:, :-1], y[:, 1:])[:, i - 1:j - 1].sum())
                psm = None
                if fim:  # PSM: the middle comes last
                    x = torch.tensor([fim_document(doc, i, j, tok.fim_ids) for doc in docs])
                    psm = float(token_ce(model(x)[:, :-1], x[:, 1:])[:, -(j - i):].sum()) / n
                rows.append(dict(run=name, cut=[i, j], windows=len(docs), with_suffix_bpb=psm,
                                 without_suffix_bpb=plain / n, how='PSM vs left to right, exact NLL'))
                continue
            x0 = torch.tensor(docs)
            maskable = torch.zeros_like(x0, dtype=torch.bool)
            maskable[:, i:j] = True
            hidden = x0.clone()
            hidden[:, j:] = mask_id_of(model)  # the suffix as masks: its length known, its text not
            both, pre = (float(elbo(model, x, n_samples=samples, maskable=maskable,
                                    generator=torch.Generator().manual_seed(0)).sum()) * (j - i) / n
                         for x in (x0, hidden))
            l2r_both, l2r_pre = (left_to_right_nats(model, x, x0, i, j) / n for x in (x0, hidden))
            rows.append(dict(run=name, cut=[i, j], windows=len(docs), with_suffix_bpb=both, without_suffix_bpb=pre,
                             l2r_with_suffix_bpb=l2r_both, l2r_without_suffix_bpb=l2r_pre,
                             how='ELBO (and left-to-right NLL), suffix visible vs masked'))
    return rows


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


def train_info(path):
    ck = read_checkpoint(path)
    tc = ck['train_config']
    recs = read_log(os.path.join(path, 'log.jsonl'))
    val = [r for r in recs if 'val_bpb' in r]
    tokens = ck['iter_num'] * tc['batch_size'] * tc['seq_len'] * tc['grad_accum']
    # forward tokens per step: the block objective runs [x_t ; x_0], twice the sequence
    fwd = tokens * (2 if tc['objective'] == 'block' else 1)
    return dict(iters=ck['iter_num'], objective=tc['objective'], block_size=tc.get('block_size'), train_tokens=tokens,
                forward_tokens=fwd,
                log_val_bpb=val[-1]['val_bpb'] if val else None)


def only_runs(cfg, table, names):
    """--only=a,b: (the runs to evaluate, the table's previous rows of the other runs); else (names, [])."""
    if not cfg['only']:
        return list(names), []
    only = cfg['only'].split(',')
    if unknown := set(only) - set(names):
        raise UserError(f"--only: unknown run {', '.join(sorted(unknown))}; the {table} table has {', '.join(names)}")
    return [n for n in names if n in only], [r for r in previous_rows(cfg, table) if r['run'] not in only]


def find_only(cfg, name):
    """find_run; with --only, a named run that is missing stops the table (its old rows are never dropped)."""
    path = find_run(cfg, name)
    if path is None and cfg['only']:
        raise UserError(f"--only={name}: no finished run under --runs={cfg['runs']}; nothing written")
    return path


def previous_rows(cfg, name):
    """--logs_only: keep the evaluated rows of the last run of this table, refresh only the training-log part."""
    path = os.path.join(cfg['out_dir'], f'{name}.json')
    return published(path).get('rows', []) if os.path.isfile(path) else []


def published(path):
    """A results table written by save(), or a UserError naming the file."""
    try:
        with open(path, encoding='utf-8') as f:
            table = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not a results table ({str(e)[:60]}); restore it (git checkout) or move it away") from None
    if not isinstance(table, dict) or not isinstance(table.get('rows', []), list):
        raise UserError(f"{path} is not a results table (no list of rows); restore it (git checkout) or move it away")
    return table


def size(table):
    """How much a table holds: the entries of its lists and dicts (rows, runs of its curves, arms ...)."""
    return sum(len(v) for v in table.values() if isinstance(v, (list, dict)))


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
    from data.common import parse_args
    from sampling import generate
    import eval as E
    ecfg = parse_args(args, E.DEFAULTS)
    kw = dict(E.sampler_kwargs(ecfg, model), gen_length=gen)
    kw['steps'] = math.ceil(gen / ecfg['steps_div']) if ecfg['steps_div'] else kw['steps']
    out, info = generate(model, torch.tensor(prompts), **kw, generator=torch.Generator().manual_seed(0))
    return out[:, len(prompts[0]):], info


FRONTIER_RUNS = ('mdm', 'mdm_long', 'block4', 'block16')


def table_frontier(cfg, n_prompts=32, P=64, gen=64):
    import torch
    from sample import load_model
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


def tokens_to_reach(curve, target):
    """The first training-token count at which a (tokens, bpb) curve reaches target (linear interpolation)."""
    for (t0, v0), (t1, v1) in zip(curve, curve[1:]):
        if v1 <= target <= v0:
            return t0 + (t1 - t0) * (v0 - target) / max(v0 - v1, 1e-12)
    return curve[0][0] if curve and curve[0][1] <= target else None


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


def table_varlen(cfg):
    import table_varlen  # experiments/table_varlen.py
    table_varlen.table(cfg, sys.modules[__name__])


def table_adapt(cfg):  # experiments/adapt.py: AR -> diffusion adaptation at equal total compute
    from adapt import table_adapt as table
    table(cfg)


TABLES = dict(infill=table_infill, samplers=table_samplers, fimprobe=table_fimprobe, blocks=table_blocks, frontier=table_frontier, masking=table_masking,
              curves=table_curves, adapt=table_adapt, varlen=table_varlen)


def main(argv):
    if not argv or argv[0] not in (*TABLES, 'all'):
        raise UserError(f"name a table: {', '.join(TABLES)} or all (python experiments/run.py infill --runs=DIR)")
    cfg = parse_args(argv[1:], DEFAULTS, __doc__)
    check_ranges(cfg, RANGES, DEFAULTS)
    import torch
    torch.set_num_threads(cfg['threads'])
    os.chdir(REPO)  # eval.py resolves dataset names under data/
    for name in (TABLES if argv[0] == 'all' else [argv[0]]):
        TABLES[name](cfg)


if __name__ == '__main__':
    run_cli(main)
