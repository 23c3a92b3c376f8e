"""
The repository as a newcomer meets it: python -m pytest tests/test_repo.py -q
Every command the README and docs/ show names a real script, config file and flags that script
accepts; no file refers to a path outside the repository.
"""
import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(REPO, 'README.md'), *sorted(glob.glob(os.path.join(REPO, 'docs', '*.md')))]


def repo_files():
    """The files git would commit: tracked, plus untracked ones it does not ignore."""
    out = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split('\n')
    return [f for f in out if f and os.path.isfile(os.path.join(REPO, f))]


def commands(text):
    """(script, args) of every `python X.py ...` / `python -m X.Y ...` (script X/Y.py) / `torchrun ... X.py ...`
    line in fenced code blocks, with backslash continuations joined and comments dropped."""
    for block in re.findall(r'```[a-z]*\n(.*?)```', text, flags=re.S):
        for line in block.replace('\\\n', ' ').split('\n'):
            line = line.split(' #')[0].strip().lstrip('$ ')
            try:
                words = shlex.split(line)
            except ValueError:
                continue
            for i, w in enumerate(words):
                if w == '-m' and 0 < i < len(words) - 1 and re.search(r'(^|/)python3?$', words[i - 1]):
                    top = words[i + 1].split('.')[0]  # a module of this repository (not venv, pytest ...)
                    if os.path.exists(os.path.join(REPO, top)) or os.path.exists(os.path.join(REPO, top + '.py')):
                        yield words[i + 1].replace('.', '/') + '.py', words[i + 2:]
                    break
                if w.endswith('.py') and i > 0 and re.search(r'(^|/)(python3?|torchrun)$', words[i - 1]) or \
                        w.endswith('.py') and i > 0 and words[i - 1].startswith('--nproc') or \
                        w.endswith('.py') and i > 1 and words[0] == 'torchrun':
                    yield w, words[i + 1:]
                    break


def help_command(script):
    """How a script runs: a top-level one by its path, one in a package (data/, experiments/) with python -m."""
    return [script] if '/' not in script else ['-m', script[:-3].replace('/', '.')]


def test_no_path_outside_the_repository():
    bad = []
    for f in repo_files():
        path = os.path.join(REPO, f)
        try:
            with open(path, encoding='utf-8') as fh:
                text = fh.read()
        except (UnicodeDecodeError, OSError):
            continue  # binary files (the compressed tokenizer, PNGs)
        for m in re.finditer(r"(?:\.\./)+[\w.-]+|/work/[\w./-]+|'\.\.',\s*'shared'", text):
            s = m.group(0)
            target = os.path.normpath(os.path.join(os.path.dirname(path), s))
            if s.startswith('/work/') or 'shared' in s or not target.startswith(REPO + os.sep):
                bad.append(f"{f}: {s}")
    assert not bad, bad


BOOTSTRAP = re.compile(r"if not __package__:  # typed by path \(python ([\w/]+\.py)\): import from the repository root\n"
                       r"    sys\.path\.insert\(0, (os\.path\.dirname\()+os\.path\.abspath\(__file__\)\)+\n")


def test_no_import_path_hacks():
    """The product imports its modules from the repository root. A script under data/ or experiments/ may be
    typed by path (python data/pycode/prepare.py, nanoGPT's habit): it then puts the root on sys.path, in
    the two lines of BOOTSTRAP and nowhere else. evals/peers.py also puts the user's CoDA clone
    (--coda_repo) on the path, at run time."""
    bad = []
    for f in repo_files():
        if not f.endswith('.py') or f.startswith('tests/') or f == 'evals/peers.py':
            continue
        text = open(os.path.join(REPO, f), encoding='utf-8').read()
        m = BOOTSTRAP.search(text)
        if m and (m.group(1) != f or f.split('/')[0] not in ('data', 'experiments')):
            bad.append(f)
        if re.search(r'sys\.path\.(insert|append)', BOOTSTRAP.sub('', text)):
            bad.append(f)
    assert not bad, bad


@pytest.mark.parametrize('script', ['data/pycode/prepare.py', 'data/pycode_sft/prepare.py', 'data/prepare_custom.py',
                                    'experiments/run.py'])
