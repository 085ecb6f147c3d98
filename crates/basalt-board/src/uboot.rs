//! The simulated U-Boot command line: environment, a hush-like parser, and the commands a
//! dispatcher types (`setenv`, `printenv`, `dhcp`, `tftpboot`, `booti`, ...), with the
//! messages of U-Boot 2023.01.
//!
//! Parsing: commands are separated by `;` (outside quotes); `'...'` is literal, `"..."`
//! and bare words expand `${var}` / `$var` (`$?` is the last status); an unquoted
//! expansion is split on blanks; `\` escapes one character; `name=value` alone sets a
//! hush-local variable. Variables expand when their command runs, so
//! `setenv a 1; echo ${a}` prints `1`. Command names may be abbreviated when unambiguous
//! (`tftp` is `tftpboot`, `printe` is `printenv`), as in U-Boot. Not supported: `if`,
//! `for`, `&&`, `||`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::board::{BoardConfig, Ctx};
use super::line::LineEnd;
use super::memory::{
    be32, le32, Memory, ARM64_MAGIC, FDT_CONTROL_ADDR, FDT_MAGIC, UIMAGE_MAGIC, ZIMAGE_MAGIC,
};
use super::tftp::{self, print_size, Event, TftpError};

/// The U-Boot version line (also U-Boot's `ver` variable).
pub(crate) const UBOOT_VERSION: &str =
    "U-Boot 2023.01-basalt (Nov 23 2026 - 00:00:00 +0000) basalt simulated board";

/// The U-Boot prompt.
pub(crate) const PROMPT: &str = "=> ";

/// Most nested `run`s before giving up (U-Boot would overflow its stack).
const MAX_DEPTH: usize = 16;

/// What a command line led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Done; the status of the last command.
    Status(bool),
    /// A kernel was started: go to Linux.
    Boot,
    /// `reset`.
    Reset,
}

impl Flow {
    fn ok(&self) -> bool {
        !matches!(self, Flow::Status(false))
    }
}

/// Commands: name, one-line help.
const COMMANDS: &[(&str, &str)] = &[
    ("?", "alias for 'help'"),
    ("boot", "boot default, i.e., run 'bootcmd'"),
    ("bootd", "boot default, i.e., run 'bootcmd'"),
    ("booti", "boot Linux kernel 'Image' format from memory"),
    ("bootm", "boot application image from memory"),
    ("bootz", "boot Linux zImage image from memory"),
    ("dhcp", "boot image via network using DHCP/TFTP protocol"),
    ("echo", "echo args to console"),
    ("env", "environment handling commands"),
    ("false", "do nothing, unsuccessfully"),
    ("fdt", "flattened device tree utility commands"),
    ("help", "print command description/usage"),
    ("printenv", "print environment variables"),
    ("reset", "Perform RESET of the CPU"),
    ("run", "run commands in an environment variable"),
    (
        "saveenv",
        "save environment variables to persistent storage",
    ),
    ("setenv", "set environment variables"),
    ("sleep", "delay execution for some time"),
    ("tftpboot", "load file via network using TFTP protocol"),
    ("true", "do nothing, successfully"),
    ("version", "print monitor, compiler and linker version"),
];

fn usage(cmd: &str) -> &'static str {
    match cmd {
        "setenv" => "setenv [-f] name value ...\n    - [forcibly] set environment variable 'name' to 'value ...'\nsetenv [-f] name\n    - [forcibly] delete environment variable 'name'",
        "printenv" => "printenv [-a]\n    - print [all] values of all environment variables\nprintenv name ...\n    - print value of environment variable 'name'",
        "tftpboot" => "tftpboot [loadAddress] [[hostIPaddr:]bootfilename]",
        "fdt" => "fdt addr [-c] [-q] <addr> [<size>]  - Set the [control] fdt location to <addr>\nfdt apply <addr>                    - Apply overlay to the DT\nfdt resize [<extrasize>]            - Resize fdt to size + padding to 4k addr + some optional <extrasize> if needed",
        "dhcp" => "dhcp [loadAddress] [[hostIPaddr:]bootfilename]",
        "booti" => "booti [addr [initrd[:size]] [fdt]]\n    - boot Linux 'Image' stored at 'addr'\n\tThe argument 'initrd' is optional and specifies the address\n\tof an initrd in memory. The optional parameter ':size' allows\n\tspecifying the size of a RAW initrd.\n\tSince booting a Linux kernel requires a flat device-tree, a\n\tthird argument providing the address of the device-tree blob\n\tis required. To boot a kernel with a device-tree blob but\n\twithout an initrd image, use a '-' for the initrd argument.",
        "bootz" => "bootz [addr [initrd[:size]] [fdt]]\n    - boot Linux zImage stored in memory",
        "bootm" => "bootm [addr [arg ...]]\n    - boot application image stored in memory",
        "run" => "run var [...]\n    - run the commands in the environment variable(s) 'var'",
        "sleep" => "sleep N\n    - delay execution for N seconds (N is _decimal_ and can be\n      fractional)",
        "env" => "env default -a - [forcibly] reset default environment\nenv print [-a | name ...] - print environment\nenv set [-f] name [arg ...]",
        "echo" => "echo [-n] [args..]\n    - echo args to console; -n suppresses newline",
        _ => "",
    }
}

