//! Helpers for the `basalt-board` tests: start a board (killed on drop), talk to its
//! console with an expect-until-regex-with-deadline, inspect its processes, run a real
//! `in.tftpd`. Every wait is for a condition with a deadline; nothing sleeps to
//! synchronise.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use regex::bytes::Regex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// The `basalt-board` binary: cargo's own in this crate's tests; next to `basalt` in the
/// dispatcher's tests (built with `cargo build -p basalt-board` there if it is missing).
pub fn bin() -> PathBuf {
    if let Some(b) = option_env!("CARGO_BIN_EXE_basalt-board") {
        return PathBuf::from(b);
    }
    let Some(basalt) = option_env!("CARGO_BIN_EXE_basalt").map(PathBuf::from) else {
        panic!("neither the basalt nor the basalt-board binary is known to this test");
    };
    let board = basalt.with_file_name("basalt-board");
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        if board.is_file() {
            return;
        }
        let profile = basalt
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_string();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-q", "-p", "basalt-board", "--bin", "basalt-board"]);
        if profile == "release" {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo build -p basalt-board");
        assert!(status.success(), "cargo build -p basalt-board failed");
    });
    board
}

/// A generous deadline for things that must happen.
pub const SOON: Duration = Duration::from_secs(15);
/// How long we watch for things that must not happen.
pub const QUIET: Duration = Duration::from_millis(1500);

/// A running `basalt-board`, terminated (then killed) and reaped on drop.
pub struct Board {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub control: PathBuf,
    pub console: PathBuf,
    /// Lines the board printed on stdout at start.
    pub stdout: Vec<String>,
}