def test_scripts_run_by_path_from_anywhere(script, tmp_path):
    """nanoGPT's `python data/shakespeare_char/prepare.py`: a script typed by path imports the product from the
    repository root, whatever the working directory."""
    for cwd in (REPO, str(tmp_path)):
        r = subprocess.run([sys.executable, os.path.join(REPO, script), '--help'], cwd=cwd, capture_output=True,
                           text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
        assert r.returncode == 0 and r.stdout.strip(), (script, cwd, r.stderr[-500:])


def test_readme_and_docs_commands_exist():
    found = {}  # script -> set of flags, over every document
    for doc in DOCS:
        with open(doc, encoding='utf-8') as f:
            for script, args in commands(f.read()):
                assert os.path.isfile(os.path.join(REPO, script)), f"{os.path.basename(doc)}: no script {script}"
                for a in args:
                    if a.endswith('.py') and not a.startswith('-'):  # a train.py config file
                        assert os.path.isfile(os.path.join(REPO, a)), f"{os.path.basename(doc)}: no config {a}"
                    if a.startswith('--'):
                        found.setdefault(script, set()).add(a[2:].split('=')[0])
    assert {'train.py', 'sample.py', 'eval.py', 'bench.py'} <= found.keys()
    procs = {s: subprocess.Popen([sys.executable, *help_command(s), '--help'], cwd=REPO, stdout=subprocess.PIPE, text=True,
                                 stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS='1'))
             for s in found}
    for script, flags in found.items():
        help_text = procs[script].communicate(timeout=120)[0]
        assert procs[script].returncode == 0, f"{script} --help failed:\n{help_text}"
        unknown = sorted(f for f in flags if not re.search(rf'--{re.escape(f)}\b', help_text))
        assert not unknown, f"{script} does not accept {unknown} (shown in the README or docs/)"


def defines(src, n, name, module):
    """Does line n of src (a list of lines) define name? A plain name (or module.name) is a top-level def or
    class; Class.method is a def whose enclosing class, the nearest less indented line above, is Class."""
    *owner, leaf = name.split('.')
    m = re.match(rf'( *)(async +)?(def|class) {re.escape(leaf)}\b', src[n - 1])
    if not m:
        return False
    if not owner or owner == [module]:
        return m.group(1) == ''
    indent = len(m.group(1))
    for line in reversed(src[:n - 1]):
        if line.strip() and not line.lstrip().startswith(('#', '@')) and len(line) - len(line.lstrip()) < indent:
            return re.match(rf' *class {re.escape(owner[-1])}\b', line) is not None
    return False


def test_docs_code_links_point_at_their_definitions():
    """docs/ pages link the code they explain as [`name`](../file.py#LN), a method as [`Class.method`]: line N
    must define that very name (not a method of the same name in another class)."""
    bad, n_links = [], 0
    for doc in DOCS[1:]:
        with open(doc, encoding='utf-8') as f:
            text = f.read()
        for name, path, line in re.findall(r'\[`([\w.]+)`\]\(\.\./([\w/.]+\.py)#L(\d+)\)', text):
            n_links += 1
            with open(os.path.join(REPO, path), encoding='utf-8') as f:
                src = f.read().split('\n')
            module = os.path.basename(path)[:-3]
            if not (0 < int(line) <= len(src) and defines(src, int(line), name, module)):
                now = [i + 1 for i in range(len(src)) if defines(src, i + 1, name, module)]
                bad.append(f"{os.path.basename(doc)}: `{name}` is not at {path}#L{line} (it is at {now})")
    assert n_links >= 20 and not bad, bad



