"""
Tokenizer tests: python -m pytest tests/test_tokenizer.py -q
Offline. The HF `tokenizers` / `transformers` libraries are the reference for ids and chat
templates; the real Qwen3 tokenizer is the copy bundled in data/qwen3_tokenizer/ (decompressed here
for HF), so these tests run in any clone.
"""
import glob
import json
import lzma
import os
import shutil
import random
import unicodedata

import pytest

from lib import tokenizer as T
from model import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STDLIB = os.path.dirname(os.__file__)

# hand-picked hard cases: CJK, emoji (ZWJ, skin tone, flags), combining marks, RTL, odd whitespace
UNICODE_TEXTS = [
    "héllo wörld, naïve café — “quotes” «guillemets» ½ ∑ ∞ ≠ ≤",
    "中文分词测试：我们在这里写代码。日本語のテキスト、カタカナ。한국어 문장입니다.",
    "emoji 😀👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️ 🧑🏿‍💻 end",
    "e\u0301 a\u0308 (combining) ﬁ ligature, Ω Å, \u00a0nbsp, \u3000ideographic space, zero\u200bwidth",
    "مرحبا بالعالم שלום עולם Привет мир Γειά σου κόσμε",
    "def f(x):\n\treturn x  \n\n\n    \t  \r\n\r\n   trailing   \n" + " " * 37 + "x\t\t\ty\n",
    "  leading spaces\n\n\n\n\tTabs\tand\ttabs    and   many     spaces   \r\n",
    "It's we're they've I'm you'll he'd IT'S WE'RE 'S 1234567890 3.14159 0x1F 1e-9 ___init___",
    "x = {'a': [1, 2, 3]}  # comment with ünïcödé\nprint(f\"{x!r:>10}\")\n",
    "\n", " ", "\t", "", "a", "\r\n\r\n", "   \n   ", "!!!???...",
]


def random_text(rng, n):
    """Random unicode (no surrogates), biased towards ASCII, whitespace and a few scripts."""
    pools = [(0x20, 0x7e), (0x09, 0x0d), (0xa0, 0x24f), (0x370, 0x4ff), (0x4e00, 0x9fff),
             (0x1f300, 0x1faff), (0x0, 0x10ffff)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(pools)
        c = rng.randint(lo, hi)
        out.append(chr(c) if not 0xd800 <= c <= 0xdfff else 'z')
    return ''.join(out)


def stdlib_sample(k, seed=0):
    files = sorted(glob.glob(os.path.join(STDLIB, '**', '*.py'), recursive=True))
    return [open(f, encoding='utf-8', errors='replace').read() for f in random.Random(seed).sample(files, k)]


def plain(texts, tok):
    """Texts without special-token strings (HF would parse those as special tokens, we do not)."""
    return [t for t in texts if not any(s in t for s in tok.special)]


# -----------------------------------------------------------------------------
# bytes

def test_bytes_ids_and_roundtrip():
    tok = T.load_tokenizer('bytes')
    assert (tok.vocab_size, tok.pad_id, tok.special['<|im_start|>'], tok.eos_id, tok.mask_id) == (264, 256, 257, 258, 259)
    assert tok.fim_ids == (260, 261, 262)  # FIM sentinels after the first four: older checkpoints keep their ids
    assert tok.expand_id == 263  # then <|expand|>
    assert tok.spec == tok.name == 'bytes'
    rng = random.Random(0)
    texts = UNICODE_TEXTS + [random_text(rng, rng.randint(0, 300)) for _ in range(300)]
    for t in texts + ['<|mask|><|im_end|><|endoftext|>']:
        ids = tok.encode(t)
        assert ids == list(t.encode('utf-8'))  # one token per byte, specials in text stay text
        assert tok.decode(ids) == t
    assert tok.decode([104, 105, tok.mask_id, tok.eos_id]) == 'hi<|mask|><|im_end|>'
    assert tok.decode([0xe2, 0x82]) == '\ufffd'  # truncated utf-8 is replaced, not an exception


def test_bytes_chat_markers():
    tok = T.load_tokenizer('bytes')
    ids = tok.encode_chat([{'role': 'user', 'content': 'hi <|im_end|>'}])
    assert ids[0] == 257 and ids.count(258) == 1  # the content's "<|im_end|>" stays text
    assert tok.decode(ids) == ('<|im_start|>user\nhi <|im_end|><|im_end|>\n'
                               '<|im_start|>assistant\n<think>\n\n</think>\n\n')


# -----------------------------------------------------------------------------
# gpt2 (never downloaded in tests)

def test_gpt2_offline_error(monkeypatch):
    def offline(name):
        raise ConnectionError('no network')
    monkeypatch.setattr(T.tiktoken, 'get_encoding', offline)
    with pytest.raises(UserError, match="offline.*'bytes'.*tokenizer.json"):
        T.load_tokenizer('gpt2')


def test_gpt2_appends_specials(monkeypatch):
    # a stand-in for tiktoken's gpt2 encoding: the same layout (ranks, then <|endoftext|> last)
    fake = T.tiktoken.Encoding('fake', pat_str=T.GPT2_PATTERN, special_tokens={'<|endoftext|>': 256},
                               mergeable_ranks={bytes([b]): b for b in range(256)})
    monkeypatch.setattr(T.tiktoken, 'get_encoding', lambda name: fake)
    tok = T.load_tokenizer('gpt2')
    assert (tok.pad_id, tok.special['<|im_start|>'], tok.eos_id, tok.mask_id, tok.vocab_size) == (256, 257, 258, 259, 264)
    assert tok.fim_ids == (260, 261, 262) and tok.expand_id == 263
    assert tok.spec == 'gpt2' and tok.decode(tok.encode('a <|endoftext|>')) == 'a <|endoftext|>'


# -----------------------------------------------------------------------------
# tokenizer.json conversion vs HF tokenizers

@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    """A tiny byte-level BPE trained here with Qwen's pre-tokenizer, saved as tokenizer.json."""
    tk = pytest.importorskip('tokenizers')
    from tokenizers import models, normalizers, pre_tokenizers, decoders, trainers
    hf = tk.Tokenizer(models.BPE())
    hf.normalizer = normalizers.NFC()
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tk.Regex(T.QWEN_PATTERN), behavior='isolated'),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, show_progress=False,
                                  special_tokens=['<|endoftext|>', '<|im_start|>', '<|im_end|>'],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(stdlib_sample(20, seed=1) + UNICODE_TEXTS * 5, trainer)
    path = str(tmp_path_factory.mktemp('tok') / 'tokenizer.json')
    hf.save(path)
    return hf, path


