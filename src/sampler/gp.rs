//! Gaussian-process Bayesian optimization over a study's space: an adapter that encodes params
//! into the unit cube the GP in `crate::gp` works on, and decodes its suggestion. Studies with
//! several objectives or constraints go to `gp_goals.rs`.
//!
//! Treatments (documented for users in the README):
//! - Float and int params take one column through `Distribution::to_unit` (log space for log
//!   params). Ints and stepped floats with at most `MAX_LEVELS` values are discrete columns, so
//!   the acquisition search tries exact values instead of stalling on rounding plateaus.
//! - Categorical params are one-hot columns. Fixed params carry no information and are left out.
//! - An inactive conditional param is encoded as 0.5 (numeric) or all zeros (one-hot), the same
//!   for every trial where it is inactive.
//! - Complete trials with a finite objective are observations (negated when maximizing). Once a
//!   pruner has stopped a trial, the GP models configuration and resource together instead
//!   (`fidelity.rs`): every trial's values at the rungs of a geometric ladder it reached, with
//!   a resource column, and the acquisition maximized at the full resource. Failed trials are
//!   left out: a failure says nothing about the objective, and it is retried. Running trials
//!   are pending points, so parallel proposals stay apart. The state notes how many rows were
//!   below the full resource (`rows_below_full`).
//! - Until `startup_trials` observations exist (enqueued trials count), proposals are random.
//! - The fitted kernel travels as the trial's sampler state; the next fit starts from the latest
//!   one (and between refits, every `REFIT_EVERY` observations, is reused as it is), so
//!   proposals are a function of the history, the seed and the trial number alone.

use super::fidelity;
use super::{Proposal, Sampler};
use crate::gp::{self, Dim, KernelParams, Observations};
use crate::space::{values_equal, Distribution, Params, Space};
use crate::trial::History;
use rand::rngs::StdRng;
use serde_json::{json, Value};

/// The kernel is refitted when the number of observations is a multiple of this, and reused
/// from the latest trial's state in between: the fit is most of a suggestion's cost.
pub(super) const REFIT_EVERY: usize = 3;

/// Largest grid encoded as a discrete column; finer grids are continuous and rounded.
const MAX_LEVELS: usize = 256;

pub struct GpSampler {
    pub startup_trials: usize,
    /// Model configuration and resource together once trials are pruned (`fidelity::every_level`)
    /// rather than pruned trials by their last values (with several objectives or constraints:
    /// rather than complete trials alone). `[sampler] multi_fidelity`; on by default with one
    /// objective, off with several.
    pub multi_fidelity: bool,
}

impl GpSampler {
    pub fn new(startup_trials: usize) -> GpSampler {
        GpSampler { startup_trials, multi_fidelity: true }
    }
}

