//! The raw study file exactly as written in TOML. Unknown keys are rejected here; meaning is
//! checked in `validate`.

use crate::objective::Direction;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyFile {
    pub name: String,
    /// The objective: the metric name the worker reports (or `[[objectives]]`).
    pub metric: Option<String>,
    pub direction: Option<Direction>,
    /// Several objectives, each a `metric` and a `direction`, instead of `metric`/`direction`.
    pub objectives: Option<Vec<ObjectiveFile>>,
    /// `"metric <= number"` or `"metric >= number"` on each trial's final metrics.
    pub constraints: Option<Vec<String>>,
    #[serde(default)]
    pub seed: u64,
    /// Optional as a whole: a grid needs no `[budget]`.
    #[serde(default)]
    pub budget: BudgetFile,
    #[serde(default)]
    pub params: BTreeMap<String, ParamFile>,
    #[serde(default)]
    pub sampler: SamplerFile,
    #[serde(default)]
    pub pruner: PrunerFile,
    pub trial: TrialFile,
    #[serde(default)]
    pub enqueue: Vec<serde_json::Map<String, Value>>,
    #[serde(default)]
    pub devices: DevicesFile,
    #[serde(default)]
    pub executor: ExecutorFile,
}

/// One `[[objectives]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveFile {
    pub metric: String,
    pub direction: Direction,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetFile {
    /// Required, except with the grid sampler, where it defaults to the grid's size.
    pub trials: Option<i64>,
    #[serde(default)]
    pub parallel: Option<i64>,
    /// Per trial; seconds or a duration such as "30m".
    #[serde(default)]
    pub trial_timeout: Option<DurationText>,
    /// For the whole study, per invocation: no new trials start after it.
    #[serde(default)]
    pub timeout: Option<DurationText>,
    #[serde(default)]
    pub retries: Option<i64>,
}

/// A duration as seconds or as text such as "1h 30m".
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationText {
    Seconds(f64),
    Text(String),
}

/// One parameter. The kind is `type`, or implied by `choices` (categorical) or `value` (fixed).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamFile {
    #[serde(rename = "type")]
    pub kind: Option<ParamKind>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub log: Option<bool>,
    pub step: Option<f64>,
    pub choices: Option<Vec<Value>>,
    pub value: Option<Value>,
    /// `{ parent = value }` or `{ parent = [value, ...] }`: active only then.
    pub when: Option<BTreeMap<String, Value>>,
    /// The values a grid search tries (float and int parameters).
    pub grid: Option<Vec<Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    Float,
    Int,
    Categorical,
    Fixed,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerFile {
    #[serde(default)]
    pub kind: SamplerKind,
    /// Random trials before a model-based sampler takes over.
    pub startup_trials: Option<i64>,
    /// `gp` with a pruner: model configuration and resource together (default: with one
    /// objective; off with several, where it measured worse).
    pub multi_fidelity: Option<bool>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    #[default]
    Random,
    /// Gaussian-process Bayesian optimization.
    Gp,
    /// Every combination of the parameters' values, each once, in a fixed order.
    Grid,
}

/// `[pruner]`: a rule (`kind`) and its options, plus the wrappers any rule takes (`patience`,
/// `lower`/`upper`). Which options go with which kind is checked in `validate`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrunerFile {
    #[serde(default)]
    pub kind: PrunerKind,
    /// percentile: stop a trial worse than this percentile (0-100) of the others at its step.
    pub percentile: Option<f64>,
    /// median/percentile: never stop before this step.
    pub warmup_steps: Option<i64>,
    /// median/percentile: completed trials needed at a step before it is judged.
    pub min_trials: Option<i64>,
    /// asha/hyperband: the first rung's step.
    pub min_resource: Option<i64>,
    /// asha/hyperband: the step a trial runs to; no decision at or past it.
    pub max_resource: Option<i64>,
    /// asha/hyperband: reduction factor; each rung keeps the top 1/eta.
    pub eta: Option<i64>,
    /// asha/hyperband: "stop" (default) ends a trial below the cut at a rung; "pause" pauses it,
    /// to resume from its checkpoint if it ranks high enough later.
    pub mode: Option<String>,
    /// Any rule: do not stop a trial whose forecast final value beats the best complete trial's
    /// with at least this probability (0 to 1; the learning-curve veto, `curve.rs`).
    pub min_promise: Option<f64>,
    /// Any rule: stop only a trial whose best value has not improved for this many reports.
    pub patience: Option<i64>,
    /// Any rule: stop a trial whose latest value is below `lower` or above `upper`.
    pub lower: Option<f64>,
    pub upper: Option<f64>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrunerKind {
    #[default]
    None,
    Median,
    Percentile,
    Asha,
    Hyperband,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialFile {
    /// The program and its arguments, with `{param}` placeholders.
    pub command: Option<Vec<String>>,
    /// A built-in worker (`testfn`), run as `sweep worker NAME ARGS...`.
    pub worker: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Working directory, relative to the study file's folder.
    pub workdir: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Time a stopped worker gets between each step of stop, SIGTERM, SIGKILL.
    pub grace: Option<DurationText>,
    /// Keep a finished trial's checkpoint folder (by default it goes once the trial ends).
    #[serde(default)]
    pub keep_checkpoints: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesFile {
    /// GPU ids as CUDA_VISIBLE_DEVICES spells them; empty means CPU.
    #[serde(default)]
    pub gpus: Vec<Value>,
    /// How many trials may share one GPU.
    pub per_gpu: Option<i64>,
}

/// `[executor]`: where trials run. `local` (the default) starts them on this machine; `slurm`
/// submits each as a Slurm job. Which keys go with which kind is checked in `validate`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorFile {
    #[serde(default)]
    pub kind: ExecutorKind,
    pub partition: Option<String>,
    /// Generic resources per trial, e.g. "gpu:1".
    pub gres: Option<String>,
    /// Slurm's time limit per job, e.g. "02:00:00".
    pub time: Option<String>,
    /// How long before the time limit a job stops its worker, which checkpoints first
    /// (default 2m, at most half the limit; "0s": no warning).
    pub warning: Option<DurationText>,
    /// More sbatch options, passed as given.
    #[serde(default)]
    pub extra: Option<Vec<String>>,
    /// Trials queued or running in Slurm at once.
    pub max_jobs: Option<i64>,
    /// The sweep binary as the compute nodes see it (default: this one's path).
    pub binary: Option<String>,
    /// Address the coordinator listens on for its jobs (default 0.0.0.0:0, any free port).
    pub listen: Option<String>,
    /// Base URL jobs use to reach that listener (default http://<this host>:<port>).
    pub url: Option<String>,
    /// How often squeue is asked and jobs send a heartbeat.
    pub poll: Option<DurationText>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    #[default]
    Local,
    Slurm,
}
