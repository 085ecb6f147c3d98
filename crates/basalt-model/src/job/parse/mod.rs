//! YAML tree → [`Job`], following LAVA's verdict (docs/validation.md): what LAVA accepts is
//! accepted, with warnings for keys and strategies basalt does not handle; what LAVA refuses is
//! an error that names the key and its line. One module per section of a job; the shared
//! readers are here and in `crate::reader`.

mod action;
mod boot;
mod deploy;
mod notify;
mod protocols;
mod test;
mod top;

use action::*;
use boot::*;
use deploy::*;
use notify::*;
use protocols::*;
use test::*;
use top::*;

use super::testdef::check_inline_testdef;
use super::timeout::Rule;
use super::*;
use crate::diag::{index, join, Report};
use crate::reader::{entries, integer, list, one_of, str_map, string, text, text_or_list, Fields};
use crate::yaml::{Node, Value};
pub use deploy::TFTP_IMAGE_KEYS;
use std::collections::BTreeSet;
use std::path::Path;

/// A job that could not be read: the report holds every error (and the warnings).
#[derive(Debug, thiserror::Error)]
#[error("{report}")]
pub struct JobError {
    pub report: Report,
}

/// Context variables LAVA lets a job pass to the device-type template (`CONTEXT_VARIABLES`).
pub const CONTEXT_VARIABLES: &[&str] = &[
    // qemu
    "arch",
    "boot_console",
    "boot_root",
    "cpu",
    "extra_options",
    "guestfs_driveid",
    "guestfs_interface",
    "guestfs_size",
    "machine",
    "memory",
    "model",
    "monitor",
    "netdevice",
    "no_kvm",
    "no_network",
    "serial",
    "vga",
    // u-boot
    "booti_kernel_addr",
    "booti_ramdisk_addr",
    "booti_dtb_addr",
    "bootm_kernel_addr",
    "bootm_ramdisk_addr",
    "bootm_dtb_addr",
    "bootz_kernel_addr",
    "bootz_ramdisk_addr",
    "bootz_dtb_addr",
    // others
    "deploy_character_delay",
    "boot_character_delay",
    "boot_retry",
    "bootloader_prompt",
    "console_device",
    "custom_kernel_args",
    "extra_kernel_args",
    "extra_nfsroot_args",
    "failure_retry",
    "kernel_loglevel",
    "kernel_start_message",
    "lava_test_results_dir",
    "menu_interrupt_prompt",
    "mustang_menu_list",
    "test_character_delay",
    "tftp_mac_address",
    "uboot_extra_error_message",
    "uboot_needs_interrupt",
    "uboot_altbank",
];

/// LAVA spells some strategy names with `_` (`ser_ctl`, `new_connection`) and names its
/// schema modules with `_` for `-`: both spellings are the same name.
fn lava_knows(list: &[&str], name: &str) -> bool {
    list.contains(&name.replace('_', "-").as_str())
}

/// A strategy basalt does not run: a warning when LAVA knows it, else an error listing
/// LAVA's (`what` is its kind and how to name this one in the warning).
fn other_strategy(
    r: &mut Report,
    node: &Node,
    path: &str,
    what: (&str, &str),
    name: &str,
    lava: &[&str],
    in_scope: &[&str],
) {
    if lava_knows(lava, name) || one_of(r, node, path, what.0, name, lava) {
        r.warn(
            node,
            path,
            format!(
                "{} is outside basalt's scope (it handles {}); the job validates but cannot run here",
                what.1,
                in_scope.join(", ")
            ),
        );
    }
}

/// Whose rules a job document is read by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// LAVA's submission verdict (`basalt validate`, the master's submit): a MultiNode
    /// sub-job, which only the server makes, is refused.
    Submission,
    /// What a dispatcher receives (`basalt run`, the worker): a server-made MultiNode
    /// sub-job is accepted with the keys the server adds.
    Dispatch,
}

/// Reads and checks a job file by LAVA's submission rules.
pub fn parse_job_file(path: &Path) -> Result<(Job, Report), JobError> {
    parse_job_file_as(path, Reading::Submission)
}

/// Reads and checks a job file.
pub fn parse_job_file_as(path: &Path, reading: Reading) -> Result<(Job, Report), JobError> {
    let name = path.display().to_string();
    let fail = |mark: crate::yaml::Mark, message: String| {
        let mut report = Report::new(&name);
        report.push(crate::diag::Severity::Error, mark, "", message);
        JobError { report }
    };
    let bytes =
        std::fs::read(path).map_err(|e| fail(Default::default(), format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        let col = good.iter().rev().take_while(|b| **b != b'\n').count() + 1;
        let mark = crate::yaml::Mark {
            line: line as u32,
            col: col as u32,
        };
        fail(
            mark,
            "not UTF-8 text (a job file is UTF-8 YAML)".to_string(),
        )
    })?;
    parse_job_as(&name, &text, reading)
}

