#!/usr/bin/env bash
# Runs tools/reliability/probe.mjs against a fresh host serving the shipped KJV models, then
# stops the host with SIGTERM while streams run and checks that they end and the process exits 0.
# Usage: tools/reliability/probe.sh   (about 2 minutes on 2 cores; loopback only)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
port=${PORT:-5091}
base="http://127.0.0.1:$port"
data=$(mktemp -d)
trap 'kill $host 2>/dev/null || true; rm -rf "$data"' EXIT
dotnet build -c Release "$root/src/Api" -v q -nologo >/dev/null
(cd "$root/tests/api-clients" && [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error)
exe="$root/src/Api/bin/Release/net10.0/piserve.dll"

dotnet "$exe" --urls "$base" --PiServe:DataDirectory="$data" --Logging:LogLevel:Default=Warning &
host=$!
for _ in $(seq 1 120); do curl -sf "$base/health/ready" >/dev/null && break; sleep 0.5; done
node "$root/tools/reliability/probe.mjs" "$base" kjv-base-256

# SIGTERM while 10 streams run: each stream must end (finish or error event, no hang), exit code 0.
for i in $(seq 1 10); do
  curl -sN "$base/v1/completions" -H 'content-type: application/json' \
    -d '{"model":"kjv-pi-1024","prompt":"And it came to pass","max_tokens":900,"stream":true,"ignore_eos":true}' > "$data/s$i.txt" &
done
sleep 2
start=$(date +%s.%N)
kill -TERM $host
set +e; wait $host; code=$?; set -e
end=$(date +%s.%N)
wait
ended=$(grep -l -E 'data: \[DONE\]|"error"' "$data"/s*.txt | wc -l)
printf '{"sigterm":{"streams":10,"streams_ended_cleanly":%d,"exit_code":%d,"seconds_to_exit":%.1f}}\n' "$ended" "$code" "$(echo "$end - $start" | bc)"
