#!/usr/bin/env python3
"""make_qwen2_fixture.py: tiny random GGUFs of the architectures uhlm runs, with expected logits,
for tests/test_arch.c.

Run with the oracle venv (python 3.11, numpy, gguf==0.19.0; llama-cpp-python==0.3.36 optional):

    out/oracle/venv/bin/python scripts/make_qwen2_fixture.py [--keep DIR] ../shared/models/tok512.bin

Builds, deterministically (splitmix64 streams seeded 1234 and 4321, see make_weights), two
models with tok512's 512-piece SentencePiece vocabulary (tokenizer.ggml.model = llama, so that
they load everywhere), all tensors F32 (llama.cpp's CPU matmul rounds activations to F16 for F16
weights), context 256:
  qwen2-tiny.gguf     general.architecture = qwen2: dim 64, 2 layers, 4 heads with 2 key/value
                      heads (GQA, head_dim 16), FFN 96, rope base 10000 with linear scaling
                      factor 2, rms eps 1e-6, q/k/v biases, no output.weight (tied to
                      token_embd), a ChatML chat template;
  llama-kl-tiny.gguf  general.architecture = llama with attention.key_length 24 (not dim /
                      heads = 16: the query width is 96), 4 heads over 1 key/value head, FFN 64,
                      rope base 500000 (NORM pairs), a separate output.weight.
Model files are never committed: the GGUFs go to a temporary directory (or DIR with --keep),
and tests/arch_fixture.h rebuilds the same files byte for byte at test time with uhlm's GGUF
writer (this script prints their sha256; the logits files name it). Committed, for each NAME:
  tests/fixtures/NAME-logits.txt    "# tokens: ..." then one line of 512 logits per position,
                                    from the numpy float64 reference forward pass below;
  tests/fixtures/NAME-llamacpp.txt  the same positions' logits from llama.cpp itself (through
                                    llama-cpp-python's low-level API), when llama_cpp imports;
                                    the script checks them against numpy (max abs < 1e-4, with
                                    an F32 KV cache and flash attention off: llama.cpp's
                                    defaults round through F16 and differ by ~1e-2).
Changing anything here that reaches the file (keys, order, shapes, weights) needs the same
change in tests/arch_fixture.h.

The reference implements what llama.cpp's llama and qwen2 graphs compute (src/models/llama.cpp,
qwen2.cpp): RMS norm, q/k/v projections (+ biases), RoPE (NEOX for qwen2: element i rotates
with i + head_dim/2; NORM for llama: 2i with 2i+1; angle pos * freq_scale * base^(-2i/head_dim)),
causal grouped-query attention with 1/sqrt(head_dim), SwiGLU FFN, final norm, classifier.
"""
import hashlib
import os
import struct
import sys
import tempfile

import numpy as np
import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures")

class Cfg:
    def __init__(self, **kw):
        self.__dict__.update(kw)


# qwen2: GQA 4/2, q/k/v biases, NEOX rope with linear scaling, tied classifier, chat template
QWEN2 = Cfg(name="qwen2-tiny", arch="qwen2", dim=64, layers=2, heads=4, kv_heads=2, hd=16,
            ffn=96, ctx=256, base=10000.0, scale=2.0, eps=1e-6, neox=True, bias=True,
            tied=True, key_length=False, seed=1234)
# llama with attention.key_length 24 != dim / heads (q width 96), GQA 4/1, NORM rope, no
# scaling, a separate output.weight
LLAMA_KL = Cfg(name="llama-kl-tiny", arch="llama", dim=64, layers=2, heads=4, kv_heads=1, hd=24,
               ffn=64, ctx=256, base=500000.0, scale=1.0, eps=1e-5, neox=False, bias=False,
               tied=False, key_length=True, seed=4321)
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


def rmsnorm(C, x, w):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + C.eps) * w


def rope(C, x, pos):
    """x: [heads, hd] at position pos. NEOX rotates (i, i + hd/2), NORM (2i, 2i + 1), both by
    pos * freq_scale * base^(-2i/hd)."""
    half = C.hd // 2
    i = np.arange(half, dtype=np.float64)
    theta = pos * (1.0 / C.scale) * C.base ** (-2.0 * i / C.hd)
    c, s = np.cos(theta), np.sin(theta)
    if C.neox:
        a, b = x[:, :half], x[:, half:]
        return np.concatenate([a * c - b * s, a * s + b * c], axis=1)
    a, b = x[:, 0::2], x[:, 1::2]
    out = np.empty_like(x)
    out[:, 0::2] = a * c - b * s
    out[:, 1::2] = a * s + b * c
    return out


