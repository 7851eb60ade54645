//! The raft state machine of one node (Raft paper, Ongaro's dissertation §3–4, §6, and the
//! PreVote/CheckQuorum extensions of §9.6).

use super::log::Log;
use super::message::*;
use super::progress::{Mode, Progress};
use std::collections::{BTreeMap, VecDeque};

/// Tunables. Time is counted in ticks; the driver decides how long a tick is.
#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// Election timeouts are drawn uniformly from `election_ticks..2 * election_ticks`.
    pub election_ticks: u32,
    pub heartbeat_ticks: u32,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Upper bound on the entries of one append (at least one entry is always sent).
    pub max_msg_bytes: usize,
    pub max_inflight_msgs: usize,
    pub max_inflight_bytes: usize,
    pub snapshot_chunk_bytes: usize,
    /// Proposals are refused while this many bytes are uncommitted.
    pub max_uncommitted_bytes: usize,
    /// Seeds the election timer; mix OS entropy with the node id so twins do not tie forever.
    pub seed: u64,
}

impl Config {
    /// LAN defaults for a 100 ms tick: heartbeat 100 ms, election timeout 500–1000 ms.
    pub fn new(id: NodeId, seed: u64) -> Config {
        Config {
            id,
            election_ticks: 5,
            heartbeat_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            max_msg_bytes: 256 * 1024,
            max_inflight_msgs: 64,
            max_inflight_bytes: 4 * 1024 * 1024,
            snapshot_chunk_bytes: 256 * 1024,
            max_uncommitted_bytes: 16 * 1024 * 1024,
            seed,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Why a proposal, read or change was refused; nothing was appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaftError {
    NotLeader {
        leader: Option<NodeId>,
    },
    TransferInProgress,
    /// A new leader accepts membership changes only after committing its first entry.
    LeaderNotReady,
    ChangeInProgress,
    InvalidChange(String),
    TooManyUncommitted,
    Compact {
        index: Index,
        reason: &'static str,
    },
    CorruptState(String),
}

impl std::fmt::Display for RaftError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RaftError::NotLeader { leader } => write!(f, "not the leader (leader: {leader:?})"),
            RaftError::TransferInProgress => write!(f, "leader transfer in progress"),
            RaftError::LeaderNotReady => write!(f, "new leader has not committed an entry yet"),
            RaftError::ChangeInProgress => write!(f, "a membership change is still uncommitted"),
            RaftError::InvalidChange(why) => write!(f, "invalid membership change: {why}"),
            RaftError::TooManyUncommitted => write!(f, "too many uncommitted bytes"),
            RaftError::Compact { index, reason } => write!(f, "cannot compact to {index}: {reason}"),
            RaftError::CorruptState(why) => write!(f, "corrupt stored raft state: {why}"),
        }
    }
}

impl std::error::Error for RaftError {}

/// A linearizable read may be served once the local state machine has applied `index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub ctx: Vec<u8>,
    pub index: Index,
}

/// What the driver must do, in this order: persist `hard_state`, then `snapshot` (it replaces
/// the whole stored log), then `entries` (they may overwrite stored entries from
/// `entries[0].index`), and sync; then send `messages`; then restore `snapshot` into the state
/// machine and apply `committed`; serve `read_states` once applied; then call `advance`.
/// (Writing the term first means a torn write never leaves an entry newer than the term.)
#[derive(Debug, Default)]
pub struct Ready {
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    pub messages: Vec<Message>,
    pub committed: Vec<Entry>,
    pub read_states: Vec<ReadState>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.entries.is_empty()
            && self.hard_state.is_none()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.read_states.is_empty()
    }
}

/// What was stored before a restart.
#[derive(Clone, Debug, Default)]
pub struct Stored {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub vote: Option<NodeId>,
    pub leader: Option<NodeId>,
    pub commit: Index,
    pub applied: Index,
    pub last_index: Index,
    pub first_index: Index,
    pub membership: Membership,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Campaign {
    PreVote,
    Vote,
    Transfer,
}

struct PendingRead {
    from: NodeId,
    ctx: Vec<u8>,
    index: Index,
    seq: u64,
}

/// What the outstanding `Ready` handed out, made durable/applied by `advance`.
struct Handed {
    snapshot_index: Option<Index>,
    last_entry: Option<(Index, Term)>,
    applied: Index,
}

pub struct Raft {
    cfg: Config,
    term: Term,
    vote: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    log: Log,
    membership: Membership,
    pending_conf_index: Index,
    progress: BTreeMap<NodeId, Progress>,
    votes: BTreeMap<NodeId, bool>,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_timeout: u32,
    rng: u64,
    transferee: Option<NodeId>,
    transfer_elapsed: u32,
    msgs: Vec<Message>,
    read_states: Vec<ReadState>,
    pending_reads: VecDeque<PendingRead>,
    reads_before_commit: Vec<(NodeId, Vec<u8>)>,
    read_seq: u64,
    heartbeat_due: bool,
    uncommitted_bytes: usize,
    /// Our latest snapshot, served to followers that are too far behind.
    snapshot: Option<Snapshot>,
    /// A snapshot being received in chunks.
    incoming: Option<Snapshot>,
    /// A received snapshot the driver has not yet been handed.
    snapshot_to_hand: bool,
    persisted_hard_state: HardState,
    handed: Option<Handed>,
}

impl Raft {
    /// A node of a brand-new cluster: every initial voter starts with the same first entry
    /// naming the voters, so it counts as committed.
    pub fn bootstrap(cfg: Config, voters: &[NodeId]) -> Raft {
        let mut raft = Raft::empty(cfg);
        raft.term = 1;
        raft.log.entries.push(Entry {
            term: 1,
            index: 1,
            payload: Payload::Membership(Membership::voters(voters)),
        });
        raft.log.committed = 1;
        raft.membership = Membership::voters(voters);
        raft
    }

