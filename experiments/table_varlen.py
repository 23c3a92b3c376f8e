"""
(f) Infilling without the oracle length: the DreamOn-trained model (config/toy_varlen.py) fills
each hole from a canvas of 4, 16 or 64 masks that grows and shrinks up to --max_hole, beside the
same model given the oracle length and a fixed canvas of 32, and the AR + FIM and AR prefix-only
baselines (which end their middle themselves). Both hole sets: the stdlib infill holes (--n_infill)
and the HumanEval single-line holes (--n_he). Metrics from eval.py: exact match, edit similarity,
parse rate (stdlib), pass@1 (HumanEval), the median absolute error of the hole's length in tokens,
and tokens per forward.

  python -m experiments.run varlen --runs=DIR --n_infill=100 --n_he=1033
  python -m experiments.run varlen --runs=DIR --only=ar_fim    # add a run, keep the other rows
  python -m experiments.run varlen --runs=DIR --sampler='--temperature=0.2 --top_p=0.9'   # DreamOn's decoder
Canvases above --max_hole are left out.
"""
from experiments.common import evaluate, find_only, markdown, only_runs, pick, save, train_info

CANVASES = (4, 16, 64)
COLS = ['run', 'fill', 'task', 'tasks', 'exact_match', 'edit_similarity', 'parse_rate', 'pass@1', 'length_error',
        'tokens_per_forward']
METRICS = ('tasks', 'mode', 'hole_length', 'exact_match', 'edit_similarity', 'parse_rate', 'pass@1', 'length_error',
           'tokens_per_forward', 'canvas', 'max_hole')


def fills(cfg, name):
    """(label, eval.py flags) of each way this run fills a hole; --sampler's flags (e.g. DreamOn's
    '--temperature=0.2 --top_p=0.9') go to every row."""
    if name == 'varlen':
        out = ([(f'canvas {c} (variable)', ['--variable_length', f'--canvas={c}', f"--max_hole={cfg['max_hole']}"])
                for c in CANVASES if c <= cfg['max_hole']] + [('oracle length', ['--hole_length=0']),
                                                              ('fixed 32', ['--hole_length=32'])])
    else:
        out = [('AR + FIM' if name == 'ar_fim' else 'AR prefix-only', [])]
    return [(label, flags + cfg['sampler'].split()) for label, flags in out]


def table(cfg):
    order = ('varlen', 'ar_fim', 'ar')
    names, rows = only_runs(cfg, 'varlen', order)
    for name in names:
        path = find_only(cfg, name)
        if path is None:
            continue
        for task, n in (('infill', cfg['n_infill']), ('humaneval_infill', cfg['n_he'])):
            for label, flags in fills(cfg, name):
                s = evaluate(cfg, f'--task={task}', f'--ckpt={path}', f'--limit={n}', '--cond_samples=0', *flags)
                rows.append(dict(run=name, fill=label, iters=train_info(path)['iters'], task=task, **pick(s, *METRICS)))
    rows.sort(key=lambda r: order.index(r['run']))  # stable: --only's rows take their run's place
    markdown(rows, COLS)

    def plot(axes):
        for ax, task in zip(axes, ('infill', 'humaneval_infill')):
            part = [r for r in rows if r['task'] == task]
            ax.bar(range(len(part)), [100 * r['edit_similarity'] for r in part])
            ax.set_xticks(range(len(part)), [r['fill'] for r in part], rotation=45, ha='right', fontsize=7)
            ax.set_ylabel('edit similarity (%)'), ax.set_title('stdlib holes' if task == 'infill' else 'HumanEval single-line')
    save(cfg, 'varlen', dict(rows=rows, n_infill=cfg['n_infill'], n_he=cfg['n_he'], max_hole=cfg['max_hole'],
                               sampler=cfg['sampler'] or 'greedy, alg=entropy'), plot, panels=2)
