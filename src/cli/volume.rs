//! `volume create|ls|inspect|rm|prune`, shaped like docker's commands and output, over the
//! daemon's `/volumes` routes; and the `--mount` flag's CSV syntax of `run`/`create`.
//!
//! Flags parse into [`VolCommand`] (pure, tested); [`run`] carries one out.

use serde_json::{json, Value};

use super::network::{at_least_one, key_values, parse_flags};
use super::{format, tables, values};
use crate::api::client::{query, query_escape, Client, ClientError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolCommand {
    Create {
        body: Value,
    },
    Ls {
        quiet: bool,
        filters: Vec<(String, String)>,
        format: Option<String>,
    },
    Inspect {
        volumes: Vec<String>,
        format: Option<String>,
    },
    Rm {
        volumes: Vec<String>,
        force: bool,
    },
    Prune {
        force: bool,
        all: bool,
        filters: Vec<(String, String)>,
    },
    Help(String),
}

const VOLUME_HELP: &str = "Usage:  shoal volume COMMAND

Manage volumes

Commands:
  create      Create a volume
  inspect     Display detailed information on one or more volumes
  ls          List volumes
  prune       Remove unused local volumes
  rm          Remove one or more volumes
";

const LS_DEFAULT: &str = "table {{.Driver}}\t{{.Name}}";
const LS_HEADERS: &[(&str, &str)] = &[
    ("Name", "VOLUME NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
    ("Links", "LINKS"),
    ("Size", "SIZE"),
    ("CreatedAt", "CREATED AT"),
];

fn filter_pairs(list: &[String]) -> Result<Vec<(String, String)>, String> {
    list.iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("bad format of filter (expected name=value): {f}"))
        })
        .collect()
}

/// Parse the words after `volume`.
pub fn parse(words: &[String]) -> Result<VolCommand, String> {
    let Some((sub, rest)) = words.split_first() else {
        return Ok(VolCommand::Help(VOLUME_HELP.into()));
    };
    let cmd = format!("volume {sub}");
    match sub.as_str() {
        "create" => {
            let f = parse_flags(
                &cmd,
                rest,
                &[("driver", 'd'), ("label", ' '), ("opt", 'o'), ("name", ' ')],
                &[],
            )?;
            if f.has("help") {
                return Ok(VolCommand::Help(
                    "Usage:  shoal volume create [OPTIONS] [VOLUME]\n".into(),
                ));
            }
            let name = match (f.get("name"), f.args.as_slice()) {
                (Some(n), []) => n,
                (None, [n]) => n.clone(),
                (None, []) => String::new(),
                (Some(_), [_]) => {
                    return Err("conflicting options: cannot specify a volume-name through both --name and as a positional arg".into())
                }
                _ => {
                    return Err(format!(
                        "\"shoal {cmd}\" requires at most 1 argument.\nSee 'shoal {cmd} --help'.\n\nUsage:  shoal volume create [OPTIONS] [VOLUME]"
                    ))
                }
            };
            let body = json!({
                "Name": name,
                "Driver": f.get("driver").unwrap_or_else(|| "local".into()),
                "DriverOpts": key_values(&f.all("opt"), "option")?,
                "Labels": key_values(&f.all("label"), "label")?,
            });
            Ok(VolCommand::Create { body })
        }
        "ls" | "list" => {
            let f = parse_flags(
                &cmd,
                rest,
                &[("filter", 'f'), ("format", ' ')],
                &[("quiet", 'q'), ("cluster", ' ')],
            )?;
            if f.has("help") {
                return Ok(VolCommand::Help("Usage:  shoal volume ls [OPTIONS]\n".into()));
            }
            Ok(VolCommand::Ls {
                quiet: f.has("quiet"),
                filters: filter_pairs(&f.all("filter"))?,
                format: f.get("format"),
            })
        }
        "inspect" => {
            let f = parse_flags(&cmd, rest, &[("format", 'f')], &[])?;
            at_least_one(&f, &cmd, "volume inspect [OPTIONS] VOLUME [VOLUME...]")?;
            Ok(VolCommand::Inspect {
                format: f.get("format"),
                volumes: f.args,
            })
        }
        "rm" | "remove" => {
            let f = parse_flags(&cmd, rest, &[], &[("force", 'f')])?;
            at_least_one(&f, &cmd, "volume rm [OPTIONS] VOLUME [VOLUME...]")?;
            let force = f.has("force");
            Ok(VolCommand::Rm {
                volumes: f.args,
                force,
            })
        }
        "prune" => {
            let f = parse_flags(&cmd, rest, &[("filter", ' ')], &[("force", 'f'), ("all", 'a')])?;
            Ok(VolCommand::Prune {
                force: f.has("force"),
                all: f.has("all"),
                filters: filter_pairs(&f.all("filter"))?,
            })
        }
        "--help" | "help" => Ok(VolCommand::Help(VOLUME_HELP.into())),
        other => Err(format!(
            "shoal: unknown command: shoal volume {other}\n\nRun 'shoal volume --help' for more information"
        )),
    }
}

