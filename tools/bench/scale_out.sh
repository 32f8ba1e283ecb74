#!/usr/bin/env bash
# Two PiServe hosts sharing one PostgreSQL job store against one host: wall time of the same multi-unit
# perplexity job (kjv-base-256, 8 documents x 2 windows = 16 units), and which host computed which units.
# A real PostgreSQL is initdb'ed into a temp folder (Debian's postgresql; as the postgres user when root).
# On a machine with C cores, give each host C/HOSTS threads so both configurations use the same cores:
#   THREADS_ONE=2 THREADS_TWO=1 tools/bench/scale_out.sh      (the defaults, for 2 cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
threads_one=${THREADS_ONE:-2}; threads_two=${THREADS_TWO:-1}
work=$(mktemp -d /tmp/piserve-scale-XXXX); chmod 755 "$work"
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; as_pg "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/pg" && [ "$(id -u)" = 0 ] && chown postgres "$work/pg"
pgport=$((20000 + RANDOM % 20000))
as_pg "$pgbin/initdb" -D "$work/pg" -U piserve -A trust --no-sync >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w -o "-p $pgport -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null
conn="Host=127.0.0.1;Port=$pgport;Username=piserve;Database=postgres"

dotnet build -c Release "$root/src/Api" -v q -nologo >/dev/null
exe="$root/src/Api/bin/Release/net10.0/piserve.dll"
# Documents: public-domain-style license texts Debian ships (real English prose, no download).
mkdir -p "$work/data/docs"
for f in GPL-3 GPL-2 LGPL-3 LGPL-2.1 Apache-2.0 MPL-2.0 GFDL-1.3 Artistic; do cp "/usr/share/common-licenses/$f" "$work/data/docs/$f.txt"; done

start_host() { # port host-id threads
  dotnet "$exe" --urls "http://127.0.0.1:$1" --PiServe:DataRoot="$work/data" --PiServe:Datasets:0:Id=docs \
    --PiServe:Datasets:0:Kind=pg19 --PiServe:Datasets:0:Path=docs --PiServe:JobStore:Kind=postgres \
    --PiServe:JobStore:ConnectionString="$conn" --PiServe:JobStore:HostId="$2" --PiServe:JobStore:PollSeconds=0.2 \
    --PiServe:Scheduler:Threads="$3" --Logging:LogLevel:Default=Warning >"$work/$2.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$1/health/ready" >/dev/null && return; sleep 0.5; done
  echo "host $2 did not start" >&2; cat "$work/$2.log" >&2; exit 1
}
run_job() { # port -> seconds
  local id t0 state
  id=$(curl -sf "http://127.0.0.1:$1/v1/evals" -H 'Content-Type: application/json' -d '{"kind":"perplexity","model":"kjv-base-256","dataset":"docs","parameters":{"windows":[128,256],"stride":64,"max_tokens":1536}}' | jq -r .id)
  t0=$(date +%s.%N)
  while :; do
    state=$(curl -sf "http://127.0.0.1:$1/v1/evals/$id" | jq -r .state)
    [ "$state" = succeeded ] && break
    [ "$state" = failed ] && { curl -s "http://127.0.0.1:$1/v1/evals/$id"; exit 1; }
    sleep 0.1
  done
  echo "$id $(echo "$(date +%s.%N) - $t0" | bc)"
}
per_host() { as_pg "$pgbin/psql" -h 127.0.0.1 -p "$pgport" -U piserve -d postgres -At -c \
  "SELECT owner || ': ' || count(*) || ' units' FROM eval_unit_starts WHERE job_id = '$1' GROUP BY owner ORDER BY owner" | paste -sd ';' -; }

echo "machine: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores)"
start_host 5201 host-a "$threads_one"
read -r id1 t1 < <(run_job 5201)
read -r id1b t1b < <(run_job 5201)
echo "one host ($threads_one threads):     ${t1}s, ${t1b}s   [$(per_host "$id1b")]"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()
start_host 5201 host-a "$threads_two"
start_host 5202 host-b "$threads_two"
read -r id2 t2 < <(run_job 5201)
read -r id2b t2b < <(run_job 5202)
echo "two hosts ($threads_two thread each): ${t2}s, ${t2b}s   [$(per_host "$id2b")]"
same=$(for j in "$id1b" "$id2b"; do curl -sf "http://127.0.0.1:5201/v1/evals/$j" | jq -c .results; done | uniq | wc -l)
echo "results equal: $([ "$same" = 1 ] && echo yes || echo NO)"
