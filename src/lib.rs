//! basalt: a lean LAVA-compatible dispatcher. Job YAML → validated model → pipeline of actions
//! → HAL → board; log records and results flow back through one log.
//!
//! The crate is built in layers; a module uses only modules of its own layer or below
//! (`tests/layering.rs` checks it):
//!
//! | layer | modules | what |
//! |---|---|---|
//! | 7 | `admin` | the lab admin's tools for a worker host: `basalt ser2net generate` (`admin::ser2net`) |
//! | 7 | `lab` | a lab on this machine from basalt's binaries (master, workers, boards): `basalt demo`, the lab tests |
//! | 7 | `hold` | a board held for a reservation: `basalt hold` (its console served over telnet from a hub, boots and commands from the worker's control socket; SSH access: `hold::ssh`) |
//! | 7 | `admin::udev` | udev rules for a worker host's USB serial adapters: `basalt udev list`, `generate` |
//! | 6 | `client` | a client of a LAVA REST API v0.2 (the master's): `basalt jobs`, `devices`, `workers` |
//! | 6 | `run` | the executor: runs a pipeline's actions by their trait, with timeouts, retries, finalize and cleanup; `run_job` |
//! | 6 | `pipeline` | builds a job's pipeline on a device from the strategies and checks it (`validate --device`) |
//! | 5 | `actions` | the strategies, one module per LAVA strategy (`deploy/tftp.rs` is `tftp-deploy`), and their `registry` |
//! | 4 | `action` | the `Action` trait, the pipeline tree, the job's context `Ctx`, the node builder |
//! | 3 | `log` | the job log (`output.yaml`, `results.yaml`, the terminal, a channel, a stream) |
//! | 3 | `protocols` | `lava-multinode`: the sub-job's MultiNode facts and its coordinator |
//! | 2 | `device`, `overlay`, `testshell` | the board built from a device (`device::board`), the test overlay, the test shell's scripts |
//! | 1 | `host` | what the worker host gives a job: output directory, limits, blocking pool, file server, temporary directories |
//! | 0 | `error` | action errors |
//!
//! Below them all, the model of LAVA's formats is the `basalt_model` crate, re-exported here as
//! `yaml`, `reader`, `diag`, `job` and (with the board added) `device`: the master links it
//! too, without the HAL. The hardware itself (consoles, power, emulators, confinement) is the
//! `basalt_hal` crate.

pub mod action;
pub mod actions;
pub mod admin;
pub mod client;
pub mod device;
pub mod error;
pub mod hold;
pub mod host;
pub mod lab;
pub mod log;
pub mod overlay;
pub mod pipeline;
pub mod protocols;
pub mod run;
pub mod testshell;

/// The model of LAVA's formats, from `basalt-model` (where the master finds it too).
pub use basalt_model::{diag, job, reader, yaml};
