//! Turns what a worker did into the trial's final state and stored result.

use crate::executor::{Exit, Outcome};
use crate::objective::Goals;
use crate::trial::Finish;
use crate::trial::{Metrics, TrialState};

/// Why the coordinator stopped a trial, if it did.
#[derive(Debug, Clone, PartialEq)]
pub enum StopCause {
    /// The pruner said so; the reason is stored.
    Pruned(String),
    /// The pruner paused it (`mode = "pause"`): recorded PRUNED and paused, resumable from its
    /// checkpoint if it is promoted later.
    Paused(String),
    /// The coordinator is shutting down.
    Shutdown,
    /// Someone pressed stop on the web page. Recorded PRUNED (stopped early on purpose, counts
    /// toward the budget, its last values kept), with a reason saying who stopped it.
    User,
}

/// Decides the state and the stored result. The metrics are the worker's final line, or else
/// its last report ("or simply its last report" in the protocol).
pub fn classify(
    outcome: &Outcome,
    last_report: Option<&Metrics>,
    last_step: Option<i64>,
    stop: Option<&StopCause>,
    goals: &Goals,
) -> (TrialState, Finish) {
    let metrics = outcome.final_metrics.clone().or_else(|| last_report.cloned());
    let objective = &goals.objectives[0];
    let value = metrics.as_ref().and_then(|m| m.get(&objective.metric).copied());
    let mut finish = Finish {
        value,
        metrics: metrics.clone(),
        last_step,
        reason: None,
        stderr_tail: (!outcome.stderr_tail.is_empty()).then(|| outcome.stderr_tail.clone()),
        paused: false,
    };
    let failed = |reason: String, mut finish: Finish| {
        finish.reason = Some(reason);
        (TrialState::Failed, finish)
    };
    match (stop, &outcome.exit) {
        (Some(StopCause::Shutdown), _) => {
            finish.reason = Some("interrupted: the coordinator stopped".into());
            (TrialState::Interrupted, finish)
        }
        (Some(StopCause::Pruned(why)), _) => {
            finish.reason = Some(why.clone());
            (TrialState::Pruned, finish)
        }
        (Some(StopCause::Paused(why)), _) => {
            finish.reason = Some(format!("{why}; resumes if it is promoted"));
            finish.paused = true;
            (TrialState::Pruned, finish)
        }
        (Some(StopCause::User), _) => {
            finish.reason = Some("stopped from the web page".into());
            (TrialState::Pruned, finish)
        }
        (None, Exit::SpawnFailed(why)) => failed(why.clone(), finish),
        (None, Exit::TimedOut(t)) => failed(format!("timed out after {}", humantime::format_duration(*t)), finish),
        (None, Exit::Stopped) => failed("stopped".into(), finish),
        (None, Exit::JobLost(why)) => failed(why.clone(), finish),
        (None, Exit::JobPreempted(why)) => {
            finish.reason = Some(format!("interrupted: {why}"));
            (TrialState::Interrupted, finish)
        }
        (None, Exit::Code(c)) => {
            // The worker's last words usually say why (the built-in workers print `error: ...`).
            let last = outcome.stderr_tail.lines().rev().map(str::trim).find(|l| !l.is_empty());
            let why = last.map_or(String::new(), |l| format!(": {}", l.chars().take(300).collect::<String>()));
            failed(format!("worker exited with code {c}{why}"), finish)
        }
        (None, Exit::Signal(s)) => failed(format!("worker killed by signal {s} ({})", signal_name(*s)), finish),
        (None, Exit::Success) => match value {
            None => {
                let reported: Vec<&str> = metrics.iter().flat_map(|m| m.keys()).map(String::as_str).collect();
                let reason = if reported.is_empty() {
                    format!("worker reported no metrics (expected `{}`)", objective.metric)
                } else {
                    format!("worker did not report `{}` (it reported: {})", objective.metric, reported.join(", "))
                };
                failed(reason, finish)
            }
            Some(v) if !v.is_finite() => failed(format!("objective `{}` is {v}", objective.metric), finish),
            // Every objective of a multi-objective study, finite.
            Some(_) => match goals.objectives[1..].iter().find_map(|o| {
                let v = metrics.as_ref().and_then(|m| m.get(&o.metric).copied());
                (!v.is_some_and(f64::is_finite)).then_some((o, v))
            }) {
                None => (TrialState::Complete, finish),
                Some((o, None)) => failed(format!("worker did not report objective `{}`", o.metric), finish),
                Some((o, Some(v))) => failed(format!("objective `{}` is {v}", o.metric), finish),
            },
        },
    }
}

fn signal_name(s: i32) -> &'static str {
    match s {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGINT => "SIGINT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::{Direction, Objective};

    fn goals() -> Goals {
        Goals::single(Objective { metric: "loss".into(), direction: Direction::Minimize })
    }

    fn metrics(v: f64) -> Metrics {
        [("loss".to_string(), v)].into_iter().collect()
    }

    #[test]
    fn failures_carry_their_reason() {
        let o = |exit| Outcome { exit, final_metrics: None, stderr_tail: "boom".into() };
        let (s, f) = classify(&o(Exit::Code(3)), None, None, None, &goals());
        assert_eq!(
            (s, f.reason.as_deref(), f.stderr_tail.as_deref()),
            (TrialState::Failed, Some("worker exited with code 3: boom"), Some("boom"))
        );
        let (s, f) = classify(&o(Exit::Signal(11)), None, None, None, &goals());
        assert_eq!((s, f.reason.unwrap().contains("SIGSEGV")), (TrialState::Failed, true));
        let (s, f) = classify(&o(Exit::Success), None, None, None, &goals());
        assert_eq!((s, f.reason.unwrap().contains("no metrics")), (TrialState::Failed, true));
    }

    #[test]
    fn every_objective_must_be_reported_and_finite() {
        let goals = Goals {
            objectives: vec![
                Objective { metric: "loss".into(), direction: Direction::Minimize },
                Objective { metric: "size".into(), direction: Direction::Minimize },
            ],
            constraints: Vec::new(),
        };
        let ended = |pairs: &[(&str, f64)]| {
            let m: Metrics = pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            let (s, f) = classify(&Outcome::default(), Some(&m), None, None, &goals);
            (s, f.reason.unwrap_or_default())
        };
        assert_eq!(ended(&[("loss", 1.0), ("size", 3.0)]), (TrialState::Complete, String::new()));
        assert_eq!(ended(&[("loss", 1.0)]), (TrialState::Failed, "worker did not report objective `size`".into()));
        assert_eq!(ended(&[("loss", 1.0), ("size", f64::NAN)]), (TrialState::Failed, "objective `size` is NaN".into()));
    }

    #[test]
    fn the_last_report_stands_in_for_a_final_line() {
        let ok = Outcome::default();
        let (s, f) = classify(&ok, Some(&metrics(0.5)), Some(4), None, &goals());
        assert_eq!((s, f.value, f.last_step), (TrialState::Complete, Some(0.5), Some(4)));
        let nan = Outcome { final_metrics: Some(metrics(f64::NAN)), ..Outcome::default() };
        let (s, f) = classify(&nan, None, None, None, &goals());
        assert_eq!((s, f.reason.unwrap()), (TrialState::Failed, "objective `loss` is NaN".to_string()));
    }
}
