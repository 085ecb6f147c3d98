//! basalt-board's faults: each one shows a dispatcher something it can detect, and none
//! leaves a process behind.

mod board_support;

use std::time::Duration;

use board_support::*;

/// Ends a fault test: power off, nothing left running, clean exit on SIGTERM.
fn finish(mut board: Board) {
    board.ctl_ok(&["off"], "ok");
    board.assert_no_descendants();
    assert!(board.private_dirs().is_empty(), "private dir left behind");
    assert!(board.terminate(), "board did not exit on SIGTERM");
    assert!(!board.control.exists(), "control socket left behind");
    assert!(!board.console.exists(), "console socket left behind");
}

#[tokio::test]
async fn hang_at_uboot_is_a_silent_board() {
    let board = Board::start(&["--speed", "0", "--fault", "hang-at uboot"]);
    let mut con = board.connect().await;
    board.ctl_ok(&["on"], "ok");
    con.expect_absent("U-Boot|autoboot", QUIET).await;
    board.ctl_ok(&["phase"], "uboot");
    finish(board);
}

#[tokio::test]
async fn hang_at_autoboot_ignores_the_key() {
    let board = Board::start(&["--speed", "0", "--bootdelay", "1"]);
    board.ctl_ok(&["fault", "hang-at", "autoboot"], "ok");
    board.ctl_ok(&["faults"], "hang-at autoboot");
    let mut con = board.connect().await;
    board.ctl_ok(&["on"], "ok");
    con.expect("Hit any key to stop autoboot:  1 ").await;
    con.send(b"\r").await;
    con.expect_absent("=> |Starting kernel", QUIET).await;
    finish(board);
}

#[tokio::test]
async fn hang_at_kernel_after_starting_kernel() {
    let board = Board::start(&["--speed", "0", "--fault", "hang-at kernel"]);
    let mut con = to_uboot_prompt(&board).await;
    con.line("booti 0x0 - ${fdtcontroladdr}").await;
    con.expect("Starting kernel \\.\\.\\.").await;
    con.expect_absent("Linux version", QUIET).await;
    board.ctl_ok(&["phase"], "kernel");
    finish(board);
}

#[tokio::test]
async fn hang_at_login_after_the_kernel_log() {
    let board = Board::start(&[
        "--speed",
        "0",
        "--login",
        "root",
        "--fault",
        "hang-at login",
    ]);
    let mut con = to_uboot_prompt(&board).await;
    con.line("boot").await;
    con.expect("Run /init as init process").await;
    con.expect_absent("login:", QUIET).await;
    finish(board);
}

#[tokio::test]
async fn hang_at_shell_after_login() {
    let board = Board::start(&[
        "--speed",
        "0",
        "--login",
        "root",
        "--fault",
        "hang-at shell",
    ]);
    let mut con = to_uboot_prompt(&board).await;
    con.line("boot").await;
    con.expect("login: ").await;
    con.line("root").await;
    con.expect_absent("/ # ", QUIET).await;
    // Nothing was started.
    assert!(board.descendants().is_empty(), "{:?}", board.descendants());
    finish(board);
}

#[tokio::test]
async fn kernel_panic() {
    let board = Board::start(&["--speed", "0", "--fault", "panic"]);
    let mut con = to_uboot_prompt(&board).await;
    con.line("boot").await;
    con.expect("Linux version 6\\.1\\.0").await;
    let out = con
        .expect("\\] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block\\(0,0\\)")
        .await;
    // Cut at the script's `panic` label: the end of the log never comes.
    assert!(!out.contains("Run /init"), "{out}");
    con.expect("---\\[ end Kernel panic - not syncing").await;
    con.expect_absent("/ # |login:", QUIET).await;
    finish(board);
}

#[tokio::test]
async fn panic_set_over_control_with_message() {
    let board = Board::start(&["--speed", "0"]);
    board.ctl_ok(
        &[
            "fault",
            "panic",
            "Attempted to kill init! exitcode=0x00000100",
        ],
        "ok",
    );
    let mut con = to_uboot_prompt(&board).await;
    con.line("boot").await;
    con.expect("Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100")
        .await;
    finish(board);
}

