#!/usr/bin/env bash
# Builds llama.cpp's llama-bench (CPU backend) from the git bundle that the npm package
# node-llama-cpp ships (llama/gitRelease.bundle), outside this repository: nothing of llama.cpp is
# vendored or committed. The peers PiServe is measured against: llama-bench (tools/bench/side_by_side.sh)
# and llama-server (tools/bench/serve_vs_llama_server.sh).
#   tools/bench/build_llamacpp.sh            # ~18 min on 2 cores; LLAMACPP_DIR defaults to /tmp/llamacpp
set -euo pipefail
dir=${LLAMACPP_DIR:-/tmp/llamacpp}
version=3.22.1   # node-llama-cpp 3.22.1 bundles llama.cpp commit de3ff815 (the release bench-anchor measured)
mkdir -p "$dir/npm"
cd "$dir/npm"
[ -f node-llama-cpp-$version.tgz ] || npm pack --silent node-llama-cpp@$version >/dev/null
[ -d package ] || tar -xzf node-llama-cpp-$version.tgz
[ -d "$dir/src" ] || git clone -q package/llama/gitRelease.bundle "$dir/src"
cd "$dir/src"
# Native build, no BLAS: llama.cpp's own ggml CPU kernels, as its users run it on a CPU box.
# LLAMACPP_AVX2=1 builds an AVX2-only llama-bench into build-avx2 instead (AVX2, FMA, F16C; no
# AVX-512): the AVX2 machine kind reproduced on an AVX-512 one (side_by_side.sh's LLAMA_BENCH).
if [ "${LLAMACPP_AVX2:-0}" = 1 ]; then
  cmake -B build-avx2 -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
        -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF \
        -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
        -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build build-avx2 -j"$(nproc)" --target llama-bench >/dev/null
  echo "$dir/src/build-avx2/bin/llama-bench"
  exit 0
fi
cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_BLAS=OFF -DLLAMA_CURL=OFF \
      -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build -j"$(nproc)" --target llama-bench llama-server >/dev/null
echo "$dir/src/build/bin/llama-bench"
echo "$dir/src/build/bin/llama-server"
