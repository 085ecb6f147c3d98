//! Staging: what a board fetches from the worker while it boots.
//!
//! | module | what |
//! | --- | --- |
//! | [`tftp`] | [`TftpServer`]: a read-only TFTP server (RFC 1350, 2347, 2348, 2349, 7440) for a root directory whose job directories the dispatcher stages |
//!
//! The dispatcher stages a job's files in a directory of its own below the server's root
//! (`ROOT/basalt-<job>-.../kernel/Image`); the board asks for that path relative to the root,
//! as LAVA's tftp deploy gives it to U-Boot. The server never writes, never lists a directory
//! and never serves a path that leaves the root.

pub mod tftp;

pub use tftp::{TftpConfig, TftpServer, TftpStats, TftpThread};
