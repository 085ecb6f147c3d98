//! Power control: on, off and reset of a board.

use async_trait::async_trait;

/// Why a power operation failed: always an infrastructure error.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error("power {op} with {what} failed: {message}")]
    Failed { op: &'static str, what: String, message: String },
    #[error("power {op} with {what} timed out after {secs} s")]
    Timeout { op: &'static str, what: String, secs: u64 },
}

/// Switches a board on and off.
#[async_trait]
pub trait Power: Send + Sync {
    fn describe(&self) -> String;
    async fn on(&self) -> Result<(), PowerError>;
    async fn off(&self) -> Result<(), PowerError>;
    /// A hard reset (power cycle).
    async fn reset(&self) -> Result<(), PowerError>;
}
