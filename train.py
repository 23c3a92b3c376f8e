"""
Train a nanoCoDA model: one loop, read top to bottom (after nanoGPT's), the same on a laptop CPU,
a GPU cluster under torchrun and a TPU pod under torch_xla.

  python train.py                                    # toy: byte-level masked diffusion on data/pycode (~10 min, 2 CPU cores)
  python train.py config/toy_ar.py --max_iters=200   # a config file assigns names; --key=value overrides any field
  torchrun --standalone --nproc_per_node=8 train.py config/coda_pretrain.py     # DDP, one GPU per process
  PJRT_DEVICE=TPU python train.py config/coda_pretrain.py --device=xla          # one process per TPU chip
  torchrun --standalone --nproc_per_node=8 train.py config/coda_pretrain.py --parallel=fsdp   # sharded (lib/sharding.py)
  python train.py config/coda_pretrain.py --plan --world_size=8 --device_memory=24GB          # memory per device, no training
  python train.py --init_from=resume --out_dir=out-toy --max_iters=2000         # continue exactly where it stopped
  python train.py --init_from=resume --out_dir=out-toy --max_iters=0 --export_hf=out-toy/hf   # export only

Objectives (diffusion.training_loss): mdm = CoDA masked diffusion (bidirectional attention),
block = block diffusion (block-causal), sft = masked diffusion of the answer only, ar = the causal
next-token baseline on the same architecture (with fim_rate > 0: AR + fill-in-the-middle).
Randomness: each micro-step seeds its own CPU torch.Generator from (seed, iteration, micro-step);
it picks the batch and draws the diffusion noise. So a run gives the same losses on 1 or N
processes (micro-step m of an optimizer step runs on rank m % world_size) and after a resume.
"""
import hashlib
import math
import os
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from tqdm import tqdm

from lib.cli import UserError, check_device, check_ranges, check_writable, parse_options, run_cli
from model import Transformer
from diffusion import DiffusionOptions, training_loss, elbo, bits_per_byte, block_schedule, block_size_at
from lib.fim import fim_transform
from lib.runtime import (start_processes, end_processes, reduce_step, wrap_model, stop_on_signal, catch_signals,
                     load_source, build_model, fim_ids, expand_ids, load_checkpoint, checkpoint_path, resume_state,
                     save_checkpoint, export_hf, model_files, hold_out_dir, to_cpu, start_log, log, plot_losses)
from lib.sharding import full_state, plain_copy
from lib.memplan import print_plan
from data.common import load_meta, load_tokens, load_sft

REPO = os.path.dirname(os.path.abspath(__file__))
OBJECTIVES = ('mdm', 'block', 'sft', 'ar')


# -----------------------------------------------------------------------------
# config: defaults <- the checkpoint's (resume) <- config file <- --key=value

@dataclass
class TrainConfig(DiffusionOptions):  # inherits every masking knob: eps, masking, s1_prob ... edit_rate
    # I/O
    out_dir: str = 'out-toy'
    init_from: str = 'scratch'  # scratch | resume | HF Qwen3/CoDA dir | a train.py out_dir or ckpt.pt (weights only)
    export_hf: str = ''         # when done, also write the model in HF layout here (Transformer.save_pretrained)
    overwrite: bool = False     # let a new run (or export_hf) replace what out_dir (export_hf) already holds
    eval_interval: int = 250    # val ELBO every this many iterations (and at the end); 0 = never
    eval_iters: int = 8         # val batches per evaluation
    elbo_samples: int = 2       # Monte-Carlo mask levels per val sequence (LLaDA uses 128)
    log_interval: int = 10
    checkpoint_interval: int = 500  # ckpt.pt is also written when training ends
    sample_interval: int = 500  # print a short decoded sample; 0 = never
    # data and objective
    dataset: str = 'pycode'     # a directory under data/ (pycode, pycode_sft, ...) or a path
    objective: str = 'mdm'      # mdm | block | sft | ar
    batch_size: int = 32        # micro-batch per process
    grad_accum: int = 1         # TOTAL micro-steps per optimizer step, over all processes (nanoGPT)
    seq_len: int = 128
    # model
    model: str = 'toy'          # preset of model.PRESETS, for init_from=scratch
    block_size: int = 4         # block diffusion block (objective=block; Stable-DiffCoder uses 4)
    shift_logits: str = 'auto'  # auto | true | false: Dream/CoDA logit shift; auto keeps an AR source's next-token head
    # AdamW with warm-up and cosine decay
    max_iters: int = 2500
    lr: float = 2e-3
    min_lr: float = 2e-4
    warmup_iters: int = 30
    lr_decay_iters: int = 0     # 0 = max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0      # 0 = off
    # system
    device: str = 'auto'        # auto | cpu | cuda | mps | xla
    dtype: str = 'auto'         # auto (bf16 on CUDA/XLA, float32 on CPU) | float32 | bfloat16 | float16
    compile: bool = False       # torch.compile the model (CUDA)
    parallel: str = 'ddp'       # ddp (a whole replica per device) | fsdp (sharded: FSDP2, or SPMD FSDPv2 on XLA)
    reshard_after_forward: bool = True     # fsdp: free gathered weights after forward (False: ZeRO-2-like)
    activation_checkpointing: bool = False  # recompute each decoder layer in backward (any parallel)
    plan: bool = False          # print the memory per device (lib/memplan.py) and exit
    world_size: int = 0         # plan: devices to plan for (0 = WORLD_SIZE of the environment, or 1)
    device_memory: str = '24GB'  # plan: the memory of one device
    seed: int = 1337


