//! MultiNode in the engine, with a fake worker: a group's sub-jobs start together (their
//! roles map and the coordinator in each Start), one sub-job ending Incomplete before the
//! group runs ends the group, canceling one cancels all, a group whose sub-job cannot start
//! does not start at all; every board is freed.

use basalt_link::cert::Keypair;
use basalt_link::zap;
use basalt_master::engine::{self, Config, Handle};
use basalt_master::model::{DeviceHealth, DeviceState, JobHealth, JobState};
use basalt_master::store::{Device, DeviceType, Job, Store};
use basalt_proto::{
    encode, End, ErrorType, Hello, JobId, JobPhase, MasterMsg, Outcome, ProtocolVersion, Start,
    Status, WorkerMsg,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One server and two clients on qemu devices.
const GROUP: &str = "job_name: mn
timeouts: {job: {minutes: 5}, action: {minutes: 1}}
priority: medium
visibility: public
protocols:
  lava-multinode:
    roles:
      server: {device_type: qemu, count: 1, context: {arch: amd64}}
      client: {device_type: qemu, count: 2, context: {arch: amd64}}
    timeout: {seconds: 60}
actions:
- boot:
    role: [server, client]
    method: qemu
    media: tmpfs
    prompts: ['/ # ']
";

/// A store with `n` qemu devices d1.. on worker w1; `broken`: the last has no dictionary.
fn lab(n: usize, broken: bool) -> Arc<Store> {
    let store = Store::memory().unwrap();
    store
        .put_device_type(&DeviceType {
            name: "qemu".into(),
            health_check: None,
        })
        .unwrap();
    store.add_worker("w1", "").unwrap();
    for i in 1..=n {
        store
            .add_device(&Device {
                hostname: format!("d{i}"),
                device_type: "qemu".into(),
                worker: "w1".into(),
                description: String::new(),
                tags: Vec::new(),
                dictionary: (!(broken && i == n)).then(|| "{% extends 'qemu.jinja2' %}".into()),
                state: DeviceState::Idle,
                health: DeviceHealth::Good,
                current_job: None,
            })
            .unwrap();
    }
    Arc::new(store)
}

struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    handle: Handle,
    _ctx: zmq::Context,
    worker: zmq::Socket,
}

/// The engine on `store` and a fake worker w1 welcomed by it.
fn rig(store: Arc<Store>) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        state_dir: dir.path().to_path_buf(),
        workers: "tcp://127.0.0.1:*".into(),
        key: Keypair::generate(),
        heartbeat: Duration::from_secs(60),
        device_types: Vec::new(),
        version: ProtocolVersion::CURRENT,
        required_capabilities: basalt_proto::Capabilities::new(),
        anonymous_read: false,
        coordinator: "10.0.0.1:3079".into(),
        coordinator_token: Some("t0ken".into()),
        max_lease: engine::DEFAULT_MAX_LEASE,
    };
    let master = config.key.public;
    let (handle, endpoint) = engine::start(config, store.clone()).unwrap();
    let ctx = zmq::Context::new();
    let key = Keypair::generate();
    key.write(&dir.path().join("certs/workers"), "w1").unwrap();
    let worker = zap::client(&ctx, zmq::DEALER, &key, &master, &endpoint).unwrap();
    Rig {
        _dir: dir,
        store,
        handle,
        _ctx: ctx,
        worker,
    }
}

impl Rig {
    fn send(&self, msg: WorkerMsg) {
        self.worker.send(encode(&msg), 0).unwrap();
    }

    /// The master's next message (within 10 s).
    fn recv(&self) -> MasterMsg {
        tokio::task::block_in_place(|| {
            assert_eq!(
                self.worker.poll(zmq::POLLIN, 10_000).unwrap(),
                1,
                "a message"
            );
            basalt_proto::decode(&self.worker.recv_bytes(0).unwrap()).unwrap()
        })
    }

    /// Whether the master says nothing for `ms` (it has nothing to send).
    fn quiet(&self, ms: i64) -> bool {
        tokio::task::block_in_place(|| self.worker.poll(zmq::POLLIN, ms).unwrap() == 0)
    }

