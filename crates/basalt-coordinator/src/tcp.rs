//! The coordinator's TCP front: one request per connection, as LAVA's server; held requests
//! (`basalt_hold`) are answered the moment the state machine releases them (a waiter per
//! held connection, woken by the change), or `wait` at their timeout. Every connection has a
//! read deadline and a size limit, and their number is bounded, so a bad client cannot stall
//! the others (LAVA's server is single-threaded and blocks on a slow client).

use crate::server::{Coordinator, HoldId};
use basalt_proto::coordinator::{body_len, parse_header, Json, Reply, Request, HEADER_LEN};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// When set, a request must carry `"basalt_token": <this>` or it is answered `nack`.
    pub token: Option<String>,
    /// The poll delay polling clients are told to use (LAVA's config key; logged at start,
    /// the server itself never waits on it).
    pub poll_delay: u32,
    /// A request must arrive whole within this time of the connection's start.
    pub read_timeout: Duration,
    /// The longest request accepted, in characters.
    pub max_request: usize,
    /// The longest a request is held (also when its `timeout` asks for longer).
    pub max_hold: Duration,
    /// Connections served at once (held ones included); more are closed at once.
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            token: None,
            poll_delay: 3,
            read_timeout: Duration::from_secs(10),
            max_request: 1 << 20,
            max_hold: Duration::from_secs(600),
            max_connections: 4096,
        }
    }
}

/// The state shared by the connections: the state machine and the waiters of held requests.
#[derive(Default)]
struct Shared {
    coordinator: Coordinator,
    waiters: HashMap<HoldId, oneshot::Sender<Reply>>,
    next_id: HoldId,
}

impl Shared {
    /// Hands the replies the last change released to their waiting connections.
    fn wake(&mut self) {
        for (id, reply) in self.coordinator.take_released() {
            if let Some(tx) = self.waiters.remove(&id) {
                // a waiter gone meanwhile is fine: its connection is closing
                let _ = tx.send(reply);
            }
        }
    }
}

type SharedRef = Arc<Mutex<Shared>>;

fn lock(shared: &SharedRef) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves the coordinator on `listener` until the future is dropped (or accepting fails
/// for good).
pub async fn serve(listener: TcpListener, config: Config) -> std::io::Result<()> {
    let shared: SharedRef = Arc::default();
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    tracing::info!(
        addr = ?listener.local_addr().ok(),
        poll_delay = config.poll_delay,
        token = config.token.is_some(),
        "coordinator listening"
    );
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: keep serving the connections we have
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many connections: closed");
            continue;
        };
        let (shared, config) = (shared.clone(), config.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(stream, &shared, &config).await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(slot);
        });
    }
}

/// Binds `addr` ("HOST:PORT") and serves there (for `basalt coordinator` and the master).
pub async fn serve_on(addr: &str, config: Config) -> std::io::Result<()> {
    serve(TcpListener::bind(addr).await?, config).await
}

/// Why a connection ended without a reply.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Frame(#[from] basalt_proto::coordinator::FrameError),
    #[error("no whole request within the read timeout")]
    Timeout,
    #[error("the client closed before its request was whole")]
    Eof,
}

/// Reads one framed request: the header, then the body up to its announced characters.
async fn read_request(stream: &mut TcpStream, limit: usize) -> Result<Json, ConnError> {
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header).await?;
    let chars = parse_header(&header, limit)?;
    let mut body = Vec::with_capacity(chars.min(64 * 1024));
    let mut buf = [0u8; 4096];
    loop {
        if let Some(n) = body_len(&body, chars)? {
            return Ok(Json::parse(&body[..n])?);
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(ConnError::Eof);
        }
        body.extend_from_slice(&buf[..n]);
    }
}

/// One connection: one request, one reply (none for `complete`), then close.
async fn connection(
    mut stream: TcpStream,
    shared: &SharedRef,
    config: &Config,
) -> Result<(), ConnError> {
    let json = tokio::time::timeout(
        config.read_timeout,
        read_request(&mut stream, config.max_request),
    )
    .await
    .map_err(|_| ConnError::Timeout)??;
    let request = Request::from_json(&json);
    let reply = if config.token.is_some() && request.basalt_token != config.token {
        tracing::warn!(client = ?request.client_name, "request without the right token");
        Reply::Nack
    } else if request.basalt_hold && request.holdable() {
        match hold(&mut stream, shared, config, request).await {
            Some(r) => r,
            None => return Ok(()), // the client left: forgotten
        }
    } else {
        let mut s = lock(shared);
        let reply = s.coordinator.handle(&request);
        s.wake();
        reply
    };
    let frame = reply.to_frame();
    if !frame.is_empty() {
        stream.write_all(&frame).await?;
    }
    stream.shutdown().await?;
    Ok(())
}

/// A held request: its reply once released, `wait` at its timeout, `None` if the client
/// closed its side meanwhile.
async fn hold(
    stream: &mut TcpStream,
    shared: &SharedRef,
    config: &Config,
    request: Request,
) -> Option<Reply> {
    let hold_for = request
        .timeout
        .filter(|t| *t > 0.0)
        .map(|t| Duration::from_secs_f64(t.min(config.max_hold.as_secs_f64())))
        .unwrap_or(config.max_hold);
    let (tx, mut rx) = oneshot::channel();
    let id = {
        let mut s = lock(shared);
        s.next_id += 1;
        let id = s.next_id;
        let now = s.coordinator.hold(id, request);
        s.wake();
        if let Some(reply) = now {
            return Some(reply);
        }
        s.waiters.insert(id, tx);
        id
    };
    let gone = async {
        // a holding client keeps its write side open; EOF or an error means it left
        let mut buf = [0u8; 256];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        reply = &mut rx => return reply.ok(),
        _ = tokio::time::sleep(hold_for) => {}
        _ = gone => {
            let mut s = lock(shared);
            s.coordinator.forget(id);
            s.waiters.remove(&id);
            return None;
        }
    }
    let mut s = lock(shared);
    if s.coordinator.forget(id) {
        s.waiters.remove(&id);
        return Some(Reply::Wait);
    }
    drop(s);
    // released in the same instant as the timeout: its reply is in the channel
    Some(rx.try_recv().unwrap_or(Reply::Wait))
}
