"""
A pyworld program and its text: Program holds the spec (family, ops, constants, hidden constant, cosmetic
seed) and render() writes the function with its docstring in one of its surface forms (loop,
comprehension, map / filter), per family.
"""
import functools
import random
from dataclasses import dataclass, field

from data.pyworld.primitives import (CHARS, CONDS, ELEMS, FIB, HELPERS, HIDE, IND, INT_ARGS, LIST_ARGS,
                                     LIST_FILTERS, LIST_FINALS, LIST_MAPS, PATTERNS, SOURCES, STR_ARGS,
                                     STR_FILTERS, STR_FINALS, STR_MAPS, TESTS, TMPS, TRANSFORMS, UPDATES, apply,
                                     atoms, func_name, ktext, op_steps, phrase, pick, primitives, role, style_of,
                                     table)


# -----------------------------------------------------------------------------
# a program: its spec (family, ops, consts, hidden, rs), its text (render) and its tests

@dataclass
class Program:
    family: str
    ops: tuple
    consts: tuple          # per op, one constant per atom (None where the atom takes none)
    hidden: int = -1       # the op whose constants the docstring leaves to the asserts (-1: none)
    rs: int = 0            # the seed of every cosmetic choice
    name: str = ''
    prompt: str = ''       # 'def name(args):\n    """docstring"""\n'
    lines: list = field(default_factory=list)  # [(line, {ops it implements})]: the rest of the function(s)
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)

    @property
    def key(self):
        return f"{self.family}:{'>'.join(self.ops)}"

    @functools.cached_property
    def tier(self):
        return sum(op_steps(o) for o in self.ops)

    @property
    def body(self):
        return ''.join(l + '\n' for l, _ in self.lines)

    @property
    def function(self):
        return self.prompt + self.body

    @property
    def tests(self):
        return ''.join(f'assert {self.name}({", ".join(map(repr, a))}) == {o!r}\n' for a, o in zip(self.inputs, self.outputs))

    @property
    def text(self):
        return self.function + '\n' + self.tests

    def primitives(self):
        return primitives(self.key)


def render(prog):
    """Fill prog.name, prog.prompt and prog.lines from the spec."""
    r = random.Random(prog.rs)
    name, params, doc, lines = RENDER[prog.family](prog, r)
    prog.name = name
    prog.lines = [(l if not l or l.startswith('def ') else IND + l, tags) for l, tags in lines]  # helpers stay at the top
    prog.prompt = f'def {name}({", ".join(params)}):\n{IND}"""{doc}"""\n'
    return prog


class Lines(list):
    def add(self, text, tags=(), depth=0):
        for part in text.split('\n'):
            self.append((IND * depth + part, set(tags)))


# --- list and string: filters and maps on the items, then a final

