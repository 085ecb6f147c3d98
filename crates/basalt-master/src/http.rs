//! LAVA's REST API v0.2 (a first subset), served under `/api/v0.2/` with LAVA's exact paths,
//! trailing slash included (the `lava-api` crate follows no redirects), and LAVA's shapes:
//! pages `{count, next, previous, results}` with absolute `next`/`previous` URLs, states by
//! LAVA's names, times in RFC 3339 (UTC). Tags are shown by id as LAVA's are (`lava-api`
//! parses `tags` as integers and looks them up in `tags/`): the store keeps tag names, and
//! a tag's id is derived from its name ([`tag_id`]), so it needs no table and never changes.
//!
//! Authentication is `Authorization: Token <token>` (a token made by `basalt-master token
//! add`, checked against the hash in the store). Anonymous reads are a configuration choice,
//! off by default ([`crate::engine::Config::anonymous_read`], `basalt-master
//! --anonymous-read`): when off, every request under `/api/v0.2/` without a valid token is
//! refused with 401 — GETs and `jobs/validate/` included — except `system/version/`, which
//! stays open so that a client can tell it reached a master before it authenticates; when on,
//! the reads (GETs, `jobs/validate/`) are served without one, as on a public LAVA (a token
//! that is not valid is refused either way). Every write (submit, cancel) needs a valid token,
//! and the admin writes (workers, device types, devices, dictionaries) a token of an admin
//! user. Errors are `{"message": "..."}` with 400 (bad request), 401 (no valid token), 403
//! (not an admin), 404 (no such object). Request bodies are limited to [`BODY_LIMIT`].
//!
//! The same router serves LAVA's XML-RPC API for lavacli at `/RPC2` ([`crate::rpc`]), under the
//! same body limit.

use crate::engine::{EngineError, Handle};
use crate::logs::{self, LogError};
use crate::scheduler::Target;
use crate::store::{Job, StoreError};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use basalt_proto::FailureCause;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;

/// The largest request body accepted (a job definition with inline tests fits easily).
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// The version `system/version/` reports.
pub const VERSION: &str = "2026.07";

/// The page size when a request gives no `limit` (LAVA's).
const DEFAULT_LIMIT: u32 = 50;

/// The largest `limit` served: a page stays small however it is asked for.
const MAX_LIMIT: u32 = 1000;

