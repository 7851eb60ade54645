//! `shoal compose ...`: finds and loads the project (file discovery, `.env`, `-p`,
//! `--profile`), then drives the daemon through the same Docker Engine API docker compose
//! uses. The model and the request bodies come from [`crate::compose`]; this file does the
//! I/O and the order of calls.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::client::{query, query_escape, Client, ClientError};
use crate::compose::load::{load, Input};
use crate::compose::model::{Condition, Project};
use crate::compose::plan::{self, Decision};
use crate::compose::{emit, validate};

/// The names docker compose looks for, in its order of preference.
const FILE_NAMES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

#[derive(Debug, Default, Clone)]
pub struct Global {
    pub files: Vec<String>,
    pub project_name: Option<String>,
    pub env_files: Vec<String>,
    pub profiles: Vec<String>,
    pub project_dir: Option<String>,
}

const USAGE: &str = "Usage:  shoal compose [-f FILE]... [-p NAME] [--env-file FILE] [--profile P] COMMAND

Commands:
  build    Build or rebuild services
  config   Print the normalised compose file
  down     Stop and remove containers, networks (and volumes with -v)
  exec     Run a command in a running service container
  logs     View output from containers
  ls       List running compose projects
  ps       List containers
  pull     Pull service images
  restart  Restart service containers
  rm       Remove stopped service containers
  run      Run a one-off command on a service
  start    Start services
  stop     Stop services
  top      Display the running processes
  up       Create and start containers
";

/// Entry from `cli::main`: `None` when the words are not a compose command.
pub fn main(argv: &[String]) -> Option<i32> {
    let (host, i) = super::leading_host(argv);
    if argv.get(i).map(String::as_str) != Some("compose") {
        return None;
    }
    Some(super::with_client(host.as_deref(), |client| {
        run(client, host.as_deref(), &argv[i + 1..])
    }))
}

/// Splits global flags from the verb and its words.
pub fn parse_global(words: &[String]) -> Result<(Global, Vec<String>), String> {
    let mut g = Global::default();
    let mut i = 0;
    while let Some(w) = words.get(i) {
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (w.as_str(), None),
        };
        let takes = matches!(
            flag,
            "-f" | "--file"
                | "-p"
                | "--project-name"
                | "--env-file"
                | "--profile"
                | "--project-directory"
                | "--ansi"
                | "--progress"
        );
        if !takes {
            if flag.starts_with('-') && flag != "-" {
                if flag == "-h" || flag == "--help" {
                    return Ok((g, vec!["help".into()]));
                }
                return Err(format!("unknown flag: {flag}\n{USAGE}"));
            }
            break;
        }
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                words
                    .get(i)
                    .cloned()
                    .ok_or_else(|| format!("flag needs an argument: {flag}"))?
            }
        };
        match flag {
            "-f" | "--file" => g.files.push(value),
            "-p" | "--project-name" => g.project_name = Some(value),
            "--env-file" => g.env_files.push(value),
            "--profile" => g.profiles.push(value),
            "--project-directory" => g.project_dir = Some(value),
            _ => {}
        }
        i += 1;
    }
    Ok((g, words[i..].to_vec()))
}

/// Verb flags: switches, valued flags (repeatable) and positionals.
#[derive(Debug, Default)]
struct Flags {
    switches: Vec<String>,
    values: Vec<(String, String)>,
    args: Vec<String>,
}

impl Flags {
    fn has(&self, n: &str) -> bool {
        self.switches.iter().any(|s| s == n)
    }
    fn value(&self, n: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, n: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// `switches` and `valued` list long names; `short` maps one-letter flags to long names.
/// Parsing stops at the first positional when `stop_at_arg` (for `exec`/`run` commands).
fn parse_flags(
    words: &[String],
    switches: &[&str],
    valued: &[&str],
    short: &[(char, &str)],
    stop_at_arg: bool,
) -> Result<Flags, String> {
    let mut f = Flags::default();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        if w == "--" {
            f.args.extend(words[i + 1..].iter().cloned());
            break;
        }
        let name = if let Some(long) = w.strip_prefix("--") {
            long.to_string()
        } else if w.starts_with('-') && w.len() == 2 {
            let c = w.chars().nth(1).unwrap_or(' ');
            short
                .iter()
                .find(|(s, _)| *s == c)
                .map(|(_, l)| l.to_string())
                .ok_or_else(|| format!("unknown shorthand flag: {c:?} in {w}"))?
        } else {
            f.args.push(w.clone());
            if stop_at_arg {
                f.args.extend(words[i + 1..].iter().cloned());
                break;
            }
            i += 1;
            continue;
        };
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (name, None),
        };
        if switches.contains(&name.as_str()) {
            f.switches.push(name);
        } else if valued.contains(&name.as_str()) {
            let v = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    words
                        .get(i)
                        .cloned()
                        .ok_or_else(|| format!("flag needs an argument: --{name}"))?
                }
            };
            f.values.push((name, v));
        } else {
            return Err(format!("unknown flag: --{name}"));
        }
        i += 1;
    }
    Ok(f)
}

