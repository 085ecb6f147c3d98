//! `basalt hold` on a `basalt-board` U-Boot device (telnet console, power through the board's
//! control socket): the console is served from the moment the board is held, a watcher that
//! connects after the U-Boot banner still reads it from the replay, a second writer and a
//! wrong token are refused, a boot request boots the board to its shell, exec gives output
//! and exit status, a dropped board console is connected again, and SIGTERM closes every
//! connection and powers the board off.

#[path = "../crates/basalt-board/tests/board_support/mod.rs"]
mod board_support;
mod common;

use basalt_proto::{HoldAction, HoldPhase, HoldResult, JobId, MasterMsg, WorkerMsg};
use board_support::Board;
use common::TempDir;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SOON: Duration = Duration::from_secs(30);
const CONSOLE_TOKEN: &str = "c0nsole-t0ken-of-41";
const WATCH_TOKEN: &str = "watch-t0ken-of-41";

/// A `basalt hold` process: SIGKILLed and reaped on drop (the test's SIGTERM comes first
/// when it checks the end).
struct Hold {
    child: Child,
    /// Its stdout (the log), line by line.
    log: mpsc::Receiver<String>,
    control: UnixStream,
    /// What came on the control socket.
    events: mpsc::Receiver<WorkerMsg>,
    next_request: u64,
    /// The log lines [`Hold::log_line`] took from `log`, in order.
    seen: Vec<String>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hold {
    fn start(dict: &Path, dir: &Path) -> Hold {
        let lease = dir.join("lease.json");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&lease)
                .unwrap();
            write!(
                f,
                r#"{{"reservation_id": 41, "console_token": "{CONSOLE_TOKEN}", "watch_token": "{WATCH_TOKEN}"}}"#
            )
            .unwrap();
        }
        let control = dir.join("control.sock");
        let tftp = dir.join("tftp");
        std::fs::create_dir_all(&tftp).unwrap();
        let types = concat!(env!("CARGO_MANIFEST_DIR"), "/config/device-types");
        let mut child = Command::new(env!("CARGO_BIN_EXE_basalt"))
            .arg("hold")
            .arg("--device")
            .arg(dict)
            .args(["--device-types", types])
            .arg("--output-dir")
            .arg(dir.join("out"))
            .args(["--job-id", "41", "--log-stdout", "--control"])
            .arg(&control)
            .arg("--lease-file")
            .arg(&lease)
            .args([
                "--console-listen",
                "127.0.0.1:0",
                "--advertise-host",
                "127.0.0.1",
                "--server-ip",
                "127.0.0.1",
                "--tftp-root",
            ])
            .arg(&tftp)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + SOON;
        let sock = loop {
            match UnixStream::connect(&control) {
                Ok(s) => break s,
                Err(e) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("basalt hold exited ({status}) before its control socket");
                    }
                    assert!(Instant::now() < deadline, "no control socket: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&control).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the control socket's mode");
        let reader = sock.try_clone().unwrap();
        let (etx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                let msg: WorkerMsg = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("control line {line:?}: {e}"));
                if etx.send(msg).is_err() {
                    break;
                }
            }
        });
        Hold {
            child,
            log,
            control: sock,
            events,
            next_request: 1,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing `what` (the lines read are kept in `seen`).
    fn log_line(&mut self, what: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        if self.seen.iter().any(|l| l.contains(what)) {
            return true;
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(what);
                    self.seen.push(line);
                    if found {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Sends a request; returns its id.
    fn request(&mut self, action: HoldAction) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        let msg = MasterMsg::Hold(basalt_proto::Hold {
            job_id: JobId(41),
            request_id: id,
            action,
        });
        let mut line = serde_json::to_vec(&msg).unwrap();
        line.push(b'\n');
        self.control.write_all(&line).unwrap();
        id
    }

    /// The next control message that `f` takes, within `within`.
    fn wait<T>(
        &self,
        what: &str,
        within: Duration,
        mut f: impl FnMut(&WorkerMsg) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(m) => {
                    if let Some(t) = f(&m) {
                        return t;
                    }
                    seen.push(m);
                }
                Err(_) => panic!("{what}: not within {within:?}; seen {seen:?}"),
            }
        }
    }

    fn state(&self, phase: HoldPhase, within: Duration) -> basalt_proto::HoldState {
        self.wait(&format!("hold state {phase:?}"), within, |m| match m {
            WorkerMsg::HoldState(s) if s.state == phase => Some(s.clone()),
            WorkerMsg::HoldState(s)
                if s.state == HoldPhase::Failed && phase != HoldPhase::Failed =>
            {
                panic!("the hold failed: {:?}", s.reason)
            }
            _ => None,
        })
    }

    fn reply(&self, id: u64, within: Duration) -> HoldResult {
        self.wait(&format!("reply {id}"), within, |m| match m {
            WorkerMsg::HoldReply(r) if r.request_id == id => Some(r.result.clone()),
            _ => None,
        })
    }
}

/// A console client: connects, sends `token`, reads what comes.
struct Client {
    sock: TcpStream,
    got: Vec<u8>,
}

impl Client {
    fn connect(port: u16, token: &str) -> Client {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        sock.write_all(format!("{token}\r\n").as_bytes()).unwrap();
        Client {
            sock,
            got: Vec::new(),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.got).into_owned()
    }

