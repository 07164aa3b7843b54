//! What the coordinator and its jobs tell each other: the job spec file each job starts from,
//! and the bodies of the job API.

use crate::protocol::{Decision, Hello};
use crate::trial::Metrics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a job needs to run its trial, written to `job.json` in the trial's directory
/// (readable only by its owner: it holds the token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    /// A file holding the coordinator's current base URL, read again before each retry, so a
    /// restarted coordinator on another port is still found.
    pub url_file: PathBuf,
    /// The study's token; every request carries it.
    pub token: String,
    pub trial: u64,
    pub hello: Hello,
    pub argv: Vec<String>,
    pub workdir: PathBuf,
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    pub grace: Duration,
    /// Time between heartbeats.
    pub heartbeat: Duration,
    /// Where the job leaves its outcome before telling the coordinator, so a coordinator that
    /// was down at that moment still learns it.
    pub outcome_file: PathBuf,
}

/// `POST /jobs/{trial}/report`. The job numbers every report, so a retried one replaces its
/// row instead of adding another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportBody {
    pub step: i64,
    #[serde(with = "metrics_json")]
    pub metrics: Metrics,
    /// The worker made a checkpoint of this step durable (absent from older jobs: false).
    #[serde(default)]
    pub checkpoint: bool,
}

/// The answer to a report or a heartbeat.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct DecisionBody {
    pub decision: Decision,
}

/// Metrics in the protocol's JSON (NaN and infinities as strings).
mod metrics_json {
    use crate::trial::Metrics;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(m: &Metrics, s: S) -> Result<S::Ok, S::Error> {
        crate::protocol::metrics_to_json(m).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Metrics, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        crate::protocol::metrics_from_json(&value).ok_or_else(|| serde::de::Error::custom("metrics must be an object"))
    }
}
