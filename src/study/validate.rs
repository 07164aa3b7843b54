//! Turns a raw `StudyFile` into a `StudyConfig`, collecting every problem with its key path.

use super::file::{
    BudgetFile, DurationText, ExecutorFile, ExecutorKind, ParamFile, ParamKind, PrunerFile, PrunerKind, SamplerKind,
    StudyFile, TrialFile,
};
use super::{
    ArgTemplate, Budget, Constraint, Devices, Direction, ExecutorConfig, Goals, Objective, Piece, PrunerConfig,
    PrunerRule, SamplerConfig, SlurmConfig, StudyConfig, TrialSpec, TRIAL_PLACEHOLDER,
};
use crate::space::{values_equal, Condition, Distribution, Param, Params, Space, MAX_GRID};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The built-in workers `[trial] worker = ...` may name.
pub const BUILTIN_WORKERS: &[&str] = &["testfn", "pretrain", "finetune"];

type Errors = Vec<(Vec<String>, String)>;

/// Collects problems under key paths.
#[derive(Default)]
struct Check {
    errors: Errors,
}

impl Check {
    fn fail(&mut self, path: &[&str], message: impl Into<String>) {
        self.errors.push((path.iter().map(ToString::to_string).collect(), message.into()));
    }

    fn fail_owned(&mut self, path: Vec<String>, message: impl Into<String>) {
        self.errors.push((path, message.into()));
    }

    fn count(&mut self, path: &[&str], value: Option<i64>, default: i64, min: i64) -> u32 {
        let v = value.unwrap_or(default);
        if v < min || v > u32::MAX as i64 {
            self.fail(path, format!("must be at least {min}, got {v}"));
            return default as u32;
        }
        v as u32
    }

    fn duration(&mut self, path: &[&str], value: &Option<DurationText>) -> Option<Duration> {
        let parsed = match value.as_ref()? {
            DurationText::Seconds(s) if *s > 0.0 && s.is_finite() => Ok(Duration::from_secs_f64(*s)),
            DurationText::Seconds(s) => Err(format!("must be a positive number of seconds, got {s}")),
            DurationText::Text(t) => humantime::parse_duration(t)
                .map_err(|e| format!("`{t}` is not a duration like \"90s\" or \"1h 30m\": {e}"))
                .and_then(|d| if d.is_zero() { Err("must be positive".into()) } else { Ok(d) }),
        };
        parsed.map_err(|m| self.fail(path, m)).ok()
    }
}

