//! A line index of a job's log, for the log viewer: where each line starts, its level, the
//! actions' sections (`start: 1.2 name ...` to `end: 1.2 name ...`) and the first error, so
//! that any range of lines of a 100 MiB log is read with one positioned read and the page can
//! filter and fold without the server reading the log again.
//!
//! An index costs 9 bytes a line (8 for the offset, 1 for the level): about 9 MiB for a
//! 100 MiB log of 1 M lines. It is built on first use by one pass over the committed log and
//! extended from where it stopped while the job runs ([`LogIndex::update`]); [`IndexCache`]
//! keeps the indexes of the few logs viewed last. It is not written to disk: building one
//! is a sequential read of the log (about 0.2 s for 100 MiB from the page cache).

use super::record::{self, Level, LevelMask, Msg};
use crate::logs::{self, LogError};
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One action's section of the log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Section {
    /// The action's level (`1.2.3`).
    pub level: String,
    /// The action's name (`tftp-deploy`).
    pub name: String,
    /// The line of its `start:` (0-based).
    pub start: u64,
    /// The line of its `end:`; `None` while it runs (or when the log stops inside it).
    pub end: Option<u64>,
}

/// The index of one log.
#[derive(Debug, Default)]
pub struct LogIndex {
    /// The start of each line, and the end of the last one (`offsets.len()` = lines + 1).
    offsets: Vec<u64>,
    /// Each line's [`Level`] code.
    levels: Vec<u8>,
    sections: Vec<Section>,
    /// Sections started and not ended, innermost last (indexes into `sections`).
    open: Vec<usize>,
    first_error: Option<u64>,
    /// Bumped whenever `sections` changes (the live stream sends them again then).
    sections_version: u64,
}

/// How much of the log one read of [`LogIndex::update`] takes.
const READ: usize = 1 << 20;

/// The longest line indexed: a longer one (a damaged log) ends the index there.
const MAX_LINE: usize = 64 << 20;

impl LogIndex {
    /// An empty index (no line yet).
    pub fn new() -> LogIndex {
        LogIndex {
            offsets: vec![0],
            ..LogIndex::default()
        }
    }

    /// Lines indexed.
    pub fn lines(&self) -> u64 {
        self.levels.len() as u64
    }

