//! Trial states, the snapshot of one trial, the history samplers and pruners read, and the
//! one type by which a trial changes (`Update`): the coordinator makes each update, `History`
//! applies it in memory and the store writes it, so memory and disk cannot disagree.

use crate::objective::{Goals, Objective};
use crate::space::Params;
use serde::Serialize;
use std::collections::BTreeMap;

/// Metric name to value, as a worker reports them.
pub type Metrics = BTreeMap<String, f64>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialState {
    /// Queued with its params (enqueued, a retry, or a re-run of an interrupted trial).
    Waiting,
    Running,
    Complete,
    Pruned,
    Failed,
    /// Was running when the coordinator stopped; a waiting copy took its slot.
    Interrupted,
}

impl TrialState {
    pub const ALL: [TrialState; 6] = [
        TrialState::Waiting,
        TrialState::Running,
        TrialState::Complete,
        TrialState::Pruned,
        TrialState::Failed,
        TrialState::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Waiting => "waiting",
            TrialState::Running => "running",
            TrialState::Complete => "complete",
            TrialState::Pruned => "pruned",
            TrialState::Failed => "failed",
            TrialState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<TrialState> {
        TrialState::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A snapshot of one trial.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// Number within the study, unique, in order of creation.
    pub number: u64,
    pub state: TrialState,
    pub params: Params,
    /// 1 for the first attempt at a configuration, +1 for each retry after failure.
    pub attempt: u32,
    /// The trial this one re-runs (a retry or an interrupted trial's replacement).
    pub rerun_of: Option<u64>,
    pub device: Option<String>,
    /// The cluster job running it (a Slurm job id), if any.
    pub job: Option<String>,
    /// The objective's final value.
    pub value: Option<f64>,
    pub metrics: Option<Metrics>,
    /// The first objective's metric per reported step, in step order.
    pub curve: Vec<(i64, f64)>,
    /// The same for each further objective, in the study's order (empty with one objective);
    /// it ends at the last objective reported so far.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_curves: Vec<Vec<(i64, f64)>>,
    pub last_step: Option<i64>,
    pub reason: Option<String>,
    pub stderr_tail: Option<String>,
    /// Unix milliseconds.
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The last step whose checkpoint the worker declared durable (or, for a re-run that has
    /// not checkpointed yet, the one it inherited): where the next attempt resumes.
    pub checkpoint_step: Option<i64>,
    /// The step this attempt resumed from; its curve up to there is its predecessor's.
    pub resumed_from: Option<i64>,
    /// Pruned by a pausing rule: it may still be promoted and resumed by a re-run.
    pub paused: bool,
    /// What the sampler learned when it proposed this trial (e.g. fitted kernel parameters).
    #[serde(skip)]
    pub sampler_state: Option<serde_json::Value>,
}

/// A trial to record: queued with its params, or a proposal already running on a device.
#[derive(Debug, Clone)]
pub struct NewTrial {
    pub number: u64,
    pub state: TrialState,
    pub params: Params,
    pub attempt: u32,
    pub rerun_of: Option<u64>,
    pub device: Option<String>,
    /// What the sampler learned when it proposed this trial.
    pub sampler_state: Option<serde_json::Value>,
    /// A re-run that resumes from this step of the trial it replaces (its checkpoint).
    pub resumed_from: Option<i64>,
}

impl NewTrial {
    /// A first attempt queued with its params (enqueued by the user or the study file).
    pub fn waiting(number: u64, params: Params) -> NewTrial {
        NewTrial {
            number,
            state: TrialState::Waiting,
            params,
            attempt: 1,
            rerun_of: None,
            device: None,
            sampler_state: None,
            resumed_from: None,
        }
    }

    /// A sampler's proposal, running on `device` from now.
    pub fn running(
        number: u64,
        params: Params,
        device: Option<String>,
        sampler_state: Option<serde_json::Value>,
    ) -> NewTrial {
        NewTrial { state: TrialState::Running, device, sampler_state, ..NewTrial::waiting(number, params) }
    }

    /// The queued trial that takes `of`'s place: a retry after a failure (its next attempt),
    /// or a re-run of an interrupted trial (the same attempt). It resumes from `of`'s last
    /// durable checkpoint, if any.
    pub fn rerun(number: u64, of: &Trial, retry: bool) -> NewTrial {
        NewTrial {
            attempt: of.attempt + u32::from(retry),
            rerun_of: Some(of.number),
            resumed_from: of.checkpoint_step,
            ..NewTrial::waiting(number, of.params.clone())
        }
    }
}

/// The end of a trial.
#[derive(Debug, Clone, Default)]
pub struct Finish {
    pub value: Option<f64>,
    pub metrics: Option<Metrics>,
    pub last_step: Option<i64>,
    pub reason: Option<String>,
    pub stderr_tail: Option<String>,
    /// A pruned trial that paused instead of stopping (its checkpoint is kept).
    pub paused: bool,
}

/// One change of one trial, addressed by its number within the study.
#[derive(Debug, Clone)]
pub enum Update {
    /// A new trial, waiting or already running.
    Insert(NewTrial),
    /// A waiting trial starts on `device`.
    Start { number: u64, device: Option<String> },
    /// The trial's worker runs as cluster job `job`.
    Job { number: u64, job: String },
    /// An intermediate report; a repeated (trial, step, metric) replaces the earlier value.
    /// `checkpoint`: the worker made a checkpoint of this step durable before reporting it,
    /// so the step becomes the trial's resume point in the same commit.
    Report { number: u64, step: i64, metrics: Metrics, checkpoint: bool },
    /// The trial ends in `state`.
    Finish { number: u64, state: TrialState, end: Finish },
}

impl Update {
    /// The trial it changes.
    pub fn number(&self) -> u64 {
        match self {
            Update::Insert(t) => t.number,
            Update::Start { number, .. }
            | Update::Job { number, .. }
            | Update::Report { number, .. }
            | Update::Finish { number, .. } => *number,
        }
    }
}

impl Trial {
    /// A trial with nothing recorded yet but its number, state and params (first attempt).
    pub fn new(number: u64, state: TrialState, params: Params) -> Trial {
        Trial {
            number,
            state,
            params,
            attempt: 1,
            rerun_of: None,
            device: None,
            job: None,
            value: None,
            metrics: None,
            curve: Vec::new(),
            other_curves: Vec::new(),
            last_step: None,
            reason: None,
            stderr_tail: None,
            started_at: None,
            finished_at: None,
            checkpoint_step: None,
            resumed_from: None,
            paused: false,
            sampler_state: None,
        }
    }

    /// Objective `i`'s curve (0: the first), empty where nothing was reported.
    pub fn curve_of(&self, i: usize) -> &[(i64, f64)] {
        match i {
            0 => &self.curve,
            _ => self.other_curves.get(i - 1).map_or(&[], Vec::as_slice),
        }
    }

    fn curve_mut(&mut self, i: usize) -> &mut Vec<(i64, f64)> {
        if i == 0 {
            return &mut self.curve;
        }
        if self.other_curves.len() < i {
            self.other_curves.resize(i, Vec::new());
        }
        &mut self.other_curves[i - 1]
    }
}

/// Every trial of a study as the coordinator knows it, in number order.
#[derive(Debug, Clone)]
pub struct History {
    /// What the study optimizes; single-objective parts follow `objective()`, its first.
    pub goals: Goals,
    pub trials: Vec<Trial>,
    /// Trials whose failure was followed by a retry; they do not count toward the budget.
    pub retried: std::collections::BTreeSet<u64>,
}

impl History {
    /// The history of a study with one objective and no constraints.
    pub fn new(objective: Objective, trials: Vec<Trial>) -> History {
        History::with_goals(Goals::single(objective), trials)
    }

    pub fn with_goals(goals: Goals, trials: Vec<Trial>) -> History {
        let retried = trials.iter().filter_map(|t| t.rerun_of).collect();
        History { goals, trials, retried }
    }

    /// The first objective: the one pruners and the best trial follow.
    pub fn objective(&self) -> &Objective {
        &self.goals.objectives[0]
    }

    /// Finished trials that use up the budget: complete, pruned (paused ones too, until a
    /// re-run resumes them), and failures that were not retried.
    pub fn counted(&self) -> usize {
        self.trials.iter().filter(|t| self.counts(t)).count()
    }

    pub fn counts(&self, t: &Trial) -> bool {
        match t.state {
            TrialState::Complete => true,
            TrialState::Pruned | TrialState::Failed => !self.retried.contains(&t.number),
            _ => false,
        }
    }

    /// Completed trials with their objective value.
    pub fn completed(&self) -> impl Iterator<Item = (&Trial, f64)> {
        self.trials.iter().filter(|t| t.state == TrialState::Complete).filter_map(|t| t.value.map(|v| (t, v)))
    }

    /// Configurations being evaluated now.
    pub fn running(&self) -> impl Iterator<Item = &Trial> {
        self.trials.iter().filter(|t| t.state == TrialState::Running)
    }

    pub fn count(&self, state: TrialState) -> usize {
        self.trials.iter().filter(|t| t.state == state).count()
    }

    /// The best completed trial in the objective's direction (a NaN is never best; SQLite
    /// stores it as NULL, which `Reader::best` skips the same way).
    pub fn best(&self) -> Option<&Trial> {
        self.completed()
            .filter(|(_, v)| !v.is_nan())
            .reduce(|a, b| if self.objective().better(b.1, a.1) { b } else { a })
            .map(|(t, _)| t)
    }

    pub fn next_number(&self) -> u64 {
        self.trials.iter().map(|t| t.number + 1).max().unwrap_or(0)
    }

    /// Adds a trial where its number puts it, so the order does not depend on timing.
    pub fn insert(&mut self, trial: Trial) {
        let at = self.trials.partition_point(|t| t.number < trial.number);
        // The store's UNIQUE (study, number) refuses a second one; memory must not hold it either.
        debug_assert!(
            self.trials.get(at).is_none_or(|t| t.number != trial.number),
            "trial {} held twice",
            trial.number
        );
        self.trials.insert(at, trial);
    }

    pub fn get_mut(&mut self, number: u64) -> Option<&mut Trial> {
        self.trials.iter_mut().find(|t| t.number == number)
    }

    pub fn get(&self, number: u64) -> Option<&Trial> {
        self.trials.iter().find(|t| t.number == number)
    }

    /// Configurations proposed or enqueued before trial `number`: its first attempts (a re-run
    /// repeats one). A proposal's generator is seeded with this index, not the trial's number,
    /// so the re-runs a crash adds do not change which configurations a study goes on to try.
    pub fn first_attempts_before(&self, number: u64) -> u64 {
        self.trials.iter().filter(|t| t.number < number && t.rerun_of.is_none()).count() as u64
    }

    /// The first attempt of the configuration trial `number` runs, following re-runs back
    /// (itself for a first attempt): its folder holds the checkpoints every attempt shares.
    pub fn first_attempt(&self, number: u64) -> u64 {
        let mut first = number;
        // Each hop goes to an earlier trial, so this ends; the bound guards bad data.
        for _ in 0..self.trials.len() {
            match self.get(first).and_then(|t| t.rerun_of) {
                Some(of) => first = of,
                None => break,
            }
        }
        first
    }

    /// Makes `update` in memory, as the store makes it on disk (`now`: Unix ms). An update for
    /// a trial it does not hold changes nothing.
    pub fn apply(&mut self, update: &Update, now: i64) {
        if let Update::Insert(t) = update {
            if let Some(of) = t.rerun_of {
                self.retried.insert(of);
            }
            let mut trial = Trial {
                attempt: t.attempt,
                rerun_of: t.rerun_of,
                device: t.device.clone(),
                started_at: (t.state == TrialState::Running).then_some(now),
                sampler_state: t.sampler_state.clone(),
                last_step: t.resumed_from,
                checkpoint_step: t.resumed_from,
                resumed_from: t.resumed_from,
                ..Trial::new(t.number, t.state, t.params.clone())
            };
            // A resumed re-run starts with its predecessor's curves up to the resume point.
            if let (Some(at), Some(of)) = (t.resumed_from, t.rerun_of.and_then(|of| self.get(of))) {
                for k in 0..=of.other_curves.len() {
                    for &point in of.curve_of(k).iter().filter(|p| p.0 <= at) {
                        trial.curve_mut(k).push(point);
                    }
                }
            }
            self.insert(trial);
            return;
        }
        // Fields apart, so the objective's name is read while a trial changes.
        let Some(trial) = self.trials.iter_mut().find(|t| t.number == update.number()) else { return };
        match update {
            Update::Insert(_) => {}
            Update::Start { device, .. } => {
                trial.state = TrialState::Running;
                trial.device = device.clone();
                trial.started_at = Some(now);
            }
            Update::Job { job, .. } => trial.job = Some(job.clone()),
            Update::Report { step, metrics, checkpoint, .. } => {
                trial.last_step = Some(*step);
                if *checkpoint {
                    trial.checkpoint_step = Some(*step);
                }
                for (k, objective) in self.goals.objectives.iter().enumerate() {
                    let Some(&v) = metrics.get(&objective.metric) else { continue };
                    // Kept in step order; a repeated step replaces its value.
                    let curve = trial.curve_mut(k);
                    match curve.binary_search_by_key(step, |p| p.0) {
                        Ok(i) => curve[i].1 = v,
                        Err(i) => curve.insert(i, (*step, v)),
                    }
                }
            }
            Update::Finish { state, end, .. } => {
                trial.state = *state;
                trial.value = end.value;
                trial.metrics = end.metrics.clone();
                trial.last_step = end.last_step;
                trial.reason = end.reason.clone();
                trial.stderr_tail = end.stderr_tail.clone();
                trial.paused = end.paused;
                trial.finished_at = Some(now);
            }
        }
    }
}
