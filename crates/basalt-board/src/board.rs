//! The board: configuration, power, and the boot flow from power-on to the shell.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::endpoint::{ConsoleMode, Endpoint, EndpointCmd};
use super::fault::{Fault, Faults, Phase};
use super::line::{Input, Uart};
use super::linux::{self, ShellEnd};
use super::player::{self, kmsg_stamp, Outcome};
use super::procs;
use super::script::Script;
use super::uboot::{Flow, UBoot, UBOOT_VERSION};
use super::SimError;

/// The simulated network, as the board's `dhcp` sees it.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The address `dhcp` gives the board (`ipaddr`).
    pub ip: Ipv4Addr,
    /// `netmask`.
    pub netmask: Ipv4Addr,
    /// `gatewayip` and `dnsip`.
    pub gateway: Ipv4Addr,
    /// The server address `dhcp` hands out (`serverip`): where `tftpboot` fetches from
    /// until `serverip` is set otherwise. Use an address of this machine.
    pub dhcp_server: Ipv4Addr,
    /// The TFTP server port when neither `tftpserverport` nor `tftpdstp` is set.
    pub tftp_port: u16,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            ip: Ipv4Addr::new(10, 0, 2, 15),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            gateway: Ipv4Addr::new(10, 0, 2, 2),
            dhcp_server: Ipv4Addr::LOCALHOST,
            tftp_port: 69,
        }
    }
}

/// A login prompt before the shell.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// The user name to type at `login:`.
    pub user: String,
    /// The password to type at `Password:`; `None`: no password prompt.
    pub password: Option<String>,
    /// Echo the password back (a console with echo on), once it is typed, one character
    /// every this long: a slow console whose echo arrives in pieces. `None`: no echo.
    pub echo_password: Option<Duration>,
}

/// Everything a simulated board needs to know.
#[derive(Debug, Clone)]
pub struct BoardConfig {
    /// Where the console is served.
    pub console: ConsoleMode,
    /// The control socket, if any.
    pub control: Option<PathBuf>,
    /// Power on at start.
    pub power_on: bool,
    /// A U-Boot script file instead of the built-in one.
    pub uboot_script: Option<PathBuf>,
    /// A Linux boot log script file instead of the built-in one.
    pub linux_script: Option<PathBuf>,
    /// Multiplies every `delay`, `jitter` and `sleep` (0: as fast as possible).
    pub speed: f64,
    /// `bootdelay` (seconds of the autoboot window); `None`: the default, 2.
    pub bootdelay: Option<i64>,
    /// `bootcmd`; `None`: boot the stand-in kernel in flash.
    pub bootcmd: Option<String>,
    /// Extra U-Boot environment (`name`, `value`); an empty value removes the variable.
    pub env: Vec<(String, String)>,
    /// The network `dhcp` simulates.
    pub net: NetConfig,
    /// `ethaddr`.
    pub mac: String,
    /// Host name shown at the login prompt.
    pub hostname: String,
    /// The kernel release shown in the boot log.
    pub kernel_release: String,
    /// A login prompt before the shell; `None`: straight to the shell.
    pub login: Option<LoginConfig>,
    /// The shell prompt (`PS1`).
    pub prompt: String,
    /// The shell to run (`-i` is passed).
    pub shell: PathBuf,
    /// Where the per-boot private directories are made (default: the system temp dir).
    pub root_base: Option<PathBuf>,
    /// Faults in force from the start.
    pub faults: Vec<Fault>,
    /// Check image magics in `booti`/`bootz`/`bootm` (arm64 Image, zImage, uImage, FDT).
    pub strict_images: bool,
}

impl BoardConfig {
    /// The defaults, with the console at `console`.
    pub fn new(console: ConsoleMode) -> Self {
        BoardConfig {
            console,
            control: None,
            power_on: false,
            uboot_script: None,
            linux_script: None,
            speed: 1.0,
            bootdelay: None,
            bootcmd: None,
            env: Vec::new(),
            net: NetConfig::default(),
            mac: "52:54:00:12:34:56".to_string(),
            hostname: "basalt".to_string(),
            kernel_release: "6.1.0-basalt-arm64".to_string(),
            login: None,
            prompt: "/ # ".to_string(),
            shell: PathBuf::from("/bin/sh"),
            root_base: None,
            faults: Vec::new(),
            strict_images: false,
        }
    }
}

