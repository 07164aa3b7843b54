//! Pruning a two-objective study (MO-ASHA) against running every trial to the end.
//!
//! The problem is ZDT1 (6 variables, `sweep::mofns`) as a learning-curve benchmark: each
//! configuration reports both objectives at every step `t` of `STEPS`, `f_j + a_j g_k(t /
//! STEPS) + noise` (sd 1% of `a_j`), with `g_k(s) = (e^{-ks} - e^{-k}) / (1 - e^{-k})` falling
//! from 1 to 0 and the last report exactly the final `f_j`. `a = (0.5, 2)`: the second
//! objective moves the most while training, as a validation loss does beside a slowly moving
//! second metric. Two families of speeds `k` in [0.5, 6]:
//! - `mixed`: `k` is a pseudo-random function of the params, unrelated to where the curve ends:
//!   about one configuration in five (k < 1.5) is a late bloomer that looks worse at the early
//!   rungs than it ends;
//! - `late`: the closer to the front a configuration ends (ZDT1's `g` near 1), the slower it
//!   learns (`k = 0.5 + 5.5 sqrt((g - 1) / 9)`): the early rungs favour the wrong ones.
//!
//! Four workers run trials asynchronously, one step per tick each, until the compute budget
//! (`RUNS` full runs' steps) is spent; a trial still running then is cut and not counted. The
//! measure at some compute is the hypervolume of the complete trials' final values against
//! ZDT1's fixed reference point, as a fraction of the true front's: what `sweep best` would
//! offer then. Methods: random search without pruning (the baseline), with ASHA (min_resource 1,
//! max_resource STEPS, eta 3: non-dominated sorting and crowding distance at each rung) and with
//! Hyperband over the same range; and the GP (log EHVI) without pruning and with ASHA, fitted
//! to the complete trials only (`fin`) or multi-fidelity (`mf`: each objective's GP over
//! configuration and resource, `sampler/gp_goals.rs`). The target: ASHA's hypervolume at half the budget at least 95% of the
//! unpruned study's at the whole budget.
//!
//! Run: `cargo bench --bench mo_pruning` (10 seeds; `SWEEP_SEEDS=N`). Under `cargo test
//! --all-targets` it runs a small smoke version.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution as _, Normal};
use sweep::mofns::MoFn;
use sweep::pruner::{from_config, Pruner, Verdict};
use sweep::sampler::{trial_rng, GpSampler, RandomSampler, Sampler};
use sweep::study::{Direction, Goals, Objective, PrunerConfig, PrunerRule};
use sweep::trial::{History, Trial, TrialState};

const STEPS: i64 = 27;
const WORKERS: usize = 4;
/// The compute budget in full runs (the unpruned study runs this many trials).
const RUNS: usize = 100;
/// How far each objective moves while training.
const SPAN: [f64; 2] = [0.5, 2.0];

#[derive(Clone, Copy, Debug)]
enum Family {
    Mixed,
    Late,
}

/// A configuration's learning speed: a fixed function of its params.
fn speed(x: &[f64], family: Family) -> f64 {
    match family {
        Family::Mixed => {
            let u = x.iter().enumerate().map(|(i, v)| v * (97.0 + 31.0 * i as f64)).sum::<f64>().fract();
            0.5 + 5.5 * u
        }
        Family::Late => {
            let g = 1.0 + 9.0 * x[1..].iter().sum::<f64>() / (x.len() - 1) as f64;
            0.5 + 5.5 * ((g - 1.0) / 9.0).sqrt()
        }
    }
}

/// The report of both objectives at `step`.
fn observe(f: &MoFn, family: Family, x: &[f64], step: i64, noise: &mut StdRng) -> Vec<f64> {
    let finals = f.at(x).0;
    if step == STEPS {
        return finals;
    }
    let k = speed(x, family);
    let s = step as f64 / STEPS as f64;
    let g = ((-k * s).exp() - (-k).exp()) / (1.0 - (-k).exp());
    let sd = Normal::new(0.0, 0.01).expect("a normal");
    finals.iter().zip(SPAN).map(|(v, a)| v + a * (g + sd.sample(noise))).collect()
}