    /// A node restarting from what it stored, or joining (empty `Stored`) to be added later.
    pub fn restart(cfg: Config, stored: Stored) -> Result<Raft, RaftError> {
        let mut raft = Raft::empty(cfg);
        if let Some(snap) = stored.snapshot {
            raft.log.restore(snap.meta.clone());
            raft.snapshot = Some(snap);
        }
        let mut prev_term = raft.log.snapshot.term;
        for (expected, e) in (raft.log.first_index()..).zip(&stored.entries) {
            if e.index != expected || e.term < prev_term {
                return Err(RaftError::CorruptState(format!(
                    "entry {} (term {}) where index {expected} (term >= {prev_term}) was expected",
                    e.index, e.term
                )));
            }
            prev_term = e.term;
        }
        raft.log.entries = stored.entries;
        raft.log.persisted = raft.log.last_index();
        let hs = stored.hard_state;
        if hs.term < raft.log.last_term() {
            return Err(RaftError::CorruptState(format!(
                "term {} is below the last log term {}",
                hs.term,
                raft.log.last_term()
            )));
        }
        raft.log.committed = hs.commit.clamp(raft.log.snapshot.index, raft.log.last_index());
        raft.term = hs.term;
        raft.vote = hs.vote;
        raft.persisted_hard_state = raft.hard_state();
        raft.membership = raft.log.membership_at(raft.log.last_index()).clone();
        Ok(raft)
    }

    fn empty(cfg: Config) -> Raft {
        let rng = cfg.seed ^ cfg.id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut raft = Raft {
            cfg,
            term: 0,
            vote: None,
            role: Role::Follower,
            leader: None,
            log: Log::default(),
            membership: Membership::default(),
            pending_conf_index: 0,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: 0,
            rng,
            transferee: None,
            transfer_elapsed: 0,
            msgs: Vec::new(),
            read_states: Vec::new(),
            pending_reads: VecDeque::new(),
            reads_before_commit: Vec::new(),
            read_seq: 0,
            heartbeat_due: false,
            uncommitted_bytes: 0,
            snapshot: None,
            incoming: None,
            snapshot_to_hand: false,
            persisted_hard_state: HardState::default(),
            handed: None,
        };
        raft.reset_election_timer();
        raft
    }

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    pub fn status(&self) -> Status {
        Status {
            id: self.cfg.id,
            role: self.role,
            term: self.term,
            vote: self.vote,
            leader: self.leader,
            commit: self.log.committed,
            applied: self.log.applied,
            last_index: self.log.last_index(),
            first_index: self.log.first_index(),
            membership: self.membership.clone(),
        }
    }

    /// Entries still held in memory from `lo` on (for inspection and tests).
    pub fn entries_from(&self, lo: Index) -> &[Entry] {
        self.log.slice(lo, Index::MAX)
    }

    /// Our latest snapshot (taken by `compact` or received from a leader).
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    pub fn term_at(&self, index: Index) -> Option<Term> {
        self.log.term(index)
    }

