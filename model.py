"""
The model: a Qwen3 transformer, numerically the same network as Hugging Face's
Qwen3ForCausalLM, with three attention modes:

  causal         next-token AR model (= HF Qwen3)
  bidirectional  CoDA / Dream / LLaDA masked diffusion: every token sees every token
  block          block diffusion (BD3-LM, SDAR, Stable-DiffCoder): a token in block b
                 sees blocks <= b, which makes a KV cache of finished blocks exact

Module and parameter names equal HF's (model.layers.N.self_attn.q_proj.weight ...), so
Qwen3 and CoDA safetensors load with a plain loop and no renaming table.

A forward is model(idx, ctx, rows=..., targets=...): ctx, a Context, says where the tokens sit and
what they see (left padding, positions and mask, a KV-cache window); rows picks the flat positions
whose logits are read; with targets the head returns their cross-entropy (lib/head.py).
"""
import json
import os
from dataclasses import dataclass, fields, asdict
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from lib.cli import DTYPES, UserError, read_json
from lib.head import cross_entropy


# -----------------------------------------------------------------------------
# config: field names are HF Qwen3's config.json keys, plus our four diffusion fields

@dataclass
class ModelConfig:
    vocab_size: int = 264
    hidden_size: int = 256
    intermediate_size: int = 768
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 64
    rope_theta: float = 1e6
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 40960
    tie_word_embeddings: bool = True
    attention_bias: bool = False
    attention: str = 'bidirectional'  # 'bidirectional' (CoDA) | 'block' | 'causal' (AR)
    block_size: int = 4               # block diffusion block size (Stable-DiffCoder uses 4)
    mask_token_id: int = None         # <|mask|>; 151669 in the Qwen3 vocab
    shift_logits: bool = False        # CoDA/Dream: position i is predicted by the logits at i-1

    def __post_init__(self):
        if self.attention not in ('bidirectional', 'block', 'causal'):
            raise UserError(f"attention={self.attention!r} is unknown; use bidirectional, block or causal")
        if self.num_attention_heads % self.num_key_value_heads:
            raise UserError("num_attention_heads must be a multiple of num_key_value_heads")


_QWEN3 = dict(vocab_size=151936, head_dim=128, num_key_value_heads=8, rope_theta=1e6,
              rms_norm_eps=1e-6, max_position_embeddings=40960, mask_token_id=151669)
PRESETS = {
    # tiny: unit tests, trains in seconds; toy: the CPU default (~10 min, see README)
    'tiny': dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, max_position_embeddings=4096),
    'toy': dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, head_dim=32, max_position_embeddings=4096),
    # gpu: one GPU, ~55M parameters at the byte vocab (config/gpu.py says how it was sized)
    'gpu': dict(hidden_size=768, intermediate_size=2304, num_hidden_layers=8, num_attention_heads=12,
                num_key_value_heads=4, head_dim=64, max_position_embeddings=4096),
    # the released Qwen3 shapes; CoDA is Qwen3-1.7B with an untied lm_head
    '0.6B': dict(_QWEN3, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                 num_attention_heads=16, tie_word_embeddings=True),
    '1.7B': dict(_QWEN3, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                 num_attention_heads=16, tie_word_embeddings=True),
    '4B': dict(_QWEN3, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
               num_attention_heads=32, tie_word_embeddings=True),
    '8B': dict(_QWEN3, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
               num_attention_heads=32, tie_word_embeddings=False),
}


