# tests import the top-level modules (model.py, diffusion.py, ...) from the repo root: pytest.ini's pythonpath
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