# how this launch uses its devices, not what the run trains: a resume does not take them from the checkpoint
HARDWARE_KEYS = ('parallel', 'reshard_after_forward', 'activation_checkpointing', 'plan', 'world_size', 'device_memory')
# the interval each numeric key must lie in (cli.check_ranges); DiffusionOptions checks its probabilities
RANGES = dict(lr='(0, inf)', min_lr='[0, inf)', warmup_iters='[0, inf)', lr_decay_iters='[0, inf)',
              weight_decay='[0, inf)', beta1='[0, 1)', beta2='[0, 1)', grad_clip='[0, inf)', max_iters='[0, inf)',
              batch_size='[1, inf)', grad_accum='[1, inf)', seq_len='[1, inf)', block_size='[1, inf)',
              eval_interval='[0, inf)', eval_iters='[1, inf)', elbo_samples='[1, inf)', log_interval='[1, inf)',
              checkpoint_interval='[0, inf)', sample_interval='[0, inf)', eps='(0, 1)', edit_start='[0, 1]',
              block_warmup_iters='[0, inf)', attn_anneal_iters='[0, inf)', seed='(-inf, inf)', world_size='[0, inf)')
PER_COMMAND = ('overwrite', 'export_hf')         # never taken from the checkpoint on resume
FIXED_ON_RESUME = ('model', 'objective')         # the model a resume continues (block_size too, for block models)


