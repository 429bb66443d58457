#!/usr/bin/env bash
# Runs a fixed set of `uhlm eval` and `uhlm calibrate` invocations on the TinyStories pair
# (all modes, sweeps over four uncertainty methods, --calib/--risk budget, --split, rayleigh,
# f16 and topk payloads, --no-greedy, Alpaca records, usage errors, and --server against a
# local `uhlm serve`) and keeps every output, so that two builds can be compared file by file
# with scripts/eval_identity.py (timing fields masked). Made to check that moving the
# evaluation harness (issue 11) left its outputs unchanged; it takes well under a minute.
# usage: scripts/eval_identity.sh BIN OUT_DIR
# The runs write into a fixed scratch folder and are then moved to OUT_DIR, because the
# output folder's name is part of what eval and calibrate record.
set -u
bin=$(realpath "${1:?usage: scripts/eval_identity.sh BIN OUT_DIR}")
final=${2:?usage: scripts/eval_identity.sh BIN OUT_DIR}
src=$(cd "$(dirname "$0")/.." && pwd)
export UHLM_MODELS=${UHLM_MODELS:-$src/../shared/models}
o=${TMPDIR:-/tmp}/uhlm_eval_identity.work
rm -rf "$o"; mkdir -p "$o"
P=$src/data/prompts/stories.jsonl
H=$UHLM_MODELS/../data/tinystories-heldout-prompts.jsonl
A=$UHLM_MODELS/../data/alpaca-200.jsonl
# the TinyStories pair by name (the CLI's defaults are the SmolLM2 pair)
TS=(-m stories-slm-0.28M.bin --llm stories-llm-2.76M.bin)
run() { local name=$1 cmd=$2; shift 2; "$bin" "$cmd" "${TS[@]}" "$@" >"$o/$name.stdout" 2>"$o/$name.stderr"; echo $? >"$o/$name.rc"; }
run cal1 calibrate --prompts "$H" --split 0.5 --limit 10 -n 16 -o "$o/cal1.json" --csv "$o/cal1.csv"
run cal2 calibrate --prompts "$H" --split 0.4 --limit 8 -n 12 --uncertainty entropy --budget 0.05 --payload topk:8 --temp 0.8 --seed 7 -o "$o/cal2.json"
run cal3 calibrate --prompts "$A" --limit 3 -n 8 -o "$o/cal3.json"
run ev1 eval --prompts "$P" --limit 4 -n 16 --snr 0,20 --sweep 0.3,0.7 --sweep-methods perturb,entropy --uth 0.3 -o "$o/ev1"
run ev2 eval --prompts "$H" --split 0.5 --limit 3 -n 12 --calib "$o/cal1.json" --risk budget:0.05 --modes hlm,uhlm --no-greedy --fading rayleigh --snr -5,5 --sweep-snr 10 --payload f16 -o "$o/ev2"
run ev3 eval --prompts "$P" --limit 3 -n 10 --modes uhlm,rand,slm --skip-prob 0.4 --sweep none --seed 9 --top-k 20 --top-p 0.9 --snr 3 -o "$o/ev3"
run ev4 eval --prompts "$P" --limit 2 -n 8 --modes llm,rand --skip-prob 0.3 --sweep 0.5 --sweep-methods maxprob,margin --uncertainty entropy --temp 0.7 -o "$o/ev4"
run ev5 eval --prompts "$A" --limit 2 -n 8 --snr 0 --sweep 0.5 -o "$o/ev5"
run er1 eval --prompts "$P" -o "$o/er1" --modes slm,fast
run er2 eval --prompts "$src/nope.jsonl" -o "$o/er2"
run er3 calibrate --prompts "$P" --limit 1 -n 4 -o "$o/er3.json"
"$bin" serve -m stories-llm-2.76M.bin -t 1 --port 0 --port-file "$o/port" 2>"$o/serve.log" &
spid=$!
for _ in $(seq 1 200); do [ -s "$o/port" ] && break; sleep 0.05; done
run ev6 eval --prompts "$P" --limit 2 -n 10 --snr 0,20 --sweep 0.5 --uth 0.3 --server "127.0.0.1:$(cat "$o/port")" -o "$o/ev6"
kill "$spid"; wait "$spid" 2>/dev/null
rm -f "$o/port" "$o/serve.log"
rm -rf "$final"; mv "$o" "$final"
