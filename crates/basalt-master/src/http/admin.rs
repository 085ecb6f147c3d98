//! The lab's registry in LAVA's REST API v0.2: devices (with their dictionaries, health and
//! tags), device types (with their health checks and schedules), aliases, workers and tags.
//! Reads are served as the other reads are; every write needs an admin token.
//!
//! LAVA's paths and fields, and basalt's additions where LAVA's clients need none and basalt's
//! CLI needs one, each marked "basalt's" below: a device's `dictionary` given when it is added
//! (checked first, so a device is never registered half), `devices/<h>/tags/` to add and
//! remove one tag by name (LAVA's REST API sets tags by id), `devices/<h>/health_check/` to
//! queue a check now, and a worker's `public_key` (the master admits it by writing
//! `certs/workers/<name>.key`; its answer carries the master's own `master_public_key`).

use super::{
    body, check_name, page_of, require_admin, rfc3339, tag_id, tag_ids, ApiError, ApiResult,
};
use crate::dictionary;
use crate::engine::{now_ms, Handle};
use crate::health::Denominator;
use crate::model::{DeviceHealth, DeviceState, WorkerHealth};
use crate::store::{Device, DeviceChange, DeviceTypeChange, DeviceTypeDetails, Worker};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The routes of this module (under `/api/v0.2`).
pub(super) fn routes() -> Router<Handle> {
    Router::new()
        .route("/devices/", get(devices).post(add_device))
        .route("/devices/validate/", post(validate_dictionary))
        .route(
            "/devices/{hostname}/",
            get(device).patch(update_device).put(update_device),
        )
        .route("/devices/{hostname}/set_health/", post(set_health))
        .route(
            "/devices/{hostname}/dictionary/",
            get(dictionary).post(set_dictionary),
        )
        .route(
            "/devices/{hostname}/tags/",
            get(device_tags).post(add_device_tag),
        )
        .route(
            "/devices/{hostname}/tags/{tag}/",
            axum::routing::delete(remove_device_tag),
        )
        .route("/devices/{hostname}/health_check/", post(health_check_now))
        .route("/tags/", get(tags))
        .route("/tags/{id}/", get(tag))
        .route("/workers/", get(workers).post(add_worker))
        .route(
            "/workers/{hostname}/",
            get(worker).patch(update_worker).put(update_worker),
        )
        .route("/workers/{hostname}/set_health/", post(set_worker_health))
        .route("/devicetypes/", get(device_types).post(add_device_type))
        .route(
            "/devicetypes/{name}/",
            get(device_type)
                .patch(update_device_type)
                .put(update_device_type),
        )
        .route(
            "/devicetypes/{name}/health_check/",
            get(health_check).post(set_health_check),
        )
        .route("/aliases/", get(aliases).post(add_alias))
        .route("/aliases/{name}/", get(alias).delete(remove_alias))
}

// ---- shapes ----------------------------------------------------------------------------------

/// A device as LAVA's `devices/` shows it.
fn device_json(d: &Device) -> Value {
    json!({
        "hostname": d.hostname,
        "device_type": d.device_type,
        "worker_host": d.worker,
        "description": d.description,
        "tags": tag_ids(&d.tags),
        "state": d.state.name(),
        "health": d.health.name(),
        "current_job": d.current_job,
    })
}

/// A worker as LAVA's `workers/` shows it.
fn worker_json(w: &Worker) -> Value {
    json!({
        "hostname": w.hostname,
        "description": w.description,
        "state": w.state.name(),
        "health": w.health.name(),
        "last_ping": (w.last_seen > 0).then(|| rfc3339(w.last_seen)),
    })
}

/// A device type as LAVA's `devicetypes/` shows it (`health_check`: basalt's, the
/// definition).
fn device_type_json(t: &DeviceTypeDetails) -> Value {
    json!({
        "name": t.name,
        "description": t.description,
        "aliases": t.aliases,
        "health_frequency": t.rule.frequency,
        "health_denominator": t.rule.denominator.name(),
        "disable_health_check": t.rule.disabled,
        "display": true,
        "health_check": t.health_check,
    })
}

/// A tag as LAVA's `tags/` shows it.
fn tag_json(name: &str) -> Value {
    json!({ "id": tag_id(name), "name": name, "description": Value::Null })
}

