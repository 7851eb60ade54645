//! A Wing & Gong linearizability checker for a key-value register history, with Lowe's
//! memoization of (linearized set, state). Keys are checked independently (linearizability
//! is local, Herlihy & Wing §3.5).
//!
//! A write whose outcome is unknown (its client timed out) has no return time: it may take
//! effect at any point after its call, or never.

use std::collections::{BTreeMap, HashSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Put(u64),
    /// A read and the value it returned.
    Get(Option<u64>),
}

#[derive(Clone, Debug)]
pub struct Op {
    pub client: u64,
    pub key: u8,
    pub kind: OpKind,
    pub call: u64,
    /// `None`: the outcome is unknown.
    pub ret: Option<u64>,
}

/// `Err` names the first key whose history has no linearization.
pub fn check(history: &[Op]) -> Result<(), String> {
    let mut by_key: BTreeMap<u8, Vec<Op>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key).or_default().push(op.clone());
    }
    for (key, mut ops) in by_key {
        ops.sort_by_key(|op| op.call);
        if !check_register(&ops) {
            let lines: Vec<String> = ops
                .iter()
                .map(|o| {
                    format!(
                        "  client {} {:?} call {} ret {:?}",
                        o.client, o.kind, o.call, o.ret
                    )
                })
                .collect();
            return Err(format!(
                "key {key}: history is not linearizable:\n{}",
                lines.join("\n")
            ));
        }
    }
    Ok(())
}

fn check_register(ops: &[Op]) -> bool {
    let words = ops.len().div_ceil(64);
    let mut seen: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    let mut done = vec![0u64; words];
    search(ops, &mut done, None, &mut seen)
}

fn is_done(done: &[u64], i: usize) -> bool {
    done[i / 64] & (1 << (i % 64)) != 0
}

fn search(
    ops: &[Op],
    done: &mut Vec<u64>,
    state: Option<u64>,
    seen: &mut HashSet<(Vec<u64>, Option<u64>)>,
) -> bool {
    // The earliest return among pending ops bounds which ops may go next.
    let mut min_ret = u64::MAX;
    let mut all_done = true;
    for (i, op) in ops.iter().enumerate() {
        if is_done(done, i) {
            continue;
        }
        if op.ret.is_some() {
            all_done = false;
        }
        min_ret = min_ret.min(op.ret.unwrap_or(u64::MAX));
    }
    if all_done {
        // What remains are writes of unknown outcome: they may never have happened.
        return true;
    }
    for (i, op) in ops.iter().enumerate() {
        if op.call > min_ret {
            break;
        }
        if is_done(done, i) {
            continue;
        }
        let next = match op.kind {
            OpKind::Put(v) => Some(v),
            OpKind::Get(v) if v == state => state,
            OpKind::Get(_) => continue,
        };
        done[i / 64] |= 1 << (i % 64);
        if seen.insert((done.clone(), next)) && search(ops, done, next, seen) {
            return true;
        }
        done[i / 64] &= !(1 << (i % 64));
    }
    false
}
