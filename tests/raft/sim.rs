//! A deterministic, seeded simulation of a raft cluster running the KV workload.
//!
//! One time unit is a step; each node ticks every `TICK` units. The network delays, drops,
//! duplicates and reorders messages and can be partitioned, symmetrically or one way. Nodes
//! crash (losing or tearing unsynced writes, as after EIO or power loss) and restart from
//! their disk. Members are added, promoted and removed, logs are compacted into snapshots,
//! leadership is transferred. After every step the Raft safety properties are checked; after
//! the fault phase, the cluster must elect a leader and commit within a bound; at the end the
//! client history must be linearizable.

use super::kv::{Command, Kv};
use super::linearizability::{self, Op, OpKind};
use super::rng::Rng;
use shoal::raft::{
    Body, ConfChange, Config, Entry, HardState, Index, Message, NodeId, Payload, Raft, Role, Snapshot,
    Stored, Term,
};
use std::collections::{BTreeMap, HashMap, HashSet};

pub const TICK: u64 = 10;
const MAX_IDS: u64 = 9;

/// What one seed's run looked like.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub steps: u64,
    pub elections: u64,
    pub crashes: u64,
    pub snapshots_sent: u64,
    pub changes: u64,
    pub committed: u64,
    pub ops: u64,
    pub liveness_units: u64,
}

/// The per-seed knobs, drawn from the seed.
#[derive(Debug, Clone)]
pub struct Params {
    pub voters: u64,
    pub fault_units: u64,
    pub liveness_bound: u64,
    pub loss: f64,
    pub dup: f64,
    pub long_delay: f64,
    pub crash: f64,
    pub partition: f64,
    pub churn: f64,
    pub transfer: f64,
    pub snapshot_every: u64,
    pub clients: u64,
}

impl Params {
    pub fn from_seed(rng: &mut Rng) -> Params {
        Params {
            voters: *rng.pick(&[1, 3, 3, 3, 5, 5]).expect("non-empty"),
            fault_units: 2000,
            liveness_bound: 1500,
            loss: *rng.pick(&[0.0, 0.02, 0.1, 0.3]).expect("non-empty"),
            dup: *rng.pick(&[0.0, 0.02, 0.1]).expect("non-empty"),
            long_delay: *rng.pick(&[0.0, 0.02, 0.1]).expect("non-empty"),
            crash: *rng.pick(&[0.0, 0.001, 0.003, 0.01]).expect("non-empty"),
            partition: *rng.pick(&[0.0, 0.002, 0.005, 0.02]).expect("non-empty"),
            churn: *rng.pick(&[0.0, 0.002, 0.005]).expect("non-empty"),
            transfer: *rng.pick(&[0.0, 0.001, 0.003, 0.01]).expect("non-empty"),
            snapshot_every: rng.range(5, 40),
            clients: rng.range(1, 4),
        }
    }
}

#[derive(Default, Clone)]
struct Disk {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

enum Record {
    Snapshot(Snapshot),
    Entry(Entry),
    HardState(HardState),
}

impl Disk {
    fn write(&mut self, record: Record) {
        match record {
            Record::Snapshot(s) => {
                self.entries.clear();
                self.snapshot = Some(s);
            }
            Record::Entry(e) => {
                self.entries.retain(|old| old.index < e.index);
                self.entries.push(e);
            }
            Record::HardState(hs) => self.hard_state = hs,
        }
    }

