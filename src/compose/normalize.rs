//! From the merged, interpolated tree to the typed [`Project`]: each field accepts the
//! syntaxes the compose spec allows and is checked, with errors at the offending node.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::error::{ComposeError, Files, Pos};
use super::model::*;
use super::yaml::{Node, Value};

/// Service keys shoal reads. Other keys of the compose spec are accepted and ignored with
/// a warning (so real files keep loading); anything else is an error.
const SERVICE_KEYS: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "tmpfs",
    "networks",
    "network_mode",
    "depends_on",
    "restart",
    "healthcheck",
    "deploy",
    "secrets",
    "configs",
    "labels",
    "hostname",
    "domainname",
    "working_dir",
    "user",
    "cap_add",
    "cap_drop",
    "read_only",
    "privileged",
    "init",
    "tty",
    "stdin_open",
    "container_name",
    "profiles",
    "stop_grace_period",
    "stop_signal",
    "extra_hosts",
    "dns",
    "scale",
    "pull_policy",
    "extends",
];
const IGNORED_SERVICE_KEYS: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "cgroup",
    "cgroup_parent",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns_opt",
    "dns_search",
    "external_links",
    "group_add",
    "ipc",
    "isolation",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "runtime",
    "security_opt",
    "shm_size",
    "storage_opt",
    "sysctls",
    "ulimits",
    "userns_mode",
    "uts",
    "volumes_from",
    "label_file",
    "post_start",
    "pre_stop",
    "models",
    "provider",
    "gpus",
    "use_api_socket",
    "mem_swappiness",
];
const TOP_KEYS: &[&str] = &[
    "version", "name", "services", "networks", "volumes", "secrets", "configs", "include", "models",
];

/// Normalisation state: where errors point and what is only worth a warning.
pub struct Normalizer<'a> {
    pub files: &'a Files,
    pub working_dir: &'a str,
    pub project: &'a str,
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    pub read_file: &'a dyn Fn(&str) -> Result<String, String>,
    pub warnings: Vec<String>,
}

type R<T> = Result<T, ComposeError>;

