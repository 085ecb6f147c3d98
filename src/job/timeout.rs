//! LAVA timeouts: `{days|hours|minutes|seconds: N, skip?: bool}` summed to seconds.

use crate::diag::Report;
use crate::reader::{integer, Fields};
use crate::yaml::Node;
use std::fmt;
use std::time::Duration;

/// LAVA's default action timeout (`ACTION_TIMEOUT`), used when nothing else applies.
pub const DEFAULT_ACTION_SECS: u64 = 30;

/// A timeout from a job or device file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout {
    pub secs: u64,
    /// On a test block: a timeout moves on to the next block instead of failing the job.
    pub skip: bool,
}

impl Timeout {
    pub const fn secs(secs: u64) -> Timeout {
        Timeout { secs, skip: false }
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.secs)
    }

    /// Reads a timeout mapping. An empty or zero timeout means the default 30 s, as in LAVA.
    pub fn parse(r: &mut Report, node: &Node, path: &str) -> Option<Timeout> {
        let mut f = Fields::new(r, node, path)?;
        let mut total: u64 = 0;
        let mut units = 0;
        for (unit, mult) in [
            ("days", 86_400),
            ("hours", 3_600),
            ("minutes", 60),
            ("seconds", 1),
        ] {
            if let Some(v) = f.opt(unit) {
                units += 1;
                let n = integer(r, v, &f.sub(unit), 0, 10_000_000)?;
                total = total.saturating_add((n as u64).saturating_mul(mult));
            }
        }
        let skip = f.opt_bool(r, "skip").unwrap_or(false);
        if units == 0 {
            r.error(
                node,
                path,
                "a timeout needs one of days, hours, minutes or seconds",
            );
        }
        f.finish(r, "timeout");
        Some(Timeout {
            secs: if total == 0 {
                DEFAULT_ACTION_SECS
            } else {
                total
            },
            skip,
        })
    }
}

impl fmt::Display for Timeout {
    /// `HH:MM:SS`, as LAVA prints timeouts in its log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hms(self.secs, f)
    }
}

/// Writes seconds as `HH:MM:SS`.
pub fn hms(secs: u64, f: &mut impl fmt::Write) -> fmt::Result {
    write!(
        f,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load;

    #[test]
    fn parses_units() {
        let mut r = Report::new("t");
        let n = load("{minutes: 2, seconds: 5}").unwrap();
        assert_eq!(Timeout::parse(&mut r, &n, "t").unwrap().secs, 125);
        let n = load("{}").unwrap();
        let t = Timeout::parse(&mut r, &n, "t");
        assert_eq!(t.map(|t| t.secs), Some(30));
        assert!(r.has_errors());
        let mut r = Report::new("t");
        let n = load("{hours: x}").unwrap();
        assert!(Timeout::parse(&mut r, &n, "t").is_none());
        assert!(r.has_errors());
        let mut s = String::new();
        hms(3725, &mut s).unwrap();
        assert_eq!(s, "01:02:05");
    }
}
