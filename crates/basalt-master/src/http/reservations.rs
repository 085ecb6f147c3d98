//! The reservations API (basalt's extension of v0.2, docs/reservations.md):
//! `/api/v0.2/reservations/` create and list, `ID/` show (and `DELETE`: release), `ID/renew/`,
//! `ID/boot/`, `ID/exec/`, `ID/power-off/`, `ID/release/`. Every call needs a token (the
//! router's layer); acting on a reservation needs its holder's or an admin's. The lease's
//! secrets (console and watch tokens, the generated SSH private key) are in the answers to
//! its holder only and never logged. Errors are `{"error": "...", "message": "..."}`; a
//! refusal of requirements no device meets adds `"unmet": [KEY...]`.

use super::{body, rfc3339, user, ApiError, BODY_LIMIT};
use crate::engine::{boot_job, Handle, NewLease, ReservationError};
use crate::model::{DeviceHealth, Priority};
use crate::reservation::boot::BootRequest;
use crate::reservation::requirements::{self, DeviceProperties, Requirements};
use crate::reservation::{secrets, ReservationState};
use crate::scheduler::Target;
use crate::store::{Device, Reservation, ReservationQuery};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// A lease's length when the request gives none: 15 minutes.
pub const DEFAULT_LEASE_SECS: u64 = 900;

/// The routes, under `/api/v0.2/`.
pub fn routes() -> Router<Handle> {
    Router::new()
        .route("/reservations/", get(list).post(create))
        .route("/reservations/{id}/", get(show).delete(release))
        .route("/reservations/{id}/renew/", post(renew))
        .route("/reservations/{id}/boot/", post(boot))
        .route("/reservations/{id}/exec/", post(exec))
        .route("/reservations/{id}/power-off/", post(power_off))
        .route("/reservations/{id}/release/", post(release))
}

/// An error of this API: its status and `{"error", "message"}` (and `unmet`).
#[derive(Debug)]
pub struct ResError {
    status: StatusCode,
    message: String,
    unmet: Option<Vec<&'static str>>,
}

impl ResError {
    fn new(status: StatusCode, message: impl Into<String>) -> ResError {
        ResError {
            status,
            message: message.into(),
            unmet: None,
        }
    }

