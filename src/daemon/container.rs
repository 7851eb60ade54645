//! A container's record (what `inspect` shows and what survives a daemon restart) and the
//! pure rules of its lifecycle: config merging with the image, restart policy and back-off.
//!
//! No I/O here; the engine persists records with `storage::atomic` and drives the runtime.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::api::types::{ContainerConfig, HostConfig};
use crate::timefmt;

/// Lifecycle states, named as Docker names them in `State.Status`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
    /// A process exists (or is about to be restarted) for this container.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Running | Status::Restarting)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct State {
    pub status: Status,
    pub pid: u32,
    pub exit_code: i32,
    pub oom_killed: bool,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    /// Probe results of the current run; not persisted (no flash write per probe).
    #[serde(skip)]
    pub health: Option<super::health::Health>,
}

impl Default for State {
    fn default() -> Self {
        State {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            oom_killed: false,
            error: String::new(),
            started_at: timefmt::ZERO.into(),
            finished_at: timefmt::ZERO.into(),
            health: None,
        }
    }
}

/// Everything shoal keeps about one container; written atomically to `<dir>/container.json`.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(default)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub created: String,
    /// Image ID (`sha256:...`) and the reference the user gave.
    pub image_id: String,
    pub image_ref: String,
    /// The merged config: the image's defaults overlaid by the user's.
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub state: State,
    pub restart_count: u32,
    /// Set by `stop`/`kill` from the user, cleared by `start`: `unless-stopped` and the restart
    /// logic must not bring back a container the user stopped.
    pub manually_stopped: bool,
    /// Networks the container joins when it starts (name or id → its settings there), from
    /// `NetworkMode`, `EndpointsConfig` and `network connect`.
    pub networks: std::collections::BTreeMap<String, crate::api::types::EndpointSettings>,
    /// Binds, volumes and tmpfs, resolved at create (anonymous volumes named), in the order
    /// they are mounted at every start.
    pub mount_points: Vec<super::mounts::MountPoint>,
}

impl Record {
    /// The command that runs: entrypoint followed by cmd.
    pub fn argv(&self) -> Vec<String> {
        let mut v = self.config.entrypoint.clone().unwrap_or_default();
        v.extend(self.config.cmd.clone().unwrap_or_default());
        v
    }
}

/// The PATH a container gets when its image sets none (dockerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the image says by default (the fields of its config shoal honours).
#[derive(Clone, Debug, Default)]
pub struct ImageDefaults {
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: String,
    pub user: String,
    pub labels: BTreeMap<String, String>,
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    pub stop_signal: Option<String>,
    /// The image's HEALTHCHECK, used when the container sets none.
    pub healthcheck: Option<crate::api::types::HealthConfig>,
}

/// Overlay the user's config on the image's, as dockerd does: env by key, cmd/entrypoint
/// (a given entrypoint drops the image's cmd), working dir, user, labels.
pub fn merge_config(mut user: ContainerConfig, image: &ImageDefaults) -> ContainerConfig {
    let mut env = image.env.clone();
    for kv in user.env.take().unwrap_or_default() {
        let key = kv.split('=').next().unwrap_or("");
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv);
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        // As dockerd: images without a PATH (e.g. imported root filesystems) get the default.
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    user.env = Some(env);
    if user.healthcheck.is_none() {
        user.healthcheck = image.healthcheck.clone();
    }
    let entrypoint_given = user.entrypoint.is_some();
    if user
        .entrypoint
        .as_ref()
        .is_some_and(|e| e.len() == 1 && e[0].is_empty())
    {
        // `--entrypoint ""` clears the image's entrypoint.
        user.entrypoint = None;
    } else if !entrypoint_given {
        user.entrypoint = image.entrypoint.clone();
    }
    if user.cmd.as_ref().is_none_or(|c| c.is_empty()) {
        user.cmd = if entrypoint_given { None } else { image.cmd.clone() };
    }
    if user.working_dir.is_empty() {
        user.working_dir = image.working_dir.clone();
    }
    if user.user.is_empty() {
        user.user = image.user.clone();
    }
    let mut labels = image.labels.clone();
    labels.extend(user.labels.take().unwrap_or_default());
    user.labels = Some(labels);
    if user.exposed_ports.is_none() {
        user.exposed_ports = image.exposed_ports.clone();
    }
    // The image's volumes are added to the user's (dockerd merges the two sets).
    if let Some(image_volumes) = &image.volumes {
        let mut volumes = user.volumes.take().unwrap_or_default();
        for (k, v) in image_volumes {
            volumes.entry(k.clone()).or_insert_with(|| v.clone());
        }
        user.volumes = Some(volumes);
    }
    if user.stop_signal.is_none() {
        user.stop_signal = image.stop_signal.clone();
    }
    user
}

