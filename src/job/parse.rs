//! YAML tree → [`Job`], following LAVA's submission gate: what LAVA accepts is accepted, with
//! warnings for keys and strategies basalt does not handle; what LAVA rejects is an error that
//! names the key and its line.

use super::testdef::check_inline_testdef;
use super::*;
use crate::diag::{index, join, Report};
use crate::reader::{entries, integer, list, one_of, str_map, str_or_list, string, Fields};
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

const DEPLOY_OS: &[&str] = &[
    "android",
    "apertis",
    "archlinux",
    "centos",
    "centos_installer",
    "debian",
    "debian_installer",
    "fedora",
    "lede",
    "oe",
    "qnx",
    "slackware",
    "ubuntu",
];

/// Reads and checks a job file.
pub fn parse_job_file(path: &Path) -> Result<(Job, Report), JobError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        let mut report = Report::new(&name);
        report.push(
            crate::diag::Severity::Error,
            Default::default(),
            "",
            format!("cannot read: {e}"),
        );
        JobError { report }
    })?;
    parse_job(&name, &text)
}

/// Checks a job document. On success the report holds the warnings.
pub fn parse_job(file: &str, text: &str) -> Result<(Job, Report), JobError> {
    let root = crate::diag::load_document(file, text).map_err(|report| JobError { report })?;
    let mut r = Report::new(file);
    let job = read_job(&mut r, &root);
    r.sort();
    match job {
        Some(job) if !r.has_errors() => Ok((job, r)),
        _ => Err(JobError { report: r }),
    }
}

