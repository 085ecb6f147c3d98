//! The console hub of a held board: one open console connection shared by everyone who
//! looks at the board.
//!
//! A [`Hub`] owns the board's [`ConsoleStream`] (its *source*). One pump task reads the source
//! into a ring buffer (bounded, [`DEFAULT_BUFFER`] by default) that lives as long as the hub,
//! across re-attachments of the source (a QEMU console exists only while QEMU runs: each boot
//! attaches a new one). Everything the board printed since the hub was made, up to the
//! buffer's size, can be replayed.
//!
//! Subscribers read the ring at their own position:
//!
//! * [`Hub::attach_watcher`]: read-only, the buffer's content first, then live;
//! * [`Hub::attach_writer`]: the same with write access; refused ([`HubError::WriterBusy`])
//!   while another writer is attached;
//! * [`Hub::attach_pipeline`]: the dispatcher's connection, live from now, with write
//!   access; it is bound to the source attached now and reads end of file when that source
//!   ends (QEMU exited), as a direct connection would. [`HeldConsole`] and [`HeldEmulator`]
//!   hand such connections to a pipeline in place of its [`Console`] and [`Emulator`].
//!
//! A slow subscriber never slows the board or the others: the pump never waits for a
//! subscriber. One that falls more than the buffer's size behind loses the oldest bytes;
//! [`Subscriber::next`] tells it how many ([`Chunk::Lost`]) and it goes on from the oldest
//! byte still buffered. (A pipeline connection just skips them: its expect engine sees the
//! output resume.) A single shared buffer, rather than per-subscriber queues, keeps the memory
//! of a hub bounded by its size whatever the number of watchers.
//!
//! [`Hub::close`] drops the source and ends every subscriber (end of file, [`Chunk::End`]).

use super::{is_gone, Console, ConsoleError, ConsoleStream};
use crate::confine::Policy;
use crate::emulator::{Emulator, EmulatorError};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};

/// The ring buffer's default size: 1 MiB of console output.
pub const DEFAULT_BUFFER: usize = 1 << 20;

/// How much the pump reads at once.
const READ_SIZE: usize = 16 * 1024;

/// How many ended sources are remembered (for pipeline connections that still drain one).
const ENDED_KEPT: usize = 8;

/// Why a hub refused a subscriber or a source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// A writer is attached already; there is one at a time.
    #[error("the console already has a writer")]
    WriterBusy,
    /// The hub was closed (the hold ended).
    #[error("the console hub of {0} is closed")]
    Closed(String),
    /// No console connection is attached (a QEMU board that is not running).
    #[error("{0}: no console connection is attached")]
    Detached(String),
}

/// What a [`Subscriber`] reads next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Board output, in order.
    Data(Vec<u8>),
    /// This many bytes were lost: the subscriber fell more than the buffer behind.
    Lost(u64),
    /// The hub closed (or, for a pipeline connection, its source ended).
    End,
}

/// A board's console shared by watchers, one writer and the dispatcher. Cheap to clone;
/// every clone is the same hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("what", &self.inner.what)
            .field("capacity", &self.inner.capacity)
            .finish()
    }
}

struct Inner {
    what: String,
    capacity: usize,
    state: Mutex<State>,
}

struct State {
    ring: VecDeque<u8>,
    /// The position (bytes since the hub was made) of `ring[0]`.
    start: u64,
    closed: bool,
    source: Option<Source>,
    /// The generation of the last source attached (0: none yet).
    generation: u64,
    /// (generation, end position) of the last sources that ended.
    ended: VecDeque<(u64, u64)>,
    writer: bool,
    /// Readers waiting for output, by subscriber id.
    waiting: HashMap<u64, Waker>,
    next_id: u64,
}

impl State {
    fn end(&self) -> u64 {
        self.start + self.ring.len() as u64
    }

    fn live(&self) -> Option<u64> {
        self.source.as_ref().map(|s| s.generation)
    }

    /// Where the output of source `generation` ends, once it has ended.
    fn end_of(&self, generation: u64) -> Option<u64> {
        if self.live() == Some(generation) {
            return None;
        }
        Some(
            self.ended
                .iter()
                .find(|(g, _)| *g == generation)
                .map_or(self.start, |(_, e)| *e),
        )
    }

    fn source_gone(&mut self) {
        if let Some(mut s) = self.source.take() {
            let end = self.end();
            self.ended.push_back((s.generation, end));
            while self.ended.len() > ENDED_KEPT {
                self.ended.pop_front();
            }
            for w in s.write_waiters.drain(..) {
                w.wake();
            }
        }
    }

