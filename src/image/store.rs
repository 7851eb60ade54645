//! The image store: images, tags and shared layers under one directory, safe to use from
//! several threads (metadata changes are serialised by one lock; unpacking runs outside it).

use super::config::{self, ConfigFile, ImageConfig};
use super::layer::{self, LayerMeta, Unpacked};
use super::reference::Reference;
use super::{HistoryItem, Image, ImageError, ImageSummary, RemovedItem};
use crate::storage::atomic;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

const IMAGES_DIR: &str = "images";
const LAYERS_DIR: &str = "layers";
const TMP_DIR: &str = "tmp";
const REPOSITORIES_FILE: &str = "repositories.json";

pub struct ImageStore {
    root: PathBuf,
    state: Mutex<State>,
    temp_counter: AtomicU64,
}

// The daemon shares one store between its request threads.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<ImageStore>();
};

#[derive(Default)]
pub(super) struct State {
    /// id hex → parsed config.
    pub(super) images: BTreeMap<String, ConfigFile>,
    /// familiar `repo:tag` → id hex.
    pub(super) tags: BTreeMap<String, String>,
    /// familiar `repo@sha256:…` (the manifest digest a registry knows the image by) → id hex.
    pub(super) digests: BTreeMap<String, String>,
    /// diff id hex → content size.
    pub(super) layers: HashMap<String, u64>,
    /// diff id hex → number of operations relying on the layer before an image references it.
    pins: HashMap<String, usize>,
}

#[derive(Serialize, Deserialize, Default)]
struct RepositoriesFile {
    tags: BTreeMap<String, String>,
    /// Absent in stores written before digests were recorded.
    #[serde(default)]
    digests: BTreeMap<String, String>,
}

/// How a name resolved: the image, and the reference (`repo:tag` or `repo@digest`) if the
/// name was one.
pub(super) struct Resolved {
    pub(super) hex: String,
    pub(super) tag: Option<String>,
}

pub(super) fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn sha256_hex(data: &[u8]) -> String {
    let d = layer::digest_string(Sha256::new_with_prefix(data));
    d["sha256:".len()..].to_string()
}

impl ImageStore {
    /// Open (creating) the store at `root`, removing what a crash may have left: temp dirs,
    /// temp files of atomic writes, layers no image uses, tags of missing images.
    pub fn open(root: &Path) -> io::Result<ImageStore> {
        // Absolute, so that syncing the parent of a relative root ("") cannot fail.
        let root = &std::path::absolute(root)?;
        for dir in [
            root.to_path_buf(),
            root.join(IMAGES_DIR),
            root.join(LAYERS_DIR),
            root.join(TMP_DIR),
        ] {
            atomic::create_dir_all(&dir)?;
        }
        let tmp = root.join(TMP_DIR);
        for entry in read_dir(&tmp)? {
            remove_any(&entry.path())?;
        }
        let mut state = State::default();
        for entry in read_dir(&root.join(IMAGES_DIR))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let hex = name
                .strip_suffix(".json")
                .filter(|h| super::reference::is_sha256_hex(h));
            let Some(hex) = hex else {
                // Temp files of an interrupted atomic write.
                remove_any(&path)?;
                continue;
            };
            let bytes =
                fs::read(&path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            if sha256_hex(&bytes) != hex {
                log::warn!(
                    "{}: content does not match its digest; ignoring the image",
                    path.display()
                );
                continue;
            }
            match serde_json::from_slice::<ConfigFile>(&bytes) {
                Ok(cfg) => {
                    state.images.insert(hex.to_string(), cfg);
                }
                Err(e) => log::warn!(
                    "{}: unreadable image config ({e}); ignoring the image",
                    path.display()
                ),
            }
        }
        for entry in read_dir(&root.join(LAYERS_DIR))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta_path = entry.path().join(layer::META_FILE);
            match atomic::read_json::<LayerMeta>(&meta_path) {
                Ok(meta) if super::reference::is_sha256_hex(&name) && hex_of(&meta.diff_id) == name => {
                    state.layers.insert(name, meta.size);
                }
                _ => {
                    log::warn!("{}: not a complete layer; removing it", entry.path().display());
                    remove_any(&entry.path())?;
                }
            }
        }
        let repos_path = root.join(REPOSITORIES_FILE);
        let repos: RepositoriesFile = if repos_path.exists() {
            atomic::read_json(&repos_path)?
        } else {
            RepositoriesFile::default()
        };
        let store = ImageStore {
            root: root.to_path_buf(),
            state: Mutex::new(State::default()),
            temp_counter: AtomicU64::new(0),
        };
        state.tags = repos.tags.clone();
        state
            .tags
            .retain(|_, hex| state.images.contains_key(hex.as_str()));
        state.digests = repos.digests.clone();
        state
            .digests
            .retain(|_, hex| state.images.contains_key(hex.as_str()));
        if state.tags != repos.tags || state.digests != repos.digests {
            store.write_refs(&state.tags, &state.digests)?;
        }
        let mut unused: Vec<String> = state
            .layers
            .keys()
            .filter(|hex| !state.images.values().any(|c| uses_layer(c, hex)))
            .cloned()
            .collect();
        unused.sort();
        for hex in unused {
            store.delete_layer(&mut state, &hex)?;
        }
        for (hex, cfg) in &state.images {
            if let Some(missing) = cfg
                .rootfs
                .diff_ids
                .iter()
                .find(|d| !state.layers.contains_key(hex_of(d)))
            {
                log::warn!("image sha256:{hex} lacks layer {missing}; it cannot run until loaded again");
            }
        }
        *store.lock() = state;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves State consistent with disk (every change is
        // written before the in-memory map is updated), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn layer_path(&self, hex: &str) -> PathBuf {
        self.root.join(LAYERS_DIR).join(hex)
    }

