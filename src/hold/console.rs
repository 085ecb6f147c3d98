//! The console server of a held board: telnet (raw TCP, telnet's IAC sequences understood) on
//! the lease's port, over the board's [`Hub`].
//!
//! A client connects and sends one line first: the lease's console token (it becomes the
//! writer) or its watch token (a read-only watcher), compared in constant time. The server
//! answers `basalt: console of DEVICE (writer|watcher)\r\n`, the hub's buffer (everything the
//! board printed since it was held, up to the buffer's size), then the live output. A wrong
//! token gets `basalt: wrong token\r\n`, a second writer `basalt: refused: the console already
//! has a writer\r\n`, and the connection is closed. The token line must come within
//! [`TOKEN_WAIT`] and be at most [`MAX_TOKEN_LINE`] bytes.
//!
//! Telnet: the server starts no negotiation (a raw TCP client sees no IAC bytes it did not
//! ask for). A client's requests are answered: `DO ECHO` and `DO SUPPRESS-GO-AHEAD` are
//! granted (the board echoes; there is no go-ahead), `WILL SUPPRESS-GO-AHEAD` is accepted,
//! every other option refused; subnegotiations and other commands are dropped; `CR NUL` is a
//! bare `CR`. The board's `0xFF` bytes are sent doubled (`IAC IAC`), as telnet wants them.
//!
//! A watcher's input is read (for its negotiation) and dropped. A connection that falls more
//! than the buffer behind is told how much it lost and goes on. [`ConsoleServer::close`]
//! closes every connection (at lease end), whatever state it is in; at most
//! [`MAX_CONNECTIONS`] are open at once.

use basalt_hal::console::hub::{Chunk, Hub, HubError, Subscriber};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a client has to send its token line.
pub const TOKEN_WAIT: Duration = Duration::from_secs(10);
/// The longest token line taken.
pub const MAX_TOKEN_LINE: usize = 512;
/// Connections open at once (watchers and the writer, and clients still sending a token).
pub const MAX_CONNECTIONS: usize = 64;

/// The lease's two tokens. Secrets: never logged, never in a `Debug`.
#[derive(Clone)]
pub struct Tokens {
    /// Makes a connection the writer (the lease holder).
    pub console: String,
    /// Makes a connection a read-only watcher.
    pub watch: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(…)")
    }
}

/// Who a connection is, from its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The lease holder: may type.
    Writer,
    /// Read-only.
    Watcher,
}

impl Tokens {
    /// The role `line` gives, comparing it with both tokens in constant time (for equal
    /// lengths; an empty token never matches).
    pub fn role(&self, line: &[u8]) -> Option<Role> {
        let is = |token: &str| !token.is_empty() && bool::from(line.ct_eq(token.as_bytes()));
        let writer = is(&self.console);
        let watcher = is(&self.watch);
        if writer {
            Some(Role::Writer)
        } else if watcher {
            Some(Role::Watcher)
        } else {
            None
        }
    }
}

/// The running server: its listener's task and its connections.
pub struct ConsoleServer {
    addr: std::net::SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
    /// Each connection holds a clone; all dropped: every connection is closed.
    alive: Option<tokio::sync::mpsc::Sender<()>>,
    gone: tokio::sync::mpsc::Receiver<()>,
}

