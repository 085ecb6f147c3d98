//! `basalt-worker` against a master made of basalt's own pieces (CURVE ROUTER with the ZAP
//! handler, `basalt-proto` messages, `basalt_master::logs` for the store): the QEMU demo job is
//! started, its log arrives exactly once although the master is killed mid-job and started
//! again from its disk, and its end arrives with its results; a canceled job ends Incomplete
//! (Canceled).

mod common;

use basalt_link::cert::Keypair;
use basalt_link::zap;
use basalt_master::logs::JobLogFile;
use basalt_proto::{
    decode, encode, Cancel, End, EndAck, ErrorType, HelloRequired, JobId, JobResume, LogAck,
    MasterMsg, Outcome, ProtocolVersion, Start, Welcome, WorkerMsg,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The QEMU demo job (with `step` first in its test) and its rendered device.
fn demo(step: Option<&str>) -> (String, String) {
    let definition = common::demo_job(step);
    let device = common::demo_device(&definition);
    (definition, device)
}

/// A master as small as the protocol allows, on `port` (0: any).
struct Master {
    _ctx: zmq::Context,
    router: zmq::Socket,
    _zap: zap::ZapHandler,
    port: u16,
    /// Connections that said hello.
    known: Vec<Vec<u8>>,
}

impl Master {
    fn start(certs: &Path, key: &Keypair, port: u16) -> Master {
        let ctx = zmq::Context::new();
        let handler = zap::start(&ctx, certs.join("workers"), |_| {}).unwrap();
        let router =
            zap::server(&ctx, zmq::ROUTER, key, &format!("tcp://127.0.0.1:{port}")).unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        let port = endpoint.rsplit(':').next().unwrap().parse().unwrap();
        Master {
            _ctx: ctx,
            router,
            _zap: handler,
            port,
            known: Vec::new(),
        }
    }

    fn recv(&self, ms: i64) -> Option<(Vec<u8>, WorkerMsg)> {
        if self.router.poll(zmq::POLLIN, ms).ok()? == 0 {
            return None;
        }
        let mut frames = self.router.recv_multipart(0).ok()?;
        let body = frames.pop()?;
        Some((frames.remove(0), decode(&body).expect("a worker message")))
    }

    fn send(&self, to: &[u8], msg: impl Into<MasterMsg>) {
        let bytes = encode(&msg.into());
        self.router
            .send_multipart([to, bytes.as_slice()], 0)
            .unwrap();
    }
}

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Keys for a master and worker `w1`, and the worker daemon started against `port`.
fn setup(dir: &Path) -> (PathBuf, Keypair) {
    let certs = dir.join("certs");
    let master = Keypair::generate();
    master.write(&certs, "master").unwrap();
    Keypair::generate()
        .write(&certs.join("workers"), "w1")
        .unwrap();
    (certs, master)
}

fn start_worker(dir: &Path, certs: &Path, port: u16) -> Worker {
    let child = Command::new(env!("CARGO_BIN_EXE_basalt-worker"))
        .args(["--name", "w1", "--master"])
        .arg(format!("tcp://127.0.0.1:{port}"))
        .arg("--master-key")
        .arg(certs.join("master.key"))
        .arg("--key")
        .arg(certs.join("workers/w1.key_secret"))
        .arg("--state-dir")
        .arg(dir.join("worker"))
        .arg("--tftp-root")
        .arg("/var/tmp")
        .spawn()
        .unwrap();
    Worker(child)
}

fn welcome(resume: Vec<JobResume>) -> Welcome {
    Welcome {
        version: ProtocolVersion::CURRENT,
        heartbeat_interval_secs: 1,
        resume,
        discard: Vec::new(),
        max_batch_bytes: basalt_proto::DEFAULT_MAX_BATCH_BYTES,
    }
}

/// Serves the worker until the job's End can be stored (returned with the connection, not yet
/// acknowledged) or `stop_after` records are in (`None`: the master "dies"), storing its log
/// in `log`.
fn serve(
    m: &mut Master,
    log: &mut JobLogFile,
    start: &Start,
    started: &mut bool,
    stop_after: Option<u64>,
    deadline: Instant,
    on_record: &mut dyn FnMut(&Master, &[u8], &str),
) -> Option<(Vec<u8>, End)> {
    let mut pending_end: Option<End> = None;
    while Instant::now() < deadline {
        let Some((id, msg)) = m.recv(100) else {
            continue;
        };
        if !matches!(msg, WorkerMsg::Hello(_)) && !m.known.contains(&id) {
            m.send(&id, HelloRequired {});
            continue;
        }
        match msg {
            WorkerMsg::Hello(h) => {
                m.known.push(id.clone());
                let resume = h
                    .jobs
                    .iter()
                    .map(|j| JobResume {
                        job_id: j.job_id,
                        next_seq: log.commit().seq + 1,
                    })
                    .collect();
                m.send(&id, welcome(resume));
                if !*started {
                    *started = true;
                    m.send(&id, start.clone());
                }
            }
            WorkerMsg::LogBatch(b) => {
                let lines: Vec<String> = b.records.iter().map(|r| r.line.clone()).collect();
                let (seq, resend) = match log.append(b.first_seq, &lines) {
                    Ok(c) => (c.seq, false),
                    Err(basalt_master::logs::LogError::Gap { .. }) => (log.commit().seq, true),
                    Err(e) => panic!("{e}"),
                };
                for l in &lines {
                    on_record(m, &id, l);
                }
                m.send(
                    &id,
                    LogAck {
                        job_id: b.job_id,
                        seq,
                        resend,
                    },
                );
                if stop_after.is_some_and(|n| seq >= n) {
                    return None;
                }
            }
            WorkerMsg::End(e) => pending_end = Some(e),
            _ => {}
        }
        // an end is stored once every record before it is
        if let Some(e) = pending_end.take() {
            if log.commit().seq == e.last_seq {
                return Some((id, e));
            }
            pending_end = Some(e);
        }
    }
    panic!("the job did not end in time");
}

#[test]
fn a_job_log_arrives_exactly_once_across_a_master_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, key) = setup(dir.path());
    let mut m = Master::start(&certs, &key, 0);
    let port = m.port;
    let _worker = start_worker(dir.path(), &certs, port);
    let (definition, device_config) = demo(None);
    let start = Start {
        job_id: JobId(21),
        device: "qemu-amd64".into(),
        definition,
        device_config,
        job_timeout_secs: 300,
        health_check: false,
        coordinator: None,
        coordinator_token: None,
        lease: None,
    };
    let store = dir.path().join("master/jobs/21");
    let mut log = JobLogFile::open(&store).unwrap();
    let mut started = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut nothing = |_: &Master, _: &[u8], _: &str| {};
    // the master dies after 20 records, without a word
    assert!(serve(
        &mut m,
        &mut log,
        &start,
        &mut started,
        Some(20),
        deadline,
        &mut nothing
    )
    .is_none());
    drop(m);
    drop(log);
    // and comes back from its disk on the same port
    let mut m = Master::start(&certs, &key, port);
    let mut log = JobLogFile::open(&store).unwrap();
    assert!(log.commit().seq >= 20);
    let (id, end) = serve(
        &mut m,
        &mut log,
        &start,
        &mut started,
        None,
        deadline,
        &mut nothing,
    )
    .expect("the end");
    assert_eq!(end.outcome, Outcome::Complete, "{end:?}");
    assert!(end.results.contains("case: uname"), "{}", end.results);
    let stored = std::fs::read_to_string(store.join("output.yaml")).unwrap();
    // the worker's own copy, until it has the EndAck (then it removes it)
    let local = dir.path().join("worker/job-21/out/output.yaml");
    let local = std::fs::read_to_string(&local).unwrap();
    assert!(stored.lines().count() > 50);
    assert_eq!(
        stored, local,
        "the master's log is the worker's, record for record"
    );
    assert_eq!(stored.lines().count() as u64, end.last_seq);
    // acknowledged: the worker forgets the job
    m.send(&id, EndAck { job_id: end.job_id });
    let job_dir = dir.path().join("worker/job-21");
    let gone = Instant::now() + Duration::from_secs(10);
    while job_dir.exists() && Instant::now() < gone {
        let _ = m.recv(50);
    }
    assert!(!job_dir.exists(), "the worker kept the acknowledged job");
    let mut seen = std::collections::HashSet::new();
    for l in stored.lines() {
        assert!(seen.insert(l), "record stored twice: {l}");
    }
}

#[test]
fn a_canceled_job_ends_incomplete_canceled() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, key) = setup(dir.path());
    let mut m = Master::start(&certs, &key, 0);
    let _worker = start_worker(dir.path(), &certs, m.port);
    let (definition, device_config) = demo(Some("sleep 600"));
    let start = Start {
        job_id: JobId(22),
        device: "qemu-amd64".into(),
        definition,
        device_config,
        job_timeout_secs: 300,
        health_check: false,
        coordinator: None,
        coordinator_token: None,
        lease: None,
    };
    let mut log = JobLogFile::open(&dir.path().join("master/jobs/22")).unwrap();
    let mut started = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut canceled = false;
    let mut cancel = |m: &Master, id: &[u8], line: &str| {
        if !canceled && line.contains("sleep 600") && line.contains("\"lvl\": \"target\"") {
            canceled = true;
            m.send(id, Cancel { job_id: JobId(22) });
        }
    };
    let (_, end) = serve(
        &mut m,
        &mut log,
        &start,
        &mut started,
        None,
        deadline,
        &mut cancel,
    )
    .expect("the end");
    assert_eq!(end.outcome, Outcome::Incomplete);
    assert_eq!(end.error_type, Some(ErrorType::Canceled), "{end:?}");
}
