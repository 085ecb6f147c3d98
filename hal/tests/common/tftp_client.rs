//! A TFTP client for the tests and the benchmark (RFC 1350 reads with blksize, tsize,
//! timeout and windowsize): it can lose every Nth packet it receives and send every ACK
//! twice, to exercise a server's retransmission.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// What the client asks for and how it misbehaves.
#[derive(Clone, Debug)]
pub struct Opts {
    pub blksize: Option<u16>,
    pub windowsize: Option<u16>,
    pub tsize: bool,
    /// The `timeout` option (seconds).
    pub timeout_opt: Option<u8>,
    pub netascii: bool,
    /// Drop every Nth packet received (DATA or OACK), as a lossy network would.
    pub drop_every: Option<u64>,
    /// Send every ACK twice.
    pub dup_acks: bool,
    /// Keep the data (else only its length and a checksum).
    pub keep: bool,
    /// Resend the last ACK after this long without a packet.
    pub retransmit: Duration,
    /// Give up after this long without progress.
    pub give_up: Duration,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            blksize: None,
            windowsize: None,
            tsize: false,
            timeout_opt: None,
            netascii: false,
            drop_every: None,
            dup_acks: false,
            keep: true,
            retransmit: Duration::from_millis(200),
            give_up: Duration::from_secs(10),
        }
    }
}

/// What came back.
#[derive(Debug, Default)]
pub struct Fetched {
    pub data: Vec<u8>,
    pub len: u64,
    /// A cheap checksum (FNV-1a over the bytes) when the data is not kept.
    pub fnv: u64,
    /// The options of the OACK, if there was one.
    pub oack: Option<Vec<(String, String)>>,
    /// DATA packets received (dropped ones included).
    pub data_packets: u64,
    /// Times the client timed out and sent its last ACK (or the request) again.
    pub resent: u64,
}

#[derive(Debug)]
pub enum ClientError {
    /// The server's ERROR packet: code and message.
    Tftp(u16, String),
    Io(io::Error),
    TimedOut,
    Protocol(String),
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> ClientError {
        ClientError::Io(e)
    }
}

