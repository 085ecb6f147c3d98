//! Messages for a socket thread that sleeps: any thread queues a message and wakes the
//! thread's `zmq::poll` through an inproc socket, so a link waits for work (a message to read or
//! to send) instead of polling on a short timer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};

/// Makes inproc endpoint names unique within the process (a name generator, not state).
static NEXT: AtomicU64 = AtomicU64::new(0);

/// The sending half: cheap to share between threads (`&self`).
pub struct Outbox<T> {
    tx: mpsc::Sender<T>,
    wake: Mutex<zmq::Socket>,
}

/// The receiving half, owned by the socket thread.
pub struct Inbox<T> {
    rx: mpsc::Receiver<T>,
    wake: zmq::Socket,
}

/// A new outbox on `ctx` (the context of the sockets the thread polls).
pub fn outbox<T>(ctx: &zmq::Context) -> Result<(Outbox<T>, Inbox<T>), zmq::Error> {
    let endpoint = format!(
        "inproc://basalt-outbox-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let pull = ctx.socket(zmq::PULL)?;
    pull.bind(&endpoint)?;
    let push = ctx.socket(zmq::PUSH)?;
    push.connect(&endpoint)?;
    let (tx, rx) = mpsc::channel();
    Ok((
        Outbox {
            tx,
            wake: Mutex::new(push),
        },
        Inbox { rx, wake: pull },
    ))
}

impl<T> Outbox<T> {
    /// Queues `msg` and wakes the socket thread; `false` when that thread is gone.
    pub fn send(&self, msg: T) -> bool {
        if self.tx.send(msg).is_err() {
            return false;
        }
        let wake = match self.wake.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        // a full wake queue (EAGAIN) means a wake-up is pending already
        let _ = wake.send(&[][..], zmq::DONTWAIT);
        true
    }
}

impl<T> Inbox<T> {
    /// What to hand `zmq::poll`: readable when messages were queued.
    pub fn poll_item(&self) -> zmq::PollItem<'_> {
        self.wake.as_poll_item(zmq::POLLIN)
    }

    /// The queued messages, oldest first (the wake-ups are consumed).
    pub fn drain(&self) -> impl Iterator<Item = T> + '_ {
        while self.wake.recv_bytes(zmq::DONTWAIT).is_ok() {}
        self.rx.try_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_wakes_the_poll_and_is_drained_once() {
        let ctx = zmq::Context::new();
        let (out, inbox) = outbox::<u32>(&ctx).unwrap();
        let mut items = [inbox.poll_item()];
        assert_eq!(zmq::poll(&mut items, 0).unwrap(), 0, "nothing queued");
        let sender = std::thread::spawn(move || {
            assert!(out.send(1));
            assert!(out.send(2));
            out
        });
        let mut items = [inbox.poll_item()];
        assert_eq!(zmq::poll(&mut items, 5000).unwrap(), 1, "woken");
        let out = sender.join().unwrap();
        let got: Vec<u32> = inbox.drain().collect();
        assert_eq!(got, [1, 2]);
        let mut items = [inbox.poll_item()];
        assert_eq!(
            zmq::poll(&mut items, 0).unwrap(),
            0,
            "the wake-ups are consumed"
        );
        drop(inbox);
        assert!(!out.send(3), "the thread is gone");
    }
}
