"""
The command line of every entry point (train.py, sample.py, eval.py, bench.py, speedrun.py, the data/
scripts, experiments/run.py): one error type, checks of numbers, dtypes and devices, one option parser
and run_cli, which turns a mistake of the user into one line `error: <problem>; <fix>` and exit code 1;
so too an OSError of a path (a read-only, forbidden or full disk: `writing` names the path a failed
write leaves unnamed, and check_writable finds it before the work).

Options are nanoGPT's --key=value, each typed by its default; a bare --flag sets a boolean. train.py
also takes config files (module-level assignments, e.g. config/toy_ar.py) and calls its options
config keys, which a file can set as well as the command line.
"""
import ast
import errno
import json
import os
import re
import sys
import tempfile
import traceback
from contextlib import contextmanager

import torch


class UserError(Exception):
    """A problem the user can fix (bad path, bad config...): run_cli prints it as one line."""


# what run_cli prints as one line: a UserError, a file that is not UTF-8, and an OSError of a path (os_error_line)
USER_ERRORS = (UserError, UnicodeDecodeError, OSError)
# the fix of an OSError, by its cause
FIXES = {errno.EROFS: 'pick a path on a writable disk', errno.EACCES: 'check its permissions or pick another path',
         errno.EPERM: 'check its permissions or pick another path', errno.ENOSPC: 'free some space or pick another disk',
         errno.EDQUOT: 'free some space or pick another disk', errno.ENOTDIR: 'a part of the path is a file, not a directory',
         errno.EISDIR: 'name a file, not a directory', errno.ENOENT: 'check the path'}


def run_cli(main, interrupted='interrupted; nothing was overwritten'):
    """Run main(argv); a user-caused problem becomes one `error: ...` line and exit code 1."""
    try:
        main(sys.argv[1:])
    except USER_ERRORS as e:
        line = os_error_line(e) if isinstance(e, OSError) else str(e)
        if line is None:
            raise
        print(f'error: {line}', file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # (train.py stops on Ctrl-C itself once its loop runs)
        print(f'error: {interrupted}', file=sys.stderr)
        sys.exit(1)


def os_error_line(e):
    """An OSError as one line: its path, the cause and the fix; one raised with a message of ours
    (FileNotFoundError('...')) is that message. None (a traceback) for one of no path and no known cause."""
    if e.errno is None:
        return str(e)
    if e.filename is None and e.errno not in FIXES:
        return None
    path = '' if e.filename is None else f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 else '') + ': '
    return path + e.strerror + (f"; {FIXES[e.errno]}" if e.errno in FIXES else '')


@contextmanager
def writing(path):
    """An OSError raised while writing path names a path, so that run_cli prints it as one line: a failed
    write, flush or fsync of an open file names none (then path)."""
    try:
        yield
    except Exception as e:
        err = os_error_of(e)
        if err is None or err is e and e.filename is not None:
            raise
        raise OSError(err.errno, err.strerror, err.filename or str(path)) from None


def os_error_of(e):
    """The OSError behind e, or None: e itself, the one torch's zip writer wraps in a RuntimeError, or the one
    safetensors' writer names in its message ('... (os error 28)')."""
    if isinstance(e, OSError) or isinstance(e.__context__, OSError):
        err = e if isinstance(e, OSError) else e.__context__
        return err if err.errno is not None else None
    m = re.search(r'\(os error (\d+)\)', str(e))
    return OSError(int(m[1]), os.strerror(int(m[1]))) if m else None


def check_writable(path):
    """Before the work, not after it: raise the OSError that writing in the directory path (made if missing)
    would raise: a read-only file system, no permission, no space, a file where a directory must be."""
    d = os.path.abspath(path)
    while not os.path.isdir(d):
        if os.path.lexists(d):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), d)
        d = os.path.dirname(d)
    try:
        fd, probe = tempfile.mkstemp(prefix='.write-test-', dir=d)
    except OSError as e:
        raise OSError(e.errno, e.strerror, d) from None
    os.close(fd)
    os.remove(probe)


# -----------------------------------------------------------------------------
# the option parser

BOOLS = {'1': True, 'true': True, 'yes': True, '0': False, 'false': False, 'no': False}


def parse_args(argv, defaults, doc='', kinds=None):
    """Every option: defaults, with what argv sets (parse_options)."""
    return {**defaults, **parse_options(argv, defaults, doc, kinds)}


def parse_options(argv, defaults, doc='', kinds=None, config_files=False):
    """-> {key: value} of the options argv sets, each of the type of its default (or kinds[key], for a
    default of None). --help prints doc and the defaults, and exits.
    config_files (train.py): an argument ending in .py is a config file, whose module-level names set keys;
    keys need no leading dashes; and an error names the key and where it was set."""
    kinds = {k: (kinds or {}).get(k) or (str if v is None else type(v)) for k, v in defaults.items()}
    given = {}
    for arg in argv:
        if arg in ('-h', '--help'):
            print_help(doc, defaults, 'config keys' if config_files else 'options')
            sys.exit(0)
        if config_files and '=' not in arg and arg.endswith('.py'):
            if not os.path.isfile(arg):
                raise UserError(f"config file {arg} not found; see config/ for examples")
            items = read_config_file(arg, defaults)
        elif not config_files and not arg.startswith('--'):
            raise UserError(f'unexpected argument {arg!r}; options look like --key=value (see --help)')
        else:
            key, eq, val = (arg.lstrip('-') if config_files else arg[2:]).partition('=')
            if not eq and arg.startswith('--') and kinds.get(key) is bool:
                eq, val = '=', 'true'  # a bare --flag sets a boolean (--overwrite, --compile)
            if not eq and config_files:
                raise UserError(f"cannot parse argument {arg!r}; use --key=value or a config file path")
            if not eq and key in defaults:
                raise UserError(f'--{key} needs a value; use --{key}=...')
            items = [(key, val, 'command line')]
        for key, value, source in items:
            if key not in defaults:
                raise UserError(f"unknown config key {key!r} (from {source}); valid keys: {', '.join(defaults)}"
                                if config_files else f'unknown option --{key}; valid options: ' +
                                ' '.join('--' + k for k in defaults))
            given[key] = typed(key, value, source, defaults[key], kinds[key], config_files)
    return given


