//! Reservations with the lab's real processes ([`basalt::lab::LocalLab`]: `basalt-master`, one
//! `basalt-worker`, one `basalt-board`): create → `ready` on an idle basalt-board device, no
//! boot (issue 21's anchor: p99 ≤ 200 ms). The path measured is the whole one: REST create,
//! the scheduler, the `Start` with its lease over ZeroMQ/CURVE, the worker setting up the held
//! console (ports, tokens, the hub), its `HoldState` back, the client's poll.
//!
//!     cargo build --release --workspace && cargo bench --bench reserve_lab
//!
//! Each reservation is created with the REST API, polled (every millisecond) until `ready`,
//! released, and its device waited for until Idle again, one after the other.
//! `BASALT_BENCH_RESERVATIONS` changes the number (default 100). The master alone, with a
//! worker that answers at once, is `cargo bench -p basalt-master --bench reserve`.

mod common;

use std::time::{Duration, Instant};

/// The anchor: p99 create → ready.
const ANCHOR_MS: f64 = 200.0;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Polls `done` every millisecond until it holds; exits the bench with `what` at `within`.
fn wait(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            eprintln!("reserve_lab: {what} not within {within:?}");
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn main() {
    let n: usize = std::env::var("BASALT_BENCH_RESERVATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(100);
    let (lab, tmp) = common::one_board_lab("reserve");
    let token = match lab.add_token("ci", false) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("reserve_lab: {e}");
            std::process::exit(1);
        }
    };
    let c = basalt::client::Client::new(&lab.url, Some(token));
    let field = |path: &str, key: &str| {
        c.get(path)
            .ok()
            .and_then(|v| v[key].as_str().map(String::from))
            .unwrap_or_default()
    };
    let body = serde_json::json!({"device_type": "basalt-board", "lease_secs": 600});
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let id = match c.post("reservations/", &body) {
            Ok(r) => r["id"].as_u64().unwrap_or(0),
            Err(e) => {
                eprintln!("reserve_lab: create: {e}");
                std::process::exit(1);
            }
        };
        let path = format!("reservations/{id}/");
        wait("ready", Duration::from_secs(30), || {
            field(&path, "state") == "ready"
        });
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        let device = field(&path, "device");
        if let Err(e) = c.post(&format!("{path}release/"), &serde_json::json!({})) {
            eprintln!("reserve_lab: release: {e}");
            std::process::exit(1);
        }
        wait("released", Duration::from_secs(30), || {
            field(&path, "state") == "released"
        });
        wait("the device Idle", Duration::from_secs(60), || {
            field(&format!("devices/{device}/"), "state") == "Idle"
        });
    }
    drop(lab);
    let _ = std::fs::remove_dir_all(&tmp);
    ms.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1],
    );
    println!(
        "reservations: create -> ready on an idle basalt-board device (no boot), real master + worker + board"
    );
    println!("| reservations | p50 ms | p99 ms | max ms | anchor (p99) | verdict |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| {n} | {p50:.1} | {p99:.1} | {max:.1} | <= {ANCHOR_MS:.0} ms | {} |",
        if p99 <= ANCHOR_MS { "met" } else { "MISSED" }
    );
}
