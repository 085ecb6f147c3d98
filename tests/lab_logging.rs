//! The daemons' logging (docs/config.md, "Logging"): `basalt-master` and `basalt-worker`
//! started as systemd starts them (`JOURNAL_STREAM` naming their stderr, `INVOCATION_ID`) but
//! with no journal socket write their usual lines on stderr; with a journal socket (a fake
//! journald, a datagram socket the test binds, mounted at `/run/systemd/journal/socket` in a
//! private mount namespace: root, as CI runs) the records reach it with the daemon's
//! `SYSLOG_IDENTIFIER`, syslog priorities and the subject as a journal field, and not stderr.
//!
//! Needs the workspace's binaries (`cargo build --workspace --bins`).

mod common;

use common::{bin_dir, TempDir};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

fn binary(name: &str) -> PathBuf {
    let b = bin_dir().join(name);
    assert!(
        b.is_file(),
        "{}: not built (nice cargo build --workspace --bins)",
        b.display()
    );
    b
}

/// A daemon, stopped with SIGTERM (then SIGKILL) and reaped when dropped; its stderr's lines
/// arrive on a channel.
struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Daemon {
    /// Starts `cmd` with stderr on a pipe that `JOURNAL_STREAM` names, as systemd sets it.
    fn start(mut cmd: Command) -> Daemon {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        let meta = std::fs::File::from(std::os::fd::OwnedFd::from(
            reader.try_clone().expect("pipe's reader"),
        ))
        .metadata()
        .expect("fstat of the pipe");
        cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .env("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
            .env_remove("BASALT_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(writer);
        let child = cmd.spawn().expect("starting the daemon");
        // the parent's copy of the writer goes with the command: EOF when the daemon exits
        drop(cmd);
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first stderr line containing `text`, waiting up to 20 s; `None` at the deadline or
    /// when stderr closes.
    fn line_with(&mut self, text: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        if let Some(l) = self.seen.iter().find(|l| l.contains(text)) {
            return Some(l.clone());
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(text) {
                        return Some(l);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 10 s); its exit status and everything
    /// it wrote on stderr.
    fn stop(&mut self) -> (Option<i32>, String) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut code = None;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                code = s.code();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // the pipe is closed now: the rest of stderr
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        (code, self.seen.join("\n"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn master(dir: &Path, cmd: Command) -> Command {
    let mut cmd = cmd;
    cmd.arg(binary("basalt-master"))
        .arg("--state-dir")
        .arg(dir)
        .args(["--http", "127.0.0.1:0", "--workers", "tcp://127.0.0.1:0"])
        .args(["--coordinator", "127.0.0.1:0"]);
    cmd
}

/// A worker named w1 with keys in `dir`, pointed at a master that is not there (it logs its
/// start and waits).
fn worker(dir: &Path, cmd: Command) -> Command {
    let key = basalt_link::cert::Keypair::generate();
    let (_, secret) = key.write(dir, "w1").expect("the worker's keys");
    let master = basalt_link::cert::Keypair::generate();
    let (public, _) = master.write(dir, "master").expect("the master's keys");
    let mut cmd = cmd;
    cmd.arg(binary("basalt-worker"))
        .args(["--name", "w1", "--master", "tcp://127.0.0.1:9"])
        .arg("--master-key")
        .arg(public)
        .arg("--key")
        .arg(secret)
        .arg("--state-dir")
        .arg(dir.join("state"));
    cmd
}

/// `env` as the launcher: `cmd` runs the daemon's command line as given.
fn plain() -> Command {
    Command::new("env")
}

/// The daemon in a private mount namespace whose `/run` is an empty tmpfs with `journal`
/// (a directory) mounted at `/run/systemd/journal`, or none (no journal socket at all).
fn isolated(journal: Option<&Path>) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"]);
    cmd.arg(
        r#"mount -t tmpfs -o mode=0755 basalt-test /run && \
           if [ -n "$0" ]; then mkdir -p /run/systemd/journal && mount --bind "$0" /run/systemd/journal; fi && \
           exec "$@""#,
    );
    cmd.arg(
        journal
            .map(|j| j.as_os_str().to_owned())
            .unwrap_or_default(),
    );
    cmd
}

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The launcher for "no journal socket": this machine as it is when it has none, else a
/// private namespace without one (root).
fn without_journal() -> Option<Command> {
    if !Path::new(JOURNAL_SOCKET).exists() {
        Some(plain())
    } else if root() {
        Some(isolated(None))
    } else {
        eprintln!("skipped: {JOURNAL_SOCKET} exists here and hiding it needs root");
        None
    }
}

#[test]
fn the_master_under_systemd_without_a_journal_logs_its_usual_lines_on_stderr() {
    let Some(launcher) = without_journal() else {
        return;
    };
    let dir = TempDir::new("log-master");
    let mut m = Daemon::start(master(dir.path(), launcher));
    let api = m.line_with("API on ");
    let (code, err) = m.stop();
    let api = api.unwrap_or_else(|| panic!("no 'API on' line on stderr:\n{err}"));
    // what the lab's tools read: the text whole at the end of the line, no colours in a pipe
    let url = api.split("API on ").nth(1).unwrap_or_default();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/api/v0.2/"),
        "{api}"
    );
    assert!(
        api.contains(" INFO ") && api.contains("workers on tcp://127.0.0.1:"),
        "{api}"
    );
    assert!(!err.contains('\x1b'), "colours in a pipe:\n{err}");
    assert!(err.contains("new master key"), "{err}");
    assert!(err.contains("INFO basalt_master: stopped"), "{err}");
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn the_worker_under_systemd_without_a_journal_logs_its_usual_lines_on_stderr() {
    let Some(launcher) = without_journal() else {
        return;
    };
    let dir = TempDir::new("log-worker");
    let mut w = Daemon::start(worker(dir.path(), launcher));
    let start = w.line_with("connecting to tcp://127.0.0.1:9");
    let (code, err) = w.stop();
    let start = start.unwrap_or_else(|| panic!("no 'connecting to' line on stderr:\n{err}"));
    assert!(
        start.contains(" INFO basalt_worker::daemon: worker w1: connecting to"),
        "{start}"
    );
    // the subject is in the message, not repeated as a field on the terminal
    assert!(!err.contains("worker=w1"), "{err}");
    assert!(
        err.contains("worker w1: stopping: canceling 0 job(s)"),
        "{err}"
    );
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_bad_log_filter_stops_the_daemon_at_start_with_the_reason() {
    let dir = TempDir::new("log-filter");
    let mut cmd = master(dir.path(), plain());
    cmd.env("BASALT_LOG", "target/logs/install-deps.log");
    let out = cmd.output().expect("basalt-master");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--log-level") && err.contains("'target/logs/install-deps.log'"),
        "{err}"
    );
}

/// One record of journald's native protocol: `KEY=value\n`, or `KEY\n`, the value's length
/// (64-bit little-endian), the value and `\n` (what `tracing-journald` writes). `None` when it
/// does not parse.
fn fields(mut d: &[u8]) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let end = d.iter().position(|&b| b == b'\n')?;
        let line = &d[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            out.push((text(&line[..eq]), text(&line[eq + 1..])));
            d = &d[end + 1..];
        } else {
            let rest = &d[end + 1..];
            let len = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
            let value = rest.get(8..8 + len)?;
            out.push((
                String::from_utf8_lossy(line).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ));
            d = rest.get(8 + len + 1..)?;
        }
    }
    Some(out)
}

#[test]
fn under_systemd_with_a_journal_the_records_reach_it_with_their_fields() {
    if !root() {
        eprintln!("skipped: needs root (a private mount namespace for the fake journal socket)");
        return;
    }
    let dir = TempDir::new("log-journal");
    let journal = dir.path().join("journal");
    std::fs::create_dir(&journal).expect("journal dir");
    let socket = UnixDatagram::bind(journal.join("socket")).expect("the fake journal");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut w = Daemon::start(worker(dir.path(), isolated(Some(&journal))));
    // the records until the start line, for up to 20 s
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 64 * 1024];
    let has_start = |r: &[(String, String)]| {
        r.iter()
            .any(|(k, v)| k == "MESSAGE" && v.contains("connecting to"))
    };
    while Instant::now() < deadline && !records.iter().any(|r: &Vec<_>| has_start(r)) {
        if let Ok(n) = socket.recv(&mut buf) {
            let record = fields(&buf[..n]);
            records
                .push(record.unwrap_or_else(|| panic!("not journald's format: {:?}", &buf[..n])));
        }
    }
    let (code, err) = w.stop();
    let start = records
        .iter()
        .find(|r| has_start(r))
        .unwrap_or_else(|| panic!("no record of the start; records {records:?}; stderr:\n{err}"));
    let get = |k: &str| start.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    assert_eq!(get("SYSLOG_IDENTIFIER"), Some("basalt-worker"), "{start:?}");
    assert_eq!(get("PRIORITY"), Some("6"), "info is syslog's 6: {start:?}");
    assert_eq!(
        get("WORKER"),
        Some("w1"),
        "the subject as a field: {start:?}"
    );
    assert_eq!(get("TARGET"), Some("basalt_worker::daemon"), "{start:?}");
    // the journal has them, stderr does not
    assert!(!err.contains("connecting to"), "{err}");
    assert_eq!(code, Some(0), "{err}");
}
