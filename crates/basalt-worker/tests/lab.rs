//! A lab on this machine: the master's engine (in this process, its store in SQLite) and
//! `basalt-worker` daemons, each with a QEMU device. Jobs submitted to the engine all finish
//! Complete with their logs stored once; a worker killed with SIGKILL mid-job ends its job
//! Incomplete ("worker lost") within the heartbeat timeout, leaves its device in health
//! Unknown, and takes its job's QEMU along.

mod common;

use basalt_link::cert::Keypair;
use basalt_master::engine::{self, Handle};
use basalt_master::model::{DeviceHealth, DeviceState, JobHealth, JobState};
use basalt_master::store::{Device, DeviceType, Store};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Lab {
    handle: Handle,
    workers: Vec<Worker>,
    _dir: tempfile::TempDir,
}

/// A master with `n` workers `w1`.. each owning one QEMU device `qemu-<i>`.
async fn lab(n: usize) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("master");
    let certs = state.join("certs");
    let key = Keypair::generate();
    key.write(&certs, "master").unwrap();
    let store = Arc::new(Store::open(&dir.path().join("basalt.db")).unwrap());
    store
        .put_device_type(&DeviceType {
            name: "qemu".into(),
            health_check: None,
        })
        .unwrap();
    let dictionary =
        std::fs::read_to_string(common::repo().join("config/devices/qemu-amd64.jinja2")).unwrap();
    for i in 1..=n {
        let name = format!("w{i}");
        Keypair::generate()
            .write(&certs.join("workers"), &name)
            .unwrap();
        store.add_worker(&name, "").unwrap();
        store
            .add_device(&Device {
                hostname: format!("qemu-{i}"),
                device_type: "qemu".into(),
                worker: name,
                description: String::new(),
                tags: Vec::new(),
                dictionary: Some(dictionary.clone()),
                state: DeviceState::Idle,
                health: DeviceHealth::Unknown,
                current_job: None,
            })
            .unwrap();
    }
    let (handle, endpoint) = engine::start(
        engine::Config {
            state_dir: state.clone(),
            workers: "tcp://127.0.0.1:*".into(),
            key,
            heartbeat: Duration::from_secs(1),
            device_types: vec![common::repo().join("config/device-types")],
            version: basalt_proto::ProtocolVersion::CURRENT,
            required_capabilities: basalt_proto::Capabilities::new(),
            anonymous_read: false,
            coordinator: "127.0.0.1:3079".into(),
            coordinator_token: None,
            max_lease: engine::DEFAULT_MAX_LEASE,
        },
        store,
    )
    .unwrap();
    let workers = (1..=n)
        .map(|i| {
            let name = format!("w{i}");
            Worker(
                Command::new(env!("CARGO_BIN_EXE_basalt-worker"))
                    .args(["--name", &name, "--master", &endpoint])
                    .arg("--master-key")
                    .arg(certs.join("master.key"))
                    .arg("--key")
                    .arg(certs.join(format!("workers/{name}.key_secret")))
                    .arg("--state-dir")
                    .arg(dir.path().join(&name))
                    .arg("--tftp-root")
                    .arg("/var/tmp")
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    Lab {
        handle,
        workers,
        _dir: dir,
    }
}

/// Waits (polling the store, deadline `within`) until `done` holds.
async fn until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_submitted_to_the_master_run_on_its_workers() {
    let lab = lab(2).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            lab.handle
                .submit("admin", &common::demo_job(None))
                .await
                .unwrap(),
        );
    }
    let store = lab.handle.store.clone();
    let finished = until(Duration::from_secs(180), || {
        ids.iter().all(|id| {
            store
                .job(*id)
                .ok()
                .flatten()
                .is_some_and(|j| j.state == JobState::Finished)
        })
    })
    .await;
    assert!(finished, "not all jobs finished");
    let mut devices = std::collections::BTreeSet::new();
    for id in &ids {
        let j = store.job(*id).unwrap().unwrap();
        assert_eq!(j.health, JobHealth::Complete, "job {id}: {:?}", j.error_msg);
        assert!(j.results.as_deref().unwrap_or("").contains("case: uname"));
        devices.insert(j.actual_device.clone().unwrap());
        let (log, _) =
            basalt_master::logs::read_from(&lab.handle.log_dir(*id), 0, usize::MAX).unwrap();
        let log = String::from_utf8(log).unwrap();
        let mut seen = std::collections::HashSet::new();
        for line in log.lines() {
            assert!(seen.insert(line), "job {id}: a record stored twice: {line}");
        }
        assert!(log.contains("Job finished: Complete"), "job {id}");
    }
    assert_eq!(devices.len(), 2, "both devices ran jobs: {devices:?}");
    for d in store.devices().unwrap() {
        assert_eq!(d.state, DeviceState::Idle);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_is_lost_with_its_job() {
    let mut lab = lab(1).await;
    let id = lab
        .handle
        .submit("admin", &common::demo_job(Some("sleep 600")))
        .await
        .unwrap();
    let store = lab.handle.store.clone();
    let log_dir = lab.handle.log_dir(id);
    // running, and into its test shell
    assert!(
        until(Duration::from_secs(60), || {
            basalt_master::logs::read_from(&log_dir, 0, usize::MAX)
                .map(|(b, _)| String::from_utf8_lossy(&b).contains("sleep 600"))
                .unwrap_or(false)
        })
        .await,
        "the job did not reach its test"
    );
    let (log, _) = basalt_master::logs::read_from(&log_dir, 0, usize::MAX).unwrap();
    let log = String::from_utf8_lossy(&log).into_owned();
    let qemu: i32 = log
        .split("started qemu (pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .expect("QEMU's pid in the log");
    let worker = lab.workers.remove(0);
    let pid = worker.0.id() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    drop(worker);
    let killed = Instant::now();
    // 3 heartbeats of 1 s, checked every second: within 5 s
    assert!(
        until(Duration::from_secs(10), || {
            store
                .job(id)
                .ok()
                .flatten()
                .is_some_and(|j| j.state == JobState::Finished)
        })
        .await
    );
    assert!(
        killed.elapsed() < Duration::from_secs(6),
        "{:?}",
        killed.elapsed()
    );
    let j = store.job(id).unwrap().unwrap();
    assert_eq!(j.health, JobHealth::Incomplete);
    assert_eq!(j.error_type.as_deref(), Some("Infrastructure"));
    assert_eq!(j.error_msg.as_deref(), Some("worker lost"));
    let d = store.device("qemu-1").unwrap().unwrap();
    assert_eq!(
        (d.state, d.health),
        (DeviceState::Idle, DeviceHealth::Unknown)
    );
    // gone, or a zombie nobody reaps yet (its parent died with the worker): not running
    let qemu_gone = until(Duration::from_secs(10), || {
        let stat = std::fs::read_to_string(format!("/proc/{qemu}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        stat.is_empty() || state == Some("Z")
    })
    .await;
    assert!(qemu_gone, "QEMU {qemu} outlived its worker");
}