/// The compose files: `-f`, else COMPOSE_FILE, else the first known name found in the
/// current directory or one of its parents.
pub fn find_files(
    g: &Global,
    cwd: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<PathBuf>, String> {
    let abs = |f: &str| {
        if Path::new(f).is_absolute() {
            PathBuf::from(f)
        } else {
            cwd.join(f)
        }
    };
    if !g.files.is_empty() {
        return Ok(g.files.iter().map(|f| abs(f)).collect());
    }
    if let Some(list) = env("COMPOSE_FILE").filter(|l| !l.is_empty()) {
        let sep = env("COMPOSE_PATH_SEPARATOR").unwrap_or_else(|| ":".into());
        return Ok(list
            .split(sep.as_str())
            .filter(|s| !s.is_empty())
            .map(abs)
            .collect());
    }
    let mut dir = Some(cwd);
    while let Some(d) = dir {
        for name in FILE_NAMES {
            let p = d.join(name);
            if p.is_file() {
                return Ok(vec![p]);
            }
        }
        dir = d.parent();
    }
    Err(format!(
        "no configuration file provided: not found (looked for {} in {} and its parents)",
        FILE_NAMES.join(", "),
        cwd.display()
    ))
}

/// Reads and loads the project; warnings go to stderr.
pub fn load_project(g: &Global, requested: &[String]) -> Result<Project, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
    let shell = |k: &str| std::env::var(k).ok();
    let paths = find_files(g, &cwd, &shell)?;
    let mut files = Vec::new();
    for p in &paths {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        files.push((p.to_string_lossy().into_owned(), text));
    }
    let working_dir = match &g.project_dir {
        Some(d) => crate::compose::normalize::resolve_path(&cwd.to_string_lossy(), d, &shell),
        None => paths[0]
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into()),
    };
    // `.env` of the project directory unless --env-file names others; the shell wins.
    let env_paths: Vec<PathBuf> = if g.env_files.is_empty() {
        vec![Path::new(&working_dir).join(".env")]
    } else {
        g.env_files.iter().map(|f| cwd.join(f)).collect()
    };
    let mut dotenv: BTreeMap<String, String> = BTreeMap::new();
    for p in &env_paths {
        match std::fs::read_to_string(p) {
            Ok(text) => {
                let lookup = |k: &str| std::env::var(k).ok().or_else(|| dotenv.get(k).cloned());
                let pairs = crate::compose::dotenv::parse(&text, &lookup)
                    .map_err(|e| format!("{}: {e}", p.display()))?;
                dotenv.extend(pairs);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && g.env_files.is_empty() => {}
            Err(e) => return Err(format!("{}: {e}", p.display())),
        }
    }
    let lookup = |k: &str| std::env::var(k).ok().or_else(|| dotenv.get(k).cloned());
    let read_file = |p: &str| std::fs::read_to_string(p).map_err(|e| e.to_string());
    let mut profiles = g.profiles.clone();
    if profiles.is_empty() {
        if let Some(p) = lookup("COMPOSE_PROFILES") {
            profiles = p
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
    }
    let input = Input {
        files,
        working_dir,
        env: &lookup,
        project_name: g.project_name.clone(),
        profiles,
        requested: requested.to_vec(),
        read_file: &read_file,
    };
    let loaded = load(&input).map_err(|e| e.to_string())?;
    for w in &loaded.warnings {
        eprintln!("WARN[0000] {w}");
    }
    Ok(loaded.project)
}

/// The project name without loading files, for verbs that work from labels (`down -p x`).
fn project_name_only(g: &Global) -> Result<String, String> {
    match load_project(g, &[]) {
        Ok(p) => Ok(p.name),
        Err(e) => g.project_name.clone().ok_or(e),
    }
}

fn api(e: ClientError) -> String {
    e.to_string()
}

pub fn run(client: &Client, host: Option<&str>, words: &[String]) -> Result<i32, String> {
    let (g, rest) = parse_global(words)?;
    let Some(verb) = rest.first().map(String::as_str) else {
        print!("{USAGE}");
        return Ok(0);
    };
    let args = &rest[1..];
    match verb {
        "help" => {
            print!("{USAGE}");
            Ok(0)
        }
        "config" => config(&g, args),
        "up" => up(client, &g, args),
        "down" => down(client, &g, args),
        "ps" => ps(client, &g, args),
        "logs" => logs(client, &g, args),
        "start" | "stop" | "restart" => lifecycle(client, &g, verb, args),
        "rm" => rm(client, &g, args),
        "ls" => ls(client, args),
        "exec" => exec(client, host, &g, args),
        "run" => run_oneoff(client, host, &g, args),
        "top" => top(client, host, &g, args),
        "pull" => pull(client, &g, args),
        "build" => {
            let f = parse_flags(
                args,
                &["no-cache", "pull", "quiet"],
                &["build-arg"],
                &[('q', "quiet")],
                false,
            )?;
            let project = load_project(&g, &f.args)?;
            let targets = if f.args.is_empty() {
                project.services.keys().cloned().collect()
            } else {
                f.args.clone()
            };
            for name in targets {
                if project.services[&name].build.is_some() {
                    build_service(client, &project, &name)?;
                }
            }
            Ok(0)
        }
        other => Err(format!("unknown compose command: {other:?}\n{USAGE}")),
    }
}

fn config(g: &Global, args: &[String]) -> Result<i32, String> {
    let f = parse_flags(
        args,
        &["services", "volumes", "networks", "quiet", "hash", "images"],
        &["format", "output"],
        &[('q', "quiet"), ('o', "output")],
        false,
    )?;
    let project = load_project(g, &f.args)?;
    let mut out = String::new();
    if f.has("quiet") {
        return Ok(0);
    } else if f.has("services") {
        for s in validate::start_order(&project) {
            out.push_str(&format!("{s}\n"));
        }
    } else if f.has("volumes") {
        project
            .volumes
            .keys()
            .for_each(|v| out.push_str(&format!("{v}\n")));
    } else if f.has("networks") {
        project
            .networks
            .keys()
            .for_each(|v| out.push_str(&format!("{v}\n")));
    } else if f.has("images") {
        project
            .services
            .values()
            .for_each(|s| out.push_str(&format!("{}\n", s.image_name(&project.name))));
    } else if f.has("hash") {
        project
            .services
            .values()
            .for_each(|s| out.push_str(&format!("{} {}\n", s.name, plan::config_hash(s))));
    } else if f.value("format") == Some("json") {
        out =
            serde_json::to_string_pretty(&out_json(&emit::project_out(&project))).unwrap_or_default() + "\n";
    } else {
        out = emit::to_yaml(&emit::project_out(&project));
    }
    match f.value("output") {
        Some(path) => std::fs::write(path, out).map_err(|e| format!("{path}: {e}"))?,
        None => print!("{out}"),
    }
    Ok(0)
}

fn out_json(o: &emit::Out) -> Value {
    match o {
        emit::Out::Null => Value::Null,
        emit::Out::Bool(b) => json!(b),
        emit::Out::Int(i) => json!(i),
        emit::Out::Str(s) => json!(s),
        emit::Out::Seq(v) => Value::Array(v.iter().map(out_json).collect()),
        emit::Out::Map(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), out_json(v))).collect()),
    }
}

