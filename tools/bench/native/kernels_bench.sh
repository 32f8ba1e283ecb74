#!/usr/bin/env bash
# Single-thread GFLOP/s of the native matmul kernels (kernels_bench.c) on the library `dotnet build`
# made, for the 134M and 1.1B shapes' matrices, prefill tiles of 64 tokens and a decode batch of 16.
#   tools/bench/native/kernels_bench.sh        # needs an AVX-512 + AVX512-BF16 CPU and gcc
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
dotnet build -c Release "$root/src/Inference" -v q -nologo >/dev/null
lib="$root/src/Inference/obj/native"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
gcc -O2 -o "$work/kernels_bench" "$root/tools/bench/native/kernels_bench.c" -L"$lib" -lpiserve_kernels -Wl,-rpath,"$lib"
for shape in "768 768 512 64" "768 2048 512 64" "2048 768 512 64" "2048 5632 128 64" "768 768 16 16"; do
  "$work/kernels_bench" $shape
done
