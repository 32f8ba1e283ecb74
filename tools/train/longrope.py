#!/usr/bin/python3
"""LongRoPE's claims on the shipped KJV models, measured by PiServe's own eval jobs over HTTP.

Starts the PiServe host (shipped models kjv-base-256 and kjv-pi-1024, shipped datasets kjv-search and
kjv-test, a SQLite job store under .train/longrope-state so a rerun reuses every finished job),
submits the jobs through POST /v1/evals, waits for them, and writes:
  docs/evaluations/longrope.json    every job: id, kind, model, dataset, parameters, rope_scaling, results
  docs/EVALUATIONS.md               the tables, between the longrope markers

Experiments (L = 256, the base model's window):
  1. Search without fine-tuning on kjv-base-256 for 4x (1024) and 8x (2048), three search seeds each,
     fitness on kjv-search; every found factor set registered as a variant and evaluated by perplexity
     on kjv-test (disjoint documents), against PI, dynamic NTK and YaRN at the same factor.
  2. A second search on the PI-fine-tuned kjv-pi-1024 to 16x (4096) without further fine-tuning,
     against PI, dynamic NTK and YaRN at 16x on the same model.
  3. Short-context readjustment of kjv-pi-1024: short factors searched at L (its long factors kept),
     perplexity at L and at 4L before and after.
Each perplexity row carries a 95% bootstrap interval over the 6 test documents; each searched row is
the mean and spread (min-max) over the three seeds.

  /usr/bin/python3 tools/train/longrope.py [--url http://127.0.0.1:5311 (an already running host)]
"""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
L = 256
SEEDS = [0, 1, 2]
SEARCH = {"samples": 3, "population": 12, "generations": 4}
PPL = {"stride": 256, "max_tokens": 4096, "beyond_window": True}


