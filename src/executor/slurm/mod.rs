//! Runs each trial as a Slurm job. The coordinator stays the only writer of the database: the
//! job runs `sweep job`, which starts the worker on its node as the local executor would and
//! relays its reports, heartbeats and outcome to the coordinator's job API over HTTP.
//!
//! The coordinator watches its jobs with squeue (and sacct once squeue forgets them), stops
//! them with scancel, and records each job id on its trial; after a restart it adopts the jobs
//! still in Slurm instead of submitting them again.

mod api;
mod commands;
pub mod relay;
pub mod spec;
pub use commands::time_limit;

use super::{Executor, Exit, Launch, Outcome, WorkerEvent};
use crate::durable::write_atomically;
use crate::study::SlurmConfig;
use commands::{Phase, Submission};
use spec::JobSpec;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot listen for jobs on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The jobs the coordinator is waiting on, shared by the executor, its poller and the API.
pub struct Jobs {
    token: String,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    events: Option<mpsc::UnboundedSender<WorkerEvent>>,
    jobs: HashMap<u64, Job>,
}

struct Job {
    /// None until sbatch (or the lookup of an adopted job) answers.
    id: Option<String>,
    cancel: CancellationToken,
    /// Cancelled when the trial ends, to end the tasks that wait on it.
    gone: CancellationToken,
    outcome_file: PathBuf,
    /// The last word from the job, or the moment it was seen to start running.
    last_seen: Instant,
    /// Whether the job has said anything: then it runs, whatever the last poll saw.
    heard: bool,
    phase: Option<Phase>,
    /// Polls in a row that found the job over with no word from it.
    strikes: u32,
    /// The job's own account of a failure, held until squeue says whether Slurm ended the job
    /// (cancelled, out of time, preempted), which is then the reason.
    failed: Option<Outcome>,
}

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn events(&self) -> Option<mpsc::UnboundedSender<WorkerEvent>> {
        self.lock().events.clone()
    }

    /// Notes word from a job; false when the trial is not (or no longer) ours.
    fn touch(&self, trial: u64) -> bool {
        let mut table = self.lock();
        let Some(job) = table.jobs.get_mut(&trial) else { return false };
        job.last_seen = Instant::now();
        job.heard = true;
        true
    }

    fn stopping(&self, trial: u64) -> bool {
        self.lock().jobs.get(&trial).is_some_and(|j| j.cancel.is_cancelled())
    }

    fn contains(&self, trial: u64) -> bool {
        self.lock().jobs.contains_key(&trial)
    }

    /// The trial's one `Done`: later calls for it do nothing, and say it was taken. False while
    /// the coordinator is not listening (not yet adopting after a restart, or shutting down):
    /// the job is to try again.
    fn finish(&self, trial: u64, outcome: Outcome) -> bool {
        let mut table = self.lock();
        let Some(events) = table.events.clone() else { return false };
        if !table.jobs.contains_key(&trial) {
            return true;
        }
        if events.send(WorkerEvent::Done { trial, outcome }).is_err() {
            return false;
        }
        if let Some(job) = table.jobs.remove(&trial) {
            job.gone.cancel();
        }
        true
    }

    /// A job's own account of its end. A failure we did not ask for waits for the poller: Slurm
    /// may have ended the job, and the worker cannot always tell (its SIGTERM may beat ours).
    fn done(&self, trial: u64, outcome: Outcome) -> bool {
        let mut table = self.lock();
        if table.events.is_none() {
            return false;
        }
        match table.jobs.get_mut(&trial) {
            Some(job) if outcome.exit != Exit::Success && !job.cancel.is_cancelled() => {
                job.failed = Some(outcome);
                true
            }
            _ => {
                drop(table);
                self.finish(trial, outcome)
            }
        }
    }

    /// The job is running as far as we know: it said so, or squeue did.
    fn running(&self, trial: u64) -> bool {
        self.lock().jobs.get(&trial).is_some_and(|j| j.heard || j.phase == Some(Phase::Running))
    }

    fn gone(&self, trial: u64) -> CancellationToken {
        self.lock().jobs.get(&trial).map_or_else(
            || {
                let gone = CancellationToken::new();
                gone.cancel();
                gone
            },
            |j| j.gone.clone(),
        )
    }

    fn set_id(&self, trial: u64, id: &str) {
        let mut table = self.lock();
        if let Some(job) = table.jobs.get_mut(&trial) {
            job.id = Some(id.to_string());
        }
        if let Some(events) = &table.events {
            let _ = events.send(WorkerEvent::Submitted { trial, job: id.to_string() });
        }
    }
}

