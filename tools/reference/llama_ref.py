"""Independent float64 reference for Hugging Face Llama / Mistral inference semantics.

This module is the ground truth that PiServe's C# engine is tested against.  It is
written from the published semantics of transformers' ``LlamaForCausalLM`` /
``MistralForCausalLM`` in plain PyTorch (no ``transformers``, no ``safetensors``
package), so that a bug in one implementation cannot silently hide in the other.

Precision policy
----------------
* Weights are read from the checkpoint in their stored dtype (F32 / F16 / BF16) and
  widened *exactly* to float64.  Everything after that is float64.
* The one exception is RoPE's inverse frequencies: transformers computes
  ``inv_freq`` with float32 torch ops, and the rounding of those float32 values is
  part of what a model "means".  We reproduce those float32 ops literally (same
  expression order, same torch kernels) and only then widen to float64.  Angles
  (``position * inv_freq``), cos/sin and everything downstream are float64.

Nothing here is tuned for speed: clarity over cleverness.  Models are tiny.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

F64 = torch.float64

# --------------------------------------------------------------------------------------
# safetensors I/O (our own writer/reader; the `safetensors` package is not used)
# --------------------------------------------------------------------------------------
# Layout: u64 little-endian N | N bytes of JSON header (space padded to a multiple of 8)
#         | data section, tensors packed back to back, raw little-endian.
# data_offsets in the header are relative to the start of the data section.

_ST_DTYPES = {
    # safetensors name -> (torch dtype of the stored values, bytes per element)
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
}
_TORCH_TO_ST = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def tensor_to_le_bytes(t: torch.Tensor) -> bytes:
    """Raw little-endian bytes of a float32/float16/bfloat16 tensor."""
    t = t.contiguous()
    if t.dtype == torch.float32:
        return t.numpy().astype("<f4", copy=False).tobytes()
    if t.dtype == torch.float16:
        return t.numpy().astype("<f2", copy=False).tobytes()
    if t.dtype == torch.bfloat16:
        # numpy has no bfloat16: reinterpret the 16-bit patterns as int16.
        return t.view(torch.int16).numpy().astype("<i2", copy=False).tobytes()
    raise ValueError(f"unsupported dtype {t.dtype}")


def le_bytes_to_tensor(buf: bytes, st_dtype: str, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of tensor_to_le_bytes: returns a tensor of the stored dtype."""
    if st_dtype == "F32":
        arr = np.frombuffer(buf, dtype="<f4").astype(np.float32)
        return torch.from_numpy(arr.copy()).reshape(list(shape))
    if st_dtype == "F16":
        arr = np.frombuffer(buf, dtype="<f2").astype(np.float16)
        return torch.from_numpy(arr.copy()).reshape(list(shape))
    if st_dtype == "BF16":
        arr = np.frombuffer(buf, dtype="<i2").astype(np.int16)
        return torch.from_numpy(arr.copy()).view(torch.bfloat16).reshape(list(shape))
    raise ValueError(f"unsupported safetensors dtype {st_dtype}")


