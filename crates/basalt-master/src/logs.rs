//! Job logs on the master's disk, stored exactly once as they arrive.
//!
//! Each job has `DIR/output.yaml` (the log, LAVA's format, record after record as the worker's
//! log sink wrote them) and `DIR/output.yaml.commit` (`SEQ BYTES`: how many records and bytes
//! of it are committed). A batch is appended only from the next expected sequence number on:
//! records already stored are dropped (a worker resending after a reconnect), a gap is
//! refused (the worker resends from the acknowledged number). The log is synced before the
//! commit file is replaced (write, sync, rename), so after a crash at any point reopening cuts
//! `output.yaml` back to its last commit: every record is stored once. Readers see committed
//! bytes only, so a log is readable while its job runs.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why a batch or a read failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Records are missing before this batch: the sender must resend from `expected`.
    #[error("log batch starts at record {got}, but record {expected} is the next one")]
    Gap { expected: u64, got: u64 },
    /// A record is not one line of text.
    #[error("record {seq} is not one line (a record holds no newline)")]
    NotALine { seq: u64 },
    #[error("{path}: commit file is damaged: {text:?}")]
    BadCommit { path: PathBuf, text: String },
}

/// The committed part of a log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Commit {
    /// Records stored (the last sequence number; 0 for none).
    pub seq: u64,
    /// Bytes of `output.yaml` they take.
    pub bytes: u64,
}

/// One job's log, open for appending.
pub struct JobLogFile {
    log: PathBuf,
    commit_path: PathBuf,
    file: File,
    commit: Commit,
}

impl JobLogFile {
    /// Opens (or creates) the log in `dir`, cutting anything written after its last commit.
    pub fn open(dir: &Path) -> Result<JobLogFile, LogError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LogError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let log = dir.join("output.yaml");
        let commit_path = dir.join("output.yaml.commit");
        let commit = read_commit(&commit_path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&log)
            .map_err(io(&log))?;
        let len = file.metadata().map_err(io(&log))?.len();
        if len < commit.bytes {
            // the commit says more than the log holds: the disk lost data
            return Err(LogError::BadCommit {
                path: commit_path,
                text: format!(
                    "{} {} but output.yaml has {len} bytes",
                    commit.seq, commit.bytes
                ),
            });
        }
        if len > commit.bytes {
            file.set_len(commit.bytes).map_err(io(&log))?;
        }
        Ok(JobLogFile {
            log,
            commit_path,
            file,
            commit,
        })
    }

    /// What is stored so far.
    pub fn commit(&self) -> Commit {
        self.commit
    }

    /// Appends the records of a batch whose first record is `first_seq` (each record one line,
    /// without its newline or with it); returns the commit after it. Records already stored
    /// are skipped.
    pub fn append(&mut self, first_seq: u64, records: &[String]) -> Result<Commit, LogError> {
        let next = self.commit.seq + 1;
        if first_seq > next {
            return Err(LogError::Gap {
                expected: next,
                got: first_seq,
            });
        }
        let skip = (next - first_seq) as usize;
        let fresh = records.get(skip..).unwrap_or(&[]);
        if fresh.is_empty() {
            return Ok(self.commit);
        }
        let mut buf = Vec::with_capacity(fresh.iter().map(|r| r.len() + 1).sum());
        for (i, r) in fresh.iter().enumerate() {
            let line = r.strip_suffix('\n').unwrap_or(r);
            if line.contains('\n') {
                return Err(LogError::NotALine {
                    seq: next + i as u64,
                });
            }
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
        }
        let io = |source| LogError::Io {
            path: self.log.clone(),
            source,
        };
        self.file
            .seek(SeekFrom::Start(self.commit.bytes))
            .map_err(io)?;
        self.file.write_all(&buf).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        let commit = Commit {
            seq: self.commit.seq + fresh.len() as u64,
            bytes: self.commit.bytes + buf.len() as u64,
        };
        write_commit(&self.commit_path, commit)?;
        self.commit = commit;
        Ok(commit)
    }
}

