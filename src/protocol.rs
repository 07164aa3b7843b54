//! The worker <-> coordinator messages: JSON lines, versioned.
//!
//! Coordinator -> worker, on stdin: first a `Hello` line with the params, then one `Reply` line
//! per report. Worker -> coordinator, on stdout: `{"step": 3, "val_loss": 0.41}` reports and
//! `{"final": {"val_loss": 0.39}}` at the end. Any other stdout line is log, never an error.

use crate::space::Params;
use crate::trial::Metrics;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const VERSION: u32 = 1;

/// The environment the coordinator gives every worker process (see the README's protocol).
pub mod env {
    pub const STUDY: &str = "SWEEP_STUDY";
    pub const TRIAL_ID: &str = "SWEEP_TRIAL_ID";
    pub const ATTEMPT: &str = "SWEEP_ATTEMPT";
    /// The trial's params as a JSON object (also sent on stdin in the `Hello` line).
    pub const PARAMS: &str = "SWEEP_PARAMS";
    pub const DB: &str = "SWEEP_DB";
    pub const TRIAL_DIR: &str = "SWEEP_TRIAL_DIR";
    pub const RUNS_DIR: &str = "SWEEP_RUNS_DIR";
    /// Cores / parallel on the coordinator's machine; the CPUs Slurm allotted on a node.
    pub const CPU_THREADS: &str = "SWEEP_CPU_THREADS";
    /// The trial's checkpoint folder, shared by all its attempts (also in the `Hello` line).
    pub const CHECKPOINT_DIR: &str = "SWEEP_CHECKPOINT_DIR";
    /// Set when this attempt resumes: the step of the last checkpoint the coordinator recorded.
    pub const RESUME_STEP: &str = "SWEEP_RESUME_STEP";
}

/// The first line a worker reads on stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub study: String,
    pub trial: u64,
    pub attempt: u32,
    pub params: Params,
    /// Where the worker keeps checkpoints; the same folder for every attempt of the trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_dir: Option<String>,
    /// The step to resume from: the last report this trial sent with `"checkpoint": true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_step: Option<i64>,
}

/// The coordinator's answer to each report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Continue,
    Stop,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub decision: Decision,
}

/// What one stdout line of a worker means.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerLine {
    /// Intermediate metrics; `step` is absent when the worker did not number its reports.
    /// `checkpoint`: the line said `"checkpoint": true`, a durable checkpoint of this step.
    Report {
        step: Option<i64>,
        metrics: Metrics,
        checkpoint: bool,
    },
    Final(Metrics),
    Log,
}

/// Reads a worker's stdout line. Tolerates Python's `NaN`/`Infinity` tokens so a diverged
/// run is recorded as such instead of as log.
pub fn parse_line(line: &str) -> WorkerLine {
    let line = line.trim();
    if !line.starts_with('{') {
        return WorkerLine::Log;
    }
    let object: Map<String, Value> = match serde_json::from_str(line) {
        Ok(o) => o,
        Err(_) => match serde_json::from_str(&quote_non_finite(line)) {
            Ok(o) => o,
            Err(_) => return WorkerLine::Log,
        },
    };
    if let Some(fin) = object.get("final") {
        let metrics = fin.as_object().map(numeric_fields).unwrap_or_default();
        return if metrics.is_empty() { WorkerLine::Log } else { WorkerLine::Final(metrics) };
    }
    let numbered = object.contains_key("step");
    let step = object.get("step").and_then(|s| s.as_i64().or_else(|| s.as_f64().map(|f| f as i64)));
    let mut metrics = numeric_fields(&object);
    metrics.remove("step");
    let checkpoint = object.get("checkpoint").and_then(Value::as_bool) == Some(true);
    // A line with a `step` is a report whatever its values (the worker waits for a reply);
    // without one, it takes a value that is a number.
    if numbered || has_number(&object) {
        WorkerLine::Report { step, metrics, checkpoint }
    } else {
        WorkerLine::Log
    }
}

fn has_number(object: &Map<String, Value>) -> bool {
    object.values().any(|v| v.is_number() || v.as_str().and_then(parse_non_finite).is_some())
}

/// Metrics as JSON, with NaN and infinities as strings (JSON has no such numbers).
pub fn metrics_to_json(metrics: &Metrics) -> Value {
    let object = metrics
        .iter()
        .map(|(k, v)| {
            let v = if v.is_finite() { Value::from(*v) } else { Value::from(v.to_string()) };
            (k.clone(), v)
        })
        .collect();
    Value::Object(object)
}

/// Reads what `metrics_to_json` wrote.
pub fn metrics_from_json(value: &Value) -> Option<Metrics> {
    value.as_object().map(numeric_fields)
}

