//! `uboot-action` (boot `method: u-boot`): power-cycle the board, interrupt U-Boot, send the
//! device's command list with `{SERVER_IP}`, `{KERNEL_ADDR}`, `{BOOTX}`... substituted, then
//! wait for the kernel and log in.

use super::login::{login_tail, reset_device};
use super::minimal::ConnectDevice;
use crate::action::{action, group, retry, Action, ActionNode, Builder, Check, Nothing};
use crate::action::{PipelineError, Scope};
use crate::job::{Boot, BootCommands};

pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    boot: &Boot,
) -> Result<ActionNode, PipelineError> {
    if boot.commands.is_none() {
        return Err(s.error(
            b,
            "a u-boot boot needs 'commands' (a command list name of the device, or a list)",
        ));
    }
    let mut node = b.node(
        s,
        None,
        retry("uboot-action", "boot through U-Boot, retrying on failure"),
    );
    b.child(
        s,
        &mut node,
        Nothing {
            name: "uboot-from-media",
            description: "find the boot partition on secondary media",
        },
    );
    b.child(s, &mut node, BootloaderOverlay);
    b.child(s, &mut node, ConnectDevice);
    let cmds = b.child(
        s,
        &mut node,
        group(
            "uboot-commands",
            "interrupt U-Boot and send the boot commands",
        ),
    );
    reset_device(b, s, cmds);
    b.child(s, cmds, BootloaderInterrupt);
    b.child(s, cmds, BootloaderCommands);
    login_tail(b, s, boot, cmds);
    Ok(node)
}

/// `boot-bootloader-retry` (boot `method: bootloader`): reset the board and stop at the
/// bootloader prompt after its commands, for interactive tests of U-Boot itself.
pub(crate) fn bootloader_pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    _boot: &Boot,
) -> Result<ActionNode, PipelineError> {
    let mut node = b.node(
        s,
        None,
        retry(
            "boot-bootloader-retry",
            "stop at the bootloader prompt, retrying on failure",
        ),
    );
    b.child(s, &mut node, BootloaderOverlay);
    let bb = b.child(
        s,
        &mut node,
        group(
            "boot-bootloader",
            "reset the device and stop at the bootloader prompt",
        ),
    );
    let rc = b.child(
        s,
        bb,
        group(
            "reset-connection",
            "drop and re-open the console connection",
        ),
    );
    b.child(s, rc, DisconnectDevice);
    b.child(s, rc, ConnectDevice);
    reset_device(b, s, bb);
    b.child(s, bb, BootloaderInterrupt);
    b.child(s, bb, BootloaderCommands);
    Ok(node)
}

/// The boot commands for this job: the device's named list or the job's inline list.
pub fn command_list(
    device: &crate::device::Device,
    commands: &BootCommands,
) -> Result<Vec<String>, String> {
    match commands {
        BootCommands::Inline(list) => Ok(list.clone()),
        BootCommands::Named(name) => {
            let node = device
                .boot_method("u-boot")
                .and_then(|m| m.get(name))
                .and_then(|m| m.get("commands"))
                .ok_or_else(|| {
                    format!(
                        "device '{}' has no u-boot command list '{name}'",
                        device.hostname
                    )
                })?;
            let mut r = crate::diag::Report::new(&device.source);
            let list = crate::reader::str_or_list(
                &mut r,
                node,
                &format!("actions.boot.methods.u-boot.{name}.commands"),
            );
            if r.has_errors() {
                return Err(r.to_string());
            }
            Ok(list)
        }
    }
}

// ---- running -------------------------------------------------------------------------------

use crate::action::context::{literal, pattern};
use crate::action::{ActionError, Ctx, FailureCause};
use crate::job::{ActionBlock, DeployTo, KernelType};
use crate::yaml::Node;
use std::time::Duration;

/// `actions.boot.methods.u-boot.parameters.<key>` of the device.
fn param<'d>(ctx: &'d Ctx, key: &str) -> Option<&'d Node> {
    ctx.device
        .boot_method("u-boot")?
        .get("parameters")?
        .get(key)
}

