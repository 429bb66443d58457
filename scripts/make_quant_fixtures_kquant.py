#!/usr/bin/env python3
"""make_quant_fixtures_kquant.py: llama.cpp's own K-quant results for tests/test_quant_kquant.c.

Run with the oracle venv (python 3.11, numpy, gguf==0.19.0, llama-cpp-python==0.3.36 built
for the CPU; none of them is a dependency of uhlm):

    out/oracle/venv/bin/python scripts/make_quant_fixtures_kquant.py \
        [--model /work/main/models/SmolLM2-135M-Instruct.Q4_1.gguf]

Writes into tests/fixtures/kquant/ (all little-endian, sizes imply the counts):
  src.f32          float32 input rows of 1536 elements (6 blocks of 256 each): first REAL_ROWS
                   real weight rows (blk.{0,7,15,29}.ffn_down of SmolLM2-135M-Instruct, dequantized
                   from its Q4_1 by gguf.quants), then synthetic rows with the awkward cases
                   (zeros, constants, one-signed, tiny, huge, outliers, sparse, gaussian)
  <t>.bin          ggml_quantize_chunk(<t>, src, ..., imatrix=NULL) from libggml-base.so, the
                   bytes `llama-quantize` would write without an importance matrix,
                   for t in q2_k q3_k q4_k q5_k q6_k
  <t>_rand.bin     16 blocks of random bytes with random finite fp16 d (and dmin)
  <t>_rand.f32     gguf.quants.dequantize of <t>_rand.bin
  deq_hash.txt     "<t> <hash>" lines: 64-bit FNV-1a (hex) of the float32 bytes of
                   gguf.quants.dequantize(<t>.bin) (a hash keeps the fixtures small; the
                   random blocks above are compared value by value)
  q8_k.bin         quantize_row_q8_K from libggml-cpu.so (the activation quantization of
                   llama.cpp's K-quant dot products) on src.f32: per block float d, 256 int8,
                   16 int16 bsums (292 bytes)

Deterministic: fixed numpy seed; the same library versions give the same bytes.
"""
import argparse
import ctypes
import importlib.util
import os

import numpy as np
import gguf
from gguf import quants

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "kquant")
# llama-cpp-python ships ggml's shared libraries beside its module (scripts/oracle/setup.sh
# builds it into out/oracle/venv)
_LLAMA = importlib.util.find_spec("llama_cpp")
if _LLAMA is None:
    raise SystemExit("llama_cpp is not importable: run with out/oracle/venv/bin/python "
                     "(scripts/oracle/setup.sh builds it)")
LIB = os.path.join(os.path.dirname(_LLAMA.origin), "lib")
COLS = 1536
REAL_ROWS = 8  # two rows from each of four layers
TYPES = {"q2_k": (10, gguf.GGMLQuantizationType.Q2_K, 84),
         "q3_k": (11, gguf.GGMLQuantizationType.Q3_K, 110),
         "q4_k": (12, gguf.GGMLQuantizationType.Q4_K, 144),
         "q5_k": (13, gguf.GGMLQuantizationType.Q5_K, 176),
         "q6_k": (14, gguf.GGMLQuantizationType.Q6_K, 210)}
# byte offsets of the fp16 scale fields in each block (d, then dmin where there is one)
FP16_AT = {"q2_k": (80, 82), "q3_k": (108,), "q4_k": (0, 2), "q5_k": (0, 2), "q6_k": (208,)}


def real_rows(model):
    r = gguf.GGUFReader(model)
    by = {t.name: t for t in r.tensors}
    out = []
    for layer in (0, 7, 15, 29):
        t = by[f"blk.{layer}.ffn_down.weight"]
        w = quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(-1, COLS)
        for row in (3, 300):
            out.append(w[row].astype(np.float32))
    return np.stack(out)


