//! The job log and results, in LAVA's formats, fanned out to a set of sinks.
//!
//! Every record goes to `output.yaml` as `- {"dt": "...", "lvl": "...", "msg": ...}` (one YAML
//! flow mapping per line, readable by `yaml.safe_load` whatever the board printed), secrets
//! replaced by `[MASKED]`; `results` records are also kept for `results.yaml`; the terminal
//! shows progress unless quiet.
//!
//! Where records go is a set of [`LogSink`]s: [`FileSink`] (`output.yaml` and `results.yaml`),
//! [`TerminalSink`] and [`ChannelSink`] (sequence-numbered [`Record`]s for a worker to batch
//! and send). A record is masked and put in its `output.yaml` form once; every sink gets the
//! same [`Record`].
//!
//! Strings keep their bytes: console lines come from the expect engine with every byte that is
//! not UTF-8 as a character U+EF80–U+EFFF (`basalt_hal::console::text`), and every other string
//! gets the same form, so one rule gives any string's bytes back (docs/log-format.md).
//!
//! `results.yaml` is written as results come, so the results of a job that ends early are
//! kept. A file is written in whole records: when a write fails (disk full, read-only) the file
//! is cut back to its last whole record, nothing more is written to it, and
//! [`JobLog::write_failed`] wakes up so that the job ends at once. Past its size limit
//! (`--max-log-bytes`) the log gets one record saying it was truncated and no more.
//!
//! Console lines go through a [`ConsoleTranscript`], which hands the lines of one console read
//! to the log under one lock instead of one lock per line.

use crate::error::FailureCause;
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

    /// The level of a LAVA log record's `lvl`.
    pub fn from_name(name: &str) -> Option<Level> {
        Some(match name {
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warning" => Level::Warning,
            "error" => Level::Error,
            "exception" => Level::Exception,
            "results" => Level::Results,
            "target" => Level::Target,
            "input" => Level::Input,
            "feedback" => Level::Feedback,
            "event" => Level::Event,
            _ => return None,
        })
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

/// One record of the log, as every sink gets it: masked, its strings in the byte-keeping form,
/// and already written out as its `output.yaml` line so that no sink emits it again.
#[derive(Clone, Debug)]
pub struct Record {
    /// Its line number in `output.yaml`: 1 for the first record, then consecutive, the
    /// truncation note included (0 only while a record waits to be numbered).
    pub seq: u64,
    /// When it was logged (a console line: when it was read), `2026-08-21T16:25:29.123456+00:00`.
    pub dt: String,
    pub level: Level,
    /// A string or a mapping.
    pub msg: Node,
    /// The record as `output.yaml` has it: `- {"dt": …, "lvl": …, "msg": …}` and a newline.
    pub line: String,
}

impl Record {
    /// A record of `msg` (already masked and in the byte-keeping form), not yet numbered.
    fn new(dt: String, level: Level, msg: Node) -> Record {
        let hint = msg.as_str().map_or(64, str::len);
        let mut line = String::with_capacity(hint + 80);
        line.push_str("- {\"dt\": \"");
        line.push_str(&dt);
        line.push_str("\", \"lvl\": \"");
        line.push_str(level.name());
        line.push_str("\", \"msg\": ");
        emit_flow(&msg, &mut line);
        line.push_str("}\n");
        Record {
            seq: 0,
            dt,
            level,
            msg,
            line,
        }
    }

    /// Masks `msg` and, unless it is a console line (`console`, already in that form), puts
    /// it in the byte-keeping form; then [`Record::new`].
    fn prepare(secrets: &Secrets, dt: String, level: Level, msg: Node, console: bool) -> Record {
        Record::new(dt, level, prepare_node(secrets, msg, console))
    }
}

/// Why a sink could not take a record. The first error of any sink is the log's write error
/// ([`JobLog::write_error`]): the job ends Incomplete, as a job whose log went missing ran blind.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing a file failed (disk full, read-only file system).
    #[error("writing {file}: {source}")]
    Write {
        file: &'static str,
        source: std::io::Error,
    },
    /// A [`ChannelSink`]'s receiver is gone.
    #[error("sending the log: its receiver is gone")]
    Closed,
}

