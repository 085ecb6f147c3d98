//! The lab's administration through the REST API, in-process (the engine and the API on a
//! store in a temporary directory), as `basalt devices|workers|device-types` drive it:
//! - registration: a device type with a health check, a schedule and an alias, a worker with
//!   its public key (admitted: its key file in `certs/workers/`), a device with its dictionary
//!   (a bad one refused with its line and column, the old one kept), tags, health;
//! - with a fake worker on the workers link: a device in Maintenance, Bad or Retired gets no
//!   job while another device of its type takes them, and runs it once back to Good; a job
//!   for an alias runs on the aliased type's device;
//! - health checks on a schedule: due after N jobs, and after N hours by the engine's clock
//!   (moved on by the test), the timer waking the engine with no other event.
//!
//! The registration test runs on SQLite, and on PostgreSQL when `BASALT_TEST_POSTGRES` names a
//! server.

use basalt_link::cert::{self, Keypair};
use basalt_link::zap;
use basalt_master::store::Store;
use basalt_proto::{
    encode, End, Heartbeat, Hello, JobId, JobPhase, MasterMsg, Outcome, ProtocolVersion, Start,
    Status, WorkerMsg,
};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/master.rs"]
mod master;
#[path = "support/pg.rs"]
mod pg;

const ADMIN: &str = "admin-token-0123456789";
const USER: &str = "user-token-0123456789";
const HOUR_MS: u64 = 3_600_000;

/// A good dictionary, and one with a syntax error on its line 2.
const DICTIONARY: &str = "{% extends 'qemu.jinja2' %}\n{% set netdevice = 'user' %}\n";
const BAD_DICTIONARY: &str = "{% extends 'qemu.jinja2' %}\n{% set netdevice = %}\n";

fn demo_job() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/jobs/demo-qemu.yaml"
    ))
    .expect("config/jobs/demo-qemu.yaml")
}

/// A master in-process: its API, state directory and the clock its engine plans by.
struct Master {
    base: String,
    state_dir: std::path::PathBuf,
    served: master::Served,
    /// Added to the system's time by the engine's clock (ms).
    offset: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
    _db: Option<pg::TestDb>,
}

impl Master {
    fn start(db: Option<pg::TestDb>) -> Master {
        let dir = tempfile::tempdir().expect("temporary directory");
        let state_dir = dir.path().to_path_buf();
        let store = match &db {
            None => Store::open(&state_dir.join("basalt.db")),
            Some(db) => Store::connect(db.url()),
        }
        .expect("store");
        store.add_token("admin", true, ADMIN).expect("admin token");
        store.add_token("alice", false, USER).expect("user token");
        let offset = Arc::new(AtomicU64::new(0));
        let o = offset.clone();
        let clock: basalt_master::engine::Clock =
            Arc::new(move || basalt_master::engine::now_ms() + o.load(Ordering::SeqCst));
        let served = master::serve_clocked(state_dir.clone(), store, false, clock);
        Master {
            base: format!("http://{}/api/v0.2/", served.addr),
            state_dir,
            served,
            offset,
            _dir: dir,
            _db: db,
        }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        master::request(&self.base, method, path, token, body.as_deref())
    }

    /// An admin's request that must succeed with `want`.
    fn admin(&self, method: &str, path: &str, body: Option<Value>, want: u16) -> Value {
        let (s, v) = self.call(method, path, Some(ADMIN), body);
        assert_eq!(s, want, "{method} {path}: {v}");
        v
    }

    fn get(&self, path: &str) -> Value {
        self.admin("GET", path, None, 200)
    }

