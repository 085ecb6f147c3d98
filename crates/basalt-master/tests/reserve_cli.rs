//! `basalt reserve` against a real master (in-process, REST on 127.0.0.1) with a fake worker
//! over ZeroMQ: create --wait, boot --wait, exec (its output printed, its exit status
//! returned), list, a refused requirement, release. Runs the workspace's `basalt` binary
//! next to this test's (`cargo build --workspace --bins` first).

#[path = "support/fake_worker.rs"]
mod fake_worker;
#[path = "support/master.rs"]
mod master;

use basalt_master::model::{DeviceHealth, DeviceState};
use basalt_master::store::{Device, DeviceType, Store};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The `basalt` binary cargo built beside this test's binary.
fn basalt() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/debug");
    let b = dir.join("basalt");
    assert!(
        b.is_file(),
        "{} is missing: cargo build --workspace --bins",
        b.display()
    );
    b
}

fn lab() -> Store {
    let s = Store::memory().unwrap();
    s.put_device_type(&DeviceType {
        name: "qemu".into(),
        health_check: None,
    })
    .unwrap();
    s.add_worker("w1", "").unwrap();
    s.add_device(&Device {
        hostname: "qemu-01".into(),
        device_type: "qemu".into(),
        worker: "w1".into(),
        description: String::new(),
        tags: Vec::new(),
        dictionary: Some(
            "{% extends 'qemu.jinja2' %}\n{% set arch = 'x86_64' %}\n{% set memory = 1024 %}\n\
             {% set netdevice = 'none' %}\n"
                .into(),
        ),
        state: DeviceState::Idle,
        health: DeviceHealth::Good,
        current_job: None,
    })
    .unwrap();
    s.add_token("alice", false, "alice-token").unwrap();
    s
}

#[test]
fn the_cli_reserves_boots_runs_and_releases() {
    let dir = tempfile::tempdir().unwrap();
    let served = master::serve(dir.path().to_path_buf(), lab());
    let _worker = fake_worker::FakeWorker::start(
        dir.path(),
        "w1",
        &served.workers,
        &served.master_key,
        fake_worker::Behaviour::default(),
    );
    let url = format!("http://{}", served.addr);
    let run = |args: &[&str]| -> Output {
        Command::new(basalt())
            .arg("reserve")
            // before the subcommand: exec's command takes everything after --
            .args(["--url", &url, "--token", "alice-token"])
            .args(args)
            .output()
            .expect("basalt runs")
    };
    let ok = |out: &Output| {
        assert!(
            out.status.success(),
            "{:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let created: serde_json::Value = serde_json::from_str(&ok(&run(&[
        "create", "--device", "qemu-01", "--lease", "10m", "--wait", "--json",
    ])))
    .expect("JSON");
    assert_eq!(created["state"], "ready", "{created}");
    assert_eq!(created["lease_secs"], 600);
    let id = created["id"].as_u64().unwrap().to_string();
    let booted = ok(&run(&[
        "boot",
        &id,
        "--kernel",
        "http://127.0.0.1:9/vmlinux",
        "--ramdisk",
        "http://127.0.0.1:9/initrd",
        "--wait",
    ]));
    assert!(
        booted.contains(&format!("reservation {id}: ready on qemu-01")),
        "{booted}"
    );
    assert!(
        booted.contains("ssh: ssh -p 7101 root@127.0.0.1"),
        "{booted}"
    );
    let out = run(&["exec", &id, "--", "uname", "-a"]);
    assert_eq!(ok(&out), "ran: uname -a\n");
    let out = run(&["exec", &id, "--", "false"]);
    assert_eq!(out.status.code(), Some(1), "the command's status");
    let list = ok(&run(&["list"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with(&id) && l.contains("ready")),
        "{list}"
    );
    let refused = run(&["create", "--require", "ram=64G"]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("no device meets ram >= 64G"), "{why}");
    ok(&run(&["release", &id]));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let shown = ok(&run(&["show", &id]));
        if shown.contains("released") {
            break;
        }
        assert!(Instant::now() < deadline, "{shown}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
