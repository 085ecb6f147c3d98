//! The master's ZAP handler (ZeroMQ RFC 27) and the CURVE sockets on both ends.
//!
//! The handler answers libzmq's authentication requests for the sockets of one context: a
//! CURVE client is admitted when its public key is one of the `*.key` files of the admitted
//! folder, read again at every request (a key added there is admitted at once, a key removed
//! is refused at the worker's next connection). A plaintext (NULL) client never gets this far:
//! a CURVE server refuses it by mechanism. Every decision is reported through a callback so
//! the daemon logs it with the reason; the refused client sees only silence, so it watches its
//! own socket's handshake events ([`HandshakeWatch`]) to log why.

use crate::cert::{read_public_dir, Keypair, PublicKey};
use crate::pump::Pump;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// The ZAP domain basalt's CURVE servers use.
pub const DOMAIN: &str = "basalt";

/// One decision of the handler, for the daemon's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Admitted: the key's file name (the worker's name) and the peer address.
    Admitted {
        name: String,
        key: PublicKey,
        address: String,
    },
    /// Refused, with the reason.
    Refused { reason: String, address: String },
}

/// The running handler; stops (and frees the ZAP endpoint) when dropped.
pub struct ZapHandler {
    _pump: Pump,
}

/// Starts the handler for the sockets of `ctx` (before any CURVE server binds), admitting the
/// keys of `admitted`; `report` gets every decision.
pub fn start(
    ctx: &zmq::Context,
    admitted: PathBuf,
    report: impl Fn(Decision) + Send + 'static,
) -> Result<ZapHandler, zmq::Error> {
    let socket = ctx.socket(zmq::REP)?;
    socket.bind("inproc://zeromq.zap.01")?;
    let pump = Pump::spawn("zap", move |stop| serve(socket, admitted, stop, report))
        .map_err(|_| zmq::Error::EMFILE)?;
    Ok(ZapHandler { _pump: pump })
}

fn serve(socket: zmq::Socket, admitted: PathBuf, stop: &AtomicBool, report: impl Fn(Decision)) {
    while !stop.load(Ordering::SeqCst) {
        match socket.poll(zmq::POLLIN, 100) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(zmq::Error::ETERM) => return,
            Err(_) => continue,
        }
        let Ok(frames) = socket.recv_multipart(0) else {
            continue;
        };
        let (reply, decision) = decide(&frames, &admitted);
        if let Some(d) = decision {
            report(d);
        }
        if socket.send_multipart(reply, 0).is_err() {
            // a REP socket must answer before it can read again: nothing to do but go on
            continue;
        }
    }
}

/// The reply frames to one ZAP request, and the decision to report.
fn decide(frames: &[Vec<u8>], admitted: &std::path::Path) -> (Vec<Vec<u8>>, Option<Decision>) {
    let text = |i: usize| {
        frames
            .get(i)
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .unwrap_or_default()
    };
    let request_id = frames.get(1).cloned().unwrap_or_default();
    let reply = |code: &str, status: &str, user: &str| {
        vec![
            b"1.0".to_vec(),
            request_id.clone(),
            code.as_bytes().to_vec(),
            status.as_bytes().to_vec(),
            user.as_bytes().to_vec(),
            Vec::new(),
        ]
    };
    let address = text(3);
    let refuse = |reason: String| {
        (
            reply("400", &reason, ""),
            Some(Decision::Refused {
                reason,
                address: address.clone(),
            }),
        )
    };
    if frames.len() < 6 || frames[0] != b"1.0" {
        return refuse(format!("malformed ZAP request ({} frames)", frames.len()));
    }
    if text(5) != "CURVE" {
        return refuse(format!("mechanism {} (basalt admits CURVE only)", text(5)));
    }
    let Some(key) = frames
        .get(6)
        .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
        .map(PublicKey)
    else {
        return refuse("CURVE request without a 32-byte key".into());
    };
    let (keys, _errors) = read_public_dir(admitted);
    match keys.into_iter().find(|(_, k)| *k == key) {
        Some((name, key)) => (
            reply("200", "OK", &name),
            Some(Decision::Admitted { name, key, address }),
        ),
        None => refuse(format!(
            "key {key} is not admitted (no such .key file in {})",
            admitted.display()
        )),
    }
}

