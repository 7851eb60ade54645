//! A container's mounts as Docker describes them: `HostConfig.Binds` (`/host:/ctr[:opts]`,
//! `name:/ctr[:opts]`, `/ctr`), `HostConfig.Mounts` (long form), `HostConfig.Tmpfs`,
//! `HostConfig.VolumesFrom` and the image's `Config.Volumes`, parsed and validated into one
//! list of [`MountPoint`]s (what `inspect` shows as `Mounts` and what each start mounts).
//!
//! Pure: no file system access. Checks that need the disk (does a bind source exist) are the
//! engine's.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use crate::api::types::Mount;

/// Docker's label on volumes made without a name (`-v /data`, image `VOLUME`); `volume
/// prune` without `--all` removes only these.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    #[default]
    Bind,
    Volume,
    Tmpfs,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Volume => "volume",
            MountType::Tmpfs => "tmpfs",
        }
    }
}

/// One mount of a container. The first eight fields are docker's `MountPoint` as `inspect`
/// shows it; the rest is what shoal needs to mount it again at every start.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountPoint {
    #[serde(rename = "Type")]
    pub kind: MountType,
    /// The volume's name (volumes only).
    pub name: String,
    /// Host path: the bind source, or the volume's data directory.
    pub source: String,
    pub destination: String,
    pub driver: String,
    /// The options as the user wrote them in `-v` (`ro`, `z`, `nocopy`, ...).
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    pub propagation: String,
    /// The volume was named by shoal, not the user: `rm -v` removes it with the container.
    pub anonymous: bool,
    /// Fill an empty volume from the image's content at the destination.
    pub copy_data: bool,
    /// `-v /missing:/x` creates the host directory (docker's old behaviour, kept for `-v`).
    pub create_source: bool,
    /// Binds: recursive (docker's default) unless `BindOptions.NonRecursive`.
    pub non_recursive: bool,
    /// tmpfs mount data (`size=...,mode=...`) and extra flags as written (`noexec`, ...).
    pub tmpfs_options: String,
    /// Shown in `inspect`'s `Mounts` (docker leaves `--tmpfs` mounts out).
    pub hidden: bool,
    /// Labels for the volume if this mount creates it (`VolumeOptions.Labels`).
    pub volume_labels: BTreeMap<String, String>,
    /// Driver options for the volume if this mount creates it (`DriverConfig.Options`).
    pub volume_options: BTreeMap<String, String>,
    /// Mount only this path inside the volume (`VolumeOptions.Subpath`).
    pub subpath: String,
}

impl MountPoint {
    /// The JSON docker puts in `Mounts` of container inspect.
    pub fn to_inspect(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "Type": self.kind.as_str(),
            "Source": self.source,
            "Destination": self.destination,
            "Mode": self.mode,
            "RW": self.rw,
            "Propagation": self.propagation,
        });
        if self.kind == MountType::Volume {
            v["Name"] = self.name.clone().into();
            v["Driver"] = self.driver.clone().into();
        }
        v
    }
}

/// Docker's rule for local volume names.
pub fn validate_volume_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = name.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "create {name}: \"{name}\" includes invalid characters for a local volume name, only \
             \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, \
             use absolute path"
        ))
    }
}

const PROPAGATIONS: [&str; 6] = ["private", "rprivate", "shared", "rshared", "slave", "rslave"];

fn is_mode_word(m: &str) -> bool {
    matches!(
        m,
        "ro" | "rw" | "z" | "Z" | "nocopy" | "consistent" | "cached" | "delegated"
    ) || PROPAGATIONS.contains(&m)
}

