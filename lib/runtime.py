"""
The machinery under train.py's loop, apart from the method: processes and devices (one process,
torchrun's DDP, torch_xla), the model a run starts from, stopping on Ctrl-C / SIGTERM with a
checkpoint, checkpoints (read, and written atomically), the HF export, the log and its plot. The
sharded engines (FSDP, SPMD) are in lib/sharding.py. train.loop() reads as the loop; this is what it calls.
"""
import fcntl
import json
import os
import re
import shutil
import signal
import tempfile
import threading
from dataclasses import asdict
from contextlib import contextmanager, nullcontext
from types import SimpleNamespace

import torch
import torch.distributed as dist
from tqdm import tqdm

from lib.cli import UserError, parse_dtype, read_json, writing
from data.common import data_ids
from model import ModelConfig, Transformer, make_config
from lib.tokenizer import load_tokenizer
from lib.sharding import (check_fsdp, checkpoint_layers, full_state, fully_shard_model, load_optimizer_state,
                      spmd_shard_model, start_spmd)


# -----------------------------------------------------------------------------
# processes and devices

def start_processes(cfg):
    """torchrun sets RANK/WORLD_SIZE; torch_xla.launch runs one process per chip; else one process.
    parallel=fsdp on XLA: one process per host drives every chip through an SPMD mesh (lib/sharding.py)."""
    run = SimpleNamespace(xla=cfg.device == 'xla', fsdp=cfg.parallel == 'fsdp', mark_step=lambda: None)
    if run.xla:
        import torch_xla
        import torch_xla.core.xla_model as xm
        import torch_xla.runtime as xr
        import torch_xla.debug.metrics as met
        if run.fsdp:  # the loop sees one process of one (sharded) device
            start_spmd(run)
            run.rank, run.world = 0, 1
        else:
            run.rank, run.world = xr.global_ordinal(), xr.world_size()
        check_world(cfg, run)  # (SPMD: the batch splits over the chips)
        run.device, run.xm, run.met = torch_xla.device(), xm, met
        run.all_sum = lambda t: xm.all_reduce(xm.REDUCE_SUM, t) if run.world > 1 else t
        run.mark_step = xm.mark_step  # cut the lazy graph here: one graph per kind of step, compiled once
    else:
        run.world = env_world()
        check_world(cfg, run)  # before waiting for the other processes
        missing = [k for k in ('RANK', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT') if k not in os.environ]
        if run.world > 1 and missing:  # torchrun sets them all: WORLD_SIZE alone would fail in init_process_group
            raise UserError(f"WORLD_SIZE={run.world} is set but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                            f"not; launch with torchrun (it sets them all), or unset WORLD_SIZE to run one process")
        device = cfg.device if cfg.device != 'auto' else \
            'cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu'
        if run.world > 1 or run.fsdp:  # one GPU per process (NCCL), or gloo between CPU processes (FSDP: also one)
            if device.startswith('cuda'):
                device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
                torch.cuda.set_device(device)
            dist.init_process_group('nccl' if device.startswith('cuda') else 'gloo')
        run.rank, run.device = dist.get_rank() if dist.is_initialized() else 0, device
        run.all_sum = lambda t: (dist.all_reduce(t), t)[1] if dist.is_initialized() else t
    run.master = getattr(run, 'master', run.rank == 0)
    run.ddp = run.world > 1 and not run.xla and not run.fsdp
    run.put = getattr(run, 'put', lambda x: x.to(run.device))  # a batch onto the device (SPMD: split over chips)
    run.dev_type = 'xla' if run.xla else torch.device(run.device).type
    run.dtype = cfg.dtype if cfg.dtype != 'auto' else 'bfloat16' if run.dev_type in ('cuda', 'xla') else 'float32'
    ptdtype = getattr(torch, run.dtype)
    run.ctx = nullcontext() if ptdtype == torch.float32 else torch.autocast(run.dev_type, dtype=ptdtype)
    if run.dev_type == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return run


def env_world():  # the processes torchrun started (1 without torchrun)
    world = os.environ.get('WORLD_SIZE', '1')
    if not world.isdigit() or int(world) < 1:
        raise UserError(f"WORLD_SIZE={world!r} is not a number of processes; launch with torchrun, or unset WORLD_SIZE")
    return int(world)


def check_world(cfg, run):
    if cfg.grad_accum % run.world:
        raise UserError(f"grad_accum={cfg.grad_accum} is the total over all {run.world} processes; use a multiple of {run.world}")
    if run.fsdp:
        check_fsdp(cfg, run)


def end_processes(run):
    if dist.is_initialized():
        dist.barrier()  # every rank is past its last collective before any closes its connections (gloo)
        dist.destroy_process_group()


def reduce_step(run, optimizer, loss_sum, stop):
    """-> (the loss summed over all micro-steps of all processes, whether any process must stop)."""
    if run.xla and run.world > 1:
        run.xm.reduce_gradients(optimizer)  # mean of the gradients over the TPU processes (DDP does it in backward)
    return run.all_sum(torch.stack([loss_sum, torch.tensor(float(bool(stop)), device=run.device)])).tolist()


def wrap_model(cfg, run, model):
    """Onto the device; activation checkpointing; FSDP (shards `model` in place) or torch.compile + DDP."""
    if cfg.activation_checkpointing:
        checkpoint_layers(model, xla=run.xla)
    if run.fsdp and run.xla:
        return spmd_shard_model(run, model)
    if run.fsdp:
        model = fully_shard_model(cfg, run, model)  # also moves it to the device
    else:
        model.to(run.device)
        if model.config.tie_word_embeddings:  # .to('xla') makes new Parameters, which unties a shared head: tie again
            model.lm_head.weight = model.model.embed_tokens.weight
    if cfg.compile:
        model = torch.compile(model)
    if run.ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP
        config = model.config
        model = DDP(model, device_ids=[torch.device(run.device).index] if run.dev_type == 'cuda' else None)
        model.config = config  # training_loss reads model.config
    return model


@contextmanager
def hold_out_dir(out_dir, master):
    """One run at a time writes in out_dir: the master holds an flock on out_dir/.lock (its pid inside) for the
    whole run; the kernel releases it when the process ends, so a killed run's leftover file never blocks. A
    second run is a UserError naming the live one. On the way out the lock file goes, and so does an out_dir
    this run made if nothing else is in it."""
    if not master:
        yield
        return
    made = not os.path.isdir(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, '.lock')
    while True:
        f = open(path, 'a+')
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or '?'
            f.close()
            raise UserError(f"{out_dir} is in use by another train.py run (pid {pid}); wait for it to end, or "
                            f"pick another out_dir") from None
        if inode(path) == os.fstat(f.fileno()).st_ino:
            break
        f.close()  # the run before removed the file while this one waited for it: lock the new one
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    try:
        yield
    finally:
        os.remove(path)
        f.close()
        if made and not os.listdir(out_dir):
            os.rmdir(out_dir)  # a first run that failed leaves no directory behind


# -----------------------------------------------------------------------------
# the model a run starts from: from scratch, a train.py checkpoint, or a Hugging Face Qwen3 / CoDA directory

def load_source(cfg):
    """What init_from names -> (kind, checkpoint dict or None); kind: scratch | resume | ckpt | hf."""
    src = cfg.init_from
    if src in ('scratch', 'resume'):
        return src, (load_checkpoint(checkpoint_path(cfg.out_dir)) if src == 'resume' else None)
    path = src if os.path.isfile(src) else os.path.join(src, 'ckpt.pt')
    if os.path.isfile(path):  # the weights of another train.py run (a new stage: fresh optimizer and schedule)
        return 'ckpt', load_checkpoint(path)
    if os.path.isdir(src):
        return 'hf', None
    raise UserError(f"init_from={src!r} is not scratch, resume, a checkpoint or a directory; "
                    f"pass a Hugging Face Qwen3/CoDA directory or a train.py out_dir")


def build_model(cfg, meta, kind, ckpt):
    # CoDA's conventions: mdm/sft bidirectional, block diffusion block-causal, the ar baseline causal
    attention = {'ar': 'causal', 'block': 'block'}.get(cfg.objective, 'bidirectional')
    if kind in ('resume', 'ckpt') and ckpt['tokenizer'] != meta['tokenizer']:
        raise UserError(f"the dataset was tokenised with {meta['tokenizer']!r}, the model with {ckpt['tokenizer']!r}; "
                        f"prepare the dataset with --tokenizer={ckpt['tokenizer']}")
    shift = logit_shift(cfg, kind, ckpt)
    common = dict(attention=attention, mask_token_id=meta['mask_id'], block_size=cfg.block_size, shift_logits=shift)
    if kind == 'resume':  # the checkpoint's own model
        model = Transformer(ModelConfig(**ckpt['model_config']))
        model.load_state_dict(ckpt['model'])
    elif kind == 'scratch':  # FIM: the sentinels may lie past the ids of a dataset prepared before they existed
        vocab = max([data_ids(meta)] + [i + 1 for i in fim_ids(cfg, meta) + expand_ids(cfg, meta)])
        model = Transformer(make_config(cfg.model, vocab_size=vocab, **common))
    elif kind == 'ckpt':
        model = Transformer(ModelConfig(**{**ckpt['model_config'], **common}))
        model.load_state_dict(ckpt['model'])
    else:
        if os.path.isfile(os.path.join(cfg.init_from, 'tokenizer.json')):
            tok = load_tokenizer(cfg.init_from)
            if (tok.vocab_size, tok.mask_id) != (meta['vocab_size'], meta['mask_id']):
                raise UserError(f"the dataset's tokenizer ({meta['tokenizer']!r}) is not the one of {cfg.init_from}; "
                                f"prepare the dataset with --tokenizer={cfg.init_from}")
        model = Transformer.from_pretrained(cfg.init_from, dtype=torch.float32, **common)
    for i in expand_ids(cfg, meta):  # varlen: a row for <|expand|> in a model made without one
        model.resize_token_embeddings(i + 1)
    c = model.config
    if data_ids(meta) > c.vocab_size or c.mask_token_id >= c.vocab_size:
        raise UserError(f"the dataset's tokenizer ({data_ids(meta)} ids) does not fit the model's vocab "
                        f"({c.vocab_size}); prepare the dataset with the model's tokenizer (--tokenizer=<model dir>)")
    if max(fim_ids(cfg, meta), default=0) >= c.vocab_size:
        raise UserError(f"fim_rate > 0 needs the FIM sentinels {fim_ids(cfg, meta)} in the model's vocab ({c.vocab_size}); "
                        f"train from scratch or set fim_rate=0")
    if cfg.seq_len > c.max_position_embeddings:
        raise UserError(f"seq_len={cfg.seq_len} exceeds the model's max_position_embeddings={c.max_position_embeddings}")
    return model


def logit_shift(cfg, kind, ckpt):
    """Does the model read position i's prediction from the logits at i-1 (Dream, CoDA)? An AR model's
    head at i-1 already predicts token i, so an AR source trained with a diffusion objective keeps it:
    auto = on for a causal source (an objective=ar run, a Qwen3 directory), else the source's own setting
    (off from scratch, as LLaDA). shift_logits=true/false ablates it."""
    if kind == 'resume':
        own = ckpt['model_config']['shift_logits']
        if cfg.shift_logits != 'auto' and (cfg.shift_logits == 'true') != own:
            raise UserError(f"shift_logits={cfg.shift_logits}: the run in {cfg.out_dir} was trained with shift_logits="
                            f"{str(own).lower()} and resume keeps its model; start a new stage with init_from={cfg.out_dir}")
        return own
    if kind == 'scratch':
        attention, own = None, False
    elif kind == 'ckpt':
        attention, own = ckpt['model_config']['attention'], ckpt['model_config']['shift_logits']
    else:  # a Hugging Face directory: qwen3 = an AR model; CoDA = a shifted bidirectional one
        path = os.path.join(cfg.init_from, 'config.json')  # (from_pretrained reports a missing one)
        coda = os.path.isfile(path) and str(read_json(path, 'config.json').get('model_type')).lower() == 'coda'
        attention, own = ('bidirectional', True) if coda else ('causal', False)
    if cfg.attn_anneal_iters and attention != 'causal':
        raise UserError(f"attn_anneal_iters={cfg.attn_anneal_iters} opens a causal model's attention gradually, but "
                        + (f"{cfg.init_from} is already {attention}" if attention else "a model from scratch has none")
                        + "; set attn_anneal_iters=0, or start from an AR run (init_from=<an objective=ar out_dir>)")
    if cfg.objective == 'ar':
        return False
    if cfg.shift_logits != 'auto':
        return cfg.shift_logits == 'true'
    return attention == 'causal' or own


def fim_ids(cfg, meta):
    """(<|fim_prefix|>, <|fim_middle|>, <|fim_suffix|>) ids of the dataset's tokenizer when FIM is on, else ()."""
    if cfg.fim_rate <= 0:
        return ()
    return load_tokenizer(meta['tokenizer']).fim_ids


def expand_ids(cfg, meta):
    """(<|expand|>,) of the dataset's tokenizer when varlen_rate > 0 (variable-length infilling), else ()."""
    if cfg.varlen_rate <= 0:
        return ()
    return (load_tokenizer(meta['tokenizer']).expand_id,)


# -----------------------------------------------------------------------------
# stopping. Ctrl-C (SIGINT) and SIGTERM (SLURM preemption, Kubernetes, torchrun's shutdown)
# only append to STOP. The processes agree on it through the loss all-reduce, all drop that iteration's
# update, and rank 0 checkpoints the last complete one. A second Ctrl-C stops at once (the last checkpoint
# stays); SIGTERM may arrive twice (from the scheduler and from a parent that forwards it).
STOP = []
IN_THREAD = []  # set while the loop runs outside the main thread (a torch_xla.launch worker)


def on_signal(signum, frame):
    if STOP and signum == signal.SIGINT:
        if IN_THREAD:  # the loop cannot be interrupted from here: end the process, the launcher reports it
            os._exit(130)
        raise KeyboardInterrupt
    STOP.append(signal.Signals(signum).name)


def catch_signals():  # -> the previous handlers (signals reach a process's main thread only)
    return {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}


@contextmanager
def stop_on_signal(cfg):  # yields STOP; the loop checks it every iteration
    main = threading.current_thread() is threading.main_thread()
    if main:  # a worker process caught signals since it started: a Ctrl-C during set-up still counts
        STOP.clear()
    else:
        IN_THREAD.append(True)
    handlers = catch_signals() if main else {}
    try:
        yield STOP
    except KeyboardInterrupt:  # a second signal, possibly mid-update: nothing more is saved
        raise UserError(f"interrupted twice; stopped at once, the last checkpoint in {cfg.out_dir} is kept") from None
    finally:
        IN_THREAD.clear()
        for s, h in handlers.items():
            signal.signal(s, h)


# -----------------------------------------------------------------------------
# checkpoints (read, and written atomically), the HF export and the log

def load_checkpoint(path, mmap=False):
    """A train.py ckpt.pt on the CPU, tensors and plain values only (weights_only=True)."""
    try:
        ck = torch.load(path, map_location='cpu', weights_only=True, mmap=mmap)
    except Exception as e:  # empty, truncated or foreign files raise many kinds of errors
        raise UserError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e)[:80]}); "
                        f"point to a complete ckpt.pt written by train.py") from None
    if not isinstance(ck, dict) or 'model' not in ck or 'model_config' not in ck:
        raise UserError(f"{path} is not a nanoCoDA checkpoint (no 'model' / 'model_config'); pass train.py's ckpt.pt")
    return ck


