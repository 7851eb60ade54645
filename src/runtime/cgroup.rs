//! Control groups, v1 and v2: a container's cgroup is `<daemon's own cgroup>/<parent>/<id>` in
//! each hierarchy, so a daemon started inside a cgroup (by systemd or a test) keeps its
//! containers inside it. Limits: memory (+swap), CPU (CFS quota / `cpu.max`), pids, and on v1
//! the device allow-list. OOM kills are read back from `memory.oom_control` / `memory.events`.
//!
//! Every filesystem root is a parameter: discovery parses /proc/self/cgroup and mountinfo
//! text, and v2 set-up works on any directory, so it is unit-tested against a temp dir.

use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Which cgroup version a container's cgroups use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    V1,
    V2,
}

/// One mounted v1 hierarchy, and where this process sits in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub controllers: Vec<String>,
    pub mountpoint: PathBuf,
    /// This process's cgroup as a path under `mountpoint` (already relative to the mount root).
    pub own: String,
}

/// The cgroup layout seen by this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    V1(Vec<Hierarchy>),
    V2 { mountpoint: PathBuf, own: String },
}

/// v1 controllers a container joins (others, like cpuset, freezer or name=systemd, are left
/// alone).
/// Each costs a mkdir and a move at every start, so only those limits and stats need.
const V1_CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "devices"];

/// The cgroups a container was given; recorded in the container dir so that any later daemon
/// can read stats, detect OOM kills and remove them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroups {
    pub version: Version,
    /// (controllers, directory) per hierarchy; one entry on v2.
    pub dirs: Vec<(Vec<String>, PathBuf)>,
}

/// Resource limits (Docker's HostConfig fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    /// Privileged containers may use every device.
    pub all_devices: bool,
}

/// Counters of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub memory_usage: u64,
    /// 0 when unlimited.
    pub memory_limit: u64,
    pub cpu_total_ns: u64,
    pub pids: u64,
    /// 0 when unlimited.
    pub pids_limit: u64,
    /// Host CPU time of all CPUs (from /proc/stat), for Docker's CPU percentage.
    pub system_cpu_ns: u64,
    pub online_cpus: u32,
}

/// Docker's default device allow-list (type major:minor access); mknod of anything is
/// allowed but only these may be read or written.
pub const DEFAULT_DEVICES: [&str; 12] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

/// Join `own` (relative to the cgroupfs root) onto a mount whose root is `mount_root`.
fn relative_to_mount(own: &str, mount_root: &str) -> String {
    if mount_root == "/" {
        return own.to_string();
    }
    match own.strip_prefix(mount_root) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            if rest.is_empty() {
                "/".to_string()
            } else {
                rest.to_string()
            }
        }
        _ => own.to_string(),
    }
}

/// Work out the layout from the text of /proc/self/cgroup and /proc/self/mountinfo.
/// A hybrid host (v1 hierarchies plus an empty cgroup2 at .../unified) is treated as v1.
pub fn discover(proc_cgroup: &str, mountinfo: &str) -> io::Result<Layout> {
    let mut v1_own: Vec<(Vec<String>, String)> = vec![];
    let mut v2_own: Option<String> = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        if ctrls.is_empty() {
            v2_own = Some(path.to_string());
        } else {
            v1_own.push((ctrls.split(',').map(str::to_string).collect(), path.to_string()));
        }
    }
    let mut hierarchies = vec![];
    let mut v2_mount: Option<(PathBuf, String)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(root), Some(mountpoint)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        let (Some(fstype), Some(superopts)) = (fields.get(dash + 1), fields.get(dash + 3)) else {
            continue;
        };
        let mountpoint = PathBuf::from(mountpoint.replace("\\040", " "));
        if *fstype == "cgroup2" {
            v2_mount.get_or_insert((mountpoint, root.to_string()));
        } else if *fstype == "cgroup" {
            let opts: Vec<String> = superopts.split(',').map(str::to_string).collect();
            let own = v1_own
                .iter()
                .find(|(ctrls, _)| ctrls.iter().all(|c| opts.contains(c)) && !ctrls.is_empty());
            let Some((ctrls, own)) = own else { continue };
            if ctrls.iter().any(|c| V1_CONTROLLERS.contains(&c.as_str()))
                && !hierarchies.iter().any(|h: &Hierarchy| &h.controllers == ctrls)
            {
                hierarchies.push(Hierarchy {
                    controllers: ctrls.clone(),
                    mountpoint,
                    own: relative_to_mount(own, root),
                });
            }
        }
    }
    if !hierarchies.is_empty() {
        return Ok(Layout::V1(hierarchies));
    }
    match (v2_mount, v2_own) {
        (Some((mountpoint, root)), Some(own)) => Ok(Layout::V2 {
            mountpoint,
            own: relative_to_mount(&own, &root),
        }),
        _ => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no cgroup filesystem is mounted (checked /proc/self/mountinfo)",
        )),
    }
}

