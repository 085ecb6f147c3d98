//! LAVA's events as a LAVA client sees them: a pyzmq subscriber (Debian's python3-zmq, as
//! `lavacli events listen` below 2020.9 and lava-scheduler use) receives, in order, a job's
//! events through its life on the engine (Submitted, Scheduled, Running, Finished with its
//! health) and its device's state changes, each exactly five frames with LAVA's fields.

use basalt_link::cert::Keypair;
use basalt_link::zap;
use basalt_master::engine::{self, Config};
use basalt_master::events::Publisher;
use basalt_master::model::{DeviceHealth, DeviceState};
use basalt_master::store::{Device, DeviceType, Store};
use basalt_proto::{
    encode, Capabilities, DeviceReport, End, Hello, JobPhase, LocalDeviceState, LogBatch,
    LogRecord, MasterMsg, Outcome, ProtocolVersion, Status, WorkerMsg,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subscriber::Subscriber;

#[path = "support/subscriber.rs"]
mod subscriber;

fn demo_job() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/jobs/demo-qemu.yaml"
    ))
    .expect("config/jobs/demo-qemu.yaml")
}

fn recv(socket: &zmq::Socket) -> MasterMsg {
    assert_eq!(socket.poll(zmq::POLLIN, 10_000).unwrap(), 1, "a message");
    basalt_proto::decode(&socket.recv_bytes(0).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pyzmq_subscriber_sees_a_job_and_its_device_through_their_lives() {
    let publisher = Publisher::start("tcp://127.0.0.1:*", "org.lavasoftware").unwrap();
    let store = Store::memory().unwrap().observe(publisher.observer());
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
    let store = Arc::new(store);

    // a SUB socket gets what is published once it is connected: add workers until one shows
    let sub = Subscriber::start(publisher.endpoint(), "org.lavasoftware");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        assert!(Instant::now() < deadline, "the subscriber never connected");
        store.add_worker(&format!("warm-{n}"), "").unwrap();
        n += 1;
        if sub.next(Duration::from_millis(100)).is_some() {
            break;
        }
    }
    while sub.next(Duration::from_millis(200)).is_some() {}

    // the engine, and a fake worker w1 serving d1
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        state_dir: dir.path().to_path_buf(),
        workers: "tcp://127.0.0.1:*".into(),
        key: Keypair::generate(),
        heartbeat: Duration::from_secs(60),
        device_types: Vec::new(),
        version: ProtocolVersion::CURRENT,
        required_capabilities: Capabilities::new(),
        anonymous_read: false,
        coordinator: "127.0.0.1:3079".into(),
        coordinator_token: None,
        max_lease: engine::DEFAULT_MAX_LEASE,
    };
    let master = config.key.public;
    let (handle, endpoint) = engine::start(config, store.clone()).unwrap();
    let ctx = zmq::Context::new();
    let key = Keypair::generate();
    key.write(&dir.path().join("certs/workers"), "w1").unwrap();
    let w = zap::client(&ctx, zmq::DEALER, &key, &master, &endpoint).unwrap();
    let hello = WorkerMsg::Hello(Hello {
        version: ProtocolVersion::CURRENT,
        name: "w1".into(),
        software: None,
        capabilities: Capabilities::new(),
        devices: vec![DeviceReport {
            hostname: "d1".into(),
            device_type: "qemu".into(),
            state: LocalDeviceState::Idle,
            job_id: None,
        }],
        jobs: Vec::new(),
    });
    w.send(encode(&hello), 0).unwrap();
    let welcome = tokio::task::block_in_place(|| recv(&w));
    assert!(matches!(welcome, MasterMsg::Welcome(_)), "{welcome:?}");

    let id = handle.submit("alice", &demo_job()).await.unwrap();
    tokio::task::block_in_place(|| {
        let start = loop {
            match recv(&w) {
                MasterMsg::Start(s) => break s,
                MasterMsg::HeartbeatAck(_) => {}
                other => panic!("Start expected, got {other:?}"),
            }
        };
        assert_eq!(start.job_id.0, id);
        let send = |m: WorkerMsg| w.send(encode(&m), 0).unwrap();
        send(WorkerMsg::Status(Status {
            job_id: start.job_id,
            state: JobPhase::Running,
            action: None,
        }));
        send(WorkerMsg::LogBatch(LogBatch {
            job_id: start.job_id,
            first_seq: 1,
            records: vec![LogRecord {
                lvl: "info".into(),
                line:
                    "- {\"dt\": \"2026-07-01T00:00:00.000001\", \"lvl\": \"info\", \"msg\": \"hi\"}"
                        .into(),
            }],
        }));
        send(WorkerMsg::End(End {
            job_id: start.job_id,
            outcome: Outcome::Complete,
            error_type: None,
            error_msg: None,
            cause: None,
            results: "- {case: job, definition: lava, result: pass}\n".into(),
            last_seq: 1,
            description: None,
        }));
    });

    // the job's four events and the device's three, in order, within 10 s
    let (mut job_events, mut device_events) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while job_events.len() < 4 || device_events.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(frames) = sub.next(left) else {
            panic!("by the deadline: job {job_events:?}, device {device_events:?}");
        };
        assert_eq!(frames.len(), 5, "five frames: {frames:?}");
        let [topic, uuid, dt, username, data] = <[String; 5]>::try_from(frames).unwrap();
        assert_eq!(uuid.len(), 36, "{uuid}");
        assert_eq!(&uuid[14..15], "1", "a version-1 UUID: {uuid}");
        assert!(dt.ends_with("+00:00") && dt.len() == 32, "{dt}");
        let data: Value = serde_json::from_str(&data).unwrap();
        match topic.as_str() {
            "org.lavasoftware.testjob" if data["job"] == id => {
                assert_eq!(username, "alice");
                for key in [
                    "health",
                    "state",
                    "job",
                    "description",
                    "priority",
                    "submit_time",
                    "submitter",
                    "health_check",
                    "device_type",
                ] {
                    assert!(data.get(key).is_some(), "{key} in {data}");
                }
                assert_eq!(data["description"], "basalt demo - busybox smoke test");
                assert_eq!(data["submitter"], "alice");
                assert_eq!(data["priority"], 50);
                assert_eq!(data["device_type"], "qemu");
                if data["state"] != "Submitted" {
                    assert_eq!(data["device"], "d1", "{data}");
                    assert_eq!(data["worker"], "w1", "{data}");
                }
                job_events.push((
                    data["state"].as_str().unwrap().to_string(),
                    data["health"].as_str().unwrap().to_string(),
                ));
            }
            "org.lavasoftware.device" if data["device"] == "d1" => {
                assert_eq!(username, "lavaserver");
                assert_eq!(data["device_type"], "qemu");
                assert_eq!(data["worker"], "w1");
                assert!(data.get("health").is_some(), "{data}");
                if data["state"] != "Idle" {
                    assert_eq!(data["job"], id, "{data}");
                }
                device_events.push(data["state"].as_str().unwrap().to_string());
            }
            "org.lavasoftware.worker" => {
                assert_eq!(username, "lavaserver");
                assert!(data.get("hostname").is_some() && data.get("health").is_some());
                assert!(data.get("state").is_some());
            }
            _ => {}
        }
    }
    let pair = |s: &str, h: &str| (s.to_string(), h.to_string());
    assert_eq!(
        job_events,
        [
            pair("Submitted", "Unknown"),
            pair("Scheduled", "Unknown"),
            pair("Running", "Unknown"),
            pair("Finished", "Complete"),
        ]
    );
    assert_eq!(device_events, ["Reserved", "Running", "Idle"]);
}
