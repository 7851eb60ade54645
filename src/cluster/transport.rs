//! Raft messages between peers over TCP, authenticated and encrypted with the cluster key.
//!
//! Each node dials every peer to send and accepts connections to receive. A connection opens
//! with a handshake: each side sends `MAGIC || node id || 32 random bytes`; both derive two
//! ChaCha20-Poly1305 keys (one per direction) with HKDF-SHA256 from the cluster key, salted
//! with both random values, so every session has fresh keys and a recorded session cannot be
//! replayed. Each side then proves it holds the key by sealing a confirmation bound to the
//! handshake transcript; a peer that cannot is refused and logged. After that every frame is
//! `[len: u32 LE][ciphertext]` of a postcard [`Message`], sealed with a per-direction counter
//! nonce. Frames claiming another sender than the authenticated peer are dropped.
//!
//! Guarantees: bounded memory per peer (a full send queue drops messages, which raft
//! tolerates); reconnect with exponential back-off (100 ms to 2 s); frames over
//! [`MAX_FRAME`] close the connection. Not provided: forward secrecy (a stolen cluster key
//! decrypts recorded traffic) or per-node identities (every key holder is trusted alike).

use crate::raft::{Message, NodeId};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;
use smol::channel::{bounded, Receiver, Sender};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

const MAGIC: &[u8; 8] = b"shoalrf1";
const HELLO_LEN: usize = 8 + 8 + 32;
const CONFIRM: &[u8] = b"shoal raft key confirmation";
/// Largest frame accepted (snapshot chunks and append batches are far smaller).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Fill `buf` from the kernel's random source.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// One direction of an authenticated session.
struct Sealer {
    cipher: ChaCha20Poly1305,
    counter: u64,
}

impl Sealer {
    fn nonce(&mut self) -> io::Result<Nonce> {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.counter.to_le_bytes());
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| invalid("nonce counter exhausted"))?;
        Ok(nonce.into())
    }

    fn seal(&mut self, plaintext: &[u8], aad: &[u8]) -> io::Result<Vec<u8>> {
        let nonce = self.nonce()?;
        self.cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad })
            .map_err(|_| invalid("encryption failed"))
    }

    fn open(&mut self, ciphertext: &[u8], aad: &[u8]) -> io::Result<Vec<u8>> {
        let nonce = self.nonce()?;
        self.cipher
            .decrypt(&nonce, Payload { msg: ciphertext, aad })
            .map_err(|_| invalid("frame failed authentication (wrong cluster key or tampering)"))
    }
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// Keys for (initiator → responder, responder → initiator).
fn session_keys(cluster_key: &[u8; 32], hello_i: &[u8], hello_r: &[u8]) -> (Sealer, Sealer) {
    let mut salt = Vec::with_capacity(64);
    salt.extend_from_slice(&hello_i[16..]);
    salt.extend_from_slice(&hello_r[16..]);
    let hk = Hkdf::<Sha256>::new(Some(&salt), cluster_key);
    let mut keys = [[0u8; 32]; 2];
    for (key, label) in keys
        .iter_mut()
        .zip([&b"shoal raft i->r"[..], &b"shoal raft r->i"[..]])
    {
        let mut info = label.to_vec();
        info.extend_from_slice(hello_i);
        info.extend_from_slice(hello_r);
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
        let _ = hk.expand(&info, key);
    }
    let sealer = |k: &[u8; 32]| Sealer {
        cipher: ChaCha20Poly1305::new(Key::from_slice(k)),
        counter: 0,
    };
    (sealer(&keys[0]), sealer(&keys[1]))
}

fn hello(id: NodeId) -> io::Result<[u8; HELLO_LEN]> {
    let mut h = [0u8; HELLO_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&id.to_le_bytes());
    random_bytes(&mut h[16..])?;
    Ok(h)
}

fn parse_hello(h: &[u8; HELLO_LEN]) -> io::Result<NodeId> {
    if &h[..8] != MAGIC {
        return Err(invalid("not a shoal raft peer (bad magic)"));
    }
    Ok(u64::from_le_bytes([
        h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15],
    ]))
}

async fn write_frame(stream: &mut TcpStream, data: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(4 + data.len());
    buf.extend_from_slice(&(data.len() as u32).to_le_bytes());
    buf.extend_from_slice(data);
    stream.write_all(&buf).await
}

async fn read_frame(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(invalid(&format!(
            "frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"
        )));
    }
    let mut data = vec![0u8; len];
    stream.read_exact(&mut data).await?;
    Ok(data)
}