/// The default environment (QEMU arm64 `virt` addresses, which the device type uses).
fn default_env(config: &BoardConfig) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [
        ("arch", "arm"),
        ("baudrate", "115200"),
        ("board", "basalt"),
        ("board_name", "basalt-board"),
        ("bootcmd", "booti 0x00000000 - ${fdtcontroladdr}"),
        ("bootdelay", "2"),
        ("cpu", "armv8"),
        ("ethact", "virtio-net#32"),
        ("fdt_addr", "0x40000000"),
        ("fdt_addr_r", "0x43f00000"),
        ("fdt_high", "0xffffffff"),
        ("initrd_high", "0xffffffff"),
        ("kernel_addr_r", "0x40400000"),
        ("loadaddr", "0x40200000"),
        ("pxefile_addr_r", "0x40300000"),
        ("ramdisk_addr_r", "0x44000000"),
        ("scriptaddr", "0x40200000"),
        ("stderr", "pl011@9000000"),
        ("stdin", "pl011@9000000"),
        ("stdout", "pl011@9000000"),
        ("vendor", "basalt"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.insert("fdtcontroladdr".into(), format!("{FDT_CONTROL_ADDR:x}"));
    env.insert("ethaddr".into(), config.mac.clone());
    if let Some(d) = config.bootdelay {
        env.insert("bootdelay".into(), d.to_string());
    }
    if let Some(c) = &config.bootcmd {
        env.insert("bootcmd".into(), c.clone());
    }
    for (k, v) in &config.env {
        if v.is_empty() {
            env.remove(k);
        } else {
            env.insert(k.clone(), v.clone());
        }
    }
    env
}

/// Parses a hex number as U-Boot does (with or without `0x`).
pub(crate) fn parse_hex(s: &str) -> Option<u64> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if t.is_empty() {
        return None;
    }
    u64::from_str_radix(t, 16).ok()
}

