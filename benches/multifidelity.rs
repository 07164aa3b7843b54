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
//! Replay: the same methods on the real fine-tuning curves of `studies/pruner-curves.toml` (30
//! random configurations of the quickstart task, each run to the end, a report of `val_acc`
//! every 15 of 150 steps), kept as `benches/data/pruner-curves.json` (its `sweep export
//! --format json`). A configuration's curve is the inverse-distance-weighted mean of the
//! `NEIGHBOURS` nearest recorded curves (distance in the unit cube of the study's space,
//! categorical params 0 or 1 apart), which is the recorded curve itself at a recorded
//! configuration; no noise is added (the curves carry their own). Regret is in accuracy: the
//! surrogate's final `val_acc` of the pick below the best recorded final. Before the table,
//! how well the surrogate fits: Kendall's tau between each recorded final and its prediction
//! from the other 29 (leave one out).
//!
//! `replay20` replays the same way the longer curves of `studies/curves-finetune.toml` (20
//! reports of 200 steps, wide learning rates and three schedules, so curves cross), kept as
//! `benches/data/curves-finetune.json`, when that file is there.
//!
//! The `v` methods add the learning-curve veto (`min_promise`, 0.1 or `SWEEP_MIN_PROMISE`,
//! `pruner/promise.rs`); `P`, pause mode. Method or problem names after `--` run only those
//! (`cargo bench --bench multifidelity -- late replay20 gp "gp+hb mf v"`).
//!
//! Run: `cargo bench --bench multifidelity` (10 seeds; `SWEEP_CURVES=FILE` replays another
//! export, `SWEEP_CURVES_STUDY=TOML` with its study file). `cargo test --all-targets` runs a
//! small smoke version.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution as _, Normal};
use std::f64::consts::PI;
#[path = "support/recorded.rs"]
mod recorded;
use recorded::Recorded;
use std::path::Path;
use sweep::pruner::{from_config, Pruner, Verdict};
use sweep::sampler::{trial_rng, GpSampler, RandomSampler, Sampler};
use sweep::space::{values_equal, Distribution, Param, Params, Space};
use sweep::study::{Direction, Objective, PrunerConfig, PrunerRule};
use sweep::trial::{History, Trial, TrialState};

const STEPS: i64 = 27;
const WORKERS: usize = 4;
/// Compute per method: this many full runs' worth of steps.
const FULL_RUNS: usize = 40;
const NOISE_SD: f64 = 0.02;
const OPTIMUM: f64 = 0.2;
/// Recorded curves a replayed configuration's curve is interpolated from.
const NEIGHBOURS: usize = 3;
const CURVES: &str = "benches/data/pruner-curves.json";
const CURVES_STUDY: &str = "studies/pruner-curves.toml";
/// The longer recorded curves (20 reports each) of issue #28.
const REAL_CURVES: &str = "benches/data/curves-finetune.json";
const REAL_CURVES_STUDY: &str = "studies/curves-finetune.toml";

/// A learning-curve problem: its space and length, what a configuration reports at a step, and
/// the regret of its final value.
trait Problem {
    fn name(&self) -> &str;
    fn space(&self) -> &Space;
    fn steps(&self) -> i64;
    /// The loss `params` reports at `step` (1..=steps), noise drawn from `noise`.
    fn observe(&self, params: &Params, step: i64, noise: &mut StdRng) -> f64;
    /// How far the noiseless final loss of `params` is from the best one.
    fn regret(&self, params: &Params) -> f64;
}

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

/// A synthetic family of curves over `[0, 1]^4`.
struct Synthetic {
    family: Family,
    space: Space,
}

impl Synthetic {
    fn new(family: Family) -> Synthetic {
        let param = |i: usize| Param {
            name: format!("x{i}"),
            distribution: Distribution::Float { low: 0.0, high: 1.0, log: false, step: None },
            conditions: vec![],
            grid: None,
        };
        Synthetic { family, space: Space { params: (0..4).map(param).collect() } }
    }

