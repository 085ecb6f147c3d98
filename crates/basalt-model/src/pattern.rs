//! Test definitions carry Python regexes (`parse.pattern`, monitor patterns). The `regex` crate
//! reads Python's named groups `(?P<name>...)` natively; what it cannot express (look-around,
//! back-references) is reported when the job is validated instead of failing at run time.

use regex::Regex;

/// Compiles a Python `re` pattern, as LAVA compiles it with `re.M`.
pub fn compile_python_regex(pattern: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(pattern)
        .multi_line(true)
        .size_limit(1 << 22)
        .build()
        .map_err(|e| match e {
            regex::Error::Syntax(s) => s
                .lines()
                .last()
                .unwrap_or("syntax error")
                .trim()
                .to_string(),
            regex::Error::CompiledTooBig(_) => "pattern is too large".to_string(),
            _ => e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_named_groups() {
        let re =
            compile_python_regex(r"(?P<test_case_id>.*-*):\s+(?P<result>(pass|fail))").unwrap();
        let c = re.captures("test1a: pass").unwrap();
        assert_eq!(&c["test_case_id"], "test1a");
        assert!(compile_python_regex("(unclosed").is_err());
    }
}
