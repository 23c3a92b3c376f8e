"""
Tokenizers, all run by tiktoken. load_tokenizer(spec) takes

  'bytes'   256 byte tokens + 8 special tokens, offline: the toy default (vocab_size 264)
  'gpt2'    tiktoken's GPT-2 BPE + our special tokens (downloaded once by tiktoken, then cached)
  'qwen3'   Qwen3's (and CoDA's) tokenizer, bundled in data/qwen3_tokenizer/ (Apache-2.0)
  path      a Hugging Face byte-level BPE tokenizer.json (or .json.xz), or a checkpoint directory
            holding one, converted in memory to a tiktoken Encoding: same ids as HF

Every tokenizer has the special tokens the project uses (appended after the last id when
missing): <|endoftext|> = pad, <|im_start|> / <|im_end|> = chat markers (<|im_end|> = eos),
<|mask|> = the diffusion mask token (Qwen3: 151669, as in CoDA), then the fill-in-the-middle
sentinels <|fim_prefix|>, <|fim_middle|>, <|fim_suffix|> (Qwen3 has them: 151659-151661; bytes
gets 260-262, after the first four, so the ids of older checkpoints never move), then <|expand|>,
DreamOn's variable-length infilling target "this slot becomes two masks" (Qwen3: 151670, a free row
of its padded 151,936-row embedding; bytes 263; gpt2 50263). Its partner, "delete this slot", is
<|endoftext|> = pad: the SFT objective already trains trailing pads as "no token here", and
<|im_end|> (eos) keeps its one meaning, the end of an answer (docs/tokenizers.md).
encode() treats special-token strings in the text as plain text, so data can never inject a
mask or eos; only encode_chat() emits chat markers.
"""
import json
import lzma
import os
import re
import unicodedata

import tiktoken

from lib.cli import UserError

# Qwen2/Qwen3's pre-tokenizer split; fancy-regex, which tiktoken runs as is
QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# GPT-2's split, used by tokenizer.json files whose ByteLevel pre-tokenizer has use_regex=true
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
SPECIALS = ('<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|mask|>')  # appended in this order
FIM = ('<|fim_prefix|>', '<|fim_middle|>', '<|fim_suffix|>')  # then these (Bavarian et al. 2022)
EXPAND = '<|expand|>'  # then this one (DreamOn: a masked slot that becomes two masks)
HINT = "use tokenizer 'bytes', 'gpt2', 'qwen3', or a path to a tokenizer.json (or a checkpoint dir holding one)"
QWEN3_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'data', 'qwen3_tokenizer')


