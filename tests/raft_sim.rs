//! Deterministic simulation of the raft core, plus named regressions and scenario scripts.
//!
//! `SHOAL_RAFT_SEEDS=N` runs N seeds (default 2000) from `SHOAL_RAFT_FIRST` (default 0), so a
//! soak is `SHOAL_RAFT_FIRST=2000 SHOAL_RAFT_SEEDS=100000 cargo test --test raft_sim simulate_seeds`;
//! `SHOAL_RAFT_SEED=S` replays one seed;
//! `SHOAL_RAFT_TRACE=1` prints its events.

#[path = "raft/mod.rs"]
mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;
use support::sim::{Sim, Stats};

fn run_seed(seed: u64) -> Result<Stats, String> {
    match catch_unwind(AssertUnwindSafe(|| Sim::new(seed).run())) {
        Ok(result) => result,
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())),
    }
}

#[test]
fn simulate_seeds() {
    let (first, count) = match std::env::var("SHOAL_RAFT_SEED") {
        Ok(s) => (s.parse().expect("SHOAL_RAFT_SEED is a number"), 1),
        Err(_) => {
            let n = std::env::var("SHOAL_RAFT_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(2000);
            let first = std::env::var("SHOAL_RAFT_FIRST")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            (first, n)
        }
    };
    let started = Instant::now();
    let mut total = Stats::default();
    let mut worst_liveness = 0;
    let mut failures = Vec::new();
    for seed in first..first + count {
        match run_seed(seed) {
            Ok(s) => {
                total.steps += s.steps;
                total.elections += s.elections;
                total.crashes += s.crashes;
                total.snapshots_sent += s.snapshots_sent;
                total.changes += s.changes;
                total.committed += s.committed;
                total.ops += s.ops;
                worst_liveness = worst_liveness.max(s.liveness_units);
            }
            Err(why) => {
                eprintln!("seed {seed} failed: {why}");
                eprintln!(
                    "replay: SHOAL_RAFT_SEED={seed} SHOAL_RAFT_TRACE=1 cargo test --test raft_sim simulate_seeds -- --nocapture"
                );
                failures.push(seed);
                if failures.len() >= 5 {
                    break;
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{count} seeds in {secs:.1}s ({:.0} seeds/s): {} steps, {} elections, {} crashes, {} snapshots installed, \
         {} membership changes, {} entries committed, {} client ops checked, slowest recovery {} units",
        count as f64 / secs,
        total.steps,
        total.elections,
        total.crashes,
        total.snapshots_sent,
        total.changes,
        total.committed,
        total.ops,
        worst_liveness
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}

#[test]
fn scenarios() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/raft/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("scenario dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenarios in {}", dir.display());
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| support::scenario::run_file(f).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---- named regressions for the known pitfalls -------------------------------------------

use shoal::raft::{Body, ConfChange, Payload, RaftError, Role};
use support::harness::Cluster;

/// Every applied entry at each index is the same on every node that applied it.
fn assert_applied_agree(c: &Cluster) {
    let mut seen = std::collections::BTreeMap::new();
    for (id, entries) in &c.applied {
        for (index, data) in entries {
            if let Some(other) = seen.insert(*index, data.clone()) {
                assert_eq!(&other, data, "node {id} applied a different entry at {index}");
            }
        }
    }
}

/// Ongaro, "bug in single-server membership changes" (raft-dev, 2015): a new leader must
/// commit an entry of its own term before proposing a change, or a change of the previous
/// leader that it does not hold could be committed by a disjoint majority.
#[test]
fn membership_change_waits_for_new_leaders_noop() {
    let mut c = Cluster::new(4);
    c.elect(1);
    // Leader 1 appends "remove 4" but only it holds the entry.
    c.isolate(1);
    assert!(c.change(1, ConfChange::Remove(4)).is_ok());
    // A second change while the first is uncommitted is refused.
    assert_eq!(
        c.change(1, ConfChange::AddLearner(5)),
        Err(RaftError::ChangeInProgress)
    );
    c.stabilize();
    // Node 2 takes over without that entry.
    c.expire_leases(2);
    c.node_mut(2).campaign_now();
    c.flush(2);
    for _ in 0..4 {
        c.deliver_queued(); // pre-votes, their answers, votes, their answers
    }
    assert_eq!(c.role(2), Role::Leader);
    // Its no-op is not committed yet, so it refuses changes.
    assert_eq!(
        c.change(2, ConfChange::AddLearner(5)),
        Err(RaftError::LeaderNotReady)
    );
    c.stabilize();
    c.add_empty(5);
    assert!(c.change(2, ConfChange::AddLearner(5)).is_ok());
    c.heal();
    for _ in 0..3 {
        c.tick(2, 1);
        c.stabilize();
    }
    // Node 1's uncommitted removal is gone everywhere; node 5 is a learner.
    for id in 1..=5 {
        let m = c.node(id).status().membership;
        assert_eq!(
            m.voters.iter().copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 4],
            "node {id}"
        );
        assert!(m.learners.contains(&5), "node {id}");
    }
}

/// Deliver everything (and what it causes) except messages matching `drop`.
fn deliver_except(c: &mut Cluster, drop: impl Fn(&Cluster, &shoal::raft::Message) -> bool) {
    for _ in 0..1000 {
        c.flush_all();
        let Some(m) = c.queue.pop_front() else { return };
        if !drop(c, &m) {
            c.deliver(m);
        }
    }
    panic!("messages keep flowing");
}

/// Raft paper, Figure 8: an entry of an earlier term stored on a majority is not committed
/// by counting replicas; a later leader may legitimately overwrite it.
#[test]
fn figure_8_old_term_entry_on_majority_is_not_committed() {
    let mut c = Cluster::with(5, None, |cfg| cfg.max_msg_bytes = 1);
    c.elect(1); // term 2, no-op at 2/2 everywhere
                // (a) S1 replicates 3/2 to S2 only.
    c.isolate(1);
    c.blocked.remove(&(1, 2));
    c.blocked.remove(&(2, 1));
    c.propose(1, "x").expect("leader accepts");
    c.stabilize();
    assert_eq!(c.node(2).term_at(3), Some(2));
    // (b) S1 crashes; S5 wins term 3 with S3 and S4, appends 3/3 alone, crashes.
    c.crash(1);
    c.heal();
    c.isolate(2);
    c.expire_leases(5);
    c.node_mut(5).campaign_now();
    deliver_except(&mut c, |_, m| matches!(m.body, Body::Append { .. }));
    assert_eq!(c.role(5), Role::Leader);
    assert_eq!(c.node(5).term_at(3), Some(3));
    assert_eq!(c.node(3).term_at(3), None);
    c.crash(5);
    // (c) S1 restarts and wins term 4 with S2, S3 and S4; it gets 3/2 onto S3 but its own
    // no-op (4/4) onto nobody.
    c.heal();
    c.restart(1);
    c.isolate(5);
    // Its first pre-vote (for term 3) only teaches it term 3; the second wins term 4.
    c.take_log();
    for _ in 0..2 {
        c.expire_leases(1);
        c.node_mut(1).campaign_now();
        // Drop exactly the appends that would place 4/4 on a follower.
        deliver_except(&mut c, |c, m| match &m.body {
            Body::Append {
                prev_index,
                prev_term,
                entries,
                ..
            } => {
                let accepts = c.nodes[&m.to]
                    .as_ref()
                    .is_some_and(|r| r.term_at(*prev_index) == Some(*prev_term));
                entries.iter().any(|e| e.index == 4) && accepts
            }
            _ => false,
        });
    }
    assert_eq!(c.role(1), Role::Leader, "{}", c.log);
    assert_eq!(c.node(1).status().term, 4);
    let holders = (1..=4).filter(|&id| c.node(id).term_at(3) == Some(2)).count();
    assert!(
        holders >= 3,
        "3/2 should be on a majority (S1, S2, S3), is on {holders}: {}",
        c.log
    );
    assert!(
        c.node(1).status().commit < 3,
        "3/2 must not be committed by counting replicas"
    );
    // (d) S1 crashes; S5 wins term 5 and overwrites index 3 everywhere.
    c.crash(1);
    c.heal();
    c.restart(5);
    c.isolate(1);
    c.elect(5);
    c.stabilize();
    for id in 2..=5 {
        assert_eq!(c.node(id).term_at(3), Some(3), "node {id}");
    }
    assert_applied_agree(&c);
}

/// CheckQuorum: a leader cut off from the majority steps down within an election timeout,
/// so it stops accepting proposals and serving reads.
#[test]
fn stale_leader_under_partition_steps_down() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(1);
    for _ in 0..10 {
        c.tick(1, 1);
        c.stabilize();
    }
    assert_eq!(c.role(1), Role::Follower);
    assert_eq!(c.propose(1, "late"), Err(RaftError::NotLeader { leader: None }));
    // The majority side elects a new leader meanwhile.
    c.elect(2);
    c.heal();
    c.tick(2, 1);
    c.stabilize();
    assert_eq!(c.node(1).status().leader, Some(2));
}

/// PreVote: a node that was partitioned away and rejoins does not raise its term and so
/// cannot depose a healthy leader.
#[test]
fn rejoining_node_does_not_disrupt_leader() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let term = c.node(1).status().term;
    c.isolate(3);
    for _ in 0..50 {
        c.tick(3, 1);
        c.tick(1, 1);
        c.stabilize();
    }
    assert_eq!(c.node(3).status().term, term, "pre-votes must not raise the term");
    c.heal();
    for _ in 0..20 {
        c.tick(3, 1);
        c.tick(1, 1);
        c.tick(2, 1);
        c.stabilize();
    }
    assert_eq!(c.role(1), Role::Leader);
    assert_eq!(c.node(1).status().term, term);
    assert_eq!(c.node(3).status().leader, Some(1));
}

/// A follower holding conflicting entries beyond the snapshot index must drop them all when
/// it installs the snapshot, not just the prefix the snapshot covers.
#[test]
fn install_snapshot_discards_conflicting_suffix() {
    let mut c = Cluster::with(3, None, |cfg| cfg.snapshot_chunk_bytes = 1);
    c.elect(3);
    c.isolate(3);
    for i in 0..6 {
        c.propose(3, &format!("stale{i}")).expect("leader accepts");
    }
    c.stabilize();
    assert_eq!(c.node(3).status().last_index, 8);
    c.elect(1);
    for i in 0..3 {
        c.propose(1, &format!("new{i}")).expect("leader accepts");
    }
    c.stabilize();
    let snap_index = c.compact(1);
    assert!(
        snap_index > 2 && snap_index < 8,
        "snapshot at {snap_index} should fall inside node 3's stale tail"
    );
    c.heal();
    for _ in 0..3 {
        c.tick(1, 1);
        c.stabilize();
    }
    let st = c.node(3).status();
    assert_eq!(
        st.first_index,
        snap_index + 1,
        "node 3 should have installed the snapshot"
    );
    assert_eq!(st.last_index, c.node(1).status().last_index);
    for e in c.node(3).entries_from(0) {
        assert_eq!(
            Some(e.term),
            c.node(1).term_at(e.index),
            "stale entry {} left after snapshot",
            e.index
        );
        if let Payload::Command(d) = &e.payload {
            assert!(!d.starts_with(b"stale"));
        }
    }
}

/// Boards powering up together with the same entropy must still elect a leader: the node id
/// is mixed into the election timer's seed.
#[test]
fn identical_election_seeds_still_elect() {
    for n in [3, 5] {
        let mut c = Cluster::with(n, Some(42), |_| {});
        let mut rounds = 0;
        while c.leader().is_none() {
            for id in 1..=n {
                c.tick(id, 1);
            }
            c.stabilize();
            rounds += 1;
            assert!(
                rounds < 100,
                "{n} nodes with identical seeds tied for {rounds} ticks"
            );
        }
    }
}

/// A granted vote appears only in a Ready that also persists it; after a crash the node
/// remembers it and refuses a second candidate in the same term.
#[test]
fn vote_is_persisted_before_reply_and_survives_restart() {
    let mut c = Cluster::with(3, None, |cfg| cfg.pre_vote = false);
    c.node_mut(1).campaign_now();
    let ready = c.node_mut(1).ready();
    c.node_mut(1).advance();
    let vote_for_2 = ready
        .messages
        .into_iter()
        .find(|m| m.to == 2)
        .expect("vote request to 2");
    c.node_mut(2).step(vote_for_2);
    let ready = c.node_mut(2).ready();
    let granted = ready
        .messages
        .iter()
        .any(|m| matches!(m.body, Body::VoteResponse { granted: true }));
    assert!(granted);
    let hs = ready
        .hard_state
        .clone()
        .expect("the vote must be in the same Ready");
    assert_eq!((hs.term, hs.vote), (2, Some(1)));
    c.disks.get_mut(&2).expect("disk").hard_state = hs;
    c.node_mut(2).advance();
    c.crash(2);
    c.restart(2);
    // Node 3 campaigns in the same term 2; node 2 must refuse.
    c.node_mut(3).campaign_now();
    let ready = c.node_mut(3).ready();
    c.node_mut(3).advance();
    let vote_for_2 = ready
        .messages
        .into_iter()
        .find(|m| m.to == 2)
        .expect("vote request to 2");
    assert_eq!(vote_for_2.term, 2);
    c.node_mut(2).step(vote_for_2);
    let ready = c.node_mut(2).ready();
    assert!(ready
        .messages
        .iter()
        .any(|m| matches!(m.body, Body::VoteResponse { granted: false })));
}

/// The raft core stays pure: no async runtime, no syscalls, no files, no clock.
#[test]
fn raft_core_imports_no_io() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/raft");
    let forbidden = [
        "smol",
        "rustix",
        "std::fs",
        "std::net",
        "std::time",
        "libc::",
        "std::thread",
        "std::io",
    ];
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("src/raft exists") {
        let path = entry.expect("readable dir").path();
        let text = std::fs::read_to_string(&path).expect("readable source");
        for word in forbidden {
            assert!(!text.contains(word), "{} mentions {word}", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 4, "expected the raft sources in {}", dir.display());
}

/// A torn write that stores the hard state but not the entries after it (found by seed 14765):
/// the stored commit index must not cover the stale entries still on disk.
#[test]
fn torn_write_never_leaves_commit_over_stale_entries() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(1);
    c.propose(1, "stale").expect("leader accepts"); // 3/2 on node 1 only
    c.stabilize();
    c.elect(2); // term 3: no-op 3/3
    c.propose(2, "new").expect("leader accepts");
    c.stabilize();
    c.heal();
    c.tick(2, 1);
    // Deliver until node 1 is handed the entries that replace its stale 3/2.
    loop {
        c.flush_all();
        let m = c.queue.pop_front().expect("the leader keeps talking to node 1");
        let replaces = m.to == 1 && matches!(&m.body, Body::Append { entries, .. } if !entries.is_empty());
        if !replaces {
            c.deliver(m);
            continue;
        }
        c.node_mut(1).step(m);
        break;
    }
    let ready = c.node_mut(1).ready();
    assert!(ready.entries.iter().any(|e| e.index == 3 && e.term == 3));
    // Power fails after the hard state record, before the entries.
    if let Some(hs) = ready.hard_state {
        c.disks.get_mut(&1).expect("disk").hard_state = hs;
    }
    c.crash(1);
    c.restart(1);
    let st = c.node(1).status();
    assert!(
        st.commit < 3 || c.node(1).term_at(3) == Some(3),
        "restarted with commit {} over stale entry 3/{:?}",
        st.commit,
        c.node(1).term_at(3)
    );
}