pub fn validate(raw: StudyFile, text: &str, base: &Path) -> Result<StudyConfig, Errors> {
    let mut check = Check::default();
    if raw.name.trim().is_empty() {
        check.fail(&["name"], "must not be empty");
    } else if let Some(problem) = crate::layout::study_name_problem(raw.name.trim()) {
        check.fail(&["name"], problem);
    }
    let goals = goals(&mut check, &raw);
    let budget = Budget {
        trials: 1, // set below, once the space is known (a grid's size is its default)
        parallel: check.count(&["budget", "parallel"], raw.budget.parallel, 1, 1),
        trial_timeout: check.duration(&["budget", "trial_timeout"], &raw.budget.trial_timeout),
        timeout: check.duration(&["budget", "timeout"], &raw.budget.timeout),
        retries: check.count(&["budget", "retries"], raw.budget.retries, 0, 0),
    };
    let space = space(&mut check, &raw.params);
    let space_ok = check.errors.is_empty();
    let mut budget = budget;
    budget.trials = trials(&mut check, &raw.budget, raw.sampler.kind, &space, space_ok);
    let executor = executor(&mut check, &raw.executor, budget.parallel);
    if let ExecutorConfig::Slurm(slurm) = &executor {
        // Trials in flight: `max_jobs` alone sets it; with `parallel` too, the smaller wins.
        budget.parallel = match raw.budget.parallel {
            Some(_) => budget.parallel.min(slurm.max_jobs),
            None => slurm.max_jobs,
        };
    }
    let binary = match &executor {
        ExecutorConfig::Slurm(s) => s.binary.display().to_string(),
        ExecutorConfig::Local => this_binary(),
    };
    let trial = trial(&mut check, &raw.trial, &raw.params, base, &binary);
    // A broken space would make every enqueued config look wrong too; report the cause only.
    let enqueue = raw
        .enqueue
        .iter()
        .enumerate()
        .filter(|_| space_ok)
        .filter_map(|(i, given)| {
            space.complete(given).map_err(|m| check.fail_owned(vec!["enqueue".into(), i.to_string()], m)).ok()
        })
        .collect();
    let devices = Devices {
        gpus: gpus(&mut check, &raw.devices.gpus),
        per_gpu: check.count(&["devices", "per_gpu"], raw.devices.per_gpu, 1, 1),
    };
    if matches!(executor, ExecutorConfig::Slurm(_)) && !devices.gpus.is_empty() {
        check.fail(&["devices", "gpus"], "lists this machine's GPUs, but Slurm assigns GPUs to its jobs: ask for them with `[executor] gres = \"gpu:1\"` instead");
    }
    if raw.sampler.multi_fidelity.is_some() && raw.sampler.kind != SamplerKind::Gp {
        check.fail(&["sampler", "multi_fidelity"], "only the `gp` sampler models fidelities");
    }
    let sampler = SamplerConfig {
        kind: raw.sampler.kind,
        startup_trials: check.count(&["sampler", "startup_trials"], raw.sampler.startup_trials, 10, 0),
        // With several objectives the models of the complete trials alone did better
        // (`cargo bench --bench mo_pruning`: 0.998 and 0.996 of the front's hypervolume at the
        // end, against 0.996 and 0.992).
        multi_fidelity: raw.sampler.multi_fidelity.unwrap_or(goals.objectives.len() == 1),
    };
    let pruner = pruner(&mut check, &raw.pruner);
    if goals.objectives.len() > 1 {
        // ASHA and Hyperband rank by several objectives (MO-ASHA); these judge one value.
        if matches!(pruner.rule, PrunerRule::Percentile { .. }) {
            check.fail(
                &["pruner", "kind"],
                "median and percentile compare one objective: with several, use `asha` or `hyperband` (they rank by non-dominated sorting)",
            );
        }
        if pruner.min_promise.is_some() {
            check.fail(
                &["pruner", "min_promise"],
                "forecasts one objective's final value: a study with several objectives cannot use it",
            );
        }
        for (key, bound) in [("lower", pruner.lower), ("upper", pruner.upper)] {
            if bound.is_some() {
                check.fail(
                    &["pruner", key],
                    "bounds one objective's value: a study with several objectives cannot use it",
                );
            }
        }
    }
    if !check.errors.is_empty() {
        return Err(check.errors);
    }
    Ok(StudyConfig {
        name: raw.name.trim().to_string(),
        objective: goals.objectives[0].clone(),
        goals,
        seed: raw.seed,
        budget,
        space,
        sampler,
        pruner,
        trial,
        enqueue,
        devices,
        executor,
        source: text.to_string(),
    })
}

/// The objectives, as `metric`/`direction` or `[[objectives]]` tables, and the constraints.
fn goals(check: &mut Check, raw: &StudyFile) -> Goals {
    let objectives = match (&raw.objectives, &raw.metric, raw.direction) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            check.fail(&["objectives"], "give either `metric` and `direction` or `[[objectives]]` tables, not both");
            Vec::new()
        }
        (Some(list), None, None) => {
            if list.is_empty() {
                check.fail(&["objectives"], "needs at least one `[[objectives]]` table");
            }
            let mut seen: Vec<Objective> = Vec::new();
            for (i, o) in list.iter().enumerate() {
                let metric = o.metric.trim();
                let at = |key: &str| vec!["objectives".to_string(), i.to_string(), key.to_string()];
                if metric.is_empty() {
                    check.fail_owned(at("metric"), "must name the metric the worker reports");
                } else if let Some(j) = seen.iter().position(|s| s.metric == metric) {
                    check.fail_owned(at("metric"), format!("`{metric}` is objective {} already", j + 1));
                }
                seen.push(Objective { metric: metric.to_string(), direction: o.direction });
            }
            seen
        }
        (None, metric, direction) => {
            let metric = metric.as_deref().map(str::trim).unwrap_or_default();
            if metric.is_empty() {
                check.fail(&["metric"], "must name the metric the worker reports (or use `[[objectives]]` tables)");
            }
            if direction.is_none() {
                check.fail(&["direction"], "needs `direction = \"minimize\"` or `\"maximize\"`");
            }
            vec![Objective { metric: metric.to_string(), direction: direction.unwrap_or(Direction::Minimize) }]
        }
    };
    let constraints = raw
        .constraints
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, text)| {
            Constraint::parse(text).map_err(|why| check.fail_owned(vec!["constraints".into(), i.to_string()], why)).ok()
        })
        .collect();
    // With none, an error is recorded already; the placeholder keeps `objectives[0]` valid.
    let objectives = if objectives.is_empty() {
        vec![Objective { metric: String::new(), direction: Direction::Minimize }]
    } else {
        objectives
    };
    Goals { objectives, constraints }
}

