//! A coordinator client (LAVA's `lava_dispatcher/protocols/multinode.py`, `MultinodeProtocol`):
//! one TCP connection per request, the base message of the client's [`Identity`], and
//! `basalt_hold` so that basalt's server answers only when satisfied. Against LAVA's server
//! (which answers `wait`) it polls every `poll_delay`, as LAVA's client does.

use basalt_proto::coordinator::{
    body_len, frame, parse_header, Identity, Json, Reply, HEADER_LEN, MAX_CLIENT_MESSAGE,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// key → value of one message.
pub type Message = BTreeMap<String, String>;
/// sender client → its message.
pub type Replies = BTreeMap<String, Message>;

/// LAVA's `LAVA_MULTINODE_SYSTEM_TIMEOUT`: the timeout of `clear_group`.
pub const SYSTEM_TIMEOUT: Duration = Duration::from_secs(90);

/// The longest reply accepted (LAVA's server frames up to 0xFFFFFFFF characters).
const MAX_REPLY: usize = 64 << 20;

/// Why a call failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    /// The coordinator refused the request.
    #[error("the coordinator answered nack")]
    Nack,
    /// Not satisfied (or no coordinator reachable) within the timeout.
    #[error("no answer from the coordinator within the timeout")]
    Timeout,
    /// The request is longer than LAVA's client allows (0xFFFE characters).
    #[error("request of {0} characters is longer than 0xFFFE")]
    TooLong(usize),
    /// A connection failed or the reply was malformed.
    #[error("coordinator I/O: {0}")]
    Io(String),
}

/// A client of one coordinator for one group member.
#[derive(Debug, Clone)]
pub struct Client {
    addr: String,
    identity: Identity,
    token: Option<String>,
    poll_delay: Duration,
    hold: bool,
}

impl Client {
    /// A client reaching `addr` ("HOST:PORT") as `identity`; `token` for a protected server.
    pub fn new(addr: String, identity: Identity, token: Option<String>) -> Client {
        Client {
            addr,
            identity,
            token,
            poll_delay: Duration::from_secs(1),
            hold: true,
        }
    }

    /// The delay between polls when the server answers `wait` (LAVA's client default: 1 s).
    pub fn with_poll_delay(mut self, poll_delay: Duration) -> Client {
        self.poll_delay = poll_delay;
        self
    }

    /// Whether to ask for held requests (`basalt_hold`, default on); off, the client is a
    /// plain LAVA polling client.
    pub fn with_hold(mut self, hold: bool) -> Client {
        self.hold = hold;
        self
    }