/// The layout of the running process.
pub fn discover_self() -> io::Result<Layout> {
    let read =
        |p: &str| fs::read_to_string(p).map_err(|e| io::Error::new(e.kind(), format!("reading {p}: {e}")));
    discover(&read("/proc/self/cgroup")?, &read("/proc/self/mountinfo")?)
}

fn under(base: &Path, rel: &str) -> PathBuf {
    let mut p = base.to_path_buf();
    for part in rel
        .split('/')
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
    {
        p.push(part);
    }
    p
}

/// Write `value` to the control file `dir/name`, naming both in an error.
pub fn write_file(dir: &Path, name: &str, value: &str) -> io::Result<()> {
    let path = dir.join(name);
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))?;
    f.write_all(value.as_bytes())
        .map_err(|e| io::Error::new(e.kind(), format!("writing {value:?} to {}: {e}", path.display())))
}

fn mkdir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("creating cgroup {}: {e}", dir.display())))
}

/// Create the container's cgroups and apply `limits`.
pub fn create(layout: &Layout, parent: &str, id: &str, limits: &Limits) -> io::Result<Cgroups> {
    match layout {
        Layout::V1(hs) => create_v1(hs, parent, id, limits),
        Layout::V2 { mountpoint, own } => {
            let cg = create_v2(mountpoint, own, parent, id, limits)?;
            if !limits.all_devices {
                restrict_devices_v2(&cg.dirs[0].1)?;
            }
            Ok(cg)
        }
    }
}

/// Apply the device allow-list to a v2 cgroup (an eBPF program; see `devices`).
pub fn restrict_devices_v2(dir: &Path) -> io::Result<()> {
    let insns = super::devices::encode(&super::devices::program());
    crate::sys::attach_device_program(dir, &insns).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("attaching the device policy to {}: {e}", dir.display()),
        )
    })
}

