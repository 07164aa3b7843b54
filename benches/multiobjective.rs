//! Multi-objective sampler quality: hypervolume on standard problems with known fronts.
//!
//! Run: `cargo bench --bench multiobjective` (single-threaded). For each problem of
//! `sweep::mofns::suite()` (ZDT1 and ZDT2 with 6 variables, DTLZ2 and the constrained
//! C2-DTLZ2 with 3 objectives and 12 variables, and `mixed`, two objectives over a categorical,
//! an int and a conditional float besides four floats) and each sampler, 10 seeds (`SWEEP_SEEDS=N`
//! for more) x 100 trials: the hypervolume of the feasible trials against the problem's fixed
//! reference point at trials 50 and 100, as a fraction of the true front's (median [q1, q3]),
//! and the median ms per suggestion over trials 91-100. Random search and the GP (one model per
//! objective and for C2-DTLZ2's constraint, log EHVI), side by side with Optuna's samplers
//! (`benches/optuna_multiobjective.py`).
//! Under `cargo test --all-targets` it runs a small smoke version.

use std::time::Instant;
use sweep::mofns::MoFn;
use sweep::sampler::{trial_rng, GpSampler, RandomSampler, Sampler};
use sweep::study::{Constraint, Direction, Goals, Objective};
use sweep::trial::{History, Trial, TrialState};

const CHECKPOINTS: [usize; 2] = [50, 100];

/// One run: after each trial, the hypervolume of the feasible points so far; ms per suggestion.
fn optimize(f: &MoFn, sampler: &dyn Sampler, seed: u64, trials: usize) -> (Vec<f64>, Vec<f64>) {
    let space = f.space();
    let objectives =
        (1..=f.objectives).map(|i| Objective { metric: format!("f{i}"), direction: Direction::Minimize }).collect();
    let constraints = f.constrained.then(|| Constraint::parse("c <= 0").expect("a constraint")).into_iter().collect();
    let mut history = History::with_goals(Goals { objectives, constraints }, vec![]);
    let (mut volumes, mut millis, mut feasible) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..trials as u64 {
        let start = Instant::now();
        let proposal = sampler.propose(&space, &history, &mut trial_rng(seed, n));
        millis.push(start.elapsed().as_secs_f64() * 1000.0);
        let (values, constraint) = f.at(&f.point(&proposal.params).expect("the problem's own params"));
        let mut metrics: sweep::trial::Metrics =
            values.iter().enumerate().map(|(i, v)| (format!("f{}", i + 1), *v)).collect();
        if let Some(c) = constraint {
            metrics.insert("c".into(), c);
        }
        if constraint.is_none_or(|c| c <= 0.0) {
            feasible.push(values.clone());
        }
        volumes.push(sweep::pareto::hypervolume(&feasible, f.reference));
        let trial = Trial {
            value: Some(values[0]),
            metrics: Some(metrics),
            sampler_state: proposal.state,
            ..Trial::new(n, TrialState::Complete, proposal.params)
        };
        history.trials.push(trial);
    }
    (volumes, millis)
}

fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let seeds: u64 = std::env::var("SWEEP_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    // Names after `--` pick problems (`cargo bench --bench multiobjective -- dtlz2`).
    let picked: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let problems: Vec<MoFn> =
        sweep::mofns::suite().into_iter().filter(|f| picked.is_empty() || picked.iter().any(|p| p == f.name)).collect();
    let (seeds, trials) = if full { (seeds, 100usize) } else { (1, 50) };
    let (random, gp) = (RandomSampler, GpSampler::new(10));
    let samplers: [(&str, &dyn Sampler); 2] = [("random", &random), ("gp", &gp)];
    println!("hypervolume / true front's: median [q1, q3] over {seeds} seeds; ms per suggestion");
    println!("{:<9} {:<7} {:>24} {:>24} {:>8}", "problem", "sampler", "trial 50", "trial 100", "ms");
    for f in &problems {
        let best = f.front_hypervolume();
        for (name, sampler) in samplers {
            let runs: Vec<(Vec<f64>, Vec<f64>)> = (0..seeds).map(|s| optimize(f, sampler, s, trials)).collect();
            let mut line = format!("{:<9} {:<7}", f.name, name);
            for c in CHECKPOINTS.iter().filter(|&&c| c <= trials) {
                let (q1, m, q3) = quartiles(runs.iter().map(|(v, _)| v[c - 1] / best).collect());
                line += &format!(" {m:>8.4} [{q1:>6.4},{q3:>6.4}]");
            }
            let late = trials.saturating_sub(10);
            let (_, ms, _) = quartiles(runs.iter().flat_map(|(_, t)| t[late..].iter().copied()).collect());
            println!("{line} {ms:>8.3}");
        }
    }
}
