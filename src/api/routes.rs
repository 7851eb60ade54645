//! The Docker Engine API routes shoal serves, mapped onto the engine.
//!
//! Paths are matched after the `/v1.NN` prefix is removed; methods and status codes follow
//! Docker's API reference (201 on create, 204 on start/stop/kill/rm, 304 when a start or stop
//! changes nothing, 404/409/400 with `{"message"}` on errors).

use std::sync::Arc;

use serde_json::json;

use super::http::{ApiError, ApiRequest, ApiResult};
use super::types::CreateRequest;
use super::{render, streams, API_VERSION, MIN_API_VERSION};
use crate::daemon::engine::{image_error, Engine, WaitCondition};
use crate::image::RemovedItem;
use crate::timefmt;

const JSON_LIMIT: usize = 4 << 20;

/// Route one request; every path answers something, errors as Docker's JSON.
pub fn handle(engine: &Arc<Engine>, req: &mut ApiRequest) {
    if let Err(e) = route(engine, req) {
        if e.status >= 500 {
            log::warn!("{} {}: {}", req.method, req.path, e.message);
        }
        req.respond_error(&e);
    }
}

fn route(engine: &Arc<Engine>, req: &mut ApiRequest) -> ApiResult<()> {
    let path = req.path.clone();
    let method = req.method.clone();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segs.first() == Some(&"networks") {
        if let Some(r) = super::networks::route(engine, req, &method, &segs) {
            return r;
        }
    }
    if segs.first() == Some(&"volumes") {
        if let Some(r) = super::volumes::route(engine, req, &method, &segs) {
            return r;
        }
    }
    if let Some(r) = super::registry::route(engine, req, &method, &segs) {
        return r;
    }
    if let Some(r) = super::images::route(engine, req, &method, &segs) {
        return r;
    }
    match (method.as_str(), segs.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) => {
            req.respond_raw(200, "text/plain; charset=utf-8", b"OK");
            Ok(())
        }
        ("GET", ["version"]) => {
            req.respond_json(200, &version_info());
            Ok(())
        }
        ("GET", ["events"]) => super::events::serve(engine, req),
        ("GET", ["info"]) => {
            let info = info(engine);
            req.respond_json(200, &info);
            Ok(())
        }
        ("POST", ["containers", "create"]) => {
            let body: CreateRequest = req.json(JSON_LIMIT)?;
            if let Some(p) = req.q("platform").filter(|p| !p.is_empty()) {
                super::images::check_platform(engine, &body.config.image, p)?;
            }
            let name = req.q("name").map(String::from);
            let (id, warnings) = engine.create(name.as_deref(), body)?;
            req.respond_json(201, &json!({ "Id": id, "Warnings": warnings }));
            Ok(())
        }
        ("GET", ["containers", "json"]) => list_containers(engine, req),
        ("POST", ["containers", "prune"]) => {
            let mut deleted = Vec::new();
            for e in engine.list() {
                let stopped = !e.lock().rec.state.status.is_active();
                if stopped && engine.remove(&e.id, false).is_ok() {
                    deleted.push(e.id.clone());
                }
            }
            req.respond_json(200, &json!({ "ContainersDeleted": deleted, "SpaceReclaimed": 0 }));
            Ok(())
        }
        ("GET", ["containers", id, "json"]) => {
            let entry = engine.get(id)?;
            let rec = entry.lock().rec.clone();
            let mut v = render::inspect(&rec, &entry.dir);
            v["NetworkSettings"] = engine.network_settings(&rec);
            req.respond_json(200, &v);
            Ok(())
        }
        ("POST", ["containers", id, "start"]) => {
            let changed = engine.start(id)?;
            req.respond_empty(if changed { 204 } else { 304 });
            Ok(())
        }
        ("POST", ["containers", id, "stop"]) => {
            let t = int_param(req, "t")?;
            let signal = req.q("signal").map(String::from);
            let changed = engine.stop(id, t, signal.as_deref())?;
            req.respond_empty(if changed { 204 } else { 304 });
            Ok(())
        }
        ("POST", ["containers", id, "restart"]) => {
            let t = int_param(req, "t")?;
            let signal = req.q("signal").map(String::from);
            engine.restart(id, t, signal.as_deref())?;
            req.respond_empty(204);
            Ok(())
        }
        ("POST", ["containers", id, "kill"]) => {
            let signal = req.q("signal").unwrap_or("KILL").to_string();
            engine.kill(id, &signal)?;
            req.respond_empty(204);
            Ok(())
        }
        ("DELETE", ["containers", id]) => {
            engine.remove_container(id, req.flag("force"), req.flag("v"))?;
            req.respond_empty(204);
            Ok(())
        }
        ("POST", ["containers", id, "wait"]) => {
            let condition = match req.q("condition").unwrap_or("") {
                "" | "not-running" => WaitCondition::NotRunning,
                "next-exit" => WaitCondition::NextExit,
                "removed" => WaitCondition::Removed,
                other => return Err(ApiError::bad_request(format!("invalid condition: {other:?}"))),
            };
            engine.get(id)?;
            // Headers go out now (clients wait on them before starting the container); the
            // body follows at the exit.
            let mut w = req.stream("application/json")?;
            let body = match engine.wait(id, condition) {
                Ok((code, err)) => {
                    let error = if err.is_empty() {
                        json!(null)
                    } else {
                        json!({ "Message": err })
                    };
                    json!({ "StatusCode": code, "Error": error })
                }
                Err(e) => json!({ "StatusCode": -1, "Error": { "Message": e.message } }),
            };
            let _ = std::io::Write::write_all(&mut w, format!("{body}\n").as_bytes());
            Ok(())
        }
        ("POST", ["containers", id, "rename"]) => {
            let name = req.q("name").unwrap_or("").to_string();
            engine.rename(id, &name)?;
            req.respond_empty(204);
            Ok(())
        }
        ("POST", ["containers", id, "resize"]) => {
            let (h, w) = (
                int_param(req, "h")?.unwrap_or(0),
                int_param(req, "w")?.unwrap_or(0),
            );
            streams::resize_container(engine, id, h as u16, w as u16)?;
            req.respond_empty(200);
            Ok(())
        }
        ("GET", ["containers", id, "logs"]) => streams::logs(engine, req, id),
        ("GET", ["containers", id, "export"]) => super::build::export(engine, req, id),
        ("POST", ["build"]) => super::build::build(engine, req),
        ("POST", ["commit"]) => super::build::commit(engine, req),
        ("POST", ["containers", id, "attach"]) => streams::attach(engine, req, id),
        ("GET", ["containers", id, "top"]) => streams::top(engine, req, id),
        ("GET", ["containers", id, "stats"]) => streams::stats(engine, req, id),
        ("POST", ["containers", id, "exec"]) => streams::exec_create(engine, req, id),
        ("POST", ["exec", id, "start"]) => streams::exec_start(engine, req, id),
        ("POST", ["exec", id, "resize"]) => streams::exec_resize(req, id),
        ("GET", ["exec", id, "json"]) => streams::exec_inspect(req, id),
        ("POST", ["images", "load"]) => {
            let loaded = engine.images.load(&mut *req).map_err(image_error)?;
            for line in &loaded {
                // "Loaded image: name:tag" / "Loaded image ID: sha256:..."
                let name = line.rsplit(": ").next().unwrap_or(line);
                engine.events.emit(
                    "image",
                    "load",
                    name,
                    crate::daemon::events::attrs([("name", name)]),
                );
            }
            let mut w = req.stream("application/json")?;
            // dockerd sends the "Loaded image" lines whether or not `quiet` is set (quiet only
            // drops progress bars, which shoal does not send).
            for line in loaded {
                let msg = json!({ "stream": format!("{line}\n") });
                let _ = std::io::Write::write_all(&mut w, format!("{msg}\n").as_bytes());
            }
            Ok(())
        }
        ("POST", ["images", "create"]) => import_image(engine, req),
        ("GET", ["images", "get"]) => {
            // `names` repeats, one per image (`docker save a b`).
            let names = req.q_all("names");
            if names.is_empty() {
                return Err(ApiError::bad_request("no image names given"));
            }
            for n in &names {
                engine.images.resolve(n).map_err(image_error)?;
            }
            let mut w = req.stream("application/x-tar")?;
            if let Err(e) = engine.images.save(&names, &mut w) {
                log::warn!("image save: {e}");
            }
            Ok(())
        }
        ("DELETE", ["images", ..]) => {
            let name = image_name(&segs[1..], None)?;
            let force = req.flag("force");
            let image = engine.images.resolve(&name).map_err(image_error)?;
            let users = engine.image_users(&image.id);
            if !users.is_empty() && !force {
                let is_only_ref =
                    image.repo_tags.len() <= 1 || name.starts_with("sha256:") || image.id.contains(&name);
                if is_only_ref {
                    return Err(ApiError::conflict(format!(
                        "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
                        &users[0][..12],
                        image.id.trim_start_matches("sha256:").get(..12).unwrap_or(&image.id)
                    )));
                }
            }
            let mut removed = engine.images.remove(&name, force).map_err(image_error)?;
            if !req.flag("noprune") {
                let parents = crate::daemon::build::prune_parents(engine, &removed);
                removed.extend(parents);
            }
            for r in &removed {
                let (action, id) = match r {
                    RemovedItem::Untagged(t) => ("untag", t),
                    RemovedItem::Deleted(d) => ("delete", d),
                };
                let attrs = crate::daemon::events::attrs([("name", name.as_str())]);
                engine.events.emit("image", action, id, attrs);
            }
            let body: Vec<_> = removed
                .into_iter()
                .map(|r| match r {
                    RemovedItem::Untagged(t) => json!({ "Untagged": t }),
                    RemovedItem::Deleted(d) => json!({ "Deleted": d }),
                })
                .collect();
            req.respond_json(200, &body);
            Ok(())
        }
        ("GET", ["images", .., "json"]) => {
            let name = image_name(&segs[1..segs.len() - 1], None)?;
            let v = engine.images.inspect(&name).map_err(image_error)?;
            req.respond_json(200, &v);
            Ok(())
        }
        ("GET", ["images", .., "history"]) => {
            let name = image_name(&segs[1..segs.len() - 1], None)?;
            let v = engine.images.history(&name).map_err(image_error)?;
            req.respond_json(200, &v);
            Ok(())
        }
        ("POST", ["images", .., "tag"]) => {
            let name = image_name(&segs[1..segs.len() - 1], None)?;
            let repo = req.q("repo").unwrap_or("").to_string();
            if repo.is_empty() {
                return Err(ApiError::bad_request(
                    "repository name must have at least one component",
                ));
            }
            let target = match req.q("tag").filter(|t| !t.is_empty()) {
                Some(t) => format!("{repo}:{t}"),
                None => repo,
            };
            engine.images.tag(&name, &target).map_err(image_error)?;
            let id = engine.images.resolve(&target).map(|i| i.id).unwrap_or_default();
            engine.events.emit(
                "image",
                "tag",
                &id,
                crate::daemon::events::attrs([("name", target.as_str())]),
            );
            req.respond_empty(201);
            Ok(())
        }
        _ => Err(ApiError::not_found(format!("page not found: {method} {path}"))),
    }
}

