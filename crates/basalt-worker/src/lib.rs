//! basalt's worker: [`daemon`] talks to the master over [`link`] (ZeroMQ, CURVE) and runs the
//! jobs it is sent; [`job`] runs one job in a process of its own (`basalt run --log-stdout`),
//! streams its log record by record, cancels it with its whole process group, and collects its
//! end; a reservation's job holds its board instead (`basalt hold`, [`hold`]: a console port,
//! the control socket that the master's `hold` requests go through). A job that crashes, hangs or eats memory takes only its own process down; the worker
//! and the other jobs go on.
//!
//! The worker links no HTTP server, no database and not the dispatcher itself: the dispatcher
//! is the `basalt` binary it starts per job.

#![forbid(unsafe_code)]

pub mod daemon;
pub mod hold;
pub mod job;
pub mod link;