fn constant(ctx: &Ctx, key: &str) -> Option<String> {
    ctx.device
        .constant(&["u-boot", key])
        .and_then(Node::scalar_text)
}

/// Replaces `{NAME}` placeholders; a line that uses a placeholder without a value is dropped,
/// as LAVA drops it (`tftp {TEE_ADDR} {TEE}` without a TEE).
pub fn substitute(commands: &[String], values: &[(&str, Option<String>)]) -> Vec<String> {
    commands
        .iter()
        .filter_map(|line| {
            let mut out = line.clone();
            for (name, value) in values {
                let ph = format!("{{{name}}}");
                if out.contains(&ph) {
                    match value {
                        Some(v) => out = out.replace(&ph, v),
                        None => return None,
                    }
                }
            }
            Some(out)
        })
        .collect()
}

/// `bootloader-overlay`: the boot commands with the deployed files' names and addresses.
#[derive(Debug)]
pub struct BootloaderOverlay;

#[async_trait::async_trait]
impl Action for BootloaderOverlay {
    fn name(&self) -> &'static str {
        "bootloader-overlay"
    }
    fn description(&self) -> &'static str {
        "substitute addresses and file names into boot commands"
    }
    fn validate(&self, c: &Check<'_>) -> Result<(), String> {
        match c.node.block.and_then(|b| c.job.actions.get(b)) {
            Some(ActionBlock::Boot(boot)) => match &boot.commands {
                Some(cmds) => command_list(c.device, cmds).map(|_| ()),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }
    async fn run(&self, ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
        run_overlay(ctx, node)
    }
}

action! {
    /// `bootloader-interrupt`: stop autoboot at U-Boot's countdown.
    pub struct BootloaderInterrupt = "bootloader-interrupt", "stop the bootloader's autoboot";
    run(ctx, node) { run_interrupt(ctx, node).await }
}

action! {
    /// `bootloader-commands`: send the boot commands at the prompt.
    pub struct BootloaderCommands = "bootloader-commands", "send the boot commands at the bootloader prompt";
    run(ctx, node) { run_commands(ctx, node).await }
}

action! {
    /// `send-reboot-commands`: reboot a running system from its shell.
    pub struct SendRebootCommands = "send-reboot-commands", "reboot the device from its shell";
    run(ctx, node) { run_soft_reboot(ctx, node).await }
}

action! {
    /// `disconnect-device`: close the console connection.
    pub struct DisconnectDevice = "disconnect-device", "close the console connection";
    run(ctx, _node) {
        ctx.session = None;
        ctx.log.debug("console disconnected");
        Ok(())
    }
}

/// The U-Boot command that boots a kernel of type `kind` on `device`, as LAVA's
/// `map_kernel_uboot`: `bootz` / `booti` when the device has their addresses
/// (`parameters.bootz` / `parameters.booti`), else `bootm` (the kernel is then wrapped as a
/// uImage by `uboot-prepare-kernel`).
pub(crate) fn boot_command(
    device: &crate::device::Device,
    kind: Option<KernelType>,
) -> &'static str {
    match kind.map(KernelType::bootx) {
        Some(b @ ("bootz" | "booti")) if device.node.path(&["parameters", b]).is_some() => b,
        _ => "bootm",
    }
}

