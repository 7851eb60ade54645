//! The admin page's front door. tiny_http reads request heads without a size limit and has
//! no timeouts, so it never faces the network: this guard accepts TCP connections itself,
//! caps how many are open (in all and per client address), reads the request head and body
//! under size caps and a deadline, and only then hands the request, rewritten to one request
//! per connection with the client's address attached, to tiny_http on a private unix socket.
//! The response is copied back under a write timeout. A slowloris, a huge header or a flood
//! therefore costs at most `max_conns` small buffers and never touches the Docker API socket.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Header carrying the client's address from the guard to the page handler. Any copy the
/// client sends is dropped, so the handler can trust it.
pub const PEER_HEADER: &str = "X-Shoal-Peer";

#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once; more are answered 503 and closed at once.
    pub max_conns: usize,
    /// Connections open at once from one address.
    pub max_per_ip: usize,
    /// Request line plus headers.
    pub head_max: usize,
    /// Request body (forms are small).
    pub body_max: usize,
    /// Time a client has to send the whole request.
    pub request_deadline: Duration,
    /// Time one write of the response may block on a client that does not read.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns: 64,
            max_per_ip: 32,
            head_max: 8 << 10,
            body_max: 16 << 10,
            request_deadline: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a request is refused before it reaches the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    HeadTooLarge,
    BodyTooLarge,
    LengthRequired,
    Timeout,
}

impl Refusal {
    fn status_line(self) -> &'static str {
        match self {
            Refusal::Malformed => "400 Bad Request",
            Refusal::HeadTooLarge => "431 Request Header Fields Too Large",
            Refusal::BodyTooLarge => "413 Payload Too Large",
            Refusal::LengthRequired => "411 Length Required",
            Refusal::Timeout => "408 Request Timeout",
        }
    }
}

/// A request head checked by the guard: what to forward and how long the body is.
#[derive(Debug, PartialEq, Eq)]
pub struct CheckedHead {
    pub forward: Vec<u8>,
    pub body_len: usize,
}

/// Where the head ends (index just past the blank line), if it has.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Check a complete head and rewrite it for the handler: hop-by-hop headers and any
/// client-sent peer header are dropped, `Connection: close` and the peer address added.
pub fn check_head(head: &[u8], peer: IpAddr, body_max: usize) -> Result<CheckedHead, Refusal> {
    let text = std::str::from_utf8(head).map_err(|_| Refusal::Malformed)?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().ok_or(Refusal::Malformed)?;
    let mut parts = request_line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None)
            if !m.is_empty()
                && m.bytes().all(|c| c.is_ascii_uppercase())
                && t.starts_with('/')
                && (v == "HTTP/1.1" || v == "HTTP/1.0") => {}
        _ => return Err(Refusal::Malformed),
    }
    let mut forward = format!("{request_line}\r\n");
    let mut body_len = 0usize;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(Refusal::Malformed)?;
        if name.is_empty() || name.bytes().any(|c| c <= b' ' || c >= 0x7f) {
            return Err(Refusal::Malformed);
        }
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                let n: usize = value.parse().map_err(|_| Refusal::Malformed)?;
                if n > body_max {
                    return Err(Refusal::BodyTooLarge);
                }
                body_len = n;
                continue;
            }
            // Bodies are forms: a length is required, so the cap holds before reading.
            "transfer-encoding" => return Err(Refusal::LengthRequired),
            "connection" | "keep-alive" | "upgrade" | "proxy-connection" => continue,
            n if n == PEER_HEADER.to_ascii_lowercase() => continue,
            _ => {}
        }
        forward.push_str(name);
        forward.push_str(": ");
        forward.push_str(value);
        forward.push_str("\r\n");
    }
    if body_len > 0 {
        forward.push_str(&format!("Content-Length: {body_len}\r\n"));
    }
    forward.push_str(&format!("Connection: close\r\n{PEER_HEADER}: {peer}\r\n\r\n"));
    Ok(CheckedHead {
        forward: forward.into_bytes(),
        body_len,
    })
}

/// Open connections, in all and per address.
#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Releases a connection slot when the connection ends, however it ends.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total -= 1;
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Accept connections forever, passing checked requests to the handler on `backend`.
pub fn serve(listener: TcpListener, backend: PathBuf, limits: Limits) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let limits = Arc::new(limits);
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log::warn!("admin page: accept: {e}");
                // EMFILE and friends: do not spin.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else { continue };
        let ip = peer.ip();
        let admitted = {
            let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
            let mine = c.per_ip.get(&ip).copied().unwrap_or(0);
            if c.total >= limits.max_conns || mine >= limits.max_per_ip {
                false
            } else {
                c.total += 1;
                *c.per_ip.entry(ip).or_default() += 1;
                true
            }
        };
        if !admitted {
            refuse_busy(stream);
            continue;
        }
        let slot = Slot {
            counts: counts.clone(),
            ip,
        };
        let (backend, limits) = (backend.clone(), limits.clone());
        let spawned = std::thread::Builder::new()
            .name("admin-conn".into())
            .stack_size(128 << 10)
            .spawn(move || {
                let _slot = slot;
                if let Err(e) = handle(stream, ip, &backend, &limits) {
                    log::debug!("admin page: connection from {ip}: {e}");
                }
            });
        if let Err(e) = spawned {
            log::warn!("admin page: cannot start a connection thread: {e}");
        }
    }
}

