//! The HTML pages: lists (paginated, filtered with plain GET forms), a job, a device, the
//! workers, MultiNode groups, reservations; and the two actions, cancel a job and set a
//! device's health, as POST forms with the permission checks of the API (a job: its submitter
//! or an admin, as LAVA's `scheduler.jobs.cancel`; a device's health: an admin).

use super::auth::Viewer;
use super::{PageError, Web};
use crate::http::rfc3339;
use crate::model::{DeviceHealth, JobHealth, JobState};
use crate::scheduler::Target;
use crate::store::{Job, JobQuery};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use basalt_model::yaml::{self, Value as Y};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Rows per page of a list.
const PAGE: u32 = 50;

/// HTML-escapes text (for the few strings not written through a template).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query component.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a path segment or a query value (`/` included).
pub fn encode_component(s: &str) -> String {
    encode(s).replace('/', "%2F")
}

/// The path and query asked for (where signing in comes back to).
fn here(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string())
}

fn time(ms: Option<u64>) -> Value {
    ms.map_or(Value::Null, |t| {
        let s = rfc3339(t);
        // 2026-08-21T16:25:29.123Z -> 2026-08-21 16:25:29
        json!(s.get(..19).unwrap_or(&s).replace('T', " "))
    })
}

/// A job as a row of a list.
fn job_row(j: &Job) -> Value {
    let device_type = match &j.target {
        Target::DeviceType(t) => Some(t.as_str()),
        Target::Device(_) | Target::AnyOf(_) => None,
    };
    json!({
        "id": j.id,
        "description": j.description,
        "submitter": j.submitter,
        "device": j.actual_device,
        "device_type": device_type,
        "state": j.state.name(),
        "health": j.health.name(),
        "submit_time": time(Some(j.submit_time)),
        "start_time": time(j.start_time),
        "end_time": time(j.end_time),
        "health_check": j.health_check,
        "group": j.group.as_ref().map(|g| json!({
            "name": g.target_group, "sub_id": g.sub_id, "role": g.role,
        })),
        "failure_cause": j.failure_cause.map(basalt_proto::FailureCause::name),
    })
}

/// Previous/next links of a list page, keeping the other parameters.
fn pager(path: &str, q: &HashMap<String, String>, page: u32, count: u64) -> Value {
    let pages = count.div_ceil(u64::from(PAGE)).max(1);
    let link = |p: u64| {
        let mut params: Vec<(&String, &String)> = q
            .iter()
            .filter(|(k, v)| *k != "page" && !v.trim().is_empty())
            .collect();
        params.sort();
        let mut qs: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
            .collect();
        qs.push(format!("page={p}"));
        format!("{path}?{}", qs.join("&"))
    };
    let page = u64::from(page);
    json!({
        "page": page,
        "pages": pages,
        "count": count,
        "previous": (page > 1).then(|| link(page - 1)),
        "next": (page < pages).then(|| link(page + 1)),
    })
}

/// `page` of a list request (1 when absent); 400 for a bad one.
fn page_no(q: &HashMap<String, String>) -> Result<u32, PageError> {
    match q.get("page").map(|p| p.trim()).filter(|p| !p.is_empty()) {
        None => Ok(1),
        Some(p) => p
            .parse::<u32>()
            .ok()
            .filter(|p| *p >= 1 && *p <= 1_000_000)
            .ok_or_else(|| {
                PageError::BadRequest(format!("'page' should be a page number, not {p:?}"))
            }),
    }
}

