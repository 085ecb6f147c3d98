//! Consoles: how to reach a board's serial line ([`Console`], one backend per transport) and
//! the expect engine that reads it ([`Session`]).

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

/// An open console connection: bytes from and to the board.
pub trait ConsoleStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ConsoleStream for T {}

/// Why a console could not be used. All are infrastructure problems, not test failures.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot connect to {what}: {source}")]
    Connect { what: String, source: std::io::Error },
    #[error("console {what} closed the connection")]
    Closed { what: String },
    #[error("console {what}: {source}")]
    Io { what: String, source: std::io::Error },
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