/// Splits a command line into commands at unquoted `;`.
pub(crate) fn split_commands(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, ';') => out.push(std::mem::take(&mut cur)),
            (None, '\'' | '"') => {
                quote = Some(c);
                cur.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (q, '\\') if q != Some('\'') => {
                cur.push('\\');
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (_, c) => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().filter(|c| !c.trim().is_empty()).collect()
}

/// Expands and splits one command into words.
pub(crate) fn tokenize(cmd: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let chars: Vec<char> = cmd.chars().collect();
    let mut i = 0;
    // Reads a variable name at chars[i] (after '$'); returns (name, next index).
    let var_name = |i: usize| -> Option<(String, usize)> {
        match chars.get(i) {
            Some('{') => {
                let end = chars[i + 1..].iter().position(|c| *c == '}')?;
                Some((chars[i + 1..i + 1 + end].iter().collect(), i + 2 + end))
            }
            Some('?') => Some(("?".to_string(), i + 1)),
            Some(c) if c.is_ascii_alphanumeric() || *c == '_' => {
                let len = chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .count();
                Some((chars[i..i + len].iter().collect(), i + len))
            }
            _ => None,
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
                i += 1;
            }
            '\'' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    cur.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    match chars[i] {
                        '\\' if i + 1 < chars.len() => {
                            cur.push(chars[i + 1]);
                            i += 2;
                        }
                        '$' => match var_name(i + 1) {
                            Some((name, next)) => {
                                cur.push_str(&lookup(&name).unwrap_or_default());
                                i = next;
                            }
                            None => {
                                cur.push('$');
                                i += 1;
                            }
                        },
                        ch => {
                            cur.push(ch);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            '\\' => {
                if let Some(n) = chars.get(i + 1) {
                    cur.push(*n);
                    in_word = true;
                }
                i += 2;
            }
            '$' => match var_name(i + 1) {
                Some((name, next)) => {
                    let value = lookup(&name).unwrap_or_default();
                    let mut parts = value.split([' ', '\t']).filter(|p| !p.is_empty());
                    if let Some(first) = parts.next() {
                        cur.push_str(first);
                        in_word = true;
                        for p in parts {
                            words.push(std::mem::take(&mut cur));
                            cur.push_str(p);
                        }
                    }
                    i = next;
                }
                None => {
                    cur.push('$');
                    in_word = true;
                    i += 1;
                }
            },
            ch => {
                cur.push(ch);
                in_word = true;
                i += 1;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Resolves a possibly abbreviated command name.
fn find_command(name: &str) -> Option<&'static str> {
    let base = name.split('.').next().unwrap_or(name);
    if let Some((n, _)) = COMMANDS.iter().find(|(n, _)| *n == base) {
        return Some(n);
    }
    if base == "tftp" {
        return Some("tftpboot");
    }
    let matches: Vec<&str> = COMMANDS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| n.starts_with(base))
        .collect();
    match matches.as_slice() {
        [one] if !base.is_empty() => Some(one),
        _ => None,
    }
}

/// The U-Boot state of one boot: environment and memory.
pub(crate) struct UBoot {
    env: BTreeMap<String, String>,
    locals: HashMap<String, String>,
    last_ok: bool,
    /// The board's memory.
    pub memory: Memory,
    defaults: BTreeMap<String, String>,
}

impl UBoot {
    pub fn new(config: &BoardConfig) -> Self {
        let env = default_env(config);
        UBoot {
            defaults: env.clone(),
            env,
            locals: HashMap::new(),
            last_ok: true,
            memory: Memory::new(),
        }
    }

    /// An environment (or hush-local) variable.
    pub fn var(&self, name: &str) -> Option<String> {
        if name == "?" {
            return Some(if self.last_ok { "0" } else { "1" }.to_string());
        }
        self.locals
            .get(name)
            .or_else(|| self.env.get(name))
            .cloned()
    }

    fn hex_var(&self, name: &str) -> Option<u64> {
        self.var(name).and_then(|v| parse_hex(&v))
    }

    /// The interactive prompt: reads and runs lines until a kernel boots or the board
    /// resets.
    pub async fn prompt(&mut self, ctx: &mut Ctx<'_>) -> Flow {
        loop {
            ctx.puts(PROMPT).await;
            let mut line = Vec::new();
            let uart = ctx.shared.uart.clone();
            match ctx.input.read_line(&uart, true, None, &mut line).await {
                None => std::future::pending::<()>().await,
                Some(LineEnd::Interrupt) => ctx.puts("<INTERRUPT>\n").await,
                Some(LineEnd::Enter) => {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    match self.run_line(ctx, &text, 0).await {
                        Flow::Status(_) => {}
                        other => return other,
                    }
                }
            }
        }
    }

    /// Runs a command line (several commands separated by `;`).
    pub fn run_line<'a>(
        &'a mut self,
        ctx: &'a mut Ctx<'_>,
        line: &'a str,
        depth: usize,
    ) -> Pin<Box<dyn Future<Output = Flow> + Send + 'a>> {
        Box::pin(async move {
            let mut flow = Flow::Status(true);
            for cmd in split_commands(line) {
                let words = tokenize(&cmd, &|n| self.var(n));
                if words.is_empty() {
                    continue;
                }
                flow = self.run_words(ctx, &words, depth).await;
                self.last_ok = flow.ok();
                if !matches!(flow, Flow::Status(_)) {
                    return flow;
                }
            }
            flow
        })
    }

    async fn run_words(&mut self, ctx: &mut Ctx<'_>, words: &[String], depth: usize) -> Flow {
        let name = words[0].as_str();
        let args = &words[1..];
        // hush-local assignment: name=value
        if let Some((k, v)) = name.split_once('=') {
            if !k.is_empty()
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !k.starts_with(|c: char| c.is_ascii_digit())
            {
                self.locals.insert(k.to_string(), v.to_string());
                return Flow::Status(true);
            }
        }
        let Some(cmd) = find_command(name) else {
            ctx.puts(&format!("Unknown command '{name}' - try 'help'\n"))
                .await;
            return Flow::Status(false);
        };
        match cmd {
            "?" | "help" => self.help(ctx, args).await,
            "setenv" => self.setenv(ctx, args).await,
            "printenv" => self.printenv(ctx, args).await,
            "env" => match args.first().map(String::as_str) {
                Some("print") => self.printenv(ctx, &args[1..]).await,
                Some("set") => self.setenv(ctx, &args[1..]).await,
                Some("default") if args.get(1).map(String::as_str) == Some("-a") => {
                    self.env = self.defaults.clone();
                    ctx.puts("## Resetting to default environment\n").await;
                    Flow::Status(true)
                }
                _ => self.show_usage(ctx, "env").await,
            },
            "saveenv" => {
                ctx.puts("Saving Environment to Flash... Un-Protected 2 sectors\nErasing Flash...\n.. done\nErased 2 sectors\nWriting to Flash... done\nProtected 2 sectors\nOK\n").await;
                Flow::Status(true)
            }
            "echo" => {
                let (newline, rest) = match args.first().map(String::as_str) {
                    Some("-n") => (false, &args[1..]),
                    _ => (true, args),
                };
                let mut text = rest.join(" ");
                if newline {
                    text.push('\n');
                }
                ctx.puts(&text).await;
                Flow::Status(true)
            }
            "version" => {
                ctx.puts(&format!(
                    "\n{UBOOT_VERSION}\n\naarch64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0\nGNU ld (GNU Binutils for Debian) 2.40\n"
                ))
                .await;
                Flow::Status(true)
            }
            "true" => Flow::Status(true),
            "false" => Flow::Status(false),
            "sleep" => {
                let Some(secs) = args
                    .first()
                    .and_then(|a| a.parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s >= 0.0)
                else {
                    return self.show_usage(ctx, "sleep").await;
                };
                let deadline = Instant::now() + Duration::from_secs_f64(secs.min(1e6));
                while let Some(b) = ctx.input.byte_until(deadline).await {
                    if b == 0x03 {
                        return Flow::Status(false);
                    }
                }
                Flow::Status(true)
            }
            "reset" => {
                ctx.puts("resetting ...\n").await;
                Flow::Reset
            }
            "boot" | "bootd" => match self.var("bootcmd") {
                Some(c) => self.run_nested(ctx, &c, depth).await,
                None => Flow::Status(false),
            },
            "run" => {
                if args.is_empty() {
                    return self.show_usage(ctx, "run").await;
                }
                let mut flow = Flow::Status(true);
                for var in args {
                    let Some(c) = self.var(var) else {
                        ctx.puts(&format!("## Error: \"{var}\" not defined\n"))
                            .await;
                        return Flow::Status(false);
                    };
                    flow = self.run_nested(ctx, &c, depth).await;
                    if !matches!(flow, Flow::Status(true)) {
                        return flow;
                    }
                }
                flow
            }
            "dhcp" => self.dhcp(ctx, args).await,
            "tftpboot" => self.tftpboot(ctx, args).await,
            "fdt" => self.fdt(ctx, args).await,
            "booti" | "bootz" | "bootm" => self.boot_kernel(ctx, cmd, args).await,
            _ => {
                ctx.puts(&format!("Unknown command '{name}' - try 'help'\n"))
                    .await;
                Flow::Status(false)
            }
        }
    }

    /// `fdt addr`, `fdt resize`, `fdt apply`: the working tree is set, given room, and device
    /// tree overlays (blobs with the FDT magic) applied to it, with U-Boot's messages.
    async fn fdt(&mut self, ctx: &mut Ctx<'_>, args: &[String]) -> Flow {
        const NO_ADDR: &str = "No FDT memory address configured. Please configure\nthe FDT address via \"fdt addr <address>\" command.\nAborting!\n";
        let addr = args.get(1).and_then(|a| parse_hex(a));
        match args.first().map(String::as_str) {
            Some("addr") => {
                let Some(a) = addr else {
                    return self.show_usage(ctx, "fdt").await;
                };
                if self.memory.at(a).is_none() {
                    ctx.puts("libfdt fdt_check_header(): FDT_ERR_BADMAGIC\n")
                        .await;
                    return Flow::Status(false);
                }
                self.env.insert("fdtaddr".into(), format!("{a:x}"));
                Flow::Status(true)
            }
            Some("resize") => {
                if self.hex_var("fdtaddr").is_none() {
                    ctx.puts(NO_ADDR).await;
                    return Flow::Status(false);
                }
                Flow::Status(true)
            }
            Some("apply") => {
                if self.hex_var("fdtaddr").is_none() {
                    ctx.puts(NO_ADDR).await;
                    return Flow::Status(false);
                }
                let Some(a) = addr else {
                    return self.show_usage(ctx, "fdt").await;
                };
                let overlay = self
                    .memory
                    .at(a)
                    .is_some_and(|d| be32(d, 0) == Some(FDT_MAGIC));
                if !overlay {
                    ctx.puts("failed on fdt_overlay_apply(): FDT_ERR_BADMAGIC\nbase fdt does did not have a /__symbols__ node\nmake sure you've compiled with -@\n").await;
                    return Flow::Status(false);
                }
                Flow::Status(true)
            }
            _ => self.show_usage(ctx, "fdt").await,
        }
    }

    async fn run_nested(&mut self, ctx: &mut Ctx<'_>, line: &str, depth: usize) -> Flow {
        if depth >= MAX_DEPTH {
            ctx.puts("## Error: commands nested too deeply\n").await;
            return Flow::Status(false);
        }
        self.run_line(ctx, line, depth + 1).await
    }

    async fn show_usage(&self, ctx: &mut Ctx<'_>, cmd: &str) -> Flow {
        let help = COMMANDS
            .iter()
            .find(|(n, _)| *n == cmd)
            .map(|(_, h)| *h)
            .unwrap_or("");
        ctx.puts(&format!("{cmd} - {help}\n\nUsage:\n{}\n", usage(cmd)))
            .await;
        Flow::Status(false)
    }

    async fn help(&self, ctx: &mut Ctx<'_>, args: &[String]) -> Flow {
        if args.is_empty() {
            let mut text = String::new();
            for (n, h) in COMMANDS {
                text.push_str(&format!("{n:<10}- {h}\n"));
            }
            ctx.puts(&text).await;
            return Flow::Status(true);
        }
        for a in args {
            match find_command(a) {
                Some(c) => {
                    let _ = self.show_usage(ctx, c).await;
                }
                None => {
                    ctx.puts(&format!("Unknown command '{a}' - try 'help' without arguments for list of all known commands\n\n")).await;
                    return Flow::Status(false);
                }
            }
        }
        Flow::Status(true)
    }

    async fn setenv(&mut self, ctx: &mut Ctx<'_>, args: &[String]) -> Flow {
        let (force, args) = match args.first().map(String::as_str) {
            Some("-f") => (true, &args[1..]),
            _ => (false, args),
        };
        let Some(name) = args.first() else {
            return self.show_usage(ctx, "setenv").await;
        };
        if name.contains('=') {
            ctx.puts(&format!(
                "## Error: illegal character '=' in variable name \"{name}\"\n"
            ))
            .await;
            return Flow::Status(false);
        }
        if !force && name == "ethaddr" && self.env.contains_key("ethaddr") {
            ctx.puts("## Error: Can't overwrite \"ethaddr\"\n## Error inserting \"ethaddr\" variable, errno=1\n").await;
            return Flow::Status(false);
        }
        self.locals.remove(name.as_str());
        if args.len() == 1 {
            self.env.remove(name.as_str());
        } else {
            self.env.insert(name.clone(), args[1..].join(" "));
        }
        Flow::Status(true)
    }

    async fn printenv(&self, ctx: &mut Ctx<'_>, args: &[String]) -> Flow {
        let names: Vec<&String> = args.iter().filter(|a| a.as_str() != "-a").collect();
        if names.is_empty() {
            let mut text = String::new();
            let mut size = 0;
            for (k, v) in &self.env {
                text.push_str(&format!("{k}={v}\n"));
                size += k.len() + v.len() + 2;
            }
            text.push_str(&format!("\nEnvironment size: {}/262140 bytes\n", size + 1));
            ctx.puts(&text).await;
            return Flow::Status(true);
        }
        let mut ok = true;
        let mut text = String::new();
        for n in names {
            match self.env.get(n.as_str()) {
                Some(v) => text.push_str(&format!("{n}={v}\n")),
                None => {
                    text.push_str(&format!("## Error: \"{n}\" not defined\n"));
                    ok = false;
                }
            }
        }
        ctx.puts(&text).await;
        Flow::Status(ok)
    }

    async fn dhcp(&mut self, ctx: &mut Ctx<'_>, args: &[String]) -> Flow {
        let net = &ctx.shared.config.net;
        let (ip, mask, gw, server) = (net.ip, net.netmask, net.gateway, net.dhcp_server);
        ctx.puts("BOOTP broadcast 1\n").await;
        let ms = 1 + (ctx.rng_f64() * 4.0) as u64;
        ctx.sleep_scaled(Duration::from_millis(ms)).await;
        ctx.puts(&format!("DHCP client bound to address {ip} ({ms} ms)\n"))
            .await;
        for (k, v) in [
            ("ipaddr", ip.to_string()),
            ("netmask", mask.to_string()),
            ("gatewayip", gw.to_string()),
            ("dnsip", gw.to_string()),
            ("serverip", server.to_string()),
        ] {
            self.env.insert(k.to_string(), v);
        }
        let autoload = self.var("autoload").unwrap_or_default();
        let no = matches!(autoload.chars().next(), Some('n' | 'N' | 'f' | 'F' | '0'));
        if no && args.is_empty() {
            return Flow::Status(true);
        }
        if args.is_empty() && self.var("bootfile").is_none() {
            let o = ip.octets();
            let name = format!("{:02X}{:02X}{:02X}{:02X}.img", o[0], o[1], o[2], o[3]);
            ctx.puts(&format!("*** Warning: no boot file name; using '{name}'\n"))
                .await;
            let addr = self.var("loadaddr").unwrap_or_else(|| "0x40200000".into());
            return self.tftpboot(ctx, &[addr, name]).await;
        }
        self.tftpboot(ctx, args).await
    }

    async fn tftpboot(&mut self, ctx: &mut Ctx<'_>, args: &[String]) -> Flow {
        let loadaddr = self.hex_var("loadaddr").unwrap_or(0x4020_0000);
        let (addr, spec) = match args {
            [] => (loadaddr, self.var("bootfile").unwrap_or_default()),
            [one] => match parse_hex(one) {
                Some(a) if !one.contains(['/', '.', ':']) => {
                    (a, self.var("bootfile").unwrap_or_default())
                }
                _ => (loadaddr, one.clone()),
            },
            [a, f, ..] => match parse_hex(a) {
                Some(a) => (a, f.clone()),
                None => return self.show_usage(ctx, "tftpboot").await,
            },
        };
        let (server_text, filename) = match spec.split_once(':') {
            Some((ip, f)) if ip.parse::<Ipv4Addr>().is_ok() => {
                (Some(ip.to_string()), f.to_string())
            }
            _ => (self.var("serverip"), spec.clone()),
        };
        let Some(our_ip) = self.var("ipaddr") else {
            ctx.puts("*** ERROR: `ipaddr' not set\n").await;
            return Flow::Status(false);
        };
        let Some(server) = server_text.and_then(|s| s.trim().parse::<Ipv4Addr>().ok()) else {
            ctx.puts("*** ERROR: `serverip' not set\n").await;
            return Flow::Status(false);
        };
        if filename.is_empty() {
            ctx.puts("*** ERROR: no boot file name\n").await;
            return Flow::Status(false);
        }
        let port = ["tftpserverport", "tftpdstp"]
            .iter()
            .find_map(|n| self.var(n).and_then(|v| v.trim().parse::<u16>().ok()))
            .unwrap_or(ctx.shared.config.net.tftp_port);
        let blksize = match self.var("tftpblocksize") {
            Some(v) => v.trim().parse::<u16>().ok().filter(|b| *b >= 8),
            None => Some(1468),
        };
        let timeout_ms = self
            .var("tftptimeout")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|v| *v >= 10)
            .unwrap_or(5000);
        let max_timeouts = self
            .var("tftptimeoutcountmax")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(10);
        let netretry = self.var("netretry").unwrap_or_default();
        let mut retries_left: Option<u32> = match netretry.as_str() {
            "no" => Some(0),
            "once" => Some(1),
            _ => None,
        };
        let ethact = self.var("ethact").unwrap_or_else(|| "eth0".into());
        let max_size = self.memory.loadable(addr);
        loop {
            ctx.puts(&format!(
                "Using {ethact} device\nTFTP from server {server}; our IP address is {our_ip}\nFilename '{filename}'.\nLoad address: 0x{addr:x}\nLoading: *\x08"
            ))
            .await;
            if max_size == 0 {
                ctx.puts("\nTFTP error: trying to overwrite reserved memory...\n")
                    .await;
                return Flow::Status(false);
            }
            let req = tftp::Request {
                server: SocketAddrV4::new(server, port),
                filename: filename.clone(),
                blksize,
                timeout: Duration::from_millis(timeout_ms),
                max_timeouts,
                max_size,
            };
            let started = Instant::now();
            let mut shown: u64 = 0;
            let (tx, mut rx) = mpsc::channel(1024);
            let mut task = tokio::spawn(tftp::fetch(req, tx));
            let result = loop {
                tokio::select! {
                    r = &mut task => {
                        // Print what is still queued before the result.
                        while let Ok(e) = rx.try_recv() {
                            print_event(ctx, &e, &mut shown).await;
                        }
                        break match r {
                            Ok(r) => r,
                            Err(e) => Err(TftpError::Io(e.to_string())),
                        };
                    }
                    Some(e) = rx.recv() => print_event(ctx, &e, &mut shown).await,
                    b = ctx.input.byte() => {
                        if b == Some(0x03) {
                            task.abort();
                            ctx.puts("\nAbort\n").await;
                            return Flow::Status(false);
                        }
                    }
                }
            };
            match result {
                Ok(data) => {
                    let ms = started.elapsed().as_millis() as u64;
                    let n = data.len() as u64;
                    let mut text = String::new();
                    if let Some(per_ms) = n.checked_div(ms) {
                        text.push_str(&format!("\n\t {}/s", print_size(per_ms * 1000)));
                    }
                    text.push_str(&format!("\ndone\nBytes transferred = {n} ({n:x} hex)\n"));
                    ctx.puts(&text).await;
                    self.memory.store(addr, data);
                    self.env.insert("filesize".into(), format!("{n:x}"));
                    self.env.insert("fileaddr".into(), format!("{addr:x}"));
                    return Flow::Status(true);
                }
                Err(TftpError::Server { code, message }) => {
                    ctx.puts(&format!(
                        "\nTFTP error: '{message}' ({code})\nNot retrying...\n"
                    ))
                    .await;
                    return Flow::Status(false);
                }
                Err(TftpError::TooBig { .. }) => {
                    ctx.puts("\nTFTP error: trying to overwrite reserved memory...\n")
                        .await;
                    return Flow::Status(false);
                }
                Err(TftpError::Timeout) => {
                    ctx.puts("\nRetry count exceeded; starting again\n").await;
                    match retries_left.as_mut() {
                        Some(0) => return Flow::Status(false),
                        Some(n) => *n -= 1,
                        None => {}
                    }
                }
                Err(e) => {
                    ctx.puts(&format!("\n{e}\n")).await;
                    return Flow::Status(false);
                }
            }
        }
    }

    async fn boot_kernel(&mut self, ctx: &mut Ctx<'_>, cmd: &str, args: &[String]) -> Flow {
        let strict = ctx.shared.config.strict_images;
        let kernel_addr = match args.first() {
            Some(a) => match parse_hex(a) {
                Some(v) => v,
                None => return self.show_usage(ctx, cmd).await,
            },
            None => self.hex_var("loadaddr").unwrap_or(0x4020_0000),
        };
        let kernel = self.memory.at(kernel_addr);
        let bad_kernel = match (cmd, kernel) {
            (_, None) => true,
            ("booti", Some(k)) => strict && k.get(0x38..0x3c) != Some(&ARM64_MAGIC[..]),
            ("bootz", Some(k)) => strict && le32(k, 0x24) != Some(ZIMAGE_MAGIC),
            (_, Some(k)) => strict && be32(k, 0) != Some(UIMAGE_MAGIC),
        };
        if bad_kernel {
            let msg = match cmd {
                "booti" => "Bad Linux ARM64 Image magic!\n",
                "bootz" => "Bad Linux ARM zImage magic!\n",
                _ => "Wrong Image Format for bootm command\nERROR: can't get kernel image!\n",
            };
            ctx.puts(msg).await;
            return Flow::Status(false);
        }
        let mut text = String::new();
        if cmd == "bootm" && kernel.and_then(|k| be32(k, 0)) == Some(UIMAGE_MAGIC) {
            text.push_str(&format!(
                "## Booting kernel from Legacy Image at {kernel_addr:08x} ...\n   Verifying Checksum ... OK\n"
            ));
        }
        // initrd: "-" for none, "addr:size" for a raw one.
        let mut ramdisk: Option<(u64, u64)> = None;
        if let Some(rd) = args.get(1).filter(|a| a.as_str() != "-") {
            let (a, size) = match rd.split_once(':') {
                Some((a, s)) => (parse_hex(a), Some(parse_hex(s))),
                None => (parse_hex(rd), None),
            };
            let loaded = a.and_then(|a| self.memory.at(a).map(|d| (a, d)));
            let ok = match (loaded, size) {
                (None, _) | (_, Some(None)) => None,
                (Some((a, _)), Some(Some(s))) => Some((a, s)),
                (Some((a, d)), None) => {
                    if strict && be32(d, 0) != Some(UIMAGE_MAGIC) {
                        None
                    } else {
                        Some((a, d.len() as u64))
                    }
                }
            };
            match ok {
                Some(r) => ramdisk = Some(r),
                None => {
                    ctx.puts(&format!(
                        "{text}Wrong Ramdisk Image Format\nRamdisk image is corrupt or invalid\n"
                    ))
                    .await;
                    return Flow::Status(false);
                }
            }
        }
        let fdt_addr = match args.get(2) {
            Some(a) => parse_hex(a),
            None => self.hex_var("fdtcontroladdr"),
        };
        let fdt_ok = fdt_addr
            .and_then(|a| self.memory.at(a))
            .is_some_and(|d| !strict || be32(d, 0) == Some(FDT_MAGIC));
        let Some(fdt_addr) = fdt_addr.filter(|_| fdt_ok) else {
            ctx.puts(&format!("{text}ERROR: Did not find a cmdline Flattened Device Tree\nCould not find a valid device tree\n")).await;
            return Flow::Status(false);
        };
        text.push_str(&format!(
            "## Flattened Device Tree blob at {fdt_addr:08x}\n   Booting using the fdt blob at 0x{fdt_addr:x}\nWorking FDT set to {fdt_addr:x}\n"
        ));
        let mut below: u64 = 0x7ddaf000;
        if let Some((_, size)) = ramdisk {
            let start = (below - size) & !0xfff;
            text.push_str(&format!(
                "   Loading Ramdisk to {start:08x}, end {:08x} ... OK\n",
                start + size
            ));
            below = start;
        }
        let dt_start = below - 0x103000;
        text.push_str(&format!(
            "   Loading Device Tree to {dt_start:016x}, end {:016x} ... OK\nWorking FDT set to {dt_start:x}\n\nStarting kernel ...\n\n",
            below - 1
        ));
        ctx.puts(&text).await;
        if let Some((addr, size)) = ramdisk {
            if let Some(data) = self.memory.at(addr) {
                let n = usize::try_from(size).unwrap_or(usize::MAX).min(data.len());
                ctx.run.set_ramdisk(data[..n].to_vec());
            }
        }
        Flow::Boot
    }
}

/// U-Boot's progress marks (no `tsize`): a `#` every 10 blocks, a new line every 650.
/// `shown` is the last block accounted for (events may be coalesced).
async fn print_event(ctx: &mut Ctx<'_>, e: &Event, shown: &mut u64) {
    match e {
        Event::Block { block, .. } => {
            let mut marks = String::new();
            while *shown < *block {
                *shown += 1;
                let b = *shown;
                if (b - 1).is_multiple_of(10) {
                    marks.push('#');
                } else if b.is_multiple_of(10 * 65) {
                    marks.push_str("\n\t ");
                }
            }
            if !marks.is_empty() {
                ctx.puts(&marks).await;
            }
        }
        Event::Timeout => ctx.puts("T ").await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(n: &str) -> Option<String> {
        match n {
            "a" => Some("1".into()),
            "sp" => Some("x  y".into()),
            "kernel_addr_r" => Some("0x40400000".into()),
            _ => None,
        }
    }

    #[test]
    fn split() {
        assert_eq!(
            split_commands("setenv a 1; echo ${a};;  "),
            vec!["setenv a 1", " echo ${a}"]
        );
        assert_eq!(
            split_commands("setenv bootargs 'a;b'; echo \"x;y\"; echo a\\;b"),
            vec!["setenv bootargs 'a;b'", " echo \"x;y\"", " echo a\\;b"]
        );
    }

    #[test]
    fn words() {
        assert_eq!(tokenize("echo ${a} $a", &lookup), vec!["echo", "1", "1"]);
        assert_eq!(tokenize("echo '${a}'", &lookup), vec!["echo", "${a}"]);
        assert_eq!(
            tokenize("echo \"<${sp}>\"", &lookup),
            vec!["echo", "<x  y>"]
        );
        assert_eq!(tokenize("echo ${sp}", &lookup), vec!["echo", "x", "y"]);
        assert_eq!(tokenize("echo ${none} z", &lookup), vec!["echo", "z"]);
        assert_eq!(tokenize("echo ''", &lookup), vec!["echo", ""]);
        assert_eq!(tokenize("echo a\\ b $", &lookup), vec!["echo", "a b", "$"]);
        assert_eq!(
            tokenize(
                "setenv bootargs 'console=ttyAMA0,115200n8 root=/dev/ram0'",
                &lookup
            ),
            vec![
                "setenv",
                "bootargs",
                "console=ttyAMA0,115200n8 root=/dev/ram0"
            ]
        );
        assert_eq!(
            tokenize("booti ${kernel_addr_r} 0x44000000:${a} x", &lookup),
            vec!["booti", "0x40400000", "0x44000000:1", "x"]
        );
    }

    #[test]
    fn commands() {
        assert_eq!(find_command("tftp"), Some("tftpboot"));
        assert_eq!(find_command("printe"), Some("printenv"));
        assert_eq!(find_command("md.b"), None);
        assert_eq!(find_command("boot"), Some("boot"));
        assert_eq!(find_command("s"), None); // saveenv, setenv, sleep
        assert_eq!(find_command("se"), Some("setenv"));
        assert_eq!(find_command("x"), None);
        assert_eq!(parse_hex("0x40400000"), Some(0x4040_0000));
        assert_eq!(parse_hex("f1018"), Some(0xf1018));
        assert_eq!(parse_hex("zz"), None);
    }
}