fn filter<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// `GET /jobs?state=&health=&device=&submitter=&page=`.
pub(super) async fn jobs(
    State(web): State<Web>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let viewer = web.viewer(&headers, &here(&uri))?;
    let page = page_no(&q)?;
    let state = match filter(&q, "state") {
        None => None,
        Some(s) => Some(
            JobState::from_name(s)
                .ok_or_else(|| PageError::BadRequest(format!("unknown job state {s:?}")))?,
        ),
    };
    let health = match filter(&q, "health") {
        None => None,
        Some(s) => Some(
            JobHealth::from_name(s)
                .ok_or_else(|| PageError::BadRequest(format!("unknown job health {s:?}")))?,
        ),
    };
    let query = JobQuery {
        states: state.into_iter().collect(),
        healths: health.into_iter().collect(),
        device: filter(&q, "device").map(String::from),
        submitter: filter(&q, "submitter").map(String::from),
        limit: PAGE,
        offset: (page - 1) * PAGE,
        ..JobQuery::default()
    };
    let (count, list) = web.handle.store.query_jobs(&query)?;
    let rows: Vec<Value> = list.iter().map(job_row).collect();
    let html = web.render(
        "jobs.html",
        json!({
            "viewer": viewer.context(),
            "nav": "jobs",
            "jobs": rows,
            "pager": pager("/jobs", &q, page, count),
            "filter": {
                "state": filter(&q, "state"),
                "health": filter(&q, "health"),
                "device": filter(&q, "device"),
                "submitter": filter(&q, "submitter"),
            },
            "states": JobState::ALL.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "healths": JobHealth::ALL.iter().map(|s| s.name()).collect::<Vec<_>>(),
        }),
    )?;
    Ok(html.into_response())
}

fn job_id(id: &str) -> Result<u64, PageError> {
    id.parse()
        .map_err(|_| PageError::NotFound(format!("no job {id:?}")))
}

/// The job `id`, or 404.
pub(super) fn find_job(web: &Web, id: &str) -> Result<Job, PageError> {
    let id = job_id(id)?;
    web.handle
        .store
        .job(id)?
        .ok_or_else(|| PageError::NotFound(format!("no job {id}")))
}

/// Whether `viewer` may cancel `job` (LAVA's rule: its submitter or an admin).
fn may_cancel(viewer: &Viewer, job: &Job) -> bool {
    viewer.admin() || viewer.name() == Some(job.submitter.as_str())
}

/// A YAML node as JSON (for the job's metadata).
fn yaml_json(n: &yaml::Node) -> Value {
    match &n.value {
        Y::Null => Value::Null,
        Y::Bool(b) => json!(b),
        Y::Int(i) => json!(i),
        Y::Float(f) => json!(yaml::format_float(*f)),
        Y::Str(s) => json!(s),
        Y::Seq(items) => Value::Array(items.iter().map(yaml_json).collect()),
        Y::Map(entries) => {
            let mut out = serde_json::Map::new();
            for (k, v) in entries {
                let key = match &k.value {
                    Y::Str(s) => s.clone(),
                    _ => format!("{:?}", yaml_json(k)),
                };
                out.insert(key, yaml_json(v));
            }
            Value::Object(out)
        }
    }
}

/// The `metadata:` mapping of a job definition, as (key, text) pairs.
fn metadata(definition: &str) -> Vec<(String, String)> {
    let Ok(doc) = yaml::load(definition) else {
        return Vec::new();
    };
    let Some(entries) = doc.as_map() else {
        return Vec::new();
    };
    let Some(meta) = entries
        .iter()
        .find(|(k, _)| matches!(&k.value, Y::Str(s) if s == "metadata"))
        .map(|(_, v)| v)
    else {
        return Vec::new();
    };
    let Y::Map(items) = &meta.value else {
        return Vec::new();
    };
    items
        .iter()
        .map(|(k, v)| {
            let key = match &k.value {
                Y::Str(s) => s.clone(),
                _ => yaml_json(k).to_string(),
            };
            let value = match yaml_json(v) {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (key, value)
        })
        .collect()
}

/// `GET /jobs/ID`: the job, its results, its definition and pipeline, and the log viewer.
pub(super) async fn job(
    State(web): State<Web>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let viewer = web.viewer(&headers, &here(&uri))?;
    let job = find_job(&web, &id)?;
    let cases = crate::results::test_cases(job.results.as_deref().unwrap_or(""))
        .map_err(|e| PageError::Internal(format!("job {}: {e}", job.id)))?;
    let results: Vec<Value> = cases
        .iter()
        .map(|c| {
            json!({
                "suite": c.suite, "name": c.name, "result": c.result,
                "measurement": c.measurement, "unit": c.unit, "set": c.test_set,
                "cause": c.cause.map(basalt_proto::FailureCause::name),
            })
        })
        .collect();
    let description =
        std::fs::read_to_string(web.handle.log_dir(job.id).join("description.yaml")).ok();
    let group = match &job.group {
        Some(g) => web
            .handle
            .store
            .group(&g.target_group)?
            .iter()
            .map(job_row)
            .collect::<Vec<_>>(),
        None => Vec::new(),
    };
    let html = web.render(
        "job.html",
        json!({
            "viewer": viewer.context(),
            "nav": "jobs",
            "job": job_row(&job),
            "finished": job.state == JobState::Finished,
            "may_cancel": may_cancel(&viewer, &job) && job.state != JobState::Finished,
            "error_type": job.error_type,
            "error_msg": job.error_msg,
            "definition": job.definition,
            "description": description,
            "metadata": metadata(&job.definition),
            "results": results,
            "group": group,
            "levels": super::record::Level::ALL.iter().map(|l| l.name()).collect::<Vec<_>>(),
        }),
    )?;
    Ok(html.into_response())
}

/// `GET /jobs/ID/raw`: the log as stored (`output.yaml`), streamed, as text.
pub(super) async fn raw_log(
    State(web): State<Web>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    web.viewer(&headers, &here(&uri))?;
    let job = find_job(&web, &id)?;
    let chunks = crate::logs::LineChunks::open(web.handle.log_dir(job.id), 0, None).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        axum::body::Body::from_stream(chunks),
    )
        .into_response())
}

