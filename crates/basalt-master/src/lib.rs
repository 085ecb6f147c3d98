//! basalt's master, as a library for now: LAVA's job, device and worker states ([`model`]) and,
//! next, the scheduler.
//! The binary (store, HTTP API, ZeroMQ to the workers) comes later and calls into this.

#![forbid(unsafe_code)]

pub mod model;

pub use model::{
    DeviceHealth, DeviceState, JobHealth, JobState, Priority, WorkerHealth, WorkerState,
};
