//! Samplers with and without early stopping at equal compute, on synthetic learning curves.
//!
//! A configuration `x` in [0, 1]^4 has a noiseless final loss `0.2 + 0.6 b(x0, x1) + 0.2
//! (x2 - 0.3)^2` (`b`: branin, log-scaled to [0, 1]; the optimum is 0.2) and a learning curve
//! that reaches it at step `STEPS`, one report per step with normal noise (sd 0.02). Three
//! families of curves:
//! - `fast`: every curve falls as `exp(-k t)`, `k` from x3 (a learning rate that changes
//!   speed, not the final value);
//! - `late`: the better the final value, the slower and higher the start (late bloomers: early
//!   rankings are misleading);
//! - `diverge`: x3 is a learning rate: higher learns faster, but above 0.7 the loss turns and
//!   climbs after a fifth of the run (fast starters that end badly).
//!
//! Four workers run trials asynchronously, one step per tick each, until `BUDGET` steps in
//! all have been spent (a trial still running then is cut and not counted). Each method gets
//! the same budget: random and gp without pruning, and with Hyperband (min_resource 1,
//! max_resource STEPS, eta 3): random, gp reading a pruned trial's last value as its final
//! (`gp+hb last`, the rule before multi-fidelity), and gp over configuration and resource
//! together (`gp+hb mf`, `sampler/fidelity.rs`). The regret of a run at some compute is the noiseless
//! final loss of the trial a user would pick then (the complete trial with the best observed
//! final value) minus the optimum. Prints the median and quartiles over the seeds at a third,
//! two thirds and all of the budget, and the trials started.
//!
//! Run: `cargo bench --bench multifidelity` (10 seeds). `cargo test --all-targets` runs a
//! small smoke version.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution as _, Normal};
use std::f64::consts::PI;
use sweep::pruner::{from_config, Pruner, Verdict};
use sweep::sampler::{trial_rng, GpSampler, RandomSampler, Sampler};
use sweep::space::{Distribution, Param, Params, Space};
use sweep::study::{Direction, Objective, PrunerConfig, PrunerRule};
use sweep::trial::{History, Trial, TrialState};

const STEPS: i64 = 27;
const WORKERS: usize = 4;
const NOISE_SD: f64 = 0.02;
const OPTIMUM: f64 = 0.2;

/// The noiseless final loss of configuration `x`.
fn final_loss(x: &[f64]) -> f64 {
    let (a, b) = (15.0 * x[0] - 5.0, 15.0 * x[1]);
    let branin = (b - 5.1 / (4.0 * PI * PI) * a * a + 5.0 / PI * a - 6.0).powi(2)
        + 10.0 * (1.0 - 1.0 / (8.0 * PI)) * a.cos()
        + 10.0;
    let scaled = (1.0 + (branin - 0.397_887_357_729_738).max(0.0)).ln() / 309f64.ln();
    OPTIMUM + 0.6 * scaled.min(1.0) + 0.2 * (x[2] - 0.3).powi(2)
}

/// `(e^{-kt} - e^{-k}) / (1 - e^{-k})`: 1 at t = 0, 0 at t = 1.
fn decay(k: f64, t: f64) -> f64 {
    ((-k * t).exp() - (-k).exp()) / (1.0 - (-k).exp())
}

#[derive(Clone, Copy)]
enum Family {
    Fast,
    Late,
    Diverge,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Fast => "fast",
            Family::Late => "late",
            Family::Diverge => "diverge",
        }
    }

    /// The noiseless loss of `x` at fraction `t` of the run.
    fn loss(self, x: &[f64], t: f64) -> f64 {
        let f = final_loss(x);
        match self {
            Family::Fast => f + decay(2.0 + 6.0 * x[3], t),
            Family::Late => {
                let quality = 1.0 - (f - OPTIMUM) / 0.8; // 1 at the optimum
                f + (0.5 + quality) * decay(8.0 - 7.0 * quality, t)
            }
            Family::Diverge => f + decay(1.0 + 8.0 * x[3], t) + 3.0 * (x[3] - 0.7).max(0.0) * (t - 0.2).max(0.0),
        }
    }
}

fn space() -> Space {
    let param = |i: usize| Param {
        name: format!("x{i}"),
        distribution: Distribution::Float { low: 0.0, high: 1.0, log: false, step: None },
        conditions: vec![],
        grid: None,
    };
    Space { params: (0..4).map(param).collect() }
}

fn point(p: &Params) -> Vec<f64> {
    (0..4).map(|i| p[&format!("x{i}")].as_f64().unwrap()).collect()
}