def get_config(argv):
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    overrides = parse_options(argv, defaults, __doc__, config_files=True)
    base, start = {}, 0
    if overrides.get('init_from') == 'resume':  # continue with the run's own settings unless overridden
        ckpt = load_checkpoint(checkpoint_path(overrides.get('out_dir', TrainConfig.out_dir)), mmap=True)
        start = ckpt.get('iter_num', 0)
        base = {k: v for k, v in (ckpt.get('train_config') or {}).items() if k in defaults and k not in PER_COMMAND and k not in HARDWARE_KEYS}
        fixed = FIXED_ON_RESUME + (('block_size',) if base.get('objective') == 'block' else ())
        for k in fixed:
            if k in overrides and k in base and overrides[k] != base[k]:
                raise UserError(f"{k}={overrides[k]!r} differs from the run's {k}={base[k]!r}: a resume continues the "
                                f"same model; start a new run in another out_dir (init_from=<this out_dir> takes its weights)")
    cfg = TrainConfig(**{**base, **overrides})
    for key, ok in (('objective', OBJECTIVES), ('device', ('auto', 'cpu', 'cuda', 'mps', 'xla')), ('parallel', ('ddp', 'fsdp')),
                    ('dtype', ('auto', 'float32', 'bfloat16', 'float16'))):
        if getattr(cfg, key).split(':')[0] not in ok:  # (device may be cuda:N)
            raise UserError(f"{key}={getattr(cfg, key)!r} is unknown; use one of {', '.join(ok)}")
    check_ranges(asdict(cfg), RANGES, defaults, prefix='')
    if cfg.min_lr > cfg.lr:
        raise UserError(f"min_lr={cfg.min_lr} is above lr={cfg.lr}; the cosine decays from lr down to min_lr")
    if cfg.device.startswith('xla') and cfg.device != 'xla':
        raise UserError(f"device={cfg.device!r}: use device=xla (one process per chip, each on its own device)")
    if cfg.device not in ('auto', 'xla'):
        check_device(cfg.device, flag='device')
    for key in ('out_dir', 'export_hf'):  # found now, not after training
        if getattr(cfg, key) and os.path.exists(getattr(cfg, key)) and not os.path.isdir(getattr(cfg, key)):
            raise UserError(f"{key}={getattr(cfg, key)} is a file; pass a directory")
    if cfg.fim_rate > 0 and cfg.objective != 'ar':
        raise UserError(f"fim_rate={cfg.fim_rate} is for objective=ar (AR + fill-in-the-middle); set fim_rate=0 "
                        f"for objective={cfg.objective} (diffusion infills without it)")
    if cfg.varlen_rate > 0 and cfg.objective not in ('mdm', 'sft'):
        raise UserError(f"varlen_rate={cfg.varlen_rate} is for objective mdm or sft (variable-length infilling); "
                        f"set varlen_rate=0 for objective={cfg.objective}")
    if cfg.objective == 'block' and cfg.seq_len % cfg.block_size:
        raise UserError(f"seq_len={cfg.seq_len} is not a multiple of block_size={cfg.block_size}; change one of them")
    check_adaptation(cfg)
    if cfg.attn_anneal_iters > cfg.max_iters > start:  # (annealing counts the run's iterations from 0)
        raise UserError(f"attn_anneal_iters={cfg.attn_anneal_iters} is longer than the run (max_iters={cfg.max_iters}): "
                        f"it would end with attention still partly causal, saved as bidirectional; set "
                        f"attn_anneal_iters<={cfg.max_iters}, or raise max_iters")
    return cfg


def check_adaptation(cfg):
    """The options of AR -> diffusion adaptation that can be checked without the source model."""
    if cfg.shift_logits not in ('auto', 'true', 'false'):
        raise UserError(f"shift_logits={cfg.shift_logits!r} is unknown; use auto, true or false")
    if cfg.objective == 'ar' and cfg.shift_logits == 'true':
        raise UserError("shift_logits=true is for the diffusion objectives (the ar objective reads the head at i "
                        "for token i+1 already); drop it or choose objective=mdm, block or sft")
    if cfg.attn_anneal_iters and cfg.objective not in ('mdm', 'sft'):
        raise UserError(f"attn_anneal_iters opens causal attention to bidirectional, for objective=mdm or sft; "
                        f"objective={cfg.objective} " + ("uses block attention: use block_schedule instead"
                                                         if cfg.objective == 'block' else "stays causal: drop it"))
    sizes = [s for _, s in block_schedule(cfg)]
    if sizes and cfg.objective != 'block':
        raise UserError(f"block_schedule is for objective=block, not {cfg.objective}; drop it")
    if sizes and (sizes[-1] != cfg.block_size or any(cfg.seq_len % s for s in sizes)):
        raise UserError(f"block_schedule={cfg.block_schedule!r}: every size must divide seq_len={cfg.seq_len} and the "
                        f"last must be block_size={cfg.block_size} (the block the model samples with)")


# -----------------------------------------------------------------------------
# data: every batch comes from a generator seeded by (seed, iteration, micro-step)

def rng(*keys):
    digest = hashlib.sha256(repr(keys).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], 'little'))


