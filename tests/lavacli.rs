//! LAVA's own command-line client, `lavacli` 3.1.0 (from PyPI, in a virtual environment under
//! `target/venv-lavacli`, made once and reused), against a [`basalt::lab::LocalLab`] over the
//! master's XML-RPC endpoint `/RPC2`: an admin registers a new worker, device type and QEMU
//! device with its dictionary through lavacli, the worker starts, a job submitted with lavacli
//! runs on that device, and lavacli waits for it, shows it, prints its log, validates a
//! definition, cancels a job on the lab's board and lists jobs, devices and workers — every command
//! exits 0 and prints what it prints against LAVA.
//!
//! It needs root (basalt-board chroots into its ramdisk), QEMU and PyPI (or a venv already
//! made), as CI has. The lab's processes are stopped when the lab is dropped, on every path.

mod common;

use basalt::lab::{LocalLab, Spec, WorkerSpec};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const LAVACLI: &str = "3.1.0";

/// `target/venv-lavacli/bin/lavacli`, installing lavacli there when it is not at [`LAVACLI`].
fn lavacli() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/venv-lavacli");
        let bin = venv.join("bin/lavacli");
        let installed = || {
            Command::new(&bin).arg("--version").output().is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout).trim() == format!("lavacli {LAVACLI}")
            })
        };
        if !installed() {
            let status = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3 -m venv");
            assert!(status.success(), "python3 -m venv {}", venv.display());
            let status = Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", &format!("lavacli=={LAVACLI}")])
                .status()
                .expect("pip install lavacli");
            assert!(status.success(), "pip install lavacli=={LAVACLI}");
            assert!(
                installed(),
                "lavacli {LAVACLI} is not in {}",
                venv.display()
            );
        }
        bin
    })
    .clone()
}

