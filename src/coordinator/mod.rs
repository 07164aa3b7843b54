//! The coordinator: the one place that changes trial state. It asks the sampler, records each
//! trial RUNNING before its worker starts, stores reports, consults the pruner, stores results,
//! retries failures and resumes after a crash.

mod devices;
mod open;
mod outcome;
mod progress;

pub use open::fingerprint;
pub use outcome::StopCause;

use crate::executor::{Executor, Launch, WorkerEvent};
use crate::protocol::{Decision, Hello, VERSION};
use crate::pruner::{Pruner, Verdict};
use crate::sampler::{trial_rng, Sampler};
use crate::store::{now_ms, Finish, NewTrial, Store, StoreError, StudyRecord};
use crate::study::StudyConfig;
use crate::trial::{History, Metrics, Trial, TrialState};
use devices::DevicePool;
use progress::Progress;
use std::collections::{BTreeMap, HashMap};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "study `{study}` already exists in this database with a different setup:\n  {}\n\
         Only [budget], [trial], [sampler], [pruner] and [devices] may change when resuming.\n\
         To start a new study instead, give it another `name` or use another --db.",
        changes.join("\n  ")
    )]
    Incompatible { study: String, changes: Vec<String> },
}

pub struct RunOptions {
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Cancelled on Ctrl-C / SIGTERM: stop workers, record them interrupted, return.
    pub shutdown: CancellationToken,
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
    sampler: Box<dyn Sampler>,
    pruner: Box<dyn Pruner>,
    study: StudyRecord,
    history: History,
    active: HashMap<i64, Active>,
    devices: DevicePool,
    events: mpsc::UnboundedSender<WorkerEvent>,
    progress: Progress,
    accepting: bool,
}

