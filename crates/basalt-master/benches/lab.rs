//! The master at lab scale, through its real binary: `basalt-master` runs as a child process
//! (temporary state directory, SQLite store, 1 s heartbeat, API and workers on free 127.0.0.1
//! ports) and this process plays the lab: it registers the device type, the workers and their
//! devices through the REST API with an admin token, and runs the workers as protocol-level
//! fakes — one CURVE DEALER per worker, each with its own key, all on one thread. A fake
//! worker says hello with its devices, sends heartbeats, and answers every Start at once with
//! a LogBatch of a few records and an End (Complete, with results); it forgets the job at its
//! EndAck, as `basalt-worker` does.
//!
//! - A: idle RSS of the master with 1,000 devices registered (before and after their 200
//!   workers are connected and a few heartbeats have gone by).
//! - C: 200 jobs one at a time on an idle lab: submit → Start received by the worker, and
//!   submit → Running (the job's `start_time`, which the master stores when it marks the job
//!   Running at its first LogBatch; read from the store file, millisecond resolution).
//! - B: 5,000 short jobs submitted through the REST API from 4 threads onto the 1,000
//!   devices; jobs/s, submit → Start, submit → Running, master CPU and peak RSS.
//!
//! Submit times are taken by the client before its POST: the latencies include the HTTP
//! request. Everything runs on one machine, so the master competes with the fakes and the
//! clients for the CPUs (the numbers are an upper bound on the master's share).
//!
//! Run: `cargo bench -p basalt-master --bench lab`. Cargo builds the `basalt-master` binary
//! with the bench (`CARGO_BIN_EXE_basalt-master`), so the binary measured is always the one
//! of this tree. `BASALT_LAB_WORKERS` (200), `BASALT_LAB_DEVICES_PER_WORKER` (5),
//! `BASALT_LAB_JOBS` (5,000) and `BASALT_LAB_SEQUENTIAL` (200) change the sizes. Nothing is
//! written outside the temporary directory; the master is killed on every path (a guard).

use basalt_link::cert::{read_public, Keypair, PublicKey};
use basalt_link::zap;
use basalt_proto::{
    decode, encode, Capabilities, DeviceReport, End, Heartbeat, Hello, JobId, LocalDeviceState,
    LogBatch, LogRecord, MasterMsg, Outcome, ProtocolVersion, WorkerMsg,
};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MASTER: &str = env!("CARGO_BIN_EXE_basalt-master");
const HEARTBEAT_SECS: u64 = 1;
const DICTIONARY: &str = "{% extends 'qemu.jinja2' %}\n{% set netdevice = 'user' %}\n";
/// Records per fake job (one LogBatch).
const RECORDS: u64 = 3;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0)
}

// ---- the master process ----------------------------------------------------------------

/// The running `basalt-master`; killed (SIGKILL) and reaped when dropped, whatever happened.
struct Master {
    child: Child,
    pid: u32,
    base: String,
    workers: String,
    state_dir: PathBuf,
    key: PublicKey,
    /// The last lines of its stderr, for error messages.
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Master {
    fn start(state_dir: &Path) -> (Master, String) {
        let out = Command::new(MASTER)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["token", "add", "admin", "--admin"])
            .output()
            .expect("basalt-master token add");
        assert!(
            out.status.success(),
            "basalt-master token add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mut child = Command::new(MASTER)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--http", "127.0.0.1:0", "--workers", "tcp://127.0.0.1:*"])
            .args(["--coordinator", "127.0.0.1:0"])
            .args(["--heartbeat-secs", &HEARTBEAT_SECS.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn basalt-master");
        let stderr = child.stderr.take().expect("the master's stderr");
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        let t = tail.clone();
        // reads the master's stderr to its end (or the pipe fills and the master blocks)
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.split("workers on ").nth(1) {
                    if let Some((w, api)) = rest.split_once(", API on ") {
                        let _ = tx.send((w.to_string(), api.to_string()));
                    }
                }
                let mut t = t.lock().expect("tail");
                if t.len() == 40 {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
        let pid = child.id();
        let mut m = Master {
            child,
            pid,
            base: String::new(),
            workers: String::new(),
            state_dir: state_dir.to_path_buf(),
            key: PublicKey([0; 32]),
            tail,
        };
        let (workers, base) = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!("basalt-master did not listen within 30 s:\n{}", m.stderr())
            });
        m.workers = workers;
        m.base = base;
        m.key = read_public(&state_dir.join("certs/master.key")).expect("the master's public key");
        (m, token)
    }

