//! `shoal raft-node`: one member of a replicated key-value store, the raft core driven over
//! the WAL and the encrypted transport. It exists to exercise raft end to end with real
//! processes, disks and sockets (kill -9, partitions, restarts).
//!
//! Clients speak lines over TCP on `--client`: `put KEY VALUE` answers `ok INDEX` once the
//! write is applied; `get KEY` answers `value V` or `none` after a ReadIndex round, so reads
//! are linearizable; `add-learner ID`, `add-voter ID` and `remove ID` change the membership
//! (answered once applied); `transfer ID` hands leadership over; `status` answers
//! `id term role leader commit applied`. A node that is not
//! the leader answers `redirect ID` (or `redirect none`); any failure answers `err WHY`.
//!
//! The loop follows the raft module's numbered steps: the WAL is fsynced before messages are
//! sent; a WAL error stops the node with exit code 1.

use super::transport::{random_bytes, Transport};
use super::wal::{Wal, WalError};
use crate::raft::{ConfChange, Config, Index, NodeId, Payload, Raft, RaftError, Role, Term};
use smol::channel::{bounded, Sender};
use smol::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use smol::net::{TcpListener, TcpStream};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Validated command line of `shoal raft-node`.
#[derive(Debug)]
pub struct NodeArgs {
    pub id: NodeId,
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub client: SocketAddr,
    pub peers: BTreeMap<NodeId, SocketAddr>,
    pub key: [u8; 32],
    /// `--bootstrap` founds a cluster of these voters (default: this node and all peers).
    pub bootstrap: Option<Vec<NodeId>>,
    pub tick: Duration,
    pub snapshot_every: u64,
    pub log_level: log::LevelFilter,
}

const USAGE: &str = "usage: shoal raft-node --id N --data DIR --listen ADDR --client ADDR \
--key-file FILE [--peer ID=ADDR]... [--bootstrap [--voters ID,ID,...]] [--tick-ms MS] [--snapshot-every N] [--log-level LEVEL]";

pub fn parse_args(args: &[String]) -> Result<NodeArgs, String> {
    let mut it = args.iter();
    let (mut id, mut data, mut listen, mut client, mut key) = (None, None, None, None, None);
    let mut peers = BTreeMap::new();
    let (mut bootstrap, mut tick_ms, mut snapshot_every) = (false, 100u64, 1000u64);
    let mut log_level = log::LevelFilter::Info;
    let mut voters: Option<Vec<NodeId>> = None;
    while let Some(flag) = it.next() {
        if flag == "--bootstrap" {
            bootstrap = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--id" => id = Some(value.parse::<NodeId>().map_err(|e| bad(&e))?),
            "--data" => data = Some(PathBuf::from(value)),
            "--listen" => listen = Some(value.parse::<SocketAddr>().map_err(|e| bad(&e))?),
            "--client" => client = Some(value.parse::<SocketAddr>().map_err(|e| bad(&e))?),
            "--key-file" => key = Some(read_key(value)?),
            "--tick-ms" => tick_ms = value.parse().map_err(|e| bad(&e))?,
            "--snapshot-every" => snapshot_every = value.parse().map_err(|e| bad(&e))?,
            "--log-level" => log_level = value.parse().map_err(|e| bad(&e))?,
            "--voters" => {
                let ids: Result<Vec<NodeId>, _> = value.split(',').map(str::parse).collect();
                voters = Some(ids.map_err(|e| bad(&e))?);
            }
            "--peer" => {
                let (pid, addr) = value.split_once('=').ok_or_else(|| bad(&"expected ID=ADDR"))?;
                let pid: NodeId = pid.parse().map_err(|e| bad(&e))?;
                peers.insert(pid, addr.parse::<SocketAddr>().map_err(|e| bad(&e))?);
            }
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    let missing = |what: &str| format!("missing {what}\n{USAGE}");
    let id = id.ok_or_else(|| missing("--id"))?;
    let listen = listen.ok_or_else(|| missing("--listen"))?;
    peers.insert(id, listen);
    let bootstrap = bootstrap.then(|| voters.unwrap_or_else(|| peers.keys().copied().collect()));
    Ok(NodeArgs {
        id,
        data: data.ok_or_else(|| missing("--data"))?,
        listen,
        client: client.ok_or_else(|| missing("--client"))?,
        peers,
        key: key.ok_or_else(|| missing("--key-file"))?,
        bootstrap,
        tick: Duration::from_millis(tick_ms.max(1)),
        snapshot_every: snapshot_every.max(1),
        log_level,
    })
}

/// A key file holds 32 raw bytes or 64 hex digits.
fn read_key(path: &str) -> Result<[u8; 32], String> {
    let data = std::fs::read(path).map_err(|e| format!("reading key file {path}: {e}"))?;
    if data.len() == 32 {
        let mut key = [0u8; 32];
        key.copy_from_slice(&data);
        return Ok(key);
    }
    let text = String::from_utf8_lossy(&data);
    let hex = text.trim();
    if hex.len() != 64 {
        return Err(format!(
            "key file {path}: expected 32 bytes or 64 hex digits, found {} bytes",
            data.len()
        ));
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|e| format!("key file {path}: not hex at digit {}: {e}", 2 * i))?;
    }
    Ok(key)
}

/// `LEVEL message` lines on stderr (refused peers, torn WAL tails, lost connections).
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!("raft-node {} {}", record.level(), record.args());
        }
    }
    fn flush(&self) {}
}

