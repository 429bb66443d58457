#!/usr/bin/env python3
"""make_quant_fixtures_legacy.py: expected bytes and floats for tests/test_quant_legacy.c.

Run with the oracle venv (python 3.11, numpy, gguf==0.19.0, llama-cpp-python==0.3.36):

    out/oracle/venv/bin/python scripts/make_quant_fixtures_legacy.py \
        [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]

Writes tests/fixtures/quant_legacy.bin (deterministic: fixed seed, no timestamps). Two oracles
are used and must agree: gguf.quants (numpy) and llama.cpp's own C reference functions
(quantize_row_{q4_1,q5_0,q5_1,q8_1}_ref, dequantize_row_{q4_1,q5_0,q5_1}) called through
ctypes from llama-cpp-python's libggml-base.so. gguf.quants has no Q8_1, so Q8_1 comes from
the C reference alone.

Layout, little-endian:
    "UHLMQL01"
    u32 NB; f32 x[NB * 32]                     inputs to quantize (edge cases first)
    for T in Q4_1, Q5_0, Q5_1, Q8_1: NB blocks of T, the reference quantization of x
    u32 NR; for T in Q4_1, Q5_0, Q5_1: NR random blocks of T (finite fp16 d and m),
                                       then f32 [NR * 32], their dequantization
    u32 NT; NT times: u32 name length, name, u64 first block, u32 K, K raw Q4_1 blocks as
           the model file holds them, f32 [K * 32] their dequantization
The last part comes from --model (a Q4_1 GGUF; NT = 0 without it): blocks at fixed places of
a few tensors, so the test can check uhlm's dequantization on real weights when the file is
present (and that the file's bytes are the ones these floats were computed from).
"""
import argparse
import ctypes
import importlib.util
import os
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import GGUFReader, quants

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "quant_legacy.bin")
# llama-cpp-python ships ggml's shared libraries beside its module (scripts/oracle/setup.sh
# builds it into out/oracle/venv)
_LLAMA = importlib.util.find_spec("llama_cpp")
if _LLAMA is None:
    raise SystemExit("llama_cpp is not importable: run with out/oracle/venv/bin/python "
                     "(scripts/oracle/setup.sh builds it)")
LIB = os.path.join(os.path.dirname(_LLAMA.origin), "lib", 'libggml-base.so')

SIZES = {QT.Q4_1: 20, QT.Q5_0: 22, QT.Q5_1: 24, QT.Q8_1: 36}
NAMES = {QT.Q4_1: "q4_1", QT.Q5_0: "q5_0", QT.Q5_1: "q5_1", QT.Q8_1: "q8_1"}


def ggml():
    lib = ctypes.CDLL(LIB)
    for n in ("quantize_row_q4_1_ref", "quantize_row_q5_0_ref", "quantize_row_q5_1_ref",
              "quantize_row_q8_1_ref", "dequantize_row_q4_1", "dequantize_row_q5_0",
              "dequantize_row_q5_1"):
        getattr(lib, n).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        getattr(lib, n).restype = None
    return lib


def c_quantize(lib, t, x):
    out = np.zeros(x.size // 32 * SIZES[t], dtype=np.uint8)
    x = np.ascontiguousarray(x, dtype=np.float32)
    getattr(lib, f"quantize_row_{NAMES[t]}_ref")(x.ctypes.data, out.ctypes.data, x.size)
    return out


def c_dequantize(lib, t, raw):
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    out = np.zeros(raw.size // SIZES[t] * 32, dtype=np.float32)
    getattr(lib, f"dequantize_row_{NAMES[t]}")(raw.ctypes.data, out.ctypes.data, out.size)
    return out


def same_bits(a, b):
    return np.array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))