/// Where the log goes. Sinks are called under the log's lock, in the order they were added,
/// with records in `output.yaml`'s order; a sink that returns an error is dropped.
pub trait LogSink: Send {
    /// Takes the log's next record.
    fn record(&mut self, record: &Record) -> Result<(), SinkError>;

    /// Takes a record logged after the log reached its size limit (`--max-log-bytes`): it is
    /// in no log and has no number, but a result still counts and the terminal still shows
    /// it. By default it is dropped.
    fn past_limit(&mut self, level: Level, msg: &Node) -> Result<(), SinkError> {
        let _ = (level, msg);
        Ok(())
    }

    /// Writes what the sink buffers ([`JobLog::flush`]).
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
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

/// `output.yaml` (every record) and `results.yaml` (one block-style sequence item per result,
/// past the log's size limit too). On a write error both files stop there, each cut back to its
/// last whole record.
pub struct FileSink {
    out: RecordFile,
    results: RecordFile,
}

impl FileSink {
    /// Creates `output.yaml` and `results.yaml` in `dir`.
    pub fn create(dir: &crate::host::output::OutputDir) -> std::io::Result<FileSink> {
        Ok(FileSink::from_files(
            dir.create("output.yaml")?,
            dir.create("results.yaml")?,
        ))
    }

    fn from_files(out: File, results: File) -> FileSink {
        FileSink {
            out: RecordFile::new(out),
            results: RecordFile::new(results),
        }
    }

    fn result(&mut self, msg: &Node) -> Result<(), SinkError> {
        let item = emit_document(&Node::new(Value::Seq(vec![msg.clone()])));
        self.results
            .push(item.as_bytes(), true)
            .map_err(|source| SinkError::Write {
                file: "results.yaml",
                source,
            })
    }
}

impl LogSink for FileSink {
    fn record(&mut self, record: &Record) -> Result<(), SinkError> {
        self.out
            .push(record.line.as_bytes(), record.level != Level::Target)
            .map_err(|source| SinkError::Write {
                file: "output.yaml",
                source,
            })?;
        if record.level == Level::Results {
            self.result(&record.msg)?;
        }
        Ok(())
    }

    fn past_limit(&mut self, level: Level, msg: &Node) -> Result<(), SinkError> {
        if level == Level::Results {
            self.result(msg)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|source| SinkError::Write {
            file: "output.yaml",
            source,
        })?;
        self.results.flush().map_err(|source| SinkError::Write {
            file: "results.yaml",
            source,
        })
    }
}

/// The terminal ([`Verbosity::Normal`]): console, input, info, results, warnings and errors,
/// made safe to print (a board's noise must not drive the user's terminal).
pub struct TerminalSink;

impl LogSink for TerminalSink {
    fn record(&mut self, record: &Record) -> Result<(), SinkError> {
        print_terminal(record.level, &record.msg);
        Ok(())
    }

