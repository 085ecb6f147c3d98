//! Existing pty or tty device nodes: the slave side of a `socat` pty pair, QEMU's
//! `-chardev pty` (`/dev/pts/N`), or a tty that needs no serial-port setup beyond raw mode.
//!
//! The node is opened non-blocking and without becoming the controlling terminal, put in raw
//! mode (`cfmakeraw`: no echo, no line discipline, 8 bits) and optionally set to a speed, then
//! driven through tokio's reactor ([`tokio::io::unix::AsyncFd`]); no thread blocks on it. When
//! the other side hangs up (the pty master is closed), Linux answers reads with `EIO`; the
//! stream reports that as end of file.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use async_trait::async_trait;
use nix::sys::termios::{self, BaudRate, SetArg};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Console, ConsoleError, ConsoleStream};

/// A console on an existing pty / tty device node.
#[derive(Debug, Clone)]
pub struct PtyConsole {
    path: PathBuf,
    baud: Option<u32>,
}

impl PtyConsole {
    /// A console on the device node `path`, left at its current speed.
    pub fn new(path: impl Into<PathBuf>) -> PtyConsole {
        PtyConsole {
            path: path.into(),
            baud: None,
        }
    }

    /// Also sets the line speed (for a real tty; a pty ignores it). Supported: the standard
    /// rates from 50 to 4000000.
    pub fn with_baud(mut self, baud: u32) -> PtyConsole {
        self.baud = Some(baud);
        self
    }

    /// The device path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn open(&self) -> std::io::Result<PtyStream> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
            .open(&self.path)?;
        let mut tio = termios::tcgetattr(&file)?;
        termios::cfmakeraw(&mut tio);
        if let Some(baud) = self.baud {
            let rate = baud_rate(baud).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("unsupported speed {baud}"),
                )
            })?;
            termios::cfsetspeed(&mut tio, rate)?;
        }
        termios::tcsetattr(&file, SetArg::TCSANOW, &tio)?;
        // SAFETY: `file` owns its descriptor, which stays open and the same until the AsyncFd
        // (which owns `file`) is dropped.
        let fd = unsafe { AsyncFd::register(file) }?;
        Ok(PtyStream { fd })
    }
}

#[async_trait]
impl Console for PtyConsole {
    fn describe(&self) -> String {
        format!("pty {}", self.path.display())
    }

    async fn connect(&self) -> Result<Box<dyn ConsoleStream>, ConsoleError> {
        let stream = self.open().map_err(|source| ConsoleError::Connect {
            what: self.describe(),
            source,
        })?;
        Ok(Box::new(stream))
    }
}

/// An open pty / tty in raw mode, driven by tokio's reactor. `EIO` (hang-up) reads as end of
/// file.
#[derive(Debug)]
pub struct PtyStream {
    fd: AsyncFd<File>,
}

impl AsyncRead for PtyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|f| f.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(nix::libc::EIO) => {
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|f| f.get_ref().write(buf)) {
                Ok(res) => return Poll::Ready(res),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // writes go straight to the tty; there is no user-space buffer
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn baud_rate(baud: u32) -> Option<BaudRate> {
    use BaudRate::*;
    Some(match baud {
        50 => B50,
        75 => B75,
        110 => B110,
        134 => B134,
        150 => B150,
        200 => B200,
        300 => B300,
        600 => B600,
        1200 => B1200,
        1800 => B1800,
        2400 => B2400,
        4800 => B4800,
        9600 => B9600,
        19200 => B19200,
        38400 => B38400,
        57600 => B57600,
        115200 => B115200,
        230400 => B230400,
        460800 => B460800,
        500000 => B500000,
        576000 => B576000,
        921600 => B921600,
        1000000 => B1000000,
        1152000 => B1152000,
        1500000 => B1500000,
        2000000 => B2000000,
        2500000 => B2500000,
        3000000 => B3000000,
        3500000 => B3500000,
        4000000 => B4000000,
        _ => return None,
    })
}
