"""
Infilling, measured against honest baselines. eval.py dispatches two tasks here:

  infill            hide a line (or --span_lines lines) inside a function of a held-out file of the
                    checkpoint's dataset (build_infill_tasks) and fill it
  humaneval_infill  HumanEval single-line infilling as in InCoder / the FIM paper: every non-blank line
                    of every canonical solution hidden in turn (1,033 tasks); pass@1 runs the tests;
                    --multi_line: every span of lines instead (5,815 tasks, the FIM paper's multi-line)

  python eval.py --task=humaneval_infill --canonical            # the true line in every hole: 1033/1033
  python eval.py --task=humaneval_infill --empty_fill           # nothing in every hole: the deletion baseline
  python eval.py --task=humaneval_infill --ckpt=out-toy --limit=100
  python eval.py --task=infill --ckpt=out-toy-ar-fim --n_infill=200          # AR + FIM, PSM prompts
  python eval.py --task=infill --ckpt=out-toy --hole_length=24               # no oracle length
  python eval.py --task=infill --ckpt=out-toy-varlen --variable_length --canvas=4 --max_hole=64

How a model fills a hole (mode, from the checkpoint; --infill_mode overrides):
  diffusion  bidirectional / block models: masks between the prefix and the suffix. With
             --hole_length=0 (the default) exactly as many masks as the hidden span has tokens (the
             oracle length; masked diffusion has no length prediction), else that many masks and the
             fill is cut after --span_lines newlines. --variable_length (models trained with
             varlen_rate > 0): --canvas masks that grow and shrink up to --max_hole (DreamOn, lib/varlen.py)
  fim        causal models trained with fim_rate > 0 (Bavarian et al. 2022): the PSM prompt
             <|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|>, decoded until EOS
  prefix     causal models without FIM (or --infill_mode=prefix): the prefix only, the suffix unseen
Context: --ctx_len tokens (default: the training seq_len) around the hole, split evenly between the
prefix and the suffix when the mode reads the suffix, all prefix otherwise.

Metrics, one per task and micro-averaged:
  exact_match      the first span_lines lines of the fill equal the answer's (surrounding whitespace stripped)
  edit_similarity  difflib's SequenceMatcher ratio of those lines and the answer's (stripped; 1 = equal)
  cond_bpb         bits per byte of the hidden span given the context the mode sees: diffusion, the
                   ELBO of the span with prefix and suffix visible (LLaDA's bound with only the span
                   maskable); fim, the exact NLL of the middle after the PSM prompt; prefix, the exact
                   NLL given the prefix. Lower is better; uniform logits give log2 V bits per token
  pass@1           humaneval_infill: the program with the fill put back passes the problem's tests
  length_error     the median over tasks of |tokens of those lines of the fill - of the answer's|
"""
import ast
import difflib
import math
import random
import warnings

from tqdm import tqdm

from evals.execution import run_programs
from lib.cli import UserError
from evals.tasks import dataset_dir, decode_answer, load_humaneval, sampler_kwargs, val_source_files

MODES = ('diffusion', 'fim', 'prefix')


# -----------------------------------------------------------------------------
# tasks

