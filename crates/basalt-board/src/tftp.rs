//! A TFTP client (RFC 1350, octet mode, with the RFC 2347/2348 `blksize` option), as
//! U-Boot's `tftpboot` uses it: the simulated board fetches files for real from the
//! worker's TFTP server.
//!
//! [`fetch`] runs one transfer and reports progress as [`Event`]s on a channel, so the
//! caller can print U-Boot's `#` marks while the data arrives and abort on Ctrl-C by
//! dropping the task.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

const OP_RRQ: u16 = 1;
const OP_DATA: u16 = 3;
const OP_ACK: u16 = 4;
const OP_ERROR: u16 = 5;
const OP_OACK: u16 = 6;

/// What to fetch and how.
#[derive(Debug, Clone)]
pub struct Request {
    /// The server (its well-known port, 69 by default).
    pub server: SocketAddrV4,
    /// The file name, as the server knows it.
    pub filename: String,
    /// Ask for this block size (RFC 2348); `None` asks for nothing (512-byte blocks).
    pub blksize: Option<u16>,
    /// How long to wait for a packet before sending the last one again.
    pub timeout: Duration,
    /// How many timeouts in a row end the transfer.
    pub max_timeouts: u32,
    /// The most bytes the caller can take.
    pub max_size: u64,
}

/// Why a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TftpError {
    /// The server sent an ERROR packet.
    #[error("TFTP error: '{message}' ({code})")]
    Server {
        /// The error code.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// Too many timeouts in a row.
    #[error("TFTP timed out")]
    Timeout,
    /// The file is larger than `max_size`.
    #[error("file larger than {max} bytes")]
    TooBig {
        /// The limit.
        max: u64,
    },
    /// A local socket error.
    #[error("TFTP socket error: {0}")]
    Io(String),
    /// A malformed packet.
    #[error("TFTP protocol error: {0}")]
    Protocol(String),
}

/// Progress of a transfer. Events are sent without waiting: a slow reader may miss some,
/// so `Block` carries the running totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new data block arrived; `block` counts from 1 and does not wrap.
    Block {
        /// The block count so far.
        block: u64,
        /// Bytes received so far.
        bytes: u64,
    },
    /// No answer in time; the last packet was sent again.
    Timeout,
}

/// Fetches `req.filename`; progress goes to `events` (a closed channel is ignored).
pub async fn fetch(req: Request, events: mpsc::Sender<Event>) -> Result<Vec<u8>, TftpError> {
    let bind: SocketAddr = if req.server.ip().is_loopback() {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    } else {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| TftpError::Io(e.to_string()))?;
    let server = SocketAddr::V4(req.server);
    let rrq = rrq_packet(&req.filename, req.blksize);
    let mut last_packet = rrq.clone();
    let mut last_dest = server;
    sock.send_to(&rrq, server)
        .await
        .map_err(|e| TftpError::Io(e.to_string()))?;

    let mut peer: Option<SocketAddr> = None;
    let mut blksize: usize = 512;
    let mut expected: u16 = 1;
    let mut blocks: u64 = 0;
    let mut data = Vec::new();
    let mut timeouts = 0u32;
    let mut buf = vec![0u8; 65_536];
    let mut deadline = Instant::now() + req.timeout;

    loop {
        let received = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await;
        let (n, from) = match received {
            Err(_) => {
                timeouts += 1;
                if timeouts > req.max_timeouts {
                    return Err(TftpError::Timeout);
                }
                let _ = events.try_send(Event::Timeout);
                sock.send_to(&last_packet, last_dest)
                    .await
                    .map_err(|e| TftpError::Io(e.to_string()))?;
                deadline = Instant::now() + req.timeout;
                continue;
            }
            Ok(Err(e)) => {
                // ICMP port unreachable shows up here on Linux: keep waiting, as U-Boot
                // (which never sees ICMP) would, until the timeouts run out.
                if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    continue;
                }
                return Err(TftpError::Io(e.to_string()));
            }
            Ok(Ok(r)) => r,
        };
        let pkt = &buf[..n];
        if from.ip() != server.ip() {
            continue;
        }
        match peer {
            None => peer = Some(from),
            Some(p) if p != from => {
                // RFC 1350: a packet from another TID gets an error, the transfer goes on.
                let _ = sock
                    .send_to(&error_packet(5, "Unknown transfer ID"), from)
                    .await;
                continue;
            }
            Some(_) => {}
        }
        if pkt.len() < 4 {
            continue;
        }
        let op = u16::from_be_bytes([pkt[0], pkt[1]]);
        match op {
            OP_ERROR => {
                let code = u16::from_be_bytes([pkt[2], pkt[3]]);
                let msg = pkt[4..].split(|b| *b == 0).next().unwrap_or(&[]);
                return Err(TftpError::Server {
                    code,
                    message: String::from_utf8_lossy(msg).into_owned(),
                });
            }
            OP_OACK if blocks == 0 && expected == 1 => {
                let options = parse_options(&pkt[2..]);
                for (name, value) in options {
                    if name.eq_ignore_ascii_case("blksize") {
                        match value.parse::<usize>() {
                            Ok(v) if (8..=65_464).contains(&v) => blksize = v,
                            _ => {
                                let _ = sock.send_to(&error_packet(8, "Bad blksize"), from).await;
                                return Err(TftpError::Protocol(format!(
                                    "server chose a bad blksize '{value}'"
                                )));
                            }
                        }
                    }
                }
                last_packet = ack_packet(0);
                last_dest = from;
                send(&sock, &last_packet, from).await?;
                timeouts = 0;
                deadline = Instant::now() + req.timeout;
            }
            OP_DATA => {
                let block = u16::from_be_bytes([pkt[2], pkt[3]]);
                let payload = &pkt[4..];
                if block == expected {
                    if payload.len() > blksize {
                        return Err(TftpError::Protocol(format!(
                            "block {block} has {} bytes, more than blksize {blksize}",
                            payload.len()
                        )));
                    }
                    if data.len() as u64 + payload.len() as u64 > req.max_size {
                        let _ = sock
                            .send_to(&error_packet(3, "Disk full or allocation exceeded"), from)
                            .await;
                        return Err(TftpError::TooBig { max: req.max_size });
                    }
                    data.extend_from_slice(payload);
                    blocks += 1;
                    last_packet = ack_packet(block);
                    last_dest = from;
                    send(&sock, &last_packet, from).await?;
                    let _ = events.try_send(Event::Block {
                        block: blocks,
                        bytes: data.len() as u64,
                    });
                    if payload.len() < blksize {
                        return Ok(data);
                    }
                    // Block numbers roll over to 0 after 65535 (tftp-hpa's default).
                    expected = expected.wrapping_add(1);
                    timeouts = 0;
                    deadline = Instant::now() + req.timeout;
                } else if block == expected.wrapping_sub(1) && blocks > 0 {
                    // Our ACK was lost: acknowledge again.
                    send(&sock, &ack_packet(block), from).await?;
                }
            }
            _ => {}
        }
    }
}

