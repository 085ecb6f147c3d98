//! What the worker host gives a job: its output directory, its limits, a pool for blocking
//! work, a file server for the devices and private temporary directories. Nothing here knows
//! actions or pipelines.

pub mod blocking;
pub mod exports;
pub mod http;
pub mod limits;
pub mod output;
pub mod tempdir;
pub mod uimage;
