"""
pyworld, the small world of data/pyworld: python -m pytest tests/test_pyworld.py -q
A tiny world is built once in a temp dir; every program and every canonical answer runs in
execution.py's sandbox (batched: each program exec'd in a fresh namespace, 25 to a process).
"""
import json
import os
import random
import re
import subprocess
import sys

import numpy as np
import pytest

from lib.cli import UserError
from data.common import load_meta, load_sft, load_tokens, write_corpus
from data.pyworld import world
from data.pyworld.prepare import main, prepare
from evals.execution import run_programs
from lib.tokenizer import load_tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BYTES = load_tokenizer('bytes')
TINY = dict(n_programs=190, tasks_per_tier=3, train_repair=20)
CELLS = [(f, t) for f in world.FAMILIES for t in (1, 2, 3, 4) if (f, t) != ('calls', 1)]


def draw(seed, n):
    """n programs over every family and tier, in turn."""
    r = random.Random(seed)
    return [world.generate(r, *CELLS[i % len(CELLS)]) for i in range(n)]


def docs_of(ids):
    """The documents of a flat token array, each ended by EOS."""
    ids = np.asarray(ids, dtype=np.int64)
    cuts = np.flatnonzero(ids == BYTES.eos_id)
    assert len(ids) and ids[-1] == BYTES.eos_id
    return [BYTES.decode(ids[a + 1:b]) for a, b in zip(np.r_[-1, cuts[:-1]], cuts)]


def sandbox(programs, per=25):
    """The verdicts of execution.run_programs on batches of `per` programs, each exec'd in its own namespace."""
    batches = ['\n'.join(f'exec({p!r}, {{}})' for p in programs[i:i + per]) for i in range(0, len(programs), per)]
    return run_programs(batches, workers=2, desc='pyworld')


def read_tasks(out):
    return {f[:-len('.jsonl')]: [json.loads(line) for line in open(out / 'tasks' / f)] for f in os.listdir(out / 'tasks')}


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp('pyworld')
    meta = prepare(out_dir=str(out), **TINY)
    return out, meta, read_tasks(out)


def test_generator_is_deterministic_per_seed(built, tmp_path):
    a, b, c = draw(0, 40), draw(0, 40), draw(1, 40)
    assert [p.text for p in a] == [p.text for p in b]
    assert sum(p.text != q.text for p, q in zip(a, c)) > 30
    # the whole build: the same bytes in every file for the same seed, others for another seed
    out, _, _ = built
    prepare(out_dir=str(tmp_path / 'again'), **TINY)
    files = ['train.bin', 'val.bin', 'compositions.json', 'sft/train.bin', 'sft/val.jsonl',
             *[f'tasks/{f}' for f in os.listdir(out / 'tasks')]]
    for f in files:
        assert (out / f).read_bytes() == (tmp_path / 'again' / f).read_bytes(), f
    prepare(out_dir=str(tmp_path / 'other'), seed=1, **TINY)
    assert (out / 'train.bin').read_bytes() != (tmp_path / 'other' / 'train.bin').read_bytes()


def test_every_program_is_short_and_passes_its_tests(built):
    out, meta, _ = built
    corpus = docs_of(load_tokens(out, 'train')) + docs_of(load_tokens(out, 'val'))
    sample = [p.text for p in draw(7, 300)]
    assert len(corpus) == meta['train_docs'] + meta['val_docs'] > 150
    for text in corpus + sample:
        function, tests = text.split('\n\nassert ', 1)
        lines = ('assert ' + tests).splitlines()
        assert len(text.encode()) <= world.MAX_BYTES and text.startswith('def ') and '"""' in function
        assert len(lines) == 3 and all(re.match(r'assert \w+\(.*\) == .+$', l) for l in lines), text
    assert set(sandbox(corpus + sample)) == {'passed'}
    assert set(run_programs(sample[:6], workers=2)) == {'passed'}  # one by one, as they are
    assert meta['program_bytes']['max'] <= world.MAX_BYTES


def test_canonical_answers_pass_and_bugs_fail(built):
    _, _, tasks = built
    programs, buggy = [], []
    for name, recs in tasks.items():
        for t in recs:
            assert t['task_id'].startswith('pyworld/') and t['tests'].count('assert ') == 3
            if name.endswith('write'):
                assert t['prompt'].startswith('def ') and t['prompt'].endswith('"""\n')
                programs.append(t['prompt'] + t['canonical'] + '\n' + t['tests'])
            elif name.endswith('infill'):
                assert t['canonical'].count('\n') == 1 and t['suffix'].endswith(t['tests'])
                assert t['hole_kind'] in ('constant', 'operator', 'name')
                if t['hole_kind'] != 'name':  # the docstring does not give the constant away
                    assert world.HIDE in t['prefix'] or 'fixed' in t['prefix']
                programs.append(t['prefix'] + t['canonical'] + t['suffix'])
            else:
                assert t['edit_kind'] in ('substitute', 'insert', 'delete') and t['buggy'] != t['canonical']
                programs.append(t['canonical'] + '\n' + t['tests'])
                buggy.append(t['buggy'] + '\n' + t['tests'])
    kinds = {k: len(v) for k, v in tasks.items()}
    assert all(kinds[f'{s}_{k}'] >= 8 for s in ('val', 'test') for k in ('write', 'infill', 'repair')), kinds
    assert kinds['train_repair'] >= 15
    assert set(sandbox(programs)) == {'passed'}
    verdicts = run_programs(buggy, workers=2, desc='buggy')
    assert 'passed' not in verdicts and 'timed out' not in verdicts


