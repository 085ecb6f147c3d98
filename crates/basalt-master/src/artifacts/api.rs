//! The artifact store's REST API, under `/api/v0.2/` with the rest of the master's API (the
//! same token authentication, [`crate::http`]):
//!
//! | call | answer |
//! | --- | --- |
//! | `PUT artifacts/NAME` (raw body; `?max_age=SECS`) | 201, the artifact |
//! | `GET artifacts/` | `{count, next, previous, results, quota, used}` |
//! | `GET artifacts/NAME/` | the artifact |
//! | `DELETE artifacts/NAME/` | 204 |
//!
//! The artifact is `{name, size, sha256, url, created, expires, uploader}`. Errors are
//! `{"error": "...", "message": "..."}` (the same text: `error` as the reservations API
//! answers, `message` as LAVA's v0.2 does); a quota refusal (507) adds `quota`, `used` and
//! `requested` in bytes. The upload's body is streamed to disk, never held in memory, and is
//! not under the API's body limit; an upload that sends nothing for 120 s is
//! abandoned (408).

use super::{ArtifactError, ArtifactName, Artifacts};
use crate::engine::Handle;
use crate::http::ApiError;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How long an upload may send nothing before it is abandoned (its file removed, its share of
/// the quota given back).
const UPLOAD_IDLE: Duration = Duration::from_secs(120);

/// The artifact routes, merged into the API's router ([`crate::http::router`]).
pub fn routes() -> Router<Handle> {
    Router::new().route("/artifacts/", get(list)).route(
        "/artifacts/{*name}",
        get(show)
            .put(upload)
            .delete(remove)
            .layer(DefaultBodyLimit::disable()),
    )
}

/// An error answer: its status, its text, and fields beyond `error`/`message`.
struct Failure {
    status: StatusCode,
    message: String,
    extra: Option<Value>,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
            extra: None,
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message, "message": self.message });
        if let (Some(Value::Object(extra)), Value::Object(map)) = (self.extra, &mut body) {
            map.extend(extra);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<ArtifactError> for Failure {
    fn from(e: ArtifactError) -> Failure {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() && status != StatusCode::INSUFFICIENT_STORAGE {
            tracing::error!("{e}");
        }
        let extra = match &e {
            ArtifactError::Quota { quota, used, asked } => {
                Some(json!({ "quota": quota, "used": used, "requested": asked }))
            }
            _ => None,
        };
        Failure {
            status,
            message: e.to_string(),
            extra,
        }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        let status = e.status();
        Failure::new(status, e.to_string())
    }
}

type Answer<T> = Result<T, Failure>;

/// The master's store, or 404 when it runs without one.
fn store(h: &Handle) -> Answer<Arc<Artifacts>> {
    h.artifacts.clone().ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            "this master has no artifact store: it is enabled with --artifacts-http",
        )
    })
}

/// The name of a path below `artifacts/` (a trailing `/` is the metadata's URL, not part of
/// the name); 400 when it is not a valid name.
fn name_of(path: &str) -> Answer<ArtifactName> {
    let path = path.strip_suffix('/').unwrap_or(path);
    ArtifactName::new(path).map_err(|e| ArtifactError::from(e).into())
}

async fn list(State(h): State<Handle>) -> Answer<Json<Value>> {
    let store = store(&h)?;
    let base = &store.config().base_url;
    let results: Vec<Value> = store.list().iter().map(|a| a.json(base)).collect();
    let (used, quota) = store.usage();
    Ok(Json(json!({
        "count": results.len(),
        "next": null,
        "previous": null,
        "results": results,
        "quota": quota,
        "used": used,
    })))
}

async fn show(State(h): State<Handle>, Path(path): Path<String>) -> Answer<Json<Value>> {
    let store = store(&h)?;
    let name = name_of(&path)?;
    let a = store
        .get(&name)
        .ok_or_else(|| Failure::from(ArtifactError::NotFound(name.to_string())))?;
    Ok(Json(a.json(&store.config().base_url)))
}

async fn remove(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(path): Path<String>,
) -> Answer<StatusCode> {
    let store = store(&h)?;
    let (user, admin) = crate::http::user(&h, &headers)?;
    let name = name_of(&path)?;
    store.delete(&name, &user, admin)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn upload(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(path): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Answer<(StatusCode, Json<Value>)> {
    let store = store(&h)?;
    let (user, admin) = crate::http::user(&h, &headers)?;
    let name = name_of(&path)?;
    let max_age = match q.get("max_age").map(|v| v.trim()) {
        None | Some("") => None,
        Some(v) => Some(Duration::from_secs(v.parse().map_err(|_| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("'max_age' should be a number of seconds, not {v:?}"),
            )
        })?)),
    };
    let length = match headers.get(header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| Failure::new(StatusCode::BAD_REQUEST, "a bad Content-Length"))?,
        ),
    };
    let mut upload = store.begin(name, &user, admin, max_age, length).await?;
    let mut stream = body.into_data_stream();
    loop {
        let next =
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut stream), cx));
        // a client that stops sending gives its share of the quota back
        let next = tokio::time::timeout(UPLOAD_IDLE, next).await.map_err(|_| {
            Failure::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "no data for {} s: the upload is abandoned",
                    UPLOAD_IDLE.as_secs()
                ),
            )
        })?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| Failure::from(ArtifactError::Body(e.to_string())))?;
        upload.write(&chunk).await?;
    }
    let a = upload.finish().await?;
    Ok((StatusCode::CREATED, Json(a.json(&store.config().base_url))))
}
