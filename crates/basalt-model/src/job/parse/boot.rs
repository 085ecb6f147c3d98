//! `boot:` blocks: methods, prompts, `auto_login`, `transfer_overlay`.

use super::*;

/// Every boot `method:` LAVA knows; those outside [`BootMethod::IN_SCOPE`] are warnings.
pub(super) const LAVA_BOOT_METHODS: &[&str] = &[
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

/// `auto_login`: the gate's closed mapping and the job schema's two shapes (with or without
/// a password prompt; a `password` alone is accepted, as LAVA does).
pub(super) fn read_auto_login(r: &mut Report, n: &Node, path: &str) -> Option<AutoLogin> {
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

pub(super) fn read_boot(r: &mut Report, n: &Node, path: &str) -> Option<Boot> {
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
                other_strategy(
                    r,
                    m,
                    &f.sub("method"),
                    ("boot method", &format!("boot method '{other}'")),
                    other,
                    LAVA_BOOT_METHODS,
                    &BootMethod::IN_SCOPE,
                );
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
pub(super) fn check_transfer_overlay(r: &mut Report, n: &Node, path: &str) {
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
