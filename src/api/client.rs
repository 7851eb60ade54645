//! A small blocking HTTP/1.1 client for the daemon's Docker Engine API over a unix socket.
//!
//! Guarantees:
//! - every request goes to `/v1.44<path>` on a fresh connection (`Connection: close`), so a
//!   response body ends where the server says (Content-Length, chunked, or end of stream);
//! - JSON bodies, streamed bodies (a tar from a file or stdin, sent chunked when its length is
//!   unknown) and the hijack upgrade used by attach/exec (the raw stream is handed back, with
//!   any bytes the server sent right after its head);
//! - an API error (status >= 400) becomes [`ClientError::Api`] carrying the daemon's
//!   `{"message": ...}`, printed the way docker prints it;
//! - the pure pieces (response head parsing, chunked decoding, the multiplexed stream
//!   demuxer) work on any reader or byte slice and are unit-tested without a daemon.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// The API version this client speaks; paths are prefixed with `/v{API_VERSION}`.
pub const API_VERSION: &str = "1.44";
/// Where the daemon listens unless `-H` or `SHOAL_HOST` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/shoal/shoal.sock";
/// Environment variable naming the daemon, as `DOCKER_HOST` does for docker.
pub const HOST_ENV: &str = "SHOAL_HOST";

/// Everything that can go wrong talking to the daemon.
#[derive(Debug)]
pub enum ClientError {
    /// The socket could not be reached: the daemon is not running or the path is wrong.
    Connect { host: String, source: io::Error },
    /// `-H`/`SHOAL_HOST` named something other than `unix://PATH` or a path.
    BadHost(String),
    /// Reading or writing the connection failed mid-request.
    Io(io::Error),
    /// The server's answer was not HTTP we understand.
    Protocol(String),
    /// The daemon answered with an error status and message.
    Api { status: u16, message: String },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect { host, .. } => {
                write!(
                    f,
                    "Cannot connect to the shoal daemon at {host}. Is the daemon running?"
                )
            }
            ClientError::BadHost(h) => write!(
                f,
                "unable to parse shoal host `{h}`: only unix://PATH is supported"
            ),
            ClientError::Io(e) => write!(f, "error during connect: {e}"),
            ClientError::Protocol(m) => write!(f, "protocol error talking to the daemon: {m}"),
            ClientError::Api { message, .. } => write!(f, "Error response from daemon: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

/// Turn `-H` / `SHOAL_HOST` / nothing into a socket path.
pub fn resolve_host(flag: Option<&str>, env: Option<&str>) -> Result<PathBuf, ClientError> {
    let raw = flag.or(env).filter(|s| !s.is_empty()).unwrap_or(DEFAULT_SOCKET);
    if let Some(path) = raw.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(ClientError::BadHost(raw.to_string()));
        }
        return Ok(PathBuf::from(path));
    }
    if raw.starts_with('/') {
        return Ok(PathBuf::from(raw));
    }
    Err(ClientError::BadHost(raw.to_string()))
}

/// A request body.
pub enum Body<'a> {
    Empty,
    Json(&'a serde_json::Value),
    /// Raw bytes with a content type (e.g. a tar already in memory).
    Bytes(&'a [u8], &'a str),
    /// A stream of unknown or known length (`Some(len)` sends Content-Length, else chunked).
    Stream(&'a mut dyn Read, Option<u64>, &'a str),
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A whole response read into memory.
#[derive(Debug)]
pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        if self.body.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ClientError::Protocol(format!("daemon sent invalid JSON: {e}")))
    }
}

/// A response whose body is read as it arrives (logs -f, stats, image load progress).
pub struct StreamingResponse {
    pub head: Head,
    pub body: BodyReader<BufReader<UnixStream>>,
}

/// A hijacked connection: the raw duplex stream after the server's 101 (or 200) head.
pub struct Hijacked {
    pub stream: UnixStream,
    /// Bytes the server sent right after its head, already read from `stream`.
    pub early: Vec<u8>,
}

/// A request already sent whose response has not been read yet.
pub struct Pending {
    reader: BufReader<UnixStream>,
    method: String,
    head: Option<Head>,
}

