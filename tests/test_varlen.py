"""lib/varlen.py: DreamOn's variable-length infilling, training rows and the growing / shrinking canvas.
Run: python -m pytest tests/test_varlen.py -q"""
import importlib.util
import json
import math
import os
import random
import re

import pytest
import torch
import torch.nn as nn

import diffusion as D
from lib import fim as FIM
from lib import varlen as VL
from lib.head import cross_entropy
from model import ModelConfig, Transformer, UserError
from sample import generate

V, MASK, EXPAND, PAD, EOS = 64, 63, 62, 61, 60  # PAD is the delete target
FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def opts(**kw):
    return D.DiffusionOptions(**{'varlen_rate': 1.0, **kw})


# -----------------------------------------------------------------------------
# training rows

def rebuild(inp, tgt):
    """Split every <|expand|> target into two masks, drop every delete: the middle as the model must rebuild it."""
    out = []
    for i, t in zip(inp, tgt):
        out += [MASK, MASK] if t == EXPAND else [] if t == PAD else [t if i == MASK else i]
    return out


def test_middle_rebuilds_exactly():
    rng = random.Random(0)
    for _ in range(300):
        m, d = rng.randint(0, 20), rng.randint(0, 8)
        mid = [rng.randrange(50) for _ in range(m)] + [PAD] * d
        t, p = rng.uniform(0.05, 1), rng.choice([0.0, 0.5, 1.0])
        u_mask, u_merge = [rng.random() for _ in mid], [rng.random() for _ in mid]
        wd = rng.choice([1.0, 1 / max(d, 1)])
        inp, tgt, w = FIM.varlen_middle(mid, m, t, u_mask, u_merge, p, mask_id=MASK, expand_id=EXPAND, w_delete=wd)
        back = rebuild(inp, tgt)
        masked = [u < t for u in u_mask[:m]]
        assert len(back) == m  # exactly the middle's positions
        for k in range(m):  # a kept token is the middle's; a rebuilt mask stands where a token was masked
            assert back[k] == mid[k] or (back[k] == MASK and masked[k])
        assert tgt[len(tgt) - d:] == [PAD] * d and inp[len(inp) - d:] == [MASK] * d  # deletes: last, always masked
        n_exp = tgt.count(EXPAND)
        assert len(inp) == m + d - n_exp and inp.count(MASK) == sum(masked) - n_exp + d
        # weights: 1/P(masked), an expand counts its two tokens
        assert sum(w) == pytest.approx(sum(masked) / t + d * wd)
        assert all((wi > 0) == (i == MASK) for wi, i in zip(w, inp))


@pytest.mark.parametrize('pool', [True, False])
def test_pooled_deletes_weigh_one_token(pool):
    # pool_deletes (DreamOn's weight_eos): a row's D deletes weigh 1/D each and the normaliser counts them as one
    o, L, g = opts(max_delete=20, pool_deletes=pool), 40, gen(5)
    seen = set()
    for _ in range(200):
        u = torch.rand(5 + 2 * L, generator=g).tolist()
        inp, tgt, w, n = FIM.varlen_row(list(range(L)), 0, L, 0.5, u, opts=o, mask_id=MASK, expand_id=EXPAND,
                                       delete_id=PAD)
        d = sum(1 for i, t in zip(inp, tgt) if i == MASK and t == PAD)
        m = n - (min(d, 1) if pool else d)
        assert m == int(m) and 0 <= m <= L  # n = the middle's length + one token (pooled) or D
        w_del = [wi for i, t, wi in zip(inp, tgt, w) if i == MASK and t == PAD]
        assert sum(w_del) == pytest.approx(min(d, 1) if pool else d)
        seen.add(d > 1)
    assert seen == {True, False}