    fn wake_readers(&mut self) -> Vec<Waker> {
        self.waiting.drain().map(|(_, w)| w).collect()
    }
}

/// The attached console connection: its write half (the pump owns the read half).
struct Source {
    generation: u64,
    write: WriteHalf<Box<dyn ConsoleStream>>,
    pump: tokio::task::JoinHandle<()>,
    /// Writers that found the connection full, woken when one gets through.
    write_waiters: Vec<Waker>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn push(&self, data: &[u8]) {
        let wakers = {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            st.ring.extend(data);
            if st.ring.len() > self.capacity {
                let over = st.ring.len() - self.capacity;
                st.ring.drain(..over);
                st.start += over as u64;
            }
            st.wake_readers()
        };
        for w in wakers {
            w.wake();
        }
    }

    fn source_ended(&self, generation: u64) {
        let wakers = {
            let mut st = self.lock();
            if st.live() != Some(generation) {
                return;
            }
            st.source_gone();
            st.wake_readers()
        };
        for w in wakers {
            w.wake();
        }
    }

    fn new_id(&self) -> u64 {
        let mut st = self.lock();
        st.next_id += 1;
        st.next_id
    }

    /// Writes to the source; `bound`: only to that generation (else a broken pipe). Without a
    /// source, an unbound write is dropped (nobody to type to).
    fn poll_write(
        &self,
        cx: &mut Context<'_>,
        bound: Option<u64>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut st = self.lock();
        if st.closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the console hub is closed",
            )));
        }
        let live = st.live();
        let Some(source) = st.source.as_mut() else {
            return match bound {
                Some(_) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the console connection ended",
                ))),
                None => Poll::Ready(Ok(buf.len())),
            };
        };
        if bound.is_some() && bound != live {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the console connection ended",
            )));
        }
        match Pin::new(&mut source.write).poll_write(cx, buf) {
            Poll::Pending => {
                if !source.write_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    source.write_waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
            Poll::Ready(r) => {
                for w in source.write_waiters.drain(..) {
                    if !w.will_wake(cx.waker()) {
                        w.wake();
                    }
                }
                Poll::Ready(r)
            }
        }
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.lock();
        match st.source.as_mut() {
            Some(s) => Pin::new(&mut s.write).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// The pump: the source's output into the ring, until the source ends or the hub goes.
async fn pump(inner: Weak<Inner>, generation: u64, mut read: ReadHalf<Box<dyn ConsoleStream>>) {
    let mut buf = vec![0u8; READ_SIZE];
    loop {
        match read.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => match inner.upgrade() {
                Some(i) => i.push(&buf[..n]),
                None => return,
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_gone(&e) => break,
            Err(_) => break,
        }
    }
    if let Some(i) = inner.upgrade() {
        i.source_ended(generation);
    }
}

impl Hub {
    /// A hub with no source yet; `what` names the board's console in errors, `capacity` is the
    /// ring buffer's size in bytes (at least 1 KiB).
    pub fn new(what: impl Into<String>, capacity: usize) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                what: what.into(),
                capacity: capacity.max(1024),
                state: Mutex::new(State {
                    ring: VecDeque::new(),
                    start: 0,
                    closed: false,
                    source: None,
                    generation: 0,
                    ended: VecDeque::new(),
                    writer: false,
                    waiting: HashMap::new(),
                    next_id: 0,
                }),
            }),
        }
    }

    /// The console's description, as given to [`Hub::new`].
    pub fn what(&self) -> &str {
        &self.inner.what
    }

    /// Makes `stream` the source (replacing one still attached); its output goes into the
    /// ring from now on. Must be called within a tokio runtime (it starts the pump). Returns
    /// the source's generation.
    pub fn attach(&self, stream: Box<dyn ConsoleStream>) -> Result<u64, HubError> {
        let (read, write) = tokio::io::split(stream);
        let wakers;
        let generation;
        {
            let mut st = self.inner.lock();
            if st.closed {
                return Err(HubError::Closed(self.inner.what.clone()));
            }
            st.source_gone();
            st.generation += 1;
            generation = st.generation;
            let pump = tokio::spawn(pump(Arc::downgrade(&self.inner), generation, read));
            st.source = Some(Source {
                generation,
                write,
                pump,
                write_waiters: Vec::new(),
            });
            wakers = st.wake_readers();
        }
        for w in wakers {
            w.wake();
        }
        Ok(generation)
    }

    /// Drops the source, if any (its connection closes); subscribers stay.
    pub fn detach(&self) {
        let wakers = {
            let mut st = self.inner.lock();
            st.source_gone();
            st.wake_readers()
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Whether a source is attached (and has not ended).
    pub fn is_attached(&self) -> bool {
        self.inner.lock().source.is_some()
    }

    /// Whether [`Hub::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }

    /// Whether a writer is attached.
    pub fn has_writer(&self) -> bool {
        self.inner.lock().writer
    }

    /// What the ring holds now (the replay a new watcher gets).
    pub fn buffered(&self) -> Vec<u8> {
        let st = self.inner.lock();
        st.ring.iter().copied().collect()
    }

    /// A read-only subscriber: the buffer's content, then live output.
    pub fn attach_watcher(&self) -> Result<Subscriber, HubError> {
        let id = self.inner.new_id();
        let st = self.inner.lock();
        if st.closed {
            return Err(HubError::Closed(self.inner.what.clone()));
        }
        Ok(Subscriber {
            inner: self.inner.clone(),
            id,
            pos: st.start,
            bound: None,
            writer: false,
            lost: 0,
        })
    }

    /// A subscriber that may also write (the lease holder): the buffer, then live. Refused
    /// while another writer is attached; the slot is free again when it is dropped.
    pub fn attach_writer(&self) -> Result<Subscriber, HubError> {
        let id = self.inner.new_id();
        let mut st = self.inner.lock();
        if st.closed {
            return Err(HubError::Closed(self.inner.what.clone()));
        }
        if st.writer {
            return Err(HubError::WriterBusy);
        }
        st.writer = true;
        Ok(Subscriber {
            inner: self.inner.clone(),
            id,
            pos: st.start,
            bound: None,
            writer: true,
            lost: 0,
        })
    }

    /// The dispatcher's connection: live output from now, write access, bound to the source
    /// attached now (end of file when it ends). Not counted as the writer.
    pub fn attach_pipeline(&self) -> Result<Box<dyn ConsoleStream>, HubError> {
        let id = self.inner.new_id();
        let st = self.inner.lock();
        if st.closed {
            return Err(HubError::Closed(self.inner.what.clone()));
        }
        let Some(generation) = st.live() else {
            return Err(HubError::Detached(self.inner.what.clone()));
        };
        Ok(Box::new(PipelineStream(Subscriber {
            inner: self.inner.clone(),
            id,
            pos: st.end(),
            bound: Some(generation),
            writer: false,
            lost: 0,
        })))
    }

    /// Drops the source and ends every subscriber; no new one is taken.
    pub fn close(&self) {
        let wakers = {
            let mut st = self.inner.lock();
            st.closed = true;
            st.source_gone();
            st.wake_readers()
        };
        for w in wakers {
            w.wake();
        }
    }
}

/// One reader of a hub (a watcher, the writer, or inside a pipeline connection).
pub struct Subscriber {
    inner: Arc<Inner>,
    id: u64,
    /// The position of the next byte to read.
    pos: u64,
    /// A pipeline connection: the source generation it belongs to.
    bound: Option<u64>,
    writer: bool,
    lost: u64,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("pos", &self.pos)
            .field("writer", &self.writer)
            .field("lost", &self.lost)
            .finish()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let mut st = self.inner.lock();
        st.waiting.remove(&self.id);
        if self.writer {
            st.writer = false;
        }
    }
}

