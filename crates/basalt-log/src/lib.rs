//! The daemons' logging (`basalt-master`, `basalt-worker`): the process's one `tracing`
//! subscriber, set once at the start of `main`. Under systemd, when journald takes records, it
//! sends each event to the journal with its fields as journal fields (`job_id` is `JOB_ID`, so
//! `journalctl -u basalt-worker JOB_ID=42` works); anywhere else (a terminal, a test's pipe, a
//! log file) it writes one compact line per event on stderr.
//!
//! Where the records go is decided by [`choose`], a pure function of what the process sees
//! ([`Surroundings`]): systemd connected stderr to the journal when `JOURNAL_STREAM` names
//! stderr's device and inode (what systemd's documentation says to check). `INVOCATION_ID`
//! alone is not enough, as every descendant of a unit inherits it (a CI runner's tests, a
//! shell in a terminal service): it counts only when stderr goes nowhere (closed or
//! `/dev/null`, `StandardError=null`), where the records would otherwise be lost.
//!
//! On stderr the line is [`terminal`]'s. The filter is `tracing-subscriber`'s `Targets` (`info`, `warn,basalt_worker=debug`): the
//! `RUST_LOG` syntax without its span and regex directives, which would link a regex engine
//! into the lean worker.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

pub mod terminal;

/// The journal's socket for native records (systemd's fixed path; `tracing-journald` uses it).
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// The filter when none is given: info and above.
pub const DEFAULT_FILTER: &str = "info";

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log filter '{filter}': {reason} (expected LEVEL or TARGET=LEVEL,..., e.g. 'info' or 'warn,basalt_worker=debug')")]
    Filter { filter: String, reason: String },
    #[error("a log subscriber is already set: {0}")]
    Init(#[from] tracing_subscriber::util::TryInitError),
}

/// What stderr is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StderrKind {
    /// A terminal (colours on).
    Terminal,
    /// Nowhere: a character device that is not a terminal (`/dev/null`).
    Null,
    /// A pipe, a socket, a file.
    Stream,
}

/// stderr as `fstat` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stderr {
    pub dev: u64,
    pub ino: u64,
    pub kind: StderrKind,
}

/// What [`choose`] decides on: the process's environment, its stderr and the journal socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Surroundings {
    /// `JOURNAL_STREAM` (`DEVICE:INODE` of the stream systemd connected stdout/stderr to).
    pub journal_stream: Option<String>,
    /// Whether `INVOCATION_ID` is set (systemd sets it for each run of a unit).
    pub invocation_id: bool,
    /// stderr; `None` when it is closed.
    pub stderr: Option<Stderr>,
    /// Whether [`JOURNAL_SOCKET`] exists.
    pub journal_socket: bool,
}

impl Surroundings {
    /// This process's.
    pub fn of_this_process() -> Surroundings {
        let nonempty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Surroundings {
            journal_stream: nonempty("JOURNAL_STREAM").map(|v| v.to_string_lossy().into_owned()),
            invocation_id: nonempty("INVOCATION_ID").is_some(),
            stderr: stderr(),
            journal_socket: std::path::Path::new(JOURNAL_SOCKET).exists(),
        }
    }
}

/// stderr's device, inode and kind (`None` when fd 2 is closed).
fn stderr() -> Option<Stderr> {
    let err = std::io::stderr();
    let fd = err.as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    let kind = if err.is_terminal() {
        StderrKind::Terminal
    } else if meta.file_type().is_char_device() {
        StderrKind::Null
    } else {
        StderrKind::Stream
    };
    Some(Stderr {
        dev: meta.dev(),
        ino: meta.ino(),
        kind,
    })
}

/// Where the records go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// journald, through [`JOURNAL_SOCKET`].
    Journal,
    /// One compact line per event on stderr, coloured when `ansi`.
    Terminal { ansi: bool },
}

/// The journal when systemd runs this process with stderr going to the journal (or nowhere)
/// and the journal's socket exists; stderr otherwise.
pub fn choose(s: &Surroundings) -> Sink {
    let names_stderr = |stream: &str| {
        let (dev, ino) = stream.split_once(':').unwrap_or((stream, ""));
        match (s.stderr, dev.parse::<u64>(), ino.parse::<u64>()) {
            (Some(e), Ok(dev), Ok(ino)) => e.dev == dev && e.ino == ino,
            _ => false,
        }
    };
    let to_journal = s.journal_stream.as_deref().is_some_and(names_stderr);
    let to_nowhere = s.stderr.is_none_or(|e| e.kind == StderrKind::Null);
    if s.journal_socket && (to_journal || (s.invocation_id && to_nowhere)) {
        Sink::Journal
    } else {
        Sink::Terminal {
            ansi: s.stderr.is_some_and(|e| e.kind == StderrKind::Terminal),
        }
    }
}

