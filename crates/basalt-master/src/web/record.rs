//! One line of a LAVA log (`- {"dt": "…", "lvl": "…", "msg": …}`) read without a YAML parser.
//!
//! Every writer of these logs (basalt's `FileSink`, LAVA's `yaml_safe_dump(...,
//! default_flow_style=True, default_style='"')`) puts the keys in the same order and every
//! string double-quoted, so a record is read with a few byte comparisons and one pass over its
//! message to undo YAML's escapes: the log viewer and its benchmark read a 100 MiB log at
//! hundreds of MiB/s this way (a YAML parser per line, as LAVA's viewer does, manages a few).
//! A line of any other shape (keys in another order, plain scalars) goes to the workspace's
//! YAML loader ([`basalt_model::yaml`]); a line that is not YAML at all is kept as text of
//! level [`Level::Other`], so a damaged log still shows.

use basalt_model::yaml::{self, Value};
use std::borrow::Cow;

/// A record's level: LAVA's ten, and [`Level::Other`] for a line that is not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warning = 2,
    Error = 3,
    Exception = 4,
    Results = 5,
    Target = 6,
    Input = 7,
    Feedback = 8,
    Event = 9,
    /// Not a record of the log's format (or an unknown `lvl`).
    Other = 10,
}

impl Level {
    /// Every level, by code.
    pub const ALL: [Level; 11] = [
        Level::Debug,
        Level::Info,
        Level::Warning,
        Level::Error,
        Level::Exception,
        Level::Results,
        Level::Target,
        Level::Input,
        Level::Feedback,
        Level::Event,
        Level::Other,
    ];

    /// LAVA's name (`other` for [`Level::Other`]).
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Exception => "exception",
            Level::Results => "results",
            Level::Target => "target",
            Level::Input => "input",
            Level::Feedback => "feedback",
            Level::Event => "event",
            Level::Other => "other",
        }
    }

    /// The level of a name (`lvl`'s value); `None` for an unknown one.
    pub fn from_name(name: &[u8]) -> Option<Level> {
        Some(match name {
            b"debug" => Level::Debug,
            b"info" => Level::Info,
            b"warning" => Level::Warning,
            b"error" => Level::Error,
            b"exception" => Level::Exception,
            b"results" => Level::Results,
            b"target" => Level::Target,
            b"input" => Level::Input,
            b"feedback" => Level::Feedback,
            b"event" => Level::Event,
            b"other" => Level::Other,
            _ => return None,
        })
    }

    /// The level of a code ([`Level`] as u8).
    pub fn from_code(code: u8) -> Option<Level> {
        Level::ALL.get(usize::from(code)).copied()
    }

    /// Its bit in a [`LevelMask`].
    pub fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

/// A set of levels, one bit per [`Level`] code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelMask(pub u16);

impl LevelMask {
    /// Every level.
    pub const ALL: LevelMask = LevelMask(0x7ff);

    /// The levels of a comma-separated list (`info,target`); an error names an unknown one.
    pub fn parse(list: &str) -> Result<LevelMask, String> {
        let mut mask = 0;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let level = Level::from_name(name.as_bytes()).ok_or_else(|| {
                format!("unknown log level {name:?}: debug, info, warning, error, exception, results, target, input, feedback, event or other")
            })?;
            mask |= level.bit();
        }
        Ok(LevelMask(mask))
    }

    /// Whether `level` is in the set.
    pub fn has(self, level: Level) -> bool {
        self.0 & level.bit() != 0
    }
}

/// A record's message: a string (escapes undone), or a mapping (a `results` record) as the
/// flow text the log has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg<'a> {
    Str(Cow<'a, str>),
    Map(Cow<'a, str>),
}

impl Msg<'_> {
    /// The text shown for it.
    pub fn text(&self) -> &str {
        match self {
            Msg::Str(s) | Msg::Map(s) => s,
        }
    }
}

/// One record of a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub dt: Cow<'a, str>,
    pub level: Level,
    pub msg: Msg<'a>,
}

const PREFIX: &[u8] = b"- {\"dt\": \"";
const LVL: &[u8] = b", \"lvl\": \"";
const MSG: &[u8] = b", \"msg\": ";

/// The line without its newline (and `\r`).
fn trim_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The end of a double-quoted string whose content starts at `from`: the index of its closing
/// quote.
fn closing_quote(s: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < s.len() {
        match memchr::memchr2(b'"', b'\\', &s[i..]) {
            None => return None,
            Some(k) => {
                let j = i + k;
                if s[j] == b'"' {
                    return Some(j);
                }
                i = j + 2;
            }
        }
    }
    None
}

/// The level of a line, reading only its start (for indexes: no message is decoded).
pub fn level_of(line: &[u8]) -> Level {
    let line = trim_end(line);
    fast_level(line).unwrap_or_else(|| match slow(line) {
        Some(r) => r.level,
        None => Level::Other,
    })
}

