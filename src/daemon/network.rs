//! Containers on networks: which networks a container joins (from `NetworkMode`,
//! `EndpointsConfig` and `network connect`), its namespace file, endpoints and published
//! ports at start, their release at exit and removal, and the `NetworkSettings` Docker shows.
//!
//! Guarantees: a container that failed to start or has exited holds no endpoint, no published
//! port and no namespace file (so no veth, rule or route stays behind); the first network a
//! container joins is the one named by its `NetworkMode` (it carries the default route).
//! Lock order is container slot, then the network manager.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::api::http::{ApiError, ApiResult};
use crate::api::types::{EndpointSettings, HostConfig, NetworkingConfig};
use crate::net::{self, Endpoint, NetworkManager, PortMapping, Proto};

use super::container::Record;
use super::engine::{short, Engine, Entry};

/// The namespace file of a container on bridge networks, in its directory.
pub const NETNS_FILE: &str = "netns";

/// How a container's network namespace is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Host,
    None,
    /// Bridge networks, by the name `NetworkMode` gives (`bridge` for the default).
    Networks(String),
}

/// Docker's `NetworkMode` values: "", "default" and "bridge" mean the default bridge.
pub fn mode_of(network_mode: &str) -> ApiResult<Mode> {
    match network_mode {
        "" | "default" | "bridge" => Ok(Mode::Networks(net::DEFAULT_NETWORK.into())),
        "host" => Ok(Mode::Host),
        "none" => Ok(Mode::None),
        m if m.starts_with("container:") => Err(ApiError::bad_request(format!(
            "network mode {m:?} is not supported: sharing another container's network namespace \
             is not implemented"
        ))),
        m => Ok(Mode::Networks(m.to_string())),
    }
}

/// Map a network manager error to Docker's status codes.
pub fn net_error(e: std::io::Error) -> ApiError {
    use std::io::ErrorKind::*;
    let status = match e.kind() {
        NotFound => 404,
        AlreadyExists | AddrInUse | AddrNotAvailable | ResourceBusy => 409,
        InvalidInput | Unsupported => 400,
        _ => 500,
    };
    ApiError::new(status, e.to_string())
}

/// The port mappings a container asks for: `PortBindings`, plus every exposed port to a free
/// host port under `PublishAllPorts`.
pub fn port_mappings(rec: &Record) -> ApiResult<Vec<PortMapping>> {
    let hc = &rec.host_config;
    let mut out = Vec::new();
    let mut bound = Vec::new();
    for (key, bindings) in hc.port_bindings.iter().flatten() {
        let (container_port, proto) = parse_port_key(key)?;
        bound.push(key.clone());
        for b in bindings.iter().flatten() {
            let host_ip = match b.host_ip.as_str() {
                "" | "0.0.0.0" => None,
                ip => match ip.parse::<Ipv4Addr>() {
                    Ok(a) => Some(a),
                    // IPv6 host addresses: containers have IPv4 only, like `-p [::]:...` skipped.
                    Err(_) if ip.contains(':') => continue,
                    Err(_) => {
                        return Err(ApiError::bad_request(format!(
                            "invalid host IP {ip:?} for port {key}"
                        )))
                    }
                },
            };
            let (host_port, host_port_end) = parse_host_ports(&b.host_port).ok_or_else(|| {
                ApiError::bad_request(format!("invalid host port {:?} for {key}", b.host_port))
            })?;
            out.push(PortMapping {
                host_ip,
                host_port,
                host_port_end,
                container_port,
                proto,
            });
        }
    }
    if hc.publish_all_ports {
        for key in rec.config.exposed_ports.iter().flat_map(|m| m.keys()) {
            if bound.contains(key) {
                continue;
            }
            let (container_port, proto) = parse_port_key(key)?;
            out.push(PortMapping {
                host_ip: None,
                host_port: 0,
                host_port_end: None,
                container_port,
                proto,
            });
        }
    }
    Ok(out)
}