def checkpoint_path(out_dir):
    path = os.path.join(out_dir, 'ckpt.pt')
    if not os.path.isfile(path):
        raise UserError(f"no checkpoint at {path} to resume from; train first (init_from=scratch) or pass the right out_dir")
    return path


def resume_state(run, ckpt, optimizer, scaler=None):  # -> iter_num, best_val_loss
    load_optimizer_state(run, optimizer, ckpt['optimizer'])  # (FSDP: sharded like the parameters)
    if scaler is not None and scaler.is_enabled() and ckpt.get('scaler'):  # fp16: the loss scale it had reached
        scaler.load_state_dict(ckpt['scaler'])
    torch.set_rng_state(ckpt['rng']['torch'])
    return ckpt['iter_num'], ckpt['best_val_loss']


def save_checkpoint(cfg, run, model, optimizer, meta, iter_num, best_val, scaler=None):  # -> the model state (rank 0)
    model_state, optimizer_state = checkpoint_state(run, model, optimizer)  # (FSDP: every rank sends its shards)
    if not run.master:
        return None
    obj = dict(model=model_state, model_config=asdict(model.config),
               train_config=asdict(cfg), tokenizer=meta['tokenizer'], iter_num=iter_num,
               optimizer=optimizer_state, rng={'torch': torch.get_rng_state()},
               best_val_loss=best_val, scaler=scaler.state_dict() if scaler is not None and scaler.is_enabled() else None)
    save_atomic(obj, os.path.join(cfg.out_dir, 'ckpt.pt'))
    return model_state


