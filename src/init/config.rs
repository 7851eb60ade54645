//! The daemon's configuration file (default `/etc/shoal/config.toml`).
//!
//! A small TOML subset, enough for flat settings: `key = value` lines, `[section]` headers,
//! `#` comments, values that are basic strings ("..." with \\ \" \n \t escapes), literal
//! strings ('...'), integers and booleans. Unknown keys and malformed lines are errors naming
//! the file and line, so a typo never silently falls back to a default. Command-line flags
//! override what the file says; the file overrides the built-in defaults.

use std::path::{Path, PathBuf};

/// Settings read from the configuration file, with the daemon's defaults for absent keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// State directory (`root`).
    pub root: PathBuf,
    /// API socket path (`socket`).
    pub socket: PathBuf,
    /// Cgroup under the daemon's own one for containers (`cgroup_parent`).
    pub cgroup_parent: String,
    /// error, warn, info or debug (`log_level`).
    pub log_level: String,
    /// Seconds containers get to stop at shutdown before they are killed (`stop_timeout`).
    pub stop_timeout: u32,
    /// Board host name when the kernel command line gives none (`[init] hostname`).
    pub hostname: Option<String>,
    /// Block device for the state root in PID 1 mode (`[init] data_device`).
    pub data_device: Option<String>,
    /// Image archives loaded at first boot in PID 1 mode (`[init] preload_dir`).
    pub preload_dir: PathBuf,
    /// Upstream servers of the embedded DNS, instead of /etc/resolv.conf's (`dns`, a string
    /// of addresses separated by spaces or commas).
    pub dns: Vec<std::net::IpAddr>,
    /// `ADDR:PORT` of the admin page (`admin_addr`); off when absent.
    pub admin_addr: Option<String>,
    /// The admin page's token (`admin_token`) instead of the generated one.
    pub admin_token: Option<String>,
    /// Registries reachable over plain HTTP, comma-separated host[:port] or CIDR
    /// (`insecure_registries`).
    pub insecure_registries: Vec<String>,
    /// Per-registry CA certificates, `<dir>/<host:port>/*.crt` (`registry_certs_dir`).
    pub registry_certs_dir: Option<PathBuf>,
}

/// Where `shoal daemon` and `shoal init` look when no `--config` is given.
pub const DEFAULT_PATH: &str = "/etc/shoal/config.toml";

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            root: PathBuf::from("/var/lib/shoal"),
            socket: PathBuf::from("/run/shoal/shoal.sock"),
            cgroup_parent: "shoal".to_string(),
            log_level: "info".to_string(),
            stop_timeout: 10,
            hostname: None,
            data_device: None,
            preload_dir: PathBuf::from("/usr/share/shoal/images"),
            dns: Vec::new(),
            admin_addr: None,
            admin_token: None,
            insecure_registries: Vec::new(),
            registry_certs_dir: None,
        }
    }
}

impl FileConfig {
    /// The `shoal daemon` flags that carry this configuration.
    pub fn daemon_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--root".into(),
            self.root.display().to_string(),
            "--socket".into(),
            self.socket.display().to_string(),
            "--cgroup-parent".into(),
            self.cgroup_parent.clone(),
            "--log-level".into(),
            self.log_level.clone(),
        ];
        for ip in &self.dns {
            args.push("--dns".into());
            args.push(ip.to_string());
        }
        args
    }
}

/// A parsed TOML value of the supported subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

/// Reads and parses `path`.
pub fn load(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Like [`load`], but a missing file means "all defaults".
pub fn load_or_default(path: &Path) -> Result<FileConfig, String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
        _ => load(path),
    }
}