    fn last_index(&self) -> Index {
        self.entries
            .last()
            .map(|e| e.index)
            .or(self.snapshot.as_ref().map(|s| s.meta.index))
            .unwrap_or(0)
    }
}

struct Process {
    raft: Raft,
    kv: Kv,
    applied: Index,
    /// op id → (client, key) of reads waiting for a ReadState.
    reads: HashMap<u64, u8>,
    /// Reads whose index is known, waiting for the state machine to catch up.
    ready_reads: Vec<(u64, u8, Index)>,
    last: (Term, Index, Index),
    was_leader_in: Option<Term>,
}

struct Node {
    disk: Disk,
    process: Option<Process>,
    down_until: u64,
    phase: u64,
}

struct InFlight {
    at: u64,
    to: NodeId,
    from: NodeId,
    bytes: Vec<u8>,
}

#[derive(Clone)]
enum ClientState {
    Idle {
        until: u64,
    },
    Waiting {
        op_id: u64,
        node: NodeId,
        deadline: u64,
        history_slot: usize,
    },
}

pub struct Sim {
    pub seed: u64,
    pub params: Params,
    rng: Rng,
    time: u64,
    event: u64,
    nodes: BTreeMap<NodeId, Node>,
    net: Vec<InFlight>,
    blocked: HashSet<(NodeId, NodeId)>,
    faults: bool,
    loss: f64,
    dup: f64,
    clients: Vec<ClientState>,
    next_op: u64,
    history: Vec<Op>,
    /// Reads that timed out: left out of the check.
    void: HashSet<usize>,
    // What the checker knows.
    leaders: HashMap<Term, NodeId>,
    entry_ids: HashMap<(Index, Term), (u64, Term)>,
    committed: BTreeMap<Index, (Term, u64)>,
    /// The term of the first node seen to commit each index (at least the committing term).
    commit_term: BTreeMap<Index, Term>,
    pub stats: Stats,
    pub trace: bool,
}

fn hash_entry(e: &Entry) -> u64 {
    let bytes = postcard::to_allocvec(&e.payload).expect("payload encodes");
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

impl Sim {
    pub fn new(seed: u64) -> Sim {
        let mut rng = Rng::new(seed);
        let params = Params::from_seed(&mut rng);
        let voters: Vec<NodeId> = (1..=params.voters).collect();
        let mut sim = Sim {
            seed,
            loss: params.loss,
            dup: params.dup,
            clients: vec![ClientState::Idle { until: 0 }; params.clients as usize],
            params,
            rng,
            time: 0,
            event: 0,
            nodes: BTreeMap::new(),
            net: Vec::new(),
            blocked: HashSet::new(),
            faults: true,
            next_op: 1,
            history: Vec::new(),
            void: HashSet::new(),
            leaders: HashMap::new(),
            entry_ids: HashMap::new(),
            committed: BTreeMap::new(),
            commit_term: BTreeMap::new(),
            stats: Stats::default(),
            trace: std::env::var_os("SHOAL_RAFT_TRACE").is_some(),
        };
        for &id in &voters {
            let raft = Raft::bootstrap(sim.config(id), &voters);
            sim.add_node(id, raft);
        }
        sim
    }

    fn config(&mut self, id: NodeId) -> Config {
        let mut cfg = Config::new(id, self.rng.next_u64());
        // Sometimes one entry per append, so a batch can be split by loss and crashes.
        cfg.max_msg_bytes = if self.rng.chance(0.3) {
            1
        } else {
            self.rng.range(40, 400) as usize
        };
        cfg.max_inflight_msgs = self.rng.range(1, 8) as usize;
        cfg.max_inflight_bytes = self.rng.range(100, 4000) as usize;
        cfg.snapshot_chunk_bytes = self.rng.range(8, 64) as usize;
        cfg
    }

    fn add_node(&mut self, id: NodeId, raft: Raft) {
        let phase = self.rng.range(0, TICK);
        let process = Process::new(raft, None);
        self.nodes.insert(
            id,
            Node {
                disk: Disk::default(),
                process: Some(process),
                down_until: 0,
                phase,
            },
        );
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            println!("t={} {}", self.time, what());
        }
    }

    /// Run the fault phase, the liveness phase and the linearizability check.
    pub fn run(&mut self) -> Result<Stats, String> {
        for _ in 0..self.params.fault_units {
            self.step()?;
        }
        self.heal();
        let start = self.time;
        loop {
            self.step()?;
            if self.live() {
                break;
            }
            if self.time - start > self.params.liveness_bound {
                let states: Vec<String> = self
                    .nodes
                    .values()
                    .filter_map(|n| n.process.as_ref())
                    .map(|p| {
                        let st = p.raft.status();
                        format!(
                            "\n  {} {:?} term {} vote {:?} leader {:?} commit {} last {}/{:?} voters {:?} learners {:?}",
                            st.id, st.role, st.term, st.vote, st.leader, st.commit, st.last_index,
                            p.raft.term_at(st.last_index), st.membership.voters, st.membership.learners
                        )
                    })
                    .collect();
                return Err(format!(
                    "liveness: no leader committed an entry within {} units after faults stopped:{}",
                    self.params.liveness_bound,
                    states.concat()
                ));
            }
        }
        self.stats.liveness_units = self.time - start;
        // Let outstanding client ops finish or time out.
        for _ in 0..300 {
            self.step()?;
        }
        for client in self.clients.clone().into_iter().enumerate() {
            if let (c, ClientState::Waiting { .. }) = client {
                self.time_out(c);
            }
        }
        let history: Vec<Op> = self
            .history
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.void.contains(i))
            .map(|(_, op)| op.clone())
            .collect();
        self.stats.ops = history.len() as u64;
        self.stats.committed = self.committed.len() as u64;
        linearizability::check(&history)?;
        Ok(self.stats.clone())
    }

