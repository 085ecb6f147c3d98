//! Messages to and from bytes: one JSON object per ZeroMQ message.
//!
//! [`decode`] reads untrusted bytes: it never panics, refuses more than [`MAX_MESSAGE_BYTES`]
//! before parsing, and says what is wrong (which type, which field, where).

use crate::message::Message;
use serde::Deserialize;
use serde_json::error::Category;

/// The largest message either end decodes: 16 MiB.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Why bytes are not a message of the expected direction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty message")]
    Empty,
    #[error("message of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("message is not a JSON object (a message is `{{\"type\": ..., ...}}`)")]
    NotAnObject,
    #[error("message is not valid JSON: {reason}")]
    Malformed { reason: String },
    #[error("message ends early (truncated) at line {line} column {column}")]
    Truncated { line: usize, column: usize },
    #[error("message has no `type` field")]
    MissingType,
    #[error("message's `type` is not a string")]
    TypeNotAString,
    #[error("unknown {sender} message type `{type_name}` (known: {known})")]
    UnknownType {
        type_name: String,
        sender: &'static str,
        known: String,
    },
    #[error("`{type_name}` is a message the {sender} sends, not one it receives")]
    WrongDirection {
        type_name: String,
        sender: &'static str,
    },
    #[error("invalid `{type_name}` message: {reason}")]
    Invalid { type_name: String, reason: String },
}

/// A message as JSON bytes.
pub fn encode<M: Message>(msg: &M) -> Vec<u8> {
    // The messages hold strings, integers, booleans, sequences and string-keyed structs
    // only: serde_json has no way to fail on them.
    serde_json::to_vec(msg).expect("a message always serializes to JSON")
}

/// The message in `bytes`, or what is wrong with them.
pub fn decode<M: Message>(bytes: &[u8]) -> Result<M, DecodeError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    // serde's internal tagging also reads `["type", ...]`: only an object is a message.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(DecodeError::Empty),
        Some(b'{') => {}
        Some(_) => return Err(DecodeError::NotAnObject),
    }
    match serde_json::from_slice::<M>(bytes) {
        Ok(msg) => Ok(msg),
        Err(e) => Err(explain::<M>(bytes, e)),
    }
}

/// Only the `type` field of an object, the rest skipped.
#[derive(Deserialize)]
struct TypeOnly {
    #[serde(rename = "type", default)]
    ty: Option<serde_json::Value>,
}

/// Turns serde_json's error into ours: syntax and truncation as they are, a data error by
/// looking at the `type` field again.
fn explain<M: Message>(bytes: &[u8], e: serde_json::Error) -> DecodeError {
    match e.classify() {
        Category::Eof => {
            return DecodeError::Truncated {
                line: e.line(),
                column: e.column(),
            }
        }
        Category::Syntax | Category::Io => {
            return DecodeError::Malformed {
                reason: e.to_string(),
            }
        }
        Category::Data => {}
    }
    let ty = match serde_json::from_slice::<TypeOnly>(bytes) {
        Ok(TypeOnly { ty: None }) => return DecodeError::MissingType,
        Ok(TypeOnly {
            ty: Some(serde_json::Value::String(ty)),
        }) => ty,
        Ok(TypeOnly { ty: Some(_) }) => return DecodeError::TypeNotAString,
        Err(_) => {
            return DecodeError::Invalid {
                type_name: String::from("?"),
                reason: e.to_string(),
            }
        }
    };
    if M::TYPES.contains(&ty.as_str()) {
        DecodeError::Invalid {
            type_name: ty,
            reason: e.to_string(),
        }
    } else if M::OTHER_TYPES.contains(&ty.as_str()) {
        DecodeError::WrongDirection {
            type_name: ty,
            sender: other(M::SENDER),
        }
    } else {
        DecodeError::UnknownType {
            type_name: ty,
            sender: M::SENDER,
            known: M::TYPES.join(", "),
        }
    }
}

fn other(sender: &'static str) -> &'static str {
    if sender == "worker" {
        "master"
    } else {
        "worker"
    }
}
