//! Builds [`Node`] trees from `yaml-rust2` parser events, with anchors, aliases, merge keys and
//! explicit tags, iteratively (no recursion, so deep input cannot overflow the stack) and with a
//! bound on alias expansion (so a "billion laughs" document is an error, not an OOM).

use super::{resolve_plain, Mark, Node, Value};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

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
        Node::null()
    } else {
        docs.swap_remove(0)
    })
}

/// Loads every document of a stream.
pub fn load_all(src: &str) -> Result<Vec<Node>, LoadError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(src);
    let res = parser.load(&mut builder, true);
    if let Some(err) = builder.error {
        return Err(err);
    }
    if let Err(e) = res {
        let m = e.marker();
        return Err(LoadError {
            mark: Mark {
                line: m.line() as u32,
                col: m.col() as u32 + 1,
            },
            message: e.info().to_string(),
        });
    }
    Ok(builder.docs)
}

enum Frame {
    Seq(Node, usize),
    Map(Node, usize, Option<Node>),
}

#[derive(Default)]
struct Builder {
    docs: Vec<Node>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    error: Option<LoadError>,
}

fn mark_of(m: Marker) -> Mark {
    Mark {
        line: m.line() as u32,
        col: m.col() as u32 + 1,
    }
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

fn resolve_tagged(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    let plain = style == TScalarStyle::Plain;
    let Some(tag) = tag else {
        return Ok(if plain {
            resolve_plain(&text)
        } else {
            Value::Str(text)
        });
    };
    if (tag.handle == "!" && tag.suffix.is_empty()) || (tag.handle.is_empty() && tag.suffix == "!")
    {
        // The non-specific tag `! "123"`: LAVA's log writer (libyaml) marks typed scalars this way.
        return Ok(resolve_plain(&text));
    }
    if tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!" {
        return match tag.suffix.as_str() {
            "str" => Ok(Value::Str(text)),
            "int" | "float" | "bool" | "null" => {
                let v = resolve_plain(&text);
                let ok = matches!(
                    (&v, tag.suffix.as_str()),
                    (Value::Int(_), "int")
                        | (Value::Float(_), "float")
                        | (Value::Int(_), "float")
                        | (Value::Bool(_), "bool")
                        | (Value::Null, "null")
                );
                if !ok {
                    return Err(format!("'{text}' is not a valid !!{}", tag.suffix));
                }
                Ok(match (v, tag.suffix.as_str()) {
                    (Value::Int(i), "float") => Value::Float(i as f64),
                    (v, _) => v,
                })
            }
            other => Err(format!("unsupported tag !!{other}")),
        };
    }
    Err(format!("unsupported tag {}{}", tag.handle, tag.suffix))
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

    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
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

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, marker: Marker) {
        if self.error.is_some() {
            return;
        }
        let mark = mark_of(marker);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                self.nodes += 1;
                match resolve_tagged(text, style, tag.as_ref()) {
                    Ok(value) => self.push_value(Node { value, mark }, anchor),
                    Err(msg) => self.fail(mark, msg),
                }
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                self.nodes += 1;
                if self.stack.len() >= MAX_DEPTH {
                    return self.fail(mark, format!("nesting deeper than {MAX_DEPTH} levels"));
                }
                if matches!(ev, Event::SequenceStart(..)) {
                    self.stack
                        .push(Frame::Seq(Node::new(Value::Seq(Vec::new())), anchor));
                } else {
                    self.stack
                        .push(Frame::Map(Node::new(Value::Map(Vec::new())), anchor, None));
                }
                if let Some(Frame::Seq(n, _) | Frame::Map(n, _, _)) = self.stack.last_mut() {
                    n.mark = mark;
                }
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq(node, anchor)) | Some(Frame::Map(node, anchor, _)) => {
                    self.push_value(node, anchor)
                }
                None => self.fail(mark, "unbalanced collection end"),
            },
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(node) => {
                    let mut node = node.clone();
                    self.nodes += count_nodes(&node);
                    if self.nodes > MAX_NODES {
                        return self.fail(mark, "aliases expand to too many nodes");
                    }
                    node.mark = mark;
                    self.push_value(node, 0)
                }
                None => self.fail(mark, "alias to an unknown anchor"),
            },
            Event::DocumentStart => self.anchors.clear(),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        if self.nodes > MAX_NODES {
            self.fail(mark, "document has too many nodes");
        }
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
