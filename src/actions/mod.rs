//! The strategies: one module per LAVA strategy, each with its build half (which actions a
//! block becomes on a device) and its run half (the [`Action`](crate::action::Action)
//! implementations): `deploy/tftp.rs` is `tftp-deploy`, `boot/uboot.rs` is `uboot-action`,
//! and so on. [`registry`] lists them by the job's `to:`, `method:` and test kind.

pub mod boot;
pub mod command;
pub mod deploy;
pub mod finalize;
pub mod registry;
pub mod test;