impl Normalizer<'_> {
    fn err(&self, node: &Node, key: &str, msg: impl Into<String>) -> ComposeError {
        self.files.error(node.pos, key, msg)
    }
    fn err_at(&self, pos: Pos, key: &str, msg: impl Into<String>) -> ComposeError {
        self.files.error(pos, key, msg)
    }

    fn text(&self, node: &Node, key: &str) -> R<String> {
        node.scalar_text()
            .ok_or_else(|| self.err(node, key, format!("must be a string, not a {}", node.kind())))
    }
    fn opt_text(&self, node: Option<&Node>, key: &str) -> R<Option<String>> {
        match node {
            None => Ok(None),
            Some(n) if n.is_null() => Ok(None),
            Some(n) => self.text(n, key).map(Some),
        }
    }
    fn boolean(&self, node: &Node, key: &str) -> R<bool> {
        match &node.value {
            Value::Bool(b) => Ok(*b),
            Value::Str(s) if matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "y" | "on") => {
                Ok(true)
            }
            Value::Str(s) if matches!(s.to_ascii_lowercase().as_str(), "false" | "no" | "n" | "off") => {
                Ok(false)
            }
            Value::Null => Ok(false),
            _ => Err(self.err(
                node,
                key,
                format!(
                    "must be a boolean, not {:?}",
                    node.scalar_text().unwrap_or_default()
                ),
            )),
        }
    }
    fn opt_bool(&self, node: Option<&Node>, key: &str) -> R<Option<bool>> {
        node.filter(|n| !n.is_null())
            .map(|n| self.boolean(n, key))
            .transpose()
    }
    fn uint(&self, node: &Node, key: &str) -> R<u64> {
        match &node.value {
            Value::Int(i) if *i >= 0 => Ok(*i as u64),
            Value::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| self.err(node, key, format!("must be a non-negative integer, not {s:?}"))),
            _ => Err(self.err(
                node,
                key,
                format!("must be a non-negative integer, not a {}", node.kind()),
            )),
        }
    }
    /// A string or a list of strings.
    fn string_list(&self, node: &Node, key: &str) -> R<Vec<String>> {
        match &node.value {
            Value::Null => Ok(Vec::new()),
            Value::Seq(items) => items.iter().map(|i| self.text(i, key)).collect(),
            _ => Ok(vec![self.text(node, key)?]),
        }
    }
    /// A mapping or a `KEY=VALUE` list; values may be null.
    fn dict(&self, node: &Node, key: &str) -> R<BTreeMap<String, Option<String>>> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Null => {}
            Value::Map(entries) => {
                for (k, v) in entries {
                    let value = match &v.value {
                        Value::Null => None,
                        Value::Seq(_) | Value::Map(_) => {
                            return Err(self.err(
                                v,
                                &format!("{key}.{}", k.name),
                                "must be a string, number, boolean or null",
                            ))
                        }
                        _ => v.scalar_text(),
                    };
                    out.insert(k.name.clone(), value);
                }
            }
            Value::Seq(items) => {
                for item in items {
                    let t = self.text(item, key)?;
                    match t.split_once('=') {
                        Some((k, v)) => out.insert(k.to_string(), Some(v.to_string())),
                        None => out.insert(t, None),
                    };
                }
            }
            _ => {
                return Err(self.err(
                    node,
                    key,
                    format!("must be a mapping or a list, not a {}", node.kind()),
                ))
            }
        }
        Ok(out)
    }
    fn labels(&self, node: Option<&Node>, key: &str) -> R<BTreeMap<String, String>> {
        Ok(match node {
            None => BTreeMap::new(),
            Some(n) => self
                .dict(n, key)?
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect(),
        })
    }
    fn duration(&self, node: Option<&Node>, key: &str) -> R<Option<String>> {
        let Some(text) = self.opt_text(node, key)? else {
            return Ok(None);
        };
        let n = node.expect("text implies node");
        let d = crate::timefmt::parse_duration(&text)
            .ok_or_else(|| self.err(n, key, format!("invalid duration {text:?}")))?;
        Ok(Some(go_duration(d)))
    }
    fn path(&self, p: &str) -> String {
        resolve_path(self.working_dir, p, self.lookup)
    }

    /// Normalises the whole merged tree.
    pub fn project(
        &mut self,
        root: &Node,
        name: &str,
        profiles: &[String],
        requested: &[String],
    ) -> R<Project> {
        let mut project = Project {
            name: name.to_string(),
            working_dir: self.working_dir.to_string(),
            ..Project::default()
        };
        for (k, v) in root.as_map().unwrap_or_default() {
            if k.name.starts_with("x-") {
                project.extensions.push((k.name.clone(), v.clone()));
            } else if !TOP_KEYS.contains(&k.name.as_str()) {
                return Err(self.err_at(k.pos, &k.name, "unknown top-level key"));
            } else if matches!(k.name.as_str(), "include" | "models") {
                // Silently dropping included services would start a different project.
                return Err(self.err_at(k.pos, &k.name, "not supported by shoal"));
            } else if k.name == "version" {
                self.warnings.push(format!(
                    "{}: the attribute `version` is obsolete, it will be ignored",
                    self.files
                        .names
                        .get(k.pos.file as usize)
                        .map(String::as_str)
                        .unwrap_or("")
                ));
            }
            if !matches!(v.value, Value::Map(_) | Value::Null)
                && matches!(
                    k.name.as_str(),
                    "services" | "networks" | "volumes" | "secrets" | "configs"
                )
            {
                return Err(self.err(v, &k.name, format!("must be a mapping, not a {}", v.kind())));
            }
        }
        let empty = Node::new(Value::Null);
        let services = root.get("services").unwrap_or(&empty);
        for (k, v) in services.as_map().unwrap_or_default() {
            if !k
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                || k.name.is_empty()
            {
                return Err(self.err_at(
                    k.pos,
                    &format!("services.{}", k.name),
                    "invalid service name: use letters, digits, '.', '_' and '-'",
                ));
            }
            let service = self.service(&k.name, v)?;
            let active = service.profiles.is_empty()
                || service.profiles.iter().any(|p| profiles.contains(p) || p == "*")
                || profiles.iter().any(|p| p == "*")
                || requested.contains(&k.name);
            if active {
                project.services.insert(k.name.clone(), service);
            } else {
                project.disabled.push(k.name.clone());
            }
        }
        for (k, v) in root.get("networks").and_then(Node::as_map).unwrap_or_default() {
            project.networks.insert(k.name.clone(), self.network(&k.name, v)?);
        }
        let uses_default = project.services.values().any(|s| {
            s.network_mode.is_none() && (s.networks.is_empty() || s.networks.contains_key("default"))
        });
        if uses_default && !project.networks.contains_key("default") {
            project.networks.insert(
                "default".into(),
                Network {
                    name: format!("{name}_default"),
                    ..Network::default()
                },
            );
        }
        for (k, v) in root.get("volumes").and_then(Node::as_map).unwrap_or_default() {
            project.volumes.insert(k.name.clone(), self.volume(&k.name, v)?);
        }
        for which in ["secrets", "configs"] {
            for (k, v) in root.get(which).and_then(Node::as_map).unwrap_or_default() {
                let obj = self.file_object(which, &k.name, v)?;
                if which == "secrets" {
                    project.secrets.insert(k.name.clone(), obj);
                } else {
                    project.configs.insert(k.name.clone(), obj);
                }
            }
        }
        Ok(project)
    }

    fn service(&mut self, name: &str, node: &Node) -> R<Service> {
        let p = |k: &str| format!("services.{name}.{k}");
        let mut s = Service {
            name: name.to_string(),
            pos: node.pos,
            ..Service::default()
        };
        let entries = match &node.value {
            Value::Map(m) => m.as_slice(),
            Value::Null => &[],
            _ => {
                return Err(self.err(
                    node,
                    &format!("services.{name}"),
                    format!("must be a mapping, not a {}", node.kind()),
                ))
            }
        };
        for (k, v) in entries {
            let key = k.name.as_str();
            let path = p(key);
            if key.starts_with("x-") {
                s.extensions.push((k.name.clone(), v.clone()));
                continue;
            }
            if IGNORED_SERVICE_KEYS.contains(&key) {
                self.warnings
                    .push(format!("{path}: not supported by shoal, ignored"));
                continue;
            }
            if !SERVICE_KEYS.contains(&key) {
                return Err(self.err_at(k.pos, &path, "unknown service key"));
            }
            match key {
                "image" => s.image = self.opt_text(Some(v), &path)?,
                "build" => s.build = Some(self.build(v, &path)?),
                "command" => s.command = self.command(v, &path)?,
                "entrypoint" => s.entrypoint = self.command(v, &path)?,
                "environment" => {
                    for (ek, ev) in self.dict(v, &path)? {
                        let ev = ev.or_else(|| (self.lookup)(&ek));
                        s.environment.insert(ek, ev);
                    }
                }
                "env_file" => {
                    for f in self.env_files(v, &path)? {
                        s.env_file.push(f);
                    }
                }
                "ports" => {
                    for item in v.as_seq().ok_or_else(|| self.err(v, &path, "must be a list"))? {
                        s.ports.extend(self.port(item, &path)?);
                    }
                }
                "expose" => s.expose = self.string_list(v, &path)?,
                "volumes" => {
                    for item in v.as_seq().ok_or_else(|| self.err(v, &path, "must be a list"))? {
                        s.volumes.push(self.mount(item, &path)?);
                    }
                }
                "tmpfs" => s.tmpfs = self.string_list(v, &path)?,
                "networks" => s.networks = self.service_networks(v, &path)?,
                "network_mode" => s.network_mode = self.opt_text(Some(v), &path)?,
                "depends_on" => s.depends_on = self.depends_on(v, &path)?,
                "restart" => {
                    let r = self.text(v, &path)?;
                    let base = r.split(':').next().unwrap_or("");
                    if !matches!(base, "no" | "always" | "on-failure" | "unless-stopped") {
                        return Err(self.err(v, &path, format!("invalid restart policy {r:?}")));
                    }
                    s.restart = Some(r);
                }
                "healthcheck" => s.healthcheck = Some(self.healthcheck(v, &path)?),
                "deploy" => s.deploy = Some(self.deploy(v, &path)?),
                "secrets" | "configs" => {
                    let mut refs = Vec::new();
                    for item in v.as_seq().ok_or_else(|| self.err(v, &path, "must be a list"))? {
                        refs.push(self.file_ref(item, &path)?);
                    }
                    if key == "secrets" {
                        s.secrets = refs;
                    } else {
                        s.configs = refs;
                    }
                }
                "labels" => s.labels = self.labels(Some(v), &path)?,
                "hostname" => s.hostname = self.opt_text(Some(v), &path)?,
                "domainname" => s.domainname = self.opt_text(Some(v), &path)?,
                "working_dir" => s.working_dir = self.opt_text(Some(v), &path)?,
                "user" => s.user = self.opt_text(Some(v), &path)?,
                "cap_add" => s.cap_add = self.string_list(v, &path)?,
                "cap_drop" => s.cap_drop = self.string_list(v, &path)?,
                "read_only" => s.read_only = self.boolean(v, &path)?,
                "privileged" => s.privileged = self.boolean(v, &path)?,
                "init" => s.init = self.opt_bool(Some(v), &path)?,
                "tty" => s.tty = self.boolean(v, &path)?,
                "stdin_open" => s.stdin_open = self.boolean(v, &path)?,
                "container_name" => s.container_name = self.opt_text(Some(v), &path)?,
                "profiles" => s.profiles = self.string_list(v, &path)?,
                "stop_grace_period" => s.stop_grace_period = self.duration(Some(v), &path)?,
                "stop_signal" => s.stop_signal = self.opt_text(Some(v), &path)?,
                "extra_hosts" => {
                    s.extra_hosts = match &v.value {
                        Value::Map(_) => self
                            .dict(v, &path)?
                            .into_iter()
                            .map(|(h, ip)| format!("{h}={}", ip.unwrap_or_default()))
                            .collect(),
                        _ => self.string_list(v, &path)?,
                    }
                }
                "dns" => s.dns = self.string_list(v, &path)?,
                "scale" => s.scale = Some(self.uint(v, &path)? as u32),
                "pull_policy" => s.pull_policy = self.opt_text(Some(v), &path)?,
                "extends" => {}
                _ => {}
            }
        }
        // env_file values sit under explicit `environment` entries.
        let mut from_files = BTreeMap::new();
        for f in &s.env_file {
            let text =
                (self.read_file)(f).map_err(|e| self.err(node, &p("env_file"), format!("{f}: {e}")))?;
            let pairs = super::dotenv::parse(&text, self.lookup)
                .map_err(|e| self.err(node, &p("env_file"), format!("{f}: {e}")))?;
            for (k, v) in pairs {
                from_files.insert(k, Some(v));
            }
        }
        for (k, v) in from_files {
            s.environment.entry(k).or_insert(v);
        }
        if s.image.is_none() && s.build.is_none() {
            return Err(self.err(
                node,
                &format!("services.{name}"),
                "has neither an image nor a build context specified",
            ));
        }
        if s.network_mode.is_some() && !s.networks.is_empty() {
            return Err(self.err(
                node,
                &format!("services.{name}"),
                "network_mode and networks cannot be combined",
            ));
        }
        Ok(s)
    }

    fn command(&self, node: &Node, key: &str) -> R<Option<Vec<String>>> {
        match &node.value {
            Value::Null => Ok(None),
            Value::Seq(items) => Ok(Some(items.iter().map(|i| self.text(i, key)).collect::<R<_>>()?)),
            _ => {
                let t = self.text(node, key)?;
                shell_split(&t).map(Some).map_err(|e| self.err(node, key, e))
            }
        }
    }

    fn env_files(&self, node: &Node, key: &str) -> R<Vec<String>> {
        let mut out = Vec::new();
        let items: Vec<&Node> = match &node.value {
            Value::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        for item in items {
            let path = match item.get("path") {
                Some(p) => self.text(p, key)?,
                None => self.text(item, key)?,
            };
            out.push(self.path(&path));
        }
        Ok(out)
    }

    fn build(&self, node: &Node, key: &str) -> R<Build> {
        if let Some(t) = node.scalar_text() {
            return Ok(Build {
                context: self.path(&t),
                dockerfile: Some("Dockerfile".into()),
                ..Build::default()
            });
        }
        if node.as_map().is_none() {
            return Err(self.err(node, key, "must be a string or a mapping"));
        }
        let context = self
            .opt_text(node.get("context"), &format!("{key}.context"))?
            .unwrap_or_else(|| ".".into());
        let args = match node.get("args") {
            Some(a) => self.dict(a, &format!("{key}.args"))?,
            None => BTreeMap::new(),
        };
        Ok(Build {
            context: self.path(&context),
            dockerfile: Some(
                self.opt_text(node.get("dockerfile"), &format!("{key}.dockerfile"))?
                    .unwrap_or_else(|| "Dockerfile".into()),
            ),
            args,
            target: self.opt_text(node.get("target"), &format!("{key}.target"))?,
            labels: self.labels(node.get("labels"), &format!("{key}.labels"))?,
        })
    }

    fn port(&self, node: &Node, key: &str) -> R<Vec<Port>> {
        if let Some(map) = node.as_map() {
            let _ = map;
            let target = node
                .get("target")
                .ok_or_else(|| self.err(node, key, "a port needs a target"))?;
            let target = self.uint(target, &format!("{key}.target"))?;
            let target = u16::try_from(target)
                .ok()
                .filter(|t| *t > 0)
                .ok_or_else(|| self.err(node, key, format!("invalid port {target}")))?;
            let protocol = self
                .opt_text(node.get("protocol"), key)?
                .unwrap_or_else(|| "tcp".into());
            if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
                return Err(self.err(node, key, format!("invalid protocol {protocol:?}")));
            }
            return Ok(vec![Port {
                target,
                published: self.opt_text(node.get("published"), key)?,
                host_ip: self.opt_text(node.get("host_ip"), key)?,
                protocol,
                mode: self
                    .opt_text(node.get("mode"), key)?
                    .unwrap_or_else(|| "ingress".into()),
                name: self.opt_text(node.get("name"), key)?,
            }]);
        }
        let text = self.text(node, key)?;
        parse_port(&text).map_err(|e| self.err(node, key, e))
    }

    fn mount(&self, node: &Node, key: &str) -> R<Mount> {
        if node.as_map().is_some() {
            let kind = match self
                .opt_text(node.get("type"), key)?
                .as_deref()
                .unwrap_or("volume")
            {
                "volume" => MountType::Volume,
                "bind" => MountType::Bind,
                "tmpfs" => MountType::Tmpfs,
                other => return Err(self.err(node, key, format!("unsupported mount type {other:?}"))),
            };
            let target = self
                .opt_text(node.get("target"), key)?
                .ok_or_else(|| self.err(node, key, "a mount needs a target"))?;
            let mut source = self.opt_text(node.get("source"), key)?;
            if kind == MountType::Bind {
                source = Some(
                    self.path(&source.ok_or_else(|| self.err(node, key, "a bind mount needs a source"))?),
                );
            }
            let bind = node.get("bind");
            return Ok(Mount {
                kind,
                source,
                target,
                read_only: self.opt_bool(node.get("read_only"), key)?.unwrap_or(false),
                create_host_path: self
                    .opt_bool(bind.and_then(|b| b.get("create_host_path")), key)?
                    .unwrap_or(kind == MountType::Bind),
                nocopy: self
                    .opt_bool(node.get("volume").and_then(|b| b.get("nocopy")), key)?
                    .unwrap_or(false),
                tmpfs_size: match node.get("tmpfs").and_then(|t| t.get("size")) {
                    Some(s) => Some(parse_bytes(&self.text(s, key)?).map_err(|e| self.err(s, key, e))?),
                    None => None,
                },
            });
        }
        let text = self.text(node, key)?;
        let mut m = parse_volume(&text).map_err(|e| self.err(node, key, e))?;
        if m.kind == MountType::Bind {
            m.source = m.source.map(|s| self.path(&s));
        }
        Ok(m)
    }

    fn service_networks(&self, node: &Node, key: &str) -> R<BTreeMap<String, Option<ServiceNetwork>>> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Seq(items) => {
                for i in items {
                    out.insert(self.text(i, key)?, None);
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries {
                    let nk = format!("{key}.{}", k.name);
                    let sn = if v.is_null() {
                        None
                    } else {
                        Some(ServiceNetwork {
                            aliases: match v.get("aliases") {
                                Some(a) => self.string_list(a, &nk)?,
                                None => Vec::new(),
                            },
                            ipv4_address: self.opt_text(v.get("ipv4_address"), &nk)?,
                        })
                    };
                    out.insert(k.name.clone(), sn);
                }
            }
            Value::Null => {}
            _ => return Err(self.err(node, key, "must be a list or a mapping")),
        }
        Ok(out)
    }

    fn depends_on(&self, node: &Node, key: &str) -> R<BTreeMap<String, Dependency>> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Seq(items) => {
                for i in items {
                    out.insert(
                        self.text(i, key)?,
                        Dependency {
                            condition: Condition::Started,
                            required: true,
                            restart: false,
                            pos: i.pos,
                        },
                    );
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries {
                    let nk = format!("{key}.{}", k.name);
                    let condition = match self.opt_text(v.get("condition"), &nk)?.as_deref() {
                        None | Some("service_started") => Condition::Started,
                        Some("service_healthy") => Condition::Healthy,
                        Some("service_completed_successfully") => Condition::CompletedSuccessfully,
                        Some(other) => {
                            return Err(self.err(
                                v.get("condition").unwrap_or(v),
                                &nk,
                                format!("invalid condition {other:?}"),
                            ))
                        }
                    };
                    out.insert(
                        k.name.clone(),
                        Dependency {
                            condition,
                            required: self.opt_bool(v.get("required"), &nk)?.unwrap_or(true),
                            restart: self.opt_bool(v.get("restart"), &nk)?.unwrap_or(false),
                            pos: k.pos,
                        },
                    );
                }
            }
            Value::Null => {}
            _ => return Err(self.err(node, key, "must be a list or a mapping")),
        }
        Ok(out)
    }

    fn healthcheck(&self, node: &Node, key: &str) -> R<Healthcheck> {
        let test = match node.get("test") {
            None => Vec::new(),
            Some(t) => match &t.value {
                Value::Seq(_) => self.string_list(t, &format!("{key}.test"))?,
                _ => vec!["CMD-SHELL".into(), self.text(t, &format!("{key}.test"))?],
            },
        };
        if let Some(first) = test.first() {
            if !matches!(first.as_str(), "CMD" | "CMD-SHELL" | "NONE") {
                return Err(self.err(
                    node,
                    &format!("{key}.test"),
                    "must start with CMD, CMD-SHELL or NONE",
                ));
            }
        }
        Ok(Healthcheck {
            test,
            interval: self.duration(node.get("interval"), &format!("{key}.interval"))?,
            timeout: self.duration(node.get("timeout"), &format!("{key}.timeout"))?,
            retries: node
                .get("retries")
                .map(|r| self.uint(r, &format!("{key}.retries")))
                .transpose()?,
            start_period: self.duration(node.get("start_period"), &format!("{key}.start_period"))?,
            start_interval: self.duration(node.get("start_interval"), &format!("{key}.start_interval"))?,
            disable: self.opt_bool(node.get("disable"), key)?.unwrap_or(false),
        })
    }

    fn resources(&self, node: Option<&Node>, key: &str) -> R<Resources> {
        let Some(node) = node else {
            return Ok(Resources::default());
        };
        Ok(Resources {
            cpus: self.opt_text(node.get("cpus"), &format!("{key}.cpus"))?,
            memory: match node.get("memory") {
                Some(m) => Some(
                    parse_bytes(&self.text(m, key)?).map_err(|e| self.err(m, &format!("{key}.memory"), e))?,
                ),
                None => None,
            },
            pids: node
                .get("pids")
                .map(|p| self.uint(p, &format!("{key}.pids")).map(|v| v as i64))
                .transpose()?,
        })
    }

    fn deploy(&self, node: &Node, key: &str) -> R<Deploy> {
        let restart_policy = match node.get("restart_policy") {
            None => None,
            Some(rp) => {
                let k = format!("{key}.restart_policy");
                let condition = self.opt_text(rp.get("condition"), &k)?;
                if let Some(c) = &condition {
                    if !matches!(c.as_str(), "none" | "on-failure" | "any") {
                        return Err(self.err(rp, &k, format!("invalid condition {c:?}")));
                    }
                }
                Some(RestartPolicy {
                    condition,
                    delay: self.duration(rp.get("delay"), &k)?,
                    max_attempts: rp.get("max_attempts").map(|m| self.uint(m, &k)).transpose()?,
                    window: self.duration(rp.get("window"), &k)?,
                })
            }
        };
        let resources = node.get("resources");
        Ok(Deploy {
            replicas: node
                .get("replicas")
                .map(|r| self.uint(r, &format!("{key}.replicas")).map(|v| v as u32))
                .transpose()?,
            limits: self.resources(
                resources.and_then(|r| r.get("limits")),
                &format!("{key}.resources.limits"),
            )?,
            reservations: self.resources(
                resources.and_then(|r| r.get("reservations")),
                &format!("{key}.resources.reservations"),
            )?,
            restart_policy,
        })
    }

    fn file_ref(&self, node: &Node, key: &str) -> R<FileRef> {
        if node.as_map().is_none() {
            return Ok(FileRef {
                source: self.text(node, key)?,
                target: None,
                uid: None,
                gid: None,
                mode: None,
            });
        }
        let mode = match node.get("mode") {
            None => None,
            Some(m) => Some(match &m.value {
                Value::Int(i) => *i as u32,
                _ => u32::from_str_radix(self.text(m, key)?.trim_start_matches("0o"), 8)
                    .map_err(|_| self.err(m, key, "mode must be an octal number"))?,
            }),
        };
        Ok(FileRef {
            source: self
                .opt_text(node.get("source"), key)?
                .ok_or_else(|| self.err(node, key, "needs a source"))?,
            target: self.opt_text(node.get("target"), key)?,
            uid: self.opt_text(node.get("uid"), key)?,
            gid: self.opt_text(node.get("gid"), key)?,
            mode,
        })
    }

    fn network(&self, key_name: &str, node: &Node) -> R<Network> {
        let key = format!("networks.{key_name}");
        let external = self.external(node, &key)?;
        let explicit = self.opt_text(node.get("name"), &key)?;
        let name = match (&explicit, external) {
            (Some(n), _) => n.clone(),
            (None, true) => key_name.to_string(),
            (None, false) => format!("{}_{key_name}", self.project),
        };
        let ipam = node.get("ipam");
        let mut configs = Vec::new();
        for c in ipam
            .and_then(|i| i.get("config"))
            .and_then(Node::as_seq)
            .unwrap_or_default()
        {
            let k = format!("{key}.ipam.config");
            let subnet = self.opt_text(c.get("subnet"), &k)?;
            if let Some(s) = &subnet {
                if !valid_cidr(s) {
                    return Err(self.err(c.get("subnet").unwrap_or(c), &k, format!("invalid subnet {s:?}")));
                }
            }
            configs.push(IpamConfig {
                subnet,
                gateway: self.opt_text(c.get("gateway"), &k)?,
                ip_range: self.opt_text(c.get("ip_range"), &k)?,
            });
        }
        let opts = match node.get("driver_opts") {
            Some(o) => self
                .dict(o, &key)?
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect(),
            None => BTreeMap::new(),
        };
        Ok(Network {
            name,
            driver: self.opt_text(node.get("driver"), &key)?,
            driver_opts: opts,
            ipam: configs,
            ipam_driver: self.opt_text(ipam.and_then(|i| i.get("driver")), &key)?,
            internal: self.opt_bool(node.get("internal"), &key)?.unwrap_or(false),
            external,
            attachable: self.opt_bool(node.get("attachable"), &key)?.unwrap_or(false),
            enable_ipv6: self.opt_bool(node.get("enable_ipv6"), &key)?.unwrap_or(false),
            labels: self.labels(node.get("labels"), &key)?,
        })
    }

    fn external(&self, node: &Node, key: &str) -> R<bool> {
        match node.get("external") {
            None => Ok(false),
            // The legacy `external: {name: x}` form.
            Some(e) if e.as_map().is_some() => Ok(true),
            Some(e) => self.boolean(e, &format!("{key}.external")),
        }
    }

    fn volume(&self, key_name: &str, node: &Node) -> R<Volume> {
        let key = format!("volumes.{key_name}");
        let external = self.external(node, &key)?;
        let explicit = self.opt_text(node.get("name"), &key)?;
        let name = match (&explicit, external) {
            (Some(n), _) => n.clone(),
            (None, true) => key_name.to_string(),
            (None, false) => format!("{}_{key_name}", self.project),
        };
        Ok(Volume {
            name,
            driver: self.opt_text(node.get("driver"), &key)?,
            driver_opts: match node.get("driver_opts") {
                Some(o) => self
                    .dict(o, &key)?
                    .into_iter()
                    .map(|(k, v)| (k, v.unwrap_or_default()))
                    .collect(),
                None => BTreeMap::new(),
            },
            external,
            labels: self.labels(node.get("labels"), &key)?,
        })
    }

    fn file_object(&self, which: &str, key_name: &str, node: &Node) -> R<FileObject> {
        let key = format!("{which}.{key_name}");
        let external = self.external(node, &key)?;
        let explicit = self.opt_text(node.get("name"), &key)?;
        let obj = FileObject {
            name: explicit.unwrap_or_else(|| {
                if external {
                    key_name.to_string()
                } else {
                    format!("{}_{key_name}", self.project)
                }
            }),
            file: self.opt_text(node.get("file"), &key)?.map(|f| self.path(&f)),
            environment: self.opt_text(node.get("environment"), &key)?,
            content: self.opt_text(node.get("content"), &key)?,
            external,
        };
        if !external && obj.file.is_none() && obj.environment.is_none() && obj.content.is_none() {
            return Err(self.err(node, &key, "needs one of file, environment, content or external"));
        }
        Ok(obj)
    }
}

