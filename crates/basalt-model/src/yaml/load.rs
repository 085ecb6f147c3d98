//! Builds [`Node`] trees from libyaml's events (through `libyaml-safer`, a safe port of the C
//! library that PyYAML's `CSafeLoader` uses, so basalt accepts exactly what LAVA's loader
//! accepts), with anchors, aliases, merge keys and explicit tags. Iterative (no recursion, so
//! deep input cannot overflow the stack) and with a bound on alias expansion (so a "billion
//! laughs" document is an error, not an OOM).

use super::{resolve_plain, Mark, Node, Value};
use libyaml_safer::{EventData, Parser, ScalarStyle};
use std::collections::HashMap;

/// Most nodes a document may expand to through aliases.
const MAX_NODES: usize = 1_000_000;
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 512;

/// A document that is not well-formed YAML.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{mark}: {message}")]
pub struct LoadError {
    pub mark: Mark,
    pub message: String,
}

/// Loads the first document of `src` (an empty stream is `null`).
pub fn load(src: &str) -> Result<Node, LoadError> {
    let mut docs = load_all(src)?;
    Ok(if docs.is_empty() {
        Node {
            value: Value::Null,
            mark: Mark { line: 1, col: 1 },
        }
    } else {
        docs.swap_remove(0)
    })
}

fn mark_of(m: libyaml_safer::Mark) -> Mark {
    Mark {
        line: u32::try_from(m.line + 1).unwrap_or(u32::MAX),
        col: u32::try_from(m.column + 1).unwrap_or(u32::MAX),
    }
}

/// Loads every document of a stream.
///
/// `libyaml-safer` still has a few `panic!`s on malformed input (a block scalar at the very end
/// of the input, a `\ud800` escape) where C libyaml reports an error; the fuzz test finds them.
/// Bad input must never crash basalt, so a panic inside the parser is caught here and reported
/// as a load error at the last position the parser reached.
pub fn load_all(src: &str) -> Result<Vec<Node>, LoadError> {
    let mut last = Mark::default();
    let outcome = quiet_catch_unwind(|| load_events(src, &mut last));
    match outcome {
        Ok(result) => result,
        Err(()) => Err(LoadError {
            mark: last,
            message: "malformed YAML the parser cannot read".into(),
        }),
    }
}

