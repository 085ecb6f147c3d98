//! The expect engine: wait for patterns in a console's output, send input, keep a transcript.
//!
//! A [`Session`] owns one open [`ConsoleStream`]. Everything read from it is
//!
//! 1. cleaned: ANSI escape sequences (CSI such as busybox's `ESC[6n` after its prompt, OSC and
//!    other string sequences, two- and three-byte `ESC` sequences) are removed, and so are NUL and
//!    the other C0 control characters except `\t`, `\n` and `\r` (and DEL);
//! 2. masked: every secret given to [`Session::set_secrets`] is replaced by
//!    [`MASK`](super::text::MASK) before the stream is cut into lines, and a partial line that
//!    ends with the start of a secret keeps that end back until more output decides;
//! 3. handed to the [`Transcript`] as lines (split on `\n`, `\r\n` and lone `\r`, a partial
//!    line flushed whenever an expect returns), as text that keeps every byte: invalid UTF-8
//!    becomes characters U+EF80–U+EFFF, one per byte (see [`super::text`]); after the lines of
//!    each read, [`Transcript::flush`], so a transcript may batch them;
//! 4. appended to a bounded search window in which [`Session::expect`] looks for its patterns
//!    with [`regex::bytes::Regex`].
//!
//! The search window holds the unmatched output since the previous match, capped to its last
//! [`DEFAULT_WINDOW`] bytes (see [`Session::with_window`]) plus whatever the latest read added, so
//! a read costs a search over at most `window + read` bytes however much output went by; a
//! match can therefore not span more than the window. When a match is found, the window
//! restarts just after it: the next expect sees only what came later.
//!
//! Timeouts: [`Session::expect`] takes the time it may wait. [`Session::expect_with_check`]
//! additionally honours a connection timeout ([`Session::set_connection_timeout`]): when that
//! expires before the whole timeout, it sends LAVA's harmless check line (`#`) and waits again,
//! as LAVA does to wake a console that stopped printing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::text::{incomplete_utf8_tail, push_console_text, Secrets, MASK};
use super::{Console, ConsoleError, ConsoleStream};

pub use regex::bytes::Regex;

/// Default cap of the unmatched part of the search window: 64 KiB.
pub const DEFAULT_WINDOW: usize = 64 * 1024;
/// Size of one read from the console.
const READ_SIZE: usize = 256 * 1024;
/// A line longer than this without a line end is handed to the transcript in pieces.
const MAX_LINE: usize = 64 * 1024;
/// How much of the unmatched output a timeout error quotes.
const TAIL_QUOTE: usize = 512;
/// LAVA's check character, sent as a line when a connection timeout expires.
pub const CHECK_CHAR: &str = "#";

/// Receives everything a session reads (as lines) and sends.
pub trait Transcript: Send {
    /// One line of console output, cleaned (no line end, no escape sequences) and masked. Bytes
    /// that are not UTF-8 are characters U+EF80–U+EFFF, one per byte
    /// ([`text_bytes`](super::text::text_bytes) gives the bytes back). A partial line is passed
    /// when an expect returns, e.g. a prompt not followed by a newline.
    fn received(&mut self, line: &str);
    /// Text sent to the console, as given to [`Session::send`], masked.
    fn sent(&mut self, text: &str);
    /// The lines of one read have all been given (called after each read, and before an
    /// expect returns): a transcript that batches lines hands them on here. Default: nothing.
    fn flush(&mut self) {}
}

/// A transcript that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullTranscript;

impl Transcript for NullTranscript {
    fn received(&mut self, _line: &str) {}
    fn sent(&mut self, _text: &str) {}
}

/// One entry of a [`VecTranscript`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TranscriptLine {
    /// A line received from the console.
    Received(String),
    /// Text sent to the console.
    Sent(String),
}

/// A transcript that keeps every line in memory; clones share the same lines, so a caller can
/// keep one clone and give another to a [`Session`].
#[derive(Debug, Default, Clone)]
pub struct VecTranscript {
    lines: Arc<Mutex<Vec<TranscriptLine>>>,
}