/// `budget.trials`: required, except with the grid sampler, where it defaults to the number of
/// configurations in the grid and may not exceed it.
fn trials(check: &mut Check, raw: &BudgetFile, kind: SamplerKind, space: &Space, space_ok: bool) -> u32 {
    let path = ["budget", "trials"];
    if kind != SamplerKind::Grid {
        if raw.trials.is_none() {
            check.fail(&path, "is required: how many finished trials the study runs");
        }
        return check.count(&path, raw.trials, 1, 1);
    }
    if !space_ok {
        return 1;
    }
    let size = match space.grid(MAX_GRID) {
        Ok(configs) => configs.len(),
        Err(why) => {
            let at = space.params.iter().find(|p| p.grid_values().is_none()).map(|p| p.name.as_str());
            match at {
                Some(name) => check.fail(
                    &["params", name],
                    "the grid sampler needs a `grid = [...]` list of the values to try for a float or int parameter",
                ),
                None => check.fail(&["sampler", "kind"], format!("{why}: the grid sampler enumerates every one")),
            }
            return 1;
        }
    };
    let trials = check.count(&path, raw.trials, size as i64, 1);
    if trials as usize > size {
        check.fail(
            &path,
            format!("is {trials}, more than the grid's {size} configurations (leave it out to run each once)"),
        );
    }
    trials
}

/// `params.NAME.grid`: for float and int parameters, a non-empty list of distinct legal values.
fn grid(check: &mut Check, name: &str, p: &ParamFile, distribution: &Distribution) -> Option<Vec<Value>> {
    let values = p.grid.as_ref()?;
    let path = |rest: Option<usize>| {
        let mut path = vec!["params".to_string(), name.to_string(), "grid".to_string()];
        path.extend(rest.map(|i| i.to_string()));
        path
    };
    if !matches!(distribution, Distribution::Float { .. } | Distribution::Int { .. }) {
        check.fail_owned(path(None), "is for float and int parameters (choices and values are their own grid)");
        return None;
    }
    if values.is_empty() {
        check.fail_owned(path(None), "must list at least one value");
    }
    for (i, v) in values.iter().enumerate() {
        if !distribution.contains(v) {
            check.fail_owned(path(Some(i)), format!("{v} is outside {}", crate::space::describe(distribution)));
        } else if values[..i].iter().any(|w| values_equal(v, w)) {
            check.fail_owned(path(Some(i)), format!("{v} is listed twice"));
        }
    }
    Some(values.clone())
}

