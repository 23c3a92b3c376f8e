"""
The small world's tasks (data/pyworld), each judged by running the program's own asserts in the sandbox
(evals/execution.py), with pass@1 per split and tier, tokens per forward and wall time:

  world_write   the signature and docstring in, the body out (completion: the model continues the
                prompt and the answer ends where the function does; instruct: the SFT chat prompt, the
                answer in a ```python fence that ends with EOS, as LLaDA's SFT pads answers)
  world_infill  one hidden line of a function, decided by what follows it: a constant or operator that
                only the asserts reveal, or a name used only below the hole. Diffusion fills masks between
                prefix and suffix (the oracle length, or --variable_length); AR + FIM gets a PSM prompt;
                AR without FIM sees the prefix only
  world_repair  a function with one seeded bug (substitute / insert / delete) and the asserts it fails;
                the answer is the whole fixed function: a diffusion model revises the buggy code as its
                draft (--edit_threshold), an AR model writes the function again after seeing the bug

  python eval.py --task=world_write --canonical                      # the executor check: 100%
  python eval.py --task=world_write --ckpt=out-world --split=train,test
  python eval.py --task=world_infill --ckpt=out-world --split=test
  python eval.py --task=world_write --ckpt=out-world-sft --format=instruct

Splits: train = compositions seen in training (new programs of them), val / test = held-out
compositions, never in the corpus. --tiers picks tiers, --limit the tasks per split and tier.
"""
import json
import os
import time
import warnings
from collections import defaultdict

from tqdm import tqdm

from evals.execution import run_programs
from evals.tasks import complete, cut_completion, keep_definitions, sampler_kwargs
from lib.cli import UserError

TASKS = ('world_write', 'world_infill', 'world_repair')
SPLITS = ('train', 'val', 'test')


def world_dir(cfg, train_cfg):
    """--data_path; else the world the model was trained on (its corpus, or the sft/ inside it); else data/pyworld."""
    from evals.tasks import dataset_dir
    path = dataset_dir(cfg, train_cfg) if cfg['data_path'] or 'pyworld' in train_cfg.get('dataset', '') else \
        dataset_dir(dict(cfg, data_path='pyworld'), {})
    up = os.path.dirname(os.path.normpath(path))
    if not os.path.isdir(os.path.join(path, 'tasks')) and os.path.isdir(os.path.join(up, 'tasks')):
        path = up  # an SFT set lives in its world's sft/
    if not os.path.isdir(os.path.join(path, 'tasks')):
        raise UserError(f"no world tasks under {path}; build them with python -m data.pyworld.prepare "
                        f"(or pass --data_path=DIR of a world)")
    return path


def load_tasks(path, task, splits, tiers, limit):
    """The task records of each split, in file order, --limit per split and tier."""
    out = []
    for split in splits:
        f = os.path.join(path, 'tasks', f'{split}_{task}.jsonl')
        if not os.path.isfile(f):
            raise UserError(f"{f} is missing; rebuild the world with python -m data.pyworld.prepare --overwrite")
        taken = defaultdict(int)
        with open(f, encoding='utf-8') as fh:
            records = [json.loads(line) for line in fh if line.strip()]
        for rec in records:
            if rec['tier'] in tiers and (not limit or taken[rec['tier']] < limit):
                taken[rec['tier']] += 1
                out.append(rec)
    if not out:
        raise UserError(f"no {task} task of tiers {sorted(tiers)} in splits {', '.join(splits)}; check --tiers")
    return out


def parse_selection(cfg):
    splits = [s.strip() for s in cfg['split'].split(',') if s.strip()]
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise UserError(f"--split={cfg['split']!r}: use a comma-separated subset of {', '.join(SPLITS)}")
    try:
        tiers = {int(t) for t in str(cfg['tiers']).split(',') if t.strip()}
    except ValueError:
        tiers = set()
    if not tiers or not tiers <= {1, 2, 3, 4}:
        raise UserError(f"--tiers={cfg['tiers']!r}: use a comma-separated subset of 1,2,3,4")
    return splits, tiers

