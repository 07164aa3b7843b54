//! Asynchronous successive halving (ASHA, Li et al. 2018).
//!
//! Rungs sit at steps `min_resource * eta^k` below `max_resource` (the last rung, where
//! survivors finish, needs no decision). When a report takes a trial to or past a rung for the
//! first time, its value there (its best value up to that report) is ranked against the values
//! every other trial had at that rung, whatever their state now; it goes on only if it is in
//! the top `max(1, n / eta)` of the `n` trials that reached the rung so far, itself included.
//! It never waits for a rung to fill: early trials are judged against fewer. An attempt that
//! was re-run (interrupted, or retried after a failure) is not a competitor of its own: its
//! re-run stands for the configuration, with the curve it resumed from.
//!
//! With several objectives (MO-ASHA, Schmucker et al. 2021) the rank at a rung is the place in
//! non-dominated sorting of every objective's value there, crowding distance within a front;
//! a rung is judged at the report that brings the first objective to it.

use super::{fresh_point, position_at, show, Pruner, Verdict};
use crate::trial::{History, Trial, TrialState};

pub struct Asha {
    rungs: Rungs,
    /// `mode = "pause"`: below the cut a trial pauses instead of stopping.
    pause: bool,
}

impl Asha {
    pub fn new(min_resource: i64, max_resource: Option<i64>, eta: u32) -> Asha {
        Asha { rungs: Rungs { min_resource, max_resource, eta }, pause: false }
    }

    /// Pauses trials below the cut instead of stopping them (`mode = "pause"`).
    pub fn pausing(self, pause: bool) -> Asha {
        Asha { pause, ..self }
    }
}

impl Pruner for Asha {
    fn decide(&self, trial: &Trial, history: &History) -> Verdict {
        halving(&self.rungs, "asha", self.pause, trial, history, |_| true)
    }

    fn promotable(&self, history: &History) -> Vec<u64> {
        promotable(history, |_| self.pause.then_some(self.rungs), |_, _| true)
    }
}

/// The rung steps of one successive-halving ladder.
#[derive(Debug, Clone, Copy)]
pub struct Rungs {
    pub min_resource: i64,
    pub max_resource: Option<i64>,
    pub eta: u32,
}

impl Rungs {
    /// Rung steps in order, those below `max_resource` (or all up to `through` if unbounded).
    pub fn steps(&self, through: i64) -> Vec<i64> {
        let mut out = Vec::new();
        let mut r = self.min_resource.max(1);
        while self.max_resource.map_or(r <= through, |m| r < m) {
            out.push(r);
            match r.checked_mul(self.eta as i64) {
                Some(next) => r = next,
                None => break,
            }
        }
        out
    }
}

/// Where a trial stands at `rung` among the trials `competes` admits: its rank (1 = best), how
/// many reached the rung (itself included), how many the rung keeps, its values there as a
/// reason shows them, and a key to order promotions by (lower first).
struct Standing {
    rank: usize,
    n: usize,
    keep: usize,
    shown: String,
    key: f64,
}

