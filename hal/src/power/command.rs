//! Power by shell commands from the device dictionary: `power_on_command`,
//! `power_off_command`, `hard_reset_command` (each a string or a list of strings).
//!
//! The commands are written by the lab admin, so they run through `/bin/sh -c` (pipes, `&&`,
//! redirections work as in LAVA). Each command of an operation runs in turn, in its own process
//! group, with stdin from `/dev/null` and stdout / stderr captured (the last 4 KiB each). A
//! non-zero exit fails the operation with [`PowerError::Failed`] quoting stderr; a command still
//! running after the timeout has its whole process group killed (SIGKILL) and fails it with
//! [`PowerError::Timeout`]. If the operation's future is dropped while a command runs, the
//! group is killed too. They are not confined (they are the admin's), but they are started by
//! [`crate::confine::spawn`] ([`crate::confine::Policy::Supervised`]): the shell dies with
//! basalt.
//!
//! `reset` runs `hard_reset_command` when there is one, else `power_off_command` then
//! `power_on_command`. An operation with no command at all is [`PowerError::NotConfigured`].

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::task::JoinHandle;

use super::{Power, PowerError};

/// How much of a command's stdout / stderr is kept.
const OUTPUT_KEEP: usize = 4096;
/// How long output is still collected after the command exited (a background grandchild may
/// hold the pipes open).
const OUTPUT_GRACE: Duration = Duration::from_millis(500);
/// Default time allowed for one command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The command lists of a device dictionary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerCommands {
    /// `power_on_command`.
    pub on: Vec<String>,
    /// `power_off_command`.
    pub off: Vec<String>,
    /// `hard_reset_command`.
    pub reset: Vec<String>,
}

/// Power control by shell commands. See the module documentation.
#[derive(Debug, Clone)]
pub struct CommandPower {
    name: String,
    commands: PowerCommands,
    timeout: Duration,
}

/// What one finished command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// The end of its stdout.
    pub stdout: String,
    /// The end of its stderr.
    pub stderr: String,
}

impl CommandPower {
    /// Power control for the device `name` with these commands and [`DEFAULT_TIMEOUT`].
    pub fn new(name: impl Into<String>, commands: PowerCommands) -> CommandPower {
        CommandPower {
            name: name.into(),
            commands,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the time allowed for each command.
    pub fn with_timeout(mut self, timeout: Duration) -> CommandPower {
        self.timeout = timeout;
        self
    }

    /// The configured commands.
    pub fn commands(&self) -> &PowerCommands {
        &self.commands
    }

    async fn run_all(&self, op: &'static str, cmds: &[String]) -> Result<(), PowerError> {
        if cmds.is_empty() {
            return Err(PowerError::NotConfigured {
                op,
                what: self.describe(),
            });
        }
        for cmd in cmds {
            run_shell(cmd, self.timeout)
                .await
                .map_err(|e| e.into_power_error(op, self.describe()))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Power for CommandPower {
    fn describe(&self) -> String {
        format!("power commands of {}", self.name)
    }

    async fn on(&self) -> Result<(), PowerError> {
        self.run_all("on", &self.commands.on).await
    }

    async fn off(&self) -> Result<(), PowerError> {
        self.run_all("off", &self.commands.off).await
    }

    async fn reset(&self) -> Result<(), PowerError> {
        if !self.commands.reset.is_empty() {
            return self.run_all("reset", &self.commands.reset).await;
        }
        if self.commands.off.is_empty() || self.commands.on.is_empty() {
            return Err(PowerError::NotConfigured {
                op: "reset",
                what: self.describe(),
            });
        }
        self.run_all("reset", &self.commands.off).await?;
        self.run_all("reset", &self.commands.on).await
    }
}

/// Why [`run_shell`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// `/bin/sh` could not be started.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// The error.
        source: std::io::Error,
    },
    /// The command exited unsuccessfully.
    #[error("`{command}` {status}{}", stderr_suffix(.output))]
    Exit {
        /// The command.
        command: String,
        /// Its exit status, as text (`exit status: 3`, `signal: 9 (SIGKILL)`).
        status: String,
        /// What it printed.
        output: CommandOutput,
    },
    /// The command ran out of time and its process group was killed.
    #[error("`{command}` still running after {:.1} s, killed", timeout.as_secs_f64())]
    Timeout {
        /// The command.
        command: String,
        /// The time it had.
        timeout: Duration,
    },
}

fn stderr_suffix(out: &CommandOutput) -> String {
    if out.stderr.is_empty() {
        String::new()
    } else {
        format!("; stderr: {}", out.stderr)
    }
}

impl ShellError {
    fn into_power_error(self, op: &'static str, what: String) -> PowerError {
        match self {
            ShellError::Timeout { timeout, .. } => PowerError::Timeout {
                op,
                what,
                secs: timeout.as_secs_f64().ceil() as u64,
            },
            other => PowerError::Failed {
                op,
                what,
                message: other.to_string(),
            },
        }
    }
}

/// Kills a process group when dropped, unless disarmed.
struct GroupKiller {
    pgid: Option<Pid>,
}

impl GroupKiller {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // the group may be gone already (ESRCH): nothing to do then
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

fn capture<R: AsyncRead + Unpin + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut keep = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            keep.extend_from_slice(&chunk[..n]);
            if keep.len() > OUTPUT_KEEP {
                let cut = keep.len() - OUTPUT_KEEP;
                keep.drain(..cut);
            }
        }
        keep
    })
}

async fn collect(task: Option<JoinHandle<Vec<u8>>>) -> String {
    let Some(mut task) = task else {
        return String::new();
    };
    match tokio::time::timeout(OUTPUT_GRACE, &mut task).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Ok(Err(_)) => String::new(),
        Err(_) => {
            task.abort();
            String::new()
        }
    }
}

/// Runs `command` with `/bin/sh -c` in its own process group; see the module documentation.
pub async fn run_shell(command: &str, timeout: Duration) -> Result<CommandOutput, ShellError> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child =
        crate::confine::spawn(cmd, &crate::confine::Policy::Supervised).map_err(|source| {
            ShellError::Spawn {
                command: command.to_string(),
                source,
            }
        })?;
    // the child leads its own group, so the group id is its pid
    let mut killer = GroupKiller {
        pgid: child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .map(Pid::from_raw),
    };
    let out = child.stdout.take().map(capture);
    let err = child.stderr.take().map(capture);
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            // leftovers of a successful command (`daemon &`) are the admin's business
            killer.pgid = None;
            let output = CommandOutput {
                stdout: collect(out).await,
                stderr: collect(err).await,
            };
            if status.success() {
                Ok(output)
            } else {
                Err(ShellError::Exit {
                    command: command.to_string(),
                    status: status.to_string(),
                    output,
                })
            }
        }
        Ok(Err(source)) => {
            killer.kill();
            Err(ShellError::Spawn {
                command: command.to_string(),
                source,
            })
        }
        Err(_elapsed) => {
            killer.kill();
            let _ = child.wait().await;
            if let Some(t) = out {
                t.abort();
            }
            if let Some(t) = err {
                t.abort();
            }
            Err(ShellError::Timeout {
                command: command.to_string(),
                timeout,
            })
        }
    }
}