pub struct SlurmExecutor {
    config: SlurmConfig,
    jobs: Arc<Jobs>,
    url_file: PathBuf,
    url: String,
}

impl SlurmExecutor {
    /// Listens for the study's jobs and starts watching them. `dir` is the study's folder under
    /// the runs directory, which the compute nodes must see at the same path.
    pub async fn start(config: &SlurmConfig, dir: &Path) -> Result<SlurmExecutor, SlurmError> {
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SlurmError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(write_err(dir))?;
        let token_file = dir.join("coordinator.token");
        let token = load_or_create_token(&token_file).map_err(write_err(&token_file))?;
        let addr = config.listen;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| SlurmError::Bind { addr, source })?;
        let local = listener.local_addr().map_err(|source| SlurmError::Bind { addr, source })?;
        let url = config.url.clone().unwrap_or_else(|| default_url(local));
        let url_file = dir.join("coordinator.url");
        write_atomically(&url_file, url.as_bytes(), 0o644).map_err(write_err(&url_file))?;
        let jobs = Arc::new(Jobs { token, table: Mutex::new(Table::default()) });
        let app = api::router(jobs.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("job API stopped: {e}");
            }
        });
        tokio::spawn(poll(jobs.clone(), config.poll));
        Ok(SlurmExecutor { config: config.clone(), jobs, url_file, url })
    }

    /// The base URL jobs are told to use.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn register(&self, launch: &Launch, id: Option<String>, events: &mpsc::UnboundedSender<WorkerEvent>) -> PathBuf {
        let dir = trial_dir(launch);
        let mut table = self.jobs.lock();
        table.events.get_or_insert_with(|| events.clone());
        let job = Job {
            id,
            cancel: launch.cancel.clone(),
            gone: CancellationToken::new(),
            outcome_file: dir.join("outcome.json"),
            last_seen: Instant::now(),
            heard: false,
            phase: None,
            strikes: 0,
            failed: None,
        };
        table.jobs.insert(launch.trial, job);
        dir
    }

    fn spec(&self, launch: &Launch, dir: &Path) -> JobSpec {
        JobSpec {
            url_file: self.url_file.clone(),
            token: self.jobs.token.clone(),
            trial: launch.trial,
            hello: launch.hello.clone(),
            argv: launch.argv.clone(),
            workdir: launch.workdir.clone(),
            env: launch.env.clone(),
            timeout: launch.timeout,
            grace: launch.grace,
            heartbeat: self.config.poll,
            outcome_file: dir.join("outcome.json"),
        }
    }
}

/// Jobs of a coordinator that is gone find no address (rather than whatever listens on its
/// port next) until the next run writes one.
impl Drop for SlurmExecutor {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.url_file);
    }
}

impl Executor for SlurmExecutor {
    fn launch(&mut self, launch: Launch, events: &mpsc::UnboundedSender<WorkerEvent>) {
        let dir = self.register(&launch, None, events);
        let spec = self.spec(&launch, &dir);
        let config = self.config.clone();
        let jobs = self.jobs.clone();
        tokio::spawn(async move {
            let trial = launch.trial;
            match submit(&config, &spec, &dir, &launch).await {
                Ok(id) => {
                    jobs.set_id(trial, &id);
                    stop_when_cancelled(jobs, trial, id, launch.cancel, launch.grace, config.poll).await;
                }
                Err(why) => {
                    jobs.finish(trial, Outcome { exit: Exit::SpawnFailed(why), ..Outcome::default() });
                }
            }
        });
    }

