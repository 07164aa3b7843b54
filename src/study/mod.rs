//! A study file: parsed into the raw `StudyFile`, then validated into a `StudyConfig`.
//! Every problem names the file, line, column and key path.

pub mod brackets;
mod file;
mod locate;
mod validate;

pub use crate::objective::{Constraint, Direction, Goals, Objective};
pub use file::{PrunerKind, SamplerKind};

use crate::space::{Params, Space};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What must not change between runs of one study: the objective, the seed and the space
/// (canonical JSON). Stored with the study; a resume with a different one is refused.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint {
    pub metric: String,
    pub direction: Direction,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub space: serde_json::Value,
    /// All the objectives, when there are several (`metric`/`direction` are the first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objectives: Vec<Objective>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
}

impl Fingerprint {
    /// The search space it holds.
    pub fn space(&self) -> Result<Space, serde_json::Error> {
        Space::from_canonical(&self.space)
    }

    /// What the study asks of its trials' metrics.
    pub fn goals(&self) -> Goals {
        let objectives = if self.objectives.is_empty() {
            vec![Objective { metric: self.metric.clone(), direction: self.direction }]
        } else {
            self.objectives.clone()
        };
        Goals { objectives, constraints: self.constraints.clone() }
    }

    /// Names of the params, in the space's order.
    pub fn param_names(&self) -> Vec<String> {
        self.space["params"]
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p["name"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    }
}

/// A validated study: everything the coordinator needs, nothing left to check.
#[derive(Debug, Clone)]
pub struct StudyConfig {
    pub name: String,
    /// The first of `goals.objectives`: what single-objective parts (pruners, the GP, the
    /// progress line) follow.
    pub objective: Objective,
    pub goals: Goals,
    pub seed: u64,
    pub budget: Budget,
    pub space: Space,
    pub sampler: SamplerConfig,
    pub pruner: PrunerConfig,
    pub trial: TrialSpec,
    pub enqueue: Vec<Params>,
    pub devices: Devices,
    pub executor: ExecutorConfig,
    /// The file's text, stored with the study.
    pub source: String,
}

impl StudyConfig {
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            metric: self.objective.metric.clone(),
            direction: self.objective.direction,
            seed: self.seed,
            space: self.space.canonical(),
            objectives: if self.goals.objectives.len() > 1 { self.goals.objectives.clone() } else { Vec::new() },
            constraints: self.goals.constraints.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Budget {
    /// Finished trials the study ends with.
    pub trials: u32,
    /// Trials running at once (also bounded by device slots).
    pub parallel: u32,
    pub trial_timeout: Option<Duration>,
    pub timeout: Option<Duration>,
    /// Extra attempts for a failed trial.
    pub retries: u32,
}

/// A validated `[pruner]`: the rule, then the wrappers around it. With `rule = None` and no
/// bounds nothing is ever stopped; otherwise a trial whose latest value is NaN or infinite, or
/// outside `lower`/`upper`, is stopped at once (patience does not delay that).
#[derive(Debug, Clone, PartialEq)]
pub struct PrunerConfig {
    pub rule: PrunerRule,
    /// The rule's stop only takes effect once the trial's best value has not improved for this
    /// many reports.
    pub patience: Option<u32>,
    /// The learning-curve veto: the rule's stop is overruled while the trial's forecast final
    /// beats the best complete trial's with at least this probability.
    pub min_promise: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// `mode = "pause"` (asha and hyperband): a trial below the cut at a rung pauses instead of
    /// stopping for good, and resumes from its checkpoint once it ranks high enough there.
    pub pause: bool,
}

impl Default for PrunerConfig {
    fn default() -> Self {
        PrunerConfig {
            rule: PrunerRule::None,
            patience: None,
            min_promise: None,
            lower: None,
            upper: None,
            pause: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PrunerRule {
    None,
    /// Stop a trial whose best value so far is worse than this percentile of the completed
    /// trials' best values at the same step (`median` is percentile 50).
    Percentile {
        percentile: f64,
        warmup_steps: i64,
        min_trials: u32,
        median: bool,
    },
    /// Asynchronous successive halving.
    Asha {
        min_resource: i64,
        max_resource: Option<i64>,
        eta: u32,
    },
    /// Hyperband: trials spread over ASHA brackets with different first rungs.
    Hyperband {
        min_resource: i64,
        max_resource: i64,
        eta: u32,
    },
}

impl PrunerRule {
    /// The step a full trial runs to, where the rule knows it (`max_resource`).
    pub fn horizon(&self) -> Option<i64> {
        match self {
            PrunerRule::Asha { max_resource, .. } => *max_resource,
            PrunerRule::Hyperband { max_resource, .. } => Some(*max_resource),
            PrunerRule::None | PrunerRule::Percentile { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SamplerConfig {
    pub kind: SamplerKind,
    pub startup_trials: u32,
    /// The GP models pruned trials' values below the full resource (`sampler/fidelity.rs`).
    pub multi_fidelity: bool,
}

/// How a trial's worker is started.
#[derive(Debug, Clone)]
pub struct TrialSpec {
    /// argv; element 0 is the program. Built-in workers start with the sweep binary.
    pub argv: Vec<ArgTemplate>,
    pub workdir: PathBuf,
    pub env: BTreeMap<String, String>,
    pub grace: Duration,
    /// Keep finished trials' checkpoint folders instead of removing them.
    pub keep_checkpoints: bool,
}

/// One argv element: literal text and `{name}` placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgTemplate(pub Vec<Piece>);

#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    /// A parameter's value.
    Param(String),
    /// The trial number.
    Trial,
}

/// Reserved placeholders that are not parameters.
pub const TRIAL_PLACEHOLDER: &str = "trial";

#[derive(Debug, Clone, Default)]
pub struct Devices {
    pub gpus: Vec<String>,
    pub per_gpu: u32,
}

/// Where trials run.
#[derive(Debug, Clone, Default, PartialEq)]
// One per study, read once: its size does not matter, and boxing would only add noise.
#[allow(clippy::large_enum_variant)]
pub enum ExecutorConfig {
    /// Child processes on this machine.
    #[default]
    Local,
    /// One Slurm job per trial.
    Slurm(SlurmConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlurmConfig {
    pub partition: Option<String>,
    pub gres: Option<String>,
    pub time: Option<String>,
    /// Slurm signals a job this long before its time limit; the job then stops its worker,
    /// which checkpoints first, and the trial resumes in a new job (zero: no warning).
    pub warning: Duration,
    pub extra: Vec<String>,
    /// Jobs queued or running at once (`[budget] parallel` is lowered to it).
    pub max_jobs: u32,
    /// The sweep binary on the compute nodes.
    pub binary: PathBuf,
    pub listen: std::net::SocketAddr,
    pub url: Option<String>,
    pub poll: Duration,
}

/// One problem in a study file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    /// Dotted key path, empty for a syntax error.
    pub key: String,
    pub message: String,
}

/// The study file could not be read or is invalid. Nothing was written anywhere.
#[derive(Debug, thiserror::Error)]
pub enum StudyFileError {
    #[error("cannot read study file {file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{}", render(file, problems))]
    Invalid { file: String, problems: Vec<Problem> },
}

fn render(file: &str, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("{file}:{p}")).collect();
    lines.join("\n")
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}:{}: {}", self.line, self.column, self.message)
        } else {
            write!(f, "{}:{}: `{}`: {}", self.line, self.column, self.key, self.message)
        }
    }
}

/// Reads and validates a study file.
pub fn load(path: &Path) -> Result<StudyConfig, StudyFileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| StudyFileError::Read { file: file.clone(), source })?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    parse(&text, base).map_err(|problems| StudyFileError::Invalid { file, problems })
}

/// Validates study text; relative paths resolve against `base`.
pub fn parse(text: &str, base: &Path) -> Result<StudyConfig, Vec<Problem>> {
    let raw: file::StudyFile = match serde_path_to_error::deserialize(toml::Deserializer::new(text)) {
        Ok(raw) => raw,
        Err(e) => return Err(vec![serde_problem(text, e)]),
    };
    validate::validate(raw, text, base).map_err(|errs| {
        errs.into_iter()
            .map(|(path, message)| {
                let (line, column) = locate::line_col(text, locate::offset_of(text, &path));
                Problem { line, column, key: path.join("."), message }
            })
            .collect()
    })
}

fn serde_problem(text: &str, e: serde_path_to_error::Error<toml::de::Error>) -> Problem {
    let path: Vec<String> = e.path().iter().map(ToString::to_string).filter(|s| s != "?").collect();
    let inner = e.inner();
    let offset = inner.span().map(|s| s.start).unwrap_or_else(|| locate::offset_of(text, &path));
    let (line, column) = locate::line_col(text, offset);
    let mut key = path.join(".");
    // A missing-key error points at the table that lacks it; name the key itself.
    let message = inner.message().trim().to_string();
    if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
        key = if key.is_empty() { field.to_string() } else { format!("{key}.{field}") };
    }
    Problem { line, column, key, message }
}

#[cfg(test)]
mod tests;
