//! Console bytes as text without losing a byte, and secrets kept out of transcripts.
//!
//! A board prints bytes, not UTF-8: random data, a wrong baud rate, a line cut in the middle of
//! a character. The transcript ([`super::Transcript`]) takes text, so every console line is
//! turned into a string by [`push_console_text`]:
//!
//! * valid UTF-8 stays as it is;
//! * every byte of an invalid sequence (always 0x80–0xFF) becomes the private-use character
//!   U+EF00 + byte, i.e. U+EF80–U+EFFF (the mapping MirBSD's OPTU-8 uses for raw octets);
//! * so that this stays unambiguous, a character of that range that the board did send as valid
//!   UTF-8 (`EE BE 80`–`EE BF BF`) is treated like invalid bytes: each of its three bytes is
//!   mapped.
//!
//! Hence in a console string every character of U+EF80–U+EFFF stands for one byte and every
//! other character for its UTF-8 encoding, and [`text_bytes`] gives the original bytes back
//! exactly. Strings that did not come from a console get the same treatment from
//! [`escape_raw_range`], so the rule holds for every string of a log (see `docs/log-format.md`).
//!
//! [`Secrets`] replaces secret values by [`MASK`]; the expect engine applies it to the stream
//! before it is cut into transcript lines, holding back a tail that may be the start of a
//! secret ([`Secrets::held_tail`]).

use std::borrow::Cow;

use memchr::memmem;

/// The first code point of the raw-byte range: byte `b` (0x80–0xFF) is U+EF00 + `b`.
pub const RAW_BYTE_BASE: u32 = 0xEF00;
/// What a secret is replaced with.
pub const MASK: &str = "[MASKED]";

/// The character that stands for the raw byte `b` (0x80–0xFF).
#[inline]
pub fn raw_byte_char(b: u8) -> char {
    char::from_u32(RAW_BYTE_BASE + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The raw byte a character stands for, if it is in U+EF80–U+EFFF.
#[inline]
pub fn raw_byte_of(c: char) -> Option<u8> {
    let v = c as u32;
    if (RAW_BYTE_BASE + 0x80..=RAW_BYTE_BASE + 0xff).contains(&v) {
        Some((v - RAW_BYTE_BASE) as u8)
    } else {
        None
    }
}

/// True if `s` (valid UTF-8) holds a character of U+EF80–U+EFFF: bytes `EE BE xx` / `EE BF xx`.
#[inline]
fn has_raw_range(s: &[u8]) -> bool {
    memchr::memchr_iter(0xee, s).any(|i| matches!(s.get(i + 1), Some(0xbe | 0xbf)))
}

fn push_valid(s: &str, out: &mut String) {
    if !has_raw_range(s.as_bytes()) {
        out.push_str(s);
        return;
    }
    let mut utf8 = [0u8; 4];
    for c in s.chars() {
        if raw_byte_of(c).is_some() {
            for b in c.encode_utf8(&mut utf8).bytes() {
                out.push(raw_byte_char(b));
            }
        } else {
            out.push(c);
        }
    }
}

/// Appends the text form of console bytes to `out` (see the module documentation).
pub fn push_console_text(mut bytes: &[u8], out: &mut String) {
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                push_valid(s, out);
                return;
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                if let Ok(s) = std::str::from_utf8(valid) {
                    push_valid(s, out);
                }
                let bad = e.error_len().unwrap_or(rest.len()).min(rest.len());
                for &b in &rest[..bad] {
                    out.push(raw_byte_char(b));
                }
                bytes = &rest[bad..];
            }
        }
    }
}

/// The text form of console bytes; borrowed when they are valid UTF-8 without a character of
/// the raw-byte range (the usual case).
pub fn console_text(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if !has_raw_range(bytes) {
            return Cow::Borrowed(s);
        }
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    push_console_text(bytes, &mut out);
    Cow::Owned(out)
}

/// A string that did not come from a console, in the same form: characters of U+EF80–U+EFFF
/// (rare) become three raw-byte characters, so that [`text_bytes`] gives back its UTF-8.
pub fn escape_raw_range(s: &str) -> Cow<'_, str> {
    if has_raw_range(s.as_bytes()) {
        let mut out = String::with_capacity(s.len() + 8);
        push_valid(s, &mut out);
        Cow::Owned(out)
    } else {
        Cow::Borrowed(s)
    }
}

