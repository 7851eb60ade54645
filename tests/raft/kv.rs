//! The replicated workload: a key-value map of small keys to unique values.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Command {
    pub op_id: u64,
    pub key: u8,
    pub value: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Kv {
    pub map: BTreeMap<u8, u64>,
}

impl Kv {
    /// Apply an encoded command; returns its op id.
    pub fn apply(&mut self, data: &[u8]) -> Option<u64> {
        let cmd: Command = postcard::from_bytes(data).ok()?;
        self.map.insert(cmd.key, cmd.value);
        Some(cmd.op_id)
    }

    pub fn get(&self, key: u8) -> Option<u64> {
        self.map.get(&key).copied()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a map of integers encodes")
    }

    pub fn from_bytes(data: &[u8]) -> Kv {
        postcard::from_bytes(data).expect("snapshots hold a valid map")
    }
}
