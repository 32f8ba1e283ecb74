#!/usr/bin/env bash
# PiServe's engine and llama.cpp on the same random checkpoint (converted bit for bit to GGUF), the
# same threads and the same machine, run alternately (llama.cpp first in odd rounds, PiServe first
# in even ones) so drifts of a shared host hit both. Results: one JSON line per run in
# $OUT/results.jsonl; tools/bench/side_by_side_table.py turns them into docs/PERFORMANCE.md's table.
#
#   tools/bench/side_by_side.sh                         # small and 1b, bf16 and f16, 2 threads, 2 rounds
#   SHAPES=small DTYPES=bf16 TESTS="pp512 tg128" ROUNDS=3 tools/bench/side_by_side.sh
#   # the AVX2 machine kind on an AVX-512 one: llama.cpp built for AVX2 (build_llamacpp.sh with
#   # LLAMACPP_AVX2=1), PiServe's runtime and native kernels at width 256
#   LLAMA_BENCH=/tmp/llamacpp/src/build-avx2/bin/llama-bench DOTNET_EnableAVX512=0 tools/bench/side_by_side.sh
#
# Tests are llama-bench's: ppN = prefill of N tokens into an empty cache, tg128 = 128 decode steps
# from an empty context, tg128@D = 128 decode steps after a D-token prefill. Both engines keep the
# KV cache in f16 (llama.cpp's default; PiServe's --kv-dtype f16) and memory-map the weights.
# For bf16 weights every test runs PiServe twice: exact (engine "piserve", f32 activations) and
# with --matmul-precision bf16 (engine "piserve-bf16": activations rounded to bf16 as llama.cpp does).
# Needs llama.cpp's llama-bench (tools/bench/build_llamacpp.sh builds it, ~18 min on 2 cores),
# /usr/bin/python3 with numpy, and about 2.5 GB of disk per 1b checkpoint and dtype (twice: ours and GGUF).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
shapes=${SHAPES:-"small 1b"}
dtypes=${DTYPES:-"bf16 f16"}
tests=${TESTS:-"pp512 pp2048 tg128 tg128@4096 tg128@16384"}
threads=${THREADS:-2}
rounds=${ROUNDS:-2}
out=${OUT:-/tmp/side-by-side}
llamacpp=${LLAMACPP_DIR:-/tmp/llamacpp}
llama_bench=${LLAMA_BENCH:-$llamacpp/src/build/bin/llama-bench}
[ -x "$llama_bench" ] || "$repo/tools/bench/build_llamacpp.sh" >/dev/null
mkdir -p "$out/gguf"
dotnet build -c Release "$repo/src/Api" -o "$out/piserve" -v quiet -nologo >/dev/null
piserve() { dotnet "$out/piserve/piserve.dll" "$@"; }
results=$out/results.jsonl
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cpus, threads=$threads" >> "$out/log.txt"

run_llama() { # gguf test
  local args
  case $2 in
    pp*) args="-p ${2#pp} -n 0" ;;
    tg128) args="-p 0 -n 128" ;;
    tg128@*) args="-p 0 -n 128 -d ${2#tg128@}" ;;
  esac
  "$llama_bench" -m "$1" -t "$threads" $args -r 1 -o jsonl 2>/dev/null | /usr/bin/python3 -c '
import json, sys
d = json.loads(sys.stdin.readline())
print(json.dumps({"tokens_per_second": d["avg_ts"], "build": d.get("build_commit"), "kv": d.get("type_k")}))'
}

run_piserve() { # shape dtype test [precision]
  local args key
  case $3 in
    pp*) args="--prompt ${3#pp} --generate 0"; key=prefill_tokens_per_second ;;
    tg128) args="--prompt 0 --generate 128"; key=decode_tokens_per_second ;;
    tg128@*) args="--prompt 0 --generate 128 --depth ${3#tg128@}"; key=decode_tokens_per_second_at_depth ;;
  esac
  piserve bench --shape "$1" --dtype "$2" --threads "$threads" --kv-dtype f16 --matmul-precision "${4:-exact}" $args | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
print(json.dumps({"tokens_per_second": d[sys.argv[1]], "weight_bytes": d["weight_bytes"], "kv_bytes_per_token": d["kv_bytes_per_token"],
                  "bandwidth_gb_per_second": d["bandwidth_gb_per_second"], "peak_working_set_bytes": d["peak_working_set_bytes"], "simd_width": d["simd_width"],
                  "native_kernels": d.get("native_kernels")}))' "$key"
}

for shape in $shapes; do
  for dtype in $dtypes; do
    ckpt=${TMPDIR:-/tmp}/piserve-bench/$shape-$dtype
    piserve bench --shape "$shape" --dtype "$dtype" --prompt 1 --generate 0 --threads 1 >/dev/null   # writes the checkpoint once
    gguf=$out/gguf/$shape-$dtype.gguf
    [ -f "$gguf" ] || PYTHONPATH=$llamacpp/src/gguf-py /usr/bin/python3 "$repo/tools/bench/to_gguf.py" "$ckpt" "$gguf" >/dev/null
    for test in $tests; do
      for round in $(seq 1 "$rounds"); do
        ours="piserve"; [ "$dtype" = bf16 ] && ours="piserve piserve-bf16"
        order="llama $ours"; [ $((round % 2)) -eq 0 ] && order="$ours llama"
        for engine in $order; do
          load=$(cut -d' ' -f1 /proc/loadavg)
          case $engine in
            llama) r=$(run_llama "$gguf" "$test") ;;
            piserve) r=$(run_piserve "$shape" "$dtype" "$test") ;;
            piserve-bf16) r=$(run_piserve "$shape" "$dtype" "$test" bf16) ;;
          esac
          line=$(/usr/bin/python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(shape=sys.argv[2], dtype=sys.argv[3], test=sys.argv[4], engine=sys.argv[5], round=int(sys.argv[6]), threads=int(sys.argv[7]), load_before=float(sys.argv[8])); print(json.dumps(d))' \
            "$r" "$shape" "$dtype" "$test" "$engine" "$round" "$threads" "$load")
          echo "$line" | tee -a "$results"
        done
      done
    done
  done
done
