"""
pycode_sft: an instruction-tuning set made offline from the Python standard library.
Every documented function (top-level, and by default methods of top-level classes) becomes
one chat example:

  user:       "Write a Python function `quote(s, safe='/')` that does the following. <docstring>"
  assistant:  "```python\n<the function's source, decorators and docstring included>\n```"

  python -m data.pycode_sft.prepare                       # stdlib, byte tokenizer, max_len 512
  python -m data.pycode_sft.prepare --tokenizer=qwen3 --max_len=1024

Tokenised like CoDA's SFT: prompt = the chat template with the generation prompt,
response = tok.encode(response) + [eos]; only the response is ever masked in training.
Writes, per split, {split}.jsonl (text), {split}.bin (flat ids) and {split}_index.npy ((N, 3)
int64 rows offset, prompt_len, total_len), plus meta.json; read back with data.common.load_sft.
Kept: docstring of min_doc..max_doc chars, a body that does something beyond the docstring
(no bare pass / ... / raise NotImplementedError), public names (unless --private=true), total
length <= --max_len tokens, one copy of each distinct response. Split by source file (hash of
its relative path), so no file contributes to both splits. The stdlib's tests are skipped.
"""
import ast
import os
import sys
import textwrap

from tqdm import tqdm

if not __package__:  # typed by path (python data/pycode_sft/prepare.py): import from the repository root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from lib.cli import UserError, run_cli
from data.common import (check_dataset_dir, check_val_frac, get_tokenizer, hash_unit, read_source, run_prepare, split_list,
                         tokenizer_meta, write_sft)
from data.pycode.prepare import find_files

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULTS = dict(
    tokenizer='bytes',   # bytes | gpt2 | path to a Qwen3 tokenizer.json or checkpoint dir
    out_dir=HERE,
    roots='',            # extra comma-separated directories of .py files
    stdlib=True,         # include the running Python's standard library
    skip_tests=True,     # test functions make poor instructions
    methods=True,        # also methods of top-level classes
    private=False,       # also _private names
    fence=True,          # wrap the response in a ```python fence (CoDA's eval prompt opens one)
    min_doc=20,          # docstring length bounds, in characters
    max_doc=2000,
    max_len=512,         # drop examples longer than this many tokens (prompt + response + eos)
    val_frac=0.05,       # fraction of source files held out
    overwrite=False,     # replace a dataset made from other sources or another tokenizer in out_dir
)
TEMPLATES = (
    'Write {subject} that does the following.\n\n{doc}',
    'Implement {subject}.\n\nSpecification:\n{doc}',
    '{doc}\n\nWrite this as {subject}.',
)
TRIVIAL = ('pass', '...', 'raise NotImplementedError', 'raise NotImplementedError()')


def signature(fn):
    ret = f' -> {ast.unparse(fn.returns)}' if fn.returns else ''
    return f'{fn.name}({ast.unparse(fn.args)}){ret}'


def extract_examples(source, relpath='', methods=True, private=False, min_doc=20, max_doc=2000, fence=True,
                     stats=None):
    """(prompt, response, name, lineno) for each documented function in a module's source."""
    stats = {} if stats is None else stats
    count = lambda reason: stats.__setitem__(reason, stats.get(reason, 0) + 1)
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # e.g. Python 2 files kept as lib2to3 test data
        count('syntax_error')
        return []
    lines = source.splitlines()
    funcs = [(node, None) for node in tree.body]
    if methods:
        funcs += [(node, cls.name) for cls in tree.body if isinstance(cls, ast.ClassDef) for node in cls.body]
    out = []
    for fn, cls in funcs:
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        doc = ast.get_docstring(fn)  # cleaned (inspect.cleandoc)
        if not doc:
            continue
        if (fn.name.startswith('_') or (cls or '').startswith('_')) and not private:
            count('private'); continue
        if not min_doc <= len(doc) <= max_doc:
            count('doc_length'); continue
        if all(ast.unparse(s) in TRIVIAL for s in fn.body[1:]):  # abstract stubs teach nothing
            count('trivial_body'); continue
        start = min([d.lineno for d in fn.decorator_list] + [fn.lineno])
        code = textwrap.dedent('\n'.join(lines[start - 1:fn.end_lineno])).strip('\n')
        if code[:1].isspace():  # a less-indented multi-line string inside defeats dedent
            count('indentation'); continue
        kind = 'async ' if isinstance(fn, ast.AsyncFunctionDef) else ''
        subject = (f'a Python {kind}function `{signature(fn)}`' if cls is None else
                   f'the {kind}method `{signature(fn)}` of a Python class `{cls}`')
        name = fn.name if cls is None else f'{cls}.{fn.name}'
        prompt = TEMPLATES[int(hash_unit(f'{relpath}:{name}') * len(TEMPLATES))].format(subject=subject, doc=doc)
        response = f'```python\n{code}\n```' if fence else code
        out.append((prompt, response, name, fn.lineno))
    return out