def open_dataset(cfg, auto_prepare):
    path = cfg.dataset if os.sep in cfg.dataset else os.path.join(REPO, 'data', cfg.dataset)  # a name, or a path with a /
    builtin = cfg.dataset in ('pycode', 'pycode_sft', 'pyworld')
    prep = f"python -m data.{cfg.dataset}.prepare" if builtin else ("python -m data.pycode.prepare --out_dir=... "
                                                                     "(data/pycode/prepare.py), or data.prepare_custom")
    if not os.path.isfile(os.path.join(path, 'meta.json')):
        if not (builtin and auto_prepare):
            raise UserError(f"no dataset at {path} (missing meta.json); prepare it first: {prep}")
        print(f"preparing {path} (byte tokenizer), once")
        import importlib
        importlib.import_module(f'data.{cfg.dataset}.prepare').prepare(out_dir=path)
    meta = load_meta(path)
    sft = meta.get('kind') == 'sft'
    if sft != (cfg.objective == 'sft'):
        raise UserError(f"objective={cfg.objective} does not fit the {meta.get('kind')} dataset {path}; "
                        + ("use dataset=pycode_sft (an SFT set)" if cfg.objective == 'sft' else "use objective=sft or a pre-training dataset"))
    splits = {}
    for split in ('train', 'val'):
        if sft:  # whole examples only: prompt + answer + eos fits seq_len; the rest of the row is padding
            s = load_sft(path, split, meta)
            keep = np.flatnonzero((s.total_len <= cfg.seq_len) & (s.prompt_len < s.total_len))
            if len(keep) == 0:
                raise UserError(f"no {split} example of {path} fits seq_len={cfg.seq_len}; raise seq_len")
            splits[split] = (s, keep)
        else:
            tokens = load_tokens(path, split, meta)
            if len(tokens) <= cfg.seq_len:
                raise UserError(f"the {split} split of {path} has {len(tokens)} tokens, fewer than seq_len={cfg.seq_len}+1; lower seq_len")
            splits[split] = tokens
    return path, meta, splits


def get_batch(cfg, meta, splits, split, generator):
    """(x0 (B, L) int64, prompt_len (B,) or None), on the CPU."""
    B, L = cfg.batch_size, cfg.seq_len
    if cfg.objective != 'sft':  # random windows of the token stream (nanoGPT)
        data = splits[split]
        ix = torch.randint(len(data) - L, (B,), generator=generator).tolist()
        return torch.from_numpy(np.stack([data[i:i + L] for i in ix]).astype(np.int64)), None
    s, keep = splits[split]
    x = torch.full((B, L), meta['pad_id'], dtype=torch.long)  # CoDA/LLaDA SFT: pad to length, pads are maskable
    plen = torch.zeros(B, dtype=torch.long)
    for r, i in enumerate(torch.randint(len(keep), (B,), generator=generator).tolist()):
        ids, plen[r] = s.example(keep[i])
        x[r, :len(ids)] = torch.from_numpy(ids)
    return x, plen


# -----------------------------------------------------------------------------
# the learning rate (the model a run starts from is built by runtime.build_model: from scratch, a train.py
# checkpoint, or a Hugging Face Qwen3 / CoDA directory)

def get_lr(it, cfg):  # nanoGPT: linear warm-up, cosine decay to min_lr, then constant
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)
    if it > decay_iters:
        return cfg.min_lr
    ratio = (it - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)


# -----------------------------------------------------------------------------
# the training loop (nanoGPT's); the machinery it calls follows, and lib/runtime.py

def train(cfg):
    run = start_processes(cfg)  # rank, world, device, autocast: one process, torchrun, or torch_xla.launch
    export_only = cfg.init_from == 'resume' and cfg.max_iters == 0  # reads out_dir, never writes there
    with hold_out_dir(cfg.out_dir, run.master and not export_only):  # a second run into out_dir is refused (an flock)
        return loop(cfg, run)


