//! `network create|ls|inspect|rm|prune|connect|disconnect` and `port`, shaped like docker's
//! commands and output, over the daemon's `/networks` routes and container inspect.
//!
//! Flags parse into [`NetCommand`] (pure, tested); [`run`] carries one out.

use serde_json::{json, Value};

use super::format;
use super::template::Template;
use crate::api::client::{query, query_escape, Client, ClientError};

/// One network or port command, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetCommand {
    Create {
        name: String,
        body: Value,
    },
    Ls {
        quiet: bool,
        no_trunc: bool,
        filters: Vec<(String, String)>,
        format: Option<String>,
    },
    Inspect {
        networks: Vec<String>,
        format: Option<String>,
    },
    Rm {
        networks: Vec<String>,
    },
    Prune {
        force: bool,
    },
    Connect {
        network: String,
        container: String,
        aliases: Vec<String>,
        ip: Option<String>,
    },
    Disconnect {
        network: String,
        container: String,
        force: bool,
    },
    Port {
        container: String,
        port: Option<String>,
    },
    Help(String),
}

const NETWORK_HELP: &str = "Usage:  shoal network COMMAND

Manage networks

Commands:
  connect     Connect a container to a network
  create      Create a network
  disconnect  Disconnect a container from a network
  inspect     Display detailed information on one or more networks
  ls          List networks
  prune       Remove all unused networks
  rm          Remove one or more networks
";

/// Flags seen on a command line: values by long name, in order, and the positional words.
#[derive(Debug)]
pub(crate) struct Flags {
    pub values: Vec<(String, String)>,
    pub switches: Vec<String>,
    pub args: Vec<String>,
}

impl Flags {
    pub fn get(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
    pub fn all(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub fn has(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }
}

/// Parse `words` given the value flags (`long`, short) and switches the command takes.
pub(crate) fn parse_flags(
    cmd: &str,
    words: &[String],
    valued: &[(&str, char)],
    switches: &[(&str, char)],
) -> Result<Flags, String> {
    let mut f = Flags {
        values: Vec::new(),
        switches: Vec::new(),
        args: Vec::new(),
    };
    let mut i = 0;
    // The rest of a bundle of short switches (`-af` → `-a`, then `-f`).
    let mut bundled: Option<String> = None;
    loop {
        let w = match bundled.take() {
            Some(w) => w,
            None if i < words.len() => {
                i += 1;
                words[i - 1].clone()
            }
            None => break,
        };
        let w = &w;
        if w == "--" {
            f.args.extend(words[i..].iter().cloned());
            break;
        }
        let (name, inline): (String, Option<String>) = if let Some(long) = w.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            }
        } else if w.len() >= 2 && w.starts_with('-') {
            let c = w[1..].chars().next().unwrap_or(' ');
            let long = valued
                .iter()
                .chain(switches)
                .find(|(_, s)| *s == c)
                .map(|(l, _)| l.to_string());
            let Some(long) = long else {
                return Err(format!(
                    "unknown shorthand flag: '{c}' in {w}\nSee 'shoal {cmd} --help'."
                ));
            };
            let rest = &w[1 + c.len_utf8()..];
            if !rest.is_empty() && !rest.starts_with('=') && switches.iter().any(|(l, _)| *l == long) {
                f.switches.push(long);
                bundled = Some(format!("-{rest}"));
                continue;
            }
            (
                long,
                (!rest.is_empty()).then(|| rest.trim_start_matches('=').to_string()),
            )
        } else {
            f.args.push(w.clone());
            continue;
        };
        if valued.iter().any(|(l, _)| *l == name) {
            let v = match inline {
                Some(v) => v,
                None => {
                    let v = words.get(i).cloned().ok_or_else(|| {
                        format!("flag needs an argument: --{name}\nSee 'shoal {cmd} --help'.")
                    })?;
                    i += 1;
                    v
                }
            };
            f.values.push((name, v));
        } else if name == "help" || switches.iter().any(|(l, _)| *l == name) {
            f.switches.push(name);
        } else {
            return Err(format!("unknown flag: --{name}\nSee 'shoal {cmd} --help'."));
        }
    }
    Ok(f)
}

