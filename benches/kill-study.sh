#!/usr/bin/env bash
# The work a study loses to crashes (#26): a 12-trial study of studies/python/train.py (200
# steps of 10 ms each, a report and a checkpoint every 10 steps, two trials at a time) run
# uninterrupted, and run again in a fresh folder with three `kill -9`s of the coordinator at
# random moments (each followed by `sweep run` again). Prints the training steps each executed
# (the script logs every step it does) and their ratio, and whether both studies ended with the
# same configurations and the same final values.
#
# Usage: benches/kill-study.sh BINARY [ROUNDS=3]
set -euo pipefail
bin=$(realpath "$1") rounds=${2:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
setup() { # FOLDER
    mkdir -p "$1" && cp "$repo/studies/python/train.py" "$repo/studies/python/sweep_worker.py" "$1/"
    cat >"$1/s.toml" <<TOML
name = "kills"
metric = "loss"
direction = "minimize"
seed = 5
[budget]
trials = 12
parallel = 2
[params.lr]
type = "float"
low = 1e-3
high = 0.3
log = true
[params.momentum]
type = "float"
low = 0.0
high = 0.95
[trial]
command = ["python3", "train.py", "--steps", "200", "--sleep-ms", "10", "--step-log", "steps.log"]
TOML
}
run() { (cd "$1" && "$bin" run s.toml --db sweep.db --no-progress >>run.log 2>&1) || true; }
outcomes() {
    "$bin" --db "$1/sweep.db" export kills --format json |
        python3 -c "import json,sys; print(sorted((json.dumps(t['params'], sort_keys=True), t['value']) for t in json.load(sys.stdin) if t['state']=='complete'))"
}
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
for i in $(seq "$rounds"); do
    whole=$work/whole-$i killed=$work/killed-$i
    setup "$whole" && setup "$killed"
    start=$(date +%s.%N)
    run "$whole"
    seconds=$(python3 -c "print($(date +%s.%N) - $start)")
    kills=()
    for k in 1 2 3; do
        at=$(python3 -c "import random; print(f'{random.uniform(0.5, $seconds / 3):.2f}')")
        (cd "$killed" && exec "$bin" run s.toml --db sweep.db --no-progress >>run.log 2>&1) &
        pid=$!
        sleep "$at"
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        sleep 0.5 # its workers die with it
        kills+=("$at")
    done
    run "$killed"
    a=$(wc -l <"$whole/steps.log") b=$(wc -l <"$killed/steps.log")
    same=$([ "$(outcomes "$whole")" = "$(outcomes "$killed")" ] && echo yes || echo NO)
    echo "round $i: uninterrupted $a steps; killed at ${kills[*]} s into each run: $b steps ($(python3 -c "print(f'{$b / $a:.3f}')")); same configurations and values: $same (load $(cut -d' ' -f1 /proc/loadavg))"
done
