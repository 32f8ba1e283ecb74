#!/usr/bin/python3
"""Summarise tools/bench/serve_vs_llama_server.sh results into a markdown table.

    /usr/bin/python3 tools/bench/serve_table.py /tmp/serve-vs/results.jsonl

Per (streams, server): medians over the rounds of aggregate generated tokens/s, time to first token
p50/p99 and inter-token latency p50/p99/max as the client received them, and the ratio of each PiServe
configuration's tokens/s to llama-server's.
"""
import json
import statistics
import sys
from collections import defaultdict

NAMES = {"llama-server": "llama-server", "piserve": "PiServe (exact)", "piserve-bf16": "PiServe (bf16 matmuls)"}


def main(path):
    runs = defaultdict(list)
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#"):
            d = json.loads(line)
            runs[(d["streams"], d["engine"])].append(d)
    med = lambda rs, f: statistics.median(f(r) for r in rs)
    print("| streams | server | tok/s (runs) | / llama-server | TTFT p50 / p99 ms | inter-token p50 / p99 / max ms |")
    print("|---|---|---|---|---|---|")
    for streams in sorted({k[0] for k in runs}):
        base = runs.get((streams, "llama-server"))
        base_tps = med(base, lambda r: r["tokens_per_second"]) if base else None
        for engine in ["llama-server", "piserve", "piserve-bf16"]:
            rs = runs.get((streams, engine))
            if not rs:
                continue
            tps = med(rs, lambda r: r["tokens_per_second"])
            ratio = f"**{tps / base_tps:.2f}**" if base_tps and engine != "llama-server" else "–"
            each = ", ".join("%.0f" % r["tokens_per_second"] for r in rs)
            print(f"| {streams} | {NAMES[engine]} | {tps:.1f} ({each}) | {ratio} | "
                  f"{med(rs, lambda r: r['ttft_ms']['p50']):.0f} / {med(rs, lambda r: r['ttft_ms']['p99']):.0f} | "
                  f"{med(rs, lambda r: r['itl_ms']['p50']):.1f} / {med(rs, lambda r: r['itl_ms']['p99']):.1f} / {med(rs, lambda r: r['itl_ms']['max']):.1f} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
