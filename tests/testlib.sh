# shellcheck shell=bash disable=SC2034 # (what it sets is for the tests that source it)
# testlib.sh: the preamble the shell tests (tests/cli_*.sh) share. Source it first, after
# `set -u`:
#   . "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
# (Its name keeps it out of CMakeLists.txt's glob tests/cli_*.sh, which makes each match a test.)
# Sourcing it makes a scratch folder and installs the EXIT trap; it provides:
#   src             the checkout: $UHLM_SOURCE_DIR, as CTest sets it, else the folder above this
#                   file
#   UHLM_MODELS     exported; where uhlm looks model names up first; by default the shared
#                   TinyStories models, $src/../shared/models
#   TS_PAIR, TS_LLM, TS_SLM  the TinyStories models by name, as options (uhlm's defaults are
#                   the SmolLM2 pair, slower)
#   py              the system Python, /usr/bin/python3 (the checks use its standard library)
#   pass, fail, ok, bad MSG   the counters: ok counts a check that held; bad counts one that did
#                   not and prints "FAIL: MSG" on stderr
#   finish [LABEL]  prints "[LABEL: ]P passed, F failed" on stdout and exits 0 when nothing
#                   failed, 1 otherwise (the last line of every test)
#   tmp             a fresh folder, ${TMPDIR:-/tmp}/uhlm_<test name>.XXXXXX, removed at exit
#   at_exit CMD     runs CMD (a string, eval'ed) at exit, before $tmp goes, in the order
#                   registered: stopping the servers a test started. Tests set no EXIT trap of
#                   their own, which would replace this one.
#   expect_rc WANT CMD...  runs CMD with stdout in $tmp/out and stderr in $tmp/err; ok when it
#                   exits WANT, else bad "rc R (want WANT): CMD: <the first 300 bytes of stderr>"
#   jcheck FILE EXPR  ok when the Python expression EXPR holds for d, FILE's parsed JSON (run by
#                   $py), else bad "EXPR: <the first 400 bytes of FILE>"
#   find_model NAME   prints the absolute path of the first NAME among the model folders, or
#                   nothing with status 1: for a part of a test that skips without the model
#   find_model_dir NAME...  the same for the first model folder that holds every NAME
#   need_model VAR NAME [WHY]  sets VAR to find_model NAME's path; without one the whole test
#                   is skipped: prints "SKIP: NAME not found[ (WHY)]" and exits 0
# The model folders, in order: $UHLM_MODELS, then the checkout's models/ and ../shared/models,
# where `uhlm` itself looks when run from the checkout.
# serve_helpers.sh, for the tests that start `uhlm serve`, builds on bad and $tmp.

_testlib_root=${UHLM_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
src=$_testlib_root
export UHLM_MODELS=${UHLM_MODELS:-$src/../shared/models}
TS_PAIR=(-m stories-slm-0.28M.bin --llm stories-llm-2.76M.bin)
TS_LLM=(-m stories-llm-2.76M.bin)
TS_SLM=(-m stories-slm-0.28M.bin)
py=/usr/bin/python3

pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }
finish() {
  echo "${1:+$1: }$pass passed, $fail failed"
  [ "$fail" = 0 ] && exit 0
  exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/uhlm_$(basename "$0" .sh).XXXXXX") ||
  { echo "FAIL: cannot make a scratch folder under ${TMPDIR:-/tmp}" >&2; exit 1; }
_testlib_exit_cmds=()
at_exit() { _testlib_exit_cmds+=("$1"); }
_testlib_on_exit() {
  local c
  for c in "${_testlib_exit_cmds[@]}"; do eval "$c"; done
  rm -rf "$tmp"
}
trap _testlib_on_exit EXIT

expect_rc() {
  local want=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  [ "$rc" = "$want" ] && ok || bad "rc $rc (want $want): $*: $(head -c 300 "$tmp/err")"
}

jcheck() {
  "$py" -c "import json,sys; d=json.load(open('$1')); sys.exit(0 if ($2) else 1)" \
    && ok || bad "$2: $(head -c 400 "$1")"
}

find_model_dir() {
  local d n
  for d in "${UHLM_MODELS:-}" "$_testlib_root/models" "$_testlib_root/../shared/models"; do
    [ -n "$d" ] || continue
    for n in "$@"; do [ -f "$d/$n" ] || continue 2; done
    (cd "$d" 2>/dev/null && pwd) && return 0
  done
  return 1
}
find_model() {
  local d
  d=$(find_model_dir "$1") || return 1
  echo "$d/$1"
}
need_model() {
  local _testlib_path
  _testlib_path=$(find_model "$2") || { echo "SKIP: $2 not found${3:+ ($3)}"; exit 0; }
  printf -v "$1" '%s' "$_testlib_path"
}
