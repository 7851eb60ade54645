//! `shoal check-config`: which kernel features shoal needs are there, which are modules not
//! loaded yet, and which are missing (with their CONFIG_ names), in the manner of Docker's
//! check-config.sh.
//!
//! The kernel config (from /proc/config.gz, /boot/config-$(uname -r) or a file given as
//! argument) says what was built; probing (/proc/filesystems, /proc/self/ns, the cgroup
//! controllers, /proc/modules, /lib/modules) says what is usable now. When there is no config
//! the probes alone decide. [`evaluate`] is pure; [`Probes::gather`] does the reading, from a
//! root directory that tests replace with a temporary tree.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// How a CONFIG_ option is set in a kernel config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    BuiltIn,
    Module,
}

/// Parses a kernel `.config`: `CONFIG_X=y` / `=m` (other values count as built in, e.g.
/// numbers); `# CONFIG_X is not set` and absent options are simply not in the map.
pub fn parse_kernel_config(text: &str) -> BTreeMap<String, Setting> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some((name, value)) = line.split_once('=') {
            if !name.starts_with("CONFIG_") {
                continue;
            }
            match value {
                "m" => map.insert(name.to_string(), Setting::Module),
                "n" | "" => None,
                _ => map.insert(name.to_string(), Setting::BuiltIn),
            };
        }
    }
    map
}

