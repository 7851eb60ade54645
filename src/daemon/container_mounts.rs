//! The engine's side of container mounts: planning a new container's mount points (its binds,
//! long-form mounts, tmpfs, `--volumes-from` and the image's volumes, creating the volumes it
//! names), turning them into the runtime's mounts at each start, and the volumes' lifecycle
//! with their containers (in use, `rm -v`, `--rm`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::container::Record;
use super::engine::Engine;
use super::mounts::{self, MountPoint, MountType, ANONYMOUS_LABEL};
use super::volumes::Backing;
use crate::api::http::{ApiError, ApiResult};
use crate::api::types::{ContainerConfig, HostConfig};
use crate::runtime::{Mount, MountKind};

impl Engine {
    /// A new container's mount points, in mounting order; creates the volumes they name
    /// (named ones if missing, a fresh one per anonymous mount).
    pub fn plan_mounts(&self, hc: &HostConfig, config: &ContainerConfig) -> ApiResult<Vec<MountPoint>> {
        let mut list = mounts::from_host_config(
            hc.binds.as_deref().unwrap_or_default(),
            hc.mounts.as_deref().unwrap_or_default(),
            &hc.tmpfs.clone().unwrap_or_default(),
        )
        .map_err(ApiError::bad_request)?;
        for mp in &list {
            if mp.kind == MountType::Bind && !mp.create_source && !Path::new(&mp.source).exists() {
                return Err(ApiError::bad_request(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {}",
                    mp.source
                )));
            }
        }
        for spec in hc.volumes_from.iter().flatten() {
            let (name, rw) = mounts::parse_volumes_from(spec).map_err(ApiError::bad_request)?;
            let other = self.get(&name)?;
            let theirs = other.lock().rec.mount_points.clone();
            mounts::add_missing(&mut list, theirs.iter().filter_map(|m| mounts::inherited(m, rw)));
        }
        let image = mounts::image_volumes(&config.volumes.clone().unwrap_or_default())
            .map_err(ApiError::bad_request)?;
        mounts::add_missing(&mut list, image);
        for mp in list.iter_mut().filter(|m| m.kind == MountType::Volume) {
            let labels = if mp.anonymous {
                Some([(ANONYMOUS_LABEL.to_string(), String::new())].into())
            } else {
                (!mp.volume_labels.is_empty()).then(|| mp.volume_labels.clone())
            };
            let name = (!mp.name.is_empty()).then_some(mp.name.as_str());
            let options = (!mp.volume_options.is_empty()).then(|| mp.volume_options.clone());
            let (v, _) = self.volumes.create(name, "local", options, labels)?;
            mp.source = self.volumes.mountpoint(&v.name).to_string_lossy().into_owned();
            mp.name = v.name;
        }
        mounts::sort_for_mounting(&mut list);
        Ok(list)
    }

    /// The runtime's mounts for one start of `rec`.
    pub fn runtime_mounts(&self, rec: &Record) -> ApiResult<Vec<Mount>> {
        let mut out = Vec::new();
        for mp in &rec.mount_points {
            let access = if mp.rw { "rw" } else { "ro" }.to_string();
            let m = match mp.kind {
                MountType::Bind => {
                    if mp.create_source && !Path::new(&mp.source).exists() {
                        std::fs::create_dir_all(&mp.source).map_err(|e| {
                            ApiError::bad_request(format!(
                                "error while creating mount source path '{}': {e}",
                                mp.source
                            ))
                        })?;
                    }
                    let bind = if mp.non_recursive { "bind" } else { "rbind" };
                    Mount {
                        destination: mp.destination.clone(),
                        kind: MountKind::Bind,
                        source: PathBuf::from(&mp.source),
                        options: vec![bind.into(), access, mp.propagation.clone()],
                        copy_up: false,
                        subpath: String::new(),
                    }
                }
                MountType::Volume => {
                    // A volume lost from the store (e.g. its metadata) comes back empty rather
                    // than the container failing to start.
                    let (v, _) = self.volumes.create(Some(&mp.name), "local", None, None)?;
                    match self.volumes.backing(&v.name)? {
                        Backing::Dir(dir) => Mount {
                            destination: mp.destination.clone(),
                            kind: MountKind::Bind,
                            source: dir,
                            options: vec!["rbind".into(), access, "rprivate".into()],
                            // As dockerd: a sub-path of a volume is never filled from the image.
                            copy_up: mp.copy_data && mp.subpath.is_empty(),
                            subpath: mp.subpath.clone(),
                        },
                        Backing::Tmpfs(_) if !mp.subpath.is_empty() => {
                            return Err(ApiError::bad_request(format!(
                                "volume {}: a subpath cannot be mounted from a tmpfs volume",
                                mp.name
                            )))
                        }
                        Backing::Tmpfs(o) => {
                            let mut options: Vec<String> =
                                o.split(',').filter(|s| !s.is_empty()).map(String::from).collect();
                            options.push(access);
                            Mount {
                                destination: mp.destination.clone(),
                                kind: MountKind::Tmpfs,
                                source: PathBuf::new(),
                                options,
                                copy_up: false,
                                subpath: String::new(),
                            }
                        }
                    }
                }
                MountType::Tmpfs => Mount {
                    destination: mp.destination.clone(),
                    kind: MountKind::Tmpfs,
                    source: PathBuf::new(),
                    options: mounts::tmpfs_runtime_options(&mp.tmpfs_options, mp.rw),
                    copy_up: false,
                    subpath: String::new(),
                },
            };
            out.push(m);
        }
        Ok(out)
    }

    /// IDs of the containers using volume `name`, whatever their state (as docker counts).
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.list()
            .into_iter()
            .filter(|e| {
                e.lock()
                    .rec
                    .mount_points
                    .iter()
                    .any(|m| m.kind == MountType::Volume && m.name == name)
            })
            .map(|e| e.id.clone())
            .collect()
    }

    /// Names of every volume some container uses.
    pub fn volumes_in_use(&self) -> BTreeSet<String> {
        let mut used = BTreeSet::new();
        for e in self.list() {
            for m in &e.lock().rec.mount_points {
                if m.kind == MountType::Volume {
                    used.insert(m.name.clone());
                }
            }
        }
        used
    }

    /// `DELETE /volumes/{name}`; with `force` a missing volume is not an error (as dockerd).
    pub fn remove_volume(&self, name: &str, force: bool) -> ApiResult<()> {
        match self.volumes.get(name) {
            Err(e) if e.status == 404 && force => return Ok(()),
            r => r?,
        };
        self.volumes.remove(name, &self.volume_users(name))
    }

    /// `DELETE /containers/{id}?v=`: remove the container and, with `volumes`, its anonymous
    /// volumes no other container uses.
    pub fn remove_container(&self, reference: &str, force: bool, volumes: bool) -> ApiResult<()> {
        let entry = self.get(reference)?;
        let points = entry.lock().rec.mount_points.clone();
        self.remove(&entry.id, force)?;
        if volumes {
            self.remove_anonymous_volumes(&points);
        }
        Ok(())
    }

    /// After a container is gone: its anonymous volumes, unless another container uses them
    /// (`--volumes-from`), which is not an error.
    pub fn remove_anonymous_volumes(&self, points: &[MountPoint]) {
        for m in points
            .iter()
            .filter(|m| m.kind == MountType::Volume && m.anonymous)
        {
            if !self.volume_users(&m.name).is_empty() {
                continue;
            }
            match self.volumes.remove(&m.name, &[]) {
                Ok(()) => {}
                Err(e) if e.status == 404 => {}
                Err(e) => log::warn!("removing anonymous volume {}: {}", m.name, e.message),
            }
        }
    }
}
