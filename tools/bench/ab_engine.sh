#!/usr/bin/env bash
# Interleaved A/B of two builds of the engine: each configuration runs old then new, twice.
#   dotnet build -c Release src/Api -o /tmp/newbin   (and the other commit into /tmp/oldbin)
#   tools/bench/ab_engine.sh /tmp/oldbin /tmp/newbin [shape]
set -euo pipefail
old=$1 new=$2 shape=${3:-small}
for round in 1 2; do
  for dt in bf16 f16; do
    for th in 2 1; do
      for v in "$old" "$new"; do
        r=$(dotnet "$v/piserve.dll" bench --shape "$shape" --dtype $dt --prompt 512 --generate 128 --threads $th 2>/dev/null)
        echo "$round $dt threads=$th $v $(echo "$r" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("pp", d["prefill_tokens_per_second"], "tg", d["decode_tokens_per_second"])') load=$(cut -d' ' -f1 /proc/loadavg)"
      done
    done
  done
done