impl Subscriber {
    /// Whether this subscriber may write.
    pub fn is_writer(&self) -> bool {
        self.writer
    }

    /// The bytes this subscriber lost in all (it fell behind the buffer).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// The next output, at most `max` bytes: data, a loss, or the end.
    pub async fn next(&mut self, max: usize) -> Chunk {
        std::future::poll_fn(|cx| self.poll_next(cx, max)).await
    }

    /// Types `data` on the board (a writer; a watcher's input is dropped). Without an attached
    /// console connection the bytes are dropped; an error when the hub is closed.
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if !self.writer {
            return Ok(());
        }
        let mut done = 0;
        while done < data.len() {
            let n = std::future::poll_fn(|cx| self.inner.poll_write(cx, self.bound, &data[done..]))
                .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            done += n;
        }
        std::future::poll_fn(|cx| self.inner.poll_flush(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<Chunk> {
        let mut st = self.inner.lock();
        if st.closed {
            st.waiting.remove(&self.id);
            return Poll::Ready(Chunk::End);
        }
        if self.pos < st.start {
            let lost = st.start - self.pos;
            self.pos = st.start;
            self.lost += lost;
            return Poll::Ready(Chunk::Lost(lost));
        }
        let mut end = st.end();
        if let Some(g) = self.bound {
            if let Some(e) = st.end_of(g) {
                end = end.min(e);
                if self.pos >= end {
                    st.waiting.remove(&self.id);
                    return Poll::Ready(Chunk::End);
                }
            }
        }
        if self.pos < end {
            let from = (self.pos - st.start) as usize;
            let n = ((end - self.pos) as usize).min(max.max(1));
            let (a, b) = st.ring.as_slices();
            let mut out = Vec::with_capacity(n);
            if from < a.len() {
                let take = n.min(a.len() - from);
                out.extend_from_slice(&a[from..from + take]);
                if take < n {
                    out.extend_from_slice(&b[..n - take]);
                }
            } else {
                let from = from - a.len();
                out.extend_from_slice(&b[from..from + n]);
            }
            self.pos += n as u64;
            return Poll::Ready(Chunk::Data(out));
        }
        st.waiting.insert(self.id, cx.waker().clone());
        Poll::Pending
    }
}

/// A pipeline's connection to the hub, as a [`ConsoleStream`].
struct PipelineStream(Subscriber);

impl AsyncRead for PipelineStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let sub = &mut self.get_mut().0;
        loop {
            match sub.poll_next(cx, buf.remaining()) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Chunk::Data(d)) => {
                    buf.put_slice(&d);
                    return Poll::Ready(Ok(()));
                }
                // the expect engine just sees the output resume
                Poll::Ready(Chunk::Lost(_)) => continue,
                Poll::Ready(Chunk::End) => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl AsyncWrite for PipelineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let sub = &self.get_mut().0;
        sub.inner.poll_write(cx, sub.bound, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().0.inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // the board's connection is the hub's, not this subscriber's
        Poll::Ready(Ok(()))
    }
}

/// A board's [`Console`] as a held board's pipeline sees it: each `connect` is a
/// [`Hub::attach_pipeline`]; when no source is attached (first use, or the console dropped),
/// the board's own console is connected and attached first.
pub struct HeldConsole {
    hub: Hub,
    upstream: Option<Arc<dyn Console>>,
}

impl HeldConsole {
    /// The console of `hub`, re-connecting `upstream` when its connection is gone.
    pub fn new(hub: Hub, upstream: Option<Arc<dyn Console>>) -> HeldConsole {
        HeldConsole { hub, upstream }
    }
}

#[async_trait]
impl Console for HeldConsole {
    fn describe(&self) -> String {
        match &self.upstream {
            Some(u) => format!("{} (held)", u.describe()),
            None => format!("{} (held)", self.hub.what()),
        }
    }