/// Parses the text of a configuration file.
pub fn parse(text: &str) -> Result<FileConfig, String> {
    let mut config = FileConfig::default();
    for (key, value, line) in parse_pairs(text)? {
        let at = |what: &str| format!("line {line}: {key} must be {what}");
        match (key.as_str(), value) {
            ("root", Value::Str(s)) => config.root = absolute(&s).map_err(|e| format!("line {line}: {e}"))?,
            ("socket", Value::Str(s)) => {
                config.socket = absolute(&s).map_err(|e| format!("line {line}: {e}"))?
            }
            ("cgroup_parent", Value::Str(s)) => config.cgroup_parent = s,
            ("insecure_registries", Value::Str(s)) => {
                config.insecure_registries = s
                    .split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(String::from)
                    .collect()
            }
            ("registry_certs_dir", Value::Str(s)) => {
                config.registry_certs_dir = Some(absolute(&s).map_err(|e| format!("line {line}: {e}"))?)
            }
            ("log_level", Value::Str(s)) => {
                if !matches!(s.as_str(), "error" | "warn" | "info" | "debug") {
                    return Err(format!(
                        "line {line}: log_level {s:?} is not error, warn, info or debug"
                    ));
                }
                config.log_level = s
            }
            ("stop_timeout", Value::Int(n)) => {
                config.stop_timeout = u32::try_from(n).map_err(|_| at("a number of seconds >= 0"))?
            }
            ("dns", Value::Str(s)) => {
                config.dns = s
                    .split([' ', ','])
                    .filter(|a| !a.is_empty())
                    .map(|a| {
                        a.parse()
                            .map_err(|_| format!("line {line}: dns: {a:?} is not an IP address"))
                    })
                    .collect::<Result<_, _>>()?
            }
            ("admin_addr", Value::Str(s)) => {
                crate::admin::parse_addr(&s).map_err(|e| format!("line {line}: {e}"))?;
                config.admin_addr = Some(s)
            }
            ("admin_token", Value::Str(s)) => {
                if s.trim().len() < 16 {
                    return Err(format!("line {line}: admin_token must be at least 16 characters"));
                }
                config.admin_token = Some(s)
            }
            ("init.hostname", Value::Str(s)) => config.hostname = Some(s),
            ("init.data_device", Value::Str(s)) => config.data_device = Some(s),
            ("init.preload_dir", Value::Str(s)) => {
                config.preload_dir = absolute(&s).map_err(|e| format!("line {line}: {e}"))?
            }
            (
                "root"
                | "socket"
                | "cgroup_parent"
                | "log_level"
                | "dns"
                | "init.hostname"
                | "init.data_device"
                | "init.preload_dir"
                | "admin_addr"
                | "admin_token"
                | "insecure_registries"
                | "registry_certs_dir",
                _,
            ) => return Err(at("a string")),
            ("stop_timeout", _) => return Err(at("an integer")),
            (other, _) => return Err(format!("line {line}: unknown key {other:?}")),
        }
    }
    Ok(config)
}

fn absolute(s: &str) -> Result<PathBuf, String> {
    if s.starts_with('/') {
        Ok(PathBuf::from(s))
    } else {
        Err(format!("path {s:?} is not absolute"))
    }
}

/// Parses the subset into (dotted key, value, line number) triples, in file order.
pub fn parse_pairs(text: &str) -> Result<Vec<(String, Value, usize)>, String> {
    let mut out: Vec<(String, Value, usize)> = Vec::new();
    let mut section = String::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let (name, tail) = rest
                .split_once(']')
                .ok_or_else(|| format!("line {line_no}: section header without ]"))?;
            let name = name.trim();
            if !is_bare_key(name) || !is_comment_or_empty(tail) {
                return Err(format!("line {line_no}: bad section header {line:?}"));
            }
            section = name.to_string();
            continue;
        }
        let (key, rest) = line
            .split_once('=')
            .ok_or_else(|| format!("line {line_no}: expected key = value"))?;
        let key = key.trim();
        if !is_bare_key(key) {
            return Err(format!("line {line_no}: bad key {key:?}"));
        }
        let (value, tail) = parse_value(rest.trim()).map_err(|e| format!("line {line_no}: {e}"))?;
        if !is_comment_or_empty(tail) {
            return Err(format!(
                "line {line_no}: unexpected text after the value: {:?}",
                tail.trim()
            ));
        }
        let full = if section.is_empty() {
            key.to_string()
        } else {
            format!("{section}.{key}")
        };
        if out.iter().any(|(k, _, _)| *k == full) {
            return Err(format!("line {line_no}: {full} is set twice"));
        }
        out.push((full, value, line_no));
    }
    Ok(out)
}

fn is_bare_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_comment_or_empty(tail: &str) -> bool {
    let t = tail.trim();
    t.is_empty() || t.starts_with('#')
}