pub(crate) fn key_values(list: &[String], what: &str) -> Result<serde_json::Map<String, Value>, String> {
    let mut m = serde_json::Map::new();
    for kv in list {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        if k.is_empty() {
            return Err(format!("invalid {what} {kv:?}: expected KEY=VALUE"));
        }
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(m)
}

fn exactly(f: &Flags, n: usize, cmd: &str, usage: &str) -> Result<(), String> {
    if f.args.len() != n {
        return Err(format!(
            "\"shoal {cmd}\" requires exactly {n} argument{}.\nSee 'shoal {cmd} --help'.\n\nUsage:  shoal {usage}",
            if n == 1 { "" } else { "s" }
        ));
    }
    Ok(())
}

pub(crate) fn at_least_one(f: &Flags, cmd: &str, usage: &str) -> Result<(), String> {
    if f.args.is_empty() {
        return Err(format!(
            "\"shoal {cmd}\" requires at least 1 argument.\nSee 'shoal {cmd} --help'.\n\nUsage:  shoal {usage}"
        ));
    }
    Ok(())
}

/// Parse `network ...` (words after `network`) or `port ...` (words after `port`).
pub fn parse(verb: &str, words: &[String]) -> Result<NetCommand, String> {
    if verb == "port" {
        let f = parse_flags("port", words, &[], &[])?;
        if f.has("help") {
            return Ok(NetCommand::Help(
                "Usage:  shoal port CONTAINER [PRIVATE_PORT[/PROTO]]\n".into(),
            ));
        }
        if f.args.is_empty() || f.args.len() > 2 {
            return Err("\"shoal port\" requires 1 or 2 arguments.\nSee 'shoal port --help'.".into());
        }
        return Ok(NetCommand::Port {
            container: f.args[0].clone(),
            port: f.args.get(1).cloned(),
        });
    }
    let Some((sub, rest)) = words.split_first() else {
        return Ok(NetCommand::Help(NETWORK_HELP.into()));
    };
    let cmd = format!("network {sub}");
    match sub.as_str() {
        "create" => {
            let valued = [
                ("driver", 'd'),
                ("subnet", ' '),
                ("gateway", ' '),
                ("ip-range", ' '),
                ("label", ' '),
                ("opt", 'o'),
                ("ipam-driver", ' '),
            ];
            let f = parse_flags(&cmd, rest, &valued, &[("internal", ' '), ("attachable", ' '), ("ipv6", ' ')])?;
            if f.has("help") {
                return Ok(NetCommand::Help("Usage:  shoal network create [OPTIONS] NETWORK\n".into()));
            }
            exactly(&f, 1, &cmd, "network create [OPTIONS] NETWORK")?;
            let mut ipam = serde_json::Map::new();
            for (k, flag) in [("Subnet", "subnet"), ("Gateway", "gateway"), ("IPRange", "ip-range")] {
                if let Some(v) = f.get(flag) {
                    ipam.insert(k.into(), v.into());
                }
            }
            if !ipam.is_empty() && !ipam.contains_key("Subnet") {
                return Err("--gateway and --ip-range need a --subnet".into());
            }
            let configs = if ipam.is_empty() { vec![] } else { vec![Value::Object(ipam)] };
            let body = json!({
                "Name": f.args[0],
                "Driver": f.get("driver").unwrap_or_else(|| "bridge".into()),
                "Internal": f.has("internal"),
                "Attachable": f.has("attachable"),
                "EnableIPv6": f.has("ipv6"),
                "IPAM": {"Driver": f.get("ipam-driver").unwrap_or_else(|| "default".into()), "Config": configs},
                "Options": key_values(&f.all("opt"), "option")?,
                "Labels": key_values(&f.all("label"), "label")?,
            });
            Ok(NetCommand::Create { name: f.args[0].clone(), body })
        }
        "ls" | "list" => {
            let f = parse_flags(&cmd, rest, &[("filter", 'f'), ("format", ' ')], &[("quiet", 'q'), ("no-trunc", ' ')])?;
            if f.has("help") {
                return Ok(NetCommand::Help("Usage:  shoal network ls [OPTIONS]\n".into()));
            }
            let mut filters = Vec::new();
            for flt in f.all("filter") {
                let (k, v) = flt.split_once('=').ok_or_else(|| format!("bad format of filter (expected name=value): {flt}"))?;
                filters.push((k.to_string(), v.to_string()));
            }
            Ok(NetCommand::Ls { quiet: f.has("quiet"), no_trunc: f.has("no-trunc"), filters, format: f.get("format") })
        }
        "inspect" => {
            let f = parse_flags(&cmd, rest, &[("format", 'f')], &[("verbose", 'v')])?;
            at_least_one(&f, &cmd, "network inspect [OPTIONS] NETWORK [NETWORK...]")?;
            Ok(NetCommand::Inspect { format: f.get("format"), networks: f.args })
        }
        "rm" | "remove" => {
            let f = parse_flags(&cmd, rest, &[], &[("force", 'f')])?;
            at_least_one(&f, &cmd, "network rm NETWORK [NETWORK...]")?;
            Ok(NetCommand::Rm { networks: f.args })
        }
        "prune" => {
            let f = parse_flags(&cmd, rest, &[("filter", ' ')], &[("force", 'f')])?;
            Ok(NetCommand::Prune { force: f.has("force") })
        }
        "connect" => {
            let f = parse_flags(&cmd, rest, &[("alias", ' '), ("ip", ' '), ("ip6", ' ')], &[])?;
            exactly(&f, 2, &cmd, "network connect [OPTIONS] NETWORK CONTAINER")?;
            Ok(NetCommand::Connect {
                network: f.args[0].clone(),
                container: f.args[1].clone(),
                aliases: f.all("alias"),
                ip: f.get("ip"),
            })
        }
        "disconnect" => {
            let f = parse_flags(&cmd, rest, &[], &[("force", 'f')])?;
            exactly(&f, 2, &cmd, "network disconnect [OPTIONS] NETWORK CONTAINER")?;
            Ok(NetCommand::Disconnect {
                network: f.args[0].clone(),
                container: f.args[1].clone(),
                force: f.has("force"),
            })
        }
        "--help" | "help" => Ok(NetCommand::Help(NETWORK_HELP.into())),
        other => Err(format!("shoal: unknown command: shoal network {other}\n\nRun 'shoal network --help' for more information")),
    }
}

/// `shoal [-H HOST] network ...` and `shoal [-H HOST] port ...`; None for every other verb.
pub fn main(argv: &[String]) -> Option<i32> {
    let (host, i) = super::leading_host(argv);
    let verb = argv.get(i)?.as_str();
    if !matches!(verb, "network" | "port") {
        return None;
    }
    let command = match parse(verb, &argv[i + 1..]) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Some(1);
        }
    };
    Some(super::with_client(host.as_deref(), |c| run(c, command)))
}

