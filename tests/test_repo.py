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


def test_no_import_path_hacks():
    """The product imports its modules from the repository root (scripts under data/ and experiments/ run with
    python -m); only bench_peers.py puts the user's CoDA clone (--coda_repo) on the path, at run time."""
    bad = [f for f in repo_files() if f.endswith('.py') and not f.startswith('tests/') and f != 'bench_peers.py'
           and re.search(r'sys\.path\.(insert|append)', open(os.path.join(REPO, f), encoding='utf-8').read())]
    assert not bad, bad


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
    evaluation.py, and the tasks build on tasks.py and execution.py, never on each other."""
    graph = import_graph()
    assert not [f for f, deps in graph.items() if 'eval.py' in deps], "import evaluation (eval.py's code), not eval"
    assert 'evaluation.py' in graph['eval.py'] and 'evaluation.py' in graph['speedrun.py']
    for task in ('eval_infill.py', 'eval_coda.py'):
        assert {'execution.py', 'tasks.py'} <= graph[task] and not graph[task] & {'evaluation.py', 'eval_infill.py',
                                                                                   'eval_coda.py'}
    assert not [c for c in import_cycles(graph) if set(c) & {'evaluation.py', 'execution.py', 'tasks.py'}]


def test_the_product_has_no_circular_import():
    """No module of the product imports itself around a loop (every import, at the top or in a function)."""
    cycles = import_cycles(import_graph())
    assert not cycles, cycles
