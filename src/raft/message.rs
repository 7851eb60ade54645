//! The values raft nodes exchange and persist: entries, hard state, snapshots, messages.
//!
//! All derive serde, so the driver can put them on the wire and on disk with postcard.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub type NodeId = u64;
pub type Term = u64;
pub type Index = u64;

/// Who takes part: voters elect and form quorums; learners only receive the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

/// One single-server change; `AddVoter` of a learner promotes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfChange {
    AddVoter(NodeId),
    AddLearner(NodeId),
    Remove(NodeId),
}

impl Membership {
    pub fn voters(ids: &[NodeId]) -> Membership {
        Membership {
            voters: ids.iter().copied().collect(),
            learners: BTreeSet::new(),
        }
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// Smallest number of voters that forms a majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The membership after `change`, or why the change is refused.
    pub fn apply(&self, change: ConfChange) -> Result<Membership, String> {
        let mut next = self.clone();
        match change {
            ConfChange::AddVoter(id) => {
                if self.is_voter(id) {
                    return Err(format!("node {id} is already a voter"));
                }
                next.learners.remove(&id);
                next.voters.insert(id);
            }
            ConfChange::AddLearner(id) => {
                if self.contains(id) {
                    return Err(format!("node {id} is already a member"));
                }
                next.learners.insert(id);
            }
            ConfChange::Remove(id) => {
                if !self.contains(id) {
                    return Err(format!("node {id} is not a member"));
                }
                next.voters.remove(&id);
                next.learners.remove(&id);
                if next.voters.is_empty() {
                    return Err(format!("removing node {id} would leave no voter"));
                }
            }
        }
        Ok(next)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// Appended by every new leader so it can commit entries of its own term at once.
    Noop,
    /// Application data, opaque to raft.
    Command(Vec<u8>),
    /// The complete new membership; it takes effect as soon as it is in a log.
    Membership(Membership),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: Term,
    pub index: Index,
    pub payload: Payload,
}

impl Entry {
    /// Approximate encoded size, used for batching and flow control.
    pub fn size(&self) -> usize {
        24 + match &self.payload {
            Payload::Noop => 0,
            Payload::Command(data) => data.len(),
            Payload::Membership(m) => 8 * (m.voters.len() + m.learners.len()),
        }
    }
}

/// What must be durable before any message that depends on it is sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
    pub commit: Index,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub index: Index,
    pub term: Term,
    pub membership: Membership,
}

/// The application state after applying every entry up to `meta.index`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

/// Where a follower's log stops agreeing: the largest index at or below the rejected one whose
/// term is at most the leader's term there (etcd's fast back-off).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectHint {
    pub index: Index,
    pub term: Term,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// "Would you vote for me at `term`?" sent before bumping the term (PreVote).
    PreVote {
        last_index: Index,
        last_term: Term,
    },
    PreVoteResponse {
        granted: bool,
    },
    /// `transfer` marks a campaign started by leader transfer, which may break a leader lease.
    Vote {
        last_index: Index,
        last_term: Term,
        transfer: bool,
    },
    VoteResponse {
        granted: bool,
    },
    Append {
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    },
    /// On success `index` is the last index known to match; on rejection it is the rejected
    /// `prev_index` and `reject` says where to retry.
    AppendResponse {
        index: Index,
        reject: Option<RejectHint>,
    },
    /// `read_seq` lets the leader confirm it still leads for ReadIndex.
    Heartbeat {
        commit: Index,
        read_seq: u64,
    },
    HeartbeatResponse {
        read_seq: u64,
    },
    InstallSnapshot {
        meta: SnapshotMeta,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    },
    /// `offset` is the next byte wanted; `done` once the snapshot is installed.
    SnapshotResponse {
        index: Index,
        offset: u64,
        done: bool,
    },
    /// Leader transfer: "start an election now".
    TimeoutNow,
    /// A follower forwards a linearizable read to the leader.
    ReadIndex {
        ctx: Vec<u8>,
    },
    ReadIndexResponse {
        ctx: Vec<u8>,
        index: Index,
    },
}

impl Message {
    /// Approximate encoded size, used for flow control.
    pub fn size(&self) -> usize {
        32 + match &self.body {
            Body::Append { entries, .. } => entries.iter().map(Entry::size).sum(),
            Body::InstallSnapshot { data, .. } => data.len(),
            Body::ReadIndex { ctx } | Body::ReadIndexResponse { ctx, .. } => ctx.len(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_changes_one_server_at_a_time() {
        let m = Membership::voters(&[1, 2, 3]);
        let m = m.apply(ConfChange::AddLearner(4)).unwrap();
        assert!(m.learners.contains(&4) && !m.is_voter(4));
        let m = m.apply(ConfChange::AddVoter(4)).unwrap();
        assert!(m.is_voter(4) && m.learners.is_empty());
        assert_eq!(m.quorum(), 3);
        assert!(m.apply(ConfChange::AddVoter(4)).is_err());
        assert!(m.apply(ConfChange::Remove(9)).is_err());
        let single = Membership::voters(&[1]);
        assert!(
            single.apply(ConfChange::Remove(1)).is_err(),
            "a cluster keeps one voter"
        );
    }

    #[test]
    fn messages_roundtrip_through_postcard() {
        let m = Message {
            from: 1,
            to: 2,
            term: 7,
            body: Body::Append {
                prev_index: 3,
                prev_term: 6,
                entries: vec![Entry {
                    term: 7,
                    index: 4,
                    payload: Payload::Command(b"x".to_vec()),
                }],
                commit: 3,
            },
        };
        let bytes = postcard::to_allocvec(&m).unwrap();
        assert_eq!(postcard::from_bytes::<Message>(&bytes).unwrap(), m);
        assert!(postcard::from_bytes::<Message>(&bytes[..bytes.len() - 1]).is_err());
    }
}