// ---- lookups ---------------------------------------------------------------------------------

/// The device `hostname`, or 404.
fn find_device(h: &Handle, hostname: &str) -> ApiResult<Device> {
    h.store
        .device(hostname)?
        .ok_or_else(|| ApiError::NotFound(format!("no device {hostname:?}")))
}

fn find_worker(h: &Handle, hostname: &str) -> ApiResult<Worker> {
    h.store
        .worker(hostname)?
        .ok_or_else(|| ApiError::NotFound(format!("no worker {hostname:?}")))
}

fn find_device_type(h: &Handle, name: &str) -> ApiResult<DeviceTypeDetails> {
    h.store
        .device_type(name)?
        .ok_or_else(|| ApiError::NotFound(format!("no device type {name:?}")))
}

/// A device health by LAVA's name (any case); 400 for another.
fn device_health(name: &str) -> ApiResult<DeviceHealth> {
    DeviceHealth::from_name(name).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown device health {name:?}: Good, Unknown, Looping, Bad, Maintenance or Retired"
        ))
    })
}

fn worker_health(name: &str) -> ApiResult<WorkerHealth> {
    WorkerHealth::from_name(name).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown worker health {name:?}: Active, Maintenance or Retired"
        ))
    })
}

/// Tags as a request gives them: names, or the ids `tags/` lists (LAVA's form).
fn tag_names(h: &Handle, tags: &[Value]) -> ApiResult<Vec<String>> {
    let known = all_tags(h)?;
    tags.iter()
        .map(|t| match t {
            Value::String(name) => {
                check_name("tags", name)?;
                Ok(name.clone())
            }
            Value::Number(n) => n
                .as_u64()
                .and_then(|id| known.iter().find(|k| u64::from(tag_id(k)) == id))
                .cloned()
                .ok_or_else(|| ApiError::BadRequest(format!("no tag with id {n}"))),
            other => Err(ApiError::BadRequest(format!(
                "'tags' should be names or ids, not {other}"
            ))),
        })
        .collect()
}

/// Every tag the lab's devices have, by name, once.
fn all_tags(h: &Handle) -> ApiResult<Vec<String>> {
    let mut names: Vec<String> = h
        .store
        .devices()?
        .into_iter()
        .flat_map(|d| d.tags)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Checks a dictionary against the master's templates: 400 with its line and column.
fn check_dictionary(h: &Handle, hostname: &str, text: &str) -> ApiResult<()> {
    dictionary::check(hostname, text, &h.device_types).map_err(|e| match e.position {
        Some((line, column)) => ApiError::BadAt {
            message: format!(
                "device {hostname}: dictionary: {} (line {line}, column {column})",
                e.detail
            ),
            line,
            column,
        },
        None => ApiError::BadRequest(format!("device {hostname}: dictionary: {}", e.detail)),
    })
}

/// Checks a health-check definition as a submission would be (LAVA's submission rules).
fn check_health_check(name: &str, definition: &str) -> ApiResult<()> {
    basalt_model::job::parse_job("health-check.yaml", definition)
        .map(|_| ())
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "device type {name}: the health check is not a valid job: {e}"
            ))
        })
}

// ---- devices ---------------------------------------------------------------------------------

/// `devices/`: Retired devices only with `?all=...` (LAVA's).
async fn devices(
    State(h): State<Handle>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let all = q.contains_key("all");
    let devices = h.store.devices()?;
    let shown = devices
        .iter()
        .filter(|d| all || d.health != DeviceHealth::Retired)
        .map(device_json)
        .collect();
    page_of(&headers, "devices/", &q, shown)
}

async fn device(State(h): State<Handle>, Path(hostname): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(device_json(&find_device(&h, &hostname)?)))
}

#[derive(Deserialize)]
struct NewDevice {
    hostname: String,
    device_type: String,
    worker_host: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Vec<Value>,
    /// LAVA's default for a new device: Maintenance.
    #[serde(default)]
    health: Option<String>,
    /// basalt's: the device dictionary, checked before the device is added.
    #[serde(default)]
    dictionary: Option<String>,
}

