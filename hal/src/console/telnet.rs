//! Telnet consoles (RFC 854), as ser2net serves a board's serial line:
//! `accepter: telnet,tcp,127.0.0.1,7001`.
//!
//! [`TelnetStream`] wraps any byte stream and makes it a clean 8-bit channel:
//!
//! * Reading: `IAC IAC` becomes one `0xFF` byte; option negotiation (`IAC WILL/WONT/DO/DONT
//!   opt`), sub-negotiations (`IAC SB ... IAC SE`) and the other commands (`NOP`, `GA`, `DM`, ...)
//!   are removed from the data. While the server has not agreed to send binary, `CR NUL` is read
//!   as `CR` (RFC 854's NVT rule).
//! * Negotiation answers: the server may enable BINARY, ECHO and SUPPRESS-GO-AHEAD on its side
//!   (we answer `DO`), and we enable BINARY and SUPPRESS-GO-AHEAD on ours (we answer `WILL`);
//!   every other option is refused (`DONT` / `WONT`). A request that does not change an option's
//!   state gets no answer, so negotiation cannot loop. ser2net 4 offers exactly SGA, ECHO
//!   and BINARY.
//! * Writing: `0xFF` is sent as `IAC IAC`; while we are not in BINARY mode a `CR` not followed
//!   by `LF` is sent as `CR NUL`.
//!
//! Answers and written data go through one small output buffer, drained by every poll; call
//! `flush` after writing (the [`Session`](super::Session) does).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{Console, ConsoleError, ConsoleStream};

/// Telnet command and option codes (RFC 854, 855, 856, 857, 858).
pub mod code {
    /// Interpret As Command.
    pub const IAC: u8 = 255;
    /// Refuse to perform an option.
    pub const DONT: u8 = 254;
    /// Request the other side to perform an option.
    pub const DO: u8 = 253;
    /// Refuse to perform an option on our side.
    pub const WONT: u8 = 252;
    /// Offer to perform an option.
    pub const WILL: u8 = 251;
    /// Start of a sub-negotiation.
    pub const SB: u8 = 250;
    /// End of a sub-negotiation.
    pub const SE: u8 = 240;
    /// Option: binary transmission (RFC 856).
    pub const BINARY: u8 = 0;
    /// Option: echo (RFC 857).
    pub const ECHO: u8 = 1;
    /// Option: suppress go-ahead (RFC 858).
    pub const SGA: u8 = 3;
}
use code::*;

/// Largest chunk of caller data encoded per `poll_write`.
const WRITE_CHUNK: usize = 8192;

/// A console reached over telnet (e.g. ser2net's telnet accepter).
#[derive(Debug, Clone)]
pub struct TelnetConsole {
    host: String,
    port: u16,
}

impl TelnetConsole {
    /// A telnet console at `host`:`port`.
    pub fn new(host: impl Into<String>, port: u16) -> TelnetConsole {
        TelnetConsole {
            host: host.into(),
            port,
        }
    }

    /// The host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

#[async_trait]
impl Console for TelnetConsole {
    fn describe(&self) -> String {
        format!("telnet {}:{}", self.host, self.port)
    }

