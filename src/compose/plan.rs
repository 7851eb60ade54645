//! From the model to Docker Engine API requests, named and labelled as docker compose v2
//! does, so `ps`/`down` (ours or docker compose's) find the objects again by label.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::emit::{service_out, to_yaml};
use super::model::{MountType, Network, Project, Service, Volume};

pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_NUMBER: &str = "com.docker.compose.container-number";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
pub const LABEL_HASH: &str = "com.docker.compose.config-hash";
pub const LABEL_WORKDIR: &str = "com.docker.compose.project.working_dir";
pub const LABEL_FILES: &str = "com.docker.compose.project.config_files";
pub const LABEL_VERSION: &str = "com.docker.compose.version";
pub const LABEL_NETWORK: &str = "com.docker.compose.network";
pub const LABEL_VOLUME: &str = "com.docker.compose.volume";
pub const LABEL_DEPENDS: &str = "com.docker.compose.depends_on";
pub const LABEL_IMAGE: &str = "com.docker.compose.image";
/// The compose version these labels say made the objects.
pub const COMPOSE_VERSION: &str = "2.29.0";

/// Hash of the service's normalised definition: `up` recreates a container whose label differs.
pub fn config_hash(service: &Service) -> String {
    let text = to_yaml(&service_out(service));
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn container_name(project: &Project, service: &Service, number: u32) -> String {
    match &service.container_name {
        Some(n) => n.clone(),
        None => format!("{}-{}-{number}", project.name, service.name),
    }
}

/// The container's network attachments: `(engine network name, aliases, ipv4)`, primary first.
pub fn attachments(project: &Project, service: &Service) -> Vec<(String, Vec<String>, Option<String>)> {
    if service.network_mode.is_some() {
        return Vec::new();
    }
    let mut keys: Vec<(&String, Option<&super::model::ServiceNetwork>)> = if service.networks.is_empty() {
        vec![]
    } else {
        service.networks.iter().map(|(k, v)| (k, v.as_ref())).collect()
    };
    let default = "default".to_string();
    if keys.is_empty() {
        keys.push((&default, None));
    }
    keys.iter()
        .filter_map(|(k, sn)| {
            let net = project.networks.get(*k)?;
            let mut aliases = vec![service.name.clone()];
            if let Some(sn) = sn {
                aliases.extend(sn.aliases.iter().cloned());
            }
            Some((net.name.clone(), aliases, sn.and_then(|s| s.ipv4_address.clone())))
        })
        .collect()
}

fn project_labels(project: &Project) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_PROJECT.to_string(), project.name.clone()),
        (LABEL_VERSION.to_string(), COMPOSE_VERSION.to_string()),
    ])
}