def render_pipeline(prog, r):
    strings = prog.family == 'string'
    F, M, R = (STR_FILTERS, STR_MAPS, STR_FINALS) if strings else (LIST_FILTERS, LIST_MAPS, LIST_FINALS)
    *stages, final = prog.ops
    fin, fi, k = R[final], len(stages), lambda i: prog.consts[i][0]
    post = lambda e: fin['post'].format(e, k=ktext(k(fi)))
    used = set()
    arg = pick(r, STR_ARGS if strings else LIST_ARGS, used)
    v = pick(r, CHARS if strings else ELEMS, used)
    form = r.choice(('comp', 'comp', 'loop', 'builtin'))
    cond = lambda idx, var: ' and '.join(F[stages[i]]['code'].format(a=var, k=ktext(k(i))) for i in idx)

    def expr(idx, var):
        e = (var, 10)
        for i in idx:
            e = apply(M[stages[i]], e, k(i))
        return e[0]
    runs = []  # consecutive filters or maps
    for i, op in enumerate(stages):
        kind = 'f' if op in F else 'm'
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(i)
        else:
            runs.append((kind, [i]))
    out = Lines()
    if form == 'loop':
        if fin.get('loop'):
            acc = pick(r, fin['acc'], used)
            init, upd, ret = (t.format(r=acc, a='{a}') for t in fin['loop'])
        elif final == 'rev' and r.random() < 0.5:  # prepend instead of reversing at the end
            acc = pick(r, ('out', 'res'), used)
            init, upd, ret = f"{acc} = ''", f'{acc} = {{a}} + {acc}', acc
        else:
            acc = pick(r, ('out', 'res'), used)
            init = f"{acc} = ''" if strings else f'{acc} = []'
            upd = f'{acc} += {{a}}' if strings else f'{acc}.append({{a}})'
            ret = post(acc)
        out.add(init, {fi})
        out.add(f'for {v} in {arg}:')
        depth, cur = 1, v
        for kind, idx in runs:
            if kind == 'f':
                out.add(f'if {cond(idx, cur)}:', idx, depth)
                depth += 1
            elif r.random() < 0.5:  # the maps as one expression, into the same or a new name
                new = cur if r.random() < 0.5 else pick(r, CHARS if strings else ELEMS, used)
                out.add(f'{new} = {expr(idx, cur)}', idx, depth)
                cur = new
            else:
                for i in idx:
                    out.add(f'{cur} = {expr([i], cur)}', [i], depth)
        out.add(upd.format(a=cur), {fi}, depth)
        out.add(f'return {ret}', {fi})
    else:
        chunks = []  # (filters, maps): one comprehension or one filter/map nest each
        for kind, idx in runs:
            if kind == 'f' or not chunks or chunks[-1][1]:
                chunks.append(([], []))
            chunks[-1][kind == 'm'].extend(idx)
        e, kind, tags, tmp = arg, 'str' if strings else 'list', set(), None
        for n, (fs, ms) in enumerate(chunks):
            if form == 'comp':
                gen = f'{expr(ms, v)} for {v} in {e}' + (f' if {cond(fs, v)}' if fs else '')
                e, kind = (gen, 'gen') if n == len(chunks) - 1 and fin['on'] == 'iter' and fin['post'] else (f'[{gen}]', 'list')
            else:
                if fs:
                    c = F[stages[fs[0]]]['code']
                    fn = f'str.{c[4:-2]}' if len(fs) == 1 and c.startswith('{a}.is') else f'lambda {v}: {cond(fs, v)}'
                    e = f'filter({fn}, {e})'
                if ms:
                    c = M[stages[ms[0]]]['code']
                    simple = len(ms) == 1 and c in ('{a}.upper()', '{a}.lower()', '{a}.swapcase()', 'abs({a})')
                    fn = ('abs' if c == 'abs({a})' else 'str.' + c[4:-2]) if simple else f'lambda {v}: {expr(ms, v)}'
                    e = f'map({fn}, {e})'
                kind = 'iter'
            tags |= set(fs + ms)
            if n < len(chunks) - 1 or final == 'prod' or r.random() < 0.3:  # a named intermediate
                tmp = pick(r, TMPS, used) if tmp is None or r.random() < 0.5 else tmp
                e = f'[{e}]' if kind == 'gen' else e
                out.add(f'{tmp} = {e}', tags)
                e, kind, tags = tmp, 'list' if kind == 'gen' else kind, set()
        if final == 'prod':
            acc, y = pick(r, fin['acc'], used), pick(r, ELEMS, used)
            out.add(f'{acc} = 1\nfor {y} in {e}:\n{IND}{acc} *= {y}', {fi})
            out.add(f'return {acc}', {fi})
        else:
            if fin['on'] == 'list' and kind != 'list' and not (strings and kind == 'str'):
                e = f'[{e}]' if kind == 'gen' else f'list({e})'
            elif fin['on'] == 'str' and kind != 'str':
                e = f"''.join({e})"
            out.add(f'return {post(e)}', tags | {fi})
    tags = [{**F, **M, **R}[o]['tag'] for o in prog.ops][::-1]
    return func_name(prog, tags), [arg], pipeline_doc(prog, r, arg, F, M, R), out


