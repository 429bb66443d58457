#!/usr/bin/env python3
"""make_greedy_fixtures.py: llama.cpp's greedy decodes of SmolLM2 on Alpaca prompts, the
reference for tests/test_llamacpp_agreement.c.

    out/oracle/venv/bin/python scripts/oracle/make_greedy_fixtures.py MODEL.gguf TYPE \
        [--prompts /work/shared/data/alpaca-200.jsonl] [--n 20] [--gen 64]

writes tests/fixtures/smollm2_greedy_TYPE.json. MODEL is the shipped
SmolLM2-135M-Instruct.Q4_1.gguf (TYPE q4_1) or a file `uhlm convert --type f16|q8_0` wrote from
it (TYPE f16 / q8_0); the test rewrites those files itself and checks their size against the
one recorded here.

For each of the first N Alpaca records the user turn is the instruction, plus "\n\n" and the
input when the input is not empty. The prompt text is what llama_chat_apply_template renders
with the model's chat template: llama.cpp's C API recognises SmolLM2's Jinja template as chatml
and renders "<|im_start|>user\n{msg}<|im_end|>\n<|im_start|>assistant\n" with no system turn (the
Jinja template itself would add SmolLM2's default system prompt; the C renderer does not). It is
tokenized by llama.cpp with add_special = the file's tokenizer.ggml.add_bos_token (false for
SmolLM2) and parse_special = true, then decoded greedily by llama.cpp: one llama_decode over the
prompt, then one token per call, argmax (lowest id on ties), up to GEN tokens or an
end-of-generation token (which is recorded and ends the case).

llama.cpp settings (recorded in the file): 1 thread, F32 KV cache and flash attention off, so
the comparison measures the forward pass itself rather than llama.cpp's F16 rounding of the
cache. At each generated position the fixture holds the top-5 (id, logit) pairs (the first is
the chosen token); logits are rounded to 1e-4, well below the tolerances the test uses.

Deterministic: same file, same llama.cpp build and CPU kernels give the same output.
A regenerated fixture lacks the fields two other scripts add: "ref5"
(scripts/oracle/numpy_reference.py) and "logits_sha" (scripts/oracle/add_logit_hashes.py,
which the ggml numerics checks of the test need); run them afterwards.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llamacpp_common as lc  # noqa: E402

TOPK = 5


def greedy(m, prompt, n_gen):
    m.clear()
    logits = m.decode(prompt, 0)
    gen, tops, eog = [], [], False
    pos = len(prompt)
    for _ in range(n_gen):
        order = np.argsort(-logits, kind="stable")[:TOPK]
        tok = int(order[0])
        tops.append([[int(i), round(float(logits[i]), 4)] for i in order])
        gen.append(tok)
        if m.is_eog(tok):
            eog = True
            break
        logits = m.decode([tok], pos)
        pos += 1
    return gen, tops, eog


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("type", help="label for the file name: q4_1, f16, q8_0, ...")
    ap.add_argument("--prompts", default="/work/shared/data/alpaca-200.jsonl")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--out", default=None)
    ap.add_argument("--kv", choices=["f32", "f16"], default="f32",
                    help="KV cache type (f16 is llama.cpp's default; only for comparisons)")
    ap.add_argument("--flash", choices=["off", "on", "auto"], default="off")
    a = ap.parse_args()

    v = lc.versions()
    print(lc.version_line(), file=sys.stderr)
    out = a.out or os.path.join(lc.ROOT, "tests", "fixtures", f"smollm2_greedy_{a.type}.json")
    turns = lc.alpaca_user_turns(a.prompts, a.n)
    cases = []
    with lc.Model(a.model, n_ctx=1024, n_threads=1, n_batch=512, kv_f32=(a.kv == "f32"),
                  flash_attn=a.flash) as m:
        add_bos = m.add_bos()
        for rid, user in turns:
            text = m.apply_chat(user)
            prompt = m.tokenize(text, add_special=add_bos, parse_special=True)
            gen, tops, eog = greedy(m, prompt, a.gen)
            cases.append({"id": rid, "user": user, "prompt_text": text, "prompt": prompt,
                          "generated": gen, "eog": eog, "top5": tops})
            print(f"{rid}: {len(prompt)} prompt tokens, {len(gen)} generated"
                  f"{' (eog)' if eog else ''}", file=sys.stderr)
        settings = dict(m.settings)
        settings.update({"add_bos": add_bos, "parse_special": True, "gen": a.gen, "topk": TOPK,
                         "chat": "llama_chat_apply_template(model template, add_ass=true)",
                         "greedy": "argmax, lowest id on ties; stop after an EOG token"})
    doc = {
        "generator": "scripts/oracle/make_greedy_fixtures.py",
        "oracle": v,
        "model": {"file": os.path.basename(a.model), "type": a.type,
                  "size": os.path.getsize(a.model), "sha256": lc.sha256(a.model)},
        "prompts": {"file": os.path.basename(a.prompts), "first": a.n},
        "settings": settings,
        "cases": cases,
    }
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        # one case per line keeps diffs of regenerated fixtures readable
        f.write("{\n")
        keys = [k for k in doc if k != "cases"]
        for k in keys:
            f.write(f"  {json.dumps(k)}: {json.dumps(doc[k], ensure_ascii=False)},\n")
        f.write('  "cases": [\n')
        for i, c in enumerate(cases):
            f.write("    " + json.dumps(c, ensure_ascii=False, separators=(",", ":")))
            f.write(",\n" if i + 1 < len(cases) else "\n")
        f.write("  ]\n}\n")
    os.replace(tmp, out)
    print(f"wrote {out} ({os.path.getsize(out)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
