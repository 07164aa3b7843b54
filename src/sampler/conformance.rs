//! The checks every sampler passes, run for each kind through `from_config` (as Optuna runs
//! every sampler through one test module), on a study with one objective and on one with two
//! and a constraint. A new sampler gets them by joining `KINDS`.

use super::{from_config, trial_rng, Proposal, Sampler};
use crate::space::Params;
use crate::study::{parse, StudyConfig};
use crate::trial::{History, Trial, TrialState};
use serde_json::Value;
use std::path::Path;

const KINDS: [&str; 3] = ["random", "gp", "grid"];

/// Every kind of param, a condition, a fixed value; grid lists so the grid sampler can run it.
/// With `goals`, two objectives (`loss`, `size`) and a constraint on `size`.
fn study(kind: &str, goals: bool) -> StudyConfig {
    let goals = if goals {
        "constraints = [\"size <= 4.5\"]\n[[objectives]]\nmetric = \"loss\"\ndirection = \"minimize\"\n\
         [[objectives]]\nmetric = \"size\"\ndirection = \"minimize\""
    } else {
        "metric = \"loss\"\ndirection = \"minimize\""
    };
    let text = format!(
        r#"name = "conformance"
seed = 3
{goals}
[budget]
trials = 14
[sampler]
kind = "{kind}"
startup_trials = 4
[params.lr]
type = "float"
low = 1e-4
high = 1e-1
log = true
grid = [1e-4, 1e-3, 1e-2, 1e-1]
[params.layers]
type = "int"
low = 1
high = 4
grid = [1, 2, 4]
[params.optimizer]
choices = ["adam", "sgd"]
[params.momentum]
type = "float"
low = 0.0
high = 0.99
grid = [0.0, 0.9]
when = {{ optimizer = "sgd" }}
[params.batch]
value = 32
[trial]
command = ["true"]
"#
    );
    parse(&text, Path::new(".")).unwrap_or_else(|p| panic!("{kind}: {p:?}"))
}

/// A smooth objective of every param, so model-based samplers have something to learn.
fn loss(p: &Params) -> f64 {
    let lr = p["lr"].as_f64().unwrap();
    let layers = p["layers"].as_f64().unwrap();
    let momentum = p.get("momentum").and_then(Value::as_f64).unwrap_or(0.5);
    (lr.log10() + 2.5).powi(2) + 0.1 * layers + (momentum - 0.9).abs()
}

/// The second objective, in conflict with `loss` over `layers`.
fn size(p: &Params) -> f64 {
    p["layers"].as_f64().unwrap() + p.get("momentum").and_then(Value::as_f64).unwrap_or(0.0)
}

/// Every kind, on both studies.
fn cases() -> impl Iterator<Item = (String, StudyConfig)> {
    KINDS
        .into_iter()
        .flat_map(|kind| [false, true].map(|goals| (format!("{kind} (goals: {goals})"), study(kind, goals))))
}

/// Proposes and completes `n` trials one after another; the proposals in order.
fn run(sampler: &dyn Sampler, config: &StudyConfig, n: u64) -> (Vec<Proposal>, History) {
    let mut history = History::with_goals(config.goals.clone(), Vec::new());
    let mut proposals = Vec::new();
    for number in 0..n {
        let p = sampler.propose(&config.space, &history, &mut trial_rng(config.seed, number));
        let value = loss(&p.params);
        let metrics = [("loss".to_string(), value), ("size".to_string(), size(&p.params))].into_iter().collect();
        history.insert(Trial {
            value: Some(value),
            metrics: Some(metrics),
            curve: vec![(1, value)],
            last_step: Some(1),
            sampler_state: p.state.clone(),
            ..Trial::new(number, TrialState::Complete, p.params.clone())
        });
        proposals.push(p);
    }
    (proposals, history)
}

#[test]
fn proposals_are_complete_legal_configurations_with_conditions_honoured() {
    for (kind, config) in cases() {
        let (proposals, _) = run(from_config(&config.sampler).as_ref(), &config, 10);
        for (i, p) in proposals.iter().enumerate() {
            // Past its startup trials the GP proposes from its models, whose kernels it keeps.
            assert_eq!(kind.starts_with("gp") && i >= 4, p.state.is_some(), "{kind}: trial {i}: {:?}", p.state);
            let completed = config.space.complete(&p.params);
            assert_eq!(completed.as_ref(), Ok(&p.params), "{kind}: {:?}", p.params);
            let sgd = p.params["optimizer"] == "sgd";
            assert_eq!(p.params.contains_key("momentum"), sgd, "{kind}: momentum only under sgd: {:?}", p.params);
            assert_eq!(p.params["batch"], 32, "{kind}: fixed values are proposed as given");
            let fell_back = p.state.as_ref().is_some_and(|s| s.get("fallback").is_some());
            assert!(!fell_back, "{kind} fell back to random: {:?}", p.state);
        }
    }
}

#[test]
fn the_same_seed_and_history_give_the_same_proposals() {
    for (kind, config) in cases() {
        let sampler = from_config(&config.sampler);
        let (a, history) = run(sampler.as_ref(), &config, 8);
        let (b, _) = run(sampler.as_ref(), &config, 8);
        assert_eq!(a, b, "{kind}");
        // A history rebuilt from the stored trials (as after a restart) proposes the same.
        let rebuilt = History::with_goals(config.goals.clone(), history.trials.clone());
        let next = |h: &History| sampler.propose(&config.space, h, &mut trial_rng(config.seed, 8));
        assert_eq!(next(&history), next(&rebuilt), "{kind}");
    }
}

#[test]
fn running_trials_are_not_proposed_again() {
    for (kind, config) in cases() {
        let sampler = from_config(&config.sampler);
        let (_, mut history) = run(sampler.as_ref(), &config, 6);
        // Six more running at once: each proposal sees the others as pending.
        for number in 6..12 {
            let p = sampler.propose(&config.space, &history, &mut trial_rng(config.seed, number));
            let running: Vec<&Params> = history.running().map(|t| &t.params).collect();
            assert!(!running.contains(&&p.params), "{kind}: trial {number} repeats a running trial: {:?}", p.params);
            history.insert(Trial::new(number, TrialState::Running, p.params));
        }
    }
}
