//! Power through a pdudaemon, over either of its listeners (the daemon runs one, `tcp` by
//! default or `http`, on port 16421 by default; [`PduTransport`]):
//!
//! * HTTP: `GET http://HOST:PORT/power/control/{on,off,reboot}?hostname=PDU&port=OUTLET[&delay=S]`
//!   (or `?alias=NAME` instead of hostname and port); 200 is success.
//! * TCP (what `pduclient` without `--http` speaks): one connection per request carrying the
//!   bytes `PDU OUTLET COMMAND[ DELAY]` (single spaces, no terminator; the listener does one
//!   read and splits on spaces); the daemon answers `ack\n` or `nack\n` (or the text of an
//!   exception, e.g. `Unexpected data`) once the request has run, and closes. No aliases.
//!
//! pdudaemon may answer *before* its driver has switched the outlet (older releases queue the
//! request; a reboot also waits `delay` seconds, 5 by default, between off and on). So after
//! success the operation waits until the settle time has passed since the request was sent:
//! the reboot delay (for a reset) plus a margin ([`PduDaemonPower::with_settle_margin`]). A
//! daemon that answers only after acting has used up most of that time already and costs no
//! more than the margin. Anything else is [`PowerError::Failed`] naming the request and the
//! answer (HTTP status and body, or the TCP reply).
//!
//! The HTTP client is a minimal HTTP/1.1 GET over a [`tokio::net::TcpStream`] (no TLS, no
//! redirects, `Connection: close`); both transports are bounded by a request timeout (plus the
//! reboot delay, which the daemon spends before it answers) and read at most a bounded reply.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Power, PowerError};

/// pdudaemon's default listening port.
pub const DEFAULT_PORT: u16 = 16421;
/// pdudaemon's default delay between off and on of a reboot.
pub const DEFAULT_REBOOT_DELAY: u32 = 5;
/// Largest response accepted.
const MAX_RESPONSE: usize = 64 * 1024;
/// Largest TCP reply accepted (pduclient reads at most this much too).
const MAX_TCP_REPLY: usize = 16 * 1024;

/// Which of pdudaemon's listeners to speak: the daemon runs exactly one (its `listener`
/// setting), so this must match the daemon's configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PduTransport {
    /// The HTTP listener (`pduclient --http`).
    #[default]
    Http,
    /// The plain TCP listener (`pduclient` without `--http`, pdudaemon's default).
    Tcp,
}

impl PduTransport {
    /// `http` or `tcp`, as pdudaemon's `listener` setting names it.
    pub fn name(self) -> &'static str {
        match self {
            PduTransport::Http => "http",
            PduTransport::Tcp => "tcp",
        }
    }
}

impl std::fmt::Display for PduTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which outlet pdudaemon should switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PduTarget {
    /// A PDU of pdudaemon's configuration and an outlet on it.
    Port {
        /// The PDU's name (`hostname` in the request).
        hostname: String,
        /// The outlet (`port` in the request).
        port: String,
    },
    /// An alias from pdudaemon's configuration.
    Alias(String),
}

/// Power control through a pdudaemon. See the module documentation.
#[derive(Debug, Clone)]
pub struct PduDaemonPower {
    server: String,
    server_port: u16,
    transport: PduTransport,
    target: PduTarget,
    delay: Option<u32>,
    settle_margin: Duration,
    request_timeout: Duration,
}

impl PduDaemonPower {
    /// Outlet `port` of the PDU `hostname`, through the pdudaemon at `server`:`server_port`.
    pub fn new(
        server: impl Into<String>,
        server_port: u16,
        hostname: impl Into<String>,
        port: impl ToString,
    ) -> PduDaemonPower {
        PduDaemonPower::with_target(
            server,
            server_port,
            PduTarget::Port {
                hostname: hostname.into(),
                port: port.to_string(),
            },
        )
    }