    fn hello(&self) {
        self.send(WorkerMsg::Hello(Hello {
            version: ProtocolVersion::CURRENT,
            name: "w1".into(),
            software: None,
            capabilities: Default::default(),
            devices: Vec::new(),
            jobs: Vec::new(),
        }));
        assert!(matches!(self.recv(), MasterMsg::Welcome(_)));
    }

    /// The next `n` Starts.
    fn starts(&self, n: usize) -> Vec<Start> {
        (0..n)
            .map(|_| match self.recv() {
                MasterMsg::Start(s) => s,
                other => panic!("a Start, not {other:?}"),
            })
            .collect()
    }

    fn end(&self, id: u64, outcome: Outcome, error_type: Option<ErrorType>) {
        self.send(WorkerMsg::End(End {
            job_id: JobId(id),
            outcome,
            error_type,
            error_msg: Some("the worker's message".into()),
            cause: None,
            results: String::new(),
            last_seq: 0,
            description: None,
        }));
    }

    /// Answers every Cancel as a worker does: End Incomplete, Canceled; returns the ids.
    fn answer_cancels(&self, n: usize) -> Vec<u64> {
        let mut ids = Vec::new();
        while ids.len() < n {
            match self.recv() {
                MasterMsg::Cancel(c) => {
                    ids.push(c.job_id.0);
                    self.end(c.job_id.0, Outcome::Incomplete, Some(ErrorType::Canceled));
                }
                MasterMsg::EndAck(_) => {}
                other => panic!("a Cancel, not {other:?}"),
            }
        }
        ids.sort_unstable();
        ids
    }

