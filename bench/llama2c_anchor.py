#!/usr/bin/env python3
"""llama2c_anchor.py: uhlm against llama2.c's run.c, side by side, on the same llama2.c checkpoints
(the driver behind `bench/anchors.sh llama2c`; run that, which takes the bench lock).

    python bench/llama2c_anchor.py --runc PATH/run.c [--uhlm build/uhlm] [--pairs 5]
        [--threads 1,2] [--gen 200] [--shapes 15M,110M] [--models a.bin,...]
        [--dir /tmp/uhlm-llama2c] [--out out/anchors-llama2c.jsonl]

run.c is Andrej Karpathy's llama2.c (MIT licence, https://github.com/karpathy/llama2.c). It is
not on PyPI or in Debian and this project does not ship it: give the path of a copy with --runc
or $UHLM_LLAMA2C_RUN_C. Without one the script says so and exits 0 (the anchor is skipped). It
is compiled here, into --dir, with the flags of llama2.c's `make runomp` (-Ofast -march=native
-fopenmp), its fastest build: -Ofast vectorizes its dot products and SiLU through libmvec;
OMP_NUM_THREADS sets its threads.

Models (llama2.c legacy v0 fp32, which run.c reads): random-weight checkpoints with the shapes
of stories15M and stories110M (N(0, 0.02) weights, unit norms, seed 42, written into --dir by
this script with numpy; the 32000-token tokenizer.bin), plus any --models given (tokenizer:
tok512.bin for vocabularies of 512, tokenizer.bin otherwise, both looked up like the models).

For each model and thread count, PAIRS interleaved pairs of fresh processes (which side goes
first alternates): `OMP_NUM_THREADS=T run MODEL -z TOK -t 0 -n GEN` (its "achieved tok/s":
GEN - 1 greedy steps, each a forward, an argmax and printing the token, to /dev/null) and
`uhlm generate -m MODEL -z TOK -n GEN --temp 0 -t T --json` (generate_tokens_per_second: the
same loop of forward, greedy pick and printing). Every process is one JSON line in --out; the
summary per (model, threads) gives each side's best and median tok/s and the per-pair ratios
uhlm / run.c, min and median, and the median of run.c's CPU seconds over uhlm's per pair (whole
processes: with 1 thread, the speed ratio without the time either spent descheduled on a shared
machine), on stdout as a table and in --out as {"summary": ...} lines.
"""
import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))

# stories15M / stories110M (llama2.c's tinyllamas): dim, hidden, layers, heads, kv heads,
# vocab, seq_len
SHAPES = {"15M": (288, 768, 6, 6, 6, 32000, 256), "110M": (768, 2048, 12, 12, 12, 32000, 1024)}


def find_model(name):
    if os.path.exists(name):
        return os.path.abspath(name)
    for d in (os.environ.get("UHLM_MODELS"), os.path.join(ROOT, "models"),
              os.path.join(ROOT, "..", "shared", "models"), "/work/shared/models"):
        if d and os.path.exists(os.path.join(d, name)):
            return os.path.abspath(os.path.join(d, name))
    return None


def write_random_checkpoint(path, shape, seed=42):
    """llama2.c legacy v0: 7 int32 (vocab > 0: shared classifier), then fp32 tensors in run.c's
    order, with the freq_cis tables run.c's loader skips over."""
    import numpy as np
    dim, hidden, layers, heads, kv_heads, vocab, seq = shape
    hs = dim // heads
    rng = np.random.default_rng(seed)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(np.array(shape, dtype=np.int32).tobytes())

        def rnd(n):
            for i in range(0, n, 1 << 22):
                k = min(1 << 22, n - i)
                f.write((rng.standard_normal(k, dtype=np.float32) * 0.02).tobytes())

        rnd(vocab * dim)
        f.write(np.ones(layers * dim, dtype=np.float32).tobytes())
        for n in (dim * dim, dim * kv_heads * hs, dim * kv_heads * hs, dim * dim):
            rnd(layers * n)
        f.write(np.ones(layers * dim, dtype=np.float32).tobytes())
        for _ in range(3):
            rnd(layers * dim * hidden)
        f.write(np.ones(dim, dtype=np.float32).tobytes())
        freq = 1.0 / (10000.0 ** (np.arange(0, hs, 2, dtype=np.float32) / hs))
        ang = np.outer(np.arange(seq, dtype=np.float32), freq)
        f.write(np.cos(ang).astype(np.float32).tobytes())
        f.write(np.sin(ang).astype(np.float32).tobytes())
    os.replace(tmp, path)