/// Checks a job document by LAVA's submission rules. On success the report holds the
/// warnings.
pub fn parse_job(file: &str, text: &str) -> Result<(Job, Report), JobError> {
    parse_job_as(file, text, Reading::Submission)
}

/// Checks a job document. On success the report holds the warnings.
pub fn parse_job_as(file: &str, text: &str, reading: Reading) -> Result<(Job, Report), JobError> {
    let root = crate::diag::load_document(file, text).map_err(|report| JobError { report })?;
    let mut r = Report::new(file);
    let subjob = is_subjob(&root);
    if subjob && reading == Reading::Submission {
        let at = root
            .key_node("target_group")
            .or_else(|| {
                root.path(&["protocols", "lava-multinode"])
                    .and_then(|m| m.key_node("target_group"))
            })
            .unwrap_or(&root);
        r.error(
            at,
            "target_group",
            "this is a MultiNode sub-job as LAVA's server makes them, not a submission (LAVA refuses it): submit the MultiNode job, or give this one to `basalt run`",
        );
    }
    let job = read_job(&mut r, &root, subjob && reading == Reading::Dispatch);
    r.sort();
    match job {
        Some(job) if !r.has_errors() => Ok((job, r)),
        _ => Err(JobError { report: r }),
    }
}

/// Python's truth value of a YAML node (LAVA tests `if value:`).
fn truthy(n: &Node) -> bool {
    match &n.value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(x) => *x != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::Seq(s) => !s.is_empty(),
        Value::Map(m) => !m.is_empty(),
    }
}

/// An error unless `n` is a mapping.
fn expect_map(r: &mut Report, n: &Node, path: &str) -> bool {
    if n.as_map().is_some() {
        return true;
    }
    r.error(n, path, format!("expected a mapping, found {}", n.kind()));
    false
}

/// Like [`Fields::finish`], but unknown keys are errors (where LAVA's gate allows no extra
/// keys); a key close to a known one gets a suggestion.
fn finish_closed(f: Fields<'_>, r: &mut Report, what: &str, known: &[&str]) {
    let mut extra = Report::new("");
    f.finish(&mut extra, what);
    for mut d in extra.items {
        if d.severity == crate::diag::Severity::Warning {
            d.severity = crate::diag::Severity::Error;
            let key = d.path.rsplit('.').next().unwrap_or("");
            d.message = match closest(key, known) {
                Some(k) => format!("unknown key in {what} (did you mean '{k}'?)"),
                None => format!(
                    "unknown key in {what}; expected one of {}",
                    known.join(", ")
                ),
            };
        }
        r.items.push(d);
    }
}

/// The known name within two edits of `key`, if one is.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    known
        .iter()
        .map(|k| (dist(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// A string that must be one of `allowed`.
fn enum_str(r: &mut Report, n: &Node, path: &str, allowed: &[&str]) -> Option<String> {
    let s = text(r, n, path, true)?;
    let what = path.rsplit('.').next().unwrap_or(path);
    one_of(r, n, path, what, &s, allowed).then_some(s)
}

/// Runs basalt's own reading of keys LAVA does not check there: its errors become warnings,
/// since LAVA accepts the job.
fn lenient<T>(r: &mut Report, read: impl FnOnce(&mut Report) -> T) -> T {
    let mut scratch = Report::new(r.file.clone());
    let out = read(&mut scratch);
    for mut d in scratch.items {
        if d.severity == crate::diag::Severity::Error {
            d.severity = crate::diag::Severity::Warning;
            d.message = format!(
                "{} (LAVA does not check this; basalt ignores it)",
                d.message
            );
        }
        r.items.push(d);
    }
    out
}

/// The string keys of a mapping.
fn keys_of(n: &Node) -> Vec<&str> {
    n.as_map()
        .unwrap_or(&[])
        .iter()
        .filter_map(|(k, _)| k.as_str())
        .collect()
}

/// Reads each mapping of the list under `key` with LAVA's typing; `read` gets the item's
/// fields and path.
fn each_mapping<'n>(
    r: &mut Report,
    f: &mut Fields<'n>,
    key: &str,
    mut read: impl FnMut(&mut Report, Fields<'n>, &str),
) {
    let Some(list_node) = f.opt(key) else {
        return;
    };
    let lpath = f.sub(key);
    for (k, item) in list(r, list_node, &lpath).iter().enumerate() {
        let ip = index(&lpath, k);
        if let Some(ff) = Fields::strict(r, item, &ip) {
            read(r, ff, &ip);
        }
    }
}

/// A non-empty string (LAVA's `All(str, Length(min=1))`).
fn non_empty(r: &mut Report, n: &Node, path: &str) -> Option<String> {
    let s = text(r, n, path, true)?;
    if s.is_empty() {
        r.error(n, path, "must not be empty");
        return None;
    }
    Some(s)
}
