//! `boot:` strategies, by `method:` (see [`crate::actions::registry::BOOT`]).

pub mod login;
pub mod minimal;
pub mod qemu;
pub mod qemu_forward;
pub mod uboot;