/// `shoal [-H HOST] volume ...`; None for every other verb.
pub fn main(argv: &[String]) -> Option<i32> {
    let (host, i) = super::leading_host(argv);
    if argv.get(i)? != "volume" {
        return None;
    }
    let command = match parse(&argv[i + 1..]) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Some(1);
        }
    };
    Some(super::with_client(host.as_deref(), |c| run(c, command)))
}

fn filters_query(filters: &[(String, String)]) -> String {
    if filters.is_empty() {
        return String::new();
    }
    let mut m = serde_json::Map::new();
    for (k, v) in filters {
        let e = m.entry(k.clone()).or_insert_with(|| json!({}));
        e[v.as_str()] = json!(true);
    }
    query(&[("filters", Value::Object(m).to_string())])
}

/// One `volume ls` row with docker's field names for `--format`.
pub fn ls_row(v: &Value) -> Value {
    let labels: Vec<String> = v["Labels"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "Name": v["Name"], "Driver": v["Driver"], "Scope": v["Scope"], "Mountpoint": v["Mountpoint"],
        "Labels": labels.join(","), "Links": "N/A", "Size": "N/A", "CreatedAt": v["CreatedAt"],
    })
}

/// Carry out one command; prints docker's output.
pub fn run(client: &Client, command: VolCommand) -> Result<i32, String> {
    let api = |e: ClientError| e.to_string();
    match command {
        VolCommand::Help(text) => print!("{text}"),
        VolCommand::Create { body } => {
            let v = client
                .post("/volumes/create", Some(&body))
                .and_then(|r| r.json())
                .map_err(api)?;
            println!("{}", v["Name"].as_str().unwrap_or(""));
        }
        VolCommand::Ls {
            quiet,
            filters,
            format,
        } => {
            let v = client
                .get_json(&format!("/volumes{}", filters_query(&filters)))
                .map_err(api)?;
            let mut list = v["Volumes"].as_array().cloned().unwrap_or_default();
            crate::sort::sort_by(&mut list, |a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
            if quiet {
                for v in &list {
                    println!("{}", v["Name"].as_str().unwrap_or(""));
                }
                return Ok(0);
            }
            let rows: Vec<Value> = list.iter().map(ls_row).collect();
            let text = tables::render(format.as_deref(), LS_DEFAULT, LS_HEADERS, &rows).map_err(|e| e.0)?;
            print!("{text}");
        }
        VolCommand::Inspect { volumes, format } => {
            let code = super::network::inspect_each(client, "volume", &volumes, format.as_deref())?;
            if code != 0 {
                return Ok(code);
            }
        }
        VolCommand::Rm { volumes, force } => {
            let q = if force { "?force=1" } else { "" };
            let mut failed = false;
            for n in &volumes {
                match client.delete(&format!("/volumes/{}{q}", query_escape(n))) {
                    Ok(_) => println!("{n}"),
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            return Ok(if failed { 1 } else { 0 });
        }
        VolCommand::Prune {
            force,
            all,
            mut filters,
        } => {
            let warning = if all {
                "WARNING! This will remove all local volumes not used by at least one container."
            } else {
                "WARNING! This will remove anonymous local volumes not used by at least one container."
            };
            if !force && !confirm(warning) {
                return Ok(0);
            }
            if all {
                filters.push(("all".into(), "true".into()));
            }
            let v = client
                .post(&format!("/volumes/prune{}", filters_query(&filters)), None)
                .and_then(|r| r.json())
                .map_err(api)?;
            super::network::print_deleted(&v, "VolumesDeleted", "Deleted Volumes:");
            if v["VolumesDeleted"].as_array().is_some_and(|a| !a.is_empty()) {
                println!();
            }
            println!(
                "Total reclaimed space: {}",
                format::human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0), 3)
            );
        }
    }
    Ok(0)
}

fn confirm(warning: &str) -> bool {
    use std::io::Write;
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    matches!(line.trim(), "y" | "Y" | "yes")
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "" | "1" | "true" | "t" => Ok(true),
        "0" | "false" | "f" => Ok(false),
        _ => Err(format!("invalid value for {key}: {v}")),
    }
}