impl ConsoleServer {
    /// Serves `hub` on `listener` for the device `device` with `tokens`.
    pub fn start(
        listener: TcpListener,
        hub: Hub,
        tokens: Tokens,
        device: String,
    ) -> std::io::Result<ConsoleServer> {
        let addr = listener.local_addr()?;
        let (shutdown, watch) = tokio::sync::watch::channel(false);
        let (alive, gone) = tokio::sync::mpsc::channel(1);
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let shared = Arc::new(Served {
            hub,
            tokens,
            device,
        });
        let alive_accept = alive.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((sock, _peer)) = listener.accept().await else {
                    // out of file descriptors and the like: try again a little later
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = sock.set_nodelay(true);
                let permit = limit.clone().try_acquire_owned();
                let shared = shared.clone();
                let mut watch = watch.clone();
                let alive = alive_accept.clone();
                tokio::spawn(async move {
                    let _alive = alive;
                    let mut sock = sock;
                    let Ok(_permit) = permit else {
                        let _ = sock
                            .write_all(b"basalt: refused: too many connections\r\n")
                            .await;
                        return;
                    };
                    tokio::select! {
                        _ = serve(&mut sock, &shared) => {}
                        _ = watch.wait_for(|stop| *stop) => {}
                    }
                    let _ = sock.shutdown().await;
                });
            }
        });
        Ok(ConsoleServer {
            addr,
            shutdown,
            accept,
            alive: Some(alive),
            gone,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Stops listening and closes every connection; returns once all are closed.
    pub async fn close(mut self) {
        self.accept.abort();
        let _ = (&mut self.accept).await;
        let _ = self.shutdown.send(true);
        self.alive = None;
        // every connection task holds a sender: recv is None once all have ended
        while self.gone.recv().await.is_some() {}
    }
}

/// What every connection serves.
struct Served {
    hub: Hub,
    tokens: Tokens,
    device: String,
}

/// One connection: token line, banner, replay, live.
async fn serve(sock: &mut TcpStream, served: &Served) {
    let mut telnet = Telnet::default();
    let mut replies = Vec::new();
    let mut leftover = Vec::new();
    let line = match tokio::time::timeout(
        TOKEN_WAIT,
        token_line(sock, &mut telnet, &mut replies, &mut leftover),
    )
    .await
    {
        Ok(Some(line)) => line,
        _ => {
            let _ = sock.write_all(b"basalt: no token\r\n").await;
            return;
        }
    };
    if !replies.is_empty() && sock.write_all(&std::mem::take(&mut replies)).await.is_err() {
        return;
    }
    let sub = match served.tokens.role(&line) {
        None => Err(b"basalt: wrong token\r\n".as_slice()),
        Some(Role::Writer) => match served.hub.attach_writer() {
            Ok(s) => Ok(s),
            Err(HubError::WriterBusy) => {
                Err(b"basalt: refused: the console already has a writer\r\n".as_slice())
            }
            Err(_) => Err(b"basalt: the console is closed\r\n".as_slice()),
        },
        Some(Role::Watcher) => served
            .hub
            .attach_watcher()
            .map_err(|_| b"basalt: the console is closed\r\n".as_slice()),
    };
    let mut sub = match sub {
        Ok(s) => s,
        Err(msg) => {
            let _ = sock.write_all(msg).await;
            return;
        }
    };
    let banner = format!(
        "basalt: console of {} ({})\r\n",
        served.device,
        if sub.is_writer() { "writer" } else { "watcher" }
    );
    if sock.write_all(banner.as_bytes()).await.is_err() {
        return;
    }
    // what the client typed after its token line (telnet commands already stripped)
    if !leftover.is_empty() && sub.write(&leftover).await.is_err() {
        return;
    }
    stream(sock, &mut sub, &mut telnet).await;
}

/// Reads the first line (up to `\n` or `\r`), telnet commands stripped; what came after it
/// goes to `leftover`. `None`: the client closed first. A line longer than
/// [`MAX_TOKEN_LINE`] is cut there (and matches no token).
async fn token_line(
    sock: &mut TcpStream,
    telnet: &mut Telnet,
    replies: &mut Vec<u8>,
    leftover: &mut Vec<u8>,
) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let n = sock.read(&mut buf).await.ok().filter(|n| *n > 0)?;
        let data = telnet.feed(&buf[..n], replies);
        if let Some(at) = data.iter().position(|b| *b == b'\n' || *b == b'\r') {
            line.extend_from_slice(&data[..at]);
            let mut rest = &data[at..];
            // the line's end: \r\n, \r, \n
            if rest.starts_with(b"\r\n") {
                rest = &rest[2..];
            } else {
                rest = &rest[1..];
            }
            leftover.extend_from_slice(rest);
            line.truncate(MAX_TOKEN_LINE + 1);
            return Some(line);
        }
        line.extend_from_slice(&data);
        if line.len() > MAX_TOKEN_LINE {
            line.truncate(MAX_TOKEN_LINE + 1);
            return Some(line);
        }
    }
}

