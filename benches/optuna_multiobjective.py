"""Optuna's multi-objective samplers on the problems of `cargo bench --bench multiobjective`.

Same problems (src/mofns.rs: ZDT1 and ZDT2 with 6 variables, DTLZ2 and the constrained
C2-DTLZ2 with 3 objectives and 12 variables, every variable in [0, 1], and the mixed and
conditional `mixed`), same fixed reference
points, same score: the hypervolume of the feasible trials so far as a fraction of the true
front's (a dense sample of it), median [q1, q3] over the seeds at trials 50 and 100, and the
median ms per suggestion over the last 10 trials, in the Rust bench's format.

Usage: python benches/optuna_multiobjective.py [SEEDS=10] [TRIALS=100] [SAMPLER ...] [PROBLEM ...]
Samplers: nsga2, tpe, gp (gp needs torch and scipy: benches/torch-venv.sh installs them).
NSGA-II and TPE need only optuna and numpy.
"""

import math
import sys
import time

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume


def zdt(x, second):
    g = 1 + 9 * sum(x[1:]) / (len(x) - 1)
    return [x[0], g * second(x[0] / g)], None


def zdt1(x):
    return zdt(x, lambda r: 1 - math.sqrt(r))


def zdt2(x):
    return zdt(x, lambda r: 1 - r * r)


def dtlz2(x, m=3):
    g = sum((v - 0.5) ** 2 for v in x[m - 1:])
    f = []
    for i in range(m):
        v = 1 + g
        for xj in x[: m - 1 - i]:
            v *= math.cos(xj * math.pi / 2)
        if i > 0:
            v *= math.sin(x[m - 1 - i] * math.pi / 2)
        f.append(v)
    return f, None


def c2dtlz2(x):
    f, _ = dtlz2(x)
    m, r = len(f), 0.4
    squares = sum(v * v for v in f)
    near_axis = min((f[i] - 1) ** 2 + squares - f[i] ** 2 - r * r for i in range(m))
    centre = 1 / math.sqrt(m)
    near_centre = sum((v - centre) ** 2 for v in f) - r * r
    return f, min(near_axis, near_centre)


def mixed(x):
    """x = [x0..x3, shape (0 = "a", 1 = "b"), k, x4 (nan for "a")], as src/mofns.rs's mixed."""
    g = 1 + 9 * (x[1] + x[2] + x[3] + abs(x[5] - 3) / 7) / 4
    if x[4] == 0:
        return [x[0], g * (1 - math.sqrt(x[0] / g))], None
    g += 4 * (x[6] - 0.7) ** 2
    return [x[0], 0.6 * g * (1 - x[0] / g)], None


def suggest_mixed(trial):
    x = [trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(4)]
    shape = trial.suggest_categorical("shape", ["a", "b"])
    k = trial.suggest_int("k", 0, 10)
    x4 = trial.suggest_float("x4", 0.0, 1.0) if shape == "b" else float("nan")
    return x + [0.0 if shape == "a" else 1.0, float(k), x4]


# name, function, variables, objectives, reference point. Keep in step with src/mofns.rs.
PROBLEMS = [
    ("zdt1", zdt1, 6, 2, [1.1, 11.0]),
    ("zdt2", zdt2, 6, 2, [1.1, 11.0]),
    ("dtlz2", dtlz2, 12, 3, [2.5, 2.5, 2.5]),
    ("c2dtlz2", c2dtlz2, 12, 3, [2.5, 2.5, 2.5]),
    ("mixed", mixed, 7, 2, [1.1, 11.0]),
]


def true_front_hv(fn, dims, m, ref):
    """A dense sample of the true front, as MoFn::front_hypervolume takes it."""
    steps = 4000 if m == 2 else 60
    rest = 0.0 if fn in (zdt1, zdt2) else 0.5
    points = []
    grid = [k / steps for k in range(steps + 1)]
    if fn is mixed:
        for a in grid:
            points.append(fn([a, 0, 0, 0, 0.0, 3, float("nan")]))
            points.append(fn([a, 0, 0, 0, 1.0, 3, 0.7]))
    elif m == 2:
        for a in grid:
            points.append(fn([a] + [rest] * (dims - 1)))
    else:
        for a in grid:
            for b in grid:
                points.append(fn([a, b] + [rest] * (dims - 2)))
    feasible = np.array([f for f, c in points if c is None or c <= 0])
    return hv(feasible, ref)


def hv(points, ref):
    pts = np.asarray(points, dtype=float)
    if len(pts) == 0:
        return 0.0
    pts = pts[np.all(pts < np.asarray(ref), axis=1)]
    return float(compute_hypervolume(pts, np.asarray(ref, dtype=float))) if len(pts) else 0.0


def sampler_for(name, seed):
    # Constraints reach every sampler through Trial.set_constraint (Optuna 5).
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise SystemExit(f"unknown sampler {name}")


def run(problem, sampler_name, seed, trials):
    name, fn, dims, m, ref = problem
    study = optuna.create_study(directions=["minimize"] * m, sampler=sampler_for(sampler_name, seed))
    feasible, volumes, millis = [], [], []

    def objective(trial):
        if fn is mixed:
            x = suggest_mixed(trial)
        else:
            x = [trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(dims)]
        f, c = fn(x)
        if c is not None:
            trial.set_user_attr("c", c)
            trial.set_constraint("c", c)  # feasible at <= 0, as in sweep's `c <= 0`
        return f

    for _ in range(trials):
        start = time.perf_counter()
        trial = study.ask()
        # ask() samples lazily: the parameters are drawn in objective(); time both (the
        # objective itself costs microseconds).
        f = objective(trial)
        millis.append((time.perf_counter() - start) * 1000)
        study.tell(trial, f)
        c = trial.user_attrs.get("c")
        if c is None or c <= 0:
            feasible.append(f)
        volumes.append(hv(feasible, ref))
    return volumes, millis


def quartiles(v):
    v = sorted(v)
    at = lambda q: v[round((len(v) - 1) * q)]
    return at(0.25), at(0.5), at(0.75)


def main():
    args = [a for a in sys.argv[1:]]
    seeds = int(args.pop(0)) if args and args[0].isdigit() else 10
    trials = int(args.pop(0)) if args and args[0].isdigit() else 100
    picked = [a for a in args if a in {p[0] for p in PROBLEMS}]
    samplers = [a for a in args if a not in picked] or ["nsga2", "tpe"]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"optuna {optuna.__version__}; hypervolume / true front's: median [q1, q3] over {seeds} seeds; ms per suggestion")
    print(f"{'problem':<9} {'sampler':<7} {'trial 50':>24} {'trial 100':>24} {'ms':>8}")
    for problem in [p for p in PROBLEMS if not picked or p[0] in picked]:
        best = true_front_hv(problem[1], problem[2], problem[3], problem[4])
        for s in samplers:
            runs = [run(problem, s, seed, trials) for seed in range(seeds)]
            line = f"{problem[0]:<9} {s:<7}"
            for c in (50, 100):
                if c <= trials:
                    q1, med, q3 = quartiles([v[c - 1] / best for v, _ in runs])
                    line += f" {med:>8.4f} [{q1:>6.4f},{q3:>6.4f}]"
            _, ms, _ = quartiles([t for _, ms in runs for t in ms[-10:]])
            print(f"{line} {ms:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
