//! The embedded DNS server: container names on user networks, everything else forwarded.
//!
//! Guarantees:
//! - A client is answered from the networks it is attached to (found by its source address;
//!   a client with no container address gets the network of the listener it asked). It sees
//!   container names, aliases, hostnames, short IDs and `name.network`; several containers
//!   behind one name give all their A records, shuffled. AAAA for a known name is an empty
//!   NOERROR; PTR answers for container addresses; an unknown name inside the container
//!   domain (one label, or ending in a network's name) is NXDOMAIN.
//! - Anything else goes to the upstream servers in order; an upstream that refuses or stays
//!   silent for the timeout is skipped; when all fail the client gets SERVFAIL. Forwarding
//!   sockets are made on the server's own thread, which lives in the daemon's namespace, so an
//!   upstream on the host's loopback (127.0.0.53) works.
//! - UDP answers never exceed 512 bytes, or the client's EDNS0 size; over that they are cut
//!   with TC set and the client retries over TCP, where the limit is 65535.

use super::netns::{self, Netns};
use crate::wire::dns::{self, rcode, rtype, Message, Name, RData, Record, CLASS_IN};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::{Rc, Weak};
use std::sync::{mpsc, Arc, RwLock};
use std::time::Duration;

/// TTL of container records, as Docker's.
const CONTAINER_TTL: u32 = 600;
/// EDNS0 payload size shoal advertises in its own answers (RFC 6891 §6.2.5; DNS flag day 2020).
const OWN_EDNS_SIZE: u16 = 1232;

/// One container's presence on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEntry {
    pub network: String,
    pub container_id: String,
    /// Container name, aliases, hostname, short id (lowercase, without the network suffix).
    pub names: Vec<String>,
    pub ip: Ipv4Addr,
}

/// All names the server knows; shared between the manager and the server thread.
#[derive(Debug, Default)]
pub struct DnsTable {
    entries: Vec<DnsEntry>,
    /// Networks whose names are never served (Docker's default bridge has no name service).
    forward_only: Vec<String>,
    /// Container id → its own upstream servers (`--dns` on a user network): its queries for
    /// outside names go there instead of the board's.
    upstreams_of: std::collections::HashMap<String, Vec<SocketAddr>>,
}

impl DnsTable {
    pub fn add(&mut self, mut entry: DnsEntry) {
        for n in &mut entry.names {
            *n = n.trim_end_matches('.').to_ascii_lowercase();
        }
        // Unique, first occurrence kept: the first name is the one PTR answers give.
        let mut seen = std::collections::HashSet::new();
        entry.names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
        self.remove(&entry.container_id, &entry.network);
        self.entries.push(entry);
    }

    pub fn remove(&mut self, container_id: &str, network: &str) {
        self.entries
            .retain(|e| !(e.container_id == container_id && e.network == network));
        if !self.entries.iter().any(|e| e.container_id == container_id) {
            self.upstreams_of.remove(container_id);
        }
    }

    /// Forward the outside queries of `container_id` to `servers` (none: the board's).
    pub fn set_upstreams_of(&mut self, container_id: &str, servers: Vec<SocketAddr>) {
        if servers.is_empty() {
            self.upstreams_of.remove(container_id);
        } else {
            self.upstreams_of.insert(container_id.to_string(), servers);
        }
    }

    /// The upstream servers of the container at `client`, when it has its own.
    pub fn upstreams_for(&self, client: IpAddr) -> Option<&[SocketAddr]> {
        self.entries
            .iter()
            .filter(|e| IpAddr::V4(e.ip) == client)
            .find_map(|e| self.upstreams_of.get(&e.container_id))
            .map(Vec::as_slice)
    }

    pub fn remove_network(&mut self, network: &str) {
        self.entries.retain(|e| e.network != network);
        self.forward_only.retain(|n| n != network);
    }

    pub fn set_forward_only(&mut self, network: &str) {
        if !self.forward_only.iter().any(|n| n == network) {
            self.forward_only.push(network.to_string());
        }
    }

