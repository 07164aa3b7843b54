#!/usr/bin/env bash
# A/B of a whole study's wall time for two builds on one machine, in the same minutes: runs
# `sweep run STUDY` with each binary alternately (the order flips every pair), each time in a
# fresh folder (fresh database, tokenizer and caches, as a first run), and prints each run's
# seconds with the load, each pair's new/old ratio, and their median.
#
# Usage: benches/ab-study.sh OLD_BINARY NEW_BINARY [STUDY=studies/quickstart.toml] [PAIRS=5]
set -euo pipefail
old=$(realpath "$1") new=$(realpath "$2") study=$(realpath "${3:-studies/quickstart.toml}") pairs=${4:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seconds() {
    local dir=$work/$2-$3
    mkdir -p "$dir" && cp "$study" "$dir/"
    local start end
    start=$(date +%s.%N)
    (cd "$dir" && "$1" run "$(basename "$study")" --db sweep.db --no-progress >run.log 2>&1)
    end=$(date +%s.%N)
    python3 -c "print(f'{$end - $start:.1f}')"
}
ratios=()
for i in $(seq "$pairs"); do
    if [ $((i % 2)) -eq 1 ]; then a=$(seconds "$old" old "$i"); b=$(seconds "$new" new "$i")
    else b=$(seconds "$new" new "$i"); a=$(seconds "$old" old "$i"); fi
    r=$(python3 -c "print(f'{$b / $a:.3f}')")
    ratios+=("$r")
    echo "pair $i: old $a s, new $b s, new/old $r (load $(cut -d' ' -f1 /proc/loadavg))"
done
python3 -c "import statistics as s; r=[float(x) for x in '${ratios[*]}'.split()]; print(f'median new/old {s.median(r):.3f} over {len(r)} pairs (min {min(r):.3f}, max {max(r):.3f})')"
