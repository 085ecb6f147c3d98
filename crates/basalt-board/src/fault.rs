//! Faults the simulated board can be asked to show, for testing a dispatcher's error paths.
//!
//! The same text form is used on the command line (`--fault SPEC`, repeatable) and on the
//! control socket (`fault SPEC`):
//!
//! | spec | effect |
//! | --- | --- |
//! | `none` | clears every fault |
//! | `hang-at PHASE` | the board stops (prints nothing more, ignores input) when the boot reaches `PHASE` |
//! | `panic [MESSAGE]` | the kernel log is cut at the script's `panic` label (or its end) by `Kernel panic - not syncing: MESSAGE` and the board stops |
//! | `garbage` | random binary noise (invalid UTF-8, NUL, ANSI escape sequences) is interleaved into the console output |
//! | `drop-console [SECONDS] [at PHASE]` | the console client is disconnected and connections are refused for `SECONDS` (default 5); with `at PHASE` when the boot reaches `PHASE` (once), otherwise at once |
//!
//! Phases, in boot order: `uboot` (before the U-Boot banner: a silent board), `autoboot`
//! (the countdown is shown, then nothing: key presses are ignored), `kernel` (after
//! `Starting kernel ...`), `login` (after the kernel log, before the login prompt),
//! `shell` (after login, before the shell prompt).
//!
//! Faults other than `none` add to the current set (a new `hang-at` replaces the old one).

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

/// A point of the boot where a fault can strike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Power-on, before U-Boot prints anything.
    Uboot,
    /// The autoboot countdown.
    Autoboot,
    /// After `Starting kernel ...`.
    Kernel,
    /// After the kernel log, before the login prompt.
    Login,
    /// Before the shell prompt.
    Shell,
}

impl Phase {
    /// All phases, in boot order.
    pub const ALL: [Phase; 5] = [
        Phase::Uboot,
        Phase::Autoboot,
        Phase::Kernel,
        Phase::Login,
        Phase::Shell,
    ];

    /// The name used on the command line and the control socket.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Uboot => "uboot",
            Phase::Autoboot => "autoboot",
            Phase::Kernel => "kernel",
            Phase::Login => "login",
            Phase::Shell => "shell",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Phase {
    type Err = FaultParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                FaultParseError(format!(
                    "unknown phase '{s}' (phases: uboot, autoboot, kernel, login, shell)"
                ))
            })
    }
}

/// A fault specification could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FaultParseError(pub String);

/// The default panic message.
pub const DEFAULT_PANIC: &str = "VFS: Unable to mount root fs on unknown-block(0,0)";

/// One fault request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Clear all faults.
    None,
    /// Stop at a phase.
    HangAt(Phase),
    /// Kernel panic with this message.
    Panic(String),
    /// Noise in the output.
    Garbage,
    /// Drop the console client and refuse connections for a while.
    DropConsole {
        /// How long connections are refused.
        duration: Duration,
        /// When: at once (`None`) or when the boot reaches this phase.
        at: Option<Phase>,
    },
}

impl FromStr for Fault {
    type Err = FaultParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let bad = |m: &str| Err(FaultParseError(m.to_string()));
        match words.as_slice() {
            ["none"] => Ok(Fault::None),
            ["hang-at", phase] => Ok(Fault::HangAt(phase.parse()?)),
            ["hang-at", ..] => bad("usage: hang-at PHASE"),
            ["panic"] => Ok(Fault::Panic(DEFAULT_PANIC.to_string())),
            ["panic", ..] => {
                let message = s.trim_start().trim_start_matches("panic").trim();
                Ok(Fault::Panic(message.to_string()))
            }
            ["garbage"] => Ok(Fault::Garbage),
            ["drop-console", rest @ ..] => {
                let mut duration = Duration::from_secs(5);
                let mut at = None;
                let mut rest = rest;
                if let [secs, tail @ ..] = rest {
                    if *secs != "at" {
                        let v: f64 = secs
                            .parse()
                            .ok()
                            .filter(|v: &f64| v.is_finite() && *v >= 0.0 && *v <= 86_400.0)
                            .ok_or_else(|| {
                                FaultParseError(format!(
                                    "drop-console: '{secs}' is not a number of seconds (0..86400)"
                                ))
                            })?;
                        duration = Duration::from_secs_f64(v);
                        rest = tail;
                    }
                }
                match rest {
                    [] => {}
                    ["at", phase] => at = Some(phase.parse()?),
                    _ => return bad("usage: drop-console [SECONDS] [at PHASE]"),
                }
                Ok(Fault::DropConsole { duration, at })
            }
            _ => Err(FaultParseError(format!(
                "unknown fault '{}' (faults: hang-at PHASE, panic [MESSAGE], garbage, drop-console [SECONDS] [at PHASE], none)",
                s.trim()
            ))),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::None => f.write_str("none"),
            Fault::HangAt(p) => write!(f, "hang-at {p}"),
            Fault::Panic(m) => write!(f, "panic {m}"),
            Fault::Garbage => f.write_str("garbage"),
            Fault::DropConsole { duration, at } => {
                write!(f, "drop-console {}", duration.as_secs_f64())?;
                if let Some(p) = at {
                    write!(f, " at {p}")?;
                }
                Ok(())
            }
        }
    }
}

