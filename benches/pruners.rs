//! Pruners on synthetic learning curves, simulated in-process (no processes, no database).
//!
//! Each trial has a known final value `f` and a noisy decaying curve that reaches it at the last
//! step: `v(t) = f + a * g_k(t / T) + noise`, with `g_k(x) = (e^{-kx} - e^{-k}) / (1 - e^{-k})`.
//! Most curves drop fast (k in 3..6); one in five is a late bloomer (k in 0.5..1.5) whose rank
//! settles only near the end. Finals `f = 0.2 + 0.8 u^2` crowd near the optimum 0.2, as a
//! sweep's good configurations do; the last report is exactly `f`.
//!
//! The study runs 8 trials at a time in lockstep, one report per trial per tick, as the
//! coordinator would: after each report the pruner decides from a `History` of every trial so
//! far. For each pruner it prints the steps consumed (as a share of running every trial to the
//! end) and the regret: the best final value among trials that ran to the end against the best
//! final value of all trials, relative, in percent.
//!
//! Run: `cargo bench --bench pruners`. Under `cargo test --all-targets` it runs a tiny version.
//!
//! Real curves: `SWEEP_CURVES=trials.json cargo bench --bench pruners` replays the complete
//! trials of a `sweep export NAME --format json` instead (the objective read from
//! `SWEEP_CURVES_METRIC`, default val_acc, maximized unless `SWEEP_CURVES_DIRECTION=minimize`),
//! one report per step, in the order run and 9 random ones (`SWEEP_CURVES_ORDERS`). A replay is
//! exact for a random sampler: its proposals do not depend on which trials were pruned.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use sweep::pruner::{from_config, Pruner, Verdict};
use sweep::study::{Direction, Objective, PrunerConfig, PrunerRule};
use sweep::trial::{History, Trial, TrialState};

/// Trials at a time in the simulation (`SWEEP_CURVES_PARALLEL` sets it for a replay).
const PARALLEL: usize = 8;

fn parallel() -> usize {
    std::env::var("SWEEP_CURVES_PARALLEL").ok().and_then(|p| p.parse().ok()).unwrap_or(PARALLEL)
}

/// A trial's reports at steps 1..=steps (the last one is its final value) and that final value.
struct Curve {
    values: Vec<f64>,
    last: f64,
}

fn curves(n: usize, steps: usize, seed: u64) -> Vec<Curve> {
    let mut rng = StdRng::seed_from_u64(seed);
    let noise = Normal::new(0.0, 0.01).unwrap();
    (0..n)
        .map(|_| {
            let f = 0.2 + 0.8 * rng.random::<f64>().powi(2);
            let a = rng.random_range(0.3..1.5);
            let k = if rng.random_bool(0.2) { rng.random_range(0.5..1.5) } else { rng.random_range(3.0..6.0) };
            let g = |x: f64| ((-k * x).exp() - (-k).exp()) / (1.0 - (-k).exp());
            let mut values: Vec<f64> =
                (1..=steps).map(|t| f + a * g(t as f64 / steps as f64) + noise.sample(&mut rng)).collect();
            values[steps - 1] = f;
            Curve { values, last: f }
        })
        .collect()
}

fn new_trial(number: u64) -> Trial {
    Trial::new(number, TrialState::Running, Default::default())
}

struct Result {
    steps: usize,
    regret_pct: f64,
    completed: usize,
}

/// Runs every curve as a trial, `parallel()` at a time, asking `pruner` after each report.
/// Minimization values: a maximized metric is negated. Regret is relative to |best|, so it
/// reads the same in the metric's own units. A paused trial (`mode = "pause"`) takes the next
/// free slot once the pruner finds it promotable, before any new trial, and goes on where it
/// paused (as a resumed checkpoint does); one never promoted stays pruned.
fn simulate(pruner: &dyn Pruner, curves: &[Curve]) -> Result {
    let objective = Objective { metric: "loss".into(), direction: Direction::Minimize };
    let mut history = History::new(objective, Vec::new());
    let mut running: Vec<usize> = Vec::new();
    let mut next = 0;
    let mut steps = 0;
    loop {
        if running.len() < parallel() {
            for number in pruner.promotable(&history).into_iter().take(parallel() - running.len()) {
                let t = &mut history.trials[number as usize];
                (t.state, t.paused) = (TrialState::Running, false);
                running.push(number as usize);
            }
        }
        while running.len() < parallel() && next < curves.len() {
            history.trials.push(new_trial(next as u64));
            running.push(next);
            next += 1;
        }
        if running.is_empty() {
            break;
        }
        let mut still = Vec::new();
        for &i in &running {
            let curve = &curves[i].values;
            let t = &mut history.trials[i];
            let step = t.curve.len() + 1;
            t.curve.push((step as i64, curve[step - 1]));
            t.last_step = Some(step as i64);
            steps += 1;
            let verdict = pruner.decide(&history.trials[i], &history);
            let t = &mut history.trials[i];
            t.paused = matches!(verdict, Verdict::Pause(_));
            match verdict {
                Verdict::Stop(reason) | Verdict::Pause(reason) => {
                    t.state = TrialState::Pruned;
                    t.value = Some(curve[step - 1]);
                    t.reason = Some(reason);
                }
                Verdict::Continue if step == curve.len() => {
                    t.state = TrialState::Complete;
                    t.value = Some(curves[i].last);
                }
                Verdict::Continue => still.push(i),
            }
        }
        running = still;
    }
    let best = curves.iter().map(|c| c.last).fold(f64::INFINITY, f64::min);
    let found = history.completed().map(|(_, v)| v).fold(f64::INFINITY, f64::min);
    Result { steps, regret_pct: (found - best) / best.abs() * 100.0, completed: history.count(TrialState::Complete) }
}