/// The scripts a board plays.
pub(crate) struct Scripts {
    pub uboot: Script,
    pub linux: Script,
}

impl Scripts {
    pub fn load(config: &BoardConfig) -> Result<Scripts, SimError> {
        let uboot = match &config.uboot_script {
            Some(p) => Script::from_file(p)?,
            None => Script::builtin("uboot.yaml")?,
        };
        let linux = match &config.linux_script {
            Some(p) => Script::from_file(p)?,
            None => Script::builtin("linux.yaml")?,
        };
        Ok(Scripts { uboot, linux })
    }
}

/// What lives as long as the board process.
pub(crate) struct Shared {
    pub config: BoardConfig,
    pub uart: Arc<Uart>,
    pub faults: Arc<Faults>,
    pub input: tokio::sync::Mutex<Input>,
    pub endpoint: mpsc::Sender<EndpointCmd>,
    pub scripts: Scripts,
    phase: Mutex<Option<&'static str>>,
    power: tokio::sync::Mutex<Power>,
}

enum Power {
    Off,
    On { task: JoinHandle<()>, run: Arc<Run> },
}

/// What lives as long as one power-on.
pub(crate) struct Run {
    /// The shell and its pid (= its session id), while one runs.
    pub shell: tokio::sync::Mutex<Option<(Child, i32)>>,
    root: Mutex<Option<tempfile::TempDir>>,
    /// The ramdisk the boot command handed to the kernel, unpacked when the shell starts.
    ramdisk: Mutex<Option<Vec<u8>>>,
}

impl Run {
    fn new() -> Self {
        Run {
            shell: tokio::sync::Mutex::new(None),
            root: Mutex::new(None),
            ramdisk: Mutex::new(None),
        }
    }

    /// Remembers the ramdisk of the boot command.
    pub fn set_ramdisk(&self, data: Vec<u8>) {
        *self.ramdisk.lock().unwrap_or_else(|e| e.into_inner()) = Some(data);
    }

    /// The ramdisk of the boot command, once.
    pub fn take_ramdisk(&self) -> Option<Vec<u8>> {
        self.ramdisk
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The boot's private directory, made on first use.
    pub fn root_dir(&self, config: &BoardConfig) -> Result<PathBuf, SimError> {
        let mut root = self.root.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = root.as_ref() {
            return Ok(d.path().to_path_buf());
        }
        let mut b = tempfile::Builder::new();
        b.prefix("basalt-board-");
        let dir = match &config.root_base {
            Some(base) => b.tempdir_in(base),
            None => b.tempdir(),
        }
        .map_err(|source| SimError::Shell {
            what: "private directory".into(),
            source,
        })?;
        let path = dir.path().to_path_buf();
        *root = Some(dir);
        Ok(path)
    }

    /// Stores the shell just spawned (no await between spawn and this).
    pub fn register_shell(&self, child: Child, pid: i32) -> bool {
        match self.shell.try_lock() {
            Ok(mut slot) => {
                *slot = Some((child, pid));
                true
            }
            Err(_) => false,
        }
    }

    /// Kills the shell's session and removes the private directory.
    async fn clean(&self) {
        let mut slot = self.shell.lock().await;
        if let Some((child, pid)) = slot.as_mut() {
            let pids = procs::kill_session(*pid, Duration::from_secs(2)).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            procs::reap(&pids, Some(*pid), Duration::from_secs(2)).await;
        }
        *slot = None;
        drop(slot);
        let dir = self.root.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(dir) = dir {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                eprintln!("basalt-board: cannot remove {}: {e}", path.display());
            }
        }
    }
}

/// The boot's view of the board.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub run: Arc<Run>,
    pub input: &'a mut Input,
    /// "Starting kernel" time, for kernel log timestamps.
    pub kernel_epoch: Instant,
    rng: fastrand::Rng,
}

