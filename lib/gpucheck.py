"""
The one-GPU check (python bench.py --case=gpu): training, sampling and memory on CUDA, in minutes.

  python bench.py --case=gpu                        # a CUDA machine, the `gpu` preset's shape (~5 min
                                                    # on an H100, estimated: not yet run on a GPU)
  python bench.py --case=gpu --device=cpu --quick   # the same code on the CPU at the tiny shape (CUDA-only: SKIP)

Each check prints one line `PASS|FAIL|SKIP name: measured vs expected`; the command exits 1 if one FAILs.
The shape: --model (gpu; --quick tiny), byte vocab, --batch_size x --seq_len (64 x 512; --quick 4 x 64).

  loss_tf32, loss_bf16,   the losses of two training steps (the second after one AdamW step: fused on CUDA,
  loss_bf16_compile,      float16 through train.py's GradScaler, whose skipped first step ends it there) of mdm,
  loss_fp16               block and ar, each against float32 with TF32 off; same weights, batch (batch_size / 4
                          rows) and noise: relative difference <= 1e-2. compile: the first step, compiled as
                          train.py's compile=true does (on the CPU with backend aot_eager: the same graph
                          capture, without inductor's C++ build). tf32 and fp16: CUDA only
  loss_falls              train.py --config (config/gpu.py) for --train_iters iterations (200; --quick 40) on
                          --dataset: the mean loss of the last 10% of them <= 0.8 x that of the first 10%
  sdpa_causal, sdpa_bidirectional, sdpa_block
                          the backend SDPA's dispatcher picks (torch._fused_sdp_choice) for every call model.py
                          makes in a bf16 training forward and in bf16 sampling (left-padded prompts): a fused
                          kernel, not MATH (which builds the T x S scores)
  block_cache_exact       a block model in float32, TF32 off, its head x8 so that greedy choices are decisive:
                          generate() with the prefix and dual caches gives the tokens of no cache
  block_cache_speedup     bf16 (float32 on the CPU), batch 16, prompt 1024, 256 tokens one per step, blocks of 32
                          (--quick: 1, 128, 64, 16): prefix cache vs no cache, > 1x
  mfu                     a compiled bf16 training step (mdm, fused AdamW, clipping) at the shape: tokens/s and
                          MFU = (6 N + 12 x layers x heads x head_dim x seq_len) x tokens/s / peak (--peak_flops,
                          or the GPU's dense bf16 peak: H100 989 TFLOP/s) >= --mfu_goal (0.40); CUDA only
  plan_memory             torch.cuda.max_memory_allocated over eager bf16 steps at the shape, above what was
                          allocated before, vs lib/memplan.py's peak for one device: within 15%; CUDA only
  hf_parity               a random Qwen3 (--quick: 2 layers x 32; else 4 x 512) saved by transformers and loaded by
                          model.py, causal and bidirectional (a zero 4D mask), against transformers' eager attention:
                          relative L2 error of the logits <= 1e-4 in float32 (TF32 off), <= 2e-2 in bf16; SKIP
                          without transformers
  torchrun_fsdp           torchrun --nproc_per_node=1 train.py --config --parallel=fsdp --max_iters=2 (NCCL;
                          gloo on the CPU): exits 0, finite losses, the first within 1e-2 of loss_falls' first
"""
import contextlib
import gc
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from lib.cli import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEEDS_CUDA = ("--case=gpu needs CUDA and this machine has none; run it on a GPU machine (python bench.py "
              "--case=gpu), or check its code here at the tiny shape: python bench.py --case=gpu --device=cpu --quick")
PEAK_BF16 = {'H100': 989e12, 'H200': 989e12, 'A100': 312e12, 'L40S': 362e12, 'A10': 125e12, 'L4': 121e12,
             'V100': 125e12, 'T4': 65e12, '4090': 165e12, '3090': 71e12}  # dense tensor-core peak, FLOP/s
OBJECTIVES = {'mdm': 'bidirectional', 'block': 'block', 'ar': 'causal'}
LOSS_TOL, PLAN_TOL, PARITY_TOL = 1e-2, 0.15, {'float32': 1e-4, 'bfloat16': 2e-2}
BYTES = dict(vocab_size=264, mask_token_id=259)  # the byte tokenizer (lib/tokenizer.py)


