"""
pycode: a real code corpus built offline from the Python standard library of the running
interpreter (about 1,800 .py files, 30 MB), plus any extra directories you name.

  python -m data.pycode.prepare                            # stdlib, byte tokenizer
  python -m data.pycode.prepare --tokenizer=gpt2
  python -m data.pycode.prepare --tokenizer=qwen3 --out_dir=data/pycode_qwen3
  python -m data.pycode.prepare --roots=/path/to/site-packages,~/src

Writes train.bin / val.bin / meta.json (format: data/common.py). Choices:
- The stdlib's own tests (Lib/test, lib2to3/tests, idlelib/idle_test ...) are INCLUDED by default:
  they are two thirds of the code and are ordinary Python; --skip_tests=true leaves them out.
- site-packages inside the stdlib directory is never scanned (add it with --roots if you want it).
- Files are read in sorted relative-path order, decoded as Python does (PEP 263 coding cookie,
  else UTF-8); undecodable files are skipped and counted (--on_decode_error=replace keeps them
  with U+FFFD), as are empty files, files over --max_file_kb and byte-identical duplicates.
- The split is by file: a file is in val iff sha256(relative path) maps below --val_frac, so it
  never changes when files are added or removed elsewhere.
"""
import os
import sys
import sysconfig

if not __package__:  # typed by path (python data/pycode/prepare.py): import from the repository root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from lib.cli import UserError, run_cli
from data.common import file_docs, get_tokenizer, list_files, run_prepare, split_list, write_corpus

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULTS = dict(
    tokenizer='bytes',      # bytes | gpt2 | path to a Qwen3 tokenizer.json or checkpoint dir
    out_dir=HERE,           # where train.bin, val.bin, meta.json go
    roots='',               # extra comma-separated directories scanned for .py files
    stdlib=True,            # include the running Python's standard library
    skip_tests=False,       # leave out test directories (test/, tests/, idle_test/) and test_*.py
    val_frac=0.03,          # fraction of files (by hash of their path) held out for validation
    max_file_kb=512,        # skip larger files (generated data such as pydoc_data/topics.py)
    on_decode_error='skip', # skip | replace: what to do with a file that cannot be decoded
    overwrite=False,        # replace a dataset made from other sources or another tokenizer in out_dir
)


def stdlib_dir():
    return sysconfig.get_paths()['stdlib']


def find_files(roots=(), stdlib=True, skip_tests=False, exts=('.py',)):
    """Sorted (relpath, path) pairs of the stdlib, then of each extra root."""
    files = []
    if stdlib:
        files += list_files(stdlib_dir(), exts, skip_tests, prune=('site-packages', 'dist-packages'))
    for root in roots:
        files += list_files(os.path.expanduser(root), exts, skip_tests)
    return files


def prepare(roots=(), out_dir=HERE, tokenizer='bytes', val_frac=0.03, stdlib=True, skip_tests=False,
            max_file_kb=512, on_decode_error='skip', overwrite=False):
    """Build the corpus; returns the meta dict also written to out_dir/meta.json."""
    tok = get_tokenizer(tokenizer)
    roots = split_list(roots)
    files = find_files(roots, stdlib, skip_tests)
    if not files:
        raise UserError('no .py files found; pass --roots=DIR with Python sources (or keep --stdlib=true)')
    skipped = {}
    docs = file_docs(files, skipped, max_file_kb, on_decode_error)
    info = dict(source='pycode', roots=([stdlib_dir()] if stdlib else []) + [os.path.abspath(r) for r in roots],
                skip_tests=skip_tests, files_found=len(files), skipped=skipped)
    return write_corpus(docs, out_dir, tok, val_frac, info, total=len(files), desc='pycode', overwrite=overwrite)


def main(argv):
    return run_prepare(argv, DEFAULTS, __doc__, dict(val_frac='(0, 1)', max_file_kb='(0, inf)'), prepare, 'files')


if __name__ == '__main__':
    run_cli(main)
