//! A job in a process of its own, as the worker runs it: the QEMU demo job through the
//! `basalt` binary. Its streamed records are `output.yaml`'s, numbered 1, 2, 3 …; a cancel
//! ends it Incomplete with the board (QEMU) stopped; a job process killed with SIGKILL is a
//! crash, and its QEMU does not outlive it.

mod common;

use basalt_worker::job::{Exit, JobProcess, JobSpec};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The `basalt` binary of this build (the workspace's tests build it).
fn basalt() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("basalt");
    assert!(
        bin.is_file(),
        "{} is missing: cargo build -p basalt",
        bin.display()
    );
    bin
}

/// The demo job (with `extra_step` first in its test) and its rendered device.
fn spec(dir: &Path, id: u64, extra_step: Option<&str>) -> JobSpec {
    let definition = common::demo_job(extra_step);
    let device = common::demo_device(&definition);
    JobSpec {
        job_id: id,
        definition,
        device,
        dir: dir.join(format!("job-{id}")),
        coordinator: None,
        coordinator_token: None,
        hold: None,
    }
}

fn args() -> Vec<String> {
    vec!["--tftp-root".into(), "/var/tmp".into()]
}

#[tokio::test]
async fn the_streamed_log_is_output_yaml_record_by_record() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(tmp.path(), 11, None);
    let mut job = JobProcess::start(&basalt(), &spec, &args()).unwrap();
    let mut streamed = Vec::new();
    while let Some((seq, line)) = job.next_record().await {
        assert_eq!(seq, streamed.len() as u64 + 1);
        streamed.push(line);
    }
    let end = job.wait().await.unwrap();
    assert_eq!(end.exit, Exit::Complete, "{}", end.stderr);
    let file = std::fs::read_to_string(spec.dir.join("out/output.yaml")).unwrap();
    let lines: Vec<&str> = file.lines().collect();
    assert_eq!(streamed.len(), lines.len());
    for (i, (a, b)) in streamed.iter().zip(&lines).enumerate() {
        assert_eq!(a, b, "record {}", i + 1);
    }
    assert!(streamed.len() > 50);
    assert!(end.results.contains("case: uname"), "{}", end.results);
}

/// The pid QEMU got, from the log.
fn qemu_pid(line: &str) -> Option<i32> {
    let rest = line.split("started qemu (pid ").nth(1)?;
    rest.split(')').next()?.parse().ok()
}

fn gone(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[tokio::test]
async fn a_cancel_stops_the_job_and_its_board() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(tmp.path(), 12, Some("sleep 600"));
    let mut job = JobProcess::start(&basalt(), &spec, &args()).unwrap();
    let mut qemu = None;
    // wait until the test shell runs (the sleep), then cancel
    while let Some((_, line)) = job.next_record().await {
        qemu = qemu.or(qemu_pid(&line));
        if line.contains("sleep 600") && line.contains("\"lvl\": \"target\"") {
            break;
        }
    }
    let qemu = qemu.expect("QEMU started");
    job.cancel(Duration::from_secs(20)).await;
    let mut tail = Vec::new();
    while let Some((_, line)) = job.next_record().await {
        tail.push(line);
    }
    let end = job.wait().await.unwrap();
    assert_eq!(end.exit, Exit::Incomplete, "{}", end.stderr);
    assert!(
        tail.iter().any(|l| l.contains("job canceled")),
        "{}",
        tail.join("\n")
    );
    assert!(
        gone(qemu, Duration::from_secs(10)),
        "QEMU {qemu} outlived the canceled job"
    );
}

#[tokio::test]
async fn a_job_process_killed_is_a_crash_and_takes_its_board_along() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(tmp.path(), 13, Some("sleep 600"));
    let mut job = JobProcess::start(&basalt(), &spec, &args()).unwrap();
    let mut qemu = None;
    while let Some((_, line)) = job.next_record().await {
        qemu = qemu.or(qemu_pid(&line));
        if qemu.is_some() {
            break;
        }
    }
    let qemu = qemu.expect("QEMU started");
    let pid = job.pid().expect("running") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let end = job.wait().await.unwrap();
    assert_eq!(end.exit, Exit::Crashed("killed by signal 9".into()));
    assert!(
        gone(qemu, Duration::from_secs(10)),
        "QEMU {qemu} outlived its job's process"
    );
}