/// `GET /jobs/ID/junit.xml`: the results as JUnit XML.
pub(super) async fn junit(
    State(web): State<Web>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    web.viewer(&headers, &here(&uri))?;
    let job = find_job(&web, &id)?;
    let cases = crate::results::test_cases(job.results.as_deref().unwrap_or(""))
        .map_err(|e| PageError::Internal(format!("job {}: {e}", job.id)))?;
    Ok((
        [(header::CONTENT_TYPE, "application/xml")],
        crate::results::junit(job.id, &cases),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

/// `POST /jobs/ID/cancel` (`csrf`): its submitter or an admin cancels it.
pub(super) async fn cancel(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    let (user, admin) = web.actor(&headers, &f.csrf)?;
    let job = find_job(&web, &id)?;
    if !admin && user != job.submitter {
        return Err(PageError::Forbidden(format!(
            "only its submitter ({}) or an admin may cancel job {}",
            job.submitter, job.id
        )));
    }
    web.handle.cancel(job.id).await?;
    tracing::info!("job {}: canceled by {user} (web)", job.id);
    Ok(Redirect::to(&format!("/jobs/{}", job.id)).into_response())
}

/// `GET /devices`.
pub(super) async fn devices(
    State(web): State<Web>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let viewer = web.viewer(&headers, &here(&uri))?;
    let rows: Vec<Value> = web.handle.store.devices()?.iter().map(device_row).collect();
    let html = web.render(
        "devices.html",
        json!({ "viewer": viewer.context(), "nav": "devices", "devices": rows, "title": "Devices" }),
    )?;
    Ok(html.into_response())
}

fn device_row(d: &crate::store::Device) -> Value {
    json!({
        "hostname": d.hostname, "device_type": d.device_type, "worker": d.worker,
        "description": d.description, "tags": d.tags,
        "state": d.state.name(), "health": d.health.name(), "current_job": d.current_job,
    })
}

/// `GET /devices/HOSTNAME?page=`: the device and its jobs.
pub(super) async fn device(
    State(web): State<Web>,
    headers: HeaderMap,
    uri: Uri,
    Path(hostname): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let viewer = web.viewer(&headers, &here(&uri))?;
    let d = web
        .handle
        .store
        .device(&hostname)?
        .ok_or_else(|| PageError::NotFound(format!("no device {hostname:?}")))?;
    let page = page_no(&q)?;
    let (count, list) = web.handle.store.query_jobs(&JobQuery {
        device: Some(d.hostname.clone()),
        limit: PAGE,
        offset: (page - 1) * PAGE,
        ..JobQuery::default()
    })?;
    let html = web.render(
        "device.html",
        json!({
            "viewer": viewer.context(),
            "nav": "devices",
            "device": device_row(&d),
            "jobs": list.iter().map(job_row).collect::<Vec<_>>(),
            "pager": pager(&format!("/devices/{}", encode_component(&d.hostname)), &q, page, count),
            "healths": [DeviceHealth::Maintenance.name(), DeviceHealth::Unknown.name(), DeviceHealth::Good.name()],
        }),
    )?;
    Ok(html.into_response())
}

#[derive(Deserialize)]
pub(super) struct HealthForm {
    csrf: String,
    health: String,
}

/// `POST /devices/HOSTNAME/health` (`csrf`, `health`: Maintenance, Unknown or Good): an
/// admin's choice, as the API's `set_health`.
pub(super) async fn set_health(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(hostname): Path<String>,
    Form(f): Form<HealthForm>,
) -> Result<Response, PageError> {
    let (user, admin) = web.actor(&headers, &f.csrf)?;
    if !admin {
        return Err(PageError::Forbidden(
            "only an admin may change a device's health".into(),
        ));
    }
    let health = match DeviceHealth::from_name(f.health.trim()) {
        Some(h @ (DeviceHealth::Maintenance | DeviceHealth::Unknown | DeviceHealth::Good)) => h,
        _ => {
            return Err(PageError::BadRequest(format!(
                "health {:?}: Maintenance, Unknown or Good",
                f.health
            )))
        }
    };
    web.handle
        .store
        .device(&hostname)?
        .ok_or_else(|| PageError::NotFound(format!("no device {hostname:?}")))?;
    web.handle
        .store
        .set_device_health(&hostname, health, crate::engine::now_ms())?;
    web.handle.reschedule();
    tracing::info!("device {hostname}: health set to {health} by {user} (web)");
    Ok(Redirect::to(&format!("/devices/{}", encode_component(&hostname))).into_response())
}

/// `GET /device-types`.
pub(super) async fn device_types(
    State(web): State<Web>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let viewer = web.viewer(&headers, &here(&uri))?;
    let devices = web.handle.store.devices()?;
    let rows: Vec<Value> = web
        .handle
        .store
        .device_types()?
        .iter()
        .map(|t| {
            let of: Vec<_> = devices.iter().filter(|d| d.device_type == t.name).collect();
            let count = |f: &dyn Fn(&crate::store::Device) -> bool| of.iter().filter(|d| f(d)).count();
            json!({
                "name": t.name,
                "health_check": t.health_check.is_some(),
                "devices": of.len(),
                "idle": count(&|d| d.state == crate::model::DeviceState::Idle && matches!(d.health, DeviceHealth::Good | DeviceHealth::Unknown)),
                "busy": count(&|d| d.state != crate::model::DeviceState::Idle),
                "offline": count(&|d| matches!(d.health, DeviceHealth::Maintenance | DeviceHealth::Bad | DeviceHealth::Retired)),
            })
        })
        .collect();
    let html = web.render(
        "device_types.html",
        json!({ "viewer": viewer.context(), "nav": "device-types", "types": rows }),
    )?;
    Ok(html.into_response())
}

/// `GET /device-types/NAME`: its devices (state, health, current job).
pub(super) async fn device_type(
    State(web): State<Web>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let viewer = web.viewer(&headers, &here(&uri))?;
    let t = web
        .handle
        .store
        .device_types()?
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| PageError::NotFound(format!("no device type {name:?}")))?;
    let rows: Vec<Value> = web
        .handle
        .store
        .devices()?
        .iter()
        .filter(|d| d.device_type == t.name)
        .map(device_row)
        .collect();
    let html = web.render(
        "devices.html",
        json!({
            "viewer": viewer.context(), "nav": "device-types", "devices": rows,
            "title": format!("Device type {}", t.name), "health_check": t.health_check,
        }),
    )?;
    Ok(html.into_response())
}

/// `GET /workers`: state, health, last seen, software and protocol versions, devices.
pub(super) async fn workers(
    State(web): State<Web>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let viewer = web.viewer(&headers, &here(&uri))?;
    let devices = web.handle.store.devices()?;
    let versions = web
        .handle
        .worker_versions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let rows: Vec<Value> = web
        .handle
        .store
        .workers()?
        .iter()
        .map(|w| {
            json!({
                "hostname": w.hostname, "description": w.description,
                "state": w.state.name(), "health": w.health.name(),
                "last_seen": time((w.last_seen > 0).then_some(w.last_seen)),
                "protocol": versions.get(&w.hostname).map(|v| v.protocol.to_string()),
                "software": versions.get(&w.hostname).and_then(|v| v.software.clone()),
                "devices": devices.iter().filter(|d| d.worker == w.hostname).map(|d| &d.hostname).collect::<Vec<_>>(),
            })
        })
        .collect();
    let html = web.render(
        "workers.html",
        json!({ "viewer": viewer.context(), "nav": "workers", "workers": rows }),
    )?;
    Ok(html.into_response())
}

/// `GET /multinode?page=`: MultiNode groups, newest first, with their sub-jobs.
pub(super) async fn groups(
    State(web): State<Web>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let viewer = web.viewer(&headers, &here(&uri))?;
    let page = page_no(&q)?;
    let (count, list) = web.handle.store.groups(PAGE, (page - 1) * PAGE)?;
    let mut rows = Vec::new();
    for (name, first) in list {
        let jobs: Vec<Value> = web.handle.store.group(&name)?.iter().map(job_row).collect();
        rows.push(json!({ "name": name, "first": first, "jobs": jobs }));
    }
    let html = web.render(
        "groups.html",
        json!({
            "viewer": viewer.context(), "nav": "multinode", "groups": rows,
            "pager": pager("/multinode", &q, page, count),
        }),
    )?;
    Ok(html.into_response())
}

/// `GET /multinode/GROUP`: one group's sub-jobs.
pub(super) async fn group(
    State(web): State<Web>,
    headers: HeaderMap,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let viewer = web.viewer(&headers, &here(&uri))?;
    let jobs: Vec<Value> = web.handle.store.group(&name)?.iter().map(job_row).collect();
    if jobs.is_empty() {
        return Err(PageError::NotFound(format!("no MultiNode group {name:?}")));
    }
    let first = jobs[0]["id"].clone();
    let html = web.render(
        "groups.html",
        json!({
            "viewer": viewer.context(), "nav": "multinode",
            "groups": [{ "name": name, "first": first, "jobs": jobs }],
            "pager": null,
        }),
    )?;
    Ok(html.into_response())
}

/// `GET /reservations`: the reservations (docs/reservations.md). The reservation store is
/// not part of this master yet: the page shows its columns and says so.
pub(super) async fn reservations(
    State(web): State<Web>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let viewer = web.viewer(&headers, &here(&uri))?;
    // everyone's, newest first (no secrets: tokens and keys stay in the API's holder view)
    let query = crate::store::ReservationQuery {
        holder: None,
        state: None,
        limit: 200,
        offset: 0,
    };
    let (_, list) = web.handle.store.reservations(&query)?;
    let rows: Vec<Value> = list
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "job_id": r.id,
                "state": r.state.name(),
                "holder": r.holder,
                "device": r.device,
                "device_type": r.device_type,
                "worker": r.worker,
                "description": r.description,
                "created": time(Some(r.created)),
                "expires": time(Some(r.expires)),
            })
        })
        .collect();
    let html = web.render(
        "reservations.html",
        json!({ "viewer": viewer.context(), "nav": "reservations", "reservations": rows, "available": true }),
    )?;
    Ok(html.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_of_a_definition() {
        let m = metadata("job_name: x\nmetadata:\n  build: 1234\n  branch: main\n  tags: [a, b]\n");
        assert_eq!(
            m,
            vec![
                ("build".to_string(), "1234".to_string()),
                ("branch".to_string(), "main".to_string()),
                ("tags".to_string(), "[\"a\",\"b\"]".to_string()),
            ]
        );
        assert!(metadata("not: [yaml").is_empty());
        assert!(metadata("metadata: 3").is_empty());
    }

    #[test]
    fn pages_keep_their_filters() {
        let q: HashMap<String, String> = [("state", "Running"), ("page", "2"), ("device", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let p = pager("/jobs", &q, 2, 120);
        assert_eq!(p["previous"], "/jobs?state=Running&page=1");
        assert_eq!(p["next"], "/jobs?state=Running&page=3");
        assert_eq!(p["pages"], 3);
        assert!(page_no(&[("page".to_string(), "0".to_string())].into()).is_err());
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