/// `POST /containers/create` body for replica `number` of `service`.
pub fn create_body(project: &Project, service: &Service, number: u32, oneoff: bool, hash: &str) -> Value {
    let mut labels = service.labels.clone();
    labels.extend(project_labels(project));
    labels.insert(LABEL_SERVICE.into(), service.name.clone());
    labels.insert(LABEL_NUMBER.into(), number.to_string());
    labels.insert(LABEL_ONEOFF.into(), if oneoff { "True" } else { "False" }.into());
    labels.insert(LABEL_HASH.into(), hash.to_string());
    labels.insert(LABEL_WORKDIR.into(), project.working_dir.clone());
    labels.insert(LABEL_FILES.into(), project.config_files.join(","));
    labels.insert(LABEL_IMAGE.into(), service.image_name(&project.name));
    if !service.depends_on.is_empty() {
        let deps: Vec<String> = service
            .depends_on
            .iter()
            .map(|(k, d)| format!("{k}:{}:{}", d.condition.as_str(), d.restart))
            .collect();
        labels.insert(LABEL_DEPENDS.into(), deps.join(","));
    }
    let env: Vec<String> = service
        .environment
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    let mut exposed: BTreeMap<String, Value> = BTreeMap::new();
    let mut bindings: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in &service.expose {
        let key = if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        };
        exposed.insert(key, json!({}));
    }
    for p in &service.ports {
        let key = format!("{}/{}", p.target, p.protocol);
        exposed.insert(key.clone(), json!({}));
        bindings.entry(key).or_default().push(json!({
            "HostIp": p.host_ip.clone().unwrap_or_default(),
            "HostPort": p.published.clone().unwrap_or_default(),
        }));
    }
    let mut mounts: Vec<Value> = Vec::new();
    for m in &service.volumes {
        let source = match (m.kind, &m.source) {
            (MountType::Volume, Some(key)) => project
                .volumes
                .get(key)
                .map(|v| v.name.clone())
                .unwrap_or_else(|| key.clone()),
            (_, Some(s)) => s.clone(),
            (_, None) => String::new(),
        };
        let mut mount =
            json!({ "Type": m.kind.as_str(), "Source": source, "Target": m.target, "ReadOnly": m.read_only });
        match m.kind {
            MountType::Bind => mount["BindOptions"] = json!({ "CreateMountpoint": m.create_host_path }),
            MountType::Volume => mount["VolumeOptions"] = json!({ "NoCopy": m.nocopy }),
            MountType::Tmpfs => {
                if let Some(size) = m.tmpfs_size {
                    mount["TmpfsOptions"] = json!({ "SizeBytes": size });
                }
            }
        }
        mounts.push(mount);
    }
    // File secrets and configs are read-only bind mounts, as compose does without swarm.
    for (refs, defined, dir) in [
        (&service.secrets, &project.secrets, "/run/secrets/"),
        (&service.configs, &project.configs, "/"),
    ] {
        for r in refs {
            let Some(obj) = defined.get(&r.source) else {
                continue;
            };
            let Some(file) = &obj.file else { continue };
            let target = match &r.target {
                Some(t) if t.starts_with('/') => t.clone(),
                Some(t) => format!("{dir}{t}"),
                None => format!("{dir}{}", r.source),
            };
            mounts.push(json!({ "Type": "bind", "Source": file, "Target": target, "ReadOnly": true }));
        }
    }
    let tmpfs: BTreeMap<String, String> = service
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((p, o)) => (p.to_string(), o.to_string()),
            None => (t.clone(), String::new()),
        })
        .collect();
    let nets = attachments(project, service);
    let network_mode = match (&service.network_mode, nets.first()) {
        (Some(m), _) => m
            .strip_prefix("service:")
            .map(|s| format!("container:{}-{s}-1", project.name))
            .unwrap_or_else(|| m.clone()),
        (None, Some((n, _, _))) => n.clone(),
        (None, None) => "default".into(),
    };
    let endpoints: BTreeMap<String, Value> = nets
        .iter()
        .take(1)
        .map(|(n, aliases, ip)| {
            let mut ep = json!({ "Aliases": aliases });
            if let Some(ip) = ip {
                ep["IPAMConfig"] = json!({ "IPv4Address": ip });
            }
            (n.clone(), ep)
        })
        .collect();
    let (restart_name, restart_max) = restart_policy(service);
    let mut host = json!({
        "NetworkMode": network_mode,
        "RestartPolicy": { "Name": restart_name, "MaximumRetryCount": restart_max },
        "PortBindings": bindings,
        "Mounts": mounts,
        "CapAdd": service.cap_add,
        "CapDrop": service.cap_drop,
        "Privileged": service.privileged,
        "ReadonlyRootfs": service.read_only,
        "Dns": service.dns,
        "ExtraHosts": service.extra_hosts.iter().map(|h| h.replacen('=', ":", 1)).collect::<Vec<_>>(),
    });
    if !tmpfs.is_empty() {
        host["Tmpfs"] = json!(tmpfs);
    }
    if let Some(i) = service.init {
        host["Init"] = json!(i);
    }
    if let Some(d) = &service.deploy {
        if let Some(m) = d.limits.memory {
            host["Memory"] = json!(m);
        }
        if let Some(c) = d.limits.cpus.as_deref().and_then(|c| c.parse::<f64>().ok()) {
            host["NanoCpus"] = json!((c * 1e9) as i64);
        }
        if let Some(p) = d.limits.pids {
            host["PidsLimit"] = json!(p);
        }
    }
    let mut body = json!({
        "Image": service.image_name(&project.name),
        "Env": env,
        "Labels": labels,
        "ExposedPorts": exposed,
        "Tty": service.tty,
        "OpenStdin": service.stdin_open,
        "HostConfig": host,
        "NetworkingConfig": { "EndpointsConfig": endpoints },
    });
    if let Some(c) = &service.command {
        body["Cmd"] = json!(c);
    }
    if let Some(e) = &service.entrypoint {
        body["Entrypoint"] = json!(e);
    }
    for (field, value) in [
        ("Hostname", &service.hostname),
        ("Domainname", &service.domainname),
        ("User", &service.user),
        ("WorkingDir", &service.working_dir),
        ("StopSignal", &service.stop_signal),
    ] {
        if let Some(v) = value {
            body[field] = json!(v);
        }
    }
    if let Some(g) = service
        .stop_grace_period
        .as_deref()
        .and_then(crate::timefmt::parse_duration)
    {
        body["StopTimeout"] = json!(g.as_secs());
    }
    if let Some(h) = &service.healthcheck {
        body["Healthcheck"] = healthcheck_body(h);
    }
    body
}