def test_merge_schedules():
    o = opts(merge_prob=0.5)
    assert FIM.merge_rate(o, 30, 40, static=True) == 0.5
    assert FIM.merge_rate(o, 30, 40, static=False) == pytest.approx(0.5 * (1 - 30 / 40))  # dynamic_inverse
    # all masked (t = 1) and no deletes: dynamic rows never merge, static rows (40%) merge pairs at p = 0.5
    o = opts(merge_prob=0.5, merge_static=0.4, max_delete=0, eps=1.0)
    rows, merged, pairs = 0, 0, []
    g = gen(1)
    L = 40
    for _ in range(400):
        u = torch.rand(5 + 2 * L, generator=g).tolist()
        u[0], u[1] = 0.0, 0.999  # the whole row is the middle
        inp, tgt, w, n = FIM.varlen_row(list(range(L)), 0, L, 1.0, u, opts=o, mask_id=MASK, expand_id=EXPAND, delete_id=PAD)
        rows += 1
        k = tgt.count(EXPAND)
        merged += k > 0
        if k:
            pairs.append(k)
        assert (k > 0) == (u[3] < 0.4)
    assert abs(merged / rows - 0.4) < 4 * math.sqrt(0.24 / rows)
    # non-overlapping pairs over a fully masked run of L at p: E[merges] ~ p L / (1 + p) = L / 3
    assert abs(sum(pairs) / len(pairs) / (L / 3) - 1) < 0.05


def test_delete_count_and_row_rate():
    g, L = gen(2), 48
    x0 = torch.randint(0, 50, (64, L), generator=g)
    counts, deletes = [], []
    for _ in range(20):
        w0 = torch.zeros(64, L)
        x, xt, w, scale, changed = FIM.varlen_rows(x0, x0.clone(), w0, 1 / (64 * L), step=0, mask_id=MASK,
                                                  opts=opts(varlen_rate=0.5, max_delete=8), expand_id=EXPAND,
                                                  delete_id=PAD, eos_id=EOS, prompt_len=None, generator=g,
                                                  noise_level=D.noise_level)
        counts.append(changed.float().mean().item())
        for b in range(64):
            if changed[b]:
                d = int(((x[b] == PAD) & (xt[b] == MASK)).sum())  # delete targets (the rest: the row's fill)
                assert 0 <= d <= 8  # bounded by max_delete (and the row)
                deletes.append(d)
                assert float(scale[b]) <= 1 / 64  # per-row normaliser 1 / (B n)
            else:
                assert torch.equal(x[b], x0[b]) and float(scale[b]) == pytest.approx(1 / (64 * L))
    mean = sum(counts) / len(counts)
    assert abs(mean - 0.5) < 4 * math.sqrt(0.25 / (64 * 20))
    # D ~ U{0..min(8, L - j)}: mostly the full range, so about uniform on 0..8 (mean 4, a little below)
    assert set(deletes) == set(range(9)) and 3.3 < sum(deletes) / len(deletes) < 4.2


def test_rows_keep_the_context_and_stay_in_one_document():
    g, L = gen(3), 40
    x0 = torch.randint(0, 50, (32, L), generator=g)
    x0[:, 20] = EOS  # two documents per row
    x, xt, w, _, _ = FIM.varlen_rows(x0, x0.clone(), torch.zeros(32, L), 1.0, opts=opts(max_delete=4), step=0,
                                 mask_id=MASK, expand_id=EXPAND, delete_id=PAD, eos_id=EOS, prompt_len=None,
                                 generator=g, noise_level=D.noise_level)
    for b in range(32):
        hole = (xt[b] == MASK).nonzero().flatten().tolist()
        if not hole:
            continue
        i, j = hole[0], hole[-1] + 1
        assert torch.equal(xt[b, :i], x0[b, :i]) and torch.equal(x[b, :i], x0[b, :i])  # prefix untouched
        assert (x0[b, i:j - (x[b, i:j] == PAD).sum()] != EOS).all() or i > 20 or j <= 21  # one document
        assert (w[b, :i] == 0).all() and (w[b, j:] == 0).all()


@pytest.mark.parametrize('objective', ['mdm', 'sft'])
def test_uniform_logits_loss_is_log_v(objective):
    class Uniform(nn.Module):
        config = ModelConfig(vocab_size=V, mask_token_id=MASK)

        def forward(self, idx, rows=None, targets=None, weights=None, **kw):
            return cross_entropy(torch.zeros(len(targets), 1), torch.zeros(V, 1), targets, weights)

    g, B, L = gen(4), 8, 48
    plen = torch.full((B,), 10) if objective == 'sft' else None
    losses = []
    for _ in range(150):
        x0 = torch.randint(0, 50, (B, L), generator=g)
        x0[:, 30] = EOS
        if objective == 'sft':
            x0[:, 40:] = PAD
        loss, _ = D.training_loss(Uniform(), x0, objective=objective, opts=opts(varlen_rate=0.5, max_delete=16),
                                  progress=0, step=0, generator=g, prompt_len=plen, pad_id=PAD, eos_id=EOS,
                                  expand_id=EXPAND)
        losses.append(loss.item())
    assert abs(sum(losses) / len(losses) / math.log(V) - 1) < 0.05


