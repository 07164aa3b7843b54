//! Sampler quality and speed on standard test functions.
//!
//! Run: `cargo bench --bench samplers` (single-threaded). For each function and sampler, 10
//! seeds (`SWEEP_SEEDS=N` for more) x 100 trials: median and quartiles of simple regret (best
//! so far minus the known optimum) at trials 25, 50 and 100, on the functions as they are and
//! on noisy variants (`branin~2`: normal noise of standard deviation 2 on each observation;
//! the regret is then the noiseless value of the best observed point;
//! `benches/optuna_noisy.py` runs Optuna's GPSampler on the same variants). For gp, the median
//! ms per suggestion just after startup and over trials 91-100; then the suggestion time at
//! 100, 300 and 1000 observations.
//! Under `cargo test --all-targets` it runs a small smoke version.

use rand::SeedableRng;
use rand_distr::{Distribution as _, StandardNormal};
use std::time::Instant;
use sweep::sampler::{trial_rng, GpSampler, RandomSampler, Sampler};
use sweep::space::{Distribution, Param, Params, Space};
use sweep::study::{Direction, Objective};
use sweep::testfns::{self, TestFn};
use sweep::trial::{History, Trial, TrialState};

const CHECKPOINTS: [usize; 3] = [25, 50, 100];
const STARTUP: usize = 10;
/// Noisy variants: each trial observes `f(x) + N(0, sd^2)`. Keep in step with VARIANTS in
/// `benches/optuna_noisy.py`, which runs Optuna's GPSampler on the same variants.
const NOISY: [(&str, f64); 6] =
    [("branin", 0.5), ("branin", 2.0), ("hartmann6", 0.1), ("hartmann6", 0.3), ("levy10", 1.0), ("levy10", 4.0)];

fn space_of(f: &TestFn) -> Space {
    let params = (0..f.dims)
        .map(|i| {
            let (low, high) = f.bounds(i);
            Param {
                name: format!("x{i}"),
                distribution: Distribution::Float { low, high, log: false, step: None },
                conditions: vec![],
                grid: None,
            }
        })
        .collect();
    Space { params }
}

fn point(f: &TestFn, p: &Params) -> Vec<f64> {
    (0..f.dims).map(|i| p[&format!("x{i}")].as_f64().unwrap()).collect()
}

fn trial(number: u64, params: Params, value: f64, state: Option<serde_json::Value>) -> Trial {
    Trial { value: Some(value), sampler_state: state, ..Trial::new(number, TrialState::Complete, params) }
}

/// One optimization run: after each trial, the regret of the best observed point (its noiseless
/// value minus the optimum: what a user picking from the trial list gets), and ms per suggestion.
/// With `noise_sd > 0` each trial observes the value plus normal noise.
fn optimize(f: &TestFn, noise_sd: f64, sampler: &dyn Sampler, seed: u64, trials: usize) -> (Vec<f64>, Vec<f64>) {
    let space = space_of(f);
    let objective = Objective { metric: "value".into(), direction: Direction::Minimize };
    let mut history = History::new(objective, vec![]);
    let (mut regret, mut millis) = (Vec::new(), Vec::new());
    let mut noise = rand::rngs::StdRng::seed_from_u64(1000 + seed);
    let (mut best_observed, mut best_true) = (f64::INFINITY, f64::INFINITY);
    for n in 0..trials as u64 {
        let start = Instant::now();
        let proposal = sampler.propose(&space, &history, &mut trial_rng(seed, n));
        millis.push(start.elapsed().as_secs_f64() * 1000.0);
        let value = (f.eval)(&point(f, &proposal.params));
        let draw: f64 = StandardNormal.sample(&mut noise);
        let observed = if noise_sd > 0.0 { value + noise_sd * draw } else { value };
        if observed < best_observed {
            (best_observed, best_true) = (observed, value);
        }
        regret.push(best_true - f.minimum);
        history.trials.push(trial(n, proposal.params, observed, proposal.state));
    }
    (regret, millis)
}

fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