    /// The noiseless loss of `x` at fraction `t` of the run.
    fn loss(&self, x: &[f64], t: f64) -> f64 {
        let f = final_loss(x);
        match self.family {
            Family::Fast => f + decay(2.0 + 6.0 * x[3], t),
            Family::Late => {
                let quality = 1.0 - (f - OPTIMUM) / 0.8; // 1 at the optimum
                f + (0.5 + quality) * decay(8.0 - 7.0 * quality, t)
            }
            Family::Diverge => f + decay(1.0 + 8.0 * x[3], t) + 3.0 * (x[3] - 0.7).max(0.0) * (t - 0.2).max(0.0),
        }
    }
}

fn point(p: &Params) -> Vec<f64> {
    (0..4).map(|i| p[&format!("x{i}")].as_f64().unwrap()).collect()
}

impl Problem for Synthetic {
    fn name(&self) -> &str {
        match self.family {
            Family::Fast => "fast",
            Family::Late => "late",
            Family::Diverge => "diverge",
        }
    }

    fn space(&self) -> &Space {
        &self.space
    }

    fn steps(&self) -> i64 {
        STEPS
    }

    fn observe(&self, params: &Params, step: i64, noise: &mut StdRng) -> f64 {
        self.loss(&point(params), step as f64 / STEPS as f64) + Normal::new(0.0, NOISE_SD).unwrap().sample(noise)
    }

    fn regret(&self, params: &Params) -> f64 {
        final_loss(&point(params)) - OPTIMUM
    }
}

/// Recorded curves, interpolated between their configurations.
struct Replay {
    name: &'static str,
    space: Space,
    configs: Vec<Params>,
    /// Each recorded trial's losses (the metric, negated when maximized), one per report.
    curves: Vec<Vec<f64>>,
    best_final: f64,
}

impl Replay {
    /// The complete trials of a `sweep export --format json` file, in the space of `study`.
    fn load(name: &'static str, export: &Path, study: &Path) -> Replay {
        let Recorded { space, configs, curves } = Recorded::load(export, study);
        let mut curves: Vec<Vec<f64>> = curves.into_iter().map(|c| c.into_iter().map(|p| p.1).collect()).collect();
        let length = curves.iter().map(Vec::len).min().unwrap_or(0);
        assert!(length >= 2, "{}: the curves have fewer than 2 reports", export.display());
        curves.iter_mut().for_each(|c| c.truncate(length));
        let best_final = curves.iter().map(|c| c[length - 1]).fold(f64::INFINITY, f64::min);
        Replay { name, space, configs, curves, best_final }
    }

    /// Distance between two configurations in the unit cube of the space (categorical params
    /// are 0 or 1 apart; fixed ones do not count).
    fn distance(&self, a: &Params, b: &Params) -> f64 {
        let mut sum = 0.0;
        for p in &self.space.params {
            let (Some(u), Some(v)) = (a.get(&p.name), b.get(&p.name)) else { continue };
            let gap = match &p.distribution {
                Distribution::Fixed { .. } => 0.0,
                Distribution::Categorical { .. } => f64::from(u8::from(!values_equal(u, v))),
                d => d.to_unit(u).unwrap_or(0.0) - d.to_unit(v).unwrap_or(0.0),
            };
            sum += gap * gap;
        }
        sum.sqrt()
    }

    /// The loss at report `index` of `params`: the recorded one at a recorded configuration,
    /// else the inverse-squared-distance mean over the nearest recorded ones, `skip` left out.
    fn interpolate(&self, params: &Params, index: usize, skip: Option<usize>) -> f64 {
        let mut near: Vec<(f64, usize)> = (0..self.configs.len())
            .filter(|&i| Some(i) != skip)
            .map(|i| (self.distance(params, &self.configs[i]), i))
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0));
        if near[0].0 < 1e-12 {
            return self.curves[near[0].1][index];
        }
        let weights: Vec<(f64, usize)> = near.iter().take(NEIGHBOURS).map(|&(d, i)| (1.0 / (d * d), i)).collect();
        let total: f64 = weights.iter().map(|w| w.0).sum();
        weights.iter().map(|&(w, i)| w * self.curves[i][index]).sum::<f64>() / total
    }

    /// Kendall's tau between each recorded final and its prediction from the others.
    fn leave_one_out_tau(&self) -> f64 {
        let last = self.curves[0].len() - 1;
        let pairs: Vec<(f64, f64)> = (0..self.configs.len())
            .map(|i| (self.curves[i][last], self.interpolate(&self.configs[i], last, Some(i))))
            .collect();
        let mut score = 0.0;
        for (i, a) in pairs.iter().enumerate() {
            for b in &pairs[..i] {
                let product = (a.0 - b.0) * (a.1 - b.1);
                score += if product > 0.0 {
                    1.0
                } else if product < 0.0 {
                    -1.0
                } else {
                    0.0
                };
            }
        }
        score / (pairs.len() * (pairs.len() - 1) / 2) as f64
    }
}

