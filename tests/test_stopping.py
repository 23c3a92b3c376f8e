"""
A run that stops keeps what it needs: python -m pytest tests/test_stopping.py -q
The fp16 loss scale survives a resume; a second Ctrl-C on XLA ends cleanly (one error line, no traceback).
"""
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def test_grad_scaler_state_is_checkpointed(tmp_path):
    from model import Transformer, make_config
    cfg = train.TrainConfig(out_dir=str(tmp_path))
    model = Transformer(make_config('tiny', vocab_size=264, mask_token_id=259))
    opt = torch.optim.AdamW(model.parameters())
    ONE = SimpleNamespace(master=True, fsdp=False, xla=False)  # one process
    scaler = torch.amp.GradScaler('cpu', enabled=True)
    scaler.scale(torch.ones(()))
    scaler.update(1024.0)  # the scale an fp16 run had backed off to
    train.save_checkpoint(cfg, ONE, model, opt, dict(tokenizer='bytes'), 7, 1.0, scaler)
    ck = train.load_checkpoint(str(tmp_path / 'ckpt.pt'))
    fresh = torch.amp.GradScaler('cpu', enabled=True)
    assert train.resume_state(ONE, ck, torch.optim.AdamW(model.parameters()), fresh) == (7, 1.0)
    assert fresh.get_scale() == 1024.0 and fresh.state_dict() == scaler.state_dict()
    off = torch.amp.GradScaler('cpu', enabled=False)  # float32 / bfloat16 runs store none and load none
    train.save_checkpoint(cfg, ONE, model, opt, dict(tokenizer='bytes'), 7, 1.0, off)
    assert train.load_checkpoint(str(tmp_path / 'ckpt.pt'))['scaler'] is None
    train.resume_state(ONE, ck, torch.optim.AdamW(model.parameters()), off)


FAKE_XLA = '''
"""A stand-in for torch_xla.launch's process layout: a pool of spawned workers, each running the
loop in a thread while its main thread waits (torch_xla._internal.pjrt.run_multiprocess)."""
import concurrent.futures, multiprocessing, os, threading, time


def _loop(i, ready):
    from types import SimpleNamespace
    from lib.runtime import stop_on_signal
    with stop_on_signal(SimpleNamespace(out_dir='out')) as stop:
        open(os.path.join(ready, str(i)), 'w').close()
        while not stop:
            time.sleep(0.01)
        time.sleep(120)  # a slow checkpoint: only a second Ctrl-C ends it


def _worker(i, ready):
    t = threading.Thread(target=_loop, args=(i, ready))
    t.start()
    t.join()


def launch(fn, args=()):
    ready = os.environ['FAKE_XLA_READY']
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context('spawn')) as ex:
        return list(ex.map(_worker, range(2), [ready] * 2))
'''


def test_xla_second_ctrl_c_exits_cleanly(tmp_path):
    (tmp_path / 'fake' / 'torch_xla').mkdir(parents=True)
    (tmp_path / 'fake' / 'torch_xla' / '__init__.py').write_text(FAKE_XLA)
    (tmp_path / 'ready').mkdir()
    env = dict(os.environ, PYTHONPATH=f"{tmp_path / 'fake'}{os.pathsep}{REPO}", FAKE_XLA_READY=str(tmp_path / 'ready'),
               OMP_NUM_THREADS='1')
    p = subprocess.Popen([sys.executable, os.path.join(REPO, 'train.py'), '--device=xla', f'--out_dir={tmp_path}/out'],
                         stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, start_new_session=True)
    deadline = time.time() + 120
    while len(os.listdir(tmp_path / 'ready')) < 2 and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    for _ in range(2):  # Ctrl-C twice: the terminal signals the whole process group
        os.killpg(p.pid, signal.SIGINT)
        time.sleep(0.5)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 1 and 'Traceback' not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith('error:')]
    assert errors == [f"error: interrupted twice; stopped at once; the last checkpoint in {tmp_path}/out is kept"], err
