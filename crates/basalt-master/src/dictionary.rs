//! A device dictionary is checked before the master stores it: it must render with the
//! master's device-type templates (its `--device-types` directories, then basalt's own) and
//! the result must be a device basalt can read (LAVA's `Device.is_valid`, done at the time it
//! is set so that a bad dictionary never replaces a good one). Errors say where: the line and
//! column in the dictionary, or what is wrong with the rendered device.

use basalt_model::device::render::{extends_target, render_str, RenderError};
use basalt_model::device::Device;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Why a dictionary was refused.
#[derive(Debug)]
pub struct DictionaryError {
    /// What is wrong.
    pub detail: String,
    /// Where in the dictionary (1-based line and column), when the error is in it.
    pub position: Option<(usize, usize)>,
}

impl std::fmt::Display for DictionaryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "line {line}, column {column}: {}", self.detail),
            None => f.write_str(&self.detail),
        }
    }
}

impl std::error::Error for DictionaryError {}

/// Checks `text`, the dictionary of device `hostname`, against the template directories
/// `dirs` (before basalt's built-in templates).
pub fn check(hostname: &str, text: &str, dirs: &[PathBuf]) -> Result<(), DictionaryError> {
    if text.trim().is_empty() {
        return Err(DictionaryError {
            detail: "the dictionary is empty: it needs at least {% extends 'TYPE.jinja2' %}".into(),
            position: None,
        });
    }
    if extends_target(text).is_none() {
        return Err(DictionaryError {
            detail: "it extends no device-type template: a dictionary starts with {% extends 'TYPE.jinja2' %}".into(),
            position: None,
        });
    }
    let rendered = render_str(hostname, text, dirs, &BTreeMap::new()).map_err(|e| match e {
        RenderError::At {
            line,
            column,
            message,
            ..
        } => DictionaryError {
            detail: message,
            position: Some((line, column)),
        },
        other => DictionaryError {
            detail: other.to_string(),
            position: None,
        },
    })?;
    let label = format!("{hostname} (rendered)");
    Device::from_yaml(&label, &rendered, hostname).map_err(|e| DictionaryError {
        detail: format!("it renders to a device that is not valid: {e}"),
        position: None,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dictionary_of_a_builtin_type_passes() {
        check(
            "qemu-1",
            "{% extends 'qemu.jinja2' %}\n{% set netdevice = 'user' %}\n",
            &[],
        )
        .unwrap();
    }

    #[test]
    fn a_syntax_error_says_its_line_and_column() {
        let e = check(
            "qemu-1",
            "{% extends 'qemu.jinja2' %}\n{% set netdevice = 'user' \n",
            &[],
        )
        .unwrap_err();
        let (line, _) = e.position.expect("a position");
        assert!(line >= 2, "{e}");
        assert!(
            e.to_string().starts_with(&format!("line {line}, column ")),
            "{e}"
        );
    }

    #[test]
    fn a_missing_template_and_an_empty_text_are_refused() {
        let e = check("x", "{% extends 'no-such-type.jinja2' %}\n", &[]).unwrap_err();
        assert!(e.detail.contains("no-such-type"), "{e}");
        let e = check("x", "  \n", &[]).unwrap_err();
        assert!(e.detail.contains("empty"), "{e}");
        // not a dictionary
        let e = check("x", "just: words\n", &[]).unwrap_err();
        assert!(e.detail.contains("extends no device-type template"), "{e}");
        // a template that renders to no valid device
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("odd.jinja2"), "actions: [1, 2]\n").unwrap();
        let e = check(
            "x",
            "{% extends 'odd.jinja2' %}\n",
            &[dir.path().to_path_buf()],
        )
        .unwrap_err();
        assert!(e.detail.contains("not valid"), "{e}");
    }
}