def peak_flops(device, given=0.0):
    """Dense bf16 FLOP/s: given, else the GPU's by its name; 0 when unknown (a CPU)."""
    if given or not str(device).startswith('cuda'):
        return given
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), 0.0)


def defaults(quick):
    """bench.py's options for --case=gpu (explicit ones win)."""
    if quick:
        return dict(device='cuda', model='tiny', batch_size=4, seq_len=64, train_iters=40)
    return dict(device='cuda', model='gpu', batch_size=64, seq_len=512, train_iters=200)


def check_options(cfg):
    if cfg['device'].startswith('cuda') and not torch.cuda.is_available():
        raise UserError(NEEDS_CUDA)
    if not cfg['device'].startswith('cuda') and not cfg['quick']:
        raise UserError(f"--case=gpu --device={cfg['device']} runs at the tiny shape only: add --quick")
    if not os.path.isfile(os.path.join(REPO, cfg['config'])):
        raise UserError(f"--config={cfg['config']}: no such train.py config file; e.g. --config=config/gpu.py")
    if cfg['seq_len'] % 4:
        raise UserError(f"--seq_len={cfg['seq_len']}: the block objective needs a multiple of its block size 4")
    if cfg['train_iters'] < 10:
        raise UserError(f"--train_iters={cfg['train_iters']}: loss_falls compares the first and last tenth; use 10 or more")
    data = cfg['dataset']
    if data and not os.path.isfile(os.path.join(data if os.sep in data else os.path.join(REPO, 'data', data), 'meta.json')) \
            and data not in ('pycode', 'pyworld'):  # (these two train.py prepares on first use)
        raise UserError(f"--dataset={data}: no prepared dataset there (no meta.json); prepare it, or leave --dataset out")


class Report:
    """One line per check, as it finishes; rows for --out."""

    def __init__(self):
        self.rows = []

    def add(self, status, name, text, **numbers):
        print(f"{status} {name}: {text}", flush=True)
        self.rows.append(dict(case='gpu', check=name, status=status, text=text, **numbers))

    def check(self, ok, name, text, **numbers):
        self.add('PASS' if ok else 'FAIL', name, text, **numbers)


def free():
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sync(ck):
    if ck.cuda:
        torch.cuda.synchronize()


@contextlib.contextmanager
def tf32(on):
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def build(ck, attention, block_size=4, **over):
    from model import Transformer, make_config
    torch.manual_seed(ck.seed)
    return Transformer(make_config(ck.model, attention=attention, block_size=block_size, **BYTES, **over))


def code_prompts(n, length):
    """n rows of real code (the stdlib's os.py, as bytes), each from its own offset."""
    text = open(os.__file__, 'rb').read()
    return [list(text[97 * r:97 * r + length]) for r in range(n)]


class Trainer:
    """train.py's training step on one device: start_processes (autocast, TF32), wrap_model (compile), make_optimizer
    (fused AdamW on CUDA, the GradScaler for float16), and the loop's update, on one fixed random batch."""

    def __init__(self, ck, objective, dtype, *, compile=False, tf32=True, rows=None):
        import train
        from diffusion import DiffusionOptions
        from lib.runtime import start_processes, wrap_model
        self.ck, self.objective, self.opts, self.rng = ck, objective, DiffusionOptions(), train.rng
        self.cfg = train.TrainConfig(device=ck.device, dtype=dtype, compile=compile and ck.cuda, lr=1e-3)
        self.run = start_processes(self.cfg)
        if compile:  # dynamo caches per code object, not per model: a fresh cache, as a train.py process has
            torch._dynamo.reset()
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        self.raw = build(ck, OBJECTIVES[objective])
        self.model = wrap_model(self.cfg, self.run, self.raw)
        if compile and not ck.cuda:  # inductor's C++ build takes minutes on a CPU; aot_eager captures the same graph
            self.model = torch.compile(self.model, backend='aot_eager')
        self.opt, self.scaler = train.make_optimizer(self.cfg, self.run, self.raw)
        x0 = torch.randint(0, 256, (rows or ck.B, ck.L), generator=torch.Generator().manual_seed(ck.seed))
        self.x0, self.skipped = x0.to(ck.device), 0

    def step(self, i):
        from diffusion import training_loss
        with self.run.ctx:
            loss, _ = training_loss(self.model, self.x0, objective=self.objective, opts=self.opts, progress=0.0,
                                    step=i, generator=self.rng(self.ck.seed, i, 0))
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.scaler.step(self.opt)
        if self.scaler.is_enabled():  # float16: an inf in the gradients skips the update and halves the scale
            scale = self.scaler.get_scale()
            self.scaler.update()
            self.skipped += self.scaler.get_scale() < scale
        self.opt.zero_grad(set_to_none=True)
        return loss.detach()