class Tokenizer:
    def __init__(self, spec, pat_str, mergeable_ranks, special_tokens, normalize=None):
        special = dict(special_tokens)
        next_id = max(max(mergeable_ranks.values()), max(special.values(), default=-1)) + 1
        for s in SPECIALS + FIM + (EXPAND,):  # e.g. Qwen3 has no <|mask|>: it gets 151669, the id CoDA uses
            if s not in special:
                special[s], next_id = next_id, next_id + 1
        self.spec = self.name = spec  # store in meta.json; load_tokenizer(spec) rebuilds this tokenizer
        self.special = special        # every special string -> id
        self.normalize = normalize    # unicode normal form the HF normalizer applies (Qwen3: NFC)
        self.enc = tiktoken.Encoding(f"nanocoda:{spec}", pat_str=pat_str,
                                     mergeable_ranks=mergeable_ranks, special_tokens=special)
        self.vocab_size = self.enc.max_token_value + 1  # ids this tokenizer can produce
        self.pad_id = special['<|endoftext|>']
        self.eos_id = special['<|im_end|>']
        self.mask_id = special['<|mask|>']
        self.fim_ids = tuple(special[s] for s in FIM)  # (prefix, middle, suffix)
        self.expand_id = special[EXPAND]  # variable-length infilling; its delete target is pad_id
        # chat-template literals are split on special strings; longest first so none shadows another
        self._marker_re = re.compile('(' + '|'.join(map(re.escape, sorted(special, key=len, reverse=True))) + ')')

    def __repr__(self):
        return f"Tokenizer({self.spec!r}, vocab_size={self.vocab_size})"

    def encode(self, text):
        """Ordinary text -> ids. Special-token strings in text are encoded as plain text."""
        if self.normalize:
            text = unicodedata.normalize(self.normalize, text)
        return self.enc.encode_ordinary(text)

    def encode_batch(self, texts, num_threads=8):
        if self.normalize:
            texts = [unicodedata.normalize(self.normalize, t) for t in texts]
        return self.enc.encode_ordinary_batch(texts, num_threads=num_threads)

    def decode(self, ids):
        """ids -> text; special ids give their strings, ids beyond the tokenizer (the padded part
        of a model's vocab) give nothing (as HF), broken utf-8 gives U+FFFD."""
        ids = [int(i) for i in ids]
        return self.enc.decode([i for i in ids if 0 <= i < self.vocab_size], errors='replace')

    def encode_chat(self, messages, add_generation_prompt=True):
        """Qwen3's chat template with enable_thinking=False (what CoDA uses), without tools.
        messages: [{'role': 'system'|'user'|'assistant'|'tool', 'content': str}, ...].
        Template literals may contain special tokens (<|im_start|>, and for Qwen3 also <think>);
        contents are plain text. Text between two special tokens is encoded as one run, as HF
        does when it tokenizes the rendered template."""
        parts = []  # (string, is_template_literal)
        lit = lambda s: parts.append((s, True))
        txt = lambda s: parts.append((s, False))
        n = len(messages)
        if n and messages[0]['role'] == 'system':
            lit('<|im_start|>system\n'); txt(messages[0]['content']); lit('<|im_end|>\n')
        # the last real user query; assistant turns after it (the one being answered) get a think block
        last_query = n - 1
        for i in range(n - 1, -1, -1):
            c = messages[i]['content']
            if messages[i]['role'] == 'user' and not (c.startswith('<tool_response>') and c.endswith('</tool_response>')):
                last_query = i
                break
        for i, m in enumerate(messages):
            role, content = m['role'], m['content']
            if role == 'system' and i == 0:
                continue  # written above
            if role == 'user' or (role == 'system' and i > 0):
                lit(f'<|im_start|>{role}\n'); txt(content); lit('<|im_end|>\n')
            elif role == 'assistant':
                reasoning = m.get('reasoning_content')
                if reasoning is None:
                    reasoning = ''
                    if '</think>' in content:  # inline reasoning "<think>...</think>answer"
                        reasoning = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n')
                        content = content.split('</think>')[-1].lstrip('\n')
                if i > last_query and (i == n - 1 or reasoning):
                    lit('<|im_start|>assistant\n<think>\n'); txt(reasoning.strip('\n'))
                    lit('\n</think>\n\n'); txt(content.lstrip('\n'))
                else:  # earlier turns lose their reasoning
                    lit('<|im_start|>assistant\n'); txt(content)
                lit('<|im_end|>\n')
            elif role == 'tool':  # consecutive tool results share one user turn
                if i == 0 or messages[i - 1]['role'] != 'tool':
                    lit('<|im_start|>user')
                lit('\n<tool_response>\n'); txt(content); lit('\n</tool_response>')
                if i == n - 1 or messages[i + 1]['role'] != 'tool':
                    lit('<|im_end|>\n')
            else:
                raise UserError(f"chat message role {role!r} is unknown; use system, user, assistant or tool")
        if add_generation_prompt:
            lit('<|im_start|>assistant\n<think>\n\n</think>\n\n')
        ids, run = [], ''
        for s, is_lit in parts:
            for j, piece in enumerate(self._marker_re.split(s) if is_lit else [s]):
                if j % 2:  # a special token: flush the text run before it
                    ids += self.encode(run) + [self.special[piece]]
                    run = ''
                else:
                    run += piece
        return ids + self.encode(run)


def bytes_to_unicode():
    """GPT-2's reversible map byte -> printable char, in which byte-level BPE vocabs are written:
    printable latin-1 bytes map to themselves, the other 68 to chr(256), chr(257), ..."""
    keep = [*range(ord('!'), ord('~') + 1), *range(ord('¡'), ord('¬') + 1), *range(ord('®'), ord('ÿ') + 1)]
    others = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + k) for k, b in enumerate(others)}}


