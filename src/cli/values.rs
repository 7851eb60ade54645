//! Pure parsers for docker's flag values: memory sizes (`64m`), CPU counts (`1.5`), restart
//! policies, `KEY=VALUE` lists, env files, log options and `--since` times.
//!
//! Guarantees: each parser returns docker's error text for bad input (the caller adds the
//! flag name), never panics, and does no I/O except where an argument hands it a lookup.

use std::collections::BTreeMap;

/// go-units `RAMInBytes`: `512`, `512b`, `64k`, `64m`, `1.5g`, `1gb`, `2GiB` (binary units).
pub fn parse_ram(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1 {
        return Err(format!("invalid size: '{s}'"));
    }
    let value: f64 = num.parse().map_err(|_| format!("invalid size: '{s}'"))?;
    let suffix = suffix.trim_start().to_ascii_lowercase();
    let (unit, rest) = match suffix.chars().next() {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => (Some(c), &suffix[1..]),
        _ => (None, suffix.as_str()),
    };
    let rest = rest.strip_prefix('i').filter(|_| unit.is_some()).unwrap_or(rest);
    if !(rest.is_empty() || rest == "b") {
        let bad = suffix.chars().next().unwrap_or('?');
        return Err(format!("invalid suffix: '{bad}'"));
    }
    let mult: f64 = match unit {
        None => 1.0,
        Some('k') => 1024.0,
        Some('m') => 1024.0 * 1024.0,
        Some('g') => 1024.0 * 1024.0 * 1024.0,
        Some('t') => 1024f64.powi(4),
        _ => 1024f64.powi(5),
    };
    let bytes = value * mult;
    if bytes > i64::MAX as f64 {
        return Err(format!("invalid size: '{s}'"));
    }
    Ok(bytes as i64)
}

/// `--memory-swap`: a size, or `-1` for unlimited.
pub fn parse_swap(s: &str) -> Result<i64, String> {
    if s.trim() == "-1" {
        return Ok(-1);
    }
    parse_ram(s)
}

/// `--cpus 1.5` → NanoCpus 1_500_000_000 (docker: a rational with at most 9 decimals).
pub fn parse_cpus(s: &str) -> Result<i64, String> {
    let bad = || format!("failed to parse {s} as a rational number");
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let frac_digits = frac.trim_end_matches('0');
    if frac_digits.len() > 9 {
        return Err("value is too precise".into());
    }
    let whole: i64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let mut nanos: i64 = 0;
    for (i, d) in frac_digits.bytes().enumerate() {
        nanos += (d - b'0') as i64 * 10i64.pow(8 - i as u32);
    }
    whole
        .checked_mul(1_000_000_000)
        .and_then(|w| w.checked_add(nanos))
        .ok_or_else(bad)
}

/// A restart policy as the API wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: i64,
}

/// `no | always | on-failure[:N] | unless-stopped`.
pub fn parse_restart(s: &str) -> Result<RestartPolicy, String> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (s, None),
    };
    let maximum_retry_count = match count {
        None => 0,
        Some(c) => c.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            "invalid restart policy format: maximum retry count must be an integer".to_string()
        })?,
    };
    match name {
        "" | "no" | "always" | "unless-stopped" if count.is_some() => Err(format!(
            "maximum retry count cannot be used with restart policy '{name}'"
        )),
        "" => Ok(RestartPolicy {
            name: "no".into(),
            maximum_retry_count: 0,
        }),
        "no" | "always" | "unless-stopped" | "on-failure" => Ok(RestartPolicy {
            name: name.into(),
            maximum_retry_count,
        }),
        other => Err(format!("invalid restart policy '{other}'")),
    }
}

/// `-e KEY=VALUE` or `-e KEY` (taken from the local environment when set, else dropped).
pub fn expand_env(item: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    let (name, value) = match item.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (item, None),
    };
    if name.is_empty() {
        return Err(format!("invalid environment variable: {item}"));
    }
    match value {
        Some(_) => Ok(Some(item.to_string())),
        None => Ok(lookup(name).map(|v| format!("{name}={v}"))),
    }
}

