"""
pyworld: a small world of executable Python where a toy model can learn to write, infill and repair
code in CPU minutes. It is a place to see the method work, NOT a benchmark of real code (data/pycode
is the real-code counterpart).

Every program is one short function (a helper below it in the calls family) with a docstring, then
three asserts whose values come from running it:

  def sum_squares_evens(xs):
      \"\"\"Take xs, keep the even numbers, square each, return their sum.\"\"\"
      return sum(x * x for x in xs if x % 2 == 0)

  assert sum_squares_evens([3, 4, -2]) == 20
  ...

Five families (list filter/map/reduce, string building, integer arithmetic with branches, stateful
loops, calls to helpers defined below their use) compose primitives; a program's tier (1..4) is its
number of steps. The docstring spells the steps out at tier 1 and gets terser above; some docstrings
leave a constant to the asserts. Surface forms (loop, comprehension, map/filter; names) vary, so only
the tests judge. The split is by composition (a hash of its key, not of the seed): 10% of the
compositions are val, 10% test, and no val or test composition occurs in train (their primitives do).

  python -m data.pyworld.prepare                               # 60k programs, byte tokenizer, seed 0
  python -m data.pyworld.prepare --families=list,loop --tiers=3,4 --out_dir=/tmp/pw
  python data/pyworld/prepare.py --seed=1 --overwrite

Writes to out_dir:
  train.bin, val.bin, meta.json  the pre-training corpus (format: data/common.py): each program followed
                                 by EOS; train and val compositions only, never test ones
  sft/                           SFT pairs, the layout of data/pycode_sft: the signature and docstring as
                                 the instruction, the function in a ```python fence as the answer
  tasks/{val,test}_{write,infill,repair}.jsonl  --tasks_per_tier tasks per tier, each judged by its tests:
                                 write: prompt (signature + docstring) -> canonical (the rest);
                                 infill: prefix + canonical + suffix is the program (asserts included),
                                   the hole one line: a constant / operator only the asserts reveal, or
                                   a line assigning a name used only below it (hole_kind);
                                 repair: buggy (one seeded edit: substitute, insert or delete, that fails
                                   an assert) -> canonical
  tasks/train_{write,infill}.jsonl  the same tasks on seen (train) compositions, programs not in the corpus
  tasks/train_repair.jsonl       repair pairs from train compositions (training data for a baseline)
  compositions.json              per split of the corpus, each composition's key, function name and program count
"""
import json
import os
import random
import statistics
import sys
import time
from collections import Counter

if not __package__:  # typed by path (python data/pyworld/prepare.py): import from the repository root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tqdm import tqdm  # noqa: E402

from lib.cli import UserError, run_cli  # noqa: E402
from data.common import (check_dataset_dir, get_tokenizer, hash_unit, run_prepare, split_list, tokenizer_meta,  # noqa: E402
                         write_atomic, write_corpus, write_sft)
from data.pycode_sft.prepare import TEMPLATES, tokenize_example  # noqa: E402
from data.pyworld import world  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULTS = dict(
    tokenizer='bytes',      # bytes | gpt2 | path to a Qwen3 tokenizer.json or checkpoint dir
    out_dir=HERE,           # where the corpus, sft/ and tasks/ go
    seed=0,                 # every program, constant, name and task follows from it (not the split)
    n_programs=60000,       # programs of the corpus (train and val compositions), spread evenly over family x tier
    families=','.join(world.FAMILIES),  # a comma-separated subset of list, string, arith, loop, calls
    tiers='1,2,3,4',        # steps per composition; calls starts at 2 (a call and a helper's step)
    tier_weights='2,2,1,1', # the share of each tier (1..4) in the corpus: the easy tiers teach the primitives
    tasks_per_tier=100,     # val and test tasks per tier, of each kind (write, infill, repair)
    train_repair=5000,      # repair pairs from train programs (0: none)
    hide=0.15,              # chance that a docstring leaves an op's constant to the asserts
    overwrite=False,        # replace a dataset of another kind or tokenizer in out_dir
)
TASKS = ('write', 'infill', 'repair')