/// `POST /images/create`: `fromSrc=-` imports the body as a root filesystem tar.
fn import_image(engine: &Arc<Engine>, req: &mut ApiRequest) -> ApiResult<()> {
    if let Some(from) = req.q("fromImage") {
        let tag = req.q("tag").unwrap_or("latest");
        return Err(ApiError::not_found(format!(
            "pull access denied for {from}:{tag}: this shoal build has no registry client; \
             use `shoal load` or `shoal import` to add images"
        )));
    }
    match req.q("fromSrc") {
        Some("-") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "importing from {other:?} is not supported; send the tar as the body"
            )))
        }
        None => return Err(ApiError::bad_request("either fromSrc or fromImage must be given")),
    }
    let reference = match (
        req.q("repo").filter(|r| !r.is_empty()),
        req.q("tag").filter(|t| !t.is_empty()),
    ) {
        (Some(r), Some(t)) => Some(format!("{r}:{t}")),
        (Some(r), None) => Some(r.to_string()),
        _ => None,
    };
    // `changes` repeats, once per `--change`.
    let changes: Vec<String> = req
        .q_all("changes")
        .iter()
        .flat_map(|c| c.split('\n'))
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    let message = req.q("message").unwrap_or("").to_string();
    let id = engine
        .images
        .import(&mut *req, reference.as_deref(), &changes, &message)
        .map_err(image_error)?;
    let name = reference.as_deref().unwrap_or(&id);
    engine.events.emit(
        "image",
        "import",
        &id,
        crate::daemon::events::attrs([("name", name)]),
    );
    let mut w = req.stream("application/json")?;
    let _ = std::io::Write::write_all(&mut w, format!("{}\n", json!({ "status": id })).as_bytes());
    Ok(())
}

