//! Which value of each trial the GP models once a pruner stops trials early.
//!
//! A pruned trial's last value is not a final value: it was read at a lower fidelity (fewer
//! steps), so standing it in for one favours configurations that start fast and plateau high.
//! As BOHB does (Falkner et al., ICML 2018), the model is fitted at one level: the highest
//! step that at least `min_points` trials have reached (all of them, once enough trials
//! completed), each trial's value there being its best value up to its first report at or past
//! that step, as the successive-halving pruners read it. A trial stopped below the level is
//! an observation too, with the worst value seen at the level (it was stopped for looking
//! worse than the trials that went on; leaving it out would send the GP back to its region); a
//! running trial below the level is a pending point. A pure function of the history, so a
//! resumed study models the same observations.

use crate::pruner::value_at;
use crate::trial::{History, Trial, TrialState};

/// What the GP fits: `(trial index, value)` observations and the indices of pending trials.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Modelled {
    pub observed: Vec<(usize, f64)>,
    pub pending: Vec<usize>,
    /// The level: `None` for final values (no trial pruned, or enough complete trials).
    pub step: Option<i64>,
}

/// Every trial's final value: complete trials, and pruned ones with the last value they
/// reported. The rule without levels (and the GP's rule before them).
pub(super) fn last_values(history: &History) -> Modelled {
    let observed = indices(history, |t| matches!(t.state, TrialState::Complete | TrialState::Pruned))
        .into_iter()
        .filter_map(|i| history.trials[i].value.filter(|v| v.is_finite()).map(|v| (i, v)))
        .collect();
    Modelled { observed, pending: indices(history, |t| t.state == TrialState::Running), step: None }
}

/// The observations at the level chosen for `history`: the highest with at least
/// `min_points` trials, or the lowest when no level has that many.
pub(super) fn at_level(history: &History, min_points: usize) -> Modelled {
    let usable = |t: &Trial| t.curve.iter().any(|(_, v)| v.is_finite());
    let complete = |t: &Trial| t.state == TrialState::Complete && t.value.is_some_and(f64::is_finite);
    if !history.trials.iter().any(|t| t.state == TrialState::Pruned && usable(t)) {
        return last_values(history);
    }
    // A complete trial reached every level; its value at the top level is its final value.
    let reach = |t: &Trial| if complete(t) { i64::MAX } else { t.curve.iter().map(|p| p.0).max().unwrap_or(i64::MIN) };
    let candidates =
        indices(history, |t| complete(t) || (matches!(t.state, TrialState::Pruned | TrialState::Running) && usable(t)));
    let mut levels: Vec<i64> = vec![i64::MAX];
    levels.extend(candidates.iter().flat_map(|&i| history.trials[i].curve.iter().map(|p| p.0)));
    levels.sort_unstable();
    levels.dedup();
    let reached = |level: i64| candidates.iter().filter(|&&i| reach(&history.trials[i]) >= level).count();
    let level = *levels.iter().rev().find(|&&l| reached(l) >= min_points).unwrap_or(&levels[0]);
    let objective = &history.objective;
    let value_there = |t: &Trial| match level {
        i64::MAX => t.value,
        step => value_at(objective, &t.curve, step),
    };
    let mut observed: Vec<(usize, f64)> = candidates
        .iter()
        .filter(|&&i| reach(&history.trials[i]) >= level)
        .filter_map(|&i| value_there(&history.trials[i]).filter(|v| v.is_finite()).map(|v| (i, v)))
        .collect();
    let worst =
        observed.iter().map(|o| o.1).fold(f64::NAN, |w, v| if w.is_nan() || objective.better(w, v) { v } else { w });
    let below = |t: &Trial| reach(t) < level;
    if worst.is_finite() {
        observed.extend(
            indices(history, |t| t.state == TrialState::Pruned && usable(t) && below(t))
                .into_iter()
                .map(|i| (i, worst)),
        );
        observed.sort_by_key(|o| o.0);
    }
    let pending = indices(history, |t| t.state == TrialState::Running && below(t));
    Modelled { observed, pending, step: (level != i64::MAX).then_some(level) }
}

fn indices(history: &History, keep: impl Fn(&Trial) -> bool) -> Vec<usize> {
    history.trials.iter().enumerate().filter(|(_, t)| keep(t)).map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::Direction;
    use crate::pruner::testing::{history, trial};
    use TrialState::{Complete, Pruned, Running};

    #[test]
    fn without_pruning_finals_are_modelled_and_running_trials_pending() {
        let h = history(
            Direction::Minimize,
            vec![
                trial(0, Complete, &[(1, 5.0), (9, 2.0)]),
                trial(1, Running, &[(1, 4.0)]),
                trial(2, Complete, &[(9, 3.0)]),
            ],
        );
        let m = at_level(&h, 2);
        assert_eq!(m, Modelled { observed: vec![(0, 2.0), (2, 3.0)], pending: vec![1], step: None });
        assert_eq!(m, last_values(&h));
    }

    #[test]
    fn with_few_finals_the_highest_level_with_enough_trials_is_modelled() {
        let h = history(
            Direction::Minimize,
            vec![
                trial(0, Complete, &[(1, 6.0), (3, 2.0), (9, 1.0)]),
                trial(1, Pruned, &[(1, 9.0)]),
                trial(2, Pruned, &[(1, 5.0), (3, 4.0)]),
                trial(3, Running, &[(1, 3.0), (3, 3.5)]),
                trial(4, Running, &[(1, 2.5)]),
                trial(5, Running, &[]),
            ],
        );
        // Step 3 is reached by trials 0, 2 and 3; step 9 by trial 0 alone.
        let m = at_level(&h, 3);
        assert_eq!(m.step, Some(3));
        // Best value up to step 3; trial 1, stopped below, takes the worst value seen there.
        assert_eq!(m.observed, vec![(0, 2.0), (1, 4.0), (2, 4.0), (3, 3.0)]);
        assert_eq!(m.pending, vec![4, 5]);
        // With 5 points needed no level has them, so the lowest is used.
        let m = at_level(&h, 5);
        assert_eq!(m.step, Some(1));
        assert_eq!(m.observed, vec![(0, 6.0), (1, 9.0), (2, 5.0), (3, 3.0), (4, 2.5)]);
        assert_eq!(m.pending, vec![5]);
    }

    #[test]
    fn with_enough_finals_pruned_trials_take_the_worst_final() {
        let h = history(
            Direction::Maximize,
            vec![
                trial(0, Complete, &[(1, 0.2), (9, 0.6)]),
                trial(1, Pruned, &[(1, 0.9)]),
                trial(2, Complete, &[(1, 0.1), (9, 0.7)]),
                trial(3, TrialState::Failed, &[(1, 0.99)]),
            ],
        );
        let m = at_level(&h, 2);
        assert_eq!(m, Modelled { observed: vec![(0, 0.6), (1, 0.6), (2, 0.7)], pending: vec![], step: None });
        // The rule without levels reads the pruned trial's 0.9 as a final: what this module fixes.
        assert_eq!(last_values(&h).observed, vec![(0, 0.6), (1, 0.9), (2, 0.7)]);
    }
}
