//! LAVA's test shell: the helper scripts that run on the device, the signals they print, and
//! the parse patterns of test definitions.

pub mod pattern;
pub mod scripts;
pub mod signals;
