//! The REST API in-process: a store in a temporary directory, the engine on a free workers
//! port (no worker connects), the API on 127.0.0.1:0, driven by a blocking HTTP client the
//! way lab scripts and the `lava-api` crate call it. Each test runs on SQLite, and on
//! PostgreSQL when `BASALT_TEST_POSTGRES` names a server (a database of its own per test).

use basalt_master::http;
use basalt_master::store::{Failure, Store};
use basalt_proto::FailureCause;
use serde_json::{json, Value};
use std::sync::mpsc;
use std::time::Duration;

#[path = "support/master.rs"]
mod master;
#[path = "support/pg.rs"]
mod pg;

/// The master's store: SQLite in its state directory, or a PostgreSQL database of its own.
enum Backend {
    Sqlite,
    Postgres(pg::TestDb),
}

impl Backend {
    /// `--database URL` for the binary, when PostgreSQL.
    fn args(&self) -> Vec<&str> {
        match self {
            Backend::Sqlite => Vec::new(),
            Backend::Postgres(db) => vec!["--database", db.url()],
        }
    }
}

/// Each test runs on SQLite, and on PostgreSQL when `BASALT_TEST_POSTGRES` names a server.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(super::Backend::Sqlite)
            }
            #[test]
            fn postgres() {
                if let Some(db) = super::pg::TestDb::create(concat!(stringify!($name), "::postgres")) {
                    super::$name(super::Backend::Postgres(db))
                }
            }
        }
    )*};
}

on_both!(
    version_is_anonymous,
    reads_need_a_token_unless_anonymous_read_is_on,
    anonymous_reads_when_configured,
    registered_lab_is_listed_with_lavas_fields,
    submitted_job_is_listed_and_canceled,
    jobs_are_paged_with_absolute_urls,
    bad_requests_are_refused_with_a_message,
    logs_are_served_by_line_range,
    binary_makes_tokens_serves_and_stops_on_sigterm,
    results_are_served_as_lavas_test_cases,
    jobs_are_filtered_and_ordered_as_lava_does,
    a_multinode_submission_answers_every_id_and_lists_its_group,
);

const ADMIN: &str = "admin-token-0123456789";
const USER: &str = "user-token-0123456789";

/// A running master: its API base URL; dropping it stops the server.
struct Master {
    base: String,
    state_dir: std::path::PathBuf,
    _served: master::Served,
    _dir: tempfile::TempDir,
    /// Dropped after the server (and its store) stopped.
    _backend: Backend,
}

/// Starts a master with an admin token ([`ADMIN`], user `admin`) and a user token ([`USER`],
/// user `alice`); reads need a token (the default).
fn start(backend: Backend) -> Master {
    start_with(backend, false)
}

/// [`start`], serving reads without a token when `anonymous_read` (`--anonymous-read`).
fn start_with(backend: Backend, anonymous_read: bool) -> Master {
    let dir = tempfile::tempdir().expect("temporary directory");
    let state_dir = dir.path().to_path_buf();
    let store = match &backend {
        Backend::Sqlite => Store::open(&state_dir.join("basalt.db")),
        Backend::Postgres(db) => Store::connect(db.url()),
    }
    .expect("store");
    store.add_token("admin", true, ADMIN).expect("admin token");
    store.add_token("alice", false, USER).expect("user token");
    let served = master::serve_with(state_dir.clone(), store, anonymous_read);
    Master {
        base: format!("http://{}/api/v0.2/", served.addr),
        state_dir,
        _served: served,
        _dir: dir,
        _backend: backend,
    }
}

/// One request: its status and body (JSON when it is JSON, else a string).
fn call(
    m: &Master,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    master::request(&m.base, method, path, token, body)
}

fn post(m: &Master, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    call(m, "POST", path, token, Some(&body.to_string()))
}

/// A GET with a user's token (reads need one unless the master serves anonymous reads).
fn get(m: &Master, path: &str) -> (u16, Value) {
    call(m, "GET", path, Some(USER), None)
}

/// A GET without a token.
fn get_anonymous(m: &Master, path: &str) -> (u16, Value) {
    call(m, "GET", path, None, None)
}

