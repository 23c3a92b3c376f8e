"""
The generator of pyworld (prepare.py describes the world; primitives.py holds the primitives, render.py
writes a program's text): small Python functions, each a composition
of primitives of one family, with a docstring and three asserts whose values come from running it.

A composition is a family and a tuple of ops, e.g. ('even', 'sq', 'sum') in the list family. An op is
one primitive, or a branch 'cond?then' / 'cond?then:else' (2 and 3 steps); in the calls family ops
after the first belong to a helper ('h.', 'h2.' or 'g.'). The key 'list:even>sq>sum' decides the
split (a hash, independent of the seed) and the tier is the number of steps. Constants (keep the
multiples of k, add k) are drawn per program. Every cosmetic choice (names, surface form, wording)
comes from one per-program seed `rs`: render() is a pure function of the spec, and every rendering of
a composition with its constants computes the same function (the tests are drawn on one of them).
"""
import ast
import functools
import io
import itertools
import random
import re
import signal
import threading
import tokenize
from collections import Counter
from contextlib import contextmanager

# FAMILIES, VERSION, HIDE, VAL_FRAC, TEST_FRAC, split_of and primitives are world's public names too
from data.pyworld.primitives import (CHAR_POOL, CONDS, FAMILIES, HIDE, LIST_FILTERS, LIST_FINALS, LIST_MAPS,
                                     MAX_BYTES, PATTERNS, SOURCES, STR_FILTERS, STR_FINALS, STR_MAPS,
                                     TARGET_BYTES, TEST_FRAC, TIMES_OPS, TRANSFORMS, UPDATES, VAL_FRAC, VERSION,
                                     atoms, op_steps, primitives, role, split_of, table)
from data.pyworld.render import (Program, render)


# -----------------------------------------------------------------------------
# drawing a composition of a tier, its constants and its inputs

CASE = ('up', 'low', 'swap')  # one case map after another undoes it


def int_ops(r, steps, pool, prefix=''):
    """Integer ops worth `steps` steps: transforms (1), 'cond?t' (2), 'cond?t:t2' (3); no op twice in a row."""
    ops = []
    while steps > 0:
        size = r.choice([s for s in (1, 1, 2, 3) if s <= steps])
        t, t2 = r.sample(pool, 2)
        op = prefix + (t if size == 1 else f'{r.choice(list(CONDS))}?{t}' + (f':{t2}' if size == 3 else ''))
        if not ops or ops[-1] != op:
            ops.append(op)
            steps -= size
    return ops


def draw_ops(r, family, tier):
    """A random composition of `tier` steps, or None (none of this shape: draw again)."""
    if family in ('list', 'string'):
        F, M, R = (STR_FILTERS, STR_MAPS, STR_FINALS) if family == 'string' else (LIST_FILTERS, LIST_MAPS, LIST_FINALS)
        final = r.choice(list(R))
        n = tier - R[final].get('steps', 1)
        if n < 0 or n + op_steps(final) == 0:
            return None
        stages = []
        while len(stages) < n:
            op = r.choice(list(r.choice((F, M))))
            if not stages or (stages[-1] != op and not (op in CASE and stages[-1] in CASE)):
                stages.append(op)
        if final == 'count' and stages and stages[-1] not in F:
            return None  # the maps before a count never matter
        return (*stages, final)
    if family == 'arith':
        return tuple(int_ops(r, tier, list(TRANSFORMS)))
    if family == 'loop':
        src = r.choice(list(SOURCES))
        n = tier - (src != 'over')
        if n < 1:
            return None
        if src == 'times':
            ops = int_ops(r, n, TIMES_OPS)
            if r.random() < 0.3:  # a fibonacci step among them
                ops[r.randrange(len(ops))] = 'fib'
            return ('times', *ops) if sum(map(op_steps, ops)) == n else None
        ups = [u for u in UPDATES if src == 'over' or not UPDATES[u].get('prev')]
        ops = [r.choice(ups)]
        while len(ops) < n:
            u = r.choice(ups)
            if u != ops[-1]:
                ops.append(u)
        return (src, *ops)
    pat = r.choice(list(PATTERNS))  # calls
    roles = PATTERNS[pat]['roles']
    n = tier - 1
    if n < len(roles):
        return None
    if 'g' in roles:  # a test of up to 3 conditions, the rest of the steps in h
        ng = n if roles == 'g' else r.randint(1, min(2, n - 1))
        g = [f'g.{c}' for c in r.sample(list(CONDS), ng)]
        n -= ng
    if 'H' in roles:
        n1 = r.randint(1, n - 1)
        return (pat, *int_ops(r, n1, list(TRANSFORMS), 'h.'), *int_ops(r, n - n1, list(TRANSFORMS), 'h2.'))
    return (pat, *(int_ops(r, n, list(TRANSFORMS), 'h.') if 'h' in roles else []), *(g if 'g' in roles else []))


