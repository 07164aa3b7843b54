#!/usr/bin/env bash
# What a `kill -9` of the coordinator costs a long trial (#26). A 400-step `pretrain` trial
# (hidden 64, 2 layers, evaluation and checkpoint every 50 steps) runs once uninterrupted, and
# once killed with `kill -9` of the coordinator as soon as its checkpoint at step 300 is
# recorded, then run again: prints the second run's wall time over the uninterrupted run's, and
# whether the resumed trial's final val_loss equals the uninterrupted one's bit for bit. Each
# round runs both in the same minutes, in one folder whose tokenizer was trained beforehand
# (neither run pays for it). With OLD_BINARY, each round also times that build's second run
# (before checkpoints, it started the trial over).
#
# Usage: benches/resume.sh BINARY [ROUNDS=3] [OLD_BINARY]
set -euo pipefail
bin=$(realpath "$1") rounds=${2:-3} old=${3:+$(realpath "$3")}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
study() { # NAME STEPS
    cat <<EOF
name = "$1"
metric = "val_loss"
direction = "minimize"
[budget]
trials = 1
[params.layers]
value = 2
[params.hidden]
value = 64
[params.heads]
value = 4
[params.ffn]
value = 256
[params.vocab_size]
value = 8000
[params.steps]
value = $2
[params.seed]
value = 1
[trial]
worker = "pretrain"
args = ["--eval-every", "50"]
EOF
}
now() { date +%s.%N; }
ratio() { python3 -c "print(f'{$1 / $2:.3f}')"; }
# The trial's field $2 in database $1 (empty while there is none).
field() {
    "$bin" --db "$1" export "$3" --format json 2>/dev/null |
        python3 -c "import json,sys; t=json.load(sys.stdin); print(t[0].get('$2') if t and t[0].get('$2') is not None else '')" 2>/dev/null || true
}
value_of() { # DB STUDY: the complete trial's value, every digit
    "$bin" --db "$1" export "$2" --format json |
        python3 -c "import json,sys; print(repr([t['value'] for t in json.load(sys.stdin) if t['state']=='complete'][0]))"
}
# Runs study NAME with BINARY in the folder, killing the coordinator once step 300's checkpoint
# is recorded; prints the wall seconds of the run that finishes it.
killed_then_resumed() { # BINARY NAME
    local dir=$work/$2
    mkdir -p "$dir" && study "$2" 400 >"$dir/s.toml" && cp -r "$work/cache" "$dir/sweep-runs"
    (cd "$dir" && exec "$1" run s.toml --db sweep.db --no-progress >first.log 2>&1) &
    local pid=$!
    if [ "$1" = "$bin" ]; then
        until [ "$(field "$dir/sweep.db" checkpoint_step "$2")" = 300 ]; do sleep 0.2; done
    else # an old build records no checkpoint: kill at the same step
        until [ "$(field "$dir/sweep.db" last_step "$2")" = 300 ]; do sleep 0.2; done
    fi
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    sleep 1 # the worker dies with its coordinator
    local start end
    start=$(now)
    (cd "$dir" && "$1" run s.toml --db sweep.db --no-progress >second.log 2>&1)
    end=$(now)
    python3 -c "print(f'{$end - $start:.1f}')"
}

# The tokenizer and the token-id cache, once, for every run below.
mkdir -p "$work/warm" && study warm 1 >"$work/warm/s.toml"
(cd "$work/warm" && "$bin" run s.toml --db sweep.db --no-progress >/dev/null 2>&1)
mkdir -p "$work/cache" && cp -r "$work/warm/sweep-runs/cache" "$work/cache/"

echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
ratios=()
for i in $(seq "$rounds"); do
    dir=$work/whole-$i
    mkdir -p "$dir" && study "whole-$i" 400 >"$dir/s.toml" && cp -r "$work/cache" "$dir/sweep-runs"
    start=$(now)
    (cd "$dir" && "$bin" run s.toml --db sweep.db --no-progress >run.log 2>&1)
    whole=$(python3 -c "print(f'{$(now) - $start:.1f}')")
    resumed=$(killed_then_resumed "$bin" "killed-$i")
    same=$([ "$(value_of "$dir/sweep.db" "whole-$i")" = "$(value_of "$work/killed-$i/sweep.db" "killed-$i")" ] && echo yes || echo NO)
    r=$(ratio "$resumed" "$whole")
    ratios+=("$r")
    line="round $i: uninterrupted $whole s, resumed after kill -9 at step 300: $resumed s ($r), same val_loss: $same"
    if [ -n "$old" ]; then
        o=$(killed_then_resumed "$old" "old-$i")
        line="$line; old build's second run $o s ($(ratio "$o" "$whole"))"
    fi
    echo "$line (load $(cut -d' ' -f1 /proc/loadavg))"
done
python3 -c "import statistics as s; r=[float(x) for x in '${ratios[*]}'.split()]; print(f'median resumed/uninterrupted {s.median(r):.3f} over {len(r)} rounds (min {min(r):.3f}, max {max(r):.3f})')"
