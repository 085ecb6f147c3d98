//! basalt's TFTP server: read-only, confined to one root directory, many transfers at once.
//!
//! Protocol: RFC 1350 (octet and netascii reads), RFC 2347 (option negotiation: an OACK
//! acknowledged by ACK 0), RFC 2348 (`blksize`, 8..=65464, capped by
//! [`TftpConfig::max_blksize`]), RFC 2349 (`timeout` in seconds, 1..=255, and `tsize`, the
//! file's size in octet mode), RFC 7440 (`windowsize`, capped by
//! [`TftpConfig::max_windowsize`]). Block numbers roll over from 65535 to 0, as U-Boot,
//! tftp-hpa and tftpd-hpa do, so files of any size go through. Unknown options are ignored
//! (left out of the OACK), as RFC 2347 says.
//!
//! Each transfer has a socket of its own (its TID), bound with port 0 to the address the
//! request was sent to (on a listener bound to `0.0.0.0` or `::`, learnt from the request's
//! `IP_PKTINFO` / `IPV6_PKTINFO`: a multi-address host replies from the address the client
//! used, which clients check) and connected to the client: packets from other ports never
//! reach it. The listener runs on tokio; each transfer runs on a thread of its own with a
//! blocking `std` socket, because a lock-step transfer is one round trip per block and its
//! throughput is the latency of that round trip: a blocking `recv` is woken by the kernel
//! directly, where a runtime adds an `EAGAIN` `recv`, an `epoll_wait` and a task wakeup per
//! block (at blksize 512 that made basalt slower than tftpd-hpa, which forks a process per
//! transfer). The file is read 256 KiB at a time, the packet buffer reused. A window of
//! blocks goes out, then the server waits for an ACK:
//! - an ACK of the last block of the window moves the window on;
//! - an ACK inside the window (the client saw a gap, RFC 7440 §4) restarts the window after
//!   the acknowledged block;
//! - a duplicate ACK of the block before the window is ignored when the window is 1 (the
//!   Sorcerer's Apprentice bug of RFC 1350 is not repeated) and, with a larger window, makes
//!   the window go out again once;
//! - no ACK within the timeout (the client's `timeout` option, else
//!   [`TftpConfig::timeout`]) sends the window again; after [`TftpConfig::retries`] timeouts
//!   in a row without progress the transfer is given up (the client vanished) and its socket
//!   closed. A waiting transfer wakes every quarter of its timeout (at most every 200 ms) to
//!   look at its deadline and whether the server was stopped.
//!
//! Writes (WRQ) are refused with "access violation": the server is read-only by design. Like
//! every TFTP server it is unauthenticated: anyone who can reach its address may read what is
//! below its root, so bind it to the address the boards reach only.
//!
//! Paths: a request names a file relative to the root (`basalt-1-.../kernel/Image`); an
//! absolute path is accepted only when it lies below the root's own absolute path (as a
//! client that was handed `ROOT/...` asks) and is then made relative. A `..` component is
//! refused; the file is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` from
//! the root, so no symlink and no `..` can lead out of it (where the kernel lacks `openat2`,
//! the resolved path is checked to lie below the canonical root instead). Only regular files
//! are served: a directory is refused, never listed. Each refusal is a TFTP error packet.
//!
//! Per-job isolation: a job's files sit in its own directory below the root, with a name that
//! carries random bits and is never listed. The server cannot tell which board belongs to
//! which job (it knows client addresses, not jobs), so a board could read another job's
//! files only by guessing that directory's name.
//!
//! Why not the `async-tftp` crate (0.4.2, whose source was read for this): it brings a
//! runtime of its own (`async-executor`, `async-io`'s reactor thread and the `blocking`
//! thread pool: its directory handler reads files through `blocking::Unblock`, a pool hop per
//! 8 KiB) beside the worker's tokio; a duplicate ACK never triggers an early resend of a
//! window, so a client that reports a lost first block waits for the full timeout (3 s by
//! default, 100 retries: a vanished client holds its transfer for minutes); and a per-job view
//! needs the same path checks as here either way, through its `Handler`. This module is a few
//! hundred lines on tokio's and std's UDP sockets (and `nix` for `recvmsg`) with no new
//! dependency, and `hal/benches/tftp.rs` measures it against tftpd-hpa.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;
use tokio::net::UdpSocket;