def save_atomic(obj, path):  # torch.save to a temporary file, then rename: never a half-written file
    tmp = path + '.tmp'
    try:
        with writing(path), open(tmp, 'wb') as f:  # (a full disk: an OSError naming path, the old file intact)
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())  # on disk before it replaces the old one
        os.replace(tmp, path)  # atomic: a crash or kill never leaves a half-written ckpt.pt
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def to_cpu(obj):  # checkpoints hold CPU tensors only (XLA/CUDA tensors are copied)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj.detach().cpu() if torch.is_tensor(obj) else obj


def checkpoint_state(run, model, optimizer):
    """(model, optimizer) state dicts of CPU tensors in one process's format on rank 0, (None, None) elsewhere."""
    if run.fsdp and not run.xla:  # all ranks gather the shards (SPMD's .cpu() gathers by itself)
        return full_state(run, model, optimizer)
    return (to_cpu(model.state_dict()), to_cpu(optimizer.state_dict())) if run.master else (None, None)


HF_FILES = ('config.json', 'generation_config.json', 'model.safetensors', 'model.safetensors.index.json',
            'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json')


def model_files(path):
    """The files of a Hugging Face model in the directory path (its shards too): what an export replaces."""
    return sorted(n for n in os.listdir(path) if n in HF_FILES or re.fullmatch(r'model-\d+-of-\d+\.safetensors', n)) \
        if os.path.isdir(path) else []


