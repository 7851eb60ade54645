//! Container logs in Docker's json-file format: one JSON object per line,
//! `{"log":"hello\n","stream":"stdout","time":"2024-01-01T00:00:00.000000001Z"}`, in
//! `<dir>/container.log`, rotated to `container.log.1`, `.2` ... when `max_size` is reached,
//! keeping at most `max_file` files. Lines longer than 16 KiB are split, as Docker does.
//!
//! The shim is the only writer. Readers see whole lines only (a half-written last line is left
//! for the next read), and a follower keeps going across rotations until the container exits.

use super::{LogSpec, Stream};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const LOG_FILE: &str = "container.log";
/// Docker splits lines longer than this into several entries.
const MAX_LINE: usize = 16 * 1024;

/// One log line as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub stream: Stream,
    /// RFC 3339 with nanoseconds, UTC.
    pub time: String,
    /// The bytes of the line, including its trailing newline when it had one.
    pub line: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct JsonLine<'a> {
    log: std::borrow::Cow<'a, str>,
    stream: &'a str,
    time: std::borrow::Cow<'a, str>,
}

fn stream_name(s: Stream) -> &'static str {
    match s {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    }
}

/// Path of the current log file of a container dir.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

fn rotated(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{LOG_FILE}.{n}"))
}

/// Appends output to the log, splitting it into lines and rotating files.
pub struct Writer {
    dir: PathBuf,
    spec: LogSpec,
    file: File,
    size: u64,
    /// Bytes of an unfinished line per stream (stdout, stderr).
    partial: [Vec<u8>; 2],
}

impl Writer {
    pub fn open(dir: &Path, spec: &LogSpec) -> io::Result<Writer> {
        let p = path(dir);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| io::Error::new(e.kind(), format!("opening log {}: {e}", p.display())))?;
        let size = file.metadata()?.len();
        Ok(Writer {
            dir: dir.to_path_buf(),
            spec: spec.clone(),
            file,
            size,
            partial: [vec![], vec![]],
        })
    }

    /// Record output of `stream`; complete lines are written at once, the rest is kept.
    pub fn write(&mut self, stream: Stream, data: &[u8], now: SystemTime) -> io::Result<()> {
        let idx = stream as usize;
        let mut buf = std::mem::take(&mut self.partial[idx]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + nl + 1;
            self.entry(stream, &buf[start..end], now)?;
            start = end;
        }
        while buf.len() - start >= MAX_LINE {
            self.entry(stream, &buf[start..start + MAX_LINE], now)?;
            start += MAX_LINE;
        }
        buf.drain(..start);
        self.partial[idx] = buf;
        Ok(())
    }

    /// Write out unfinished lines (at end of output).
    pub fn flush(&mut self, now: SystemTime) -> io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.partial[stream as usize]);
            if !rest.is_empty() {
                self.entry(stream, &rest, now)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, stream: Stream, line: &[u8], now: SystemTime) -> io::Result<()> {
        let json = JsonLine {
            log: String::from_utf8_lossy(line),
            stream: stream_name(stream),
            time: crate::timefmt::format_system(now).into(),
        };
        let mut bytes =
            serde_json::to_vec(&json).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        bytes.push(b'\n');
        if self.spec.max_size > 0 && self.size > 0 && self.size + bytes.len() as u64 > self.spec.max_size {
            self.rotate()?;
        }
        self.file.write_all(&bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let current = path(&self.dir);
        if self.spec.max_file <= 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let keep = self.spec.max_file - 1;
        let _ = fs::remove_file(rotated(&self.dir, keep));
        for n in (1..keep).rev() {
            let from = rotated(&self.dir, n);
            if from.exists() {
                fs::rename(&from, rotated(&self.dir, n + 1))?;
            }
        }
        fs::rename(&current, rotated(&self.dir, 1))?;
        self.file = OpenOptions::new().create(true).append(true).open(&current)?;
        self.size = 0;
        Ok(())
    }
}

fn parse_line(line: &[u8]) -> Option<LogEntry> {
    let j: JsonLine = serde_json::from_slice(line).ok()?;
    let stream = match j.stream {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    Some(LogEntry {
        stream,
        time: j.time.into_owned(),
        line: j.log.into_owned().into_bytes(),
    })
}

/// Read whole lines from `r`, appending parsed entries; returns bytes consumed (a trailing
/// line without its newline is not consumed).
fn read_entries(r: &mut impl Read, out: &mut Vec<LogEntry>) -> io::Result<u64> {
    let mut reader = BufReader::new(r);
    let mut consumed = 0u64;
    let mut line = vec![];
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(consumed);
        }
        consumed += n as u64;
        if let Some(e) = parse_line(&line) {
            out.push(e);
        }
    }
}

