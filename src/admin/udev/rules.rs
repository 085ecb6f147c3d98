//! A parser of udev rules files (udev(7)): rules of `KEY[{attr}] OP "value"`, operators
//! `==`, `!=`, `=`, `+=`, `-=`, `:=`, `#` comment lines, `\` line continuation, errors with
//! line and column.
//!
//! Hand-written because there is nothing to reuse: `udevadm verify` exists only from
//! systemd 253 (Debian 12 has 252), and no crate parses udev's rules. It follows systemd 252's
//! reader (`udev-rules.c`): leading blanks are skipped, a line whose first other character is
//! `#` is a comment (also inside a continued rule; a `#` after a key is an error, as udev
//! drops such a rule), a line ending in `\` continues on the next line, keys are separated by
//! commas and/or blanks, a value is double-quoted (`\"` is a quote, other backslashes are
//! kept: they reach udev's patterns) or `e"..."` with C escapes. Keys, their `{attr}` and
//! the operators each takes are those udev 252 accepts.

use std::fmt;

/// A rule's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `==`: the key matches the value.
    Match,
    /// `!=`: the key does not match the value.
    NoMatch,
    /// `=`: assigns the value.
    Assign,
    /// `+=`: adds the value to a list.
    Add,
    /// `-=`: removes the value from a list.
    Remove,
    /// `:=`: assigns the value, final: later rules cannot change it.
    AssignFinal,
}

impl Op {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Match => "==",
            Op::NoMatch => "!=",
            Op::Assign => "=",
            Op::Add => "+=",
            Op::Remove => "-=",
            Op::AssignFinal => ":=",
        }
    }

    /// `==` or `!=`.
    pub fn is_match(self) -> bool {
        matches!(self, Op::Match | Op::NoMatch)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `KEY{attr}OP"value"` of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// `SUBSYSTEM`, `ATTRS`, `SYMLINK`, ...
    pub name: String,
    /// The `{attr}` of `ATTRS{idVendor}`, `ENV{ID_PATH}`.
    pub attr: Option<String>,
    /// The operator.
    pub op: Op,
    /// The value, unquoted (`\"` unescaped; `e"..."` escapes decoded).
    pub value: String,
    /// 1-based line of the key's first character.
    pub line: usize,
    /// 1-based column of the key's first character.
    pub column: usize,
}

/// One rule: its keys, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// 1-based line where the rule starts.
    pub line: usize,
    /// The keys.
    pub keys: Vec<Key>,
}

/// Why a rules file does not parse: the first error, where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct RulesError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Whether a key takes an `{attr}`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Attr {
    No,
    Optional,
    Required,
}

const MATCH: &[Op] = &[Op::Match, Op::NoMatch];
const MATCH_OR_SET: &[Op] = &[Op::Match, Op::NoMatch, Op::Assign, Op::Add, Op::AssignFinal];
const EVERY: &[Op] = &[
    Op::Match,
    Op::NoMatch,
    Op::Assign,
    Op::Add,
    Op::Remove,
    Op::AssignFinal,
];
const SET: &[Op] = &[Op::Assign, Op::Add, Op::AssignFinal];
const ASSIGN: &[Op] = &[Op::Assign];

/// udev 252's keys: the `{attr}` each takes and the operators it accepts (operators udev
/// accepts with a warning, e.g. `PROGRAM="..."`, are accepted).
const KEYS: &[(&str, Attr, &[Op])] = &[
    ("ACTION", Attr::No, MATCH),
    ("DEVPATH", Attr::No, MATCH),
    ("KERNEL", Attr::No, MATCH),
    ("SUBSYSTEM", Attr::No, MATCH),
    ("DRIVER", Attr::No, MATCH),
    ("KERNELS", Attr::No, MATCH),
    ("SUBSYSTEMS", Attr::No, MATCH),
    ("DRIVERS", Attr::No, MATCH),
    ("TAGS", Attr::No, MATCH),
    ("RESULT", Attr::No, MATCH),
    ("ATTRS", Attr::Required, MATCH),
    ("CONST", Attr::Required, MATCH),
    ("TEST", Attr::Optional, MATCH),
    ("PROGRAM", Attr::No, MATCH_OR_SET),
    ("IMPORT", Attr::Required, MATCH_OR_SET),
    ("ATTR", Attr::Required, MATCH_OR_SET),
    ("SYSCTL", Attr::Required, MATCH_OR_SET),
    ("ENV", Attr::Required, MATCH_OR_SET),
    ("NAME", Attr::No, MATCH_OR_SET),
    ("TAG", Attr::No, EVERY),
    ("SYMLINK", Attr::No, EVERY),
    ("OWNER", Attr::No, SET),
    ("GROUP", Attr::No, SET),
    ("MODE", Attr::No, SET),
    ("OPTIONS", Attr::No, SET),
    ("SECLABEL", Attr::Required, SET),
    ("RUN", Attr::Optional, SET),
    ("GOTO", Attr::No, ASSIGN),
    ("LABEL", Attr::No, ASSIGN),
];

