//! The job definitions' `notify:` callbacks, received by a small HTTP server: one request per
//! job reaching the criteria, LAVA's body for each dataset and content type, the token in its
//! header, and a receiver failing twice (HTTP 500) gets the third try.

use basalt_master::model::{DeviceHealth, DeviceState, JobHealth, Priority};
use basalt_master::notify::{Notifier, NotifyConfig};
use basalt_master::scheduler::Target;
use basalt_master::store::{Device, DeviceType, NewJob, Store};
use receiver::Server;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

#[path = "support/receiver.rs"]
mod receiver;

fn form(body: &str) -> BTreeMap<String, String> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    body.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn store(notifier: &Notifier) -> Store {
    let store = Store::memory().unwrap().observe(notifier.observer());
    store
        .put_device_type(&DeviceType {
            name: "qemu".into(),
            health_check: None,
        })
        .unwrap();
    store.add_worker("w1", "").unwrap();
    store
        .add_device(&Device {
            hostname: "d1".into(),
            device_type: "qemu".into(),
            worker: "w1".into(),
            description: String::new(),
            tags: Vec::new(),
            dictionary: None,
            state: DeviceState::Idle,
            health: DeviceHealth::Good,
            current_job: None,
        })
        .unwrap();
    store
}

const RESULTS: &str = "- {case: job, definition: lava, result: pass}\n- {case: pwd, definition: 0_smoke, result: fail}\n";

/// Submits a job with `notify`, runs it on d1 and finishes it with `health`.
fn run_job(store: &Store, logs: &std::path::Path, notify: &str, health: JobHealth) -> u64 {
    let definition = format!(
        "job_name: callback test\ndevice_type: qemu\nmetadata:\n  build: '42'\nnotify:\n{notify}"
    );
    let id = store
        .submit(
            &NewJob {
                submitter: "alice".into(),
                description: "callback test".into(),
                definition,
                target: Target::DeviceType("qemu".into()),
                tags: Vec::new(),
                priority: Priority::MEDIUM,
                health_check: false,
            },
            1_782_059_129_123,
        )
        .unwrap();
    let dir = logs.join(id.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("output.yaml"),
        format!("- {{\"dt\": \"2026-07-01T00:00:00.000001\", \"lvl\": \"info\", \"msg\": \"job {id}\"}}\n"),
    )
    .unwrap();
    store.schedule_job(id, "d1").unwrap();
    store.job_running(id, 1_782_059_130_000).unwrap();
    store
        .finish_job(id, health, None, Some(RESULTS), None, 1_782_059_140_000)
        .unwrap();
    id
}

fn config(logs: &std::path::Path) -> NotifyConfig {
    let mut c = NotifyConfig::new(logs.to_path_buf());
    c.backoff = Duration::from_millis(20);
    c.timeout = Duration::from_secs(5);
    c
}