/// Reads the committed log of the job in `dir` from byte `offset` (at most `max` bytes, cut
/// at a record's end): for `logs` and `logs --follow` (call again from the returned offset).
pub fn read_from(dir: &Path, offset: u64, max: usize) -> Result<(Vec<u8>, u64), LogError> {
    let commit = read_commit(&dir.join("output.yaml.commit"))?;
    if offset >= commit.bytes {
        return Ok((Vec::new(), offset));
    }
    let log = dir.join("output.yaml");
    let io = |source| LogError::Io {
        path: log.clone(),
        source,
    };
    let mut f = File::open(&log).map_err(io)?;
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let want = (commit.bytes - offset).min(max as u64);
    let mut buf = Vec::with_capacity(want as usize);
    f.take(want).read_to_end(&mut buf).map_err(io)?;
    // whole records only, unless one record is longer than `max`
    if let Some(end) = buf.iter().rposition(|b| *b == b'\n') {
        buf.truncate(end + 1);
    }
    let next = offset + buf.len() as u64;
    Ok((buf, next))
}

/// What is committed of the log in `dir` (nothing yet: zero records).
pub fn committed(dir: &Path) -> Result<Commit, LogError> {
    read_commit(&dir.join("output.yaml.commit"))
}

/// Tells readers of running jobs' logs (the web log viewer's live stream) that a job's log
/// grew or that the job ended: the engine sends the job's id, each reader picks its own.
/// A reader that falls behind misses ids, not records: it reads the log from where it is.
#[derive(Clone, Debug)]
pub struct LogSignal {
    tx: tokio::sync::broadcast::Sender<u64>,
}

impl Default for LogSignal {
    fn default() -> LogSignal {
        LogSignal {
            tx: tokio::sync::broadcast::channel(1024).0,
        }
    }
}

impl LogSignal {
    /// Job `id`'s log has new records, or the job ended.
    pub fn notify(&self, id: u64) {
        // no reader: nothing to tell
        let _ = self.tx.send(id);
    }

    /// The ids notified from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<u64> {
        self.tx.subscribe()
    }
}

