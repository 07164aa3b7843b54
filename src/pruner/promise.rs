//! The learning-curve veto (`min_promise`): a rule's stop (or pause) is overruled while the
//! trial's forecast final value (`crate::curve`) beats the bar with at least probability
//! `min_promise`. The bar is the best complete trial's value (with none complete yet, the best
//! value any trial has shown). This keeps late bloomers that a rung ranks low but whose curve
//! is still falling steeply, and lets the rule stop curves that have flattened out behind.
//!
//! The forecast's prior for the final value (`curve::Prior`) is what the GP sampler expected of
//! the configuration when it proposed it (`expected` in the trial's sampler state), which is
//! how configurations share what they know: a late bloomer's first reports say little, but the
//! model of the finished trials may already rank its configuration high. Without it (random
//! search, several objectives) the prior is how the complete trials' curves moved after the
//! same step. Pure like every pruner: both come from the history, so a resumed study decides
//! the same way.

use super::{show, Pruner, Verdict};
use crate::curve::{forecast, Prior};
use crate::trial::{History, Trial, TrialState};

pub struct Promise {
    pub inner: Box<dyn Pruner>,
    pub min_promise: f64,
    /// The step a full trial runs to; without one (median, percentile, asha without
    /// `max_resource`), the last step of the complete trials.
    pub horizon: Option<i64>,
}

impl Pruner for Promise {
    fn decide(&self, trial: &Trial, history: &History) -> Verdict {
        let verdict = self.inner.decide(trial, history);
        if verdict == Verdict::Continue {
            return verdict;
        }
        let Some((chance, bar)) = chance(trial, history, self.horizon) else { return verdict };
        let note = |reason: String| {
            format!(
                "{reason}; forecast beats {} with chance {:.2} (min_promise {})",
                show(bar),
                chance,
                show(self.min_promise)
            )
        };
        match verdict {
            _ if chance >= self.min_promise => Verdict::Continue,
            Verdict::Stop(reason) => Verdict::Stop(note(reason)),
            Verdict::Pause(reason) => Verdict::Pause(note(reason)),
            Verdict::Continue => Verdict::Continue,
        }
    }

    fn promotable(&self, history: &History) -> Vec<u64> {
        self.inner.promotable(history)
    }
}

/// The probability that `trial` ends better than the bar, and the bar (in the objective's
/// units). `None` when there is nothing to forecast or no horizon is known.
pub fn chance(trial: &Trial, history: &History, horizon: Option<i64>) -> Option<(f64, f64)> {
    let objective = history.goals.objectives.first()?;
    let sign = objective.sign();
    let signed = |curve: &[(i64, f64)]| -> Vec<(i64, f64)> {
        curve.iter().filter(|p| !p.1.is_nan()).map(|&(s, v)| (s, sign * v)).collect()
    };
    let complete: Vec<&Trial> = history.trials.iter().filter(|t| t.state == TrialState::Complete).collect();
    let finished: Vec<Vec<(i64, f64)>> = complete.iter().map(|t| signed(&t.curve)).collect();
    let horizon = horizon.or_else(|| finished.iter().filter_map(|c| c.last().map(|p| p.0)).max())?;
    let own: Vec<(i64, f64)> = signed(&trial.curve).into_iter().filter(|p| p.1.is_finite()).collect();
    let &(step, last) = own.last()?;
    let points: Vec<(f64, f64)> = own.iter().map(|&(s, v)| (s.max(1) as f64, v)).collect();
    let finals = complete.iter().filter_map(|t| t.value).map(|v| sign * v).filter(|v| v.is_finite());
    let shown: Vec<f64> =
        history.trials.iter().flat_map(|t| signed(&t.curve)).map(|p| p.1).filter(|v| v.is_finite()).collect();
    let bar = finals.reduce(f64::min).or_else(|| shown.iter().copied().reduce(f64::min))?;
    let population = Prior::from_finished(finished.iter().map(Vec::as_slice), step, horizon).unwrap_or_else(|| {
        let (lo, hi) = shown.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        Prior::flat((hi - lo).max(1e-9 * (1.0 + bar.abs())))
    });
    // The GP's view of this configuration and the study's view of a curve at this level are
    // two pieces of evidence on the final: their product (precision-weighted), so whichever
    // is sharper leads (on curves whose early ranks hold, the level; on late bloomers, whose
    // changes vary widely, the configuration).
    let prior = match expected(trial) {
        Some((median, sd)) => {
            let (a, va) = (sign * median, sd * sd + population.noise * population.noise);
            let (b, vb) = (last + population.shift, population.spread * population.spread);
            let v = 1.0 / (1.0 / va + 1.0 / vb);
            Prior { shift: v * (a / va + b / vb) - last, spread: v.sqrt(), noise: population.noise }
        }
        None => population,
    };
    let chance = forecast(&points, horizon as f64, prior)?.prob_below(bar);
    Some((chance, sign * bar))
}

