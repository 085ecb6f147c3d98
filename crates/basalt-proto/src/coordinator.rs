//! LAVA's MultiNode coordinator wire protocol (`lava/coordinator/__init__.py`, the client in
//! `lava_dispatcher/protocols/multinode.py`), no I/O: the frame codec, an order-keeping JSON
//! value printed exactly as Python's `json.dumps` prints it, typed requests and replies.
//!
//! A frame is 8 upper-case hex digits giving the length of the JSON text in *characters*,
//! then the JSON text (ASCII-escaped, so characters and bytes agree for what LAVA sends).
//! basalt's extension keys (`basalt_hold`, `basalt_token`) are ignored by LAVA's server.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt::{self, Write as _};

/// Length of a frame's header: `"%08X" % len(json)`.
pub const HEADER_LEN: usize = 8;

/// The largest message LAVA's client sends (`multinode.py` refuses longer ones).
pub const MAX_CLIENT_MESSAGE: usize = 0xFFFE;

/// What is wrong with a frame or a request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The 8-character header is not hexadecimal.
    #[error("frame header {0:?} is not 8 hexadecimal digits")]
    BadHeader(String),
    /// The announced length is beyond the receiver's limit.
    #[error("frame announces {len} characters, more than the limit of {limit}")]
    TooLong { len: usize, limit: usize },
    /// The body is not UTF-8.
    #[error("frame body is not UTF-8")]
    NotUtf8,
    /// The body is not JSON.
    #[error("frame body is not JSON: {0}")]
    BadJson(String),
    /// The frame ended before its announced length.
    #[error("frame ended after {got} of {want} characters")]
    Truncated { got: usize, want: usize },
}

/// Parses a frame header into the announced length (in characters).
pub fn parse_header(header: &[u8], limit: usize) -> Result<usize, FrameError> {
    let text = std::str::from_utf8(header)
        .ok()
        .filter(|t| t.len() == HEADER_LEN && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| BadHeaderText::from(header))?;
    let len = usize::from_str_radix(text, 16).map_err(|_| BadHeaderText::from(header))?;
    if len > limit {
        return Err(FrameError::TooLong { len, limit });
    }
    Ok(len)
}

/// Helper: a lossy rendering of a bad header for the error message.
struct BadHeaderText(String);
impl From<&[u8]> for BadHeaderText {
    fn from(b: &[u8]) -> Self {
        BadHeaderText(String::from_utf8_lossy(b).into_owned())
    }
}
impl From<BadHeaderText> for FrameError {
    fn from(b: BadHeaderText) -> Self {
        FrameError::BadHeader(b.0)
    }
}

/// The number of bytes holding the first `chars` characters of `body`, if they are all there
/// (`Ok(None)`: read more). The length in a header counts characters, as Python's `len`.
pub fn body_len(body: &[u8], chars: usize) -> Result<Option<usize>, FrameError> {
    let (mut i, mut n) = (0usize, 0usize);
    while n < chars {
        let Some(&lead) = body.get(i) else {
            return Ok(None);
        };
        let width = match lead {
            0x00..=0x7F => 1,
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return Err(FrameError::NotUtf8),
        };
        if i + width > body.len() {
            return Ok(None);
        }
        i += width;
        n += 1;
    }
    std::str::from_utf8(&body[..i]).map_err(|_| FrameError::NotUtf8)?;
    Ok(Some(i))
}

/// Frames a JSON text: header and body, as LAVA's `_formatMessage` does.
pub fn frame(json: &str) -> Vec<u8> {
    let mut out = format!("{:08X}", json.chars().count()).into_bytes();
    out.extend_from_slice(json.as_bytes());
    out
}

/// Splits one whole frame (header + body) into its JSON value.
pub fn decode_frame(bytes: &[u8], limit: usize) -> Result<Json, FrameError> {
    let header = bytes.get(..HEADER_LEN).ok_or(FrameError::Truncated {
        got: bytes.len(),
        want: HEADER_LEN,
    })?;
    let want = parse_header(header, limit)?;
    let body = &bytes[HEADER_LEN..];
    let n = body_len(body, want)?.ok_or(FrameError::Truncated {
        got: String::from_utf8_lossy(body).chars().count(),
        want,
    })?;
    Json::parse(&body[..n])
}

