"""
Speed benchmarks: training throughput and the sampler/cache matrix.

  python bench.py --quick                          # everything, small, < 1 minute on a 2-core CPU
  python bench.py --case=blockcache                # the block cache's speed-up: block model 4 x 256, prompt 256,
                                                   # gen 512, block 32: prefix cache vs no cache
  python bench.py --case=train --model=toy --attention=bidirectional --batch_size=8 --seq_len=512
  python bench.py --case=sample --ckpt=out-pycode --threshold=0.9   # threshold rows need a trained model
  python bench.py --out=bench.json                 # also write every row as JSON
  python bench.py --case=vocab --threads=1         # training at vocab 512 and 151,936: ours vs
                                                   # full logits vs transformers' Qwen3 (if installed)
  python bench.py --case=shard                     # FSDP: per-rank memory and step time at 1, 2, 4 processes
  venv-coda/bin/python bench.py --case=coda --coda_repo=PATH --threads=1   # sampling vs CoDA's own
                                                   # diffusion_generate (a clone of SalesforceAIResearch/CoDA)
  python bench.py --case=ar --threads=1            # AR decoding, KV cache: ours vs no cache vs transformers'
                                                   # generate, same Qwen3 weights, at 80, 160, 320 new tokens
  python bench.py --case=gpu                       # the one-GPU check (lib/gpucheck.py): PASS/FAIL lines, exit 1
                                                   # on a FAIL; --device=cpu --quick runs its code on this CPU

train:  forward + backward + AdamW step of diffusion.training_loss (objective from the attention mode:
        bidirectional -> mdm, block -> block, causal -> ar) on random tokens. tokens/s counts data
        tokens; FLOPs = 6 * params * tokens actually run through the network (the block objective runs
        [x_t ; x_0], twice the data tokens). MFU = FLOP/s / peak, on CUDA only (--peak_flops, or guessed
        from the GPU name).
sample: generate() with cache none / prefix / dual x threshold off / on, plus an AR row (a causal model
        of the same shape, KV cache). tokens/s = generated tokens / wall time; NFE = forward passes;
        tokens per forward = generated tokens / NFE. Random weights are never confident, so threshold
        rows commit ~1 token per step there: use --ckpt for meaningful threshold numbers.
vocab, coda, ar: the peer cases, against transformers' Qwen3 (training; AR decoding with its KV cache) and
        CoDA's own sampler (evals/peers.py).
gpu:    bf16 / compile / fp16 losses against float32, the loss falling, SDPA backends, the exact block cache and
        its speed-up, MFU, peak memory against --plan, Qwen3 parity with transformers, a torchrun FSDP step: the
        list and every tolerance in lib/gpucheck.py. Its options: --config, --dataset, --train_iters, --mfu_goal,
        --peak_flops, --gpu_dir (keeps its runs and logs there).
shard:  the memory FSDP saves (lib/sharding.py), at a shape of 8 layers x 512 (--shard_shape=LAYERSxWIDTH; ~25M
        parameters, vocab 264), fp32 AdamW, micro-batch 4 x 256 per process, each row a fresh torchrun of gloo
        processes on this CPU: one process (plain, and with activation checkpointing), FSDP over 2 and 4
        processes, FSDP with reshard_after_forward=False, FSDP + activation checkpointing. Per rank (the largest
        rank): state_mib = RSS growth after the steps with the gradients freed (parameters + AdamW moments),
        state_tensor_mib = the bytes of the parameter and AdamW tensors the rank holds, act_mib = RSS growth
        over one forward (what autograd saves), peak_mib = peak RSS (VmHWM) growth over the steps, plan_mib =
        lib/memplan.py's peak for the row. glibc returns every allocation above 64 KiB to the OS at once
        (MALLOC_MMAP_THRESHOLD_), so the RSS follows the live tensors. With more processes than cores the ranks
        share the cores: ms_per_step then counts that too.
memory: CUDA: torch.cuda.max_memory_allocated during the row. CPU: growth of the process RSS
        (sampled every 2 ms from /proc/self/statm) over its value before the row, after malloc_trim
        has returned freed heap to the OS: rough (allocator caching, missed short peaks).
"""
import contextlib
import ctypes
import gc
import json
import os
import re
import sys
import threading
import time