    /// Any [`PduTarget`] through the pdudaemon at `server`:`server_port`.
    pub fn with_target(
        server: impl Into<String>,
        server_port: u16,
        target: PduTarget,
    ) -> PduDaemonPower {
        PduDaemonPower {
            server: server.into(),
            server_port,
            transport: PduTransport::Http,
            target,
            delay: None,
            settle_margin: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Sets the reboot delay sent with `reboot` requests (seconds between off and on; pdudaemon
    /// uses [`DEFAULT_REBOOT_DELAY`] without it).
    pub fn with_delay(mut self, seconds: u32) -> PduDaemonPower {
        self.delay = Some(seconds);
        self
    }

    /// Sets the listener to speak (default [`PduTransport::Http`]).
    pub fn with_transport(mut self, transport: PduTransport) -> PduDaemonPower {
        self.transport = transport;
        self
    }

    /// The listener this client speaks.
    pub fn transport(&self) -> PduTransport {
        self.transport
    }

    /// Sets the margin added to the settle time (default 2 s).
    pub fn with_settle_margin(mut self, margin: Duration) -> PduDaemonPower {
        self.settle_margin = margin;
        self
    }

    /// Sets the time allowed for the request itself (default 30 s; a reboot gets its delay on
    /// top, since pdudaemon answers after it).
    pub fn with_request_timeout(mut self, timeout: Duration) -> PduDaemonPower {
        self.request_timeout = timeout;
        self
    }

    /// The path and query of a request for `action` (`on`, `off`, `reboot`).
    pub fn request_path(&self, action: &str) -> String {
        let mut q = match &self.target {
            PduTarget::Port { hostname, port } => {
                format!("hostname={}&port={}", encode(hostname), encode(port))
            }
            PduTarget::Alias(alias) => format!("alias={}", encode(alias)),
        };
        if action == "reboot" {
            if let Some(d) = self.delay {
                q.push_str(&format!("&delay={d}"));
            }
        }
        format!("/power/control/{action}?{q}")
    }

    /// The bytes of a TCP-listener request for `action` (`pdu 08 reboot 2`), as pduclient
    /// sends them: fields joined by single spaces, the delay only on a reboot. Fails for what
    /// the listener cannot carry: an alias, or an empty field or one with whitespace (the
    /// listener splits on spaces).
    pub fn tcp_request(&self, action: &str) -> Result<String, TcpError> {
        let PduTarget::Port { hostname, port } = &self.target else {
            return Err(TcpError::Unrepresentable(
                "pdudaemon's TCP listener takes no alias".into(),
            ));
        };
        for (name, value) in [("PDU hostname", hostname), ("port", port)] {
            if value.is_empty() || value.contains(char::is_whitespace) {
                return Err(TcpError::Unrepresentable(format!(
                    "{name} {value:?} is empty or has whitespace"
                )));
            }
        }
        Ok(match (action, self.delay) {
            ("reboot", Some(d)) => format!("{hostname} {port} {action} {d}"),
            _ => format!("{hostname} {port} {action}"),
        })
    }

    async fn request(&self, op: &'static str, action: &str) -> Result<(), PowerError> {
        let sent = Instant::now();
        let delay = if action == "reboot" {
            Duration::from_secs(u64::from(self.delay.unwrap_or(DEFAULT_REBOOT_DELAY)))
        } else {
            Duration::ZERO
        };
        // pdudaemon answers once the request has run, reboot delay included
        let allowed = self.request_timeout + delay;
        let exchange = async {
            match self.transport {
                PduTransport::Http => self.http_exchange(action).await,
                PduTransport::Tcp => self.tcp_exchange(action).await,
            }
        };
        tokio::time::timeout(allowed, exchange)
            .await
            .map_err(|_| PowerError::Timeout {
                op,
                what: self.describe(),
                secs: allowed.as_secs_f64().ceil() as u64,
            })?
            .map_err(|message| PowerError::Failed {
                op,
                what: self.describe(),
                message,
            })?;
        let settle = delay + self.settle_margin;
        let left = settle.saturating_sub(sent.elapsed());
        tokio::time::sleep(left).await;
        Ok(())
    }

    /// One HTTP request; `Err` says what failed (`GET path: HTTP 500 Invalid request`).
    async fn http_exchange(&self, action: &str) -> Result<(), String> {
        let path = self.request_path(action);
        let response = self
            .get(&path)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        if response.status != 200 {
            return Err(format!(
                "GET {path}: HTTP {} {}",
                response.status,
                response.body.trim()
            ));
        }
        Ok(())
    }

    /// One TCP-listener request; `Err` says what failed
    /// (`request "pdu 08 on": pdudaemon replied "nack"`).
    async fn tcp_exchange(&self, action: &str) -> Result<(), String> {
        let line = self
            .tcp_request(action)
            .map_err(|e| format!("request for {action}: {e}"))?;
        let reply = self
            .tcp_send(&line)
            .await
            .map_err(|e| format!("request {line:?}: {e}"))?;
        match reply.as_str() {
            "ack" => Ok(()),
            "" => Err(format!("request {line:?}: {}", TcpError::NoReply)),
            other => Err(format!(
                "request {line:?}: {}",
                TcpError::Refused(other.to_string())
            )),
        }
    }

    /// Sends `line` in one write and reads the reply up to its newline or the daemon's close,
    /// at most [`MAX_TCP_REPLY`] bytes; returns it trimmed.
    async fn tcp_send(&self, line: &str) -> Result<String, TcpError> {
        let mut tcp = TcpStream::connect((self.server.as_str(), self.server_port)).await?;
        // the listener does a single read: the request must arrive in one piece
        tcp.set_nodelay(true)?;
        tcp.write_all(line.as_bytes()).await?;
        let mut raw = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let n = tcp.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&chunk[..n]);
            if raw.len() > MAX_TCP_REPLY {
                return Err(TcpError::TooLong);
            }
            if raw.contains(&b'\n') {
                break;
            }
        }
        let end = raw.iter().position(|b| *b == b'\n').unwrap_or(raw.len());
        Ok(String::from_utf8_lossy(&raw[..end]).trim().to_string())
    }

    /// `pdudaemon HOST:PORT ` (HTTP, as before transports existed) or
    /// `pdudaemon tcp HOST:PORT `.
    fn describe_daemon(&self) -> String {
        match self.transport {
            PduTransport::Http => format!("pdudaemon {}:{} ", self.server, self.server_port),
            PduTransport::Tcp => format!("pdudaemon tcp {}:{} ", self.server, self.server_port),
        }
    }

    async fn get(&self, path: &str) -> Result<HttpResponse, HttpError> {
        let mut tcp = TcpStream::connect((self.server.as_str(), self.server_port)).await?;
        let host = if self.server.contains(':') {
            format!("[{}]:{}", self.server, self.server_port)
        } else {
            format!("{}:{}", self.server, self.server_port)
        };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: basalt\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = tcp.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&chunk[..n]);
            if raw.len() > MAX_RESPONSE {
                return Err(HttpError::Malformed("response too large".into()));
            }
            if let Some(resp) = parse_response(&raw, false)? {
                return Ok(resp);
            }
        }
        parse_response(&raw, true)?
            .ok_or_else(|| HttpError::Malformed("connection closed before the response".into()))
    }
}