/// This project's containers (one-off ones only when asked), sorted by service and number.
fn containers(client: &Client, project: &str, all: bool, oneoff: bool) -> Result<Vec<Value>, String> {
    let filters = plan::project_filter(project, &[]);
    let mut pairs = vec![("filters", filters)];
    if all {
        pairs.push(("all", "1".into()));
    }
    let list = client
        .get_json(&format!("/containers/json{}", query(&pairs)))
        .map_err(api)?;
    let mut out: Vec<Value> = list
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| label(c, plan::LABEL_PROJECT) == project)
        .filter(|c| oneoff || label(c, plan::LABEL_ONEOFF) != "True")
        .collect();
    crate::sort::sort_by_key(&mut out, |c| {
        (
            label(c, plan::LABEL_SERVICE),
            label(c, plan::LABEL_NUMBER).parse::<u32>().unwrap_or(0),
        )
    });
    Ok(out)
}

fn label(c: &Value, key: &str) -> String {
    c["Labels"][key].as_str().unwrap_or("").to_string()
}

fn cname(c: &Value) -> String {
    c["Names"][0]
        .as_str()
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string()
}

fn cid(c: &Value) -> String {
    c["Id"].as_str().unwrap_or("").to_string()
}

/// Services `up` acts on: the ones named (plus their dependencies unless `--no-deps`), else all.
fn targets(project: &Project, named: &[String], no_deps: bool) -> Vec<String> {
    let order = validate::start_order(project);
    if named.is_empty() {
        return order;
    }
    let mut wanted: Vec<String> = named.to_vec();
    if !no_deps {
        let mut i = 0;
        while i < wanted.len() {
            if let Some(s) = project.services.get(&wanted[i]) {
                for d in s.depends_on.keys() {
                    if !wanted.contains(d) && project.services.contains_key(d) {
                        wanted.push(d.clone());
                    }
                }
            }
            i += 1;
        }
    }
    order.into_iter().filter(|s| wanted.contains(s)).collect()
}

fn ensure_networks(client: &Client, project: &Project, services: &[String]) -> Result<(), String> {
    let mut used: Vec<&String> = Vec::new();
    for s in services {
        let svc = &project.services[s];
        if svc.network_mode.is_some() {
            continue;
        }
        if svc.networks.is_empty() {
            used.push(
                project
                    .networks
                    .keys()
                    .find(|k| *k == "default")
                    .ok_or("no default network")?,
            );
        }
        used.extend(svc.networks.keys());
    }
    for key in project.networks.keys().filter(|k| used.contains(k)) {
        let net = &project.networks[key];
        match client.get(&format!("/networks/{}", query_escape(&net.name))) {
            Ok(_) => continue,
            Err(ClientError::Api { status: 404, .. }) if !net.external => {}
            Err(ClientError::Api { status: 404, .. }) => {
                return Err(format!(
                    "network {} declared as external, but could not be found",
                    net.name
                ))
            }
            Err(e) => return Err(api(e)),
        }
        eprintln!(" Network {}  Creating", net.name);
        client
            .post("/networks/create", Some(&plan::network_body(project, key, net)))
            .map_err(api)?;
        eprintln!(" Network {}  Created", net.name);
    }
    Ok(())
}

fn ensure_volumes(client: &Client, project: &Project) -> Result<(), String> {
    for (key, vol) in &project.volumes {
        if vol.external {
            client
                .get(&format!("/volumes/{}", query_escape(&vol.name)))
                .map_err(|e| format!("external volume {:?} not found: {e}", vol.name))?;
            continue;
        }
        if client
            .get(&format!("/volumes/{}", query_escape(&vol.name)))
            .is_ok()
        {
            continue;
        }
        client
            .post("/volumes/create", Some(&plan::volume_body(project, key, vol)))
            .map_err(|e| format!("volume {}: {e} (does this daemon serve /volumes?)", vol.name))?;
        eprintln!(" Volume \"{}\"  Created", vol.name);
    }
    Ok(())
}

/// Builds a service's image with `POST /build` and a tar of its context.
fn build_service(client: &Client, project: &Project, name: &str) -> Result<(), String> {
    let svc = &project.services[name];
    let Some(b) = &svc.build else { return Ok(()) };
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", &b.context)
        .map_err(|e| format!("build context {}: {e}", b.context))?;
    let body = tar
        .into_inner()
        .map_err(|e| format!("build context {}: {e}", b.context))?;
    let args: BTreeMap<&String, &String> = b
        .args
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
    let mut labels = b.labels.clone();
    labels.insert(plan::LABEL_PROJECT.into(), project.name.clone());
    let mut pairs = vec![
        ("t", svc.image_name(&project.name)),
        (
            "dockerfile",
            b.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into()),
        ),
        ("buildargs", json!(args).to_string()),
        ("labels", json!(labels).to_string()),
        ("rm", "1".into()),
    ];
    if let Some(t) = &b.target {
        pairs.push(("target", t.clone()));
    }
    eprintln!(" Service {name}  Building");
    let resp = client
        .request(
            "POST",
            &format!("/build{}", query(&pairs)),
            crate::api::client::Body::Bytes(&body, "application/x-tar"),
        )
        .map_err(|e| match e {
            ClientError::Api { status: 404, .. } => {
                format!("service {name}: this daemon cannot build images (POST /build is not available)")
            }
            other => format!("service {name}: build failed: {other}"),
        })?;
    for line in String::from_utf8_lossy(&resp.body).lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let Some(err) = v["error"].as_str() {
            return Err(format!("service {name}: build failed: {err}"));
        }
        if let Some(s) = v["stream"].as_str() {
            eprint!("{s}");
        }
    }
    Ok(())
}

fn image_present(client: &Client, image: &str) -> bool {
    client
        .get(&format!("/images/{}/json", query_escape(image)))
        .is_ok()
}