/// `[pruner]`: options that do not go with the kind are errors, as are out-of-range values.
fn pruner(check: &mut Check, raw: &PrunerFile) -> PrunerConfig {
    let kind = raw.kind;
    let name = format!("{kind:?}").to_lowercase();
    let allowed: &[&str] = match kind {
        PrunerKind::None => &[],
        PrunerKind::Median => &["warmup_steps", "min_trials"],
        PrunerKind::Percentile => &["percentile", "warmup_steps", "min_trials"],
        PrunerKind::Asha | PrunerKind::Hyperband => &["min_resource", "max_resource", "eta", "mode"],
    };
    let present = [
        ("percentile", raw.percentile.is_some()),
        ("warmup_steps", raw.warmup_steps.is_some()),
        ("min_trials", raw.min_trials.is_some()),
        ("min_resource", raw.min_resource.is_some()),
        ("max_resource", raw.max_resource.is_some()),
        ("eta", raw.eta.is_some()),
        ("mode", raw.mode.is_some()),
    ];
    for (key, is_set) in present {
        if is_set && !allowed.contains(&key) {
            check.fail(&["pruner", key], format!("not an option of kind = \"{name}\""));
        }
    }
    let rule = match kind {
        PrunerKind::None => PrunerRule::None,
        PrunerKind::Median | PrunerKind::Percentile => {
            let percentile = match (kind, raw.percentile) {
                (PrunerKind::Median, _) => 50.0,
                (_, None) => {
                    check.fail(&["pruner", "percentile"], "is required for kind = \"percentile\" (0 to 100)");
                    50.0
                }
                (_, Some(p)) if (0.0..=100.0).contains(&p) => p,
                (_, Some(p)) => {
                    check.fail(&["pruner", "percentile"], format!("must be between 0 and 100, got {p}"));
                    50.0
                }
            };
            let warmup_steps = raw.warmup_steps.unwrap_or(0);
            if warmup_steps < 0 {
                check.fail(&["pruner", "warmup_steps"], format!("must be at least 0, got {warmup_steps}"));
            }
            PrunerRule::Percentile {
                percentile,
                warmup_steps,
                min_trials: check.count(&["pruner", "min_trials"], raw.min_trials, 5, 1),
                median: kind == PrunerKind::Median,
            }
        }
        PrunerKind::Asha | PrunerKind::Hyperband => {
            let min_resource = raw.min_resource.unwrap_or(1);
            if min_resource < 1 {
                check.fail(&["pruner", "min_resource"], format!("must be at least 1, got {min_resource}"));
            }
            let eta = check.count(&["pruner", "eta"], raw.eta, 3, 2);
            match raw.max_resource {
                Some(max) if max <= min_resource => check.fail(
                    &["pruner", "max_resource"],
                    format!("must be greater than min_resource ({min_resource}), got {max}"),
                ),
                None if kind == PrunerKind::Hyperband => check.fail(
                    &["pruner", "max_resource"],
                    "is required for kind = \"hyperband\" (the steps a full trial runs)",
                ),
                _ => {}
            }
            if kind == PrunerKind::Asha {
                PrunerRule::Asha { min_resource, max_resource: raw.max_resource, eta }
            } else {
                let max_resource = raw.max_resource.unwrap_or(min_resource + 1);
                if min_resource >= 1 && max_resource > min_resource {
                    let total = super::brackets::total_budget(min_resource, max_resource, eta);
                    if total > super::brackets::MAX_TOTAL_BUDGET {
                        check.fail(
                            &["pruner", "max_resource"],
                            format!("gives too many brackets ({total} trials per cycle); raise min_resource or eta"),
                        );
                    }
                }
                PrunerRule::Hyperband { min_resource, max_resource, eta }
            }
        }
    };
    let patience = raw.patience.map(|p| {
        if kind == PrunerKind::None {
            check.fail(&["pruner", "patience"], "needs a rule to delay (kind = \"none\" never stops a trial)");
        }
        check.count(&["pruner", "patience"], Some(p), 1, 1)
    });
    for (key, bound) in [("lower", raw.lower), ("upper", raw.upper)] {
        if bound.is_some_and(|b| !b.is_finite()) {
            check.fail(&["pruner", key], "must be a finite number");
        }
    }
    if let (Some(lo), Some(hi)) = (raw.lower, raw.upper) {
        if lo >= hi {
            check.fail(&["pruner", "lower"], format!("must be less than upper ({hi}), got {lo}"));
        }
    }
    let pause = match raw.mode.as_deref() {
        None | Some("stop") => false,
        Some("pause") => true,
        Some(other) => {
            check.fail(&["pruner", "mode"], format!("must be \"stop\" or \"pause\", got \"{other}\""));
            false
        }
    };
    let min_promise = raw.min_promise.inspect(|&p| {
        if kind == PrunerKind::None {
            check.fail(&["pruner", "min_promise"], "needs a rule to veto (kind = \"none\" never stops a trial)");
        } else if !(p > 0.0 && p < 1.0) {
            check.fail(
                &["pruner", "min_promise"],
                format!("must be a probability between 0 and 1 (exclusive), got {p}"),
            );
        }
    });
    PrunerConfig { rule, patience, min_promise, lower: raw.lower, upper: raw.upper, pause }
}

