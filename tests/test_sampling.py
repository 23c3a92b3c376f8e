"""sample.py / sample.py: the block-cache gives exactly the uncached tokens, a batch equals its
single runs, prompt and suffix survive, the sampler and the loss agree on the logit shift,
Fast-dLLM's dynamic rules save forward passes, EOS stops early, AR decoding with a cache equals a
plain greedy loop, and the CLI works (or fails in one line).
Run: python -m pytest tests/test_sampling.py -q"""
import lzma
import os
import subprocess
import sys
import warnings
from dataclasses import asdict

import pytest
import torch

from diffusion import DiffusionOptions, training_loss
from model import Transformer, UserError, make_config
from lib.tokenizer import QWEN3_DIR
from sample import generate_reference, ALGS, generate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V = 48
MASK = V - 1


pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py: tiny models run fastest on one thread


def tiny(attention, shift=False, seed=0, **kw):
    """A random tiny model with its weights scaled up: decisive logits, so no two confidences are
    within float rounding of each other and 'exact' comparisons test the algorithm, not the noise."""
    torch.manual_seed(seed)
    cfg = make_config('tiny', attention=attention, vocab_size=V, mask_token_id=MASK, shift_logits=shift,
                      block_size=4, **kw)
    m = Transformer(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(8)
    return m


def prompts(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, V - 4, (n,), generator=g).tolist() for n in lengths]


def assert_rows_equal_singles(model, rows, **kw):
    batch, _ = generate(model, rows, **kw)
    G = max(len(r) for r in rows)
    for i, r in enumerate(rows):
        single, _ = generate(model, [r], **kw)
        assert torch.equal(batch[i, G - len(r):], single[0]), f"row {i} (prompt {len(r)}) differs from its single run"
    return batch

# -----------------------------------------------------------------------------
# exactness


@pytest.mark.parametrize('attention', ['bidirectional', 'block'])
@pytest.mark.parametrize('shift', [False, True])
def test_fast_path_equals_reference_sampler(attention, shift):
    """generate() (per-row grids, caches, padding machinery) gives generate_reference()'s tokens: every
    confidence rule, uneven blocks, fewer steps than tokens, a suffix, and Gumbel sampling at T > 0."""
    m = tiny(attention, shift)
    P = 24  # a multiple of every block_length below, so a block model's grid matches the reference's blocks
    rows = torch.tensor(prompts([P, P], seed=3))
    sfx = torch.tensor(prompts([5, 5], seed=4)) if attention == 'bidirectional' else None
    caches = ('none', 'prefix') if attention == 'block' else ('none',)  # the block model's exact cache too
    for alg in ('maskgit_plus', 'topk_margin', 'entropy'):
        for gen, bl, steps, temp, sch in ((16, 8, 16, 0.0, None), (13, 4, 7, 0.0, 'coda'), (12, 12, 6, 0.0, 'llada'),
                                          (16, 8, 8, 0.8, None)):  # None: the model's default schedule
            ref = generate_reference(m, rows, gen_length=gen, block_length=bl, steps=steps, alg=alg, temperature=temp,
                                     suffix=sfx, generator=torch.Generator().manual_seed(7), schedule=sch)
            for cache in caches:
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore')  # uneven blocks / steps warn
                    out, _ = generate(m, rows, gen_length=gen, block_length=bl, steps=steps, alg=alg, temperature=temp,
                                      suffix=sfx, cache=cache, generator=torch.Generator().manual_seed(7), schedule=sch)
                assert torch.equal(out, ref), (alg, gen, bl, steps, temp, sch, cache)
            assert (ref != MASK).all()


@pytest.mark.parametrize('shift', [False, True])
def test_block_prefix_cache_equals_no_cache(shift):
    m = tiny('block', shift)
    for P in (1, 3, 4, 5, 8):  # incl. prompts that end inside a model block
        for gen, bl in ((13, 4), (16, 8)):
            p = prompts([P], seed=P)[0]
            ref, info_ref = generate(m, [p], gen_length=gen, block_length=bl, cache='none')
            for cache in ('prefix', 'dual'):  # dual = prefix for block models
                out, info = generate(m, [p], gen_length=gen, block_length=bl, cache=cache)
                assert torch.equal(out, ref), (P, gen, bl, cache)
                assert info['nfe'] == info_ref['nfe']
            # the first block is the rest of the prompt's partial block (one token per step here)
            assert info['steps_per_block'][0] == (bl - P % bl)
            assert (out != MASK).all() and out[0, :P].tolist() == p