def cells(families, tiers, tier_weights='1,1,1,1'):
    """The (family, tier) pairs to draw from, each as often as its tier's weight, checked."""
    fams = split_list(families)
    bad = [f for f in fams if f not in world.FAMILIES]
    if bad or not fams:
        raise UserError(f"--families={families!r}: {'unknown family ' + repr(bad[0]) if bad else 'none given'}; "
                        f"use a comma-separated subset of {', '.join(world.FAMILIES)}")
    try:
        ts = sorted({int(t) for t in (split_list(tiers) if isinstance(tiers, str) else tiers)})
    except ValueError:
        ts = [0]
    if not ts or not all(1 <= t <= 4 for t in ts):
        raise UserError(f"--tiers={tiers!r}: use a comma-separated subset of 1,2,3,4")
    try:
        weights = [int(w) for w in split_list(str(tier_weights))]
    except ValueError:
        weights = []
    if len(weights) != 4 or min(weights) < 0 or not any(weights[t - 1] for t in ts):
        raise UserError(f"--tier_weights={tier_weights!r}: use four integers >= 0 (tiers 1..4), e.g. 2,2,1,1")
    out = [(f, t) for t in ts for _ in range(weights[t - 1]) for f in fams if not (f == 'calls' and t == 1)]
    if not out:
        raise UserError("the calls family has no tier 1 (a call and a helper's step make 2); add a tier or a family")
    return out


def task_record(prog, split, task, tid, r):
    """One task of prog, or None when prog offers no such task (no hole, no failing edit)."""
    rec = dict(task_id=tid, family=prog.family, tier=prog.tier, composition=prog.key, split=split,
               entry_point=prog.name, tests=prog.tests)
    if task == 'write':
        return dict(rec, prompt=prog.prompt, canonical=prog.body)
    if task == 'infill':
        hole = world.hole_constant(prog) if prog.hidden >= 0 else world.hole_name(prog, r)
        if hole is None:
            return None
        prefix, canonical, suffix = world.infill(prog, hole[0])
        return dict(rec, prefix=prefix, suffix=suffix, canonical=canonical, hole_kind=hole[1])
    bug = world.mutate(prog, r.getrandbits(31))
    if bug is None:
        return None
    buggy, kind, unit, seed = bug
    return dict(rec, buggy=buggy, canonical=prog.function, edit_kind=kind, edit_unit=unit, mutation_seed=seed)


def make_tasks(split, task, tier, fams, n, seed, train_prims, exclude=frozenset()):
    """n tasks of one kind on compositions of split at this tier, the families taken in turn; never a program
    whose text is in exclude (the corpus, for tasks on seen compositions)."""
    r = random.Random(f'pyworld:{seed}:{split}:{task}:{tier}')
    out, seen, failed = [], set(), Counter()
    for j in range(n * 4):
        if len(out) == n:
            break
        fam = fams[j % len(fams)]
        hide = 'always' if task == 'infill' and len(out) % 2 == 0 else 0  # infill: constant and name holes in turn
        prog = world.generate(r, fam, tier, splits=(split,), hide=hide, failed=failed)
        if prog is None or prog.text in seen or prog.text in exclude or not prog.primitives() <= train_prims:
            continue
        rec = task_record(prog, split, task, f'pyworld/{split}/{task}/{tier}/{len(out)}', r)
        if rec is not None:
            seen.add(prog.text)
            out.append(rec)
    return out


def sft_example(tok, prog):
    sig = prog.prompt.split('\n')[0][4:-1]  # 'def name(args):' -> 'name(args)'
    doc = prog.prompt.split('"""')[1]
    prompt = TEMPLATES[int(hash_unit(prog.text) * len(TEMPLATES))].format(subject=f'a Python function `{sig}`', doc=doc)
    response = f'```python\n{prog.function.rstrip()}\n```'
    ids, plen = tokenize_example(tok, prompt, response)
    record = dict(messages=[dict(role='user', content=prompt), dict(role='assistant', content=response)],
                  source=prog.key, name=prog.name, family=prog.family, tier=prog.tier)
    return record, ids, plen


