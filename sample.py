"""
Sample from a nanoCoDA checkpoint (train.py's ckpt.pt) or a Hugging Face Qwen3 / CoDA directory.

  python sample.py                                                     # the default out_dir, out-toy
  python sample.py --ckpt=out-toy --prompt='def fib(n):' --show         # watch the denoising live
  python sample.py --prompt='def fib(n):' --frames=denoise.png          # ... or save it as a picture
  python sample.py --ckpt=out-toy --prompt='def add(a, b):' --suffix='\n\nprint(add(1, 2))\n' --gen_length=16
  python sample.py --ckpt=out-toy-varlen --prompt='def add(a, b):\n' --suffix='\n\nprint(add(1, 2))\n' --variable_length
  python sample.py --hf=path/to/CoDA-v0-Instruct --chat --prompt='Write quicksort in Python.' \\
      --gen_length=256 --threshold=0.9 --cache=dual --dtype=bfloat16

Defaults follow the model's kind: causal -> AR decoding with a KV cache; block -> block_length =
the model's block_size and the exact prefix cache; bidirectional -> alg entropy, blocks of 32, no cache.
Every option of sampling.generate() is a flag:

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
  --threshold         Fast-dLLM: commit every token with probability >= threshold
  --factor            Fast-dLLM's factor rule (instead of --threshold)
  --cache             none | prefix | dual (default: prefix for block / causal models, else none)
  --no_eos            do not stop at the end-of-sequence token
  --variable_length   infill a hole of unknown length: the canvas grows and shrinks (DreamOn; models trained
                      with varlen_rate > 0), from --canvas masks up to --max_hole
  --show              draw the denoising live in the terminal
  --frames            save --n_frames snapshots of sample 0's denoising: .png/.svg (matplotlib) or .html;
                      --overwrite lets it replace an existing picture
"""
import os
import sys
import time
import warnings
from types import SimpleNamespace

import torch

from cli import UserError, check_device, check_ranges, parse_args, parse_dtype, run_cli
from model import ModelConfig, Transformer
from runtime import load_checkpoint
from sampling import ALGS, CACHES, generate
from tokenizer import load_tokenizer


def load_model(path, device='cpu', dtype=None):
    """(model, tokenizer) from a train.py ckpt.pt, an out_dir holding one, or an HF Qwen3/CoDA directory
    (tokenizer from its tokenizer.json). model.train_config is the training config ({} for HF)."""
    if isinstance(dtype, str):
        dtype = parse_dtype(dtype) if dtype != 'auto' else None
    ckpt = path if os.path.isfile(path) else os.path.join(path, 'ckpt.pt')
    if os.path.isfile(ckpt):
        ck = load_checkpoint(ckpt)
        model = Transformer(ModelConfig(**ck['model_config']))
        model.load_state_dict(ck['model'])  # train.py saves the unwrapped model's state
        tok = load_tokenizer(ck.get('tokenizer') or 'bytes')
        model.train_config = ck.get('train_config') or {}
    elif os.path.isfile(os.path.join(path, 'config.json')):
        model = Transformer.from_pretrained(path, dtype=dtype)
        if not os.path.isfile(os.path.join(path, 'tokenizer.json')):
            raise UserError(f"{path} has no tokenizer.json; copy the model's tokenizer.json next to config.json")
        tok = load_tokenizer(path)
        model.train_config = {}
    else:
        raise FileNotFoundError(f"{path}: no ckpt.pt and no config.json; pass a train.py out_dir, a ckpt.pt "
                                f"or a Hugging Face Qwen3/CoDA directory")
    return model.to(device=device, dtype=dtype).eval(), tok


# every option, with its default; the numeric ones left unset (None) are typed by KINDS
DEFAULTS = dict(ckpt='', hf='', prompt=None, prompt_file='', suffix=None, suffix_file='', chat=False, num_samples=1,
                seed=1337, device='cpu', dtype='float32', gen_length=128, block_length=None, steps=None, alg='entropy',
                schedule=None, temperature=0.0, top_p=None, top_k=None, alg_temp=0.0, threshold=None, factor=None,
                cache=None, no_eos=False, variable_length=False, canvas=16, max_hole=64, show=False, frames='',
                n_frames=8, overwrite=False)