/// `--mount type=bind,source=/a,target=/b,readonly` into docker's `HostConfig.Mounts` entry,
/// with docker's keys and aliases.
pub fn parse_mount_flag(text: &str) -> Result<Value, String> {
    let mut kind = "volume".to_string();
    let mut m = serde_json::Map::new();
    let mut bind = serde_json::Map::new();
    let mut volume = serde_json::Map::new();
    let mut vlabels = serde_json::Map::new();
    let mut vopts = serde_json::Map::new();
    let mut tmpfs = serde_json::Map::new();
    for field in text.split(',').filter(|f| !f.is_empty()) {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = |v: Option<&'_ str>| -> Result<String, String> {
            v.map(String::from)
                .ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"))
        };
        match key.as_str() {
            "type" => kind = need(val)?,
            "source" | "src" => {
                m.insert("Source".into(), need(val)?.into());
            }
            "target" | "dst" | "destination" => {
                m.insert("Target".into(), need(val)?.into());
            }
            "readonly" | "ro" => {
                m.insert("ReadOnly".into(), parse_bool(&key, val.unwrap_or(""))?.into());
            }
            "consistency" => {
                m.insert("Consistency".into(), need(val)?.into());
            }
            "bind-propagation" => {
                bind.insert("Propagation".into(), need(val)?.into());
            }
            "bind-nonrecursive" => {
                bind.insert("NonRecursive".into(), parse_bool(&key, val.unwrap_or(""))?.into());
            }
            "bind-create-mountpoint" => {
                bind.insert(
                    "CreateMountpoint".into(),
                    parse_bool(&key, val.unwrap_or(""))?.into(),
                );
            }
            "volume-nocopy" => {
                volume.insert("NoCopy".into(), parse_bool(&key, val.unwrap_or(""))?.into());
            }
            "volume-label" => {
                let kv = need(val)?;
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                vlabels.insert(k.into(), v.into());
            }
            "volume-driver" => {
                volume.insert("DriverConfig".into(), json!({"Name": need(val)?}));
            }
            "volume-opt" => {
                let kv = need(val)?;
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                vopts.insert(k.into(), v.into());
            }
            "volume-subpath" => {
                volume.insert("Subpath".into(), need(val)?.into());
            }
            "tmpfs-size" => {
                let v = need(val)?;
                let bytes =
                    values::parse_ram(&v).map_err(|e| format!("invalid value for {key}: {v}: {e}"))?;
                tmpfs.insert("SizeBytes".into(), bytes.into());
            }
            "tmpfs-mode" => {
                let v = need(val)?;
                let mode = u32::from_str_radix(&v, 8).map_err(|_| format!("invalid value for {key}: {v}"))?;
                tmpfs.insert("Mode".into(), mode.into());
            }
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
    }
    if !matches!(kind.as_str(), "bind" | "volume" | "tmpfs") {
        return Err(format!(
            "invalid mount type: {kind:?}; only bind, volume and tmpfs are supported"
        ));
    }
    if !m.contains_key("Target") {
        return Err("target is required".into());
    }
    m.insert("Type".into(), kind.clone().into());
    if !vlabels.is_empty() {
        volume.insert("Labels".into(), Value::Object(vlabels));
    }
    if !vopts.is_empty() {
        let driver = volume
            .entry("DriverConfig")
            .or_insert_with(|| json!({"Name": "local"}));
        driver["Options"] = Value::Object(vopts);
    }
    let mut put = |field: &str, for_kind: &str, opts: serde_json::Map<String, Value>| -> Result<(), String> {
        if opts.is_empty() {
            return Ok(());
        }
        if kind != for_kind {
            return Err(format!(
                "cannot mix '{for_kind}-*' options with mount type '{kind}'"
            ));
        }
        m.insert(field.into(), Value::Object(opts));
        Ok(())
    };
    put("BindOptions", "bind", bind)?;
    put("VolumeOptions", "volume", volume)?;
    put("TmpfsOptions", "tmpfs", tmpfs)?;
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn volume_commands_parse() {
        let VolCommand::Create { body } = parse(&w(&[
            "create",
            "-d",
            "local",
            "--label",
            "a=b",
            "-o",
            "type=tmpfs",
            "--opt=o=size=1m",
            "v1",
        ]))
        .unwrap() else {
            panic!()
        };
        assert_eq!(body["Name"], "v1");
        assert_eq!(body["Labels"]["a"], "b");
        assert_eq!(body["DriverOpts"]["type"], "tmpfs");
        assert_eq!(body["DriverOpts"]["o"], "size=1m");
        assert!(parse(&w(&["create", "a", "b"])).is_err());
        assert_eq!(
            parse(&w(&["ls", "-q", "-f", "dangling=true"])).unwrap(),
            VolCommand::Ls {
                quiet: true,
                filters: vec![("dangling".into(), "true".into())],
                format: None
            }
        );
        assert!(parse(&w(&["ls", "-f", "nonsense"])).is_err());
        assert!(parse(&w(&["rm"])).is_err());
        assert_eq!(
            parse(&w(&["prune", "-a", "-f"])).unwrap(),
            VolCommand::Prune {
                force: true,
                all: true,
                filters: vec![]
            }
        );
        assert_eq!(
            parse(&w(&["prune", "-af"])).unwrap(),
            VolCommand::Prune {
                force: true,
                all: true,
                filters: vec![]
            }
        );
        assert!(parse(&w(&["prune", "-ax"])).is_err());
        assert!(parse(&w(&["frobnicate"])).is_err());
    }

    #[test]
    fn ls_rows_render_like_docker() {
        let rows = vec![ls_row(
            &json!({"Name": "data", "Driver": "local", "Labels": {"a": "1"}}),
        )];
        let out = tables::render(None, LS_DEFAULT, LS_HEADERS, &rows).unwrap();
        assert_eq!(out, "DRIVER    VOLUME NAME\nlocal     data\n");
        let out = tables::render(
            Some("{{.Name}} {{.Labels}} {{.Label \"a\"}}"),
            LS_DEFAULT,
            LS_HEADERS,
            &rows,
        )
        .unwrap();
        assert_eq!(out, "data a=1 1\n");
    }

    #[test]
    fn mount_flag_like_docker() {
        let m = parse_mount_flag("type=bind,src=/srv,dst=/www,readonly,bind-propagation=rslave").unwrap();
        assert_eq!(
            m,
            json!({"Type": "bind", "Source": "/srv", "Target": "/www", "ReadOnly": true,
                   "BindOptions": {"Propagation": "rslave"}})
        );
        let m = parse_mount_flag("source=data,target=/d,volume-nocopy,volume-label=x=y").unwrap();
        assert_eq!(m["Type"], "volume");
        assert_eq!(m["VolumeOptions"], json!({"NoCopy": true, "Labels": {"x": "y"}}));
        let m = parse_mount_flag("type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap();
        assert_eq!(m["TmpfsOptions"], json!({"SizeBytes": 1048576, "Mode": 0o1770}));
        assert!(parse_mount_flag("type=tmpfs,dst=/t,tmpfs-size=lots").is_err());
        assert!(parse_mount_flag("type=bind,src=/a")
            .unwrap_err()
            .contains("target is required"));
        assert!(parse_mount_flag("type=bind,src=/a,dst=/b,bogus=1")
            .unwrap_err()
            .contains("unexpected key"));
        assert!(parse_mount_flag("type=bind,src=/a,dst=/b,tmpfs-size=1m").is_err());
        assert!(parse_mount_flag("type=nfs,dst=/b").is_err());
        assert!(parse_mount_flag("type=bind,src=/a,dst=/b,readonly=maybe").is_err());
    }
}