/// A CURVE server socket of `kind` (the master's ROUTER) bound to `endpoint`, its clients
/// checked by the ZAP handler of its context.
pub fn server(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    me: &Keypair,
    endpoint: &str,
) -> Result<zmq::Socket, zmq::Error> {
    let s = ctx.socket(kind)?;
    s.set_curve_server(true)?;
    s.set_curve_secretkey(me.secret_bytes())?;
    s.set_zap_domain(DOMAIN)?;
    s.set_linger(0)?;
    s.bind(endpoint)?;
    Ok(s)
}

/// A CURVE client socket of `kind` (a worker's DEALER) connected to `endpoint`, pinned to the
/// server's public key: it talks to that server only.
pub fn client(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    me: &Keypair,
    server: &PublicKey,
    endpoint: &str,
) -> Result<zmq::Socket, zmq::Error> {
    let s = client_socket(ctx, kind, me, server)?;
    s.connect(endpoint)?;
    Ok(s)
}

/// [`client`] before it connects: watch it ([`HandshakeWatch`]) first, then `connect`, so that
/// no handshake event is missed.
pub fn client_socket(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    me: &Keypair,
    server: &PublicKey,
) -> Result<zmq::Socket, zmq::Error> {
    let s = ctx.socket(kind)?;
    s.set_curve_serverkey(&server.0)?;
    s.set_curve_publickey(&me.public.0)?;
    s.set_curve_secretkey(me.secret_bytes())?;
    s.set_linger(0)?;
    Ok(s)
}

/// A socket's handshake events: how a client learns that the server refused it.
pub struct HandshakeWatch {
    pair: zmq::Socket,
}

/// What a handshake came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handshake {
    Succeeded {
        endpoint: String,
    },
    /// The server refused the credentials (key not admitted, ZAP said no).
    RefusedAuth {
        endpoint: String,
        status: u32,
    },
    /// The peers did not agree on the mechanism or the protocol (plaintext against CURVE, a
    /// wrong server key).
    FailedProtocol {
        endpoint: String,
        code: u32,
    },
    Failed {
        endpoint: String,
        errno: u32,
    },
}

impl HandshakeWatch {
    /// Watches `socket` (on `ctx`) under a unique inproc name `name`.
    pub fn new(ctx: &zmq::Context, socket: &zmq::Socket, name: &str) -> Result<Self, zmq::Error> {
        let endpoint = format!("inproc://basalt-monitor-{name}");
        let events = zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32;
        socket.monitor(&endpoint, events)?;
        let pair = ctx.socket(zmq::PAIR)?;
        pair.connect(&endpoint)?;
        Ok(HandshakeWatch { pair })
    }

    /// What to hand `zmq::poll`: readable when a handshake event is waiting.
    pub fn poll_item(&self) -> zmq::PollItem<'_> {
        self.pair.as_poll_item(zmq::POLLIN)
    }

    /// The next handshake event within `timeout_ms`, if any.
    pub fn next(&self, timeout_ms: i64) -> Option<Handshake> {
        if self.pair.poll(zmq::POLLIN, timeout_ms).ok()? == 0 {
            return None;
        }
        let frames = self.pair.recv_multipart(0).ok()?;
        let head = frames.first()?;
        if head.len() < 6 {
            return None;
        }
        let event = u16::from_le_bytes([head[0], head[1]]);
        let value = u32::from_le_bytes([head[2], head[3], head[4], head[5]]);
        let endpoint = frames
            .get(1)
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .unwrap_or_default();
        Some(match zmq::SocketEvent::from_raw(event) {
            zmq::SocketEvent::HANDSHAKE_SUCCEEDED => Handshake::Succeeded { endpoint },
            zmq::SocketEvent::HANDSHAKE_FAILED_AUTH => Handshake::RefusedAuth {
                endpoint,
                status: value,
            },
            zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL => Handshake::FailedProtocol {
                endpoint,
                code: value,
            },
            _ => Handshake::Failed {
                endpoint,
                errno: value,
            },
        })
    }
}