/// A destination made absolute-clean (`/a/./b/` → `/a/b`); `..` and `/` itself are refused.
fn clean_destination(dst: &str, kind: MountType) -> Result<String, String> {
    if !dst.starts_with('/') {
        return Err(format!(
            "invalid mount config for type \"{}\": invalid mount path: '{dst}' mount path must be absolute",
            kind.as_str()
        ));
    }
    let mut out = String::new();
    for c in Path::new(dst).components() {
        match c {
            Component::Normal(p) => {
                out.push('/');
                out.push_str(&p.to_string_lossy());
            }
            Component::ParentDir => {
                return Err(format!("invalid mount path: '{dst}' must not contain '..'"));
            }
            _ => {}
        }
    }
    if out.is_empty() {
        return Err("invalid specification: destination can't be '/'".into());
    }
    Ok(out)
}

/// One `HostConfig.Binds` entry: `/host:/ctr[:mode]`, `name:/ctr[:mode]` or `/ctr`.
pub fn parse_bind(raw: &str) -> Result<MountPoint, String> {
    let invalid = |why: &str| {
        if why.is_empty() {
            format!("invalid volume specification: '{raw}'")
        } else {
            format!("invalid volume specification: '{raw}': {why}")
        }
    };
    let parts: Vec<&str> = raw.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [dst] => ("", *dst, ""),
        [src, dst] => (*src, *dst, ""),
        [src, dst, mode] => (*src, *dst, *mode),
        _ => return Err(invalid("")),
    };
    // `/foo:rw` is a destination and a mode, which a volume cannot be.
    let mode_only = parts.len() == 2 && dst.split(',').all(is_mode_word);
    if dst.is_empty() || (parts.len() > 1 && src.is_empty()) || mode_only {
        return Err(invalid(""));
    }
    let kind = if src.starts_with('/') {
        MountType::Bind
    } else {
        MountType::Volume
    };
    let destination = clean_destination(dst, kind).map_err(|e| invalid(&e))?;
    let mut rw = None;
    let mut propagation = None;
    let mut nocopy = false;
    let mut label = false;
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        let dup = match m {
            "ro" | "rw" => rw.replace(m == "rw").is_some(),
            "z" | "Z" => std::mem::replace(&mut label, true),
            "nocopy" => std::mem::replace(&mut nocopy, true),
            p if PROPAGATIONS.contains(&p) => propagation.replace(p).is_some(),
            "consistent" | "cached" | "delegated" => false,
            _ => return Err(format!("invalid mode: {mode}")),
        };
        if dup {
            return Err(format!("invalid mode: {mode}"));
        }
    }
    let mut mp = MountPoint {
        kind,
        destination,
        mode: mode.to_string(),
        rw: rw.unwrap_or(true),
        ..Default::default()
    };
    match kind {
        MountType::Bind => {
            if nocopy {
                return Err(format!("invalid mode: {mode}"));
            }
            mp.source = clean_host_path(src);
            mp.propagation = propagation.unwrap_or("rprivate").to_string();
            mp.create_source = true;
        }
        _ => {
            if propagation.is_some() {
                return Err(invalid("propagation can only be set for bind mounts"));
            }
            mp.driver = "local".into();
            mp.copy_data = !nocopy;
            if src.is_empty() {
                mp.anonymous = true;
            } else {
                validate_volume_name(src)?;
                mp.name = src.to_string();
            }
        }
    }
    Ok(mp)
}

fn clean_host_path(p: &str) -> String {
    let mut out = String::new();
    for c in Path::new(p).components() {
        if let Component::Normal(x) = c {
            out.push('/');
            out.push_str(&x.to_string_lossy());
        }
    }
    if out.is_empty() {
        "/".into()
    } else {
        out
    }
}

