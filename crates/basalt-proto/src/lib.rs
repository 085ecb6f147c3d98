//! The messages between basalt's worker, master and coordinator: types and their serde
//! derives only (no I/O). See README.md for what belongs here and the compatibility rule,
//! and docs/protocol.md for the worker ⇄ master exchange.
//!
//! - [`version`]: [`ProtocolVersion`] and [`negotiate`], the rule two peers agree by;
//! - [`capability`]: what a worker can do, and [`require_capabilities`];
//! - [`message`]: [`WorkerMsg`] (worker → master) and [`MasterMsg`] (master → worker);
//! - [`failure`]: [`FailureCause`], basalt's failure taxonomy;
//! - [`codec`]: [`encode`] and [`decode`], one JSON object per ZeroMQ message;
//! - [`coordinator`]: LAVA's MultiNode coordinator frames, requests and replies.

#![forbid(unsafe_code)]

pub mod capability;
pub mod codec;
pub mod coordinator;
pub mod failure;
pub mod message;
pub mod version;

pub use capability::{
    missing_capabilities, require_capabilities, Capabilities, Capability, MissingCapabilities,
};
pub use codec::{decode, encode, DecodeError, MAX_MESSAGE_BYTES};
pub use failure::FailureCause;
pub use message::*;
pub use version::{negotiate, ProtocolVersion, VersionError, MAX_MINOR_LAG};

/// The heartbeat interval a master offers unless configured otherwise (LAVA pings every 20 s).
pub const DEFAULT_HEARTBEAT_INTERVAL_SECS: u32 = 20;

/// Intervals of silence after which either end gives the other up: the master marks the worker
/// Offline, the worker says Hello again (3 × 20 s is LAVA's 60 s ping timeout).
pub const MISSED_HEARTBEATS: u32 = 3;

#[cfg(test)]
mod tests;
