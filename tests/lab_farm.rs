//! The lab from its binaries ([`basalt::lab::LocalLab`]: `basalt-master`, `basalt-worker`s,
//! `basalt-board` boards and a QEMU board, registered through the REST API):
//! - 200 jobs submitted with `basalt jobs submit` on 2 workers with 4 boards and a QEMU device
//!   all finish Complete; each job's log as the master stores it is, line for line, the log its
//!   worker wrote locally (nothing lost, nothing twice), and its results are what it ran;
//! - a master killed with SIGKILL mid-run and restarted: the running jobs go on and finish, and
//!   every log line and result arrives exactly once;
//! - a worker killed with SIGKILL mid-job: the job ends Incomplete ("worker lost") within the
//!   heartbeat timeout, the device goes to Unknown and its health check is queued.
//!
//! They need root (basalt-board chroots into its ramdisk) and QEMU, as CI has.

mod common;

use basalt::client::Client;
use basalt::lab::{LocalLab, Spec, WorkerSpec};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const HEARTBEAT_SECS: u32 = 1;

fn lab(tmp: &common::TempDir, workers: Vec<WorkerSpec>) -> LocalLab {
    // checks that the fixtures are there
    common::fixtures_amd64();
    LocalLab::start(Spec {
        dir: tmp.path().join("lab"),
        bin_dir: common::bin_dir(),
        fixtures: common::fixtures_dir(),
        workers,
        heartbeat_secs: HEARTBEAT_SECS,
        bootdelay: 1,
        keep_job_dirs: true,
        events: false,
        anonymous_read: false,
        coordinator: None,
    })
    .expect("the lab starts")
}

fn worker(name: &str, boards: usize, qemu: usize) -> WorkerSpec {
    WorkerSpec {
        name: name.into(),
        boards,
        qemu,
        command: None,
    }
}

/// `job` with `step` first in its test definition.
fn with_step(job: &str, step: &str) -> String {
    let marker = "          steps:\n";
    assert!(job.contains(marker), "the demo job has an inline test");
    job.replacen(marker, &format!("{marker}          - {step}\n"), 1)
}

fn job(c: &Client, id: u64) -> Value {
    c.get(&format!("jobs/{id}/")).expect("the job")
}

fn state(j: &Value) -> &str {
    j["state"].as_str().unwrap_or("?")
}

/// Waits until every job in `ids` is Finished.
fn wait_finished(c: &Client, ids: &[u64], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let jobs = c.list("jobs/?state=Finished").expect("jobs");
        let done: Vec<u64> = jobs.iter().filter_map(|j| j["id"].as_u64()).collect();
        let left: Vec<u64> = ids.iter().copied().filter(|i| !done.contains(i)).collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} job(s) not finished within {within:?}, e.g. {}",
            left.len(),
            job(c, left[0])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `cond` holds; `lab` says how its jobs and daemons stand if it never does.
