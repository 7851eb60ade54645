//! Reading a container's logs: Docker's json-file format (one JSON object per line:
//! `{"log":"...","stream":"stdout","time":"RFC3339Nano"}`) in `container.log`, rotated by the
//! shim to `container.log.1`, `.2`, ... (higher is older).
//!
//! `read` returns what is on disk; a `Follower` then returns what is appended after that
//! exact point, across rotations, so `logs -f` and attach neither lose nor repeat a line.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Which output a log line came from (the multiplexed stream's type byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 1,
    Stderr = 2,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub stream: Stream,
    pub time: String,
    pub nanos: i128,
    pub data: Vec<u8>,
}

#[derive(Deserialize)]
struct Line {
    log: String,
    stream: String,
    time: String,
}

pub const LOG_FILE: &str = "container.log";

/// Parse one json-file line; `None` for anything garbled (a torn last line after a power cut).
pub fn parse_line(line: &[u8]) -> Option<LogEntry> {
    let l: Line = serde_json::from_slice(line).ok()?;
    let stream = match l.stream.as_str() {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let nanos = crate::timefmt::parse(&l.time)?;
    Some(LogEntry {
        stream,
        time: l.time,
        nanos,
        data: l.log.into_bytes(),
    })
}

/// Where in the live log file reading stopped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Position {
    ino: u64,
    offset: u64,
}

/// All entries on disk, oldest first, and the position at which to follow.
pub fn read(dir: &Path) -> io::Result<(Vec<LogEntry>, Position)> {
    let mut entries = Vec::new();
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = name
                .strip_prefix("container.log.")
                .and_then(|n| n.parse::<u32>().ok())
            {
                rotated.push((n, e.path()));
            }
        }
    }
    rotated.sort_by(|a, b| b.0.cmp(&a.0));
    for (_, path) in rotated {
        if let Ok(data) = fs::read(&path) {
            parse_into(&data, &mut entries);
        }
    }
    let live = dir.join(LOG_FILE);
    let mut pos = Position::default();
    match File::open(&live) {
        Ok(mut f) => {
            let mut data = Vec::new();
            f.read_to_end(&mut data)?;
            // Stop at the last complete line; the rest is read by the follower once whole.
            let complete = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            parse_into(&data[..complete], &mut entries);
            pos = Position {
                ino: f.metadata()?.ino(),
                offset: complete as u64,
            };
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok((entries, pos))
}

fn parse_into(data: &[u8], out: &mut Vec<LogEntry>) {
    out.extend(
        data.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(parse_line),
    );
}

/// Reads what is appended to the live log after a position, following rotations.
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    pos: Position,
    partial: Vec<u8>,
}

impl Follower {
    /// Follow from `pos` (as returned by `read`).
    pub fn new(dir: &Path, pos: Position) -> Follower {
        let path = dir.join(LOG_FILE);
        let file = File::open(&path)
            .ok()
            .filter(|f| f.metadata().is_ok_and(|m| m.ino() == pos.ino));
        let pos = if file.is_some() { pos } else { Position::default() };
        Follower {
            path,
            file,
            pos,
            partial: Vec::new(),
        }
    }

    /// Follow only what is written from now on.
    pub fn at_end(dir: &Path) -> Follower {
        let path = dir.join(LOG_FILE);
        let file = File::open(&path).ok();
        let pos = match &file {
            Some(f) => f
                .metadata()
                .map(|m| Position {
                    ino: m.ino(),
                    offset: m.len(),
                })
                .unwrap_or_default(),
            None => Position::default(),
        };
        // A half-written line at the end is skipped whole: its tail does not parse.
        Follower {
            path,
            file,
            pos,
            partial: Vec::new(),
        }
    }

    /// New complete entries since the last call.
    pub fn poll(&mut self) -> io::Result<Vec<LogEntry>> {
        let mut out = Vec::new();
        self.read_current(&mut out)?;
        // Rotated (the live name is a new file) or created since: finish the old, switch.
        if let Ok(meta) = fs::metadata(&self.path) {
            if self.file.is_none() || meta.ino() != self.pos.ino {
                self.read_current(&mut out)?;
                self.file = File::open(&self.path).ok();
                self.pos = Position {
                    ino: meta.ino(),
                    offset: 0,
                };
                self.partial.clear();
                self.read_current(&mut out)?;
            }
        }
        Ok(out)
    }

