//! Bulk writing of finished trials: multi-row inserts in one transaction, for generating large
//! studies (the web scale benchmark) in seconds instead of one statement per report.

use super::{now_ms, Result, Store};
use crate::trial::{Finish, Metrics, NewTrial, TrialState};
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, Connection};
use std::collections::HashMap;

/// A finished trial with its intermediate reports.
#[derive(Debug, Clone)]
pub struct Imported {
    pub trial: NewTrial,
    pub state: TrialState,
    pub end: Finish,
    pub reports: Vec<(i64, Metrics)>,
    /// Unix ms.
    pub started_at: i64,
    pub finished_at: i64,
}

/// Rows per multi-row INSERT, under SQLite's limit of 32,766 bound values per statement.
const TRIAL_ROWS: usize = 1000;
const REPORT_ROWS: usize = 5000;

impl Store {
    /// Writes finished trials with their reports, all or nothing. Nothing goes to the change
    /// log: no page follows an import live.
    pub async fn import(&mut self, study_id: i64, trials: &[Imported]) -> Result<()> {
        let now = now_ms();
        let mut tx = self.conn.begin().await?;
        for chunk in trials.chunks(TRIAL_ROWS) {
            let mut args = SqliteArguments::default();
            for t in chunk {
                let metrics = t.end.metrics.as_ref().map(|m| crate::protocol::metrics_to_json(m).to_string());
                args.add(study_id).expect("int encodes");
                args.add(t.trial.number as i64).expect("int encodes");
                args.add(t.state.as_str()).expect("text encodes");
                args.add(serde_json::to_string(&t.trial.params).expect("params serialize")).expect("text encodes");
                args.add(t.trial.attempt as i64).expect("int encodes");
                args.add(t.end.value.filter(|v| !v.is_nan())).expect("real encodes");
                args.add(metrics).expect("text encodes");
                args.add(t.end.last_step).expect("int encodes");
                args.add(t.end.reason.clone()).expect("text encodes");
                args.add(t.end.stderr_tail.clone()).expect("text encodes");
                args.add(t.started_at).expect("int encodes");
                args.add(t.started_at).expect("int encodes");
                args.add(t.finished_at).expect("int encodes");
            }
            let sql = format!(
                "INSERT INTO trials (study_id, number, state, params, attempt, value, metrics, last_step, reason,
                 stderr_tail, created_at, started_at, finished_at) VALUES {}",
                vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            sqlx::query_with(&sql, args).execute(&mut *tx).await?;
        }
        let ids: HashMap<i64, i64> = sqlx::query_as("SELECT number, id FROM trials WHERE study_id = ?")
            .bind(study_id)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        let reports: Vec<(i64, i64, &str, f64)> = trials
            .iter()
            .flat_map(|t| {
                let id = ids[&(t.trial.number as i64)];
                t.reports.iter().flat_map(move |(step, m)| m.iter().map(move |(k, v)| (id, *step, k.as_str(), *v)))
            })
            .collect();
        for chunk in reports.chunks(REPORT_ROWS) {
            let mut args = SqliteArguments::default();
            for (id, step, metric, value) in chunk {
                args.add(*id).expect("int encodes");
                args.add(*step).expect("int encodes");
                args.add(metric.to_string()).expect("text encodes");
                args.add((!value.is_nan()).then_some(*value)).expect("real encodes");
            }
            let sql = format!(
                "INSERT OR REPLACE INTO reports (trial_id, step, metric, value, created_at) VALUES {}",
                vec![format!("(?, ?, ?, ?, {now})"); chunk.len()].join(", ")
            );
            sqlx::query_with(&sql, args).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
