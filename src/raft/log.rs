//! The in-memory raft log: a snapshot of the compacted prefix, then the entries after it.
//!
//! Guarantees: `entries[i].index == snapshot.index + 1 + i`; terms never decrease along the
//! log; `snapshot.index <= applied <= committed <= last_index()`; nothing at or below
//! `committed` is ever truncated (a message asking for that is refused).

use super::message::{Entry, Index, Membership, Payload, RejectHint, SnapshotMeta, Term};

#[derive(Debug, Default)]
pub(crate) struct Log {
    pub snapshot: SnapshotMeta,
    pub entries: Vec<Entry>,
    pub committed: Index,
    pub applied: Index,
    /// Highest index the driver has confirmed durable.
    pub persisted: Index,
}

impl Log {
    pub fn first_index(&self) -> Index {
        self.snapshot.index + 1
    }

    pub fn last_index(&self) -> Index {
        self.snapshot.index + self.entries.len() as u64
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot.term, |e| e.term)
    }

    /// The term at `index`, if the log still knows it (not compacted, not beyond the end).
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        self.entry(index).map(|e| e.term)
    }

    pub fn entry(&self, index: Index) -> Option<&Entry> {
        let offset = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    pub fn matches(&self, index: Index, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// Entries in `lo..=hi`, clamped to what the log holds.
    pub fn slice(&self, lo: Index, hi: Index) -> &[Entry] {
        let first = self.first_index();
        let lo = lo.max(first);
        let hi = hi.min(self.last_index());
        if lo > hi {
            return &[];
        }
        &self.entries[(lo - first) as usize..=(hi - first) as usize]
    }

    /// Raft §5.4.1: a candidate's log is at least as up to date as ours.
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// The largest index `<= index` whose term is `<= term` (or the snapshot index).
    pub fn conflict_hint(&self, index: Index, term: Term) -> RejectHint {
        let mut i = index.min(self.last_index());
        while i > self.snapshot.index {
            match self.term(i) {
                Some(t) if t <= term => break,
                _ => i -= 1,
            }
        }
        RejectHint {
            index: i,
            term: self.term(i).unwrap_or(0),
        }
    }

    /// Append entries that follow `prev_index` (already checked to match), skipping those we
    /// hold and truncating at the first conflict. Returns whether a membership entry was
    /// removed or added, or `Err` if the conflict lies at or below `committed`.
    pub fn append_after(&mut self, prev_index: Index, entries: Vec<Entry>) -> Result<bool, Index> {
        let mut changed_membership = false;
        for (i, entry) in entries.into_iter().enumerate() {
            let index = prev_index + 1 + i as u64;
            if entry.index != index {
                return Err(entry.index);
            }
            match self.term(index) {
                Some(t) if t == entry.term => continue,
                Some(_) => {
                    if index <= self.committed {
                        return Err(index);
                    }
                    let keep = (index - self.first_index()) as usize;
                    changed_membership |= self.entries[keep..]
                        .iter()
                        .any(|e| matches!(e.payload, Payload::Membership(_)));
                    self.entries.truncate(keep);
                    self.persisted = self.persisted.min(index - 1);
                }
                None => {}
            }
            changed_membership |= matches!(entry.payload, Payload::Membership(_));
            self.entries.push(entry);
        }
        Ok(changed_membership)
    }

    /// The membership in force after the entry at `index` (the latest at or before it).
    pub fn membership_at(&self, index: Index) -> &Membership {
        self.slice(self.first_index(), index)
            .iter()
            .rev()
            .find_map(|e| match &e.payload {
                Payload::Membership(m) => Some(m),
                _ => None,
            })
            .unwrap_or(&self.snapshot.membership)
    }

    /// Drop entries up to `index` (which must be applied), recording them as a snapshot.
    pub fn compact(&mut self, index: Index) -> Option<SnapshotMeta> {
        if index <= self.snapshot.index || index > self.applied {
            return None;
        }
        let meta = SnapshotMeta {
            index,
            term: self.term(index)?,
            membership: self.membership_at(index).clone(),
        };
        self.entries.drain(..(index - self.snapshot.index) as usize);
        self.snapshot = meta.clone();
        Some(meta)
    }

    /// Replace the whole log by a received snapshot.
    pub fn restore(&mut self, meta: SnapshotMeta) {
        self.entries.clear();
        self.committed = meta.index;
        self.applied = meta.index;
        self.persisted = meta.index;
        self.snapshot = meta;
    }
}