def test_split_is_by_composition(built):
    out, meta, tasks = built
    comps = json.loads((out / 'compositions.json').read_text())
    name = lambda text: re.match(r'def (\w+)\(', text).group(1)
    train_docs = docs_of(load_tokens(out, 'train'))
    val_docs = docs_of(load_tokens(out, 'val'))
    # the corpus holds exactly the programs of its compositions' split, and a name is one composition
    assert {name(d) for d in train_docs} == {c['name'] for c in comps['train'].values()}
    assert {name(d) for d in val_docs} == {c['name'] for c in comps['val'].values()}
    named = {}
    for key, c in [*comps['train'].items(), *comps['val'].items()] + [(t['composition'], dict(name=t['entry_point']))
                                                                      for v in tasks.values() for t in v]:
        assert named.setdefault(c['name'], key) == key
    assert all(world.split_of(k) == s for s in ('train', 'val') for k in comps[s])
    # val and test compositions never occur in train, their primitives all do; no held-out text is in train
    train_text, train_names = '\x00'.join(train_docs), {name(d) for d in train_docs}
    train_prims = set().union(*map(world.primitives, comps['train']))
    held_out = [(t['composition'], t) for k, v in tasks.items() if not k.startswith('train') for t in v]
    assert held_out and {t['split'] for _, t in held_out} == {'val', 'test'}
    for key, t in held_out + [(k, None) for k in comps['val']]:
        assert key not in comps['train'] and world.primitives(key) <= train_prims, key
        if t is not None:
            assert world.split_of(key) == t['split'] and t['entry_point'] not in train_names
            assert (t.get('prompt') or t.get('prefix') or t['canonical'])[:-1] not in train_text
    assert all(world.split_of(t['composition']) == 'train' for t in tasks['train_repair'])
    assert meta['compositions']['train'] and meta['compositions']['val']
    # SFT: the same split; the chat template's prompt, then the fenced function and EOS
    for split in ('train', 'val'):
        data = load_sft(out / 'sft', split)
        recs = [json.loads(line) for line in open(out / 'sft' / f'{split}.jsonl')]
        assert len(recs) == len(data) > 0 and all(r['source'] in comps[split] for r in recs)
        ids, plen = data.example(0)
        user, answer = recs[0]['messages']
        assert list(ids[:plen]) == BYTES.encode_chat([user]) and ids[-1] == BYTES.eos_id
        assert BYTES.decode(ids[plen:-1]) == answer['content'] and answer['content'].startswith('```python\ndef ')
        assert user['content'].startswith('Write a Python function `') or '`' in user['content']


def test_bad_input_is_one_line_and_loses_nothing(tmp_path):
    for args, match in ((['--families=list,foo'], "unknown family 'foo'; use a comma-separated subset of list"),
                        (['--n_programs=0'], r'n_programs=0 is out of range'), (['--seed=-1'], 'seed=-1 is out of range'),
                        ([f'--seed={2**31}'], 'is out of range'), (['--tiers=1,5'], 'tiers'),
                        (['--families=calls', '--tiers=1'], 'no tier 1'), (['--tier_weights=1,1'], 'four integers')):
        with pytest.raises(UserError, match=match):
            main([*args, f'--out_dir={tmp_path / "new"}'])
    assert not (tmp_path / 'new').exists()
    other = tmp_path / 'other'  # a pre-training set of other sources: refused without --overwrite
    write_corpus([('a.py', 'x = 1\n'), ('b.py', 'y = 2\n')], other, BYTES, val_frac=0.5, info=dict(source='pycode'))
    before = {f: (other / f).read_bytes() for f in os.listdir(other)}
    with pytest.raises(UserError, match='holds another dataset'):
        main([f'--out_dir={other}', '--n_programs=40'])
    assert {f: (other / f).read_bytes() for f in os.listdir(other)} == before
    # by path and by module: one `error:` line, exit 1; a good run by path works
    for cmd in ([sys.executable, 'data/pyworld/prepare.py', '--families=foo', f'--out_dir={other}'],
                [sys.executable, '-m', 'data.pyworld.prepare', '--n_programs=0']):
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        assert r.returncode == 1 and r.stderr.strip().startswith('error: ') and len(r.stderr.strip().splitlines()) == 1, r.stderr
    ok = subprocess.run([sys.executable, 'data/pyworld/prepare.py', '--n_programs=60', '--tasks_per_tier=1',
                         '--train_repair=0', f'--out_dir={tmp_path / "byPath"}'], cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0 and load_meta(tmp_path / 'byPath')['source'] == 'pyworld', ok.stderr
    assert {f: (other / f).read_bytes() for f in os.listdir(other)} == before