/// TFTP opcodes (RFC 1350, 2347).
const RRQ: u16 = 1;
const WRQ: u16 = 2;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

/// TFTP error codes.
const ERR_UNDEFINED: u16 = 0;
const ERR_NOT_FOUND: u16 = 1;
const ERR_ACCESS: u16 = 2;
const ERR_ILLEGAL: u16 = 4;

/// The largest block RFC 2348 allows.
pub const MAX_BLKSIZE: u16 = 65464;
/// Bytes read from a file at a time (rounded to whole blocks).
const READ_CHUNK: usize = 256 * 1024;
/// How often a waiting transfer looks whether the server was stopped.
const STOP_TICK: Duration = Duration::from_millis(200);
/// Stack of a transfer's thread: its buffers are on the heap.
const TRANSFER_STACK: usize = 256 * 1024;
/// A netascii transfer is converted in memory: larger files are refused.
const MAX_NETASCII: u64 = 64 * 1024 * 1024;

/// How the server behaves; [`Default`] suits boards on a lab network.
#[derive(Clone, Debug)]
pub struct TftpConfig {
    /// Retransmission timeout when the client asks for none (`timeout` option).
    pub timeout: Duration,
    /// Timeouts in a row without progress before a transfer is given up.
    pub retries: u32,
    /// The largest `blksize` granted.
    pub max_blksize: u16,
    /// The largest `windowsize` granted.
    pub max_windowsize: u16,
    /// Transfers at once; a request past it gets "server busy".
    pub max_transfers: usize,
}

impl Default for TftpConfig {
    fn default() -> TftpConfig {
        TftpConfig {
            timeout: Duration::from_secs(1),
            retries: 5,
            max_blksize: MAX_BLKSIZE,
            max_windowsize: 64,
            max_transfers: 512,
        }
    }
}

/// What the server did, counted since it started.
#[derive(Debug, Default)]
pub struct TftpStats {
    active: AtomicU64,
    completed: AtomicU64,
    refused: AtomicU64,
    given_up: AtomicU64,
    aborted: AtomicU64,
    resent: AtomicU64,
}

impl TftpStats {
    /// Transfers running now.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::SeqCst)
    }
    /// Transfers whose last block was acknowledged.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }
    /// Requests answered with a TFTP error (bad packet, bad path, missing file, a write).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
    /// Transfers given up after [`TftpConfig::retries`] timeouts (the client vanished).
    pub fn given_up(&self) -> u64 {
        self.given_up.load(Ordering::SeqCst)
    }
    /// Transfers the client ended with an error packet, or a socket error ended.
    pub fn aborted(&self) -> u64 {
        self.aborted.load(Ordering::SeqCst)
    }
    /// Windows sent again: after a timeout, a gap the client reported or a duplicate ACK.
    pub fn resent(&self) -> u64 {
        self.resent.load(Ordering::SeqCst)
    }
}

/// A read-only TFTP server for one root directory (see the module documentation).
pub struct TftpServer {
    socket: UdpSocket,
    root: Arc<Root>,
    config: TftpConfig,
    stats: Arc<TftpStats>,
}

