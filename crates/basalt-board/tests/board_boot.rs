//! basalt-board end to end: power on over the control socket, U-Boot over the console,
//! a real TFTP transfer from tftpd-hpa, booti, the Linux log, a real shell.

mod board_support;

use board_support::*;

/// The whole happy path, the way a dispatcher drives a board.
#[tokio::test]
async fn uboot_tftp_booti_shell() {
    let tftpd = Tftpd::start();
    let kernel: Vec<u8> = (0..1_234_567u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    tftpd.put("kernel/Image", &kernel);
    tftpd.put("ramdisk.cpio.gz", &[0x1f, 0x8b, 8, 0, 1, 2, 3]);

    let board = Board::start(&["--speed", "0", "--bootdelay", "2"]);
    board.ctl_ok(&["status"], "off");
    let mut con = board.connect().await;
    // Nothing while off.
    con.expect_absent("U-Boot", std::time::Duration::from_millis(300))
        .await;
    board.ctl_ok(&["on"], "ok");
    board.ctl_ok(&["status"], "on");
    con.expect("U-Boot 2023\\.01").await;
    con.expect("Hit any key to stop autoboot:  2 ").await;
    con.send(b" ").await;
    con.expect("=> ").await;
    board.ctl_ok(&["phase"], "autoboot");

    // Environment.
    let out = con.uboot("setenv foo bar-${board}; printenv foo").await;
    assert!(out.contains("foo=bar-basalt"), "{out}");
    let out = con.uboot("printenv").await;
    assert!(out.contains("kernel_addr_r=0x40400000"), "{out}");
    assert!(out.contains("Environment size: "), "{out}");
    let out = con.uboot("frobnicate").await;
    assert!(
        out.contains("Unknown command 'frobnicate' - try 'help'"),
        "{out}"
    );
    let out = con.uboot("booti 0x40400000").await;
    assert!(out.contains("Bad Linux ARM64 Image magic!"), "{out}");

    // U-Boot's reset starts over (and forgets the unsaved environment).
    con.line("reset").await;
    con.expect("resetting \\.\\.\\.").await;
    con.expect("U-Boot 2023\\.01").await;
    con.expect("Hit any key to stop autoboot:  2 ").await;
    con.send(b"\r").await;
    con.expect("=> ").await;
    let out = con.uboot("printenv foo").await;
    assert!(out.contains("## Error: \"foo\" not defined"), "{out}");

    // DHCP, then TFTP from the real server.
    let out = con.uboot("setenv autoload no; dhcp").await;
    assert!(
        out.contains("DHCP client bound to address 10.0.2.15"),
        "{out}"
    );
    let out = con
        .uboot(&format!(
            "setenv serverip 127.0.0.1; setenv tftpserverport {}",
            tftpd.port
        ))
        .await;
    assert!(!out.contains("Error"), "{out}");
    let out = con.uboot("tftp ${kernel_addr_r} kernel/Image").await;
    assert!(
        out.contains("TFTP from server 127.0.0.1; our IP address is 10.0.2.15"),
        "{out}"
    );
    assert!(out.contains("Filename 'kernel/Image'."), "{out}");
    assert!(out.contains("Load address: 0x40400000"), "{out}");
    assert!(out.contains("Loading: *\u{8}#"), "{out}");
    assert!(
        out.contains("Bytes transferred = 1234567 (12d687 hex)"),
        "{out}"
    );
    let out = con.uboot("printenv filesize fileaddr").await;
    assert!(out.contains("filesize=12d687"), "{out}");
    assert!(out.contains("fileaddr=40400000"), "{out}");

    // A missing file fails as U-Boot does.
    let out = con.uboot("tftpboot ${ramdisk_addr_r} nosuch").await;
    assert!(out.contains("TFTP error: 'File not found' (1)"), "{out}");
    assert!(out.contains("Not retrying..."), "{out}");

    // Ramdisk with 512-byte blocks (no blksize option), its size kept as LAVA does.
    let out = con
        .uboot("setenv tftpblocksize; tftp ${ramdisk_addr_r} ramdisk.cpio.gz")
        .await;
    assert!(out.contains("Bytes transferred = 7 (7 hex)"), "{out}");
    con.uboot("setenv initrd_size ${filesize}").await;
    con.uboot("setenv bootargs 'console=ttyAMA0,115200n8 root=/dev/ram0'")
        .await;

    // booti: U-Boot's messages, the kernel log, then the shell.
    con.line("booti ${kernel_addr_r} ${ramdisk_addr_r}:${initrd_size} ${fdtcontroladdr}")
        .await;
    let out = con.expect("Starting kernel \\.\\.\\.").await;
    assert!(out.contains("Loading Ramdisk to "), "{out}");
    let out = con.expect("\\] Linux version 6\\.1\\.0[^\r\n]*\r\n").await;
    assert!(out.contains("[    0."), "{out}");
    let out = con.expect("Kernel command line: [^\r\n]*").await;
    assert!(
        out.ends_with("console=ttyAMA0,115200n8 root=/dev/ram0"),
        "{out}"
    );
    con.expect("Run /init as init process").await;
    con.expect("/ # ").await;
    board.ctl_ok(&["phase"], "shell");

    con.line("uname -a; echo hello-$((6*7))").await;
    let out = con.expect("hello-42\r\n").await;
    assert!(out.contains("Linux"), "{out}");
    con.expect("/ # ").await;

    // The shell runs in the private directory named by BASALT_BOARD_ROOT.
    con.line("pwd; echo root=$BASALT_BOARD_ROOT; echo data > lava-file; ls")
        .await;
    let out = con.expect("/ # ").await;
    let dirs = board.private_dirs();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let root = dirs[0].display().to_string();
    assert!(out.contains(&format!("root={root}")), "{out}");
    assert!(dirs[0].join("lava-file").is_file());

    // A test-shell-like script runs for real, with its exit code.
    con.line("printf 'echo case-$1; exit 3\\n' > t.sh; sh t.sh x; echo rc=$?")
        .await;
    let out = con.expect("rc=\\d+").await;
    assert!(out.contains("case-x") && out.ends_with("rc=3"), "{out}");
    con.expect("/ # ").await;

    // Something still running in the shell's session is killed at power off.
    con.line("sleep 300 & sleep 301").await;
    let deadline = std::time::Instant::now() + SOON;
    while !board.descendants().iter().any(|(_, _, c)| c == "sleep") {
        assert!(std::time::Instant::now() < deadline, "no sleep started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    board.ctl_ok(&["off"], "ok");
    board.assert_no_descendants();
    assert!(board.private_dirs().is_empty(), "private dir not removed");
    board.ctl_ok(&["status"], "off");
    board.ctl_ok(&["phase"], "off");
}

/// Without a key press, autoboot runs bootcmd (the stand-in kernel in flash) to the shell;
/// the shell's `reboot` resets the board, not the host; `ctl reset` boots again.
#[tokio::test]
async fn autoboot_reset_and_reboot() {
    let board = Board::start(&["--speed", "0", "--bootdelay", "0"]);
    let mut con = board.connect().await;
    board.ctl_ok(&["on"], "ok");
    con.expect("Hit any key to stop autoboot:  0 ").await;
    con.expect("Starting kernel").await;
    con.expect("/ # ").await;
    con.line("echo $((1+2))").await;
    con.expect("\r\n3\r\n").await;
    con.expect("/ # ").await;
    let first_root = board.private_dirs();
    assert_eq!(first_root.len(), 1);

    // `reboot` inside the board: the board resets (a new U-Boot banner), the host does not.
    con.line("reboot").await;
    con.expect("reboot: Restarting system").await;
    con.expect("U-Boot 2023\\.01").await;
    con.expect("/ # ").await;
    let second_root = board.private_dirs();
    assert_eq!(second_root.len(), 1);
    assert_ne!(first_root, second_root, "a new private dir per boot");

    // Reset over the control socket: autoboot again.
    board.ctl_ok(&["reset"], "ok");
    con.expect("U-Boot 2023\\.01").await;
    con.expect("Starting kernel").await;
    con.expect("/ # ").await;

    board.ctl_ok(&["off"], "ok");
    board.assert_no_descendants();
}

/// Login prompt with a password, a custom prompt.
#[tokio::test]
async fn login_and_password() {
    let board = Board::start(&[
        "--speed",
        "0",
        "--bootdelay",
        "0",
        "--login",
        "root",
        "--password",
        "secret",
        "--prompt",
        "root@basalt:~# ",
        "--hostname",
        "dut1",
    ]);
    let mut con = board.connect().await;
    board.ctl_ok(&["on"], "ok");
    con.expect("dut1 login: ").await;
    board.ctl_ok(&["phase"], "login");
    con.line("root").await;
    con.expect("Password: ").await;
    con.line("wrong").await;
    con.expect("Login incorrect").await;
    con.expect("dut1 login: ").await;
    con.line("root").await;
    con.expect("Password: ").await;
    con.line("secret").await;
    con.expect("root@basalt:~# ").await;
    con.line("echo logged-$USER").await;
    con.expect("logged-root").await;
    board.ctl_ok(&["off"], "ok");
    board.assert_no_descendants();
}

/// The telnet console: ser2net-like negotiation, and a new client replaces the old one.
#[tokio::test]
async fn telnet_console_kicks_old_client() {
    let board =
        Board::start_with_console(&["--telnet", "0"], &["--speed", "0", "--bootdelay", "3"]);
    let mut first = board.connect_telnet().await;
    // IAC WILL ECHO, IAC WILL SUPPRESS-GO-AHEAD, as ser2net sends.
    first.expect("^(?-u:\\xff\\xfb\\x01\\xff\\xfb\\x03)").await;
    board.ctl_ok(&["on"], "ok");
    first.expect("Hit any key").await;
    let mut second = board.connect_telnet().await;
    first.expect_closed(SOON).await;
    // The client's own negotiation is ignored; its key stops autoboot.
    second.send(&[255, 253, 1, 255, 251, 31, b'\r', 0]).await;
    second.expect("=> ").await;
    let out = second.uboot("echo tel${board}net").await;
    assert!(out.contains("telbasaltnet"), "{out}");
    board.ctl_ok(&["off"], "ok");
    board.assert_no_descendants();
}

/// The pty console: the link points at the slave, U-Boot answers on it.
#[tokio::test]
async fn pty_console() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("console.pty");
    let link_arg = link.display().to_string();
    let board = Board::start_with_console(
        &["--pty-link", &link_arg],
        &["--speed", "0", "--bootdelay", "3"],
    );
    let target = std::fs::read_link(&link).expect("pty link");
    assert!(target.starts_with("/dev/pts/"), "{target:?}");
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NOCTTY.bits())
        .open(&link)
        .await
        .expect("open pty");
    let mut con = Console::new(file);
    board.ctl_ok(&["on"], "ok");
    con.expect("Hit any key").await;
    con.send(b"x").await;
    con.expect("=> ").await;
    let out = con.uboot("version").await;
    assert!(out.contains("U-Boot 2023.01"), "{out}");
    board.ctl_ok(&["off"], "ok");
    drop(con);
    let mut board = board;
    assert!(board.terminate(), "board did not exit on SIGTERM");
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "pty link left behind"
    );
}

