#!/work/oracle/venv/bin/python
"""make_qwen2_fixture.py: a tiny random `qwen2` GGUF and its expected logits, for tests/test_arch.c.

Run with the oracle venv (python 3.11, numpy, gguf==0.19.0; llama-cpp-python==0.3.36 optional):

    /work/oracle/venv/bin/python scripts/make_qwen2_fixture.py ../shared/models/tok512.bin

Writes, deterministically (numpy seed 1234):
  tests/fixtures/qwen2-tiny.gguf    general.architecture = qwen2: dim 64, 2 layers, 4 heads with
                                    2 key/value heads (GQA, head_dim 16), FFN 96, context 64,
                                    rope base 10000 with linear scaling factor 2, rms eps 1e-6,
                                    q/k/v biases, all tensors F32, no output.weight (tied to
                                    token_embd), and tok512's 512-piece SentencePiece vocabulary
                                    (tokenizer.ggml.model = llama) so that it loads everywhere;
  tests/fixtures/qwen2-tiny-logits.txt
                                    "# tokens: ..." then one line of 512 logits per position,
                                    from the numpy reference forward pass below (float64);
  tests/fixtures/qwen2-tiny-llamacpp.txt
                                    the same positions' logits from llama.cpp itself (through
                                    llama-cpp-python's low-level API), when llama_cpp imports;
                                    the script also checks them against numpy (max abs < 1e-4,
                                    with an F32 KV cache and flash attention off: llama.cpp's
                                    defaults round through F16 and differ by ~1e-2).
Weights are F32 because llama.cpp's CPU matmul rounds activations to F16 for F16 weights.

The reference implements what llama.cpp's qwen2 graph computes (src/models/qwen2.cpp): RMS norm,
biased q/k/v projections, NEOX RoPE (element i rotates with i + head_dim/2, angle
pos * freq_scale * base^(-2i/head_dim)), causal grouped-query attention with 1/sqrt(head_dim),
SwiGLU FFN, final norm, tied classifier.
"""
import os
import struct
import sys

import numpy as np
import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures")

DIM, LAYERS, HEADS, KV_HEADS, FFN, CTX = 64, 2, 4, 2, 96, 64
HD = DIM // HEADS
BASE, SCALE_FACTOR, EPS = 10000.0, 2.0, 1e-6
TOKENS = [1, 72, 289, 41, 300, 17, 450, 2, 99, 260, 5, 111]


def read_tok512(path):
    """llama2.c tokenizer.bin: int32 max_len, then per token float score, int32 len, bytes."""
    with open(path, "rb") as f:
        data = f.read()
    off = 4
    pieces, scores = [], []
    while off < len(data):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        pieces.append(data[off:off + n])
        off += n
        scores.append(score)
    types = []
    for i, p in enumerate(pieces):
        if p == b"<unk>":
            types.append(2)
        elif p in (b"<s>", b"</s>"):
            types.append(3)
        elif len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">"):
            types.append(6)
        else:
            types.append(1)
    # GGUF SentencePiece pieces use U+2581 for space
    pieces = [p.replace(b" ", "\u2581".encode()) for p in pieces]
    return pieces, scores, types


def rmsnorm(x, w):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS) * w


def rope_neox(x, pos):
    """x: [heads, HD] at position pos."""
    half = HD // 2
    i = np.arange(half, dtype=np.float64)
    theta = pos * (1.0 / SCALE_FACTOR) * BASE ** (-2.0 * i / HD)
    c, s = np.cos(theta), np.sin(theta)
    a, b = x[:, :half], x[:, half:]
    return np.concatenate([a * c - b * s, a * s + b * c], axis=1)


def forward(W, tokens):
    emb = W["token_embd.weight"]
    T = len(tokens)
    x = emb[tokens].copy()
    grp = HEADS // KV_HEADS
    for l in range(LAYERS):
        p = lambda n: W[f"blk.{l}.{n}"]
        h = rmsnorm(x, p("attn_norm.weight"))
        q = h @ p("attn_q.weight").T + p("attn_q.bias")
        k = h @ p("attn_k.weight").T + p("attn_k.bias")
        v = h @ p("attn_v.weight").T + p("attn_v.bias")
        q = np.stack([rope_neox(q[t].reshape(HEADS, HD), t) for t in range(T)])
        k = np.stack([rope_neox(k[t].reshape(KV_HEADS, HD), t) for t in range(T)])
        v = v.reshape(T, KV_HEADS, HD)
        out = np.zeros((T, HEADS, HD))
        for hh in range(HEADS):
            kh = hh // grp
            sc = q[:, hh, :] @ k[:, kh, :].T / np.sqrt(HD)
            sc = np.where(np.tril(np.ones((T, T))) > 0, sc, -np.inf)
            sc = np.exp(sc - sc.max(axis=1, keepdims=True))
            sc /= sc.sum(axis=1, keepdims=True)
            out[:, hh, :] = sc @ v[:, kh, :]
        x = x + out.reshape(T, DIM) @ p("attn_output.weight").T
        h = rmsnorm(x, p("ffn_norm.weight"))
        g = h @ p("ffn_gate.weight").T
        u = h @ p("ffn_up.weight").T
        x = x + ((g / (1 + np.exp(-g))) * u) @ p("ffn_down.weight").T
    return rmsnorm(x, W["output_norm.weight"]) @ emb.T


