//! Devices: the dictionary model and its rendering are `basalt-model`'s (the master renders
//! too); the board built from a device for a job ([`board`]) is the dispatcher's, since it
//! opens the HAL's backends.

pub use basalt_model::device::*;

pub mod board;