def pipeline_doc(prog, r, arg, F, M, R):
    *stages, final = prog.ops
    strings = prog.family == 'string'
    style = style_of(prog.tier, r)
    kk = lambda i: HIDE if i == prog.hidden else ktext(prog.consts[i][0])
    in_order = all(o in F for o in stages[:len([s for s in stages if s in F])])  # filters, then maps
    hides_op = prog.hidden >= 0 and {**F, **M, **R}[prog.ops[prog.hidden]]['hide']  # only 'say' and 'terse' hide it
    if style == 'what' and in_order and not hides_op and (strings or sum(o in M for o in stages) <= 1):
        adj = [(F[o]['what'].format(k=kk(i))) for i, o in enumerate(stages) if o in F]
        if strings:
            np_ = f'the characters of {arg}' + (f' that are {" and ".join(adj)}' if adj else '')
            np_ += ''.join(', ' + M[o]['what'].format(k=kk(i)) for i, o in enumerate(stages) if o in M)
        else:
            pre = [a for a in adj if ' ' not in a]
            rel = [a for a in adj if ' ' in a]
            np_ = f"the {' '.join(pre + ['numbers'])} in {arg}" + (f' that are {" and ".join(rel)}' if rel else '')
            np_ = ''.join(M[o]['what'].format(np_, k=kk(i)) for i, o in enumerate(stages) if o in M) or np_
        return 'Return ' + R[final]['what'].format(np_, k=kk(len(stages))) + '.'
    tab = {**F, **M, **R}
    if style in ('what', 'terse'):
        return f'{arg}: ' + ', '.join(phrase(tab[o], r, prog.consts[i][0], i == prog.hidden, True, 'terse')
                                       for i, o in enumerate(prog.ops) if o != 'join') + '.'
    parts = [phrase(tab[o], r, prog.consts[i][0], i == prog.hidden, style == 'literal') for i, o in enumerate(prog.ops)]
    return f'Take {arg} and {parts[0]}.' if len(parts) == 1 else f'Take {arg}, ' + ', '.join(parts[:-1]) + f', {parts[-1]}.'


# --- integer ops ('mulk', 'even?half', 'even?half:tri') on a name: arith, the loop recurrences, the helpers

def op_lines(prog, r, i, var, depth):
    """Op i applied to var as statements."""
    ks, a = prog.consts[i], atoms(prog.ops[i])

    def stmt(t, k):
        p = TRANSFORMS[t]
        aug = p.get('aug') and r.random() < 0.5
        return f'{var} {p["aug"].format(k=ktext(k))}' if aug else f'{var} = {apply(p, (var, 10), k)[0]}'
    if len(a) == 1:
        return [(IND * depth + stmt(a[0], ks[0]), {i})]
    out = [(IND * depth + f'if {CONDS[a[0]]["code"].format(a=var, k=ktext(ks[0]))}:', {i}),
           (IND * (depth + 1) + stmt(a[1], ks[1]), {i})]
    if len(a) == 3:
        out += [(IND * depth + 'else:', {i}), (IND * (depth + 1) + stmt(a[2], ks[2]), {i})]
    return out


def op_expr(prog, i, var):
    ks, a = prog.consts[i], atoms(prog.ops[i])
    if len(a) == 1:
        return apply(TRANSFORMS[a[0]], (var, 10), ks[0])[0]
    other = apply(TRANSFORMS[a[2]], (var, 10), ks[2])[0] if len(a) == 3 else var
    return f'{apply(TRANSFORMS[a[1]], (var, 10), ks[1])[0]} if {CONDS[a[0]]["code"].format(a=var, k=ktext(ks[0]))} else {other}'


def int_body(prog, r, var, idx, depth=0):
    """The ops idx applied to var in turn, as statements or conditional expressions; the last one returned."""
    out, exprs = [], r.random() < 0.5
    for j, i in enumerate(idx):
        single = len(atoms(prog.ops[i])) == 1
        if j == len(idx) - 1 and (single or exprs):
            return out + [(IND * depth + f'return {op_expr(prog, i, var)}', {i})]
        if exprs and not single:
            out.append((IND * depth + f'{var} = {op_expr(prog, i, var)}', {i}))
        else:
            out += op_lines(prog, r, i, var, depth)
    return out + [(IND * depth + f'return {var}', set())]


def op_say(prog, r, i, style):
    ps, ks, hid = table(prog.family, i, prog.ops), prog.consts[i], i == prog.hidden
    kind = 'terse' if style in ('terse', 'what') else 'say'
    t = [phrase(p, r, k, hid, style == 'literal', kind) for p, k in zip(ps, ks)]
    if len(t) == 1:
        return t[0]
    if kind == 'terse':
        return f'{t[1]} if {t[0]}' + (f', else {t[2]}' if len(t) > 2 else '')
    return f'if {t[0]}, {t[1]}' + (f', otherwise {t[2]}' if len(t) > 2 else '')


