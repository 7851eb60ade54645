//! The `/volumes` routes of the Docker Engine API (list, create, inspect, remove, prune) and
//! in Docker's JSON shapes and status codes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::http::{ApiError, ApiRequest, ApiResult};
use super::render;
use crate::daemon::engine::Engine;

const JSON_LIMIT: usize = 1 << 20;

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: String,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

/// Route `/volumes...`; None when the path is not a volume route.
pub fn route(
    engine: &Arc<Engine>,
    req: &mut ApiRequest,
    method: &str,
    segs: &[&str],
) -> Option<ApiResult<()>> {
    let r = match (method, segs) {
        ("GET", ["volumes"]) => list(engine, req),
        ("POST", ["volumes", "create"]) => (|| {
            let body: CreateBody = req.json(JSON_LIMIT)?;
            let (v, _) = engine.volumes.create(
                Some(&body.name),
                &body.driver,
                body.driver_opts.filter(|o| !o.is_empty()),
                body.labels,
            )?;
            req.respond_json(201, &engine.volumes.to_json(&v));
            Ok(())
        })(),
        ("POST", ["volumes", "prune"]) => (|| {
            let filters = render::parse_filters(req.q("filters")).map_err(ApiError::bad_request)?;
            let (deleted, space) = engine.volumes.prune(&engine.volumes_in_use(), &filters)?;
            req.respond_json(
                200,
                &json!({ "VolumesDeleted": deleted, "SpaceReclaimed": space }),
            );
            Ok(())
        })(),
        ("GET", ["volumes", name]) => engine.volumes.get(name).map(|v| {
            let body = engine.volumes.to_json(&v);
            req.respond_json(200, &body)
        }),
        ("DELETE", ["volumes", name]) => engine
            .remove_volume(name, req.flag("force"))
            .map(|()| req.respond_empty(204)),
        _ => return None,
    };
    Some(r)
}

fn list(engine: &Arc<Engine>, req: &mut ApiRequest) -> ApiResult<()> {
    let filters = render::parse_filters(req.q("filters")).map_err(ApiError::bad_request)?;
    if filters.contains_key("all") {
        return Err(ApiError::bad_request("invalid filter 'all'"));
    }
    let used = engine.volumes_in_use();
    let mut out = Vec::new();
    for v in engine.volumes.list() {
        if crate::daemon::volumes::matches(&v, used.contains(&v.name), &filters)
            .map_err(ApiError::bad_request)?
        {
            out.push(engine.volumes.to_json(&v));
        }
    }
    req.respond_json(200, &json!({ "Volumes": out, "Warnings": null }));
    Ok(())
}
