//! Image listing and disk usage routes: `GET /images/json` (docker's filters),
//! `POST /images/prune`, `GET /system/df`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{json, Value};

use super::http::{ApiError, ApiRequest, ApiResult};
use super::render;
use crate::daemon::engine::Engine;
use crate::image::list_filter::{Endpoint, ImageFilter};
use crate::image::{ImageSummary, RemovedItem};

/// The image listing and disk usage routes; None for every other request.
pub fn route(
    engine: &Arc<Engine>,
    req: &mut ApiRequest,
    method: &str,
    segs: &[&str],
) -> Option<ApiResult<()>> {
    match (method, segs) {
        ("GET", ["images", "json"]) => Some(list(engine, req)),
        ("POST", ["images", "prune"]) => Some(prune(engine, req)),
        ("GET", ["system", "df"]) => Some(disk_usage(engine, req)),
        // Build steps are kept as images (pruned with them), not in a separate cache: there
        // is never anything for this route to free. Answering lets `docker system prune` run.
        ("POST", ["build", "prune"]) => {
            req.respond_json(200, &json!({ "CachesDeleted": null, "SpaceReclaimed": 0 }));
            Some(Ok(()))
        }
        _ => None,
    }
}

fn parse_filter(engine: &Engine, req: &ApiRequest, endpoint: Endpoint) -> ApiResult<ImageFilter> {
    let filters = render::parse_filters(req.q("filters")).map_err(ApiError::bad_request)?;
    let now = crate::timefmt::now_nanos();
    ImageFilter::parse(
        &filters,
        endpoint,
        |name| {
            let img = engine.images.resolve(name).map_err(|e| e.to_string())?;
            Ok(crate::timefmt::parse_secs(&img.created).unwrap_or(0))
        },
        |v| crate::timefmt::parse_since(v, now).map(|n| (n / 1_000_000_000) as i64),
    )
    .map_err(ApiError::bad_request)
}

/// Summaries with build parents, hidden intermediate images dropped unless `all`.
fn summaries(engine: &Engine, all: bool) -> Vec<ImageSummary> {
    let mut list = engine.images.list();
    crate::image::build::apply_parents(&engine.images, &mut list, all);
    list
}

fn list(engine: &Arc<Engine>, req: &mut ApiRequest) -> ApiResult<()> {
    let filter = parse_filter(engine, req, Endpoint::List)?;
    let mut out = Vec::new();
    for mut img in summaries(engine, req.flag("all")) {
        let unreferenced = img.repo_tags.is_empty() && img.repo_digests.is_empty();
        if !filter.keep(&mut img) {
            continue;
        }
        // As dockerd: dangling=true keeps images without tags (digests alone do not count),
        // dangling=false keeps images with some reference.
        match filter.dangling {
            Some(true) if !img.repo_tags.is_empty() => continue,
            Some(false) if unreferenced => continue,
            _ => {}
        }
        out.push(img);
    }
    req.respond_json(200, &out);
    Ok(())
}

/// `POST /images/prune`: untagged images by default, with `dangling=false` every image no
/// container uses; images a container uses are skipped, not errors.
fn prune(engine: &Arc<Engine>, req: &mut ApiRequest) -> ApiResult<()> {
    let filter = parse_filter(engine, req, Endpoint::Prune)?;
    let dangling_only = filter.dangling.unwrap_or(true);
    let (before, _) = engine.images.layer_usage();
    let mut deleted: Vec<Value> = Vec::new();
    for mut img in summaries(engine, !dangling_only) {
        if !filter.keep(&mut img) {
            continue;
        }
        if dangling_only && !img.repo_tags.is_empty() {
            continue;
        }
        if !engine.image_users(&img.id).is_empty() {
            continue;
        }
        // An image with other images built on it stays; removing the child first (later in
        // this loop or a next prune) frees it.
        if crate::image::build::has_children(&engine.images, &img.id) {
            continue;
        }
        let removed = match engine.images.remove(&img.id, true) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("image prune: {}: {e}", img.id);
                continue;
            }
        };
        let parents = crate::daemon::build::prune_parents(engine, &removed);
        for r in removed.iter().chain(&parents) {
            let (action, id, item) = match r {
                RemovedItem::Untagged(t) => ("untag", t, json!({ "Untagged": t })),
                RemovedItem::Deleted(d) => ("delete", d, json!({ "Deleted": d })),
            };
            engine.events.emit(
                "image",
                action,
                id,
                crate::daemon::events::attrs([("name", id.as_str())]),
            );
            deleted.push(item);
        }
    }
    let (after, _) = engine.images.layer_usage();
    engine.events.emit(
        "image",
        "prune",
        "",
        crate::daemon::events::attrs([("reclaimed", before.saturating_sub(after).to_string().as_str())]),
    );
    let deleted = if deleted.is_empty() {
        Value::Null
    } else {
        Value::Array(deleted)
    };
    req.respond_json(
        200,
        &json!({ "ImagesDeleted": deleted, "SpaceReclaimed": before.saturating_sub(after) }),
    );
    Ok(())
}

