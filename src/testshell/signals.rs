//! The signals test scripts print on the console (`<LAVA_SIGNAL_TESTCASE ...>` and friends),
//! parsed into a typed [`Signal`]. Format: LAVA's test shell protocol, `reference/lava-formats.md` §1.

use std::fmt;

/// The regex the dispatcher waits for: `<LAVA_SIGNAL_(\S+) ([^>]+)>`.
pub const SIGNAL_PATTERN: &str = r"<LAVA_SIGNAL_(\S+) ([^>]+)>";
/// Printed by lava-test-runner when it ends.
pub const RUNNER_EXIT: &str = "<LAVA_TEST_RUNNER EXIT>";
/// Printed by lava-test-runner when a definition's install.sh failed.
pub const RUNNER_INSTALL_FAIL: &str = "<LAVA_TEST_RUNNER INSTALL_FAIL>";

/// A test case result as LAVA allows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestResult {
    Pass,
    Fail,
    Skip,
    Unknown,
}

impl TestResult {
    pub fn parse(s: &str) -> Option<TestResult> {
        Some(match s {
            "pass" => TestResult::Pass,
            "fail" => TestResult::Fail,
            "skip" => TestResult::Skip,
            "unknown" => TestResult::Unknown,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TestResult::Pass => "pass",
            TestResult::Fail => "fail",
            TestResult::Skip => "skip",
            TestResult::Unknown => "unknown",
        }
    }
}

impl fmt::Display for TestResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed signal.
#[derive(Clone, Debug, PartialEq)]
pub enum Signal {
    StartRun {
        id: String,
        uuid: String,
    },
    EndRun {
        id: String,
        uuid: String,
    },
    StartTc(String),
    EndTc(String),
    TestCase {
        id: String,
        /// The raw result text; the fix-up table and the allowed values are applied by the caller.
        result: String,
        measurement: Option<String>,
        units: Option<String>,
    },
    TestSetStart(String),
    TestSetStop,
    TestRaise(String),
    TestReference {
        id: String,
        result: String,
        url: String,
    },
    TestEvent(String),
    TestFeedback(String),
    /// A signal basalt does not know: logged, not fatal.
    Other {
        name: String,
        params: Vec<String>,
    },
}

/// Why a signal is malformed (LAVA raises TestError or JobError for these).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad {name} signal: {message}")]
pub struct SignalError {
    pub name: String,
    pub message: String,
}

/// Parses the two groups of [`SIGNAL_PATTERN`].
pub fn parse(name: &str, params: &str) -> Result<Signal, SignalError> {
    let p: Vec<String> = params.split_whitespace().map(str::to_string).collect();
    let err = |message: &str| SignalError {
        name: name.to_string(),
        message: message.to_string(),
    };
    let two = |p: &[String]| -> Result<(String, String), SignalError> {
        match p {
            [a, b, ..] => Ok((a.clone(), b.clone())),
            _ => Err(err("expected a test run id and a uuid")),
        }
    };
    Ok(match name {
        "STARTRUN" => {
            let (id, uuid) = two(&p)?;
            Signal::StartRun { id, uuid }
        }
        "ENDRUN" => {
            let (id, uuid) = two(&p)?;
            Signal::EndRun { id, uuid }
        }
        "STARTTC" => Signal::StartTc(
            p.first()
                .cloned()
                .ok_or_else(|| err("missing test case id"))?,
        ),
        "ENDTC" => Signal::EndTc(
            p.first()
                .cloned()
                .ok_or_else(|| err("missing test case id"))?,
        ),
        "TESTCASE" => {
            let (mut id, mut result, mut measurement, mut units) = (None, None, None, None);
            for kv in &p {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                match k.to_ascii_lowercase().as_str() {
                    "test_case_id" => id = Some(v.to_string()),
                    "result" => result = Some(v.to_string()),
                    "measurement" => measurement = Some(v.to_string()),
                    "units" => units = Some(v.to_string()),
                    _ => {}
                }
            }
            Signal::TestCase {
                id: id.ok_or_else(|| err("missing TEST_CASE_ID"))?,
                result: result.ok_or_else(|| err("missing RESULT"))?,
                measurement,
                units,
            }
        }
        "TESTSET" => match p.first().map(String::as_str) {
            Some("START") => Signal::TestSetStart(
                p.get(1)
                    .cloned()
                    .ok_or_else(|| err("START without a set name"))?,
            ),
            Some("STOP") => Signal::TestSetStop,
            _ => return Err(err("expected START NAME or STOP")),
        },
        "TESTRAISE" => Signal::TestRaise(p.join(" ")),
        "TESTREFERENCE" => match p.as_slice() {
            [id, result, url] => Signal::TestReference {
                id: id.clone(),
                result: result.clone(),
                url: url.clone(),
            },
            _ => return Err(err("expected exactly: id result url")),
        },
        "TESTEVENT" => Signal::TestEvent(p.join(" ")),
        "TESTFEEDBACK" => Signal::TestFeedback(p.first().cloned().unwrap_or_default()),
        other => Signal::Other {
            name: other.to_string(),
            params: p,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signals() {
        assert_eq!(
            parse(
                "TESTCASE",
                "TEST_CASE_ID=boot-latency RESULT=pass UNITS=ms MEASUREMENT=42"
            )
            .unwrap(),
            Signal::TestCase {
                id: "boot-latency".into(),
                result: "pass".into(),
                measurement: Some("42".into()),
                units: Some("ms".into())
            }
        );
        assert_eq!(
            parse("STARTRUN", "0_smoke 1_1.1.2.1").unwrap(),
            Signal::StartRun {
                id: "0_smoke".into(),
                uuid: "1_1.1.2.1".into()
            }
        );
        assert!(parse("TESTREFERENCE", "a pass").is_err());
        assert!(parse("TESTSET", "START").is_err());
        assert_eq!(parse("TESTSET", "STOP").unwrap(), Signal::TestSetStop);
        assert!(parse("TESTCASE", "RESULT=pass").is_err());
        let re = regex::Regex::new(SIGNAL_PATTERN).unwrap();
        let c = re.captures("x <LAVA_SIGNAL_ENDTC uname> y").unwrap();
        assert_eq!(parse(&c[1], &c[2]).unwrap(), Signal::EndTc("uname".into()));
        assert!(re.captures("<LAVA_SIGNAL_ENDTC>").is_none());
    }
}