/// `POST devices/`: a new device, in Maintenance unless `health` says otherwise (LAVA's
/// model default: an admin puts it into service once it is set up).
async fn add_device(
    State(h): State<Handle>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_admin(&h, &headers)?;
    let d: NewDevice = body(&bytes)?;
    check_name("hostname", &d.hostname)?;
    let health = match &d.health {
        Some(name) => device_health(name)?,
        None => DeviceHealth::Maintenance,
    };
    if let Some(text) = &d.dictionary {
        check_dictionary(&h, &d.hostname, text)?;
    }
    let device = Device {
        tags: tag_names(&h, &d.tags)?,
        hostname: d.hostname,
        device_type: d.device_type,
        worker: d.worker_host,
        description: d.description.unwrap_or_default(),
        dictionary: d.dictionary,
        state: DeviceState::Idle,
        health,
        current_job: None,
    };
    h.store.add_device(&device)?;
    h.reschedule();
    let stored = find_device(&h, &device.hostname)?;
    Ok((StatusCode::CREATED, Json(device_json(&stored))))
}

#[derive(Deserialize)]
struct DeviceUpdate {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    worker_host: Option<String>,
    #[serde(default)]
    device_type: Option<String>,
    #[serde(default)]
    tags: Option<Vec<Value>>,
    #[serde(default)]
    health: Option<String>,
}

/// `PATCH`/`PUT devices/<hostname>/`: the fields given change.
async fn update_device(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(hostname): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    require_admin(&h, &headers)?;
    let u: DeviceUpdate = body(&bytes)?;
    find_device(&h, &hostname)?;
    let health = u.health.as_deref().map(device_health).transpose()?;
    let change = DeviceChange {
        description: u.description,
        worker: u.worker_host,
        device_type: u.device_type,
        tags: u.tags.map(|t| tag_names(&h, &t)).transpose()?,
    };
    h.store.update_device(&hostname, &change)?;
    if let Some(health) = health {
        h.store.set_device_health(&hostname, health, now_ms())?;
        h.cancel_jobs_of_retired(std::slice::from_ref(&hostname))
            .await?;
    }
    h.reschedule();
    Ok(Json(device_json(&find_device(&h, &hostname)?)))
}

#[derive(Deserialize)]
struct SetHealth {
    health: String,
    /// LAVA records it in the device's log; basalt has none yet and echoes it back.
    #[serde(default)]
    reason: Option<String>,
}

/// `POST devices/<hostname>/set_health/` (`{"health", "reason"}`): an admin's health. Unknown
/// makes the device get a health check (when its type has one) before test jobs; Good lets it
/// run test jobs at once; Bad, Maintenance and Retired take it out (a Retired device's job is
/// canceled).
async fn set_health(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(hostname): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    require_admin(&h, &headers)?;
    let r: SetHealth = body(&bytes)?;
    let health = device_health(&r.health)?;
    find_device(&h, &hostname)?;
    h.store.set_device_health(&hostname, health, now_ms())?;
    h.cancel_jobs_of_retired(std::slice::from_ref(&hostname))
        .await?;
    h.reschedule();
    let why = r.reason.map(|r| format!(" ({r})")).unwrap_or_default();
    Ok(Json(
        json!({ "message": format!("device {hostname} health set to {health}{why}") }),
    ))
}

async fn dictionary(
    State(h): State<Handle>,
    Path(hostname): Path<String>,
) -> ApiResult<Json<Value>> {
    let d = find_device(&h, &hostname)?;
    let text = d
        .dictionary
        .ok_or_else(|| ApiError::NotFound(format!("device {hostname:?} has no dictionary")))?;
    Ok(Json(json!({ "dictionary": text })))
}

#[derive(Deserialize)]
struct Dictionary {
    dictionary: String,
}

/// `POST devices/<hostname>/dictionary/`: stored once it renders with the master's
/// templates into a valid device; else 400 saying where, and the old one stays.
async fn set_dictionary(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(hostname): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    require_admin(&h, &headers)?;
    let d: Dictionary = body(&bytes)?;
    find_device(&h, &hostname)?;
    check_dictionary(&h, &hostname, &d.dictionary)?;
    h.store.set_dictionary(&hostname, &d.dictionary)?;
    h.reschedule();
    Ok(Json(
        json!({ "message": format!("device {hostname} dictionary updated") }),
    ))
}

