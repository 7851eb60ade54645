//! Pure codecs: bytes ⇄ typed values, no I/O.
//!
//! Every parser here takes untrusted bytes and returns an error, never a panic, on any input;
//! every emitter produces bytes its parser accepts. Modules under `wire` use no smol, no
//! rustix and no `std::fs` (a test in `tests/net_wire_purity.rs` enforces it).

pub mod dhcp;
pub mod dns;
pub mod netlink;
pub mod nftables;