#[async_trait]
impl Power for PduDaemonPower {
    fn describe(&self) -> String {
        match &self.target {
            PduTarget::Port { hostname, port } => {
                format!("{}{hostname} port {port}", self.describe_daemon())
            }
            PduTarget::Alias(alias) => format!("{}alias {alias}", self.describe_daemon()),
        }
    }

    async fn on(&self) -> Result<(), PowerError> {
        self.request("on", "on").await
    }

    async fn off(&self) -> Result<(), PowerError> {
        self.request("off", "off").await
    }

    async fn reset(&self) -> Result<(), PowerError> {
        self.request("reset", "reboot").await
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HttpResponse {
    status: u16,
    body: String,
}

#[derive(Debug, thiserror::Error)]
enum HttpError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
}

/// Why a request to pdudaemon's TCP listener failed.
#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    /// Connecting, sending or receiving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The target cannot be written as a TCP-listener request.
    #[error("not sendable to pdudaemon's TCP listener: {0}")]
    Unrepresentable(String),
    /// The daemon answered something other than `ack` (`nack`, or an exception's text).
    #[error("pdudaemon replied {0:?}")]
    Refused(String),
    /// The daemon closed the connection without a reply.
    #[error("pdudaemon closed the connection without a reply")]
    NoReply,
    /// The reply ran past 16 KiB without a newline.
    #[error("reply longer than {MAX_TCP_REPLY} bytes")]
    TooLong,
}

