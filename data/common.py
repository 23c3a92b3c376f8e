"""
What the three data scripts share, and what train.py reads back.

On disk a pre-training dataset is a directory with
  train.bin, val.bin   flat token ids (uint16 when the vocabulary fits, else uint32): every
                       document is followed by the tokenizer's EOS, as in nanoGPT's openwebtext
  meta.json            tokenizer spec and ids, dtype, token and document counts
An SFT dataset adds, per split, {split}_index.npy: an (N, 3) int64 array of
(offset, prompt_len, total_len) rows into {split}.bin, and {split}.jsonl with the text.

Files are written under a temporary name and renamed into place only once everything is done,
so an error or Ctrl-C never leaves a half-written .bin behind an older, complete dataset.
"""
import gzip
import hashlib
import io
import json
import os
import stat
import tempfile
import time
import tokenize
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lib.cli import UserError, check_ranges, check_writable, parse_args, writing

TEST_DIRS = {'test', 'tests', 'idle_test'}  # stdlib test packages (Lib/test, lib2to3/tests, idlelib/idle_test ...)


# -----------------------------------------------------------------------------
# command line: the main() of the prepare scripts, and the overwrite rule of every output file

def run_prepare(argv, defaults, doc, ranges, prepare, unit='docs'):
    """A prepare script's main(): its options, checked, then prepare(**options) and one line saying what
    it wrote (the documents of a pre-training set counted as `unit`, or an SFT set's examples)."""
    cfg = parse_args(argv, defaults, doc)
    check_ranges(cfg, ranges, defaults)
    t0 = time.time()
    m = prepare(**cfg)
    if m['kind'] == 'sft':
        splits = [f"{s} {m[f'{s}_examples']} examples ({m[f'{s}_tokens']:,} tokens)" for s in ('train', 'val')]
    else:
        splits = [f"{s} {m[f'{s}_tokens']:,} tokens ({m[f'{s}_docs']} {unit})" for s in ('train', 'val')]
    skipped = f", skipped {m['skipped']}" if 'skipped' in m else ''
    print(f"wrote {cfg['out_dir']}: {', '.join(splits)}, {m['dtype']}{skipped}, {time.time() - t0:.1f}s")
    return m


def check_out_file(path, flag='--out', overwrite=False, own=None, what='an earlier output of this command'):
    """The overwrite rule for one output file, checked before the work, not after it: the file must be
    writable where asked and, if it exists, be `what` (own(path) -> True) and the user must pass
    --overwrite. A file of another kind (a checkpoint under --out=...) is never replaced."""
    if not path:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(parent):
        raise UserError(f"{flag}={path}: " + ("a directory; name a file" if os.path.isdir(path) else f"no directory {parent} to write it in"))
    check_writable(parent)
    if not os.path.lexists(path):
        return
    if not os.path.isfile(path) or (own is not None and not own(path)):
        raise UserError(f"{flag}={path} exists and is not {what}; it is never replaced: pick another path")
    if not overwrite:
        raise UserError(f"{flag}={path} exists; pick another path, or pass --overwrite to replace it")


def json_with_keys(*keys):
    """own() for check_out_file: a JSON object holding these keys (what eval.py / bench.py write)."""
    def own(path):
        try:
            with open(path, encoding='utf-8') as f:
                obj = json.load(f)
        except (ValueError, UnicodeDecodeError, OSError):
            return False
        return isinstance(obj, dict) and set(keys) <= set(obj)
    return own


def write_atomic(path, write, mode='w'):
    """write(f) into a temporary file next to path, flushed to disk, then renamed over path: a crash
    or Ctrl-C never leaves a half-written file, and the old one stays until the new one is whole."""
    d, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f'.{name}.', suffix='.tmp', dir=d)
    try:
        with writing(path), os.fdopen(fd, mode, **({'encoding': 'utf-8'} if 'b' not in mode else {})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, obj):
    write_atomic(path, lambda f: json.dump(obj, f, indent=1))


KINDS = {str: 'a string', int: 'an integer', 'id': 'an integer or a string', 'strings': 'a list of strings'}


