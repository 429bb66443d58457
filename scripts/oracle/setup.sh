#!/usr/bin/env bash
# setup.sh: builds the oracle environment the fixture scripts and the llama.cpp benchmarks use,
# never the library or its tests: a Python venv with numpy, gguf==0.19.0 (llama.cpp's GGUF
# reader/writer and dequantizer) and llama-cpp-python==0.3.36 compiled here from its source
# distribution (llama.cpp itself, CPU backend, GGML_NATIVE=ON), plus that sdist unpacked for the
# scripts that read llama.cpp's own sources and vocabulary files. Idempotent; the build takes
# about ten minutes on two cores.
#   scripts/oracle/setup.sh [DIR]      (default out/oracle; the venv is DIR/venv)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-out/oracle}
py=$dir/venv/bin/python
mkdir -p "$dir"
if [ ! -x "$py" ]; then
  command -v python3 >/dev/null || { echo "oracle: python3 is required" >&2; exit 1; }
  python3 -m venv "$dir/venv" || {
    echo "oracle: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2
    exit 1
  }
fi
if ! "$py" -c 'import numpy, gguf' 2>/dev/null; then
  echo "oracle: installing numpy, gguf==0.19.0" >&2
  "$py" -m pip install -q numpy gguf==0.19.0
fi
if ! "$py" -c 'import llama_cpp' 2>/dev/null; then
  echo "oracle: building llama-cpp-python==0.3.36 from source (about ten minutes)" >&2
  CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$py" -m pip install -q --no-binary llama-cpp-python llama-cpp-python==0.3.36
fi
sdist=$dir/sdist/llama_cpp_python-0.3.36
if [ ! -d "$sdist/vendor/llama.cpp" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$py" -m pip download -q --no-deps --no-binary :all: -d "$tmp" llama-cpp-python==0.3.36
  mkdir -p "$dir/sdist"
  tar -xzf "$tmp"/llama_cpp_python-0.3.36.tar.gz -C "$dir/sdist"
fi
echo "oracle: ready: $py ($("$py" -c 'import llama_cpp; print("llama-cpp-python", llama_cpp.__version__)'))"