def forward(C, W, tokens):
    emb = W["token_embd.weight"]
    T = len(tokens)
    x = emb[tokens].copy()
    grp = C.heads // C.kv_heads
    for l in range(C.layers):
        p = lambda n: W[f"blk.{l}.{n}"]
        bias = lambda n: W[f"blk.{l}.{n}"] if C.bias else 0.0
        h = rmsnorm(C, x, p("attn_norm.weight"))
        q = h @ p("attn_q.weight").T + bias("attn_q.bias")
        k = h @ p("attn_k.weight").T + bias("attn_k.bias")
        v = h @ p("attn_v.weight").T + bias("attn_v.bias")
        q = np.stack([rope(C, q[t].reshape(C.heads, C.hd), t) for t in range(T)])
        k = np.stack([rope(C, k[t].reshape(C.kv_heads, C.hd), t) for t in range(T)])
        v = v.reshape(T, C.kv_heads, C.hd)
        out = np.zeros((T, C.heads, C.hd))
        for hh in range(C.heads):
            kh = hh // grp
            sc = q[:, hh, :] @ k[:, kh, :].T / np.sqrt(C.hd)
            sc = np.where(np.tril(np.ones((T, T))) > 0, sc, -np.inf)
            sc = np.exp(sc - sc.max(axis=1, keepdims=True))
            sc /= sc.sum(axis=1, keepdims=True)
            out[:, hh, :] = sc @ v[:, kh, :]
        x = x + out.reshape(T, C.heads * C.hd) @ p("attn_output.weight").T
        h = rmsnorm(C, x, p("ffn_norm.weight"))
        g = h @ p("ffn_gate.weight").T
        u = h @ p("ffn_up.weight").T
        x = x + ((g / (1 + np.exp(-g))) * u) @ p("ffn_down.weight").T
    out_w = emb if C.tied else W["output.weight"]
    return rmsnorm(C, x, W["output_norm.weight"]) @ out_w.T


# The weights come from splitmix64 so that tests/arch_fixture.h can rebuild the same file
# bit for bit in C: one generator per model, seeded with C.seed, drawn in tensor order (the order
# of tensor_specs, which is also the file's order), row-major within a tensor. Draw i (from 1)
# is z = mix(seed + i * GOLDEN) mod 2^64; its top 24 bits k = (z >> 40) - 2^23 give the value
# mean + a * k / 2^23 in [mean - a, mean + a). Every a is a short dyadic fraction, so that value
# is exact in float64 (no rounding, no fused multiply-add can change it) and the one rounding
# is float64 -> float32 to nearest-even, the same in numpy and C.
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB


def splitmix64(seed, first, n):
    """Draws first+1 .. first+n of the splitmix64 stream seeded with seed (uint64 array)."""
    i = np.arange(first + 1, first + n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + i * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


def tensor_specs(C, vocab):
    """(name, numpy shape, mean, a) in file order; tests/arch_fixture.h lists the same."""
    D, QD, KVD = C.dim, C.heads * C.hd, C.kv_heads * C.hd
    specs = [("token_embd.weight", (vocab, D), 0.0, 0.75),
             ("output_norm.weight", (D,), 1.0, 0.1875)]
    if not C.tied:
        specs.append(("output.weight", (vocab, D), 0.0, 0.5))
    for l in range(C.layers):
        b = f"blk.{l}."
        specs.append((b + "attn_norm.weight", (D,), 1.0, 0.1875))
        specs.append((b + "attn_q.weight", (QD, D), 0.0, 0.375))
        if C.bias:
            specs.append((b + "attn_q.bias", (QD,), 0.0, 0.5))
        specs.append((b + "attn_k.weight", (KVD, D), 0.0, 0.375))
        if C.bias:
            specs.append((b + "attn_k.bias", (KVD,), 0.0, 0.5))
        specs.append((b + "attn_v.weight", (KVD, D), 0.0, 0.375))
        if C.bias:
            specs.append((b + "attn_v.bias", (KVD,), 0.0, 0.5))
        specs += [(b + "attn_output.weight", (D, QD), 0.0, 0.25),
                  (b + "ffn_norm.weight", (D,), 1.0, 0.1875),
                  (b + "ffn_gate.weight", (C.ffn, D), 0.0, 0.25),
                  (b + "ffn_up.weight", (C.ffn, D), 0.0, 0.25),
                  (b + "ffn_down.weight", (D, C.ffn), 0.0, 0.25)]
    return specs


def make_weights(C, vocab):
    """{name: float32 array} in file order (dicts keep insertion order)."""
    W, drawn = {}, 0
    for name, shape, mean, a in tensor_specs(C, vocab):
        n = int(np.prod(shape))
        k = (splitmix64(C.seed, drawn, n) >> np.uint64(40)).astype(np.int64) - (1 << 23)
        W[name] = (mean + a * (k.astype(np.float64) / float(1 << 23))).astype(np.float32).reshape(shape)
        drawn += n
    return W


def write_gguf(C, path, W, pieces, scores, types):
    w = gguf.GGUFWriter(path, C.arch)
    w.add_name(f"{C.name}-random (uhlm test fixture)")
    w.add_context_length(C.ctx)
    w.add_embedding_length(C.dim)
    w.add_block_count(C.layers)
    w.add_feed_forward_length(C.ffn)
    w.add_head_count(C.heads)
    w.add_head_count_kv(C.kv_heads)
    if C.key_length:
        w.add_key_length(C.hd)
        w.add_value_length(C.hd)
    w.add_rope_freq_base(C.base)
    if C.scale != 1.0:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(C.scale)
    w.add_layer_norm_rms_eps(C.eps)
    w.add_file_type(0)  # all F32
    w.add_tokenizer_model("llama")
    w.add_token_list(pieces)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    if C.tied:
        w.add_chat_template(
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
            "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    for name, data in W.items():
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_logits(path, logits, what):
    with open(path, "w") as f:
        f.write(f"# {what}\n# tokens: {' '.join(map(str, TOKENS))}\n")
        for row in logits:
            f.write(" ".join(f"{x:.7g}" for x in row) + "\n")


def llamacpp_logits(C, path, vocab):
    import ctypes
    import llama_cpp as L

    L.llama_backend_init()
    mp = L.llama_model_default_params()
    model = L.llama_model_load_from_file(path.encode(), mp)
    if not model:
        raise RuntimeError("llama.cpp could not load " + path)
    cp = L.llama_context_default_params()
    cp.n_ctx = C.ctx
    cp.n_batch = C.ctx
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


def make(C, pieces, scores, types, have_llamacpp, gguf_dir):
    vocab = len(pieces)
    W = make_weights(C, vocab)
    path = os.path.join(gguf_dir, C.name + ".gguf")
    write_gguf(C, path, W, pieces, scores, types)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    ref = forward(C, {k: v.astype(np.float64) for k, v in W.items()}, TOKENS)
    write_logits(os.path.join(FIXTURES, C.name + "-logits.txt"), ref,
                 f"numpy float64 reference forward pass (scripts/make_qwen2_fixture.py) of "
                 f"{C.name}.gguf, sha256 {digest}")
    print(f"{C.name}: wrote its reference logits; {path}: {os.path.getsize(path)} bytes, "
          f"sha256 {digest}")
    if not have_llamacpp:
        print("llama_cpp not importable: skipped the llama.cpp logits")
        return
    lc = llamacpp_logits(C, path, vocab)
    diff = np.abs(lc - ref).max()
    print(f"{C.name}: llama.cpp vs numpy: max abs difference {diff:.3g} "
          f"(logits up to {np.abs(ref).max():.3g})")
    if not diff < 1e-4:
        sys.exit("llama.cpp disagrees with the numpy reference")
    write_logits(os.path.join(FIXTURES, C.name + "-llamacpp.txt"), lc,
                 f"llama.cpp 0.3.36 (llama-cpp-python) logits of {C.name}.gguf, sha256 {digest}")


def main():
    args = sys.argv[1:]
    gguf_dir = None
    if len(args) == 3 and args[0] == "--keep":
        gguf_dir = args[1]
        args = args[2:]
    if len(args) != 1:
        sys.exit(__doc__)
    pieces, scores, types = read_tok512(args[0])
    try:
        import llama_cpp  # noqa: F401
        have = True
    except ImportError:
        have = False
    with tempfile.TemporaryDirectory(prefix="uhlm-arch-fixture-") as tmp:
        for C in (QWEN2, LLAMA_KL):
            make(C, pieces, scores, types, have, gguf_dir or tmp)


if __name__ == "__main__":
    main()
