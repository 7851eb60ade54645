//! A hand-driven cluster: the test decides when nodes tick and which messages arrive.
//! Every node persists each Ready to its in-memory disk before its messages are queued.

use shoal::raft::{
    Body, ConfChange, Config, Entry, Index, Message, NodeId, Payload, Raft, RaftError, Role, Stored,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write;

pub struct Cluster {
    pub nodes: BTreeMap<NodeId, Option<Raft>>,
    pub disks: BTreeMap<NodeId, Stored>,
    pub queue: VecDeque<Message>,
    pub blocked: BTreeSet<(NodeId, NodeId)>,
    /// Applied commands per node.
    pub applied: BTreeMap<NodeId, Vec<(Index, Vec<u8>)>>,
    pub read_states: BTreeMap<NodeId, Vec<(Vec<u8>, Index)>>,
    /// Everything delivered, rendered, since the last `take_log`.
    pub log: String,
    pub seed: Option<u64>,
    /// Tunables every node (re)starts with; id and seed are set per node.
    pub template: Config,
}

impl Cluster {
    /// Voters `1..=n`, each with seed `id` (or `seed` for all if given).
    pub fn new(n: u64) -> Cluster {
        Cluster::with(n, None, |_| {})
    }

    pub fn with(n: u64, seed: Option<u64>, tune: impl Fn(&mut Config)) -> Cluster {
        let voters: Vec<NodeId> = (1..=n).collect();
        let mut c = Cluster {
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            queue: VecDeque::new(),
            blocked: BTreeSet::new(),
            applied: BTreeMap::new(),
            read_states: BTreeMap::new(),
            log: String::new(),
            seed,
            template: Config::new(0, 0),
        };
        tune(&mut c.template);
        for &id in &voters {
            let cfg = c.config(id, seed.unwrap_or(id));
            c.nodes.insert(id, Some(Raft::bootstrap(cfg, &voters)));
            c.disks.insert(id, Stored::default());
        }
        c.flush_all();
        c
    }

    pub fn config(&self, id: NodeId, seed: u64) -> Config {
        Config {
            id,
            seed,
            ..self.template.clone()
        }
    }

    pub fn node(&self, id: NodeId) -> &Raft {
        self.nodes[&id].as_ref().expect("node is running")
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Raft {
        self.nodes
            .get_mut(&id)
            .and_then(Option::as_mut)
            .expect("node is running")
    }

    pub fn role(&self, id: NodeId) -> Role {
        self.node(id).status().role
    }

    pub fn leader(&self) -> Option<NodeId> {
        let mut leaders: Vec<(u64, NodeId)> = self
            .nodes
            .values()
            .flatten()
            .map(|r| r.status())
            .filter(|s| s.role == Role::Leader)
            .map(|s| (s.term, s.id))
            .collect();
        leaders.sort();
        leaders.last().map(|&(_, id)| id)
    }

    /// Add a fresh, empty node (to be added as learner).
    pub fn add_empty(&mut self, id: NodeId) {
        let raft = Raft::restart(self.config(id, id), Stored::default()).expect("empty state is valid");
        self.nodes.insert(id, Some(raft));
        self.disks.insert(id, Stored::default());
    }

    /// Persist, queue messages, apply and advance, for one node.
    pub fn flush(&mut self, id: NodeId) {
        let Some(raft) = self.nodes.get_mut(&id).and_then(Option::as_mut) else {
            return;
        };
        let ready = raft.ready();
        let disk = self.disks.get_mut(&id).expect("every node has a disk");
        if let Some(s) = &ready.snapshot {
            disk.snapshot = Some(s.clone());
            disk.entries.clear();
        }
        if let Some(first) = ready.entries.first() {
            disk.entries.retain(|e| e.index < first.index);
            disk.entries.extend(ready.entries.iter().cloned());
        }
        if let Some(hs) = &ready.hard_state {
            disk.hard_state = hs.clone();
        }
        self.queue.extend(ready.messages);
        let applied = self.applied.entry(id).or_default();
        if let Some(s) = &ready.snapshot {
            applied.retain(|(i, _)| *i <= s.meta.index);
        }
        for e in ready.committed {
            if let Payload::Command(data) = e.payload {
                applied.push((e.index, data));
            }
        }
        for rs in ready.read_states {
            self.read_states.entry(id).or_default().push((rs.ctx, rs.index));
        }
        raft.advance();
    }

    pub fn flush_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.flush(id);
        }
    }

    pub fn tick(&mut self, id: NodeId, times: u32) {
        for _ in 0..times {
            if let Some(r) = self.nodes.get_mut(&id).and_then(Option::as_mut) {
                r.tick();
            }
        }
        self.flush(id);
    }

    /// Deliver queued messages (and the ones they cause) until none is left.
    pub fn stabilize(&mut self) {
        let mut rounds = 0;
        loop {
            self.flush_all();
            let Some(m) = self.queue.pop_front() else { break };
            self.deliver(m);
            rounds += 1;
            if rounds > 10_000 {
                let tail: Vec<&str> = self.log.lines().rev().take(12).collect();
                panic!("messages keep flowing: livelock; last ones:\n{}", tail.join("\n"));
            }
        }
    }

    /// Deliver only what is queued now.
    pub fn deliver_queued(&mut self) {
        self.flush_all();
        let now: Vec<Message> = self.queue.drain(..).collect();
        for m in now {
            self.deliver(m);
        }
        self.flush_all();
    }

    pub fn deliver(&mut self, m: Message) {
        if self.blocked.contains(&(m.from, m.to)) {
            let _ = writeln!(self.log, "{} (dropped)", render(&m));
            return;
        }
        let _ = writeln!(self.log, "{}", render(&m));
        let to = m.to;
        if let Some(r) = self.nodes.get_mut(&to).and_then(Option::as_mut) {
            r.step(m);
        }
        self.flush(to);
    }

    pub fn take_log(&mut self) -> String {
        std::mem::take(&mut self.log)
    }

    /// Let the other nodes' election timers run out (so no leader lease protects the current
    /// leader), dropping any campaign of their own, then let `id` campaign and settle.
    pub fn elect(&mut self, id: NodeId) {
        // A node behind on terms learns the current term from its first rejected pre-vote.
        for _ in 0..3 {
            self.expire_leases(id);
            self.node_mut(id).campaign_now();
            self.stabilize();
            if self.role(id) == Role::Leader {
                break;
            }
        }
        assert_eq!(
            self.role(id),
            Role::Leader,
            "node {id} should have won:\n{}",
            self.log
        );
    }

    /// Run every other follower's election timer out, dropping any campaign of its own.
    pub fn expire_leases(&mut self, id: NodeId) {
        let others: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(&o, r)| o != id && r.is_some())
            .map(|(&o, _)| o)
            .collect();
        for &o in &others {
            let ticks = self.template.election_ticks;
            if self.role(o) != Role::Leader {
                for _ in 0..ticks {
                    self.node_mut(o).tick();
                }
                self.flush(o);
                self.queue.retain(|m| m.from != o);
            }
        }
    }

    pub fn propose(&mut self, id: NodeId, data: &str) -> Result<Index, RaftError> {
        let r = self.node_mut(id).propose(data.as_bytes().to_vec());
        self.flush(id);
        r
    }

    pub fn change(&mut self, id: NodeId, change: ConfChange) -> Result<Index, RaftError> {
        let r = self.node_mut(id).propose_change(change);
        self.flush(id);
        r
    }

    pub fn isolate(&mut self, id: NodeId) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for other in ids {
            if other != id {
                self.blocked.insert((id, other));
                self.blocked.insert((other, id));
            }
        }
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    pub fn crash(&mut self, id: NodeId) {
        self.nodes.insert(id, None);
        self.queue.retain(|m| m.to != id && m.from != id);
    }

    pub fn restart(&mut self, id: NodeId) {
        let stored = self.disks[&id].clone();
        let raft = Raft::restart(self.config(id, id + 100), stored).expect("stored state is valid");
        self.nodes.insert(id, Some(raft));
        self.applied.insert(id, Vec::new());
    }

    /// Compact `id` at its applied index with a snapshot of its applied commands.
    pub fn compact(&mut self, id: NodeId) -> Index {
        let applied = self.node(id).status().applied;
        let data: Vec<u8> = self.applied.get(&id).map(|a| a.len() as u8).into_iter().collect();
        self.node_mut(id)
            .compact(applied, data)
            .expect("applied entries can be compacted");
        let snap = self.node(id).snapshot().cloned();
        let disk = self.disks.get_mut(&id).expect("every node has a disk");
        disk.snapshot = snap;
        disk.entries.retain(|e| e.index > applied);
        applied
    }

    /// Entries of node `id` as "index/term kind" strings.
    pub fn log_of(&self, id: NodeId) -> Vec<String> {
        self.node(id).entries_from(0).iter().map(render_entry).collect()
    }

    pub fn status_line(&self, id: NodeId) -> String {
        match self.nodes[&id].as_ref() {
            None => format!("{id}: down"),
            Some(r) => {
                let s = r.status();
                format!(
                    "{id}: {:?} term={} vote={} leader={} commit={} applied={} log={}..{} voters={:?}{}",
                    s.role,
                    s.term,
                    s.vote.map_or("-".into(), |v| v.to_string()),
                    s.leader.map_or("-".into(), |v| v.to_string()),
                    s.commit,
                    s.applied,
                    s.first_index,
                    s.last_index,
                    s.membership.voters,
                    if s.membership.learners.is_empty() {
                        String::new()
                    } else {
                        format!(" learners={:?}", s.membership.learners)
                    }
                )
            }
        }
    }
}

