//! The coordinator: the one place that changes trial state. It asks the sampler, records each
//! trial RUNNING before its worker starts, stores reports, consults the pruner, stores results,
//! retries failures and resumes after a crash.
//!
//! Each turn of its loop handles every event that has arrived, plans new trials, then commits
//! all of the turn's writes in one transaction, and only then answers workers and starts new
//! ones. So nothing a worker is told and no worker that starts is ahead of the database.

mod control;
mod devices;
mod open;
mod outcome;
mod progress;

pub use outcome::StopCause;

use crate::executor::{Executor, Launch, WorkerEvent};
use crate::layout;
use crate::protocol::{Decision, Hello, VERSION};
use crate::pruner::{Pruner, Verdict};
use crate::sampler::{trial_rng, Proposal, Sampler};
use crate::store::{now_ms, Store, StoreError, StudyRecord, Write};
use crate::study::StudyConfig;
use crate::trial::{Finish, History, Metrics, NewTrial, Trial, TrialState, Update};
use devices::DevicePool;
use progress::Progress;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "study `{study}` already exists in this database with a different setup:\n  {}\n\
         Only [budget], [trial], [sampler], [pruner], [devices] and [executor] may change when resuming.\n\
         To start a new study instead, give it another `name` or use another --db.",
        changes.join("\n  ")
    )]
    Incompatible { study: String, changes: Vec<String> },
}

pub struct RunOptions {
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Cancelled on Ctrl-C / SIGTERM: stop workers and record them interrupted (or, with an
    /// executor whose workers outlive us, leave them running for the next run), and return.
    pub shutdown: CancellationToken,
    /// The database file, told to workers (`SWEEP_DB`) so a fine-tune can find another study's best
    /// checkpoint.
    pub db: PathBuf,
    /// A sampler to use instead of the one the study file names (benchmarks and tests).
    pub sampler: Option<Arc<dyn Sampler>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The budget of finished trials is reached.
    Complete,
    /// The study timeout passed before the budget was spent.
    TimedOut,
    /// Shut down on request; run again to resume.
    Interrupted,
}

#[derive(Debug)]
pub struct RunSummary {
    pub study: StudyRecord,
    pub resumed: bool,
    pub end: RunEnd,
    pub finished: usize,
    pub budget: u32,
    pub best: Option<Trial>,
    /// For a study with several objectives or constraints: the size of its Pareto set, and
    /// whether its members meet the constraints (see `crate::front`).
    pub pareto: Option<(usize, bool)>,
}

/// A trial whose worker is out there now.
struct Active {
    cancel: CancellationToken,
    device: Option<String>,
    stop: Option<StopCause>,
    last_report: Option<Metrics>,
    last_step: Option<i64>,
}

struct Coordinator<'a> {
    config: &'a StudyConfig,
    store: &'a mut Store,
    executor: &'a mut dyn Executor,
    sampler: Arc<dyn Sampler>,
    /// The trial number and device of the proposal being computed on the sampler's thread.
    proposing: Option<(u64, Option<String>)>,
    proposals: mpsc::UnboundedSender<(u64, Proposal)>,
    pruner: Box<dyn Pruner>,
    study: StudyRecord,
    history: History,
    active: HashMap<u64, Active>,
    devices: DevicePool,
    events: mpsc::UnboundedSender<WorkerEvent>,
    progress: Progress,
    accepting: bool,
    /// Paused from the web page: no new trials start (kept on the study row across restarts).
    paused: bool,
    db: PathBuf,
    /// Threads each CPU trial may use (`SWEEP_CPU_THREADS`): the cores shared by `parallel`.
    /// Counted once, as reading the cgroup quota costs more than the rest of a launch.
    cpu_threads: usize,
    /// This turn's writes, replies and launches, released together by `commit`.
    writes: Vec<Write>,
    replies: Vec<(oneshot::Sender<Decision>, Decision)>,
    launches: Vec<Launch>,
    /// Checkpoint folders of configurations that ended this turn, removed after the commit.
    spent_checkpoints: Vec<PathBuf>,
}

