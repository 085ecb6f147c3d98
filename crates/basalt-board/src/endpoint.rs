//! Where the simulated board's console is served: a pty, a unix socket or a telnet port.
//!
//! * unix socket / telnet: one client at a time; a new client replaces the old one, which
//!   is disconnected (ser2net's `kickolduser`). Telnet does the minimum ser2net does: it
//!   sends `IAC WILL ECHO` and `IAC WILL SUPPRESS-GO-AHEAD`, strips the client's option
//!   negotiation from the input, doubles `0xff` in the output and drops the NUL of `\r\0`.
//! * pty: the board holds the master and one slave descriptor (raw mode); the slave's path
//!   is published as a symlink. Output nobody reads is discarded after a short wait
//!   (the pty's input queue is flushed), as a serial line with no listener loses it.
//!
//! A console drop (the `drop-console` fault) disconnects the client and stops listening
//! for a while: connections are refused (a unix socket's file stays, so `connect` fails
//! with "connection refused"; a pty's symlink disappears), then the endpoint comes back.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::termios::{cfmakeraw, tcflush, tcgetattr, tcsetattr, FlushArg, SetArg};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::line::{Uart, CLIENT_QUEUE};
use super::SimError;

const IAC: u8 = 255;
const WILL: u8 = 251;
const WONT: u8 = 252;
const DO: u8 = 253;
const DONT: u8 = 254;
const SB: u8 = 250;
const SE: u8 = 240;
const OPT_ECHO: u8 = 1;
const OPT_SGA: u8 = 3;

/// Where the console is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleMode {
    /// A pty; the slave's path is published as a symlink at `link`.
    Pty {
        /// The symlink to create.
        link: PathBuf,
    },
    /// A unix stream socket at `path`.
    Unix {
        /// The socket path.
        path: PathBuf,
    },
    /// A TCP port speaking (minimal) telnet.
    Telnet {
        /// The address to listen on (127.0.0.1 unless told otherwise).
        addr: SocketAddr,
    },
}

/// Requests to the endpoint task.
#[derive(Debug)]
pub(crate) enum EndpointCmd {
    /// Disconnect the client and refuse connections for this long; the sender (if any)
    /// is told once the client is gone and connections are refused.
    Drop(Duration, Option<oneshot::Sender<()>>),
}

/// A running endpoint.
pub(crate) struct Endpoint {
    /// Sends requests to the endpoint.
    pub cmds: mpsc::Sender<EndpointCmd>,
    task: JoinHandle<()>,
    cleanup: Option<PathBuf>,
    /// Where it is, e.g. `unix /run/b.sock`, `telnet 127.0.0.1:7101`, `pty /dev/pts/3`.
    pub description: String,
}

impl Endpoint {
    /// Starts serving; binding errors are returned at once.
    pub async fn start(
        mode: &ConsoleMode,
        uart: Arc<Uart>,
        input: mpsc::Sender<Vec<u8>>,
    ) -> Result<Endpoint, SimError> {
        let (cmds, rx) = mpsc::channel(8);
        match mode {
            ConsoleMode::Unix { path } => {
                let listener = bind_unix(path)?;
                let description = format!("unix {}", path.display());
                let spec = ListenSpec::Unix(path.clone());
                let task = tokio::spawn(serve_stream(
                    Listener::Unix(listener),
                    spec,
                    uart,
                    input,
                    rx,
                ));
                Ok(Endpoint {
                    cmds,
                    task,
                    cleanup: Some(path.clone()),
                    description,
                })
            }
            ConsoleMode::Telnet { addr } => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| SimError::Bind {
                        what: format!("telnet {addr}"),
                        source,
                    })?;
                let actual = listener.local_addr().map_err(|source| SimError::Bind {
                    what: format!("telnet {addr}"),
                    source,
                })?;
                let task = tokio::spawn(serve_stream(
                    Listener::Tcp(listener),
                    ListenSpec::Tcp(actual),
                    uart,
                    input,
                    rx,
                ));
                Ok(Endpoint {
                    cmds,
                    task,
                    cleanup: None,
                    description: format!("telnet {actual}"),
                })
            }
            ConsoleMode::Pty { link } => {
                let pty = Pty::open(link)?;
                let description = format!("pty {} (link {})", pty.path.display(), link.display());
                let task = tokio::spawn(serve_pty(pty, link.clone(), uart, input, rx));
                Ok(Endpoint {
                    cmds,
                    task,
                    cleanup: Some(link.clone()),
                    description,
                })
            }
        }
    }

    /// Stops serving and removes the socket file or pty symlink.
    pub fn shutdown(&self) {
        self.task.abort();
        if let Some(p) = &self.cleanup {
            remove_if_ours(p);
        }
    }
}

