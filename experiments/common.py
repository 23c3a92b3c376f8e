"""
What the tables of experiments/ share: the toy runs (RUNS), finding or training them, reading their
checkpoints and logs, running eval.py's code in-process, and writing a table's results (atomically, never
over a larger table); the val windows and the suffix probe (fimprobe_rows) that the fimprobe and adapt
tables both measure. It imports no table: experiments/run.py and the table modules import it.
"""
import json
import math
import os
import subprocess
import sys

from lib.cli import UserError
from data.common import write_atomic, write_json
from lib.runtime import load_checkpoint, read_log

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
    # the small world (data/pyworld): 2,500 iterations x 16 x 256 byte tokens each (experiments/world.py)
    'w_ar': ('out-world-ar', ['config/world_ar.py']),
    'w_ar_fim': ('out-world-ar-fim', ['config/world_ar_fim.py']),
    'w_mdm': ('out-world', ['config/world.py']),
    'w_block': ('out-world-block', ['config/world_block.py']),
    'w_ar2000': ('out-world-ar2000', ['config/world_ar.py', '--max_iters=2000', '--out_dir=out-world-ar2000']),
    'w_adapt': ('out-world-adapt', ['config/world_adapt.py']),
    'w_adapt_block': ('out-world-adapt-block', ['config/world_adapt_block.py']),
    'w_edit': ('out-world-edit', ['config/world_edit.py']),
    'w_varlen': ('out-world-varlen', ['config/world_varlen.py']),
    'w_adapt_block_wsd': ('out-world-adapt-block-wsd', ['config/world_adapt_block_wsd.py']),
}


# -----------------------------------------------------------------------------
# the runs: checkpoints, logs, training curves


def read_checkpoint(path):
    """A run's ckpt.pt (runtime.load_checkpoint: a damaged file is one error line), with its iteration and config."""
    ck = load_checkpoint(os.path.join(path, 'ckpt.pt'), mmap=True)
    tc = ck.get('train_config')
    if not isinstance(ck.get('iter_num'), int) or not isinstance(tc, dict) or not isinstance(tc.get('max_iters'), int):
        raise UserError(f"{path}/ckpt.pt has no iter_num / train_config; pass a train.py out_dir under --runs")
    return ck


def find_run(cfg, name):
    """The out_dir of a finished run (ckpt.pt at its last iteration), else None (trained first with --train)."""
    out, args = RUNS[name]
    for root in cfg['runs'].split(','):
        path = os.path.join(root, out)
        log = os.path.join(path, 'log.jsonl')
        if os.path.isfile(os.path.join(path, 'ckpt.pt')) and not os.path.isfile(log):
            raise UserError(f"{name}: {path} holds a ckpt.pt but no log.jsonl (the tables read its curve); restore the "
                            f"log, retrain the run, or move it away")
        if os.path.isfile(os.path.join(path, 'ckpt.pt')):
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


def tokens_to_reach(curve, target):
    """The first training-token count at which a (tokens, bpb) curve reaches target (linear interpolation)."""
    for (t0, v0), (t1, v1) in zip(curve, curve[1:]):
        if v1 <= target <= v0:
            return t0 + (t1 - t0) * (v0 - target) / max(v0 - v1, 1e-12)
    return curve[0][0] if curve and curve[0][1] <= target else None


def train_info(path):
    """A run's iterations, objective, training and forward tokens, and last logged val bits/byte."""
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


# -----------------------------------------------------------------------------
# evaluating and writing a table


def evaluate(cfg, *args):
    from evals import evaluation
    return evaluation.main([f'--threads={cfg["threads"]}', *args])


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


# -----------------------------------------------------------------------------
# val windows and the suffix probe (the fimprobe and adapt tables)


def val_data(path):
    """(model, tokenizer, meta, val tokens) of a run."""
    import torch
    from data.common import load_meta, load_tokens
    from lib.runtime import load_model
    from evals.tasks import dataset_dir
    model, tok = load_model(path, 'cpu', torch.float32)
    data_dir = dataset_dir(dict(data_path=''), model.train_config)
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
    from lib.fim import fim_document
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