def flops_per_token(c, L):
    """6 N (forward + backward of every weight) + PaLM's attention term, every query over L keys."""
    from model import Transformer
    with torch.device('meta'):
        n = Transformer(c).num_params()
    return 6 * n + 12 * c.num_hidden_layers * c.num_attention_heads * c.head_dim * L, n

# -----------------------------------------------------------------------------
# the checks (CHECKS below runs them)


def check_plan_memory(report, ck):
    from lib import memplan
    if not ck.cuda:
        return report.add('SKIP', 'plan_memory', 'CUDA only (torch.cuda.max_memory_allocated)')
    free()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    t = Trainer(ck, 'mdm', 'bfloat16')
    for i in range(3):  # the first creates AdamW's state
        t.step(i)
    sync(ck)
    peak = torch.cuda.max_memory_allocated() - base
    plan = memplan.plan(t.raw.config, tokens=ck.B * ck.L, dtype='bfloat16', world=1, engine='ddp')['peak']
    report.check(abs(peak / plan - 1) <= PLAN_TOL, 'plan_memory', f"peak {peak / 1e9:.2f} GB (eager bf16, {ck.B} x {ck.L}) "
                 f"vs plan {plan / 1e9:.2f} GB: ratio {peak / plan:.2f}, within 1 +- {PLAN_TOL}", peak=peak, plan=plan)


