//! Image archives: `docker save` tars (manifest.json + repositories, layers as
//! `<id>/layer.tar` or `blobs/sha256/<hex>`) and OCI image-layout tars (index.json, blobs), in;
//! `docker save` format out.
//!
//! Loading streams: each layer is unpacked as its tar entry passes by (keyed by the digest of
//! its content, so the manifest that names it may come later); only the small JSON files are
//! held in memory. Nothing is tagged until every layer of an image checks out against its
//! config; layers of a failed load are removed again.

use super::config::ConfigFile;
use super::entry_path;
use super::layer::{self, TarRebuilder, Unpacked};
use super::reference::{is_sha256_hex, Reference};
use super::store::{hex_of, ImageStore};
use super::ImageError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Write};

const MAX_JSON_FILE: u64 = 16 << 20;
const MAX_JSON_TOTAL: u64 = 64 << 20;
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestItem {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct OciManifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// One image found in an archive, ready to commit.
struct Found {
    config: Vec<u8>,
    tags: Vec<String>,
}

/// What the outer tar held: small JSON files by path, unpacked layers by path, symlinks.
#[derive(Default)]
struct Contents {
    files: HashMap<String, Vec<u8>>,
    layers: HashMap<String, Unpacked>,
    links: HashMap<String, String>,
}

impl Contents {
    /// Follow archive-internal symlinks (docker save links duplicate layers).
    fn canonical(&self, path: &str) -> String {
        let mut p = path.to_string();
        for _ in 0..8 {
            match self.links.get(&p) {
                Some(next) => p = next.clone(),
                None => break,
            }
        }
        p
    }

    fn file(&self, path: &str) -> Result<&[u8], ImageError> {
        self.files
            .get(&self.canonical(path))
            .map(Vec::as_slice)
            .ok_or_else(|| ImageError::Invalid(format!("archive lacks {path:?}")))
    }

    fn layer(&self, path: &str) -> Result<&Unpacked, ImageError> {
        self.layers
            .get(&self.canonical(path))
            .ok_or_else(|| ImageError::Invalid(format!("archive lacks layer {path:?}")))
    }

    /// An OCI blob's bytes, checked against its digest.
    fn blob(&self, digest: &str) -> Result<&[u8], ImageError> {
        let hex = blob_hex(digest)?;
        let bytes = self.file(&format!("blobs/sha256/{hex}"))?;
        if sha256_hex(bytes) != hex {
            return Err(ImageError::Invalid(format!(
                "blob {digest} does not match its digest"
            )));
        }
        Ok(bytes)
    }
}

fn blob_hex(digest: &str) -> Result<&str, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if is_sha256_hex(hex) => Ok(hex),
        _ => Err(ImageError::Invalid(format!(
            "unsupported digest {digest:?} (only sha256)"
        ))),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex_of(&layer::digest_string(Sha256::new_with_prefix(data))).to_string()
}

/// True when the first bytes of an entry look like a layer: compressed, a tar header, or the
/// all-zero blocks of an empty tar.
fn looks_like_layer(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (head.len() >= 262 && &head[257..262] == b"ustar")
        || (head.len() == 512 && head.iter().all(|b| *b == 0))
}