/// Rejoin an image name that spans path segments (`/images/library/busybox:1/json`).
fn image_name(segs: &[&str], _default: Option<&str>) -> ApiResult<String> {
    let name = segs.join("/");
    if name.is_empty() {
        return Err(ApiError::bad_request("image name is empty"));
    }
    Ok(name)
}

fn int_param(req: &ApiRequest, key: &str) -> ApiResult<Option<i64>> {
    match req.q(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {v:?} is not an integer"))),
    }
}

fn list_containers(engine: &Arc<Engine>, req: &mut ApiRequest) -> ApiResult<()> {
    let all = req.flag("all");
    let filters = render::parse_filters(req.q("filters")).map_err(ApiError::bad_request)?;
    let limit = int_param(req, "limit")?.unwrap_or(-1);
    let now = timefmt::now_nanos();
    let mut rows: Vec<(String, serde_json::Value)> = Vec::new();
    for entry in engine.list() {
        let slot = entry.lock();
        let rec = &slot.rec;
        if !all && !filters.contains_key("status") && !rec.state.status.is_active() && limit <= 0 {
            continue;
        }
        if !render::matches(rec, &filters).map_err(ApiError::bad_request)? {
            continue;
        }
        let mut row = render::summary(rec, now);
        let (ports, settings) = engine.summary_network(rec);
        row["Ports"] = ports;
        row["NetworkSettings"] = settings;
        rows.push((rec.created.clone(), row));
    }
    // Newest first, as docker lists.
    crate::sort::sort_by(&mut rows, |a, b| b.0.cmp(&a.0));
    let mut out: Vec<_> = rows.into_iter().map(|r| r.1).collect();
    if limit > 0 {
        out.truncate(limit as usize);
    }
    req.respond_json(200, &out);
    Ok(())
}

