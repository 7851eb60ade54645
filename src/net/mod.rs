//! Container networking.
pub mod dns_server;
pub mod ipam;
pub mod netlink;
pub mod netns;