/// Parses one value at the start of `s`; returns it and the rest of the line.
fn parse_value(s: &str) -> Result<(Value, &str), String> {
    if let Some(body) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((Value::Str(out), &body[i + 1..])),
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, other)) => return Err(format!("unsupported escape \\{other}")),
                    None => break,
                },
                c => out.push(c),
            }
        }
        return Err("string without closing \"".to_string());
    }
    if let Some(body) = s.strip_prefix('\'') {
        let end = body.find('\'').ok_or("string without closing '")?;
        return Ok((Value::Str(body[..end].to_string()), &body[end + 1..]));
    }
    let end = s.find(|c: char| c.is_whitespace() || c == '#').unwrap_or(s.len());
    let (word, tail) = s.split_at(end);
    match word {
        "true" => Ok((Value::Bool(true), tail)),
        "false" => Ok((Value::Bool(false), tail)),
        "" => Err("missing value".to_string()),
        w => {
            let digits: String = w.chars().filter(|c| *c != '_').collect();
            digits
                .parse::<i64>()
                .map(|n| (Value::Int(n), tail))
                .map_err(|_| format!("unsupported value {w:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("# nothing\n\n").unwrap(), FileConfig::default());
    }

    #[test]
    fn full_file() {
        let c = parse(
            "root = \"/data/shoal\"   # state\nsocket='/run/s.sock'\ncgroup_parent = \"boards\"\n\
             log_level = \"debug\"\nstop_timeout = 1_5\n\n[init]\nhostname = \"b\\\"1\"\n\
             data_device = \"/dev/vdb\"\n",
        )
        .unwrap();
        assert_eq!(c.root, PathBuf::from("/data/shoal"));
        assert_eq!(c.socket, PathBuf::from("/run/s.sock"));
        assert_eq!(c.cgroup_parent, "boards");
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.stop_timeout, 15);
        assert_eq!(c.hostname.as_deref(), Some("b\"1"));
        assert_eq!(c.data_device.as_deref(), Some("/dev/vdb"));
        assert_eq!(
            c.daemon_args(),
            [
                "--root",
                "/data/shoal",
                "--socket",
                "/run/s.sock",
                "--cgroup-parent",
                "boards",
                "--log-level",
                "debug"
            ]
        );
    }

    #[test]
    fn dns_upstreams_are_addresses() {
        let c = parse("dns = \"192.168.1.1, 10.0.0.53 fd00::1\"\n").unwrap();
        assert_eq!(c.dns.len(), 3);
        assert!(c.daemon_args().ends_with(&["--dns".into(), "fd00::1".into()]));
        let e = parse("\ndns = \"192.168.1.1 resolver\"\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("\"resolver\""), "{e}");
    }

    #[test]
    fn errors_name_the_line() {
        for (text, needle) in [
            ("root = relative", "line 1"),
            ("\nroot = \"relative\"", "line 2: path"),
            ("log_level = \"loud\"", "loud"),
            ("stop_timeout = -1", "seconds"),
            ("stop_timeout = \"5\"", "integer"),
            ("rooot = \"/x\"", "unknown key \"rooot\""),
            ("root = \"/x\" trailing", "unexpected text"),
            ("root = \"/x", "closing"),
            ("[init\nx=1", "without ]"),
            ("root = \"/a\"\nroot = \"/b\"", "line 2: root is set twice"),
            ("= 3", "bad key"),
            ("just words", "expected key = value"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn admin_settings() {
        let c = parse("admin_addr = \"0.0.0.0:2380\"\nadmin_token = \"0123456789abcdef\"").unwrap();
        assert_eq!(c.admin_addr.as_deref(), Some("0.0.0.0:2380"));
        assert_eq!(c.admin_token.as_deref(), Some("0123456789abcdef"));
        let err = parse("admin_addr = \"board\"").unwrap_err();
        assert!(err.contains("line 1") && err.contains("ADDR:PORT"), "{err}");
        let err = parse("admin_token = \"short\"").unwrap_err();
        assert!(err.contains("at least 16"), "{err}");
    }

    #[test]
    fn registry_settings() {
        let c = parse(
            "insecure_registries = \"reg.lan:5000, 10.0.0.0/8,\"\nregistry_certs_dir = \"/etc/certs.d\"\n",
        )
        .unwrap();
        assert_eq!(c.insecure_registries, ["reg.lan:5000", "10.0.0.0/8"]);
        assert_eq!(c.registry_certs_dir, Some(PathBuf::from("/etc/certs.d")));
        assert!(parse("insecure_registries = 5").unwrap_err().contains("line 1"));
    }

    #[test]
    fn hash_inside_strings_is_not_a_comment() {
        let c = parse("cgroup_parent = \"a#b\" # c").unwrap();
        assert_eq!(c.cgroup_parent, "a#b");
    }

    #[test]
    fn shipped_default_file_parses_to_the_defaults() {
        let text = include_str!("../../rootfs/etc/shoal/config.toml");
        assert_eq!(parse(text).unwrap(), FileConfig::default());
    }
}