def int_tag(op):
    a = atoms(op)
    return TRANSFORMS[a[0]]['tag'] if len(a) == 1 else '_'.join(
        [TRANSFORMS[a[1]]['tag'], 'if', CONDS[a[0]]['tag']] + (['else', TRANSFORMS[a[2]]['tag']] if len(a) > 2 else []))


def render_arith(prog, r):
    var = pick(r, INT_ARGS, set())
    style = style_of(prog.tier, r)
    idx = range(len(prog.ops))
    if prog.tier == 1:
        p = TRANSFORMS[prog.ops[0]]
        doc = (f'Take {var}; {p["hide"]}. Return the result.' if prog.hidden == 0 and p['hide'] else
               'Return ' + p['what'].format(var, k=HIDE if prog.hidden == 0 else ktext(prog.consts[0][0])) + '.')
    elif style in ('terse', 'what'):
        doc = f'{var}: ' + '; '.join(op_say(prog, r, i, style) for i in idx) + '.'
    else:
        doc = f'Take {var}; ' + '; '.join(op_say(prog, r, i, style) for i in idx) + '. Return the result.'
    return func_name(prog, [int_tag(o) for o in prog.ops]), [var], doc, int_body(prog, r, var, idx)


# --- loop: an accumulator over a list or the digits of a number, or a recurrence repeated n times

def render_loop(prog, r):
    src, used = prog.ops[0], set()
    style = style_of(prog.tier, r)
    kind = 'terse' if style in ('terse', 'what') else 'say'
    out = Lines()
    if src == 'times':
        var, m = pick(r, ('a', 'x'), used), pick(r, ('n', 'k'), used)
        if 'fib' in prog.ops:
            out.add('b = 1', {prog.ops.index('fib')})
        out.add(f'for _ in range({m}):', {0})
        for i, o in enumerate(prog.ops[1:], 1):
            if o == 'fib':
                out.add(f'{var}, b = b, {var} + b', {i}, 1)
            else:
                out += op_lines(prog, r, i, var, 1)
        out.add(f'return {var}')
        steps = [phrase(FIB, r, None, False, True, kind, arg=var) if o == 'fib' else op_say(prog, r, i, style)
                 for i, o in enumerate(prog.ops[1:], 1)]
        doc = phrase(SOURCES[src], r, None, False, True, kind, arg=var, m=m) + '; '.join(steps) + '.'
        tags = ['repeat'] + ['fib' if o == 'fib' else int_tag(o) for o in prog.ops[1:]]
        return func_name(prog, tags), [var, m], doc[:-1] + ('.' if kind == 'terse' else f'; return {var}.'), out
    arg = pick(r, LIST_ARGS if src == 'over' else ('n', 'num'), used)
    acc, x = pick(r, ('total', 'acc'), used), pick(r, ELEMS, used)
    prev = pick(r, ('prev', 'last'), used) if any(UPDATES[o].get('prev') for o in prog.ops[1:]) else None
    out.add(f'{acc} = {prog.consts[0][0]}', {0})
    if prev:
        out.add(f'{prev} = {arg}[0]')
    if src == 'over':
        out.add(f'for {x} in {arg}:', {0})
    elif r.random() < 0.5:
        out.add(f'for {x} in map(int, str({arg})):', {0})
    else:
        d = pick(r, ('d', 'ch'), used)
        out.add(f'for {d} in str({arg}):\n{IND}{x} = int({d})', {0})
    for i, o in enumerate(prog.ops[1:], 1):
        out.add(r.choice(UPDATES[o]['forms']).format(r=acc, x=x, p=prev, k=ktext(prog.consts[i][0])), {i}, 1)
    if prev:
        out.add(f'{prev} = {x}', (), 1)
    out.add(f'return {acc}')
    head = phrase(SOURCES[src], r, prog.consts[0][0], prog.hidden == 0, True, kind, x=x, arg=arg)
    steps = [phrase(UPDATES[o], r, prog.consts[i][0], prog.hidden == i, style == 'literal', kind, x=x)
             for i, o in enumerate(prog.ops[1:], 1)]
    doc = head + '; '.join(steps) + ('.' if kind == 'terse' else '; return the total.')
    return func_name(prog, [src] + [UPDATES[o]['tag'] for o in prog.ops[1:]]), [arg], doc, out


