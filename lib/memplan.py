"""
The memory plan: what one device holds while training, before a run (python train.py CONFIG --plan).

  python train.py config/coda_pretrain.py --plan --world_size=8 --device_memory=24GB

Per parameter, AdamW in fp32: weights 4 bytes, gradients 4,
the two moments 8, and AdamW's foreach step a temporary of 4 (sqrt of the second moment) = 20
bytes at the optimizer step. DDP adds its gradient buckets (4); bf16 autocast keeps bf16 copies of
the weights from forward to backward (2). FSDP divides all of it by the N shards, and holds in full
only what is gathered: the root (embedding, final norm, head) and two decoder layers at a time
(the one running, the one prefetched); reshard_after_forward=False keeps every layer gathered.

Activations (the tensors autograd saves), in floats per token, counted from model.py's layer with
torch.autograd.graph.saved_tensors_hooks: per decoder layer 4h + 6q + 5kv + 4i (h hidden, i
intermediate, q = heads x head_dim, kv = kv heads x head_dim), plus about 4h for the final norm
and the head. bf16 autocast stores them at about 2/3 of that (the norms stay fp32). Activation
checkpointing keeps each layer's input (h) and, in backward, one layer's activations again.
A backward also holds one layer's activation gradients and the cross-entropy's logits chunk.
"""
import os
import re
from types import SimpleNamespace

from lib.cli import UserError
from lib.head import CE_CHUNK_FLOATS
from model import ModelConfig, Transformer, make_config
from lib.runtime import check_world, env_world, load_checkpoint

GB = 1e9


def parse_size(text):
    """'24GB', '80G', '16GiB', '512MB' -> bytes."""
    m = re.fullmatch(r'\s*([0-9]*\.?[0-9]+)\s*(k|m|g|t)(i?)b?\s*', str(text).lower())
    if not m:
        raise UserError(f"device_memory={text!r} is not a size; write it like 24GB, 80GB, 16GiB or 512MB")
    value, unit, binary = float(m[1]), 'kmgt'.index(m[2]) + 1, m[3] == 'i'
    return value * (1024 if binary else 1000) ** unit


def model_shape(cfg):
    """The ModelConfig training would build: init_from's config when it is on disk, else the preset."""
    src = cfg.init_from
    if src not in ('scratch', 'resume'):
        path = src if os.path.isfile(src) else os.path.join(src, 'ckpt.pt')
        if os.path.isfile(path):
            return ModelConfig(**load_checkpoint(path, mmap=True)['model_config']), path
        if os.path.isfile(os.path.join(src, 'config.json')):  # (checked as training reads it)
            return ModelConfig(**Transformer.read_hf_config(src)[0]), os.path.join(src, 'config.json')
    if src == 'resume' and os.path.isfile(os.path.join(cfg.out_dir, 'ckpt.pt')):
        return ModelConfig(**load_checkpoint(os.path.join(cfg.out_dir, 'ckpt.pt'), mmap=True)['model_config']), cfg.out_dir
    return make_config(cfg.model), f"preset model={cfg.model}" + ('' if src == 'scratch' else f" ({src} not found)")


def param_counts(c):
    """(all parameters, one decoder layer's, the root's: embedding + final norm + an untied head)."""
    q, kv, h = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim, c.hidden_size
    layer = h * (q + 2 * kv) + q * h + 3 * h * c.intermediate_size + 2 * h + 2 * c.head_dim
    root = c.vocab_size * h * (1 if c.tie_word_embeddings else 2) + h
    return c.num_hidden_layers * layer + root, layer, root


def activation_floats(c, checkpointing):
    """Floats per token saved for backward (see the module docstring)."""
    h, i = c.hidden_size, c.intermediate_size
    q, kv = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
    layer = 4 * h + 6 * q + 5 * kv + 4 * i
    if checkpointing:
        return c.num_hidden_layers * h + 4 * h + layer  # layer inputs, the head, one layer recomputed
    return c.num_hidden_layers * layer + 4 * h