impl Ctx<'_> {
    /// Writes text (`\n` → `\r\n`).
    pub async fn puts(&self, text: &str) {
        self.shared.uart.puts(text).await;
    }

    /// Sleeps `d` times the speed factor.
    pub async fn sleep_scaled(&self, d: Duration) {
        let s = self.shared.config.speed;
        if s > 0.0 && !d.is_zero() {
            tokio::time::sleep(d.mul_f64(s)).await;
        }
    }

    /// A random number in 0..1.
    pub fn rng_f64(&mut self) -> f64 {
        self.rng.f64()
    }

    /// The boot reaches `phase`: a console drop or a hang may be due here.
    pub async fn enter(&mut self, phase: Phase) {
        self.shared.set_phase(Some(phase.name()));
        if let Some(d) = self.shared.faults.take_drop_at(phase) {
            let _ = self.shared.endpoint.send(EndpointCmd::Drop(d, None)).await;
        }
        if self.shared.faults.snapshot().hang_at == Some(phase) {
            eprintln!("basalt-board: hanging at {phase} (fault)");
            self.halt().await;
        }
    }

    /// Stops for good: nothing more is printed, input is swallowed (until power off).
    pub async fn halt(&mut self) {
        loop {
            if self.input.chunk().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Shared {
    fn set_phase(&self, phase: Option<&'static str>) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    /// The current phase name, `off` when off.
    pub fn phase(&self) -> &'static str {
        self.phase
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or("off")
    }

    /// Whether the board is on.
    pub async fn is_on(&self) -> bool {
        matches!(*self.power.lock().await, Power::On { .. })
    }

    /// Powers on (no effect when already on).
    pub async fn power_on(self: &Arc<Self>) {
        let mut power = self.power.lock().await;
        if matches!(*power, Power::On { .. }) {
            return;
        }
        self.uart.set_powered(true);
        let run = Arc::new(Run::new());
        let task = tokio::spawn(boot(self.clone(), run.clone()));
        *power = Power::On { task, run };
        eprintln!("basalt-board: power on");
    }

    /// Powers off: stops the boot, kills the shell's session, removes the private
    /// directory. Returns when all of that is done.
    pub async fn power_off(&self) {
        let mut power = self.power.lock().await;
        let Power::On { task, run } = std::mem::replace(&mut *power, Power::Off) else {
            return;
        };
        self.uart.set_powered(false);
        task.abort();
        let _ = task.await;
        run.clean().await;
        self.set_phase(None);
        eprintln!("basalt-board: power off");
    }

    /// Off, then on.
    pub async fn reset(self: &Arc<Self>) {
        self.power_off().await;
        self.power_on().await;
    }

    /// Applies a fault; an immediate console drop has happened when this returns.
    pub async fn apply_fault(&self, fault: &Fault) {
        if let Some(d) = self.faults.apply(fault) {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if self
                .endpoint
                .send(EndpointCmd::Drop(d, Some(tx)))
                .await
                .is_ok()
            {
                let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
            }
        }
    }

    /// Prints kernel-style lines on the console (used for `reboot` from the shell).
    pub async fn kernel_say(&self, text: &str) {
        if self.is_on().await {
            self.uart.puts(text).await;
        }
    }
}

/// The boot task of one power-on.
async fn boot(shared: Arc<Shared>, run: Arc<Run>) {
    let mut input = shared.input.lock().await;
    input.drain();
    let mut ctx = Ctx {
        shared: &shared,
        run: run.clone(),
        input: &mut input,
        kernel_epoch: Instant::now(),
        rng: fastrand::Rng::new(),
    };
    loop {
        match boot_once(&mut ctx).await {
            Ok(Next::Reset) => {
                run.clean().await;
                eprintln!("basalt-board: reset");
            }
            Ok(Next::Halt) => {
                ctx.halt().await;
            }
            Err(e) => {
                eprintln!("basalt-board: {e}");
                ctx.puts(&format!(
                    "\n{}basalt-board: {e}\n",
                    kmsg_stamp(ctx.kernel_epoch)
                ))
                .await;
                ctx.halt().await;
            }
        }
    }
}

enum Next {
    Reset,
    Halt,
}

async fn boot_once(ctx: &mut Ctx<'_>) -> Result<Next, SimError> {
    let shared = ctx.shared;
    let config = &shared.config;
    ctx.enter(Phase::Uboot).await;
    let mut uboot = UBoot::new(config);
    let extra = |uboot: &UBoot, name: &str| -> Option<String> {
        match name {
            "uboot_version" => Some(UBOOT_VERSION.to_string()),
            "hostname" => Some(config.hostname.clone()),
            "kernel_release" => Some(config.kernel_release.clone()),
            // The kernel command line is empty when U-Boot passes no bootargs.
            "bootargs" => Some(uboot.var(name).unwrap_or_default()),
            _ => uboot.var(name),
        }
    };

    // U-Boot: banner and autoboot window.
    let outcome = {
        let lookup = |n: &str| extra(&uboot, n);
        player::play(ctx, &shared.scripts.uboot, &lookup, None).await
    };
    let mut flow = Flow::Status(false);
    if outcome != Outcome::Interrupted {
        if let Some(cmd) = uboot.var("bootcmd") {
            flow = uboot.run_line(ctx, &cmd, 0).await;
        }
    }
    if matches!(flow, Flow::Status(_)) {
        flow = uboot.prompt(ctx).await;
    }
    if flow == Flow::Reset {
        return Ok(Next::Reset);
    }

    // Linux.
    ctx.kernel_epoch = Instant::now();
    ctx.enter(Phase::Kernel).await;
    let panic = shared.faults.snapshot().panic;
    let stop = panic.as_ref().map(|_| "panic");
    {
        let lookup = |n: &str| extra(&uboot, n);
        player::play(ctx, &shared.scripts.linux, &lookup, stop).await;
    }
    if let Some(message) = panic {
        kernel_panic(ctx, &message).await;
        return Ok(Next::Halt);
    }
    ctx.enter(Phase::Login).await;
    loop {
        if let Some(l) = &config.login {
            linux::login(ctx, l).await;
        }
        ctx.enter(Phase::Shell).await;
        match linux::run_shell(ctx).await? {
            ShellEnd::Exited => {}
        }
    }
}

/// Prints a kernel panic as arm64 Linux does.
async fn kernel_panic(ctx: &mut Ctx<'_>, message: &str) {
    let release = ctx.shared.config.kernel_release.clone();
    let lines = [
        format!("Kernel panic - not syncing: {message}"),
        format!("CPU: 0 PID: 1 Comm: swapper/0 Not tainted {release} #1  Debian 6.1.0-basalt"),
        "Hardware name: linux,dummy-virt (DT)".to_string(),
        "Call trace:".to_string(),
        " dump_backtrace+0xe4/0x140".to_string(),
        " show_stack+0x20/0x30".to_string(),
        " dump_stack_lvl+0x64/0x80".to_string(),
        " dump_stack+0x18/0x34".to_string(),
        " panic+0x18c/0x370".to_string(),
        " mount_block_root+0x1e8/0x208".to_string(),
        " prepare_namespace+0x138/0x178".to_string(),
        " kernel_init_freeable+0x28c/0x2b8".to_string(),
        " kernel_init+0x2c/0x150".to_string(),
        " ret_from_fork+0x10/0x20".to_string(),
        "Kernel Offset: 0x3a1c6e800000 from 0xffff800008000000".to_string(),
        "PHYS_OFFSET: 0xffffd6a7c0000000".to_string(),
        "CPU features: 0x00000,00800084,0000421b".to_string(),
        "Memory Limit: none".to_string(),
        format!("---[ end Kernel panic - not syncing: {message} ]---"),
    ];
    let mut text = String::new();
    for l in lines {
        text.push_str(&kmsg_stamp(ctx.kernel_epoch));
        text.push_str(&l);
        text.push('\n');
    }
    ctx.puts(&text).await;
    eprintln!("basalt-board: kernel panic (fault)");
}

/// A running board: console endpoint, shared state.
pub(crate) struct Board {
    pub shared: Arc<Shared>,
    pub endpoint: Endpoint,
}

impl Board {
    /// Loads the scripts, opens the console endpoint, applies the initial faults.
    pub async fn start(config: BoardConfig) -> Result<Board, SimError> {
        let scripts = Scripts::load(&config)?;
        let faults = Arc::new(Faults::default());
        let uart = Arc::new(Uart::new(faults.clone()));
        let (input_tx, input_rx) = mpsc::channel(1024);
        let endpoint = Endpoint::start(&config.console, uart.clone(), input_tx).await?;
        let shared = Arc::new(Shared {
            config,
            uart,
            faults,
            input: tokio::sync::Mutex::new(Input::new(input_rx)),
            endpoint: endpoint.cmds.clone(),
            scripts,
            phase: Mutex::new(None),
            power: tokio::sync::Mutex::new(Power::Off),
        });
        for f in shared.config.faults.clone() {
            shared.apply_fault(&f).await;
        }
        Ok(Board { shared, endpoint })
    }

    /// Powers off and removes the console endpoint's file.
    pub async fn shutdown(&self) {
        self.shared.power_off().await;
        self.endpoint.shutdown();
    }
}
