//! Test support: a fake worker over the real ZeroMQ/CURVE link that holds boards for
//! reservations and answers at once: a lease Start is `hold_state` held (a console on
//! 127.0.0.1:7100), a boot is accepted then booting then ready (SSH on 127.0.0.1:7101), an
//! exec answers `ran: COMMAND` (exit status 1 when the command is `false`), a power-off is
//! accepted then held, a Cancel is an End (Canceled); a Start without a lease (a health
//! check) ends Complete at once. Every message from the master is kept for the test to look
//! at. Stopped and joined when dropped. Shared by the reservation tests and the bench.

#![allow(dead_code)] // not every test binary that includes this module calls each

use basalt_link::cert::{Keypair, PublicKey};
use basalt_proto::{
    decode, encode, Capability, Connection, ConsoleEndpoint, End, ErrorType, Heartbeat, Hello,
    HoldAction, HoldPhase, HoldReply, HoldResult, HoldState, JobId, MasterMsg, Outcome,
    ProtocolVersion, SshEndpoint, WorkerMsg,
};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The running fake worker.
pub struct FakeWorker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    seen: Arc<Mutex<Vec<MasterMsg>>>,
}

impl Drop for FakeWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a fake worker does.
#[derive(Clone, Copy, Debug)]
pub struct Behaviour {
    /// Offers the `reservations` capability.
    pub holds: bool,
    /// Answers a Cancel with an End.
    pub ends_on_cancel: bool,
}

impl Default for Behaviour {
    fn default() -> Behaviour {
        Behaviour {
            holds: true,
            ends_on_cancel: true,
        }
    }
}

impl FakeWorker {
    /// Worker `name` (its key admitted in `state_dir/certs/workers`) connected to the master's
    /// `endpoint`; returns once it is welcomed.
    pub fn start(
        state_dir: &Path,
        name: &str,
        endpoint: &str,
        master: &PublicKey,
        behaviour: Behaviour,
    ) -> FakeWorker {
        let key = Keypair::generate();
        key.write(&state_dir.join("certs/workers"), name)
            .expect("the worker's key");
        let (endpoint, master, name) = (endpoint.to_string(), *master, name.to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                run(
                    &key, &master, &endpoint, &name, behaviour, &stop, &seen, ready_tx,
                )
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the fake worker was not welcomed within 20 s");
        FakeWorker {
            stop,
            thread: Some(thread),
            seen,
        }
    }

    /// Every message the master sent so far.
    pub fn seen(&self) -> Vec<MasterMsg> {
        self.seen.lock().expect("seen").clone()
    }

    /// The first message that `what` picks, waiting up to `within` for it.
    pub fn wait_for(
        &self,
        what: impl Fn(&MasterMsg) -> bool,
        within: Duration,
    ) -> Option<MasterMsg> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(m) = self.seen().into_iter().find(|m| what(m)) {
                return Some(m);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    key: &Keypair,
    master: &PublicKey,
    endpoint: &str,
    name: &str,
    b: Behaviour,
    stop: &AtomicBool,
    seen: &Mutex<Vec<MasterMsg>>,
    ready: std::sync::mpsc::Sender<()>,
) {
    let ctx = zmq::Context::new();
    let Ok(socket) = basalt_link::zap::client(&ctx, zmq::DEALER, key, master, endpoint) else {
        return;
    };
    let send = |m: WorkerMsg| {
        let _ = socket.send(encode(&m), 0);
    };
    let mut capabilities = basalt_proto::Capabilities::new();
    capabilities.insert(Capability::QEMU);
    if b.holds {
        capabilities.insert(Capability::RESERVATIONS);
    }
    send(WorkerMsg::Hello(Hello {
        version: ProtocolVersion::CURRENT,
        name: name.into(),
        software: None,
        capabilities,
        devices: Vec::new(),
        jobs: Vec::new(),
    }));
    let console = ConsoleEndpoint {
        host: "127.0.0.1".into(),
        port: 7100,
    };
    let held = |job: JobId, state: HoldPhase, ssh: bool| {
        WorkerMsg::HoldState(HoldState {
            job_id: job,
            state,
            connection: Connection {
                console: Some(console.clone()),
                ssh: ssh.then(|| SshEndpoint {
                    host: "127.0.0.1".into(),
                    port: 7101,
                    user: "root".into(),
                }),
            },
            reason: None,
        })
    };
    let end = |job: JobId, outcome: Outcome| {
        WorkerMsg::End(End {
            job_id: job,
            outcome,
            error_type: (outcome == Outcome::Incomplete).then_some(ErrorType::Canceled),
            error_msg: None,
            cause: None,
            results: String::new(),
            last_seq: 0,
            description: None,
        })
    };
    let mut beat = Instant::now();
    let mut welcomed = false;
    while !stop.load(Ordering::SeqCst) {
        if beat.elapsed() > Duration::from_millis(500) {
            send(WorkerMsg::Heartbeat(Heartbeat::default()));
            beat = Instant::now();
        }
        if socket.poll(zmq::POLLIN, 20).unwrap_or(0) == 0 {
            continue;
        }
        let Ok(bytes) = socket.recv_bytes(0) else {
            continue;
        };
        let Ok(msg) = decode::<MasterMsg>(&bytes) else {
            continue;
        };
        seen.lock().expect("seen").push(msg.clone());
        match msg {
            MasterMsg::Welcome(_) if !welcomed => {
                welcomed = true;
                let _ = ready.send(());
            }
            MasterMsg::Start(s) if s.lease.is_some() => {
                send(held(s.job_id, HoldPhase::Held, false))
            }
            MasterMsg::Start(s) => send(end(s.job_id, Outcome::Complete)),
            MasterMsg::Hold(h) => {
                let reply = |result| {
                    WorkerMsg::HoldReply(HoldReply {
                        job_id: h.job_id,
                        request_id: h.request_id,
                        result,
                    })
                };
                match h.action {
                    HoldAction::Boot { .. } => {
                        send(reply(HoldResult::Accepted));
                        send(held(h.job_id, HoldPhase::Booting, false));
                        send(held(h.job_id, HoldPhase::Ready, true));
                    }
                    HoldAction::Exec { command, .. } => send(reply(HoldResult::Exec {
                        output: format!("ran: {command}\n"),
                        exit_status: i32::from(command.trim() == "false"),
                        truncated: false,
                    })),
                    HoldAction::PowerOff => {
                        send(reply(HoldResult::Accepted));
                        send(held(h.job_id, HoldPhase::Held, false));
                    }
                }
            }
            MasterMsg::Cancel(c) if b.ends_on_cancel => send(end(c.job_id, Outcome::Incomplete)),
            _ => {}
        }
    }
}