fn seg(s: &str) -> String {
    query_escape(s)
}

pub(crate) fn template(text: &str, v: &Value) -> Result<String, String> {
    let t = Template::parse(text).map_err(|e| format!("template parsing error: {}", e.0))?;
    t.render(v).map_err(|e| format!("template: {}", e.0))
}

/// Carry out one command; prints docker's output.
/// The names a prune answer lists under `key`, under a `title` line (nothing when none).
pub(crate) fn print_deleted(v: &Value, key: &str, title: &str) {
    let names: Vec<&str> = v[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !names.is_empty() {
        println!("{title}");
        for n in names {
            println!("{n}");
        }
    }
}

/// `network inspect` / `volume inspect`: each object of `kind` as JSON (or through a
/// template); the missing ones are named on stderr and make the exit code 1.
pub(crate) fn inspect_each(
    client: &Client,
    kind: &str,
    names: &[String],
    format: Option<&str>,
) -> Result<i32, String> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for n in names {
        match client.get_json(&format!("/{kind}s/{}", seg(n))) {
            Ok(v) => found.push(v),
            Err(ClientError::Api { status: 404, .. }) => errors.push(format!("Error: No such {kind}: {n}")),
            Err(e) => return Err(e.to_string()),
        }
    }
    match format {
        Some(f) => {
            for v in &found {
                println!("{}", template(f, v)?);
            }
        }
        None => {
            let text = serde_json::to_string(&Value::Array(found)).map_err(|e| e.to_string())?;
            println!("{}", format::reindent_json(&text, "    ", 0).unwrap_or(text));
        }
    }
    if errors.is_empty() {
        return Ok(0);
    }
    eprintln!("{}", errors.join("\n"));
    Ok(1)
}