/// Sets the process's subscriber for the daemon `name` (journald's `SYSLOG_IDENTIFIER`) with
/// `filter` ([`DEFAULT_FILTER`] syntax), and says where it sends. A journal that refuses the
/// first record (no journald listening) falls back to stderr, with a warning there.
pub fn init(name: &str, filter: &str) -> Result<Sink, LogError> {
    let targets = parse_filter(filter)?;
    let surroundings = Surroundings::of_this_process();
    let refused = match choose(&surroundings) {
        Sink::Journal => match journal(name) {
            Ok(layer) => {
                tracing_subscriber::registry()
                    .with(layer.with_filter(targets))
                    .try_init()?;
                return Ok(Sink::Journal);
            }
            Err(e) => Some(e),
        },
        Sink::Terminal { .. } => None,
    };
    let ansi = surroundings
        .stderr
        .is_some_and(|e| e.kind == StderrKind::Terminal);
    let terminal = tracing_subscriber::fmt::layer()
        .compact()
        .fmt_fields(terminal::Fields::default())
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    tracing_subscriber::registry()
        .with(terminal.with_filter(targets))
        .try_init()?;
    if let Some(e) = refused {
        tracing::warn!("the journal ({JOURNAL_SOCKET}) refused a record ({e}): logging to stderr");
    }
    Ok(Sink::Terminal { ansi })
}

/// `filter` as `Targets`. A target is a Rust path (`basalt_worker::daemon`): anything else (a
/// file name in `BASALT_LOG` left by a script) is refused rather than taken as a target that
/// matches nothing, which would log nothing at all.
pub fn parse_filter(filter: &str) -> Result<Targets, LogError> {
    let error = |reason: String| LogError::Filter {
        filter: filter.to_string(),
        reason,
    };
    for directive in filter.split(',') {
        let target = directive.split_once('=').map_or(directive, |(t, _)| t);
        let path = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-';
        if target.is_empty() && !directive.is_empty() || !target.chars().all(path) {
            return Err(error(format!("'{directive}' is not LEVEL or TARGET=LEVEL")));
        }
    }
    filter.parse().map_err(|e| error(format!("{e}")))
}

/// The journald layer: fields without a prefix (`job_id` is `JOB_ID`), syslog's priorities
/// (info is 6, debug 7), `SYSLOG_IDENTIFIER` the daemon's name.
fn journal(name: &str) -> std::io::Result<tracing_journald::Layer> {
    use tracing_journald::{Priority, PriorityMappings};
    Ok(tracing_journald::Layer::new()?
        .with_field_prefix(None)
        .with_syslog_identifier(name.to_string())
        .with_priority_mappings(PriorityMappings {
            info: Priority::Informational,
            debug: Priority::Debug,
            ..PriorityMappings::new()
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(kind: StderrKind) -> Option<Stderr> {
        Some(Stderr {
            dev: 25,
            ino: 1234,
            kind,
        })
    }

    fn under_systemd() -> Surroundings {
        Surroundings {
            journal_stream: Some("25:1234".into()),
            invocation_id: true,
            stderr: at(StderrKind::Stream),
            journal_socket: true,
        }
    }

    #[test]
    fn the_journal_when_systemd_connected_stderr_to_it() {
        assert_eq!(choose(&under_systemd()), Sink::Journal);
        let without_invocation = Surroundings {
            invocation_id: false,
            ..under_systemd()
        };
        assert_eq!(choose(&without_invocation), Sink::Journal);
    }

    #[test]
    fn stderr_when_the_journal_socket_is_absent() {
        let s = Surroundings {
            journal_socket: false,
            ..under_systemd()
        };
        assert_eq!(choose(&s), Sink::Terminal { ansi: false });
    }

    #[test]
    fn stderr_when_journal_stream_names_another_stream() {
        // inherited from a parent unit (a CI runner, a shell started by a service)
        for stream in ["25:9999", "26:1234", "garbage", "25", ":", "25:1234:7"] {
            let s = Surroundings {
                journal_stream: Some(stream.into()),
                ..under_systemd()
            };
            assert_eq!(choose(&s), Sink::Terminal { ansi: false }, "{stream}");
        }
    }

    #[test]
    fn invocation_id_alone_counts_only_when_stderr_goes_nowhere() {
        let s = |stderr| Surroundings {
            journal_stream: None,
            invocation_id: true,
            stderr,
            journal_socket: true,
        };
        assert_eq!(choose(&s(at(StderrKind::Null))), Sink::Journal);
        assert_eq!(choose(&s(None)), Sink::Journal);
        assert_eq!(
            choose(&s(at(StderrKind::Stream))),
            Sink::Terminal { ansi: false }
        );
        assert_eq!(
            choose(&s(at(StderrKind::Terminal))),
            Sink::Terminal { ansi: true }
        );
        // a closed stderr outside systemd: nowhere to write, still not the journal
        let outside = Surroundings {
            invocation_id: false,
            ..s(None)
        };
        assert_eq!(choose(&outside), Sink::Terminal { ansi: false });
    }

    #[test]
    fn a_terminal_gets_colours_and_nothing_else_does() {
        let plain = Surroundings::default();
        assert_eq!(choose(&plain), Sink::Terminal { ansi: false });
        let tty = Surroundings {
            stderr: at(StderrKind::Terminal),
            ..Surroundings::default()
        };
        assert_eq!(choose(&tty), Sink::Terminal { ansi: true });
    }

    #[test]
    fn filters_are_levels_and_rust_targets() {
        for good in [
            "info",
            "off",
            "warn,basalt_worker=debug",
            "basalt_master::engine=trace",
            "basalt_worker",
            "3",
        ] {
            assert!(parse_filter(good).is_ok(), "{good}");
        }
        for bad in [
            "/var/log/x.log",
            "info,target/logs/a.log",
            "=info",
            "a b=info",
            "info,x=loud",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_filter_is_refused_with_what_is_expected() {
        let e = init("basalt-test", "info,basalt=loud").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("'info,basalt=loud'"), "{text}");
        assert!(text.contains("TARGET=LEVEL"), "{text}");
    }
}
