//! The test overlay as files: helper scripts, `environment`, `secrets`, and per test
//! definition `run.sh` / `install.sh` / `uuid` / `testdef_metadata`, laid out as LAVA lays them
//! out under `/lava-<job>` (`reference/lava-formats.md` §1.4, §1.5).

pub mod cpio;
pub mod ext;
pub mod rootfs;
pub mod tarball;
pub mod tree;

use crate::job::testdef::TestDef;
use crate::yaml::{Node, Value};
use std::fmt::Write as _;

/// Python's `shlex.quote`, for values written into shell files on the device.
pub fn sh_quote(s: &str) -> String {
    crate::device::render::shlex_quote(s)
}

/// `'value'` with embedded single quotes escaped (LAVA writes the value verbatim; escaping
/// keeps a quote in a parameter from breaking the script). Always quoted, unlike
/// [`sh_quote`]: also what the secondary-media commands on the device use.
pub fn single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The parameter preamble shared by install.sh and run.sh: the definition's defaults, then
/// the job's values.
pub fn params_preamble(testdef: &TestDef, job_params: &[(String, Node)]) -> Result<String, String> {
    let mut out = String::from("###default parameters from test definition###\n");
    for (k, v) in &testdef.params {
        let _ = writeln!(out, "{k}={}", single_quoted(&param_text(k, v)?));
    }
    out.push_str("######\n###test parameters from job submission###\n");
    for (k, v) in job_params {
        let _ = writeln!(out, "{k}={}", single_quoted(&param_text(k, v)?));
    }
    out.push_str("######\n");
    Ok(out)
}

fn param_text(k: &str, v: &Node) -> Result<String, String> {
    if !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || k.is_empty() {
        return Err(format!("parameter name '{k}' is not a shell variable name"));
    }
    match &v.value {
        Value::Null => Ok(String::new()),
        Value::Seq(_) | Value::Map(_) => {
            Err(format!("parameter '{k}' must be a string or a number"))
        }
        _ => Ok(v.scalar_text().unwrap_or_default()),
    }
}

