#!/usr/bin/env python3
"""llamacpp_anchors.py: uhlm against llama.cpp, side by side, on the same GGUF files (the driver
behind bench/anchors.sh; run that, which takes the bench lock).

    out/oracle/venv/bin/python bench/llamacpp_anchors.py [--uhlm build/uhlm] [--pairs 5]
        [--threads 1,2] [--prompt 512] [--gen 128] [--files q4_1,q8_0,q4_k_m]
        [--dir /tmp/uhlm-anchors] [--out out/anchors.jsonl] [--models a.gguf,b.gguf]

Files: SmolLM2-135M-Instruct Q4_1 (as shipped), its Q8_0 re-quantization written by
`uhlm convert --type q8_0`, and its Q4_K_M re-quantization written by llama.cpp's own quantizer
(bench/llamacpp_quantize.py: llama_model_quantize with allow_requantize from the Q4_1 file; for
this model that is mostly Q5_0 with Q4_K/Q6_K on ffn_down, since K-quants need rows of 256).

--models replaces those files with any GGUF files (named by their base name), for instance the
random stories15M/110M shapes `uhlm convert --random-shape S --type T` writes (llama.cpp loads them).

For each file and thread count, PAIRS interleaved pairs (which side goes first alternates), each side
a fresh process: `uhlm bench -m F -t N --prompt P --gen G --reps 2 --jsonl` and
bench/llamacpp_bench.py with the same arguments (best of 2 reps inside a process, the first
paging the weights in). Each process is one JSON line in --out, tagged with the pair. The summary
gives per side the best and the median over pairs, the ratio uhlm / llama.cpp of the medians,
the per-pair ratios' min and median (ratio_pair_min, ratio_pair_median: the two sides of a pair ran
seconds apart, under the same load), and the fraction of the read bandwidth (weight bytes read per token x tokens/s / the read-sweep
bandwidth `uhlm bench` measured in the same pair on the same threads). Exits non-zero only if a
side could not run at all.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts", "oracle"))
import llamacpp_common as lc  # noqa: E402

ROOT = lc.ROOT
SRC = "SmolLM2-135M-Instruct.Q4_1.gguf"


def run_json(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return None, p.stderr.strip().splitlines()[-1:] or ["exit %d" % p.returncode]
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return None, ["no JSON on stdout"]
    return json.loads(lines[-1]), None


def weight_bytes_gguf(path):
    """Bytes of weights read per token: every tensor, except that an untied token_embd is only
    looked up one row per token (with tied embeddings it is the classifier, read whole)."""
    import gguf
    r = gguf.GGUFReader(path)
    names = {t.name for t in r.tensors}
    total = 0
    for t in r.tensors:
        if t.name == "token_embd.weight" and "output.weight" in names:
            continue
        total += int(t.n_bytes)
    return total


def prepare(a):
    os.makedirs(a.dir, exist_ok=True)
    if a.models:
        files = {}
        for m in a.models.split(","):
            path = m if os.path.exists(m) else lc.find_model(m)
            if not path:
                sys.exit(f"{m} not found")
            files[os.path.basename(m).removesuffix(".gguf")] = path
        return files
    src = lc.find_model(SRC)
    if not src:
        sys.exit(f"{SRC} not found ($UHLM_MODELS, ./models, ../shared/models, /work/main/models)")
    files = {}
    for name in a.files.split(","):
        if name == "q4_1":
            files[name] = src
            continue
        out = os.path.join(a.dir, f"SmolLM2-135M-Instruct.{name}.gguf")
        if name in ("q4_k_m", "q4_k_s"):
            cmd = [sys.executable, os.path.join(HERE, "llamacpp_quantize.py"), src, out,
                   "--ftype", name]
            who = "llama.cpp quantize"
        else:
            cmd = [a.uhlm, "convert", "-m", src, "--type", name, "-o", out]
            who = "uhlm convert"
        if not os.path.exists(out):
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                print(f"skip {name}: {who} failed: {p.stderr.strip()[-300:]}", file=sys.stderr)
                continue
        files[name] = out
        print(f"{name}: {out} ({who})", file=sys.stderr)
    return files


def summarise(rows, out):
    groups = {}
    for r in rows:
        groups.setdefault((r["file"], r["threads"]), {}).setdefault(r["side"], []).append(r)
    lines = []
    hdr = (f"{'file':8} {'thr':>3} {'phase':5} {'uhlm best':>10} {'uhlm med':>9} "
           f"{'llama best':>10} {'llama med':>9} {'ratio med':>9} {'pair min':>8} {'pair med':>8} "
           f"{'uhlm bw%':>8} {'llama bw%':>9}")
    lines.append(hdr)
    summary = []
    for (f, t), sides in sorted(groups.items()):
        u, l = sides.get("uhlm", []), sides.get("llama.cpp", [])
        for phase, key in (("pp", "prompt_tokens_per_s"), ("tg", "decode_tokens_per_s")):
            us = [r[key] for r in u]
            ls = [r[key] for r in l]
            s = {"file": f, "threads": t, "phase": phase, "pairs": min(len(us), len(ls))}
            byp = {}
            for r in u + l:
                byp.setdefault(r["pair"], {})[r["side"]] = r[key]
            pr = [p["uhlm"] / p["llama.cpp"] for p in byp.values() if len(p) == 2]
            if pr:
                s.update(ratio_pair_min=min(pr), ratio_pair_median=statistics.median(pr))
            if us:
                s.update(uhlm_best=max(us), uhlm_median=statistics.median(us))
            if ls:
                s.update(llama_best=max(ls), llama_median=statistics.median(ls))
            if us and ls:
                s["ratio_median"] = s["uhlm_median"] / s["llama_median"]
                s["ratio_best"] = s["uhlm_best"] / s["llama_best"]
            if phase == "tg":
                for side, rs, k in (("uhlm", u, "uhlm_bw_fraction"), ("llama", l,
                                                                      "llama_bw_fraction")):
                    fr = [r["weight_bytes_per_token"] * r[key] / r["read_bandwidth_bytes_per_s"]
                          for r in rs if r.get("read_bandwidth_bytes_per_s")]
                    if fr:
                        s[k] = statistics.median(fr)
            summary.append(s)

            def g(k, fmt):
                return format(s[k], fmt) if k in s else format("-", ">" + fmt.split(".")[0])
            lines.append(f"{f:8} {t:3d} {phase:5} {g('uhlm_best', '10.1f')} "
                         f"{g('uhlm_median', '9.1f')} {g('llama_best', '10.1f')} "
                         f"{g('llama_median', '9.1f')} {g('ratio_median', '9.2f')} "
                         f"{g('ratio_pair_min', '8.2f')} {g('ratio_pair_median', '8.2f')} "
                         f"{(format(100 * s['uhlm_bw_fraction'], '7.0f') + '%') if 'uhlm_bw_fraction' in s else '-':>8} "
                         f"{(format(100 * s['llama_bw_fraction'], '8.0f') + '%') if 'llama_bw_fraction' in s else '-':>9}")
    with open(out, "a", encoding="utf-8") as fo:
        for s in summary:
            fo.write(json.dumps({"summary": s}) + "\n")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uhlm", default=os.path.join(ROOT, "build", "uhlm"))
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--files", default="q4_1,q8_0,q4_k_m")
    ap.add_argument("--dir", default="/tmp/uhlm-anchors")
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "anchors.jsonl"))
    ap.add_argument("--models", default="", help="comma-separated GGUF files instead of --files")
    a = ap.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    print(lc.version_line(), file=sys.stderr)
    files = prepare(a)
    rows = []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    fo = open(a.out, "a", encoding="utf-8")
    uhlm_failed = llama_failed = 0
    for name, path in files.items():
        wbytes = weight_bytes_gguf(path)
        for t in [int(x) for x in a.threads.split(",")]:
            bw = None
            for pair in range(a.pairs):
                common = ["-m", path, "-t", str(t), "--prompt", str(a.prompt), "--gen",
                          str(a.gen), "--reps", "2"]
                # which side goes first alternates: llama.cpp on even pairs, uhlm on odd ones
                ll_first = None
                if pair % 2 == 0:
                    ll_first = run_json([sys.executable, os.path.join(HERE, "llamacpp_bench.py")]
                                        + common)
                u, err = run_json([a.uhlm, "bench", "--jsonl"] + common)
                if u is None:
                    print(f"{name} t={t}: uhlm bench failed: {err}", file=sys.stderr)
                    uhlm_failed += 1
                else:
                    bw = u.get("read_bandwidth_bytes_per_s", bw)
                    u.update(side="uhlm", file=name, pair=pair, run=stamp, load=os.getloadavg()[0],
                             weight_bytes_per_token=u["weight_bytes_per_token"])
                    rows.append(u)
                    fo.write(json.dumps(u) + "\n")
                if ll_first is not None:
                    ll, err = ll_first
                else:
                    ll, err = run_json([sys.executable, os.path.join(HERE, "llamacpp_bench.py")]
                                       + common)
                if ll is None:
                    print(f"{name} t={t}: llama.cpp failed: {err}", file=sys.stderr)
                    llama_failed += 1
                else:
                    # llama.cpp reads the same file: the same weight bytes per token; the
                    # bandwidth is the one uhlm bench measured in this pair (same threads)
                    ll.update(side="llama.cpp", file=name, pair=pair, run=stamp,
                              load=os.getloadavg()[0],
                              weight_bytes_per_token=(u or {}).get("weight_bytes_per_token",
                                                                   wbytes),
                              read_bandwidth_bytes_per_s=bw)
                    rows.append(ll)
                    fo.write(json.dumps(ll) + "\n")
                fo.flush()
                print(f"{name} t={t} pair {pair}: uhlm "
                      f"{'%.1f/%.1f' % (u['prompt_tokens_per_s'], u['decode_tokens_per_s']) if u else 'failed'}"
                      f", llama.cpp "
                      f"{'%.1f/%.1f' % (ll['prompt_tokens_per_s'], ll['decode_tokens_per_s']) if ll else 'failed'}"
                      " (pp/tg tok/s)", file=sys.stderr)
    fo.close()
    print(summarise(rows, a.out))
    total = len(files) * a.pairs * len(a.threads.split(","))
    if not rows or llama_failed == total or uhlm_failed == total:
        sys.exit(1)


if __name__ == "__main__":
    main()
