//! What the GP models once a pruner stops trials early.
//!
//! A pruned trial's last value is not a final value: it was read at a lower fidelity (fewer
//! steps), so standing it in for one favours configurations that start fast and plateau high.
//! Instead, as MOBSTER does (Klein et al., 2020), the GP is fitted over the configuration and
//! the resource together: every trial gives its value at each level of a geometric ladder it
//! reached (the full resource, a third of it, a ninth, ... down to step 1; its best value up to
//! the first report at or past the level, as the successive-halving pruners read it), the
//! resource entering the model as `ln(step) / ln(full)` in [0, 1]; a complete trial also gives
//! its final value at 1. The acquisition is maximized at the full resource. Running trials are
//! pending points there. A pure function of the history, so a resumed study models the same
//! observations.
//! Measured against fitting at one level (BOHB's rule, with pruned trials below it at the
//! level's worst value) with `cargo bench --bench multifidelity`: better at every budget point
//! on late bloomers and divergent runs, and at a third and two thirds of the budget on the
//! plain family (level at the end, within the seeds' spread).

use crate::pruner::value_at;
use crate::trial::{History, Trial, TrialState};

/// What the GP fits: `(trial index, resource in [0, 1], value)` rows and pending trials.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Modelled {
    pub rows: Vec<(usize, f64, f64)>,
    pub pending: Vec<usize>,
    /// Whether the rows span resources (the model then has a resource column).
    pub joint: bool,
}

/// Complete trials' final values, and pruned trials' last values, all at the full resource;
/// running trials pending. What is modelled before any trial is pruned (then it is the finals),
/// and the rule without fidelities. A paused trial is modelled as a running one that stopped
/// reporting (pending), and once a re-run resumed it, as the re-run.
pub(super) fn last_values(history: &History) -> Modelled {
    let finished = |t: &Trial| match t.state {
        TrialState::Complete => true,
        TrialState::Pruned => !t.paused && !history.retried.contains(&t.number),
        _ => false,
    };
    let rows = indices(history, finished)
        .into_iter()
        .filter_map(|i| history.trials[i].value.filter(|v| v.is_finite()).map(|v| (i, 1.0, v)))
        .collect();
    Modelled { rows, pending: pending(history), joint: false }
}

/// Trials that may still go on: running ones, and paused ones no re-run has resumed yet.
pub(super) fn pending(history: &History) -> Vec<usize> {
    indices(history, |t| t.state == TrialState::Running || (t.paused && !history.retried.contains(&t.number)))
}

/// Whether a trial was pruned with a curve to model: the switch to modelling every level.
pub(super) fn any_pruned(history: &History) -> bool {
    let usable = |t: &Trial| t.curve.iter().any(|(_, v)| v.is_finite());
    history.trials.iter().any(|t| t.state == TrialState::Pruned && usable(t))
}

/// Rows at every level of the ladder, once a trial has been pruned; the finals before.
pub(super) fn every_level(history: &History) -> Modelled {
    if !any_pruned(history) {
        return last_values(history);
    }
    let rows = level_rows(history, 0, |t| t.value);
    Modelled { rows, pending: pending(history), joint: true }
}

/// Objective `k`'s rows at every level of the ladder (its curve, and `final_of` a complete
/// trial at the full resource): what the multi-fidelity GP of each objective fits.
pub(super) fn level_rows(
    history: &History,
    k: usize,
    final_of: impl Fn(&Trial) -> Option<f64>,
) -> Vec<(usize, f64, f64)> {
    let full = history.trials.iter().flat_map(|t| t.curve_of(k).iter().map(|p| p.0)).max().unwrap_or(1).max(2);
    let ladder = ladder(full);
    let resource = |step: i64| (step as f64).ln() / (full as f64).ln();
    let objective = &history.goals.objectives[k];
    let mut rows = Vec::new();
    for (i, t) in history.trials.iter().enumerate() {
        match t.state {
            TrialState::Complete => rows.extend(final_of(t).filter(|v| v.is_finite()).map(|v| (i, 1.0, v))),
            // A paused trial that a re-run resumed: the re-run carries its curve. One not resumed
            // yet reads as a running trial: rows below the full resource, and pending.
            TrialState::Pruned if history.retried.contains(&t.number) => continue,
            TrialState::Pruned | TrialState::Running => {}
            _ => continue,
        }
        let curve = t.curve_of(k);
        let reach = curve.iter().map(|p| p.0).max().unwrap_or(i64::MIN);
        for &level in ladder.iter().filter(|&&l| l < full && l <= reach) {
            if let Some(v) = value_at(objective, curve, level).filter(|v| v.is_finite()) {
                rows.push((i, resource(level), v));
            }
        }
    }
    rows
}

