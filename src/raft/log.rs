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

    /// Replace the whole log by a received snapshot. Until the driver has stored it, only
    /// what was both durable and committed before counts as persisted.
    pub fn restore(&mut self, meta: SnapshotMeta) {
        self.entries.clear();
        self.persisted = self.persisted.min(self.committed);
        self.committed = meta.index;
        self.applied = meta.index;
        self.snapshot = meta;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(terms: &[Term]) -> Log {
        let mut log = Log::default();
        for (i, &term) in terms.iter().enumerate() {
            log.entries.push(Entry {
                term,
                index: i as u64 + 1,
                payload: Payload::Noop,
            });
        }
        log
    }

    fn entry(index: Index, term: Term) -> Entry {
        Entry {
            term,
            index,
            payload: Payload::Noop,
        }
    }

    #[test]
    fn conflict_hint_skips_a_whole_term_at_once() {
        // Follower: 1 1 1 4 4 4 4; leader probes at 7 with term 6 (its log: 1 1 1 5 5 6 6).
        let log = log_with(&[1, 1, 1, 4, 4, 4, 4]);
        assert_eq!(log.conflict_hint(7, 6), RejectHint { index: 7, term: 4 });
        // The leader then looks for its last index with term <= 4: index 3.
        let leader = log_with(&[1, 1, 1, 5, 5, 6, 6]);
        assert_eq!(leader.conflict_hint(7, 4).index, 3);
    }

    #[test]
    fn append_truncates_at_the_first_conflict_only() {
        let mut log = log_with(&[1, 1, 2, 2]);
        log.persisted = 4;
        log.committed = 2;
        let changed = log
            .append_after(2, vec![entry(3, 2), entry(4, 3), entry(5, 3)])
            .unwrap();
        assert!(!changed);
        let terms: Vec<Term> = log.entries.iter().map(|e| e.term).collect();
        assert_eq!(terms, vec![1, 1, 2, 3, 3]);
        assert_eq!(log.persisted, 3, "the replaced entry is no longer durable");
    }

    #[test]
    fn append_refuses_to_overwrite_committed_entries() {
        let mut log = log_with(&[1, 1, 2]);
        log.committed = 3;
        assert_eq!(log.append_after(2, vec![entry(3, 3)]), Err(3));
        assert_eq!(log.term(3), Some(2));
    }

    #[test]
    fn compaction_keeps_terms_and_membership_of_the_prefix() {
        let mut log = log_with(&[1, 1, 2]);
        log.entries[0].payload = Payload::Membership(Membership::voters(&[1, 2, 3]));
        log.applied = 2;
        let meta = log.compact(2).unwrap();
        assert_eq!((meta.index, meta.term), (2, 1));
        assert_eq!(log.first_index(), 3);
        assert_eq!(log.term(2), Some(1));
        assert_eq!(log.term(1), None);
        assert!(log.membership_at(3).is_voter(3));
        assert!(log.compact(3).is_none(), "index 3 is not applied yet");
    }
}
