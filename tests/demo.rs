//! `basalt demo`, the README's main command: the lab (master, worker, a QEMU board and a
//! basalt-board) running the demo jobs submitted through the master; and `basalt demo --local`,
//! the demo job run directly on QEMU and on basalt-board.

#[path = "../crates/basalt-board/tests/board_support/mod.rs"]
mod board_support;
mod common;

use common::{fixtures_amd64, results, TempDir};
use std::process::Command;

fn demo(extra: &[&str]) -> (i32, Vec<common::ResultRow>, TempDir) {
    fixtures_amd64();
    let fixtures = common::fixtures_dir();
    let tmp = TempDir::new("demo");
    let out = tmp.path().join("demo");
    let status = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .args(["demo", "--local"])
        .args(extra)
        .arg("-q")
        .arg("--fixtures")
        .arg(&fixtures)
        .arg("--output-dir")
        .arg(&out)
        .status()
        .unwrap();
    let res = results(&out);
    (status.code().unwrap_or(-1), res, tmp)
}

fn check(res: &[common::ResultRow]) {
    let get = |c: &str| {
        res.iter()
            .find(|r| r.0 == "0_smoke" && r.1 == c)
            .map(|r| r.2.clone())
    };
    assert_eq!(get("uname").as_deref(), Some("pass"), "{res:?}");
    assert_eq!(get("must-fail").as_deref(), Some("fail"));
    assert_eq!(get("boot-latency").as_deref(), Some("pass"));
}

#[test]
fn local_demo_on_qemu() {
    let (code, res, _tmp) = demo(&[]);
    assert_eq!(code, 0);
    check(&res);
}

#[test]
fn local_demo_on_basalt_board() {
    // `basalt demo --local --board` runs the basalt-board found next to basalt.
    assert!(board_support::bin().is_file());
    let (code, res, _tmp) = demo(&["--board"]);
    assert_eq!(code, 0);
    check(&res);
}

#[test]
fn the_demo_is_a_lab_whose_jobs_all_pass_their_tests() {
    fixtures_amd64();
    let fixtures = common::fixtures_dir();
    let tmp = TempDir::new("demo-lab");
    let out = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .arg("demo")
        .arg("--fixtures")
        .arg(&fixtures)
        .arg("--output-dir")
        .arg(tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the followed job's console, live
    assert!(
        stdout.contains("  | <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=uname RESULT=pass>"),
        "{stdout}"
    );
    // both jobs' results tables, from the master's API
    let row = |case: &str, result: &str| {
        stdout
            .lines()
            .filter(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                cells.len() >= 3 && cells[0] == "0_smoke" && cells[1] == case && cells[2] == result
            })
            .count()
    };
    assert_eq!(row("uname", "pass"), 2, "{stdout}");
    assert_eq!(row("must-fail", "fail"), 2, "{stdout}");
    assert_eq!(row("boot-latency", "pass"), 2, "{stdout}");
    assert!(
        stdout.contains("job 1 (qemu) Complete, job 2 (basalt-board) Complete"),
        "{stdout}"
    );
}