fn looks_like_json(head: &[u8]) -> bool {
    matches!(
        head.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{') | Some(b'[')
    )
}

impl ImageStore {
    /// Load a `docker save` or OCI image-layout tar. Returns Docker's progress lines
    /// ("Loaded image: busybox:latest", or "Loaded image ID: sha256:…" for untagged images).
    pub fn load(&self, r: impl Read) -> Result<Vec<String>, ImageError> {
        let mut pins = self.pins();
        let mut contents = Contents::default();
        let mut json_total = 0u64;
        let mut outer = tar::Archive::new(r);
        let bad = |e: io::Error| ImageError::Invalid(format!("image archive: {e}"));
        for entry in outer.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let path = entry_path::normalize(&entry.path_bytes())
                .map_err(|e| ImageError::Invalid(format!("image archive: {e}")))?;
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                let joined = if kind.is_symlink() {
                    let base = path.rsplit_once('/').map_or("", |(d, _)| d);
                    join_lexically(base, &String::from_utf8_lossy(&target))
                } else {
                    entry_path::normalize(&target).ok()
                };
                if let Some(t) = joined {
                    contents.links.insert(path, t);
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let mut head = Vec::with_capacity(512);
            (&mut entry).take(512).read_to_end(&mut head).map_err(bad)?;
            let is_layer_path = path == "layer.tar" || path.ends_with("/layer.tar");
            let blob_digest = path
                .strip_prefix("blobs/sha256/")
                .filter(|h| is_sha256_hex(h))
                .map(|h| format!("sha256:{h}"));
            if is_layer_path || (looks_like_layer(&head) && !looks_like_json(&head)) {
                let stream = io::Cursor::new(head).chain(&mut entry);
                let unpacked = self
                    .ingest_layer(stream, blob_digest.as_deref(), None, &mut pins)
                    .map_err(|e| match e {
                        ImageError::Invalid(m) => ImageError::Invalid(format!("{path}: {m}")),
                        other => other,
                    })?;
                contents.layers.insert(path, unpacked);
            } else if looks_like_json(&head) {
                let size = entry.size();
                json_total += size;
                if size > MAX_JSON_FILE || json_total > MAX_JSON_TOTAL {
                    return Err(ImageError::Invalid(format!(
                        "image archive: {path} is too large for metadata"
                    )));
                }
                let mut bytes = head;
                entry.read_to_end(&mut bytes).map_err(bad)?;
                contents.files.insert(path, bytes);
            }
        }
        let found = if contents.files.contains_key("manifest.json") {
            docker_save_images(&contents)?
        } else if contents.files.contains_key("index.json") {
            oci_layout_images(&contents)?
        } else {
            return Err(ImageError::Invalid(
                "image archive has neither manifest.json (docker save) nor index.json (OCI layout)".into(),
            ));
        };
        let mut lines = Vec::new();
        for image in found {
            let hex = self.commit_image(&image.config, &image.tags)?;
            if image.tags.is_empty() {
                lines.push(format!("Loaded image ID: sha256:{hex}"));
            }
            for t in &image.tags {
                lines.push(format!("Loaded image: {t}"));
            }
        }
        drop(pins);
        Ok(lines)
    }

    /// Write the named images as a `docker save` tar (readable by `docker load` and `load`).
    /// A name that is a tag exports that tag; an ID exports the image untagged.
    pub fn save(&self, names: &[String], w: impl Write) -> Result<(), ImageError> {
        let mut pins = self.pins();
        let mut order: Vec<String> = Vec::new();
        let mut tags: HashMap<String, Vec<String>> = HashMap::new();
        let mut configs: HashMap<String, (Vec<u8>, ConfigFile)> = HashMap::new();
        {
            let mut state = self.lock();
            for name in names {
                let r = self.lookup(&state, name)?;
                if !configs.contains_key(&r.hex) {
                    let path = self.config_path(&r.hex);
                    let bytes = std::fs::read(&path)
                        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
                    let cfg = state.images[&r.hex].clone();
                    for d in &cfg.rootfs.diff_ids {
                        pins.pin(&mut state, hex_of(d));
                    }
                    configs.insert(r.hex.clone(), (bytes, cfg));
                    order.push(r.hex.clone());
                }
                let list = tags.entry(r.hex.clone()).or_default();
                // A `repo@digest` reference names the image but is no tag to save.
                if let Some(t) = r.tag.filter(|t| !t.contains('@')) {
                    if !list.contains(&t) {
                        list.push(t);
                    }
                }
            }
        }
        let mut out = tar::Builder::new(w);
        let mut written: HashSet<String> = HashSet::new();
        let mut manifest = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for hex in &order {
            let (bytes, cfg) = &configs[hex];
            let mut chain: Option<String> = None;
            let mut layer_paths = Vec::new();
            for diff_id in &cfg.rootfs.diff_ids {
                let next = match &chain {
                    None => hex_of(diff_id).to_string(),
                    Some(parent) => sha256_hex(format!("sha256:{parent} {diff_id}").as_bytes()),
                };
                if written.insert(next.clone()) {
                    let v1 = serde_json::json!({ "id": next, "parent": chain.clone().unwrap_or_default() });
                    append_file(&mut out, &format!("{next}/VERSION"), b"1.0")?;
                    append_file(&mut out, &format!("{next}/json"), v1.to_string().as_bytes())?;
                    let rebuilder = TarRebuilder::open(&self.layer_path(hex_of(diff_id)))?;
                    let mut h = file_header(rebuilder.tar_size());
                    out.append_data(&mut h, format!("{next}/layer.tar"), rebuilder)?;
                }
                layer_paths.push(format!("{next}/layer.tar"));
                chain = Some(next);
            }
            append_file(&mut out, &format!("{hex}.json"), bytes)?;
            let image_tags = tags.get(hex).cloned().unwrap_or_default();
            for t in &image_tags {
                if let (Ok(r), Some(top)) = (Reference::parse(t), &chain) {
                    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
                    repositories
                        .entry(r.familiar_repository())
                        .or_default()
                        .insert(tag, top.clone());
                }
            }
            manifest.push(ManifestItem {
                config: format!("{hex}.json"),
                repo_tags: (!image_tags.is_empty()).then_some(image_tags),
                layers: layer_paths,
            });
        }
        let manifest_json = serde_json::to_vec(&manifest).map_err(|e| ImageError::Invalid(e.to_string()))?;
        append_file(&mut out, "manifest.json", &manifest_json)?;
        if !repositories.is_empty() {
            let repos_json =
                serde_json::to_vec(&repositories).map_err(|e| ImageError::Invalid(e.to_string()))?;
            append_file(&mut out, "repositories", &repos_json)?;
        }
        out.into_inner()?.flush()?;
        Ok(())
    }
}

fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_file<W: Write>(out: &mut tar::Builder<W>, path: &str, data: &[u8]) -> io::Result<()> {
    let mut h = file_header(data.len() as u64);
    out.append_data(&mut h, path, data)
}

/// Resolve a symlink target relative to `base` inside the archive; `None` if it leaves it.
fn join_lexically(base: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').filter(|s| !s.is_empty()).collect()
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

fn check_layers(config_name: &str, cfg: &ConfigFile, got: &[String]) -> Result<(), ImageError> {
    let want = &cfg.rootfs.diff_ids;
    if want.len() != got.len() {
        return Err(ImageError::Invalid(format!(
            "image {config_name}: config lists {} layers, the manifest {}",
            want.len(),
            got.len()
        )));
    }
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        if w != g {
            return Err(ImageError::Invalid(format!(
                "image {config_name}: layer {i} has digest {g}, the config expects {w} (corrupt or truncated layer)"
            )));
        }
    }
    Ok(())
}

fn parse_config(name: &str, bytes: &[u8]) -> Result<ConfigFile, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::Invalid(format!("image config {name}: {e}")))
}

