//! Writes [`Node`] trees as YAML that PyYAML's `safe_load` reads back to the same data.

use super::{format_float, resolve_plain, Node, Value};
use std::fmt::Write;

/// Quotes a string if a YAML reader would not read it back as the same plain string.
pub fn quote_str(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_string()
    } else {
        double_quoted(s)
    }
}

fn is_plain_safe(s: &str) -> bool {
    if s.is_empty() || s.len() > 200 {
        return false;
    }
    if !matches!(resolve_plain(s), Value::Str(_)) {
        return false;
    }
    let first = s.as_bytes()[0];
    if b"-?:,[]{}#&*!|>'\"%@` ".contains(&first) {
        return false;
    }
    if s.ends_with(' ') || s.ends_with(':') {
        return false;
    }
    if s.contains(": ") || s.contains(" #") {
        return false;
    }
    s.chars()
        .all(|c| c.is_ascii_graphic() && !matches!(c, '{' | '}' | '[' | ']' | ',') || c == ' ')
}

/// True for a character that a double-quoted scalar must not hold as it is: what YAML 1.1
/// does not allow in a stream (C0 and C1 controls but tab, LF, CR and NEL; DEL; U+FFFE,
/// U+FFFF; surrogates cannot be in a `str`), what would fold or end the line (LF, CR, NEL,
/// LS, PS), the quote and the backslash, tab (so a record stays one visible line), the BOM
/// (libyaml refuses it inside a stream), and the raw-byte characters U+EF80–U+EFFF (see
/// `basalt_hal::console::text`), shown as escapes so that they are visible in the file.
#[inline]
fn needs_escape(c: char) -> bool {
    match c {
        '\x20'..='\x7e' => c == '"' || c == '\\',
        '\u{a0}'..='\u{2027}' => false,
        '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}' => true,
        '\u{ef80}'..='\u{efff}' => true,
        c => (c as u32) < 0xa0,
    }
}

fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_double_quoted(s, &mut out);
    out
}

/// Appends `s` as a double-quoted YAML scalar that PyYAML (pure and libyaml) reads back as
/// exactly `s`: every character of [`needs_escape`] is written as an escape.
fn push_double_quoted(s: &str, out: &mut String) {
    out.push('"');
    let mut from = 0;
    for (i, c) in s.char_indices() {
        if !needs_escape(c) {
            continue;
        }
        out.push_str(&s[from..i]);
        from = i + c.len_utf8();
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{1b}' => out.push_str("\\e"),
            '\0' => out.push_str("\\0"),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
    }
    out.push_str(&s[from..]);
    out.push('"');
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format_float(*f),
        Value::Str(s) => quote_str(s),
        Value::Seq(_) | Value::Map(_) => unreachable_collection(),
    }
}

fn unreachable_collection() -> String {
    // Collections are handled by the callers; keep a valid YAML value just in case.
    "null".into()
}

/// Writes a node as a flow-style YAML value on one line: `{"a": 1, "b": [x, y]}`.
/// Strings are always double-quoted, as LAVA's log writer does.
pub fn emit_flow(node: &Node, out: &mut String) {
    match &node.value {
        Value::Str(s) => push_double_quoted(s, out),
        Value::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                emit_flow(item, out);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                emit_flow(k, out);
                out.push_str(": ");
                emit_flow(v, out);
            }
            out.push('}');
        }
        other => out.push_str(&scalar(other)),
    }
}

