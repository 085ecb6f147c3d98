//! LAVA's test shell on the dispatcher side: signal parsing and test-definition parse patterns.

pub mod pattern;
