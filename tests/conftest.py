import os
import sys

# tests import the top-level modules (model.py, diffusion.py, ...) from the repo root
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest


@pytest.fixture(scope='module')
def one_thread():
    """Tiny models run fastest on one thread (two threads crawl when the cores are shared)."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
