//! The engine's side of builds, commit and export: RUN steps run in ordinary containers
//! (created, started, followed, removed through the engine, so they get the same rootfs,
//! network and cgroup handling as `docker run`).

use std::sync::Arc;
use std::time::Duration;

use crate::api::http::ApiResult;
use crate::api::types::{ContainerConfig, CreateRequest, HostConfig};
use crate::image::build::{self, RunEvent, RunRequest, RunResult, Runner};
use crate::image::commit::CommitOptions;
use crate::image::{ImageConfig, RemovedItem};
use crate::runtime;

use super::engine::{image_error, Engine, WaitCondition};

pub struct EngineRunner<'a>(pub &'a Arc<Engine>);

impl Runner for EngineRunner<'_> {
    fn run(
        &self,
        req: &RunRequest,
        events: &mut dyn FnMut(RunEvent<'_>) -> bool,
    ) -> Result<RunResult, String> {
        let engine = self.0;
        let config = ContainerConfig {
            image: req.image_id.clone(),
            cmd: Some(req.argv.clone()),
            // RUN never goes through the image's ENTRYPOINT.
            entrypoint: Some(vec![String::new()]),
            env: Some(req.env.clone()),
            working_dir: req.working_dir.clone(),
            user: req.user.clone(),
            ..Default::default()
        };
        let network_mode = match req.network.as_str() {
            "" | "default" => String::new(),
            other => other.to_string(),
        };
        let create = CreateRequest {
            config,
            host_config: HostConfig {
                network_mode,
                ..Default::default()
            },
            ..Default::default()
        };
        let (id, _) = engine.create(None, create).map_err(|e| e.message)?;
        let mut listening = events(RunEvent::Started(&id));
        let entry = engine.get(&id).map_err(|e| e.message)?;
        let mut follow = runtime::logs::Follow::from_end(&entry.dir);
        let upper = entry.dir.join("upper");
        // A start failure leaves the container for the builder to remove (it saw Started).
        engine.start(&id).map_err(|e| e.message)?;
        loop {
            let done = entry.wait_until(Some(Duration::from_millis(50)), |s| {
                !s.rec.state.status.is_active()
            });
            for line in follow.poll_new().unwrap_or_default() {
                if listening && !events(RunEvent::Output(&line.line)) {
                    listening = false;
                    // Nobody waits for this build any more: stop its work.
                    if let Err(e) = engine.kill(&id, "KILL") {
                        log::warn!("stopping build container {id}: {}", e.message);
                    }
                }
            }
            if done {
                break;
            }
        }
        let (exit_code, error) = engine
            .wait(&id, WaitCondition::NotRunning)
            .map_err(|e| e.message)?;
        if !error.is_empty() && exit_code != 0 {
            let _ = events(RunEvent::Output(format!("{error}\n").as_bytes()));
        }
        Ok(RunResult {
            container_id: id.clone(),
            exit_code,
            upper,
        })
    }

    fn remove(&self, container_id: &str) {
        if let Err(e) = self.0.remove(container_id, true) {
            log::warn!("removing build container {container_id}: {}", e.message);
        }
    }
}

/// After `rmi`: remove the untagged build steps the removed images were built on, down to
/// the first one that is tagged, has other children or is used by a container (as docker
/// does unless `noprune`).
pub fn prune_parents(engine: &Arc<Engine>, removed: &[RemovedItem]) -> Vec<RemovedItem> {
    let mut out = Vec::new();
    let mut queue: Vec<String> = removed
        .iter()
        .filter_map(|r| match r {
            RemovedItem::Deleted(d) => Some(d.clone()),
            RemovedItem::Untagged(_) => None,
        })
        .collect();
    while let Some(id) = queue.pop() {
        let Some(parent) = build::take_parent(&engine.images, &id) else {
            continue;
        };
        let Ok(image) = engine.images.resolve(&parent) else {
            continue;
        };
        if !image.repo_tags.is_empty()
            || !engine.image_users(&image.id).is_empty()
            || build::has_children(&engine.images, &image.id)
        {
            continue;
        }
        match engine.images.remove(&image.id, false) {
            Ok(items) => {
                for item in items {
                    if let RemovedItem::Deleted(d) = &item {
                        queue.push(d.clone());
                    }
                    out.push(item);
                }
            }
            Err(e) => log::warn!("removing build step image {}: {e}", image.id),
        }
    }
    let gone: Vec<String> = removed
        .iter()
        .chain(&out)
        .filter_map(|r| match r {
            RemovedItem::Deleted(d) => Some(d.clone()),
            RemovedItem::Untagged(_) => None,
        })
        .collect();
    build::forget(&engine.images, &gone);
    out
}

/// The container's effective config in the image config's shape (what `commit` keeps).
fn image_config_of(c: &ContainerConfig) -> ImageConfig {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    ImageConfig {
        user: non_empty(&c.user),
        exposed_ports: c.exposed_ports.clone(),
        env: c.env.clone(),
        cmd: c.cmd.clone(),
        entrypoint: c.entrypoint.clone(),
        volumes: c.volumes.clone(),
        working_dir: non_empty(&c.working_dir),
        labels: c.labels.clone().filter(|l| !l.is_empty()),
        stop_signal: c.stop_signal.clone(),
        ..Default::default()
    }
}

/// `POST /commit`: the container's changes as a new image. Returns `sha256:<id>`.
pub fn commit(engine: &Arc<Engine>, container: &str, opts: &CommitOptions) -> ApiResult<String> {
    let entry = engine.get(container)?;
    let (image_id, config) = {
        let slot = entry.lock();
        (slot.rec.image_id.clone(), image_config_of(&slot.rec.config))
    };
    let upper = entry.dir.join("upper");
    std::fs::create_dir_all(&upper)?;
    engine
        .images
        .commit_container(&image_id, &upper, config, opts)
        .map_err(image_error)
}

/// `GET /containers/{id}/export`: the container's filesystem as a tar, written to `out`.
pub fn export(engine: &Arc<Engine>, container: &str, out: &mut dyn std::io::Write) -> ApiResult<()> {
    let entry = engine.get(container)?;
    let image_id = entry.lock().rec.image_id.clone();
    let upper = entry.dir.join("upper");
    std::fs::create_dir_all(&upper)?;
    engine
        .images
        .export_rootfs(&image_id, &upper, out)
        .map_err(image_error)
}