impl VecTranscript {
    /// An empty transcript.
    pub fn new() -> VecTranscript {
        VecTranscript::default()
    }

    /// A copy of all entries so far.
    pub fn lines(&self) -> Vec<TranscriptLine> {
        self.lock().clone()
    }

    /// Only the received lines so far.
    pub fn received_lines(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter_map(|l| match l {
                TranscriptLine::Received(s) => Some(s.clone()),
                TranscriptLine::Sent(_) => None,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TranscriptLine>> {
        // a panic while holding the lock cannot leave a Vec half-pushed: keep going
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Transcript for VecTranscript {
    fn received(&mut self, line: &str) {
        self.lock().push(TranscriptLine::Received(line.to_string()));
    }
    fn sent(&mut self, text: &str) {
        self.lock().push(TranscriptLine::Sent(text.to_string()));
    }
}

/// What [`Session::expect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Index of the pattern that matched, in the slice given to expect.
    pub index: usize,
    /// The output between the previous match (or the start of the window) and this one.
    pub before: String,
    /// The matched text.
    pub matched: String,
    /// Capture groups by number; `groups[0]` is the whole match. `None` for a group that did
    /// not take part in the match.
    pub groups: Vec<Option<String>>,
    /// Names of the capture groups, aligned with `groups`.
    pub names: Vec<Option<String>>,
}

impl Match {
    /// Capture group `i` (0 = the whole match), if it took part.
    pub fn group(&self, i: usize) -> Option<&str> {
        self.groups.get(i).and_then(|g| g.as_deref())
    }

    /// The named capture group `name`, if it took part.
    pub fn name(&self, name: &str) -> Option<&str> {
        let i = self.names.iter().position(|n| n.as_deref() == Some(name))?;
        self.group(i)
    }
}

/// Why an expect did not find its pattern.
#[derive(Debug, thiserror::Error)]
pub enum ExpectError {
    /// No pattern appeared in time.
    #[error("timed out after {:.1} s waiting for {patterns:?}; last output: {last:?}", waited.as_secs_f64())]
    Timeout {
        /// How long the expect waited.
        waited: Duration,
        /// The patterns waited for.
        patterns: Vec<String>,
        /// The last unmatched output (cleaned, at most 512 bytes), for the log.
        last: String,
    },
    /// The console failed; [`ConsoleError::Closed`] when the connection dropped.
    #[error(transparent)]
    Console(#[from] ConsoleError),
}

impl ExpectError {
    /// True for a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ExpectError::Timeout { .. })
    }

    /// True when the connection dropped ([`ConsoleError::Closed`]).
    pub fn is_closed(&self) -> bool {
        matches!(self, ExpectError::Console(e) if e.is_closed())
    }
}

/// An expect session over one console connection. See the module documentation.
pub struct Session {
    stream: Box<dyn ConsoleStream>,
    what: String,
    transcript: Box<dyn Transcript>,
    filter: AnsiFilter,
    lines: LineSplitter,
    /// Cleaned, unmatched output: the search window.
    window: Vec<u8>,
    window_cap: usize,
    raw: Vec<u8>,
    connection_timeout: Option<Duration>,
    /// Set when the stream reported its end; cleared by [`Session::replace_stream`].
    closed: Option<ConsoleError>,
    /// Kept out of the transcript and of the text this session returns.
    secrets: Secrets,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("what", &self.what)
            .field("window_len", &self.window.len())
            .field("window_cap", &self.window_cap)
            .field("connection_timeout", &self.connection_timeout)
            .field("closed", &self.closed.is_some())
            .finish()
    }
}

impl Session {
    /// A session over an open stream. `what` names the console in errors (use
    /// [`Console::describe`]).
    pub fn new(
        stream: Box<dyn ConsoleStream>,
        what: impl Into<String>,
        transcript: Box<dyn Transcript>,
    ) -> Session {
        Session {
            stream,
            what: what.into(),
            transcript,
            filter: AnsiFilter::default(),
            lines: LineSplitter::default(),
            window: Vec::with_capacity(DEFAULT_WINDOW + READ_SIZE),
            window_cap: DEFAULT_WINDOW,
            raw: vec![0; READ_SIZE],
            connection_timeout: None,
            closed: None,
            secrets: Secrets::default(),
        }
    }

    /// Sets the values that must never reach the transcript (passwords, job secrets): they
    /// are replaced by [`MASK`] in received lines, sent text, matches and errors.
    pub fn set_secrets<S: AsRef<str>>(&mut self, values: impl IntoIterator<Item = S>) {
        self.secrets = Secrets::new(values);
    }

    /// [`Session::set_secrets`] as a builder.
    pub fn with_secrets<S: AsRef<str>>(mut self, values: impl IntoIterator<Item = S>) -> Session {
        self.set_secrets(values);
        self
    }

    /// Connects `console` and opens a session on it.
    pub async fn connect(
        console: &dyn Console,
        transcript: Box<dyn Transcript>,
    ) -> Result<Session, ConsoleError> {
        let stream = console.connect().await?;
        Ok(Session::new(stream, console.describe(), transcript))
    }

    /// Sets the cap of the unmatched part of the search window (default [`DEFAULT_WINDOW`]); a
    /// match cannot be longer than this. At least 1 KiB.
    pub fn with_window(mut self, bytes: usize) -> Session {
        self.window_cap = bytes.max(1024);
        self
    }

    /// Sets (or clears) the connection timeout used by [`Session::expect_with_check`].
    pub fn set_connection_timeout(&mut self, timeout: Option<Duration>) {
        self.connection_timeout = timeout;
    }

    /// The console's description, as given to [`Session::new`].
    pub fn what(&self) -> &str {
        &self.what
    }

    /// True once the connection reported its end.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// The unmatched output currently in the search window (cleaned, masked).
    pub fn pending_output(&self) -> String {
        self.secrets
            .mask_str(&String::from_utf8_lossy(&self.window))
            .into_owned()
    }

    /// Replaces the connection (after [`ConsoleError::Closed`], with a new
    /// [`Console::connect`]); the transcript is kept, the search window and escape-sequence
    /// state are reset.
    pub fn replace_stream(&mut self, stream: Box<dyn ConsoleStream>) {
        self.flush_all();
        self.stream = stream;
        self.filter = AnsiFilter::default();
        self.lines = LineSplitter::default();
        self.window.clear();
        self.closed = None;
    }

    /// Reconnects `console` and continues this session on the new connection.
    pub async fn reconnect(&mut self, console: &dyn Console) -> Result<(), ConsoleError> {
        let stream = console.connect().await?;
        self.what = console.describe();
        self.replace_stream(stream);
        Ok(())
    }

    /// Gives the stream back, e.g. to hand the console to an interactive user.
    pub fn into_stream(mut self) -> Box<dyn ConsoleStream> {
        self.flush_all();
        self.stream
    }

    /// Waits up to `timeout` for the first of `patterns`: the match that starts earliest in
    /// the output wins, and of matches starting at the same place the one of the lowest
    /// pattern index. Output that arrived before this call and was not consumed by an
    /// earlier match is searched too.
    pub async fn expect(
        &mut self,
        patterns: &[Regex],
        timeout: Duration,
    ) -> Result<Match, ExpectError> {
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            if let Some(m) = self.search(patterns) {
                self.flush_partial();
                return Ok(m);
            }
            if let Some(closed) = &self.closed {
                let err = clone_closed(closed, &self.what);
                self.flush_partial();
                return Err(ExpectError::Console(err));
            }
            self.trim_window();
            let read = tokio::time::timeout_at(
                tokio::time::Instant::from_std(deadline),
                self.stream.read(&mut self.raw),
            )
            .await;
            match read {
                Err(_elapsed) => {
                    self.flush_partial();
                    return Err(ExpectError::Timeout {
                        waited: start.elapsed(),
                        patterns: patterns.iter().map(|p| p.as_str().to_string()).collect(),
                        last: self.tail(),
                    });
                }
                Ok(Ok(0)) => {
                    self.closed = Some(ConsoleError::Closed {
                        what: self.what.clone(),
                    });
                }
                Ok(Ok(n)) => self.ingest(n),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => {
                    let err = ConsoleError::from_io(&self.what, e);
                    if err.is_closed() {
                        self.closed = Some(err);
                    } else {
                        self.flush_partial();
                        return Err(err.into());
                    }
                }
            }
        }
    }

    /// Like [`Session::expect`], but when a connection timeout is set and expires before
    /// `timeout` does, sends the check line (`#\n`) and waits again, until `timeout`.
    pub async fn expect_with_check(
        &mut self,
        patterns: &[Regex],
        timeout: Duration,
    ) -> Result<Match, ExpectError> {
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let slice = match self.connection_timeout {
                Some(c) if !c.is_zero() && c < left => c,
                _ => left,
            };
            match self.expect(patterns, slice).await {
                Err(ExpectError::Timeout { patterns, last, .. }) => {
                    if Instant::now() >= deadline || slice >= left {
                        return Err(ExpectError::Timeout {
                            waited: start.elapsed(),
                            patterns,
                            last,
                        });
                    }
                    self.send_check_char().await?;
                }
                other => return other,
            }
        }
    }

    /// Sends `text`, one character at a time with `char_delay` after each (LAVA's
    /// `boot_character_delay` / `test_character_delay`), or at once when the delay is zero.
    pub async fn send(&mut self, text: &str, char_delay: Duration) -> Result<(), ConsoleError> {
        self.transcript.sent(&self.secrets.mask_str(text));
        if let Some(closed) = &self.closed {
            return Err(clone_closed(closed, &self.what));
        }
        let res = if char_delay.is_zero() {
            self.write_flush(text.as_bytes()).await
        } else {
            let mut res = Ok(());
            let mut utf8 = [0u8; 4];
            for c in text.chars() {
                res = self.write_flush(c.encode_utf8(&mut utf8).as_bytes()).await;
                if res.is_err() {
                    break;
                }
                tokio::time::sleep(char_delay).await;
            }
            res
        };
        res.map_err(|e| {
            let err = ConsoleError::from_io(&self.what, e);
            if err.is_closed() {
                self.closed = Some(ConsoleError::Closed {
                    what: self.what.clone(),
                });
            }
            err
        })
    }

    /// Sends `text` followed by `\n`.
    pub async fn send_line(
        &mut self,
        text: &str,
        char_delay: Duration,
    ) -> Result<(), ConsoleError> {
        let mut line = String::with_capacity(text.len() + 1);
        line.push_str(text);
        line.push('\n');
        self.send(&line, char_delay).await
    }

    /// Sends LAVA's harmless check line, `#\n` (a shell comment, ignored by bootloaders).
    pub async fn send_check_char(&mut self) -> Result<(), ConsoleError> {
        self.send_line(CHECK_CHAR, Duration::ZERO).await
    }

    async fn write_flush(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Cleans `n` fresh bytes of `raw` into the window and the transcript.
    fn ingest(&mut self, n: usize) {
        let old = self.window.len();
        self.filter.feed(&self.raw[..n], &mut self.window);
        self.lines
            .feed(&self.window[old..], &self.secrets, self.transcript.as_mut());
        self.transcript.flush();
    }

    /// Looks for the leftmost match of any pattern in the window; consumes through its end.
    fn search(&mut self, patterns: &[Regex]) -> Option<Match> {
        let mut best: Option<(usize, usize)> = None; // (start, pattern index)
        for (i, re) in patterns.iter().enumerate() {
            if let Some(m) = re.find(&self.window) {
                if best.is_none_or(|(s, _)| m.start() < s) {
                    best = Some((m.start(), i));
                    if m.start() == 0 {
                        break;
                    }
                }
            }
        }
        let (start, index) = best?;
        let re = &patterns[index];
        let caps = re.captures_at(&self.window, start)?;
        let whole = caps.get(0)?;
        let end = whole.end();
        let secrets = &self.secrets;
        let lossy = |b: &[u8]| secrets.mask_str(&String::from_utf8_lossy(b)).into_owned();
        let m = Match {
            index,
            before: lossy(&self.window[..whole.start()]),
            matched: lossy(whole.as_bytes()),
            groups: caps
                .iter()
                .map(|g| g.map(|g| lossy(g.as_bytes())))
                .collect(),
            names: re.capture_names().map(|n| n.map(str::to_string)).collect(),
        };
        self.window.drain(..end);
        Some(m)
    }

    /// Keeps only the last `window_cap` bytes of unmatched output.
    fn trim_window(&mut self) {
        if self.window.len() > self.window_cap {
            let cut = self.window.len() - self.window_cap;
            self.window.drain(..cut);
        }
    }

    fn tail(&self) -> String {
        if self.secrets.is_empty() {
            let from = self.window.len().saturating_sub(TAIL_QUOTE);
            return String::from_utf8_lossy(&self.window[from..]).into_owned();
        }
        // mask a stretch longer than the quote, so that a secret cut by the quote's start is
        // masked too, and a secret's start at the end (that more output would complete)
        let from = self.window.len().saturating_sub(TAIL_QUOTE + 4096);
        let mut text = self.window[from..].to_vec();
        self.secrets.mask_in_place(&mut text);
        let held = self.secrets.held_tail(&text);
        if held > 0 {
            text.truncate(text.len() - held);
            text.extend_from_slice(MASK.as_bytes());
        }
        let from = text.len().saturating_sub(TAIL_QUOTE);
        String::from_utf8_lossy(&text[from..]).into_owned()
    }

    /// Reports the partial line, but holds back an end that may be the start of a secret.
    fn flush_partial(&mut self) {
        self.lines
            .flush(&self.secrets, false, self.transcript.as_mut());
        self.transcript.flush();
    }

    /// Reports the partial line in full (the connection is going away).
    fn flush_all(&mut self) {
        self.lines
            .flush(&self.secrets, true, self.transcript.as_mut());
        self.transcript.flush();
    }
}

fn clone_closed(err: &ConsoleError, what: &str) -> ConsoleError {
    match err {
        ConsoleError::Closed { what } => ConsoleError::Closed { what: what.clone() },
        _ => ConsoleError::Closed {
            what: what.to_string(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Cleaning: ANSI escape sequences and control characters.

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;
/// Longest CSI or plain ESC sequence accepted; longer is taken for text.
const MAX_CSI: usize = 64;
/// Longest OSC / DCS / APC / PM / SOS string accepted before giving up on it.
const MAX_OSC: usize = 4096;

/// Bytes that leave the fast path: C0 controls except tab, LF and CR; DEL.
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = !(i == b'\t' as usize || i == b'\n' as usize || i == b'\r' as usize);
        i += 1;
    }
    t[0x7f] = true;
    t
};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum FilterState {
    #[default]
    Ground,
    /// After ESC.
    Esc,
    /// After ESC and intermediate bytes (0x20-0x2f), e.g. `ESC ( B`.
    EscIntermediate,
    /// In a control sequence `ESC [ params intermediates final`.
    Csi,
    /// In a string sequence (OSC, DCS, SOS, PM, APC) ended by BEL or `ESC \`.
    Str,
    /// In a string sequence, after ESC.
    StrEsc,
}

/// Removes escape sequences and control characters; keeps state across reads.
#[derive(Debug, Default)]
pub(crate) struct AnsiFilter {
    state: FilterState,
    /// Bytes consumed by the current sequence.
    len: usize,
}

impl AnsiFilter {
    /// Appends the cleaned form of `data` to `out`.
    pub(crate) fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        let n = data.len();
        while i < n {
            if self.state == FilterState::Ground {
                let start = i;
                while i < n && !SPECIAL[data[i] as usize] {
                    i += 1;
                }
                out.extend_from_slice(&data[start..i]);
                if i < n {
                    // ESC starts a sequence; any other special byte is dropped
                    if data[i] == ESC {
                        self.state = FilterState::Esc;
                        self.len = 1;
                    }
                    i += 1;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            self.len += 1;
            match self.state {
                // handled above, without a byte-by-byte state machine
                FilterState::Ground => {}
                FilterState::Esc => match b {
                    b'[' => self.state = FilterState::Csi,
                    b']' | b'P' | b'X' | b'^' | b'_' => self.state = FilterState::Str,
                    0x20..=0x2f => self.state = FilterState::EscIntermediate,
                    0x30..=0x7e => self.state = FilterState::Ground,
                    ESC => self.len = 1,
                    _ => self.abort(b, out),
                },
                FilterState::EscIntermediate => match b {
                    0x20..=0x2f if self.len < MAX_CSI => {}
                    0x30..=0x7e => self.state = FilterState::Ground,
                    _ => self.abort(b, out),
                },
                FilterState::Csi => match b {
                    0x20..=0x3f if self.len < MAX_CSI => {}
                    0x40..=0x7e => self.state = FilterState::Ground,
                    _ => self.abort(b, out),
                },
                FilterState::Str => match b {
                    BEL => self.state = FilterState::Ground,
                    ESC => self.state = FilterState::StrEsc,
                    // an unterminated string must not eat the console: a line end or a very
                    // long string ends it
                    b'\n' | b'\r' => self.abort(b, out),
                    _ if self.len > MAX_OSC => self.abort(b, out),
                    _ => {}
                },
                FilterState::StrEsc => match b {
                    b'\\' => self.state = FilterState::Ground,
                    // ESC starting another sequence ends the string
                    b'[' => self.state = FilterState::Csi,
                    _ => self.state = FilterState::Str,
                },
            }
        }
    }

    /// A malformed sequence: drop what was consumed, go back to text, and treat `b` as text.
    fn abort(&mut self, b: u8, out: &mut Vec<u8>) {
        self.state = FilterState::Ground;
        self.len = 0;
        if b == ESC {
            self.state = FilterState::Esc;
            self.len = 1;
        } else if !SPECIAL[b as usize] {
            out.push(b);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lines for the transcript.

/// Splits cleaned output into lines: `\n`, `\r\n` and lone `\r` end a line; the empty "line"
/// between a `\r` (or a flush) and the `\n` / `\r` that follows is not reported. Secrets are
/// masked in each line before it is reported; a piece of a line reported before its end (a
/// flush, or [`MAX_LINE`] reached) keeps back an end that may be the start of a secret or of a
/// UTF-8 character.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
    /// A line was just ended by `\r` or flushed, and nothing came since.
    at_boundary: bool,
    /// Scratch space for lines that need masking or byte-preserving decoding.
    masked: Vec<u8>,
    text: String,
}

impl LineSplitter {
    pub(crate) fn feed(&mut self, data: &[u8], secrets: &Secrets, sink: &mut dyn Transcript) {
        // One search of the whole chunk: when no secret is in it, only a line that began
        // before it (in `partial`) can hold one, across the boundary.
        let none = Secrets::default();
        let in_chunk = if !secrets.is_empty() && secrets.occurs_in(data) {
            secrets
        } else {
            &none
        };
        let mut start = 0;
        for pos in memchr::memchr2_iter(b'\n', b'\r', data) {
            let term = data[pos];
            let piece = &data[start..pos];
            start = pos + 1;
            if self.partial.is_empty() && piece.is_empty() && self.at_boundary {
                if term == b'\n' {
                    self.at_boundary = false;
                }
                continue;
            }
            if self.partial.is_empty() {
                emit(piece, in_chunk, &mut self.masked, &mut self.text, sink);
            } else {
                self.partial.extend_from_slice(piece);
                emit(
                    &self.partial,
                    secrets,
                    &mut self.masked,
                    &mut self.text,
                    sink,
                );
                self.partial.clear();
            }
            self.at_boundary = term == b'\r';
        }
        let rest = &data[start..];
        if !rest.is_empty() {
            self.at_boundary = false;
            self.partial.extend_from_slice(rest);
            if self.partial.len() >= MAX_LINE {
                self.emit_piece(secrets, false, sink);
            }
        }
    }

    /// Reports the partial line, if any; unless `all`, an end that may be the start of a
    /// secret or of a character stays for the next feed.
    pub(crate) fn flush(&mut self, secrets: &Secrets, all: bool, sink: &mut dyn Transcript) {
        if !self.partial.is_empty() {
            self.emit_piece(secrets, all, sink);
            self.at_boundary = self.partial.is_empty();
        }
    }

    /// Reports the partial line before its end. With `all`, a held-back secret start is
    /// masked rather than kept.
    fn emit_piece(&mut self, secrets: &Secrets, all: bool, sink: &mut dyn Transcript) {
        secrets.mask_in_place(&mut self.partial);
        let secret_tail = secrets.held_tail(&self.partial);
        if all {
            if secret_tail > 0 {
                self.partial.truncate(self.partial.len() - secret_tail);
                self.partial.extend_from_slice(MASK.as_bytes());
            }
            emit(
                &self.partial,
                &Secrets::default(),
                &mut self.masked,
                &mut self.text,
                sink,
            );
            self.partial.clear();
            return;
        }
        let hold = secret_tail.max(incomplete_utf8_tail(&self.partial));
        let cut = self.partial.len() - hold;
        if cut > 0 {
            // already masked
            emit(
                &self.partial[..cut],
                &Secrets::default(),
                &mut self.masked,
                &mut self.text,
                sink,
            );
            self.partial.drain(..cut);
        }
    }
}

/// Masks `line`, turns it into text (every byte kept) and reports it.
fn emit(
    line: &[u8],
    secrets: &Secrets,
    masked: &mut Vec<u8>,
    text: &mut String,
    sink: &mut dyn Transcript,
) {
    let line = if secrets.mask_into(line, masked) {
        &masked[..]
    } else {
        line
    };
    if let Ok(s) = std::str::from_utf8(line) {
        if memchr::memchr(0xee, line).is_none() {
            sink.received(s);
            return;
        }
    }
    text.clear();
    push_console_text(line, text);
    sink.received(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(chunks: &[&[u8]]) -> String {
        let mut f = AnsiFilter::default();
        let mut out = Vec::new();
        for c in chunks {
            f.feed(c, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn filter_removes_csi_osc_and_controls() {
        assert_eq!(clean(&[b"/ # \x1b[6n"]), "/ # ");
        assert_eq!(
            clean(&[b"\x1b[0;32m  OK  \x1b[0m] Started"]),
            "  OK  ] Started"
        );
        assert_eq!(clean(&[b"a\x1b]0;title\x07b"]), "ab");
        assert_eq!(clean(&[b"a\x1b]0;title\x1b\\b"]), "ab");
        assert_eq!(clean(&[b"a\x1b(Bb\x1b7c\x1b8d"]), "abcd");
        assert_eq!(clean(&[b"a\0b\x08c\td\r\n\x7f"]), "abc\td\r\n");
        assert_eq!(clean(&[b"x\x1b[", b"1;3", b"1m", b"red"]), "xred");
        assert_eq!(clean(&[b"x\x1b", b"[K", b"y"]), "xy");
        // a malformed CSI does not eat the line end
        assert_eq!(clean(&[b"a\x1b[12\nb"]), "a\nb");
        // an unterminated OSC stops at the line end
        assert_eq!(clean(&[b"a\x1b]0;never ends\nb"]), "a\nb");
        assert_eq!(clean(&["é\x1b[Kü".as_bytes()]), "éü");
    }

    fn split(chunks: &[&[u8]], flush_after: bool) -> Vec<String> {
        split_masked(chunks, flush_after, &Secrets::default())
    }

    fn split_masked(chunks: &[&[u8]], flush_after: bool, secrets: &Secrets) -> Vec<String> {
        let mut s = LineSplitter::default();
        let mut t = VecTranscript::new();
        for c in chunks {
            s.feed(c, secrets, &mut t);
        }
        if flush_after {
            s.flush(secrets, false, &mut t);
        }
        t.received_lines()
    }

    /// Counts lines not yet flushed; remembers how many were pending at each flush.
    struct Batching(Arc<Mutex<(usize, Vec<usize>)>>);

    impl Transcript for Batching {
        fn received(&mut self, _line: &str) {
            self.0.lock().unwrap().0 += 1;
        }
        fn sent(&mut self, _text: &str) {}
        fn flush(&mut self) {
            let mut g = self.0.lock().unwrap();
            let n = std::mem::take(&mut g.0);
            g.1.push(n);
        }
    }

    /// The lines of a read are flushed together, and none is left unflushed when expect
    /// returns.
    #[tokio::test]
    async fn a_read_s_lines_are_flushed_before_expect_returns() {
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let seen = Arc::new(Mutex::new((0, Vec::new())));
        let mut s = Session::new(Box::new(ours), "test", Box::new(Batching(seen.clone())));
        theirs
            .write_all(b"one\ntwo\nthree\nprompt# ")
            .await
            .unwrap();
        let m = s
            .expect(&[Regex::new("prompt# ").unwrap()], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(m.index, 0);
        let g = seen.lock().unwrap();
        assert_eq!(g.0, 0, "nothing pending");
        assert_eq!(g.1.iter().sum::<usize>(), 4, "{:?}", g.1);
        assert!(g.1.contains(&3), "one read, one batch: {:?}", g.1);
    }

    #[test]
    fn lines_crlf_cr_and_blank() {
        assert_eq!(
            split(&[b"a\r\nb\nc\rd\r\r\ne\n"], false),
            ["a", "b", "c", "d", "e"]
        );
        assert_eq!(split(&[b"a\r", b"\nb\r", b"\n"], false), ["a", "b"]);
        assert_eq!(
            split(&[b"a\n\nb\r\n\r\nc\n"], false),
            ["a", "", "b", "", "c"]
        );
        assert_eq!(split(&[b"pro", b"mpt# "], true), ["prompt# "]);
        assert_eq!(
            split(&[b"10%\r20%\r100%\r\n"], false),
            ["10%", "20%", "100%"]
        );
    }

    #[test]
    fn flush_then_line_end_is_not_a_blank_line() {
        let none = Secrets::default();
        let mut s = LineSplitter::default();
        let mut t = VecTranscript::new();
        s.feed(b"login: ", &none, &mut t);
        s.flush(&none, false, &mut t);
        s.feed(b"\r\nnext\n", &none, &mut t);
        assert_eq!(t.received_lines(), ["login: ", "next"]);
    }

    #[test]
    fn a_flushed_piece_keeps_back_a_secret_start() {
        let sec = Secrets::new(["pa55 # word"]);
        let mut s = LineSplitter::default();
        let mut t = VecTranscript::new();
        for piece in [&b"Password: pa55"[..], b" # ", b"wo", b"rd\r\nok "] {
            s.feed(piece, &sec, &mut t);
            s.flush(&sec, false, &mut t);
        }
        assert_eq!(t.received_lines(), ["Password: ", "[MASKED]", "ok "]);
        // a flush that ends the connection masks a held-back start
        let mut t = VecTranscript::new();
        s.feed(b"\nlogin: pa55 #", &sec, &mut t);
        s.flush(&sec, false, &mut t);
        assert_eq!(t.received_lines(), ["login: "]);
        s.flush(&sec, true, &mut t);
        assert_eq!(t.received_lines(), ["login: ", "[MASKED]"]);
        // no secrets: a flush reports everything but a cut character
        assert_eq!(
            split_masked(&[b"ab\xc3"], true, &Secrets::default()),
            ["ab"]
        );
        let none = Secrets::default();
        let mut t = VecTranscript::new();
        s.feed(b"ab\xc3", &none, &mut t);
        s.flush(&none, false, &mut t);
        s.feed(b"\xa9\n", &none, &mut t);
        assert_eq!(t.received_lines(), ["ab", "\u{e9}"]);
    }

    #[test]
    fn invalid_utf8_is_kept_byte_by_byte() {
        let lines = split(&[b"a\xffb\xc3\n"], false);
        assert_eq!(lines, ["a\u{efff}b\u{efc3}"]);
        assert_eq!(crate::console::text::text_bytes(&lines[0]), b"a\xffb\xc3");
    }
}