/// Registers a worker, the qemu device type and a device with its dictionary, as an admin.
fn register(m: &Master) {
    let (s, w) = post(
        m,
        "workers/",
        Some(ADMIN),
        json!({"hostname": "w1", "description": "first"}),
    );
    assert_eq!(s, 201, "{w}");
    assert_eq!(w["state"], "Offline");
    let (s, t) = post(m, "devicetypes/", Some(ADMIN), json!({"name": "qemu"}));
    assert_eq!(s, 201, "{t}");
    let (s, d) = post(
        m,
        "devices/",
        Some(ADMIN),
        json!({"hostname": "qemu-01", "device_type": "qemu", "worker_host": "w1", "tags": ["fast"]}),
    );
    assert_eq!(s, 201, "{d}");
    let dict = "{% extends 'qemu.jinja2' %}\n{% set netdevice = 'user' %}\n";
    let (s, r) = post(
        m,
        "devices/qemu-01/dictionary/",
        Some(ADMIN),
        json!({"dictionary": dict}),
    );
    assert_eq!(s, 200, "{r}");
    let (s, r) = get(m, "devices/qemu-01/dictionary/");
    assert_eq!(s, 200);
    assert_eq!(r["dictionary"], dict);
}

fn demo_job() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/jobs/demo-qemu.yaml"
    );
    std::fs::read_to_string(path).expect("config/jobs/demo-qemu.yaml")
}

fn version_is_anonymous(backend: Backend) {
    let m = start(backend);
    let (s, v) = get_anonymous(&m, "system/version/");
    assert_eq!(s, 200);
    assert_eq!(v, json!({"version": "2026.07"}));
}

/// The reads of a lab, each answered 200 with a token.
const READS: &[&str] = &[
    "devices/",
    "devices/qemu-01/",
    "devices/qemu-01/dictionary/",
    "workers/",
    "devicetypes/",
    "tags/",
    "jobs/",
    "jobs/?state=Submitted",
    "jobs/1/",
    "jobs/1/yaml/",
    "jobs/1/tests/",
    "jobs/1/junit/",
];

fn reads_need_a_token_unless_anonymous_read_is_on(backend: Backend) {
    let m = start(backend);
    register(&m);
    let (s, r) = post(&m, "jobs/", Some(USER), json!({"definition": demo_job()}));
    assert_eq!((s, &r["job_ids"][0]), (201, &json!(1)), "{r}");
    for path in READS {
        let (s, r) = get_anonymous(&m, path);
        assert_eq!(s, 401, "anonymous {path}: {r}");
        assert!(r["message"].is_string(), "{path}: {r}");
        let (s, r) = call(&m, "GET", path, Some("not-a-token"), None);
        assert_eq!(s, 401, "{path} with a bad token: {r}");
        let (s, r) = get(&m, path);
        assert_eq!(s, 200, "{path} with a token: {r}");
    }
    // an unknown object is 401 before 404: nothing is told without a token
    assert_eq!(get_anonymous(&m, "jobs/999/").0, 401);
    let (s, r) = post(
        &m,
        "jobs/validate/",
        None,
        json!({"definition": demo_job()}),
    );
    assert_eq!(s, 401, "{r}");
    // the version stays open
    assert_eq!(get_anonymous(&m, "system/version/").0, 200);
}

fn anonymous_reads_when_configured(backend: Backend) {
    let m = start_with(backend, true);
    register(&m);
    let (s, r) = post(&m, "jobs/", Some(USER), json!({"definition": demo_job()}));
    assert_eq!(s, 201, "{r}");
    for path in READS {
        let (s, r) = get_anonymous(&m, path);
        assert_eq!(s, 200, "anonymous {path}: {r}");
    }
    let (s, r) = post(
        &m,
        "jobs/validate/",
        None,
        json!({"definition": demo_job()}),
    );
    assert_eq!(s, 200, "{r}");
    // writes still need a token, admin writes an admin's
    let (s, _) = post(&m, "jobs/", None, json!({"definition": demo_job()}));
    assert_eq!(s, 401);
    let (s, _) = get_anonymous(&m, "jobs/1/cancel/");
    assert_eq!(s, 401);
    let (s, _) = post(&m, "workers/", None, json!({"hostname": "w2"}));
    assert_eq!(s, 401);
    let (s, _) = post(&m, "workers/", Some(USER), json!({"hostname": "w2"}));
    assert_eq!(s, 403);
    // a bad token is refused even where none is needed
    let (s, _) = call(&m, "GET", "devices/", Some("not-a-token"), None);
    assert_eq!(s, 401);
}