/// The pruners compared. ASHA and Hyperband run with min_resource 1 and, where the curve is long
/// enough, with min_resource = steps / 27 too (three rungs below the end, eta 3).
fn pruners(steps: i64) -> Vec<(String, PrunerConfig)> {
    let with = |rule| PrunerConfig { rule, ..PrunerConfig::default() };
    let mut out = vec![
        ("none".to_string(), with(PrunerRule::None)),
        (
            "median".to_string(),
            with(PrunerRule::Percentile { percentile: 50.0, warmup_steps: 0, min_trials: 5, median: true }),
        ),
    ];
    let mut mins = vec![1];
    if steps / 27 > 1 {
        mins.push(steps / 27);
    }
    for pause in [false, true] {
        let mode = if pause { " pause" } else { "" };
        let with = |rule| PrunerConfig { rule, pause, ..PrunerConfig::default() };
        for &min in &mins {
            out.push((
                format!("asha r{min}{mode}"),
                with(PrunerRule::Asha { min_resource: min, max_resource: Some(steps), eta: 3 }),
            ));
        }
        for &min in &mins {
            out.push((
                format!("hyperband r{min}{mode}"),
                with(PrunerRule::Hyperband { min_resource: min, max_resource: steps, eta: 3 }),
            ));
        }
    }
    out
}

fn main() {
    if let Ok(path) = std::env::var("SWEEP_CURVES") {
        return replay(&path);
    }
    // `cargo bench` passes --bench; `cargo test` does not.
    let full = std::env::args().any(|a| a == "--bench");
    let (trials, lengths, seeds): (usize, Vec<usize>, u64) =
        if full { (200, vec![27, 81], 10) } else { (24, vec![9], 1) };
    println!(
        "{trials} trials, {PARALLEL} at a time, {seeds} seeds; eta 3, rN = min_resource N; finals 0.2 + 0.8 u^2, 20% late bloomers, noise sd 0.01"
    );
    print_header();
    for &length in &lengths {
        let all: Vec<Vec<Curve>> = (0..seeds).map(|s| curves(trials, length, s)).collect();
        compare(length, &all);
    }
}

/// The pruners on the curves of a real sweep, in several trial orders.
fn replay(path: &str) {
    let metric = std::env::var("SWEEP_CURVES_METRIC").unwrap_or_else(|_| "val_acc".into());
    let sign = if std::env::var("SWEEP_CURVES_DIRECTION").as_deref() == Ok("minimize") { 1.0 } else { -1.0 };
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let trials: Vec<serde_json::Value> = serde_json::from_str(&text).expect("a `sweep export --format json` file");
    let curves: Vec<Curve> = trials
        .iter()
        .filter(|t| t["state"] == "complete")
        .filter_map(|t| {
            let reports = t["reports"].as_array()?;
            let values: Vec<f64> = reports.iter().filter_map(|r| r[&metric].as_f64()).map(|v| sign * v).collect();
            let last = sign * t["metrics"][&metric].as_f64()?;
            (!values.is_empty()).then_some(Curve { values, last })
        })
        .collect();
    let length = curves.iter().map(|c| c.values.len()).min().expect("complete trials with reports of the metric");
    let curves: Vec<Curve> =
        curves.into_iter().map(|c| Curve { values: c.values[..length].to_vec(), last: c.last }).collect();
    let n_orders: u64 = std::env::var("SWEEP_CURVES_ORDERS").ok().and_then(|n| n.parse().ok()).unwrap_or(10);
    println!(
        "{} real curves of `{metric}` from {path}, {length} reports each, {} at a time, {n_orders} trial orders (the first as run); eta 3, steps = reports",
        curves.len(),
        parallel()
    );
    let orders: Vec<Vec<Curve>> = (0..n_orders)
        .map(|seed| {
            let mut order: Vec<usize> = (0..curves.len()).collect();
            if seed > 0 {
                order.shuffle(&mut StdRng::seed_from_u64(seed));
            }
            order.iter().map(|&i| Curve { values: curves[i].values.clone(), last: curves[i].last }).collect()
        })
        .collect();
    print_header();
    compare(length, &orders);
}

fn print_header() {
    println!("steps: share of running every trial to the end; regret: best final found vs best of all, relative");
    println!();
    println!(
        "{:>5}  {:<19} {:>9} {:>10} {:>12} {:>11} {:>10}",
        "steps", "pruner", "steps %", "completed", "mean regret", "max regret", "ms/seed"
    );
}

/// Runs every pruner over every set of curves and prints one row per pruner.
fn compare(length: usize, all: &[Vec<Curve>]) {
    let trials = all[0].len();
    let full_steps = (trials * length) as f64;
    for (name, config) in pruners(length as i64) {
        let pruner = from_config(&config);
        let start = std::time::Instant::now();
        let results: Vec<Result> = all.iter().map(|c| simulate(pruner.as_ref(), c)).collect();
        let ms = start.elapsed().as_secs_f64() * 1000.0 / all.len() as f64;
        let n = results.len() as f64;
        let steps = results.iter().map(|r| r.steps as f64).sum::<f64>() / n / full_steps * 100.0;
        let completed = results.iter().map(|r| r.completed as f64).sum::<f64>() / n;
        let mean = results.iter().map(|r| r.regret_pct).sum::<f64>() / n;
        let max = results.iter().map(|r| r.regret_pct).fold(0.0, f64::max);
        println!("{length:>5}  {name:<19} {steps:>8.1}% {completed:>10.1} {mean:>11.3}% {max:>10.3}% {ms:>10.1}");
    }
}
