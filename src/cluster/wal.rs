//! The raft write-ahead log: hard state and entries in append-only segment files, plus the
//! latest snapshot in its own file.
//!
//! Layout under the WAL directory: `snapshot` (a CRC-checked postcard [`Snapshot`], replaced
//! atomically) and segments `<first sequence number, 16 hex digits>.wal`. A segment is a run of
//! records `[len: u32 LE][crc32 of payload: u32 LE][payload: postcard Record]`.
//!
//! Guarantees:
//! - [`Wal::save`] returns only once everything it was given is durable (fdatasync), so the
//!   driver may then send the messages that depend on it. The hard state goes first, so a
//!   torn write never leaves an entry or snapshot newer than the stored term.
//! - On [`Wal::open`] a torn tail of the last segment (a crash mid-append: a short header, a
//!   short payload, or a bad checksum on the final record) is cut off; any other damage is a
//!   [`WalError::Corrupt`] naming the file and offset, and the node must not start.
//! - Any I/O or fsync error is returned and is fatal: the caller stops the node (after a failed
//!   fsync the page cache may have dropped the data, so retrying could hide a loss).

use crate::raft::{Entry, HardState, Index, Snapshot, Stored, Term};
use crate::storage::atomic;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Start a new segment once the current one exceeds this.
pub const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
const HEADER: usize = 8;
/// A record larger than this is damage, not data.
const MAX_RECORD: u32 = 256 * 1024 * 1024;

#[derive(Debug)]
pub enum WalError {
    Io {
        path: PathBuf,
        op: &'static str,
        err: io::Error,
    },
    Corrupt {
        path: PathBuf,
        offset: u64,
        why: String,
    },
}

