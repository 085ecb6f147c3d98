//! Consoles: how to reach a board's serial line ([`Console`], one backend per transport) and
//! the expect engine that reads it ([`Session`]).
//!
//! Backends:
//!
//! | module | [`Console`] | what |
//! | --- | --- | --- |
//! | [`serial`] | [`SerialConsole`] | a local serial port (USB adapter), via tokio-serial |
//! | [`telnet`] | [`TelnetConsole`] | a TCP telnet server such as ser2net, RFC 854 handled by [`TelnetStream`] |
//! | [`unix`] | [`UnixConsole`] | a unix stream socket (QEMU `-chardev socket`) |
//! | [`pty`] | [`PtyConsole`] | an existing pty / tty device node, put in raw mode |
//! | [`command`] | [`CommandConsole`] | LAVA's `connection_command`: a child's stdin / stdout |
//! | [`fake`] | [`FakeConsole`] | in-process, for unit tests: a scripted board over a duplex pipe |
//!
//! [`hub`]: a held board's console shared by watchers, one writer and the dispatcher, with a
//! ring buffer of its output ([`Hub`]).
//!
//! Every backend reports the end of the connection as end of file (a read of 0 bytes) or as an
//! I/O error of a "connection gone" kind; [`Session`] turns both into [`ConsoleError::Closed`],
//! and [`Console::connect`] may then be called again.

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

pub mod command;
pub mod expect;
pub mod fake;
pub mod hub;
pub mod pty;
pub mod serial;
pub mod telnet;
pub mod text;
pub mod unix;

pub use command::CommandConsole;
pub use expect::{ExpectError, Match, NullTranscript, Session, Transcript, VecTranscript};
pub use fake::FakeConsole;
pub use hub::{Chunk, HeldConsole, HeldEmulator, Hub, HubError, Subscriber};
pub use pty::PtyConsole;
pub use serial::SerialConsole;
pub use telnet::{TelnetConsole, TelnetStream};
pub use unix::UnixConsole;

/// An open console connection: bytes from and to the board.
pub trait ConsoleStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ConsoleStream for T {}

/// Why a console could not be used. All are infrastructure problems, not test failures.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The connection could not be opened (nothing listening, no such device, no such program).
    #[error("cannot connect to {what}: {source}")]
    Connect {
        /// The console, as [`Console::describe`] says it.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The other end went away: end of file, reset, hang-up, the connection command exited.
    #[error("console {what} closed the connection")]
    Closed {
        /// The console, and when known why it closed (exit status and stderr of a command).
        what: String,
    },
    /// Any other I/O error on an open connection.
    #[error("console {what}: {source}")]
    Io {
        /// The console.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The console description itself is unusable (an empty or unparsable command line, a bad
    /// device path).
    #[error("console {what} is misconfigured: {message}")]
    Config {
        /// The console.
        what: String,
        /// What is wrong.
        message: String,
    },
}

impl ConsoleError {
    /// True for [`ConsoleError::Closed`]: the connection dropped and may be re-opened.
    pub fn is_closed(&self) -> bool {
        matches!(self, ConsoleError::Closed { .. })
    }

    /// Classifies an I/O error seen on an open connection: errors meaning "the other end is gone"
    /// (EOF, reset, broken pipe, EIO of a hung-up tty) become [`ConsoleError::Closed`], the rest
    /// [`ConsoleError::Io`].
    pub fn from_io(what: &str, err: std::io::Error) -> ConsoleError {
        if is_gone(&err) {
            // backends put the reason (e.g. a command's exit status) into a custom error
            let what = if let Some(detail) = err.get_ref() {
                format!("{what} ({detail})")
            } else {
                what.to_string()
            };
            ConsoleError::Closed { what }
        } else {
            ConsoleError::Io {
                what: what.to_string(),
                source: err,
            }
        }
    }
}

/// True when an I/O error means the connection is gone for good.
pub(crate) fn is_gone(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        UnexpectedEof | BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected
    ) || err.raw_os_error() == Some(nix::libc::EIO)
}

/// Where a board's console is and how to open it. `connect` may be called again after the
/// connection dropped (a ser2net restart, a USB adapter re-plugged).
#[async_trait]
pub trait Console: Send + Sync {
    /// A short description for logs and errors, e.g. `telnet 127.0.0.1:7001`.
    fn describe(&self) -> String;
    /// Opens a new connection.
    async fn connect(&self) -> Result<Box<dyn ConsoleStream>, ConsoleError>;
}