fn registered_lab_is_listed_with_lavas_fields(backend: Backend) {
    let m = start(backend);
    register(&m);
    let (s, page) = get(&m, "devices/");
    assert_eq!(s, 200);
    assert_eq!(page["count"], 1);
    assert!(page["next"].is_null() && page["previous"].is_null());
    let d = &page["results"][0];
    assert_eq!(d["hostname"], "qemu-01");
    assert_eq!(d["worker_host"], "w1");
    assert_eq!(d["device_type"], "qemu");
    // LAVA's default for a new device
    assert_eq!(d["health"], "Maintenance");
    assert_eq!(d["state"], "Idle");
    // tags by id, as LAVA's, named in tags/
    let fast = http::tag_id("fast");
    assert_eq!(d["tags"], json!([fast]));
    let (s, tags) = get(&m, "tags/");
    assert_eq!(s, 200);
    assert_eq!(
        tags["results"],
        json!([{"id": fast, "name": "fast", "description": null}])
    );
    let (s, tag) = get(&m, &format!("tags/{fast}/"));
    assert_eq!(s, 200);
    assert_eq!(tag["name"], "fast");
    let (s, one) = get(&m, "devices/qemu-01/");
    assert_eq!(s, 200);
    assert_eq!(&one, d);
    // an admin sets its health by LAVA's name
    let (s, r) = post(
        &m,
        "devices/qemu-01/set_health/",
        Some(ADMIN),
        json!({"health": "Maintenance", "reason": "test"}),
    );
    assert_eq!(s, 200, "{r}");
    let (_, one) = get(&m, "devices/qemu-01/");
    assert_eq!(one["health"], "Maintenance");
    let (s, _) = post(
        &m,
        "devices/qemu-01/set_health/",
        Some(ADMIN),
        json!({"health": "Sleepy"}),
    );
    assert_eq!(s, 400);
    let (s, _) = post(
        &m,
        "devices/qemu-01/set_health/",
        Some(USER),
        json!({"health": "Good"}),
    );
    assert_eq!(s, 403);
    let (_, workers) = get(&m, "workers/");
    assert_eq!(workers["results"][0]["hostname"], "w1");
    assert_eq!(workers["results"][0]["health"], "Active");
    let (_, types) = get(&m, "devicetypes/");
    assert_eq!(types["results"][0]["name"], "qemu");
    // a device on an unknown worker is refused
    let (s, r) = post(
        &m,
        "devices/",
        Some(ADMIN),
        json!({"hostname": "qemu-02", "device_type": "qemu", "worker_host": "nowhere"}),
    );
    assert_eq!(s, 400, "{r}");
    assert!(
        r["message"].as_str().unwrap_or("").contains("nowhere"),
        "{r}"
    );
}

fn submitted_job_is_listed_and_canceled(backend: Backend) {
    let m = start(backend);
    register(&m);
    let (s, r) = post(&m, "jobs/", Some(USER), json!({"definition": demo_job()}));
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["message"], "job submitted");
    let id = r["job_ids"][0].as_u64().expect("a job id");

    let (s, page) = get(&m, "jobs/?state=Submitted");
    assert_eq!(s, 200);
    assert_eq!(page["count"], 1, "{page}");
    let j = &page["results"][0];
    assert_eq!(j["id"], id);
    assert_eq!(j["submitter"], "alice");
    assert_eq!(j["state"], "Submitted");
    assert_eq!(j["health"], "Unknown");
    assert_eq!(j["requested_device_type"], "qemu");
    assert_eq!(j["description"], "basalt demo - busybox smoke test");
    assert_eq!(j["priority"], 50);
    assert_eq!(j["definition"], demo_job());
    assert_eq!(j["original_definition"], demo_job());
    assert_eq!(j["multinode_definition"], "");
    assert_eq!(j["viewing_groups"], json!([]));
    assert_eq!(j["failure_tags"], json!([]));
    assert!(j["failure_comment"].is_null());
    assert!(j["actual_device"].is_null());
    assert!(j["start_time"].is_null() && j["end_time"].is_null());
    assert!(j["health_check"] == false);
    let submit_time = j["submit_time"].as_str().expect("submit_time");
    assert!(
        submit_time.len() >= 20 && submit_time.ends_with('Z'),
        "{submit_time}"
    );
    assert_eq!(&submit_time[4..5], "-");
    assert_eq!(&submit_time[10..11], "T");

    let (s, one) = get(&m, &format!("jobs/{id}/"));
    assert_eq!(s, 200);
    assert_eq!(&one, j);
    let (_, running) = get(&m, "jobs/?state=Running");
    assert_eq!(running["count"], 0);

    let resp = ureq::get(&format!("{}jobs/{id}/yaml/", m.base))
        .set("Authorization", &format!("Token {USER}"))
        .call()
        .expect("yaml");
    assert_eq!(resp.content_type(), "application/yaml");
    assert_eq!(resp.into_string().expect("body"), demo_job());

    // no log yet
    let (s, r) = get(&m, &format!("jobs/{id}/logs/"));
    assert_eq!(s, 404, "{r}");
    assert!(r["message"].is_string());

    // cancel needs a token; a queued job is canceled at once
    let (s, _) = get_anonymous(&m, &format!("jobs/{id}/cancel/"));
    assert_eq!(s, 401);
    let (s, r) = call(&m, "GET", &format!("jobs/{id}/cancel/"), Some(USER), None);
    assert_eq!(s, 200, "{r}");
    let (_, one) = get(&m, &format!("jobs/{id}/"));
    assert_eq!(one["state"], "Finished");
    assert_eq!(one["health"], "Canceled");
    assert!(one["end_time"].is_string());
}