@pytest.mark.parametrize('shift', [False, True])
def test_block_batch_with_padding_equals_singles(shift):
    m = tiny('block', shift, seed=1)
    rows = prompts([5, 8, 3, 6], seed=1)  # different model-block phases in index space
    for cache in ('none', 'prefix'):
        out = assert_rows_equal_singles(m, rows, gen_length=11, block_length=4, cache=cache)
        if cache == 'none':
            ref = out
    assert torch.equal(out, ref)  # cached batch == uncached batch
    # with a suffix (the last block shares a model block with it), sampler blocks of two model blocks
    outs = [assert_rows_equal_singles(m, rows, gen_length=9, block_length=8, cache=cache, suffix=[1, 2, 3])
            for cache in ('none', 'prefix')]
    assert torch.equal(*outs)


@pytest.mark.parametrize('cache', ['none', 'prefix', 'dual'])
def test_bidirectional_batch_equals_singles(cache):
    m = tiny('bidirectional', shift=True, seed=2)
    # an empty prompt too: its first answer token has no predecessor (shift reads its own logits, not a pad's)
    assert_rows_equal_singles(m, prompts([4, 7, 1, 0], seed=2), gen_length=12, block_length=4, cache=cache,
                              suffix=[5, 6])


def test_prompt_and_suffix_preserved_no_mask_left():
    m = tiny('bidirectional', seed=3)
    rows, suffix = prompts([6, 3], seed=3), [7, 8, 9]
    for alg in ALGS:
        for kw in (dict(), dict(temperature=0.8, top_p=0.9, top_k=10), dict(alg_temp=0.5, temperature=1.0)):
            for cache in ('none', 'dual'):
                g = torch.Generator().manual_seed(0)
                out, info = generate(m, rows, gen_length=8, block_length=4, alg=alg, cache=cache, suffix=suffix,
                                     generator=g, **kw)
                assert out.shape == (2, 6 + 8 + 3)
                assert out[0, :6].tolist() == rows[0] and out[1, 3:6].tolist() == rows[1]
                assert (out[:, -3:] == torch.tensor(suffix)).all()
                assert (out != MASK).all()
                assert info['nfe'] == 8  # steps default to gen_length
    # the same generator seed gives the same sample
    kw = dict(gen_length=8, temperature=1.0, alg='origin')
    a = generate(m, rows, generator=torch.Generator().manual_seed(5), **kw)[0]
    b = generate(m, rows, generator=torch.Generator().manual_seed(5), **kw)[0]
    assert torch.equal(a, b)


def test_steps_split_over_blocks_and_callback():
    m = tiny('bidirectional', seed=4)
    seen = []
    out, info = generate(m, [[1, 2]], gen_length=32, block_length=8, steps=16, callback=lambda s: seen.append(
        int(s['committed'].sum())))
    assert info['nfe'] == 16 and info['steps_per_block'] == [4, 4, 4, 4]
    assert seen == [2] * 16  # LLaDA's even spread: 8 tokens over 4 steps
    with pytest.warns(UserWarning):  # 10 steps over 4 blocks: ceil(8 * 10 / 32) = 3 per block
        _, info = generate(m, [[1, 2]], gen_length=32, block_length=8, steps=10)
    assert info['steps_per_block'] == [3, 3, 3, 3]
    with pytest.warns(UserWarning):  # 20 is not a multiple of 8: the last block is shorter
        _, info = generate(m, [[1, 2]], gen_length=20, block_length=8)
    assert info['steps_per_block'] == [8, 8, 4]


def test_threshold_on_unconfident_model_commits_one_per_step():
    """A random model is never 99% sure: the threshold rule falls back to the top-1, never to nothing."""
    m = tiny('bidirectional', seed=5)
    with torch.no_grad():
        m.lm_head.weight.mul_(0.01)
    seen = []
    out, info = generate(m, [[1, 2, 3]], gen_length=8, block_length=4, threshold=0.99,
                         callback=lambda s: seen.append(int(s['committed'].sum())))
    assert seen == [1] * 8 and info['nfe'] == 8 and (out != MASK).all()

# -----------------------------------------------------------------------------
# trained models: the loss and the sampler agree on the shift; dynamic rules; EOS

EOS, PAD = V - 3, V - 2