fn rotated_files_oldest_first(dir: &Path) -> Vec<PathBuf> {
    let mut numbered: Vec<(u32, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n: u32 = name.strip_prefix(&format!("{LOG_FILE}."))?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    crate::sort::sort_by_key(&mut numbered, |(n, _)| std::cmp::Reverse(*n));
    numbered.into_iter().map(|(_, p)| p).collect()
}

fn filter(mut entries: Vec<LogEntry>, since: Option<SystemTime>, tail: Option<usize>) -> Vec<LogEntry> {
    if let Some(since) = since {
        entries.retain(|e| crate::timefmt::parse_system(&e.time).is_some_and(|t| t >= since));
    }
    if let Some(n) = tail {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    entries
}

/// Every stored line (oldest first), from `since` on, the last `tail` of them.
pub fn read(dir: &Path, since: Option<SystemTime>, tail: Option<usize>) -> io::Result<Vec<LogEntry>> {
    let mut entries = vec![];
    for p in rotated_files_oldest_first(dir) {
        if let Ok(mut f) = File::open(&p) {
            read_entries(&mut f, &mut entries)?;
        }
    }
    match File::open(path(dir)) {
        Ok(mut f) => {
            read_entries(&mut f, &mut entries)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("reading {}: {e}", path(dir).display()),
            ))
        }
    }
    Ok(filter(entries, since, tail))
}

/// Lines as they are written, after the stored ones; ends once the container has exited and
/// everything it wrote was returned. See [`follow`].
pub struct Follow {
    dir: PathBuf,
    file: Option<(File, u64)>,
    ready: std::collections::VecDeque<LogEntry>,
    finished: bool,
}

/// Follow the log: first what [`read`] would return, then new lines until the container exits.
pub fn follow(dir: &Path, since: Option<SystemTime>, tail: Option<usize>) -> io::Result<Follow> {
    // Open the current file first, so lines written while the old ones are read are not lost.
    let current = File::open(path(dir)).ok();
    let mut entries = vec![];
    for p in rotated_files_oldest_first(dir) {
        if let Ok(mut f) = File::open(&p) {
            read_entries(&mut f, &mut entries)?;
        }
    }
    let file = match current {
        Some(mut f) => {
            let pos = read_entries(&mut f, &mut entries)?;
            f.seek(SeekFrom::Start(pos))?;
            Some((f, pos))
        }
        None => None,
    };
    Ok(Follow {
        dir: dir.to_path_buf(),
        file,
        ready: filter(entries, since, tail).into(),
        finished: false,
    })
}

impl Follow {
    /// Follow only what is written from now on (an attach): the live file from its end.
    /// A half-written last line is skipped whole (its tail does not parse).
    ///
    /// The file is created when the container has not written one yet (attach comes before
    /// start): a short-lived `run --rm` container can exit and have its directory removed
    /// before a follower polls again, and only a descriptor opened now still reads its output.
    pub fn from_end(dir: &Path) -> Follow {
        let opened = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path(dir));
        let file = opened.ok().and_then(|mut f| {
            let end = f.seek(SeekFrom::End(0)).ok()?;
            Some((f, end))
        });
        Follow {
            dir: dir.to_path_buf(),
            file,
            ready: Default::default(),
            finished: false,
        }
    }

    /// The stored lines [`follow`] read before its position (the reader takes them once).
    pub fn take_stored(&mut self) -> Vec<LogEntry> {
        self.ready.drain(..).collect()
    }

    /// Lines appended since the last call, without waiting; the caller decides when the
    /// container's end makes this the last call.
    pub fn poll_new(&mut self) -> io::Result<Vec<LogEntry>> {
        self.poll_file()?;
        Ok(self.ready.drain(..).collect())
    }

    /// Read whatever is new; returns true if anything came.
    fn poll_file(&mut self) -> io::Result<bool> {
        let mut got = vec![];
        if let Some((f, pos)) = &mut self.file {
            let n = read_entries(f, &mut got)?;
            *pos += n;
            f.seek(SeekFrom::Start(*pos))?;
        }
        // Rotated or created since: finish the old file (done above), then switch.
        let current_ino = fs::metadata(path(&self.dir)).ok().map(|m| m.ino());
        let open_ino = self
            .file
            .as_ref()
            .and_then(|(f, _)| f.metadata().ok())
            .map(|m| m.ino());
        if current_ino.is_some() && current_ino != open_ino {
            if let Ok(mut f) = File::open(path(&self.dir)) {
                let pos = read_entries(&mut f, &mut got)?;
                f.seek(SeekFrom::Start(pos))?;
                self.file = Some((f, pos));
            }
        }
        let any = !got.is_empty();
        self.ready.extend(got);
        Ok(any)
    }
}