fn version_info() -> serde_json::Value {
    let version = env!("CARGO_PKG_VERSION");
    let kernel = rustix::system::uname().release().to_string_lossy().into_owned();
    json!({
        "Platform": { "Name": "shoal" },
        "Components": [{ "Name": "Engine", "Version": version, "Details": {
            "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
            "Arch": super::go_arch(), "KernelVersion": kernel } }],
        "Version": version,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": option_env!("SHOAL_GIT_COMMIT").unwrap_or("unknown"),
        "GoVersion": "rust",
        "Os": "linux",
        "Arch": super::go_arch(),
        "KernelVersion": kernel,
        "BuildTime": "",
    })
}

fn info(engine: &Arc<Engine>) -> serde_json::Value {
    let entries = engine.list();
    let (mut running, mut stopped) = (0, 0);
    for e in &entries {
        if e.lock().rec.state.status.is_active() {
            running += 1;
        } else {
            stopped += 1;
        }
    }
    let uts = rustix::system::uname();
    let mem = super::streams::host_memory();
    json!({
        "ID": "",
        "Containers": entries.len(),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": stopped,
        "Images": engine.images.list().len(),
        "Driver": "overlay",
        "DriverStatus": [],
        "MemoryLimit": true,
        "SwapLimit": true,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "PidsLimit": true,
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": match crate::runtime::cgroup::discover_self() {
            Ok(crate::runtime::cgroup::Layout::V2 { .. }) => "2",
            _ => "1",
        },
        "KernelVersion": uts.release().to_string_lossy(),
        "OperatingSystem": "shoal",
        "OSType": "linux",
        "Architecture": uts.machine().to_string_lossy(),
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem,
        "DockerRootDir": engine.config.root,
        "Name": uts.nodename().to_string_lossy(),
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": { "shoal": { "path": "shoal" } },
        "DefaultRuntime": "shoal",
        "LoggingDriver": "json-file",
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Plugins": { "Volume": [], "Network": ["host", "null"], "Log": ["json-file"] },
        "Warnings": [],
    })
}
