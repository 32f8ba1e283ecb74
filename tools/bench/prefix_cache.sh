#!/usr/bin/env bash
# Automatic prefix caching (issue 16, goal 4): time to first token of a request whose first DOC tokens
# were seen before (another question about the same document) against a cold prefill of the same
# length, on a host serving the 134M random checkpoint (max_position 8192) built from this tree;
# driven by tools/bench/prefix_cache.mjs with the openai npm client over SSE.
# Usage: tools/bench/prefix_cache.sh [DOC_TOKENS=4096] [ROUNDS=3]   (EXTRA_ARGS=... for the host)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
port=${PORT:-5098}
work=$(mktemp -d)
trap 'kill $host 2>/dev/null || true; rm -rf "$work"' EXIT
dotnet build -c Release "$root/src/Api" -v q -nologo >/dev/null
exe="$root/src/Api/bin/Release/net10.0/piserve.dll"
source "$root/tools/bench/small_model.sh"
small_model "$work/models/small" "$exe"
(cd "$root/tests/api-clients" && [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error)
dotnet "$exe" --urls "http://127.0.0.1:$port" --PiServe:ModelsRoot="$work/models" --PiServe:Models:0:Id=small \
  --PiServe:Models:0:Path=small --PiServe:DataDirectory="$work/data" --Logging:LogLevel:Default=Warning ${EXTRA_ARGS:-} &
host=$!
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.5; done
node "$root/tools/bench/prefix_cache.mjs" "http://127.0.0.1:$port" small "${1:-4096}" "${2:-3}"
