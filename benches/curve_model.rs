//! How well `sweep::curve` forecasts a recorded curve's final value from its first reports.
//!
//! For each recorded curve (the complete trials of a `sweep export --format json` file) and
//! each cut (the first k reports), the forecast of the final report is checked against the
//! recorded final: how often the truth falls inside the forecast's 80% interval (calibration:
//! 80% is right), the median absolute error of the forecast's mean beside that of the last
//! report taken as the final (what a pruner compares today), and Kendall's tau across curves
//! between the truth and the forecast mean, beside the tau of the best value so far (what
//! ranks trials at a rung). The prior is `curve::Prior::from_finished` over the other curves
//! (leave one out). Last, the median time of one forecast, its prior included, and of one
//! `min_promise` decision in a study of 100 trials.
//!
//! Run: `cargo bench --bench curve_model` (the curves of `benches/data/pruner-curves.json` and,
//! when present, `benches/data/curves-finetune.json`; `SWEEP_CURVES=FILE SWEEP_CURVES_STUDY=TOML`
//! for another export). `cargo test --all-targets` runs it once as a smoke test.

#[path = "support/recorded.rs"]
mod recorded;

use recorded::Recorded;
use std::path::Path;
use std::time::Instant;
use sweep::curve::{forecast, Prior};
use sweep::pruner::{from_config, Verdict};
use sweep::study::{Direction, Objective, PrunerConfig, PrunerRule};
use sweep::trial::{History, Trial, TrialState};

const SETS: &[(&str, &str)] = &[
    ("benches/data/pruner-curves.json", "studies/pruner-curves.toml"),
    ("benches/data/curves-finetune.json", "studies/curves-finetune.toml"),
];

fn kendall(pairs: &[(f64, f64)]) -> f64 {
    let mut score = 0.0;
    for (i, a) in pairs.iter().enumerate() {
        for b in &pairs[..i] {
            score += ((a.0 - b.0) * (a.1 - b.1)).signum();
        }
    }
    score / (pairs.len() * (pairs.len() - 1) / 2).max(1) as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(name: &str, curves: &[Vec<(i64, f64)>]) {
    let length = curves.iter().map(Vec::len).min().unwrap_or(0);
    let curves: Vec<&[(i64, f64)]> = curves.iter().filter(|c| c.len() >= length).map(|c| &c[..length]).collect();
    println!("{name}: {} curves of {length} reports", curves.len());
    println!(
        "{:>5} {:>9} {:>10} {:>11} {:>9} {:>11}",
        "cut", "in 80%", "|err| fc", "|err| last", "tau fc", "tau so far"
    );
    let mut times = Vec::new();
    let mut cuts: Vec<usize> = [1, 2, 3, 5, length / 3, length / 2, 2 * length / 3, length - 1].to_vec();
    cuts.retain(|&k| k >= 1 && k < length);
    cuts.sort();
    cuts.dedup();
    for k in cuts {
        let (mut inside, mut err_fc, mut err_last, mut fc_pairs, mut so_far_pairs) =
            (0, vec![], vec![], vec![], vec![]);
        for (i, c) in curves.iter().enumerate() {
            let (step, horizon) = (c[k - 1].0, c[length - 1].0);
            let start = Instant::now();
            let others = curves.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, c)| *c);
            let prior = Prior::from_finished(others, step, horizon).unwrap();
            let points: Vec<(f64, f64)> = c[..k].iter().map(|&(s, v)| (s as f64, v)).collect();
            let fc = forecast(&points, horizon as f64, prior).unwrap();
            times.push(start.elapsed().as_secs_f64());
            let truth = c[length - 1].1;
            inside += usize::from(fc.quantile(0.1) <= truth && truth <= fc.quantile(0.9));
            err_fc.push((fc.mean() - truth).abs());
            err_last.push((points[k - 1].1 - truth).abs());
            fc_pairs.push((fc.mean(), truth));
            so_far_pairs.push((points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min), truth));
        }
        println!(
            "{k:>5} {:>8.0}% {:>10.4} {:>11.4} {:>9.2} {:>11.2}",
            100.0 * inside as f64 / curves.len() as f64,
            median(err_fc),
            median(err_last),
            kendall(&fc_pairs),
            kendall(&so_far_pairs)
        );
    }
    println!("forecast time: median {:.1} µs\n", 1e6 * median(times));
}

/// The time of one `min_promise` decision (Hyperband's stop overruled or not) in a study of
/// 100 trials made of these curves: 99 complete, the judged one running at its third report.
fn decision_time(curves: &[Vec<(i64, f64)>]) {
    let horizon = curves.iter().filter_map(|c| c.last().map(|p| p.0)).min().unwrap();
    let trial = |number: u64, curve: &[(i64, f64)], state| Trial {
        curve: curve.to_vec(),
        value: curve.last().map(|p| p.1),
        last_step: curve.last().map(|p| p.0),
        ..Trial::new(number, state, Default::default())
    };
    let mut trials: Vec<Trial> =
        (0..99).map(|i| trial(i as u64, &curves[i % curves.len()], TrialState::Complete)).collect();
    let judged = &curves[curves.len() - 1];
    trials.push(trial(99, &judged[..3.min(judged.len())], TrialState::Running));
    let history = History::new(Objective { metric: "loss".into(), direction: Direction::Minimize }, trials);
    let rung = judged[2].0;
    let pruner = from_config(&PrunerConfig {
        rule: PrunerRule::Asha { min_resource: rung, max_resource: Some(horizon), eta: 100 },
        min_promise: Some(0.1),
        ..PrunerConfig::default()
    });
    let mut times = Vec::new();
    let mut verdict = Verdict::Continue;
    for _ in 0..200 {
        let start = Instant::now();
        verdict = pruner.decide(&history.trials[99], &history);
        times.push(start.elapsed().as_secs_f64());
    }
    let (q1, m, q3) = {
        times.sort_by(f64::total_cmp);
        (times[50], times[100], times[150])
    };
    println!(
        "min_promise decision at 100 trials (ASHA keeps 1 in 100 at step {rung}): median {:.2} ms [{:.2}, {:.2}]; {verdict:?}\n",
        1e3 * m,
        1e3 * q1,
        1e3 * q3
    );
}

fn main() {
    let mut sets: Vec<(String, String)> = SETS.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    if let (Ok(export), Ok(study)) = (std::env::var("SWEEP_CURVES"), std::env::var("SWEEP_CURVES_STUDY")) {
        sets = vec![(export, study)];
    }
    for (export, study) in sets.iter().filter(|(e, _)| Path::new(e).exists()) {
        let recorded = Recorded::load(Path::new(export), Path::new(study));
        report(export, &recorded.curves);
        decision_time(&recorded.curves);
    }
}
