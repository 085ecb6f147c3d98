//! `FakeConsole`: an in-process board for unit tests of actions. Each connection is one end
//! of a [`tokio::io::duplex`] pipe; a task plays a script on the other end — print this, wait
//! until the dispatcher has typed that — and records every byte the dispatcher sent, so a
//! test asserts on both sides without a process, a socket or a sleep.

use super::{Console, ConsoleError, ConsoleStream};
use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// One step of a fake board's script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Print these bytes on the console.
    Print(Vec<u8>),
    /// Wait until the dispatcher has sent text containing this (since the last wait).
    WaitFor(String),
    /// Close the connection (the board's serial line dropped).
    Close,
}

impl Step {
    /// A [`Step::Print`] of text.
    pub fn print(s: &str) -> Step {
        Step::Print(s.as_bytes().to_vec())
    }

    /// A [`Step::WaitFor`].
    pub fn wait_for(s: &str) -> Step {
        Step::WaitFor(s.to_string())
    }
}

/// A console whose board is a script.
#[derive(Clone, Debug)]
pub struct FakeConsole {
    script: Vec<Step>,
    /// How long a [`Step::WaitFor`] waits before the fake board gives up and closes.
    patience: Duration,
    received: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<usize>>,
}

impl FakeConsole {
    /// A console that plays `script` on every connection.
    pub fn new(script: Vec<Step>) -> FakeConsole {
        FakeConsole {
            script,
            patience: Duration::from_secs(10),
            received: Arc::default(),
            connections: Arc::default(),
        }
    }

    /// How long the board waits for expected input before it closes the line.
    pub fn with_patience(mut self, patience: Duration) -> FakeConsole {
        self.patience = patience;
        self
    }

    /// Everything the dispatcher sent, over all connections, as text (lossy).
    pub fn received(&self) -> String {
        let r = self.received.lock().map(|r| r.clone()).unwrap_or_default();
        String::from_utf8_lossy(&r).into_owned()
    }

    /// How many times [`Console::connect`] was called.
    pub fn connections(&self) -> usize {
        self.connections.lock().map(|c| *c).unwrap_or(0)
    }
}

#[async_trait]
impl Console for FakeConsole {
    fn describe(&self) -> String {
        "fake console".to_string()
    }

    async fn connect(&self) -> Result<Box<dyn ConsoleStream>, ConsoleError> {
        if let Ok(mut c) = self.connections.lock() {
            *c += 1;
        }
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(play(
            self.script.clone(),
            theirs,
            self.received.clone(),
            self.patience,
        ));
        Ok(Box::new(ours))
    }
}

/// The fake board: runs the script, keeps reading what the dispatcher sends.
async fn play(
    script: Vec<Step>,
    mut io: DuplexStream,
    received: Arc<Mutex<Vec<u8>>>,
    patience: Duration,
) {
    // Bytes received since the last satisfied wait.
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    for step in script {
        match step {
            Step::Print(bytes) => {
                if io.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Step::Close => return,
            Step::WaitFor(text) => {
                let deadline = tokio::time::Instant::now() + patience;
                loop {
                    if let Some(at) = find(&pending, text.as_bytes()) {
                        pending.drain(..at + text.len());
                        break;
                    }
                    match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => {
                            pending.extend_from_slice(&buf[..n]);
                            if let Ok(mut r) = received.lock() {
                                r.extend_from_slice(&buf[..n]);
                            }
                        }
                        // closed by the dispatcher, or it never sent what was expected
                        _ => return,
                    }
                }
            }
        }
    }
    // The script is over: keep the line open, recording input, until the dispatcher closes it.
    while let Ok(n) = io.read(&mut buf).await {
        if n == 0 {
            return;
        }
        if let Ok(mut r) = received.lock() {
            r.extend_from_slice(&buf[..n]);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::expect::{NullTranscript, Regex, Session};

    #[tokio::test]
    async fn a_scripted_board_answers_the_dispatcher() {
        let console = FakeConsole::new(vec![
            Step::print("Hit any key to stop autoboot:  2"),
            Step::wait_for(" "),
            Step::print("\r\n=> "),
            Step::wait_for("printenv\r"),
            Step::print("bootcmd=run distro_bootcmd\r\n=> "),
        ]);
        let stream = console.connect().await.unwrap();
        let mut s = Session::new(stream, console.describe(), Box::new(NullTranscript));
        let d = Duration::from_secs(5);
        s.expect(&[Regex::new("autoboot").unwrap()], d)
            .await
            .unwrap();
        s.send(" ", Duration::ZERO).await.unwrap();
        s.expect(&[Regex::new("=> ").unwrap()], d).await.unwrap();
        s.send("printenv\r", Duration::ZERO).await.unwrap();
        s.expect(&[Regex::new("bootcmd=(\\S+)").unwrap()], d)
            .await
            .unwrap();
        assert_eq!(console.received(), " printenv\r");
        assert_eq!(console.connections(), 1);
    }
}