def request(url, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class Host:
    def __init__(self, url):
        self.url = url
        _, jobs = request(f"{url}/v1/evals?state=succeeded")
        self.done = jobs["data"]

    def find(self, kind, model, dataset, parameters, rope):
        """A finished job of the same kind, model, dataset and rope whose (normalized) parameters include these."""
        for j in self.done:
            if (j["kind"], j["model"], j["dataset"], j.get("rope_scaling")) == (kind, model, dataset, rope) \
                    and all(j["parameters"].get(k) == v for k, v in parameters.items()):
                return request(f"{self.url}/v1/evals/{j['id']}")[1]
        return None

    def job(self, kind, model, dataset, parameters, rope=None):
        """Runs a job (or reuses the identical finished one: reruns are incremental) and returns it with results."""
        if (old := self.find(kind, model, dataset, parameters, rope)) is not None:
            return old
        body = {"kind": kind, "model": model, "dataset": dataset, "parameters": parameters}
        if rope:
            body["rope_scaling"] = rope
        status, job = request(f"{self.url}/v1/evals", "POST", body)
        if status != 202:
            raise SystemExit(f"POST /v1/evals {body}: {status} {job}")
        t0 = time.time()
        while True:
            _, job = request(f"{self.url}/v1/evals/{job['id']}")
            if job["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.5)
        if job["state"] != "succeeded":
            raise SystemExit(f"job {job['id']} {job['state']}: {job.get('error')}")
        self.done.append(job)
        print(f"  {kind} {model} {json.dumps(rope) if rope else ''}: {job['id']} {time.time() - t0:.0f} s", flush=True)
        return job


def ppl_row(job, windows):
    by = {w["window"]: w for w in job["results"]["windows"]}
    return [(by[w]["ppl"], by[w].get("ppl_ci95")) for w in windows]


def fmt(ppl, ci=None):
    if ppl is None:
        return "–"
    s = f"{ppl:.2f}" if ppl < 1000 else f"{ppl:.3g}"
    if ci:
        s += f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci[1] < 1000 else f" [{ci[0]:.3g}, {ci[1]:.3g}]"
    return s


def mean_spread(rows, windows):
    """Per window: mean and min-max over seeds."""
    cells = []
    for i in range(len(windows)):
        vals = [r[i][0] for r in rows if r[i][0] is not None]
        cells.append(f"{sum(vals) / len(vals):.2f} ({min(vals):.2f}–{max(vals):.2f})")
    return cells


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="an already running host (default: start one)")
    ap.add_argument("--port", type=int, default=5311)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    proc = None
    url = args.url
    if not url:
        url = f"http://127.0.0.1:{args.port}"
        exe = os.path.join(ROOT, "src", "Api", "bin", "Release", "net10.0", "piserve.dll")
        proc = subprocess.Popen(["dotnet", exe, "--urls", url, f"--PiServe:DataDirectory={ROOT}/.train/longrope-state",
                                 f"--PiServe:Scheduler:Threads={args.threads}", "--Logging:LogLevel:Default=Warning"], cwd=ROOT)
        for _ in range(240):
            try:
                if request(f"{url}/health/ready")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
    try:
        run(Host(url))
    finally:
        if proc:
            proc.terminate()
            proc.wait()


def run(host):
    record = []
    tables = []

    def keep(job, label):
        record.append({"label": label, "id": job["id"], "kind": job["kind"], "model": job["model"], "dataset": job["dataset"],
                       "parameters": job["parameters"], "rope_scaling": job.get("rope_scaling"), "results": job["results"]})
        return job

    # 1. Search on the base model, no fine-tuning.
    windows = [L, 2 * L, 4 * L, 8 * L]
    lines = [f"| base model kjv-base-256, no fine-tuning | {' | '.join(str(w) for w in windows)} |",
             "|---|" + "---|" * len(windows)]
    base_jobs = [("none (extrapolation)", None)]
    for s in (4, 8):
        base_jobs += [(f"PI ×{s}", {"rope_type": "linear", "factor": s}),
                      (f"dynamic NTK ×{s}", {"rope_type": "dynamic", "factor": s}),
                      (f"YaRN ×{s}", {"rope_type": "yarn", "factor": s, "original_max_position_embeddings": L})]
    for label, rope in base_jobs:
        job = keep(host.job("perplexity", "kjv-base-256", "kjv-test", dict(PPL, windows=windows), rope), label)
        lines.append(f"| {label} (`{job['id']}`) | " + " | ".join(fmt(p, c) for p, c in ppl_row(job, windows)) + " |")
    search_summary = []
    for s in (4, 8):
        variants = []
        for seed in SEEDS:
            vid = f"kjv-base-256-longrope-{s}x-s{seed}"
            job = keep(host.job("longrope-search", "kjv-base-256", "kjv-search",
                                dict(SEARCH, target_length=s * L, seed=seed, register_as=vid)), f"search ×{s} seed {seed}")
            r = job["results"]
            search_summary.append(f"| ×{s} | {seed} | `{job['id']}` | {r['best']['ppl']:.2f} | "
                                  + ", ".join(f"{b['name']} {b['ppl']:.2f}" for b in r["baselines"]) + f" | {r['evaluations']} |")
            variants.append(vid)
        rows = [ppl_row(keep(host.job("perplexity", v, "kjv-test", dict(PPL, windows=windows)), f"searched ×{s} ({v})"), windows)
                for v in variants]
        cells = mean_spread(rows, windows)
        lines.append(f"| **LongRoPE search ×{s}** (3 seeds: mean (min–max)) | " + " | ".join(cells) + " |")
    tables.append("\n".join(lines))
    tables.append("\n".join(["| target | seed | job | best fitness ppl (kjv-search) | seeds' fitness (PI, NTK, YaRN as factors) | evaluations |",
                             "|---|---|---|---|---|---|"] + search_summary))

    # 2. Second search on the PI-fine-tuned model to 16x (4096), no further fine-tuning.
    windows = [4 * L, 8 * L, 16 * L]
    lines = [f"| kjv-pi-1024 (PI ×4 fine-tuned), no further fine-tuning | {' | '.join(str(w) for w in windows)} |",
             "|---|" + "---|" * len(windows)]
    for label, rope in [("as fine-tuned (PI ×4)", None), ("PI ×16", {"rope_type": "linear", "factor": 16}),
                        ("dynamic NTK ×16", {"rope_type": "dynamic", "factor": 16, "original_max_position_embeddings": L}),
                        ("YaRN ×16", {"rope_type": "yarn", "factor": 16, "original_max_position_embeddings": L})]:
        job = keep(host.job("perplexity", "kjv-pi-1024", "kjv-test", dict(PPL, windows=windows, max_tokens=8192), rope), label)
        lines.append(f"| {label} (`{job['id']}`) | " + " | ".join(fmt(p, c) for p, c in ppl_row(job, windows)) + " |")
    # The default attention factor (√(1 + ln 16 / ln 256) ≈ 1.22) and, as a second search, none (1): the
    # model was fine-tuned under plain PI, whose cos/sin are not scaled.
    for suffix, extra, label in [("", {}, "LongRoPE search ×16"), ("-af1", {"attention_factor": 1.0}, "LongRoPE search ×16, attention factor 1")]:
        variants = []
        for seed in SEEDS:
            vid = f"kjv-pi-1024-longrope-16x{suffix}-s{seed}"
            keep(host.job("longrope-search", "kjv-pi-1024", "kjv-search",
                          dict(SEARCH, target_length=16 * L, original_length=L, seed=seed, register_as=vid, **extra)), f"search ×16{suffix} seed {seed}")
            variants.append(vid)
        rows = [ppl_row(keep(host.job("perplexity", v, "kjv-test", dict(PPL, windows=windows, max_tokens=8192)), f"searched ×16 ({v})"), windows)
                for v in variants]
        lines.append(f"| **{label}** (3 seeds: mean (min–max)) | " + " | ".join(mean_spread(rows, windows)) + " |")
    tables.append("\n".join(lines))

    # 3. Short-context readjustment of the extended model (LongRoPE §3.3): short factors searched at L
    #    with kjv-pi-1024's long factors (uniform 4) fixed; perplexity at L and at 4L before and after.
    windows = [L, 4 * L]
    lines = [f"| kjv-pi-1024, short factors | {' | '.join(str(w) for w in windows)} |", "|---|" + "---|" * len(windows)]
    job = keep(host.job("perplexity", "kjv-pi-1024", "kjv-test", dict(PPL, windows=windows)), "before readjustment")
    lines.append(f"| before: PI ×4 at every length (`{job['id']}`) | " + " | ".join(fmt(p, c) for p, c in ppl_row(job, windows)) + " |")
    variants = []
    for seed in SEEDS:
        vid = f"kjv-pi-1024-readjusted-s{seed}"
        keep(host.job("longrope-search", "kjv-pi-1024", "kjv-search",
                      dict(SEARCH, factors="short", original_length=L, seed=seed, register_as=vid)), f"short search seed {seed}")
        variants.append(vid)
    rows = [ppl_row(keep(host.job("perplexity", v, "kjv-test", dict(PPL, windows=windows)), f"readjusted ({v})"), windows) for v in variants]
    lines.append("| **after: searched short factors** (3 seeds: mean (min–max)) | " + " | ".join(mean_spread(rows, windows)) + " |")
    tables.append("\n".join(lines))

    os.makedirs(os.path.join(ROOT, "docs", "evaluations"), exist_ok=True)
    with open(os.path.join(ROOT, "docs", "evaluations", "longrope.json"), "w") as f:
        json.dump(record, f, indent=1)
    text = "\n\n".join(tables)
    print(text)
    path = os.path.join(ROOT, "docs", "EVALUATIONS.md")
    doc = open(path).read()
    begin, end = "<!-- longrope:begin -->", "<!-- longrope:end -->"
    if begin in doc:
        doc = doc[:doc.index(begin) + len(begin)] + "\n" + text + "\n" + doc[doc.index(end):]
        open(path, "w").write(doc)


if __name__ == "__main__":
    main()