fn create_and_start(
    client: &Client,
    project: &Project,
    name: &str,
    number: u32,
    hash: &str,
) -> Result<String, String> {
    let svc = &project.services[name];
    let cname = plan::container_name(project, svc, number);
    let body = plan::create_body(project, svc, number, false, hash);
    eprintln!(" Container {cname}  Creating");
    let created = client
        .post(
            &format!("/containers/create{}", query(&[("name", cname.clone())])),
            Some(&body),
        )
        .map_err(|e| format!("service {name}: {e}"))?
        .json()
        .map_err(api)?;
    let id = created["Id"].as_str().unwrap_or(&cname).to_string();
    for (net, aliases, ip) in plan::attachments(project, svc).into_iter().skip(1) {
        let mut ep = json!({ "Aliases": aliases });
        if let Some(ip) = ip {
            ep["IPAMConfig"] = json!({ "IPv4Address": ip });
        }
        client
            .post(
                &format!("/networks/{}/connect", query_escape(&net)),
                Some(&json!({ "Container": id, "EndpointConfig": ep })),
            )
            .map_err(|e| format!("service {name}: connect to {net}: {e}"))?;
    }
    eprintln!(" Container {cname}  Starting");
    client
        .post(&format!("/containers/{id}/start"), None)
        .map_err(|e| format!("service {name}: {e}"))?;
    eprintln!(" Container {cname}  Started");
    Ok(id)
}

fn remove_container(client: &Client, c: &Value, timeout: Option<&str>, volumes: bool) -> Result<(), String> {
    let name = cname(c);
    if c["State"].as_str() == Some("running") {
        eprintln!(" Container {name}  Stopping");
        let q = timeout
            .map(|t| query(&[("t", t.to_string())]))
            .unwrap_or_default();
        client
            .post(&format!("/containers/{}/stop{q}", cid(c)), None)
            .map_err(api)?;
    }
    eprintln!(" Container {name}  Removing");
    let q = if volumes { "?force=1&v=1" } else { "?force=1" };
    match client.delete(&format!("/containers/{}{q}", cid(c))) {
        Ok(_) | Err(ClientError::Api { status: 404, .. }) => Ok(()),
        Err(e) => Err(api(e)),
    }
}

/// Blocks until `dep`'s containers satisfy `condition`.
fn wait_condition(
    client: &Client,
    project: &Project,
    dep: &str,
    condition: Condition,
    timeout: Duration,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let list: Vec<Value> = containers(client, &project.name, true, false)?
            .into_iter()
            .filter(|c| label(c, plan::LABEL_SERVICE) == dep)
            .collect();
        let mut all_ok = !list.is_empty();
        for c in &list {
            let info = client
                .get_json(&format!("/containers/{}/json", cid(c)))
                .map_err(api)?;
            let state = &info["State"];
            let ok = match condition {
                Condition::Started => state["Running"].as_bool() == Some(true) || state["Status"] == "exited",
                Condition::Healthy => match state["Health"]["Status"].as_str() {
                    Some("healthy") => true,
                    Some("unhealthy") => {
                        return Err(format!(
                            "dependency failed to start: container {} is unhealthy",
                            cname(c)
                        ))
                    }
                    Some(_) => false,
                    None if state["Running"].as_bool() == Some(true)
                        && info["Config"]["Healthcheck"].is_null() =>
                    {
                        return Err(format!(
                            "dependency {dep} has no healthcheck; service_healthy cannot be met"
                        ))
                    }
                    None => false,
                },
                Condition::CompletedSuccessfully => {
                    if state["Status"] == "exited" {
                        if state["ExitCode"].as_i64() != Some(0) {
                            return Err(format!(
                                "service {dep} didn't complete successfully: exit {}",
                                state["ExitCode"]
                            ));
                        }
                        true
                    } else {
                        false
                    }
                }
            };
            all_ok &= ok;
        }
        if all_ok {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "timed out waiting for {dep} to be {}",
                condition.as_str()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn up(client: &Client, g: &Global, args: &[String]) -> Result<i32, String> {
    let f = parse_flags(
        args,
        &[
            "detach",
            "force-recreate",
            "no-recreate",
            "no-deps",
            "remove-orphans",
            "wait",
            "build",
            "no-build",
            "no-start",
            "quiet-pull",
            "abort-on-container-exit",
        ],
        &["scale", "timeout", "wait-timeout", "pull"],
        &[('d', "detach"), ('t', "timeout")],
        false,
    )?;
    if f.has("force-recreate") && f.has("no-recreate") {
        return Err("--force-recreate and --no-recreate are incompatible".into());
    }
    let project = load_project(g, &f.args)?;
    let mut scale: BTreeMap<String, u32> = BTreeMap::new();
    for s in f.all("scale") {
        let (svc, n) = s
            .split_once('=')
            .ok_or_else(|| format!("invalid --scale {s:?}: expected SERVICE=NUM"))?;
        if !project.services.contains_key(svc) {
            return Err(format!("no such service: {svc}"));
        }
        scale.insert(
            svc.to_string(),
            n.parse().map_err(|_| format!("invalid --scale {s:?}"))?,
        );
    }
    let services = targets(&project, &f.args, f.has("no-deps"));
    ensure_networks(client, &project, &services)?;
    ensure_volumes(client, &project)?;
    for name in &services {
        let svc = &project.services[name];
        if svc.build.is_some()
            && (f.has("build") || !image_present(client, &svc.image_name(&project.name)))
            && !f.has("no-build")
        {
            build_service(client, &project, name)?;
        }
    }
    let existing = containers(client, &project.name, true, false)?;
    let orphans: Vec<&Value> = existing
        .iter()
        .filter(|c| !project.services.contains_key(&label(c, plan::LABEL_SERVICE)))
        .collect();
    if !orphans.is_empty() {
        if f.has("remove-orphans") {
            for c in orphans {
                remove_container(client, c, None, false)?;
            }
        } else {
            let names: Vec<String> = orphans.iter().map(|c| cname(c)).collect();
            eprintln!("WARN[0000] Found orphan containers ({}) for this project. Use --remove-orphans to clean them up.", names.join(", "));
        }
    }
    let dep_timeout = Duration::from_secs(
        f.value("wait-timeout")
            .and_then(|t| t.parse().ok())
            .unwrap_or(300),
    );
    for name in &services {
        let svc = &project.services[name];
        for (dep, d) in &svc.depends_on {
            if services.contains(dep) || project.services.contains_key(dep) {
                wait_condition(client, &project, dep, d.condition, dep_timeout)?;
            }
        }
        let hash = plan::config_hash(svc);
        let wanted = scale.get(name).copied().unwrap_or_else(|| svc.replicas());
        let mine: Vec<&Value> = existing
            .iter()
            .filter(|c| label(c, plan::LABEL_SERVICE) == *name)
            .collect();
        let mut have: Vec<u32> = Vec::new();
        for c in &mine {
            let number: u32 = label(c, plan::LABEL_NUMBER).parse().unwrap_or(0);
            match plan::decide(
                number,
                wanted,
                label(c, plan::LABEL_HASH) == hash,
                f.has("force-recreate"),
                f.has("no-recreate"),
            ) {
                Decision::Remove => remove_container(client, c, f.value("timeout"), false)?,
                Decision::Keep => {
                    have.push(number);
                    if c["State"].as_str() != Some("running") && !f.has("no-start") {
                        client
                            .post(&format!("/containers/{}/start", cid(c)), None)
                            .map_err(api)?;
                        eprintln!(" Container {}  Started", cname(c));
                    } else {
                        eprintln!(" Container {}  Running", cname(c));
                    }
                }
                Decision::Recreate => {
                    eprintln!(" Container {}  Recreate", cname(c));
                    remove_container(client, c, f.value("timeout"), false)?;
                    create_and_start(client, &project, name, number, &hash)?;
                    have.push(number);
                }
            }
        }
        for number in 1..=wanted {
            if !have.contains(&number) {
                create_and_start(client, &project, name, number, &hash)?;
            }
        }
    }
    if f.has("wait") {
        for name in &services {
            let svc = &project.services[name];
            let cond = if svc
                .healthcheck
                .as_ref()
                .is_some_and(|h| !h.disable && !h.test.is_empty())
            {
                Condition::Healthy
            } else {
                Condition::Started
            };
            wait_condition(client, &project, name, cond, dep_timeout)?;
        }
    }
    if f.has("detach") || f.has("wait") {
        return Ok(0);
    }
    // Attached: follow every service's logs until the containers stop; Ctrl-C stops them,
    // as docker compose does. The signal thread starts before the log threads so they
    // inherit the blocked mask.
    // 0: running, 1: Ctrl-C seen, stopping, 2: stopped. The logs end as soon as the last
    // container stops, possibly before the signal thread is done: the exit code (130) and the
    // remaining stops must not be lost to that race.
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0));
    let flag = interrupted.clone();
    let stopper = client.clone();
    let name = project.name.clone();
    let stopping = services.clone();
    let _ = crate::cli::term::spawn_signal_thread(move |event| {
        let crate::cli::term::SignalEvent::Signal(_, sig) = event else {
            return;
        };
        if sig != libc::SIGINT && sig != libc::SIGTERM {
            return;
        }
        if flag.swap(1, std::sync::atomic::Ordering::SeqCst) != 0 {
            // Second Ctrl-C: force.
            std::process::exit(130);
        }
        eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
        if let Ok(list) = containers(&stopper, &name, false, false) {
            for c in list
                .iter()
                .rev()
                .filter(|c| stopping.contains(&label(c, plan::LABEL_SERVICE)))
            {
                let _ = stopper.post(&format!("/containers/{}/stop", cid(c)), None);
                eprintln!(" Container {}  Stopped", cname(c));
            }
        }
        flag.store(2, std::sync::atomic::Ordering::SeqCst);
    });
    follow_logs(client, &project.name, &services, true, None)?;
    use std::sync::atomic::Ordering;
    while interrupted.load(Ordering::SeqCst) == 1 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(if interrupted.load(Ordering::SeqCst) == 2 {
        130
    } else {
        0
    })
}