def export_hf(model, meta, path):
    """HF layout (config.json + safetensors) plus the tokenizer: its files when it is one (a tokenizer.json),
    else its name in config.json (nanocoda_tokenizer: bytes, gpt2, qwen3), which load_model reads. The export
    is written whole in a temporary directory, then replaces every model file in path (an old shard or index
    left beside the new config would be loaded with it); other files in path are never touched."""
    spec = meta['tokenizer']
    src = spec if os.path.isdir(spec) else os.path.dirname(spec) if os.path.isfile(spec) else None
    made = not os.path.isdir(path)
    os.makedirs(path, exist_ok=True)
    new = tempfile.mkdtemp(prefix='.export-', dir=path)
    try:
        with writing(path):
            model.save_pretrained(new, **({} if src else {'nanocoda_tokenizer': spec}))
            for name in ('tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'):
                if src and os.path.isfile(os.path.join(src, name)):
                    shutil.copy(os.path.join(src, name), os.path.join(new, name))
        for name in model_files(path):
            os.remove(os.path.join(path, name))
        for name in os.listdir(new):
            os.replace(os.path.join(new, name), os.path.join(path, name))
    finally:
        shutil.rmtree(new, ignore_errors=True)
        if made and not os.listdir(path):
            os.rmdir(path)  # a failed export leaves no directory behind
    print(f"exported to {path} ({'with its tokenizer.json' if src else f'tokenizer {spec!r} named in config.json'})")


