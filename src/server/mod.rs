//! The web server: the page, a JSON API over the study database, live events, and control
//! commands for the coordinator. Bound to loopback by default; any other address needs a
//! token, and then every API request must carry it.

mod aggregate;
mod api;
mod assets;
mod control;
mod events;

use crate::store::{CommandWriter, Reader};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("refusing to serve on {0} without a token: pass --token (or SWEEP_TOKEN) to bind beyond loopback")]
    TokenRequired(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What every handler reads.
pub(crate) struct AppState {
    reader: Reader,
    /// Inserts control commands (the only writing the server does); connects on first use.
    commands: CommandWriter,
    token: Option<String>,
}

/// A bound listener, ready to serve; its address tells the port when 0 was asked for.
pub struct Server {
    listener: tokio::net::TcpListener,
    app: Router,
}

impl Server {
    pub async fn bind(addr: SocketAddr, token: Option<String>, reader: Reader) -> Result<Server, ServerError> {
        let token = token.filter(|t| !t.is_empty());
        if !addr.ip().is_loopback() && token.is_none() {
            return Err(ServerError::TokenRequired(addr));
        }
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        let commands = CommandWriter::open_lazy(reader.path());
        let state = Arc::new(AppState { reader, commands, token });
        Ok(Server { listener, app: router(state) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    pub async fn run(self) -> Result<(), ServerError> {
        axum::serve(self.listener, self.app).await?;
        Ok(())
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/static/{*name}", get(assets::file))
        .route("/api/studies", get(api::studies))
        .route("/api/studies/{name}", get(api::study))
        .route("/api/studies/{name}/trials", get(api::trials))
        .route("/api/studies/{name}/trials/{number}", get(api::trial))
        .route("/api/studies/{name}/history", get(api::history))
        .route("/api/studies/{name}/curves", get(api::curves))
        .route("/api/studies/{name}/importance", get(api::importance))
        .route("/api/studies/{name}/points", get(api::points))
        .route("/api/studies/{name}/front", get(api::front))
        .route("/api/studies/{name}/compare", get(api::compare))
        .route("/api/studies/{name}/events", get(events::stream))
        .route("/api/studies/{name}/trials/{number}/stop", post(control::stop))
        .route("/api/studies/{name}/enqueue", post(control::enqueue))
        .route("/api/studies/{name}/pause", post(control::pause))
        .route("/api/studies/{name}/resume", post(control::resume))
        .route("/api/studies/{name}/commands/{id}", get(control::status))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

async fn not_found() -> Response {
    not_found_response()
}

pub(crate) fn not_found_response() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "no such page").into_response()
}

/// With a token configured, every API request carries it: `Authorization: Bearer T`, or
/// `?token=T` for EventSource, which cannot set headers. The page's own files are public (the
/// browser fetches them without the token); they hold no data.
async fn require_token(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else { return next.run(request).await };
    if assets::is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    let in_query = request
        .uri()
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned()));
    let given = bearer.map(str::to_string).or(in_query);
    if given.as_deref().is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        next.run(request).await
    } else {
        ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong token").into_response()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An error answer: a status and a message, as JSON.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        if let crate::store::StoreError::Outdated = e {
            return ApiError::new(StatusCode::CONFLICT, e.to_string());
        }
        tracing::error!("store error while serving: {e}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the database could not be read")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}
