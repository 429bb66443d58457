"""llamacpp_common.py: shared helpers of the llama.cpp oracle scripts (scripts/oracle/, bench/).

Everything here talks to llama.cpp through llama-cpp-python's low-level ctypes API, pinned to
one version so that fixtures and speed figures name exactly what they were measured against.
Run with the oracle venv: out/oracle/venv/bin/python (python 3.11, llama-cpp-python 0.3.36
built from source for this CPU, GGML_NATIVE).
"""
import ctypes
import hashlib
import json
import os
import sys

import numpy as np

LLAMA_CPP_PYTHON_VERSION = "0.3.36"

try:
    import llama_cpp as L
except ImportError as e:  # pragma: no cover - depends on the venv
    sys.exit(f"llama_cpp is not importable ({e}); run with out/oracle/venv/bin/python")

if L.__version__ != LLAMA_CPP_PYTHON_VERSION:
    sys.exit(f"llama-cpp-python {L.__version__} found, {LLAMA_CPP_PYTHON_VERSION} required "
             "(fixtures and figures are pinned to it)")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))

GGML_TYPE_F32 = 0
GGML_TYPE_F16 = 1

# llama.cpp prints its loader log to stderr through this callback; keep errors only.
_LOG_CB = L.llama_log_callback(lambda level, text, user: (
    sys.stderr.write(text.decode("utf-8", "replace")) if level == 4 else None))
_initialised = False


def init():
    global _initialised
    if not _initialised:
        L.llama_log_set(_LOG_CB, ctypes.c_void_p(0))
        L.llama_backend_init()
        _initialised = True


def versions():
    """Version strings of the oracle: the Python package, ggml's version and commit (the
    vendored llama.cpp tree's), and the CPU features it was built with."""
    init()
    libdir = os.path.join(os.path.dirname(L.__file__), "lib")
    base = ctypes.CDLL(os.path.join(libdir, "libggml-base.so"))
    base.ggml_version.restype = ctypes.c_char_p
    base.ggml_commit.restype = ctypes.c_char_p
    return {
        "llama_cpp_python": L.__version__,
        "ggml_version": base.ggml_version().decode(),
        "ggml_commit": base.ggml_commit().decode(),
        "system_info": L.llama_print_system_info().decode().strip(),
    }


def version_line():
    v = versions()
    return (f"llama-cpp-python {v['llama_cpp_python']} (ggml {v['ggml_version']}, "
            f"commit {v['ggml_commit']})")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_model(name):
    """Looks a model file up the way the C code does: as given, then $UHLM_MODELS, ./models,
    ../shared/models, /work/main/models (where the shipped GGUFs live on the dev machine)."""
    if os.path.exists(name):
        return name
    dirs = [os.environ.get("UHLM_MODELS", ""), os.path.join(ROOT, "models"),
            os.path.join(ROOT, "..", "shared", "models"), "/work/main/models"]
    for d in dirs:
        if d and os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
    return None


class Model:
    """A llama.cpp model and one context on it (n_threads threads, one sequence). kv_f32 and
    flash_attn ("off", "on", "auto") default to the settings of the agreement fixtures; a
    llama.cpp user gets an F16 cache and "auto"."""

    def __init__(self, path, n_ctx=1024, n_threads=1, n_batch=512, kv_f32=True, flash_attn="off"):
        init()
        mp = L.llama_model_default_params()
        self.model = L.llama_model_load_from_file(path.encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp cannot load {path}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_threads = n_threads
        cp.n_threads_batch = n_threads
        cp.no_perf = False
        cp.flash_attn_type = {"off": L.LLAMA_FLASH_ATTN_TYPE_DISABLED,
                              "on": L.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                              "auto": L.LLAMA_FLASH_ATTN_TYPE_AUTO}[flash_attn]
        if kv_f32:
            cp.type_k = GGML_TYPE_F32
            cp.type_v = GGML_TYPE_F32
        self.settings = {"n_ctx": n_ctx, "n_threads": n_threads, "n_batch": n_batch,
                         "kv_cache": "f32" if kv_f32 else "f16",
                         "flash_attn": flash_attn}
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp cannot create a context for {path}")
        self.batch = L.llama_batch_init(n_batch, 0, 1)

    def close(self):
        if self.batch is not None:
            L.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            L.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            L.llama_model_free(self.model)
            self.model = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def add_bos(self):
        return bool(L.llama_vocab_get_add_bos(self.vocab))

    def template(self):
        t = L.llama_model_chat_template(self.model, None)
        return t.decode() if t else None

    def apply_chat(self, user):
        """The prompt text llama_chat_apply_template renders for one user turn, with the
        assistant header added. The C API does not run the Jinja template: it recognises it
        (here as chatml) and uses its built-in renderer, which adds no system turn."""
        tmpl = L.llama_model_chat_template(self.model, None)
        msgs = (L.llama_chat_message * 1)()
        role, content = b"user", user.encode()
        msgs[0].role = role
        msgs[0].content = content
        n = L.llama_chat_apply_template(tmpl, msgs, 1, True, None, 0)
        if n < 0:
            raise RuntimeError("llama_chat_apply_template failed")
        buf = ctypes.create_string_buffer(n + 1)
        n2 = L.llama_chat_apply_template(tmpl, msgs, 1, True, buf, n + 1)
        if n2 != n:
            raise RuntimeError("llama_chat_apply_template gave two lengths")
        return buf.raw[:n].decode()

    def tokenize(self, text, add_special, parse_special=True):
        b = text.encode()
        cap = len(b) + 8
        out = (L.llama_token * cap)()
        n = L.llama_tokenize(self.vocab, b, len(b), out, cap, add_special, parse_special)
        if n < 0:
            raise RuntimeError(f"llama_tokenize needs {-n} tokens")
        return list(out[:n])

    def is_eog(self, tok):
        return bool(L.llama_vocab_is_eog(self.vocab, tok))

    def clear(self):
        L.llama_memory_clear(L.llama_get_memory(self.ctx), True)

    def decode(self, tokens, pos0, want_last=True):
        """One llama_decode over tokens at positions pos0.. (sequence 0); returns the last
        token's logits as a float32 numpy array when want_last."""
        n = len(tokens)
        if n > self.settings["n_batch"]:
            raise ValueError("batch larger than n_batch")
        b = self.batch
        for i, t in enumerate(tokens):
            b.token[i] = t
            b.pos[i] = pos0 + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = 1 if (want_last and i == n - 1) else 0
        b.n_tokens = n
        rc = L.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        if not want_last:
            return None
        p = L.llama_get_logits_ith(self.ctx, -1)
        return np.ctypeslib.as_array(p, shape=(self.n_vocab,)).copy()


def alpaca_user_turns(path, n):
    """The user turn of the first n Alpaca records: the instruction, plus a blank line and the
    input when the input is not empty (the convention of uhlm's prompt loader)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            user = r["instruction"]
            if r.get("input"):
                user += "\n\n" + r["input"]
            out.append((r["id"], user))
            if len(out) == n:
                break
    if len(out) < n:
        sys.exit(f"{path}: only {len(out)} records, {n} wanted")
    return out
