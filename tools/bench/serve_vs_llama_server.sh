#!/usr/bin/env bash
# PiServe's server beside llama.cpp's llama-server on the same 134M random checkpoint (bf16 weights,
# converted bit for bit to GGUF), same threads, f16 KV caches, streaming /v1/completions over HTTP with
# tools/bench/serve_streams.mjs: 1, 4 and 16 concurrent streams, each with its own 128-token prompt of
# distinct ids and 64 generated tokens (ignore_eos, greedy). Servers run one at a time, in alternating
# order per round; each level runs twice per server start and the second run counts (the first warms).
# PiServe runs twice: exact prefill (default) and MatmulPrecision=bf16 (activations rounded to bf16 for
# the prompt, as llama.cpp does for bf16 weights).
#
#   tools/bench/serve_vs_llama_server.sh                      # ROUNDS=2 STREAMS="1 4 16" THREADS=2
#   /usr/bin/python3 tools/bench/serve_table.py /tmp/serve-vs/results.jsonl
#
# Needs llama-server (tools/bench/build_llamacpp.sh builds it beside llama-bench), node, /usr/bin/python3
# with numpy. Results: one JSON line per (server, streams, round) in $OUT/results.jsonl.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
rounds=${ROUNDS:-2}
levels=${STREAMS:-"1 4 16"}
threads=${THREADS:-2}
prompt=${PROMPT_TOKENS:-128}
max_tokens=${MAX_TOKENS:-64}
out=${OUT:-/tmp/serve-vs}
port=${PORT:-5131}
llamacpp=${LLAMACPP_DIR:-/tmp/llamacpp}
llama_server=$llamacpp/src/build/bin/llama-server
[ -x "$llama_server" ] || "$repo/tools/bench/build_llamacpp.sh" >/dev/null
mkdir -p "$out"
dotnet build -c Release "$repo/src/Api" -o "$out/piserve" -v quiet -nologo >/dev/null
source "$repo/tools/bench/small_model.sh"
[ -f "$out/models/small/config.json" ] || small_model "$out/models/small" "$out/piserve/piserve.dll"
gguf=$out/small-bf16.gguf
[ -f "$gguf" ] || PYTHONPATH=$llamacpp/src/gguf-py /usr/bin/python3 "$repo/tools/bench/to_gguf.py" "$out/models/small" "$gguf" >/dev/null
results=$out/results.jsonl
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cpus, threads=$threads" >> "$out/log.txt"
server=

start() { # engine
  case $1 in
    llama-server)
      # 16 slots (continuous batching over all of them), a context of 512 positions per slot.
      "$llama_server" -m "$gguf" -t "$threads" -tb "$threads" -np 16 -c 8192 --host 127.0.0.1 --port "$port" \
        --no-webui >"$out/llama-server.log" 2>&1 &
      server=$! ;;
    piserve|piserve-bf16)
      local precision=exact; [ "$1" = piserve-bf16 ] && precision=bf16
      dotnet "$out/piserve/piserve.dll" --urls "http://127.0.0.1:$port" --PiServe:ModelsRoot="$out/models" \
        --PiServe:Models:0:Id=small --PiServe:Models:0:Path=small --PiServe:KvCacheDType=f16 \
        --PiServe:MatmulPrecision=$precision --PiServe:Scheduler:Threads="$threads" \
        --PiServe:DataDirectory="$out/data" --PiServe:EvalWorkers=0 --Logging:LogLevel:Default=Warning >"$out/piserve.log" 2>&1 &
      server=$! ;;
  esac
  # llama-server answers /health once the model is loaded, PiServe /health/ready
  local probe=/health; [ "$1" != llama-server ] && probe=/health/ready
  for _ in $(seq 1 240); do curl -sf "http://127.0.0.1:$port$probe" >/dev/null && return 0; sleep 0.5; done
  echo "$1 did not start" >&2; return 1
}
stop() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=; }
trap stop EXIT

for round in $(seq 1 "$rounds"); do
  order="llama-server piserve piserve-bf16"; [ $((round % 2)) -eq 0 ] && order="piserve-bf16 piserve llama-server"
  for engine in $order; do
    start "$engine"
    for n in $levels; do
      node "$repo/tools/bench/serve_streams.mjs" "http://127.0.0.1:$port" small "$n" "$prompt" "$max_tokens" 1 >/dev/null  # warm
      r=$(node "$repo/tools/bench/serve_streams.mjs" "http://127.0.0.1:$port" small "$n" "$prompt" "$max_tokens" 2)
      line=$(/usr/bin/python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(engine=sys.argv[2], round=int(sys.argv[3]), threads=int(sys.argv[4]), load_before=float(sys.argv[5])); print(json.dumps(d))' \
        "$r" "$engine" "$round" "$threads" "$(cut -d' ' -f1 /proc/loadavg)")
      echo "$line" | tee -a "$results"
    done
    stop
  done
done