# -----------------------------------------------------------------------------
# answers


def sft_prompt(rec):
    """The instruction of the world's SFT pairs (data/pyworld/prepare.py), from a write task's prompt."""
    from data.pycode_sft.prepare import TEMPLATES
    head, doc = rec['prompt'].split('\n')[0], rec['prompt'].split('"""')[1]
    return TEMPLATES[0].format(subject=f'a Python function `{head[4:-1]}`', doc=doc)


def write_answers(model, tok, recs, cfg, stats):
    """world_write: the function each model writes -> program texts (function + the task's asserts)."""
    if cfg['format'] == 'instruct':
        prompts = [tok.encode_chat([{'role': 'user', 'content': sft_prompt(r)}]) + tok.encode('```python\n')
                   for r in recs]
        answers = complete(model, tok, prompts, cfg, desc='write', stats=stats)
        return [keep_definitions(a.split('```')[0]) for a in answers], answers
    # a document of the corpus starts after an EOS: so does the prompt
    answers = complete(model, tok, [[tok.eos_id] + tok.encode(r['prompt']) for r in recs], cfg, desc='write', stats=stats)
    return [keep_definitions(r['prompt'] + cut_completion(a, 'completion')) for r, a in zip(recs, answers)], answers


def infill_answers(model, tok, recs, cfg, stats, train_cfg):
    """world_infill: each hole filled as evals/infill.fill_hole fills it (diffusion / fim / prefix) -> the
    programs with the fill put back, cut to the hole's one line."""
    import torch
    from evals.infill import fill_hole, infill_mode
    mode = infill_mode(model, train_cfg, cfg['infill_mode'])
    varlen_model = train_cfg.get('varlen_rate', 0) > 0
    g = torch.Generator(device=cfg['device']).manual_seed(cfg['seed'])
    programs, fills = [], []
    for rec in tqdm(recs, desc=f'infill ({mode})'):
        pre, suf = tok.encode(rec['prefix']), tok.encode(rec['suffix'])
        t0 = time.perf_counter()
        fill, info = fill_hole(model, tok, pre, suf, len(tok.encode(rec['canonical'])), mode, cfg, g, varlen_model,
                               lead=[tok.eos_id])  # a document of the corpus starts after an EOS
        stats['seconds'] += time.perf_counter() - t0
        fill = fill.split('\n')[0] + ('\n' if rec['canonical'].endswith('\n') else '')  # the hole is one line
        stats['tokens'] += info['gen_length'] if mode == 'diffusion' else info['nfe']  # AR: a token per forward
        stats['forwards'] += info['nfe']
        fills.append(fill)
        programs.append(rec['prefix'] + fill + rec['suffix'])
    return programs, fills


def repair_prompt(rec):
    """A repair as text: the buggy function, the asserts it fails, then '# fixed' and the signature again,
    after which the fixed function follows (the layout of repair training pairs too)."""
    return f"{rec['buggy'].rstrip()}\n\n{rec['tests'].rstrip()}\n\n\n# fixed\n{rec['canonical'].split(chr(10))[0]}\n"


