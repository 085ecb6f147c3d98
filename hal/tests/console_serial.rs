//! The serial (tokio-serial) and pty backends through a real `socat` pty pair: the backend
//! opens one end, the test plays the board on the other.

mod common;

use std::io::Write;
use std::time::Duration;

use basalt_hal::console::expect::Regex;
use basalt_hal::console::{Console, PtyConsole, SerialConsole, Session, VecTranscript};
use common::*;

const SEC: Duration = Duration::from_secs(5);

async fn exercise(console: &dyn Console, pair: &mut PtyPair) {
    let mut board = open_raw_tty(&pair.b);
    let t = VecTranscript::new();
    let mut s = Session::connect(console, Box::new(t.clone()))
        .await
        .unwrap();
    board
        .write_all(b"U-Boot SPL\r\nHit any key to stop autoboot:  2 \x08\x08\x08 1\r\n")
        .unwrap();
    let m = s
        .expect(&[Regex::new(r"stop autoboot:\s+(\d)").unwrap()], SEC)
        .await
        .unwrap();
    assert_eq!(m.group(1), Some("2"));
    s.send_line("printenv bootcmd", Duration::ZERO)
        .await
        .unwrap();
    let got = read_until(&board, "printenv bootcmd\n", SEC);
    assert_eq!(got, "printenv bootcmd\n");
    // a byte-per-character send arrives whole too
    s.send("\u{e9}t\u{e9}", Duration::from_millis(5))
        .await
        .unwrap();
    let got = read_until(&board, "\u{e9}t\u{e9}", SEC);
    assert_eq!(got, "\u{e9}t\u{e9}");
    board.write_all(b"=> ").unwrap();
    s.expect(&[Regex::new("=> ").unwrap()], SEC).await.unwrap();
    assert_eq!(
        t.received_lines(),
        ["U-Boot SPL", "Hit any key to stop autoboot:  2  1", "=> "]
    );
    // the other side goes away: socat exits, the pty hangs up
    drop(board);
    pair.proc.kill();
    let err = s
        .expect(&[Regex::new("never").unwrap()], SEC)
        .await
        .unwrap_err();
    assert!(err.is_closed(), "expected Closed, got {err}");
}

#[tokio::test]
async fn serial_backend_over_socat_pty() {
    let dir = tempfile::tempdir().unwrap();
    let mut pair = socat_pty_pair(dir.path());
    let console = SerialConsole::new(&pair.a, 115200);
    assert!(console.describe().contains("115200"));
    exercise(&console, &mut pair).await;
    // reconnect after the pty pair is back (new socat, same link names)
    let mut pair = socat_pty_pair(dir.path());
    let mut s = Session::connect(&console, Box::new(VecTranscript::new()))
        .await
        .unwrap();
    let mut board = open_raw_tty(&pair.b);
    board.write_all(b"back\n").unwrap();
    s.expect(&[Regex::new("back").unwrap()], SEC).await.unwrap();
    pair.proc.kill();
}

#[tokio::test]
async fn pty_backend_over_socat_pty() {
    let dir = tempfile::tempdir().unwrap();
    let mut pair = socat_pty_pair(dir.path());
    let console = PtyConsole::new(&pair.a).with_baud(115200);
    exercise(&console, &mut pair).await;
    let err = match PtyConsole::new(dir.path().join("missing")).connect().await {
        Ok(_) => panic!("opened a missing device"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("cannot connect to pty"), "{err}");
}