/// The final value the sampler expected of the trial's configuration (the GP's `expected` in
/// its state), `(median, sd)` in the metric's units.
fn expected(trial: &Trial) -> Option<(f64, f64)> {
    let e = &trial.sampler_state.as_ref()?["expected"];
    let (median, sd) = (e["median"].as_f64()?, e["sd"].as_f64()?);
    (median.is_finite() && sd.is_finite() && sd > 0.0).then_some((median, sd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::Direction;
    use crate::pruner::testing::{history, trial, Always};
    use TrialState::*;

    /// Ten complete curves `f + (1 - f) e^{-t/5}` over 30 steps, finals f = 0.5 .. 0.95.
    fn finished() -> Vec<Trial> {
        (0..10)
            .map(|i| {
                let f = 0.5 + 0.05 * i as f64;
                let curve: Vec<(i64, f64)> = (1..=30).map(|s| (s, f + (1.0 - f) * (-(s as f64) / 5.0).exp())).collect();
                trial(i, Complete, &curve)
            })
            .collect()
    }

    fn promise(min_promise: f64) -> Promise {
        Promise { inner: Box::new(Always), min_promise, horizon: Some(30) }
    }

    #[test]
    fn a_curve_still_falling_steeply_is_kept_and_a_flat_one_behind_is_stopped() {
        // A late bloomer: above everyone at step 6 but falling fast, straight down.
        let bloomer: Vec<(i64, f64)> = (1..=6).map(|s| (s, 1.6 - 0.08 * s as f64)).collect();
        // Flat at 0.9, behind the best final 0.5.
        let flat: Vec<(i64, f64)> = (1..=6).map(|s| (s, 0.9 + 0.3 * (-(s as f64)).exp())).collect();
        let mut trials = finished();
        trials.push(trial(10, Running, &bloomer));
        trials.push(trial(11, Running, &flat));
        let h = history(Direction::Minimize, trials);
        let p = promise(0.1);
        assert_eq!(p.decide(&h.trials[10], &h), Verdict::Continue);
        match p.decide(&h.trials[11], &h) {
            Verdict::Stop(r) => {
                assert!(r.starts_with("always; forecast beats 0.501") && r.contains("min_promise 0.1"), "{r}");
            }
            v => panic!("{v:?}"),
        }
        let (odds, bar) = chance(&h.trials[11], &h, Some(30)).unwrap();
        assert!(odds < 0.01 && (bar - 0.5).abs() < 0.01, "{odds} {bar}");
    }

    #[test]
    fn maximized_metrics_and_a_missing_horizon_are_read_from_the_history() {
        let flip = |t: Trial| Trial {
            curve: t.curve.iter().map(|&(s, v)| (s, -v)).collect(),
            value: t.value.map(|v| -v),
            ..t
        };
        let mut trials: Vec<Trial> = finished().into_iter().map(flip).collect();
        let rising: Vec<(i64, f64)> = (1..=6).map(|s| (s, -1.6 + 0.08 * s as f64)).collect();
        trials.push(trial(10, Running, &rising));
        let h = history(Direction::Maximize, trials);
        let (odds, bar) = chance(&h.trials[10], &h, None).unwrap();
        assert!(odds > 0.1 && (bar + 0.5).abs() < 0.01, "{odds} {bar}");
        // Nothing complete and no horizon: no forecast, the rule decides.
        let lone = history(Direction::Minimize, vec![trial(0, Running, &[(1, 1.0)])]);
        assert_eq!(chance(&lone.trials[0], &lone, None), None);
        let unbounded = Promise { horizon: None, ..promise(0.1) };
        assert_eq!(unbounded.decide(&lone.trials[0], &lone), Verdict::Stop("always".into()));
        // With a horizon, a lone first report is the prior alone: an even chance of beating the
        // best value shown (its own), so the veto keeps it.
        assert_eq!(promise(0.1).decide(&lone.trials[0], &lone), Verdict::Continue);
    }
}