/// A parsed restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    Always,
    UnlessStopped,
    OnFailure { max_retries: u32 },
}

impl RestartPolicy {
    pub fn parse(name: &str, max_retries: i64) -> Result<Self, String> {
        match name {
            "" | "no" => Ok(RestartPolicy::No),
            "always" => Ok(RestartPolicy::Always),
            "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            "on-failure" if max_retries >= 0 => Ok(RestartPolicy::OnFailure {
                max_retries: max_retries as u32,
            }),
            "on-failure" => Err(format!(
                "invalid restart policy: maximum retry count cannot be negative ({max_retries})"
            )),
            other => Err(format!("invalid restart policy '{other}'")),
        }
    }

    /// Whether a container that just exited with `exit_code` is started again.
    pub fn should_restart(self, exit_code: i32, manually_stopped: bool, restart_count: u32) -> bool {
        if manually_stopped {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure { max_retries } => {
                exit_code != 0 && (max_retries == 0 || restart_count < max_retries)
            }
        }
    }

    /// Whether the daemon starts this container when it boots (an appliance boots into its
    /// workload).
    pub fn start_on_boot(self, state: &State, manually_stopped: bool) -> bool {
        match self {
            RestartPolicy::Always => !manually_stopped || state.status == Status::Running,
            RestartPolicy::UnlessStopped => !manually_stopped,
            RestartPolicy::OnFailure { .. } => state.status == Status::Running && !manually_stopped,
            RestartPolicy::No => false,
        }
    }
}

/// Docker's back-off: 100 ms doubling per consecutive restart, capped at one minute; a
/// container that ran for at least 10 s starts again from 100 ms.
pub fn restart_delay(previous_delay: Duration, ran_for: Duration) -> Duration {
    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(60);
    if ran_for >= Duration::from_secs(10) || previous_delay.is_zero() {
        return MIN;
    }
    (previous_delay * 2).min(MAX)
}