/// The served directory: an open descriptor (what `openat2` resolves beneath) and its
/// canonical path (for absolute requests and the fallback check).
struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl TftpServer {
    /// Binds `addr` (port 0: any free port) to serve `root`.
    pub async fn bind(addr: SocketAddr, root: &Path, config: TftpConfig) -> io::Result<TftpServer> {
        let path = std::fs::canonicalize(root)
            .map_err(|e| io::Error::new(e.kind(), format!("TFTP root {}: {e}", root.display())))?;
        let fd = nix::fcntl::open(
            &path,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| io::Error::other(format!("TFTP root {}: {e}", path.display())))?;
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("TFTP server on {addr}: {e}")))?;
        // the local address of each request, so that its transfer replies from it
        let pktinfo = if addr.is_ipv4() {
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Ipv4PacketInfo, &true)
        } else {
            nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::Ipv6RecvPacketInfo,
                &true,
            )
        };
        pktinfo.map_err(|e| io::Error::other(format!("TFTP server on {addr}: IP_PKTINFO: {e}")))?;
        Ok(TftpServer {
            socket,
            root: Arc::new(Root { fd, path }),
            config,
            stats: Arc::default(),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Its counters, shared: they go on counting while [`TftpServer::serve`] runs.
    pub fn stats(&self) -> Arc<TftpStats> {
        self.stats.clone()
    }

    /// Serves until the future is dropped (which ends every transfer, each within 200 ms or
    /// a quarter of its timeout) or the listening socket fails. No request, however
    /// malformed, ends it.
    pub async fn serve(self) -> io::Result<()> {
        let peers: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
        let local = self.socket.local_addr()?;
        // dropping this future (or an error) tells every transfer thread to end
        let stop = StopOnDrop(Arc::default());
        let mut buf = vec![0u8; 65536];
        let mut cmsg = nix::cmsg_space!(libc::in_pktinfo, libc::in6_pktinfo);
        loop {
            let r = self
                .socket
                .async_io(tokio::io::Interest::READABLE, || {
                    recv_request(&self.socket, &mut buf, &mut cmsg)
                })
                .await;
            let (n, peer, dst) = match r {
                Ok(x) => x,
                // ICMP errors of earlier sends and the like: not the server's end
                Err(e) if is_transient(&e) => continue,
                Err(e) => return Err(e),
            };
            let request = match parse_request(&buf[..n]) {
                Ok(r) => r,
                Err((code, msg)) => {
                    self.stats.refused.fetch_add(1, Ordering::SeqCst);
                    let _ = self.socket.send_to(&error_packet(code, &msg), peer).await;
                    continue;
                }
            };
            // a client that sent its request again while we already answer it: one transfer
            if peers.lock().is_ok_and(|p| p.contains(&peer)) {
                continue;
            }
            if self.stats.active() >= self.config.max_transfers as u64 {
                self.stats.refused.fetch_add(1, Ordering::SeqCst);
                let _ = self
                    .socket
                    .send_to(&error_packet(ERR_UNDEFINED, "server busy, try again"), peer)
                    .await;
                continue;
            }
            if let Ok(mut p) = peers.lock() {
                p.insert(peer);
            }
            self.stats.active.fetch_add(1, Ordering::SeqCst);
            // the reply comes from the address the request was sent to (a listener on
            // 0.0.0.0 learns it from IP_PKTINFO), else the client drops it
            let from = dst.unwrap_or(SocketAddr::new(local.ip(), 0));
            // frees the transfer's place when the thread ends, or when it could not start
            let slot = Slot {
                stats: self.stats.clone(),
                peers: peers.clone(),
                peer,
            };
            let (root, config, stop_flag) =
                (self.root.clone(), self.config.clone(), stop.0.clone());
            let spawned = std::thread::Builder::new()
                .name("basalt-tftp-xfer".into())
                .stack_size(TRANSFER_STACK)
                .spawn(move || {
                    let stats = &slot.stats;
                    // the listener's own address when that one cannot be bound (it can)
                    let binds = [from, SocketAddr::new(local.ip(), 0)];
                    let end = transfer(&binds, peer, request, &root, &config, stats, &stop_flag);
                    let counter = match end {
                        End::Completed => &stats.completed,
                        End::Refused => &stats.refused,
                        End::GivenUp => &stats.given_up,
                        End::Aborted => &stats.aborted,
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    drop(slot);
                });
            if spawned.is_err() {
                self.stats.refused.fetch_add(1, Ordering::SeqCst);
                let _ = self
                    .socket
                    .send_to(&error_packet(ERR_UNDEFINED, "server busy, try again"), peer)
                    .await;
            }
        }
    }
}

/// A running transfer's place in the server: given back when dropped.
struct Slot {
    stats: Arc<TftpStats>,
    peers: Arc<Mutex<HashSet<SocketAddr>>>,
    peer: SocketAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.active.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut p) = self.peers.lock() {
            p.remove(&self.peer);
        }
    }
}

