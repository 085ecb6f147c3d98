//! Reservations end to end on a real master (engine, store, REST on 127.0.0.1) with a fake
//! worker over the real ZeroMQ/CURVE link (`support/fake_worker.rs`): create by type and by
//! requirements, unmeetable requirements refused with the requirement named, two clients for
//! the last device, lease expiry (Cancel sent, state expired), renewal, boot and exec, power
//! off, release (Cancel, End, released, device Idle) and the health check after a boot, a
//! worker that cannot hold boards, and who sees the secrets.

#[path = "support/fake_worker.rs"]
mod fake_worker;
#[path = "support/master.rs"]
mod master;

use basalt_master::model::{DeviceHealth, DeviceState};
use basalt_master::store::{Device, DeviceType, DeviceTypeChange, Store};
use basalt_proto::MasterMsg;
use fake_worker::{Behaviour, FakeWorker};
use master::{request, Served};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const HEALTH_CHECK: &str = "device_type: qemu\njob_name: health\ntimeouts:\n  job:\n    minutes: 5\npriority: high\nvisibility: public\nactions:\n- boot:\n    method: minimal\n    prompts: ['/ # ']\n";

/// A lab: two qemu devices on w1 (1G/2 CPUs and 2G/4 CPUs, x86_64), one on w2; qemu's type
/// has a health check; tokens alice, bob (users) and root (admin).
fn lab() -> Store {
    let s = Store::memory().unwrap();
    s.put_device_type(&DeviceType {
        name: "qemu".into(),
        health_check: None,
    })
    .unwrap();
    s.upsert_device_type(
        "qemu",
        &DeviceTypeChange {
            health_check: Some(Some(HEALTH_CHECK.into())),
            ..DeviceTypeChange::default()
        },
    )
    .unwrap();
    s.add_worker("w1", "").unwrap();
    s.add_worker("w2", "").unwrap();
    for (host, worker, mem, cpus) in [
        ("qemu-01", "w1", 1024, 2),
        ("qemu-02", "w1", 2048, 4),
        ("qemu-09", "w2", 4096, 8),
    ] {
        s.add_device(&Device {
            hostname: host.into(),
            device_type: "qemu".into(),
            worker: worker.into(),
            description: String::new(),
            tags: Vec::new(),
            dictionary: Some(format!(
                "{{% extends 'qemu.jinja2' %}}\n{{% set arch = 'x86_64' %}}\n\
                 {{% set memory = {mem} %}}\n{{% set cpus = {cpus} %}}\n{{% set netdevice = 'none' %}}\n"
            )),
            state: DeviceState::Idle,
            health: DeviceHealth::Good,
            current_job: None,
        })
        .unwrap();
        s.set_device_health(host, DeviceHealth::Good, basalt_master::engine::now_ms())
            .unwrap();
    }
    s.add_token("alice", false, "alice-token").unwrap();
    s.add_token("bob", false, "bob-token").unwrap();
    s.add_token("root", true, "root-token").unwrap();
    s
}

struct Lab {
    _dir: tempfile::TempDir,
    _served: Served,
    base: String,
    worker: FakeWorker,
}

impl Lab {
    fn start() -> Lab {
        Lab::with(Behaviour::default())
    }

