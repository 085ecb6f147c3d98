//! The telnet backend against a real ser2net 4 in front of a socat pty pair; ser2net is
//! killed and restarted mid-session.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use basalt_hal::console::expect::Regex;
use basalt_hal::console::{Console, Session, TelnetConsole, VecTranscript};
use common::*;

const SEC: Duration = Duration::from_secs(5);

fn start_ser2net(dir: &Path, port: u16, device: &Path, n: u32) -> Proc {
    let ser2net = require("ser2net", "ser2net");
    let conf = dir.join("ser2net.yaml");
    std::fs::write(
        &conf,
        format!(
            "%YAML 1.1\n---\nconnection: &board\n    accepter: telnet,tcp,127.0.0.1,{port}\n    \
             connector: serialdev,{},115200n81,local\n    enable: on\n    options:\n      \
             kickolduser: true\n",
            device.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(ser2net);
    cmd.arg("-n")
        .arg("-d")
        .arg("-u")
        .arg("-c")
        .arg(&conf)
        .arg("-P")
        .arg(dir.join("ser2net.pid"));
    let mut proc = Proc::spawn("ser2net", cmd, &dir.join(format!("ser2net-{n}.log")));
    let up = wait_until(Duration::from_secs(10), || {
        !proc.running() || port_open(port)
    });
    assert!(
        up && proc.running(),
        "ser2net did not listen on 127.0.0.1:{port}; log:\n{}",
        proc.log()
    );
    proc
}

/// Sends a line from the session until the board sees it: ser2net opens the device only when
/// a client connects, so this proves the whole path is up.
async fn handshake(s: &mut Session, board: &std::fs::File, word: &str) {
    s.send_line(word, Duration::ZERO).await.unwrap();
    let got = read_until(board, &format!("{word}\n"), SEC);
    assert_eq!(got, format!("{word}\n"), "line sent through ser2net");
}

#[tokio::test]
async fn telnet_through_ser2net_with_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pair = socat_pty_pair(dir.path());
    let port = free_port();
    let mut ser2net = start_ser2net(dir.path(), port, &pair.a, 1);
    let console = TelnetConsole::new("127.0.0.1", port);
    assert_eq!(console.describe(), format!("telnet 127.0.0.1:{port}"));
    let t = VecTranscript::new();
    let mut s = Session::connect(&console, Box::new(t.clone()))
        .await
        .unwrap();
    let mut board = open_raw_tty(&pair.b);

    handshake(&mut s, &board, "echo hello").await;
    // 0xFF from the board arrives as one byte (ser2net sends IAC IAC); negotiation bytes
    // never show up in the data
    board
        .write_all(b"Linux version 6.1.0 \xff\r\nroot@board:~# ")
        .unwrap();
    let m = s
        .expect(
            &[Regex::new(r"(?-u)Linux version (\S+) \xff\r\n").unwrap()],
            SEC,
        )
        .await
        .unwrap();
    assert_eq!(m.group(1), Some("6.1.0"));
    s.expect(&[Regex::new("root@board:~# ").unwrap()], SEC)
        .await
        .unwrap();
    // 0xFF to the board is escaped on the wire and arrives as one byte
    s.send("\u{ff}\n", Duration::ZERO).await.unwrap();
    let got = read_until(&board, "\u{ff}\n", SEC);
    assert_eq!(got, "\u{ff}\n");

    // ser2net dies mid-session: the session says Closed, clearly
    ser2net.kill();
    let err = s
        .expect(&[Regex::new("never").unwrap()], SEC)
        .await
        .unwrap_err();
    assert!(err.is_closed(), "expected Closed, got {err}");
    assert!(
        err.to_string().contains(&format!(
            "console telnet 127.0.0.1:{port} closed the connection"
        )),
        "{err}"
    );
    let err = s.send_line("x", Duration::ZERO).await.unwrap_err();
    assert!(err.is_closed(), "{err}");
    // nothing listens now: connect fails with a Connect error
    match console.connect().await {
        Err(e) => assert!(e.to_string().contains("cannot connect"), "{e}"),
        Ok(_) => panic!("connected while ser2net was down"),
    }

    // restart on the same port: a new connect works and the session goes on
    let _ser2net = start_ser2net(dir.path(), port, &pair.a, 2);
    s.reconnect(&console).await.unwrap();
    handshake(&mut s, &board, "echo again").await;
    board.write_all(b"again\r\nroot@board:~# ").unwrap();
    let m = s
        .expect(&[Regex::new("root@board:~# ").unwrap()], SEC)
        .await
        .unwrap();
    assert_eq!(m.before, "again\r\n");
    let lines = t.received_lines();
    assert!(
        lines.contains(&"Linux version 6.1.0 \u{efff}".to_string()),
        "{lines:?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("root@board:~# "));
}