import torch

from lib.cli import UserError, check_device, check_ranges, parse_dtype, parse_options, run_cli
from model import Transformer, make_config
from data.common import check_out_file, json_with_keys, write_json
from evals.peers import bench_ar, bench_coda, bench_vocab, peak_rss, reset_peak_rss, rss
from lib import gpucheck
from lib.gpucheck import peak_flops

DEFAULTS = dict(
    case='all',            # all | train | sample | blockcache | vocab | coda | ar | shard | gpu
    quick=False,           # small sizes: the whole run in under a minute on CPU
    model='toy', attention='bidirectional,block',   # random-init models: preset, attention mode(s) ...
    block_size=32,                                   # ... and the block model's block size
    ckpt='', hf='',        # or a trained model (sample matrix)
    device='cpu', dtype='float32', seed=1337,
    threads=0,             # torch CPU threads (0 = torch's default; --quick: 1)
    # train
    batch_size=8, seq_len=256, train_iters=5, peak_flops=0.0,
    # sample
    sample_batch=1, prompt_len=128, gen_length=256, block_length=32, steps=0, threshold=0.9,
    alg='entropy',
    vocabs='512,151936', contender='', mem=True, rounds=3,   # vocab (contender: one, in a subprocess)
    coda_repo='',          # coda: a clone of SalesforceAIResearch/CoDA
    ar_lengths='80,160,320',  # ar: new tokens per run
    shards='1,2,4', shard_row='',   # shard: process counts; one row's engine (inside torchrun) ...
    shard_shape='8x512',            # ... and the model: layers x width (8 heads, 4 KV heads, MLP 3 x width)
    config='config/gpu.py', dataset='', mfu_goal=0.4, gpu_dir='',  # gpu: train.py's config and dataset ('' = the
                                    # config's), the MFU to reach, where its runs and logs stay ('' = a temp dir)
    out='',
    overwrite=False,       # let --out replace an earlier bench.py result (never a file of another kind)
)
# the interval each numeric option must lie in (cli.check_ranges)
RANGES = dict(block_size='[1, inf)', threads='[0, inf)', batch_size='[1, inf)', seq_len='[1, inf)',
              train_iters='[1, inf)', peak_flops='[0, inf)', sample_batch='[1, inf)', prompt_len='[1, inf)',
              gen_length='[1, inf)', block_length='[1, inf)', steps='[0, inf)', threshold='(0, 1]', rounds='[1, inf)',
              seed='(-inf, inf)', mfu_goal='[0, 1]')


class PeakMemory:
    """Peak memory of the code inside `with`, in MiB (see the module docstring for what is measured)."""

    def __init__(self, device):
        self.cuda = str(device).startswith('cuda')

    def _poll(self):
        while not self.stop.wait(0.002):
            self.peak = max(self.peak, rss())

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            gc.collect()
            try:  # hand freed heap pages back to the OS, so earlier rows do not hide this one's growth
                ctypes.CDLL('libc.so.6').malloc_trim(0)
            except (OSError, AttributeError):
                pass
            self.base = self.peak = rss()
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.mib = torch.cuda.max_memory_allocated() / 2**20
        else:
            self.stop.set()
            self.thread.join()
            self.mib = (max(self.peak, rss()) - self.base) / 2**20


def sync(device):
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def random_model(cfg, attention, **over):
    from lib.tokenizer import load_tokenizer
    tok = load_tokenizer('bytes')
    mc = make_config(cfg['model'], **{**dict(attention=attention, block_size=cfg['block_size'],
                                             vocab_size=tok.vocab_size, mask_token_id=tok.mask_id), **over})
    torch.manual_seed(cfg['seed'])
    return Transformer(mc).to(cfg['device'], getattr(torch, cfg['dtype'])).eval(), tok