    pub fn entries(&self) -> &[DnsEntry] {
        &self.entries
    }

    /// The networks a client at `client` is on; falls back to the listener's network.
    fn client_networks(&self, client: IpAddr, listener_network: &str) -> Vec<String> {
        // The client's container, then every network that container is on.
        let ids: Vec<&str> = self
            .entries
            .iter()
            .filter(|e| IpAddr::V4(e.ip) == client)
            .map(|e| e.container_id.as_str())
            .collect();
        let mut nets: Vec<String> = Vec::new();
        for e in self
            .entries
            .iter()
            .filter(|e| ids.contains(&e.container_id.as_str()))
        {
            if !nets.contains(&e.network) {
                nets.push(e.network.clone());
            }
        }
        if nets.is_empty() {
            nets.push(listener_network.to_string());
        }
        nets.retain(|n| !self.forward_only.contains(n));
        nets
    }

    /// The addresses `key` (lowercase, no trailing dot) names on `networks`.
    fn lookup(&self, key: &str, networks: &[String]) -> Vec<Ipv4Addr> {
        let mut out = Vec::new();
        for e in self.entries.iter().filter(|e| networks.contains(&e.network)) {
            let bare = strip_network(key, &e.network).unwrap_or(key);
            if e.names.iter().any(|n| n == bare || n == key) && !out.contains(&e.ip) {
                out.push(e.ip);
            }
        }
        out
    }
}

/// `name` of `name.network` (the network's name compared without case), without allocating:
/// this runs for every entry of every query.
fn strip_network<'a>(key: &'a str, network: &str) -> Option<&'a str> {
    let cut = key.len().checked_sub(network.len() + 1)?;
    let dot = key.is_char_boundary(cut) && key.as_bytes()[cut] == b'.';
    (dot && key[cut + 1..].eq_ignore_ascii_case(network)).then(|| &key[..cut])
}

/// What to do with a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Answer(Message),
    Forward,
}

/// Decide the answer for `query` from `client`, asked on `listener_network`. Pure.
pub fn decide(table: &DnsTable, client: IpAddr, listener_network: &str, query: &Message) -> Decision {
    if query.header.response || query.header.opcode != 0 {
        return Decision::Answer(reply(query, rcode::NOTIMP));
    }
    let [q] = &query.questions[..] else {
        return Decision::Answer(reply(query, rcode::FORMERR));
    };
    if q.qclass != CLASS_IN {
        return Decision::Forward;
    }
    let networks = table.client_networks(client, listener_network);
    if networks.is_empty() {
        return Decision::Forward;
    }
    let key = q.name.to_lowercase_key();
    if q.qtype == rtype::PTR {
        if let Some(ip) = dns::parse_ptr_v4(&q.name) {
            let hit = table
                .entries
                .iter()
                .find(|e| e.ip == ip && networks.contains(&e.network));
            if let Some(e) = hit {
                let Some(first) = e.names.first() else {
                    return Decision::Forward;
                };
                let Ok(target) = Name::from_dotted(&format!("{first}.{}", e.network)) else {
                    return Decision::Forward;
                };
                let mut m = reply(query, rcode::NOERROR);
                m.answers.push(Record {
                    name: q.name.clone(),
                    class: CLASS_IN,
                    ttl: CONTAINER_TTL,
                    data: RData::Ptr(target),
                });
                return Decision::Answer(m);
            }
        }
        return Decision::Forward;
    }
    let mut ips = table.lookup(&key, &networks);
    if ips.is_empty() {
        let in_container_domain = !key.is_empty()
            && (!key.contains('.')
                || networks
                    .iter()
                    .any(|n| key.ends_with(&format!(".{}", n.to_ascii_lowercase()))));
        return if in_container_domain {
            Decision::Answer(reply(query, rcode::NXDOMAIN))
        } else {
            Decision::Forward
        };
    }
    let mut m = reply(query, rcode::NOERROR);
    if q.qtype == rtype::A || q.qtype == 255 {
        fastrand::shuffle(&mut ips);
        m.answers = ips
            .into_iter()
            .map(|ip| Record {
                name: q.name.clone(),
                class: CLASS_IN,
                ttl: CONTAINER_TTL,
                data: RData::A(ip),
            })
            .collect();
    }
    // Other types for a known IPv4-only name: empty NOERROR, so resolvers do not fall back.
    Decision::Answer(m)
}