pub fn run(client: &Client, command: NetCommand) -> Result<i32, String> {
    let api = |e: ClientError| e.to_string();
    match command {
        NetCommand::Help(text) => print!("{text}"),
        NetCommand::Create { body, .. } => {
            let v = client
                .post("/networks/create", Some(&body))
                .and_then(|r| r.json())
                .map_err(api)?;
            println!("{}", v["Id"].as_str().unwrap_or(""));
        }
        NetCommand::Ls {
            quiet,
            no_trunc,
            filters,
            format,
        } => {
            let q = if filters.is_empty() {
                String::new()
            } else {
                let mut m = serde_json::Map::new();
                for (k, v) in filters {
                    let e = m.entry(k).or_insert_with(|| json!({}));
                    e[v] = json!(true);
                }
                query(&[("filters", Value::Object(m).to_string())])
            };
            let mut list = client
                .get_json(&format!("/networks{q}"))
                .map_err(api)?
                .as_array()
                .cloned()
                .unwrap_or_default();
            crate::sort::sort_by(&mut list, |a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
            let id = |n: &Value| {
                let id = n["Id"].as_str().unwrap_or("").to_string();
                if no_trunc {
                    id
                } else {
                    format::short_id(&id)
                }
            };
            let mut out = String::new();
            if quiet {
                for n in &list {
                    out.push_str(&id(n));
                    out.push('\n');
                }
            } else if let Some(f) = format {
                for n in &list {
                    let row = json!({"ID": id(n), "Name": n["Name"], "Driver": n["Driver"], "Scope": n["Scope"],
                                     "Internal": n["Internal"], "CreatedAt": n["Created"]});
                    out.push_str(&template(&f, &row)?);
                    out.push('\n');
                }
            } else {
                let mut t = String::from("NETWORK ID\tNAME\tDRIVER\tSCOPE\n");
                for n in &list {
                    let s = |k: &str| n[k].as_str().unwrap_or("").to_string();
                    t.push_str(&format!(
                        "{}\t{}\t{}\t{}\n",
                        id(n),
                        s("Name"),
                        s("Driver"),
                        s("Scope")
                    ));
                }
                out = format::tabwrite(&t);
            }
            print!("{out}");
        }
        NetCommand::Inspect { networks, format } => {
            let code = inspect_each(client, "network", &networks, format.as_deref())?;
            if code != 0 {
                return Ok(code);
            }
        }
        NetCommand::Rm { networks } => {
            let mut failed = false;
            for n in &networks {
                match client.delete(&format!("/networks/{}", seg(n))) {
                    Ok(_) => println!("{n}"),
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            return Ok(if failed { 1 } else { 0 });
        }
        NetCommand::Prune { force } => {
            if !force && !confirm() {
                return Ok(0);
            }
            let v = client
                .post("/networks/prune", None)
                .and_then(|r| r.json())
                .map_err(api)?;
            print_deleted(&v, "NetworksDeleted", "Deleted Networks:");
        }
        NetCommand::Connect {
            network,
            container,
            aliases,
            ip,
        } => {
            let mut ec = json!({"Aliases": aliases});
            if let Some(ip) = ip {
                ec["IPAMConfig"] = json!({"IPv4Address": ip});
            }
            let body = json!({"Container": container, "EndpointConfig": ec});
            client
                .post(&format!("/networks/{}/connect", seg(&network)), Some(&body))
                .map_err(api)?;
        }
        NetCommand::Disconnect {
            network,
            container,
            force,
        } => {
            let body = json!({"Container": container, "Force": force});
            client
                .post(&format!("/networks/{}/disconnect", seg(&network)), Some(&body))
                .map_err(api)?;
        }
        NetCommand::Port { container, port } => {
            let v = client
                .get_json(&format!("/containers/{}/json", seg(&container)))
                .map_err(api)?;
            let lines = port_lines(&v["NetworkSettings"]["Ports"], port.as_deref())
                .map_err(|e| format!("Error: {e} for {container}"))?;
            for l in lines {
                println!("{l}");
            }
        }
    }
    Ok(0)
}

fn confirm() -> bool {
    use std::io::Write;
    print!(
        "WARNING! This will remove all custom networks not used by at least one container.\n\
         Are you sure you want to continue? [y/N] "
    );
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    matches!(line.trim(), "y" | "Y" | "yes")
}

/// `port` output from inspect's `Ports`: `80/tcp -> 0.0.0.0:8080` for every binding, or only
/// `0.0.0.0:8080` for the one asked. Sorted by port, as docker.
pub fn port_lines(ports: &Value, wanted: Option<&str>) -> Result<Vec<String>, String> {
    let mut entries: Vec<(u16, String, String)> = Vec::new();
    for (key, bindings) in ports.as_object().into_iter().flatten() {
        let (p, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let port: u16 = p.parse().unwrap_or(0);
        for b in bindings.as_array().into_iter().flatten() {
            let addr = format!(
                "{}:{}",
                b["HostIp"].as_str().unwrap_or(""),
                b["HostPort"].as_str().unwrap_or("")
            );
            entries.push((port, proto.to_string(), addr));
        }
    }
    entries.sort();
    match wanted {
        None => Ok(entries
            .into_iter()
            .map(|(p, proto, a)| format!("{p}/{proto} -> {a}"))
            .collect()),
        Some(w) => {
            let (p, proto) = w.split_once('/').unwrap_or((w, "tcp"));
            let hits: Vec<String> = entries
                .into_iter()
                .filter(|(ep, eproto, _)| ep.to_string() == p && eproto == proto)
                .map(|e| e.2)
                .collect();
            if hits.is_empty() {
                return Err(format!("No public port '{p}/{proto}' published"));
            }
            Ok(hits)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn create_builds_dockers_body() {
        let c = parse(
            "network",
            &w(&[
                "create",
                "--subnet=10.1.0.0/24",
                "--gateway",
                "10.1.0.254",
                "--internal",
                "--label",
                "a=b",
                "-o",
                "com.docker.network.bridge.name=brx",
                "n1",
            ]),
        )
        .unwrap();
        let NetCommand::Create { name, body } = c else {
            panic!("{c:?}")
        };
        assert_eq!(name, "n1");
        assert_eq!(body["IPAM"]["Config"][0]["Subnet"], "10.1.0.0/24");
        assert_eq!(body["IPAM"]["Config"][0]["Gateway"], "10.1.0.254");
        assert_eq!(body["Internal"], true);
        assert_eq!(body["Labels"]["a"], "b");
        assert_eq!(body["Options"]["com.docker.network.bridge.name"], "brx");
        assert!(parse("network", &w(&["create"])).is_err());
        assert!(parse("network", &w(&["create", "--gateway", "1.2.3.4", "x"])).is_err());
        assert!(parse("network", &w(&["create", "--bogus", "x"])).is_err());
    }

    #[test]
    fn connect_ls_and_port_parse() {
        assert_eq!(
            parse(
                "network",
                &w(&[
                    "connect",
                    "--alias",
                    "a1",
                    "--alias=a2",
                    "--ip",
                    "10.1.0.9",
                    "net",
                    "c"
                ])
            )
            .unwrap(),
            NetCommand::Connect {
                network: "net".into(),
                container: "c".into(),
                aliases: vec!["a1".into(), "a2".into()],
                ip: Some("10.1.0.9".into())
            }
        );
        assert_eq!(
            parse("network", &w(&["ls", "-q", "-f", "name=x"])).unwrap(),
            NetCommand::Ls {
                quiet: true,
                no_trunc: false,
                filters: vec![("name".into(), "x".into())],
                format: None
            }
        );
        assert!(parse("network", &w(&["connect", "net"])).is_err());
        assert_eq!(
            parse("port", &w(&["c", "80"])).unwrap(),
            NetCommand::Port {
                container: "c".into(),
                port: Some("80".into())
            }
        );
    }

    #[test]
    fn port_lines_like_docker() {
        let ports = json!({
            "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
            "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
            "9000/tcp": null,
        });
        assert_eq!(
            port_lines(&ports, None).unwrap(),
            vec![
                "53/udp -> 127.0.0.1:5353".to_string(),
                "80/tcp -> 0.0.0.0:8080".to_string()
            ]
        );
        assert_eq!(
            port_lines(&ports, Some("80")).unwrap(),
            vec!["0.0.0.0:8080".to_string()]
        );
        assert!(port_lines(&ports, Some("9000")).is_err());
    }
}