fn read_job(r: &mut Report, root: &Node) -> Option<Job> {
    let mut f = Fields::new(r, root, "")?;
    let job_name = f.req_str(r, "job_name");
    if let (Some(name), Some(n)) = (&job_name, f.opt("job_name")) {
        if name.is_empty() || name.chars().count() > 200 {
            r.error(n, "job_name", "must be 1 to 200 characters");
        }
    }
    let device_type = f.opt_str(r, "device_type");
    let device = f.opt_str(r, "device");
    let worker = f.opt_str(r, "worker");
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
        .map(|n| read_context(r, n))
        .unwrap_or_default();
    let metadata = f.opt("metadata").cloned();
    if let Some(m) = &metadata {
        if m.as_map().is_none() {
            r.error(
                m,
                "metadata",
                format!("expected a mapping, found {}", m.kind()),
            );
        }
    }
    let tags = f.opt_str_list(r, "tags").unwrap_or_default();
    let secrets = f
        .opt("secrets")
        .map(|n| str_map(r, n, "secrets"))
        .unwrap_or_default();
    let environment = f.opt("environment").cloned();
    if let Some(e) = &environment {
        if e.as_map().is_none() {
            r.error(
                e,
                "environment",
                format!("expected a mapping, found {}", e.kind()),
            );
        }
    }
    let multinode = f.opt("protocols").and_then(|n| read_protocols(r, n));
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
                .filter_map(|(i, a)| read_action(r, a, &index("actions", i)))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    // Keys the server adds to multinode sub-jobs; the dispatcher receives them as they are.
    f.finish_with(
        r,
        "the job",
        &[
            "target_group",
            "group_size",
            "sub_id",
            "role",
            "roles",
            "connection",
            "host_role",
            "description",
        ],
    );

    if device_type.is_none()
        && multinode
            .as_ref()
            .is_none_or(|m| m.roles.is_empty() && m.role.is_none())
    {
        r.error(
            root,
            "device_type",
            "required key not provided (only multinode jobs may omit it)",
        );
    }
    check_job_wide(r, root, &timeouts, &actions, multinode.as_ref());
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

fn read_job_timeouts(r: &mut Report, n: &Node) -> JobTimeouts {
    let mut t = JobTimeouts::default();
    let Some(mut f) = Fields::new(r, n, "timeouts") else {
        return t;
    };
    t.job = f
        .req(r, "job")
        .and_then(|n| Timeout::parse(r, n, "timeouts.job"));
    t.action = f
        .opt("action")
        .and_then(|n| Timeout::parse(r, n, "timeouts.action"));
    t.connection = f
        .opt("connection")
        .and_then(|n| Timeout::parse(r, n, "timeouts.connection"));
    t.queue = f
        .opt("queue")
        .and_then(|n| Timeout::parse(r, n, "timeouts.queue"));
    t.actions = f
        .opt("actions")
        .map(|n| named_timeouts(r, n, "timeouts.actions"))
        .unwrap_or_default();
    t.connections = f
        .opt("connections")
        .map(|n| named_timeouts(r, n, "timeouts.connections"))
        .unwrap_or_default();
    finish_strict(f, r, "timeouts");
    t
}

/// Like [`Fields::finish`], but unknown keys are errors (where LAVA's gate allows no extra
/// keys).
fn finish_strict(f: Fields<'_>, r: &mut Report, what: &str) {
    let mut extra = Report::new("");
    f.finish(&mut extra, what);
    for mut d in extra.items {
        d.severity = crate::diag::Severity::Error;
        d.message = format!("unknown key in {what}");
        r.items.push(d);
    }
}

fn named_timeouts(r: &mut Report, n: &Node, path: &str) -> BTreeMap<String, Timeout> {
    entries(r, n, path)
        .into_iter()
        .filter_map(|(name, _, v)| Some((name.clone(), Timeout::parse(r, v, &join(path, &name))?)))
        .collect()
}

fn read_visibility(r: &mut Report, n: &Node) -> Option<Visibility> {
    match &n.value {
        Value::Str(s) if s == "public" => Some(Visibility::Public),
        Value::Str(s) if s == "personal" => Some(Visibility::Personal),
        Value::Map(_) => {
            let mut f = Fields::new(r, n, "visibility")?;
            let groups = f
                .req(r, "group")
                .map(|g| str_or_list(r, g, "visibility.group"));
            f.finish(r, "visibility");
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

fn read_context(r: &mut Report, n: &Node) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    for (key, k, v) in entries(r, n, "context") {
        let path = join("context", &key);
        if !CONTEXT_VARIABLES.contains(&key.as_str()) {
            r.warn(
                k,
                &path,
                "not one of LAVA's context variables; passed to the device template as is",
            );
        }
        if matches!(v.value, Value::Map(_)) {
            r.error(v, &path, "context values must be strings, numbers or lists");
        }
        out.insert(key, v.clone());
    }
    out
}

fn read_protocols(r: &mut Report, n: &Node) -> Option<Multinode> {
    let mut f = Fields::new(r, n, "protocols")?;
    let mn = f.opt("lava-multinode").and_then(|m| read_multinode(r, m));
    for (name, what) in [("lava-lxc", "LXC"), ("lava-vland", "VLANd")] {
        if let Some(x) = f.opt(name) {
            r.warn(
                x,
                &f.sub(name),
                format!("the {what} protocol is outside basalt's scope; ignored"),
            );
        }
    }
    if let Some(x) = f.opt("lava-xnbd") {
        r.warn(
            x,
            "protocols.lava-xnbd",
            "the lava-xnbd protocol is outside basalt's scope; ignored",
        );
    }
    f.finish(r, "protocols");
    mn
}

fn read_multinode(r: &mut Report, n: &Node) -> Option<Multinode> {
    let path = "protocols.lava-multinode";
    let mut f = Fields::new(r, n, path)?;
    let timeout = f
        .opt("timeout")
        .and_then(|t| Timeout::parse(r, t, &join(path, "timeout")));
    let role = f.opt_str(r, "role");
    let target_group = f.opt_str(r, "target_group");
    let mut roles = Vec::new();
    if let Some(rn) = f.opt("roles") {
        let rpath = join(path, "roles");
        let all = entries(r, rn, &rpath);
        let names: Vec<String> = all.iter().map(|(k, _, _)| k.clone()).collect();
        for (name, _, def) in &all {
            let p = join(&rpath, name);
            if role.is_some() {
                // A sub-job: `roles` maps job ids to roles.
                roles.push((name.clone(), (*def).clone()));
                continue;
            }
            if def.as_map().is_none() {
                r.error(def, &p, format!("expected a mapping, found {}", def.kind()));
                continue;
            }
            let host = def.get("host_role");
            let expect = def.get("expect_role");
            if let Some(h) = host {
                match h.as_str() {
                    Some(h_name) if names.iter().any(|x| x == h_name) => {}
                    Some(h_name) => r.error(
                        h,
                        &join(&p, "host_role"),
                        format!("'host_role' '{h_name}' does not exist"),
                    ),
                    None => r.error(h, &join(&p, "host_role"), "expected a role name"),
                }
                if expect.is_none() {
                    r.error(
                        h,
                        &join(&p, "host_role"),
                        "'expect_role' is required when 'host_role' is used",
                    );
                }
            } else if let Some(e) = expect {
                r.error(
                    e,
                    &join(&p, "expect_role"),
                    "'expect_role' without 'host_role'",
                );
            }
            if let Some(c) = def.get("count") {
                integer(r, c, &join(&p, "count"), 1, 10_000);
            }
            roles.push((name.clone(), (*def).clone()));
        }
    }
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
    Some(Multinode {
        roles,
        role,
        target_group,
        timeout,
        node: n.clone(),
    })
}

fn check_notify(r: &mut Report, n: &Node) {
    let Some(mut f) = Fields::new(r, n, "notify") else {
        return;
    };
    if let Some(c) = f.opt("criteria") {
        if let Some(status) = c.get("status").and_then(Node::as_str) {
            one_of(
                r,
                c.get("status").unwrap_or(c),
                "notify.criteria.status",
                "notify status",
                status,
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
    } else if !f.has("callback") && !f.has("callbacks") {
        f.req(r, "criteria");
    }
    if let Some(v) = f.opt("verbosity") {
        if let Some(s) = string(r, v, "notify.verbosity") {
            one_of(
                r,
                v,
                "notify.verbosity",
                "verbosity",
                &s,
                &["verbose", "quiet", "status-only"],
            );
        }
    }
    f.finish_with(
        r,
        "notify",
        &["recipients", "callback", "callbacks", "compare"],
    );
}

fn read_common(r: &mut Report, f: &mut Fields<'_>) -> Common {
    let mut c = Common {
        mark: f.node().mark,
        ..Common::default()
    };
    c.namespace = f.opt_str(r, "namespace");
    c.connection_namespace = f.opt_str(r, "connection-namespace");
    c.role = f.opt_str_list(r, "role").unwrap_or_default();
    c.timeout = f
        .opt("timeout")
        .and_then(|n| Timeout::parse(r, n, &f.sub("timeout")));
    let tpath = f.sub("timeouts");
    c.timeouts = f
        .opt("timeouts")
        .map(|n| named_timeouts(r, n, &tpath))
        .unwrap_or_default();
    c.repeat = f.opt_int(r, "repeat", 1, 100_000).map(|i| i as u32);
    c.failure_retry = f.opt_int(r, "failure_retry", 1, 1_000).map(|i| i as u32);
    c.failure_retry_interval = f
        .opt_int(r, "failure_retry_interval", 1, 86_400)
        .map(|i| i as u32);
    c.protocols = f.opt("protocols").cloned();
    if let (Some(_), Some(_)) = (c.repeat, c.failure_retry) {
        r.error(
            f.node(),
            &f.path,
            "'repeat' and 'failure_retry' cannot be used together",
        );
    }
    c
}

fn read_action(r: &mut Report, n: &Node, path: &str) -> Option<ActionBlock> {
    let Some(items) = n.as_map() else {
        r.error(
            n,
            path,
            format!(
                "an action is a mapping with one key (deploy, boot, test or command), found {}",
                n.kind()
            ),
        );
        return None;
    };
    if items.len() != 1 {
        r.error(
            n,
            path,
            "an action has exactly one key: deploy, boot, test or command",
        );
        return None;
    }
    let (k, v) = &items[0];
    let kind = k.as_str().unwrap_or("");
    let p = join(path, kind);
    match kind {
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
                format!("unknown action '{other}'; expected one of deploy, boot, test, command"),
            );
            None
        }
    }
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

fn read_image(r: &mut Report, n: &Node, path: &str) -> Option<ImageRef> {
    let mut f = Fields::new(r, n, path)?;
    let mut img = ImageRef {
        mark: n.mark,
        ..ImageRef::default()
    };
    img.url = f.req_str(r, "url").unwrap_or_default();
    if let Some(c) = f.opt("compression") {
        if let Some(s) = string(r, c, &f.sub("compression")) {
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
    img.archive = f.opt_str(r, "archive");
    if let Some(a) = &img.archive {
        if a != "tar" {
            if let Some(n) = f.opt("archive") {
                one_of(r, n, &f.sub("archive"), "archive", a, &["tar"]);
            }
        }
    }
    img.md5sum = f.opt_str(r, "md5sum");
    img.sha256sum = f.opt_str(r, "sha256sum");
    img.sha512sum = f.opt_str(r, "sha512sum");
    img.image_arg = f.opt_str(r, "image_arg");
    img.format = f.opt_str(r, "format");
    img.headers = f
        .opt("headers")
        .map(|h| str_map(r, h, &f.sub("headers")))
        .unwrap_or_default();
    if let Some(t) = f.opt("type") {
        if let Some(s) = string(r, t, &f.sub("type")) {
            img.kernel_type = match s.to_ascii_lowercase().as_str() {
                "image" => Some(KernelType::Image),
                "uimage" => Some(KernelType::UImage),
                "zimage" => Some(KernelType::ZImage),
                _ => {
                    one_of(
                        r,
                        t,
                        &f.sub("type"),
                        "kernel type",
                        &s,
                        &["image", "uimage", "zimage"],
                    );
                    None
                }
            };
        }
    }
    img.header = f.opt_str(r, "header");
    img.install_modules = f.opt_bool(r, "install_modules");
    img.install_overlay = f.opt_bool(r, "install_overlay");
    img.prefix = f.opt_str(r, "prefix");
    img.overlays = f.opt("overlays").cloned();
    img.partition = f.opt_int(r, "partition", 0, 1024);
    img.root_partition = f.opt_int(r, "root_partition", 0, 1024);
    f.finish_with(
        r,
        "image",
        &[
            "use_cache",
            "sparse",
            "overlay_backend",
            "apply-overlay",
            "boot_partition",
        ],
    );
    Some(img)
}

fn read_deploy(r: &mut Report, n: &Node, path: &str) -> Option<Deploy> {
    let mut f = Fields::new(r, n, path)?;
    let common = read_common(r, &mut f);
    let to_node = f.req(r, "to");
    let to_name = to_node.and_then(|t| string(r, t, &f.sub("to")));
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
    let os = f.opt_str(r, "os");
    if let (Some(os), Some(node)) = (&os, f.opt("os")) {
        one_of(r, node, &f.sub("os"), "os", os, DEPLOY_OS);
    }
    let authorize = f.opt_str(r, "authorize");
    let mut images = Vec::new();
    let mut persistent_nfs = None;
    let mut media_device = None;
    let mut download_tool = None;
    let mut writer = None;
    let mut monitor = false;
    match &to {
        DeployTo::Tmpfs | DeployTo::Nfs | DeployTo::Usb | DeployTo::Sata | DeployTo::Overlay => {
            if let Some(imgs) = f.opt("images") {
                let ipath = f.sub("images");
                for (label, _, v) in entries(r, imgs, &ipath) {
                    if let Some(img) = read_image(r, v, &join(&ipath, &label)) {
                        images.push((label, img));
                    }
                }
            } else if to == DeployTo::Tmpfs {
                r.warn(n, path, "a tmpfs deploy without 'images' deploys nothing");
            }
            if let Some(t) = f.opt("type") {
                monitor = t.as_str() == Some("monitor");
            }
            if let Some(u) = f.opt("uefi") {
                if let Some(img) = read_image(r, u, &f.sub("uefi")) {
                    images.push(("uefi".to_string(), img));
                }
            }
        }
        _ => {}
    }
    match &to {
        DeployTo::Tftp | DeployTo::Nfs => {
            for key in TFTP_IMAGE_KEYS {
                if let Some(v) = f.opt(key) {
                    if let Some(img) = read_image(r, v, &f.sub(key)) {
                        images.push((key.to_string(), img));
                    }
                }
            }
            if let Some(p) = f.opt("persistent_nfs") {
                if p.get("address").and_then(Node::as_str).is_none() {
                    r.error(
                        p,
                        &join(&f.sub("persistent_nfs"), "address"),
                        "required key not provided",
                    );
                }
                if f.has("nfsrootfs") {
                    r.error(
                        p,
                        &f.sub("persistent_nfs"),
                        "'persistent_nfs' and 'nfsrootfs' are exclusive",
                    );
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
                if let Some(img) = read_image(r, i, &f.sub("image")) {
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
            writer = f.opt("writer").cloned();
        }
        _ => {}
    }
    let scope_keys: &[&str] = &[
        "dtbo",
        "extra_files",
        "overlay_backend",
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

fn read_auto_login(r: &mut Report, n: &Node, path: &str) -> Option<AutoLogin> {
    let mut f = Fields::new(r, n, path)?;
    let login_prompt = f.req_str(r, "login_prompt");
    let username = f.req_str(r, "username");
    let password_prompt = f.opt_str(r, "password_prompt");
    let password = f.opt_str(r, "password");
    if password_prompt.is_some() != password.is_some() {
        r.error(n, path, "'password_prompt' and 'password' go together");
    }
    let login_commands = f.opt_str_list(r, "login_commands").unwrap_or_default();
    f.finish(r, "auto_login");
    Some(AutoLogin {
        login_prompt: login_prompt?,
        username: username?,
        password_prompt,
        password,
        login_commands,
    })
}

fn read_boot(r: &mut Report, n: &Node, path: &str) -> Option<Boot> {
    let mut f = Fields::new(r, n, path)?;
    let common = read_common(r, &mut f);
    let method_node = f.req(r, "method");
    let method_name = method_node.and_then(|m| string(r, m, &f.sub("method")));
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
    let media = f.opt_str(r, "media");
    let connection = f.opt_str(r, "connection");
    let prompts = f.opt_str_list(r, "prompts").unwrap_or_default();
    if f.has("prompts") && prompts.is_empty() && f.opt("prompts").is_some() {
        r.error(n, &f.sub("prompts"), "prompts must not be empty");
    }
    let auto_login = f
        .opt("auto_login")
        .and_then(|a| read_auto_login(r, a, &f.sub("auto_login")));
    // Other methods give `commands` their own shapes (uuu: a list of `{tool: args}`).
    let bootloader = matches!(method, BootMethod::UBoot | BootMethod::Bootloader);
    let commands = match f.opt("commands") {
        Some(_) if !bootloader => None,
        Some(c) if c.as_seq().is_some() => {
            Some(BootCommands::Inline(str_or_list(r, c, &f.sub("commands"))))
        }
        Some(c) => string(r, c, &f.sub("commands")).map(BootCommands::Named),
        None => None,
    };
    if matches!(method, BootMethod::UBoot | BootMethod::Bootloader) && commands.is_none() {
        f.req(r, "commands");
    }
    let transfer_overlay = f.opt("transfer_overlay").cloned();
    let (mut ksm, mut bfm, mut sdm) = (None, None, None);
    if let Some(p) = f.opt("parameters") {
        if let Some(mut pf) = Fields::new(r, p, &f.sub("parameters")) {
            ksm = pf.opt_str(r, "kernel-start-message");
            bfm = pf.opt_str(r, "bootloader-final-message");
            sdm = pf.opt_str(r, "shutdown-message");
            pf.finish(r, "boot parameters");
        }
    }
    let soft_reboot = f.opt_str_list(r, "soft_reboot").unwrap_or_default();
    let ignore_kernel_messages = f.opt_bool(r, "ignore_kernel_messages").unwrap_or(false);
    let reset = f.opt_bool(r, "reset");
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
        let mut known = vec!["use_bootscript", "docker"];
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

/// Test and interactive names: the schema's `^[-_a-zA-Z0-9.]+$`.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn read_test(r: &mut Report, n: &Node, path: &str) -> Option<Test> {
    let mut f = Fields::new(r, n, path)?;
    let common = read_common(r, &mut f);
    let kinds = [
        "definitions",
        "interactive",
        "monitors",
        "docker",
        "services",
    ];
    let present: Vec<&str> = kinds.iter().copied().filter(|k| f.has(k)).collect();
    let kind = if f.has("docker") {
        f.opt("definitions");
        let node = f.opt("docker").unwrap_or(n);
        r.warn(node, &f.sub("docker"), "test shells inside docker are outside basalt's scope; the job validates but cannot run here");
        TestKind::Other("docker".to_string())
    } else if let Some(d) = f.opt("definitions") {
        let dpath = f.sub("definitions");
        let defs = list(r, d, &dpath)
            .iter()
            .enumerate()
            .filter_map(|(i, d)| read_definition(r, d, &index(&dpath, i)))
            .collect();
        if f.has("docker") {
            f.opt("docker");
            r.warn(
                n,
                &f.sub("docker"),
                "test shells inside docker are outside basalt's scope; ignored",
            );
        }
        TestKind::Definitions(defs)
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
    } else if let Some(other) = present.first() {
        let node = f.opt(other).unwrap_or(n);
        r.warn(
            node,
            &f.sub(other),
            format!("'{other}' test blocks are outside basalt's scope"),
        );
        TestKind::Other(other.to_string())
    } else {
        r.error(
            n,
            path,
            "a test needs 'definitions', 'interactive' or 'monitors'",
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

fn read_definition(r: &mut Report, n: &Node, path: &str) -> Option<TestDefRef> {
    let mut f = Fields::new(r, n, path)?;
    let from_node = f.req(r, "from");
    let from = match from_node
        .and_then(|x| string(r, x, &f.sub("from")))
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
                check_inline_testdef(r, rn, &f.sub("repository"));
                inline = Some(rn.clone());
            } else {
                r.error(
                    rn,
                    &f.sub("repository"),
                    "an inline definition's repository is the test definition itself (a mapping)",
                );
            }
        } else {
            repository = string(r, rn, &f.sub("repository"));
        }
    }
    let def_path = f.req_str(r, "path");
    let name = f.req_str(r, "name");
    if let (Some(nm), Some(node)) = (&name, f.opt("name")) {
        if !valid_name(nm) {
            r.error(
                node,
                &f.sub("name"),
                format!("invalid test name '{nm}': use letters, digits, '-', '_'"),
            );
        } else if nm.contains('.') {
            r.warn(
                node,
                &f.sub("name"),
                format!("'{nm}': LAVA's dispatcher rejects '.' in test names"),
            );
        }
    }
    let branch = f.opt_str(r, "branch");
    let revision = f.opt_str(r, "revision");
    let history = f.opt_bool(r, "history");
    let shallow = f.opt_bool(r, "shallow");
    if revision.is_some() && shallow == Some(true) {
        r.error(n, path, "'revision' cannot be used with 'shallow: true'");
    }
    f.opt_bool(r, "recursive");
    let mut parameters = Vec::new();
    for key in ["parameters", "params"] {
        if let Some(p) = f.opt(key) {
            for (k, _, v) in entries(r, p, &f.sub(key)) {
                parameters.push((k, v.clone()));
            }
        }
    }
    let skip_install = f.opt_str_list(r, "skip_install").unwrap_or_default();
    for s in &skip_install {
        if !["keys", "sources", "deps", "steps", "git-repos", "all"].contains(&s.as_str()) {
            r.error(n, &f.sub("skip_install"), format!("unknown skip_install value '{s}'; expected keys, sources, deps, steps, git-repos or all"));
        }
    }
    let lava_signal = f.opt_str(r, "lava-signal");
    if let (Some(s), Some(node)) = (&lava_signal, f.opt("lava-signal")) {
        one_of(
            r,
            node,
            &f.sub("lava-signal"),
            "lava-signal",
            s,
            &["kmsg", "stdout"],
        );
    }
    let expected = f.opt_str_list(r, "expected").unwrap_or_default();
    let compression = f
        .opt_str(r, "compression")
        .and_then(|c| Compression::from_name(&c));
    f.opt_int(r, "strip-components", 0, 1000);
    f.opt("headers");
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

fn read_interactive(r: &mut Report, n: &Node, path: &str) -> Option<Interactive> {
    let mut f = Fields::new(r, n, path)?;
    let name = f.req_str(r, "name");
    if let (Some(nm), Some(node)) = (&name, f.opt("name")) {
        if !valid_name(nm) || nm.contains('.') {
            r.error(
                node,
                &f.sub("name"),
                format!("invalid interactive name '{nm}': use letters, digits, '-', '_'"),
            );
        }
    }
    let prompts = f.opt_str_list(r, "prompts").unwrap_or_default();
    let echo_discard = f.opt_str(r, "echo").as_deref() == Some("discard");
    f.opt("expected");
    let mut script = Vec::new();
    if let Some(s) = f.req(r, "script") {
        let spath = f.sub("script");
        for (i, step) in list(r, s, &spath).iter().enumerate() {
            let p = index(&spath, i);
            let Some(mut sf) = Fields::new(r, step, &p) else {
                continue;
            };
            let command = sf.opt_str(r, "command");
            let name = sf.opt_str(r, "name");
            let delay = sf.opt_int(r, "delay", 0, 86_400).map(|d| d as u64);
            let wait_for_prompt = sf.opt_bool(r, "wait_for_prompt").unwrap_or(true);
            let mut successes = Vec::new();
            if let Some(list_node) = sf.opt("successes") {
                for (k, item) in list(r, list_node, &sf.sub("successes")).iter().enumerate() {
                    let ip = index(&sf.sub("successes"), k);
                    if let Some(m) = item.get("message").and_then(|m| string(r, m, &ip)) {
                        successes.push(m);
                    } else {
                        r.error(item, &join(&ip, "message"), "required key not provided");
                    }
                }
            }
            let mut failures = Vec::new();
            if let Some(list_node) = sf.opt("failures") {
                for (k, item) in list(r, list_node, &sf.sub("failures")).iter().enumerate() {
                    let ip = index(&sf.sub("failures"), k);
                    let Some(mut ff) = Fields::new(r, item, &ip) else {
                        continue;
                    };
                    let msg = ff.req_str(r, "message");
                    let exc = ff.opt_str(r, "exception");
                    if let (Some(e), Some(node)) = (&exc, ff.opt("exception")) {
                        one_of(
                            r,
                            node,
                            &ff.sub("exception"),
                            "exception",
                            e,
                            &["InfrastructureError", "JobError", "TestError"],
                        );
                    }
                    let error = ff.opt_str(r, "error");
                    ff.finish(r, "failure");
                    if let Some(message) = msg {
                        failures.push(InteractiveFailure {
                            message,
                            exception: exc,
                            error,
                        });
                    }
                }
            }
            sf.finish_with(
                r,
                "interactive step",
                &["lava-send", "lava-sync", "lava-wait", "lava-wait-all"],
            );
            script.push(InteractiveStep {
                name,
                command,
                delay,
                wait_for_prompt,
                successes,
                failures,
            });
        }
    }
    f.finish(r, "interactive");
    Some(Interactive {
        name: name?,
        prompts,
        echo_discard,
        script,
    })
}

fn read_monitor(r: &mut Report, n: &Node, path: &str) -> Option<Monitor> {
    let mut f = Fields::new(r, n, path)?;
    let name = f.req_str(r, "name");
    if let (Some(nm), Some(node)) = (&name, f.opt("name")) {
        if !valid_name(nm) {
            r.error(
                node,
                &f.sub("name"),
                format!(
                    "invalid character in monitor name '{nm}': use letters, digits, '-', '_', '.'"
                ),
            );
        }
    }
    let start = f.req_str(r, "start");
    let end = f.req_str(r, "end");
    let pattern = f.req_str(r, "pattern");
    if let (Some(p), Some(node)) = (&pattern, f.opt("pattern")) {
        if let Err(e) = crate::testshell::pattern::compile_python_regex(p) {
            r.error(node, &f.sub("pattern"), format!("invalid pattern: {e}"));
        }
    }
    let fixupdict = f
        .opt("fixupdict")
        .map(|x| str_map(r, x, &f.sub("fixupdict")))
        .unwrap_or_default();
    f.opt("expected");
    f.finish(r, "monitor");
    Some(Monitor {
        name: name?,
        start: start?,
        end: end?,
        pattern: pattern?,
        fixupdict,
    })
}

fn read_command(r: &mut Report, n: &Node, path: &str) -> Option<Command> {
    let mut f = Fields::new(r, n, path)?;
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
) {
    let job_secs = t.job.map(|j| j.secs);
    let too_long = |secs: u64| job_secs.is_some_and(|j| secs > j);
    let tnode = root.get("timeouts");
    let tn = tnode.unwrap_or(root);
    for (name, to) in [("action", t.action), ("connection", t.connection)] {
        if to.is_some_and(|x| too_long(x.secs)) {
            let node = tn.get(name).unwrap_or(tn);
            r.warn(
                node,
                &join("timeouts", name),
                "timeout is larger than the job timeout (LAVA only warns; the job timeout wins)",
            );
        }
    }
    for (name, to) in &t.actions {
        if too_long(to.secs) {
            let node = tn.path(&["actions", name]).unwrap_or(tn);
            r.warn(
                node,
                &format!("timeouts.actions.{name}"),
                "action timeout is larger than the job timeout (LAVA only warns; the job timeout wins)",
            );
        }
    }
    let action_nodes = root.get("actions").and_then(Node::as_seq).unwrap_or(&[]);
    let any_namespace = actions.iter().any(|a| a.common().namespace.is_some());
    let is_multinode = mn.is_some_and(|m| !m.roles.is_empty() || m.role.is_some());
    for (i, a) in actions.iter().enumerate() {
        let mut names: BTreeSet<(String, String)> = BTreeSet::new();
        let c = a.common();
        let path = format!("actions[{i}].{}", a.kind());
        let node = action_nodes
            .get(i)
            .and_then(|x| x.get(a.kind()))
            .unwrap_or(root);
        if let Some(to) = c.timeout {
            if too_long(to.secs) {
                let tnode = node.get("timeout").unwrap_or(node);
                r.warn(
                    tnode,
                    &join(&path, "timeout"),
                    "action timeout is larger than the job timeout (LAVA only warns; the job timeout wins)",
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
        if let Some(ns) = &c.namespace {
            if ns == "common" {
                r.error(
                    node,
                    &join(&path, "namespace"),
                    "'common' is a reserved namespace",
                );
            }
        }
        if is_multinode
            && c.role.is_empty()
            && mn.is_some_and(|m| !m.roles.is_empty() && m.role.is_none())
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
                    r.error(
                        dn,
                        &dpath,
                        "'lava' is reserved for the dispatcher's own results",
                    );
                }
                let roles = if c.role.is_empty() {
                    vec![String::new()]
                } else {
                    c.role.clone()
                };
                for role in roles {
                    if !names.insert((format!("{ns}/{role}"), d.name.clone())) {
                        r.error(
                            dn,
                            &dpath,
                            format!(
                                "test definition names need to be unique: '{}' is used twice",
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
                for (i, a) in actions.iter().enumerate() {
                    for role in &a.common().role {
                        if !roles.contains(&role.as_str()) {
                            let node = action_nodes.get(i).unwrap_or(root);
                            r.error(node, &format!("actions[{i}].{}.role", a.kind()), format!("role '{role}' is not defined in protocols.lava-multinode.roles"));
                        }
                    }
                }
            }
        }
    }
}