fn reply(query: &Message, code: u8) -> Message {
    let mut m = Message::response_to(query, code);
    if query.opt().is_some() {
        m.additionals.push(Record {
            name: Name::root(),
            class: OWN_EDNS_SIZE,
            ttl: 0,
            data: RData::Other {
                rtype: rtype::OPT,
                data: Vec::new(),
            },
        });
    }
    m
}

/// A SERVFAIL or FORMERR for bytes that may not parse: echo the id when there is one.
fn failure_bytes(request: &[u8], code: u8) -> Vec<u8> {
    if let Ok(q) = Message::parse_bytes(request) {
        if let Ok(b) = reply(&q, code).emit(dns::MAX_UDP_CLASSIC) {
            return b;
        }
    }
    let id = if request.len() >= 2 {
        [request[0], request[1]]
    } else {
        [0, 0]
    };
    vec![id[0], id[1], 0x80, 0x80 | code, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// Upstream servers and the per-server timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstreams {
    pub servers: Vec<SocketAddr>,
    pub timeout: Duration,
}

impl Upstreams {
    /// From resolv.conf text: every `nameserver` line, port 53.
    pub fn from_resolv_conf(text: &str) -> Upstreams {
        let servers = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|rest| rest.trim().split(['%', ' ', '\t']).next()?.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        Upstreams {
            servers,
            timeout: Duration::from_secs(2),
        }
    }
}

async fn with_timeout<T>(t: Duration, f: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    smol::future::or(f, async {
        smol::Timer::after(t).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
    })
    .await
}

async fn forward_udp_one(up: SocketAddr, query: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let local: SocketAddr = if up.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = smol::net::UdpSocket::bind(local).await?;
    sock.connect(up).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65535];
    with_timeout(timeout, async {
        loop {
            let n = sock.recv(&mut buf).await?;
            // Only a reply carrying our id counts (RFC 5452 §9.1).
            if n >= 2 && buf[..2] == query[..2] {
                return Ok(buf[..n].to_vec());
            }
        }
    })
    .await
}

async fn forward_tcp_one(up: SocketAddr, query: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    use smol::io::{AsyncReadExt, AsyncWriteExt};
    with_timeout(timeout, async {
        let mut s = smol::net::TcpStream::connect(up).await?;
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(query);
        s.write_all(&framed).await?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).await?;
        Ok(buf)
    })
    .await
}

/// Try each upstream in order; SERVFAIL when none answers.
async fn forward(upstreams: &Upstreams, query: &[u8], tcp: bool) -> Vec<u8> {
    for up in &upstreams.servers {
        let got = if tcp {
            forward_tcp_one(*up, query, upstreams.timeout).await
        } else {
            forward_udp_one(*up, query, upstreams.timeout).await
        };
        match got {
            Ok(reply) => return reply,
            Err(e) => log::debug!("dns: upstream {up} failed: {e}"),
        }
    }
    failure_bytes(query, rcode::SERVFAIL)
}

/// The state a listener task needs.
struct Shared {
    table: Arc<RwLock<DnsTable>>,
    upstreams: RwLock<Upstreams>,
}

/// What to do with one request, decided without waiting on anything.
enum Outcome {
    Reply(Vec<u8>),
    /// Not worth an answer (a response, or too short to carry an id).
    Ignore,
    /// Ask the upstream servers; cut the reply to `limit` bytes.
    Forward {
        upstreams: Upstreams,
        limit: usize,
    },
}