    /// Registers device type `qemu` and, with a fake worker's key, worker `w1`; returns the
    /// worker, connected and welcomed.
    fn lab_with_worker(&self, check: Option<&str>, rule: Value) -> FakeWorker {
        let mut t = json!({"name": "qemu", "health_check": check});
        if let (Some(t), Some(r)) = (t.as_object_mut(), rule.as_object()) {
            t.extend(r.clone());
        }
        self.admin("POST", "devicetypes/", Some(t), 201);
        let key = Keypair::generate();
        let w = self.admin(
            "POST",
            "workers/",
            Some(json!({"hostname": "w1", "public_key": key.public.z85()})),
            201,
        );
        assert_eq!(w["master_public_key"], self.served.master_key.z85(), "{w}");
        FakeWorker::connect(self, key)
    }

    fn add_device(&self, hostname: &str, health: &str) {
        self.admin(
            "POST",
            "devices/",
            Some(
                json!({"hostname": hostname, "device_type": "qemu", "worker_host": "w1",
                        "dictionary": DICTIONARY, "health": health}),
            ),
            201,
        );
    }

    fn set_health(&self, hostname: &str, health: &str) {
        self.admin(
            "POST",
            &format!("devices/{hostname}/set_health/"),
            Some(json!({ "health": health })),
            200,
        );
    }

    fn submit(&self, definition: &str) -> u64 {
        let r = self.admin(
            "POST",
            "jobs/",
            Some(json!({ "definition": definition })),
            201,
        );
        r["job_ids"][0].as_u64().expect("a job id")
    }

    fn job(&self, id: u64) -> Value {
        self.get(&format!("jobs/{id}/"))
    }
}

/// A worker on the master's workers link, speaking the protocol by hand.
struct FakeWorker {
    _ctx: zmq::Context,
    socket: zmq::Socket,
}

impl FakeWorker {
    fn connect(m: &Master, key: Keypair) -> FakeWorker {
        let ctx = zmq::Context::new();
        let socket = zap::client(
            &ctx,
            zmq::DEALER,
            &key,
            &m.served.master_key,
            &m.served.workers,
        )
        .expect("the workers link");
        let w = FakeWorker { _ctx: ctx, socket };
        w.send(WorkerMsg::Hello(Hello {
            version: ProtocolVersion::CURRENT,
            name: "w1".into(),
            software: None,
            capabilities: Default::default(),
            devices: Vec::new(),
            jobs: Vec::new(),
        }));
        match w.next(Duration::from_secs(10)) {
            Some(MasterMsg::Welcome(_)) => {}
            other => panic!("a Welcome, not {other:?}"),
        }
        w
    }

    fn send(&self, msg: WorkerMsg) {
        self.socket.send(encode(&msg), 0).expect("send");
    }

    /// The master's next message but acknowledgements, within `within`.
    fn next(&self, within: Duration) -> Option<MasterMsg> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // a heartbeat now and then keeps the worker online however long a test waits
            self.send(WorkerMsg::Heartbeat(Heartbeat::default()));
            let wait = left.min(Duration::from_secs(1)).as_millis() as i64;
            if self.socket.poll(zmq::POLLIN, wait).expect("poll") == 1 {
                let msg = basalt_proto::decode(&self.socket.recv_bytes(0).expect("recv"))
                    .expect("a message");
                match msg {
                    MasterMsg::HeartbeatAck(_) | MasterMsg::EndAck(_) => {}
                    other => return Some(other),
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// The next Start, within 10 s.
    fn start(&self) -> Start {
        match self.next(Duration::from_secs(10)) {
            Some(MasterMsg::Start(s)) => s,
            other => panic!("a Start, not {other:?}"),
        }
    }

    /// Asserts that the master starts nothing for `ms`.
    fn no_start(&self, ms: u64, why: &str) {
        if let Some(m) = self.next(Duration::from_millis(ms)) {
            panic!("{why}: the master sent {m:?}");
        }
    }

    /// The job runs, then ends with `outcome`.
    fn run(&self, id: u64, outcome: Outcome) {
        self.send(WorkerMsg::Status(Status {
            job_id: JobId(id),
            state: JobPhase::Running,
            action: None,
        }));
        self.send(WorkerMsg::End(End {
            job_id: JobId(id),
            outcome,
            error_type: None,
            error_msg: None,
            cause: None,
            results: String::new(),
            last_seq: 0,
            description: None,
        }));
    }
}

/// Waits until `cond` holds (within 10 s); `what` says what did not happen.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "{what} within 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(None)
            }
            #[test]
            fn postgres() {
                if let Some(db) = super::pg::TestDb::create(concat!(stringify!($name), "::postgres")) {
                    super::$name(Some(db))
                }
            }
        }
    )*};
}

