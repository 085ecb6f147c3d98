//! The actions of a pipeline, one module per LAVA strategy: `deploy/tftp.rs` builds (and
//! runs) `tftp-deploy`, `boot/uboot.rs` builds `uboot-action`, and so on.

pub mod boot;
pub mod command;
pub mod deploy;
pub mod finalize;
pub mod test;
