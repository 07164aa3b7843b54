//! The GP sampler for studies with several objectives or with constraints: one GP per
//! objective and per constraint over the same encoding as the single-objective GP
//! (`gp.rs`), proposals by constrained log EHVI (`crate::gp::suggest_goals`).
//!
//! Observations are complete trials: every objective (oriented to minimize) at each, and each
//! constraint's metric wherever it was reported (oriented so that `<= bound` is met). Pruned
//! and failed trials are left out; running ones are pending. The kernels travel in the trial's
//! sampler state as `{"models": [...]}` (objectives', then constraints'; null for a constraint
//! never reported), refitted every `REFIT_EVERY` observations as in the single-objective GP.

use super::gp::{kernel_from_json, kernel_to_json, Layout, REFIT_EVERY};
use super::{GpSampler, Proposal};
use crate::gp::{self, ConstraintObservations, GoalObservations, KernelParams};
use crate::space::Space;
use crate::trial::{History, TrialState};
use rand::rngs::StdRng;
use serde_json::{json, Value};

pub(super) fn propose(sampler: &GpSampler, space: &Space, history: &History, rng: &mut StdRng) -> Proposal {
    let goals = &history.goals;
    let layout = Layout::new(space);
    // Complete trials with their metrics and encoded params, encoded once for every model.
    let complete: Vec<_> = history
        .trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| t.metrics.as_ref().map(|m| (layout.encode(space, &t.params), m)))
        .collect();
    let mut x = Vec::new();
    let mut objectives = vec![Vec::new(); goals.objectives.len()];
    let mut feasible = Vec::new();
    for (row, metrics) in &complete {
        let Some(values) = goals.vector(metrics) else { continue };
        x.push(row.clone());
        objectives.iter_mut().zip(values).for_each(|(column, v)| column.push(v));
        feasible.push(goals.violation(metrics) == 0.0);
    }
    if x.len() < sampler.startup_trials.max(1) || layout.dims.is_empty() {
        return Proposal { params: space.sample(rng), state: None };
    }
    // Each constraint as `value <= bound`: a `>=` one negated.
    let constrained: Vec<(Vec<Vec<f64>>, Vec<f64>, f64)> = goals
        .constraints
        .iter()
        .map(|c| {
            let sign = if c.at_most { 1.0 } else { -1.0 };
            let (cx, cy) = complete
                .iter()
                .filter_map(|(row, m)| m.get(&c.metric).filter(|v| v.is_finite()).map(|v| (row.clone(), sign * v)))
                .unzip();
            (cx, cy, sign * c.bound)
        })
        .collect();
    let constraints: Vec<ConstraintObservations> =
        constrained.iter().map(|(cx, cy, bound)| ConstraintObservations { x: cx, y: cy, bound: *bound }).collect();
    let pending: Vec<Vec<f64>> = history.running().map(|t| layout.encode(space, &t.params)).collect();
    let outputs = goals.objectives.len() + goals.constraints.len();
    let warm =
        history.trials.iter().rev().find_map(|t| t.sampler_state.as_ref().and_then(|s| kernels_from_json(s, outputs)));
    let refit = warm.is_none() || x.len() % REFIT_EVERY == 0;
    let obs = GoalObservations {
        x: &x,
        objectives: &objectives,
        feasible: &feasible,
        constraints: &constraints,
        pending: &pending,
    };
    match gp::suggest_goals(&layout.dims, &obs, warm.as_deref().unwrap_or(&[]), refit, rng) {
        Ok(s) => {
            let models: Vec<Value> = s.kernels.iter().map(|k| k.as_ref().map_or(Value::Null, kernel_to_json)).collect();
            Proposal { params: layout.decode(space, &s.x), state: Some(json!({ "models": models })) }
        }
        Err(e) => super::fallback(space, rng, format!("the GP failed ({e}); this trial's params are random")),
    }
}

/// The kernels of a state written for as many outputs, or None.
fn kernels_from_json(state: &Value, outputs: usize) -> Option<Vec<Option<KernelParams>>> {
    let models = state["models"].as_array().filter(|m| m.len() == outputs)?;
    Some(models.iter().map(kernel_from_json).collect())
}
