#!/usr/bin/env bash
# Builds the llama.cpp command-line tools the parity checks use (llama-perplexity,
# llama-completion, llama-tokenize), CPU only, from the llama.cpp copy vendored in the PyPI
# source package `llama-cpp-python` (PyPI is the only network source needed; cmake and ninja come
# as PyPI wheels). Idempotent: the sdist, the build tools and the build are reused.
#
#   scripts/build_llama_cpp.sh                  # -> ~/.cache/deepfeed/llama.cpp/bin
#   export DEEPFEED_LLAMA_CPP_BIN=~/.cache/deepfeed/llama.cpp/bin
#
# Environment: DEEPFEED_CACHE (default ~/.cache/deepfeed), LLAMA_CPP_BUILD_DIR (default
# /tmp/deepfeed-llama.cpp-build: sources, venv and cmake build tree), LLAMA_CPP_PYTHON_VERSION
# (default 0.3.36, which vendors llama.cpp 0c1e570), JOBS (default 2), PYTHON (default python3).
#
# Note: with GGML_NATIVE on a CPU that reports AMX (Sapphire Rapids and later), ggml compiles its
# AMX kernels and repacks Q4/Q8 weights for them at load; inside a VM that does not enable the AMX
# tile state this crashes (SIGSEGV in ggml_backend_amx_mul_mat). deepfeed's scripts and tests pass
# `--no-repack`, which keeps the weights in their GGUF layout and uses the AVX2/AVX-512 kernels.
set -euo pipefail
cache="${DEEPFEED_CACHE:-$HOME/.cache/deepfeed}"
work="${LLAMA_CPP_BUILD_DIR:-/tmp/deepfeed-llama.cpp-build}"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
jobs="${JOBS:-2}"
py="${PYTHON:-python3}"
bin="$cache/llama.cpp/bin"
tools=(llama-perplexity llama-completion llama-tokenize)

mkdir -p "$work" "$bin"
cd "$work"

# build tools as wheels in a private venv (nothing is compiled for them)
if [ ! -x venv/bin/cmake ] || [ ! -x venv/bin/ninja ]; then
  "$py" -m venv venv
  venv/bin/pip install --quiet --only-binary :all: cmake ninja
fi

# the source package; only llama-cpp-python itself is taken as source (--no-binary for it
# alone: `--no-binary :all:` would also compile cmake from source for its build environment)
src="llama_cpp_python-$version"
if [ ! -f "$src/vendor/llama.cpp/CMakeLists.txt" ]; then
  mkdir -p dl
  if ! ls dl/"$src".tar.gz >/dev/null 2>&1; then
    venv/bin/pip download --quiet --no-deps --no-binary llama-cpp-python -d dl "llama-cpp-python==$version"
  fi
  tar xzf dl/"$src".tar.gz
fi

export PATH="$work/venv/bin:$PATH"
cmake -S "$src/vendor/llama.cpp" -B build -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
  >build-configure.log
nice -n 10 cmake --build build -j "$jobs" --target "${tools[@]}"
for t in "${tools[@]}"; do
  install -m 755 "build/bin/$t" "$bin/$t"
done
"$bin/llama-completion" --version 2>&1 | head -2 || true
echo "llama.cpp tools in $bin: ${tools[*]}"