fn down(client: &Client, g: &Global, args: &[String]) -> Result<i32, String> {
    let f = parse_flags(
        args,
        &["volumes", "remove-orphans"],
        &["rmi", "timeout"],
        &[('v', "volumes"), ('t', "timeout")],
        false,
    )?;
    let rmi = f.value("rmi");
    if let Some(r) = rmi {
        if r != "local" && r != "all" {
            return Err(format!("invalid --rmi {r:?}: use local or all"));
        }
    }
    let project = load_project(g, &[]).ok();
    let name = match &project {
        Some(p) => p.name.clone(),
        None => project_name_only(g)?,
    };
    for c in containers(client, &name, true, true)? {
        let known = project
            .as_ref()
            .is_none_or(|p| p.services.contains_key(&label(&c, plan::LABEL_SERVICE)));
        if known || f.has("remove-orphans") {
            remove_container(client, &c, f.value("timeout"), f.has("volumes"))?;
        }
    }
    // Networks and volumes are found by label, so a changed file still cleans up.
    let filter = query(&[("filters", plan::project_filter(&name, &[]))]);
    let nets = client.get_json(&format!("/networks{filter}")).map_err(api)?;
    for n in nets.as_array().cloned().unwrap_or_default() {
        if n["Labels"][plan::LABEL_PROJECT].as_str() != Some(name.as_str()) {
            continue;
        }
        let nname = n["Name"].as_str().unwrap_or("").to_string();
        eprintln!(" Network {nname}  Removing");
        match client.delete(&format!("/networks/{}", query_escape(&nname))) {
            Ok(_) | Err(ClientError::Api { status: 404, .. }) => eprintln!(" Network {nname}  Removed"),
            Err(e) => eprintln!(" Network {nname}  {e}"),
        }
    }
    if f.has("volumes") {
        if let Ok(vols) = client.get_json(&format!("/volumes{filter}")) {
            for v in vols["Volumes"].as_array().cloned().unwrap_or_default() {
                if v["Labels"][plan::LABEL_PROJECT].as_str() != Some(name.as_str()) {
                    continue;
                }
                let vname = v["Name"].as_str().unwrap_or("").to_string();
                match client.delete(&format!("/volumes/{}", query_escape(&vname))) {
                    Ok(_) | Err(ClientError::Api { status: 404, .. }) => {
                        eprintln!(" Volume {vname}  Removed")
                    }
                    Err(e) => return Err(format!("volume {vname}: {e}")),
                }
            }
        }
    }
    if let (Some(r), Some(p)) = (rmi, &project) {
        for s in p.services.values() {
            if r == "all" || (s.image.is_none() && s.build.is_some()) {
                let image = s.image_name(&p.name);
                match client.delete(&format!("/images/{}", query_escape(&image))) {
                    Ok(_) => eprintln!(" Image {image}  Removed"),
                    Err(ClientError::Api { status: 404, .. }) => {}
                    Err(e) => eprintln!(" Image {image}  {e}"),
                }
            }
        }
    }
    Ok(0)
}