    async fn connect(&self) -> Result<Box<dyn ConsoleStream>, ConsoleError> {
        let closed = |e: HubError| ConsoleError::Closed {
            what: e.to_string(),
        };
        if !self.hub.is_attached() {
            let Some(up) = &self.upstream else {
                return Err(closed(HubError::Detached(self.hub.what().to_string())));
            };
            let stream = up.connect().await?;
            self.hub.attach(stream).map_err(closed)?;
        }
        self.hub.attach_pipeline().map_err(closed)
    }
}

/// An [`Emulator`] whose console goes through a hub: each start attaches the new console as
/// the hub's source and gives the pipeline a [`Hub::attach_pipeline`] connection.
pub struct HeldEmulator {
    hub: Hub,
    inner: Box<dyn Emulator>,
}

impl HeldEmulator {
    /// `inner` with its consoles in `hub`.
    pub fn new(hub: Hub, inner: Box<dyn Emulator>) -> HeldEmulator {
        HeldEmulator { hub, inner }
    }
}

#[async_trait]
impl Emulator for HeldEmulator {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn start(
        &mut self,
        argv: &[String],
        policy: &Policy,
    ) -> Result<Box<dyn ConsoleStream>, EmulatorError> {
        let stream = self.inner.start(argv, policy).await?;
        let hub_error = |e: HubError| EmulatorError::Io(io::Error::other(e.to_string()));
        self.hub.attach(stream).map_err(hub_error)?;
        self.hub.attach_pipeline().map_err(hub_error)
    }

