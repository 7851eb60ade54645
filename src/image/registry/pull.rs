//! `docker pull`: manifest (an index resolves to this board's platform), config, then the
//! layers streamed straight into the store's unpacker, three at a time.
//!
//! Atomicity comes from the store: a layer is unpacked under `tmp/` and renamed into place
//! only when both its blob digest and its diff id check out; the image config (which is what
//! makes an image visible) is written only after every layer is in place, the tag after it.
//! A pull that dies leaves temp dirs and unreferenced layers, which `ImageStore::open`
//! collects at the next start; a pull that fails drops its pins, which deletes the layers it
//! created. A full disk fails the layer being written; nothing existing is touched.
//!
//! Resuming without a second copy on flash: a blob is never stored whole. It streams
//! through the decompressor and the tar unpacker, which keep their state in memory, so after
//! a dropped connection only the bytes not yet seen are needed: [`BlobReader`] reopens the
//! blob with `Range: bytes=<received>-` and keeps feeding the same unpacker. The digests are
//! computed over the joined stream, so a bad splice fails verification and is never placed.
//! Surviving a daemon restart mid-layer would need the raw prefix on disk (a second copy)
//! or a checkpoint of the inflate state; a restart therefore starts that layer again.

use super::client::{error_text, read_small, Session};
use super::manifest::{self, Descriptor, Parsed, Wanted};
use super::{short_id, Progress, RegistryConfig, RegistryError};
use crate::image::config::ConfigFile;
use crate::image::reference::Reference;
use crate::image::store::{hex_of, ImageStore, Pins};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

const MAX_MANIFEST: u64 = 4 << 20;
const MAX_CONFIG: u64 = 16 << 20;
/// Parallel layer downloads (docker's default).
const PARALLEL_LAYERS: usize = 3;
/// Reconnects in a row without receiving a byte before a blob download gives up.
const MAX_RESUMES: u32 = 8;

/// What to pull and how.
pub struct PullRequest<'a> {
    pub reference: &'a Reference,
    pub platform: Option<Wanted>,
    pub creds: Option<super::auth::Credentials>,
}

/// Pull `req.reference` into `store`; returns the image ID. `progress` gets docker's messages.
pub fn pull(
    store: &ImageStore,
    config: &RegistryConfig,
    req: PullRequest<'_>,
    progress: Progress<'_>,
) -> Result<String, RegistryError> {
    let reference = req.reference;
    let session = Session::open(config, &reference.registry, &reference.path, req.creds, false)?;
    let target = reference
        .digest
        .clone()
        .or_else(|| reference.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let (bytes, ctype, top_digest) = get_manifest(&session, reference, &target)?;
    let (config_desc, layers) =
        match manifest::parse(&bytes, &ctype).map_err(|e| RegistryError::new(500, e))? {
            Parsed::Image { config, layers } => (config, layers),
            Parsed::Index(list) => {
                let want = req.platform.clone().unwrap_or_else(Wanted::host);
                let chosen = manifest::select(&list, &want).ok_or_else(|| {
                    RegistryError::new(
                        404,
                        format!("no matching manifest for {want} in the manifest list entries"),
                    )
                })?;
                let (bytes, ctype, _) = get_manifest(&session, reference, &chosen.digest)?;
                match manifest::parse(&bytes, &ctype).map_err(|e| RegistryError::new(500, e))? {
                    Parsed::Image { config, layers } => (config, layers),
                    Parsed::Index(_) => {
                        return Err(RegistryError::new(
                            500,
                            format!("{}: an index inside an index", chosen.digest),
                        ))
                    }
                }
            }
        };
    progress(json!({ "status": format!("Pulling from {}", reference.path), "id": target }));
    let config_bytes = get_small_blob(&session, &config_desc, MAX_CONFIG)?;
    let cfg: ConfigFile = serde_json::from_slice(&config_bytes)
        .map_err(|e| RegistryError::new(500, format!("image config {}: {e}", config_desc.digest)))?;
    if cfg.rootfs.diff_ids.len() != layers.len() {
        return Err(RegistryError::new(
            500,
            format!(
                "manifest lists {} layers but the image config has {} diff ids",
                layers.len(),
                cfg.rootfs.diff_ids.len()
            ),
        ));
    }
    if let Some(want) = &req.platform {
        if cfg.architecture != want.architecture {
            log::warn!(
                "{reference}: image is for {}/{}, not the requested {want}",
                cfg.os,
                cfg.architecture
            );
        }
    }
    let id_hex = hex_of(&config_desc.digest).to_string();
    let tag = reference
        .digest
        .is_none()
        .then(|| reference.familiar_tagged())
        .flatten();
    let was_current = {
        let state = store.lock();
        state.images.contains_key(&id_hex) && tag.as_ref().is_none_or(|t| state.tags.get(t) == Some(&id_hex))
    };

    for l in &layers {
        if !l.urls.is_empty() || l.media_type.contains("foreign") {
            return Err(RegistryError::new(
                500,
                format!(
                    "layer {} is a foreign layer, which shoal does not fetch",
                    l.digest
                ),
            ));
        }
        progress(json!({ "status": "Pulling fs layer", "progressDetail": {}, "id": short_id(&l.digest) }));
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Result<Pins<'_>, RegistryError>>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL_LAYERS.min(layers.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(desc) = layers.get(i) else { break };
                let r = fetch_layer(store, &session, desc, &cfg.rootfs.diff_ids[i], progress);
                let failed = r.is_err();
                results.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                if failed {
                    // Stop handing out layers; the others finish what they started.
                    next.store(usize::MAX / 2, Ordering::Relaxed);
                }
            });
        }
    });
    let mut pins = Vec::new();
    for r in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
        pins.push(r?);
    }
    let tags: Vec<String> = tag.iter().cloned().collect();
    // What `images --digests` shows: the digest of what the tag pointed to (the index for a
    // multi-platform image), so `pull repo@digest` finds this image again.
    let repo_digest = format!("{}@{top_digest}", reference.familiar_repository());
    let hex = store.commit_image_refs(&config_bytes, &tags, &[repo_digest])?;
    drop(pins);
    progress(json!({ "status": format!("Digest: {top_digest}") }));
    let shown = tag.unwrap_or_else(|| reference.to_string());
    progress(json!({
        "status": if was_current {
            format!("Status: Image is up to date for {shown}")
        } else {
            format!("Status: Downloaded newer image for {shown}")
        }
    }));
    Ok(format!("sha256:{hex}"))
}