impl Pending {
    /// Wait up to `timeout` for the response head. A daemon that follows docker answers the
    /// head of `/wait` once the wait is registered; one that answers only at the end is
    /// given `timeout` to register it. An early error answer is returned here.
    pub fn wait_registered(&mut self, timeout: std::time::Duration) -> Result<(), ClientError> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let ready = {
            let fd = self.reader.get_ref();
            let mut fds = [PollFd::new(fd, PollFlags::IN)];
            let t = Timespec {
                tv_sec: timeout.as_secs() as _,
                tv_nsec: timeout.subsec_nanos() as _,
            };
            poll(&mut fds, Some(&t)).map_err(io::Error::from)? > 0
        };
        if ready {
            let head = read_head(&mut self.reader)?;
            if head.status >= 400 {
                let body = body_reader(&self.method, &head, &mut self.reader)?;
                return Err(api_error(head.status, body));
            }
            self.head = Some(head);
        }
        Ok(())
    }

    /// Block until the whole response is there.
    pub fn finish(mut self) -> Result<Response, ClientError> {
        let head = match self.head.take() {
            Some(h) => h,
            None => read_head(&mut self.reader)?,
        };
        let mut body = body_reader(&self.method, &head, self.reader)?;
        if head.status >= 400 {
            return Err(api_error(head.status, body));
        }
        let mut buf = Vec::new();
        body.read_to_end(&mut buf)?;
        Ok(Response { head, body: buf })
    }
}

/// A client bound to one daemon socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: PathBuf) -> Client {
        Client { socket }
    }

    /// The daemon's address as docker prints it (`unix:///run/shoal/shoal.sock`).
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn connect(&self) -> Result<UnixStream, ClientError> {
        UnixStream::connect(&self.socket).map_err(|source| ClientError::Connect {
            host: self.host(),
            source,
        })
    }

    pub fn get(&self, path: &str) -> Result<Response, ClientError> {
        self.request("GET", path, Body::Empty)
    }

    pub fn post(&self, path: &str, json: Option<&serde_json::Value>) -> Result<Response, ClientError> {
        match json {
            Some(v) => self.request("POST", path, Body::Json(v)),
            None => self.request("POST", path, Body::Empty),
        }
    }

    pub fn delete(&self, path: &str) -> Result<Response, ClientError> {
        self.request("DELETE", path, Body::Empty)
    }

    /// GET and decode JSON in one step.
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.get(path)?.json()
    }

    /// Send a request and read the whole answer; error statuses become [`ClientError::Api`].
    pub fn request(&self, method: &str, path: &str, body: Body<'_>) -> Result<Response, ClientError> {
        let mut streaming = self.stream(method, path, body)?;
        let mut buf = Vec::new();
        streaming.body.read_to_end(&mut buf)?;
        Ok(Response {
            head: streaming.head,
            body: buf,
        })
    }

    /// Send a request and return the head with a reader for the body as it arrives.
    pub fn stream(&self, method: &str, path: &str, body: Body<'_>) -> Result<StreamingResponse, ClientError> {
        self.stream_with(method, path, body, &[])
    }

    /// [`Client::stream`] with extra request headers (`X-Registry-Auth`).
    pub fn stream_with(
        &self,
        method: &str,
        path: &str,
        body: Body<'_>,
        headers: &[(&str, &str)],
    ) -> Result<StreamingResponse, ClientError> {
        let mut conn = self.connect()?;
        let mut all = vec![("Connection", "close")];
        all.extend_from_slice(headers);
        write_request(&mut conn, method, path, body, &all)?;
        let mut reader = BufReader::new(conn);
        let head = read_head(&mut reader)?;
        let body = body_reader(method, &head, reader)?;
        if head.status >= 400 {
            return Err(api_error(head.status, body));
        }
        Ok(StreamingResponse { head, body })
    }

    /// Send a request now and read its answer later: `run` registers its wait for the
    /// container's exit before starting it, so the exit cannot be missed.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        json: Option<&serde_json::Value>,
    ) -> Result<Pending, ClientError> {
        let mut conn = self.connect()?;
        let body = match json {
            Some(v) => Body::Json(v),
            None => Body::Empty,
        };
        write_request(&mut conn, method, path, body, &[("Connection", "close")])?;
        Ok(Pending {
            reader: BufReader::new(conn),
            method: method.to_string(),
            head: None,
        })
    }

    /// Upgrade the connection to a raw stream (attach, exec start).
    pub fn hijack(&self, path: &str, json: Option<&serde_json::Value>) -> Result<Hijacked, ClientError> {
        let mut conn = self.connect()?;
        let body = match json {
            Some(v) => Body::Json(v),
            None => Body::Empty,
        };
        write_request(
            &mut conn,
            "POST",
            path,
            body,
            &[("Connection", "Upgrade"), ("Upgrade", "tcp")],
        )?;
        let mut reader = BufReader::new(conn);
        let head = read_head(&mut reader)?;
        if head.status >= 400 {
            let body = body_reader("POST", &head, reader)?;
            return Err(api_error(head.status, body));
        }
        if head.status != 101 && head.status != 200 {
            return Err(ClientError::Protocol(format!(
                "unexpected status {} to hijack of {path}",
                head.status
            )));
        }
        let early = reader.buffer().to_vec();
        Ok(Hijacked {
            stream: reader.into_inner(),
            early,
        })
    }
}