/// One `HostConfig.Mounts` entry, as dockerd validates it.
pub fn parse_mount(m: &Mount) -> Result<MountPoint, String> {
    let kind = match m.kind.as_str() {
        "bind" => MountType::Bind,
        "volume" => MountType::Volume,
        "tmpfs" => MountType::Tmpfs,
        "" => return Err("invalid mount config: mount type must not be empty".into()),
        other => {
            return Err(format!(
                "invalid mount config for type \"{other}\": mount type unknown"
            ))
        }
    };
    let t = kind.as_str();
    let bad = |what: &str| format!("invalid mount config for type \"{t}\": {what}");
    if m.target.is_empty() {
        return Err(bad("field Target must not be empty"));
    }
    let destination = clean_destination(&m.target, kind)?;
    let mut mp = MountPoint {
        kind,
        destination,
        rw: !m.read_only,
        ..Default::default()
    };
    if kind != MountType::Bind && m.bind_options.is_some() {
        return Err(bad("field BindOptions must not be specified"));
    }
    if kind != MountType::Volume && m.volume_options.is_some() {
        return Err(bad("field VolumeOptions must not be specified"));
    }
    if kind != MountType::Tmpfs && m.tmpfs_options.is_some() {
        return Err(bad("field TmpfsOptions must not be specified"));
    }
    match kind {
        MountType::Bind => {
            if m.source.is_empty() {
                return Err(bad("field Source must not be empty"));
            }
            if !m.source.starts_with('/') {
                return Err(bad(&format!(
                    "invalid mount path: '{}' mount path must be absolute",
                    m.source
                )));
            }
            mp.source = clean_host_path(&m.source);
            let opts = m.bind_options.clone().unwrap_or_default();
            mp.propagation = match opts.propagation.as_str() {
                "" => "rprivate".into(),
                p if PROPAGATIONS.contains(&p) => p.into(),
                p => return Err(bad(&format!("invalid propagation mode: {p}"))),
            };
            mp.non_recursive = opts.non_recursive;
            mp.create_source = opts.create_mountpoint;
        }
        MountType::Volume => {
            mp.driver = "local".into();
            let opts = m.volume_options.clone().unwrap_or_default();
            if !opts.subpath.is_empty() {
                let local = Path::new(&opts.subpath)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
                if !local {
                    return Err(bad(&format!(
                        "subpath must be a relative path within the volume: {}",
                        opts.subpath
                    )));
                }
                mp.subpath = opts.subpath.clone();
            }
            if let Some(d) = &opts.driver_config {
                if !d.name.is_empty() && d.name != "local" {
                    return Err(format!(
                        "volume driver {:?} is not supported (local only)",
                        d.name
                    ));
                }
                mp.volume_options = d.options.clone().unwrap_or_default();
            }
            mp.copy_data = !opts.no_copy;
            mp.volume_labels = opts.labels.unwrap_or_default();
            if m.source.is_empty() {
                mp.anonymous = true;
            } else {
                validate_volume_name(&m.source)?;
                mp.name = m.source.clone();
            }
        }
        MountType::Tmpfs => {
            if !m.source.is_empty() {
                return Err(bad("field Source must not be specified"));
            }
            let opts = m.tmpfs_options.clone().unwrap_or_default();
            if opts.size_bytes < 0 {
                return Err(bad("invalid tmpfs size"));
            }
            let mut data = Vec::new();
            if opts.size_bytes > 0 {
                data.push(format!("size={}k", (opts.size_bytes + 1023) / 1024));
            }
            if opts.mode != 0 {
                data.push(format!("mode={:o}", opts.mode & 0o7777));
            }
            mp.tmpfs_options = data.join(",");
        }
    }
    Ok(mp)
}

/// One `HostConfig.Tmpfs` entry: destination and options (`rw,noexec,size=64m`).
pub fn parse_tmpfs(dst: &str, options: &str) -> Result<MountPoint, String> {
    let destination = clean_destination(dst, MountType::Tmpfs)?;
    let mut rw = true;
    for o in options.split(',').filter(|o| !o.is_empty()) {
        if o == "ro" {
            rw = false;
        } else if o == "rw" {
            rw = true;
        }
    }
    crate::runtime::mount_opts::parse(&tmpfs_runtime_options(options, rw))
        .map_err(|e| format!("invalid tmpfs options for {dst}: {e}"))?;
    Ok(MountPoint {
        kind: MountType::Tmpfs,
        destination,
        rw,
        tmpfs_options: options.to_string(),
        hidden: true,
        ..Default::default()
    })
}