/// An authenticated connection: what we send with, what we receive with, who is at the end.
struct Session {
    stream: TcpStream,
    tx: Sealer,
    rx: Sealer,
    peer: NodeId,
}

async fn handshake(
    mut stream: TcpStream,
    me: NodeId,
    key: &[u8; 32],
    initiator: bool,
) -> io::Result<Session> {
    let mine = hello(me)?;
    let mut theirs = [0u8; HELLO_LEN];
    if initiator {
        stream.write_all(&mine).await?;
        stream.read_exact(&mut theirs).await?;
    } else {
        stream.read_exact(&mut theirs).await?;
        parse_hello(&theirs)?;
        stream.write_all(&mine).await?;
    }
    let peer = parse_hello(&theirs)?;
    let (hello_i, hello_r) = if initiator {
        (&mine, &theirs)
    } else {
        (&theirs, &mine)
    };
    let transcript: Vec<u8> = hello_i.iter().chain(hello_r.iter()).copied().collect();
    let (i2r, r2i) = session_keys(key, hello_i, hello_r);
    let (mut tx, mut rx) = if initiator { (i2r, r2i) } else { (r2i, i2r) };
    let confirm = tx.seal(CONFIRM, &transcript)?;
    write_frame(&mut stream, &confirm).await?;
    let theirs = read_frame(&mut stream).await?;
    if rx.open(&theirs, &transcript)? != CONFIRM {
        return Err(invalid("bad key confirmation"));
    }
    Ok(Session { stream, tx, rx, peer })
}

async fn with_timeout<T>(what: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    smol::future::or(what, async {
        smol::Timer::after(HANDSHAKE_TIMEOUT).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))
    })
    .await
}

/// Sends to and receives from the peers; clone-free handle for the raft driver.
pub struct Transport {
    outgoing: BTreeMap<NodeId, Sender<Message>>,
}

impl Transport {
    /// Start serving `listener` and dialing `peers`. Received messages arrive on the returned
    /// channel (bounded by `queue_len`, as is each peer's send queue).
    pub fn start(
        me: NodeId,
        listener: TcpListener,
        peers: BTreeMap<NodeId, SocketAddr>,
        key: [u8; 32],
        queue_len: usize,
    ) -> (Transport, Receiver<Message>) {
        let (inbound_tx, inbound_rx) = bounded(queue_len);
        smol::spawn(accept_loop(
            me,
            listener,
            peers.keys().copied().collect(),
            key,
            inbound_tx,
        ))
        .detach();
        let mut outgoing = BTreeMap::new();
        for (&peer, &addr) in &peers {
            if peer == me {
                continue;
            }
            let (tx, rx) = bounded(queue_len);
            smol::spawn(dial_loop(me, peer, addr, key, rx)).detach();
            outgoing.insert(peer, tx);
        }
        (Transport { outgoing }, inbound_rx)
    }

    /// Queue `m` for its peer; dropped if the peer is unknown or its queue is full.
    pub fn send(&self, m: Message) -> bool {
        self.outgoing.get(&m.to).is_some_and(|q| q.try_send(m).is_ok())
    }
}

async fn accept_loop(
    me: NodeId,
    listener: TcpListener,
    peers: Vec<NodeId>,
    key: [u8; 32],
    inbound: Sender<Message>,
) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                log::warn!("raft transport: accept failed: {e}");
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peers = peers.clone();
        let inbound = inbound.clone();
        smol::spawn(async move {
            let session = match with_timeout(handshake(stream, me, &key, false)).await {
                Ok(s) if peers.contains(&s.peer) => s,
                Ok(s) => {
                    log::warn!("raft transport: refused {addr}: node {} is not a peer", s.peer);
                    return;
                }
                Err(e) => {
                    log::warn!("raft transport: refused {addr}: {e}");
                    return;
                }
            };
            if let Err(e) = receive(session, &inbound).await {
                log::info!("raft transport: connection from {addr} closed: {e}");
            }
        })
        .detach();
    }
}

async fn receive(mut s: Session, inbound: &Sender<Message>) -> io::Result<()> {
    loop {
        let frame = read_frame(&mut s.stream).await?;
        let plain = s.rx.open(&frame, &[])?;
        let m: Message =
            postcard::from_bytes(&plain).map_err(|e| invalid(&format!("undecodable message: {e}")))?;
        if m.from != s.peer {
            log::warn!(
                "raft transport: node {} sent a message claiming to be from {}",
                s.peer,
                m.from
            );
            continue;
        }
        if inbound.send(m).await.is_err() {
            return Ok(());
        }
    }
}