    /// The commit index stored with the term and vote never exceeds what is already durable:
    /// the hard state is written before this Ready's entries, and a torn write must not leave
    /// a commit index pointing at stale entries.
    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed.min(self.log.persisted),
        }
    }

    // ---- the driver's interface -------------------------------------------------------

    /// Advance logical time by one tick.
    pub fn tick(&mut self) {
        if self.role != Role::Leader {
            self.election_elapsed = self.election_elapsed.saturating_add(1);
            if self.election_elapsed >= self.randomized_timeout && self.membership.is_voter(self.id()) {
                self.campaign(self.first_round());
            }
            return;
        }
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.transferee.is_some() {
            self.transfer_elapsed += 1;
            if self.transfer_elapsed >= self.cfg.election_ticks {
                self.transferee = None;
            }
        }
        if self.election_elapsed >= self.cfg.election_ticks {
            self.election_elapsed = 0;
            if self.cfg.check_quorum {
                // CheckQuorum: a leader that has not heard from a quorum steps down, so a
                // partitioned leader cannot keep serving stale reads or absorbing proposals.
                let active = self.voters_where(|id, pr| id == self.id() || pr.recent_active);
                if active < self.membership.quorum() {
                    self.become_follower(self.term, None);
                    return;
                }
                self.progress.values_mut().for_each(|pr| pr.recent_active = false);
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    /// Start an election now (as if the timer had fired).
    pub fn campaign_now(&mut self) {
        if self.role != Role::Leader && self.membership.is_voter(self.id()) {
            self.campaign(self.first_round());
        }
    }

    /// Append application data; returns its index (committed later, or lost on leader change).
    pub fn propose(&mut self, data: Vec<u8>) -> Result<Index, RaftError> {
        self.check_can_propose()?;
        if self.uncommitted_bytes > self.cfg.max_uncommitted_bytes {
            return Err(RaftError::TooManyUncommitted);
        }
        Ok(self.append(Payload::Command(data)))
    }

    /// Propose a single-server membership change.
    pub fn propose_change(&mut self, change: ConfChange) -> Result<Index, RaftError> {
        self.check_can_propose()?;
        // The no-op rule: a leader that has not yet committed an entry of its term may hold
        // an uncommitted change of a previous leader, and two concurrent single-server changes
        // can produce disjoint majorities.
        if self.log.term(self.log.committed) != Some(self.term) {
            return Err(RaftError::LeaderNotReady);
        }
        if self.pending_conf_index > self.log.committed {
            return Err(RaftError::ChangeInProgress);
        }
        let next = self.membership.apply(change).map_err(RaftError::InvalidChange)?;
        let index = self.append(Payload::Membership(next));
        self.pending_conf_index = index;
        Ok(index)
    }

    /// Ask leadership to move to `to`, which must be a voter. Proposals are refused meanwhile.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader { leader: self.leader });
        }
        if to == self.id() || !self.membership.is_voter(to) {
            return Err(RaftError::InvalidChange(format!(
                "cannot transfer leadership to node {to}"
            )));
        }
        self.transferee = Some(to);
        self.transfer_elapsed = 0;
        if self
            .progress
            .get(&to)
            .is_some_and(|pr| pr.matched == self.log.last_index())
        {
            self.send(to, Body::TimeoutNow);
        } else {
            // Even with nothing new to send: the target may have lost appends and must say so.
            self.send_append_or_empty(to, true);
        }
        Ok(())
    }

    /// Request a linearizable read; a `ReadState` with `ctx` appears in a later `Ready`
    /// (none if leadership is lost meanwhile: the caller retries after a timeout).
    pub fn read_index(&mut self, ctx: Vec<u8>) -> Result<(), RaftError> {
        match (self.role, self.leader) {
            (Role::Leader, _) => {
                self.leader_read(self.id(), ctx);
                Ok(())
            }
            (_, Some(leader)) => {
                self.send(leader, Body::ReadIndex { ctx });
                Ok(())
            }
            (_, None) => Err(RaftError::NotLeader { leader: None }),
        }
    }

    /// Record that the application state up to `index` (applied) is saved in `data` and drop
    /// the log before it. The driver has already written the snapshot durably.
    pub fn compact(&mut self, index: Index, data: Vec<u8>) -> Result<(), RaftError> {
        if index > self.log.applied || index > self.log.persisted {
            return Err(RaftError::Compact {
                index,
                reason: "not yet applied and persisted",
            });
        }
        let meta = self.log.compact(index).ok_or(RaftError::Compact {
            index,
            reason: "already compacted",
        })?;
        self.snapshot = Some(Snapshot { meta, data });
        Ok(())
    }

    /// Everything the driver must do now. Call `advance` when done; until then `ready` returns
    /// an empty `Ready`, so nothing is handed out twice.
    pub fn ready(&mut self) -> Ready {
        if self.handed.is_some() {
            return Ready::default();
        }
        if self.role == Role::Leader {
            // Sending here, not at every proposal, batches proposals made since the last Ready.
            let peers: Vec<NodeId> = self
                .progress
                .keys()
                .copied()
                .filter(|&p| p != self.id())
                .collect();
            for peer in peers {
                self.send_append(peer);
            }
            if std::mem::take(&mut self.heartbeat_due) {
                self.broadcast_heartbeat();
            }
        }
        let hs = self.hard_state();
        let hard_state = (hs != self.persisted_hard_state).then(|| {
            self.persisted_hard_state = hs.clone();
            hs
        });
        let snapshot = if std::mem::take(&mut self.snapshot_to_hand) {
            self.snapshot.clone()
        } else {
            None
        };
        let entries = self.log.slice(self.log.persisted + 1, Index::MAX).to_vec();
        let committed = self.log.slice(self.log.applied + 1, self.log.committed).to_vec();
        self.handed = Some(Handed {
            snapshot_index: snapshot.as_ref().map(|s| s.meta.index),
            last_entry: entries.last().map(|e| (e.index, e.term)),
            applied: committed.last().map_or(self.log.applied, |e| e.index),
        });
        Ready {
            snapshot,
            entries,
            hard_state,
            messages: std::mem::take(&mut self.msgs),
            committed,
            read_states: std::mem::take(&mut self.read_states),
        }
    }

    /// The last `Ready` was persisted, sent and applied.
    pub fn advance(&mut self) {
        let Some(handed) = self.handed.take() else { return };
        if let Some(index) = handed.snapshot_index {
            self.log.persisted = self.log.persisted.max(index);
        }
        if let Some((index, term)) = handed.last_entry {
            if self.log.matches(index, term) {
                self.log.persisted = self.log.persisted.max(index);
            }
        }
        self.log.applied = self.log.applied.max(handed.applied);
        if self.role == Role::Leader {
            let persisted = self.log.persisted;
            if let Some(pr) = self.progress.get_mut(&self.cfg.id) {
                pr.matched = persisted;
            }
            self.maybe_commit();
        }
    }

    // ---- messages -----------------------------------------------------------------------

    /// Handle one message from a peer. Malformed or stale messages are dropped.
    pub fn step(&mut self, m: Message) {
        if m.to != self.id() || m.from == self.id() || !plausible(&m, self.log.last_index()) {
            return;
        }
        if m.term > self.term {
            if let Body::PreVote { .. } | Body::Vote { .. } = m.body {
                let forced = matches!(m.body, Body::Vote { transfer: true, .. });
                // Leader lease: while we hear from a leader, a node that merely lost touch
                // (say, a rejoining one) must not depose it.
                let in_lease = self.cfg.check_quorum
                    && self.leader.is_some()
                    && self.election_elapsed < self.cfg.election_ticks;
                if in_lease && !forced {
                    return;
                }
            }
            match m.body {
                Body::PreVote { .. } | Body::PreVoteResponse { granted: true } => {}
                Body::Append { .. } | Body::Heartbeat { .. } | Body::InstallSnapshot { .. } => {
                    self.become_follower(m.term, Some(m.from))
                }
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            match m.body {
                // Tell a stale leader about the newer term so it steps down.
                Body::Append { .. } | Body::Heartbeat { .. } | Body::InstallSnapshot { .. } => self.send(
                    m.from,
                    Body::AppendResponse {
                        index: 0,
                        reject: None,
                    },
                ),
                Body::PreVote { .. } => self.send(m.from, Body::PreVoteResponse { granted: false }),
                _ => {}
            }
            return;
        }
        let from = m.from;
        match m.body {
            Body::PreVote {
                last_index,
                last_term,
            } => {
                let granted = m.term > self.term && self.log.is_up_to_date(last_index, last_term);
                let term = if granted { m.term } else { self.term };
                self.msgs.push(Message {
                    from: self.id(),
                    to: from,
                    term,
                    body: Body::PreVoteResponse { granted },
                });
            }
            Body::Vote {
                last_index,
                last_term,
                ..
            } => {
                let free = self.vote == Some(from) || (self.vote.is_none() && self.leader.is_none());
                let granted = free && self.log.is_up_to_date(last_index, last_term);
                if granted {
                    self.vote = Some(from);
                    self.election_elapsed = 0;
                }
                self.send(from, Body::VoteResponse { granted });
            }
            Body::PreVoteResponse { granted } => {
                let expected = if granted { self.term + 1 } else { self.term };
                if self.role == Role::PreCandidate && m.term == expected {
                    self.count_vote(from, granted);
                }
            }
            Body::VoteResponse { granted } if self.role == Role::Candidate => self.count_vote(from, granted),
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                self.heard_from_leader(from);
                self.handle_append(from, prev_index, prev_term, entries, commit);
            }
            Body::Heartbeat { commit, read_seq } => {
                self.heard_from_leader(from);
                // The leader sends min(commit, what it knows we hold), so this is safe.
                self.commit_to(commit.min(self.log.last_index()));
                self.send(from, Body::HeartbeatResponse { read_seq });
            }
            Body::InstallSnapshot {
                meta,
                offset,
                data,
                done,
            } => {
                self.heard_from_leader(from);
                self.handle_snapshot_chunk(from, meta, offset, data, done);
            }
            Body::TimeoutNow if self.role != Role::Leader && self.membership.is_voter(self.id()) => {
                self.campaign(Campaign::Transfer)
            }
            Body::ReadIndexResponse { ctx, index } => self.read_states.push(ReadState { ctx, index }),
            Body::AppendResponse { .. }
            | Body::HeartbeatResponse { .. }
            | Body::SnapshotResponse { .. }
            | Body::ReadIndex { .. }
                if self.role == Role::Leader =>
            {
                self.step_leader(from, m.body)
            }
            _ => {}
        }
    }

    fn step_leader(&mut self, from: NodeId, body: Body) {
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        match body {
            Body::AppendResponse { index, reject: None } => {
                let newer = pr.ack(index);
                if pr.mode == Mode::Probe && index == pr.matched {
                    pr.mode = Mode::Replicate;
                }
                if let Mode::Snapshot { index: snap, .. } = pr.mode {
                    if pr.matched >= snap {
                        pr.become_probe();
                    }
                }
                let caught_up = pr.matched == self.log.last_index();
                if newer {
                    self.maybe_commit();
                    if self.transferee == Some(from) && caught_up {
                        self.send(from, Body::TimeoutNow);
                    }
                }
                self.send_append(from);
            }
            Body::AppendResponse {
                index: rejected,
                reject: Some(hint),
            } => {
                let stale = match pr.mode {
                    Mode::Replicate => rejected <= pr.matched,
                    Mode::Probe => rejected + 1 != pr.next,
                    Mode::Snapshot { .. } => true,
                };
                if stale {
                    return;
                }
                let probe = if hint.term > 0 {
                    self.log.conflict_hint(hint.index, hint.term).index
                } else {
                    hint.index
                };
                let pr = self.progress.get_mut(&from).expect("progress looked up above");
                pr.next = (probe + 1).min(rejected).max(pr.matched + 1);
                pr.become_probe();
                self.send_append(from);
            }
            Body::HeartbeatResponse { read_seq } => {
                pr.read_ack = pr.read_ack.max(read_seq);
                // An answer means the link works: retry a probe or chunk that may have been lost,
                // and free a slot of a full window in case its append was lost.
                pr.waiting = false;
                if pr.mode == Mode::Replicate
                    && !pr.can_send(self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes)
                {
                    pr.free_oldest();
                }
                let behind = pr.matched < self.log.last_index();
                self.send_append_or_empty(from, behind);
                self.release_reads();
            }
            Body::SnapshotResponse { index, offset, done } => {
                let Mode::Snapshot { index: sending, .. } = pr.mode else {
                    return;
                };
                if index != sending {
                    return;
                }
                pr.waiting = false;
                if done {
                    pr.matched = pr.matched.max(index);
                    pr.next = index + 1;
                    pr.become_probe();
                } else {
                    pr.mode = Mode::Snapshot { index, offset };
                }
                self.send_append(from);
            }
            Body::ReadIndex { ctx } => self.leader_read(from, ctx),
            _ => {}
        }
    }

    fn heard_from_leader(&mut self, leader: NodeId) {
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(leader));
        }
        self.leader = Some(leader);
        self.election_elapsed = 0;
    }

    fn handle_append(
        &mut self,
        from: NodeId,
        mut prev_index: Index,
        mut prev_term: Term,
        mut entries: Vec<Entry>,
        commit: Index,
    ) {
        // Entries up to our commit index are known to match; skip them.
        if prev_index < self.log.committed {
            let skip = ((self.log.committed - prev_index) as usize).min(entries.len());
            entries.drain(..skip);
            prev_index += skip as u64;
            match self.log.term(prev_index) {
                Some(t) => prev_term = t,
                None => return,
            }
        }
        if !self.log.matches(prev_index, prev_term) {
            let hint = self.log.conflict_hint(prev_index, prev_term);
            self.send(
                from,
                Body::AppendResponse {
                    index: prev_index,
                    reject: Some(hint),
                },
            );
            return;
        }
        let last_new = prev_index + entries.len() as u64;
        match self.log.append_after(prev_index, entries) {
            Ok(true) => self.membership = self.log.membership_at(self.log.last_index()).clone(),
            Ok(false) => {}
            // A leader asked us to overwrite a committed entry: safety is already broken
            // elsewhere; refuse rather than make it worse.
            Err(_) => return,
        }
        self.commit_to(commit.min(last_new));
        self.send(
            from,
            Body::AppendResponse {
                index: last_new,
                reject: None,
            },
        );
    }

    fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    ) {
        let index = meta.index;
        if index <= self.log.committed {
            // We hold everything it covers already.
            self.send(
                from,
                Body::SnapshotResponse {
                    index,
                    offset: 0,
                    done: true,
                },
            );
            return;
        }
        let buffer = match self.incoming.take() {
            _ if offset == 0 => Some(Snapshot { meta, data }),
            Some(mut snap) if snap.meta == meta && snap.data.len() as u64 == offset => {
                snap.data.extend_from_slice(&data);
                Some(snap)
            }
            other => {
                let have = other
                    .as_ref()
                    .filter(|s| s.meta == meta)
                    .map_or(0, |s| s.data.len() as u64);
                self.incoming = other;
                self.send(
                    from,
                    Body::SnapshotResponse {
                        index,
                        offset: have,
                        done: false,
                    },
                );
                return;
            }
        };
        let Some(snap) = buffer else { return };
        if !done {
            let offset = snap.data.len() as u64;
            self.incoming = Some(snap);
            self.send(
                from,
                Body::SnapshotResponse {
                    index,
                    offset,
                    done: false,
                },
            );
            return;
        }
        if self.log.matches(index, snap.meta.term) {
            // We already hold the entries: just commit up to the snapshot.
            self.commit_to(index);
        } else {
            // Our log diverges or is short: replace all of it, conflicting suffix included.
            self.log.restore(snap.meta.clone());
            self.membership = snap.meta.membership.clone();
            self.snapshot = Some(snap);
            self.snapshot_to_hand = true;
        }
        self.send(
            from,
            Body::SnapshotResponse {
                index,
                offset: 0,
                done: true,
            },
        );
    }

    // ---- elections ------------------------------------------------------------------

    fn campaign(&mut self, kind: Campaign) {
        let pre_vote = kind == Campaign::PreVote;
        let transfer = kind == Campaign::Transfer;
        if pre_vote {
            self.role = Role::PreCandidate;
            self.leader = None;
        } else {
            self.term += 1;
            self.vote = Some(self.id());
            self.role = Role::Candidate;
            self.leader = None;
        }
        self.reset_election_timer();
        self.votes.clear();
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let term = if pre_vote { self.term + 1 } else { self.term };
        let voters: Vec<NodeId> = self
            .membership
            .voters
            .iter()
            .copied()
            .filter(|&v| v != self.id())
            .collect();
        for to in voters {
            let body = if pre_vote {
                Body::PreVote {
                    last_index,
                    last_term,
                }
            } else {
                Body::Vote {
                    last_index,
                    last_term,
                    transfer,
                }
            };
            self.msgs.push(Message {
                from: self.id(),
                to,
                term,
                body,
            });
        }
        self.count_vote(self.id(), true);
    }

    fn count_vote(&mut self, from: NodeId, granted: bool) {
        if !self.membership.is_voter(from) {
            return;
        }
        self.votes.entry(from).or_insert(granted);
        let yes = self.votes.values().filter(|&&g| g).count();
        let no = self.votes.len() - yes;
        let quorum = self.membership.quorum();
        if yes >= quorum {
            if self.role == Role::PreCandidate {
                self.campaign(Campaign::Vote);
            } else {
                self.become_leader();
            }
        } else if no > self.membership.voters.len() - quorum {
            self.become_follower(self.term, None);
        }
    }

    fn first_round(&self) -> Campaign {
        if self.cfg.pre_vote {
            Campaign::PreVote
        } else {
            Campaign::Vote
        }
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.progress.clear();
        self.transferee = None;
        self.pending_reads.clear();
        self.reads_before_commit.clear();
        self.reset_election_timer();
    }

    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = Some(self.id());
        self.transferee = None;
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        // Any change in the uncommitted tail counts as pending until our no-op commits.
        self.pending_conf_index = self.log.last_index();
        self.uncommitted_bytes = 0;
        self.progress.clear();
        self.sync_progress();
        self.append(Payload::Noop);
    }

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        // splitmix64: tiny, and good enough to spread timeouts.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let span = self.cfg.election_ticks.max(1) as u64;
        self.randomized_timeout = self.cfg.election_ticks.max(1) + (z % span) as u32;
    }

    // ---- replication ----------------------------------------------------------------

    fn check_can_propose(&self) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader { leader: self.leader });
        }
        if self.transferee.is_some() {
            return Err(RaftError::TransferInProgress);
        }
        Ok(())
    }

    fn append(&mut self, payload: Payload) -> Index {
        let index = self.log.last_index() + 1;
        let entry = Entry {
            term: self.term,
            index,
            payload,
        };
        self.uncommitted_bytes += entry.size();
        if let Payload::Membership(m) = &entry.payload {
            self.membership = m.clone();
            self.sync_progress();
        }
        self.log.entries.push(entry);
        index
    }

    /// Keep one progress per member (leader only).
    fn sync_progress(&mut self) {
        let members: Vec<NodeId> = self.membership.members().collect();
        self.progress.retain(|id, _| members.contains(id));
        let next = self.log.last_index() + 1;
        for id in members {
            self.progress.entry(id).or_insert_with(|| Progress::new(next));
        }
        let persisted = self.log.persisted;
        let me = self
            .progress
            .entry(self.cfg.id)
            .or_insert_with(|| Progress::new(next));
        me.matched = persisted;
        me.recent_active = true;
    }

    /// Send `to` what it lacks, as far as flow control allows.
    fn send_append(&mut self, to: NodeId) {
        self.send_append_or_empty(to, false)
    }

    /// `even_empty`: send an append even with nothing new, so a follower whose earlier
    /// appends were lost reveals the gap by rejecting it.
    fn send_append_or_empty(&mut self, to: NodeId, even_empty: bool) {
        let (max_msgs, max_bytes) = (self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes);
        let Some(pr) = self.progress.get(&to) else { return };
        if let Mode::Snapshot { .. } = pr.mode {
            return self.send_snapshot_chunk(to);
        }
        if !pr.can_send(max_msgs, max_bytes) {
            return;
        }
        let prev_index = pr.next - 1;
        let Some(prev_term) = self.log.term(prev_index) else {
            // The entries it needs are compacted away.
            let index = self.log.snapshot.index;
            let pr = self.progress.get_mut(&to).expect("progress looked up above");
            pr.mode = Mode::Snapshot { index, offset: 0 };
            pr.waiting = false;
            return self.send_snapshot_chunk(to);
        };
        let mut entries = Vec::new();
        let mut bytes = 0;
        for e in self.log.slice(pr.next, Index::MAX) {
            if !entries.is_empty() && bytes + e.size() > self.cfg.max_msg_bytes {
                break;
            }
            bytes += e.size();
            entries.push(e.clone());
        }
        let last = prev_index + entries.len() as u64;
        let commit = self.log.committed.min(last.max(pr.matched));
        let known = pr.mode == Mode::Replicate || pr.matched >= prev_index;
        if entries.is_empty() && commit <= pr.sent_commit && known && !even_empty {
            return;
        }
        let pr = self.progress.get_mut(&to).expect("progress looked up above");
        pr.sent_commit = pr.sent_commit.max(commit);
        match pr.mode {
            Mode::Replicate if !entries.is_empty() => {
                pr.next = last + 1;
                pr.inflight.push_back((last, bytes));
                pr.inflight_bytes += bytes;
            }
            Mode::Probe => pr.waiting = true,
            _ => {}
        }
        self.send(
            to,
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            },
        );
    }

    fn send_snapshot_chunk(&mut self, to: NodeId) {
        let Some(snap) = &self.snapshot else { return };
        let Some(pr) = self.progress.get_mut(&to) else {
            return;
        };
        let Mode::Snapshot { index, mut offset } = pr.mode else {
            return;
        };
        if pr.waiting {
            return;
        }
        if index != snap.meta.index {
            // We compacted again meanwhile: start over with the newer snapshot.
            offset = 0;
        }
        let start = (offset as usize).min(snap.data.len());
        let end = (start + self.cfg.snapshot_chunk_bytes.max(1)).min(snap.data.len());
        pr.mode = Mode::Snapshot {
            index: snap.meta.index,
            offset: start as u64,
        };
        pr.waiting = true;
        let body = Body::InstallSnapshot {
            meta: snap.meta.clone(),
            offset: start as u64,
            data: snap.data[start..end].to_vec(),
            done: end == snap.data.len(),
        };
        self.send(to, body);
    }

    fn broadcast_heartbeat(&mut self) {
        let peers: Vec<(NodeId, Index)> = self
            .progress
            .iter()
            .filter(|(&id, _)| id != self.id())
            .map(|(&id, pr)| (id, pr.matched))
            .collect();
        for (to, matched) in peers {
            let commit = self.log.committed.min(matched);
            self.send(
                to,
                Body::Heartbeat {
                    commit,
                    read_seq: self.read_seq,
                },
            );
        }
    }

    fn voters_where(&self, pred: impl Fn(NodeId, &Progress) -> bool) -> usize {
        self.membership
            .voters
            .iter()
            .filter(|id| self.progress.get(id).is_some_and(|pr| pred(**id, pr)))
            .count()
    }

    /// The largest value a quorum of voters has reached.
    fn quorum_value(&self, value: impl Fn(NodeId, &Progress) -> u64) -> u64 {
        let mut values: Vec<u64> = self
            .membership
            .voters
            .iter()
            .map(|id| self.progress.get(id).map_or(0, |pr| value(*id, pr)))
            .collect();
        values.sort_unstable_by(|a, b| b.cmp(a));
        values.get(self.membership.quorum() - 1).copied().unwrap_or(0)
    }

    fn maybe_commit(&mut self) {
        let index = self.quorum_value(|_, pr| pr.matched);
        // Figure 8: only entries of the current term are committed by counting replicas.
        if index > self.log.committed && self.log.term(index) == Some(self.term) {
            self.commit_to(index);
        }
    }

    fn commit_to(&mut self, index: Index) {
        if index <= self.log.committed {
            return;
        }
        self.log.committed = index;
        if self.role != Role::Leader {
            return;
        }
        self.uncommitted_bytes = self
            .log
            .slice(index + 1, Index::MAX)
            .iter()
            .map(Entry::size)
            .sum();
        for (from, ctx) in std::mem::take(&mut self.reads_before_commit) {
            self.leader_read(from, ctx);
        }
        if !self.membership.is_voter(self.id()) && self.pending_conf_index <= index {
            // Our own removal is committed: tell everyone, ask the most up-to-date voter to
            // campaign at once, and step down.
            let peers: Vec<NodeId> = self
                .progress
                .keys()
                .copied()
                .filter(|&p| p != self.id())
                .collect();
            for peer in peers {
                self.send_append(peer);
            }
            let successor = self
                .membership
                .voters
                .iter()
                .filter_map(|id| self.progress.get(id).map(|pr| (pr.matched, *id)))
                .max();
            if let Some((matched, id)) = successor {
                if matched == self.log.last_index() {
                    self.send(id, Body::TimeoutNow);
                }
            }
            self.become_follower(self.term, None);
        }
    }

    // ---- reads -------------------------------------------------------------------

    fn leader_read(&mut self, from: NodeId, ctx: Vec<u8>) {
        if self.log.term(self.log.committed) != Some(self.term) {
            // Until our no-op commits we do not know the true commit index.
            self.reads_before_commit.push((from, ctx));
            return;
        }
        self.read_seq += 1;
        let read = PendingRead {
            from,
            ctx,
            index: self.log.committed,
            seq: self.read_seq,
        };
        self.pending_reads.push_back(read);
        self.heartbeat_due = true;
        self.release_reads();
    }

    fn release_reads(&mut self) {
        let (me, seq) = (self.id(), self.read_seq);
        let acked = self.quorum_value(|id, pr| if id == me { seq } else { pr.read_ack });
        while self.pending_reads.front().is_some_and(|r| r.seq <= acked) {
            let Some(read) = self.pending_reads.pop_front() else {
                break;
            };
            if read.from == me {
                self.read_states.push(ReadState {
                    ctx: read.ctx,
                    index: read.index,
                });
            } else {
                self.send(
                    read.from,
                    Body::ReadIndexResponse {
                        ctx: read.ctx,
                        index: read.index,
                    },
                );
            }
        }
    }

    fn send(&mut self, to: NodeId, body: Body) {
        self.msgs.push(Message {
            from: self.cfg.id,
            to,
            term: self.term,
            body,
        });
    }
}