def test_training_needs_the_expand_id():
    m = Transformer(ModelConfig(vocab_size=60, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=1, head_dim=8, mask_token_id=59))
    x0 = torch.randint(0, 50, (2, 16))
    with pytest.raises(UserError, match='expand'):
        D.training_loss(m, x0, objective='mdm', opts=opts(), progress=0, step=0, pad_id=PAD, eos_id=EOS, expand_id=EXPAND)
    with pytest.raises(UserError, match='max_delete'):
        opts(max_delete=-1)


def test_train_continues_a_model_with_varlen_rows(tmp_path):
    """train.py: a toy mdm model without <|expand|> (vocab 260) continues with varlen rows: its vocab
    grows by the expand row (263 -> vocab 264), the loss is finite and the old rows are kept."""
    import train
    from conftest import tiny_pycode
    from test_train import SMALL, module_source
    tiny_pycode(tmp_path, [module_source(i) * 3 for i in range(6)], name='mod')
    kw = {**SMALL, 'dataset': tmp_path / 'pycode', 'max_iters': 2}
    args = lambda **o: [f'--{k}={v}' for k, v in {**kw, **o}.items()]
    train.main(args(out_dir=tmp_path / 'pre'))
    train.main(args(out_dir=tmp_path / 'vl', init_from=tmp_path / 'pre', varlen_rate=0.5, max_delete=8))
    pre = torch.load(tmp_path / 'pre' / 'ckpt.pt', weights_only=True)
    ck = torch.load(tmp_path / 'vl' / 'ckpt.pt', weights_only=True)
    assert pre['model_config']['vocab_size'] == 260 and ck['model_config']['vocab_size'] == 264
    assert ck['train_config']['varlen_rate'] == 0.5
    with open(tmp_path / 'vl' / 'log.jsonl') as f:
        assert all(math.isfinite(r['loss']) for r in map(json.loads, f) if 'loss' in r)
    with pytest.raises(UserError, match='varlen_rate'):
        train.main(args(out_dir=tmp_path / 'ar', objective='ar', varlen_rate=0.5))


# -----------------------------------------------------------------------------
# sampling

class Scripted(nn.Module):
    """A stand-in model whose raw logits at each position come from rule(seq, i) -> {token: logit}."""
    def __init__(self, rule, vocab=V, shift=False):
        super().__init__()
        self.rule, self.seen = rule, []
        self.config = ModelConfig(vocab_size=vocab, mask_token_id=MASK, shift_logits=shift, max_position_embeddings=256)
        self.lm_head = nn.Linear(1, 1)

    def forward(self, idx, ctx=None, rows=None):
        pad = ctx.pad if ctx is not None else None
        B, T = idx.shape
        out = torch.zeros(B, T, self.config.vocab_size)
        for b in range(B):
            p = 0 if pad is None else int(pad[b])
            seq = idx[b, p:].tolist()
            self.seen.append(seq)
            for i in range(len(seq)):
                for t, v in self.rule(seq, i).items():
                    out[b, p + i, t] = v
        return out.flatten(0, 1)[rows]


def run(model, prompt, suffix, **kw):
    kw = dict(dict(canvas=2, gen_length=8, expand_id=EXPAND, delete_id=PAD, pad_id=PAD, alg='maskgit_plus'), **kw)
    return generate(model, prompt, suffix=suffix, variable_length=True, **kw)


def test_expand_adds_exactly_one_mask_until_the_maximum():
    steps = []
    m = Scripted(lambda seq, i: {EXPAND: 5.0, 7: 4.0})  # always prefers to expand, else token 7
    out, info = run(m, [[1, 2, 3]], [[4, 5]], canvas=1, gen_length=5,
                    callback=lambda s: steps.append(list(s['canvas'])))
    assert [len(c) for c in steps] == [2, 3, 4, 5, 5, 5, 5, 5, 5]  # +1 per expand, then the maximum holds
    assert info['middles'] == [[7] * 5] and info['expansions'] == 4 and info['nfe'] == 9
    assert out[0].tolist() == [1, 2, 3, 7, 7, 7, 7, 7, 4, 5]
    # the model saw prefix + canvas + suffix, with the suffix right after the canvas
    assert all(s[:3] == [1, 2, 3] and s[-2:] == [4, 5] for s in m.seen)
    # an expansion budget stops it too
    _, info = run(Scripted(lambda seq, i: {EXPAND: 5.0, 7: 4.0}), [[1]], [[4]], canvas=1, gen_length=5, budget=2)
    assert info['lengths'] == [3] and info['expansions'] == 2