/// `POST devices/validate/` (the dictionary as the body, LAVA's): 200 with LAVA's
/// `Device dictionary valid.` or `Device dictionary invalid: ...`.
async fn validate_dictionary(State(h): State<Handle>, bytes: Bytes) -> ApiResult<Json<Value>> {
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::BadRequest("the dictionary is not UTF-8".into()))?;
    let message = match dictionary::check("device", text, &h.device_types) {
        Ok(()) => "Device dictionary valid.".to_string(),
        Err(e) => format!("Device dictionary invalid: {e}"),
    };
    Ok(Json(json!({ "message": message })))
}

/// basalt's `devices/<hostname>/tags/`: the device's tags by name.
async fn device_tags(
    State(h): State<Handle>,
    Path(hostname): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "tags": find_device(&h, &hostname)?.tags })))
}

#[derive(Deserialize)]
struct TagName {
    name: String,
}

/// basalt's `POST devices/<hostname>/tags/` (`{"name"}`): adds a tag (LAVA's
/// `scheduler.devices.tags.add`).
async fn add_device_tag(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(hostname): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    require_admin(&h, &headers)?;
    let t: TagName = body(&bytes)?;
    check_name("name", &t.name)?;
    find_device(&h, &hostname)?;
    let tags = h.store.add_device_tag(&hostname, &t.name)?;
    h.reschedule();
    Ok(Json(json!({ "tags": tags })))
}

/// basalt's `DELETE devices/<hostname>/tags/<tag>/`.
async fn remove_device_tag(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path((hostname, tag)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    require_admin(&h, &headers)?;
    find_device(&h, &hostname)?;
    let tags = h.store.remove_device_tag(&hostname, &tag)?;
    Ok(Json(json!({ "tags": tags })))
}

/// basalt's `POST devices/<hostname>/health_check/`: queues a health check now (it runs when
/// the device is free and its health lets it: Good, Unknown or Looping); 400 when its type
/// has none.
async fn health_check_now(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(hostname): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_admin(&h, &headers)?;
    let id = h.health_check(&hostname).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "message": format!("health check {id} queued for {hostname}"), "job_id": id }),
        ),
    ))
}

// ---- tags ------------------------------------------------------------------------------------

async fn tags(
    State(h): State<Handle>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let names = all_tags(&h)?;
    page_of(
        &headers,
        "tags/",
        &q,
        names.iter().map(|n| tag_json(n)).collect(),
    )
}

async fn tag(State(h): State<Handle>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let missing = || ApiError::NotFound(format!("no tag {id:?}"));
    let want: u32 = id.parse().map_err(|_| missing())?;
    let name = all_tags(&h)?
        .into_iter()
        .find(|n| tag_id(n) == want)
        .ok_or_else(missing)?;
    Ok(Json(tag_json(&name)))
}

// ---- workers ---------------------------------------------------------------------------------

async fn workers(
    State(h): State<Handle>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let workers = h.store.workers()?;
    page_of(
        &headers,
        "workers/",
        &q,
        workers.iter().map(worker_json).collect(),
    )
}

async fn worker(State(h): State<Handle>, Path(hostname): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(worker_json(&find_worker(&h, &hostname)?)))
}

#[derive(Deserialize)]
struct NewWorker {
    hostname: String,
    #[serde(default)]
    description: Option<String>,
    /// basalt's: the worker's CURVE public key (40 Z85 characters); the master admits it.
    #[serde(default)]
    public_key: Option<String>,
}

/// `POST workers/`: a new worker (Offline until it connects). With basalt's `public_key`
/// the master also admits it (writes `certs/workers/<hostname>.key`) and answers its own
/// `master_public_key`, for the worker's `--master-key`.
async fn add_worker(
    State(h): State<Handle>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_admin(&h, &headers)?;
    let w: NewWorker = body(&bytes)?;
    check_name("hostname", &w.hostname)?;
    let description = w.description.as_deref().unwrap_or("");
    let key_file = match &w.public_key {
        None => None,
        Some(text) => Some(admit(&h, &w.hostname, text)?),
    };
    if let Err(e) = h.store.add_worker(&w.hostname, description) {
        // the key admitted a worker that is not registered: take it back
        if let Some(f) = key_file {
            let _ = std::fs::remove_file(f);
        }
        return Err(e.into());
    }
    let mut shown = worker_json(&find_worker(&h, &w.hostname)?);
    if key_file.is_some() {
        shown["master_public_key"] = json!(h.master_key.z85());
    }
    Ok((StatusCode::CREATED, Json(shown)))
}

