//! shoal: Docker Engine, Compose and a small Swarm for little Linux boards, in one binary.
//!
//! The folders are the layers (see the README's picture):
//! pure logic (`wire`, `raft`, `compose`, `swarm`) does no I/O and takes time as an argument;
//! drivers (`daemon`, `runtime`, `image`, `net`, `cluster`, `admin`) do the I/O; `sys` is the
//! one narrow seam to the kernel for mounts, namespaces and cgroups.

pub mod admin;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod compose;
pub mod daemon;
pub mod image;
pub mod init;
pub mod net;
pub mod raft;
pub mod runtime;
pub mod sort;
pub mod storage;
pub mod sys;
pub mod timefmt;
pub mod wire;
