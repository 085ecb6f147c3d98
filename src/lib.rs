//! basalt: a lean LAVA-compatible dispatcher. Job YAML → validated model → pipeline of actions
//! → HAL → board; results and log records flow back through one channel.

pub mod actions;
pub mod device;
pub mod diag;
pub mod job;
pub mod log;
pub mod overlay;
pub mod pipeline;
pub mod reader;
pub mod run;
pub mod testshell;
pub mod yaml;