def check_record(rec, where, fix, required=(), optional=()):
    """A record read from a file (e.g. one JSONL line), checked field by field: required and optional
    are ((name, kind), ...) with kind str, int, 'id' (int or str) or 'strings' (a list of str)."""
    if not isinstance(rec, dict):
        raise UserError(f"{where}: a JSON {type(rec).__name__}, not an object; {fix}")
    for (name, kind), need in [(f, True) for f in required] + [(f, False) for f in optional]:
        if name not in rec:
            if need:
                raise UserError(f"{where}: no field {name!r}; {fix}")
            continue
        v = rec[name]
        ok = (isinstance(v, list) and all(isinstance(t, str) for t in v) if kind == 'strings' else
              isinstance(v, (int, str)) if kind == 'id' else isinstance(v, kind)) and not isinstance(v, bool)
        if not ok:
            raise UserError(f"{where}: {name!r} must be {KINDS[kind]}, got {type(v).__name__} {str(v)[:40]!r}; {fix}")
    return rec


def split_list(s):
    """'a,b,,c' -> ['a', 'b', 'c'] (comma-separated CLI lists)."""
    return [x.strip() for x in s.split(',') if x.strip()] if isinstance(s, str) else list(s or [])


# -----------------------------------------------------------------------------
# finding and reading source files

def list_files(root, exts=('.py',), skip_tests=False, prune=()):
    """Sorted (relpath, path) of the files under root whose name ends with one of exts.
    Hidden directories, __pycache__ and any directory named in prune are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f'{root} is not a directory; pass an existing directory of source files')
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if not d.startswith('.') and d != '__pycache__' and d not in prune
                       and not (skip_tests and d in TEST_DIRS)]
        for f in filenames:
            if f.endswith(tuple(exts)) and not (skip_tests and f.startswith('test_')):
                found.append(((rel_dir / f).as_posix(), os.path.join(dirpath, f)))
    return sorted(found)


def read_source(path, on_decode_error='skip'):
    """Text of a source file, or (None, reason) if it must be skipped.
    .py files are decoded as Python does (PEP 263 coding cookie, UTF-8 otherwise); other files
    as UTF-8. Undecodable files are skipped, or decoded with U+FFFD if on_decode_error='replace'."""
    if not stat.S_ISREG(os.stat(path).st_mode):  # a named pipe or a device would block or never end
        return None, 'special'
    raw = Path(path).read_bytes()
    if b'\x00' in raw:
        return None, 'binary'
    enc = 'utf-8-sig'
    if str(path).endswith('.py'):
        try:
            enc = tokenize.detect_encoding(io.BytesIO(raw).readline)[0]
        except SyntaxError:  # unknown or contradictory coding cookie
            enc = 'utf-8-sig'
    try:
        return raw.decode(enc), None
    except (UnicodeDecodeError, LookupError):
        if on_decode_error == 'replace':
            return raw.decode('utf-8', errors='replace'), 'replaced'
        return None, 'undecodable'


def file_docs(files, stats, max_file_kb=512, on_decode_error='skip'):
    """Yield (relpath, text) for files [(relpath, path)], skipping empty, too large, undecodable
    and byte-identical duplicate files; each skip is counted in stats[reason]."""
    if on_decode_error not in ('skip', 'replace'):
        raise UserError(f'--on_decode_error must be skip or replace, got {on_decode_error!r}')
    seen = set()
    for rel, path in files:
        try:
            st = os.stat(path)
            size = st.st_size
        except OSError:
            st = size = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            reason, text = 'special', None  # named pipes, sockets, devices: never opened
        elif size is None or not os.access(path, os.R_OK):
            reason, text = 'unreadable', None
        elif size > max_file_kb * 1024:
            reason, text = 'too_large', None  # e.g. pydoc_data/topics.py: 750 kB of generated text
        else:
            text, reason = read_source(path, on_decode_error)
            if text is not None and not text.strip():
                text, reason = None, 'empty'  # mostly empty __init__.py files
            elif text is not None:
                digest = hashlib.sha1(text.encode('utf-8', 'surrogatepass')).digest()
                if digest in seen:
                    text, reason = None, 'duplicate'
                seen.add(digest)
        if reason:
            stats[reason] = stats.get(reason, 0) + 1
        if text is not None:
            yield rel, text


def read_jsonl(path, text_field='text', key_field=''):
    """Yield (key, text) from a .jsonl or .jsonl.gz file. The split key is record[key_field] when
    given (e.g. a file path, so all records of one file land in one split), else the text itself."""
    path = Path(path)
    opener = gzip.open if path.suffix == '.gz' else open
    try:
        with opener(path, 'rt', encoding='utf-8') as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f'{path} line {lineno} is not valid JSON ({e.msg}); '
                                    'pass a JSONL file with one JSON object per line') from None
                if not isinstance(rec, dict) or not isinstance(rec.get(text_field), str):
                    raise UserError(f'{path} line {lineno} has no string field {text_field!r}; '
                                    'choose the text field with --text_field=NAME')
                key = rec.get(key_field) if key_field else None
                yield str(key) if key is not None else rec[text_field], rec[text_field]
    except (UnicodeDecodeError, OSError, EOFError) as e:  # not UTF-8, or a corrupt .gz
        raise UserError(f'cannot read {path} ({type(e).__name__}: {e}); pass a UTF-8 JSONL file') from None


# -----------------------------------------------------------------------------
# train/val split and token files

def hash_unit(key):
    """A deterministic number in [0, 1) from a string: a file lands in val iff hash_unit(relpath) < val_frac,
    independent of the machine, the file order or the other files."""
    return int.from_bytes(hashlib.sha256(key.encode('utf-8', 'surrogatepass')).digest()[:8], 'big') / 2**64


def token_dtype(vocab_size):
    return 'uint16' if vocab_size <= 2**16 else 'uint32'


DATASET_FILES = ('meta.json', 'train.bin', 'val.bin', 'train_index.npy', 'val_index.npy', 'train.jsonl', 'val.jsonl')
IDENTITY = ('kind', 'tokenizer', 'source', 'roots', 'input', 'stdlib', 'skip_tests', 'ext')  # what a dataset is made of


def check_dataset_dir(out_dir, meta, overwrite=False):
    """The overwrite rule for datasets, before any work: out_dir may hold no dataset, or the same one
    (same kind, tokenizer and sources: a rebuild), or with --overwrite any other one."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f'--out_dir={out} is a file; pass a directory')
    found = [f for f in DATASET_FILES if (out / f).exists()]
    if not found or overwrite:
        return
    old = None
    if (out / 'meta.json').is_file():
        try:
            old = json.loads((out / 'meta.json').read_text(encoding='utf-8'))
        except (ValueError, UnicodeDecodeError):
            pass
    if not isinstance(old, dict):
        raise UserError(f'{out} holds dataset files ({", ".join(found)}) without a readable meta.json; '
                        f'pass another --out_dir, or --overwrite to replace them')
    differ = [k for k in IDENTITY if old.get(k) != meta.get(k)]
    if differ:
        k = differ[0]
        raise UserError(f'{out} holds another dataset ({k} {old.get(k)!r}, this one {meta.get(k)!r}); '
                        f'pass another --out_dir, or --overwrite to replace it')


