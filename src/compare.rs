//! The comparison of an ablation: a metric's mean and spread per value of one param (the x
//! axis), one line per value of the group params, over everything else (seeds, other params).
//! The page's comparison view and `sweep compare` both print this; it is a pure function of
//! the complete trials.

use crate::trial::Metrics;
use serde::Serialize;
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// What to compare: the x-axis param, the params whose values make the lines, and the final
/// metric (the objective when None).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub x: String,
    pub group: Vec<String>,
    pub metric: Option<String>,
}

/// One complete trial as the comparison reads it.
pub struct Outcome {
    pub params: Map<String, Value>,
    /// The objective.
    pub value: f64,
    /// Every final metric the trial reported.
    pub metrics: Metrics,
}

/// The trials of one line that share an x value, summarised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub x: Value,
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n - 1); None for a single trial.
    pub std: Option<f64>,
    pub min: f64,
    pub max: f64,
}

/// One line: the group params' values (null where the param was inactive) and its cells in
/// x order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub group: Map<String, Value>,
    pub cells: Vec<Cell>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub x: String,
    pub group: Vec<String>,
    pub metric: String,
    /// The metrics that can be compared: the objective, then every final metric reported.
    pub metrics: Vec<String>,
    /// Trials that have the x param and a finite value of the metric.
    pub trials: usize,
    pub series: Vec<Series>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CompareError {
    #[error("`{which}` names `{name}`, which is not a param of this study (params: {known})")]
    UnknownParam { which: &'static str, name: String, known: String },
    #[error("`group` lists `{0}` twice, or also as `x`")]
    Repeated(String),
    #[error("no complete trial reported the metric `{metric}` (reported: {known})")]
    UnknownMetric { metric: String, known: String },
}

/// Groups `outcomes` as `request` asks. `params` are the study's param names, `objective` its
/// metric. Groups and x values are sorted, numbers by value and before text.
pub fn compare(
    outcomes: &[Outcome],
    params: &[String],
    objective: &str,
    request: &Request,
) -> Result<Comparison, CompareError> {
    let known = || params.join(", ");
    let check = |which, name: &String| {
        if params.contains(name) {
            Ok(())
        } else {
            Err(CompareError::UnknownParam { which, name: name.clone(), known: known() })
        }
    };
    check("x", &request.x)?;
    let mut seen = BTreeSet::from([&request.x]);
    for name in &request.group {
        check("group", name)?;
        if !seen.insert(name) {
            return Err(CompareError::Repeated(name.clone()));
        }
    }
    let mut metrics = vec![objective.to_string()];
    let reported: BTreeSet<&String> = outcomes.iter().flat_map(|o| o.metrics.keys()).collect();
    metrics.extend(reported.into_iter().filter(|m| *m != objective).cloned());
    let metric = request.metric.clone().unwrap_or_else(|| objective.to_string());
    if !outcomes.is_empty() && !metrics.contains(&metric) {
        return Err(CompareError::UnknownMetric { metric, known: metrics.join(", ") });
    }
    let mut lines: BTreeMap<Key, BTreeMap<Key, Vec<f64>>> = BTreeMap::new();
    for o in outcomes {
        let value = if metric == objective { Some(o.value) } else { o.metrics.get(&metric).copied() };
        let (Some(x), Some(value)) = (o.params.get(&request.x), value.filter(|v| v.is_finite())) else {
            continue;
        };
        let group = Key(request.group.iter().map(|g| o.params.get(g).cloned().unwrap_or(Value::Null)).collect());
        lines.entry(group).or_default().entry(Key(vec![x.clone()])).or_default().push(value);
    }
    let trials = lines.values().flat_map(|cells| cells.values()).map(Vec::len).sum();
    let series = lines
        .into_iter()
        .map(|(group, cells)| Series {
            group: request.group.iter().cloned().zip(group.0).collect(),
            cells: cells.into_iter().map(|(mut x, values)| summarise(x.0.remove(0), &values)).collect(),
        })
        .collect();
    Ok(Comparison { x: request.x.clone(), group: request.group.clone(), metric, metrics, trials, series })
}

impl Comparison {
    /// As an aligned text table: one row per line and x value.
    pub fn table(&self) -> String {
        let mut head: Vec<String> = self.group.clone();
        head.push(self.x.clone());
        head.extend(["n", "mean", "std", "min", "max"].map(String::from));
        let mut rows = vec![head];
        let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), String::from);
        for s in &self.series {
            for c in &s.cells {
                let mut row: Vec<String> = s.group.values().map(text).collect();
                row.push(text(&c.x));
                row.push(c.n.to_string());
                row.extend(
                    [Some(c.mean), c.std, Some(c.min), Some(c.max)]
                        .map(|v| v.map_or("-".into(), |v| format!("{v:.4}"))),
                );
                rows.push(row);
            }
        }
        let widths: Vec<usize> =
            (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
        let mut out = format!("{} by {} ({} complete trials)\n", self.metric, self.x, self.trials);
        for row in rows {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

fn summarise(x: Value, values: &[f64]) -> Cell {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let std = (n > 1).then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Cell { x, n, mean, std, min, max }
}

/// Param values as a sort key: numbers by value (so 1 and 1.0 are one value) before anything
/// else, which sorts by its JSON text.
#[derive(Debug, Clone)]
struct Key(Vec<Value>);

fn order(a: &Value, b: &Value) -> Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.to_string().cmp(&b.to_string()),
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| order(a, b))
            .find(|o| o.is_ne())
            .unwrap_or(self.0.len().cmp(&other.0.len()))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Key {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outcome(params: Value, value: f64, test: f64) -> Outcome {
        let metrics = Metrics::from([("val_acc".to_string(), value), ("test_acc".to_string(), test)]);
        Outcome { params: params.as_object().unwrap().clone(), value, metrics }
    }

    fn names() -> Vec<String> {
        ["n", "init", "seed", "lr"].map(String::from).to_vec()
    }

    fn ablation() -> Vec<Outcome> {
        let mut out = Vec::new();
        for (n, base) in [(1000, 0.6), (100, 0.4)] {
            for init in ["scratch", "pretrain"] {
                for seed in 1..=3 {
                    let v = base + if init == "pretrain" { 0.1 } else { 0.0 } + 0.01 * seed as f64;
                    out.push(outcome(json!({"n": n, "init": init, "seed": seed}), v, v - 0.05));
                }
            }
        }
        out
    }

    fn request(x: &str, group: &[&str], metric: Option<&str>) -> Request {
        Request {
            x: x.into(),
            group: group.iter().map(ToString::to_string).collect(),
            metric: metric.map(String::from),
        }
    }

    #[test]
    fn one_line_per_group_with_mean_and_spread_over_the_rest() {
        let c = compare(&ablation(), &names(), "val_acc", &request("n", &["init"], None)).unwrap();
        assert_eq!(c.trials, 12);
        assert_eq!(c.metrics, ["val_acc", "test_acc"]);
        let groups: Vec<&Value> = c.series.iter().map(|s| &s.group["init"]).collect();
        assert_eq!(groups, [&json!("pretrain"), &json!("scratch")]);
        let pretrain = &c.series[0].cells;
        assert_eq!(pretrain.iter().map(|c| c.x.clone()).collect::<Vec<_>>(), [json!(100), json!(1000)], "x by value");
        assert_eq!(pretrain[0].n, 3);
        assert!((pretrain[0].mean - 0.52).abs() < 1e-12);
        assert!((pretrain[0].std.unwrap() - 0.01).abs() < 1e-12);
        assert_eq!((pretrain[0].min, pretrain[0].max), (0.51, 0.53));
    }

    #[test]
    fn another_final_metric_and_no_group() {
        let c = compare(&ablation(), &names(), "val_acc", &request("init", &[], Some("test_acc"))).unwrap();
        assert_eq!(c.series.len(), 1);
        let cells = &c.series[0].cells;
        assert_eq!(cells[1].x, json!("scratch"));
        assert_eq!(cells[1].n, 6);
        assert!((cells[1].mean - (0.5 + 0.02 - 0.05)).abs() < 1e-12, "{cells:?}");
    }

    #[test]
    fn inactive_params_missing_values_and_nan_are_handled() {
        let mut rows = ablation();
        rows.push(outcome(json!({"init": "scratch", "seed": 9}), 0.9, 0.9)); // no x: left out
        rows.push(outcome(json!({"n": 100, "init": "scratch", "seed": 9}), f64::NAN, 0.1)); // NaN objective
        let c = compare(&rows, &names(), "val_acc", &request("n", &["lr"], None)).unwrap();
        assert_eq!(c.trials, 12);
        assert_eq!(c.series[0].group["lr"], Value::Null, "an inactive group param is a null group");
        let test = compare(&rows, &names(), "val_acc", &request("n", &[], Some("test_acc"))).unwrap();
        assert_eq!(test.trials, 13, "the NaN objective does not hide a finite test_acc");
        assert_eq!(test.series[0].cells[0].n, 7);
    }

    #[test]
    fn a_single_trial_has_no_spread_and_equal_numbers_are_one_value() {
        let rows =
            vec![outcome(json!({"n": 1, "init": "a"}), 0.5, 0.5), outcome(json!({"n": 1.0, "init": "a"}), 0.7, 0.7)];
        let c = compare(&rows, &names(), "val_acc", &request("n", &[], None)).unwrap();
        assert_eq!(c.series[0].cells.len(), 1);
        assert_eq!(c.series[0].cells[0].n, 2);
        let one = compare(&rows[..1], &names(), "val_acc", &request("n", &[], None)).unwrap();
        assert_eq!(one.series[0].cells[0].std, None);
    }

    #[test]
    fn the_table_has_a_row_per_line_and_x() {
        let c = compare(&ablation(), &names(), "val_acc", &request("n", &["init"], None)).unwrap();
        let table = c.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "val_acc by n (12 complete trials)");
        assert_eq!(lines.len(), 2 + 4);
        assert!(lines[1].split_whitespace().eq(["init", "n", "n", "mean", "std", "min", "max"]), "{table}");
        assert!(
            lines[2].split_whitespace().eq(["pretrain", "100", "3", "0.5200", "0.0100", "0.5100", "0.5300"]),
            "{table}"
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let rows = ablation();
        let err = |r: Request| compare(&rows, &names(), "val_acc", &r).unwrap_err().to_string();
        assert!(err(request("nn", &[], None)).contains("`x` names `nn`, which is not a param"));
        assert!(err(request("n", &["inti"], None)).contains("`group` names `inti`"));
        assert!(err(request("n", &["n"], None)).contains("`group` lists `n` twice, or also as `x`"));
        assert!(err(request("n", &["init", "init"], None)).contains("twice"));
        let e = err(request("n", &[], Some("acc")));
        assert!(e.contains("`acc`") && e.contains("val_acc, test_acc"), "{e}");
        let empty = compare(&[], &names(), "val_acc", &request("n", &[], Some("acc"))).unwrap();
        assert!(empty.series.is_empty(), "no trials yet is not an error");
    }
}
