//! The simulated board's scripts: what it prints and waits for, as YAML.
//!
//! A script is a YAML sequence of steps. Each step is a mapping with one *verb* key and
//! optional modifiers:
//!
//! | step | modifiers | effect |
//! | --- | --- | --- |
//! | `print: TEXT` or `print: [LINES]` | `delay` (ms before each line), `jitter` (ms, random extra, 0..=jitter), `kmsg: true` (prefix `[    1.234567] ` kernel timestamps), `newline: false` (no line end after the last line) | writes lines to the console (`\n` becomes `\r\n`, as a serial console does) |
//! | `wait: REGEX` | `timeout` (s; none: forever), `echo` (default true), `goto` (label on match), `on_timeout` (label on timeout; none: go on) | reads input lines until one matches |
//! | `sleep: SECONDS` | | pauses |
//! | `include: FILE` | | plays another script, a path relative to the including file that must stay inside the top-level script's directory |
//! | `interrupt: SECONDS` | `prompt` (default `Hit any key to stop autoboot: `), `countdown` (default true: U-Boot's ` 2 ` `\b\b\b 1 ` display), `goto` (label) | a window in which any key press jumps to `goto`; without `goto` a key press stops autoboot (the board enters its U-Boot prompt). `SECONDS` may be `${bootdelay}`; negative like U-Boot's bootdelay: `-1` no window and autoboot stopped, `-2` no window and no stop |
//! | `label: NAME` | | a target for `goto`, `on_timeout` and `interrupt` |
//! | `goto: NAME` | | jumps to a label |
//!
//! `${name}` in `print`, `interrupt` and `prompt` is replaced by the U-Boot environment
//! variable `name` or by one of the board's variables (`uboot_version`, `hostname`,
//! `kernel_release`, `ethact`, `bootargs`); unknown names are left as they are.
//! Delays and sleeps are multiplied by the board's `--speed` factor; interrupt windows and
//! wait timeouts are not.
//!
//! Includes are resolved when the script is loaded: the result is one flat list of steps,
//! labels are global across the included files and must be unique, and every jump target
//! must exist, so a broken script fails at start-up and not in the middle of a boot.
//!
//! ## Why serde-saphyr
//! Scripts are parsed with `serde` + `serde-saphyr` rather than with `libyaml-safer` events
//! (which the `basalt` crate uses for job files, where it needs its own spans and
//! emitter): a derived `Deserialize` gives the small step schema for free, `Spanned` gives
//! the line of a bad step, and serde-saphyr is pure Rust, panic-free on malformed input,
//! and bounds what a document may cost (alias expansion, depth), which matters for files a
//! lab user writes. `serde_yaml_ng` was the alternative; it wraps the C-translated
//! `unsafe-libyaml`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;

/// The built-in U-Boot script (banner and autoboot window).
pub const BUILTIN_UBOOT: &str = include_str!("scripts/uboot.yaml");
/// The built-in Linux boot log.
pub const BUILTIN_LINUX: &str = include_str!("scripts/linux.yaml");

/// Names under which the built-in scripts can be included from each other.
const BUILTINS: &[(&str, &str)] = &[("uboot.yaml", BUILTIN_UBOOT), ("linux.yaml", BUILTIN_LINUX)];

/// How deep includes may nest (also stops include cycles).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Why a script could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The file could not be read.
    #[error("cannot read script {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The YAML does not parse as a list of steps.
    #[error("script {origin}: {message}")]
    Yaml {
        /// The file (or built-in name).
        origin: String,
        /// What the YAML parser said.
        message: String,
    },
    /// A step is not valid.
    #[error("script {origin}, line {line}: {message}")]
    Step {
        /// The file (or built-in name).
        origin: String,
        /// The line of the step.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A label or jump target problem found after includes were resolved.
    #[error("script {origin}: {message}")]
    Labels {
        /// The top-level file (or built-in name).
        origin: String,
        /// What is wrong.
        message: String,
    },
}