class Staging:
    """Write files under temporary names in out_dir; commit() renames them all into place (meta.json
    last) and removes the dataset files it did not write (an SFT index under a pre-training set would
    make a mixed directory); leaving the context without commit() deletes them, and an OSError of a file
    written meanwhile (a full disk) names out_dir."""

    def __init__(self, out_dir, meta, overwrite=False):
        check_dataset_dir(out_dir, meta, overwrite)
        self.out_dir = Path(out_dir)
        self.created = not self.out_dir.exists()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.tmp = {}

    def path(self, name):
        self.tmp[name] = self.out_dir / f'.{name}.tmp{os.getpid()}'
        return self.tmp[name]

    def write_text(self, name, text):
        self.path(name).write_text(text, encoding='utf-8')

    def commit(self):
        (self.out_dir / 'meta.json').unlink(missing_ok=True)  # no meta.json vouches for a half-replaced set
        for name in DATASET_FILES:
            if name not in self.tmp:
                (self.out_dir / name).unlink(missing_ok=True)
        names = sorted(self.tmp, key=lambda n: n == 'meta.json')  # meta.json last: it vouches for the rest
        for name in names:
            os.replace(self.tmp.pop(name), self.out_dir / name)

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        for p in self.tmp.values():
            p.unlink(missing_ok=True)
        if self.created and self.out_dir.is_dir() and not any(self.out_dir.iterdir()):
            self.out_dir.rmdir()  # a failed first run leaves no empty directory behind
        if exc is not None:
            with writing(self.out_dir):
                raise exc


def get_tokenizer(spec):
    """load_tokenizer(spec), with a relative tokenizer path made absolute so that the spec stored
    in meta.json reloads the same tokenizer from any directory."""
    from lib.tokenizer import load_tokenizer
    if not isinstance(spec, str):
        return spec  # already a tokenizer
    return load_tokenizer(os.path.abspath(spec) if os.path.exists(spec) else spec)


