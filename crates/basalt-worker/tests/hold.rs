//! `basalt-worker` holding a board for a reservation, against a fake master (CURVE ROUTER
//! with the ZAP handler, `basalt-proto` messages): a Start with a lease makes it hold a
//! `basalt-board` U-Boot device (`basalt hold`, a console port from `--console-ports`); a
//! boot hold boots it to its shell, an exec hold runs a command; `hold_state` and
//! `hold_reply` come back; a hold for a job it does not hold is refused; Cancel ends the hold:
//! the board is powered off and End follows.
//!
//! Needs `cargo build --workspace` (it runs the basalt and basalt-board binaries next to
//! basalt-worker's).

mod common;

use basalt_link::cert::Keypair;
use basalt_link::zap;
use basalt_proto::{
    decode, encode, Cancel, End, Hold, HoldAction, HoldPhase, HoldResult, HoldState, JobId, Lease,
    LogAck, MasterMsg, Outcome, ProtocolVersion, Start, Welcome, WorkerMsg,
};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SOON: Duration = Duration::from_secs(60);

struct Master {
    _ctx: zmq::Context,
    router: zmq::Socket,
    _zap: zap::ZapHandler,
    port: u16,
    worker: Option<Vec<u8>>,
}

impl Master {
    fn start(certs: &Path, key: &Keypair) -> Master {
        let ctx = zmq::Context::new();
        let handler = zap::start(&ctx, certs.join("workers"), |_| {}).unwrap();
        let router = zap::server(&ctx, zmq::ROUTER, key, "tcp://127.0.0.1:0").unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        let port = endpoint.rsplit(':').next().unwrap().parse().unwrap();
        Master {
            _ctx: ctx,
            router,
            _zap: handler,
            port,
            worker: None,
        }
    }

    fn send(&self, msg: impl Into<MasterMsg>) {
        let to = self.worker.as_ref().expect("a worker said hello");
        let bytes = encode(&msg.into());
        self.router
            .send_multipart([to.as_slice(), bytes.as_slice()], 0)
            .unwrap();
    }

    /// Serves the link (hello, log acks) until a message `f` takes, within `within`.
    fn until<T>(
        &mut self,
        what: &str,
        within: Duration,
        mut f: impl FnMut(&WorkerMsg) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if self.router.poll(zmq::POLLIN, 100).unwrap_or(0) == 0 {
                continue;
            }
            let mut frames = self.router.recv_multipart(0).unwrap();
            let body = frames.pop().unwrap();
            let msg: WorkerMsg = decode(&body).expect("a worker message");
            match &msg {
                WorkerMsg::Hello(h) => {
                    assert!(
                        h.capabilities.iter().any(|c| c.name() == "reservations"),
                        "the worker claims reservations: {:?}",
                        h.capabilities
                    );
                    self.worker = Some(frames.remove(0));
                    self.send(Welcome {
                        version: ProtocolVersion::CURRENT,
                        heartbeat_interval_secs: 1,
                        resume: Vec::new(),
                        discard: Vec::new(),
                        max_batch_bytes: basalt_proto::DEFAULT_MAX_BATCH_BYTES,
                    });
                }
                WorkerMsg::LogBatch(b) => self.send(LogAck {
                    job_id: b.job_id,
                    seq: b.first_seq + b.records.len() as u64 - 1,
                    resend: false,
                }),
                _ => {}
            }
            if let Some(t) = f(&msg) {
                return t;
            }
            if !matches!(msg, WorkerMsg::Heartbeat(_) | WorkerMsg::LogBatch(_)) {
                seen.push(format!("{msg:?}"));
            }
        }
        panic!("{what}: not within {within:?}; seen {seen:?}");
    }

    fn state(&mut self, phase: HoldPhase) -> HoldState {
        self.until(
            &format!("hold_state {phase:?}"),
            Duration::from_secs(120),
            |m| match m {
                WorkerMsg::HoldState(s) if s.state == phase => Some(s.clone()),
                WorkerMsg::HoldState(s) if s.state == HoldPhase::Failed => {
                    panic!("failed: {:?}", s.reason)
                }
                _ => None,
            },
        )
    }

    fn reply(&mut self, id: u64) -> HoldResult {
        self.until(&format!("hold_reply {id}"), SOON, |m| match m {
            WorkerMsg::HoldReply(r) if r.request_id == id => Some(r.result.clone()),
            _ => None,
        })
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin(name: &str) -> PathBuf {
    let b = PathBuf::from(env!("CARGO_BIN_EXE_basalt-worker")).with_file_name(name);
    assert!(
        b.is_file(),
        "{} is missing: cargo build --workspace",
        b.display()
    );
    b
}

/// basalt-board with a telnet console and a control socket in `dir`; returns it, its telnet
/// port and its control socket.
fn board(dir: &Path) -> (Proc, u16, PathBuf) {
    let control = dir.join("board.sock");
    let mut child = Command::new(bin("basalt-board"))
        .args([
            "--telnet",
            "0",
            "--speed",
            "0",
            "--bootdelay",
            "1",
            "--control",
        ])
        .arg(&control)
        .arg("--root-base")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Proc(child);
    let mut port = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("basalt-board: console telnet ") {
            port = a.rsplit(':').next().and_then(|p| p.parse().ok());
        }
        if line == "basalt-board: ready" {
            break;
        }
    }
    (child, port.expect("the board's telnet port"), control)
}

