//! Pruners decide, after each report, whether a trial goes on. They are pure:
//! `(trial, history) -> decision`, with no I/O and no clock, and keep no state of their own:
//! everything they need is in the history, which the coordinator rebuilds from the database on
//! resume, so pruning carries on the same way after a restart.
//!
//! The rules: `median`/`percentile` (compare with completed trials at the same step), `asha`
//! (asynchronous successive halving) and `hyperband` (ASHA brackets). Around any of them,
//! `promise` adds the learning-curve veto (`min_promise`) and `wrappers` patience and the
//! threshold check (NaN, infinities, `lower`/`upper`).
//!
//! A trial's value at a step is its best value over its reports up to the first report at or
//! past that step, so workers that report at other steps than the rungs are judged fairly.

pub mod asha;
pub mod hyperband;
pub mod median;
pub mod promise;
pub mod wrappers;

#[cfg(test)]
mod config_tests;
#[cfg(test)]
mod conformance;

use crate::objective::Objective;
use crate::study::{PrunerConfig, PrunerRule};
use crate::trial::{History, Trial};

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Continue,
    /// Stop the trial; the reason is stored with it.
    Stop(String),
    /// Stop the trial's worker but keep the trial resumable (`mode = "pause"`): it ends PRUNED
    /// and paused, and `promotable` names it once it ranks high enough to go on.
    Pause(String),
}

pub trait Pruner: Send + Sync {
    /// `trial.curve` already holds the report just received.
    fn decide(&self, trial: &Trial, history: &History) -> Verdict;

    /// Paused trials that now rank high enough at the rung they paused at to go on, best first.
    /// The coordinator resumes them from their checkpoints before it starts anything new.
    fn promotable(&self, _history: &History) -> Vec<u64> {
        Vec::new()
    }
}

/// Never stops a trial.
pub struct NoPruner;

impl Pruner for NoPruner {
    fn decide(&self, _trial: &Trial, _history: &History) -> Verdict {
        Verdict::Continue
    }
}

/// The pruner a study's `[pruner]` asks for: threshold(patience(rule)). With no rule and no
/// bounds, nothing is ever stopped (not even NaN: that is left to the trial's own end).
pub fn from_config(config: &PrunerConfig) -> Box<dyn Pruner> {
    let rule: Box<dyn Pruner> = match &config.rule {
        PrunerRule::None if config.lower.is_none() && config.upper.is_none() => return Box::new(NoPruner),
        PrunerRule::None => Box::new(NoPruner),
        PrunerRule::Percentile { percentile, warmup_steps, min_trials, median } => Box::new(median::Percentile {
            percentile: *percentile,
            warmup_steps: *warmup_steps,
            min_trials: *min_trials,
            median: *median,
        }),
        PrunerRule::Asha { min_resource, max_resource, eta } => {
            Box::new(asha::Asha::new(*min_resource, *max_resource, *eta).pausing(config.pause))
        }
        PrunerRule::Hyperband { min_resource, max_resource, eta } => {
            Box::new(hyperband::Hyperband::new(*min_resource, *max_resource, *eta).pausing(config.pause))
        }
    };
    let rule = match config.min_promise {
        Some(min_promise) => Box::new(promise::Promise { inner: rule, min_promise, horizon: config.rule.horizon() }),
        None => rule,
    };
    let rule = match config.patience {
        Some(p) => Box::new(wrappers::Patience { inner: rule, patience: p }),
        None => rule,
    };
    Box::new(wrappers::Threshold { inner: rule, lower: config.lower, upper: config.upper })
}

/// The point this report added: the trial's last curve point, if the report just received
/// carried the objective (else `None`: nothing new to judge).
pub(crate) fn fresh_point(trial: &Trial) -> Option<(i64, f64)> {
    fresh_point_of(trial, 0)
}

/// The same for objective `k` (0: the first).
pub(crate) fn fresh_point_of(trial: &Trial, k: usize) -> Option<(i64, f64)> {
    let &(step, value) = trial.curve_of(k).last()?;
    match trial.last_step {
        Some(s) if s != step => None,
        _ => Some((step, value)),
    }
}

/// The best of `values` in the objective's direction, NaN ignored; NaN if there is no other.
pub(crate) fn best_of(objective: &Objective, values: impl Iterator<Item = f64>) -> f64 {
    values.filter(|v| !v.is_nan()).fold(f64::NAN, |b, v| if b.is_nan() || objective.better(v, b) { v } else { b })
}

