//! `docker push`: layers as gzip blobs (skipped when the registry has them), the config,
//! then an OCI manifest under the tag.
//!
//! The store keeps layers unpacked, not their original compressed blobs, so a layer blob is
//! made again: the tar rebuilt byte for byte from the unpacked files, gzipped. Nothing is
//! staged on disk: one pass compresses into a hasher to learn the digest and size (needed
//! for the existence check and the upload's Content-Length), a second pass compresses again
//! while uploading. Both run the same code over the same input chunks, so the bytes are
//! identical; the registry checks the digest anyway. Digests are remembered per diff id for
//! the daemon's lifetime, so pushing again skips the first pass.

use super::client::{error_text, Session};
use super::manifest::{Descriptor, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use super::{short_id, Progress, RegistryConfig, RegistryError};
use crate::image::layer::{self, TarRebuilder};
use crate::image::reference::Reference;
use crate::image::store::{hex_of, ImageStore};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Level 1: most of the size gain of gzip at a fraction of its CPU, which matters on boards.
const GZIP_LEVEL: u32 = 1;

/// diff id → (gzip blob digest, size) of layers compressed since the daemon started.
static GZIP_DIGESTS: Mutex<Option<HashMap<String, (String, u64)>>> = Mutex::new(None);

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
    }
    for diff_id in &image.layers {
        let (digest, size) = gzip_digest(diff_id, &store.layer_path(hex_of(diff_id)))?;
        layers.push(Descriptor {
            media_type: OCI_LAYER_GZIP.into(),
            digest,
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
        let gz = GzipStream::open(&store.layer_path(hex_of(diff_id)))?;
        let mut reader = Counting {
            inner: gz,
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
    let repo_digest = format!("{}@{digest}", reference.familiar_repository());
    if let Err(e) = store.add_repo_digest(&local, &repo_digest) {
        log::warn!("recording {repo_digest}: {e}");
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

/// The gzip blob digest and size of a layer, computed once per daemon run.
fn gzip_digest(diff_id: &str, dir: &Path) -> io::Result<(String, u64)> {
    if let Some(known) = GZIP_DIGESTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|m| m.get(diff_id).cloned())
    {
        return Ok(known);
    }
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut gz = GzipStream::open(dir)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = gz.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let result = (layer::digest_string(hasher), size);
    GZIP_DIGESTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(diff_id.to_string(), result.clone());
    Ok(result)
}

/// A layer's tar rebuilt and gzipped as a reader. The input is fed to the encoder in fixed
/// chunks, so two streams over the same layer yield the same bytes.
struct GzipStream {
    source: TarRebuilder,
    encoder: Option<GzEncoder<Vec<u8>>>,
    out: Vec<u8>,
    served: usize,
    chunk: Vec<u8>,
}

impl GzipStream {
    fn open(dir: &Path) -> io::Result<GzipStream> {
        Ok(GzipStream {
            source: TarRebuilder::open(dir)?,
            encoder: Some(GzEncoder::new(Vec::new(), Compression::new(GZIP_LEVEL))),
            out: Vec::new(),
            served: 0,
            chunk: vec![0u8; 64 * 1024],
        })
    }
}

impl Read for GzipStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.served == self.out.len() {
            let Some(encoder) = self.encoder.as_mut() else {
                return Ok(0);
            };
            self.out.clear();
            self.served = 0;
            let n = self.source.read(&mut self.chunk)?;
            if n == 0 {
                if let Some(encoder) = self.encoder.take() {
                    self.out = encoder.finish()?;
                }
            } else {
                encoder.write_all(&self.chunk[..n])?;
                self.out.append(encoder.get_mut());
            }
        }
        let n = buf.len().min(self.out.len() - self.served);
        buf[..n].copy_from_slice(&self.out[self.served..self.served + n]);
        self.served += n;
        Ok(n)
    }
}