KINDS = dict(block_length=int, steps=int, top_p=float, top_k=int, threshold=float, factor=float)


# the interval each numeric option must lie in (cli.check_ranges); unset (None) options pass
RANGES = dict(canvas='[1, inf)', max_hole='[1, inf)', num_samples='[1, inf)', gen_length='[1, inf)', block_length='[0, inf)', steps='[1, inf)', temperature='[0, inf)',
              top_p='(0, 1]', top_k='[1, inf)', alg_temp='[0, inf)', threshold='(0, 1]', factor='(0, inf)',
              seed='(-inf, inf)', n_frames='[2, inf)')
PAIRS = (('ckpt', 'hf', 'both name a model'), ('prompt', 'prompt_file', 'both give the prompt'),
         ('suffix', 'suffix_file', 'both give the suffix'), ('frames', 'show', 'both watch the denoising'))
PICTURE = {'.png': b'\x89PNG', '.svg': b'<?xml', '.html': b'<html'}  # what save_frames writes first


def is_picture(path):
    with open(path, 'rb') as f:
        return f.read(8).startswith(PICTURE.get(os.path.splitext(path)[1], b'\0'))


def read_text(text, path):
    if path:
        try:
            with open(path, encoding='utf-8') as f:
                return f.read()
        except UnicodeDecodeError:
            raise UserError(f"{path} is not UTF-8 text; pass a UTF-8 file") from None
    return text.replace('\\n', '\n').replace('\\t', '\t') if text is not None else None  # '\n' typed on the command line


def render(tok, ids, mask_id):
    """Token ids -> text, each mask token drawn as '░'."""
    out, run = [], []
    for t in ids:
        if t == mask_id:
            out.append(tok.decode(run) + '░')
            run = []
        else:
            run.append(t)
    return ''.join(out) + tok.decode(run)


def live_display(tok, every=0.03):
    """A generate() callback that redraws sample 0 (ANSI: clear screen, cursor home)."""
    last = [0.0]

    def show(info):
        now = time.perf_counter()
        if now - last[0] < every:
            return
        last[0] = now
        x = info['tokens'][0].tolist()
        sys.stdout.write('\x1b[2J\x1b[H' + render(tok, x, info['mask_id'])
                         + f"\n\n[block {info['block']} step {info['step']} nfe {info['nfe']}]\n")
        sys.stdout.flush()
    return show


# -----------------------------------------------------------------------------
# a picture of the denoising: snapshots of the generated span, prompt blue, masks grey, fresh tokens orange

def recorder(frames):
    """A generate() callback that keeps sample 0's tokens after every step."""
    return lambda info: frames.append((info['step'], info['nfe'], info['tokens'][0].tolist()))


def frame_segments(tok, frames, prompt, start, end, mask_id, n):
    """n snapshots evenly spaced over the run (all masks first, the answer last), each a list of
    (text, state) pieces: the prompt, then the span [start, end) with state 'mask', 'new' (since the
    last snapshot) or 'old'."""
    states = [(0, 0, [mask_id] * (end - start))] + [(s, f, x[start:end]) for s, f, x in frames]
    picks = sorted({round(i * (len(states) - 1) / max(n - 1, 1)) for i in range(n)})
    out, prev = [], states[0][2]
    for i in picks:
        step, nfe, x = states[i]
        segs = [(tok.decode(prompt), 'prompt')] + [
            ('\u2591', 'mask') if t == mask_id else (tok.decode([t]), 'new' if prev[j] == mask_id else 'old')
            for j, t in enumerate(x)]
        out.append((f"forward {nfe}", segs))
        prev = x
    return out