fn wait_until(lab: &LocalLab, what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        if Instant::now() > deadline {
            let c = lab.client();
            let jobs: Vec<String> = c
                .list("jobs/")
                .unwrap_or_default()
                .iter()
                .map(|j| {
                    let id = j["id"].as_u64().unwrap_or(0);
                    let tail: Vec<String> = master_log(&c, id).into_iter().rev().take(15).collect();
                    format!(
                        "job {id} {} {} on {}: last lines {tail:#?}",
                        j["state"], j["health"], j["actual_device"]
                    )
                })
                .collect();
            let master =
                std::fs::read_to_string(lab.logs_dir().join("master.log")).unwrap_or_default();
            panic!(
                "{what} within {within:?}\n{}\nmaster: {master}",
                jobs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The job's log as the master stores it (every line, from the API).
fn master_log(c: &Client, id: u64) -> Vec<String> {
    c.logs(id, 0)
        .expect("the log")
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// The job's log as its worker's `basalt run` wrote it.
fn local_log(lab: &LocalLab, id: u64, device: &str) -> Vec<String> {
    let worker = &lab
        .devices
        .iter()
        .find(|d| d.hostname == device)
        .expect("a device of the lab")
        .worker;
    let path = lab.job_output_dir(worker, id).join("output.yaml");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(String::from)
        .collect()
}

/// Checks that job `id` ended Complete, that its stored log is its local log, and that it
/// reported `case` with `measurement`.
fn check_job(lab: &LocalLab, c: &Client, id: u64, case: &str, measurement: f64) {
    let j = job(c, id);
    assert_eq!(j["health"], "Complete", "job {id}: {j}");
    let device = j["actual_device"].as_str().expect("a device");
    let stored = master_log(c, id);
    let local = local_log(lab, id, device);
    assert!(local.len() > 20, "job {id}: a real log");
    if stored != local {
        let first = stored
            .iter()
            .zip(&local)
            .position(|(a, b)| a != b)
            .unwrap_or(stored.len().min(local.len()));
        panic!(
            "job {id}: the stored log ({} lines) differs from the worker's ({} lines) at line {first}:\n  stored: {:?}\n  local:  {:?}",
            stored.len(),
            local.len(),
            stored.get(first),
            local.get(first)
        );
    }
    let tests = c.list(&format!("jobs/{id}/tests/")).expect("tests");
    let mine: Vec<&Value> = tests.iter().filter(|t| t["name"] == case).collect();
    assert_eq!(mine.len(), 1, "job {id}: {case} reported once: {tests:?}");
    let m: f64 = mine[0]["measurement"]
        .as_str()
        .and_then(|m| m.parse().ok())
        .expect("a measurement");
    assert_eq!(m, measurement, "job {id}");
    assert!(
        tests
            .iter()
            .any(|t| t["name"] == "job" && t["result"] == "pass"),
        "job {id}: lava.job passed"
    );
}

#[test]
fn two_hundred_jobs_on_two_workers_all_finish_with_every_line_once() {
    let tmp = common::TempDir::new("farm-200");
    let lab = lab(&tmp, vec![worker("w1", 2, 1), worker("w2", 2, 0)]);
    let c = lab.client();
    let board = lab.board_job().expect("the board job");
    let qemu = lab.qemu_job();
    let mut files = Vec::new();
    for i in 0..200 {
        // one job in ten for the QEMU device, the others for the four boards
        let base = if i % 10 == 0 { &qemu } else { &board };
        let step = format!("lava-test-case job-{i} --result pass --measurement {i} --units n");
        let path = tmp.path().join(format!("job-{i:03}.yaml"));
        std::fs::write(&path, with_step(base, &step)).expect("job file");
        files.push(path);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .args(["jobs", "submit"])
        .args(&files)
        .args(["--url", &lab.url, "--token", &lab.token])
        .output()
        .expect("basalt jobs submit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().expect("a job id per line"))
        .collect();
    assert_eq!(ids.len(), 200);
    wait_finished(&c, &ids, Duration::from_secs(900));
    let mut on = std::collections::BTreeMap::<String, usize>::new();
    for (i, id) in ids.iter().enumerate() {
        check_job(&lab, &c, *id, &format!("job-{i}"), i as f64);
        let device = job(&c, *id)["actual_device"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        *on.entry(device).or_default() += 1;
    }
    assert_eq!(on.len(), 5, "every device ran jobs: {on:?}");
    assert_eq!(on.get("w1-qemu-1"), Some(&20), "{on:?}");
}

/// A step that prints for about `secs` seconds.
fn ticking(secs: u32) -> String {
    format!(
        "for i in $(seq 1 {}); do echo tick-$i; sleep 0.1; done",
        secs * 10
    )
}

#[test]
fn a_master_killed_mid_run_and_restarted_loses_nothing_and_repeats_nothing() {
    let tmp = common::TempDir::new("farm-kill-master");
    let mut lab = lab(&tmp, vec![worker("w1", 1, 1)]);
    let c = lab.client();
    // long enough that the slow one (QEMU, software emulation on a loaded machine) still
    // ticks when the quick one has started: the QEMU job first, the board job once it ticks
    let step = format!(
        "{} ; lava-test-case survived --result pass --measurement 7",
        ticking(15)
    );
    let qemu = c
        .submit(&with_step(&lab.qemu_job(), &step))
        .expect("submit")[0];
    wait_until(&lab, "the QEMU job ticks", Duration::from_secs(120), || {
        master_log(&c, qemu).iter().any(|l| l.contains("tick-1"))
    });
    let board = c
        .submit(&with_step(&lab.board_job().expect("board job"), &step))
        .expect("submit")[0];
    let ids = [qemu, board];
    // both running, and ticking
    wait_until(&lab, "both jobs tick", Duration::from_secs(120), || {
        ids.iter().all(|id| {
            let j = job(&c, *id);
            state(&j) == "Running" && master_log(&c, *id).iter().any(|l| l.contains("tick-1"))
        })
    });
    let at_kill: Vec<usize> = ids.iter().map(|id| master_log(&c, *id).len()).collect();
    let devices: Vec<String> = ids
        .iter()
        .map(|id| {
            job(&c, *id)["actual_device"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    lab.kill_master();
    // the jobs go on without it: their local logs grow
    wait_until(
        &lab,
        "the jobs go on while the master is down",
        Duration::from_secs(60),
        || {
            ids.iter().zip(&devices).zip(&at_kill).all(|((id, d), n)| {
                let path = local_path(&lab, *id, d);
                std::fs::read_to_string(path)
                    .map(|t| t.lines().count() > n + 10)
                    .unwrap_or(false)
            })
        },
    );
    lab.start_master().expect("the master starts again");
    wait_finished(&c, &ids, Duration::from_secs(180));
    for id in &ids {
        check_job(&lab, &c, *id, "survived", 7.0);
    }
}

fn local_path(lab: &LocalLab, id: u64, device: &str) -> PathBuf {
    let worker = lab
        .devices
        .iter()
        .find(|d| d.hostname == device)
        .map(|d| d.worker.clone())
        .unwrap_or_default();
    lab.job_output_dir(&worker, id).join("output.yaml")
}

#[test]
fn a_worker_killed_mid_job_loses_it_within_the_heartbeat_timeout() {
    let tmp = common::TempDir::new("farm-kill-worker");
    let mut lab = lab(&tmp, vec![worker("w1", 1, 0)]);
    let c = lab.client();
    let board = lab.board_job().expect("board job");
    // the board's type gets a health check: the board runs it first and is Good
    c.post(
        "devicetypes/",
        &serde_json::json!({"name": "basalt-board", "health_check": board}),
    )
    .expect("health check");
    wait_until(
        &lab,
        "the board passes its health check",
        Duration::from_secs(120),
        || {
            c.get("devices/w1-board-1/")
                .map(|d| d["health"] == "Good")
                .unwrap_or(false)
        },
    );
    let id = c.submit(&with_step(&board, &ticking(30))).expect("submit")[0];
    wait_until(&lab, "the job ticks", Duration::from_secs(60), || {
        master_log(&c, id).iter().any(|l| l.contains("tick-1"))
    });
    lab.kill_worker("w1");
    let killed = Instant::now();
    wait_until(
        &lab,
        "the job is lost",
        Duration::from_secs(u64::from(HEARTBEAT_SECS) * 3 + 5),
        || state(&job(&c, id)) == "Finished",
    );
    let limit = Duration::from_secs(u64::from(HEARTBEAT_SECS) * 3 + 2);
    assert!(
        killed.elapsed() <= limit,
        "lost after {:?}, the timeout is 3 heartbeats",
        killed.elapsed()
    );
    let j = job(&c, id);
    assert_eq!(j["health"], "Incomplete", "{j}");
    assert_eq!(j["failure_comment"], "worker lost", "{j}");
    assert_eq!(j["error_type"], "Infrastructure", "{j}");
    let d = c.get("devices/w1-board-1/").expect("device");
    assert_eq!(d["health"], "Unknown", "{d}");
    let checks: Vec<Value> = c
        .list("jobs/")
        .expect("jobs")
        .into_iter()
        .filter(|j| j["health_check"] == true && j["state"] != "Finished")
        .collect();
    assert_eq!(checks.len(), 1, "a health check is queued: {checks:?}");
}