/// Why a request failed; each is one HTTP status with a `{"message"}` body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// A 400 about a place in what was sent: the body also has its `line` and `column`.
    #[error("{message}")]
    BadAt {
        message: String,
        line: usize,
        column: usize,
    },
    #[error("authentication credentials were not provided or are not valid")]
    Unauthorized,
    #[error("you do not have permission to perform this action")]
    Forbidden,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::BadAt { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self {
            ApiError::BadAt { line, column, .. } => {
                json!({ "message": self.to_string(), "line": line, "column": column })
            }
            _ => json!({ "message": self.to_string() }),
        };
        (self.status(), Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            // a reference to something unregistered, or a duplicate: the request is wrong
            StoreError::Missing { .. } | StoreError::Exists { .. } => {
                ApiError::BadRequest(e.to_string())
            }
            StoreError::Sql(_)
            | StoreError::Postgres(_)
            | StoreError::Connect { .. }
            | StoreError::Thread { .. }
            | StoreError::NotPostgres { .. }
            | StoreError::Disconnected
            | StoreError::Column { .. }
            | StoreError::TooNew { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Invalid(why) => ApiError::BadRequest(why),
            EngineError::NotFound(why) => ApiError::NotFound(why),
            EngineError::Store(e) => e.into(),
            EngineError::Stopped => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

mod admin;
pub mod reservations;

/// The API's routes on the engine's handle, with the body limit, and the web pages
/// ([`crate::web`]).
pub fn router(handle: Handle) -> Router {
    let api = Router::new()
        .route("/jobs/", get(jobs).post(submit))
        .route("/jobs/{id}/", get(job))
        .route("/jobs/{id}/logs/", get(job_logs))
        .route("/jobs/{id}/yaml/", get(job_yaml))
        .route("/jobs/{id}/tests/", get(job_tests))
        .route("/jobs/{id}/junit/", get(job_junit))
        .route("/jobs/validate/", axum::routing::post(validate))
        .route("/jobs/{id}/cancel/", get(cancel).post(cancel))
        .merge(admin::routes())
        .merge(reservations::routes())
        // the artifact store's API (crate::artifacts::api; 404 when the master has none)
        .merge(crate::artifacts::api::routes())
        // every route but the version: a token unless anonymous reads are on
        .route_layer(axum::middleware::from_fn_with_state(
            handle.clone(),
            authenticated,
        ))
        .route("/system/version/", get(version));
    let router = Router::new()
        .nest("/api/v0.2", api)
        // lavacli's XML-RPC endpoint (crate::rpc)
        .route("/RPC2", axum::routing::post(crate::rpc::handle))
        .route("/RPC2/", axum::routing::post(crate::rpc::handle))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(handle.clone());
    // the web pages (crate::web) on the same address
    match crate::web::Web::new(handle) {
        Ok(web) => router.merge(crate::web::router(web)),
        Err(e) => {
            tracing::error!("the web pages are off: {e}");
            router
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes (then finishes the requests in
/// flight and returns).
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: Handle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(handle))
        .with_graceful_shutdown(shutdown)
        .await
}

// ---- helpers ---------------------------------------------------------------------------------

/// The user of the request's token, and whether they are an admin; 401 without a valid one.
pub(crate) fn user(h: &Handle, headers: &HeaderMap) -> ApiResult<(String, bool)> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Token "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized)?;
    h.store.token_user(token)?.ok_or(ApiError::Unauthorized)
}

/// Refuses a request without a valid token (401) unless anonymous reads are on, and one with
/// a token that is not valid in any case (as LAVA's token authentication does); the handlers
/// check what their writes need beyond that.
async fn authenticated(
    State(h): State<Handle>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let anonymous = !request.headers().contains_key(header::AUTHORIZATION);
    if !(anonymous && h.anonymous_read) {
        if let Err(e) = user(&h, request.headers()) {
            return e.into_response();
        }
    }
    next.run(request).await
}

/// The request's user if they are an admin: 401 without a valid token, 403 for a non-admin.
fn require_admin(h: &Handle, headers: &HeaderMap) -> ApiResult<String> {
    match user(h, headers)? {
        (name, true) => Ok(name),
        (_, false) => Err(ApiError::Forbidden),
    }
}

/// Parses a JSON body into `T`: 400 with serde's reason when it is not.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))
}

/// A query parameter as a number; 400 when it is there but not one.
fn number<T: std::str::FromStr>(q: &HashMap<String, String>, name: &str) -> ApiResult<Option<T>> {
    match q.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("'{name}' should be a number, not {v:?}"))),
    }
}

/// A job id from the path: a path that is not a number names no job (404).
fn job_id(id: &str) -> ApiResult<u64> {
    id.parse()
        .map_err(|_| ApiError::NotFound(format!("no job {id:?}")))
}

/// `limit` and `offset` of a list request.
fn paging(q: &HashMap<String, String>) -> ApiResult<(u32, u32)> {
    let limit = number::<u32>(q, "limit")?
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT);
    let offset = number::<u32>(q, "offset")?.unwrap_or(0);
    Ok((limit, offset))
}