    /// Blocks until every client of the group registered; client name → role.
    pub async fn group_data(
        &self,
        group_size: u32,
        timeout: Duration,
    ) -> Result<BTreeMap<String, String>, ClientError> {
        let keys = vec![("group_size", Json::Int(group_size.into()))];
        match self.call("group_data", keys, timeout).await? {
            Reply::GroupData(roles) => Ok(roles.into_iter().collect()),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends `message` under `message_id` to the group.
    pub async fn send(&self, message_id: &str, message: Message) -> Result<(), ClientError> {
        let message = Json::object(message.into_iter().map(|(k, v)| (k, Json::Str(v))));
        let keys = vec![("messageID", Json::str(message_id)), ("message", message)];
        self.call("lava_send", keys, SYSTEM_TIMEOUT).await.map(drop)
    }

    /// Blocks until any client sent `message_id`; what was sent, per sender.
    pub async fn wait(&self, message_id: &str, timeout: Duration) -> Result<Replies, ClientError> {
        let keys = vec![
            ("messageID", Json::str(message_id)),
            ("nodeID", Json::str(&self.identity.client_name)),
        ];
        replies(self.call("lava_wait", keys, timeout).await?)
    }

    /// Blocks until every client (or, with `role`, the first of that role) sent `message_id`.
    pub async fn wait_all(
        &self,
        message_id: &str,
        role: Option<&str>,
        timeout: Duration,
    ) -> Result<Replies, ClientError> {
        let mut keys = vec![("messageID", Json::str(message_id))];
        if let Some(role) = role {
            keys.push(("waitrole", Json::str(role)));
        }
        replies(self.call("lava_wait_all", keys, timeout).await?)
    }

    /// Blocks until every client of the group called sync with `message_id`.
    pub async fn sync(&self, message_id: &str, timeout: Duration) -> Result<(), ClientError> {
        let keys = vec![
            ("messageID", Json::str(message_id)),
            ("message", Json::Null),
        ];
        self.call("lava_sync", keys, timeout).await.map(drop)
    }

    /// Tells the coordinator this client is done with the group.
    pub async fn clear_group(&self, group_size: u32) -> Result<(), ClientError> {
        let keys = vec![("group_size", Json::Int(group_size.into()))];
        self.call("clear_group", keys, SYSTEM_TIMEOUT)
            .await
            .map(drop)
    }

    /// The base message (in LAVA's key order), `request`, the call's keys, basalt's keys.
    fn request(&self, request: &str, keys: &[(&str, Json)], hold: Option<Duration>) -> Json {
        let port = self
            .addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .unwrap_or(3079);
        let host = self.addr.rsplit_once(':').map_or(&*self.addr, |(h, _)| h);
        let id = &self.identity;
        let mut pairs: Vec<(String, Json)> = vec![
            ("port".into(), Json::Int(port.into())),
            ("blocksize".into(), Json::Int(4096)),
            (
                "poll_delay".into(),
                Json::Int(self.poll_delay.as_secs().into()),
            ),
            ("host".into(), Json::str(host)),
            ("hostname".into(), Json::str(&id.hostname)),
            ("client_name".into(), Json::str(&id.client_name)),
            ("group_name".into(), Json::str(&id.group_name)),
            ("role".into(), Json::str(&id.role)),
            ("request".into(), Json::str(request)),
        ];
        pairs.extend(keys.iter().map(|(k, v)| (k.to_string(), v.clone())));
        if let Some(hold) = hold {
            pairs.push(("timeout".into(), Json::Float(hold.as_secs_f64())));
            pairs.push(("basalt_hold".into(), Json::Bool(true)));
        }
        if let Some(token) = &self.token {
            pairs.push(("basalt_token".into(), Json::str(token)));
        }
        Json::Object(pairs)
    }

    /// Asks until the reply is not `wait` (held by basalt's server, polled otherwise), or
    /// the timeout; reconnects while the connection is refused.
    async fn call(
        &self,
        request: &str,
        keys: Vec<(&str, Json)>,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let deadline = Instant::now() + timeout;
        // after a refused or reset connection: soon at first (a reset comes from a busy
        // server's full accept queue), then less often while the server is not up
        let mut retry = Duration::from_millis(50);
        loop {
            let now = Instant::now();
            let Some(remaining) = deadline
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
            else {
                return Err(ClientError::Timeout);
            };
            let hold = self.hold.then_some(remaining);
            let text = self.request(request, &keys, hold).dumps();
            if text.len() > MAX_CLIENT_MESSAGE {
                return Err(ClientError::TooLong(text.len()));
            }
            // a held reply comes at most at `remaining`; allow the server a little more
            let io_deadline = remaining + Duration::from_secs(5);
            let started = Instant::now();
            match tokio::time::timeout(io_deadline, self.exchange(&frame(&text))).await {
                Err(_) => return Err(ClientError::Timeout),
                Ok(Err(Exchange::Unreachable(e))) => {
                    tracing::debug!(addr = %self.addr, error = %e, "coordinator unreachable");
                    tokio::time::sleep(retry.min(remaining)).await;
                    retry = (retry * 2).min(Duration::from_secs(5));
                }
                Ok(Err(Exchange::Failed(e))) => return Err(ClientError::Io(e)),
                Ok(Ok(Reply::Nack)) => return Err(ClientError::Nack),
                Ok(Ok(Reply::Wait)) => {
                    // held to its end: ask again at once; answered at once: LAVA, poll
                    let held = hold.is_some_and(|h| started.elapsed() >= h.mul_f64(0.9));
                    if !held {
                        tokio::time::sleep(self.poll_delay.min(remaining)).await;
                    }
                }
                Ok(Ok(reply)) => return Ok(reply),
            }
        }
    }

    /// One connection: send a frame, read the framed reply.
    async fn exchange(&self, frame: &[u8]) -> Result<Reply, Exchange> {
        let mut stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| Exchange::Unreachable(e.to_string()))?;
        let failed = |e: std::io::Error| Exchange::Failed(e.to_string());
        stream.write_all(frame).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
                Exchange::Unreachable(e.to_string())
            }
            _ => failed(e),
        })?;
        if !self.hold {
            // LAVA's client shuts its write side; a held request keeps it open, so that the
            // server sees the client leave
            stream.shutdown().await.map_err(failed)?;
        }
        let mut header = [0u8; HEADER_LEN];
        if let Err(e) = stream.read_exact(&mut header).await {
            // reset or closed without a reply (LAVA's single-threaded server, its one-deep
            // accept queue full): LAVA's client retries on any socket error, so does this one
            return Err(Exchange::Unreachable(format!("no reply: {e}")));
        }
        let chars =
            parse_header(&header, MAX_REPLY).map_err(|e| Exchange::Failed(e.to_string()))?;
        let mut body = Vec::new();
        let mut buf = [0u8; 4096];
        let n = loop {
            if let Some(n) = body_len(&body, chars).map_err(|e| Exchange::Failed(e.to_string()))? {
                break n;
            }
            let got = stream.read(&mut buf).await.map_err(failed)?;
            if got == 0 {
                return Err(Exchange::Failed("reply truncated".into()));
            }
            body.extend_from_slice(&buf[..got]);
        };
        let json = Json::parse(&body[..n]).map_err(|e| Exchange::Failed(e.to_string()))?;
        Reply::from_json(&json).map_err(|e| Exchange::Failed(e.to_string()))
    }
}

/// How one exchange failed: worth retrying (no server yet), or not.
enum Exchange {
    Unreachable(String),
    Failed(String),
}

fn unexpected(reply: &Reply) -> ClientError {
    let text = reply.to_json().map(|j| j.dumps()).unwrap_or_default();
    ClientError::Io(format!("unexpected reply {text}"))
}

/// A value as the text a message carries (strings as they are, others as JSON).
fn text_of(v: &Json) -> String {
    match v {
        Json::Str(s) => s.clone(),
        other => other.dumps(),
    }
}

/// The `message` of an ack: sender → {key: value}; anything else (a sync's id) is empty.
fn replies(reply: Reply) -> Result<Replies, ClientError> {
    match reply {
        Reply::Message(Json::Object(senders)) => Ok(senders
            .into_iter()
            .map(|(sender, m)| {
                let m = match m {
                    Json::Object(pairs) => {
                        pairs.iter().map(|(k, v)| (k.clone(), text_of(v))).collect()
                    }
                    _ => Message::new(),
                };
                (sender, m)
            })
            .collect()),
        Reply::Message(_) | Reply::Ack => Ok(Replies::new()),
        other => Err(unexpected(&other)),
    }
}
