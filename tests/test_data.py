"""
Data pipeline: python -m pytest tests/test_data.py -q
Every test builds its own tiny corpus in a temp dir; nothing touches data/ or the network.
"""
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data.common import (UserError, hash_unit, load_meta, load_sft, load_tokens, parse_args, token_dtype,
                         write_corpus)
from data.prepare_custom import prepare_custom
from data.pycode.prepare import prepare
from data.pycode_sft.prepare import extract_examples, prepare as prepare_sft
from lib.tokenizer import load_tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BYTES = load_tokenizer('bytes')

A = 'def f(x):\n    """Double x — unicode: λ."""\n    return 2 * x\n'
B = '# -*- coding: latin-1 -*-\nname = "caf\xe9"\n'       # stored as latin-1 bytes, valid via its cookie
D = 'import os\n\n\nclass K:\n    pass\n'
M = 'from . import util\nprint(util)\n'


def write(root, rel, data):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data if isinstance(data, bytes) else data.encode('utf-8'))


@pytest.fixture
def corpus(tmp_path):
    """hash_unit: a.py .94, b.py .29, d.py .19, pkg/mod.py .08, pkg/util.py .80 -> val_frac .25 puts d, mod in val."""
    root = str(tmp_path / 'src')
    write(root, 'a.py', A)
    write(root, 'b.py', B.encode('latin-1'))
    write(root, 'c.py', b'x = "\xff\xfe not utf-8"\n')   # no cookie, not UTF-8: skipped
    write(root, 'd.py', D)
    write(root, 'pkg/__init__.py', '\n')                   # empty: skipped
    write(root, 'pkg/mod.py', M)
    write(root, 'pkg/util.py', A)                          # same bytes as a.py: duplicate, skipped
    write(root, 'notes.txt', 'not python')                 # wrong extension: not found
    write(root, '__pycache__/a.py', 'stale = 1\n')         # pruned directory
    return root


def docs_of(ids, eos):
    """Split a flat token array into documents at EOS; every document must end with EOS."""
    ids = np.asarray(ids, dtype=np.int64)
    assert len(ids) == 0 or ids[-1] == eos
    cuts = np.flatnonzero(ids == eos)
    return [BYTES.decode(ids[s + 1 if i else 0:e]) for i, (s, e) in enumerate(zip(np.r_[-1, cuts[:-1]], cuts))]


def test_pycode_roundtrip_split_and_meta(corpus, tmp_path):
    out = str(tmp_path / 'out')
    meta = prepare(roots=[corpus], out_dir=out, stdlib=False, val_frac=0.25)
    assert meta == load_meta(out)
    train, val = load_tokens(out, 'train'), load_tokens(out, 'val')
    assert train.dtype == np.uint16 and isinstance(train, np.memmap)
    # each split decodes back to its files' text, in sorted path order, each followed by EOS
    assert docs_of(train, BYTES.eos_id) == [A, B]
    assert docs_of(val, BYTES.eos_id) == [D, M]
    assert (meta['tokenizer'], meta['vocab_size'], meta['eos_id'], meta['mask_id'], meta['pad_id']) == \
        ('bytes', BYTES.vocab_size, BYTES.eos_id, BYTES.mask_id, BYTES.pad_id)
    assert (meta['train_docs'], meta['val_docs'], meta['files_found']) == (2, 2, 7)
    assert meta['train_tokens'] == len(train) == len(A.encode()) + len(B.encode()) + 2
    assert meta['val_tokens'] == len(val) and meta['dtype'] == 'uint16'
    assert meta['skipped'] == {'undecodable': 1, 'empty': 1, 'duplicate': 1}
    # deterministic: a rerun gives the same bytes; a new file never moves an old one across the split
    first = open(os.path.join(out, 'train.bin'), 'rb').read()
    prepare(roots=[corpus], out_dir=out, stdlib=False, val_frac=0.25)
    assert open(os.path.join(out, 'train.bin'), 'rb').read() == first
    write(corpus, 'new.py', 'y = 1\n')  # hash .69 -> train
    prepare(roots=[corpus], out_dir=out, stdlib=False, val_frac=0.25)
    assert docs_of(load_tokens(out, 'train'), BYTES.eos_id) == [A, B, 'y = 1\n']
    assert docs_of(load_tokens(out, 'val'), BYTES.eos_id) == [D, M]
    assert not [f for f in os.listdir(out) if f.startswith('.')]  # no temp files left


