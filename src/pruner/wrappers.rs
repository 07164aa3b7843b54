//! Wrappers around any rule.
//!
//! - `Patience`: the rule's stop takes effect only once the trial has gone `patience` reports
//!   without improving its best value (strictly better in the objective's direction). While it
//!   still improves, the trial goes on. Counting: with reports v1..vn whose last new best was
//!   report i, the trial has gone `n - i` reports without improvement (its first report is a
//!   new best). A rule that decides only at rungs (ASHA) does not ask again later, so patience
//!   may let a trial past a rung for good. With several objectives, a trial improves when any
//!   objective reaches a new best.
//! - `Threshold`: on whenever a pruner is configured. A trial whose latest value is NaN or
//!   infinite, or below `lower` or above `upper`, is stopped at once, before the rule is asked
//!   and whatever patience says. With several objectives, a non-finite value of any stops it
//!   (the bounds are refused there: they would judge one objective).

use super::{fresh_point, fresh_point_of, show, Pruner, Verdict};
use crate::objective::Objective;
use crate::trial::{History, Trial};

pub struct Patience {
    pub inner: Box<dyn Pruner>,
    pub patience: u32,
}

/// Reports since the trial's best value last improved.
pub fn reports_without_improvement(objective: &Objective, curve: &[(i64, f64)]) -> usize {
    let mut best = f64::NAN;
    let mut last = None;
    for (i, &(_, v)) in curve.iter().enumerate() {
        if !v.is_nan() && (best.is_nan() || objective.better(v, best)) {
            best = v;
            last = Some(i);
        }
    }
    match last {
        Some(i) => curve.len() - 1 - i,
        None => curve.len(),
    }
}

impl Pruner for Patience {
    fn decide(&self, trial: &Trial, history: &History) -> Verdict {
        // With several objectives, an improvement of any of them counts.
        let since = || {
            let objectives = history.goals.objectives.iter().enumerate();
            objectives.map(|(k, o)| reports_without_improvement(o, trial.curve_of(k))).min().unwrap_or(0)
        };
        let note = |reason: String, since: usize| {
            format!("{reason}; no improvement for {since} reports (patience {})", self.patience)
        };
        match self.inner.decide(trial, history) {
            Verdict::Continue => Verdict::Continue,
            Verdict::Stop(reason) if since() >= self.patience as usize => Verdict::Stop(note(reason, since())),
            Verdict::Pause(reason) if since() >= self.patience as usize => Verdict::Pause(note(reason, since())),
            Verdict::Stop(_) | Verdict::Pause(_) => Verdict::Continue,
        }
    }

    fn promotable(&self, history: &History) -> Vec<u64> {
        self.inner.promotable(history)
    }
}

pub struct Threshold {
    pub inner: Box<dyn Pruner>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
}

impl Pruner for Threshold {
    fn decide(&self, trial: &Trial, history: &History) -> Verdict {
        // With several objectives, a non-finite value of any of them stops the trial too.
        for (k, objective) in history.goals.objectives.iter().enumerate().skip(1) {
            if let Some((step, v)) = fresh_point_of(trial, k).filter(|p| !p.1.is_finite()) {
                let metric = &objective.metric;
                return Verdict::Stop(format!("threshold: {metric} {v} at step {step} is not a finite number"));
            }
        }
        if let Some((step, v)) = fresh_point(trial) {
            if !v.is_finite() {
                return Verdict::Stop(format!("threshold: value {v} at step {step} is not a finite number"));
            }
            if let Some(lo) = self.lower.filter(|lo| v < *lo) {
                return Verdict::Stop(format!(
                    "threshold: value {} at step {step} is below lower = {}",
                    show(v),
                    show(lo)
                ));
            }
            if let Some(hi) = self.upper.filter(|hi| v > *hi) {
                return Verdict::Stop(format!(
                    "threshold: value {} at step {step} is above upper = {}",
                    show(v),
                    show(hi)
                ));
            }
        }
        self.inner.decide(trial, history)
    }

