//! A job's results as LAVA's `jobs/<id>/tests/` shows them: the `results.yaml` text the worker
//! sent (one mapping per result: definition, case, result, and measurement, units, set, level,
//! duration... where present) read into test cases with LAVA's fields. Suites are the job's
//! test definitions in the order they first report (`lava` included), numbered from 1 within
//! the job; test cases are numbered from 1 within the job too.

use basalt_model::yaml::{self, Node, Value};
use basalt_proto::FailureCause;

/// One test case, in LAVA's terms.
#[derive(Clone, Debug, PartialEq)]
pub struct TestCase {
    /// 1-based within the job.
    pub id: u64,
    pub name: String,
    /// The definition it belongs to (LAVA's suite name, `lava` for the job's own results).
    pub suite: String,
    /// 1-based within the job, in the order suites first report.
    pub suite_id: u64,
    /// `pass`, `fail`, `skip` or `unknown`.
    pub result: String,
    pub measurement: Option<String>,
    pub unit: String,
    /// The `lava-test-set` it was reported in, by name.
    pub test_set: Option<String>,
    /// The set's id as LAVA's API shows it (an integer, `lava-api` parses it as one): 1-based
    /// within the job, in the order (suite, set) pairs first report.
    pub test_set_id: Option<u64>,
    /// basalt's cause of a failed case (a case of a test definition: `test`; the `lava`
    /// suite's `job` case: the job's cause); `None` when it passed or the worker gave none.
    pub cause: Option<FailureCause>,
    /// The whole result as a YAML mapping (LAVA's `metadata`: never empty).
    pub metadata: String,
}

/// Why a `results.yaml` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("results.yaml:{line}:{col}: {message}")]
    Yaml {
        line: u32,
        col: u32,
        message: String,
    },
    #[error("results.yaml:{line}:{col}: {message}")]
    Shape {
        line: u32,
        col: u32,
        message: String,
    },
}

fn scalar(n: &Node) -> Option<String> {
    match &n.value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(yaml::format_float(*f)),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The test cases of a `results.yaml` text (empty text: none).
pub fn test_cases(text: &str) -> Result<Vec<TestCase>, ResultsError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let doc = yaml::load(text).map_err(|e| ResultsError::Yaml {
        line: e.mark.line,
        col: e.mark.col,
        message: e.message,
    })?;
    let shape = |n: &Node, message: &str| ResultsError::Shape {
        line: n.mark.line,
        col: n.mark.col,
        message: message.into(),
    };
    let items = doc
        .as_seq()
        .ok_or_else(|| shape(&doc, "a list of results was expected"))?;
    let mut suites: Vec<String> = Vec::new();
    let mut sets: Vec<(String, String)> = Vec::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if item.as_map().is_none() {
            return Err(shape(item, "a result is a mapping"));
        }
        let field = |k: &str| item.get(k).and_then(scalar);
        let name = field("case").ok_or_else(|| shape(item, "a result without 'case'"))?;
        let suite = field("definition").unwrap_or_else(|| "lava".into());
        let suite_id = match suites.iter().position(|s| *s == suite) {
            Some(p) => p + 1,
            None => {
                suites.push(suite.clone());
                suites.len()
            }
        } as u64;
        let result = match field("result").as_deref() {
            Some(r @ ("pass" | "fail" | "skip")) => r.to_string(),
            _ => "unknown".into(),
        };
        let test_set = field("set");
        let test_set_id = test_set.as_ref().map(|set| {
            let key = (suite.clone(), set.clone());
            (match sets.iter().position(|s| *s == key) {
                Some(p) => p,
                None => {
                    sets.push(key);
                    sets.len() - 1
                }
            }) as u64
                + 1
        });
        out.push(TestCase {
            id: i as u64 + 1,
            name,
            suite,
            suite_id,
            result,
            measurement: field("measurement"),
            unit: field("units").unwrap_or_default(),
            test_set,
            test_set_id,
            cause: field("cause").as_deref().and_then(FailureCause::from_name),
            metadata: yaml::emit_document(item),
        });
    }
    Ok(out)
}