def plan(c, *, tokens, dtype, world, engine, reshard_after_forward=True, checkpointing=False):
    """Bytes per device of each part, and the peak: max(forward/backward, the optimizer step).
    tokens: tokens one device runs per micro-step (batch x seq_len; x2 for block diffusion's [x_t ; x_0])."""
    P, layer, root = param_counts(c)
    low = dtype in ('bfloat16', 'float16')
    n = world if engine == 'fsdp' else 1
    act_bytes = 4 * (2 / 3 if low else 1)
    out = dict(params=4 * P / n, grads=4 * P / n, optimizer=8 * P / n)
    if engine == 'fsdp':  # gathered (compute dtype): the root, and two layers or all of them
        gathered_layers = c.num_hidden_layers if not reshard_after_forward else min(2, c.num_hidden_layers)
        out['gathered'] = (2 if low else 4) * (root + gathered_layers * layer) if world > 1 else 0
        out['grad_buckets'] = 4 * 2 * layer if world > 1 else 0  # a layer's full gradient, before reduce-scatter
    else:
        out['gathered'] = 2 * P if low else 0  # autocast's bf16 weight copies
        out['grad_buckets'] = 4 * P if world > 1 else 0  # DDP's all-reduce buckets
    out['activations'] = tokens * activation_floats(c, checkpointing) * act_bytes
    transient = 4 * tokens * (2 * c.intermediate_size + 2 * c.hidden_size) + 3 * 4 * min(tokens * c.vocab_size, CE_CHUNK_FLOATS)
    forward_backward = out['params'] + out['optimizer'] + out['gathered'] + out['grad_buckets'] + out['activations'] + transient
    step = out['params'] + out['grads'] + out['optimizer'] + out['grad_buckets'] + 4 * P / n  # AdamW's temporary
    out['peak'] = max(forward_backward, step)
    return out


def plan_rows(cfg, c, world):
    tokens = cfg.batch_size * cfg.seq_len * (2 if cfg.objective == 'block' else 1)
    dtype = cfg.dtype if cfg.dtype != 'auto' else 'float32' if cfg.device == 'cpu' else 'bfloat16'
    rows = [('ddp', 'ddp', True, False), ('fsdp', 'fsdp', True, False),
            ('fsdp, reshard_after_forward=False', 'fsdp', False, False), ('fsdp + activation checkpointing', 'fsdp', True, True)]
    per_device = lambda e: tokens / world if e == 'fsdp' and cfg.device == 'xla' else tokens  # SPMD splits the batch
    return dtype, tokens, [(name, plan(c, tokens=per_device(e), dtype=dtype, world=world, engine=e,
                                       reshard_after_forward=r, checkpointing=ac)) for name, e, r, ac in rows]


def print_plan(cfg):
    limit = parse_size(cfg.device_memory)
    world = cfg.world_size or env_world()
    spmd = cfg.device == 'xla' and cfg.parallel == 'fsdp'  # training's own check of this launch (start_processes)
    check_world(cfg, SimpleNamespace(world=1 if spmd else world, n_shards=world, xla=cfg.device == 'xla',
                                     fsdp=cfg.parallel == 'fsdp'))
    c, source = model_shape(cfg)
    P = param_counts(c)[0]
    dtype, tokens, rows = plan_rows(cfg, c, world)
    print(f"memory plan per device: {P / 1e9:.3f}B parameters ({source}), {world} device(s), {dtype}, "
          f"micro-batch {cfg.batch_size} x {cfg.seq_len} ({tokens:,} tokens run), device memory {limit / GB:.1f} GB")
    keys = ('params', 'grads', 'optimizer', 'gathered', 'grad_buckets', 'activations', 'peak')
    print(f"{'':34}" + ''.join(f"{k:>13}" for k in keys) + '  fits')
    for name, r in rows:
        print(f"{name:34}" + ''.join(f"{r[k] / GB:>10.2f} GB" for k in keys) + f"  {'yes' if r['peak'] <= limit else 'no'}")
    if cfg.device == 'xla':
        print("(XLA: the ddp row is one replica per chip running batch_size; fsdp splits batch_size over the chips)")
    print("(GB = 1e9 bytes; activations at the largest mask rate; an estimate: check with the measured "
          "peaks in docs/benchmarks.md)")
    return rows