impl Iterator for Follow {
    type Item = io::Result<LogEntry>;

    fn next(&mut self) -> Option<io::Result<LogEntry>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(Ok(e));
            }
            if self.finished {
                return None;
            }
            // Check for the exit before reading, so the last read sees everything written.
            let exited = self.dir.join(super::EXIT_FILE).exists();
            match self.poll_file() {
                Err(e) => return Some(Err(e)),
                Ok(true) => continue,
                Ok(false) if exited => self.finished = true,
                Ok(false) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("shoal-logs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn lines_split_per_stream_and_read_back_in_docker_format() {
        let d = temp("basic");
        let mut w = Writer::open(&d, &LogSpec::default()).unwrap();
        let t = UNIX_EPOCH + Duration::from_secs(100);
        w.write(Stream::Stdout, b"hel", t).unwrap();
        w.write(Stream::Stderr, b"oops\n", t).unwrap();
        w.write(Stream::Stdout, b"lo\nwor", t).unwrap();
        w.flush(t).unwrap();
        let text = fs::read_to_string(path(&d)).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            r#"{"log":"oops\n","stream":"stderr","time":"1970-01-01T00:01:40.000000000Z"}"#
        );
        let e = read(&d, None, None).unwrap();
        let lines: Vec<_> = e.iter().map(|e| (e.stream, e.line.clone())).collect();
        assert_eq!(
            lines,
            vec![
                (Stream::Stderr, b"oops\n".to_vec()),
                (Stream::Stdout, b"hello\n".to_vec()),
                (Stream::Stdout, b"wor".to_vec())
            ]
        );
        assert_eq!(read(&d, None, Some(1)).unwrap()[0].line, b"wor");
        assert!(read(&d, Some(t + Duration::from_secs(1)), None)
            .unwrap()
            .is_empty());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_attach_reads_output_of_a_container_removed_before_it_polled() {
        // Attach before start: no log file yet. The container writes, exits and its
        // directory is removed (`run --rm`) before the follower's next poll.
        let d = temp("attach-race");
        let mut follow = Follow::from_end(&d);
        let mut w = Writer::open(&d, &LogSpec::default()).unwrap();
        w.write(Stream::Stdout, b"app\n", SystemTime::now()).unwrap();
        w.flush(SystemTime::now()).unwrap();
        drop(w);
        fs::remove_dir_all(&d).unwrap();
        let got = follow.poll_new().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].line, b"app\n");
    }

    #[test]
    fn rotation_keeps_max_file_files_and_order() {
        let d = temp("rotate");
        let spec = LogSpec {
            max_size: 200,
            max_file: 3,
        };
        let mut w = Writer::open(&d, &spec).unwrap();
        for i in 0..20 {
            w.write(
                Stream::Stdout,
                format!("line {i}\n").as_bytes(),
                SystemTime::now(),
            )
            .unwrap();
        }
        assert!(rotated(&d, 1).exists() && rotated(&d, 2).exists() && !rotated(&d, 3).exists());
        for p in [path(&d), rotated(&d, 1), rotated(&d, 2)] {
            assert!(fs::metadata(&p).unwrap().len() <= 200);
        }
        let e = read(&d, None, None).unwrap();
        assert_eq!(e.last().unwrap().line, b"line 19\n");
        let nums: Vec<u32> = e
            .iter()
            .map(|e| {
                String::from_utf8_lossy(&e.line)
                    .trim()
                    .trim_start_matches("line ")
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        assert!(nums[0] > 0, "oldest lines were dropped");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn long_lines_are_split_and_half_lines_not_read() {
        let d = temp("long");
        let mut w = Writer::open(&d, &LogSpec::default()).unwrap();
        w.write(Stream::Stdout, &vec![b'x'; MAX_LINE + 10], SystemTime::now())
            .unwrap();
        let e = read(&d, None, None).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line.len(), MAX_LINE);
        let mut f = OpenOptions::new().append(true).open(path(&d)).unwrap();
        f.write_all(br#"{"log":"half"#).unwrap();
        assert_eq!(read(&d, None, None).unwrap().len(), 1);
        fs::remove_dir_all(&d).unwrap();
    }
}