def test_split_is_by_hash_of_path_and_never_empty(corpus, tmp_path):
    files = ['a.py', 'b.py', 'd.py', 'pkg/mod.py']
    for frac in (0.1, 0.3, 0.6):
        meta = prepare(roots=[corpus], out_dir=str(tmp_path / 'o'), stdlib=False, val_frac=frac)
        assert meta['val_docs'] == sum(hash_unit(f) < frac for f in files)
    # too small a val_frac: the train file nearest the boundary (pkg/mod.py, .08) moves to val
    meta = prepare(roots=[corpus], out_dir=str(tmp_path / 'o'), stdlib=False, val_frac=0.001)
    assert docs_of(load_tokens(tmp_path / 'o', 'val'), BYTES.eos_id) == [M]
    assert docs_of(load_tokens(tmp_path / 'o', 'train'), BYTES.eos_id) == [A, B, D]
    meta = prepare(roots=[corpus], out_dir=str(tmp_path / 'o'), stdlib=False, val_frac=0.999)
    assert docs_of(load_tokens(tmp_path / 'o', 'train'), BYTES.eos_id) == [A]  # a.py (.94) moves back
    assert (meta['train_docs'], meta['val_docs']) == (1, 3)


def test_uint32_when_vocab_exceeds_uint16(tmp_path):
    assert token_dtype(2**16) == 'uint16' and token_dtype(2**16 + 1) == 'uint32'

    class BigTok:  # byte ids shifted past 65535
        spec, vocab_size, eos_id, pad_id, mask_id = 'big', 70_000, 69_999, 69_998, 69_997
        encode = staticmethod(lambda text: [66_000 + b for b in text.encode()])
    meta = write_corpus([('a.py', 'ab'), ('b.py', 'c')], tmp_path, BigTok, val_frac=0.5)
    train = load_tokens(tmp_path, 'train')
    assert meta['dtype'] == 'uint32' and train.dtype == np.uint32
    assert sorted([list(train), list(load_tokens(tmp_path, 'val'))]) == [[66_097, 66_098, 69_999], [66_099, 69_999]]


def test_qwen3_tokenizer_meta(corpus, tmp_path):
    meta = prepare(roots=[corpus], out_dir=str(tmp_path), stdlib=False, tokenizer='qwen3', val_frac=0.25)
    tok = load_tokenizer(meta['tokenizer'])  # the stored spec reloads the (bundled) tokenizer anywhere
    assert meta['tokenizer'] == 'qwen3' and meta['dtype'] == 'uint32'
    assert (meta['eos_id'], meta['pad_id'], meta['mask_id']) == (151645, 151643, 151669)
    assert tok.decode(load_tokens(tmp_path, 'train')) == A + '<|im_end|>' + B + '<|im_end|>'


def test_failed_run_keeps_existing_dataset(corpus, tmp_path):
    out = str(tmp_path / 'out')
    prepare(roots=[corpus], out_dir=out, stdlib=False, val_frac=0.25)
    before = {f: open(os.path.join(out, f), 'rb').read() for f in os.listdir(out)}

    def docs():  # dies mid-way, like a crash or Ctrl-C
        yield 'a.py', 'x = 1\n'
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        write_corpus(docs(), out, BYTES, overwrite=True)
    write(str(tmp_path / 'one'), 'only.py', 'x = 1\n')
    with pytest.raises(UserError, match='at least 2'):
        prepare(roots=[str(tmp_path / 'one')], out_dir=out, stdlib=False, overwrite=True)
    with pytest.raises(UserError, match='no .py files'):
        prepare(roots=[str(tmp_path / 'out')], out_dir=out, stdlib=False, overwrite=True)
    with pytest.raises(UserError, match='not a directory'):
        prepare(roots=[str(tmp_path / 'missing')], out_dir=out, stdlib=False, overwrite=True)
    with pytest.raises(UserError, match='val_frac'):
        prepare(roots=[corpus], out_dir=out, stdlib=False, val_frac=0)
    assert {f: open(os.path.join(out, f), 'rb').read() for f in os.listdir(out)} == before
    # a .bin that does not match meta.json is refused instead of silently read
    with open(os.path.join(out, 'val.bin'), 'ab') as f:
        f.write(b'\0\0')
    with pytest.raises(UserError, match='does not match'):
        load_tokens(out, 'val')
    with pytest.raises(UserError, match='no dataset'):
        load_meta(tmp_path / 'missing')


MOD1 = '''
import functools

def add(a, b: int = 1) -> int:
    """Return the sum of a and b, adding one by default."""
    return a + b

def _hidden(x):
    """A private helper that is not an instruction."""
    return x

def undocumented(x):
    return x

@functools.lru_cache(maxsize=None)
def fib(n):
    """Compute the n-th Fibonacci number recursively."""
    return n if n < 2 else fib(n - 1) + fib(n - 2)

class Stack:
    """A stack."""
    def push(self, item):
        """Push item onto the top of the stack."""
        self.items.append(item)

    def peek(self):
        """Return the top item without removing it."""
        raise NotImplementedError
'''
MOD2 = '''
async def fetch(url, *, timeout=10):
    """Fetch url and return its body as bytes, waiting at most timeout seconds."""
    return await get(url, timeout)

def long_one(x):
    """This function has a long body that the length filter drops."""
''' + ''.join(f'    x = x + {i}\n' for i in range(200)) + '    return x\n'


