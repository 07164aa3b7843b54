//! The GP sampler for studies with several objectives or with constraints: one GP per
//! objective and per constraint over the same encoding as the single-objective GP
//! (`gp.rs`), proposals by constrained log EHVI (`crate::gp::suggest_goals`), every second one
//! (with two or more objectives) by log EI of a GP on a random ParEGO scalarization instead.
//!
//! Observations are complete trials: every objective (oriented to minimize) at each, and each
//! constraint's metric wherever it was reported (oriented so that `<= bound` is met). Failed
//! trials are left out, and so are pruned ones unless `multi_fidelity` (`[sampler]`; off by
//! default with several objectives, where it measured worse); running and paused ones are
//! pending. With it, once a pruner has stopped a trial, each objective's GP models
//! configuration and resource together as the single-objective GP does (`fidelity.rs`): every
//! trial's values at the ladder's levels below the full resource join its rows, the acquisition
//! looks at the full resource, and the pruned configurations join the front at their predicted
//! finals where believed feasible (their constraints are modelled from complete trials). The
//! kernels travel in the trial's
//! sampler state as `{"models": [...]}` (objectives', then constraints'; null for a constraint
//! never reported), refitted every `REFIT_EVERY` observations as in the single-objective GP.

use super::gp::{kernel_from_json, kernel_to_json, Layout, REFIT_EVERY};
use super::{fidelity, GpSampler, Proposal};
use crate::gp::{self, ConstraintObservations, Dim, GoalObservations, KernelParams};
use crate::space::Space;
use crate::trial::{History, TrialState};
use rand::rngs::StdRng;
use serde_json::{json, Value};

/// Most rows below the full resource each objective's GP fits. Every pruned trial adds at
/// least one, and the posterior's cost grows as the cube of its rows: uncapped, an ASHA study of
/// 870 trials took 0.22 s a proposal for two objectives (`cargo bench --bench mo_pruning`).
const MAX_ROWS_BELOW_FULL: usize = 192;