fn docker_save_images(c: &Contents) -> Result<Vec<Found>, ImageError> {
    let items: Vec<ManifestItem> = serde_json::from_slice(c.file("manifest.json")?)
        .map_err(|e| ImageError::Invalid(format!("manifest.json: {e}")))?;
    let mut found = Vec::new();
    for item in items {
        let config = c.file(&item.config)?.to_vec();
        let cfg = parse_config(&item.config, &config)?;
        let mut got = Vec::new();
        for l in &item.layers {
            got.push(c.layer(l)?.meta.diff_id.clone());
        }
        check_layers(&item.config, &cfg, &got)?;
        let mut tags = Vec::new();
        for t in item.repo_tags.unwrap_or_default() {
            tags.push(super::store::tag_name(&t)?);
        }
        found.push(Found { config, tags });
    }
    Ok(found)
}

fn oci_layout_images(c: &Contents) -> Result<Vec<Found>, ImageError> {
    let index: OciIndex = serde_json::from_slice(c.file("index.json")?)
        .map_err(|e| ImageError::Invalid(format!("index.json: {e}")))?;
    let mut found = Vec::new();
    for desc in &index.manifests {
        let tags = match oci_name(&desc.annotations) {
            Some(name) => vec![super::store::tag_name(&name)?],
            None => Vec::new(),
        };
        let manifest_desc = pick_manifest(c, desc, 0)?;
        let manifest: OciManifest = serde_json::from_slice(c.blob(&manifest_desc.digest)?)
            .map_err(|e| ImageError::Invalid(format!("manifest {}: {e}", manifest_desc.digest)))?;
        let config = c.blob(&manifest.config.digest)?.to_vec();
        let cfg = parse_config(&manifest.config.digest, &config)?;
        let mut got = Vec::new();
        for l in &manifest.layers {
            let layer = c.layer(&format!("blobs/sha256/{}", blob_hex(&l.digest)?))?;
            got.push(layer.meta.diff_id.clone());
        }
        check_layers(&manifest.config.digest, &cfg, &got)?;
        found.push(Found { config, tags });
    }
    Ok(found)
}