fn gpus(check: &mut Check, raw: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, g) in raw.iter().enumerate() {
        let id = match g {
            Value::Number(n) if n.as_u64().is_some() => n.to_string(),
            Value::String(s) if !s.trim().is_empty() && !s.contains(',') => s.trim().to_string(),
            _ => {
                check.fail_owned(
                    vec!["devices".into(), "gpus".into(), i.to_string()],
                    format!("`{g}` is not a GPU id (a number like 0 or a UUID string)"),
                );
                continue;
            }
        };
        if out.contains(&id) {
            check.fail_owned(vec!["devices".into(), "gpus".into(), i.to_string()], format!("GPU {id} is listed twice"));
        }
        out.push(id);
    }
    out
}

fn space(check: &mut Check, raw: &BTreeMap<String, ParamFile>) -> Space {
    let mut params = Vec::new();
    for (name, p) in raw {
        let path = ["params", name.as_str()];
        if name == TRIAL_PLACEHOLDER || name.is_empty() || name.contains(['{', '}', '.']) {
            check.fail(&path, format!("`{name}` cannot be a parameter name (reserved or contains {{ }} .)"));
            continue;
        }
        if let Some(distribution) = distribution(check, name, p) {
            let grid = grid(check, name, p, &distribution);
            params.push(Param { name: name.clone(), distribution, conditions: Vec::new(), grid });
        }
    }
    // Conditions need every parent's distribution, so they come second.
    let dists: BTreeMap<String, Distribution> =
        params.iter().map(|p| (p.name.clone(), p.distribution.clone())).collect();
    for param in &mut params {
        let Some(when) = raw[&param.name].when.as_ref() else {
            continue;
        };
        for (parent, values) in when {
            let path = ["params", param.name.as_str(), "when", parent.as_str()];
            let Some(parent_dist) = dists.get(parent) else {
                // A declared but invalid parent has its own message already.
                if !raw.contains_key(parent) {
                    check.fail(&path, format!("condition names unknown parameter `{parent}`"));
                }
                continue;
            };
            if parent == &param.name {
                check.fail(&path, "a parameter cannot depend on itself");
                continue;
            }
            let values = match values {
                Value::Array(vs) => vs.clone(),
                v => vec![v.clone()],
            };
            if values.is_empty() {
                check.fail(&path, "lists no values");
            }
            for v in &values {
                if !parent_dist.contains(v) {
                    check.fail(&path, format!("{v} is never a value of `{parent}`"));
                }
            }
            param.conditions.push(Condition { parent: parent.clone(), values });
        }
    }
    match order_parents_first(params) {
        Ok(params) => Space { params },
        Err((cycle, params)) => {
            check.fail(&["params", cycle.as_str(), "when"], "conditions form a cycle");
            Space { params }
        }
    }
}

/// Orders parameters so every parent precedes its children; on a cycle, names a parameter on
/// it and gives the parameters back unordered.
fn order_parents_first(mut pending: Vec<Param>) -> Result<Vec<Param>, (String, Vec<Param>)> {
    let mut ordered: Vec<Param> = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let ready =
            pending.iter().position(|p| p.conditions.iter().all(|c| ordered.iter().any(|o| o.name == c.parent)));
        match ready {
            Some(i) => ordered.push(pending.remove(i)),
            None => {
                let name = pending[0].name.clone();
                ordered.append(&mut pending);
                return Err((name, ordered));
            }
        }
    }
    Ok(ordered)
}

