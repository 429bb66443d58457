#!/usr/bin/env python3
"""Decode (and prefill) speed of uhlm against llama.cpp on the same GGUF files.

For each model file and thread count it runs interleaved pairs: `uhlm bench` (one rep:
a PROMPT-token batched prefill, then GEN one-token decodes) and llama.cpp through
llama-cpp-python (the same PROMPT tokens in one eval, then GEN one-token evals, only
llama_decode timed; each side twice, best of, so neither pays for first-touch page faults
of the mapped file), both inside one `flock` of LOCK so other timing runs on the shared
machine do not land between the two halves of a pair. The machine is noisy, so the
numbers to read are the ratios (uhlm / llama.cpp, > 1 = uhlm faster) of the per-pair
best (min time) and median.

Output: JSON Lines on stdout, one {"kind": "pair", ...} per pair and one
{"kind": "summary", ...} per (model, threads).

Pinned: llama-cpp-python 0.3.36 (CPU, GGML_NATIVE) in out/oracle/venv (scripts/oracle/setup.sh); run it with
that venv's python:

  out/oracle/venv/bin/python bench/llamacpp_decode.py --uhlm build/uhlm \
      -m /tmp/r110M-q8_0.gguf -m /tmp/r15M-f32.gguf -t 1 -t 2 --pairs 5

The models are `uhlm convert --random-shape 15M|110M -z tokenizer.bin --type T` files;
the token ids are drawn from a fixed seed, so every run sees the same sequence.
"""
import argparse
import fcntl
import json
import os
import random
import statistics
import subprocess
import sys
import time


def uhlm_once(uhlm, model, threads, prompt, gen, simd):
    # two reps, best of: the first one also pays for faulting in the mapped weights
    cmd = [uhlm, "bench", "-m", model, "-t", str(threads), "--prompt", str(prompt),
           "--gen", str(gen), "--reps", "2", "--jsonl"]
    if simd:
        cmd += ["--simd", simd]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rec = json.loads(out.strip().splitlines()[-1])
    return rec["prompt_tokens_per_s"], rec["decode_tokens_per_s"], rec


def llama_once(model, threads, prompt, gen, seed):
    import llama_cpp  # imported here so --help works without the venv

    llm = llama_cpp.Llama(model_path=model, n_threads=threads, n_threads_batch=threads,
                          n_ctx=prompt + gen + 8, n_batch=max(prompt, 8), n_ubatch=max(prompt, 8),
                          logits_all=False, verbose=False)
    rng = random.Random(seed)
    nv = llm.n_vocab()
    toks = [rng.randrange(3, nv) for _ in range(prompt + gen)]
    # twice, best of, like the uhlm side: the first pass also faults in the mapped weights
    tp = td = float("inf")
    for _ in range(2):
        llm.reset()
        t = time.perf_counter()
        llm.eval(toks[:prompt])
        tp = min(tp, time.perf_counter() - t)
        t = time.perf_counter()
        for tok in toks[prompt:]:
            llm.eval([tok])
        td = min(td, time.perf_counter() - t)
    llm.close() if hasattr(llm, "close") else None
    del llm
    return prompt / tp, gen / td


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uhlm", default="build/uhlm")
    ap.add_argument("-m", "--model", action="append", required=True)
    ap.add_argument("-t", "--threads", action="append", type=int)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--simd", default="")
    ap.add_argument("--lock", default="/tmp/uhlm-bench.lock")
    a = ap.parse_args()
    threads = a.threads or [1, 2]
    for model in a.model:
        for nt in threads:
            u_p, u_d, l_p, l_d = [], [], [], []
            for k in range(a.pairs):
                with open(a.lock, "w") as lf:
                    fcntl.flock(lf, fcntl.LOCK_EX)
                    # alternate which side goes first, so a drift in load favours neither
                    if k % 2 == 0:
                        up, ud, rec = uhlm_once(a.uhlm, model, nt, a.prompt, a.gen, a.simd)
                        lp, ld = llama_once(model, nt, a.prompt, a.gen, 1234 + k)
                    else:
                        lp, ld = llama_once(model, nt, a.prompt, a.gen, 1234 + k)
                        up, ud, rec = uhlm_once(a.uhlm, model, nt, a.prompt, a.gen, a.simd)
                u_p.append(up); u_d.append(ud); l_p.append(lp); l_d.append(ld)
                print(json.dumps({"kind": "pair", "model": os.path.basename(model),
                                  "threads": nt, "pair": k, "uhlm_decode_tps": round(ud, 2),
                                  "llama_decode_tps": round(ld, 2),
                                  "uhlm_prefill_tps": round(up, 1),
                                  "llama_prefill_tps": round(lp, 1),
                                  "uhlm_fraction_of_bound": rec.get("fraction_of_bound"),
                                  "uhlm_fraction_of_read_plateau":
                                      rec.get("fraction_of_read_plateau"),
                                  "uhlm_fraction_of_read_at_weight_size":
                                      rec.get("fraction_of_read_at_weight_size"),
                                  "weights_fit_in_cache": rec.get("weights_fit_in_llc"),
                                  "simd": rec.get("simd")}), flush=True)
            med = statistics.median
            print(json.dumps({
                "kind": "summary", "model": os.path.basename(model), "threads": nt,
                "pairs": a.pairs, "prompt": a.prompt, "gen": a.gen,
                "uhlm_decode_tps_best": round(max(u_d), 2),
                "uhlm_decode_tps_median": round(med(u_d), 2),
                "llama_decode_tps_best": round(max(l_d), 2),
                "llama_decode_tps_median": round(med(l_d), 2),
                "decode_ratio_best": round(max(u_d) / max(l_d), 3),
                "decode_ratio_median": round(med(u_d) / med(l_d), 3),
                "decode_ratio_pairs_median": round(med([u / l for u, l in zip(u_d, l_d)]), 3),
                "prefill_ratio_best": round(max(u_p) / max(l_p), 3),
                "prefill_ratio_median": round(med(u_p) / med(l_p), 3),
            }), flush=True)


if __name__ == "__main__":
    sys.exit(main())
