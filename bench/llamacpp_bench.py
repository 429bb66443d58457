#!/usr/bin/env python3
"""llamacpp_bench.py: llama.cpp's prompt and generation speed on one GGUF file, measured the way
`uhlm bench` measures uhlm, for the side-by-side anchors (bench/anchors.sh).

    out/oracle/venv/bin/python bench/llamacpp_bench.py -m FILE.gguf [-t THREADS] \
        [--prompt 512] [--gen 128] [--reps 2] [--kv f16|f32] [--flash auto|on|off]

llama.cpp through llama-cpp-python 0.3.36's low-level API (libllama built from source with
GGML_NATIVE for this CPU). Load and context creation are not timed. Each rep clears the KV cache,
then times one llama_decode over the whole prompt (logits for the last token only: prompt
processing, "pp") and GEN one-token llama_decode calls, each followed by an argmax over the
logits to pick the next token as `uhlm bench` does (generation, "tg"). Prompt ids are uniform
pseudo-random ids (seeded), like `uhlm bench`'s. Best of REPS per phase; the first rep also
pages the mapped weights in, as it does in uhlm. llama.cpp's own counters (llama_perf_context)
for the last rep are reported beside the wall-clock figures.

Defaults are what a llama.cpp user gets: F16 KV cache and flash attention "auto". One JSON
object on stdout.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts",
                                "oracle"))
import llamacpp_common as lc  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-t", "--threads", type=int, default=1)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--kv", choices=["f16", "f32"], default="f16")
    ap.add_argument("--flash", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.prompt > 512 or a.prompt < 1 or a.gen < 1 or a.reps < 1:
        sys.exit("llamacpp_bench: need 1 <= --prompt <= 512, --gen >= 1, --reps >= 1")

    m = lc.Model(a.model, n_ctx=a.prompt + a.gen + 16, n_threads=a.threads, n_batch=512,
                 kv_f32=(a.kv == "f32"), flash_attn=a.flash)
    rng = np.random.RandomState(a.seed)
    prompt = [int(x) for x in rng.randint(0, m.n_vocab, size=a.prompt)]
    best_pp, best_tg = 1e30, 1e30
    perf = None
    for _ in range(a.reps):
        m.clear()
        lc.L.llama_perf_context_reset(m.ctx)
        t = time.perf_counter()
        logits = m.decode(prompt, 0)
        t_pp = time.perf_counter() - t
        pos = a.prompt
        t = time.perf_counter()
        for _ in range(a.gen):
            tok = int(np.argmax(logits))
            logits = m.decode([tok], pos)
            pos += 1
        t_tg = time.perf_counter() - t
        best_pp = min(best_pp, t_pp)
        best_tg = min(best_tg, t_tg)
        p = lc.L.llama_perf_context(m.ctx)
        perf = {"t_p_eval_ms": p.t_p_eval_ms, "n_p_eval": p.n_p_eval, "t_eval_ms": p.t_eval_ms,
                "n_eval": p.n_eval}
    m.close()
    v = lc.versions()
    out = {
        "engine": "llama.cpp",
        "version": f"llama-cpp-python {v['llama_cpp_python']}, ggml {v['ggml_version']} "
                   f"({v['ggml_commit']})",
        "model": os.path.basename(a.model),
        "threads": a.threads,
        "kv_cache": a.kv,
        "flash_attn": a.flash,
        "prompt_tokens": a.prompt,
        "prompt_tokens_per_s": a.prompt / best_pp,
        "decode_tokens": a.gen,
        "decode_tokens_per_s": a.gen / best_tg,
        "reps": a.reps,
        "perf_last_rep": perf,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
