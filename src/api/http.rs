//! A small HTTP/1.1 server for the API socket: request heads with size limits, bodies by
//! Content-Length or chunked, keep-alive, JSON and error replies, chunked streams flushed per
//! message, and hijacked connections (101) whose read and write halves work independently, as
//! attach and exec need (stdin flows in while output flows out).
//!
//! Guarantees: a head over 64 KiB or 100 headers, a garbled request line or chunk size gets a
//! 400 and the connection is closed; nothing a client sends can panic the daemon.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

use serde::Serialize;

use super::types::ErrorBody;

const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

/// An API error: an HTTP status and Docker's `{"message": ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<io::Error> for ApiError {
    fn from(e: io::Error) -> Self {
        ApiError::internal(e.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// How much of the request body is left to read.
#[derive(Debug, Clone, Copy, PartialEq)]
enum BodyState {
    Length(u64),
    /// Inside a chunk with this many bytes left (0: expect the next size line).
    Chunked(u64),
    Done,
}

/// One request on a connection, with its (lazily read) body and the means to answer it.
pub struct ApiRequest {
    pub method: String,
    /// The decoded path with any `/v1.NN` prefix removed.
    pub path: String,
    pub query: HashMap<String, String>,
    /// The query string as sent, for parameters that repeat (`t`, `changes`).
    raw_query: String,
    headers: Vec<(String, String)>,
    reader: Option<BufReader<UnixStream>>,
    writer: UnixStream,
    body: BodyState,
    responded: bool,
    /// False once the connection cannot carry another request (hijacked, closed, bad body).
    reusable: bool,
}

/// Serve requests on one connection until it closes, calling `handle` for each.
pub fn serve_connection(stream: UnixStream, handle: &dyn Fn(&mut ApiRequest)) {
    let writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = Some(BufReader::with_capacity(16 * 1024, stream));
    while let Some(mut r) = reader.take() {
        let head = match read_head(&mut r) {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(e) => {
                let mut w = &writer;
                let body = serde_json::json!({ "message": e.to_string() }).to_string();
                let _ = write!(
                    w,
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                return;
            }
        };
        let Ok(w) = writer.try_clone() else { return };
        let mut req = match ApiRequest::new(head, r, w) {
            Ok(req) => req,
            Err(e) => {
                let mut w = &writer;
                let _ = write!(
                    w,
                    "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                log::debug!("bad request: {e}");
                return;
            }
        };
        handle(&mut req);
        if !req.responded {
            req.respond_error(&ApiError::internal("handler sent no response"));
        }
        if !req.reusable || req.drain_body().is_err() {
            return;
        }
        reader = req.reader.take();
    }
}

struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    http10: bool,
}

/// Read a request head; `Ok(None)` on a clean EOF between requests.
fn read_head(r: &mut BufReader<UnixStream>) -> io::Result<Option<Head>> {
    let mut total = 0usize;
    let mut line = Vec::new();
    let mut request_line = String::new();
    let mut headers = Vec::new();
    loop {
        line.clear();
        let n = r
            .by_ref()
            .take((MAX_HEAD - total + 1) as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            if total == 0 {
                return Ok(None);
            }
            return Err(bad("connection closed inside the request head"));
        }
        total += n;
        if total > MAX_HEAD {
            return Err(bad("request head over 64 KiB"));
        }
        let text = std::str::from_utf8(&line).map_err(|_| bad("request head is not UTF-8"))?;
        let text = text.trim_end_matches(['\r', '\n']);
        if request_line.is_empty() {
            if text.is_empty() {
                continue; // tolerate stray CRLF between requests (RFC 9112 §2.2)
            }
            request_line = text.to_string();
            continue;
        }
        if text.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(bad("more than 100 request headers"));
        }
        let (k, v) = text
            .split_once(':')
            .ok_or_else(|| bad(&format!("malformed header line {text:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(&format!("malformed request line {request_line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad(&format!("unsupported protocol {version:?}")));
    }
    Ok(Some(Head {
        method: method.to_ascii_uppercase(),
        target: target.to_string(),
        headers,
        http10: version == "HTTP/1.0",
    }))
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl ApiRequest {
    fn new(head: Head, reader: BufReader<UnixStream>, writer: UnixStream) -> io::Result<Self> {
        let (path, query) = split_url(&head.target);
        let find = |name: &str| {
            head.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let chunked = find("Transfer-Encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let body = if chunked {
            BodyState::Chunked(0)
        } else {
            match find("Content-Length") {
                Some(v) => {
                    BodyState::Length(v.parse().map_err(|_| bad(&format!("bad Content-Length {v:?}")))?)
                }
                None => BodyState::Done,
            }
        };
        let close = find("Connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        Ok(ApiRequest {
            method: head.method,
            path: strip_version(&path).to_string(),
            query,
            raw_query: head.target.split_once('?').map_or("", |(_, q)| q).to_string(),
            reusable: !close && !head.http10,
            headers: head.headers,
            reader: Some(reader),
            writer,
            body,
            responded: false,
        })
    }

    /// A query parameter, if present.
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// Every value of a repeated query parameter, in order.
    pub fn q_all(&self, key: &str) -> Vec<String> {
        self.raw_query
            .split('&')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k, true) == key).then(|| percent_decode(v, true))
            })
            .collect()
    }

    /// A boolean query parameter as dockerd reads them: present and not "0"/"false"/"".
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.q(key), Some(v) if !matches!(v, "" | "0" | "false" | "False"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The JSON body; an empty body parses as `T::default()`.
    pub fn json<T: serde::de::DeserializeOwned + Default>(&mut self, limit: usize) -> ApiResult<T> {
        let body = self.body(limit)?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }

    /// The whole body, refusing bodies over `limit` bytes.
    pub fn body(&mut self, limit: usize) -> ApiResult<Vec<u8>> {
        let mut buf = Vec::new();
        self.by_ref().take(limit as u64 + 1).read_to_end(&mut buf)?;
        if buf.len() > limit {
            self.reusable = false;
            return Err(ApiError::new(413, format!("request body over {limit} bytes")));
        }
        Ok(buf)
    }

    fn drain_body(&mut self) -> io::Result<()> {
        // Bounded: a client that keeps sending after its answer loses the connection instead.
        let n = io::copy(&mut self.by_ref().take(1 << 20), &mut io::sink())?;
        if self.body != BodyState::Done && n >= 1 << 20 {
            return Err(bad("unread request body"));
        }
        Ok(())
    }

    pub fn respond_json<T: Serialize>(&mut self, status: u16, value: &T) {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        self.respond_raw(status, "application/json", &body);
    }

    pub fn respond_empty(&mut self, status: u16) {
        self.respond_raw(status, "", b"");
    }

    pub fn respond_text(&mut self, status: u16, text: &str) {
        self.respond_raw(status, "text/plain; charset=utf-8", text.as_bytes());
    }

    pub fn respond_error(&mut self, err: &ApiError) {
        let status = err.status;
        self.respond_json(
            status,
            &ErrorBody {
                message: err.message.clone(),
            },
        );
    }

    /// Answer with a complete body. Extra headers Docker clients read come with every answer.
    pub fn respond_raw(&mut self, status: u16, content_type: &str, body: &[u8]) {
        if self.responded {
            return;
        }
        self.responded = true;
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        head.push_str(&common_headers());
        if !content_type.is_empty() {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        let has_body = !(status == 204 || status == 304 || self.method == "HEAD");
        if has_body || self.method == "HEAD" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        if !self.reusable {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if has_body {
            out.extend_from_slice(body);
        }
        if self.writer.write_all(&out).is_err() {
            self.reusable = false;
        }
    }

    /// Start a streamed 200 response; each `write` on the result is one flushed chunk.
    pub fn stream(&mut self, content_type: &str) -> io::Result<ChunkedWriter> {
        self.responded = true;
        let head = format!(
            "HTTP/1.1 200 OK\r\n{}Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n",
            common_headers()
        );
        self.writer.write_all(head.as_bytes())?;
        Ok(ChunkedWriter {
            inner: self.writer.try_clone()?,
            finished: false,
        })
    }

    /// Answer 101 and hand over the connection's two halves (attach, exec start). Bytes the
    /// client sent right after its head (early stdin) are kept in the returned reader.
    pub fn hijack(&mut self, content_type: &str) -> io::Result<(BufReader<UnixStream>, UnixStream)> {
        self.responded = true;
        self.reusable = false;
        let upgrade = self.header("Upgrade").is_some();
        let head = if upgrade {
            format!(
                "HTTP/1.1 101 UPGRADED\r\n{}Content-Type: {content_type}\r\nConnection: Upgrade\r\n\
                 Upgrade: tcp\r\n\r\n",
                common_headers()
            )
        } else {
            // Old clients without Upgrade get a 200 and the raw stream after it.
            format!(
                "HTTP/1.1 200 OK\r\n{}Content-Type: {content_type}\r\n\r\n",
                common_headers()
            )
        };
        self.writer.write_all(head.as_bytes())?;
        let reader = self
            .reader
            .take()
            .ok_or_else(|| bad("connection already handed over"))?;
        Ok((reader, self.writer.try_clone()?))
    }
}

/// The request body, decoded (Content-Length or chunked).
impl Read for ApiRequest {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(r) = self.reader.as_mut() else {
            return Ok(0);
        };
        loop {
            match self.body {
                BodyState::Done => return Ok(0),
                BodyState::Length(0) => {
                    self.body = BodyState::Done;
                    return Ok(0);
                }
                BodyState::Length(left) => {
                    let max = buf.len().min(left.min(usize::MAX as u64) as usize);
                    let n = r.read(&mut buf[..max])?;
                    if n == 0 {
                        self.reusable = false;
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "request body cut short",
                        ));
                    }
                    self.body = BodyState::Length(left - n as u64);
                    return Ok(n);
                }
                BodyState::Chunked(0) => {
                    let size = read_chunk_size(r)?;
                    if size == 0 {
                        // Trailers end with an empty line.
                        loop {
                            let mut line = String::new();
                            if r.by_ref().take(8192).read_line(&mut line)? == 0 || line.trim().is_empty() {
                                break;
                            }
                        }
                        self.body = BodyState::Done;
                        return Ok(0);
                    }
                    self.body = BodyState::Chunked(size);
                }
                BodyState::Chunked(left) => {
                    let max = buf.len().min(left.min(usize::MAX as u64) as usize);
                    let n = r.read(&mut buf[..max])?;
                    if n == 0 {
                        self.reusable = false;
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "chunked body cut short",
                        ));
                    }
                    let left = left - n as u64;
                    if left == 0 {
                        let mut crlf = [0u8; 2];
                        r.read_exact(&mut crlf)?;
                        if &crlf != b"\r\n" {
                            return Err(bad("chunk not followed by CRLF"));
                        }
                    }
                    self.body = BodyState::Chunked(left);
                    return Ok(n);
                }
            }
        }
    }
}

