# tests import the top-level modules (model.py, diffusion.py, ...) from the repo root: pytest.ini's pythonpath
import os
import shutil
import subprocess
import sys

import pytest


@pytest.fixture(scope='module')
def one_thread():
    """Tiny models run fastest on one thread (two threads crawl when the cores are shared)."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_pycode(root, sources, name='m', val_frac=0.25):
    """Write sources (texts) as root/src/{name}{i}.py and prepare them as the bytes corpus root/pycode."""
    from data.pycode.prepare import prepare
    src = root / 'src'
    src.mkdir()
    for i, text in enumerate(sources):
        (src / f'{name}{i}.py').write_text(text)
    prepare(roots=[str(src)], stdlib=False, out_dir=str(root / 'pycode'), val_frac=val_frac)
    return src


def error_line(main, args, capsys, monkeypatch):
    """What the command line prints for main(args): one `error:` line, exit status 1, no traceback."""
    from lib.cli import run_cli
    monkeypatch.setattr(sys, 'argv', ['command', *map(str, args)])
    with pytest.raises(SystemExit) as e:
        run_cli(main)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith('error: ')]
    assert e.value.code == 1 and len(lines) == 1 and 'Traceback' not in err, err
    return lines[0]


@pytest.fixture
def broken(tmp_path, monkeypatch):
    """broken(errno) -> a directory in which nothing can be made: every file or directory created under it fails
    with that errno, as on a read-only (EROFS), forbidden (EACCES) or full (ENOSPC) disk."""
    import builtins
    import errno
    import io

    def make(name):
        code, root = getattr(errno, name), tmp_path / 'broken'
        root.mkdir()
        under = lambda p: isinstance(p, (str, os.PathLike)) and os.path.abspath(p).startswith(f'{root}{os.sep}')

        def guard(real, writes):
            def call(p, *a, **k):
                if under(p) and writes(*a, **k):
                    raise OSError(code, os.strerror(code), os.fspath(p))
                return real(p, *a, **k)
            return call
        by_mode = lambda mode='r', *a, **k: mode.strip('bt') != 'r'
        for module, name, writes in ((builtins, 'open', by_mode), (io, 'open', by_mode), (os, 'mkdir', lambda *a, **k: True),
                                     (os, 'open', lambda flags, *a, **k: flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))):
            monkeypatch.setattr(module, name, guard(getattr(module, name), writes))
        return root
    return make


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 2 MB where this machine lets the tests mount one (root), else None."""
    d = tmp_path / 'disk'
    d.mkdir()
    ok = os.geteuid() == 0 and shutil.which('mount') and subprocess.run(
        ['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', str(d)], capture_output=True).returncode == 0
    yield d if ok else None
    if ok:
        subprocess.run(['umount', str(d)], check=True)