fn distribution(check: &mut Check, name: &str, p: &ParamFile) -> Option<Distribution> {
    let at = |key: &'static str| -> [String; 3] { ["params".into(), name.into(), key.into()] };
    let kind = match (p.kind, &p.choices, &p.value) {
        (Some(k), _, _) => k,
        (None, Some(_), _) => ParamKind::Categorical,
        (None, None, Some(_)) => ParamKind::Fixed,
        (None, None, None) => {
            check.fail(&["params", name], "needs `type` (float, int, categorical, fixed), `choices` or `value`");
            return None;
        }
    };
    let allowed: &[&str] = match kind {
        ParamKind::Float => &["low", "high", "log", "step"],
        ParamKind::Int => &["low", "high", "log", "step"],
        ParamKind::Categorical => &["choices"],
        ParamKind::Fixed => &["value"],
    };
    let present = [
        ("low", p.low.is_some()),
        ("high", p.high.is_some()),
        ("log", p.log.is_some()),
        ("step", p.step.is_some()),
        ("choices", p.choices.is_some()),
        ("value", p.value.is_some()),
    ];
    let before = check.errors.len();
    for (key, is_set) in present {
        if is_set && !allowed.contains(&key) {
            check.fail_owned(at(key).to_vec(), format!("not allowed for a {kind:?} parameter").to_lowercase());
        }
    }
    let dist = match kind {
        ParamKind::Float | ParamKind::Int => numeric(check, name, p, kind == ParamKind::Int),
        ParamKind::Categorical => {
            let choices = p.choices.clone().unwrap_or_default();
            if choices.is_empty() {
                check.fail_owned(at("choices").to_vec(), "must list at least one choice");
            }
            for (i, c) in choices.iter().enumerate() {
                let path = vec!["params".into(), name.into(), "choices".into(), i.to_string()];
                if !is_scalar(c) {
                    check.fail_owned(path, format!("{c} is not a string, number or boolean"));
                } else if choices[..i].iter().any(|d| values_equal(c, d)) {
                    check.fail_owned(path, format!("{c} is listed twice"));
                }
            }
            Some(Distribution::Categorical { choices })
        }
        ParamKind::Fixed => match &p.value {
            Some(v) if is_scalar(v) => Some(Distribution::Fixed { value: v.clone() }),
            Some(v) => {
                check.fail_owned(at("value").to_vec(), format!("{v} is not a string, number or boolean"));
                None
            }
            None => {
                check.fail_owned(at("value").to_vec(), "a fixed parameter needs `value`");
                None
            }
        },
    };
    (check.errors.len() == before).then_some(dist).flatten()
}

fn numeric(check: &mut Check, name: &str, p: &ParamFile, int: bool) -> Option<Distribution> {
    let at = |key: &str| vec!["params".to_string(), name.to_string(), key.to_string()];
    let (Some(low), Some(high)) = (p.low, p.high) else {
        let missing = if p.low.is_none() { "low" } else { "high" };
        check.fail_owned(at(missing), "is required for a numeric parameter");
        return None;
    };
    let log = p.log.unwrap_or(false);
    let before = check.errors.len();
    for (key, v) in [("low", low), ("high", high)] {
        if !v.is_finite() {
            check.fail_owned(at(key), "must be finite");
        } else if int && v.fract() != 0.0 {
            check.fail_owned(at(key), format!("must be a whole number for an int parameter, got {v}"));
        }
    }
    if low > high {
        check.fail_owned(at("low"), format!("low ({low}) is greater than high ({high})"));
    }
    if log && low <= 0.0 {
        check.fail_owned(at("low"), format!("must be > 0 when log = true, got {low}"));
    }
    if let Some(step) = p.step {
        if !(step > 0.0 && step.is_finite()) {
            check.fail_owned(at("step"), format!("must be positive, got {step}"));
        } else if int && step.fract() != 0.0 {
            check.fail_owned(at("step"), format!("must be a whole number for an int parameter, got {step}"));
        } else if log && (!int || step != 1.0) {
            check.fail_owned(at("step"), "cannot be combined with log = true (except step = 1 for ints)");
        } else if low <= high {
            let k = (high - low) / step;
            if (k - k.round()).abs() > 1e-9 * k.max(1.0) {
                check.fail_owned(at("step"), format!("high - low ({}) is not a multiple of step {step}", high - low));
            }
        }
    }
    if check.errors.len() != before {
        return None;
    }
    Some(if int {
        Distribution::Int { low: low as i64, high: high as i64, log, step: p.step.unwrap_or(1.0) as i64 }
    } else {
        Distribution::Float { low, high, log, step: p.step }
    })
}

fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn this_binary() -> String {
    std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "sweep".into())
}