impl Sampler for GpSampler {
    fn propose(&self, space: &Space, history: &History, rng: &mut StdRng) -> Proposal {
        if !history.goals.is_plain() {
            return super::gp_goals::propose(self, space, history, rng);
        }
        let random = |rng: &mut StdRng| Proposal { params: space.sample(rng), state: None };
        let layout = Layout::new(space);
        let sign = if history.objective().better(0.0, 1.0) { 1.0 } else { -1.0 };
        let modelled =
            if self.multi_fidelity { fidelity::every_level(history) } else { fidelity::last_values(history) };
        let width = gp::encoded_width(&layout.dims);
        // With resources, a last column holds each row's; the acquisition looks only at 1.
        let mut dims = layout.dims.clone();
        if modelled.joint {
            dims.push(Dim::Discrete { levels: vec![1.0] });
        }
        let row = |i: usize, resource: f64| {
            let mut x = layout.encode(space, &history.trials[i].params);
            x.extend(modelled.joint.then_some(resource));
            x
        };
        let (x, y): (Vec<Vec<f64>>, Vec<f64>) =
            modelled.rows.iter().map(|&(i, resource, v)| (row(i, resource), sign * v)).unzip();
        if y.len() < self.startup_trials.max(1) || layout.dims.is_empty() {
            return random(rng);
        }
        let pending: Vec<Vec<f64>> = modelled.pending.iter().map(|&i| row(i, 1.0)).collect();
        let columns = gp::encoded_width(&dims);
        let warm = history.trials.iter().rev().find_map(|t| {
            t.sampler_state.as_ref().and_then(kernel_from_json).filter(|k| k.lengthscales.len() == columns)
        });
        let target = modelled.joint.then_some((width, 1.0));
        let observations = Observations { x: &x, y: &y, pending: &pending, target };
        let result = match &warm {
            Some(k) if y.len() % REFIT_EVERY != 0 => gp::suggest_reusing(&dims, &observations, k, rng),
            _ => gp::suggest(&dims, &observations, warm.as_ref(), rng),
        };
        match result {
            Ok(s) => {
                let mut state = kernel_to_json(&s.params);
                // What the model expects of this configuration's final value, in the metric's units.
                state["expected"] = json!({ "median": sign * s.expected.0, "sd": s.expected.1 });
                if modelled.joint {
                    state["rows_below_full"] = json!(modelled.rows.iter().filter(|r| r.1 < 1.0).count());
                }
                Proposal { params: layout.decode(space, &s.x[..width]), state: Some(state) }
            }
            Err(e) => super::fallback(space, rng, format!("the GP failed ({e}); this trial's params are random")),
        }
    }

    fn runs_long(&self) -> bool {
        true
    }
}

/// Which encoded columns belong to which param.
pub(super) struct Layout {
    /// (index into `space.params`, its dimension), for every param the GP models.
    columns: Vec<(usize, Dim)>,
    pub(super) dims: Vec<Dim>,
}

impl Layout {
    pub(super) fn new(space: &Space) -> Layout {
        let columns: Vec<(usize, Dim)> =
            space.params.iter().enumerate().filter_map(|(i, p)| dim_of(&p.distribution).map(|d| (i, d))).collect();
        let dims = columns.iter().map(|(_, d)| d.clone()).collect();
        Layout { columns, dims }
    }

    pub(super) fn encode(&self, space: &Space, params: &Params) -> Vec<f64> {
        let mut x = Vec::with_capacity(gp::encoded_width(&self.dims));
        for (i, dim) in &self.columns {
            let param = &space.params[*i];
            let value = params.get(&param.name);
            match (dim, value, &param.distribution) {
                (Dim::Categorical { choices }, value, Distribution::Categorical { choices: all }) => {
                    let hot = value.and_then(|v| all.iter().position(|c| values_equal(c, v)));
                    x.extend((0..*choices).map(|c| if Some(c) == hot { 1.0 } else { 0.0 }));
                }
                (_, Some(v), d) => x.push(d.to_unit(v).unwrap_or(0.5)),
                (_, None, _) => x.push(0.5),
            }
        }
        x
    }

    /// The params at encoded point `x`: parents first, inactive params left out.
    pub(super) fn decode(&self, space: &Space, x: &[f64]) -> Params {
        let mut offset = 0;
        let mut columns = std::collections::HashMap::new();
        for (i, dim) in &self.columns {
            columns.insert(*i, &x[offset..offset + dim.width()]);
            offset += dim.width();
        }
        let mut chosen = Params::new();
        for (i, p) in space.params.iter().enumerate() {
            if !p.is_active(&chosen) {
                continue;
            }
            let value = match (&p.distribution, columns.get(&i)) {
                (Distribution::Categorical { choices }, Some(cols)) => {
                    let best = cols.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(c, _)| c);
                    choices[best].clone()
                }
                (d, Some(cols)) => d.from_unit(cols[0]),
                (d, None) => d.from_unit(0.5),
            };
            chosen.insert(p.name.clone(), value);
        }
        chosen
    }
}