    fn stderr(&self) -> String {
        let t = self.tail.lock().expect("tail");
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Fails the bench when the master has exited.
    fn alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("basalt-master exited ({status}):\n{}", self.stderr());
        }
    }

    /// /proc/PID/status: (VmRSS, VmHWM) in MiB.
    fn rss(&self) -> (f64, f64) {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("/proc/PID/status");
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .map(|kb| kb / 1024.0)
                .unwrap_or(f64::NAN)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// utime + stime of /proc/PID/stat, in seconds (USER_HZ is 100 on Linux).
    fn cpu(&self) -> f64 {
        let text =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).expect("/proc/PID/stat");
        // the fields after the command name, which is in parentheses and may hold spaces
        let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3
        let ticks = |i: usize| {
            f.get(i - 3)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(14) + ticks(15)) / 100.0
    }

    fn db(&self) -> basalt_master::store::Store {
        basalt_master::store::Store::open(&self.state_dir.join("basalt.db")).expect("the store")
    }
}

// ---- the REST API --------------------------------------------------------------------------

struct Api {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Api {
    fn new(base: &str, token: &str) -> Api {
        Api {
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .build(),
            base: base.to_string(),
            token: token.to_string(),
        }
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .agent
            .post(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Token {}", self.token))
            .send_json(body);
        match r {
            Ok(r) => r.into_json().expect("a JSON answer"),
            Err(ureq::Error::Status(code, r)) => panic!(
                "POST {path}: {code} {}",
                r.into_string().unwrap_or_default()
            ),
            Err(e) => panic!("POST {path}: {e}"),
        }
    }

    fn get(&self, path: &str) -> Value {
        self.agent
            .get(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Token {}", self.token))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .into_json()
            .expect("a JSON answer")
    }

    /// Submits a job; its id.
    fn submit(&self, definition: &str) -> u64 {
        let r = self.post("jobs/", json!({ "definition": definition }));
        r["job_ids"][0].as_u64().expect("a job id")
    }
}

// ---- the fake workers ----------------------------------------------------------------------

/// What the fake workers saw, shared with the bench.
#[derive(Default)]
struct Seen {
    /// Each Start's arrival, by job id.
    starts: Mutex<HashMap<u64, Instant>>,
    welcomed: AtomicUsize,
    ended: AtomicUsize,
    /// Anything a fake worker did not expect (a Refused, a Start for a busy device ...).
    errors: Mutex<Vec<String>>,
}

struct FakeWorker {
    name: String,
    socket: zmq::Socket,
    devices: Vec<String>,
    /// Jobs started and not yet acknowledged by an EndAck.
    held: BTreeSet<u64>,
    next_heartbeat: Instant,
}

impl FakeWorker {
    fn send(&self, msg: WorkerMsg) {
        // a full queue would be a finding: the bench reports it rather than waits
        if let Err(e) = self.socket.send(encode(&msg), zmq::DONTWAIT) {
            panic!("worker {}: send: {e}", self.name);
        }
    }

    fn hello(&self) -> WorkerMsg {
        WorkerMsg::Hello(Hello {
            version: ProtocolVersion::CURRENT,
            name: self.name.clone(),
            software: None,
            capabilities: Capabilities::default(),
            devices: self
                .devices
                .iter()
                .map(|d| DeviceReport {
                    hostname: d.clone(),
                    device_type: "qemu".into(),
                    state: LocalDeviceState::Idle,
                    job_id: None,
                })
                .collect(),
            jobs: Vec::new(),
        })
    }

    fn on_message(&mut self, msg: MasterMsg, seen: &Seen) {
        match msg {
            MasterMsg::Welcome(_) => {
                seen.welcomed.fetch_add(1, Ordering::SeqCst);
            }
            MasterMsg::HelloRequired(_) => self.send(self.hello()),
            MasterMsg::Refused(r) => seen
                .errors
                .lock()
                .expect("errors")
                .push(format!("worker {} refused: {}", self.name, r.reason)),
            MasterMsg::Start(s) => {
                let now = Instant::now();
                let id = s.job_id.0;
                seen.starts.lock().expect("starts").insert(id, now);
                if !self.devices.contains(&s.device) {
                    seen.errors.lock().expect("errors").push(format!(
                        "worker {} got job {id} for device {}, not its own",
                        self.name, s.device
                    ));
                }
                self.held.insert(id);
                let records = (1..=RECORDS)
                    .map(|i| LogRecord {
                        lvl: "info".into(),
                        line: format!(
                            "- {{\"dt\": \"2026-07-01T00:00:00.00000{i}\", \"lvl\": \"info\", \"msg\": \"fake job {id} line {i}\"}}"
                        ),
                    })
                    .collect();
                self.send(WorkerMsg::LogBatch(LogBatch {
                    job_id: s.job_id,
                    first_seq: 1,
                    records,
                }));
                self.send(WorkerMsg::End(End {
                    job_id: s.job_id,
                    outcome: Outcome::Complete,
                    error_type: None,
                    error_msg: None,
                    cause: None,
                    results: "- {case: job, definition: lava, result: pass}\n".into(),
                    last_seq: RECORDS,
                    description: None,
                }));
            }
            MasterMsg::LogAck(a) => {
                if a.resend {
                    seen.errors.lock().expect("errors").push(format!(
                        "job {}: the master asked for a resend from {}",
                        a.job_id, a.seq
                    ));
                }
            }
            MasterMsg::EndAck(a) => {
                if self.held.remove(&a.job_id.0) {
                    seen.ended.fetch_add(1, Ordering::SeqCst);
                }
            }
            MasterMsg::Cancel(_) | MasterMsg::HeartbeatAck(_) | MasterMsg::Hold(_) => {}
        }
    }
}

/// The fake workers, on one thread polling all their sockets; stopped and joined on drop.
struct Farm {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    seen: Arc<Seen>,
}

impl Drop for Farm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Farm {
    /// Connects `workers` (name, key, devices) to the master.
    fn start(master: &Master, workers: Vec<(String, Keypair, Vec<String>)>) -> Farm {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Seen::default());
        let endpoint = master.workers.clone();
        let master_key = master.key;
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("fake-workers".into())
            .spawn(move || {
                let ctx = zmq::Context::new();
                let mut fakes: Vec<FakeWorker> = workers
                    .into_iter()
                    .map(|(name, key, devices)| {
                        let socket = zap::client(&ctx, zmq::DEALER, &key, &master_key, &endpoint)
                            .expect("a worker socket");
                        FakeWorker {
                            name,
                            socket,
                            devices,
                            held: BTreeSet::new(),
                            next_heartbeat: Instant::now(),
                        }
                    })
                    .collect();
                // queued until the CURVE handshake is done
                for f in &fakes {
                    f.send(f.hello());
                }
                let every = Duration::from_secs(HEARTBEAT_SECS);
                while !st.load(Ordering::SeqCst) {
                    let mut items: Vec<zmq::PollItem> = fakes
                        .iter()
                        .map(|f| f.socket.as_poll_item(zmq::POLLIN))
                        .collect();
                    let n = zmq::poll(&mut items, 10).expect("poll");
                    let ready: Vec<bool> = items.iter().map(|i| i.is_readable()).collect();
                    drop(items);
                    if n > 0 {
                        for (f, ready) in fakes.iter_mut().zip(ready) {
                            if !ready {
                                continue;
                            }
                            while let Ok(bytes) = f.socket.recv_bytes(zmq::DONTWAIT) {
                                match decode::<MasterMsg>(&bytes) {
                                    Ok(m) => f.on_message(m, &s),
                                    Err(e) => s
                                        .errors
                                        .lock()
                                        .expect("errors")
                                        .push(format!("worker {}: unreadable: {e}", f.name)),
                                }
                            }
                        }
                    }
                    let now = Instant::now();
                    for f in &mut fakes {
                        if now >= f.next_heartbeat {
                            f.next_heartbeat = now + every;
                            f.send(WorkerMsg::Heartbeat(Heartbeat {
                                jobs: f.held.iter().map(|j| JobId(*j)).collect(),
                            }));
                        }
                    }
                }
            })
            .expect("the fake workers' thread");
        Farm {
            stop,
            thread: Some(thread),
            seen,
        }
    }

    fn errors(&self) -> Vec<String> {
        self.seen.errors.lock().expect("errors").clone()
    }

    /// Waits until `done()` holds, failing the bench with `what` after `limit`.
    fn wait(&self, master: &mut Master, limit: Duration, what: &str, done: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(&self.seen) {
            master.alive();
            let errors = self.errors();
            assert!(errors.is_empty(), "{what}: {errors:?}");
            assert!(
                self.thread.as_ref().is_some_and(|t| !t.is_finished()),
                "{what}: the fake workers' thread died"
            );
            assert!(
                Instant::now() < deadline,
                "{what}: not done within {limit:?}; the master's last words:\n{}",
                master.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

// ---- measures ------------------------------------------------------------------------------

/// A submitted job: its id, when the client sent the POST (monotonic and wall clock).
#[derive(Clone, Copy)]
struct Sub {
    id: u64,
    at: Instant,
    wall_ms: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// (submit → Start at the worker, submit → Running in the store), ms, sorted.
fn latencies(master: &Master, seen: &Seen, subs: &[Sub]) -> (Vec<f64>, Vec<f64>) {
    let starts = seen.starts.lock().expect("starts");
    let mut to_start: Vec<f64> = subs
        .iter()
        .map(|s| {
            let t = starts
                .get(&s.id)
                .unwrap_or_else(|| panic!("job {} never started", s.id));
            t.saturating_duration_since(s.at).as_secs_f64() * 1e3
        })
        .collect();
    let store = master.db();
    let mut to_running: Vec<f64> = subs
        .iter()
        .map(|s| {
            let job = store
                .job(s.id)
                .expect("the store")
                .unwrap_or_else(|| panic!("job {} not stored", s.id));
            let start = job
                .start_time
                .unwrap_or_else(|| panic!("job {} was never Running", s.id));
            // start_time is whole milliseconds: at most 1 ms early
            (start as f64 - s.wall_ms).max(0.0)
        })
        .collect();
    to_start.sort_by(f64::total_cmp);
    to_running.sort_by(f64::total_cmp);
    (to_start, to_running)
}

struct Table(Vec<(String, String, String)>);

impl Table {
    fn row(&mut self, measure: impl Into<String>, value: impl Into<String>, goal: &str) {
        self.0.push((measure.into(), value.into(), goal.into()));
    }

    fn print(&self) {
        let w0 = self
            .0
            .iter()
            .map(|r| r.0.chars().count())
            .max()
            .unwrap_or(0);
        let w1 = self
            .0
            .iter()
            .map(|r| r.1.chars().count())
            .max()
            .unwrap_or(0);
        println!("{:<w0$} | {:>w1$} | goal", "measure", "value");
        println!(
            "{}-|-{}-|-{}",
            "-".repeat(w0),
            "-".repeat(w1),
            "-".repeat(12)
        );
        for (m, v, g) in &self.0 {
            println!("{m:<w0$} | {v:>w1$} | {g}");
        }
    }
}

fn main() {
    let n_workers = env_usize("BASALT_LAB_WORKERS", 200);
    let per_worker = env_usize("BASALT_LAB_DEVICES_PER_WORKER", 5);
    let n_jobs = env_usize("BASALT_LAB_JOBS", 5_000);
    let n_seq = env_usize("BASALT_LAB_SEQUENTIAL", 200);
    let n_devices = n_workers * per_worker;
    let definition = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/jobs/demo-qemu.yaml"
    ))
    .expect("config/jobs/demo-qemu.yaml");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = dir.path().join("master");
    let (mut master, token) = Master::start(&state);
    let api = Api::new(&master.base, &token);
    let mut table = Table(Vec::new());
    let (rss0, _) = master.rss();
    table.row("master RSS, empty store (MiB)", format!("{rss0:.1}"), "");

    // ---- the lab: a device type, workers with their keys, devices with dictionaries
    let t = Instant::now();
    api.post("devicetypes/", json!({"name": "qemu"}));
    let keys_dir = dir.path().join("worker-keys");
    let mut workers = Vec::new();
    for w in 0..n_workers {
        let name = format!("fake-{w:03}");
        let key = Keypair::generate();
        // the master's ZAP handler admits the keys of certs/workers/NAME.key
        let (public, _) = key.write(&keys_dir, &name).expect("the worker's key");
        std::fs::copy(&public, state.join(format!("certs/workers/{name}.key")))
            .expect("admit the worker's key");
        api.post("workers/", json!({"hostname": name}));
        let mut devices = Vec::new();
        for d in 0..per_worker {
            let hostname = format!("qemu-{w:03}-{d}");
            api.post(
                "devices/",
                json!({"hostname": hostname, "device_type": "qemu", "worker_host": name,
                       "health": "Unknown"}),
            );
            api.post(
                &format!("devices/{hostname}/dictionary/"),
                json!({"dictionary": DICTIONARY}),
            );
            devices.push(hostname);
        }
        workers.push((name, key, devices));
    }
    let registration = t.elapsed();
    master.alive();
    let listed = api.get("devices/?limit=1")["count"].as_u64().unwrap_or(0);
    assert_eq!(listed as usize, n_devices, "devices registered");
    table.row(
        format!("registration: {n_workers} workers, {n_devices} devices (s)"),
        format!("{:.1}", registration.as_secs_f64()),
        "",
    );
    let (rss, _) = master.rss();
    table.row(
        format!("A: idle RSS, {n_devices} devices, no worker (MiB)"),
        format!("{rss:.1}"),
        "",
    );

    // ---- A: the workers connect; a few heartbeats
    let t = Instant::now();
    let farm = Farm::start(&master, workers);
    farm.wait(
        &mut master,
        Duration::from_secs(60),
        "workers welcomed",
        |s| s.welcomed.load(Ordering::SeqCst) >= n_workers,
    );
    table.row(
        format!("A: {n_workers} workers connected and welcomed (s)"),
        format!("{:.2}", t.elapsed().as_secs_f64()),
        "",
    );
    let cpu0 = master.cpu();
    let idle = Duration::from_secs(5 * HEARTBEAT_SECS);
    std::thread::sleep(idle);
    master.alive();
    let online = api.get("workers/?limit=1000")["results"]
        .as_array()
        .map(|w| w.iter().filter(|w| w["state"] == "Online").count())
        .unwrap_or(0);
    assert_eq!(online, n_workers, "workers Online after {idle:?}");
    let (rss, hwm) = master.rss();
    table.row(
        format!("A: idle RSS, {n_devices} devices, {n_workers} workers (MiB)"),
        format!("{rss:.1}"),
        "≤ 32",
    );
    table.row("A: idle peak RSS (VmHWM, MiB)", format!("{hwm:.1}"), "");
    table.row(
        format!("A: idle master CPU, {n_workers} heartbeats/s (%)"),
        format!("{:.1}", (master.cpu() - cpu0) / idle.as_secs_f64() * 100.0),
        "",
    );

    // ---- C: one job at a time on an idle lab
    let mut subs = Vec::new();
    let t = Instant::now();
    for i in 0..n_seq {
        let (at, wall) = (Instant::now(), wall_ms());
        let id = api.submit(&definition);
        subs.push(Sub {
            id,
            at,
            wall_ms: wall,
        });
        farm.wait(
            &mut master,
            Duration::from_secs(30),
            "a sequential job",
            |s| s.ended.load(Ordering::SeqCst) > i,
        );
    }
    let seq_wall = t.elapsed();
    let (to_start, to_running) = latencies(&master, &farm.seen, &subs);
    table.row(
        format!("C: {n_seq} jobs one at a time (s)"),
        format!("{:.2}", seq_wall.as_secs_f64()),
        "",
    );
    for (what, v, goal) in [
        (
            "C: submit → Start at the worker p50 (ms)",
            percentile(&to_start, 0.5),
            "",
        ),
        (
            "C: submit → Start at the worker p99 (ms)",
            percentile(&to_start, 0.99),
            "",
        ),
        (
            "C: submit → Running p50 (ms)",
            percentile(&to_running, 0.5),
            "",
        ),
        (
            "C: submit → Running p99 (ms)",
            percentile(&to_running, 0.99),
            "≤ 50",
        ),
    ] {
        table.row(what, format!("{v:.1}"), goal);
    }

    // ---- B: many short jobs, submitted from 4 threads
    let before = farm.seen.ended.load(Ordering::SeqCst);
    let cpu0 = master.cpu();
    let t = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let submitted = Arc::new(Mutex::new(Vec::with_capacity(n_jobs)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (next, submitted) = (next.clone(), submitted.clone());
            let api = Api::new(&master.base, &token);
            let definition = definition.clone();
            std::thread::spawn(move || {
                while next.fetch_add(1, Ordering::SeqCst) < n_jobs {
                    let (at, wall) = (Instant::now(), wall_ms());
                    let id = api.submit(&definition);
                    submitted.lock().expect("submitted").push(Sub {
                        id,
                        at,
                        wall_ms: wall,
                    });
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a submitting thread failed");
    }
    let submit_wall = t.elapsed();
    farm.wait(
        &mut master,
        Duration::from_secs(600),
        &format!("{n_jobs} jobs finished"),
        |s| s.ended.load(Ordering::SeqCst) >= before + n_jobs,
    );
    let wall = t.elapsed();
    let cpu = master.cpu() - cpu0;
    let (_, hwm) = master.rss();
    let finished = api.get("jobs/?state=Finished&limit=1")["count"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        finished as usize,
        n_seq + n_jobs,
        "jobs Finished in the store"
    );
    let subs = submitted.lock().expect("submitted").clone();
    let (to_start, to_running) = latencies(&master, &farm.seen, &subs);
    table.row(
        format!("B: {n_jobs} jobs on {n_devices} devices, wall (s)"),
        format!("{:.2}", wall.as_secs_f64()),
        "",
    );
    table.row(
        "B: submissions (4 threads), wall (s)",
        format!("{:.2}", submit_wall.as_secs_f64()),
        "",
    );
    table.row(
        "B: jobs/s (submit of the first → end of the last)",
        format!("{:.0}", n_jobs as f64 / wall.as_secs_f64()),
        "",
    );
    for (what, v) in [
        ("B: submit → Start p50 (ms)", percentile(&to_start, 0.5)),
        ("B: submit → Start p99 (ms)", percentile(&to_start, 0.99)),
        ("B: submit → Running p50 (ms)", percentile(&to_running, 0.5)),
        (
            "B: submit → Running p99 (ms)",
            percentile(&to_running, 0.99),
        ),
    ] {
        table.row(what, format!("{v:.1}"), "");
    }
    table.row(
        "B: master CPU time (s, user+system)",
        format!("{cpu:.2}"),
        "",
    );
    table.row(
        "B: master CPU per job (ms)",
        format!("{:.2}", cpu * 1e3 / n_jobs as f64),
        "",
    );
    table.row("B: master peak RSS (VmHWM, MiB)", format!("{hwm:.1}"), "");
    let errors = farm.errors();
    assert!(errors.is_empty(), "the fake workers saw: {errors:?}");
    drop(farm);
    drop(master);
    table.print();
}