/// The hypervolume fraction after each step spent, for one method and seed; trials started.
fn simulate(
    (f, family): (&MoFn, Family),
    sampler: &dyn Sampler,
    pruner: &dyn Pruner,
    seed: u64,
    budget: usize,
) -> (Vec<f64>, usize) {
    let space = f.space();
    let objectives =
        ["f1", "f2"].iter().map(|m| Objective { metric: m.to_string(), direction: Direction::Minimize }).collect();
    let mut history = History::with_goals(Goals { objectives, constraints: Vec::new() }, vec![]);
    let mut noise = StdRng::seed_from_u64(1000 + seed);
    let (mut running, mut spent): (Vec<usize>, usize) = (Vec::new(), 0);
    let (mut finals, mut volume): (Vec<Vec<f64>>, f64) = (Vec::new(), 0.0);
    let mut volumes = Vec::with_capacity(budget);
    let best = f.front_hypervolume();
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
            let x = f.point(&history.trials[i].params).expect("the problem's own params");
            let step = history.trials[i].curve.len() as i64 + 1;
            let values = observe(f, family, &x, step, &mut noise);
            let trial = &mut history.trials[i];
            trial.curve.push((step, values[0]));
            trial.other_curves = vec![trial.other_curves.first().cloned().unwrap_or_default()];
            trial.other_curves[0].push((step, values[1]));
            trial.last_step = Some(step);
            let verdict = if step == STEPS { Verdict::Continue } else { pruner.decide(&history.trials[i], &history) };
            if step == STEPS || verdict != Verdict::Continue {
                let trial = &mut history.trials[i];
                trial.value = Some(values[0]);
                if step == STEPS {
                    trial.state = TrialState::Complete;
                    trial.metrics = Some([("f1".to_string(), values[0]), ("f2".to_string(), values[1])].into());
                    finals.push(values);
                    volume = sweep::pareto::hypervolume(&finals, f.reference) / best;
                } else {
                    trial.state = TrialState::Pruned;
                }
            } else {
                still.push(i);
            }
            volumes.push(volume);
        }
        running = still;
    }
    (volumes, history.trials.len())
}

fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let seeds: u64 = std::env::var("SWEEP_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let (seeds, runs) = if full { (seeds, RUNS) } else { (1, 8) };
    let f = sweep::mofns::by_name("zdt1").expect("zdt1");
    let budget = runs * STEPS as usize;
    let none = from_config(&PrunerConfig::default());
    let rule = |rule| from_config(&PrunerConfig { rule, ..PrunerConfig::default() });
    let asha = rule(PrunerRule::Asha { min_resource: 1, max_resource: Some(STEPS), eta: 3 });
    let hyperband = rule(PrunerRule::Hyperband { min_resource: 1, max_resource: STEPS, eta: 3 });
    let (random, gp) = (RandomSampler, GpSampler::new(10));
    let gp_finals = GpSampler { multi_fidelity: false, ..GpSampler::new(10) };
    let mut methods: Vec<(&str, &dyn Sampler, &dyn Pruner)> = vec![
        ("random", &random, none.as_ref()),
        ("random+asha", &random, asha.as_ref()),
        ("random+hb", &random, hyperband.as_ref()),
    ];
    if full || std::env::var("SWEEP_GP").is_ok() {
        methods.push(("gp", &gp, none.as_ref()));
        methods.push(("gp+asha fin", &gp_finals, asha.as_ref()));
        methods.push(("gp+asha mf", &gp, asha.as_ref()));
    }
    println!(
        "zdt1 learning curves, {STEPS} steps, {WORKERS} workers, {seeds} seeds, budget {runs} full runs; \
         hypervolume / true front's: median [q1, q3]"
    );
    println!(
        "{:<7} {:<12} {:>24} {:>24} {:>24} {:>7} {:>7}",
        "curves", "method", "1/3 budget", "1/2", "all", "trials", "s/seed"
    );
    // Names after `--` pick methods (`cargo bench --bench mo_pruning -- random+asha`).
    let picked: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    methods.retain(|m| picked.is_empty() || picked.iter().any(|p| p == m.0));
    for family in [Family::Mixed, Family::Late] {
        for &(name, sampler, pruner) in &methods {
            let start = std::time::Instant::now();
            let results: Vec<(Vec<f64>, usize)> =
                (0..seeds).map(|s| simulate((&f, family), sampler, pruner, s, budget)).collect();
            let secs = start.elapsed().as_secs_f64() / seeds as f64;
            let mut line = format!("{:<7} {name:<12}", format!("{family:?}").to_lowercase());
            for share in [1.0 / 3.0, 0.5, 1.0] {
                let at = ((budget as f64 * share).round() as usize).max(1) - 1;
                let (q1, m, q3) = quartiles(results.iter().map(|(v, _)| v[at]).collect());
                line += &format!(" {m:>8.4} [{q1:>6.4}, {q3:>6.4}]");
            }
            let trials = results.iter().map(|r| r.1).sum::<usize>() as f64 / seeds as f64;
            println!("{line} {trials:>7.0} {secs:>7.2}");
        }
    }
}
