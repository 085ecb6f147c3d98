//! A lab administered from the command line, against the binaries: `basalt-master`, a
//! `basalt-worker` and a QEMU device (software emulation), each step a `basalt` command as an
//! admin types it:
//! - `basalt device-types add qemu --health-check ...` and an alias; `basalt workers add`
//!   makes the worker's keys (they load, the master admitted the public one, master.key is
//!   the master's), and the worker started with them comes online; `basalt devices add
//!   --dictionary --health Unknown`: its health check runs and it ends Good; a bad dictionary
//!   is refused with its file, line and column and the old one stays; tags; a job for the
//!   alias runs on the device; maintenance and retire; no token or a user's token is refused
//!   with the master's 401 / 403;
//! - a worker killed (by its PID, SIGKILL) is marked Offline by the master within its
//!   heartbeat timeout, its device goes to Unknown, and when it is started again a health
//!   check runs on its device, which ends Good.
//!
//! They need QEMU and the boot fixtures (`hw-tests/build-fixtures.sh`), as CI has.

mod common;

use basalt::client::Client;
use basalt::lab::{LocalLab, Spec, WorkerSpec};
use basalt_link::cert;
use common::{bin, free_port, Daemon};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Waits until `cond` holds, within `within`.
fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The demo QEMU job on the fixtures (also the device type's health check).
fn qemu_job(repo: &Path) -> String {
    let (kernel, initrd) = common::fixtures_amd64();
    std::fs::read_to_string(repo.join("config/jobs/demo-qemu.yaml"))
        .expect("the demo job")
        .replace("@KERNEL@", &kernel.to_string_lossy())
        .replace("@INITRD@", &initrd.to_string_lossy())
}

/// `basalt ARGS --url URL [--token TOKEN]`.
fn basalt(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("basalt"));
    cmd.args(args)
        .args(["--url", url])
        .env_remove("BASALT_TOKEN");
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    cmd.output().expect("basalt runs")
}