    fn promotable(&self, history: &History) -> Vec<u64> {
        self.inner.promotable(history)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::Direction;
    use crate::pruner::testing::{history, trial, Always};
    use crate::pruner::NoPruner;
    use crate::trial::TrialState::Running;

    fn curve(values: &[f64]) -> Vec<(i64, f64)> {
        values.iter().enumerate().map(|(i, v)| (i as i64 + 1, *v)).collect()
    }

    #[test]
    fn counts_reports_since_the_last_improvement() {
        let min = Objective { metric: "loss".into(), direction: Direction::Minimize };
        let max = Objective { direction: Direction::Maximize, ..min.clone() };
        let c = curve(&[5.0, 4.0, 3.0, 3.1, 3.2, 3.3]);
        assert_eq!(reports_without_improvement(&min, &c), 3);
        assert_eq!(reports_without_improvement(&max, &c), 5, "5.0 stays the best when maximizing");
        assert_eq!(reports_without_improvement(&min, &curve(&[5.0, 4.0, 4.0])), 1, "equal is no improvement");
        assert_eq!(reports_without_improvement(&min, &curve(&[f64::NAN, f64::NAN])), 2);
        assert_eq!(reports_without_improvement(&min, &curve(&[7.0])), 0);
    }

    #[test]
    fn patience_delays_a_stop_until_the_trial_stalls() {
        let p = Patience { inner: Box::new(Always), patience: 3 };
        let decide = |values: &[f64]| {
            let t = trial(0, Running, &curve(values));
            let h = history(Direction::Minimize, vec![t.clone()]);
            p.decide(&t, &h)
        };
        assert_eq!(decide(&[5.0, 4.0, 3.0]), Verdict::Continue);
        assert_eq!(decide(&[5.0, 4.0, 3.0, 3.1, 3.2]), Verdict::Continue);
        assert_eq!(
            decide(&[5.0, 4.0, 3.0, 3.1, 3.2, 3.3]),
            Verdict::Stop("always; no improvement for 3 reports (patience 3)".into())
        );
        // An improvement resets the count.
        assert_eq!(decide(&[5.0, 4.0, 3.0, 3.1, 3.2, 2.9]), Verdict::Continue);
        // The inner rule's continue stands whatever the curve.
        let q = Patience { inner: Box::new(NoPruner), patience: 1 };
        let t = trial(0, Running, &curve(&[1.0, 2.0, 3.0]));
        assert_eq!(q.decide(&t, &history(Direction::Minimize, vec![t.clone()])), Verdict::Continue);
    }

    #[test]
    fn nan_infinity_and_bounds_stop_at_once() {
        let p = Threshold { inner: Box::new(NoPruner), lower: Some(0.0), upper: Some(10.0) };
        let decide = |values: &[f64]| {
            let t = trial(0, Running, &curve(values));
            let h = history(Direction::Minimize, vec![t.clone()]);
            p.decide(&t, &h)
        };
        assert_eq!(decide(&[5.0, 4.0]), Verdict::Continue);
        assert_eq!(
            decide(&[5.0, f64::NAN]),
            Verdict::Stop("threshold: value NaN at step 2 is not a finite number".into())
        );
        assert_eq!(
            decide(&[f64::INFINITY]),
            Verdict::Stop("threshold: value inf at step 1 is not a finite number".into())
        );
        assert_eq!(decide(&[5.0, 12.5]), Verdict::Stop("threshold: value 12.5 at step 2 is above upper = 10".into()));
        assert_eq!(decide(&[-0.5]), Verdict::Stop("threshold: value -0.5 at step 1 is below lower = 0".into()));
        // Only the latest value counts: a bad old value was judged when it came.
        assert_eq!(decide(&[12.5, 5.0]), Verdict::Continue);
        // NaN stops even through patience (threshold is outermost in from_config).
        let cfg = crate::study::PrunerConfig {
            rule: crate::study::PrunerRule::Asha { min_resource: 1, max_resource: Some(9), eta: 3 },
            patience: Some(100),
            min_promise: None,
            lower: None,
            upper: None,
            pause: false,
        };
        let t = trial(0, Running, &curve(&[1.0, f64::NAN]));
        assert!(matches!(
            crate::pruner::from_config(&cfg).decide(&t, &history(Direction::Minimize, vec![t.clone()])),
            Verdict::Stop(r) if r.starts_with("threshold: value NaN")
        ));
    }

    #[test]
    fn a_report_without_the_objective_is_not_judged_again() {
        let p = Threshold { inner: Box::new(Always), lower: None, upper: Some(1.0) };
        let mut t = trial(0, Running, &curve(&[5.0]));
        t.last_step = Some(2);
        let h = history(Direction::Minimize, vec![t.clone()]);
        // The threshold skips the stale point; the inner rule is still asked.
        assert_eq!(p.decide(&t, &h), Verdict::Stop("always".into()));
    }

    /// With two objectives a non-finite value of the second stops the trial, and an improvement
    /// of either resets patience.
    #[test]
    fn with_two_objectives_either_counts() {
        use crate::pruner::testing::history2;
        let two = |a: &[f64], b: &[f64]| {
            let t = Trial { other_curves: vec![curve(b)], ..trial(0, Running, &curve(a)) };
            (t.clone(), history2([Direction::Minimize, Direction::Maximize], vec![t]))
        };
        let threshold = Threshold { inner: Box::new(NoPruner), lower: None, upper: None };
        let (t, h) = two(&[3.0, 2.0], &[0.5, f64::NAN]);
        assert_eq!(threshold.decide(&t, &h), Verdict::Stop("threshold: b NaN at step 2 is not a finite number".into()));
        let patience = Patience { inner: Box::new(Always), patience: 2 };
        let (t, h) = two(&[3.0, 3.0, 3.0], &[0.5, 0.6, 0.7]);
        assert_eq!(patience.decide(&t, &h), Verdict::Continue, "b (maximized) still improves");
        let (t, h) = two(&[3.0, 3.0, 3.0], &[0.5, 0.4, 0.4]);
        assert_eq!(patience.decide(&t, &h), Verdict::Stop("always; no improvement for 2 reports (patience 2)".into()));
    }
}
