//! Emulators: QEMU started and supervised by the worker, its serial console on its stdio.

mod qemu;

pub use qemu::{EmulatorError, QemuProcess};