async fn send(sock: &UdpSocket, pkt: &[u8], to: SocketAddr) -> Result<(), TftpError> {
    sock.send_to(pkt, to)
        .await
        .map(|_| ())
        .map_err(|e| TftpError::Io(e.to_string()))
}

fn rrq_packet(filename: &str, blksize: Option<u16>) -> Vec<u8> {
    let mut p = Vec::with_capacity(filename.len() + 32);
    p.extend_from_slice(&OP_RRQ.to_be_bytes());
    p.extend_from_slice(filename.as_bytes());
    p.push(0);
    p.extend_from_slice(b"octet\0");
    if let Some(b) = blksize {
        p.extend_from_slice(b"blksize\0");
        p.extend_from_slice(b.to_string().as_bytes());
        p.push(0);
    }
    p
}

fn ack_packet(block: u16) -> Vec<u8> {
    let mut p = OP_ACK.to_be_bytes().to_vec();
    p.extend_from_slice(&block.to_be_bytes());
    p
}

fn error_packet(code: u16, msg: &str) -> Vec<u8> {
    let mut p = OP_ERROR.to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(msg.as_bytes());
    p.push(0);
    p
}

fn parse_options(mut body: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        let mut parts = body.splitn(3, |b| *b == 0);
        let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
            break;
        };
        if name.is_empty() {
            break;
        }
        out.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
        match parts.next() {
            Some(rest) => body = rest,
            None => break,
        }
    }
    out
}