    pub(super) fn config_path(&self, hex: &str) -> PathBuf {
        self.root.join(IMAGES_DIR).join(format!("{hex}.json"))
    }

    fn new_temp_dir(&self, kind: &str) -> io::Result<PathBuf> {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let dir = self
            .root
            .join(TMP_DIR)
            .join(format!("{kind}-{}-{n}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        Ok(dir)
    }

    /// Unpack a layer stream and make it visible under its diff id. `expected_raw` (the blob
    /// digest a manifest names) and `expected_diff` are checked before the layer is placed.
    /// The layer stays pinned (safe from collection) until `pins` is dropped.
    pub(super) fn ingest_layer(
        &self,
        input: impl Read,
        expected_raw: Option<&str>,
        expected_diff: Option<&str>,
        pins: &mut Pins<'_>,
    ) -> Result<Unpacked, ImageError> {
        let tmp = self.new_temp_dir("layer")?;
        let result = layer::unpack(input, &tmp)
            .map_err(ImageError::from)
            .and_then(|u| {
                if let Some(want) = expected_raw.filter(|w| *w != u.raw_digest) {
                    return Err(ImageError::Invalid(format!(
                        "layer blob digest mismatch: expected {want}, got {}",
                        u.raw_digest
                    )));
                }
                if let Some(want) = expected_diff.filter(|w| *w != u.meta.diff_id) {
                    return Err(ImageError::Invalid(format!(
                        "layer diff id mismatch: expected {want}, got {}",
                        u.meta.diff_id
                    )));
                }
                layer::sync_tree(&tmp)?;
                Ok(u)
            });
        let unpacked = match result {
            Ok(u) => u,
            Err(e) => {
                remove_any(&tmp)?;
                return Err(e);
            }
        };
        let hex = hex_of(&unpacked.meta.diff_id).to_string();
        let mut state = self.lock();
        pins.pin(&mut state, &hex);
        if state.layers.contains_key(&hex) {
            drop(state);
            remove_any(&tmp)?;
            return Ok(unpacked);
        }
        let dest = self.layer_path(&hex);
        fs::rename(&tmp, &dest)
            .map_err(|e| io::Error::new(e.kind(), format!("placing layer {}: {e}", dest.display())))?;
        atomic::sync_dir(&self.root.join(LAYERS_DIR))?;
        state.layers.insert(hex.clone(), unpacked.meta.size);
        pins.created.push(hex);
        Ok(unpacked)
    }

    /// Record an image (its config blob) and point `tags` at it. All its layers must exist.
    /// Returns the id hex.
    pub(super) fn commit_image(&self, config_bytes: &[u8], tags: &[String]) -> Result<String, ImageError> {
        self.commit_image_refs(config_bytes, tags, &[])
    }

    /// `commit_image`, also recording `repo_digests` (familiar `repo@sha256:…`) in the same
    /// write as the tags.
    pub(super) fn commit_image_refs(
        &self,
        config_bytes: &[u8],
        tags: &[String],
        repo_digests: &[String],
    ) -> Result<String, ImageError> {
        let hex = sha256_hex(config_bytes);
        let cfg: ConfigFile = serde_json::from_slice(config_bytes)
            .map_err(|e| ImageError::Invalid(format!("image config sha256:{hex}: {e}")))?;
        let mut state = self.lock();
        if let Some(missing) = cfg
            .rootfs
            .diff_ids
            .iter()
            .find(|d| !state.layers.contains_key(hex_of(d)))
        {
            return Err(ImageError::Invalid(format!(
                "image sha256:{hex}: layer {missing} is not in the store"
            )));
        }
        if !state.images.contains_key(&hex) {
            atomic::write(&self.config_path(&hex), config_bytes)?;
            state.images.insert(hex.clone(), cfg);
        }
        if !tags.is_empty() || !repo_digests.is_empty() {
            let mut next = state.tags.clone();
            for t in tags {
                next.insert(t.clone(), hex.clone());
            }
            let mut next_digests = state.digests.clone();
            for d in repo_digests {
                next_digests.insert(d.clone(), hex.clone());
            }
            self.write_refs(&next, &next_digests)?;
            state.tags = next;
            state.digests = next_digests;
        }
        Ok(hex)
    }

    /// Record that the registry knows the image `name` resolves to by `repo_digest`
    /// (familiar `repo@sha256:…`), as after a push.
    pub fn add_repo_digest(&self, name: &str, repo_digest: &str) -> Result<(), ImageError> {
        let parsed = Reference::parse(repo_digest)?;
        if parsed.digest.is_none() || parsed.tag.is_some() {
            return Err(ImageError::InvalidReference(format!(
                "not a repo@digest reference: {repo_digest}"
            )));
        }
        let key = format!(
            "{}@{}",
            parsed.familiar_repository(),
            parsed.digest.unwrap_or_default()
        );
        let mut state = self.lock();
        let r = self.lookup(&state, name)?;
        if state.digests.get(&key) == Some(&r.hex) {
            return Ok(());
        }
        let mut next = state.digests.clone();
        next.insert(key, r.hex);
        self.write_refs(&state.tags, &next)?;
        state.digests = next;
        Ok(())
    }

    fn write_refs(
        &self,
        tags: &BTreeMap<String, String>,
        digests: &BTreeMap<String, String>,
    ) -> io::Result<()> {
        atomic::write_json(
            &self.root.join(REPOSITORIES_FILE),
            &RepositoriesFile {
                tags: tags.clone(),
                digests: digests.clone(),
            },
        )
    }

    /// Move a layer out of sight (one rename), then delete it.
    fn delete_layer(&self, state: &mut State, hex: &str) -> io::Result<()> {
        let src = self.layer_path(hex);
        let graveyard = self.new_temp_dir("removed")?;
        let dest = graveyard.join(hex);
        fs::rename(&src, &dest)
            .map_err(|e| io::Error::new(e.kind(), format!("removing layer {}: {e}", src.display())))?;
        atomic::sync_dir(&self.root.join(LAYERS_DIR))?;
        state.layers.remove(hex);
        remove_any(&graveyard)
    }

    /// Delete the given layers if no image uses them and no operation has them pinned.
    pub(super) fn collect_layers(&self, state: &mut State, candidates: &[String]) -> io::Result<()> {
        for hex in candidates {
            let used = state.images.values().any(|c| uses_layer(c, hex));
            let pinned = state.pins.get(hex).copied().unwrap_or(0) > 0;
            if !used && !pinned && state.layers.contains_key(hex) {
                self.delete_layer(state, hex)?;
            }
        }
        Ok(())
    }

    pub(super) fn pins(&self) -> Pins<'_> {
        Pins {
            store: self,
            pinned: Vec::new(),
            created: Vec::new(),
        }
    }

    /// Find an image by tag, full ID, `sha256:` ID or unique ID prefix. A tag wins over an ID
    /// prefix, as in Docker.
    pub(super) fn lookup(&self, state: &State, name: &str) -> Result<Resolved, ImageError> {
        if let Some(prefix) = name.strip_prefix("sha256:") {
            return self.lookup_prefix(state, prefix, name);
        }
        let parsed = Reference::parse(name);
        if let Ok(r) = &parsed {
            if let Some(digest) = &r.digest {
                let key = format!("{}@{digest}", r.familiar_repository());
                if let Some(hex) = state.digests.get(&key) {
                    return Ok(Resolved {
                        hex: hex.clone(),
                        tag: Some(key),
                    });
                }
            } else {
                if let Some(tag) = r.familiar_tagged() {
                    if let Some(hex) = state.tags.get(&tag) {
                        return Ok(Resolved {
                            hex: hex.clone(),
                            tag: Some(tag),
                        });
                    }
                }
            }
        }
        let is_hex = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex {
            match self.lookup_prefix(state, &name.to_ascii_lowercase(), name) {
                Err(ImageError::NotFound(_)) => {}
                other => return other,
            }
        }
        match parsed {
            Ok(r) => Err(ImageError::NotFound(r.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    fn lookup_prefix(&self, state: &State, prefix: &str, shown: &str) -> Result<Resolved, ImageError> {
        if prefix.is_empty() {
            return Err(ImageError::NotFound(shown.to_string()));
        }
        let mut matches = state
            .images
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix));
        match (matches.next(), matches.next()) {
            (Some((hex, _)), None) => Ok(Resolved {
                hex: hex.clone(),
                tag: None,
            }),
            (Some(_), Some(_)) => Err(ImageError::Ambiguous(shown.to_string())),
            (None, _) => Err(ImageError::NotFound(shown.to_string())),
        }
    }

    pub(super) fn image_from(&self, state: &State, hex: &str) -> Option<Image> {
        let cfg = state.images.get(hex)?;
        Some(Image {
            id: format!("sha256:{hex}"),
            repo_tags: tags_of(state, hex),
            repo_digests: digests_of(state, hex),
            config: cfg.config.clone().unwrap_or_default(),
            created: cfg.created.clone().unwrap_or_default(),
            layers: cfg.rootfs.diff_ids.clone(),
            size: image_size(state, cfg),
            architecture: cfg.architecture.clone(),
            os: cfg.os.clone(),
            variant: cfg.variant.clone(),
            author: cfg.author.clone().unwrap_or_default(),
            comment: cfg.comment.clone().unwrap_or_default(),
            history: cfg.history.clone(),
        })
    }

    /// Resolve a name or ID to an image.
    pub fn resolve(&self, name_or_id: &str) -> Result<Image, ImageError> {
        let state = self.lock();
        let r = self.lookup(&state, name_or_id)?;
        self.image_from(&state, &r.hex)
            .ok_or_else(|| ImageError::NotFound(name_or_id.to_string()))
    }

    /// Every image, newest first, in the shape of `GET /images/json`.
    pub fn list(&self) -> Vec<ImageSummary> {
        let state = self.lock();
        let mut out: Vec<ImageSummary> = state
            .images
            .iter()
            .map(|(hex, cfg)| {
                let size = image_size(&state, cfg) as i64;
                ImageSummary {
                    id: format!("sha256:{hex}"),
                    parent_id: String::new(),
                    repo_tags: tags_of(&state, hex),
                    repo_digests: digests_of(&state, hex),
                    created: cfg
                        .created
                        .as_deref()
                        .and_then(crate::timefmt::parse_secs)
                        .unwrap_or(0),
                    size,
                    shared_size: -1,
                    virtual_size: size,
                    labels: cfg
                        .config
                        .as_ref()
                        .and_then(|c| c.labels.clone())
                        .unwrap_or_default(),
                    containers: -1,
                }
            })
            .collect();
        crate::sort::sort_by(&mut out, |a, b| {
            b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id))
        });
        out
    }

    /// Bytes of every layer in the store, and per image (`sha256:` id) the bytes of its layers
    /// that other images use too (`system df`'s LayersSize and SharedSize).
    pub fn layer_usage(&self) -> (u64, HashMap<String, u64>) {
        let state = self.lock();
        let mut users: HashMap<&str, usize> = HashMap::new();
        for cfg in state.images.values() {
            let mut seen: Vec<&str> = cfg.rootfs.diff_ids.iter().map(|d| hex_of(d)).collect();
            seen.sort();
            seen.dedup();
            for hex in seen {
                *users.entry(hex).or_insert(0) += 1;
            }
        }
        let shared = state
            .images
            .iter()
            .map(|(hex, cfg)| {
                let mut layers: Vec<&str> = cfg.rootfs.diff_ids.iter().map(|d| hex_of(d)).collect();
                layers.sort();
                layers.dedup();
                let bytes = layers
                    .iter()
                    .filter(|l| users.get(*l).copied().unwrap_or(0) > 1)
                    .map(|l| state.layers.get(*l).copied().unwrap_or(0))
                    .sum();
                (format!("sha256:{hex}"), bytes)
            })
            .collect();
        (state.layers.values().sum(), shared)
    }

    /// Like `docker import`: one layer from a root filesystem tar (plain, gzip or zstd), a
    /// config built from `changes`, optionally tagged. Returns `sha256:<id>`.
    pub fn import(
        &self,
        r: impl Read,
        reference: Option<&str>,
        changes: &[String],
        message: &str,
    ) -> Result<String, ImageError> {
        let tag = match reference {
            Some(s) if !s.is_empty() => Some(tag_name(s)?),
            _ => None,
        };
        let mut image_config = ImageConfig::default();
        config::apply_changes(&mut image_config, changes).map_err(ImageError::Invalid)?;
        let mut pins = self.pins();
        let unpacked = self.ingest_layer(r, None, None, &mut pins)?;
        let created = crate::timefmt::format_go(crate::timefmt::now_nanos());
        let (arch, variant) = config::host_architecture();
        let history = config::History {
            created: Some(created.clone()),
            // No empty `created_by`: Go's encoder omits it, and tools that re-encode the config
            // (skopeo converting formats) must reproduce these bytes to keep the image ID.
            comment: Some(if message.is_empty() {
                "Imported from -".to_string()
            } else {
                message.to_string()
            }),
            ..Default::default()
        };
        let cfg = ConfigFile {
            created: Some(created),
            architecture: arch.to_string(),
            os: "linux".to_string(),
            variant: variant.map(str::to_string),
            comment: (!message.is_empty()).then(|| message.to_string()),
            config: Some(image_config),
            rootfs: config::RootFs {
                kind: "layers".into(),
                diff_ids: vec![unpacked.meta.diff_id.clone()],
            },
            history: vec![history],
            ..Default::default()
        };
        let bytes = serde_json::to_vec(&cfg).map_err(|e| ImageError::Invalid(e.to_string()))?;
        let tags: Vec<String> = tag.into_iter().collect();
        let hex = self.commit_image(&bytes, &tags)?;
        Ok(format!("sha256:{hex}"))
    }

    /// Point `target` (`repo[:tag]`) at the image `source` names.
    pub fn tag(&self, source: &str, target: &str) -> Result<(), ImageError> {
        let tag = tag_name(target)?;
        let mut state = self.lock();
        let r = self.lookup(&state, source)?;
        let mut next = state.tags.clone();
        next.insert(tag, r.hex);
        self.write_refs(&next, &state.digests)?;
        state.tags = next;
        Ok(())
    }

    /// Like `docker rmi`: a tag of an image with other tags is only untagged; an ID with
    /// several tags needs `force`; layers no image uses any more are deleted.
    /// (Refusing images that containers use is the caller's check: it knows the containers.)
    pub fn remove(&self, name: &str, force: bool) -> Result<Vec<RemovedItem>, ImageError> {
        let mut state = self.lock();
        let r = self.lookup(&state, name)?;
        let mut out = Vec::new();
        let mut next = state.tags.clone();
        let mut next_digests = state.digests.clone();
        match &r.tag {
            Some(reference) if reference.contains('@') => {
                next_digests.remove(reference);
                out.push(RemovedItem::Untagged(reference.clone()));
            }
            Some(tag) => {
                next.remove(tag);
                out.push(RemovedItem::Untagged(tag.clone()));
                // Digest references of a repository go with its last tag (as in Docker).
                let repo = repo_of(tag);
                let repo_still_tagged = next.iter().any(|(t, h)| *h == r.hex && repo_of(t) == repo);
                if !repo_still_tagged {
                    for d in digests_of(&state, &r.hex) {
                        if repo_of(&d) == repo {
                            next_digests.remove(&d);
                            out.push(RemovedItem::Untagged(d));
                        }
                    }
                }
            }
            None => {
                let tags = tags_of(&state, &r.hex);
                let digests = digests_of(&state, &r.hex);
                let mut repos: Vec<&str> = tags.iter().chain(&digests).map(|t| repo_of(t)).collect();
                repos.sort();
                repos.dedup();
                if (tags.len() > 1 || repos.len() > 1) && !force {
                    return Err(ImageError::Conflict(format!(
                        "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                        &r.hex[..12]
                    )));
                }
                for t in tags {
                    next.remove(&t);
                    out.push(RemovedItem::Untagged(t));
                }
                for d in digests {
                    next_digests.remove(&d);
                    out.push(RemovedItem::Untagged(d));
                }
            }
        }
        let still_referenced = next.values().chain(next_digests.values()).any(|h| *h == r.hex);
        if next != state.tags || next_digests != state.digests {
            self.write_refs(&next, &next_digests)?;
            state.tags = next;
            state.digests = next_digests;
        }
        if still_referenced {
            return Ok(out);
        }
        let cfg_path = self.config_path(&r.hex);
        fs::remove_file(&cfg_path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", cfg_path.display())))?;
        atomic::sync_dir(&self.root.join(IMAGES_DIR))?;
        let layers: Vec<String> = state
            .images
            .remove(&r.hex)
            .map(|c| c.rootfs.diff_ids.iter().map(|d| hex_of(d).to_string()).collect())
            .unwrap_or_default();
        out.push(RemovedItem::Deleted(format!("sha256:{}", r.hex)));
        self.collect_layers(&mut state, &layers)?;
        Ok(out)
    }

    /// `GET /images/{name}/json`.
    pub fn inspect(&self, name: &str) -> Result<Value, ImageError> {
        let image = self.resolve(name)?;
        let mut config =
            serde_json::to_value(&image.config).map_err(|e| ImageError::Invalid(e.to_string()))?;
        if let Value::Object(map) = &mut config {
            // Docker always reports these keys, null when unset.
            for key in [
                "Env",
                "Cmd",
                "Entrypoint",
                "Volumes",
                "Labels",
                "ExposedPorts",
                "OnBuild",
            ] {
                map.entry(key).or_insert(Value::Null);
            }
            for key in ["User", "WorkingDir", "Hostname", "Domainname"] {
                map.entry(key).or_insert(Value::String(String::new()));
            }
        }
        let mut v = json!({
            "Id": image.id,
            "RepoTags": image.repo_tags,
            "RepoDigests": image.repo_digests,
            "Parent": "",
            "Comment": image.comment,
            "Created": image.created,
            "DockerVersion": "",
            "Author": image.author,
            "Config": config,
            "Architecture": image.architecture,
            "Os": image.os,
            "Size": image.size,
            "VirtualSize": image.size,
            "GraphDriver": {
                "Name": "overlay2",
                "Data": { "LowerDir": self.layer_dirs(&image).iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":") }
            },
            "RootFS": { "Type": "layers", "Layers": image.layers },
            "Metadata": { "LastTagTime": "0001-01-01T00:00:00Z" },
        });
        if let Some(variant) = &image.variant {
            v["Variant"] = Value::String(variant.clone());
        }
        Ok(v)
    }

    /// The unpacked layer directories of `image`, top-most first (overlayfs `lowerdir` order).
    pub fn layer_dirs(&self, image: &Image) -> Vec<PathBuf> {
        image
            .layers
            .iter()
            .rev()
            .map(|d| self.layer_path(hex_of(d)).join(layer::FS_DIR))
            .collect()
    }

    /// `GET /images/{name}/history`: newest first; empty layers have size 0.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryItem>, ImageError> {
        let state = self.lock();
        let r = self.lookup(&state, name)?;
        let image = self
            .image_from(&state, &r.hex)
            .ok_or_else(|| ImageError::NotFound(name.to_string()))?;
        let mut layer_sizes = image
            .layers
            .iter()
            .map(|d| state.layers.get(hex_of(d)).copied().unwrap_or(0));
        let mut rows: Vec<HistoryItem> = image
            .history
            .iter()
            .map(|h| HistoryItem {
                id: "<missing>".to_string(),
                created: h
                    .created
                    .as_deref()
                    .and_then(crate::timefmt::parse_secs)
                    .unwrap_or(0),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: Vec::new(),
                size: if h.empty_layer {
                    0
                } else {
                    layer_sizes.next().unwrap_or(0) as i64
                },
                comment: h.comment.clone().unwrap_or_default(),
            })
            .collect();
        rows.reverse();
        match rows.first_mut() {
            Some(top) => {
                top.id = image.id.clone();
                top.tags = image.repo_tags.clone();
            }
            None => rows.push(HistoryItem {
                id: image.id.clone(),
                created: crate::timefmt::parse_secs(&image.created).unwrap_or(0),
                created_by: String::new(),
                tags: image.repo_tags.clone(),
                size: image.size as i64,
                comment: image.comment.clone(),
            }),
        }
        Ok(rows)
    }
}