fn ps(client: &Client, g: &Global, args: &[String]) -> Result<i32, String> {
    let f = parse_flags(
        args,
        &["all", "quiet", "services"],
        &["format", "status", "filter"],
        &[('a', "all"), ('q', "quiet")],
        false,
    )?;
    let name = project_name_only(g)?;
    let list: Vec<Value> = containers(client, &name, f.has("all"), false)?
        .into_iter()
        .filter(|c| f.args.is_empty() || f.args.contains(&label(c, plan::LABEL_SERVICE)))
        .filter(|c| f.value("status").is_none_or(|s| c["State"].as_str() == Some(s)))
        .collect();
    let mut out = std::io::stdout().lock();
    if f.has("quiet") {
        for c in &list {
            let _ = writeln!(out, "{}", cid(c));
        }
        return Ok(0);
    }
    if f.has("services") {
        let mut seen: Vec<String> = list.iter().map(|c| label(c, plan::LABEL_SERVICE)).collect();
        seen.dedup();
        seen.iter().for_each(|s| {
            let _ = writeln!(out, "{s}");
        });
        return Ok(0);
    }
    if f.value("format") == Some("json") {
        for c in &list {
            let _ = writeln!(out, "{}", ps_json(c));
        }
        return Ok(0);
    }
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|c| {
            [
                cname(c),
                c["Image"].as_str().unwrap_or("").to_string(),
                format!("\"{}\"", truncate(c["Command"].as_str().unwrap_or(""), 20)),
                label(c, plan::LABEL_SERVICE),
                created_ago(c["Created"].as_f64().unwrap_or(0.0)),
                c["Status"].as_str().unwrap_or("").to_string(),
                ports_text(&c["Ports"]),
            ]
        })
        .collect();
    let header = [
        "NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, v) in r.iter().enumerate() {
            widths[i] = widths[i].max(v.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for r in &rows {
        let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
    }
    Ok(0)
}

fn ps_json(c: &Value) -> Value {
    json!({
        "ID": cid(c),
        "Name": cname(c),
        "Image": c["Image"],
        "Command": c["Command"],
        "Project": label(c, plan::LABEL_PROJECT),
        "Service": label(c, plan::LABEL_SERVICE),
        "State": c["State"],
        "Status": c["Status"],
        "Health": health_of(c["Status"].as_str().unwrap_or("")),
        "ExitCode": 0,
        "Publishers": c["Ports"],
        "Labels": c["Labels"],
    })
}

fn created_ago(then: f64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    crate::cli::format::ago(then, now)
}

fn health_of(status: &str) -> &'static str {
    if status.contains("(healthy)") {
        "healthy"
    } else if status.contains("(unhealthy)") {
        "unhealthy"
    } else if status.contains("(health: starting)") {
        "starting"
    } else {
        ""
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn ports_text(ports: &Value) -> String {
    let mut out = Vec::new();
    for p in ports.as_array().cloned().unwrap_or_default() {
        let private = p["PrivatePort"].as_u64().unwrap_or(0);
        let proto = p["Type"].as_str().unwrap_or("tcp");
        match p["PublicPort"].as_u64() {
            Some(public) => out.push(format!(
                "{}:{public}->{private}/{proto}",
                p["IP"].as_str().unwrap_or("0.0.0.0")
            )),
            None => out.push(format!("{private}/{proto}")),
        }
    }
    out.join(", ")
}

/// Streams each container's log with a `name  | ` prefix, one thread per container.
fn follow_logs(
    client: &Client,
    project: &str,
    services: &[String],
    follow: bool,
    tail: Option<&str>,
) -> Result<(), String> {
    let list: Vec<Value> = containers(client, project, true, false)?
        .into_iter()
        .filter(|c| services.is_empty() || services.contains(&label(c, plan::LABEL_SERVICE)))
        .collect();
    let width = list.iter().map(|c| cname(c).len()).max().unwrap_or(0);
    let mut threads = Vec::new();
    for c in list {
        let client = client.clone();
        let name = cname(&c);
        let id = cid(&c);
        let mut pairs = vec![("stdout", "1".to_string()), ("stderr", "1".to_string())];
        if follow {
            pairs.push(("follow", "1".into()));
        }
        if let Some(t) = tail {
            pairs.push(("tail", t.to_string()));
        }
        let path = format!("/containers/{id}/logs{}", query(&pairs));
        threads.push(std::thread::spawn(move || {
            let prefix = format!("{name:<width$} | ");
            let Ok(resp) = client.stream("GET", &path, crate::api::client::Body::Empty) else {
                return;
            };
            let mut out = PrefixWriter {
                prefix: prefix.clone(),
                at_start: true,
            };
            let mut err = PrefixWriter {
                prefix,
                at_start: true,
            };
            let _ = crate::api::client::copy_demuxed(resp.body, &mut out, &mut err);
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Prefixes each line with the container's name, writing whole lines to stdout.
struct PrefixWriter {
    prefix: String,
    at_start: bool,
}

impl Write for PrefixWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut text = Vec::new();
        for &b in buf {
            if self.at_start {
                text.extend_from_slice(self.prefix.as_bytes());
                self.at_start = false;
            }
            text.push(b);
            if b == b'\n' {
                self.at_start = true;
            }
        }
        std::io::stdout().lock().write_all(&text)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

fn logs(client: &Client, g: &Global, args: &[String]) -> Result<i32, String> {
    let f = parse_flags(
        args,
        &["follow", "timestamps", "no-color", "no-log-prefix"],
        &["tail", "since", "until"],
        &[('f', "follow"), ('t', "timestamps"), ('n', "tail")],
        false,
    )?;
    let name = project_name_only(g)?;
    follow_logs(client, &name, &f.args, f.has("follow"), f.value("tail"))?;
    Ok(0)
}

fn lifecycle(client: &Client, g: &Global, verb: &str, args: &[String]) -> Result<i32, String> {
    let f = parse_flags(args, &[], &["timeout"], &[('t', "timeout")], false)?;
    let name = project_name_only(g)?;
    let mut list: Vec<Value> = containers(client, &name, true, false)?
        .into_iter()
        .filter(|c| f.args.is_empty() || f.args.contains(&label(c, plan::LABEL_SERVICE)))
        .collect();
    if verb == "stop" {
        list.reverse();
    }
    let q = f
        .value("timeout")
        .map(|t| query(&[("t", t.to_string())]))
        .unwrap_or_default();
    for c in list {
        client
            .post(&format!("/containers/{}/{verb}{q}", cid(&c)), None)
            .map_err(api)?;
        let done = match verb {
            "start" => "Started",
            "stop" => "Stopped",
            _ => "Restarted",
        };
        eprintln!(" Container {}  {done}", cname(&c));
    }
    Ok(0)
}

fn rm(client: &Client, g: &Global, args: &[String]) -> Result<i32, String> {
    let f = parse_flags(
        args,
        &["force", "stop", "volumes"],
        &[],
        &[('f', "force"), ('s', "stop"), ('v', "volumes")],
        false,
    )?;
    let name = project_name_only(g)?;
    for c in containers(client, &name, true, false)? {
        if !f.args.is_empty() && !f.args.contains(&label(&c, plan::LABEL_SERVICE)) {
            continue;
        }
        if c["State"].as_str() == Some("running") && !f.has("stop") {
            continue;
        }
        remove_container(client, &c, None, f.has("volumes"))?;
    }
    Ok(0)
}

fn ls(client: &Client, args: &[String]) -> Result<i32, String> {
    let f = parse_flags(
        args,
        &["all", "quiet"],
        &["format", "filter"],
        &[('a', "all"), ('q', "quiet")],
        false,
    )?;
    let mut pairs = vec![("filters", json!({ "label": [plan::LABEL_PROJECT] }).to_string())];
    if f.has("all") {
        pairs.push(("all", "1".into()));
    }
    let list = client
        .get_json(&format!("/containers/json{}", query(&pairs)))
        .map_err(api)?;
    let mut projects: BTreeMap<String, (BTreeMap<String, usize>, String)> = BTreeMap::new();
    for c in list.as_array().cloned().unwrap_or_default() {
        let p = label(&c, plan::LABEL_PROJECT);
        if p.is_empty() {
            continue;
        }
        let entry = projects.entry(p).or_default();
        *entry
            .0
            .entry(c["State"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
        entry.1 = label(&c, plan::LABEL_FILES);
    }
    if f.has("quiet") {
        projects.keys().for_each(|p| println!("{p}"));
        return Ok(0);
    }
    println!("{:<16}{:<16}CONFIG FILES", "NAME", "STATUS");
    for (p, (states, files)) in projects {
        let status: Vec<String> = states.iter().map(|(s, n)| format!("{s}({n})")).collect();
        println!("{p:<16}{:<16}{files}", status.join(", "));
    }
    Ok(0)
}

/// Runs a plain `shoal` verb (exec, start -a, top) through the regular CLI path.
fn dispatch(client: &Client, host: Option<&str>, words: Vec<String>) -> Result<i32, String> {
    let _ = host;
    let env = |k: &str| std::env::var(k).ok();
    let inv = crate::cli::args::parse(&words, &env).map_err(|e| e.message)?;
    crate::cli::commands::execute(client, inv.action).map_err(|e| e.message)
}

fn service_container(client: &Client, project: &str, service: &str, index: u32) -> Result<String, String> {
    containers(client, project, false, false)?
        .into_iter()
        .find(|c| {
            label(c, plan::LABEL_SERVICE) == service && label(c, plan::LABEL_NUMBER) == index.to_string()
        })
        .map(|c| cname(&c))
        .ok_or_else(|| format!("service {service:?} is not running"))
}

fn exec(client: &Client, host: Option<&str>, g: &Global, args: &[String]) -> Result<i32, String> {
    let f = parse_flags(
        args,
        &["detach", "no-TTY", "privileged", "interactive", "tty"],
        &["user", "workdir", "env", "index"],
        &[
            ('d', "detach"),
            ('T', "no-TTY"),
            ('u', "user"),
            ('w', "workdir"),
            ('e', "env"),
            ('i', "interactive"),
            ('t', "tty"),
        ],
        true,
    )?;
    let (service, cmd) = f.args.split_first().ok_or("exec needs a SERVICE and a COMMAND")?;
    if cmd.is_empty() {
        return Err("exec needs a COMMAND".into());
    }
    let name = project_name_only(g)?;
    let index: u32 = f.value("index").and_then(|i| i.parse().ok()).unwrap_or(1);
    let container = service_container(client, &name, service, index)?;
    let mut words = vec!["exec".to_string()];
    if f.has("detach") {
        words.push("-d".into());
    } else {
        words.push("-i".into());
        if !f.has("no-TTY") && crate::cli::term::stdin_is_tty() {
            words.push("-t".into());
        }
    }
    for (flag, key) in [("-u", "user"), ("-w", "workdir")] {
        if let Some(v) = f.value(key) {
            words.extend([flag.to_string(), v.to_string()]);
        }
    }
    for e in f.all("env") {
        words.extend(["-e".to_string(), e]);
    }
    words.push(container);
    words.extend(cmd.iter().cloned());
    dispatch(client, host, words)
}

fn top(client: &Client, host: Option<&str>, g: &Global, args: &[String]) -> Result<i32, String> {
    let name = project_name_only(g)?;
    for c in containers(client, &name, false, false)? {
        if !args.is_empty() && !args.contains(&label(&c, plan::LABEL_SERVICE)) {
            continue;
        }
        println!("{}", cname(&c));
        dispatch(client, host, vec!["top".into(), cname(&c)])?;
        println!();
    }
    Ok(0)
}

fn pull(client: &Client, g: &Global, args: &[String]) -> Result<i32, String> {
    let f = parse_flags(
        args,
        &["quiet", "ignore-pull-failures", "include-deps"],
        &[],
        &[('q', "quiet")],
        false,
    )?;
    let project = load_project(g, &f.args)?;
    for s in project.services.values() {
        if !f.args.is_empty() && !f.args.contains(&s.name) {
            continue;
        }
        let Some(image) = &s.image else { continue };
        eprintln!(" {}  Pulling", s.name);
        let r = client.post(
            &format!("/images/create{}", query(&[("fromImage", image.clone())])),
            None,
        );
        match r {
            Ok(_) => eprintln!(" {}  Pulled", s.name),
            Err(e) if f.has("ignore-pull-failures") => eprintln!(" {}  {e}", s.name),
            Err(e) => return Err(format!("service {}: pull {image}: {e}", s.name)),
        }
    }
    Ok(0)
}

fn run_oneoff(client: &Client, host: Option<&str>, g: &Global, args: &[String]) -> Result<i32, String> {
    let f = parse_flags(
        args,
        &[
            "rm",
            "detach",
            "no-deps",
            "no-TTY",
            "interactive",
            "tty",
            "service-ports",
        ],
        &["name", "entrypoint", "user", "workdir", "env"],
        &[
            ('d', "detach"),
            ('T', "no-TTY"),
            ('u', "user"),
            ('w', "workdir"),
            ('e', "env"),
            ('i', "interactive"),
            ('t', "tty"),
        ],
        true,
    )?;
    let (service, cmd) = f.args.split_first().ok_or("run needs a SERVICE")?;
    let project = load_project(g, std::slice::from_ref(service))?;
    let services = targets(&project, std::slice::from_ref(service), f.has("no-deps"));
    ensure_networks(client, &project, &services)?;
    ensure_volumes(client, &project)?;
    // Dependencies come up as with `up`; the service itself runs once, as a one-off.
    if !f.has("no-deps") {
        let deps: Vec<String> = services.iter().filter(|s| *s != service).cloned().collect();
        if !deps.is_empty() {
            let mut words = vec!["-d".to_string()];
            words.extend(deps);
            up(client, g, &words)?;
        }
    }
    let mut svc = project.services[service].clone();
    if !cmd.is_empty() {
        svc.command = Some(cmd.to_vec());
    }
    if let Some(e) = f.value("entrypoint") {
        svc.entrypoint = Some(crate::compose::normalize::shell_split(e)?);
    }
    if let Some(u) = f.value("user") {
        svc.user = Some(u.to_string());
    }
    if let Some(w) = f.value("workdir") {
        svc.working_dir = Some(w.to_string());
    }
    for e in f.all("env") {
        let (k, v) = e
            .split_once('=')
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .unwrap_or((e.clone(), std::env::var(&e).unwrap_or_default()));
        svc.environment.insert(k, Some(v));
    }
    if !f.has("service-ports") {
        svc.ports.clear();
    }
    let interactive = !f.has("detach") && !f.has("no-TTY") && crate::cli::term::stdin_is_tty();
    svc.tty = interactive;
    svc.stdin_open = !f.has("detach");
    let hash = plan::config_hash(&svc);
    let mut body = plan::create_body(&project, &svc, 1, true, &hash);
    body["AttachStdin"] = json!(!f.has("detach"));
    body["AttachStdout"] = json!(true);
    body["AttachStderr"] = json!(true);
    body["StdinOnce"] = json!(!f.has("detach"));
    let name = f.value("name").map(str::to_string).unwrap_or_else(|| {
        format!(
            "{}-{}-run-{:012x}",
            project.name,
            service,
            fastrand::u64(..) & 0xffff_ffff_ffff
        )
    });
    let created = client
        .post(
            &format!("/containers/create{}", query(&[("name", name.clone())])),
            Some(&body),
        )
        .map_err(api)?
        .json()
        .map_err(api)?;
    let id = created["Id"].as_str().unwrap_or(&name).to_string();
    let svc_ref = &project.services[service];
    for (net, aliases, _) in plan::attachments(&project, svc_ref).into_iter().skip(1) {
        client
            .post(
                &format!("/networks/{}/connect", query_escape(&net)),
                Some(&json!({ "Container": id, "EndpointConfig": { "Aliases": aliases } })),
            )
            .map_err(api)?;
    }
    if f.has("detach") {
        client
            .post(&format!("/containers/{id}/start"), None)
            .map_err(api)?;
        println!("{name}");
        return Ok(0);
    }
    let code = dispatch(
        client,
        host,
        vec!["start".into(), "-a".into(), "-i".into(), id.clone()],
    )?;
    if f.has("rm") {
        let _ = client.delete(&format!("/containers/{id}?force=1&v=1"));
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn global_flags_then_verb() {
        let (g, rest) = parse_global(&w(
            "-f a.yml --file=b.yml -p proj --profile x --env-file e up -d web",
        ))
        .unwrap();
        assert_eq!(g.files, ["a.yml", "b.yml"]);
        assert_eq!(g.project_name.as_deref(), Some("proj"));
        assert_eq!(g.profiles, ["x"]);
        assert_eq!(g.env_files, ["e"]);
        assert_eq!(rest, w("up -d web"));
        assert!(parse_global(&w("--bogus up")).is_err());
    }

    #[test]
    fn verb_flags() {
        let f = parse_flags(
            &w("-d --scale web=3 --scale db=1 web"),
            &["detach"],
            &["scale"],
            &[('d', "detach")],
            false,
        )
        .unwrap();
        assert!(f.has("detach"));
        assert_eq!(f.all("scale"), ["web=3", "db=1"]);
        assert_eq!(f.args, ["web"]);
        let f = parse_flags(&w("-T web ls -l"), &["no-TTY"], &[], &[('T', "no-TTY")], true).unwrap();
        assert_eq!(f.args, w("web ls -l"));
    }

    #[test]
    fn discovery_searches_upwards_in_preference_order() {
        let root = std::env::temp_dir().join(format!("shoal-compose-find-{}", std::process::id()));
        let deep = root.join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(root.join("docker-compose.yml"), "services: {}\n").unwrap();
        std::fs::write(root.join("compose.yaml"), "services: {}\n").unwrap();
        let none = |_: &str| None;
        let found = find_files(&Global::default(), &deep, &none).unwrap();
        assert_eq!(found, [root.join("compose.yaml")]);
        let env = |k: &str| (k == "COMPOSE_FILE").then(|| "x.yml:y.yml".to_string());
        assert_eq!(
            find_files(&Global::default(), &deep, &env).unwrap(),
            [deep.join("x.yml"), deep.join("y.yml")]
        );
        std::fs::remove_dir_all(&root).unwrap();
        assert!(find_files(&Global::default(), Path::new("/proc/self"), &none).is_err());
    }
}