def get_model(cfg, attention):
    if cfg['ckpt'] or cfg['hf']:
        from evals.tasks import load
        model, tok, _ = load(dict(cfg, tokenizer=''))
        return model, tok
    return random_model(cfg, attention)

# -----------------------------------------------------------------------------
# training throughput

def bench_train(cfg, attention):
    import diffusion
    model, _ = random_model(cfg, attention)
    model.train()
    objective = dict(bidirectional='mdm', block='block', causal='ar')[attention]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=str(cfg['device']).startswith('cuda') or None)
    B, L, dev = cfg['batch_size'], cfg['seq_len'], cfg['device']
    generator = torch.Generator(device=dev).manual_seed(cfg['seed'])
    x0 = torch.randint(0, 256, (B, L), device=dev, generator=generator)
    opts = diffusion.DiffusionOptions()

    def step(i):
        loss, _ = diffusion.training_loss(model, x0, objective=objective, opts=opts, progress=0.5, step=i,
                                          generator=generator)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(0)  # warm-up: allocator, kernels
    sync(dev)
    with PeakMemory(dev) as mem:
        t0 = time.perf_counter()
        for i in range(cfg['train_iters']):
            step(i + 1)
        sync(dev)
        dt = (time.perf_counter() - t0) / cfg['train_iters']
    n = model.num_params()
    run_tokens = B * L * (2 if objective == 'block' else 1)
    flops = 6 * n * run_tokens / dt
    peak = peak_flops(dev, cfg['peak_flops'])
    return dict(case='train', model=cfg['model'], attention=attention, objective=objective, params=n,
                batch_size=B, seq_len=L, ms_per_step=1e3 * dt, tokens_per_s=B * L / dt, tflops=flops / 1e12,
                mfu=(flops / peak if peak else None), peak_mem_mib=mem.mib)

# -----------------------------------------------------------------------------
# sampling

def time_generate(model, prompt, cfg, **kw):
    from sample import generate
    dev = cfg['device']
    generator = torch.Generator(device=dev).manual_seed(cfg['seed'])
    args = dict(gen_length=cfg['gen_length'], block_length=cfg['block_length'], steps=cfg['steps'] or None,
                alg=cfg['alg'], temperature=0.0)
    args.update(kw)
    sync(dev)
    with PeakMemory(dev) as mem:
        t0 = time.perf_counter()
        out, info = generate(model, prompt, generator=generator, **args)
        sync(dev)
        dt = time.perf_counter() - t0
    n_gen = prompt.shape[0] * args['gen_length']
    nfe = info.get('nfe')
    row = dict(case='sample', attention=model.config.attention, cache=args.get('cache', 'none'),
               threshold=args.get('threshold'), batch=prompt.shape[0], prompt_len=prompt.shape[1],
               gen_length=args['gen_length'], block_length=args['block_length'], seconds=dt, tokens_per_s=n_gen / dt,
               nfe=nfe, tokens_per_forward=(n_gen / prompt.shape[0] / nfe if nfe else None), peak_mem_mib=mem.mib)
    return row, out


def code_prompt(cfg, tok):
    """prompt_len tokens of real code (the stdlib's os.py, offline), so that a trained model can be confident."""
    ids = tok.encode(open(os.__file__, encoding='utf-8').read())[:cfg['prompt_len']]
    return torch.tensor([ids] * cfg['sample_batch'], device=cfg['device'])


