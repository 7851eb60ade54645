//! The normalised compose model: every field in one typed shape, whatever syntax the file
//! used (short or long ports and volumes, list or mapping environment, ...).

use std::collections::BTreeMap;

use super::error::Pos;
use super::yaml::Node;

#[derive(Debug, Clone, Default)]
pub struct Project {
    pub name: String,
    /// Absolute directory relative paths were resolved against.
    pub working_dir: String,
    /// Absolute paths of the files, in `-f` order.
    pub config_files: Vec<String>,
    pub services: BTreeMap<String, Service>,
    pub networks: BTreeMap<String, Network>,
    pub volumes: BTreeMap<String, Volume>,
    pub secrets: BTreeMap<String, FileObject>,
    pub configs: BTreeMap<String, FileObject>,
    /// Services left out because none of their profiles is active.
    pub disabled: Vec<String>,
    /// Top-level `x-` keys, kept as written.
    pub extensions: Vec<(String, Node)>,
}

#[derive(Debug, Clone, Default)]
pub struct Service {
    pub name: String,
    pub pos: Pos,
    pub image: Option<String>,
    pub build: Option<Build>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `None` means "unset in the container" (`- NAME` with NAME not in the environment).
    pub environment: BTreeMap<String, Option<String>>,
    pub env_file: Vec<String>,
    pub ports: Vec<Port>,
    pub expose: Vec<String>,
    pub volumes: Vec<Mount>,
    pub tmpfs: Vec<String>,
    /// Networks by their key in the file; empty with no `network_mode` means `default`.
    pub networks: BTreeMap<String, Option<ServiceNetwork>>,
    pub network_mode: Option<String>,
    pub depends_on: BTreeMap<String, Dependency>,
    pub restart: Option<String>,
    pub healthcheck: Option<Healthcheck>,
    pub deploy: Option<Deploy>,
    pub secrets: Vec<FileRef>,
    pub configs: Vec<FileRef>,
    pub labels: BTreeMap<String, String>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub read_only: bool,
    pub privileged: bool,
    pub init: Option<bool>,
    pub tty: bool,
    pub stdin_open: bool,
    pub container_name: Option<String>,
    pub profiles: Vec<String>,
    pub stop_grace_period: Option<String>,
    pub stop_signal: Option<String>,
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    /// `scale:` (the older spelling of deploy.replicas).
    pub scale: Option<u32>,
    pub pull_policy: Option<String>,
    /// `x-` keys of the service.
    pub extensions: Vec<(String, Node)>,
}

impl Service {
    /// Replicas wanted: `deploy.replicas`, else `scale`, else 1.
    pub fn replicas(&self) -> u32 {
        self.deploy
            .as_ref()
            .and_then(|d| d.replicas)
            .or(self.scale)
            .unwrap_or(1)
    }
    /// The image this service runs: its own, or `project-service` when it is built.
    pub fn image_name(&self, project: &str) -> String {
        match &self.image {
            Some(i) => i.clone(),
            None => format!("{project}-{}", self.name),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Build {
    pub context: String,
    pub dockerfile: Option<String>,
    pub args: BTreeMap<String, Option<String>>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    pub target: u16,
    /// Host port or range as written (`"8080"`, `"8000-8010"`); `None` picks one.
    pub published: Option<String>,
    pub host_ip: Option<String>,
    pub protocol: String,
    pub mode: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Volume,
    Bind,
    Tmpfs,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Volume => "volume",
            MountType::Bind => "bind",
            MountType::Tmpfs => "tmpfs",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub kind: MountType,
    /// Volume key (named), absolute host path (bind), or `None` (anonymous, tmpfs).
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
    pub create_host_path: bool,
    pub nocopy: bool,
    pub tmpfs_size: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceNetwork {
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Started,
    Healthy,
    CompletedSuccessfully,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "service_started",
            Condition::Healthy => "service_healthy",
            Condition::CompletedSuccessfully => "service_completed_successfully",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dependency {
    pub condition: Condition,
    pub required: bool,
    pub restart: bool,
    pub pos: Pos,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", "..."]`; empty inherits the image's.
    pub test: Vec<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u64>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub disable: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deploy {
    pub replicas: Option<u32>,
    pub limits: Resources,
    pub reservations: Resources,
    pub restart_policy: Option<RestartPolicy>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub cpus: Option<String>,
    pub memory: Option<u64>,
    pub pids: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestartPolicy {
    pub condition: Option<String>,
    pub delay: Option<String>,
    pub max_attempts: Option<u64>,
    pub window: Option<String>,
}

/// A service's use of a secret or config.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRef {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Network {
    /// The engine's name for it: `name:`, else `project_key`; for external, `name:` or key.
    pub name: String,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub ipam: Vec<IpamConfig>,
    pub ipam_driver: Option<String>,
    pub internal: bool,
    pub external: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpamConfig {
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Volume {
    pub name: String,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
}

/// A top-level secret or config: file-based (or external, or from the environment).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileObject {
    pub name: String,
    pub file: Option<String>,
    pub environment: Option<String>,
    pub content: Option<String>,
    pub external: bool,
}
