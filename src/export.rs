//! Writes a study's trials, with params, final metrics and intermediate reports, as CSV or JSON.
//! A study with several objectives or constraints also says, per trial, whether it meets the
//! constraints (`feasible`) and whether it is in the study's Pareto set (`pareto`).

use crate::objective::Goals;
use crate::store::Report;
use crate::trial::Trial;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

type ByTrial<'a> = BTreeMap<u64, Vec<&'a Report>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write export: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot write CSV: {0}")]
    Csv(#[from] csv::Error),
}

/// Reports grouped by trial number.
fn reports_by_trial(reports: &[Report]) -> ByTrial<'_> {
    let mut out = ByTrial::new();
    for r in reports {
        out.entry(r.number).or_default().push(r);
    }
    out
}

/// One trial's reports as one object per step, `{"step": 3, "loss": 0.41, ...}`, in step order
/// (NaN as null).
pub fn reports_json<'a>(reports: impl IntoIterator<Item = &'a Report>) -> Vec<Value> {
    let mut steps: BTreeMap<i64, Map<String, Value>> = BTreeMap::new();
    for r in reports {
        steps.entry(r.step).or_default().insert(r.metric.clone(), r.value.map_or(Value::Null, Value::from));
    }
    steps
        .into_iter()
        .map(|(step, mut m)| {
            m.insert("step".into(), json!(step));
            Value::Object(m)
        })
        .collect()
}

/// Per trial with metrics, for a study that is not plain: (feasible, in the Pareto set).
type Standing = BTreeMap<u64, (bool, bool)>;

/// A trial's `feasible` (None without metrics) and `pareto`.
fn standing_of(standing: &Standing, number: u64) -> (Option<bool>, bool) {
    standing.get(&number).map_or((None, false), |&(f, p)| (Some(f), p))
}

fn standing(goals: &Goals, trials: &[Trial]) -> Option<Standing> {
    if goals.is_plain() {
        return None;
    }
    let front = crate::front::front(goals, trials);
    let on_front: BTreeSet<u64> = front.trials.iter().map(|t| t.number).collect();
    Some(
        trials
            .iter()
            .filter(|t| t.metrics.is_some())
            .map(|t| (t.number, (crate::front::feasible(goals, t), on_front.contains(&t.number))))
            .collect(),
    )
}

fn trial_json(t: &Trial, reports: Option<&Vec<&Report>>, standing: Option<&Standing>) -> Value {
    let reports = reports_json(reports.into_iter().flatten().copied());
    let mut out = json!({
        "number": t.number,
        "state": t.state,
        "attempt": t.attempt,
        "rerun_of": t.rerun_of,
        "device": t.device,
        "job": t.job,
        "value": t.value,
        "params": t.params,
        "metrics": t.metrics,
        "last_step": t.last_step,
        "checkpoint_step": t.checkpoint_step,
        "resumed_from": t.resumed_from,
        "paused": t.paused,
        "reason": t.reason,
        "stderr_tail": t.stderr_tail,
        "started_at_ms": t.started_at,
        "finished_at_ms": t.finished_at,
        "reports": reports,
    });
    if let Some(standing) = standing {
        let (feasible, pareto) = standing_of(standing, t.number);
        out["feasible"] = json!(feasible);
        out["pareto"] = json!(pareto);
    }
    out
}

pub fn write(
    out: &mut dyn Write,
    format: Format,
    goals: &Goals,
    trials: &[Trial],
    reports: &[Report],
) -> Result<(), ExportError> {
    let by_trial = reports_by_trial(reports);
    let standing = standing(goals, trials);
    match format {
        Format::Json => {
            let all: Vec<Value> =
                trials.iter().map(|t| trial_json(t, by_trial.get(&t.number), standing.as_ref())).collect();
            serde_json::to_writer_pretty(&mut *out, &all).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        Format::Csv => write_csv(out, trials, &by_trial, standing.as_ref())?,
    }
    Ok(())
}

/// One row per trial: fixed columns, `param_<name>` and `metric_<name>` columns (each
/// objective is one), `feasible` and `pareto` for a study that is not plain, and the
/// intermediate reports as one JSON column.
fn write_csv(
    out: &mut dyn Write,
    trials: &[Trial],
    by_trial: &ByTrial<'_>,
    standing: Option<&Standing>,
) -> Result<(), ExportError> {
    let params: BTreeSet<&String> = trials.iter().flat_map(|t| t.params.keys()).collect();
    let metrics: BTreeSet<&String> = trials.iter().flat_map(|t| t.metrics.iter().flat_map(|m| m.keys())).collect();
    let mut w = csv::Writer::from_writer(out);
    let mut header: Vec<String> = [
        "number",
        "state",
        "attempt",
        "rerun_of",
        "device",
        "job",
        "value",
        "last_step",
        "checkpoint_step",
        "resumed_from",
        "paused",
        "started_at_ms",
        "finished_at_ms",
        "reason",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    header.extend(params.iter().map(|p| format!("param_{p}")));
    header.extend(metrics.iter().map(|m| format!("metric_{m}")));
    if standing.is_some() {
        header.extend(["feasible".into(), "pareto".into()]);
    }
    header.push("reports".into());
    w.write_record(&header)?;
    let opt = |v: Option<String>| v.unwrap_or_default();
    for t in trials {
        let mut row = vec![
            t.number.to_string(),
            t.state.as_str().to_string(),
            t.attempt.to_string(),
            opt(t.rerun_of.map(|n| n.to_string())),
            opt(t.device.clone()),
            opt(t.job.clone()),
            opt(t.value.map(|v| v.to_string())),
            opt(t.last_step.map(|v| v.to_string())),
            opt(t.checkpoint_step.map(|v| v.to_string())),
            opt(t.resumed_from.map(|v| v.to_string())),
            t.paused.to_string(),
            opt(t.started_at.map(|v| v.to_string())),
            opt(t.finished_at.map(|v| v.to_string())),
            opt(t.reason.clone()),
        ];
        row.extend(params.iter().map(|p| match t.params.get(*p) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        }));
        row.extend(metrics.iter().map(|m| opt(t.metrics.as_ref().and_then(|x| x.get(*m)).map(ToString::to_string))));
        if let Some(standing) = standing {
            let (feasible, pareto) = standing_of(standing, t.number);
            row.extend([opt(feasible.map(|f| f.to_string())), pareto.to_string()]);
        }
        let reports = Value::from(reports_json(by_trial.get(&t.number).into_iter().flatten().copied())).to_string();
        row.push(reports);
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}
