//! A QEMU process: started from an argv (the device dictionary's command line plus the job's
//! image arguments; never through a shell), its serial console on stdin/stdout, its stderr
//! kept for error messages, killed with its process group when stopped or dropped.
//!
//! It is started by [`crate::confine::spawn`]: from the spawner thread, so it dies with basalt,
//! and confined when the caller gives a [`Policy::Confined`] (then [`QemuProcess::pid`] is the
//! pid of its supervisor, and stopping it waits until every process of its namespace is gone).

use crate::confine::{self, Policy};
use crate::console::ConsoleStream;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// Why QEMU could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The command line has no program.
    #[error("empty emulator command line")]
    Empty,
    /// The program could not be started (not installed, not executable).
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program that failed to start.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Talking to or stopping the process failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A running QEMU.
#[derive(Debug)]
pub struct QemuProcess {
    child: Child,
    pid: Option<u32>,
    confined: bool,
    stderr: Arc<Mutex<String>>,
}

/// Most stderr kept, for error messages.
const STDERR_KEEP: usize = 16 * 1024;

impl QemuProcess {
    /// Starts `argv[0]` with the rest as arguments, unconfined (but killed with basalt);
    /// returns the process and its console.
    pub fn spawn(argv: &[String]) -> Result<(QemuProcess, Box<dyn ConsoleStream>), EmulatorError> {
        QemuProcess::spawn_with(argv, &Policy::Supervised)
    }

    /// Starts `argv[0]` with the rest as arguments under `policy`; returns the process and
    /// its console.
    pub fn spawn_with(
        argv: &[String],
        policy: &Policy,
    ) -> Result<(QemuProcess, Box<dyn ConsoleStream>), EmulatorError> {
        let (program, args) = argv.split_first().ok_or(EmulatorError::Empty)?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = confine::spawn(cmd, policy).map_err(|source| EmulatorError::Spawn {
            program: program.clone(),
            source,
        })?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no stdin pipe"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout pipe"))?;
        let stderr_buf = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let buf = stderr_buf.clone();
            tokio::spawn(async move {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = err.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut b) = buf.lock() {
                        if b.len() < STDERR_KEEP {
                            b.push_str(&String::from_utf8_lossy(&chunk[..n]));
                        }
                    }
                }
            });
        }
        let pid = child.id();
        Ok((
            QemuProcess {
                child,
                pid,
                confined: matches!(policy, Policy::Confined(_)),
                stderr: stderr_buf,
            },
            Box::new(tokio::io::join(stdout, stdin)),
        ))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// What QEMU printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Whether QEMU has exited (and how).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills QEMU (and anything in its process group, or its whole PID namespace when
    /// confined) and waits for it.
    pub async fn kill(&mut self) -> Result<(), EmulatorError> {
        confine::terminate(
            &mut self.child,
            self.confined,
            self.pid,
            Duration::from_secs(5),
        )
        .await
        .map_err(|e| EmulatorError::Io(std::io::Error::other(format!("stopping QEMU: {e}"))))?;
        self.pid = None;
        Ok(())
    }
}