fn duration_nanos(d: &Option<String>) -> i64 {
    d.as_deref()
        .and_then(crate::timefmt::parse_duration)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn healthcheck_body(h: &super::model::Healthcheck) -> Value {
    let test = if h.disable {
        vec!["NONE".to_string()]
    } else {
        h.test.clone()
    };
    json!({
        "Test": test,
        "Interval": duration_nanos(&h.interval),
        "Timeout": duration_nanos(&h.timeout),
        "Retries": h.retries.unwrap_or(0),
        "StartPeriod": duration_nanos(&h.start_period),
        "StartInterval": duration_nanos(&h.start_interval),
    })
}

/// `restart:` wins; else `deploy.restart_policy` maps onto the engine's policies.
fn restart_policy(service: &Service) -> (String, u64) {
    if let Some(r) = &service.restart {
        let (name, max) = r.split_once(':').unwrap_or((r, "0"));
        return (name.to_string(), max.parse().unwrap_or(0));
    }
    if let Some(rp) = service.deploy.as_ref().and_then(|d| d.restart_policy.as_ref()) {
        let name = match rp.condition.as_deref() {
            Some("none") => "no",
            Some("on-failure") => "on-failure",
            _ => "always",
        };
        return (name.into(), rp.max_attempts.unwrap_or(0));
    }
    ("no".into(), 0)
}

/// `POST /networks/create` body.
pub fn network_body(project: &Project, key: &str, net: &Network) -> Value {
    let mut labels = net.labels.clone();
    labels.extend(project_labels(project));
    labels.insert(LABEL_NETWORK.into(), key.to_string());
    let configs: Vec<Value> = net
        .ipam
        .iter()
        .map(|c| {
            let mut v = json!({});
            if let Some(s) = &c.subnet {
                v["Subnet"] = json!(s);
            }
            if let Some(g) = &c.gateway {
                v["Gateway"] = json!(g);
            }
            if let Some(r) = &c.ip_range {
                v["IPRange"] = json!(r);
            }
            v
        })
        .collect();
    let mut body = json!({
        "Name": net.name,
        "Driver": net.driver.clone().unwrap_or_else(|| "bridge".into()),
        "Internal": net.internal,
        "Attachable": net.attachable,
        "EnableIPv6": net.enable_ipv6,
        "Options": net.driver_opts,
        "Labels": labels,
        "CheckDuplicate": true,
    });
    if !configs.is_empty() {
        body["IPAM"] = json!({ "Driver": net.ipam_driver.clone().unwrap_or_else(|| "default".into()), "Config": configs });
    }
    body
}

/// `POST /volumes/create` body.
pub fn volume_body(project: &Project, key: &str, vol: &Volume) -> Value {
    let mut labels = vol.labels.clone();
    labels.extend(project_labels(project));
    labels.insert(LABEL_VOLUME.into(), key.to_string());
    json!({
        "Name": vol.name,
        "Driver": vol.driver.clone().unwrap_or_else(|| "local".into()),
        "DriverOpts": vol.driver_opts,
        "Labels": labels,
    })
}

/// A `filters=` query value selecting this project's objects.
pub fn project_filter(project: &str, extra: &[(&str, &str)]) -> String {
    let mut labels = vec![format!("{LABEL_PROJECT}={project}")];
    for (k, v) in extra {
        labels.push(format!("{k}={v}"));
    }
    json!({ "label": labels }).to_string()
}

/// What `up` does with one existing replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Keep,
    Recreate,
    Remove,
}