    /// Stop injecting faults and bring every member back.
    fn heal(&mut self) {
        self.faults = false;
        self.blocked.clear();
        self.loss = 0.0;
        self.dup = 0.0;
        let down: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.process.is_none())
            .map(|(&id, _)| id)
            .collect();
        for id in down {
            self.restart(id);
        }
    }

    /// A voter leads and has committed an entry of its own term.
    fn live(&self) -> bool {
        self.nodes.values().filter_map(|n| n.process.as_ref()).any(|p| {
            let st = p.raft.status();
            st.role == Role::Leader
                && st.membership.is_voter(st.id)
                && p.raft.term_at(st.commit) == Some(st.term)
                && p.was_leader_in == Some(st.term)
        })
    }

    fn step(&mut self) -> Result<(), String> {
        self.time += 1;
        self.stats.steps += 1;
        if self.faults {
            self.inject_faults();
        }
        self.deliver()?;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &id in &ids {
            let node = self.nodes.get_mut(&id).expect("listed");
            if (self.time + node.phase).is_multiple_of(TICK) {
                if let Some(p) = node.process.as_mut() {
                    p.raft.tick();
                }
            }
        }
        self.run_clients();
        let mut order = ids;
        self.rng.shuffle(&mut order);
        for id in order {
            self.handle_ready(id)?;
        }
        self.check()
    }

    fn inject_faults(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        // Crash-stop at an instant with nothing in flight; mid-write crashes happen in
        // `handle_ready`.
        if self.rng.chance(self.params.crash) {
            // Leaders half the time: their crashes leave the interesting partial logs.
            let victim = match self.leader_id() {
                Some(l) if self.rng.chance(0.5) => Some(l),
                _ => self.rng.pick(&ids).copied(),
            };
            if let Some(id) = victim {
                self.crash(id, "crash");
            }
        }
        let due: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.process.is_none() && n.down_until <= self.time)
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.restart(id);
        }
        if self.rng.chance(self.params.partition) {
            self.blocked.clear();
            let mut shuffled = ids.clone();
            self.rng.shuffle(&mut shuffled);
            let cut = self.rng.range(1, shuffled.len().max(2) as u64) as usize;
            let (a, b) = shuffled.split_at(cut.min(shuffled.len()));
            let one_way = self.rng.chance(0.3);
            for &x in a {
                for &y in b {
                    self.blocked.insert((x, y));
                    if !one_way {
                        self.blocked.insert((y, x));
                    }
                }
            }
            self.log(|| format!("partition {a:?} | {b:?} one_way={one_way}"));
        }
        if self.rng.chance(self.params.partition * 2.0) {
            self.blocked.clear();
        }
        if self.rng.chance(self.params.churn) {
            self.churn();
        }
        if self.rng.chance(self.params.transfer) {
            if let Some((lid, to)) = self.leader_and_random_voter() {
                let result = self
                    .nodes
                    .get_mut(&lid)
                    .and_then(|n| n.process.as_mut())
                    .map(|p| p.raft.transfer_leader(to));
                self.log(|| format!("transfer {lid} -> {to}: {result:?}"));
            }
        }
    }

    fn leader_id(&self) -> Option<NodeId> {
        let leaders = self
            .nodes
            .iter()
            .filter_map(|(&id, n)| n.process.as_ref().map(|p| (id, p.raft.status())))
            .filter(|(_, st)| st.role == Role::Leader);
        leaders.max_by_key(|(_, st)| st.term).map(|(id, _)| id)
    }

    fn leader_and_random_voter(&mut self) -> Option<(NodeId, NodeId)> {
        let lid = self.leader_id()?;
        let voters: Vec<NodeId> = self.nodes[&lid]
            .process
            .as_ref()?
            .raft
            .status()
            .membership
            .voters
            .into_iter()
            .collect();
        let to = *self.rng.pick(&voters)?;
        Some((lid, to))
    }

    fn churn(&mut self) {
        let Some(lid) = self.leader_id() else { return };
        let membership = self.nodes[&lid]
            .process
            .as_ref()
            .expect("leader runs")
            .raft
            .status()
            .membership;
        let unused = (1..=MAX_IDS).find(|id| !self.nodes.contains_key(id));
        let change = match self.rng.range(0, 3) {
            0 if unused.is_some() => ConfChange::AddLearner(unused.expect("checked")),
            1 if !membership.learners.is_empty() => {
                let learners: Vec<NodeId> = membership.learners.iter().copied().collect();
                ConfChange::AddVoter(*self.rng.pick(&learners).expect("non-empty"))
            }
            2 if membership.voters.len() > 2 => {
                let voters: Vec<NodeId> = membership.voters.iter().copied().collect();
                ConfChange::Remove(*self.rng.pick(&voters).expect("non-empty"))
            }
            _ => return,
        };
        let process = self
            .nodes
            .get_mut(&lid)
            .and_then(|n| n.process.as_mut())
            .expect("leader runs");
        let result = process.raft.propose_change(change);
        self.log(|| format!("change {change:?} at {lid}: {result:?}"));
        if result.is_ok() {
            self.stats.changes += 1;
            if let ConfChange::AddLearner(id) = change {
                let cfg = self.config(id);
                let raft = Raft::restart(cfg, Stored::default()).expect("empty state is valid");
                self.add_node(id, raft);
            }
        }
    }

    fn crash(&mut self, id: NodeId, why: &str) {
        let down = self.rng.range(20, 400);
        let node = self.nodes.get_mut(&id).expect("crash of a known node");
        if node.process.take().is_some() {
            node.down_until = self.time + down;
            self.stats.crashes += 1;
            let (hs, last) = (
                node.disk.hard_state.clone(),
                node.disk.entries.last().map(|e| (e.index, e.term)),
            );
            self.log(|| format!("{why} {id}: disk {hs:?} last {last:?}"));
        }
    }

    fn restart(&mut self, id: NodeId) {
        let cfg = self.config(id);
        let node = self.nodes.get_mut(&id).expect("restart of a known node");
        let disk = node.disk.clone();
        let stored = Stored {
            hard_state: disk.hard_state,
            snapshot: disk.snapshot.clone(),
            entries: disk.entries,
        };
        // A founding node that crashed before its first write starts over, as a driver does
        // when it finds no state at all.
        let empty = stored.hard_state.term <= 1 && stored.snapshot.is_none() && stored.entries.is_empty();
        let raft = if empty && id <= self.params.voters {
            Raft::bootstrap(cfg, &(1..=self.params.voters).collect::<Vec<_>>())
        } else {
            Raft::restart(cfg, stored).unwrap_or_else(|e| panic!("node {id} cannot restart: {e}"))
        };
        node.process = Some(Process::new(raft, disk.snapshot.as_ref()));
        self.log(|| format!("restart {id}"));
    }

    fn send(&mut self, m: Message) {
        if self.faults && self.rng.chance(self.loss) {
            return;
        }
        let copies = if self.faults && self.rng.chance(self.dup) {
            2
        } else {
            1
        };
        let bytes = postcard::to_allocvec(&m).expect("messages encode");
        for _ in 0..copies {
            let delay = if self.faults && self.rng.chance(self.params.long_delay) {
                self.rng.range(10, 80)
            } else {
                self.rng.range(1, 6)
            };
            self.net.push(InFlight {
                at: self.time + delay,
                to: m.to,
                from: m.from,
                bytes: bytes.clone(),
            });
        }
    }

    fn deliver(&mut self) -> Result<(), String> {
        let now = self.time;
        let (mut due, rest): (Vec<InFlight>, Vec<InFlight>) = self.net.drain(..).partition(|m| m.at <= now);
        self.net = rest;
        self.rng.shuffle(&mut due);
        for m in due {
            if self.blocked.contains(&(m.from, m.to)) {
                continue;
            }
            let msg: Message =
                postcard::from_bytes(&m.bytes).map_err(|e| format!("message does not decode: {e}"))?;
            if self.trace && std::env::var("SHOAL_RAFT_TRACE").as_deref() == Ok("2") {
                println!("t={} deliver {:?}", self.time, msg);
            }
            if let Some(p) = self.nodes.get_mut(&m.to).and_then(|n| n.process.as_mut()) {
                if matches!(msg.body, Body::InstallSnapshot { done: true, .. }) {
                    self.stats.snapshots_sent += 1;
                }
                p.raft.step(msg);
            }
        }
        Ok(())
    }

    fn handle_ready(&mut self, id: NodeId) -> Result<(), String> {
        let Some(p) = self.nodes.get_mut(&id).and_then(|n| n.process.as_mut()) else {
            return Ok(());
        };
        let ready = p.raft.ready();
        if ready.is_empty() {
            p.raft.advance();
            return Ok(());
        }
        // The order a WAL writes them in: the term first, so no entry or snapshot on disk is
        // ever newer than the stored term.
        let mut records = Vec::new();
        if let Some(hs) = &ready.hard_state {
            records.push(Record::HardState(hs.clone()));
        }
        if let Some(s) = &ready.snapshot {
            records.push(Record::Snapshot(s.clone()));
        }
        records.extend(ready.entries.iter().cloned().map(Record::Entry));
        let written_from = if ready.snapshot.is_some() {
            0
        } else {
            ready.entries.first().map_or(Index::MAX, |e| e.index)
        };
        let node = self.nodes.get_mut(&id).expect("present");
        if self.faults && self.rng.chance(self.params.crash * 0.5) && !records.is_empty() {
            // Power loss or EIO during the write: some prefix of the records reached the disk,
            // nothing was synced, so nothing was sent.
            let keep = self.rng.range(0, records.len() as u64) as usize;
            for r in records.into_iter().take(keep) {
                node.disk.write(r);
            }
            self.check_log_matching(id, written_from)?;
            self.crash(id, "torn write then crash");
            return Ok(());
        }
        for r in records {
            node.disk.write(r);
        }
        self.check_log_matching(id, written_from)?;
        let node = self.nodes.get_mut(&id).expect("present");
        let disk_hs = node.disk.hard_state.clone();
        let disk_last = node.disk.last_index();
        // Nothing is sent that the disk does not back.
        for m in &ready.messages {
            // PreVote asks about, and grants, a future term without entering it.
            let pre_vote = matches!(m.body, Body::PreVote { .. } | Body::PreVoteResponse { .. });
            if m.term > disk_hs.term && !pre_vote {
                return Err(format!(
                    "node {id} sent a term {} message before persisting the term",
                    m.term
                ));
            }
            if let Body::VoteResponse { granted: true } = m.body {
                // A later term on disk also forbids voting again in the granted one.
                let recorded = disk_hs.term > m.term || disk_hs.vote == Some(m.to);
                if !recorded {
                    return Err(format!(
                        "node {id} granted a vote to {} before persisting it",
                        m.to
                    ));
                }
            }
            if let Body::AppendResponse { index, reject: None } = m.body {
                if index > disk_last {
                    return Err(format!(
                        "node {id} acknowledged index {index} beyond its disk ({disk_last})"
                    ));
                }
            }
        }
        for m in ready.messages {
            self.send(m);
        }
        let p = self
            .nodes
            .get_mut(&id)
            .and_then(|n| n.process.as_mut())
            .expect("present");
        if let Some(s) = &ready.snapshot {
            p.kv = Kv::from_bytes(&s.data);
            p.applied = s.meta.index;
        }
        let mut responses = Vec::new();
        for e in &ready.committed {
            if e.index != p.applied + 1 {
                return Err(format!("node {id} applied {} after {}", e.index, p.applied));
            }
            match self.committed.get(&e.index) {
                Some(&(t, h)) if (t, h) != (e.term, hash_entry(e)) => {
                    return Err(format!(
                        "state machine safety: node {id} applied a different entry at {}",
                        e.index
                    ));
                }
                Some(_) => {}
                None => {
                    self.committed.insert(e.index, (e.term, hash_entry(e)));
                    self.commit_term.insert(e.index, p.raft.status().term);
                }
            }
            p.applied = e.index;
            if let Payload::Command(data) = &e.payload {
                if let Some(op_id) = p.kv.apply(data) {
                    responses.push((op_id, None));
                }
            }
        }
        for rs in ready.read_states {
            let op_id = u64::from_le_bytes(rs.ctx.as_slice().try_into().unwrap_or([0; 8]));
            if let Some(key) = p.reads.remove(&op_id) {
                p.ready_reads.push((op_id, key, rs.index));
            }
        }
        let applied = p.applied;
        let mut still = Vec::new();
        for (op_id, key, index) in std::mem::take(&mut p.ready_reads) {
            if index <= applied {
                responses.push((op_id, Some(p.kv.get(key))));
            } else {
                still.push((op_id, key, index));
            }
        }
        p.ready_reads = still;
        p.raft.advance();
        // Compact now and then: the snapshot is written durably first, then the log is cut.
        let st = p.raft.status();
        if st.applied >= st.first_index + self.params.snapshot_every && st.applied <= disk_last {
            let data = p.kv.to_bytes();
            let meta_index = st.applied;
            if p.raft.compact(meta_index, data).is_ok() {
                let snap = p.raft_snapshot();
                let node = self.nodes.get_mut(&id).expect("present");
                node.disk.snapshot = snap;
                node.disk.entries.retain(|e| e.index > meta_index);
            }
        }
        for (op_id, result) in responses {
            self.complete(id, op_id, result);
        }
        Ok(())
    }

    /// Log matching, over what reached the disk (an entry lost with its unsynced term never
    /// existed for anyone else): an (index, term) pair always names the same entry, after
    /// the same term.
    fn check_log_matching(&mut self, id: NodeId, from: Index) -> Result<(), String> {
        let disk = &self.nodes[&id].disk;
        let mut prev_term = disk.snapshot.as_ref().map_or(0, |s| s.meta.term);
        let mut prev_index = disk.snapshot.as_ref().map_or(0, |s| s.meta.index);
        for e in &disk.entries {
            if e.index != prev_index + 1 {
                return Err(format!(
                    "node {id}: disk log jumps from {prev_index} to {}",
                    e.index
                ));
            }
            if e.index >= from {
                let seen = (hash_entry(e), prev_term);
                if let Some(old) = self.entry_ids.insert((e.index, e.term), seen) {
                    if old != seen {
                        let at = (e.index, e.term);
                        return Err(format!(
                            "log matching: node {id} holds a different entry at {at:?}"
                        ));
                    }
                }
            }
            prev_term = e.term;
            prev_index = e.index;
        }
        Ok(())
    }

    // ---- clients -------------------------------------------------------------------

    fn run_clients(&mut self) {
        for c in 0..self.clients.len() {
            match self.clients[c].clone() {
                ClientState::Idle { until } if until <= self.time => self.start_op(c),
                ClientState::Waiting { deadline, .. } if deadline <= self.time => self.time_out(c),
                _ => {}
            }
        }
    }

    fn start_op(&mut self, c: usize) {
        let live: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.process.is_some())
            .map(|(&id, _)| id)
            .collect();
        let node = match self.leader_id() {
            Some(l) if self.rng.chance(0.8) => l,
            _ => match self.rng.pick(&live) {
                Some(&n) => n,
                None => return,
            },
        };
        let op_id = self.next_op;
        self.next_op += 1;
        let key = self.rng.range(0, 3) as u8;
        let is_read = self.rng.chance(0.4);
        let p = self
            .nodes
            .get_mut(&node)
            .and_then(|n| n.process.as_mut())
            .expect("picked a live node");
        let accepted = if is_read {
            let ok = p.raft.read_index(op_id.to_le_bytes().to_vec()).is_ok();
            if ok {
                p.reads.insert(op_id, key);
            }
            ok
        } else {
            let cmd = Command {
                op_id,
                key,
                value: op_id,
            };
            p.raft
                .propose(postcard::to_allocvec(&cmd).expect("command encodes"))
                .is_ok()
        };
        if !accepted {
            self.clients[c] = ClientState::Idle {
                until: self.time + self.rng.range(5, 30),
            };
            return;
        }
        self.event += 1;
        let kind = if is_read {
            OpKind::Get(None)
        } else {
            OpKind::Put(op_id)
        };
        self.history.push(Op {
            client: c as u64,
            key,
            kind,
            call: self.event,
            ret: None,
        });
        let slot = self.history.len() - 1;
        let deadline = self.time + 400;
        self.clients[c] = ClientState::Waiting {
            op_id,
            node,
            deadline,
            history_slot: slot,
        };
    }

    /// `result` is `Some(value read)` for reads, `None` for writes.
    fn complete(&mut self, node: NodeId, op_id: u64, result: Option<Option<u64>>) {
        for c in 0..self.clients.len() {
            if let ClientState::Waiting {
                op_id: waiting,
                node: at,
                history_slot,
                ..
            } = self.clients[c]
            {
                if waiting == op_id && at == node {
                    self.event += 1;
                    let op = &mut self.history[history_slot];
                    op.ret = Some(self.event);
                    if let Some(value) = result {
                        op.kind = OpKind::Get(value);
                    }
                    self.clients[c] = ClientState::Idle {
                        until: self.time + self.rng.range(0, 20),
                    };
                }
            }
        }
    }

    fn time_out(&mut self, c: usize) {
        if let ClientState::Waiting { history_slot, .. } = self.clients[c] {
            // A read that never answered tells nothing; a write may still take effect.
            if matches!(self.history[history_slot].kind, OpKind::Get(_)) {
                self.void.insert(history_slot);
            }
        }
        self.clients[c] = ClientState::Idle { until: self.time };
    }

    // ---- invariants ------------------------------------------------------------------

    fn check(&mut self) -> Result<(), String> {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let Some(p) = self.nodes.get_mut(&id).and_then(|n| n.process.as_mut()) else {
                continue;
            };
            let st = p.raft.status();
            let (term, commit, applied) = p.last;
            if st.term < term || st.commit < commit || st.applied < applied {
                return Err(format!(
                    "node {id}: term/commit/applied went back from {:?} to {:?}",
                    p.last,
                    (st.term, st.commit, st.applied)
                ));
            }
            p.last = (st.term, st.commit, st.applied);
            // Committed entries never change, whoever reports them.
            for e in p.raft.entries_from(commit + 1) {
                if e.index > st.commit {
                    break;
                }
                let seen = (e.term, hash_entry(e));
                match self.committed.get(&e.index) {
                    Some(&old) if old != seen => {
                        return Err(format!(
                            "node {id} committed a different entry at index {}",
                            e.index
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.committed.insert(e.index, seen);
                        self.commit_term.insert(e.index, st.term);
                    }
                }
            }
            if st.role == Role::Leader && p.was_leader_in != Some(st.term) {
                p.was_leader_in = Some(st.term);
                self.stats.elections += 1;
                if let Some(other) = self.leaders.insert(st.term, id) {
                    if other != id {
                        return Err(format!(
                            "election safety: nodes {other} and {id} both lead term {}",
                            st.term
                        ));
                    }
                }
                // Leader completeness: everything committed in an earlier term is in our log.
                for (&index, &(t, _)) in self.committed.range(st.first_index..) {
                    if self.commit_term[&index] < st.term && p.raft.term_at(index) != Some(t) {
                        return Err(format!(
                            "leader completeness: leader {id} of term {} lacks committed {index}",
                            st.term
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Process {
    fn new(raft: Raft, snapshot: Option<&Snapshot>) -> Process {
        let st = raft.status();
        Process {
            kv: snapshot.map(|s| Kv::from_bytes(&s.data)).unwrap_or_default(),
            applied: snapshot.map_or(0, |s| s.meta.index),
            reads: HashMap::new(),
            ready_reads: Vec::new(),
            // Commit starts below what is stored so `check` compares every known entry.
            last: (st.term, st.first_index - 1, st.applied),
            was_leader_in: None,
            raft,
        }
    }

    fn raft_snapshot(&self) -> Option<Snapshot> {
        self.raft.snapshot().cloned()
    }
}
