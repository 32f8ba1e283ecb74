#!/usr/bin/env python3
"""PyTorch eager decode of a Llama-family checkpoint on the GPU: the side-by-side anchor for `bench`.

    python3 tools/gpu/torch_decode.py --model DIR [--prompt 512] [--generate 128] [--dtype bf16]

The same work as `piserve bench` (pp N: prefill of N random tokens; tg M: M greedy decode steps
from a one-token context with a KV cache), written in plain PyTorch eager ops (no transformers, no
compile, no CUDA graphs): RMSNorm, GQA attention via scaled_dot_product_attention, SwiGLU, default
RoPE. Weights are read with tools/reference/llama_ref.py's safetensors reader and kept in the stored
dtype. Default RoPE only (the bench shapes use it). Prints one JSON line with tokens/s and the GPU's name.
"""
import argparse, json, math, os, sys, time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
from llama_ref import read_safetensors  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--generate", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cuda", help="cuda (the anchor); cpu only to check the script")
    a = ap.parse_args()
    dev = torch.device(a.device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()
    config = json.load(open(os.path.join(a.model, "config.json")))
    tensors = read_safetensors(os.path.join(a.model, "model.safetensors"))  # stored dtype, as PiServe keeps it
    dtype = next(iter(tensors.values())).dtype
    w = {k: v.to(dev) for k, v in tensors.items()}
    H, L = config["hidden_size"], config["num_hidden_layers"]
    nh, nkv = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    hd = config.get("head_dim") or H // nh
    eps = config["rms_norm_eps"]
    theta = config.get("rope_theta", 10000.0)
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32, device=dev) / hd))
    lm = w.get("lm_head.weight", w["model.embed_tokens.weight"])

    def norm(x, g):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(dtype) * g

    def rope(x, pos):
        ang = pos[:, None].float() * inv[None, :]
        cos, sin = torch.cat([ang.cos(), ang.cos()], -1).to(dtype), torch.cat([ang.sin(), ang.sin()], -1).to(dtype)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    @torch.no_grad()
    def forward(ids, start, cache):
        n = ids.shape[0]
        pos = torch.arange(start, start + n, device=dev)
        x = w["model.embed_tokens.weight"][ids]
        for l in range(L):
            p = f"model.layers.{l}."
            h = norm(x, w[p + "input_layernorm.weight"])
            q = (h @ w[p + "self_attn.q_proj.weight"].T).view(n, nh, hd).transpose(0, 1)
            k = (h @ w[p + "self_attn.k_proj.weight"].T).view(n, nkv, hd).transpose(0, 1)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).view(n, nkv, hd).transpose(0, 1)
            q, k = rope(q, pos), rope(k, pos)
            kc, vc = cache[l]
            kc[:, start:start + n] = k
            vc[:, start:start + n] = v
            keys, vals = kc[:, : start + n], vc[:, : start + n]
            if nkv != nh:
                keys = keys.repeat_interleave(nh // nkv, 0)
                vals = vals.repeat_interleave(nh // nkv, 0)
            o = attend(q, keys, vals, start)
            x = x + o.transpose(0, 1).reshape(n, nh * hd) @ w[p + "self_attn.o_proj.weight"].T
            h = norm(x, w[p + "post_attention_layernorm.weight"])
            x = x + (F.silu(h @ w[p + "mlp.gate_proj.weight"].T) * (h @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
        return norm(x[-1:], w["model.norm.weight"]) @ lm.T

    def attend(q, keys, vals, start):
        n = q.shape[1]
        if hasattr(F, "scaled_dot_product_attention"):  # torch >= 2.0
            if n == 1:
                return F.scaled_dot_product_attention(q[None], keys[None], vals[None])[0]
            mask = torch.ones(n, keys.shape[1], dtype=torch.bool, device=dev).tril(start)
            return F.scaled_dot_product_attention(q[None], keys[None], vals[None], attn_mask=mask)[0]
        s = (q.float() @ keys.float().transpose(-1, -2)) / math.sqrt(hd)
        mask = torch.ones(n, keys.shape[1], dtype=torch.bool, device=dev).tril(start)
        return (s.masked_fill(~mask, float("-inf")).softmax(-1) @ vals.float()).to(dtype)

    def new_cache(n):
        return [(torch.empty(nkv, n, hd, dtype=dtype, device=dev), torch.empty(nkv, n, hd, dtype=dtype, device=dev)) for _ in range(L)]

    g = torch.Generator().manual_seed(1)
    vocab = config["vocab_size"]
    best_pp = best_tg = 0.0
    for _ in range(a.repeat):
        ids = torch.randint(3, vocab, (a.prompt,), generator=g).to(dev)
        cache = new_cache(a.prompt + 1)
        sync(); t = time.time()
        forward(ids, 0, cache)
        sync(); best_pp = max(best_pp, a.prompt / (time.time() - t))
        cache = new_cache(a.generate + 1)
        tok = torch.tensor([5], device=dev)
        sync(); t = time.time()
        for i in range(a.generate):
            tok = forward(tok, i, cache).argmax(-1)
        sync(); best_tg = max(best_tg, a.generate / (time.time() - t))
    print(json.dumps({"anchor": "pytorch-eager", "torch": torch.__version__,
                      "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else "none (cpu)",
                      "dtype": str(dtype).replace("torch.", ""), "prompt_tokens": a.prompt, "generated_tokens": a.generate,
                      "prefill_tokens_per_second": round(best_pp, 1), "decode_tokens_per_second": round(best_tg, 1)}))


if __name__ == "__main__":
    main()
