//! Renders LAVA device dictionaries (`{% extends 'TYPE.jinja2' %}` + `{% set %}`) through
//! Jinja2 device-type templates with minijinja, configured as LAVA configures Jinja2:
//! `trim_blocks`, no autoescape, lenient undefined values, and the filters `shlex_quote`,
//! `yaml_quote` and `qemu_guest_fs_interface`.

use crate::yaml::{Node, Value};
use minijinja::{Environment, ErrorKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a dictionary could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Template(String),
    /// An error at a place in the dictionary itself (a syntax error, an unknown filter...).
    #[error("{name}:{line}:{column}: {message}")]
    At {
        /// The dictionary's name (the hostname it was rendered as).
        name: String,
        line: usize,
        /// 1-based, in characters.
        column: usize,
        message: String,
    },
}

/// Architectures whose QEMU machines have an IDE controller.
const X86_ARCHS: &[&str] = &["amd64", "x86_64", "i386"];

/// Python's `shlex.quote`.
pub fn shlex_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    let safe = s
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || "@%+=:,./-".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\"'\"'"))
    }
}

fn to_jinja(n: &Node) -> minijinja::Value {
    match &n.value {
        Value::Null => minijinja::Value::from(()),
        Value::Bool(b) => minijinja::Value::from(*b),
        Value::Int(i) => minijinja::Value::from(*i),
        Value::Float(f) => minijinja::Value::from(*f),
        Value::Str(s) => minijinja::Value::from(s.as_str()),
        Value::Seq(items) => items.iter().map(to_jinja).collect::<Vec<_>>().into(),
        Value::Map(entries) => {
            let m: BTreeMap<String, minijinja::Value> = entries
                .iter()
                .filter_map(|(k, v)| Some((k.scalar_text()?, to_jinja(v))))
                .collect();
            minijinja::Value::from_serialize(&m)
        }
    }
}

/// Renders a device dictionary file. `search` lists device-type directories in order; the
/// dictionary's own directory is searched next, so that a dictionary can extend a local
/// type, and basalt's built-in device types last.
/// `context` is the job's `context:`; the dictionary's `{% set %}` lines win over it, as in LAVA.
pub fn render_dictionary(
    dict: &Path,
    search: &[PathBuf],
    context: &BTreeMap<String, Node>,
) -> Result<String, RenderError> {
    let text = std::fs::read_to_string(dict).map_err(|source| RenderError::Read {
        path: dict.display().to_string(),
        source,
    })?;
    let name = dict
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("device")
        .to_string();
    let mut dirs = search.to_vec();
    if let Some(parent) = dict.parent() {
        dirs.push(parent.to_path_buf());
    }
    render_str(&name, &text, &dirs, context)
}

/// Renders dictionary text named `hostname` against the template directories.
pub fn render_str(
    hostname: &str,
    text: &str,
    dirs: &[PathBuf],
    context: &BTreeMap<String, Node>,
) -> Result<String, RenderError> {
    let mut env = environment();
    let search = dirs.to_vec();
    env.set_loader(move |name: &str| {
        if name.contains("..") || name.starts_with('/') {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("template name '{name}' leaves the template directories"),
            ));
        }
        for d in &search {
            let p = d.join(name);
            if p.is_file() {
                return std::fs::read_to_string(&p).map(Some).map_err(|e| {
                    minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        format!("{}: {e}", p.display()),
                    )
                });
            }
        }
        Ok(super::builtin::device_type(name).map(str::to_string))
    });
    let device_type = extends_target(text).unwrap_or_default();
    // A job's context reaches the template only through LAVA's context variables, each
    // checked as the value it names: a job never sets a command, binary or path the host
    // runs, even if its validation was skipped (docs/security.md).
    let mut ctx = BTreeMap::new();
    for (k, v) in context {
        if !crate::job::parse::CONTEXT_VARIABLES.contains(&k.as_str()) {
            continue;
        }
        crate::job::qemu_args::check_context(k, v)
            .map_err(|e| RenderError::Template(format!("job context '{k}': {e}")))?;
        ctx.insert(k.clone(), to_jinja(v));
    }
    ctx.insert("scheduled_device_name".into(), hostname.into());
    ctx.insert("scheduled_device_type".into(), device_type.into());
    let tmpl = env
        .template_from_named_str(hostname, text)
        .map_err(|e| render_error(&e, hostname, text))?;
    tmpl.render(&ctx)
        .map_err(|e| render_error(&e, hostname, text))
}