/// Admits worker `name` with public key `z85`: writes `certs/workers/<name>.key` (never over
/// an existing one); returns its path.
fn admit(h: &Handle, name: &str, z85: &str) -> ApiResult<std::path::PathBuf> {
    use basalt_link::cert::{self, PublicKey};
    let key = PublicKey::from_z85(z85.trim()).map_err(|e| {
        ApiError::BadRequest(format!("'public_key' is not a CURVE public key: {e}"))
    })?;
    cert::check_name(name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if h.store.worker(name)?.is_some() {
        return Err(ApiError::BadRequest(format!(
            "worker '{name}' exists already"
        )));
    }
    key.write(&h.admitted, name).map_err(|e| match &e {
        cert::CertError::Io { source, .. }
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            ApiError::BadRequest(format!(
                "a key is admitted for worker '{name}' already ({e}): remove it first"
            ))
        }
        _ => ApiError::Internal(format!("admitting worker '{name}': {e}")),
    })
}

#[derive(Deserialize)]
struct WorkerUpdate {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    health: Option<String>,
}

/// `PATCH`/`PUT workers/<hostname>/`.
async fn update_worker(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(hostname): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    require_admin(&h, &headers)?;
    let u: WorkerUpdate = body(&bytes)?;
    find_worker(&h, &hostname)?;
    if let Some(d) = &u.description {
        h.store.set_worker_description(&hostname, d)?;
    }
    if let Some(name) = &u.health {
        let changed = h.store.set_worker_health(&hostname, worker_health(name)?)?;
        h.cancel_jobs_of_retired(&changed).await?;
        h.reschedule();
    }
    Ok(Json(worker_json(&find_worker(&h, &hostname)?)))
}

/// `POST workers/<hostname>/set_health/` (`{"health", "reason"}`): Active, Maintenance or
/// Retired, with LAVA's effect on its devices ([`crate::store::Store::set_worker_health`]).
async fn set_worker_health(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(hostname): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    require_admin(&h, &headers)?;
    let r: SetHealth = body(&bytes)?;
    let health = worker_health(&r.health)?;
    find_worker(&h, &hostname)?;
    let changed = h.store.set_worker_health(&hostname, health)?;
    h.cancel_jobs_of_retired(&changed).await?;
    h.reschedule();
    let devices = if changed.is_empty() {
        String::new()
    } else {
        format!("; device(s) {} changed", changed.join(", "))
    };
    Ok(Json(json!({
        "message": format!("worker {hostname} health set to {health}{devices}"),
        "devices": changed,
    })))
}

// ---- device types ----------------------------------------------------------------------------

async fn device_types(
    State(h): State<Handle>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let types = h.store.device_type_details()?;
    page_of(
        &headers,
        "devicetypes/",
        &q,
        types.iter().map(device_type_json).collect(),
    )
}

async fn device_type(State(h): State<Handle>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(device_type_json(&find_device_type(&h, &name)?)))
}

/// A device type's fields in a request (those left out stay as they are): `health_check` is
/// basalt's (the definition; an empty one removes it), `health_denominator` `hours` or
/// `jobs`.
#[derive(Deserialize)]
struct DeviceTypeFields {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    health_check: Option<Option<String>>,
    #[serde(default)]
    health_frequency: Option<u32>,
    #[serde(default)]
    health_denominator: Option<String>,
    #[serde(default)]
    disable_health_check: Option<bool>,
}

impl DeviceTypeFields {
    /// The change these fields make to type `name`; 400 for a bad one.
    fn change(self, name: &str) -> ApiResult<DeviceTypeChange> {
        let health_check = match self.health_check {
            None => None,
            Some(d) => {
                let d = d.filter(|d| !d.trim().is_empty());
                if let Some(text) = &d {
                    check_health_check(name, text)?;
                }
                Some(d)
            }
        };
        let denominator = self
            .health_denominator
            .map(|d| {
                Denominator::from_name(&d).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "'health_denominator' should be hours or jobs, not {d:?}"
                    ))
                })
            })
            .transpose()?;
        Ok(DeviceTypeChange {
            description: self.description,
            health_check,
            frequency: self.health_frequency,
            denominator,
            disabled: self.disable_health_check,
        })
    }
}

