//! LAVA's events (`lava-publisher`): every job, device and worker state change the store
//! commits ([`Change`]) is published on a ZeroMQ PUB socket as LAVA's five frames
//! `[topic, uuid, datetime, username, data]`:
//!
//! * topic: the prefix (LAVA's `EVENT_TOPIC`, `org.lavasoftware` by default) and `.testjob`,
//!   `.device` or `.worker`;
//! * uuid: a version-1 UUID (`uuid.uuid1()`), datetime: now in UTC, ISO 8601 with
//!   microseconds (`2026-08-21T16:25:29.123456+00:00`);
//! * username: the job's submitter, else `lavaserver`;
//! * data: JSON with LAVA's fields ([`data`]).
//!
//! The socket is plaintext, as LAVA's: the events are read-only (a PUB socket receives
//! nothing) and public to whoever can reach the endpoint. It lives on a thread of its own
//! ([`Publisher`]); the store's observer only sends the change down a channel, so neither the
//! engine nor the API waits for a subscriber, and a change is on the wire within microseconds.
//! Sent without blocking: a subscriber that does not keep up loses events (as with LAVA).

use crate::scheduler::Target;
use crate::store::{Change, Job};
use serde_json::{json, Map, Value};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

/// LAVA's default topic prefix (`EVENT_TOPIC`).
pub const DEFAULT_PREFIX: &str = "org.lavasoftware";

/// Why the publisher could not start.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("events: cannot bind {endpoint}: {source}")]
    Bind {
        endpoint: String,
        source: zmq::Error,
    },
    #[error("events: socket: {0}")]
    Socket(zmq::Error),
    #[error("events: thread: {0}")]
    Thread(std::io::Error),
}

enum Msg {
    Change(Box<Change>),
    Stop,
}

/// The PUB socket's thread. Dropping it stops the thread (events still queued are sent
/// first).
pub struct Publisher {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
    endpoint: String,
}