fn read_commit(path: &Path) -> Result<Commit, LogError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Commit::default()),
        Err(source) => {
            return Err(LogError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let bad = || LogError::BadCommit {
        path: path.to_path_buf(),
        text: text.chars().take(80).collect(),
    };
    let mut words = text.split_whitespace();
    let (Some(seq), Some(bytes), None) = (words.next(), words.next(), words.next()) else {
        return Err(bad());
    };
    match (seq.parse(), bytes.parse()) {
        (Ok(seq), Ok(bytes)) => Ok(Commit { seq, bytes }),
        _ => Err(bad()),
    }
}

fn write_commit(path: &Path, c: Commit) -> Result<(), LogError> {
    let tmp = path.with_extension("commit.tmp");
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| LogError::Io { path: p, source }
    };
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    writeln!(f, "{} {}", c.seq, c.bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

/// How much of a log [`read_lines`] reads at a time: a streamed reply holds a few of these
/// (read, queued, encoded, being written), so this bounds its memory.
const LINES_CHUNK: usize = 256 << 10;

/// Calls `emit` with the committed lines `start..end` (0-based, `end` exclusive, none: to the
/// end) of the log in `dir`, a chunk of at most about 256 KiB at a time, so that a reader of
/// a large log never holds all of it; stops when `emit` returns false.
pub fn read_lines(
    dir: &Path,
    start: u64,
    end: Option<u64>,
    mut emit: impl FnMut(Vec<u8>) -> bool,
) -> Result<(), LogError> {
    let mut line = 0u64;
    let mut offset = 0u64;
    loop {
        if end.is_some_and(|e| line >= e) {
            return Ok(());
        }
        let (chunk, next) = read_from(dir, offset, LINES_CHUNK)?;
        if chunk.is_empty() {
            return Ok(());
        }
        offset = next;
        let lines = chunk.iter().filter(|b| **b == b'\n').count() as u64;
        // all of the chunk is wanted (a record cut at its end too): passed on as it is read
        if line >= start && end.is_none_or(|e| line + lines < e) {
            line += lines;
            if !emit(chunk) {
                return Ok(());
            }
            continue;
        }
        let mut out = Vec::new();
        for l in chunk.split_inclusive(|b| *b == b'\n') {
            if end.is_some_and(|e| line >= e) {
                break;
            }
            if line >= start {
                out.extend_from_slice(l);
            }
            if l.ends_with(b"\n") {
                line += 1;
            }
        }
        if !out.is_empty() && !emit(out) {
            return Ok(());
        }
    }
}

/// The lines of a log for a streamed reply: [`read_lines`] on a blocking thread, one chunk
/// queued ahead, so a reply holds a few chunks whatever the log's size. The first chunk is
/// read before the reply starts: an empty range or an error can still get its own status.
pub struct LineChunks {
    first: Option<Vec<u8>>,
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, LogError>>,
}

impl LineChunks {
    /// Starts reading lines `start..end` of the log in `dir` (see [`read_lines`]).
    pub async fn open(dir: PathBuf, start: u64, end: Option<u64>) -> Result<LineChunks, LogError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, LogError>>(1);
        tokio::task::spawn_blocking(move || {
            let sender = tx.clone();
            if let Err(e) = read_lines(&dir, start, end, |chunk| {
                sender.blocking_send(Ok(chunk)).is_ok()
            }) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        let first = match rx.recv().await {
            Some(Err(e)) => return Err(e),
            Some(Ok(chunk)) => Some(chunk),
            None => None,
        };
        Ok(LineChunks { first, rx })
    }

    /// Whether the range has no lines.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// The next chunk; `None` at the end. An error after the first chunk cuts the reply short.
    pub fn poll_chunk(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Vec<u8>, LogError>>> {
        match self.first.take() {
            Some(c) => std::task::Poll::Ready(Some(Ok(c))),
            None => self.rx.poll_recv(cx),
        }
    }
}

/// The chunks as they are, for a raw body (LAVA's REST `logs/`).
impl futures_core::Stream for LineChunks {
    type Item = Result<bytes::Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.poll_chunk(cx).map(|c| {
            c.map(|r| {
                r.map(bytes::Bytes::from)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(from: u64, to: u64) -> Vec<String> {
        (from..=to)
            .map(|i| format!("- {{\"dt\": \"t\", \"lvl\": \"target\", \"msg\": \"line {i}\"}}"))
            .collect()
    }

    fn text(dir: &Path) -> String {
        let (b, _) = read_from(dir, 0, usize::MAX).unwrap();
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn each_record_is_stored_once_and_gaps_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = JobLogFile::open(dir.path()).unwrap();
        assert_eq!(log.append(1, &recs(1, 3)).unwrap().seq, 3);
        // a resend overlapping what is stored: only the new records go in
        assert_eq!(log.append(2, &recs(2, 5)).unwrap().seq, 5);
        // a pure duplicate changes nothing
        assert_eq!(log.append(1, &recs(1, 2)).unwrap().seq, 5);
        // a gap is refused, naming the next record
        match log.append(7, &recs(7, 8)) {
            Err(LogError::Gap {
                expected: 6,
                got: 7,
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            log.append(6, &["two\nlines".to_string()]),
            Err(LogError::NotALine { seq: 6 })
        ));
        let t = text(dir.path());
        assert_eq!(t.lines().count(), 5);
        for i in 1..=5 {
            assert_eq!(t.matches(&format!("\"line {i}\"")).count(), 1, "{t}");
        }
    }

    #[test]
    fn a_crash_after_the_append_loses_nothing_and_duplicates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = JobLogFile::open(dir.path()).unwrap();
        log.append(1, &recs(1, 2)).unwrap();
        let committed = log.commit();
        drop(log);
        // a master killed between writing a batch and committing it
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("output.yaml"))
            .unwrap();
        f.write_all(b"- {\"dt\": \"t\", \"lvl\": \"target\", \"msg\": \"line 3\"}\n- {\"dt\"")
            .unwrap();
        drop(f);
        // readers never see the uncommitted bytes
        assert_eq!(text(dir.path()).lines().count(), 2);
        let mut log = JobLogFile::open(dir.path()).unwrap();
        assert_eq!(log.commit(), committed);
        // the worker resends from the acknowledged record on
        log.append(3, &recs(3, 4)).unwrap();
        let t = text(dir.path());
        assert_eq!(t.lines().count(), 4, "{t}");
        assert_eq!(t.matches("\"line 3\"").count(), 1);
        assert!(!t.contains("- {\"dt\"\n"));
    }

    #[test]
    fn following_a_log_reads_whole_records_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = JobLogFile::open(dir.path()).unwrap();
        log.append(1, &recs(1, 10)).unwrap();
        let mut offset = 0;
        let mut lines = 0;
        loop {
            let (chunk, next) = read_from(dir.path(), offset, 100).unwrap();
            if chunk.is_empty() {
                break;
            }
            assert_eq!(chunk.last(), Some(&b'\n'));
            lines += chunk.iter().filter(|b| **b == b'\n').count();
            offset = next;
        }
        assert_eq!(lines, 10);
        log.append(11, &recs(11, 11)).unwrap();
        let (chunk, _) = read_from(dir.path(), offset, 1000).unwrap();
        assert!(String::from_utf8(chunk).unwrap().contains("line 11"));
    }

    #[test]
    fn line_ranges_across_read_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = JobLogFile::open(dir.path()).unwrap();
        let records = recs(1, 12_000);
        log.append(1, &records).unwrap();
        let (first, _) = read_from(dir.path(), 0, LINES_CHUNK).unwrap();
        // the lines of the first chunk: ranges ending at, before and after its end
        let k = first.iter().filter(|b| **b == b'\n').count() as u64;
        assert!(
            k > 2 && (k as usize) < records.len() / 2,
            "{k} lines in a chunk"
        );
        let lines = |start: u64, end: Option<u64>| {
            let mut out = Vec::new();
            read_lines(dir.path(), start, end, |c| {
                out.extend_from_slice(&c);
                true
            })
            .unwrap();
            String::from_utf8(out).unwrap()
        };
        let want = |start: u64, end: u64| {
            records[start as usize..(end as usize).min(records.len())]
                .iter()
                .map(|r| format!("{r}\n"))
                .collect::<String>()
        };
        let n = records.len() as u64;
        assert_eq!(lines(0, None), want(0, n));
        for (start, end) in [
            (0, k - 1),
            (0, k),
            (0, k + 1),
            (1, k),
            (k - 1, k + 1),
            (k, 2 * k),
            (k, 2 * k + 1),
            (k + 1, n + 5),
            (n - 1, n),
        ] {
            assert_eq!(lines(start, Some(end)), want(start, end), "{start}..{end}");
        }
        assert_eq!(lines(k, None), want(k, n));
        assert_eq!(lines(n, None), "");
    }

    #[test]
    fn a_damaged_commit_file_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("output.yaml.commit"), "seven bytes").unwrap();
        assert!(matches!(
            JobLogFile::open(dir.path()),
            Err(LogError::BadCommit { .. })
        ));
        fs::write(dir.path().join("output.yaml.commit"), "3 999").unwrap();
        assert!(matches!(
            JobLogFile::open(dir.path()),
            Err(LogError::BadCommit { .. })
        ));
    }
}
