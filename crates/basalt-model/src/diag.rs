//! Diagnostics that point at the offending key: `file:line:column: path.to.key: message`.

use crate::yaml::{Mark, Node};
use std::fmt;

/// How bad a diagnostic is: errors reject the input, warnings are reported and accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about an input document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub mark: Mark,
    /// Where in the document, e.g. `actions[1].boot.method`.
    pub path: String,
    pub message: String,
}

/// The findings about one file.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub file: String,
    pub items: Vec<Diagnostic>,
}

impl Report {
    pub fn new(file: impl Into<String>) -> Report {
        Report {
            file: file.into(),
            items: Vec::new(),
        }
    }

    pub fn error(&mut self, node: &Node, path: &str, message: impl Into<String>) {
        self.push(Severity::Error, node.mark, path, message);
    }

    pub fn warn(&mut self, node: &Node, path: &str, message: impl Into<String>) {
        self.push(Severity::Warning, node.mark, path, message);
    }

    pub fn push(&mut self, severity: Severity, mark: Mark, path: &str, message: impl Into<String>) {
        self.items.push(Diagnostic {
            severity,
            mark,
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    /// Sorts findings by position so that the report reads top to bottom.
    pub fn sort(&mut self) {
        self.items.sort_by_key(|d| (d.mark, d.severity));
    }

    /// Formats one diagnostic with this report's file name.
    pub fn line(&self, d: &Diagnostic) -> String {
        let kind = match d.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        if d.mark.line == 0 {
            // No position: the fault is the file itself (it cannot be read).
            format!("{}: {kind}{}", self.file, d.message)
        } else if d.path.is_empty() {
            format!("{}:{}: {kind}{}", self.file, d.mark, d.message)
        } else {
            format!("{}:{}: {kind}{}: {}", self.file, d.mark, d.path, d.message)
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{}", self.line(d))?;
        }
        Ok(())
    }
}

/// Loads a YAML document; a syntax error becomes a report with that one error.
pub fn load_document(file: &str, text: &str) -> Result<Node, Report> {
    crate::yaml::load(text).map_err(|e| {
        let mut r = Report::new(file);
        r.push(
            Severity::Error,
            e.mark,
            "",
            format!("invalid YAML: {}", e.message),
        );
        r
    })
}

/// Joins a path and a key: `actions[1]` + `boot` → `actions[1].boot`.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Joins a path and an index: `actions` + 1 → `actions[1]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}