/// Go's `time.Duration.String()`, which is how compose prints durations back.
pub fn go_duration(d: std::time::Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (unit, div) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", trim_fraction(nanos, div));
    }
    let total_secs = nanos / 1_000_000_000;
    let (h, m) = (total_secs / 3600, (total_secs / 60) % 60);
    let secs = trim_fraction(nanos % 60_000_000_000, 1_000_000_000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{secs}s"));
    out
}

fn trim_fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let f = format!("{frac:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// `512m`, `1g`, `1024`, `1.5gb` → bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<f64>()
        .ok()
        .filter(|n| *n >= 0.0)
        .map(|n| (n * mult as f64) as u64)
        .ok_or_else(|| format!("invalid size {s:?}"))
}

fn valid_cidr(s: &str) -> bool {
    let Some((ip, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(len) = len.parse::<u8>() else { return false };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => len <= 32,
        Ok(std::net::IpAddr::V6(_)) => len <= 128,
        Err(_) => false,
    }
}

/// Splits a command string like a POSIX shell would split words (quotes and backslashes).
pub fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated quote in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c)
                            }
                            None => return Err(format!("unterminated quote in {s:?}")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated quote in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

fn port_range(s: &str) -> Result<(u16, u16), String> {
    let parse = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("invalid port {p:?}"))
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            if b < a {
                return Err(format!("invalid port range {s:?}"));
            }
            Ok((a, b))
        }
        None => parse(s).map(|p| (p, p)),
    }
}

