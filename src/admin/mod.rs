//! A lab admin's generators: udev rules for the USB serial adapters, ser2net configuration
//! for the boards' consoles.

pub mod ser2net;
pub mod udev;