impl Publisher {
    /// Binds a PUB socket on `endpoint` (`tcp://127.0.0.1:5500`; `tcp://127.0.0.1:*` picks a
    /// port, see [`Publisher::endpoint`]) publishing under `prefix`.
    pub fn start(endpoint: &str, prefix: &str) -> Result<Publisher, EventsError> {
        let ctx = zmq::Context::new();
        let socket = ctx.socket(zmq::PUB).map_err(EventsError::Socket)?;
        // LAVA's publisher: heartbeats every 5 s, a peer silent for 15 s is dropped
        socket
            .set_heartbeat_ivl(5_000)
            .and_then(|()| socket.set_heartbeat_timeout(15_000))
            .and_then(|()| socket.set_linger(1_000))
            .map_err(EventsError::Socket)?;
        socket.bind(endpoint).map_err(|source| EventsError::Bind {
            endpoint: endpoint.to_string(),
            source,
        })?;
        let bound = match socket.get_last_endpoint() {
            Ok(Ok(e)) => e,
            _ => endpoint.to_string(),
        };
        let (tx, rx) = mpsc::channel();
        let prefix = prefix.to_string();
        let thread = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                let _ctx = ctx;
                run(&socket, &prefix, &rx);
            })
            .map_err(EventsError::Thread)?;
        Ok(Publisher {
            tx,
            thread: Some(thread),
            endpoint: bound,
        })
    }

    /// The endpoint bound (the port chosen for `*`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The store's observer ([`crate::store::Store::observe`]): queues each change for the
    /// socket's thread.
    pub fn observer(&self) -> impl Fn(&Change) + Send + Sync + 'static {
        let tx = self.tx.clone();
        move |c: &Change| {
            let _ = tx.send(Msg::Change(Box::new(c.clone())));
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(socket: &zmq::Socket, prefix: &str, rx: &mpsc::Receiver<Msg>) {
    let node = uuid_node();
    while let Ok(Msg::Change(change)) = rx.recv() {
        let frames = frames(prefix, &change, &node);
        if let Err(e) = socket.send_multipart(frames.iter(), zmq::DONTWAIT) {
            // PUB drops for slow subscribers itself; an error here is the socket's own
            tracing::warn!("events: not sent: {e}");
        }
    }
}

/// The five frames of `change`: topic, uuid, datetime, username, data (JSON).
pub fn frames(prefix: &str, change: &Change, node: &[u8; 6]) -> [String; 5] {
    let (kind, username) = match change {
        Change::Job { job, .. } => ("testjob", job.submitter.clone()),
        Change::Device { .. } => ("device", "lavaserver".to_string()),
        Change::Worker { .. } => ("worker", "lavaserver".to_string()),
    };
    [
        format!("{prefix}.{kind}"),
        uuid1(node),
        iso_micros(now_micros()),
        username,
        data(change).to_string(),
    ]
}

/// LAVA's JSON for a change (`lava_scheduler_app/signals.py`).
pub fn data(change: &Change) -> Value {
    match change {
        Change::Job {
            job,
            device_type,
            worker,
        } => job_data(job, device_type.as_deref(), worker.as_deref()),
        Change::Device { device } => {
            let mut m = Map::new();
            m.insert("health".into(), json!(device.health.name()));
            m.insert("state".into(), json!(device.state.name()));
            m.insert("device".into(), json!(device.hostname));
            m.insert("device_type".into(), json!(device.device_type));
            m.insert("worker".into(), json!(device.worker));
            if let Some(j) = device.current_job {
                m.insert("job".into(), json!(j));
            }
            Value::Object(m)
        }
        Change::Worker { worker } => json!({
            "hostname": worker.hostname,
            "health": worker.health.name(),
            "state": worker.state.name(),
        }),
    }
}

fn job_data(job: &Job, device_type: Option<&str>, worker: Option<&str>) -> Value {
    let mut m = Map::new();
    m.insert("health".into(), json!(job.health.name()));
    m.insert("state".into(), json!(job.state.name()));
    m.insert("job".into(), json!(job.id));
    m.insert("description".into(), json!(job.description));
    m.insert("priority".into(), json!(job.priority.value()));
    m.insert(
        "submit_time".into(),
        json!(iso_micros(job.submit_time * 1000)),
    );
    m.insert("submitter".into(), json!(job.submitter));
    m.insert("health_check".into(), json!(job.health_check));
    // basalt's: why a finished job did not complete, and who is at fault
    if let Some(c) = job.failure_cause {
        m.insert("failure_cause".into(), json!(c.name()));
        m.insert("error_type".into(), json!(job.error_type));
        m.insert("failure_comment".into(), json!(job.error_msg));
    }
    if let Some(d) = &job.actual_device {
        m.insert("device".into(), json!(d));
    } else if let Target::Device(d) = &job.target {
        m.insert("device".into(), json!(d));
    }
    if let Some(w) = worker {
        m.insert("worker".into(), json!(w));
    }
    if let Some(t) = device_type {
        m.insert("device_type".into(), json!(t));
    }
    if let Some(t) = job.start_time {
        m.insert("start_time".into(), json!(iso_micros(t * 1000)));
    }
    if let Some(t) = job.end_time {
        m.insert("end_time".into(), json!(iso_micros(t * 1000)));
    }
    Value::Object(m)
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Microseconds since the epoch as Python's `datetime.isoformat()` of an aware UTC time:
/// `2026-08-21T16:25:29.123456+00:00`.
pub fn iso_micros(us: u64) -> String {
    let secs = us / 1_000_000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        us % 1_000_000
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A random node id for version-1 UUIDs (multicast bit set, as RFC 4122 asks of a node that
/// is not a MAC address).
pub fn uuid_node() -> [u8; 6] {
    let mut node = [0u8; 6];
    if getrandom::getrandom(&mut node).is_err() {
        let t = now_micros().to_le_bytes();
        node = [t[0], t[1], t[2], t[3], t[4], t[5]];
    }
    node[0] |= 0x01;
    node
}

/// A version-1 UUID (`uuid.uuid1()`): 100 ns intervals since 1582-10-15, a clock sequence
/// that makes every UUID of this process distinct, and `node`.
pub fn uuid1(node: &[u8; 6]) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    // 1582-10-15 to 1970-01-01 in 100 ns
    const GREGORIAN: u64 = 0x01B2_1DD2_1381_4000;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_nanos() / 100) as u64)
        .unwrap_or(0)
        + GREGORIAN;
    // strictly increasing timestamps: two UUIDs in the same 100 ns differ
    let mut prev = LAST.load(Ordering::Relaxed);
    let t = loop {
        let t = now.max(prev + 1);
        match LAST.compare_exchange(prev, t, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break t,
            Err(p) => prev = p,
        }
    };
    let clock_seq: u16 = 0x8000 | (std::process::id() as u16 & 0x3FFF);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        t & 0xFFFF_FFFF,
        (t >> 32) & 0xFFFF,
        ((t >> 48) & 0x0FFF) | 0x1000,
        clock_seq,
        node[0],
        node[1],
        node[2],
        node[3],
        node[4],
        node[5]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_and_uuid_have_python_shapes() {
        assert_eq!(iso_micros(0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(
            iso_micros(1_782_059_129_123_456),
            "2026-06-21T16:25:29.123456+00:00"
        );
        let node = uuid_node();
        let (a, b) = (uuid1(&node), uuid1(&node));
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "1", "version 1: {a}");
    }
}