/// `bootloader-overlay`: the boot commands with the deployed files' names and addresses.
fn run_overlay(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let boot = ctx.boot_block(node)?;
    let commands = boot
        .commands
        .as_ref()
        .ok_or_else(|| ActionError::job("a u-boot boot needs 'commands'"))?;
    let list = command_list(&ctx.device, commands).map_err(ActionError::job)?;
    if matches!(commands, BootCommands::Inline(_)) {
        ctx.log
            .warning("Using boot commands supplied in the job definition, not the device's");
    }
    let block = node.block.unwrap_or(0);
    let media = secondary_media(ctx, block, &boot);
    let deploy = ctx.job.actions[..block].iter().rev().find_map(|a| match a {
        ActionBlock::Deploy(d) if d.to == DeployTo::Tftp => Some(d),
        _ => None,
    });
    let kernel_type = match &media {
        Some(m) => m.kernel_type,
        None => deploy
            .and_then(|d| d.images.iter().find(|(k, _)| k == "kernel"))
            .and_then(|(_, i)| i.kernel_type),
    };
    let bootx = boot_command(&ctx.device, kernel_type);
    let rel = |key: &str| -> Option<String> {
        if let Some(m) = &media {
            return m
                .files
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone());
        }
        let p = ctx.downloads.get(key)?;
        let r = p.strip_prefix(&ctx.tftp_root).ok()?;
        Some(r.to_string_lossy().into_owned())
    };
    let addr = |what: &str| -> Option<String> {
        ctx.device
            .node
            .path(&["parameters", bootx, what])
            .and_then(Node::scalar_text)
    };
    let (kernel, ramdisk, dtb, tee) = (rel("kernel"), rel("ramdisk"), rel("dtb"), rel("tee"));
    // the deploy's device tree overlays, in order (`dtbo0`, `dtbo1`, ...)
    let dtbos: Vec<String> = (0..)
        .map(|i| rel(&format!("dtbo{i}")))
        .take_while(Option::is_some)
        .flatten()
        .collect();
    let list = expand_dtbo_commands(ctx, &list, &dtbos);
    let add_header = ctx
        .device
        .node
        .path(&["actions", "deploy", "parameters", "add_header"])
        .and_then(Node::as_str)
        .unwrap_or("");
    let ramdisk_addr = ramdisk.as_ref().and(addr("ramdisk"));
    let bootx_ramdisk = match &ramdisk_addr {
        Some(a) if add_header != "u-boot" => format!("{a}:${{initrd_size}}"),
        Some(a) => a.clone(),
        None => "-".into(),
    };
    let kernel_addr = addr("kernel");
    let dtb_addr = addr("dtb");
    let bootx_line = format!(
        "{bootx} {} {bootx_ramdisk} {}",
        kernel_addr.clone().unwrap_or_default(),
        dtb_addr.clone().unwrap_or_default()
    );
    let values: Vec<(&str, Option<String>)> = vec![
        ("SERVER_IP", Some(ctx.server_ip.clone())),
        ("KERNEL", kernel),
        ("RAMDISK", ramdisk.clone()),
        ("INITRD", ramdisk),
        ("DTB", dtb.clone()),
        ("TEE", tee.clone()),
        ("KERNEL_ADDR", kernel_addr),
        ("RAMDISK_ADDR", ramdisk_addr),
        ("DTB_ADDR", dtb.clone().and(dtb_addr.clone())),
        ("DTB_BASE_ADDR", dtb.and(dtb_addr)),
        (
            "DTB_BASE_RESIZE",
            ctx.device
                .node
                .path(&["parameters", "dtb_base_resize"])
                .and_then(Node::scalar_text),
        ),
        ("DTBO_ADDR", addr("dtbo")),
        ("TEE_ADDR", tee.and(addr("tee"))),
        ("BOOTX", Some(bootx_line)),
        ("ROOT", media.as_ref().and_then(|m| m.root.clone())),
        ("ROOT_PART", media.as_ref().map(|m| m.root_part.clone())),
        ("LAVA_JOB_ID", Some(ctx.job_id.clone())),
        ("NFSROOTFS", ctx.nfs.as_ref().map(|n| n.path.clone())),
        (
            "NFS_SERVER_IP",
            ctx.nfs
                .as_ref()
                .map(|n| n.server.clone().unwrap_or_else(|| ctx.server_ip.clone())),
        ),
        ("LAVA_DISPATCHER_IP", Some(ctx.server_ip.clone())),
    ];
    ctx.boot_commands = substitute(&list, &values);
    for c in &ctx.boot_commands {
        ctx.log.debug(format!("boot command: {c}"));
    }
    Ok(())
}

/// LAVA's default `apply_dtbo_commands` (base-uboot.jinja2): each overlay loaded at the same
/// address and applied in turn.
const APPLY_DTBO_COMMANDS: [&str; 2] = ["tftp {DTBO_ADDR} {DTBO}", "fdt apply {DTBO_ADDR}"];

