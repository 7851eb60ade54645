//! The shim's socket protocol: length-prefixed frames `[kind u8][len u32 BE][payload]` on a
//! unix stream socket in the container dir. A connection that sends nothing just waits: the
//! shim closes every connection when the container has exited and `exit.json` is written, so
//! EOF means "exited".

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Client → shim: bytes for the container's stdin.
pub const STDIN: u8 = 0;
/// Shim → client: output.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// Client → shim: close the container's stdin.
pub const CLOSE_STDIN: u8 = 3;
/// Client → shim: resize the tty; payload rows u16 BE, cols u16 BE.
pub const RESIZE: u8 = 4;
/// Client → shim: send a signal to the container's init; payload i32 BE.
pub const KILL: u8 = 5;
/// Shim → client: the request succeeded / failed (payload: message).
pub const OK: u8 = 6;
pub const ERR: u8 = 7;
/// Client → shim: send me the container's output from now on.
pub const ATTACH: u8 = 8;

/// Larger frames are a protocol error (the shim never sends more than a pipe read).
pub const MAX_PAYLOAD: usize = 1 << 20;

pub const SOCKET: &str = "shim.sock";

pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + payload.len());
    v.push(kind);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    w.write_all(&encode(kind, payload))
}

/// Read one frame; `Ok(None)` on a clean EOF between frames.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "shim socket: truncated frame",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("shim socket: frame of {len} bytes"),
        ));
    }
    let mut payload = vec![0; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

/// Incremental decoder for a non-blocking reader.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, or an error for an oversized one.
    pub fn next_frame(&mut self) -> io::Result<Option<(u8, Vec<u8>)>> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {len} bytes"),
            ));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let kind = self.buf[0];
        let payload = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Ok(Some((kind, payload)))
    }
}

/// The socket's address. sun_path holds only 108 bytes, so a long container dir is reached
/// through /proc/self/fd of an O_PATH handle on the directory.
fn with_short_path<T>(dir: &Path, f: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    let full = dir.join(SOCKET);
    if full.as_os_str().len() < 100 {
        return f(&full);
    }
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)?;
    f(&Path::new(&format!("/proc/self/fd/{}", handle.as_raw_fd())).join(SOCKET))
}

pub fn connect(dir: &Path) -> io::Result<UnixStream> {
    with_short_path(dir, |p| UnixStream::connect(p)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("connecting to the shim of {}: {e}", dir.display()),
        )
    })
}

pub fn bind(dir: &Path) -> io::Result<UnixListener> {
    let _ = std::fs::remove_file(dir.join(SOCKET));
    with_short_path(dir, |p| UnixListener::bind(p))
        .map_err(|e| io::Error::new(e.kind(), format!("binding {}: {e}", dir.join(SOCKET).display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_roundtrip_whole_and_in_pieces() {
        let mut bytes = encode(STDOUT, b"hello");
        bytes.extend(encode(RESIZE, &[0, 24, 0, 80]));
        let mut r = &bytes[..];
        assert_eq!(read_frame(&mut r).unwrap(), Some((STDOUT, b"hello".to_vec())));
        assert_eq!(read_frame(&mut r).unwrap(), Some((RESIZE, vec![0, 24, 0, 80])));
        assert_eq!(read_frame(&mut r).unwrap(), None);
        let mut d = Decoder::default();
        for b in &bytes {
            d.push(&[*b]);
        }
        assert_eq!(d.next_frame().unwrap(), Some((STDOUT, b"hello".to_vec())));
        assert_eq!(d.next_frame().unwrap(), Some((RESIZE, vec![0, 24, 0, 80])));
        assert_eq!(d.next_frame().unwrap(), None);
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let mut d = Decoder::default();
        d.push(&[STDIN, 0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_frame().is_err());
        let mut r: &[u8] = &[STDOUT, 0, 0];
        assert!(read_frame(&mut r).is_err());
    }
}
