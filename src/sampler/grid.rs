//! Grid search: every configuration of the space's grid (see `Space::grid`), each once, in a
//! fixed order. The next proposal is the first configuration no trial in the history has yet
//! (any state: a running or waiting trial holds its configuration, and a failed or interrupted
//! one has its re-run), so a study resumed after `kill -9` carries on where it stopped and
//! never runs a configuration twice.

use super::{fallback, Proposal, Sampler};
use crate::space::{Params, Space, MAX_GRID};
use crate::trial::History;
use rand::rngs::StdRng;
use serde_json::Value;
use std::collections::HashSet;

pub struct GridSampler;

impl Sampler for GridSampler {
    fn propose(&self, space: &Space, history: &History, rng: &mut StdRng) -> Proposal {
        let configs = match space.grid(MAX_GRID) {
            Ok(configs) => configs,
            Err(why) => return fallback(space, rng, format!("no grid ({why}); this trial's params are random")),
        };
        let taken: HashSet<String> = history.trials.iter().map(|t| key(&t.params)).collect();
        match configs.into_iter().find(|c| !taken.contains(&key(c))) {
            Some(params) => Proposal { params, state: None },
            None => {
                fallback(space, rng, "every configuration of the grid has run; this trial's params are random".into())
            }
        }
    }
}

/// A configuration as text that is equal for equal values (numbers compared as numbers, so
/// 3 and 3.0 are one configuration, as `values_equal` has it).
fn key(params: &Params) -> String {
    let mut names: Vec<&String> = params.keys().collect();
    names.sort();
    let mut out = String::new();
    for name in names {
        let value = match &params[name] {
            Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), |x| format!("{x:?}")),
            other => other.to_string(),
        };
        out.push_str(&format!("{name:?}={value};"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::{Direction, Objective};
    use crate::trial::{Trial, TrialState};
    use rand::SeedableRng;
    use serde_json::json;

    fn space() -> Space {
        let text = "name = \"g\"\nmetric = \"acc\"\ndirection = \"maximize\"\n[budget]\n[sampler]\nkind = \"grid\"\n\
                    [params.examples]\ntype = \"int\"\nlow = 100\nhigh = 3000\ngrid = [100, 300, 3000]\n\
                    [params.init]\nchoices = [\"scratch\", \"pretrained\"]\n[trial]\ncommand = [\"true\"]\n";
        crate::study::parse(text, std::path::Path::new(".")).unwrap().space
    }

    #[test]
    fn proposes_each_configuration_once_in_order_skipping_those_already_taken() {
        let space = space();
        let mut history = History::new(Objective { metric: "acc".into(), direction: Direction::Maximize }, vec![]);
        let mut rng = StdRng::seed_from_u64(1);
        // A configuration someone enqueued (stored with 300.0 for 300) is not run again.
        let enqueued: Params = serde_json::from_value(json!({"examples": 300.0, "init": "scratch"})).unwrap();
        history.insert(Trial::new(0, TrialState::Complete, enqueued));
        let mut seen = Vec::new();
        for number in 1..6 {
            let p = GridSampler.propose(&space, &history, &mut rng);
            assert!(p.state.is_none(), "{p:?}");
            seen.push(Value::Object(p.params.clone()));
            history.insert(Trial::new(number, TrialState::Running, p.params));
        }
        let expect = [
            json!({"examples": 100, "init": "scratch"}),
            json!({"examples": 100, "init": "pretrained"}),
            json!({"examples": 300, "init": "pretrained"}),
            json!({"examples": 3000, "init": "scratch"}),
            json!({"examples": 3000, "init": "pretrained"}),
        ];
        assert_eq!(seen, expect);
        let done = GridSampler.propose(&space, &history, &mut rng);
        assert!(done.state.unwrap()["fallback"].as_str().unwrap().contains("every configuration"));
    }
}
