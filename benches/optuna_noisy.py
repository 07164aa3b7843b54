"""Optuna's GPSampler on the noisy variants of `cargo bench --bench samplers`, for the same table.

Each trial observes f(x) + noise (normal, the variant's standard deviation); a run is scored,
like the Rust side, by the noiseless value of the best *observed* point so far minus the known
minimum (what a user would pick from the trial list). Prints one line per variant with the median
and quartiles over the seeds at trials 25, 50 and 100, in the Rust bench's format.

Usage: python benches/optuna_noisy.py [SEEDS=10] [TRIALS=100] [VARIANT ...]
Needs optuna, torch and scipy (benches/torch-venv.sh installs them in .venv-torch).
"""

import math
import sys

import numpy as np
import optuna

# The variants: (name, function, lower bounds, upper bounds, known minimum, noise sd).
# Keep in step with NOISY in benches/samplers.rs.
A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
              [17, 8, 0.05, 10, 0.1, 14]])
P = np.array([[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
              [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
              [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
              [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]])
ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def branin(x):
    x1, x2 = x
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 * x1 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def hartmann6(x):
    return -float(np.sum(ALPHA * np.exp(-np.sum(A * (np.asarray(x) - P) ** 2, 1))))


def levy(x):
    w = 1 + (np.asarray(x) - 1) / 4
    middle = np.sum((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(math.pi * w[:-1] + 1) ** 2))
    last = (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2)
    return float(math.sin(math.pi * w[0]) ** 2 + middle + last)


BRANIN = (branin, [-5.0, 0.0], [10.0, 15.0], 0.397887357729738)
HARTMANN = (hartmann6, [0.0] * 6, [1.0] * 6, -3.322368011415515)
LEVY = (levy, [-10.0] * 10, [10.0] * 10, 0.0)
VARIANTS = {
    "branin~0.5": (*BRANIN, 0.5),
    "branin~2": (*BRANIN, 2.0),
    "hartmann6~0.1": (*HARTMANN, 0.1),
    "hartmann6~0.3": (*HARTMANN, 0.3),
    "levy10~1": (*LEVY, 1.0),
    "levy10~4": (*LEVY, 4.0),
}
CHECKPOINTS = (25, 50, 100)


def run(variant, seed, trials):
    f, low, high, minimum, sd = VARIANTS[variant]
    noise = np.random.default_rng(1000 + seed)
    sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=10)
    study = optuna.create_study(sampler=sampler)
    best_observed, best_true, regret = math.inf, math.inf, []

    def objective(trial):
        nonlocal best_observed, best_true
        x = [trial.suggest_float(f"x{i}", lo, hi) for i, (lo, hi) in enumerate(zip(low, high))]
        true = f(x)
        observed = true + sd * noise.standard_normal()
        if observed < best_observed:
            best_observed, best_true = observed, true
        regret.append(best_true - minimum)
        return observed

    study.optimize(objective, n_trials=trials)
    return regret


def quartiles(values):
    """The Rust bench's quartiles: the sorted value at index round((n - 1) q), halves rounded up."""
    v = sorted(values)
    return [v[math.floor((len(v) - 1) * q + 0.5)] for q in (0.25, 0.5, 0.75)]


def main():
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    trials = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    names = sys.argv[3:] or list(VARIANTS)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"optuna {optuna.__version__} GPSampler, {seeds} seeds: regret of the best observed point")
    for name in names:
        runs = [run(name, s, trials) for s in range(seeds)]
        line = f"{name:<14} optuna-gp"
        for c in CHECKPOINTS:
            if c <= trials:
                q1, m, q3 = quartiles([r[c - 1] for r in runs])
                line += f" {m:>9.3e} [{q1:>8.2e},{q3:>8.2e}]"
        print(line, flush=True)


if __name__ == "__main__":
    main()