/// Short port syntax: `[[IP:](HOST|RANGE):](CONTAINER|RANGE)[/PROTOCOL]`; ranges expand to
/// one entry per port, as compose does.
pub fn parse_port(text: &str) -> Result<Vec<Port>, String> {
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((s, p)) => (s, p.to_string()),
        None => (text, "tcp".to_string()),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid protocol {protocol:?} in port {text:?}"));
    }
    // An IPv6 host address is bracketed: `[::1]:80:80`.
    let (host_ip, rest) = if let Some(r) = spec.strip_prefix('[') {
        let (ip, after) = r
            .split_once(']')
            .ok_or_else(|| format!("invalid port {text:?}"))?;
        (
            Some(ip.to_string()),
            after
                .strip_prefix(':')
                .ok_or_else(|| format!("invalid port {text:?}"))?,
        )
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            1 | 2 => (None, spec),
            3 => (Some(parts[0].to_string()), &spec[parts[0].len() + 1..]),
            _ => return Err(format!("invalid port {text:?}")),
        }
    };
    if let Some(ip) = &host_ip {
        if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("invalid host IP {ip:?} in port {text:?}"));
        }
    }
    let (published, target) = match rest.split_once(':') {
        Some((h, c)) => (if h.is_empty() { None } else { Some(h) }, c),
        None => (None, rest),
    };
    let (t0, t1) = port_range(target).map_err(|e| format!("{e} in {text:?}"))?;
    let host = published
        .map(port_range)
        .transpose()
        .map_err(|e| format!("{e} in {text:?}"))?;
    let count = t1 - t0;
    let mut out = Vec::new();
    for i in 0..=count {
        let published = match host {
            None => None,
            Some((h0, h1)) if h1 - h0 == count => Some((h0 + i).to_string()),
            Some((h0, h1)) if count == 0 => Some(if h0 == h1 {
                h0.to_string()
            } else {
                format!("{h0}-{h1}")
            }),
            Some(_) => return Err(format!("port ranges of different sizes in {text:?}")),
        };
        out.push(Port {
            target: t0 + i,
            published,
            host_ip: host_ip.clone().filter(|ip| !ip.is_empty()),
            protocol: protocol.clone(),
            mode: "ingress".into(),
            name: None,
        });
    }
    Ok(out)
}