@pytest.mark.parametrize('truncate', [True, False])
def test_delete_removes_its_slot(truncate):
    # the canvas's first slot (index 2) is deleted at the first step; every other slot becomes token 9
    def rule(seq, i):
        return {PAD: 6.0} if i == 2 and len(seq) == 9 else {9: 3.0}
    out, info = run(Scripted(rule), [[1, 2]], [[4, 5, 6]], canvas=4, gen_length=6, truncate=truncate)
    want = [] if truncate else [9, 9, 9]  # truncate (DreamOn's pad_eos_to_right): the masks after it go too
    assert info['middles'] == [want] and info['deletions'] == (4 if truncate else 1)
    assert out[0].tolist() == [1, 2] + want + [PAD] * (6 - len(want)) + [4, 5, 6]


def test_shifted_logits_read_the_position_before():
    # with shift_logits the slot at index i reads the logits at i - 1: token 20 + (i - 1)
    m = Scripted(lambda seq, i: {20 + i: 5.0}, shift=True)
    _, info = run(m, [[1, 2, 3]], [[4]], canvas=3, gen_length=3)
    assert info['middles'] == [[22, 23, 24]]


def test_first_commit_reads_the_training_logits():
    # a shifted model in a left-padded batch: the first slot the sampler commits, and its token, are the
    # lowest-entropy masked slot of the aligned logits the training loss reads (diffusion.predict)
    m = tiny(1)
    prompts, suffix, k = [[8, 9], [1, 2, 3, 4, 5, 6, 7]], [10, 11, 12], 5  # row 0 (the callback's) is padded
    steps = []
    _, info = run(m, prompts, [suffix] * 2, canvas=k, gen_length=k, alg='entropy', truncate=False,
                  callback=lambda s: steps.append(s))
    x = torch.tensor([prompts[0] + [MASK] * k + suffix])
    with torch.no_grad():
        aligned = D.predict(m, x)[0, len(prompts[0]):len(prompts[0]) + k]
        raw = m(x)[0, len(prompts[0]):len(prompts[0]) + k]  # what an unshifted sampler would read
    def first_commit(logits):
        logits = logits.clone()
        logits[:, [MASK, EXPAND]] = float('-inf')
        p = logits.softmax(-1)
        slot = int(torch.xlogy(p, p).sum(-1).argmax())
        return slot, int(p[slot].argmax())
    slot, tok = first_commit(aligned)
    assert first_commit(raw) != (slot, tok)  # the shift matters here, so the check below can fail
    born = steps[0]['born']
    if tok == PAD:  # a delete leaves the canvas (no truncate): one slot fewer, the others still masked
        assert len(steps[0]['canvas']) == k - 1 and born == [-1] * (k - 1)
    else:
        assert born.index(1) == slot and steps[0]['canvas'][slot] == tok


def tiny(seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=8, mask_token_id=MASK, shift_logits=True,
                      tie_word_embeddings=False, max_position_embeddings=128)
    m = Transformer(cfg).eval()
    with torch.no_grad():  # make expansions and deletions frequent, and different from row to row
        m.lm_head.weight[EXPAND] *= 4
        m.lm_head.weight[PAD] *= 3
    return m


@pytest.mark.parametrize('threshold', [None, 0.3])
def test_batch_equals_rows_alone(threshold):
    m = tiny()
    prompts = [[1, 2, 3, 4, 5], [7, 8], [9] * 9, [11, 12, 13]]
    suffixes = [[10, 11, 12], [13], [14, 15], []]
    out, info = run(m, prompts, suffixes, canvas=3, gen_length=12, alg='entropy', threshold=threshold)
    assert len(set(map(len, info['middles']))) > 1 and info['expansions'] > 0 and info['deletions'] > 0
    G = max(map(len, prompts))
    for b in range(4):
        o, i = run(m, [prompts[b]], [suffixes[b]], canvas=3, gen_length=12, alg='entropy', threshold=threshold)
        assert i['middles'][0] == info['middles'][b]
        n = len(prompts[b]) + 12 + len(suffixes[b])
        assert o[0].tolist() == out[b, G - len(prompts[b]):G - len(prompts[b]) + n].tolist()


