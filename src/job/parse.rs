//! YAML tree → [`Job`], following LAVA's submission gate: what LAVA accepts is accepted, with
//! warnings for keys and strategies basalt does not handle; what LAVA rejects is an error that
//! names the key and its line.

use super::testdef::check_inline_testdef;
use super::timeout::Rule;
use super::*;
use crate::diag::{index, join, Report};
use crate::reader::{entries, integer, list, one_of, str_map, string, text, text_or_list, Fields};
use crate::yaml::{Node, Value};
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

/// Every deploy `to:` LAVA knows; those outside [`DeployTo::IN_SCOPE`] are warnings.
const LAVA_DEPLOY_TO: &[&str] = &[
    "avh",
    "docker",
    "download",
    "downloads",
    "fastboot",
    "flasher",
    "fvp",
    "image",
    "iso-installer",
    "lxc",
    "mps",
    "musca",
    "nbd",
    "nfs",
    "overlay",
    "qdl",
    "qemu-nfs",
    "recovery",
    "sata",
    "sd",
    "ssh",
    "tftp",
    "tmpfs",
    "u-boot-ums",
    "usb",
    "usbg-ms",
    "uuu",
    "vemsd",
];

/// Every boot `method:` LAVA knows; those outside [`BootMethod::IN_SCOPE`] are warnings.
const LAVA_BOOT_METHODS: &[&str] = &[
    "avh",
    "barebox",
    "bootloader",
    "cmsis-dap",
    "depthcharge",
    "dfu",
    "docker",
    "fastboot",
    "fvp",
    "gdb",
    "grub",
    "grub-efi",
    "ipxe",
    "jlink",
    "kexec",
    "lxc",
    "minimal",
    "monitor",
    "musca",
    "new-connection",
    "nodebooter",
    "openocd",
    "pyocd",
    "qdl",
    "qemu",
    "qemu-iso",
    "qemu-nfs",
    "recovery",
    "rockchip",
    "schroot",
    "secure-boot",
    "ser-ctl",
    "ssh",
    "u-boot",
    "u-boot-ums",
    "uefi",
    "uefi-menu",
    "uuu",
    "vexpress",
];

