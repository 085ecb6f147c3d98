//! The LAVA V2 job definition as a typed model.
//!
//! `parse` turns a YAML tree into a [`Job`], reporting every problem with its position; what
//! basalt does not know is kept (as YAML nodes or `Other` variants) and reported as a warning,
//! never silently dropped.

pub mod parse;
pub mod qemu_args;
pub mod testdef;
pub mod timeout;

pub use parse::{parse_job, parse_job_as, parse_job_file, parse_job_file_as, JobError, Reading};
pub use timeout::Timeout;

use crate::yaml::{Mark, Node};
use std::collections::BTreeMap;

/// A whole job definition.
#[derive(Clone, Debug)]
pub struct Job {
    pub job_name: String,
    pub device_type: Option<String>,
    pub device: Option<String>,
    pub worker: Option<String>,
    pub timeouts: JobTimeouts,
    pub visibility: Visibility,
    pub priority: u8,
    /// Variables passed to the device-type template render (LAVA's `CONTEXT_VARIABLES`).
    pub context: BTreeMap<String, Node>,
    pub metadata: Option<Node>,
    pub tags: Vec<String>,
    pub secrets: Vec<(String, String)>,
    pub environment: Option<Node>,
    pub multinode: Option<Multinode>,
    pub notify: Option<Node>,
    pub reboot_to_fastboot: bool,
    pub actions: Vec<ActionBlock>,
}

/// `timeouts:` at the top of a job.
#[derive(Clone, Debug, Default)]
pub struct JobTimeouts {
    pub job: Option<Timeout>,
    /// Default for every action.
    pub action: Option<Timeout>,
    /// Per action name (`lava-test-shell`, `auto-login-action`, ...).
    pub actions: BTreeMap<String, Timeout>,
    pub connection: Option<Timeout>,
    pub connections: BTreeMap<String, Timeout>,
    pub queue: Option<Timeout>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Visibility {
    Public,
    Personal,
    Group(Vec<String>),
}

/// The `lava-multinode` protocol block: a submission (`roles`) or a sub-job (`role`).
#[derive(Clone, Debug)]
pub struct Multinode {
    pub roles: Vec<(String, Node)>,
    pub role: Option<String>,
    pub target_group: Option<String>,
    pub timeout: Option<Timeout>,
    pub node: Node,
}

/// Keys every action block may carry.
#[derive(Clone, Debug, Default)]
pub struct Common {
    pub namespace: Option<String>,
    pub connection_namespace: Option<String>,
    pub role: Vec<String>,
    /// The block's own `timeout:` (applies to the block's top action and, by inheritance, children).
    pub timeout: Option<Timeout>,
    /// `timeouts: {action-name: t}` inside the block: the highest precedence.
    pub timeouts: BTreeMap<String, Timeout>,
    pub repeat: Option<u32>,
    pub failure_retry: Option<u32>,
    pub failure_retry_interval: Option<u32>,
    /// Protocol calls made by named actions of this block.
    pub protocols: Option<Node>,
    /// Where the block starts in the file.
    pub mark: Mark,
    /// The block's entry in `actions:` (one entry may hold several blocks).
    pub index: usize,
}

/// One entry of `actions:`.
#[derive(Clone, Debug)]
pub enum ActionBlock {
    Deploy(Deploy),
    Boot(Boot),
    Test(Test),
    Command(Command),
}

impl ActionBlock {
    pub fn common(&self) -> &Common {
        match self {
            ActionBlock::Deploy(d) => &d.common,
            ActionBlock::Boot(b) => &b.common,
            ActionBlock::Test(t) => &t.common,
            ActionBlock::Command(c) => &c.common,
        }
    }

