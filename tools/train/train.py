#!/usr/bin/python3
"""Stages 2 and 3 of the KJV recipe: train the base model at L and fine-tune it with Position
Interpolation at L' = factor * L. Runs on Debian's python3-torch 1.13 (CPU) and on PyTorch 2.x (CUDA).

  train.py base --work .train --out .train/out            # kjv-base-256
  train.py pi   --work .train --out .train/out            # kjv-pi-1024 (+ ft-step-N checkpoints)

Training data is a mixture, drawn per sequence from a seeded generator:
  text     a random crop of the training chapters (KJV, verse references stripped);
  passkey  a passkey document in the evaluation's format (PiServe's PasskeySuite prompt + " KEY."),
           random key, random filler count and key depth, the rest of the sequence filled with text;
  copy     BOS, a random segment of text, the same segment again (the positive control for copying:
           the loss on the second copy falls far below the first copy's once induction heads form).
Every sequence is exactly `seq` tokens, so each step trains on batch * seq tokens.

Schedules: --steps fixes the step count (reproduces a run exactly on the same machine and torch);
--minutes instead times a few throw-away steps first and sets steps = budget / step time, then
trains deterministically for that many steps (recipe.json records the count for --steps).
"""
import argparse
import json
import math
import os
import platform
import shutil
import sys
import time

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Llama, LlamaShape, hf_config, shape_dict  # noqa: E402

PASSKEY_TASK = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
                "I will quiz you about the important information there.")
PASSKEY_FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
PASSKEY_QUESTION = "What is the pass key? The pass key is"


def passkey_prompt(key, before, after):
    """Exactly PiServe's PasskeySuite.Prompt: one line each for task, fillers, key, fillers, question."""
    rep = lambda n: " ".join([PASSKEY_FILLER] * n)  # noqa: E731
    return "\n".join([PASSKEY_TASK, rep(before), f"The pass key is {key}. Remember it. {key} is the pass key.",
                      rep(after), PASSKEY_QUESTION])