/// Set when [`TftpServer::serve`] ends: the transfer threads see it and end too.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Receives one datagram on the listening socket: its length, its sender and, when the
/// kernel says (IP_PKTINFO / IPV6_PKTINFO), the local address it was sent to.
fn recv_request(
    socket: &UdpSocket,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<SocketAddr>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(cmsg),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let peer = match msg.address {
        Some(a) => {
            if let Some(v4) = a.as_sockaddr_in() {
                SocketAddr::V4((*v4).into())
            } else if let Some(v6) = a.as_sockaddr_in6() {
                SocketAddr::V6((*v6).into())
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "not an IP sender",
                ));
            }
        }
        None => return Err(io::Error::new(io::ErrorKind::Interrupted, "no sender")),
    };
    let mut dst = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv4PacketInfo(i) => {
                    let to = Ipv4Addr::from(u32::from_be(i.ipi_addr.s_addr));
                    // a broadcast cannot be replied from: the address the kernel would use
                    let to = if to.is_broadcast() || to.is_multicast() {
                        Ipv4Addr::from(u32::from_be(i.ipi_spec_dst.s_addr))
                    } else {
                        to
                    };
                    dst = Some(SocketAddr::new(IpAddr::V4(to), 0));
                }
                ControlMessageOwned::Ipv6PacketInfo(i) => {
                    let to = Ipv6Addr::from(i.ipi6_addr.s6_addr);
                    // a link-local address is bound with the interface it came in on
                    let scope = if to.is_unicast_link_local() {
                        i.ipi6_ifindex
                    } else {
                        0
                    };
                    if !to.is_multicast() {
                        dst = Some(SocketAddr::V6(SocketAddrV6::new(to, 0, 0, scope)));
                    }
                }
                _ => {}
            }
        }
    }
    let n = msg.bytes;
    Ok((n, peer, dst))
}