impl std::fmt::Display for WalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalError::Io { path, op, err } => write!(f, "{op} {}: {err}", path.display()),
            WalError::Corrupt { path, offset, why } => {
                write!(
                    f,
                    "raft log {} is corrupt at byte {offset}: {why}; refusing to start",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for WalError {}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> WalError + 'a {
    move |err| WalError::Io {
        path: path.to_path_buf(),
        op,
        err,
    }
}

#[derive(Serialize, Deserialize)]
enum Record {
    HardState(HardState),
    /// Entries from `entries[0].index` on; any stored entry at or after that index is replaced.
    Entries(Vec<Entry>),
    /// A received snapshot replaced the whole log.
    LogReset {
        index: Index,
        term: Term,
    },
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn encode(record: &Record, out: &mut Vec<u8>) {
    // Encoding plain data structs into a Vec cannot fail.
    let payload = postcard::to_allocvec(record).unwrap_or_default();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

struct Segment {
    seq: u64,
    path: PathBuf,
    /// Highest entry index recorded in it (0 if none).
    max_index: Index,
}

pub struct Wal {
    dir: PathBuf,
    segments: Vec<Segment>,
    file: File,
    size: u64,
    segment_bytes: u64,
    hard_state: HardState,
}

fn segment_name(seq: u64) -> String {
    format!("{seq:016x}.wal")
}

impl Wal {
    /// Open (or create) the WAL in `dir` and return what it holds.
    pub fn open(dir: &Path) -> Result<(Wal, Stored), WalError> {
        Wal::open_with(dir, SEGMENT_BYTES)
    }

    pub fn open_with(dir: &Path, segment_bytes: u64) -> Result<(Wal, Stored), WalError> {
        // Absolute, so syncing the parent directory works for a relative `dir` too.
        let dir = &std::path::absolute(dir).map_err(io_err(dir, "resolving"))?;
        atomic::create_dir_all(dir).map_err(io_err(dir, "creating"))?;
        let snapshot = read_snapshot(&dir.join("snapshot"))?;
        let mut seqs = Vec::new();
        for item in fs::read_dir(dir).map_err(io_err(dir, "listing"))? {
            let item = item.map_err(io_err(dir, "listing"))?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            if let Some(hex) = name.strip_suffix(".wal") {
                let seq = u64::from_str_radix(hex, 16).map_err(|e| WalError::Corrupt {
                    path: item.path(),
                    offset: 0,
                    why: format!("not a segment name: {e}"),
                })?;
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let mut stored = Stored {
            snapshot,
            ..Stored::default()
        };
        let mut segments = Vec::new();
        for (i, &seq) in seqs.iter().enumerate() {
            let path = dir.join(segment_name(seq));
            let last = i + 1 == seqs.len();
            let max_index = replay_segment(&path, last, &mut stored)?;
            segments.push(Segment { seq, path, max_index });
        }
        reconcile_with_snapshot(dir, &mut stored)?;
        if segments.is_empty() {
            let path = dir.join(segment_name(1));
            create_segment(dir, &path)?;
            segments.push(Segment {
                seq: 1,
                path,
                max_index: 0,
            });
        }
        let current = &segments[segments.len() - 1].path;
        let file = OpenOptions::new()
            .append(true)
            .open(current)
            .map_err(io_err(current, "opening"))?;
        let size = file.metadata().map_err(io_err(current, "reading size of"))?.len();
        let wal = Wal {
            dir: dir.to_path_buf(),
            segments,
            file,
            size,
            segment_bytes,
            hard_state: stored.hard_state.clone(),
        };
        Ok((wal, stored))
    }

    /// Make a Ready's state durable, in the order the raft driver loop requires.
    pub fn save(
        &mut self,
        hard_state: Option<&HardState>,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
    ) -> Result<(), WalError> {
        let mut buf = Vec::new();
        if let Some(hs) = hard_state {
            encode(&Record::HardState(hs.clone()), &mut buf);
            self.hard_state = hs.clone();
        }
        if let Some(snap) = snapshot {
            // The term must be durable before the snapshot that may carry a newer one.
            self.append(&buf)?;
            buf.clear();
            write_snapshot(&self.dir.join("snapshot"), snap)?;
            let reset = Record::LogReset {
                index: snap.meta.index,
                term: snap.meta.term,
            };
            encode(&reset, &mut buf);
        }
        if !entries.is_empty() {
            encode(&Record::Entries(entries.to_vec()), &mut buf);
            if let Some(seg) = self.segments.last_mut() {
                seg.max_index = seg.max_index.max(entries[entries.len() - 1].index);
            }
        }
        self.append(&buf)?;
        if self.size >= self.segment_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    /// Store a snapshot taken locally at `snapshot.meta.index` and delete segments that hold
    /// only entries it covers.
    pub fn compact(&mut self, snapshot: &Snapshot) -> Result<(), WalError> {
        write_snapshot(&self.dir.join("snapshot"), snapshot)?;
        while self.segments.len() > 1 && self.segments[0].max_index <= snapshot.meta.index {
            let seg = self.segments.remove(0);
            fs::remove_file(&seg.path).map_err(io_err(&seg.path, "removing"))?;
        }
        atomic::sync_dir(&self.dir).map_err(io_err(&self.dir, "syncing"))
    }

    fn append(&mut self, data: &[u8]) -> Result<(), WalError> {
        if data.is_empty() {
            return Ok(());
        }
        let path = &self.segments[self.segments.len() - 1].path;
        self.file.write_all(data).map_err(io_err(path, "writing"))?;
        self.file.sync_data().map_err(io_err(path, "syncing"))?;
        self.size += data.len() as u64;
        Ok(())
    }

    /// Start a new segment whose first record is the current hard state, so deleting older
    /// segments never loses it.
    fn rotate(&mut self) -> Result<(), WalError> {
        let seq = self.segments[self.segments.len() - 1].seq + 1;
        let path = self.dir.join(segment_name(seq));
        create_segment(&self.dir, &path)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path, "opening"))?;
        self.size = 0;
        self.segments.push(Segment {
            seq,
            path,
            max_index: 0,
        });
        let mut buf = Vec::new();
        encode(&Record::HardState(self.hard_state.clone()), &mut buf);
        self.append(&buf)
    }
}

fn create_segment(dir: &Path, path: &Path) -> Result<(), WalError> {
    File::create(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path, "creating"))?;
    atomic::sync_dir(dir).map_err(io_err(dir, "syncing"))
}

fn write_snapshot(path: &Path, snap: &Snapshot) -> Result<(), WalError> {
    let payload = postcard::to_allocvec(snap).unwrap_or_default();
    let mut data = crc32(&payload).to_le_bytes().to_vec();
    data.extend_from_slice(&payload);
    atomic::write(path, &data).map_err(io_err(path, "writing"))
}

fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, WalError> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(WalError::Io {
                path: path.to_path_buf(),
                op: "reading",
                err: e,
            })
        }
    };
    let corrupt = |why: String| WalError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        why,
    };
    let (crc, payload) = data
        .split_at_checked(4)
        .ok_or_else(|| corrupt("shorter than its checksum".into()))?;
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32(payload) != crc {
        return Err(corrupt("checksum mismatch".into()));
    }
    postcard::from_bytes(payload)
        .map(Some)
        .map_err(|e| corrupt(format!("undecodable: {e}")))
}