/// GET a manifest by tag or digest; returns (bytes, content type, digest). A digest
/// reference is verified against the bytes.
fn get_manifest(
    session: &Session,
    reference: &Reference,
    target: &str,
) -> Result<(Vec<u8>, String, String), RegistryError> {
    let url = session.url(&format!("/v2/{}/manifests/{target}", session.repo));
    let mut resp = session.call("GET", &url, &[("Accept", manifest::ACCEPT)], None)?;
    match resp.status().as_u16() {
        200 => {}
        401 | 403 | 404 => {
            let text = error_text(&mut resp);
            // docker's wording: a missing tag in a repository that exists vs. a repository
            // that is missing or private.
            let message = if text.starts_with("manifest unknown") {
                format!("manifest for {reference} not found: {text}")
            } else {
                format!(
                    "pull access denied for {}, repository does not exist or may require 'docker login': {text}",
                    reference.familiar_repository()
                )
            };
            return Err(RegistryError::new(404, message));
        }
        s => {
            let text = error_text(&mut resp);
            return Err(RegistryError::new(
                500,
                format!("manifest {target}: HTTP {s}: {text}"),
            ));
        }
    }
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = read_small(&mut resp, MAX_MANIFEST)?;
    let digest = sha256_digest(&bytes);
    if target.starts_with("sha256:") && digest != target {
        return Err(RegistryError::new(
            500,
            format!("manifest verification failed for digest {target} (got {digest})"),
        ));
    }
    Ok((bytes, ctype, digest))
}

fn sha256_digest(bytes: &[u8]) -> String {
    crate::image::layer::digest_string(Sha256::new_with_prefix(bytes))
}

fn get_small_blob(session: &Session, desc: &Descriptor, limit: u64) -> Result<Vec<u8>, RegistryError> {
    let url = session.url(&format!("/v2/{}/blobs/{}", session.repo, desc.digest));
    let mut resp = session.get_following(&url, &[])?;
    if resp.status() != 200 {
        let text = error_text(&mut resp);
        return Err(RegistryError::new(500, format!("blob {}: {text}", desc.digest)));
    }
    let bytes = read_small(&mut resp, limit)?;
    if sha256_digest(&bytes) != desc.digest {
        return Err(RegistryError::new(
            500,
            format!("blob {} does not match its digest", desc.digest),
        ));
    }
    Ok(bytes)
}

/// Blobs being downloaded by some pull right now: a second pull of the same layer waits for
/// the first instead of downloading it again.
static IN_FLIGHT: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
static IN_FLIGHT_DONE: Condvar = Condvar::new();

struct Claim(String);

impl Claim {
    /// Wait until no other pull holds `digest` (calling `on_wait` if one does), then hold it.
    fn take(digest: &str, on_wait: impl FnOnce()) -> Claim {
        let busy = IN_FLIGHT
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(digest);
        if busy {
            // Outside the lock: reporting writes to a client that may be slow.
            on_wait();
        }
        let mut set = IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
        while set.contains(digest) {
            set = IN_FLIGHT_DONE.wait(set).unwrap_or_else(|p| p.into_inner());
        }
        set.insert(digest.to_string());
        Claim(digest.to_string())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        IN_FLIGHT
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.0);
        IN_FLIGHT_DONE.notify_all();
    }
}

