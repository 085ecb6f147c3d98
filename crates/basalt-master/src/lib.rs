//! basalt's master, as a library for now: LAVA's job, device and worker states ([`model`]),
//! the scheduler ([`scheduler`]), a pure function over a snapshot of the queue and the
//! devices, and the job logs stored exactly once as they arrive ([`logs`]).
//! The binary (store, HTTP API, ZeroMQ to the workers) comes later and calls into this.

#![forbid(unsafe_code)]

pub mod engine;
pub mod link;
pub mod logs;
pub mod model;
pub mod scheduler;
pub mod store;

pub use model::{
    DeviceHealth, DeviceState, JobHealth, JobState, Priority, WorkerHealth, WorkerState,
};
pub use scheduler::{
    schedule, Assignment, DeviceInfo, DeviceTypeInfo, QueuedJob, Schedule, Snapshot, Target,
};