/// A LAVA page: `next`/`previous` are absolute URLs (what `lava-api` follows) to the same
/// list with the other parameters kept.
fn page(
    headers: &HeaderMap,
    path: &str,
    q: &HashMap<String, String>,
    (limit, offset): (u32, u32),
    count: u64,
    results: Vec<Value>,
) -> Value {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let url = |offset: u64| {
        let mut params: Vec<(String, String)> = q
            .iter()
            .filter(|(k, _)| *k != "limit" && *k != "offset")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        params.sort();
        params.push(("limit".into(), limit.to_string()));
        params.push(("offset".into(), offset.to_string()));
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        format!("http://{host}/api/v0.2/{path}?{}", query.join("&"))
    };
    let (limit, offset) = (u64::from(limit), u64::from(offset));
    let next = (offset + limit < count).then(|| url(offset + limit));
    let previous = (offset > 0).then(|| url(offset.saturating_sub(limit)));
    json!({ "count": count, "next": next, "previous": previous, "results": results })
}

/// Percent-encodes a query component (unreserved characters stay).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A page of an in-memory list (devices, workers, device types: a lab has few).
fn page_of(
    headers: &HeaderMap,
    path: &str,
    q: &HashMap<String, String>,
    items: Vec<Value>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = paging(q)?;
    let count = items.len() as u64;
    let results = items
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect();
    Ok(Json(page(
        headers,
        path,
        q,
        (limit, offset),
        count,
        results,
    )))
}

