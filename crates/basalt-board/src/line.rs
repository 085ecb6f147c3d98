//! The board's side of its serial line: output to whoever is connected ([`Uart`]) and the
//! bytes they type ([`Input`]).
//!
//! Like a serial line, output goes to the client connected at the time and is dropped
//! when nobody is connected. A client that reads too slowly makes the board wait up to
//! [`SEND_PATIENCE`] per chunk (a little flow control); after that the chunk is lost, as
//! on an overrun UART.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::fault::{garbage_burst, Faults};

/// How long the board waits for a slow client to take a chunk of output.
pub(crate) const SEND_PATIENCE: Duration = Duration::from_secs(2);

/// Output queue depth per client, in chunks.
pub(crate) const CLIENT_QUEUE: usize = 256;

/// The transmit side of the board's UART.
pub(crate) struct Uart {
    client: Mutex<Option<(u64, mpsc::Sender<Vec<u8>>)>>,
    faults: Arc<Faults>,
    powered: AtomicBool,
    rng: Mutex<fastrand::Rng>,
}

impl Uart {
    pub fn new(faults: Arc<Faults>) -> Self {
        Uart {
            client: Mutex::new(None),
            faults,
            powered: AtomicBool::new(false),
            rng: Mutex::new(fastrand::Rng::new()),
        }
    }

    fn client(&self) -> std::sync::MutexGuard<'_, Option<(u64, mpsc::Sender<Vec<u8>>)>> {
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `tx` the connected client (the previous one, if any, stops receiving).
    pub fn attach(&self, id: u64, tx: mpsc::Sender<Vec<u8>>) {
        *self.client() = Some((id, tx));
    }

    /// Forgets client `id` if it is still the connected one.
    pub fn detach(&self, id: u64) {
        let mut c = self.client();
        if c.as_ref().is_some_and(|(cid, _)| *cid == id) {
            *c = None;
        }
    }

    /// Forgets whatever client is connected.
    pub fn detach_all(&self) {
        *self.client() = None;
    }

    /// Whether the board is powered (input is dropped while it is not).
    pub fn powered(&self) -> bool {
        self.powered.load(Ordering::SeqCst)
    }

    pub fn set_powered(&self, on: bool) {
        self.powered.store(on, Ordering::SeqCst);
    }

    /// Writes raw bytes to the connected client, if any.
    pub async fn write(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let Some(tx) = self.client().as_ref().map(|(_, tx)| tx.clone()) else {
            return;
        };
        let chunk = if self.faults.garbage() {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            let mut out = Vec::with_capacity(data.len() + 64);
            if rng.u8(0..3) == 0 {
                out.extend(garbage_burst(&mut rng));
            }
            out.extend_from_slice(data);
            if rng.u8(0..3) == 0 {
                out.extend(garbage_burst(&mut rng));
            }
            out
        } else {
            data.to_vec()
        };
        // A gone client (closed channel) or one that does not read: the data is lost.
        let _ = tokio::time::timeout(SEND_PATIENCE, tx.send(chunk)).await;
    }

    /// Writes text, turning `\n` into `\r\n` as a serial console does.
    pub async fn puts(&self, text: &str) {
        self.write(&crlf(text.as_bytes())).await;
    }
}

/// `\n` → `\r\n` (a `\r\n` already there is kept as it is).
pub(crate) fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16 + 2);
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// What the board reads from its serial line.
pub(crate) struct Input {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: VecDeque<u8>,
    /// The last line ended with `\r`: a `\n` or NUL right after it belongs to it.
    after_cr: bool,
}

/// The end of a line read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineEnd {
    /// Enter.
    Enter,
    /// Ctrl-C.
    Interrupt,
}

impl Input {
    pub fn new(rx: mpsc::Receiver<Vec<u8>>) -> Self {
        Input {
            rx,
            buf: VecDeque::new(),
            after_cr: false,
        }
    }

    /// Forgets everything typed so far.
    pub fn drain(&mut self) {
        self.buf.clear();
        while self.rx.try_recv().is_ok() {}
        self.after_cr = false;
    }

    /// The next byte; waits forever. `None` only if every sender is gone.
    pub async fn byte(&mut self) -> Option<u8> {
        loop {
            if let Some(b) = self.buf.pop_front() {
                return Some(b);
            }
            let chunk = self.rx.recv().await?;
            self.buf.extend(chunk);
        }
    }