/// One step as written in YAML: the verb keys and all modifiers, validated into a [`Step`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    print: Option<Lines>,
    delay: Option<f64>,
    jitter: Option<f64>,
    kmsg: Option<bool>,
    newline: Option<bool>,
    wait: Option<String>,
    timeout: Option<f64>,
    echo: Option<bool>,
    on_timeout: Option<String>,
    sleep: Option<f64>,
    include: Option<String>,
    interrupt: Option<Scalar>,
    prompt: Option<String>,
    countdown: Option<bool>,
    goto: Option<String>,
    label: Option<String>,
}

/// `print:` takes one string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Lines {
    One(String),
    Many(Vec<String>),
}

/// A number or a string such as `${bootdelay}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Float(f64),
    Text(String),
}

/// A validated step of a loaded script.
#[derive(Debug, Clone)]
pub enum Step {
    /// Print lines.
    Print {
        /// The lines (before `${var}` substitution).
        lines: Vec<String>,
        /// Milliseconds before each line.
        delay_ms: f64,
        /// Up to this many extra random milliseconds before each line.
        jitter_ms: f64,
        /// Prefix kernel timestamps.
        kmsg: bool,
        /// End the last line with a newline.
        newline: bool,
    },
    /// Wait for an input line matching `regex`.
    Wait {
        /// The pattern.
        regex: Regex,
        /// Seconds; `None` waits forever.
        timeout: Option<f64>,
        /// Echo typed characters.
        echo: bool,
        /// Index to jump to on a match (`None`: next step).
        on_match: Option<usize>,
        /// Index to jump to on timeout (`None`: next step).
        on_timeout: Option<usize>,
    },
    /// Pause.
    Sleep {
        /// Seconds.
        seconds: f64,
    },
    /// An interrupt window.
    Interrupt {
        /// Seconds, possibly `${bootdelay}`: substituted and parsed when played.
        seconds: String,
        /// The prompt.
        prompt: String,
        /// U-Boot's countdown display.
        countdown: bool,
        /// Index to jump to on a key press; `None`: stop autoboot.
        target: Option<usize>,
    },
    /// A jump.
    Goto {
        /// Target index.
        target: usize,
        /// The label's name (for messages).
        label: String,
    },
    /// A label (no effect when played).
    Label {
        /// The name.
        name: String,
    },
}

/// A step before jump targets are resolved to indices.
#[derive(Debug)]
enum Pending {
    Ready(Step),
    Wait {
        regex: Regex,
        timeout: Option<f64>,
        echo: bool,
        on_match: Option<String>,
        on_timeout: Option<String>,
        line: u64,
        origin: String,
    },
    Interrupt {
        seconds: String,
        prompt: String,
        countdown: bool,
        target: Option<String>,
        line: u64,
        origin: String,
    },
    Goto {
        label: String,
        line: u64,
        origin: String,
    },
}

/// A loaded script: includes inlined, labels resolved.
#[derive(Debug, Clone)]
pub struct Script {
    /// Where it came from (a path or `builtin:NAME`).
    pub origin: String,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Label name → index of its `Label` step.
    pub labels: HashMap<String, usize>,
}

impl Script {
    /// Loads one of the built-in scripts (`uboot.yaml`, `linux.yaml`).
    pub fn builtin(name: &str) -> Result<Script, ScriptError> {
        let origin = format!("builtin:{name}");
        let text = builtin_text(name).ok_or_else(|| ScriptError::Labels {
            origin: origin.clone(),
            message: format!("no built-in script named '{name}'"),
        })?;
        let mut pending = Vec::new();
        flatten(&Source::Builtin, &origin, text, 0, &mut pending)?;
        resolve(origin, pending)
    }

