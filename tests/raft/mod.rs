//! Test support for the raft core: a seeded simulator, a KV workload, a linearizability
//! checker, and a hand-driven cluster for regression and scenario tests.
#![allow(dead_code)]

pub mod harness;
pub mod kv;
pub mod linearizability;
pub mod rng;
pub mod scenario;
pub mod sim;
