//! basalt's hardware abstraction layer: a few nouns, each a trait with backends.
//!
//! | trait | what | backends |
//! | --- | --- | --- |
//! | [`console::Console`] | a byte stream to the board, reconnectable | serial, telnet (ser2net), unix socket, pty, spawned command |
//! | [`console::Session`] | the expect engine over a console stream | — |
//! | [`power::Power`] | on / off / reset | shell commands, pdudaemon HTTP, QEMU QMP |
//! | [`emulator::QemuProcess`] | QEMU started from an argv, console on its stdio, killed with its group | — |
//! | [`staging::TftpServer`] | what boards fetch while they boot: a read-only TFTP server for the jobs' directories | — |
//! | [`inventory::UsbInventory`] | the host's USB serial adapters and other USB devices, for udev rules and presence checks | libudev with a sysfs fallback (feature `usb-inventory`), recorded fixtures, fake |
//! | [`confine`] | how the processes of a job are started: confined (user, mount, PID and network namespaces) or supervised, and killed with basalt | — |
//!
//! The pipeline sees these traits only; a backend never knows about jobs. The simulated board
//! lives in its own crate (`crates/basalt-board`), so a worker linking the HAL links only
//! what drives real boards.

#![warn(missing_docs)]

pub mod confine;
pub mod console;
pub mod emulator;
pub mod inventory;
pub mod power;
pub mod staging;