def write_safetensors(path: str, tensors: Dict[str, torch.Tensor]) -> int:
    """Write tensors (in dict order) to `path`.  Returns the size of the data section."""
    header: Dict[str, object] = {"__metadata__": {"format": "pt"}}
    blobs: List[bytes] = []
    offset = 0
    for name, t in tensors.items():
        blob = tensor_to_le_bytes(t)
        header[name] = {
            "dtype": _TORCH_TO_ST[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)  # pad with spaces to a multiple of 8
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for blob in blobs:
            f.write(blob)
    return offset


def read_safetensors(path: str) -> Dict[str, torch.Tensor]:
    """Read a safetensors file; tensors keep their stored dtype."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    out: Dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        out[name] = le_bytes_to_tensor(data[b:e], info["dtype"], info["shape"])
    return out


def load_checkpoint(folder: str) -> Tuple[dict, Dict[str, torch.Tensor]]:
    """Load config.json and all weights (single file or sharded with an index).

    Returns (config dict, {name: float64 tensor}).  Widening bf16/f16/f32 to float64 is
    exact, so the reference sees precisely the values the C# engine reads."""
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    index_path = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
        files = sorted(set(index["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights: Dict[str, torch.Tensor] = {}
    for fn in files:
        for name, t in read_safetensors(os.path.join(folder, fn)).items():
            weights[name] = t.to(F64)
    return config, weights


# --------------------------------------------------------------------------------------
# RoPE parameters ("parameters in force")
# --------------------------------------------------------------------------------------


@dataclass
class RopeParams:
    """Everything needed to rotate a position.

    inv_freq:          float64 [rot_dim/2], the family's inverse frequencies for this length
    attention_factor:  multiplies both cos and sin (yarn / longrope "mscale")
    default_inv_freq:  float64 [rot_dim/2], unscaled inverse frequencies (for n_hat)
    n_hat:             positions m < n_hat use default_inv_freq (our LongRoPE extension)
    """

    inv_freq: torch.Tensor
    attention_factor: float
    default_inv_freq: torch.Tensor
    n_hat: Optional[int]
    rope_type: str


def head_dim_of(config: dict) -> int:
    hd = config.get("head_dim")
    return int(hd) if hd else config["hidden_size"] // config["num_attention_heads"]


def rotary_dim_of(config: dict) -> int:
    # int() truncation, as HF: dim = int(head_dim * partial_rotary_factor)
    return int(head_dim_of(config) * config.get("partial_rotary_factor", 1.0))


def rope_type_of(rope_scaling: Optional[dict]) -> str:
    """`type` is the legacy spelling.  HF's LlamaConfig copies `type` over `rope_type`
    when both are present, so `type` wins."""
    if rope_scaling is None:
        return "default"
    rtype = rope_scaling["type"] if "type" in rope_scaling else rope_scaling.get("rope_type", "default")
    return "longrope" if rtype == "su" else rtype  # "su": Phi-3's first name for LongRoPE


def _default_inv_freq_f32(base: float, d: int) -> torch.Tensor:
    # Literally HF's _compute_default_rope_parameters, float32 ops.
    return 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))


def _yarn_inv_freq_f32(config: dict, rs: dict, base: float, d: int) -> Tuple[torch.Tensor, float]:
    # Literally HF's _compute_yarn_parameters.
    factor = rs["factor"]
    attention_factor = rs.get("attention_factor")
    mscale = rs.get("mscale")
    mscale_all_dim = rs.get("mscale_all_dim")
    original = rs.get("original_max_position_embeddings") or config["max_position_embeddings"]

    def get_mscale(scale, m=1):
        if scale <= 1:
            return 1.0
        return 0.1 * m * math.log(scale) + 1.0

    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = float(get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim))
        else:
            attention_factor = get_mscale(factor)

    beta_fast = rs.get("beta_fast") or 32
    beta_slow = rs.get("beta_slow") or 1

    def find_correction_dim(num_rotations, dim, b, max_pos):
        return (dim * math.log(max_pos / (num_rotations * 2 * math.pi))) / (2 * math.log(b))

    truncate = rs.get("truncate", True)
    low = find_correction_dim(beta_fast, d, base, original)
    high = find_correction_dim(beta_slow, d, base, original)
    if truncate:
        low = math.floor(low)
        high = math.ceil(high)
    low, high = max(low, 0), min(high, d - 1)

    def linear_ramp_factor(mn, mx, n):
        if mn == mx:
            mx += 0.001  # prevent singularity
        linear = (torch.arange(n, dtype=torch.float32) - mn) / (mx - mn)
        return torch.clamp(linear, 0, 1)

    pos_freqs = base ** (torch.arange(0, d, 2).to(dtype=torch.float) / d)
    inv_freq_extrapolation = 1.0 / pos_freqs
    inv_freq_interpolation = 1.0 / (factor * pos_freqs)
    extrapolation_factor = 1 - linear_ramp_factor(low, high, d // 2).to(dtype=torch.float)
    inv_freq = (
        inv_freq_interpolation * (1 - extrapolation_factor)
        + inv_freq_extrapolation * extrapolation_factor
    )
    return inv_freq, float(attention_factor)


def _llama3_inv_freq_f32(rs: dict, base: float, d: int) -> torch.Tensor:
    # Literally HF's _compute_llama3_parameters.
    inv_freq = _default_inv_freq_f32(base, d)
    factor = rs["factor"]
    low_freq_factor = rs["low_freq_factor"]
    high_freq_factor = rs["high_freq_factor"]
    old_context_len = rs["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    # wavelen > low_freq_wavelen: low frequency -> fully interpolated (divide by factor)
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    # in between: smooth blend of interpolated and original
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_freq_llama)


def longrope_original_and_attention_factor(config: dict, rs: dict) -> Tuple[int, float]:
    """Phi-3 style: the top-level original_max_position_embeddings wins, then the one in
    rope_scaling; with either, the scale is max_position_embeddings / original."""
    original = config.get("original_max_position_embeddings")
    if original is None:
        original = rs.get("original_max_position_embeddings")
    if original is not None:
        s = config["max_position_embeddings"] / original
    else:
        original = config["max_position_embeddings"]
        s = rs.get("factor") or 1.0
    af = rs.get("attention_factor")
    if af is None:
        af = 1.0 if s <= 1.0 else math.sqrt(1 + math.log(s) / math.log(original))
    return original, float(af)


def rope_params(config: dict, rope_scaling: Optional[dict], seq_len: int) -> RopeParams:
    """RoPE parameters in force for a sequence whose total length is `seq_len`.

    `rope_scaling` is the effective scaling dict (the checkpoint's, or a per-request
    override that replaces it entirely).  Only `dynamic` and `longrope` depend on
    seq_len."""
    base = config.get("rope_theta", 10000.0)
    d = rotary_dim_of(config)
    rs = rope_scaling or {}
    rtype = rope_type_of(rope_scaling)
    default_inv = _default_inv_freq_f32(base, d)
    af = 1.0

    if rtype == "default":
        inv = default_inv
    elif rtype == "linear":
        inv = default_inv / rs["factor"]
    elif rtype == "dynamic":
        # NTK-aware base stretching once the sequence outgrows max_position_embeddings.
        # (HF uses config.max_position_embeddings; original_max_position_embeddings is ignored.)
        L = config["max_position_embeddings"]
        factor = rs["factor"]
        if seq_len > L:
            b = base * ((factor * seq_len / L) - (factor - 1)) ** (d / (d - 2))
            inv = 1.0 / (b ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        else:
            inv = default_inv
    elif rtype == "yarn":
        inv, af = _yarn_inv_freq_f32(config, rs, base, d)
    elif rtype == "longrope":
        original, af = longrope_original_and_attention_factor(config, rs)
        ext = rs["long_factor"] if seq_len > original else rs["short_factor"]
        ext = torch.tensor(ext, dtype=torch.float32)
        shape = torch.arange(0, d, 2, dtype=torch.int64).float() / d
        inv = 1.0 / (ext * base**shape)
    elif rtype == "llama3":
        inv = _llama3_inv_freq_f32(rs, base, d)
    else:
        raise ValueError(f"unknown rope type {rtype!r}")

    assert inv.dtype == torch.float32 and inv.shape == (d // 2,)
    n_hat = rs.get("n_hat")
    return RopeParams(
        inv_freq=inv.to(F64),
        attention_factor=float(af),
        default_inv_freq=default_inv.to(F64),
        n_hat=int(n_hat) if n_hat is not None else None,
        rope_type=rtype,
    )


def rope_tables(params: RopeParams, positions: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape [len(positions), rot_dim] (float64), HF layout cat(freqs, freqs),
    both multiplied by the attention factor.  Positions below n_hat use the unscaled
    default frequencies (LongRoPE's "keep the first n_hat positions un-interpolated")."""
    pos = torch.tensor(list(positions), dtype=F64)
    inv = params.inv_freq.unsqueeze(0).expand(len(pos), -1)
    if params.n_hat is not None:
        early = (pos < params.n_hat).unsqueeze(1)
        inv = torch.where(early, params.default_inv_freq.unsqueeze(0), inv)
    freqs = pos.unsqueeze(1) * inv  # float64 angles
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos() * params.attention_factor, emb.sin() * params.attention_factor


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """HF's non-interleaved rotation: (x1, x2) -> (-x2, x1) on the two halves."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [heads, n, head_dim]; cos/sin: [n, rot_dim].  Only the first rot_dim dims of each
    head rotate; the rest pass through (GPT-NeoX / Phi partial rotary)."""
    rot = cos.shape[-1]
    xr, xp = x[..., :rot], x[..., rot:]
    xr = xr * cos + rotate_half(xr) * sin
    return torch.cat([xr, xp], dim=-1)


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------


def sliding_windows_of(config: dict) -> List[Optional[int]]:
    """The sliding window of each layer as transformers decides it (None = full attention).

    Mistral: sliding_window (MistralConfig default 4096 when absent) on every layer.
    Phi-3:   sliding_window (default None) on every layer.
    Qwen2/3: only with use_sliding_window; then layer i slides iff i >= max_window_layers
             (or as layer_types says).  Llama: never (HF's Llama ignores the field)."""
    mt = config["model_type"]
    n = config["num_hidden_layers"]
    if mt == "mistral":
        w = config["sliding_window"] if "sliding_window" in config else 4096
        return [w] * n
    if mt == "phi3":
        return [config.get("sliding_window")] * n
    if mt in ("qwen2", "qwen3"):
        if not config.get("use_sliding_window", False):
            return [None] * n
        w = config.get("sliding_window", 4096)
        if "layer_types" in config and config["layer_types"] is not None:
            return [w if t == "sliding_attention" else None for t in config["layer_types"]]
        m = config.get("max_window_layers", 28)
        return [w if i >= m else None for i in range(n)]
    return [None] * n


class LlamaReference:
    """Llama-family decoder in float64: llama, mistral, phi3 (fused qkv_proj / gate_up_proj),
    qwen2 (q/k/v biases, per-layer sliding window), qwen3 (per-head q/k RMSNorm before RoPE).

    forward() processes `tokens` placed at positions start_pos.. with a KV cache of
    already-rotated keys/values for positions 0..start_pos-1.  A "full" forward is simply
    forward() with an empty cache.  The cos/sin tables for the new positions are passed in,
    so the caller decides which RoPE parameters are in force (see generate())."""

    def __init__(self, config: dict, weights: Dict[str, torch.Tensor]):
        self.config = config
        self.w = weights
        self.hidden = config["hidden_size"]
        self.n_layers = config["num_hidden_layers"]
        self.n_heads = config["num_attention_heads"]
        self.n_kv = config.get("num_key_value_heads") or self.n_heads
        self.head_dim = head_dim_of(config)
        self.rot_dim = rotary_dim_of(config)
        self.eps = config["rms_norm_eps"]
        self.vocab = config["vocab_size"]
        self.tied = bool(config.get("tie_word_embeddings", False))
        self.model_type = config["model_type"]
        self.windows = sliding_windows_of(config)
        self.default_rope_scaling = config.get("rope_scaling")
        assert self.n_heads % self.n_kv == 0

    @classmethod
    def from_folder(cls, folder: str) -> "LlamaReference":
        cfg, w = load_checkpoint(folder)
        return cls(cfg, w)

    # -- pieces ------------------------------------------------------------------------

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        y = x @ self.w[name + ".weight"].T
        b = self.w.get(name + ".bias")
        return y + b if b is not None else y

    def _rmsnorm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        var = (x * x).mean(dim=-1, keepdim=True)
        return x / torch.sqrt(var + self.eps) * self.w[name]

    def _attention(self, i: int, x: torch.Tensor, start_pos: int, cache: List[dict],
                   cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        p = f"model.layers.{i}.self_attn."
        n = x.shape[0]
        if self.model_type == "phi3":
            # Phi3Attention: one qkv_proj, split as [:q_pos], [q_pos:q_pos+kv], [q_pos+kv:]
            qkv = self._linear(x, p + "qkv_proj")
            q_pos = self.n_heads * self.head_dim
            kv = self.n_kv * self.head_dim
            q, k, v = qkv[..., :q_pos], qkv[..., q_pos:q_pos + kv], qkv[..., q_pos + kv:]
        else:
            q, k, v = self._linear(x, p + "q_proj"), self._linear(x, p + "k_proj"), self._linear(x, p + "v_proj")
        q = q.reshape(n, self.n_heads, self.head_dim)
        k = k.reshape(n, self.n_kv, self.head_dim)
        if self.model_type == "qwen3":
            # Qwen3Attention: q_norm / k_norm over head_dim, before the transpose and RoPE.
            q = self._rmsnorm(q, p + "q_norm.weight")
            k = self._rmsnorm(k, p + "k_norm.weight")
        q = q.transpose(0, 1)
        k = k.transpose(0, 1)
        v = v.reshape(n, self.n_kv, self.head_dim).transpose(0, 1)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        # Append to the cache: keys are cached *after* rotation, never recomputed
        # (this is what makes transformers' dynamic/longrope behaviour "stale").
        layer = cache[i]
        layer["k"] = k if layer["k"] is None else torch.cat([layer["k"], k], dim=1)
        layer["v"] = v if layer["v"] is None else torch.cat([layer["v"], v], dim=1)
        keys, values = layer["k"], layer["v"]
        total = keys.shape[1]
        assert total == start_pos + n
        # GQA / MQA: query head h reads kv head h // (n_heads / n_kv).
        group = self.n_heads // self.n_kv
        keys = keys.repeat_interleave(group, dim=0)
        values = values.repeat_interleave(group, dim=0)
        scores = (q @ keys.transpose(1, 2)) / math.sqrt(self.head_dim)  # [H, n, total]
        qpos = torch.arange(start_pos, start_pos + n).unsqueeze(1)
        kpos = torch.arange(total).unsqueeze(0)
        allowed = kpos <= qpos  # causal
        if self.windows[i] is not None:
            allowed = allowed & ((qpos - kpos) < self.windows[i])
        scores = scores.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        out = (probs @ values).transpose(0, 1).reshape(n, self.n_heads * self.head_dim)
        return self._linear(out, p + "o_proj")

    def _mlp(self, i: int, x: torch.Tensor) -> torch.Tensor:
        p = f"model.layers.{i}.mlp."
        if self.model_type == "phi3":
            # Phi3MLP: gate_up_proj's output chunked in two, gate first
            gate, up = self._linear(x, p + "gate_up_proj").chunk(2, dim=-1)
        else:
            gate = self._linear(x, p + "gate_proj")
            up = self._linear(x, p + "up_proj")
        return self._linear(torch.nn.functional.silu(gate) * up, p + "down_proj")

    # -- forward -----------------------------------------------------------------------

    def new_cache(self) -> List[dict]:
        return [{"k": None, "v": None} for _ in range(self.n_layers)]

    def forward(self, tokens: Sequence[int], start_pos: int, cache: List[dict],
                cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Logits [len(tokens), vocab] (float64) for tokens at positions start_pos..."""
        x = self.w["model.embed_tokens.weight"][torch.tensor(list(tokens), dtype=torch.long)]
        for i in range(self.n_layers):
            h = x + self._attention(i, self._rmsnorm(x, f"model.layers.{i}.input_layernorm.weight"),
                                    start_pos, cache, cos, sin)
            x = h + self._mlp(i, self._rmsnorm(h, f"model.layers.{i}.post_attention_layernorm.weight"))
        x = self._rmsnorm(x, "model.norm.weight")
        head = self.w["model.embed_tokens.weight"] if self.tied else self.w["lm_head.weight"]
        return x @ head.T

    def effective_rope_scaling(self, override: Optional[dict]) -> Optional[dict]:
        """A per-request rope_scaling replaces the checkpoint's entirely; None keeps it."""
        return override if override is not None else self.default_rope_scaling

    def full_logits(self, tokens: Sequence[int], rope_scaling: Optional[dict],
                    params_len: Optional[int] = None) -> torch.Tensor:
        """One forward over all tokens with the parameters in force for length
        params_len (default len(tokens))."""
        n = len(tokens)
        params = rope_params(self.config, rope_scaling, params_len if params_len is not None else n)
        cos, sin = rope_tables(params, range(n))
        return self.forward(tokens, 0, self.new_cache(), cos, sin)


# --------------------------------------------------------------------------------------
# Scoring and greedy generation
# --------------------------------------------------------------------------------------


def greedy_pick(logits: torch.Tensor) -> Tuple[int, float]:
    """argmax with the lowest id on exact ties, and margin = top1 - top2 logit."""
    top = float(logits.max())
    idx = int(torch.nonzero(logits == top)[0, 0])
    vals = torch.sort(logits, descending=True).values
    return idx, float(vals[0] - vals[1])


def logprobs(model: LlamaReference, tokens: Sequence[int], rope_scaling: Optional[dict]):
    """[None, log p(t1|t0), ...] and the last position's logits, from one full forward."""
    logits = model.full_logits(tokens, rope_scaling)
    lsm = torch.log_softmax(logits, dim=-1)
    lps = [None] + [float(lsm[i - 1, tokens[i]]) for i in range(1, len(tokens))]
    return lps, logits[-1]


def generate(model: LlamaReference, prompt: Sequence[int], max_tokens: int,
             rope_scaling: Optional[dict], mode: str) -> Tuple[List[int], List[float], float]:
    """Greedy generation.  Returns (new tokens, margins, max |logit| seen).

    mode "full":    every step recomputes the whole sequence with params(current length).
    mode "hf":      transformers' KV cache: prefill with params(len(prompt)); the token at
                    position p computes only its own q,k,v with params(p+1); cached keys
                    are never re-rotated.
    mode "planned": params(len(prompt)+max_tokens) fixed for the whole request, full
                    recompute each step."""
    seq = list(prompt)
    out, margins = [], []
    max_abs = 0.0
    cache = model.new_cache() if mode == "hf" else None
    for step in range(max_tokens):
        if mode == "full":
            logits = model.full_logits(seq, rope_scaling)[-1]
        elif mode == "planned":
            logits = model.full_logits(seq, rope_scaling, params_len=len(prompt) + max_tokens)[-1]
        elif mode == "hf":
            if step == 0:
                params = rope_params(model.config, rope_scaling, len(seq))
                cos, sin = rope_tables(params, range(len(seq)))
                logits = model.forward(seq, 0, cache, cos, sin)[-1]
            else:
                p = len(seq) - 1  # position of the token just appended
                params = rope_params(model.config, rope_scaling, p + 1)
                cos, sin = rope_tables(params, [p])
                logits = model.forward([seq[-1]], p, cache, cos, sin)[-1]
        else:
            raise ValueError(mode)
        max_abs = max(max_abs, float(logits.abs().max()))
        tok, margin = greedy_pick(logits)
        out.append(tok)
        margins.append(margin)
        seq.append(tok)
    return out, margins, max_abs
