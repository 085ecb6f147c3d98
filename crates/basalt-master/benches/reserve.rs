//! Reservations: create → ready on an idle basalt-board device (no boot), the anchor
//! (issue 21: p99 ≤ 200 ms). A real master (engine, SQLite store, REST on 127.0.0.1) and a
//! worker that answers at once (the fake of `tests/support/fake_worker.rs`, over the real
//! ZeroMQ/CURVE link); the client creates a reservation, polls it (`GET`, every millisecond)
//! until `ready`, releases it and waits until its device is Idle again, one after the other.
//! The time measured is create sent → `ready` seen by the client.
//!
//!     cargo bench -p basalt-master --bench reserve
//!
//! `BASALT_BENCH_RESERVATIONS` changes the number (default 200). The whole path, with the
//! real `basalt-worker` and a `basalt-board`, is the top-level `cargo bench --bench
//! reserve_lab`.

use basalt_master::model::{DeviceHealth, DeviceState};
use basalt_master::store::{Device, DeviceType, Store};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[path = "../tests/support/fake_worker.rs"]
mod fake_worker;
#[path = "../tests/support/master.rs"]
mod master;

/// The anchor: p99 create → ready.
const ANCHOR_MS: f64 = 200.0;

/// The worker that holds the board: the fake one (answers at once).
fn start_worker(state: &std::path::Path, served: &master::Served) -> impl Drop {
    fake_worker::FakeWorker::start(
        state,
        "w1",
        &served.workers,
        &served.master_key,
        fake_worker::Behaviour::default(),
    )
}

fn lab() -> Store {
    let s = Store::memory().expect("store");
    s.put_device_type(&DeviceType {
        name: "basalt-board".into(),
        health_check: None,
    })
    .expect("type");
    s.add_worker("w1", "").expect("worker");
    s.add_device(&Device {
        hostname: "board-01".into(),
        device_type: "basalt-board".into(),
        worker: "w1".into(),
        description: String::new(),
        tags: Vec::new(),
        dictionary: Some(
            include_str!("../../../config/devices/basalt-board-01.jinja2").to_string(),
        ),
        state: DeviceState::Idle,
        health: DeviceHealth::Good,
        current_job: None,
    })
    .expect("device");
    s.set_device_health("board-01", DeviceHealth::Good, 0)
        .expect("health");
    s.add_token("ci", false, "ci-token").expect("token");
    s
}

fn call(base: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string());
    let (status, v) = master::request(base, method, path, Some("ci-token"), body.as_deref());
    assert!(status < 300, "{method} {path}: {status} {v}");
    v
}

fn wait(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let n: usize = std::env::var("BASALT_BENCH_RESERVATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("state dir");
    let served = master::serve(dir.path().to_path_buf(), lab());
    let _worker = start_worker(dir.path(), &served);
    let base = format!("http://{}/api/v0.2/", served.addr);
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let r = call(
            &base,
            "POST",
            "reservations/",
            Some(json!({"device_type": "basalt-board"})),
        );
        let id = r["id"].as_u64().expect("an id");
        let path = format!("reservations/{id}/");
        wait("ready", Duration::from_secs(10), || {
            call(&base, "GET", &path, None)["state"] == "ready"
        });
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        call(&base, "POST", &format!("reservations/{id}/release/"), None);
        wait("released", Duration::from_secs(10), || {
            call(&base, "GET", &path, None)["state"] == "released"
        });
    }
    ms.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1],
    );
    println!("reservations: create -> ready on an idle basalt-board device (no boot), fake worker");
    println!("| reservations | p50 ms | p99 ms | max ms | anchor (p99) | verdict |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| {n} | {p50:.1} | {p99:.1} | {max:.1} | <= {ANCHOR_MS:.0} ms | {} |",
        if p99 <= ANCHOR_MS { "met" } else { "MISSED" }
    );
}
