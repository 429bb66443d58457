#!/usr/bin/env python3
"""numpy_reference.py: an exact-arithmetic referee for the llama.cpp agreement fixtures.

    out/oracle/venv/bin/python scripts/oracle/numpy_reference.py MODEL.gguf FIXTURE.json \
        [--write] [--cases N]

SmolLM2 turns out to be very sensitive to rounding (llama.cpp's own F16 KV cache moves its
logits by more than 1.0 against its F32 cache), so "uhlm differs from llama.cpp by X" means
little without knowing how far each is from the exact result. This script computes that exact
result: the llama forward pass in float64 numpy from the file's weights, dequantized with gguf-py
0.19.0 (gguf.quants, llama.cpp's own dequantizers), with no activation quantization and an exact
KV cache. It is teacher-forced on each fixture case's prompt + generated tokens, like the C test.

Prints, over the fixture's top-5 ids at every generated position, the max and mean
|llama.cpp - exact|. With --write it adds to each case "ref5": the exact logits (rounded to 1e-4)
at the same top-5 ids, so tests/test_llamacpp_agreement.c can report uhlm's distance to the
exact result beside llama.cpp's. Deterministic (float64, fixed order).

Architecture handled: GGUF `llama` (RMSNorm, RoPE NORM with llama.rope.freq_base, GQA, SwiGLU,
tied or separate output), which is what SmolLM2 is.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llamacpp_common as lc  # noqa: E402,F401  (pins and prints the oracle version)

import gguf  # noqa: E402
from gguf import quants  # noqa: E402


class Ref:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        f = r.fields

        def val(k):
            return f[k].contents()
        assert val("general.architecture") == "llama", "llama architecture only"
        self.dim = int(val("llama.embedding_length"))
        self.n_layers = int(val("llama.block_count"))
        self.n_heads = int(val("llama.attention.head_count"))
        self.n_kv = int(val("llama.attention.head_count_kv"))
        self.eps = float(val("llama.attention.layer_norm_rms_epsilon"))
        self.theta = float(val("llama.rope.freq_base")) if "llama.rope.freq_base" in f else 1e4
        self.hd = self.dim // self.n_heads
        self.t = {}
        for t in r.tensors:
            w = quants.dequantize(t.data, t.tensor_type)
            self.t[t.name] = np.asarray(w, dtype=np.float64).reshape(
                [int(x) for x in reversed(t.shape)] if len(t.shape) > 1 else [int(t.shape[0])])
        if "output.weight" not in self.t:
            self.t["output.weight"] = self.t["token_embd.weight"]

    def rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):
        # NORM: rotate adjacent pairs (2i, 2i+1) with theta^(-2i/hd)
        hd = x.shape[-1]
        inv = self.theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        ang = pos[:, None] * inv[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * c - x1 * s
        out[..., 1::2] = x0 * s + x1 * c
        return out

    def logits(self, tokens):
        T = len(tokens)
        x = self.t["token_embd.weight"][tokens]
        pos = np.arange(T, dtype=np.float64)
        mask = np.triu(np.full((T, T), -np.inf), 1)
        g = self.n_heads // self.n_kv
        for li in range(self.n_layers):
            p = f"blk.{li}."
            h = self.rms(x, self.t[p + "attn_norm.weight"])
            q = (h @ self.t[p + "attn_q.weight"].T).reshape(T, self.n_heads, self.hd)
            k = (h @ self.t[p + "attn_k.weight"].T).reshape(T, self.n_kv, self.hd)
            v = (h @ self.t[p + "attn_v.weight"].T).reshape(T, self.n_kv, self.hd)
            q, k = self.rope(q, pos), self.rope(k, pos)
            k = np.repeat(k, g, axis=1)
            v = np.repeat(v, g, axis=1)
            att = np.einsum("thd,shd->hts", q, k) / np.sqrt(self.hd) + mask
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            o = np.einsum("hts,shd->thd", att, v).reshape(T, self.dim)
            x = x + o @ self.t[p + "attn_output.weight"].T
            h = self.rms(x, self.t[p + "ffn_norm.weight"])
            a = h @ self.t[p + "ffn_gate.weight"].T
            b = h @ self.t[p + "ffn_up.weight"].T
            x = x + ((a / (1 + np.exp(-a))) * b) @ self.t[p + "ffn_down.weight"].T
        x = self.rms(x, self.t["output_norm.weight"])
        return x @ self.t["output.weight"].T


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("fixture")
    ap.add_argument("--write", action="store_true", help="add ref5 to the fixture's cases")
    ap.add_argument("--cases", type=int, default=0, help="only the first N cases (0 = all)")
    a = ap.parse_args()
    with open(a.fixture, encoding="utf-8") as fi:
        text = fi.read()
    doc = json.loads(text)
    ref = Ref(a.model)
    mx, tot, n, top1 = 0.0, 0.0, 0, 0
    cases = doc["cases"][: a.cases or None]
    for c in cases:
        toks = c["prompt"] + c["generated"]
        lg = ref.logits(toks)
        np_ = len(c["prompt"])
        ref5 = []
        for i, pairs in enumerate(c["top5"]):
            row = lg[np_ - 1 + i]
            top1 += int(np.argmax(row)) == c["generated"][i]
            ref5.append([round(float(row[tid]), 4) for tid, _ in pairs])
            for tid, want in pairs:
                d = abs(row[tid] - want)
                mx = max(mx, d)
                tot += d
                n += 1
        c["ref5"] = ref5
    npos = sum(len(c["top5"]) for c in cases)
    print(f"{os.path.basename(a.fixture)}: llama.cpp vs exact float64 over {n} top-5 logits: "
          f"max |diff| {mx:.4f}, mean {tot / n:.4f}; exact argmax = llama.cpp token at "
          f"{top1}/{npos} positions")
    if a.write:
        # rewrite the cases lines only, keeping the fixture's one-case-per-line layout
        head = text[: text.index('  "cases": [\n')]
        with open(a.fixture + ".tmp", "w", encoding="utf-8") as fo:
            fo.write(head + '  "cases": [\n')
            for i, c in enumerate(doc["cases"]):
                fo.write("    " + json.dumps(c, ensure_ascii=False, separators=(",", ":")))
                fo.write(",\n" if i + 1 < len(doc["cases"]) else "\n")
            fo.write("  ]\n}\n")
        os.replace(a.fixture + ".tmp", a.fixture)


if __name__ == "__main__":
    main()
