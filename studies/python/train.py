"""A training script in plain Python that sweep tunes, checkpoints and resumes (see
studies/python-resume.toml): noisy SGD with momentum on a 10-dimensional quadratic. Its state
(weights, velocity, the random generator) is checkpointed at every report, and at the step it
is at when it is asked to stop (SIGTERM), so a trial killed at any moment goes on from its last
checkpoint and ends exactly where it would have."""

import argparse
import json
import random
import sys
import time

import sweep_worker

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=200)
parser.add_argument("--report-every", type=int, default=10)
parser.add_argument("--sleep-ms", type=float, default=0.0, help="pretend each step takes this long")
parser.add_argument("--step-log", help="append each step done to this file (benches/kill-study.sh counts them)")
args = parser.parse_args()

trial = sweep_worker.Trial()
lr, momentum = trial.params["lr"], trial.params.get("momentum", 0.9)
target = [1.0 + i / 10 for i in range(10)]


def loss(w):
    return sum((x - t) ** 2 for x, t in zip(w, target))


def read(f):
    state = json.loads(f.read())
    version, inner, gauss = state["rng"]
    state["rng"] = (version, tuple(inner), gauss)
    return state


state = trial.load(read)
if state is None:
    rng = random.Random(trial.params.get("seed", 0))
    state = {"step": 0, "w": [0.0] * 10, "v": [0.0] * 10, "rng": rng.getstate()}
rng = random.Random()
rng.setstate(state["rng"])
w, v = state["w"], state["v"]

for step in range(state["step"] + 1, args.steps + 1):
    grad = [2 * (x - t) + rng.gauss(0, 0.5) for x, t in zip(w, target)]
    v = [momentum * vi - lr * g for vi, g in zip(v, grad)]
    w = [x + vi for x, vi in zip(w, v)]
    time.sleep(args.sleep_ms / 1000)
    if args.step_log:
        with open(args.step_log, "a") as log:
            log.write(f"{trial.number} {step}\n")
    if step % args.report_every == 0 or step == args.steps:
        state = {"step": step, "w": w, "v": v, "rng": rng.getstate()}
        saved = step < args.steps and trial.save(step, lambda f: f.write(json.dumps(state).encode()))
        if not trial.report(step, checkpoint=saved, loss=loss(w)):
            break
    elif trial.stopping and step < args.steps:
        # Asked to stop between reports (Ctrl-C of sweep, Slurm's time limit): keep this step.
        state = {"step": step, "w": w, "v": v, "rng": rng.getstate()}
        if trial.save(step, lambda f: f.write(json.dumps(state).encode())):
            trial.report(step, checkpoint=True)
        sys.exit(0)
trial.final(loss=loss(w))
