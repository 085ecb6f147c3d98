//! The protocol version and the rule by which two peers agree to talk.
//!
//! Rule (README.md, docs/protocol.md): the majors must be equal; a peer accepts a peer whose
//! minor is at most [`MAX_MINOR_LAG`] older than its own, or newer (it ignores the fields it
//! does not know). Both ends apply it, so a pair talks when its minors differ by at most 2.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How many minors older than its own a peer still accepts.
pub const MAX_MINOR_LAG: u16 = 2;

/// A protocol version: a new major breaks the wire, a new minor only adds optional fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProtocolVersion {
    pub major: u16,
    pub minor: u16,
}

impl ProtocolVersion {
    /// The version this crate speaks; every Hello and Welcome carries it.
    pub const CURRENT: ProtocolVersion = ProtocolVersion { major: 1, minor: 4 };

    /// A version from its two numbers.
    pub const fn new(major: u16, minor: u16) -> ProtocolVersion {
        ProtocolVersion { major, minor }
    }

    /// The oldest version a peer at `self` accepts.
    pub const fn oldest_accepted(self) -> ProtocolVersion {
        ProtocolVersion {
            major: self.major,
            minor: self.minor.saturating_sub(MAX_MINOR_LAG),
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Why a peer at `ours` refuses a peer at `theirs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error(
        "protocol major versions differ: we speak {ours}, the peer speaks {theirs}; \
         peers talk only within one major version"
    )]
    OtherMajor {
        ours: ProtocolVersion,
        theirs: ProtocolVersion,
    },
    #[error(
        "the peer's protocol {theirs} is more than {MAX_MINOR_LAG} minor versions older than \
         our {ours}: upgrade it to {oldest} or newer",
        oldest = ours.oldest_accepted()
    )]
    TooOld {
        ours: ProtocolVersion,
        theirs: ProtocolVersion,
    },
}

/// Whether a peer at `ours` talks to a peer at `theirs`, and if so at which version: the
/// older of the two (the newer end must not count on fields the older one never sends).
pub fn negotiate(
    ours: ProtocolVersion,
    theirs: ProtocolVersion,
) -> Result<ProtocolVersion, VersionError> {
    if ours.major != theirs.major {
        return Err(VersionError::OtherMajor { ours, theirs });
    }
    if theirs < ours.oldest_accepted() {
        return Err(VersionError::TooOld { ours, theirs });
    }
    Ok(ours.min(theirs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn v(major: u16, minor: u16) -> ProtocolVersion {
        ProtocolVersion::new(major, minor)
    }

    #[test]
    fn negotiation_table() {
        let ours = v(1, 5);
        let table: &[(ProtocolVersion, Option<ProtocolVersion>)] = &[
            (v(1, 5), Some(v(1, 5))), // same
            (v(1, 4), Some(v(1, 4))), // one minor older
            (v(1, 3), Some(v(1, 3))), // two minors older
            (v(1, 2), None),          // three minors older
            (v(1, 0), None),
            (v(1, 6), Some(v(1, 5))), // newer: we speak ours, it ignores what we lack
            (v(1, 60), Some(v(1, 5))),
            (v(2, 5), None), // other major, either way
            (v(0, 5), None),
        ];
        for &(theirs, want) in table {
            assert_eq!(
                negotiate(ours, theirs).ok(),
                want,
                "ours {ours}, theirs {theirs}"
            );
        }
    }

    #[test]
    fn low_minors_do_not_underflow() {
        assert_eq!(negotiate(v(1, 0), v(1, 0)), Ok(v(1, 0)));
        assert_eq!(negotiate(v(1, 1), v(1, 0)), Ok(v(1, 0)));
        assert_eq!(v(1, 1).oldest_accepted(), v(1, 0));
    }

    #[test]
    fn refusals_say_what_to_do() {
        let old = negotiate(v(1, 5), v(1, 2)).unwrap_err();
        assert_eq!(
            old,
            VersionError::TooOld {
                ours: v(1, 5),
                theirs: v(1, 2)
            }
        );
        assert_eq!(
            old.to_string(),
            "the peer's protocol 1.2 is more than 2 minor versions older than our 1.5: \
             upgrade it to 1.3 or newer"
        );
        let major = negotiate(v(1, 5), v(2, 0)).unwrap_err().to_string();
        assert!(
            major.contains("we speak 1.5, the peer speaks 2.0"),
            "{major}"
        );
    }

    #[test]
    fn the_current_version_accepts_itself() {
        let c = ProtocolVersion::CURRENT;
        assert_eq!(negotiate(c, c), Ok(c));
        assert_eq!(c.to_string(), "1.4");
    }
}