fn jobs_are_paged_with_absolute_urls(backend: Backend) {
    let m = start(backend);
    register(&m);
    for _ in 0..3 {
        let (s, r) = post(&m, "jobs/", Some(USER), json!({"definition": demo_job()}));
        assert_eq!(s, 201, "{r}");
    }
    let (s, page) = get(&m, "jobs/?limit=2");
    assert_eq!(s, 200);
    assert_eq!(page["count"], 3);
    assert_eq!(page["results"].as_array().map(Vec::len), Some(2));
    let next = page["next"].as_str().expect("next");
    assert!(next.starts_with(&m.base), "{next}");
    let rest = &next[m.base.len()..];
    let (_, page2) = get(&m, rest);
    assert_eq!(page2["results"].as_array().map(Vec::len), Some(1));
    assert!(page2["next"].is_null());
    assert!(page2["previous"].is_string());
    // by id, as lava-api's jobs().id(..) asks
    let newest = page["results"][0]["id"].as_u64().expect("id");
    let (_, by_id) = get(&m, &format!("jobs/?id={newest}"));
    assert_eq!(by_id["count"], 1);
    assert_eq!(by_id["results"][0]["id"], newest);
    let (_, by_ids) = get(&m, &format!("jobs/?id__in={},{newest},999", newest - 1));
    assert_eq!(by_ids["count"], 2, "{by_ids}");
    let (_, none) = get(&m, &format!("jobs/?id={newest}&state=Running"));
    assert_eq!(none["count"], 0);
    let (s, r) = get(&m, "jobs/?limit=many");
    assert_eq!(s, 400, "{r}");
    let (s, r) = get(&m, "jobs/?state=Sleeping");
    assert_eq!(s, 400, "{r}");
}

fn bad_requests_are_refused_with_a_message(backend: Backend) {
    let m = start(backend);
    register(&m);
    // an invalid job
    let (s, r) = post(
        &m,
        "jobs/",
        Some(USER),
        json!({"definition": "device_type: qemu\nactions: 7\n"}),
    );
    assert_eq!(s, 400, "{r}");
    assert!(!r["message"].as_str().unwrap_or("").is_empty(), "{r}");
    // malformed JSON, and JSON without the definition
    let (s, r) = call(&m, "POST", "jobs/", Some(USER), Some("{\"definition\": "));
    assert_eq!(s, 400, "{r}");
    assert!(r["message"].is_string());
    let (s, _) = post(&m, "jobs/", Some(USER), json!({"yaml": "x"}));
    assert_eq!(s, 400);
    // no token, a wrong token
    let (s, r) = post(&m, "jobs/", None, json!({"definition": demo_job()}));
    assert_eq!(s, 401, "{r}");
    assert!(r["message"].is_string());
    let (s, _) = post(
        &m,
        "jobs/",
        Some("not-a-token"),
        json!({"definition": demo_job()}),
    );
    assert_eq!(s, 401);
    // a user who is not an admin
    let (s, r) = post(
        &m,
        "devices/",
        Some(USER),
        json!({"hostname": "qemu-02", "device_type": "qemu", "worker_host": "w1"}),
    );
    assert_eq!(s, 403, "{r}");
    let (s, _) = post(&m, "workers/", None, json!({"hostname": "w2"}));
    assert_eq!(s, 401);
    // unknown objects
    for path in [
        "jobs/999/",
        "jobs/abc/",
        "jobs/999/logs/",
        "devices/nothing/",
        "devices/nothing/dictionary/",
    ] {
        let (s, r) = get(&m, path);
        assert_eq!(s, 404, "{path}: {r}");
        assert!(r["message"].is_string(), "{path}: {r}");
    }
    // a body over the limit
    let big = format!(
        "{{\"definition\": \"{}\"}}",
        "x".repeat(http::BODY_LIMIT + 1)
    );
    let (s, _) = call(&m, "POST", "jobs/", Some(USER), Some(&big));
    assert_eq!(s, 413);
}