/// A rule as one string (continuations joined), with where each piece of it came from.
struct Logical {
    text: String,
    /// (byte offset in `text`, line, column of that byte), in order.
    pieces: Vec<(usize, usize, usize)>,
}

impl Logical {
    /// The line and column of byte `at` of the rule.
    fn position(&self, at: usize) -> (usize, usize) {
        let i = self.pieces.partition_point(|p| p.0 <= at).saturating_sub(1);
        let (start, line, column) = self.pieces.get(i).copied().unwrap_or((0, 1, 1));
        let chars = self
            .text
            .get(start..at.max(start))
            .map_or(0, |s| s.chars().count());
        (line, column + chars)
    }

    fn error(&self, at: usize, message: impl Into<String>) -> RulesError {
        let (line, column) = self.position(at);
        RulesError {
            line,
            column,
            message: message.into(),
        }
    }
}

/// The rules of `text`, a rules file.
pub fn parse(text: &str) -> Result<Vec<Rule>, RulesError> {
    let mut rules = Vec::new();
    let mut pending: Option<Logical> = None;
    let mut last_line = 0;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        last_line = line_no;
        let trimmed = raw.trim_start();
        let column = raw[..raw.len() - trimmed.len()].chars().count() + 1;
        if trimmed.starts_with('#') {
            continue;
        }
        let logical = pending.get_or_insert_with(|| Logical {
            text: String::new(),
            pieces: Vec::new(),
        });
        logical.pieces.push((logical.text.len(), line_no, column));
        if let Some(body) = trimmed.strip_suffix('\\') {
            logical.text.push_str(body);
            continue;
        }
        logical.text.push_str(trimmed);
        if let Some(logical) = pending.take() {
            if let Some(rule) = parse_rule(&logical)? {
                rules.push(rule);
            }
        }
    }
    if let Some(logical) = pending {
        if !logical.text.trim().is_empty() {
            return Err(RulesError {
                line: last_line,
                column: 1,
                message: "the file ends inside a rule continued with '\\'".to_string(),
            });
        }
    }
    Ok(rules)
}