pub fn fnv(h: u64, data: &[u8]) -> u64 {
    let mut h = h;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
pub const FNV0: u64 = 0xcbf29ce484222325;

/// A read request packet.
pub fn rrq(path: &[u8], opts: &Opts) -> Vec<u8> {
    let mut p = vec![0, 1];
    p.extend_from_slice(path);
    p.push(0);
    p.extend_from_slice(if opts.netascii { b"netascii" } else { b"octet" });
    p.push(0);
    let mut opt = |n: &str, v: String| {
        p.extend_from_slice(n.as_bytes());
        p.push(0);
        p.extend_from_slice(v.as_bytes());
        p.push(0);
    };
    if let Some(b) = opts.blksize {
        opt("blksize", b.to_string());
    }
    if opts.tsize {
        opt("tsize", "0".into());
    }
    if let Some(t) = opts.timeout_opt {
        opt("timeout", t.to_string());
    }
    if let Some(w) = opts.windowsize {
        opt("windowsize", w.to_string());
    }
    p
}

fn ack(n: u16) -> [u8; 4] {
    let b = n.to_be_bytes();
    [0, 4, b[0], b[1]]
}

/// Reads `path` from `server`.
pub async fn fetch(server: SocketAddr, path: &[u8], opts: &Opts) -> Result<Fetched, ClientError> {
    let sock = UdpSocket::bind(SocketAddr::new(server.ip(), 0)).await?;
    let req = rrq(path, opts);
    sock.send_to(&req, server).await?;
    let mut out = Fetched {
        fnv: FNV0,
        ..Fetched::default()
    };
    let mut blksize = 512usize;
    let mut window = 1u64;
    let mut peer: Option<SocketAddr> = None;
    // the next block wanted (absolute), blocks since the last ACK, the last ACK sent
    let mut expected: u64 = 1;
    let mut since_ack = 0u64;
    let mut last_ack: Option<u16> = None;
    let mut gap_acked = false;
    let mut received = 0u64;
    let mut progress = Instant::now();
    let mut buf = vec![0u8; 65536 + 4];
    let send_ack = |n: u16| {
        let sock = &sock;
        let dup = opts.dup_acks;
        async move {
            let p = ack(n);
            sock.send(&p).await?;
            if dup {
                sock.send(&p).await?;
            }
            Ok::<_, io::Error>(())
        }
    };
    let mut last_rx = Instant::now();
    let timer = tokio::time::sleep(opts.retransmit);
    tokio::pin!(timer);
    loop {
        let r = tokio::select! {
            biased;
            r = sock.recv_from(&mut buf) => Some(r),
            _ = timer.as_mut() => None,
        };
        let (n, from) = match r {
            // the timer is moved only when it fires early: cheaper than once per packet
            None if last_rx.elapsed() < opts.retransmit => {
                timer.as_mut().reset(last_rx + opts.retransmit);
                continue;
            }
            None => {
                timer.as_mut().reset(Instant::now() + opts.retransmit);
                last_rx = Instant::now();
                out.resent += 1;
                if progress.elapsed() > opts.give_up {
                    return Err(ClientError::TimedOut);
                }
                match last_ack {
                    Some(a) => send_ack(a).await?,
                    None => {
                        sock.send_to(&req, server).await?;
                    }
                }
                continue;
            }
            Some(r) => r?,
        };
        last_rx = Instant::now();
        if from.ip() != server.ip() || peer.is_some_and(|p| p != from) {
            continue;
        }
        if n < 4 {
            return Err(ClientError::Protocol("short packet".into()));
        }
        let op = u16::from_be_bytes([buf[0], buf[1]]);
        let num = u16::from_be_bytes([buf[2], buf[3]]);
        if op == 5 {
            let msg = String::from_utf8_lossy(&buf[4..n]);
            return Err(ClientError::Tftp(
                num,
                msg.trim_end_matches('\0').to_string(),
            ));
        }
        if op == 3 {
            out.data_packets += 1;
        }
        received += 1;
        if opts.drop_every.is_some_and(|d| received.is_multiple_of(d)) {
            continue;
        }
        if peer.is_none() {
            peer = Some(from);
            sock.connect(from).await?;
            if op == 6 {
                let mut opts_got = Vec::new();
                let mut f = buf[2..n].split(|b| *b == 0);
                while let (Some(k), Some(v)) = (f.next(), f.next()) {
                    if k.is_empty() {
                        break;
                    }
                    opts_got.push((
                        String::from_utf8_lossy(k).to_ascii_lowercase(),
                        String::from_utf8_lossy(v).into_owned(),
                    ));
                }
                for (k, v) in &opts_got {
                    match k.as_str() {
                        "blksize" => {
                            blksize = v
                                .parse()
                                .map_err(|_| ClientError::Protocol("blksize".into()))?
                        }
                        "windowsize" => {
                            window = v
                                .parse()
                                .map_err(|_| ClientError::Protocol("windowsize".into()))?
                        }
                        _ => {}
                    }
                }
                out.oack = Some(opts_got);
                last_ack = Some(0);
                progress = Instant::now();
                send_ack(0).await?;
                continue;
            }
        }
        match op {
            6 => {
                // the OACK again: our ACK 0 was lost
                if expected == 1 {
                    send_ack(0).await?;
                }
            }
            3 => {
                let data = &buf[4..n];
                if num == expected as u16 {
                    if opts.keep {
                        out.data.extend_from_slice(data);
                    } else {
                        out.fnv = fnv(out.fnv, data);
                    }
                    out.len += data.len() as u64;
                    progress = Instant::now();
                    gap_acked = false;
                    since_ack += 1;
                    expected += 1;
                    let end = data.len() < blksize;
                    if end || since_ack >= window {
                        since_ack = 0;
                        last_ack = Some(num);
                        send_ack(num).await?;
                    }
                    if end {
                        return Ok(out);
                    }
                } else if num.wrapping_sub(expected as u16) < 0x8000 && !gap_acked {
                    // a block after a gap: acknowledge the last good one (RFC 7440 §4)
                    gap_acked = true;
                    since_ack = 0;
                    let a = (expected - 1) as u16;
                    last_ack = Some(a);
                    send_ack(a).await?;
                }
            }
            _ => return Err(ClientError::Protocol(format!("unexpected opcode {op}"))),
        }
    }
}