#[tokio::test]
async fn garbage_does_not_stop_the_board() {
    let board = Board::start(&["--speed", "0", "--bootdelay", "0", "--fault", "garbage"]);
    let mut con = board.connect().await;
    board.ctl_ok(&["on"], "ok");
    con.expect("Starting kernel").await;
    con.expect("Run /init").await;
    con.expect("/ # ").await;
    // Noise reaches the console: bytes that are not UTF-8, escape sequences.
    assert!(
        std::str::from_utf8(&con.transcript).is_err(),
        "no invalid UTF-8 in the output"
    );
    assert!(
        con.transcript.contains(&0x1b),
        "no escape sequence in the output"
    );
    // Garbage typed at the board does not hurt either.
    con.send(&[0xff, 0xfe, 0x1b, b'[', b'A', 0, 0x80, 0x03])
        .await;
    con.line("").await;
    con.line("echo still-$((40+2))").await;
    con.expect("still-42").await;
    // Clearing the fault stops the noise.
    board.ctl_ok(&["fault", "none"], "ok");
    board.ctl_ok(&["faults"], "none");
    finish(board);
}

#[tokio::test]
async fn drop_console_closes_and_refuses() {
    let board = Board::start(&["--speed", "0", "--bootdelay", "2"]);
    let mut con = board.connect().await;
    board.ctl_ok(&["on"], "ok");
    con.expect("Hit any key").await;
    con.send(b" ").await;
    con.expect("=> ").await;
    // `ok` comes once the client is gone and connections are refused.
    board.ctl_ok(&["fault", "drop-console", "2"], "ok");
    con.expect_closed(SOON).await;
    let err = tokio::net::UnixStream::connect(&board.console)
        .await
        .expect_err("connection accepted during the drop");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    // Back after the window, and the board kept running meanwhile.
    let mut again = board.connect().await;
    again.line("echo back").await;
    again.expect("back\r\n").await;
    again.expect("=> ").await;
    finish(board);
}

#[tokio::test]
async fn drop_console_at_a_phase() {
    let board = Board::start(&[
        "--speed",
        "0",
        "--bootdelay",
        "0",
        "--fault",
        "drop-console 1 at kernel",
    ]);
    board.ctl_ok(&["faults"], "drop-console 1 at kernel");
    let mut con = board.connect().await;
    board.ctl_ok(&["on"], "ok");
    con.expect("Starting kernel").await;
    con.expect_closed(SOON).await;
    // Once: the shell comes up and the next client sees it.
    let mut again = board.connect().await;
    again.line("echo hi-$((1+1))").await;
    again.expect("hi-2").await;
    board.ctl_ok(&["faults"], "none");
    finish(board);
}

#[tokio::test]
async fn hang_while_shell_commands_run_is_cleaned_on_power_off() {
    // A shell with children in several process groups (job control), then SIGTERM to the
    // board: everything goes.
    let board = Board::start(&["--speed", "0", "--bootdelay", "0"]);
    let mut con = board.connect().await;
    board.ctl_ok(&["on"], "ok");
    con.expect("/ # ").await;
    con.line("sleep 1000 & (sleep 1001 | cat) & trap '' HUP; sleep 1002 &")
        .await;
    con.expect("/ # ").await;
    let deadline = std::time::Instant::now() + SOON;
    while board
        .descendants()
        .iter()
        .filter(|(_, _, c)| c == "sleep")
        .count()
        < 3
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            board.descendants()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pids: Vec<i32> = board.descendants().iter().map(|(p, _, _)| *p).collect();
    let mut board = board;
    assert!(board.terminate(), "board did not exit on SIGTERM");
    for p in pids {
        let state = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let alive = state
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X");
        assert!(!alive, "process {p} survived the board: {state}");
    }
}