fn load_events(src: &str, last: &mut Mark) -> Result<Vec<Node>, LoadError> {
    let mut bytes = src.as_bytes();
    let mut parser = Parser::new();
    parser.set_input_string(&mut bytes);
    let mut builder = Builder::default();
    for event in &mut parser {
        let event = event.map_err(|e| {
            let mark = e.problem_mark().map(mark_of).unwrap_or(*last);
            let message = match e.context() {
                Some(ctx) => format!("{} {}", e.problem(), ctx),
                None => e.problem().to_string(),
            };
            LoadError { mark, message }
        })?;
        *last = mark_of(event.start_mark);
        builder.on_event(event.data, *last);
        if let Some(err) = builder.error.take() {
            return Err(err);
        }
    }
    Ok(builder.docs)
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err(())` without printing the panic message (the error is
/// reported to the user as a load error instead).
fn quiet_catch_unwind<T>(f: impl FnOnce() -> T) -> Result<T, ()> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    r.map_err(|_| ())
}

enum Frame {
    Seq(Node, Option<String>),
    Map(Node, Option<String>, Option<Node>),
}

#[derive(Default)]
struct Builder {
    docs: Vec<Node>,
    stack: Vec<Frame>,
    anchors: HashMap<String, Node>,
    nodes: usize,
    error: Option<LoadError>,
}

fn count_nodes(n: &Node) -> usize {
    let mut total = 0;
    let mut todo = vec![n];
    while let Some(n) = todo.pop() {
        total += 1;
        match &n.value {
            Value::Seq(s) => todo.extend(s.iter()),
            Value::Map(m) => m.iter().for_each(|(k, v)| {
                todo.push(k);
                todo.push(v);
            }),
            _ => {}
        }
    }
    total
}

const CORE: &str = "tag:yaml.org,2002:";

fn resolve_tagged(text: String, style: ScalarStyle, tag: Option<&str>) -> Result<Value, String> {
    let plain = style == ScalarStyle::Plain;
    let Some(tag) = tag else {
        return Ok(if plain {
            resolve_plain(&text)
        } else {
            Value::Str(text)
        });
    };
    if tag == "!" {
        // The non-specific tag `! "123"`: LAVA's log writer (libyaml) marks typed scalars this way.
        return Ok(resolve_plain(&text));
    }
    let Some(suffix) = tag.strip_prefix(CORE) else {
        return Err(format!("unsupported tag {tag}"));
    };
    match suffix {
        "str" => Ok(Value::Str(text)),
        "int" | "float" | "bool" | "null" => {
            let v = resolve_plain(&text);
            match (v, suffix) {
                (v @ Value::Int(_), "int") | (v @ Value::Float(_), "float") => Ok(v),
                (v @ Value::Bool(_), "bool") | (v @ Value::Null, "null") => Ok(v),
                (Value::Int(i), "float") => Ok(Value::Float(i as f64)),
                _ => Err(format!("'{text}' is not a valid !!{suffix}")),
            }
        }
        other => Err(format!("unsupported tag !!{other}")),
    }
}

impl Builder {
    fn fail(&mut self, mark: Mark, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(LoadError {
                mark,
                message: message.into(),
            });
        }
    }

    fn push_value(&mut self, node: Node, anchor: Option<String>) {
        if let Some(a) = anchor {
            self.anchors.insert(a, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq(seq, _)) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some(Frame::Map(map, _, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    if let Value::Map(entries) = &mut map.value {
                        insert_entry(entries, k, node);
                    }
                }
            },
        }
    }

    fn open(&mut self, frame: Frame, mark: Mark) {
        self.nodes += 1;
        if self.stack.len() >= MAX_DEPTH {
            return self.fail(mark, format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        self.stack.push(frame);
    }

    fn on_event(&mut self, ev: EventData, mark: Mark) {
        match ev {
            EventData::Scalar {
                anchor,
                tag,
                value,
                style,
                ..
            } => {
                self.nodes += 1;
                match resolve_tagged(value, style, tag.as_deref()) {
                    Ok(value) => self.push_value(Node { value, mark }, anchor),
                    Err(msg) => self.fail(mark, msg),
                }
            }
            EventData::SequenceStart { anchor, .. } => self.open(
                Frame::Seq(
                    Node {
                        value: Value::Seq(Vec::new()),
                        mark,
                    },
                    anchor,
                ),
                mark,
            ),
            EventData::MappingStart { anchor, .. } => self.open(
                Frame::Map(
                    Node {
                        value: Value::Map(Vec::new()),
                        mark,
                    },
                    anchor,
                    None,
                ),
                mark,
            ),
            EventData::SequenceEnd | EventData::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq(node, anchor)) | Some(Frame::Map(node, anchor, _)) => {
                    self.push_value(node, anchor)
                }
                None => self.fail(mark, "unbalanced collection end"),
            },
            EventData::Alias { anchor } => match self.anchors.get(&anchor) {
                Some(node) => {
                    let mut node = node.clone();
                    self.nodes += count_nodes(&node);
                    if self.nodes > MAX_NODES {
                        return self.fail(mark, "aliases expand to too many nodes");
                    }
                    node.mark = mark;
                    self.push_value(node, None)
                }
                None => self.fail(mark, format!("alias to an unknown anchor '{anchor}'")),
            },
            EventData::DocumentStart { .. } => self.anchors.clear(),
            EventData::StreamStart { .. }
            | EventData::StreamEnd
            | EventData::DocumentEnd { .. } => {}
        }
        if self.nodes > MAX_NODES {
            self.fail(mark, "document has too many nodes");
        }
    }
}

/// Inserts a mapping entry; a repeated key replaces the earlier value (PyYAML's behaviour), and
/// the merge key `<<` copies entries that the mapping does not define itself.
fn insert_entry(entries: &mut Vec<(Node, Node)>, key: Node, value: Node) {
    if key.as_str() == Some("<<") {
        let sources: Vec<Node> = match value.value {
            Value::Map(_) => vec![value],
            Value::Seq(items) => items,
            _ => return,
        };
        for src in sources {
            if let Value::Map(src_entries) = src.value {
                for (k, v) in src_entries {
                    if !entries.iter().any(|(ek, _)| ek.data_eq(&k)) {
                        entries.push((k, v));
                    }
                }
            }
        }
        return;
    }
    if let Some(slot) = entries.iter_mut().find(|(k, _)| k.data_eq(&key)) {
        slot.1 = value;
    } else {
        entries.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_and_types() {
        let doc = load("a: 1\nb:\n  - x\n  - 'yes'\n  - yes\n").unwrap();
        let b = doc.get("b").unwrap();
        assert_eq!(b.mark.line, 3);
        let items = b.as_seq().unwrap();
        assert_eq!(items[1].as_str(), Some("yes"));
        assert_eq!(items[2].as_bool(), Some(true));
        assert_eq!(items[0].mark, Mark { line: 3, col: 5 });
        assert_eq!(doc.get("a").unwrap().as_i64(), Some(1));
    }

    #[test]
    fn anchors_merge_and_tags() {
        let doc =
            load("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\nt: ! \"5\"\nf: !!float \"5\"\n")
                .unwrap();
        let d = doc.get("d").unwrap();
        assert_eq!(d.get("x").unwrap().as_i64(), Some(1));
        assert_eq!(d.get("y").unwrap().as_i64(), Some(3));
        assert_eq!(doc.get("t").unwrap().as_i64(), Some(5));
        assert!(matches!(doc.get("f").unwrap().value, Value::Float(f) if f == 5.0));
    }

    #[test]
    fn errors_have_positions() {
        let err = load("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.mark.line >= 1, "{err}");
        let err = load("a: *nothing\n").unwrap_err();
        assert!(
            err.message.contains("anchor") || err.message.contains("alias"),
            "{err}"
        );
    }

    #[test]
    fn parser_panics_become_errors() {
        assert!(load("a: |\n  x").is_ok() || load("a: |\n  x").is_err());
        let err = load("k: \"\\ud800\"\n").err();
        if let Some(e) = err {
            assert!(e.mark.line >= 1, "{e}");
        }
    }

    #[test]
    fn laughs_are_bounded() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            s.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(load(&s).is_err());
    }
}