/// `[executor]`: Slurm's keys are errors with `kind = "local"`.
fn executor(check: &mut Check, raw: &ExecutorFile, parallel: u32) -> ExecutorConfig {
    if raw.kind == ExecutorKind::Local {
        let given = [
            ("partition", raw.partition.is_some()),
            ("gres", raw.gres.is_some()),
            ("time", raw.time.is_some()),
            ("warning", raw.warning.is_some()),
            ("extra", raw.extra.is_some()),
            ("max_jobs", raw.max_jobs.is_some()),
            ("binary", raw.binary.is_some()),
            ("listen", raw.listen.is_some()),
            ("url", raw.url.is_some()),
            ("poll", raw.poll.is_some()),
        ];
        for (key, _) in given.iter().filter(|(_, present)| *present) {
            check.fail(&["executor", key], "only goes with `kind = \"slurm\"`");
        }
        return ExecutorConfig::Local;
    }
    let text = |check: &mut Check, key: &str, value: &Option<String>| -> Option<String> {
        let v = value.as_ref()?.trim().to_string();
        if v.is_empty() || v.contains(char::is_whitespace) {
            check.fail(&["executor", key], format!("`{v}` must be one word without spaces"));
        }
        Some(v)
    };
    let listen = raw.listen.as_deref().unwrap_or("0.0.0.0:0");
    let listen = listen.parse().unwrap_or_else(|_| {
        check.fail(&["executor", "listen"], format!("`{listen}` is not an address like \"0.0.0.0:8765\""));
        std::net::SocketAddr::from(([0, 0, 0, 0], 0))
    });
    if let Some(url) = &raw.url {
        if !url.starts_with("http://") {
            check.fail(&["executor", "url"], format!("`{url}` must start with http://"));
        }
    }
    let binary = raw.binary.clone().unwrap_or_else(this_binary);
    if !Path::new(&binary).is_absolute() {
        check
            .fail(&["executor", "binary"], format!("`{binary}` must be an absolute path, as the compute nodes see it"));
    }
    let time = text(check, "time", &raw.time);
    let warning = time_warning(check, time.as_deref(), &raw.warning);
    ExecutorConfig::Slurm(SlurmConfig {
        partition: text(check, "partition", &raw.partition),
        gres: text(check, "gres", &raw.gres),
        time,
        warning,
        extra: raw.extra.clone().unwrap_or_default(),
        max_jobs: check.count(&["executor", "max_jobs"], raw.max_jobs, parallel as i64, 1),
        binary: binary.into(),
        listen,
        url: raw.url.clone().map(|u| u.trim_end_matches('/').to_string()),
        poll: check.duration(&["executor", "poll"], &raw.poll).unwrap_or(Duration::from_secs(10)),
    })
}

/// How long before Slurm's time limit a job is warned: as given (shorter than the limit; zero
/// for never), or two minutes, at most half the limit.
fn time_warning(check: &mut Check, time: Option<&str>, warning: &Option<DurationText>) -> Duration {
    let limit = match time.map(crate::executor::slurm::time_limit) {
        Some(Err(why)) => {
            check.fail(&["executor", "time"], why);
            None
        }
        Some(Ok(limit)) => limit,
        None => None,
    };
    let off = match warning {
        Some(DurationText::Seconds(s)) => *s == 0.0,
        Some(DurationText::Text(t)) => humantime::parse_duration(t).is_ok_and(|d| d.is_zero()),
        None => false,
    };
    if off {
        return Duration::ZERO;
    }
    let given = check.duration(&["executor", "warning"], warning);
    match (given, limit) {
        (Some(w), Some(l)) if w >= l => {
            let (w, l) = (humantime::format_duration(w), humantime::format_duration(l));
            check.fail(&["executor", "warning"], format!("{w} is not shorter than the time limit ({l})"));
            Duration::ZERO
        }
        (Some(w), _) => w,
        (None, Some(l)) => DEFAULT_WARNING.min(l / 2),
        (None, None) => DEFAULT_WARNING,
    }
}

const DEFAULT_WARNING: Duration = Duration::from_secs(120);