/// A [`TftpServer`] on a thread of its own (with its own current-thread runtime, so that
/// nothing a job or a daemon does on its runtime delays a transfer); it stops when dropped.
pub struct TftpThread {
    addr: SocketAddr,
    stats: Arc<TftpStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TftpThread {
    /// Binds `addr` to serve `root` and starts serving on a new thread; binding errors are
    /// returned here.
    pub fn start(addr: SocketAddr, root: &Path, config: TftpConfig) -> io::Result<TftpThread> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let server = rt.block_on(TftpServer::bind(addr, root, config))?;
        let (addr, stats) = (server.local_addr()?, server.stats());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("basalt-tftp".into())
            .spawn(move || {
                rt.block_on(async move {
                    tokio::select! {
                        r = server.serve() => if let Err(e) = r {
                            eprintln!("basalt: the TFTP server on {addr} stopped: {e}");
                        },
                        _ = rx => {}
                    }
                })
            })?;
        Ok(TftpThread {
            addr,
            stats,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<TftpStats> {
        self.stats.clone()
    }
}

impl Drop for TftpThread {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Errors of a UDP socket that an earlier packet caused (ICMP unreachable and the like).
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e.raw_os_error() == Some(libc::EHOSTUNREACH)
        || e.raw_os_error() == Some(libc::ENETUNREACH)
}

// ---- packets -------------------------------------------------------------------------------

/// A read request, parsed.
#[derive(Debug)]
struct Request {
    filename: Vec<u8>,
    netascii: bool,
    /// `(name lowercased, value)`, in the client's order.
    options: Vec<(String, String)>,
}

/// Parses a request on the listening port; the error is what to answer.
fn parse_request(p: &[u8]) -> Result<Request, (u16, String)> {
    let illegal = |m: &str| (ERR_ILLEGAL, m.to_string());
    if p.len() < 2 {
        return Err(illegal("packet too short"));
    }
    match u16::from_be_bytes([p[0], p[1]]) {
        RRQ => {}
        WRQ => {
            return Err((
                ERR_ACCESS,
                "this server is read-only: writing is refused".into(),
            ))
        }
        _ => return Err(illegal("expected a read request")),
    }
    let body = &p[2..];
    if body.last() != Some(&0) {
        return Err(illegal("malformed request: fields must end with NUL"));
    }
    let mut fields = body[..body.len() - 1].split(|b| *b == 0);
    let filename = fields.next().unwrap_or_default().to_vec();
    let mode = fields
        .next()
        .ok_or_else(|| illegal("malformed request: no mode"))?;
    let netascii = if mode.eq_ignore_ascii_case(b"octet") {
        false
    } else if mode.eq_ignore_ascii_case(b"netascii") {
        true
    } else {
        return Err(illegal("unsupported mode (octet and netascii only)"));
    };
    if filename.is_empty() {
        return Err((ERR_NOT_FOUND, "no file name".into()));
    }
    let mut options = Vec::new();
    while let Some(name) = fields.next() {
        let Some(value) = fields.next() else {
            return Err(illegal("malformed request: option without a value"));
        };
        options.push((
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Ok(Request {
        filename,
        netascii,
        options,
    })
}

/// An ERROR packet.
fn error_packet(code: u16, msg: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(5 + msg.len());
    p.extend_from_slice(&ERROR.to_be_bytes());
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(msg.as_bytes());
    p.push(0);
    p
}

/// A packet from the client during a transfer.
enum Reply {
    Ack(u16),
    Error,
    Other,
}

fn parse_reply(p: &[u8]) -> Reply {
    if p.len() < 4 {
        return Reply::Other;
    }
    match u16::from_be_bytes([p[0], p[1]]) {
        ACK => Reply::Ack(u16::from_be_bytes([p[2], p[3]])),
        ERROR => Reply::Error,
        _ => Reply::Other,
    }
}

/// The options granted, as the OACK carries them.
#[derive(Debug, Default)]
struct Granted {
    blksize: Option<u16>,
    windowsize: Option<u16>,
    timeout: Option<u8>,
    tsize: Option<u64>,
}

/// What the server grants of the client's options (RFC 2347: unknown or invalid ones are
/// left out).
fn negotiate(req: &Request, size: u64, config: &TftpConfig) -> Granted {
    let mut g = Granted::default();
    for (name, value) in &req.options {
        let value = value.trim();
        match name.as_str() {
            "blksize" => {
                if let Ok(v) = value.parse::<u32>() {
                    if v >= 8 {
                        let max = u32::from(config.max_blksize.clamp(8, MAX_BLKSIZE));
                        g.blksize = Some(v.min(max) as u16);
                    }
                }
            }
            "windowsize" => {
                if let Ok(v) = value.parse::<u32>() {
                    if (1..=65535).contains(&v) {
                        let max = u32::from(config.max_windowsize.max(1));
                        g.windowsize = Some(v.min(max) as u16);
                    }
                }
            }
            "timeout" => {
                if let Ok(v) = value.parse::<u8>() {
                    if v >= 1 {
                        g.timeout = Some(v);
                    }
                }
            }
            // the size of a netascii transfer is not known before converting it
            "tsize" if !req.netascii => g.tsize = Some(size),
            _ => {}
        }
    }
    g
}

fn oack_packet(g: &Granted) -> Option<Vec<u8>> {
    let mut p = OACK.to_be_bytes().to_vec();
    let mut opt = |name: &str, value: String| {
        p.extend_from_slice(name.as_bytes());
        p.push(0);
        p.extend_from_slice(value.as_bytes());
        p.push(0);
    };
    let mut any = false;
    if let Some(v) = g.blksize {
        opt("blksize", v.to_string());
        any = true;
    }
    if let Some(v) = g.timeout {
        opt("timeout", v.to_string());
        any = true;
    }
    if let Some(v) = g.tsize {
        opt("tsize", v.to_string());
        any = true;
    }
    if let Some(v) = g.windowsize {
        opt("windowsize", v.to_string());
        any = true;
    }
    any.then_some(p)
}

// ---- paths ---------------------------------------------------------------------------------

/// The request's file name as a path relative to the root, or why it is refused.
fn relative_path(root: &Path, name: &[u8]) -> Result<PathBuf, (u16, String)> {
    let refuse = |m: &str| (ERR_ACCESS, m.to_string());
    let path = Path::new(OsStr::from_bytes(name));
    let rel = if path.is_absolute() {
        path.strip_prefix(root)
            .map_err(|_| refuse("Access violation: absolute path outside the TFTP root"))?
    } else {
        path
    };
    let mut out = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse("Access violation: '..' in the path")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse("Access violation: absolute path"))
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(refuse("Access violation: the TFTP root is not a file"));
    }
    Ok(out)
}

/// Opens `rel` below the root, never following a path out of it; regular files only.
fn open_beneath(root: &Root, rel: &Path) -> Result<(File, u64), (u16, String)> {
    use nix::errno::Errno;
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    // O_NONBLOCK: a FIFO below the root must not hang the server
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let file = match nix::fcntl::openat2(&root.fd, rel, how) {
        Ok(fd) => File::from(fd),
        Err(Errno::ENOSYS) | Err(Errno::EPERM) => open_checked(root, rel)?,
        Err(e) => return Err(open_error(e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| (ERR_UNDEFINED, format!("cannot read the file: {e}")))?;
    if !meta.is_file() {
        return Err((ERR_ACCESS, "Access violation: not a regular file".into()));
    }
    Ok((file, meta.len()))
}

/// Without `openat2`: the fully resolved path must lie below the canonical root.
fn open_checked(root: &Root, rel: &Path) -> Result<File, (u16, String)> {
    let real = std::fs::canonicalize(root.path.join(rel))
        .map_err(|e| open_error(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    if !real.starts_with(&root.path) {
        return Err(open_error(nix::errno::Errno::EXDEV));
    }
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&real)
        .map_err(|e| open_error(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))))
}

fn open_error(e: nix::errno::Errno) -> (u16, String) {
    use nix::errno::Errno;
    match e {
        // RFC 1350's text, as tftpd-hpa sends it: U-Boot prints the server's message and
        // LAVA's device types match on it (`error-messages: File not found`)
        Errno::ENOENT | Errno::ENOTDIR => (ERR_NOT_FOUND, "File not found".into()),
        Errno::EXDEV | Errno::ELOOP => (
            ERR_ACCESS,
            "Access violation: the path leaves the TFTP root".into(),
        ),
        Errno::EACCES | Errno::EPERM => (ERR_ACCESS, "Access violation: permission denied".into()),
        e => (ERR_UNDEFINED, format!("cannot open the file: {e}")),
    }
}

// ---- one transfer --------------------------------------------------------------------------

/// How a transfer ended.
enum End {
    Completed,
    Refused,
    GivenUp,
    Aborted,
}

/// Where a transfer's blocks come from.
enum Source {
    /// An octet transfer: read from the file [`READ_CHUNK`] bytes at a time (one `pread`
    /// per chunk, not per block).
    File {
        file: File,
        buf: Vec<u8>,
        buf_off: u64,
    },
    /// A netascii transfer, converted whole.
    Memory(Vec<u8>),
}

impl Source {
    /// Bytes `[off, off + len)` (clipped to the end), reading more of the file if needed.
    fn slice(&mut self, off: u64, len: usize, total: u64) -> io::Result<&[u8]> {
        let len = (total.saturating_sub(off)).min(len as u64) as usize;
        match self {
            Source::Memory(m) => {
                let s = off as usize;
                Ok(&m[s..s + len])
            }
            Source::File { file, buf, buf_off } => {
                let have = off >= *buf_off && off + len as u64 <= *buf_off + buf.len() as u64;
                if !have {
                    let want = (total - off).min(READ_CHUNK.max(len) as u64) as usize;
                    buf.resize(want, 0);
                    *buf_off = off;
                    let got = read_full_at(file, buf, off)?;
                    buf.truncate(got);
                    if got < len {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the file shrank while it was served",
                        ));
                    }
                }
                let s = (off - *buf_off) as usize;
                Ok(&buf[s..s + len])
            }
        }
    }
}

fn read_full_at(f: &File, b: &mut [u8], off: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < b.len() {
        match f.read_at(&mut b[n..], off + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Converts to netascii: LF → CR LF, CR → CR NUL.
fn to_netascii(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16);
    for &b in data {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            b => out.push(b),
        }
    }
    out
}

/// Serves one read request from a socket of its own, bound to the first of `binds` that can
/// be (the address the request was sent to) and connected to the client; runs on a thread of its own with
/// blocking I/O, so a lock-step block costs one `send` and one `recv` and no wakeup of a
/// runtime. It ends when `stop` is set, within [`STOP_TICK`].
fn transfer(
    binds: &[SocketAddr],
    peer: SocketAddr,
    req: Request,
    root: &Root,
    config: &TftpConfig,
    stats: &TftpStats,
    stop: &AtomicBool,
) -> End {
    let Ok(socket) = std::net::UdpSocket::bind(binds) else {
        return End::Aborted;
    };
    if socket.connect(peer).is_err() {
        return End::Aborted;
    }
    let refuse = |(code, msg): (u16, String)| {
        let _ = socket.send(&error_packet(code, &msg));
        End::Refused
    };
    let rel = match relative_path(&root.path, &req.filename) {
        Ok(r) => r,
        Err(e) => return refuse(e),
    };
    let (file, size) = match open_beneath(root, &rel) {
        Ok(x) => x,
        Err(e) => return refuse(e),
    };
    let (mut source, total) = if req.netascii {
        if size > MAX_NETASCII {
            return refuse((
                ERR_UNDEFINED,
                "file too large for netascii: use octet".into(),
            ));
        }
        let mut data = vec![0u8; size as usize];
        match read_full_at(&file, &mut data, 0) {
            Ok(n) => data.truncate(n),
            Err(e) => return refuse((ERR_UNDEFINED, format!("cannot read the file: {e}"))),
        }
        let m = to_netascii(&data);
        let len = m.len() as u64;
        (Source::Memory(m), len)
    } else {
        (
            Source::File {
                file,
                buf: Vec::new(),
                buf_off: 0,
            },
            size,
        )
    };
    let granted = negotiate(&req, total, config);
    let oack = oack_packet(&granted);
    let blksize = usize::from(granted.blksize.unwrap_or(512));
    let window = i64::from(granted.windowsize.unwrap_or(1));
    let timeout = granted
        .timeout
        .map(|t| Duration::from_secs(u64::from(t)))
        .unwrap_or(config.timeout);
    // the socket wakes at least every tick to see `stop` and the deadline: a timeout is
    // counted against the deadline (at most a quarter late), not per wakeup
    let tick = (timeout / 4).clamp(Duration::from_millis(1), STOP_TICK);
    if socket.set_read_timeout(Some(tick)).is_err() {
        return End::Aborted;
    }
    // blocks 1..=last; the last one is shorter than blksize (maybe empty)
    let last = (total / blksize as u64) as i64 + 1;
    // block 0 is the OACK, when there is one
    let mut base: i64 = if oack.is_some() { 0 } else { 1 };
    let mut next = base;
    let mut timeouts = 0u32;
    let mut dup_resent = false;
    let mut packet = Vec::with_capacity(4 + blksize);
    let mut rbuf = [0u8; 1024];
    loop {
        if stop.load(Ordering::Relaxed) {
            return End::Aborted;
        }
        // send what the window allows (only the OACK until it is acknowledged)
        let limit = if base == 0 {
            0
        } else {
            (base + window - 1).min(last)
        };
        while next <= limit {
            let bytes: &[u8] = if next == 0 {
                oack.as_deref().unwrap_or_default()
            } else {
                let off = (next - 1) as u64 * blksize as u64;
                let data = match source.slice(off, blksize, total) {
                    Ok(d) => d,
                    Err(e) => return refuse((ERR_UNDEFINED, format!("cannot read the file: {e}"))),
                };
                packet.clear();
                packet.extend_from_slice(&DATA.to_be_bytes());
                packet.extend_from_slice(&(next as u16).to_be_bytes());
                packet.extend_from_slice(data);
                &packet
            };
            match socket.send(bytes) {
                Ok(_) => {}
                Err(e) if is_transient(&e) => {}
                Err(_) => return End::Aborted,
            }
            next += 1;
        }
        // wait for an ACK until `timeout` after the window went out; duplicates and stray
        // packets do not move that deadline
        let deadline = Instant::now() + timeout;
        loop {
            // checked after every wakeup: packets that are ignored must not hold it off
            if Instant::now() >= deadline {
                timeouts += 1;
                if timeouts > config.retries {
                    return End::GivenUp;
                }
                next = base;
                stats.resent.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let n = match socket.recv(&mut rbuf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if stop.load(Ordering::Relaxed) {
                        return End::Aborted;
                    }
                    continue;
                }
                Err(e) if is_transient(&e) => continue,
                Err(_) => return End::Aborted,
            };
            match parse_reply(&rbuf[..n]) {
                Reply::Ack(a) => {
                    // which block of [base - 1, next - 1] it names
                    let delta = i64::from(a.wrapping_sub((base - 1) as u16));
                    if delta > next - base {
                        continue; // an old ACK from before the window
                    }
                    let acked = base - 1 + delta;
                    if acked < base {
                        // a duplicate of the ACK before the window
                        if window > 1 && !dup_resent {
                            dup_resent = true;
                            next = base;
                            stats.resent.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        continue;
                    }
                    if acked >= last {
                        return End::Completed;
                    }
                    if acked + 1 < next {
                        // the client saw a gap: the window goes again from after its ACK
                        stats.resent.fetch_add(1, Ordering::Relaxed);
                    }
                    base = acked + 1;
                    next = base;
                    timeouts = 0;
                    dup_resent = false;
                    break;
                }
                Reply::Error => return End::Aborted,
                Reply::Other => {
                    let _ = socket.send(&error_packet(ERR_ILLEGAL, "expected an ACK"));
                    return End::Refused;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_are_refused() {
        let r = parse_request(b"\0\x01a/b\0OCTET\0blksize\x001468\0tsize\x000\0").unwrap();
        assert_eq!(r.filename, b"a/b");
        assert!(!r.netascii);
        assert_eq!(r.options.len(), 2);
        for bad in [
            &b""[..],
            b"\0",
            b"\0\x01",
            b"\0\x01file",
            b"\0\x01file\0",
            b"\0\x01file\0mail\0",
            b"\0\x01file\0octet\0blksize\0",
            b"\0\x03\0\x01data",
            b"\0\x09x\0octet\0",
        ] {
            let e = parse_request(bad).unwrap_err();
            assert_eq!(e.0, ERR_ILLEGAL, "{bad:?}");
        }
        assert_eq!(
            parse_request(b"\0\x02f\0octet\0").unwrap_err().0,
            ERR_ACCESS
        );
        assert_eq!(
            parse_request(b"\0\x01\0octet\0").unwrap_err().0,
            ERR_NOT_FOUND
        );
    }

    #[test]
    fn paths_stay_below_the_root() {
        let root = Path::new("/srv/tftp");
        assert_eq!(relative_path(root, b"a/./b").unwrap(), Path::new("a/b"));
        assert_eq!(
            relative_path(root, b"/srv/tftp/a/b").unwrap(),
            Path::new("a/b")
        );
        for bad in [
            &b"../x"[..],
            b"a/../../x",
            b"/etc/passwd",
            b"/srv/tftpx/a",
            b".",
            b"/srv/tftp",
        ] {
            assert_eq!(
                relative_path(root, bad).unwrap_err().0,
                ERR_ACCESS,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn options_are_capped() {
        let req = parse_request(
            b"\0\x01f\0octet\0BLKSIZE\x0099999\0windowsize\x001000\0timeout\x000\0tsize\x000\0x\0y\0",
        )
        .unwrap();
        let g = negotiate(&req, 42, &TftpConfig::default());
        assert_eq!(g.blksize, Some(MAX_BLKSIZE));
        assert_eq!(g.windowsize, Some(64));
        assert_eq!(g.timeout, None);
        assert_eq!(g.tsize, Some(42));
        assert_eq!(to_netascii(b"a\nb\rc"), b"a\r\nb\r\0c");
    }
}