/// Apply one segment's records to `stored`; returns the highest entry index seen. In the last
/// segment a damaged final record is a torn write and is cut off.
fn replay_segment(path: &Path, last: bool, stored: &mut Stored) -> Result<Index, WalError> {
    let data = fs::read(path).map_err(io_err(path, "reading"))?;
    let mut offset = 0usize;
    let mut max_index = 0;
    while offset < data.len() {
        let damage = match parse_record(&data[offset..]) {
            Ok((record, len)) => {
                apply(record, stored, &mut max_index);
                offset += len;
                continue;
            }
            Err(damage) => damage,
        };
        let torn = last && (damage.reaches_end || data[offset..].iter().all(|&b| b == 0));
        if !torn {
            return Err(WalError::Corrupt {
                path: path.to_path_buf(),
                offset: offset as u64,
                why: damage.why,
            });
        }
        log::warn!(
            "{}: cutting a torn tail at byte {offset} ({})",
            path.display(),
            damage.why
        );
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path, "opening"))?;
        file.set_len(offset as u64).map_err(io_err(path, "truncating"))?;
        file.sync_all().map_err(io_err(path, "syncing"))?;
        break;
    }
    Ok(max_index)
}

struct Damage {
    why: String,
    /// The damaged record runs to the end of the file (what a crash mid-append leaves).
    reaches_end: bool,
}