/// Escapes text for XML attributes and content.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // characters XML 1.0 does not allow, even escaped
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// The test cases as JUnit XML (what LAVA's `jobs/<id>/junit/` serves): one `testsuite` per
/// definition, in the order they report; a failed case has a `failure` whose `type` is its
/// cause, a skipped one `skipped`. Written by hand: five escapes and a fixed shape need no XML library.
pub fn junit(job_id: u64, cases: &[TestCase]) -> String {
    let mut suites: Vec<(&str, Vec<&TestCase>)> = Vec::new();
    for c in cases {
        match suites.iter_mut().find(|(s, _)| *s == c.suite) {
            Some((_, v)) => v.push(c),
            None => suites.push((&c.suite, vec![c])),
        }
    }
    let count = |v: &[&TestCase], r: &str| v.iter().filter(|c| c.result == r).count();
    let all: Vec<&TestCase> = cases.iter().collect();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"job {job_id}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">\n",
        cases.len(),
        count(&all, "fail"),
        count(&all, "skip")
    ));
    for (suite, v) in &suites {
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">\n",
            xml_escape(suite),
            v.len(),
            count(v, "fail"),
            count(v, "skip")
        ));
        for c in v {
            let name = xml_escape(&c.name);
            let class = xml_escape(&format!(
                "{}.{}",
                c.suite,
                c.test_set.as_deref().unwrap_or("")
            ));
            let class = class.trim_end_matches('.');
            match c.result.as_str() {
                "fail" => out.push_str(&format!(
                    "    <testcase name=\"{name}\" classname=\"{class}\">\n      <failure message=\"failed\" type=\"{}\">{}</failure>\n    </testcase>\n",
                    c.cause.unwrap_or(FailureCause::Test),
                    xml_escape(&c.metadata)
                )),
                "skip" => out.push_str(&format!(
                    "    <testcase name=\"{name}\" classname=\"{class}\">\n      <skipped/>\n    </testcase>\n"
                )),
                _ => out.push_str(&format!(
                    "    <testcase name=\"{name}\" classname=\"{class}\"/>\n"
                )),
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_become_lava_test_cases() {
        let text = "- {definition: 0_smoke, case: uname, result: pass}\n\
                    - {definition: 0_smoke, case: latency, result: pass, measurement: 42.0, units: ms, set: boot}\n\
                    - {definition: lava, case: job, result: fail, error_type: Test, cause: test}\n\
                    - {definition: 0_smoke, case: odd, result: maybe}\n";
        let cases = test_cases(text).unwrap();
        assert_eq!(cases.len(), 4);
        assert_eq!(cases[0].name, "uname");
        assert_eq!((cases[0].suite_id, cases[2].suite_id), (1, 2));
        assert_eq!(cases[1].measurement.as_deref(), Some("42.0"));
        assert_eq!(cases[1].unit, "ms");
        assert_eq!(cases[1].test_set.as_deref(), Some("boot"));
        assert_eq!(
            (cases[0].test_set_id, cases[1].test_set_id),
            (None, Some(1))
        );
        assert_eq!(cases[2].result, "fail");
        assert_eq!(cases[3].result, "unknown");
        assert_eq!(
            (cases[0].cause, cases[2].cause),
            (None, Some(FailureCause::Test))
        );
        assert!(
            cases[2].metadata.contains("error_type: Test"),
            "{}",
            cases[2].metadata
        );
        assert_eq!(test_cases("").unwrap(), Vec::new());
    }

    #[test]
    fn junit_has_a_suite_per_definition_and_escapes_names() {
        let text = "- {definition: 0_smoke, case: \"a<b&c\", result: pass}\n\
                    - {definition: 0_smoke, case: broken, result: fail}\n\
                    - {definition: lava, case: job, result: skip}\n\
                    - {definition: lava, case: job, result: fail, cause: kernel}\n";
        let xml = junit(7, &test_cases(text).unwrap());
        assert!(
            xml.contains("<testsuites name=\"job 7\" tests=\"4\" failures=\"2\" skipped=\"1\">"),
            "{xml}"
        );
        assert!(
            xml.contains("<testsuite name=\"0_smoke\" tests=\"2\" failures=\"1\""),
            "{xml}"
        );
        assert!(xml.contains("name=\"a&lt;b&amp;c\""), "{xml}");
        assert!(
            xml.contains("<failure message=\"failed\" type=\"test\">"),
            "{xml}"
        );
        assert!(
            xml.contains("<failure message=\"failed\" type=\"kernel\">"),
            "{xml}"
        );
        assert!(xml.contains("<skipped/>"), "{xml}");
        assert_eq!(xml.matches("<testsuite ").count(), 2);
    }

    #[test]
    fn bad_results_say_where() {
        let e = test_cases("- {definition: x, result: pass}\n").unwrap_err();
        assert!(e.to_string().starts_with("results.yaml:1:"), "{e}");
        assert!(test_cases("[unclosed").is_err());
        assert!(test_cases("just text").is_err());
    }
}