/// `80/tcp`, `53/udp`, `80` (tcp).
fn parse_port_key(key: &str) -> ApiResult<(u16, Proto)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        p => {
            return Err(ApiError::bad_request(format!(
                "unsupported protocol {p:?} in port {key}"
            )))
        }
    };
    let port = port.parse::<u16>().ok().filter(|p| *p > 0);
    port.map(|p| (p, proto))
        .ok_or_else(|| ApiError::bad_request(format!("invalid container port {key:?}")))
}

/// "" (any free port), "8080", "8000-8010".
fn parse_host_ports(s: &str) -> Option<(u16, Option<u16>)> {
    if s.is_empty() {
        return Some((0, None));
    }
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.parse::<u16>().ok()?, b.parse::<u16>().ok()?);
            (a > 0 && b >= a).then_some((a, Some(b)))
        }
        None => s.parse::<u16>().ok().map(|p| (p, None)),
    }
}

/// The aliases a container has on `network`: its own (from the request), its hostname and,
/// on the default bridge, none (Docker's default bridge has no name resolution).
fn aliases_for(network: &str, settings: &EndpointSettings, hostname: &str) -> Vec<String> {
    if network == net::DEFAULT_NETWORK {
        return Vec::new();
    }
    let mut v = settings.aliases.clone().unwrap_or_default();
    if !hostname.is_empty() && !v.iter().any(|a| a == hostname) {
        v.push(hostname.to_string());
    }
    v
}

fn requested_ip(settings: &EndpointSettings) -> ApiResult<Option<Ipv4Addr>> {
    match settings
        .ipam_config
        .as_ref()
        .map(|c| c.ipv4_address.as_str())
        .unwrap_or("")
    {
        "" => Ok(None),
        ip => ip
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid IPv4 address {ip:?}"))),
    }
}

/// What /etc/hosts and /etc/resolv.conf need to know about a started container.
#[derive(Debug, Clone, Default)]
pub struct EtcNet {
    pub ip: Option<Ipv4Addr>,
    /// Gateway of its first network (`--add-host NAME:host-gateway`).
    pub gateway: Option<Ipv4Addr>,
    /// The embedded DNS of its first user-defined network.
    pub nameserver: Option<IpAddr>,
}

