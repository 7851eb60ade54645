//! The image configuration (the OCI "config" blob, whose sha256 is the image ID) as typed
//! values with Docker's JSON field names, and `docker import --change` instructions applied to
//! it. Pure: no I/O.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The whole config blob. Unknown fields are kept so re-serialising loses nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ImageConfig>,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `rootfs`: the layers' diff ids, bottom-most first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// One `history` record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// The runtime defaults a container inherits (`config` in the blob, `Config` in inspect).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Docker's name for the architecture this binary was built for.
pub fn host_architecture() -> (&'static str, Option<&'static str>) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        other => (other, None),
    }
}

/// Apply `docker import --change` / `docker commit --change` instructions in order.
/// Errors name the instruction that was wrong.
pub fn apply_changes(config: &mut ImageConfig, changes: &[String]) -> Result<(), String> {
    for change in changes {
        for line in change.lines().map(str::trim).filter(|l| !l.is_empty()) {
            apply_change(config, line).map_err(|e| format!("invalid change {line:?}: {e}"))?;
        }
    }
    Ok(())
}

fn apply_change(config: &mut ImageConfig, line: &str) -> Result<(), String> {
    let (instruction, args) = match line.split_once(char::is_whitespace) {
        Some((i, a)) => (i, a.trim()),
        None => (line, ""),
    };
    match instruction.to_ascii_uppercase().as_str() {
        "CMD" => config.cmd = Some(command_form(args)),
        "ENTRYPOINT" => config.entrypoint = Some(command_form(args)),
        "ENV" => {
            let env = config.env.get_or_insert_with(Vec::new);
            for (k, v) in key_values(args, "ENV")? {
                let prefix = format!("{k}=");
                env.retain(|e| !e.starts_with(&prefix));
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in key_values(args, "LABEL")? {
                labels.insert(k, v);
            }
        }
        "WORKDIR" => {
            let dir = unquote_single(args)?;
            if dir.is_empty() {
                return Err("WORKDIR needs a path".into());
            }
            let joined = if dir.starts_with('/') {
                dir
            } else {
                let base = config.working_dir.clone().unwrap_or_else(|| "/".into());
                format!("{}/{dir}", base.trim_end_matches('/'))
            };
            config.working_dir = Some(joined);
        }
        "USER" => {
            let user = unquote_single(args)?;
            if user.is_empty() {
                return Err("USER needs a name or uid".into());
            }
            config.user = Some(user);
        }
        "EXPOSE" => {
            let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for word in words(args)? {
                ports.insert(port_key(&word)?, Value::Object(Default::default()));
            }
        }
        "VOLUME" => {
            let vols = config.volumes.get_or_insert_with(BTreeMap::new);
            let list = match json_array(args) {
                Some(list) => list,
                None => words(args)?,
            };
            for v in list {
                vols.insert(v, Value::Object(Default::default()));
            }
        }
        "STOPSIGNAL" => config.stop_signal = Some(unquote_single(args)?),
        "ONBUILD" => config
            .on_build
            .get_or_insert_with(Vec::new)
            .push(args.to_string()),
        other => return Err(format!("{other} is not a valid change command")),
    }
    Ok(())
}

/// Exec form (`["sh","-c","x"]`) or shell form (`echo hi` → `/bin/sh -c "echo hi"`).
fn command_form(args: &str) -> Vec<String> {
    json_array(args).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), args.to_string()])
}

fn json_array(args: &str) -> Option<Vec<String>> {
    if args.starts_with('[') {
        serde_json::from_str(args).ok()
    } else {
        None
    }
}

/// `80`, `80/tcp`, `53/udp` → Docker's `ExposedPorts` key.
fn port_key(word: &str) -> Result<String, String> {
    let (port, proto) = word.split_once('/').unwrap_or((word, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("port {word:?} has an unknown protocol"));
    }
    // A range like 8000-8010 is allowed; each end must be a port number.
    let ok = port.split('-').all(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    if !ok || port.split('-').count() > 2 {
        return Err(format!("port {word:?} is not a number between 1 and 65535"));
    }
    Ok(format!("{port}/{proto}"))
}

/// `k=v k2="a b"` pairs, or the legacy `k value with spaces` form.
fn key_values(args: &str, what: &str) -> Result<Vec<(String, String)>, String> {
    let first = args.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let (k, v) = args
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("{what} needs key=value"))?;
        return Ok(vec![(k.to_string(), unquote_single(v.trim())?)]);
    }
    words(args)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("{what} item {w:?} is not key=value")),
        })
        .collect()
}

fn unquote_single(s: &str) -> Result<String, String> {
    Ok(words(s)?.join(" "))
}

/// Shell-like word splitting: whitespace separates, quotes group, backslash escapes.
fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => match chars.next() {
                Some(n) => cur.push(n),
                None => return Err("trailing backslash".into()),
            },
            (Some(_), c) => cur.push(c),
            (None, '"') | (None, '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(changes: &[&str]) -> ImageConfig {
        let mut c = ImageConfig::default();
        let changes: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        apply_changes(&mut c, &changes).unwrap();
        c
    }

    #[test]
    fn docker_import_changes() {
        let c = changed(&[
            r#"CMD ["sh"]"#,
            "ENTRYPOINT /init --flag",
            r#"ENV A=1 B="two words""#,
            "ENV A 3",
            "WORKDIR /srv",
            "WORKDIR app",
            "USER 1000:1000",
            "EXPOSE 80 53/udp",
            r#"LABEL org.x.name="shoal test" v=1"#,
            r#"VOLUME ["/data"]"#,
            "STOPSIGNAL SIGINT",
        ]);
        assert_eq!(c.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(
            c.entrypoint,
            Some(vec!["/bin/sh".into(), "-c".into(), "/init --flag".into()])
        );
        assert_eq!(c.env, Some(vec!["B=two words".to_string(), "A=3".to_string()]));
        assert_eq!(c.working_dir.as_deref(), Some("/srv/app"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        let ports: Vec<_> = c.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(ports, vec!["53/udp", "80/tcp"]);
        assert_eq!(c.labels.unwrap()["org.x.name"], "shoal test");
        assert!(c.volumes.unwrap().contains_key("/data"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
    }

    #[test]
    fn bad_changes_are_named() {
        let mut c = ImageConfig::default();
        for bad in [
            "FROM x",
            "EXPOSE 99999",
            "EXPOSE 80/xyz",
            "ENV",
            "LABEL =x",
            "ENV A=\"open",
        ] {
            let e = apply_changes(&mut c, &[bad.to_string()]).unwrap_err();
            assert!(e.starts_with(&format!("invalid change {:?}", bad)), "{e}");
        }
    }

    #[test]
    fn config_round_trips_with_docker_names() {
        let json = r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],
            "Hostname":"x"},"rootfs":{"type":"layers","diff_ids":["sha256:00"]},"container":"abc"}"#;
        let c: ConfigFile = serde_json::from_str(json).unwrap();
        let cfg = c.config.clone().unwrap();
        assert_eq!(cfg.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(cfg.other["Hostname"], "x");
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["config"]["Env"][0], "PATH=/bin");
        assert_eq!(back["container"], "abc");
        let null_config: ConfigFile =
            serde_json::from_str(r#"{"config":null,"rootfs":{"type":"layers","diff_ids":[]}}"#).unwrap();
        assert!(null_config.config.is_none());
    }
}