/// The image name an OCI descriptor carries: containerd's full name, else a ref.name that is
/// a whole reference (a bare tag like "latest" names no repository).
fn oci_name(annotations: &BTreeMap<String, String>) -> Option<String> {
    if let Some(n) = annotations.get(ANNOTATION_CONTAINERD_NAME) {
        return Some(n.clone());
    }
    annotations
        .get(ANNOTATION_REF_NAME)
        .filter(|n| n.contains(':') || n.contains('/'))
        .cloned()
}

/// Follow nested indexes down to an image manifest, choosing this machine's platform.
fn pick_manifest<'a>(c: &'a Contents, desc: &'a Descriptor, depth: usize) -> Result<Descriptor, ImageError> {
    if depth > 4 {
        return Err(ImageError::Invalid("OCI indexes nested too deeply".into()));
    }
    let bytes = c.blob(&desc.digest)?;
    let is_index = desc.media_type.contains("index") || desc.media_type.contains("manifest.list") || {
        let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
        v.get("manifests").is_some()
    };
    if !is_index {
        return Ok(Descriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
            annotations: BTreeMap::new(),
            platform: None,
        });
    }
    let index: OciIndex = serde_json::from_slice(bytes)
        .map_err(|e| ImageError::Invalid(format!("index {}: {e}", desc.digest)))?;
    let (arch, variant) = super::config::host_architecture();
    let matches = |d: &&Descriptor| {
        d.platform.as_ref().is_some_and(|p| {
            p.os == "linux"
                && p.architecture == arch
                && (variant.is_none() || p.variant.is_none() || p.variant.as_deref() == variant)
        })
    };
    let chosen = index
        .manifests
        .iter()
        .find(matches)
        .or_else(|| {
            if index.manifests.len() == 1 {
                index.manifests.first()
            } else {
                None
            }
        })
        .ok_or_else(|| {
            ImageError::Invalid(format!("index {} has no manifest for linux/{arch}", desc.digest))
        })?;
    pick_manifest(c, chosen, depth + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets_resolve_inside_the_archive() {
        assert_eq!(
            join_lexically("abc", "../blobs/sha256/x").as_deref(),
            Some("blobs/sha256/x")
        );
        assert_eq!(join_lexically("", "../x"), None);
        assert_eq!(join_lexically("a/b", "c").as_deref(), Some("a/b/c"));
    }

    #[test]
    fn sniffs_layers_and_json() {
        assert!(looks_like_layer(&[0x1f, 0x8b, 8]));
        assert!(looks_like_layer(&[0u8; 512]));
        assert!(!looks_like_layer(b"{\"a\":1}"));
        assert!(looks_like_json(b"  {\"a\":1}"));
        assert!(!looks_like_json(b"1.0"));
    }

    #[test]
    fn oci_names() {
        let mut a = BTreeMap::new();
        a.insert(ANNOTATION_REF_NAME.to_string(), "latest".to_string());
        assert_eq!(oci_name(&a), None);
        a.insert(ANNOTATION_REF_NAME.to_string(), "example.com/x:1".to_string());
        assert_eq!(oci_name(&a).as_deref(), Some("example.com/x:1"));
        a.insert(
            ANNOTATION_CONTAINERD_NAME.to_string(),
            "docker.io/library/busybox:latest".to_string(),
        );
        assert_eq!(oci_name(&a).as_deref(), Some("docker.io/library/busybox:latest"));
    }
}
