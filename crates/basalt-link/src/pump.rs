//! A thread that owns ZeroMQ sockets (they are not async and not shared between threads) and
//! runs until told to stop: told and joined when its [`Pump`] is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// How long a pump thread may sleep in a poll before it looks at its stop flag: what dropping
/// a [`Pump`] waits at most.
pub const STOP_WITHIN_MS: i64 = 100;

/// The running thread.
pub struct Pump {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pump {
    /// Starts `body` on a thread called `name`; `body` returns once the flag it is given is set
    /// (it checks it between polls, which time out within [`STOP_WITHIN_MS`]).
    pub fn spawn(
        name: &str,
        body: impl FnOnce(&AtomicBool) + Send + 'static,
    ) -> std::io::Result<Pump> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&flag))?;
        Ok(Pump {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
