//! Power control: on, off and reset of a board.
//!
//! | module | [`Power`] | what |
//! | --- | --- | --- |
//! | [`command`] | [`CommandPower`] | the device dictionary's shell commands (`power_on_command`, ...) |
//! | [`pdudaemon`] | [`PduDaemonPower`] | pdudaemon's HTTP or TCP listener |
//! | [`qmp`] | [`QmpPower`] | QEMU's QMP monitor (an emulated board started with `-S`) |
//! | [`fake`] | [`FakePower`] | in-process, for unit tests: records calls, fails on request |

use async_trait::async_trait;

pub mod command;
pub mod fake;
pub mod pdudaemon;
pub mod qmp;

pub use command::{CommandPower, PowerCommands};
pub use fake::FakePower;
pub use pdudaemon::{PduDaemonPower, PduTransport};
pub use qmp::QmpPower;

/// Why a power operation failed: always an infrastructure error.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    /// The operation ran and failed (non-zero exit, HTTP error, QMP error, no connection).
    #[error("power {op} with {what} failed: {message}")]
    Failed {
        /// `on`, `off` or `reset`.
        op: &'static str,
        /// The backend, as [`Power::describe`] says it.
        what: String,
        /// What went wrong (stderr of a command, HTTP status and body, QMP error).
        message: String,
    },
    /// The operation did not finish in time (a command was killed).
    #[error("power {op} with {what} timed out after {secs} s")]
    Timeout {
        /// `on`, `off` or `reset`.
        op: &'static str,
        /// The backend.
        what: String,
        /// The time allowed.
        secs: u64,
    },
    /// The backend has no way to perform this operation (e.g. no command configured).
    #[error("power {op} is not configured for {what}")]
    NotConfigured {
        /// `on`, `off` or `reset`.
        op: &'static str,
        /// The backend.
        what: String,
    },
}

/// Switches a board on and off.
#[async_trait]
pub trait Power: Send + Sync {
    /// A short description for logs and errors, e.g. `pdudaemon 127.0.0.1:16421 pdu01 port 3`.
    fn describe(&self) -> String;
    /// Switches the board on; it is running when this returns.
    async fn on(&self) -> Result<(), PowerError>;
    /// Switches the board off.
    async fn off(&self) -> Result<(), PowerError>;
    /// A hard reset (power cycle).
    async fn reset(&self) -> Result<(), PowerError>;
}
