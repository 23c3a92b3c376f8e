"""
The generator of pyworld (prepare.py describes the world): small Python functions, each a composition
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
import hashlib
import functools
import io
import itertools
import keyword
import random
import re
import signal
import threading
import tokenize
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

from data.common import hash_unit

VERSION = 1
FAMILIES = ('list', 'string', 'arith', 'loop', 'calls')
VAL_FRAC, TEST_FRAC = 0.1, 0.1  # of the compositions, by hash of the key: [0, .1) val, [.1, .2) test
TARGET_BYTES, MAX_BYTES = 256, 400
HIDE = 'some fixed number'      # how a docstring names a constant that only the asserts reveal
IND = '    '


def split_of(key):
    u = hash_unit(key)
    return 'val' if u < VAL_FRAC else 'test' if u < VAL_FRAC + TEST_FRAC else 'train'


def P(code='', k=None, say=(), what='', terse='', tag='', prec=10, need=0, hide='', alt='', **kw):
    """A primitive: its code ({a} the operand, {k} the constant), the range of its constant ((lo, hi),
    or a string of letters), imperative phrasings (say[0] the literal one), a noun phrase (what), a
    terse phrase, a name part (tag), the precedence of its result and the one its operand needs, and
    a phrasing that hides its constant and operator (hide) with the sibling it is told apart from (alt)."""
    return dict(code=code, k=k, say=say, what=what, terse=terse, tag=tag, prec=prec, need=need, hide=hide, alt=alt, **kw)


# -----------------------------------------------------------------------------
# primitives. Filters and conditions test a name; maps and transforms compose into expressions.

LIST_FILTERS = {
    'even': P('{a} % 2 == 0', say=('keep the even numbers', 'drop the odd numbers'), what='even', terse='evens only', tag='evens'),
    'odd': P('{a} % 2 == 1', say=('keep the odd numbers', 'drop the even numbers'), what='odd', terse='odds only', tag='odds'),
    'pos': P('{a} > 0', say=('keep the positive numbers', 'drop those that are zero or negative'), what='positive', terse='positives only', tag='pos'),
    'neg': P('{a} < 0', say=('keep the negative numbers', 'drop those that are zero or positive'), what='negative', terse='negatives only', tag='neg'),
    'gt': P('{a} > {k}', k=(0, 5), say=('keep the numbers greater than {k}', 'keep those above {k}'), what='greater than {k}', terse='those above {k}', tag='large'),
    'lt': P('{a} < {k}', k=(1, 5), say=('keep the numbers less than {k}', 'keep those below {k}'), what='less than {k}', terse='those below {k}', tag='small'),
    'mul': P('{a} % {k} == 0', k=(3, 4), say=('keep the multiples of {k}', 'keep those divisible by {k}'), what='divisible by {k}', terse='multiples of {k}', tag='mults'),
    'nmul': P('{a} % {k} != 0', k=(3, 4), say=('drop the multiples of {k}', 'keep those not divisible by {k}'), what='not divisible by {k}', terse='no multiples of {k}', tag='nonmults'),
}
LIST_MAPS = {
    'sq': P('{a} * {a}', prec=7, need=8, say=('square each', 'multiply each by itself'), what='the squares of {}', terse='squared', tag='squares'),
    'mulk': P('{a} * {k}', k=(2, 4), prec=7, need=7, say=('multiply each by {k}', 'scale each by {k}'), what='{}, each multiplied by {k}', terse='times {k}', tag='scaled'),
    'addk': P('{a} + {k}', k=(1, 5), prec=6, need=6, say=('add {k} to each', 'increase each by {k}'), what='{}, each increased by {k}', terse='plus {k}', tag='shifted', hide='shift each by ' + HIDE, alt='subk'),
    'subk': P('{a} - {k}', k=(1, 5), prec=6, need=6, say=('subtract {k} from each', 'decrease each by {k}'), what='{}, each decreased by {k}', terse='minus {k}', tag='lowered', hide='shift each by ' + HIDE, alt='addk'),
    'negate': P('-{a}', prec=8, need=8, say=('negate each', 'flip the sign of each'), what='the negatives of {}', terse='negated', tag='negated'),
    'absv': P('abs({a})', say=('take the absolute value of each', 'drop the sign of each'), what='the absolute values of {}', terse='absolute', tag='abs'),
    'modk': P('{a} % {k}', k=(2, 5), prec=7, need=7, say=('take each modulo {k}', 'replace each by its remainder modulo {k}'), what='the remainders modulo {k} of {}', terse='mod {k}', tag='mods'),
    'half': P('{a} // 2', prec=7, need=7, say=('halve each, rounding down', 'floor-divide each by 2'), what='the halves (rounded down) of {}', terse='halved', tag='halves'),
}
# finals: post applies to `on`: 'iter' (any iterable), 'list' (a list), 'str' (the joined string);
# loop = (init, update, result) of a dedicated accumulator, else the loop collects the items
LIST_FINALS = {
    'sum': P(post='sum({})', on='iter', loop=('{r} = 0', '{r} += {a}', '{r}'), acc=('total', 's'), say=('return their sum', 'add them up'), what='the sum of {}', terse='summed', tag='sum'),
    'count': P(post='len({})', on='list', loop=('{r} = 0', '{r} += 1', '{r}'), acc=('count', 'c'), say=('return how many there are', 'count them'), what='the number of {}', terse='counted', tag='count'),
    'max': P(post='max({})', on='iter', say=('return the largest', 'return the maximum'), what='the largest of {}', terse='max', tag='max'),
    'min': P(post='min({})', on='iter', say=('return the smallest', 'return the minimum'), what='the smallest of {}', terse='min', tag='min'),
    'prod': P(post='', on='list', loop=('{r} = 1', '{r} *= {a}', '{r}'), acc=('prod', 'p'), say=('return their product', 'multiply them together'), what='the product of {}', terse='multiplied together', tag='prod'),
    'sorted': P(post='sorted({})', on='iter', say=('return them in ascending order', 'sort them'), what='{} in ascending order', terse='sorted', tag='sorted'),
    'list': P(post='{}', on='list', steps=0, say=('return the resulting list', 'return what is left'), what='the list of {}', terse='as a list', tag='list'),
}
STR_FILTERS = {
    'vowel': P("{a} in 'aeiou'", say=('keep the vowels', 'keep only the vowels'), what='vowels', terse='vowels only', tag='vowels'),
    'cons': P("{a} not in 'aeiou'", say=('drop the vowels', 'remove every vowel'), what='not vowels', terse='no vowels', tag='consonants'),
    'alpha': P('{a}.isalpha()', say=('keep the letters', 'drop everything that is not a letter'), what='letters', terse='letters only', tag='letters'),
    'digit': P('{a}.isdigit()', say=('keep the digits', 'drop everything that is not a digit'), what='digits', terse='digits only', tag='digits'),
    'upper': P('{a}.isupper()', say=('keep the uppercase letters', 'keep only the capitals'), what='uppercase', terse='capitals only', tag='capitals'),
    'nosp': P("{a} != ' '", say=('drop the spaces', 'remove every space'), what='not spaces', terse='no spaces', tag='nospace'),
    'notch': P('{a} != {k}', k='aeost', say=('remove every {k}', 'drop each {k}'), what='not {k}', terse='without {k}', tag='without', hide='remove every copy of some fixed letter'),
}
STR_MAPS = {
    'up': P('{a}.upper()', need=10, say=('uppercase each character', 'convert it to upper case'), what='uppercased', terse='uppercased', tag='upper'),
    'low': P('{a}.lower()', need=10, say=('lowercase each character', 'convert it to lower case'), what='lowercased', terse='lowercased', tag='lower'),
    'swap': P('{a}.swapcase()', need=10, say=('swap the case of each character', 'invert the case of each letter'), what='with their case swapped', terse='case swapped', tag='swapped'),
    'star': P("'*' if {a} == {k} else {a}", k='aeost', prec=0, need=5, say=('replace every {k} with a star', "turn each {k} into '*'"), what='with every {k} replaced by a star', terse='{k} starred', tag='starred', hide='replace every copy of some fixed letter with a star'),
    'next': P('chr(ord({a}) + 1)', say=('replace each character by the next one in Unicode order', 'shift each character up by one code point'), what='each shifted up by one code point', terse='shifted by one', tag='nextchar'),
}
STR_FINALS = {
    'join': P(post='{}', on='str', steps=0, say=('return the resulting string', 'return what is left as a string'), what='the string of {}', terse='joined', tag='string'),
    'rev': P(post='{}[::-1]', on='str', say=('return the result reversed', 'reverse the result'), what='the reverse of the string of {}', terse='reversed', tag='reversed'),
    'count': P(post='len({})', on='list', loop=('{r} = 0', '{r} += 1', '{r}'), acc=('count', 'n'), say=('return how many characters remain', 'count what is left'), what='the number of {}', terse='counted', tag='count'),
    'dash': P(post="'-'.join({})", on='iter', say=('join the characters with dashes', "return them joined by '-'"), what='{} joined by dashes', terse='dash-joined', tag='dashed'),
    'sort': P(post="''.join(sorted({}))", on='iter', say=('return the characters in sorted order', 'sort the characters'), what='the sorted string of {}', terse='sorted', tag='ordered'),
    'take': P(post='{}[:{k}]', on='str', k=(1, 3), say=('keep only the first {k} characters', 'return the first {k} characters'), what='the first {k} of {}', terse='first {k}', tag='prefix', hide='keep only a fixed number of the first characters'),
}
# integer transforms and conditions (arith, the loop family's recurrences and the helpers of calls)
TRANSFORMS = {
    'mulk': P('{a} * {k}', k=(2, 4), prec=7, need=7, aug='*= {k}', say=('multiply it by {k}', 'scale it by {k}'), what='{} times {k}', terse='times {k}', tag='times'),
    'addk': P('{a} + {k}', k=(1, 5), prec=6, need=6, aug='+= {k}', say=('add {k}', 'increase it by {k}'), what='{} plus {k}', terse='plus {k}', tag='plus', hide='shift it by ' + HIDE, alt='subk'),
    'subk': P('{a} - {k}', k=(1, 5), prec=6, need=6, aug='-= {k}', say=('subtract {k}', 'decrease it by {k}'), what='{} minus {k}', terse='minus {k}', tag='minus', hide='shift it by ' + HIDE, alt='addk'),
    'sq': P('{a} * {a}', prec=7, need=8, say=('square it', 'multiply it by itself'), what='the square of {}', terse='squared', tag='squared'),
    'neg': P('-{a}', prec=8, need=8, say=('negate it', 'flip its sign'), what='the negation of {}', terse='negated', tag='negated'),
    'half': P('{a} // 2', prec=7, need=7, aug='//= 2', say=('halve it, rounding down', 'floor-divide it by 2'), what='half of {}, rounded down', terse='halved', tag='halved'),
    'modk': P('{a} % {k}', k=(2, 5), prec=7, need=7, aug='%= {k}', say=('take it modulo {k}', 'replace it by its remainder modulo {k}'), what='{} modulo {k}', terse='mod {k}', tag='mod'),
    'abs': P('abs({a})', say=('take its absolute value', 'drop its sign'), what='the absolute value of {}', terse='absolute', tag='abs'),
    'tri': P('3 * {a} + 1', prec=6, need=8, say=('triple it and add 1', 'replace it by three times it plus one'), what='three times {} plus one', terse='tripled plus 1', tag='tri'),
}
CONDS = {
    'even': P('{a} % 2 == 0', say=('it is even',), terse='even', adj='even', tag='even'),
    'odd': P('{a} % 2 == 1', say=('it is odd',), terse='odd', adj='odd', tag='odd'),
    'div': P('{a} % {k} == 0', k=(3, 5), say=('it is divisible by {k}', 'it is a multiple of {k}'), terse='divisible by {k}', adj='divisible by {k}', tag='div'),
    'gt': P('{a} > {k}', k=(0, 10), say=('it is greater than {k}', 'it exceeds {k}'), terse='above {k}', adj='greater than {k}', tag='big'),
    'lt': P('{a} < {k}', k=(0, 10), say=('it is less than {k}', 'it is below {k}'), terse='below {k}', adj='less than {k}', tag='small'),
    'neg': P('{a} < 0', say=('it is negative', 'it is below zero'), terse='negative', adj='negative', tag='neg'),
}
# the loop family: updates of an accumulator {r} by the element {x}; prev: needs the previous element
UPDATES = {
    'add': P(forms=('{r} += {x}', '{r} = {r} + {x}'), say=('add {x}',), terse='add it', tag='add'),
    'addsq': P(forms=('{r} += {x} * {x}', '{r} = {r} + {x} ** 2'), say=('add the square of {x}', 'add {x} squared'), terse='add its square', tag='addsq'),
    'sub': P(forms=('{r} -= {x}', '{r} = {r} - {x}'), say=('subtract {x}',), terse='subtract it', tag='sub'),
    'horner': P(forms=('{r} = {r} * {k} + {x}',), k=(2, 5), say=('multiply the total by {k} and add {x}',), terse='times {k} plus it', tag='horner'),
    'max': P(forms=('{r} = max({r}, {x})', 'if {x} > {r}:\n    {r} = {x}'), say=('replace the total by {x} if {x} is larger', 'keep the larger of the total and {x}'), terse='keep the max', tag='max'),
    'min': P(forms=('{r} = min({r}, {x})', 'if {x} < {r}:\n    {r} = {x}'), say=('replace the total by {x} if {x} is smaller', 'keep the smaller of the total and {x}'), terse='keep the min', tag='min'),
    'alt': P(forms=('{r} = {x} - {r}',), say=('replace the total by {x} minus the total',), terse='it minus the total', tag='alt'),
    'cntgt': P(forms=('if {x} > {k}:\n    {r} += 1',), k=(0, 5), say=('add 1 if {x} is greater than {k}',), terse='count it if above {k}', tag='cnt'),
    'dbl': P(forms=('{r} *= 2', '{r} = 2 * {r}'), say=('double the total',), terse='double', tag='dbl'),
    'modk': P(forms=('{r} %= {k}', '{r} = {r} % {k}'), k=(5, 10), say=('take the total modulo {k}',), terse='mod {k}', tag='mod'),
    'rise': P(forms=('if {x} > {p}:\n    {r} += 1',), prev=True, say=('add 1 if {x} is greater than the number before it',), terse='count a rise', tag='rise'),
    'jump': P(forms=('{r} += abs({x} - {p})',), prev=True, say=('add the distance between {x} and the number before it',), terse='add the jump', tag='jump'),
}
SOURCES = {  # the loop family's first op: what it iterates over, from which start value
    'over': P(k=(0, 3), say=('Start at {k}; for each {x} in {arg}: ',), terse='total {k}; for {x} in {arg}: ', tag='over'),
    'digits': P(k=(0, 3), say=('Start at {k}; for each digit {x} of {arg}: ',), terse='total {k}; per digit {x} of {arg}: ', tag='digits'),
    'times': P(say=('Repeat {m} times on {arg}: ',), terse='{arg}, {m} times: ', tag='repeat'),
}
FIB = P(say=('replace ({arg}, b) by (b, {arg} + b), b starting at 1',), terse='fibonacci step', tag='fib')
TIMES_OPS = [t for t in TRANSFORMS if t != 'sq']  # repeated squaring outgrows any assert
PATTERNS = {  # the calls family: how the main function uses its helpers h, h2 (int -> int) and g (a test)
    'sum': P(roles='h', say='Return the sum of {h}({x}) for {x} in {arg}', tag='sum_via'),
    'map': P(roles='h', say='Return the list of {h}({x}) for {x} in {arg}', tag='map'),
    'count': P(roles='g', say='Return how many {x} in {arg} satisfy {g}({x})', tag='count'),
    'filter': P(roles='g', say='Return the list of the {x} in {arg} with {g}({x}) true', tag='filter'),
    'filtsum': P(roles='hg', say='Return the sum of {h}({x}) for the {x} in {arg} with {g}({x}) true', tag='filtsum'),
    'twice': P(roles='h', int=True, say='Return {h}({h}({arg}))', tag='twice'),
    'then': P(roles='hH', int=True, say='Return {h2}({h}({arg}))', tag='then'),
}

# names: each program draws its own, distinct ones
LIST_ARGS = ('xs', 'nums', 'values')
ELEMS = ('x', 'n', 'v', 'y')
TMPS = ('ys', 'kept', 'tmp')
STR_ARGS = ('s', 'text', 'word')
CHARS = ('c', 'ch', 'x')
INT_ARGS = ('n', 'x', 'k')
HELPERS = ('step', 'h', 'adjust')
TESTS = ('ok', 'keep', 'good')
VERBS = dict(list='agg', string='fmt', arith='calc', loop='fold', calls='run')
CHAR_POOL = 'abcdefghijklmnopqrstuvwxyz' * 2 + 'aeiou' * 2 + 'ABDEHLOT' * 2 + '0123456789' * 2 + ' ' * 6


def atoms(op):
    return op.split('.', 1)[-1].replace(':', '?').split('?')


def role(op):
    return op.split('.', 1)[0] if '.' in op else ''


def op_steps(op):
    return sum(a not in ('list', 'join', 'over') for a in atoms(op))  # a plain result or loop adds no step


def table(family, i, ops):
    """The primitives of op i, one per atom."""
    op = ops[i]
    a = atoms(op)
    if family in ('list', 'string'):
        F, M, R = (STR_FILTERS, STR_MAPS, STR_FINALS) if family == 'string' else (LIST_FILTERS, LIST_MAPS, LIST_FINALS)
        return [{**F, **M, **R}[a[0]]]
    if i == 0 and family in ('loop', 'calls'):
        return [(SOURCES if family == 'loop' else PATTERNS)[a[0]]]
    if family == 'loop' and ops[0] != 'times':
        return [UPDATES[a[0]]]
    if op == 'fib':
        return [FIB]
    if role(op) == 'g':
        return [CONDS[a[0]]]
    return [TRANSFORMS[a[0]]] if len(a) == 1 else [CONDS[a[0]]] + [TRANSFORMS[t] for t in a[1:]]


def primitives(key):
    """'list:even>sq>sum' -> {'list.even', 'list.sq', 'list.sum'}"""
    family, ops = key.split(':', 1)
    return {f'{family}.{a}' for o in ops.split('>') for a in atoms(o)}


def pick(r, pool, used):
    name = r.choice([p for p in pool if p not in used])
    used.add(name)
    return name


def ktext(k):
    return repr(k) if isinstance(k, str) else str(k)


def wrap(e, need):
    """e = (text, precedence), parenthesised where the operator needs more."""
    return e[0] if e[1] >= need else f'({e[0]})'


def apply(p, e, k):
    return p['code'].format(a=wrap(e, p['need']), k=ktext(k)), p['prec']


def phrase(p, r, k, hidden, literal, kind='say', **names):
    """A wording of primitive p with its constant, or (hidden) one that leaves the constant to the asserts."""
    texts = p[kind] if isinstance(p[kind], tuple) else (p[kind],)
    text = r.choice(texts)  # always drawn, so that other constants render the same choices
    text = texts[0] if literal else text
    if hidden and p['hide']:
        return p['hide']
    return text.format(k=(HIDE.replace('number', 'letter') if isinstance(p['k'], str) else HIDE) if hidden else ktext(k), **names)


def style_of(tier, r):
    """The docstring's wording: literal steps at tiers 1-2; varied steps, a noun phrase or terse at 3; the last two at 4."""
    return ('literal', 'literal', r.choice(('what', 'steps', 'terse')), r.choice(('what', 'terse')))[min(tier, 4) - 1]


def func_name(prog, tags):
    """The composition's parts ('sum_squares_evens') at tiers 1-3, opaque at 4; one name per composition."""
    if prog.tier >= 4:
        return f'{VERBS[prog.family]}_{hashlib.sha256(prog.key.encode()).hexdigest()[:6]}'
    name = '_'.join(t for t in tags if t)
    name = name if '_' in name else f'{name}_{prog.family}'
    assert name.isidentifier() and not keyword.iskeyword(name), name
    return name


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