on_both!(the_lab_is_registered_through_the_api);

fn the_lab_is_registered_through_the_api(db: Option<pg::TestDb>) {
    let m = Master::start(db);
    let check = demo_job();

    // a device type with a health check, its schedule and an alias
    let t = m.admin(
        "POST",
        "devicetypes/",
        Some(
            json!({"name": "qemu", "health_check": check, "health_frequency": 12,
                    "health_denominator": "jobs", "description": "QEMU x86"}),
        ),
        201,
    );
    assert_eq!(
        (
            &t["health_frequency"],
            &t["health_denominator"],
            &t["disable_health_check"]
        ),
        (&json!(12), &json!("jobs"), &json!(false)),
        "{t}"
    );
    let (s, text) = m.call("GET", "devicetypes/qemu/health_check/", Some(USER), None);
    assert_eq!((s, text.as_str()), (200, Some(check.as_str())));
    // a health check that is not a valid job is refused, the old one kept
    let (s, r) = m.call(
        "POST",
        "devicetypes/qemu/health_check/",
        Some(ADMIN),
        Some(json!({"config": "job_name: [not, a, job"})),
    );
    assert_eq!(s, 400, "{r}");
    assert_eq!(m.get("devicetypes/qemu/")["health_check"], check);
    // changing one setting leaves the others
    let t = m.admin(
        "PATCH",
        "devicetypes/qemu/",
        Some(json!({"health_frequency": 6})),
        200,
    );
    assert_eq!(
        (&t["health_frequency"], &t["health_denominator"]),
        (&json!(6), &json!("jobs"))
    );
    m.admin(
        "POST",
        "aliases/",
        Some(json!({"name": "qemu-x86_64", "device_type": "qemu"})),
        201,
    );
    assert_eq!(
        m.get("devicetypes/qemu/")["aliases"],
        json!(["qemu-x86_64"])
    );
    assert_eq!(
        m.get("aliases/")["results"],
        json!([{"name": "qemu-x86_64", "device_type": "qemu"}])
    );
    // an alias may not be a type's name, nor a type an alias's, nor alias a missing type
    for (path, body) in [
        ("aliases/", json!({"name": "qemu", "device_type": "qemu"})),
        ("devicetypes/", json!({"name": "qemu-x86_64"})),
        (
            "aliases/",
            json!({"name": "arm", "device_type": "no-such-type"}),
        ),
    ] {
        let (s, r) = m.call("POST", path, Some(ADMIN), Some(body));
        assert_eq!(s, 400, "{path}: {r}");
    }

    // a worker with its public key: admitted, and told the master's key
    let key = Keypair::generate();
    let w = m.admin(
        "POST",
        "workers/",
        Some(json!({"hostname": "w1", "description": "rack 1", "public_key": key.public.z85()})),
        201,
    );
    assert_eq!(w["state"], "Offline", "{w}");
    let admitted = m.state_dir.join("certs/workers/w1.key");
    assert_eq!(cert::read_public(&admitted).expect("w1.key"), key.public);
    let master_key = cert::PublicKey::from_z85(w["master_public_key"].as_str().unwrap()).unwrap();
    assert_eq!(master_key, m.served.master_key);
    // again: refused, the key file stays the first one
    let other = Keypair::generate();
    let (s, r) = m.call(
        "POST",
        "workers/",
        Some(ADMIN),
        Some(json!({"hostname": "w1", "public_key": other.public.z85()})),
    );
    assert_eq!(s, 400, "{r}");
    assert_eq!(cert::read_public(&admitted).unwrap(), key.public);
    // a key that is not one registers nothing
    let (s, r) = m.call(
        "POST",
        "workers/",
        Some(ADMIN),
        Some(json!({"hostname": "w9", "public_key": "short"})),
    );
    assert_eq!(s, 400, "{r}");
    assert_eq!(m.call("GET", "workers/w9/", Some(ADMIN), None).0, 404);
    // LAVA's clients send no key: registered, nothing admitted
    let w2 = m.admin("POST", "workers/", Some(json!({"hostname": "w2"})), 201);
    assert!(w2.get("master_public_key").is_none(), "{w2}");
    assert!(!m.state_dir.join("certs/workers/w2.key").exists());

    // a device with its dictionary and tags: in Maintenance, LAVA's default
    let d = m.admin(
        "POST",
        "devices/",
        Some(
            json!({"hostname": "qemu-01", "device_type": "qemu", "worker_host": "w1",
                    "tags": ["fast"], "dictionary": DICTIONARY}),
        ),
        201,
    );
    assert_eq!(d["health"], "Maintenance", "{d}");
    assert_eq!(
        m.get("devices/qemu-01/dictionary/")["dictionary"],
        DICTIONARY
    );
    // one with a bad dictionary is not added at all
    let (s, r) = m.call(
        "POST",
        "devices/",
        Some(ADMIN),
        Some(
            json!({"hostname": "qemu-02", "device_type": "qemu", "worker_host": "w1",
                    "dictionary": BAD_DICTIONARY}),
        ),
    );
    assert_eq!(s, 400, "{r}");
    assert_eq!(r["line"], 2, "{r}");
    assert!(r["column"].as_u64().is_some_and(|c| c >= 1), "{r}");
    assert_eq!(m.call("GET", "devices/qemu-02/", Some(ADMIN), None).0, 404);
    // a bad dictionary does not replace the good one
    let (s, r) = m.call(
        "POST",
        "devices/qemu-01/dictionary/",
        Some(ADMIN),
        Some(json!({ "dictionary": BAD_DICTIONARY })),
    );
    assert_eq!((s, &r["line"]), (400, &json!(2)), "{r}");
    assert!(r["message"].as_str().unwrap().contains("qemu-01"), "{r}");
    let (s, r) = m.call(
        "POST",
        "devices/qemu-01/dictionary/",
        Some(ADMIN),
        Some(json!({ "dictionary": "{% extends 'no-such-type.jinja2' %}\n" })),
    );
    assert_eq!(s, 400, "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("no-such-type"),
        "{r}"
    );
    assert_eq!(
        m.get("devices/qemu-01/dictionary/")["dictionary"],
        DICTIONARY
    );
    let v = m.admin("POST", "devices/validate/", None, 200);
    assert!(v["message"].as_str().unwrap().contains("invalid"), "{v}");

    // tags, one at a time by name
    let r = m.admin(
        "POST",
        "devices/qemu-01/tags/",
        Some(json!({"name": "usb"})),
        200,
    );
    assert_eq!(r["tags"], json!(["fast", "usb"]));
    let r = m.admin("DELETE", "devices/qemu-01/tags/fast/", None, 200);
    assert_eq!(r["tags"], json!(["usb"]));
    assert_eq!(m.get("devices/qemu-01/tags/")["tags"], json!(["usb"]));
    let (s, _) = m.call("DELETE", "devices/qemu-01/tags/fast/", Some(ADMIN), None);
    assert_eq!(s, 400, "not its tag");
    assert_eq!(
        m.get("devices/qemu-01/")["tags"],
        json!([basalt_master::http::tag_id("usb")])
    );

    // health by LAVA's names; a Retired device is listed with ?all only
    m.set_health("qemu-01", "Good");
    assert_eq!(m.get("devices/qemu-01/")["health"], "Good");
    m.set_health("qemu-01", "maintenance");
    assert_eq!(m.get("devices/qemu-01/")["health"], "Maintenance");
    m.add_device("qemu-03", "Good");
    m.set_health("qemu-03", "Retired");
    assert_eq!(m.get("devices/")["count"], 1);
    assert_eq!(m.get("devices/?all=1")["count"], 2);
    // retiring the worker retires its devices; making it Active again changes none
    m.add_device("qemu-04", "Good");
    let r = m.admin(
        "POST",
        "workers/w1/set_health/",
        Some(json!({"health": "Retired"})),
        200,
    );
    assert_eq!(r["devices"], json!(["qemu-01", "qemu-04"]), "{r}");
    assert_eq!(m.get("workers/w1/")["health"], "Retired");
    assert_eq!(m.get("devices/qemu-04/")["health"], "Retired");
    m.admin(
        "POST",
        "workers/w1/set_health/",
        Some(json!({"health": "Active"})),
        200,
    );
    assert_eq!(m.get("devices/qemu-04/")["health"], "Retired");

    // a health check now: refused for a type without one
    m.admin("POST", "devicetypes/", Some(json!({"name": "bare"})), 201);
    m.admin(
        "POST",
        "devices/",
        Some(json!({"hostname": "bare-1", "device_type": "bare", "worker_host": "w2"})),
        201,
    );
    let (s, r) = m.call("POST", "devices/bare-1/health_check/", Some(ADMIN), None);
    assert_eq!(s, 400, "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("no health check"),
        "{r}"
    );
    let r = m.admin("POST", "devices/qemu-04/health_check/", None, 201);
    let id = r["job_id"].as_u64().expect("its id");
    let j = m.job(id);
    assert_eq!(
        (&j["health_check"], &j["submitter"]),
        (&json!(true), &json!("lava-health"))
    );
    // asked again: the same check
    let again = m.admin("POST", "devices/qemu-04/health_check/", None, 201);
    assert_eq!(again["job_id"], id);

    // a job for the alias is a job for the type
    let id = m.submit(&demo_job().replace("device_type: qemu", "device_type: qemu-x86_64"));
    assert_eq!(m.job(id)["requested_device_type"], "qemu");
    m.admin("DELETE", "aliases/qemu-x86_64/", None, 204);
    assert_eq!(
        m.call("DELETE", "aliases/qemu-x86_64/", Some(ADMIN), None)
            .0,
        404
    );

    // writes need an admin, reads a token
    for (method, path, body) in [
        ("POST", "devicetypes/", Some(json!({"name": "x"}))),
        (
            "POST",
            "aliases/",
            Some(json!({"name": "y", "device_type": "qemu"})),
        ),
        ("POST", "devices/qemu-01/tags/", Some(json!({"name": "z"}))),
        ("DELETE", "devices/qemu-01/tags/usb/", None),
        (
            "PATCH",
            "devices/qemu-01/",
            Some(json!({"description": "d"})),
        ),
        (
            "POST",
            "workers/w2/set_health/",
            Some(json!({"health": "Retired"})),
        ),
        ("POST", "devices/qemu-01/health_check/", None),
    ] {
        assert_eq!(
            m.call(method, path, Some(USER), body.clone()).0,
            403,
            "{path}"
        );
        assert_eq!(m.call(method, path, None, body).0, 401, "{path}");
    }
}

