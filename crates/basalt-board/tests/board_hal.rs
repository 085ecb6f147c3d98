//! basalt-board driven through the HAL, as the dispatcher drives it: the `Console` trait and
//! the expect engine for the U-Boot sequence, pdudaemon's HTTP API for power, and every fault
//! mode seen as the error the pipeline gets.

mod board_support;

use basalt_hal::console::expect::{NullTranscript, Regex, Session};
use basalt_hal::console::unix::UnixConsole;
use basalt_hal::power::{PduDaemonPower, Power};
use board_support::{Board, Tftpd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(15);

fn re(s: &str) -> Regex {
    Regex::new(&regex::escape(s)).unwrap()
}

async fn session(board: &Board) -> Session {
    let console = UnixConsole::new(&board.console);
    let deadline = Instant::now() + T;
    loop {
        match Session::connect(&console, Box::new(NullTranscript)).await {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("console: {e}"),
        }
    }
}

async fn cmd(s: &mut Session, line: &str) -> String {
    s.send_line(line, Duration::ZERO).await.unwrap();
    s.expect(&[re("=> ")], T).await.unwrap().before
}

#[tokio::test]
async fn uboot_sequence_through_the_console_trait() {
    let tftpd = Tftpd::start();
    tftpd.put("kernel.bin", &[7u8; 4096]);
    tftpd.put("board.dtb", &[0xd0u8; 512]);
    let port = tftpd.port.to_string();
    let board = Board::start(&["--speed", "0", "--bootdelay", "3", "--tftp-port", &port]);
    let mut s = session(&board).await;
    board.ctl_ok(&["on"], "ok");
    s.expect(&[re("Hit any key to stop autoboot")], T)
        .await
        .unwrap();
    s.send("\n", Duration::ZERO).await.unwrap();
    s.expect(&[re("=> ")], T).await.unwrap();
    assert!(cmd(&mut s, "dhcp").await.contains("DHCP client bound"));
    cmd(&mut s, "setenv serverip 127.0.0.1").await;
    cmd(&mut s, "setenv greeting basalt").await;
    assert!(cmd(&mut s, "printenv greeting")
        .await
        .contains("greeting=basalt"));
    let out = cmd(&mut s, "tftpboot 0x40400000 kernel.bin").await;
    assert!(out.contains("Bytes transferred = 4096 (1000 hex)"), "{out}");
    assert!(cmd(&mut s, "printenv filesize")
        .await
        .contains("filesize=1000"));
    cmd(&mut s, "tftpboot 0x43f00000 board.dtb").await;
    s.send_line("booti 0x40400000 - 0x43f00000", Duration::ZERO)
        .await
        .unwrap();
    s.expect(&[re("Starting kernel")], T).await.unwrap();
    s.expect(&[Regex::new("Linux version [0-9]").unwrap()], T)
        .await
        .unwrap();
    s.expect(&[re("/ # ")], T).await.unwrap();
    s.send_line("echo hello-$((6*7))", Duration::ZERO)
        .await
        .unwrap();
    let m = s
        .expect(&[Regex::new(r"hello-(\d+)").unwrap()], T)
        .await
        .unwrap();
    assert_eq!(m.group(1), Some("42"));
}

/// pdudaemon on 127.0.0.1 whose localcmdline driver calls `basalt-board ctl`.
struct PduDaemon(Child);

impl Drop for PduDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_pdudaemon(dir: &std::path::Path, board: &Board) -> (PduDaemon, u16) {
    let bin = ["/usr/sbin/pdudaemon", "/usr/bin/pdudaemon"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect(
            "pdudaemon not found: install the Debian package pdudaemon (scripts/install-deps.sh)",
        );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ctl = |op: &str| {
        format!(
            "{} ctl --control {} {op}",
            board_support::bin().display(),
            board.control.display()
        )
    };
    let conf = dir.join("pdudaemon.conf");
    let json = format!(
        r#"{{"daemon": {{"hostname": "127.0.0.1", "port": {port}, "logging_level": "INFO", "listener": "http"}},
            "pdus": {{"rack-pdu": {{"driver": "localcmdline", "cmd_on": "{} # %s", "cmd_off": "{} # %s"}}}}}}"#,
        ctl("on"),
        ctl("off")
    );
    std::fs::write(&conf, json).unwrap();
    let child = Command::new(bin)
        .arg("--conf")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = PduDaemon(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "pdudaemon does not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (d, port)
}

#[tokio::test]
async fn pdudaemon_switches_the_board() {
    let board = Board::start(&["--speed", "0", "--bootdelay", "30"]);
    let tmp = tempfile::tempdir().unwrap();
    let (_pdu, port) = start_pdudaemon(tmp.path(), &board);
    let power = PduDaemonPower::new("127.0.0.1", port, "rack-pdu", 1)
        .with_delay(1)
        .with_settle_margin(Duration::from_millis(200));
    let mut s = session(&board).await;
    power.on().await.unwrap();
    s.expect(&[re("U-Boot 20")], T).await.unwrap();
    s.expect(&[re("Hit any key to stop autoboot")], T)
        .await
        .unwrap();
    assert_eq!(board.ctl(&["status"]).1.trim(), "on");
    power.off().await.unwrap();
    assert_eq!(board.ctl(&["status"]).1.trim(), "off");
    // off: the line goes quiet
    let quiet = s
        .expect(&[re("U-Boot 20")], Duration::from_millis(800))
        .await;
    assert!(quiet.is_err_and(|e| e.is_timeout()));
    power.reset().await.unwrap();
    s.expect(&[re("U-Boot 20")], T).await.unwrap();
    assert_eq!(board.ctl(&["status"]).1.trim(), "on");
}

#[tokio::test]
async fn faults_are_the_errors_the_pipeline_needs() {
    // A hang at the kernel: the prompt never comes, the expect times out at that phase.
    let board = Board::start(&[
        "--speed",
        "0",
        "--bootdelay",
        "0",
        "--bootcmd",
        "booti 0x1",
        "--fault",
        "hang-at kernel",
    ]);
    let mut s = session(&board).await;
    board.ctl_ok(&["on"], "ok");
    let err = s
        .expect(&[re("/ # ")], Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(board.ctl(&["phase"]).1.trim(), "kernel");
    board.ctl_ok(&["off"], "ok");

    // A panic: the dispatcher's failure pattern matches.
    board.ctl_ok(&["fault", "none"], "ok");
    board.ctl_ok(&["fault", "panic"], "ok");
    board.ctl_ok(&["on"], "ok");
    let m = s
        .expect(&[re("/ # "), re("Kernel panic - not syncing")], T)
        .await
        .unwrap();
    assert_eq!(m.index, 1);
    board.ctl_ok(&["off"], "ok");

    // Garbage on the line: the prompt is still found, nothing crashes.
    board.ctl_ok(&["fault", "none"], "ok");
    board.ctl_ok(&["fault", "garbage"], "ok");
    board.ctl_ok(&["on"], "ok");
    s.expect(&[re("/ # ")], T).await.unwrap();
    s.send_line("echo still-$((1+1))", Duration::ZERO)
        .await
        .unwrap();
    s.expect(&[re("still-2")], T).await.unwrap();

    // A dropped console: the session reports the connection closed.
    board.ctl_ok(&["fault", "drop-console 2"], "ok");
    let err = s.expect(&[re("never")], T).await.unwrap_err();
    assert!(err.is_closed(), "{err}");
    board.ctl_ok(&["off"], "ok");
    drop(s);
    let mut board = board;
    assert!(board.terminate(), "the board did not exit cleanly");
    board.assert_no_descendants();
}
