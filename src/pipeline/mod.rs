//! Pipeline construction: the tree of actions a job becomes on a device, built from the
//! strategies of [`crate::actions`] (see [`build`]), and the checks `validate --device` makes
//! on it before anything runs.

pub mod build;

pub use crate::action::{ActionNode, Pipeline, PipelineError, Section, TestDefId};
pub use build::{build_pipeline, validate};