def prepare(out_dir=HERE, tokenizer='bytes', seed=0, n_programs=60000, families=DEFAULTS['families'], tiers='1,2,3,4',
            tier_weights='2,2,1,1', tasks_per_tier=100, train_repair=5000, hide=0.15, overwrite=False):
    """Build the world; returns the corpus meta dict (also written to out_dir/meta.json)."""
    if not 0 <= seed < 2**31:
        raise UserError(f'--seed={seed} is out of range: it must be in [0, 2**31 - 1]')
    if n_programs < 1:
        raise UserError(f'--n_programs={n_programs}: it must be at least 1')
    todo = cells(families, tiers, tier_weights)
    tok = get_tokenizer(tokenizer)
    meta = dict(kind='pretrain', **tokenizer_meta(tok), source='pyworld')
    sft_meta = dict(kind='sft', **tokenizer_meta(tok), source='pyworld')
    check_dataset_dir(out_dir, meta, overwrite)  # before the work, not after it
    check_dataset_dir(os.path.join(out_dir, 'sft'), sft_meta, overwrite)
    t0 = time.time()

    # the corpus: train and val compositions, family x tier in turn
    r = random.Random(f'pyworld:{seed}:corpus')
    progs, seen, stats, failed = {'train': [], 'val': []}, set(), Counter(), Counter()
    for i in tqdm(range(n_programs), desc='pyworld', unit='prog'):
        fam, tier = todo[i % len(todo)]
        prog = world.generate(r, fam, tier, splits=('train', 'val'), hide=hide, failed=failed)
        if prog is None or prog.text in seen:
            stats['none' if prog is None else 'duplicate'] += 1
            continue
        seen.add(prog.text)
        progs[world.split_of(prog.key)].append(prog)
    train_prims = set().union(*(p.primitives() for p in progs['train']))
    unseen = [p for p in progs['val'] if not p.primitives() <= train_prims]
    stats['val_unseen_primitive'] = len(unseen)
    progs['val'] = [p for p in progs['val'] if p.primitives() <= train_prims]  # every held-out part is seen in train
    if not progs['train'] or not progs['val']:
        raise UserError(f'--n_programs={n_programs} gave {len(progs["train"])} train and {len(progs["val"])} val programs; '
                        'raise --n_programs (a split needs at least one)')

    # tasks on val and test compositions, and write / infill on seen (train) compositions with programs that are
    # not in the corpus; repair pairs on train programs (training data)
    tasks, corpus = {}, {p.text for s in progs for p in progs[s]}
    for split, kinds in (('train', ('write', 'infill')), ('val', TASKS), ('test', TASKS)):
        for task in kinds:
            tasks[f'{split}_{task}'] = [rec for tier in sorted({t for _, t in todo})
                                        for rec in make_tasks(split, task, tier, list(dict.fromkeys(f for f, t in todo if t == tier)),
                                                              tasks_per_tier, seed, train_prims, corpus)]
    r = random.Random(f'pyworld:{seed}:train_repair')
    tasks['train_repair'] = [rec for i, p in enumerate(progs['train'][:train_repair])
                             if (rec := task_record(p, 'train', 'repair', f'pyworld/train/repair/{i}', r)) is not None]

    # SFT pairs: the programs whose docstring states everything the function needs
    sft = {s: [sft_example(tok, p) for p in progs[s] if p.hidden < 0] for s in ('train', 'val')}
    count = lambda items, f: dict(sorted(Counter(map(f, items)).items()))
    sizes = [len(p.text.encode()) for s in progs for p in progs[s]]
    info = dict(source='pyworld', version=world.VERSION, seed=seed, n_programs=n_programs, families=split_list(families),
                tiers=sorted({t for _, t in todo}), tier_weights=tier_weights, hide=hide, test_frac=world.TEST_FRAC,
                programs={s: count(progs[s], lambda p: f'{p.family}/{p.tier}') for s in progs},
                compositions={s: count({p.key: p for p in progs[s]}.values(), lambda p: str(p.tier)) for s in progs},
                task_compositions={k: count({t['composition']: t for t in v}.values(), lambda t: str(t['tier']))
                                   for k, v in tasks.items()},
                tasks={k: count(v, lambda t: f"{t['family']}/{t['tier']}") for k, v in tasks.items()},
                sft_examples={s: len(v) for s, v in sft.items()},
                program_bytes=dict(median=statistics.median(sizes), max=max(sizes)), skipped=dict(stats))
    sft_meta.update(version=world.VERSION, seed=seed, val_frac=world.VAL_FRAC)
    write_sft(os.path.join(out_dir, 'sft'), sft_meta, sft, overwrite=True)  # checked above
    comps = {s: {} for s in progs}  # key -> its function name and number of programs, per split of the corpus
    for s in progs:
        for p in progs[s]:
            comps[s].setdefault(p.key, dict(name=p.name, programs=0))['programs'] += 1
    write_atomic(os.path.join(out_dir, 'compositions.json'), lambda f: json.dump(comps, f, indent=0, sort_keys=True))
    os.makedirs(os.path.join(out_dir, 'tasks'), exist_ok=True)
    for name, recs in tasks.items():
        write_atomic(os.path.join(out_dir, 'tasks', f'{name}.jsonl'),
                     lambda f, recs=recs: f.write(''.join(json.dumps(t) + '\n' for t in recs)))
    docs = [(p.key, p.text) for s in ('train', 'val') for p in progs[s]]
    info['build_seconds'] = round(time.time() - t0, 1)
    return write_corpus(docs, out_dir, tok, world.VAL_FRAC, info, total=len(docs), desc='tokenizing', overwrite=overwrite)


def main(argv):
    ranges = dict(seed='[0, 2147483647]', n_programs='[1, inf)', tasks_per_tier='[0, inf)', train_repair='[0, inf)',
                  hide='[0, 1]')
    return run_prepare(argv, DEFAULTS, __doc__, ranges, prepare, 'programs')


if __name__ == '__main__':
    run_cli(main)