def test_same_middles_as_dreamon_reference():
    """DreamOn's own sampler (eval/generator.py, run by tests/fixtures/make_dreamon_generator.py on a
    hash-logits model) and generate_varlen give the same middles with the same number of forwards."""
    spec = importlib.util.spec_from_file_location('make_dreamon', os.path.join(FIXTURES, 'make_dreamon_generator.py'))
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    with open(os.path.join(FIXTURES, 'dreamon_generator.json')) as f:
        fx = json.load(f)

    class Hashed(nn.Module):
        def __init__(self, salt):
            super().__init__()
            self.salt, self.calls = salt, 0
            self.config = ModelConfig(vocab_size=ref.V, mask_token_id=ref.MASK, shift_logits=True)
            self.lm_head = nn.Linear(1, 1)

        def forward(self, idx, ctx=None, rows=None):
            pad = ctx.pad if ctx is not None else None
            self.calls += 1
            out = torch.zeros(*idx.shape, ref.V)
            for b in range(idx.size(0)):
                p = 0 if pad is None else int(pad[b])
                out[b, p:] = ref.hash_logits(idx[b, p:].tolist(), self.salt)
            return out.flatten(0, 1)[rows]

    grew = shrank = 0
    for c in fx['cases']:
        net = Hashed(c['salt'])
        _, info = VL.generate_varlen(net, [c['prefix']], suffix=[c['suffix']], canvas=c['min_gen_len'],
                                     gen_length=c['max_gen_len'], alg='entropy', expand_id=ref.EXPAND,
                                     delete_id=ref.DELETE, pad_id=0)
        assert info['middles'][0] == c['middle'] and net.calls == c['nfe'], c
        grew, shrank = grew + (len(c['middle']) > c['min_gen_len']), shrank + (len(c['middle']) < c['min_gen_len'])
    assert grew and shrank  # the fixture exercises both directions


def test_bad_input_one_line():
    m = tiny()
    with pytest.raises(UserError, match='never trained with expand tokens'):
        run(m, [[1]], [[2]], expand_id=V)  # the expand id is outside the vocab
    with pytest.raises(UserError, match='initial canvas of 9 masks'):
        run(m, [[1]], [[2]], canvas=9, gen_length=8)
    with pytest.raises(UserError, match="exceeds the model's context"):
        run(m, [[1]], [[2]], gen_length=200)
    with pytest.raises(UserError, match='no cached'):
        run(m, [[1]], [[2]], cache='prefix')
    with pytest.raises(TypeError):
        generate(m, [[1]], canvas=3)  # varlen options without variable_length