/// [`basalt`] that must succeed; its stdout.
fn ok(url: &str, token: &str, args: &[&str]) -> String {
    let out = basalt(url, Some(token), args);
    assert!(
        out.status.success(),
        "basalt {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn token_add(state: &Path, user: &str, admin: bool) -> String {
    let mut cmd = Command::new(bin("basalt-master"));
    cmd.arg("--state-dir")
        .arg(state)
        .args(["token", "add", user]);
    if admin {
        cmd.arg("--admin");
    }
    let out = cmd.output().expect("basalt-master token add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The two labs run one after the other: each picks its free ports before its daemons bind
/// them, and QEMU's software emulation shares two cores.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_lab() -> std::sync::MutexGuard<'static, ()> {
    ONE_LAB
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn device(c: &Client, hostname: &str) -> Value {
    c.get(&format!("devices/{hostname}/")).expect("the device")
}

#[test]
fn a_lab_is_registered_and_administered_with_the_cli() {
    let _one = one_lab();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let job = qemu_job(repo);
    let tmp = common::TempDir::new("lab-admin");
    let state = tmp.path().join("master");
    let (http, workers) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{http}");
    let log = std::fs::File::create(tmp.path().join("master.log")).expect("master.log");
    let _master = Daemon(
        Command::new(bin("basalt-master"))
            .arg("--state-dir")
            .arg(&state)
            .args(["--http", &format!("127.0.0.1:{http}")])
            .args(["--workers", &format!("tcp://127.0.0.1:{workers}")])
            .args(["--heartbeat-secs", "1", "--coordinator", "127.0.0.1:0"])
            .arg("--device-types")
            .arg(repo.join("config/device-types"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("basalt-master starts"),
    );
    wait_until("the master answers", Duration::from_secs(20), || {
        ureq::get(&format!("{url}/api/v0.2/system/version/"))
            .call()
            .is_ok()
    });
    let token = token_add(&state, "admin", true);
    let user = token_add(&state, "alice", false);
    let c = Client::new(&url, Some(token.clone()));

    // writes need a token, and an admin's: the master's refusal is shown
    let out = basalt(
        &url,
        None,
        &["workers", "add", "w0", "--dir", "/nonexistent"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HTTP 401"),
        "{out:?}"
    );
    let out = basalt(&url, Some(&user), &["device-types", "add", "qemu"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP 403") && err.contains("permission"),
        "{err}"
    );

    // the device type with its health check, and an alias
    let check = tmp.path().join("health-check.yaml");
    std::fs::write(&check, &job).expect("the health check");
    let shown = ok(
        &url,
        &token,
        &[
            "device-types",
            "add",
            "qemu",
            "--health-check",
            check.to_str().expect("UTF-8"),
            "--health-frequency",
            "24",
            "--health-denominator",
            "hours",
        ],
    );
    assert!(shown.contains("every 24 hours"), "{shown}");
    ok(
        &url,
        &token,
        &["device-types", "alias", "add", "qemu", "qemu-amd64"],
    );
    let listed = ok(&url, &token, &["device-types", "list"]);
    assert!(listed.contains("qemu-amd64"), "{listed}");

    // the worker: its keys made here, the master admits the public one
    let keys = tmp.path().join("w1-keys");
    let out = ok(
        &url,
        &token,
        &[
            "workers",
            "add",
            "w1",
            "--dir",
            keys.to_str().expect("UTF-8"),
        ],
    );
    assert!(out.contains("basalt-worker --name w1"), "{out}");
    let pair = cert::Keypair::read(&keys.join("w1.key_secret")).expect("the secret key loads");
    assert_eq!(
        cert::read_public(&keys.join("w1.key")).unwrap(),
        pair.public
    );
    assert_eq!(
        cert::read_public(&state.join("certs/workers/w1.key")).expect("admitted"),
        pair.public
    );
    assert_eq!(
        cert::read_public(&keys.join("master.key")).expect("master.key"),
        cert::read_public(&state.join("certs/master.key")).expect("the master's key")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(keys.join("w1.key_secret"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // again: refused, and the files already there are not touched
    let out = basalt(
        &url,
        Some(&token),
        &["workers", "add", "w1", "--dir", keys.to_str().unwrap()],
    );
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(
        cert::Keypair::read(&keys.join("w1.key_secret"))
            .unwrap()
            .public,
        pair.public
    );
    let worker_log = std::fs::File::create(tmp.path().join("worker.log")).expect("worker.log");
    let _worker = Daemon(
        Command::new(bin("basalt-worker"))
            .args([
                "--name",
                "w1",
                "--master",
                &format!("tcp://127.0.0.1:{workers}"),
            ])
            .arg("--master-key")
            .arg(keys.join("master.key"))
            .arg("--key")
            .arg(keys.join("w1.key_secret"))
            .arg("--state-dir")
            .arg(tmp.path().join("worker"))
            .arg("--tftp-root")
            .arg(tmp.path().join("tftp"))
            .stdout(Stdio::null())
            .stderr(worker_log)
            .spawn()
            .expect("basalt-worker starts"),
    );
    wait_until("w1 comes online", Duration::from_secs(20), || {
        c.get("workers/w1/").is_ok_and(|w| w["state"] == "Online")
    });

    // the device, with its dictionary and a tag: Unknown, so its health check runs first
    let dictionary = repo.join("config/devices/qemu-amd64.jinja2");
    let out = ok(
        &url,
        &token,
        &[
            "devices",
            "add",
            "qemu-1",
            "--type",
            "qemu",
            "--worker",
            "w1",
            "--dictionary",
            dictionary.to_str().unwrap(),
            "--tag",
            "fast",
            "--health",
            "Unknown",
        ],
    );
    assert!(out.contains("Unknown"), "{out}");
    wait_until(
        "qemu-1 passes its health check",
        Duration::from_secs(150),
        || device(&c, "qemu-1")["health"] == "Good",
    );
    let checks: Vec<Value> = c
        .list("jobs/")
        .expect("jobs")
        .into_iter()
        .filter(|j| j["health_check"] == true)
        .collect();
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(
        (&checks[0]["health"], &checks[0]["submitter"]),
        (&json!("Complete"), &json!("lava-health"))
    );

    // a dictionary with an error: refused with its file, line and column; the old one stays
    let bad = tmp.path().join("bad.jinja2");
    std::fs::write(&bad, "{% extends 'qemu.jinja2' %}\n{% set memory = %}\n").unwrap();
    let out = basalt(
        &url,
        Some(&token),
        &["devices", "set-dictionary", "qemu-1", bad.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2:", bad.display())), "{err}");
    let kept = ok(&url, &token, &["devices", "get-dictionary", "qemu-1"]);
    assert_eq!(kept, std::fs::read_to_string(&dictionary).unwrap());

    // tags
    let out = ok(&url, &token, &["devices", "tag", "qemu-1", "add", "usb"]);
    assert!(out.contains("fast, usb"), "{out}");
    let out = ok(
        &url,
        &token,
        &["devices", "tag", "qemu-1", "remove", "fast"],
    );
    assert!(out.trim_end().ends_with("tags: usb"), "{out}");

    // a job for the alias runs on the device
    let alias_job = tmp.path().join("alias.yaml");
    std::fs::write(
        &alias_job,
        job.replace("device_type: qemu\n", "device_type: qemu-amd64\n"),
    )
    .unwrap();
    let out = ok(
        &url,
        &token,
        &["jobs", "submit", alias_job.to_str().unwrap(), "--follow"],
    );
    let id: u64 = out.lines().next().unwrap().trim().parse().expect("its id");
    let j = c.get(&format!("jobs/{id}/")).unwrap();
    assert_eq!(
        (
            &j["health"],
            &j["actual_device"],
            &j["requested_device_type"]
        ),
        (&json!("Complete"), &json!("qemu-1"), &json!("qemu"))
    );

    // taken out, then retired
    ok(
        &url,
        &token,
        &["devices", "maintenance", "qemu-1", "--reason", "cabling"],
    );
    assert_eq!(device(&c, "qemu-1")["health"], "Maintenance");
    let out = ok(&url, &token, &["devices", "health-check", "qemu-1"]);
    assert!(out.contains("queued"), "{out}");
    ok(&url, &token, &["devices", "retire", "qemu-1"]);
    assert_eq!(device(&c, "qemu-1")["health"], "Retired");
    let listed = ok(&url, &token, &["devices", "list"]);
    assert!(!listed.contains("qemu-1"), "{listed}");
    let listed = ok(&url, &token, &["devices", "list", "--all"]);
    assert!(listed.contains("qemu-1"), "{listed}");
    ok(&url, &token, &["workers", "maintenance", "w1"]);
    assert_eq!(c.get("workers/w1/").unwrap()["health"], "Maintenance");
}

#[test]
fn a_health_check_runs_when_a_lost_worker_comes_back() {
    let _one = one_lab();
    common::fixtures_amd64();
    let tmp = common::TempDir::new("lab-admin-lost");
    let mut lab = LocalLab::start(Spec {
        dir: tmp.path().join("lab"),
        bin_dir: common::bin_dir(),
        fixtures: common::fixtures_dir(),
        workers: vec![WorkerSpec {
            name: "w1".into(),
            boards: 0,
            qemu: 1,
            command: None,
        }],
        heartbeat_secs: 1,
        bootdelay: 1,
        keep_job_dirs: false,
        events: false,
        anonymous_read: false,
        coordinator: None,
    })
    .unwrap_or_else(|e| panic!("the lab does not start: {e}"));
    let c = lab.client();
    c.post(
        "devicetypes/",
        &json!({"name": "qemu", "health_check": lab.qemu_job()}),
    )
    .expect("the health check");
    let checks = |c: &Client| -> Vec<Value> {
        c.list("jobs/")
            .expect("jobs")
            .into_iter()
            .filter(|j| j["health_check"] == true)
            .collect()
    };
    wait_until(
        "w1-qemu-1 passes its first health check",
        Duration::from_secs(150),
        || device(&c, "w1-qemu-1")["health"] == "Good",
    );
    assert_eq!(checks(&c).len(), 1);

    let pid = lab.worker_pid("w1").expect("w1 runs");
    lab.kill_worker("w1");
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err(),
        "worker {pid} is gone"
    );
    let killed = Instant::now();
    wait_until(
        "the master marks w1 Offline",
        Duration::from_secs(10),
        || c.get("workers/w1/").is_ok_and(|w| w["state"] == "Offline"),
    );
    assert!(
        killed.elapsed() < Duration::from_secs(8),
        "3 heartbeats of 1 s"
    );
    assert_eq!(device(&c, "w1-qemu-1")["health"], "Unknown");

    lab.start_worker("w1").expect("w1 starts again");
    wait_until(
        "a second health check passes once w1 is back",
        Duration::from_secs(150),
        || checks(&c).len() == 2 && device(&c, "w1-qemu-1")["health"] == "Good",
    );
    let all = checks(&c);
    assert!(all.iter().all(|j| j["health"] == "Complete"), "{all:?}");
}
