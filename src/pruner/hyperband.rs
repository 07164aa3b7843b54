//! Hyperband (Li et al. 2017) as ASHA brackets.
//!
//! With `s_max = floor(log_eta(max_resource / min_resource))` there are `s_max + 1` brackets.
//! Bracket `b` is successive halving whose first rung is `min_resource * eta^b`, so bracket 0
//! prunes hardest and the last may prune nothing. As Hyperband prescribes, bracket `b` (with
//! `s = s_max - b` halvings) gets `ceil((s_max + 1) * eta^s / (s + 1))` trials out of every
//! cycle of `total` trials. A trial's bracket follows from its number alone: the cycle's slots
//! are interleaved evenly in proportion to those budgets, and slot `number % total` is taken. A
//! retry or re-run keeps the bracket of the trial it re-runs. Trials compete only with trials
//! of their own bracket.

use super::asha::{halving, promotable, Rungs};
use super::{Pruner, Verdict};
use crate::study::brackets::{bracket_budgets, MAX_TOTAL_BUDGET};
use crate::trial::{History, Trial};

pub struct Hyperband {
    brackets: Vec<Rungs>,
    /// One bracket index per slot of a cycle.
    schedule: Vec<u8>,
    /// `mode = "pause"`: below the cut a trial pauses instead of stopping.
    pause: bool,
}

impl Hyperband {
    pub fn new(min_resource: i64, max_resource: i64, eta: u32) -> Hyperband {
        let budgets = bracket_budgets(min_resource, max_resource, eta);
        let brackets = (0..budgets.len())
            .map(|b| Rungs {
                min_resource: min_resource.saturating_mul((eta as i64).saturating_pow(b as u32)),
                max_resource: Some(max_resource),
                eta,
            })
            .collect();
        // Bracket b's j-th slot sits at (j + 1/2) / n_b of the cycle; merge them in that order.
        let mut slots: Vec<(f64, u8)> = Vec::new();
        for (b, &n) in budgets.iter().enumerate() {
            let n = n.min(MAX_TOTAL_BUDGET);
            slots.extend((0..n).map(|j| ((j as f64 + 0.5) / n as f64, b as u8)));
        }
        slots.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        Hyperband { brackets, schedule: slots.into_iter().map(|s| s.1).collect(), pause: false }
    }

    /// Pauses trials below the cut instead of stopping them (`mode = "pause"`).
    pub fn pausing(self, pause: bool) -> Hyperband {
        Hyperband { pause, ..self }
    }

    pub fn brackets(&self) -> usize {
        self.brackets.len()
    }

    /// The bracket of trial `number` (a first attempt: re-runs take their original's).
    pub fn bracket_of_number(&self, number: u64) -> usize {
        self.schedule[(number % self.schedule.len() as u64) as usize] as usize
    }

    /// The bracket of a trial in `history`, following re-runs back to the first attempt.
    pub fn bracket_of(&self, trial: &Trial, history: &History) -> usize {
        self.bracket_of_number(trial.rerun_of.map_or(trial.number, |of| history.first_attempt(of)))
    }
}

impl Pruner for Hyperband {
    fn decide(&self, trial: &Trial, history: &History) -> Verdict {
        let b = self.bracket_of(trial, history);
        let label = format!("hyperband: bracket {b} of {}", self.brackets.len());
        halving(&self.brackets[b], &label, self.pause, trial, history, |t| self.bracket_of(t, history) == b)
    }

    fn promotable(&self, history: &History) -> Vec<u64> {
        let ladder = |t: &Trial| self.pause.then(|| self.brackets[self.bracket_of(t, history)]);
        promotable(history, ladder, |t, other| self.bracket_of(t, history) == self.bracket_of(other, history))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::Direction;
    use crate::pruner::testing::{flat, history, trial};
    use crate::trial::TrialState::{Complete, Running};

    #[test]
    fn brackets_and_budgets_follow_hyperband() {
        // R = 27, eta = 3: s_max = 3, budgets ceil(4 * 3^s / (s + 1)) for s = 3, 2, 1, 0.
        assert_eq!(bracket_budgets(1, 27, 3), vec![27, 12, 6, 4]);
        assert_eq!(bracket_budgets(1, 81, 3), vec![81, 34, 15, 8, 5]);
        // Not a power: 1..30 still has s_max = 3.
        assert_eq!(bracket_budgets(1, 30, 3).len(), 4);
        assert_eq!(bracket_budgets(2, 3, 3), vec![1]);
        let h = Hyperband::new(1, 27, 3);
        assert_eq!(h.brackets(), 4);
        assert_eq!(h.brackets[0].steps(100), vec![1, 3, 9]);
        assert_eq!(h.brackets[2].steps(100), vec![9]);
        assert_eq!(h.brackets[3].steps(100), Vec::<i64>::new(), "the last bracket runs every trial to the end");
    }

    #[test]
    fn trials_are_assigned_by_number_in_proportion_and_interleaved() {
        let h = Hyperband::new(1, 27, 3);
        let mut counts = [0; 4];
        for n in 0..49 {
            counts[h.bracket_of_number(n)] += 1;
        }
        assert_eq!(counts, [27, 12, 6, 4]);
        // The next cycle repeats the first, and every bracket shows up early on.
        assert!((0..49).all(|n| h.bracket_of_number(n) == h.bracket_of_number(n + 49)));
        let first: std::collections::BTreeSet<usize> = (0..13).map(|n| h.bracket_of_number(n)).collect();
        assert_eq!(first.len(), 4, "{first:?}");
        assert_eq!(
            (0..13).map(|n| h.bracket_of_number(n)).collect::<Vec<_>>(),
            vec![0, 1, 0, 2, 0, 1, 3, 0, 0, 0, 1, 0, 2]
        );
    }

    #[test]
    fn trials_compete_only_within_their_bracket_and_reruns_keep_it() {
        let hb = Hyperband::new(1, 27, 3);
        let b0: Vec<u64> = (0..49).filter(|&n| hb.bracket_of_number(n) == 0).collect();
        let b1: Vec<u64> = (0..49).filter(|&n| hb.bracket_of_number(n) == 1).collect();
        // A bracket-0 trial worse than a better bracket-1 trial at step 1: alone in its bracket.
        let h = history(
            Direction::Minimize,
            vec![trial(b1[0], Complete, &flat(0.1, 27)), trial(b0[1], Running, &[(1, 5.0)])],
        );
        assert_eq!(hb.decide(&h.trials[1], &h), Verdict::Continue);
        // Against a bracket-0 trial it is stopped, and the reason names the bracket.
        let h = history(
            Direction::Minimize,
            vec![trial(b0[0], Complete, &flat(0.1, 27)), trial(b0[1], Running, &[(1, 5.0)])],
        );
        assert_eq!(
            hb.decide(&h.trials[1], &h),
            Verdict::Stop("hyperband: bracket 0 of 4: rung 0 (step 1): rank 2 of 2, keeps top 1 (value 5)".into())
        );
        // A re-run of a bracket-1 trial is in bracket 1, whatever its own number says.
        let number = (49..98).find(|&n| hb.bracket_of_number(n) == 0).unwrap();
        let mut rerun = trial(number, Running, &[(1, 5.0)]);
        rerun.rerun_of = Some(b1[1]);
        let h = history(Direction::Minimize, vec![trial(b1[1], Complete, &[]), rerun]);
        assert_eq!(hb.bracket_of(&h.trials[1], &h), 1);
        // Bracket 1 has no rung at step 1: nothing to decide there.
        assert_eq!(hb.decide(&h.trials[1], &h), Verdict::Continue);
    }
}