    pub fn common_mut(&mut self) -> &mut Common {
        match self {
            ActionBlock::Deploy(d) => &mut d.common,
            ActionBlock::Boot(b) => &mut b.common,
            ActionBlock::Test(t) => &mut t.common,
            ActionBlock::Command(c) => &mut c.common,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ActionBlock::Deploy(_) => "deploy",
            ActionBlock::Boot(_) => "boot",
            ActionBlock::Test(_) => "test",
            ActionBlock::Command(_) => "command",
        }
    }
}

/// A downloadable file: `{url, compression, md5sum, sha256sum, ...}`.
#[derive(Clone, Debug, Default)]
pub struct ImageRef {
    pub url: String,
    pub compression: Option<Compression>,
    pub archive: Option<String>,
    pub md5sum: Option<String>,
    pub sha256sum: Option<String>,
    pub sha512sum: Option<String>,
    /// For tmpfs images: the QEMU argument, with `{label}` replaced by the downloaded path.
    pub image_arg: Option<String>,
    pub format: Option<String>,
    pub headers: Vec<(String, String)>,
    /// tftp kernel `type:` (image, uimage, zimage).
    pub kernel_type: Option<KernelType>,
    /// tftp ramdisk `header: u-boot`.
    pub header: Option<String>,
    pub install_modules: Option<bool>,
    pub install_overlay: Option<bool>,
    pub prefix: Option<String>,
    /// `overlays: {lava: true, ...}` (qcow2/cpio images that receive the test overlay).
    pub overlays: Option<Node>,
    pub partition: Option<i64>,
    pub root_partition: Option<i64>,
    pub mark: Mark,
}

impl ImageRef {
    /// Whether `overlays: {lava: true}` is set on this image.
    pub fn lava_overlay(&self) -> bool {
        self.overlays
            .as_ref()
            .and_then(|o| o.get("lava"))
            .and_then(Node::as_bool)
            .unwrap_or(false)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gz,
    Xz,
    Bz2,
    Zstd,
    Zip,
}

impl Compression {
    pub const NAMES: [&'static str; 5] = ["gz", "xz", "bz2", "zstd", "zip"];

    pub fn from_name(s: &str) -> Option<Compression> {
        Some(match s {
            "gz" => Compression::Gz,
            "xz" => Compression::Xz,
            "bz2" => Compression::Bz2,
            "zstd" => Compression::Zstd,
            "zip" => Compression::Zip,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelType {
    Image,
    UImage,
    ZImage,
}

impl KernelType {
    /// The U-Boot command that boots this kernel type.
    pub fn bootx(self) -> &'static str {
        match self {
            KernelType::Image => "booti",
            KernelType::UImage => "bootm",
            KernelType::ZImage => "bootz",
        }
    }
}

/// A `deploy:` block.
#[derive(Clone, Debug)]
pub struct Deploy {
    pub common: Common,
    pub to: DeployTo,
    pub os: Option<String>,
    /// Images by label in file order (tmpfs `images`, tftp `kernel`/`ramdisk`/`dtb`/...).
    pub images: Vec<(String, ImageRef)>,
    pub authorize: Option<String>,
    /// tftp `persistent_nfs: {address: "host:/path"}`.
    pub persistent_nfs: Option<Node>,
    /// usb/sata: the media label from the device's `parameters.media`.
    pub media_device: Option<String>,
    /// usb/sata `download:` / `writer:` tools.
    pub download_tool: Option<Node>,
    pub writer: Option<Node>,
    /// tmpfs `type: monitor`: no test overlay (Zephyr-like boards).
    pub monitor: bool,
    pub node: Node,
}

/// Where a deploy puts its images (`to:`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeployTo {
    Tmpfs,
    Tftp,
    Nfs,
    Usb,
    Sata,
    Overlay,
    /// A LAVA strategy basalt does not implement (kept for the report).
    Other(String),
}

impl DeployTo {
    pub const IN_SCOPE: [&'static str; 6] = ["tmpfs", "tftp", "nfs", "usb", "sata", "overlay"];

    pub fn name(&self) -> &str {
        match self {
            DeployTo::Tmpfs => "tmpfs",
            DeployTo::Tftp => "tftp",
            DeployTo::Nfs => "nfs",
            DeployTo::Usb => "usb",
            DeployTo::Sata => "sata",
            DeployTo::Overlay => "overlay",
            DeployTo::Other(s) => s,
        }
    }
}

/// `auto_login:` of a boot block.
#[derive(Clone, Debug)]
pub struct AutoLogin {
    pub login_prompt: String,
    pub username: String,
    pub password_prompt: Option<String>,
    pub password: Option<String>,
    pub login_commands: Vec<String>,
}

/// `commands:` of a u-boot boot: a named list from the device or an inline list.
#[derive(Clone, Debug)]
pub enum BootCommands {
    Named(String),
    Inline(Vec<String>),
}

/// A `boot:` block.
#[derive(Clone, Debug)]
pub struct Boot {
    pub common: Common,
    pub method: BootMethod,
    pub media: Option<String>,
    pub connection: Option<String>,
    pub prompts: Vec<String>,
    pub auto_login: Option<AutoLogin>,
    pub commands: Option<BootCommands>,
    pub transfer_overlay: Option<Node>,
    pub kernel_start_message: Option<String>,
    pub bootloader_final_message: Option<String>,
    pub shutdown_message: Option<String>,
    pub soft_reboot: Vec<String>,
    pub ignore_kernel_messages: bool,
    pub reset: Option<bool>,
    /// `method: bootloader`: which bootloader (`u-boot`).
    pub bootloader: Option<String>,
    pub node: Node,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootMethod {
    Qemu,
    QemuNfs,
    UBoot,
    Minimal,
    /// `method: bootloader` (`bootloader: u-boot`): stop at the bootloader prompt, for
    /// interactive tests of the bootloader itself.
    Bootloader,
    Other(String),
}

impl BootMethod {
    pub const IN_SCOPE: [&'static str; 5] = ["qemu", "qemu-nfs", "u-boot", "minimal", "bootloader"];

    pub fn name(&self) -> &str {
        match self {
            BootMethod::Qemu => "qemu",
            BootMethod::QemuNfs => "qemu-nfs",
            BootMethod::UBoot => "u-boot",
            BootMethod::Minimal => "minimal",
            BootMethod::Bootloader => "bootloader",
            BootMethod::Other(s) => s,
        }
    }
}

/// A `test:` block: definitions (lava-test-shell), interactive scripts or monitors.
#[derive(Clone, Debug)]
pub struct Test {
    pub common: Common,
    pub kind: TestKind,
    pub node: Node,
}

#[derive(Clone, Debug)]
pub enum TestKind {
    Definitions(Vec<TestDefRef>),
    Interactive(Vec<Interactive>),
    Monitors(Vec<Monitor>),
    /// `docker` / `services` test blocks: outside basalt's scope.
    Other(String),
}

/// Where a test definition comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestFrom {
    Git,
    Inline,
    Url,
}

/// One entry of `definitions:`.
#[derive(Clone, Debug)]
pub struct TestDefRef {
    pub from: TestFrom,
    /// URL of the repository or tarball; for inline definitions, `None`.
    pub repository: Option<String>,
    /// The inline test definition.
    pub inline: Option<Node>,
    pub path: String,
    pub name: String,
    pub branch: Option<String>,
    pub revision: Option<String>,
    pub history: Option<bool>,
    pub shallow: Option<bool>,
    pub parameters: Vec<(String, Node)>,
    pub skip_install: Vec<String>,
    pub lava_signal: Option<String>,
    pub expected: Vec<String>,
    pub compression: Option<Compression>,
    pub mark: Mark,
}

/// One `interactive:` script.
#[derive(Clone, Debug)]
pub struct Interactive {
    pub name: String,
    pub prompts: Vec<String>,
    pub echo_discard: bool,
    pub script: Vec<InteractiveStep>,
}

#[derive(Clone, Debug)]
pub struct InteractiveStep {
    pub name: Option<String>,
    pub command: Option<String>,
    pub delay: Option<u64>,
    pub wait_for_prompt: bool,
    pub successes: Vec<String>,
    pub failures: Vec<InteractiveFailure>,
}

/// A message that fails an interactive step; with `exception`, it also ends the test action
/// with that error class and the `error` text.
#[derive(Clone, Debug)]
pub struct InteractiveFailure {
    pub message: String,
    pub exception: Option<String>,
    pub error: Option<String>,
}

/// One `monitors:` entry: watch raw console output between `start` and `end`.
#[derive(Clone, Debug)]
pub struct Monitor {
    pub name: String,
    pub start: String,
    pub end: String,
    pub pattern: String,
    pub fixupdict: Vec<(String, String)>,
}

/// A `command:` block: run a device `commands.users.<name>` on the worker.
#[derive(Clone, Debug)]
pub struct Command {
    pub common: Common,
    pub name: String,
}
