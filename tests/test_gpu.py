"""
The one-GPU path: lib/gpucheck.py (python bench.py --case=gpu) runs its code here on the CPU at the tiny shape,
the CUDA-only checks SKIP; on a CUDA machine the whole check runs. The GPU configs' memory plans, and what
model.py does differently on CUDA, run on the CPU too.

  python -m pytest tests/test_gpu.py -q
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

import bench
import train
from conftest import error_line, tiny_pycode
from lib import gpucheck

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def test_quick_check_runs_on_the_cpu(tmp_path, capsys):
    """Every check's code at the tiny shape in one thread: the CPU ones pass, the CUDA-only ones SKIP with a reason."""
    sources = [open(os.path.join(os.path.dirname(os.__file__), f), encoding='utf-8').read()
               for f in ('os.py', 'glob.py', 'shutil.py', 'textwrap.py')]
    tiny_pycode(tmp_path, sources)  # tests/conftest.py
    out = tmp_path / 'gpu.json'
    rows = bench.main(['--case=gpu', '--device=cpu', '--quick', f"--dataset={tmp_path / 'pycode'}",
                       f"--gpu_dir={tmp_path / 'work'}", f'--out={out}'])
    status = {r['check']: r['status'] for r in rows}
    have_hf = 'SKIP' if importlib.util.find_spec('transformers') is None else 'PASS'
    assert status == dict(plan_memory='SKIP', loss_tf32='SKIP', loss_bf16='PASS', loss_bf16_compile='PASS',
                          loss_fp16='SKIP', sdpa_bidirectional='PASS', sdpa_block='PASS', sdpa_causal='PASS',
                          block_cache_exact='PASS', block_cache_speedup='PASS', hf_parity=have_hf, mfu='SKIP',
                          loss_falls='PASS', torchrun_fsdp='PASS'), status
    printed = capsys.readouterr().out.splitlines()
    for r in rows:  # one line each, as it finished
        assert f"{r['status']} {r['check']}: {r['text']}" in printed
    assert 'tokens/s' in next(r['text'] for r in rows if r['check'] == 'mfu')
    assert json.loads(out.read_text())['results'] == json.loads(json.dumps(rows))
    assert (tmp_path / 'work' / 'loss_falls' / 'log.jsonl').is_file() and (tmp_path / 'work' / 'fsdp.log').is_file()


def test_a_failed_check_is_a_fail_line_and_exit_code_1(monkeypatch, capsys):
    def boom(report, ck):
        raise RuntimeError('CUDA error: an illegal memory access was encountered\nmore')
    monkeypatch.setattr(gpucheck, 'CHECKS', [('boom', boom), ('fine', lambda report, ck: report.check(True, 'fine', 'ok'))])
    with pytest.raises(SystemExit) as e:
        bench.main(['--case=gpu', '--device=cpu', '--quick'])
    out = capsys.readouterr().out
    assert e.value.code == 1
    assert 'FAIL boom: RuntimeError: CUDA error: an illegal memory access was encountered\n' in out
    assert 'PASS fine: ok' in out and 'gpu check: 1 passed, 1 failed, 0 skipped' in out


@pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has CUDA')
def test_without_cuda_it_refuses_in_one_line(capsys, monkeypatch):
    line = error_line(bench.main, ['--case=gpu'], capsys, monkeypatch)
    assert line == f"error: {gpucheck.NEEDS_CUDA}"
    assert 'run it on a GPU machine (python bench.py --case=gpu)' in line and '--device=cpu --quick' in line


@pytest.mark.parametrize('args,match', [
    (['--device=cpu'], 'runs at the tiny shape only: add --quick'),
    (['--device=cpu', '--quick', '--config=config/nope.py'], 'no such train.py config file'),
    (['--device=cpu', '--quick', '--seq_len=30'], 'a multiple of its block size 4'),
    (['--device=cpu', '--quick', '--mfu_goal=2'], 'mfu_goal=2'),
    (['--device=cpu', '--quick', '--train_iters=5'], 'use 10 or more'),
    (['--device=cpu', '--quick', '--dataset=/nonexistent/pycode'], 'no prepared dataset there'),
])
def test_bad_options_are_one_line(args, match, capsys, monkeypatch):
    assert match in error_line(bench.main, ['--case=gpu', *args], capsys, monkeypatch)


def test_grouped_kv_heads_repeated_under_a_mask_give_the_same_attention(monkeypatch):
    """On CUDA model.py repeats the K/V heads when attention has a mask (the fused kernels take enable_gqa only
    without one): the same outputs as grouped-query attention, here forced on the CPU, for every mask it builds."""
    import model
    from model import Context, Transformer, block_diffusion_mask, make_config
    for attention in ('block', 'bidirectional'):
        torch.manual_seed(0)
        m = Transformer(make_config('tiny', attention=attention, block_size=4, vocab_size=264, mask_token_id=259)).eval()
        idx = torch.randint(0, 256, (2, 16))
        ctxs = [Context(pad=torch.tensor([0, 5]))]
        if attention == 'block':  # the training layout, and a cached step over the prompt's blocks
            ctxs += [Context(pos=torch.cat([torch.arange(8)] * 2), attn_mask=block_diffusion_mask(8, 4))]
        with torch.no_grad():
            grouped = [m(idx, c) for c in ctxs]
            monkeypatch.setattr(model, 'REPEAT_KV_WITH_MASK', {'cpu', 'cuda'})
            repeated = [m(idx, c) for c in ctxs]
            monkeypatch.setattr(model, 'REPEAT_KV_WITH_MASK', {'cuda'})
        for g, r in zip(grouped, repeated):
            torch.testing.assert_close(r, g, atol=1e-5, rtol=0)


def test_gpu_configs_plan_their_memory(tmp_path, capsys):
    """config/gpu.py and gpu_world.py fit a 24 GB GPU; gpu_adapt_qwen3.py plans from the Qwen3-0.6B directory's
    config.json alone (the figure its comments give)."""
    for config in ('gpu.py', 'gpu_world.py'):
        rows = dict(train.main([os.path.join(REPO, 'config', config), '--plan', '--device_memory=24GB']))
        assert abs(rows['ddp']['peak'] / 1e9 - 14.66) < 0.01
    hf = tmp_path / 'Qwen3-0.6B'
    hf.mkdir()
    (hf / 'config.json').write_text(json.dumps(dict(
        model_type='qwen3', vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960, rope_theta=1e6,
        rms_norm_eps=1e-6, tie_word_embeddings=True, torch_dtype='bfloat16')))
    capsys.readouterr()
    rows = dict(train.main([os.path.join(REPO, 'config', 'gpu_adapt_qwen3.py'), '--plan', '--device_memory=24GB',
                            f'--init_from={hf}']))
    out = capsys.readouterr().out
    assert f"0.596B parameters ({hf / 'config.json'})" in out and 'micro-batch 2 x 1024' in out
    assert abs(rows['ddp']['peak'] / 1e9 - 13.80) < 0.01 and out.split('\nddp')[1].split('\n')[0].endswith('yes')
    # without the directory, the preset 0.6B: the same shape, the same plan
    assert dict(train.main([os.path.join(REPO, 'config', 'gpu_adapt_qwen3.py'), '--plan']))['ddp'] == rows['ddp']


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason='needs CUDA: on a GPU machine run python bench.py --case=gpu (or bash tests/gpu_run.sh)')
def test_the_gpu_check_passes_on_cuda(tmp_path):
    p = subprocess.run([sys.executable, 'bench.py', '--case=gpu', f"--gpu_dir={tmp_path}"], cwd=REPO,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