/// U-Boot's `print_size`: `26 MiB`, `24.1 MiB`, `512 Bytes`.
pub(crate) fn print_size(size: u64) -> String {
    const NAMES: [char; 6] = ['E', 'P', 'T', 'G', 'M', 'K'];
    let mut d: u32 = 10 * NAMES.len() as u32;
    let mut unit = None;
    for c in NAMES {
        if size >> d != 0 {
            unit = Some(c);
            break;
        }
        d -= 10;
    }
    let Some(c) = unit else {
        return format!("{size} Bytes");
    };
    let mut n = size >> d;
    let f = size & ((1u64 << d) - 1);
    let mut m = 0;
    if f != 0 {
        m = (10 * f + (1u64 << (d - 1))) >> d;
        if m >= 10 {
            m -= 10;
            n += 1;
        }
    }
    if m != 0 {
        format!("{n}.{m} {c}iB")
    } else {
        format!("{n} {c}iB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(print_size(26 * 1024 * 1024), "26 MiB");
        assert_eq!(print_size(25_270_681), "24.1 MiB");
        assert_eq!(print_size(512), "512 Bytes");
        assert_eq!(print_size(1536), "1.5 KiB");
    }

    #[test]
    fn packets() {
        assert_eq!(
            rrq_packet("a/b", Some(1468)),
            b"\0\x01a/b\0octet\0blksize\x001468\0".to_vec()
        );
        assert_eq!(rrq_packet("f", None), b"\0\x01f\0octet\0".to_vec());
        assert_eq!(
            parse_options(b"blksize\x001468\0tsize\x00100\0"),
            vec![
                ("blksize".to_string(), "1468".to_string()),
                ("tsize".to_string(), "100".to_string())
            ]
        );
    }

    /// A tiny in-test server: serves `content` for any RRQ, honouring blksize,
    /// dropping the first copy of block 2 to exercise retransmission.
    async fn serve_once(
        content: Vec<u8>,
        use_oack: bool,
    ) -> (SocketAddrV4, tokio::task::JoinHandle<()>) {
        let listen = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = match listen.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!(),
        };
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let (n, client) = listen.recv_from(&mut buf).await.unwrap();
            let opts = parse_options(&buf[2..n]);
            let want_blk = opts
                .iter()
                .find(|(k, _)| k == "blksize")
                .map(|(_, v)| v.parse::<usize>().unwrap());
            let xfer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if opts[0].0 == "missing" {
                xfer.send_to(&error_packet(1, "File not found"), client)
                    .await
                    .unwrap();
                return;
            }
            let blk = if use_oack {
                want_blk.unwrap_or(512)
            } else {
                512
            };
            if use_oack && want_blk.is_some() {
                let mut oack = OP_OACK.to_be_bytes().to_vec();
                oack.extend_from_slice(format!("blksize\0{blk}\0").as_bytes());
                xfer.send_to(&oack, client).await.unwrap();
                let (_, _) = xfer.recv_from(&mut buf).await.unwrap();
            }
            let mut dropped = false;
            let chunks: Vec<&[u8]> = if content.is_empty() {
                vec![&[]]
            } else {
                let mut c: Vec<&[u8]> = content.chunks(blk).collect();
                if content.len().is_multiple_of(blk) {
                    c.push(&[]);
                }
                c
            };
            for (i, chunk) in chunks.iter().enumerate() {
                let block = (i + 1) as u16;
                let mut pkt = OP_DATA.to_be_bytes().to_vec();
                pkt.extend_from_slice(&block.to_be_bytes());
                pkt.extend_from_slice(chunk);
                loop {
                    if block == 2 && !dropped {
                        dropped = true; // "lost" on the way
                    } else {
                        xfer.send_to(&pkt, client).await.unwrap();
                    }
                    match tokio::time::timeout(Duration::from_millis(100), xfer.recv_from(&mut buf))
                        .await
                    {
                        Ok(Ok((n, _)))
                            if n == 4
                                && buf[0..2] == OP_ACK.to_be_bytes()
                                && buf[2..4] == block.to_be_bytes() =>
                        {
                            break
                        }
                        _ => continue,
                    }
                }
            }
        });
        (addr, task)
    }

    fn request(server: SocketAddrV4, name: &str, blksize: Option<u16>) -> Request {
        Request {
            server,
            filename: name.to_string(),
            blksize,
            timeout: Duration::from_millis(50),
            max_timeouts: 20,
            max_size: 1 << 20,
        }
    }

    #[tokio::test]
    async fn fetch_with_and_without_options() {
        let content: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        for (oack, blk) in [(true, Some(1468)), (false, Some(1468)), (true, None)] {
            let (addr, task) = serve_once(content.clone(), oack).await;
            let (tx, mut rx) = mpsc::channel(1000);
            let got = fetch(request(addr, "file", blk), tx).await.unwrap();
            assert_eq!(got, content);
            task.await.unwrap();
            let mut blocks = 0;
            let mut timeouts = 0;
            while let Ok(e) = rx.try_recv() {
                match e {
                    Event::Block { block, .. } => blocks = block,
                    Event::Timeout => timeouts += 1,
                }
            }
            assert!(blocks >= 4, "{blocks}");
            assert!(timeouts >= 1);
        }
        // exact multiple of the block size ends with an empty block
        let content = vec![7u8; 1024];
        let (addr, task) = serve_once(content.clone(), false).await;
        let (tx, _rx) = mpsc::channel(1000);
        assert_eq!(fetch(request(addr, "f", None), tx).await.unwrap(), content);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn errors() {
        let (addr, task) = serve_once(vec![], true).await;
        let (tx, _rx) = mpsc::channel(10);
        let e = fetch(request(addr, "missing", None), tx).await.unwrap_err();
        assert_eq!(
            e,
            TftpError::Server {
                code: 1,
                message: "File not found".into()
            }
        );
        assert_eq!(e.to_string(), "TFTP error: 'File not found' (1)");
        task.await.unwrap();
        // nobody listening: timeouts
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = match sock.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!(),
        };
        drop(sock);
        let (tx, _rx) = mpsc::channel(10);
        let mut req = request(addr, "x", None);
        req.max_timeouts = 2;
        req.timeout = Duration::from_millis(20);
        assert_eq!(fetch(req, tx).await.unwrap_err(), TftpError::Timeout);
        // too big
        let (addr, task) = serve_once(vec![1u8; 3000], false).await;
        let (tx, _rx) = mpsc::channel(100);
        let mut req = request(addr, "f", None);
        req.max_size = 1000;
        assert_eq!(
            fetch(req, tx).await.unwrap_err(),
            TftpError::TooBig { max: 1000 }
        );
        task.abort();
    }
}
