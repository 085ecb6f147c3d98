//! The lab's link: ZeroMQ sockets with CURVE between basalt's master and its workers.
//!
//! - [`cert`]: CURVE keypairs in ZeroMQ's certificate files (`NAME.key`, `NAME.key_secret`, as
//!   pyzmq's `zmq.auth` writes and reads them).
//! - `zap` (feature `zmq`, on by default): the master's ZAP handler (RFC 27): admits a worker only when its public key is in
//!   the admitted-keys folder, read again at every connection.
//! - `pump` and `outbox` (feature `zmq`): the thread that owns a link's sockets, and the queue
//!   that wakes it when there is a message to send.
//!
//! It knows nothing of jobs or messages (those are `basalt-proto`'s); the worker and the master
//! both link it, the HTTP server and the database stay out of it.

#![forbid(unsafe_code)]

pub mod cert;
#[cfg(feature = "zmq")]
pub mod outbox;
#[cfg(feature = "zmq")]
pub mod pump;
#[cfg(feature = "zmq")]
pub mod zap;