    /// Bytes of the log indexed (whole lines).
    pub fn bytes(&self) -> u64 {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// The level codes of lines `from..` (one byte a line).
    pub fn levels_from(&self, from: u64) -> &[u8] {
        self.levels.get(from as usize..).unwrap_or(&[])
    }

    /// The level of line `n`.
    pub fn level(&self, n: u64) -> Option<Level> {
        self.levels
            .get(n as usize)
            .and_then(|c| Level::from_code(*c))
    }

    /// The sections, in the order they start.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// Changes whenever [`LogIndex::sections`] does.
    pub fn sections_version(&self) -> u64 {
        self.sections_version
    }

    /// The first line of level `error` or `exception`.
    pub fn first_error(&self) -> Option<u64> {
        self.first_error
    }

    /// The byte range of lines `start..end` (clamped to the lines indexed).
    pub fn byte_range(&self, start: u64, end: u64) -> (u64, u64) {
        let n = self.lines();
        let (s, e) = (start.min(n) as usize, end.min(n) as usize);
        (self.offsets[s], self.offsets[e.max(s)])
    }

    /// The lines of `mask` among `start..end`, at most `limit` of them, as line numbers.
    pub fn matching(&self, mask: LevelMask, start: u64, end: u64, limit: usize) -> Vec<u64> {
        let n = self.lines();
        (start.min(n)..end.min(n))
            .filter(|i| mask.0 & (1 << self.levels[*i as usize]) != 0)
            .take(limit)
            .collect()
    }

    /// Indexes the lines committed since the last call, reading the log in `dir`. A log
    /// shorter than what is indexed (it was replaced) is indexed again from its start.
    pub fn update(&mut self, dir: &Path) -> Result<(), LogError> {
        let mut offset = self.bytes();
        if logs::committed(dir)?.bytes < offset {
            *self = LogIndex::new();
            offset = 0;
        }
        loop {
            let (chunk, _) = logs::read_from(dir, offset, READ)?;
            if chunk.is_empty() {
                return Ok(());
            }
            let mut pos = 0;
            while let Some(k) = memchr::memchr(b'\n', &chunk[pos..]) {
                self.push(&chunk[pos..pos + k + 1], offset + (pos + k + 1) as u64);
                pos += k + 1;
            }
            if pos == 0 {
                // one line longer than a read: read more of it (a record is at most 64 KiB
                // as basalt writes it; this bounds what a damaged log costs)
                let mut max = READ;
                loop {
                    max = max.saturating_mul(2);
                    let (long, _) = logs::read_from(dir, offset, max)?;
                    if let Some(k) = memchr::memchr(b'\n', &long) {
                        self.push(&long[..k + 1], offset + (k + 1) as u64);
                        offset += (k + 1) as u64;
                        break;
                    }
                    if long.len() < max || max >= MAX_LINE {
                        // the end of the committed log, or no end in sight: not a line yet
                        return Ok(());
                    }
                }
                continue;
            }
            offset += pos as u64;
        }
    }

    fn push(&mut self, line: &[u8], end: u64) {
        let n = self.lines();
        let level = record::level_of(line);
        self.levels.push(level as u8);
        self.offsets.push(end);
        match level {
            Level::Error | Level::Exception if self.first_error.is_none() => {
                self.first_error = Some(n);
            }
            Level::Info | Level::Debug => self.section_mark(line, n),
            _ => {}
        }
    }

    /// Notes an action's `start:` or `end:` line.
    fn section_mark(&mut self, line: &[u8], n: u64) {
        // cheap test first: most info and debug lines are neither
        if memchr::memmem::find(line, b"\"msg\": \"start: ").is_none()
            && memchr::memmem::find(line, b"\"msg\": \"end: ").is_none()
        {
            return;
        }
        let rec = record::parse(line);
        let Msg::Str(msg) = &rec.msg else {
            return;
        };
        let (start, rest) = if let Some(r) = msg.strip_prefix("start: ") {
            (true, r)
        } else if let Some(r) = msg.strip_prefix("end: ") {
            (false, r)
        } else {
            return;
        };
        let mut words = rest.split(' ');
        let (Some(level), Some(name)) = (words.next(), words.next()) else {
            return;
        };
        if level.is_empty() || !level.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return;
        }
        if start {
            self.open.push(self.sections.len());
            self.sections.push(Section {
                level: level.to_string(),
                name: name.to_string(),
                start: n,
                end: None,
            });
        } else if let Some(pos) = self
            .open
            .iter()
            .rposition(|i| self.sections[*i].level == level)
        {
            // sections nested in it that never ended end with it
            for i in self.open.drain(pos..) {
                self.sections[i].end = Some(n);
            }
        } else {
            return;
        }
        self.sections_version += 1;
    }
}

/// One line as the viewer gets it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Line {
    /// 0-based line number.
    pub n: u64,
    pub level: Level,
    pub dt: String,
    /// The message as shown ([`record::display`]).
    pub msg: String,
}

impl serde::Serialize for Level {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Reads lines `start..end` of the log in `dir` with the index, keeping those of `mask`.
pub fn read_lines(
    index: &LogIndex,
    dir: &Path,
    start: u64,
    end: u64,
    mask: LevelMask,
) -> Result<Vec<Line>, LogError> {
    let (from, to) = index.byte_range(start, end);
    if to <= from {
        return Ok(Vec::new());
    }
    let path = dir.join("output.yaml");
    let io = |source| LogError::Io {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::open(&path).map_err(io)?;
    let mut buf = vec![0u8; (to - from) as usize];
    file.read_exact_at(&mut buf, from).map_err(io)?;
    let mut out = Vec::new();
    for (n, line) in (start..).zip(buf.split_inclusive(|b| *b == b'\n')) {
        if index.level(n).is_some_and(|l| mask.has(l)) {
            let r = record::parse(line);
            out.push(Line {
                n,
                level: r.level,
                dt: r.dt.into_owned(),
                msg: record::display(r.msg.text()).into_owned(),
            });
        }
    }
    Ok(out)
}

/// A log's index and when it was last asked for (the cache's clock).
type Cached = (u64, Arc<Mutex<LogIndex>>);

/// The indexes of the logs viewed last (at most [`IndexCache::CAPACITY`]), each behind its
/// own lock so that two jobs' logs are indexed at once.
#[derive(Default)]
pub struct IndexCache {
    entries: Mutex<HashMap<PathBuf, Cached>>,
    clock: std::sync::atomic::AtomicU64,
}

impl IndexCache {
    /// How many logs' indexes are kept.
    pub const CAPACITY: usize = 8;

    /// The index of the log in `dir`, brought up to date (blocking: call it off the async
    /// threads).
    pub fn get(&self, dir: &Path) -> Result<Arc<Mutex<LogIndex>>, LogError> {
        let tick = self
            .clock
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let index = {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if !entries.contains_key(dir) && entries.len() >= Self::CAPACITY {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, (t, _))| *t)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    entries.remove(&k);
                }
            }
            let e = entries
                .entry(dir.to_path_buf())
                .or_insert_with(|| (tick, Arc::new(Mutex::new(LogIndex::new()))));
            e.0 = tick;
            e.1.clone()
        };
        index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(dir)?;
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::JobLogFile;

