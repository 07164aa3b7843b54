//! Control endpoints: stop a running trial, enqueue a configuration, pause or resume
//! dispatching. The server never changes trial state: it checks the request, stores it as a
//! command, and answers 202 Accepted; the coordinator applies it within a poll interval (or,
//! if none is running, when one starts) and records the result on the command.
//!
//! Beyond the token (when one is set), a control request must be a JSON POST from the page's
//! own origin: a cross-site form cannot send `application/json` without a CORS preflight,
//! which this server never grants. Without a token (loopback only), the Host must be a
//! loopback name too, so a DNS-rebinding page cannot reach the API under its own name.

use super::api::{find, Found, Query};
use super::{ApiError, AppState};
use crate::store::{CommandStatus, Request, StudyRecord};
use crate::trial::TrialState;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

type Accepted = Result<(StatusCode, Json<Value>), ApiError>;

pub(crate) async fn stop(
    State(state): State<Arc<AppState>>,
    Path((name, number)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Accepted {
    let study = checked(&state, &name, &headers, q, &body).await?;
    let number: u64 =
        number.parse().map_err(|_| ApiError::bad_request(format!("trial number `{number}` is not a number")))?;
    let (trial, _) = state
        .reader
        .trial(study.id, number)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("study `{name}` has no trial {number}")))?;
    if trial.state != TrialState::Running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("trial {number} is {}: only a running trial can be stopped", trial.state.as_str()),
        ));
    }
    submit(&state, &study, Request::Stop { trial: number }).await
}

pub(crate) async fn enqueue(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Accepted {
    let study = checked(&state, &name, &headers, q, &body).await?;
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let given = body
        .get("params")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::bad_request("send {\"params\": {NAME: VALUE, ...}}: `params` must be an object"))?;
    let space = study.fingerprint.space().map_err(|e| {
        tracing::error!("study `{name}` has an unreadable search space: {e}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the study's search space could not be read")
    })?;
    // The same check as the study file's [[enqueue]] entries.
    let params = space.complete(given).map_err(|why| ApiError::bad_request(format!("params: {why}")))?;
    submit(&state, &study, Request::Enqueue { params }).await
}

pub(crate) async fn pause(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Accepted {
    let study = checked(&state, &name, &headers, q, &body).await?;
    submit(&state, &study, Request::Pause).await
}

pub(crate) async fn resume(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Accepted {
    let study = checked(&state, &name, &headers, q, &body).await?;
    submit(&state, &study, Request::Resume).await
}

/// One command: pending until `done_at`, then its `result`.
pub(crate) async fn status(
    State(state): State<Arc<AppState>>,
    Found(study): Found,
    Path((_, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Json<CommandStatus>, ApiError> {
    Query::parse(q, &[])?;
    let id: i64 = id.parse().map_err(|_| ApiError::bad_request(format!("command id `{id}` is not a number")))?;
    let name = &study.name;
    let command = state
        .reader
        .command(study.id, id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("study `{name}` has no command {id}")))?;
    Ok(Json(command))
}

/// The checks every control request passes before anything is looked at: where it comes
/// from, that it is JSON, no stray query parameters, and that the study exists.
async fn checked(
    state: &AppState,
    name: &str,
    headers: &HeaderMap,
    query: Option<String>,
    body: &Bytes,
) -> Result<StudyRecord, ApiError> {
    same_origin(headers, state.token.is_none())?;
    let json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !json.trim_start().to_ascii_lowercase().starts_with("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "control requests are JSON: send Content-Type: application/json",
        ));
    }
    if !body.is_empty() && serde_json::from_slice::<Value>(body).is_err() {
        return Err(ApiError::bad_request("the request body is not valid JSON"));
    }
    Query::parse(query, &[])?;
    find(state, name).await
}

fn same_origin(headers: &HeaderMap, loopback_only: bool) -> Result<(), ApiError> {
    let forbidden = |why: &str| Err(ApiError::new(StatusCode::FORBIDDEN, why.to_string()));
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    if loopback_only && !is_loopback_host(host) {
        return forbidden("without a token, control requests must address the server by a loopback name");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let own = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host);
        if !own {
            return forbidden("control requests from another origin are refused");
        }
    }
    Ok(())
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, port)| if port.parse::<u16>().is_ok() { h } else { host }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

async fn submit(state: &AppState, study: &StudyRecord, request: Request) -> Accepted {
    let id = state.commands.submit(study.id, &request).await?;
    let coordinator = crate::lock::holder(state.reader.path());
    let message = match coordinator {
        Some(pid) => {
            format!("accepted: the coordinator (pid {pid}) applies it within a second if it is running this study")
        }
        None => "accepted: no coordinator is running on this database now; the command waits until `sweep run` \
                 resumes the study"
            .to_string(),
    };
    let body = json!({
        "command": id,
        "kind": request.kind(),
        "status": "pending",
        "coordinator_running": coordinator.is_some(),
        "message": message,
        "poll": format!("/api/studies/{}/commands/{id}", study.name),
    });
    Ok((StatusCode::ACCEPTED, Json(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in ["127.0.0.1:8080", "localhost", "LOCALHOST:1", "[::1]:80", "127.1.2.3", "[::1]"] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in ["evil.example:8080", "10.0.0.1:80", "", "localhost.evil.example", "[fe80::1]:8"] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn other_origins_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h, true).is_ok());
        h.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h, true).is_ok());
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(same_origin(&h, true).is_err());
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(same_origin(&h, false).is_err());
        let mut rebound = HeaderMap::new();
        rebound.insert(header::HOST, "evil.example:8080".parse().unwrap());
        assert!(same_origin(&rebound, true).is_err());
        assert!(same_origin(&rebound, false).is_ok(), "with a token the name does not matter");
    }
}