    /// The next byte, or `None` at `deadline`.
    pub async fn byte_until(&mut self, deadline: Instant) -> Option<u8> {
        tokio::time::timeout_at(deadline, self.byte())
            .await
            .ok()
            .flatten()
    }

    /// A byte if one is already there.
    pub fn try_byte(&mut self) -> Option<u8> {
        if self.buf.is_empty() {
            while let Ok(chunk) = self.rx.try_recv() {
                self.buf.extend(chunk);
            }
        }
        self.buf.pop_front()
    }

    /// Whatever is available as one chunk; waits for at least one byte.
    pub async fn chunk(&mut self) -> Option<Vec<u8>> {
        if !self.buf.is_empty() {
            return Some(self.buf.drain(..).collect());
        }
        self.rx.recv().await
    }

    /// Swallows the rest of an escape sequence (`ESC [ ... final` or `ESC O x`) typed
    /// after an ESC, if it follows at once.
    async fn skip_escape(&mut self) {
        let soon = || Instant::now() + Duration::from_millis(50);
        match self.byte_until(soon()).await {
            Some(b'[') => {
                while let Some(b) = self.byte_until(soon()).await {
                    if (0x40..=0x7e).contains(&b) {
                        break;
                    }
                }
            }
            Some(b'O') => {
                let _ = self.byte_until(soon()).await;
            }
            Some(b) => self.buf.push_front(b),
            None => {}
        }
    }

    /// Reads a line with simple editing (backspace, Ctrl-C, Ctrl-U), echoing to `uart` when
    /// `echo`. `\r`, `\n`, `\r\n` and `\r\0` all end a line. Returns `None` at `deadline`
    /// (the partial line is kept for the next call).
    pub async fn read_line(
        &mut self,
        uart: &Uart,
        echo: bool,
        deadline: Option<Instant>,
        line: &mut Vec<u8>,
    ) -> Option<LineEnd> {
        loop {
            let b = match deadline {
                Some(d) => self.byte_until(d).await?,
                None => self.byte().await?,
            };
            let after_cr = std::mem::replace(&mut self.after_cr, false);
            match b {
                b'\n' | 0 if after_cr => continue,
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    if echo {
                        uart.write(b"\r\n").await;
                    }
                    return Some(LineEnd::Enter);
                }
                0x03 => {
                    line.clear();
                    return Some(LineEnd::Interrupt);
                }
                0x08 | 0x7f => {
                    if line.pop().is_some() && echo {
                        uart.write(b"\x08 \x08").await;
                    }
                }
                0x15 => {
                    if echo {
                        for _ in 0..line.len() {
                            uart.write(b"\x08 \x08").await;
                        }
                    }
                    line.clear();
                }
                0x1b => self.skip_escape().await, // arrow keys and the like: ignored
                b if b < 0x20 => {}               // other control characters are ignored
                b => {
                    line.push(b);
                    if echo {
                        uart.write(&[b]).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_conversion() {
        assert_eq!(crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc");
        assert_eq!(crlf(b"\n\n"), b"\r\n\r\n");
    }

    #[tokio::test]
    async fn lines_and_editing() {
        let faults = Arc::new(Faults::default());
        let uart = Uart::new(faults);
        let (out_tx, mut out_rx) = mpsc::channel(64);
        uart.attach(1, out_tx);
        let (tx, rx) = mpsc::channel(16);
        let mut input = Input::new(rx);
        tx.send(b"ab\x7fc\x1b[A\x1b[1;5D\r\nnext\r\0x\x1bOB\n".to_vec())
            .await
            .unwrap();
        let mut line = Vec::new();
        assert_eq!(
            input.read_line(&uart, true, None, &mut line).await,
            Some(LineEnd::Enter)
        );
        assert_eq!(line, b"ac");
        line.clear();
        input.read_line(&uart, false, None, &mut line).await;
        assert_eq!(line, b"next");
        line.clear();
        input.read_line(&uart, false, None, &mut line).await;
        assert_eq!(line, b"x");
        let mut echoed = Vec::new();
        while let Ok(c) = out_rx.try_recv() {
            echoed.extend(c);
        }
        assert_eq!(echoed, b"ab\x08 \x08c\r\n");
        // deadline
        line.clear();
        let d = Instant::now() + Duration::from_millis(20);
        assert_eq!(input.read_line(&uart, true, Some(d), &mut line).await, None);
    }
}