    fn past_limit(&mut self, level: Level, msg: &Node) -> Result<(), SinkError> {
        print_terminal(level, msg);
        Ok(())
    }
}

/// The sending end of a log channel ([`channel`]).
pub type LogSender = tokio::sync::mpsc::UnboundedSender<Record>;
/// The receiving end of a log channel ([`channel`]).
pub type LogReceiver = tokio::sync::mpsc::UnboundedReceiver<Record>;

/// A channel for a [`ChannelSink`]. Unbounded because a sink cannot wait (it runs under the
/// log's lock, called from async and blocking code alike) and must not drop a record; what it
/// holds is bounded by the log's size limit all the same, as the channel stops where
/// `output.yaml` does.
pub fn channel() -> (LogSender, LogReceiver) {
    tokio::sync::mpsc::unbounded_channel()
}

/// Sends every record of `output.yaml`, in its order, with its sequence number (from 1,
/// consecutive), e.g. to a worker that batches them to the master. It gets what `output.yaml`
/// gets and nothing more: the truncation note is its last record when the log reaches its
/// size limit. A receiver that is gone is a write error (the job ends).
pub struct ChannelSink(LogSender);

impl ChannelSink {
    pub fn new(tx: LogSender) -> ChannelSink {
        ChannelSink(tx)
    }
}

impl LogSink for ChannelSink {
    fn record(&mut self, record: &Record) -> Result<(), SinkError> {
        self.0.send(record.clone()).map_err(|_| SinkError::Closed)
    }
}

/// Writes every record's line to a writer at once, unbuffered: a worker's job process
/// streams its log on stdout this way, so a console line reaches the master as it is read.
pub struct WriterSink<W: std::io::Write + Send>(W);

impl<W: std::io::Write + Send> WriterSink<W> {
    pub fn new(writer: W) -> WriterSink<W> {
        WriterSink(writer)
    }
}

impl<W: std::io::Write + Send> LogSink for WriterSink<W> {
    fn record(&mut self, record: &Record) -> Result<(), SinkError> {
        let w = |source| SinkError::Write {
            file: "the log stream",
            source,
        };
        self.0.write_all(record.line.as_bytes()).map_err(w)?;
        self.0.flush().map_err(w)
    }
}

/// What the log's lock guards.
struct State {
    sinks: Vec<Box<dyn LogSink>>,
    results: Vec<Node>,
    /// Records logged so far (past the size limit too, the truncation note not).
    lines: u64,
    /// The last sequence number given (records in the log, the truncation note included).
    seq: u64,
    write_error: Option<String>,
    /// Bytes of `output.yaml` so far, and its limit.
    log_bytes: u64,
    max_log_bytes: u64,
    truncated: bool,
}

impl State {
    /// Logs one prepared record: numbers it and hands it to every sink, or, past the size
    /// limit, to their [`LogSink::past_limit`]; the first time past it, the truncation note
    /// first.
    fn commit(&mut self, mut record: Record, notify: &tokio::sync::Notify) {
        if !self.truncated && self.log_bytes + record.line.len() as u64 > self.max_log_bytes {
            self.truncated = true;
            let text = format!(
                "output.yaml reached its limit of {} (--max-log-bytes): the log is truncated here, the job goes on",
                crate::host::limits::show_size(self.max_log_bytes)
            );
            let mut note = Record::new(now_iso(), Level::Warning, Node::str(text));
            self.seq += 1;
            note.seq = self.seq;
            self.fan_out(notify, |s| s.record(&note));
        }
        self.lines += 1;
        if self.truncated {
            self.fan_out(notify, |s| s.past_limit(record.level, &record.msg));
        } else {
            self.log_bytes += record.line.len() as u64;
            self.seq += 1;
            record.seq = self.seq;
            self.fan_out(notify, |s| s.record(&record));
        }
        if record.level == Level::Results {
            self.results.push(record.msg);
        }
    }

    /// Calls `f` on every sink; a sink that fails is dropped and its error kept.
    fn fan_out(
        &mut self,
        notify: &tokio::sync::Notify,
        mut f: impl FnMut(&mut dyn LogSink) -> Result<(), SinkError>,
    ) {
        let mut error = None;
        self.sinks.retain_mut(|s| match f(s.as_mut()) {
            Ok(()) => true,
            Err(e) => {
                error.get_or_insert(e);
                false
            }
        });
        if let Some(e) = error {
            self.failed(e, notify);
        }
    }