/// Short volume syntax: `[SOURCE:]TARGET[:MODE]`; a source starting with `.`, `/` or `~` is
/// a bind mount, anything else names a volume.
pub fn parse_volume(text: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, None),
        [s, t] if t.starts_with('/') => (Some(*s), *t, None),
        [t, m] => (None, *t, Some(*m)),
        [s, t, m] => (Some(*s), *t, Some(*m)),
        _ => return Err(format!("invalid volume specification {text:?}")),
    };
    if target.is_empty() || !target.starts_with('/') {
        return Err(format!(
            "invalid volume specification {text:?}: the container path must be absolute"
        ));
    }
    let mut read_only = false;
    let mut nocopy = false;
    for m in mode.unwrap_or("").split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" => read_only = true,
            "rw" | "z" | "Z" | "cached" | "delegated" | "consistent" | "rprivate" | "private" | "rshared"
            | "shared" | "rslave" | "slave" => {}
            "nocopy" => nocopy = true,
            other => return Err(format!("invalid volume mode {other:?} in {text:?}")),
        }
    }
    let kind = match source {
        None => MountType::Volume,
        Some(s) if s.starts_with('.') || s.starts_with('/') || s.starts_with('~') => MountType::Bind,
        Some("") => return Err(format!("invalid volume specification {text:?}: empty source")),
        Some(_) => MountType::Volume,
    };
    Ok(Mount {
        kind,
        source: source.map(str::to_string),
        target: target.to_string(),
        read_only,
        create_host_path: kind == MountType::Bind,
        nocopy,
        tmpfs_size: None,
    })
}