fn trial(
    check: &mut Check,
    raw: &TrialFile,
    declared: &BTreeMap<String, ParamFile>,
    base: &Path,
    binary: &str,
) -> TrialSpec {
    let mut argv: Vec<(Vec<String>, &str)> = Vec::new();
    let mut program: Vec<ArgTemplate> = Vec::new();
    match (&raw.command, &raw.worker) {
        (Some(_), Some(_)) => check.fail(&["trial", "worker"], "give either `command` or `worker`, not both"),
        (None, None) => {
            check.fail(&["trial"], "needs `command = [\"program\", \"--flag\", \"{param}\"]` or `worker = \"testfn\"`");
        }
        (Some(cmd), None) => {
            if cmd.is_empty() || cmd[0].trim().is_empty() {
                check.fail(&["trial", "command"], "must name a program");
            }
            if !raw.args.is_empty() {
                check.fail(&["trial", "args"], "only goes with `worker`; put arguments in `command`");
            }
            for (i, a) in cmd.iter().enumerate() {
                argv.push((vec!["trial".into(), "command".into(), i.to_string()], a));
            }
        }
        (None, Some(worker)) => {
            if !BUILTIN_WORKERS.contains(&worker.as_str()) {
                check.fail(
                    &["trial", "worker"],
                    format!("unknown built-in worker `{worker}` (known: {})", BUILTIN_WORKERS.join(", ")),
                );
            }
            program = vec![literal(binary), literal("worker"), literal(worker)];
            for (i, a) in raw.args.iter().enumerate() {
                argv.push((vec!["trial".into(), "args".into(), i.to_string()], a));
            }
        }
    }
    for (path, text) in argv {
        match parse_template(text) {
            Ok(t) => {
                for piece in &t.0 {
                    if let Piece::Param(p) = piece {
                        if !declared.contains_key(p) {
                            check.fail_owned(path.clone(), format!("placeholder `{{{p}}}` names no parameter"));
                        }
                    }
                }
                program.push(t);
            }
            Err(m) => check.fail_owned(path, m),
        }
    }
    // Absolute, so that it means the same to a Slurm job started elsewhere.
    let workdir = base.join(raw.workdir.as_deref().unwrap_or("."));
    let workdir = std::path::absolute(&workdir).unwrap_or(workdir);
    if !workdir.is_dir() {
        check.fail(&["trial", "workdir"], format!("{} is not a directory", workdir.display()));
    }
    for key in raw.env.keys() {
        if key.is_empty() || key.contains('=') || key.starts_with("SWEEP_") {
            check.fail(&["trial", "env", key.as_str()], "not a usable variable name (SWEEP_ is reserved)");
        }
    }
    let grace = check.duration(&["trial", "grace"], &raw.grace).unwrap_or(Duration::from_secs(5));
    TrialSpec { argv: program, workdir, env: raw.env.clone(), grace, keep_checkpoints: raw.keep_checkpoints }
}

fn literal(s: &str) -> ArgTemplate {
    ArgTemplate(vec![Piece::Text(s.to_string())])
}

/// Splits `--lr={lr}` into text and placeholders; `{{` and `}}` are literal braces.
pub fn parse_template(text: &str) -> Result<ArgTemplate, String> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                if !closed || name.is_empty() || name.contains('{') {
                    return Err(format!("malformed placeholder in `{text}` (use {{{{ for a literal brace)"));
                }
                if !lit.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut lit)));
                }
                pieces.push(if name == TRIAL_PLACEHOLDER { Piece::Trial } else { Piece::Param(name) });
            }
            '}' => return Err(format!("unmatched `}}` in `{text}` (use }}}} for a literal brace)")),
            c => lit.push(c),
        }
    }
    if !lit.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(lit));
    }
    Ok(ArgTemplate(pieces))
}

impl ArgTemplate {
    /// The argument for one trial, or None when it names an inactive parameter (the whole
    /// argument is left out, so write conditional flags as `--momentum={momentum}`).
    pub fn render(&self, params: &Params, trial: u64) -> Option<String> {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Trial => out.push_str(&trial.to_string()),
                Piece::Param(p) => match params.get(p)? {
                    Value::String(s) => out.push_str(s),
                    v => out.push_str(&v.to_string()),
                },
            }
        }
        Some(out)
    }
}
