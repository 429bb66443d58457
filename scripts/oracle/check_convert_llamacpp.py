#!/usr/bin/env python3
"""check_convert_llamacpp.py: the GGUF files `uhlm convert` writes load in llama.cpp
(llama-cpp-python 0.3.36) and decode there greedily to the same tokens as in uhlm.

    out/oracle/venv/bin/python scripts/oracle/check_convert_llamacpp.py \
        [--uhlm build/uhlm] [--model SmolLM2-135M-Instruct.Q4_1.gguf] \
        [--types f16,q8_0,q4_0,q4_1,q5_0,q5_1,q4_k,q5_k,q6_k] [--n 5] [--gen 32] [--dir DIR]

For each type, `uhlm convert -m MODEL --type TYPE` writes a file (a type convert refuses is
reported as "not written" and is not a failure: the list covers the types other branches add).
The file must load in llama.cpp. Then, for the first N Alpaca prompts rendered with llama.cpp's
chat template (as in make_greedy_fixtures.py), llama.cpp decodes GEN tokens greedily (1 thread,
F32 KV cache, no flash attention) and `uhlm generate --temp 0 --chat` decodes the same prompt;
the prompt lengths must be equal and the generated ids must be equal, or part only at a
near-tie: uhlm picks llama.cpp's runner-up where llama.cpp's lead is below NEAR_TIE (this model
moves its logits by ~1 under any change of rounding; see docs/performance.md). Prints a table;
exits 1 if any written file fails to load in llama.cpp or disagrees.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llamacpp_common as lc  # noqa: E402


# SmolLM2's logits move by up to ~1-2 with any change of rounding (llama.cpp's own F16 KV cache
# does that; see docs/performance.md), so two correct engines can part at a near-tie. A parting
# counts as agreement only where uhlm picks llama.cpp's runner-up and llama.cpp's lead over it is
# below this bound (the bound tests/test_llamacpp_agreement.c uses for quantized types).
NEAR_TIE = 1.0


def llama_greedy(m, prompt, n_gen):
    """Greedy ids, and at each step llama.cpp's runner-up id and its top-1 lead over it."""
    m.clear()
    logits = m.decode(prompt, 0)
    out, runner, lead, pos = [], [], [], len(prompt)
    for _ in range(n_gen):
        o = np.argsort(-logits, kind="stable")[:2]
        tok = int(o[0])
        out.append(tok)
        runner.append(int(o[1]))
        lead.append(float(logits[o[0]] - logits[o[1]]))
        if m.is_eog(tok):
            break
        logits = m.decode([tok], pos)
        pos += 1
    return out, runner, lead


def uhlm_generate(a, path, user):
    cmd = [a.uhlm, "generate", "-m", path, "--chat", "-p", user, "--temp", "0", "-n",
           str(a.gen), "-t", "1", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return None, p.stderr.strip()[-300:]
    o = json.loads(p.stdout)
    return o, None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uhlm", default=os.path.join(lc.ROOT, "build", "uhlm"))
    ap.add_argument("--model", default="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--types", default="f16,q8_0,q4_0,q4_1,q5_0,q5_1,q4_k,q5_k,q6_k")
    ap.add_argument("--prompts", default="/work/shared/data/alpaca-200.jsonl")
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    print(lc.version_line(), file=sys.stderr)
    src = lc.find_model(a.model)
    if not src:
        sys.exit(f"{a.model} not found")
    work = a.dir or tempfile.mkdtemp(prefix="uhlm-convert-check-")
    turns = lc.alpaca_user_turns(a.prompts, a.n)
    rows, bad = [], 0
    for t in a.types.split(","):
        out = os.path.join(work, f"smollm2.{t}.gguf")
        p = subprocess.run([a.uhlm, "convert", "-m", src, "--type", t, "-o", out],
                           capture_output=True, text=True)
        if p.returncode != 0:
            rows.append((t, "-", "not written", "-", "-", p.stderr.strip().splitlines()[-1:]))
            continue
        size = os.path.getsize(out) / 1e6
        try:
            m = lc.Model(out, n_ctx=1024, n_threads=1, n_batch=512)
        except RuntimeError as e:
            rows.append((t, f"{size:.1f}", "NO", "-", "-", [str(e)]))
            bad += 1
            continue
        agree, same, notes = 0, 0, []
        with m:
            for rid, user in turns:
                prompt = m.tokenize(m.apply_chat(user), add_special=m.add_bos())
                want, runner, lead = llama_greedy(m, prompt, a.gen)
                o, err = uhlm_generate(a, out, user)
                if o is None:
                    notes.append(f"{rid}: uhlm generate failed: {err}")
                    continue
                got = o["tokens"]
                if o.get("prompt_tokens") != len(prompt):
                    notes.append(f"{rid}: DIFFER: prompt {o.get('prompt_tokens')} ids in uhlm, "
                                 f"{len(prompt)} in llama.cpp")
                    continue
                if got == want:
                    agree += 1
                    same += 1
                    continue
                k = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]),
                         min(len(got), len(want)))
                if k < len(got) and k < len(want) and got[k] == runner[k] and lead[k] < NEAR_TIE:
                    agree += 1
                    notes.append(f"{rid}: near-tie at {k} (lead {lead[k]:.3f})")
                else:
                    notes.append(f"{rid}: DIFFER from token {k} (uhlm {got[k:k + 3]}, "
                                 f"llama.cpp {want[k:k + 3]})")
        if agree != len(turns):
            bad += 1
        rows.append((t, f"{size:.1f}", "yes", f"{same}/{len(turns)}", f"{agree}/{len(turns)}",
                     notes))
    print(f"{'type':6} {'MB':>7} {'llama.cpp loads':15} {'identical':9} {'agree':6} notes")
    for t, size, loads, sm, ag, notes in rows:
        print(f"{t:6} {size:>7} {loads:15} {sm:9} {ag:6} {'; '.join(notes) if notes else ''}")
    if a.dir is None:
        for f in os.listdir(work):
            os.unlink(os.path.join(work, f))
        os.rmdir(work)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