/// Read an error body and turn it into the daemon's message.
fn api_error<R: Read>(status: u16, mut body: R) -> ClientError {
    let mut buf = Vec::new();
    // A broken body still yields an error naming the status.
    let _ = body.read_to_end(&mut buf);
    ClientError::Api {
        status,
        message: error_message(status, &buf),
    }
}

/// The message from a Docker error body `{"message": "..."}`, or the body text itself.
pub fn error_message(status: u16, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
            return m.to_string();
        }
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    if text.is_empty() {
        format!("HTTP status {status}")
    } else {
        text
    }
}

fn write_request(
    conn: &mut UnixStream,
    method: &str,
    path: &str,
    body: Body<'_>,
    extra: &[(&str, &str)],
) -> Result<(), ClientError> {
    let mut head = format!(
        "{method} /v{API_VERSION}{path} HTTP/1.1\r\nHost: shoal\r\nUser-Agent: shoal-cli/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut w = io::BufWriter::new(conn);
    match body {
        Body::Empty => {
            if method == "POST" || method == "PUT" {
                head.push_str("Content-Length: 0\r\n");
            }
            head.push_str("\r\n");
            w.write_all(head.as_bytes())?;
        }
        Body::Json(v) => {
            let bytes = serde_json::to_vec(v).map_err(|e| ClientError::Protocol(e.to_string()))?;
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                bytes.len()
            ));
            w.write_all(head.as_bytes())?;
            w.write_all(&bytes)?;
        }
        Body::Bytes(bytes, ctype) => {
            head.push_str(&format!(
                "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                bytes.len()
            ));
            w.write_all(head.as_bytes())?;
            w.write_all(bytes)?;
        }
        Body::Stream(reader, Some(len), ctype) => {
            head.push_str(&format!("Content-Type: {ctype}\r\nContent-Length: {len}\r\n\r\n"));
            w.write_all(head.as_bytes())?;
            let copied = io::copy(&mut reader.take(len), &mut w)?;
            if copied != len {
                return Err(ClientError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("request body ended after {copied} of {len} bytes"),
                )));
            }
        }
        Body::Stream(reader, None, ctype) => {
            head.push_str(&format!(
                "Content-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n\r\n"
            ));
            w.write_all(head.as_bytes())?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                };
                write!(w, "{n:x}\r\n")?;
                w.write_all(&buf[..n])?;
                w.write_all(b"\r\n")?;
            }
            w.write_all(b"0\r\n\r\n")?;
        }
    }
    w.flush()?;
    Ok(())
}

/// Longest response head accepted; a daemon never sends more.
const MAX_HEAD: usize = 64 * 1024;

/// Read `HTTP/1.1 200 OK` and headers up to the blank line.
pub fn read_head<R: BufRead>(r: &mut R) -> Result<Head, ClientError> {
    let mut line = String::new();
    let mut total = 0;
    let mut read_line = |line: &mut String| -> Result<(), ClientError> {
        line.clear();
        let n = r.read_line(line)?;
        total += n;
        if n == 0 {
            return Err(ClientError::Protocol(
                "connection closed before the response head ended".into(),
            ));
        }
        if total > MAX_HEAD {
            return Err(ClientError::Protocol("response head longer than 64 KiB".into()));
        }
        Ok(())
    };
    read_line(&mut line)?;
    let status_line = line.trim_end();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(ClientError::Protocol(format!("bad status line {status_line:?}")));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| ClientError::Protocol(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        read_line(&mut line)?;
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| ClientError::Protocol(format!("bad header line {l:?}")))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok(Head { status, headers })
}

/// How a response body is delimited.
pub enum BodyReader<R> {
    Empty,
    Length(io::Take<R>),
    Chunked(ChunkedReader<R>),
    UntilEof(R),
}

