//! No code: the crate's test (`tests/lava_api.rs`) drives a basalt lab with the `lava-api`
//! crate, LAVA's Rust client from crates.io, and checks that everything it asks for parses.
