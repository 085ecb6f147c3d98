//! Every action basalt builds, with its LAVA name. Job files refer to these names (per-action
//! timeouts, protocol calls), so they are LAVA's exactly; descriptions are basalt's own words.

/// Which test definition an overlay action works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestDefId {
    /// Index of the test block in the job's `actions`.
    pub block: usize,
    /// Index of the definition in that block's `definitions`.
    pub def: usize,
    /// Running index over every definition of the namespace: the `<idx>` of `<idx>_<name>`.
    pub idx: usize,
}

/// What an action does. `name()` gives LAVA's action name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionKind {
    // deploy
    DeployImages,
    TftpDeploy,
    NfsDeploy,
    DeployQemuNfs,
    QemuNfsDeploy,
    StorageDeploy,
    LavaOverlay,
    SshAuthorize,
    MultinodeOverlay,
    TestDefinition,
    GitRepo(TestDefId),
    InlineRepo(TestDefId),
    UrlRepo(TestDefId),
    TestOverlay(TestDefId),
    TestInstallOverlay(TestDefId),
    TestRunscriptOverlay(TestDefId),
    CompressOverlay,
    DeployDeviceEnv,
    DownloadRetry { key: String },
    HttpDownload { key: String, url: String },
    FileDownload { key: String, url: String },
    AppendOverlays { key: String },
    ApplyOverlayGuest,
    ApplyOverlayTftp,
    ApplyOverlayImage,
    PrepareTftpOverlay,
    ExtractNfsRootfs,
    ParsePersistentNfs,
    ExtractOverlayRamdisk,
    ExtractModules,
    PrepareKernel,
    UbootPrepareKernel,
    ConfigurePreseedFile,
    CompressRamdisk,
    DdImage,
    // boot
    BootImageRetry,
    BootQemuImage,
    ExecuteQemu,
    UbootAction,
    UbootFromMedia,
    BootloaderOverlay,
    ConnectDevice,
    UbootCommands,
    ResetDevice,
    PduReboot,
    SendRebootCommands,
    BootloaderInterrupt,
    BootloaderCommands,
    MinimalBoot,
    BootBootloaderRetry,
    BootBootloader,
    ResetConnection,
    DisconnectDevice,
    PrePowerCommand,
    PreOsCommand,
    AutoLogin,
    LoginAction,
    ExpectShellConnection,
    OverlayUnpack,
    ExportDeviceEnv,
    // test
    TestShellRetry,
    TestShell,
    TestInteractiveRetry,
    TestInteractive,
    TestMonitorRetry,
    TestMonitor,
    MultinodeTest,
    // command
    UserCommand,
    // finalize
    Finalize,
    PowerOff,
    ReadFeedback,
}