def bench_sample(cfg):
    """The cache x threshold matrix for each diffusion model asked for, then the AR row."""
    rows, shape = [], None
    attentions = [cfg['ckpt'] or cfg['hf']] if (cfg['ckpt'] or cfg['hf']) else cfg['attention'].split(',')
    for att in attentions:
        model, tok = get_model(cfg, att)
        weights = 'random' if not (cfg['ckpt'] or cfg['hf']) else 'trained'
        prompt = code_prompt(cfg, tok)
        shape = {k: getattr(model.config, k) for k in ('hidden_size', 'intermediate_size', 'num_hidden_layers',
                 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'vocab_size', 'max_position_embeddings')}
        if model.config.attention == 'causal':
            continue
        time_generate(model, prompt, dict(cfg, gen_length=cfg['block_length']))  # warm-up
        for threshold in (None, cfg['threshold']):
            for cache in ('none', 'prefix', 'dual'):
                rows.append(dict(time_generate(model, prompt, cfg, cache=cache, threshold=threshold)[0], weights=weights))
    # the AR baseline: a causal model of the same shape (random weights unless --ckpt is causal), KV cache
    if model.config.attention != 'causal':
        model, weights = random_model(dict(cfg, ckpt='', hf=''), 'causal', **shape)[0], 'random'
    time_generate(model, prompt, dict(cfg, gen_length=8), cache='prefix')  # warm-up
    rows.append(dict(time_generate(model, prompt, cfg, cache='prefix')[0], weights=weights))
    return rows


def bench_blockcache(cfg):
    """The block cache's speed-up on this CPU: a block-attention model 4 layers x 256 wide, prompt 256, gen 512,
    block 32, one and four tokens per step: prefix KV cache vs recomputing everything. Block attention
    makes the cache exact, so both runs must give the same tokens."""
    quick = cfg['quick']
    c = dict(cfg, model='toy', attention='block', block_size=32, sample_batch=1, block_length=32, steps=0,
             prompt_len=64 if quick else 256, gen_length=128 if quick else 512, ckpt='', hf='')
    model, tok = random_model(c, 'block', num_hidden_layers=4, hidden_size=256, intermediate_size=768, head_dim=64)
    prompt = code_prompt(c, tok)
    rows = []
    for per_step in (1, 4):
        c['steps'] = c['gen_length'] // per_step
        runs = []
        for _ in range(1 if per_step == 1 else 2):  # none, prefix, none, prefix: the mean of each
            runs += [time_generate(model, prompt, c, cache='none'), time_generate(model, prompt, c, cache='prefix')]
        (none, out_none), (prefix, out_prefix) = runs[0], runs[1]
        for r, k in ((none, 0), (prefix, 1)):
            r.update(case='blockcache', tokens_per_step=per_step, seconds=sum(x[0]['seconds'] for x in runs[k::2]) / len(runs[k::2]))
            r['tokens_per_s'] = r['gen_length'] / r['seconds']
        prefix.update(speedup_vs_none=none['seconds'] / prefix['seconds'], same_tokens=bool(torch.equal(out_none, out_prefix)))
        rows += [none, prefix]
    return rows

# -----------------------------------------------------------------------------
# sharded training memory (FSDP)

SHARD_ROWS = (('1', 'one'), ('1', 'one+ac'), ('N', 'fsdp'), ('2', 'fsdp+zero2'), ('2', 'fsdp+ac'))


def shard_shape(text):
    """'8x512' -> 8 decoder layers of width 512: 8 heads of 64, 4 KV heads, MLP 1536, vocab 264."""
    from model import ModelConfig
    layers, h = (int(v) for v in text.split('x'))
    return ModelConfig(vocab_size=264, hidden_size=h, intermediate_size=3 * h, num_hidden_layers=layers,
                       num_attention_heads=8, num_key_value_heads=4, head_dim=h // 8, attention='bidirectional',
                       mask_token_id=263, max_position_embeddings=4096)


