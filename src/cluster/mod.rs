//! Drives the pure raft core over real I/O: the write-ahead log on disk, the encrypted
//! transport between peers, and the `shoal raft-node` role that puts them together.

pub mod node;
pub mod transport;
pub mod wal;

pub use node::node_main;