def synthetic_rows(rng):
    rows = []
    n = COLS
    rows.append(np.zeros(n))                                     # all zero
    rows.append(np.full(n, 0.375))                               # constant, positive
    rows.append(np.full(n, -2.5))                                # constant, negative
    rows.append(np.abs(rng.normal(size=n)))                      # one-signed
    rows.append(-np.abs(rng.normal(size=n)) * 3)                 # one-signed, negative
    rows.append(rng.normal(size=n) * 1e-20)                      # tiny (near GROUP_MAX_EPS)
    rows.append(rng.normal(size=n) * 3e3)                        # large
    x = rng.normal(size=n) * 0.02
    x[rng.integers(0, n, 12)] *= 200                             # outliers
    rows.append(x)
    x = rng.normal(size=n)
    x[rng.random(n) < 0.9] = 0                                   # sparse
    rows.append(x)
    x = rng.uniform(-1, 1, size=n)
    x[:256] = 0
    x[256:272] = 1e-3                                            # blocks with zero sub-blocks
    rows.append(x)
    for s in (0.01, 0.1, 1.0, 7.0):
        rows.append(rng.normal(size=n) * s + rng.normal() * s)   # gaussian with an offset
    # per-block scale changes inside one row
    x = rng.normal(size=n) * np.repeat(10.0 ** rng.uniform(-4, 2, n // 16), 16)
    rows.append(x)
    return np.stack(rows).astype(np.float32)


def fnv1a(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return h


def ggml_quantize(lib, type_id, src, bsize):
    nrows, ncols = src.shape
    src = np.ascontiguousarray(src, dtype=np.float32)
    dst = np.zeros(nrows * ncols // 256 * bsize, dtype=np.uint8)
    n = lib.ggml_quantize_chunk(type_id, src.ctypes.data_as(ctypes.c_void_p),
                                dst.ctypes.data_as(ctypes.c_void_p), 0, nrows, ncols, None)
    assert n == dst.size, (n, dst.size)
    return dst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="/work/main/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261204)

    base = ctypes.CDLL(os.path.join(LIB, "libggml-base.so"))
    base.ggml_quantize_chunk.restype = ctypes.c_size_t
    base.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                         ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                         ctypes.c_void_p]
    cpu = ctypes.CDLL(os.path.join(LIB, "libggml-cpu.so"))
    cpu.quantize_row_q8_K.restype = None
    cpu.quantize_row_q8_K.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]

    src = np.concatenate([real_rows(a.model), synthetic_rows(rng)]).astype(np.float32)
    src.tofile(os.path.join(OUT, "src.f32"))

    hashes = []
    for name, (tid, gtype, bsize) in TYPES.items():
        q = ggml_quantize(base, tid, src, bsize)
        q.tofile(os.path.join(OUT, f"{name}.bin"))
        hashes.append(f"{name} {fnv1a(quants.dequantize(q, gtype).astype('<f4').tobytes()):016x}\n")
        nb = 16
        raw = rng.integers(0, 256, size=(nb, bsize), dtype=np.uint8)
        for off in FP16_AT[name]:
            # finite fp16 values of every magnitude, both signs (exponent field < 31)
            h = rng.integers(0, 0x7c00, size=nb, dtype=np.uint16) | (rng.integers(0, 2, size=nb, dtype=np.uint16) << 15)
            raw[:, off:off + 2] = h.astype("<u2").view(np.uint8).reshape(nb, 2)
        raw = raw.reshape(-1)
        raw.tofile(os.path.join(OUT, f"{name}_rand.bin"))
        quants.dequantize(raw, gtype).astype(np.float32).tofile(os.path.join(OUT, f"{name}_rand.f32"))

    with open(os.path.join(OUT, "deq_hash.txt"), "w") as f:
        f.writelines(hashes)
    nblk = src.size // 256
    q8 = np.zeros(nblk * 292, dtype=np.uint8)
    cpu.quantize_row_q8_K(src.ctypes.data_as(ctypes.c_void_p), q8.ctypes.data_as(ctypes.c_void_p), src.size)
    q8.tofile(os.path.join(OUT, "q8_k.bin"))
    print(f"wrote {src.shape[0]} rows x {COLS} ({nblk} blocks) to {os.path.relpath(OUT)}")


if __name__ == "__main__":
    main()