def shard_setup(cfg, mc, row, world):
    """A model and AdamW for one row: plain, activation-checkpointed, or sharded with FSDP2."""
    from types import SimpleNamespace
    from lib.sharding import checkpoint_layers, fully_shard_model
    torch.manual_seed(cfg['seed'])
    model = Transformer(mc).train()
    if '+ac' in row:
        checkpoint_layers(model)
    if row.startswith('fsdp'):
        run = SimpleNamespace(dev_type='cpu', world=world, dtype='float32')
        fully_shard_model(SimpleNamespace(reshard_after_forward='zero2' not in row), run, model)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4)


def state_bytes(model, opt):
    """Bytes of the parameters and AdamW state this rank holds: the storages of its local shards
    (FSDP's padding included, a tied weight once)."""
    local = lambda t: t.to_local() if hasattr(t, 'to_local') else t
    tensors = list(model.parameters()) + [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)]
    return sum({local(t).untyped_storage().data_ptr(): local(t).untyped_storage().nbytes() for t in tensors}.values())


def shard_step(model, opt, x0, i):
    """-> RSS growth over the forward (the saved activations), seconds of the whole step."""
    import diffusion as D
    t0, r0 = time.perf_counter(), rss()
    loss, _ = D.training_loss(model, x0, objective='mdm', opts=D.DiffusionOptions(), progress=1.0, step=i,
                              generator=torch.Generator().manual_seed(i))  # progress 1: the largest mask rate
    act = rss() - r0
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return act, time.perf_counter() - t0


def shard_worker(cfg):
    """One rank of a --case=shard row (under torchrun): measure, print one JSON line."""
    import statistics
    import torch.distributed as dist
    from lib import memplan
    world = int(os.environ.get('WORLD_SIZE', 1))
    if world > 1:
        dist.init_process_group('gloo')
    row, mc = cfg['shard_row'], shard_shape(cfg['shard_shape'])
    B, L = cfg['batch_size'], cfg['seq_len']
    x0 = torch.randint(0, mc.vocab_size - 1, (B, L), generator=torch.Generator().manual_seed(cfg['seed']))
    # warm-up on a tiny model of the same engine: kernels, thread pools, gloo buffers are set up once, outside
    from dataclasses import replace
    model, opt = shard_setup(cfg, replace(mc, hidden_size=64, intermediate_size=128, num_hidden_layers=2, head_dim=16), row, world)
    shard_step(model, opt, x0, 0), shard_step(model, opt, x0, 1)
    del model, opt
    gc.collect()
    ctypes.CDLL('libc.so.6').malloc_trim(0)
    reset_peak_rss()
    base = rss()
    model, opt = shard_setup(cfg, mc, row, world)
    steps = [shard_step(model, opt, x0, i) for i in range(cfg['train_iters'] + 1)]  # step 0 creates AdamW's state
    gc.collect()
    ctypes.CDLL('libc.so.6').malloc_trim(0)  # as before `base`: freed heap back to the OS
    state = rss() - base
    peak = peak_rss() - base
    p = memplan.plan(mc, tokens=B * L, dtype='float32', world=world, engine='fsdp' if row.startswith('fsdp') else 'ddp',
                     reshard_after_forward='zero2' not in row, checkpointing='+ac' in row)
    print(json.dumps(dict(rank=int(os.environ.get('RANK', 0)), state_mib=state / 2**20,
                          state_tensor_mib=state_bytes(model, opt) / 2**20,
                          act_mib=statistics.median(a for a, _ in steps[1:]) / 2**20, peak_mib=peak / 2**20,
                          plan_mib=p['peak'] / 2**20, plan_act_mib=p['activations'] / 2**20,
                          ms_per_step=1e3 * statistics.median(t for _, t in steps[1:]))), flush=True)
    if world > 1:
        dist.destroy_process_group()
    return []


