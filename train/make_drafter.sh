#!/usr/bin/env bash
# make_drafter.sh: the device SLM for SmolLM2-135M-Instruct, from nothing but the LLM file.
#
#   train/make_drafter.sh [OUTDIR]        (default out/train; see train/README.md)
#
# Stages (each prints its wall time; data shards already complete are kept, so a stopped run
# resumes where it was):
#   1. tools   - python3-torch (Debian) and a venv with gguf==0.19.0; build/libuhlm.a and
#                train/gen_teacher.c
#   2. data    - the LLM writes its own instructions and answers (uhlm's C engine, temperature 1),
#                with its top-K logits and log-sum-exp at every position; held-out samples have
#                indices from 1000000 on, training samples from 0
#   3. vocab   - the draft vocabulary (DRAFT_VOCAB > 0): the tokens with the most teacher mass
#                on the training data, plus the control tokens; the drafter's classifier scores
#                only these (their LLM embedding rows), which pays for more layers
#      select  - which LLM layers the drafter keeps (scored on held-out samples)
#   4. train   - distillation on the teacher's distributions
#   5. export  - OUTDIR/smollm2-drafter.gguf (Q5_0 layers, the LLM's Q8_0 embedding)
#   6. eval    - agreement with the teacher, held-out prompts, `uhlm bench`, the hybrid
#                acceptance rate (`uhlm run --mode hlm` on held-out prompts), the chi-square
#                exactness check (train/check_exact.c), SHA-256
# Everything is seeded (SEED); outputs depend only on the settings below.
set -euo pipefail
# UHLM_ROOT: the checkout, for running a copy of this script (bash reads a script as it runs,
# so editing the one in the tree would break a run in progress)
ROOT=${UHLM_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
OUT=${1:-$ROOT/out/train}
mkdir -p "$OUT/data"
OUT=$(cd "$OUT" && pwd) # absolute: later stages run in train/
SEED=${SEED:-1234}
N_TRAIN=${N_TRAIN:-2400}     # training samples (instruction + answer), in shards of SHARD
N_HELDOUT=${N_HELDOUT:-100}
SHARD=${SHARD:-100}
LAYERS=${LAYERS:-9}          # transformer layers kept (9 + the 8192-row head: 0.27 of the LLM)
DRAFT_VOCAB=${DRAFT_VOCAB:-8192} # classifier rows (0: the whole vocabulary, tied to the embedding)
EMBD_TYPE=${EMBD_TYPE:-q5_0}  # input embedding (q5_0 keeps 9 layers under the 50 MB file limit): the LLM's bytes, or q8_0/q5_0/q4_0 (needs DRAFT_VOCAB)
EPOCHS=${EPOCHS:-1}
LR=${LR:-5e-4}
WARMUP=${WARMUP:-20}
BATCH_TOKENS=${BATCH_TOKENS:-1024}
QTYPE=${QTYPE:-q5_0}       # Q4_1 would snap the trained weights back onto the LLM's grid
THREADS=${THREADS:-2}        # gen_teacher and torch threads
TOPK=${TOPK:-32}
MAX_ANSWER=${MAX_ANSWER:-256}  # answer tokens per sample (instructions: at most 64)
N_SELECT=${N_SELECT:-20}     # held-out samples that score the layer subsets
N_ACCEPT=${N_ACCEPT:-20}     # held-out prompts for the acceptance rate
N_EXACT=${N_EXACT:-4000}     # one-token samples per mode in the exactness check
NICE="nice -n ${NICE_LEVEL:-19}"

find_llm() {
    for d in "${UHLM_MODELS:-}" "$ROOT/models" "$ROOT/../shared/models" /work/main/models; do
        [ -n "$d" ] && [ -f "$d/SmolLM2-135M-Instruct.Q4_1.gguf" ] && { echo "$d/SmolLM2-135M-Instruct.Q4_1.gguf"; return; }
    done
    echo "make_drafter: SmolLM2-135M-Instruct.Q4_1.gguf not found (set UHLM_MODELS)" >&2
    exit 1
}
LLM=${LLM:-$(find_llm)}
mkdir -p "$OUT/data"
T_ALL=$(date +%s)
stage() { STAGE=$1; T_STAGE=$(date +%s); echo "=== stage $1 ($(date -u +%H:%M:%S) UTC)"; }
done_stage() { echo "=== stage $STAGE took $(( $(date +%s) - T_STAGE )) s"; }

stage tools
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    apt-get install -y python3-torch   # Debian bookworm: 1.13.1+dfsg-4
fi
# Debian's torch calls the system BLAS: the reference one runs at ~0.3 GFLOP/s, OpenBLAS (via
# the libblas.so.3 alternative) 50x faster
if [ ! -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ]; then
    apt-get install -y libopenblas0-pthread
fi
export OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
if [ ! -x "$OUT/venv/bin/python" ]; then
    /usr/bin/python3 -m venv --system-site-packages "$OUT/venv"
    "$OUT/venv/bin/pip" install -q gguf==0.19.0
fi
PY="$OUT/venv/bin/python"
[ -f "$ROOT/build/libuhlm.a" ] || (cd "$ROOT" && $NICE scripts/build.sh release)
$NICE cc -std=c11 -O2 -Wall -Wextra -Werror -I"$ROOT/include" "$ROOT/train/gen_teacher.c" \
    "$ROOT/build/libuhlm.a" -lcjson -lm -lpthread -o "$OUT/gen_teacher"
$NICE cc -std=c11 -O2 -Wall -Wextra -Werror -I"$ROOT/include" "$ROOT/train/check_exact.c" \
    "$ROOT/build/libuhlm.a" -lcjson -lm -lpthread -o "$OUT/check_exact"
done_stage

gen() { # name first count
    local f="$OUT/data/$1.bin"
    [ -f "$f" ] && { echo "keep $f"; return; }
    $NICE "$OUT/gen_teacher" -m "$LLM" -o "$f.tmp" -n "$3" --first "$2" -S 16 -t "$THREADS" \
        --seed "$SEED" -k "$TOPK" --max-prompt 64 --max-answer "$MAX_ANSWER"
    mv "$f.tmp" "$f"
}
stage data
gen heldout-0000 1000000 "$N_HELDOUT"
i=0
while [ $((i * SHARD)) -lt "$N_TRAIN" ]; do
    gen "$(printf 'train-%04d' "$i")" $((i * SHARD)) "$SHARD"
    i=$((i + 1))
done
TRAIN_FILES=$(ls "$OUT"/data/train-*.bin | head -n "$i")
done_stage

cd "$ROOT/train"
VOCAB_ARG=()
if [ "$DRAFT_VOCAB" -gt 0 ]; then
    stage vocab
    # shellcheck disable=SC2086
    $NICE "$PY" drafter.py vocab --llm "$LLM" --data $TRAIN_FILES --size "$DRAFT_VOCAB" --out "$OUT/vocab.txt"
    VOCAB_ARG=(--vocab "$OUT/vocab.txt")
    done_stage
fi
stage select
$NICE "$PY" drafter.py select --llm "$LLM" --data "$OUT/data/heldout-0000.bin" --layers "$LAYERS" \
    --n-samples "$N_SELECT" "${VOCAB_ARG[@]}" --out "$OUT/select.json"
done_stage

stage train
# shellcheck disable=SC2086
$NICE "$PY" drafter.py train --llm "$LLM" --data $TRAIN_FILES --heldout "$OUT/data/heldout-0000.bin" \
    --select "$OUT/select.json" "${VOCAB_ARG[@]}" --epochs "$EPOCHS" --lr "$LR" --warmup "$WARMUP" \
    --batch-tokens "$BATCH_TOKENS" --n-dev 20 --threads "$THREADS" --seed "$SEED" --out "$OUT/drafter.pt"
done_stage

stage export
$NICE "$PY" drafter.py export --llm "$LLM" --ckpt "$OUT/drafter.pt" --type "$QTYPE" --embd-type "$EMBD_TYPE" --out "$OUT/smollm2-drafter.gguf"
done_stage

stage eval
$NICE "$PY" drafter.py eval --llm "$LLM" --heldout "$OUT/data/heldout-0000.bin" --ckpt "$OUT/drafter.pt" \
    --threads "$THREADS" --prompts "$OUT/heldout-prompts.jsonl" --n-prompts "$N_ACCEPT" --out "$OUT/eval.json"
flock /tmp/uhlm-bench.lock "$ROOT/build/uhlm" bench -m "$LLM" -m "$OUT/smollm2-drafter.gguf" -t 1 \
    --prompt 16 --gen 64 --reps 5 --json > "$OUT/bench.json" || true
$NICE "$PY" drafter.py accept --uhlm "$ROOT/build/uhlm" --slm "$OUT/smollm2-drafter.gguf" --llm "$LLM" \
    --prompts "$OUT/heldout-prompts.jsonl" --n-prompts "$N_ACCEPT" -n 64 --threads "$THREADS" --out "$OUT/accept.json"
$NICE "$OUT/check_exact" "$OUT/smollm2-drafter.gguf" "$LLM" "$N_EXACT" | tee "$OUT/check_exact.txt"
sha256sum "$OUT/smollm2-drafter.gguf" | tee "$OUT/smollm2-drafter.gguf.sha256"
done_stage
echo "=== all stages took $(( $(date +%s) - T_ALL )) s; drafter: $OUT/smollm2-drafter.gguf"