fn create_v1(hierarchies: &[Hierarchy], parent: &str, id: &str, limits: &Limits) -> io::Result<Cgroups> {
    let mut dirs = vec![];
    for h in hierarchies {
        let dir = under(&under(&under(&h.mountpoint, &h.own), parent), id);
        mkdir(&dir)?;
        dirs.push((h.controllers.clone(), dir.clone()));
        let has = |c: &str| h.controllers.iter().any(|x| x == c);
        if has("memory") {
            if let Some(m) = limits.memory.filter(|m| *m > 0) {
                write_file(&dir, "memory.limit_in_bytes", &m.to_string())?;
                // memsw exists only with swap accounting; Docker's default swap is 2× memory.
                if dir.join("memory.memsw.limit_in_bytes").exists() {
                    let swap = match limits.memory_swap {
                        Some(-1) => -1,
                        Some(s) if s > 0 => s,
                        _ => m.saturating_mul(2),
                    };
                    write_file(&dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
                }
            }
        }
        if has("cpu") {
            if let Some(n) = limits.nano_cpus.filter(|n| *n > 0) {
                write_file(&dir, "cpu.cfs_period_us", "100000")?;
                write_file(&dir, "cpu.cfs_quota_us", &cfs_quota(n).to_string())?;
            }
        }
        if has("pids") {
            if let Some(p) = limits.pids_limit.filter(|p| *p > 0) {
                write_file(&dir, "pids.max", &p.to_string())?;
            }
        }
        if has("devices") {
            if limits.all_devices {
                write_file(&dir, "devices.allow", "a")?;
            } else {
                write_file(&dir, "devices.deny", "a")?;
                for rule in DEFAULT_DEVICES {
                    write_file(&dir, "devices.allow", rule)?;
                }
            }
        }
    }
    Ok(Cgroups {
        version: Version::V1,
        dirs,
    })
}

/// CFS quota in µs for a period of 100 ms; at least 1 ms as the kernel requires.
fn cfs_quota(nano_cpus: i64) -> i64 {
    (nano_cpus / 10_000).max(1000)
}

/// Set up a v2 container cgroup under `root/own/parent/id`. Controllers are enabled in
/// `subtree_control` down the path; since a v2 cgroup with processes cannot also hand out
/// controllers, processes found in `own` are first moved to the leaf `own/daemon`.
pub fn create_v2(root: &Path, own: &str, parent: &str, id: &str, limits: &Limits) -> io::Result<Cgroups> {
    let base = under(root, own);
    let wanted: Vec<String> = fs::read_to_string(base.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .filter(|c| ["memory", "cpu", "pids"].contains(c))
        .map(str::to_string)
        .collect();
    if base != root {
        let procs = fs::read_to_string(base.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<&str> = procs.split_whitespace().collect();
        if !pids.is_empty() {
            let leaf = base.join("daemon");
            mkdir(&leaf)?;
            for pid in pids {
                // A process may exit between reading and moving it; that is not an error.
                match write_file(&leaf, "cgroup.procs", pid) {
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    other => other?,
                }
            }
        }
    }
    let enable: String = wanted.iter().map(|c| format!("+{c} ")).collect();
    let enable = enable.trim_end();
    let mut dir = base.clone();
    let parts: Vec<&str> = parent
        .split('/')
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .collect();
    for part in parts.iter().copied().chain(std::iter::once(id)) {
        if !enable.is_empty() {
            write_file(&dir, "cgroup.subtree_control", enable)?;
        }
        dir.push(part);
        mkdir(&dir)?;
    }
    let has = |c: &str| wanted.iter().any(|x| x == c);
    if has("memory") {
        if let Some(m) = limits.memory.filter(|m| *m > 0) {
            write_file(&dir, "memory.max", &m.to_string())?;
            let swap = match limits.memory_swap {
                Some(-1) => "max".to_string(),
                Some(s) if s > 0 => (s - m).max(0).to_string(),
                _ => m.to_string(),
            };
            if dir.join("memory.swap.max").exists() {
                write_file(&dir, "memory.swap.max", &swap)?;
            }
        }
    }
    if has("cpu") {
        if let Some(n) = limits.nano_cpus.filter(|n| *n > 0) {
            write_file(&dir, "cpu.max", &format!("{} 100000", cfs_quota(n)))?;
        }
    }
    if has("pids") {
        if let Some(p) = limits.pids_limit.filter(|p| *p > 0) {
            write_file(&dir, "pids.max", &p.to_string())?;
        }
    }
    Ok(Cgroups {
        version: Version::V2,
        dirs: vec![(wanted, dir)],
    })
}

impl Cgroups {
    /// The `cgroup.procs` files a process writes "0" into to join the container.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, d)| d.join("cgroup.procs")).collect()
    }

    fn dir_of(&self, controller: &str) -> Option<&Path> {
        match self.version {
            Version::V2 => self.dirs.first().map(|(_, d)| d.as_path()),
            Version::V1 => self
                .dirs
                .iter()
                .find(|(c, _)| c.iter().any(|x| x == controller))
                .map(|(_, d)| d.as_path()),
        }
    }

    /// Did the kernel's OOM killer kill a process of this container?
    pub fn oom_killed(&self) -> bool {
        let Some(dir) = self.dir_of("memory") else {
            return false;
        };
        let file = match self.version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        let text = fs::read_to_string(dir.join(file)).unwrap_or_default();
        key_value(&text, "oom_kill").is_some_and(|n| n > 0)
    }

    /// Pids of every process in the container (host pid namespace).
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        let dir = self
            .dir_of("pids")
            .or_else(|| self.dirs.first().map(|(_, d)| d.as_path()))
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "container has no cgroup"))?;
        let path = dir.join("cgroup.procs");
        let text = fs::read_to_string(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))?;
        Ok(text.split_whitespace().filter_map(|p| p.parse().ok()).collect())
    }

    /// Read the container's counters.
    pub fn stats(&self) -> io::Result<Stats> {
        let read = |c: &str, f: &str| -> Option<String> { fs::read_to_string(self.dir_of(c)?.join(f)).ok() };
        let num = |c: &str, f: &str| -> u64 { read(c, f).and_then(|s| s.trim().parse().ok()).unwrap_or(0) };
        // "max" and the v1 "unlimited" value (a page-rounded i64::MAX) both mean no limit.
        let limit = |c: &str, f: &str| -> u64 {
            let v = num(c, f);
            if v >= (i64::MAX as u64) & !0xfff {
                0
            } else {
                v
            }
        };
        let mut s = match self.version {
            Version::V1 => Stats {
                memory_usage: num("memory", "memory.usage_in_bytes"),
                memory_limit: limit("memory", "memory.limit_in_bytes"),
                cpu_total_ns: num("cpuacct", "cpuacct.usage"),
                pids: num("pids", "pids.current"),
                pids_limit: num("pids", "pids.max"),
                ..Stats::default()
            },
            Version::V2 => Stats {
                memory_usage: num("memory", "memory.current"),
                memory_limit: limit("memory", "memory.max"),
                cpu_total_ns: read("cpu", "cpu.stat")
                    .and_then(|t| key_value(&t, "usage_usec"))
                    .unwrap_or(0)
                    .saturating_mul(1000),
                pids: num("pids", "pids.current"),
                pids_limit: num("pids", "pids.max"),
                ..Stats::default()
            },
        };
        s.system_cpu_ns = system_cpu_ns();
        s.online_cpus = crate::sys::online_cpus();
        Ok(s)
    }

    /// Remove the container's cgroup directories. Processes dying in the container may keep a
    /// cgroup busy for a moment after the init exits, hence the short retries.
    pub fn remove(&self) -> io::Result<()> {
        for (_, dir) in &self.dirs {
            let mut tries = 0;
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 50 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("removing cgroup {}: {e}", dir.display()),
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}

/// The value of `key N` in a flat-keyed cgroup file.
fn key_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Total CPU time of the host in ns, from the first line of /proc/stat.
fn system_cpu_ns() -> u64 {
    let text = fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = text
        .lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(7)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    ticks.saturating_mul(1_000_000_000 / crate::sys::clock_ticks())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_CGROUP: &str = "9:name=systemd:/\n8:pids:/a\n4:memory:/a\n1:cpu,cpuacct:/a\n0::/\n";
    const HYBRID_MOUNTS: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn hybrid_host_is_v1_with_own_paths() {
        let Layout::V1(hs) = discover(HYBRID_CGROUP, HYBRID_MOUNTS).unwrap() else {
            panic!("not v1")
        };
        assert_eq!(hs.len(), 3, "{hs:?}");
        let mem = hs.iter().find(|h| h.controllers == ["memory"]).unwrap();
        assert_eq!(mem.mountpoint, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(mem.own, "/a");
        assert!(hs.iter().any(|h| h.controllers == ["cpu", "cpuacct"]));
    }

    #[test]
    fn pure_v2_and_mount_roots() {
        let mounts = "40 1 0:40 /sys.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let layout = discover("0::/sys.slice/shoal.service\n", mounts).unwrap();
        assert_eq!(
            layout,
            Layout::V2 {
                mountpoint: "/sys/fs/cgroup".into(),
                own: "/shoal.service".into()
            }
        );
        assert!(discover("0::/\n", "").is_err());
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("shoal-cg-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn v2_moves_daemon_to_leaf_enables_controllers_and_writes_limits() {
        let root = temp("v2");
        let own = root.join("svc");
        fs::create_dir_all(&own).unwrap();
        fs::write(own.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        fs::write(own.join("cgroup.procs"), "41\n42\n").unwrap();
        fs::write(own.join("cgroup.subtree_control"), "").unwrap();
        // A tmpfs does not create control files by itself: pre-create the ones we write.
        let leaf = own.join("daemon");
        fs::create_dir_all(&leaf).unwrap();
        fs::write(leaf.join("cgroup.procs"), "").unwrap();
        let mid = own.join("ci");
        let dir = mid.join("c1");
        fs::create_dir_all(&dir).unwrap();
        fs::write(mid.join("cgroup.subtree_control"), "").unwrap();
        for f in ["memory.max", "memory.swap.max", "cpu.max", "pids.max"] {
            fs::write(dir.join(f), "").unwrap();
        }
        let limits = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(96 << 20),
            nano_cpus: Some(1_500_000_000),
            pids_limit: Some(50),
            all_devices: false,
        };
        let cg = create_v2(&root, "/svc", "ci", "c1", &limits).unwrap();
        assert_eq!(
            cg.dirs,
            vec![(vec!["cpu".into(), "memory".into(), "pids".into()], dir.clone())]
        );
        assert_eq!(fs::read_to_string(leaf.join("cgroup.procs")).unwrap(), "4142");
        assert_eq!(
            fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids"
        );
        assert_eq!(
            fs::read_to_string(mid.join("cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids"
        );
        assert_eq!(fs::read_to_string(dir.join("memory.max")).unwrap(), "67108864");
        assert_eq!(
            fs::read_to_string(dir.join("memory.swap.max")).unwrap(),
            "33554432"
        );
        assert_eq!(fs::read_to_string(dir.join("cpu.max")).unwrap(), "150000 100000");
        assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap(), "50");
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert!(cg.oom_killed());
        fs::write(dir.join("memory.current"), "1234\n").unwrap();
        fs::write(dir.join("cpu.stat"), "usage_usec 7\nuser_usec 5\n").unwrap();
        fs::write(dir.join("memory.max"), "max\n").unwrap();
        let s = cg.stats().unwrap();
        assert_eq!(
            (s.memory_usage, s.memory_limit, s.cpu_total_ns, s.pids_limit),
            (1234, 0, 7000, 50)
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn v2_without_controllers_still_creates_the_cgroup() {
        let root = temp("v2-empty");
        let cg = create_v2(&root, "/", "p", "c", &Limits::default()).unwrap();
        assert!(cg.dirs[0].1.is_dir());
        assert!(!cg.oom_killed());
        fs::remove_dir_all(&root).unwrap();
    }
}
