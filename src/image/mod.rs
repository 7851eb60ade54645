//! Images: the local content store, `docker save` and OCI image-layout archives, layers.
//!
//! On disk, under `<state root>/image`:
//!
//! ```text
//! images/<id hex>.json        config blob, byte for byte (its sha256 is the image ID)
//! layers/<diff id hex>/fs     the layer unpacked once, shared by every image using it
//! layers/<diff id hex>/…      layer.json (sizes), tar-split.gz (to rebuild the exact tar)
//! repositories.json           tag → image ID, and `repo@digest` → image ID
//! build-cache/<key>           image ID a build step produced (see `build`)
//! build-cache/parents/<id>    image ID a build step started from
//! tmp/                        work in progress; emptied by `ImageStore::open`
//! ```
//!
//! Guarantees (power can be cut at any instant):
//! - A layer directory appears (by one rename out of `tmp/`) only complete, synced, and named
//!   after the digest computed over its content while it streamed in.
//! - An image config is written (atomically) only after all its layers are in place, and a tag
//!   only after its image. So a crash leaves at worst unreferenced layers or temp dirs, which
//!   `open` collects; never a half-written image or tag.
//! - Layer paths never escape their layer directory (see `entry_path`, `layer`).
//!
//! Registry pulls (`registry`) fit the same shape: each blob streams into the unpacker under
//! `tmp/` and is renamed into place once verified; a dropped connection resumes with a Range
//! request into the same unpacker, so no blob is ever stored whole.

mod archive;
pub mod build;
pub mod commit;
pub mod config;
pub mod entry_path;
mod error;
pub mod layer;
pub mod list_filter;
pub mod reference;
pub mod registry;
mod store;

pub use config::{ConfigFile, History, ImageConfig};
pub use error::ImageError;
pub use reference::Reference;
pub use store::ImageStore;

use serde::Serialize;
use std::collections::BTreeMap;

/// One image as the daemon sees it.
#[derive(Debug, Clone)]
pub struct Image {
    /// `sha256:<64 hex>`.
    pub id: String,
    /// Familiar `repo:tag` names, sorted.
    pub repo_tags: Vec<String>,
    /// Familiar `repo@sha256:…` names a registry knows the image by, sorted.
    pub repo_digests: Vec<String>,
    pub config: ImageConfig,
    /// RFC 3339, as in the config blob ("" if the blob has none).
    pub created: String,
    /// Diff ids (`sha256:…`), bottom-most layer first.
    pub layers: Vec<String>,
    /// Bytes of file content over all layers.
    pub size: u64,
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
    pub author: String,
    pub comment: String,
    pub history: Vec<History>,
}

/// One row of `GET /images/json`, with Docker's field names.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    pub id: String,
    pub parent_id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    pub size: i64,
    pub shared_size: i64,
    /// Same as `size`; older API versions still read it.
    pub virtual_size: i64,
    pub labels: BTreeMap<String, String>,
    pub containers: i64,
}

/// One line of `DELETE /images/{name}`: `{"Untagged": "busybox:latest"}` or
/// `{"Deleted": "sha256:…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum RemovedItem {
    Untagged(String),
    Deleted(String),
}

/// One row of `GET /images/{name}/history`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryItem {
    /// The image ID for the top row, `<missing>` for the others (as Docker shows them).
    pub id: String,
    pub created: i64,
    pub created_by: String,
    pub tags: Vec<String>,
    pub size: i64,
    pub comment: String,
}
