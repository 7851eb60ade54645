//! Container networking.
pub mod ipam;
pub mod netlink;
pub mod netns;