fn body_reader<R: BufRead>(method: &str, head: &Head, r: R) -> Result<BodyReader<R>, ClientError> {
    if method == "HEAD" || head.status == 204 || head.status == 304 || head.status == 101 {
        return Ok(BodyReader::Empty);
    }
    if head
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        return Ok(BodyReader::Chunked(ChunkedReader::new(r)));
    }
    if let Some(len) = head.header("content-length") {
        let len: u64 = len
            .parse()
            .map_err(|_| ClientError::Protocol(format!("bad Content-Length {len:?}")))?;
        return Ok(BodyReader::Length(r.take(len)));
    }
    Ok(BodyReader::UntilEof(r))
}

impl<R: BufRead> Read for BodyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BodyReader::Empty => Ok(0),
            BodyReader::Length(r) => r.read(buf),
            BodyReader::Chunked(r) => r.read(buf),
            BodyReader::UntilEof(r) => r.read(buf),
        }
    }
}

/// Decodes `Transfer-Encoding: chunked` as a plain reader (trailers are skipped).
pub struct ChunkedReader<R> {
    inner: R,
    /// Bytes left in the current chunk.
    remaining: u64,
    done: bool,
}

impl<R: BufRead> ChunkedReader<R> {
    pub fn new(inner: R) -> Self {
        ChunkedReader {
            inner,
            remaining: 0,
            done: false,
        }
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        let n = (&mut self.inner).take(4096).read_line(&mut line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "chunked body ended without its last chunk",
            ));
        }
        Ok(line)
    }
}

impl<R: BufRead> Read for ChunkedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            let line = self.read_line()?;
            let size_text = line.trim().split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_text, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size line {:?}", line.trim()),
                )
            })?;
            if size == 0 {
                // Skip trailers up to the final blank line.
                loop {
                    let l = self.read_line()?;
                    if l.trim().is_empty() {
                        break;
                    }
                }
                self.done = true;
                return Ok(0);
            }
            self.remaining = size;
        }
        let want = buf.len().min(self.remaining as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "chunked body ended inside a chunk",
            ));
        }
        self.remaining -= n as u64;
        if self.remaining == 0 {
            let l = self.read_line()?;
            if !l.trim().is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunk not followed by CRLF",
                ));
            }
        }
        Ok(n)
    }
}

/// Which output a multiplexed frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdin,
    Stdout,
    Stderr,
    /// Stream 3: the daemon's own error text (API >= 1.41 exec/attach).
    System,
}

/// One frame of Docker's multiplexed stream: `[kind, 0, 0, 0, len (u32 BE)]` then `len` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: StreamKind,
    pub payload: Vec<u8>,
}

/// Incremental demuxer: push bytes as they arrive, pop whole frames.
#[derive(Debug, Default)]
pub struct Demuxer {
    buf: Vec<u8>,
}

/// Size of a multiplexed frame header.
pub const FRAME_HEADER: usize = 8;

impl Demuxer {
    pub fn new() -> Self {
        Demuxer { buf: Vec::new() }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed, or an error for a header
    /// that is not a stream frame.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        match parse_frame(&self.buf)? {
            None => Ok(None),
            Some((kind, len)) => {
                let payload = self.buf[FRAME_HEADER..FRAME_HEADER + len].to_vec();
                self.buf.drain(..FRAME_HEADER + len);
                Ok(Some(Frame { kind, payload }))
            }
        }
    }

    /// Bytes held back waiting for the rest of a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Look at the start of `buf`: `Some((kind, payload_len))` when a whole frame is there.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(StreamKind, usize)>, String> {
    if buf.len() < FRAME_HEADER {
        return Ok(None);
    }
    let kind = match buf[0] {
        0 => StreamKind::Stdin,
        1 => StreamKind::Stdout,
        2 => StreamKind::Stderr,
        3 => StreamKind::System,
        other => return Err(format!("bad stream type {other} in multiplexed frame header")),
    };
    if buf[1..4] != [0, 0, 0] {
        return Err(format!(
            "bad multiplexed frame header {:02x?}",
            &buf[..FRAME_HEADER]
        ));
    }
    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if buf.len() < FRAME_HEADER + len {
        return Ok(None);
    }
    Ok(Some((kind, len)))
}