/// Keep replicas whose hash matches (unless forced), recreate the others, remove the ones
/// beyond the wanted scale.
pub fn decide(
    number: u32,
    wanted: u32,
    hash_matches: bool,
    force_recreate: bool,
    no_recreate: bool,
) -> Decision {
    if number > wanted {
        Decision::Remove
    } else if no_recreate || (hash_matches && !force_recreate) {
        Decision::Keep
    } else {
        Decision::Recreate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        assert_eq!(decide(1, 1, true, false, false), Decision::Keep);
        assert_eq!(decide(1, 1, false, false, false), Decision::Recreate);
        assert_eq!(decide(1, 1, true, true, false), Decision::Recreate);
        assert_eq!(decide(1, 1, false, false, true), Decision::Keep);
        assert_eq!(decide(3, 2, true, false, false), Decision::Remove);
    }

    fn project(text: &str) -> Project {
        let env = |_: &str| None;
        let read = |p: &str| Err(format!("{p}: not in this test"));
        let input = crate::compose::load::Input {
            files: vec![("/srv/app/compose.yaml".into(), text.into())],
            working_dir: "/srv/app".into(),
            env: &env,
            project_name: None,
            profiles: Vec::new(),
            requested: Vec::new(),
            read_file: &read,
        };
        crate::compose::load::load(&input).unwrap().project
    }

    #[test]
    fn create_body_names_labels_mounts_and_networks() {
        let p = project(
            "services:\n  web:\n    image: busybox\n    ports: ['8080:80', '53:53/udp']\n    volumes: [data:/data, ./site:/site:ro]\n    secrets: [token]\n    networks:\n      front:\n        aliases: [www]\n      back:\n    restart: on-failure:3\n    healthcheck:\n      test: true\n      interval: 2s\nnetworks:\n  front:\n  back:\nvolumes:\n  data:\nsecrets:\n  token:\n    file: ./token.txt\n",
        );
        let web = &p.services["web"];
        assert_eq!(container_name(&p, web, 2), "app-web-2");
        let hash = config_hash(web);
        let b = create_body(&p, web, 2, false, &hash);
        assert_eq!(b["Labels"][LABEL_PROJECT], "app");
        assert_eq!(b["Labels"][LABEL_NUMBER], "2");
        assert_eq!(b["Labels"][LABEL_ONEOFF], "False");
        assert_eq!(b["Labels"][LABEL_HASH], hash.as_str());
        assert_eq!(b["Labels"][LABEL_FILES], "/srv/app/compose.yaml");
        assert_eq!(b["HostConfig"]["PortBindings"]["53/udp"][0]["HostPort"], "53");
        assert_eq!(
            b["HostConfig"]["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        let mounts = b["HostConfig"]["Mounts"].as_array().unwrap();
        assert_eq!(mounts[0]["Source"], "app_data");
        assert_eq!(
            (
                mounts[1]["Type"].as_str(),
                mounts[1]["Source"].as_str(),
                mounts[1]["ReadOnly"].as_bool()
            ),
            (Some("bind"), Some("/srv/app/site"), Some(true))
        );
        assert_eq!(
            mounts[2],
            json!({"Type": "bind", "Source": "/srv/app/token.txt", "Target": "/run/secrets/token", "ReadOnly": true})
        );
        // The first network at create (alphabetical: back), the others connected after.
        assert_eq!(b["HostConfig"]["NetworkMode"], "app_back");
        let nets = attachments(&p, web);
        assert_eq!(
            nets[1],
            (
                "app_front".to_string(),
                vec!["web".to_string(), "www".to_string()],
                None
            )
        );
        assert_eq!(b["Healthcheck"]["Test"], json!(["CMD-SHELL", "true"]));
        assert_eq!(b["Healthcheck"]["Interval"], json!(2_000_000_000i64));
        // The hash follows the definition, not where it was written.
        let mut changed = web.clone();
        changed.environment.insert("X".into(), Some("1".into()));
        assert_ne!(config_hash(&changed), hash);
        assert_eq!(config_hash(&web.clone()), hash);
    }

    #[test]
    fn filter_shape() {
        assert_eq!(
            project_filter("p", &[(LABEL_SERVICE, "web")]),
            r#"{"label":["com.docker.compose.project=p","com.docker.compose.service=web"]}"#
        );
    }
}