impl Board {
    /// Starts a board with its console on a unix socket and a control socket, both in a
    /// fresh temp dir; `extra` are more flags. Waits for `basalt-board: ready`.
    pub fn start(extra: &[&str]) -> Board {
        let dir = tempfile::tempdir().expect("tempdir");
        let console = dir.path().join("console.sock");
        let control = dir.path().join("control.sock");
        let mut args: Vec<String> = vec![
            "--unix".into(),
            console.display().to_string(),
            "--control".into(),
            control.display().to_string(),
            "--root-base".into(),
            dir.path().display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Board::spawn(dir, args, console, control)
    }

    /// Starts a board with the given console flags (e.g. `--telnet 0`).
    pub fn start_with_console(console_args: &[&str], extra: &[&str]) -> Board {
        let dir = tempfile::tempdir().expect("tempdir");
        let control = dir.path().join("control.sock");
        let mut args: Vec<String> = console_args.iter().map(|s| s.to_string()).collect();
        args.extend([
            "--control".to_string(),
            control.display().to_string(),
            "--root-base".into(),
            dir.path().display().to_string(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let console = dir.path().join("unused");
        Board::spawn(dir, args, console, control)
    }

    fn spawn(
        dir: tempfile::TempDir,
        args: Vec<String>,
        console: PathBuf,
        control: PathBuf,
    ) -> Board {
        // The board's own log goes to a file, shown when a test fails.
        let log = std::fs::File::create(dir.path().join("board.log")).expect("log file");
        let mut child = Command::new(bin())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn basalt-board");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut board = Board {
            child,
            dir,
            control,
            console,
            stdout: Vec::new(),
        };
        let deadline = Instant::now() + SOON;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let ready = line == "basalt-board: ready";
                    board.stdout.push(line);
                    if ready {
                        break;
                    }
                }
                Err(e) => panic!("board not ready ({e}); printed {:?}", board.stdout),
            }
        }
        board
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The telnet address the board printed (`--telnet`).
    pub fn telnet_addr(&self) -> SocketAddr {
        self.stdout
            .iter()
            .find_map(|l| l.strip_prefix("basalt-board: console telnet "))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no telnet address in {:?}", self.stdout))
    }

    /// Writes `DIR/board.jinja2`, a basalt-board device dictionary of this board: its telnet
    /// console, power on/off and reset through its control socket. Returns its path.
    pub fn write_dictionary(&self, dir: &Path) -> PathBuf {
        let addr = self.telnet_addr();
        let bin = bin();
        let bin = bin.display();
        let ctl = self.control.display();
        let dict = dir.join("board.jinja2");
        std::fs::write(
            &dict,
            format!(
                "{{% extends 'basalt-board.jinja2' %}}\n\
                 {{% set connection_command = 'telnet {} {}' %}}\n\
                 {{% set power_on_command = '{bin} ctl --control {ctl} on' %}}\n\
                 {{% set power_off_command = '{bin} ctl --control {ctl} off' %}}\n\
                 {{% set hard_reset_command = '{bin} ctl --control {ctl} reset' %}}\n",
                addr.ip(),
                addr.port()
            ),
        )
        .expect("writing the board's dictionary");
        dict
    }

    /// Runs `basalt-board ctl --control ... ARGS`; returns (exit success, stdout, stderr).
    pub fn ctl(&self, args: &[&str]) -> (bool, String, String) {
        ctl(&self.control, args)
    }

    /// `ctl` that must answer `expected`.
    pub fn ctl_ok(&self, args: &[&str], expected: &str) {
        let (ok, out, err) = self.ctl(args);
        assert!(ok, "ctl {args:?} failed: {out} {err}");
        assert_eq!(out.trim(), expected, "ctl {args:?}");
    }

    /// Connects to the unix console.
    pub async fn connect(&self) -> Console<UnixStream> {
        let deadline = Instant::now() + SOON;
        loop {
            match UnixStream::connect(&self.console).await {
                Ok(s) => return Console::new(s),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot connect to {}: {e}", self.console.display()),
            }
        }
    }

    /// Connects to the telnet console.
    pub async fn connect_telnet(&self) -> Console<TcpStream> {
        let s = TcpStream::connect(self.telnet_addr())
            .await
            .expect("connect telnet");
        Console::new(s)
    }

    /// The board's descendants (children, grandchildren, ...), zombies included.
    pub fn descendants(&self) -> Vec<(i32, char, String)> {
        descendants(self.pid())
    }

    /// Waits until the board has no descendants (after power off they must be gone).
    pub fn assert_no_descendants(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let d = self.descendants();
            if d.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes left behind by the board: {d:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The private directories under the board's root base.
    pub fn private_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path())
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("basalt-board-"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// SIGTERM, and waits for a clean exit; returns whether it exited by itself in time.
    pub fn terminate(&mut self) -> bool {
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("board.log")).unwrap_or_default();
            eprintln!("--- basalt-board log (pid {}):\n{log}", self.pid());
        }
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if !self.terminate() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `basalt-board ctl --control PATH ARGS...`
pub fn ctl(control: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .arg("ctl")
        .arg("--control")
        .arg(control)
        .args(args)
        .output()
        .expect("run ctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Reads `/proc/PID/stat`: (ppid, state, comm).
fn stat(pid: i32) -> Option<(i32, char, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((ppid, state, comm))
}

/// All descendants of `root`: (pid, state, comm).
pub fn descendants(root: i32) -> Vec<(i32, char, String)> {
    let procs: Vec<(i32, i32, char, String)> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
                .filter_map(|pid| stat(pid).map(|(ppid, st, comm)| (pid, ppid, st, comm)))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (pid, ppid, st, comm) in &procs {
            if *ppid == p {
                out.push((*pid, *st, comm.clone()));
                frontier.push(*pid);
            }
        }
    }
    out
}

/// Why an expectation failed.
#[derive(Debug)]
pub enum ExpectError {
    /// The deadline passed; what was read (and not consumed) so far.
    Timeout(String),
    /// The connection closed; what was read.
    Closed(String),
}

/// A console connection with an expect engine.
pub struct Console<S> {
    stream: S,
    buf: Vec<u8>,
    /// Everything ever read (for diagnostics and byte-level checks).
    pub transcript: Vec<u8>,
    eof: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Console<S> {
    pub fn new(stream: S) -> Self {
        Console {
            stream,
            buf: Vec::new(),
            transcript: Vec::new(),
            eof: false,
        }
    }

    /// Reads until `pattern` matches the unconsumed input or `within` passes; returns the
    /// text up to the end of the match (consumed).
    pub async fn expect_within(
        &mut self,
        pattern: &str,
        within: Duration,
    ) -> Result<String, ExpectError> {
        let re = Regex::new(pattern).expect("regex");
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(m) = re.find(&self.buf) {
                let end = m.end();
                let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end);
                return Ok(text);
            }
            if self.eof {
                return Err(ExpectError::Closed(
                    String::from_utf8_lossy(&self.buf).into_owned(),
                ));
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => {
                    return Err(ExpectError::Timeout(
                        String::from_utf8_lossy(&self.buf).into_owned(),
                    ))
                }
                Ok(Ok(0)) | Ok(Err(_)) => self.eof = true,
                Ok(Ok(n)) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.transcript.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }

    /// `expect_within` with [`SOON`], panicking with the transcript tail on failure.
    pub async fn expect(&mut self, pattern: &str) -> String {
        match self.expect_within(pattern, SOON).await {
            Ok(t) => t,
            Err(e) => panic!(
                "expected /{pattern}/: {e:?}\n--- last output:\n{}",
                self.tail()
            ),
        }
    }

    /// Asserts that `pattern` does NOT show up within `within`.
    pub async fn expect_absent(&mut self, pattern: &str, within: Duration) {
        match self.expect_within(pattern, within).await {
            Ok(t) => panic!("/{pattern}/ showed up but must not: {t}"),
            Err(ExpectError::Timeout(_)) => {}
            Err(ExpectError::Closed(t)) => panic!("console closed while watching /{pattern}/: {t}"),
        }
    }

    /// Waits until the board closes the connection; returns the unconsumed output.
    pub async fn expect_closed(&mut self, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        while !self.eof {
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!(
                    "connection still open after {within:?}: {}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(Ok(0)) | Ok(Err(_)) => self.eof = true,
                Ok(Ok(n)) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.transcript.extend_from_slice(&chunk[..n]);
                }
            }
        }
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    pub async fn send(&mut self, data: &[u8]) {
        self.stream.write_all(data).await.expect("send to console");
    }

    /// Sends a line ending with `\r` (as a terminal's Enter).
    pub async fn line(&mut self, text: &str) {
        self.send(format!("{text}\r").as_bytes()).await;
    }

    /// Sends a U-Boot command and waits for the next prompt; returns the output.
    pub async fn uboot(&mut self, cmd: &str) -> String {
        self.line(cmd).await;
        self.expect("=> ").await
    }

    pub fn tail(&self) -> String {
        let start = self.transcript.len().saturating_sub(1500);
        String::from_utf8_lossy(&self.transcript[start..]).into_owned()
    }
}

/// Powers the board on, interrupts autoboot, returns at the `=> ` prompt.
pub async fn to_uboot_prompt(board: &Board) -> Console<UnixStream> {
    let mut con = board.connect().await;
    board.ctl_ok(&["on"], "ok");
    con.expect("Hit any key to stop autoboot: +\\d").await;
    con.send(b" ").await;
    con.expect("=> ").await;
    con
}

/// Boots the stand-in kernel from the prompt and waits for the shell prompt.
pub async fn boot_to_shell<S: AsyncRead + AsyncWrite + Unpin>(con: &mut Console<S>) {
    con.line("booti 0x00000000 - ${fdtcontroladdr}").await;
    con.expect("Starting kernel").await;
    con.expect("Linux version 6\\.1\\.0").await;
    con.expect("/ # ").await;
}

/// A real `in.tftpd` (tftpd-hpa) in the foreground on 127.0.0.1, serving a temp dir;
/// killed and reaped on drop.
pub struct Tftpd {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Tftpd {
    /// Starts it (as root, as CI runs: `-s` chroots into the served directory and the
    /// server then runs as user `tftp`, as Debian's tftpd-hpa service does; basalt gives a
    /// job's TFTP directory to that user's group, `--tftp-user`).
    pub fn start() -> Tftpd {
        let bin = ["/usr/sbin/in.tftpd", "/sbin/in.tftpd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("in.tftpd not found: install tftpd-hpa (scripts/install-deps.sh)");
        let dir = tempfile::tempdir().expect("tempdir");
        // in.tftpd drops to user tftp: the served root must be readable by others.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        // A free port: bind, note, release (then in.tftpd binds it).
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .expect("free udp port");
        let mut cmd = Command::new(bin);
        cmd.args(["-L", "-u", "tftp", "-a", &format!("127.0.0.1:{port}"), "-s"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().expect("spawn in.tftpd");
        let t = Tftpd { child, dir, port };
        t.wait_listening();
        t
    }

    /// Waits until something listens on the UDP port (in.tftpd bound it).
    fn wait_listening(&self) {
        let deadline = Instant::now() + SOON;
        let needle = format!("0100007F:{:04X}", self.port);
        loop {
            let udp = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
            if udp
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(needle.as_str()))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "in.tftpd does not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes a world-readable file to serve.
    pub fn put(&self, name: &str, data: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        std::fs::write(&p, data).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
}

impl Drop for Tftpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
