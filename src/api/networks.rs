//! The `/networks` routes of the Docker Engine API: list, inspect, create, remove, connect,
//! disconnect and prune, in Docker's JSON shapes and status codes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{ApiError, ApiRequest, ApiResult};
use super::render;
use super::types::EndpointSettings;
use crate::daemon::engine::Engine;
use crate::daemon::network::net_error;
use crate::net::{NetworkOptions, BRIDGE_NAME_OPTION};

const JSON_LIMIT: usize = 1 << 20;

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: String,
    internal: bool,
    #[serde(rename = "IPAM")]
    ipam: Ipam,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    driver: String,
    config: Option<Vec<IpamConfig>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    subnet: String,
    #[serde(rename = "IPRange")]
    ip_range: String,
    gateway: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectBody {
    container: String,
    endpoint_config: Option<EndpointSettings>,
}

/// Route `/networks...`; None when the path is not a network route.
pub fn route(
    engine: &Arc<Engine>,
    req: &mut ApiRequest,
    method: &str,
    segs: &[&str],
) -> Option<ApiResult<()>> {
    let r = match (method, segs) {
        ("GET", ["networks"]) => list(engine, req),
        ("GET", ["networks", id]) => {
            let v = engine.net().inspect(id).map_err(net_error);
            v.map(|v| req.respond_json(200, &v))
        }
        ("POST", ["networks", "create"]) => create(engine, req),
        ("POST", ["networks", "prune"]) => {
            let removed = prune(engine);
            removed.map(|names| req.respond_json(200, &json!({ "NetworksDeleted": names })))
        }
        ("DELETE", ["networks", id]) => remove(engine, id).map(|_| req.respond_empty(204)),
        ("POST", ["networks", id, "connect"]) => (|| {
            let body: ConnectBody = req.json(JSON_LIMIT)?;
            engine.connect(id, &body.container, body.endpoint_config.unwrap_or_default())?;
            req.respond_empty(200);
            Ok(())
        })(),
        ("POST", ["networks", id, "disconnect"]) => (|| {
            let body: ConnectBody = req.json(JSON_LIMIT)?;
            engine.disconnect(id, &body.container)?;
            req.respond_empty(200);
            Ok(())
        })(),
        _ => return None,
    };
    Some(r)
}

fn list(engine: &Arc<Engine>, req: &mut ApiRequest) -> ApiResult<()> {
    let filters = render::parse_filters(req.q("filters")).map_err(ApiError::bad_request)?;
    let net = engine.net();
    let mut out = Vec::new();
    for info in net.list() {
        let Ok(v) = net.inspect(&info.id) else { continue };
        if filters.iter().all(|(k, vals)| match k.as_str() {
            // As dockerd: label conditions are all required; other keys take any value.
            "label" => vals.iter().all(|want| filter_matches(&v, k, want)),
            _ => vals.iter().any(|want| filter_matches(&v, k, want)),
        }) {
            out.push(v);
        }
    }
    drop(net);
    req.respond_json(200, &out);
    Ok(())
}

/// `name` and `id` match by substring and prefix, as dockerd; `type` is custom or builtin.
fn filter_matches(v: &Value, key: &str, want: &str) -> bool {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    match key {
        "name" => s("Name").contains(want),
        "id" => s("Id").starts_with(want),
        "driver" => s("Driver") == want,
        "scope" => want == "local",
        "type" => {
            let builtin = matches!(s("Name").as_str(), "bridge" | "host" | "none");
            (want == "builtin") == builtin
        }
        "label" => match want.split_once('=') {
            Some((k, val)) => v["Labels"][k].as_str() == Some(val),
            None => !v["Labels"][want].is_null(),
        },
        _ => false,
    }
}

fn create(engine: &Arc<Engine>, req: &mut ApiRequest) -> ApiResult<()> {
    let body: CreateBody = req.json(JSON_LIMIT)?;
    if !matches!(body.ipam.driver.as_str(), "" | "default") {
        return Err(ApiError::bad_request(format!(
            "IPAM driver {:?} is not supported",
            body.ipam.driver
        )));
    }
    let configs = body.ipam.config.unwrap_or_default();
    if configs.len() > 1 {
        return Err(ApiError::bad_request(
            "only one IPAM config (subnet) per network is supported",
        ));
    }
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let first = configs.first();
    let mut options = body.options.unwrap_or_default();
    let opts = NetworkOptions {
        driver: body.driver,
        subnet: first.and_then(|c| nonempty(&c.subnet)),
        gateway: first.and_then(|c| nonempty(&c.gateway)),
        ip_range: first.and_then(|c| nonempty(&c.ip_range)),
        internal: body.internal,
        labels: body.labels.unwrap_or_default(),
        bridge_name: options.remove(BRIDGE_NAME_OPTION),
    };
    let info = engine.net().create(&body.name, opts).map_err(net_error)?;
    engine.network_event("create", &info.id, &body.name, None);
    req.respond_json(201, &json!({ "Id": info.id, "Warning": "" }));
    Ok(())
}

/// `DELETE /networks/{id}`, announcing the removal.
pub fn remove(engine: &Engine, id: &str) -> ApiResult<()> {
    let mut net = engine.net();
    let found = net.inspect(id).map_err(net_error)?;
    net.remove(id).map_err(net_error)?;
    drop(net);
    let name = found["Name"].as_str().unwrap_or(id);
    engine.network_event("destroy", found["Id"].as_str().unwrap_or(id), name, None);
    Ok(())
}

/// `POST /networks/prune`: the names removed, each announced.
pub fn prune(engine: &Engine) -> ApiResult<Vec<String>> {
    let mut net = engine.net();
    let ids: BTreeMap<String, String> = net
        .list()
        .into_iter()
        .map(|n| (n.name.clone(), n.id.clone()))
        .collect();
    let removed = net.prune().map_err(net_error)?;
    drop(net);
    for name in &removed {
        let id = ids.get(name).map(String::as_str).unwrap_or(name);
        engine.network_event("destroy", id, name, None);
    }
    Ok(removed)
}