def test_extract_examples():
    ex = {name: (p, r) for p, r, name, _ in extract_examples(MOD1, 'm1.py')}
    assert sorted(ex) == ['Stack.push', 'add', 'fib']  # no private, undocumented or stub functions
    prompt, response = ex['add']
    assert '`add(a, b: int=1) -> int`' in prompt and 'Return the sum of a and b' in prompt
    assert response == '```python\ndef add(a, b: int = 1) -> int:\n    """Return the sum of a and b, adding one by default."""\n    return a + b\n```'
    assert ex['fib'][1].startswith('```python\n@functools.lru_cache(maxsize=None)\ndef fib(n):')
    assert ex['Stack.push'][1].startswith('```python\ndef push(self, item):\n    """')  # dedented method
    assert '`Stack`' in ex['Stack.push'][0]
    assert [n for _, _, n, _ in extract_examples(MOD1, methods=False, private=True)] == ['add', '_hidden', 'fib']
    assert extract_examples('def broken(:\n') == []


def test_sft_prepare_tokenised_form(tmp_path):
    root = str(tmp_path / 'src')
    write(root, 'mod1.py', MOD1)   # hash_unit .36: train
    write(root, 'mod2.py', MOD2)   # .29: val
    write(root, 'test/test_x.py', MOD1.replace('Return the sum', 'Add up'))  # test dirs skipped
    out = str(tmp_path / 'sft')
    meta = prepare_sft(roots=[root], out_dir=out, stdlib=False, max_len=400, val_frac=0.3)
    assert meta == load_meta(out) and meta['kind'] == 'sft' and meta['skipped']['too_long'] == 1
    names, sources = [], {}
    for split in ('train', 'val'):
        data = load_sft(out, split)
        records = [json.loads(line) for line in open(os.path.join(out, f'{split}.jsonl'))]
        assert len(data) == len(records) == meta[f'{split}_examples'] > 0
        assert data.offsets[0] == 0 and (data.offsets[1:] == (data.offsets + data.total_len)[:-1]).all()
        assert len(data.tokens) == data.total_len.sum() == meta[f'{split}_tokens']
        assert data.total_len.max() <= 400
        for i, rec in enumerate(records):
            user, assistant = rec['messages']
            ids, plen = data.example(i)
            prompt_ids = BYTES.encode_chat([user], add_generation_prompt=True)
            assert plen == len(prompt_ids) and list(ids[:plen]) == prompt_ids
            assert ids[-1] == BYTES.eos_id and BYTES.decode(ids[plen:-1]) == assistant['content']
            assert BYTES.decode(ids[:plen]).endswith('<|im_start|>assistant\n<think>\n\n</think>\n\n')
            names.append(rec['name'])
            sources.setdefault(split, set()).add(rec['source'].split(':')[0])
    assert names == ['add', 'fib', 'Stack.push', 'fetch']  # file order, then source order
    assert sources == {'train': {'mod1.py'}, 'val': {'mod2.py'}}  # split by source file
    assert '`fetch(url, *, timeout=10)`' in open(os.path.join(out, 'val.jsonl')).read()
    with pytest.raises(UserError, match='at least 2'):
        prepare_sft(roots=[os.path.join(root, 'test')], out_dir=out, stdlib=False, skip_tests=False, overwrite=True)
    assert load_meta(out) == meta  # the failed run left the dataset alone
    prepare(roots=[root], out_dir=str(tmp_path / 'pt'), stdlib=False)
    with pytest.raises(UserError, match='not an SFT'):
        load_sft(tmp_path / 'pt', 'train')