/// Milliseconds since the epoch as RFC 3339 in UTC (`2026-07-01T12:00:00.000Z`).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// Milliseconds since the epoch of an RFC 3339 time (`2026-07-01T12:00:00Z`, with an optional
/// fraction and a `Z` or `±HH:MM` offset; a space may stand for the `T`); `None` if it is not
/// one, or before 1970.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, rest) = (s.get(..10)?, s.get(10..)?);
    let mut d = date.split('-');
    let (y, m, day): (i64, u32, u32) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (hh, mm, ss) = (
        rest.get(0..2)?.parse::<i64>().ok()?,
        rest.get(3..5)?.parse::<i64>().ok()?,
        rest.get(6..8)?.parse::<i64>().ok()?,
    );
    if rest.get(2..3)? != ":" || rest.get(5..6)? != ":" || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut tail = rest.get(8..)?;
    let mut ms = 0i64;
    if let Some(frac) = tail.strip_prefix('.') {
        let digits = frac.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        ms = format!("{:0<3}", frac.get(..digits.min(3))?).parse().ok()?;
        tail = frac.get(digits..)?;
    }
    let offset_secs = match tail {
        "Z" | "z" => 0,
        t if t.len() == 6 && (t.starts_with('+') || t.starts_with('-')) && &t[3..4] == ":" => {
            let secs = t[1..3].parse::<i64>().ok()? * 3600 + t[4..6].parse::<i64>().ok()? * 60;
            if t.starts_with('-') {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss - offset_secs;
    u64::try_from(secs * 1000 + ms).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days` algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A tag's id as the API shows it: the first 31 bits of the SHA-256 of its name (stable
/// without a table; two tags of one lab sharing an id is a 1-in-2^31 chance per pair).
pub fn tag_id(name: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(name.as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) & 0x7fff_ffff
}

/// The ids of tag names.
fn tag_ids(tags: &[String]) -> Vec<u32> {
    tags.iter().map(|t| tag_id(t)).collect()
}

// ---- shapes ----------------------------------------------------------------------------------

/// A job as LAVA's `jobs/` shows it.
fn job_json(j: &Job) -> Value {
    let requested_device_type = match &j.target {
        Target::DeviceType(t) => Some(t.clone()),
        Target::Device(_) | Target::AnyOf(_) => None,
    };
    json!({
        "id": j.id,
        "submitter": j.submitter,
        "viewing_groups": [],
        "description": j.description,
        "health_check": j.health_check,
        "requested_device_type": requested_device_type,
        "tags": tag_ids(&j.tags),
        "actual_device": j.actual_device,
        "submit_time": rfc3339(j.submit_time),
        "start_time": j.start_time.map(rfc3339),
        "end_time": j.end_time.map(rfc3339),
        "state": j.state.name(),
        "health": j.health.name(),
        "priority": j.priority.value(),
        "definition": j.definition,
        "original_definition": j.definition,
        "multinode_definition": j.group.as_ref().map_or("", |g| g.multinode_definition.as_str()),
        // LAVA's TestJob fields of a MultiNode sub-job: "<first id>.<n>", the group's uuid
        "sub_id": j.group.as_ref().map_or("", |g| g.sub_id.as_str()),
        "target_group": j.group.as_ref().map(|g| g.target_group.as_str()),
        "is_multinode": j.group.is_some(),
        // basalt's: the sub-job's role
        "role": j.group.as_ref().map(|g| g.role.as_str()),
        "failure_tags": [],
        // LAVA's server keeps the dispatcher's error of an Incomplete job here
        "failure_comment": j.error_msg,
        // basalt's: LAVA's error type of the failure (Infrastructure, Job, LAVATimeout, ...)
        "error_type": j.error_type,
        // basalt's: who is at fault (infrastructure, bootloader, kernel, job, test, canceled)
        "failure_cause": j.failure_cause.map(FailureCause::name),
    })
}

// ---- handlers --------------------------------------------------------------------------------

async fn version() -> Json<Value> {
    Json(json!({ "version": VERSION }))
}

#[derive(Deserialize)]
struct Submission {
    definition: String,
}

async fn submit(
    State(h): State<Handle>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (submitter, _) = user(&h, &headers)?;
    let s: Submission = body(&bytes)?;
    let ids = h.submit_all(&submitter, &s.definition).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "message": "job submitted", "job_ids": ids })),
    ))
}

/// Names of LAVA states or healths, comma-separated (`state__in=Running,Finished`), case
/// insensitive; 400 for an unknown one.
fn names_of<T>(list: &str, from_name: impl Fn(&str) -> Option<T>, what: &str) -> ApiResult<Vec<T>> {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            from_name(n).ok_or_else(|| ApiError::BadRequest(format!("unknown job {what} {n:?}")))
        })
        .collect()
}

/// A time filter (`submit_time__gt=2026-07-01T12:00:00Z`) in milliseconds; 400 when it is not
/// RFC 3339.
fn time_param(q: &HashMap<String, String>, name: &str) -> ApiResult<Option<u64>> {
    match q.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_rfc3339(v).map(Some).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "'{name}' should be a time in RFC 3339 (2026-07-01T12:00:00Z), not {v:?}"
            ))
        }),
    }
}

/// `jobs/`: LAVA's filters (`state`, `state__in`, `health`, `health__in`, `id`, `id__in`,
/// `id__gt`, `submit_time__gt`, `start_time__gt`, `end_time__gt`, `actual_device`,
/// `submitter`, `target_group`), `ordering` (`[-]id`,
/// `[-]submit_time`, `[-]start_time`, `[-]end_time`; default `-id`), `limit` and `offset`.
async fn jobs(
    State(h): State<Handle>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    use crate::model::{JobHealth, JobState};
    use crate::store::{JobOrder, JobQuery};
    let list = |one: &str, many: &str| {
        [q.get(one), q.get(many)]
            .into_iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
    };
    let states = names_of(&list("state", "state__in"), JobState::from_name, "state")?;
    let healths = names_of(
        &list("health", "health__in"),
        JobHealth::from_name,
        "health",
    )?;
    let ids = match list("id", "id__in") {
        l if l.trim().is_empty() => None,
        l => Some(
            l.split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .map(|i| {
                    i.parse::<u64>().map_err(|_| {
                        ApiError::BadRequest(format!("'id' should be a number, not {i:?}"))
                    })
                })
                .collect::<ApiResult<Vec<u64>>>()?,
        ),
    };
    let (order, descending) = match q
        .get("ordering")
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
    {
        None => (JobOrder::Id, true),
        Some(o) => {
            let (name, descending) = match o.strip_prefix('-') {
                Some(n) => (n, true),
                None => (o, false),
            };
            let order = JobOrder::from_name(name).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "cannot order jobs by {o:?}: id, submit_time, start_time or end_time (with - for descending)"
                ))
            })?;
            (order, descending)
        }
    };
    let paging = paging(&q)?;
    // an empty `__in` list matches nothing, as Django's does (lava-api asks `state__in=` when
    // every state is excluded)
    if ["state__in", "health__in", "id__in"]
        .iter()
        .any(|k| q.get(*k).is_some_and(|v| v.trim().is_empty()))
    {
        return Ok(Json(page(&headers, "jobs/", &q, paging, 0, Vec::new())));
    }
    let query = JobQuery {
        states,
        healths,
        ids,
        id_after: number::<u64>(&q, "id__gt")?,
        submitted_after: time_param(&q, "submit_time__gt")?,
        started_after: time_param(&q, "start_time__gt")?,
        ended_after: time_param(&q, "end_time__gt")?,
        target_group: q.get("target_group").cloned(),
        device: q.get("actual_device").cloned(),
        submitter: q.get("submitter").cloned(),
        order,
        descending,
        limit: paging.0,
        offset: paging.1,
    };
    let (count, jobs) = h.store.query_jobs(&query)?;
    let results = jobs.iter().map(job_json).collect();
    Ok(Json(page(&headers, "jobs/", &q, paging, count, results)))
}

/// The job `id`, or 404.
fn find_job(h: &Handle, id: &str) -> ApiResult<Job> {
    let id = job_id(id)?;
    h.store
        .job(id)?
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))
}

async fn job(State(h): State<Handle>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(job_json(&find_job(&h, &id)?)))
}

async fn job_yaml(State(h): State<Handle>, Path(id): Path<String>) -> ApiResult<Response> {
    let job = find_job(&h, &id)?;
    Ok(([(header::CONTENT_TYPE, "application/yaml")], job.definition).into_response())
}

/// `jobs/<id>/junit/`: the job's results as JUnit XML, a `testsuite` per definition, a
/// `failure` for each failed case, `skipped` for each skipped one.
async fn job_junit(State(h): State<Handle>, Path(id): Path<String>) -> ApiResult<Response> {
    let job = find_job(&h, &id)?;
    let cases = crate::results::test_cases(job.results.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::Internal(format!("job {}: {e}", job.id)))?;
    let xml = crate::results::junit(job.id, &cases);
    Ok(([(header::CONTENT_TYPE, "application/xml")], xml).into_response())
}

/// `jobs/validate/` (`{"definition": "..."}`): LAVA's answer, `{"message": "Job valid."}` or
/// `{"message": "Job invalid: ..."}`, both 200 as LAVA's; no token needed (nothing is stored).
async fn validate(bytes: Bytes) -> ApiResult<Json<Value>> {
    #[derive(Deserialize)]
    struct Body {
        definition: Option<String>,
    }
    let b: Body = body(&bytes)?;
    let definition = b
        .definition
        .filter(|d| !d.trim().is_empty())
        .ok_or_else(|| ApiError::BadRequest("'definition': a job definition is required".into()))?;
    let message = match basalt_model::job::parse_job("job.yaml", &definition) {
        Ok(_) => "Job valid.".to_string(),
        Err(e) => format!("Job invalid: {e}"),
    };
    Ok(Json(json!({ "message": message })))
}

/// Test cases per page of `jobs/<id>/tests/` (pages by `page`, as LAVA's).
const TESTS_PAGE: usize = 50;

/// `jobs/<id>/tests/?page=N`: the job's results as LAVA's test cases ([`crate::results`]).
async fn job_tests(
    State(h): State<Handle>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let job = find_job(&h, &id)?;
    let page_no = number::<usize>(&q, "page")?.unwrap_or(1);
    if page_no == 0 {
        return Err(ApiError::NotFound("invalid page: pages start at 1".into()));
    }
    let cases = crate::results::test_cases(job.results.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::Internal(format!("job {}: {e}", job.id)))?;
    let count = cases.len();
    let pages = count.div_ceil(TESTS_PAGE).max(1);
    if page_no > pages {
        return Err(ApiError::NotFound(format!(
            "invalid page {page_no}: there are {pages}"
        )));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let url = |p: usize| format!("http://{host}/api/v0.2/jobs/{}/tests/?page={p}", job.id);
    let logged = job.end_time.or(job.start_time).map(rfc3339);
    let results: Vec<Value> = cases
        .into_iter()
        .skip((page_no - 1) * TESTS_PAGE)
        .take(TESTS_PAGE)
        .map(|c| {
            json!({
                "id": c.id,
                "name": c.name,
                "unit": c.unit,
                "result": c.result,
                "measurement": c.measurement,
                "metadata": c.metadata,
                "suite": c.suite_id,
                "start_log_line": Value::Null,
                "end_log_line": Value::Null,
                // LAVA's is the id of the TestSet (an integer), as `lava-api` parses it
                "test_set": c.test_set_id,
                // basalt's: who is at fault for a failed case
                "failure_cause": c.cause.map(FailureCause::name),
                "logged": logged,
                "resource_uri": format!("/results/{}/{}/{}", job.id, c.suite, c.name),
            })
        })
        .collect();
    Ok(Json(json!({
        "count": count,
        "next": (page_no < pages).then(|| url(page_no + 1)),
        "previous": (page_no > 1).then(|| url(page_no - 1)),
        "results": results,
    })))
}

async fn job_logs(
    State(h): State<Handle>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let job = find_job(&h, &id)?;
    let start = number::<u64>(&q, "start")?.unwrap_or(0);
    // LAVA's `end` is exclusive, and 0 (or none) is the end of the log
    let end = number::<u64>(&q, "end")?.filter(|e| *e > 0);
    // streamed as it is read: a 100 MiB log costs the master a few chunks of memory
    let chunks = logs::LineChunks::open(h.log_dir(job.id), start, end).await?;
    if chunks.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no log data for job {} from line {start} yet",
            job.id
        )));
    }
    Ok((
        [(header::CONTENT_TYPE, "application/yaml")],
        axum::body::Body::from_stream(chunks),
    )
        .into_response())
}

async fn cancel(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    user(&h, &headers)?;
    let job = find_job(&h, &id)?;
    let canceled = h.cancel(job.id).await?;
    let message = if canceled {
        format!("job {} canceled", job.id)
    } else {
        format!("job {} had already finished", job.id)
    };
    Ok(Json(json!({ "message": message })))
}

/// A name that is part of URL paths ([`crate::model::check_name`]); 400 when it is not one.
fn check_name(field: &str, name: &str) -> ApiResult<()> {
    crate::model::check_name(field, name).map_err(ApiError::BadRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_798_761_599_000), "2026-12-31T23:59:59.000Z");
    }

    #[test]
    fn rfc3339_times_are_read_back() {
        for ms in [0, 951_782_400_123, 1_798_761_599_000, 1_787_329_529_120] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms), "{}", rfc3339(ms));
        }
        assert_eq!(
            parse_rfc3339("2026-07-01T14:00:00+02:00"),
            parse_rfc3339("2026-07-01T12:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2026-07-01 12:00:00.5Z"),
            parse_rfc3339("2026-07-01T12:00:00.500Z")
        );
        assert_eq!(
            parse_rfc3339("2026-07-01T12:00:00.123456Z"),
            Some(1_782_907_200_123)
        );
        for bad in [
            "",
            "2026-07-01",
            "2026-13-01T00:00:00Z",
            "2026-07-01T12:00:00",
            "yesterday",
            "2026-07-01T12:00:00.Z",
            "1969-12-31T23:59:59Z",
            "2026-07-01T12:00:00+0200",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn query_components_are_encoded() {
        assert_eq!(encode("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(encode("Submitted"), "Submitted");
    }
}
