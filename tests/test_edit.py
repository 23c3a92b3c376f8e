"""Editing in sample.generate (LLaDA 2.1's token-to-token revision), drafts, and the options that make parallel
decoding pay: with editing off the sampler gives today's tokens, the budgets bound the revisions, the exact block
cache stays exact and a batch equals its rows run alone with editing on, a tiny model trained to revise fixes a
planted substitution, revised tokens get their own colour, and bad input is one line.
Run: python -m pytest tests/test_edit.py -q"""
import warnings
from dataclasses import asdict

import pytest
import torch

from diffusion import DiffusionOptions, training_loss
from model import Transformer, UserError, make_config
from sample import generate, generate_reference
from test_sampling import MASK, V, assert_rows_equal_singles, prompts, tiny

pytestmark = pytest.mark.usefixtures('one_thread')


def run(model, rows, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # uneven blocks warn
        return generate(model, rows, **kw)

# -----------------------------------------------------------------------------
# off is today's sampler


@pytest.mark.parametrize('attention', ['bidirectional', 'block'])
@pytest.mark.parametrize('shift', [False, True])
def test_editing_off_and_budget_zero_give_todays_tokens(attention, shift):
    """edit_threshold=None is the reference sampler's tokens; an edit budget of 0, an empty draft or a draft of
    masks change nothing either (tokens and forward passes)."""
    m = tiny(attention, shift)
    rows = torch.tensor(prompts([8, 8], seed=3))
    for alg, gen, bl, steps in (('entropy', 16, 8, 16), ('maskgit_plus', 12, 4, 6)):
        kw = dict(gen_length=gen, block_length=bl, steps=steps, alg=alg)
        ref = generate_reference(m, rows, **kw)
        off, info = run(m, rows, **kw)
        assert torch.equal(off, ref)
        for extra in (dict(edit_threshold=0.01, edit_budget=0), dict(draft=[]), dict(draft=[MASK] * 5)):
            out, info2 = run(m, rows, **kw, **extra)
            assert torch.equal(out, off) and info2['nfe'] == info['nfe'], extra


def test_budgets_bound_the_revisions():
    """A random model revises a random draft as much as it may: at most edit_budget revisions per row and step,
    at most max_edits_per_slot per token over the run, never in the prompt or the suffix."""
    m = tiny('bidirectional', seed=7)
    rows, suffix = prompts([6, 3], seed=7), [1, 2, 3]
    draft = prompts([10], seed=8)[0]
    for budget, per_slot in ((1, 1), (2, 1), (3, 2)):
        states, revised = [], []
        out, info = run(m, rows, gen_length=12, block_length=4, draft=draft, suffix=suffix, edit_threshold=0.05,
                        edit_budget=budget, max_edits_per_slot=per_slot,
                        callback=lambda s: (states.append(s['tokens'].clone()), revised.append(s['revised'].clone())))
        assert max(int(r.max()) for r in revised) <= budget and sum(info['edits']) == sum(int(r.sum()) for r in revised)
        assert max(info['edits']) > 0  # it did revise
        G = 6
        start = torch.cat([torch.tensor([rows[0], [0] * 3 + rows[1]]),  # left-padded with 0
                           torch.tensor([draft + [MASK] * 2] * 2), torch.tensor([suffix] * 2)], 1)
        changes = torch.zeros_like(start)
        for a, b in zip([start] + states, states):
            changes += (a != b) & (a != MASK)  # a visible token replaced
        assert int(changes.max()) <= per_slot
        assert not changes[:, :G].any() and not changes[:, -3:].any()  # prompt and suffix never revised
        assert changes.sum(1).tolist() == info['edits']


@pytest.mark.parametrize('shift', [False, True])
def test_block_cache_stays_exact_with_editing(shift):
    """Revisions stay inside the current block, so the exact block cache gives the uncached tokens (padded batch,
    with and without a draft, several budgets), and a batch equals its rows run alone."""
    m = tiny('block', shift, seed=1)
    rows = prompts([5, 8, 3, 6], seed=1)
    for extra in (dict(edit_threshold=0.3), dict(edit_threshold=0.1, edit_budget=2, max_edits_per_slot=2),
                  dict(edit_threshold=0.2, draft=prompts([7], seed=9)[0])):
        outs = []
        for cache in ('none', 'prefix'):
            outs.append(assert_rows_equal_singles(m, rows, gen_length=11, block_length=4, cache=cache, **extra))
        assert torch.equal(*outs), extra
        _, info = run(m, rows, gen_length=11, block_length=4, cache='prefix', **extra)
        assert sum(info['edits']) > 0, extra  # editing happened


@pytest.mark.parametrize('cache', ['none', 'dual'])
def test_bidirectional_batch_equals_singles_with_editing(cache):
    m = tiny('bidirectional', shift=True, seed=2)
    assert_rows_equal_singles(m, prompts([4, 7, 1], seed=2), gen_length=12, block_length=4, cache=cache, suffix=[5, 6],
                              edit_threshold=0.2, edit_budget=2, draft=prompts([6], seed=3)[0])

# -----------------------------------------------------------------------------
# a model trained to revise


def test_trained_model_fixes_a_planted_substitution():
    """A tiny model trained 600 steps on a period-4 pattern (3 7 11 15 3 7 ...), the last half with Seed Diffusion's
    edit stage scoring every visible token (edit_keep=1), repairs a draft with one wrong token: the sampler starts
    from the draft and revises it. Without editing the draft stays wrong; a correct draft is kept."""
    V2, mask = 24, 23
    cfg = make_config('tiny', vocab_size=V2, mask_token_id=mask, hidden_size=32, intermediate_size=64,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    torch.manual_seed(0)
    m, g = Transformer(cfg), torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    opts, N = DiffusionOptions(edit_start=0.3, edit_rate=0.1, edit_keep=1.0), 600
    pattern = lambda phase, L: (3 + 4 * ((phase + torch.arange(L)) % 4)).tolist()
    for it in range(N):
        x0 = torch.tensor([pattern(int(p), 24) for p in torch.randint(0, 4, (32,), generator=g)])
        loss, _ = training_loss(m, x0, objective='mdm', opts=opts, progress=it / N, step=it, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    fixed = total = 0
    for phase in range(4):
        seq = pattern(phase, 24)
        kw = dict(gen_length=16, block_length=16, edit_threshold=0.7)
        assert run(m, [seq[:8]], draft=seq[8:], **kw)[0][0].tolist() == seq  # a correct draft is kept
        for pos in range(8, 24):
            bad = list(seq[8:])
            bad[pos - 8] = 20 if pos % 2 else seq[pos] ^ 4  # a token outside the pattern, or one of the wrong phase
            out, info = run(m, [seq[:8]], draft=bad, **kw)
            fixed += out[0].tolist() == seq
            total += 1
            assert run(m, [seq[:8]], draft=bad, gen_length=16, block_length=16)[0][0, 8:].tolist() == bad
    assert fixed >= 0.9 * total, f"{fixed} of {total} planted substitutions fixed"

# -----------------------------------------------------------------------------
# the options that make parallel decoding pay


def test_threshold_floor_bounds_the_forward_passes():
    """threshold / factor commit at least the schedule's count: with steps < gen_length an unconfident model takes
    exactly `steps` forwards instead of one per token; the default steps keep the floor at one token."""
    m = tiny('bidirectional', seed=5)
    with torch.no_grad():
        m.lm_head.weight.mul_(0.01)  # never 99% sure
    for rule in (dict(threshold=0.99), dict(factor=0.01)):
        seen = []
        out, info = run(m, [[1, 2, 3]], gen_length=16, block_length=8, steps=4, **rule,
                        callback=lambda s: seen.append(int(s['committed'].sum())))
        assert info['nfe'] == 4 and seen == [4] * 4 and (out != MASK).all()
        assert run(m, [[1, 2, 3]], gen_length=16, block_length=8, **rule)[1]['nfe'] == 16


def test_finish_threshold_commits_a_sure_block_at_once():
    m = tiny('bidirectional', seed=5)
    with torch.no_grad():
        m.lm_head.weight.mul_(0.01)  # near-uniform: no slot is sure
    kw = dict(gen_length=16, block_length=8)
    base, info = run(m, [[1, 2, 3]], **kw)
    same, info2 = run(m, [[1, 2, 3]], finish_threshold=0.5, **kw)  # nobody reaches 0.5: the schedule as before
    assert torch.equal(base, same) and info2['nfe'] == info['nfe'] == 16
    _, info3 = run(m, [[1, 2, 3]], finish_threshold=1e-4, **kw)  # everybody is "sure": one forward a block
    assert info3['nfe'] == 2 and info3['steps_per_block'] == [1, 1]


def test_fill_after_eos_skips_the_text_after_eos():
    """A draft that ends in EOS: the masks after it are padding in the output either way; fill_after_eos pads them
    without a forward pass."""
    m = tiny('block', seed=4)
    EOS, PAD = V - 3, V - 2
    kw = dict(gen_length=12, block_length=4, draft=[5, 6, EOS], eos_id=EOS, pad_id=PAD)
    out, info = run(m, [[1, 2, 3, 4]], **kw)
    filled, info2 = run(m, [[1, 2, 3, 4]], fill_after_eos=True, **kw)
    assert torch.equal(out, filled) and out[0, 4:].tolist() == [5, 6, EOS] + [PAD] * 9
    assert info2['nfe'] == 0 < info['nfe']
    assert_rows_equal_singles(m, [[1, 2, 3, 4], [5, 6], [7]], gen_length=12, block_length=4, draft=[5, 6, MASK, EOS],
                              eos_id=EOS, pad_id=PAD, fill_after_eos=True)  # a padded batch: each row as alone

# -----------------------------------------------------------------------------
# what the user sees: colours and errors


def test_revised_tokens_have_their_own_colour(tmp_path):
    from lib.display import frame_segments, recorder, render, save_frames
    from lib.tokenizer import load_tokenizer
    tok = load_tokenizer('bytes')
    frames = []
    rec = recorder(frames)
    x = torch.tensor([[104, 105, tok.mask_id]])
    rec(dict(step=1, nfe=1, tokens=x, edited=torch.tensor([[False, True, False]])))
    segs = frame_segments(tok, frames, [104], 1, 3, tok.mask_id, 2, first=[106, tok.mask_id])
    assert [s for _, s in segs[-1][1]] == ['prompt', 'edit', 'mask']
    assert '\x1b[' in render(tok, [104, 105], tok.mask_id, [False, True])
    save_frames(str(tmp_path / 'f.html'), segs)
    assert '#ae3ec9' in (tmp_path / 'f.html').read_text()


def test_bad_inputs_are_one_line():
    m = tiny('bidirectional', max_position_embeddings=64)
    for kw, match in ((dict(draft=[1] * 9), 'longer than the canvas'), (dict(edit_threshold=0.0), 'edit_threshold'),
                      (dict(edit_threshold=1.5), 'edit_threshold'), (dict(edit_threshold=0.5, edit_budget=-1), 'edit_budget'),
                      (dict(max_edits_per_slot=0), 'max_edits_per_slot'), (dict(draft=[V + 1]), 'vocab'),
                      (dict(draft=[[1], [2], [3]]), 'draft'), (dict(finish_threshold=0.0), 'finish_threshold'),
                      (dict(fill_after_eos=True), 'eos_id')):
        with pytest.raises(UserError, match=match):
            generate(m, [[1, 2], [3]], gen_length=8, **kw)
    for kw in (dict(edit_threshold=0.5), dict(draft=[1, 2])):
        with pytest.raises(UserError, match='causal'):
            generate(tiny('causal'), [[1, 2]], gen_length=8, **kw)
    with pytest.raises(UserError, match='variable_length'):
        generate(m, [[1, 2]], gen_length=8, draft=[1], variable_length=True, canvas=4)


def test_cli_revises_a_draft_and_draws_it(tmp_path):
    import sample
    from lib.tokenizer import load_tokenizer
    tok = load_tokenizer('bytes')
    cfg = make_config('tiny', attention='block', block_size=4, vocab_size=tok.vocab_size, mask_token_id=tok.mask_id)
    torch.manual_seed(0)
    m = Transformer(cfg)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(6)  # decisive logits: a random model then revises at a low threshold
    torch.save(dict(model=m.state_dict(), model_config=asdict(cfg), train_config={'seq_len': 64}, tokenizer='bytes',
                    iter_num=0, optimizer={}, rng={}, best_val_loss=0.0), tmp_path / 'ckpt.pt')
    (tmp_path / 'draft.py').write_text('return a - b\n')
    ck = f'--ckpt={tmp_path}'
    sample.main([ck, '--prompt=def f(a, b):\\n    ', f'--draft_file={tmp_path / "draft.py"}', '--gen_length=16',
                 '--edit_threshold=0.05', '--edit_budget=2', '--no_eos', f'--frames={tmp_path / "f.html"}'])
    assert '#ae3ec9' in (tmp_path / 'f.html').read_text()  # a revised token, drawn in its colour
    for bad, match in (('--gen_length=4', 'more than the canvas'), ('--edit_threshold=1.5', 'edit_threshold'),
                       ('--edit_budget=-1', 'edit_budget'), ('--variable_length', 'draft')):
        with pytest.raises(UserError, match=match):
            sample.main([ck, f'--draft_file={tmp_path / "draft.py"}', bad])
    cfg.attention = 'causal'
    torch.save(dict(model=Transformer(cfg).state_dict(), model_config=asdict(cfg), train_config={}, tokenizer='bytes',
                    iter_num=0, optimizer={}, rng={}, best_val_loss=0.0), tmp_path / 'ckpt.pt')
    with pytest.raises(UserError, match='causal'):
        sample.main([ck, '--edit_threshold=0.5', '--gen_length=4'])