/// Escapes `$1`-style positional parameters in steps that use `--cmd` or `--shell`, as LAVA
/// does, so they reach the command instead of run.sh's own arguments.
pub fn escape_positional(step: &str) -> String {
    if !(step.contains("--cmd") || step.contains("--shell")) {
        return step.to_string();
    }
    let mut out = String::with_capacity(step.len());
    let bytes = step.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() && bytes[i + 1].is_ascii_digit() {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            let boundary =
                j == bytes.len() || !(bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_');
            if boundary {
                out.push('\\');
            }
            out.push_str(&step[i..j]);
            i = j;
            continue;
        }
        let ch_len = step[i..].chars().next().map(char::len_utf8).unwrap_or(1);
        out.push_str(&step[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// Where a definition lives on the device and how it reports.
pub struct RunScript<'a> {
    pub test_id: &'a str,
    /// `/lava-<job>/<stage>/tests/<idx>_<name>`.
    pub dir: &'a str,
    /// Seconds between characters of signals (device `character_delays.test`), 0 for none.
    pub char_delay_secs: f64,
    pub kmsg: bool,
}

/// run.sh for a test definition.
pub fn run_sh(testdef: &TestDef, preamble: &str, rs: &RunScript<'_>) -> String {
    let mut s = String::from(preamble);
    s.push_str("set -e\nset -x\n");
    let _ = writeln!(s, "export TESTRUN_ID={}", rs.test_id);
    let _ = writeln!(s, "cd {}", sh_quote(rs.dir));
    s.push_str("UUID=\"$(cat uuid)\"\nset +x\n");
    if rs.char_delay_secs > 0.0 {
        let _ = writeln!(s, "export CHARACTER_DELAY={:.3}", rs.char_delay_secs);
    }
    if rs.kmsg {
        s.push_str("# USE_KMSG\nexport KMSG=true\n");
        s.push_str("echo \"<0><LAVA_SIGNAL_STARTRUN $TESTRUN_ID $UUID>\" > /dev/kmsg\n");
    } else {
        s.push_str("echo \"<LAVA_SIGNAL_STARTRUN $TESTRUN_ID $UUID>\"\n");
    }
    s.push_str("set -x\n");
    for step in &testdef.run_steps {
        s.push_str(&escape_positional(step));
        s.push('\n');
    }
    s.push_str("set +x\n");
    if rs.kmsg {
        s.push_str("unset KMSG\necho \"<0><LAVA_SIGNAL_ENDRUN $TESTRUN_ID $UUID>\" > /dev/kmsg\n");
    } else {
        s.push_str("echo \"<LAVA_SIGNAL_ENDRUN $TESTRUN_ID $UUID>\"\n");
    }
    s
}

/// install.sh for a test definition, or `None` when it has no `install:`. `skip` holds the
/// job's `skip_install` values; `distro` is the deploy's `os:`.
pub fn install_sh(
    testdef: &TestDef,
    preamble: &str,
    dir: &str,
    skip: &[String],
    distro: Option<&str>,
) -> Option<String> {
    let inst = &testdef.install;
    if !inst.present {
        return None;
    }
    let skipped = |what: &str| skip.iter().any(|s| s == what || s == "all");
    let mut s = String::from(preamble);
    if !skipped("keys") {
        for k in &inst.keys {
            let _ = writeln!(s, "lava-add-keys {}", sh_quote(k));
        }
    }
    if !skipped("sources") {
        for src in &inst.sources {
            let _ = writeln!(s, "lava-add-sources {}", sh_quote(src));
        }
    }
    if !skipped("deps") {
        let mut deps: Vec<&str> = inst.deps.iter().map(String::as_str).collect();
        if let Some(d) = distro {
            for (name, list) in &inst.distro_deps {
                if name == d {
                    deps.extend(list.iter().map(String::as_str));
                }
            }
        }
        if !deps.is_empty() {
            s.push_str("lava-install-packages ");
            for d in deps {
                s.push_str(&sh_quote(d));
                s.push(' ');
            }
            s.push('\n');
        }
    }
    if !skipped("steps") && !inst.steps.is_empty() {
        let _ = writeln!(s, "cd {}", sh_quote(dir));
        s.push_str("pwd\n");
        for step in &inst.steps {
            s.push_str(step);
            s.push('\n');
        }
    }
    Some(s)
}

/// The `environment` file: `export K=V` lines, values quoted for the shell.
pub fn environment_file(vars: &[(String, String)]) -> String {
    let mut s = String::new();
    for (k, v) in vars {
        if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !k.is_empty() {
            let _ = writeln!(s, "export {k}={}", sh_quote(v));
        }
    }
    s
}

/// Flattens a YAML mapping into `PREFIX_key[_index]` variables, as LAVA flattens
/// `device_info` and the job `environment`.
pub fn flatten_env(prefix: &str, n: &Node, out: &mut Vec<(String, String)>) {
    match &n.value {
        Value::Map(m) => {
            for (k, v) in m {
                let key = k.scalar_text().unwrap_or_default();
                let name = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}_{key}")
                };
                flatten_env(&name, v, out);
            }
        }
        Value::Seq(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten_env(&format!("{prefix}_{i}"), v, out);
            }
        }
        Value::Bool(b) => out.push((prefix.to_string(), if *b { "1" } else { "0" }.to_string())),
        Value::Null => out.push((prefix.to_string(), String::new())),
        _ => out.push((prefix.to_string(), n.scalar_text().unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_positional_parameters_like_lava() {
        assert_eq!(
            escape_positional("lava-test-case x --shell echo $1 $10 $1x"),
            "lava-test-case x --shell echo \\$1 \\$10 $1x"
        );
        assert_eq!(escape_positional("echo $1"), "echo $1");
    }

    #[test]
    fn run_script_shape() {
        let t = TestDef {
            run_steps: vec!["lava-test-case uname --shell uname -a".into()],
            params: vec![("A".into(), Node::str("it's"))],
            ..TestDef::default()
        };
        let pre = params_preamble(&t, &[("B".into(), Node::new(Value::Int(3)))]).unwrap();
        assert!(pre.contains("A='it'\\''s'\n"), "{pre}");
        assert!(pre.contains("B='3'\n"));
        let rs = RunScript {
            test_id: "0_smoke",
            dir: "/lava-1/0/tests/0_smoke",
            char_delay_secs: 0.0,
            kmsg: false,
        };
        let s = run_sh(&t, &pre, &rs);
        assert!(s.contains("export TESTRUN_ID=0_smoke\ncd /lava-1/0/tests/0_smoke\nUUID=\"$(cat uuid)\"\nset +x\necho \"<LAVA_SIGNAL_STARTRUN $TESTRUN_ID $UUID>\"\nset -x\nlava-test-case uname --shell uname -a\nset +x\necho \"<LAVA_SIGNAL_ENDRUN $TESTRUN_ID $UUID>\"\n"), "{s}");
        assert!(params_preamble(&t, &[("bad name".into(), Node::str("x"))]).is_err());
    }
}