def _read_tokenizer_json(path):
    """tokenizer.json, or its xz-compressed copy (the bundled Qwen3 one)."""
    opener = lzma.open if path.endswith('.xz') else open
    try:
        with opener(path, 'rt', encoding='utf-8') as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError, lzma.LZMAError, EOFError) as e:  # JSONDecodeError is a ValueError
        raise UserError(f"tokenizer file {path} is not valid JSON ({type(e).__name__}: {e}); {HINT}") from None


def _from_tokenizer_json(spec, directory=None):
    directory = directory or spec
    if os.path.isdir(directory):
        path = os.path.join(directory, 'tokenizer.json')
        path = path if os.path.isfile(path) or not os.path.isfile(path + '.xz') else path + '.xz'
    else:
        path = directory
    if not os.path.isfile(path):
        raise UserError(f"tokenizer {spec!r}: no such file {path}; {HINT}")
    tj = _read_tokenizer_json(path)
    bpe = tj.get('model') if isinstance(tj, dict) else None
    if not isinstance(bpe, dict) or bpe.get('type') != 'BPE' or not isinstance(bpe.get('vocab'), dict):
        raise UserError(f"tokenizer file {path} has no BPE model; {HINT}")
    added = {t['content']: t['id'] for t in tj.get('added_tokens') or []}
    # vocab strings -> the bytes they stand for; tiktoken ranks are the HF ids themselves
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    try:
        ranks = {bytes(byte_of[c] for c in tok): i for tok, i in bpe['vocab'].items() if tok not in added}
    except KeyError:
        raise UserError(f"tokenizer file {path} is not a byte-level BPE (a vocab entry is not in "
                        f"GPT-2's byte alphabet); {HINT}") from None
    n_plain = len(bpe['vocab']) - len(added.keys() & bpe['vocab'].keys())
    if len(ranks) != n_plain or any(bytes([b]) not in ranks for b in range(256)):
        raise UserError(f"tokenizer file {path}: vocab must hold each of the 256 bytes exactly once; {HINT}")
    # tiktoken merges the adjacent pair whose result has the lowest id, HF the pair listed first in
    # `merges`: the same rule only when merge results have increasing ids (true for trained BPEs)
    merges = [m.split(' ', 1) if isinstance(m, str) else m for m in bpe.get('merges') or []]
    merged = [bpe['vocab'].get(a + b, -1) for a, b in merges]
    if min(merged, default=0) < 0 or any(x >= y for x, y in zip(merged, merged[1:])):
        raise UserError(f"tokenizer file {path}: vocab ids are not in merge order, tiktoken cannot run it; {HINT}")
    # pre-tokenizer: a Split regex (Qwen), else ByteLevel's own GPT-2 regex
    pre = tj.get('pre_tokenizer') or {}
    pat = QWEN_PATTERN
    for p in pre.get('pretokenizers', [pre]):
        if p.get('type') == 'Split' and 'Regex' in (p.get('pattern') or {}):
            pat = p['pattern']['Regex']
        elif p.get('type') == 'ByteLevel' and p.get('use_regex', True):
            pat = GPT2_PATTERN
    norm = (tj.get('normalizer') or {}).get('type')
    if norm not in (None, 'NFC', 'NFKC', 'NFD', 'NFKD'):
        raise UserError(f"tokenizer file {path}: normalizer {norm!r} is not supported; {HINT}")
    return Tokenizer(spec, pat, ranks, added, normalize=norm)


def load_tokenizer(spec):
    """spec: 'bytes' | 'gpt2' | 'qwen3' | path to tokenizer.json | checkpoint dir with tokenizer.json."""
    if spec == 'bytes':
        return Tokenizer('bytes', QWEN_PATTERN, {bytes([b]): b for b in range(256)}, {})
    if spec == 'gpt2':
        try:
            base = tiktoken.get_encoding('gpt2')
        except Exception as e:  # network errors of several kinds when offline
            raise UserError(f"cannot get tiktoken's 'gpt2' encoding ({type(e).__name__}; it is downloaded "
                            f"once, are you offline?); use tokenizer 'bytes' or a path to a Qwen3 "
                            f"tokenizer.json") from None
        return Tokenizer('gpt2', base._pat_str, base._mergeable_ranks, base._special_tokens)
    if spec == 'qwen3':  # stored as 'qwen3' in meta.json: portable across machines
        return _from_tokenizer_json('qwen3', QWEN3_DIR)
    return _from_tokenizer_json(str(spec))