def test_prepare_custom_jsonl_and_dir(tmp_path):
    recs = [{'text': f'// file {i}\nconsole.log({i});\n', 'path': f'src/{i % 3}.js'} for i in range(12)]
    src = tmp_path / 'stack.jsonl.gz'
    with gzip.open(src, 'wt') as f:
        f.write('\n'.join(json.dumps(r) for r in recs) + '\n\n')
    meta = prepare_custom(str(src), str(tmp_path / 'o'), key_field='path', val_frac=0.05)
    # split on the path field: hash_unit('src/1.js') = .046 < .05 < the other two, so its 4 records are val
    assert docs_of(load_tokens(tmp_path / 'o', 'val'), BYTES.eos_id) == [r['text'] for r in recs[1::3]]
    assert docs_of(load_tokens(tmp_path / 'o', 'train'), BYTES.eos_id) == [r['text'] for r in recs if r not in recs[1::3]]
    assert (meta['source'], meta['train_docs'], meta['val_docs']) == ('custom', 8, 4)
    # a directory with an extension filter
    write(str(tmp_path / 'js'), 'x.js', 'let x = 1;\n')
    write(str(tmp_path / 'js'), 'y.js', 'let y = 2;\n')
    write(str(tmp_path / 'js'), 'z.py', 'z = 3\n')
    meta = prepare_custom(str(tmp_path / 'js'), str(tmp_path / 'o2'), ext='.js', val_frac=0.2)
    assert (meta['train_docs'], meta['val_docs']) == (1, 1)  # y.js (.10) in val
    assert docs_of(load_tokens(tmp_path / 'o2', 'val'), BYTES.eos_id) == ['let y = 2;\n']
    # bad JSONL: invalid line or missing field -> UserError naming the line
    bad = tmp_path / 'bad.jsonl'
    bad.write_text('{"text": "ok"}\n{"content": "no text field"}\n')
    with pytest.raises(UserError, match='line 2 has no string field'):
        prepare_custom(str(bad), str(tmp_path / 'o'), overwrite=True)
    bad.write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(UserError, match='line 2 is not valid JSON'):
        prepare_custom(str(bad), str(tmp_path / 'o'), overwrite=True)
    assert load_meta(tmp_path / 'o')['key_field'] == 'path'  # the earlier dataset is untouched


def test_parse_args():
    d = dict(a=1, b=0.5, c='x', d=False)
    assert parse_args(['--a=3', '--b=1e-2', '--c=y,z', '--d'], d) == dict(a=3, b=0.01, c='y,z', d=True)
    for bad, msg in (['--e=1', 'unknown option --e'], ['--a=x', 'expects a int'], ['a=1', 'unexpected'],
                     ['--d=maybe', 'true or false'], ['--c', 'needs a value']):
        with pytest.raises(UserError, match=msg):
            parse_args([bad], d)


def run(script, *args):  # data/x/prepare.py runs as python -m data.x.prepare, from the repository root
    return subprocess.run([sys.executable, '-m', script[:-3].replace('/', '.'), *args], cwd=REPO, capture_output=True,
                          text=True)


def test_cli_errors_are_one_line(tmp_path, corpus):
    out = str(tmp_path / 'out')
    ok = run('data/pycode/prepare.py', f'--roots={corpus}', '--stdlib=false', '--val_frac=0.25', f'--out_dir={out}')
    assert ok.returncode == 0, ok.stderr
    before = {f: open(os.path.join(out, f), 'rb').read() for f in os.listdir(out)}
    (tmp_path / 'bad.jsonl').write_text('not json\n')
    for script, args in (('data/pycode/prepare.py', ['--bogus=1']),
                         ('data/pycode/prepare.py', [f'--roots={tmp_path}/nope', '--stdlib=false', f'--out_dir={out}']),
                         ('data/prepare_custom.py', [f'--input={tmp_path}/bad.jsonl', f'--out_dir={out}']),
                         ('data/pycode_sft/prepare.py', ['--max_len=many'])):
        r = run(script, *args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and lines[-1].startswith('error: ') and 'Traceback' not in r.stderr, r.stderr
    assert {f: open(os.path.join(out, f), 'rb').read() for f in os.listdir(out)} == before


def test_bad_numeric_options(tmp_path):
    """Range checks run before any file is read (in-process: main() raises what run_cli prints)."""
    import data.prepare_custom as custom
    import data.pycode.prepare as pycode
    import data.pycode_sft.prepare as sft
    for mod, args, match in ((pycode, ['--val_frac=0'], r'val_frac=0.0 is out of range: it must be in \(0, 1\)'),
                             (pycode, ['--max_file_kb=-1'], 'max_file_kb=-1'), (custom, ['--val_frac=1'], 'val_frac=1.0'),
                             (custom, ['--max_file_kb=0'], 'max_file_kb=0'), (sft, ['--max_len=1'], 'max_len=1'),
                             (sft, ['--min_doc=-1'], 'min_doc=-1'), (sft, ['--min_doc=50', '--max_doc=10'], 'above --max_doc')):
        with pytest.raises(UserError, match=match):
            mod.main([*args, f'--out_dir={tmp_path / "out"}'])
    assert not (tmp_path / 'out').exists()


def test_data_ids_leave_out_the_fim_sentinels():
    """The bytes tokenizer appends <|fim_*|> (260-262) and <|expand|> (263) after <|mask|>: a corpus holds ids < 260 only, so
    a model made before the sentinels existed (vocab 260) still reads a corpus prepared today."""
    from data.common import data_ids, tokenizer_meta
    meta = tokenizer_meta(load_tokenizer('bytes'))
    assert meta['vocab_size'] == 264 and data_ids(meta) == 260