def data_ids(meta):
    """How many ids a prepared corpus can hold: the plain tokens and the pad/eos/mask specials. A
    tokenizer's FIM sentinels, appended after them (bytes, gpt2), only appear once train.py's FIM
    rearranges a window, so models made before they existed still fit the data."""
    return max(meta['mask_id'], meta['eos_id'], meta['pad_id']) + 1


def tokenizer_meta(tok):
    return dict(tokenizer=tok.spec, vocab_size=tok.vocab_size, mask_id=tok.mask_id, eos_id=tok.eos_id,
                pad_id=tok.pad_id, dtype=token_dtype(tok.vocab_size))


def check_val_frac(val_frac):
    if not 0 < val_frac < 1:
        raise UserError(f'--val_frac must be between 0 and 1, got {val_frac}')


def write_corpus(docs, out_dir, tok, val_frac=0.03, info=None, total=None, desc='tokenizing', overwrite=False):
    """Tokenise docs, an iterable of (split_key, text), into out_dir/{train,val}.bin + meta.json.
    Each document becomes tok.encode(text) + [eos]. Returns the meta dict."""
    check_val_frac(val_frac)
    meta = dict(kind='pretrain', **tokenizer_meta(tok), **(info or {}))
    dtype = np.dtype(meta['dtype'])
    ndocs, ntok = dict(train=0, val=0), dict(train=0, val=0)
    # the train doc nearest to val and the val doc nearest to train, moved across if a split ends empty
    edge = dict(train=(2.0, 0, 0), val=(-1.0, 0, 0))
    with Staging(out_dir, meta, overwrite) as st:
        files = {s: open(st.path(f'{s}.bin'), 'wb') for s in ('train', 'val')}
        try:
            for key, text in tqdm(docs, total=total, desc=desc, unit='doc'):
                u = hash_unit(key)
                split = 'val' if u < val_frac else 'train'
                ids = np.asarray(tok.encode(text) + [tok.eos_id], dtype=dtype)
                span = (u, ntok[split], ntok[split] + len(ids))
                if (split == 'train' and u < edge['train'][0]) or (split == 'val' and u > edge['val'][0]):
                    edge[split] = span
                files[split].write(ids.tobytes())
                ndocs[split] += 1
                ntok[split] += len(ids)
        finally:
            for f in files.values():
                f.close()
        if ndocs['train'] + ndocs['val'] < 2:
            raise UserError(f'found {ndocs["train"] + ndocs["val"]} usable documents, need at least 2 '
                            'for a train/val split; check the input path and --ext')
        for src, dst in (('train', 'val'), ('val', 'train')):
            if ndocs[dst] == 0:  # tiny corpus: move one document so that both splits exist
                arr = np.fromfile(st.tmp[f'{src}.bin'], dtype=dtype)
                _, a, b = edge[src]
                np.concatenate([arr[:a], arr[b:]]).tofile(st.tmp[f'{src}.bin'])
                arr[a:b].tofile(st.tmp[f'{dst}.bin'])
                ndocs[src], ndocs[dst], ntok[src], ntok[dst] = ndocs[src] - 1, 1, ntok[src] - (b - a), b - a
        meta.update(val_frac=val_frac, train_docs=ndocs['train'], val_docs=ndocs['val'],
                    train_tokens=ntok['train'], val_tokens=ntok['val'])
        st.write_text('meta.json', json.dumps(meta, indent=2) + '\n')
        st.commit()
    return meta


def write_sft(out_dir, meta, examples, overwrite=False):
    """Write an SFT set: examples = {'train': [(record, ids, prompt_len)], 'val': [...]} becomes per split
    {split}.jsonl (the records), {split}.bin (flat ids) and {split}_index.npy ((N, 3) int64 rows offset,
    prompt_len, total_len), then meta.json with {split}_examples and {split}_tokens added. Returns meta."""
    dtype = np.dtype(meta['dtype'])
    with Staging(out_dir, meta, overwrite) as st:
        for split in ('train', 'val'):
            ex = examples[split]
            lens = np.array([len(ids) for _, ids, _ in ex], dtype=np.int64)
            offsets = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)[:len(ex)]
            index = np.stack([offsets, np.array([p for _, _, p in ex], dtype=np.int64), lens], axis=1)
            np.concatenate([np.asarray(ids, dtype=dtype) for _, ids, _ in ex] or [np.zeros(0, dtype)]).tofile(st.path(f'{split}.bin'))
            with open(st.path(f'{split}_index.npy'), 'wb') as f:
                np.save(f, index)
            st.write_text(f'{split}.jsonl', ''.join(json.dumps(r, ensure_ascii=False) + '\n' for r, _, _ in ex))
            meta.update({f'{split}_examples': len(ex), f'{split}_tokens': int(lens.sum())})
        st.write_text('meta.json', json.dumps(meta, indent=2) + '\n')
        st.commit()
    return meta