#[test]
fn each_dataset_and_content_type_gets_lavas_body() {
    let logs = tempfile::tempdir().unwrap();
    let server = Server::start(BTreeMap::new());
    let notifier = Notifier::start(config(logs.path())).unwrap();
    let store = store(&notifier);
    let url = format!("http://{}", server.addr);

    // GET, minimal: no body, the token in Authorization, LAVA's URL variables
    let get = run_job(
        &store,
        logs.path(),
        &format!("  criteria:\n    status: finished\n  callback:\n    url: {url}/get/{{ID}}/{{STATUS_STRING}}\n    token: secret-1\n"),
        JobHealth::Complete,
    );
    let r = server.next();
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, format!("/get/{get}/complete"));
    assert_eq!(r.headers["authorization"], "secret-1");
    assert!(r.body.is_empty());

    // POST json, all: everything, the token in the header named
    let all = run_job(
        &store,
        logs.path(),
        &format!("  criteria:\n    status: incomplete\n  recipients:\n  - to:\n      method: email\n      email: alice@example.org\n  callbacks:\n  - url: {url}/all\n    method: POST\n    token: secret-2\n    header: X-Callback-Token\n    dataset: all\n    content-type: json\n"),
        JobHealth::Incomplete,
    );
    let r = server.next();
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/all"));
    assert_eq!(r.headers["x-callback-token"], "secret-2");
    assert!(r.headers["content-type"].starts_with("application/json"));
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["id"], all);
    assert_eq!(body["status"], 3);
    assert_eq!(body["status_string"], "incomplete");
    assert_eq!(body["state"], 5);
    assert_eq!(body["state_string"], "Finished");
    assert_eq!(body["health"], 2);
    assert_eq!(body["health_string"], "Incomplete");
    assert_eq!(body["submitter_username"], "alice");
    assert_eq!(body["description"], "callback test");
    assert_eq!(body["actual_device_id"], "d1");
    assert_eq!(body["priority"], 50);
    assert_eq!(body["health_check"], false);
    assert_eq!(body["submit_time"], "2026-06-21 16:25:29.123000+00:00");
    assert!(body["definition"]
        .as_str()
        .unwrap()
        .contains("job_name: callback test"));
    assert_eq!(body["metadata"], serde_json::json!([{"build": "42"}]));
    assert!(body["log"]
        .as_str()
        .unwrap()
        .contains(&format!("job {all}")));
    let results = body["results"].as_object().unwrap();
    assert!(results["lava"].as_str().unwrap().contains("name: job"));
    assert!(results["0_smoke"]
        .as_str()
        .unwrap()
        .contains("result: fail"));

    // POST urlencoded, results: no log
    let res = run_job(
        &store,
        logs.path(),
        &format!("  criteria:\n    status: complete\n  callback:\n    url: {url}/results\n    method: POST\n    dataset: results\n"),
        JobHealth::Complete,
    );
    let r = server.next();
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/results"));
    assert!(!r.headers.contains_key("authorization"));
    assert!(r.headers["content-type"].starts_with("application/x-www-form-urlencoded"));
    let f = form(&r.body);
    assert_eq!(f["id"], res.to_string());
    assert_eq!(f["status_string"], "complete");
    assert_eq!(f["health_check"], "False");
    assert_eq!(f["start_time"], "2026-06-21 16:25:30.000000+00:00");
    assert!(!f.contains_key("log"), "{f:?}");
    assert!(
        !f.contains_key("failure_comment"),
        "None is left out: {f:?}"
    );
    let results: Value = serde_json::from_str(&f["results"]).unwrap();
    assert!(results["0_smoke"].as_str().unwrap().contains("name: pwd"));

    // POST json, logs: the log, no results
    run_job(
        &store,
        logs.path(),
        &format!("  criteria:\n    status: complete\n  callback:\n    url: {url}/logs\n    method: POST\n    dataset: logs\n    content-type: json\n"),
        JobHealth::Complete,
    );
    let r = server.next();
    assert_eq!(r.path, "/logs");
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert!(body.get("log").is_some() && body.get("results").is_none());

    // criteria not met: no request; running: one when it runs (after the finished ones)
    run_job(
        &store,
        logs.path(),
        &format!("  criteria:\n    status: canceled\n  callback:\n    url: {url}/never\n"),
        JobHealth::Complete,
    );
    run_job(
        &store,
        logs.path(),
        &format!("  criteria:\n    status: running\n  callback:\n    url: {url}/running\n"),
        JobHealth::Complete,
    );
    let r = server.next();
    assert_eq!(r.path, "/running");
    // one request per job: nothing else arrived meanwhile
    assert!(server.requests.try_recv().is_err());
}

#[test]
fn a_receiver_failing_twice_gets_the_third_try() {
    let logs = tempfile::tempdir().unwrap();
    let server = Server::start([("/flaky".to_string(), vec![500, 500])].into());
    let notifier = Notifier::start(config(logs.path())).unwrap();
    let store = store(&notifier);
    let id = run_job(
        &store,
        logs.path(),
        &format!(
            "  criteria:\n    status: finished\n  callback:\n    url: http://{}/flaky\n    method: POST\n    content-type: json\n",
            server.addr
        ),
        JobHealth::Complete,
    );
    let statuses: Vec<u16> = (0..3).map(|_| server.next().status).collect();
    assert_eq!(statuses, [500, 500, 200]);
    let _ = id;
}
