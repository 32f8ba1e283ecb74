#!/usr/bin/env bash
# The GPU backend's checks for a machine with an NVIDIA GPU (driver + CUDA + PyTorch, no .NET).
#
# Build the self-contained publish on a machine with .NET (the piserve executable is ~53 MB; the
# device tool carries at most 64 MiB, so drop the shipped models and symbols, which the checks do not use):
#   dotnet publish src/Api -c Release -r linux-x64 --self-contained -p:PublishSingleFile=true \
#       -p:EnableCompressionInSingleFile=true -p:DebugType=none -o publish/linux-x64
#   rm -rf publish/linux-x64/models
# then, on the GPU machine, from the repository root (publish/ is git-ignored: carry it along):
#   bash tools/gpu/run_gpu_checks.sh [publish/linux-x64] [OUT_DIR]
# PHASES="golden bench torch" (the default) picks what runs, so each can be its own command
# (every piserve process compiles the kernels for the GPU once, a few seconds, so the golden phase
# runs `score` for every case and `generate` for the cases of up to GOLDEN_GENERATE_MAX positions).
#
# Runs, each result as JSON lines into OUT_DIR (default $OUT or ./gpu-results):
#   1. nvidia-smi: the GPU's name and memory.
#   2. golden checks on cuda: every fixture case through `score` (log-probs within 1e-3 of the float64
#      PyTorch reference) and `generate` (greedy tokens) — tools/gpu/golden_check.py.
#   3. bench on cuda: the 1.1B shape (TinyLlama's), bf16, pp 512 and tg 128, and tg 128 at depth 2048,
#      with the GPU's memory bandwidth from nvidia-smi's name (H100/H200 figures below) for the % of it.
#   4. PyTorch eager decode of the same checkpoint on the same GPU (tools/gpu/torch_decode.py): the anchor.
# No figure may be quoted from anywhere but this script's output on a real GPU.
set -uo pipefail
cd "$(dirname "$0")/../.."
PUB=${1:-publish/linux-x64}
OUTDIR=${2:-${OUT:-gpu-results}}
mkdir -p "$OUTDIR"
PISERVE="$PUB/piserve"
[ -x "$PISERVE" ] || { echo "no executable $PISERVE: build the self-contained publish first (see the header)" >&2; exit 2; }
export DOTNET_TieredPGO=1
log() { echo "== $*" | tee -a "$OUTDIR/summary.txt"; }

log "GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUTDIR/gpu.txt" | tee -a "$OUTDIR/summary.txt"
GPU_NAME=$(head -1 "$OUTDIR/gpu.txt" | cut -d, -f1)
case "$GPU_NAME" in
  *H200*) BW=4800 ;;
  *H100*SXM*|*H100\ 80GB\ HBM3*) BW=3350 ;;
  *H100*) BW=2000 ;;
  *A100*80GB*) BW=2039 ;;
  *A100*) BW=1555 ;;
  *) BW=0 ;;   # unknown: bench reports no fraction of the bandwidth
esac

PHASES=${PHASES:-golden bench torch}
GOLDEN_RC=0
if [[ " $PHASES " == *" golden "* ]]; then
log "golden checks on cuda"
python3 tools/gpu/golden_check.py --piserve "$PISERVE" --backend cuda --generate-max-positions "${GOLDEN_GENERATE_MAX:-200}" > "$OUTDIR/golden_cuda.jsonl"
GOLDEN_RC=$?
tail -1 "$OUTDIR/golden_cuda.jsonl" | tee -a "$OUTDIR/summary.txt"
fi

if [[ " $PHASES " == *" bench "* ]]; then
log "bench on cuda (1b shape, bf16)"
BENCH_ARGS=(bench --shape 1b --dtype bf16 --prompt 512 --generate 128 --repeat 3 --backend cuda)
[ "$BW" != 0 ] && BENCH_ARGS+=(--bandwidth-gbs "$BW")
"$PISERVE" "${BENCH_ARGS[@]}" | tee "$OUTDIR/bench_cuda.json" | tee -a "$OUTDIR/summary.txt"
"$PISERVE" "${BENCH_ARGS[@]}" --depth 2048 --prompt 0 | tee "$OUTDIR/bench_cuda_depth2048.json" | tee -a "$OUTDIR/summary.txt"
"$PISERVE" bench --shape 1b --dtype bf16 --prompt 512 --generate 128 --backend cuda --kv-dtype f16 | tee "$OUTDIR/bench_cuda_kvf16.json" | tee -a "$OUTDIR/summary.txt"
fi

if [[ " $PHASES " == *" torch "* ]]; then
log "PyTorch eager anchor on the same checkpoint"
# bench --shape writes the checkpoint under the temp folder (piserve-bench/1b-bf16); make it if bench did not run.
CKPT="${TMPDIR:-/tmp}/piserve-bench/1b-bf16"
[ -f "$CKPT/model.safetensors" ] || "$PISERVE" bench --shape 1b --dtype bf16 --prompt 0 --generate 0 --backend cuda > /dev/null
python3 tools/gpu/torch_decode.py --model "$CKPT" --prompt 512 --generate 128 | tee "$OUTDIR/torch_eager.json" | tee -a "$OUTDIR/summary.txt"
fi

log "done: results in $OUTDIR (golden rc $GOLDEN_RC)"
exit $GOLDEN_RC
