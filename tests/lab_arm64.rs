//! The worker built for arm64 (`scripts/build-arm64.sh`: `basalt-worker` and `basalt` in
//! `target/aarch64-unknown-linux-gnu/debug`), run on this host by qemu-user
//! (`qemu-aarch64-static -L` the arm64 sysroot scripts/install-deps.sh makes; no binfmt_misc):
//! - it is an arm64 program and says the workspace's version;
//! - in a [`basalt::lab::LocalLab`] (this host's `basalt-master` and `basalt-board`), it comes
//!   online and runs a `basalt-board` job to Complete, each job in the arm64 `basalt` (through
//!   a script that runs it with qemu-user, as the worker's `--basalt`).
//!
//! Without the arm64 binaries, the sysroot or qemu-aarch64-static the tests fail when
//! `BASALT_REQUIRE_ARM64=1` (scripts/test.sh sets it after its `cross` step) or `CI` is set,
//! and elsewhere skip, saying why. `BASALT_ARM64_BIN_DIR` and `BASALT_ARM64_SYSROOT` override
//! where they are looked for. The lab test needs root (basalt-board chroots into its ramdisk),
//! as CI has; every process is stopped by its PID when the lab is dropped.

mod common;

use basalt::lab::{Arm64Build, LocalLab, Spec, WorkerSpec};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// ELF's e_machine for AArch64.
const EM_AARCH64: u16 = 183;

/// What the arm64 tests run: qemu-user, the sysroot and the arm64 binaries.
struct Arm64 {
    qemu: PathBuf,
    build: Arm64Build,
}

fn required() -> bool {
    let set = |v: &str| std::env::var(v).is_ok_and(|x| !x.is_empty() && x != "0" && x != "false");
    set("BASALT_REQUIRE_ARM64") || set("CI")
}

/// The arm64 setup, or `None` (the test skips) when something is missing and it is not
/// [`required`]; when it is, the test fails naming what is missing.
fn arm64() -> Option<Arm64> {
    let build = Arm64Build::locate(&common::bin_dir());
    let missing = build.missing();
    match (&build.qemu, missing.is_empty()) {
        (Some(qemu), true) => Some(Arm64 {
            qemu: qemu.clone(),
            build,
        }),
        _ if required() => panic!(
            "the arm64 worker test is required (BASALT_REQUIRE_ARM64 or CI) but lacks: {}",
            missing.join("; ")
        ),
        _ => {
            eprintln!(
                "SKIPPED: the arm64 worker test lacks {} (set BASALT_REQUIRE_ARM64=1 to make this a failure)",
                missing.join("; ")
            );
            None
        }
    }
}

/// e_machine of an ELF file.
fn elf_machine(path: &Path) -> u16 {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() > 20 && bytes.starts_with(b"\x7fELF"),
        "{} is not an ELF file",
        path.display()
    );
    u16::from_le_bytes([bytes[18], bytes[19]])
}

#[test]
fn the_arm64_worker_says_its_version_under_qemu_user() {
    let Some(a) = arm64() else { return };
    for (bin, name) in [("basalt-worker", "basalt-worker"), ("basalt", "basalt")] {
        let path = a.build.bin_dir.join(bin);
        assert_eq!(
            elf_machine(&path),
            EM_AARCH64,
            "{} is built for arm64",
            path.display()
        );
        let out = Command::new(&a.qemu)
            .arg("-L")
            .arg(&a.build.sysroot)
            .arg(&path)
            .arg("--version")
            .output()
            .expect("qemu-aarch64-static runs");
        assert!(
            out.status.success(),
            "{bin} --version under qemu-user: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION")),
            "{bin} --version"
        );
    }
}

#[test]
fn the_arm64_worker_runs_a_board_job_to_complete() {
    let Some(a) = arm64() else { return };
    common::fixtures_amd64();
    let tmp = common::TempDir::new("lab-arm64");
    let mut command = a
        .build
        .worker_command(&tmp.path().join("arm64"))
        .expect("the arm64 worker's command");
    let script = std::fs::read_to_string(&command.basalt).expect("the basalt script");
    assert!(
        script.contains(&*a.build.bin_dir.join("basalt").to_string_lossy())
            && script.contains("\"$@\""),
        "the script runs the arm64 basalt with the worker's arguments: {script}"
    );
    // the worker's --basalt: the lab's script, each start counted
    let runs = tmp.path().join("basalt-runs");
    let counting = tmp.path().join("basalt-counting");
    std::fs::write(
        &counting,
        format!(
            "#!/bin/sh\necho run >> {}\nexec {} \"$@\"\n",
            shell_words::quote(&runs.to_string_lossy()),
            shell_words::quote(&command.basalt.to_string_lossy())
        ),
    )
    .expect("the counting script");
    std::fs::set_permissions(
        &counting,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    command.basalt = counting;
    let lab = LocalLab::start(Spec {
        dir: tmp.path().join("lab"),
        bin_dir: common::bin_dir(),
        fixtures: common::fixtures_dir(),
        workers: vec![WorkerSpec {
            name: "arm64-1".into(),
            boards: 1,
            qemu: 0,
            command: Some(command),
        }],
        heartbeat_secs: 2,
        bootdelay: 1,
        keep_job_dirs: true,
        events: false,
        anonymous_read: false,
        coordinator: None,
    })
    .expect("the lab starts with the arm64 worker online");

    // the worker that came online is qemu-user running the arm64 build
    let pid = lab.worker_pid("arm64-1").expect("the worker runs");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("the worker's executable");
    assert_eq!(exe, a.qemu.canonicalize().unwrap_or(a.qemu.clone()));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("its command line");
    assert!(
        String::from_utf8_lossy(&cmdline).contains("aarch64-unknown-linux-gnu"),
        "the worker is the arm64 build: {}",
        String::from_utf8_lossy(&cmdline)
    );

    let c = lab.client();
    let job = lab.board_job().expect("the board job");
    let id = c.submit(&job).expect("the job is accepted")[0];
    let deadline = Instant::now() + Duration::from_secs(240);
    let shown = loop {
        let j = c.get(&format!("jobs/{id}/")).expect("the job");
        if j["state"] == "Finished" {
            break j;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} not finished within 240 s: {j}\nworker log: {}",
            std::fs::read_to_string(lab.logs_dir().join("worker-arm64-1.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = c.logs(id, 0).ok().flatten().unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    assert_eq!(
        shown["health"], "Complete",
        "job {id}: {shown}\nlast lines: {tail:#?}"
    );
    let tests = c.list(&format!("jobs/{id}/tests/")).expect("the results");
    let result = |name: &str| {
        tests
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["result"].clone())
    };
    assert_eq!(result("job"), Some("pass".into()), "lava/job in {tests:?}");
    assert_eq!(
        result("uname"),
        Some("pass".into()),
        "0_smoke/uname in {tests:?}"
    );
    // the job ran in the arm64 basalt, started once through the script
    let started = std::fs::read_to_string(&runs).unwrap_or_default();
    assert_eq!(started.lines().count(), 1, "basalt starts: {started:?}");
    let results = lab.job_output_dir("arm64-1", id).join("results.yaml");
    assert!(results.is_file(), "{} is written", results.display());
}