def canvas_segments(tok, frames, prompt, suffix, mask_id, n):
    """--variable_length: n snapshots of the canvas (it grows and shrinks), each the prompt, the canvas's
    slots ('mask', or 'new' if committed since the last snapshot, else 'old') and the suffix."""
    states = [(0, [mask_id] * frames[0][2], [-1] * frames[0][2])] + [(f, c, b) for f, _, c, b in frames[1:]]
    picks = sorted({round(i * (len(states) - 1) / max(n - 1, 1)) for i in range(n)})
    out, last = [], 0
    for i in picks:
        nfe, canvas, born = states[i]
        segs = [(tok.decode(prompt), 'prompt')] + [
            ('\u2591', 'mask') if t == mask_id else (tok.decode([t]), 'new' if s > last else 'old')
            for t, s in zip(canvas, born)] + [(tok.decode(suffix), 'prompt')]
        out.append((f"forward {nfe}: {len(canvas)} slot{'s' * (len(canvas) != 1)}", segs))
        last = nfe
    return out


def save_frames(path, panels):
    """Panels side by side, each the span as monospace text. PNG/SVG with matplotlib, else HTML."""
    color = {'prompt': '#1c7ed6', 'mask': '#b0b0b0', 'new': '#e8590c', 'old': '#1f2937'}
    if path.endswith('.html'):
        import html
        cols = ''.join(f"<td><b>{title}</b><pre>" + ''.join(
            f'<span style="color:{color[s]}">{html.escape(t)}</span>' for t, s in segs) + '</pre></td>'
            for title, segs in panels)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(f'<html><body><table style="font-size:12px"><tr style="vertical-align:top">{cols}</tr></table></body></html>\n')
        return
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError(f"--frames={path} needs matplotlib (pip install matplotlib); or save as .html") from None
    grids = []  # each panel as (row, col, char, state) cells
    for _, segs in panels:
        cells, r, c = [], 0, 0
        for text, state in segs:
            for ch in text.replace('\t', '    '):
                if ch == '\n':
                    r, c = r + 1, 0
                    continue
                if c >= 40:  # wrap long lines
                    r, c = r + 1, 0
                cells.append((r, c, ch, state))
                c += 1
        grids.append(cells)
    rows = max([r for cells in grids for r, *_ in cells] + [0]) + 1
    ncol = min(4, len(panels))
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, nrow * (0.5 + 0.17 * rows)), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis('off')
    for ax, (title, _), cells in zip(axes.flat, panels, grids):
        ax.set_xlim(-0.5, 40.5), ax.set_ylim(rows - 0.5, -0.5), ax.axis('off'), ax.set_title(title, fontsize=9)
        for r, c, ch, state in cells:
            if state == 'new':  # a tinted cell, so that fresh spaces show too
                ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, color='#ffe8cc', lw=0))
            ax.text(c, r, ch, family='monospace', fontsize=7, color=color[state], ha='center', va='center')
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv):
    args = SimpleNamespace(**parse_args(argv, DEFAULTS, __doc__, KINDS))
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
    if args.alg not in ALGS:
        raise UserError(f"--alg={args.alg} is unknown; use one of {', '.join(ALGS)}")
    if args.cache is not None and args.cache not in CACHES:
        raise UserError(f"--cache={args.cache} is unknown; use one of {', '.join(CACHES)}")
    check_ranges(vars(args), RANGES)
    check_device(args.device)
    torch.manual_seed(args.seed)
    model, tok = load_model(path, args.device, args.dtype)
    cfg = model.config
    kind = cfg.attention
    prompt_text = read_text(args.prompt, args.prompt_file)
    prompt_text = '\n' if prompt_text is None else prompt_text
    suffix_text = read_text(args.suffix, args.suffix_file)
    ids = tok.encode_chat([{'role': 'user', 'content': prompt_text}]) if args.chat else tok.encode(prompt_text)
    suffix = tok.encode(suffix_text) if suffix_text else None
    if suffix and kind == 'causal':
        raise UserError("--suffix (infilling) needs a diffusion model; this checkpoint is causal (AR)")
    if args.variable_length and not args.canvas <= args.max_hole:
        raise UserError(f"--canvas={args.canvas} is above --max_hole={args.max_hole}; start from fewer masks or raise the maximum")
    if args.variable_length and kind != 'bidirectional':
        raise UserError(f"--variable_length needs a bidirectional diffusion model; this checkpoint is {kind}")
    if args.variable_length:  # the hole's maximum takes gen_length's place; the checks before any warning
        args.gen_length = args.max_hole
        from varlen import check_varlen
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
    cache = args.cache or ('none' if kind == 'bidirectional' else 'prefix')
    generator = torch.Generator().manual_seed(args.seed)  # CPU generator: same samples on every device
    # a varlen model's hole of fixed length is a canvas that cannot grow (DreamOn's fixed-length decoding)
    fixed_hole = suffix is not None and not args.variable_length and model.train_config.get('varlen_rate', 0) > 0
    varlen = dict(variable_length=True, canvas=args.gen_length if fixed_hole else args.canvas, expand_id=tok.expand_id,
                  delete_id=tok.pad_id) if args.variable_length or fixed_hole else {}
    frames = []
    callback = live_display(tok) if args.show else recorder(frames) if args.frames else None
    if varlen and args.frames:  # the canvas of sample 0 after each step, and when each slot was committed
        frames.append((0, 0, varlen['canvas'], None))
        callback = lambda s: frames.append((s['nfe'], s['nfe'], s['canvas'], s['born']))
    out, info = generate(model, [ids] * args.num_samples, gen_length=args.gen_length, block_length=args.block_length,
                         steps=args.steps, alg=args.alg, temperature=args.temperature, top_p=args.top_p,
                         top_k=args.top_k, alg_temp=args.alg_temp, threshold=args.threshold, factor=args.factor,
                         cache=cache, suffix=suffix, eos_id=None if args.no_eos else tok.eos_id, pad_id=tok.pad_id,
                         generator=generator, callback=callback, schedule=args.schedule, **varlen)
    if args.show:
        sys.stdout.write('\x1b[2J\x1b[H')
    P = len(ids)
    for r, row in enumerate(out.tolist()):
        gen = info['middles'][r] if varlen else row[P:P + args.gen_length]
        stop = [j for j, t in enumerate(gen) if t in (tok.eos_id, tok.pad_id)] if not args.no_eos else []
        text = tok.decode(gen[:stop[0]] if stop else gen)
        print(prompt_text + text + (suffix_text or ''))
        print('-' * 40)
    if args.frames and varlen:
        save_frames(args.frames, canvas_segments(tok, frames, ids, suffix or [], cfg.mask_token_id, args.n_frames))
        print(f"saved {args.frames}: {args.n_frames} snapshots of sample 0's canvas")
    elif args.frames:
        start = out.shape[1] - args.gen_length - len(suffix or [])
        hole = tok.pad_id if kind == 'causal' else cfg.mask_token_id  # AR: not-yet-decoded slots hold pad
        save_frames(args.frames, frame_segments(tok, frames, ids, start, start + args.gen_length, hole, args.n_frames))
        print(f"saved {args.frames}: {args.n_frames} snapshots of sample 0's denoising")
    mode = 'AR' if kind == 'causal' else f"{args.alg}, block {info['block_length']}"
    if varlen:
        what = 'a fixed hole' if fixed_hole else 'variable length'
        mode = (f"{args.alg}, {what} from {varlen['canvas']} masks: middles of {info['lengths']} tokens after "
                f"{info['expansions']} expansions and {info['deletions']} deletions")
    print(f"{kind} model, {mode}, cache {cache}: {info['nfe']} forward passes (NFE), "
          f"{info['tokens_per_s']:.1f} tokens/s, {info['seconds']:.2f} s, steps per block {info['steps_per_block']}")


if __name__ == '__main__':
    warnings.formatwarning = lambda msg, *a, **k: f"warning: {msg}\n"  # one line, no source echo
    run_cli(main)