/// The bytes a console string stands for: U+EF80–U+EFFF are single bytes, every other
/// character its UTF-8. The inverse of [`push_console_text`].
pub fn text_bytes(s: &str) -> Vec<u8> {
    if !has_raw_range(s.as_bytes()) {
        return s.as_bytes().to_vec();
    }
    let mut out = Vec::with_capacity(s.len());
    let mut utf8 = [0u8; 4];
    for c in s.chars() {
        match raw_byte_of(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
        }
    }
    out
}

/// Length of the end of `b` that is an incomplete UTF-8 sequence (0–3 bytes) which more
/// bytes could complete: where a line may be cut without splitting a character.
pub fn incomplete_utf8_tail(b: &[u8]) -> usize {
    for i in 1..=b.len().min(3) {
        let x = b[b.len() - i];
        if x & 0xc0 == 0x80 {
            continue; // a continuation byte: look further back for the lead byte
        }
        let need = match x {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return 0,
        };
        return if need > i { i } else { 0 };
    }
    0
}

/// Values that must not reach a log, as byte strings. A value with line breaks is taken line
/// by line (a console shows it line by line).
#[derive(Clone, Default)]
pub struct Secrets {
    finders: Vec<memmem::Finder<'static>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print the values themselves
        f.debug_struct("Secrets")
            .field("count", &self.finders.len())
            .finish()
    }
}

impl Secrets {
    /// The non-empty lines of `values`, longest first, without duplicates.
    pub fn new<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Secrets {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        for v in values {
            for line in v.as_ref().split(['\n', '\r']) {
                if !line.is_empty() {
                    parts.push(line.as_bytes().to_vec());
                }
            }
        }
        parts.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        parts.dedup();
        Secrets {
            finders: parts
                .into_iter()
                .map(|p| memmem::Finder::new(&p).into_owned())
                .collect(),
        }
    }