pub(super) fn propose(sampler: &GpSampler, space: &Space, history: &History, rng: &mut StdRng) -> Proposal {
    let goals = &history.goals;
    let layout = Layout::new(space);
    let joint = sampler.multi_fidelity && fidelity::any_pruned(history);
    // With resources, a last column holds each row's; the acquisition looks only at 1.
    let mut dims = layout.dims.clone();
    if joint {
        dims.push(Dim::Discrete { levels: vec![1.0] });
    }
    let encode = |i: usize, resource: f64| {
        let mut x = layout.encode(space, &history.trials[i].params);
        x.extend(joint.then_some(resource));
        x
    };
    // Complete trials with their metrics and encoded params, encoded once for every model.
    let complete: Vec<_> = (history.trials.iter().enumerate())
        .filter(|(_, t)| t.state == TrialState::Complete)
        .filter_map(|(i, t)| t.metrics.as_ref().map(|m| (encode(i, 1.0), m)))
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
    // Multi-fidelity: each objective's values below the full resource, and the pruned trials
    // (seen only there) as configurations the front may hold.
    let pending_trials = fidelity::pending(history);
    let (lower_fidelity, tried): (Vec<gp::Rows>, Vec<Vec<f64>>) = if joint {
        let lower = (goals.objectives.iter().enumerate())
            .map(|(k, o)| {
                let mut rows: Vec<_> =
                    fidelity::level_rows(history, k, |_| None).into_iter().filter(|r| r.1 < 1.0).collect();
                // The highest resources first, the latest trials among equals, as many as fit.
                rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
                rows.truncate(MAX_ROWS_BELOW_FULL);
                rows.into_iter().map(|(i, resource, v)| (encode(i, resource), o.sign() * v)).unzip()
            })
            .collect();
        let pruned = (history.trials.iter().enumerate())
            .filter(|(i, t)| t.state == TrialState::Pruned && !pending_trials.contains(i))
            .filter(|(_, t)| !history.retried.contains(&t.number) && !t.curve.is_empty())
            .map(|(i, _)| encode(i, 1.0))
            .collect();
        (lower, pruned)
    } else {
        (Vec::new(), Vec::new())
    };
    let observed = x.len() + lower_fidelity.first().map_or(0, |l| l.1.len());
    if observed < sampler.startup_trials.max(1) || layout.dims.is_empty() {
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
    let pending: Vec<Vec<f64>> = pending_trials.iter().map(|&i| encode(i, 1.0)).collect();
    let outputs = goals.objectives.len() + goals.constraints.len();
    let warm =
        history.trials.iter().rev().find_map(|t| t.sampler_state.as_ref().and_then(|s| kernels_from_json(s, outputs)));
    let refit = warm.is_none() || observed % REFIT_EVERY == 0;
    let obs = GoalObservations {
        x: &x,
        objectives: &objectives,
        feasible: &feasible,
        constraints: &constraints,
        pending: &pending,
        lower_fidelity: &lower_fidelity,
        tried: &tried,
    };
    // Every second proposal maximizes a random ParEGO scalarization instead of EHVI (`parego.rs`).
    let scalarize = x.len() % 2 == 0;
    match gp::suggest_goals(&dims, &obs, warm.as_deref().unwrap_or(&[]), refit, scalarize, rng) {
        Ok(s) => {
            let models: Vec<Value> = s.kernels.iter().map(|k| k.as_ref().map_or(Value::Null, kernel_to_json)).collect();
            let mut state = json!({ "models": models });
            if joint {
                state["rows_below_full"] = json!(observed - x.len());
            }
            Proposal { params: layout.decode(space, &s.x[..gp::encoded_width(&layout.dims)]), state: Some(state) }
        }
        Err(e) => super::fallback(space, rng, format!("the GP failed ({e}); this trial's params are random")),
    }
}

/// The kernels of a state written for as many outputs, or None.
fn kernels_from_json(state: &Value, outputs: usize) -> Option<Vec<Option<KernelParams>>> {
    let models = state["models"].as_array().filter(|m| m.len() == outputs)?;
    Some(models.iter().map(kernel_from_json).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::{Direction, Goals, Objective};
    use crate::sampler::{trial_rng, RandomSampler, Sampler};
    use crate::trial::Trial;

    /// ZDT1 as a two-objective study of `n` random trials whose curves fall to their finals
    /// over 9 steps; those `pruned` picks stopped at step 3.
    fn zdt1_history(n: u64, pruned: impl Fn(u64) -> bool) -> (Space, History, crate::mofns::MoFn) {
        let f = crate::mofns::by_name("zdt1").unwrap();
        let space = f.space();
        let objectives =
            ["f1", "f2"].iter().map(|m| Objective { metric: m.to_string(), direction: Direction::Minimize }).collect();
        let mut h = History::with_goals(Goals { objectives, constraints: Vec::new() }, vec![]);
        for number in 0..n {
            let p = RandomSampler.propose(&space, &h, &mut trial_rng(1, number));
            let values = f.at(&f.point(&p.params).unwrap()).0;
            let stopped = pruned(number);
            let steps = if stopped { 3 } else { 9 };
            let curve = |v: f64| (1..=steps).map(|s| (s, v + 1.0 / s as f64)).collect::<Vec<_>>();
            let mut t = Trial::new(number, if stopped { TrialState::Pruned } else { TrialState::Complete }, p.params);
            (t.curve, t.other_curves) = (curve(values[0]), vec![curve(values[1])]);
            t.last_step = Some(steps);
            if !stopped {
                t.value = Some(values[0]);
                t.metrics = Some([("f1".to_string(), values[0]), ("f2".to_string(), values[1])].into());
            }
            h.trials.push(t);
        }
        (space, h, f)
    }

    /// Once trials are pruned, each objective's GP models configuration and resource: every
    /// proposal is model-based, says how many rows lie below the full resource, and pending
    /// proposals are not repeated; before any pruning there is no such row.
    #[test]
    fn with_pruned_trials_each_objective_is_modelled_over_configuration_and_resource() {
        let gp = GpSampler::new(5);
        for pruned in [false, true] {
            let (space, mut h, _) = zdt1_history(12, |n| pruned && n % 3 == 0);
            let mut seen = Vec::new();
            for number in 12..18 {
                let p = gp.propose(&space, &h, &mut trial_rng(2, number));
                let state = p.state.clone().expect("a model-based proposal");
                assert_eq!(state["models"].as_array().map(Vec::len), Some(2), "{state}");
                assert_eq!(state.get("rows_below_full").is_some(), pruned, "{state}");
                assert!(!seen.contains(&p.params), "a pending proposal proposed again");
                seen.push(p.params.clone());
                h.trials.push(Trial { sampler_state: p.state, ..Trial::new(number, TrialState::Running, p.params) });
            }
        }
    }

    /// With every trial pruned, none complete, the front is the pruned configurations' predicted
    /// finals: proposals are model-based, not random.
    #[test]
    fn a_study_whose_trials_were_all_pruned_is_still_modelled() {
        let (space, h, _) = zdt1_history(10, |_| true);
        let p = GpSampler::new(5).propose(&space, &h, &mut trial_rng(2, 10));
        let state = p.state.expect("a model-based proposal");
        // Step 1 of each: the furthest step seen (3) stands for the full resource until a
        // trial runs further, as in the single-objective GP.
        assert_eq!(state["rows_below_full"], 10, "{state}");
    }
}
