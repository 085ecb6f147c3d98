//! Typed reading of YAML nodes that records every problem in a [`Report`] instead of stopping
//! at the first one, so a user sees all the mistakes of a file at once.

use crate::diag::{index, join, Report};
use crate::yaml::{Node, Value};

/// Reads the keys of one mapping, remembering which ones were used so that the rest can be
/// reported as unknown.
pub struct Fields<'n> {
    node: &'n Node,
    pub path: String,
    used: Vec<&'n str>,
    /// LAVA's typing (job files): strings must be strings, and a key given with a `null`
    /// value is an error, not an absent key.
    strict: bool,
    /// Keys read with a `null` value, reported by [`Fields::finish`] when `strict`.
    nulls: Vec<&'n Node>,
}

impl<'n> Fields<'n> {
    /// Starts reading `node` as a mapping; reports an error and returns `None` otherwise.
    pub fn new(r: &mut Report, node: &'n Node, path: &str) -> Option<Fields<'n>> {
        if node.as_map().is_none() {
            r.error(
                node,
                path,
                format!("expected a mapping, found {}", node.kind()),
            );
            return None;
        }
        Some(Fields {
            node,
            path: path.to_string(),
            used: Vec::new(),
            strict: false,
            nulls: Vec::new(),
        })
    }

    /// Like [`Fields::new`], with LAVA's typing of job files: a number is not a string and
    /// `key:` with no value is refused (LAVA validates a present key's `None` against the
    /// key's type).
    pub fn strict(r: &mut Report, node: &'n Node, path: &str) -> Option<Fields<'n>> {
        let mut f = Fields::new(r, node, path)?;
        f.strict = true;
        Some(f)
    }

    /// Whether this mapping is read with LAVA's typing.
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// The mapping itself.
    pub fn node(&self) -> &'n Node {
        self.node
    }

    /// The path of a key of this mapping.
    pub fn sub(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// An optional key; `null` values count as absent (and are an error when `strict`).
    pub fn opt(&mut self, key: &str) -> Option<&'n Node> {
        let v = self.opt_nullable(key)?;
        if v.is_null() {
            if self.strict && !self.nulls.iter().any(|n| std::ptr::eq(*n, v)) {
                self.nulls.push(v);
            }
            return None;
        }
        Some(v)
    }

    /// An optional key whose value may be `null` (where LAVA's schema allows `None`).
    pub fn opt_nullable(&mut self, key: &str) -> Option<&'n Node> {
        let entries = self.node.as_map()?;
        let (k, v) = entries.iter().find(|(k, _)| k.as_str() == Some(key))?;
        if let Some(s) = k.as_str() {
            self.used.push(s);
        }
        Some(v)
    }

    /// Whether a key is present at all (even with a null value).
    pub fn has(&self, key: &str) -> bool {
        self.node
            .as_map()
            .is_some_and(|m| m.iter().any(|(k, _)| k.as_str() == Some(key)))
    }

    /// A required key: reports `required key 'x' not provided` at the mapping when missing.
    pub fn req(&mut self, r: &mut Report, key: &str) -> Option<&'n Node> {
        let v = self.opt(key);
        if v.is_none() {
            r.error(self.node, &self.sub(key), "required key not provided");
        }
        v
    }

    pub fn opt_str(&mut self, r: &mut Report, key: &str) -> Option<String> {
        let path = self.sub(key);
        let strict = self.strict;
        self.opt(key).and_then(|n| text(r, n, &path, strict))
    }

    pub fn req_str(&mut self, r: &mut Report, key: &str) -> Option<String> {
        let path = self.sub(key);
        let strict = self.strict;
        self.req(r, key).and_then(|n| text(r, n, &path, strict))
    }

    pub fn opt_bool(&mut self, r: &mut Report, key: &str) -> Option<bool> {
        let path = self.sub(key);
        self.opt(key).and_then(|n| boolean(r, n, &path))
    }

    pub fn opt_int(&mut self, r: &mut Report, key: &str, min: i64, max: i64) -> Option<i64> {
        let path = self.sub(key);
        self.opt(key).and_then(|n| integer(r, n, &path, min, max))
    }

    /// A number checked only by LAVA's `Range` (Python: booleans are integers, floats
    /// compare too); a fraction is cut to its integer part.
    pub fn opt_range(&mut self, r: &mut Report, key: &str, min: i64, max: i64) -> Option<i64> {
        let path = self.sub(key);
        let n = self.opt(key)?;
        let v = match n.value {
            Value::Int(i) => i as f64,
            Value::Bool(b) => f64::from(u8::from(b)),
            Value::Float(x) if x.is_finite() => x,
            _ => {
                r.error(n, &path, format!("expected a number, found {}", n.kind()));
                return None;
            }
        };
        if v < min as f64 || v > max as f64 {
            r.error(n, &path, format!("{v} is out of range {min}..{max}"));
            return None;
        }
        Some(v as i64)
    }

    /// A string or a list of strings (LAVA accepts both for prompts, soft_reboot, ...).
    pub fn opt_str_list(&mut self, r: &mut Report, key: &str) -> Option<Vec<String>> {
        let path = self.sub(key);
        let strict = self.strict;
        self.opt(key).map(|n| text_or_list(r, n, &path, strict))
    }

    /// A list of strings, where LAVA takes only a list (`role`, `skip_install`, `tags`).
    pub fn opt_list_of_str(&mut self, r: &mut Report, key: &str) -> Option<Vec<String>> {
        let path = self.sub(key);
        let strict = self.strict;
        let n = self.opt(key)?;
        if n.as_seq().is_none() {
            r.error(n, &path, format!("expected a list, found {}", n.kind()));
            return None;
        }
        Some(text_or_list(r, n, &path, strict))
    }

    /// The path of the key whose value is `value`.
    fn path_of(&self, value: &Node) -> String {
        self.node
            .as_map()
            .unwrap_or(&[])
            .iter()
            .find(|(_, v)| std::ptr::eq(v, value))
            .and_then(|(k, _)| k.as_str())
            .map(|k| self.sub(k))
            .unwrap_or_else(|| self.path.clone())
    }

    /// Reports keys that were never read as warnings (LAVA's submission gate is loose).
    pub fn finish(self, r: &mut Report, what: &str) {
        self.finish_with(r, what, &[]);
    }

    /// Like [`Fields::finish`], also accepting `known` keys that are read elsewhere.
    pub fn finish_with(self, r: &mut Report, what: &str, known: &[&str]) {
        for n in &self.nulls {
            r.error(n, &self.path_of(n), "a value is required here (found null)");
        }
        let Some(entries) = self.node.as_map() else {
            return;
        };
        for (k, _) in entries {
            match k.as_str() {
                Some(s) if self.used.contains(&s) || known.contains(&s) => {}
                Some(s) => r.warn(
                    k,
                    &join(&self.path, s),
                    format!("unknown key in {what}; ignored"),
                ),
                None => r.error(
                    k,
                    &self.path,
                    format!("keys must be strings, found {}", k.kind()),
                ),
            }
        }
    }
}

