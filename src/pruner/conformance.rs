//! The checks every pruner passes, run for each kind as a study file configures it (the
//! pruners' counterpart of the samplers' suite). A new pruner gets them by joining `kinds`.

use super::testing::{history, history2, trial};
use super::{from_config, Verdict};
use crate::objective::Direction;
use crate::study::{parse, PrunerConfig};
use crate::trial::{History, Trial, TrialState};
use std::path::Path;

/// Each kind with the first step at which it may stop a trial (its warmup or first rung).
/// The checks run on a one-objective study, and on a two-objective one for the kinds that
/// take several (MO-ASHA).
fn kinds() -> Vec<(&'static str, i64)> {
    vec![
        ("kind = \"median\"\nwarmup_steps = 4\nmin_trials = 3", 4),
        ("kind = \"percentile\"\npercentile = 25\nwarmup_steps = 6\nmin_trials = 3", 6),
        ("kind = \"asha\"\nmin_resource = 3\nmax_resource = 24\neta = 2", 3),
        ("kind = \"hyperband\"\nmin_resource = 3\nmax_resource = 24\neta = 2", 3),
        ("kind = \"median\"\nwarmup_steps = 2\nmin_trials = 3\npatience = 3", 2),
        ("kind = \"median\"\nwarmup_steps = 4\nmin_trials = 3\nmin_promise = 0.2", 4),
        ("kind = \"hyperband\"\nmin_resource = 3\nmax_resource = 24\neta = 2\nmin_promise = 0.2", 3),
    ]
}

/// The studies each check runs on: one objective, and two where the kind takes them.
fn studies(text: &str) -> Vec<usize> {
    if (text.contains("asha") || text.contains("hyperband")) && !text.contains("min_promise") {
        vec![1, 2]
    } else {
        vec![1]
    }
}

fn config(pruner: &str, objectives: usize) -> PrunerConfig {
    let goals = match objectives {
        1 => "metric = \"loss\"\ndirection = \"minimize\"\n".to_string(),
        _ => String::new(),
    };
    let tables = match objectives {
        1 => String::new(),
        _ => "[[objectives]]\nmetric = \"a\"\ndirection = \"minimize\"\n[[objectives]]\nmetric = \"b\"\ndirection = \"maximize\"\n".to_string(),
    };
    let text = format!(
        "name = \"p\"\n{goals}[budget]\ntrials = 40\n\
         [params.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n[trial]\ncommand = [\"true\"]\n[pruner]\n{pruner}\n{tables}"
    );
    parse(&text, Path::new(".")).unwrap_or_else(|p| panic!("{p:?}")).pruner
}

/// Thirty finished trials with improving curves over 24 steps (some pruned early, as they
/// would be), and trial 30, hopeless, running with `steps` reports.
fn study(steps: i64, objectives: usize) -> History {
    study_with(steps, 30, objectives)
}

/// The same with the hopeless trial numbered `number` (Hyperband picks a bracket by number).
/// With two objectives, `b` (maximized) trades against `a` and the hopeless trial is the worst
/// in both.
fn study_with(steps: i64, number: u64, objectives: usize) -> History {
    let mut trials: Vec<Trial> = (0..30u64)
        .map(|i| {
            let level = 1.0 + (i % 10) as f64 / 10.0;
            let length = if i % 4 == 3 { 6 } else { 24 };
            let curve: Vec<(i64, f64)> = (1..=length).map(|s| (s, level + 5.0 / s as f64)).collect();
            let other: Vec<(i64, f64)> = curve.iter().map(|&(s, v)| (s, v + 0.1 * (i % 3) as f64)).collect();
            let t = trial(i, if length == 24 { TrialState::Complete } else { TrialState::Pruned }, &curve);
            Trial { other_curves: if objectives == 2 { vec![other] } else { vec![] }, ..t }
        })
        .collect();
    let hopeless = trial(number, TrialState::Running, &(1..=steps).map(|s| (s, 100.0)).collect::<Vec<_>>());
    let other = (1..=steps).map(|s| (s, -100.0)).collect();
    trials.push(Trial { other_curves: if objectives == 2 { vec![other] } else { vec![] }, ..hopeless });
    match objectives {
        1 => history(Direction::Minimize, trials),
        _ => history2([Direction::Minimize, Direction::Maximize], trials),
    }
}

#[test]
fn no_pruner_stops_a_trial_before_its_warmup() {
    for (text, earliest) in kinds() {
        for objectives in studies(text) {
            let pruner = from_config(&config(text, objectives));
            for steps in 1..earliest {
                let h = study(steps, objectives);
                assert_eq!(pruner.decide(&h.trials[30], &h), Verdict::Continue, "{text}: stopped at step {steps}");
            }
        }
    }
}

#[test]
fn decisions_are_a_pure_function_of_the_history() {
    for (text, _) in kinds() {
        for objectives in studies(text) {
            // Built twice, from the same config: nothing carries over between pruners or calls.
            let (a, b) = (from_config(&config(text, objectives)), from_config(&config(text, objectives)));
            for steps in 1..=24 {
                let h = study(steps, objectives);
                let first = a.decide(&h.trials[30], &h);
                assert_eq!(a.decide(&h.trials[30], &h), first, "{text}: step {steps}, asked twice");
                assert_eq!(b.decide(&h.trials[30], &h), first, "{text}: step {steps}, another pruner");
                // A history rebuilt from the stored trials (as after a restart) decides the same.
                let rebuilt = History::with_goals(h.goals.clone(), h.trials.clone());
                assert_eq!(b.decide(&rebuilt.trials[30], &rebuilt), first, "{text}: step {steps}, rebuilt");
            }
        }
    }
}

#[test]
fn a_hopeless_trial_is_stopped_with_a_reason() {
    for (text, earliest) in kinds() {
        for objectives in studies(text) {
            let pruner = from_config(&config(text, objectives));
            // Hyperband's last bracket never prunes, so a few trial numbers are tried.
            let stopped = (30..36).find_map(|number| {
                (earliest..=24).find_map(|steps| {
                    let h = study_with(steps, number, objectives);
                    match pruner.decide(&h.trials[30], &h) {
                        Verdict::Stop(why) | Verdict::Pause(why) => Some((steps, why)),
                        Verdict::Continue => None,
                    }
                })
            });
            let (steps, why) = stopped.unwrap_or_else(|| {
                panic!("{text}, {objectives} objectives: a trial at 100 against ~1.5 ran to the end")
            });
            assert!(!why.is_empty() && steps >= earliest, "{text}: {steps} {why}");
        }
    }
}