def bench_shard(cfg):
    import subprocess
    import sys
    from model import Transformer as T
    counts = [int(n) for n in str(cfg['shards']).split(',')]
    n_params = T(shard_shape(cfg['shard_shape'])).num_params()
    specs = [(n, row) for procs, row in SHARD_ROWS for n in ([c for c in counts if c > 1] if procs == 'N' else [int(procs)])
             if procs == 'N' or int(procs) <= max(counts)]
    env = dict(os.environ, OMP_NUM_THREADS='1', MALLOC_MMAP_THRESHOLD_='65536', MALLOC_TRIM_THRESHOLD_='65536')
    rows = []
    for n, row in specs:
        args = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={n}',
                os.path.abspath(__file__), '--case=shard', f'--shard_row={row}', f"--batch_size={cfg['batch_size']}",
                f"--seq_len={cfg['seq_len']}", f"--train_iters={cfg['train_iters']}", f"--shard_shape={cfg['shard_shape']}"]
        p = subprocess.run(args, capture_output=True, text=True, env=env)
        if p.returncode:
            raise RuntimeError(f"shard row {row} x {n} failed:\n{p.stderr[-2000:]}")
        ranks = [json.loads(line) for line in p.stdout.splitlines() if line.startswith('{')]
        worst = {k: max(r[k] for r in ranks) for k in ranks[0] if k != 'rank'}
        rows.append(dict(case='shard', engine=row, processes=n, shape=cfg['shard_shape'], params=n_params,
                         batch_size=cfg['batch_size'], seq_len=cfg['seq_len'], **worst))
    one = rows[0]
    for r in rows:
        r['state_vs_one_over_n'] = r['state_mib'] / (one['state_mib'] / r['processes'])
        r['tensor_vs_one_over_n'] = r['state_tensor_mib'] / (one['state_tensor_mib'] / r['processes'])
        r['peak_vs_plan'] = r['peak_mib'] / r['plan_mib']
    return rows


def fmt(v):
    if v is None:
        return '-'
    if isinstance(v, float):
        return f'{v:.3g}' if abs(v) < 100 else f'{v:,.0f}'
    return str(v)


def print_table(rows):
    if not rows:
        return
    cols = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    table = [cols] + [[fmt(r.get(k)) for k in cols] for r in rows]
    w = [max(len(t[i]) for t in table) for i in range(len(cols))]
    for j, t in enumerate(table):
        print('  '.join(x.rjust(w[i]) for i, x in enumerate(t)))
        if j == 0:
            print('  '.join('-' * x for x in w))