/// A JSON value that keeps the order of object keys (Python dicts do, and the byte-identical
/// replies depend on it).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// An integer (Python prints it without a fraction).
    Int(i128),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// An empty object (what a Python `setdefault(key, {})` starts from).
impl Default for Json {
    fn default() -> Self {
        Json::Object(Vec::new())
    }
}

impl Json {
    /// Parses a JSON text.
    pub fn parse(bytes: &[u8]) -> Result<Json, FrameError> {
        let text = std::str::from_utf8(bytes).map_err(|_| FrameError::NotUtf8)?;
        let mut de = serde_json::Deserializer::from_str(text);
        let v = Json::deserialize(&mut de).map_err(|e| FrameError::BadJson(e.to_string()))?;
        de.end().map_err(|e| FrameError::BadJson(e.to_string()))?;
        Ok(v)
    }

    /// An object from key/value pairs, in this order.
    pub fn object<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A string value.
    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    /// The value of `key` in an object (the last one, as Python keeps for duplicates).
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(pairs) => pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Python's truthiness (`if not message:`).
    pub fn is_truthy(&self) -> bool {
        match self {
            Json::Null => false,
            Json::Bool(b) => *b,
            Json::Int(i) => *i != 0,
            Json::Float(f) => *f != 0.0,
            Json::Str(s) => !s.is_empty(),
            Json::Array(a) => !a.is_empty(),
            Json::Object(o) => !o.is_empty(),
        }
    }

    /// Sets `key` (keeping its position when present, appending otherwise), as a dict does.
    /// A value that is not an object becomes one first.
    pub fn set(&mut self, key: &str, value: Json) {
        if !matches!(self, Json::Object(_)) {
            *self = Json::Object(Vec::new());
        }
        if let Json::Object(pairs) = self {
            match pairs.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value,
                None => pairs.push((key.to_string(), value)),
            }
        }
    }

    /// The text Python's `json.dumps(value)` gives: `", "` and `": "` separators, non-ASCII
    /// escaped as `\uXXXX`.
    pub fn dumps(&self) -> String {
        let mut out = String::new();
        self.write_py(&mut out);
        out
    }

    fn write_py(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(true) => out.push_str("true"),
            Json::Bool(false) => out.push_str("false"),
            Json::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Json::Float(f) => out.push_str(&py_float(*f)),
            Json::Str(s) => py_string(s, out),
            Json::Array(items) => {
                out.push('[');
                for (n, v) in items.iter().enumerate() {
                    if n > 0 {
                        out.push_str(", ");
                    }
                    v.write_py(out);
                }
                out.push(']');
            }
            Json::Object(pairs) => {
                out.push('{');
                for (n, (k, v)) in pairs.iter().enumerate() {
                    if n > 0 {
                        out.push_str(", ");
                    }
                    py_string(k, out);
                    out.push_str(": ");
                    v.write_py(out);
                }
                out.push('}');
            }
        }
    }
}

/// A string as Python's `json.dumps` (ensure_ascii) writes it.
fn py_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// A float as Python's `repr` writes it (shortest round trip; exponent below 1e-4 and from 1e16).
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sci = format!("{f:e}"); // e.g. "-1.5e20", "1e-7"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{f}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Int(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut pairs: Vec<(String, Json)> = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            // a repeated key keeps its first position and its last value, as a Python dict
            match pairs.iter_mut().find(|(pk, _)| *pk == k) {
                Some(slot) => slot.1 = v,
                None => pairs.push((k, v)),
            }
        }
        Ok(Json::Object(pairs))
    }
}

/// Who a client is in its group: the base message's identifying keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `target_group`, a uuid4 string.
    pub group_name: String,
    /// The sub-job's numeric job id as a string ("124").
    pub client_name: String,
    /// The sub-job's role.
    pub role: String,
    /// The worker's (or device's) hostname.
    pub hostname: String,
}

/// The call a request makes (`request` and its call-specific keys).
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// Register and wait until the whole group registered.
    GroupData,
    /// Store `message` for every client under `message_id`.
    LavaSend { message_id: String, message: Json },
    /// Wait until anyone sent `message_id`.
    LavaWait { message_id: String },
    /// Wait until everyone (or the first of `waitrole`) sent `message_id`.
    LavaWaitAll {
        message_id: String,
        waitrole: Option<String>,
    },
    /// Wait until every client called lava_sync with `message_id`.
    LavaSync { message_id: String, message: Json },
    /// This client is done with the group.
    ClearGroup,
    /// Legacy result aggregation.
    Aggregate { bundle: Option<Json>, sub_id: Json },
    /// Close the connection without a reply.
    Complete,
    /// Anything else (or a call missing its keys): answered `nack`.
    Unknown(String),
}