/// With one objective the rank counts the competitors strictly ahead. With several (MO-ASHA,
/// Schmucker et al. 2021) it is the place in `pareto::promotion_order`: non-dominated sorting,
/// then crowding distance within a front. `None` when the trial has not reported every
/// objective by the rung: it cannot be ranked there, and goes on.
fn standing(
    rungs: &Rungs,
    rung: i64,
    trial: &Trial,
    history: &History,
    competes: &dyn Fn(&Trial) -> bool,
) -> Option<Standing> {
    let own = position_at(history, trial, rung)?;
    let others: Vec<Vec<f64>> = history
        .trials
        .iter()
        .filter(|t| t.number != trial.number && t.state != TrialState::Waiting && competes(t))
        .filter(|t| !history.retried.contains(&t.number))
        .filter_map(|t| position_at(history, t, rung))
        .collect();
    let n = others.len() + 1;
    let keep = (n / rungs.eta as usize).max(1);
    let objectives = &history.goals.objectives;
    if let [objective] = objectives.as_slice() {
        let rank = 1 + others.iter().filter(|v| v[0] < own[0]).count();
        let shown = show(own[0] * objective.sign());
        return Some(Standing { rank, n, keep, shown: format!("value {shown}"), key: own[0] });
    }
    // Itself first, so that ties go its way as with one objective.
    let points: Vec<Vec<f64>> = std::iter::once(own.clone()).chain(others).collect();
    let rank = 1 + crate::pareto::promotion_order(&points).iter().position(|&i| i == 0).unwrap_or(n);
    let shown: Vec<String> =
        objectives.iter().zip(&own).map(|(o, v)| format!("{} {}", o.metric, show(v * o.sign()))).collect();
    Some(Standing { rank, n, keep, shown: shown.join(", "), key: rank as f64 })
}

/// Successive halving over the trials `competes` admits; `label` starts every reason. Below
/// the cut a trial is stopped, or paused when `pause`.
pub(crate) fn halving(
    rungs: &Rungs,
    label: &str,
    pause: bool,
    trial: &Trial,
    history: &History,
    competes: impl Fn(&Trial) -> bool,
) -> Verdict {
    let Some((step, _)) = fresh_point(trial) else { return Verdict::Continue };
    let before = trial.curve[..trial.curve.len() - 1].iter().map(|p| p.0).max().unwrap_or(i64::MIN);
    for (k, rung) in rungs.steps(step).into_iter().enumerate() {
        if rung <= before || rung > step {
            continue; // decided at an earlier report, or not reached yet
        }
        let Some(Standing { rank, n, keep, shown, .. }) = standing(rungs, rung, trial, history, &competes) else {
            continue;
        };
        if rank > keep {
            let at = if pause { "paused at rung" } else { "rung" };
            let reason = format!("{label}: {at} {k} (step {rung}): rank {rank} of {n}, keeps top {keep} ({shown})");
            return if pause { Verdict::Pause(reason) } else { Verdict::Stop(reason) };
        }
    }
    Verdict::Continue
}

