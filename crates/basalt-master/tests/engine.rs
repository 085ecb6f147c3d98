//! The engine's view of jobs whose worker is gone: a job a previous master left running is lost
//! once its worker has stayed away for the heartbeat timeout, and a worker that comes back
//! without a job the store says it runs loses that job at once — unless it never said it runs
//! it (the Start crossed its hello): then the job is started again.

use basalt_link::cert::Keypair;
use basalt_link::zap;
use basalt_master::engine::{self, Config};
use basalt_master::model::{DeviceHealth, DeviceState, JobHealth, JobState, Priority};
use basalt_master::scheduler::Target;
use basalt_master::store::{Device, DeviceType, Job, NewJob, Store};
use basalt_proto::{encode, Capabilities, Hello, MasterMsg, ProtocolVersion, WorkerMsg};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A store with device `d1` on worker `w1` running job 1, as a master killed mid-job left it.
fn store_with_a_running_job() -> (Arc<Store>, u64) {
    store_with_a_job(true)
}

/// A store with device `d1` on worker `w1` and job 1 on it: Running, or only Scheduled (its
/// Start sent, the worker has not said it runs it).
fn store_with_a_job(running: bool) -> (Arc<Store>, u64) {
    let store = Store::memory().unwrap();
    store
        .put_device_type(&DeviceType {
            name: "qemu".into(),
            health_check: None,
        })
        .unwrap();
    store.add_worker("w1", "").unwrap();
    store
        .add_device(&Device {
            hostname: "d1".into(),
            device_type: "qemu".into(),
            worker: "w1".into(),
            description: String::new(),
            tags: Vec::new(),
            dictionary: Some("{% extends 'qemu.jinja2' %}".into()),
            state: DeviceState::Idle,
            health: DeviceHealth::Good,
            current_job: None,
        })
        .unwrap();
    let id = store
        .submit(
            &NewJob {
                submitter: "admin".into(),
                description: "left running".into(),
                definition: std::fs::read_to_string(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../config/jobs/demo-qemu.yaml"
                ))
                .unwrap(),
                target: Target::DeviceType("qemu".into()),
                tags: Vec::new(),
                priority: Priority::MEDIUM,
                health_check: false,
            },
            1,
        )
        .unwrap();
    store.schedule_job(id, "d1").unwrap();
    if running {
        store.job_running(id, 2).unwrap();
    }
    (Arc::new(store), id)
}

fn config(dir: &std::path::Path, heartbeat: Duration) -> Config {
    Config {
        state_dir: dir.to_path_buf(),
        workers: "tcp://127.0.0.1:*".into(),
        key: Keypair::generate(),
        heartbeat,
        device_types: Vec::new(),
        version: basalt_proto::ProtocolVersion::CURRENT,
        required_capabilities: basalt_proto::Capabilities::new(),
        anonymous_read: false,
        coordinator: "127.0.0.1:3079".into(),
        coordinator_token: None,
        max_lease: engine::DEFAULT_MAX_LEASE,
    }
}

async fn finished(store: &Store, id: u64, within: Duration) -> Job {
    let deadline = Instant::now() + within;
    loop {
        let job = store.job(id).unwrap().unwrap();
        if job.state == JobState::Finished {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} still {:?}", job.state);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn assert_lost(store: &Store, job: &Job) {
    assert_eq!(job.health, JobHealth::Incomplete);
    assert_eq!(job.error_type.as_deref(), Some("Infrastructure"));
    assert!(
        job.error_msg
            .as_deref()
            .unwrap_or("")
            .starts_with("worker lost"),
        "{:?}",
        job.error_msg
    );
    let d = store.device("d1").unwrap().unwrap();
    assert_eq!(d.health, DeviceHealth::Unknown);
    assert_eq!(d.current_job, None);
}

#[tokio::test]
async fn a_job_left_running_is_lost_when_its_worker_never_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, id) = store_with_a_running_job();
    let heartbeat = Duration::from_millis(200);
    let t0 = Instant::now();
    let (_handle, _) = engine::start(config(dir.path(), heartbeat), store.clone()).unwrap();
    let job = finished(&store, id, Duration::from_secs(10)).await;
    assert!(
        t0.elapsed() >= heartbeat * basalt_proto::MISSED_HEARTBEATS,
        "the worker had its heartbeat timeout to come back"
    );
    assert_lost(&store, &job);
}