def make_weights(vocab):
    rng = np.random.default_rng(1234)
    mats, vecs = {}, {}

    def m(name, rows, cols, sd):
        mats[name] = (rng.standard_normal((rows, cols)) * sd).astype(np.float32)

    def v(name, n, mean, sd):
        vecs[name] = (mean + rng.standard_normal(n) * sd).astype(np.float32)

    m("token_embd.weight", vocab, DIM, 0.5)
    v("output_norm.weight", DIM, 1.0, 0.1)
    for l in range(LAYERS):
        b = f"blk.{l}."
        v(b + "attn_norm.weight", DIM, 1.0, 0.1)
        v(b + "ffn_norm.weight", DIM, 1.0, 0.1)
        m(b + "attn_q.weight", DIM, DIM, 0.2)
        m(b + "attn_k.weight", KV_HEADS * HD, DIM, 0.2)
        m(b + "attn_v.weight", KV_HEADS * HD, DIM, 0.2)
        m(b + "attn_output.weight", DIM, DIM, 0.15)
        m(b + "ffn_gate.weight", FFN, DIM, 0.15)
        m(b + "ffn_up.weight", FFN, DIM, 0.15)
        m(b + "ffn_down.weight", DIM, FFN, 0.15)
        v(b + "attn_q.bias", DIM, 0.0, 0.3)
        v(b + "attn_k.bias", KV_HEADS * HD, 0.0, 0.3)
        v(b + "attn_v.bias", KV_HEADS * HD, 0.0, 0.3)
    return mats, vecs


def write_gguf(path, mats, vecs, pieces, scores, types):
    w = gguf.GGUFWriter(path, "qwen2")
    w.add_name("qwen2-tiny-random (uhlm test fixture)")
    w.add_context_length(CTX)
    w.add_embedding_length(DIM)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(BASE)
    w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
    w.add_rope_scaling_factor(SCALE_FACTOR)
    w.add_layer_norm_rms_eps(EPS)
    w.add_file_type(0)  # all F32
    w.add_tokenizer_model("llama")
    w.add_token_list(pieces)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_chat_template(
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
        "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    for name in ["token_embd.weight", "output_norm.weight"]:
        w.add_tensor(name, mats.get(name, vecs.get(name)))
    for l in range(LAYERS):
        for n in ["attn_norm.weight", "attn_q.weight", "attn_q.bias", "attn_k.weight",
                  "attn_k.bias", "attn_v.weight", "attn_v.bias", "attn_output.weight",
                  "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"]:
            name = f"blk.{l}.{n}"
            w.add_tensor(name, mats.get(name, vecs.get(name)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_logits(path, logits, what):
    with open(path, "w") as f:
        f.write(f"# {what}\n# tokens: {' '.join(map(str, TOKENS))}\n")
        for row in logits:
            f.write(" ".join(f"{x:.7g}" for x in row) + "\n")


def llamacpp_logits(path, vocab):
    import ctypes
    import llama_cpp as L

    L.llama_backend_init()
    mp = L.llama_model_default_params()
    model = L.llama_model_load_from_file(path.encode(), mp)
    if not model:
        raise RuntimeError("llama.cpp could not load " + path)
    cp = L.llama_context_default_params()
    cp.n_ctx = CTX
    cp.n_batch = CTX
    cp.n_threads = 1
    # F32 KV cache: the default F16 cache rounds k and v (differences of ~1e-2 in logits)
    cp.type_k = cp.type_v = 0  # GGML_TYPE_F32
    # and no flash attention, whose CPU kernel accumulates in F16
    cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
    ctx = L.llama_init_from_model(model, cp)
    n = len(TOKENS)
    batch = L.llama_batch_init(n, 0, 1)
    for i, t in enumerate(TOKENS):
        batch.token[i] = t
        batch.pos[i] = i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = 1
    batch.n_tokens = n
    if L.llama_decode(ctx, batch) != 0:
        raise RuntimeError("llama_decode failed")
    out = np.zeros((n, vocab))
    for i in range(n):
        p = L.llama_get_logits_ith(ctx, i)
        out[i] = np.ctypeslib.as_array(ctypes.cast(p, ctypes.POINTER(ctypes.c_float)), (vocab,))
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    pieces, scores, types = read_tok512(sys.argv[1])
    vocab = len(pieces)
    mats, vecs = make_weights(vocab)
    path = os.path.join(FIXTURES, "qwen2-tiny.gguf")
    write_gguf(path, mats, vecs, pieces, scores, types)
    W = {k: v.astype(np.float64) for k, v in {**mats, **vecs}.items()}
    ref = forward(W, TOKENS)
    write_logits(os.path.join(FIXTURES, "qwen2-tiny-logits.txt"), ref,
                 "numpy float64 reference forward pass (scripts/make_qwen2_fixture.py)")
    print(f"wrote {path} ({os.path.getsize(path)} bytes) and its reference logits")
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("llama_cpp not importable: skipped the llama.cpp logits")
        return
    lc = llamacpp_logits(path, vocab)
    diff = np.abs(lc - ref).max()
    print(f"llama.cpp vs numpy: max abs difference {diff:.3g} (logits up to {np.abs(ref).max():.3g})")
    if not diff < 1e-4:
        sys.exit("llama.cpp disagrees with the numpy reference")
    write_logits(os.path.join(FIXTURES, "qwen2-tiny-llamacpp.txt"), lc,
                 "llama.cpp 0.3.36 (llama-cpp-python) logits of qwen2-tiny.gguf")


if __name__ == "__main__":
    main()