@pytest.fixture(scope='module')
def overfit():
    """Two tiny bidirectional models (shift off / on) trained with diffusion.training_loss('mdm') on one
    sequence: 8 tokens, EOS, 6 PAD (as an SFT answer ends)."""
    g = torch.Generator().manual_seed(0)
    seq = torch.cat([torch.randint(0, V - 4, (8,), generator=g), torch.tensor([EOS] + [PAD] * 6)])
    models = {}
    for shift in (False, True):
        torch.manual_seed(0)
        cfg = make_config('tiny', vocab_size=V, mask_token_id=MASK, shift_logits=shift, hidden_size=32,
                          intermediate_size=64, num_attention_heads=2, num_key_value_heads=1, head_dim=16)
        m = Transformer(cfg)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
        for it in range(150):
            loss, _ = training_loss(m, seq.repeat(32, 1), objective='mdm', opts=DiffusionOptions(), progress=0.0,
                                    step=it, generator=g)
            opt.zero_grad()
            loss.backward()
            opt.step()
        models[shift] = m.eval()
    return models, seq


@pytest.mark.parametrize('shift', [False, True])
def test_sampler_and_loss_agree_on_shift(overfit, shift):
    models, seq = overfit
    m = models[shift]
    out, _ = generate(m, seq[None, :3], gen_length=12, block_length=3)
    assert torch.equal(out[0], seq)
    m.config.shift_logits = not shift  # reading the other convention must break it
    try:
        wrong, _ = generate(m, seq[None, :3], gen_length=12, block_length=3)
    finally:
        m.config.shift_logits = shift
    assert not torch.equal(wrong[0], seq)


@pytest.mark.parametrize('shift', [False, True])
def test_threshold_and_factor_save_forward_passes(overfit, shift):
    models, seq = overfit
    for rule in (dict(threshold=0.9), dict(factor=1.0)):
        seen = []
        out, info = generate(models[shift], seq[None, :3], gen_length=12, block_length=3, **rule,
                             callback=lambda s: seen.append(int(s['committed'].sum())))
        assert torch.equal(out[0], seq)
        assert info['nfe'] < 12 and len(seen) == info['nfe']
        assert min(seen) >= 1  # never a step that commits nothing


@pytest.mark.parametrize('shift', [False, True])
def test_eos_stops_after_the_block(overfit, shift):
    models, seq = overfit
    out, info = generate(models[shift], seq[None, :3], gen_length=12, block_length=3, eos_id=EOS, pad_id=PAD)
    assert torch.equal(out[0], seq)  # after EOS: padding
    assert info['blocks'] == 2 and info['nfe'] == 6  # EOS is in the 2nd block; blocks 3 and 4 are skipped
    # a batch stops only when every row has its EOS
    out, info = generate(models[shift], [seq[:3].tolist(), seq[:1].tolist()], gen_length=12, block_length=3,
                         eos_id=EOS, pad_id=PAD)
    assert info['blocks'] >= 2

# -----------------------------------------------------------------------------
# AR decoding


def test_ar_cache_equals_greedy_loop():
    m = tiny('causal', seed=6)
    rows, n = prompts([5, 2, 7], seed=6), 10

    def greedy(ids):
        x = torch.tensor([ids])
        with torch.no_grad():
            for _ in range(n):
                x = torch.cat([x, m(x)[:, -1].argmax(-1, keepdim=True)], dim=1)
        return x[0]
    G = 7
    for cache in ('prefix', 'none'):
        out, info = generate(m, rows, gen_length=n, cache=cache)
        assert info['nfe'] == n
        for i, r in enumerate(rows):
            assert torch.equal(out[i, G - len(r):], greedy(r))
    # EOS: stop as soon as every row has produced it, pad after it
    ref = greedy(rows[0])
    eos = int(ref[5 + 2])
    out, info = generate(m, [rows[0]], gen_length=n, eos_id=eos, pad_id=0)
    first = ref[5:].tolist().index(eos)
    assert info['nfe'] == first + 1
    assert out[0, :5 + first + 1].tolist() == ref[:5 + first + 1].tolist() and (out[0, 5 + first + 1:] == 0).all()

# -----------------------------------------------------------------------------
# bad input


def test_bad_inputs_raise_user_error():
    m = tiny('bidirectional', max_position_embeddings=32)
    for kw in (dict(alg='greedy'), dict(cache='full'), dict(threshold=0.9, factor=1.0), dict(gen_length=40),
               dict(threshold=1.5), dict(top_p=0.0), dict(steps=0)):
        with pytest.raises(UserError), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            generate(m, [[1, 2]], **{'gen_length': 8, **kw})
    with pytest.raises(UserError):
        generate(m, [[1, V + 5]], gen_length=8)  # token outside the vocab
    with pytest.raises(UserError):
        generate(m, [[1, 2]], gen_length=8, suffix=[[1], [2, 3]])
    with pytest.raises(UserError):
        generate(tiny('causal'), [[1, 2]], gen_length=8, suffix=[3])  # infilling needs diffusion
    with pytest.warns(UserWarning):  # block models: block_length is rounded to whole model blocks
        _, info = generate(tiny('block'), [[1, 2]], gen_length=8, block_length=6, cache='prefix')
    assert info['block_length'] == 8