fn logs_are_served_by_line_range(backend: Backend) {
    let m = start(backend);
    register(&m);
    let (s, r) = post(&m, "jobs/", Some(USER), json!({"definition": demo_job()}));
    assert_eq!(s, 201, "{r}");
    let id = r["job_ids"][0].as_u64().expect("a job id");
    // the engine's log directory for the job, written as the engine writes it
    let records: Vec<String> = (0..5)
        .map(|i| format!("- {{\"dt\": \"2026-07-01T00:00:0{i}.000000\", \"lvl\": \"info\", \"msg\": \"line {i}\"}}"))
        .collect();
    let mut log =
        basalt_master::logs::JobLogFile::open(&m.state_dir.join("jobs").join(id.to_string()))
            .expect("log");
    log.append(1, &records).expect("append");
    let resp = ureq::get(&format!("{}jobs/{id}/logs/", m.base))
        .set("Authorization", &format!("Token {USER}"))
        .call()
        .expect("logs");
    assert_eq!(resp.content_type(), "application/yaml");
    let all = resp.into_string().expect("body");
    assert_eq!(all.lines().collect::<Vec<_>>(), records);
    let (s, some) = get(&m, &format!("jobs/{id}/logs/?start=1&end=3"));
    assert_eq!(s, 200);
    let some = some.as_str().expect("yaml text").to_string();
    assert_eq!(some, format!("{}\n{}\n", records[1], records[2]));
    let (s, tail) = get(&m, &format!("jobs/{id}/logs/?start=4"));
    assert_eq!(s, 200);
    assert_eq!(tail.as_str(), Some(format!("{}\n", records[4]).as_str()));
    // past the end: no data yet
    let (s, _) = get(&m, &format!("jobs/{id}/logs/?start=5"));
    assert_eq!(s, 404);
}

/// A child process, killed and reaped when the test ends, passing or not.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the child's stderr until the line that tells where the API listens.
fn api_url(stderr: &mut impl std::io::BufRead) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = stderr.read_line(&mut line).expect("stderr");
        assert!(n > 0, "basalt-master exited before listening");
        if let Some(url) = line.trim().split("API on ").nth(1) {
            return url.to_string();
        }
    }
}

