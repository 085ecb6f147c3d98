//! Power for an emulated board through QEMU's QMP monitor on a unix socket
//! (`-qmp unix:/run/board-qmp.sock,server=on,wait=off`), typically a QEMU started with `-S`
//! (powered off, console already connectable).
//!
//! Each operation opens the socket, reads the greeting, negotiates capabilities
//! (`qmp_capabilities`), runs its commands and closes it; asynchronous events are skipped.
//!
//! | operation | QMP commands | status afterwards |
//! | --- | --- | --- |
//! | on, reset | `system_reset`, `cont` | `running` |
//! | off | `stop`, `system_reset` | not running (`prelaunch` with QEMU 10: reset while stopped) |

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use super::{Power, PowerError};

/// Largest QMP message accepted.
const MAX_LINE: usize = 1024 * 1024;

/// Power control of a QEMU machine through QMP. See the module documentation.
#[derive(Debug, Clone)]
pub struct QmpPower {
    path: PathBuf,
    timeout: Duration,
}

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// Socket trouble.
    #[error("QMP socket: {0}")]
    Io(#[from] std::io::Error),
    /// QEMU closed the connection.
    #[error("QMP connection closed by QEMU")]
    Closed,
    /// Not what QMP sends.
    #[error("unexpected QMP message: {0}")]
    Protocol(String),
    /// QEMU answered a command with an error.
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QMP's error class.
        class: String,
        /// QMP's description.
        desc: String,
    },
}

impl QmpPower {
    /// The QMP socket at `path`; each operation may take 10 s.
    pub fn new(path: impl Into<PathBuf>) -> QmpPower {
        QmpPower {
            path: path.into(),
            timeout: Duration::from_secs(10),
        }
    }

    /// Sets the time allowed for one operation.
    pub fn with_timeout(mut self, timeout: Duration) -> QmpPower {
        self.timeout = timeout;
        self
    }

    /// Runs QMP commands in one session and returns their `return` values.
    pub async fn execute(
        &self,
        commands: &[(&str, Option<Value>)],
    ) -> Result<Vec<Value>, QmpError> {
        let mut client = QmpClient::connect(&self.path).await?;
        let mut out = Vec::with_capacity(commands.len());
        for (name, args) in commands {
            out.push(client.execute(name, args.clone()).await?);
        }
        Ok(out)
    }

    /// The machine's run state (`query-status`): `running`, `paused`, `prelaunch`, ...
    pub async fn query_status(&self) -> Result<String, PowerError> {
        let values = self.run("status", &[("query-status", None)]).await?;
        values
            .first()
            .and_then(|v| v.get("status"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| PowerError::Failed {
                op: "status",
                what: self.describe(),
                message: "query-status returned no status".to_string(),
            })
    }

    async fn run(
        &self,
        op: &'static str,
        commands: &[(&str, Option<Value>)],
    ) -> Result<Vec<Value>, PowerError> {
        match tokio::time::timeout(self.timeout, self.execute(commands)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(PowerError::Failed {
                op,
                what: self.describe(),
                message: e.to_string(),
            }),
            Err(_) => Err(PowerError::Timeout {
                op,
                what: self.describe(),
                secs: self.timeout.as_secs_f64().ceil() as u64,
            }),
        }
    }
}

#[async_trait]
impl Power for QmpPower {
    fn describe(&self) -> String {
        format!("qmp {}", self.path.display())
    }

    async fn on(&self) -> Result<(), PowerError> {
        self.run("on", &[("system_reset", None), ("cont", None)])
            .await
            .map(drop)
    }

    async fn off(&self) -> Result<(), PowerError> {
        self.run("off", &[("stop", None), ("system_reset", None)])
            .await
            .map(drop)
    }

    async fn reset(&self) -> Result<(), PowerError> {
        self.run("reset", &[("system_reset", None), ("cont", None)])
            .await
            .map(drop)
    }
}

/// One QMP connection, past capabilities negotiation.
struct QmpClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    line: String,
}

impl QmpClient {
    async fn connect(path: &std::path::Path) -> Result<QmpClient, QmpError> {
        let (r, w) = UnixStream::connect(path).await?.into_split();
        let mut c = QmpClient {
            reader: BufReader::new(r),
            writer: w,
            line: String::new(),
        };
        let greeting = c.read_message().await?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!("greeting {greeting}")));
        }
        c.execute("qmp_capabilities", None).await?;
        Ok(c)
    }

    async fn read_message(&mut self) -> Result<Value, QmpError> {
        self.line.clear();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64)
            .read_line(&mut self.line)
            .await?;
        if n == 0 {
            return Err(QmpError::Closed);
        }
        serde_json::from_str(self.line.trim())
            .map_err(|e| QmpError::Protocol(format!("{e}: {}", self.line.trim())))
    }

    async fn execute(&mut self, command: &str, args: Option<Value>) -> Result<Value, QmpError> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = args {
            msg["arguments"] = a;
        }
        let mut text = msg.to_string();
        text.push('\n');
        self.writer.write_all(text.as_bytes()).await?;
        loop {
            let reply = self.read_message().await?;
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                let field = |k: &str| {
                    err.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string()
                };
                return Err(QmpError::Command {
                    command: command.to_string(),
                    class: field("class"),
                    desc: field("desc"),
                });
            }
            if reply.get("event").is_none() {
                return Err(QmpError::Protocol(reply.to_string()));
            }
        }
    }
}