impl Problem for Replay {
    fn name(&self) -> &str {
        self.name
    }

    fn space(&self) -> &Space {
        &self.space
    }

    fn steps(&self) -> i64 {
        self.curves[0].len() as i64
    }

    fn observe(&self, params: &Params, step: i64, _noise: &mut StdRng) -> f64 {
        self.interpolate(params, step as usize - 1, None)
    }

    fn regret(&self, params: &Params) -> f64 {
        self.interpolate(params, self.curves[0].len() - 1, None) - self.best_final
    }
}

/// Regret at each step spent, for one method, problem and seed; and the trials started.
fn simulate(
    problem: &dyn Problem,
    sampler: &dyn Sampler,
    pruner: &dyn Pruner,
    seed: u64,
    budget: usize,
) -> (Vec<f64>, usize) {
    let (space, steps) = (problem.space(), problem.steps());
    let mut history = History::new(Objective { metric: "loss".into(), direction: Direction::Minimize }, vec![]);
    let mut noise = StdRng::seed_from_u64(7 + seed);
    let (mut running, mut spent): (Vec<usize>, usize) = (Vec::new(), 0);
    let mut regret = Vec::with_capacity(budget);
    let mut picked: Option<(f64, f64)> = None; // (observed final, regret) of the best complete trial
    while spent < budget {
        // Promoted paused trials (`mode = "pause"`) go on where they paused, before new ones.
        if running.len() < WORKERS {
            for number in pruner.promotable(&history).into_iter().take(WORKERS - running.len()) {
                let t = &mut history.trials[number as usize];
                (t.state, t.paused) = (TrialState::Running, false);
                running.push(number as usize);
            }
        }
        while running.len() < WORKERS {
            let number = history.trials.len() as u64;
            let proposal = sampler.propose(space, &history, &mut trial_rng(seed, number));
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
            let step = history.trials[i].curve.len() as i64 + 1;
            let value = problem.observe(&history.trials[i].params, step, &mut noise);
            let trial = &mut history.trials[i];
            trial.curve.push((step, value));
            trial.last_step = Some(step);
            let verdict = if step == steps { Verdict::Continue } else { pruner.decide(&history.trials[i], &history) };
            if step == steps || verdict != Verdict::Continue {
                let trial = &mut history.trials[i];
                trial.paused = matches!(verdict, Verdict::Pause(_));
                trial.value = Some(value);
                trial.state = if step == steps { TrialState::Complete } else { TrialState::Pruned };
                if step == steps && picked.is_none_or(|(best, _)| value < best) {
                    picked = Some((value, problem.regret(&trial.params)));
                }
            } else {
                still.push(i);
            }
            regret.push(picked.map_or(f64::NAN, |(_, r)| r));
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
    // Method names after `--` run only those methods.
    let names: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let picked: Vec<&str> = names.iter().map(String::as_str).collect();
    let min_promise: f64 = std::env::var("SWEEP_MIN_PROMISE").map_or(0.1, |v| v.parse().expect("SWEEP_MIN_PROMISE"));
    let (seeds, runs) = if full { (10u64, FULL_RUNS) } else { (1, 6) };
    let mut problems: Vec<Box<dyn Problem>> = if full {
        vec![Family::Fast, Family::Late, Family::Diverge]
            .into_iter()
            .map(|f| Box::new(Synthetic::new(f)) as _)
            .collect()
    } else {
        vec![Box::new(Synthetic::new(Family::Diverge))]
    };
    let env_or = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.to_string());
    let mut replays = vec![("replay", env_or("SWEEP_CURVES", CURVES), env_or("SWEEP_CURVES_STUDY", CURVES_STUDY))];
    if full && Path::new(REAL_CURVES).exists() {
        replays.push(("replay20", REAL_CURVES.to_string(), REAL_CURVES_STUDY.to_string()));
    }
    for (name, export, study) in replays {
        let replay = Replay::load(name, Path::new(&export), Path::new(&study));
        println!(
            "{name}: {} recorded curves of {} reports; surrogate's leave-one-out Kendall tau of the finals {:.2}",
            replay.configs.len(),
            replay.steps(),
            replay.leave_one_out_tau()
        );
        problems.push(Box::new(replay));
    }
    // Problem names after `--` run only those problems.
    if picked.iter().any(|p| problems.iter().any(|q| q.name() == *p)) {
        problems.retain(|q| picked.contains(&q.name()));
    }
    let (random, gp) = (RandomSampler, GpSampler::new(10));
    let gp_last = GpSampler { multi_fidelity: false, ..GpSampler::new(10) };
    println!("{seeds} seeds, budget {runs} full runs of each problem, {WORKERS} workers; regret: median [q1, q3]");
    println!(
        "{:<8} {:<11} {:>26} {:>26} {:>26} {:>26} {:>7} {:>8}",
        "curves", "method", "1/3 budget", "1/2", "2/3", "all", "trials", "s/seed"
    );
    for problem in &problems {
        let steps = problem.steps();
        let budget = runs * steps as usize;
        let none = from_config(&PrunerConfig::default());
        let hyperband = |pause, min_promise| {
            from_config(&PrunerConfig {
                rule: PrunerRule::Hyperband { min_resource: 1, max_resource: steps, eta: 3 },
                pause,
                min_promise,
                ..PrunerConfig::default()
            })
        };
        let (stopping, pausing) = (hyperband(false, None), hyperband(true, None));
        let (vetoed, vetoed_pausing) = (hyperband(false, Some(min_promise)), hyperband(true, Some(min_promise)));
        let methods: [(&str, &dyn Sampler, &dyn Pruner); 11] = [
            ("random", &random, none.as_ref()),
            ("gp", &gp, none.as_ref()),
            ("random+hb", &random, stopping.as_ref()),
            ("gp+hb last", &gp_last, stopping.as_ref()),
            ("gp+hb mf", &gp, stopping.as_ref()),
            ("random+hbP", &random, pausing.as_ref()),
            ("gp+hb mfP", &gp, pausing.as_ref()),
            ("random+hb v", &random, vetoed.as_ref()),
            ("gp+hb mf v", &gp, vetoed.as_ref()),
            ("gp+hb last v", &gp_last, vetoed.as_ref()),
            ("gp+hb mfPv", &gp, vetoed_pausing.as_ref()),
        ];
        let any_method = methods.iter().any(|m| picked.contains(&m.0));
        for (name, sampler, pruner) in methods.into_iter().filter(|m| !any_method || picked.contains(&m.0)) {
            let start = std::time::Instant::now();
            let results: Vec<(Vec<f64>, usize)> =
                (0..seeds).map(|s| simulate(problem.as_ref(), sampler, pruner, s, budget)).collect();
            let secs = start.elapsed().as_secs_f64() / seeds as f64;
            let mut line = format!("{:<8} {:<11}", problem.name(), name);
            for share in [1.0 / 3.0, 0.5, 2.0 / 3.0, 1.0] {
                let at = ((budget as f64 * share).round() as usize).max(1) - 1;
                let (q1, m, q3) = quartiles(results.iter().map(|(r, _)| r[at]).collect());
                line += &format!(" {m:>8.4} [{q1:>7.4}, {q3:>7.4}]");
            }
            let trials = results.iter().map(|r| r.1).sum::<usize>() as f64 / seeds as f64;
            println!("{line} {trials:>7.0} {secs:>8.2}");
        }
    }
}