/// Runs (or resumes) a study until its budget is spent, its timeout passes, or shutdown.
pub async fn run(
    config: &StudyConfig,
    store: &mut Store,
    executor: &mut dyn Executor,
    options: RunOptions,
) -> Result<RunSummary, CoordinatorError> {
    let (study, resumed) = open::open_study(store, config).await?;
    store.set_study_state(study.id, crate::store::StudyState::Running).await?;
    let runs = layout::runs_dir(&config.trial.workdir);
    store.set_runs_dir(study.id, &std::path::absolute(&runs).unwrap_or(runs)).await?;
    let trials = store.trials(study.id, &config.goals.objective_metrics()).await?;
    let (events, mut inbox) = mpsc::unbounded_channel();
    let (proposals, mut proposed) = mpsc::unbounded_channel();
    let paused = study.paused;
    let mut c = Coordinator {
        config,
        sampler: options.sampler.clone().unwrap_or_else(|| crate::sampler::from_config(&config.sampler).into()),
        proposing: None,
        proposals,
        pruner: crate::pruner::from_config(&config.pruner),
        history: History::with_goals(config.goals.clone(), trials),
        active: HashMap::new(),
        devices: DevicePool::new(&config.devices),
        progress: Progress::new(config.budget.trials, options.progress),
        study,
        store,
        executor,
        events,
        accepting: true,
        paused,
        db: std::path::absolute(&options.db).unwrap_or(options.db.clone()),
        cpu_threads: cpu_threads(config.budget.parallel),
        writes: Vec::new(),
        replies: Vec::new(),
        launches: Vec::new(),
        spent_checkpoints: Vec::new(),
    };
    c.adopt_leftovers();
    let deadline = config.budget.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut end = RunEnd::Complete;
    // Commands sent while no coordinator ran apply before anything is planned.
    c.apply_commands().await?;
    let mut commands = tokio::time::interval_at(tokio::time::Instant::now() + COMMAND_POLL, COMMAND_POLL);
    commands.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if c.accepting && !c.paused {
            c.plan();
        }
        c.commit().await?;
        c.show();
        if c.active.is_empty() && (!c.accepting || c.history.counted() >= c.config.budget.trials as usize) {
            break;
        }
        tokio::select! {
            event = inbox.recv() => {
                c.handle(event.expect("the coordinator holds a sender"));
                while let Ok(event) = inbox.try_recv() {
                    c.handle(event);
                }
            },
            _ = options.shutdown.cancelled(), if end != RunEnd::Interrupted => {
                end = RunEnd::Interrupted;
                if c.executor.detaches() {
                    c.detach_all();
                } else {
                    c.stop_all(StopCause::Shutdown);
                }
            },
            Some((number, proposal)) = proposed.recv() => c.land(number, proposal),
            _ = commands.tick() => c.apply_commands().await?,
            _ = sleep_until(deadline), if c.accepting => {
                end = RunEnd::TimedOut;
                c.accepting = false;
                c.progress.println("study timeout reached: no new trials start; running ones finish");
            },
        }
    }
    c.progress.finish();
    let finished = c.history.counted();
    if end == RunEnd::Complete && finished >= c.config.budget.trials as usize {
        c.store.set_study_state(c.study.id, crate::store::StudyState::Complete).await?;
        c.drop_unpromoted_checkpoints();
    }
    Ok(RunSummary {
        study: c.study,
        resumed,
        end,
        finished,
        budget: config.budget.trials,
        best: c.history.best().cloned(),
        pareto: (!config.goals.is_plain()).then(|| {
            let front = crate::front::front(&config.goals, &c.history.trials);
            (front.trials.len(), front.feasible)
        }),
    })
}

