//! `basalt demo`, the README's main command: the demo job on QEMU, and on basalt-board (what
//! the demo falls back to when QEMU is not installed).

#[path = "../crates/basalt-board/tests/board_support/mod.rs"]
mod board_support;
mod common;

use common::{fixtures_amd64, results, TempDir};
use std::process::Command;

fn demo(extra: &[&str]) -> (i32, Vec<common::ResultRow>, TempDir) {
    let (k, _) = fixtures_amd64();
    let fixtures = k.parent().and_then(|p| p.parent()).unwrap().to_path_buf();
    let tmp = TempDir::new("demo");
    let out = tmp.path().join("demo");
    let status = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .arg("demo")
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
fn demo_on_qemu() {
    let (code, res, _tmp) = demo(&[]);
    assert_eq!(code, 0);
    check(&res);
}

#[test]
fn demo_on_basalt_board() {
    // `basalt demo --board` runs the basalt-board found next to basalt.
    assert!(board_support::bin().is_file());
    let (code, res, _tmp) = demo(&["--board"]);
    assert_eq!(code, 0);
    check(&res);
}