    fn adopt(&mut self, launch: Launch, job: Option<&str>, events: &mpsc::UnboundedSender<WorkerEvent>) -> bool {
        self.register(&launch, job.map(str::to_string), events);
        let (jobs, poll, known) = (self.jobs.clone(), self.config.poll, job.map(str::to_string));
        tokio::spawn(async move {
            let trial = launch.trial;
            // The coordinator may have died between sbatch and recording the id.
            let id = match known {
                Some(id) => id,
                None => match find_unrecorded(&launch, poll).await {
                    Ok(id) => {
                        jobs.set_id(trial, &id);
                        id
                    }
                    Err(outcome) => {
                        jobs.finish(trial, outcome);
                        return;
                    }
                },
            };
            stop_when_cancelled(jobs, trial, id, launch.cancel, launch.grace, poll).await;
        });
        true
    }

    /// Cluster jobs are expensive: a coordinator shut down leaves them running, to be adopted.
    fn detaches(&self) -> bool {
        true
    }
}

/// The job of a trial whose id the coordinator died before recording, by its name; or, if
/// Slurm has none, how the trial ended: what its job left in the outcome file, else interrupted.
async fn find_unrecorded(launch: &Launch, poll: Duration) -> Result<String, Outcome> {
    let name = job_name(&launch.hello.study, launch.trial);
    loop {
        match commands::find_by_name(&name).await {
            Ok(Some(id)) => return Ok(id),
            Ok(None) => break,
            // slurmctld busy: ask again rather than re-run a trial that may be running.
            Err(e) => tracing::warn!("trial {}: {e}", launch.trial),
        }
        tokio::time::sleep(poll).await;
    }
    Err(read_outcome(&trial_dir(launch).join("outcome.json")).unwrap_or_else(|| {
        let why = "the coordinator stopped before recording its Slurm job, and Slurm has none by its name";
        Outcome { exit: Exit::JobPreempted(why.into()), ..Outcome::default() }
    }))
}

/// Writes the job's spec and script and submits it.
async fn submit(config: &SlurmConfig, spec: &JobSpec, dir: &Path, launch: &Launch) -> Result<String, String> {
    let spec_file = dir.join("job.json");
    let script = dir.join("job.sh");
    let text = serde_json::to_vec_pretty(spec).expect("job spec serializes");
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    let name = job_name(&launch.hello.study, launch.trial);
    let body = format!("#!/bin/sh\n# {name}\nexec {} job {}\n", quote(&config.binary), quote(&spec_file));
    std::fs::create_dir_all(dir)
        .and_then(|()| write_atomically(&spec_file, &text, 0o600))
        .and_then(|()| write_atomically(&script, body.as_bytes(), 0o700))
        .map_err(|e| format!("cannot write the job files in {}: {e}", dir.display()))?;
    let output = dir.join("slurm-%j.out");
    let submission = Submission {
        name: &name,
        script: &script,
        output: &output,
        workdir: &launch.workdir,
        partition: config.partition.as_deref(),
        gres: config.gres.as_deref(),
        time: config.time.as_deref(),
        warning: config.warning,
        extra: &config.extra,
    };
    commands::sbatch(&submission).await
}