/// `full`, then a third of it (rounded up), a ninth, ... ending at 1.
fn ladder(full: i64) -> Vec<i64> {
    let mut ladder = vec![full];
    while let Some(&level) = ladder.last().filter(|&&l| l > 1) {
        ladder.push((level + 2) / 3);
    }
    ladder
}

fn indices(history: &History, keep: impl Fn(&Trial) -> bool) -> Vec<usize> {
    history.trials.iter().enumerate().filter(|(_, t)| keep(t)).map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::Direction;
    use crate::pruner::testing::{history, trial};
    use TrialState::{Complete, Failed, Pruned, Running};

    #[test]
    fn the_ladder_divides_by_three_down_to_one() {
        assert_eq!(ladder(27), vec![27, 9, 3, 1]);
        assert_eq!(ladder(150), vec![150, 50, 17, 6, 2, 1]);
        assert_eq!(ladder(2), vec![2, 1]);
    }

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
        let m = every_level(&h);
        assert_eq!(m, Modelled { rows: vec![(0, 1.0, 2.0), (2, 1.0, 3.0)], pending: vec![1], joint: false });
        assert_eq!(m, last_values(&h));
    }

    #[test]
    fn once_a_trial_is_pruned_every_trial_gives_its_value_at_each_level_it_reached() {
        let h = history(
            Direction::Minimize,
            vec![
                trial(0, Complete, &[(1, 6.0), (3, 2.0), (9, 1.0)]),
                trial(1, Pruned, &[(1, 9.0)]),
                trial(2, Pruned, &[(1, 5.0), (2, 4.5), (3, 4.0)]),
                trial(3, Running, &[(1, 3.0), (4, 3.5)]),
                trial(4, Failed, &[(1, 0.5)]),
            ],
        );
        let m = every_level(&h);
        let third = 3f64.ln() / 9f64.ln(); // step 3 of 9
        assert_eq!(
            m.rows,
            vec![
                (0, 1.0, 1.0),
                (0, third, 2.0),
                (0, 0.0, 6.0),
                (1, 0.0, 9.0),
                (2, third, 4.0),
                (2, 0.0, 5.0),
                // Step 4 is the first report past 3: the best value up to it counts there.
                (3, third, 3.0),
                (3, 0.0, 3.0),
            ]
        );
        assert_eq!((m.pending, m.joint), (vec![3], true));
        // The rule without fidelities reads trial 1's 9.0 and trial 2's 4.0 as finals.
        assert_eq!(last_values(&h).rows, vec![(0, 1.0, 1.0), (1, 1.0, 9.0), (2, 1.0, 4.0)]);
    }

    /// A paused trial (`mode = "pause"`) is a running trial that stopped reporting: its rows at
    /// the levels it reached, pending, and no final. Once a re-run resumed it, only the re-run.
    #[test]
    fn a_paused_trial_reads_as_running_until_a_re_run_resumes_it() {
        let paused = Trial { paused: true, ..trial(1, Pruned, &[(1, 9.0), (3, 8.0)]) };
        let mut trials = vec![trial(0, Complete, &[(1, 6.0), (3, 2.0), (9, 1.0)]), paused];
        let h = history(Direction::Minimize, trials.clone());
        let m = every_level(&h);
        assert_eq!(m.pending, vec![1]);
        assert_eq!(m.rows.iter().filter(|r| r.0 == 1).count(), 2, "rungs 1 and 3: {:?}", m.rows);
        assert_eq!((last_values(&h).rows, last_values(&h).pending), (vec![(0, 1.0, 1.0)], vec![1]));
        trials.push(Trial { rerun_of: Some(1), ..trial(2, Running, &[(1, 9.0), (3, 8.0)]) });
        let h = history(Direction::Minimize, trials);
        let m = every_level(&h);
        assert_eq!(m.pending, vec![2]);
        assert!(m.rows.iter().all(|r| r.0 != 1), "{:?}", m.rows);
    }
}