/// Over the cap: say so without reading anything, and without blocking the accept loop.
fn refuse_busy(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let _ = stream.shutdown(Shutdown::Both);
}

fn handle(mut client: TcpStream, ip: IpAddr, backend: &Path, limits: &Limits) -> io::Result<()> {
    let deadline = Instant::now() + limits.request_deadline;
    client.set_write_timeout(Some(limits.write_timeout))?;
    let mut buf = vec![0u8; limits.head_max];
    let mut filled = 0;
    let head_len = loop {
        if let Some(end) = head_end(&buf[..filled]) {
            break end;
        }
        if filled == buf.len() {
            return refuse(&mut client, Refusal::HeadTooLarge);
        }
        match read_before(&mut client, &mut buf[filled..], deadline) {
            Ok(0) => return Ok(()),
            Ok(n) => filled += n,
            Err(e) if is_timeout(&e) => return refuse(&mut client, Refusal::Timeout),
            Err(e) => return Err(e),
        }
    };
    let checked = match check_head(&buf[..head_len], ip, limits.body_max) {
        Ok(c) => c,
        Err(r) => return refuse(&mut client, r),
    };
    let mut body = buf[head_len..filled].to_vec();
    drop(buf);
    body.truncate(checked.body_len);
    while body.len() < checked.body_len {
        let mut chunk = [0u8; 2048];
        let want = (checked.body_len - body.len()).min(chunk.len());
        match read_before(&mut client, &mut chunk[..want], deadline) {
            Ok(0) => return Ok(()),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => return refuse(&mut client, Refusal::Timeout),
            Err(e) => return Err(e),
        }
    }
    client.set_read_timeout(None)?;
    let mut handler = UnixStream::connect(backend)?;
    handler.write_all(&checked.forward)?;
    handler.write_all(&body)?;
    drop(body);
    // One request per connection: whatever the client sends now is not read. Copy the answer
    // back; a client that stops reading hits the write timeout and the handler sees EPIPE.
    let mut chunk = [0u8; 4096];
    loop {
        let n = handler.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        client.write_all(&chunk[..n])?;
    }
    let _ = client.shutdown(Shutdown::Write);
    Ok(())
}

/// Read with the time left before `deadline` as the socket's timeout.
fn read_before(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "request deadline passed"));
    }
    s.set_read_timeout(Some(left))?;
    s.read(buf)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
}

fn refuse(client: &mut TcpStream, r: Refusal) -> io::Result<()> {
    let msg = format!(
        "HTTP/1.1 {}\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        r.status_line()
    );
    let _ = client.write_all(msg.as_bytes());
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));

    #[test]
    fn heads_are_rewritten_for_the_handler() {
        let head = b"POST /login HTTP/1.1\r\nHost: board:2376\r\nConnection: keep-alive\r\nX-Shoal-Peer: 1.2.3.4\r\nContent-Length: 12\r\n\r\n";
        let c = check_head(head, IP, 100).unwrap();
        let text = String::from_utf8(c.forward).unwrap();
        assert_eq!(c.body_len, 12);
        assert!(text.starts_with("POST /login HTTP/1.1\r\nHost: board:2376\r\n"));
        assert!(!text.contains("keep-alive"));
        assert!(!text.contains("1.2.3.4"));
        assert!(text.ends_with("Content-Length: 12\r\nConnection: close\r\nX-Shoal-Peer: 10.0.0.7\r\n\r\n"));
        assert_eq!(text.matches("Content-Length").count(), 1);
    }

    #[test]
    fn bad_heads_are_refused() {
        let r = |h: &[u8]| check_head(h, IP, 100).unwrap_err();
        assert_eq!(
            r(b"GET / HTTP/1.1\r\nContent-Length: 101\r\n\r\n"),
            Refusal::BodyTooLarge
        );
        assert_eq!(
            r(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Refusal::LengthRequired
        );
        assert_eq!(r(b"GET / HTTP/2\r\n\r\n"), Refusal::Malformed);
        assert_eq!(r(b"GET http://x/ HTTP/1.1\r\n\r\n"), Refusal::Malformed);
        assert_eq!(r(b"GET / HTTP/1.1\r\nno colon\r\n\r\n"), Refusal::Malformed);
        assert_eq!(
            r(b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            Refusal::Malformed
        );
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
    }
}
