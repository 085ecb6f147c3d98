//! The job log and results, in LAVA's formats, through one channel.
//!
//! Every record goes to `output.yaml` as `- {"dt": "...", "lvl": "...", "msg": ...}` (one YAML
//! flow mapping per line, readable by `yaml.safe_load` whatever the board printed), secrets
//! replaced by `[MASKED]`; `results` records are also kept for `results.yaml`; the terminal
//! shows progress unless quiet.
//!
//! Strings keep their bytes: console lines come from the expect engine with every byte that is
//! not UTF-8 as a character U+EF80–U+EFFF (`basalt_hal::console::text`), and every other string
//! gets the same form, so one rule gives any string's bytes back (docs/log-format.md).
//!
//! `results.yaml` is written as results come, so the results of a job that ends early are
//! kept. A file is written in whole records: when a write fails (disk full, read-only) the file
//! is cut back to its last whole record, nothing more is written to it, and
//! [`JobLog::write_failed`] wakes up so that the job ends at once. Past its size limit
//! (`--max-log-bytes`) `output.yaml` gets one record saying it was truncated and no more.

use crate::yaml::{emit_document, emit_flow, Node, Value};
use basalt_hal::console::text::{escape_raw_range, raw_byte_of, Secrets};
use std::borrow::Cow;
use std::fs::File;
use std::io::{Seek, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// LAVA's log levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
    Exception,
    Results,
    /// Output of the device.
    Target,
    /// What the dispatcher sent to the device.
    Input,
    Feedback,
    Event,
}

impl Level {
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
        }
    }
}

/// How much goes to the terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// Nothing but the final summary.
    Quiet,
    /// Action boundaries, results, errors and the console.
    Normal,
}

/// A file written in whole records: console lines are buffered (flushed at 32 KiB, or when a
/// line comes 250 ms after the last flush, and at [`JobLog::flush`]), other records written at
/// once.
struct RecordFile {
    file: File,
    buf: Vec<u8>,
    /// Bytes known to be on disk, all whole records.
    good: u64,
    last_flush: Instant,
}

impl RecordFile {
    fn new(file: File) -> RecordFile {
        RecordFile {
            file,
            buf: Vec::new(),
            good: 0,
            last_flush: Instant::now(),
        }
    }

    /// Adds a record; `now` writes it at once (everything but console lines: they are few,
    /// and a write error must show at once).
    fn push(&mut self, record: &[u8], now: bool) -> std::io::Result<()> {
        self.buf.extend_from_slice(record);
        if now
            || self.buf.len() >= 32 * 1024
            || self.last_flush.elapsed() >= Duration::from_millis(250)
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffer; on failure cuts the file back to its last whole record.
    fn flush(&mut self) -> std::io::Result<()> {
        self.last_flush = Instant::now();
        if self.buf.is_empty() {
            return Ok(());
        }
        match self.file.write_all(&self.buf) {
            Ok(()) => {
                self.good += self.buf.len() as u64;
                self.buf.clear();
                Ok(())
            }
            Err(e) => {
                self.buf.clear();
                let _ = self.file.set_len(self.good);
                let _ = self.file.seek(std::io::SeekFrom::Start(self.good));
                Err(e)
            }
        }
    }
}

struct Inner {
    out: Option<RecordFile>,
    /// `results.yaml`, one block-style sequence item per result.
    results_out: Option<RecordFile>,
    results: Vec<Node>,
    secrets: Secrets,
    /// The values as given, for console sessions.
    secret_values: Vec<String>,
    verbosity: Verbosity,
    lines: u64,
    write_error: Option<String>,
    /// Bytes of `output.yaml` so far, and its limit.
    log_bytes: u64,
    max_log_bytes: u64,
    truncated: bool,
}

impl Inner {
    /// Records the first write error (`what` names the file); nothing more is written.
    fn failed(&mut self, what: &str, e: std::io::Error, notify: &tokio::sync::Notify) {
        if self.write_error.is_none() {
            self.write_error = Some(format!("writing {what}: {e}"));
            notify.notify_one();
        }
        self.out = None;
        self.results_out = None;
    }
}

/// A cheap handle to the job log; clone it into every task that reports.
#[derive(Clone)]
pub struct JobLog {
    inner: Arc<Mutex<Inner>>,
    failed: Arc<tokio::sync::Notify>,
}

/// UTC now as `2026-08-21T16:25:29.123456+00:00`.
pub fn now_iso() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    iso_from_unix(d.as_secs() as i64, d.subsec_micros())
}