impl Engine {
    /// The network manager, its bridges, DNS listeners and rules in place (restored on the
    /// first call after start; a failure is logged and retried on the next call).
    pub fn net(&self) -> std::sync::MutexGuard<'_, NetworkManager> {
        let mut net = self.net_records();
        if !net.is_restored() {
            if let Err(e) = net.restore() {
                log::error!("{e}");
            }
        }
        net
    }

    /// The network manager as persisted, without waiting for its kernel side.
    fn net_records(&self) -> std::sync::MutexGuard<'_, NetworkManager> {
        // A panic while holding the manager leaves its persisted state whole; keep going.
        self.net.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The networks a new container joins, keyed by network name; checks they exist.
    pub fn initial_networks(
        &self,
        hc: &HostConfig,
        nc: &NetworkingConfig,
    ) -> ApiResult<BTreeMap<String, EndpointSettings>> {
        let mut out = BTreeMap::new();
        let Mode::Networks(primary) = mode_of(&hc.network_mode)? else {
            return Ok(out);
        };
        let configs = nc.endpoints_config.clone().unwrap_or_default();
        let net = self.net();
        let name_of = |n: &str| -> ApiResult<String> {
            let n = if matches!(n, "" | "default") {
                net::DEFAULT_NETWORK
            } else {
                n
            };
            let v = net.inspect(n).map_err(net_error)?;
            Ok(v["Name"].as_str().unwrap_or(n).to_string())
        };
        let primary_name = name_of(&primary)?;
        let mut primary_settings = configs.get(&primary).cloned().unwrap_or_default();
        for (n, settings) in &configs {
            let name = name_of(n)?;
            if name == primary_name {
                primary_settings = settings.clone();
            } else {
                out.insert(name, settings.clone());
            }
        }
        if primary_name == net::DEFAULT_NETWORK
            && primary_settings.aliases.as_ref().is_some_and(|a| !a.is_empty())
        {
            return Err(ApiError::bad_request(
                "network-scoped alias is supported only for containers in user defined networks",
            ));
        }
        out.insert(primary_name, primary_settings);
        Ok(out)
    }

    /// The networks of `rec` in joining order: the `NetworkMode` one first.
    fn join_order(net: &NetworkManager, rec: &Record) -> Vec<(String, EndpointSettings)> {
        let primary = match mode_of(&rec.host_config.network_mode) {
            // `NetworkMode` may name the network by id; the map is keyed by name.
            Ok(Mode::Networks(p)) => match net.inspect(&p) {
                Ok(v) => v["Name"].as_str().unwrap_or(&p).to_string(),
                Err(_) => p,
            },
            _ => return Vec::new(),
        };
        let mut v: Vec<(String, EndpointSettings)> = rec.networks.clone().into_iter().collect();
        crate::sort::sort_by_key(&mut v, |(name, _)| name != &primary);
        v
    }

    /// Make the container's namespace, join its networks and publish its ports. On error
    /// nothing stays behind.
    pub fn connect_at_start(
        &self,
        entry: &Entry,
        rec: &Record,
        hostname: &str,
    ) -> ApiResult<(PathBuf, EtcNet)> {
        let path = entry.dir.join(NETNS_FILE);
        // A namespace left by a daemon killed mid-start has no live user: start afresh.
        self.release_network(entry);
        net::netns::create(&path)
            .map_err(|e| ApiError::internal(format!("container {}: {e}", short(&entry.id))))?;
        let result = self.join_networks(entry, rec, hostname, &path);
        if result.is_err() {
            self.release_network(entry);
        }
        result.map(|etc| (path, etc))
    }

    fn join_networks(&self, entry: &Entry, rec: &Record, hostname: &str, path: &Path) -> ApiResult<EtcNet> {
        let mut net = self.net();
        let mut etc = EtcNet::default();
        for (name, settings) in Self::join_order(&net, rec) {
            let ip = requested_ip(&settings)?;
            let aliases = aliases_for(&name, &settings, hostname);
            let ep = net
                .attach(&entry.id, &rec.name, path, &name, &aliases, ip)
                .map_err(net_error)?;
            etc.ip.get_or_insert(ep.ip);
            etc.gateway.get_or_insert(ep.gateway);
            if name != net::DEFAULT_NETWORK && etc.nameserver.is_none() {
                etc.nameserver = net.dns_server_for(&name);
            }
        }
        if etc.nameserver.is_some() {
            net.set_container_upstreams(&entry.id, &dns_servers(&rec.host_config)?);
        }
        let ports = port_mappings(rec)?;
        if !ports.is_empty() {
            net.publish(&entry.id, &ports).map_err(net_error)?;
        }
        Ok(etc)
    }

    /// Withdraw the container's ports and endpoints and delete its namespace file; failures
    /// only warn, since the container is gone either way.
    pub fn release_network(&self, entry: &Entry) {
        let mut net = self.net();
        if let Err(e) = net.unpublish(&entry.id) {
            log::warn!("unpublishing ports of {}: {e}", short(&entry.id));
        }
        if let Err(e) = net.detach_all_exited(&entry.id) {
            log::warn!("disconnecting {}: {e}", short(&entry.id));
        }
        drop(net);
        if let Err(e) = net::netns::remove(&entry.dir.join(NETNS_FILE)) {
            log::warn!("{e}");
        }
    }

    /// At start-up: give back endpoints and ports of containers that no longer exist (a
    /// record lost to a power cut, a directory removed by hand), so their addresses return.
    pub fn forget_unknown_endpoints(&self, known: &[String]) {
        // Only records are read here; the kernel side is restored when there is work to do.
        let net = self.net_records();
        let mut owners: Vec<String> = Vec::new();
        for info in net.list() {
            if let Ok(v) = net.inspect(&info.id) {
                owners.extend(
                    v["Containers"]
                        .as_object()
                        .into_iter()
                        .flat_map(|m| m.keys().cloned()),
                );
            }
        }
        owners.sort();
        owners.dedup();
        owners.retain(|id| !known.contains(id));
        if owners.is_empty() {
            return;
        }
        drop(net);
        let mut net = self.net();
        for id in &owners {
            log::info!(
                "releasing the network endpoints of vanished container {}",
                short(id)
            );
            if let Err(e) = net.unpublish(id).and_then(|_| net.detach_all(id)) {
                log::warn!("releasing endpoints of {}: {e}", short(id));
            }
        }
    }

    /// `POST /networks/{id}/connect`: recorded for the next start, and joined now when the
    /// container runs.
    pub fn connect(&self, network: &str, container: &str, settings: EndpointSettings) -> ApiResult<()> {
        let entry = self.get(container)?;
        let mut slot = entry.lock();
        if !matches!(mode_of(&slot.rec.host_config.network_mode)?, Mode::Networks(_)) {
            return Err(ApiError::bad_request(format!(
                "container {} is on network mode {:?}: it cannot join other networks",
                slot.rec.name, slot.rec.host_config.network_mode
            )));
        }
        let mut net = self.net();
        let found = net.inspect(network).map_err(net_error)?;
        let name = found["Name"].as_str().unwrap_or(network).to_string();
        let net_id = found["Id"].as_str().unwrap_or_default().to_string();
        if matches!(name.as_str(), "host" | "none") {
            return Err(ApiError::bad_request(format!(
                "container cannot be connected to network {name}"
            )));
        }
        if slot.rec.networks.contains_key(&name) {
            return Err(ApiError::new(
                403,
                format!(
                    "endpoint with name {} already exists in network {name}",
                    slot.rec.name
                ),
            ));
        }
        let path = entry.dir.join(NETNS_FILE);
        if slot.rec.state.status.is_active() && path.exists() {
            let ip = requested_ip(&settings)?;
            let hostname = if slot.rec.config.hostname.is_empty() {
                short(&entry.id)
            } else {
                &slot.rec.config.hostname
            };
            let aliases = aliases_for(&name, &settings, hostname);
            net.attach(&entry.id, &slot.rec.name, &path, &name, &aliases, ip)
                .map_err(net_error)?;
        }
        drop(net);
        slot.rec.networks.insert(name.clone(), settings);
        atomic_save(&entry, &slot.rec)?;
        self.network_event("connect", &net_id, &name, Some(&entry.id));
        Ok(())
    }

    /// Announce a network event (`container` set for connect/disconnect).
    pub fn network_event(&self, action: &str, id: &str, name: &str, container: Option<&str>) {
        let mut attrs = super::events::attrs([("name", name), ("type", "bridge")]);
        if let Some(c) = container {
            attrs.insert("container".into(), c.to_string());
        }
        self.events.emit("network", action, id, attrs);
    }

    /// `POST /networks/{id}/disconnect`.
    pub fn disconnect(&self, network: &str, container: &str) -> ApiResult<()> {
        let entry = self.get(container)?;
        let mut slot = entry.lock();
        let mut net = self.net();
        let found = net.inspect(network).map_err(net_error)?;
        let name = found["Name"].as_str().unwrap_or(network).to_string();
        let net_id = found["Id"].as_str().unwrap_or_default().to_string();
        let attached = net.endpoints_of(&entry.id).iter().any(|(n, _)| *n == name);
        if !attached && !slot.rec.networks.contains_key(&name) {
            return Err(ApiError::bad_request(format!(
                "container {} is not connected to network {name}",
                slot.rec.name
            )));
        }
        if attached {
            net.detach(&entry.id, &name).map_err(net_error)?;
        }
        drop(net);
        slot.rec.networks.remove(&name);
        atomic_save(&entry, &slot.rec)?;
        self.network_event("disconnect", &net_id, &name, Some(&entry.id));
        Ok(())
    }

    /// `NetworkSettings` of `GET /containers/{id}/json`.
    pub fn network_settings(&self, rec: &Record) -> Value {
        let net = self.net();
        let endpoints = net.endpoints_of(&rec.id);
        let published = net.published(&rec.id);
        let mut networks = serde_json::Map::new();
        for (name, ep) in &endpoints {
            let net_id = net
                .inspect(name)
                .ok()
                .and_then(|v| v["Id"].as_str().map(String::from))
                .unwrap_or_default();
            let settings = rec.networks.get(name).cloned().unwrap_or_default();
            networks.insert(name.clone(), endpoint_json(ep, &net_id, settings));
        }
        // Stopped containers still show the networks they will join, without addresses.
        for (name, s) in &rec.networks {
            if !networks.contains_key(name) {
                let net_id = net
                    .inspect(name)
                    .ok()
                    .and_then(|v| v["Id"].as_str().map(String::from))
                    .unwrap_or_default();
                networks.insert(
                    name.clone(),
                    json!({"Aliases": s.aliases, "NetworkID": net_id, "EndpointID": "", "Gateway": "",
                           "IPAddress": "", "IPPrefixLen": 0, "MacAddress": "", "IPAMConfig": s.ipam_config}),
                );
            }
        }
        if matches!(rec.host_config.network_mode.as_str(), "host" | "none") && networks.is_empty() {
            let name = rec.host_config.network_mode.clone();
            let net_id = net
                .inspect(&name)
                .ok()
                .and_then(|v| v["Id"].as_str().map(String::from))
                .unwrap_or_default();
            networks.insert(
                name,
                json!({"NetworkID": net_id, "EndpointID": "", "Gateway": "", "IPAddress": "",
                                          "IPPrefixLen": 0, "MacAddress": "", "Aliases": null}),
            );
        }
        let first = endpoints.first().map(|(_, e)| e);
        let running = rec.state.status.is_active();
        json!({
            "Bridge": "",
            "SandboxID": "",
            "SandboxKey": if running && first.is_some() { rec_netns(rec) } else { String::new() },
            "Ports": ports_json(rec, &published),
            "IPAddress": first.map(|e| e.ip.to_string()).unwrap_or_default(),
            "IPPrefixLen": first.map(|e| e.prefix).unwrap_or(0),
            "Gateway": first.map(|e| e.gateway.to_string()).unwrap_or_default(),
            "MacAddress": first.map(|e| e.mac.clone()).unwrap_or_default(),
            "Networks": networks,
        })
    }

    /// `Ports` and `NetworkSettings` of one row of `GET /containers/json`.
    pub fn summary_network(&self, rec: &Record) -> (Value, Value) {
        let settings = self.network_settings(rec);
        let net = self.net();
        let published = net.published(&rec.id);
        let mut ports = Vec::new();
        for m in &published {
            ports.push(json!({
                "IP": m.host_ip.map(|a| a.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
                "PrivatePort": m.container_port, "PublicPort": m.host_port, "Type": m.proto.as_str(),
            }));
        }
        for key in rec.config.exposed_ports.iter().flat_map(|m| m.keys()) {
            if let Ok((port, proto)) = parse_port_key(key) {
                if !published
                    .iter()
                    .any(|m| m.container_port == port && m.proto == proto)
                {
                    ports.push(json!({"PrivatePort": port, "Type": proto.as_str()}));
                }
            }
        }
        (Value::Array(ports), json!({"Networks": settings["Networks"]}))
    }
}

