//! Unix stream socket consoles, e.g. QEMU's
//! `-chardev socket,id=con,path=/run/board.sock,server=on,wait=off -serial chardev:con`.
//!
//! The socket end is the plain [`tokio::net::UnixStream`]: end of file when the server closes
//! it (QEMU quit), and [`Console::connect`] works again once the server is back.

use std::path::PathBuf;

use async_trait::async_trait;
use tokio::net::UnixStream;

use super::{Console, ConsoleError, ConsoleStream};

/// A console reached by connecting to a unix stream socket.
#[derive(Debug, Clone)]
pub struct UnixConsole {
    path: PathBuf,
}

impl UnixConsole {
    /// A console on the unix socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> UnixConsole {
        UnixConsole { path: path.into() }
    }

    /// The socket path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

#[async_trait]
impl Console for UnixConsole {
    fn describe(&self) -> String {
        format!("unix {}", self.path.display())
    }

    async fn connect(&self) -> Result<Box<dyn ConsoleStream>, ConsoleError> {
        let stream =
            UnixStream::connect(&self.path)
                .await
                .map_err(|source| ConsoleError::Connect {
                    what: self.describe(),
                    source,
                })?;
        Ok(Box::new(stream))
    }
}