def test_cli_bad_input_is_one_line(tmp_path):
    """sample.py and eval.py, --variable_length: a model without <|expand|>, a canvas above the maximum,
    a maximum beyond the context: each one `error:` line on stderr and exit status 1."""
    import subprocess
    import sys
    from dataclasses import asdict
    from model import make_config
    from lib.tokenizer import load_tokenizer
    tok = load_tokenizer('bytes')
    for name, vocab in (('plain', tok.expand_id), ('varlen', tok.expand_id + 1)):  # 'plain': no expand row
        cfg = make_config('tiny', attention='bidirectional', vocab_size=vocab, mask_token_id=tok.mask_id)
        torch.manual_seed(0)
        os.makedirs(tmp_path / name)
        torch.save(dict(model=Transformer(cfg).state_dict(), model_config=asdict(cfg), train_config={'seq_len': 64},
                        tokenizer='bytes', iter_num=0, optimizer={}, rng={}, best_val_loss=0.0), tmp_path / name / 'ckpt.pt')
        n_ctx = cfg.max_position_embeddings
    infill = ['--prompt=def f(x):\n', '--suffix=\n    return y\n', '--variable_length']
    he = ['--task=humaneval_infill', '--limit=1', '--cond_samples=0', '--variable_length']
    cases = [('sample.py', ['--ckpt=' + str(tmp_path / 'plain'), *infill], 'never trained with expand tokens'),
             ('sample.py', ['--ckpt=' + str(tmp_path / 'varlen'), *infill, '--canvas=65'], '--canvas=65 is above --max_hole=64'),
             ('sample.py', ['--ckpt=' + str(tmp_path / 'varlen'), *infill, f'--max_hole={n_ctx}'], "exceeds the model's context"),
             ('eval.py', ['--ckpt=' + str(tmp_path / 'plain'), *he], 'never trained with expand tokens'),
             ('eval.py', ['--ckpt=' + str(tmp_path / 'varlen'), *he, '--canvas=65'], 'initial canvas of 65 masks'),
             ('eval.py', ['--ckpt=' + str(tmp_path / 'varlen'), *he, '--max_hole=64'], 'leaves no room')]
    from evals import evaluation as E
    import sample as S
    for script, args, want in cases:  # in-process: main raises what the entry point prints as that one line
        with pytest.raises(UserError, match=re.escape(want)):
            (S if script == 'sample.py' else E).main(args)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    procs = [subprocess.Popen([sys.executable, script, *args], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=dict(os.environ, OMP_NUM_THREADS='1')) for script, args, _ in cases[::3]]
    for p, (script, args, want) in zip(procs, cases[::3]):  # the command line: that line alone, exit status 1
        _, err = p.communicate(timeout=120)
        assert p.returncode == 1 and err.count('\n') == 1 and err.startswith('error: ') and want in err, (script, args, err)


def test_fixed_hole_of_a_varlen_model_never_expands():
    # eval: a model trained with varlen_rate > 0 fills a hole of fixed length as a canvas that cannot grow,
    # so its fill never holds <|expand|> (which would decode as text) and is at most that long
    from evals import evaluation as E
    from evals.infill import fill_hole
    from model import make_config
    from lib.tokenizer import load_tokenizer
    tok = load_tokenizer('bytes')
    cfg = make_config('tiny', attention='bidirectional', vocab_size=tok.expand_id + 1, mask_token_id=tok.mask_id)
    torch.manual_seed(0)
    m = Transformer(cfg).eval()
    with torch.no_grad():
        m.lm_head.weight[tok.expand_id] *= 50  # expand everywhere, if it could
    ecfg = dict(E.DEFAULTS, hole_length=6)
    pre, suf = tok.encode('def f(x):\n'), tok.encode('\n    return y\n')
    fill, info = fill_hole(m, tok, pre, suf, 3, 'diffusion', ecfg, gen(), varlen_model=True)
    assert '<|expand|>' not in fill and info['expansions'] == 0 and info['lengths'][0] <= 6
    fill, info = fill_hole(m, tok, pre, suf, 3, 'diffusion', ecfg, gen(), varlen_model=False)
    assert '<|expand|>' in fill  # the plain fixed-length sampler would write it


@pytest.mark.parametrize('varlen_rate', [0.5, 0.0])
def test_sample_py_fixed_hole_of_a_varlen_model_never_expands(tmp_path, capsys, varlen_rate):
    # sample.py --suffix without --variable_length: a varlen model's hole of --gen_length is a canvas that
    # cannot grow, so <|expand|> never reaches the printed text (a model without varlen rows samples as before)
    from dataclasses import asdict
    import sample as S
    from model import make_config
    from lib.tokenizer import load_tokenizer
    tok = load_tokenizer('bytes')
    cfg = make_config('tiny', attention='bidirectional', vocab_size=tok.expand_id + 1, mask_token_id=tok.mask_id)
    torch.manual_seed(0)
    m = Transformer(cfg)
    with torch.no_grad():
        m.lm_head.weight[tok.expand_id] *= 50  # expand everywhere, if it could
    torch.save(dict(model=m.state_dict(), model_config=asdict(cfg), train_config={'seq_len': 64, 'varlen_rate': varlen_rate},
                    tokenizer='bytes', iter_num=0, optimizer={}, rng={}, best_val_loss=0.0), tmp_path / 'ckpt.pt')
    S.main(['--ckpt=' + str(tmp_path), '--prompt=def f(x):\n', '--suffix=\n    return y\n', '--gen_length=6'])
    out = capsys.readouterr().out
    assert ('<|expand|>' in out) == (varlen_rate == 0)
