#!/usr/bin/env bash
# Runs tools/bench/chunked_prefill.mjs against a host serving the 134M random checkpoint (max_position
# 8192) built from this tree, or from the tree at $REV when given (to compare before/after).
# Usage: tools/bench/chunked_prefill.sh [LONG_TOKENS=4096] [STREAMS=8] [ROUNDS=1]   (REV=<commit> for another build)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
port=${PORT:-5097}
work=$(mktemp -d)
trap 'kill $host 2>/dev/null || true; rm -rf "$work"' EXIT
src="$root"
if [ -n "${REV:-}" ]; then git -C "$root" worktree add -q "$work/tree" "$REV"; src="$work/tree"; fi
dotnet build -c Release "$src/src/Api" -v q -nologo >/dev/null
exe="$src/src/Api/bin/Release/net10.0/piserve.dll"
source "$root/tools/bench/small_model.sh"
small_model "$work/models/small" "$root/src/Api/bin/Release/net10.0/piserve.dll" "$exe"
dotnet "$exe" --urls "http://127.0.0.1:$port" --PiServe:ModelsRoot="$work/models" --PiServe:Models:0:Id=small \
  --PiServe:Models:0:Path=small --PiServe:DataDirectory="$work/data" --Logging:LogLevel:Default=Warning ${EXTRA_ARGS:-} &
host=$!
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.5; done
node "$root/tools/bench/chunked_prefill.mjs" "http://127.0.0.1:$port" small "${1:-4096}" "${2:-8}" "${3:-1}"
if [ -n "${REV:-}" ]; then kill $host; wait $host 2>/dev/null || true; git -C "$root" worktree remove --force "$work/tree"; fi