/// The faults in force, shared by the boot, the console and the control socket.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    inner: Mutex<FaultSet>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct FaultSet {
    pub hang_at: Option<Phase>,
    pub panic: Option<String>,
    pub garbage: bool,
    /// A pending `drop-console ... at PHASE`.
    pub drop_at: Option<(Duration, Phase)>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, FaultSet> {
        // A poisoned lock only means a panic elsewhere; the data is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a fault; returns a console drop to perform at once, if any.
    pub fn apply(&self, fault: &Fault) -> Option<Duration> {
        let mut set = self.lock();
        match fault {
            Fault::None => *set = FaultSet::default(),
            Fault::HangAt(p) => set.hang_at = Some(*p),
            Fault::Panic(m) => set.panic = Some(m.clone()),
            Fault::Garbage => set.garbage = true,
            Fault::DropConsole { duration, at: None } => return Some(*duration),
            Fault::DropConsole {
                duration,
                at: Some(p),
            } => set.drop_at = Some((*duration, *p)),
        }
        None
    }

    /// A copy of the current set.
    pub fn snapshot(&self) -> FaultSet {
        self.lock().clone()
    }

    /// Whether garbage is on.
    pub fn garbage(&self) -> bool {
        self.lock().garbage
    }

    /// Takes a pending console drop for `phase` (it fires once).
    pub fn take_drop_at(&self, phase: Phase) -> Option<Duration> {
        let mut set = self.lock();
        match set.drop_at {
            Some((d, p)) if p == phase => {
                set.drop_at = None;
                Some(d)
            }
            _ => None,
        }
    }

    /// The current set as text, e.g. `hang-at kernel, garbage` or `none`.
    pub fn describe(&self) -> String {
        let set = self.lock();
        let mut parts = Vec::new();
        if let Some(p) = set.hang_at {
            parts.push(format!("hang-at {p}"));
        }
        if let Some(m) = &set.panic {
            parts.push(format!("panic {m}"));
        }
        if set.garbage {
            parts.push("garbage".to_string());
        }
        if let Some((d, p)) = set.drop_at {
            parts.push(format!("drop-console {} at {p}", d.as_secs_f64()));
        }
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// A burst of output noise: invalid UTF-8, control bytes, ANSI escape sequences.
pub(crate) fn garbage_burst(rng: &mut fastrand::Rng) -> Vec<u8> {
    const ANSI: &[&[u8]] = &[
        b"\x1b[31m",
        b"\x1b[0m",
        b"\x1b[2J",
        b"\x1b[H",
        b"\x1b[?25l",
        b"\x1b[6n",
        b"\x1b]0;basalt\x07",
        b"\x1b[K",
        b"\x1b(0",
    ];
    const INVALID_UTF8: &[&[u8]] = &[
        b"\xff",
        b"\xfe",
        b"\xc3\x28",
        b"\xe2\x82",
        b"\xf0\x28\x8c\x28",
        b"\x80",
    ];
    let mut out = Vec::new();
    let pieces = rng.usize(2..8);
    for _ in 0..pieces {
        match rng.u8(0..4) {
            0 => out.extend_from_slice(ANSI[rng.usize(0..ANSI.len())]),
            1 => out.extend_from_slice(INVALID_UTF8[rng.usize(0..INVALID_UTF8.len())]),
            2 => {
                for _ in 0..rng.usize(1..12) {
                    out.push(rng.u8(..));
                }
            }
            _ => out.extend_from_slice(&[0, 7, 8, 0x7f][..rng.usize(1..5)]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_faults() {
        assert_eq!("none".parse::<Fault>().unwrap(), Fault::None);
        assert_eq!(
            "hang-at kernel".parse::<Fault>().unwrap(),
            Fault::HangAt(Phase::Kernel)
        );
        assert_eq!(
            "panic".parse::<Fault>().unwrap(),
            Fault::Panic(DEFAULT_PANIC.into())
        );
        assert_eq!(
            "panic Oops: bad thing".parse::<Fault>().unwrap(),
            Fault::Panic("Oops: bad thing".into())
        );
        assert_eq!("garbage".parse::<Fault>().unwrap(), Fault::Garbage);
        assert_eq!(
            "drop-console".parse::<Fault>().unwrap(),
            Fault::DropConsole {
                duration: Duration::from_secs(5),
                at: None
            }
        );
        assert_eq!(
            "drop-console 2 at login".parse::<Fault>().unwrap(),
            Fault::DropConsole {
                duration: Duration::from_secs(2),
                at: Some(Phase::Login)
            }
        );
        assert_eq!(
            "drop-console at shell".parse::<Fault>().unwrap(),
            Fault::DropConsole {
                duration: Duration::from_secs(5),
                at: Some(Phase::Shell)
            }
        );
        for bad in [
            "hang-at",
            "hang-at moon",
            "drop-console x",
            "drop-console 1 at",
            "explode",
            "",
        ] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }

    #[test]
    fn fault_set() {
        let f = Faults::default();
        assert_eq!(f.describe(), "none");
        f.apply(&Fault::HangAt(Phase::Login));
        f.apply(&Fault::Garbage);
        assert_eq!(f.describe(), "hang-at login, garbage");
        assert_eq!(
            f.apply(&Fault::DropConsole {
                duration: Duration::from_secs(1),
                at: None
            }),
            Some(Duration::from_secs(1))
        );
        f.apply(&Fault::DropConsole {
            duration: Duration::from_secs(1),
            at: Some(Phase::Kernel),
        });
        assert_eq!(f.take_drop_at(Phase::Login), None);
        assert_eq!(f.take_drop_at(Phase::Kernel), Some(Duration::from_secs(1)));
        assert_eq!(f.take_drop_at(Phase::Kernel), None);
        f.apply(&Fault::None);
        assert_eq!(f.describe(), "none");
    }

    #[test]
    fn garbage_is_not_utf8_usually() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut invalid = 0;
        for _ in 0..50 {
            let b = garbage_burst(&mut rng);
            assert!(!b.is_empty());
            if std::str::from_utf8(&b).is_err() {
                invalid += 1;
            }
        }
        assert!(invalid > 10);
    }
}