/// Layers an operation relies on before an image references them; dropping it un-pins them
/// and deletes those it created that no image ended up using (a failed or partial load).
pub(super) struct Pins<'a> {
    store: &'a ImageStore,
    pinned: Vec<String>,
    pub(super) created: Vec<String>,
}

impl Pins<'_> {
    pub(super) fn pin(&mut self, state: &mut State, hex: &str) {
        *state.pins.entry(hex.to_string()).or_insert(0) += 1;
        self.pinned.push(hex.to_string());
    }
}

impl Drop for Pins<'_> {
    fn drop(&mut self) {
        let mut state = self.store.lock();
        for hex in &self.pinned {
            if let Some(n) = state.pins.get_mut(hex) {
                *n -= 1;
                if *n == 0 {
                    state.pins.remove(hex);
                }
            }
        }
        let created = std::mem::take(&mut self.created);
        if let Err(e) = self.store.collect_layers(&mut state, &created) {
            log::warn!("removing unused layers: {e}");
        }
    }
}

/// Parse `s` as a reference that can name a tag (`repo` means `repo:latest`).
pub(super) fn tag_name(s: &str) -> Result<String, ImageError> {
    let r = Reference::parse(s)?;
    if r.digest.is_some() {
        return Err(ImageError::InvalidReference(format!(
            "refusing to create a tag with a digest reference: {s}"
        )));
    }
    r.familiar_tagged()
        .ok_or_else(|| ImageError::InvalidReference(format!("invalid reference format: {s}")))
}

