//! Container networking.
pub mod ipam;