/// `{APPLY_DTBO_COMMANDS}` replaced by the device's `apply_dtbo_commands` once per overlay,
/// `{DTBO}` naming it; without overlays the line goes, and with it the `fdt` lines that only
/// prepare their application.
fn expand_dtbo_commands(ctx: &Ctx, list: &[String], dtbos: &[String]) -> Vec<String> {
    const PH: &str = "{APPLY_DTBO_COMMANDS}";
    if !list.iter().any(|l| l.contains(PH)) {
        return list.to_vec();
    }
    let apply: Vec<String> = param(ctx, "apply_dtbo_commands")
        .and_then(Node::as_seq)
        .map(|s| s.iter().filter_map(Node::scalar_text).collect())
        .unwrap_or_else(|| APPLY_DTBO_COMMANDS.map(str::to_string).to_vec());
    let mut out = Vec::with_capacity(list.len() + dtbos.len() * apply.len());
    for line in list {
        if line.contains(PH) {
            for dtbo in dtbos {
                out.extend(apply.iter().map(|a| a.replace("{DTBO}", dtbo)));
            }
        } else if dtbos.is_empty()
            && (line.contains("{DTB_BASE_ADDR}") || line.contains("{DTB_BASE_RESIZE}"))
        {
            continue;
        } else {
            out.push(line.clone());
        }
    }
    out
}

