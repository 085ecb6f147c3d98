//! Artifact names: relative paths of safe segments (`images/kernel-6.1.img`), checked once
//! when they come in, so the rest of the store only ever sees a valid [`ArtifactName`]. Names
//! are keys of the index, never paths on disk (the files are stored by content,
//! [`super::Artifacts`]), so a name cannot reach outside the store whatever it holds; the
//! rules keep names readable, URL-safe without escaping, and free of hidden or dot segments.

use std::fmt;

/// The longest name, in bytes (all of its characters are ASCII).
pub const MAX_NAME_LEN: usize = 255;

/// The longest segment of a name (between two `/`).
pub const MAX_SEGMENT_LEN: usize = 128;

/// A valid artifact name: segments of `[A-Za-z0-9._-]` separated by `/`, none empty, none
/// starting with a dot, at most [`MAX_NAME_LEN`] bytes.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ArtifactName(String);

/// Why a name is refused (a 400 that says which rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("an artifact name is required")]
    Empty,
    #[error("artifact name {name:?} is {len} bytes long: at most {MAX_NAME_LEN}")]
    TooLong { name: String, len: usize },
    #[error("artifact name {0:?} is absolute: names are relative paths (no leading '/')")]
    Absolute(String),
    #[error("artifact name {0:?} has an empty segment ('//' or a trailing '/')")]
    EmptySegment(String),
    #[error(
        "artifact name {0:?} has a segment starting with '.' ('.', '..' and hidden names are refused)"
    )]
    DotSegment(String),
    #[error("artifact name {name:?} has a segment longer than {MAX_SEGMENT_LEN} characters")]
    LongSegment { name: String },
    #[error(
        "artifact name {name:?} holds {found:?}: only A-Z a-z 0-9 . _ - and '/' between segments"
    )]
    BadChar { name: String, found: char },
}

impl ArtifactName {
    /// Checks `name` against the rules.
    pub fn new(name: &str) -> Result<ArtifactName, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        // the character rule first: a name with spaces or '\' is that, whatever its length
        if let Some(found) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
        {
            return Err(NameError::BadChar {
                name: shown(name),
                found,
            });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong {
                name: shown(name),
                len: name.len(),
            });
        }
        if name.starts_with('/') {
            return Err(NameError::Absolute(name.to_string()));
        }
        for segment in name.split('/') {
            if segment.is_empty() {
                return Err(NameError::EmptySegment(name.to_string()));
            }
            if segment.starts_with('.') {
                return Err(NameError::DotSegment(name.to_string()));
            }
            if segment.len() > MAX_SEGMENT_LEN {
                return Err(NameError::LongSegment {
                    name: name.to_string(),
                });
            }
        }
        Ok(ArtifactName(name.to_string()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name as an error message shows it: cut after 80 characters.
fn shown(name: &str) -> String {
    match name.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &name[..i]),
        None => name.to_string(),
    }
}

impl fmt::Display for ArtifactName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ArtifactName {
    type Error = NameError;
    fn try_from(s: String) -> Result<ArtifactName, NameError> {
        ArtifactName::new(&s)
    }
}

impl From<ArtifactName> for String {
    fn from(n: ArtifactName) -> String {
        n.0
    }
}

impl std::str::FromStr for ArtifactName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<ArtifactName, NameError> {
        ArtifactName::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names_are_taken() {
        for n in [
            "a",
            "kernel-6.1.img",
            "ci/build_12/rootfs.ext4.gz",
            "A.B-c_d",
        ] {
            assert_eq!(
                ArtifactName::new(n).map(|n| n.to_string()),
                Ok(n.to_string())
            );
        }
    }

    #[test]
    fn bad_names_say_why() {
        type Check = fn(&NameError) -> bool;
        let cases: [(&str, Check); 10] = [
            ("", |e| matches!(e, NameError::Empty)),
            ("/abs", |e| matches!(e, NameError::Absolute(_))),
            ("../x", |e| matches!(e, NameError::DotSegment(_))),
            ("a/../x", |e| matches!(e, NameError::DotSegment(_))),
            (".hidden", |e| matches!(e, NameError::DotSegment(_))),
            ("a/./b", |e| matches!(e, NameError::DotSegment(_))),
            ("a//b", |e| matches!(e, NameError::EmptySegment(_))),
            ("a/", |e| matches!(e, NameError::EmptySegment(_))),
            ("a b", |e| {
                matches!(e, NameError::BadChar { found: ' ', .. })
            }),
            ("a\\b", |e| {
                matches!(e, NameError::BadChar { found: '\\', .. })
            }),
        ];
        for (name, ok) in cases {
            let e = ArtifactName::new(name).expect_err(name);
            assert!(ok(&e), "{name:?}: {e}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(
            ArtifactName::new(&long),
            Err(NameError::TooLong { .. })
        ));
        let segment = format!("{}/b", "a".repeat(MAX_SEGMENT_LEN + 1));
        assert!(matches!(
            ArtifactName::new(&segment),
            Err(NameError::LongSegment { .. })
        ));
        assert!(matches!(
            ArtifactName::new("é"),
            Err(NameError::BadChar { found: 'é', .. })
        ));
    }
}
