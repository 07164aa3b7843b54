//! The coordinator's side of the job API: jobs post reports, heartbeats and their outcome
//! here, with the study's token. Reports reach the coordinator loop like a local worker's, and
//! the answer is its decision.

use super::spec::{DecisionBody, ReportBody};
use super::Jobs;
use crate::executor::{Outcome, WorkerEvent};
use crate::protocol::Decision;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use std::sync::Arc;
use tokio::sync::oneshot;

pub fn router(jobs: Arc<Jobs>) -> Router {
    Router::new()
        .route("/jobs/{trial}/report", post(report))
        .route("/jobs/{trial}/heartbeat", post(heartbeat))
        .route("/jobs/{trial}/done", post(done))
        .with_state(jobs)
}

type Answer = Result<Json<DecisionBody>, StatusCode>;

fn authorize(jobs: &Jobs, headers: &HeaderMap) -> Result<(), StatusCode> {
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match given.and_then(|v| v.strip_prefix("Bearer ")) {
        Some(t) if t == jobs.token => Ok(()),
        _ => Err(StatusCode::UNAUTHORIZED),
    }
}

fn answer(decision: Decision) -> Answer {
    Ok(Json(DecisionBody { decision }))
}

async fn report(
    State(jobs): State<Arc<Jobs>>,
    Path(trial): Path<u64>,
    headers: HeaderMap,
    Json(body): Json<ReportBody>,
) -> Answer {
    authorize(&jobs, &headers)?;
    // Until the coordinator has taken its trials back after a restart, it cannot tell a job it
    // adopts from one it dropped: the job retries.
    let events = jobs.events().ok_or(StatusCode::SERVICE_UNAVAILABLE)?;
    if !jobs.touch(trial) {
        return answer(Decision::Stop);
    }
    let (reply, decision) = oneshot::channel();
    let event =
        WorkerEvent::Report { trial, step: Some(body.step), metrics: body.metrics, checkpoint: body.checkpoint, reply };
    if events.send(event).is_err() {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    answer(decision.await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?)
}

async fn heartbeat(State(jobs): State<Arc<Jobs>>, Path(trial): Path<u64>, headers: HeaderMap) -> Answer {
    authorize(&jobs, &headers)?;
    jobs.events().ok_or(StatusCode::SERVICE_UNAVAILABLE)?;
    match jobs.touch(trial) && !jobs.stopping(trial) {
        true => answer(Decision::Continue),
        false => answer(Decision::Stop),
    }
}

/// Idempotent: a second `done` for the same trial changes nothing.
async fn done(
    State(jobs): State<Arc<Jobs>>,
    Path(trial): Path<u64>,
    headers: HeaderMap,
    Json(outcome): Json<Outcome>,
) -> Result<StatusCode, StatusCode> {
    authorize(&jobs, &headers)?;
    match jobs.done(trial, outcome) {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(StatusCode::SERVICE_UNAVAILABLE),
    }
}