/// A Jinja2 environment configured as LAVA configures it (`trim_blocks`, Python's string
/// methods, LAVA's filters), without a loader.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("shlex_quote", |v: minijinja::Value| {
        shlex_quote(&value_text(&v))
    });
    env.add_filter("yaml_quote", |v: minijinja::Value| {
        crate::yaml::quote_str(&value_text(&v))
    });
    env.add_filter(
        "qemu_guest_fs_interface",
        |arch: minijinja::Value, iface: Option<minijinja::Value>| -> String {
            match iface {
                Some(i) if i.is_true() => value_text(&i),
                _ if X86_ARCHS.contains(&value_text(&arch).as_str()) => "ide".into(),
                _ => "virtio".into(),
            }
        },
    );
    env
}

/// The variables a dictionary sets itself (its top-level `{% set %}` lines), evaluated by
/// Jinja2 without its device-type template: the template it extends is taken as empty, so a
/// dictionary's own variables can be read (basalt's admin tools' `ser2net_device`, ...) on a
/// host that does not have the device types, and whatever the template would do with them.
/// Values are YAML nodes: a string, an integer, a boolean, a list ...
pub fn dictionary_variables(
    hostname: &str,
    text: &str,
) -> Result<BTreeMap<String, Node>, RenderError> {
    let mut env = environment();
    env.set_loader(|_name: &str| Ok(Some(String::new())));
    let mut ctx = BTreeMap::new();
    ctx.insert("scheduled_device_name", minijinja::Value::from(hostname));
    ctx.insert(
        "scheduled_device_type",
        minijinja::Value::from(extends_target(text).unwrap_or_default()),
    );
    let tmpl = env
        .template_from_named_str(hostname, text)
        .map_err(|e| RenderError::Template(describe(&e)))?;
    let rendered = tmpl
        .render_captured(&ctx)
        .map_err(|e| RenderError::Template(describe(&e)))?;
    let state = rendered.state();
    Ok(state
        .exports()
        .into_iter()
        .filter_map(|name| Some((name.to_string(), from_jinja(&state.lookup(name)?))))
        .collect())
}

/// A Jinja2 value as a YAML node (what cannot be data, a macro or a callable, is null).
fn from_jinja(v: &minijinja::Value) -> Node {
    use minijinja::value::ValueKind;
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => Node::null(),
        ValueKind::Bool => Node::new(Value::Bool(v.is_true())),
        ValueKind::Number => match i64::try_from(v.clone()) {
            Ok(i) => Node::new(Value::Int(i)),
            Err(_) => f64::try_from(v.clone())
                .map(|f| Node::new(Value::Float(f)))
                .unwrap_or_else(|_| Node::str(v.to_string())),
        },
        ValueKind::String => Node::str(v.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => Node::new(Value::Seq(
            v.try_iter()
                .map(|items| items.map(|i| from_jinja(&i)).collect())
                .unwrap_or_default(),
        )),
        ValueKind::Map => Node::new(Value::Map(
            v.try_iter()
                .map(|keys| {
                    keys.map(|k| {
                        let item = v.get_item(&k).unwrap_or_default();
                        (from_jinja(&k), from_jinja(&item))
                    })
                    .collect()
                })
                .unwrap_or_default(),
        )),
        _ => Node::null(),
    }
}

fn value_text(v: &minijinja::Value) -> String {
    if v.is_undefined() || v.is_none() {
        String::new()
    } else {
        v.to_string()
    }
}

/// The device type a dictionary extends: `{% extends 'qemu.jinja2' %}` → `qemu`.
pub fn extends_target(text: &str) -> Option<String> {
    let start = text.find("extends")?;
    let rest = &text[start + "extends".len()..];
    let q = rest.find(['\'', '"'])?;
    let quote = rest[q..].chars().next()?;
    let body = &rest[q + 1..];
    let end = body.find(quote)?;
    let name = &body[..end];
    Some(name.strip_suffix(".jinja2").unwrap_or(name).to_string())
}

/// `e` as a [`RenderError`]: at its line and column when it is in the dictionary `text`
/// itself (named `hostname`), else described with the template it is in.
fn render_error(e: &minijinja::Error, hostname: &str, text: &str) -> RenderError {
    if let (Some(name), Some(line), Some(range)) = (e.name(), e.line(), e.range()) {
        if name == hostname {
            if let Some(before) = text.get(..range.start) {
                let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                let mut message = describe(e);
                let prefix = format!("{name}:{line}: ");
                if let Some(rest) = message.strip_prefix(&prefix) {
                    message = rest.to_string();
                }
                return RenderError::At {
                    name: name.to_string(),
                    line,
                    column,
                    message,
                };
            }
        }
    }
    RenderError::Template(describe(e))
}

