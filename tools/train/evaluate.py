#!/usr/bin/python3
"""Stage 4 of the KJV recipe: the evidence, measured by PiServe's own evaluation suites.

Runs the `eval` verb of the PiServe executable (the same suite code the /v1/evals jobs run) on the
shipped models and the PI fine-tuning checkpoints, over the held-out chapters that prepare.py wrote
(.train/heldout, a `pg19` dataset folder), and writes:
  docs/evaluations/kjv-*.json       every suite's raw result
  docs/evaluations/kjv-*.png        charts (when matplotlib is installed)
  docs/EVALUATIONS.md               the tables, between the kjv markers

  tools/train/evaluate.py [--piserve "dotnet src/Api/bin/Release/net10.0/piserve.dll"] [--threads 2]
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
L = 256
WINDOWS = [L, 2 * L, 4 * L, 8 * L]
FACTOR = 4

# (label, model folder, rope_scaling override or None)
PERPLEXITY_RUNS = [
    ("base, no scaling (extrapolation)", "kjv-base-256", None),
    (f"base + PI x{FACTOR}, no fine-tuning", "kjv-base-256", {"rope_type": "linear", "factor": FACTOR}),
    (f"base + dynamic NTK x{FACTOR}, no fine-tuning", "kjv-base-256", {"rope_type": "dynamic", "factor": FACTOR}),
    (f"base + YaRN x{FACTOR}, no fine-tuning", "kjv-base-256",
     {"rope_type": "yarn", "factor": FACTOR, "original_max_position_embeddings": L}),
    (f"base + PI x{2 * FACTOR}, no fine-tuning", "kjv-base-256", {"rope_type": "linear", "factor": 2 * FACTOR}),
    (f"PI x{FACTOR} fine-tuned (kjv-pi-1024)", "kjv-pi-1024", None),
]
PASSKEY_RUNS = [
    ("base, no scaling", "kjv-base-256", None),
    (f"base + PI x{FACTOR}, no fine-tuning", "kjv-base-256", {"rope_type": "linear", "factor": FACTOR}),
    (f"base + YaRN x{FACTOR}, no fine-tuning", "kjv-base-256",
     {"rope_type": "yarn", "factor": FACTOR, "original_max_position_embeddings": L}),
    (f"PI x{FACTOR} fine-tuned (kjv-pi-1024)", "kjv-pi-1024", None),
]
FT_STEPS = [50, 100, 200, 500, 1000]


def run_eval(piserve, model, kind, parameters, rope=None, dataset=None, threads=2):
    cmd = shlex.split(piserve) + ["eval", "--model", model, "--kind", kind, "--parameters", json.dumps(parameters),
                                  "--threads", str(threads)]
    if rope:
        cmd += ["--rope-scaling", json.dumps(rope)]
    if dataset:
        cmd += ["--dataset", dataset, "--dataset-kind", "pg19"]
    t0 = time.time()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    result = json.loads(out)
    print(f"  {kind} {os.path.basename(model)} {json.dumps(rope) if rope else ''}: {time.time() - t0:.0f} s", flush=True)
    return result.get("results", result)


def step_checkpoint(work, step):
    """A model folder for a fine-tuning checkpoint: kjv-pi-1024's config and tokenizer, that step's weights."""
    folder = os.path.join(work, "curve", f"ft-step-{step}")
    os.makedirs(folder, exist_ok=True)
    pi = os.path.join(ROOT, "models", "kjv-pi-1024")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(pi, name), folder)
    shutil.copy(os.path.join(work, "out", f"ft-step-{step}.safetensors"), os.path.join(folder, "model.safetensors"))
    return folder


def k_max(points, length):
    """PasskeySuite's k_max over the points of one prompt length: the largest k such that every
    point with k' <= k reaches 20% success."""
    best = 0
    for k in sorted({p["k"] for p in points if p["length"] == length}):
        if all(p["success_rate"] >= 0.2 - 1e-12 for p in points if p["length"] == length and p["k"] == k):
            best = k
        else:
            break
    return best


