#!/usr/bin/env python3
"""dump_ggml_tensors.py: llama.cpp's intermediate tensors for one prompt, the per-operation
oracle of uhlm's ggml numerics mode (src/model/ggml_forward.c). A debugging aid, not a
fixture generator: nothing it writes is committed.

    out/oracle/venv/bin/python scripts/oracle/dump_ggml_tensors.py MODEL.gguf OUT.npz \
        --tokens 1,2,3 [--gen 2] [--names attn_norm-0,Qcur-0,...]

Decodes the tokens in one llama_decode (1 thread, F32 KV cache, flash attention off: the
settings of make_greedy_fixtures.py), then --gen greedy tokens one per call, and stores every
F32 graph tensor llama.cpp computes (through the cb_eval callback), keyed "STEP/NAME" (step 0
is the prompt batch), as float32 arrays in ggml's ne order reversed (numpy row-major), plus
"STEP/logits" and "tokens". --names limits what is stored.
"""
import argparse
import ctypes
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llamacpp_common as lc  # noqa: E402

L = lc.L


class GgmlTensor(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p),
                ("ne", ctypes.c_int64 * 4), ("nb", ctypes.c_size_t * 4),
                ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * 16),
                ("flags", ctypes.c_int32), ("src", ctypes.c_void_p * 10),
                ("view_src", ctypes.c_void_p), ("view_offs", ctypes.c_size_t),
                ("data", ctypes.c_void_p), ("name", ctypes.c_char * 64),
                ("extra", ctypes.c_void_p), ("padding", ctypes.c_char * 8)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--gen", type=int, default=1)
    ap.add_argument("--names", default="")
    a = ap.parse_args()
    want = set(x for x in a.names.split(",") if x)
    store = {}
    step = [0]

    def cb(t, ask, user):
        tt = ctypes.cast(t, ctypes.POINTER(GgmlTensor)).contents
        name = tt.name.decode()
        keep = tt.type == lc.GGML_TYPE_F32 and (not want or name in want)
        if ask:
            return keep
        if keep and tt.data:
            ne = [tt.ne[i] for i in range(4)]
            nb = [tt.nb[i] for i in range(4)]
            span = sum((ne[i] - 1) * nb[i] for i in range(4)) + 4
            buf = (ctypes.c_char * span).from_address(tt.data)
            arr = np.ndarray(shape=ne[::-1], dtype=np.float32, buffer=buf,
                             strides=nb[::-1]).copy()
            key = f"{step[0]}/{name}"
            k = key
            i = 1
            while k in store:
                k = f"{key}#{i}"
                i += 1
            store[k] = arr
        return True

    cbf = L.ggml_backend_sched_eval_callback(cb)
    toks = [int(x) for x in a.tokens.split(",")]
    m = lc.Model(a.model, n_ctx=1024, n_threads=1, n_batch=512, kv_f32=True, flash_attn="off")
    # the context must be made with the callback: rebuild it
    L.llama_free(m.ctx)
    cp = L.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch = 1024, 512, 512
    cp.n_threads = cp.n_threads_batch = 1
    cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
    cp.type_k = cp.type_v = lc.GGML_TYPE_F32
    cp.cb_eval = cbf
    cp.cb_eval_user_data = None
    m.ctx = L.llama_init_from_model(m.model, cp)
    logits = m.decode(toks, 0)
    store["0/logits"] = logits.copy()
    pos = len(toks)
    for g in range(a.gen):
        tok = int(np.argmax(logits))
        toks.append(tok)
        step[0] += 1
        logits = m.decode([tok], pos)
        store[f"{step[0]}/logits"] = logits.copy()
        pos += 1
    store["tokens"] = np.array(toks, dtype=np.int32)
    m.close()
    np.savez(a.out, **store)
    print(f"wrote {a.out}: {len(store)} arrays", file=sys.stderr)


if __name__ == "__main__":
    main()