def inputs(rng):
    """Edge cases, then random blocks at magnitudes from 1e-6 to 1e4."""
    b = []
    b.append(np.zeros(32))                                  # d = 0
    b.append(np.full(32, 0.75))                             # max == min
    b.append(np.full(32, -3.0))
    b.append(np.arange(32) * 0.5)                           # q4_1: exact steps
    b.append(np.arange(32) - 16.0)                          # q5_0: max magnitude negative
    b.append(16.0 - np.arange(32))                          # positive maximum
    b.append((np.arange(32) % 31) * 0.25 - 2.0)
    b.append(np.where(np.arange(32) % 2 == 0, 1.0, -1.0) * 1e-30)  # fp16 underflow of d
    b.append(rng.normal(0, 1, 32) * 7e4)                   # fp16 overflow of d and m
    b.append(rng.normal(0, 1, 32) * 1e-7)                  # subnormal fp16 scales
    t = rng.normal(0, 1, 32)
    t[5] = 1e3                                              # one outlier
    b.append(t)
    for _ in range(192 - len(b)):
        scale = 10.0 ** rng.uniform(-6, 4)
        kind = rng.integers(0, 3)
        if kind == 0:
            v = rng.normal(0, scale, 32)
        elif kind == 1:
            v = rng.uniform(-scale, scale, 32) + rng.uniform(-scale, scale)
        else:  # values on a coarse grid: many exact .5 operands
            v = rng.integers(-40, 40, 32) * (scale / 8)
        b.append(v)
    return np.concatenate(b).astype(np.float32)


def random_blocks(rng, t, n):
    raw = rng.integers(0, 256, (n, SIZES[t]), dtype=np.uint8)
    nh = 2 if t == QT.Q5_0 else 4  # fp16 d (and m) at the front

    def finite_half():
        while True:
            h = int(rng.integers(0, 65536))
            if (h >> 10) & 0x1F != 0x1F:
                return h
    for i in range(n):
        for o in range(0, nh, 2):
            raw[i, o:o + 2] = np.frombuffer(struct.pack("<H", finite_half()), dtype=np.uint8)
    return raw.reshape(-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="SmolLM2-135M-Instruct.Q4_1.gguf (optional)")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    lib = ggml()
    rng = np.random.default_rng(20261204)
    out = bytearray(b"UHLMQL01")

    x = inputs(rng)
    nb = x.size // 32
    out += struct.pack("<I", nb) + x.tobytes()
    for t in (QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q8_1):
        c = c_quantize(lib, t, x)
        if t != QT.Q8_1:
            with np.errstate(all="ignore"):
                p = quants.quantize(x.reshape(-1, 32), t).reshape(-1)
            if not np.array_equal(c, p):
                bad = np.nonzero((c != p).reshape(nb, -1).any(axis=1))[0]
                sys.exit(f"{NAMES[t]}: gguf.quants and ggml's reference differ in blocks {bad}")
        out += c.tobytes()

    nr = 128
    out += struct.pack("<I", nr)
    for t in (QT.Q4_1, QT.Q5_0, QT.Q5_1):
        raw = random_blocks(rng, t, nr)
        c = c_dequantize(lib, t, raw)
        with np.errstate(all="ignore"):
            p = quants.dequantize(raw, t).reshape(-1)
        if not same_bits(c, p):
            sys.exit(f"{NAMES[t]}: gguf.quants and ggml's dequantization differ")
        out += raw.tobytes() + c.tobytes()

    picks = []
    if args.model:
        r = GGUFReader(args.model)
        byname = {t.name: t for t in r.tensors}
        for name, first, k in (("blk.0.attn_q.weight", 0, 64), ("blk.7.ffn_down.weight", 1000, 64),
                               ("blk.29.ffn_up.weight", 27000, 64)):
            t = byname[name]
            if t.tensor_type != QT.Q4_1:
                sys.exit(f"{args.model}: {name} is {t.tensor_type.name}, expected Q4_1")
            raw = np.asarray(t.data).reshape(-1).view(np.uint8)[first * 20:(first + k) * 20]
            c = c_dequantize(lib, QT.Q4_1, raw)
            p = quants.dequantize(raw, QT.Q4_1).reshape(-1)
            if not same_bits(c, p):
                sys.exit(f"{name}: gguf.quants and ggml's dequantization differ")
            picks.append((name, first, k, raw, c))
    out += struct.pack("<I", len(picks))
    for name, first, k, raw, c in picks:
        nm = name.encode()
        out += struct.pack("<I", len(nm)) + nm + struct.pack("<QI", first, k)
        out += raw.tobytes() + c.tobytes()

    with open(args.out, "wb") as f:
        f.write(out)
    print(f"wrote {args.out}: {len(out)} bytes, {nb} blocks to quantize, {nr} random blocks per "
          f"type, {len(picks)} model tensors")


if __name__ == "__main__":
    main()