/// The rule of one logical line (`None` for a blank one).
fn parse_rule(l: &Logical) -> Result<Option<Rule>, RulesError> {
    let s = l.text.as_str();
    let b = s.as_bytes();
    let mut i = 0;
    let mut keys = Vec::new();
    loop {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        if b[i] == b'#' {
            return Err(l.error(
                i,
                "a comment must be a line of its own: udev ignores a rule with '#' after a key",
            ));
        }
        while i < b.len() && (b[i].is_ascii_uppercase() || b[i] == b'_') {
            i += 1;
        }
        let name = &s[start..i];
        if name.is_empty() {
            return Err(l.error(i, "expected a key (SUBSYSTEM, ATTRS{...}, SYMLINK, ...)"));
        }
        let Some(&(_, takes_attr, ops)) = KEYS.iter().find(|k| k.0 == name) else {
            return Err(l.error(start, format!("unknown key '{name}'")));
        };
        let mut attr = None;
        if b.get(i) == Some(&b'{') {
            let Some(end) = s[i + 1..].find('}') else {
                return Err(l.error(i, format!("'{name}{{' has no closing '}}'")));
            };
            let a = &s[i + 1..i + 1 + end];
            if a.is_empty() {
                return Err(l.error(i, format!("'{name}{{}}': the attribute is empty")));
            }
            attr = Some(a.to_string());
            i += end + 2;
        }
        match (takes_attr, &attr) {
            (Attr::No, Some(_)) => {
                return Err(l.error(start, format!("'{name}' takes no {{attribute}}")))
            }
            (Attr::Required, None) => {
                return Err(l.error(start, format!("'{name}' needs an {{attribute}}")))
            }
            _ => {}
        }
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        let op_at = i;
        let rest = &s[i..];
        let op = if rest.starts_with("==") {
            Op::Match
        } else if rest.starts_with("!=") {
            Op::NoMatch
        } else if rest.starts_with("+=") {
            Op::Add
        } else if rest.starts_with("-=") {
            Op::Remove
        } else if rest.starts_with(":=") {
            Op::AssignFinal
        } else if rest.starts_with('=') {
            Op::Assign
        } else {
            return Err(l.error(
                op_at,
                format!("'{name}' is not followed by an operator (==, !=, =, +=, -=, :=)"),
            ));
        };
        if !ops.contains(&op) {
            let allowed: Vec<&str> = ops.iter().map(|o| o.as_str()).collect();
            return Err(l.error(
                op_at,
                format!(
                    "'{name}' does not take '{op}' (it takes {})",
                    allowed.join(" ")
                ),
            ));
        }
        i += op.as_str().len();
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        let escaped = b.get(i) == Some(&b'e') && b.get(i + 1) == Some(&b'"');
        if escaped {
            i += 1;
        }
        if b.get(i) != Some(&b'"') {
            return Err(l.error(i, format!("the value of '{name}' must be double-quoted")));
        }
        let open = i;
        i += 1;
        let mut raw = String::new();
        loop {
            match b.get(i) {
                None => return Err(l.error(open, "the value's quote is never closed")),
                Some(b'"') => break,
                Some(b'\\') if b.get(i + 1) == Some(&b'"') => {
                    raw.push('"');
                    i += 2;
                }
                Some(b'\\') if escaped && i + 1 < b.len() => {
                    raw.push('\\');
                    i += 1;
                    let Some(c) = s[i..].chars().next() else {
                        break;
                    };
                    raw.push(c);
                    i += c.len_utf8();
                }
                Some(_) => {
                    let Some(c) = s[i..].chars().next() else {
                        break;
                    };
                    raw.push(c);
                    i += c.len_utf8();
                }
            }
        }
        let value = if escaped {
            unescape(&raw).map_err(|m| l.error(open, m))?
        } else {
            raw
        };
        i += 1;
        let (line, column) = l.position(start);
        keys.push(Key {
            name: name.to_string(),
            attr,
            op,
            value,
            line,
            column,
        });
    }
    if keys.is_empty() {
        return Ok(None);
    }
    Ok(Some(Rule {
        line: keys[0].line,
        keys,
    }))
}

