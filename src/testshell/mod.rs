//! LAVA's test shell: the helper scripts that run on the device, the signals they print, and
//! the parse patterns of test definitions.

/// Python-compatible test patterns (in `basalt-model`: the job parser checks them too).
pub use basalt_model::pattern;
pub mod scripts;
pub mod signals;