    /// Records the first write error and wakes [`JobLog::write_failed`].
    fn failed(&mut self, e: SinkError, notify: &tokio::sync::Notify) {
        if self.write_error.is_none() {
            self.write_error = Some(e.to_string());
            notify.notify_one();
        }
    }
}

/// What the handles of one log share; the secrets are fixed at creation, so reading them takes
/// no lock.
struct Shared {
    secrets: Secrets,
    /// The values as given, for console sessions.
    secret_values: Vec<String>,
    /// Shared with the logs made by [`JobLog::with_more_secrets`].
    failed: Arc<tokio::sync::Notify>,
    state: Arc<Mutex<State>>,
}

/// A cheap handle to the job log; clone it into every task that reports.
#[derive(Clone)]
pub struct JobLog {
    shared: Arc<Shared>,
}

/// UTC now as `2026-08-21T16:25:29.123456+00:00`.
pub fn now_iso() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    iso_cached(d.as_secs() as i64, d.subsec_micros())
}

/// [`iso_from_unix`], with the date and time to the second kept from the previous call of this
/// thread: every record has a timestamp, and formatting the whole date was half the cost of
/// logging a console line (benches/log.rs).
fn iso_cached(secs: i64, micros: u32) -> String {
    thread_local! {
        /// The last second formatted: (UNIX seconds, `2026-08-21T16:25:29`).
        static SECOND: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != secs {
            let mut s = iso_from_unix(secs, 0);
            s.truncate(s.find('.').unwrap_or(s.len()));
            *second = (secs, s);
        }
        let mut out = String::with_capacity(second.1.len() + 13);
        out.push_str(&second.1);
        out.push('.');
        let mut digits = [b'0'; 6];
        let mut m = micros.min(999_999);
        for d in digits.iter_mut().rev() {
            *d = b'0' + (m % 10) as u8;
            m /= 10;
        }
        out.extend(digits.iter().map(|&d| char::from(d)));
        out.push_str("+00:00");
        out
    })
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
    /// [`crate::host::output::OutputDir::create`] creates them): a [`FileSink`] when there is a
    /// directory, a [`TerminalSink`] unless quiet.
    pub fn create_in(
        dir: Option<&crate::host::output::OutputDir>,
        verbosity: Verbosity,
        secrets: Vec<String>,
    ) -> std::io::Result<JobLog> {
        let mut sinks: Vec<Box<dyn LogSink>> = Vec::new();
        if let Some(d) = dir {
            sinks.push(Box::new(FileSink::create(d)?));
        }
        if verbosity == Verbosity::Normal {
            sinks.push(Box::new(TerminalSink));
        }
        let secret_values: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        Ok(JobLog {
            shared: Arc::new(Shared {
                secrets: Secrets::new(&secret_values),
                secret_values,
                failed: Arc::new(tokio::sync::Notify::new()),
                state: Arc::new(Mutex::new(State {
                    sinks,
                    results: Vec::new(),
                    lines: 0,
                    seq: 0,
                    write_error: None,
                    log_bytes: 0,
                    max_log_bytes: u64::MAX,
                    truncated: false,
                })),
            }),
        })
    }

    /// The same log (the same files, sinks, results and line numbers) masking `extra`
    /// secrets too: a held board's log for one boot, whose job brings its own secrets.
    pub fn with_more_secrets(&self, extra: Vec<String>) -> JobLog {
        let mut values = self.shared.secret_values.clone();
        values.extend(extra.into_iter().filter(|s| !s.is_empty()));
        JobLog {
            shared: Arc::new(Shared {
                secrets: Secrets::new(&values),
                secret_values: values,
                failed: self.shared.failed.clone(),
                state: self.shared.state.clone(),
            }),
        }
    }

    /// Adds a sink after those there are; it gets the records logged from now on (add it
    /// before the first to get the whole log).
    pub fn add_sink(&self, sink: Box<dyn LogSink>) {
        self.with(|st| st.sinks.push(sink));
    }

    /// [`JobLog::add_sink`] as a builder.
    pub fn with_sink(self, sink: Box<dyn LogSink>) -> JobLog {
        self.add_sink(sink);
        self
    }

    /// A transcript for a console session that logs into this log ([`ConsoleTranscript`]).
    pub fn console(&self) -> ConsoleTranscript {
        ConsoleTranscript {
            log: self.clone(),
            pending: Vec::new(),
        }
    }

    /// Limits `output.yaml` to `max` bytes (`--max-log-bytes`).
    pub fn set_max_bytes(&self, max: u64) {
        self.with(|st| st.max_log_bytes = max);
    }

    /// Resolves once a sink failed (writing `output.yaml` or `results.yaml`, sending the log);
    /// says what failed.
    pub async fn write_failed(&self) -> String {
        self.shared.failed.notified().await;
        self.write_error().unwrap_or_default()
    }

    /// The first write error, if any.
    pub fn write_error(&self) -> Option<String> {
        self.with(|st| st.write_error.clone())
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut g = match self.shared.state.lock() {
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
    /// already in the byte-keeping form. The time is taken under the lock, so records logged
    /// one by one are in time order.
    fn write(&self, level: Level, msg: Node, console: bool) {
        let shared = &*self.shared;
        self.with(|st| {
            let record = Record::prepare(&shared.secrets, now_iso(), level, msg, console);
            st.commit(record, &shared.failed);
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
    /// not UTF-8 as U+EF80–U+EFFF). A console session logs through [`JobLog::console`] instead,
    /// which takes the lock once per read rather than once per line.
    pub fn target(&self, line: &str) {
        self.write(Level::Target, Node::str(line), true);
    }

    /// Text sent to the device.
    pub fn input(&self, text: &str) {
        self.record(Level::Input, Node::str(text));
    }

    /// A result: `{definition, case, result, ...}`. A failed case that names no `cause` is the
    /// test's ([`FailureCause::Test`]): a case the test reported failed or never reported.
    pub fn result(&self, mut fields: Vec<(&str, Node)>) {
        let failed = fields
            .iter()
            .any(|(k, v)| *k == "result" && v.scalar_text().as_deref() == Some("fail"));
        if failed && !fields.iter().any(|(k, _)| *k == "cause") {
            fields.push(("cause", Node::str(FailureCause::Test.name())));
        }
        let m = fields.into_iter().map(|(k, v)| (Node::str(k), v)).collect();
        self.record(Level::Results, Node::new(Value::Map(m)));
    }

    /// Masks a string with the job's secrets (for text that does not go through the log).
    pub fn masked(&self, s: &str) -> String {
        self.shared.secrets.mask_str(s).into_owned()
    }

    /// The secrets, for console sessions ([`basalt_hal::console::Session::set_secrets`]).
    pub fn secrets(&self) -> Vec<String> {
        self.shared.secret_values.clone()
    }

    /// Number of records so far (LAVA's log line numbers, for `starttc`/`endtc`).
    pub fn line_count(&self) -> u64 {
        self.with(|st| st.lines)
    }

    /// The results logged so far.
    pub fn results(&self) -> Vec<Node> {
        self.with(|st| st.results.clone())
    }

    /// Flushes every sink (`output.yaml` and `results.yaml`); reports the first write error.
    pub fn flush(&self) -> Result<(), String> {
        let notify = &self.shared.failed;
        self.with(|st| {
            st.fan_out(notify, |s| s.flush());
            match &st.write_error {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            }
        })
    }
}

/// A console session's transcript into the job log: received lines become `target` records,
/// sent text an `input` record. Received lines are prepared (masked, timed when they came) and
/// kept until the expect engine ends the read ([`Transcript::flush`]), then logged under one
/// lock; anything kept is logged before a sent text and when the transcript is dropped, so the
/// log's order is the console's.
///
/// [`Transcript::flush`]: basalt_hal::console::Transcript::flush
pub struct ConsoleTranscript {
    log: JobLog,
    pending: Vec<Record>,
}

impl ConsoleTranscript {
    /// Logs the lines kept, in order, under one lock.
    fn hand_over(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = &mut self.pending;
        let notify = &self.log.shared.failed;
        self.log.with(|st| {
            for record in pending.drain(..) {
                st.commit(record, notify);
            }
        });
    }
}

impl basalt_hal::console::Transcript for ConsoleTranscript {
    fn received(&mut self, line: &str) {
        let secrets = &self.log.shared.secrets;
        let record = Record::prepare(secrets, now_iso(), Level::Target, Node::str(line), true);
        self.pending.push(record);
    }

    fn sent(&mut self, text: &str) {
        self.hand_over();
        self.log.input(text);
    }

    fn flush(&mut self) {
        self.hand_over();
    }
}

impl Drop for ConsoleTranscript {
    fn drop(&mut self) {
        self.hand_over();
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
    if let Some(line) = terminal_line(level, msg) {
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

/// A record as the terminal shows it (`  | ` console, `  > ` input, `result: `, `warning: `,
/// `error: `), made safe to print; `None` for the levels the terminal leaves out (debug,
/// feedback, event).
pub fn terminal_line(level: Level, msg: &Node) -> Option<String> {
    let text = match msg.as_str() {
        Some(s) if level == Level::Input => terminal_text(s.trim_end()).into_owned(),
        Some(s) => terminal_text(s).into_owned(),
        None => {
            let mut s = String::new();
            emit_flow(msg, &mut s);
            terminal_text(&s).into_owned()
        }
    };
    Some(match level {
        Level::Target => format!("  | {text}"),
        Level::Input => format!("  > {text}"),
        Level::Info => text,
        Level::Results => format!("result: {text}"),
        Level::Warning => format!("warning: {text}"),
        Level::Error | Level::Exception => format!("error: {text}"),
        Level::Debug | Level::Feedback | Level::Event => return None,
    })
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
    fn cached_dates_are_the_dates() {
        for (secs, micros) in [
            (1_787_329_529, 123_456),
            (1_787_329_529, 7),
            (1_787_329_530, 999_999),
            (0, 0),
            (1_787_329_530, 10),
            (253_402_300_800, 5),
        ] {
            assert_eq!(iso_cached(secs, micros), iso_from_unix(secs, micros));
        }
        assert_eq!(now_iso().len(), "2026-08-21T16:25:29.123456+00:00".len());
    }

    #[test]
    fn a_log_with_more_secrets_is_the_same_log() {
        let log = JobLog::create(None, Verbosity::Quiet, vec!["lease-token".into()]).unwrap();
        let (tx, mut rx) = channel();
        log.add_sink(Box::new(ChannelSink::new(tx)));
        let boot = log.with_more_secrets(vec!["boot-password".into(), String::new()]);
        boot.info("lease-token and boot-password");
        log.info("boot-password stays a boot's secret");
        assert_eq!(log.line_count(), 2, "one log: its lines are counted once");
        assert_eq!(boot.line_count(), 2);
        assert_eq!(boot.secrets(), ["lease-token", "boot-password"]);
        let first = rx.try_recv().unwrap();
        assert!(
            first.line.contains("[MASKED] and [MASKED]"),
            "{}",
            first.line
        );
        let second = rx.try_recv().unwrap();
        assert!(
            second.line.contains("boot-password stays"),
            "{}",
            second.line
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
        let full = || {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap()
        };
        let log = JobLog::create(None, Verbosity::Quiet, Vec::new())
            .unwrap()
            .with_sink(Box::new(FileSink::from_files(full(), full())));
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

    /// The records of `output.yaml` in `dir`, as lines.
    fn output_lines(dir: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(dir.join("output.yaml")).unwrap();
        text.lines().map(|l| format!("{l}\n")).collect()
    }

    /// A channel sink gets every record of `output.yaml` (console lines through a
    /// transcript, input, results, the truncation note) in order, numbered from 1, and
    /// nothing past the limit; results past it still reach `results.yaml`.
    #[test]
    fn a_channel_gets_what_output_yaml_gets() {
        use basalt_hal::console::Transcript;
        let dir = std::env::temp_dir().join(format!("basalt-log-chan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (tx, mut rx) = channel();
        let log = JobLog::create(Some(&dir), Verbosity::Quiet, vec!["s3cret".into()])
            .unwrap()
            .with_sink(Box::new(ChannelSink::new(tx)));
        log.set_max_bytes(3000);
        log.info("start: 1 boot");
        let mut console = log.console();
        for i in 0..5 {
            console.received(&format!("line {i} s3cret"));
        }
        console.sent("uname -a\n");
        console.received("Linux");
        console.flush();
        log.result(vec![("case", Node::str("before"))]);
        for i in 0..50 {
            console.received(&format!("more console output, line {i}"));
        }
        drop(console);
        log.result(vec![("case", Node::str("after"))]);
        log.flush().unwrap();
        let lines = output_lines(&dir);
        let mut got = Vec::new();
        while let Ok(r) = rx.try_recv() {
            got.push(r);
        }
        assert_eq!(got.len(), lines.len());
        for (i, (r, line)) in got.iter().zip(&lines).enumerate() {
            assert_eq!(r.seq, i as u64 + 1);
            assert_eq!(&r.line, line, "record {}", r.seq);
            assert!(line.contains(&format!("\"lvl\": \"{}\"", r.level.name())));
            assert!(line.starts_with(&format!("- {{\"dt\": \"{}\"", r.dt)));
        }
        assert!(!lines.concat().contains("s3cret"));
        assert_eq!(got[1].msg.as_str(), Some("line 0 [MASKED]"));
        assert_eq!(got[6].level, Level::Input);
        assert_eq!(got[7].msg.as_str(), Some("Linux"));
        let last = got.last().unwrap();
        assert_eq!(last.level, Level::Warning);
        assert!(
            last.line.contains("the log is truncated here"),
            "{}",
            last.line
        );
        let results = std::fs::read_to_string(dir.join("results.yaml")).unwrap();
        assert!(results.contains("case: before") && results.contains("case: after"));
        assert_eq!(log.results().len(), 2);
        std::fs::remove_dir_all(dir).ok();
    }

    /// Console lines wait for the end of the read, but come before what is sent next and are
    /// not lost when the transcript goes.
    #[test]
    fn console_lines_are_logged_in_order_at_the_end_of_a_read() {
        use basalt_hal::console::Transcript;
        let dir = std::env::temp_dir().join(format!("basalt-log-con-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = JobLog::create(Some(&dir), Verbosity::Quiet, Vec::new()).unwrap();
        let mut console = log.console();
        console.received("a");
        console.received("b");
        assert_eq!(log.line_count(), 0, "kept until the read ends");
        console.flush();
        assert_eq!(log.line_count(), 2);
        console.received("c");
        console.sent("x\n");
        console.received("d");
        drop(console);
        log.flush().unwrap();
        let msgs: Vec<String> = output_lines(&dir)
            .iter()
            .map(|l| {
                let doc = crate::yaml::load(l).unwrap();
                let rec = &doc.as_seq().unwrap()[0];
                let lvl = rec.get("lvl").and_then(Node::as_str).unwrap().to_string();
                format!(
                    "{lvl} {}",
                    rec.get("msg").and_then(Node::as_str).unwrap().trim_end()
                )
            })
            .collect();
        assert_eq!(
            msgs,
            ["target a", "target b", "target c", "input x", "target d"]
        );
        std::fs::remove_dir_all(dir).ok();
    }

    /// A channel whose receiver is gone is a write error: the job ends.
    #[test]
    fn a_closed_channel_is_a_write_error() {
        let (tx, rx) = channel();
        let log = JobLog::create(None, Verbosity::Quiet, Vec::new())
            .unwrap()
            .with_sink(Box::new(ChannelSink::new(tx)));
        log.info("received");
        drop(rx);
        log.info("lost");
        assert_eq!(
            log.flush(),
            Err("sending the log: its receiver is gone".to_string())
        );
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