fn prepare(shared: &Shared, network: &str, client: SocketAddr, request: &[u8], tcp: bool) -> Outcome {
    let query = match Message::parse_bytes(request) {
        Ok(q) => q,
        // Too short to carry an id: nothing sensible to answer.
        Err(_) if request.len() < 2 => return Outcome::Ignore,
        Err(_) => return Outcome::Reply(failure_bytes(request, rcode::FORMERR)),
    };
    if query.header.response {
        return Outcome::Ignore;
    }
    let limit = if tcp { 65535 } else { query.max_udp_response() };
    let table = shared.table.read().unwrap_or_else(|p| p.into_inner());
    match decide(&table, client.ip(), network, &query) {
        Decision::Answer(m) => Outcome::Reply(
            m.emit(limit)
                .unwrap_or_else(|_| failure_bytes(request, rcode::SERVFAIL)),
        ),
        Decision::Forward => {
            let mut upstreams = shared.upstreams.read().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(own) = table.upstreams_for(client.ip()) {
                upstreams.servers = own.to_vec();
            }
            Outcome::Forward { upstreams, limit }
        }
    }
}

async fn forward_and_fit(upstreams: &Upstreams, request: &[u8], tcp: bool, limit: usize) -> Vec<u8> {
    let reply = forward(upstreams, request, tcp).await;
    if tcp || reply.len() <= limit {
        return reply;
    }
    // An upstream ignoring the client's size: cut it ourselves.
    match Message::parse_bytes(&reply).and_then(|m| m.emit(limit)) {
        Ok(b) => b,
        Err(_) => failure_bytes(request, rcode::SERVFAIL),
    }
}

async fn handle(
    shared: &Shared,
    network: &str,
    client: SocketAddr,
    request: &[u8],
    tcp: bool,
) -> Option<Vec<u8>> {
    match prepare(shared, network, client, request, tcp) {
        Outcome::Reply(r) => Some(r),
        Outcome::Ignore => None,
        Outcome::Forward { upstreams, limit } => Some(forward_and_fit(&upstreams, request, tcp, limit).await),
    }
}

/// Spawn a detached task on the thread's executor, if it still exists.
fn spawn_on(ex: &Weak<smol::LocalExecutor<'static>>, task: impl std::future::Future<Output = ()> + 'static) {
    if let Some(ex) = ex.upgrade() {
        ex.spawn(task).detach();
    }
}

async fn serve_udp(
    ex: Weak<smol::LocalExecutor<'static>>,
    shared: Arc<Shared>,
    network: String,
    sock: smol::net::UdpSocket,
) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                log::warn!("dns: receiving on {:?}: {e}", sock.local_addr());
                smol::Timer::after(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Local names are answered right here; only forwarding waits on the network, so only it
        // becomes a task of its own, and a slow upstream does not hold up local names. Tasks
        // run on this thread's executor, so sockets they open stay in its namespace.
        match prepare(&shared, &network, peer, &buf[..n], false) {
            Outcome::Reply(reply) => {
                let _ = sock.send_to(&reply, peer).await;
            }
            Outcome::Ignore => {}
            Outcome::Forward { upstreams, limit } => {
                let request = buf[..n].to_vec();
                let sock = sock.clone();
                spawn_on(&ex, async move {
                    let reply = forward_and_fit(&upstreams, &request, false, limit).await;
                    let _ = sock.send_to(&reply, peer).await;
                });
            }
        }
    }
}

async fn serve_tcp_conn(shared: Arc<Shared>, network: String, mut s: smol::net::TcpStream, peer: SocketAddr) {
    use smol::io::{AsyncReadExt, AsyncWriteExt};
    // RFC 7766 §6.2.3: idle connections are closed; one read deadline per message.
    loop {
        let msg = with_timeout(Duration::from_secs(10), async {
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut buf).await?;
            Ok(buf)
        })
        .await;
        let Ok(request) = msg else { return };
        let Some(reply) = handle(&shared, &network, peer, &request, true).await else {
            return;
        };
        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        if s.write_all(&framed).await.is_err() {
            return;
        }
    }
}