/// The live part: the hub's output to the client (IAC doubled), the client's input to the
/// board (a writer's), until either end closes.
async fn stream(sock: &mut TcpStream, sub: &mut Subscriber, telnet: &mut Telnet) {
    let (mut rd, mut wr) = sock.split();
    let mut input = [0u8; 4096];
    let mut replies = Vec::new();
    let mut out = Vec::with_capacity(16 * 1024);
    loop {
        tokio::select! {
            chunk = sub.next(16 * 1024) => {
                out.clear();
                match chunk {
                    Chunk::Data(d) => escape_iac(&d, &mut out),
                    Chunk::Lost(n) => out.extend_from_slice(format!("\r\n[basalt: {n} bytes of console output lost: this connection reads too slowly]\r\n").as_bytes()),
                    Chunk::End => return,
                }
                if wr.write_all(&out).await.is_err() {
                    return;
                }
            }
            n = rd.read(&mut input) => {
                let n = match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let data = telnet.feed(&input[..n], &mut replies);
                if !replies.is_empty() && wr.write_all(&std::mem::take(&mut replies)).await.is_err() {
                    return;
                }
                if !data.is_empty() && sub.write(&data).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Telnet's IAC byte.
const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
const SB: u8 = 250;
const SE: u8 = 240;
const ECHO: u8 = 1;
const SGA: u8 = 3;

/// Board output as telnet sends it: every `0xFF` doubled.
pub fn escape_iac(data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.split_inclusive(|b| *b == IAC) {
        out.extend_from_slice(chunk);
        if chunk.last() == Some(&IAC) {
            out.push(IAC);
        }
    }
}

/// The server side of telnet's negotiation, fed with what a client sends.
pub struct Telnet {
    state: TelnetState,
    /// Options this end does (WILL sent and not withdrawn).
    ours: [bool; 256],
    /// Options the client does (DO sent).
    theirs: [bool; 256],
}

impl Default for Telnet {
    fn default() -> Telnet {
        Telnet {
            state: TelnetState::Data,
            ours: [false; 256],
            theirs: [false; 256],
        }
    }
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum TelnetState {
    #[default]
    Data,
    /// After a CR: a NUL that follows is dropped.
    Cr,
    Iac,
    /// After IAC WILL / WONT / DO / DONT.
    Option(u8),
    /// Inside IAC SB ... IAC SE.
    Sub,
    SubIac,
}

impl Telnet {
    /// The data bytes of `input` (commands stripped, `IAC IAC` → `0xFF`, `CR NUL` → `CR`);
    /// answers to the client's requests are appended to `replies`.
    pub fn feed(&mut self, input: &[u8], replies: &mut Vec<u8>) -> Vec<u8> {
        let mut data = Vec::with_capacity(input.len());
        for &b in input {
            self.state = match self.state {
                TelnetState::Data | TelnetState::Cr => {
                    let after_cr = self.state == TelnetState::Cr;
                    match b {
                        IAC => TelnetState::Iac,
                        0 if after_cr => TelnetState::Data,
                        b'\r' => {
                            data.push(b);
                            TelnetState::Cr
                        }
                        _ => {
                            data.push(b);
                            TelnetState::Data
                        }
                    }
                }
                TelnetState::Iac => match b {
                    IAC => {
                        data.push(IAC);
                        TelnetState::Data
                    }
                    WILL | WONT | DO | DONT => TelnetState::Option(b),
                    SB => TelnetState::Sub,
                    // NOP, AYT, break, go-ahead...: nothing a console needs
                    _ => TelnetState::Data,
                },
                TelnetState::Option(cmd) => {
                    self.negotiate(cmd, b, replies);
                    TelnetState::Data
                }
                TelnetState::Sub => {
                    if b == IAC {
                        TelnetState::SubIac
                    } else {
                        TelnetState::Sub
                    }
                }
                TelnetState::SubIac => match b {
                    SE => TelnetState::Data,
                    _ => TelnetState::Sub,
                },
            };
        }
        data
    }

    /// Answers one request, only when it changes an option's state (so that no loop starts).
    fn negotiate(&mut self, cmd: u8, opt: u8, replies: &mut Vec<u8>) {
        let i = usize::from(opt);
        match cmd {
            DO => {
                let grant = matches!(opt, ECHO | SGA);
                if grant && !self.ours[i] {
                    self.ours[i] = true;
                    replies.extend_from_slice(&[IAC, WILL, opt]);
                } else if !grant {
                    replies.extend_from_slice(&[IAC, WONT, opt]);
                }
            }
            DONT if self.ours[i] => {
                self.ours[i] = false;
                replies.extend_from_slice(&[IAC, WONT, opt]);
            }
            WILL => {
                let accept = opt == SGA;
                if accept && !self.theirs[i] {
                    self.theirs[i] = true;
                    replies.extend_from_slice(&[IAC, DO, opt]);
                } else if !accept {
                    replies.extend_from_slice(&[IAC, DONT, opt]);
                }
            }
            WONT if self.theirs[i] => {
                self.theirs[i] = false;
                replies.extend_from_slice(&[IAC, DONT, opt]);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_give_roles_and_nothing_else_does() {
        let t = Tokens {
            console: "c0ns0le".into(),
            watch: "w4tch".into(),
        };
        assert_eq!(t.role(b"c0ns0le"), Some(Role::Writer));
        assert_eq!(t.role(b"w4tch"), Some(Role::Watcher));
        for wrong in [&b""[..], b"c0ns0l", b"c0ns0lee", b"W4TCH", b"w4tch "] {
            assert_eq!(t.role(wrong), None, "{wrong:?}");
        }
        let empty = Tokens {
            console: String::new(),
            watch: String::new(),
        };
        assert_eq!(empty.role(b""), None);
        assert_eq!(format!("{t:?}"), "Tokens(…)");
    }

    #[test]
    fn board_bytes_ff_are_doubled() {
        let mut out = Vec::new();
        escape_iac(&[1, 0xff, 2, 0xff, 0xff], &mut out);
        assert_eq!(out, [1, 0xff, 0xff, 2, 0xff, 0xff, 0xff, 0xff]);
        out.clear();
        escape_iac(b"plain", &mut out);
        assert_eq!(out, b"plain");
    }

    #[test]
    fn client_negotiation_is_answered_once_and_stripped() {
        let mut t = Telnet::default();
        let mut r = Vec::new();
        // what netkit telnet sends in character mode, with data around it
        let input = [
            b'a', IAC, DO, ECHO, IAC, WILL, SGA, IAC, DO, SGA, IAC, WILL, 24, IAC, SB, 24, 0, b'x',
            IAC, SE, b'b', IAC, IAC, b'\r', 0, b'c', b'\r', b'\n',
        ];
        let data = t.feed(&input, &mut r);
        assert_eq!(data, [b'a', b'b', 0xff, b'\r', b'c', b'\r', b'\n']);
        assert_eq!(
            r,
            [IAC, WILL, ECHO, IAC, DO, SGA, IAC, WILL, SGA, IAC, DONT, 24]
        );
        // asked again: already so, no answer (no negotiation loop)
        r.clear();
        t.feed(&[IAC, DO, ECHO, IAC, WILL, SGA], &mut r);
        assert!(r.is_empty(), "{r:?}");
        // withdrawn: acknowledged
        t.feed(&[IAC, DONT, ECHO], &mut r);
        assert_eq!(r, [IAC, WONT, ECHO]);
        // split across reads
        r.clear();
        let mut d = t.feed(&[b'x', IAC], &mut r);
        d.extend(t.feed(&[DO], &mut r));
        d.extend(t.feed(&[31, b'y'], &mut r));
        assert_eq!(d, b"xy");
        assert_eq!(r, [IAC, WONT, 31]);
    }
}