/// Formats a UNIX time as ISO-8601 UTC with microseconds.
pub fn iso_from_unix(secs: i64, micros: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}+00:00",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

impl JobLog {
    /// A log writing `output.yaml` and `results.yaml` in `dir` (or nowhere when `dir` is
    /// `None`); `secrets` are masked in every record and on the terminal.
    pub fn create(
        dir: Option<&Path>,
        verbosity: Verbosity,
        secrets: Vec<String>,
    ) -> std::io::Result<JobLog> {
        match dir {
            Some(d) => {
                let out = crate::host::output::OutputDir::open(d)?;
                JobLog::create_in(Some(&out), verbosity, secrets)
            }
            None => JobLog::create_in(None, verbosity, secrets),
        }
    }

    /// [`JobLog::create`] in an open output directory (files created as
    /// [`crate::host::output::OutputDir::create`] creates them).
    pub fn create_in(
        dir: Option<&crate::host::output::OutputDir>,
        verbosity: Verbosity,
        secrets: Vec<String>,
    ) -> std::io::Result<JobLog> {
        let (out, results_out) = match dir {
            Some(d) => (
                Some(RecordFile::new(d.create("output.yaml")?)),
                Some(RecordFile::new(d.create("results.yaml")?)),
            ),
            None => (None, None),
        };
        let secret_values: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        Ok(JobLog {
            inner: Arc::new(Mutex::new(Inner {
                out,
                results_out,
                results: Vec::new(),
                secrets: Secrets::new(&secret_values),
                secret_values,
                verbosity,
                lines: 0,
                write_error: None,
                log_bytes: 0,
                max_log_bytes: u64::MAX,
                truncated: false,
            })),
            failed: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Limits `output.yaml` to `max` bytes (`--max-log-bytes`).
    pub fn set_max_bytes(&self, max: u64) {
        self.with(|inner| inner.max_log_bytes = max);
    }

    /// Resolves once writing `output.yaml` or `results.yaml` failed; says what failed.
    pub async fn write_failed(&self) -> String {
        self.failed.notified().await;
        self.write_error().unwrap_or_default()
    }

    /// The first write error, if any.
    pub fn write_error(&self) -> Option<String> {
        self.with(|inner| inner.write_error.clone())
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut g)
    }

    /// Writes one record. `msg` is a string or a mapping.
    pub fn record(&self, level: Level, msg: Node) {
        self.write(level, msg, false);
    }

    /// Writes one record; `console` when `msg` is a console line from the expect engine,
    /// already in the byte-keeping form.
    fn write(&self, level: Level, msg: Node, console: bool) {
        self.with(|inner| {
            let msg = prepare_node(&inner.secrets, msg, console);
            let mut line = String::with_capacity(96);
            line.push_str("- {\"dt\": \"");
            line.push_str(&now_iso());
            line.push_str("\", \"lvl\": \"");
            line.push_str(level.name());
            line.push_str("\", \"msg\": ");
            emit_flow(&msg, &mut line);
            line.push_str("}\n");
            if !inner.truncated && inner.log_bytes + line.len() as u64 > inner.max_log_bytes {
                inner.truncated = true;
                let mut note = String::with_capacity(200);
                note.push_str("- {\"dt\": \"");
                note.push_str(&now_iso());
                note.push_str("\", \"lvl\": \"warning\", \"msg\": ");
                let text = format!(
                    "output.yaml reached its limit of {} (--max-log-bytes): the log is truncated here, the job goes on",
                    crate::host::limits::show_size(inner.max_log_bytes)
                );
                emit_flow(&Node::str(text.clone()), &mut note);
                note.push_str("}\n");
                if let Some(out) = inner.out.as_mut() {
                    if let Err(e) = out.push(note.as_bytes(), true) {
                        inner.failed("output.yaml", e, &self.failed);
                    }
                }
                if inner.verbosity == Verbosity::Normal {
                    print_terminal(Level::Warning, &Node::str(text));
                }
            }
            if !inner.truncated {
                inner.log_bytes += line.len() as u64;
                if let Some(out) = inner.out.as_mut() {
                    if let Err(e) = out.push(line.as_bytes(), level != Level::Target) {
                        inner.failed("output.yaml", e, &self.failed);
                    }
                }
            }
            inner.lines += 1;
            if inner.verbosity == Verbosity::Normal {
                print_terminal(level, &msg);
            }
            if level == Level::Results {
                if let Some(out) = inner.results_out.as_mut() {
                    let item = emit_document(&Node::new(Value::Seq(vec![msg.clone()])));
                    if let Err(e) = out.push(item.as_bytes(), true) {
                        inner.failed("results.yaml", e, &self.failed);
                    }
                }
                inner.results.push(msg);
            }
        });
    }

    pub fn info(&self, msg: impl Into<String>) {
        self.record(Level::Info, Node::str(msg));
    }

    pub fn debug(&self, msg: impl Into<String>) {
        self.record(Level::Debug, Node::str(msg));
    }

    pub fn warning(&self, msg: impl Into<String>) {
        self.record(Level::Warning, Node::str(msg));
    }

    pub fn error(&self, msg: impl Into<String>) {
        self.record(Level::Error, Node::str(msg));
    }

    /// One line of console output, as the expect engine's transcript gives it (bytes that are
    /// not UTF-8 as U+EF80–U+EFFF).
    pub fn target(&self, line: &str) {
        self.write(Level::Target, Node::str(line), true);
    }

    /// Text sent to the device.
    pub fn input(&self, text: &str) {
        self.record(Level::Input, Node::str(text));
    }

    /// A result: `{definition, case, result, ...}`.
    pub fn result(&self, fields: Vec<(&str, Node)>) {
        let m = fields.into_iter().map(|(k, v)| (Node::str(k), v)).collect();
        self.record(Level::Results, Node::new(Value::Map(m)));
    }

    /// Masks a string with the job's secrets (for text that does not go through the log).
    pub fn masked(&self, s: &str) -> String {
        self.with(|inner| inner.secrets.mask_str(s).into_owned())
    }

    /// The secrets, for console sessions ([`basalt_hal::console::Session::set_secrets`]).
    pub fn secrets(&self) -> Vec<String> {
        self.with(|inner| inner.secret_values.clone())
    }

    /// Number of records so far (LAVA's log line numbers, for `starttc`/`endtc`).
    pub fn line_count(&self) -> u64 {
        self.with(|inner| inner.lines)
    }

    /// The results logged so far.
    pub fn results(&self) -> Vec<Node> {
        self.with(|inner| inner.results.clone())
    }

    /// Flushes `output.yaml` and `results.yaml`; reports the first write error.
    pub fn flush(&self) -> Result<(), String> {
        self.with(|inner| {
            if let Some(out) = inner.out.as_mut() {
                if let Err(e) = out.flush() {
                    inner.failed("output.yaml", e, &self.failed);
                }
            }
            if let Some(out) = inner.results_out.as_mut() {
                if let Err(e) = out.flush() {
                    inner.failed("results.yaml", e, &self.failed);
                }
            }
            match &inner.write_error {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            }
        })
    }
}

/// Masks every string of `n` and, unless it is a console line (already in that form), puts it
/// in the byte-keeping form.
fn prepare_node(secrets: &Secrets, n: Node, console: bool) -> Node {
    match n.value {
        Value::Str(s) => {
            let s = if console {
                Cow::Borrowed(s.as_str())
            } else {
                escape_raw_range(&s)
            };
            let masked = secrets.mask_str(&s);
            Node::str(masked.into_owned())
        }
        Value::Map(m) => Node::new(Value::Map(
            m.into_iter()
                .map(|(k, v)| {
                    (
                        prepare_node(secrets, k, false),
                        prepare_node(secrets, v, console),
                    )
                })
                .collect(),
        )),
        Value::Seq(s) => Node::new(Value::Seq(
            s.into_iter()
                .map(|v| prepare_node(secrets, v, console))
                .collect(),
        )),
        other => Node::new(other),
    }
}

/// Text for the terminal: control characters as escapes, bytes that are not UTF-8 as `\xNN`
/// (a board's noise must not drive the user's terminal).
fn terminal_text(s: &str) -> Cow<'_, str> {
    let plain = |c: char| c == '\t' || c == '\n' || !(c.is_control() || raw_byte_of(c).is_some());
    if s.chars().all(plain) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if let Some(b) = raw_byte_of(c) {
            out.push_str(&format!("\\x{b:02x}"));
        } else if plain(c) {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    Cow::Owned(out)
}

fn print_terminal(level: Level, msg: &Node) {
    let text = match msg.as_str() {
        Some(s) if level == Level::Input => terminal_text(s.trim_end()).into_owned(),
        Some(s) => terminal_text(s).into_owned(),
        None => {
            let mut s = String::new();
            emit_flow(msg, &mut s);
            s
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = match level {
        Level::Target => writeln!(out, "  | {text}"),
        Level::Input => writeln!(out, "  > {text}"),
        Level::Info => writeln!(out, "{text}"),
        Level::Results => writeln!(out, "result: {text}"),
        Level::Warning => writeln!(out, "warning: {text}"),
        Level::Error | Level::Exception => writeln!(out, "error: {text}"),
        Level::Debug | Level::Feedback | Level::Event => Ok(()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso_from_unix(0, 0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(
            iso_from_unix(1_787_329_529, 123_456),
            "2026-08-21T16:25:29.123456+00:00"
        );
    }

    #[test]
    fn writes_lava_lines_and_masks_secrets() {
        let dir = std::env::temp_dir().join(format!("basalt-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = JobLog::create(Some(&dir), Verbosity::Quiet, vec!["s3cret".into()]).unwrap();
        log.info("start: 1 deployimages");
        log.target("token=s3cret here \u{1b}");
        log.result(vec![
            ("definition", Node::str("lava")),
            ("case", Node::str("job")),
            ("result", Node::str("pass")),
        ]);
        log.flush().unwrap();
        let text = std::fs::read_to_string(dir.join("output.yaml")).unwrap();
        assert!(!text.contains("s3cret"));
        let doc = crate::yaml::load(&text).unwrap();
        let items = doc.as_seq().unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[1].get("msg").and_then(Node::as_str),
            Some("token=[MASKED] here \u{1b}")
        );
        assert_eq!(
            items[2].path(&["msg", "case"]).and_then(Node::as_str),
            Some("job")
        );
        assert_eq!(log.results().len(), 1);
        std::fs::remove_dir_all(dir).ok();
    }

    /// A python3 with PyYAML: the system's (python3-yaml, scripts/install-deps.sh) first.
    pub(crate) fn python3() -> &'static str {
        if std::path::Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Text no YAML reader takes unescaped, console bytes that are not UTF-8, long lines: the
    /// log loads with PyYAML (pure and libyaml) and with our reader, every string is the text
    /// it was, and every string's bytes come back by the rule of docs/log-format.md.
    #[test]
    fn output_yaml_loads_with_pyyaml_whatever_the_text() {
        use basalt_hal::console::text::{console_text, text_bytes};
        let dir = std::env::temp_dir().join(format!("basalt-log-any-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // (console line?, bytes)
        let mut cases: Vec<(bool, Vec<u8>)> = Vec::new();
        let specials = [
            0x2028, 0x2029, 0xfeff, 0xfffe, 0xffff, 0xfffd, 0xe000, 0xef7f, 0xef80, 0xefc3, 0xefff,
            0xf000, 0x1_f980, 0x10_ffff,
        ];
        for cp in (0u32..0x100).chain(specials) {
            let c = char::from_u32(cp).unwrap();
            cases.push((false, format!("a{c}b").into_bytes()));
        }
        let all: String = (1u32..0x100).filter_map(char::from_u32).collect();
        cases.push((false, all.into_bytes()));
        cases.push((
            false,
            b"quotes \" ' `, backslashes \\ \\\\ \\\" \\x41 \\u0041, tab\there, cr\r, crlf\r\n, lf\n, #: {[,]}"
                .to_vec(),
        ));
        cases.push((false, Vec::new()));
        cases.push((false, b" leading and trailing spaces ".to_vec()));
        let long: String = "0123456789 \"\\\t\u{85}é".repeat(30_000);
        cases.push((false, long.into_bytes()));
        // console lines: each byte alone, all bytes, invalid sequences, random bytes
        for b in 0..=255u8 {
            cases.push((true, vec![b'<', b, b'>']));
        }
        cases.push((true, (0..=255u8).collect()));
        cases.push((
            true,
            b"\xed\xa0\x80 \xc0\xaf \xf4\x90\x80\x80 \xe2\x82 \xef\xbe\x80 \xc3\xa9".to_vec(),
        ));
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let random: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        cases.push((true, random));
        let log = JobLog::create(Some(&dir), Verbosity::Quiet, Vec::new()).unwrap();
        for (console, b) in &cases {
            if *console {
                log.target(&console_text(b));
            } else {
                log.info(String::from_utf8(b.clone()).unwrap());
            }
        }
        log.result(vec![
            ("definition", Node::str("0_t\u{1}\u{efff}")),
            ("case", Node::str("c\u{9b}\u{7f}\"")),
            ("result", Node::str("pass")),
        ]);
        log.flush().unwrap();
        let results = Node::new(Value::Seq(log.results()));
        std::fs::write(
            dir.join("results.yaml"),
            crate::yaml::emit_document(&results),
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.join("output.yaml")).unwrap();
        assert_eq!(text.lines().count(), cases.len() + 1, "one line per record");

        // our reader
        let doc = crate::yaml::load(&text).unwrap();
        let items = doc.as_seq().unwrap();
        for (i, (console, b)) in cases.iter().enumerate() {
            let msg = items[i].get("msg").and_then(Node::as_str).unwrap();
            assert_eq!(text_bytes(msg), *b, "record {i}");
            let in_raw_range = |c: char| ('\u{ef80}'..='\u{efff}').contains(&c);
            if !console && !String::from_utf8_lossy(b).chars().any(in_raw_range) {
                assert_eq!(
                    msg.as_bytes(),
                    b.as_slice(),
                    "record {i}: the text as it was"
                );
            }
        }

        // PyYAML, both loaders; the recovery recipe of docs/log-format.md
        let expected: String = cases.iter().map(|(_, b)| hex(b) + "\n").collect::<String>();
        std::fs::write(dir.join("expected.txt"), expected).unwrap();
        let script = r#"
import sys, yaml
def log_bytes(s):
    return b"".join(bytes([ord(c) - 0xEF00]) if 0xEF80 <= ord(c) <= 0xEFFF
                    else c.encode("utf-8") for c in s)
d = sys.argv[1]
want = [bytes.fromhex(l) for l in open(d + "/expected.txt").read().split("\n")[:-1]]
raw = open(d + "/output.yaml", encoding="utf-8").read()
for loader in (yaml.SafeLoader, yaml.CSafeLoader):
    recs = yaml.load(raw, Loader=loader)
    assert len(recs) == len(want) + 1, (loader, len(recs))
    for i, w in enumerate(want):
        got = log_bytes(recs[i]["msg"])
        assert got == w, (loader.__name__, i, got[:80], w[:80])
    assert recs[-1]["msg"]["case"] == "c\x9b\x7f\"", recs[-1]
    res = yaml.load(open(d + "/results.yaml", encoding="utf-8").read(), Loader=loader)
    assert log_bytes(res[0]["definition"]) == "0_t\x01\uefff".encode(), res
assert yaml.safe_load(raw)[0]["lvl"] == "info"
print("ok", len(want))
"#;
        let out = std::process::Command::new(python3())
            .arg("-c")
            .arg(script)
            .arg(&dir)
            .output()
            .expect("python3 runs (scripts/install-deps.sh installs python3-yaml)");
        assert!(
            out.status.success(),
            "PyYAML: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_write_error_ends_the_log_at_once() {
        let log = JobLog::create(None, Verbosity::Quiet, Vec::new()).unwrap();
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        log.with(|inner| inner.out = Some(RecordFile::new(full)));
        log.info("first record");
        let e = tokio::time::timeout(std::time::Duration::from_secs(1), log.write_failed())
            .await
            .expect("the failure is reported at once");
        assert!(e.starts_with("writing output.yaml: "), "{e}");
        assert!(log.flush().is_err());
    }

    #[test]
    fn past_its_limit_the_log_says_so_once() {
        let dir = std::env::temp_dir().join(format!("basalt-log-limit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = JobLog::create(Some(&dir), Verbosity::Quiet, Vec::new()).unwrap();
        log.set_max_bytes(1000);
        for i in 0..100 {
            log.target(&format!("console line {i}"));
        }
        log.result(vec![("case", Node::str("after"))]);
        log.flush().unwrap();
        let text = std::fs::read_to_string(dir.join("output.yaml")).unwrap();
        assert!(text.len() < 1000 + 300, "{}", text.len());
        assert_eq!(text.matches("the log is truncated here").count(), 1);
        assert!(crate::yaml::load(&text).is_ok());
        let results = std::fs::read_to_string(dir.join("results.yaml")).unwrap();
        assert!(results.contains("case: after"), "{results}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn terminal_text_is_safe() {
        assert_eq!(terminal_text("plain\ttext é"), "plain\ttext é");
        assert_eq!(
            terminal_text("a\u{1b}[31mb\u{efff}\u{9b}"),
            "a\\u{1b}[31mb\\xff\\u{9b}"
        );
    }
}
