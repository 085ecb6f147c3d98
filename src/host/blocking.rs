//! Blocking work (archives, copies, decompression, walks of test repositories) runs on
//! tokio's blocking threads, never on the runtime's own thread: the runtime must stay free to
//! notice the job, action and connection timeouts and SIGTERM/SIGINT. Each task gets a
//! [`Cancel`] flag that is set as soon as the future awaiting it is dropped (its action timed
//! out, or the job was canceled); the task checks it between files and between chunks of data,
//! so it stops within milliseconds. [`Tasks`] counts the tasks still running, so the job's
//! cleanup waits for them before it removes their directories.

use crate::error::ActionError;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a blocking task stopped early: it was told to.
#[derive(Debug)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cancelled: its action timed out or the job was canceled")
    }
}

impl std::error::Error for Cancelled {}

/// Whether an I/O error is a [`Cancelled`] one.
pub fn is_cancelled(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|e| e.is::<Cancelled>())
}

/// A flag that a blocking task polls.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once the flag is set.
    pub fn check(&self) -> io::Result<()> {
        if self.is_set() {
            Err(io::Error::other(Cancelled))
        } else {
            Ok(())
        }
    }

    /// A guard that sets the flag when dropped.
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }
}

/// Sets its flag when dropped: the future that awaited the task was dropped.
pub struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// A reader that stops with [`Cancelled`] once its flag is set.
pub struct CancelRead<'a, R> {
    pub inner: R,
    pub cancel: &'a Cancel,
}

impl<R: io::Read> io::Read for CancelRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.cancel.check()?;
        self.inner.read(buf)
    }
}

/// Copies `r` to `w` in 32 KiB chunks, checking `cancel` before each.
pub fn copy(r: &mut dyn io::Read, w: &mut dyn io::Write, cancel: &Cancel) -> io::Result<u64> {
    let mut buf = vec![0u8; 32 * 1024];
    let mut n = 0u64;
    loop {
        cancel.check()?;
        let got = match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..got])?;
        n += got as u64;
    }
}

#[derive(Default)]
struct Running {
    count: AtomicUsize,
}

/// The job's blocking tasks.
#[derive(Clone, Default)]
pub struct Tasks(Arc<Running>);

/// Counts a task out when it ends (or its closure is dropped unrun).
struct Done(Arc<Running>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Tasks {
    /// Runs `f` on a blocking thread. When the returned future is dropped before `f` ends,
    /// `f`'s [`Cancel`] is set.
    pub async fn run<T, F>(&self, f: F) -> Result<T, ActionError>
    where
        T: Send + 'static,
        F: FnOnce(&Cancel) -> T + Send + 'static,
    {
        let cancel = Cancel::new();
        let _guard = cancel.on_drop();
        self.0.count.fetch_add(1, Ordering::SeqCst);
        let done = Done(self.0.clone());
        let c = cancel.clone();
        tokio::task::spawn_blocking(move || {
            let _done = done;
            f(&c)
        })
        .await
        .map_err(|e| ActionError::bug(format!("blocking task: {e}")))
    }

    /// How many tasks are still running.
    pub fn running(&self) -> usize {
        self.0.count.load(Ordering::SeqCst)
    }

    /// Waits (at most `within`) until no task runs; true when none does.
    pub async fn wait_idle(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.running() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_task_is_cancelled_and_counted_out() {
        let tasks = Tasks::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let fut = tasks.run(move |c: &Cancel| {
            let _ = tx.send(());
            let start = Instant::now();
            while !c.is_set() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(1));
            }
            c.is_set()
        });
        let r = tokio::time::timeout(Duration::from_millis(50), fut).await;
        assert!(r.is_err(), "the task runs until cancelled");
        rx.recv().expect("the task started");
        assert!(tasks.wait_idle(Duration::from_secs(2)).await);
        assert_eq!(tasks.running(), 0);
        let e = Cancel::new();
        e.set();
        assert!(is_cancelled(&e.check().unwrap_err()));
    }
}
