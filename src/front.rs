//! A study's answer when it has several objectives or constraints: the complete trials that
//! meet every constraint and that no other such trial dominates (its Pareto set), and the
//! hypervolume they dominate. With one objective and constraints, the set is the best feasible
//! trial (several if they tie).

use crate::objective::Goals;
use crate::pareto;
use crate::trial::{Trial, TrialState};

/// The Pareto set of a study's complete trials.
#[derive(Debug)]
pub struct Front<'a> {
    /// In trial order.
    pub trials: Vec<&'a Trial>,
    /// False when no trial meets the constraints: then `trials` are the least-violating ones.
    pub feasible: bool,
    /// Of the feasible set, against `reference`.
    pub hypervolume: f64,
    /// Beyond the worst value of every complete trial in each objective (`pareto::reference_point`),
    /// in the objectives' own directions.
    pub reference: Vec<f64>,
}

/// The front of `trials` (any states: only complete ones with every objective finite count).
pub fn front<'a>(goals: &Goals, trials: &'a [Trial]) -> Front<'a> {
    let scored: Vec<(&Trial, Vec<f64>, f64)> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| {
            let metrics = t.metrics.as_ref()?;
            Some((t, goals.vector(metrics)?, goals.violation(metrics)))
        })
        .collect();
    let reference = pareto::reference_point(&scored.iter().map(|s| s.1.clone()).collect::<Vec<_>>());
    let least = scored.iter().map(|s| s.2).fold(f64::INFINITY, f64::min);
    let feasible = least == 0.0;
    // With none feasible, the ones closest to it, ranked by their objectives among themselves.
    let pool: Vec<&(&Trial, Vec<f64>, f64)> = scored.iter().filter(|s| s.2 == least).collect();
    let members = pareto::nondominated(&pool.iter().map(|s| s.1.clone()).collect::<Vec<_>>());
    let hypervolume = match (&reference, feasible) {
        (Some(r), true) => pareto::hypervolume(&members.iter().map(|&i| pool[i].1.clone()).collect::<Vec<_>>(), r),
        _ => 0.0,
    };
    Front {
        trials: members.iter().map(|&i| pool[i].0).collect(),
        feasible,
        hypervolume,
        // Back in the objectives' own directions.
        reference: reference.iter().flatten().zip(&goals.objectives).map(|(v, o)| v * o.sign()).collect(),
    }
}

/// The hypervolume of the feasible Pareto set after each of `trials` in turn (one value each;
/// a trial that is not complete, lacks an objective or breaks a constraint leaves it as it was),
/// against the reference of the whole set (`Front::reference`, given in the objectives' own
/// directions): the curve never falls and ends at `Front::hypervolume`. The volume is measured
/// again only when the set changes.
pub fn hypervolume_history(goals: &Goals, trials: &[Trial], reference: &[f64]) -> Vec<f64> {
    let reference: Vec<f64> = reference.iter().zip(&goals.objectives).map(|(v, o)| v * o.sign()).collect();
    let mut set: Vec<Vec<f64>> = Vec::new();
    let mut volume = 0.0;
    let mut out = Vec::with_capacity(trials.len());
    for t in trials {
        let point = (t.state == TrialState::Complete)
            .then_some(t.metrics.as_ref())
            .flatten()
            .filter(|m| goals.violation(m) == 0.0)
            .and_then(|m| goals.vector(m));
        if let Some(p) = point.filter(|p| reference.len() == p.len() && !set.iter().any(|s| pareto::dominates(s, p))) {
            set.retain(|s| !pareto::dominates(&p, s));
            set.push(p);
            volume = pareto::hypervolume(&set, &reference);
        }
        out.push(volume);
    }
    out
}

/// Whether a finished trial's metrics meet every constraint.
pub fn feasible(goals: &Goals, t: &Trial) -> bool {
    t.metrics.as_ref().is_some_and(|m| goals.violation(m) == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::{Constraint, Direction, Objective};
    use crate::trial::Metrics;

    fn trial(number: u64, state: TrialState, metrics: &[(&str, f64)]) -> Trial {
        let metrics: Metrics = metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        Trial { metrics: Some(metrics), ..Trial::new(number, state, Default::default()) }
    }

    fn goals(constraints: &[&str]) -> Goals {
        Goals {
            objectives: vec![
                Objective { metric: "acc".into(), direction: Direction::Maximize },
                Objective { metric: "size".into(), direction: Direction::Minimize },
            ],
            constraints: constraints.iter().map(|c| Constraint::parse(c).unwrap()).collect(),
        }
    }

    fn numbers(f: &Front) -> Vec<u64> {
        f.trials.iter().map(|t| t.number).collect()
    }

    #[test]
    fn the_set_is_the_feasible_nondominated_complete_trials() {
        use TrialState::*;
        let trials = vec![
            trial(0, Complete, &[("acc", 0.9), ("size", 10.0)]),
            trial(1, Complete, &[("acc", 0.8), ("size", 5.0)]),
            trial(2, Complete, &[("acc", 0.7), ("size", 6.0)]), // dominated by 1
            trial(3, Complete, &[("acc", 0.95), ("size", 30.0)]), // too big
            trial(4, Pruned, &[("acc", 0.99), ("size", 1.0)]),  // not complete
            trial(5, Complete, &[("acc", f64::NAN), ("size", 1.0)]),
            trial(6, Complete, &[("acc", 0.8), ("size", 5.0)]), // a duplicate of 1
        ];
        let f = front(&goals(&[]), &trials);
        assert_eq!((numbers(&f), f.feasible), (vec![0, 1, 3, 6], true));
        let f = front(&goals(&["size <= 20"]), &trials);
        assert_eq!((numbers(&f), f.feasible), (vec![0, 1, 6], true));
        // Reference: acc worst 0.7 - 0.025 (a tenth of 0.95 - 0.7), size 30 + 2.5 (a tenth of 30 - 5).
        assert!((f.reference[0] - 0.675).abs() < 1e-12 && (f.reference[1] - 32.5).abs() < 1e-12, "{:?}", f.reference);
        // Minimized: (-0.9, 10), (-0.8, 5) against (-0.675, 32.5).
        let by_hand = (0.9 - 0.675) * (32.5 - 10.0) + (0.8 - 0.675) * (10.0 - 5.0);
        assert!((f.hypervolume - by_hand).abs() < 1e-9, "{} vs {by_hand}", f.hypervolume);
        assert!(!feasible(&goals(&["size <= 20"]), &trials[3]));
        // The volume after each trial: 0's box, then 1's added; 2 to 6 change nothing
        // (dominated, too big, not complete, NaN, a duplicate).
        let history = hypervolume_history(&goals(&["size <= 20"]), &trials, &f.reference);
        let first = (0.9 - 0.675) * (32.5 - 10.0);
        let expected = [first, by_hand, by_hand, by_hand, by_hand, by_hand, by_hand];
        assert!(history.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-9), "{history:?}");
    }

    #[test]
    fn with_none_feasible_the_least_violating_stand_in() {
        let trials = vec![
            trial(0, TrialState::Complete, &[("acc", 0.9), ("size", 12.0)]),
            trial(1, TrialState::Complete, &[("acc", 0.8), ("size", 11.0)]),
            trial(2, TrialState::Complete, &[("acc", 0.95), ("size", 11.0)]),
        ];
        let f = front(&goals(&["size <= 10"]), &trials);
        assert_eq!((numbers(&f), f.feasible, f.hypervolume), (vec![2], false, 0.0));
        assert!(front(&goals(&[]), &[]).trials.is_empty());
    }
}
