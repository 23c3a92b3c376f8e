"""
The primitives of pyworld (data/pyworld/world.py draws and runs programs of them): each family's filters,
maps, finals, conditions and updates with their code templates and phrasings, the names a program may use,
and the small helpers that turn a primitive into code and words.
"""
import hashlib
import keyword
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
