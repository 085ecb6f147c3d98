//! Test helpers: basalt's coordinator on a free loopback port, Debian's lava-coordinator
//! started on 127.0.0.1 with its own config file (killed on drop), and raw framed exchanges.
#![allow(dead_code)]

use basalt_coordinator::{serve, Config};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// LAVA's entry point.
pub const LAVA_COORDINATOR: &str = "/usr/bin/lava-coordinator";

/// basalt's coordinator, served on a tokio runtime of its own thread until dropped.
pub struct Basalt {
    pub addr: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Basalt {
    pub fn start(config: Config) -> Basalt {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        runtime.spawn(serve(listener, config));
        Basalt {
            addr,
            runtime: Some(runtime),
        }
    }
}

impl Drop for Basalt {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Debian's lava-coordinator (`/usr/bin/lava-coordinator --config F`), bound to 127.0.0.1
/// (the script binds 0.0.0.0 whatever the config says: the launcher narrows `bind` to
/// loopback so no packet may leave the machine). Killed on drop.
pub struct Lava {
    pub addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

/// Runs LAVA's script with `socket.bind` limited to loopback.
const LAUNCHER: &str = r#"
import runpy, socket, sys
_bind = socket.socket.bind
def bind(self, addr):
    host, port = addr
    return _bind(self, ("127.0.0.1" if host in ("0.0.0.0", "") else host, port))
socket.socket.bind = bind
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"#;

impl Lava {
    /// Starts it on a free port with `poll_delay` in its config; waits until it accepts.
    pub fn start(poll_delay: u32) -> Lava {
        assert!(
            std::path::Path::new(LAVA_COORDINATOR).exists(),
            "{LAVA_COORDINATOR} is missing: install Debian's lava-coordinator (scripts/install-deps.sh)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("lava-coordinator.conf");
        std::fs::write(
            &conf,
            format!(
                r#"{{"port": {port}, "blocksize": 4096, "poll_delay": {poll_delay}, "coordinator_hostname": "127.0.0.1"}}"#
            ),
        )
        .unwrap();
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", LAUNCHER, LAVA_COORDINATOR, "--config"])
            .arg(&conf)
            .args(["--logfile", "-", "--loglevel", "INFO"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lava = Lava {
            addr: format!("127.0.0.1:{port}"),
            child,
            _dir: dir,
        };
        // its log says when it listens; then drain the log so that it never blocks
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("Ready to accept new connections") {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = lava.child.kill();
            panic!("lava-coordinator did not start");
        }
        lava
    }
}

impl Drop for Lava {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends raw bytes on a new connection (shutting the write side, as LAVA's client), returns
/// all the server wrote before closing.
pub fn exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(bytes).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// A frame of `json` (the length in characters, upper-case hex).
pub fn framed(json: &str) -> Vec<u8> {
    basalt_proto::coordinator::frame(json)
}

/// A LAVA client's request: the base message in LAVA's order, then `request` and `extra`.
pub fn lava_request(group: &str, client: &str, role: &str, request: &str, extra: &str) -> String {
    format!(
        r#"{{"port": 3079, "blocksize": 4096, "poll_delay": 1, "host": "127.0.0.1", "hostname": "worker-{client}", "client_name": "{client}", "group_name": "{group}", "role": "{role}", "request": "{request}"{extra}}}"#
    )
}

/// Polls `cond` until it holds or `within` passed.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::yield_now();
    }
    cond()
}
