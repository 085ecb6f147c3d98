//! What a lab admin runs on a worker host to register its hardware: udev rules for the USB
//! serial adapters (`basalt udev`).

pub mod udev;