/// LAVA spells some strategy names with `_` (`ser_ctl`, `new_connection`) and names its
/// schema modules with `_` for `-`: both spellings are the same name.
fn lava_knows(list: &[&str], name: &str) -> bool {
    list.contains(&name.replace('_', "-").as_str())
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

/// Keys the server adds to MultiNode sub-jobs; a sub-job is what the dispatcher receives
/// (LAVA does not run its submission gate on it), so they are accepted there only.
const SUBJOB_KEYS: &[&str] = &[
    "target_group",
    "group_size",
    "sub_id",
    "role",
    "roles",
    "connection",
    "host_role",
    "description",
];

/// The top-level keys of a job (LAVA's submission gate refuses any other).
const TOP_KEYS: &[&str] = &[
    "job_name",
    "device_type",
    "device",
    "worker",
    "timeouts",
    "visibility",
    "priority",
    "context",
    "metadata",
    "secrets",
    "environment",
    "tags",
    "protocols",
    "notify",
    "reboot_to_fastboot",
    "actions",
];

/// Whether a document is a server-made MultiNode sub-job rather than a submission.
fn is_subjob(root: &Node) -> bool {
    root.get("target_group").is_some()
        || root
            .path(&["protocols", "lava-multinode", "target_group"])
            .is_some()
}

fn read_job(r: &mut Report, root: &Node, subjob: bool) -> Option<Job> {
    if root.is_null() {
        r.error(
            root,
            "",
            "the document is empty: a job is a mapping (job_name, device_type, timeouts, visibility, actions)",
        );
        return None;
    }
    let mut f = Fields::strict(r, root, "")?;
    let job_name = f.req_str(r, "job_name");
    if let (Some(name), Some(n)) = (&job_name, f.opt("job_name")) {
        if name.is_empty() || name.chars().count() > 200 {
            r.error(n, "job_name", "must be 1 to 200 characters");
        }
    }
    let name_1_200 = |f: &mut Fields<'_>, r: &mut Report, key: &str| {
        let v = f.opt_str(r, key);
        if let (Some(s), Some(n)) = (&v, f.opt(key)) {
            if s.is_empty() || s.chars().count() > 200 {
                r.error(n, key, "must be 1 to 200 characters");
            }
        }
        v
    };
    let device_type = name_1_200(&mut f, r, "device_type");
    let device = name_1_200(&mut f, r, "device");
    let worker = name_1_200(&mut f, r, "worker");
    let timeouts = f
        .req(r, "timeouts")
        .map(|n| read_job_timeouts(r, n))
        .unwrap_or_default();
    let visibility = f.req(r, "visibility").and_then(|n| read_visibility(r, n));
    let priority = f
        .opt("priority")
        .and_then(|n| read_priority(r, n))
        .unwrap_or(50);
    let context = f
        .opt("context")
        .map(|n| read_context(r, n, "context"))
        .unwrap_or_default();
    let metadata = f.opt("metadata").cloned();
    if let Some(m) = &metadata {
        check_metadata(r, m);
    }
    let tags = f.opt_list_of_str(r, "tags").unwrap_or_default();
    let secrets = f
        .opt("secrets")
        .map(|n| str_str_map(r, n, "secrets"))
        .unwrap_or_default();
    let environment = f.opt("environment").cloned();
    if let Some(e) = &environment {
        expect_map(r, e, "environment");
    }
    let multinode = f
        .opt("protocols")
        .and_then(|n| read_protocols(r, n, subjob));
    let notify = f.opt("notify").cloned();
    if let Some(n) = &notify {
        check_notify(r, n);
    }
    let reboot_to_fastboot = f.opt_bool(r, "reboot_to_fastboot").unwrap_or(false);
    let actions = f
        .req(r, "actions")
        .map(|n| {
            list(r, n, "actions")
                .iter()
                .enumerate()
                .flat_map(|(i, a)| read_action(r, a, i))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if subjob {
        f.finish_with(r, "the job", SUBJOB_KEYS);
    } else {
        finish_closed(f, r, "the job", TOP_KEYS);
    }

    let multinode_on = root
        .path(&["protocols", "lava-multinode"])
        .and_then(Node::as_map)
        .is_some_and(|m| !m.is_empty());
    if !subjob && multinode_on {
        // LAVA's check_multinode_extras: these belong to the roles of a MultiNode job.
        for key in ["device_type", "environment", "context", "tags"] {
            if let Some((k, v)) = root
                .as_map()
                .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
            {
                if truthy(v) {
                    r.error(
                        k,
                        key,
                        format!(
                            "'{key}' is not used with multinode: give it to each role under protocols.lava-multinode.roles"
                        ),
                    );
                }
            }
        }
    }
    if !multinode_on && !root.get("device_type").is_some_and(truthy) {
        r.error(
            root,
            "device_type",
            "required key not provided (only multinode jobs may omit it)",
        );
    }
    check_job_wide(r, root, &timeouts, &actions, multinode.as_ref(), subjob);
    Some(Job {
        job_name: job_name?,
        device_type,
        device,
        worker,
        timeouts,
        visibility: visibility?,
        priority,
        context,
        metadata,
        tags,
        secrets,
        environment,
        multinode,
        notify,
        reboot_to_fastboot,
        actions,
    })
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

/// `metadata:` is a mapping with any values; its keys are strings or integers (the gate's
/// `{Any(str, int): object}`; the job schema lets other keys pass as extras).
fn check_metadata(r: &mut Report, m: &Node) {
    if !expect_map(r, m, "metadata") {
        return;
    }
    for (k, _) in m.as_map().unwrap_or(&[]) {
        if !matches!(k.value, Value::Str(_) | Value::Int(_) | Value::Bool(_)) {
            r.error(
                k,
                "metadata",
                format!("metadata keys are strings or integers, found {}", k.kind()),
            );
        }
    }
}

/// A mapping of strings to strings (LAVA's `{str: str}`), with LAVA's typing.
fn str_str_map(r: &mut Report, n: &Node, path: &str) -> Vec<(String, String)> {
    let Some(entries) = n.as_map() else {
        r.error(n, path, format!("expected a mapping, found {}", n.kind()));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let Some(key) = text(r, k, path, true) else {
            continue;
        };
        if let Some(val) = text(r, v, &join(path, &key), true) {
            out.push((key, val));
        }
    }
    out
}

fn read_job_timeouts(r: &mut Report, n: &Node) -> JobTimeouts {
    let mut t = JobTimeouts::default();
    let Some(mut f) = Fields::strict(r, n, "timeouts") else {
        return t;
    };
    let closed = |r: &mut Report, n: &Node, p: &str| Timeout::parse_job(r, n, p, Rule::Closed);
    t.job = f.req(r, "job").and_then(|n| closed(r, n, "timeouts.job"));
    t.action = f
        .opt("action")
        .and_then(|n| closed(r, n, "timeouts.action"));
    t.connection = f
        .opt("connection")
        .and_then(|n| closed(r, n, "timeouts.connection"));
    t.queue = f.opt("queue").and_then(|n| closed(r, n, "timeouts.queue"));
    t.actions = f
        .opt("actions")
        .map(|n| named_timeouts(r, n, "timeouts.actions", Rule::Closed, true))
        .unwrap_or_default();
    t.connections = f
        .opt("connections")
        .map(|n| named_timeouts(r, n, "timeouts.connections", Rule::Closed, true))
        .unwrap_or_default();
    finish_closed(
        f,
        r,
        "timeouts",
        &[
            "job",
            "action",
            "connection",
            "queue",
            "actions",
            "connections",
        ],
    );
    t
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

/// `{action-name: timeout}`; `named` applies the gate's rule that names are `[a-z-]+`.
fn named_timeouts(
    r: &mut Report,
    n: &Node,
    path: &str,
    rule: Rule,
    named: bool,
) -> BTreeMap<String, Timeout> {
    let mut out = BTreeMap::new();
    for (name, k, v) in entries(r, n, path) {
        let p = join(path, &name);
        if named && (name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '-')) {
            r.error(
                k,
                &p,
                format!("'{name}' is not an action name (lower-case letters and '-')"),
            );
            continue;
        }
        if let Some(t) = Timeout::parse_job(r, v, &p, rule) {
            out.insert(name, t);
        }
    }
    out
}

fn read_visibility(r: &mut Report, n: &Node) -> Option<Visibility> {
    match &n.value {
        Value::Str(s) if s == "public" => Some(Visibility::Public),
        Value::Str(s) if s == "personal" => Some(Visibility::Personal),
        Value::Map(_) => {
            let mut f = Fields::strict(r, n, "visibility")?;
            let groups = f.req(r, "group");
            let groups = groups.and_then(|_| f.opt_list_of_str(r, "group"));
            finish_closed(f, r, "visibility", &["group"]);
            Some(Visibility::Group(groups?))
        }
        _ => {
            r.error(
                n,
                "visibility",
                "expected 'public', 'personal' or {group: [names]}",
            );
            None
        }
    }
}

fn read_priority(r: &mut Report, n: &Node) -> Option<u8> {
    match &n.value {
        Value::Str(s) => match s.as_str() {
            "high" => Some(100),
            "medium" => Some(50),
            "low" => Some(0),
            other => {
                one_of(
                    r,
                    n,
                    "priority",
                    "priority",
                    other,
                    &["high", "medium", "low", "0..100"],
                );
                None
            }
        },
        _ => integer(r, n, "priority", 0, 100).map(|i| i as u8),
    }
}

/// `context:`: only LAVA's `CONTEXT_VARIABLES`, each a string, an integer or a list of them.
fn read_context(r: &mut Report, n: &Node, path: &str) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    for (key, k, v) in entries(r, n, path) {
        let p = join(path, &key);
        if !CONTEXT_VARIABLES.contains(&key.as_str()) {
            let hint = closest(&key, CONTEXT_VARIABLES)
                .map(|c| format!(" (did you mean '{c}'?)"))
                .unwrap_or_default();
            r.error(
                k,
                &p,
                format!("'{key}' is not one of LAVA's context variables{hint}; the device-type template's other variables belong to the device dictionary"),
            );
            continue;
        }
        let scalar_ok =
            |x: &Node| matches!(x.value, Value::Str(_) | Value::Int(_) | Value::Bool(_));
        let ok = match &v.value {
            Value::Seq(items) => {
                let mut all = true;
                for (i, item) in items.iter().enumerate() {
                    if !scalar_ok(item) {
                        r.error(
                            item,
                            &index(&p, i),
                            format!(
                                "context list items are strings or integers, found {}",
                                item.kind()
                            ),
                        );
                        all = false;
                    }
                }
                all
            }
            _ if scalar_ok(v) => true,
            _ => {
                let at = if v.as_map().is_some() { k } else { v };
                r.error(
                    at,
                    &p,
                    format!(
                        "context values are strings, integers or lists of them, found {}",
                        v.kind()
                    ),
                );
                false
            }
        };
        if ok {
            out.insert(key, v.clone());
        }
    }
    out
}

fn read_protocols(r: &mut Report, n: &Node, subjob: bool) -> Option<Multinode> {
    let mut f = Fields::strict(r, n, "protocols")?;
    let mn = f
        .opt("lava-multinode")
        .and_then(|m| read_multinode(r, m, subjob));
    if let Some(x) = f.opt("lava-xnbd") {
        if let Some(mut xf) = Fields::strict(r, x, "protocols.lava-xnbd") {
            match xf.req(r, "port") {
                Some(p) if p.as_i64().is_some() || p.as_str() == Some("auto") => {}
                Some(p) => r.error(
                    p,
                    "protocols.lava-xnbd.port",
                    "expected 'auto' or a port number",
                ),
                None => {}
            }
            if let Some(t) = xf.opt("timeout") {
                Timeout::parse_job(r, t, "protocols.lava-xnbd.timeout", Rule::Open);
            }
            xf.finish_with(r, "lava-xnbd", &[]);
        }
        r.warn(
            x,
            "protocols.lava-xnbd",
            "the lava-xnbd protocol is outside basalt's scope; ignored",
        );
    }
    finish_closed(f, r, "protocols", &["lava-multinode", "lava-xnbd"]);
    mn
}

fn read_multinode(r: &mut Report, n: &Node, subjob: bool) -> Option<Multinode> {
    let path = "protocols.lava-multinode";
    let mut f = Fields::strict(r, n, path)?;
    let timeout = f
        .opt("timeout")
        .and_then(|t| Timeout::parse_job(r, t, &join(path, "timeout"), Rule::Closed));
    let (role, target_group) = if subjob {
        (f.opt_str(r, "role"), f.opt_str(r, "target_group"))
    } else {
        (None, None)
    };
    let mut roles = Vec::new();
    let rn = if subjob {
        f.opt("roles")
    } else {
        f.req(r, "roles")
    };
    if let Some(rn) = rn {
        let rpath = join(path, "roles");
        let all = entries(r, rn, &rpath);
        let names: Vec<String> = all.iter().map(|(k, _, _)| k.clone()).collect();
        for (name, _, def) in &all {
            if subjob {
                // A sub-job: `roles` maps job ids to roles.
                roles.push((name.clone(), (*def).clone()));
                continue;
            }
            let p = join(&rpath, name);
            check_role(r, def, &p, &names);
            roles.push((name.clone(), (*def).clone()));
        }
    }
    if subjob {
        f.finish_with(
            r,
            "lava-multinode",
            &[
                "group_size",
                "sub_id",
                "request",
                "messageID",
                "message",
                "expect_role",
            ],
        );
    } else {
        finish_closed(f, r, "protocols.lava-multinode", &["roles", "timeout"]);
    }
    Some(Multinode {
        roles,
        role,
        target_group,
        timeout,
        node: n.clone(),
    })
}

/// One role of a MultiNode submission: LAVA's role schema and `_validate_multinode`.
fn check_role(r: &mut Report, def: &Node, p: &str, names: &[String]) {
    let Some(mut f) = Fields::strict(r, def, p) else {
        return;
    };
    let connection = f.opt_str(r, "connection");
    let device_type = f.opt_str(r, "device_type");
    if f.req(r, "count").is_some() {
        f.opt_range(r, "count", 0, i64::MAX);
    }
    let host = f.opt("host_role");
    let expect = f.opt("expect_role");
    if device_type.is_none() && connection.is_none() && !f.has("device_type") {
        r.error(
            def,
            &f.sub("device_type"),
            "required key not provided (a role names a device_type, or a connection with host_role and expect_role)",
        );
    }
    if connection.is_some() && device_type.is_none() {
        for key in ["expect_role", "host_role"] {
            if !f.has(key) {
                r.error(
                    def,
                    &f.sub(key),
                    "required key not provided (for a connection role)",
                );
            }
        }
    }
    if let Some(h) = host {
        match h.as_str() {
            Some(h_name) if names.iter().any(|x| x == h_name) => {}
            Some(h_name) => r.error(
                h,
                &f.sub("host_role"),
                format!("'host_role' '{h_name}' does not exist"),
            ),
            None => r.error(h, &f.sub("host_role"), "expected a role name"),
        }
        match expect {
            None => r.error(
                h,
                &f.sub("host_role"),
                "'expect_role' is required when 'host_role' is used",
            ),
            Some(e) => match e.as_str() {
                Some(e_name) if names.iter().any(|x| x == e_name) => {}
                Some(e_name) => r.error(
                    e,
                    &f.sub("expect_role"),
                    format!("'expect_role' '{e_name}' does not exist"),
                ),
                None => r.error(e, &f.sub("expect_role"), "expected a role name"),
            },
        }
    } else if let Some(e) = expect {
        r.error(
            e,
            &f.sub("expect_role"),
            "'expect_role' without 'host_role'",
        );
    }
    let device = f.opt_str(r, "device");
    let worker = f.opt_str(r, "worker");
    for (key, v) in [("device", &device), ("worker", &worker)] {
        if v.is_none() {
            continue;
        }
        let node = f.opt(key).unwrap_or(def);
        if connection.is_some() {
            r.error(
                node,
                &f.sub(key),
                format!("lava-multinode connection roles cannot specify {key}"),
            );
        }
        if device_type.is_none() {
            r.error(node, &f.sub(key), format!("'{key}' requires 'device_type'"));
        }
    }
    if device.is_some() && def.get("count").and_then(Node::as_i64) != Some(1) {
        let node = def.get("count").unwrap_or(def);
        r.error(
            node,
            &f.sub("count"),
            "roles using a specific device must set count to 1",
        );
    }
    if let Some(c) = f.opt("context") {
        read_context(r, c, &f.sub("context"));
    }
    f.opt_list_of_str(r, "tags");
    if let Some(e) = f.opt("environment") {
        expect_map(r, e, &f.sub("environment"));
    }
    f.opt_bool(r, "essential");
    f.opt_str(r, "request");
    if let Some(t) = f.opt("timeout") {
        Timeout::parse_job(r, t, &f.sub("timeout"), Rule::Open);
    }
    f.finish(r, "role");
}

/// `notify:`: LAVA's gate and job schema, and the recipient checks of its submission.
fn check_notify(r: &mut Report, n: &Node) {
    let Some(mut f) = Fields::strict(r, n, "notify") else {
        return;
    };
    if let Some(c) = f.req(r, "criteria") {
        if let Some(mut cf) = Fields::strict(r, c, "notify.criteria") {
            if let Some(s) = cf.req(r, "status") {
                if let Some(status) = text(r, s, "notify.criteria.status", true) {
                    one_of(
                        r,
                        s,
                        "notify.criteria.status",
                        "notify status",
                        &status,
                        &[
                            "all",
                            "finished",
                            "running",
                            "complete",
                            "canceled",
                            "incomplete",
                        ],
                    );
                }
            }
            cf.opt_str(r, "dependency_query");
            if let Some(t) = cf.opt("type") {
                enum_str(r, t, "notify.criteria.type", &["progression", "regression"]);
            }
            cf.finish(r, "notify criteria");
        }
    }
    if let Some(v) = f.opt("verbosity") {
        enum_str(
            r,
            v,
            "notify.verbosity",
            &["verbose", "quiet", "status-only"],
        );
    }
    if let Some(rs) = f.opt("recipients") {
        let rpath = "notify.recipients";
        for (i, item) in list(r, rs, rpath).iter().enumerate() {
            let ip = index(rpath, i);
            let Some(mut rf) = Fields::strict(r, item, &ip) else {
                continue;
            };
            if let Some(to) = rf.req(r, "to") {
                let key = item.key_node("to").unwrap_or(to);
                check_recipient(r, to, key, &rf.sub("to"));
            }
            finish_closed(rf, r, "a recipient", &["to"]);
        }
    }
    if f.has("callback") && f.has("callbacks") {
        let node = n.key_node("callbacks").unwrap_or(n);
        r.error(
            node,
            "notify.callbacks",
            "'callback' and 'callbacks' are exclusive",
        );
    }
    if let Some(cb) = f.opt("callback") {
        check_callback(r, cb, "notify.callback");
    }
    if let Some(cbs) = f.opt("callbacks") {
        for (i, cb) in list(r, cbs, "notify.callbacks").iter().enumerate() {
            check_callback(r, cb, &index("notify.callbacks", i));
        }
    }
    if let Some(c) = f.opt("compare") {
        if let Some(mut cf) = Fields::strict(r, c, "notify.compare") {
            cf.opt_list_of_str(r, "blacklist");
            if let Some(q) = cf.opt("query") {
                let qpath = cf.sub("query");
                if let Some(mut qf) = Fields::strict(r, q, &qpath) {
                    if qf.has("entity") {
                        qf.req_str(r, "entity");
                        if let Some(cond) = qf.opt("conditions") {
                            str_str_map(r, cond, &qf.sub("conditions"));
                        }
                        finish_closed(qf, r, "a compare query", &["entity", "conditions"]);
                    } else {
                        qf.req_str(r, "username");
                        qf.req_str(r, "name");
                        finish_closed(qf, r, "a compare query", &["username", "name"]);
                    }
                }
            }
            cf.finish(r, "notify compare");
        }
    }
    f.finish(r, "notify");
}

/// A string that must be one of `allowed`.
fn enum_str(r: &mut Report, n: &Node, path: &str, allowed: &[&str]) -> Option<String> {
    let s = text(r, n, path, true)?;
    let what = path.rsplit('.').next().unwrap_or(path);
    one_of(r, n, path, what, &s, allowed).then_some(s)
}

/// `notify.recipients[].to`: method email or irc, with an address, a handle or a user.
fn check_recipient(r: &mut Report, to: &Node, key: &Node, path: &str) {
    let Some(mut f) = Fields::strict(r, to, path) else {
        return;
    };
    let method = f
        .req(r, "method")
        .and_then(|m| enum_str(r, m, &join(path, "method"), &["email", "irc"]));
    let user = f.opt_str(r, "user");
    let email = f.opt_str(r, "email");
    let handle = f.opt_str(r, "handle");
    f.opt_str(r, "server");
    finish_closed(
        f,
        r,
        "a recipient's 'to'",
        &["method", "user", "email", "server", "handle"],
    );
    match method.as_deref() {
        Some("email") if email.is_none() && user.is_none() => r.error(
            key,
            path,
            "no valid user or email address specified (give 'email' or 'user')",
        ),
        Some("irc") if handle.is_none() && user.is_none() => r.error(
            key,
            path,
            "no valid user or IRC handle specified (give 'handle' or 'user')",
        ),
        _ => {}
    }
}

fn check_callback(r: &mut Report, n: &Node, path: &str) {
    let Some(mut f) = Fields::strict(r, n, path) else {
        return;
    };
    f.req_str(r, "url");
    if let Some(m) = f.opt("method") {
        enum_str(r, m, &f.sub("method"), &["GET", "POST"]);
    }
    f.opt_str(r, "token");
    f.opt_str(r, "header");
    if let Some(d) = f.opt("dataset") {
        enum_str(
            r,
            d,
            &f.sub("dataset"),
            &["minimal", "logs", "results", "all"],
        );
    }
    if let Some(c) = f.opt("content-type") {
        enum_str(r, c, &f.sub("content-type"), &["json", "urlencoded"]);
    }
    f.finish(r, "callback");
}

fn read_common(r: &mut Report, f: &mut Fields<'_>) -> Common {
    let mut c = Common {
        mark: f.node().mark,
        ..Common::default()
    };
    c.namespace = f.opt_str(r, "namespace");
    if let (Some(ns), Some(node)) = (&c.namespace, f.opt("namespace")) {
        if ns == "common" || ns == "docker-test-shell" {
            r.error(
                node,
                &f.sub("namespace"),
                "'common' and 'docker-test-shell' are reserved namespace names",
            );
        }
    }
    c.connection_namespace = f.opt_str(r, "connection-namespace");
    // A list in a submission (checked with the job); sub-jobs carry one role as a string.
    c.role = f.opt_str_list(r, "role").unwrap_or_default();
    c.timeout = f
        .opt("timeout")
        .and_then(|n| Timeout::parse_job(r, n, &f.sub("timeout"), Rule::Closed));
    let tpath = f.sub("timeouts");
    c.timeouts = f
        .opt("timeouts")
        .map(|n| named_timeouts(r, n, &tpath, Rule::Open, false))
        .unwrap_or_default();
    let max = i64::from(u32::MAX);
    c.repeat = f.opt_range(r, "repeat", 1, max).map(|i| i as u32);
    c.failure_retry = f.opt_range(r, "failure_retry", 1, max).map(|i| i as u32);
    c.failure_retry_interval = f
        .opt_range(r, "failure_retry_interval", 1, max)
        .map(|i| i as u32);
    c.protocols = f.opt("protocols").cloned();
    if let (Some(_), Some(_)) = (c.repeat, c.failure_retry) {
        r.warn(
            f.node(),
            &f.path,
            "'repeat' and 'failure_retry' together: basalt retries each repetition",
        );
    }
    c
}

/// One entry of `actions:`: a mapping of deploy, boot, test or command to its block. LAVA
/// takes several keys in one entry and runs them in order, so basalt does too.
fn read_action(r: &mut Report, n: &Node, i: usize) -> Vec<ActionBlock> {
    let path = index("actions", i);
    let Some(items) = n.as_map() else {
        r.error(
            n,
            &path,
            format!(
                "an action is a mapping of deploy, boot, test or command to its block, found {}",
                n.kind()
            ),
        );
        return Vec::new();
    };
    if items.is_empty() {
        r.error(
            n,
            &path,
            "an empty action: give deploy, boot, test or command",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (k, v) in items {
        let kind = k.as_str().unwrap_or("");
        let p = join(&path, kind);
        let block = match kind {
            "deploy" => read_deploy(r, v, &p).map(ActionBlock::Deploy),
            "boot" => read_boot(r, v, &p).map(ActionBlock::Boot),
            "test" => read_test(r, v, &p).map(ActionBlock::Test),
            "command" => read_command(r, v, &p).map(ActionBlock::Command),
            "repeat" => {
                r.error(
                    k,
                    &p,
                    "repeat blocks are not supported (as in LAVA); use 'repeat: N' inside an action",
                );
                None
            }
            other => {
                r.error(
                    k,
                    &p,
                    format!(
                        "unknown action '{other}'; expected one of deploy, boot, test, command"
                    ),
                );
                None
            }
        };
        if let Some(mut block) = block {
            block.common_mut().index = i;
            out.push(block);
        }
    }
    out
}

/// Image keys of the tftp/nfs strategies, in the order LAVA downloads them.
pub const TFTP_IMAGE_KEYS: &[&str] = &[
    "ramdisk",
    "kernel",
    "dtb",
    "nfsrootfs",
    "modules",
    "preseed",
    "tee",
];

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

/// Which of LAVA's `url()` shapes an image has: the keys beyond `url`, `compression`,
/// checksums, `archive`, `headers` and `use_cache` that LAVA checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ImageKind {
    Plain,
    /// tmpfs / nfs images: `image_arg`.
    Tmpfs,
    /// tftp kernel: `type`.
    Kernel,
    /// tftp ramdisk: `install_modules`, `install_overlay`, `header`.
    Ramdisk,
    /// tftp nfsrootfs: `install_modules`, `install_overlay`, `prefix`.
    Nfsrootfs,
    /// usb / sata `image`: `root_partition`.
    Media,
}

fn read_image(r: &mut Report, n: &Node, path: &str, kind: ImageKind) -> Option<ImageRef> {
    let mut f = Fields::strict(r, n, path)?;
    let mut img = ImageRef {
        mark: n.mark,
        ..ImageRef::default()
    };
    img.url = f.req_str(r, "url").unwrap_or_default();
    if let Some(c) = f.opt_nullable("compression").filter(|c| !c.is_null()) {
        if let Some(s) = text(r, c, &f.sub("compression"), true) {
            img.compression = Compression::from_name(&s);
            if img.compression.is_none() {
                one_of(
                    r,
                    c,
                    &f.sub("compression"),
                    "compression",
                    &s,
                    &Compression::NAMES,
                );
            }
        }
    }
    if let Some(a) = f.opt("archive") {
        img.archive = enum_str(r, a, &f.sub("archive"), &["tar"]);
    }
    img.md5sum = f.opt_str(r, "md5sum");
    img.sha256sum = f.opt_str(r, "sha256sum");
    img.sha512sum = f.opt_str(r, "sha512sum");
    f.opt_bool(r, "use_cache");
    if let Some(h) = f.opt("headers") {
        if expect_map(r, h, &f.sub("headers")) {
            img.headers = lenient(r, |r| str_map(r, h, &f.sub("headers")));
        }
    }
    let checked = |k: ImageKind| k == kind;
    let lenient_str = |f: &mut Fields<'_>, r: &mut Report, key: &str, lava: bool| {
        if lava {
            f.opt_str(r, key)
        } else {
            let path = f.sub(key);
            f.opt(key).and_then(|n| lenient(r, |r| string(r, n, &path)))
        }
    };
    img.image_arg = lenient_str(&mut f, r, "image_arg", checked(ImageKind::Tmpfs));
    img.format = lenient_str(&mut f, r, "format", false);
    if let Some(t) = f.opt("type") {
        let tpath = f.sub("type");
        let read = |r: &mut Report| {
            let s = text(r, t, &tpath, true)?;
            Some(match s.as_str() {
                "image" => KernelType::Image,
                "uimage" => KernelType::UImage,
                "zimage" => KernelType::ZImage,
                _ => {
                    one_of(
                        r,
                        t,
                        &tpath,
                        "kernel type",
                        &s,
                        &["image", "uimage", "zimage"],
                    );
                    return None;
                }
            })
        };
        img.kernel_type = if checked(ImageKind::Kernel) {
            read(r)
        } else {
            lenient(r, read)
        };
    }
    let ramdisk = checked(ImageKind::Ramdisk);
    let rootfs = ramdisk || checked(ImageKind::Nfsrootfs);
    if let Some(h) = f.opt("header") {
        let hpath = f.sub("header");
        img.header = if ramdisk {
            enum_str(r, h, &hpath, &["u-boot"])
        } else {
            lenient(r, |r| string(r, h, &hpath))
        };
    }
    for (key, slot) in [
        ("install_modules", &mut img.install_modules),
        ("install_overlay", &mut img.install_overlay),
    ] {
        if rootfs {
            *slot = f.opt_bool(r, key);
        } else if let Some(v) = f.opt(key) {
            let p = f.sub(key);
            *slot = lenient(r, |r| crate::reader::boolean(r, v, &p));
        }
    }
    img.prefix = lenient_str(&mut f, r, "prefix", checked(ImageKind::Nfsrootfs));
    img.overlays = f.opt("overlays").cloned();
    if let Some(p) = f.opt("partition") {
        let pp = f.sub("partition");
        img.partition = lenient(r, |r| integer(r, p, &pp, 0, 1024));
    }
    if let Some(p) = f.opt("root_partition") {
        let pp = f.sub("root_partition");
        img.root_partition = if checked(ImageKind::Media) {
            integer(r, p, &pp, 0, i64::MAX)
        } else {
            lenient(r, |r| integer(r, p, &pp, 0, 1024))
        };
    }
    f.finish_with(
        r,
        "image",
        &[
            "sparse",
            "overlay_backend",
            "apply-overlay",
            "boot_partition",
        ],
    );
    Some(img)
}

/// `{tool, options, prompt}` of a usb/sata deploy's `download:` and `writer:`.
fn check_tool(r: &mut Report, n: &Node, path: &str) {
    if let Some(mut f) = Fields::strict(r, n, path) {
        for key in ["tool", "options", "prompt"] {
            f.req_str(r, key);
        }
        f.finish(r, path.rsplit('.').next().unwrap_or(path));
    }
}

fn read_deploy(r: &mut Report, n: &Node, path: &str) -> Option<Deploy> {
    let mut f = Fields::strict(r, n, path)?;
    let common = read_common(r, &mut f);
    let to_node = f.req(r, "to");
    let to_name = to_node.and_then(|t| text(r, t, &f.sub("to"), true));
    let to = match to_name.as_deref() {
        Some("tmpfs") => DeployTo::Tmpfs,
        Some("tftp") => DeployTo::Tftp,
        Some("nfs") => DeployTo::Nfs,
        Some("usb") => DeployTo::Usb,
        Some("sata") => DeployTo::Sata,
        Some("overlay") => DeployTo::Overlay,
        Some(other) => {
            if let Some(t) = to_node {
                if lava_knows(LAVA_DEPLOY_TO, other)
                    || one_of(r, t, &f.sub("to"), "deploy target", other, LAVA_DEPLOY_TO)
                {
                    r.warn(t, &f.sub("to"), format!(
                        "deploy to '{other}' is outside basalt's scope (it handles {}); the job validates but cannot run here",
                        DeployTo::IN_SCOPE.join(", ")
                    ));
                }
            }
            DeployTo::Other(other.to_string())
        }
        None => DeployTo::Other(String::new()),
    };
    // LAVA takes any string: generators leave placeholders when a variable is unset.
    let os = f.opt_str(r, "os");
    let authorize = f
        .opt("authorize")
        .and_then(|a| enum_str(r, a, &f.sub("authorize"), &["ssh"]));
    if let Some(b) = f.opt("overlay_backend") {
        enum_str(
            r,
            b,
            &f.sub("overlay_backend"),
            &["auto", "e2fsprogs", "guestfs"],
        );
    }
    let mut images = Vec::new();
    let mut persistent_nfs = None;
    let mut media_device = None;
    let mut download_tool = None;
    let mut writer = None;
    let mut monitor = false;
    let mut read_images = |r: &mut Report, imgs: &Node, ipath: &str, kind: ImageKind| {
        let all = entries(r, imgs, ipath);
        if all.is_empty() && imgs.as_map().is_some() {
            r.error(imgs, ipath, "'images' is empty");
        }
        for (label, _, v) in all {
            if let Some(img) = read_image(r, v, &join(ipath, &label), kind) {
                images.push((label, img));
            }
        }
    };
    match &to {
        DeployTo::Tmpfs => {
            if let Some(imgs) = f.req(r, "images") {
                read_images(r, imgs, &f.sub("images"), ImageKind::Tmpfs);
            }
            if let Some(t) = f.opt("type") {
                monitor = enum_str(r, t, &f.sub("type"), &["monitor"]).is_some();
            }
            if let Some(u) = f.opt("uefi") {
                if let Some(img) = read_image(r, u, &f.sub("uefi"), ImageKind::Plain) {
                    images.push(("uefi".to_string(), img));
                }
            }
        }
        DeployTo::Nfs => {
            // LAVA's nfs schema: either nfsrootfs/modules, or images (either passes).
            if let Some(imgs) = f.opt("images") {
                let ipath = f.sub("images");
                lenient(r, |r| read_images(r, imgs, &ipath, ImageKind::Tmpfs));
            }
        }
        DeployTo::Usb | DeployTo::Sata => {
            if let Some(imgs) = f.opt("images") {
                let ipath = f.sub("images");
                if imgs.as_map().is_some() && imgs.get("image").is_none() {
                    r.error(imgs, &join(&ipath, "image"), "required key not provided");
                }
                read_images(r, imgs, &ipath, ImageKind::Plain);
            }
        }
        DeployTo::Overlay => {
            if let Some(imgs) = f.opt("images") {
                let ipath = f.sub("images");
                lenient(r, |r| read_images(r, imgs, &ipath, ImageKind::Tmpfs));
            }
        }
        _ => {}
    }
    match &to {
        DeployTo::Tftp | DeployTo::Nfs => {
            for key in TFTP_IMAGE_KEYS {
                let Some(v) = f.opt(key) else {
                    continue;
                };
                let kind = match (*key, &to) {
                    ("kernel", DeployTo::Tftp) => ImageKind::Kernel,
                    ("ramdisk", DeployTo::Tftp) => ImageKind::Ramdisk,
                    ("nfsrootfs", DeployTo::Tftp) => ImageKind::Nfsrootfs,
                    _ => ImageKind::Plain,
                };
                let lava_checks = to == DeployTo::Tftp || ["nfsrootfs", "modules"].contains(key);
                let kpath = f.sub(key);
                let img = if lava_checks {
                    read_image(r, v, &kpath, kind)
                } else {
                    lenient(r, |r| read_image(r, v, &kpath, kind))
                };
                if let Some(img) = img {
                    images.push((key.to_string(), img));
                }
            }
            if to == DeployTo::Tftp {
                if let Some(d) = f.opt("dtbo") {
                    let dpath = f.sub("dtbo");
                    for (i, item) in list(r, d, &dpath).iter().enumerate() {
                        read_image(r, item, &index(&dpath, i), ImageKind::Plain);
                    }
                }
                if let Some(x) = f.opt("extra_files") {
                    let xpath = f.sub("extra_files");
                    for (k, _, v) in entries(r, x, &xpath) {
                        read_image(r, v, &join(&xpath, &k), ImageKind::Plain);
                    }
                }
            }
            if let Some(p) = f.opt("persistent_nfs") {
                let ppath = f.sub("persistent_nfs");
                if let Some(mut pf) = Fields::strict(r, p, &ppath) {
                    pf.req_str(r, "address");
                    pf.opt_bool(r, "install_overlay");
                    pf.finish(r, "persistent_nfs");
                }
                if f.has("nfsrootfs") {
                    r.error(p, &ppath, "'persistent_nfs' and 'nfsrootfs' are exclusive");
                }
                persistent_nfs = Some(p.clone());
            }
            if to == DeployTo::Tftp
                && !f.has("kernel")
                && !f.has("ramdisk")
                && !f.has("nfsrootfs")
                && !f.has("persistent_nfs")
            {
                r.warn(
                    n,
                    path,
                    "a tftp deploy without kernel, ramdisk or nfsrootfs deploys nothing",
                );
            }
        }
        DeployTo::Usb | DeployTo::Sata => {
            media_device = f.req_str(r, "device");
            if let Some(i) = f.opt("image") {
                if f.has("images") {
                    r.error(i, &f.sub("image"), "'image' and 'images' are exclusive");
                }
                if let Some(img) = read_image(r, i, &f.sub("image"), ImageKind::Media) {
                    images.push(("image".to_string(), img));
                }
            }
            if images.is_empty() {
                r.warn(
                    n,
                    path,
                    "no 'image' or 'images': the media is used as it is",
                );
            }
            download_tool = f.opt("download").cloned();
            if let Some(d) = &download_tool {
                check_tool(r, d, &f.sub("download"));
            }
            writer = f.opt("writer").cloned();
            if let Some(w) = &writer {
                check_tool(r, w, &f.sub("writer"));
            }
            if let Some(t) = f.opt("tool") {
                if let Some(mut tf) = Fields::strict(r, t, &f.sub("tool")) {
                    if tf.req(r, "prompts").is_some() {
                        tf.opt_list_of_str(r, "prompts");
                    }
                    tf.finish(r, "tool");
                }
            }
            f.opt_bool(r, "uniquify");
        }
        _ => {}
    }
    let scope_keys: &[&str] = &[
        "dtbo",
        "extra_files",
        "tool",
        "uniquify",
        "nfs_url",
        "type",
        "images",
        "uefi",
        "kernel",
        "ramdisk",
        "dtb",
        "nfsrootfs",
        "modules",
        "preseed",
        "tee",
        "persistent_nfs",
        "image",
        "device",
        "download",
        "writer",
    ];
    if matches!(to, DeployTo::Other(_)) {
        // Keys of strategies basalt does not implement are not ours to judge.
        let all: Vec<&str> = n
            .as_map()
            .unwrap_or(&[])
            .iter()
            .filter_map(|(k, _)| k.as_str())
            .collect();
        f.finish_with(r, "deploy", &all);
    } else {
        f.finish_with(r, &format!("deploy to {}", to.name()), scope_keys);
    }
    Some(Deploy {
        common,
        to,
        os,
        images,
        authorize,
        persistent_nfs,
        media_device,
        download_tool,
        writer,
        monitor,
        node: n.clone(),
    })
}

/// `auto_login`: the gate's closed mapping and the job schema's two shapes (with or without
/// a password prompt; a `password` alone is accepted, as LAVA does).
fn read_auto_login(r: &mut Report, n: &Node, path: &str) -> Option<AutoLogin> {
    let mut f = Fields::strict(r, n, path)?;
    let login_prompt = f.req_str(r, "login_prompt");
    if let (Some(p), Some(node)) = (&login_prompt, f.opt("login_prompt")) {
        if p.is_empty() {
            r.error(
                node,
                &f.sub("login_prompt"),
                "the login prompt must not be empty",
            );
        }
    }
    let username = f.req_str(r, "username");
    let password_prompt = f.opt_str(r, "password_prompt");
    let password = f.opt_str(r, "password");
    let login_commands = f.opt_list_of_str(r, "login_commands").unwrap_or_default();
    if password_prompt.is_none() || password.is_none() {
        if let Some(i) = login_commands.iter().position(String::is_empty) {
            let node = n
                .path(&["login_commands"])
                .and_then(Node::as_seq)
                .and_then(|s| s.get(i))
                .unwrap_or(n);
            r.error(
                node,
                &index(&f.sub("login_commands"), i),
                "login commands must not be empty",
            );
        }
    }
    if password.is_some() && password_prompt.is_none() {
        let node = f.opt("password").unwrap_or(n);
        r.warn(
            node,
            &f.sub("password"),
            "a password without 'password_prompt' is never typed",
        );
    }
    finish_closed(
        f,
        r,
        "auto_login",
        &[
            "login_prompt",
            "username",
            "password_prompt",
            "password",
            "login_commands",
        ],
    );
    Some(AutoLogin {
        login_prompt: login_prompt?,
        username: username?,
        password_prompt,
        password,
        login_commands,
    })
}

fn read_boot(r: &mut Report, n: &Node, path: &str) -> Option<Boot> {
    let mut f = Fields::strict(r, n, path)?;
    let common = read_common(r, &mut f);
    let method_node = f.req(r, "method");
    let method_name = method_node.and_then(|m| text(r, m, &f.sub("method"), true));
    let method = match method_name.as_deref() {
        Some("qemu") => BootMethod::Qemu,
        Some("qemu-nfs") => BootMethod::QemuNfs,
        Some("u-boot") => BootMethod::UBoot,
        Some("minimal") => BootMethod::Minimal,
        Some("bootloader") => BootMethod::Bootloader,
        Some(other) => {
            if let Some(m) = method_node {
                if lava_knows(LAVA_BOOT_METHODS, other)
                    || one_of(
                        r,
                        m,
                        &f.sub("method"),
                        "boot method",
                        other,
                        LAVA_BOOT_METHODS,
                    )
                {
                    r.warn(m, &f.sub("method"), format!(
                        "boot method '{other}' is outside basalt's scope (it handles {}); the job validates but cannot run here",
                        BootMethod::IN_SCOPE.join(", ")
                    ));
                }
            }
            BootMethod::Other(other.to_string())
        }
        None => BootMethod::Other(String::new()),
    };
    let media = f.opt("media").and_then(|m| {
        if method == BootMethod::Qemu {
            enum_str(r, m, &f.sub("media"), &["tmpfs"])
        } else {
            string(r, m, &f.sub("media"))
        }
    });
    let connection = f.opt("connection").and_then(|c| {
        if matches!(method, BootMethod::Qemu | BootMethod::QemuNfs) {
            enum_str(r, c, &f.sub("connection"), &["serial"])
        } else {
            string(r, c, &f.sub("connection"))
        }
    });
    let prompts = f.opt_str_list(r, "prompts").unwrap_or_default();
    if let Some(p) = f.opt("prompts") {
        let items: Vec<&Node> = match p.as_seq() {
            Some(s) => s.iter().collect(),
            None => vec![p],
        };
        for (i, item) in items.iter().enumerate() {
            if item.as_str() == Some("") {
                let ip = if p.as_seq().is_some() {
                    index(&f.sub("prompts"), i)
                } else {
                    f.sub("prompts")
                };
                r.error(item, &ip, "a prompt must not be empty");
            }
        }
        if p.as_seq().is_some_and(|s| s.is_empty()) {
            r.warn(p, &f.sub("prompts"), "no prompts: the shell is never found");
        }
    }
    let auto_login = f
        .opt("auto_login")
        .and_then(|a| read_auto_login(r, a, &f.sub("auto_login")));
    // Other methods give `commands` their own shapes (uuu: a list of `{tool: args}`).
    let bootloader = matches!(method, BootMethod::UBoot | BootMethod::Bootloader);
    let commands = match f.opt("commands") {
        Some(c) if !bootloader => {
            if c.as_seq().is_none() && c.as_str().is_none() {
                r.error(
                    c,
                    &f.sub("commands"),
                    format!("expected a string or a list, found {}", c.kind()),
                );
            }
            None
        }
        Some(c) if c.as_seq().is_some() => Some(BootCommands::Inline(text_or_list(
            r,
            c,
            &f.sub("commands"),
            true,
        ))),
        Some(c) if method == BootMethod::Bootloader => {
            r.error(
                c,
                &f.sub("commands"),
                format!("expected a list of commands, found {}", c.kind()),
            );
            None
        }
        Some(c) => text(r, c, &f.sub("commands"), true).map(BootCommands::Named),
        None => None,
    };
    if method == BootMethod::UBoot && commands.is_none() {
        f.req(r, "commands");
    }
    let transfer_overlay = f.opt("transfer_overlay").cloned();
    if let Some(t) = &transfer_overlay {
        check_transfer_overlay(r, t, &f.sub("transfer_overlay"));
    }
    let (mut ksm, mut bfm, mut sdm) = (None, None, None);
    if let Some(p) = f.opt("parameters") {
        if let Some(mut pf) = Fields::strict(r, p, &f.sub("parameters")) {
            ksm = pf.opt_str(r, "kernel-start-message");
            bfm = pf.opt_str(r, "bootloader-final-message");
            sdm = pf.opt_str(r, "shutdown-message");
            // The gate: every boot parameter is a string or a boolean.
            for (k, v) in p.as_map().unwrap_or(&[]) {
                if !matches!(v.value, Value::Str(_) | Value::Bool(_)) {
                    let key = k.scalar_text().unwrap_or_default();
                    r.error(
                        v,
                        &join(&f.sub("parameters"), &key),
                        format!(
                            "boot parameters are strings or booleans, found {}",
                            v.kind()
                        ),
                    );
                }
            }
            let all: Vec<&str> = p
                .as_map()
                .unwrap_or(&[])
                .iter()
                .filter_map(|(k, _)| k.as_str())
                .collect();
            pf.finish_with(r, "boot parameters", &all);
        }
    }
    let soft_reboot = f.opt_str_list(r, "soft_reboot").unwrap_or_default();
    let ignore_kernel_messages = f.opt_bool(r, "ignore_kernel_messages").unwrap_or(false);
    let bools: &[&str] = match method {
        BootMethod::UBoot => &["reset", "use_bootscript"],
        BootMethod::Minimal => &["reset", "pre_power_command", "pre_os_command"],
        BootMethod::Bootloader => &[
            "reset",
            "use_bootscript",
            "reset_connection",
            "reset_device",
        ],
        _ => &[],
    };
    let mut reset = None;
    for key in bools {
        let v = f.opt_bool(r, key);
        if *key == "reset" {
            reset = v;
        }
    }
    if reset.is_none() && !bools.contains(&"reset") {
        if let Some(v) = f.opt("reset") {
            let p = f.sub("reset");
            reset = lenient(r, |r| crate::reader::boolean(r, v, &p));
        }
    }
    let bootloader = f.opt_str(r, "bootloader");
    if method == BootMethod::Bootloader && bootloader.is_none() {
        f.req(r, "bootloader");
    }
    if let Some(t) = f.opt("type") {
        r.warn(
            t,
            &f.sub("type"),
            "boot 'type' is deprecated; the kernel type belongs to the deploy's kernel.type",
        );
    }
    let secondary = [
        "kernel",
        "ramdisk",
        "dtb",
        "root_uuid",
        "boot_part",
        "kernel_type",
    ];
    if matches!(method, BootMethod::Other(_)) {
        let all: Vec<&str> = n
            .as_map()
            .unwrap_or(&[])
            .iter()
            .filter_map(|(k, _)| k.as_str())
            .collect();
        f.finish_with(r, "boot", &all);
    } else {
        let mut known = vec![
            "use_bootscript",
            "docker",
            "reset_connection",
            "reset_device",
            "pre_power_command",
            "pre_os_command",
        ];
        known.extend(secondary);
        f.finish_with(r, &format!("boot method {}", method.name()), &known);
    }
    Some(Boot {
        common,
        method,
        media,
        connection,
        prompts,
        auto_login,
        commands,
        transfer_overlay,
        kernel_start_message: ksm,
        bootloader_final_message: bfm,
        shutdown_message: sdm,
        soft_reboot,
        ignore_kernel_messages,
        reset,
        bootloader,
        node: n.clone(),
    })
}

/// `transfer_overlay`: a download and an unpack command, or zmodem and an unpack command.
fn check_transfer_overlay(r: &mut Report, n: &Node, path: &str) {
    let Some(mut f) = Fields::strict(r, n, path) else {
        return;
    };
    f.req_str(r, "unpack_command");
    let method = f.opt_str(r, "transfer_method");
    if method.as_deref() == Some("zmodem") {
        f.opt_str(r, "download_command");
    } else {
        f.req_str(r, "download_command");
    }
    f.finish(r, "transfer_overlay");
}

/// Test definition names: LAVA's `^[-_a-zA-Z0-9.]+$`.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The gate's names for interactive and monitor items: `^[a-zA-Z0-9-_]+$` (no '.').
fn valid_gate_name(s: &str) -> bool {
    valid_name(s) && !s.contains('.')
}

fn read_test(r: &mut Report, n: &Node, path: &str) -> Option<Test> {
    let mut f = Fields::strict(r, n, path)?;
    let common = read_common(r, &mut f);
    let kind = if let Some(d) = f.opt("definitions") {
        let dpath = f.sub("definitions");
        let defs: Vec<TestDefRef> = list(r, d, &dpath)
            .iter()
            .enumerate()
            .filter_map(|(i, d)| read_definition(r, d, &index(&dpath, i)))
            .collect();
        if let Some(node) = f.opt("docker") {
            r.warn(node, &f.sub("docker"), "test shells inside docker are outside basalt's scope; the job validates but cannot run here");
            TestKind::Other("docker".to_string())
        } else {
            TestKind::Definitions(defs)
        }
    } else if let Some(i) = f.opt("interactive") {
        let ipath = f.sub("interactive");
        TestKind::Interactive(
            list(r, i, &ipath)
                .iter()
                .enumerate()
                .filter_map(|(k, x)| read_interactive(r, x, &index(&ipath, k)))
                .collect(),
        )
    } else if let Some(m) = f.opt("monitors") {
        let mpath = f.sub("monitors");
        TestKind::Monitors(
            list(r, m, &mpath)
                .iter()
                .enumerate()
                .filter_map(|(k, x)| read_monitor(r, x, &index(&mpath, k)))
                .collect(),
        )
    } else if let Some(s) = f.opt("services") {
        r.warn(
            s,
            &f.sub("services"),
            "'services' test blocks are outside basalt's scope",
        );
        TestKind::Other("services".to_string())
    } else {
        r.error(
            n,
            path,
            "a test needs 'definitions', 'interactive', 'monitors' or 'services'",
        );
        TestKind::Other(String::new())
    };
    f.finish_with(
        r,
        "test",
        &[
            "docker",
            "services",
            "definitions",
            "interactive",
            "monitors",
            "connection",
        ],
    );
    Some(Test {
        common,
        kind,
        node: n.clone(),
    })
}

/// The gate's inline repository: only metadata, install, run and parse, each a mapping;
/// and the job schema's test definition (`lava_common/schemas/test/testdef.py`).
fn check_inline_repository(r: &mut Report, n: &Node, path: &str) {
    let Some(mut f) = Fields::strict(r, n, path) else {
        return;
    };
    for key in ["metadata", "install", "run", "parse"] {
        if let Some(v) = f.opt(key) {
            expect_map(r, v, &f.sub(key));
        }
    }
    if let Some(m) = f.req(r, "metadata") {
        if let Some(mut mf) = Fields::strict(r, m, &f.sub("metadata")) {
            if let Some(fmt) = mf.req(r, "format") {
                match fmt.as_str() {
                    Some(super::testdef::FORMAT) => {}
                    _ => r.error(
                        fmt,
                        &mf.sub("format"),
                        format!("expected '{}'", super::testdef::FORMAT),
                    ),
                }
            }
            mf.req_str(r, "name");
            mf.opt_str(r, "description");
            for key in ["environment", "devices", "maintainer", "scope", "os"] {
                mf.opt_list_of_str(r, key);
            }
            let all: Vec<&str> = keys_of(m);
            mf.finish_with(r, "metadata", &all);
        }
    }
    if let Some(i) = f.opt("install") {
        if let Some(mut inf) = Fields::strict(r, i, &f.sub("install")) {
            for key in keys_of(i) {
                if ["deps", "keys", "steps", "sources"].contains(&key)
                    || (key.starts_with("deps-") && key.len() > 5)
                {
                    inf.opt_list_of_str(r, key);
                }
            }
            if let Some(g) = inf.opt("git-repos") {
                let gpath = inf.sub("git-repos");
                for (k, item) in list(r, g, &gpath).iter().enumerate() {
                    if item.as_str().is_some() {
                        continue;
                    }
                    let ip = index(&gpath, k);
                    if let Some(mut gf) = Fields::strict(r, item, &ip) {
                        gf.req_str(r, "url");
                        gf.opt_str(r, "branch");
                        gf.opt_str(r, "destination");
                        gf.finish(r, "git-repos entry");
                    }
                }
            }
            let all = keys_of(i);
            inf.finish_with(r, "install", &all);
        }
    }
    if let Some(run) = f.opt("run") {
        if let Some(mut rf) = Fields::strict(r, run, &f.sub("run")) {
            if rf.req(r, "steps").is_some() {
                rf.opt_list_of_str(r, "steps");
            }
            let all = keys_of(run);
            rf.finish_with(r, "run", &all);
        }
    }
    if let Some(p) = f.opt("parse") {
        if let Some(mut pf) = Fields::strict(r, p, &f.sub("parse")) {
            if let Some(fx) = pf.opt("fixupdict") {
                check_fixupdict(r, fx, &pf.sub("fixupdict"));
            }
            let all = keys_of(p);
            pf.finish_with(r, "parse", &all);
        }
    }
    finish_closed(
        f,
        r,
        "an inline test definition",
        &["metadata", "install", "run", "parse"],
    );
}

/// The string keys of a mapping.
fn keys_of(n: &Node) -> Vec<&str> {
    n.as_map()
        .unwrap_or(&[])
        .iter()
        .filter_map(|(k, _)| k.as_str())
        .collect()
}

/// `fixupdict:` maps a string to pass, fail, skip or unknown.
fn check_fixupdict(r: &mut Report, n: &Node, path: &str) {
    for (k, _, v) in entries(r, n, path) {
        enum_str(r, v, &join(path, &k), &["pass", "fail", "skip", "unknown"]);
    }
}

fn read_definition(r: &mut Report, n: &Node, path: &str) -> Option<TestDefRef> {
    let mut f = Fields::strict(r, n, path)?;
    let from_node = f.req(r, "from");
    let from = match from_node
        .and_then(|x| text(r, x, &f.sub("from"), true))
        .as_deref()
    {
        Some("git") => Some(TestFrom::Git),
        Some("inline") => Some(TestFrom::Inline),
        Some("url") => Some(TestFrom::Url),
        Some(other) => {
            if let Some(x) = from_node {
                one_of(
                    r,
                    x,
                    &f.sub("from"),
                    "test definition source",
                    other,
                    &["git", "inline", "url"],
                );
            }
            None
        }
        None => None,
    };
    let repo_node = f.req(r, "repository");
    let (mut repository, mut inline) = (None, None);
    if let (Some(rn), Some(from)) = (repo_node, &from) {
        if *from == TestFrom::Inline {
            if rn.as_map().is_some() {
                check_inline_repository(r, rn, &f.sub("repository"));
                // basalt's own reading (it runs the definition): what LAVA does not
                // check is a warning.
                lenient(r, |r| check_inline_testdef(r, rn, &f.sub("repository")));
                inline = Some(rn.clone());
            } else {
                r.error(
                    rn,
                    &f.sub("repository"),
                    "an inline definition's repository is the test definition itself (a mapping)",
                );
            }
        } else {
            repository = text(r, rn, &f.sub("repository"), true);
        }
    } else if let Some(rn) = repo_node {
        if rn.as_map().is_none() {
            text(r, rn, &f.sub("repository"), true);
        }
    }
    let def_path = f.req_str(r, "path");
    let name = f.req_str(r, "name");
    if let (Some(nm), Some(node)) = (&name, f.opt("name")) {
        if !valid_name(nm) {
            r.error(
                node,
                &f.sub("name"),
                format!("invalid test name '{nm}': use letters, digits, '-', '_', '.'"),
            );
        }
    }
    let git = from == Some(TestFrom::Git);
    let url = from == Some(TestFrom::Url);
    // Keys LAVA checks only for one source are basalt's to read leniently for the others.
    let typed_str = |f: &mut Fields<'_>, r: &mut Report, key: &str, lava: bool| {
        if lava {
            f.opt_str(r, key)
        } else {
            let p = f.sub(key);
            f.opt(key).and_then(|v| lenient(r, |r| string(r, v, &p)))
        }
    };
    let branch = typed_str(&mut f, r, "branch", git);
    let revision = typed_str(&mut f, r, "revision", git);
    let typed_bool = |f: &mut Fields<'_>, r: &mut Report, key: &str, lava: bool| {
        if lava {
            f.opt_bool(r, key)
        } else {
            let p = f.sub(key);
            f.opt(key)
                .and_then(|v| lenient(r, |r| crate::reader::boolean(r, v, &p)))
        }
    };
    let history = typed_bool(&mut f, r, "history", git);
    typed_bool(&mut f, r, "recursive", git);
    // `shallow` is not in LAVA's schema; only its pairing with `revision` is refused.
    let shallow = f.opt("shallow").map(|v| v.as_bool() == Some(true));
    if revision.is_some() && shallow == Some(true) {
        let node = f.opt("shallow").unwrap_or(n);
        r.error(
            node,
            &f.sub("shallow"),
            "when 'revision' is used, 'shallow' must not be true",
        );
    }
    let mut parameters = Vec::new();
    for key in ["parameters", "params"] {
        if let Some(p) = f.opt(key) {
            let ppath = f.sub(key);
            if p.as_map().is_none() {
                let at = n.key_node(key).unwrap_or(p);
                r.error(
                    at,
                    &ppath,
                    format!("expected a mapping, found {}", p.kind()),
                );
            } else {
                for (k, _, v) in entries(r, p, &ppath) {
                    parameters.push((k, v.clone()));
                }
            }
        }
    }
    let skip_install = f.opt_list_of_str(r, "skip_install").unwrap_or_default();
    if let Some(list_node) = f.opt("skip_install").and_then(Node::as_seq) {
        for (i, item) in list_node.iter().enumerate() {
            if let Some(s) = item.as_str() {
                one_of(
                    r,
                    item,
                    &index(&f.sub("skip_install"), i),
                    "skip_install value",
                    s,
                    &["keys", "sources", "deps", "steps", "git-repos", "all"],
                );
            }
        }
    }
    let lava_signal = f
        .opt("lava-signal")
        .and_then(|s| enum_str(r, s, &f.sub("lava-signal"), &["kmsg", "stdout"]));
    let expected = match f.opt("expected") {
        Some(_) => f.opt_list_of_str(r, "expected").unwrap_or_default(),
        None => Vec::new(),
    };
    let compression =
        typed_str(&mut f, r, "compression", url).and_then(|c| Compression::from_name(&c));
    if let Some(s) = f.opt("strip-components") {
        let p = f.sub("strip-components");
        if url {
            integer(r, s, &p, i64::MIN, i64::MAX);
        } else {
            lenient(r, |r| integer(r, s, &p, 0, 1000));
        }
    }
    if let Some(h) = f.opt("headers") {
        if url {
            expect_map(r, h, &f.sub("headers"));
        }
    }
    if let Some(t) = f.opt("timeout") {
        Timeout::parse_job(r, t, &f.sub("timeout"), Rule::Gate);
    }
    f.finish(r, "test definition");
    Some(TestDefRef {
        from: from?,
        repository,
        inline,
        path: def_path?,
        name: name?,
        branch,
        revision,
        history,
        shallow,
        parameters,
        skip_install,
        lava_signal,
        expected,
        compression,
        mark: n.mark,
    })
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

fn read_interactive(r: &mut Report, n: &Node, path: &str) -> Option<Interactive> {
    let mut f = Fields::strict(r, n, path)?;
    let name = f.req_str(r, "name");
    if let (Some(nm), Some(node)) = (&name, f.opt("name")) {
        if !valid_gate_name(nm) {
            r.error(
                node,
                &f.sub("name"),
                format!("invalid interactive name '{nm}': use letters, digits, '-', '_'"),
            );
        }
    }
    let mut prompts = Vec::new();
    if let Some(p) = f.req(r, "prompts") {
        let ppath = f.sub("prompts");
        for (i, item) in list(r, p, &ppath).iter().enumerate() {
            if let Some(s) = non_empty(r, item, &index(&ppath, i)) {
                prompts.push(s);
            }
        }
    }
    let echo_discard = f
        .opt("echo")
        .and_then(|e| enum_str(r, e, &f.sub("echo"), &["discard"]))
        .is_some();
    if let Some(e) = f.opt("expected") {
        let epath = f.sub("expected");
        for (i, item) in list(r, e, &epath).iter().enumerate() {
            non_empty(r, item, &index(&epath, i));
        }
    }
    let mut script = Vec::new();
    if let Some(s) = f.req(r, "script") {
        let spath = f.sub("script");
        for (i, step) in list(r, s, &spath).iter().enumerate() {
            if let Some(step) = read_interactive_step(r, step, &index(&spath, i)) {
                script.push(step);
            }
        }
    }
    finish_closed(
        f,
        r,
        "an interactive test",
        &["name", "prompts", "echo", "expected", "script"],
    );
    Some(Interactive {
        name: name?,
        prompts,
        echo_discard,
        script,
    })
}

fn read_interactive_step(r: &mut Report, step: &Node, p: &str) -> Option<InteractiveStep> {
    let mut sf = Fields::strict(r, step, p)?;
    let command = sf
        .opt_nullable("command")
        .filter(|c| !c.is_null())
        .and_then(|c| text(r, c, &sf.sub("command"), true));
    let name = sf.opt_str(r, "name");
    if let (Some(nm), Some(node)) = (&name, sf.opt("name")) {
        if !valid_gate_name(nm) {
            r.error(
                node,
                &sf.sub("name"),
                format!("invalid step name '{nm}': use letters, digits, '-', '_'"),
            );
        }
    }
    let delay = sf
        .opt_int(r, "delay", i64::MIN, i64::MAX)
        .map(|d| d.max(0) as u64);
    for key in ["lava-send", "lava-sync", "lava-wait", "lava-wait-all"] {
        sf.opt_str(r, key);
    }
    let wait_for_prompt = sf.opt_bool(r, "wait_for_prompt").unwrap_or(true);
    let mut successes = Vec::new();
    if let Some(list_node) = sf.opt("successes") {
        let lpath = sf.sub("successes");
        for (k, item) in list(r, list_node, &lpath).iter().enumerate() {
            let ip = index(&lpath, k);
            let Some(mut ff) = Fields::strict(r, item, &ip) else {
                continue;
            };
            let msg = ff
                .req(r, "message")
                .and_then(|m| non_empty(r, m, &join(&ip, "message")));
            finish_closed(ff, r, "a success", &["message"]);
            successes.extend(msg);
        }
    }
    let mut failures = Vec::new();
    if let Some(list_node) = sf.opt("failures") {
        let lpath = sf.sub("failures");
        for (k, item) in list(r, list_node, &lpath).iter().enumerate() {
            let ip = index(&lpath, k);
            let Some(mut ff) = Fields::strict(r, item, &ip) else {
                continue;
            };
            let msg = ff
                .req(r, "message")
                .and_then(|m| non_empty(r, m, &join(&ip, "message")));
            let exc = ff.opt("exception").and_then(|e| {
                enum_str(
                    r,
                    e,
                    &join(&ip, "exception"),
                    &["InfrastructureError", "JobError", "TestError"],
                )
            });
            let error = ff
                .opt("error")
                .and_then(|e| non_empty(r, e, &join(&ip, "error")));
            finish_closed(ff, r, "a failure", &["message", "exception", "error"]);
            if let Some(message) = msg {
                failures.push(InteractiveFailure {
                    message,
                    exception: exc,
                    error,
                });
            }
        }
    }
    finish_closed(
        sf,
        r,
        "an interactive step",
        &[
            "name",
            "command",
            "delay",
            "lava-send",
            "lava-sync",
            "lava-wait",
            "lava-wait-all",
            "wait_for_prompt",
            "failures",
            "successes",
        ],
    );
    Some(InteractiveStep {
        name,
        command,
        delay,
        wait_for_prompt,
        successes,
        failures,
    })
}

fn read_monitor(r: &mut Report, n: &Node, path: &str) -> Option<Monitor> {
    let mut f = Fields::strict(r, n, path)?;
    let name = f.req_str(r, "name");
    if let (Some(nm), Some(node)) = (&name, f.opt("name")) {
        if !valid_gate_name(nm) {
            r.error(
                node,
                &f.sub("name"),
                format!("invalid character in monitor name '{nm}': use letters, digits, '-', '_'"),
            );
        }
    }
    let start = f.req_str(r, "start");
    let end = f.req_str(r, "end");
    let pattern = f.req_str(r, "pattern");
    if let (Some(p), Some(node)) = (&pattern, f.opt("pattern")) {
        if let Err(e) = crate::testshell::pattern::compile_python_regex(p) {
            r.warn(
                node,
                &f.sub("pattern"),
                format!("invalid pattern (LAVA accepts the job, its monitor fails): {e}"),
            );
        }
    }
    let fixupdict = match f.opt("fixupdict") {
        Some(x) => {
            check_fixupdict(r, x, &f.sub("fixupdict"));
            str_str_map(r, x, &f.sub("fixupdict"))
        }
        None => Vec::new(),
    };
    f.opt_list_of_str(r, "expected");
    finish_closed(
        f,
        r,
        "a monitor",
        &["name", "start", "end", "pattern", "fixupdict", "expected"],
    );
    Some(Monitor {
        name: name?,
        start: start?,
        end: end?,
        pattern: pattern?,
        fixupdict,
    })
}

fn read_command(r: &mut Report, n: &Node, path: &str) -> Option<Command> {
    let mut f = Fields::strict(r, n, path)?;
    let common = read_common(r, &mut f);
    let name = f.req_str(r, "name");
    f.finish(r, "command");
    Some(Command {
        common,
        name: name?,
    })
}

/// Checks that span the whole job: timeouts against the job timeout, multinode roles,
/// namespaces and unique test names.
fn check_job_wide(
    r: &mut Report,
    root: &Node,
    t: &JobTimeouts,
    actions: &[ActionBlock],
    mn: Option<&Multinode>,
    subjob: bool,
) {
    // LAVA's check_job_timeouts: no global or block timeout beyond the job's.
    let job_secs = t.job.map(|j| j.secs);
    let too_long = |secs: u64| job_secs.is_some_and(|j| secs > j);
    let tnode = root.get("timeouts");
    let tn = tnode.unwrap_or(root);
    for (name, to) in [("action", t.action), ("connection", t.connection)] {
        if to.is_some_and(|x| too_long(x.secs)) {
            let node = tn.get(name).unwrap_or(tn);
            r.error(
                node,
                &join("timeouts", name),
                "timeout is larger than the job timeout",
            );
        }
    }
    for (group, map) in [("actions", &t.actions), ("connections", &t.connections)] {
        for (name, to) in map {
            if too_long(to.secs) {
                let node = tn.get(group).and_then(|g| g.key_node(name)).unwrap_or(tn);
                r.error(
                    node,
                    &format!("timeouts.{group}.{name}"),
                    "timeout is larger than the job timeout",
                );
            }
        }
    }
    let action_nodes = root.get("actions").and_then(Node::as_seq).unwrap_or(&[]);
    let any_namespace = actions.iter().any(|a| a.common().namespace.is_some());
    let is_multinode = mn.is_some_and(|m| !m.roles.is_empty() || m.role.is_some());
    let submission = mn.is_some_and(|m| m.target_group.is_none() && m.role.is_none())
        && root
            .path(&["protocols", "lava-multinode"])
            .and_then(Node::as_map)
            .is_some_and(|m| !m.is_empty())
        && !subjob;
    for a in actions {
        let mut names: BTreeSet<(String, String)> = BTreeSet::new();
        let c = a.common();
        let i = c.index;
        let path = format!("actions[{i}].{}", a.kind());
        let node = action_nodes
            .get(i)
            .and_then(|x| x.get(a.kind()))
            .unwrap_or(root);
        if let Some(to) = c.timeout {
            if too_long(to.secs) {
                let tnode = node.get("timeout").unwrap_or(node);
                r.error(
                    tnode,
                    &join(&path, "timeout"),
                    "action timeout is larger than the job timeout",
                );
            }
        }
        if any_namespace && c.namespace.is_none() {
            r.error(
                node,
                &path,
                "when one action has a 'namespace', every action needs one",
            );
        }
        if !subjob {
            if let Some(role) = node.get("role").filter(|r| r.as_str().is_some()) {
                r.error(
                    role,
                    &join(&path, "role"),
                    "expected a list, found a string",
                );
            }
        }
        // LAVA's check_multinode_roles looks for the key itself.
        if submission
            && node
                .as_map()
                .is_some_and(|m| !m.iter().any(|(k, _)| k.as_str() == Some("role")))
        {
            r.error(node, &path, "every action of a multinode job needs 'role'");
        }
        if let ActionBlock::Test(Test {
            kind: TestKind::Definitions(defs),
            ..
        }) = a
        {
            let ns = c.namespace.clone().unwrap_or_default();
            let dnodes = node
                .get("definitions")
                .and_then(Node::as_seq)
                .unwrap_or(&[]);
            for (k, d) in defs.iter().enumerate() {
                let dn = dnodes.get(k).and_then(|x| x.get("name")).unwrap_or(node);
                let dpath = format!("{path}.definitions[{k}].name");
                if d.name == "lava" {
                    r.warn(
                        dn,
                        &dpath,
                        "'lava' is reserved for the dispatcher's own results (LAVA accepts the job; its dispatcher and basalt's refuse to run it)",
                    );
                }
                let roles = if c.role.is_empty() {
                    vec![String::new()]
                } else {
                    c.role.clone()
                };
                for role in roles {
                    if !names.insert((format!("{ns}/{role}"), d.name.clone())) {
                        r.warn(
                            dn,
                            &dpath,
                            format!(
                                "test definition names need to be unique: '{}' is used twice (LAVA accepts the job; its dispatcher and basalt's refuse to run it)",
                                d.name
                            ),
                        );
                    }
                }
            }
        }
    }
    if is_multinode {
        if let Some(m) = mn {
            let roles: Vec<&str> = m.roles.iter().map(|(k, _)| k.as_str()).collect();
            if m.role.is_none() {
                for a in actions {
                    let i = a.common().index;
                    for role in &a.common().role {
                        if !roles.contains(&role.as_str()) {
                            let node = action_nodes.get(i).unwrap_or(root);
                            r.warn(node, &format!("actions[{i}].{}.role", a.kind()), format!("role '{role}' is not defined in protocols.lava-multinode.roles: the action runs nowhere"));
                        }
                    }
                }
            }
        }
    }
}
