//! basalt's master: LAVA's job, device and worker states ([`model`]), the scheduler
//! ([`scheduler`]), a pure function over a snapshot of the queue and the devices, when health
//! checks are due ([`health`]), the store
//! ([`store`]), the job logs stored exactly once as they arrive ([`logs`]), the workers link
//! ([`link`]) and the engine that drives them ([`engine`]), LAVA's REST API ([`http`]), LAVA's
//! events ([`events`]), the job definitions' `notify:` callbacks ([`notify`]), reservations,
//! jobs that wait for their holder ([`reservation`]), the artifact store ([`artifacts`]), and
//! the web pages with their log viewer ([`web`]).
//! The `basalt-master` binary (`src/main.rs`) puts them together.

#![forbid(unsafe_code)]

pub mod artifacts;
pub mod dictionary;
pub mod engine;
pub mod events;
pub mod health;
pub mod http;
pub mod link;
pub mod logs;
pub mod model;
pub mod multinode;
pub mod notify;
pub mod reservation;
pub mod results;
pub mod rpc;
pub mod scheduler;
pub mod store;
pub mod web;
pub mod xmlrpc;

pub use model::{
    DeviceHealth, DeviceState, JobHealth, JobState, Priority, WorkerHealth, WorkerState,
};
pub use scheduler::{
    schedule, Assignment, DeviceInfo, DeviceTypeInfo, QueuedJob, Schedule, Snapshot, Target,
};