def main(argv):
    options = parse_options(argv, DEFAULTS, __doc__)
    cfg, given = {**DEFAULTS, **options}, set(options)
    if cfg['case'] not in ('all', 'train', 'sample', 'blockcache', 'vocab', 'coda', 'ar', 'shard', 'gpu'):
        raise UserError(f"--case={cfg['case']!r} is unknown; use all, train, sample, blockcache, vocab, coda, ar, shard or gpu")
    if not all(n.isdigit() and int(n) >= 1 for n in str(cfg['ar_lengths']).split(',')):
        raise UserError(f"--ar_lengths={cfg['ar_lengths']!r}: give token counts >= 1, comma-separated, e.g. 80,160,320")
    bad = [a for a in cfg['attention'].split(',') if a not in ('bidirectional', 'block', 'causal')]
    if bad:
        raise UserError(f"--attention={bad[0]!r} is unknown; use bidirectional, block, causal or a comma list")
    if cfg['case'] in ('vocab', 'shard'):  # a batch of 4 x 256
        cfg.update({k: v for k, v in dict(batch_size=4, seq_len=256).items() if k not in given})
    if cfg['case'] == 'shard' and 'train_iters' not in given:
        cfg['train_iters'] = 3
    if cfg['quick']:  # tiny sizes; explicit --key=value options still win
        quick = dict(model='tiny', batch_size=4, seq_len=128, train_iters=3, prompt_len=32, gen_length=64,
                     block_length=16, block_size=16, threads=1, vocabs='512,4096', rounds=1, shard_shape='4x128')
        cfg.update({k: v for k, v in quick.items() if k not in given})
    if cfg['case'] == 'gpu':  # its own shape and device; then CUDA, or --device=cpu --quick
        cfg.update({k: v for k, v in gpucheck.defaults(cfg['quick']).items() if k not in given})
        gpucheck.check_options(cfg)
    check_ranges(cfg, RANGES, DEFAULTS)
    if cfg['contender'] not in ('', 'ours', 'full', 'hf'):
        raise UserError(f"--contender={cfg['contender']!r} is unknown; use ours, full or hf")
    vocabs = str(cfg['vocabs']).split(',')
    if not all(v.isdigit() and int(v) >= 2 for v in vocabs) or (cfg['contender'] and len(vocabs) > 1):
        raise UserError(f"--vocabs={cfg['vocabs']!r}: give vocab sizes >= 2, comma-separated (one with --contender)")
    if not all(n.isdigit() and int(n) >= 1 for n in str(cfg['shards']).split(',')):
        raise UserError(f"--shards={cfg['shards']!r}: give process counts >= 1, comma-separated, e.g. 1,2,4")
    if not re.fullmatch(r'[1-9][0-9]*x[1-9][0-9]*', str(cfg['shard_shape'])) or int(cfg['shard_shape'].split('x')[1]) % 64:
        raise UserError(f"--shard_shape={cfg['shard_shape']!r}: give layers x width, the width a multiple of 64, e.g. 8x512")
    if cfg['shard_row'] not in ('',) + tuple(row for _, row in SHARD_ROWS):
        raise UserError(f"--shard_row={cfg['shard_row']!r} is unknown; use one of {', '.join(r for _, r in SHARD_ROWS)}")
    parse_dtype(cfg['dtype'])
    check_device(cfg['device'])
    check_out_file(cfg['out'], overwrite=cfg['overwrite'], own=json_with_keys('config', 'results'),
                   what='an earlier bench.py result')
    if cfg['ckpt'] and cfg['hf']:
        raise UserError(f"--ckpt={cfg['ckpt']} and --hf={cfg['hf']} both name a model; pass one of them")
    torch.manual_seed(cfg['seed'])
    if cfg['threads']:
        torch.set_num_threads(cfg['threads'])
    if cfg['contender']:
        return bench_vocab(cfg)
    if cfg['shard_row']:
        return shard_worker(cfg)
    print(f"device {cfg['device']}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    results = []
    if cfg['case'] in ('all', 'train'):
        rows = [bench_train(cfg, att) for att in cfg['attention'].split(',')]
        print_table(rows)
        results += rows
    if cfg['case'] in ('all', 'sample'):
        with torch.no_grad():
            rows = bench_sample(cfg)
        print_table(rows)
        results += rows
    if cfg['case'] in ('all', 'blockcache'):
        with torch.no_grad():
            rows = bench_blockcache(cfg)
        print_table(rows)
        for r in rows[1::2]:
            print(f"blockcache, {r['tokens_per_step']} token(s) per step: prefix cache is {r['speedup_vs_none']:.1f}x "
                  f"faster than no cache (same tokens: {r['same_tokens']})")
        results += rows
    if cfg['case'] == 'gpu':
        results += gpucheck.run_checks(cfg)
    for case, fn in (('vocab', bench_vocab), ('coda', bench_coda), ('ar', bench_ar), ('shard', bench_shard)):  # by name
        if cfg['case'] == case:
            with torch.no_grad() if case in ('coda', 'ar') else contextlib.nullcontext():
                rows = fn(cfg)
            print_table(rows)
            results += rows
    if cfg['out']:
        write_json(cfg['out'], dict(config=cfg, results=results))
        print(f"wrote {cfg['out']}")
    if any(r.get('status') == 'FAIL' for r in results):
        sys.exit(1)  # the gpu check: a check failed (its FAIL line says which)
    return results


if __name__ == '__main__':
    run_cli(main)