#[tokio::test]
async fn a_worker_back_without_its_job_loses_it_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, id) = store_with_a_running_job();
    let worker = Keypair::generate();
    worker
        .write(&dir.path().join("certs/workers"), "w1")
        .unwrap();
    // a heartbeat timeout far away: only the hello can end the job
    let config = config(dir.path(), Duration::from_secs(60));
    let master = config.key.public;
    let (_handle, endpoint) = engine::start(config, store.clone()).unwrap();
    let ctx = zmq::Context::new();
    let client = zap::client(&ctx, zmq::DEALER, &worker, &master, &endpoint).unwrap();
    let hello = WorkerMsg::Hello(Hello {
        version: ProtocolVersion::CURRENT,
        name: "w1".into(),
        software: None,
        capabilities: Capabilities::new(),
        devices: Vec::new(),
        jobs: Vec::new(),
    });
    client.send(encode(&hello), 0).unwrap();
    let job = finished(&store, id, Duration::from_secs(10)).await;
    assert_lost(&store, &job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_crossed_the_hello_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let (store, id) = store_with_a_job(false);
    let config = config(dir.path(), Duration::from_secs(60));
    let master = config.key.public;
    let (_handle, endpoint) = engine::start(config, store.clone()).unwrap();
    let ctx = zmq::Context::new();
    let client = fake_worker(&ctx, dir.path(), &master, &endpoint);
    let welcome = tokio::task::block_in_place(|| hello(&client, ProtocolVersion::CURRENT, &[]));
    assert!(matches!(welcome, MasterMsg::Welcome(_)), "{welcome:?}");
    let start = tokio::task::block_in_place(|| {
        assert_eq!(client.poll(zmq::POLLIN, 10_000).unwrap(), 1, "a Start");
        basalt_proto::decode(&client.recv_bytes(0).unwrap()).unwrap()
    });
    match start {
        MasterMsg::Start(s) => assert_eq!((s.job_id.0, s.device.as_str()), (id, "d1")),
        other => panic!("a Start, not {other:?}"),
    }
    let job = store.job(id).unwrap().unwrap();
    assert_eq!(
        job.state,
        JobState::Scheduled,
        "not lost: {:?}",
        job.error_msg
    );
}

/// A fake worker `w1` (its key admitted under `dir`) connected to `endpoint`.
fn fake_worker(
    ctx: &zmq::Context,
    dir: &std::path::Path,
    master: &basalt_link::cert::PublicKey,
    endpoint: &str,
) -> zmq::Socket {
    let worker = Keypair::generate();
    let admitted = dir.join("certs/workers");
    let _ = std::fs::remove_file(admitted.join("w1.key"));
    let _ = std::fs::remove_file(admitted.join("w1.key_secret"));
    worker.write(&admitted, "w1").unwrap();
    zap::client(ctx, zmq::DEALER, &worker, master, endpoint).unwrap()
}

/// Says hello at `version` with `capabilities`; returns the master's answer.
fn hello(socket: &zmq::Socket, version: ProtocolVersion, capabilities: &[&str]) -> MasterMsg {
    let hello = WorkerMsg::Hello(Hello {
        version,
        name: "w1".into(),
        software: None,
        capabilities: capabilities
            .iter()
            .map(|c| basalt_proto::Capability::new(*c))
            .collect(),
        devices: Vec::new(),
        jobs: Vec::new(),
    });
    socket.send(encode(&hello), 0).unwrap();
    assert_eq!(socket.poll(zmq::POLLIN, 10_000).unwrap(), 1, "an answer");
    basalt_proto::decode(&socket.recv_bytes(0).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_one_or_two_minors_older_are_welcomed_and_others_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::memory().unwrap());
    let mut config = config(dir.path(), Duration::from_secs(60));
    // a master two minors ahead of the workers built today (a test constant)
    let cur = ProtocolVersion::CURRENT;
    config.version = ProtocolVersion::new(cur.major, cur.minor + 2);
    let master = config.key.public;
    let (_handle, endpoint) = engine::start(config, store).unwrap();
    let ctx = zmq::Context::new();
    for (version, welcomed) in [
        (ProtocolVersion::new(cur.major, cur.minor + 1), true),
        (cur, true),
        (ProtocolVersion::new(cur.major + 1, 0), false),
    ] {
        let s = fake_worker(&ctx, dir.path(), &master, &endpoint);
        let answer = tokio::task::block_in_place(|| hello(&s, version, &[]));
        match (welcomed, answer) {
            (true, MasterMsg::Welcome(_)) => {}
            (false, MasterMsg::Refused(r)) => assert!(r.reason.contains("major"), "{}", r.reason),
            (w, other) => panic!("a worker at {version}: welcomed {w} expected, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_lacking_a_required_capability_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::memory().unwrap());
    let mut config = config(dir.path(), Duration::from_secs(60));
    config.required_capabilities = [basalt_proto::Capability::U_BOOT].into_iter().collect();
    let master = config.key.public;
    let (_handle, endpoint) = engine::start(config, store.clone()).unwrap();
    let ctx = zmq::Context::new();
    let s = fake_worker(&ctx, dir.path(), &master, &endpoint);
    match tokio::task::block_in_place(|| hello(&s, ProtocolVersion::CURRENT, &["qemu"])) {
        MasterMsg::Refused(r) => assert!(r.reason.contains("`u-boot`"), "{}", r.reason),
        other => panic!("refused expected, got {other:?}"),
    }
    assert!(
        store.workers().unwrap().is_empty(),
        "a refused worker is not registered"
    );
    let s = fake_worker(&ctx, dir.path(), &master, &endpoint);
    let answer =
        tokio::task::block_in_place(|| hello(&s, ProtocolVersion::CURRENT, &["qemu", "u-boot"]));
    assert!(matches!(answer, MasterMsg::Welcome(_)), "{answer:?}");
}
