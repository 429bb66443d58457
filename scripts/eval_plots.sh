#!/usr/bin/env bash
# Draws the evaluation plots (PNG) from a `uhlm eval -o DIR` folder with gnuplot:
#   u_vs_rejection.png   binned mean rejection probability against u, with the fitted line
#                        (from DIR/calib.json when present, else the eval's own hlm pass)
#   throughput_snr.png   accounted throughput against SNR, one line per mode, and below it
#                        the uhlm/hlm and rand/hlm ratios (95% intervals from intervals.csv)
#   sweep_uth.png        quality against u_th: PPL and sentence cosine as % of llm, and TR
#   frontier.png         quality against throughput (log axis): uhlm against rand at matched
#                        skip rates, hlm and uhlm at the main u_th as points
#   quality_modes.png    per-mode quality bars with 95% error bars: PPL % of llm (intervals.csv)
#                        and the sentence cosine to the llm answer and to the reference, % of llm
#   methods_r2.png, methods_frontier.png   uncertainty methods by R^2 and by frontier
#                        (from DIR/methods/, an eval with --sweep-methods; skipped if absent)
# The sentence cosine (the paper's quality metric) comes from DIR/sentence_cosine.csv, which
# scripts/sentence_cosine.py --csv writes from DIR/answers.jsonl (scripts/eval_report.sh runs
# it where the embedding model is installed); without it those plots show PPL alone and say so
# in their titles. The eval's own cosine of LLM hidden states is not plotted: it does not
# separate the modes (docs/results.md, section 3).
# usage: scripts/eval_plots.sh DIR
set -euo pipefail
dir=${1:?usage: scripts/eval_plots.sh DIR}
command -v gnuplot >/dev/null || { echo "eval_plots: gnuplot not found (scripts/setup.sh installs gnuplot-nox)" >&2; exit 1; }
for f in results.csv sweep.csv methods.csv bins.csv; do
  [ -f "$dir/$f" ] || { echo "eval_plots: $dir/$f not found (run uhlm eval -o $dir first)" >&2; exit 1; }
done
# pngcairo draws nicer lines; plain png (libgd) is the fallback some gnuplot builds have
if gnuplot -e 'set terminal' 2>&1 | grep -qw pngcairo; then
  term='pngcairo size 900,600 font ",11"'
  tall='pngcairo size 900,800 font ",11"'