/// A request: the base message and its call.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `client_name` (a number is taken as its decimal text).
    pub client_name: Option<String>,
    pub group_name: Option<String>,
    pub role: Option<String>,
    pub hostname: Option<String>,
    /// `group_size`, needed by the first request of a group.
    pub group_size: Option<i64>,
    /// `timeout` in seconds (the client's poll timeout; basalt's server holds that long).
    pub timeout: Option<f64>,
    /// basalt's extension: hold the connection until satisfied instead of answering `wait`.
    pub basalt_hold: bool,
    /// basalt's extension: the shared token of a protected server.
    pub basalt_token: Option<String>,
    pub call: Call,
}

/// A value as a name: strings as they are, integers as their digits.
fn name_of(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::Str(s) => Some(s.clone()),
        Json::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

impl Request {
    /// Reads a request from its JSON (never fails: what LAVA's server would refuse becomes
    /// [`Call::Unknown`] or missing fields).
    pub fn from_json(j: &Json) -> Request {
        let group_size = match j.get("group_size") {
            Some(Json::Int(i)) => i64::try_from(*i).ok(),
            Some(Json::Str(s)) => s.trim().parse().ok(),
            Some(Json::Float(f)) if f.is_finite() => Some(f.trunc() as i64),
            _ => None,
        };
        let timeout = match j.get("timeout") {
            Some(Json::Int(i)) => Some(*i as f64),
            Some(Json::Float(f)) if f.is_finite() => Some(*f),
            _ => None,
        };
        let message_id = name_of(j.get("messageID"));
        let message = match j.get("message") {
            None | Some(Json::Null) => Json::Object(Vec::new()),
            Some(m) => m.clone(),
        };
        let request = j.get("request").and_then(Json::as_str).unwrap_or("");
        let call = match (request, message_id) {
            ("group_data", _) => Call::GroupData,
            ("clear_group", _) => Call::ClearGroup,
            ("complete", _) => Call::Complete,
            ("aggregate", _) => Call::Aggregate {
                bundle: j.get("bundle").cloned(),
                sub_id: j.get("sub_id").cloned().unwrap_or(Json::Null),
            },
            ("lava_send", Some(message_id)) => Call::LavaSend {
                message_id,
                message,
            },
            ("lava_wait", Some(message_id)) => Call::LavaWait { message_id },
            ("lava_wait_all", Some(message_id)) => Call::LavaWaitAll {
                message_id,
                waitrole: name_of(j.get("waitrole")),
            },
            ("lava_sync", Some(message_id)) => Call::LavaSync {
                message_id,
                message,
            },
            (other, _) => Call::Unknown(other.to_string()),
        };
        Request {
            client_name: name_of(j.get("client_name")),
            group_name: name_of(j.get("group_name")),
            role: name_of(j.get("role")),
            hostname: name_of(j.get("hostname")),
            group_size,
            timeout,
            basalt_hold: matches!(j.get("basalt_hold"), Some(Json::Bool(true))),
            basalt_token: j
                .get("basalt_token")
                .and_then(Json::as_str)
                .map(String::from),
            call,
        }
    }

    /// Whether this call may be held (its `wait` only ends by another client's action).
    pub fn holdable(&self) -> bool {
        matches!(
            self.call,
            Call::GroupData
                | Call::LavaWait { .. }
                | Call::LavaWaitAll { .. }
                | Call::LavaSync { .. }
        )
    }
}

/// A reply of the coordinator.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `{"response": "wait"}`: ask again later.
    Wait,
    /// `{"response": "ack"}`.
    Ack,
    /// `{"response": "nack"}`: refused.
    Nack,
    /// `{"response": "group_data", "roles": {client: role, ...}}`.
    GroupData(Vec<(String, String)>),
    /// `{"response": "ack", "message": ...}`.
    Message(Json),
    /// No reply: the connection is closed (`complete`).
    Close,
}

