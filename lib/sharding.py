"""
Training a model that does not fit one device: the sharded engines under train.py's loop.

Plain data parallel (DDP, or one replica per TPU chip) keeps the whole model, its gradients and
AdamW's two moments on every device: 4 + 4 + 8 = 16 bytes per parameter (lib/memplan.py counts it).
Fully sharded data parallel (ZeRO-3, FSDP) keeps 1/N of each on each of N devices and gathers a
layer's full weights only while that layer runs:

  parallel=fsdp on CPU/GPU   torch's FSDP2: fully_shard(layer) for each decoder layer, then the model.
                             Parameters become DTensors sharded on dim 0; forward all-gathers a layer,
                             backward reduce-scatters its gradient. reshard_after_forward=False keeps
                             the gathered weights from forward to backward (ZeRO-2-like: less traffic,
                             more memory). bf16: bf16 compute copies, fp32 shards and fp32 reduction.
  parallel=fsdp on XLA       torch_xla's SPMD FSDPv2 (CoDA's own engine, torchprime): one process sees
                             every chip as one device; parameters and the batch are sharded on the
                             'fsdp' axis of a mesh over all chips and the compiler places the collectives.
  activation_checkpointing   each decoder layer keeps only its input and recomputes the rest in backward.

Checkpoints stay one full ckpt.pt, the one a single process writes: the shards are gathered
(torch.distributed.checkpoint's full state dict for the model, DTensor.full_tensor for AdamW's
moments), and a full checkpoint is sharded again on resume.
"""
import functools
import os

import torch

from lib.cli import UserError
from model import Transformer


def checkpoint_layers(model, xla=False):
    """Activation checkpointing per decoder layer: forward saves the layer's input only, backward runs
    the layer again to get what it needs (the same ops: the same gradients, one extra forward)."""
    if xla:  # torch.utils.checkpoint's recomputation would be merged back by XLA's compiler
        from torch_xla.utils.checkpoint import checkpoint
    else:
        from torch.utils.checkpoint import checkpoint
    for layer in model.model.layers:  # the module's hooks (FSDP's gather) stay outside the checkpoint
        layer.forward = functools.partial(checkpoint, layer.forward, use_reentrant=False)


def fully_shard_model(cfg, run, model):
    """FSDP2: each decoder layer is one unit of gathering; the root holds the embedding, the final
    norm and the (possibly tied) head. The module is changed in place: build the optimizer after."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.distributed.device_mesh import init_device_mesh
    mesh = init_device_mesh(run.dev_type, (run.world,))
    low = {'bfloat16': torch.bfloat16, 'float16': torch.float16}.get(run.dtype)  # compute copies; shards stay fp32
    mp = MixedPrecisionPolicy(param_dtype=low, reduce_dtype=torch.float32) if low else MixedPrecisionPolicy()
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh, reshard_after_forward=cfg.reshard_after_forward, mp_policy=mp)
    fully_shard(model, mesh=mesh, reshard_after_forward=cfg.reshard_after_forward, mp_policy=mp)
    return model


def spmd_shard_model(run, model):
    """XLA SPMD FSDPv2: every parameter sharded on its largest dim over the mesh's 'fsdp' axis."""
    import torch_xla
    from torch_xla.experimental.spmd_fully_sharded_data_parallel import SpmdFullyShardedDataParallel
    model.to(run.device)
    if model.config.tie_word_embeddings:  # .to('xla') makes new Parameters: tie the head again
        model.lm_head.weight = model.model.embed_tokens.weight
    wrapped = SpmdFullyShardedDataParallel(model, mesh=run.mesh, shard_output=lambda out, mesh: None)
    if run.master:  # what the partitioner was told, e.g. {devices=[4,1]0,1,2,3} for a (V, h) matrix on 4 chips
        print(f"SPMD: embed_tokens.weight sharded as {torch_xla._XLAC._get_xla_sharding_spec(model.model.embed_tokens.weight)}")
    wrapped.config = model.config  # training_loss reads model.config
    return wrapped


def start_spmd(run):
    """One process drives every chip (of every host) through a mesh ('fsdp', 'model') = (n, 1)."""
    import numpy as np
    import torch_xla.distributed.spmd as xs
    import torch_xla.runtime as xr
    xr.use_spmd()
    n = xr.global_runtime_device_count()
    run.mesh = xs.Mesh(np.arange(n), (n, 1), ('fsdp', 'model'))
    xs.set_global_mesh(run.mesh)
    run.n_shards, run.master = n, xr.process_index() == 0
    run.put = lambda x: mark_batch(run, x.to(run.device))


def mark_batch(run, x):  # the batch is split over the chips: sharded on its first axis
    import torch_xla.distributed.spmd as xs
    xs.mark_sharding(x, run.mesh, ('fsdp',) + (None,) * (x.dim() - 1))
    return x


def full_state(run, model, optimizer):
    """(model state, optimizer state) in one process's format, on the CPU of rank 0; (None, None) on the
    other ranks. Under FSDP every rank must call it: the shards are all-gathered one tensor at a time."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if model.config.tie_word_embeddings and sd:  # one tensor under both names, as state_dict() gives it
        sd['lm_head.weight'] = sd['model.embed_tokens.weight']
    opt = optimizer.state_dict() if optimizer is not None else None  # AdamW's moments: DTensors like their parameters
    if opt is not None:
        opt['state'] = {i: {k: v.full_tensor().cpu() if hasattr(v, 'full_tensor') else v.cpu() for k, v in s.items()}
                        for i, s in opt['state'].items()}
    return (sd, opt) if run.master else (None, None)


def load_optimizer_state(run, optimizer, state):
    """A full AdamW state (one process's format) into an optimizer of sharded parameters."""
    optimizer.load_state_dict(state)
    if run.fsdp and run.xla:  # keep the moments sharded like their parameters
        import torch_xla.distributed.spmd as xs
        for p, s in optimizer.state.items():
            for v in s.values():
                if v.dim():
                    xs.mark_sharding(v, run.mesh, _spmd_spec(p))
    elif run.fsdp:
        from torch.distributed.tensor import distribute_tensor
        for group in optimizer.param_groups:  # the same order on every rank: the scatters pair up
            for p in group['params']:
                s = optimizer.state.get(p, {})
                for k, v in s.items():
                    if v.dim():
                        s[k] = distribute_tensor(v, p.device_mesh, p.placements)


def _spmd_spec(p):  # FSDPv2's partition: the largest dim on 'fsdp'
    spec = [None] * p.dim()
    spec[list(p.shape).index(max(p.shape))] = 'fsdp'
    return tuple(spec)


def plain_copy(model, state):
    """An unsharded CPU Transformer holding a full state dict (sampling and HF export under FSDP)."""
    net = Transformer(model.config).eval()
    net.load_state_dict(state)
    return net


def check_fsdp(cfg, run):
    if run.xla:
        if cfg.batch_size % run.n_shards:
            raise UserError(f"batch_size={cfg.batch_size} is split over the {run.n_shards} devices of the SPMD mesh; "
                            f"use a multiple of {run.n_shards}")
    elif run.world == 1 and 'LOCAL_RANK' not in os.environ:  # torchrun sets it (one process: FSDP over one device)
        raise UserError("parallel=fsdp shards over processes: launch with torchrun --nproc_per_node=N "
                        "(one process holds the whole model anyway: use parallel=ddp)")
