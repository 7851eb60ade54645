//! Raft consensus as a pure state machine: no clock, no sockets, no files.
//!
//! A [`Raft`] value is one node. It never performs I/O: the caller feeds it time
//! ([`Raft::tick`]), messages from peers ([`Raft::step`]) and requests ([`Raft::propose`],
//! [`Raft::propose_change`], [`Raft::read_index`], [`Raft::transfer_leader`]), and collects
//! the resulting work as a [`Ready`].
//!
//! Guarantees (Raft §5, with the dissertation's single-server membership changes):
//! at most one leader per term; a committed entry is never lost or changed as long as the
//! driver follows the loop below; a leader commits entries of earlier terms only by
//! committing one of its own (the no-op it appends on election); at most one membership
//! change is uncommitted, and none before the leader's no-op commits. PreVote and CheckQuorum
//! are on by default, so a node that rejoins after a partition cannot depose a healthy leader,
//! and a leader cut off from a quorum steps down within an election timeout.
//!
//! # The driver loop
//!
//! 1. Create the node: [`Raft::bootstrap`] for the founding voters of a new cluster,
//!    [`Raft::restart`] with what was stored (an empty [`Stored`] for a node that will be
//!    added later). Seed [`Config::seed`] from OS entropy mixed with the node id.
//! 2. Every tick interval (e.g. 100 ms) call [`Raft::tick`].
//! 3. For every message received from a peer call [`Raft::step`]; for client requests call
//!    `propose`, `read_index`, `propose_change` or `transfer_leader` (followers refuse
//!    proposals with [`RaftError::NotLeader`] naming the leader, so the caller can forward).
//! 4. Call [`Raft::ready`] and, in this order:
//!    1. store `hard_state` (term and vote first, so no stored entry is newer than the term);
//!    2. if `snapshot` is set, store it durably and discard the whole stored log;
//!    3. store `entries` (they replace any stored entries from `entries[0].index` on);
//!       fsync all of it (an fsync error is fatal: stop the node);
//!    4. send `messages` (only now: votes and acknowledgements depend on step 3);
//!    5. restore `snapshot` into the state machine, then apply `committed` in order;
//!    6. answer each of `read_states` once the state machine has applied its `index`.
//! 5. Call [`Raft::advance`]. Do not call `step` or `tick` between `ready` and `advance`.
//! 6. Now and then, after applying, save the state machine at the applied index durably and
//!    call [`Raft::compact`] so the log (and the WAL) can be truncated.
//! 7. Repeat from 2.

mod log;
mod message;
mod node;
mod progress;

pub use message::{
    Body, ConfChange, Entry, HardState, Index, Membership, Message, NodeId, Payload, RejectHint, Snapshot,
    SnapshotMeta, Term,
};
pub use node::{Config, Raft, RaftError, ReadState, Ready, Role, Status, Stored};
