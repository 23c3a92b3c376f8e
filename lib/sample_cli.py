"""
sample.py's command line: every option with its default, type, range and help, the checks that run before
the model loads (check_args) and after (check_request), and what a run prints (print_samples).
"""
import os
import warnings

from lib.cli import UserError, check_device, check_ranges
from lib.display import is_picture
from lib.varlen import check_varlen

HELP = """
Defaults follow the model's kind: causal -> AR decoding with a KV cache; block -> block_length =
the model's block_size and the exact prefix cache; bidirectional -> alg entropy, blocks of 32, no cache.
Every option of generate() is a flag:

  --ckpt / --hf       a train.py out_dir or ckpt.pt / a Hugging Face Qwen3 or CoDA directory (with tokenizer.json)
  --prompt, --suffix  the prompt text (default: a newline) and, to infill, the text that must follow the
                      generated span; --prompt_file / --suffix_file read them from files
  --chat              wrap the prompt in the chat template (instruct models)
  --num_samples       samples drawn (one batch)
  --dtype             float32 | bfloat16 | float16 | auto (HF: the checkpoint's own)
  --gen_length        tokens to generate (AR: at most)
  --block_length      semi-AR block (default 32; block models: their block_size); 0 = one block for the answer
  --steps             denoising steps over all blocks (default gen_length)
  --alg               position rule: origin | maskgit_plus | topk_margin | entropy
  --schedule          tokens per step: llada | coda (default: coda for models with shifted logits, i.e.
                      CoDA / Dream; else llada)
  --temperature       0 = greedy; --top_p, --top_k as usual
  --alg_temp          > 0: sample positions from softmax(confidence / alg_temp)
  --threshold         Fast-dLLM: commit every token with probability >= threshold (at least the schedule's count)
  --factor            Fast-dLLM's factor rule (instead of --threshold)
  --finish_threshold  commit a block's remaining masks at once when every one has probability >= this
  --fill_after_eos    pad the masks after a committed EOS at once instead of denoising them
  --edit_threshold    revise a visible answer token when the model prefers another with probability >= this
                      (LLaDA 2.1's token-to-token editing; off by default); --edit_budget revisions per step
                      (default 1), --max_edits_per_slot per token over the run (default 1)
  --draft_file        start the answer from this text instead of masks (with --edit_threshold: revise it)
  --cache             none | prefix | dual (default: prefix for block / causal models, else none)
  --no_eos            do not stop at the end-of-sequence token
  --variable_length   infill a hole of unknown length: the canvas grows and shrinks (DreamOn; models trained
                      with varlen_rate > 0), from --canvas masks up to --max_hole
  --show              draw the denoising live in the terminal (revised tokens in reverse magenta)
  --frames            save --n_frames snapshots of sample 0's denoising: .png/.svg (matplotlib) or .html
                      (revised tokens purple); --overwrite lets it replace an existing picture
"""

# every option, with its default; the numeric ones left unset (None) are typed by KINDS
DEFAULTS = dict(ckpt='', hf='', prompt=None, prompt_file='', suffix=None, suffix_file='', chat=False, num_samples=1,
                seed=1337, device='cpu', dtype='float32', gen_length=128, block_length=None, steps=None, alg='entropy',
                schedule=None, temperature=0.0, top_p=None, top_k=None, alg_temp=0.0, threshold=None, factor=None,
                finish_threshold=None, fill_after_eos=False, edit_threshold=None, edit_budget=1, max_edits_per_slot=1,
                draft_file='', cache=None, no_eos=False, variable_length=False, canvas=16, max_hole=64, show=False,
                frames='', n_frames=8, overwrite=False)
KINDS = dict(block_length=int, steps=int, top_p=float, top_k=int, threshold=float, factor=float, finish_threshold=float,
             edit_threshold=float)

# the interval each numeric option must lie in (cli.check_ranges); unset (None) options pass
RANGES = dict(canvas='[1, inf)', max_hole='[1, inf)', num_samples='[1, inf)', gen_length='[1, inf)',
              block_length='[0, inf)', steps='[1, inf)', temperature='[0, inf)', top_p='(0, 1]', top_k='[1, inf)',
              alg_temp='[0, inf)', threshold='(0, 1]', factor='(0, inf)', finish_threshold='(0, 1]',
              edit_threshold='(0, 1]', edit_budget='[0, inf)', max_edits_per_slot='[1, inf)', seed='(-inf, inf)',
              n_frames='[2, inf)')
# the decodings that read each decoding-specific option: given to another, it is an error (as eval.py's USED_BY)
DIFFUSION, FIXED, VARLEN, AR = 'fixed-length diffusion', "a varlen model's fixed hole", '--variable_length', 'AR decoding'
READ_BY = dict(gen_length=(DIFFUSION, FIXED, AR), block_length=(DIFFUSION,), steps=(DIFFUSION,), schedule=(DIFFUSION,),
               factor=(DIFFUSION,), alg=(DIFFUSION, FIXED, VARLEN), alg_temp=(DIFFUSION, FIXED, VARLEN),
               threshold=(DIFFUSION, FIXED, VARLEN), canvas=(VARLEN,), max_hole=(VARLEN,),
               **{k: (DIFFUSION,) for k in ('finish_threshold', 'fill_after_eos', 'edit_threshold', 'edit_budget',
                                            'max_edits_per_slot', 'draft_file')})
PAIRS = (('ckpt', 'hf', 'both name a model'), ('prompt', 'prompt_file', 'both give the prompt'),
         ('suffix', 'suffix_file', 'both give the suffix'), ('frames', 'show', 'both watch the denoising'),
         ('draft_file', 'variable_length', 'a draft is a fixed canvas'))