class RunLog:
    """log.jsonl, kept in step with ckpt.pt. Lines are appended as they come when the file holds exactly
    what this run keeps (a new out_dir, or a resume whose log ends at its checkpoint); otherwise (a run
    replacing another with overwrite=true, a log that ran past its checkpoint) they wait in memory. Each
    checkpoint commits them; a run that fails puts the file back as it was at its last commit, byte for
    byte (or removes it if it never reached one), and only the file it wrote itself (the same inode)."""

    def __init__(self, cfg, run, iter_num):
        self.path, self.master, self.new = os.path.join(cfg.out_dir, 'log.jsonl'), run.master, []
        if not self.master:
            return
        old = open(self.path, 'rb').read() if os.path.isfile(self.path) else None
        self.kept = [l for l in (old or b'').decode('utf-8', 'replace').splitlines() if iter_num and keep(l, iter_num)]
        self.live = old == ''.join(l + '\n' for l in self.kept).encode() or (old is None and not self.kept)
        self.size = None if old is None else len(old)  # the file at the last commit (None: no file)
        self.inode = inode(self.path)

    def append(self, line):
        self.new.append(line)
        if self.live:
            with writing(self.path), open(self.path, 'a') as f:
                f.write(line + '\n')
            self.inode = self.inode or inode(self.path)

    def commit(self):  # after each checkpoint
        if not self.master:
            return
        if not self.live or not os.path.isfile(self.path):
            text = ''.join(l + '\n' for l in self.kept + self.new)
            tmp = self.path + '.tmp'
            with writing(self.path), open(tmp, 'w') as f:
                f.write(text)
            os.replace(tmp, self.path)
            self.live = True
        self.size, self.inode = os.path.getsize(self.path), inode(self.path)

    @contextmanager
    def rollback_on_error(self):
        try:
            yield
        except BaseException:
            if self.master and self.live and self.inode and inode(self.path) == self.inode:
                if self.size is not None:
                    os.truncate(self.path, self.size)
                else:
                    os.remove(self.path)
            raise


