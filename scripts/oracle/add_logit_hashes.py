#!/usr/bin/env python3
"""add_logit_hashes.py: adds llama.cpp's whole logit vectors, as hashes, to the greedy fixtures,
so that tests/test_llamacpp_agreement.c can check uhlm's ggml numerics mode bit for bit.

    out/oracle/venv/bin/python scripts/oracle/add_logit_hashes.py MODEL.gguf \
        tests/fixtures/smollm2_greedy_TYPE.json

For every case of the fixture (written by make_greedy_fixtures.py, with the same llama.cpp
settings: 1 thread, F32 KV cache, flash attention off), llama.cpp decodes the prompt in one
llama_decode and then the fixture's own generated tokens one per call; at each generated
position it records the first 16 hex digits of the SHA-256 of the little-endian float32
bytes of all n_vocab logits in the case's "logits_sha" list. It first checks that the
position's top-5 ids and rounded logits equal the fixture's (same model, same build), and
refuses to write otherwise. The file is rewritten in make_greedy_fixtures.py's layout, other
fields unchanged. Deterministic.
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llamacpp_common as lc  # noqa: E402



def logits_hash(logits):
    return hashlib.sha256(logits.astype("<f4").tobytes()).hexdigest()[:16]


def write_fixture(doc, out):
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("{\n")
        for k in [k for k in doc if k != "cases"]:
            f.write(f"  {json.dumps(k)}: {json.dumps(doc[k], ensure_ascii=False)},\n")
        f.write('  "cases": [\n')
        cases = doc["cases"]
        for i, c in enumerate(cases):
            f.write("    " + json.dumps(c, ensure_ascii=False, separators=(",", ":")))
            f.write(",\n" if i + 1 < len(cases) else "\n")
        f.write("  ]\n}\n")
    os.replace(tmp, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("fixture")
    a = ap.parse_args()
    with open(a.fixture, encoding="utf-8") as f:
        doc = json.load(f)
    if lc.sha256(a.model) != doc["model"]["sha256"]:
        sys.exit(f"{a.model} is not the file {a.fixture} was made from")
    s = doc["settings"]
    with lc.Model(a.model, n_ctx=s["n_ctx"], n_threads=s["n_threads"], n_batch=s["n_batch"],
                  kv_f32=s["kv_cache"] == "f32", flash_attn=s["flash_attn"]) as m:
        for c in doc["cases"]:
            m.clear()
            logits = m.decode(c["prompt"], 0)
            pos = len(c["prompt"])
            hashes = []
            for i, tok in enumerate(c["generated"]):
                order = np.argsort(-logits, kind="stable")[:len(c["top5"][i])]
                got = [[int(j), round(float(logits[j]), 4)] for j in order]
                if got != c["top5"][i]:
                    sys.exit(f"{c['id']} position {i}: llama.cpp gives {got}, the fixture "
                             f"{c['top5'][i]}: another build or model?")
                hashes.append(logits_hash(logits))
                if i + 1 < len(c["generated"]):
                    logits = m.decode([tok], pos)
                    pos += 1
            c["logits_sha"] = hashes
            print(f"{c['id']}: {len(hashes)} positions", file=sys.stderr)
    write_fixture(doc, a.fixture)
    print(f"wrote {a.fixture}", file=sys.stderr)


if __name__ == "__main__":
    main()