/// How a feature shows itself on a running kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// No run-time sign: only the config can tell.
    ConfigOnly,
    /// A file system type in /proc/filesystems.
    Filesystem(&'static str),
    /// An entry in /proc/self/ns.
    Namespace(&'static str),
    /// A cgroup controller (v2 cgroup.controllers or v1 /proc/cgroups).
    Controller(&'static str),
    /// A kernel module name (loaded in /proc/modules, available under /lib/modules, or built
    /// in per modules.builtin).
    Module(&'static str),
    /// A path that exists when the feature is active.
    Path(&'static str),
}

/// One feature shoal uses.
#[derive(Debug, Clone, Copy)]
pub struct Feature {
    pub config: &'static str,
    pub what: &'static str,
    pub required: bool,
    pub probe: Probe,
}

const fn req(config: &'static str, what: &'static str, probe: Probe) -> Feature {
    Feature {
        config,
        what,
        required: true,
        probe,
    }
}
const fn opt(config: &'static str, what: &'static str, probe: Probe) -> Feature {
    Feature {
        config,
        what,
        required: false,
        probe,
    }
}

/// The features checked, required ones first.
pub const FEATURES: &[Feature] = &[
    req("CONFIG_NAMESPACES", "namespaces", Probe::Namespace("mnt")),
    req("CONFIG_PID_NS", "PID namespace", Probe::Namespace("pid")),
    req("CONFIG_NET_NS", "network namespace", Probe::Namespace("net")),
    req("CONFIG_IPC_NS", "IPC namespace", Probe::Namespace("ipc")),
    req("CONFIG_UTS_NS", "UTS namespace", Probe::Namespace("uts")),
    req("CONFIG_CGROUPS", "control groups", Probe::Filesystem("cgroup2")),
    req("CONFIG_MEMCG", "memory controller", Probe::Controller("memory")),
    req("CONFIG_CGROUP_PIDS", "pids controller", Probe::Controller("pids")),
    req("CONFIG_CGROUP_SCHED", "cpu controller", Probe::Controller("cpu")),
    req(
        "CONFIG_POSIX_MQUEUE",
        "POSIX message queues",
        Probe::Filesystem("mqueue"),
    ),
    req("CONFIG_DEVPTS_FS", "devpts", Probe::Filesystem("devpts")),
    req(
        "CONFIG_OVERLAY_FS",
        "overlay file system",
        Probe::Module("overlay"),
    ),
    req("CONFIG_VETH", "veth pairs", Probe::Module("veth")),
    req("CONFIG_BRIDGE", "bridges", Probe::Module("bridge")),
    opt("CONFIG_USER_NS", "user namespace", Probe::Namespace("user")),
    opt("CONFIG_CGROUP_NS", "cgroup namespace", Probe::Namespace("cgroup")),
    opt("CONFIG_CPUSETS", "cpuset controller", Probe::Controller("cpuset")),
    opt("CONFIG_BLK_CGROUP", "io controller", Probe::Controller("io")),
    opt(
        "CONFIG_CGROUP_BPF",
        "device control on cgroup v2",
        Probe::ConfigOnly,
    ),
    opt(
        "CONFIG_CGROUP_DEVICE",
        "devices controller (cgroup v1)",
        Probe::ConfigOnly,
    ),
    opt("CONFIG_CGROUP_FREEZER", "freezer (cgroup v1)", Probe::ConfigOnly),
    opt(
        "CONFIG_SECCOMP",
        "seccomp",
        Probe::Path("/proc/self/seccomp-probe"),
    ),
    opt("CONFIG_SECCOMP_FILTER", "seccomp filters", Probe::ConfigOnly),
    opt(
        "CONFIG_VXLAN",
        "VXLAN (networks across boards)",
        Probe::Module("vxlan"),
    ),
    opt(
        "CONFIG_BRIDGE_NETFILTER",
        "bridge netfilter",
        Probe::Module("br_netfilter"),
    ),
    opt(
        "CONFIG_NF_TABLES",
        "nftables (port publishing, NAT)",
        Probe::Module("nf_tables"),
    ),
    opt("CONFIG_NFT_NAT", "nftables NAT", Probe::Module("nft_nat")),
    opt(
        "CONFIG_NFT_MASQ",
        "nftables masquerade",
        Probe::Module("nft_masq"),
    ),
    opt("CONFIG_NF_NAT", "NAT core", Probe::Module("nf_nat")),
    opt(
        "CONFIG_NF_CONNTRACK",
        "connection tracking",
        Probe::Module("nf_conntrack"),
    ),
    opt(
        "CONFIG_IP_NF_IPTABLES",
        "iptables (fallback to nftables)",
        Probe::Module("ip_tables"),
    ),
    opt("CONFIG_IP_NF_NAT", "iptables NAT", Probe::Module("iptable_nat")),
];

/// What is known about the running system.
#[derive(Debug, Clone, Default)]
pub struct Probes {
    pub filesystems: BTreeSet<String>,
    pub namespaces: BTreeSet<String>,
    pub controllers: BTreeSet<String>,
    /// "v2", "v1", "hybrid" or "none".
    pub cgroup_mode: String,
    pub loaded_modules: BTreeSet<String>,
    pub available_modules: BTreeSet<String>,
    pub builtin_modules: BTreeSet<String>,
    pub seccomp: bool,
    pub existing_paths: BTreeSet<String>,
}

/// The verdict on one feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Enabled,
    /// Built as a module; `loaded` says whether it is loaded now.
    Module {
        loaded: bool,
    },
    Missing,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Row {
    pub feature: Feature,
    pub status: Status,
}

/// Module file names use '-' and '_' interchangeably; the kernel reports '_'.
fn module_key(name: &str) -> String {
    name.replace('-', "_")
}

fn probe_seen(probe: Probe, p: &Probes) -> Option<Status> {
    let present = match probe {
        Probe::ConfigOnly => return None,
        Probe::Filesystem(fs) => p.filesystems.contains(fs),
        Probe::Namespace(ns) => p.namespaces.contains(ns),
        Probe::Controller(c) => p.controllers.contains(c),
        Probe::Path(path) if path.ends_with("seccomp-probe") => p.seccomp,
        Probe::Path(path) => p.existing_paths.contains(path),
        Probe::Module(m) => {
            let key = module_key(m);
            if p.loaded_modules.contains(&key) || p.builtin_modules.contains(&key) {
                return Some(Status::Enabled);
            }
            if m == "overlay" && p.filesystems.contains("overlay") {
                return Some(Status::Enabled);
            }
            if p.available_modules.contains(&key) {
                return Some(Status::Module { loaded: false });
            }
            false
        }
    };
    Some(if present { Status::Enabled } else { Status::Missing })
}

/// Decides each feature from the config (when there is one) and the probes.
pub fn evaluate(config: Option<&BTreeMap<String, Setting>>, probes: &Probes) -> Vec<Row> {
    FEATURES
        .iter()
        .map(|f| {
            let seen = probe_seen(f.probe, probes);
            let status = match (config.map(|c| c.get(f.config)), seen) {
                (Some(Some(Setting::BuiltIn)), _) => Status::Enabled,
                (Some(Some(Setting::Module)), Some(Status::Enabled)) => Status::Module { loaded: true },
                (Some(Some(Setting::Module)), _) => Status::Module { loaded: false },
                // Not in the config, but the running kernel shows it (e.g. a config file
                // for another kernel): trust what runs.
                (_, Some(Status::Enabled)) => Status::Enabled,
                (_, Some(Status::Module { loaded })) => Status::Module { loaded },
                (Some(None), _) => Status::Missing,
                (None, Some(Status::Missing)) => Status::Missing,
                (None, None) => Status::Missing,
            };
            Row { feature: *f, status }
        })
        .collect()
}

/// Renders the report; returns the text and whether every required feature is usable.
pub fn render(rows: &[Row], source: &str, cgroup_mode: &str) -> (String, bool) {
    let mut out = format!("info: kernel config: {source}\ninfo: cgroup hierarchy: {cgroup_mode}\n");
    let mut ok = true;
    for (title, required) in [("Required", true), ("Optional", false)] {
        out.push_str(&format!("\n{title}:\n"));
        for row in rows.iter().filter(|r| r.feature.required == required) {
            let verdict = match row.status {
                Status::Enabled => "enabled".to_string(),
                Status::Module { loaded: true } => "enabled (module, loaded)".to_string(),
                Status::Module { loaded: false } => "module, not loaded".to_string(),
                Status::Missing => {
                    if required {
                        ok = false;
                    }
                    "MISSING".to_string()
                }
            };
            out.push_str(&format!(
                "- {}: {} ({})\n",
                row.feature.config, verdict, row.feature.what
            ));
        }
    }
    if rows.iter().all(|r| {
        !matches!(r.feature.config, "CONFIG_NF_TABLES" | "CONFIG_IP_NF_IPTABLES")
            || r.status == Status::Missing
    }) {
        out.push_str("\nwarning: neither nftables nor iptables: published ports use the userland proxy\n");
    }
    out.push_str(if ok {
        "\nresult: every required feature is present\n"
    } else {
        "\nresult: required features are MISSING (see above)\n"
    });
    (out, ok)
}

impl Probes {
    /// Reads the running system under `root` ("/" normally) for kernel release `release`.
    pub fn gather(root: &Path, release: &str) -> Probes {
        let read = |rel: &str| std::fs::read_to_string(root.join(rel)).unwrap_or_default();
        let mut p = Probes::default();
        for line in read("proc/filesystems").lines() {
            if let Some(fs) = line.split_whitespace().last() {
                p.filesystems.insert(fs.to_string());
            }
        }
        if let Ok(entries) = std::fs::read_dir(root.join("proc/self/ns")) {
            for e in entries.flatten() {
                p.namespaces.insert(e.file_name().to_string_lossy().into_owned());
            }
        }
        let v2 = read("sys/fs/cgroup/cgroup.controllers");
        let v2_mounted = root.join("sys/fs/cgroup/cgroup.controllers").exists();
        for c in v2.split_whitespace() {
            p.controllers.insert(c.to_string());
        }
        // /proc/cgroups: "name hierarchy num_cgroups enabled"; hierarchy 0 = not on v1.
        let mut v1_bound = false;
        for line in read("proc/cgroups").lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 4 && f[3] == "1" {
                p.controllers.insert(f[0].to_string());
                v1_bound |= f[1] != "0";
            }
        }
        // The v1 name of the cpu controller is "cpu"; the v2 one too. "blkio" is v1's "io".
        if p.controllers.contains("blkio") {
            p.controllers.insert("io".to_string());
        }
        p.cgroup_mode = match (v2_mounted, v1_bound) {
            (true, false) => "v2 (unified)",
            (true, true) => "hybrid (v1 and v2)",
            (false, true) => "v1",
            (false, false) => "none mounted",
        }
        .to_string();
        for line in read("proc/modules").lines() {
            if let Some(name) = line.split_whitespace().next() {
                p.loaded_modules.insert(module_key(name));
            }
        }
        let moddir = format!("lib/modules/{release}");
        for line in read(&format!("{moddir}/modules.dep")).lines() {
            if let Some(path) = line.split(':').next() {
                p.available_modules.insert(module_file_name(path));
            }
        }
        for line in read(&format!("{moddir}/modules.builtin")).lines() {
            p.builtin_modules.insert(module_file_name(line.trim()));
        }
        p.seccomp = read("proc/self/status")
            .lines()
            .any(|l| l.starts_with("Seccomp:"));
        for f in FEATURES {
            if let Probe::Path(path) = f.probe {
                if root.join(path.trim_start_matches('/')).exists() {
                    p.existing_paths.insert(path.to_string());
                }
            }
        }
        p
    }
}

/// "kernel/net/bridge/bridge.ko.xz" -> "bridge".
pub fn module_file_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    module_key(stem)
}

/// Finds and reads the kernel config: an explicit path, /proc/config.gz, then
/// /boot/config-RELEASE. Returns the text and where it came from.
pub fn read_kernel_config(
    root: &Path,
    explicit: Option<&Path>,
    release: &str,
) -> Result<Option<(String, String)>, String> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => vec![
            root.join("proc/config.gz"),
            root.join(format!("boot/config-{release}")),
        ],
    };
    for path in candidates {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if explicit.is_some() => return Err(format!("reading {}: {e}", path.display())),
            Err(_) => continue,
        };
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut s = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut s)
                .map_err(|e| format!("decompressing {}: {e}", path.display()))?;
            s
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        return Ok(Some((text, path.display().to_string())));
    }
    Ok(None)
}