# --- calls: the main function uses helpers defined below it, h / h2 (int -> int) and g (a test)

def render_calls(prog, r):
    pat = prog.ops[0]
    used = set()
    arg = pick(r, INT_ARGS if PATTERNS[pat].get('int') else LIST_ARGS, used)
    x = pick(r, ELEMS, used)
    h, h2, g = pick(r, HELPERS, used), pick(r, HELPERS, used), pick(r, TESTS, used)
    style = style_of(prog.tier, r)
    form = r.choice(('comp', 'comp', 'builtin', 'loop'))
    loop = {'sum': f'total = 0\nfor {x} in {arg}:\n{IND}total += {h}({x})\nreturn total',
            'map': f'out = []\nfor {x} in {arg}:\n{IND}out.append({h}({x}))\nreturn out',
            'count': f'count = 0\nfor {x} in {arg}:\n{IND}if {g}({x}):\n{IND * 2}count += 1\nreturn count',
            'filter': f'out = []\nfor {x} in {arg}:\n{IND}if {g}({x}):\n{IND * 2}out.append({x})\nreturn out',
            'filtsum': f'total = 0\nfor {x} in {arg}:\n{IND}if {g}({x}):\n{IND * 2}total += {h}({x})\nreturn total',
            'twice': f'{arg} = {h}({arg})\nreturn {h}({arg})', 'then': f'{x} = {h}({arg})\nreturn {h2}({x})'}
    comp = {'sum': f'return sum({h}({x}) for {x} in {arg})', 'map': f'return [{h}({x}) for {x} in {arg}]',
            'count': f'return sum(1 for {x} in {arg} if {g}({x}))', 'filter': f'return [{x} for {x} in {arg} if {g}({x})]',
            'filtsum': f'return sum({h}({x}) for {x} in {arg} if {g}({x}))',
            'twice': f'return {h}({h}({arg}))', 'then': f'return {h2}({h}({arg}))'}
    builtin = {'sum': f'return sum(map({h}, {arg}))', 'map': f'return list(map({h}, {arg}))',
               'count': f'return len(list(filter({g}, {arg})))', 'filter': f'return list(filter({g}, {arg}))',
               'filtsum': f'return sum(map({h}, filter({g}, {arg})))'}
    out = Lines()
    out.add(dict(comp=comp, builtin=builtin, loop=loop)[form].get(pat, comp[pat]), {0})
    parts = []
    for fn, rl in ((h, 'h'), (h2, 'h2'), (g, 'g')):
        idx = [i for i, o in enumerate(prog.ops) if role(o) == rl]
        if not idx:
            continue
        y = r.choice([n for n in ('x', 'v', 'n', 'k') if n != fn])
        out.add(f'\ndef {fn}({y}):')
        if rl != 'g':
            out += int_body(prog, r, y, idx)
            steps = '; '.join(op_say(prog, r, i, style) for i in idx)
            parts.append(f'{fn}({y}): {steps}')
            continue
        conds = ' and '.join(CONDS[atoms(prog.ops[i])[0]]['code'].format(a=y, k=ktext(prog.consts[i][0])) for i in idx)
        if len(idx) > 1 or r.random() < 0.5:
            out.add(f'return {conds}', idx)
        else:
            out.add(f'if {conds}:\n{IND}return True\nreturn False', idx)
        adj = [phrase(CONDS[atoms(prog.ops[i])[0]], r, prog.consts[i][0], i == prog.hidden, True, 'adj') for i in idx]
        parts.append(f'{g}({y}): {y} is ' + ' and '.join(adj))
    doc = PATTERNS[pat]['say'].format(h=h, h2=h2, g=g, x=x, arg=arg) + '. ' + '. '.join(parts) + '.'
    tags = [PATTERNS[pat]['tag']] + [('if_' if role(o) == 'g' else 'then_' if role(o) == 'h2' else '') +
                    (CONDS[atoms(o)[0]]['tag'] if role(o) == 'g' else int_tag(o.split('.', 1)[1])) for o in prog.ops[1:]]
    return func_name(prog, tags), [arg], doc, out


RENDER = dict(list=render_pipeline, string=render_pipeline, arith=render_arith, loop=render_loop, calls=render_calls)
