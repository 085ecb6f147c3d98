//! Power backends: shell commands (success, failure, timeout kills the group), a real
//! pdudaemon with the localcmdline driver (its HTTP and its TCP listener), an in-test TCP
//! server for the TCP listener's bytes and odd replies, and QMP against a real QEMU.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use basalt_hal::power::{
    CommandPower, PduDaemonPower, PduTransport, Power, PowerCommands, PowerError, QmpPower,
};
use common::*;

const SEC: Duration = Duration::from_secs(5);

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

#[tokio::test]
async fn command_power_runs_lists_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("effect");
    let cmds = PowerCommands {
        on: vec![
            format!("echo relay 1 on >> {}", f.display()),
            format!("echo relay 2 on >> {} && true", f.display()),
        ],
        off: vec![format!("echo off >> {}", f.display())],
        reset: vec![],
    };
    let p = CommandPower::new("board-1", cmds);
    p.on().await.unwrap();
    assert_eq!(lines(&f), ["relay 1 on", "relay 2 on"]);
    // no hard_reset_command: off then on
    p.reset().await.unwrap();
    assert_eq!(
        lines(&f),
        [
            "relay 1 on",
            "relay 2 on",
            "off",
            "relay 1 on",
            "relay 2 on"
        ]
    );
    let none = CommandPower::new("board-2", PowerCommands::default());
    assert!(matches!(
        none.on().await,
        Err(PowerError::NotConfigured { op: "on", .. })
    ));
    assert!(matches!(
        none.reset().await,
        Err(PowerError::NotConfigured { op: "reset", .. })
    ));
}