/// The level's name's span on the fast path, and where the rest starts.
fn fast_head(line: &[u8]) -> Option<(usize, usize, usize)> {
    let rest = line.strip_prefix(PREFIX)?;
    let dt_end = PREFIX.len() + memchr::memchr(b'"', rest)?;
    let after = line.get(dt_end + 1..)?;
    if !after.starts_with(LVL) {
        return None;
    }
    let lvl_start = dt_end + 1 + LVL.len();
    let lvl_end = lvl_start + memchr::memchr(b'"', line.get(lvl_start..)?)?;
    Some((dt_end, lvl_start, lvl_end))
}

fn fast_level(line: &[u8]) -> Option<Level> {
    let (_, s, e) = fast_head(line)?;
    let level = Level::from_name(&line[s..e])?;
    line.get(e + 1..)?.starts_with(MSG).then_some(level)
}

/// Reads one line of a log (with or without its newline).
pub fn parse(line: &[u8]) -> Record<'_> {
    let line = trim_end(line);
    if let Some(r) = fast(line) {
        return r;
    }
    if let Some(r) = slow(line) {
        return r;
    }
    Record {
        dt: Cow::Borrowed(""),
        level: Level::Other,
        msg: Msg::Str(String::from_utf8_lossy(line)),
    }
}

fn fast(line: &[u8]) -> Option<Record<'_>> {
    let (dt_end, lvl_start, lvl_end) = fast_head(line)?;
    let level = Level::from_name(&line[lvl_start..lvl_end])?;
    let msg_start = lvl_end + 1 + MSG.len();
    if !line.get(lvl_end + 1..)?.starts_with(MSG) {
        return None;
    }
    let dt = std::str::from_utf8(&line[PREFIX.len()..dt_end]).ok()?;
    let msg = match line.get(msg_start)? {
        b'"' => {
            let end = closing_quote(line, msg_start + 1)?;
            // the record ends there (LAVA's `feedback` records have an `ns` key after it)
            let tail = &line[end + 1..];
            if tail != b"}" && !tail.starts_with(b", \"ns\": ") {
                return None;
            }
            Msg::Str(unescape(&line[msg_start + 1..end])?)
        }
        b'{' => {
            let body = line[msg_start..].strip_suffix(b"}")?;
            Msg::Map(Cow::Borrowed(std::str::from_utf8(body).ok()?))
        }
        _ => return None,
    };
    Some(Record {
        dt: Cow::Borrowed(dt),
        level,
        msg,
    })
}

/// A line of another shape, through the YAML loader.
fn slow(line: &[u8]) -> Option<Record<'static>> {
    let text = std::str::from_utf8(line).ok()?;
    let doc = yaml::load(text).ok()?;
    let rec = match &doc.value {
        Value::Seq(items) if items.len() == 1 => &items[0],
        Value::Map(_) => &doc,
        _ => return None,
    };
    let Value::Map(entries) = &rec.value else {
        return None;
    };
    let get = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
            .map(|(_, v)| v)
    };
    let level = match get("lvl").map(|n| &n.value) {
        Some(Value::Str(s)) => Level::from_name(s.as_bytes())?,
        _ => return None,
    };
    let dt = match get("dt").map(|n| &n.value) {
        Some(Value::Str(s)) => s.clone(),
        _ => String::new(),
    };
    let msg = match get("msg") {
        Some(n) => match &n.value {
            Value::Str(s) => Msg::Str(Cow::Owned(s.clone())),
            _ => {
                let mut out = String::new();
                yaml::emit_flow(n, &mut out);
                Msg::Map(Cow::Owned(out))
            }
        },
        None => Msg::Str(Cow::Borrowed("")),
    };
    Some(Record {
        dt: Cow::Owned(dt),
        level,
        msg,
    })
}