def build_infill_tasks(files, n, span_lines=1, seed=0):
    """files: [(name, source)]. Returns up to n tasks dict(name, line, prefix, answer, suffix) with
    prefix + answer + suffix == source, answer = span_lines whole lines inside one function body
    (after its docstring; blank and comment-only lines never hidden). Deterministic: n functions drawn
    with random.Random(seed) from all functions in (name, line) order, then one span in each."""
    funcs = []  # (name, lines, eligible start indices)
    for name, src in sorted(files):
        try:
            tree = ast.parse(src)
        except (SyntaxError, ValueError):
            continue
        lines = [l + '\n' for l in src.split('\n')]  # not splitlines(): ast counts only \n as a line end (not \f)
        lines[-1] = lines[-1][:-1]
        good = [l.strip() != '' and not l.strip().startswith('#') and len(l) <= 120 for l in lines]
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body[1:] if ast.get_docstring(node) is not None else node.body
            if not body:
                continue
            lo, hi = body[0].lineno - 1, node.end_lineno  # 0-based [lo, hi) lines of the body
            starts = [s for s in range(lo, hi - span_lines + 1) if all(good[s:s + span_lines])]
            if starts:
                funcs.append((node.lineno, name, lines, starts))
    funcs.sort(key=lambda f: (f[1], f[0]))
    rng = random.Random(seed)
    tasks = []
    for lineno, name, lines, starts in rng.sample(funcs, min(n, len(funcs))):
        s = rng.choice(starts)
        tasks.append(dict(name=name, line=s + 1, prefix=''.join(lines[:s]), answer=''.join(lines[s:s + span_lines]),
                          suffix=''.join(lines[s + span_lines:])))
    return sorted(tasks, key=lambda t: (t['name'], t['line']))


def score_infill(task, fill, span_lines):
    """(exact, parses): the first span_lines lines of fill against the answer, compared line by line with
    surrounding whitespace stripped; and whether the file with the fill put back is valid Python."""
    got = fill.split('\n')[:span_lines]
    want = task['answer'].split('\n')[:span_lines]
    exact = [l.strip() for l in got] == [l.strip() for l in want]
    try:
        ast.parse(task['prefix'] + '\n'.join(got) + '\n' + task['suffix'])
        parses = True
    except (SyntaxError, ValueError):
        parses = False
    return exact, parses


def humaneval_infill_tasks(problems=None, multi_line=False):
    """HumanEval infilling as in InCoder / the FIM paper. Single-line: each non-blank line of each canonical
    solution becomes a hole (1,033 tasks); multi-line: each span of lines from a non-blank line to a
    non-blank line at or after it (5,815 tasks). prefix = the prompt + the lines before, suffix = the
    lines after. Task ids follow human-eval-infilling's (SingleLineInfilling/HumanEval/<n>/L<i>,
    MultiLineInfilling/HumanEval/<n>/L<i>_L<j>, i and j indices into the solution's lines). The one
    difference to its data files: a hole starting at L0 gets the HumanEval prompt itself, where the files
    add an extra '\\n' (a blank line after the docstring; 160 single-line, 989 multi-line tasks;
    tests/fixtures/humaneval_infill.json)."""
    if problems is None:
        problems = load_humaneval()
    tasks = []
    for p in problems:
        lines = p['canonical'].splitlines(keepends=True)
        full = [k for k, line in enumerate(lines) if line.strip()]
        for i in full:
            for j in [j for j in full if j >= i] if multi_line else [i]:
                name = f"MultiLineInfilling/{p['task_id']}/L{i}_L{j}" if multi_line else f"SingleLineInfilling/{p['task_id']}/L{i}"
                tasks.append(dict(name=name, line=i, lines=j - i + 1, prefix=p['prompt'] + ''.join(lines[:i]),
                                  answer=''.join(lines[i:j + 1]), suffix=''.join(lines[j + 1:]), tests=p['tests']))
    return tasks


def infill_mode(model, train_cfg, override=''):
    if override:
        if override not in MODES:
            raise UserError(f"--infill_mode={override!r} is unknown; use diffusion, fim or prefix (or '' = the model's own)")
        if (override == 'diffusion') != (model.config.attention != 'causal'):
            raise UserError(f"--infill_mode={override} does not fit a {model.config.attention} model")
        return override
    if model.config.attention != 'causal':
        return 'diffusion'
    return 'fim' if (train_cfg or {}).get('fim_rate', 0) > 0 else 'prefix'


# -----------------------------------------------------------------------------
# metrics

def first_lines(text, n):
    return text.split('\n')[:n]


def exact_and_similarity(fill, answer, n_lines):
    """(exact, edit similarity) of the first n_lines lines of fill against the answer's, each line
    stripped of surrounding whitespace (so an all-blank fill scores 0 similarity, not the indentation)."""
    got = '\n'.join(l.strip() for l in first_lines(fill, n_lines))
    want = '\n'.join(l.strip() for l in first_lines(answer, n_lines))
    return got == want, difflib.SequenceMatcher(None, got, want, autojunk=False).ratio()


