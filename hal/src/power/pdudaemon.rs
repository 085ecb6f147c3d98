//! Power through pdudaemon's HTTP listener:
//! `GET http://HOST:PORT/power/control/{on,off,reboot}?hostname=PDU&port=OUTLET[&delay=S]`
//! (or `?alias=NAME` instead of hostname and port).
//!
//! pdudaemon may answer `200 OK - accepted request` *before* its driver has switched the outlet
//! (older releases queue the request; a reboot also waits `delay` seconds, 5 by default,
//! between off and on). So after a 200 the operation waits until the settle time has passed
//! since the request was sent: the reboot delay (for a reset) plus a margin
//! ([`PduDaemonPower::with_settle_margin`]). A daemon that answers only after acting has used
//! up most of that time already and costs no more than the margin. Any other status is
//! [`PowerError::Failed`] with the body (pdudaemon says `Invalid request`).
//!
//! The HTTP client is a minimal HTTP/1.1 GET over a [`tokio::net::TcpStream`] (no TLS, no
//! redirects, `Connection: close`), bounded by a request timeout.

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

    /// Sets the margin added to the settle time (default 2 s).
    pub fn with_settle_margin(mut self, margin: Duration) -> PduDaemonPower {
        self.settle_margin = margin;
        self
    }

    /// Sets the time allowed for the HTTP request itself (default 30 s).
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

    async fn request(&self, op: &'static str, action: &str) -> Result<(), PowerError> {
        let sent = Instant::now();
        let path = self.request_path(action);
        let fail = |message: String| PowerError::Failed {
            op,
            what: self.describe(),
            message,
        };
        let response = tokio::time::timeout(self.request_timeout, self.get(&path))
            .await
            .map_err(|_| PowerError::Timeout {
                op,
                what: self.describe(),
                secs: self.request_timeout.as_secs(),
            })?
            .map_err(|e| fail(format!("GET {path}: {e}")))?;
        if response.status != 200 {
            return Err(fail(format!(
                "GET {path}: HTTP {} {}",
                response.status,
                response.body.trim()
            )));
        }
        let delay = if action == "reboot" {
            Duration::from_secs(u64::from(self.delay.unwrap_or(DEFAULT_REBOOT_DELAY)))
        } else {
            Duration::ZERO
        };
        let settle = delay + self.settle_margin;
        let left = settle.saturating_sub(sent.elapsed());
        tokio::time::sleep(left).await;
        Ok(())
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
            PduTarget::Port { hostname, port } => format!(
                "pdudaemon {}:{} {hostname} port {port}",
                self.server, self.server_port
            ),
            PduTarget::Alias(alias) => format!(
                "pdudaemon {}:{} alias {alias}",
                self.server, self.server_port
            ),
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
