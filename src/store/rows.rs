//! Row types as SQLite holds them, and their conversion into the crate's types.

use super::{Report, StoreError};
use crate::objective::Direction;
use crate::study::Fingerprint;
use crate::trial::{Metrics, Trial, TrialState};

#[derive(sqlx::FromRow)]
pub(super) struct StudyRow {
    id: i64,
    name: String,
    source: String,
    fingerprint: String,
    space_hash: String,
    metric: String,
    direction: String,
    budget: i64,
    state: String,
    created_at: i64,
    updated_at: i64,
    /// Absent in a database that predates migration 0004 (served read-only by `sweep serve`).
    #[sqlx(default)]
    paused: bool,
    /// Absent before migration 0008, and NULL until a run of this sweep records it.
    #[sqlx(default)]
    runs_dir: Option<String>,
}

/// Every study, oldest first: the one query behind `Store::studies` and `Reader::studies`.
pub(super) async fn studies<'e>(conn: impl sqlx::SqliteExecutor<'e>) -> Result<Vec<StudyRecord>, StoreError> {
    let rows: Vec<StudyRow> = sqlx::query_as("SELECT * FROM studies ORDER BY id").fetch_all(conn).await?;
    rows.into_iter().map(StudyRecord::try_from).collect()
}

/// The study named `name`: the one query behind `Store::find_study` and `Reader::study`.
pub(super) async fn study_named<'e>(
    conn: impl sqlx::SqliteExecutor<'e>,
    name: &str,
) -> Result<Option<StudyRecord>, StoreError> {
    let row: Option<StudyRow> =
        sqlx::query_as("SELECT * FROM studies WHERE name = ?").bind(name).fetch_optional(conn).await?;
    row.map(StudyRecord::try_from).transpose()
}

/// A stored study.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StudyRecord {
    pub id: i64,
    pub name: String,
    /// The study file's text, as last run.
    pub source: String,
    /// Canonical JSON of the objective and search space.
    pub fingerprint: Fingerprint,
    pub space_hash: String,
    pub metric: String,
    pub direction: Direction,
    pub budget: u32,
    pub state: StudyState,
    pub created_at: i64,
    pub updated_at: i64,
    /// Paused from the web page: no new trials start until resumed.
    pub paused: bool,
    /// The runs folder its trials write into, as its last run saw it.
    pub runs_dir: Option<std::path::PathBuf>,
}

impl StudyRecord {
    /// Names of the study's params, in the order of its search space.
    pub fn param_names(&self) -> Vec<String> {
        self.fingerprint.param_names()
    }
}

/// Whether a study still has trials to run; `complete` once its budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StudyState {
    Running,
    Complete,
}

impl StudyState {
    pub fn as_str(self) -> &'static str {
        match self {
            StudyState::Running => "running",
            StudyState::Complete => "complete",
        }
    }
}

impl TryFrom<StudyRow> for StudyRecord {
    type Error = StoreError;
    fn try_from(r: StudyRow) -> Result<Self, StoreError> {
        Ok(StudyRecord {
            id: r.id,
            name: r.name,
            source: r.source,
            fingerprint: serde_json::from_str(&r.fingerprint)
                .map_err(|e| corrupt("study", format!("fingerprint: {e}")))?,
            space_hash: r.space_hash,
            metric: r.metric,
            direction: Direction::parse(&r.direction)
                .ok_or_else(|| corrupt("study", format!("direction `{}`", r.direction)))?,
            budget: u32::try_from(r.budget).map_err(|_| corrupt("study", format!("budget {}", r.budget)))?,
            state: [StudyState::Running, StudyState::Complete]
                .into_iter()
                .find(|s| s.as_str() == r.state)
                .ok_or_else(|| corrupt("study", format!("state `{}`", r.state)))?,
            created_at: r.created_at,
            updated_at: r.updated_at,
            paused: r.paused,
            runs_dir: r.runs_dir.map(Into::into),
        })
    }
}

/// The columns `TrialRow` reads.
pub(super) const TRIAL_COLUMNS: &str =
    "id, number, state, params, attempt, rerun_of, device, value, metrics, last_step, reason, stderr_tail, started_at, \
     finished_at, sampler_state, job, checkpoint_step, resumed_from, paused";

#[derive(sqlx::FromRow)]
pub(super) struct TrialRow {
    pub id: i64,
    number: i64,
    state: String,
    params: String,
    attempt: i64,
    rerun_of: Option<i64>,
    device: Option<String>,
    value: Option<f64>,
    metrics: Option<String>,
    last_step: Option<i64>,
    reason: Option<String>,
    stderr_tail: Option<String>,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    sampler_state: Option<String>,
    job: Option<String>,
    checkpoint_step: Option<i64>,
    resumed_from: Option<i64>,
    paused: bool,
}

impl TrialRow {
    /// `curves`: one per objective, the first objective's first.
    pub(super) fn into_trial(self, mut curves: Vec<Vec<(i64, f64)>>) -> Result<Trial, StoreError> {
        // Objectives with no reports after the last one that has some are left out, as in memory.
        while curves.len() > 1 && curves.last().is_some_and(Vec::is_empty) {
            curves.pop();
        }
        let state =
            TrialState::parse(&self.state).ok_or_else(|| corrupt("trial", format!("state `{}`", self.state)))?;
        let params = serde_json::from_str(&self.params)
            .map_err(|e| corrupt("trial", format!("params of trial {}: {e}", self.number)))?;
        let bad_metrics = |e: String| corrupt("trial", format!("metrics of trial {}: {e}", self.number));
        let metrics: Option<Metrics> = match &self.metrics {
            Some(m) => {
                let value = serde_json::from_str(m).map_err(|e| bad_metrics(e.to_string()))?;
                Some(crate::protocol::metrics_from_json(&value).ok_or_else(|| bad_metrics("not an object".into()))?)
            }
            None => None,
        };
        Ok(Trial {
            number: self.number as u64,
            state,
            params,
            attempt: self.attempt as u32,
            rerun_of: self.rerun_of.map(|n| n as u64),
            device: self.device,
            job: self.job,
            value: self.value,
            metrics,
            curve: if curves.is_empty() { Vec::new() } else { curves.remove(0) },
            other_curves: curves,
            last_step: self.last_step,
            reason: self.reason,
            stderr_tail: self.stderr_tail,
            started_at: self.started_at,
            finished_at: self.finished_at,
            checkpoint_step: self.checkpoint_step,
            resumed_from: self.resumed_from,
            paused: self.paused,
            // State is a hint for the sampler: unreadable state is dropped, not an error.
            sampler_state: self.sampler_state.and_then(|s| serde_json::from_str(&s).ok()),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ReportRow {
    number: i64,
    step: i64,
    metric: String,
    value: Option<f64>,
}

impl ReportRow {
    pub(super) fn into_report(self) -> Report {
        Report { number: self.number as u64, step: self.step, metric: self.metric, value: self.value }
    }
}

fn corrupt(what: &'static str, detail: String) -> StoreError {
    StoreError::Corrupt { what, detail }
}