fn binary_makes_tokens_serves_and_stops_on_sigterm(backend: Backend) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_basalt-master");
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = Command::new(bin)
        .arg("--state-dir")
        .arg(dir.path())
        .args(backend.args())
        .args(["token", "add", "root", "--admin"])
        .output()
        .expect("token add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).expect("utf-8");
    let token = token.trim();
    assert_eq!(token.len(), 64, "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));

    let mut child = Command::new(bin)
        .arg("--state-dir")
        .arg(dir.path())
        .args(backend.args())
        .args(["--http", "127.0.0.1:0", "--workers", "tcp://127.0.0.1:*"])
        .args(["--coordinator", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .map(Reaped)
        .expect("basalt-master");
    let mut stderr = std::io::BufReader::new(child.0.stderr.take().expect("stderr"));
    let base = api_url(&mut stderr);
    assert!(dir.path().join("certs/master.key").is_file());
    // PostgreSQL's store leaves no SQLite file behind
    assert_eq!(
        dir.path().join("basalt.db").exists(),
        matches!(backend, Backend::Sqlite)
    );
    assert!(dir.path().join("certs/master.key_secret").is_file());
    assert!(dir.path().join("certs/workers").is_dir());
    let v: Value = ureq::get(&format!("{base}system/version/"))
        .call()
        .expect("version")
        .into_json()
        .expect("json");
    assert_eq!(v["version"], "2026.07");
    // reads need a token by default
    match ureq::get(&format!("{base}workers/")).call() {
        Err(ureq::Error::Status(401, _)) => {}
        other => panic!("an anonymous read without --anonymous-read: {other:?}"),
    }
    let resp = ureq::post(&format!("{base}workers/"))
        .set("Authorization", &format!("Token {token}"))
        .send_json(json!({"hostname": "w1"}))
        .expect("add worker");
    assert_eq!(resp.status(), 201);

    let pid = child.0.id().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    // wait for the exit, with a deadline
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.0.wait());
    });
    let Ok(status) = rx.recv_timeout(Duration::from_secs(20)) else {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("still running 20 s after SIGTERM");
    };
    let status = status.expect("wait");
    assert!(status.success(), "{status}");
    let rest: Vec<String> = stderr.lines().map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");

    // a second start keeps the key and the store; --anonymous-read serves reads without a token
    let key = std::fs::read_to_string(dir.path().join("certs/master.key")).expect("key");
    let mut child = Command::new(bin)
        .arg("--state-dir")
        .arg(dir.path())
        .args(backend.args())
        .args(["--http", "127.0.0.1:0", "--workers", "tcp://127.0.0.1:*"])
        .args(["--coordinator", "127.0.0.1:0"])
        .arg("--anonymous-read")
        .stderr(Stdio::piped())
        .spawn()
        .map(Reaped)
        .expect("basalt-master");
    let mut stderr = std::io::BufReader::new(child.0.stderr.take().expect("stderr"));
    let base = api_url(&mut stderr);
    let workers: Value = ureq::get(&format!("{base}workers/"))
        .call()
        .expect("workers")
        .into_json()
        .expect("json");
    assert_eq!(workers["results"][0]["hostname"], "w1");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("certs/master.key")).expect("key"),
        key
    );
}

#[test]
fn a_database_that_cannot_be_reached_is_named_without_its_password() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_basalt-master"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["--database", "postgres://basalt:s3cret@127.0.0.1:1/basalt"])
        .args(["token", "add", "root"])
        .output()
        .expect("basalt-master");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to postgres://basalt:***@127.0.0.1:1/basalt")
            && !err.contains("s3cret"),
        "{err}"
    );
    assert!(err.contains("Connection refused"), "says why: {err}");
    assert!(!dir.path().join("basalt.db").exists());
}

fn results_are_served_as_lavas_test_cases(backend: Backend) {
    let m = start(backend);
    register(&m);
    let (s, r) = post(&m, "jobs/", Some(USER), json!({"definition": demo_job()}));
    assert_eq!(s, 201, "{r}");
    let id = r["job_ids"][0].as_u64().expect("a job id");
    let (s, page) = get(&m, &format!("jobs/{id}/tests/"));
    assert_eq!(s, 200);
    assert_eq!(page["count"], 0, "no results before the end");
    // the end as the engine stores it: the results.yaml text the worker sent
    let results: String = (0..60)
        .map(|i| match i {
            // a lava-test-set
            1 | 2 => {
                format!("- {{definition: 0_smoke, case: case-{i}, result: pass, set: boot}}\n")
            }
            _ => format!("- {{definition: 0_smoke, case: case-{i}, result: pass}}\n"),
        })
        .chain([
            "- {definition: lava, case: job, result: fail, error_type: Test, cause: test}\n"
                .to_string(),
        ])
        .collect();
    // a second connection to the master's database
    let store = match &m._backend {
        Backend::Sqlite => Store::open(&m.state_dir.join("basalt.db")),
        Backend::Postgres(db) => Store::connect(db.url()),
    }
    .expect("store");
    store
        .finish_job(
            id,
            basalt_master::JobHealth::Incomplete,
            Some(&Failure::new(FailureCause::Test, "Test", "x")),
            Some(&results),
            None,
            1,
        )
        .expect("finish");
    let (s, page) = get(&m, &format!("jobs/{id}/tests/"));
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["count"], 61);
    assert_eq!(page["results"].as_array().map(Vec::len), Some(50));
    assert_eq!(page["results"][0]["name"], "case-0");
    assert_eq!(page["results"][0]["result"], "pass");
    assert_eq!(page["results"][0]["suite"], 1);
    // a set by its id, an integer as LAVA's (lava-api parses it as one), or null
    assert_eq!(page["results"][0]["test_set"], Value::Null);
    assert_eq!(page["results"][1]["test_set"], 1);
    assert_eq!(page["results"][2]["test_set"], 1);
    let next = page["next"].as_str().expect("an absolute next URL");
    assert!(
        next.starts_with("http://") && next.ends_with("page=2"),
        "{next}"
    );
    let (s, page) = get(&m, &format!("jobs/{id}/tests/?page=2"));
    assert_eq!(s, 200);
    assert_eq!(page["results"].as_array().map(Vec::len), Some(11));
    let job = &page["results"][10];
    assert_eq!(
        (job["name"].as_str(), job["suite"].as_u64()),
        (Some("job"), Some(2))
    );
    assert!(job["metadata"]
        .as_str()
        .unwrap_or("")
        .contains("error_type: Test"));
    assert_eq!(job["failure_cause"], "test");
    assert_eq!(page["results"][0]["failure_cause"], Value::Null);
    let (_, shown) = get(&m, &format!("jobs/{id}/"));
    assert_eq!(
        (
            &shown["failure_cause"],
            &shown["error_type"],
            &shown["failure_comment"]
        ),
        (&json!("test"), &json!("Test"), &json!("x"))
    );
    assert_eq!(get(&m, &format!("jobs/{id}/tests/?page=3")).0, 404);
    assert_eq!(get(&m, "jobs/999/tests/").0, 404);
}