# -----------------------------------------------------------------------------
# the CLI


def run_cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, os.path.join(REPO, 'sample.py'), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120, env=env)


def test_sample_cli_on_a_checkpoint(tmp_path):
    from lib.tokenizer import load_tokenizer
    tok = load_tokenizer('bytes')
    cfg = make_config('tiny', attention='block', block_size=4, vocab_size=tok.vocab_size, mask_token_id=tok.mask_id)
    torch.manual_seed(0)
    m = Transformer(cfg)
    torch.save(dict(model=m.state_dict(), model_config=asdict(cfg), train_config={'seq_len': 64}, tokenizer='bytes',
                    iter_num=0, optimizer={}, rng={}, best_val_loss=0.0), tmp_path / 'ckpt.pt')
    r = run_cli(f'--ckpt={tmp_path}', '--prompt=def f(x):', '--gen_length=10', '--num_samples=2', '--show')
    assert r.returncode == 0, r.stderr
    assert r.stdout.count('def f(x):') >= 2 and 'forward passes (NFE)' in r.stdout and 'tokens/s' in r.stdout
    # bad input: one line on stderr, exit code 1
    r = run_cli(f'--ckpt={tmp_path}', '--gen_length=5000')
    assert r.returncode == 1 and r.stderr.startswith('error: ') and len(r.stderr.strip().splitlines()) == 1, r.stderr
    # a truncated download of an HF directory
    Transformer(cfg).save_pretrained(str(tmp_path / 'hf'))
    st = tmp_path / 'hf' / 'model.safetensors'
    st.write_bytes(st.read_bytes()[:1000])
    r = run_cli(f'--hf={tmp_path / "hf"}')
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f'error: {st} is not a readable safetensors file')
    import sample  # the other bad inputs in-process: main() raises what __main__ prints as that line
    (tmp_path / 'empty.txt').write_text('')
    (tmp_path / 'latin1.txt').write_bytes(b'caf\xe9')
    for bad, match in (('--alg=nope', 'alg'), ('--cache=full', 'cache'), ('--num_samples=0', 'num_samples=0'),
                       ('--steps=0', 'steps=0'), ('--top_p=2', 'top_p=2.0'), ('--gen_length=0', 'gen_length=0'),
                       ('--threshold=1.5', r'threshold=1.5 is out of range: it must be in \(0, 1\]'),
                       ('--factor=-1', 'factor'), ('--temperature=-1', 'temperature'), ('--temperature=nan', 'temperature'),
                       ('--top_k=0', 'top_k=0'), ('--alg_temp=-0.5', 'alg_temp'), ('--dtype=float8', "dtype='float8'"),
                       ('--dtype=int8', "dtype='int8'"), ('--device=gpu', "device='gpu'"),
                       (f'--prompt_file={tmp_path / "latin1.txt"}', 'latin1.txt is not UTF-8')):
        with pytest.raises(UserError, match=match):
            sample.main([f'--ckpt={tmp_path}', '--gen_length=4', bad])
    with pytest.raises(FileNotFoundError):
        sample.main([f'--ckpt={tmp_path / "missing"}'])
    with pytest.raises(IsADirectoryError):  # printed as "error: [Errno 21] Is a directory: ..."
        sample.main([f'--ckpt={tmp_path}', f'--prompt_file={tmp_path}'])
    sample.main([f'--ckpt={tmp_path}', '--gen_length=4', f'--prompt_file={tmp_path / "empty.txt"}'])  # an empty prompt is fine
    model, tok2 = sample.load_model(str(tmp_path / 'ckpt.pt'))
    assert model.config.attention == 'block' and tok2.vocab_size == tok.vocab_size


def test_sample_cli_on_hf_dir(tmp_path):
    cfg = make_config('tiny', vocab_size=151936, mask_token_id=151669, hidden_size=16, intermediate_size=32,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=8, shift_logits=True)
    torch.manual_seed(0)
    Transformer(cfg).save_pretrained(str(tmp_path))
    with lzma.open(os.path.join(QWEN3_DIR, 'tokenizer.json.xz')) as f:  # the bundled Qwen3 tokenizer
        (tmp_path / 'tokenizer.json').write_bytes(f.read())
    r = run_cli(f'--hf={tmp_path}', '--prompt=def add(a, b):', '--suffix=\\n', '--gen_length=8', '--block_length=4',
                '--threshold=0.9', '--cache=dual')
    assert r.returncode == 0, r.stderr
    assert 'def add(a, b):' in r.stdout and 'bidirectional model' in r.stdout