def tokenize_example(tok, prompt, response):
    """(ids, prompt_len): CoDA SFT layout, chat prompt then response + eos."""
    p = tok.encode_chat([{'role': 'user', 'content': prompt}], add_generation_prompt=True)
    return p + tok.encode(response) + [tok.eos_id], len(p)


def prepare(roots=(), out_dir=HERE, tokenizer='bytes', stdlib=True, skip_tests=True, methods=True, private=False,
            fence=True, min_doc=20, max_doc=2000, max_len=512, val_frac=0.05, overwrite=False):
    """Build the SFT set; returns the meta dict also written to out_dir/meta.json."""
    check_val_frac(val_frac)
    if max_len < 2:
        raise UserError(f'--max_len must be at least 2, got {max_len}')
    if min_doc > max_doc:
        raise UserError(f"--min_doc={min_doc} is above --max_doc={max_doc}; docstrings could never fit")
    tok = get_tokenizer(tokenizer)
    roots = split_list(roots)
    meta = dict(kind='sft', **tokenizer_meta(tok), max_len=max_len, val_frac=val_frac, source='pycode_sft',
                roots=[os.path.abspath(r) for r in roots], stdlib=stdlib)
    check_dataset_dir(out_dir, meta, overwrite)  # before the work, not after it
    files = find_files(roots, stdlib, skip_tests)
    if not files:
        raise UserError('no .py files found; pass --roots=DIR with Python sources (or keep --stdlib=true)')
    stats, seen, by_file = {}, set(), {}  # by_file: relpath -> [(record, ids, prompt_len)]
    for rel, path in tqdm(files, desc='pycode_sft', unit='file'):
        source, reason = read_source(path)
        if source is None:
            stats[reason] = stats.get(reason, 0) + 1
            continue
        for prompt, response, name, lineno in extract_examples(source, rel, methods, private, min_doc, max_doc,
                                                               fence, stats):
            if response in seen:
                stats['duplicate'] = stats.get('duplicate', 0) + 1
                continue
            seen.add(response)
            ids, plen = tokenize_example(tok, prompt, response)
            if len(ids) > max_len:
                stats['too_long'] = stats.get('too_long', 0) + 1
                continue
            record = dict(messages=[dict(role='user', content=prompt), dict(role='assistant', content=response)],
                          source=f'{rel}:{lineno}', name=name)
            by_file.setdefault(rel, []).append((record, ids, plen))
    if len(by_file) < 2:
        raise UserError(f'examples came from {len(by_file)} source files, need at least 2 for a split by file; '
                        'add sources with --roots, or raise --max_len')
    # split by file; if one split is empty (tiny inputs), the file nearest the boundary crosses over
    u = {rel: hash_unit(rel) for rel in by_file}
    val = {rel for rel in by_file if u[rel] < val_frac}
    if not val:
        val = {min(by_file, key=u.get)}
    if len(val) == len(by_file):
        val.remove(max(by_file, key=u.get))
    examples = {split: [ex for rel in sorted(by_file) if (rel in val) == (split == 'val') for ex in by_file[rel]]
                for split in ('train', 'val')}
    meta.update({f'{split}_files': sum((rel in val) == (split == 'val') for rel in by_file) for split in ('train', 'val')})
    meta.update(methods=methods, fence=fence, skipped=stats)
    return write_sft(out_dir, meta, examples, overwrite)


def main(argv):
    ranges = dict(val_frac='(0, 1)', min_doc='[0, inf)', max_doc='[1, inf)', max_len='[2, inf)')
    return run_prepare(argv, DEFAULTS, __doc__, ranges, prepare)


if __name__ == '__main__':
    run_cli(main)