def make_config(preset='toy', **overrides):
    if preset not in PRESETS:
        raise UserError(f"unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(ModelConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise UserError(f"unknown model config key(s) {bad}; valid keys: {', '.join(sorted(known))}")
    return ModelConfig(**{**PRESETS[preset], **overrides})


# -----------------------------------------------------------------------------
# attention masks (True = may attend), built once per forward and shared by all layers

def visibility(attention, q_pos, k_pos, block_size):
    """Which keys each query may see, from RoPE positions (..., T) and (..., S) -> (..., T, S)."""
    q, k = q_pos.unsqueeze(-1), k_pos.unsqueeze(-2)
    if attention == 'causal':
        return k <= q
    if attention == 'block':  # a token in block b sees blocks <= b (BD3-LM, block-causal)
        return torch.div(k, block_size, rounding_mode='floor') <= torch.div(q, block_size, rounding_mode='floor')
    return torch.ones(torch.broadcast_shapes(q.shape, k.shape), dtype=torch.bool, device=q_pos.device)


def mode_mask(attention, start, T, S, block_size, device):
    """(T, S) mask for queries at indices [start, start+T) over keys [0, S), no padding; None when the first
    query already sees the last key, so every query sees every key (a cached step over one block, an AR step):
    attention then needs no mask at all, and nothing over the S keys is built."""
    if attention == 'bidirectional' or (attention == 'causal' and S - 1 <= start) or \
            (attention == 'block' and (S - 1) // block_size <= start // block_size):
        return None
    return partial_mask(attention, start, T, S, block_size, device)


@lru_cache(maxsize=64)
def partial_mask(attention, start, T, S, block_size, device):
    return visibility(attention, torch.arange(start, start + T, device=device), torch.arange(S, device=device), block_size)


@lru_cache(maxsize=16)
def block_diffusion_mask(L, block_size, device=None):
    """Training layout [x_t ; x_0] of 2L tokens (BD3-LM): a noisy block b sees noisy block b and
    clean blocks < b; a clean block b sees clean blocks <= b. Use with pos = cat(arange(L), arange(L))."""
    b = torch.arange(L, device=device) // block_size
    qb, kb = b[:, None], b[None, :]
    noisy_noisy, noisy_clean, clean_clean = qb == kb, kb < qb, kb <= qb
    top = torch.cat([noisy_noisy, noisy_clean], dim=1)
    bottom = torch.cat([torch.zeros_like(clean_clean), clean_clean], dim=1)
    return torch.cat([top, bottom], dim=0)


# -----------------------------------------------------------------------------
# where a forward's tokens sit and what they see: one small context for the whole forward

@dataclass
class Context:
    """Positions, mask and cache window of a forward over tokens idx (B, T); the default is a whole
    sequence with the mode's own mask and no cache.

    pad (B,)          left padding per row: RoPE positions are index - pad and pad keys are hidden, so a
                      padded row computes what its unpadded run computes
    pos, attn_mask    RoPE positions (T,) and a mask (T, S) (True = may attend) instead of the mode's:
                      the block-diffusion training layout [x_t ; x_0], attention annealing
    cache, start,     the tokens are indices [start, start+T) of a KVCache's sequence, the keys indices
    kv_len, write     [0, kv_len) (default start+T); write=True commits the new K/V, write=False only peeks
    """
    pad: torch.Tensor = None
    pos: torch.Tensor = None
    attn_mask: torch.Tensor = None
    cache: 'KVCache' = None
    start: int = 0
    kv_len: int = None
    write: bool = True


@dataclass
class LayerInputs:
    """What every layer's attention reads, computed once per forward from the Context."""
    cos: torch.Tensor
    sin: torch.Tensor
    mask: torch.Tensor  # None: every key visible, or causal when is_causal
    is_causal: bool
    ctx: Context
    kv_len: int

    def keys_values(self, layer, k, v):
        """This layer's keys and values over the window: the new ones alone, or with the cache's."""
        c = self.ctx
        return (k, v) if c.cache is None else c.cache.keys_values(layer, k, v, c.start, self.kv_len, c.write)


class KVCache:
    """Preallocated K/V for every layer, (B, n_kv_heads, max_len, head_dim) each (BD3-LM / Fast-dLLM)."""

    def __init__(self, config, batch_size, max_len, device, dtype):
        shape = (batch_size, config.num_key_value_heads, max_len, config.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.max_len = max_len

    def keys_values(self, layer, k, v, start, kv_len, write):
        """K/V over indices [0, kv_len) with the new block's at [start, start+T)."""
        end = start + k.size(2)
        if write:  # commit: the block's K/V become part of the cache
            self.k[layer][:, :, start:end] = k
            self.v[layer][:, :, start:end] = v
            return self.k[layer][:, :, :kv_len], self.v[layer][:, :, :kv_len]
        ck, cv = self.k[layer], self.v[layer]  # peek: the cache is left untouched
        return (torch.cat([ck[:, :, :start], k, ck[:, :, end:kv_len]], dim=2),
                torch.cat([cv[:, :, :start], v, cv[:, :, end:kv_len]], dim=2))


# -----------------------------------------------------------------------------
# the network, one screenful per idea

class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps

    def forward(self, x):  # computed in float32, as HF does, then cast back
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dtype)


def rope(pos, head_dim, theta, dtype):
    """cos/sin for RoPE at integer positions pos (B, T), HF's rotate-half layout -> (B, 1, T, hd)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=pos.device, dtype=torch.float32) / head_dim))
    freqs = pos.float()[..., None] * inv_freq
    emb = torch.cat([freqs, freqs], dim=-1)[:, None]
    return emb.cos().to(dtype), emb.sin().to(dtype)


# devices where SDPA's fused kernels take grouped K/V heads (enable_gqa) only without a mask: with a mask it
# falls back to the math kernel and its T x S scores, so the K/V heads are repeated first (as transformers does)
REPEAT_KV_WITH_MASK = {'cuda'}


def apply_rope(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.config, self.layer_idx = config, layer_idx
        hd, nh, nkv, bias = config.head_dim, config.num_attention_heads, config.num_key_value_heads, config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, nh * hd, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, nkv * hd, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, nkv * hd, bias=bias)
        self.o_proj = nn.Linear(nh * hd, config.hidden_size, bias=bias)
        self.q_norm = RMSNorm(hd, config.rms_norm_eps)  # Qwen3: per-head norm on q and k, before RoPE
        self.k_norm = RMSNorm(hd, config.rms_norm_eps)

    def forward(self, x, inp):
        B, T, _ = x.shape
        hd = self.config.head_dim
        q = self.q_norm(self.q_proj(x).view(B, T, -1, hd)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(B, T, -1, hd)).transpose(1, 2)
        v = self.v_proj(x).view(B, T, -1, hd).transpose(1, 2)
        # under bf16 autocast the norms return float32 but v is bf16; XLA's autocast does not cast SDPA's inputs
        q, k = apply_rope(q, inp.cos, inp.sin).to(v.dtype), apply_rope(k, inp.cos, inp.sin).to(v.dtype)
        k, v = inp.keys_values(self.layer_idx, k, v)
        # grouped-query attention: each K/V head serves num_attention_heads / num_key_value_heads queries
        if inp.mask is not None and q.device.type in REPEAT_KV_WITH_MASK and k.size(1) != q.size(1):
            k, v = (t.repeat_interleave(q.size(1) // k.size(1), dim=1) for t in (k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=inp.mask, is_causal=inp.is_causal,
                                           enable_gqa=k.size(1) != q.size(1))
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):  # SwiGLU
    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):  # pre-norm residual block
    def __init__(self, config, layer_idx):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, inp):
        x = x + self.self_attn(self.input_layernorm(x), inp)
        return x + self.mlp(self.post_attention_layernorm(x))


class Transformer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.model = nn.ModuleDict(dict(
            embed_tokens=nn.Embedding(config.vocab_size, config.hidden_size),
            layers=nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers)),
            norm=RMSNorm(config.hidden_size, config.rms_norm_eps),
        ))
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:  # small Qwen3s share the embedding with the output head
            self.lm_head.weight = self.model.embed_tokens.weight
        self.apply(self._init_weights)

    def _init_weights(self, module):  # HF Qwen3's initializer_range = 0.02
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, 'bias', None) is not None:
                nn.init.zeros_(module.bias)

    def resize_token_embeddings(self, n):
        """Grow the vocabulary to n rows (HF's name), e.g. for a new special token: the new embedding
        (and untied lm_head) rows start at the mean of the old ones, so the new token begins as an average one."""
        old = self.config.vocab_size
        if n <= old:
            return
        def grow(w):
            return nn.Parameter(torch.cat([w.data, w.data.mean(0, keepdim=True).expand(n - old, -1)]))
        self.model.embed_tokens.weight = grow(self.model.embed_tokens.weight)
        self.model.embed_tokens.num_embeddings = n
        self.lm_head.weight = self.model.embed_tokens.weight if self.config.tie_word_embeddings else grow(self.lm_head.weight)
        self.lm_head.out_features = n
        self.config.vocab_size = n

    def num_params(self):
        return sum(p.numel() for p in self.parameters())  # a tied head is counted once

    def new_cache(self, batch_size, max_len):
        p = self.lm_head.weight
        return KVCache(self.config, batch_size, max_len, p.device, p.dtype)

    def forward(self, idx, ctx=None, *, rows=None, targets=None, weights=None):
        """Raw logits (B, T, V) of tokens idx (B, T), placed and masked as ctx (a Context) says.

        rows: flat indices into the B*T positions (b * T + i) whose logits are read -> (N, V); the
        lm_head (most of the cost at a 152k vocabulary) runs on those rows only. targets (N,) for
        those rows: their cross-entropy instead of logits (head.cross_entropy: per row, or the
        weights-weighted sum), never more than a chunk of rows x V at once.
        """
        inp = self.layer_inputs(idx, ctx or Context())
        x = self.model.embed_tokens(idx)  # the idea: embed -> decoder layers -> final norm -> lm_head
        for layer in self.model.layers:
            x = layer(x, inp)
        x = self.model.norm(x)
        if rows is not None:  # gather the rows' hidden states before the head
            x = x.flatten(0, 1)[rows]
        if targets is not None:
            return cross_entropy(x.flatten(0, -2), self.lm_head.weight, targets, weights)
        return self.lm_head(x)

    def layer_inputs(self, idx, ctx):
        """RoPE cos/sin of the query positions and the attention mask (None + is_causal on the fast paths)."""
        (B, T), cfg, dev = idx.shape, self.config, idx.device
        pad, pos, start = ctx.pad, ctx.pos, ctx.start
        kv_len = start + T if ctx.kv_len is None else ctx.kv_len
        S = kv_len if ctx.cache is not None else T
        q_idx, k_idx = torch.arange(start, start + T, device=dev), torch.arange(S, device=dev)
        if pos is None:  # positions of the queries (for RoPE) and of the keys (for the mask)
            q_pos, k_pos = q_idx.expand(B, T), k_idx.expand(B, S)
            if pad is not None:
                q_pos, k_pos = (q_pos - pad[:, None]).clamp(min=0), (k_pos - pad[:, None]).clamp(min=0)
        else:
            q_pos = k_pos = pos.expand(B, T)
        mask, is_causal = ctx.attn_mask, False
        if mask is None and pad is None and ctx.cache is None and cfg.attention != 'block':
            is_causal = cfg.attention == 'causal'  # fast paths: no mask tensor at all
        elif mask is None and pad is None and pos is None:  # same for every row: built once per shape
            mask = mode_mask(cfg.attention, start, T, S, cfg.block_size, dev)
        elif mask is None:
            mask = visibility(cfg.attention, q_pos, k_pos, cfg.block_size)
            if pad is not None:  # padding keys are invisible; a query always sees itself (no empty rows)
                mask = (mask & (k_idx[None, None] >= pad[:, None, None])) | (q_idx[:, None] == k_idx[None, :])
            mask = mask[:, None]  # (B, 1, T, S), broadcast over heads
        cos, sin = rope(q_pos, cfg.head_dim, cfg.rope_theta, self.lm_head.weight.dtype)
        return LayerInputs(cos, sin, mask, is_causal, ctx, kv_len)

    # -------------------------------------------------------------------------
    # Hugging Face checkpoints: config.json + model.safetensors (or shards + index)

    @staticmethod
    def read_hf_config(path):
        """The ModelConfig fields of a Hugging Face Qwen3 / CoDA directory, from its config.json (checked)
        -> (fields, the whole config.json)."""
        cfg_path = os.path.join(path, 'config.json')
        if not os.path.isfile(cfg_path):
            raise UserError(f"{path}: no config.json; point to a Hugging Face Qwen3 or CoDA checkpoint directory")
        hf = read_json(cfg_path, 'config.json')
        kind = str(hf.get('model_type', '')).lower()
        if kind not in ('qwen3', 'coda'):
            raise UserError(f"{path}: model_type {hf.get('model_type')!r} is not supported; expected qwen3 or CoDA")
        need = [k for k in ('vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads')
                if not isinstance(hf.get(k), int) or isinstance(hf.get(k), bool) or hf[k] < 1]
        if need:
            raise UserError(f"{cfg_path}: {', '.join(need)} missing or not a positive integer; the file is damaged, "
                            f"download the checkpoint again")
        known = {f.name for f in fields(ModelConfig)}
        args = {k: v for k, v in hf.items() if k in known}
        args.setdefault('head_dim', hf['hidden_size'] // hf['num_attention_heads'])
        rope_params = hf.get('rope_parameters') or hf.get('rope_scaling') or {}  # transformers 5 nests rope_theta
        if rope_params.get('rope_type', rope_params.get('type', 'default')) != 'default':
            raise UserError(f"{path}: rope scaling {rope_params} is not supported; only plain RoPE")
        if 'rope_theta' in rope_params:
            args.setdefault('rope_theta', rope_params['rope_theta'])
        args.setdefault('tie_word_embeddings', False if kind == 'coda' else True)
        if kind == 'coda':  # CoDA: a bidirectional masked-diffusion Qwen3 with Dream's shifted logits
            args.setdefault('attention', 'bidirectional')
            args.setdefault('shift_logits', True)
            args.setdefault('mask_token_id', 151669)
        return args, hf

    @classmethod
    def from_pretrained(cls, path, dtype=None, **overrides):
        from safetensors import safe_open
        args, hf = cls.read_hf_config(path)
        config = ModelConfig(**{**args, **overrides})
        # read every tensor name first, so problems are reported all at once
        index = os.path.join(path, 'model.safetensors.index.json')
        if os.path.isfile(index):
            weight_map = read_json(index, 'safetensors index').get('weight_map')
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise UserError(f"{index} has no weight_map of tensor names to files; download the checkpoint again")
            files = sorted(set(weight_map.values()))
        elif os.path.isfile(os.path.join(path, 'model.safetensors')):
            files = ['model.safetensors']
        else:
            raise UserError(f"{path}: no model.safetensors or model.safetensors.index.json")
        missing_files = [f for f in files if not os.path.isfile(os.path.join(path, f))]
        if missing_files:
            raise UserError(f"{path}: missing shard(s) {', '.join(missing_files)}; download the complete checkpoint")
        with torch.device('meta'):
            model = cls(config)
        sd = model.state_dict()  # tied: lm_head.weight and embed_tokens.weight are one tensor
        stored = str(hf.get('torch_dtype') or hf.get('dtype') or 'float32')
        dtype = dtype or (getattr(torch, stored) if stored in DTYPES else torch.float32)
        loaded, problems = {}, []
        for fname in files:
            try:  # a truncated or foreign file fails in its header or in a tensor's bytes
                with safe_open(os.path.join(path, fname), framework='pt') as f:
                    for name in f.keys():
                        if name not in sd:
                            problems.append(f"unexpected {name}")
                            continue
                        t = f.get_tensor(name)
                        if tuple(t.shape) != tuple(sd[name].shape):
                            problems.append(f"{name} has shape {tuple(t.shape)}, expected {tuple(sd[name].shape)}")
                        loaded[name] = t.to(dtype)
            except Exception as e:
                raise UserError(f"{os.path.join(path, fname)} is not a readable safetensors file ({type(e).__name__}: "
                                f"{str(e)[:80]}); the download is incomplete or damaged, download it again") from None
        if config.tie_word_embeddings and 'lm_head.weight' not in loaded and 'model.embed_tokens.weight' in loaded:
            loaded['lm_head.weight'] = loaded['model.embed_tokens.weight']
        problems += [f"missing {k}" for k in sd if k not in loaded]
        if problems:
            raise UserError(f"{path}: checkpoint does not fit the config: {'; '.join(problems[:8])}"
                            + (f" (+{len(problems) - 8} more)" if len(problems) > 8 else ""))
        model.load_state_dict(loaded, assign=True, strict=True)
        if config.tie_word_embeddings:  # assign=True replaced the shared tensor: tie it again
            model.lm_head.weight = model.model.embed_tokens.weight
        return model

    def save_pretrained(self, path, max_shard_size=None, **extra):
        """HF layout. attention='causal' writes a plain qwen3 config (transformers loads it);
        any other mode writes model_type CoDA with our diffusion fields. extra: more keys of config.json."""
        from safetensors.torch import save_file
        os.makedirs(path, exist_ok=True)
        cfg = asdict(self.config)
        causal = cfg['attention'] == 'causal'
        hf = dict(cfg, model_type='qwen3' if causal else 'CoDA', architectures=['Qwen3ForCausalLM'] if causal else ['CoDALanguageModel'],
                  torch_dtype=str(self.lm_head.weight.dtype).replace('torch.', ''), hidden_act='silu',
                  attention_dropout=0.0, initializer_range=0.02,
                  rope_parameters={'rope_type': 'default', 'rope_theta': cfg['rope_theta']}, use_cache=True, use_sliding_window=False,
                  **extra)
        sd = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        if self.config.tie_word_embeddings:
            sd.pop('lm_head.weight')  # stored once, as HF does
        # shards of at most max_shard_size bytes, named as HF names them
        shards, cur, size = [], {}, 0
        for k, v in sd.items():
            n = v.numel() * v.element_size()
            if max_shard_size and cur and size + n > max_shard_size:
                shards.append(cur)
                cur, size = {}, 0
            cur[k], size = v, size + n
        shards.append(cur)
        names = ['model.safetensors'] if len(shards) == 1 else \
            [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        for name, shard in zip(names, shards):
            tmp = os.path.join(path, name + '.tmp')
            save_file(shard, tmp, metadata={'format': 'pt'})
            os.replace(tmp, os.path.join(path, name))
        if len(shards) > 1:
            weight_map = {k: name for name, shard in zip(names, shards) for k in shard}
            total = sum(v.numel() * v.element_size() for v in sd.values())
            with open(os.path.join(path, 'model.safetensors.index.json'), 'w') as f:
                json.dump({'metadata': {'total_size': total}, 'weight_map': weight_map}, f, indent=2)
        with open(os.path.join(path, 'config.json'), 'w') as f:
            json.dump(hf, f, indent=2)