    /// Reads until the text contains `what`; false at end of file first.
    fn read_until(&mut self, what: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while !self.text().contains(what) {
            assert!(
                Instant::now() < deadline,
                "{what:?} not read within {within:?}; got {:?}",
                self.text()
            );
            match self.sock.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Reads until end of file (the server closed), within `within`.
    fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.sock.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

const BOOT: &str = "device_type: basalt-board\njob_name: hold boot\ntimeouts:\n  job:\n    minutes: 3\n  action:\n    minutes: 1\n\
visibility: public\npriority: medium\nactions:\n- boot:\n    method: minimal\n    prompts:\n    - '/ # '\n";

#[test]
fn a_held_board_serves_its_console_boots_runs_commands_and_ends_powered_off() {
    let board =
        Board::start_with_console(&["--telnet", "0"], &["--speed", "0", "--bootdelay", "1"]);
    let tmp = TempDir::new("hold");
    let dict = board.write_dictionary(tmp.path());
    let mut hold = Hold::start(&dict, tmp.path());
    let held = hold.state(HoldPhase::Held, SOON);
    let console = held.connection.console.expect("a console endpoint");
    assert_eq!(console.host, "127.0.0.1");
    let port = console.port;

    // the holder connects before anything was booted; nobody else may write
    let mut writer = Client::connect(port, CONSOLE_TOKEN);
    assert!(writer.read_until("basalt: console of board (writer)\r\n", SOON));
    let mut second = Client::connect(port, CONSOLE_TOKEN);
    assert!(second.read_until(
        "basalt: refused: the console already has a writer\r\n",
        SOON
    ));
    assert!(
        second.closed_within(SOON),
        "a second writer is disconnected"
    );
    let mut wrong = Client::connect(port, "not-the-token");
    assert!(wrong.read_until("basalt: wrong token\r\n", SOON));
    assert!(wrong.closed_within(SOON));
    assert!(!wrong.text().contains("console of"), "{}", wrong.text());

    // exec before a boot: refused
    let id = hold.request(HoldAction::Exec {
        command: "true".into(),
        timeout_secs: 5,
    });
    assert!(
        matches!(hold.reply(id, SOON), HoldResult::Error { ref error } if error.contains("not ready"))
    );

    // boot: the board is powered on and reaches its shell
    let id = hold.request(HoldAction::Boot {
        definition: BOOT.into(),
        timeout_secs: 120,
    });
    assert_eq!(hold.reply(id, SOON), HoldResult::Accepted);
    hold.state(HoldPhase::Booting, SOON);
    hold.state(HoldPhase::Ready, Duration::from_secs(120));
    assert!(writer.read_until("/ # ", SOON), "the writer sees the boot");
    assert!(
        writer.text().contains("U-Boot 2023.01"),
        "{}",
        writer.text()
    );

    // a watcher that comes after the banner was printed reads it from the replay
    let mut watcher = Client::connect(port, WATCH_TOKEN);
    assert!(watcher.read_until("/ # ", SOON));
    let text = watcher.text();
    assert!(
        text.starts_with("basalt: console of board (watcher)\r\n"),
        "{text}"
    );
    let banner = text
        .find("U-Boot 2023.01")
        .expect("the U-Boot banner in the replay");
    let shell = text.rfind("/ # ").unwrap();
    assert!(banner < shell);

    // exec: output and exit status
    let id = hold.request(HoldAction::Exec {
        command: "echo hi; false".into(),
        timeout_secs: 30,
    });
    assert_eq!(
        hold.reply(id, SOON),
        HoldResult::Exec {
            output: "hi\n".into(),
            exit_status: 1,
            truncated: false
        }
    );
    assert!(
        watcher.read_until("BASALT_END_", SOON),
        "the watcher sees the command"
    );
    // the holder types on the console; the watcher sees the board's answer
    writer
        .sock
        .write_all(b"echo typed-by-the-$((6*7))-holder\r")
        .unwrap();
    assert!(watcher.read_until("typed-by-the-42-holder", SOON));
    assert_eq!(board.ctl(&["status"]).1.trim(), "on");

    // the board's console connection drops (ser2net restarted): the hold connects it again,
    // and the holder and the watcher, still connected, go on
    board.ctl_ok(&["fault", "drop-console", "1"], "ok");
    assert!(
        hold.log_line("the console connection is gone", SOON),
        "{:?}",
        hold.seen
    );
    assert!(
        hold.log_line("the console is connected again", SOON),
        "{:?}",
        hold.seen
    );
    writer
        .sock
        .write_all(b"echo after-the-drop-$((6*7))\r")
        .unwrap();
    assert!(
        watcher.read_until("after-the-drop-42", SOON),
        "{}",
        watcher.text()
    );

    // SIGTERM (the worker's cancel): every connection closed, the board off, exit 0
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(hold.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        writer.closed_within(SOON),
        "the writer's connection is closed"
    );
    assert!(
        watcher.closed_within(SOON),
        "the watcher's connection is closed"
    );
    let deadline = Instant::now() + SOON;
    let status = loop {
        if let Some(s) = hold.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "basalt hold did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert_eq!(board.ctl(&["status"]).1.trim(), "off");
    let log: Vec<String> = std::mem::take(&mut hold.seen)
        .into_iter()
        .chain(hold.log.try_iter())
        .collect();
    let all = log.join("\n");
    assert!(all.contains("Job finished: Complete"), "{all}");
    assert!(all.contains("hold state: ready"), "{all}");
    assert!(
        !all.contains(CONSOLE_TOKEN) && !all.contains(WATCH_TOKEN),
        "a token in the log"
    );
    // the log on stdout is output.yaml's
    let file = std::fs::read_to_string(tmp.path().join("out/output.yaml")).unwrap();
    assert_eq!(file.lines().count(), log.len());
    // a connection after the end: nobody listens
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}