class Mixture:
    def __init__(self, work, seq, seed, weights, split="train"):
        self.sp = spm.SentencePieceProcessor(model_file=os.path.join(work, "tokenizer", "kjv.model"))
        self.text = np.fromfile(os.path.join(work, "tokens", f"{split}.bin"), dtype="<u2").astype(np.int64)
        self.seq = seq
        self.rng = np.random.default_rng(seed)
        self.weights = np.asarray(weights, dtype=np.float64) / sum(weights)
        self.bos, self.eos, self.vocab = self.sp.bos_id(), self.sp.eos_id(), self.sp.get_piece_size()
        self.max_fillers = 0
        while len(self._passkey_ids(12345, self.max_fillers + 1, 0)[0]) <= seq + 1:
            self.max_fillers += 1

    def _passkey_ids(self, key, before, after):
        prompt = [self.bos] + self.sp.encode(passkey_prompt(key, before, after))
        answer = self.sp.encode(passkey_prompt(key, before, after) + f" {key}.")[len(prompt) - 1:]
        return prompt + answer + [self.eos], len(prompt), len(answer) - 1  # the digits, not the final '.'

    def _fill(self, row, start):
        n = len(row) - start
        if n > 0:
            at = self.rng.integers(0, len(self.text) - n)
            row[start:] = self.text[at:at + n]

    def sequence(self, kind):
        row = np.empty(self.seq + 1, dtype=np.int64)
        if kind == 0:  # text
            self._fill(row, 0)
        elif kind == 1:  # passkey document, then text
            n = int(self.rng.integers(0, self.max_fillers + 1))
            before = int(self.rng.integers(0, n + 1))
            ids, _, _ = self._passkey_ids(int(self.rng.integers(10000, 100000)), before, n - before)
            row[:len(ids)] = ids
            self._fill(row, len(ids))
        else:  # copy: BOS, segment, segment, then text
            m = int(self.rng.integers(4, self.seq // 2))
            seg = self.segment(m)
            row[0] = self.bos
            row[1:1 + m] = seg
            row[1 + m:1 + 2 * m] = seg
            self._fill(row, 1 + 2 * m)
        return row

    def segment(self, m):
        """A copy segment: a random crop of the text. (Uniformly random tokens over the whole
        vocabulary were tried first: a 4-layer model did not learn to copy them within 4000 steps,
        while text crops make the repeat exactly predictable only by copying, and teach the
        induction heads the passkey and long documents need.)"""
        at = self.rng.integers(0, len(self.text) - m)
        return self.text[at:at + m].copy()

    def batch(self, b):
        kinds = self.rng.choice(len(self.weights), size=b, p=self.weights)
        return np.stack([self.sequence(k) for k in kinds])


def save_safetensors(path, tensors):
    """Minimal safetensors writer (bf16), so the recipe needs no extra package on Debian."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.bfloat16).contiguous()
        raw = t.view(torch.int16).numpy().astype("<i2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for raw in blobs:
            f.write(raw)


def export(model, folder, work, max_positions, rope_scaling, recipe, log_path):
    os.makedirs(folder, exist_ok=True)
    state = {k: v for k, v in model.state_dict().items()}
    save_safetensors(os.path.join(folder, "model.safetensors"), state)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(hf_config(model.shape, max_positions, rope_scaling), f, indent=2)
    with open(os.path.join(folder, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2, "do_sample": True, "temperature": 0.8, "top_p": 0.95,
                   "max_length": max_positions}, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(work, "tokenizer", name), os.path.join(folder, name))
    shutil.copy(os.path.join(work, "tokenizer", "kjv.model"), os.path.join(folder, "tokenizer.model"))
    with open(os.path.join(folder, "recipe.json"), "w") as f:
        json.dump(recipe, f, indent=2)
    if log_path and os.path.exists(log_path):
        shutil.copy(log_path, os.path.join(folder, "train_log.jsonl"))


@torch.no_grad()
def evaluate(model, work, seq, device, amp, seed=999):
    """Validation text loss (non-overlapping windows of `seq` over val.bin), copy loss on the second
    copy, and teacher-forced passkey accuracy (all five digits argmax-correct = greedy success)."""
    model.eval()
    out = {}
    val = np.fromfile(os.path.join(work, "tokens", "val.bin"), dtype="<u2").astype(np.int64)
    n = min(32, (len(val) - 1) // seq)
    rows = np.stack([val[i * seq:i * seq + seq + 1] for i in range(n)])
    x = torch.from_numpy(rows).to(device)
    with amp():
        logits = model(x[:, :-1]).float()
    out["val_loss"] = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)).item()

    mix = Mixture(work, seq, seed, [1], split="val")
    copy_rows, copy_mask = [], []
    for _ in range(32):
        m = int(mix.rng.integers(8, seq // 2))
        seg = mix.segment(m)
        row = np.zeros(seq + 1, dtype=np.int64)
        row[0], row[1:1 + m], row[1 + m:1 + 2 * m] = mix.bos, seg, seg
        mask = np.zeros((2, seq), dtype=bool)
        mask[0, 1:m] = True  # targets inside the first copy: what the language model alone predicts
        mask[1, m + 1:2 * m] = True  # targets inside the second copy (its first token is unpredictable)
        copy_rows.append(row)
        copy_mask.append(mask)
    x = torch.from_numpy(np.stack(copy_rows)).to(device)
    mask = torch.from_numpy(np.stack(copy_mask)).to(device)
    with amp():
        logits = model(x[:, :-1]).float()
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none").view(x.shape[0], -1)
    out["first_copy_loss"] = (nll[mask[:, 0]].mean()).item()
    out["copy_loss"] = (nll[mask[:, 1]].mean()).item()

    hits = 0
    trials = 32
    for t in range(trials):
        nf = int(mix.rng.integers(0, mix.max_fillers + 1))
        before = int(mix.rng.integers(0, nf + 1))
        ids, p, a = mix._passkey_ids(int(mix.rng.integers(10000, 100000)), before, nf - before)
        x = torch.tensor([ids], device=device)
        with amp():
            pred = model(x[:, :-1]).argmax(-1)[0]
        hits += int(torch.equal(pred[p - 1:p - 1 + a], x[0, p:p + a]))
    out["passkey_acc"] = hits / trials
    model.train()
    return out


def lr_at(step, total, peak, warmup, floor=0.1):
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["base", "pi"])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--work", default=os.path.join(here, "..", "..", ".train"))
    ap.add_argument("--out", default=None, help="default: WORK/out")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=None, help="default 4000 (the shipped models) unless --minutes")
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--length", type=int, default=256, help="the base model's training length L")
    ap.add_argument("--factor", type=float, default=4.0, help="PI factor s (L' = s * L)")
    ap.add_argument("--save-at", default="50,100,200,500,1000", help="PI stage: also save weights after these steps")
    ap.add_argument("--mix", default="0.35,0.3,0.35", help="text,passkey,copy sequence fractions")
    ap.add_argument("--warm-mix", default="0.2,0.3,0.5", help="the mix of the first --warm-steps steps (base stage)")
    ap.add_argument("--warm-steps", type=int, default=1500,
                    help="base stage: steps on --warm-mix first, a copy-heavy curriculum so induction heads form "
                         "before the model can memorise the text (0 = none)")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--dropout", type=float, default=0.1)
    args = ap.parse_args()

    work = os.path.abspath(args.work)
    out = os.path.abspath(args.out or os.path.join(work, "out"))
    os.makedirs(out, exist_ok=True)
    meta = json.load(open(os.path.join(work, "tokens", "meta.json")))
    shape = LlamaShape(vocab_size=meta["vocab_size"])
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else (lambda: torch.autocast("cpu", enabled=False))

    base_dir = os.path.join(out, f"kjv-base-{args.length}")
    if args.stage == "base":
        seq, factor = args.length, 1.0
        batch = args.batch or 64
        peak = args.lr or 1.5e-3
        warmup = 100
        model = Llama(shape, dropout=args.dropout).to(device)
        name = f"kjv-base-{args.length}"
        max_positions, rope_scaling = args.length, None
        save_at = set()
        warm_steps = args.warm_steps
    else:
        seq, factor = int(args.length * args.factor), args.factor
        batch = args.batch or max(1, 64 * args.length // seq)
        peak = args.lr or 5e-4
        warmup = 20
        model = Llama(shape, dropout=args.dropout).to(device)
        state = load_safetensors(os.path.join(base_dir, "model.safetensors"))
        model.load_state_dict({k: v.float() for k, v in state.items()})
        model.set_rope(factor)
        name = f"kjv-pi-{seq}"
        max_positions = seq
        rope_scaling = {"rope_type": "linear", "factor": factor, "original_max_position_embeddings": args.length}
        save_at = {int(s) for s in args.save_at.split(",") if s}
        warm_steps = 0

    weights = [float(w) for w in args.mix.split(",")]
    warm_weights = [float(w) for w in args.warm_mix.split(",")]
    mix = Mixture(work, seq, args.seed + (0 if args.stage == "base" else 1), warm_weights if warm_steps else weights)
    decay, no_decay = [], []
    for n_, p in model.named_parameters():
        (decay if p.dim() == 2 else no_decay).append(p)
    opt_kwargs = dict(lr=peak, betas=(0.9, 0.95), eps=1e-8)
    if cuda and "fused" in torch.optim.AdamW.__init__.__code__.co_varnames:
        opt_kwargs["fused"] = True
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], **opt_kwargs)

    def step_fn(x):
        with amp():
            logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    steps = args.steps or (None if args.minutes else 4000)
    step_seconds = None
    if steps is None:
        # Time throw-away steps on a copy (model, optimizer and data generator untouched).
        probe = Llama(shape).to(device)
        probe_opt = torch.optim.AdamW(probe.parameters(), lr=1e-4)
        xb = torch.from_numpy(Mixture(work, seq, 7, [1, 1, 1]).batch(batch)).to(device)
        for i in range(13):
            if i == 3:
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.time()
            with amp():
                lg = probe(xb[:, :-1])
            ls = F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), xb[:, 1:].reshape(-1))
            probe_opt.zero_grad()
            ls.backward()
            probe_opt.step()
        if cuda:
            torch.cuda.synchronize()
        step_seconds = (time.time() - t0) / 10 * 1.15  # + batch making and evaluations
        steps = max(1, int((args.minutes or 5) * 60 / step_seconds))
        del probe, probe_opt
    save_at = {s for s in save_at if s < steps}

    log_path = os.path.join(out, f"{name}.log.jsonl")
    log = open(log_path, "w")
    recipe = {"stage": args.stage, "name": name, "seed": args.seed, "steps": steps, "batch": batch, "seq": seq,
              "tokens_per_step": batch * seq, "lr": peak, "warmup": warmup, "schedule": "cosine to 10%",
              "weight_decay": 0.1, "dropout": args.dropout, "mix": args.mix,
              "warm_mix": args.warm_mix if warm_steps else None, "warm_steps": warm_steps, "rope_factor": factor,
              "shape": shape_dict(shape), "parameters": sum(p.numel() for p in model.parameters()),
              "tokenizer_sha256": meta["tokenizer_sha256"], "torch": torch.__version__, "device": str(device),
              "device_name": torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine(),
              "minutes_budget": args.minutes, "calibrated_step_seconds": step_seconds,
              "command": " ".join(sys.argv)}
    print(json.dumps(recipe), flush=True)

    def record(step, loss, elapsed):
        ev = evaluate(model, work, seq, device, amp)
        row = {"step": step, "seconds": round(elapsed, 1), "lr": lr_at(step, steps, peak, warmup), "train_loss": loss, **ev}
        log.write(json.dumps(row) + "\n")
        log.flush()
        print(json.dumps(row), flush=True)

    model.train()
    t0 = time.time()
    if args.stage == "pi":
        record(0, None, 0.0)
    running = None
    for step in range(steps):
        if step == warm_steps and warm_steps:
            mix.weights = np.asarray(weights) / sum(weights)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, peak, warmup)
        x = torch.from_numpy(mix.batch(batch)).to(device, non_blocking=True)
        loss = step_fn(x)
        if step % 25 == 0 or step == steps - 1:
            lv = loss.item()
            running = lv if running is None else 0.9 * running + 0.1 * lv
        done = step + 1
        if done in save_at:
            save_safetensors(os.path.join(out, f"ft-step-{done}.safetensors"), model.state_dict())
        if done % args.eval_every == 0 or done == steps:
            record(done, running, time.time() - t0)
    recipe["train_seconds"] = round(time.time() - t0, 1)
    log.close()
    export(model, os.path.join(out, name), work, max_positions, rope_scaling, recipe, log_path)
    print(json.dumps({"exported": os.path.join(out, name), "seconds": recipe["train_seconds"]}), flush=True)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        assert h["dtype"] == "BF16", h["dtype"]
        raw = np.frombuffer(data[a:b], dtype="<i2").copy()
        out[name] = torch.from_numpy(raw).view(torch.bfloat16).reshape(h["shape"])
    return out


if __name__ == "__main__":
    sys.exit(main())
