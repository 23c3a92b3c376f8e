"""
What sample.py shows: the denoising drawn live in the terminal (live_display) or saved as a
picture of snapshots (recorder, frame_segments / canvas_segments, save_frames), and prompt text
read from the command line or a file.
"""
import os
import sys
import time

from lib.cli import UserError

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


REVISED = '\x1b[7;35m{}\x1b[0m'  # ANSI: a revised token in reverse magenta


def render(tok, ids, mask_id, edited=None):
    """Token ids -> text, each mask token drawn as '░' and each revised token (edited[i]) in its own colour."""
    out, run = [], []
    for i, t in enumerate(ids):
        if t == mask_id or (edited and edited[i]):
            out.append(tok.decode(run) + ('░' if t == mask_id else REVISED.format(tok.decode([t]))))
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
        x, edited = info['tokens'][0].tolist(), info.get('edited')
        sys.stdout.write('\x1b[2J\x1b[H' + render(tok, x, info['mask_id'], edited[0].tolist() if edited is not None else None)
                         + f"\n\n[block {info['block']} step {info['step']} nfe {info['nfe']}]\n")
        sys.stdout.flush()
    return show


# -----------------------------------------------------------------------------
# a picture of the denoising: snapshots of the generated span, prompt blue, masks grey, fresh tokens orange,
# revised tokens (editing) purple

def recorder(frames):
    """A generate() callback that keeps sample 0's tokens after every step, and which of them were revised."""
    def record(info):
        edited = info.get('edited')
        frames.append((info['step'], info['nfe'], info['tokens'][0].tolist(),
                       edited[0].tolist() if edited is not None else None))
    return record


def frame_segments(tok, frames, prompt, start, end, mask_id, n, first=None):
    """n snapshots evenly spaced over the run (the first state: all masks, or `first`, e.g. a draft; the answer
    last), each a list of (text, state) pieces: the prompt, then the span [start, end) with state 'mask', 'edit'
    (revised at some step so far), 'new' (since the last snapshot) or 'old'."""
    states = [(0, 0, first or [mask_id] * (end - start), None)] + [
        (s, f, x[start:end], e[start:end] if e else None) for s, f, x, e in frames]
    picks = sorted({round(i * (len(states) - 1) / max(n - 1, 1)) for i in range(n)})
    out, prev = [], states[0][2]
    for i in picks:
        step, nfe, x, edited = states[i]
        segs = [(tok.decode(prompt), 'prompt')] + [
            ('\u2591', 'mask') if t == mask_id else
            (tok.decode([t]), 'edit' if edited and edited[j] else 'new' if prev[j] == mask_id else 'old')
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
    color = {'prompt': '#1c7ed6', 'mask': '#b0b0b0', 'new': '#e8590c', 'old': '#1f2937', 'edit': '#ae3ec9'}
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
            if state in ('new', 'edit'):  # a tinted cell, so that fresh and revised spaces show too
                ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, color='#ffe8cc' if state == 'new' else '#f3d9fa', lw=0))
            ax.text(c, r, ch, family='monospace', fontsize=7, color=color[state], ha='center', va='center')
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