#[derive(Deserialize)]
struct NewDeviceType {
    name: String,
    #[serde(flatten)]
    fields: DeviceTypeFields,
}

/// `POST devicetypes/`: adds the type, or changes the fields given of an existing one.
async fn add_device_type(
    State(h): State<Handle>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_admin(&h, &headers)?;
    let t: NewDeviceType = body(&bytes)?;
    check_name("name", &t.name)?;
    let change = t.fields.change(&t.name)?;
    h.store.upsert_device_type(&t.name, &change)?;
    // a new health check can go to the devices of the type now
    h.reschedule();
    Ok((
        StatusCode::CREATED,
        Json(device_type_json(&find_device_type(&h, &t.name)?)),
    ))
}

/// `PATCH`/`PUT devicetypes/<name>/`.
async fn update_device_type(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    require_admin(&h, &headers)?;
    let fields: DeviceTypeFields = body(&bytes)?;
    find_device_type(&h, &name)?;
    h.store.update_device_type(&name, &fields.change(&name)?)?;
    h.reschedule();
    Ok(Json(device_type_json(&find_device_type(&h, &name)?)))
}

/// `GET devicetypes/<name>/health_check/`: the definition as YAML (LAVA's); 400 when the
/// type has none, as LAVA answers.
async fn health_check(State(h): State<Handle>, Path(name): Path<String>) -> ApiResult<Response> {
    let t = find_device_type(&h, &name)?;
    let text = t.health_check.ok_or_else(|| {
        ApiError::BadRequest(format!("Device-type '{name}' health check was not found."))
    })?;
    Ok(([(header::CONTENT_TYPE, "application/yaml")], text).into_response())
}

#[derive(Deserialize)]
struct HealthCheckConfig {
    config: String,
}

/// `POST devicetypes/<name>/health_check/` (`{"config": "..."}`, LAVA's): sets the type's
/// health check once it is a valid job; 204 as LAVA answers.
async fn set_health_check(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    require_admin(&h, &headers)?;
    let c: HealthCheckConfig = body(&bytes)?;
    find_device_type(&h, &name)?;
    if c.config.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "'config': Health check configuration is required.".into(),
        ));
    }
    check_health_check(&name, &c.config)?;
    h.store.update_device_type(
        &name,
        &DeviceTypeChange {
            health_check: Some(Some(c.config)),
            ..DeviceTypeChange::default()
        },
    )?;
    h.reschedule();
    Ok(StatusCode::NO_CONTENT)
}

// ---- aliases ---------------------------------------------------------------------------------

fn alias_json(name: &str, device_type: &str) -> Value {
    json!({ "name": name, "device_type": device_type })
}

async fn aliases(
    State(h): State<Handle>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let shown = h
        .store
        .aliases()?
        .iter()
        .map(|(a, t)| alias_json(a, t))
        .collect();
    page_of(&headers, "aliases/", &q, shown)
}

async fn alias(State(h): State<Handle>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    h.store
        .aliases()?
        .iter()
        .find(|(a, _)| *a == name)
        .map(|(a, t)| Json(alias_json(a, t)))
        .ok_or_else(|| ApiError::NotFound(format!("no alias {name:?}")))
}

#[derive(Deserialize)]
struct NewAlias {
    name: String,
    device_type: String,
}

/// `POST aliases/` (`{"name", "device_type"}`): jobs asking for `name` as their
/// `device_type` then run on that type's devices.
async fn add_alias(
    State(h): State<Handle>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_admin(&h, &headers)?;
    let a: NewAlias = body(&bytes)?;
    check_name("name", &a.name)?;
    h.store.add_alias(&a.name, &a.device_type)?;
    Ok((
        StatusCode::CREATED,
        Json(alias_json(&a.name, &a.device_type)),
    ))
}

/// `DELETE aliases/<name>/`: 204.
async fn remove_alias(
    State(h): State<Handle>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    require_admin(&h, &headers)?;
    h.store.remove_alias(&name).map_err(|e| match e {
        crate::store::StoreError::Missing { .. } => ApiError::NotFound(e.to_string()),
        other => other.into(),
    })?;
    Ok(StatusCode::NO_CONTENT)
}