def fmt(x):
    return "—" if x is None else (f"{x:.1f}" if x < 1000 else f"{x:.3g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--piserve", default="dotnet src/Api/bin/Release/net10.0/piserve.dll")
    ap.add_argument("--work", default=os.path.join(ROOT, ".train"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--depths", type=int, default=32)
    ap.add_argument("--from-json", action="store_true", help="only rewrite the tables and charts from docs/evaluations/kjv-results.json")
    args = ap.parse_args()
    if args.from_json:
        results = json.load(open(os.path.join(ROOT, "docs", "evaluations", "kjv-results.json")))
        recipe = json.load(open(os.path.join(ROOT, "models", "kjv-pi-1024", "recipe.json")))
        write_markdown(results, recipe)
        charts(results, os.path.join(ROOT, "docs", "evaluations"))
        return
    heldout = os.path.join(args.work, "heldout")
    out_dir = os.path.join(ROOT, "docs", "evaluations")
    os.makedirs(out_dir, exist_ok=True)
    models = lambda name: os.path.join(ROOT, "models", name)  # noqa: E731
    ev = lambda *a, **k: run_eval(args.piserve, *a, threads=args.threads, **k)  # noqa: E731

    print("perplexity by window", flush=True)
    ppl = []
    for label, model, rope in PERPLEXITY_RUNS:
        r = ev(models(model), "perplexity", {"windows": WINDOWS, "stride": 256, "beyond_window": True}, rope=rope, dataset=heldout)
        ppl.append({"label": label, "model": model, "rope_scaling": rope,
                    "ppl": {w["window"]: w["ppl"] for w in r["windows"]}, "tokens": {w["window"]: w["tokens"] for w in r["windows"]}})

    print("fine-tuning steps", flush=True)
    curve = [{"step": 0, "ppl": ppl[1]["ppl"]}]
    for step in FT_STEPS:
        r = ev(step_checkpoint(args.work, step), "perplexity", {"windows": WINDOWS, "stride": 256, "beyond_window": True}, dataset=heldout)
        curve.append({"step": step, "ppl": {w["window"]: w["ppl"] for w in r["windows"]}})
    recipe = json.load(open(os.path.join(ROOT, "models", "kjv-pi-1024", "recipe.json")))
    curve.append({"step": recipe["steps"], "ppl": ppl[-1]["ppl"]})

    print("passkey", flush=True)
    passkey = []
    for label, model, rope in PASSKEY_RUNS:
        r = ev(models(model), "passkey", {"lengths": [L, 2 * L, 4 * L], "depths": args.depths, "trials": args.trials, "seed": 0, "beyond_window": True}, rope=rope)
        by_length = {}
        for p in r["points"]:
            s = by_length.setdefault(p["length"], [0, 0])
            s[0] += p["successes"]
            s[1] += p["trials"]
        passkey.append({"label": label, "model": model, "rope_scaling": rope, "k_max": r["k_max"],
                        "success_by_length": {k: v[0] / v[1] for k, v in sorted(by_length.items())}, "points": r["points"]})

    results = {"windows": WINDOWS, "perplexity": ppl, "fine_tuning": curve, "passkey": passkey,
               "held_out": sorted(os.listdir(heldout)), "heldout_tokens": ppl[0]["tokens"]}
    with open(os.path.join(out_dir, "kjv-results.json"), "w") as f:
        json.dump(results, f, indent=1)
    write_markdown(results, recipe)
    charts(results, out_dir)


def write_markdown(r, recipe):
    w = r["windows"]
    lines = ["<!-- kjv:begin (written by tools/train/evaluate.py) -->",
             "## The shipped KJV models: Position Interpolation at small scale",
             "",
             "`models/kjv-base-256` (trained at L = 256) and `models/kjv-pi-1024` (its PI fine-tune, factor 4, L' = 1024),",
             "made by tools/train (see its README). Measured by PiServe's own suites (the `eval` verb runs the suite",
             "code that `/v1/evals` jobs run) with `tools/train/evaluate.py`; raw results in",
             "`docs/evaluations/kjv-results.json`. Held-out text: " + ", ".join(d[:-4] for d in r["held_out"]) +
             " (runs of 10 consecutive chapters never seen in training; book-chapter ranges), BOS per document.",
             "",
             "### Perplexity by window (PI paper table 1, small scale)",
             "",
             "Sliding window, stride 256; every held-out token scored once per window size.",
             "",
             "| model / rope | " + " | ".join(f"W = {x} ({x // L}L)" for x in w) + " |",
             "|---|" + "---|" * len(w)]
    for row in r["perplexity"]:
        lines.append(f"| {row['label']} | " + " | ".join(fmt(row["ppl"].get(x, row["ppl"].get(str(x)))) for x in w) + " |")
    lines += ["", f"### Fine-tuning steps (PI paper table 3): perplexity of the PI x4 model after n steps",
              "", f"{recipe['batch']} sequences x {recipe['seq']} tokens per step, lr {recipe['lr']}, cosine;"
              " step 0 is the base model with PI and no fine-tuning.", "",
              "| steps | " + " | ".join(f"W = {x}" for x in w) + " |", "|---|" + "---|" * len(w)]
    for row in r["fine_tuning"]:
        lines.append(f"| {row['step']} | " + " | ".join(fmt(row["ppl"].get(x, row["ppl"].get(str(x)))) for x in w) + " |")
    lines += ["", "### Passkey retrieval (PI paper table 4)", "",
              "The Mohtashami & Jaggi prompt at 256, 512 and 1024 tokens, 32 key depths x 10 trials per length, greedy."
              " k_max per prompt length = the largest distance k (key to question) such that every k' <= k reached"
              " 20% success at that length (the suite's rule, applied per length; over all lengths together a model"
              " that fails at a longer prompt gets 0 even where it retrieves at a short one).", "",
              "| model / rope | k_max at 256 | at 512 | at 1024 | success at 256 | at 512 | at 1024 |",
              "|---|---|---|---|---|---|---|"]
    for row in r["passkey"]:
        s = row["success_by_length"]
        lines.append(f"| {row['label']} | " + " | ".join(str(k_max(row["points"], n)) for n in (L, 2 * L, 4 * L)) + " | " +
                     " | ".join(f"{100 * s.get(n, s.get(str(n), 0)):.0f}%" for n in (L, 2 * L, 4 * L)) + " |")
    lines += ["", "![perplexity by window](evaluations/kjv-perplexity.png) ![passkey success by distance](evaluations/kjv-passkey.png)",
              "<!-- kjv:end -->"]
    path = os.path.join(ROOT, "docs", "EVALUATIONS.md")
    text = open(path).read()
    block = "\n".join(lines)
    if "<!-- kjv:begin" in text:
        head, rest = text.split("<!-- kjv:begin", 1)
        tail = rest.split("<!-- kjv:end -->", 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    open(path, "w").write(text)


def charts(r, out_dir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (apt-get install python3-matplotlib): no charts", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for row in r["perplexity"]:
        ax.plot(r["windows"], [row["ppl"].get(x, row["ppl"].get(str(x))) for x in r["windows"]], marker="o", label=row["label"])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(r["windows"], [str(x) for x in r["windows"]])
    ax.set_xlabel("evaluation window (tokens)")
    ax.set_ylabel("held-out perplexity")
    ax.axvline(L, color="grey", lw=0.8, ls=":")
    ax.legend(fontsize=7)
    ax.set_title("KJV held-out perplexity by window")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "kjv-perplexity.png"), dpi=110)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for row in r["passkey"]:
        pts = {}
        for p in row["points"]:
            pts.setdefault(p["k"], []).append(p["success_rate"])
        ks = sorted(pts)
        ax.plot(ks, [sum(pts[k]) / len(pts[k]) for k in ks], marker=".", label=row["label"])
    ax.set_xlabel("distance k from the key to the question (tokens), all prompt lengths")
    ax.set_ylabel("passkey success rate")
    ax.legend(fontsize=7)
    ax.set_title("Passkey retrieval")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "kjv-passkey.png"), dpi=110)


if __name__ == "__main__":
    sys.exit(main())
