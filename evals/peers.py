"""
bench.py's peer cases: the same work done by nanoCoDA and by a reference implementation, timed
alternately in one process (python bench.py --case=vocab / --case=coda; options: bench.py --help).

vocab:  a small shape (4 layers x 256, batch 4 x 256, bidirectional, mdm loss) at vocab 512 and
        151,936, three contenders on the same weights and noise, timed alternately in one process (median
        ms/step): ours (diffusion.training_loss: only the scored rows reach the head, fused chunked CE),
        full (logits for every row, then F.cross_entropy) and hf (transformers'
        Qwen3ForCausalLM, all-visible 4D mask, the same loss from its logits). Peak memory: each contender
        runs again in a fresh subprocess: its peak RSS (VmHWM, reset just before) over two steps minus
        the RSS before the first (AdamW's state is created by the first step, the same for all).
coda:   sampling at CoDA's head shape (vocab 151,936, untied head, 4 layers x 256), prompt 64, 64 new tokens,
        64 steps, entropy, temperature 0, one block, no cache: generate() vs CoDA's diffusion_generate on the
        same random weights, alternated. Its code needs transformers 4.47.1 (a separate venv) and is read
        from --coda_repo at run time, never copied. Tokens are compared when generate() has CoDA's
        per-step count (schedule='coda'); otherwise only the speed.
"""
import gc
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from lib.cli import UserError
from model import ModelConfig, Transformer

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'bench.py')


# -----------------------------------------------------------------------------
# the memory of this process (Linux /proc; bench.py reads it too)

def rss():
    """The resident set size of this process, in bytes."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def reset_peak_rss():
    """Set the peak RSS (VmHWM) to the current RSS."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')


def peak_rss():
    """The peak RSS (VmHWM) since the last reset_peak_rss(), in bytes."""
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith('VmHWM:'))


# -----------------------------------------------------------------------------
# the Qwen3 vocabulary: compute only the rows that are read

def peer_shape(vocab, quick, **over):
    """4 layers x 256 (2 layers x 64 with --quick), the given vocabulary, <|mask|> = its last id."""
    size = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, head_dim=16) if quick else \
        dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, head_dim=64)
    return ModelConfig(**{**dict(vocab_size=vocab, num_attention_heads=4, num_key_value_heads=2, attention='bidirectional',
                                 mask_token_id=vocab - 1, max_position_embeddings=4096), **size, **over})


def train_contender(name, mc, B, L, seed):
    """-> step(i) for one contender, with its own weights (the same for all) and AdamW."""
    import torch.nn.functional as F
    import diffusion as D
    torch.manual_seed(seed)
    model = Transformer(mc).train()
    if name == 'hf':
        import transformers
        hc = transformers.Qwen3Config(**{k: getattr(mc, k) for k in (
            'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
            'num_key_value_heads', 'head_dim', 'rope_theta', 'rms_norm_eps', 'max_position_embeddings',
            'tie_word_embeddings')})
        hf = transformers.Qwen3ForCausalLM(hc).train()
        hf.load_state_dict(model.state_dict(), strict=False)
        model, visible = hf, torch.zeros(B, 1, L, L)  # additive 4D mask 0: bidirectional
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, mc.vocab_size - 1, (B, L), generator=generator)
    opts = D.DiffusionOptions()

    def step(i):
        generator.manual_seed(seed + i)  # the same noise for every contender at step i
        if name == 'ours':
            loss, _ = D.training_loss(model, x0, objective='mdm', opts=opts, progress=0.5, step=i, generator=generator)
        else:
            xt, _, weight, _ = D.mdm_batch(x0, mask_id=mc.mask_token_id, vocab_size=mc.vocab_size, opts=opts,
                                           progress=0.5, step=i, generator=generator)
            logits = model(xt) if name == 'full' else model(xt, attention_mask=visible).logits
            ce = F.cross_entropy(logits.reshape(B * L, -1).float(), x0.reshape(-1), reduction='none')
            loss = (ce * weight.reshape(-1)).sum() / (B * L)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()
    return step