    async fn connect(&self) -> Result<Box<dyn ConsoleStream>, ConsoleError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|source| ConsoleError::Connect {
                what: self.describe(),
                source,
            })?;
        // console input is interactive: no Nagle delay on single characters
        tcp.set_nodelay(true)
            .map_err(|source| ConsoleError::Connect {
                what: self.describe(),
                source,
            })?;
        Ok(Box::new(TelnetStream::new(tcp)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Data,
    /// After IAC.
    Iac,
    /// After IAC WILL / WONT / DO / DONT: the option byte comes next.
    Option(u8),
    /// Inside IAC SB ... .
    Sub,
    /// Inside a sub-negotiation, after IAC.
    SubIac,
}

/// A telnet connection over any byte stream, presenting the data as a plain 8-bit stream.
/// See the module documentation.
#[derive(Debug)]
pub struct TelnetStream<S> {
    inner: S,
    state: ReadState,
    /// The last data byte read was CR (for CR NUL in NVT mode).
    after_cr: bool,
    /// Options the server has enabled on its side.
    him: [bool; 256],
    /// Options we have enabled on our side.
    us: [bool; 256],
    /// Bytes for the server not yet written: negotiation answers and encoded data.
    out: Vec<u8>,
    out_pos: usize,
}

impl<S> TelnetStream<S> {
    /// Wraps `inner`, a fresh connection to a telnet server.
    pub fn new(inner: S) -> TelnetStream<S> {
        TelnetStream {
            inner,
            state: ReadState::Data,
            after_cr: false,
            him: [false; 256],
            us: [false; 256],
            out: Vec::new(),
            out_pos: 0,
        }
    }

    /// True when the server agreed to (or asked for) option `opt` on its side.
    pub fn remote_enabled(&self, opt: u8) -> bool {
        self.him[opt as usize]
    }

    /// True when we enabled option `opt` on our side.
    pub fn local_enabled(&self, opt: u8) -> bool {
        self.us[opt as usize]
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the stream; unsent bytes are lost.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn reply(&mut self, verb: u8, opt: u8) {
        self.out.extend_from_slice(&[IAC, verb, opt]);
    }

    fn negotiate(&mut self, verb: u8, opt: u8) {
        let i = opt as usize;
        let ours = matches!(opt, BINARY | SGA);
        let theirs = matches!(opt, BINARY | ECHO | SGA);
        match verb {
            // the server offers, or says it has enabled, an option on its side
            WILL if !theirs => self.reply(DONT, opt),
            WILL if !self.him[i] => {
                self.him[i] = true;
                self.reply(DO, opt);
            }
            WONT if self.him[i] => {
                self.him[i] = false;
                self.reply(DONT, opt);
            }
            // the server asks us to enable an option on our side
            DO if !ours => self.reply(WONT, opt),
            DO if !self.us[i] => {
                self.us[i] = true;
                self.reply(WILL, opt);
            }
            DONT if self.us[i] => {
                self.us[i] = false;
                self.reply(WONT, opt);
            }
            // no change of state: no answer (RFC 854 loop avoidance)
            _ => {}
        }
    }

    /// Decodes `buf` in place; returns the number of data bytes left at its start.
    fn decode(&mut self, buf: &mut [u8]) -> usize {
        let mut w = 0;
        for r in 0..buf.len() {
            let b = buf[r];
            match self.state {
                ReadState::Data => {
                    if b == IAC {
                        self.state = ReadState::Iac;
                        continue;
                    }
                    if self.after_cr && b == 0 && !self.him[BINARY as usize] {
                        self.after_cr = false;
                        continue;
                    }
                    self.after_cr = b == b'\r';
                    buf[w] = b;
                    w += 1;
                }
                ReadState::Iac => match b {
                    IAC => {
                        self.state = ReadState::Data;
                        self.after_cr = false;
                        buf[w] = IAC;
                        w += 1;
                    }
                    WILL | WONT | DO | DONT => self.state = ReadState::Option(b),
                    SB => self.state = ReadState::Sub,
                    // NOP, DM, BRK, IP, AO, AYT, EC, EL, GA, SE, and anything invalid
                    _ => self.state = ReadState::Data,
                },
                ReadState::Option(verb) => {
                    self.state = ReadState::Data;
                    self.negotiate(verb, b);
                }
                ReadState::Sub => {
                    if b == IAC {
                        self.state = ReadState::SubIac;
                    }
                }
                ReadState::SubIac => {
                    self.state = match b {
                        SE => ReadState::Data,
                        _ => ReadState::Sub, // IAC IAC inside SB, or junk
                    };
                }
            }
        }
        w
    }

    /// Encodes caller data into the output buffer.
    fn encode(&mut self, data: &[u8]) {
        let binary = self.us[BINARY as usize];
        for (i, &b) in data.iter().enumerate() {
            match b {
                IAC => self.out.extend_from_slice(&[IAC, IAC]),
                b'\r' if !binary && data.get(i + 1) != Some(&b'\n') => {
                    self.out.extend_from_slice(b"\r\0")
                }
                _ => self.out.push(b),
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> TelnetStream<S> {
    /// Writes as much of the output buffer as the stream takes now.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TelnetStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            // answers to negotiation go out as soon as the socket takes them; a full socket
            // only delays them (the waker is registered) and must not block reading
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let filled = buf.filled().len();
            if filled == before {
                return Poll::Ready(Ok(())); // end of file
            }
            let kept = this.decode(&mut buf.filled_mut()[before..filled]);
            buf.set_filled(before + kept);
            if kept > 0 {
                if this.out_pos < this.out.len() {
                    let _ = this.poll_drain(cx);
                }
                return Poll::Ready(Ok(()));
            }
            // only telnet commands arrived: read again (an empty read would mean EOF)
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TelnetStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let take = data.len().min(WRITE_CHUNK);
        this.encode(&data[..take]);
        // the data is ours now; failing to send it right away is reported by flush
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(take))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn strips_negotiation_and_answers() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut t = TelnetStream::new(client);
        // what ser2net 4 sends, then data with an escaped 0xFF, a sub-negotiation, a NOP
        let mut from_server = vec![
            IAC, WILL, SGA, IAC, DO, SGA, IAC, WILL, ECHO, IAC, DONT, ECHO, IAC, DO, BINARY, IAC,
            WILL, BINARY,
        ];
        from_server.extend_from_slice(b"he");
        from_server.extend_from_slice(&[IAC, IAC, IAC, SB, 24, 1, IAC, IAC, 7, IAC, SE]);
        from_server.extend_from_slice(b"llo");
        from_server.extend_from_slice(&[IAC, 241, IAC, DO, 24, IAC, WILL, 5]);
        from_server.extend_from_slice(b"\r\n");
        server.write_all(&from_server).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 8 {
            let mut b = [0u8; 64];
            let n = t.read(&mut b).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(got, b"he\xffllo\r\n");
        t.write_all(b"a\xffb\r").await.unwrap();
        t.flush().await.unwrap();
        let mut answers = vec![0u8; 64];
        let n = server.read(&mut answers).await.unwrap();
        let expected: Vec<u8> = [
            &[
                IAC, DO, SGA, IAC, WILL, SGA, IAC, DO, ECHO, IAC, WILL, BINARY, IAC, DO, BINARY,
            ][..],
            &[IAC, WONT, 24, IAC, DONT, 5][..],
            // binary mode: CR alone stays CR
            &[b'a', IAC, IAC, b'b', b'\r'][..],
        ]
        .concat();
        assert_eq!(&answers[..n], &expected[..]);
        assert!(t.remote_enabled(BINARY) && t.local_enabled(BINARY));
        assert!(!t.local_enabled(ECHO));
    }

    #[tokio::test]
    async fn nvt_mode_cr_nul() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut t = TelnetStream::new(client);
        server.write_all(b"a\r\0b\r\n").await.unwrap();
        let mut b = [0u8; 16];
        let n = t.read(&mut b).await.unwrap();
        assert_eq!(&b[..n], b"a\rb\r\n");
        t.write_all(b"x\ry\r\n").await.unwrap();
        t.flush().await.unwrap();
        let n = server.read(&mut b).await.unwrap();
        assert_eq!(&b[..n], b"x\r\0y\r\n");
    }

    #[tokio::test]
    async fn eof_after_commands_only() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut t = TelnetStream::new(client);
        server.write_all(&[IAC, WILL, SGA]).await.unwrap();
        drop(server);
        let mut b = [0u8; 16];
        // the answer cannot be delivered (peer gone) or is; either way the read reports EOF
        match t.read(&mut b).await {
            Ok(n) => assert_eq!(n, 0),
            Err(e) => assert!(crate::console::is_gone(&e), "{e}"),
        }
    }
}