def context(pre, suf, ctx, gen, reads_suffix, extra=0):
    """The last tokens of the prefix and the first of the suffix that fit ctx with gen (+ extra) slots."""
    budget = max(ctx - gen - extra, 2)
    n_suf = min(len(suf), budget // 2) if reads_suffix else 0
    n_pre = min(len(pre), budget - n_suf)
    n_suf = min(len(suf), budget - n_pre) if reads_suffix else 0
    return pre[len(pre) - n_pre:], suf[:n_suf]


def psm_prompt(tok, pre, suf):
    p, m, s = tok.fim_ids
    return [p, *pre, s, *suf, m]


def span_nats(model, tok, pre, ans, suf, mode, n_samples=8, generator=None):
    """-log p(hidden span | what the mode sees), in nats (an upper bound for diffusion)."""
    import torch
    from diffusion import elbo, token_ce
    with torch.no_grad():
        if mode == 'diffusion':
            ids = pre + ans + suf
            if model.config.attention == 'block':  # the bound works on whole blocks: drop context tokens to
                cut = len(ids) % model.config.block_size  # fit, from the prefix first, then the suffix's end
                from_pre = min(cut, len(pre))
                pre, suf = pre[from_pre:], suf[:len(suf) - min(cut - from_pre, len(suf))]
                ids = pre + ans + suf
                # an answer longer than the context: end its last block with masks, the unknown future
                # the sampler also sees there (visible, never scored)
                ids += [model.config.mask_token_id] * (-len(ids) % model.config.block_size)
            x0 = torch.tensor([ids])
            maskable = torch.zeros_like(x0, dtype=torch.bool)
            maskable[0, len(pre):len(pre) + len(ans)] = True
            return float(elbo(model, x0, n_samples=n_samples, generator=generator, maskable=maskable)[0]) * len(ans)
        head = psm_prompt(tok, pre, suf) if mode == 'fim' else pre
        x = torch.tensor([head + ans])
        ce = token_ce(model(x)[:, :-1], x[:, 1:])[0]
        return float(ce[len(head) - 1:].sum())  # the answer's tokens, each given everything before it


# -----------------------------------------------------------------------------
# filling

def fill_hole(model, tok, pre, suf, ans_len, mode, cfg, generator, varlen_model=False, lead=()):
    """Generate the hole's text -> (fill text, generate's info). varlen_model (trained with varlen_rate > 0):
    a hole of fixed length is a canvas that cannot grow (DreamOn's fixed-length decoding: <|expand|> never
    proposed, a delete ends the middle), decoded as the variable-length rows are. lead: tokens before the
    whole prompt (an EOS, where a document starts in the corpus), in front of PSM's sentinels too."""
    from sample import generate
    kw = sampler_kwargs(cfg, model)
    if mode == 'diffusion' and (cfg.get('variable_length') or varlen_model):  # DreamOn: the canvas finds the length
        canvas, most = (cfg['canvas'], cfg['max_hole']) if cfg.get('variable_length') else (cfg['hole_length'] or ans_len,) * 2
        kw.update(gen_length=most, suffix=[suf], variable_length=True, canvas=canvas,
                  expand_id=tok.expand_id, delete_id=tok.pad_id)
        kw.pop('block_length'), kw.pop('steps'), kw.pop('schedule')
        out, info = generate(model, [[*lead, *pre]], **kw, pad_id=tok.pad_id, generator=generator)
        return decode_answer(tok, info['middles'][0]), dict(info, gen_length=info['lengths'][0])
    if mode == 'diffusion':
        gen = cfg['hole_length'] or ans_len
        # semi-AR blocks of --block_length over the hole (block models: their own block size), one token per
        # step unless --steps_div / --threshold / --factor say otherwise (--steps is not used here)
        steps = max(1, math.ceil(gen / cfg['steps_div'])) if cfg['steps_div'] else None
        kw.update(gen_length=gen, steps=steps, suffix=[suf],
                  block_length=None if model.config.attention == 'block' else min(kw['block_length'] or gen, gen))
        prompt = pre
    else:  # AR decoding, cut at EOS; the fill is scored on its first span_lines lines
        gen = cfg['hole_length'] or ans_len + 16
        kw.update(gen_length=gen)
        prompt = psm_prompt(tok, pre, suf) if mode == 'fim' else pre
    prompt = [*lead, *prompt]
    with warnings.catch_warnings():  # holes of any length: "not a multiple of block_length" is expected here
        warnings.simplefilter('ignore')
        out, info = generate(model, [prompt], **kw, eos_id=tok.eos_id, pad_id=tok.pad_id, generator=generator)
    return decode_answer(tok, out[0, len(prompt):len(prompt) + gen].tolist()), dict(info, gen_length=gen)


def eval_infill(cfg, model, tok, train_cfg):
    """--task=infill or --task=humaneval_infill -> (summary, per-task records)."""
    import torch
    he = cfg['task'] == 'humaneval_infill'
    n_lines = 1 if he else cfg['span_lines']  # humaneval_infill: each task's own line count
    if he:
        tasks = humaneval_infill_tasks(multi_line=cfg['multi_line'])[:cfg['limit'] or None]
    else:
        tasks = build_infill_tasks(val_source_files(dataset_dir(cfg, train_cfg)), cfg['limit'] or cfg['n_infill'],
                                   n_lines, seed=0)
    if not tasks:
        raise UserError("no infill task to run; check --data_path (the val split needs functions)")
    baseline = 'canonical' if cfg['canonical'] else 'empty' if cfg['empty_fill'] else None  # no model: fixed fills
    mode = baseline or infill_mode(model, train_cfg, cfg['infill_mode'])
    varlen = cfg.get('variable_length') and not baseline
    if varlen and mode != 'diffusion':
        raise UserError(f"--variable_length grows a diffusion model's canvas; this model infills as {mode}, drop it")
    if varlen and cfg['hole_length']:
        raise UserError("--hole_length fixes the hole's length and --variable_length finds it; give one of them")
    if mode == 'fim' and max(tok.fim_ids) >= model.config.vocab_size:
        raise UserError("the model's vocab has no FIM sentinels; use --infill_mode=prefix")
    ctx = cfg['ctx_len'] or train_cfg.get('seq_len') or 512
    if varlen:  # the model, the canvas and the context, before any hole
        from lib.varlen import check_varlen
        check_varlen(model, cfg['canvas'], cfg['max_hole'], None, tok.expand_id, tok.pad_id,
                     sampler_kwargs(cfg, model)['cache'], cfg['alg'], 0, 0)
        if cfg['max_hole'] + 2 > ctx:
            raise UserError(f"--max_hole={cfg['max_hole']} leaves no room for the prefix and suffix in the context of "
                            f"{ctx} tokens (--ctx_len, default the training length); lower --max_hole")
    g = torch.Generator(device=cfg['device']).manual_seed(cfg['seed'])
    per, nats, n_bytes, nfe, gen_tok, secs = [], 0.0, 0, 0, 0, 0.0
    for t in tqdm(tasks, desc=f'{cfg["task"]} ({mode})', disable=bool(baseline)):
        rec = dict(name=t['name'], line=t['line'], answer=t['answer'])
        if baseline:  # the true line (checks the executor: 100%), or nothing (how many holes pass by deletion)
            rec['fill'] = t['answer'] if baseline == 'canonical' else ''
        else:
            pre, ans, suf = tok.encode(t['prefix']), tok.encode(t['answer']), tok.encode(t['suffix'])
            gen = cfg['max_hole'] if varlen else len(ans) if mode == 'diffusion' and not cfg['hole_length'] \
                else cfg['hole_length'] or len(ans) + 16
            p, s = context(pre, suf, ctx, gen, mode != 'prefix', extra=3 if mode == 'fim' else 0)
            rec['fill'], info = fill_hole(model, tok, p, s, len(ans), mode, cfg, g,
                                          varlen_model=(train_cfg or {}).get('varlen_rate', 0) > 0)
            made = info['gen_length'] if mode == 'diffusion' else info['nfe']  # AR: one token per forward
            nfe, gen_tok, secs = nfe + info['nfe'], gen_tok + made, secs + info['seconds']
            if cfg['cond_samples']:  # the likelihood of the true span in the same context
                p, s = context(pre, suf, ctx, len(ans), mode != 'prefix', extra=3 if mode == 'fim' else 0)
                rec['nats'] = span_nats(model, tok, p, ans, s, mode, cfg['cond_samples'], g)
                rec['bytes'] = len(t['answer'].encode('utf-8'))
                nats, n_bytes = nats + rec['nats'], n_bytes + rec['bytes']
        rec['exact'], rec['similarity'] = exact_and_similarity(rec['fill'], t['answer'], t.get('lines', n_lines))
        if tok is not None:  # the hole's length in tokens, as scored: the first lines of the fill and of the answer
            k = t.get('lines', n_lines)
            rec['length_error'] = abs(len(tok.encode('\n'.join(first_lines(rec['fill'], k))))
                                      - len(tok.encode('\n'.join(first_lines(t['answer'], k)))))
        rec['parses'] = score_infill(t, rec['fill'], n_lines)[1] if not he else None
        per.append(rec)
    n = len(per)
    summary = dict(task=cfg['task'] + ('_multi_line' if he and cfg['multi_line'] else ''), mode=mode, tasks=n,
                   span_lines='per task' if he else n_lines, ctx_len=ctx,
                   hole_length='variable' if varlen else cfg['hole_length'] or 'oracle',
                   exact_match=sum(r['exact'] for r in per) / n,
                   edit_similarity=sum(r['similarity'] for r in per) / n)
    if varlen:
        summary.update(canvas=cfg['canvas'], max_hole=cfg['max_hole'])
    if per and 'length_error' in per[0]:
        errs = sorted(r['length_error'] for r in per)
        summary['length_error'] = (errs[(n - 1) // 2] + errs[n // 2]) / 2  # the median
    if not he:
        summary['parse_rate'] = sum(r['parses'] for r in per) / n
    if n_bytes:
        summary['cond_bpb'] = nats / math.log(2) / n_bytes
    if nfe:  # decoding cost: generated slots per model forward (AR: 1), and wall-clock tokens/s
        summary.update(tokens_per_forward=gen_tok / nfe, tokens_per_s=gen_tok / max(secs, 1e-9), nfe=nfe)
    if he:  # put each fill's first lines back (as many as the hole had) and run the problem's tests in the sandbox
        programs = [t['prefix'] + '\n'.join(first_lines(r['fill'], t['lines'])) + '\n' + t['suffix'] + '\n' + t['tests']
                    for t, r in zip(tasks, per)]
        verdicts = run_programs(programs, cfg['timeout'], cfg['memory_mb'], cfg['workers'])
        for r, v in zip(per, verdicts):
            r['verdict'] = v
        summary['pass@1'] = sum(v == 'passed' for v in verdicts) / n
    print(f"{cfg['task']} ({mode}, {n} tasks): exact match {100 * summary['exact_match']:.1f}%, edit similarity "
          f"{100 * summary['edit_similarity']:.1f}%"
          + (f", parses {100 * summary['parse_rate']:.1f}%" if 'parse_rate' in summary else '')
          + (f", cond {summary['cond_bpb']:.3f} bits/byte" if 'cond_bpb' in summary else '')
          + (f", pass@1 {100 * summary['pass@1']:.1f}%" if 'pass@1' in summary else '')
          + (f", length error {summary['length_error']:g} tokens" if 'length_error' in summary else '')
          + (f", {summary['tokens_per_forward']:.2f} tokens/forward" if 'tokens_per_forward' in summary else ''))
    return summary, per
