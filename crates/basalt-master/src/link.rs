//! The master's end of the lab's link: a CURVE ROUTER (`--workers`, default
//! `tcp://127.0.0.1:5556`) whose clients the ZAP handler admits by their key file in the
//! admitted folder, on a thread of its own (ZeroMQ sockets are not async), bridged to the
//! daemon by channels. Every message arrives with the name the worker was admitted under (its
//! key file's name, from ZAP): a worker cannot speak for another, whatever its Hello says.
//! The thread sleeps until a worker's message arrives or one is queued for a worker.

use basalt_link::cert::Keypair;
use basalt_link::outbox::{outbox, Inbox, Outbox};
use basalt_link::pump::{Pump, STOP_WITHIN_MS};
use basalt_link::zap::{self, Decision};
use basalt_proto::{decode, encode, MasterMsg, WorkerMsg};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// A connection (ZeroMQ's routing id of a worker's socket).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Conn(pub Vec<u8>);

/// What the link tells the daemon.
#[derive(Debug)]
pub enum LinkEvent {
    /// A message from `worker` (the authenticated name) on `conn`.
    Message {
        conn: Conn,
        worker: String,
        msg: WorkerMsg,
    },
    /// A message that could not be read: the daemon logs it; the link goes on.
    Garbage {
        conn: Conn,
        worker: String,
        error: String,
    },
    /// The ZAP handler admitted or refused a connection.
    Auth(Decision),
}

/// Why the link could not start.
#[derive(Debug, thiserror::Error)]
#[error("workers endpoint {endpoint}: {source}")]
pub struct LinkError {
    pub endpoint: String,
    pub source: zmq::Error,
}

/// The running link; stops its thread when dropped.
pub struct WorkerLink {
    out: Outbox<(Conn, MasterMsg)>,
    endpoint: String,
    _pump: Pump,
}

impl WorkerLink {
    /// Binds `endpoint` as `key`, admitting the keys of `admitted`; events go to `events`.
    pub fn start(
        endpoint: &str,
        key: &Keypair,
        admitted: PathBuf,
        events: tokio::sync::mpsc::UnboundedSender<LinkEvent>,
    ) -> Result<WorkerLink, LinkError> {
        let err = |source| LinkError {
            endpoint: endpoint.to_string(),
            source,
        };
        let ctx = zmq::Context::new();
        let auth = events.clone();
        let handler = zap::start(&ctx, admitted, move |d| {
            let _ = auth.send(LinkEvent::Auth(d));
        })
        .map_err(err)?;
        let socket = zap::server(&ctx, zmq::ROUTER, key, endpoint).map_err(err)?;
        // an unknown routing id is an error, not a silent drop
        socket.set_router_mandatory(true).map_err(err)?;
        let bound = socket
            .get_last_endpoint()
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| endpoint.to_string());
        let (out, inbox) = outbox::<(Conn, MasterMsg)>(&ctx).map_err(err)?;
        let pump = Pump::spawn("workers", move |stop| {
            let _ctx = ctx;
            let _zap = handler;
            pump(&socket, &inbox, &events, stop);
        })
        .map_err(|_| err(zmq::Error::EMFILE))?;
        Ok(WorkerLink {
            out,
            endpoint: bound,
            _pump: pump,
        })
    }

    /// The endpoint as bound (with the port when it was `*` or 0).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Queues a message for the worker on `conn` (dropped if it is gone).
    pub fn send(&self, conn: &Conn, msg: MasterMsg) {
        let _ = self.out.send((conn.clone(), msg));
    }
}

fn pump(
    socket: &zmq::Socket,
    out: &Inbox<(Conn, MasterMsg)>,
    events: &tokio::sync::mpsc::UnboundedSender<LinkEvent>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        let mut items = [socket.as_poll_item(zmq::POLLIN), out.poll_item()];
        // EINTR: look again
        let _ = zmq::poll(&mut items, STOP_WITHIN_MS);
        let readable = items[0].is_readable();
        for (conn, msg) in out.drain() {
            let body = encode(&msg);
            // a worker that is gone (EHOSTUNREACH) or slow (EAGAIN): dropped; it says hello
            // again and the protocol sends what matters again
            let _ = socket.send_multipart([conn.0.as_slice(), body.as_slice()], zmq::DONTWAIT);
        }
        if !readable {
            continue;
        }
        while let Some((conn, worker, body)) = receive(socket) {
            let event = match decode::<WorkerMsg>(&body) {
                Ok(msg) => LinkEvent::Message { conn, worker, msg },
                Err(e) => LinkEvent::Garbage {
                    conn,
                    worker,
                    error: e.to_string(),
                },
            };
            if events.send(event).is_err() {
                return;
            }
        }
    }
}

/// One message: (routing id, the worker's authenticated name, body); `None` when there is
/// nothing to read. Messages of other shapes are skipped.
fn receive(socket: &zmq::Socket) -> Option<(Conn, String, Vec<u8>)> {
    loop {
        let id = socket.recv_msg(zmq::DONTWAIT).ok()?;
        if !id.get_more() {
            continue;
        }
        let mut body = socket.recv_msg(0).ok()?;
        let worker = body.gets("User-Id").unwrap_or_default().to_string();
        let mut extra = body.get_more();
        while extra {
            // more frames than a DEALER sends: drain them, drop the message
            match socket.recv_msg(0) {
                Ok(m) => extra = m.get_more(),
                Err(_) => break,
            }
        }
        if body.get_more() {
            continue;
        }
        return Some((Conn(id.to_vec()), worker, body.to_vec()));
    }
}
