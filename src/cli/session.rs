//! An attached session over a hijacked connection: local stdin → container, container →
//! local stdout/stderr (raw with a TTY, demultiplexed without), and the detach key sequence
//! (`ctrl-p,ctrl-q` by default) that leaves the container running.
//!
//! Guarantees: the detach sequence is never forwarded once complete; a partial sequence
//! followed by another key is forwarded unchanged (as docker's escape proxy does); the
//! detector is pure and unit-tested. End of local stdin half-closes the connection so the
//! container sees EOF while its output keeps flowing.

use crate::api::client::{copy_demuxed, Hijacked};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Docker's default detach keys.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// Parse docker's `--detach-keys` syntax: comma-separated `ctrl-<c>` or single characters.
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for key in spec.split(',') {
        let bad = || format!("Invalid detach keys ({spec}) provided");
        if let Some(c) = key.strip_prefix("ctrl-") {
            let c = c.to_ascii_lowercase();
            let b = match c.as_bytes() {
                [b'@'] => 0,
                [l @ b'a'..=b'z'] => l - b'a' + 1,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(bad()),
            };
            out.push(b);
        } else if key.len() == 1 {
            out.push(key.as_bytes()[0]);
        } else {
            return Err(bad());
        }
    }
    if out.is_empty() {
        return Err(format!("Invalid detach keys ({spec}) provided"));
    }
    Ok(out)
}

/// Watches input for the detach sequence.
#[derive(Debug)]
pub struct EscapeDetector {
    keys: Vec<u8>,
    matched: usize,
}

/// What to do with a piece of input.
#[derive(Debug, PartialEq, Eq)]
pub struct Fed {
    /// Bytes to send to the container now.
    pub forward: Vec<u8>,
    /// The whole sequence was typed: detach.
    pub detached: bool,
}

impl EscapeDetector {
    pub fn new(keys: Vec<u8>) -> Self {
        EscapeDetector { keys, matched: 0 }
    }

    pub fn feed(&mut self, input: &[u8]) -> Fed {
        let mut forward = Vec::with_capacity(input.len());
        for &b in input {
            if self.keys.is_empty() {
                forward.push(b);
                continue;
            }
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return Fed {
                        forward,
                        detached: true,
                    };
                }
                continue;
            }
            // A broken partial match: the held keys were ordinary input after all.
            forward.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
            } else {
                forward.push(b);
            }
        }
        Fed {
            forward,
            detached: false,
        }
    }
}

/// How long the daemon gets to end the stream after the detach keys were sent.
const DETACH_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The container's output stream closed.
    Eof,
    /// The user typed the detach sequence.
    Detached,
}

/// Pump a hijacked stream until the output ends or the user detaches. Returns how it ended
/// and any daemon error text carried on stream 3.
pub fn run(
    h: Hijacked,
    tty: bool,
    forward_stdin: bool,
    detach_keys: Vec<u8>,
) -> io::Result<(Ended, Option<String>)> {
    let detached = Arc::new(AtomicBool::new(false));
    let stream = h.stream;
    if forward_stdin {
        let mut writer = stream.try_clone()?;
        let flag = detached.clone();
        std::thread::Builder::new().name("stdin".into()).spawn(move || {
            let keys = if tty { detach_keys } else { Vec::new() };
            let mut detector = EscapeDetector::new(keys.clone());
            let mut stdin = io::stdin().lock();
            let mut buf = [0u8; 4096];
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        // Local EOF: let the container see EOF, keep reading its output.
                        let _ = writer.shutdown(Shutdown::Write);
                        return;
                    }
                    Ok(n) => n,
                };
                let fed = detector.feed(&buf[..n]);
                if !fed.forward.is_empty() && writer.write_all(&fed.forward).is_err() {
                    return;
                }
                if fed.detached {
                    flag.store(true, Ordering::SeqCst);
                    // The daemon watches for the same keys and detaches without closing the
                    // container's stdin; send them, give it a moment to end the stream, and
                    // only then cut the connection ourselves.
                    let _ = writer.write_all(&keys);
                    std::thread::sleep(DETACH_GRACE);
                    let _ = writer.shutdown(Shutdown::Both);
                    return;
                }
            }
        })?;
    }
    let source = io::Cursor::new(h.early).chain(stream);
    let stdout = io::stdout();
    let stderr = io::stderr();
    let result = if tty {
        copy_raw(source, &mut stdout.lock()).map(|_| None)
    } else {
        copy_demuxed(source, &mut stdout.lock(), &mut stderr.lock())
    };
    if detached.load(Ordering::SeqCst) {
        return Ok((Ended::Detached, None));
    }
    match result {
        Ok(system) => Ok((Ended::Eof, system)),
        // The daemon closing the connection hard is still the end of output.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ) =>
        {
            Ok((Ended::Eof, None))
        }
        Err(e) => Err(e),
    }
}

/// Copy bytes as they arrive, flushing each piece (an interactive shell's prompt has no newline).
pub fn copy_raw<R: Read, W: Write>(mut src: R, out: &mut W) -> io::Result<u64> {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        out.flush()?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_key_syntax() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q"), Ok(vec![16, 17]));
        assert_eq!(parse_detach_keys("ctrl-a,x"), Ok(vec![1, b'x']));
        assert_eq!(parse_detach_keys("ctrl-@,ctrl-["), Ok(vec![0, 27]));
        assert!(parse_detach_keys("ctrl-").is_err());
        assert!(parse_detach_keys("ab").is_err());
        assert!(parse_detach_keys("").is_err());
    }

    #[test]
    fn detector_detaches_only_on_the_full_sequence() {
        let mut d = EscapeDetector::new(vec![16, 17]);
        assert_eq!(
            d.feed(b"ls\r"),
            Fed {
                forward: b"ls\r".to_vec(),
                detached: false
            }
        );
        // Sequence split across reads, with input before it.
        assert_eq!(
            d.feed(&[b'a', 16]),
            Fed {
                forward: b"a".to_vec(),
                detached: false
            }
        );
        assert_eq!(
            d.feed(&[17, b'z']),
            Fed {
                forward: vec![],
                detached: true
            }
        );
    }

    #[test]
    fn detector_forwards_broken_partial_matches() {
        let mut d = EscapeDetector::new(vec![16, 17]);
        assert_eq!(
            d.feed(&[16, b'x']),
            Fed {
                forward: vec![16, b'x'],
                detached: false
            }
        );
        assert_eq!(
            d.feed(&[16, 16, 17]),
            Fed {
                forward: vec![16],
                detached: true
            }
        );
        let mut none = EscapeDetector::new(vec![]);
        assert_eq!(
            none.feed(&[16, 17]),
            Fed {
                forward: vec![16, 17],
                detached: false
            }
        );
    }

    #[test]
    fn raw_copy_passes_bytes_through() {
        let mut out = Vec::new();
        assert_eq!(copy_raw(&b"prompt$ "[..], &mut out).unwrap(), 8);
        assert_eq!(out, b"prompt$ ");
    }
}