/// Once the trial is to stop: a running job's worker hears `stop` in its next decision or
/// heartbeat; a job still there a heartbeat and `grace` later gets SIGTERM (every process, the
/// script included), and after `grace` more is cancelled. A queued job is cancelled at once.
async fn stop_when_cancelled(
    jobs: Arc<Jobs>,
    trial: u64,
    id: String,
    cancel: CancellationToken,
    grace: Duration,
    poll: Duration,
) {
    let gone = jobs.gone(trial);
    tokio::select! {
        _ = cancel.cancelled() => {},
        _ = gone.cancelled() => return,
    }
    if jobs.running(trial) {
        tokio::time::sleep(poll + grace).await;
        if !jobs.contains(trial) {
            return;
        }
        if let Err(e) = commands::scancel(&id, Some("TERM")).await {
            tracing::warn!("trial {trial}: {e}");
        }
        tokio::time::sleep(grace).await;
        if !jobs.contains(trial) {
            return;
        }
    }
    if let Err(e) = commands::scancel(&id, None).await {
        tracing::warn!("trial {trial}: {e}");
    }
}

/// Watches the jobs with squeue: a job over without word from it ends its trial with what it
/// left in its outcome file, or with Slurm's account of it; a running job silent for too long
/// is cancelled.
async fn poll(jobs: Arc<Jobs>, every: Duration) {
    // A heartbeat comes every `every`; this many missed ones means the job lost us.
    let silence = (every * 6).max(Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        let ids: Vec<(u64, String)> =
            jobs.lock().jobs.iter().filter_map(|(t, j)| j.id.clone().map(|id| (*t, id))).collect();
        if ids.is_empty() {
            continue;
        }
        let list: Vec<String> = ids.iter().map(|(_, id)| id.clone()).collect();
        let mut states = match commands::squeue(&list).await {
            Ok(s) => s,
            Err(e) => {
                // slurmctld busy or restarting: no news is not bad news.
                tracing::warn!("{e}");
                continue;
            }
        };
        for (_, id) in &ids {
            if !states.contains_key(id) {
                if let Some(s) = commands::sacct(id).await {
                    states.insert(id.clone(), s);
                }
            }
        }
        for (trial, id) in ids {
            let verdict = {
                let mut table = jobs.lock();
                let Some(job) = table.jobs.get_mut(&trial) else { continue };
                judge(job, &id, states.get(&id), silence)
                    .map(|(exit, cancel)| (exit, cancel, job.failed.take(), job.outcome_file.clone()))
            };
            if let Some((exit, cancel, failed, outcome_file)) = verdict {
                if cancel {
                    let _ = commands::scancel(&id, None).await;
                }
                let outcome = match failed.or_else(|| read_outcome(&outcome_file)) {
                    Some(o) => by_slurm(o, exit, states.get(&id)),
                    None => Outcome { exit, ..Outcome::default() },
                };
                jobs.finish(trial, outcome);
            }
        }
    }
}

/// What one poll means for a job: nothing yet, or the exit its trial ends with (and whether
/// the job must still be cancelled).
fn judge(job: &mut Job, id: &str, state: Option<&commands::JobState>, silence: Duration) -> Option<(Exit, bool)> {
    let phase = state.map(|s| s.phase());
    let was = std::mem::replace(&mut job.phase, phase);
    match phase {
        Some(Phase::Queued) => {
            job.strikes = 0;
            job.last_seen = Instant::now();
            None
        }
        Some(Phase::Running) => {
            job.strikes = 0;
            if was != Some(Phase::Running) {
                job.last_seen = Instant::now();
            }
            let quiet = job.last_seen.elapsed();
            (quiet > silence)
                .then(|| (Exit::JobLost(format!("no word from slurm job {id} for {}s", quiet.as_secs())), true))
        }
        // A job that is over gets one more poll for its own `done` to arrive, unless it came.
        _ => {
            job.strikes += 1;
            if job.strikes < 2 && job.failed.is_none() {
                return None;
            }
            let why = state.map_or(format!("slurm job {id} vanished from squeue and sacct"), |s| s.describe(id));
            let exit = if phase == Some(Phase::TakenAway) { Exit::JobPreempted(why) } else { Exit::JobLost(why) };
            Some((exit, false))
        }
    }
}