/// Median ms of a suggestion with about `n` random observations of hartmann6 in the history,
/// over one whole refit cycle (n, n+1 and n+2 observations), warm-started as in a study.
fn time_at(n: usize, repeats: usize) -> f64 {
    let f = testfns::by_name("hartmann6").unwrap();
    let space = space_of(&f);
    let gp = GpSampler::new(STARTUP);
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    let mut history = History::new(Objective { metric: "v".into(), direction: Direction::Minimize }, vec![]);
    let mut ms = Vec::new();
    for i in 0..(n + 3) as u64 {
        if i as usize >= n {
            for r in 0..repeats {
                let start = Instant::now();
                gp.propose(&space, &history, &mut trial_rng(2, r as u64));
                ms.push(start.elapsed().as_secs_f64() * 1000.0);
            }
        }
        let p = space.sample(&mut rng);
        let v = (f.eval)(&point(&f, &p));
        // The kernel a study would carry: fitted once on the way (cold), then warm.
        let state = if i as usize + 1 >= n { gp.propose(&space, &history, &mut trial_rng(1, i)).state } else { None };
        history.trials.push(trial(i, p, v, state));
    }
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (mut variants, seeds, trials): (Vec<(TestFn, f64)>, _, _) = if full {
        (testfns::benchmark_suite().into_iter().map(|f| (f, 0.0)).collect(), seeds_or(10), 100usize)
    } else {
        (vec![(testfns::by_name("branin").unwrap(), 0.0)], 1, 15)
    };
    let noisy = NOISY.iter().map(|&(name, sd)| (testfns::by_name(name).expect("known function"), sd));
    variants.extend(if full { noisy.collect::<Vec<_>>() } else { noisy.take(1).collect() });
    // `cargo bench --bench samplers -- NAME...` runs the variants whose label contains a NAME.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if !only.is_empty() {
        variants.retain(|(f, sd)| only.iter().any(|o| label(f, *sd).contains(o.as_str())));
    }
    let random = RandomSampler;
    let gp = GpSampler::new(STARTUP);
    let samplers: [(&str, &dyn Sampler); 2] = [("random", &random), ("gp", &gp)];
    println!(
        "simple regret: median [q1, q3] over {seeds} seeds; gp ms/suggestion: median after startup | at trial {trials}"
    );
    println!(
        "{:<14} {:<7} {:>28} {:>28} {:>28} {:>16}",
        "function", "sampler", "trial 25", "trial 50", "trial 100", "ms"
    );
    // Trials 91-100 of every gp run, all functions together: the "at trial 100" figure.
    let mut late_gp_ms = Vec::new();
    for (f, noise_sd) in &variants {
        for (name, sampler) in samplers {
            let runs: Vec<(Vec<f64>, Vec<f64>)> =
                (0..seeds).map(|s| optimize(f, *noise_sd, sampler, s, trials)).collect();
            let mut line = format!("{:<14} {:<7}", label(f, *noise_sd), name);
            for c in CHECKPOINTS {
                if c <= trials {
                    let (q1, m, q3) = quartiles(runs.iter().map(|(r, _)| r[c - 1]).collect());
                    line += &format!(" {:>9.3e} [{:>8.2e},{:>8.2e}]", m, q1, q3);
                }
            }
            if name == "gp" {
                let (_, first, _) = quartiles(runs.iter().map(|(_, t)| t[STARTUP]).collect());
                // Trials 91-100 of every seed: one trial alone would say only whether it was a refit.
                let (_, last, _) =
                    quartiles(runs.iter().flat_map(|(_, t)| t[trials.saturating_sub(10)..].to_vec()).collect());
                line += &format!(" {first:>7.2} | {last:>6.2}");
                late_gp_ms.extend(runs.iter().flat_map(|(_, t)| t[trials.saturating_sub(10)..].to_vec()));
            }
            println!("{line}");
        }
    }
    let (q1, median, q3) = quartiles(late_gp_ms);
    println!("gp ms/suggestion over trials {}-{trials} of every function and seed: median {median:.2} [q1 {q1:.2}, q3 {q3:.2}]", trials.saturating_sub(9));
    if full {
        for n in [100, 300, 1000] {
            println!(
                "gp suggestion, {n:>4} observations (hartmann6, warm, one refit cycle): median {:.1} ms",
                time_at(n, 3)
            );
        }
    }
}

/// `SWEEP_SEEDS` from the environment (more seeds narrow the median's uncertainty), or `default`.
fn seeds_or(default: u64) -> u64 {
    match std::env::var("SWEEP_SEEDS") {
        Err(_) => default,
        Ok(s) => s.parse().ok().filter(|n| *n > 0).unwrap_or_else(|| panic!("SWEEP_SEEDS={s:?}: not a positive count")),
    }
}

/// `levy10`, or `levy10~4` for its variant with noise of standard deviation 4.
fn label(f: &TestFn, noise_sd: f64) -> String {
    let noise = if noise_sd > 0.0 { format!("~{noise_sd}") } else { String::new() };
    f.name.to_string() + &dims_suffix(f) + &noise
}

fn dims_suffix(f: &TestFn) -> String {
    if matches!(f.name, "branin" | "hartmann6") {
        String::new()
    } else {
        f.dims.to_string()
    }
}
