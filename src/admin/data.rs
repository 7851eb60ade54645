//! What the admin pages show, gathered from the engine (in-process) and the host. The
//! structures here are plain data; `pages` and `metrics` turn them into text.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use crate::api::render;
use crate::daemon::engine::Engine;
use crate::timefmt;

pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

#[derive(Debug, Clone, Default)]
pub struct Host {
    pub hostname: String,
    pub version: String,
    pub arch: String,
    pub kernel: String,
    pub uptime_secs: u64,
    /// 1, 5 and 15 minute load averages as the kernel prints them.
    pub load: String,
    pub mem_total: u64,
    pub mem_available: u64,
    pub disk_total: u64,
    pub disk_used: u64,
    pub state_dir: String,
    pub daemon_rss: u64,
    pub daemon_uptime_secs: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ContainerRow {
    pub id: String,
    pub name: String,
    pub image: String,
    /// `running`, `exited`, ...
    pub state: String,
    /// `Up 3 minutes`, as `docker ps`.
    pub status: String,
    pub ports: String,
    /// CPU use since the previous look, in percent of one CPU.
    pub cpu_percent: Option<f64>,
    pub cpu_seconds: Option<f64>,
    pub memory: Option<u64>,
    pub project: Option<String>,
    pub service: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ImageRow {
    pub id: String,
    pub tags: Vec<String>,
    pub size: u64,
    pub created: i64,
    pub in_use: bool,
}

#[derive(Debug, Clone, Default)]
pub struct NetworkRow {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub subnet: String,
    pub containers: usize,
    pub builtin: bool,
}

#[derive(Debug, Clone, Default)]
pub struct VolumeRow {
    pub name: String,
    pub driver: String,
    pub anonymous: bool,
    pub in_use: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Overview {
    pub host: Host,
    pub by_state: BTreeMap<String, usize>,
    pub images: usize,
    pub networks: usize,
    pub volumes: usize,
    pub projects: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Detail {
    pub row: ContainerRow,
    /// Pretty-printed `docker inspect` JSON.
    pub inspect: String,
    pub logs: Vec<String>,
}

/// A compose project: its containers, grouped by the compose label.
#[derive(Debug, Clone, Default)]
pub struct Project {
    pub name: String,
    pub containers: Vec<ContainerRow>,
}

/// The previous CPU sample of each container, for a percentage between two looks.
#[derive(Default)]
pub struct CpuSamples {
    last: Mutex<HashMap<String, (u64, Instant)>>,
}

impl CpuSamples {
    fn percent(&self, id: &str, cpu_ns: u64, now: Instant) -> Option<f64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let prev = last.insert(id.to_string(), (cpu_ns, now));
        let (prev_ns, then) = prev?;
        let wall = now.duration_since(then).as_nanos() as f64;
        (wall > 0.0 && cpu_ns >= prev_ns).then(|| (cpu_ns - prev_ns) as f64 / wall * 100.0)
    }

    /// Forget containers that are gone, so the map does not grow with churn.
    fn retain(&self, ids: &[String]) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.retain(|k, _| ids.contains(k));
    }
}

/// `0.0.0.0:8080->80/tcp, 53/udp` from the `Ports` JSON of the container list.
pub fn ports_text(ports: &serde_json::Value) -> String {
    let mut out: Vec<String> = Vec::new();
    for p in ports.as_array().into_iter().flatten() {
        let private = p["PrivatePort"].as_u64().unwrap_or(0);
        let proto = p["Type"].as_str().unwrap_or("tcp");
        let s = match p["PublicPort"].as_u64() {
            Some(public) => format!(
                "{}:{public}->{private}/{proto}",
                p["IP"].as_str().unwrap_or("0.0.0.0")
            ),
            None => format!("{private}/{proto}"),
        };
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.join(", ")
}

/// Every container, newest first, with cgroup stats for running ones when `with_stats`.
pub fn containers(engine: &Engine, samples: &CpuSamples, with_stats: bool) -> Vec<ContainerRow> {
    let now_nanos = timefmt::now_nanos();
    let now = Instant::now();
    let mut rows: Vec<(String, ContainerRow)> = Vec::new();
    for entry in engine.list() {
        let rec = entry.lock().rec.clone();
        let (ports, _) = engine.summary_network(&rec);
        let labels = rec.config.labels.clone().unwrap_or_default();
        let mut row = ContainerRow {
            id: rec.id.clone(),
            name: rec.name.clone(),
            image: rec.image_ref.clone(),
            state: rec.state.status.as_str().to_string(),
            status: render::status_line(&rec, now_nanos),
            ports: ports_text(&ports),
            project: labels.get(PROJECT_LABEL).cloned(),
            service: labels.get(SERVICE_LABEL).cloned(),
            ..Default::default()
        };
        if with_stats && rec.state.status.is_active() {
            if let Ok(st) = crate::runtime::stats(&entry.dir) {
                row.memory = Some(st.memory_usage);
                row.cpu_seconds = Some(st.cpu_total_ns as f64 / 1e9);
                row.cpu_percent = samples.percent(&rec.id, st.cpu_total_ns, now);
            }
        }
        rows.push((rec.created.clone(), row));
    }
    crate::sort::sort_by(&mut rows, |a, b| b.0.cmp(&a.0));
    let rows: Vec<ContainerRow> = rows.into_iter().map(|r| r.1).collect();
    if with_stats {
        samples.retain(&rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>());
    }
    rows
}

/// Containers grouped by compose project, projects by name.
pub fn projects(rows: &[ContainerRow]) -> Vec<Project> {
    let mut by: BTreeMap<String, Vec<ContainerRow>> = BTreeMap::new();
    for r in rows {
        if let Some(p) = &r.project {
            by.entry(p.clone()).or_default().push(r.clone());
        }
    }
    by.into_iter()
        .map(|(name, mut containers)| {
            crate::sort::sort_by(&mut containers, |a, b| {
                a.service.cmp(&b.service).then(a.name.cmp(&b.name))
            });
            Project { name, containers }
        })
        .collect()
}

pub fn images(engine: &Engine) -> Vec<ImageRow> {
    engine
        .images
        .list()
        .into_iter()
        .map(|i| ImageRow {
            in_use: !engine.image_users(&i.id).is_empty(),
            id: i.id,
            tags: i.repo_tags,
            size: i.size.max(0) as u64,
            created: i.created,
        })
        .collect()
}

pub fn volumes(engine: &Engine) -> Vec<VolumeRow> {
    let used = engine.volumes_in_use();
    engine
        .volumes
        .list()
        .into_iter()
        .map(|v| VolumeRow {
            anonymous: v.is_anonymous(),
            in_use: used.contains(&v.name),
            name: v.name,
            driver: v.driver,
        })
        .collect()
}

pub fn networks(engine: &Engine) -> Vec<NetworkRow> {
    let net = engine.net();
    net.list()
        .into_iter()
        .map(|n| {
            let containers = net
                .inspect(&n.id)
                .ok()
                .and_then(|v| v["Containers"].as_object().map(|m| m.len()))
                .unwrap_or(0);
            NetworkRow {
                builtin: matches!(n.name.as_str(), "bridge" | "host" | "none"),
                containers,
                subnet: n.subnet.clone().unwrap_or_default(),
                id: n.id,
                name: n.name,
                driver: n.driver,
            }
        })
        .collect()
}

pub fn host(engine: &Engine, daemon_started: Instant) -> Host {
    let uts = rustix::system::uname();
    let info = rustix::system::sysinfo();
    let unit = u64::from(info.mem_unit);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let (disk_total, disk_used) = disk_use(&engine.config.root);
    Host {
        hostname: uts.nodename().to_string_lossy().into_owned(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        arch: crate::api::go_arch().to_string(),
        kernel: uts.release().to_string_lossy().into_owned(),
        uptime_secs: info.uptime.max(0) as u64,
        load: std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        mem_total: info.totalram as u64 * unit,
        mem_available: meminfo_kib(&meminfo, "MemAvailable").map_or(info.freeram as u64 * unit, |k| k * 1024),
        disk_total,
        disk_used,
        state_dir: engine.config.root.display().to_string(),
        daemon_rss: daemon_rss(),
        daemon_uptime_secs: daemon_started.elapsed().as_secs(),
    }
}

pub fn overview(engine: &Engine, daemon_started: Instant) -> Overview {
    let mut by_state = BTreeMap::new();
    let mut projects = std::collections::BTreeSet::new();
    for e in engine.list() {
        let slot = e.lock();
        *by_state
            .entry(slot.rec.state.status.as_str().to_string())
            .or_insert(0) += 1;
        if let Some(p) = slot.rec.config.labels.as_ref().and_then(|l| l.get(PROJECT_LABEL)) {
            projects.insert(p.clone());
        }
    }
    Overview {
        host: host(engine, daemon_started),
        by_state,
        images: engine.images.list().len(),
        networks: engine.net().list().len(),
        volumes: engine.volumes.list().len(),
        projects: projects.len(),
    }
}

/// Inspect data and the last `lines` log lines of one container.
pub fn detail(engine: &Engine, samples: &CpuSamples, reference: &str, lines: usize) -> Option<Detail> {
    let entry = engine.get(reference).ok()?;
    let rec = entry.lock().rec.clone();
    let mut inspect = render::inspect(&rec, &entry.dir);
    inspect["NetworkSettings"] = engine.network_settings(&rec);
    let row = containers(engine, samples, true)
        .into_iter()
        .find(|r| r.id == rec.id)?;
    let logs = crate::runtime::logs::read(&entry.dir, None, Some(lines))
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            String::from_utf8_lossy(&e.line)
                .trim_end_matches('\n')
                .to_string()
        })
        .collect();
    Some(Detail {
        row,
        inspect: serde_json::to_string_pretty(&inspect).unwrap_or_default(),
        logs,
    })
}

fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// (total, used) bytes of the filesystem holding the state dir.
fn disk_use(root: &Path) -> (u64, u64) {
    match rustix::fs::statvfs(root) {
        Ok(s) => {
            let total = s.f_blocks * s.f_frsize;
            (total, total.saturating_sub(s.f_bfree * s.f_frsize))
        }
        Err(_) => (0, 0),
    }
}

/// The daemon's resident memory in bytes (`VmRSS`).
pub fn daemon_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    meminfo_kib(&status, "VmRSS").unwrap_or(0) * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_read_like_docker_ps() {
        let v = serde_json::json!([
            {"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8080,"Type":"tcp"},
            {"PrivatePort":53,"Type":"udp"}
        ]);
        assert_eq!(ports_text(&v), "0.0.0.0:8080->80/tcp, 53/udp");
    }

    #[test]
    fn projects_group_by_label() {
        let row = |name: &str, p: Option<&str>| ContainerRow {
            name: name.into(),
            project: p.map(String::from),
            ..Default::default()
        };
        let ps = projects(&[
            row("a", Some("shop")),
            row("b", None),
            row("c", Some("shop")),
            row("d", Some("blog")),
        ]);
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].name, "blog");
        assert_eq!(ps[1].containers.len(), 2);
    }

    #[test]
    fn meminfo_parses() {
        assert_eq!(
            meminfo_kib("MemTotal: 100 kB\nMemAvailable:  42 kB\n", "MemAvailable"),
            Some(42)
        );
        assert_eq!(meminfo_kib("VmRSS:\t  5120 kB\n", "VmRSS"), Some(5120));
    }
}