def test_synthetic_matches_hf(synthetic):
    hf, path = synthetic
    tok = T.load_tokenizer(path)
    n_vocab = hf.get_vocab_size()
    assert tok.mask_id == n_vocab and tok.vocab_size == n_vocab + 5  # appended after the last id, then FIM, expand
    assert tok.fim_ids == (n_vocab + 1, n_vocab + 2, n_vocab + 3) and tok.expand_id == n_vocab + 4
    assert (tok.pad_id, tok.eos_id) == (hf.token_to_id('<|endoftext|>'), hf.token_to_id('<|im_end|>'))
    rng = random.Random(1)
    texts = plain(stdlib_sample(15, seed=2) + UNICODE_TEXTS + [random_text(rng, 200) for _ in range(100)], tok)
    for t in texts:
        assert tok.encode(t) == hf.encode(t).ids, t[:80]
    assert tok.encode_batch(texts[:5]) == [hf.encode(t).ids for t in texts[:5]]
    # a checkpoint directory holding tokenizer.json works too
    assert T.load_tokenizer(os.path.dirname(path)).encode('def f(): pass') == tok.encode('def f(): pass')


@pytest.fixture(scope='module')
def qwen():
    return T.load_tokenizer('qwen3')


@pytest.fixture(scope='module')
def qwen_dir(tmp_path_factory):
    """The bundled Qwen3 files as HF reads them: tokenizer.json (decompressed) + tokenizer_config.json."""
    d = tmp_path_factory.mktemp('qwen3')
    with lzma.open(os.path.join(T.QWEN3_DIR, 'tokenizer.json.xz')) as f:
        (d / 'tokenizer.json').write_bytes(f.read())
    shutil.copy(os.path.join(T.QWEN3_DIR, 'tokenizer_config.json'), d)
    return str(d)


def test_qwen3_ids(qwen, qwen_dir):
    assert (qwen.eos_id, qwen.pad_id, qwen.mask_id, qwen.vocab_size) == (151645, 151643, 151669, 151671)
    assert qwen.expand_id == 151670 < 151936  # a free row of the padded embedding, right after CoDA's mask
    assert qwen.special['<|im_start|>'] == 151644 and qwen.special['</think>'] == 151668
    assert qwen.fim_ids == (151659, 151660, 151661)  # Qwen3's own <|fim_prefix|>, <|fim_middle|>, <|fim_suffix|>
    assert T.load_tokenizer(qwen.spec).encode('x = 1') == qwen.encode('x = 1')  # spec reloads
    assert T.load_tokenizer(qwen_dir).encode('x = 1') == qwen.encode('x = 1')  # the plain file too
    fim = ['<|fim_prefix|>', '<|fim_middle|>', '<|fim_suffix|>']
    assert [qwen.special[s] for s in fim] == [151659, 151660, 151661]


def test_qwen3_matches_hf(qwen, qwen_dir):
    tk = pytest.importorskip('tokenizers')
    hf = tk.Tokenizer.from_file(os.path.join(qwen_dir, 'tokenizer.json'))
    rng = random.Random(2)
    texts = plain(stdlib_sample(80) + UNICODE_TEXTS + [random_text(rng, 300) for _ in range(200)], qwen)
    assert len(texts) > 250
    for t in texts:
        assert qwen.encode(t) == hf.encode(t, add_special_tokens=False).ids, t[:80]


