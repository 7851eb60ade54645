//! Drives the pure raft core over real I/O: the write-ahead log on disk and the encrypted
//! transport between peers.

pub mod transport;
pub mod wal;