impl ActionKind {
    /// LAVA's action name.
    pub fn name(&self) -> &'static str {
        use ActionKind::*;
        match self {
            DeployImages => "deployimages",
            TftpDeploy => "tftp-deploy",
            NfsDeploy => "nfs-deploy",
            DeployQemuNfs => "deploy-qemu-nfs",
            QemuNfsDeploy => "qemu-nfs-deploy",
            StorageDeploy => "storage-deploy",
            LavaOverlay => "lava-overlay",
            SshAuthorize => "ssh-authorize",
            MultinodeOverlay => "lava-multinode-overlay",
            TestDefinition => "test-definition",
            GitRepo(_) => "git-repo-action",
            InlineRepo(_) => "inline-repo-action",
            UrlRepo(_) => "url-repo-action",
            TestOverlay(_) => "test-overlay",
            TestInstallOverlay(_) => "test-install-overlay",
            TestRunscriptOverlay(_) => "test-runscript-overlay",
            CompressOverlay => "compress-overlay",
            DeployDeviceEnv => "deploy-device-env",
            DownloadRetry { .. } => "download-retry",
            HttpDownload { .. } => "http-download",
            FileDownload { .. } => "file-download",
            AppendOverlays { .. } => "append-overlays",
            ApplyOverlayGuest => "apply-overlay-guest",
            ApplyOverlayTftp => "apply-overlay-tftp",
            ApplyOverlayImage => "apply-overlay-image",
            PrepareTftpOverlay => "prepare-tftp-overlay",
            ExtractNfsRootfs => "extract-nfsrootfs",
            ParsePersistentNfs => "parse-persistent-nfs",
            ExtractOverlayRamdisk => "extract-overlay-ramdisk",
            ExtractModules => "extract-modules",
            PrepareKernel => "prepare-kernel",
            UbootPrepareKernel => "uboot-prepare-kernel",
            ConfigurePreseedFile => "configure-preseed-file",
            CompressRamdisk => "compress-ramdisk",
            DdImage => "dd-image",
            BootImageRetry => "boot-image-retry",
            BootQemuImage => "boot-qemu-image",
            ExecuteQemu => "execute-qemu",
            UbootAction => "uboot-action",
            UbootFromMedia => "uboot-from-media",
            BootloaderOverlay => "bootloader-overlay",
            ConnectDevice => "connect-device",
            UbootCommands => "uboot-commands",
            ResetDevice => "reset-device",
            PduReboot => "pdu-reboot",
            SendRebootCommands => "send-reboot-commands",
            BootloaderInterrupt => "bootloader-interrupt",
            BootloaderCommands => "bootloader-commands",
            MinimalBoot => "minimal-boot",
            BootBootloaderRetry => "boot-bootloader-retry",
            BootBootloader => "boot-bootloader",
            ResetConnection => "reset-connection",
            DisconnectDevice => "disconnect-device",
            PrePowerCommand => "pre-power-command",
            PreOsCommand => "pre-os-command",
            AutoLogin => "auto-login-action",
            LoginAction => "login-action",
            ExpectShellConnection => "expect-shell-connection",
            OverlayUnpack => "overlay-unpack",
            ExportDeviceEnv => "export-device-env",
            TestShellRetry => "lava-test-retry",
            TestShell => "lava-test-shell",
            TestInteractiveRetry => "lava-test-interactive-retry",
            TestInteractive => "lava-test-interactive",
            TestMonitorRetry => "lava-test-monitor-retry",
            TestMonitor => "lava-test-monitor",
            MultinodeTest => "multinode-test",
            UserCommand => "user-command",
            Finalize => "finalize",
            PowerOff => "power-off",
            ReadFeedback => "read-feedback",
        }
    }

    /// Whether this action retries its pipeline (`failure_retry`, device `failure_retry` /
    /// `boot_retry`, `repeat`); every other action runs once.
    pub fn is_retry(&self) -> bool {
        use ActionKind::*;
        matches!(
            self,
            DownloadRetry { .. }
                | BootImageRetry
                | BootQemuImage
                | AutoLogin
                | UbootAction
                | TestShellRetry
                | TestInteractiveRetry
                | TestMonitorRetry
                | MinimalBoot
                | BootBootloaderRetry
        )
    }

    /// The downloaded URL, for download handlers.
    pub fn url(&self) -> Option<&str> {
        match self {
            ActionKind::HttpDownload { url, .. } | ActionKind::FileDownload { url, .. } => {
                Some(url)
            }
            _ => None,
        }
    }

    /// One line on what the action does.
    pub fn description(&self) -> &'static str {
        use ActionKind::*;
        match self {
            DeployImages => "download images for an emulator and apply the test overlay",
            TftpDeploy => "stage kernel, ramdisk, dtb and rootfs for a TFTP boot",
            NfsDeploy => "unpack a root filesystem for an NFS boot",
            DeployQemuNfs => "stage images and an NFS root filesystem for QEMU",
            QemuNfsDeploy => "export the NFS root filesystem for QEMU",
            StorageDeploy => "write an image to USB or SATA media from the running system",
            LavaOverlay => "build the test overlay: helper scripts and test definitions",
            SshAuthorize => "add the worker's SSH key to the overlay",
            MultinodeOverlay => "add the MultiNode helper scripts to the overlay",
            TestDefinition => "fetch test definitions and write their scripts",
            GitRepo(_) => "clone a test definition repository",
            InlineRepo(_) => "write an inline test definition",
            UrlRepo(_) => "download and unpack a test definition tarball",
            TestOverlay(_) => "write the test definition's metadata and uuid",
            TestInstallOverlay(_) => "write the test definition's install script",
            TestRunscriptOverlay(_) => "write the test definition's run script",
            CompressOverlay => "pack the overlay as a tarball",
            DeployDeviceEnv => "write the device environment file",
            DownloadRetry { .. } => "download a file, retrying on failure",
            HttpDownload { .. } => "download over HTTP(S), decompress and check the checksum",
            FileDownload { .. } => "copy a local file, decompress and check the checksum",
            AppendOverlays { .. } => "add extra overlays to an image",
            ApplyOverlayGuest => "put the overlay where the emulated guest can read it",
            ApplyOverlayTftp => "unpack the overlay into the ramdisk or NFS root",
            ApplyOverlayImage => "unpack the overlay into the disk image",
            PrepareTftpOverlay => "unpack, modify and repack the staged files",
            ExtractNfsRootfs => "unpack the NFS root filesystem",
            ParsePersistentNfs => "read a persistent NFS address",
            ExtractOverlayRamdisk => "unpack the ramdisk to add the overlay",
            ExtractModules => "unpack kernel modules into the root filesystem",
            PrepareKernel => "convert the kernel for the bootloader",
            UbootPrepareKernel => "wrap the kernel with mkimage if U-Boot needs it",
            ConfigurePreseedFile => "adjust an installer preseed file",
            CompressRamdisk => "repack the ramdisk (with a U-Boot header if asked)",
            DdImage => "write the image to the media with dd",
            BootImageRetry => "boot an emulated device, retrying on failure",
            BootQemuImage => "start QEMU, retrying on failure",
            ExecuteQemu => "run QEMU with the console attached",
            UbootAction => "boot through U-Boot, retrying on failure",
            UbootFromMedia => "find the boot partition on secondary media",
            BootloaderOverlay => "substitute addresses and file names into boot commands",
            ConnectDevice => "connect to the device's console",
            UbootCommands => "interrupt U-Boot and send the boot commands",
            ResetDevice => "reset the device",
            PduReboot => "power-cycle the device with its hard reset command",
            SendRebootCommands => "reboot the device from its shell",
            BootloaderInterrupt => "stop the bootloader's autoboot",
            BootloaderCommands => "send the boot commands at the bootloader prompt",
            MinimalBoot => "connect to a device that is already on",
            BootBootloaderRetry => "stop at the bootloader prompt, retrying on failure",
            BootBootloader => "reset the device and stop at the bootloader prompt",
            ResetConnection => "drop and re-open the console connection",
            DisconnectDevice => "close the console connection",
            PrePowerCommand => "run the device's pre-power command",
            PreOsCommand => "run the device's pre-OS command",
            AutoLogin => "wait for the kernel and log in, retrying on failure",
            LoginAction => "wait for the kernel, log in and wait for the prompt",
            ExpectShellConnection => "check that the shell answers",
            OverlayUnpack => "download and unpack the overlay on the device",
            ExportDeviceEnv => "export the device environment in the shell",
            TestShellRetry => "run test definitions, retrying on failure",
            TestShell => "run the test runner and collect results from the console",
            TestInteractiveRetry => "run interactive scripts, retrying on failure",
            TestInteractive => "send commands and check the answers",
            TestMonitorRetry => "watch the console for test output, retrying on failure",
            TestMonitor => "collect results from raw console output",
            MultinodeTest => "run test definitions with MultiNode synchronisation",
            UserCommand => "run a command of the device dictionary on the worker",
            Finalize => "power off and clean up",
            PowerOff => "power the device off",
            ReadFeedback => "read what is left on other connections",
        }
    }
}