fn parse_record(data: &[u8]) -> Result<(Record, usize), Damage> {
    let Some(header) = data.get(..HEADER) else {
        return Err(Damage {
            why: "short record header".into(),
            reaches_end: true,
        });
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD {
        return Err(Damage {
            why: format!("record length {len} is impossible"),
            reaches_end: false,
        });
    }
    let end = HEADER + len as usize;
    let Some(payload) = data.get(HEADER..end) else {
        return Err(Damage {
            why: format!("record of {len} bytes runs past the end"),
            reaches_end: true,
        });
    };
    let reaches_end = end == data.len();
    if crc32(payload) != crc {
        return Err(Damage {
            why: "checksum mismatch".into(),
            reaches_end,
        });
    }
    let record = postcard::from_bytes(payload).map_err(|e| Damage {
        why: format!("undecodable record: {e}"),
        reaches_end,
    })?;
    Ok((record, end))
}

fn apply(record: Record, stored: &mut Stored, max_index: &mut Index) {
    match record {
        Record::HardState(hs) => stored.hard_state = hs,
        Record::Entries(entries) => {
            let Some(first) = entries.first() else { return };
            stored.entries.retain(|e| e.index < first.index);
            *max_index = (*max_index).max(entries[entries.len() - 1].index);
            stored.entries.extend(entries);
        }
        Record::LogReset { .. } => stored.entries.clear(),
    }
}

/// Keep only the entries after the snapshot, and none at all if the log diverges from it
/// (a crash after storing a received snapshot but before recording the log reset).
fn reconcile_with_snapshot(dir: &Path, stored: &mut Stored) -> Result<(), WalError> {
    let Some(snap) = &stored.snapshot else {
        return Ok(());
    };
    let (index, term) = (snap.meta.index, snap.meta.term);
    if stored.entries.iter().any(|e| e.index == index && e.term != term) {
        stored.entries.clear();
    }
    stored.entries.retain(|e| e.index > index);
    match stored.entries.first() {
        Some(e) if e.index != index + 1 => Err(WalError::Corrupt {
            path: dir.to_path_buf(),
            offset: 0,
            why: format!("entries resume at {} but the snapshot ends at {index}", e.index),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Membership, Payload, SnapshotMeta};

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("shoal-wal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn entries(from: Index, to: Index, term: Term) -> Vec<Entry> {
        (from..=to)
            .map(|index| Entry {
                term,
                index,
                payload: Payload::Command(vec![index as u8; 10]),
            })
            .collect()
    }

    fn hs(term: Term, vote: u64, commit: Index) -> HardState {
        HardState {
            term,
            vote: Some(vote),
            commit,
        }
    }

    fn only_segment(dir: &Path) -> PathBuf {
        let mut segs: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "wal"))
            .collect();
        segs.sort();
        segs.pop().unwrap()
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn saves_and_reopens_with_overwrites() {
        let dir = temp_dir("roundtrip");
        let (mut wal, stored) = Wal::open(&dir).unwrap();
        assert!(stored.entries.is_empty() && stored.snapshot.is_none());
        wal.save(Some(&hs(1, 1, 0)), None, &entries(1, 5, 1)).unwrap();
        wal.save(Some(&hs(2, 2, 2)), None, &entries(3, 4, 2)).unwrap();
        drop(wal);
        let (_, stored) = Wal::open(&dir).unwrap();
        assert_eq!(stored.hard_state, hs(2, 2, 2));
        let terms: Vec<(Index, Term)> = stored.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(terms, vec![(1, 1), (2, 1), (3, 2), (4, 2)]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn torn_tail_of_last_segment_is_cut_and_writing_resumes() {
        let dir = temp_dir("torn");
        let (mut wal, _) = Wal::open(&dir).unwrap();
        wal.save(Some(&hs(1, 1, 0)), None, &entries(1, 3, 1)).unwrap();
        wal.save(None, None, &entries(4, 6, 1)).unwrap();
        drop(wal);
        let seg = only_segment(&dir);
        let len = fs::metadata(&seg).unwrap().len();
        let file = OpenOptions::new().write(true).open(&seg).unwrap();
        file.set_len(len - 5).unwrap();
        drop(file);
        let (mut wal, stored) = Wal::open(&dir).unwrap();
        assert_eq!(
            stored.entries.last().unwrap().index,
            3,
            "the torn batch 4..6 is dropped"
        );
        wal.save(None, None, &entries(4, 4, 2)).unwrap();
        drop(wal);
        let (_, stored) = Wal::open(&dir).unwrap();
        assert_eq!(stored.entries.last().map(|e| (e.index, e.term)), Some((4, 2)));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn zero_filled_tail_is_cut() {
        let dir = temp_dir("zeros");
        let (mut wal, _) = Wal::open(&dir).unwrap();
        wal.save(Some(&hs(1, 1, 0)), None, &entries(1, 2, 1)).unwrap();
        drop(wal);
        let seg = only_segment(&dir);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[0u8; 64]).unwrap();
        drop(f);
        let (_, stored) = Wal::open(&dir).unwrap();
        assert_eq!(stored.entries.len(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flipped_byte_before_the_tail_stops_with_file_and_offset() {
        let dir = temp_dir("flip");
        let (mut wal, _) = Wal::open(&dir).unwrap();
        wal.save(Some(&hs(1, 1, 0)), None, &entries(1, 3, 1)).unwrap();
        wal.save(None, None, &entries(4, 6, 1)).unwrap();
        drop(wal);
        let seg = only_segment(&dir);
        let mut data = fs::read(&seg).unwrap();
        data[20] ^= 0x40;
        fs::write(&seg, &data).unwrap();
        let err = Wal::open(&dir)
            .err()
            .expect("corruption must stop the node")
            .to_string();
        assert!(
            err.contains(&seg.display().to_string()) && err.contains("corrupt at byte"),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damage_in_an_older_segment_is_never_a_torn_tail() {
        let dir = temp_dir("older");
        let (mut wal, _) = Wal::open_with(&dir, 100).unwrap();
        for i in 1..=6 {
            wal.save(Some(&hs(1, 1, i - 1)), None, &entries(i, i, 1)).unwrap();
        }
        drop(wal);
        let mut segs: Vec<PathBuf> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        segs.sort();
        assert!(segs.len() >= 3, "expected rotation, got {segs:?}");
        let first = &segs[0];
        let len = fs::metadata(first).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(first)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let err = Wal::open(&dir)
            .err()
            .expect("an older segment's damage must stop the node")
            .to_string();
        assert!(err.contains(&first.display().to_string()), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compaction_drops_old_segments_and_keeps_the_hard_state() {
        let dir = temp_dir("compact");
        let (mut wal, _) = Wal::open_with(&dir, 200).unwrap();
        let first = hs(3, 2, 0);
        for i in 1..=20 {
            wal.save(if i == 1 { Some(&first) } else { None }, None, &entries(i, i, 3))
                .unwrap();
        }
        let segments = |dir: &Path| {
            fs::read_dir(dir)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "wal"))
                .count()
        };
        let before = segments(&dir);
        let snap = Snapshot {
            meta: SnapshotMeta {
                index: 15,
                term: 3,
                membership: Membership::voters(&[1, 2, 3]),
            },
            data: b"state".to_vec(),
        };
        wal.compact(&snap).unwrap();
        let after = segments(&dir);
        assert!(after < before, "segments {before} -> {after}");
        drop(wal);
        let (_, stored) = Wal::open(&dir).unwrap();
        assert_eq!(stored.hard_state, hs(3, 2, 0));
        assert_eq!(stored.snapshot.as_ref().map(|s| s.meta.index), Some(15));
        let indexes: Vec<Index> = stored.entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, (16..=20).collect::<Vec<_>>());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn received_snapshot_discards_the_whole_old_log() {
        let dir = temp_dir("reset");
        let (mut wal, _) = Wal::open(&dir).unwrap();
        wal.save(Some(&hs(1, 1, 2)), None, &entries(1, 10, 1)).unwrap();
        let snap = Snapshot {
            meta: SnapshotMeta {
                index: 5,
                term: 2,
                membership: Membership::voters(&[1]),
            },
            data: vec![],
        };
        wal.save(Some(&hs(2, 0, 5)), Some(&snap), &[]).unwrap();
        drop(wal);
        let (_, stored) = Wal::open(&dir).unwrap();
        assert!(
            stored.entries.is_empty(),
            "stale entries 6..10 must not survive the snapshot"
        );
        assert_eq!(stored.snapshot.unwrap().meta.index, 5);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn crash_between_snapshot_file_and_log_reset_drops_the_divergent_suffix() {
        let dir = temp_dir("reset-crash");
        let (mut wal, _) = Wal::open(&dir).unwrap();
        wal.save(Some(&hs(1, 1, 2)), None, &entries(1, 10, 1)).unwrap();
        drop(wal);
        let snap = Snapshot {
            meta: SnapshotMeta {
                index: 5,
                term: 2,
                membership: Membership::voters(&[1]),
            },
            data: vec![],
        };
        write_snapshot(&dir.join("snapshot"), &snap).unwrap();
        let (_, stored) = Wal::open(&dir).unwrap();
        assert!(stored.entries.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_snapshot_file_stops() {
        let dir = temp_dir("badsnap");
        let (wal, _) = Wal::open(&dir).unwrap();
        drop(wal);
        fs::write(dir.join("snapshot"), b"\x01\x02\x03\x04garbage").unwrap();
        let err = Wal::open(&dir)
            .err()
            .expect("a bad snapshot must stop the node")
            .to_string();
        assert!(err.contains("snapshot") && err.contains("checksum"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
