//! Creates a study, or resumes it after checking the file still describes the same study.

use super::CoordinatorError;
use crate::store::{NewStudy, Store, StudyRecord};
use crate::study::StudyConfig;
use crate::trial::NewTrial;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn hash(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Opens the study named in `config`: creates it (with its enqueued trials), or checks that a
/// stored one is compatible and records the new budget.
pub async fn open_study(store: &mut Store, config: &StudyConfig) -> Result<(StudyRecord, bool), CoordinatorError> {
    let print = config.fingerprint();
    match store.find_study(&config.name).await? {
        Some(existing) => {
            let json = |f| serde_json::to_value(f).expect("a fingerprint serializes");
            let changes = differences(&json(&existing.fingerprint), &json(&print));
            if !changes.is_empty() {
                return Err(CoordinatorError::Incompatible { study: config.name.clone(), changes });
            }
            store.update_study(existing.id, &config.source, config.budget.trials).await?;
            let record = store.find_study(&config.name).await?.expect("study exists");
            Ok((record, true))
        }
        None => {
            let enqueued: Vec<NewTrial> = config
                .enqueue
                .iter()
                .enumerate()
                .map(|(i, params)| NewTrial::waiting(i as u64, params.clone()))
                .collect();
            let record = store
                .create_study(
                    &NewStudy {
                        name: &config.name,
                        source: &config.source,
                        fingerprint: &print,
                        space_hash: &hash(&print.space),
                        metric: &config.objective.metric,
                        direction: config.objective.direction,
                        budget: config.budget.trials,
                    },
                    &enqueued,
                )
                .await?;
            Ok((record, false))
        }
    }
}

/// Human lines saying what differs between the stored and the new fingerprint.
fn differences(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["metric", "direction", "seed", "objectives", "constraints"] {
        if old[key] != new[key] {
            out.push(format!("{key}: {} -> {}", old[key], new[key]));
        }
    }
    let params = |v: &Value| -> Vec<(String, Value)> {
        v["space"]["params"]
            .as_array()
            .map(|a| a.iter().map(|p| (p["name"].as_str().unwrap_or("?").to_string(), p.clone())).collect())
            .unwrap_or_default()
    };
    let (before, after) = (params(old), params(new));
    for (name, p) in &before {
        match after.iter().find(|(n, _)| n == name) {
            None => out.push(format!("parameter `{name}` was removed")),
            Some((_, q)) if q != p => out.push(format!("parameter `{name}` changed: {p} -> {q}")),
            Some(_) => {}
        }
    }
    for (name, _) in &after {
        if !before.iter().any(|(n, _)| n == name) {
            out.push(format!("parameter `{name}` was added"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_each_change() {
        let old = json!({"metric": "loss", "direction": "minimize", "seed": 1,
            "space": {"params": [{"name": "lr", "type": "float", "low": 0.1}, {"name": "gone"}]}});
        let new = json!({"metric": "acc", "direction": "minimize", "seed": 1,
            "space": {"params": [{"name": "lr", "type": "float", "low": 0.2}, {"name": "new"}]}});
        let d = differences(&old, &new);
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(d[0].starts_with("metric"));
        assert!(d.iter().any(|l| l.contains("`lr` changed")));
        assert!(d.iter().any(|l| l.contains("`gone` was removed")));
        assert!(d.iter().any(|l| l.contains("`new` was added")));
        assert!(differences(&old, &old).is_empty());
    }
}