fn fetch_layer<'s>(
    store: &'s ImageStore,
    session: &Session,
    desc: &Descriptor,
    diff_id: &str,
    progress: Progress<'_>,
) -> Result<Pins<'s>, RegistryError> {
    let id = short_id(&desc.digest);
    let mut pins = store.pins();
    let present = |pins: &mut Pins<'s>| {
        let mut state = store.lock();
        let have = state.layers.contains_key(hex_of(diff_id));
        if have {
            pins.pin(&mut state, hex_of(diff_id));
        }
        have
    };
    if present(&mut pins) {
        progress(json!({ "status": "Already exists", "progressDetail": {}, "id": id }));
        return Ok(pins);
    }
    let claim = Claim::take(&desc.digest, || {
        progress(json!({ "status": "Waiting", "progressDetail": {}, "id": id }))
    });
    // Another pull may have placed it meanwhile (it had the claim, or finished just before).
    if present(&mut pins) {
        progress(json!({ "status": "Download complete", "progressDetail": {}, "id": id }));
        progress(json!({ "status": "Pull complete", "progressDetail": {}, "id": id }));
        return Ok(pins);
    }
    let reader = BlobReader {
        session,
        digest: &desc.digest,
        size: desc.size,
        offset: 0,
        body: None,
        resumes: 0,
        id: &id,
        progress,
        last_report: Instant::now(),
    };
    store
        .ingest_layer(reader, Some(&desc.digest), Some(diff_id), &mut pins)
        .map_err(|e| RegistryError::new(500, format!("layer {}: {e}", desc.digest)))?;
    drop(claim);
    progress(json!({ "status": "Verifying Checksum", "progressDetail": {}, "id": id }));
    progress(json!({ "status": "Download complete", "progressDetail": {}, "id": id }));
    progress(json!({ "status": "Pull complete", "progressDetail": {}, "id": id }));
    Ok(pins)
}

/// A blob as one stream that survives dropped connections by reopening with a Range request
/// at the first byte not yet received.
struct BlobReader<'a> {
    session: &'a Session,
    digest: &'a str,
    size: u64,
    offset: u64,
    body: Option<Box<dyn Read + Send>>,
    resumes: u32,
    id: &'a str,
    progress: Progress<'a>,
    last_report: Instant,
}

impl BlobReader<'_> {
    fn open(&mut self) -> io::Result<()> {
        let url = self
            .session
            .url(&format!("/v2/{}/blobs/{}", self.session.repo, self.digest));
        let range = format!("bytes={}-", self.offset);
        let headers: &[(&str, &str)] = if self.offset > 0 {
            &[("Range", &range)]
        } else {
            &[]
        };
        if self.offset > 0 {
            log::info!("resuming blob {} at byte {}", self.digest, self.offset);
        }
        let mut resp = self
            .session
            .get_following(&url, headers)
            .map_err(io::Error::other)?;
        let status = resp.status().as_u16();
        if status != 200 && status != 206 {
            let text = error_text(&mut resp);
            return Err(io::Error::other(format!(
                "GET blob {}: HTTP {status}: {text}",
                self.digest
            )));
        }
        let mut reader: Box<dyn Read + Send> = Box::new(resp.into_body().into_reader());
        if status == 200 && self.offset > 0 {
            // The registry ignored Range: skip what the unpacker already has.
            let skipped = io::copy(&mut (&mut reader).take(self.offset), &mut io::sink())?;
            if skipped != self.offset {
                return Err(io::Error::other("blob ended before the resume point"));
            }
        }
        self.body = Some(reader);
        Ok(())
    }

    fn report(&mut self, force: bool) {
        if force || self.last_report.elapsed() >= Duration::from_millis(200) {
            self.last_report = Instant::now();
            (self.progress)(json!({
                "status": "Downloading",
                "progressDetail": { "current": self.offset, "total": self.size },
                "id": self.id,
            }));
        }
    }

    /// Decide whether to reconnect after `err`.
    fn retry(&mut self, err: io::Error) -> io::Result<()> {
        self.body = None;
        self.resumes += 1;
        if self.resumes > MAX_RESUMES {
            return Err(io::Error::new(
                err.kind(),
                format!(
                    "download of {} failed at byte {} after {MAX_RESUMES} attempts in a row: {err}",
                    self.digest, self.offset
                ),
            ));
        }
        log::warn!(
            "blob {}: connection lost after {} of {} bytes ({err}); resuming",
            self.digest,
            self.offset,
            self.size
        );
        std::thread::sleep(Duration::from_millis(100 << self.resumes.min(5)));
        Ok(())
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.body.is_none() {
                if let Err(e) = self.open() {
                    self.retry(e)?;
                    continue;
                }
            }
            let Some(body) = self.body.as_mut() else { continue };
            match body.read(buf) {
                Ok(0) if self.offset >= self.size => {
                    self.report(true);
                    return Ok(0);
                }
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed early");
                    self.retry(e)?;
                }
                Ok(n) => {
                    self.offset += n as u64;
                    // Progress was made: the budget is for failures in a row.
                    self.resumes = 0;
                    if self.offset > self.size {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "blob {} is longer than the {} bytes its descriptor says",
                                self.digest, self.size
                            ),
                        ));
                    }
                    self.report(false);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.retry(e)?,
            }
        }
    }
}
