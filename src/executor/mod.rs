//! Where a trial's worker runs. An executor starts the worker and turns what it does into
//! `WorkerEvent`s; deciding what those events mean for the trial is the coordinator's job.

mod inproc;
mod lines;
mod local;
pub mod slurm;

pub use inproc::InProcessExecutor;
pub use local::LocalExecutor;
pub use slurm::SlurmExecutor;

use crate::protocol::{Decision, Hello};
use crate::trial::Metrics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Everything needed to start one trial's worker.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The trial's number in its study.
    pub trial: u64,
    pub hello: Hello,
    /// Rendered argv; element 0 is the program.
    pub argv: Vec<String>,
    pub workdir: PathBuf,
    /// Extra environment (the study's `[trial] env` and the SWEEP_* variables).
    pub env: BTreeMap<String, String>,
    /// The GPU id for CUDA_VISIBLE_DEVICES, or None for CPU.
    pub device: Option<String>,
    pub timeout: Option<Duration>,
    /// Time between each step of stop: tell, SIGTERM, SIGKILL.
    pub grace: Duration,
    /// Cancelled by the coordinator to stop the worker (shutdown or pruning).
    pub cancel: CancellationToken,
}

/// What a worker did, as the coordinator hears it.
#[derive(Debug)]
pub enum WorkerEvent {
    /// An intermediate report; the worker waits for the decision. `checkpoint`: the worker
    /// made a checkpoint of this step durable first (it becomes the trial's resume point).
    Report { trial: u64, step: Option<i64>, metrics: Metrics, checkpoint: bool, reply: oneshot::Sender<Decision> },
    /// The worker runs as cluster job `job` (recorded so a restart re-adopts it).
    Submitted { trial: u64, job: String },
    /// The worker is gone; no more events for this trial.
    Done { trial: u64, outcome: Outcome },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub exit: Exit,
    /// The `{"final": ...}` metrics, if the worker sent them.
    #[serde(with = "optional_metrics")]
    pub final_metrics: Option<Metrics>,
    /// The last lines of stderr.
    pub stderr_tail: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    #[default]
    Success,
    Code(i32),
    Signal(i32),
    /// Killed after the trial timeout.
    TimedOut(Duration),
    /// Stopped because the coordinator cancelled it.
    Stopped,
    /// The worker could not be started at all.
    SpawnFailed(String),
    /// The cluster job ended without word from its worker (failed, timed out, vanished); why.
    JobLost(String),
    /// The cluster took the job away (preempted, node failure): run the trial again.
    JobPreempted(String),
}

pub trait Executor: Send {
    /// Starts a trial. Its events, ending with exactly one `Done`, arrive on `events`.
    fn launch(&mut self, launch: Launch, events: &mpsc::UnboundedSender<WorkerEvent>);

    /// Takes charge again of a trial an earlier coordinator left RUNNING, if its worker can
    /// still be out there (a cluster job outlives the coordinator; a local child does not).
    /// When true, the trial's events arrive as if it had been launched.
    fn adopt(&mut self, _launch: Launch, _job: Option<&str>, _events: &mpsc::UnboundedSender<WorkerEvent>) -> bool {
        false
    }

    /// Whether workers keep running when the coordinator shuts down, for the next run to adopt.
    fn detaches(&self) -> bool {
        false
    }
}

/// Metrics in JSON as the protocol writes them (NaN and infinities as strings).
mod optional_metrics {
    use crate::trial::Metrics;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(m: &Option<Metrics>, s: S) -> Result<S::Ok, S::Error> {
        m.as_ref().map(crate::protocol::metrics_to_json).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Metrics>, D::Error> {
        let value = Option::<serde_json::Value>::deserialize(d)?;
        Ok(value.as_ref().and_then(crate::protocol::metrics_from_json))
    }
}