fn hex(digits: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// The content of a YAML double-quoted string (one line) with its escapes undone; `None` for
/// an escape YAML does not have or text that is not UTF-8.
pub fn unescape(s: &[u8]) -> Option<Cow<'_, str>> {
    let Some(first) = memchr::memchr(b'\\', s) else {
        return std::str::from_utf8(s).ok().map(Cow::Borrowed);
    };
    let mut out = String::with_capacity(s.len());
    out.push_str(std::str::from_utf8(&s[..first]).ok()?);
    let mut i = first;
    while i < s.len() {
        let Some(k) = memchr::memchr(b'\\', &s[i..]) else {
            out.push_str(std::str::from_utf8(&s[i..]).ok()?);
            break;
        };
        out.push_str(std::str::from_utf8(&s[i..i + k]).ok()?);
        i += k;
        let c = *s.get(i + 1)?;
        let (ch, len) = match c {
            b'0' => ('\0', 2),
            b'a' => ('\x07', 2),
            b'b' => ('\x08', 2),
            b't' | b'\t' => ('\t', 2),
            b'n' => ('\n', 2),
            b'v' => ('\x0b', 2),
            b'f' => ('\x0c', 2),
            b'r' => ('\r', 2),
            b'e' => ('\x1b', 2),
            b' ' => (' ', 2),
            b'"' => ('"', 2),
            b'/' => ('/', 2),
            b'\\' => ('\\', 2),
            b'N' => ('\u{85}', 2),
            b'_' => ('\u{a0}', 2),
            b'L' => ('\u{2028}', 2),
            b'P' => ('\u{2029}', 2),
            b'x' | b'u' | b'U' => {
                let n = match c {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                let code = hex(s.get(i + 2..i + 2 + n)?)?;
                (char::from_u32(code)?, 2 + n)
            }
            _ => return None,
        };
        out.push(ch);
        i += len;
    }
    Some(Cow::Owned(out))
}

/// A message as the viewer shows it: a character U+EF80–U+EFFF stands for a raw byte of the
/// console (docs/log-format.md) and is shown as `\xNN`; other control characters but tab as
/// `\xNN` (`\e`, `\n`, `\r` for ESC, LF, CR) so that nothing invisible moves the text.
pub fn display(s: &str) -> Cow<'_, str> {
    let plain =
        |c: char| !(('\u{ef80}'..='\u{efff}').contains(&c) || (c.is_control() && c != '\t'));
    if s.chars().all(plain) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if plain(c) {
            out.push(c);
        } else if c == '\x1b' {
            out.push_str("\\e");
        } else if c == '\n' {
            out.push_str("\\n");
        } else if c == '\r' {
            out.push_str("\\r");
        } else if ('\u{ef80}'..='\u{efff}').contains(&c) {
            out.push_str(&format!("\\x{:02x}", c as u32 - 0xef00));
        } else if (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{:04x}", c as u32));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basalts_records_are_read_on_the_fast_path() {
        let r = parse(b"- {\"dt\": \"2026-08-21T16:25:29.123456+00:00\", \"lvl\": \"target\", \"msg\": \"a \\\"b\\\" \\e[0m \\x01 \\uef80 \\\\\"}\n");
        assert_eq!(r.dt, "2026-08-21T16:25:29.123456+00:00");
        assert_eq!(r.level, Level::Target);
        assert_eq!(r.msg, Msg::Str("a \"b\" \x1b[0m \x01 \u{ef80} \\".into()));
        assert_eq!(display(r.msg.text()), "a \"b\" \\e[0m \\x01 \\x80 \\");
        let r = parse(b"- {\"dt\": \"t\", \"lvl\": \"results\", \"msg\": {\"definition\": \"lava\", \"case\": \"job\", \"result\": \"pass\", \"starttc\": ! \"12\"}}");
        assert_eq!(r.level, Level::Results);
        assert_eq!(
            r.msg,
            Msg::Map(
                "{\"definition\": \"lava\", \"case\": \"job\", \"result\": \"pass\", \"starttc\": ! \"12\"}"
                    .into()
            )
        );
        assert_eq!(
            level_of(b"- {\"dt\": \"t\", \"lvl\": \"debug\", \"msg\": \"x\"}\n"),
            Level::Debug
        );
    }

    #[test]
    fn other_shapes_go_to_the_yaml_loader_and_junk_is_kept_as_text() {
        let r = parse(b"- {lvl: info, msg: 'plain', dt: now}");
        assert_eq!(
            (r.level, r.msg.text(), &*r.dt),
            (Level::Info, "plain", "now")
        );
        let r = parse(b"- {\"dt\": \"t\", \"lvl\": \"feedback\", \"msg\": \"x\", \"ns\": \"n\"}");
        assert_eq!((r.level, r.msg.text()), (Level::Feedback, "x"));
        for junk in [
            &b"not yaml: ["[..],
            b"",
            b"- {\"dt\": \"t\", \"lvl\": \"loud\", \"msg\": \"x\"}",
            b"\xff\xfe",
        ] {
            let r = parse(junk);
            assert_eq!(r.level, Level::Other, "{junk:?}");
            assert_eq!(level_of(junk), Level::Other);
        }
        // a bad escape is not guessed at: the loader refuses it too
        assert_eq!(
            parse(b"- {\"dt\": \"t\", \"lvl\": \"info\", \"msg\": \"\\q\"}").level,
            Level::Other
        );
        // a cut record
        assert_eq!(
            parse(b"- {\"dt\": \"t\", \"lvl\": \"info\", \"msg\": \"abc").level,
            Level::Other
        );
    }

    #[test]
    fn level_lists() {
        let m = LevelMask::parse("info, target").unwrap();
        assert!(m.has(Level::Info) && m.has(Level::Target) && !m.has(Level::Debug));
        assert!(LevelMask::parse("info,loud").unwrap_err().contains("loud"));
        for l in Level::ALL {
            assert_eq!(Level::from_code(l as u8), Some(l));
            assert_eq!(Level::from_name(l.name().as_bytes()), Some(l));
        }
    }
}