fn read_chunk_size(r: &mut BufReader<UnixStream>) -> io::Result<u64> {
    let mut line = String::new();
    r.by_ref().take(1024).read_line(&mut line)?;
    let hex = line
        .trim_end_matches(['\r', '\n'])
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    u64::from_str_radix(hex, 16).map_err(|_| bad(&format!("bad chunk size line {line:?}")))
}

fn common_headers() -> String {
    format!(
        "Api-Version: {}\r\nDocker-Experimental: false\r\nOstype: linux\r\nServer: shoal/{}\r\n",
        super::API_VERSION,
        env!("CARGO_PKG_VERSION")
    )
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "Status",
    }
}

/// A chunked response body; every write is sent at once (unix sockets do not buffer).
pub struct ChunkedWriter {
    inner: UnixStream,
    finished: bool,
}

impl ChunkedWriter {
    pub fn finish(mut self) -> io::Result<()> {
        self.finish_inner()
    }
    fn finish_inner(&mut self) -> io::Result<()> {
        if !self.finished {
            self.finished = true;
            self.inner.write_all(b"0\r\n\r\n")?;
        }
        Ok(())
    }
}

impl Write for ChunkedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut msg = format!("{:x}\r\n", buf.len()).into_bytes();
        msg.extend_from_slice(buf);
        msg.extend_from_slice(b"\r\n");
        self.inner.write_all(&msg)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ChunkedWriter {
    fn drop(&mut self) {
        let _ = self.finish_inner();
    }
}