# -----------------------------------------------------------------------------
# reading back (train.py)

META_FIELDS = dict(tokenizer=str, vocab_size=int, mask_id=int, eos_id=int, pad_id=int, dtype=str)


def load_meta(data_dir):
    """meta.json of a prepared dataset directory, as a dict, checked field by field."""
    path = Path(data_dir) / 'meta.json'
    if not path.is_file():
        raise UserError(f'no dataset at {data_dir} (missing meta.json); '
                        'run python -m data.pycode.prepare (or data.prepare_custom) from the repository root first')
    try:
        meta = json.loads(path.read_text(encoding='utf-8'))
    except (ValueError, UnicodeDecodeError):
        raise UserError(f'{path} is corrupt; rerun the prepare script that made it') from None
    if not isinstance(meta, dict):
        raise UserError(f'{path} holds a {type(meta).__name__}, not a JSON object; rerun the prepare script that made it')
    for key, kind in META_FIELDS.items():
        v = meta.get(key)
        if type(v) is not kind or (kind is int and v < 0):
            got = 'nothing' if key not in meta else repr(v)
            raise UserError(f'{path}: {key!r} must be a {"non-negative int" if kind is int else kind.__name__}, '
                            f'got {got}; rerun the prepare script that made it')
    for key, known in (('dtype', ('uint16', 'uint32')), ('kind', ('pretrain', 'sft'))):
        if meta.get(key, 'pretrain') not in known:
            raise UserError(f"{path}: {key} {meta[key]!r} is unknown (use {' or '.join(known)}); rerun the prepare script")
    for key in ('train_tokens', 'val_tokens'):
        if key in meta and (type(meta[key]) is not int or meta[key] < 0):
            raise UserError(f'{path}: {key!r} must be a non-negative int, got {meta[key]!r}; rerun the prepare script')
    return meta


def load_tokens(data_dir, split, meta=None):
    """The flat token array of a split ('train' or 'val') as a read-only np.memmap."""
    meta = meta or load_meta(data_dir)
    path = Path(data_dir) / f'{split}.bin'
    n = meta.get(f'{split}_tokens')
    dtype = np.dtype(meta['dtype'])
    if not path.is_file() or n is None or path.stat().st_size != n * dtype.itemsize:
        raise UserError(f'{path} is missing or does not match meta.json; rerun the prepare script')
    return np.memmap(path, dtype=dtype, mode='r', shape=(n,))


@dataclass
class SFTSplit:
    """One tokenised SFT split: example i is tokens[offsets[i] : offsets[i] + total_len[i]],
    of which the first prompt_len[i] tokens are the chat prompt and the rest the response + EOS."""
    tokens: np.ndarray      # flat memmap, dtype from meta
    offsets: np.ndarray     # (N,) int64
    prompt_len: np.ndarray  # (N,) int64
    total_len: np.ndarray   # (N,) int64

    def __len__(self):
        return len(self.offsets)

    def example(self, i):
        """(ids as an int64 array, prompt_len) of example i."""
        o = self.offsets[i]
        return np.asarray(self.tokens[o:o + self.total_len[i]], dtype=np.int64), int(self.prompt_len[i])


def load_sft(data_dir, split, meta=None):
    """An SFT split written by data/pycode_sft/prepare.py (or anything using the same layout)."""
    meta = meta or load_meta(data_dir)
    if meta.get('kind') != 'sft':
        raise UserError(f'{data_dir} is not an SFT dataset; run python -m data.pycode_sft.prepare')
    index_path = Path(data_dir) / f'{split}_index.npy'
    if not index_path.is_file():
        raise UserError(f'{index_path} is missing; rerun python -m data.pycode_sft.prepare')
    index = np.load(index_path)
    return SFTSplit(load_tokens(data_dir, split, meta), index[:, 0], index[:, 1], index[:, 2])