/// A string scalar. Numbers are accepted and turned into text (YAML users write `version: 1.0`).
pub fn string(r: &mut Report, n: &Node, path: &str) -> Option<String> {
    match &n.value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(_) | Value::Float(_) => n.scalar_text(),
        _ => {
            r.error(n, path, format!("expected a string, found {}", n.kind()));
            None
        }
    }
}

/// A string; with `strict` (LAVA's `str`), numbers are refused instead of turned into text.
pub fn text(r: &mut Report, n: &Node, path: &str, strict: bool) -> Option<String> {
    match &n.value {
        Value::Str(s) => Some(s.clone()),
        _ if !strict => string(r, n, path),
        _ => {
            r.error(n, path, format!("expected a string, found {}", n.kind()));
            None
        }
    }
}

/// A string or a list of strings, with [`text`]'s typing.
pub fn text_or_list(r: &mut Report, n: &Node, path: &str, strict: bool) -> Vec<String> {
    match &n.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| text(r, item, &index(path, i), strict))
            .collect(),
        _ => text(r, n, path, strict).into_iter().collect(),
    }
}

pub fn boolean(r: &mut Report, n: &Node, path: &str) -> Option<bool> {
    match n.value {
        Value::Bool(b) => Some(b),
        _ => {
            r.error(
                n,
                path,
                format!("expected true or false, found {}", n.kind()),
            );
            None
        }
    }
}

pub fn integer(r: &mut Report, n: &Node, path: &str, min: i64, max: i64) -> Option<i64> {
    match n.value {
        Value::Int(i) if (min..=max).contains(&i) => Some(i),
        Value::Int(i) => {
            r.error(n, path, format!("{i} is out of range {min}..{max}"));
            None
        }
        _ => {
            r.error(n, path, format!("expected an integer, found {}", n.kind()));
            None
        }
    }
}

pub fn str_or_list(r: &mut Report, n: &Node, path: &str) -> Vec<String> {
    match &n.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| string(r, item, &index(path, i)))
            .collect(),
        _ => string(r, n, path).into_iter().collect(),
    }
}

/// A list; reports an error and returns an empty slice for anything else.
pub fn list<'n>(r: &mut Report, n: &'n Node, path: &str) -> &'n [Node] {
    match n.as_seq() {
        Some(items) => items,
        None => {
            r.error(n, path, format!("expected a list, found {}", n.kind()));
            &[]
        }
    }
}

/// A mapping of string keys to string values (secrets, headers).
pub fn str_map(r: &mut Report, n: &Node, path: &str) -> Vec<(String, String)> {
    let Some(entries) = n.as_map() else {
        r.error(n, path, format!("expected a mapping, found {}", n.kind()));
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|(k, v)| {
            let key = string(r, k, path)?;
            let val = string(r, v, &join(path, &key))?;
            Some((key, val))
        })
        .collect()
}

/// The keys of a mapping in order, with their nodes.
pub fn entries<'n>(r: &mut Report, n: &'n Node, path: &str) -> Vec<(String, &'n Node, &'n Node)> {
    let Some(entries) = n.as_map() else {
        r.error(n, path, format!("expected a mapping, found {}", n.kind()));
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|(k, v)| match k.scalar_text() {
            Some(key) => Some((key, k, v)),
            None => {
                r.error(k, path, format!("keys must be strings, found {}", k.kind()));
                None
            }
        })
        .collect()
}

/// Checks that `value` is one of `allowed`, with a message listing them.
pub fn one_of(
    r: &mut Report,
    n: &Node,
    path: &str,
    what: &str,
    value: &str,
    allowed: &[&str],
) -> bool {
    if allowed.contains(&value) {
        return true;
    }
    r.error(
        n,
        path,
        format!(
            "unknown {what} '{value}'; expected one of {}",
            allowed.join(", ")
        ),
    );
    false
}