    /// True when there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.finders.is_empty()
    }

    /// True if a secret occurs in `data`.
    pub fn occurs_in(&self, data: &[u8]) -> bool {
        self.finders.iter().any(|f| f.find(data).is_some())
    }

    /// Where the secrets occur in `data`: sorted, merged byte ranges.
    fn occurrences(&self, data: &[u8]) -> Vec<(usize, usize)> {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for f in &self.finders {
            let n = f.needle().len();
            spans.extend(f.find_iter(data).map(|i| (i, i + n)));
        }
        if spans.len() > 1 {
            spans.sort_unstable();
            let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
            for (s, e) in spans {
                match merged.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            spans = merged;
        }
        spans
    }

    /// Writes `data` with every occurrence replaced into `out` (cleared first), but only if
    /// there is an occurrence; returns whether there was one.
    pub fn mask_into(&self, data: &[u8], out: &mut Vec<u8>) -> bool {
        if self.finders.is_empty() {
            return false;
        }
        let spans = self.occurrences(data);
        if spans.is_empty() {
            return false;
        }
        out.clear();
        let mut at = 0;
        for (s, e) in spans {
            out.extend_from_slice(&data[at..s]);
            out.extend_from_slice(MASK.as_bytes());
            at = e;
        }
        out.extend_from_slice(&data[at..]);
        true
    }

    /// Replaces every occurrence in `data`; returns whether there was one.
    pub fn mask_in_place(&self, data: &mut Vec<u8>) -> bool {
        let mut out = Vec::new();
        if self.mask_into(data, &mut out) {
            *data = out;
            true
        } else {
            false
        }
    }

    /// `data` with every occurrence replaced; borrowed when there is none.
    pub fn mask_bytes<'a>(&self, data: &'a [u8]) -> Cow<'a, [u8]> {
        let mut out = Vec::new();
        if self.mask_into(data, &mut out) {
            Cow::Owned(out)
        } else {
            Cow::Borrowed(data)
        }
    }

    /// `s` with every occurrence replaced; borrowed when there is none.
    pub fn mask_str<'a>(&self, s: &'a str) -> Cow<'a, str> {
        if self.finders.is_empty() {
            return Cow::Borrowed(s);
        }
        let spans = self.occurrences(s.as_bytes());
        if spans.is_empty() {
            return Cow::Borrowed(s);
        }
        let mut out = String::with_capacity(s.len());
        let mut at = 0;
        for (a, e) in spans {
            // a secret is a whole string, so its ends are character boundaries
            out.push_str(s.get(at..a).unwrap_or_default());
            out.push_str(MASK);
            at = e;
        }
        out.push_str(s.get(at..).unwrap_or_default());
        Cow::Owned(out)
    }

    /// Length of the longest end of `data` that is the start (not the whole) of a secret: the
    /// bytes to hold back when a line is cut, since what follows may complete the secret.
    pub fn held_tail(&self, data: &[u8]) -> usize {
        let mut best = 0;
        for f in &self.finders {
            let s = f.needle();
            let max = (s.len() - 1).min(data.len());
            // longest first: the first hit is this secret's best
            for k in (best + 1..=max).rev() {
                if data.ends_with(&s[..k]) {
                    best = k;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(b: &[u8]) {
        let t = console_text(b);
        assert_eq!(text_bytes(&t), b, "{t:?}");
    }

    #[test]
    fn valid_text_is_unchanged() {
        for s in [
            "",
            "plain",
            "é ü ß 日本 🦀",
            "\u{85}\u{2028}\u{feff}\u{fffd}\u{ef7f}\u{f000}",
        ] {
            assert!(matches!(console_text(s.as_bytes()), Cow::Borrowed(x) if x == s));
            round_trip(s.as_bytes());
        }
    }

    #[test]
    fn invalid_bytes_become_the_raw_range() {
        assert_eq!(console_text(b"a\xffb"), "a\u{efff}b");
        assert_eq!(console_text(b"\x80"), "\u{ef80}");
        // a truncated sequence: each of its bytes
        assert_eq!(console_text(b"x\xe2\x82"), "x\u{efe2}\u{ef82}");
        // a surrogate in CESU form and an overlong '/'
        assert_eq!(
            console_text(b"\xed\xa0\x80\xc0\xaf"),
            "\u{efed}\u{efa0}\u{ef80}\u{efc0}\u{efaf}"
        );
        // a valid character of the raw range itself is taken byte by byte
        assert_eq!(
            console_text("\u{ef80}".as_bytes()),
            "\u{efee}\u{efbe}\u{ef80}"
        );
        assert_eq!(escape_raw_range("\u{efff}"), "\u{efee}\u{efbf}\u{efbf}");
        assert_eq!(
            text_bytes("\u{efee}\u{efbf}\u{efbf}"),
            "\u{efff}".as_bytes()
        );
    }

    #[test]
    fn every_byte_and_every_pair_round_trips() {
        for a in 0..=255u8 {
            round_trip(&[a]);
            for b in 0..=255u8 {
                round_trip(&[a, b]);
                round_trip(&[b'x', a, b, b'y']);
            }
        }
    }

    #[test]
    fn random_bytes_round_trip() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut buf = Vec::new();
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.push((x >> 24) as u8);
        }
        for chunk in buf.chunks(997) {
            round_trip(chunk);
        }
        round_trip(&buf);
    }

    #[test]
    fn incomplete_tails() {
        assert_eq!(incomplete_utf8_tail(b"abc"), 0);
        assert_eq!(incomplete_utf8_tail(b"ab\xc3"), 1);
        assert_eq!(incomplete_utf8_tail("é".as_bytes()), 0);
        assert_eq!(incomplete_utf8_tail(b"\xe2\x82"), 2);
        assert_eq!(incomplete_utf8_tail("€".as_bytes()), 0);
        assert_eq!(incomplete_utf8_tail(b"\xf0\x9f\xa6"), 3);
        assert_eq!(incomplete_utf8_tail(b"\x80\x80\x80"), 0);
        assert_eq!(incomplete_utf8_tail(b"\xff"), 0);
    }

    #[test]
    fn masks_overlapping_and_multiline_secrets() {
        let s = Secrets::new(["open sesame", "same old", "", "line1\nline2"]);
        assert_eq!(s.mask_str("say open sesame old!"), "say [MASKED]!");
        assert_eq!(s.mask_str("line2 then line1"), "[MASKED] then [MASKED]");
        assert_eq!(s.mask_str("nothing"), "nothing");
        let mut v = b"x open sesame y".to_vec();
        assert!(s.mask_in_place(&mut v));
        assert_eq!(v, b"x [MASKED] y");
        assert!(Secrets::new([""]).is_empty());
        assert!(!format!("{s:?}").contains("sesame"));
    }

    #[test]
    fn held_tail_is_the_longest_secret_prefix() {
        let s = Secrets::new(["pa55 # word", "abab"]);
        assert_eq!(s.held_tail(b"Password: pa55 # "), 7);
        assert_eq!(
            s.held_tail(b"pa55 # word"),
            0,
            "a whole secret is masked, not held"
        );
        assert_eq!(s.held_tail(b"xxab"), 2);
        assert_eq!(s.held_tail(b"xaba"), 3);
        assert_eq!(s.held_tail(b"login: "), 0);
        assert_eq!(s.held_tail(b""), 0);
    }
}
