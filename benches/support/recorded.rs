//! Recorded learning curves: the complete trials of a `sweep export --format json` file, read
//! in the space of their study file. Shared by the benches that replay real curves.

use serde_json::Value;
use std::path::Path;
use sweep::space::{Params, Space};

#[allow(dead_code)] // each bench reads what it needs
pub struct Recorded {
    pub space: Space,
    pub configs: Vec<Params>,
    /// Each trial's `(step, loss)` reports of the study's metric (negated when maximized),
    /// NaN-free, in step order.
    pub curves: Vec<Vec<(i64, f64)>>,
}

impl Recorded {
    pub fn load(export: &Path, study: &Path) -> Recorded {
        let config = sweep::study::load(study).unwrap_or_else(|e| panic!("{e}"));
        let (metric, sign) = (&config.objective.metric, if config.objective.better(0.0, 1.0) { 1.0 } else { -1.0 });
        let text = std::fs::read_to_string(export).unwrap_or_else(|e| panic!("cannot read {}: {e}", export.display()));
        let bad = |what: &str| -> ! { panic!("{}: {what} (expected `sweep export --format json`)", export.display()) };
        let trials: Vec<Value> = serde_json::from_str(&text).unwrap_or_else(|e| bad(&e.to_string()));
        let (mut configs, mut curves) = (Vec::new(), Vec::new());
        for t in trials.iter().filter(|t| t["state"] == "complete") {
            let field = |name: &str| -> ! { bad(&format!("trial {} has no `{name}`", t["number"])) };
            let reports = t["reports"].as_array().unwrap_or_else(|| field("reports"));
            let curve: Vec<(i64, f64)> = reports
                .iter()
                .filter_map(|r| Some((r["step"].as_i64()?, sign * r[metric.as_str()].as_f64()?)))
                .filter(|p| p.1.is_finite())
                .collect();
            configs.push(t["params"].as_object().unwrap_or_else(|| field("params")).clone());
            curves.push(curve);
        }
        if curves.is_empty() {
            bad("no complete trials");
        }
        Recorded { space: config.space, configs, curves }
    }
}