impl Reply {
    /// The reply as LAVA's server builds it (key order included); `None` for [`Reply::Close`].
    pub fn to_json(&self) -> Option<Json> {
        let response = |r: &str| ("response", Json::str(r));
        Some(match self {
            Reply::Wait => Json::object([response("wait")]),
            Reply::Ack => Json::object([response("ack")]),
            Reply::Nack => Json::object([response("nack")]),
            Reply::GroupData(roles) => Json::object([
                response("group_data"),
                (
                    "roles",
                    Json::object(roles.iter().map(|(c, r)| (c.clone(), Json::str(r)))),
                ),
            ]),
            Reply::Message(m) => Json::object([response("ack"), ("message", m.clone())]),
            Reply::Close => return None,
        })
    }

    /// The framed bytes of the reply (empty for [`Reply::Close`]).
    pub fn to_frame(&self) -> Vec<u8> {
        self.to_json()
            .map(|j| frame(&j.dumps()))
            .unwrap_or_default()
    }

    /// Reads a reply (what a client receives).
    pub fn from_json(j: &Json) -> Result<Reply, FrameError> {
        let bad = || FrameError::BadJson(format!("not a coordinator reply: {}", j.dumps()));
        match j.get("response").and_then(Json::as_str) {
            Some("wait") => Ok(Reply::Wait),
            Some("nack") => Ok(Reply::Nack),
            Some("ack") => Ok(match j.get("message") {
                Some(m) => Reply::Message(m.clone()),
                None => Reply::Ack,
            }),
            Some("group_data") => match j.get("roles") {
                Some(Json::Object(pairs)) => Ok(Reply::GroupData(
                    pairs
                        .iter()
                        .map(|(c, r)| (c.clone(), r.as_str().unwrap_or_default().to_string()))
                        .collect(),
                )),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumps_like_python() {
        let j = Json::parse(br#"{"b": 1, "a": [1.5, null, true, "\u00e9\n"], "c": {"x": 1e20}}"#)
            .unwrap();
        assert_eq!(
            j.dumps(),
            r#"{"b": 1, "a": [1.5, null, true, "\u00e9\n"], "c": {"x": 1e+20}}"#
        );
        assert_eq!(Json::str("😀").dumps(), r#""\ud83d\ude00""#);
        assert_eq!(py_float(1.0), "1.0");
        assert_eq!(py_float(0.0001), "0.0001");
        assert_eq!(py_float(0.00001), "1e-05");
    }

    #[test]
    fn frames_like_lava() {
        let f = Reply::Wait.to_frame();
        assert_eq!(f, b"00000014{\"response\": \"wait\"}".to_vec());
        assert_eq!(
            decode_frame(&f, 100).unwrap().dumps(),
            "{\"response\": \"wait\"}"
        );
        assert_eq!(Reply::Close.to_frame(), Vec::<u8>::new());
    }

    #[test]
    fn bad_frames_are_errors() {
        assert!(matches!(
            parse_header(b"0000zz14", 99),
            Err(FrameError::BadHeader(_))
        ));
        assert!(matches!(
            parse_header(b"FFFFFFFF", 99),
            Err(FrameError::TooLong { .. })
        ));
        assert!(matches!(
            decode_frame(b"0000", 99),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            decode_frame(b"00000005{\"a\"", 99),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            decode_frame(b"00000003{]}", 99),
            Err(FrameError::BadJson(_))
        ));
        assert!(matches!(
            decode_frame(b"00000002\xff\xfe", 99),
            Err(FrameError::NotUtf8)
        ));
        // characters, not bytes
        assert_eq!(body_len("é}".as_bytes(), 2), Ok(Some(3)));
        assert_eq!(body_len("é".as_bytes()[..1].as_ref(), 1), Ok(None));
    }

    #[test]
    fn requests_are_typed() {
        let j = Json::parse(
            br#"{"client_name": 124, "group_name": "g", "role": "r", "hostname": "h",
                 "request": "lava_wait_all", "messageID": "m", "waitrole": "server",
                 "basalt_hold": true, "timeout": 5}"#,
        )
        .unwrap();
        let r = Request::from_json(&j);
        assert_eq!(r.client_name.as_deref(), Some("124"));
        assert!(r.basalt_hold && r.holdable());
        assert_eq!(r.timeout, Some(5.0));
        assert_eq!(
            r.call,
            Call::LavaWaitAll {
                message_id: "m".into(),
                waitrole: Some("server".into())
            }
        );
        let r = Request::from_json(&Json::parse(br#"{"request": "lava_send"}"#).unwrap());
        assert_eq!(r.call, Call::Unknown("lava_send".into()));
    }
}