/// The values that are metrics: numbers, the non-finite tokens, and `null`, which is what
/// Python's `None` and JavaScript's `JSON.stringify(NaN)` write for a diverged value, so it
/// counts as NaN. Other strings, booleans and nested values are annotations, not metrics.
fn numeric_fields(object: &Map<String, Value>) -> Metrics {
    object
        .iter()
        .filter_map(|(k, v)| {
            let x = match v {
                Value::Number(n) => n.as_f64()?,
                Value::String(s) => parse_non_finite(s)?,
                Value::Null => f64::NAN,
                _ => return None,
            };
            Some((k.clone(), x))
        })
        .collect()
}

pub fn parse_non_finite(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "inf" | "infinity" | "+inf" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Puts quotes around bare NaN / Infinity / -Infinity outside strings.
fn quote_non_finite(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let token = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t));
        if let Some(t) = token {
            out.push('"');
            out.push_str(t);
            out.push('"');
            rest = &rest[t.len()..];
        } else {
            in_string = c == '"';
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(pairs: &[(&str, f64)]) -> Metrics {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn reports_finals_and_logs() {
        assert_eq!(
            parse_line(r#"{"step": 3, "val_loss": 0.41, "note": "x"}"#),
            WorkerLine::Report { step: Some(3), metrics: metrics(&[("val_loss", 0.41)]), checkpoint: false }
        );
        assert_eq!(parse_line(r#"{"final": {"val_loss": 0.39}}"#), WorkerLine::Final(metrics(&[("val_loss", 0.39)])));
        assert_eq!(parse_line("epoch 3 done"), WorkerLine::Log);
        assert_eq!(parse_line("{not json"), WorkerLine::Log);
        assert_eq!(parse_line(r#"{"msg": "hello"}"#), WorkerLine::Log);
        assert_eq!(parse_line(r#"{"final": 3}"#), WorkerLine::Log, "final must hold metrics");
        assert_eq!(parse_line(""), WorkerLine::Log);
    }

    #[test]
    fn a_line_with_a_step_is_a_report_whatever_its_values() {
        match parse_line(r#"{"step": 3, "y": null}"#) {
            WorkerLine::Report { step: Some(3), metrics, .. } => assert!(metrics["y"].is_nan(), "null counts as NaN"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_line(r#"{"step": 4}"#),
            WorkerLine::Report { step: Some(4), metrics: Metrics::new(), checkpoint: false }
        );
        assert_eq!(
            parse_line(r#"{"step": 5, "phase": "eval", "ok": true}"#),
            WorkerLine::Report { step: Some(5), metrics: Metrics::new(), checkpoint: false },
            "strings and booleans are annotations, but the line still gets its reply"
        );
        match parse_line(r#"{"final": {"y": null}}"#) {
            WorkerLine::Final(m) => assert!(m["y"].is_nan()),
            other => panic!("{other:?}"),
        }
        // Without a step, a line needs a number to be a report.
        assert_eq!(parse_line(r#"{"msg": "hello", "extra": null}"#), WorkerLine::Log);
        assert_eq!(
            parse_line(r#"{"loss": 0.5}"#),
            WorkerLine::Report { step: None, metrics: metrics(&[("loss", 0.5)]), checkpoint: false }
        );
    }

    #[test]
    fn a_report_may_declare_a_durable_checkpoint() {
        assert_eq!(
            parse_line(r#"{"step": 300, "val_loss": 2.5, "checkpoint": true}"#),
            WorkerLine::Report { step: Some(300), metrics: metrics(&[("val_loss", 2.5)]), checkpoint: true }
        );
        for line in [r#"{"step": 300, "checkpoint": false}"#, r#"{"step": 300, "checkpoint": "yes"}"#] {
            assert!(matches!(parse_line(line), WorkerLine::Report { checkpoint: false, .. }), "{line}");
        }
    }

    #[test]
    fn python_non_finite_tokens_are_values() {
        match parse_line(r#"{"step": 1, "loss": NaN, "x": -Infinity, "s": "NaN inside"}"#) {
            WorkerLine::Report { metrics, .. } => {
                assert!(metrics["loss"].is_nan());
                assert_eq!(metrics["x"], f64::NEG_INFINITY);
                assert!(!metrics.contains_key("s"), "a string that is not a number is not a metric");
            }
            other => panic!("{other:?}"),
        }
        match parse_line(r#"{"final": {"loss": Infinity}}"#) {
            WorkerLine::Final(m) => assert_eq!(m["loss"], f64::INFINITY),
            other => panic!("{other:?}"),
        }
    }
}