/// Runs lavacli; returns (success, stdout, stderr).
fn run(home: &Path, uri: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(lavacli())
        .arg("--uri")
        .arg(uri)
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .output()
        .expect("lavacli runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs lavacli, which must succeed; returns its output.
fn ok(home: &Path, uri: &str, args: &[&str]) -> String {
    let (success, stdout, stderr) = run(home, uri, args);
    assert!(
        success,
        "lavacli {}: failed\nstdout: {stdout}\nstderr: {stderr}",
        args.join(" ")
    );
    stdout
}

fn poll(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn lab(tmp: &common::TempDir) -> LocalLab {
    // checks that the fixtures are there
    common::fixtures_amd64();
    LocalLab::start(Spec {
        dir: tmp.path().join("lab"),
        bin_dir: common::bin_dir(),
        fixtures: common::fixtures_dir(),
        workers: vec![WorkerSpec {
            name: "w1".into(),
            boards: 1,
            qemu: 0,
            command: None,
        }],
        heartbeat_secs: 1,
        bootdelay: 1,
        keep_job_dirs: false,
        events: false,
        anonymous_read: false,
        coordinator: None,
    })
    .expect("the lab starts")
}

/// A master with anonymous reads on (`--anonymous-read`) and no worker process: lavacli reads
/// without credentials, and its writes are still refused.
#[test]
fn lavacli_reads_anonymously_from_a_master_that_allows_it() {
    lavacli();
    let tmp = common::TempDir::new("lavacli-anonymous");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let lab = LocalLab::start(Spec {
        dir: tmp.path().join("lab"),
        bin_dir: common::bin_dir(),
        fixtures: common::fixtures_dir(),
        workers: Vec::new(),
        heartbeat_secs: 1,
        bootdelay: 1,
        keep_job_dirs: false,
        events: false,
        anonymous_read: true,
        coordinator: None,
    })
    .expect("the lab starts");
    lab.client()
        .post("workers/", &serde_json::json!({"hostname": "w9"}))
        .expect("a worker registered");
    let host = lab.url.trim_start_matches("http://").to_string();
    let anonymous = format!("http://{host}/RPC2");
    assert!(ok(&home, &anonymous, &["workers", "list"]).contains("* w9"));
    let (success, _, stderr) = run(&home, &anonymous, &["device-types", "add", "other"]);
    assert!(
        !success && stderr.contains("401"),
        "anonymous write: {stderr}"
    );
}

#[test]
fn lavacli_registers_a_device_and_runs_a_job_on_it() {
    lavacli();
    let tmp = common::TempDir::new("lavacli");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let mut lab = lab(&tmp);
    let host = lab.url.trim_start_matches("http://").to_string();
    let uri = format!("http://admin:{}@{host}/RPC2", lab.token);

    // the version, and the credentials
    assert_eq!(ok(&home, &uri, &["system", "version"]).trim(), "2024.01");
    let bad = format!("http://admin:not-a-token@{host}/RPC2");
    let (success, _, stderr) = run(&home, &bad, &["system", "version"]);
    assert!(!success && stderr.contains("401"), "a bad token: {stderr}");
    // reads need credentials by default: lavacli's anonymous call gets HTTP 401 (its version
    // call, made first, stays open)
    let anonymous = format!("http://{host}/RPC2");
    let (success, stdout, stderr) = run(&home, &anonymous, &["workers", "list"]);
    assert!(
        !success && stderr.contains("401") && !stdout.contains("w1"),
        "an anonymous read: {stdout}{stderr}"
    );

    // an admin registers a worker, a device type, a device and its dictionary
    assert_eq!(
        ok(
            &home,
            &uri,
            &["workers", "add", "w2", "--description", "by lavacli"]
        ),
        ""
    );
    ok(&home, &uri, &["device-types", "add", "qemu"]);
    ok(
        &home,
        &uri,
        &[
            "devices",
            "add",
            "w2-qemu-1",
            "--type",
            "qemu",
            "--worker",
            "w2",
        ],
    );
    let dict = tmp.path().join("w2-qemu-1.jinja2");
    std::fs::write(&dict, basalt::device::builtin::DEMO_DEVICE).expect("the dictionary");
    ok(
        &home,
        &uri,
        &[
            "devices",
            "dict",
            "set",
            "w2-qemu-1",
            &dict.to_string_lossy(),
        ],
    );
    let got = ok(&home, &uri, &["devices", "dict", "get", "w2-qemu-1"]);
    assert_eq!(
        got.trim_end(),
        basalt::device::builtin::DEMO_DEVICE.trim_end()
    );
    // the same writes without a token are refused
    let (success, _, stderr) = run(&home, &anonymous, &["device-types", "add", "other"]);
    assert!(
        !success && stderr.contains("401"),
        "anonymous write: {stderr}"
    );

    // the new worker comes online
    lab.start_worker("w2").expect("worker w2 starts");
    let client = lab.client();
    poll("w2 online", Duration::from_secs(30), || {
        client.list("workers/").is_ok_and(|ws| {
            ws.iter()
                .any(|w| w["hostname"] == "w2" && w["state"] == "Online")
        })
    });
    let workers = ok(&home, &uri, &["workers", "list"]);
    assert_eq!(workers, "Workers:\n* w1\n* w2\n");
    let devices = ok(&home, &uri, &["devices", "list"]);
    assert!(devices.starts_with("Devices:\n"), "{devices}");
    assert!(
        devices.contains("* w1-board-1 (basalt-board): "),
        "{devices}"
    );
    assert!(devices.contains("* w2-qemu-1 (qemu): Idle,"), "{devices}");

    // a job: validated, submitted, waited for, shown, its log printed
    let job = tmp.path().join("qemu.yaml");
    std::fs::write(&job, lab.qemu_job()).expect("the job");
    let job = job.to_string_lossy().into_owned();
    assert_eq!(ok(&home, &uri, &["jobs", "validate", &job]), "");
    let broken = tmp.path().join("broken.yaml");
    std::fs::write(&broken, "job_name: x\nactions: 3\n").expect("a broken job");
    let (success, stdout, _) = run(
        &home,
        &uri,
        &["jobs", "validate", &broken.to_string_lossy()],
    );
    assert!(
        !success && stdout.contains("key: ") && stdout.contains("msg: "),
        "{stdout}"
    );

    let id = ok(&home, &uri, &["jobs", "submit", &job]);
    let id = id.trim().to_string();
    assert!(id.parse::<u64>().is_ok(), "a job id: {id:?}");
    ok(
        &home,
        &uri,
        &["jobs", "wait", &id, "--polling", "1", "--timeout", "300"],
    );
    let show = ok(&home, &uri, &["jobs", "show", &id]);
    for want in [
        format!("id          : {id}\n"),
        "description : basalt demo - busybox smoke test\n".into(),
        "submitter   : admin\n".into(),
        "device-type : qemu\n".into(),
        "device      : w2-qemu-1\n".into(),
        "state       : Finished\n".into(),
        "Health      : Complete\n".into(),
    ] {
        assert!(show.contains(&want), "jobs show lacks {want:?}:\n{show}");
    }
    assert!(show.contains("submit time : 20"), "{show}");
    let logs = ok(&home, &uri, &["jobs", "logs", &id]);
    assert!(logs.lines().count() > 10, "{logs}");
    assert!(logs.contains("lava-test-case"), "{logs}");
    let definition = ok(&home, &uri, &["jobs", "definition", &id]);
    assert!(definition.contains("job_name: basalt demo"), "{definition}");

    // a job on the board, canceled
    let board = tmp.path().join("board.yaml");
    std::fs::write(&board, lab.board_job().expect("the board job")).expect("the board job");
    let id2 = ok(&home, &uri, &["jobs", "submit", &board.to_string_lossy()]);
    let id2 = id2.trim().to_string();
    ok(&home, &uri, &["jobs", "cancel", &id2]);
    ok(
        &home,
        &uri,
        &["jobs", "wait", &id2, "--polling", "1", "--timeout", "300"],
    );
    let show = ok(&home, &uri, &["jobs", "show", &id2]);
    assert!(show.contains("Health      : Canceled\n"), "{show}");
    let list = ok(&home, &uri, &["jobs", "list"]);
    assert!(list.starts_with("Jobs (from 1 to 25):\n"), "{list}");
    let line =
        format!("* {id}: Finished,Complete [admin] (basalt demo - busybox smoke test) - qemu\n");
    assert!(list.contains(&line), "jobs list lacks {line:?}:\n{list}");
    assert!(
        list.find(&format!("* {id2}:")) < list.find(&line),
        "newest first: {list}"
    );
    let canceled = ok(&home, &uri, &["jobs", "list", "--health", "CANCELED"]);
    assert!(
        canceled.contains(&format!("* {id2}: Finished,Canceled")) && !canceled.contains(&line),
        "{canceled}"
    );
    let (success, _, stderr) = run(&home, &uri, &["jobs", "show", "999999"]);
    assert!(!success && stderr.contains("404"), "{stderr}");

    // the lab's administration as lavacli sends it
    ok(
        &home,
        &uri,
        &["devices", "tags", "add", "w2-qemu-1", "fast"],
    );
    let tags = ok(&home, &uri, &["devices", "tags", "list", "w2-qemu-1"]);
    assert!(tags.contains("* fast"), "{tags}");
    ok(
        &home,
        &uri,
        &["devices", "tags", "delete", "w2-qemu-1", "fast"],
    );
    ok(&home, &uri, &["devices", "maintenance", "w2-qemu-1"]);
    let shown = client.get("devices/w2-qemu-1/").expect("the device");
    assert_eq!(shown["health"], "Maintenance", "{shown}");
    ok(
        &home,
        &uri,
        &["devices", "update", "w2-qemu-1", "--health", "GOOD"],
    );
    let shown = client.get("devices/w2-qemu-1/").expect("the device");
    assert_eq!(shown["health"], "Good", "{shown}");
    let hc = tmp.path().join("qemu-check.yaml");
    std::fs::write(&hc, lab.qemu_job()).expect("the health check");
    ok(
        &home,
        &uri,
        &[
            "device-types",
            "health-check",
            "set",
            "qemu",
            &hc.to_string_lossy(),
        ],
    );
    let got = ok(
        &home,
        &uri,
        &["device-types", "health-check", "get", "qemu"],
    );
    assert_eq!(got.trim_end(), lab.qemu_job().trim_end());
    ok(
        &home,
        &uri,
        &["device-types", "aliases", "add", "qemu", "kvm"],
    );
    let aliases = ok(&home, &uri, &["device-types", "aliases", "list", "qemu"]);
    assert!(aliases.contains("* kvm"), "{aliases}");
    ok(
        &home,
        &uri,
        &["workers", "update", "w2", "--health", "MAINTENANCE"],
    );
    let w = client.get("workers/w2/").expect("the worker");
    assert_eq!(w["health"], "Maintenance", "{w}");
}
