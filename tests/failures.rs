//! basalt's failure taxonomy on a lab (master, worker, one `basalt-board`): each class produced
//! on purpose — a test that raises, a kernel panic, a board hanging at the bootloader, a file
//! missing on the TFTP server, a download with a wrong checksum, a canceled job, a console
//! that refuses connections, a worker killed under its job — and its cause asserted where a CI
//! system reads it: the job's results (REST `tests/`), the REST job, the job's last event
//! (pyzmq) and its notify callback's body.

mod common;
#[path = "../crates/basalt-master/tests/support/receiver.rs"]
mod receiver;
#[path = "../crates/basalt-master/tests/support/subscriber.rs"]
mod subscriber;

use basalt::client::Client;
use basalt::lab::{LocalLab, Spec, WorkerSpec};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const BOARD: &str = "w1-board-1";

fn poll(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn job(c: &Client, id: u64) -> Value {
    c.get(&format!("jobs/{id}/")).unwrap_or(Value::Null)
}

fn wait_state(c: &Client, id: u64, state: &str, within: Duration) -> Value {
    let mut last = Value::Null;
    poll(&format!("job {id} {state}"), within, || {
        last = job(c, id);
        last["state"] == state
    });
    last
}

/// A failure to produce: the job, what to do to the lab around it, and what must follow.
struct Case {
    name: &'static str,
    /// A basalt-board fault set before the job (cleared after it).
    fault: Option<&'static str>,
    /// Edits of the board demo job: (text, replacement).
    edits: Vec<(&'static str, String)>,
    /// What happens once the job runs.
    while_running: Action,
    cause: &'static str,
    health: &'static str,
    error_type: &'static str,
    /// Words of the job's failure comment.
    comment: &'static str,
}

#[derive(Clone, Copy, PartialEq)]
enum Action {
    Nothing,
    Cancel,
    KillWorker,
}

const RAISE: &str =
    "          - lava-test-case boot-latency --result pass --measurement 42 --units ms\n";

fn cases() -> Vec<Case> {
    let bad_sum = format!("      type: image\n      sha256sum: '{}'\n", "0".repeat(64));
    vec![
        Case {
            name: "test-raise",
            fault: None,
            edits: vec![(
                RAISE,
                format!("{RAISE}          - lava-test-raise disk-missing\n"),
            )],
            while_running: Action::Nothing,
            cause: "test",
            health: "Incomplete",
            error_type: "Test",
            comment: "disk-missing",
        },
        Case {
            name: "kernel-panic",
            fault: Some("panic"),
            edits: vec![],
            while_running: Action::Nothing,
            cause: "kernel",
            health: "Incomplete",
            error_type: "Job",
            comment: "kernel panic",
        },
        Case {
            name: "bootloader-hang",
            fault: Some("hang-at autoboot"),
            edits: vec![],
            while_running: Action::Nothing,
            cause: "bootloader",
            health: "Incomplete",
            error_type: "LAVATimeout",
            comment: "timed out",
        },
        Case {
            name: "tftp-missing",
            fault: None,
            edits: vec![(
                "    commands: ramdisk\n",
                "    commands:\n    - dhcp\n    - setenv serverip {SERVER_IP}\n    - tftp {KERNEL_ADDR} {KERNEL}.missing\n    - booti {KERNEL_ADDR} - {DTB_ADDR}\n".into(),
            )],
            while_running: Action::Nothing,
            cause: "infrastructure",
            health: "Incomplete",
            error_type: "Job",
            comment: "File not found",
        },
        Case {
            name: "bad-checksum",
            fault: None,
            edits: vec![("      type: image\n", bad_sum)],
            while_running: Action::Nothing,
            cause: "job",
            health: "Incomplete",
            error_type: "Job",
            comment: "sha256",
        },
        Case {
            name: "canceled",
            fault: None,
            edits: vec![],
            while_running: Action::Cancel,
            cause: "canceled",
            health: "Canceled",
            error_type: "Canceled",
            comment: "",
        },
        Case {
            name: "worker-killed",
            fault: None,
            edits: vec![],
            while_running: Action::KillWorker,
            cause: "infrastructure",
            health: "Incomplete",
            error_type: "Infrastructure",
            comment: "worker lost",
        },
        // last: the console stays refused for a while after the job
        Case {
            name: "no-console",
            fault: Some("drop-console 5"),
            edits: vec![],
            while_running: Action::Nothing,
            cause: "infrastructure",
            health: "Incomplete",
            error_type: "Infrastructure",
            comment: "cannot connect",
        },
    ]
}

/// The board demo job with short timeouts, the case's edits and a callback to `url`.
fn job_for(lab: &LocalLab, case: &Case, url: &str) -> String {
    let mut job = lab.board_job().expect("the board job");
    job = job.replace(
        "  action:\n    minutes: 2\n",
        "  action:\n    seconds: 40\n  actions:\n    bootloader-interrupt:\n      seconds: 8\n",
    );
    for (from, to) in &case.edits {
        assert!(job.contains(from), "{}: the job lacks {from:?}", case.name);
        job = job.replacen(from, to, 1);
    }
    job.push_str(&format!(
        "\nnotify:\n  criteria:\n    status: finished\n  callbacks:\n  - url: {url}/{}\n    method: POST\n    dataset: results\n    content-type: json\n",
        case.name
    ));
    job
}

#[test]
fn each_failure_class_is_told_apart_in_results_api_events_and_callbacks() {
    let tmp = common::TempDir::new("failures");
    let mut lab = LocalLab::start(Spec {
        dir: tmp.path().to_path_buf(),
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
        events: true,
        anonymous_read: false,
        coordinator: None,
    })
    .expect("the lab starts");
    let c = lab.client();
    let receiver = receiver::Server::start(BTreeMap::new());
    let url = format!("http://{}", receiver.addr);
    let endpoint = lab.events().expect("the master's events endpoint");
    let events = subscriber::Subscriber::start(&endpoint, "org.lavasoftware.testjob");
    let mut seen_events: Vec<Value> = Vec::new();

    for case in cases() {
        lab.board_fault(BOARD, case.fault.unwrap_or("none"))
            .expect("the board takes the fault");
        let ids = c
            .submit(&job_for(&lab, &case, &url))
            .expect("the job is accepted");
        let id = ids[0];
        match case.while_running {
            Action::Nothing => {}
            Action::Cancel => {
                wait_state(&c, id, "Running", Duration::from_secs(60));
                c.cancel(id).expect("cancel");
            }
            Action::KillWorker => {
                wait_state(&c, id, "Running", Duration::from_secs(60));
                // the job is on the board: its console speaks
                poll("console output", Duration::from_secs(60), || {
                    c.logs(id, 0)
                        .ok()
                        .flatten()
                        .is_some_and(|l| l.contains("\"lvl\": \"target\""))
                });
                lab.kill_worker("w1");
            }
        }
        let shown = wait_state(&c, id, "Finished", Duration::from_secs(120));
        let what = format!("{} (job {id}): {shown}", case.name);
        assert_eq!(shown["health"], case.health, "{what}");
        assert_eq!(shown["failure_cause"], case.cause, "{what}");
        assert_eq!(shown["error_type"], case.error_type, "{what}");
        let comment = shown["failure_comment"].as_str().unwrap_or("");
        assert!(comment.contains(case.comment), "{what}");
        assert!(
            !comment.starts_with('"'),
            "the comment as the job wrote it: {what}"
        );

        // results: the job's own case carries the cause; a failed test case is the test's
        if case.while_running != Action::Cancel || shown["failure_comment"] != Value::Null {
            let tests = c.list(&format!("jobs/{id}/tests/")).expect("tests");
            let job_case = tests
                .iter()
                .find(|t| t["name"] == "job")
                .unwrap_or_else(|| panic!("{what}: no lava/job case in {tests:?}"));
            assert_eq!(job_case["result"], "fail", "{what}");
            assert_eq!(job_case["failure_cause"], case.cause, "{what}: {job_case}");
            for t in tests.iter().filter(|t| t["name"] == "must-fail") {
                assert_eq!(t["failure_cause"], "test", "{what}: {t}");
            }
        }

        // the callback: one request, with the cause in its body
        let r = receiver.next();
        assert_eq!(r.path, format!("/{}", case.name), "{what}");
        let body: Value = serde_json::from_str(&r.body).expect("a JSON body");
        assert_eq!(body["id"], id, "{what}");
        assert_eq!(body["failure_cause"], case.cause, "{what}: {body}");
        assert_eq!(body["error_type"], case.error_type, "{what}: {body}");

        // the event of its end
        let deadline = Instant::now() + Duration::from_secs(10);
        let end = loop {
            if let Some(e) = seen_events
                .iter()
                .find(|e| e["job"] == id && e["state"] == "Finished")
            {
                break e.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let frames = events
                .next(left)
                .unwrap_or_else(|| panic!("{what}: no Finished event"));
            assert_eq!(frames.len(), 5, "LAVA's five frames: {frames:?}");
            seen_events.push(serde_json::from_str(&frames[4]).expect("JSON data"));
        };
        assert_eq!(end["health"], case.health, "{what}: {end}");
        assert_eq!(end["failure_cause"], case.cause, "{what}: {end}");

        if case.while_running == Action::KillWorker {
            lab.start_worker("w1").expect("the worker starts again");
            poll("w1 online", Duration::from_secs(30), || {
                c.list("workers/").is_ok_and(|ws| {
                    ws.iter()
                        .any(|w| w["hostname"] == "w1" && w["state"] == "Online")
                })
            });
            poll("the board idle", Duration::from_secs(60), || {
                c.get(&format!("devices/{BOARD}/"))
                    .is_ok_and(|d| d["state"] == "Idle")
            });
        }
    }
}