/// Removes a socket file or a symlink at `p` (nothing else: never a user's regular file).
pub(crate) fn remove_if_ours(p: &Path) {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(p) {
        let t = meta.file_type();
        if t.is_socket() || t.is_symlink() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Binds a unix socket, replacing a stale socket file (but no other kind of file).
pub(crate) fn bind_unix(path: &Path) -> Result<UnixListener, SimError> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        } else {
            return Err(SimError::Bind {
                what: format!("unix {}", path.display()),
                source: io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a socket"),
            });
        }
    }
    UnixListener::bind(path).map_err(|source| SimError::Bind {
        what: format!("unix {}", path.display()),
        source,
    })
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

#[derive(Clone)]
enum ListenSpec {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl ListenSpec {
    async fn bind(&self) -> Result<Listener, SimError> {
        match self {
            ListenSpec::Unix(p) => bind_unix(p).map(Listener::Unix),
            ListenSpec::Tcp(a) => TcpListener::bind(a)
                .await
                .map(Listener::Tcp)
                .map_err(|source| SimError::Bind {
                    what: format!("telnet {a}"),
                    source,
                }),
        }
    }
}

/// A connected client's two tasks.
struct Client {
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Client {
    fn kick(self) {
        self.reader.abort();
        self.writer.abort();
    }
}

fn install<R, W>(
    r: R,
    w: W,
    telnet: bool,
    id: u64,
    uart: &Arc<Uart>,
    input: &mpsc::Sender<Vec<u8>>,
) -> Client
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
    uart.attach(id, tx);
    let reader = tokio::spawn(read_client(r, telnet, id, uart.clone(), input.clone()));
    let writer = tokio::spawn(write_client(w, telnet, id, uart.clone(), rx));
    Client { reader, writer }
}

async fn read_client<R: AsyncRead + Unpin>(
    mut r: R,
    telnet: bool,
    id: u64,
    uart: Arc<Uart>,
    input: mpsc::Sender<Vec<u8>>,
) {
    let mut filter = TelnetFilter::default();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let data = if telnet {
            filter.feed(&buf[..n])
        } else {
            buf[..n].to_vec()
        };
        // Typing at a board that is off goes nowhere.
        if data.is_empty() || !uart.powered() {
            continue;
        }
        if input.send(data).await.is_err() {
            break;
        }
    }
    uart.detach(id);
}

async fn write_client<W: AsyncWrite + Unpin>(
    mut w: W,
    telnet: bool,
    id: u64,
    uart: Arc<Uart>,
    mut rx: mpsc::Receiver<Vec<u8>>,
) {
    if telnet
        && w.write_all(&[IAC, WILL, OPT_ECHO, IAC, WILL, OPT_SGA])
            .await
            .is_err()
    {
        uart.detach(id);
        return;
    }
    while let Some(chunk) = rx.recv().await {
        let data = if telnet { escape_iac(chunk) } else { chunk };
        if w.write_all(&data).await.is_err() {
            break;
        }
    }
    uart.detach(id);
    let _ = w.shutdown().await;
}

enum Event {
    Accepted(io::Result<Client>),
    Cmd(Option<EndpointCmd>),
}

