//! `sweep job SPEC`: what a Slurm job runs on its node. It starts the trial's worker exactly
//! as the local executor does, and relays to the coordinator over HTTP: each report (waiting
//! a little for the decision), a heartbeat, and the outcome.
//!
//! The coordinator may be away (restarting, network trouble): reports then queue up and are
//! retried in order, the worker goes on meanwhile, and the outcome is written to a file first
//! so it survives even a coordinator that never hears the job.

use super::spec::{DecisionBody, JobSpec, ReportBody};
use crate::durable::write_atomically;
use crate::executor::{Executor, Exit, Launch, LocalExecutor, WorkerEvent};
use crate::protocol::Decision;
use crate::trial::Metrics;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How long a report waits for its decision before the worker is told to go on (it does not
/// wait at all while earlier reports are still undelivered).
const DECISION_WAIT: Duration = Duration::from_secs(5);
/// How long the last reports and the outcome are offered to an unreachable coordinator before
/// the job gives up and frees its allocation (the outcome file still tells it).
const DONE_PATIENCE: Duration = Duration::from_secs(600);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot read job spec {path}: {reason}")]
    Spec { path: PathBuf, reason: String },
}

/// Runs the trial and returns the exit code for Slurm to record (0 when the worker succeeded
/// or was stopped on purpose).
pub async fn run(spec_path: &Path) -> Result<i32, RelayError> {
    let mut spec: JobSpec = std::fs::read(spec_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|reason| RelayError::Spec { path: spec_path.to_path_buf(), reason })?;
    let resume = resume_file(spec_path);
    let recorded = std::fs::read_to_string(&resume).ok().and_then(|s| s.trim().parse::<i64>().ok());
    if let Some(step) = recorded.filter(|s| spec.hello.resume_step.is_none_or(|r| *s > r)) {
        eprintln!("sweep job: started again (requeued); resuming from step {step}, its last recorded checkpoint");
        spec.hello.resume_step = Some(step);
        spec.env.insert(crate::protocol::env::RESUME_STEP.into(), step.to_string());
    }
    let client = Client::new(&spec);
    let cancel = CancellationToken::new();
    let told_to_stop = Arc::new(AtomicBool::new(false));
    let terminated = Arc::new(AtomicBool::new(false));
    let warned = Arc::new(AtomicBool::new(false));
    tokio::spawn(on_signal(SignalKind::terminate(), cancel.clone(), terminated.clone()));
    tokio::spawn(on_signal(SignalKind::user_defined1(), cancel.clone(), warned.clone()));
    tokio::spawn(heartbeat(client.clone(), spec.heartbeat, cancel.clone(), told_to_stop.clone()));
    let backlog = Arc::new(AtomicUsize::new(0));
    let (deliveries, delivered) =
        deliver_in_order(client.clone(), cancel.clone(), told_to_stop.clone(), backlog.clone(), resume);

    let (events, mut inbox) = mpsc::unbounded_channel();
    LocalExecutor.launch(launch(&spec, cancel.clone()), &events);
    let (mut last, mut last_step): (Option<Metrics>, Option<i64>) = (None, None);
    // The newest checkpoint this job's worker reported, and the one it started from.
    let (mut checkpointed, started_from) = (None, spec.hello.resume_step);
    let outcome = loop {
        match inbox.recv().await.expect("the local executor always ends with Done") {
            WorkerEvent::Report { step, metrics, checkpoint, reply, .. } => {
                let step = step.unwrap_or_else(|| last_step.map_or(0, |s| s + 1));
                last_step = Some(step);
                // A checkpoint alone has no metrics to stand in for a final line.
                if !metrics.is_empty() {
                    last = Some(metrics.clone());
                }
                if checkpoint {
                    checkpointed = Some(step);
                }
                // With the coordinator away the worker trains on; a late stop still arrives.
                let wait = if backlog.fetch_add(1, Ordering::SeqCst) == 0 { DECISION_WAIT } else { Duration::ZERO };
                let (tx, decision) = oneshot::channel();
                let _ = deliveries.send((ReportBody { step, metrics, checkpoint }, tx));
                let decision = tokio::time::timeout(wait, decision).await;
                let _ = reply.send(decision.ok().and_then(Result::ok).unwrap_or(Decision::Continue));
            }
            WorkerEvent::Done { outcome, .. } => break outcome,
            WorkerEvent::Submitted { .. } => {}
        }
    };
    let mut outcome = outcome;
    outcome.final_metrics = outcome.final_metrics.or(last);
    let job = std::env::var("SLURM_JOB_ID").unwrap_or_default();
    let (warned, terminated) = (warned.load(Ordering::SeqCst), terminated.load(Ordering::SeqCst));
    if outcome.exit != Exit::Success && !told_to_stop.load(Ordering::SeqCst) {
        if warned {
            outcome.exit = near_time_limit(&job, checkpointed.filter(|c| started_from.is_none_or(|s| c > &s)));
        } else if terminated {
            outcome.exit = Exit::JobLost(format!("slurm job {job} got SIGTERM: cancelled, preempted or out of time"));
        }
    }
    if let Err(e) =
        write_atomically(&spec.outcome_file, &serde_json::to_vec(&outcome).expect("outcome serializes"), 0o644)
    {
        eprintln!("sweep job: cannot write {}: {e}", spec.outcome_file.display());
    }
    // Reports before the outcome, so the coordinator has them all when the trial ends.
    let deadline = Instant::now() + DONE_PATIENCE;
    drop(deliveries);
    let _ = tokio::time::timeout_at(deadline.into(), delivered).await;
    let code = match (&outcome.exit, told_to_stop.load(Ordering::SeqCst)) {
        (Exit::Success, _) | (_, true) => 0,
        (Exit::Code(c), _) if (1..=255).contains(c) => *c,
        _ => 1,
    };
    let path = format!("/jobs/{}/done", spec.trial);
    if client.post::<_, serde_json::Value>(&path, &outcome, Some(deadline)).await.is_none() {
        eprintln!("sweep job: the coordinator did not take the outcome; it is in {}", spec.outcome_file.display());
    }
    Ok(code)
}

