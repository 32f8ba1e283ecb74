"""A LLaMA-architecture decoder in plain PyTorch (1.13 and 2.x): RMSNorm, rotate_half RoPE with
optional linear position interpolation, SwiGLU, tied embeddings. Tensor names and layout are Hugging
Face's LlamaForCausalLM, so the exported safetensors load in transformers and in PiServe alike."""
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class LlamaShape:
    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 704
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5

    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_cos_sin(shape: LlamaShape, seq_len, factor, device):
    """HF's default inv_freq (float32), divided by the linear factor (PI: position m -> m / factor)."""
    d = shape.head_dim
    inv_freq = 1.0 / (shape.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    inv_freq = inv_freq / factor
    t = torch.arange(seq_len, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(device), emb.sin().to(device)


class Attention(nn.Module):
    def __init__(self, s: LlamaShape):
        super().__init__()
        self.s = s
        hd = s.head_dim
        self.q_proj = nn.Linear(s.hidden_size, s.num_attention_heads * hd, bias=False)
        self.k_proj = nn.Linear(s.hidden_size, s.num_key_value_heads * hd, bias=False)
        self.v_proj = nn.Linear(s.hidden_size, s.num_key_value_heads * hd, bias=False)
        self.o_proj = nn.Linear(s.num_attention_heads * hd, s.hidden_size, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        s, hd = self.s, self.s.head_dim
        q = self.q_proj(x).view(b, t, s.num_attention_heads, hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, s.num_key_value_heads, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, s.num_key_value_heads, hd).transpose(1, 2)
        q = q * cos[:t].to(q.dtype) + rotate_half(q) * sin[:t].to(q.dtype)
        k = k * cos[:t].to(k.dtype) + rotate_half(k) * sin[:t].to(k.dtype)
        groups = s.num_attention_heads // s.num_key_value_heads
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # torch 1.13
            att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            att = att.masked_fill(mask, float("-inf")).softmax(-1)
            y = att @ v
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))


class Mlp(nn.Module):
    def __init__(self, s: LlamaShape):
        super().__init__()
        self.gate_proj = nn.Linear(s.hidden_size, s.intermediate_size, bias=False)
        self.up_proj = nn.Linear(s.hidden_size, s.intermediate_size, bias=False)
        self.down_proj = nn.Linear(s.intermediate_size, s.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, s: LlamaShape):
        super().__init__()
        self.input_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.self_attn = Attention(s)
        self.post_attention_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.mlp = Mlp(s)

    def forward(self, x, cos, sin, dropout):
        x = x + F.dropout(self.self_attn(self.input_layernorm(x), cos, sin), dropout, self.training)
        return x + F.dropout(self.mlp(self.post_attention_layernorm(x)), dropout, self.training)


class Inner(nn.Module):
    def __init__(self, s: LlamaShape):
        super().__init__()
        self.embed_tokens = nn.Embedding(s.vocab_size, s.hidden_size)
        self.layers = nn.ModuleList([Layer(s) for _ in range(s.num_hidden_layers)])
        self.norm = RMSNorm(s.hidden_size, s.rms_norm_eps)


class Llama(nn.Module):
    """LlamaForCausalLM with tied embeddings: state_dict keys are model.* as in HF."""

    def __init__(self, s: LlamaShape, dropout=0.0):
        super().__init__()
        self.shape = s
        self.dropout = dropout
        self.model = Inner(s)
        self.rope_factor = 1.0
        self._rope = None
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() == 2:
                # GPT-2 style: residual output projections scaled down by depth.
                scale = 1 / math.sqrt(2 * s.num_hidden_layers) if name.endswith(("o_proj.weight", "down_proj.weight")) else 1
                nn.init.normal_(p, 0.0, std * scale)

    def set_rope(self, factor):
        self.rope_factor = factor
        self._rope = None

    def forward(self, idx):
        t = idx.shape[1]
        if self._rope is None or self._rope[0].shape[0] < t or self._rope[0].device != idx.device:
            self._rope = rope_cos_sin(self.shape, max(t, 256), self.rope_factor, idx.device)
        cos, sin = self._rope
        x = self.model.embed_tokens(idx)
        for layer in self.model.layers:
            x = layer(x, cos, sin, self.dropout)
        x = self.model.norm(x)
        return x @ self.model.embed_tokens.weight.t()  # tied lm_head


def hf_config(s: LlamaShape, max_positions, rope_scaling=None, bos=1, eos=2):
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "vocab_size": s.vocab_size, "hidden_size": s.hidden_size, "intermediate_size": s.intermediate_size,
        "num_hidden_layers": s.num_hidden_layers, "num_attention_heads": s.num_attention_heads,
        "num_key_value_heads": s.num_key_value_heads, "max_position_embeddings": max_positions,
        "rms_norm_eps": s.rms_norm_eps, "rope_theta": s.rope_theta, "rope_scaling": rope_scaling,
        "tie_word_embeddings": True, "attention_bias": False, "mlp_bias": False,
        "bos_token_id": bos, "eos_token_id": eos, "torch_dtype": "bfloat16", "initializer_range": 0.02,
    }
    return cfg


def shape_dict(s: LlamaShape):
    return asdict(s)