/// `shoal check-config [CONFIG_FILE]`; exit 0 when every required feature is usable, 1 when
/// one is missing, 2 on a usage error.
pub fn main(args: &[String]) -> i32 {
    let explicit = match args {
        [] => None,
        [h] if h == "--help" || h == "-h" => {
            println!(
                "Usage: shoal check-config [CONFIG_FILE]\n\nReports the kernel features shoal needs. \
                 Reads CONFIG_FILE, /proc/config.gz or /boot/config-$(uname -r), and probes the \
                 running kernel.\nExit status: 0 all required features present, 1 some missing."
            );
            return 0;
        }
        [path] => Some(PathBuf::from(path)),
        _ => {
            eprintln!("usage: shoal check-config [CONFIG_FILE]");
            return 2;
        }
    };
    let release = rustix::system::uname().release().to_string_lossy().into_owned();
    let root = Path::new("/");
    let config = match read_kernel_config(root, explicit.as_deref(), &release) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shoal check-config: {e}");
            return 2;
        }
    };
    let probes = Probes::gather(root, &release);
    let parsed = config.as_ref().map(|(text, _)| parse_kernel_config(text));
    let source = match &config {
        Some((_, from)) => from.clone(),
        None => "not found (probing the running kernel only)".to_string(),
    };
    let rows = evaluate(parsed.as_ref(), &probes);
    let (text, ok) = render(&rows, &source, &probes.cgroup_mode);
    print!("{text}");
    if ok {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_config() -> String {
        FEATURES.iter().map(|f| format!("{}=y\n", f.config)).collect()
    }

    fn row<'a>(rows: &'a [Row], name: &str) -> &'a Row {
        rows.iter().find(|r| r.feature.config == name).unwrap()
    }

    #[test]
    fn parses_settings() {
        let c = parse_kernel_config(
            "# comment\nCONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=\"x\"\nCONFIG_E=4\nJUNK\n=\n",
        );
        assert_eq!(c.get("CONFIG_A"), Some(&Setting::BuiltIn));
        assert_eq!(c.get("CONFIG_B"), Some(&Setting::Module));
        assert_eq!(c.get("CONFIG_C"), None);
        assert_eq!(c.get("CONFIG_D"), Some(&Setting::BuiltIn));
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn complete_config_passes() {
        let c = parse_kernel_config(&full_config());
        let rows = evaluate(Some(&c), &Probes::default());
        let (text, ok) = render(&rows, "test", "v2");
        assert!(ok, "{text}");
        assert!(!text.contains("MISSING"));
    }

    #[test]
    fn missing_required_option_fails_and_is_named() {
        let text = full_config().replace("CONFIG_VETH=y\n", "# CONFIG_VETH is not set\n");
        let rows = evaluate(Some(&parse_kernel_config(&text)), &Probes::default());
        assert_eq!(row(&rows, "CONFIG_VETH").status, Status::Missing);
        let (out, ok) = render(&rows, "test", "v2");
        assert!(!ok);
        assert!(out.contains("- CONFIG_VETH: MISSING"), "{out}");
    }

    #[test]
    fn missing_optional_option_still_passes() {
        let text = full_config().replace("CONFIG_VXLAN=y\n", "");
        let rows = evaluate(Some(&parse_kernel_config(&text)), &Probes::default());
        assert_eq!(row(&rows, "CONFIG_VXLAN").status, Status::Missing);
        assert!(render(&rows, "t", "v2").1);
    }

    #[test]
    fn modules_loaded_or_not() {
        let text = full_config()
            .replace("CONFIG_BRIDGE=y", "CONFIG_BRIDGE=m")
            .replace("CONFIG_VETH=y", "CONFIG_VETH=m");
        let mut probes = Probes::default();
        probes.loaded_modules.insert("bridge".into());
        let rows = evaluate(Some(&parse_kernel_config(&text)), &probes);
        assert_eq!(
            row(&rows, "CONFIG_BRIDGE").status,
            Status::Module { loaded: true }
        );
        assert_eq!(row(&rows, "CONFIG_VETH").status, Status::Module { loaded: false });
        let (out, ok) = render(&rows, "t", "v2");
        assert!(ok);
        assert!(out.contains("CONFIG_VETH: module, not loaded"));
    }

    #[test]
    fn without_config_probes_decide() {
        let mut probes = Probes::default();
        for ns in ["mnt", "pid", "net", "ipc", "uts"] {
            probes.namespaces.insert(ns.into());
        }
        for fs in ["cgroup2", "mqueue", "devpts", "overlay"] {
            probes.filesystems.insert(fs.into());
        }
        for c in ["memory", "pids", "cpu"] {
            probes.controllers.insert(c.into());
        }
        probes.available_modules.insert("veth".into());
        let rows = evaluate(None, &probes);
        assert_eq!(row(&rows, "CONFIG_OVERLAY_FS").status, Status::Enabled);
        assert_eq!(row(&rows, "CONFIG_VETH").status, Status::Module { loaded: false });
        assert_eq!(row(&rows, "CONFIG_BRIDGE").status, Status::Missing);
        assert!(!render(&rows, "t", "v2").1);
        probes.builtin_modules.insert("bridge".into());
        assert!(render(&evaluate(None, &probes), "t", "v2").1);
    }

    #[test]
    fn module_names_from_paths() {
        assert_eq!(
            module_file_name("kernel/net/bridge/br_netfilter.ko.xz"),
            "br_netfilter"
        );
        assert_eq!(module_file_name("kernel/drivers/net/veth.ko"), "veth");
        assert_eq!(module_file_name("nf-tables.ko.zst"), "nf_tables");
    }

    #[test]
    fn gathers_from_a_fake_root() {
        let root = std::env::temp_dir().join(format!("shoal-checkcfg-{}", std::process::id()));
        let w = |rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w("proc/filesystems", "nodev\tcgroup2\nnodev\tmqueue\n\text4\n");
        w("sys/fs/cgroup/cgroup.controllers", "cpu io memory pids\n");
        w(
            "proc/cgroups",
            "#subsys_name hierarchy num_cgroups enabled\ncpuset 0 1 1\nfreezer 0 1 0\n",
        );
        w("proc/modules", "veth 40960 0 - Live 0x0\n");
        w(
            "lib/modules/6.1.0-t/modules.dep",
            "kernel/net/bridge/bridge.ko: kernel/net/llc/llc.ko\n",
        );
        w(
            "lib/modules/6.1.0-t/modules.builtin",
            "kernel/fs/overlayfs/overlay.ko\n",
        );
        w("proc/self/status", "Name:\tx\nSeccomp:\t0\n");
        w("proc/config.gz", "");
        let p = Probes::gather(&root, "6.1.0-t");
        assert!(p.filesystems.contains("cgroup2") && p.filesystems.contains("ext4"));
        assert!(p.controllers.contains("memory") && p.controllers.contains("cpuset"));
        assert!(!p.controllers.contains("freezer"));
        assert_eq!(p.cgroup_mode, "v2 (unified)");
        assert!(p.loaded_modules.contains("veth"));
        assert!(p.available_modules.contains("bridge") && p.available_modules.contains("llc") == false);
        assert!(p.builtin_modules.contains("overlay"));
        assert!(p.seccomp);
        // A gzip config is decompressed.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"CONFIG_VETH=m\n").unwrap();
        std::fs::write(root.join("proc/config.gz"), gz.finish().unwrap()).unwrap();
        let (text, from) = read_kernel_config(&root, None, "6.1.0-t").unwrap().unwrap();
        assert_eq!(text, "CONFIG_VETH=m\n");
        assert!(from.ends_with("proc/config.gz"));
        assert!(read_kernel_config(&root, Some(&root.join("nope")), "x").is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
