#!/usr/bin/env bash
# A/B of two builds of the training benchmark on one machine, in the same minutes: runs each
# build's one-configuration child (`--child TASK WARMUP STEPS`) alternately, PAIRS times, and
# prints each run's median ms/step and the median of the new/old ratios (single runs move by
# 1.3x on a shared machine; pairs taken back to back cancel most of that).
#
# Usage: benches/ab-training.sh OLD_BINARY NEW_BINARY [TASK=mlm] [THREADS=1] [PAIRS=6]
# The binaries are `target/release/deps/training-*` of each build (copy the old one aside).
set -euo pipefail
old=$1 new=$2 task=${3:-mlm} threads=${4:-1} pairs=${5:-6}
step_ms() {
    RAYON_NUM_THREADS=$threads CANDLE_NUM_THREADS=$threads "$1" --child "$task" 2 10 |
        python3 -c 'import sys, statistics as s; v=[float(x) for x in sys.stdin.read().split()]; print(s.median([sum(v[i:i+3]) for i in range(0, len(v), 3)]))'
}
ratios=()
for i in $(seq "$pairs"); do
    if [ $((i % 2)) -eq 1 ]; then a=$(step_ms "$old"); b=$(step_ms "$new"); else b=$(step_ms "$new"); a=$(step_ms "$old"); fi
    r=$(python3 -c "print(f'{$b / $a:.3f}')")
    ratios+=("$r")
    echo "pair $i: old $a ms/step, new $b ms/step, new/old $r"
done
python3 -c "import statistics as s; r=[float(x) for x in '${ratios[*]}'.split()]; print(f'$task, $threads thread(s): median new/old {s.median(r):.3f} over {len(r)} pairs (min {min(r):.3f}, max {max(r):.3f})')"