fn dim_of(d: &Distribution) -> Option<Dim> {
    let levels = |values: Vec<Value>| -> Dim {
        let mut levels: Vec<f64> = values.iter().filter_map(|v| d.to_unit(v)).collect();
        levels.sort_by(f64::total_cmp);
        levels.dedup();
        Dim::Discrete { levels }
    };
    match d {
        Distribution::Fixed { .. } => None,
        Distribution::Categorical { choices } => Some(Dim::Categorical { choices: choices.len() }),
        Distribution::Int { low, high, step, .. } => {
            let count = ((high - low) / step + 1) as usize;
            Some(if count <= MAX_LEVELS {
                levels((0..count as i64).map(|k| Value::from(low + k * step)).collect())
            } else {
                Dim::Continuous
            })
        }
        Distribution::Float { low, high, step: Some(s), .. } => {
            let count = ((high - low) / s).round() as usize + 1;
            Some(if count <= MAX_LEVELS {
                levels((0..count).map(|k| Value::from(low + k as f64 * s)).collect())
            } else {
                Dim::Continuous
            })
        }
        Distribution::Float { step: None, .. } => Some(Dim::Continuous),
    }
}

pub(super) fn kernel_to_json(k: &KernelParams) -> Value {
    json!({ "lengthscales": k.lengthscales, "signal_var": k.signal_var, "noise_var": k.noise_var, "log_warp": k.log_warp })
}

