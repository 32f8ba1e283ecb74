#!/usr/bin/python3
"""Convert a PiServe/Hugging Face Llama checkpoint folder (config.json + model.safetensors, f32/f16/bf16)
to a GGUF file llama.cpp loads, with the same weights bit for bit, so both engines run one model.

    PYTHONPATH=$LLAMACPP_DIR/src/gguf-py /usr/bin/python3 tools/bench/to_gguf.py CHECKPOINT_DIR OUT.gguf

Tensors keep their stored dtype (bf16 bytes are copied, not re-rounded); 1-D norm weights are written as
f32 as llama.cpp's own converter does. Q and K rows are permuted from Hugging Face's rotate-half layout
to llama.cpp's interleaved-pair layout (the permutation convert_hf_to_gguf applies), so the GGUF computes
the same function. The bench checkpoints carry no tokenizer: llama-bench feeds token ids, so the
vocabulary is a placeholder of the right size (<unk>, <s>, </s>, the 256 byte tokens, then filler pieces).
"""
import json
import os
import struct
import sys

import numpy as np
import gguf


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    base = 8 + n
    data = np.memmap(path, dtype=np.uint8, mode="r")
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        lo, hi = meta["data_offsets"]
        raw = data[base + lo: base + hi]
        dtype = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}[meta["dtype"]]
        yield name, meta["dtype"], raw.view(dtype).reshape(meta["shape"])


def permute_rotate_half(w, heads):
    """HF rotate-half rows (first half of each head, then second half) -> adjacent pairs, per head."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main(src, out):
    cfg = json.load(open(os.path.join(src, "config.json")))
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads", heads)
    vocab = cfg["vocab_size"]
    dtypes = set()
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    per_layer = {
        "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight", "input_layernorm.weight": "attn_norm.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
    }
    tensors = []
    for name, dt, arr in read_safetensors(os.path.join(src, "model.safetensors")):
        if name.startswith("model.layers."):
            _, _, layer, rest = name.split(".", 3)
            gname = f"blk.{layer}.{per_layer[rest]}"
            if rest == "self_attn.q_proj.weight":
                arr = permute_rotate_half(arr, heads)
            elif rest == "self_attn.k_proj.weight":
                arr = permute_rotate_half(arr, kv_heads)
        else:
            gname = names[name]
        if arr.ndim == 1:  # norms: f32 as llama.cpp's converter writes them
            arr = arr.astype(np.float32) if dt != "BF16" else (arr.astype(np.uint32) << 16).view(np.float32)
            dt = "F32"
        else:
            dtypes.add(dt)
        tensors.append((gname, dt, np.ascontiguousarray(arr)))

    (dtype,) = dtypes
    w = gguf.GGUFWriter(out, "llama")
    w.add_name(os.path.basename(os.path.normpath(src)))
    w.add_vocab_size(vocab)
    w.add_context_length(cfg.get("max_position_embeddings", 2048))
    w.add_embedding_length(hidden)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(hidden // heads)
    w.add_rope_freq_base(float(cfg.get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-5)))
    w.add_file_type({"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
                     "BF16": gguf.LlamaFileType.MOSTLY_BF16}[dtype])
    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{b:02X}>".encode() for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    tokens += [f"\u2581t{i}".encode() for i in range(vocab - len(tokens))]
    types += [gguf.TokenType.NORMAL] * (vocab - len(types))
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores([-float(i) for i in range(vocab)])
    w.add_token_types(types)
    w.add_bos_token_id(cfg.get("bos_token_id", 1))
    w.add_eos_token_id(cfg.get("eos_token_id", 2))
    w.add_unk_token_id(0)
    for gname, dt, arr in tensors:
        if dt == "BF16":
            w.add_tensor(gname, arr, raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            w.add_tensor(gname, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