    fn bad(message: impl Into<String>) -> ResError {
        ResError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ResError {
    fn into_response(self) -> Response {
        let mut b = json!({ "error": self.message, "message": self.message });
        if let Some(u) = self.unmet {
            b["unmet"] = json!(u);
        }
        (self.status, Json(b)).into_response()
    }
}

impl From<ApiError> for ResError {
    fn from(e: ApiError) -> ResError {
        let status = match &e {
            ApiError::BadRequest(_) | ApiError::BadAt { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ResError::new(status, e.to_string())
    }
}

impl From<crate::store::StoreError> for ResError {
    fn from(e: crate::store::StoreError) -> ResError {
        ApiError::from(e).into()
    }
}

impl From<ReservationError> for ResError {
    fn from(e: ReservationError) -> ResError {
        let status = match &e {
            ReservationError::Invalid(_) => StatusCode::BAD_REQUEST,
            ReservationError::NotFound(_) => StatusCode::NOT_FOUND,
            ReservationError::Conflict(_) => StatusCode::CONFLICT,
            ReservationError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ReservationError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ReservationError::Engine(e) => {
                return ApiError::from(crate::engine::EngineError::Invalid(e.to_string())).into()
            }
        };
        ResError::new(status, e.to_string())
    }
}

type ResResult<T> = Result<T, ResError>;

/// The reservation object (docs/reservations.md); `secrets`: the holder's view, with the
/// console and watch tokens and a generated private key.
pub fn reservation_json(r: &Reservation, secrets: bool) -> Value {
    let mut connection = serde_json::Map::new();
    if let Some(c) = &r.connection.console {
        let mut console = json!({"host": c.host, "port": c.port});
        let mut watch = console.clone();
        if secrets {
            console["token"] = json!(r.console_token);
            watch["token"] = json!(r.watch_token);
        }
        connection.insert("console".into(), console);
        connection.insert("watch".into(), watch);
    }
    if let Some(s) = &r.connection.ssh {
        let mut ssh = json!({"host": s.host, "port": s.port, "user": s.user});
        if let (true, Some(k)) = (secrets, &r.ssh_private_key) {
            ssh["private_key"] = json!(k);
        }
        connection.insert("ssh".into(), ssh);
    }
    json!({
        "id": r.id,
        "job_id": r.id,
        "state": r.state.name(),
        "holder": r.holder,
        "device": r.device,
        "device_type": r.device_type,
        "worker": r.worker,
        "requirements": r.requirements.as_ref().map(Requirements::to_json),
        "description": r.description,
        "priority": r.priority.value(),
        "created": rfc3339(r.created),
        "expires": rfc3339(r.expires),
        "lease_secs": r.lease_secs,
        "booted": r.booted,
        "reason": r.reason,
        "ssh_public_key": r.ssh_public_key,
        "connection": connection,
    })
}

/// The reservation path's id, or 404.
fn reservation_id(id: &str) -> ResResult<u64> {
    id.parse()
        .map_err(|_| ResError::new(StatusCode::NOT_FOUND, format!("no reservation {id:?}")))
}

fn find(h: &Handle, id: u64) -> ResResult<Reservation> {
    h.store
        .reservation(id)?
        .ok_or_else(|| ResError::new(StatusCode::NOT_FOUND, format!("no reservation {id}")))
}

/// The reservation if the request's user may act on it (its holder or an admin; 403 else),
/// and whether they are its holder.
fn acting(h: &Handle, headers: &HeaderMap, id: &str) -> ResResult<(Reservation, bool)> {
    let (name, admin) = user(h, headers)?;
    let r = find(h, reservation_id(id)?)?;
    let holder = r.holder == name;
    if !(holder || admin) {
        return Err(ResError::new(
            StatusCode::FORBIDDEN,
            format!(
                "reservation {} is {}'s: only its holder or an admin may act on it",
                r.id, r.holder
            ),
        ));
    }
    Ok((r, holder))
}

/// The reservation as its caller sees it now.
fn answer(h: &Handle, id: u64, holder: bool) -> ResResult<Json<Value>> {
    Ok(Json(reservation_json(&find(h, id)?, holder)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    device_type: Option<String>,
    device: Option<String>,
    requirements: Option<Value>,
    lease_secs: Option<u64>,
    boot: Option<BootRequest>,
    ssh_public_key: Option<String>,
    ssh_user: Option<String>,
    description: Option<String>,
    priority: Option<Value>,
}

/// The devices a reservation may get: every non-Retired one, of the type or the one asked
/// for.
fn candidates(
    h: &Handle,
    device_type: Option<&str>,
    device: Option<&str>,
) -> ResResult<Vec<Device>> {
    let all = h.store.devices()?;
    Ok(all
        .into_iter()
        .filter(|d| d.health != DeviceHealth::Retired)
        .filter(|d| device_type.is_none_or(|t| d.device_type == t))
        .filter(|d| device.is_none_or(|h| d.hostname == h))
        .collect())
}

fn properties(d: &Device) -> DeviceProperties {
    let vars = d
        .dictionary
        .as_deref()
        .and_then(|t| basalt_model::device::render::dictionary_variables(&d.hostname, t).ok())
        .unwrap_or_default();
    DeviceProperties::from_variables(&d.hostname, &vars, &d.tags)
}

fn priority(v: &Option<Value>) -> ResResult<Priority> {
    match v {
        None => Ok(Priority::MEDIUM),
        Some(Value::String(s)) => Priority::from_name(s)
            .or_else(|| s.parse().ok().and_then(Priority::new))
            .ok_or_else(|| {
                ResError::bad(format!(
                    "'priority': {s:?} is not low, medium, high or 0 to 100"
                ))
            }),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .and_then(Priority::new)
            .ok_or_else(|| ResError::bad(format!("'priority': {n} is not 0 to 100"))),
        Some(other) => Err(ResError::bad(format!(
            "'priority': {other} is not a priority"
        ))),
    }
}

async fn create(
    State(h): State<Handle>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ResResult<(StatusCode, Json<Value>)> {
    let (holder, _) = user(&h, &headers)?;
    let mut b: CreateBody = body(&bytes)?;
    let lease_secs = b.lease_secs.unwrap_or(DEFAULT_LEASE_SECS);
    let max = h.max_lease.as_secs();
    if lease_secs == 0 || lease_secs > max {
        return Err(ResError::bad(format!(
            "'lease_secs' must be from 1 to {max} (the master's --max-lease)"
        )));
    }
    let device_type = match b.device_type.as_deref().map(str::trim) {
        Some("") => return Err(ResError::bad("'device_type' is empty")),
        Some(t) => Some(
            h.store
                .resolve_device_type(t)?
                .unwrap_or_else(|| t.to_string()),
        ),
        None => None,
    };
    let device = b.device.as_deref().map(str::trim).map(str::to_string);
    if device.as_deref() == Some("") {
        return Err(ResError::bad("'device' is empty"));
    }
    let requirements = b
        .requirements
        .as_ref()
        .map(Requirements::parse)
        .transpose()
        .map_err(|e| ResError::bad(e.to_string()))?;
    if device_type.is_none() && device.is_none() && requirements.is_none() {
        return Err(ResError::bad(
            "a reservation needs 'device_type', 'device' or 'requirements'",
        ));
    }
    let candidates = candidates(&h, device_type.as_deref(), device.as_deref())?;
    if candidates.is_empty() {
        let what = match (&device, &device_type) {
            (Some(d), _) => format!("no device {d:?} (or it is retired)"),
            (None, Some(t)) => format!("no device of type {t:?} that is not retired"),
            (None, None) => "the lab has no device that is not retired".to_string(),
        };
        return Err(ResError::bad(what));
    }
    // the requirements against every candidate's dictionary
    let (target, tags, first) = match &requirements {
        Some(req) if !req.is_empty() => {
            let props: Vec<DeviceProperties> = candidates.iter().map(properties).collect();
            let eligible = requirements::eligible(req, &props).map_err(|u| ResError {
                status: StatusCode::BAD_REQUEST,
                message: u.message,
                unmet: Some(u.unmet),
            })?;
            let first = eligible.first().cloned();
            let target = match (&device, &device_type) {
                (Some(d), _) if !req.beyond_tags() => Target::Device(d.clone()),
                (None, Some(t)) if !req.beyond_tags() => Target::DeviceType(t.clone()),
                _ => Target::AnyOf(eligible),
            };
            (target, req.tags.clone(), first)
        }
        _ => {
            let target = match (&device, &device_type) {
                (Some(d), _) => Target::Device(d.clone()),
                (None, Some(t)) => Target::DeviceType(t.clone()),
                (None, None) => {
                    Target::AnyOf(candidates.iter().map(|d| d.hostname.clone()).collect())
                }
            };
            (
                target,
                Vec::new(),
                candidates.first().map(|d| d.hostname.clone()),
            )
        }
    };
    if let Some(boot) = b.boot.as_mut() {
        resolve_artifacts(&h, boot)?;
    }
    // a boot is checked against a device it may get (and again against the one it gets)
    if let (Some(boot), Some(hostname)) = (&b.boot, &first) {
        boot_job(&h.store, &h.device_types, 0, hostname, boot)?;
    }
    let (ssh_public_key, ssh_private_key) = match b.ssh_public_key.as_deref() {
        Some(k) => (
            secrets::check_public_key(k).map_err(|e| ResError::bad(e.to_string()))?,
            None,
        ),
        None => {
            let pair = secrets::ssh_keypair(&format!("basalt-reservation-{holder}"))
                .map_err(|e| ResError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            (pair.public, Some(pair.private))
        }
    };
    let ssh_user = b.ssh_user.unwrap_or_else(|| "root".into());
    crate::model::check_name("ssh_user", &ssh_user).map_err(ResError::bad)?;
    let token = || {
        secrets::token()
            .map_err(|e| ResError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    };
    let lease = NewLease {
        target,
        tags,
        priority: priority(&b.priority)?,
        description: b
            .description
            .unwrap_or_else(|| format!("reservation for {holder}")),
        lease: crate::store::NewReservation {
            holder: holder.clone(),
            requirements: requirements.filter(|r| !r.is_empty()),
            lease_secs,
            console_token: token()?,
            watch_token: token()?,
            ssh_public_key,
            ssh_private_key,
            ssh_user,
            boot: b.boot,
        },
    };
    let id = h.reserve(lease).await?;
    Ok((StatusCode::CREATED, answer(&h, id, true)?))
}

async fn list(
    State(h): State<Handle>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ResResult<Json<Value>> {
    let (name, admin) = user(&h, &headers)?;
    let state = match q.get("state").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(s) => Some(ReservationState::from_name(s).ok_or_else(|| {
            ResError::bad(format!(
                "unknown reservation state {s:?}: queued, allocated, booting, ready, failed, released or expired"
            ))
        })?),
        None => None,
    };
    let all = matches!(q.get("all").map(String::as_str), Some("1" | "true" | "yes"));
    if all && !admin {
        return Err(ResError::new(
            StatusCode::FORBIDDEN,
            "?all=1 (everyone's reservations) is for admins",
        ));
    }
    let (limit, offset) = super::paging(&q)?;
    let (count, list) = h.store.reservations(&ReservationQuery {
        holder: (!all).then(|| name.clone()),
        state,
        limit,
        offset,
    })?;
    let results: Vec<Value> = list
        .iter()
        .map(|r| reservation_json(r, r.holder == name))
        .collect();
    Ok(Json(json!({ "count": count, "results": results })))
}

async fn show(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ResResult<Json<Value>> {
    let (name, _) = user(&h, &headers)?;
    let r = find(&h, reservation_id(&id)?)?;
    let holder = r.holder == name;
    Ok(Json(reservation_json(&r, holder)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RenewBody {
    lease_secs: Option<u64>,
}

/// An optional JSON body: empty is the default.
fn optional<T: serde::de::DeserializeOwned + Default>(bytes: &Bytes) -> ResResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    Ok(body(bytes)?)
}

async fn renew(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ResResult<Json<Value>> {
    let (r, holder) = acting(&h, &headers, &id)?;
    let b: RenewBody = optional(&bytes)?;
    h.renew(r.id, b.lease_secs).await?;
    answer(&h, r.id, holder)
}

/// `artifact:NAME` URLs of a boot request become the store's download URLs (400 when unknown
/// or when the master has no store).
fn resolve_artifacts(h: &Handle, req: &mut BootRequest) -> ResResult<()> {
    let store = h.artifacts.clone();
    req.resolve_artifacts(&move |name| store.as_ref().and_then(|s| s.artifact_url(name)))
        .map_err(|e| ResError::bad(e.to_string()))
}

async fn boot(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ResResult<(StatusCode, Json<Value>)> {
    let (r, holder) = acting(&h, &headers, &id)?;
    let mut req: BootRequest = body(&bytes)?;
    resolve_artifacts(&h, &mut req)?;
    h.boot(r.id, req).await?;
    Ok((StatusCode::ACCEPTED, answer(&h, r.id, holder)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecBody {
    command: String,
    timeout_secs: Option<u64>,
}

/// The longest command timeout an exec may ask for.
const MAX_EXEC_SECS: u64 = 3600;

async fn exec(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ResResult<Json<Value>> {
    let (r, _) = acting(&h, &headers, &id)?;
    let b: ExecBody = body(&bytes)?;
    if b.command.trim().is_empty() {
        return Err(ResError::bad("'command' is empty"));
    }
    if b.command.len() > BODY_LIMIT / 4 {
        return Err(ResError::bad("'command' is too long"));
    }
    let timeout = b.timeout_secs.unwrap_or(60);
    if timeout == 0 || timeout > MAX_EXEC_SECS {
        return Err(ResError::bad(format!(
            "'timeout_secs' must be from 1 to {MAX_EXEC_SECS}"
        )));
    }
    let out = h.exec(r.id, b.command, timeout).await?;
    Ok(Json(json!({
        "output": out.output,
        "exit_status": out.exit_status,
        "truncated": out.truncated,
    })))
}

async fn power_off(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ResResult<Json<Value>> {
    let (r, holder) = acting(&h, &headers, &id)?;
    h.power_off(r.id).await?;
    answer(&h, r.id, holder)
}

async fn release(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ResResult<Json<Value>> {
    let (r, holder) = acting(&h, &headers, &id)?;
    h.release(r.id).await?;
    answer(&h, r.id, holder)
}
