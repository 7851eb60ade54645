//! Pulling from and pushing to registries (the OCI distribution spec) on top of the image
//! store: `auth` (credentials, challenges), `client` (TLS, scheme, auth), `manifest`
//! (manifests, indexes, platform choice), `pull`, `push`.

pub mod auth;
mod client;
pub mod manifest;
mod pull;
mod push;
pub mod resolve;

pub use client::RegistryConfig;
pub use pull::{pull, PullRequest};
pub use push::push;

use super::ImageError;
use std::fmt;

/// A pull/push failure with the HTTP status the API answers with before streaming starts.
#[derive(Debug)]
pub struct RegistryError {
    pub status: u16,
    pub message: String,
}

impl RegistryError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        RegistryError {
            status,
            message: message.into(),
        }
    }
    fn unavailable(message: impl Into<String>) -> Self {
        RegistryError::new(500, message)
    }
    fn internal(message: impl Into<String>) -> Self {
        RegistryError::new(500, message)
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RegistryError {}

impl From<ImageError> for RegistryError {
    fn from(e: ImageError) -> Self {
        RegistryError::new(e.http_status(), e.to_string())
    }
}

impl From<std::io::Error> for RegistryError {
    fn from(e: std::io::Error) -> Self {
        RegistryError::new(500, e.to_string())
    }
}

/// Progress messages go to this sink (one JSON object per message, docker's shapes); pulls
/// call it from several download threads.
pub type Progress<'a> = &'a (dyn Fn(serde_json::Value) + Sync);

/// `POST /auth`: check credentials against `server` (a host or URL; empty means Docker Hub).
pub fn login(config: &RegistryConfig, creds: &auth::Credentials) -> Result<(), RegistryError> {
    let host = auth::server_host(&creds.server_address);
    let session = client::Session::open(config, &host, "", Some(creds.clone()), false)?;
    session.check_login()
}

/// The short ID docker shows for a blob: 12 hex digits.
fn short_id(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.chars().take(12).collect()
}