pub(super) fn tags_of(state: &State, hex: &str) -> Vec<String> {
    state
        .tags
        .iter()
        .filter(|(_, h)| h.as_str() == hex)
        .map(|(t, _)| t.clone())
        .collect()
}

pub(super) fn digests_of(state: &State, hex: &str) -> Vec<String> {
    state
        .digests
        .iter()
        .filter(|(_, h)| h.as_str() == hex)
        .map(|(d, _)| d.clone())
        .collect()
}

/// The repository part of a familiar `repo:tag` or `repo@digest`.
fn repo_of(reference: &str) -> &str {
    if let Some((repo, _)) = reference.split_once('@') {
        return repo;
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => &reference[..slash + i],
        None => reference,
    }
}

fn uses_layer(cfg: &ConfigFile, hex: &str) -> bool {
    cfg.rootfs.diff_ids.iter().any(|d| hex_of(d) == hex)
}

fn image_size(state: &State, cfg: &ConfigFile) -> u64 {
    cfg.rootfs
        .diff_ids
        .iter()
        .map(|d| state.layers.get(hex_of(d)).copied().unwrap_or(0))
        .sum()
}

fn read_dir(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
    fs::read_dir(dir)
        .map_err(ctx)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(ctx)
}

/// Remove a file or a directory tree; a missing path is fine.
fn remove_any(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(|e| io::Error::new(e.kind(), format!("removing {}: {e}", path.display())))
}
