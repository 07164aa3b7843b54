//! Runs an objective function inside the coordinator's process: for benchmarks of the
//! coordinator's own overhead and for tests that need no child processes.

use super::{Executor, Launch, Outcome, WorkerEvent};
use crate::space::Params;
use crate::trial::Metrics;
use std::sync::Arc;
use tokio::sync::mpsc;

type ObjectiveFn = dyn Fn(&Params) -> Metrics + Send + Sync;

pub struct InProcessExecutor {
    objective: Arc<ObjectiveFn>,
}

impl InProcessExecutor {
    pub fn new(objective: impl Fn(&Params) -> Metrics + Send + Sync + 'static) -> InProcessExecutor {
        InProcessExecutor { objective: Arc::new(objective) }
    }
}

impl Executor for InProcessExecutor {
    fn launch(&mut self, launch: Launch, events: &mpsc::UnboundedSender<WorkerEvent>) {
        let metrics = (self.objective)(&launch.hello.params);
        let outcome = Outcome { final_metrics: Some(metrics), ..Outcome::default() };
        let _ = events.send(WorkerEvent::Done { trial: launch.trial, outcome });
    }
}
