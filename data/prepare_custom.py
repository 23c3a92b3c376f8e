"""
Prepare your own corpus in the pycode format (train.bin, val.bin, meta.json; see data/common.py).

  python -m data.prepare_custom --input=~/src/myproject --ext=.py,.js --out_dir=data/mine
  python -m data.prepare_custom --input=stack_python.jsonl --text_field=content \
      --key_field=max_stars_repo_path --tokenizer=qwen3 --out_dir=data/stack

--input is a directory (every file ending in one of --ext, in sorted relative-path order; the
split is by hash of that path) or a .jsonl / .jsonl.gz file with one JSON object per line, e.g.
a dump of The Stack (the text is record[--text_field]; the split is by hash of
record[--key_field] if given, else of the text, so duplicates never straddle the split).
Train with: python train.py --dataset=<out_dir> (see train.py).
"""
import os
import sys

if not __package__:  # typed by path (python data/prepare_custom.py): import from the repository root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lib.cli import UserError, run_cli
from data.common import file_docs, get_tokenizer, list_files, read_jsonl, run_prepare, split_list, write_corpus

DEFAULTS = dict(
    input='',               # a directory of source files, or a .jsonl / .jsonl.gz file
    out_dir='',             # required: where train.bin, val.bin, meta.json go
    tokenizer='bytes',      # bytes | gpt2 | path to a Qwen3 tokenizer.json or checkpoint dir
    ext='.py',              # directory input: comma-separated file name endings
    text_field='text',      # JSONL input: field holding the document
    key_field='',           # JSONL input: field the split is hashed on (default: the text)
    val_frac=0.03,
    max_file_kb=1024,       # directory input: skip larger files
    on_decode_error='skip', # skip | replace
    overwrite=False,        # replace a dataset made from other sources or another tokenizer in out_dir
)


def prepare_custom(input, out_dir, tokenizer='bytes', ext='.py', text_field='text', key_field='', val_frac=0.03,
                   max_file_kb=1024, on_decode_error='skip', overwrite=False):
    """Tokenise a directory or JSONL file into out_dir; returns the meta dict."""
    if not input or not out_dir:
        raise UserError('--input and --out_dir are required; e.g. --input=~/src --out_dir=data/mine')
    input = os.path.expanduser(input)
    tok = get_tokenizer(tokenizer)
    info = dict(source='custom', input=os.path.abspath(input))
    if os.path.isdir(input):
        exts = split_list(ext)
        files = list_files(input, exts)
        if not files:
            raise UserError(f'no files ending in {",".join(exts)} under {input}; pass --ext=.py,.js,...')
        skipped = info['skipped'] = {}
        docs, total = file_docs(files, skipped, max_file_kb, on_decode_error), len(files)
        info.update(ext=exts, files_found=len(files))
    elif os.path.exists(input) and not os.path.isfile(input):
        raise UserError(f'--input {input} is not a regular file (a named pipe or a device?); pass a directory or a .jsonl file')
    elif os.path.isfile(input):
        if not input.endswith(('.jsonl', '.jsonl.gz', '.json')):
            raise UserError(f'{input} is neither a directory nor a .jsonl file; pass one of those with --input')
        docs, total = read_jsonl(input, text_field, key_field), None
        info.update(text_field=text_field, key_field=key_field)
    else:
        raise UserError(f'--input {input} does not exist; pass a directory or a .jsonl file')
    return write_corpus(docs, out_dir, tok, val_frac, info, total=total, desc='custom', overwrite=overwrite)


def main(argv):
    return run_prepare(argv, DEFAULTS, __doc__, dict(val_frac='(0, 1)', max_file_kb='(0, inf)'), prepare_custom)


if __name__ == '__main__':
    run_cli(main)