def inode(path):  # the file at path (None: none there)
    return os.stat(path).st_ino if os.path.isfile(path) else None


def keep(line, iter_num):  # a resumed log keeps the records up to its checkpoint
    try:
        rec = json.loads(line)
        return isinstance(rec, dict) and isinstance(rec.get('iter'), int) and rec['iter'] <= iter_num
    except ValueError:
        return False


def read_log(path):
    """The records of a run's log.jsonl (speedrun.py and experiments/ read them), each checked: a JSON object
    with an integer iter and numbers."""
    recs = []
    with open(path, encoding='utf-8', errors='replace') as f:
        for lineno, line in enumerate(f, 1):
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if not (isinstance(rec, dict) and isinstance(rec.get('iter'), int) and all(
                    isinstance(rec.get(k, 0.0), (int, float)) for k in ('loss', 'val_loss', 'val_bpb'))):
                raise UserError(f"{path} line {lineno} is not a train.py log record (JSON with iter, loss ...); "
                                f"the log is damaged: retrain the run, or move it away")
            recs.append(rec)
    return recs


def start_log(cfg, run, model, data_path, iter_num):
    runlog = RunLog(cfg, run, iter_num)
    if run.master:
        n_tok = cfg.batch_size * cfg.seq_len * cfg.grad_accum
        print(f"{cfg.objective} on {data_path}: {model.num_params() / 1e6:.2f}M params ({model.config.attention}), "
              f"{run.world} process(es) on {run.dev_type}{f' (SPMD FSDP over {run.n_shards} devices)' if run.fsdp and run.xla else ' (FSDP)' if run.fsdp else ''}, {run.dtype}, {n_tok:,} tokens/iter, iters {iter_num}..{cfg.max_iters}")
    return runlog


