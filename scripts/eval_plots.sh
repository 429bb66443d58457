#!/usr/bin/env bash
# Draws the evaluation plots (PNG) from a `uhlm eval -o DIR` folder with gnuplot:
#   u_vs_rejection.png   binned mean rejection probability against u, with the fitted line
#                        (from DIR/calib.json when present, else the eval's own hlm pass)
#   throughput_snr.png   accounted throughput against SNR, one line per mode
#   sweep_uth.png        TR and quality (cosine similarity, % of llm) against u_th
#   frontier.png         quality against throughput: uhlm against rand at matched skip rates
#   methods_r2.png, methods_frontier.png   uncertainty methods by R^2 and by frontier
#                        (from DIR/methods/, an eval with --sweep-methods; skipped if absent)
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
else
  term='png size 900,600'
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/uhlm_plots.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

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
  src="calibration (train part)"
else
  awk -F, 'NR>1 && $1=="perturb" && $4>0 {print $6, $7, $8, $4}' "$dir/bins.csv" >"$tmp/bins.dat"
  awk -F, 'NR>1 && $1=="perturb" {print $2, $3, $4; exit}' "$dir/methods.csv" >"$tmp/fit.dat"
  src="eval hlm pass"
fi
read -r fa fb fr2 <"$tmp/fit.dat"

modes=$(awk -F, 'NR>1 && !seen[$1]++ {printf "%s ", $1}' "$dir/results.csv")

gnuplot <<GP
set terminal $term
set datafile separator whitespace
set output "$dir/u_vs_rejection.png"
set title "LLM rejection probability against SLM uncertainty ($src)"
set xlabel "uncertainty u (bin mean)"
set ylabel "rejection probability"
set xrange [0:1]; set yrange [0:*]
set key top left
set grid
f(x) = $fa*x + ($fb)
plot "$tmp/bins.dat" using 1:2 with linespoints pt 7 title "mean beta per bin", \
     "$tmp/bins.dat" using 1:3 with points pt 6 title "observed rejection share per bin", \
     f(x) with lines lw 2 title sprintf("fit beta = %.3f u %+.3f (R^2 %.3f, per token)", $fa, $fb, $fr2)

set datafile separator ","
set output "$dir/throughput_snr.png"
set title "Accounted token throughput against uplink SNR"
set xlabel "SNR (dB)"; set ylabel "tokens / s"
set logscale y
set xrange [*:*]; set yrange [*:*]
set key outside right
plot for [m in "$modes"] "$dir/results.csv" using 2:(strcol(1) eq m ? \$5 : NaN) with linespoints lw 2 title m
unset logscale y

set output "$dir/sweep_uth.png"
set title "U-HLM: transmission rate and quality against u_th (perturb)"
set xlabel "u_th"; set ylabel "TR (transmitted / generated)"
set y2label "cosine similarity, % of llm"
set ytics nomirror; set y2tics
set yrange [0:1.05]; set y2range [*:*]
set key bottom left
plot "$dir/sweep.csv" using 3:((strcol(1) eq "perturb" && strcol(4) eq "uhlm") ? \$6 : NaN) with linespoints lw 2 title "TR", \
     "$dir/sweep.csv" using 3:((strcol(1) eq "perturb" && strcol(4) eq "uhlm") ? \$11 : NaN) axes x1y2 with linespoints lw 2 title "cos sim % of llm"
unset y2label; unset y2tics; set ytics mirror

set output "$dir/frontier.png"
set title "Quality against throughput (sweep SNR): uhlm vs rand at matched skip rates"
set xlabel "tokens / s"; set ylabel "LLM perplexity of the output (lower is better)"
set yrange [*:*]
set key top left
plot "$dir/sweep.csv" using 9:((strcol(1) eq "perturb" && strcol(4) eq "uhlm") ? \$13 : NaN) with linespoints lw 2 pt 7 title "uhlm (perturb)", \
     "$dir/sweep.csv" using 9:((strcol(1) eq "perturb" && strcol(4) eq "rand") ? \$13 : NaN) with linespoints lw 2 pt 5 title "rand (same skip rate)"
GP

if [ -f "$dir/methods/methods.csv" ] && [ -f "$dir/methods/sweep.csv" ]; then
  m="$dir/methods"
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

set style data linespoints
set output "$dir/methods_frontier.png"
set title "Quality-throughput frontier per uncertainty method (and rand)"
set xlabel "tokens / s"; set ylabel "LLM perplexity of the output (lower is better)"
set yrange [*:*]
set key top left
plot for [me in "perturb entropy maxprob margin"] "$m/sweep.csv" using 9:((strcol(1) eq me && strcol(4) eq "uhlm") ? \$13 : NaN) lw 2 title me, \
     "$m/sweep.csv" using 9:((strcol(1) eq "perturb" && strcol(4) eq "rand") ? \$13 : NaN) lw 2 dt 2 title "rand"
GP
fi
echo "eval_plots: plots written to $dir" >&2
