//! Drives the pure raft core over real I/O: the write-ahead log on disk.

pub mod wal;
