//! The Docker Engine API: routes, JSON types, streams, hijack; and the HTTP client.

pub mod client;