/// A job's own outcome, with Slurm's account as the reason where Slurm ended the job: then a
/// preempted job's trial runs again, and a cancelled or timed-out one says so.
fn by_slurm(mut own: Outcome, slurm: Exit, state: Option<&commands::JobState>) -> Outcome {
    // A job that stopped itself near its time limit says more than Slurm's TIMEOUT after it.
    let stopped_itself = matches!(own.exit, Exit::JobPreempted(_));
    if own.exit == Exit::Success || stopped_itself || !state.is_some_and(commands::JobState::ended_by_slurm) {
        return own;
    }
    let signalled = matches!(own.exit, Exit::JobLost(_) | Exit::Signal(libc::SIGTERM) | Exit::Stopped);
    own.exit = match slurm {
        Exit::JobLost(why) if signalled => Exit::JobLost(format!("{why}: its worker got SIGTERM")),
        other => other,
    };
    own
}

/// The outcome a job left behind, if it got that far.
fn read_outcome(path: &Path) -> Option<Outcome> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn trial_dir(launch: &Launch) -> PathBuf {
    launch.env.get(crate::protocol::env::TRIAL_DIR).map(PathBuf::from).unwrap_or_else(|| {
        crate::layout::trial_dir(&crate::layout::runs_dir(&launch.workdir), &launch.hello.study, launch.trial)
    })
}

/// Slurm job names: readable in squeue, and unique per trial so an unrecorded job can be found.
fn job_name(study: &str, trial: u64) -> String {
    let study: String =
        study.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    format!("sweep-{study}-{trial}")
}

fn default_url(local: SocketAddr) -> String {
    let ip = local.ip();
    let host = if ip.is_unspecified() { hostname() } else { ip.to_string() };
    format!("http://{host}:{}", local.port())
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    if ok && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".into()
    }
}

