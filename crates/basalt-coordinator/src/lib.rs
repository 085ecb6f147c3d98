//! basalt's MultiNode coordinator: LAVA's coordinator wire protocol (`lava/coordinator`), so
//! that LAVA's own dispatchers can use it, plus the `basalt_hold` extension with which
//! basalt's clients are answered the moment a wait is satisfied instead of polling.
//!
//! - [`server`]: the state machine ([`Coordinator`]), synchronous, no I/O;
//! - [`tcp`]: [`serve`], the tokio TCP front (limits, token, held requests);
//! - [`client`]: [`Client`], one connection per request, polling when the server is LAVA's.
//!
//! The frames, requests and replies are in [`basalt_proto::coordinator`].

#![forbid(unsafe_code)]

pub mod client;
pub mod server;
pub mod tcp;

pub use basalt_proto::coordinator::Identity;
pub use client::{Client, ClientError, Message, Replies};
pub use server::Coordinator;
pub use tcp::{serve, serve_on, Config};

/// LAVA's default coordinator port.
pub const DEFAULT_PORT: u16 = 3079;