fn board_status(control: &Path) -> String {
    let out = Command::new(bin("basalt-board"))
        .args(["ctl", "--control"])
        .arg(control)
        .arg("status")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const BOOT: &str = "device_type: basalt-board\njob_name: hold boot\ntimeouts:\n  job:\n    minutes: 3\n  action:\n    minutes: 1\n\
visibility: public\npriority: medium\nactions:\n- boot:\n    method: minimal\n    prompts:\n    - '/ # '\n";

#[test]
fn a_lease_holds_a_board_that_boots_runs_a_command_and_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let key = Keypair::generate();
    key.write(&certs, "master").unwrap();
    Keypair::generate()
        .write(&certs.join("workers"), "w1")
        .unwrap();
    let mut m = Master::start(&certs, &key);
    let (_board, telnet, control) = board(dir.path());
    let ctl = format!(
        "{} ctl --control {}",
        bin("basalt-board").display(),
        control.display()
    );
    let dict = dir.path().join("board-01.jinja2");
    std::fs::write(
        &dict,
        format!(
            "{{% extends 'basalt-board.jinja2' %}}\n\
             {{% set connection_command = 'telnet 127.0.0.1 {telnet}' %}}\n\
             {{% set power_on_command = '{ctl} on' %}}\n\
             {{% set power_off_command = '{ctl} off' %}}\n\
             {{% set hard_reset_command = '{ctl} reset' %}}\n"
        ),
    )
    .unwrap();
    let device = basalt::device::Device::load(
        &dict,
        &[common::repo().join("config/device-types")],
        &Default::default(),
    )
    .unwrap();
    // a console port of its own range: a free one now
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let _worker = Proc(
        Command::new(env!("CARGO_BIN_EXE_basalt-worker"))
            .args(["--name", "w1", "--master"])
            .arg(format!("tcp://127.0.0.1:{}", m.port))
            .arg("--master-key")
            .arg(certs.join("master.key"))
            .arg("--key")
            .arg(certs.join("workers/w1.key_secret"))
            .arg("--state-dir")
            .arg(dir.path().join("worker"))
            .arg("--tftp-root")
            .arg(dir.path())
            .arg("--console-ports")
            .arg(format!("{port}-{port}"))
            .args(["--advertise-host", "rack-1.example"])
            .spawn()
            .unwrap(),
    );
    m.until("hello", SOON, |msg| {
        matches!(msg, WorkerMsg::Hello(_)).then_some(())
    });
    // a hold for a job the worker does not hold
    m.send(Hold {
        job_id: JobId(99),
        request_id: 1,
        action: HoldAction::PowerOff,
    });
    assert!(matches!(m.reply(1), HoldResult::Error { ref error } if error.contains("job 99")));

    let job = JobId(41);
    m.send(Start {
        job_id: job,
        device: "board-01".into(),
        definition: String::new(),
        device_config: device.text.clone(),
        job_timeout_secs: 60,
        health_check: false,
        coordinator: None,
        coordinator_token: None,
        lease: Some(Lease {
            reservation_id: 41,
            console_token: "console-token-41".into(),
            watch_token: "watch-token-41".into(),
            ssh_public_key: None,
            ssh_user: None,
            forward_ssh: false,
        }),
    });
    let held = m.state(HoldPhase::Held);
    let console = held.connection.console.expect("the console endpoint");
    assert_eq!(
        (console.host.as_str(), console.port),
        ("rack-1.example", port)
    );
    // the lease file is private
    let lease = dir.path().join("worker/job-41/lease.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&lease).unwrap().permissions().mode() & 0o777,
        0o600
    );

    m.send(Hold {
        job_id: job,
        request_id: 2,
        action: HoldAction::Boot {
            definition: BOOT.into(),
            timeout_secs: 120,
        },
    });
    assert_eq!(m.reply(2), HoldResult::Accepted);
    m.state(HoldPhase::Booting);
    m.state(HoldPhase::Ready);
    m.send(Hold {
        job_id: job,
        request_id: 3,
        action: HoldAction::Exec {
            command: "echo hi; false".into(),
            timeout_secs: 30,
        },
    });
    assert_eq!(
        m.reply(3),
        HoldResult::Exec {
            output: "hi\n".into(),
            exit_status: 1,
            truncated: false
        }
    );
    assert_eq!(board_status(&control), "on");

    // release: Cancel ends the hold, the board is off, End follows
    m.send(Cancel { job_id: job });
    let end: End = m.until("end", SOON, |msg| match msg {
        WorkerMsg::End(e) if e.job_id == job => Some(e.clone()),
        _ => None,
    });
    assert_eq!(end.outcome, Outcome::Complete, "{end:?}");
    assert_eq!(board_status(&control), "off");
    let log = std::fs::read_to_string(dir.path().join("worker/job-41/out/output.yaml")).unwrap();
    assert!(log.contains("hold state: ready"), "{log}");
    assert!(!log.contains("console-token-41") && !log.contains("watch-token-41"));
    // the port is free again once the hold is over
    let deadline = Instant::now() + SOON;
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the console port stays taken");
        std::thread::sleep(Duration::from_millis(20));
    }
}
