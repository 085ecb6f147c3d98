//! Held boards (reservations): what the worker adds to a job process for a Start with a lease.
//! The job's process is `basalt hold` ([`crate::job`] builds its arguments); here are the
//! console ports it is given ([`PortPool`]) and the link to its control socket
//! ([`control_link`]): the master's `hold` requests go in, its `hold_reply` and `hold_state`
//! come out and go to the master.

use basalt_proto::{Hold, JobId, MasterMsg, WorkerMsg};
use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// How the worker serves held boards' consoles (`--console-ports`, `--console-address`,
/// `--advertise-host`, `--console-buffer`).
#[derive(Clone, Debug)]
pub struct HoldConfig {
    /// The ports given to leases, one each.
    pub ports: PortPool,
    /// Where the consoles listen.
    pub address: std::net::IpAddr,
    /// The consoles' host as holders are told it.
    pub advertise_host: String,
    /// The ring buffer of each console, in bytes.
    pub buffer: u64,
}

/// The console ports of `--console-ports FROM-TO`: each lease takes a free one and gives it
/// back when its hold ends.
#[derive(Clone, Debug)]
pub struct PortPool {
    range: RangeInclusive<u16>,
    used: Arc<Mutex<BTreeSet<u16>>>,
}

/// A port taken from a [`PortPool`]; free again when dropped.
#[derive(Debug)]
pub struct Port {
    port: u16,
    used: Arc<Mutex<BTreeSet<u16>>>,
}

impl Port {
    /// The port number.
    pub fn get(&self) -> u16 {
        self.port
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if let Ok(mut u) = self.used.lock() {
            u.remove(&self.port);
        }
    }
}

impl PortPool {
    /// The ports `from..=to`.
    pub fn new(range: RangeInclusive<u16>) -> PortPool {
        PortPool {
            range,
            used: Arc::default(),
        }
    }

    /// Parses `FROM-TO` (both included, FROM ≤ TO, no port 0).
    pub fn parse(text: &str) -> Result<PortPool, String> {
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| format!("`{text}`: expected FROM-TO, e.g. 7100-7199"))?;
        let port = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("`{text}`: `{s}` is not a port"))
        };
        let (from, to) = (port(a)?, port(b)?);
        if from > to {
            return Err(format!("`{text}`: {from} is above {to}"));
        }
        Ok(PortPool::new(from..=to))
    }

    /// The range, as given.
    pub fn range(&self) -> &RangeInclusive<u16> {
        &self.range
    }

    /// A free port on `address` (not taken by another lease, and bindable now).
    pub fn take(&self, address: std::net::IpAddr) -> Option<Port> {
        let mut used = self.used.lock().ok()?;
        let port = self
            .range
            .clone()
            .find(|p| !used.contains(p) && std::net::TcpListener::bind((address, *p)).is_ok())?;
        used.insert(port);
        Some(Port {
            port,
            used: self.used.clone(),
        })
    }
}

/// The control socket of a hold's job directory.
pub const CONTROL_SOCKET: &str = "control.sock";
/// The lease file of a hold's job directory (mode 0600).
pub const LEASE_FILE: &str = "lease.json";

/// How long `basalt hold` has to make its control socket.
const CONNECT_WITHIN: Duration = Duration::from_secs(60);

/// Connects to the control socket at `path` (waiting for `basalt hold` to make it), writes
/// the `requests`, and sends every `hold_reply` / `hold_state` of job `job_id` it reads to
/// `events`. Ends when the socket closes (the hold ended) or `requests` closes.
pub async fn control_link(
    path: PathBuf,
    job_id: JobId,
    mut requests: mpsc::UnboundedReceiver<Hold>,
    events: impl Fn(WorkerMsg),
) {
    let deadline = tokio::time::Instant::now() + CONNECT_WITHIN;
    let sock = loop {
        match UnixStream::connect(&path).await {
            Ok(s) => break s,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                tracing::warn!(
                    job_id = job_id.0,
                    "job {job_id}: no control socket {}: {e}",
                    path.display()
                );
                return;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let (rd, mut wr) = sock.into_split();
    let mut lines = BufReader::new(rd).lines();
    loop {
        tokio::select! {
            req = requests.recv() => {
                let Some(req) = req else { return };
                let mut line = match serde_json::to_vec(&MasterMsg::Hold(req)) {
                    Ok(l) => l,
                    Err(_) => continue,
                };
                line.push(b'\n');
                if wr.write_all(&line).await.is_err() {
                    return;
                }
            }
            line = lines.next_line() => {
                let Ok(Some(line)) = line else { return };
                match serde_json::from_str::<WorkerMsg>(&line) {
                    Ok(m @ WorkerMsg::HoldState(_)) | Ok(m @ WorkerMsg::HoldReply(_)) if held_job(&m) == Some(job_id) => events(m),
                    _ => tracing::warn!(job_id = job_id.0, "job {job_id}: an unexpected line on the control socket"),
                }
            }
        }
    }
}

fn held_job(m: &WorkerMsg) -> Option<JobId> {
    match m {
        WorkerMsg::HoldState(s) => Some(s.job_id),
        WorkerMsg::HoldReply(r) => Some(r.job_id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn ports_are_parsed_taken_and_given_back() {
        assert!(PortPool::parse("7100").is_err());
        assert!(PortPool::parse("7200-7100").is_err());
        assert!(PortPool::parse("0-10").is_err());
        assert!(PortPool::parse("a-b").is_err());
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // a port someone else holds is not given
        let other = std::net::TcpListener::bind((local, 0)).unwrap();
        let busy = other.local_addr().unwrap().port();
        assert!(PortPool::parse(&format!("{busy}-{busy}"))
            .unwrap()
            .take(local)
            .is_none());
        drop(other);
        // a free one: given once, and again when given back
        let pool = PortPool::parse(&format!("{busy}-{busy}")).unwrap();
        let a = pool.take(local).expect("the port is free now");
        assert_eq!(a.get(), busy);
        assert!(pool.take(local).is_none(), "taken by a lease");
        drop(a);
        assert_eq!(pool.take(local).map(|p| p.get()), Some(busy));
    }
}
