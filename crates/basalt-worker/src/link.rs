//! The worker's end of the lab's link: a CURVE DEALER pinned to the master's key, on a thread
//! of its own (ZeroMQ sockets are not async), bridged to the daemon by channels. The socket
//! reconnects by itself. Messages go only to a connected master (`ZMQ_IMMEDIATE`): what the
//! daemon sends while the master is away is dropped, and each (re)connection is reported so the
//! daemon says hello again; the master's Welcome then says what to send again (records are kept
//! until acknowledged, ends until acknowledged). The thread sleeps until a message arrives, one
//! is queued ([`basalt_link::outbox`]) or a handshake ends: an idle worker costs no CPU.

use basalt_link::cert::{Keypair, PublicKey};
use basalt_link::outbox::{outbox, Inbox, Outbox};
use basalt_link::pump::{Pump, STOP_WITHIN_MS};
use basalt_link::zap::{self, Handshake, HandshakeWatch};
use basalt_proto::{decode, encode, MasterMsg, WorkerMsg};
use std::sync::atomic::{AtomicBool, Ordering};

/// What the link tells the daemon.
#[derive(Debug)]
pub enum LinkEvent {
    Message(Box<MasterMsg>),
    /// A message that could not be decoded (logged; the link goes on).
    Garbage(String),
    /// A connection to the master is up (again): time for a Hello.
    Connected,
    /// The master refused the connection's credentials, or the handshake failed.
    Handshake(Handshake),
}

/// The running link; stops its thread when dropped.
pub struct Link {
    out: Outbox<WorkerMsg>,
    _pump: Pump,
}

impl Link {
    /// Connects to `endpoint` as `me`, trusting only `master`; events go to `events`.
    pub fn start(
        endpoint: &str,
        me: &Keypair,
        master: &PublicKey,
        events: tokio::sync::mpsc::UnboundedSender<LinkEvent>,
    ) -> Result<Link, zmq::Error> {
        let ctx = zmq::Context::new();
        let socket = zap::client_socket(&ctx, zmq::DEALER, me, master)?;
        socket.set_immediate(true)?;
        socket.set_reconnect_ivl(100)?;
        socket.set_reconnect_ivl_max(2000)?;
        // watched before it connects: the first connection's event is not missed
        let watch = HandshakeWatch::new(&ctx, &socket, "worker")?;
        socket.connect(endpoint)?;
        let (out, inbox) = outbox::<WorkerMsg>(&ctx)?;
        let pump = Pump::spawn("link", move |stop| {
            // the context lives as long as its sockets, on this thread
            let _ctx = ctx;
            pump(&socket, &watch, &inbox, &events, stop);
        })
        .map_err(|_| zmq::Error::EMFILE)?;
        Ok(Link { out, _pump: pump })
    }

    /// Queues a message for the master.
    pub fn send(&self, msg: WorkerMsg) {
        let _ = self.out.send(msg);
    }
}

fn pump(
    socket: &zmq::Socket,
    watch: &HandshakeWatch,
    out: &Inbox<WorkerMsg>,
    events: &tokio::sync::mpsc::UnboundedSender<LinkEvent>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        let mut items = [
            socket.as_poll_item(zmq::POLLIN),
            watch.poll_item(),
            out.poll_item(),
        ];
        // EINTR: look again
        let _ = zmq::poll(&mut items, STOP_WITHIN_MS);
        let readable = items[0].is_readable();
        // never blocks: with no master connected a message is dropped (see the module doc)
        for msg in out.drain() {
            let _ = socket.send(encode(&msg), zmq::DONTWAIT);
        }
        if readable {
            while let Ok(bytes) = socket.recv_bytes(zmq::DONTWAIT) {
                let event = match decode::<MasterMsg>(&bytes) {
                    Ok(m) => LinkEvent::Message(Box::new(m)),
                    Err(e) => LinkEvent::Garbage(e.to_string()),
                };
                if events.send(event).is_err() {
                    return;
                }
            }
        }
        while let Some(h) = watch.next(0) {
            let event = match h {
                Handshake::Succeeded { .. } => LinkEvent::Connected,
                other => LinkEvent::Handshake(other),
            };
            if events.send(event).is_err() {
                return;
            }
        }
    }
}
