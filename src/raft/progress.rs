//! What a leader knows about each follower's log, and how much it may send it next.
//!
//! Flow control: in `Replicate` at most `max_msgs` appends and `max_bytes` bytes are in
//! flight; in `Probe` one append waits for an answer; in `Snapshot` one chunk at a time.

use super::message::Index;
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Unsure where the logs meet: one append at a time until one succeeds.
    Probe,
    /// Logs meet at `matched`: stream appends optimistically.
    Replicate,
    /// The entries it needs are compacted: send snapshot `index` chunk by chunk.
    Snapshot { index: Index, offset: u64 },
}

#[derive(Debug)]
pub(crate) struct Progress {
    pub matched: Index,
    pub next: Index,
    pub mode: Mode,
    /// Probe: an append is out; Snapshot: a chunk is out. Cleared by any answer.
    pub waiting: bool,
    /// Replicate: (last index, bytes) of each append in flight.
    pub inflight: VecDeque<(Index, usize)>,
    pub inflight_bytes: usize,
    /// Heard from since the last CheckQuorum round.
    pub recent_active: bool,
    /// Highest ReadIndex sequence number acknowledged.
    pub read_ack: u64,
    /// Commit index last sent, so a commit advance is passed on without waiting.
    pub sent_commit: Index,
}

impl Progress {
    pub fn new(next: Index) -> Progress {
        Progress {
            matched: 0,
            next,
            mode: Mode::Probe,
            waiting: false,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            recent_active: false,
            read_ack: 0,
            sent_commit: 0,
        }
    }

    pub fn become_probe(&mut self) {
        self.mode = Mode::Probe;
        self.waiting = false;
        self.next = self.next.max(self.matched + 1);
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    pub fn can_send(&self, max_msgs: usize, max_bytes: usize) -> bool {
        match self.mode {
            Mode::Probe => !self.waiting,
            Mode::Replicate => self.inflight.len() < max_msgs && self.inflight_bytes < max_bytes,
            Mode::Snapshot { .. } => false,
        }
    }

    pub fn free_oldest(&mut self) {
        if let Some((_, bytes)) = self.inflight.pop_front() {
            self.inflight_bytes -= bytes;
        }
    }

    /// Record an acknowledgement up to `index`; false if it told us nothing new.
    pub fn ack(&mut self, index: Index) -> bool {
        self.waiting = self.waiting && matches!(self.mode, Mode::Snapshot { .. });
        while let Some(&(last, bytes)) = self.inflight.front() {
            if last > index {
                break;
            }
            self.inflight.pop_front();
            self.inflight_bytes -= bytes;
        }
        if index <= self.matched {
            return false;
        }
        self.matched = index;
        self.next = self.next.max(index + 1);
        true
    }
}
