"""drafter.py: a layer-pruned, distilled drafter (device SLM) for SmolLM2-135M-Instruct.

Subcommands (train/make_drafter.sh runs them in order):
  vocab   - the draft vocabulary: the N tokens with the most teacher probability mass on the
            training data (frequency-ranked, as in FR-Spec), plus the chat template's special
            tokens; one id per line, for `uhlm convert --output-tokens` and --vocab below.
  select  - scores candidate layer subsets of the LLM, kept as they are (no training), on held-out
            self-generated text, by the distillation loss and top-1 agreement; writes the best.
  train   - initialises the drafter from those LLM layers and distils it on the teacher's
            top-K distributions (produced by uhlm's C engine, train/gen_teacher.c).
  export  - writes the drafter as a GGUF `llama` file: the LLM's Q8_0 token embedding (also the
            tied output matrix) copied byte for byte, the trained layers quantized, the LLM's
            tokenizer and chat template copied in.
  eval    - top-1 agreement and expected speculative acceptance against the teacher on held-out
            data, plus the held-out prompts as text for `uhlm run`.

With --vocab, the classifier scores only the draft vocabulary: its rows are the LLM's embedding
rows of those tokens (copied byte for byte on export, with uhlm.output_token_ids), every other
token gets probability 0, and the loss puts the teacher's mass outside the draft vocabulary into
the "rest" bucket. A 49,152-row head costs as much as 8 of SmolLM2's layers; a few thousand rows
leave that compute to layers. Verification stays exact whatever the draft distribution is.

Design: the drafter keeps the LLM's embedding, final norm and tied output matrix frozen
(shared with the LLM, as in Medusa/EAGLE-style drafters and in layer-skipping self-speculative
decoding), and a few of its transformer layers. Everything is seeded; torch runs on the CPU.

Pinned: Debian bookworm python3-torch 1.13.1+dfsg-4 (numpy 1.24.2), gguf==0.19.0.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import gguf
from gguf import GGMLQuantizationType as QT

T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


# ---------------------------------------------------------------- the LLM's weights

class LLM:
    """The teacher GGUF: hyperparameters, dequantized float32 weights, raw reader."""

    def __init__(self, path):
        self.path = path
        self.r = gguf.GGUFReader(path)
        f = {k: v for k, v in self.r.fields.items()}

        def get(key):
            return f[key].contents()

        assert get("general.architecture") == "llama", f"{path}: not a llama GGUF"
        self.n_layers = int(get("llama.block_count"))
        self.dim = int(get("llama.embedding_length"))
        self.hidden = int(get("llama.feed_forward_length"))
        self.n_heads = int(get("llama.attention.head_count"))
        self.n_kv = int(get("llama.attention.head_count_kv"))
        self.theta = float(get("llama.rope.freq_base"))
        self.eps = float(get("llama.attention.layer_norm_rms_epsilon"))
        self.head_dim = self.dim // self.n_heads
        self.tensors = {t.name: t for t in self.r.tensors}
        assert "output.weight" not in self.tensors, "expects tied embeddings"

    def weight(self, name):
        t = self.tensors[name]
        a = gguf.quants.dequantize(t.data, t.tensor_type)
        return np.ascontiguousarray(a, dtype=np.float32)

    def layer(self, i):
        names = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate",
                 "ffn_down", "ffn_up"]
        return {n: self.weight(f"blk.{i}.{n}.weight") for n in names}


# ---------------------------------------------------------------- the model (uhlm's forward pass)

class Block(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.p = torch.nn.ParameterDict({k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in w.items()})


class Drafter(torch.nn.Module):
    """A llama stack as uhlm runs it: RMSNorm, RoPE on adjacent pairs (the GGUF `llama` layout),
    grouped-query attention, SwiGLU, final RMSNorm and the tied output matrix."""

    def __init__(self, llm, layer_ids, embd, out_norm, head_ids=None):
        super().__init__()
        self.cfg = dict(dim=llm.dim, n_heads=llm.n_heads, n_kv=llm.n_kv, head_dim=llm.head_dim,
                        theta=llm.theta, eps=llm.eps)
        self.layer_ids = list(layer_ids)
        self.blocks = torch.nn.ModuleList([Block(llm.layer(i)) for i in layer_ids])
        self.register_buffer("embd", embd, persistent=False)  # frozen, shared with the LLM
        self.out_norm = torch.nn.Parameter(torch.from_numpy(out_norm.copy()), requires_grad=False)
        # the classifier: the whole embedding (tied), or the draft vocabulary's rows of it
        self.head_ids = None if head_ids is None else torch.as_tensor(head_ids, dtype=torch.long)
        self.register_buffer("head", embd if head_ids is None else embd[self.head_ids].clone(),
                             persistent=False)

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg["eps"]) * w

    def rope_tab(self, T):
        hd = self.cfg["head_dim"]
        i = torch.arange(0, hd, 2, dtype=torch.float32)
        freq = 1.0 / (self.cfg["theta"] ** (i / hd))
        ang = torch.arange(T, dtype=torch.float32)[:, None] * freq[None, :]
        return torch.cos(ang), torch.sin(ang)

    @staticmethod
    def rope(x, cos, sin):  # x: B T H hd, pairs (2i, 2i+1)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        c, s = cos[None, :, None, :], sin[None, :, None, :]
        return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)

    def hidden(self, tok):
        B, T = tok.shape
        H, KV, hd = self.cfg["n_heads"], self.cfg["n_kv"], self.cfg["head_dim"]
        cos, sin = self.rope_tab(T)
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = self.embd[tok]
        for b in self.blocks:
            p = b.p
            h = self.rms(x, p["attn_norm"])
            q = (h @ p["attn_q"].T).view(B, T, H, hd)
            k = (h @ p["attn_k"].T).view(B, T, KV, hd)
            v = (h @ p["attn_v"].T).view(B, T, KV, hd)
            q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
            rep = H // KV  # query head h reads key/value head h // rep
            k = k.repeat_interleave(rep, dim=2)
            v = v.repeat_interleave(rep, dim=2)
            att = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(hd) + mask
            o = torch.einsum("bhts,bshd->bthd", att.softmax(-1), v).reshape(B, T, H * hd)
            x = x + o @ p["attn_output"].T
            h = self.rms(x, p["ffn_norm"])
            x = x + (F.silu(h @ p["ffn_gate"].T) * (h @ p["ffn_up"].T)) @ p["ffn_down"].T
        return self.rms(x, self.out_norm)

    def forward(self, tok):
        """Logits over the classifier's rows: the vocabulary, or the draft vocabulary's tokens
        in head_ids order."""
        return self.hidden(tok) @ self.head.T


# ---------------------------------------------------------------- teacher data (gen_teacher.c)

def read_shard(path):
    out = []
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:8] != b"UHLMTCH1":
        sys.exit(f"{path}: not a gen_teacher file")
    (K,) = struct.unpack_from("<i", buf, 8)
    off = 12
    rec = np.dtype([("ids", "<i4", (K,)), ("lg", "<f4", (K,)), ("lse", "<f4")])
    while off + 12 <= len(buf):
        idx, T, pe = struct.unpack_from("<iii", buf, off)
        if off + 12 + 4 * T + rec.itemsize * (T - 1) > len(buf):
            break  # a file still being written ends in a partial sample
        off += 12
        tok = np.frombuffer(buf, "<i4", T, off)
        off += 4 * T
        r = np.frombuffer(buf, rec, T - 1, off)
        off += rec.itemsize * (T - 1)
        out.append(dict(index=idx, prompt_end=pe, tok=tok.copy(), ids=r["ids"].copy(),
                        lg=r["lg"].copy(), lse=r["lse"].copy()))
    return K, out


def read_data(paths):
    samples = []
    for p in paths:
        samples += read_shard(p)[1]
    samples.sort(key=lambda s: s["index"])
    return samples


def batches(samples, max_tokens, rng=None):
    """Groups samples of similar length into batches of at most max_tokens padded tokens."""
    order = sorted(range(len(samples)), key=lambda i: len(samples[i]["tok"]))
    groups, cur, cur_max = [], [], 0
    for i in order:
        T = len(samples[i]["tok"])
        if cur and max(cur_max, T) * (len(cur) + 1) > max_tokens:
            groups.append(cur)
            cur, cur_max = [], 0
        cur.append(i)
        cur_max = max(cur_max, T)
    if cur:
        groups.append(cur)
    if rng is not None:
        rng.shuffle(groups)
    return groups


def collate(samples, group, answer_only=False):
    T = max(len(samples[i]["tok"]) for i in group)
    B, K = len(group), samples[group[0]]["ids"].shape[1]
    tok = np.zeros((B, T), np.int64)
    ids = np.zeros((B, T - 1, K), np.int64)
    lg = np.zeros((B, T - 1, K), np.float32)
    lse = np.zeros((B, T - 1), np.float32)
    m = np.zeros((B, T - 1), np.float32)
    for b, i in enumerate(group):
        s = samples[i]
        n = len(s["tok"])
        tok[b, :n] = s["tok"]
        ids[b, :n - 1] = s["ids"]
        lg[b, :n - 1] = s["lg"]
        lse[b, :n - 1] = s["lse"]
        # position t predicts token t+1: answer positions start one before prompt_end
        m[b, (s["prompt_end"] - 1 if answer_only else 0):n - 1] = 1
    return (torch.from_numpy(tok), torch.from_numpy(ids), torch.from_numpy(lg), torch.from_numpy(lse),
            torch.from_numpy(m))


def kd_terms(logits, ids, lg, lse, col=None):
    """Per position: KL(p || q) on the K+1 buckets (the teacher's top-K tokens, everything else),
    which is exact for the top-K and a lower bound of the full KL; student top-1 hits of the
    teacher's top-1; and sum_k min(p_k, q_k), the top-K part of the speculative acceptance
    probability 1 - TV(p, q) at temperature 1.

    col maps a vocabulary id to its classifier column (-1: not in the draft vocabulary), for a
    draft-vocabulary head: a top-K token outside it has q = 0, so its teacher mass joins the
    "rest" bucket (the KL of the coarser partition, still a lower bound of the full KL)."""
    ls = logits.float().log_softmax(-1)[:, :-1]
    lp = lg - lse[..., None]
    p = lp.exp()
    if col is None:
        lq = ls.gather(-1, ids)
        inside = torch.ones_like(p)
        top_id = ls.argmax(-1)
    else:
        c = col[ids]
        inside = (c >= 0).float()
        lq = ls.gather(-1, c.clamp_min(0))
        top_id = col_ids(col)[ls.argmax(-1)]
    q = lq.exp() * inside
    p_in = p * inside
    p_rest = (1 - p_in.sum(-1)).clamp_min(1e-12)
    q_rest = (1 - q.sum(-1)).clamp_min(1e-12)
    kl = (p_in * (lp - lq)).sum(-1) + p_rest * (p_rest.log() - q_rest.log())
    top1 = (top_id == ids[..., 0]).float()
    acc = torch.minimum(p_in, q).sum(-1)  # a lower bound: the tail's overlap is not known
    acc_hi = acc + torch.minimum(p_rest, q_rest)  # an upper bound: the tail overlaps at most this
    return kl, top1, (acc, acc_hi)


def col_map(head_ids, n_vocab):
    """vocabulary id -> classifier column, -1 outside the draft vocabulary; None for a full head."""
    if head_ids is None:
        return None
    col = torch.full((n_vocab,), -1, dtype=torch.long)
    col[torch.as_tensor(head_ids, dtype=torch.long)] = torch.arange(len(head_ids))
    return col


def col_ids(col):
    """The inverse of col_map: column -> vocabulary id."""
    ids = torch.empty(int((col >= 0).sum()), dtype=torch.long)
    ids[col[col >= 0]] = torch.nonzero(col >= 0).flatten()
    return ids


def evaluate(model, samples, max_tokens=4096, answer_only=True):
    tot = dict(kl=0.0, top1=0.0, acc=0.0, acc_hi=0.0, n=0.0)
    col = col_map(model.head_ids, model.embd.shape[0])
    with torch.no_grad():
        for g in batches(samples, max_tokens):
            tok, ids, lg, lse, m = collate(samples, g, answer_only)
            kl, top1, (acc, acc_hi) = kd_terms(model(tok), ids, lg, lse, col)
            tot["acc_hi"] += float((acc_hi * m).sum())
            tot["kl"] += float((kl * m).sum())
            tot["top1"] += float((top1 * m).sum())
            tot["acc"] += float((acc * m).sum())
            tot["n"] += float(m.sum())
    n = max(tot["n"], 1)
    return dict(kl=tot["kl"] / n, top1=tot["top1"] / n, accept_lo=tot["acc"] / n, accept_hi=tot["acc_hi"] / n, positions=int(tot["n"]))


def load_base(llm):
    embd = torch.from_numpy(llm.weight("token_embd.weight"))
    out_norm = llm.weight("output_norm.weight")
    return embd, out_norm


# ---------------------------------------------------------------- subcommands

def read_vocab(path):
    """A draft vocabulary file (one id per line, '#' comments), as sorted ids; None for no path."""
    if not path:
        return None
    ids = sorted({int(t) for line in open(path) for t in line.split("#", 1)[0].split()})
    if not ids:
        sys.exit(f"{path}: no token ids")
    return ids


def special_ids(llm):
    """The vocabulary's control tokens (type 3: <|im_start|>, <|im_end|>, <|endoftext|>, ...):
    a drafter must be able to end a turn."""
    f = llm.r.fields.get("tokenizer.ggml.token_type")
    if f is None:
        return []
    types = [int(f.parts[i][0]) for i in f.data]
    return [i for i, t in enumerate(types) if t == 3]


def cmd_vocab(a):
    llm = LLM(a.llm)
    n_vocab = llm.tensors["token_embd.weight"].shape[1]
    mass = np.zeros(n_vocab)
    npos = 0
    for path in a.data:
        for s in read_shard(path)[1]:
            p = np.exp(s["lg"] - s["lse"][:, None])
            np.add.at(mass, s["ids"].ravel(), p.ravel())
            npos += len(p)
    spec = special_ids(llm)
    order = [int(i) for i in np.argsort(-mass, kind="stable") if int(i) not in set(spec)]
    ids = sorted(set(spec) | set(order[: max(0, a.size - len(spec))]))
    covered = mass[ids].sum() / max(mass.sum(), 1e-30)
    with open(a.out, "w") as f:
        f.write(f"# draft vocabulary: {len(ids)} of {n_vocab} tokens, the most teacher probability "
                f"mass over {npos} positions ({covered:.4f} of the top-K mass) plus {len(spec)} "
                f"control tokens\n")
        for i in ids:
            f.write(f"{i}\n")
    log(f"vocab: {len(ids)} tokens cover {covered:.4f} of the teacher's top-K mass on the training "
        f"data; wrote {a.out}")


def cmd_select(a):
    llm = LLM(a.llm)
    embd, out_norm = load_base(llm)
    dev = read_data(a.data)[: a.n_samples]
    log(f"select: {len(dev)} held-out samples, {sum(len(s['tok']) for s in dev)} tokens")
    L, N = a.layers, llm.n_layers
    # Candidates from the layer-pruning literature: the first layers (which build the token
    # representation) plus the last (which maps into the output space), spread-out subsets, and
    # plain prefixes/suffixes for reference.
    cands = {tuple(range(L)), tuple(range(N - L, N)), tuple(list(range(L - 1)) + [N - 1]),
             tuple(list(range(L - 2)) + [N - 2, N - 1]), tuple([0] + list(range(N - L + 1, N))),
             tuple(int(round(i * (N - 1) / (L - 1))) for i in range(L)),
             tuple([0, 1] + list(range(N - (L - 2), N)))}
    cands |= {tuple(sorted(set([0, 1, N // 2, N - 1])))} if L == 4 else set()
    res = []
    for c in sorted(cands):
        if len(set(c)) != L:
            continue
        torch.manual_seed(0)
        m = Drafter(llm, c, embd, out_norm, read_vocab(a.vocab))
        r = evaluate(m, dev)
        r["layers"] = list(c)
        res.append(r)
        log(f"select: layers {list(c)}: KL {r['kl']:.3f} top-1 {r['top1']:.3f} accept in [{r['accept_lo']:.3f}, {r['accept_hi']:.3f}]")
    # speculative decoding needs acceptance (the overlap of the two distributions), not a small
    # KL: rank by its lower bound, then by top-1 agreement
    best = max(res, key=lambda r: (r["accept_lo"], r["top1"]))
    log(f"select: best {best['layers']}")
    with open(a.out, "w") as f:
        json.dump(dict(best=best["layers"], candidates=res), f, indent=1)


def cmd_train(a):
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    torch.set_num_threads(a.threads)
    llm = LLM(a.llm)
    embd, out_norm = load_base(llm)
    layers = json.load(open(a.select))["best"] if a.select else [int(x) for x in a.layer_ids.split(",")]
    train = read_data(a.data)
    dev = read_data(a.heldout)[: a.n_dev]
    ntok = sum(len(s["tok"]) for s in train)
    log(f"train: layers {layers}, {len(train)} samples, {ntok} tokens, {a.epochs} epochs, threads {a.threads}")
    head_ids = read_vocab(a.vocab)
    model = Drafter(llm, layers, embd, out_norm, head_ids)
    col = col_map(head_ids, embd.shape[0])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.98), weight_decay=0.0)
    r = evaluate(model, dev)
    log(f"train: before: held-out answer KL {r['kl']:.3f} top-1 {r['top1']:.3f} accept in [{r['accept_lo']:.3f}, {r['accept_hi']:.3f}]")
    groups_per_epoch = len(batches(train, a.batch_tokens))
    total = groups_per_epoch * a.epochs
    if a.max_steps:
        total = min(total, a.max_steps)
    step, seen, t_start = 0, 0, time.time()
    for ep in range(a.epochs):
        for g in batches(train, a.batch_tokens, rng):
            if step == total:
                break
            lr = a.lr * min(1.0, (step + 1) / a.warmup) * 0.5 * (1 + math.cos(math.pi * step / total))
            for pg in opt.param_groups:
                pg["lr"] = lr
            tok, ids, lg, lse, m = collate(train, g)
            kl, top1, _ = kd_terms(model(tok), ids, lg, lse, col)
            loss = (kl * m).sum() / m.sum()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            seen += int(m.sum())
            if step % a.log_every == 0 or step == total:
                el = time.time() - t_start
                log(f"train: epoch {ep} step {step}/{total} loss {loss.item():.3f} "
                    f"top-1 {float((top1 * m).sum() / m.sum()):.3f} lr {lr:.2e} {seen / el:.0f} pos/s")
        r = evaluate(model, dev)
        log(f"train: epoch {ep} done: held-out answer KL {r['kl']:.3f} top-1 {r['top1']:.3f} "
            f"accept in [{r['accept_lo']:.3f}, {r['accept_hi']:.3f}]")
        torch.save(dict(layers=layers, head_ids=head_ids, state={k: v for k, v in model.state_dict().items()}), a.out)
    log(f"train: wrote {a.out}")


def cmd_export(a):
    llm = LLM(a.llm)
    embd, out_norm = load_base(llm)
    ck = torch.load(a.ckpt)
    layers = ck["layers"]
    head_ids = ck.get("head_ids")
    model = Drafter(llm, layers, embd, out_norm, head_ids)
    model.load_state_dict(ck["state"], strict=False)
    qtype = {"q8_0": QT.Q8_0, "q5_1": QT.Q5_1, "q5_0": QT.Q5_0, "q4_1": QT.Q4_1, "f32": QT.F32}[a.type]
    w = gguf.GGUFWriter(a.out, "llama")
    for name, fld in llm.r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        val = fld.contents()
        if name == "llama.block_count":
            val = len(layers)
        elif name == "general.name":
            val = f"SmolLM2-135M-Instruct drafter ({len(layers)} layers {layers}, distilled)"
        elif name == "general.file_type":
            val = {"q8_0": 7, "q5_1": 9, "q5_0": 8, "q4_1": 3, "f32": 0}[a.type]
        vt = fld.types[0]
        w.add_key_value(name, val, vt, sub_type=fld.types[-1] if vt == gguf.GGUFValueType.ARRAY else None)
    w.add_string("uhlm.drafter.layers", ",".join(str(i) for i in layers))
    te = llm.tensors["token_embd.weight"]
    if a.embd_type == "copy":
        w.add_tensor("token_embd.weight", np.asarray(te.data), raw_dtype=te.tensor_type)  # bytes as in the LLM
    else:
        # the input embedding only (one row read per token): a smaller type keeps the file under
        # the 50 MB the repository allows; the classifier rows below stay the LLM's bytes
        et = {"q8_0": QT.Q8_0, "q5_0": QT.Q5_0, "q4_0": QT.Q4_0}[a.embd_type]
        if head_ids is None:
            sys.exit("export: --embd-type needs a draft vocabulary (--vocab at training): with the "
                     "tied classifier the embedding is also the output matrix")
        w.add_tensor("token_embd.weight", gguf.quants.quantize(embd.numpy(), et), raw_dtype=et)
    if head_ids is not None:
        # the draft vocabulary's classifier: the LLM's embedding rows of those tokens, bytes as in
        # the LLM (a row of a block type is whole blocks)
        w.add_array("uhlm.output_token_ids", [int(i) for i in head_ids])
        w.add_tensor("output.weight", np.ascontiguousarray(np.asarray(te.data)[np.asarray(head_ids)]),
                     raw_dtype=te.tensor_type)
    for j, b in enumerate(model.blocks):
        for n, p in b.p.items():
            v = p.detach().numpy().astype(np.float32)
            if v.ndim == 1 or qtype == QT.F32:
                w.add_tensor(f"blk.{j}.{n}.weight", v)
            else:
                w.add_tensor(f"blk.{j}.{n}.weight", gguf.quants.quantize(v, qtype), raw_dtype=qtype)
    w.add_tensor("output_norm.weight", out_norm)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    log(f"export: wrote {a.out} ({os.path.getsize(a.out) / 2**20:.1f} MiB)")


def gpt2_decoder():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def cmd_eval(a):
    torch.set_num_threads(a.threads)
    llm = LLM(a.llm)
    embd, out_norm = load_base(llm)
    dev = read_data(a.heldout)
    res = {}
    if a.ckpt:
        ck = torch.load(a.ckpt)
        hid = ck.get("head_ids")
        model = Drafter(llm, ck["layers"], embd, out_norm, hid)
        model.load_state_dict(ck["state"], strict=False)
        res["trained"] = evaluate(model, dev)
        res["pruned_untrained"] = evaluate(Drafter(llm, ck["layers"], embd, out_norm, hid), dev)
        log(f"eval: {res}")
    if a.prompts:
        toks = llm.r.fields["tokenizer.ggml.tokens"]
        vocab = [bytes(toks.parts[i]).decode("utf-8") for i in toks.data]
        dec = gpt2_decoder()
        with open(a.prompts, "w") as f:
            for s in dev[: a.n_prompts]:
                # the user turn: between "<|im_start|>user\n" and the first "<|im_end|>"
                text = b"".join(bytes(dec[ch] for ch in vocab[t]) for t in s["tok"][: s["prompt_end"]])
                text = text.decode("utf-8", "replace").split("<|im_start|>user\n", 1)[-1]
                text = text.split("<|im_end|>", 1)[0]
                f.write(json.dumps(dict(index=s["index"], instruction=text.strip())) + "\n")
        log(f"eval: wrote {a.n_prompts} held-out prompts to {a.prompts}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


def cmd_accept(a):
    """The hybrid acceptance rate: `uhlm run --mode hlm` (every draft verified by speculative
    sampling) over held-out self-generated prompts, as the chat user turn."""
    import subprocess
    prompts = [json.loads(l) for l in open(a.prompts)][: a.n_prompts]
    tot = dict(transmitted=0, accepted=0, accepted_outright=0, beta=0.0, generated=0)
    for i, pr in enumerate(prompts):
        cmd = [a.uhlm, "run", "-m", a.slm, "--llm", a.llm, "--chat", "-p", pr["instruction"], "--mode", "hlm",
               "-n", str(a.n), "--seed", str(a.seed + i), "-t", str(a.threads), "--json"]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        tot["transmitted"] += r["transmitted_tokens"]
        tot["accepted"] += r["accepted"]
        tot["accepted_outright"] += r["accepted_outright"]
        tot["generated"] += r["generated_tokens"]
        tot["beta"] += (r["mean_beta"] or 0) * r["transmitted_tokens"]
        log(f"accept: prompt {i}: {r['accepted']}/{r['transmitted_tokens']} accepted")
    n = max(tot["transmitted"], 1)
    res = dict(prompts=len(prompts), drafts=tot["transmitted"], acceptance_rate=tot["accepted"] / n,
               accepted_outright_rate=tot["accepted_outright"] / n, mean_one_minus_beta=1 - tot["beta"] / n)
    log(f"accept: {res}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("vocab")
    d.add_argument("--llm", required=True)
    d.add_argument("--data", nargs="+", required=True)
    d.add_argument("--size", type=int, required=True)
    d.add_argument("--out", required=True)
    s = sub.add_parser("select")
    s.add_argument("--vocab")
    s.add_argument("--llm", required=True)
    s.add_argument("--data", nargs="+", required=True)
    s.add_argument("--layers", type=int, default=4)
    s.add_argument("--n-samples", type=int, default=40)
    s.add_argument("--out", required=True)
    t = sub.add_parser("train")
    t.add_argument("--vocab")
    t.add_argument("--llm", required=True)
    t.add_argument("--data", nargs="+", required=True)
    t.add_argument("--heldout", nargs="+", required=True)
    t.add_argument("--select")
    t.add_argument("--layer-ids")
    t.add_argument("--n-dev", type=int, default=20)
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--warmup", type=int, default=20)
    t.add_argument("--batch-tokens", type=int, default=2048)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--seed", type=int, default=1234)
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (smoke runs)")
    t.add_argument("--out", required=True)
    e = sub.add_parser("export")
    e.add_argument("--llm", required=True)
    e.add_argument("--ckpt", required=True)
    e.add_argument("--type", default="q8_0", choices=["q8_0", "q5_1", "q5_0", "q4_1", "f32"])
    e.add_argument("--embd-type", default="copy", choices=["copy", "q8_0", "q5_0", "q4_0"],
                   help="input embedding: the LLM's bytes (copy) or re-quantized")
    e.add_argument("--out", required=True)
    v = sub.add_parser("eval")
    v.add_argument("--llm", required=True)
    v.add_argument("--heldout", nargs="+", required=True)
    v.add_argument("--ckpt")
    v.add_argument("--threads", type=int, default=1)
    v.add_argument("--prompts")
    v.add_argument("--n-prompts", type=int, default=20)
    v.add_argument("--out")
    c = sub.add_parser("accept")
    c.add_argument("--uhlm", required=True)
    c.add_argument("--slm", required=True)
    c.add_argument("--llm", required=True)
    c.add_argument("--prompts", required=True)
    c.add_argument("--n-prompts", type=int, default=20)
    c.add_argument("-n", type=int, default=64)
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(getattr(a, "threads", 1))
    dict(vocab=cmd_vocab, select=cmd_select, train=cmd_train, export=cmd_export, eval=cmd_eval, accept=cmd_accept)[a.cmd](a)


if __name__ == "__main__":
    main()