/// Parse a signal given as `KILL`, `SIGKILL`, `kill` or `9`.
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    Some(match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" | "IOT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "STKFLT" => 16,
        "CHLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "TTIN" => 21,
        "TTOU" => 22,
        "URG" => 23,
        "XCPU" => 24,
        "XFSZ" => 25,
        "VTALRM" => 26,
        "PROF" => 27,
        "WINCH" => 28,
        "IO" | "POLL" => 29,
        "PWR" => 30,
        "SYS" => 31,
        _ => {
            let rt = name.strip_prefix("RTMIN")?;
            let off = if rt.is_empty() {
                0
            } else {
                rt.strip_prefix('+')?.parse::<i32>().ok()?
            };
            return (off <= 30).then_some(34 + off);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> ImageDefaults {
        ImageDefaults {
            env: vec!["PATH=/bin".into(), "A=1".into()],
            cmd: Some(vec!["sh".into()]),
            entrypoint: None,
            working_dir: "/srv".into(),
            user: "nobody".into(),
            ..Default::default()
        }
    }

    #[test]
    fn user_env_overrides_image_env_by_key() {
        let c = ContainerConfig {
            env: Some(vec!["A=2".into(), "B=3".into()]),
            ..Default::default()
        };
        let m = merge_config(c, &img());
        assert_eq!(m.env.unwrap(), vec!["PATH=/bin", "A=2", "B=3"]);
        assert_eq!(m.cmd.unwrap(), vec!["sh"]);
        assert_eq!(m.working_dir, "/srv");
        assert_eq!(m.user, "nobody");
    }

    #[test]
    fn user_and_image_volumes_are_merged() {
        let mut i = img();
        i.volumes = Some([("/data".to_string(), serde_json::json!({}))].into());
        let c = ContainerConfig {
            volumes: Some([("/cache".to_string(), serde_json::json!({}))].into()),
            ..Default::default()
        };
        let m = merge_config(c, &i);
        let keys: Vec<_> = m.volumes.unwrap().into_keys().collect();
        assert_eq!(keys, ["/cache", "/data"]);
    }

    #[test]
    fn given_entrypoint_drops_image_cmd() {
        let c = ContainerConfig {
            entrypoint: Some(vec!["echo".into()]),
            ..Default::default()
        };
        let m = merge_config(c, &img());
        assert_eq!(m.entrypoint.unwrap(), vec!["echo"]);
        assert_eq!(m.cmd, None);
    }

    #[test]
    fn empty_entrypoint_clears_image_entrypoint() {
        let mut i = img();
        i.entrypoint = Some(vec!["/entry.sh".into()]);
        let c = ContainerConfig {
            entrypoint: Some(vec![String::new()]),
            cmd: Some(vec!["ls".into()]),
            ..Default::default()
        };
        let m = merge_config(c, &i);
        assert_eq!(m.entrypoint, None);
        assert_eq!(m.cmd.unwrap(), vec!["ls"]);
    }

    #[test]
    fn restart_policies_follow_docker() {
        let p = |n: &str, m| RestartPolicy::parse(n, m).unwrap();
        assert!(!p("no", 0).should_restart(1, false, 0));
        assert!(p("always", 0).should_restart(0, false, 5));
        assert!(!p("always", 0).should_restart(0, true, 0));
        assert!(p("on-failure", 0).should_restart(1, false, 100));
        assert!(!p("on-failure", 0).should_restart(0, false, 0));
        assert!(p("on-failure", 2).should_restart(1, false, 1));
        assert!(!p("on-failure", 2).should_restart(1, false, 2));
        assert!(RestartPolicy::parse("sometimes", 0).is_err());
        assert!(RestartPolicy::parse("on-failure", -1).is_err());
    }

    #[test]
    fn boot_starts_only_what_policy_says() {
        let running = State {
            status: Status::Running,
            ..Default::default()
        };
        let exited = State {
            status: Status::Exited,
            ..Default::default()
        };
        assert!(RestartPolicy::Always.start_on_boot(&exited, false));
        assert!(RestartPolicy::UnlessStopped.start_on_boot(&exited, false));
        assert!(!RestartPolicy::UnlessStopped.start_on_boot(&exited, true));
        assert!(!RestartPolicy::No.start_on_boot(&running, false));
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let ms = Duration::from_millis;
        assert_eq!(restart_delay(Duration::ZERO, ms(1)), ms(100));
        assert_eq!(restart_delay(ms(100), ms(1)), ms(200));
        assert_eq!(restart_delay(ms(40_000), ms(1)), ms(60_000));
        assert_eq!(restart_delay(ms(800), Duration::from_secs(11)), ms(100));
    }

    #[test]
    fn parses_signals() {
        assert_eq!(parse_signal("KILL"), Some(9));
        assert_eq!(parse_signal("sigterm"), Some(15));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("RTMIN+2"), Some(36));
        assert_eq!(parse_signal("BOGUS"), None);
        assert_eq!(parse_signal("0"), None);
    }
}
