//! basalt's worker, as a library for now: [`job`] runs one job of the master in a process of
//! its own (`basalt run --log-stdout`), streams its log record by record, cancels it with its
//! whole process group, and collects its end. A job that crashes, hangs or eats memory takes
//! only its own process down; the worker and the other jobs go on. The daemon (ZeroMQ to the
//! master, `basalt-proto` messages) comes next and drives these.
//!
//! The worker links no HTTP server, no database and not the dispatcher itself: the dispatcher
//! is the `basalt` binary it starts per job.

#![forbid(unsafe_code)]

pub mod job;