def build_runc(src, d):
    exe = os.path.join(d, "run-llama2c")
    cmd = ["gcc", "-Ofast", "-march=native", "-fopenmp", "-o", exe, src, "-lm"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"llama2c_anchor: compiling {src} failed: {p.stderr.strip()[-400:]}")
    return exe, " ".join(cmd)


def child_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_runc(exe, model, tok, gen, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    p = subprocess.run([exe, model, "-z", tok, "-t", "0", "-n", str(gen)], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    m = re.search(r"achieved tok/s: ([0-9.]+)", p.stderr)
    if p.returncode != 0 or not m:
        return None, p.stderr.strip()[-200:] or f"exit {p.returncode}"
    return {"tokens_per_s": float(m.group(1))}, None


def run_uhlm(uhlm, model, tok, gen, threads):
    p = subprocess.run([uhlm, "generate", "-m", model, "-z", tok, "-n", str(gen), "--temp", "0",
                        "-t", str(threads), "--json"], capture_output=True, text=True)
    if p.returncode != 0:
        return None, p.stderr.strip()[-200:] or f"exit {p.returncode}"
    d = json.loads(p.stdout)
    return {"tokens_per_s": d["generate_tokens_per_second"],
            "generated_tokens": d["generated_tokens"]}, None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runc", default=os.environ.get("UHLM_LLAMA2C_RUN_C"))
    ap.add_argument("--uhlm", default=os.path.join(ROOT, "build", "uhlm"))
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--gen", type=int, default=200)
    ap.add_argument("--shapes", default="15M,110M")
    ap.add_argument("--models", default="")
    ap.add_argument("--dir", default="/tmp/uhlm-llama2c")
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "anchors-llama2c.jsonl"))
    a = ap.parse_args()
    if not a.runc or not os.path.exists(a.runc):
        print("SKIP llama2.c anchor: no run.c (llama2.c is not on PyPI or Debian and is not "
              "shipped here; give a copy of https://github.com/karpathy/llama2.c's run.c with "
              "--runc PATH or UHLM_LLAMA2C_RUN_C=PATH)", file=sys.stderr)
        return 0
    os.makedirs(a.dir, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    exe, how = build_runc(a.runc, a.dir)
    gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout
    print(f"run.c: {a.runc} built as {how}; {gcc.splitlines()[0]}", file=sys.stderr)
    models = []
    for s in [x for x in a.shapes.split(",") if x]:
        if s not in SHAPES:
            sys.exit(f"llama2c_anchor: unknown shape {s} (15M or 110M)")
        path = os.path.join(a.dir, f"random{s}.bin")
        if not os.path.exists(path):
            print(f"writing {path}", file=sys.stderr)
            write_random_checkpoint(path, SHAPES[s])
        models.append((f"random {s}", path, SHAPES[s][5]))
    for m in [x for x in a.models.split(",") if x]:
        path = find_model(m)
        if not path:
            sys.exit(f"llama2c_anchor: model {m} not found")
        with open(path, "rb") as f:
            vocab = abs(int.from_bytes(f.read(28)[20:24], "little", signed=True))
        models.append((os.path.basename(m), path, vocab))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows = []
    failed = 0
    with open(a.out, "a", encoding="utf-8") as fo:
        for name, path, vocab in models:
            tok = find_model("tok512.bin" if vocab == 512 else "tokenizer.bin")
            if not tok:
                sys.exit(f"llama2c_anchor: no tokenizer for {name} (vocab {vocab})")
            for t in [int(x) for x in a.threads.split(",")]:
                for pair in range(a.pairs):
                    sides = [("uhlm", run_uhlm, a.uhlm), ("run.c", run_runc, exe)]
                    if pair % 2:
                        sides.reverse()
                    got = {}
                    for side, fn, prog in sides:
                        c0 = child_cpu_s()
                        r, err = fn(prog, path, tok, a.gen, t)
                        cpu = child_cpu_s() - c0
                        if r is None:
                            print(f"{name} t={t}: {side} failed: {err}", file=sys.stderr)
                            failed += 1
                            continue
                        # the whole process's CPU seconds (load, tokenizer, every step): on a
                        # shared machine wall time also counts time spent descheduled
                        r.update(side=side, model=name, threads=t, pair=pair, gen=a.gen,
                                 run=stamp, load=os.getloadavg()[0], cpu_s=cpu)
                        got[side] = r
                        rows.append(r)
                        fo.write(json.dumps(r) + "\n")
                    fo.flush()
                    print(f"{name} t={t} pair {pair}: " + ", ".join(
                        f"{k} {v['tokens_per_s']:.1f}" for k, v in got.items()) + " tok/s",
                        file=sys.stderr)
        lines = [f"{'model':18} {'thr':>3} {'uhlm best':>9} {'uhlm med':>9} {'run.c best':>10} "
                 f"{'run.c med':>9} {'ratio min':>9} {'ratio med':>9} {'cpu med':>8} {'pairs':>5}"]
        for name, _, _ in models:
            for t in [int(x) for x in a.threads.split(",")]:
                pr = {}
                for r in rows:
                    if r["model"] == name and r["threads"] == t:
                        pr.setdefault(r["pair"], {})[r["side"]] = r["tokens_per_s"]
                us = [p["uhlm"] for p in pr.values() if "uhlm" in p]
                rs = [p["run.c"] for p in pr.values() if "run.c" in p]
                ratios = [p["uhlm"] / p["run.c"] for p in pr.values() if len(p) == 2]
                cpu = {}
                for r in rows:
                    if r["model"] == name and r["threads"] == t:
                        cpu.setdefault(r["pair"], {})[r["side"]] = r["cpu_s"]
                # run.c's CPU seconds over uhlm's for the same work: > 1 when uhlm needs less
                cpu_ratios = [c["run.c"] / c["uhlm"] for c in cpu.values()
                              if len(c) == 2 and c["uhlm"] > 0]
                if not ratios:
                    continue
                s = {"model": name, "threads": t, "pairs": len(ratios),
                     "uhlm_best": max(us), "uhlm_median": statistics.median(us),
                     "runc_best": max(rs), "runc_median": statistics.median(rs),
                     "ratio_min": min(ratios), "ratio_median": statistics.median(ratios),
                     "cpu_ratio_min": min(cpu_ratios) if cpu_ratios else None,
                     "cpu_ratio_median": statistics.median(cpu_ratios) if cpu_ratios else None,
                     "anchor": "llama2.c run.c", "build": how}
                fo.write(json.dumps({"summary": s}) + "\n")
                lines.append(f"{name:18} {t:3d} {s['uhlm_best']:9.1f} {s['uhlm_median']:9.1f} "
                             f"{s['runc_best']:10.1f} {s['runc_median']:9.1f} "
                             f"{s['ratio_min']:9.2f} {s['ratio_median']:9.2f} "
                             f"{s['cpu_ratio_median'] or 0:8.2f} {len(ratios):5d}")
    print("\n".join(lines))
    return 1 if not rows else 0


if __name__ == "__main__":
    sys.exit(main())