/// Runs (or resumes) a study until its budget is spent, its timeout passes, or shutdown.
pub async fn run(
    config: &StudyConfig,
    store: &mut Store,
    executor: &mut dyn Executor,
    options: RunOptions,
) -> Result<RunSummary, CoordinatorError> {
    let (study, resumed) = open::open_study(store, config).await?;
    store.set_study_state(study.id, "running").await?;
    let trials = store.trials(study.id, &config.objective.metric).await?;
    let (events, mut inbox) = mpsc::unbounded_channel();
    let mut c = Coordinator {
        config,
        sampler: crate::sampler::from_config(&config.sampler),
        pruner: crate::pruner::from_config(config.pruner),
        history: History::new(config.objective.clone(), trials),
        active: HashMap::new(),
        devices: DevicePool::new(&config.devices),
        progress: Progress::new(config.budget.trials, options.progress),
        study,
        store,
        executor,
        events,
        accepting: true,
    };
    c.interrupt_leftovers().await?;
    let deadline = config.budget.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut end = RunEnd::Complete;
    loop {
        if c.accepting {
            c.dispatch().await?;
        }
        c.show();
        if c.active.is_empty() && (!c.accepting || c.history.counted() >= c.config.budget.trials as usize) {
            break;
        }
        tokio::select! {
            event = inbox.recv() => match event {
                Some(event) => c.handle(event).await?,
                None => unreachable!("the coordinator holds a sender"),
            },
            _ = options.shutdown.cancelled(), if end != RunEnd::Interrupted => {
                end = RunEnd::Interrupted;
                c.stop_all(StopCause::Shutdown);
            },
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
        c.store.set_study_state(c.study.id, "complete").await?;
    }
    Ok(RunSummary {
        study: c.study,
        resumed,
        end,
        finished,
        budget: config.budget.trials,
        best: c.history.best().cloned(),
    })
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Coordinator<'_> {
    /// Trials left RUNNING by a coordinator that died: interrupted, and re-queued.
    async fn interrupt_leftovers(&mut self) -> Result<(), CoordinatorError> {
        let leftovers: Vec<i64> = self.history.running().map(|t| t.id).collect();
        for id in leftovers {
            let end = Finish {
                reason: Some("interrupted: the coordinator stopped while it ran".into()),
                ..Finish::default()
            };
            self.finish(id, TrialState::Interrupted, end).await?;
        }
        Ok(())
    }

    /// Starts trials while there are free slots and budget left: queued ones first.
    async fn dispatch(&mut self) -> Result<(), CoordinatorError> {
        let capacity = self.devices.capacity(self.config.budget.parallel) as usize;
        while self.active.len() < capacity
            && self.history.counted() + self.active.len() < self.config.budget.trials as usize
        {
            let Some(device) = self.devices.acquire() else {
                break;
            };
            let waiting = self.history.trials.iter().find(|t| t.state == TrialState::Waiting).map(|t| t.id);
            let id = match waiting {
                Some(id) => {
                    self.store.mark_running(id, device.as_deref()).await?;
                    id
                }
                None => {
                    let number = self.history.next_number();
                    let params = self.sampler.propose(
                        &self.config.space,
                        &self.history,
                        &mut trial_rng(self.config.seed, number),
                    );
                    let new = NewTrial {
                        number,
                        state: TrialState::Running,
                        params,
                        attempt: 1,
                        rerun_of: None,
                        device: device.clone(),
                    };
                    let id = self.store.insert_trial(self.study.id, &new).await?;
                    self.history.trials.push(new_trial(id, &new));
                    id
                }
            };
            let trial = self.history.by_id_mut(id).expect("trial in history");
            trial.state = TrialState::Running;
            trial.device = device.clone();
            trial.started_at = Some(now_ms());
            let trial = trial.clone();
            let launch = self.launch_for(trial, device.clone());
            self.active.insert(
                id,
                Active { cancel: launch.cancel.clone(), device, stop: None, last_report: None, last_step: None },
            );
            self.executor.launch(launch, &self.events);
        }
        Ok(())
    }

    fn launch_for(&self, trial: Trial, device: Option<String>) -> Launch {
        let spec = &self.config.trial;
        let argv = spec.argv.iter().filter_map(|a| a.render(&trial.params, trial.number)).collect();
        let mut env: BTreeMap<String, String> = spec.env.clone();
        env.insert("SWEEP_STUDY".into(), self.config.name.clone());
        env.insert("SWEEP_TRIAL_ID".into(), trial.number.to_string());
        env.insert("SWEEP_ATTEMPT".into(), trial.attempt.to_string());
        env.insert("SWEEP_PARAMS".into(), serde_json::Value::Object(trial.params.clone()).to_string());
        Launch {
            trial_id: trial.id,
            hello: Hello {
                protocol: VERSION,
                study: self.config.name.clone(),
                trial: trial.number,
                attempt: trial.attempt,
                params: trial.params,
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

    async fn handle(&mut self, event: WorkerEvent) -> Result<(), CoordinatorError> {
        match event {
            WorkerEvent::Report { trial_id, step, metrics, reply } => {
                let decision = self.report(trial_id, step, metrics).await?;
                let _ = reply.send(decision);
            }
            WorkerEvent::Done { trial_id, outcome } => {
                let Some(active) = self.active.remove(&trial_id) else {
                    return Ok(());
                };
                self.devices.release(active.device.as_deref());
                let (state, end) = outcome::classify(
                    &outcome,
                    active.last_report.as_ref(),
                    active.last_step,
                    active.stop.as_ref(),
                    &self.config.objective,
                );
                self.finish(trial_id, state, end).await?;
            }
        }
        Ok(())
    }

    /// Stores a report and asks the pruner whether the trial goes on.
    async fn report(
        &mut self,
        trial_id: i64,
        step: Option<i64>,
        metrics: Metrics,
    ) -> Result<Decision, CoordinatorError> {
        let Some(active) = self.active.get_mut(&trial_id) else {
            return Ok(Decision::Stop);
        };
        let step = step.unwrap_or_else(|| active.last_step.map_or(0, |s| s + 1));
        self.store.add_report(trial_id, step, &metrics).await?;
        active.last_step = Some(step);
        let objective = metrics.get(&self.config.objective.metric).copied();
        active.last_report = Some(metrics);
        if active.stop.is_some() {
            return Ok(Decision::Stop);
        }
        let trial = self.history.by_id_mut(trial_id).expect("active trial in history");
        trial.last_step = Some(step);
        if let Some(v) = objective {
            trial.curve.retain(|(s, _)| *s != step);
            trial.curve.push((step, v));
        }
        let trial = trial.clone();
        match self.pruner.decide(&trial, &self.history) {
            Verdict::Continue => Ok(Decision::Continue),
            Verdict::Stop(reason) => {
                let active = self.active.get_mut(&trial_id).expect("active");
                active.stop = Some(StopCause::Pruned(reason));
                active.cancel.cancel();
                Ok(Decision::Stop)
            }
        }
    }

    /// Records a trial's end and, in the same transaction, the trial that takes its slot: a
    /// retry after a failure with attempts left, or a re-run of an interrupted trial.
    async fn finish(&mut self, trial_id: i64, state: TrialState, end: Finish) -> Result<(), CoordinatorError> {
        let trial = self.history.by_id_mut(trial_id).expect("finished trial in history").clone();
        let retry = state == TrialState::Failed && trial.attempt <= self.config.budget.retries;
        let rerun = (retry || state == TrialState::Interrupted).then(|| NewTrial {
            number: self.history.next_number(),
            state: TrialState::Waiting,
            params: trial.params.clone(),
            attempt: trial.attempt + u32::from(retry),
            rerun_of: Some(trial.number),
            device: None,
        });
        let new_id = self.store.finish(self.study.id, trial_id, state, &end, rerun.as_ref()).await?;
        if state == TrialState::Failed {
            let then = match &rerun {
                Some(r) => format!("; retrying as trial {}", r.number),
                None => String::new(),
            };
            let reason = end.reason.as_deref().unwrap_or("failed");
            self.progress.println(format!("trial {} failed: {reason}{then}", trial.number));
        }
        let t = self.history.by_id_mut(trial_id).expect("trial in history");
        t.state = state;
        t.value = end.value;
        t.metrics = end.metrics;
        t.last_step = end.last_step;
        t.reason = end.reason;
        t.stderr_tail = end.stderr_tail;
        t.finished_at = Some(now_ms());
        if let (Some(id), Some(r)) = (new_id, rerun) {
            self.history.retried.insert(trial.number);
            self.history.trials.push(new_trial(id, &r));
        }
        Ok(())
    }

    fn stop_all(&mut self, cause: StopCause) {
        self.accepting = false;
        for active in self.active.values_mut() {
            active.stop.get_or_insert(cause.clone());
            active.cancel.cancel();
        }
    }

    fn show(&self) {
        let best = self.history.best().and_then(|t| t.value);
        self.progress.update(self.history.counted(), self.active.len(), best);
    }
}

fn new_trial(id: i64, t: &NewTrial) -> Trial {
    Trial {
        id,
        number: t.number,
        state: t.state,
        params: t.params.clone(),
        attempt: t.attempt,
        rerun_of: t.rerun_of,
        device: t.device.clone(),
        value: None,
        metrics: None,
        curve: Vec::new(),
        last_step: None,
        reason: None,
        stderr_tail: None,
        started_at: (t.state == TrialState::Running).then(now_ms),
        finished_at: None,
    }
}