async fn serve_tcp(
    ex: Weak<smol::LocalExecutor<'static>>,
    shared: Arc<Shared>,
    network: String,
    listener: smol::net::TcpListener,
) {
    loop {
        match listener.accept().await {
            Ok((s, peer)) => {
                spawn_on(&ex, serve_tcp_conn(shared.clone(), network.clone(), s, peer));
            }
            Err(e) => {
                log::warn!("dns: accepting on {:?}: {e}", listener.local_addr());
                smol::Timer::after(Duration::from_millis(50)).await;
            }
        }
    }
}

enum Command {
    Listen {
        network: String,
        addr: SocketAddr,
        done: mpsc::Sender<io::Result<SocketAddr>>,
    },
    Unlisten {
        addr: SocketAddr,
    },
    Stop,
}

/// Handle to the server thread. Dropping it stops the server.
pub struct DnsServer {
    commands: smol::channel::Sender<Command>,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsServer {
    /// Start the server thread inside `ns` (the namespace holding the bridges and, usually,
    /// the host's resolver). It listens nowhere until [`DnsServer::listen`].
    pub fn start(ns: &Netns, table: Arc<RwLock<DnsTable>>, upstreams: Upstreams) -> io::Result<DnsServer> {
        let shared = Arc::new(Shared {
            table,
            upstreams: RwLock::new(upstreams),
        });
        let (tx, rx) = smol::channel::unbounded::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        let ns = ns.clone();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("shoal-dns".into())
            .spawn(move || {
                if let Err(e) = netns::enter(&ns) {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                let _ = ready_tx.send(Ok(()));
                // Tasks spawn sub-tasks through a Weak: no cycle, so when the thread ends the executor
                // and every task in it (with its sockets) are dropped.
                let ex = Rc::new(smol::LocalExecutor::new());
                smol::block_on(ex.run(async {
                    let mut tasks: HashMap<SocketAddr, Vec<smol::Task<()>>> = HashMap::new();
                    while let Ok(cmd) = rx.recv().await {
                        match cmd {
                            Command::Listen { network, addr, done } => {
                                let bound = bind_pair(addr);
                                let result = bound.map(|(udp, tcp)| {
                                    let local = udp.local_addr().unwrap_or(addr);
                                    let t1 = ex.spawn(serve_udp(
                                        Rc::downgrade(&ex),
                                        thread_shared.clone(),
                                        network.clone(),
                                        udp,
                                    ));
                                    let t2 = ex.spawn(serve_tcp(
                                        Rc::downgrade(&ex),
                                        thread_shared.clone(),
                                        network,
                                        tcp,
                                    ));
                                    tasks.insert(local, vec![t1, t2]);
                                    local
                                });
                                let _ = done.send(result);
                            }
                            Command::Unlisten { addr } => {
                                tasks.remove(&addr);
                            }
                            Command::Stop => break,
                        }
                    }
                }));
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::Error::other("dns server thread ended before starting")),
        }
        Ok(DnsServer {
            commands: tx,
            shared,
            thread: Some(thread),
        })
    }

    /// Serve `network` on `addr` (UDP and TCP); port 0 picks a free port. Returns the address.
    pub fn listen(&self, network: &str, addr: SocketAddr) -> io::Result<SocketAddr> {
        let (done, wait) = mpsc::channel();
        self.commands
            .send_blocking(Command::Listen {
                network: network.to_string(),
                addr,
                done,
            })
            .map_err(|_| io::Error::other("dns server thread is gone"))?;
        wait.recv()
            .map_err(|_| io::Error::other("dns server thread is gone"))?
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("dns server for network {network} on {addr}: {e}"),
                )
            })
    }

    /// Stop serving on `addr`.
    pub fn unlisten(&self, addr: SocketAddr) {
        let _ = self.commands.send_blocking(Command::Unlisten { addr });
    }

    pub fn set_upstreams(&self, upstreams: Upstreams) {
        *self.shared.upstreams.write().unwrap_or_else(|p| p.into_inner()) = upstreams;
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.commands.send_blocking(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Bind UDP and TCP on the same address (with port 0, TCP takes UDP's port).
fn bind_pair(addr: SocketAddr) -> io::Result<(smol::net::UdpSocket, smol::net::TcpListener)> {
    let udp = std::net::UdpSocket::bind(addr)?;
    let local = udp.local_addr()?;
    let tcp = std::net::TcpListener::bind(local)?;
    Ok((
        smol::net::UdpSocket::try_from(udp)?,
        smol::net::TcpListener::try_from(tcp)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::dns::{Header, Question};

    fn q(name: &str, qtype: u16) -> Message {
        Message {
            header: Header {
                id: 7,
                recursion_desired: true,
                ..Default::default()
            },
            questions: vec![Question {
                name: Name::from_dotted(name).unwrap(),
                qtype,
                qclass: CLASS_IN,
            }],
            ..Default::default()
        }
    }

    fn table() -> DnsTable {
        let mut t = DnsTable::default();
        let e = |net: &str, id: &str, names: &[&str], ip: [u8; 4]| DnsEntry {
            network: net.into(),
            container_id: id.into(),
            names: names.iter().map(|s| s.to_string()).collect(),
            ip: ip.into(),
        };
        t.add(e("front", "aaa", &["web1", "web", "Aaa"], [10, 0, 0, 2]));
        t.add(e("front", "bbb", &["web2", "web"], [10, 0, 0, 3]));
        t.add(e("back", "ccc", &["db"], [10, 1, 0, 2]));
        t.add(e("back", "aaa", &["web1"], [10, 1, 0, 3]));
        t
    }

    fn answer(d: Decision) -> Message {
        match d {
            Decision::Answer(m) => m,
            Decision::Forward => panic!("expected an answer"),
        }
    }

    fn ips(m: &Message) -> Vec<Ipv4Addr> {
        let mut v: Vec<_> = m
            .answers
            .iter()
            .filter_map(|r| if let RData::A(a) = r.data { Some(a) } else { None })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn alias_shared_by_two_containers_gives_both() {
        let m = answer(decide(
            &table(),
            [10, 0, 0, 2].into(),
            "front",
            &q("web", rtype::A),
        ));
        assert_eq!(
            ips(&m),
            vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)]
        );
        let m = answer(decide(
            &table(),
            [10, 0, 0, 2].into(),
            "front",
            &q("WEB.front.", rtype::A),
        ));
        assert_eq!(ips(&m).len(), 2);
    }

    #[test]
    fn names_only_on_shared_networks() {
        // web2 is on front only; a client on back alone does not see it.
        let m = answer(decide(
            &table(),
            [10, 1, 0, 2].into(),
            "back",
            &q("web2", rtype::A),
        ));
        assert_eq!(m.header.rcode, rcode::NXDOMAIN);
        // aaa is on both: it sees db and web2.
        let m = answer(decide(
            &table(),
            [10, 1, 0, 3].into(),
            "back",
            &q("web2", rtype::A),
        ));
        assert_eq!(ips(&m), vec![Ipv4Addr::new(10, 0, 0, 3)]);
        let m = answer(decide(
            &table(),
            [10, 1, 0, 3].into(),
            "back",
            &q("db.back", rtype::A),
        ));
        assert_eq!(ips(&m), vec![Ipv4Addr::new(10, 1, 0, 2)]);
    }

    #[test]
    fn aaaa_for_known_name_is_empty_noerror() {
        let m = answer(decide(
            &table(),
            [10, 0, 0, 2].into(),
            "front",
            &q("web1", rtype::AAAA),
        ));
        assert_eq!((m.header.rcode, m.answers.len()), (rcode::NOERROR, 0));
    }

    #[test]
    fn ptr_for_container_address() {
        let m = answer(decide(
            &table(),
            [10, 0, 0, 3].into(),
            "front",
            &q("2.0.0.10.in-addr.arpa", rtype::PTR),
        ));
        assert_eq!(
            m.answers[0].data,
            RData::Ptr(Name::from_dotted("web1.front").unwrap())
        );
        assert_eq!(
            decide(
                &table(),
                [10, 0, 0, 3].into(),
                "front",
                &q("9.9.9.9.in-addr.arpa", rtype::PTR)
            ),
            Decision::Forward
        );
    }

    #[test]
    fn outside_names_forward_and_unknown_inside_is_nxdomain() {
        assert_eq!(
            decide(
                &table(),
                [10, 0, 0, 2].into(),
                "front",
                &q("example.org", rtype::A)
            ),
            Decision::Forward
        );
        let m = answer(decide(
            &table(),
            [10, 0, 0, 2].into(),
            "front",
            &q("nosuch", rtype::A),
        ));
        assert_eq!(m.header.rcode, rcode::NXDOMAIN);
        let m = answer(decide(
            &table(),
            [10, 0, 0, 2].into(),
            "front",
            &q("nosuch.front", rtype::A),
        ));
        assert_eq!(m.header.rcode, rcode::NXDOMAIN);
    }

    #[test]
    fn unknown_client_uses_listener_network_and_forward_only_networks_forward() {
        let m = answer(decide(
            &table(),
            [192, 168, 9, 9].into(),
            "front",
            &q("web1", rtype::A),
        ));
        assert_eq!(ips(&m), vec![Ipv4Addr::new(10, 0, 0, 2)]);
        let mut t = table();
        t.set_forward_only("front");
        assert_eq!(
            decide(&t, [10, 0, 0, 3].into(), "front", &q("web1", rtype::A)),
            Decision::Forward
        );
    }

    #[test]
    fn a_container_can_have_its_own_upstreams() {
        let mut t = table();
        let a = "10.0.0.2".parse().unwrap();
        let own: SocketAddr = "192.0.2.53:53".parse().unwrap();
        assert_eq!(t.upstreams_for(a), None);
        t.set_upstreams_of("aaa", vec![own]);
        assert_eq!(t.upstreams_for(a), Some(&[own][..]));
        assert_eq!(t.upstreams_for("10.1.0.3".parse().unwrap()), Some(&[own][..]));
        assert_eq!(t.upstreams_for("10.0.0.3".parse().unwrap()), None);
        // Gone from one network: kept; gone from every network: forgotten.
        t.remove("aaa", "front");
        assert_eq!(t.upstreams_for("10.1.0.3".parse().unwrap()), Some(&[own][..]));
        t.remove("aaa", "back");
        t.add(DnsEntry {
            network: "front".into(),
            container_id: "aaa".into(),
            names: vec!["web1".into()],
            ip: "10.0.0.2".parse().unwrap(),
        });
        assert_eq!(t.upstreams_for(a), None);
    }

    #[test]
    fn removal_and_upstreams_parsing() {
        let mut t = table();
        t.remove("bbb", "front");
        let m = answer(decide(&t, [10, 0, 0, 2].into(), "front", &q("web", rtype::A)));
        assert_eq!(ips(&m), vec![Ipv4Addr::new(10, 0, 0, 2)]);
        let u = Upstreams::from_resolv_conf(
            "# x\nnameserver 127.0.0.53\nsearch lan\nnameserver fe80::1%eth0\nnameserver bogus\n",
        );
        assert_eq!(
            u.servers,
            vec!["127.0.0.53:53".parse().unwrap(), "[fe80::1]:53".parse().unwrap()]
        );
    }

    #[test]
    fn garbage_gets_formerr_with_its_id() {
        let b = failure_bytes(&[0xAB, 0xCD, 0xFF], rcode::FORMERR);
        assert_eq!(&b[..4], &[0xAB, 0xCD, 0x80, 0x81]);
        assert!(Message::parse_bytes(&b).is_ok());
    }
}
