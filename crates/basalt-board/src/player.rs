//! Plays a [`Script`] on the board's console.

use std::time::Duration;

use tokio::time::Instant;

use super::board::Ctx;
use super::fault::Phase;
use super::line::LineEnd;
use super::script::{Script, Step};

/// How a script ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It ran to its end.
    Finished,
    /// A key press in an `interrupt` window without `goto`: stop autoboot.
    Interrupted,
    /// It reached the label it was asked to stop at.
    Stopped,
}

/// Replaces `${name}` by `lookup(name)`; unknown names are left as they are.
pub(crate) fn substitute(text: &str, lookup: &(dyn Fn(&str) -> Option<String> + Sync)) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match lookup(name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push_str("${");
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A kernel log timestamp, `[    1.234567] `.
pub(crate) fn kmsg_stamp(since: Instant) -> String {
    let e = since.elapsed();
    format!("[{:5}.{:06}] ", e.as_secs(), e.subsec_micros())
}

/// Plays `script`; stops before the label `stop_at` when it is reached.
pub(crate) async fn play(
    ctx: &mut Ctx<'_>,
    script: &Script,
    lookup: &(dyn Fn(&str) -> Option<String> + Sync),
    stop_at: Option<&str>,
) -> Outcome {
    let mut pc = 0usize;
    while let Some(step) = script.steps.get(pc) {
        pc += 1;
        match step {
            Step::Label { name } => {
                if stop_at == Some(name.as_str()) {
                    return Outcome::Stopped;
                }
            }
            Step::Goto { target, .. } => {
                pc = *target;
                // A script that loops on itself must not starve the control socket.
                tokio::task::yield_now().await;
            }
            Step::Print {
                lines,
                delay_ms,
                jitter_ms,
                kmsg,
                newline,
            } => {
                let count = lines.len();
                for (i, line) in lines.iter().enumerate() {
                    let mut wait = *delay_ms;
                    if *jitter_ms > 0.0 {
                        wait += ctx.rng_f64() * jitter_ms;
                    }
                    ctx.sleep_scaled(Duration::from_secs_f64(wait / 1000.0))
                        .await;
                    let mut text = String::new();
                    if *kmsg {
                        text.push_str(&kmsg_stamp(ctx.kernel_epoch));
                    }
                    text.push_str(&substitute(line, lookup));
                    if i + 1 < count || *newline {
                        text.push('\n');
                    }
                    ctx.puts(&text).await;
                }
            }
            Step::Sleep { seconds } => {
                ctx.sleep_scaled(Duration::from_secs_f64(*seconds)).await;
            }
            Step::Wait {
                regex,
                timeout,
                echo,
                on_match,
                on_timeout,
            } => {
                let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t));
                let mut matched = false;
                loop {
                    let mut line = Vec::new();
                    let uart = ctx.shared.uart.clone();
                    match ctx.input.read_line(&uart, *echo, deadline, &mut line).await {
                        None => break,
                        Some(LineEnd::Interrupt) => continue,
                        Some(LineEnd::Enter) => {
                            if regex.is_match(&String::from_utf8_lossy(&line)) {
                                matched = true;
                                break;
                            }
                        }
                    }
                }
                let jump = if matched { on_match } else { on_timeout };
                if let Some(t) = jump {
                    pc = *t;
                }
            }
            Step::Interrupt {
                seconds,
                prompt,
                countdown,
                target,
            } => {
                let text = substitute(seconds, lookup);
                let secs: f64 = text.trim().parse().unwrap_or(2.0);
                if secs <= -2.0 {
                    // U-Boot's bootdelay -2: autoboot without looking for a key.
                    continue;
                }
                if secs < 0.0 {
                    // bootdelay -1: autoboot disabled.
                    match target {
                        Some(t) => {
                            pc = *t;
                            continue;
                        }
                        None => return Outcome::Interrupted,
                    }
                }
                let prompt = substitute(prompt, lookup);
                let pressed = if *countdown {
                    uboot_countdown(ctx, &prompt, secs.round() as u64).await
                } else {
                    ctx.puts(&prompt).await;
                    ctx.enter(Phase::Autoboot).await;
                    let deadline = Instant::now() + Duration::from_secs_f64(secs);
                    let key = ctx.input.byte_until(deadline).await.is_some();
                    ctx.puts("\n").await;
                    key
                };
                if pressed {
                    match target {
                        Some(t) => pc = *t,
                        None => return Outcome::Interrupted,
                    }
                }
            }
        }
    }
    Outcome::Finished
}

/// U-Boot's `abortboot_single_key`: `Hit any key to stop autoboot:  2 `, then `\b\b\b 1 `
/// each second; a key is consumed and stops the countdown.
async fn uboot_countdown(ctx: &mut Ctx<'_>, prompt: &str, mut delay: u64) -> bool {
    ctx.puts(&format!("{prompt}{delay:2} ")).await;
    ctx.enter(Phase::Autoboot).await;
    // bootdelay 0: one look for a key already typed.
    if delay == 0 && ctx.input.try_byte().is_some() {
        ctx.puts("\x08\x08\x08 0 \n").await;
        return true;
    }
    let mut abort = false;
    while delay > 0 && !abort {
        delay -= 1;
        let deadline = Instant::now() + Duration::from_secs(1);
        if ctx.input.byte_until(deadline).await.is_some() {
            abort = true;
            delay = 0;
        }
        ctx.puts(&format!("\x08\x08\x08{delay:2} ")).await;
    }
    ctx.puts("\n").await;
    abort
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution() {
        let lookup = |n: &str| match n {
            "a" => Some("1".to_string()),
            "empty" => Some(String::new()),
            _ => None,
        };
        assert_eq!(substitute("x${a}y${empty}z", &lookup), "x1yz");
        assert_eq!(substitute("${nope} ${a", &lookup), "${nope} ${a");
        assert_eq!(substitute("plain", &lookup), "plain");
    }

    #[test]
    fn stamps() {
        let s = kmsg_stamp(Instant::now());
        assert!(s.starts_with("[    0.0"), "{s}");
        assert_eq!(s.len(), "[    0.000000] ".len());
    }
}
