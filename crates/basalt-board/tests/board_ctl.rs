//! The control socket and its `ctl` client.

mod board_support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use board_support::*;

#[test]
fn ctl_round_trip() {
    let mut board = Board::start(&["--speed", "0", "--bootdelay", "5"]);
    board.ctl_ok(&["status"], "off");
    board.ctl_ok(&["phase"], "off");
    board.ctl_ok(&["on"], "ok");
    board.ctl_ok(&["status"], "on");
    board.ctl_ok(&["on"], "ok"); // already on: no effect
    board.ctl_ok(&["fault", "garbage"], "ok");
    board.ctl_ok(&["fault", "hang-at", "login"], "ok");
    board.ctl_ok(&["faults"], "hang-at login, garbage");
    board.ctl_ok(&["fault", "none"], "ok");
    board.ctl_ok(&["faults"], "none");
    board.ctl_ok(&["reset"], "ok");
    board.ctl_ok(&["status"], "on");
    board.ctl_ok(&["off"], "ok");
    board.ctl_ok(&["status"], "off");

    // Errors: exit status 1, the board's words on stderr.
    let (ok, out, err) = board.ctl(&["fault", "hang-at", "moon"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("unknown phase 'moon'"), "{err}");
    let (ok, _, err) = board.ctl(&["explode"]);
    assert!(!ok);
    assert!(err.contains("unknown command 'explode'"), "{err}");

    // No board there: a clear error.
    let (ok, _, err) = ctl(&board.dir.path().join("nothing.sock"), &["status"]);
    assert!(!ok);
    assert!(err.contains("control socket"), "{err}");

    assert!(board.terminate());
    assert!(!board.control.exists());
    assert!(!board.console.exists());
}

/// The raw line protocol, several commands on one connection.
#[test]
fn control_protocol_lines() {
    let board = Board::start(&["--speed", "0"]);
    let mut s = UnixStream::connect(&board.control).expect("connect control");
    s.set_read_timeout(Some(SOON)).expect("timeout");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut ask = |cmd: &str| -> String {
        s.write_all(format!("{cmd}\n").as_bytes()).expect("write");
        let mut line = String::new();
        r.read_line(&mut line).expect("read");
        line.trim_end().to_string()
    };
    assert_eq!(ask("status"), "off");
    assert_eq!(ask("on"), "ok");
    assert_eq!(ask("status"), "on");
    assert_eq!(ask("fault drop-console 0"), "ok");
    assert_eq!(ask("fault bogus"), ask("fault bogus"));
    assert!(ask("fault bogus").starts_with("error unknown fault 'bogus'"));
    assert!(ask("help").starts_with("commands: on, off, reset, status"));
    assert!(ask("").starts_with("error"));
    assert_eq!(ask("off"), "ok");
    assert_eq!(ask("status"), "off");
    board.assert_no_descendants();
}

/// Bad start-up arguments: an error, not a board.
#[test]
fn bad_arguments() {
    let out = std::process::Command::new(bin())
        .args(["--unix", "/nonexistent-dir/x.sock"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on unix"));
    let out = std::process::Command::new(bin())
        .args(["--unix", "/tmp/x.sock", "--fault", "hang-at moon"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("bad.yaml");
    std::fs::write(&script, "- goto: nowhere\n").expect("write");
    let sock = dir.path().join("c.sock");
    let out = std::process::Command::new(bin())
        .arg("--unix")
        .arg(&sock)
        .arg("--uboot-script")
        .arg(&script)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no label named 'nowhere'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!sock.exists(), "socket left behind after a failed start");
}
