//! A large LAVA-format log made up for the log viewer's benchmark and tests: the mix of a
//! long job (a deploy, a boot and a test action per round, each in `start:`/`end:`
//! sections, mostly `target` console lines, `debug`, `input`, `info`, a `results` record per
//! test case, some warnings and one error), of any size, the same every time (a fixed
//! pseudo-random sequence). It depends on the standard library only, so that the workspace's
//! other tests can include this file as it is (`#[path]`) without depending on the master.

use std::io::Write;
use std::path::Path;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const WORDS: &[&str] = &[
    "kernel",
    "usb",
    "eth0",
    "link",
    "up",
    "mmc0",
    "new",
    "high",
    "speed",
    "card",
    "at",
    "address",
    "0x0001",
    "random:",
    "crng",
    "init",
    "done",
    "systemd[1]:",
    "Started",
    "udev",
    "Kernel",
    "Device",
    "Manager.",
    "EXT4-fs",
    "mounted",
    "filesystem",
    "with",
    "ordered",
    "data",
    "mode.",
    "Quota",
    "disabled.",
    "[",
    "OK",
    "]",
    "Reached",
    "target",
    "Network.",
    "+",
    "lava-test-case",
    "pass",
    "fail",
    "measurement",
    "ms",
    "test",
    "run",
    "step",
];

/// What [`write_log`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub lines: u64,
    pub bytes: u64,
    /// The first `error` line (0-based).
    pub first_error: Option<u64>,
    /// Lines per level, by the level's code (debug 0 … other 10).
    pub per_level: [u64; 11],
}

/// Writes a log of at least `size` bytes (whole rounds) to `dir/output.yaml`, with the
/// master's commit file beside it, as a finished job's log is stored.
pub fn write_log(dir: &Path, size: u64) -> std::io::Result<Written> {
    std::fs::create_dir_all(dir)?;
    let file = std::fs::File::create(dir.join("output.yaml"))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut w = Written::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut second = 0u64;
    let mut line = String::with_capacity(512);
    let mut emit = |w: &mut Written,
                    lvl: (u8, &str),
                    msg: &str,
                    quoted: bool|
     -> std::io::Result<()> {
        second += 1;
        line.clear();
        let (h, m, s) = ((second / 3600) % 24, (second / 60) % 60, second % 60);
        line.push_str(&format!(
            "- {{\"dt\": \"2026-08-21T{h:02}:{m:02}:{s:02}.{:06}+00:00\", \"lvl\": \"{}\", \"msg\": ",
            (second * 7919) % 1_000_000,
            lvl.1
        ));
        if quoted {
            line.push('"');
            line.push_str(msg);
            line.push('"');
        } else {
            line.push_str(msg);
        }
        line.push_str("}\n");
        out.write_all(line.as_bytes())?;
        if lvl.0 == 3 && w.first_error.is_none() {
            w.first_error = Some(w.lines);
        }
        w.per_level[usize::from(lvl.0)] += 1;
        w.lines += 1;
        w.bytes += line.len() as u64;
        Ok(())
    };
    const DEBUG: (u8, &str) = (0, "debug");
    const INFO: (u8, &str) = (1, "info");
    const WARNING: (u8, &str) = (2, "warning");
    const ERROR: (u8, &str) = (3, "error");
    const RESULTS: (u8, &str) = (5, "results");
    const TARGET: (u8, &str) = (6, "target");
    const INPUT: (u8, &str) = (7, "input");
    let mut round = 0u64;
    while w.bytes < size {
        round += 1;
        for (i, action) in ["tftp-deploy", "uboot-action", "lava-test-shell"]
            .iter()
            .enumerate()
        {
            let level = format!("{round}.{}", i + 1);
            emit(
                &mut w,
                INFO,
                &format!("start: {level} {action} (timeout 00:05:00) [common]"),
                true,
            )?;
            emit(
                &mut w,
                DEBUG,
                &format!("start: {level}.1 {action}-inner (timeout 00:01:00) [common]"),
                true,
            )?;
            let n = 150 + rng.below(100);
            for k in 0..n {
                match rng.below(20) {
                    0..=13 => {
                        let words = 4 + rng.below(14);
                        let mut text =
                            format!("[{:>5}.{:06}]", round * 10 + k / 100, rng.below(1_000_000));
                        for _ in 0..words {
                            text.push(' ');
                            text.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
                        }
                        if rng.below(50) == 0 {
                            text.push_str(" \\e[0;32m OK \\e[0m \\\"quoted\\\"");
                        }
                        emit(&mut w, TARGET, &text, true)?;
                    }
                    14..=16 => emit(
                        &mut w,
                        DEBUG,
                        &format!(
                            "expect: matched pattern {k} of {action}, {} bytes read",
                            rng.below(4096)
                        ),
                        true,
                    )?,
                    17 => emit(
                        &mut w,
                        INPUT,
                        &format!("cat /proc/cpuinfo # step {k}\\n"),
                        true,
                    )?,
                    18 => emit(&mut w, INFO, &format!("{action}: progress {k}/{n}"), true)?,
                    _ => {
                        if rng.below(40) == 0 {
                            emit(
                                &mut w,
                                WARNING,
                                &format!("{action}: slow answer ({} ms)", rng.below(9000)),
                                true,
                            )?;
                        } else {
                            let case = format!("case-{round}-{k}");
                            let result = if rng.below(10) == 0 { "fail" } else { "pass" };
                            emit(&mut w, RESULTS, &format!("{{\"definition\": \"0_smoke\", \"case\": \"{case}\", \"result\": \"{result}\", \"measurement\": ! \"{}.5\", \"units\": \"ms\"}}", rng.below(100)), false)?;
                        }
                    }
                }
            }
            if round == 3 && i == 1 {
                emit(
                    &mut w,
                    ERROR,
                    "uboot-action: bootloader-commands timed out after 30 seconds",
                    true,
                )?;
            }
            emit(
                &mut w,
                DEBUG,
                &format!(
                    "end: {level}.1 {action}-inner (duration 00:00:0{}) [common]",
                    rng.below(10)
                ),
                true,
            )?;
            emit(
                &mut w,
                INFO,
                &format!(
                    "end: {level} {action} (duration 00:00:1{}) [common]",
                    rng.below(10)
                ),
                true,
            )?;
        }
    }
    out.flush()?;
    drop(out);
    std::fs::write(
        dir.join("output.yaml.commit"),
        format!("{} {}\n", w.lines, w.bytes),
    )?;
    Ok(w)
}