/// Absolute, lexically cleaned path; `~` is the HOME from `lookup`.
pub fn resolve_path(base: &str, p: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let expanded = match p.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            format!("{}{rest}", lookup("HOME").unwrap_or_default())
        }
        _ => p.to_string(),
    };
    let joined = Path::new(base).join(expanded);
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_short_syntax() {
        let p = parse_port("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(p[0].target, 80);
        assert_eq!(p[0].published.as_deref(), Some("8080"));
        assert_eq!(p[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(p[0].protocol, "udp");
        assert_eq!(parse_port("3000").unwrap()[0].published, None);
        let r = parse_port("9000-9002:8000-8002").unwrap();
        assert_eq!(
            r.iter()
                .map(|p| (p.published.clone().unwrap(), p.target))
                .collect::<Vec<_>>(),
            [
                ("9000".into(), 8000),
                ("9001".into(), 8001),
                ("9002".into(), 8002)
            ]
        );
        assert_eq!(
            parse_port("9000-9005:80").unwrap()[0].published.as_deref(),
            Some("9000-9005")
        );
        assert_eq!(
            parse_port("[::1]:53:53/udp").unwrap()[0].host_ip.as_deref(),
            Some("::1")
        );
        for bad in [
            "80:80:80:80",
            "abc",
            "0",
            "70000",
            "80/xyz",
            "1.2.3:80:80",
            "10-5",
            "1-3:1-2",
        ] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volumes_short_syntax() {
        let v = parse_volume("data:/var/lib/data:ro").unwrap();
        assert_eq!(
            (v.kind, v.source.as_deref(), v.read_only),
            (MountType::Volume, Some("data"), true)
        );
        assert_eq!(
            parse_volume("./html:/usr/share/html").unwrap().kind,
            MountType::Bind
        );
        assert_eq!(parse_volume("/tmp").unwrap().source, None);
        assert!(parse_volume("/data:nocopy").unwrap().nocopy);
        for bad in ["relative", "a:b:c:d", "data:relative", "data:/x:bogus", ":/x"] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_print_like_go() {
        let d = |s: &str| go_duration(crate::timefmt::parse_duration(s).unwrap());
        assert_eq!(d("30s"), "30s");
        assert_eq!(d("90s"), "1m30s");
        assert_eq!(d("1h"), "1h0m0s");
        assert_eq!(d("500ms"), "500ms");
        assert_eq!(d("1.5s"), "1.5s");
    }

    #[test]
    fn shell_words_and_paths() {
        assert_eq!(
            shell_split(r#"sh -c "echo 'a b' \"c\"" x\ y"#).unwrap(),
            ["sh", "-c", "echo 'a b' \"c\"", "x y"]
        );
        assert!(shell_split("echo 'open").is_err());
        let home = |k: &str| (k == "HOME").then(|| "/home/u".to_string());
        assert_eq!(resolve_path("/p/q", "./a/../b", &home), "/p/q/b");
        assert_eq!(resolve_path("/p/q", "~/x", &home), "/home/u/x");
        assert_eq!(resolve_path("/p/q", "/abs", &home), "/abs");
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
    }
}
