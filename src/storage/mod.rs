//! Durable state on disk. Power can be cut at any instant: every state file is written
//! temp → fsync → rename → fsync(dir), so a reader sees the old file or the new one, never a
//! mix. An fsync error is returned to the caller, who must treat it as fatal for that write
//! (it is never retried: after a failed fsync the page cache may already have dropped the data).

pub mod atomic;