/// How often the web page's commands are looked for: they take effect well within a second.
const COMMAND_POLL: std::time::Duration = std::time::Duration::from_millis(200);

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Coordinator<'_> {
    /// Trials left RUNNING by an earlier coordinator: adopted again where their worker may
    /// still run (a cluster job), otherwise interrupted and re-queued.
    fn adopt_leftovers(&mut self) {
        let leftovers: Vec<Trial> = self.history.running().cloned().collect();
        for trial in leftovers {
            let (number, job, last_step) = (trial.number, trial.job.clone(), trial.last_step);
            let launch = self.launch_for(trial, None);
            let cancel = launch.cancel.clone();
            if self.executor.adopt(launch, job.as_deref(), &self.events) {
                let active = Active { cancel, device: None, stop: None, last_report: None, last_step };
                self.active.insert(number, active);
                continue;
            }
            let end = Finish {
                reason: Some("interrupted: the coordinator stopped while it ran".into()),
                ..Finish::default()
            };
            self.finish(number, TrialState::Interrupted, end);
        }
    }

    /// Whether a slot is free and budget is left for one more trial.
    fn room(&self) -> bool {
        let capacity = self.devices.capacity(self.config.budget.parallel) as usize;
        self.active.len() < capacity && self.history.counted() + self.active.len() < self.config.budget.trials as usize
    }

    /// Plans trials for the free slots while budget is left: queued ones first, then the
    /// sampler's proposals. They start once `commit` has recorded them RUNNING.
    ///
    /// A sampler that `runs_long` (a GP fit) proposes on a thread of its own, one trial at a
    /// time, so this loop goes on reading and answering reports, commands and the page's
    /// requests meanwhile; `land` starts the trial when its params arrive. Each proposal sees
    /// the one before it as a running trial, as when proposals were made here.
    fn plan(&mut self) {
        self.promote();
        while self.proposing.is_none() && self.room() {
            let Some(device) = self.devices.acquire() else { break };
            let waiting = self.history.trials.iter().find(|t| t.state == TrialState::Waiting).map(|t| t.number);
            if let Some(number) = waiting {
                self.record(Update::Start { number, device: device.clone() });
                self.start(number, device);
                continue;
            }
            let number = self.next_number();
            let mut rng = self.proposal_rng(number);
            if !self.sampler.runs_long() {
                let proposal = self.sampler.propose(&self.config.space, &self.history, &mut rng);
                self.insert_proposed(number, device, proposal);
                continue;
            }
            self.proposing = Some((number, device));
            let (sampler, space, history) = (self.sampler.clone(), self.config.space.clone(), self.history.clone());
            let proposals = self.proposals.clone();
            let spawned = std::thread::Builder::new().name("sweep-sampler".into()).spawn(move || {
                let proposal = propose_guarded(sampler.as_ref(), &space, &history, &mut rng);
                let _ = proposals.send((number, proposal));
            });
            if let Err(e) = spawned {
                // No thread to be had: propose here rather than not at all.
                tracing::warn!("cannot start the sampler's thread ({e}); proposing on the coordinator's");
                let (number, device) = self.proposing.take().expect("just set");
                let mut rng = self.proposal_rng(number);
                let proposal = self.sampler.propose(&self.config.space, &self.history, &mut rng);
                self.insert_proposed(number, device, proposal);
            }
        }
    }

    /// A proposal computed on the sampler's thread arrives: its trial starts if there is still
    /// room for it (not paused, not shutting down, budget left); otherwise it is dropped, and
    /// its number is proposed afresh when a slot frees.
    fn land(&mut self, number: u64, proposal: Proposal) {
        let Some((expected, device)) = self.proposing.take() else { return };
        debug_assert_eq!(expected, number, "one proposal at a time");
        if self.accepting && !self.paused && self.room() {
            self.insert_proposed(number, device, proposal);
        } else {
            self.devices.release(device.as_deref());
        }
    }

    /// The generator of the proposal for new trial `number`: seeded by how many configurations
    /// came before it, so a study tries the same ones however often it was interrupted.
    fn proposal_rng(&self, number: u64) -> rand::rngs::StdRng {
        trial_rng(self.config.seed, self.history.first_attempts_before(number))
    }

    /// The next trial number, past the one being proposed (a retry inserted meanwhile must not
    /// take it).
    fn next_number(&self) -> u64 {
        let next = self.history.next_number();
        self.proposing.as_ref().map_or(next, |(n, _)| next.max(n + 1))
    }

    /// Records a sampler's new trial RUNNING on `device` and starts it.
    fn insert_proposed(&mut self, number: u64, device: Option<String>, proposal: Proposal) {
        self.record(Update::Insert(NewTrial::running(number, proposal.params, device.clone(), proposal.state)));
        self.start(number, device);
    }

    /// Makes a change to a trial in memory now and on disk at this turn's commit: the one
    /// path by which trial state changes.
    fn record(&mut self, update: Update) {
        self.history.apply(&update, now_ms());
        self.writes.push(Write::Trial(update));
    }

    /// Queues the launch of a trial recorded RUNNING on `device`, for after the commit.
    fn start(&mut self, number: u64, device: Option<String>) {
        let trial = self.history.get(number).expect("trial in history").clone();
        if let (Some(at), Some(of)) = (trial.resumed_from, trial.rerun_of) {
            self.progress.println(format!("trial {number} resumes trial {of} from its checkpoint at step {at}"));
        }
        let last_step = trial.resumed_from;
        let launch = self.launch_for(trial, device.clone());
        let active = Active { cancel: launch.cancel.clone(), device, stop: None, last_report: None, last_step };
        self.active.insert(number, active);
        self.launches.push(launch);
    }

    /// Commits this turn's writes in one transaction, then answers workers and starts trials.
    async fn commit(&mut self) -> Result<(), CoordinatorError> {
        self.store.apply(self.study.id, &self.writes).await?;
        self.writes.clear();
        for (reply, decision) in self.replies.drain(..) {
            let _ = reply.send(decision);
        }
        for launch in self.launches.drain(..) {
            self.executor.launch(launch, &self.events);
        }
        for dir in self.spent_checkpoints.drain(..) {
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!("cannot remove the finished trial's checkpoints {}: {e}", dir.display());
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Where trial `number`'s checkpoints live (its first attempt's folder).
    fn checkpoint_dir(&self, number: u64) -> PathBuf {
        let runs = layout::runs_dir(&self.config.trial.workdir);
        layout::checkpoint_dir(&runs, &self.config.name, self.history.first_attempt(number))
    }

    fn launch_for(&self, trial: Trial, device: Option<String>) -> Launch {
        let spec = &self.config.trial;
        let argv = spec.argv.iter().filter_map(|a| a.render(&trial.params, trial.number)).collect();
        let mut env: BTreeMap<String, String> = spec.env.clone();
        use crate::protocol::env as var;
        env.insert(var::STUDY.into(), self.config.name.clone());
        env.insert(var::TRIAL_ID.into(), trial.number.to_string());
        env.insert(var::ATTEMPT.into(), trial.attempt.to_string());
        env.insert(var::PARAMS.into(), serde_json::Value::Object(trial.params.clone()).to_string());
        env.insert(var::DB.into(), self.db.display().to_string());
        let runs = layout::runs_dir(&spec.workdir);
        env.insert(
            var::TRIAL_DIR.into(),
            layout::trial_dir(&runs, &self.config.name, trial.number).display().to_string(),
        );
        env.insert(var::RUNS_DIR.into(), runs.display().to_string());
        env.insert(var::CPU_THREADS.into(), self.cpu_threads.to_string());
        let checkpoints = self.checkpoint_dir(trial.number).display().to_string();
        env.insert(var::CHECKPOINT_DIR.into(), checkpoints.clone());
        if let Some(step) = trial.resumed_from {
            env.insert(var::RESUME_STEP.into(), step.to_string());
        }
        Launch {
            trial: trial.number,
            hello: Hello {
                protocol: VERSION,
                study: self.config.name.clone(),
                trial: trial.number,
                attempt: trial.attempt,
                params: trial.params,
                checkpoint_dir: Some(checkpoints),
                resume_step: trial.resumed_from,
            },
            argv,
            workdir: spec.workdir.clone(),
            env,
            device,
            timeout: self.config.budget.trial_timeout,
            grace: spec.grace,
            cancel: CancellationToken::new(),
        }
    }

    fn handle(&mut self, event: WorkerEvent) {
        match event {
            WorkerEvent::Report { trial, step, metrics, checkpoint, reply } => {
                let decision = self.report(trial, step, metrics, checkpoint);
                self.replies.push((reply, decision));
            }
            WorkerEvent::Submitted { trial, job } => {
                if self.history.get(trial).is_some() {
                    self.record(Update::Job { number: trial, job });
                }
            }
            WorkerEvent::Done { trial, outcome } => {
                let Some(active) = self.active.remove(&trial) else { return };
                self.devices.release(active.device.as_deref());
                let (state, end) = outcome::classify(
                    &outcome,
                    active.last_report.as_ref(),
                    active.last_step,
                    active.stop.as_ref(),
                    &self.config.goals,
                );
                self.finish(trial, state, end);
            }
        }
    }

    /// Records a report and asks the pruner whether the trial goes on. A report with no metrics
    /// (a checkpoint alone, as a worker told to stop sends) adds nothing to judge.
    fn report(&mut self, number: u64, step: Option<i64>, metrics: Metrics, checkpoint: bool) -> Decision {
        let Some(active) = self.active.get_mut(&number) else { return Decision::Stop };
        let step = step.unwrap_or_else(|| active.last_step.map_or(0, |s| s + 1));
        active.last_step = Some(step);
        let empty = metrics.is_empty();
        if !empty {
            active.last_report = Some(metrics.clone());
        }
        let stopping = active.stop.is_some();
        self.record(Update::Report { number, step, metrics, checkpoint });
        if stopping {
            return Decision::Stop;
        }
        if empty {
            return Decision::Continue;
        }
        let trial = self.history.get(number).expect("active trial in history");
        let cause = match self.pruner.decide(trial, &self.history) {
            Verdict::Continue => return Decision::Continue,
            Verdict::Stop(reason) => StopCause::Pruned(reason),
            Verdict::Pause(reason) => StopCause::Paused(reason),
        };
        let active = self.active.get_mut(&number).expect("active");
        active.stop = Some(cause);
        active.cancel.cancel();
        Decision::Stop
    }

    /// Records a trial's end and, in the same batch, the trial that takes its slot: a retry
    /// after a failure with attempts left, or a re-run of an interrupted trial.
    fn finish(&mut self, number: u64, state: TrialState, end: Finish) {
        let trial = self.history.get(number).expect("finished trial in history");
        let retry = state == TrialState::Failed && trial.attempt <= self.config.budget.retries;
        let rerun =
            (retry || state == TrialState::Interrupted).then(|| NewTrial::rerun(self.next_number(), trial, retry));
        if state == TrialState::Failed {
            let then = rerun.as_ref().map(|r| format!("; retrying as trial {}", r.number)).unwrap_or_default();
            let reason = end.reason.as_deref().unwrap_or("failed");
            self.progress.println(format!("trial {number} failed: {reason}{then}"));
        }
        let paused = end.paused;
        self.record(Update::Finish { number, state, end });
        match rerun {
            Some(r) => self.record(Update::Insert(r)),
            // The configuration is done: its intermediate checkpoints go once that is durable.
            // A paused one may be resumed from its checkpoint: that stays until the study ends.
            None if !self.config.trial.keep_checkpoints && !paused => {
                self.spent_checkpoints.push(self.checkpoint_dir(number));
            }
            None => {}
        }
    }

    /// Paused trials that rank high enough now go on, from their checkpoints, before anything
    /// new starts: each gets a waiting re-run (which takes its place in the budget) while a
    /// slot is free for it.
    fn promote(&mut self) {
        let capacity = self.devices.capacity(self.config.budget.parallel) as usize;
        let free = capacity.saturating_sub(self.active.len() + self.history.count(TrialState::Waiting));
        if free == 0 {
            return; // asking costs a ranking per paused trial: only when a slot could take one
        }
        for number in self.pruner.promotable(&self.history).into_iter().take(free) {
            let trial = self.history.get(number).expect("promotable trial in history");
            let rerun = NewTrial::rerun(self.next_number(), trial, false);
            let at = trial.checkpoint_step.map_or("the start (it has no checkpoint)".into(), |s| format!("step {s}"));
            self.progress.println(format!("trial {number} is promoted: trial {} resumes it from {at}", rerun.number));
            self.record(Update::Insert(rerun));
        }
    }

    /// At the end of a study, paused trials that were never promoted stay pruned: their
    /// checkpoints go.
    fn drop_unpromoted_checkpoints(&mut self) {
        if self.config.trial.keep_checkpoints {
            return;
        }
        let unpromoted: Vec<u64> = self
            .history
            .trials
            .iter()
            .filter(|t| t.paused && !self.history.retried.contains(&t.number))
            .map(|t| t.number)
            .collect();
        for number in unpromoted {
            let _ = std::fs::remove_dir_all(self.checkpoint_dir(number));
        }
    }

    fn stop_all(&mut self, cause: StopCause) {
        self.accepting = false;
        for active in self.active.values_mut() {
            active.stop.get_or_insert(cause.clone());
            active.cancel.cancel();
        }
    }

    /// Shutdown with workers that outlive us: leave them RUNNING for the next run to adopt.
    fn detach_all(&mut self) {
        self.accepting = false;
        if !self.active.is_empty() {
            let n = self.active.len();
            self.progress.println(format!("{n} trial(s) keep running as cluster jobs; run again to adopt them"));
        }
        let active: Vec<(u64, Active)> = self.active.drain().collect();
        for (number, active) in active {
            self.devices.release(active.device.as_deref());
            // A trial already told to stop is not adopted to run on: it ends now, as it would.
            if let Some(cause) = &active.stop {
                let stopped = crate::executor::Outcome { exit: crate::executor::Exit::Stopped, ..Default::default() };
                let (state, end) = outcome::classify(
                    &stopped,
                    active.last_report.as_ref(),
                    active.last_step,
                    Some(cause),
                    &self.config.goals,
                );
                self.finish(number, state, end);
            }
        }
    }

    fn show(&self) {
        let best = self.history.best().and_then(|t| t.value);
        self.progress.update(self.history.counted(), self.active.len(), best);
    }
}

/// Proposes on the sampler's thread; a sampler that panics costs its trial a random proposal,
/// with the panic's message in the sampler state (shown with the trial), not the coordinator.
fn propose_guarded(
    sampler: &dyn Sampler,
    space: &crate::space::Space,
    history: &History,
    rng: &mut rand::rngs::StdRng,
) -> Proposal {
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sampler.propose(space, history, rng)));
    attempt.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        crate::sampler::fallback(space, rng, format!("the sampler panicked: {why}"))
    })
}

/// Parallel CPU trials share the cores instead of each starting one thread per core.
fn cpu_threads(parallel: u32) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / parallel.max(1) as usize).max(1)
}