/// The worker as the local executor starts it, on the GPUs Slurm gave this job.
fn launch(spec: &JobSpec, cancel: CancellationToken) -> Launch {
    let mut env = spec.env.clone();
    // The coordinator's machine is not this node: use the CPUs Slurm allotted.
    let cpus = std::env::var("SLURM_CPUS_PER_TASK").or_else(|_| std::env::var("SLURM_CPUS_ON_NODE"));
    if let Some(n) = cpus.ok().and_then(|c| c.trim().parse::<u32>().ok()) {
        env.insert(crate::protocol::env::CPU_THREADS.into(), n.max(1).to_string());
    }
    Launch {
        trial: spec.trial,
        hello: spec.hello.clone(),
        argv: spec.argv.clone(),
        workdir: spec.workdir.clone(),
        env,
        device: std::env::var("CUDA_VISIBLE_DEVICES").ok(),
        timeout: spec.timeout,
        grace: spec.grace,
        cancel,
    }
}

/// Slurm's SIGTERM (scancel, preemption, time limit) or its warning before the time limit
/// (SIGUSR1, asked for at submission): stop the worker the gentle way, which gives a worker
/// that checkpoints on SIGTERM time to save where it is.
async fn on_signal(kind: SignalKind, cancel: CancellationToken, got: Arc<AtomicBool>) {
    let Ok(mut signals) = signal(kind) else { return };
    signals.recv().await;
    if kind == SignalKind::user_defined1() {
        eprintln!("sweep job: Slurm's time limit is near; stopping the worker so that it checkpoints");
    }
    got.store(true, Ordering::SeqCst);
    cancel.cancel();
}

/// A job stopped before its time limit: the trial goes on in a new job from the checkpoint its
/// worker made in this one (not counted as a failure), or, with none, fails (retries apply).
fn near_time_limit(job: &str, new_checkpoint: Option<i64>) -> Exit {
    match new_checkpoint {
        Some(step) => Exit::JobPreempted(format!(
            "slurm job {job} neared its time limit and stopped after a checkpoint at step {step}"
        )),
        None => Exit::JobLost(format!(
            "slurm job {job} neared its time limit and stopped, with no checkpoint since it started"
        )),
    }
}

/// Tells the coordinator the job is alive; its answer may be to stop (a worker that never
/// reports still gets stopped this way).
async fn heartbeat(client: Client, every: Duration, cancel: CancellationToken, told_to_stop: Arc<AtomicBool>) {
    let path = format!("/jobs/{}/heartbeat", client.trial);
    loop {
        tokio::time::sleep(every).await;
        let answer: Option<DecisionBody> = client.post(&path, &(), Some(Instant::now() + every)).await;
        if answer.is_some_and(|a| a.decision == Decision::Stop) {
            told_to_stop.store(true, Ordering::SeqCst);
            cancel.cancel();
        }
    }
}