/// `GET /system/df`: images (with the containers using each and the bytes shared with other
/// images), containers (bytes written to their upper layer), local volumes, build cache.
fn disk_usage(engine: &Arc<Engine>, req: &mut ApiRequest) -> ApiResult<()> {
    let wanted: BTreeSet<String> = req.q_all("type").into_iter().collect();
    let want = |t: &str| wanted.is_empty() || wanted.contains(t);
    for t in &wanted {
        if !["image", "container", "volume", "build-cache"].contains(&t.as_str()) {
            return Err(ApiError::bad_request(format!("invalid type: {t}")));
        }
    }
    let now = crate::timefmt::now_nanos();
    let entries = engine.list();
    let mut body = json!({});
    if want("image") {
        let (layers_size, shared) = engine.images.layer_usage();
        let mut users: BTreeMap<String, i64> = BTreeMap::new();
        for e in &entries {
            *users.entry(e.lock().rec.image_id.clone()).or_insert(0) += 1;
        }
        let images: Vec<ImageSummary> = summaries(engine, true)
            .into_iter()
            .map(|mut img| {
                img.containers = users.get(&img.id).copied().unwrap_or(0);
                img.shared_size = shared.get(&img.id).copied().unwrap_or(0) as i64;
                img
            })
            .collect();
        body["LayersSize"] = json!(layers_size);
        body["Images"] = json!(images);
    }
    if want("container") {
        let mut rows: Vec<(String, Value)> = Vec::new();
        for e in &entries {
            let slot = e.lock();
            let rec = &slot.rec;
            let mut row = render::summary(rec, now);
            let rw = crate::daemon::volumes::dir_size(&e.dir.join("upper"));
            let image_size = engine.images.resolve(&rec.image_id).map(|i| i.size).unwrap_or(0);
            row["SizeRw"] = json!(rw);
            row["SizeRootFs"] = json!(rw + image_size);
            rows.push((rec.created.clone(), row));
        }
        crate::sort::sort_by(&mut rows, |a, b| b.0.cmp(&a.0));
        body["Containers"] = Value::Array(rows.into_iter().map(|r| r.1).collect());
    }
    if want("volume") {
        let mut refs: BTreeMap<String, i64> = BTreeMap::new();
        for e in &entries {
            for m in &e.lock().rec.mount_points {
                if m.kind == crate::daemon::mounts::MountType::Volume {
                    *refs.entry(m.name.clone()).or_insert(0) += 1;
                }
            }
        }
        let volumes: Vec<Value> = engine
            .volumes
            .list()
            .iter()
            .map(|v| {
                let mut j = engine.volumes.to_json(v);
                j["UsageData"] = json!({
                    "Size": engine.volumes.size(&v.name),
                    "RefCount": refs.get(&v.name).copied().unwrap_or(0),
                });
                j
            })
            .collect();
        body["Volumes"] = Value::Array(volumes);
    }
    if want("build-cache") {
        // Build steps are kept as images (listed above), not as a separate cache.
        body["BuildCache"] = json!([]);
    }
    req.respond_json(200, &body);
    Ok(())
}

/// `POST /containers/create?platform=`: an image present locally for another platform is
/// "not found" (404, docker's wording), so that the client pulls the requested variant.
pub fn check_platform(engine: &Engine, image: &str, platform: &str) -> ApiResult<()> {
    use crate::image::registry::manifest::Wanted;
    let want = Wanted::parse(platform).map_err(ApiError::bad_request)?;
    let Ok(img) = engine.images.resolve(image) else {
        // A missing image is the create route's own 404.
        return Ok(());
    };
    let variant_ok = match (&want.variant, &img.variant) {
        (Some(w), Some(have)) => w == have,
        _ => true,
    };
    if img.os == want.os && img.architecture == want.architecture && variant_ok {
        return Ok(());
    }
    let actual = match &img.variant {
        Some(v) => format!("{}/{}/{v}", img.os, img.architecture),
        None => format!("{}/{}", img.os, img.architecture),
    };
    Err(ApiError::new(
        404,
        format!("image with reference {image} was found but does not match the specified platform: wanted {platform}, actual: {actual}"),
    ))
}