    fn rec(lvl: &str, msg: &str) -> String {
        format!("- {{\"dt\": \"t\", \"lvl\": \"{lvl}\", \"msg\": \"{msg}\"}}")
    }

    #[test]
    fn sections_levels_and_ranges_follow_a_growing_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = JobLogFile::open(dir.path()).unwrap();
        log.append(
            1,
            &[
                rec("info", "start: 1 tftp-deploy (timeout 00:01:00) [common]"),
                rec(
                    "debug",
                    "start: 1.1 download-retry (timeout 00:01:00) [common]",
                ),
                rec("debug", "downloading"),
                rec(
                    "debug",
                    "end: 1.1 download-retry (duration 00:00:01) [common]",
                ),
            ],
        )
        .unwrap();
        let mut index = LogIndex::new();
        index.update(dir.path()).unwrap();
        assert_eq!(index.lines(), 4);
        assert_eq!(index.sections().len(), 2);
        assert_eq!(index.sections()[1].end, Some(3));
        assert_eq!(index.sections()[0].end, None);
        log.append(
            5,
            &[
                rec("target", "U-Boot 2024.01"),
                rec("error", "boom"),
                rec("info", "end: 1 tftp-deploy (duration 00:00:02) [common]"),
            ],
        )
        .unwrap();
        index.update(dir.path()).unwrap();
        assert_eq!(index.lines(), 7);
        assert_eq!(index.sections()[0].end, Some(6));
        assert_eq!(index.first_error(), Some(5));
        assert_eq!(index.levels_from(4), &[Level::Target as u8, 3, 1]);
        let mask = LevelMask::parse("target,error").unwrap();
        assert_eq!(index.matching(mask, 0, 100, 10), vec![4, 5]);
        let lines = read_lines(&index, dir.path(), 2, 6, mask).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].n, lines[0].msg.as_str()), (4, "U-Boot 2024.01"));
        let all = read_lines(&index, dir.path(), 0, 100, LevelMask::ALL).unwrap();
        assert_eq!(all.len(), 7);
        assert_eq!(
            all[6].msg,
            "end: 1 tftp-deploy (duration 00:00:02) [common]"
        );
    }

    #[test]
    fn a_replaced_log_is_indexed_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = JobLogFile::open(dir.path()).unwrap();
        log.append(1, &[rec("info", "a"), rec("info", "b")])
            .unwrap();
        drop(log);
        let cache = IndexCache::default();
        assert_eq!(cache.get(dir.path()).unwrap().lock().unwrap().lines(), 2);
        std::fs::remove_file(dir.path().join("output.yaml")).unwrap();
        std::fs::remove_file(dir.path().join("output.yaml.commit")).unwrap();
        let mut log = JobLogFile::open(dir.path()).unwrap();
        log.append(1, &[rec("target", "only")]).unwrap();
        let index = cache.get(dir.path()).unwrap();
        let index = index.lock().unwrap();
        assert_eq!(index.lines(), 1);
        assert_eq!(index.level(0), Some(Level::Target));
    }
}