/// The C escapes of an `e"..."` value decoded (`\"` is already a quote).
fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next().unwrap_or('\\');
        out.push(match e {
            'a' => '\x07',
            'b' => '\x08',
            'f' => '\x0c',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\x0b',
            '\\' | '"' | '\'' => e,
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                u8::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 2)
                    .map(char::from)
                    .ok_or_else(|| format!("'\\x{hex}' is not a two-digit hexadecimal escape"))?
            }
            other => return Err(format!("unknown escape '\\{other}' in an e\"...\" value")),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(rule: &Rule) -> Vec<(String, Option<String>, Op, String)> {
        rule.keys
            .iter()
            .map(|k| (k.name.clone(), k.attr.clone(), k.op, k.value.clone()))
            .collect()
    }

    fn k(
        name: &str,
        attr: Option<&str>,
        op: Op,
        value: &str,
    ) -> (String, Option<String>, Op, String) {
        (name.into(), attr.map(String::from), op, value.into())
    }

    #[test]
    fn a_seed_rule_parses() {
        let r = parse(
            "# udev rules\n\n  SUBSYSTEM==\"tty\", ATTRS{idVendor}==\"0403\", ATTRS{serial}==\"ST167570\", SYMLINK+=\"rack-usb02\"\n",
        )
        .unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].line, 3);
        assert_eq!(
            keys(&r[0]),
            vec![
                k("SUBSYSTEM", None, Op::Match, "tty"),
                k("ATTRS", Some("idVendor"), Op::Match, "0403"),
                k("ATTRS", Some("serial"), Op::Match, "ST167570"),
                k("SYMLINK", None, Op::Add, "rack-usb02"),
            ]
        );
        assert_eq!((r[0].keys[1].line, r[0].keys[1].column), (3, 21));
    }

    #[test]
    fn every_operator() {
        let r = parse(
            "KERNEL!=\"ttyS*\", TAG-=\"x\", OPTIONS:=\"nowatch\", MODE=\"0660\" ENV{A} == \"1\"\n",
        )
        .unwrap();
        let ops: Vec<Op> = r[0].keys.iter().map(|k| k.op).collect();
        assert_eq!(
            ops,
            [
                Op::NoMatch,
                Op::Remove,
                Op::AssignFinal,
                Op::Assign,
                Op::Match
            ]
        );
    }

    #[test]
    fn continuations_and_comments_inside_them() {
        let text = "SUBSYSTEMS==\"pci\", ENV{ID_BUS}==\"\", \\\n  # a comment\n  ENV{X}=\"$attr{vendor}\", \\\n   GOTO=\"end\"\nLABEL=\"end\"\n";
        let r = parse(text).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].keys.len(), 4);
        // positions are those of the physical lines
        assert_eq!((r[0].keys[2].line, r[0].keys[2].column), (3, 3));
        assert_eq!((r[0].keys[3].line, r[0].keys[3].column), (4, 4));
        assert_eq!(r[1].line, 5);
    }

    #[test]
    fn values_keep_backslashes_and_unescape_quotes() {
        let r = parse("ATTRS{serial}==\"a\\\"b\\*c\", ENV{X}=e\"t\\tq\\x41\"\n").unwrap();
        assert_eq!(r[0].keys[0].value, "a\"b\\*c");
        assert_eq!(r[0].keys[1].value, "t\tqA");
    }

    #[test]
    fn errors_say_where() {
        let e = |t: &str| parse(t).unwrap_err().to_string();
        assert_eq!(
            e("\nSUBSYSTEM==\"tty\", SYMLNK+=\"x\"\n"),
            "2:19: unknown key 'SYMLNK'"
        );
        assert_eq!(
            e("SUBSYSTEM==\"tty\", SYMLINK+=\"x\"  # trailing\n"),
            "1:33: a comment must be a line of its own: udev ignores a rule with '#' after a key"
        );
        assert_eq!(
            e("ATTRS{idVendor}=\"0403\"\n"),
            "1:16: 'ATTRS' does not take '=' (it takes == !=)"
        );
        assert_eq!(e("ATTRS==\"x\"\n"), "1:1: 'ATTRS' needs an {attribute}");
        assert_eq!(
            e("KERNEL{x}==\"x\"\n"),
            "1:1: 'KERNEL' takes no {attribute}"
        );
        assert_eq!(
            e("KERNEL==ttyUSB0\n"),
            "1:9: the value of 'KERNEL' must be double-quoted"
        );
        assert_eq!(e("A==\"x\"\n"), "1:1: unknown key 'A'");
        assert_eq!(
            e("KERNEL==\"ttyUSB0\n"),
            "1:9: the value's quote is never closed"
        );
        assert_eq!(
            e("KERNEL \"x\"\n"),
            "1:8: 'KERNEL' is not followed by an operator (==, !=, =, +=, -=, :=)"
        );
        assert_eq!(
            e("KERNEL==\"x\", \\\n  SYMLINK+=\"y\" \\\n"),
            "2:1: the file ends inside a rule continued with '\\'"
        );
        assert_eq!(
            e("ENV{X}=e\"\\q\"\n"),
            "1:9: unknown escape '\\q' in an e\"...\" value"
        );
        assert_eq!(e("ENV{X=\"1\"\n"), "1:4: 'ENV{' has no closing '}'");
        assert_eq!(
            e("  , ==\"1\"\n"),
            "1:5: expected a key (SUBSYSTEM, ATTRS{...}, SYMLINK, ...)"
        );
    }

    #[test]
    fn no_input_panics() {
        // every prefix of rules full of edge cases: an error or rules, never a panic
        let tricky = "KERNEL==\"é\\\"\", ENV{Ä}=e\"\\x4\\xé\\\", ATTRS{a}==\"b\" \\\n# c\n\tSYMLINK+=\"ü\"\r\nGOTO=\"x\"{}==,\"";
        for (i, _) in tricky.char_indices() {
            let _ = parse(&tricky[..i]);
            let _ = parse(&tricky[i..]);
        }
    }

    #[test]
    fn the_rules_this_host_ships_parse() {
        // Debian's own rules files, where the host has them: real-world syntax
        let mut files = 0;
        for dir in [
            "/lib/udev/rules.d",
            "/usr/lib/udev/rules.d",
            "/etc/udev/rules.d",
        ] {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_none_or(|x| x != "rules") {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&p) else {
                    continue;
                };
                if let Err(e) = parse(&text) {
                    panic!("{}:{e}", p.display());
                }
                files += 1;
            }
        }
        eprintln!("parsed {files} rules files of this host");
    }
}