async fn serve_stream(
    listener: Listener,
    spec: ListenSpec,
    uart: Arc<Uart>,
    input: mpsc::Sender<Vec<u8>>,
    mut cmds: mpsc::Receiver<EndpointCmd>,
) {
    let mut listener = Some(listener);
    let mut current: Option<Client> = None;
    let mut next_id: u64 = 1;
    loop {
        let Some(l) = listener.as_ref() else {
            // Re-listen after a drop; retry while the address is busy.
            match spec.bind().await {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    eprintln!("basalt-board: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            continue;
        };
        let id = next_id;
        let event = tokio::select! {
            acc = accept(l, id, &uart, &input) => Event::Accepted(acc),
            cmd = cmds.recv() => Event::Cmd(cmd),
        };
        match event {
            Event::Accepted(Ok(client)) => {
                next_id += 1;
                if let Some(old) = current.replace(client) {
                    old.kick();
                }
            }
            Event::Accepted(Err(e)) => {
                eprintln!("basalt-board: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Event::Cmd(None) => return,
            Event::Cmd(Some(EndpointCmd::Drop(duration, ack))) => {
                if let Some(old) = current.take() {
                    old.kick();
                }
                uart.detach_all();
                listener = None; // connections are refused from now on
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
                eprintln!(
                    "basalt-board: console dropped for {:.1} s",
                    duration.as_secs_f64()
                );
                tokio::time::sleep(duration).await;
            }
        }
    }
}

async fn accept(
    l: &Listener,
    id: u64,
    uart: &Arc<Uart>,
    input: &mpsc::Sender<Vec<u8>>,
) -> io::Result<Client> {
    match l {
        Listener::Unix(l) => {
            let (s, _) = l.accept().await?;
            let (r, w) = s.into_split();
            Ok(install(r, w, false, id, uart, input))
        }
        Listener::Tcp(l) => {
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            let (r, w) = s.into_split();
            Ok(install(r, w, true, id, uart, input))
        }
    }
}

/// Doubles `0xff` (telnet data escaping).
fn escape_iac(chunk: Vec<u8>) -> Vec<u8> {
    if !chunk.contains(&IAC) {
        return chunk;
    }
    let mut out = Vec::with_capacity(chunk.len() + 8);
    for b in chunk {
        out.push(b);
        if b == IAC {
            out.push(IAC);
        }
    }
    out
}

/// Strips telnet commands from client input.
#[derive(Default)]
struct TelnetFilter {
    state: TState,
    after_cr: bool,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum TState {
    #[default]
    Data,
    Iac,
    Option,
    Sub,
    SubIac,
}

impl TelnetFilter {
    fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        for &b in data {
            self.state = match self.state {
                TState::Data => {
                    if b == IAC {
                        TState::Iac
                    } else {
                        // "\r\0" is a bare carriage return (RFC 854).
                        if !(self.after_cr && b == 0) {
                            out.push(b);
                        }
                        self.after_cr = b == b'\r';
                        TState::Data
                    }
                }
                TState::Iac => match b {
                    IAC => {
                        out.push(IAC);
                        self.after_cr = false;
                        TState::Data
                    }
                    WILL | WONT | DO | DONT => TState::Option,
                    SB => TState::Sub,
                    _ => TState::Data,
                },
                TState::Option => TState::Data,
                TState::Sub => {
                    if b == IAC {
                        TState::SubIac
                    } else {
                        TState::Sub
                    }
                }
                TState::SubIac => {
                    if b == SE {
                        TState::Data
                    } else {
                        TState::Sub
                    }
                }
            };
        }
        out
    }
}

/// The board's pty: master (async), one slave descriptor kept open, the slave's path.
struct Pty {
    master: AsyncFd<OwnedFd>,
    slave: OwnedFd,
    path: PathBuf,
}

impl Pty {
    fn open(link: &Path) -> Result<Pty, SimError> {
        let err = |what: &str, e: nix::Error| SimError::Bind {
            what: format!("pty ({what})"),
            source: io::Error::from(e),
        };
        let pair = nix::pty::openpty(None, None).map_err(|e| err("openpty", e))?;
        let mut t = tcgetattr(pair.slave.as_fd()).map_err(|e| err("tcgetattr", e))?;
        cfmakeraw(&mut t);
        tcsetattr(pair.slave.as_fd(), SetArg::TCSANOW, &t).map_err(|e| err("tcsetattr", e))?;
        let flags = fcntl(pair.master.as_fd(), FcntlArg::F_GETFL).map_err(|e| err("fcntl", e))?;
        fcntl(
            pair.master.as_fd(),
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )
        .map_err(|e| err("fcntl", e))?;
        let path = nix::unistd::ttyname(pair.slave.as_fd()).map_err(|e| err("ttyname", e))?;
        // SAFETY: the descriptor is owned by the AsyncFd and closed only when it is dropped.
        let master = unsafe { AsyncFd::register(pair.master) }.map_err(|e| SimError::Bind {
            what: "pty (register)".into(),
            source: e.into(),
        })?;
        // Publish the slave's path.
        if let Ok(meta) = std::fs::symlink_metadata(link) {
            if meta.file_type().is_symlink() {
                let _ = std::fs::remove_file(link);
            } else {
                return Err(SimError::Bind {
                    what: format!("pty link {}", link.display()),
                    source: io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "exists and is not a symlink",
                    ),
                });
            }
        }
        std::os::unix::fs::symlink(&path, link).map_err(|source| SimError::Bind {
            what: format!("pty link {}", link.display()),
            source,
        })?;
        Ok(Pty {
            master,
            slave: pair.slave,
            path,
        })
    }
}

/// Reads from a non-blocking descriptor.
pub(crate) async fn read_fd(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|inner| nix::unistd::read(inner.get_ref(), buf).map_err(io::Error::from))
        {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

/// Writes some bytes to a non-blocking descriptor.
pub(crate) async fn write_fd(fd: &AsyncFd<OwnedFd>, data: &[u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.writable().await?;
        match guard
            .try_io(|inner| nix::unistd::write(inner.get_ref(), data).map_err(io::Error::from))
        {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

/// Writes everything, flushing the slave's unread input when nobody reads it.
async fn write_pty(pty: &Pty, data: &[u8]) -> io::Result<()> {
    let mut off = 0;
    while off < data.len() {
        match tokio::time::timeout(
            Duration::from_millis(200),
            write_fd(&pty.master, &data[off..]),
        )
        .await
        {
            Ok(Ok(n)) => off += n,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                // Nobody reads the slave: what waits there is lost, as on a serial line.
                let _ = tcflush(pty.slave.as_fd(), FlushArg::TCIFLUSH);
            }
        }
    }
    Ok(())
}

async fn serve_pty(
    pty: Pty,
    link: PathBuf,
    uart: Arc<Uart>,
    input: mpsc::Sender<Vec<u8>>,
    mut cmds: mpsc::Receiver<EndpointCmd>,
) {
    let mut first = Some(pty);
    let mut id: u64 = 0;
    loop {
        let p = match first.take() {
            Some(p) => Arc::new(p),
            None => match Pty::open(&link) {
                Ok(p) => {
                    eprintln!("basalt-board: console pty {}", p.path.display());
                    Arc::new(p)
                }
                Err(e) => {
                    eprintln!("basalt-board: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        id += 1;
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CLIENT_QUEUE);
        uart.attach(id, tx);
        let wp = p.clone();
        let writer = tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if write_pty(&wp, &chunk).await.is_err() {
                    break;
                }
            }
        });
        let mut buf = vec![0u8; 4096];
        let dropped = loop {
            tokio::select! {
                r = read_fd(&p.master, &mut buf) => match r {
                    Ok(n) if n > 0 => {
                        if uart.powered() && input.send(buf[..n].to_vec()).await.is_err() {
                            break None;
                        }
                    }
                    // EIO cannot happen while we hold the slave; anything else: back off.
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                },
                cmd = cmds.recv() => match cmd {
                    None => break None,
                    Some(EndpointCmd::Drop(d, ack)) => break Some((d, ack)),
                },
            }
        };
        writer.abort();
        uart.detach(id);
        let Some((duration, ack)) = dropped else {
            return;
        };
        // Close the pty (readers see a hangup) and withdraw its path for a while.
        drop(p);
        remove_if_ours(&link);
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
        eprintln!(
            "basalt-board: console dropped for {:.1} s",
            duration.as_secs_f64()
        );
        tokio::time::sleep(duration).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telnet_filter() {
        let mut f = TelnetFilter::default();
        assert_eq!(
            f.feed(&[b'a', IAC, DO, OPT_ECHO, b'b', IAC, IAC, b'\r', 0, b'c']),
            vec![b'a', b'b', IAC, b'\r', b'c']
        );
        // negotiation split across reads, subnegotiation
        assert_eq!(f.feed(&[IAC]), Vec::<u8>::new());
        assert_eq!(f.feed(&[WILL]), Vec::<u8>::new());
        assert_eq!(
            f.feed(&[31, b'x', IAC, SB, 31, 0, 80, IAC, SE, b'y']),
            b"xy"
        );
        assert_eq!(f.feed(b"\r\n"), b"\r\n");
        assert_eq!(escape_iac(vec![1, IAC, 2]), vec![1, IAC, IAC, 2]);
    }
}