fn describe(e: &minijinja::Error) -> String {
    let mut s = String::new();
    match (e.name(), e.line()) {
        (Some(n), Some(l)) => s.push_str(&format!("{n}:{l}: ")),
        (Some(n), None) => s.push_str(&format!("{n}: ")),
        _ => {}
    }
    s.push_str(
        &e.detail()
            .map(str::to_string)
            .unwrap_or_else(|| e.kind().to_string()),
    );
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_in_the_dictionary_says_its_line_and_column() {
        let text = "{% extends 'qemu.jinja2' %}\n{% set arch = 'amd64' %}\n  {% set x = %}\n";
        match render_str("d1", text, &[], &BTreeMap::new()) {
            Err(RenderError::At {
                name,
                line,
                column,
                message,
            }) => {
                assert_eq!((name.as_str(), line), ("d1", 3), "{message}");
                assert!((3..=14).contains(&column), "column {column}: {message}");
                assert!(!message.starts_with("d1:"), "{message}");
            }
            other => panic!("an error at a place, not {other:?}"),
        }
        let e = render_str(
            "d1",
            "{% extends 'nothing-such.jinja2' %}\n",
            &[],
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("nothing-such"), "{e}");
    }

    #[test]
    fn quotes_like_python() {
        assert_eq!(shlex_quote("abc-1.2"), "abc-1.2");
        assert_eq!(shlex_quote(""), "''");
        assert_eq!(shlex_quote("a b'c"), "'a b'\"'\"'c'");
    }

    #[test]
    fn dictionary_sets_win_over_context() {
        let dir = std::env::temp_dir().join(format!("basalt-render-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("t.jinja2"), "arch: {{ arch|default('x') }}\nname: {{ scheduled_device_name }}\n{% block b %}{% endblock %}\n").unwrap();
        let mut ctx = BTreeMap::new();
        ctx.insert("arch".to_string(), Node::str("arm64"));
        let out = render_str(
            "d1",
            "{% extends 't.jinja2' %}\n{% set arch = 'amd64' %}\n",
            std::slice::from_ref(&dir),
            &ctx,
        )
        .unwrap();
        assert!(out.contains("arch: amd64"), "{out}");
        assert!(out.contains("name: d1"), "{out}");
        let out = render_str(
            "d1",
            "{% extends 't.jinja2' %}\n",
            std::slice::from_ref(&dir),
            &ctx,
        )
        .unwrap();
        assert!(out.contains("arch: arm64"), "{out}");
        let err = render_str(
            "d1",
            "{% extends '../etc/passwd' %}\n",
            std::slice::from_ref(&dir),
            &ctx,
        )
        .unwrap_err();
        assert!(err.to_string().contains("leaves"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_dictionarys_own_variables_are_read_without_its_template() {
        let text = "{# a board #}\n{% extends 'no-such-type.jinja2' %}\n\
                    {% set ser2net_device = '/dev/rack-usb01' %}\n\
                    {% set ser2net_port = 7001 %}\n{% set baud_rate = 115200 %}\n\
                    {% set fast = true %}\n{% set opts = ['-a', 'b'] %}\n\
                    {% set name = scheduled_device_name ~ '-con' %}\n\
                    {% block body %}{% set inner = 1 %}{% endblock %}\n";
        let vars = dictionary_variables("bbb-01", text).unwrap();
        assert_eq!(vars["ser2net_device"].as_str(), Some("/dev/rack-usb01"));
        assert_eq!(vars["ser2net_port"].as_i64(), Some(7001));
        assert_eq!(vars["baud_rate"].as_i64(), Some(115200));
        assert_eq!(vars["fast"].as_bool(), Some(true));
        assert_eq!(vars["opts"].as_seq().map(|s| s.len()), Some(2));
        assert_eq!(vars["name"].as_str(), Some("bbb-01-con"));
        assert!(
            !vars.contains_key("inner"),
            "a block's sets are the template's: {vars:?}"
        );
        let err = dictionary_variables("bad", "{% set x = %}\n").unwrap_err();
        assert!(err.to_string().starts_with("bad:1: "), "{err}");
    }
}