    fn read_current(&mut self, out: &mut Vec<LogEntry>) -> io::Result<()> {
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        f.seek(SeekFrom::Start(self.pos.offset))?;
        let mut data = Vec::new();
        f.read_to_end(&mut data)?;
        self.pos.offset += data.len() as u64;
        self.partial.extend_from_slice(&data);
        if let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') {
            let rest = self.partial.split_off(end + 1);
            parse_into(&self.partial, out);
            self.partial = rest;
        }
        Ok(())
    }
}

/// Which entries `docker logs` shows: `since`/`until` bounds, then the last `tail` of them.
pub fn select(
    entries: Vec<LogEntry>,
    since: Option<i128>,
    until: Option<i128>,
    tail: Option<usize>,
) -> Vec<LogEntry> {
    let mut v: Vec<LogEntry> = entries
        .into_iter()
        .filter(|e| since.is_none_or(|s| e.nanos >= s) && until.is_none_or(|u| e.nanos <= u))
        .collect();
    if let Some(t) = tail {
        let skip = v.len().saturating_sub(t);
        v.drain(..skip);
    }
    v
}

/// A multiplexed-stream frame: type byte, three zero bytes, big-endian length, payload.
pub fn frame(stream: Stream, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.push(stream as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(s: &str, stream: &str, t: i128) -> String {
        format!(
            "{}\n",
            serde_json::json!({"log": s, "stream": stream, "time": crate::timefmt::format_nanos(t)})
        )
    }

    #[test]
    fn reads_rotated_files_in_order_and_follows_across_rotation() {
        let dir = std::env::temp_dir().join(format!("shoal-logs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("container.log.2"), line("a\n", "stdout", 1)).unwrap();
        fs::write(dir.join("container.log.1"), line("b\n", "stderr", 2)).unwrap();
        let mut live = File::create(dir.join(LOG_FILE)).unwrap();
        live.write_all(line("c\n", "stdout", 3).as_bytes()).unwrap();
        live.write_all(b"{\"log\":\"torn").unwrap();
        let (entries, pos) = read(&dir).unwrap();
        let texts: Vec<_> = entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.data).into_owned())
            .collect();
        assert_eq!(texts, ["a\n", "b\n", "c\n"]);
        assert_eq!(entries[1].stream, Stream::Stderr);

        let mut f = Follower::new(&dir, pos);
        assert!(f.poll().unwrap().is_empty());
        // Finish the torn line, then rotate and write to a new live file.
        live.write_all(b"\",\"stream\":\"stdout\",\"time\":\"1970-01-01T00:00:00.000000004Z\"}\n")
            .unwrap();
        fs::rename(dir.join(LOG_FILE), dir.join("container.log.1")).unwrap();
        fs::write(dir.join(LOG_FILE), line("e\n", "stdout", 5)).unwrap();
        let got: Vec<_> = f
            .poll()
            .unwrap()
            .iter()
            .map(|e| String::from_utf8_lossy(&e.data).into_owned())
            .collect();
        assert_eq!(got, ["torn", "e\n"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn select_applies_since_until_tail() {
        let mk = |n| LogEntry {
            stream: Stream::Stdout,
            time: String::new(),
            nanos: n,
            data: vec![],
        };
        let all: Vec<_> = (1..=5).map(mk).collect();
        let got: Vec<_> = select(all.clone(), Some(2), Some(4), None)
            .iter()
            .map(|e| e.nanos)
            .collect();
        assert_eq!(got, [2, 3, 4]);
        let got: Vec<_> = select(all, None, None, Some(2)).iter().map(|e| e.nanos).collect();
        assert_eq!(got, [4, 5]);
    }

    #[test]
    fn frames_have_docker_header() {
        assert_eq!(frame(Stream::Stderr, b"hi"), [2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
        assert!(parse_line(b"not json").is_none());
    }
}
