#!/usr/bin/env python3
"""llamacpp_quantize.py: a GGUF re-quantized by llama.cpp's own quantizer (llama_model_quantize,
llama-cpp-python 0.3.36), for the speed anchors (bench/anchors.sh) and the K-quant checks.

    out/oracle/venv/bin/python bench/llamacpp_quantize.py IN.gguf OUT.gguf [--ftype q4_k_m]

With a quantized input (the shipped SmolLM2 Q4_1) allow_requantize is set: llama.cpp dequantizes
each tensor to F32 and quantizes it again, the route its `llama-quantize --allow-requantize`
takes. Prints the tensor-type census of the result, because llama.cpp does not keep the type
asked for everywhere: K-quants need rows that are a multiple of 256 values, so SmolLM2-135M's
576-wide matrices fall back (Q4_K -> Q5_0, Q6_K -> Q8_0) and only the 1536-wide ffn_down stays
a K-quant; Q4_K_M also puts some tensors in Q6_K. This is what the published Q4_K_M files of
this model contain as well.
"""
import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts",
                                "oracle"))
import llamacpp_common as lc  # noqa: E402

FTYPES = {"f16": 1, "q8_0": 7, "q4_0": 2, "q4_1": 3, "q5_0": 8, "q5_1": 9, "q2_k": 10,
          "q3_k_m": 12, "q4_k_s": 14, "q4_k_m": 15, "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18}


def census(path):
    import gguf
    r = gguf.GGUFReader(path)
    c = collections.Counter(t.tensor_type.name for t in r.tensors)
    return dict(sorted(c.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--ftype", default="q4_k_m", choices=sorted(FTYPES))
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    lc.init()
    print(lc.version_line(), file=sys.stderr)
    p = lc.L.llama_model_quantize_default_params()
    p.nthread = a.threads
    p.ftype = FTYPES[a.ftype]
    p.allow_requantize = True
    rc = lc.L.llama_model_quantize(a.inp.encode(), a.out.encode(), p)
    if rc != 0:
        sys.exit(f"llama_model_quantize {a.inp} -> {a.out} ({a.ftype}) failed: {rc}")
    print(f"{a.out}: {a.ftype} from {os.path.basename(a.inp)} (allow_requantize), "
          f"{os.path.getsize(a.out)} bytes, tensor types {census(a.out)}")


if __name__ == "__main__":
    main()