/// Regret at each step spent, for one method, family and seed; and the trials started.
fn simulate(family: Family, sampler: &dyn Sampler, pruner: &dyn Pruner, seed: u64, budget: usize) -> (Vec<f64>, usize) {
    let space = space();
    let mut history = History::new(Objective { metric: "loss".into(), direction: Direction::Minimize }, vec![]);
    let mut noise = StdRng::seed_from_u64(7 + seed);
    let normal = Normal::new(0.0, NOISE_SD).unwrap();
    let (mut running, mut spent): (Vec<usize>, usize) = (Vec::new(), 0);
    let mut regret = Vec::with_capacity(budget);
    let mut picked: Option<(f64, f64)> = None; // (observed final, noiseless final) of the best complete trial
    while spent < budget {
        while running.len() < WORKERS {
            let number = history.trials.len() as u64;
            let proposal = sampler.propose(&space, &history, &mut trial_rng(seed, number));
            let trial =
                Trial { sampler_state: proposal.state, ..Trial::new(number, TrialState::Running, proposal.params) };
            history.trials.push(trial);
            running.push(number as usize);
        }
        let mut still = Vec::new();
        for i in running {
            if spent >= budget {
                history.trials[i].state = TrialState::Failed; // cut by the budget
                continue;
            }
            spent += 1;
            let x = point(&history.trials[i].params);
            let step = history.trials[i].curve.len() as i64 + 1;
            let value = family.loss(&x, step as f64 / STEPS as f64) + normal.sample(&mut noise);
            let trial = &mut history.trials[i];
            trial.curve.push((step, value));
            trial.last_step = Some(step);
            let stop = step == STEPS || matches!(pruner.decide(&history.trials[i], &history), Verdict::Stop(_));
            if stop {
                let trial = &mut history.trials[i];
                trial.value = Some(value);
                trial.state = if step == STEPS { TrialState::Complete } else { TrialState::Pruned };
                if step == STEPS && picked.is_none_or(|(best, _)| value < best) {
                    picked = Some((value, final_loss(&x)));
                }
            } else {
                still.push(i);
            }
            regret.push(picked.map_or(f64::NAN, |(_, truth)| truth - OPTIMUM));
        }
        running = still;
    }
    (regret, history.trials.len())
}

fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    // A run with no complete trial yet has no pick: it ranks last.
    v.sort_by(|a, b| a.is_nan().cmp(&b.is_nan()).then(a.total_cmp(b)));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (seeds, budget) = if full { (10u64, 40 * STEPS as usize) } else { (1, 6 * STEPS as usize) };
    let families = if full { vec![Family::Fast, Family::Late, Family::Diverge] } else { vec![Family::Diverge] };
    let none = from_config(&PrunerConfig::default());
    let hyperband = from_config(&PrunerConfig {
        rule: PrunerRule::Hyperband { min_resource: 1, max_resource: STEPS, eta: 3 },
        ..PrunerConfig::default()
    });
    let (random, gp) = (RandomSampler, GpSampler::new(10));
    let gp_last = GpSampler { multi_fidelity: false, ..GpSampler::new(10) };
    let methods: [(&str, &dyn Sampler, &dyn Pruner); 5] = [
        ("random", &random, none.as_ref()),
        ("gp", &gp, none.as_ref()),
        ("random+hb", &random, hyperband.as_ref()),
        ("gp+hb last", &gp_last, hyperband.as_ref()),
        ("gp+hb mf", &gp, hyperband.as_ref()),
    ];
    println!(
        "{seeds} seeds, budget {budget} steps ({} full runs of {STEPS}), {WORKERS} workers; regret: median [q1, q3]",
        budget / STEPS as usize
    );
    println!(
        "{:<8} {:<11} {:>26} {:>26} {:>26} {:>7} {:>8}",
        "curves", "method", "1/3 budget", "2/3", "all", "trials", "s/seed"
    );
    for family in families {
        for (name, sampler, pruner) in methods {
            let start = std::time::Instant::now();
            let runs: Vec<(Vec<f64>, usize)> =
                (0..seeds).map(|s| simulate(family, sampler, pruner, s, budget)).collect();
            let secs = start.elapsed().as_secs_f64() / seeds as f64;
            let mut line = format!("{:<8} {:<11}", family.name(), name);
            for share in [1.0 / 3.0, 2.0 / 3.0, 1.0] {
                let at = ((budget as f64 * share).round() as usize).max(1) - 1;
                let (q1, m, q3) = quartiles(runs.iter().map(|(r, _)| r[at]).collect());
                line += &format!(" {m:>8.4} [{q1:>7.4}, {q3:>7.4}]");
            }
            let trials = runs.iter().map(|r| r.1).sum::<usize>() as f64 / seeds as f64;
            println!("{line} {trials:>7.0} {secs:>8.2}");
        }
    }
}
