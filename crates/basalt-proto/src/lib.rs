//! The messages between basalt's worker, master and coordinator: types and their serde
//! derives only (no I/O). See README.md for what belongs here and the compatibility rule.
//!
//! The messages themselves arrive with the lab (worker and master) and MultiNode issues; this
//! crate is in place so that they have one home from the start.

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// The protocol version every connection announces first; see the compatibility rule.
pub const PROTOCOL_VERSION: u32 = 1;

/// What a peer says first: who it is and which protocol version it speaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    /// The sender's name (a worker's name, `master`, `coordinator`).
    pub name: String,
}

impl Hello {
    /// A hello from `name` at this crate's protocol version.
    pub fn new(name: impl Into<String>) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            name: name.into(),
        }
    }

    /// Whether the peer speaks our version.
    pub fn compatible(&self) -> bool {
        self.version == PROTOCOL_VERSION
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_is_compatible_with_itself() {
        let h = Hello::new("worker-01");
        assert!(h.compatible());
        assert!(!Hello { version: 0, ..h }.compatible());
    }
}