    fn with(b: Behaviour) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let served = master::serve(dir.path().to_path_buf(), lab());
        let worker = FakeWorker::start(dir.path(), "w1", &served.workers, &served.master_key, b);
        let base = format!("http://{}/api/v0.2/", served.addr);
        Lab {
            _dir: dir,
            _served: served,
            base,
            worker,
        }
    }

    fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        request(&self.base, method, path, Some(token), body.as_deref())
    }

    fn reserve(&self, token: &str, body: Value) -> Value {
        let (status, r) = self.call("POST", "reservations/", token, Some(body));
        assert_eq!(status, 201, "{r}");
        r
    }

    fn show(&self, id: u64, token: &str) -> Value {
        let (status, r) = self.call("GET", &format!("reservations/{id}/"), token, None);
        assert_eq!(status, 200, "{r}");
        r
    }

    /// Waits until reservation `id` is in `state`.
    fn wait_state(&self, id: u64, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.show(id, "alice-token");
            if r["state"] == state {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "reservation {id} never {state}: {r}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn device(&self, host: &str) -> Value {
        let (status, d) = self.call("GET", &format!("devices/{host}/"), "root-token", None);
        assert_eq!(status, 200, "{d}");
        d
    }

    /// Waits until `host` is Idle.
    fn wait_idle(&self, host: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.device(host)["state"] != "Idle" {
            assert!(
                Instant::now() < deadline,
                "{host} never Idle: {}",
                self.device(host)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn id_of(r: &Value) -> u64 {
    r["id"].as_u64().expect("an id")
}

#[test]
fn a_reservation_by_type_and_one_by_requirements_get_their_boards() {
    let lab = Lab::start();
    let by_type = lab.reserve(
        "alice-token",
        json!({"device_type": "qemu", "lease_secs": 600}),
    );
    assert_eq!(by_type["holder"], "alice");
    let ready = lab.wait_state(id_of(&by_type), "ready");
    assert_eq!(ready["device"], "qemu-01", "{ready}");
    assert_eq!(ready["worker"], "w1");
    assert_eq!(ready["booted"], false);
    assert_eq!(ready["connection"]["console"]["port"], 7100);
    let token = ready["connection"]["console"]["token"]
        .as_str()
        .expect("the holder sees it");
    assert_eq!(token.len(), 64);
    assert!(ready["connection"]["watch"]["token"].is_string());
    // the Start carried the lease with those tokens and no definition
    let start = lab
        .worker
        .wait_for(|m| matches!(m, MasterMsg::Start(_)), Duration::from_secs(5))
        .unwrap();
    let MasterMsg::Start(start) = start else {
        unreachable!()
    };
    let lease = start.lease.expect("a lease");
    assert_eq!(lease.console_token, token);
    assert!(start.definition.is_empty());
    assert!(lease.ssh_public_key.unwrap().starts_with("ssh-ed25519 "));
    assert!(
        lease.forward_ssh,
        "a qemu device's SSH is forwarded by its worker"
    );
    // by requirements: only qemu-02 has 2G on a worker that holds boards... and qemu-09
    let by_spec = lab.reserve(
        "alice-token",
        json!({"requirements": {"arch": "amd64", "ram": "2G", "cpus": 4}}),
    );
    assert_eq!(
        by_spec["requirements"],
        json!({"arch": "x86_64", "ram": "2G", "cpus": 4})
    );
    let ready = lab.wait_state(id_of(&by_spec), "ready");
    assert_eq!(
        ready["device"], "qemu-02",
        "w2 does not hold boards: {ready}"
    );
    // someone else sees neither tokens nor the private key
    let seen = lab.show(id_of(&by_spec), "bob-token");
    assert!(
        seen["connection"]["console"].get("token").is_none(),
        "{seen}"
    );
    assert!(!seen.to_string().contains("PRIVATE KEY"));
    let mine = lab.show(id_of(&by_spec), "alice-token");
    assert!(mine.to_string().contains("PRIVATE KEY") || mine["connection"].get("ssh").is_none());
    // lists: the caller's, everyone's for admins only
    let (_, list) = lab.call("GET", "reservations/", "alice-token", None);
    assert_eq!(list["count"], 2, "{list}");
    let (_, list) = lab.call("GET", "reservations/", "bob-token", None);
    assert_eq!(list["count"], 0, "{list}");
    assert_eq!(
        lab.call("GET", "reservations/?all=1", "bob-token", None).0,
        403
    );
    let (_, list) = lab.call("GET", "reservations/?all=1&state=ready", "root-token", None);
    assert_eq!(list["count"], 2, "{list}");
    // no token: 401
    assert_eq!(
        request(&lab.base, "GET", "reservations/", None, None).0,
        401
    );
}

#[test]
fn requirements_no_device_meets_are_refused_at_once_naming_them() {
    let lab = Lab::start();
    let (status, e) = lab.call(
        "POST",
        "reservations/",
        "alice-token",
        Some(json!({"requirements": {"ram": "16G"}})),
    );
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["unmet"], json!(["ram"]));
    assert_eq!(
        e["error"],
        "no device meets ram >= 16G: the largest is 4G (qemu-09)"
    );
    let (status, e) = lab.call(
        "POST",
        "reservations/",
        "alice-token",
        Some(json!({"requirements": {"arch": "arm64", "gpus": 1}})),
    );
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("'gpus'"), "{e}");
    for (body, needle) in [
        (json!({"requirements": {"arch": "arm64"}}), "arch = arm64"),
        (json!({"device_type": "nosuch"}), "nosuch"),
        (
            json!({"device": "qemu-01", "lease_secs": 10_000_000}),
            "lease_secs",
        ),
        (json!({}), "device_type"),
        (
            json!({"device_type": "qemu", "ssh_public_key": "not a key"}),
            "ssh_public_key",
        ),
        (
            json!({"device_type": "qemu", "boot": {"kernel": "ftp://x/k"}}),
            "kernel",
        ),
        (json!({"device_type": "qemu", "colour": "red"}), "colour"),
    ] {
        let (status, e) = lab.call("POST", "reservations/", "alice-token", Some(body.clone()));
        assert_eq!(status, 400, "{body}: {e}");
        assert!(
            e["error"].as_str().unwrap_or("").contains(needle),
            "{body}: {e}"
        );
    }
    // nothing was queued
    let (_, list) = lab.call("GET", "reservations/?all=1", "root-token", None);
    assert_eq!(list["count"], 0, "{list}");
}

#[test]
fn the_second_client_for_the_last_device_waits_and_gets_it_after_the_first_releases() {
    let lab = Lab::start();
    let spec = json!({"requirements": {"ram": "2G"}});
    let first = lab.reserve("alice-token", spec.clone());
    assert_eq!(lab.wait_state(id_of(&first), "ready")["device"], "qemu-02");
    let second = lab.reserve("bob-token", spec);
    assert_eq!(second["state"], "queued");
    // an unrelated reservation is scheduled after it, so a pass has run with it queued
    let other = lab.reserve("alice-token", json!({"device": "qemu-01"}));
    lab.wait_state(id_of(&other), "ready");
    assert_eq!(lab.show(id_of(&second), "bob-token")["state"], "queued");
    // only the holder (or an admin) releases
    let path = format!("reservations/{}/release/", id_of(&first));
    assert_eq!(lab.call("POST", &path, "bob-token", None).0, 403);
    let (status, r) = lab.call("POST", &path, "alice-token", None);
    assert_eq!(status, 200, "{r}");
    lab.wait_state(id_of(&first), "released");
    let got = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = lab.show(id_of(&second), "bob-token");
            if r["state"] == "ready" {
                break r;
            }
            assert!(Instant::now() < deadline, "{r}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    assert_eq!(got["device"], "qemu-02");
    // releasing again is fine
    assert_eq!(lab.call("POST", &path, "alice-token", None).0, 200);
    assert_eq!(lab.show(id_of(&first), "alice-token")["state"], "released");
}

#[test]
fn a_lease_that_runs_out_is_canceled_and_expires() {
    let lab = Lab::start();
    let r = lab.reserve("alice-token", json!({"device": "qemu-01", "lease_secs": 1}));
    let id = id_of(&r);
    lab.wait_state(id, "ready");
    let cancel = lab.worker.wait_for(
        |m| matches!(m, MasterMsg::Cancel(c) if c.job_id.0 == id),
        Duration::from_secs(10),
    );
    assert!(
        cancel.is_some(),
        "a Cancel at expiry: {:?}",
        lab.worker.seen()
    );
    let done = lab.wait_state(id, "expired");
    assert_eq!(done["reason"], "the lease ran out");
    lab.wait_idle("qemu-01");
    // its job ended as any job does
    let (_, job) = lab.call("GET", &format!("jobs/{id}/"), "alice-token", None);
    assert_eq!(job["state"], "Finished", "{job}");
    // an expired lease is not renewed
    let (status, _) = lab.call(
        "POST",
        &format!("reservations/{id}/renew/"),
        "alice-token",
        None,
    );
    assert_eq!(status, 409);
}

#[test]
fn renewing_moves_the_expiry() {
    let lab = Lab::start();
    let r = lab.reserve(
        "alice-token",
        json!({"device_type": "qemu", "lease_secs": 60}),
    );
    let id = id_of(&r);
    lab.wait_state(id, "ready");
    let before = basalt_master::http::parse_rfc3339(
        lab.show(id, "alice-token")["expires"].as_str().unwrap(),
    )
    .unwrap();
    let path = format!("reservations/{id}/renew/");
    assert_eq!(lab.call("POST", &path, "bob-token", Some(json!({}))).0, 403);
    let (status, after) = lab.call(
        "POST",
        &path,
        "alice-token",
        Some(json!({"lease_secs": 3600})),
    );
    assert_eq!(status, 200, "{after}");
    let moved = basalt_master::http::parse_rfc3339(after["expires"].as_str().unwrap()).unwrap();
    assert!(moved >= before + 3_000_000, "{before} -> {moved}");
    assert_eq!(after["lease_secs"], 3600);
    // beyond the master's maximum: refused
    let (status, e) = lab.call(
        "POST",
        &path,
        "alice-token",
        Some(json!({"lease_secs": 100_000_000})),
    );
    assert_eq!(status, 400, "{e}");
    // an admin may renew it too
    assert_eq!(lab.call("POST", &path, "root-token", None).0, 200);
}

#[test]
fn a_boot_then_exec_power_off_and_release_with_a_health_check_after() {
    let lab = Lab::start();
    let r = lab.reserve(
        "alice-token",
        json!({"device": "qemu-01", "boot": {"kernel": "http://127.0.0.1:9/vmlinux", "ramdisk": "http://127.0.0.1:9/initrd"}}),
    );
    let id = id_of(&r);
    let ready = lab.wait_state(id, "ready");
    assert_eq!(ready["booted"], true, "{ready}");
    assert_eq!(ready["connection"]["ssh"]["port"], 7101, "{ready}");
    // the boot was a LAVA job of deploy and boot actions for the qemu device
    let boot = lab
        .worker
        .wait_for(|m| matches!(m, MasterMsg::Hold(_)), Duration::from_secs(5))
        .unwrap();
    let MasterMsg::Hold(h) = boot else {
        unreachable!()
    };
    match h.action {
        basalt_proto::HoldAction::Boot { definition, .. } => {
            assert!(
                definition.contains("to: tmpfs") && definition.contains("method: qemu"),
                "{definition}"
            )
        }
        other => panic!("a boot, not {other:?}"),
    }
    let exec = format!("reservations/{id}/exec/");
    let (status, out) = lab.call(
        "POST",
        &exec,
        "alice-token",
        Some(json!({"command": "uname -a"})),
    );
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        out,
        json!({"output": "ran: uname -a\n", "exit_status": 0, "truncated": false})
    );
    let (_, out) = lab.call(
        "POST",
        &exec,
        "alice-token",
        Some(json!({"command": "false", "timeout_secs": 5})),
    );
    assert_eq!(out["exit_status"], 1);
    assert_eq!(
        lab.call("POST", &exec, "bob-token", Some(json!({"command": "id"})))
            .0,
        403
    );
    assert_eq!(
        lab.call("POST", &exec, "alice-token", Some(json!({"command": ""})))
            .0,
        400
    );
    // powered off: ready, nothing to run commands on
    let (status, off) = lab.call(
        "POST",
        &format!("reservations/{id}/power-off/"),
        "alice-token",
        None,
    );
    assert_eq!(status, 200, "{off}");
    assert_eq!(off["state"], "ready");
    assert_eq!(
        lab.call("POST", &exec, "alice-token", Some(json!({"command": "id"})))
            .0,
        409
    );
    // boot again (202), then release with DELETE
    let (status, b) = lab.call(
        "POST",
        &format!("reservations/{id}/boot/"),
        "alice-token",
        Some(
            json!({"kernel": "http://127.0.0.1:9/vmlinux", "ramdisk": "http://127.0.0.1:9/initrd"}),
        ),
    );
    assert_eq!(status, 202, "{b}");
    lab.wait_state(id, "ready");
    let (status, _) = lab.call(
        "DELETE",
        &format!("reservations/{id}/"),
        "alice-token",
        None,
    );
    assert_eq!(status, 200);
    assert!(lab
        .worker
        .wait_for(
            |m| matches!(m, MasterMsg::Cancel(c) if c.job_id.0 == id),
            Duration::from_secs(5)
        )
        .is_some());
    lab.wait_state(id, "released");
    // something was booted: the device gets a health check (the fake worker passes it)
    let check = lab.worker.wait_for(
        |m| matches!(m, MasterMsg::Start(s) if s.health_check && s.device == "qemu-01"),
        Duration::from_secs(10),
    );
    assert!(
        check.is_some(),
        "a health check of qemu-01: {:?}",
        lab.worker.seen()
    );
    lab.wait_idle("qemu-01");
    // nothing is done on a released reservation
    assert_eq!(
        lab.call("POST", &exec, "alice-token", Some(json!({"command": "id"})))
            .0,
        409
    );
}

#[test]
fn exec_before_any_boot_is_refused() {
    let lab = Lab::start();
    let id = id_of(&lab.reserve("alice-token", json!({"device": "qemu-02"})));
    lab.wait_state(id, "ready");
    let (status, e) = lab.call(
        "POST",
        &format!("reservations/{id}/exec/"),
        "alice-token",
        Some(json!({"command": "id"})),
    );
    assert_eq!(status, 409, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("nothing booted"),
        "{e}"
    );
    assert_eq!(
        lab.call("GET", "reservations/999/", "alice-token", None).0,
        404
    );
    assert_eq!(
        lab.call("GET", "reservations/x/", "alice-token", None).0,
        404
    );
}

#[test]
fn a_worker_that_cannot_hold_boards_gets_no_reservation() {
    let lab = Lab::with(Behaviour {
        holds: false,
        ..Behaviour::default()
    });
    let id = id_of(&lab.reserve("alice-token", json!({"device": "qemu-01"})));
    // a pass explains why it waits
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = lab.show(id, "alice-token");
        if r["reason"].is_string() {
            break r;
        }
        assert!(Instant::now() < deadline, "{r}");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(r["state"], "queued");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("`reservations` capability"),
        "{r}"
    );
    assert!(!lab
        .worker
        .seen()
        .iter()
        .any(|m| matches!(m, MasterMsg::Start(_))));
    // released while queued: final at once
    let (_, r) = lab.call(
        "POST",
        &format!("reservations/{id}/release/"),
        "alice-token",
        None,
    );
    assert_eq!(r["state"], "released", "{r}");
    let store_state = lab.show(id, "alice-token");
    assert_eq!(store_state["state"], "released");
}