def log(cfg, run, rec, last, history, pbar, runlog):
    if run.xla:  # graphs compiled so far: stops growing once each kind of step has run once
        rec['xla_compiles'] = (run.met.metric_data('CompileTime') or (0,))[0]
    if not run.master:
        return
    history.append(rec)
    pbar.set_postfix(loss=f"{rec['loss']:.3f}", **({'val': f"{rec['val_loss']:.3f}"} if 'val_loss' in rec else {}))
    if rec['iter'] % cfg.log_interval == 0 or 'val_loss' in rec or last:
        runlog.append(json.dumps(rec))
    if 'val_loss' in rec:
        tqdm.write(' '.join(f"{k} {v:.4g}" for k, v in rec.items()))


def plot_losses(log_path):
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:  # optional
        return
    recs = [json.loads(l) for l in open(log_path)]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r['iter'] for r in recs], [r['loss'] for r in recs], label='train loss')
    val = [r for r in recs if 'val_loss' in r]
    ax.plot([r['iter'] for r in val], [r['val_loss'] for r in val], 'o-', label='val ELBO')
    ax.set_xlabel('iteration'), ax.set_ylabel('nats / token'), ax.legend()
    path = os.path.join(os.path.dirname(log_path), 'loss.png')
    try:
        with writing(path):
            fig.savefig(path + '.tmp', dpi=100, format='png')
        os.replace(path + '.tmp', path)  # the picture of this run's log, whole or not at all
    finally:
        plt.close(fig)
        if os.path.exists(path + '.tmp'):
            os.remove(path + '.tmp')


def load_model(path, device='cpu', dtype=None):
    """(model, tokenizer) from a train.py ckpt.pt, an out_dir holding one, or an HF Qwen3/CoDA directory
    (tokenizer from its tokenizer.json). model.train_config is the training config ({} for HF)."""
    if isinstance(dtype, str):
        dtype = parse_dtype(dtype) if dtype != 'auto' else None
    ckpt = path if os.path.isfile(path) else os.path.join(path, 'ckpt.pt')
    if os.path.isfile(ckpt):
        ck = load_checkpoint(ckpt)
        model = Transformer(ModelConfig(**ck['model_config']))
        model.load_state_dict(ck['model'])  # train.py saves the unwrapped model's state
        tok = load_tokenizer(ck.get('tokenizer') or 'bytes')
        model.train_config = ck.get('train_config') or {}
    elif os.path.isfile(os.path.join(path, 'config.json')):
        model = Transformer.from_pretrained(path, dtype=dtype)
        named = read_json(os.path.join(path, 'config.json'), 'config.json').get('nanocoda_tokenizer')  # (export_hf)
        if not os.path.isfile(os.path.join(path, 'tokenizer.json')) and not isinstance(named, str):
            raise UserError(f"{path} has no tokenizer.json; copy the model's tokenizer.json next to config.json")
        tok = load_tokenizer(path if os.path.isfile(os.path.join(path, 'tokenizer.json')) else named)
        model.train_config = {}
    else:
        raise FileNotFoundError(f"{path}: no ckpt.pt and no config.json; pass a train.py out_dir, a ckpt.pt "
                                f"or a Hugging Face Qwen3/CoDA directory")
    return model.to(device=device, dtype=dtype).eval(), tok