/// Writes a node as a block-style YAML document.
pub fn emit_document(node: &Node) -> String {
    let mut out = String::new();
    emit_block(node, 0, &mut out);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn is_empty_collection(v: &Value) -> bool {
    matches!(v, Value::Seq(s) if s.is_empty()) || matches!(v, Value::Map(m) if m.is_empty())
}

fn emit_inline_or_block(value: &Node, indent: usize, out: &mut String) {
    match &value.value {
        Value::Seq(s) if !s.is_empty() => {
            out.push('\n');
            emit_block(value, indent, out);
        }
        Value::Map(m) if !m.is_empty() => {
            out.push('\n');
            emit_block(value, indent + 2, out);
        }
        v if is_empty_collection(v) => {
            out.push(' ');
            out.push_str(if matches!(v, Value::Seq(_)) {
                "[]"
            } else {
                "{}"
            });
            out.push('\n');
        }
        v => {
            out.push(' ');
            out.push_str(&scalar(v));
            out.push('\n');
        }
    }
}

fn emit_block(node: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match &node.value {
        Value::Map(entries) if !entries.is_empty() => {
            for (k, v) in entries {
                out.push_str(&pad);
                let key = match &k.value {
                    Value::Seq(_) | Value::Map(_) => {
                        let mut s = String::new();
                        emit_flow(k, &mut s);
                        s
                    }
                    other => scalar(other),
                };
                out.push_str(&key);
                out.push(':');
                emit_inline_or_block(v, indent, out);
            }
        }
        Value::Seq(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                match &item.value {
                    Value::Map(m) if !m.is_empty() => {
                        // First entry on the dash line, the rest indented under it.
                        let mut inner = String::new();
                        emit_block(item, indent + 2, &mut inner);
                        out.push(' ');
                        out.push_str(&inner[indent + 2..]);
                    }
                    Value::Seq(s) if !s.is_empty() => {
                        out.push('\n');
                        emit_block(item, indent + 2, out);
                    }
                    _ => emit_inline_or_block(item, indent, out),
                }
            }
        }
        v if is_empty_collection(v) => {
            out.push_str(&pad);
            out.push_str(if matches!(v, Value::Seq(_)) {
                "[]"
            } else {
                "{}"
            });
            out.push('\n');
        }
        v => {
            out.push_str(&pad);
            out.push_str(&scalar(v));
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::load;
    use super::*;

    #[test]
    fn round_trips() {
        let src = "a: 1\nb:\n- x: 'yes'\n  y: [1, 2]\n  z: {}\n- - nested\n  - ''\nc: \"line\\nbreak: #\"\nd: 0x10\ne: ~\n";
        let doc = load(src).unwrap();
        let text = emit_document(&doc);
        let back = load(&text).unwrap();
        assert!(doc.data_eq(&back), "{text}");
        let mut flow = String::new();
        emit_flow(&doc, &mut flow);
        assert!(load(&flow).unwrap().data_eq(&doc), "{flow}");
    }

    #[test]
    fn escapes_what_yaml_forbids_and_reads_back_the_same() {
        let mut flow = String::new();
        emit_flow(
            &Node::str("\0\u{1}\t\n\r\u{1b}\u{7f}\u{85}\u{9f}\u{a0}\u{2028}\u{feff}\u{fffe}\u{ffff}\u{ef80}\"\\é"),
            &mut flow,
        );
        assert_eq!(
            flow,
            "\"\\0\\x01\\t\\n\\r\\e\\x7f\\x85\\x9f\u{a0}\\u2028\\ufeff\\ufffe\\uffff\\uef80\\\"\\\\é\""
        );
        for cp in (0u32..0x3000).chain(0xd000..0x11000) {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let s = format!("x{c}y{c}");
            let mut flow = String::new();
            emit_flow(&Node::str(s.clone()), &mut flow);
            assert!(!flow.contains('\n') && !flow.contains('\r'), "{cp:#x}");
            let back = load(&flow).unwrap();
            assert_eq!(back.as_str(), Some(s.as_str()), "{cp:#x}: {flow}");
            assert_eq!(
                load(&emit_document(&Node::str(s.clone())))
                    .unwrap()
                    .as_str(),
                Some(s.as_str())
            );
        }
    }

    #[test]
    fn quotes_what_would_change() {
        assert_eq!(quote_str("yes"), "\"yes\"");
        assert_eq!(quote_str("1.5"), "\"1.5\"");
        assert_eq!(quote_str("deploy-images"), "deploy-images");
        assert_eq!(quote_str("a: b"), "\"a: b\"");
        assert_eq!(quote_str(""), "\"\"");
    }
}