def draw_consts(r, family, ops):
    out = []
    for i in range(len(ops)):
        ks = []
        for p in table(family, i, ops):
            k = p['k']
            ks.append(None if k is None else r.choice(k) if isinstance(k, str) else r.randint(*k))
        out.append(tuple(ks))
    return tuple(out)


def draw_input(r, family, ops):
    ints = lambda: [r.randint(-9, 20) for _ in range(r.randint(3, 4))]
    if family == 'string':
        return (''.join(r.choice(CHAR_POOL) for _ in range(r.randint(3, 6))).strip() or 'a',)
    if family == 'arith' or (family == 'calls' and PATTERNS[ops[0]].get('int')):
        return (r.randint(-10, 30),)
    if family == 'loop' and ops[0] == 'digits':
        return (r.randint(0, 10 ** r.randint(1, 5)),)
    if family == 'loop' and ops[0] == 'times':
        return (r.randint(-5, 20), r.randint(0, 6))
    return (ints(),)


class Timeout(Exception):
    pass


@contextmanager
def time_limit(seconds):
    """Guard code that might not end (a mutant); in the main thread only, where signals arrive."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    def alarm(*_):
        raise Timeout()
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run(function, name, inputs):
    """Call the function `name` defined by the text `function` on each input (fresh copies): the outputs."""
    ns = {}
    exec(compile(function, '<pyworld>', 'exec'), ns)
    f = ns[name]
    return [f(*[list(a) if isinstance(a, list) else a for a in args]) for args in inputs]


def passes(function, name, inputs, outputs, limit=None):
    """Whether the function returns exactly these outputs (an exception or a timeout fails)."""
    try:
        if limit is None:
            return [repr(o) for o in run(function, name, inputs)] == [repr(o) for o in outputs]
        with time_limit(limit):
            return [repr(o) for o in run(function, name, inputs)] == [repr(o) for o in outputs]
    except Exception:  # noqa: BLE001 (a mutant may raise anything)
        return False


def compiled(prog):
    ns = {}
    exec(compile(prog.function, '<pyworld>', 'exec'), ns)
    return ns[prog.name]


@functools.lru_cache(maxsize=2**16)
def variant(family, ops, consts):
    """The compiled function of a composition with these constants (its names and form do not matter)."""
    return compiled(render(Program(family, ops, consts)))


def ablations(family, ops, consts):
    """The composition without each of its droppable ops (not a final, pattern or source, nor a helper's last op)."""
    out = []
    for i, op in enumerate(ops):
        rest = tuple(o for j, o in enumerate(ops) if j != i)
        if (family in ('list', 'string') and i == len(ops) - 1) or i == 0 and family in ('loop', 'calls') \
                or len(rest) == 0 or (family == 'loop' and len(rest) == 1) \
                or (family == 'calls' and not any(role(o) == role(op) for o in rest)):
            continue
        out.append(variant(family, rest, consts[:i] + consts[i + 1:]))
    return out


def draw_tests(r, family, ops, consts, pool=12):
    """(inputs, outputs): three distinct inputs (of `pool` drawn) on which the function runs and gives at
    least two distinct short outputs, and on which dropping any one op would change an output (every
    step is tested); None if there are none."""
    f, without = variant(family, ops, consts), ablations(family, ops, consts)
    call = lambda fn, a: fn(*[list(x) if isinstance(x, list) else x for x in a])
    full = (1 << len(without)) - 1
    seen = []  # (input, output, its repr, bit j set: dropping ablation j changes this output)
    for _ in range(pool * 3):
        a = draw_input(r, family, ops)
        if any(a == x[0] for x in seen):
            continue
        try:
            out = call(f, a)
        except (ArithmeticError, ValueError, TypeError, IndexError):  # max() of nothing, a modulo by 0 ...
            continue
        text = repr(out)
        if len(text) > 30:
            continue
        mask = 0
        for j, g in enumerate(without):
            try:
                mask |= (repr(call(g, a)) != text) << j
            except Exception:  # noqa: BLE001 (an op dropped may break the rest)
                mask |= 1 << j
        seen.append((a, out, text, mask))
        for x, y in itertools.combinations(seen[:-1], 2):  # the trios with the new input
            z = seen[-1]
            if x[3] | y[3] | z[3] == full and len({x[2], y[2], z[2]}) >= 2:
                return [x[0], y[0], z[0]], [x[1], y[1], z[1]]
        if len(seen) == pool or (len(seen) >= 6 and functools.reduce(int.__or__, (x[3] for x in seen)) != full):
            break  # (an op that changed no output on six inputs likely never does)
    return None


def generate(r, family, tier, splits=None, hide=0.15, failed=None):
    """A program of this family and tier whose composition is in one of `splits` (None: any), or None.
    hide: the chance that the docstring leaves an op's constants to the asserts ('always' / 0: never).
    failed: a Counter of the compositions that found no tests, skipped after 3 (kept by the caller).
    The tests are drawn on one rendering of the composition; every rendering computes the same."""
    failed = Counter() if failed is None else failed
    for _ in range(200):
        ops = draw_ops(r, family, tier)
        if ops is None or (splits is not None and split_of(f"{family}:{'>'.join(ops)}") not in splits) or failed[ops] >= 3:
            continue
        consts = draw_consts(r, family, ops)
        with_k = [i for i, c in enumerate(consts) if any(k is not None for k in c)]
        hidden = -1
        if with_k and (hide == 'always' or (hide and r.random() < hide)):
            hidden = r.choice(with_k)
        elif hide == 'always':
            continue
        tests = draw_tests(r, family, ops, consts)
        if tests is None:
            failed[ops] += 1
            continue
        best, size = None, MAX_BYTES + 1
        for _ in range(2):  # another name, form or wording may fit the target size
            prog = render(Program(family, ops, consts, hidden, r.getrandbits(32), inputs=tests[0], outputs=tests[1]))
            if len(prog.text.encode()) < size:
                best, size = prog, len(prog.text.encode())
            if size <= TARGET_BYTES:
                break
        if best is not None:
            return best
    return None


# -----------------------------------------------------------------------------
# repair: one seeded edit (Seed Diffusion's kinds: substitute, insert, delete) that breaks a test

SWAPS = {'+': '-', '-': '+', '*': '+', '//': '%', '%': '//', '<': '>', '>': '<', '<=': '<', '>=': '>', '==': '!=',
         '!=': '==', '+=': '-=', '-=': '+=', '*=': '+=', '//=': '%=', '%=': '//=', 'and': 'or', 'in': 'not in'}
SIMPLE = re.compile(r'^\s*(\w+(, \w+)* =|\w+ [-+*/%]+=|\w+\.append\()')


def variables(prog):
    """(scalar names, sequence names) assigned or bound in the function: a mutation only ever swaps
    two scalars (appending to the list being iterated, or repeating it, would never end)."""
    tree = ast.parse(prog.function)
    seqs = {a.arg for f in tree.body for a, v in zip(f.args.args, prog.inputs[0]) if isinstance(v, (list, str))}
    names = {a.arg for f in tree.body for a in f.args.args}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        if isinstance(node, ast.For) and isinstance(node.target, ast.Name) and getattr(node.iter, 'func', None) \
                and getattr(node.iter.func, 'id', '') == 'str':  # the digits of a number, as characters
            seqs.add(node.target.id)
        v = getattr(node, 'value', None)
        if isinstance(node, ast.Assign) and (isinstance(v, (ast.List, ast.ListComp)) or isinstance(getattr(v, 'value', 0), str)
                                             or getattr(getattr(v, 'func', None), 'id', '') in ('list', 'filter', 'map', 'sorted')):
            seqs |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    names -= {'_'}
    return sorted(names - seqs), seqs


def edits(prog):
    """Every candidate edit: (kind, unit, line index, new line text or None to delete, extra line to insert)."""
    lines = prog.function.split('\n')
    body = [i for i, l in enumerate(lines) if i >= 2 and l.strip() and not l.lstrip().startswith('def ')]
    scalars, seqs = variables(prog)
    toks = list(tokenize.generate_tokens(io.StringIO(prog.function).readline))
    out = []
    for j, t in enumerate(toks):
        row, (c0, c1) = t.start[0] - 1, (t.start[1], t.end[1])
        if row not in body:
            continue
        line, nxt = lines[row], toks[j + 1].string if j + 1 < len(toks) else ''
        put = lambda s: line[:c0] + s + line[c1:]
        if t.string in SWAPS and t.type in (tokenize.OP, tokenize.NAME):
            out.append(('substitute', 'operator', row, put(SWAPS[t.string])))
        elif t.type == tokenize.NUMBER:
            v = int(t.string)
            out += [('substitute', 'constant', row, put(str(w))) for w in {v + 1, max(0, v - 1), 0, 2} - {v}]
        elif t.type == tokenize.STRING and len(t.string) == 3:
            out.append(('substitute', 'constant', row, put(repr('e' if t.string[1] != 'e' else 'a'))))
        elif t.type == tokenize.NAME and t.string in scalars and nxt not in ('.', '(', '='):
            out += [('substitute', 'name', row, put(w)) for w in scalars if w != t.string]
        elif t.string == 'if' and nxt != 'not':
            out.append(('insert', 'keyword', row, line[:c1] + ' not' + line[c1:]))
    for row in body:
        if SIMPLE.match(lines[row]):
            out.append(('insert', 'line', row, lines[row] + '\n' + lines[row]))
        out.append(('delete', 'line', row, None))
    return out


def mutate(prog, seed, tries=20):
    """A buggy copy of prog's function that fails at least one of its asserts: (text, kind, unit, seed), or
    None. Tries seed, seed + 1, ... so that the record's mutation_seed reproduces it."""
    cands = edits(prog)
    lines = prog.function.split('\n')
    for s in range(seed, seed + tries):
        r = random.Random(s)
        kind = r.choice(('substitute', 'substitute', 'insert', 'delete'))
        pool = [c for c in cands if c[0] == kind] or cands
        kind, unit, row, new = r.choice(pool)
        text = '\n'.join(lines[:row] + ([] if new is None else [new]) + lines[row + 1:])
        try:
            ast.parse(text)
        except SyntaxError:
            continue
        if text != prog.function and not passes(text, prog.name, prog.inputs, prog.outputs, limit=0.5):
            return text, kind, unit, s
    return None


# -----------------------------------------------------------------------------
# infill: one hidden line that the rest of the program decides

def hole_constant(prog):
    """The line holding the op whose constant (and operator) only the asserts reveal, if each other
    constant in its range (and the sibling operator) fails at least one assert: (line index, kind) or None."""
    i = prog.hidden
    if i < 0:
        return None
    rows = [n for n, (_, tags) in enumerate(prog.lines) if i in tags]
    if not rows:
        return None
    ps = table(prog.family, i, prog.ops)
    alts = []
    for j, p in enumerate(ps):
        names = [atoms(prog.ops[i])[j]] + ([p['alt']] if p['alt'] else [])
        values = list(p['k']) if isinstance(p['k'], str) else range(p['k'][0], p['k'][1] + 1) if p['k'] else [None]
        for name in names:
            for v in values:
                if (name, v) != (atoms(prog.ops[i])[j], prog.consts[i][j]):
                    alts.append((j, name, v))
    for j, name, v in alts:
        a = atoms(prog.ops[i])
        a[j] = name
        op = prog.ops[i].split('.', 1)[0] + '.' if '.' in prog.ops[i] else ''
        op += a[0] + ('?' + a[1] if len(a) > 1 else '') + (':' + a[2] if len(a) > 2 else '')
        ks = list(prog.consts[i])
        ks[j] = v
        f = variant(prog.family, prog.ops[:i] + (op,) + prog.ops[i + 1:], prog.consts[:i] + (tuple(ks),) + prog.consts[i + 1:])
        try:
            if [repr(f(*[list(x) if isinstance(x, list) else x for x in a])) for a in prog.inputs] == list(map(repr, prog.outputs)):
                return None
        except Exception:  # noqa: BLE001 (another constant may break the function: it is told apart)
            pass
    return rows[0], 'operator' if any(p['alt'] for p in ps) else 'constant'


def hole_name(prog, r):
    """A line `name = ...` whose name is used only below it (the suffix decides it): (line index, 'name') or None."""
    texts = [l for l, _ in prog.lines]
    found = []
    for n, line in enumerate(texts):
        m = re.match(r'\s*(\w+) = ', line)
        if not m:
            continue
        word = re.compile(rf'\b{m.group(1)}\b')
        if not any(word.search(t) for t in [prog.prompt.split('\n')[0]] + texts[:n]) and any(word.search(t) for t in texts[n + 1:]):
            found.append((n, not re.fullmatch(r"\s*\w+ = (\d+|''|\[\])", line)))
    if not found:
        return None
    best = [n for n, rich in found if rich] or [n for n, _ in found]
    return r.choice(best), 'name'


def infill(prog, n):
    """prefix + canonical + suffix == prog.text; the hole is line n of the body."""
    texts = [l + '\n' for l, _ in prog.lines]
    return prog.prompt + ''.join(texts[:n]), texts[n], ''.join(texts[n + 1:]) + '\n' + prog.tests
