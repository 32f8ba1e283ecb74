#!/usr/bin/python3
"""Summarise tools/bench/side_by_side.sh results into the markdown table of docs/PERFORMANCE.md.

    /usr/bin/python3 tools/bench/side_by_side_table.py /tmp/side-by-side/results.jsonl [--bandwidth-gbs B] [--write docs/PERFORMANCE.md]

Per (shape, dtype, test): the median tokens/s of each engine over the alternating rounds, the ratio
PiServe / llama.cpp (for bf16 weights also PiServe with --matmul-precision bf16, engine "piserve-bf16",
the numerics llama.cpp itself uses for bf16 weights), and for decode rows the fraction of the bandwidth ceiling: the bytes one decode
step must read (all weights, plus the f16 KV cache of the context for tg128@D) over the machine's
bandwidth: --bandwidth-gbs (e.g. STREAM triad measured on a quiet machine), else the median of the
read bandwidth PiServe's bench measured in the same runs (noisier: it shares the host with them). With --write the table replaces the text between the
side-by-side markers of the given file.
"""
import json
import statistics
import sys
from collections import defaultdict

BEGIN, END = "<!-- side-by-side:begin -->", "<!-- side-by-side:end -->"
TEST_ORDER = ["pp512", "pp2048", "tg128", "tg128@4096", "tg128@16384"]
SHAPE_NAMES = {"small": "134M (small)", "1b": "1.1B (1b, TinyLlama shape)", "tiny": "tiny"}


def main(path, write=None, bandwidth_gbs=None):
    runs = defaultdict(list)
    meta = defaultdict(list)
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        d = json.loads(line)
        key = (d["shape"], d["dtype"], d["test"])
        runs[key + (d["engine"],)].append(d["tokens_per_second"])
        if d["engine"] == "piserve":
            meta[(d["shape"], d["dtype"])].append(d)

    rows = []
    keys = sorted({k[:3] for k in runs}, key=lambda k: (k[0] != "small", k[1], TEST_ORDER.index(k[2]) if k[2] in TEST_ORDER else 99))
    for shape, dtype, test in keys:
        ours, theirs = runs.get((shape, dtype, test, "piserve"), []), runs.get((shape, dtype, test, "llama"), [])
        fast = runs.get((shape, dtype, test, "piserve-bf16"), [])
        if not ours or not theirs:
            continue
        m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
        ceiling = ""
        if test.startswith("tg"):
            m = meta[(shape, dtype)]
            bandwidth = (bandwidth_gbs or statistics.median(x["bandwidth_gb_per_second"] for x in m)) * 1e9
            depth = int(test.split("@")[1]) if "@" in test else 0
            step_bytes = m[0]["weight_bytes"] + depth * m[0]["kv_bytes_per_token"]
            limit = bandwidth / step_bytes
            ceiling = f"{limit:.0f} | {m_ours / limit:.2f} | {m_theirs / limit:.2f}"
        else:
            ceiling = "– | – | –"
        def spread(v):
            digits = 0 if max(v) >= 100 else 1
            return f" ({min(v):.{digits}f}–{max(v):.{digits}f})" if len(v) > 1 else ""
        m_fast = statistics.median(fast) if fast else None
        fast_cells = f"**{m_fast:.1f}**{spread(fast)} | **{m_fast / m_theirs:.2f}**" if fast else "– | –"
        rows.append(f"| {SHAPE_NAMES.get(shape, shape)} | {dtype} | {test} | **{m_ours:.1f}**{spread(ours)} | "
                    f"{m_theirs:.1f}{spread(theirs)} | **{m_ours / m_theirs:.2f}** | {fast_cells} | {ceiling} |")

    bw = [x["bandwidth_gb_per_second"] for v in meta.values() for x in v]
    table = "\n".join([
        "| shape | weights | test | PiServe tok/s (range) | llama.cpp tok/s (range) | PiServe / llama.cpp | PiServe bf16 matmuls tok/s | bf16 matmuls / llama.cpp | ceiling tok/s | PiServe / ceiling | llama.cpp / ceiling |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Medians of up to {max(len(v) for v in runs.values())} alternating runs per engine and row. PiServe runs exact (f32 activations) unless the column says bf16 matmuls. Ceiling: bytes one decode step reads "
        + (f"(weights + f16 KV of the context) over {bandwidth_gbs:g} GB/s (STREAM triad, 2 threads, quiet machine); "
         if bandwidth_gbs else "(weights + f16 KV of the context) over the read bandwidth measured by `bench` in these runs; ")
        + (f"`bench`'s own read probe during these runs: median {statistics.median(bw):.1f} GB/s, range {min(bw):.1f}–{max(bw):.1f}." if bw else ""),
    ])
    print(table)
    if write:
        text = open(write).read()
        a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
        open(write, "w").write(text[:a] + "\n" + table + "\n" + text[b:])


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    write = args[args.index("--write") + 1] if "--write" in args else None
    bandwidth = float(args[args.index("--bandwidth-gbs") + 1]) if "--bandwidth-gbs" in args else None
    main(args[0], write, bandwidth)