    /// Loads a script file; its includes must stay inside its directory.
    pub fn from_file(path: &Path) -> Result<Script, ScriptError> {
        let canonical = path.canonicalize().map_err(|source| ScriptError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let root = canonical
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        let text = std::fs::read_to_string(&canonical).map_err(|source| ScriptError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        let mut pending = Vec::new();
        let source = Source::Dir {
            root,
            file: canonical,
        };
        flatten(&source, &origin, &text, 0, &mut pending)?;
        resolve(origin, pending)
    }

    /// Parses a script from a string; includes are refused (there is no directory).
    pub fn parse(origin: &str, text: &str) -> Result<Script, ScriptError> {
        let mut pending = Vec::new();
        flatten(&Source::Inline, origin, text, 0, &mut pending)?;
        resolve(origin.to_string(), pending)
    }

    /// Whether the script has a label with this name.
    pub fn has_label(&self, name: &str) -> bool {
        self.labels.contains_key(name)
    }
}

fn builtin_text(name: &str) -> Option<&'static str> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Where includes are looked up.
enum Source {
    /// Among the built-in scripts.
    Builtin,
    /// Next to `file`, confined to `root` (canonical paths).
    Dir { root: PathBuf, file: PathBuf },
    /// Nowhere: includes are an error.
    Inline,
}

fn step_error(origin: &str, line: u64, message: impl Into<String>) -> ScriptError {
    ScriptError::Step {
        origin: origin.to_string(),
        line,
        message: message.into(),
    }
}

fn flatten(
    source: &Source,
    origin: &str,
    text: &str,
    depth: usize,
    out: &mut Vec<Pending>,
) -> Result<(), ScriptError> {
    // An empty document is an empty script.
    if text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    }) {
        return Ok(());
    }
    let raw: Vec<serde_saphyr::Spanned<RawStep>> =
        serde_saphyr::from_str(text).map_err(|e| ScriptError::Yaml {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
    for spanned in raw {
        let line = spanned.referenced.line();
        let step = spanned.value;
        let verbs = [
            step.print.is_some(),
            step.wait.is_some(),
            step.sleep.is_some(),
            step.include.is_some(),
            step.interrupt.is_some(),
            step.label.is_some(),
        ]
        .iter()
        .filter(|v| **v)
        .count();
        // `goto` is a verb alone, a modifier of `wait` and `interrupt`.
        let goto_is_verb = verbs == 0 && step.goto.is_some();
        if verbs + usize::from(goto_is_verb) != 1 {
            return Err(step_error(
                origin,
                line,
                "a step needs exactly one of print, wait, sleep, include, interrupt, label, goto",
            ));
        }
        let goto_modifier = step.goto.is_some() && !goto_is_verb;
        let modifiers_ok = |allowed: &[&str]| -> Result<(), ScriptError> {
            let present = [
                ("delay", step.delay.is_some()),
                ("jitter", step.jitter.is_some()),
                ("kmsg", step.kmsg.is_some()),
                ("newline", step.newline.is_some()),
                ("timeout", step.timeout.is_some()),
                ("echo", step.echo.is_some()),
                ("on_timeout", step.on_timeout.is_some()),
                ("prompt", step.prompt.is_some()),
                ("countdown", step.countdown.is_some()),
                ("goto", goto_modifier),
            ];
            for (name, is) in present {
                if is && !allowed.contains(&name) {
                    return Err(step_error(
                        origin,
                        line,
                        format!("'{name}' does not apply to this step"),
                    ));
                }
            }
            Ok(())
        };
        let non_negative = |what: &str, v: Option<f64>| -> Result<f64, ScriptError> {
            match v {
                None => Ok(0.0),
                Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
                Some(x) => Err(step_error(
                    origin,
                    line,
                    format!("'{what}' must be a number >= 0, not {x}"),
                )),
            }
        };
        if let Some(lines) = step.print {
            modifiers_ok(&["delay", "jitter", "kmsg", "newline"])?;
            let lines = match lines {
                Lines::One(s) => s.split('\n').map(str::to_string).collect(),
                Lines::Many(v) => v,
            };
            out.push(Pending::Ready(Step::Print {
                lines,
                delay_ms: non_negative("delay", step.delay)?,
                jitter_ms: non_negative("jitter", step.jitter)?,
                kmsg: step.kmsg.unwrap_or(false),
                newline: step.newline.unwrap_or(true),
            }));
        } else if let Some(pattern) = step.wait {
            modifiers_ok(&["timeout", "echo", "on_timeout", "goto"])?;
            let regex = Regex::new(&pattern)
                .map_err(|e| step_error(origin, line, format!("bad regex '{pattern}': {e}")))?;
            let timeout = match step.timeout {
                None => None,
                Some(t) => Some(non_negative("timeout", Some(t))?),
            };
            out.push(Pending::Wait {
                regex,
                timeout,
                echo: step.echo.unwrap_or(true),
                on_match: step.goto,
                on_timeout: step.on_timeout,
                line,
                origin: origin.to_string(),
            });
        } else if let Some(seconds) = step.sleep {
            modifiers_ok(&[])?;
            out.push(Pending::Ready(Step::Sleep {
                seconds: non_negative("sleep", Some(seconds))?,
            }));
        } else if let Some(file) = step.include {
            modifiers_ok(&[])?;
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(step_error(
                    origin,
                    line,
                    format!("includes nested deeper than {MAX_INCLUDE_DEPTH} (a cycle?)"),
                ));
            }
            match source {
                Source::Inline => {
                    return Err(step_error(origin, line, "include needs a script file"));
                }
                Source::Builtin => {
                    let text = builtin_text(&file).ok_or_else(|| {
                        step_error(origin, line, format!("no built-in script named '{file}'"))
                    })?;
                    flatten(source, &format!("builtin:{file}"), text, depth + 1, out)?;
                }
                Source::Dir {
                    root,
                    file: current,
                } => {
                    let target = confined_include(root, current, &file)
                        .map_err(|m| step_error(origin, line, m))?;
                    let text = std::fs::read_to_string(&target).map_err(|e| {
                        step_error(origin, line, format!("cannot read '{file}': {e}"))
                    })?;
                    let nested = Source::Dir {
                        root: root.clone(),
                        file: target.clone(),
                    };
                    flatten(
                        &nested,
                        &target.display().to_string(),
                        &text,
                        depth + 1,
                        out,
                    )?;
                }
            }
        } else if let Some(seconds) = step.interrupt {
            modifiers_ok(&["prompt", "countdown", "goto"])?;
            let seconds = match seconds {
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Text(s) => s,
            };
            out.push(Pending::Interrupt {
                seconds,
                prompt: step
                    .prompt
                    .unwrap_or_else(|| "Hit any key to stop autoboot: ".to_string()),
                countdown: step.countdown.unwrap_or(true),
                target: step.goto,
                line,
                origin: origin.to_string(),
            });
        } else if let Some(name) = step.label {
            modifiers_ok(&[])?;
            if name.is_empty() {
                return Err(step_error(origin, line, "a label needs a name"));
            }
            out.push(Pending::Ready(Step::Label { name }));
        } else if let Some(label) = step.goto {
            modifiers_ok(&[])?;
            out.push(Pending::Goto {
                label,
                line,
                origin: origin.to_string(),
            });
        }
    }
    Ok(())
}

/// Resolves `include` relative to the including file, refusing anything outside `root`.
fn confined_include(root: &Path, current: &Path, include: &str) -> Result<PathBuf, String> {
    let rel = Path::new(include);
    if rel.is_absolute() {
        return Err(format!(
            "include '{include}': absolute paths are not allowed (relative to the script directory only)"
        ));
    }
    let base = current.parent().unwrap_or(root);
    let candidate = base.join(rel);
    let canonical = candidate
        .canonicalize()
        .map_err(|e| format!("include '{include}': {e}"))?;
    if !canonical.starts_with(root) {
        return Err(format!(
            "include '{include}' leaves the script directory {}",
            root.display()
        ));
    }
    if !canonical.is_file() {
        return Err(format!("include '{include}' is not a file"));
    }
    Ok(canonical)
}

fn resolve(origin: String, pending: Vec<Pending>) -> Result<Script, ScriptError> {
    let mut labels = HashMap::new();
    for (i, p) in pending.iter().enumerate() {
        if let Pending::Ready(Step::Label { name }) = p {
            if labels.insert(name.clone(), i).is_some() {
                return Err(ScriptError::Labels {
                    origin,
                    message: format!("label '{name}' is defined twice"),
                });
            }
        }
    }
    let find = |label: &str, at_origin: &str, line: u64| -> Result<usize, ScriptError> {
        labels
            .get(label)
            .copied()
            .ok_or_else(|| step_error(at_origin, line, format!("no label named '{label}'")))
    };
    let mut steps = Vec::with_capacity(pending.len());
    for p in pending {
        let step = match p {
            Pending::Ready(s) => s,
            Pending::Wait {
                regex,
                timeout,
                echo,
                on_match,
                on_timeout,
                line,
                origin: o,
            } => Step::Wait {
                regex,
                timeout,
                echo,
                on_match: on_match.map(|l| find(&l, &o, line)).transpose()?,
                on_timeout: on_timeout.map(|l| find(&l, &o, line)).transpose()?,
            },
            Pending::Interrupt {
                seconds,
                prompt,
                countdown,
                target,
                line,
                origin: o,
            } => Step::Interrupt {
                seconds,
                prompt,
                countdown,
                target: target.map(|l| find(&l, &o, line)).transpose()?,
            },
            Pending::Goto {
                label,
                line,
                origin: o,
            } => Step::Goto {
                target: find(&label, &o, line)?,
                label,
            },
        };
        steps.push(step);
    }
    Ok(Script {
        origin,
        steps,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load() {
        let u = Script::builtin("uboot.yaml").unwrap();
        assert!(u
            .steps
            .iter()
            .any(|s| matches!(s, Step::Interrupt { target: None, .. })));
        let l = Script::builtin("linux.yaml").unwrap();
        assert!(l.has_label("panic"));
        match &l.steps[0] {
            Step::Print { lines, kmsg, .. } => {
                assert!(lines[0].starts_with("Linux version "));
                assert!(kmsg);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn steps_and_labels() {
        let s = Script::parse(
            "t",
            r#"
- print: "a\nb"
  delay: 5
- label: top
- wait: "^go$"
  timeout: 2
  on_timeout: top
- interrupt: 3
  goto: end
- sleep: 0.5
- goto: top
- label: end
"#,
        )
        .unwrap();
        assert_eq!(s.steps.len(), 7);
        match &s.steps[0] {
            Step::Print { lines, .. } => assert_eq!(lines, &["a", "b"]),
            o => panic!("{o:?}"),
        }
        match &s.steps[2] {
            Step::Wait { on_timeout, .. } => assert_eq!(*on_timeout, Some(1)),
            o => panic!("{o:?}"),
        }
        match &s.steps[3] {
            Step::Interrupt {
                target, seconds, ..
            } => {
                assert_eq!(*target, Some(6));
                assert_eq!(seconds, "3");
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn bad_scripts() {
        for (text, needle) in [
            ("- print: x\n  sleep: 1\n", "exactly one"),
            ("- goto: nowhere\n", "no label named 'nowhere'"),
            ("- label: a\n- label: a\n", "defined twice"),
            ("- wait: '('\n", "bad regex"),
            ("- sleep: -1\n", ">= 0"),
            ("- print: x\n  timeout: 3\n", "does not apply"),
            ("- frobnicate: 1\n", "frobnicate"),
            ("- include: other.yaml\n", "needs a script file"),
        ] {
            let e = Script::parse("t", text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn includes_are_confined() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("scripts");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(dir.path().join("secret.yaml"), "- print: secret\n").unwrap();
        std::fs::write(sub.join("part.yaml"), "- label: inner\n- print: part\n").unwrap();
        std::fs::write(
            sub.join("main.yaml"),
            "- include: part.yaml\n- goto: inner\n",
        )
        .unwrap();
        std::fs::write(sub.join("escape.yaml"), "- include: ../secret.yaml\n").unwrap();
        std::fs::write(sub.join("abs.yaml"), "- include: /etc/passwd\n").unwrap();
        std::fs::write(sub.join("loop.yaml"), "- include: loop.yaml\n").unwrap();
        let s = Script::from_file(&sub.join("main.yaml")).unwrap();
        assert_eq!(s.steps.len(), 3);
        let e = Script::from_file(&sub.join("escape.yaml")).unwrap_err();
        assert!(e.to_string().contains("leaves the script directory"), "{e}");
        let e = Script::from_file(&sub.join("abs.yaml")).unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
        let e = Script::from_file(&sub.join("loop.yaml")).unwrap_err();
        assert!(e.to_string().contains("deeper"), "{e}");
    }
}