/// Split `/path?a=1&b=2` into the decoded path and query map.
pub fn split_url(url: &str) -> (String, HashMap<String, String>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut map = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.insert(percent_decode(k, true), percent_decode(v, true));
    }
    (percent_decode(path, false), map)
}

/// Remove a leading `/v1.44`-style version segment.
pub fn strip_version(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        if end > 0 && rest[..end].chars().all(|c| c.is_ascii_digit() || c == '.') {
            return if end == rest.len() { "/" } else { &rest[end..] };
        }
    }
    path
}

/// Decode `%XX` escapes (and `+` as space in query components).
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn strips_api_version_prefix() {
        assert_eq!(strip_version("/v1.44/containers/json"), "/containers/json");
        assert_eq!(strip_version("/containers/json"), "/containers/json");
        assert_eq!(strip_version("/v1.45"), "/");
        assert_eq!(strip_version("/volumes"), "/volumes");
    }

    #[test]
    fn decodes_query() {
        let (p, q) = split_url("/containers/json?all=1&filters=%7B%22status%22%3A%5B%22exited%22%5D%7D");
        assert_eq!(p, "/containers/json");
        assert_eq!(q["all"], "1");
        assert_eq!(q["filters"], r#"{"status":["exited"]}"#);
        assert_eq!(percent_decode("a%2", true), "a%2");
        assert_eq!(percent_decode("%zz", true), "%zz");
        assert_eq!(percent_decode("x%", true), "x%");
        assert_eq!(percent_decode("a+b", true), "a b");
        assert_eq!(percent_decode("a+b", false), "a+b");
    }

    /// Run the server loop on one end of a socket pair with an echo handler; return the
    /// client's view of everything the server wrote.
    fn exchange(input: &[u8]) -> String {
        let (client, server) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            serve_connection(server, &|req: &mut ApiRequest| {
                let body = req.body(1024);
                match body {
                    Ok(b) => {
                        let text = format!("{} {} {}", req.method, req.path, String::from_utf8_lossy(&b));
                        req.respond_text(200, &text)
                    }
                    Err(e) => req.respond_error(&e),
                }
            })
        });
        let mut c = client;
        c.write_all(input).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        t.join().unwrap();
        out
    }

    #[test]
    fn keep_alive_with_length_and_chunked_bodies() {
        let out = exchange(
            b"POST /v1.44/a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
              POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n1;ext\r\nz\r\n0\r\n\r\n",
        );
        assert!(out.contains("POST /a abc"), "{out}");
        assert!(out.contains("POST /b xyz"), "{out}");
    }

    #[test]
    fn garbage_gets_400_and_close() {
        let out = exchange(b"\x00\x01 nonsense\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(70 * 1024));
        assert!(exchange(huge.as_bytes()).starts_with("HTTP/1.1 400"));
        let out = exchange(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        assert!(
            out.starts_with("HTTP/1.1 500") || out.starts_with("HTTP/1.1 400"),
            "{out}"
        );
    }

    #[test]
    fn oversized_body_is_refused() {
        let body = "x".repeat(2000);
        let out = exchange(format!("POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n{body}").as_bytes());
        assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    }
}