    fn running(&self) -> bool {
        self.inner.running()
    }

    async fn stop(&mut self) -> Result<(), EmulatorError> {
        let r = self.inner.stop().await;
        self.hub.detach();
        r
    }

    fn exit_note(&mut self) -> Option<String> {
        self.inner.exit_note()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::expect::{NullTranscript, Regex, Session};
    use crate::console::fake::{FakeConsole, Step};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SOON: Duration = Duration::from_secs(10);

    /// Reads from `sub` until the text read contains `text`; returns all of it.
    async fn read_until(sub: &mut Subscriber, text: &str) -> String {
        let mut got = Vec::new();
        let r = tokio::time::timeout(SOON, async {
            loop {
                match sub.next(4096).await {
                    Chunk::Data(d) => got.extend_from_slice(&d),
                    Chunk::Lost(_) => {}
                    Chunk::End => break,
                }
                if String::from_utf8_lossy(&got).contains(text) {
                    break;
                }
            }
        })
        .await;
        let s = String::from_utf8_lossy(&got).into_owned();
        assert!(r.is_ok(), "{text:?} not read within {SOON:?}; got {s:?}");
        s
    }

    #[tokio::test]
    async fn a_late_watcher_gets_the_early_output_then_live() {
        let (board, ours) = tokio::io::duplex(4096);
        let hub = Hub::new("board", DEFAULT_BUFFER);
        hub.attach(Box::new(ours)).unwrap();
        let (_r, mut w) = tokio::io::split(board);
        w.write_all(b"U-Boot 2023.01\r\nDRAM: 1 GiB\r\n")
            .await
            .unwrap();
        // the pump has it before anyone watches
        let deadline = tokio::time::Instant::now() + SOON;
        while !String::from_utf8_lossy(&hub.buffered()).contains("DRAM") {
            assert!(tokio::time::Instant::now() < deadline, "not buffered");
            tokio::task::yield_now().await;
        }
        let mut late = hub.attach_watcher().unwrap();
        let got = read_until(&mut late, "DRAM").await;
        assert!(got.starts_with("U-Boot 2023.01"), "{got:?}");
        w.write_all(b"Hit any key\r\n").await.unwrap();
        assert_eq!(
            read_until(&mut late, "Hit any key").await,
            "Hit any key\r\n"
        );
    }

    #[tokio::test]
    async fn one_writer_at_a_time_and_watchers_cannot_type() {
        let (board, ours) = tokio::io::duplex(4096);
        let hub = Hub::new("board", DEFAULT_BUFFER);
        hub.attach(Box::new(ours)).unwrap();
        let (mut br, _bw) = tokio::io::split(board);
        let mut writer = hub.attach_writer().unwrap();
        assert!(writer.is_writer());
        assert_eq!(hub.attach_writer().unwrap_err(), HubError::WriterBusy);
        let mut watcher = hub.attach_watcher().unwrap();
        watcher.write(b"ignored").await.unwrap();
        writer.write(b"printenv\r").await.unwrap();
        let mut got = [0u8; 64];
        let n = tokio::time::timeout(SOON, br.read(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got[..n], b"printenv\r");
        drop(writer);
        assert!(!hub.has_writer());
        assert!(hub.attach_writer().is_ok(), "the slot is free again");
    }

    #[tokio::test]
    async fn a_slow_watcher_loses_the_oldest_bytes_and_is_told() {
        let (board, ours) = tokio::io::duplex(1 << 16);
        let hub = Hub::new("board", 1024);
        hub.attach(Box::new(ours)).unwrap();
        let mut slow = hub.attach_watcher().unwrap();
        let mut fast = hub.attach_watcher().unwrap();
        let (_r, mut w) = tokio::io::split(board);
        let line = [b'x'; 100];
        let mut fast_got = 0usize;
        for i in 1..=30 {
            w.write_all(&line).await.unwrap();
            // the fast one keeps up
            while fast_got < i * 100 {
                match tokio::time::timeout(SOON, fast.next(4096)).await.unwrap() {
                    Chunk::Data(d) => fast_got += d.len(),
                    other => panic!("fast watcher: {other:?}"),
                }
            }
        }
        w.write_all(b"END").await.unwrap();
        let got = read_until(&mut fast, "END").await;
        fast_got += got.len();
        assert_eq!(fast_got, 3003);
        assert_eq!(fast.lost(), 0);
        // the slow one: told of the loss first, then the newest 1 KiB
        match slow.next(4096).await {
            Chunk::Lost(n) => assert_eq!(n, 3003 - 1024),
            other => panic!("expected a loss, got {other:?}"),
        }
        let rest = read_until(&mut slow, "END").await;
        assert_eq!(rest.len(), 1024);
        assert_eq!(slow.lost(), 3003 - 1024);
    }

    #[tokio::test]
    async fn the_pipeline_sees_a_normal_console_and_its_output_is_in_the_buffer() {
        let console = FakeConsole::new(vec![
            Step::print("Hit any key to stop autoboot:  2"),
            Step::wait_for(" "),
            Step::print("\r\n=> "),
        ]);
        let hub = Hub::new("fake", DEFAULT_BUFFER);
        let held = HeldConsole::new(hub.clone(), Some(Arc::new(console.clone())));
        assert_eq!(held.describe(), "fake console (held)");
        let mut watcher = hub.attach_watcher().unwrap();
        let stream = held.connect().await.unwrap();
        let mut s = Session::new(stream, held.describe(), Box::new(NullTranscript));
        s.expect(&[Regex::new("autoboot").unwrap()], SOON)
            .await
            .unwrap();
        s.send(" ", Duration::ZERO).await.unwrap();
        s.expect(&[Regex::new("=> ").unwrap()], SOON).await.unwrap();
        assert_eq!(console.received(), " ");
        let seen = read_until(&mut watcher, "=> ").await;
        assert_eq!(seen, "Hit any key to stop autoboot:  2\r\n=> ");
        // a second connect shares the same board connection
        let _again = held.connect().await.unwrap();
        assert_eq!(console.connections(), 1);
    }

    #[tokio::test]
    async fn a_pipeline_connection_ends_with_its_source_and_the_buffer_lives_on() {
        let hub = Hub::new("qemu", DEFAULT_BUFFER);
        let mut watcher = hub.attach_watcher().unwrap();
        // first boot
        let (board, ours) = tokio::io::duplex(4096);
        hub.attach(Box::new(ours)).unwrap();
        let mut first = hub.attach_pipeline().unwrap();
        let (_r, mut w) = tokio::io::split(board);
        w.write_all(b"boot one\r\n").await.unwrap();
        drop(w);
        drop(_r);
        let mut got = Vec::new();
        tokio::time::timeout(SOON, first.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"boot one\r\n");
        let deadline = tokio::time::Instant::now() + SOON;
        while hub.is_attached() {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::task::yield_now().await;
        }
        assert!(matches!(hub.attach_pipeline(), Err(HubError::Detached(_))));
        assert!(first.write_all(b"x").await.is_err(), "its source is gone");
        // second boot: a new source, the same buffer and the same watcher
        let (board, ours) = tokio::io::duplex(4096);
        hub.attach(Box::new(ours)).unwrap();
        let (_r2, mut w2) = tokio::io::split(board);
        w2.write_all(b"boot two\r\n").await.unwrap();
        let seen = read_until(&mut watcher, "boot two").await;
        assert_eq!(seen, "boot one\r\nboot two\r\n");
        assert_eq!(hub.buffered(), b"boot one\r\nboot two\r\n");
    }

    #[tokio::test]
    async fn closing_the_hub_ends_every_subscriber_and_the_connection() {
        let (board, ours) = tokio::io::duplex(4096);
        let hub = Hub::new("board", DEFAULT_BUFFER);
        hub.attach(Box::new(ours)).unwrap();
        let mut a = hub.attach_watcher().unwrap();
        let mut b = hub.attach_writer().unwrap();
        let mut p = hub.attach_pipeline().unwrap();
        let waiting = tokio::spawn(async move { a.next(10).await });
        tokio::task::yield_now().await;
        hub.close();
        assert_eq!(
            tokio::time::timeout(SOON, waiting).await.unwrap().unwrap(),
            Chunk::End
        );
        assert_eq!(b.next(10).await, Chunk::End);
        let mut buf = [0u8; 8];
        assert_eq!(p.read(&mut buf).await.unwrap(), 0);
        assert!(b.write(b"x").await.is_err());
        assert!(hub.attach_watcher().is_err());
        // the board sees its line closed
        let mut board = board;
        assert_eq!(
            tokio::time::timeout(SOON, board.read(&mut buf))
                .await
                .unwrap()
                .unwrap(),
            0
        );
    }
}