/// An env file: `KEY=VALUE` lines, `#` comments and blank lines skipped, bare `KEY` taken from
/// the local environment. `source` names the file in errors.
pub fn parse_env_file(
    text: &str,
    source: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split_once('=').map(|(k, _)| k).unwrap_or(line);
        if name.is_empty() {
            return Err(format!("{source}:{}: no variable name on line '{raw}'", n + 1));
        }
        if name.contains(char::is_whitespace) {
            return Err(format!(
                "{source}:{}: variable '{name}' contains whitespaces",
                n + 1
            ));
        }
        if let Some(item) = expand_env(line, lookup)? {
            out.push(item);
        }
    }
    Ok(out)
}

/// `--label k=v` / `--label k` → map (a bare key gets an empty value).
pub fn parse_labels(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

/// `--log-opt k=v` → map; a missing `=` is an error, as docker says.
pub fn parse_log_opts(items: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| format!("invalid key value pair format in log options: {item}"))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// `--filter key=value` → (key, value).
pub fn parse_filter(item: &str) -> Result<(String, String), String> {
    match item.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.trim().to_ascii_lowercase(), v.to_string())),
        _ => Err(format!("bad format of filter (expected name=value): {item}")),
    }
}

/// Docker's `filters` query value in the documented `map[string][]string` form:
/// `{"status":["created","exited"]}` (values in the order given, duplicates dropped).
pub fn filters_json(filters: &[(String, String)]) -> String {
    let mut map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in filters {
        let values = map.entry(k).or_default();
        if !values.contains(&v.as_str()) {
            values.push(v);
        }
    }
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
}

/// One `-p` mapping expanded: container port key (`80/tcp`) and its host binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub container: String,
    pub host_ip: String,
    pub host_port: String,
}

fn port_range(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("invalid port number: {s}");
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u32 = a.parse().map_err(|_| bad())?;
    let b: u32 = b.parse().map_err(|_| bad())?;
    if a == 0 || a > 65535 || b < a || b > 65535 {
        return Err(bad());
    }
    Ok((a, b))
}

/// docker's `-p [ip:][hostPort:]containerPort[/proto]` with ranges (`8080-8081:80-81`).
/// A container port without a host port is published on a random host port (empty text).
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>, String> {
    let (addr, proto) = match spec.rsplit_once('/') {
        Some((a, p)) => (a, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    // An IPv6 host address is written in brackets: [::1]:8080:80.
    let (ip, rest) = if let Some(r) = addr.strip_prefix('[') {
        let (ip, after) = r
            .split_once(']')
            .ok_or_else(|| format!("invalid IP address in {spec}"))?;
        (
            ip.to_string(),
            after.strip_prefix(':').unwrap_or(after).to_string(),
        )
    } else {
        let parts: Vec<&str> = addr.split(':').collect();
        match parts.len() {
            1 | 2 => (String::new(), addr.to_string()),
            3 => (parts[0].to_string(), format!("{}:{}", parts[1], parts[2])),
            _ => return Err(format!("invalid port format: {spec}")),
        }
    };
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", rest.as_str()),
    };
    let (c_lo, c_hi) = port_range(container)?;
    let host_range = if host.is_empty() {
        None
    } else {
        Some(port_range(host)?)
    };
    if let Some((h_lo, h_hi)) = host_range {
        if h_hi - h_lo != c_hi - c_lo && h_lo != h_hi {
            return Err(format!(
                "invalid ranges specified for container and host Ports: {container} and {host}"
            ));
        }
    }
    Ok((c_lo..=c_hi)
        .enumerate()
        .map(|(i, port)| PortMapping {
            container: format!("{port}/{proto}"),
            host_ip: ip.clone(),
            host_port: match host_range {
                None => String::new(),
                Some((lo, hi)) if lo == hi => lo.to_string(),
                Some((lo, _)) => (lo + i as u32).to_string(),
            },
        })
        .collect())
}

/// `-v` short syntax check: `name:/dst[:opts]` or `/src:/dst[:opts]` (an anonymous `/dst`).
pub fn check_volume(spec: &str) -> Result<(), String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let dst = match parts.len() {
        1 => parts[0],
        2 | 3 => parts[1],
        _ => return Err(format!("invalid volume specification: '{spec}'")),
    };
    if !dst.starts_with('/') {
        return Err(format!("invalid volume specification: '{spec}': invalid mount config for type \"bind\": invalid mount path: '{dst}' mount path must be absolute"));
    }
    Ok(())
}