/// A trial's value at `step`: its best value over its reports up to the first report at or past
/// `step`; `None` when it has not got that far.
pub(crate) fn value_at(objective: &Objective, curve: &[(i64, f64)], step: i64) -> Option<f64> {
    let end = curve.iter().position(|(s, _)| *s >= step)?;
    Some(best_of(objective, curve[..=end].iter().map(|p| p.1)))
}

/// A trial's objective values at `step` (each `value_at` its own curve), to minimize (maximized
/// ones negated; NaN as +inf, behind everything); `None` unless every objective got that far.
pub(crate) fn position_at(history: &History, trial: &Trial, step: i64) -> Option<Vec<f64>> {
    let objectives = history.goals.objectives.iter().enumerate();
    objectives
        .map(|(k, o)| {
            let v = value_at(o, trial.curve_of(k), step)? * o.sign();
            Some(if v.is_nan() { f64::INFINITY } else { v })
        })
        .collect()
}

/// Whether `a` ranks ahead of `b`: better in the objective's direction, NaN behind everything.
pub(crate) fn ahead(objective: &Objective, a: f64, b: f64) -> bool {
    match (a.is_nan(), b.is_nan()) {
        (false, true) => true,
        (true, _) => false,
        (false, false) => objective.better(a, b),
    }
}

/// A value for a reason string: short, but exact enough to compare by eye.
pub(crate) fn show(v: f64) -> String {
    if v.is_finite() && v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-4) {
        format!("{v:.4e}")
    } else if v.is_finite() {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Hand-built trials and histories for the rules' unit tests.
    use crate::objective::{Direction, Objective};
    use crate::trial::{History, Trial, TrialState};

    pub fn trial(number: u64, state: TrialState, curve: &[(i64, f64)]) -> Trial {
        Trial {
            value: curve.last().map(|p| p.1),
            curve: curve.to_vec(),
            last_step: curve.last().map(|p| p.0),
            ..Trial::new(number, state, Default::default())
        }
    }

    pub fn history(direction: Direction, trials: Vec<Trial>) -> History {
        History::new(Objective { metric: "loss".into(), direction }, trials)
    }

    /// A trial of a two-objective study (`history2`): `a` at each step of `steps` (1..), and `b`.
    pub fn trial2(number: u64, state: TrialState, steps: i64, a: f64, b: f64) -> Trial {
        Trial { other_curves: vec![flat(b, steps)], ..trial(number, state, &flat(a, steps)) }
    }

    /// A study with objectives `a` and `b` in these directions.
    pub fn history2(directions: [Direction; 2], trials: Vec<Trial>) -> History {
        let [a, b] = directions.map(|direction| direction);
        let objectives =
            vec![Objective { metric: "a".into(), direction: a }, Objective { metric: "b".into(), direction: b }];
        History::with_goals(crate::objective::Goals { objectives, constraints: Vec::new() }, trials)
    }

    /// A rule that always says stop, for the wrappers' tests.
    pub struct Always;

    impl super::Pruner for Always {
        fn decide(&self, _: &Trial, _: &History) -> super::Verdict {
            super::Verdict::Stop("always".into())
        }
    }

    /// A curve with `value` at steps 1..=steps.
    pub fn flat(value: f64, steps: i64) -> Vec<(i64, f64)> {
        (1..=steps).map(|s| (s, value)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::Direction;

    #[test]
    fn value_at_takes_the_best_up_to_the_first_report_past_the_step() {
        let o = Objective { metric: "loss".into(), direction: Direction::Minimize };
        let curve = [(2, 5.0), (4, 3.0), (6, 4.0), (8, 1.0)];
        assert_eq!(value_at(&o, &curve, 3), Some(3.0));
        assert_eq!(value_at(&o, &curve, 6), Some(3.0));
        assert_eq!(value_at(&o, &curve, 8), Some(1.0));
        assert_eq!(value_at(&o, &curve, 9), None);
        let max = Objective { direction: Direction::Maximize, ..o };
        assert_eq!(value_at(&max, &curve, 6), Some(5.0));
        assert!(best_of(&max, [f64::NAN].into_iter()).is_nan());
    }

    #[test]
    fn none_configured_never_stops_even_nan() {
        let p = from_config(&PrunerConfig::default());
        let t = testing::trial(0, crate::trial::TrialState::Running, &[(1, f64::NAN)]);
        let h = testing::history(Direction::Minimize, vec![t.clone()]);
        assert_eq!(p.decide(&t, &h), Verdict::Continue);
    }
}