    async fn all_finished(&self, ids: &[u64]) -> Vec<Job> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let jobs: Vec<Job> = ids
                .iter()
                .map(|id| self.store.job(*id).unwrap().unwrap())
                .collect();
            if jobs.iter().all(|j| j.state == JobState::Finished) {
                return jobs;
            }
            assert!(Instant::now() < deadline, "not all finished: {jobs:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn boards_free(&self) {
        for d in self.store.devices().unwrap() {
            assert_eq!(
                (d.state, d.current_job),
                (DeviceState::Idle, None),
                "{}",
                d.hostname
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_starts_together_with_its_roles_and_the_coordinator() {
    let r = rig(lab(3, false));
    let ids = r.handle.submit_all("admin", GROUP).await.unwrap();
    assert_eq!(ids.len(), 3);
    let jobs: Vec<Job> = ids
        .iter()
        .map(|i| r.store.job(*i).unwrap().unwrap())
        .collect();
    let subs: Vec<(String, &str)> = jobs
        .iter()
        .map(|j| {
            let g = j.group.as_ref().unwrap();
            (g.sub_id.clone(), g.role.as_str())
        })
        .collect();
    let first = ids[0];
    assert_eq!(
        subs,
        [
            (format!("{first}.0"), "server"),
            (format!("{first}.1"), "client"),
            (format!("{first}.2"), "client")
        ]
    );
    assert!(jobs.iter().all(|j| j.state == JobState::Submitted));
    r.hello();
    let mut starts = r.starts(3);
    starts.sort_by_key(|s| s.job_id.0);
    assert_eq!(starts.iter().map(|s| s.job_id.0).collect::<Vec<_>>(), ids);
    let roles = format!(
        "roles:\n      '{}': server\n      '{}': client\n      '{}': client",
        ids[0], ids[1], ids[2]
    );
    for s in &starts {
        assert_eq!(s.coordinator.as_deref(), Some("10.0.0.1:3079"));
        assert_eq!(s.coordinator_token.as_deref(), Some("t0ken"), "its token");
        let doc = basalt_model::yaml::load(&s.definition).unwrap();
        let p = doc.path(&["protocols", "lava-multinode"]).unwrap();
        let map = p.get("roles").unwrap().as_map().unwrap();
        let got: Vec<(String, String)> = map
            .iter()
            .map(|(k, v)| (k.as_str().unwrap().into(), v.as_str().unwrap().into()))
            .collect();
        assert_eq!(
            got,
            [
                (ids[0].to_string(), "server".to_string()),
                (ids[1].to_string(), "client".to_string()),
                (ids[2].to_string(), "client".to_string())
            ],
            "{roles}"
        );
        assert_eq!(p.get("group_size").and_then(|n| n.as_i64()), Some(3));
    }
    for id in &ids {
        let j = r.store.job(*id).unwrap().unwrap();
        assert_eq!(j.state, JobState::Scheduled);
        assert!(
            j.definition.contains("roles:"),
            "the stored definition has the roles"
        );
    }
    for id in &ids {
        r.end(*id, Outcome::Complete, None);
    }
    let done = r.all_finished(&ids).await;
    assert!(done.iter().all(|j| j.health == JobHealth::Complete));
    r.boards_free();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_job_incomplete_before_the_group_runs_ends_the_group() {
    let r = rig(lab(3, false));
    let ids = r.handle.submit_all("admin", GROUP).await.unwrap();
    r.hello();
    r.starts(3);
    // the server runs; client 1 fails before client 2 runs
    r.send(WorkerMsg::Status(Status {
        job_id: JobId(ids[0]),
        state: JobPhase::Running,
        action: None,
    }));
    r.end(ids[1], Outcome::Incomplete, Some(ErrorType::Infrastructure));
    assert_eq!(r.answer_cancels(2), [ids[0], ids[2]]);
    let jobs = r.all_finished(&ids).await;
    assert_eq!(jobs[1].health, JobHealth::Incomplete);
    assert_eq!(jobs[1].error_msg.as_deref(), Some("the worker's message"));
    for j in [&jobs[0], &jobs[2]] {
        assert_eq!(j.health, JobHealth::Canceled, "{j:?}");
        let why = j.error_msg.as_deref().unwrap_or("");
        assert!(
            why.contains(&format!("sub-job {}", ids[1]))
                && why.contains("before the group was running"),
            "{why}"
        );
    }
    r.boards_free();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_one_sub_job_cancels_the_group() {
    let r = rig(lab(3, false));
    let ids = r.handle.submit_all("admin", GROUP).await.unwrap();
    r.hello();
    r.starts(3);
    assert!(r.handle.cancel(ids[2]).await.unwrap());
    assert_eq!(r.answer_cancels(3), ids);
    let jobs = r.all_finished(&ids).await;
    assert!(
        jobs.iter().all(|j| j.health == JobHealth::Canceled),
        "{jobs:?}"
    );
    let why = jobs[0].error_msg.as_deref().unwrap_or("");
    assert!(why.contains(&format!("sub-job {}", ids[2])), "{why}");
    r.boards_free();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_group_is_canceled_whole() {
    let r = rig(lab(3, false));
    // no worker: the group stays queued
    let ids = r.handle.submit_all("admin", GROUP).await.unwrap();
    assert!(r.handle.cancel(ids[1]).await.unwrap());
    let jobs = r.all_finished(&ids).await;
    assert!(
        jobs.iter().all(|j| j.health == JobHealth::Canceled),
        "{jobs:?}"
    );
    r.boards_free();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_sub_job_cannot_start_does_not_start() {
    let r = rig(lab(3, true));
    let ids = r.handle.submit_all("admin", GROUP).await.unwrap();
    r.hello();
    let jobs = r.all_finished(&ids).await;
    assert!(r.quiet(200), "no Start went out");
    for j in &jobs {
        assert_eq!(j.health, JobHealth::Incomplete, "{j:?}");
        assert_eq!(j.error_type.as_deref(), Some("Infrastructure"));
        assert!(
            j.error_msg
                .as_deref()
                .unwrap_or("")
                .contains("no dictionary"),
            "{j:?}"
        );
    }
    r.boards_free();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_the_lab_cannot_hold_is_refused_and_dynamic_connections_are_not_supported() {
    let r = rig(lab(2, false));
    let e = r
        .handle
        .submit_all("admin", GROUP)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not enough devices"), "{e}");
    let ssh = GROUP.replace(
        "client: {device_type: qemu, count: 2, context: {arch: amd64}}",
        "client: {connection: ssh, count: 1, host_role: server, expect_role: server}",
    );
    let e = r
        .handle
        .submit_all("admin", &ssh)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not supported yet"), "{e}");
    assert_eq!(r.store.jobs(None, 10, 0).unwrap().0, 0);
}
