//! basalt's model of LAVA's formats: YAML with positions ([`yaml`]), typed readers
//! ([`reader`]) and diagnostics ([`diag`]), the job definition and LAVA's verdict on it
//! ([`job`]), device dictionaries and their rendering ([`device`]), and the test patterns both
//! the parser and the test shell use ([`pattern`]).
//!
//! No I/O beyond reading the files it is given, no HAL, no async runtime: the dispatcher, the
//! master (which checks submissions and renders dictionaries) and the tools all link it.

pub mod device;
pub mod diag;
pub mod job;
pub mod pattern;
pub mod reader;
pub mod yaml;