def check_args(args, algs, caches):
    """The checks that need no model (each a one-line UserError) -> the model's path."""
    for a, b, why in PAIRS:
        if getattr(args, a) not in (None, '', False) and getattr(args, b) not in (None, '', False):
            raise UserError(f"--{a} and --{b} {why}; pass one of them")
    path = args.ckpt or args.hf
    if not path:  # as nanoGPT: sample from train.py's default out_dir
        path = 'out-toy'
        if not os.path.isfile(os.path.join(path, 'ckpt.pt')):
            raise UserError("no model given and out-toy/ckpt.pt does not exist; run `python train.py` first, "
                            "or pass --ckpt=out_dir (train.py) or --hf=dir (Hugging Face)")
        print(f"sampling from {os.path.join(path, 'ckpt.pt')} (train.py's default out_dir; --ckpt to choose)")
    if args.frames and not args.frames.endswith(('.png', '.svg', '.html')):
        raise UserError(f"--frames={args.frames}: name a .png, .svg or .html file")
    if args.frames:
        from data.common import check_out_file
        check_out_file(args.frames, '--frames', args.overwrite, is_picture, 'a picture')  # before the sampling
    if args.alg not in algs:
        raise UserError(f"--alg={args.alg} is unknown; use one of {', '.join(algs)}")
    if args.cache is not None and args.cache not in caches:
        raise UserError(f"--cache={args.cache} is unknown; use one of {', '.join(caches)}")
    check_ranges(vars(args), RANGES)
    check_device(args.device)
    if args.variable_length and not args.canvas <= args.max_hole:
        raise UserError(f"--canvas={args.canvas} is above --max_hole={args.max_hole}; start from fewer masks or raise the maximum")
    return path


def check_request(args, given, model, tok, ids, suffix, draft):
    """The checks that need the model and the tokens, before any sampling (and its warnings) -> whether the
    hole is a varlen model's fixed hole (a canvas that cannot grow, DreamOn's fixed-length decoding)."""
    cfg, kind = model.config, model.config.attention
    if suffix and kind == 'causal':
        raise UserError("--suffix (infilling) needs a diffusion model; this checkpoint is causal (AR)")
    if args.variable_length and kind != 'bidirectional':
        raise UserError(f"--variable_length needs a bidirectional diffusion model; this checkpoint is {kind}")
    if kind == 'causal' and (args.edit_threshold is not None or draft is not None):
        raise UserError(f"--{'edit_threshold' if draft is None else 'draft_file'} revises a diffusion model's canvas; "
                        f"this checkpoint is causal (AR)")
    fixed_hole = suffix is not None and not args.variable_length and model.train_config.get('varlen_rate', 0) > 0
    mode = AR if kind == 'causal' else VARLEN if args.variable_length else FIXED if fixed_hole else DIFFUSION
    for flag in sorted(set(given) & set(READ_BY)):
        if mode not in READ_BY[flag]:
            raise UserError(f"--{flag} is not used by {mode} (only by {', '.join(READ_BY[flag])}); drop it")
    if draft is not None and len(draft) > args.gen_length:
        raise UserError(f"--draft_file holds {len(draft)} tokens, more than the canvas (--gen_length={args.gen_length}); "
                        f"raise --gen_length or shorten the draft")
    if args.variable_length:  # the hole's maximum takes gen_length's place; the checks before any warning
        args.gen_length = args.max_hole
        check_varlen(model, args.canvas, args.max_hole, None, tok.expand_id, tok.pad_id, args.cache or 'none', args.alg,
                     len(ids), len(suffix or []))
    if suffix and kind == 'block':
        warnings.warn("block models see the suffix only from the last block; infilling wants a bidirectional model")
    n = len(ids) + args.gen_length + len(suffix or [])
    if n > cfg.max_position_embeddings:
        flag = '--max_hole' if args.variable_length else '--gen_length'
        raise UserError(f"prompt ({len(ids)} tokens) + {flag} ({args.gen_length}) + suffix = {n} exceeds the "
                        f"model's context of {cfg.max_position_embeddings}; shorten the prompt or lower {flag}")
    trained = model.train_config.get('seq_len')
    if trained and n > trained:
        warnings.warn(f"{n} tokens is longer than the {trained} the model was trained on; expect worse samples")
    return fixed_hole


def print_samples(tok, out, info, args, ids, texts, varlen, cache, kind, fixed_hole):
    """Each sample's text (prompt, answer up to its EOS, suffix), then one line on how it was decoded."""
    prompt_text, suffix_text = texts
    P = len(ids)
    for r, row in enumerate(out.tolist()):
        gen = info['middles'][r] if varlen else row[P:P + args.gen_length]
        stop = [j for j, t in enumerate(gen) if t in (tok.eos_id, tok.pad_id)] if not args.no_eos else []
        print(prompt_text + tok.decode(gen[:stop[0]] if stop else gen) + (suffix_text or ''))
        print('-' * 40)
    mode = 'AR' if kind == 'causal' else f"{args.alg}, block {info['block_length']}"
    if varlen:
        what = 'a fixed hole' if fixed_hole else 'variable length'
        mode = (f"{args.alg}, {what} from {varlen['canvas']} masks: middles of {info['lengths']} tokens after "
                f"{info['expansions']} expansions and {info['deletions']} deletions")
    if info.get('edits') and any(info['edits']):
        mode += f", {sum(info['edits'])} tokens revised"
    print(f"{kind} model, {mode}, cache {cache}: {info['nfe']} forward passes (NFE), "
          f"{info['tokens_per_s']:.1f} tokens/s, {info['seconds']:.2f} s, steps per block {info['steps_per_block']}")