def check_losses(report, ck):
    rows = max(1, ck.B // 4)

    def losses(obj, dtype, steps=2, **kw):  # (a step the GradScaler skipped ends the comparison there)
        t = Trainer(ck, obj, dtype, rows=rows, **kw)
        out = [t.step(0).item()]
        return out if t.skipped or steps == 1 else out + [t.step(1).item()]
    ref = {obj: losses(obj, 'float32', tf32=False) for obj in OBJECTIVES}
    free()
    for name, dtype, kw, cuda_only in (('loss_tf32', 'float32', {}, True), ('loss_bf16', 'bfloat16', {}, False),
                                       ('loss_bf16_compile', 'bfloat16', dict(compile=True, steps=1), False),
                                       ('loss_fp16', 'float16', {}, True)):
        if cuda_only and not ck.cuda:
            report.add('SKIP', name, 'CUDA only')
            continue
        try:  # compile: the first step only (a second one recompiles, the masked-row count turning dynamic)
            got = {obj: losses(obj, dtype, **kw) for obj in OBJECTIVES}
        except Exception as e:  # one variant failing (a compile error, an OOM) does not stop the others
            report.add('FAIL', name, one_line(e))
            continue
        finally:
            free()
        worst = max(abs(g - r) / abs(r) for obj in OBJECTIVES for g, r in zip(got[obj], ref[obj]))
        ok = worst <= LOSS_TOL and all(map(math.isfinite, sum(got.values(), [])))
        detail = '; '.join(f"{obj} {' '.join(f'{v:.4f}' for v in got[obj])} (fp32 "
                           f"{' '.join(f'{v:.4f}' for v in ref[obj][:len(got[obj])])})" for obj in OBJECTIVES)
        steps = 'steps 1, 2' if max(map(len, got.values())) == 2 else 'step 1'
        report.check(ok, name, f"max rel. diff {worst:.1e} vs <= {LOSS_TOL:.0e}; {steps}: {detail}", worst=worst)


class SDPAChoices(TorchFunctionMode):
    """Records the backend SDPA's dispatcher picks for each scaled_dot_product_attention call made inside."""

    def __init__(self):
        super().__init__()
        self.picked = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            self.picked.add(sdpa_backend(*args, **kwargs))
        return func(*args, **kwargs)


def sdpa_backend(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    from torch.nn.attention import SDPBackend
    i = torch._fused_sdp_choice(q, k, v, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)
    return next(name for name, b in SDPBackend.__members__.items() if int(b.value) == i)


def check_sdpa(report, ck):
    from diffusion import DiffusionOptions, training_loss
    from sample import generate
    x0 = torch.randint(0, 256, (2, ck.L), generator=torch.Generator().manual_seed(ck.seed)).to(ck.device)
    for objective, attention in OBJECTIVES.items():
        name = f'sdpa_{attention}'
        try:
            model = build(ck, attention, block_size=4).to(ck.device)
            with SDPAChoices() as train_rec, torch.autocast(torch.device(ck.device).type, dtype=torch.bfloat16):
                training_loss(model, x0, objective=objective, opts=DiffusionOptions(), progress=0.0, step=0,
                              generator=torch.Generator().manual_seed(0))
            model = model.to(torch.bfloat16).eval()
            prompts = [p[:n] for p, n in zip(code_prompts(2, 24), (24, 13))]  # two lengths: left padding
            with SDPAChoices() as sample_rec, torch.no_grad():
                generate(model, prompts, gen_length=8, block_length=4, steps=4)
        except Exception as e:
            report.add('FAIL', name, one_line(e))
            continue
        ok = 'MATH' not in train_rec.picked | sample_rec.picked
        report.check(ok, name, f"training {'+'.join(sorted(train_rec.picked))}, sampling "
                     f"{'+'.join(sorted(sample_rec.picked))} vs a fused kernel, not MATH")


def check_block_cache(report, ck):
    from sample import generate
    B, P, G, bs = (2, 32, 32, 16) if ck.quick else (2, 256, 64, 32)
    model = build(ck, 'block', block_size=bs).to(ck.device).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(8)  # (tied: the embedding too) random weights, decisive greedy choices
    prompts = torch.tensor(code_prompts(B, P), device=ck.device)
    run = lambda cache, n=None: generate(model, prompts, gen_length=n or G, block_length=bs, steps=n or G, cache=cache)[0]
    with torch.no_grad(), tf32(False):
        none, prefix, dual = run('none'), run('prefix'), run('dual')
    same = lambda out: (out[:, P:] == none[:, P:]).float().mean().item()
    report.check(same(prefix) == same(dual) == 1, 'block_cache_exact', f"prefix {same(prefix):.1%}, dual {same(dual):.1%} "
                 f"of the new tokens of no cache vs 100% (float32, {B} x {P} + {G}, blocks of {bs})")
    B, P, G = (1, 128, 64) if ck.quick else (16, 1024, 256)
    model.to(torch.bfloat16 if ck.cuda else torch.float32)
    prompts = torch.tensor(code_prompts(B, P), device=ck.device)
    seconds = {'none': [], 'prefix': []}
    with torch.no_grad():
        run('prefix', bs)  # warm-up
        for _ in range(2):  # alternated: none, prefix, none, prefix
            for cache in seconds:
                sync(ck)
                t0 = time.perf_counter()
                run(cache)
                sync(ck)
                seconds[cache].append(time.perf_counter() - t0)
    none, prefix = (min(s) for s in seconds.values())
    report.check(none / prefix > 1, 'block_cache_speedup', f"{none / prefix:.1f}x ({none:.2f} s no cache, {prefix:.2f} s "
                 f"prefix; {B} x {P} + {G}, one token per step) vs > 1x", speedup=none / prefix)


def check_hf_parity(report, ck):
    try:
        import transformers
    except ImportError:
        return report.add('SKIP', 'hf_parity', 'transformers is not installed')
    from model import Transformer
    shape = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=8) if ck.quick else \
        dict(vocab_size=1024, hidden_size=512, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=8,
             num_key_value_heads=4, head_dim=64)
    torch.manual_seed(ck.seed)
    hf_cfg = transformers.Qwen3Config(**shape, max_position_embeddings=512, tie_word_embeddings=True, attention_bias=False)
    hf_cfg._attn_implementation = 'eager'  # the reference
    hf = transformers.Qwen3ForCausalLM(hf_cfg).eval()
    with torch.no_grad():  # HF initialises the norms to 1: perturb them so that they are compared too
        for n, p in hf.named_parameters():
            if 'norm' in n:
                p.add_(0.1 * torch.randn_like(p))
    path = os.path.join(ck.work, 'hf_qwen3')
    with open(os.devnull, 'w') as null, contextlib.redirect_stderr(null):  # (its progress bar)
        hf.save_pretrained(path)
    idx = torch.randint(0, shape['vocab_size'], (2, 64), device=ck.device)
    errors = {}
    with torch.no_grad(), tf32(False):
        for dtype in ('float32', 'bfloat16'):
            ref_model = hf.to(ck.device, getattr(torch, dtype))
            for attention in ('causal', 'bidirectional'):
                ours = Transformer.from_pretrained(path, dtype=getattr(torch, dtype), attention=attention).to(ck.device)
                mask = None if attention == 'causal' else torch.zeros(2, 1, 64, 64, device=ck.device, dtype=getattr(torch, dtype))
                errors[attention, dtype] = rel(ours(idx), ref_model(idx, attention_mask=mask).logits)
    ok = all(e <= PARITY_TOL[d] for (_, d), e in errors.items())
    text = ', '.join(f"{a} {errors[a, 'float32']:.1e} / {errors[a, 'bfloat16']:.1e}" for a in ('causal', 'bidirectional'))
    report.check(ok, 'hf_parity', f"rel. error of the logits (float32 / bf16) {text} vs <= "
                 f"{PARITY_TOL['float32']:.0e} / {PARITY_TOL['bfloat16']:.0e} (transformers {transformers.__version__})")


def check_mfu(report, ck):
    warm, timed = (1, 2) if ck.quick else (3, 10)
    t = Trainer(ck, 'mdm', 'bfloat16', compile=ck.cuda)  # (the CPU: eager; loss_bf16_compile runs its compile)
    for i in range(warm):  # compiles (twice: the second step's masked-row count makes that dimension dynamic)
        t.step(i)
    sync(ck)
    if ck.cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(timed):
        t.step(warm + i)
    sync(ck)
    dt = (time.perf_counter() - t0) / timed
    fpt, n = flops_per_token(t.raw.config, ck.L)
    tps, peak = ck.B * ck.L / dt, peak_flops(ck.device, ck.peak_flops)
    text = f"{tps:,.0f} tokens/s, {1e3 * dt:.1f} ms per {'compiled' if ck.cuda else 'eager'} step of {ck.B} x {ck.L}, " \
           f"{n / 1e6:.1f}M parameters, {fpt * tps / 1e12:.1f} TFLOP/s"
    if ck.cuda:
        text += f", peak memory {torch.cuda.max_memory_allocated() / 1e9:.2f} GB (compiled)"
    if not peak:
        return report.add('SKIP', 'mfu', f"{text}; no peak FLOP/s known for {ck.device_name} (--peak_flops)", tokens_per_s=tps)
    mfu = fpt * tps / peak
    report.check(mfu >= ck.mfu_goal, 'mfu', f"{mfu:.1%} ({text} of {peak / 1e12:.0f}) vs >= {ck.mfu_goal:.0%}",
                 mfu=mfu, tokens_per_s=tps)


def train_args(ck, name, **over):
    """train.py's arguments: --config, then the shape, the device and the dataset of the check."""
    args = dict(out_dir=os.path.join(ck.work, name), overwrite='true', model=ck.model, batch_size=ck.B, seq_len=ck.L,
                device=ck.device, eval_iters=2, log_interval=1, checkpoint_interval=0, **over)
    if ck.dataset:
        args['dataset'] = ck.dataset
    if not ck.cuda:
        args['compile'] = 'false'  # (inductor on a CPU: minutes of C++ builds)
    return [os.path.join(REPO, ck.config)] + [f'--{k}={v}' for k, v in args.items()]


def check_loss_falls(report, ck):
    import train
    torch._dynamo.reset()  # the compiled models of the checks before stay out of train.py's compile
    n = ck.train_iters
    log = os.path.join(ck.work, 'loss_falls.log')
    t0 = time.perf_counter()
    with open(log, 'w') as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        history = train.main(train_args(ck, 'loss_falls', max_iters=n, warmup_iters=max(1, n // 10),
                                        eval_interval=n, sample_interval=n))
    losses = [r['loss'] for r in history]
    k = max(1, n // 10)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    ck.first_loss = losses[0]
    report.check(last <= 0.8 * first, 'loss_falls', f"{first:.3f} -> {last:.3f} (mean of the first and last {k} of "
                 f"{n} iterations, val {history[-1].get('val_bpb', float('nan')):.2f} bits/byte, "
                 f"{time.perf_counter() - t0:.0f} s{' with compile' if ck.cuda else ''}) vs <= 0.8 x the first",
                 first=first, last=last)


def check_torchrun_fsdp(report, ck):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=1', os.path.join(REPO, 'train.py'),
           *train_args(ck, 'fsdp', parallel='fsdp', max_iters=2, compile='false', eval_interval=0, sample_interval=0)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    with open(os.path.join(ck.work, 'fsdp.log'), 'w') as f:
        f.write(p.stdout + p.stderr)
    if p.returncode:
        last = (p.stderr.strip().splitlines() or [''])[-1]
        return report.add('FAIL', 'torchrun_fsdp', f"exit code {p.returncode}: {last[:300]} (log {ck.work}/fsdp.log)")
    with open(os.path.join(ck.work, 'fsdp', 'log.jsonl')) as f:
        losses = [json.loads(line)['loss'] for line in f]
    first = getattr(ck, 'first_loss', None)
    diff = abs(losses[0] - first) / abs(first) if first else 0.0
    report.check(len(losses) == 2 and all(map(math.isfinite, losses)) and diff <= LOSS_TOL, 'torchrun_fsdp',
                 f"2 iterations, losses {losses[0]:.4f} {losses[1]:.4f}; first vs one process "
                 + (f"{first:.4f}: rel. diff {diff:.1e} <= {LOSS_TOL:.0e}" if first else "(loss_falls did not run)"))


def one_line(e):
    text = (str(e).strip().splitlines() or [''])[0][:300]
    return f"{type(e).__name__}: {text}"


# in this order: the memory first, on a clean device; loss_falls before torchrun_fsdp, which compares with it
CHECKS = [('plan_memory', check_plan_memory), ('loss', check_losses), ('sdpa', check_sdpa),
          ('block_cache', check_block_cache), ('hf_parity', check_hf_parity), ('mfu', check_mfu),
          ('loss_falls', check_loss_falls), ('torchrun_fsdp', check_torchrun_fsdp)]


def run_checks(cfg):
    """Every check, each guarded (an exception is that check's FAIL); -> the report's rows."""
    cuda = cfg['device'].startswith('cuda')
    ck = SimpleNamespace(device=cfg['device'], cuda=cuda, quick=cfg['quick'], model=cfg['model'], B=cfg['batch_size'],
                         L=cfg['seq_len'], seed=cfg['seed'], train_iters=cfg['train_iters'], config=cfg['config'],
                         dataset=cfg['dataset'], peak_flops=cfg['peak_flops'], mfu_goal=cfg['mfu_goal'],
                         device_name=torch.cuda.get_device_name(cfg['device']) if cuda else 'the CPU')
    ck.work = work = cfg['gpu_dir'] or tempfile.mkdtemp(prefix='gpucheck-')
    os.makedirs(work, exist_ok=True)
    print(f"gpu check on {ck.device_name}, torch {torch.__version__}, model {ck.model}, {ck.B} x {ck.L}, "
          f"work dir {work}", flush=True)
    report, t0, seconds = Report(), time.perf_counter(), {}
    for name, fn in CHECKS:
        t = time.perf_counter()
        try:
            fn(report, ck)
        except Exception as e:
            report.add('FAIL', name, one_line(e))
        free()
        seconds[name] = time.perf_counter() - t
    status = [r['status'] for r in report.rows]
    print(f"gpu check: {status.count('PASS')} passed, {status.count('FAIL')} failed, {status.count('SKIP')} skipped "
          f"in {time.perf_counter() - t0:.0f} s (" + ', '.join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ')', flush=True)
    if not cfg['gpu_dir']:
        shutil.rmtree(work, ignore_errors=True)
    return report.rows