static STDERR_LOG: StderrLog = StderrLog;

/// Entry point of `shoal raft-node`; returns the exit code.
pub fn node_main(args: &[String]) -> i32 {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("shoal raft-node: {e}");
            return 2;
        }
    };
    if log::set_logger(&STDERR_LOG).is_ok() {
        log::set_max_level(args.log_level);
    }
    match smol::block_on(run(args)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shoal raft-node: {e}");
            1
        }
    }
}

struct Request {
    line: String,
    reply: Sender<String>,
}

enum Event {
    Tick,
    Peer(crate::raft::Message),
    Client(Request),
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Put {
    key: String,
    value: String,
}

async fn run(args: NodeArgs) -> Result<(), String> {
    let (mut wal, stored) = Wal::open(&args.data).map_err(|e| e.to_string())?;
    let mut seed = [0u8; 8];
    random_bytes(&mut seed).map_err(|e| format!("reading /dev/urandom: {e}"))?;
    let mut cfg = Config::new(args.id, u64::from_le_bytes(seed));
    cfg.max_uncommitted_bytes = 64 * 1024 * 1024;
    // Nothing beyond (part of) the bootstrap record was stored: bootstrap (again).
    let fresh = stored.entries.is_empty() && stored.snapshot.is_none() && stored.hard_state.term <= 1;
    let mut kv: BTreeMap<String, String> = match &stored.snapshot {
        Some(s) => {
            postcard::from_bytes(&s.data).map_err(|e| format!("snapshot state does not decode: {e}"))?
        }
        None => BTreeMap::new(),
    };
    let mut raft = if let (true, Some(voters)) = (fresh, &args.bootstrap) {
        Raft::bootstrap(cfg, voters)
    } else {
        Raft::restart(cfg, stored).map_err(|e| e.to_string())?
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", args.listen))?;
    let clients = TcpListener::bind(args.client)
        .await
        .map_err(|e| format!("listening on {}: {e}", args.client))?;
    let (transport, inbound) = Transport::start(args.id, listener, args.peers.clone(), args.key, 1024);
    let (requests_tx, requests) = bounded::<Request>(1024);
    smol::spawn(serve_clients(clients, requests_tx)).detach();
    let mut ticker = smol::Timer::interval(args.tick);
    // Writes waiting to be applied: index → (term proposed in, reply).
    let mut writes: HashMap<Index, (Term, Sender<String>)> = HashMap::new();
    // Reads: ctx → (key, reply), then (index, key, reply) once the leader confirmed.
    let mut reads: HashMap<u64, (String, Sender<String>)> = HashMap::new();
    let mut confirmed: Vec<(Index, String, Sender<String>)> = Vec::new();
    let mut next_ctx = 0u64;
    log::info!(
        "raft node {} listening on {} (clients on {})",
        args.id,
        args.listen,
        args.client
    );
    loop {
        let event = smol::future::or(
            async {
                use smol::stream::StreamExt;
                ticker.next().await;
                Event::Tick
            },
            smol::future::or(
                async { inbound.recv().await.map(Event::Peer).unwrap_or(Event::Tick) },
                async { requests.recv().await.map(Event::Client).unwrap_or(Event::Tick) },
            ),
        )
        .await;
        match event {
            Event::Tick => raft.tick(),
            Event::Peer(m) => raft.step(m),
            Event::Client(req) => {
                let words: Vec<&str> = req.line.split_whitespace().collect();
                let redirect = |e: RaftError| match e {
                    RaftError::NotLeader { leader } => {
                        format!("redirect {}", leader.map_or("none".into(), |l| l.to_string()))
                    }
                    other => format!("err {other}"),
                };
                match words.as_slice() {
                    ["put", key, value] => {
                        let put = Put {
                            key: key.to_string(),
                            value: value.to_string(),
                        };
                        let data = postcard::to_allocvec(&put).unwrap_or_default();
                        match raft.propose(data) {
                            Ok(index) => {
                                writes.insert(index, (raft.status().term, req.reply));
                            }
                            Err(e) => {
                                let _ = req.reply.try_send(redirect(e));
                            }
                        }
                    }
                    ["get", key] => {
                        next_ctx += 1;
                        match raft.read_index(next_ctx.to_le_bytes().to_vec()) {
                            Ok(()) => {
                                reads.insert(next_ctx, (key.to_string(), req.reply));
                            }
                            Err(e) => {
                                let _ = req.reply.try_send(redirect(e));
                            }
                        }
                    }
                    [verb @ ("add-learner" | "add-voter" | "remove"), id] => {
                        let Ok(id) = id.parse::<NodeId>() else {
                            let _ = req.reply.try_send(format!("err bad node id {id}"));
                            continue;
                        };
                        let change = match *verb {
                            "add-learner" => ConfChange::AddLearner(id),
                            "add-voter" => ConfChange::AddVoter(id),
                            _ => ConfChange::Remove(id),
                        };
                        match raft.propose_change(change) {
                            Ok(index) => {
                                writes.insert(index, (raft.status().term, req.reply));
                            }
                            Err(e) => {
                                let _ = req.reply.try_send(redirect(e));
                            }
                        }
                    }
                    ["transfer", id] => {
                        let answer = match id.parse::<NodeId>() {
                            Ok(id) => raft.transfer_leader(id).map_or_else(redirect, |()| "ok".into()),
                            Err(e) => format!("err bad node id {id}: {e}"),
                        };
                        let _ = req.reply.try_send(answer);
                    }
                    ["status"] => {
                        let s = raft.status();
                        let role = match s.role {
                            Role::Leader => "leader",
                            Role::Follower => "follower",
                            Role::Candidate => "candidate",
                            Role::PreCandidate => "precandidate",
                        };
                        let leader = s.leader.map_or("none".into(), |l| l.to_string());
                        let line = format!("{} {} {role} {leader} {} {}", s.id, s.term, s.commit, s.applied);
                        let _ = req.reply.try_send(line);
                    }
                    _ => {
                        let _ = req
                            .reply
                            .try_send("err expected put KEY VALUE, get KEY or status".into());
                    }
                }
            }
        }
        // Steps 4 and 5 of the raft driver loop.
        let ready = raft.ready();
        if ready.is_empty() {
            raft.advance();
            continue;
        }
        wal.save(ready.hard_state.as_ref(), ready.snapshot.as_ref(), &ready.entries)
            .map_err(|e: WalError| format!("stopping: {e}"))?;
        for m in ready.messages {
            transport.send(m);
        }
        if let Some(snap) = &ready.snapshot {
            kv = postcard::from_bytes(&snap.data)
                .map_err(|e| format!("received snapshot does not decode: {e}"))?;
        }
        for e in &ready.committed {
            if let Payload::Command(data) = &e.payload {
                if let Ok(put) = postcard::from_bytes::<Put>(data) {
                    kv.insert(put.key, put.value);
                }
            }
            if let Some((term, reply)) = writes.remove(&e.index) {
                let answer = if term == e.term {
                    format!("ok {}", e.index)
                } else {
                    "err leadership lost".into()
                };
                let _ = reply.try_send(answer);
            }
        }
        for rs in ready.read_states {
            let ctx = u64::from_le_bytes(rs.ctx.as_slice().try_into().unwrap_or([0; 8]));
            if let Some((key, reply)) = reads.remove(&ctx) {
                confirmed.push((rs.index, key, reply));
            }
        }
        raft.advance();
        let applied = raft.status().applied;
        confirmed.retain(|(index, key, reply)| {
            if *index > applied {
                return true;
            }
            let _ = reply.try_send(kv.get(key).map_or("none".into(), |v| format!("value {v}")));
            false
        });
        if raft.status().role != Role::Leader {
            // Writes proposed as leader will not be answered by this node any more.
            for (_, (_, reply)) in writes.drain() {
                let _ = reply.try_send("err leadership lost".into());
            }
        }
        let st = raft.status();
        if st.applied >= st.first_index + args.snapshot_every {
            let data = postcard::to_allocvec(&kv).unwrap_or_default();
            if raft.compact(st.applied, data).is_ok() {
                if let Some(snap) = raft.snapshot() {
                    wal.compact(snap).map_err(|e| format!("stopping: {e}"))?;
                }
            }
        }
    }
}

async fn serve_clients(listener: TcpListener, requests: Sender<Request>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: wait instead of spinning.
                log::warn!("raft-node: accepting a client failed: {e}");
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        let requests = requests.clone();
        smol::spawn(async move {
            let _ = serve_client(stream, requests).await;
        })
        .detach();
    }
}

async fn serve_client(stream: TcpStream, requests: Sender<Request>) -> std::io::Result<()> {
    let mut writer = stream.clone();
    let mut lines = BufReader::new(stream).lines();
    use smol::stream::StreamExt;
    while let Some(line) = lines.next().await {
        let (reply, answer) = bounded(1);
        if requests.send(Request { line: line?, reply }).await.is_err() {
            return Ok(());
        }
        let text = smol::future::or(
            async { answer.recv().await.unwrap_or_else(|_| "err node stopped".into()) },
            async {
                smol::Timer::after(Duration::from_secs(5)).await;
                "err timeout".to_string()
            },
        )
        .await;
        writer.write_all(format!("{text}\n").as_bytes()).await?;
    }
    Ok(())
}