/// The study's token for its jobs: made once, kept beside its trials (owner-only), so jobs
/// outlive a coordinator restart.
fn load_or_create_token(path: &Path) -> std::io::Result<String> {
    if let Ok(t) = std::fs::read_to_string(path) {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    let token = format!("{:032x}", rand::random::<u128>());
    write_atomically(path, token.as_bytes(), 0o600)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_plain_and_unique_per_trial() {
        assert_eq!(job_name("lr sweep/2", 7), "sweep-lr_sweep_2-7");
        assert_ne!(job_name("a", 1), job_name("a", 11));
    }

    #[test]
    fn urls_name_a_reachable_host() {
        assert_eq!(default_url("127.0.0.1:8000".parse().unwrap()), "http://127.0.0.1:8000");
        assert!(!default_url("0.0.0.0:8000".parse().unwrap()).contains("0.0.0.0"));
    }

    fn config() -> SlurmConfig {
        SlurmConfig {
            partition: None,
            gres: None,
            time: None,
            warning: Duration::ZERO,
            extra: Vec::new(),
            max_jobs: 1,
            binary: "/bin/false".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            url: None,
            poll: Duration::from_secs(3600),
        }
    }

    fn launch(trial: u64, dir: &Path) -> Launch {
        Launch {
            trial,
            hello: crate::protocol::Hello {
                protocol: 1,
                study: "api".into(),
                trial,
                attempt: 1,
                params: Default::default(),
                checkpoint_dir: None,
                resume_step: None,
            },
            argv: vec!["true".into()],
            workdir: dir.to_path_buf(),
            env: Default::default(),
            device: None,
            timeout: None,
            grace: Duration::from_millis(10),
            cancel: CancellationToken::new(),
        }
    }

    /// The job API without Slurm: the token is required, a repeated report reaches the
    /// coordinator with its step (the store replaces the row), a repeated `done` ends the
    /// trial once, and a trial that is not ours is told to stop.
    #[tokio::test]
    async fn the_job_api_is_guarded_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let mut executor = SlurmExecutor::start(&config(), dir.path()).await.unwrap();
        let (events, mut inbox) = mpsc::unbounded_channel();
        assert!(executor.adopt(launch(3, dir.path()), Some("42"), &events));
        let token = std::fs::read_to_string(dir.path().join("coordinator.token")).unwrap();
        let base = executor.url().to_string();
        let post = move |path: &str, token: &str, body: serde_json::Value| {
            let url = format!("{base}{path}");
            let token = format!("Bearer {token}");
            tokio::task::spawn_blocking(move || match ureq::post(&url).set("Authorization", &token).send_json(body) {
                Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
                Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
                Err(e) => panic!("{e}"),
            })
        };
        let report = serde_json::json!({ "step": 5, "metrics": { "loss": 0.5, "bad": "NaN" } });
        assert_eq!(post("/jobs/3/report", "wrong", report.clone()).await.unwrap().0, 401);
        for _ in 0..2 {
            let answer = post("/jobs/3/report", &token, report.clone());
            match inbox.recv().await.unwrap() {
                WorkerEvent::Report { trial, step, metrics, reply, .. } => {
                    assert_eq!((trial, step, metrics["loss"]), (3, Some(5), 0.5));
                    assert!(metrics["bad"].is_nan());
                    reply.send(crate::protocol::Decision::Continue).unwrap();
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(answer.await.unwrap(), (200, r#"{"decision":"continue"}"#.to_string()));
        }
        let outcome = serde_json::to_value(Outcome { stderr_tail: "bye".into(), ..Outcome::default() }).unwrap();
        for _ in 0..2 {
            assert_eq!(post("/jobs/3/done", &token, outcome.clone()).await.unwrap().0, 204);
        }
        match inbox.recv().await.unwrap() {
            WorkerEvent::Done { trial: 3, outcome } => assert_eq!(outcome.stderr_tail, "bye"),
            other => panic!("{other:?}"),
        }
        assert!(inbox.try_recv().is_err(), "one Done only");
        let late = post("/jobs/3/report", &token, report).await.unwrap();
        assert_eq!(late, (200, r#"{"decision":"stop"}"#.to_string()));
        let heartbeat = post("/jobs/9/heartbeat", &token, serde_json::Value::Null).await.unwrap();
        assert_eq!(heartbeat.1, r#"{"decision":"stop"}"#);
    }

    /// A failure Slurm caused takes Slurm's account; one the worker caused keeps its own.
    #[test]
    fn slurm_says_why_a_job_it_ended_failed() {
        let state = |s: &str| commands::JobState { state: s.into(), reason: "None".into() };
        let own = |exit| Outcome { exit, ..Outcome::default() };
        let lost = Exit::JobLost("slurm job 7 ended TIMEOUT".into());
        let timed_out = by_slurm(own(Exit::Signal(libc::SIGTERM)), lost.clone(), Some(&state("TIMEOUT")));
        assert_eq!(timed_out.exit, Exit::JobLost("slurm job 7 ended TIMEOUT: its worker got SIGTERM".into()));
        let taken = Exit::JobPreempted("slurm job 7 ended PREEMPTED".into());
        assert_eq!(by_slurm(own(Exit::Code(1)), taken.clone(), Some(&state("PREEMPTED"))).exit, taken);
        assert_eq!(by_slurm(own(Exit::Code(2)), lost.clone(), Some(&state("FAILED"))).exit, Exit::Code(2));
        let near =
            Exit::JobPreempted("slurm job 7 neared its time limit and stopped after a checkpoint at step 4".into());
        assert_eq!(by_slurm(own(near.clone()), lost.clone(), Some(&state("TIMEOUT"))).exit, near);
        assert_eq!(by_slurm(own(Exit::Success), lost, Some(&state("CANCELLED"))).exit, Exit::Success);
    }

    #[test]
    fn tokens_persist_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.token");
        let first = load_or_create_token(&path).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(load_or_create_token(&path).unwrap(), first);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