def repair_answers(model, tok, recs, cfg, stats):
    """world_repair. A diffusion model starts from the buggy function as its draft, the asserts after it as the
    suffix, and revises the draft token by token (--edit_threshold: LLaDA 2.1's editing; a token can be
    replaced, not inserted or removed). An AR model sees the buggy function and its asserts, then writes the
    fixed function after '# fixed' (repair_prompt)."""
    heads = [r['canonical'].split('\n')[0] + '\n' for r in recs]
    if model.config.attention == 'causal':
        prompts = [[tok.eos_id] + tok.encode(repair_prompt(r)) for r in recs]
        answers = complete(model, tok, prompts, cfg, desc='repair', stats=stats)
        return [keep_definitions(h + cut_completion(a, 'completion')) for h, a in zip(heads, answers)], answers
    import torch
    from sample import generate
    kw = dict(sampler_kwargs(cfg, model), edit_threshold=cfg['edit_threshold'] or None, edit_budget=cfg['edit_budget'],
              max_edits_per_slot=cfg['max_edits_per_slot'])
    g = torch.Generator(device=cfg['device']).manual_seed(cfg['seed'])
    answers = []
    for r in tqdm(recs, desc='repair (draft)'):
        draft, suffix = tok.encode(r['buggy'].rstrip('\n')), tok.encode('\n\n' + r['tests'])
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # drafts of any length: "not a multiple of block_length" is expected here
            warnings.simplefilter('ignore')
            out, info = generate(model, [[tok.eos_id]], **dict(kw, gen_length=len(draft)), draft=draft,
                                 suffix=[suffix], pad_id=tok.pad_id, generator=g)
        stats['seconds'] += time.perf_counter() - t0
        stats['forwards'] += info['nfe']
        stats['tokens'] += len(draft)
        stats['changed'] = stats.get('changed', 0) + sum(a != b for a, b in zip(out[0, 1:1 + len(draft)].tolist(), draft))
        answers.append(tok.decode(out[0, 1:1 + len(draft)].tolist()))
    return [keep_definitions(a) for a in answers], answers

# -----------------------------------------------------------------------------


def eval_world(cfg, model, tok, train_cfg):
    """--task=world_write / world_infill / world_repair -> (summary, per-task records)."""
    task = cfg['task'][len('world_'):]
    splits, tiers = parse_selection(cfg)
    recs = load_tasks(world_dir(cfg, train_cfg), task, splits, tiers, cfg['limit'])
    stats = dict(seconds=0.0, tokens=0, forwards=0)
    if cfg['canonical']:
        answers = [r['canonical'] for r in recs]
        programs = [r['prefix'] + r['canonical'] + r['suffix'] if task == 'infill' else
                    (r['prompt'] + r['canonical'] if task == 'write' else r['canonical']) for r in recs]
    elif task == 'write':
        programs, answers = write_answers(model, tok, recs, cfg, stats)
    elif task == 'infill':
        programs, answers = infill_answers(model, tok, recs, cfg, stats, train_cfg)
    else:
        programs, answers = repair_answers(model, tok, recs, cfg, stats)
    if task != 'infill':  # the asserts follow the function (infill's suffix holds them already)
        programs = [p.rstrip('\n') + '\n\n' + r['tests'].rstrip('\n') + '\n' for p, r in zip(programs, recs)]
    verdicts = run_programs(programs, cfg['timeout'], cfg['memory_mb'], cfg['workers'], desc=f'{task}: running tests')
    per = [dict(task_id=r['task_id'], split=r['split'], tier=r['tier'], family=r['family'], passed=v == 'passed',
                verdict=v, answer=a, program=p) for r, v, a, p in zip(recs, verdicts, answers, programs)]
    summary = summarize_world(cfg['task'], per, stats)
    return summary, per


def summarize_world(title, per, stats):
    """pass@1 overall, per split and per (split, tier); tokens per forward and seconds, printed as a table."""
    cells = defaultdict(list)
    for r in per:
        for key in ('all', r['split'], f"{r['split']}/tier{r['tier']}"):
            cells[key].append(r['passed'])
    summary = dict(task=title, problems=len(per), solved=sum(r['passed'] for r in per),
                   pass_at_1={k: sum(v) / len(v) for k, v in sorted(cells.items())},
                   counts={k: len(v) for k, v in sorted(cells.items())},
                   tokens_per_forward=stats['tokens'] / stats['forwards'] if stats['forwards'] else None,
                   seconds=stats['seconds'], forwards=stats['forwards'], tokens_changed=stats.get('changed'))
    rows = [f"{k:>14}: {100 * v:6.1f}% of {summary['counts'][k]}" for k, v in summary['pass_at_1'].items()]
    tpf = f", {summary['tokens_per_forward']:.2f} tokens per forward, {stats['seconds']:.1f} s" if stats['forwards'] else ''
    print(f"{title}: {summary['solved']}/{len(per)} passed{tpf}\n" + '\n'.join(rows))
    return summary
