//! `deploy:` strategies, by `to:` (see [`crate::actions::registry::DEPLOY`]).

pub mod download;
pub mod git;
pub mod nfs;
pub mod overlay;
pub mod storage;
pub mod tftp;
pub mod tmpfs;

use crate::action::{Builder, PipelineError, Scope};
use crate::job::Deploy;

/// The device must offer deploy method `method` for this block.
pub(crate) fn require(
    b: &Builder<'_>,
    s: &Scope<'_>,
    d: &Deploy,
    method: &str,
) -> Result<(), PipelineError> {
    let dev = b.device;
    if dev.has_deploy_method(method) {
        return Ok(());
    }
    Err(s.error(
        b,
        format!(
            "device '{}' ({}) cannot deploy to {}: its actions.deploy.methods has no '{method}'",
            dev.hostname,
            dev.device_type,
            d.to.name()
        ),
    ))
}
