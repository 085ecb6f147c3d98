//! The job log and results, in LAVA's formats, through one channel.
//!
//! Every record goes to `output.yaml` as `- {"dt": "...", "lvl": "...", "msg": ...}` (one YAML
//! flow mapping per line, readable by `yaml.safe_load`), secrets replaced by `[MASKED]`;
//! `results` records are also kept for `results.yaml`; the terminal shows progress unless quiet.

use crate::yaml::{emit_flow, Node, Value};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

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

struct Inner {
    out: Option<BufWriter<File>>,
    results: Vec<Node>,
    secrets: Vec<String>,
    verbosity: Verbosity,
    lines: u64,
    write_error: Option<String>,
}

/// A cheap handle to the job log; clone it into every task that reports.
#[derive(Clone)]
pub struct JobLog {
    inner: Arc<Mutex<Inner>>,
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
    /// A log writing `output.yaml` in `dir` (or nowhere when `dir` is `None`).
    pub fn create(
        dir: Option<&Path>,
        verbosity: Verbosity,
        secrets: Vec<String>,
    ) -> std::io::Result<JobLog> {
        let out = match dir {
            Some(d) => Some(BufWriter::new(File::create(d.join("output.yaml"))?)),
            None => None,
        };
        Ok(JobLog {
            inner: Arc::new(Mutex::new(Inner {
                out,
                results: Vec::new(),
                secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect(),
                verbosity,
                lines: 0,
                write_error: None,
            })),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut g)
    }

    fn mask(secrets: &[String], s: &str) -> String {
        let mut out = s.to_string();
        for sec in secrets {
            if out.contains(sec.as_str()) {
                out = out.replace(sec.as_str(), "[MASKED]");
            }
        }
        out
    }

    /// Writes one record. `msg` is a string or a mapping.
    pub fn record(&self, level: Level, msg: Node) {
        self.with(|inner| {
            let msg = mask_node(&inner.secrets, msg);
            let mut line = String::with_capacity(96);
            line.push_str("- {\"dt\": \"");
            line.push_str(&now_iso());
            line.push_str("\", \"lvl\": \"");
            line.push_str(level.name());
            line.push_str("\", \"msg\": ");
            emit_flow(&msg, &mut line);
            line.push_str("}\n");
            if let Some(out) = inner.out.as_mut() {
                if let Err(e) = out.write_all(line.as_bytes()) {
                    inner.write_error.get_or_insert_with(|| e.to_string());
                }
            }
            inner.lines += 1;
            if inner.verbosity == Verbosity::Normal {
                print_terminal(level, &msg);
            }
            if level == Level::Results {
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

    /// One line of console output.
    pub fn target(&self, line: &str) {
        self.record(Level::Target, Node::str(line));
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
        self.with(|inner| Self::mask(&inner.secrets, s))
    }

    /// Number of records so far (LAVA's log line numbers, for `starttc`/`endtc`).
    pub fn line_count(&self) -> u64 {
        self.with(|inner| inner.lines)
    }

    /// The results logged so far.
    pub fn results(&self) -> Vec<Node> {
        self.with(|inner| inner.results.clone())
    }

    /// Flushes `output.yaml`; reports the first write error.
    pub fn flush(&self) -> Result<(), String> {
        self.with(|inner| {
            if let Some(out) = inner.out.as_mut() {
                if let Err(e) = out.flush() {
                    inner.write_error.get_or_insert_with(|| e.to_string());
                }
            }
            match &inner.write_error {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            }
        })
    }
}

fn mask_node(secrets: &[String], n: Node) -> Node {
    if secrets.is_empty() {
        return n;
    }
    match n.value {
        Value::Str(s) => Node::str(JobLog::mask(secrets, &s)),
        Value::Map(m) => Node::new(Value::Map(
            m.into_iter()
                .map(|(k, v)| (k, mask_node(secrets, v)))
                .collect(),
        )),
        Value::Seq(s) => Node::new(Value::Seq(
            s.into_iter().map(|v| mask_node(secrets, v)).collect(),
        )),
        other => Node::new(other),
    }
}

fn print_terminal(level: Level, msg: &Node) {
    let text = match msg.as_str() {
        Some(s) => s.to_string(),
        None => {
            let mut s = String::new();
            emit_flow(msg, &mut s);
            s
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = match level {
        Level::Target => writeln!(out, "  | {text}"),
        Level::Input => writeln!(out, "  > {}", text.trim_end()),
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
}
