#!/usr/bin/env python3
"""Compares two output trees of scripts/eval_identity.sh file by file.

Timing fields are masked: in CSV and JSON throughput_tok_s, accounted_s, compute_s, slm_s,
unc_s, llm_s, speedup_vs_hlm and wall_seconds; in summary.md the wall time and the
throughput cells; in stderr the wall time; the --server port. Columns, keys, sentences and
files added later by design (tsr_expected, answers.jsonl, intervals.csv, the progress lines
on stderr) are dropped from both sides, so a tree from before them compares too. Prints each difference; exits 1 on any.
usage: scripts/eval_identity.py A B
"""
import csv, io, json, os, re, sys
TIME_CSV = {"throughput_tok_s", "accounted_s", "compute_s", "speedup_vs_hlm"}
TIME_JSON = TIME_CSV | {"slm_s", "unc_s", "llm_s", "wall_seconds"}
NEW_COLS = {"tsr_expected"}
def norm_csv(t):
    rows = list(csv.reader(io.StringIO(t)))
    if not rows: return t
    keep = [i for i, k in enumerate(rows[0]) if k not in NEW_COLS]
    rows = [[r[i] for i in keep if i < len(r)] for r in rows]
    h = rows[0]; idx = [i for i, k in enumerate(h) if k in TIME_CSV]
    for r in rows[1:]:
        for i in idx:
            if i < len(r): r[i] = "T"
    return "\n".join(",".join(r) for r in rows)
def norm_json(t):
    t = re.sub(r'\n\t*"tsr_expected":\s*[^,\n]*,', '', t)
    t = re.sub(r'"server":\s*"127.0.0.1:[0-9]+"', '"server": "PORT"', t)
    # masked in the text, so that key order and formatting are compared too
    masked = re.sub(r'("(%s)":\s*)([-0-9.eE+]+|null)' % "|".join(TIME_JSON), r'\1T', t)
    return masked
# summary.md's columns that came or went by design: the hidden-state cosine left the tables
# (it does not separate the modes), TSR expected and the sweep's PPL % llm came
MD_DROP = {"Transmission and quality": {"cos sim", "cos % llm", "cos % hlm", "TSR expected"},
           "u_th sweep": {"cos sim", "cos % llm", "PPL % llm"}}
def drop_md_cols(t):
    out, sect, drop = [], "", None
    for line in t.split("\n"):
        if line.startswith("## "): sect, drop = line, None
        if line.startswith("|"):
            cells = line.split("|")
            if drop is None:
                names = next((v for k, v in MD_DROP.items() if k in sect), set())
                drop = {i for i, c in enumerate(cells) if c.strip() in names}
            line = "|".join(c for i, c in enumerate(cells) if i not in drop)
        else:
            drop = None
        out.append(line)
    return "\n".join(out)
def norm_md(t):
    t = drop_md_cols(t)
    # the note under the quality table was reworded with it
    t = re.sub(r"(?m)^(The llm row's cosine similarity|TSR is the share of skipped tokens).*$", "NOTE", t)
    t = re.sub(r"Wall time [0-9.]+ s", "Wall time T s", t)
    out, sect, tcol = [], "", None
    for line in t.split("\n"):
        if line.startswith("## "): sect, tcol = line, None
        if line.startswith("|") and "Accounted throughput" in sect and not line.startswith("| mode") and not line.startswith("|---"):
            cells = line.split("|"); line = "|".join(cells[:2] + ["T"] * (len(cells) - 3) + cells[-1:])
        if line.startswith("| method | quantile"): tcol = line.split("|").index(" throughput ")
        elif tcol and line.startswith("| ") and "u_th sweep" in sect:
            cells = line.split("|"); cells[tcol] = "T"; line = "|".join(cells)
        out.append(line)
    return "\n".join(out)
def norm_err(t):
    t = re.sub(r"prompts, [0-9.]+ s;", "prompts, T s;", t)
    # progress lines (stderr not a TTY), added later by design and timed
    t = re.sub(r"(?m)^(eval|calibrate): [0-9]+/[0-9]+ \([0-9]+%\), [0-9]+ s elapsed, ETA \S+\n", "", t)
    return t
def norm(path, t):
    if path.endswith(".csv"): return norm_csv(t)
    if path.endswith(".json"): return norm_json(t)
    if path.endswith(".md"): return norm_md(t)
    if path.endswith(".stderr"): return norm_err(t)
    return t
a, b = sys.argv[1], sys.argv[2]
IGNORE = {"answers.jsonl", "intervals.csv"}
fa = sorted(os.path.relpath(os.path.join(d, f), a) for d, _, fs in os.walk(a) for f in fs)
fb = sorted(os.path.relpath(os.path.join(d, f), b) for d, _, fs in os.walk(b) for f in fs)
fa = [f for f in fa if os.path.basename(f) not in IGNORE]
fb = [f for f in fb if os.path.basename(f) not in IGNORE]
bad = 0
if fa != fb:
    print("file sets differ:", set(fa) ^ set(fb)); bad = 1
same_raw = 0
fa = [f for f in fa if os.path.basename(f) not in IGNORE]
fb = [f for f in fb if os.path.basename(f) not in IGNORE]
for f in sorted(set(fa) & set(fb)):
    x = open(os.path.join(a, f), encoding="utf-8", errors="replace").read()
    y = open(os.path.join(b, f), encoding="utf-8", errors="replace").read()
    if x == y: same_raw += 1; continue
    if norm(f, x) != norm(f, y):
        bad = 1; print("DIFF", f)
        import difflib
        for l in list(difflib.unified_diff(norm(f, x).split("\n"), norm(f, y).split("\n"), lineterm=""))[:12]: print("   ", l)
print(f"{len(fa)} files, {same_raw} byte-identical raw, {'DIFFER' if bad else 'all equal after masking timing'}")
sys.exit(bad)