def train_peak_rss(cfg, name, vocab):
    """Peak RSS growth (MiB) of two training steps of one contender, in a fresh process."""
    args = [sys.executable, BENCH, '--case=vocab', f'--contender={name}', f'--vocabs={vocab}',
            f"--batch_size={cfg['batch_size']}", f"--seq_len={cfg['seq_len']}", f"--threads={cfg['threads'] or 1}",
            f"--quick={cfg['quick']}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])['peak_rss_mib']


def bench_vocab(cfg):
    B, L = cfg['batch_size'], cfg['seq_len']
    if cfg['contender']:  # the subprocess of train_peak_rss
        step = train_contender(cfg['contender'], peer_shape(int(cfg['vocabs']), cfg['quick']), B, L, cfg['seed'])
        gc.collect()
        reset_peak_rss()
        base = rss()
        step(0), step(1)
        print(json.dumps(dict(peak_rss_mib=(peak_rss() - base) / 2**20)))
        return []
    try:
        import transformers  # noqa: F401  (the optional peer)
        names = ['ours', 'full', 'hf']
    except ImportError:
        names = ['ours', 'full']
    rows = []
    for vocab in [int(v) for v in str(cfg['vocabs']).split(',')]:
        mc = peer_shape(vocab, cfg['quick'])
        steps = {n: train_contender(n, mc, B, L, cfg['seed']) for n in names}
        times, losses = {n: [] for n in names}, {n: [] for n in names}
        for n in names:
            steps[n](0)  # warm-up
        for i in range(cfg['rounds']):  # A B C A B C ...: the machine's drift hits every contender alike
            for n in names:
                t0 = time.perf_counter()
                losses[n].append(steps[n](i + 1))
                times[n].append(time.perf_counter() - t0)
        del steps
        gc.collect()
        for n in names:
            dt = statistics.median(times[n])
            rows.append(dict(case='vocab', vocab=vocab, contender=n, batch_size=B, seq_len=L, ms_per_step=1e3 * dt,
                             tokens_per_s=B * L / dt, first_loss=losses[n][0],
                             peak_rss_mib=train_peak_rss(cfg, n, vocab) if cfg['mem'] else None))
        ours = rows[-len(names)]
        for r in rows[-len(names):]:
            r['ours_speedup'] = r['ms_per_step'] / ours['ms_per_step']
            r['ours_mem_ratio'] = ours['peak_rss_mib'] / r['peak_rss_mib'] if cfg['mem'] else None
    return rows


# -----------------------------------------------------------------------------
# sampling against CoDA's own diffusion_generate

def bench_coda(cfg):
    """generate() vs CoDA's diffusion_generate at CoDA's head shape, same weights, alternated."""
    import inspect
    from sample import generate
    quick, P, N = cfg['quick'], (16 if cfg['quick'] else 64), (16 if cfg['quick'] else 64)
    mc = peer_shape(4096 if quick else 151936, quick, tie_word_embeddings=False, shift_logits=True)
    mc.mask_token_id = mc.vocab_size - 1 if quick else 151669
    torch.manual_seed(cfg['seed'])
    ours = Transformer(mc).eval()
    with torch.no_grad():  # decisive logits (std ~10): random ones are near-uniform over 151,936 tokens and
        ours.lm_head.weight.mul_(30)  # their float-level near-ties would make the token comparison meaningless
    generator = torch.Generator().manual_seed(cfg['seed'])
    prompt = torch.randint(0, 1000, (1, P), generator=generator)
    kw = dict(gen_length=N, steps=N, block_length=N, alg='entropy', temperature=0.0, cache='none')
    same_rule = 'schedule' in inspect.signature(generate).parameters
    if same_rule:
        kw['schedule'] = 'coda'
    runs = {'ours': lambda: generate(ours, prompt, **kw)[0]}
    if cfg['coda_repo']:  # CoDA's code is read from the user's clone at run time, never copied into this repository
        sys.path.insert(0, os.path.abspath(cfg['coda_repo']))
        try:
            from CoDALanguageModel.model_config import CoDAConfig
            from CoDALanguageModel.modeling_coda import CoDALanguageModel
        except Exception as e:
            raise UserError(f"--coda_repo={cfg['coda_repo']}: cannot import CoDALanguageModel ({type(e).__name__}: "
                            f"{str(e)[:80]}); use a clone of SalesforceAIResearch/CoDA and transformers 4.47.1") from None
        cc = CoDAConfig(**{k: getattr(mc, k) for k in (
            'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
            'num_key_value_heads', 'head_dim', 'rope_theta', 'rms_norm_eps', 'max_position_embeddings',
            'tie_word_embeddings', 'mask_token_id')}, attention_kernel='default')
        coda = CoDALanguageModel(cc).eval()
        missing = coda.load_state_dict(ours.state_dict(), strict=False).missing_keys
        assert not [k for k in missing if 'rotary' not in k], missing

        def no_mask(step, x, logits):  # our sampler never proposes <|mask|>; CoDA's hook does the same
            logits[..., mc.mask_token_id] = float('-inf')
            return logits
        runs['coda'] = lambda: coda.diffusion_generate(prompt, max_new_tokens=N, steps=N, alg='entropy', temperature=0.0,
                                                       alg_temp=0.0, top_k=None, top_p=None,
                                                       generation_logits_hook_func=no_mask)
    times, outs = {n: [] for n in runs}, {}
    with torch.no_grad():
        for n in runs:
            outs[n] = runs[n]()  # warm-up
        for _ in range(cfg['rounds']):
            for n in runs:
                t0 = time.perf_counter()
                runs[n]()
                times[n].append(time.perf_counter() - t0)
    rows = []
    for n in runs:
        dt = statistics.median(times[n])
        rows.append(dict(case='coda', sampler=n, vocab=mc.vocab_size, prompt_len=P, gen_length=N, steps=N,
                         seconds=dt, tokens_per_s=N / dt))
    if 'coda' in runs:
        rows[0]['speedup_vs_coda'] = rows[1]['seconds'] / rows[0]['seconds']
        rows[0]['same_tokens'] = bool(torch.equal(outs['ours'], outs['coda'])) if same_rule else None
    return rows


# -----------------------------------------------------------------------------
# AR decoding against transformers' generate with its KV cache

def bench_ar(cfg):
    """AR decoding of one set of Qwen3 weights (the toy shape: 4 layers x 128, the byte vocabulary of 264; 2 x 64
    with --quick), --sample_batch rows of a --prompt_len prompt, greedy, --ar_lengths new tokens each:
    ours (generate() of a causal model: its KV cache), ours without a cache (the whole prefix every token,
    only the last position through the lm_head) and transformers' Qwen3ForCausalLM.generate (its DynamicCache),
    alternated --rounds times in one process. Per length and contender: ms per token (median of the rounds,
    and their spread max - min); per round the ratio hf / ours, its median and spread (> 1: ours is faster)."""
    import transformers
    from sample import generate
    torch.manual_seed(cfg['seed'])
    size = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, head_dim=16) if cfg['quick'] else \
        dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, head_dim=32)
    mc = ModelConfig(**size, vocab_size=264, num_attention_heads=4, num_key_value_heads=2, attention='causal',
                     max_position_embeddings=4096)
    ours = Transformer(mc).eval()
    with torch.no_grad():  # decisive logits, so that the two models' tokens can be compared
        ours.lm_head.weight.mul_(8)
    hc = transformers.Qwen3Config(**{k: getattr(mc, k) for k in (
        'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
        'num_key_value_heads', 'head_dim', 'rope_theta', 'rms_norm_eps', 'max_position_embeddings',
        'tie_word_embeddings')})
    hf = transformers.Qwen3ForCausalLM(hc).eval()
    hf.load_state_dict(ours.state_dict())
    hf.generation_config.eos_token_id = None  # exactly n new tokens, as ours with eos_id=None
    prompt = torch.randint(0, mc.vocab_size, (cfg['sample_batch'], cfg['prompt_len']),
                           generator=torch.Generator().manual_seed(cfg['seed']))
    runs = {'ours': lambda n: generate(ours, prompt, gen_length=n)[0],  # a causal model's default: the KV cache
            'ours_no_cache': lambda n: generate(ours, prompt, gen_length=n, cache='none')[0],
            'hf': lambda n: hf.generate(prompt, max_new_tokens=n, do_sample=False, use_cache=True, pad_token_id=0)}
    rows = []
    with torch.no_grad():
        outs = {name: run(8) for name, run in runs.items()}  # warm-up
        for n in [int(v) for v in str(cfg['ar_lengths']).split(',')]:
            times = {name: [] for name in runs}
            for _ in range(cfg['rounds']):  # A B C A B C ...: the machine's drift hits every contender alike
                for name, run in runs.items():
                    t0 = time.perf_counter()
                    outs[name] = run(n)
                    times[name].append(time.perf_counter() - t0)
            ratios = [h / o for h, o in zip(times['hf'], times['ours'])]
            for name in runs:
                ms = [1e3 * t / n for t in times[name]]
                rows.append(dict(case='ar', contender=name, batch=prompt.size(0), prompt_len=prompt.size(1), gen_length=n,
                                 ms_per_token=statistics.median(ms), spread_ms=max(ms) - min(ms),
                                 tokens_per_s=prompt.size(0) * n / statistics.median(times[name])))
            rows[-3].update(hf_over_ours=statistics.median(ratios), ratio_spread=max(ratios) - min(ratios),
                            same_tokens_as_hf=bool(torch.equal(outs['ours'], outs['hf'])))
    return rows