else
  term='png size 900,600'
  tall='png size 900,800'
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/uhlm_plots.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Every series goes to a file of its own, so that each line joins only its own points (a
# series picked out of a shared file with NaN for the other rows is drawn as unjoined points).
python3 - "$dir" "$tmp" <<'PY'
import csv, json, math, os, sys
d, t = sys.argv[1], sys.argv[2]
def rows(name):
    p = os.path.join(d, name)
    return list(csv.DictReader(open(p))) if os.path.exists(p) else None
def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan
def write(name, lines):
    with open(os.path.join(t, name), "w") as f:
        for l in lines:
            f.write(" ".join("nan" if isinstance(v, float) and not math.isfinite(v) else
                             ("%.6g" % v if isinstance(v, float) else str(v)) for v in l) + "\n")
flags = {}
res = rows("results.csv")
sweep = rows("sweep.csv")
iv = rows("intervals.csv")
sc = rows("sentence_cosine.csv")
flags["intervals"] = int(iv is not None)
flags["sentence"] = int(sc is not None)
flags["ref"] = int(sc is not None and any(r["metric"] == "sentence_cos_ref_pct_llm" for r in sc))
order = ["slm", "llm", "hlm", "rand", "uhlm"]
modes = [m for m in order if any(r["mode"] == m for r in res)]
flags["modes"] = " ".join(modes)
for m in modes:
    write("tp_%s.dat" % m, [(num(r["snr_db"]), num(r["throughput_tok_s"])) for r in res if r["mode"] == m])
# ratio to hlm per SNR, with the bootstrap interval when intervals.csv has it
ivd = {}
for r in iv or []:
    ivd[(r["mode"], r["snr_db"], r["metric"])] = (num(r["value"]), num(r["lo"]), num(r["hi"]))
def key_snr(s):
    return "%g" % num(s)
ivd = {(m, key_snr(s) if s else "", k): v for (m, s, k), v in ivd.items()}
flags["ratios"] = ""
for m in ("uhlm", "rand"):
    rr = [r for r in res if r["mode"] == m and math.isfinite(num(r["speedup_vs_hlm"]))]
    if not rr:
        continue
    flags["ratios"] += m + " "
    out, have = [], iv is not None
    for r in rr:
        v = num(r["speedup_vs_hlm"])
        iv_v, lo, hi = ivd.get((m, key_snr(r["snr_db"]), "speedup_vs_hlm"), (math.nan,) * 3)
        # an interval belongs to its own run: an intervals.csv from another run of the same
        # eval (other compute times) would put bars around figures they were not made for
        if not (abs(iv_v - v) <= 1e-4 * abs(v) and math.isfinite(lo) and math.isfinite(hi)):
            have = False
        out.append((num(r["snr_db"]), v, lo, hi))
    write("ratio_%s.dat" % m, out)
    flags["ratio_iv_" + m] = int(have)
    if iv is not None and not have:
        sys.stderr.write("eval_plots: intervals.csv's speedup_vs_hlm of %s does not match "
                         "results.csv's (another run?): its ratio is drawn without intervals\n" % m)
# sweep: PPL % of llm (llm's PPL from results.csv), sentence cosine % of llm per u_th
llm_ppl = next((num(r["ppl"]) for r in res if r["mode"] == "llm"), math.nan)
flags["llm_ppl"] = int(math.isfinite(llm_ppl))
scd = {}
for r in sc or []:
    scd[(r["mode"], r["metric"])] = (num(r["value"]), num(r["lo"]), num(r["hi"]))
flags["sweep_series"] = ""
for kind in ("uhlm", "rand"):
    methods = []
    for r in sweep:
        if r["kind"] == kind and r["method"] not in methods:
            methods.append(r["method"])
    for me in methods:
        pts = sorted((r for r in sweep if r["kind"] == kind and r["method"] == me), key=lambda r: num(r["u_th"]))
        out = []
        for r in pts:
            label = "sweep-%s-%s-q%.2f" % (kind, me, num(r["quantile"]))
            c = scd.get((label, "sentence_cos_llm_pct_llm"), (math.nan,) * 3)
            cr = scd.get((label, "sentence_cos_ref_pct_llm"), (math.nan,) * 3)
            out.append((num(r["u_th"]), 100 * llm_ppl / num(r["ppl"]), num(r["tr"]),
                        num(r["throughput_tok_s"]), num(r["ppl"])) + c + cr + (num(r["skip_rate"]),))
        write("sw_%s_%s.dat" % (kind, me), out)
        flags["sweep_series"] += "%s_%s " % (kind, me)
flags["sweep_methods"] = " ".join(dict.fromkeys(r["method"] for r in sweep))
# the main modes at the sweep's SNR, as points on the frontier
try:
    ssnr = json.load(open(os.path.join(d, "results.json")))["config"]["sweep_snr_db"]
except (OSError, ValueError, KeyError):
    ssnr = None
flags["frontier_points"] = ""
for m in ("hlm", "uhlm"):
    r = next((r for r in res if r["mode"] == m and ssnr is not None and num(r["snr_db"]) == ssnr), None)
    if r:
        write("fp_%s.dat" % m, [(num(r["throughput_tok_s"]), num(r["ppl"]))])
        flags["frontier_points"] += m + " "
flags["sweep_snr"] = "%g" % ssnr if ssnr is not None else "?"
# per-mode bars: value lo hi for each quality series
bars = []
for m in modes:
    if iv is not None:
        p = ivd.get((m, "", "ppl_pct_llm"), (math.nan,) * 3)
    else:
        r = next(r for r in res if r["mode"] == m)
        p = (num(r["ppl_pct_llm"]), math.nan, math.nan)
    c = scd.get((m, "sentence_cos_llm_pct_llm"), (math.nan,) * 3)
    cr = scd.get((m, "sentence_cos_ref_pct_llm"), (math.nan,) * 3)
    bars.append((m,) + p + c + cr)
write("bars.dat", bars)
with open(os.path.join(t, "flags.sh"), "w") as f:
    for k, v in flags.items():
        f.write("%s='%s'\n" % (k, str(v).strip()))
PY
# shellcheck disable=SC1091
. "$tmp/flags.sh"
# (the flags: modes ratios ratio_iv_MODE intervals sentence ref llm_ppl sweep_series
# sweep_methods frontier_points sweep_snr; shellcheck cannot see into flags.sh)
# shellcheck disable=SC2154
: "$modes" "$ratios" "$intervals" "$sentence" "$ref" "$llm_ppl" "$sweep_series" "$sweep_methods" \
  "$frontier_points" "$sweep_snr"

# binned data and fit: calib.json (held-out calibration) when there, else the eval's hlm pass
if [ -f "$dir/calib.json" ]; then
  python3 - "$dir/calib.json" "$tmp/bins.dat" "$tmp/fit.dat" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    for b in d["bins"]:
        if b["count"]:
            f.write("%g %g %g %d\n" % (b["mean_u"], b["mean_beta"], b["reject_rate"], b["count"]))
with open(sys.argv[3], "w") as f:
    f.write("%g %g %g\n" % (d["fit"]["a"], d["fit"]["b"], d["fit"]["r2"]))
PY
  src="calibration, fit half"
else
  fm=$(awk -F, 'NR==2 {print $1}' "$dir/methods.csv") # the eval's own method comes first
  awk -F, -v fm="$fm" 'NR>1 && $1==fm && $4>0 {print $6, $7, $8, $4}' "$dir/bins.csv" >"$tmp/bins.dat"
  awk -F, -v fm="$fm" 'NR>1 && $1==fm {print $2, $3, $4; exit}' "$dir/methods.csv" >"$tmp/fit.dat"
  src="eval hlm pass, $fm"
fi
read -r fa fb fr2 <"$tmp/fit.dat"

# the plot commands of the optional series
# rand draws dashed with open points: its throughput lies on uhlm's (same skip rate)
tp_plot=""
for m in $modes; do
  if [ "$m" = rand ]; then st="dt 2 pt 6"; else st="dt 1 pt 7"; fi
  tp_plot+="${tp_plot:+, }\"$tmp/tp_$m.dat\" using 1:2 with linespoints lw 2 $st title \"$m\""
done
ratio_plot=""
for m in $ratios; do
  lt=1; [ "$m" = rand ] && lt=2
  v=ratio_iv_$m
  if [ "${!v}" = 1 ]; then rs="yerrorlines"; rt=" (95% interval)"; rc="1:2:3:4"; else rs="linespoints"; rt=""; rc="1:2"; fi
  ratio_plot+="${ratio_plot:+, }\"$tmp/ratio_$m.dat\" using $rc with $rs lw 2 dt $lt pt 7 title \"$m / hlm$rt\""
done
[ -n "$ratio_plot" ] || ratio_plot='1/0 notitle'

# the sweep and frontier plots show the first uncertainty method the sweep ran (the eval's own,
# unless --sweep-methods named others; methods_frontier.png compares them all)
sm=${sweep_methods%% *}
sweep_plot=""
for s in $sweep_series; do
  kind=${s%%_*}; me=${s#*_}
  [ "$me" = "$sm" ] || continue
  dt=1; [ "$kind" = rand ] && dt=2
  [ "$llm_ppl" = 1 ] && sweep_plot+="${sweep_plot:+, }\"$tmp/sw_$s.dat\" using 1:2 with linespoints lw 2 dt $dt pt 7 lc 1 title \"$kind: PPL, % of llm\""
  [ "$sentence" = 1 ] && sweep_plot+="${sweep_plot:+, }\"$tmp/sw_$s.dat\" using 1:6:7:8 with yerrorlines lw 2 dt $dt pt 5 lc 2 title \"$kind: sentence cosine to llm, % of llm (95% interval)\""
  [ "$ref" = 1 ] && sweep_plot+="${sweep_plot:+, }\"$tmp/sw_$s.dat\" using 1:9:10:11 with yerrorlines lw 2 dt $dt pt 9 lc 4 title \"$kind: sentence cosine to reference, % of llm\""
  [ "$kind" = uhlm ] && sweep_plot+="${sweep_plot:+, }\"$tmp/sw_$s.dat\" using 1:3 axes x1y2 with linespoints lw 1 dt 3 pt 6 lc 7 title \"TR (right axis)\""
done
[ -n "$sweep_plot" ] || sweep_plot='1/0 notitle'
if [ "$sentence" = 1 ]; then
  sweep_title="U-HLM against rand: quality and TR against u_{th} ($sm)"
else
  sweep_title="U-HLM against rand: PPL % of llm and TR against u_{th} ($sm)\\nsentence cosine not available for this run (no sentence-cosine CSV): PPL only"
fi

frontier_plot=""
for s in $sweep_series; do
  kind=${s%%_*}; me=${s#*_}
  [ "$me" = "$sm" ] || continue
  if [ "$kind" = uhlm ]; then t="uhlm ($sm), u_{th} sweep"; pt=7; else t="rand (same skip rate)"; pt=5; fi
  frontier_plot+="${frontier_plot:+, }\"$tmp/sw_$s.dat\" using 4:5 with linespoints lw 2 pt $pt title \"$t\""
done
for m in $frontier_points; do
  pt=9; [ "$m" = uhlm ] && pt=11
  t="hlm, every token verified (point)"; [ "$m" = uhlm ] && t="uhlm at the main u_{th} (point)"
  frontier_plot+="${frontier_plot:+, }\"$tmp/fp_$m.dat\" using 1:2 with points pt $pt ps 2 title \"$t\""
done
[ -n "$frontier_plot" ] || frontier_plot='1/0 notitle'

if [ "$intervals" = 1 ]; then
  bars_title="Quality per mode, % of llm, with 95% bootstrap intervals over prompts"
else
  bars_title="Quality per mode, % of llm (no intervals.csv in this folder: no error bars)"
fi
[ "$sentence" = 1 ] || bars_title="$bars_title\\nsentence cosine not available for this run (no sentence-cosine CSV): PPL only"
if [ "$intervals" = 1 ]; then
  bars_style="errorbars gap 2 lw 1.5"; bars_plot="\"$tmp/bars.dat\" using 2:3:4:xtic(1) title \"PPL, % of llm\""
else
  bars_style="clustered gap 2"; bars_plot="\"$tmp/bars.dat\" using 2:xtic(1) title \"PPL, % of llm\""
fi
# a histogram's series all have error bars or none
if [ "$intervals" = 1 ]; then c5="5:6:7"; c8="8:9:10"; else c5="5"; c8="8"; fi
[ "$sentence" = 1 ] && bars_plot+=", '' using $c5 title \"sentence cosine to the llm answer, % of llm's own\""
[ "$ref" = 1 ] && bars_plot+=", '' using $c8 title \"sentence cosine to the reference, % of llm's\""

gnuplot <<GP
set terminal $term
set datafile separator whitespace
set datafile missing "nan"
set output "$dir/u_vs_rejection.png"
set title "LLM rejection probability against SLM uncertainty ($src)"
set xlabel "uncertainty u (bin mean)"
set ylabel "rejection probability"
set xrange [0:1]; set yrange [0:*]
set key top left
set grid
f(x) = $fa*x + ($fb)
plot "$tmp/bins.dat" using 1:2 with linespoints lw 2 pt 7 title "mean beta per bin", \
     "$tmp/bins.dat" using 1:3 with points pt 6 ps 1.5 title "observed rejection share per bin (points)", \
     f(x) with lines lw 2 title sprintf("fit beta = %.3f u %+.3f (R^2 %.3f, per token)", $fa, $fb, $fr2)

set terminal $tall
set output "$dir/throughput_snr.png"
set multiplot layout 2,1 title "Accounted token throughput against uplink SNR"
set tmargin 1; set bmargin 2
set lmargin 12; set rmargin 4
# room at both ends for the error bars of the first and last SNR
set offsets 1, 1, 0, 0
set title ""
set xlabel ""; set ylabel "tokens / s (log)"
set logscale y
set xrange [*:*]; set yrange [*:*]
set key inside bottom right
plot $tp_plot
unset logscale y
set bmargin 4
set xlabel "SNR (dB)"; set ylabel "throughput / hlm's"
set yrange [*:*]
set key inside top right
plot $ratio_plot, 1 with lines lc rgb "gray" dt 3 notitle
unset multiplot
unset offsets

set terminal $tall
set output "$dir/sweep_uth.png"
set lmargin -1; set rmargin -1; set tmargin -1; set bmargin -1
set title "$sweep_title"
set xlabel "u_{th} (sweep points: quantiles of u)"; set ylabel "% of llm (higher is better)"
set y2label "TR (transmitted / generated)"
set ytics nomirror; set y2tics
set xrange [*:*]; set yrange [*:*]; set y2range [0:1.05]
set key outside below
set offsets graph 0.02, graph 0.02, graph 0.05, graph 0.02
plot $sweep_plot
unset offsets
unset y2label; unset y2tics; set ytics mirror
set terminal $term

set output "$dir/frontier.png"
set title "Quality against throughput at $sweep_snr dB: uhlm vs rand at matched skip rates"
set xlabel "tokens / s (log scale)"; set ylabel "LLM perplexity of the output (lower is better)"
set logscale x
set xrange [*:*]; set yrange [*:*]
set key inside top left
plot $frontier_plot
unset logscale x

set output "$dir/quality_modes.png"
set title "$bars_title"
set style data histogram
set style histogram $bars_style
set style fill solid 0.7 border -1
set boxwidth 0.9
set xrange [*:*]; set yrange [0:*]
set xlabel "mode"; set ylabel "% of llm (higher is better)"
set grid y
set key outside bottom center horizontal
plot $bars_plot
GP

if [ -f "$dir/methods/methods.csv" ] && [ -f "$dir/methods/sweep.csv" ]; then
  m="$dir/methods"
  for me in perturb entropy maxprob margin; do
    awk -F, -v me="$me" 'NR>1 && $1==me && $4=="uhlm" {print $9, $13}' "$m/sweep.csv" >"$tmp/m_$me.dat"
  done
  awk -F, 'NR==2 {me=$1} NR>1 && $1==me && $4=="rand" {print $9, $13}' "$m/sweep.csv" >"$tmp/m_rand.dat"
  gnuplot <<GP
set terminal $term
set datafile separator ","
set output "$dir/methods_r2.png"
set title "Linear fit of rejection on uncertainty: R^2 per method (per token)"
set style data histogram
set style fill solid 0.6 border -1
set boxwidth 0.6
set yrange [0:*]
set ylabel "R^2"
set grid y
plot "$m/methods.csv" using 4:xtic(1) title "R^2"

set datafile separator whitespace
set style data linespoints
set output "$dir/methods_frontier.png"
set title "Quality-throughput frontier per uncertainty method (and rand)"
set xlabel "tokens / s (log scale)"; set ylabel "LLM perplexity of the output (lower is better)"
set logscale x
set xrange [*:*]; set yrange [*:*]
set key inside top left
plot for [me in "perturb entropy maxprob margin"] "$tmp/m_".me.".dat" using 1:2 lw 2 pt 7 title me, \
     "$tmp/m_rand.dat" using 1:2 lw 2 dt 2 pt 5 title "rand"
GP
fi
echo "eval_plots: plots written to $dir" >&2