pub fn render_entry(e: &Entry) -> String {
    let what = match &e.payload {
        Payload::Noop => "noop".to_string(),
        Payload::Command(d) => format!("\"{}\"", String::from_utf8_lossy(d)),
        Payload::Membership(m) => format!("voters={:?} learners={:?}", m.voters, m.learners),
    };
    format!("{}/{} {}", e.index, e.term, what)
}

pub fn render(m: &Message) -> String {
    let body = match &m.body {
        Body::PreVote {
            last_index,
            last_term,
        } => format!("PreVote last={last_index}/{last_term}"),
        Body::PreVoteResponse { granted } => format!(
            "PreVoteResponse {}",
            if *granted { "granted" } else { "rejected" }
        ),
        Body::Vote {
            last_index,
            last_term,
            transfer,
        } => {
            format!(
                "Vote last={last_index}/{last_term}{}",
                if *transfer { " transfer" } else { "" }
            )
        }
        Body::VoteResponse { granted } => {
            format!("VoteResponse {}", if *granted { "granted" } else { "rejected" })
        }
        Body::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => {
            let es: Vec<String> = entries.iter().map(render_entry).collect();
            format!(
                "Append prev={prev_index}/{prev_term} commit={commit} [{}]",
                es.join(", ")
            )
        }
        Body::AppendResponse { index, reject: None } => format!("AppendResponse ok index={index}"),
        Body::AppendResponse {
            index,
            reject: Some(h),
        } => {
            format!("AppendResponse reject index={index} hint={}/{}", h.index, h.term)
        }
        Body::Heartbeat { commit, read_seq } => format!("Heartbeat commit={commit} read_seq={read_seq}"),
        Body::HeartbeatResponse { read_seq } => format!("HeartbeatResponse read_seq={read_seq}"),
        Body::InstallSnapshot {
            meta,
            offset,
            data,
            done,
        } => format!(
            "InstallSnapshot {}/{} offset={offset} len={}{}",
            meta.index,
            meta.term,
            data.len(),
            if *done { " done" } else { "" }
        ),
        Body::SnapshotResponse { index, offset, done } => {
            format!(
                "SnapshotResponse index={index} offset={offset}{}",
                if *done { " done" } else { "" }
            )
        }
        Body::TimeoutNow => "TimeoutNow".into(),
        Body::ReadIndex { ctx } => format!("ReadIndex ctx={}", String::from_utf8_lossy(ctx)),
        Body::ReadIndexResponse { ctx, index } => {
            format!(
                "ReadIndexResponse ctx={} index={index}",
                String::from_utf8_lossy(ctx)
            )
        }
    };
    format!("{}->{} t{} {}", m.from, m.to, m.term, body)
}
