//! A YAML document tree that remembers where every node came from.
//!
//! Jobs, device dictionaries and test definitions are validated with errors that point at
//! `file:line:column`, and several errors are reported at once. serde-based YAML crates stop at
//! the first error and forget positions once deserialised, so we build our own small tree from
//! `yaml-rust2`'s event parser (which reports marks) and validate it by hand in `job::parse`.
//!
//! Scalars are resolved as PyYAML's `safe_load` resolves them (YAML 1.1: `yes`/`no`/`on`/`off`
//! are booleans, `~` is null, `0x1F` is an int), because LAVA's files are written for PyYAML.

mod emit;
mod load;

pub use emit::{emit_document, emit_flow, quote_str};
pub use load::{load, load_all, LoadError};

use std::fmt;

/// A position in a YAML source: 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mark {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One node of a YAML document with its position.
#[derive(Clone, Debug)]
pub struct Node {
    pub value: Value,
    pub mark: Mark,
}

/// The value of a node, resolved the way PyYAML's safe loader resolves it.
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Mapping entries in document order (LAVA relies on order in some places).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A node without a source position (built by code, not read from a file).
    pub fn new(value: Value) -> Node {
        Node {
            value,
            mark: Mark::default(),
        }
    }

    pub fn str(s: impl Into<String>) -> Node {
        Node::new(Value::Str(s.into()))
    }

    pub fn null() -> Node {
        Node::new(Value::Null)
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.value {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Looks up a string key in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The key node of a string key in a mapping (where diagnostics about a block value
    /// point: the value itself starts on a later line).
    pub fn key_node(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k)
    }

    /// Follows a path of string keys through nested mappings.
    pub fn path(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |node, key| node.get(key))
    }

    /// The scalar as text, as Python's `str()` would print it (for substitution into commands).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(format_float(*f)),
            Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
            Value::Null => None,
            Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// A short name of the node's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Equality as data, the way Python compares loaded YAML: mappings ignore key order,
    /// positions are ignored, `1 == 1.0` and `True == 1` as in Python.
    pub fn data_eq(&self, other: &Node) -> bool {
        use Value::*;
        match (&self.value, &other.value) {
            (Null, Null) => true,
            (Str(a), Str(b)) => a == b,
            (Seq(a), Seq(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.data_eq(y)),
            (Map(a), Map(b)) => {
                a.len() == b.len()
                    && a.iter().all(|(ka, va)| {
                        b.iter()
                            .find(|(kb, _)| ka.data_eq(kb))
                            .is_some_and(|(_, vb)| va.data_eq(vb))
                    })
            }
            (a, b) => match (numeric(a), numeric(b)) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            },
        }
    }
}

fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// Formats a float as Python's `repr` does for the common cases (`5.0`, `0.25`).
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        ".nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf" } else { "-.inf" }.into()
    } else if f == f.trunc() && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Resolves a plain (unquoted) scalar as PyYAML's SafeLoader does (YAML 1.1 core rules).
pub fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::Bool(true)
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false)
        }
        _ => {}
    }
    if let Some(i) = parse_int(s) {
        return Value::Int(i);
    }
    if let Some(f) = parse_float(s) {
        return Value::Float(f);
    }
    Value::Str(s.to_string())
}

fn parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let first = *body.as_bytes().first()?;
    if !first.is_ascii_digit() {
        return None;
    }
    let cleaned: String = body.chars().filter(|&c| c != '_').collect();
    let v = if let Some(hex) = cleaned.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(bin) = cleaned.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()?
    } else if cleaned.len() > 1 && cleaned.starts_with('0') {
        i64::from_str_radix(&cleaned[1..], 8).ok()?
    } else if cleaned.bytes().all(|b| b.is_ascii_digit()) {
        cleaned.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    // YAML 1.1 floats need a dot: [-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+][0-9]+)?
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    let digits_start = i;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    if i >= b.len() || b[i] != b'.' {
        return None;
    }
    if i > digits_start && b[digits_start] == b'_' {
        return None;
    }
    i += 1;
    let frac_start = i;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    if frac_start == i && digits_start + 1 == frac_start {
        // just "." or "-."
        return None;
    }
    if i < b.len() {
        if b[i] != b'e' && b[i] != b'E' {
            return None;
        }
        i += 1;
        if i >= b.len() || !matches!(b[i], b'-' | b'+') {
            return None;
        }
        i += 1;
        if i >= b.len() || !b[i..].iter().all(u8::is_ascii_digit) {
            return None;
        }
    }
    let cleaned: String = s.chars().filter(|&c| c != '_').collect();
    cleaned.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_pyyaml() {
        assert!(matches!(resolve_plain("yes"), Value::Bool(true)));
        assert!(matches!(resolve_plain("Off"), Value::Bool(false)));
        assert!(matches!(resolve_plain("~"), Value::Null));
        assert!(matches!(resolve_plain("0x1F"), Value::Int(31)));
        assert!(matches!(resolve_plain("010"), Value::Int(8)));
        assert!(matches!(resolve_plain("-12"), Value::Int(-12)));
        assert!(matches!(resolve_plain("1.5"), Value::Float(f) if f == 1.5));
        assert!(matches!(resolve_plain("1e5"), Value::Str(_)));
        assert!(matches!(resolve_plain("1.0e+5"), Value::Float(_)));
        assert!(matches!(
            resolve_plain("0x82000000"),
            Value::Int(0x8200_0000)
        ));
        assert!(matches!(resolve_plain("ttyS0,115200"), Value::Str(_)));
        assert!(matches!(resolve_plain("."), Value::Str(_)));
        assert!(matches!(resolve_plain("1.2.3"), Value::Str(_)));
    }
}