type Delivery = (ReportBody, oneshot::Sender<Decision>);

/// Where a job keeps the step of the last checkpoint the coordinator recorded: Slurm starts a
/// requeued job again from its spec, whose resume step is the one it was submitted with.
fn resume_file(spec_path: &Path) -> PathBuf {
    spec_path.with_file_name("resume-step")
}

/// Posts reports one at a time, in order, each until it is taken. A stop that arrives after
/// its report's wait ran out still stops the worker. Once the coordinator has taken a report
/// that declared a checkpoint (recorded before it answers), its step goes to `resume`.
fn deliver_in_order(
    client: Client,
    cancel: CancellationToken,
    told_to_stop: Arc<AtomicBool>,
    backlog: Arc<AtomicUsize>,
    resume: PathBuf,
) -> (mpsc::UnboundedSender<Delivery>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Delivery>();
    let task = tokio::spawn(async move {
        let path = format!("/jobs/{}/report", client.trial);
        while let Some((body, reply)) = rx.recv().await {
            let answer = client.post::<_, DecisionBody>(&path, &body, None).await;
            backlog.fetch_sub(1, Ordering::SeqCst);
            let Some(answer) = answer else { continue };
            if body.checkpoint {
                if let Err(e) = write_atomically(&resume, body.step.to_string().as_bytes(), 0o644) {
                    eprintln!("sweep job: cannot write {}: {e}", resume.display());
                }
            }
            if answer.decision == Decision::Stop {
                told_to_stop.store(true, Ordering::SeqCst);
                if reply.is_closed() {
                    cancel.cancel();
                }
            }
            let _ = reply.send(answer.decision);
        }
    });
    (tx, task)
}

/// A blocking HTTP client (ureq) run off the async thread, retrying with backoff.
#[derive(Clone)]
struct Client {
    agent: ureq::Agent,
    url_file: Arc<PathBuf>,
    token: Arc<String>,
    trial: u64,
}

impl Client {
    fn new(spec: &JobSpec) -> Client {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
        Client {
            agent,
            url_file: Arc::new(spec.url_file.clone()),
            token: Arc::new(spec.token.clone()),
            trial: spec.trial,
        }
    }

    /// Posts until the coordinator answers or `until` passes (None: until it answers). A
    /// refusal (bad token, bad body) is not retried. None if no answer was had.
    async fn post<B, A>(&self, path: &str, body: &B, until: Option<Instant>) -> Option<A>
    where
        B: Serialize,
        A: serde::de::DeserializeOwned + Send + 'static,
    {
        let body = serde_json::to_value(body).expect("bodies serialize");
        let mut backoff = Duration::from_millis(200);
        loop {
            let (client, owned, body) = (self.clone(), path.to_string(), body.clone());
            let attempt = tokio::task::spawn_blocking(move || client.post_once(&owned, &body)).await;
            match attempt {
                Ok(Ok(answer)) => return Some(answer),
                Ok(Err(Failure::Refused(why))) => {
                    eprintln!("sweep job: the coordinator refused {path}: {why}");
                    return None;
                }
                Ok(Err(Failure::Retry(why))) => tracing::debug!("{path}: {why}; retrying"),
                Err(_) => return None,
            }
            if until.is_some_and(|u| Instant::now() + backoff > u) {
                return None;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn post_once<A: serde::de::DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> Result<A, Failure> {
        // Read each time: a restarted coordinator may listen elsewhere.
        let base = std::fs::read_to_string(&*self.url_file).map_err(|e| Failure::Retry(e.to_string()))?;
        let url = format!("{}{path}", base.trim().trim_end_matches('/'));
        let response = self.agent.post(&url).set("Authorization", &format!("Bearer {}", self.token)).send_json(body);
        match response {
            Ok(r) if r.status() == 204 => {
                serde_json::from_value(serde_json::Value::Null).map_err(|e| Failure::Refused(e.to_string()))
            }
            Ok(r) => r.into_json().map_err(|e| Failure::Retry(e.to_string())),
            // 401 and 404 may come from whatever holds a stale address: retried.
            Err(ureq::Error::Status(code @ (400 | 413 | 422), r)) => {
                Err(Failure::Refused(format!("{code} {}", r.into_string().unwrap_or_default())))
            }
            Err(e) => Err(Failure::Retry(e.to_string())),
        }
    }
}

enum Failure {
    Retry(String),
    Refused(String),
}
