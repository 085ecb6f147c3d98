//! LAVA's `connection_command`: a program whose stdin / stdout are the console, e.g.
//! `telnet localhost 7001`, `socat - UNIX-CONNECT:/run/board.sock` or
//! `qemu-system-x86_64 ... -serial stdio`.
//!
//! The command line is split into an argument vector with shell quoting rules
//! ([`shell_words::split`]) and run directly, without a shell. Its stdin and stdout form the
//! stream; its stderr is collected in the background (the last 4 KiB) for the error message.
//! When stdout reaches end of file, the stream waits briefly for the child to exit and reports
//! an [`std::io::ErrorKind::UnexpectedEof`] error that names the exit status and the end of
//! stderr, which the [`Session`](super::Session) turns into [`ConsoleError::Closed`]. The child
//! is killed (SIGKILL) when the stream is dropped, and dies with basalt; it runs under the
//! console's [`Policy`] ([`CommandConsole::with_policy`]: the dispatcher confines it).

use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::{Console, ConsoleError, ConsoleStream};
use crate::confine::{self, Policy};

/// How much of the child's stderr is kept.
const STDERR_KEEP: usize = 4096;
/// How long end of file waits for the child's exit status and the rest of its stderr.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// A console that is the stdin / stdout of a spawned command.
#[derive(Debug, Clone)]
pub struct CommandConsole {
    command: String,
    argv: Vec<String>,
    policy: Policy,
}

impl CommandConsole {
    /// Parses `command` (shell quoting honoured, no shell run).
    pub fn new(command: &str) -> Result<CommandConsole, ConsoleError> {
        let what = format!("command `{command}`");
        let argv = shell_words::split(command).map_err(|e| ConsoleError::Config {
            what: what.clone(),
            message: e.to_string(),
        })?;
        if argv.is_empty() {
            return Err(ConsoleError::Config {
                what,
                message: "empty command".to_string(),
            });
        }
        Ok(CommandConsole {
            command: command.to_string(),
            argv,
            policy: Policy::Supervised,
        })
    }

    /// From an argument vector (`argv[0]` is the program).
    pub fn from_argv(argv: Vec<String>) -> Result<CommandConsole, ConsoleError> {
        let command = shell_words::join(&argv);
        if argv.is_empty() {
            return Err(ConsoleError::Config {
                what: "command ``".to_string(),
                message: "empty command".to_string(),
            });
        }
        Ok(CommandConsole {
            command,
            argv,
            policy: Policy::Supervised,
        })
    }

    /// Runs the command under `policy` (default: [`Policy::Supervised`]).
    pub fn with_policy(mut self, policy: Policy) -> CommandConsole {
        self.policy = policy;
        self
    }

    /// The argument vector that is run.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }
}

#[async_trait]
impl Console for CommandConsole {
    fn describe(&self) -> String {
        format!("command `{}`", self.command)
    }

    async fn connect(&self) -> Result<Box<dyn ConsoleStream>, ConsoleError> {
        let connect_err = |source| ConsoleError::Connect {
            what: self.describe(),
            source,
        };
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = confine::spawn(cmd, &self.policy).map_err(connect_err)?;
        let missing = || connect_err(std::io::Error::other("child has no stdio pipes"));
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let mut stderr = child.stderr.take().ok_or_else(missing)?;
        let stderr_buf = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr_buf.clone();
        let stderr_task = tokio::spawn(async move {
            let mut chunk = [0u8; 1024];
            while let Ok(n) = stderr.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                let mut keep = sink.lock().unwrap_or_else(|e| e.into_inner());
                keep.extend_from_slice(&chunk[..n]);
                if keep.len() > STDERR_KEEP {
                    let cut = keep.len() - STDERR_KEEP;
                    keep.drain(..cut);
                }
            }
        });
        Ok(Box::new(CommandStream {
            stdin,
            stdout,
            exit: ExitState::Running {
                child,
                stderr_task,
                stderr: stderr_buf,
            },
        }))
    }
}

type ExitFuture = Pin<Box<dyn Future<Output = std::io::Error> + Send>>;

enum ExitState {
    Running {
        child: Child,
        stderr_task: tokio::task::JoinHandle<()>,
        stderr: Arc<Mutex<Vec<u8>>>,
    },
    /// stdout ended; collecting the exit status and stderr.
    Exiting(ExitFuture),
    /// The end was reported; further reads return end of file.
    Done,
}

/// The stdin / stdout of a running connection command. See the module documentation.
pub struct CommandStream {
    stdin: ChildStdin,
    stdout: ChildStdout,
    exit: ExitState,
}

impl std::fmt::Debug for CommandStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pid = match &self.exit {
            ExitState::Running { child, .. } => child.id(),
            _ => None,
        };
        f.debug_struct("CommandStream").field("pid", &pid).finish()
    }
}

impl Drop for CommandStream {
    fn drop(&mut self) {
        // the child itself is killed by `kill_on_drop`; a grandchild holding stderr open must
        // not keep the collector task alive
        if let ExitState::Running { stderr_task, .. } = &self.exit {
            stderr_task.abort();
        }
    }
}

impl CommandStream {
    /// The child's process id while it is running.
    pub fn pid(&self) -> Option<u32> {
        match &self.exit {
            ExitState::Running { child, .. } => child.id(),
            _ => None,
        }
    }
}

async fn collect_exit(
    mut child: Child,
    stderr_task: tokio::task::JoinHandle<()>,
    stderr: Arc<Mutex<Vec<u8>>>,
) -> std::io::Error {
    let status = match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        Ok(Err(e)) => format!("exit status unknown: {e}"),
        Err(_) => {
            // closed its stdout but goes on running: it is of no use any more
            let _ = child.start_kill();
            let _ = child.wait().await;
            "closed its stdout, killed".to_string()
        }
    };
    let _ = tokio::time::timeout(EXIT_GRACE, stderr_task).await;
    let text = {
        let keep = stderr.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&keep).trim().to_string()
    };
    let msg = if text.is_empty() {
        format!("command {status}")
    } else {
        format!("command {status}; stderr: {text}")
    };
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, msg)
}

impl AsyncRead for CommandStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.exit {
                ExitState::Running { .. } => {
                    let before = buf.filled().len();
                    ready!(Pin::new(&mut this.stdout).poll_read(cx, buf))?;
                    if buf.filled().len() > before || buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    let state = std::mem::replace(&mut this.exit, ExitState::Done);
                    if let ExitState::Running {
                        child,
                        stderr_task,
                        stderr,
                    } = state
                    {
                        this.exit =
                            ExitState::Exiting(Box::pin(collect_exit(child, stderr_task, stderr)));
                    }
                }
                ExitState::Exiting(fut) => {
                    let err = ready!(fut.as_mut().poll(cx));
                    this.exit = ExitState::Done;
                    return Poll::Ready(Err(err));
                }
                ExitState::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl AsyncWrite for CommandStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stdin).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stdin).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stdin).poll_shutdown(cx)
    }
}