def import_graph():
    """{file: the product files it imports}, over the product's modules (not tests/): every import, at the
    top of a file or inside a function, resolved as Python does from the repository root (or, for a script
    under experiments/, from its own folder first)."""
    import ast
    files = [f for f in repo_files() if f.endswith('.py') and not f.startswith('tests/')]
    names = {os.path.splitext(f)[0].replace('/', '.'): f for f in files}  # dotted name -> file

    def resolve(f, name):
        here = os.path.dirname(f).replace('/', '.')
        for full in ([f'{here}.{name}'] if here else []) + [name]:
            parts = full.split('.')
            for k in range(len(parts), 0, -1):
                if '.'.join(parts[:k]) in names:
                    return names['.'.join(parts[:k])]
        return None  # outside the product: the standard library, torch, ...

    graph = {}
    for f in files:
        with open(os.path.join(REPO, f), encoding='utf-8') as fh:
            tree = ast.parse(fh.read())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps |= {resolve(f, a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                deps |= {resolve(f, f'{node.module}.{a.name}') for a in node.names}
        graph[f] = deps - {None, f}
    return graph


def import_cycles(graph):
    """The strongly connected components of more than one file (Tarjan): each is a set of modules that
    import each other, directly or around a loop."""
    index, low, stack, cycles = {}, {}, [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = {stack.pop()}
            while v not in comp:
                comp.add(stack.pop())
            if len(comp) > 1:
                cycles.append(sorted(comp))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles



def test_no_module_imports_eval():
    """eval.py is only the command `python eval.py` (named like Python's builtin eval): its code is
    evals/evaluation.py, and the tasks build on evals/tasks.py and evals/execution.py, never on each other."""
    graph = import_graph()
    assert not [f for f, deps in graph.items() if 'eval.py' in deps], "import evals.evaluation (eval.py's code), not eval"
    assert 'evals/evaluation.py' in graph['eval.py'] and 'evals/evaluation.py' in graph['speedrun.py']
    for task in ('evals/infill.py', 'evals/coda.py'):
        assert {'evals/execution.py', 'evals/tasks.py'} <= graph[task]
        assert not graph[task] & {'evals/evaluation.py', 'evals/infill.py', 'evals/coda.py'}
    assert not [c for c in import_cycles(graph) if set(c) & {'evals/evaluation.py', 'evals/execution.py', 'evals/tasks.py'}]


def test_the_product_has_no_circular_import():
    """No module of the product imports itself around a loop (every import, at the top or in a function)."""
    cycles = import_cycles(import_graph())
    assert not cycles, cycles


def test_the_root_shows_the_design_card():
    """The root holds the method (model, diffusion, train, sample) and the commands a user types, at most 8
    Python files; everything else lives in a folder named for its role. No product file is over 600 lines."""
    files = [f for f in repo_files() if f.endswith('.py') and not f.startswith('tests/')]
    root = sorted(f for f in files if '/' not in f)
    assert {'model.py', 'diffusion.py', 'train.py', 'sample.py'} <= set(root) and len(root) <= 8, root
    long = {f: n for f in files if (n := len(open(os.path.join(REPO, f), encoding='utf-8').read().split('\n')) - 1) > 600}
    assert not long, long


def test_the_reading_path_names_no_helper():
    """model.py -> diffusion.py -> sample.py: generate_reference, the method on one screen, calls only what
    those three files define (the fast path may use the helpers under lib/)."""
    import ast
    defined = set()
    for f in ('model.py', 'diffusion.py', 'sample.py'):
        tree = ast.parse(open(os.path.join(REPO, f), encoding='utf-8').read())
        defined |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        if f == 'sample.py':
            ref = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == 'generate_reference')
            imported = {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) and n.module.startswith('lib')
                        for a in n.names}
    called = {n.func.id for n in ast.walk(ref) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert called & defined >= {'predict', 'sample_tokens', 'confidence', 'top_ranks'}
    assert not called & imported, called & imported


def test_docs_name_only_paths_that_exist():
    """Every repository path the README and docs/ name (a link, or a file in `code`) exists."""
    tracked = set(repo_files())
    folders = {os.path.dirname(f) for f in tracked} | {''}
    bad = []
    for doc in DOCS:
        text = open(doc, encoding='utf-8').read()
        here = os.path.relpath(os.path.dirname(doc), REPO)
        links = [os.path.normpath(os.path.join(here, p)) for p in re.findall(r'\]\(([^)#:\s]+)(?:#[^)]*)?\)', text)]
        code = re.findall(r'`((?:lib|evals|data|experiments|config|tests|docs)/[\w./-]+\.(?:py|md|json|png))`', text)
        for p in links + code:
            p = p.replace('\\', '/')
            if p not in tracked and p.rstrip('/') not in folders:
                bad.append(f"{os.path.basename(doc)}: {p}")
    assert not bad, bad


def test_an_old_checkpoint_loads_and_samples_the_same():
    """tests/fixtures/ckpt_v1 was written by train.py before the product moved into lib/ and evals/ (made by
    tests/fixtures/make_ckpt_v1.py): it loads with weights_only=True and samples the tokens it sampled then."""
    import json
    import torch
    from lib.runtime import load_model
    from sample import generate
    fixture = os.path.join(REPO, 'tests', 'fixtures', 'ckpt_v1')
    want = json.load(open(os.path.join(fixture, 'samples.json')))
    model, tok = load_model(os.path.join(fixture, 'ckpt.pt'))
    ids = tok.encode(want['prompt'])
    for cache, tokens in want['tokens'].items():
        out, _ = generate(model, [ids] * 2, gen_length=want['gen_length'], block_length=want['block_length'],
                          steps=want['steps'], temperature=want['temperature'], top_k=want['top_k'], cache=cache,
                          generator=torch.Generator().manual_seed(want['seed']))
        assert out.tolist() == tokens, cache