def typed(key, value, source, default, kind, config_files):
    """value (a command-line string, or any value of a config file) as a kind, or a UserError."""
    if isinstance(value, str) and source == 'command line' and kind is not str:
        if kind is bool:
            value = BOOLS.get(value.lower(), value)
        else:
            try:
                value = kind(value)
            except ValueError:
                pass
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is kind:
        return value
    if config_files:
        why = ' (a trailing comma makes a tuple)' if isinstance(value, tuple) else ''
        raise UserError(f"{key} must be a {kind.__name__}, got {value!r}{why} (from {source}); e.g. {key}={default!r}")
    if kind is bool:
        raise UserError(f'--{key} expects true or false, got {value!r}; e.g. --{key}=true')
    raise UserError(f'--{key} expects a {kind.__name__}, got {value!r}')


def print_help(doc, defaults, noun):
    print(doc.strip() + f'\n\n{noun} (defaults):\n' + '\n'.join(f'  --{k}={v}' for k, v in defaults.items()))


def read_config_file(path, names):
    """[(key, value, source)] of a config file's module-level names. A config key takes any value (typed() checks
    it); other names holding plain values are unknown keys; imports, functions, _names are skipped. Errors in
    the file are one line naming the file and its line."""
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
        code = compile(text, path, 'exec')
    except SyntaxError as e:
        raise UserError(f"{path} line {e.lineno}: {e.msg}; fix the config file") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"cannot read config file {path} ({type(e).__name__}: {e}); pass a UTF-8 Python file") from None
    ns = {}
    try:
        exec(code, ns)
    except Exception as e:
        line = next((fr.lineno for fr in reversed(traceback.extract_tb(e.__traceback__)) if fr.filename == path), '?')
        raise UserError(f"{path} line {line}: {type(e).__name__}: {e}; fix the config file") from None
    lines = {}  # name -> line of its last assignment
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in getattr(node, 'targets', [getattr(node, 'target', None)]):
                for n in ast.walk(target):
                    if isinstance(n, ast.Name):
                        lines[n.id] = max(lines.get(n.id, 0), node.lineno)
    plain = (bool, int, float, str, type(None), tuple, list, dict, set)
    return [(k, v, f"{path} line {lines.get(k, '?')}") for k, v in ns.items()
            if not k.startswith('_') and (k in names or isinstance(v, plain))]


# -----------------------------------------------------------------------------
# checks of the values: every command runs these before doing any work

DTYPES = ('float32', 'bfloat16', 'float16')


def check_ranges(values, ranges, defaults=None, prefix='--'):
    """values: option -> number; ranges: option -> interval, e.g. '(0, inf)' or '[0, 1)'. A value
    outside its interval (or NaN) is a UserError naming the option, the interval and the default.
    None (an option left unset) passes."""
    for name, interval in ranges.items():
        v = values[name]
        if v is None:
            continue
        if isinstance(v, int) and not -2**63 <= v < 2**63:  # torch reads integers as int64
            raise UserError(f"{prefix}{name}={v} is out of range: an integer must fit in 64 bits (|{name}| < 2**63)")
        lo, hi = (float(x) for x in interval[1:-1].split(','))
        if not ((lo < v if interval[0] == '(' else lo <= v) and (v < hi if interval[-1] == ')' else v <= hi)):
            eg = f"; the default is {defaults[name]}" if defaults and name in defaults else ""
            raise UserError(f"{prefix}{name}={v} is out of range: it must be in {interval}{eg}")


def parse_dtype(name, flag='--dtype'):
    if name not in DTYPES:
        raise UserError(f"{flag}={name!r} is not supported; use {', '.join(DTYPES)}")
    return getattr(torch, name)


def check_device(device, flag='--device'):
    """A device this machine has: cpu, cuda, cuda:N or mps."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ('cpu', 'cuda', 'mps'):
        raise UserError(f"{flag}={device!r} is not a device; use cpu, cuda, cuda:N or mps")
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if (dev.type == 'cuda' and (dev.index or 0) >= n_cuda) or (dev.type == 'mps' and not torch.backends.mps.is_available()):
        raise UserError(f"{flag}={device} is not available on this machine ({n_cuda} CUDA device(s)); use {flag}=cpu")
    return device


def read_json(path, what):
    """A JSON object from path, or a UserError naming the file."""
    try:
        with open(path, encoding='utf-8') as f:
            obj = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise UserError(f"{path} is not valid JSON ({str(e)[:80]}); the {what} is damaged, download it again") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} is not a JSON object; the {what} is damaged, download it again")
    return obj