/// The paused trials that rank within the cut of the rung they paused at, now that more trials
/// reached it, best first. `ladder` gives a paused trial's rungs (None: not pausing); `competes`
/// whether another trial competes with it (hyperband: the same bracket).
pub(crate) fn promotable(
    history: &History,
    ladder: impl Fn(&Trial) -> Option<Rungs>,
    competes: impl Fn(&Trial, &Trial) -> bool,
) -> Vec<u64> {
    let mut ready: Vec<(f64, u64)> = Vec::new();
    for t in history.trials.iter().filter(|t| t.paused && !history.retried.contains(&t.number)) {
        let (Some(rungs), Some(step)) = (ladder(t), t.last_step) else { continue };
        // It paused at the last rung its reports reached.
        let Some(&rung) = rungs.steps(step).iter().rfind(|&&r| r <= step) else { continue };
        let Some(at) = standing(&rungs, rung, t, history, &|other| competes(t, other)) else { continue };
        if at.rank <= at.keep {
            ready.push((at.key, t.number));
        }
    }
    ready.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    ready.into_iter().map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::Direction;
    use crate::pruner::testing::{flat, history, trial};
    use crate::trial::TrialState::{Complete, Pruned, Running};

    #[test]
    fn rungs_lie_below_the_max_resource() {
        assert_eq!(Rungs { min_resource: 1, max_resource: Some(27), eta: 3 }.steps(100), vec![1, 3, 9]);
        assert_eq!(Rungs { min_resource: 2, max_resource: Some(20), eta: 2 }.steps(0), vec![2, 4, 8, 16]);
        assert_eq!(Rungs { min_resource: 1, max_resource: None, eta: 3 }.steps(30), vec![1, 3, 9, 27]);
    }

    /// Nine trials reach rung 1 (step 3); each in turn is the last to arrive. Exactly the top
    /// three (values 1, 2, 3) go on.
    fn rung_of_nine(direction: Direction, values: [f64; 9]) -> Vec<bool> {
        let asha = Asha::new(1, Some(27), 3);
        let mut kept = Vec::new();
        for me in 0..9 {
            let trials: Vec<Trial> = (0..9)
                .map(|i| {
                    let mut curve = flat(values[i] + 10.0, 2);
                    curve.push((3, values[i]));
                    let state = if i == me {
                        Running
                    } else if i % 2 == 0 {
                        Complete
                    } else {
                        Pruned
                    };
                    trial(i as u64, state, &curve)
                })
                .collect();
            let h = history(direction, trials);
            kept.push(asha.decide(&h.trials[me], &h) == Verdict::Continue);
        }
        kept
    }

    #[test]
    fn a_rung_of_nine_with_eta_3_keeps_exactly_the_top_3() {
        let values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0];
        let kept = rung_of_nine(Direction::Minimize, values);
        let survivors: Vec<f64> = (0..9).filter(|&i| kept[i]).map(|i| values[i]).collect();
        assert_eq!(survivors, vec![1.0, 3.0, 2.0]);
        // Maximizing keeps the other end.
        let kept = rung_of_nine(Direction::Maximize, values);
        let survivors: Vec<f64> = (0..9).filter(|&i| kept[i]).map(|i| values[i]).collect();
        assert_eq!(survivors, vec![9.0, 7.0, 8.0]);
    }

    /// With `mode = "pause"` a trial below the cut pauses; once enough trials reach its rung
    /// behind it, it is promotable, best first, and not once a re-run resumed it.
    #[test]
    fn a_paused_trial_is_promoted_once_it_ranks_within_the_cut() {
        let asha = Asha::new(3, Some(27), 3).pausing(true);
        let paused = |number, value| Trial { paused: true, ..trial(number, Pruned, &[(3, value)]) };
        // Second of two at step 3 keeps one: paused, with a reason that says so.
        let h = history(Direction::Minimize, vec![trial(0, Running, &flat(1.0, 3)), trial(1, Running, &[(3, 2.0)])]);
        let v = asha.decide(&h.trials[1], &h);
        assert_eq!(v, Verdict::Pause("asha: paused at rung 0 (step 3): rank 2 of 2, keeps top 1 (value 2)".into()));
        // Three more reach step 3, all worse: six keep two, so of the paused trials only the
        // second best (value 2) may go on.
        let mut trials = vec![trial(0, Running, &flat(1.0, 9)), paused(1, 2.5), paused(2, 2.0)];
        trials.extend((3..6).map(|i| trial(i, Complete, &flat(5.0 + i as f64, 9))));
        let h = history(Direction::Minimize, trials.clone());
        assert_eq!(asha.promotable(&h), vec![2]);
        // Three more: nine keep three, both are promotable, the better first.
        trials.extend((6..9).map(|i| trial(i, Complete, &flat(5.0 + i as f64, 9))));
        let h = history(Direction::Minimize, trials.clone());
        assert_eq!(asha.promotable(&h), vec![2, 1]);
        // A re-run resumed trial 2: it is not promoted twice.
        trials.push(Trial { rerun_of: Some(2), ..trial(9, Running, &[(3, 2.0)]) });
        let h = history(Direction::Minimize, trials);
        assert_eq!(asha.promotable(&h), vec![1]);
        // In stop mode nothing is ever promotable.
        assert!(Asha::new(3, Some(27), 3).promotable(&h).is_empty());
    }

    /// An interrupted attempt and the re-run that resumed from its checkpoint share a curve up
    /// to the resume point: the configuration competes once, as the re-run.
    #[test]
    fn a_re_run_attempt_and_the_one_it_replaces_compete_once() {
        let mut trials = vec![trial(0, TrialState::Interrupted, &flat(1.0, 3))];
        trials.push(Trial { rerun_of: Some(0), ..trial(1, Running, &flat(1.0, 3)) });
        trials.extend((2..6).map(|i| trial(i, Complete, &flat(3.0 + i as f64, 9))));
        trials.push(trial(6, Running, &[(1, 2.0), (2, 2.0), (3, 2.0)]));
        let h = history(Direction::Minimize, trials);
        // Six configurations at step 3 keep the top two; trial 6 is second (counting trial 0
        // as well, it would be third of seven).
        assert_eq!(Asha::new(1, Some(27), 3).decide(&h.trials[6], &h), Verdict::Continue);
    }

    #[test]
    fn the_reason_names_rung_rank_and_kept() {
        let mut trials: Vec<Trial> = (0..8).map(|i| trial(i, Complete, &flat(i as f64, 9))).collect();
        trials.push(trial(8, Running, &flat(4.5, 9)));
        let h = history(Direction::Minimize, trials);
        let v = Asha::new(1, Some(27), 3).decide(&h.trials[8], &h);
        // Step 9 is rung 2; at rungs 0 and 1 it was decided at earlier reports.
        assert_eq!(v, Verdict::Stop("asha: rung 2 (step 9): rank 6 of 9, keeps top 3 (value 4.5)".into()));
    }

    #[test]
    fn decides_only_when_a_rung_is_first_reached_and_never_waits() {
        let asha = Asha::new(1, Some(27), 3);
        // Alone at a rung: rank 1 of 1, goes on.
        let h = history(Direction::Minimize, vec![trial(0, Running, &[(1, 10.0)])]);
        assert_eq!(asha.decide(&h.trials[0], &h), Verdict::Continue);
        // Worse than the one other trial at step 1: 2 trials keep top 1.
        let h = history(Direction::Minimize, vec![trial(0, Complete, &flat(1.0, 27)), trial(1, Running, &[(1, 2.0)])]);
        assert!(matches!(asha.decide(&h.trials[1], &h), Verdict::Stop(r) if r.contains("rank 2 of 2, keeps top 1")));
        // Step 2 is no rung: nothing to decide.
        let h = history(
            Direction::Minimize,
            vec![trial(0, Complete, &flat(1.0, 27)), trial(1, Running, &[(1, 2.0), (2, 2.0)])],
        );
        assert_eq!(asha.decide(&h.trials[1], &h), Verdict::Continue);
        // Reports that skip a rung are judged at the first report past it, by their best so far.
        let h = history(
            Direction::Minimize,
            vec![trial(0, Complete, &flat(1.0, 27)), trial(1, Running, &[(2, 0.5), (5, 3.0)])],
        );
        assert_eq!(asha.decide(&h.trials[1], &h), Verdict::Continue, "best 0.5 by step 5 beats 1.0 at rung 3");
        // The max resource is no rung: a trial that got there finishes.
        let h =
            history(Direction::Minimize, vec![trial(0, Complete, &flat(1.0, 27)), trial(1, Running, &flat(2.0, 27))]);
        assert_eq!(asha.decide(&h.trials[1], &h), Verdict::Continue);
    }

    /// MO-ASHA: nine trials at rung 1 (step 3) of a two-objective study, eta 3. Whoever
    /// arrives last, exactly the first non-dominated front goes on.
    #[test]
    fn with_two_objectives_a_rung_keeps_the_first_front() {
        use crate::pruner::testing::{history2, trial2};
        let points = [
            (1.0, 5.0),
            (2.0, 6.0),
            (3.0, 3.0),
            (7.0, 7.0),
            (4.0, 4.0),
            (5.0, 1.0),
            (8.0, 8.0),
            (6.0, 2.0),
            (9.0, 9.0),
        ];
        let asha = Asha::new(1, Some(27), 3);
        for me in 0..9 {
            let trials: Vec<Trial> = points
                .iter()
                .enumerate()
                .map(|(i, &(a, b))| trial2(i as u64, if i == me { Running } else { Complete }, 3, a, b))
                .collect();
            let h = history2([Direction::Minimize; 2], trials);
            let kept = asha.decide(&h.trials[me], &h) == Verdict::Continue;
            assert_eq!(kept, [0, 2, 5].contains(&me), "trial {me} at {:?}", points[me]);
        }
        // Maximizing `b`, points (i, i) all lie on one front; with six there and two kept, the
        // front's extremes go on. Equally crowded points tie, and a tie goes the judged one's way.
        let trials: Vec<Trial> = (0..6).map(|i| trial2(i, Complete, 3, i as f64, i as f64)).collect();
        let h = history2([Direction::Minimize, Direction::Maximize], trials.clone());
        let kept: Vec<u64> = (0..6).filter(|&i| asha.decide(&h.trials[i as usize], &h) == Verdict::Continue).collect();
        assert_eq!(kept, vec![0, 5]);
        let v = asha.decide(&h.trials[3], &h);
        assert_eq!(v, Verdict::Stop("asha: rung 1 (step 3): rank 3 of 6, keeps top 2 (a 3, b 3)".into()), "{v:?}");
    }

    /// A trial that has not reported every objective by a rung cannot be ranked there and goes
    /// on; a competitor without them does not count. NaN ranks behind every number.
    #[test]
    fn with_two_objectives_missing_or_nan_values_rank_last_or_not_at_all() {
        use crate::pruner::testing::{history2, trial2};
        let asha = Asha::new(1, Some(27), 3);
        let mut trials: Vec<Trial> = (0..3).map(|i| trial2(i, Complete, 9, 1.0 + i as f64, 1.0 + i as f64)).collect();
        trials.push(trial(3, Running, &flat(9.0, 3)));
        let h = history2([Direction::Minimize; 2], trials.clone());
        assert_eq!(asha.decide(&h.trials[3], &h), Verdict::Continue, "no `b` reported: not ranked");
        // Three that lack `b` do not make the rung hold more: a dominated one is still cut.
        trials.push(trial2(4, Running, 3, 5.0, 5.0));
        let h = history2([Direction::Minimize; 2], trials.clone());
        assert!(matches!(asha.decide(&h.trials[4], &h), Verdict::Stop(r) if r.contains("rank 4 of 4, keeps top 1")));
        // NaN in `b`: behind even a dominated point.
        let nan = trial2(5, Running, 3, 0.5, f64::NAN);
        trials.push(nan);
        let h = history2([Direction::Minimize; 2], trials);
        assert!(matches!(asha.decide(&h.trials[5], &h), Verdict::Stop(r) if r.contains("rank 5 of 5")));
    }

    /// Pausing MO-ASHA promotes paused trials that now fall within the cut, by their place in
    /// the promotion order.
    #[test]
    fn with_two_objectives_paused_trials_are_promoted_by_their_rank() {
        use crate::pruner::testing::{history2, trial2};
        let asha = Asha::new(3, Some(27), 3).pausing(true);
        let paused = |n, a, b| Trial { paused: true, ..trial2(n, Pruned, 3, a, b) };
        // (1, 1) dominates both paused points; with three at the rung only one goes on.
        let mut trials = vec![trial2(0, Running, 9, 1.0, 1.0), paused(1, 2.0, 3.0), paused(2, 3.0, 2.0)];
        let h = history2([Direction::Minimize; 2], trials.clone());
        assert!(asha.promotable(&h).is_empty());
        // Six dominated ones arrive: nine keep three, both paused points are on the second
        // front, ahead of the newcomers: both promoted, in number order (equal rank).
        trials.extend((3..9).map(|i| trial2(i, Complete, 9, 5.0 + i as f64, 5.0 + i as f64)));
        let h = history2([Direction::Minimize; 2], trials);
        assert_eq!(asha.promotable(&h), vec![1, 2]);
    }
}
