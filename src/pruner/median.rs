//! Median and percentile pruning: at each report from `warmup_steps` on, a trial's best value
//! so far is compared with the completed trials' values at the same step (each one's best up to
//! its first report at or past that step). It is stopped when worse than their `percentile`-th
//! best (linear interpolation; 50 = the median, 25 = stop unless in the best quarter). Nothing
//! is judged at a step fewer than `min_trials` completed trials reached.

use super::{ahead, best_of, fresh_point, show, value_at, Pruner, Verdict};
use crate::trial::{History, Trial, TrialState};

pub struct Percentile {
    pub percentile: f64,
    pub warmup_steps: i64,
    pub min_trials: u32,
    /// Call it the median in reasons (percentile 50).
    pub median: bool,
}

impl Pruner for Percentile {
    fn decide(&self, trial: &Trial, history: &History) -> Verdict {
        let Some((step, _)) = fresh_point(trial) else { return Verdict::Continue };
        if step < self.warmup_steps {
            return Verdict::Continue;
        }
        let objective = &history.objective();
        let mut others: Vec<f64> = history
            .trials
            .iter()
            .filter(|t| t.state == TrialState::Complete && t.number != trial.number)
            .filter_map(|t| value_at(objective, &t.curve, step))
            .filter(|v| !v.is_nan())
            .collect();
        if others.len() < self.min_trials.max(1) as usize {
            return Verdict::Continue;
        }
        // Best first, so the percentile counts from the good end in either direction.
        others.sort_by(|a, b| {
            if objective.better(*a, *b) {
                std::cmp::Ordering::Less
            } else if objective.better(*b, *a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        let pos = self.percentile / 100.0 * (others.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        let cut = others[lo] + (others[hi] - others[lo]) * (pos - lo as f64);
        let own = best_of(objective, trial.curve.iter().map(|p| p.1));
        if !own.is_nan() && !objective.better(cut, own) {
            return Verdict::Continue;
        }
        let rank = 1 + others.iter().filter(|&&v| ahead(objective, v, own)).count();
        let rule = if self.median {
            format!("median: step {step}: best {} is worse than the median {}", show(own), show(cut))
        } else {
            let p = show(self.percentile);
            format!("percentile {p}: step {step}: best {} is worse than the {p}th percentile {}", show(own), show(cut))
        };
        Verdict::Stop(format!(
            "{rule} of {} completed trials at this step (rank {rank} of {})",
            others.len(),
            others.len() + 1
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::Direction;
    use crate::pruner::testing::{flat, history, trial};
    use crate::trial::TrialState::{Complete, Pruned, Running};

    fn median(warmup_steps: i64, min_trials: u32) -> Percentile {
        Percentile { percentile: 50.0, warmup_steps, min_trials, median: true }
    }

    /// Completed trials with values 1..=5 at every step, and one running trial.
    fn five_and(direction: Direction, curve: &[(i64, f64)]) -> History {
        let mut trials: Vec<Trial> = (0..5).map(|i| trial(i, Complete, &flat(1.0 + i as f64, 10))).collect();
        trials.push(trial(5, Running, curve));
        history(direction, trials)
    }

    #[test]
    fn stops_a_trial_worse_than_the_median_and_states_why() {
        let h = five_and(Direction::Minimize, &flat(3.5, 4));
        assert_eq!(
            median(0, 5).decide(&h.trials[5], &h),
            Verdict::Stop(
                "median: step 4: best 3.5 is worse than the median 3 of 5 completed trials at this step (rank 4 of 6)"
                    .into()
            )
        );
        // Equal to the median is not worse.
        let h = five_and(Direction::Minimize, &flat(3.0, 4));
        assert_eq!(median(0, 5).decide(&h.trials[5], &h), Verdict::Continue);
    }

    #[test]
    fn never_stops_before_the_warmup() {
        let p = median(5, 1);
        for s in 1..=10 {
            let h = five_and(Direction::Minimize, &flat(100.0, s));
            let v = p.decide(&h.trials[5], &h);
            assert_eq!(v == Verdict::Continue, s < 5, "step {s}: {v:?}");
        }
    }

    #[test]
    fn needs_min_trials_completed_at_the_step() {
        // Five completed trials, but only to step 10: at step 11 nobody is there to compare.
        let h = five_and(Direction::Minimize, &flat(100.0, 11));
        assert_eq!(median(0, 1).decide(&h.trials[5], &h), Verdict::Continue);
        let h = five_and(Direction::Minimize, &flat(100.0, 3));
        assert_eq!(median(0, 6).decide(&h.trials[5], &h), Verdict::Continue);
        // Pruned trials do not count as completed.
        let mut h = five_and(Direction::Minimize, &flat(100.0, 3));
        h.trials[0].state = Pruned;
        assert_eq!(median(0, 5).decide(&h.trials[5], &h), Verdict::Continue);
        assert!(matches!(median(0, 4).decide(&h.trials[5], &h), Verdict::Stop(_)));
    }

    #[test]
    fn maximize_keeps_the_high_end() {
        let h = five_and(Direction::Maximize, &flat(3.5, 4));
        assert_eq!(median(0, 5).decide(&h.trials[5], &h), Verdict::Continue);
        let h = five_and(Direction::Maximize, &flat(2.5, 4));
        assert!(matches!(median(0, 5).decide(&h.trials[5], &h), Verdict::Stop(r) if r.contains("rank 4 of 6")));
        // Its best so far counts, not its latest value.
        let h = five_and(Direction::Maximize, &[(1, 4.5), (2, 1.0)]);
        assert_eq!(median(0, 5).decide(&h.trials[5], &h), Verdict::Continue);
    }

    #[test]
    fn percentile_interpolates_from_the_good_end() {
        // Values 1..5, minimize: the 25th percentile is 2; maximize: it is 4.
        let p = Percentile { percentile: 25.0, warmup_steps: 0, min_trials: 1, median: false };
        let h = five_and(Direction::Minimize, &flat(2.1, 2));
        assert!(
            matches!(p.decide(&h.trials[5], &h), Verdict::Stop(r) if r.starts_with("percentile 25: step 2: best 2.1 is worse than the 25th percentile 2 of 5"))
        );
        let h = five_and(Direction::Minimize, &flat(1.9, 2));
        assert_eq!(p.decide(&h.trials[5], &h), Verdict::Continue);
        let h = five_and(Direction::Maximize, &flat(3.9, 2));
        assert!(matches!(p.decide(&h.trials[5], &h), Verdict::Stop(_)));
        let h = five_and(Direction::Maximize, &flat(4.0, 2));
        assert_eq!(p.decide(&h.trials[5], &h), Verdict::Continue);
        // Between ranks: 10th percentile of 1..5 is 1.4.
        let p = Percentile { percentile: 10.0, ..p };
        let h = five_and(Direction::Minimize, &flat(1.41, 2));
        assert!(matches!(p.decide(&h.trials[5], &h), Verdict::Stop(r) if r.contains("percentile 1.4 ")));
    }
}
