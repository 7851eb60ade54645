//! Named volumes of the `local` driver: `<root>/volumes/<name>/_data` holds the data and
//! `<root>/volumes/<name>/volume.json` the metadata (driver, options, labels, creation time).
//!
//! Guarantees: metadata is written atomically and durably before a volume is reported
//! created, so a volume survives a daemon restart and a power cut; a removal renames the
//! directory away first (one durable step), so a cut mid-removal never leaves half a volume
//! that still lists. Nothing is mounted on the host: `type=tmpfs` and `o=bind` volumes are
//! mounted inside each container that uses them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::mounts::{validate_volume_name, ANONYMOUS_LABEL};
use crate::api::http::{ApiError, ApiResult};
use crate::storage::atomic;

const META: &str = "volume.json";
const DATA: &str = "_data";
const REMOVING: &str = ".removing-";

/// What is kept about one volume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub created_at: String,
    pub labels: Option<BTreeMap<String, String>>,
    /// Driver options as given (`type`, `device`, `o`).
    pub options: Option<BTreeMap<String, String>>,
}

impl Volume {
    pub fn is_anonymous(&self) -> bool {
        self.labels
            .as_ref()
            .is_some_and(|l| l.contains_key(ANONYMOUS_LABEL))
    }

    fn opt(&self, key: &str) -> &str {
        self.options
            .as_ref()
            .and_then(|o| o.get(key))
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// Where a container's mount of a volume comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Backing {
    /// A host directory to bind: the volume's `_data`, or the `device` of an `o=bind` volume.
    Dir(PathBuf),
    /// A tmpfs with these options (`type=tmpfs`).
    Tmpfs(String),
}

/// Check `--opt` values as docker's local driver does: `type`, `device` and `o` only, and of
/// the types only those shoal can mount without touching the host (`tmpfs`, `none` + `bind`).
pub fn validate_options(opts: &BTreeMap<String, String>) -> Result<(), String> {
    for k in opts.keys() {
        if !matches!(k.as_str(), "type" | "device" | "o") {
            return Err(format!("invalid option key: {k:?}"));
        }
    }
    let get = |k: &str| opts.get(k).map(String::as_str).unwrap_or("");
    let binds = get("o").split(',').any(|o| o == "bind" || o == "rbind");
    match get("type") {
        "" if opts.is_empty() => Ok(()),
        "" => Err("missing option \"type\": local volume options need type=tmpfs or type=none".into()),
        "tmpfs" => crate::runtime::mount_opts::parse(&get("o").split(',').collect::<Vec<_>>())
            .map(|_| ())
            .map_err(|e| format!("invalid option \"o\": {e}")),
        "none" if binds => {
            if !get("device").starts_with('/') {
                return Err(format!(
                    "invalid option \"device\": {:?} must be an absolute host path for o=bind",
                    get("device")
                ));
            }
            Ok(())
        }
        "none" => Err("type=none needs o=bind and a device path".into()),
        other => Err(format!(
            "local volumes of type {other:?} are not supported: use type=tmpfs, or type=none with o=bind"
        )),
    }
}

/// A volume list/prune filter, docker's keys: `dangling`, `driver`, `label`, `label!`, `name`,
/// `all` (prune only).
pub fn matches(v: &Volume, used: bool, filters: &BTreeMap<String, Vec<String>>) -> Result<bool, String> {
    let labels = v.labels.clone().unwrap_or_default();
    let has_label = |want: &str| match want.split_once('=') {
        Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
        None => labels.contains_key(want),
    };
    for (key, values) in filters {
        let ok = match key.as_str() {
            "dangling" => {
                let mut ok = false;
                for d in values {
                    let want = match d.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(format!("invalid filter 'dangling={d}'")),
                    };
                    ok |= want != used;
                }
                ok
            }
            "driver" => values.contains(&v.driver),
            "name" => values.iter().any(|n| v.name.contains(n.as_str())),
            "label" => values.iter().all(|l| has_label(l)),
            "label!" => !values.iter().any(|l| has_label(l)),
            "all" => true,
            other => return Err(format!("invalid filter '{other}'")),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

pub struct VolumeStore {
    dir: PathBuf,
    volumes: Mutex<BTreeMap<String, Volume>>,
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> ApiError {
    move |e| ApiError::internal(format!("{what}: {e}"))
}

impl VolumeStore {
    /// Open `<dir>` and load every volume, finishing removals a power cut interrupted.
    pub fn open(dir: &Path) -> std::io::Result<VolumeStore> {
        atomic::create_dir_all(dir)?;
        let mut volumes = BTreeMap::new();
        for dirent in fs::read_dir(dir)? {
            let path = dirent?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with(REMOVING) {
                let _ = fs::remove_dir_all(&path);
                continue;
            }
            if !path.join(META).exists() {
                // A create cut short before its metadata: nothing was ever reported or used.
                if fs::read_dir(path.join(DATA)).map_or(true, |mut d| d.next().is_none()) {
                    let _ = fs::remove_dir_all(&path);
                } else {
                    log::warn!(
                        "volume directory {} has data but no {META}; left alone",
                        path.display()
                    );
                }
                continue;
            }
            match atomic::read_json::<Volume>(&path.join(META)) {
                Ok(v) => {
                    volumes.insert(v.name.clone(), v);
                }
                Err(e) => log::error!("skipping volume in {}: {e}", path.display()),
            }
        }
        Ok(VolumeStore {
            dir: dir.to_path_buf(),
            volumes: Mutex::new(volumes),
        })
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<String, Volume>> {
        self.volumes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The host directory holding a volume's data (`Mountpoint`).
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.dir.join(name).join(DATA)
    }

    /// `POST /volumes/create`: a new volume, or the existing one of that name (as docker,
    /// which answers an existing local volume without changing it). `name` None or empty: a
    /// random name. Returns the volume and whether it was made now.
    pub fn create(
        &self,
        name: Option<&str>,
        driver: &str,
        options: Option<BTreeMap<String, String>>,
        labels: Option<BTreeMap<String, String>>,
    ) -> ApiResult<(Volume, bool)> {
        let driver = if driver.is_empty() { "local" } else { driver };
        if driver != "local" {
            return Err(ApiError::not_found(format!(
                "error looking up volume plugin {driver}: plugin \"{driver}\" not found"
            )));
        }
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                validate_volume_name(n).map_err(ApiError::bad_request)?;
                n.to_string()
            }
            None => super::names::new_id()?,
        };
        if let Some(opts) = &options {
            validate_options(opts).map_err(|e| ApiError::bad_request(format!("create {name}: {e}")))?;
        }
        let mut map = self.map();
        if let Some(v) = map.get(&name) {
            return Ok((v.clone(), false));
        }
        let v = Volume {
            name: name.clone(),
            driver: driver.into(),
            created_at: crate::timefmt::format_secs((crate::timefmt::now_nanos() / 1_000_000_000) as i64),
            labels,
            options,
        };
        let vdir = self.dir.join(&name);
        atomic::create_dir_all(&vdir.join(DATA))
            .and_then(|()| atomic::write_json(&vdir.join(META), &v))
            // The volume's own entry in the store's directory must last too.
            .and_then(|()| atomic::sync_dir(&self.dir))
            .map_err(io_err(format!("create {name}")))?;
        map.insert(name, v.clone());
        Ok((v, true))
    }

    pub fn get(&self, name: &str) -> ApiResult<Volume> {
        self.map()
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("get {name}: no such volume")))
    }

    pub fn list(&self) -> Vec<Volume> {
        self.map().values().cloned().collect()
    }

    /// How a container mounts the volume.
    pub fn backing(&self, name: &str) -> ApiResult<Backing> {
        let v = self.get(name)?;
        Ok(match v.opt("type") {
            "tmpfs" => Backing::Tmpfs(v.opt("o").to_string()),
            "none" => Backing::Dir(PathBuf::from(v.opt("device"))),
            _ => Backing::Dir(self.mountpoint(name)),
        })
    }

    /// `DELETE /volumes/{name}`; `users` are the containers that use it (refused if any).
    pub fn remove(&self, name: &str, users: &[String]) -> ApiResult<()> {
        let mut map = self.map();
        if !map.contains_key(name) {
            return Err(ApiError::not_found(format!("get {name}: no such volume")));
        }
        if !users.is_empty() {
            return Err(ApiError::conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        let from = self.dir.join(name);
        let to = self.dir.join(format!("{REMOVING}{name}"));
        let _ = fs::remove_dir_all(&to);
        fs::rename(&from, &to)
            .and_then(|()| atomic::sync_dir(&self.dir))
            .map_err(io_err(format!("remove {name}")))?;
        map.remove(name);
        drop(map);
        if let Err(e) = fs::remove_dir_all(&to) {
            log::warn!("removing {}: {e}", to.display());
        }
        Ok(())
    }

    /// `POST /volumes/prune`: remove unused volumes (anonymous ones only unless `all`)
    /// passing `filters`; returns their names and the bytes freed.
    pub fn prune(
        &self,
        in_use: &BTreeSet<String>,
        filters: &BTreeMap<String, Vec<String>>,
    ) -> ApiResult<(Vec<String>, u64)> {
        for k in filters.keys() {
            if !matches!(k.as_str(), "label" | "label!" | "all") {
                return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
            }
        }
        let all = filters
            .get("all")
            .is_some_and(|v| v.iter().any(|x| matches!(x.as_str(), "true" | "1")));
        let mut removed = Vec::new();
        let mut space = 0;
        for v in self.list() {
            if in_use.contains(&v.name) || !(all || v.is_anonymous()) {
                continue;
            }
            if !matches(&v, false, filters).map_err(ApiError::bad_request)? {
                continue;
            }
            let size = dir_size(&self.mountpoint(&v.name));
            if self.remove(&v.name, &[]).is_ok() {
                space += size;
                removed.push(v.name);
            }
        }
        Ok((removed, space))
    }

    /// The API's JSON for one volume.
    pub fn to_json(&self, v: &Volume) -> Value {
        json!({
            "CreatedAt": v.created_at,
            "Driver": v.driver,
            "Labels": v.labels,
            "Mountpoint": self.mountpoint(&v.name),
            "Name": v.name,
            "Options": v.options,
            "Scope": "local",
        })
    }

    /// Bytes used under a volume's data directory.
    pub fn size(&self, name: &str) -> u64 {
        dir_size(&self.mountpoint(name))
    }
}

/// Bytes of the files under `p` (not following symlinks).
pub fn dir_size(p: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(p)
        .map(|d| d.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("shoal-volstore-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn create_get_remove_and_reopen() {
        let d = scratch("crud");
        let s = VolumeStore::open(&d).unwrap();
        let labels = Some([("a".to_string(), "1".to_string())].into());
        let (v, made) = s.create(Some("data"), "", None, labels.clone()).unwrap();
        assert!(made && v.driver == "local" && v.labels == labels);
        assert!(s.mountpoint("data").is_dir());
        // Creating again answers the existing volume unchanged.
        let (again, made) = s.create(Some("data"), "local", None, None).unwrap();
        assert!(!made && again == v);
        fs::write(s.mountpoint("data").join("f"), b"x").unwrap();
        let (anon, _) = s
            .create(
                None,
                "",
                None,
                Some([(ANONYMOUS_LABEL.to_string(), String::new())].into()),
            )
            .unwrap();
        assert_eq!(anon.name.len(), 64);
        drop(s);

        // A create cut before its metadata, and a removal cut after its rename.
        fs::create_dir_all(d.join("half/_data")).unwrap();
        fs::create_dir_all(d.join(".removing-old/_data")).unwrap();
        let s = VolumeStore::open(&d).unwrap();
        assert_eq!(s.list().len(), 2);
        assert!(!d.join("half").exists() && !d.join(".removing-old").exists());
        assert_eq!(s.get("data").unwrap(), v);
        assert_eq!(s.size("data"), 1);

        let e = s.remove("data", &["abc".into()]).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (409, "remove data: volume is in use - [abc]")
        );
        s.remove("data", &[]).unwrap();
        assert_eq!(s.get("data").unwrap_err().message, "get data: no such volume");
        assert_eq!(s.remove("data", &[]).unwrap_err().status, 404);
        assert!(!d.join("data").exists());

        // Prune: anonymous only by default, everything unused with all=true.
        s.create(Some("named"), "", None, None).unwrap();
        let used: BTreeSet<String> = BTreeSet::new();
        let (gone, _) = s.prune(&used, &BTreeMap::new()).unwrap();
        assert_eq!(gone, vec![anon.name.clone()]);
        let in_use: BTreeSet<String> = ["named".to_string()].into();
        let all: BTreeMap<String, Vec<String>> = [("all".to_string(), vec!["true".to_string()])].into();
        assert!(s.prune(&in_use, &all).unwrap().0.is_empty());
        assert_eq!(s.prune(&used, &all).unwrap().0, vec!["named".to_string()]);
        assert!(s.prune(&used, &[("bogus".to_string(), vec![])].into()).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_names_drivers_and_options() {
        let d = scratch("bad");
        let s = VolumeStore::open(&d).unwrap();
        assert_eq!(s.create(Some("a/b"), "", None, None).unwrap_err().status, 400);
        assert_eq!(s.create(Some("ok1"), "nfs", None, None).unwrap_err().status, 404);
        let o = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert!(validate_options(&o(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")])).is_ok());
        assert!(validate_options(&o(&[("type", "none"), ("device", "/srv"), ("o", "bind")])).is_ok());
        assert!(validate_options(&o(&[("type", "none"), ("device", "rel"), ("o", "bind")])).is_err());
        assert!(validate_options(&o(&[("type", "nfs")]))
            .unwrap_err()
            .contains("not supported"));
        assert!(validate_options(&o(&[("colour", "red")]))
            .unwrap_err()
            .contains("colour"));
        assert!(validate_options(&o(&[("type", "tmpfs"), ("o", "size=huge")])).is_err());
        let (v, _) = s
            .create(
                Some("t1"),
                "",
                Some(o(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")])),
                None,
            )
            .unwrap();
        assert_eq!(s.backing(&v.name).unwrap(), Backing::Tmpfs("size=1m".into()));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn filters() {
        let v = Volume {
            name: "web-data".into(),
            driver: "local".into(),
            labels: Some([("env".to_string(), "prod".to_string())].into()),
            ..Default::default()
        };
        let f = |k: &str, vals: &[&str]| -> BTreeMap<String, Vec<String>> {
            [(k.to_string(), vals.iter().map(|s| s.to_string()).collect())].into()
        };
        assert!(matches(&v, false, &f("dangling", &["true"])).unwrap());
        assert!(!matches(&v, true, &f("dangling", &["true"])).unwrap());
        assert!(matches(&v, true, &f("dangling", &["false"])).unwrap());
        assert!(matches(&v, false, &f("name", &["data"])).unwrap());
        assert!(!matches(&v, false, &f("name", &["db"])).unwrap());
        assert!(matches(&v, false, &f("label", &["env=prod"])).unwrap());
        assert!(!matches(&v, false, &f("label", &["env=dev"])).unwrap());
        assert!(matches(&v, false, &f("label", &["env"])).unwrap());
        assert!(!matches(&v, false, &f("label!", &["env"])).unwrap());
        assert!(matches(&v, false, &f("driver", &["local"])).unwrap());
        assert!(matches(&v, false, &f("dangling", &["maybe"])).is_err());
        assert!(matches(&v, false, &f("colour", &["x"])).is_err());
    }
}