fn jobs_are_filtered_and_ordered_as_lava_does(backend: Backend) {
    let m = start(backend);
    register(&m);
    let ids: Vec<u64> = (0..3)
        .map(|_| {
            let (s, r) = post(&m, "jobs/", Some(USER), json!({"definition": demo_job()}));
            assert_eq!(s, 201, "{r}");
            r["job_ids"][0].as_u64().expect("a job id")
        })
        .collect();
    let store = match &m._backend {
        Backend::Sqlite => Store::open(&m.state_dir.join("basalt.db")),
        Backend::Postgres(db) => Store::connect(db.url()),
    }
    .expect("store");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    store
        .finish_job(
            ids[1],
            basalt_master::JobHealth::Complete,
            None,
            Some("- {definition: 0_smoke, case: uname, result: pass}\n- {definition: 0_smoke, case: x, result: fail}\n"),
            None,
            now,
        )
        .expect("finish");
    let listed = |q: &str| -> Vec<u64> {
        let (s, page) = get(&m, &format!("jobs/?{q}"));
        assert_eq!(s, 200, "{q}: {page}");
        page["results"]
            .as_array()
            .expect("results")
            .iter()
            .filter_map(|j| j["id"].as_u64())
            .collect()
    };
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    assert_eq!(listed(""), [c, b, a], "newest first by default");
    assert_eq!(listed("ordering=id"), [a, b, c]);
    assert_eq!(listed("ordering=-id"), [c, b, a]);
    assert_eq!(listed("state=Finished"), [b]);
    assert_eq!(listed("state=finished"), [b], "names are case-insensitive");
    assert_eq!(
        listed("state__in=Submitted,Finished&ordering=id"),
        [a, b, c]
    );
    assert_eq!(listed("state=Submitted&ordering=id"), [a, c]);
    assert_eq!(listed("health=Complete"), [b]);
    assert_eq!(listed("health__in=Unknown"), [c, a]);
    assert_eq!(listed(&format!("id__gt={a}&ordering=id")), [b, c]);
    assert_eq!(listed(&format!("id__in={a},{c}")), [c, a]);
    assert_eq!(listed(&format!("id={b}")), [b]);
    // an empty `__in` list matches nothing, as Django's (lava-api sends `state__in=` when every
    // state is excluded)
    assert_eq!(listed("state__in="), Vec::<u64>::new());
    assert_eq!(listed("health__in=&state=Submitted"), Vec::<u64>::new());
    // the finished job has the only end time (unset times sort as the database sorts NULLs)
    assert_eq!(listed("state=Finished&ordering=-end_time"), [b]);
    assert_eq!(listed("ordering=end_time").len(), 3);
    assert_eq!(listed("submit_time__gt=2000-01-01T00:00:00Z").len(), 3);
    assert_eq!(
        listed("submit_time__gt=2999-01-01T00:00:00Z"),
        Vec::<u64>::new()
    );
    assert_eq!(listed("end_time__gt=2000-01-01T00:00:00%2B02:00"), [b]);
    assert_eq!(
        listed("start_time__gt=2000-01-01T00:00:00Z"),
        Vec::<u64>::new()
    );
    let (s, page) = get(&m, "jobs/?state=Finished&limit=1");
    assert_eq!((s, page["count"].as_u64()), (200, Some(1)));
    for bad in [
        "ordering=colour",
        "state=Sleeping",
        "submit_time__gt=yesterday",
        "id__gt=x",
    ] {
        let (s, r) = get(&m, &format!("jobs/?{bad}"));
        assert_eq!(s, 400, "{bad}: {r}");
        assert!(
            r["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{bad}: {r}"
        );
    }
    // JUnit of the finished job
    let resp = ureq::get(&format!("{}jobs/{b}/junit/", m.base))
        .set("Authorization", &format!("Token {USER}"))
        .call()
        .expect("junit");
    assert_eq!(resp.content_type(), "application/xml");
    let xml = resp.into_string().expect("body");
    assert!(
        xml.contains("<testsuite name=\"0_smoke\" tests=\"2\" failures=\"1\""),
        "{xml}"
    );
    // validate: LAVA's messages, both 200
    let (s, r) = post(
        &m,
        "jobs/validate/",
        Some(USER),
        json!({"definition": demo_job()}),
    );
    assert_eq!((s, r["message"].as_str()), (200, Some("Job valid.")), "{r}");
    let (s, r) = post(
        &m,
        "jobs/validate/",
        Some(USER),
        json!({"definition": "job_name: x\ntimeouts: 3\n"}),
    );
    assert_eq!(s, 200, "{r}");
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|t| t.starts_with("Job invalid: ")),
        "{r}"
    );
    let (s, _) = post(&m, "jobs/validate/", Some(USER), json!({}));
    assert_eq!(s, 400);
}