/// Parses a complete response from `raw`; `Ok(None)` while more bytes are needed. With `eof`,
/// a body without Content-Length ends at the end of the data.
fn parse_response(raw: &[u8], eof: bool) -> Result<Option<HttpResponse>, HttpError> {
    let Some(head_end) = memchr::memmem::find(raw, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!("status line {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HttpError::Malformed(format!("status line {status_line:?}")))?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            if name == "content-length" {
                content_length = value.parse::<usize>().ok();
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let body = &raw[head_end + 4..];
    let body = if chunked {
        match dechunk(body) {
            Some(b) => b,
            None if eof => body.to_vec(),
            None => return Ok(None),
        }
    } else if let Some(len) = content_length {
        if body.len() < len {
            if eof {
                return Err(HttpError::Malformed(
                    "body shorter than Content-Length".into(),
                ));
            }
            return Ok(None);
        }
        body[..len].to_vec()
    } else if eof {
        body.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }))
}

/// Decodes a complete chunked body; `None` if incomplete or malformed.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = memchr::memmem::find(data, b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = PduDaemonPower::new("127.0.0.1", 16421, "pdu 1", 3).with_delay(2);
        assert_eq!(
            p.request_path("on"),
            "/power/control/on?hostname=pdu%201&port=3"
        );
        assert_eq!(
            p.request_path("reboot"),
            "/power/control/reboot?hostname=pdu%201&port=3&delay=2"
        );
        let a = PduDaemonPower::with_target("h", 1, PduTarget::Alias("b&b".into()));
        assert_eq!(a.request_path("off"), "/power/control/off?alias=b%26b");
    }

    #[test]
    fn tcp_requests_are_what_pduclient_sends() {
        let p = PduDaemonPower::new("localhost", 16421, "pdu", "08")
            .with_transport(PduTransport::Tcp)
            .with_delay(2);
        assert_eq!(p.transport(), PduTransport::Tcp);
        assert_eq!(p.tcp_request("on").unwrap(), "pdu 08 on");
        assert_eq!(p.tcp_request("reboot").unwrap(), "pdu 08 reboot 2");
        let no_delay = PduDaemonPower::new("localhost", 16421, "pdu", "08");
        assert_eq!(no_delay.tcp_request("reboot").unwrap(), "pdu 08 reboot");
        assert_eq!(no_delay.transport(), PduTransport::Http);
        assert_eq!(p.describe(), "pdudaemon tcp localhost:16421 pdu port 08");
        assert_eq!(no_delay.describe(), "pdudaemon localhost:16421 pdu port 08");
        for bad in [
            PduDaemonPower::new("h", 1, "pdu 1", 3),
            PduDaemonPower::new("h", 1, "pdu", ""),
            PduDaemonPower::new("h", 1, "pdu", "3\n"),
            PduDaemonPower::with_target("h", 1, PduTarget::Alias("b".into())),
        ] {
            let bad = bad.with_transport(PduTransport::Tcp);
            assert!(
                matches!(bad.tcp_request("on"), Err(TcpError::Unrepresentable(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn responses() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 22\r\n\r\nOK - accepted request\n";
        let r = parse_response(ok, false).unwrap().unwrap();
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "OK - accepted request\n")
        );
        assert!(parse_response(&ok[..ok.len() - 3], false)
            .unwrap()
            .is_none());
        let chunked = b"HTTP/1.1 500 Internal\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nInvalid \r\n8\r\nrequest\n\r\n0\r\n\r\n";
        let r = parse_response(chunked, false).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_str()), (500, "Invalid request\n"));
        let close = b"HTTP/1.0 404 Not Found\r\n\r\nnope";
        assert!(parse_response(close, false).unwrap().is_none());
        assert_eq!(parse_response(close, true).unwrap().unwrap().status, 404);
        assert!(parse_response(b"SSH-2.0\r\n\r\n", true).is_err());
    }
}