/// `VolumesFrom` entry: the container and an optional `ro`/`rw` overriding each mount's own.
pub fn parse_volumes_from(spec: &str) -> Result<(String, Option<bool>), String> {
    let (name, mode) = match spec.split_once(':') {
        Some((n, m)) => (n, Some(m)),
        None => (spec, None),
    };
    if name.is_empty() {
        return Err(format!("invalid volumes-from specification: '{spec}'"));
    }
    let rw = match mode {
        None => None,
        Some(m) => {
            let mut rw = None;
            for part in m.split(',') {
                match part {
                    "rw" => rw = Some(true),
                    "ro" => rw = Some(false),
                    "z" | "Z" | "" => {}
                    _ => return Err(format!("invalid mode: {m}")),
                }
            }
            rw
        }
    };
    Ok((name.to_string(), rw))
}

/// The options a tmpfs gets: docker's `noexec,nosuid,nodev` defaults, then the user's.
pub fn tmpfs_runtime_options(user: &str, rw: bool) -> Vec<String> {
    let mut o: Vec<String> = ["noexec", "nosuid", "nodev"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    o.extend(user.split(',').filter(|s| !s.is_empty()).map(String::from));
    if !rw {
        o.push("ro".into());
    }
    o
}

/// Everything a container mounts, before volumes-from and the image's volumes: binds, then
/// long-form mounts, then tmpfs. Two mounts on one destination are an error, as in docker.
pub fn from_host_config(
    binds: &[String],
    mounts: &[Mount],
    tmpfs: &BTreeMap<String, String>,
) -> Result<Vec<MountPoint>, String> {
    let mut out: Vec<MountPoint> = Vec::new();
    let mut add = |mp: MountPoint| -> Result<(), String> {
        if out.iter().any(|m| m.destination == mp.destination) {
            return Err(format!("Duplicate mount point: {}", mp.destination));
        }
        out.push(mp);
        Ok(())
    };
    for b in binds {
        add(parse_bind(b)?)?;
    }
    for m in mounts {
        add(parse_mount(m)?)?;
    }
    for (dst, opts) in tmpfs {
        add(parse_tmpfs(dst, opts)?)?;
    }
    Ok(out)
}

/// Add `extra` mounts whose destination is not taken yet (volumes-from, the image's
/// `VOLUME`s: the container's own mounts win).
pub fn add_missing(list: &mut Vec<MountPoint>, extra: impl IntoIterator<Item = MountPoint>) {
    for mp in extra {
        if !list.iter().any(|m| m.destination == mp.destination) {
            list.push(mp);
        }
    }
}

/// The image's `VOLUME` paths as anonymous volumes.
pub fn image_volumes(volumes: &BTreeMap<String, serde_json::Value>) -> Result<Vec<MountPoint>, String> {
    volumes
        .keys()
        .map(|dst| {
            Ok(MountPoint {
                kind: MountType::Volume,
                destination: clean_destination(dst, MountType::Volume)?,
                driver: "local".into(),
                rw: true,
                anonymous: true,
                copy_data: true,
                ..Default::default()
            })
        })
        .collect()
}

/// Parents before children (`/data` before `/data/cache`), so no mount hides another.
pub fn sort_for_mounting(list: &mut [MountPoint]) {
    crate::sort::sort_by_key(list, |m| {
        m.destination.split('/').filter(|s| !s.is_empty()).count()
    });
}

/// A mount copied from another container for `--volumes-from`: its own volume or bind, the
/// access mode overridden if asked; never a copy-up and never anonymous here (the volume
/// belongs to the other container's lifecycle).
pub fn inherited(from: &MountPoint, rw: Option<bool>) -> Option<MountPoint> {
    if from.kind == MountType::Tmpfs {
        return None;
    }
    let mut mp = from.clone();
    if let Some(rw) = rw {
        mp.rw = rw;
        mp.mode = if rw { "rw".into() } else { "ro".into() };
    }
    mp.copy_data = false;
    mp.create_source = false;
    Some(mp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::{BindOptions, TmpfsOptions, VolumeOptions};

    #[test]
    fn binds_parse_like_docker() {
        let b = parse_bind("/srv/www/:/usr/share/html:ro").unwrap();
        assert_eq!(b.kind, MountType::Bind);
        assert_eq!(b.source, "/srv/www");
        assert_eq!(b.destination, "/usr/share/html");
        assert!(!b.rw);
        assert_eq!(b.mode, "ro");
        assert_eq!(b.propagation, "rprivate");
        assert!(b.create_source);

        let v = parse_bind("data:/var/lib/data").unwrap();
        assert_eq!(
            (v.kind, v.name.as_str(), v.rw, v.copy_data),
            (MountType::Volume, "data", true, true)
        );
        assert_eq!(v.driver, "local");
        assert!(!v.anonymous);

        let n = parse_bind("data:/d:ro,nocopy").unwrap();
        assert!(!n.rw && !n.copy_data);

        let a = parse_bind("/anon").unwrap();
        assert!(a.anonymous && a.name.is_empty() && a.kind == MountType::Volume);

        assert_eq!(parse_bind("/a:/b:rshared").unwrap().propagation, "rshared");
        assert!(parse_bind("/a:/b:rw,z").unwrap().rw);
    }

    #[test]
    fn bad_binds_are_named() {
        assert_eq!(
            parse_bind("a:b:c:d").unwrap_err(),
            "invalid volume specification: 'a:b:c:d'"
        );
        assert!(parse_bind("data:rel")
            .unwrap_err()
            .contains("mount path must be absolute"));
        assert_eq!(parse_bind("/a:/b:bogus").unwrap_err(), "invalid mode: bogus");
        assert_eq!(parse_bind("/a:/b:ro,rw").unwrap_err(), "invalid mode: ro,rw");
        assert!(parse_bind("./x:/b")
            .unwrap_err()
            .contains("invalid characters for a local volume name"));
        assert!(parse_bind("/a:/")
            .unwrap_err()
            .contains("destination can't be '/'"));
        assert!(parse_bind("/a:/b/../c").unwrap_err().contains(".."));
        assert!(parse_bind("vol:/b:rshared").is_err());
        assert!(parse_bind("/a:/b:nocopy").is_err());
        assert_eq!(
            parse_bind("/foo:rw").unwrap_err(),
            "invalid volume specification: '/foo:rw'"
        );
    }

    #[test]
    fn long_mounts_validate_like_dockerd() {
        let m = |kind: &str, src: &str, dst: &str| Mount {
            kind: kind.into(),
            source: src.into(),
            target: dst.into(),
            ..Default::default()
        };
        let b = parse_mount(&Mount {
            read_only: true,
            bind_options: Some(BindOptions {
                propagation: "rslave".into(),
                create_mountpoint: true,
                ..Default::default()
            }),
            ..m("bind", "/host", "/ctr")
        })
        .unwrap();
        assert!(!b.rw && b.propagation == "rslave" && b.create_source);
        // --mount type=bind never creates a missing source unless asked.
        assert!(!parse_mount(&m("bind", "/host", "/ctr")).unwrap().create_source);
        assert!(parse_mount(&m("bind", "", "/ctr"))
            .unwrap_err()
            .contains("field Source must not be empty"));
        assert!(parse_mount(&m("bind", "/h", ""))
            .unwrap_err()
            .contains("field Target"));
        assert!(parse_mount(&m("bogus", "", "/x"))
            .unwrap_err()
            .contains("mount type unknown"));

        let v = parse_mount(&Mount {
            volume_options: Some(VolumeOptions {
                no_copy: true,
                labels: Some([("k".to_string(), "v".to_string())].into()),
                ..Default::default()
            }),
            ..m("volume", "cache", "/cache")
        })
        .unwrap();
        assert!(!v.copy_data && v.volume_labels["k"] == "v" && v.name == "cache");
        assert!(parse_mount(&m("volume", "", "/anon")).unwrap().anonymous);
        let sub = |p: &str| {
            parse_mount(&Mount {
                volume_options: Some(VolumeOptions {
                    subpath: p.into(),
                    ..Default::default()
                }),
                ..m("volume", "v1", "/s")
            })
        };
        assert_eq!(sub("a/b").unwrap().subpath, "a/b");
        assert!(sub("../up")
            .unwrap_err()
            .contains("relative path within the volume"));
        assert!(sub("/abs").is_err());

        let t = parse_mount(&Mount {
            tmpfs_options: Some(TmpfsOptions {
                size_bytes: 1 << 20,
                mode: 0o1770,
            }),
            ..m("tmpfs", "", "/scratch")
        })
        .unwrap();
        assert_eq!(t.tmpfs_options, "size=1024k,mode=1770");
        assert!(!t.hidden);
        assert!(parse_mount(&m("tmpfs", "/x", "/y")).is_err());
        assert!(parse_mount(&Mount {
            tmpfs_options: Some(TmpfsOptions::default()),
            ..m("bind", "/a", "/b")
        })
        .unwrap_err()
        .contains("TmpfsOptions must not be specified"));
    }

    #[test]
    fn tmpfs_and_volumes_from() {
        let t = parse_tmpfs("/run", "rw,size=64m,exec").unwrap();
        assert!(t.hidden && t.rw);
        assert_eq!(
            tmpfs_runtime_options(&t.tmpfs_options, t.rw),
            ["noexec", "nosuid", "nodev", "rw", "size=64m", "exec"]
        );
        assert!(parse_tmpfs("/run", "size=lots").is_err());
        assert!(parse_tmpfs("run", "").is_err());
        assert_eq!(
            parse_volumes_from("db:ro").unwrap(),
            ("db".to_string(), Some(false))
        );
        assert_eq!(parse_volumes_from("db").unwrap(), ("db".to_string(), None));
        assert!(parse_volumes_from("db:xx").is_err());
        assert!(parse_volumes_from(":ro").is_err());
    }

    #[test]
    fn duplicates_order_and_precedence() {
        let err = from_host_config(&["a1:/d".into(), "/h:/d".into()], &[], &BTreeMap::new()).unwrap_err();
        assert_eq!(err, "Duplicate mount point: /d");
        let mut list = from_host_config(
            &["/h:/data/cache".into()],
            &[],
            &[("/tmp".to_string(), String::new())].into(),
        )
        .unwrap();
        let image: BTreeMap<String, serde_json::Value> = [
            ("/data".to_string(), serde_json::json!({})),
            ("/tmp".to_string(), serde_json::json!({})),
        ]
        .into();
        add_missing(&mut list, image_volumes(&image).unwrap());
        assert_eq!(list.len(), 3, "the image's /tmp is taken by --tmpfs");
        sort_for_mounting(&mut list);
        let order: Vec<&str> = list.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(order[0..2], ["/tmp", "/data"]);
        assert_eq!(order[2], "/data/cache");
    }

    #[test]
    fn inspect_shape() {
        let v = parse_bind("vol:/d:ro").unwrap().to_inspect();
        assert_eq!(v["Type"], "volume");
        assert_eq!(v["Name"], "vol");
        assert_eq!(v["RW"], false);
        assert_eq!(v["Driver"], "local");
        let b = parse_bind("/h:/d").unwrap().to_inspect();
        assert!(b.get("Name").is_none());
        assert_eq!(b["Propagation"], "rprivate");
        assert!(inherited(&parse_tmpfs("/t", "").unwrap(), None).is_none());
        let i = inherited(&parse_bind("vol:/d").unwrap(), Some(false)).unwrap();
        assert!(!i.rw && !i.copy_data);
    }
}