def loop(cfg, run):
    # --- data, model, optimizer (all checks happen before anything is written)
    check_outputs(cfg)
    kind, ckpt = load_source(cfg)
    # pycode / pycode_sft are prepared on first use when the model reads bytes
    data_path, meta, splits = open_dataset(cfg, kind == 'scratch' or (kind != 'hf' and ckpt['tokenizer'] == 'bytes'))
    torch.manual_seed(cfg.seed)
    raw_model = build_model(cfg, meta, kind, ckpt)
    opts = DiffusionOptions(**{f.name: getattr(cfg, f.name) for f in fields(DiffusionOptions)})
    model = wrap_model(cfg, run, raw_model)  # to the device; FSDP (shards raw_model in place) or compile + DDP
    optimizer, scaler = make_optimizer(cfg, run, raw_model)
    iter_num, best_val = resume_state(run, ckpt, optimizer, scaler) if kind == 'resume' else (0, float('inf'))
    start_iter = iter_num
    ckpt = None  # free the memory
    fim = fim_ids(cfg, meta)
    expand_id = (expand_ids(cfg, meta) or (None,))[0]  # variable-length infilling (varlen_rate > 0)
    runlog = start_log(cfg, run, raw_model, data_path, iter_num)  # log.jsonl moves with ckpt.pt (runtime.RunLog)

    def save():  # ckpt.pt, then commit the log lines it covers -> the model state (rank 0)
        state = save_checkpoint(cfg, run, raw_model, optimizer, meta, iter_num, best_val, scaler)
        runlog.commit()
        return state

    # --- the loop: iteration `it` runs micro-steps 0..grad_accum-1; this process takes m = rank, rank+world, ...
    mine = list(range(run.rank, cfg.grad_accum, run.world))
    history = []
    with runlog.rollback_on_error(), stop_on_signal(cfg) as stop, \
            tqdm(total=cfg.max_iters, initial=iter_num, disable=not run.master, desc='train', unit='it',
                 dynamic_ncols=True) as pbar:
        while iter_num < cfg.max_iters:
            t0 = time.time()
            lr = get_lr(iter_num, cfg)
            for group in optimizer.param_groups:
                group['lr'] = lr
            if cfg.block_schedule:  # LLaDA 2.0: the block size of this iteration (the mask follows config.block_size)
                raw_model.config.block_size = block_size_at(opts, iter_num / max(cfg.max_iters, 1))
            loss_sum = torch.zeros((), device=run.device)
            for k, m in enumerate(mine):
                generator = rng(cfg.seed, iter_num, m)  # picks the batch and draws the diffusion noise
                x0, plen = get_batch(cfg, meta, splits, 'train', generator)
                if fim:  # AR + FIM: rearrange documents of the window (same generator: DDP/resume exact)
                    x0 = fim_transform(x0, eos_id=meta['eos_id'], fim_ids=fim, rate=cfg.fim_rate,
                                       spm_rate=cfg.fim_spm_rate, generator=generator)
                if run.ddp:  # DDP: all-reduce the gradients only on the last micro-step
                    model.require_backward_grad_sync = k == len(mine) - 1
                with run.ctx:
                    loss, _ = training_loss(model, run.put(x0), objective=cfg.objective, opts=opts,
                                            progress=iter_num / max(cfg.max_iters, 1), step=iter_num,
                                            generator=generator, prompt_len=plen, pad_id=meta['pad_id'],
                                            eos_id=meta['eos_id'], expand_id=expand_id)
                # each process averages its len(mine) micro-steps; DDP (FSDP) then averages the processes, so the
                # gradient is the mean over all grad_accum micro-steps, as one process would compute it
                scaler.scale(loss / len(mine)).backward()
                loss_sum += loss.detach()
                run.mark_step()
            loss_val, stopping = reduce_step(run, optimizer, loss_sum, stop)  # sums over the processes
            if stopping:  # some process got a signal: no update, iter_num is the last complete iteration
                break
            loss_val /= cfg.grad_accum
            if not math.isfinite(loss_val):  # stop before the update: the last checkpoint stays good
                raise UserError(f"loss is {loss_val} at iteration {iter_num}; stopped, the last good checkpoint is kept "
                                f"in {cfg.out_dir}; lower lr or set grad_clip")
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            run.mark_step()
            iter_num += 1
            pbar.update(1)

            # --- logging, evaluation, samples, checkpoints (iter = optimizer steps done)
            rec = dict(iter=iter_num, loss=loss_val, lr=lr,
                       tokens_per_s=cfg.batch_size * cfg.seq_len * cfg.grad_accum / (time.time() - t0))
            if cfg.block_schedule:
                rec['block_size'] = raw_model.config.block_size
            last = iter_num == cfg.max_iters
            if cfg.eval_interval and (iter_num % cfg.eval_interval == 0 or last):
                rec.update(evaluate(cfg, run, raw_model, meta, splits))
                best_val = min(best_val, rec['val_loss'])
            if (run.master or run.fsdp) and cfg.sample_interval and (iter_num % cfg.sample_interval == 0 or last):
                text = sample(cfg, run, raw_model, meta, splits, iter_num)  # (FSDP: every rank gathers the weights)
                if run.master:
                    tqdm.write(f"--- sample at iter {iter_num} (prompt + 64 tokens):\n{text}\n---")
            log(cfg, run, rec, last, history, pbar, runlog)
            if cfg.checkpoint_interval and iter_num % cfg.checkpoint_interval == 0 and not last:
                save()
        trained = iter_num != start_iter or kind != 'resume'  # a resume with nothing to do (export only) writes nothing
        final = save() if trained else None
    end_processes(run)
    if stop:
        raise UserError(f"stopped by {stop[0]}; checkpoint at iteration {iter_num} saved in {cfg.out_dir}, "
                        f"continue with init_from=resume")
    if run.master:
        if trained:
            plot_losses(runlog.path)
        if cfg.export_hf:
            if run.fsdp and final is None:
                raise UserError("export-only needs the whole model in one process: run it without parallel=fsdp "
                                "(python train.py --init_from=resume --max_iters=0 --export_hf=DIR)")
            export_hf(plain_copy(raw_model, final) if run.fsdp else raw_model, meta, cfg.export_hf)
    return history