fn rec_netns(rec: &Record) -> String {
    format!("/proc/{}/ns/net", rec.state.pid)
}

fn endpoint_json(ep: &Endpoint, net_id: &str, settings: EndpointSettings) -> Value {
    json!({
        "IPAMConfig": settings.ipam_config,
        "Links": null,
        "Aliases": settings.aliases,
        "NetworkID": net_id,
        "EndpointID": format!("{:x}", fnv(&format!("{net_id}{}", ep.ip))),
        "Gateway": ep.gateway.to_string(),
        "IPAddress": ep.ip.to_string(),
        "IPPrefixLen": ep.prefix,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": ep.mac,
        "DriverOpts": null,
    })
}

/// A stable stand-in id for an endpoint, as the manager keeps its own internally.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Docker's `Ports` map: every exposed or published port, with its host bindings or null.
fn ports_json(rec: &Record, published: &[PortMapping]) -> Value {
    let mut map = serde_json::Map::new();
    for key in rec.config.exposed_ports.iter().flat_map(|m| m.keys()) {
        let k = if key.contains('/') {
            key.clone()
        } else {
            format!("{key}/tcp")
        };
        map.insert(k, Value::Null);
    }
    for m in published {
        let key = format!("{}/{}", m.container_port, m.proto.as_str());
        let binding = json!({
            "HostIp": m.host_ip.map(|a| a.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
            "HostPort": m.host_port.to_string(),
        });
        match map.get_mut(&key) {
            Some(Value::Array(list)) => list.push(binding),
            _ => {
                map.insert(key, json!([binding]));
            }
        }
    }
    Value::Object(map)
}

fn atomic_save(entry: &Entry, rec: &Record) -> ApiResult<()> {
    crate::storage::atomic::write_json(&entry.dir.join("container.json"), rec)
        .map_err(|e| ApiError::internal(format!("saving state of container {}: {e}", entry.id)))
}

/// `--dns` servers as addresses; anything else is the client's error.
pub fn dns_servers(hc: &HostConfig) -> ApiResult<Vec<IpAddr>> {
    hc.dns
        .iter()
        .flatten()
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|_| ApiError::bad_request(format!("invalid --dns {s:?}: not an IP address")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::PortBinding;

    #[test]
    fn network_modes_like_docker() {
        assert_eq!(mode_of("").unwrap(), Mode::Networks("bridge".into()));
        assert_eq!(mode_of("default").unwrap(), Mode::Networks("bridge".into()));
        assert_eq!(mode_of("host").unwrap(), Mode::Host);
        assert_eq!(mode_of("none").unwrap(), Mode::None);
        assert_eq!(mode_of("mynet").unwrap(), Mode::Networks("mynet".into()));
        assert_eq!(mode_of("container:abc").unwrap_err().status, 400);
    }

    #[test]
    fn port_bindings_and_publish_all() {
        let mut rec = Record::default();
        let mut b = BTreeMap::new();
        b.insert(
            "80/tcp".to_string(),
            Some(vec![PortBinding {
                host_ip: "".into(),
                host_port: "8080".into(),
            }]),
        );
        b.insert(
            "53/udp".to_string(),
            Some(vec![PortBinding {
                host_ip: "127.0.0.1".into(),
                host_port: "5300-5310".into(),
            }]),
        );
        rec.host_config.port_bindings = Some(b);
        rec.host_config.publish_all_ports = true;
        let mut exposed = BTreeMap::new();
        exposed.insert("80/tcp".to_string(), json!({}));
        exposed.insert("9000/tcp".to_string(), json!({}));
        rec.config.exposed_ports = Some(exposed);
        let m = port_mappings(&rec).unwrap();
        assert_eq!(m.len(), 3);
        assert!(m.contains(&PortMapping {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: 5300,
            host_port_end: Some(5310),
            container_port: 53,
            proto: Proto::Udp
        }));
        assert!(m.iter().any(|p| p.container_port == 80 && p.host_port == 8080));
        assert!(m.iter().any(|p| p.container_port == 9000 && p.host_port == 0));
        let bad = BTreeMap::from([("x/tcp".to_string(), None)]);
        rec.host_config.port_bindings = Some(bad);
        assert_eq!(port_mappings(&rec).unwrap_err().status, 400);
    }
}
