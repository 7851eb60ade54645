//! `docker push`: layers as blobs (skipped when the registry has them), the config, then an
//! OCI manifest under the tag.
//!
//! The store keeps layers unpacked, not their original compressed blobs, so a layer is sent
//! as the uncompressed tar rebuilt byte for byte from the unpacked files (its digest is the
//! diff id, known before upload, so the existence check works and nothing is staged on
//! disk). That trades bandwidth for flash and CPU: no temporary compressed copy.

use super::client::{error_text, Session};
use super::manifest::{Descriptor, OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST};
use super::{short_id, Progress, RegistryConfig, RegistryError};
use crate::image::layer::{self, TarRebuilder};
use crate::image::reference::Reference;
use crate::image::store::{hex_of, ImageStore};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::time::{Duration, Instant};

/// Push the local image tagged `reference` (which names the registry and repository).
/// Returns the manifest digest.
pub fn push(
    store: &ImageStore,
    config: &RegistryConfig,
    reference: &Reference,
    creds: Option<super::auth::Credentials>,
    progress: Progress<'_>,
) -> Result<String, RegistryError> {
    let tag = reference.tag.clone().unwrap_or_else(|| "latest".into());
    let local = format!("{}:{tag}", reference.familiar_repository());
    let image = store.resolve(&local).map_err(|_| {
        RegistryError::new(
            404,
            format!(
                "An image does not exist locally with the tag: {}",
                reference.familiar_repository()
            ),
        )
    })?;
    let config_bytes = std::fs::read(store.config_path(hex_of(&image.id)))?;
    let session = Session::open(config, &reference.registry, &reference.path, creds, true)?;
    progress(
        json!({ "status": format!("The push refers to repository [{}]", reference.familiar_repository()) }),
    );
    let mut layers = Vec::new();
    for diff_id in &image.layers {
        progress(json!({ "status": "Preparing", "progressDetail": {}, "id": short_id(diff_id) }));
        let dir = store.layer_path(hex_of(diff_id));
        let size = TarRebuilder::open(&dir)?.tar_size();
        layers.push(Descriptor {
            media_type: OCI_LAYER_TAR.into(),
            digest: diff_id.clone(),
            size,
            ..Default::default()
        });
    }
    for (desc, diff_id) in layers.iter().zip(&image.layers).rev() {
        let id = short_id(diff_id);
        if blob_exists(&session, &desc.digest)? {
            progress(json!({ "status": "Layer already exists", "progressDetail": {}, "id": id }));
            continue;
        }
        let rebuilder = TarRebuilder::open(&store.layer_path(hex_of(diff_id)))?;
        let mut reader = Counting {
            inner: rebuilder,
            sent: 0,
            total: desc.size,
            id: &id,
            progress,
            last: Instant::now(),
        };
        upload(&session, &desc.digest, desc.size, &mut reader)?;
        progress(json!({ "status": "Pushed", "progressDetail": {}, "id": id }));
    }
    let config_digest = layer::digest_string(Sha256::new_with_prefix(&config_bytes));
    if !blob_exists(&session, &config_digest)? {
        upload(
            &session,
            &config_digest,
            config_bytes.len() as u64,
            &mut io::Cursor::new(&config_bytes),
        )?;
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config_digest, "size": config_bytes.len() },
        "layers": layers,
    });
    let body = serde_json::to_vec(&manifest).map_err(|e| RegistryError::internal(e.to_string()))?;
    let digest = layer::digest_string(Sha256::new_with_prefix(&body));
    let url = session.url(&format!("/v2/{}/manifests/{tag}", session.repo));
    let mut resp = session.call("PUT", &url, &[("Content-Type", OCI_MANIFEST)], Some(&body))?;
    if !resp.status().is_success() {
        let text = error_text(&mut resp);
        return Err(RegistryError::new(500, format!("uploading the manifest: {text}")));
    }
    progress(json!({ "status": format!("{tag}: digest: {digest} size: {}", body.len()) }));
    progress(json!({ "progressDetail": {}, "aux": { "Tag": tag, "Digest": digest, "Size": body.len() } }));
    Ok(digest)
}

fn blob_exists(session: &Session, digest: &str) -> Result<bool, RegistryError> {
    let url = session.url(&format!("/v2/{}/blobs/{digest}", session.repo));
    let mut resp = session.call("HEAD", &url, &[], None)?;
    match resp.status().as_u16() {
        200 => Ok(true),
        404 => Ok(false),
        s => Err(RegistryError::new(
            500,
            format!("checking blob {digest}: HTTP {s}: {}", error_text(&mut resp)),
        )),
    }
}

/// POST to open an upload, then one PUT with the whole blob and its digest (monolithic).
fn upload(session: &Session, digest: &str, size: u64, body: &mut dyn Read) -> Result<(), RegistryError> {
    let start = session.url(&format!("/v2/{}/blobs/uploads/", session.repo));
    let mut resp = session.call("POST", &start, &[], Some(b""))?;
    if resp.status() != 202 {
        let text = error_text(&mut resp);
        return Err(RegistryError::new(
            if resp.status() == 401 || resp.status() == 403 {
                401
            } else {
                500
            },
            format!("starting the upload of {digest}: {text}"),
        ));
    }
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            RegistryError::internal(format!("upload of {digest}: no Location from the registry"))
        })?;
    let mut url = super::client::resolve_url(&start, location);
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(&format!("digest={}", super::client::query_escape(digest)));
    let mut resp = session.send_stream(
        "PUT",
        &url,
        &[("Content-Type", "application/octet-stream")],
        body,
        size,
    )?;
    if resp.status() != 201 {
        let text = error_text(&mut resp);
        return Err(RegistryError::new(500, format!("uploading {digest}: {text}")));
    }
    Ok(())
}

/// Counts bytes going out for `Pushing` progress.
struct Counting<'a, R> {
    inner: R,
    sent: u64,
    total: u64,
    id: &'a str,
    progress: Progress<'a>,
    last: Instant,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent += n as u64;
        if self.last.elapsed() >= Duration::from_millis(200) {
            self.last = Instant::now();
            (self.progress)(json!({
                "status": "Pushing",
                "progressDetail": { "current": self.sent, "total": self.total },
                "id": self.id,
            }));
        }
        Ok(n)
    }
}