async fn dial_loop(me: NodeId, peer: NodeId, addr: SocketAddr, key: [u8; 32], queue: Receiver<Message>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = async {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            handshake(stream, me, &key, true).await
        };
        match with_timeout(connected).await {
            Ok(mut s) if s.peer == peer => {
                backoff = Duration::from_millis(100);
                loop {
                    let Ok(m) = queue.recv().await else { return };
                    // Postcard encoding of plain data into a Vec cannot fail.
                    let plain = postcard::to_allocvec(&m).unwrap_or_default();
                    let sent = match s.tx.seal(&plain, &[]) {
                        Ok(frame) => write_frame(&mut s.stream, &frame).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = sent {
                        log::info!("raft transport: connection to node {peer} at {addr} lost: {e}");
                        break;
                    }
                }
            }
            Ok(s) => log::warn!(
                "raft transport: {addr} answered as node {}, expected {peer}",
                s.peer
            ),
            Err(e) => log::debug!("raft transport: cannot reach node {peer} at {addr}: {e}"),
        }
        if queue.is_closed() {
            return;
        }
        smol::Timer::after(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Body;

    fn msg(from: NodeId, to: NodeId, term: u64) -> Message {
        Message {
            from,
            to,
            term,
            body: Body::TimeoutNow,
        }
    }

    async fn listener() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        (l, a)
    }

    async fn recv_within(rx: &Receiver<Message>, ms: u64) -> Option<Message> {
        smol::future::or(async { rx.recv().await.ok() }, async {
            smol::Timer::after(Duration::from_millis(ms)).await;
            None
        })
        .await
    }

    #[test]
    fn peers_with_the_key_exchange_messages() {
        smol::block_on(async {
            let (l1, a1) = listener().await;
            let (l2, a2) = listener().await;
            let peers: BTreeMap<NodeId, SocketAddr> = [(1, a1), (2, a2)].into();
            let key = [7u8; 32];
            let (t1, r1) = Transport::start(1, l1, peers.clone(), key, 64);
            let (t2, r2) = Transport::start(2, l2, peers, key, 64);
            for term in 1..=50 {
                assert!(t1.send(msg(1, 2, term)));
            }
            assert!(t2.send(msg(2, 1, 9)));
            for term in 1..=50 {
                assert_eq!(
                    recv_within(&r2, 5000).await,
                    Some(msg(1, 2, term)),
                    "in order, none lost"
                );
            }
            assert_eq!(recv_within(&r1, 5000).await, Some(msg(2, 1, 9)));
        });
    }

    #[test]
    fn peer_without_the_key_is_refused() {
        smol::block_on(async {
            let (l1, a1) = listener().await;
            let (l3, a3) = listener().await;
            let (_t1, r1) = Transport::start(1, l1, [(1, a1), (3, a3)].into(), [1u8; 32], 64);
            let (t3, _r3) = Transport::start(3, l3, [(1, a1), (3, a3)].into(), [2u8; 32], 64);
            assert!(t3.send(msg(3, 1, 1)));
            assert_eq!(
                recv_within(&r1, 700).await,
                None,
                "a message under the wrong key got through"
            );
            // Raw bytes that are no handshake are refused too.
            let mut raw = TcpStream::connect(a1).await.unwrap();
            raw.write_all(&[0u8; HELLO_LEN]).await.unwrap();
            let mut buf = [0u8; 64];
            let n = smol::future::or(async { raw.read(&mut buf).await.unwrap_or(0) }, async {
                smol::Timer::after(Duration::from_secs(3)).await;
                999
            })
            .await;
            assert_eq!(n, 0, "connection with a bad hello must be closed");
        });
    }

    #[test]
    fn tampered_frame_fails_authentication() {
        let key = [9u8; 32];
        let (hi, hr) = (hello(1).unwrap(), hello(2).unwrap());
        let (mut a, _) = session_keys(&key, &hi, &hr);
        let (mut b, _) = session_keys(&key, &hi, &hr);
        let mut frame = a.seal(b"payload", &[]).unwrap();
        frame[0] ^= 1;
        assert!(b.open(&frame, &[]).is_err());
        let (mut c, _) = session_keys(&[8u8; 32], &hi, &hr);
        let frame = a.seal(b"payload", &[]).unwrap();
        assert!(
            c.open(&frame, &[]).is_err(),
            "a different cluster key must not open frames"
        );
    }
}