/// A device in Maintenance, Bad or Retired takes no job while the other device of its type
/// does; back to Good, it takes the one left queued.
#[test]
fn devices_taken_out_get_no_jobs_until_they_are_good_again() {
    let m = Master::start(None);
    let w = m.lab_with_worker(None, json!({}));
    m.add_device("d1", "Good");
    m.add_device("d2", "Good");
    for health in ["Maintenance", "Bad", "Retired"] {
        m.set_health("d1", health);
        let first = m.submit(&demo_job());
        let s = w.start();
        assert_eq!((s.job_id.0, s.device.as_str()), (first, "d2"), "{health}");
        let second = m.submit(&demo_job());
        w.no_start(500, &format!("d1 is {health}, d2 is busy"));
        assert_eq!(m.job(second)["state"], "Submitted", "{health}");
        m.set_health("d1", "Good");
        let s = w.start();
        assert_eq!((s.job_id.0, s.device.as_str()), (second, "d1"), "{health}");
        w.run(first, Outcome::Complete);
        w.run(second, Outcome::Complete);
        eventually("both jobs finished", || {
            m.job(first)["state"] == "Finished" && m.job(second)["state"] == "Finished"
        });
    }
}

/// Health checks on a schedule: per jobs, a check after every N test jobs; per hours, a
/// check once the engine's clock has passed N hours since the last, and the engine wakes
/// for it on its own.
#[test]
fn health_checks_come_due_by_jobs_and_by_hours() {
    let m = Master::start(None);
    let check = demo_job();
    let w = m.lab_with_worker(
        Some(&check),
        json!({"health_frequency": 2, "health_denominator": "jobs"}),
    );
    m.add_device("d1", "Unknown");
    // Unknown: a check first
    let s = w.start();
    assert!(s.health_check, "{s:?}");
    w.run(s.job_id.0, Outcome::Complete);
    eventually("d1 is Good", || m.get("devices/d1/")["health"] == "Good");
    // two test jobs, then a check before the third
    for _ in 0..2 {
        let id = m.submit(&demo_job());
        let s = w.start();
        assert!(!s.health_check && s.job_id.0 == id, "{s:?}");
        w.run(id, Outcome::Complete);
        eventually("the job finished", || m.job(id)["state"] == "Finished");
    }
    let third = m.submit(&demo_job());
    let s = w.start();
    assert!(s.health_check, "the check comes before job {third}: {s:?}");
    // a failed check: Bad, and no jobs
    w.run(s.job_id.0, Outcome::Incomplete);
    eventually("d1 is Bad", || m.get("devices/d1/")["health"] == "Bad");
    w.no_start(300, "d1 is Bad");
    assert_eq!(m.job(third)["state"], "Submitted");
    m.set_health("d1", "Good");
    let s = w.start();
    assert_eq!(s.job_id.0, third, "{s:?}");
    w.run(third, Outcome::Complete);
    eventually("the job finished", || m.job(third)["state"] == "Finished");

    // per hours: the last check was a few seconds ago
    m.admin(
        "PATCH",
        "devicetypes/qemu/",
        Some(json!({"health_frequency": 1, "health_denominator": "hours"})),
        200,
    );
    w.no_start(300, "checked a few seconds ago");
    // the clock 2 hours on: due at the next pass (any event)
    m.offset.store(2 * HOUR_MS, Ordering::SeqCst);
    m.admin(
        "PATCH",
        "devices/d1/",
        Some(json!({"description": "d"})),
        200,
    );
    let s = w.start();
    assert!(s.health_check, "{s:?}");
    w.run(s.job_id.0, Outcome::Complete);
    eventually("d1 is Good", || m.get("devices/d1/")["health"] == "Good");
    // its check was submitted at the engine's clock: the next comes due an hour later; the
    // clock set 1.5 s before that, the engine's timer wakes it with no other event
    let submitted = m.job(s.job_id.0)["submit_time"]
        .as_str()
        .and_then(basalt_master::http::parse_rfc3339)
        .expect("its submit time");
    let real = basalt_master::engine::now_ms();
    m.offset
        .store(submitted + HOUR_MS - 1500 - real, Ordering::SeqCst);
    m.admin(
        "PATCH",
        "devices/d1/",
        Some(json!({"description": "e"})),
        200,
    );
    w.no_start(700, "not due yet");
    let s = w.start();
    assert!(s.health_check, "{s:?}");
}
