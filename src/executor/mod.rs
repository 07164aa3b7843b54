//! Where a trial's worker runs. An executor starts the worker and turns what it does into
//! `WorkerEvent`s; deciding what those events mean for the trial is the coordinator's job.

mod inproc;
mod lines;
mod local;

pub use inproc::InProcessExecutor;
pub use local::LocalExecutor;

use crate::protocol::{Decision, Hello};
use crate::trial::Metrics;
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
    /// An intermediate report; the worker waits for the decision.
    Report { trial: u64, step: Option<i64>, metrics: Metrics, reply: oneshot::Sender<Decision> },
    /// The worker is gone; no more events for this trial.
    Done { trial: u64, outcome: Outcome },
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub exit: Exit,
    /// The `{"final": ...}` metrics, if the worker sent them.
    pub final_metrics: Option<Metrics>,
    /// The last lines of stderr.
    pub stderr_tail: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
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
}

pub trait Executor: Send {
    /// Starts a trial. Its events, ending with exactly one `Done`, arrive on `events`.
    fn launch(&mut self, launch: Launch, events: &mpsc::UnboundedSender<WorkerEvent>);
}