/// A boot from the secondary medium an earlier `usb`/`sata` deploy wrote (LAVA's
/// `uboot-from-media`): the files on it and where they are, from the boot block.
struct Media {
    /// `kernel`, `ramdisk`, `dtb`: paths on the medium's boot partition.
    files: Vec<(&'static str, String)>,
    kernel_type: Option<KernelType>,
    /// `{ROOT}`: the boot block's `root_uuid`.
    root: Option<String>,
    /// `{ROOT_PART}`: `<device_id>:<boot_part>`.
    root_part: String,
}

/// The medium of the last usb/sata deploy before boot block `block`, if it was the last deploy
/// and the boot names the files on it.
fn secondary_media(ctx: &Ctx, block: usize, boot: &crate::job::Boot) -> Option<Media> {
    let d = ctx.job.actions[..block]
        .iter()
        .rev()
        .find_map(|a| match a {
            ActionBlock::Deploy(d) => Some(d),
            _ => None,
        })?;
    if !matches!(d.to, DeployTo::Usb | DeployTo::Sata) {
        return None;
    }
    let text = |k: &str| boot.node.get(k).and_then(Node::scalar_text);
    let entry = ctx.device.node.path(&[
        "parameters",
        "media",
        d.to.name(),
        d.media_device.as_deref().unwrap_or_default(),
    ]);
    let device_id = entry
        .and_then(|e| e.get("device_id"))
        .and_then(Node::scalar_text)
        .unwrap_or_else(|| "0".into());
    let part = text("boot_part")
        .or_else(|| {
            entry
                .and_then(|e| e.get("boot_part"))
                .and_then(Node::scalar_text)
        })
        .unwrap_or_else(|| "1".into());
    let files = ["kernel", "ramdisk", "dtb"]
        .into_iter()
        .filter_map(|k| text(k).map(|v| (k, v)))
        .collect();
    let kernel_type = match text("kernel_type").as_deref() {
        Some("image") => Some(KernelType::Image),
        Some("zimage") => Some(KernelType::ZImage),
        Some("uimage") => Some(KernelType::UImage),
        _ => None,
    };
    Some(Media {
        files,
        kernel_type,
        root: text("root_uuid"),
        root_part: format!("{device_id}:{part}"),
    })
}

fn error_patterns(ctx: &Ctx) -> Vec<(String, basalt_hal::console::expect::Regex)> {
    ctx.device
        .constant(&["u-boot", "error-messages"])
        .and_then(Node::as_seq)
        .unwrap_or(&[])
        .iter()
        .filter_map(Node::scalar_text)
        .map(|m| {
            let re = literal(&m);
            (m, re)
        })
        .collect()
}

async fn expect_or_fail(
    ctx: &mut Ctx,
    want: &basalt_hal::console::expect::Regex,
    what: &str,
    timeout: Duration,
) -> Result<(), ActionError> {
    let errors = error_patterns(ctx);
    let mut pats = vec![want.clone()];
    pats.extend(errors.iter().map(|(_, r)| r.clone()));
    let m = ctx
        .session()?
        .expect(&pats, timeout)
        .await
        .map_err(|e| ActionError::expect(what, e))?;
    if m.index > 0 {
        let msg = &errors[m.index - 1].0;
        return Err(
            ActionError::job(format!("{what}: the bootloader reported '{msg}'"))
                .caused_by(bootloader_error_cause(msg)),
        );
    }
    Ok(())
}

/// U-Boot's messages of a network load that failed: the TFTP server or the network (the lab),
/// not the bootloader.
const NETWORK_ERRORS: &[&str] = &[
    "Retry count exceeded",
    "Retry time exceeded",
    "TIMEOUT",
    "File not found",
    "did not respond in time",
    "ARP Retry count exceeded",
    "TFTP server died",
];

/// Who is at fault for the bootloader error `msg` (one of the device's `error-messages`).
fn bootloader_error_cause(msg: &str) -> FailureCause {
    if NETWORK_ERRORS.iter().any(|e| msg.contains(e)) {
        FailureCause::Infrastructure
    } else {
        FailureCause::Bootloader
    }
}

fn prompt(ctx: &Ctx) -> basalt_hal::console::expect::Regex {
    let p = param(ctx, "bootloader_prompt")
        .and_then(Node::scalar_text)
        .unwrap_or_else(|| "=>".into());
    literal(&p)
}

/// `bootloader-interrupt`: stop autoboot at U-Boot's countdown.
async fn run_interrupt(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let needs = param(ctx, "needs_interrupt")
        .and_then(Node::as_bool)
        .unwrap_or(true);
    if !needs {
        ctx.log.debug("the bootloader needs no interrupt");
        return Ok(());
    }
    let prompt_text = param(ctx, "interrupt_prompt")
        .and_then(Node::scalar_text)
        .or_else(|| constant(ctx, "interrupt-prompt"))
        .unwrap_or_else(|| "Hit any key to stop autoboot".into());
    // A present-but-empty interrupt_char beats the constant: then only a newline is sent.
    let ch = match ctx
        .device
        .boot_method("u-boot")
        .and_then(|m| m.get("parameters"))
        .and_then(|p| p.get("interrupt_char"))
    {
        Some(n) => n.scalar_text().unwrap_or_default(),
        None => constant(ctx, "interrupt-character").unwrap_or_else(|| " ".into()),
    };
    let newline = ctx
        .device
        .constant(&["u-boot", "interrupt-newline"])
        .and_then(Node::as_bool)
        .unwrap_or(true);
    let ctrl: Vec<String> = ctx
        .device
        .constant(&["u-boot", "interrupt_ctrl_list"])
        .and_then(Node::as_seq)
        .unwrap_or(&[])
        .iter()
        .filter_map(Node::scalar_text)
        .collect();
    let timeout = Duration::from_secs(node.timeout);
    let want = pattern(&prompt_text);
    expect_or_fail(ctx, &want, "bootloader interrupt", timeout).await?;
    let delay = Duration::from_millis(ctx.device.character_delays.boot_ms);
    if ctrl.is_empty() {
        let text = if newline || ch.is_empty() {
            format!("{ch}\n")
        } else {
            ch
        };
        ctx.session()?.send(&text, delay).await?;
    } else {
        for c in ctrl {
            let b = c
                .bytes()
                .next()
                .map(|b| (b.to_ascii_lowercase().wrapping_sub(b'a') + 1) as char)
                .unwrap_or('\u{3}');
            ctx.session()?.send(&b.to_string(), delay).await?;
        }
    }
    let p = prompt(ctx);
    expect_or_fail(ctx, &p, "bootloader prompt", timeout).await
}

/// `bootloader-commands`: send each command at the prompt, then wait for the kernel to be
/// started; any of the bootloader's error messages fails the boot at once.
async fn run_commands(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let boot = ctx.boot_block(node)?;
    let commands = ctx.boot_commands.clone();
    let delay = Duration::from_millis(ctx.device.character_delays.boot_ms);
    let timeout = Duration::from_secs(node.timeout);
    let p = prompt(ctx);
    let n = commands.len();
    for (i, cmd) in commands.iter().enumerate() {
        ctx.session()?.send_line(cmd, delay).await?;
        if i + 1 < n {
            expect_or_fail(ctx, &p, &format!("bootloader command '{cmd}'"), timeout).await?;
        }
    }
    if boot.method == crate::job::BootMethod::Bootloader {
        // Stay at the prompt; the interrupt already waited for the first one.
        if n > 0 {
            expect_or_fail(ctx, &p, "bootloader prompt", timeout).await?;
        }
        return Ok(());
    }
    let final_msg = boot
        .bootloader_final_message
        .clone()
        .or_else(|| constant(ctx, "final-message"))
        .unwrap_or_else(|| "Starting kernel".into());
    let want = pattern(&final_msg);
    expect_or_fail(ctx, &want, "kernel start by the bootloader", timeout).await
}

/// `send-reboot-commands`: reboot a running system from its shell (devices without a
/// power-cycle command).
async fn run_soft_reboot(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let boot = ctx.boot_block(node)?;
    let mut cmds = boot.soft_reboot.clone();
    if cmds.is_empty() {
        cmds = ctx.device.commands.soft_reboot.clone();
    }
    if cmds.is_empty() {
        cmds.push("reboot".into());
    }
    if ctx.session.is_none() {
        return Err(ActionError::job(format!(
            "device '{}' has no hard_reset command and no console is open to reboot it",
            ctx.device.hostname
        )));
    }
    let delay = Duration::from_millis(ctx.device.character_delays.boot_ms);
    for c in &cmds {
        ctx.session()?.send_line(c, delay).await?;
    }
    let msg = boot
        .shutdown_message
        .clone()
        .or_else(|| {
            ctx.device
                .constant(&["shutdown-message"])
                .and_then(Node::scalar_text)
        })
        .unwrap_or_else(|| "The system is going down for reboot NOW".into());
    let want = pattern(&msg);
    match ctx
        .session()?
        .expect(
            std::slice::from_ref(&want),
            Duration::from_secs(node.timeout),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(ActionError::expect("soft reboot", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::substitute;
    use crate::run::testing::{fixture, run_tree};
    use basalt_hal::console::fake::{FakeConsole, Step};
    use basalt_hal::power::fake::FakePower;

    const JOB: &str = "
device_type: beaglebone-black
job_name: u-boot over fakes
timeouts: {job: {minutes: 2}, action: {seconds: 20}}
priority: medium
visibility: public
actions:
- deploy:
    to: tftp
    os: oe
    kernel: {url: 'file:///k', type: zimage}
    ramdisk: {url: 'file:///r'}
    dtb: {url: 'file:///d'}
- boot:
    method: u-boot
    commands: ramdisk
    auto_login: {login_prompt: 'login:', username: root}
    prompts: ['/ # ']
";

    /// `uboot-action` over a scripted console and a recording power switch: the board is
    /// reset, autoboot interrupted, the device's command list typed with the staged files'
    /// names at each prompt, then the kernel awaited and the login done.
    #[tokio::test]
    async fn uboot_boot_over_fakes_interrupts_sends_commands_and_logs_in() {
        let mut f = fixture("bbb-01", JOB, Vec::new());
        let boot = &f.pipeline.actions[1];
        assert_eq!(boot.name(), "uboot-action");
        let ctx = &mut f.ctx;
        let tftp = ctx.tftp_root.clone();
        for (key, file) in [
            ("kernel", "zImage"),
            ("ramdisk", "initrd"),
            ("dtb", "board.dtb"),
        ] {
            ctx.downloads
                .insert(key.into(), tftp.join(format!("basalt-7/{key}/{file}")));
        }
        // the command list after substitution decides the script: run bootloader-overlay
        let overlay = boot
            .children
            .iter()
            .find(|n| n.name() == "bootloader-overlay")
            .unwrap();
        overlay.action.run(ctx, overlay).await.unwrap();
        let commands = ctx.boot_commands.clone();
        assert!(
            commands
                .iter()
                .any(|c| c.contains("basalt-7/kernel/zImage")),
            "{commands:?}"
        );
        assert!(
            commands.iter().any(|c| c.contains("192.0.2.1")),
            "{commands:?}"
        );
        let mut script = vec![
            Step::print("U-Boot 2024.01\r\nHit any key to stop autoboot:  3 "),
            Step::wait_for("\n"),
            Step::print("\r\n=> "),
        ];
        for (i, c) in commands.iter().enumerate() {
            script.push(Step::wait_for(c));
            if i + 1 < commands.len() {
                script.push(Step::print("\r\n=> "));
            }
        }
        script.extend([
            Step::print("\r\nStarting kernel ...\r\n\r\n[    0.000000] Linux version 6.1.0 (builder@host) #1 SMP\r\n"),
            Step::print("buildroot login: "),
            Step::wait_for("root\n"),
            Step::print("\r\n/ # "),
        ]);
        let console = FakeConsole::new(script);
        let power = FakePower::new();
        ctx.board.console = Some(Box::new(console.clone()));
        ctx.board.power = Some(Box::new(power.clone()));
        let ran = run_tree(ctx, boot).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(power.calls(), vec!["reset"]);
        assert_eq!(console.connections(), 1);
        assert!(
            ran.contains(&"pdu-reboot") && ran.contains(&"login-action"),
            "{ran:?}"
        );
        // what the board got: the interrupt, every command in order, the user name
        let sent = console.received();
        let mut at = 0;
        for want in std::iter::once("\n")
            .chain(commands.iter().map(String::as_str))
            .chain(std::iter::once("root\n"))
        {
            let found = sent[at..].find(want);
            assert!(
                found.is_some(),
                "{want:?} not sent after byte {at}: {sent:?}"
            );
            at += found.unwrap_or(0) + want.len();
        }
        assert!(ctx.session.as_ref().is_some_and(|s| !s.is_closed()));
    }

    /// A failing reset fails `pdu-reboot` with the power backend's error as its source.
    #[tokio::test]
    async fn a_failing_reset_keeps_the_power_error() {
        let mut f = fixture("bbb-01", JOB, Vec::new());
        let reboot = f
            .pipeline
            .walk()
            .into_iter()
            .find(|n| n.name() == "pdu-reboot")
            .unwrap()
            .clone();
        let power = FakePower::new();
        power.fail_next("reset");
        f.ctx.board.power = Some(Box::new(power.clone()));
        let e = reboot.action.run(&mut f.ctx, &reboot).await.unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorType::Infrastructure);
        let source = std::error::Error::source(&e).expect("the power error is kept");
        assert!(source.is::<basalt_hal::power::PowerError>(), "{source:?}");
        assert_eq!(power.calls(), vec!["reset"]);
    }

    #[test]
    fn drops_lines_with_empty_placeholders() {
        let cmds = vec![
            "tftp {KERNEL_ADDR} {KERNEL}".to_string(),
            "tftp {TEE_ADDR} {TEE}".to_string(),
            "setenv serverip {SERVER_IP}".to_string(),
            "{BOOTX}".to_string(),
        ];
        let out = substitute(
            &cmds,
            &[
                ("KERNEL_ADDR", Some("0x40400000".into())),
                ("KERNEL", Some("basalt-1/kernel/Image".into())),
                ("TEE_ADDR", None),
                ("TEE", None),
                ("SERVER_IP", Some("10.0.2.2".into())),
                ("BOOTX", Some("booti 0x40400000 - 0x43f00000".into())),
            ],
        );
        assert_eq!(
            out,
            vec![
                "tftp 0x40400000 basalt-1/kernel/Image",
                "setenv serverip 10.0.2.2",
                "booti 0x40400000 - 0x43f00000"
            ]
        );
    }
}