/// Like a serial line: what the board prints while nobody is connected is lost.
#[tokio::test]
async fn output_without_a_client_is_lost() {
    let board = Board::start(&["--speed", "0", "--bootdelay", "0", "--power-on"]);
    // Wait (by asking the board) until it reached its shell, unobserved.
    let deadline = std::time::Instant::now() + SOON;
    loop {
        let (_, phase, _) = board.ctl(&["phase"]);
        if phase.trim() == "shell" && !board.descendants().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reached the shell"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut con = board.connect().await;
    con.line("echo late-$((2*21))").await;
    con.expect("late-42").await;
    con.expect("/ # ").await;
    let seen = String::from_utf8_lossy(&con.transcript).into_owned();
    assert!(
        !seen.contains("U-Boot") && !seen.contains("Linux version"),
        "{seen}"
    );
    board.ctl_ok(&["off"], "ok");
    board.assert_no_descendants();
}

/// `--strict-images`: the boot commands check image magics, as U-Boot does.
#[tokio::test]
async fn strict_image_checks() {
    let board = Board::start(&["--speed", "0", "--strict-images"]);
    let mut con = to_uboot_prompt(&board).await;
    let out = con.uboot("bootz 0x0 - ${fdtcontroladdr}").await;
    assert!(out.contains("Bad Linux ARM zImage magic!"), "{out}");
    let out = con.uboot("bootm 0x0").await;
    assert!(
        out.contains("Wrong Image Format for bootm command"),
        "{out}"
    );
    // The device tree must be one: the stand-in kernel is not.
    let out = con.uboot("booti 0x0 - 0x0").await;
    assert!(out.contains("Could not find a valid device tree"), "{out}");
    // A ramdisk without a size must have a uImage header.
    let out = con.uboot("booti 0x0 0x0 ${fdtcontroladdr}").await;
    assert!(out.contains("Wrong Ramdisk Image Format"), "{out}");
    // The stand-in arm64 Image in flash and U-Boot's own device tree pass.
    con.line("booti 0x0 0x0:0x100 ${fdtcontroladdr}").await;
    let out = con.expect("Starting kernel").await;
    assert!(out.contains("Loading Ramdisk to"), "{out}");
    con.expect("/ # ").await;
    board.ctl_ok(&["off"], "ok");
    board.assert_no_descendants();
}