# -----------------------------------------------------------------------------
# the loop's helpers (processes, devices, the model, signals, checkpoints and the log: lib/runtime.py)

def make_optimizer(cfg, run, model):  # the model is on its device (FSDP: its parameters are shards)
    decay = [p for p in model.parameters() if p.dim() >= 2]  # weight decay on matrices only (nanoGPT)
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{'params': decay, 'weight_decay': cfg.weight_decay},
                                   {'params': no_decay, 'weight_decay': 0.0}], lr=cfg.lr,
                                  betas=(cfg.beta1, cfg.beta2), fused=run.dev_type == 'cuda' or None)
    fp16 = run.dtype == 'float16' and run.dev_type == 'cuda'  # fp16 needs loss scaling
    if run.fsdp and not run.xla:  # the ranks agree on skipping a step with an inf in any shard
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler
        return optimizer, ShardedGradScaler('cuda', enabled=fp16)
    scaler = torch.amp.GradScaler('cuda', enabled=fp16)
    return optimizer, scaler


def check_outputs(cfg):
    """The overwrite rule, before anything runs: only init_from=resume writes into an out_dir that holds a run,
    and export_hf never replaces a model already there (runtime.model_files), unless overwrite=true (docs/training.md)."""
    found = [f for f in ('ckpt.pt', 'log.jsonl') if os.path.lexists(os.path.join(cfg.out_dir, f))]
    if cfg.init_from != 'resume' and found and not cfg.overwrite:
        raise UserError(f"{cfg.out_dir} already holds a run ({', '.join(found)}); continue it with --init_from=resume, "
                        f"pick another --out_dir, or pass --overwrite to replace it")
    held = model_files(cfg.export_hf)
    if held and not cfg.overwrite:
        raise UserError(f"export_hf={cfg.export_hf} already holds a model ({', '.join(held)}); pick another directory, "
                        f"or pass --overwrite to replace it (its other files stay)")
    if cfg.export_hf:
        check_writable(cfg.export_hf)  # now, not after the training