/// Copy a multiplexed stream to `out`/`err` until EOF. Stream 3 (system) text goes to `err`
/// and is returned so the caller can fail with it.
pub fn copy_demuxed<R: Read, O: Write, E: Write>(
    mut src: R,
    out: &mut O,
    err: &mut E,
) -> io::Result<Option<String>> {
    let mut demux = Demuxer::new();
    let mut buf = vec![0u8; 32 * 1024];
    let mut system = None;
    loop {
        let n = match src.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(system);
        }
        demux.push(&buf[..n]);
        while let Some(frame) = demux
            .next_frame()
            .map_err(|m| io::Error::new(io::ErrorKind::InvalidData, m))?
        {
            match frame.kind {
                StreamKind::Stdout | StreamKind::Stdin => {
                    out.write_all(&frame.payload)?;
                    out.flush()?;
                }
                StreamKind::Stderr => {
                    err.write_all(&frame.payload)?;
                    err.flush()?;
                }
                StreamKind::System => {
                    system = Some(String::from_utf8_lossy(&frame.payload).into_owned());
                }
            }
        }
    }
}

/// Percent-encode a query value (RFC 3986 unreserved characters pass through).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Build `?a=1&b=x` from pairs (values escaped); empty when there are none.
pub fn query(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", query_escape(v)))
        .collect();
    format!("?{}", parts.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![kind, 0, 0, 0];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn demuxer_splits_frames_across_arbitrary_boundaries() {
        let mut wire = frame(1, b"hello\n");
        wire.extend(frame(2, b"oops\n"));
        wire.extend(frame(1, b""));
        wire.extend(frame(1, b"bye"));
        for split in 0..wire.len() {
            let mut d = Demuxer::new();
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                d.push(part);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), 4, "split at {split}");
            assert_eq!(
                got[0],
                Frame {
                    kind: StreamKind::Stdout,
                    payload: b"hello\n".to_vec()
                }
            );
            assert_eq!(
                got[1],
                Frame {
                    kind: StreamKind::Stderr,
                    payload: b"oops\n".to_vec()
                }
            );
            assert_eq!(got[3].payload, b"bye");
            assert_eq!(d.pending(), 0);
        }
    }

    /// Random bytes never panic the demuxer, the chunked decoder or the head parser.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed: u64 = 0xdeadbeefcafef00d;
        for round in 0..5_000 {
            let mut bytes = Vec::new();
            for _ in 0..(round % 64) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Bias towards the bytes these formats care about.
                let pick = b"0123456789abcdefHTTP/1. \r\n:;\x00\x01\x02\x03\xff";
                bytes.push(pick[(seed % pick.len() as u64) as usize]);
            }
            let mut d = Demuxer::new();
            d.push(&bytes);
            while let Ok(Some(_)) = d.next_frame() {}
            let mut sink = Vec::new();
            let _ = ChunkedReader::new(Cursor::new(&bytes[..])).read_to_end(&mut sink);
            let _ = read_head(&mut Cursor::new(&bytes[..]));
        }
    }

    #[test]
    fn demuxer_rejects_garbage_header() {
        let mut d = Demuxer::new();
        d.push(b"HTTP/1.1 200 OK\r\n");
        assert!(d.next_frame().is_err());
    }

    #[test]
    fn copy_demuxed_routes_streams_and_reports_system_errors() {
        let mut wire = frame(1, b"out");
        wire.extend(frame(2, b"err"));
        wire.extend(frame(3, b"exec failed"));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let sys = copy_demuxed(Cursor::new(wire), &mut out, &mut err).unwrap();
        assert_eq!(out, b"out");
        assert_eq!(err, b"err");
        assert_eq!(sys.as_deref(), Some("exec failed"));
    }

    #[test]
    fn chunked_decoding_with_extensions_and_trailers() {
        let wire = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let mut r = ChunkedReader::new(Cursor::new(&wire[..]));
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello, world");
        // The reader stops at the end of the body, leaving what follows.
        let mut rest = String::new();
        r.inner.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");
    }

    #[test]
    fn chunked_decoding_rejects_truncation_and_bad_sizes() {
        let mut s = String::new();
        assert!(ChunkedReader::new(Cursor::new(&b"5\r\nhel"[..]))
            .read_to_string(&mut s)
            .is_err());
        assert!(ChunkedReader::new(Cursor::new(&b"zz\r\nhello\r\n"[..]))
            .read_to_string(&mut s)
            .is_err());
        assert!(ChunkedReader::new(Cursor::new(&b"5\r\nhello\r\n"[..]))
            .read_to_string(&mut s)
            .is_err());
    }

    #[test]
    fn head_parsing() {
        let mut c = Cursor::new(
            &b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"[..],
        );
        let h = read_head(&mut c).unwrap();
        assert_eq!(h.status, 404);
        assert_eq!(h.header("Content-Length"), Some("2"));
        assert!(read_head(&mut Cursor::new(&b"SSH-2.0\r\n\r\n"[..])).is_err());
        assert!(read_head(&mut Cursor::new(&b"HTTP/1.1 200 OK\r\nX: 1\r\n"[..])).is_err());
    }

    #[test]
    fn error_messages_like_docker() {
        assert_eq!(
            error_message(404, br#"{"message":"No such container: x"}"#),
            "No such container: x"
        );
        assert_eq!(error_message(500, b"boom\n"), "boom");
        assert_eq!(error_message(500, b""), "HTTP status 500");
        let e = ClientError::Api {
            status: 404,
            message: "No such container: x".into(),
        };
        assert_eq!(e.to_string(), "Error response from daemon: No such container: x");
    }

    #[test]
    fn host_resolution() {
        assert_eq!(resolve_host(None, None).unwrap(), PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(
            resolve_host(Some("unix:///tmp/s.sock"), Some("unix:///x")).unwrap(),
            PathBuf::from("/tmp/s.sock")
        );
        assert_eq!(
            resolve_host(None, Some("unix:///x")).unwrap(),
            PathBuf::from("/x")
        );
        assert!(resolve_host(Some("tcp://1.2.3.4:2375"), None).is_err());
        assert!(resolve_host(Some("unix://"), None).is_err());
    }

    #[test]
    fn query_building() {
        assert_eq!(query(&[]), "");
        assert_eq!(
            query(&[("all", "1".into()), ("filters", r#"{"name":["a b"]}"#.into())]),
            "?all=1&filters=%7B%22name%22%3A%5B%22a%20b%22%5D%7D"
        );
    }

    /// A throwaway server on a socketpair-like unix listener checks the client's wire format:
    /// the request line, JSON body, chunked answer, API errors and the hijack.
    #[test]
    fn client_round_trips_against_a_fake_server() {
        use std::os::unix::net::UnixListener;
        let dir = std::env::temp_dir().join(format!("shoal-client-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("api.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for (i, conn) in listener.incoming().take(3).enumerate() {
                let conn = conn.unwrap();
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut l = String::new();
                    r.read_line(&mut l).unwrap();
                    if l == "\r\n" {
                        break;
                    }
                    head.push_str(&l);
                }
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map(|v| v.trim().parse::<usize>().unwrap())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                seen.push((head.clone(), String::from_utf8(body).unwrap()));
                let mut w = conn;
                match i {
                    0 => w
                        .write_all(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"Id\r\n8\r\n\":\"abc\"}\r\n0\r\n\r\n")
                        .unwrap(),
                    1 => w
                        .write_all(b"HTTP/1.1 409 Conflict\r\nContent-Length: 30\r\n\r\n{\"message\":\"name is in use\"}\n\n")
                        .unwrap(),
                    _ => {
                        w.write_all(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n").unwrap();
                        w.write_all(&frame(1, b"hi")).unwrap();
                    }
                }
            }
            seen
        });
        let client = Client::new(sock.clone());
        let body = serde_json::json!({"Image": "busybox"});
        let resp = client.post("/containers/create?name=web", Some(&body)).unwrap();
        assert_eq!(resp.head.status, 201);
        assert_eq!(resp.json().unwrap()["Id"], "abc");
        match client.post("/containers/create?name=web", Some(&body)) {
            Err(ClientError::Api { status: 409, message }) => assert_eq!(message, "name is in use"),
            other => panic!("expected a 409, got {other:?}", other = other.map(|r| r.head)),
        }
        let mut h = client
            .hijack("/containers/abc/attach?stream=1&stdout=1", None)
            .unwrap();
        let mut rest = h.early.clone();
        h.stream.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, frame(1, b"hi"));
        let seen = server.join().unwrap();
        assert!(seen[0]
            .0
            .starts_with("POST /v1.44/containers/create?name=web HTTP/1.1\r\n"));
        assert_eq!(seen[0].1, r#"{"Image":"busybox"}"#);
        assert!(seen[2].0.contains("Upgrade: tcp"));
        let _ = std::fs::remove_dir_all(&dir);
        // Nobody listening: the docker-style hint.
        let err = client.get("/_ping").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Cannot connect to the shoal daemon at unix://"),
            "{err}"
        );
    }
}