pub(super) fn kernel_from_json(v: &Value) -> Option<KernelParams> {
    let lengthscales = v["lengthscales"].as_array()?.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>()?;
    let k = KernelParams {
        lengthscales,
        signal_var: v["signal_var"].as_f64()?,
        noise_var: v["noise_var"].as_f64()?,
        // States written before the choice existed were all warped.
        log_warp: v["log_warp"].as_bool().unwrap_or(true),
    };
    let positive = |x: f64| x.is_finite() && x > 0.0;
    (k.lengthscales.iter().all(|l| positive(*l)) && positive(k.signal_var) && positive(k.noise_var)).then_some(k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::{Direction, Objective};
    use crate::sampler::{trial_rng, RandomSampler};
    use crate::space::{Condition, Param};
    use crate::trial::{Trial, TrialState};

    /// Log float, int, two categoricals and a conditional float.
    fn mixed_space() -> Space {
        let p =
            |name: &str, distribution, conditions| Param { name: name.into(), distribution, conditions, grid: None };
        Space {
            params: vec![
                p("lr", Distribution::Float { low: 1e-5, high: 1.0, log: true, step: None }, vec![]),
                p("layers", Distribution::Int { low: 1, high: 12, log: false, step: 1 }, vec![]),
                p(
                    "act",
                    Distribution::Categorical { choices: vec![json!("relu"), json!("gelu"), json!("tanh")] },
                    vec![],
                ),
                p("opt", Distribution::Categorical { choices: vec![json!("sgd"), json!("adam")] }, vec![]),
                p(
                    "momentum",
                    Distribution::Float { low: 0.0, high: 0.99, log: false, step: None },
                    vec![Condition { parent: "opt".into(), values: vec![json!("sgd")] }],
                ),
            ],
        }
    }

    /// Best at lr = 10^-2.5, layers = 7, act = gelu, opt = sgd with momentum 0.9: value 0.
    fn mixed_objective(p: &Params) -> f64 {
        let lr = p["lr"].as_f64().unwrap().log10();
        let layers = p["layers"].as_f64().unwrap();
        let act = match p["act"].as_str().unwrap() {
            "gelu" => 0.0,
            "relu" => 0.4,
            _ => 1.0,
        };
        let opt = match p.get("momentum") {
            Some(m) => 4.0 * (m.as_f64().unwrap() - 0.9).powi(2),
            None => 0.3,
        };
        (lr + 2.5).powi(2) + (layers - 7.0).powi(2) / 8.0 + act + opt
    }

    fn history() -> History {
        History::new(Objective { metric: "loss".into(), direction: Direction::Minimize }, vec![])
    }

    fn trial(number: u64, params: Params, state: TrialState, value: Option<f64>, s: Option<Value>) -> Trial {
        Trial { value, sampler_state: s, ..Trial::new(number, state, params) }
    }

    fn best_after(sampler: &dyn Sampler, seed: u64, trials: u64) -> f64 {
        let space = mixed_space();
        let mut h = history();
        for n in 0..trials {
            let p = sampler.propose(&space, &h, &mut trial_rng(seed, n));
            assert!(space.complete(&p.params).is_ok(), "invalid proposal {:?}", p.params);
            let v = mixed_objective(&p.params);
            h.trials.push(trial(n, p.params, TrialState::Complete, Some(v), p.state));
        }
        h.best().and_then(|t| t.value).unwrap()
    }

    #[test]
    fn gp_beats_random_on_a_mixed_conditional_space() {
        let gp = GpSampler::new(10);
        let median = |s: &dyn Sampler| {
            let mut v: Vec<f64> = (0..10).map(|seed| best_after(s, seed, 40)).collect();
            v.sort_by(f64::total_cmp);
            (v[4] + v[5]) / 2.0
        };
        let (g, r) = (median(&gp), median(&RandomSampler));
        assert!(g < r, "gp median best {g} vs random {r}");
    }

    /// Eight trials proposed in turn, each left running, after twelve random ones; with
    /// `pruned`, every third of those was stopped at step 3 of 9 (the multi-fidelity model).
    fn eight_running_proposals(pruned: bool) -> Vec<Proposal> {
        let space = mixed_space();
        let gp = GpSampler::new(5);
        let mut h = history();
        for n in 0..12 {
            let p = RandomSampler.propose(&space, &h, &mut trial_rng(3, n));
            let v = mixed_objective(&p.params);
            let stopped = pruned && n % 3 == 0;
            let state = if stopped { TrialState::Pruned } else { TrialState::Complete };
            let mut t = trial(n, p.params, state, Some(v), None);
            t.curve = (1..=if stopped { 3 } else { 9 }).map(|s| (s, v + 1.0 / s as f64)).collect();
            h.trials.push(t);
        }
        (12..20)
            .map(|n| {
                let p = gp.propose(&space, &h, &mut trial_rng(3, n));
                h.trials.push(trial(n, p.params.clone(), TrialState::Running, None, p.state.clone()));
                p
            })
            .collect()
    }

    #[test]
    fn eight_pending_trials_get_eight_distinct_proposals() {
        for pruned in [false, true] {
            let proposals = eight_running_proposals(pruned);
            for (i, p) in proposals.iter().enumerate() {
                assert!(!proposals[..i].iter().any(|q| q.params == p.params), "duplicate proposal {:?}", p.params);
                // Model-based, not a fallback; with pruned trials, over configuration and resource.
                let state = p.state.as_ref().expect("a kernel state");
                assert_eq!(state.get("rows_below_full").is_some(), pruned, "{state}");
            }
        }
    }

    #[test]
    fn the_same_seed_and_history_give_the_same_proposals() {
        let gp = GpSampler::new(5);
        let run = |seed| {
            let space = mixed_space();
            let mut h = history();
            (0..15)
                .map(|n| {
                    let p = gp.propose(&space, &h, &mut trial_rng(seed, n));
                    let v = mixed_objective(&p.params);
                    h.trials.push(trial(n, p.params.clone(), TrialState::Complete, Some(v), p.state));
                    p.params
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }

    #[test]
    fn encoding_round_trips_and_marks_inactive_params() {
        let space = mixed_space();
        let layout = Layout::new(&space);
        let p: Params = serde_json::from_value(json!({"lr": 0.01, "layers": 3, "act": "tanh", "opt": "adam"})).unwrap();
        let x = layout.encode(&space, &p);
        assert_eq!(x.len(), 1 + 1 + 3 + 2 + 1);
        assert_eq!(&x[2..5], &[0.0, 0.0, 1.0]);
        assert_eq!(x[7], 0.5, "inactive momentum sits in the middle");
        let mut back = layout.decode(&space, &x);
        assert!((back["lr"].as_f64().unwrap() - 0.01).abs() < 1e-12);
        back.insert("lr".into(), json!(0.01));
        assert_eq!(back, p);
    }
}