@torch.no_grad()
def evaluate(cfg, run, model, meta, splits):  # val ELBO; batch j runs on rank j % world with its own generator
    total = torch.zeros((), device=run.device)
    n = -(-cfg.eval_iters // run.world) * run.world if run.fsdp else cfg.eval_iters  # FSDP: every rank runs as many
    for j in range(run.rank, n, run.world):  # forwards (each gathers weights); batches past eval_iters count 0
        generator = rng(cfg.seed, 'val', j)
        x0, plen = get_batch(cfg, meta, splits, 'val', generator)
        maskable = None
        if plen is not None:  # SFT: the answer and its eos, given the prompt (pads stay visible)
            ar, n = torch.arange(cfg.seq_len), (x0 != meta['pad_id']).sum(1)
            maskable = ((ar >= plen[:, None]) & (ar < n[:, None])).to(run.device)
        with run.ctx:
            nats = elbo(model, run.put(x0), n_samples=cfg.elbo_samples, generator=generator, maskable=maskable)
            total += nats.mean() * (j < cfg.eval_iters)
        run.mark_step()  # XLA: one small graph per batch (compiled once, reused), not one of the whole evaluation
    loss = run.all_sum(total).item() / cfg.eval_iters
    out = {'val_loss': loss}
    if meta['tokenizer'] == 'bytes':
        out['val_bpb'] = bits_per_byte(loss)
    return out


@torch.no_grad()
def sample(cfg, run, model, meta, splits, iter_num):
    from sample import generate
    from lib.tokenizer import load_tokenizer
    run.tokenizer = tokenizer = getattr(run, 'tokenizer', None) or load_tokenizer(meta['tokenizer'])  # loaded once
    if cfg.objective == 'sft':
        ids, plen = splits['val'][0].example(splits['val'][1][0])
        prompt = ids[:plen].tolist()
    else:
        prompt = tokenizer.encode('import os\n\n\ndef ')
    net, sctx = model, run.ctx
    if run.fsdp and not run.xla:  # a full CPU copy on rank 0: a sharded forward on one rank would wait for the others
        state, _ = full_state(run, model, None)
        if not run.master:
            return None
        net, sctx = plain_copy(model, state), nullcontext()
    elif run.xla:  # the sampler's shapes depend on the data (which slots it commits): on XLA every step would
        # compile a new graph. Sampling is a tiny part of a run, so it runs on a CPU copy of the weights
        net, sctx = Transformer(model.config).eval(), nullcontext()
        net.load_state_dict(to_cpu(model.state_dict()))
    with sctx:  # 64 tokens, one per step, in semi-AR blocks of 8; a little randomness keeps a young
        # model from filling everything with its most confident token (spaces)
        out, _ = generate(net, [prompt], gen_length=64, block_length=8, steps=64, temperature=0.8, top_k=10,
                          eos_id=meta['eos_id'], pad_id=meta['pad_id'], generator=rng(cfg.seed, 'sample', iter_num))
    gen = out[0, len(prompt):].tolist()
    gen = gen[:gen.index(meta['eos_id'])] if meta['eos_id'] in gen else gen  # nothing after the end
    return tokenizer.decode(prompt) + tokenizer.decode(gen)


def _xla_worker(index, cfg):  # torch_xla.launch passes the process index first
    train(cfg)


if __name__ == '__mp_main__':  # a torch_xla.launch worker process, which runs train() in a thread:
    catch_signals()            # signals reach this, its main thread


def main(argv):
    cfg = get_config(argv)
    if cfg.plan:  # memory per device for ddp / fsdp / fsdp + activation checkpointing; nothing is trained
        return print_plan(cfg)
    if cfg.device == 'xla':  # one process per local TPU chip (PJRT); every host of a pod runs the same command
        try:
            import torch_xla
        except ImportError:
            raise UserError("device=xla needs torch_xla; install it with pip install -r requirements-xla.txt") from None
        os.environ.setdefault('PJRT_DEVICE', 'TPU')
        if cfg.parallel == 'fsdp':  # SPMD: this one process drives every local chip
            return train(cfg)
        import multiprocessing  # a SIGTERM sent to this parent alone reaches the workers, which checkpoint and stop
        from concurrent.futures.process import BrokenProcessPool
        signal.signal(signal.SIGTERM, lambda sig, _: [os.kill(p.pid, sig) for p in multiprocessing.active_children()])
        ctrl_c = []  # Ctrl-C reaches every worker from the terminal; this launcher only counts it and waits
        signal.signal(signal.SIGINT, lambda sig, _: ctrl_c.append(sig))
        try:
            return torch_xla.launch(_xla_worker, args=(cfg,))
        except BrokenProcessPool:  # a worker ended at once: a second Ctrl-C (runtime.on_signal), or it was killed
            why = "interrupted twice; stopped at once" if len(ctrl_c) > 1 else "a TPU worker process died (killed, or out of memory?)"
            raise UserError(f"{why}; the last checkpoint in {cfg.out_dir} is kept") from None
    return train(cfg)


if __name__ == '__main__':  # (before the training loop, which saves on a signal, Ctrl-C has nothing to save)
    run_cli(main, interrupted='interrupted before training started')
