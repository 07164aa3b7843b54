//! Aggregates computed on the server so the page draws, never crunches: best-so-far history,
//! thinned learning curves, and parameter importance.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryPoint {
    pub number: i64,
    pub state: String,
    pub value: Option<f64>,
    /// Best complete value up to and including this trial.
    pub best: Option<f64>,
}

/// Each finished trial with the best complete value so far.
pub fn history(outcomes: &[(i64, String, Option<f64>)], maximize: bool) -> Vec<HistoryPoint> {
    let mut best: Option<f64> = None;
    outcomes
        .iter()
        .map(|(number, state, value)| {
            if let (Some(v), "complete") = (value, state.as_str()) {
                let better = best.is_none_or(|b| if maximize { *v > b } else { *v < b });
                if better && v.is_finite() {
                    best = Some(*v);
                }
            }
            HistoryPoint { number: *number, state: state.clone(), value: *value, best }
        })
        .collect()
}

/// At most `max` points of a curve, evenly spaced, always keeping the last.
pub fn thin(points: &[(i64, Option<f64>)], max: usize) -> Vec<(i64, Option<f64>)> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let stride = (points.len() - 1) as f64 / (max - 1) as f64;
    (0..max).map(|i| points[((i as f64 * stride).round() as usize).min(points.len() - 1)]).collect()
}

/// Indices (ascending) of at most `max` of `values`: all of them if they fit, else the best
/// quarter of `max` (the region a person looks at) and an even stride through the rest.
pub fn sample(values: &[f64], max: usize, maximize: bool) -> Vec<usize> {
    if values.len() <= max {
        return (0..values.len()).collect();
    }
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| if maximize { values[b].total_cmp(&values[a]) } else { values[a].total_cmp(&values[b]) });
    let best = max / 4;
    let mut keep = vec![false; values.len()];
    order[..best].iter().for_each(|&i| keep[i] = true);
    let rest: Vec<usize> = (0..values.len()).filter(|&i| !keep[i]).collect();
    let stride = rest.len() as f64 / (max - best) as f64;
    (0..max - best).for_each(|k| keep[rest[(k as f64 * stride) as usize]] = true);
    (0..values.len()).filter(|&i| keep[i]).collect()
}

/// How much of the objective's variance each param explains (correlation ratio: variance of
/// the per-group means over the total variance; numeric params grouped into quantile bins),
/// normalized to sum to 1. Cheap, model-free, and readable at 100,000 trials.
pub fn importance(completed: &[(serde_json::Map<String, Value>, f64)]) -> Vec<(String, f64)> {
    let values: Vec<f64> = completed.iter().map(|(_, v)| *v).filter(|v| v.is_finite()).collect();
    if values.len() < 3 {
        return Vec::new();
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let total = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
    let names: std::collections::BTreeSet<&String> = completed.iter().flat_map(|(p, _)| p.keys()).collect();
    let mut scores: Vec<(String, f64)> = names
        .into_iter()
        .map(|name| {
            let groups = group(completed, name);
            let explained: f64 =
                groups.values().map(|g| g.len() as f64 * (g.iter().sum::<f64>() / g.len() as f64 - mean).powi(2)).sum();
            (name.clone(), if total > 0.0 { explained / total } else { 0.0 })
        })
        .collect();
    let sum: f64 = scores.iter().map(|s| s.1).sum();
    if sum > 0.0 {
        scores.iter_mut().for_each(|s| s.1 /= sum);
    }
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    scores
}

/// Objective values grouped by a param's value: ten quantile bins for numbers, one group per
/// value otherwise (absent, i.e. inactive, is a group too).
fn group(completed: &[(serde_json::Map<String, Value>, f64)], name: &str) -> BTreeMap<String, Vec<f64>> {
    let mut numbers: Vec<f64> = completed.iter().filter_map(|(p, _)| p.get(name).and_then(Value::as_f64)).collect();
    numbers.sort_by(f64::total_cmp);
    let distinct = numbers.windows(2).filter(|w| w[0] != w[1]).count() + 1;
    let edges: Vec<f64> =
        if distinct > 10 { (1..10).map(|i| numbers[i * numbers.len() / 10]).collect() } else { vec![] };
    let mut groups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (params, v) in completed.iter().filter(|(_, v)| v.is_finite()) {
        let key = match params.get(name) {
            Some(x) if !edges.is_empty() && x.is_number() => {
                let x = x.as_f64().unwrap_or(0.0);
                format!("bin{:02}", edges.iter().filter(|e| x >= **e).count())
            }
            Some(x) => x.to_string(),
            None => "inactive".into(),
        };
        groups.entry(key).or_default().push(*v);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn best_so_far_follows_direction_and_skips_failures() {
        let o = vec![
            (0, "complete".into(), Some(3.0)),
            (1, "failed".into(), None),
            (2, "complete".into(), Some(1.0)),
            (3, "pruned".into(), Some(0.5)),
        ];
        let h = history(&o, false);
        let best: Vec<Option<f64>> = h.iter().map(|p| p.best).collect();
        assert_eq!(best, [Some(3.0), Some(3.0), Some(1.0), Some(1.0)]);
        assert_eq!(history(&o, true)[2].best, Some(3.0));
    }

    #[test]
    fn thinning_keeps_ends_and_bounds_size() {
        let pts: Vec<(i64, Option<f64>)> = (0..1000).map(|i| (i, Some(i as f64))).collect();
        let t = thin(&pts, 50);
        assert_eq!(t.len(), 50);
        assert_eq!((t[0].0, t[49].0), (0, 999));
    }

    #[test]
    fn samples_keep_the_best_and_spread_the_rest() {
        let values: Vec<f64> = (0..1000).map(|i| ((i * 37) % 1000) as f64).collect();
        let s = sample(&values, 100, false);
        assert_eq!(s.len(), 100);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        let best: Vec<f64> = s.iter().map(|&i| values[i]).filter(|v| *v < 25.0).collect();
        assert_eq!(best.len(), 25, "the 25 best are all kept");
        assert!(s.last().unwrap() > &900, "the sample reaches the end");
        assert_eq!(sample(&values[..50], 100, true).len(), 50);
    }

    #[test]
    fn the_param_that_drives_the_objective_ranks_first() {
        let completed: Vec<_> = (0..200)
            .map(|i| {
                let x = i as f64 / 200.0;
                let noise = ((i * 7919) % 13) as f64 / 130.0;
                let p = json!({"x": x, "noise": noise, "opt": if i % 2 == 0 { "a" } else { "b" }});
                (p.as_object().unwrap().clone(), 10.0 * x + noise)
            })
            .collect();
        let imp = importance(&completed);
        assert_eq!(imp[0].0, "x");
        assert!(imp[0].1 > 0.8, "{imp:?}");
        assert!((imp.iter().map(|s| s.1).sum::<f64>() - 1.0).abs() < 1e-9);
    }
}