fn a_multinode_submission_answers_every_id_and_lists_its_group(backend: Backend) {
    let m = start(backend);
    register(&m);
    let (s, d) = post(
        &m,
        "devices/",
        Some(ADMIN),
        json!({"hostname": "qemu-02", "device_type": "qemu", "worker_host": "w1"}),
    );
    assert_eq!(s, 201, "{d}");
    let definition = "job_name: mn
visibility: public
timeouts: {job: {minutes: 5}}
protocols:
  lava-multinode:
    roles:
      server: {device_type: qemu, count: 1, tags: [fast]}
      client: {device_type: qemu, count: 1}
actions:
- boot: {role: [server, client], method: qemu, media: tmpfs, prompts: ['# ']}
";
    let (s, r) = post(&m, "jobs/", Some(USER), json!({ "definition": definition }));
    assert_eq!(s, 201, "{r}");
    let ids: Vec<u64> = r["job_ids"]
        .as_array()
        .expect("job_ids")
        .iter()
        .map(|i| i.as_u64().expect("an id"))
        .collect();
    assert_eq!(ids.len(), 2, "{r}");
    let (_, job) = get(&m, &format!("jobs/{}/", ids[1]));
    assert_eq!(job["is_multinode"], json!(true), "{job}");
    assert_eq!(job["sub_id"], json!(format!("{}.1", ids[0])));
    assert_eq!(job["role"], json!("client"));
    assert_eq!(job["multinode_definition"], json!(definition));
    let group = job["target_group"].as_str().expect("a target_group");
    assert_eq!(group.len(), 36, "a uuid: {group}");
    let (_, single) = post(&m, "jobs/", Some(USER), json!({"definition": demo_job()}));
    let single = single["job_ids"][0].as_u64().expect("an id");
    let (_, s) = get(&m, &format!("jobs/{single}/"));
    assert_eq!(
        (
            &s["is_multinode"],
            &s["sub_id"],
            &s["multinode_definition"],
            &s["target_group"]
        ),
        (&json!(false), &json!(""), &json!(""), &Value::Null)
    );
    let (_, page) = get(&m, &format!("jobs/?target_group={group}&ordering=id"));
    let listed: Vec<u64> = page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|j| j["id"].as_u64().expect("an id"))
        .collect();
    assert_eq!((page["count"].as_u64(), listed), (Some(2), ids));
}
