//! The control socket of `basalt hold`: how its worker drives it. A unix stream socket (mode
//! 0600, in the worker's private job directory) taking one client at a time; a second one is
//! closed at once. JSON lines both ways, in the worker ⇄ master protocol's own encoding:
//!
//! * the worker sends `hold` messages (`{"type": "hold", "job_id": …, "request_id": …,
//!   "action": {"action": "boot", "definition": …, "timeout_secs": …}}`, `exec`,
//!   `power_off`);
//! * `basalt hold` sends one `hold_reply` per request and a `hold_state` whenever the board's
//!   state changes, and one when a client connects.
//!
//! A line that is not a `hold` of this job is answered with a `hold_reply` error (its
//! `request_id` when it has one, else 0); a line longer than [`MAX_LINE`] ends the client's
//! connection.

use basalt_proto::{Hold, HoldReply, HoldResult, JobId, MasterMsg, WorkerMsg};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// The longest request line taken (a boot's job definition is in it).
pub const MAX_LINE: usize = 16 << 20;

/// What the control socket brings.
#[derive(Debug)]
pub enum ControlIn {
    /// A client connected: it wants the current state.
    Connected,
    /// A request of this job.
    Request(Hold),
}

/// The control socket, served by a task of its own.
pub struct Control {
    requests: mpsc::Receiver<ControlIn>,
    events: mpsc::UnboundedSender<WorkerMsg>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Control {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why the control socket could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the control socket {path}: {source}")]
pub struct ControlError {
    path: String,
    source: std::io::Error,
}

impl Control {
    /// Listens on `path` (a stale socket there is replaced) for the worker of job `job_id`.
    pub fn bind(path: &Path, job_id: JobId) -> Result<Control, ControlError> {
        let err = |source| ControlError {
            path: path.display().to_string(),
            source,
        };
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if meta.file_type().is_socket() {
                std::fs::remove_file(path).map_err(err)?;
            }
        }
        let listener = UnixListener::bind(path).map_err(err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        let (req_tx, requests) = mpsc::channel(16);
        let (events, ev_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve(listener, job_id, req_tx, ev_rx));
        Ok(Control {
            requests,
            events,
            task,
        })
    }

    /// The next request (or connection); `None` once the socket's task is gone.
    pub async fn next(&mut self) -> Option<ControlIn> {
        self.requests.recv().await
    }

    /// Sends a reply or a state to the connected client (dropped when none is).
    pub fn send(&self, msg: WorkerMsg) {
        let _ = self.events.send(msg);
    }

    /// A sender for tasks that answer on their own (an exec).
    pub fn sender(&self) -> mpsc::UnboundedSender<WorkerMsg> {
        self.events.clone()
    }
}

async fn serve(
    listener: UnixListener,
    job_id: JobId,
    requests: mpsc::Sender<ControlIn>,
    mut events: mpsc::UnboundedReceiver<WorkerMsg>,
) {
    let mut client: Option<UnixStream> = None;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((sock, _)) = accepted else { continue };
                if client.is_some() {
                    // one client: the worker
                    drop(sock);
                    continue;
                }
                client = Some(sock);
                pending.clear();
                if requests.send(ControlIn::Connected).await.is_err() {
                    return;
                }
            }
            ev = events.recv() => {
                let Some(ev) = ev else { return };
                if let Some(sock) = client.as_mut() {
                    if write_msg(sock, &ev).await.is_err() {
                        client = None;
                    }
                }
            }
            n = read_some(client.as_mut(), &mut buf) => {
                let n = match n {
                    Ok(n) if n > 0 => n,
                    _ => {
                        client = None;
                        continue;
                    }
                };
                pending.extend_from_slice(&buf[..n]);
                while let Some(at) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=at).collect();
                    match parse(&line[..at], job_id) {
                        Ok(Some(hold)) => {
                            if requests.send(ControlIn::Request(hold)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(reply) => {
                            if let Some(sock) = client.as_mut() {
                                let _ = write_msg(sock, &WorkerMsg::HoldReply(reply)).await;
                            }
                        }
                    }
                }
                if pending.len() > MAX_LINE {
                    client = None;
                    pending.clear();
                }
            }
        }
    }
}

/// Reads from the client; pending forever without one.
async fn read_some(client: Option<&mut UnixStream>, buf: &mut [u8]) -> std::io::Result<usize> {
    match client {
        Some(c) => c.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn write_msg(sock: &mut UnixStream, msg: &WorkerMsg) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    sock.write_all(&line).await
}

/// A request line: the `hold` of this job, nothing for a blank line, or the error reply.
fn parse(line: &[u8], job_id: JobId) -> Result<Option<Hold>, HoldReply> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let error = |request_id, error: String| HoldReply {
        job_id,
        request_id,
        result: HoldResult::Error { error },
    };
    match serde_json::from_slice::<MasterMsg>(line) {
        Ok(MasterMsg::Hold(h)) if h.job_id == job_id => Ok(Some(h)),
        Ok(MasterMsg::Hold(h)) => Err(error(
            h.request_id,
            format!("this board is held for job {job_id}, not job {}", h.job_id),
        )),
        Ok(_) => Err(error(
            0,
            "the control socket takes hold requests only".into(),
        )),
        Err(e) => {
            // its request id, if the line has one, so the worker can answer the master
            let id = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("request_id").and_then(|i| i.as_u64()))
                .unwrap_or(0);
            Err(error(id, format!("not a hold request: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_proto::HoldAction;

    #[test]
    fn requests_of_this_job_only() {
        let job = JobId(7);
        let ok = br#"{"type":"hold","job_id":7,"request_id":3,"action":{"action":"exec","command":"uname","timeout_secs":5}}"#;
        let h = parse(ok, job).unwrap().unwrap();
        assert_eq!(h.request_id, 3);
        assert_eq!(
            h.action,
            HoldAction::Exec {
                command: "uname".into(),
                timeout_secs: 5
            }
        );
        assert!(parse(b"  ", job).unwrap().is_none());
        let other = br#"{"type":"hold","job_id":8,"request_id":4,"action":{"action":"power_off"}}"#;
        let e = parse(other, job).unwrap_err();
        assert_eq!(e.request_id, 4);
        assert!(
            matches!(e.result, HoldResult::Error { ref error } if error.contains("job 7, not job 8"))
        );
        let bad = br#"{"type":"hold","job_id":7,"request_id":9,"action":{"action":"dance"}}"#;
        assert_eq!(parse(bad, job).unwrap_err().request_id, 9);
        assert_eq!(parse(b"{not json", job).unwrap_err().request_id, 0);
        let cancel = br#"{"type":"cancel","job_id":7}"#;
        assert_eq!(parse(cancel, job).unwrap_err().request_id, 0);
    }
}
