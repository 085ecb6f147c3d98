//! The unix-socket and connection-command backends: a test-made unix socket server plays the
//! board; `socat`, `cat` and `sh` are the connection commands.

mod common;

use std::time::Duration;

use basalt_hal::console::expect::Regex;
use basalt_hal::console::{
    CommandConsole, Console, ConsoleError, Session, UnixConsole, VecTranscript,
};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

const SEC: Duration = Duration::from_secs(5);

fn re(p: &str) -> Regex {
    Regex::new(p).unwrap()
}

/// Accepts one connection, writes `greeting`, echoes one line back upper-cased, then closes.
async fn board_once(listener: &UnixListener, greeting: &str) {
    let (mut conn, _) = listener.accept().await.unwrap();
    conn.write_all(greeting.as_bytes()).await.unwrap();
    let mut line = Vec::new();
    let mut buf = [0u8; 256];
    while !line.ends_with(b"\n") {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "client closed early");
        line.extend_from_slice(&buf[..n]);
    }
    let reply = String::from_utf8(line).unwrap().to_uppercase();
    conn.write_all(reply.as_bytes()).await.unwrap();
    // dropping `conn` closes the connection
}

async fn drive(console: &dyn Console, listener: &UnixListener, round: u32) {
    let t = VecTranscript::new();
    let mut s = Session::connect(console, Box::new(t.clone()))
        .await
        .unwrap();
    let greeting = format!("board round {round}\r\n/ # ");
    let ((), result) = tokio::join!(board_once(listener, &greeting), async {
        let m = s.expect(&[re(r"round (\d+)")], SEC).await?;
        assert_eq!(m.group(1), Some(round.to_string().as_str()));
        s.expect(&[re("/ # ")], SEC).await?;
        s.send_line("uname -a", Duration::ZERO).await?;
        s.expect(&[re("UNAME -A\n")], SEC).await?;
        // the board hung up
        s.expect(&[re("never")], SEC).await.map(drop)
    });
    let err = result.unwrap_err();
    assert!(err.is_closed(), "round {round}: expected Closed, got {err}");
    assert!(t.received_lines().contains(&format!("board round {round}")));
}

#[tokio::test]
async fn unix_socket_console_and_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.sock");
    let console = UnixConsole::new(&path);
    // nothing there yet
    match console.connect().await {
        Err(ConsoleError::Connect { what, .. }) => assert!(what.starts_with("unix ")),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("connected to nothing"),
    }
    let listener = UnixListener::bind(&path).unwrap();
    drive(&console, &listener, 1).await;
    drive(&console, &listener, 2).await;
}

#[tokio::test]
async fn command_console_socat_to_unix_socket() {
    let socat = require("socat", "socat");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let console = CommandConsole::new(&format!(
        "{} - 'UNIX-CONNECT:{}'",
        socat.display(),
        path.display()
    ))
    .unwrap();
    assert_eq!(console.argv().len(), 3);
    drive(&console, &listener, 1).await;
    // connect() spawns a fresh child each time
    drive(&console, &listener, 2).await;
}

#[tokio::test]
async fn command_console_cat_echoes() {
    let console = CommandConsole::new("cat").unwrap();
    let mut s = Session::connect(&console, Box::new(VecTranscript::new()))
        .await
        .unwrap();
    s.send_line("hello \u{2603}", Duration::ZERO).await.unwrap();
    let m = s.expect(&[re("hello (.)\n")], SEC).await.unwrap();
    assert_eq!(m.group(1), Some("\u{2603}"));
}

#[tokio::test]
async fn command_exit_is_closed_with_status_and_stderr() {
    let console =
        CommandConsole::new("sh -c 'echo starting; echo cannot open /dev/ttyUSB9 >&2; exit 3'")
            .unwrap();
    let mut s = Session::connect(&console, Box::new(VecTranscript::new()))
        .await
        .unwrap();
    s.expect(&[re("starting")], SEC).await.unwrap();
    let err = s.expect(&[re("never")], SEC).await.unwrap_err();
    assert!(err.is_closed(), "{err}");
    let text = err.to_string();
    assert!(text.contains("exit status: 3"), "{text}");
    assert!(text.contains("cannot open /dev/ttyUSB9"), "{text}");
}

#[tokio::test]
async fn command_child_is_killed_when_the_session_is_dropped() {
    let console = CommandConsole::new("sh -c 'echo pid=$$; exec sleep 600'").unwrap();
    let mut s = Session::connect(&console, Box::new(VecTranscript::new()))
        .await
        .unwrap();
    let m = s.expect(&[re(r"pid=(\d+)\n")], SEC).await.unwrap();
    let pid: i32 = m.group(1).unwrap().parse().unwrap();
    let alive = |pid: i32| {
        // a zombie (killed, not yet reaped) counts as gone
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                .unwrap_or(false),
            Err(_) => false,
        }
    };
    assert!(alive(pid));
    drop(s);
    assert!(
        wait_until_async(SEC, || !alive(pid)).await,
        "child {pid} still running after the session was dropped"
    );
}

#[tokio::test]
async fn command_console_errors() {
    assert!(matches!(
        CommandConsole::new("   "),
        Err(ConsoleError::Config { .. })
    ));
    assert!(matches!(
        CommandConsole::new("telnet 'unterminated"),
        Err(ConsoleError::Config { .. })
    ));
    let missing = CommandConsole::new("/nonexistent/basalt-console --x").unwrap();
    match missing.connect().await {
        Err(ConsoleError::Connect { what, source }) => {
            assert!(what.contains("/nonexistent/basalt-console"));
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("spawned a missing program"),
    }
}