/// A Go duration `1h30m`, `42m`, `10s`, `1.5h`, `300ms` in seconds.
pub fn parse_go_duration(s: &str) -> Option<f64> {
    crate::timefmt::parse_duration(s).map(|d| d.as_secs_f64())
}

/// docker's `--since/--until` value → the API's `seconds[.nanos]` text: an RFC 3339 time, a
/// Unix timestamp, or a duration before `now`.
pub fn timestamp_param(value: &str, now: f64) -> Result<String, String> {
    if value.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !value.is_empty() {
        return Ok(value.to_string());
    }
    if let Some(d) = parse_go_duration(value) {
        let t = now - d;
        return Ok(format!(
            "{}.{:09}",
            t.floor() as i64,
            ((t - t.floor()) * 1e9) as u64
        ));
    }
    if let Some(t) = super::format::parse_rfc3339(value) {
        return Ok(format!("{}.{:09}", t.secs, t.nanos));
    }
    // A date without a zone, as docker also accepts.
    for suffix in ["Z", "T00:00:00Z", ":00Z"] {
        if let Some(t) = super::format::parse_rfc3339(&format!("{value}{suffix}")) {
            return Ok(format!("{}.{:09}", t.secs, t.nanos));
        }
    }
    Err(format!("failed to parse value as time or duration: \"{value}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_like_docker() {
        assert_eq!(parse_ram("64m"), Ok(64 << 20));
        assert_eq!(parse_ram("512k"), Ok(512 << 10));
        assert_eq!(parse_ram("1g"), Ok(1 << 30));
        assert_eq!(parse_ram("1GB"), Ok(1 << 30));
        assert_eq!(parse_ram("2GiB"), Ok(2 << 30));
        assert_eq!(parse_ram("1.5g"), Ok(3 << 29));
        assert_eq!(parse_ram("4096"), Ok(4096));
        assert_eq!(parse_ram("4096b"), Ok(4096));
        assert_eq!(parse_ram("12q"), Err("invalid suffix: 'q'".into()));
        assert_eq!(parse_ram("m"), Err("invalid size: 'm'".into()));
        assert!(parse_ram("").is_err());
        assert!(parse_ram("1.2.3m").is_err());
        assert!(parse_ram("99999999999999999999t").is_err());
        assert_eq!(parse_swap("-1"), Ok(-1));
    }

    #[test]
    fn cpus_to_nanocpus() {
        assert_eq!(parse_cpus("1.5"), Ok(1_500_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_cpus("0.25"), Ok(250_000_000));
        assert_eq!(parse_cpus(".5"), Ok(500_000_000));
        assert_eq!(parse_cpus("0.000000001"), Ok(1));
        assert_eq!(
            parse_cpus("abc"),
            Err("failed to parse abc as a rational number".into())
        );
        assert!(parse_cpus("0.0000000001").is_err());
        assert!(parse_cpus("-1").is_err());
        assert!(parse_cpus("99999999999999").is_err());
    }

    #[test]
    fn restart_policies() {
        let p = |n: &str, c| RestartPolicy {
            name: n.into(),
            maximum_retry_count: c,
        };
        assert_eq!(parse_restart("no"), Ok(p("no", 0)));
        assert_eq!(parse_restart("always"), Ok(p("always", 0)));
        assert_eq!(parse_restart("unless-stopped"), Ok(p("unless-stopped", 0)));
        assert_eq!(parse_restart("on-failure"), Ok(p("on-failure", 0)));
        assert_eq!(parse_restart("on-failure:3"), Ok(p("on-failure", 3)));
        assert_eq!(
            parse_restart("bogus"),
            Err("invalid restart policy 'bogus'".into())
        );
        assert!(parse_restart("on-failure:x").is_err());
        assert!(parse_restart("always:2").is_err());
    }

    #[test]
    fn env_and_env_files() {
        let lookup = |k: &str| {
            if k == "HOME" {
                Some("/root".to_string())
            } else {
                None
            }
        };
        assert_eq!(expand_env("A=1", &lookup), Ok(Some("A=1".into())));
        assert_eq!(expand_env("HOME", &lookup), Ok(Some("HOME=/root".into())));
        assert_eq!(expand_env("NOPE", &lookup), Ok(None));
        assert!(expand_env("=x", &lookup).is_err());
        let file = "# comment\n\nA=1\n  B=two words\nHOME\nNOPE\nC=\n";
        assert_eq!(
            parse_env_file(file, "f.env", &lookup).unwrap(),
            ["A=1", "B=two words", "HOME=/root", "C="]
        );
        let e = parse_env_file("BAD NAME=1\n", "f.env", &lookup).unwrap_err();
        assert_eq!(e, "f.env:1: variable 'BAD NAME' contains whitespaces");
    }

    #[test]
    fn labels_logopts_filters() {
        let l = parse_labels(&["a=1".into(), "b".into(), "c=x=y".into()]);
        assert_eq!(l["a"], "1");
        assert_eq!(l["b"], "");
        assert_eq!(l["c"], "x=y");
        let o = parse_log_opts(&["max-size=10m".into(), "max-file=3".into()]).unwrap();
        assert_eq!(o["max-size"], "10m");
        assert!(parse_log_opts(&["max-size".into()]).is_err());
        assert_eq!(
            parse_filter("status=exited"),
            Ok(("status".into(), "exited".into()))
        );
        assert!(parse_filter("oops").is_err());
        let f = vec![
            ("status".to_string(), "exited".to_string()),
            ("status".into(), "created".into()),
            ("name".into(), "web".into()),
        ];
        assert_eq!(
            filters_json(&f),
            r#"{"name":["web"],"status":["exited","created"]}"#
        );
    }

    #[test]
    fn publish_specs() {
        let m = |c: &str, ip: &str, h: &str| PortMapping {
            container: c.into(),
            host_ip: ip.into(),
            host_port: h.into(),
        };
        assert_eq!(parse_publish("8080:80"), Ok(vec![m("80/tcp", "", "8080")]));
        assert_eq!(parse_publish("80"), Ok(vec![m("80/tcp", "", "")]));
        assert_eq!(
            parse_publish("127.0.0.1:53:53/udp"),
            Ok(vec![m("53/udp", "127.0.0.1", "53")])
        );
        assert_eq!(
            parse_publish("127.0.0.1::80"),
            Ok(vec![m("80/tcp", "127.0.0.1", "")])
        );
        assert_eq!(
            parse_publish("[::1]:8080:80"),
            Ok(vec![m("80/tcp", "::1", "8080")])
        );
        assert_eq!(
            parse_publish("8080-8081:80-81"),
            Ok(vec![m("80/tcp", "", "8080"), m("81/tcp", "", "8081")])
        );
        assert!(parse_publish("x:80").is_err());
        assert!(parse_publish("80/icmp").is_err());
        assert!(parse_publish("70000").is_err());
        assert!(parse_publish("8080-8082:80-81").is_err());
        assert!(check_volume("data:/var/lib/data").is_ok());
        assert!(check_volume("/srv:/srv:ro").is_ok());
        assert!(check_volume("/anon").is_ok());
        assert!(check_volume("data:rel").is_err());
    }

    #[test]
    fn since_values() {
        assert_eq!(parse_go_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_go_duration("42m"), Some(2520.0));
        assert_eq!(parse_go_duration("1.5s"), Some(1.5));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("5x"), None);
        assert_eq!(timestamp_param("1700000000", 0.0).unwrap(), "1700000000");
        assert_eq!(timestamp_param("10m", 1000.0).unwrap(), "400.000000000");
        assert_eq!(
            timestamp_param("2013-01-02T13:23:37Z", 0.0).unwrap(),
            "1357133017.000000000"
        );
        assert_eq!(
            timestamp_param("2013-01-02", 0.0).unwrap(),
            "1357084800.000000000"
        );
        assert!(timestamp_param("yesterday", 0.0).is_err());
    }
}
