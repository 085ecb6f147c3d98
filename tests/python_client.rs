//! The Python client `clients/python/` (`basalt_client`), from `cargo test`:
//! - its unit tests (pytest against a fake master and a fake console, a few seconds);
//! - `mypy --strict` over the package and its example;
//! - its integration tests against a [`basalt::lab::LocalLab`] (master, a worker with a
//!   `basalt-board` board and a QEMU board): reserve by spec, boot, wait ready, run commands
//!   over the console and the REST exec call, copy a file, release, the device Idle again; the
//!   same over SSH on the QEMU board with the fixtures' dropbear initramfs (required when
//!   the fixtures have it, as in CI); `examples/ci_runtime.py` end to end.
//!
//! All run in the virtual environment `target/venv` made (or reused) by
//! `scripts/python-venv.sh`, which needs PyPI the first time. When it cannot be made the tests
//! skip with a message — except in CI (`CI` set) or with `BASALT_REQUIRE_PYTHON=1`, where they
//! fail. The lab test needs root (basalt-board chroots into its ramdisk), QEMU and the boot
//! fixtures, as the other lab tests do; the lab's processes and pytest are stopped by their
//! PIDs on every path.

mod common;

use basalt::lab::{LocalLab, Spec, WorkerSpec};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether a missing Python environment is a failure (CI, or asked for).
fn required() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    set("CI") || set("BASALT_REQUIRE_PYTHON")
}

/// `target/venv`, made or reused by `scripts/python-venv.sh`; `None` (with a message) when it
/// cannot be made and it is not [`required`].
fn venv() -> Option<PathBuf> {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = VENV.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("scripts/python-venv.sh"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running scripts/python-venv.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/python-venv.sh failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    });
    match made {
        Ok(p) => Some(p.clone()),
        Err(e) if required() => panic!("{e}"),
        Err(e) => {
            eprintln!("SKIPPED (not in CI, BASALT_REQUIRE_PYTHON unset): no Python venv: {e}");
            None
        }
    }
}

/// A child process killed (by its PID) and reaped when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` (its output going to this test's), killed after `within`.
fn run_for(cmd: &mut Command, within: Duration) -> ExitStatus {
    let what = format!("{cmd:?}");
    let mut child = Guard(
        cmd.stdin(Stdio::null())
            .spawn()
            .expect("the command starts"),
    );
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.0.try_wait().expect("waiting for the command") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not end within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pytest(venv: &Path, suite: &str) -> Command {
    let mut cmd = Command::new(venv.join("bin/pytest"));
    cmd.current_dir(repo().join("clients/python"))
        .args([
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "faulthandler_timeout=900",
        ])
        .arg(format!("tests/{suite}"))
        // the package under test, whatever the venv's editable install points at
        .env("PYTHONPATH", repo().join("clients/python/src"));
    cmd
}

#[test]
fn python_unit_tests_pass() {
    let Some(venv) = venv() else { return };
    let status = run_for(&mut pytest(&venv, "unit"), Duration::from_secs(300));
    assert!(
        status.success(),
        "pytest clients/python/tests/unit: {status}"
    );
}

#[test]
fn python_client_type_checks_strictly() {
    let Some(venv) = venv() else { return };
    let status = run_for(
        Command::new(venv.join("bin/mypy"))
            .current_dir(repo().join("clients/python"))
            .args(["--strict", "--cache-dir"])
            .arg(repo().join("target/mypy-cache"))
            .args(["src", "examples"]),
        Duration::from_secs(600),
    );
    assert!(status.success(), "mypy --strict clients/python: {status}");
}

/// The tail of a lab log, for a failure message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn python_integration_tests_against_a_lab() {
    let Some(venv) = venv() else { return };
    let (kernel, initrd) = common::fixtures_amd64();
    let tmp = common::TempDir::new("python-client");
    // the master's artifact store (the example uploads its kernel there), through the
    // flag's environment variable: a listener of its own on a free loopback port
    std::env::set_var("BASALT_MASTER_ARTIFACTS_HTTP", "127.0.0.1:0");
    let lab = LocalLab::start(Spec {
        dir: tmp.path().join("lab"),
        bin_dir: common::bin_dir(),
        fixtures: common::fixtures_dir(),
        workers: vec![WorkerSpec {
            name: "w1".into(),
            boards: 1,
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
    .expect("the lab starts");
    let token = lab.add_token("ci", false).expect("a user's token");
    // the basalt-board boots the initramfs itself: a stand-in kernel and device tree
    let board_kernel = tmp.path().join("Image");
    let board_dtb = tmp.path().join("board.dtb");
    std::fs::write(&board_kernel, vec![0u8; 4096]).expect("writing the kernel");
    std::fs::write(&board_dtb, vec![0xd0u8; 1024]).expect("writing the dtb");
    let prompt = std::env::var("BASALT_INITRD_PROMPT").unwrap_or_else(|_| "/ # ".into());
    let mut cmd = pytest(&venv, "integration");
    cmd.env("BASALT_URL", &lab.url)
        .env("BASALT_TOKEN", &token)
        .env("BASALT_QEMU_KERNEL", &kernel)
        .env("BASALT_QEMU_RAMDISK", &initrd)
        .env("BASALT_PROMPT", &prompt)
        .env("BASALT_BOARD_KERNEL", &board_kernel)
        .env("BASALT_BOARD_RAMDISK", &initrd)
        .env("BASALT_BOARD_DTB", &board_dtb)
        .env("TMPDIR", tmp.path());
    // the SSH test is required wherever the fixtures have the dropbear initramfs (they do
    // in CI): the lab's QEMU board has a restricted user network for the forward
    match std::env::var("BASALT_INITRD_SSH_AMD64") {
        Ok(ssh) => {
            cmd.env("BASALT_SSH_RAMDISK", ssh)
                .env("BASALT_REQUIRE_SSH", "1");
        }
        Err(_) if required() => {
            panic!("BASALT_INITRD_SSH_AMD64 is not set: hw-tests/build-fixtures.sh makes it")
        }
        Err(_) => eprintln!("no dropbear initramfs (BASALT_INITRD_SSH_AMD64): the SSH test skips"),
    }
    let status = run_for(&mut cmd, Duration::from_secs(1800));
    assert!(
        status.success(),
        "pytest clients/python/tests/integration: {status}\n--- master.log\n{}\n--- worker-w1.log\n{}",
        tail(&lab.logs_dir().join("master.log")),
        tail(&lab.logs_dir().join("worker-w1.log"))
    );
}