def test_qwen3_roundtrip_and_specials(qwen):
    rng = random.Random(3)
    texts = stdlib_sample(20, seed=3) + UNICODE_TEXTS + [random_text(rng, 300) for _ in range(200)]
    for t in texts:
        t = unicodedata.normalize('NFC', t)  # Qwen3's normalizer is NFC; NFC text round-trips exactly
        assert qwen.decode(qwen.encode(t)) == t
    assert qwen.encode('e\u0301') == qwen.encode('\u00e9')
    for s in ['<|mask|>', '<|im_end|>', '<|endoftext|>', '<think>']:
        ids = qwen.encode(f'a {s} b')
        assert not set(ids) & set(qwen.special.values()) and qwen.decode(ids) == f'a {s} b'
    assert qwen.decode([qwen.mask_id, qwen.eos_id]) == '<|mask|><|im_end|>'
    assert qwen.decode([9707, 151700, 151935]) == qwen.decode([9707])  # padded-vocab ids decode to nothing


CONVERSATIONS = [
    [{'role': 'user', 'content': 'Write a Python function that reverses a string.'}],
    [{'role': 'system', 'content': 'You are a careful coder.'},
     {'role': 'user', 'content': 'def add(a, b):\n    """Add two numbers."""\n'}],
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'What is 2+2?'},
     {'role': 'assistant', 'content': '4'}, {'role': 'user', 'content': '  And\t3+3?\r\n'}],
    [{'role': 'user', 'content': 'q1'}, {'role': 'assistant', 'content': '<think>\nhmm\n</think>\n\nanswer 1'},
     {'role': 'user', 'content': '中文 😀'}, {'role': 'assistant', 'content': '\n\nfinal answer'}],
    [{'role': 'user', 'content': 'run it'}, {'role': 'assistant', 'content': 'calling'},
     {'role': 'tool', 'content': 'out 1'}, {'role': 'tool', 'content': 'out 2'},
     {'role': 'assistant', 'content': 'done', 'reasoning_content': 'read the outputs'}],
]


@pytest.fixture(scope='module')
def hf_chat(qwen_dir):
    pytest.importorskip('transformers')
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(qwen_dir, local_files_only=True)


@pytest.mark.parametrize('i', range(len(CONVERSATIONS)))
@pytest.mark.parametrize('gen', [True, False])
def test_chat_matches_transformers(hf_chat, qwen, i, gen):
    msgs = CONVERSATIONS[i]
    ref = hf_chat.apply_chat_template(msgs, tokenize=True, add_generation_prompt=gen, enable_thinking=False)
    ref = ref if isinstance(ref, list) else ref['input_ids']
    assert qwen.encode_chat(msgs, add_generation_prompt=gen) == ref
    # the byte tokenizer renders the same template string, with its own marker ids
    text = hf_chat.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen, enable_thinking=False)
    assert T.load_tokenizer('bytes').decode(T.load_tokenizer('bytes').encode_chat(msgs, gen)) == text


def test_chat_prompt_is_prefix(qwen):
    """SFT: the prompt with generation prefix is a prefix of the full conversation (CoDA's SFT split)."""
    msgs = [{'role': 'user', 'content': 'Fix the bug.'}, {'role': 'assistant', 'content': 'def f():\n    return 1'}]
    prompt, full = qwen.encode_chat(msgs[:1]), qwen.encode_chat(msgs, add_generation_prompt=False)
    assert full[:len(prompt)] == prompt and full[-2:] == [qwen.eos_id, qwen.encode('\n')[0]]


# -----------------------------------------------------------------------------
# bad input

def test_bad_tokenizer_files(tmp_path):
    (tmp_path / 'notjson.json').write_text('{not json')
    (tmp_path / 'wordpiece.json').write_text(json.dumps({'model': {'type': 'WordPiece', 'vocab': {'a': 0}}}))
    (tmp_path / 'list.json').write_text('[1, 2]')
    (tmp_path / 'notbytes.json').write_text(json.dumps({'model': {'type': 'BPE', 'vocab': {'a b': 0}, 'merges': []}}))
    (tmp_path / 'fewbytes.json').write_text(json.dumps({'model': {'type': 'BPE', 'vocab': {'a': 0}, 'merges': []}}))
    (tmp_path / 'binary.json').write_bytes(b'\xff\xfe\x00garbage')
    (tmp_path / 'emptydir').mkdir()
    vocab = {c: b for b, c in T.bytes_to_unicode().items()}  # ids must follow merge order, here they do not
    vocab.update({'ab': 256, 'cd': 257})
    (tmp_path / 'order.json').write_text(json.dumps({'model': {'type': 'BPE', 'vocab': vocab, 'merges': ['c d', 'a b']}}))
    for name in ['missing.json', 'notjson.json', 'wordpiece.json', 'list.json', 'notbytes.json',
                 'fewbytes.json', 'binary.json', 'emptydir', 'order.json']:
        with pytest.raises(UserError) as e:
            T.load_tokenizer(str(tmp_path / name))
        assert '\n' not in str(e.value) and "'bytes'" in str(e.value)
    with pytest.raises(UserError):
        T.load_tokenizer('bytes').encode_chat([{'role': 'robot', 'content': 'x'}])