/// Indexes a correct peer could send: anything else (a bug or a hostile key holder) is dropped
/// so arithmetic on it cannot overflow.
fn plausible(m: &Message, last_index: Index) -> bool {
    const LIMIT: u64 = u64::MAX / 4;
    match &m.body {
        Body::AppendResponse { index, reject: None } | Body::SnapshotResponse { index, .. } => {
            *index <= last_index
        }
        Body::AppendResponse {
            index,
            reject: Some(hint),
        } => *index < LIMIT && hint.index < LIMIT,
        Body::Append {
            prev_index,
            entries,
            commit,
            ..
        } => *prev_index < LIMIT && *commit < LIMIT && entries.len() < (LIMIT as usize),
        Body::InstallSnapshot { meta, offset, .. } => meta.index < LIMIT && *offset < LIMIT,
        Body::PreVote { last_index, .. } | Body::Vote { last_index, .. } => *last_index < LIMIT,
        _ => m.term < LIMIT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(raft: &mut Raft) -> Ready {
        let ready = raft.ready();
        raft.advance();
        ready
    }

    #[test]
    fn single_voter_elects_itself_and_commits_after_persisting() {
        let mut raft = Raft::bootstrap(Config::new(1, 5), &[1]);
        drive(&mut raft);
        for _ in 0..10 {
            raft.tick();
        }
        assert_eq!(raft.status().role, Role::Leader);
        let index = raft.propose(b"x".to_vec()).unwrap();
        let ready = raft.ready();
        assert!(ready.entries.iter().any(|e| e.index == index));
        assert!(
            ready.committed.iter().all(|e| e.index < index),
            "nothing commits before it is persisted"
        );
        raft.advance();
        let ready = drive(&mut raft);
        assert_eq!(ready.committed.last().map(|e| e.index), Some(index));
    }

    #[test]
    fn followers_refuse_proposals_naming_the_leader() {
        let mut raft = Raft::bootstrap(Config::new(2, 5), &[1, 2, 3]);
        raft.step(Message {
            from: 1,
            to: 2,
            term: 2,
            body: Body::Heartbeat {
                commit: 1,
                read_seq: 0,
            },
        });
        assert_eq!(
            raft.propose(vec![]),
            Err(RaftError::NotLeader { leader: Some(1) })
        );
        assert!(raft.propose_change(ConfChange::AddLearner(4)).is_err());
    }

    #[test]
    fn restart_rejects_a_gap_in_stored_entries() {
        let stored = Stored {
            hard_state: HardState {
                term: 2,
                vote: None,
                commit: 0,
            },
            snapshot: None,
            entries: vec![
                Entry {
                    term: 1,
                    index: 1,
                    payload: Payload::Noop,
                },
                Entry {
                    term: 1,
                    index: 3,
                    payload: Payload::Noop,
                },
            ],
        };
        let err = Raft::restart(Config::new(1, 1), stored)
            .err()
            .expect("gap must be refused");
        assert!(err.to_string().contains("entry 3"), "{err}");
    }

    /// Elect node 1 of {1, 2} by hand and return it with its progress in Replicate mode.
    fn leader_of_two(tune: impl Fn(&mut Config)) -> Raft {
        let mut cfg = Config::new(1, 5);
        tune(&mut cfg);
        let mut raft = Raft::bootstrap(cfg, &[1, 2]);
        raft.campaign_now();
        drive(&mut raft);
        raft.step(Message {
            from: 2,
            to: 1,
            term: 2,
            body: Body::PreVoteResponse { granted: true },
        });
        drive(&mut raft);
        raft.step(Message {
            from: 2,
            to: 1,
            term: 2,
            body: Body::VoteResponse { granted: true },
        });
        assert_eq!(raft.status().role, Role::Leader);
        drive(&mut raft);
        raft.step(Message {
            from: 2,
            to: 1,
            term: 2,
            body: Body::AppendResponse {
                index: 2,
                reject: None,
            },
        });
        drive(&mut raft);
        raft
    }

    fn appends_to_2(ready: &Ready) -> Vec<(usize, usize)> {
        ready
            .messages
            .iter()
            .filter_map(|m| match &m.body {
                Body::Append { entries, .. } if m.to == 2 && !entries.is_empty() => {
                    Some((entries.len(), entries.iter().map(Entry::size).sum()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn flow_control_bounds_appends_in_flight() {
        let mut raft = leader_of_two(|cfg| {
            cfg.max_inflight_msgs = 2;
            cfg.max_msg_bytes = 100;
        });
        let mut sent = Vec::new();
        for _ in 0..20 {
            raft.propose(vec![0; 50]).unwrap();
            sent.extend(appends_to_2(&drive(&mut raft)));
        }
        assert_eq!(
            sent.len(),
            2,
            "a silent follower gets at most two appends in flight: {sent:?}"
        );
        // One acknowledgement opens one slot; the next append batches what piled up.
        let acked = 2 + sent[0].0 as u64;
        raft.step(Message {
            from: 2,
            to: 1,
            term: 2,
            body: Body::AppendResponse {
                index: acked,
                reject: None,
            },
        });
        let more = appends_to_2(&drive(&mut raft));
        assert_eq!(more.len(), 1);
        assert!(
            more[0].1 <= 100 || more[0].0 == 1,
            "batch of {} bytes exceeds max_msg_bytes",
            more[0].1
        );
    }

    #[test]
    fn proposals_accumulated_between_readies_go_out_in_one_append() {
        let mut raft = leader_of_two(|cfg| cfg.max_msg_bytes = 1 << 20);
        for i in 0..10u8 {
            raft.propose(vec![i]).unwrap();
        }
        let batches = appends_to_2(&drive(&mut raft));
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].0, 10);
    }

    #[test]
    fn random_and_extreme_messages_never_panic() {
        let mut state = 0x1234_5678u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        let mut pick = move |extreme: bool| {
            let v = next();
            if extreme && v % 7 == 0 {
                u64::MAX - v % 3
            } else {
                v % 12
            }
        };
        for node in [
            Raft::bootstrap(Config::new(1, 1), &[1, 2, 3]),
            leader_of_two(|_| {}),
        ] {
            let mut raft = node;
            for _ in 0..20_000 {
                let (a, b, c) = (pick(true), pick(true), pick(false));
                let entries: Vec<Entry> = (0..pick(false) % 3)
                    .map(|i| Entry {
                        term: pick(false),
                        index: a.wrapping_add(i + 1),
                        payload: Payload::Noop,
                    })
                    .collect();
                let body = match pick(false) % 12 {
                    0 => Body::PreVote {
                        last_index: a,
                        last_term: b,
                    },
                    1 => Body::PreVoteResponse { granted: c % 2 == 0 },
                    2 => Body::Vote {
                        last_index: a,
                        last_term: b,
                        transfer: c % 2 == 0,
                    },
                    3 => Body::VoteResponse { granted: c % 2 == 0 },
                    4 => Body::Append {
                        prev_index: a,
                        prev_term: c,
                        entries,
                        commit: b,
                    },
                    5 => Body::AppendResponse {
                        index: a,
                        reject: (c % 2 == 0).then_some(RejectHint { index: b, term: c }),
                    },
                    6 => Body::Heartbeat {
                        commit: a,
                        read_seq: b,
                    },
                    7 => Body::HeartbeatResponse { read_seq: a },
                    8 => Body::InstallSnapshot {
                        meta: SnapshotMeta {
                            index: a,
                            term: c,
                            membership: Membership::voters(&[1, 2]),
                        },
                        offset: b % 4,
                        data: vec![1, 2],
                        done: c % 2 == 0,
                    },
                    9 => Body::SnapshotResponse {
                        index: a,
                        offset: b,
                        done: c % 2 == 0,
                    },
                    10 => Body::TimeoutNow,
                    _ => Body::ReadIndex { ctx: vec![1] },
                };
                let from = 2 + pick(false) % 2;
                // Mostly the current term, so the messages get past the term checks.
                let term = raft.status().term + u64::from(pick(false) % 10 == 0);
                raft.step(Message {
                    from,
                    to: raft.id(),
                    term,
                    body,
                });
                if pick(false) % 5 == 0 {
                    raft.tick();
                }
                drive(&mut raft);
            }
        }
    }
}