#[tokio::test]
async fn command_power_non_zero_exit_fails_with_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("effect");
    let p = CommandPower::new(
        "board-1",
        PowerCommands {
            off: vec![
                "echo relay busy >&2; exit 4".to_string(),
                format!("echo must not run >> {}", f.display()),
            ],
            ..Default::default()
        },
    );
    match p.off().await {
        Err(PowerError::Failed { op, what, message }) => {
            assert_eq!(op, "off");
            assert_eq!(what, "power commands of board-1");
            assert!(message.contains("exit status: 4"), "{message}");
            assert!(message.contains("relay busy"), "{message}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(!f.exists(), "the list stops at the first failure");
}

#[tokio::test]
async fn command_power_timeout_kills_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // the shell, and a grandchild in the background: both must die
    let p = CommandPower::new(
        "board-1",
        PowerCommands {
            reset: vec![format!(
                "sleep 600 & echo $! > {0}.bg; echo $$ > {0}.sh; wait",
                pids.display()
            )],
            ..Default::default()
        },
    )
    .with_timeout(Duration::from_millis(500));
    let start = Instant::now();
    let res = p.reset().await;
    let took = start.elapsed();
    assert!(
        matches!(
            res,
            Err(PowerError::Timeout {
                op: "reset",
                secs: 1,
                ..
            })
        ),
        "{res:?}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let read_pid = |ext: &str| -> i32 {
        std::fs::read_to_string(format!("{}.{ext}", pids.display()))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (sh, bg) = (read_pid("sh"), read_pid("bg"));
    assert!(
        wait_until(SEC, || !pid_alive(sh) && !pid_alive(bg)),
        "sh {sh} or sleep {bg} survived the timeout"
    );
}

/// A pdudaemon on 127.0.0.1:`port` with `listener` (`http` or `tcp`) and one localcmdline
/// PDU `test-pdu` writing `on N` / `off N` to `outlets.log`; killed by PID when dropped.
/// On, off and reboot of outlet 3 through `p` (a 1 s reboot delay), checked in what the
/// daemon's driver logged to `effect`.
async fn switch_outlet_3(p: &PduDaemonPower, effect: &std::path::Path, daemon: &Proc) {
    p.on().await.unwrap();
    assert!(
        wait_until(SEC, || lines(effect) == ["on 3"]),
        "{:?}; log:\n{}",
        lines(effect),
        daemon.log()
    );
    p.off().await.unwrap();
    assert!(wait_until(SEC, || lines(effect) == ["on 3", "off 3"]));
    // reboot = off, delay (1 s), on; the call returns once the daemon is done (and settled)
    let start = Instant::now();
    p.reset().await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(
        wait_until(SEC, || lines(effect) == ["on 3", "off 3", "off 3", "on 3"]),
        "{:?}",
        lines(effect)
    );
}

fn start_pdudaemon(dir: &std::path::Path, port: u16, listener: &str) -> Proc {
    let pdudaemon = require("pdudaemon", "pdudaemon");
    let effect = dir.join("outlets.log");
    let conf = dir.join("pdudaemon.conf");
    let cmd = |what: &str| format!("echo {what} %s >> {}", effect.display());
    let json = serde_json::json!({
        "daemon": {
            "hostname": "127.0.0.1",
            "port": port,
            "logging_level": "DEBUG",
            "listener": listener
        },
        "pdus": {
            "test-pdu": {
                "driver": "localcmdline",
                "cmd_on": cmd("on"),
                "cmd_off": cmd("off")
            }
        },
        "aliases": { "board-7": { "hostname": "test-pdu", "port": 7 } }
    });
    std::fs::write(&conf, json.to_string()).unwrap();
    let mut c = Command::new(pdudaemon);
    c.arg("--conf").arg(&conf).arg("--loglevel").arg("DEBUG");
    let mut proc = Proc::spawn("pdudaemon", c, &dir.join("pdudaemon.log"));
    let up = wait_until(Duration::from_secs(30), || {
        !proc.running() || port_open(port)
    });
    assert!(
        up && proc.running(),
        "pdudaemon did not listen on 127.0.0.1:{port}; log:\n{}",
        proc.log()
    );
    proc
}

#[tokio::test]
async fn pdudaemon_on_off_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let daemon = start_pdudaemon(dir.path(), port, "http");
    let effect = dir.path().join("outlets.log");
    let p = PduDaemonPower::new("127.0.0.1", port, "test-pdu", 3)
        .with_delay(1)
        .with_settle_margin(Duration::from_millis(300));
    assert_eq!(
        p.describe(),
        format!("pdudaemon 127.0.0.1:{port} test-pdu port 3")
    );

    switch_outlet_3(&p, &effect, &daemon).await;

    // an alias works too
    let alias = PduDaemonPower::with_target(
        "127.0.0.1",
        port,
        basalt_hal::power::pdudaemon::PduTarget::Alias("board-7".into()),
    )
    .with_settle_margin(Duration::ZERO);
    alias.off().await.unwrap();
    assert!(wait_until(SEC, || lines(&effect)
        .last()
        .map(String::as_str)
        == Some("off 7")));

    // an unknown PDU is refused with HTTP 500
    let bad = PduDaemonPower::new("127.0.0.1", port, "no-such-pdu", 1);
    match bad.on().await {
        Err(PowerError::Failed { message, .. }) => {
            assert!(message.contains("HTTP 500"), "{message}");
            assert!(message.contains("Invalid request"), "{message}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    drop(daemon);
    // nobody listening any more
    match p.on().await {
        Err(PowerError::Failed { message, .. }) => assert!(message.contains("GET"), "{message}"),
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn pdudaemon_tcp_on_off_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let daemon = start_pdudaemon(dir.path(), port, "tcp");
    let effect = dir.path().join("outlets.log");
    // the outlet as a lab writes it (`--port 08`): pdudaemon reads it as a number
    let p = PduDaemonPower::new("127.0.0.1", port, "test-pdu", "03")
        .with_transport(PduTransport::Tcp)
        .with_delay(1)
        .with_settle_margin(Duration::from_millis(300));
    assert_eq!(
        p.describe(),
        format!("pdudaemon tcp 127.0.0.1:{port} test-pdu port 03")
    );

    switch_outlet_3(&p, &effect, &daemon).await;

    // an unknown PDU is refused with nack, naming the request
    let bad =
        PduDaemonPower::new("127.0.0.1", port, "no-such-pdu", 1).with_transport(PduTransport::Tcp);
    match bad.on().await {
        Err(PowerError::Failed { op, what, message }) => {
            assert_eq!(op, "on");
            assert_eq!(
                what,
                format!("pdudaemon tcp 127.0.0.1:{port} no-such-pdu port 1")
            );
            assert!(message.contains("\"no-such-pdu 1 on\""), "{message}");
            assert!(message.contains("\"nack\""), "{message}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // the HTTP client against a TCP listener fails (pdudaemon answers `Unexpected data`)
    let http = PduDaemonPower::new("127.0.0.1", port, "test-pdu", 3)
        .with_request_timeout(Duration::from_secs(5));
    match http.on().await {
        Err(PowerError::Failed { message, .. }) => assert!(message.contains("GET"), "{message}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(lines(&effect).len(), 4, "nothing else switched");
    drop(daemon);
    // nobody listening any more
    match p.on().await {
        Err(PowerError::Failed { message, .. }) => {
            assert!(message.contains("request \"test-pdu 03 on\""), "{message}")
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

/// One connection of a fake TCP listener: the request as a single read got it, then `reply`
/// is written and the connection closed (`None`: held open without a reply until the client
/// gives up).
async fn tcp_listener_once(listener: &tokio::net::TcpListener, reply: Option<&[u8]>) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut conn, _) = tokio::time::timeout(SEC, listener.accept())
        .await
        .expect("no connection")
        .unwrap();
    let mut buf = vec![0u8; 16384];
    let n = tokio::time::timeout(SEC, conn.read(&mut buf))
        .await
        .expect("no request")
        .unwrap();
    buf.truncate(n);
    match reply {
        Some(r) => {
            conn.write_all(r).await.unwrap();
        }
        None => {
            // wait for the client to close (it times out)
            let mut rest = [0u8; 16];
            let _ = tokio::time::timeout(SEC, conn.read(&mut rest)).await;
        }
    }
    buf
}

#[tokio::test]
async fn pdudaemon_tcp_exact_bytes_and_odd_replies() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let p = PduDaemonPower::new("127.0.0.1", port, "pdu", "08")
        .with_transport(PduTransport::Tcp)
        .with_delay(0)
        .with_settle_margin(Duration::ZERO)
        .with_request_timeout(Duration::from_millis(500));

    // exactly pduclient's bytes, in one read, no terminator; `ack\n` is success
    let (sent, res) = tokio::join!(tcp_listener_once(&listener, Some(b"ack\n")), p.reset());
    res.unwrap();
    assert_eq!(sent, b"pdu 08 reboot 0");
    let (sent, res) = tokio::join!(tcp_listener_once(&listener, Some(b"ack\n")), p.off());
    res.unwrap();
    assert_eq!(sent, b"pdu 08 off");

    // an exception's text without a newline, then close
    let (_, res) = tokio::join!(
        tcp_listener_once(&listener, Some(b"Unexpected data")),
        p.on()
    );
    match res {
        Err(PowerError::Failed { op, what, message }) => {
            assert_eq!(op, "on");
            assert_eq!(what, format!("pdudaemon tcp 127.0.0.1:{port} pdu port 08"));
            assert_eq!(
                message,
                "request \"pdu 08 on\": pdudaemon replied \"Unexpected data\""
            );
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // closed without a reply
    let (_, res) = tokio::join!(tcp_listener_once(&listener, Some(b"")), p.on());
    match res {
        Err(PowerError::Failed { message, .. }) => {
            assert!(message.contains("without a reply"), "{message}")
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // an endless reply is cut off
    let long = vec![b'x'; 20000];
    let (_, res) = tokio::join!(tcp_listener_once(&listener, Some(&long)), p.on());
    match res {
        Err(PowerError::Failed { message, .. }) => {
            assert!(message.contains("longer than 16384"), "{message}")
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // no reply at all: the request timeout (plus the reboot delay, 0 here)
    let start = Instant::now();
    let (_, res) = tokio::join!(tcp_listener_once(&listener, None), p.reset());
    assert!(
        matches!(
            res,
            Err(PowerError::Timeout {
                op: "reset",
                secs: 1,
                ..
            })
        ),
        "{res:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn qmp_on_off_reset() {
    let qemu = require("qemu-system-x86_64", "qemu-system-x86");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let mut c = Command::new(qemu);
    c.args([
        "-accel",
        "tcg",
        "-nographic",
        "-nic",
        "none",
        "-S",
        "-m",
        "64",
    ])
    .arg("-qmp")
    .arg(format!("unix:{},server=on,wait=off", sock.display()))
    .args(["-display", "none"]);
    let mut vm = Proc::spawn("qemu", c, &dir.path().join("qemu.log"));
    assert!(
        wait_until(Duration::from_secs(20), || !vm.running() || sock.exists()),
        "no QMP socket"
    );
    assert!(vm.running(), "qemu exited; log:\n{}", vm.log());
    let p = QmpPower::new(&sock);
    assert_eq!(p.query_status().await.unwrap(), "prelaunch");
    p.on().await.unwrap();
    assert_eq!(p.query_status().await.unwrap(), "running");
    p.off().await.unwrap();
    let off = p.query_status().await.unwrap();
    assert!(off == "prelaunch" || off == "paused", "{off}");
    p.reset().await.unwrap();
    assert_eq!(p.query_status().await.unwrap(), "running");
    // a QMP error is reported as such
    let err = p.execute(&[("no-such-command", None)]).await.unwrap_err();
    assert!(err.to_string().contains("CommandNotFound"), "{err}");
    vm.kill();
    match p.on().await {
        Err(PowerError::Failed { message, .. }) => assert!(message.contains("QMP"), "{message}"),
        other => panic!("expected Failed, got {other:?}"),
    }
}
