//! Deterministic simulation of the raft core, plus named regressions and scenario scripts.
//!
//! `SHOAL_RAFT_SEEDS=N` runs N seeds (default 2000); `SHOAL_RAFT_SEED=S` replays one seed;
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
            (0, n)
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
