//! The verbs: each validated [`Action`] becomes requests to the daemon's API and output shaped
//! like docker's.
//!
//! Guarantees: output goes to stdout, diagnostics to stderr; exit codes follow docker: the
//! container's own code for attached `run`/`start -a`/`exec`, 125 for a `run`/`create`
//! failure (126/127 when the start error says the program cannot be invoked / was not
//! found), 1 for other failures; a closed stdout (e.g. `| head`) is not an error.

use super::args::{Action, CreateSpec, ExecSpec, ImagesSpec, LogsSpec, PsSpec, RunSpec, PROG};
use super::format::{self, reindent_json};
use super::session::{self, Ended};
use super::tables::{self, split_repo_tag};
use super::template::Template;
use super::term::{self, RawMode, SignalEvent};
use super::values;
use crate::api::client::{query, query_escape, Body, Client, ClientError, Hijacked};
use serde_json::{json, Value};
use std::io::{self, BufRead, Write};

/// A failed verb: what to print on stderr and the exit code.
#[derive(Debug)]
pub struct CmdError {
    pub message: String,
    pub code: i32,
}

impl CmdError {
    fn new(message: impl Into<String>, code: i32) -> Self {
        CmdError {
            message: message.into(),
            code,
        }
    }
}

impl From<ClientError> for CmdError {
    fn from(e: ClientError) -> Self {
        CmdError::new(e.to_string(), 1)
    }
}

impl From<io::Error> for CmdError {
    fn from(e: io::Error) -> Self {
        CmdError::new(e.to_string(), 1)
    }
}

type Res = Result<i32, CmdError>;

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A path segment: names and references keep `/`, `:` and `@`, everything odd is escaped.
fn seg(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        if ch.is_ascii_alphanumeric() || "-_.~/:@".contains(ch) {
            out.push(ch);
        } else {
            out.push_str(&query_escape(&ch.to_string()));
        }
    }
    out
}

fn out_write(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

fn println_out(line: &str) -> io::Result<()> {
    out_write(&format!("{line}\n"))
}

/// Run one action against the daemon.
pub fn execute(client: &Client, action: Action) -> Res {
    match action {
        Action::Help(text) => {
            out_write(&text)?;
            Ok(0)
        }
        Action::ClientVersion => {
            println_out(&format!("{PROG} version {}", env!("CARGO_PKG_VERSION")))?;
            Ok(0)
        }
        Action::Run(r) => run(client, r),
        Action::Create(c) => {
            let id = create(client, &c).map_err(|e| run_error("create", e))?;
            println_out(&id)?;
            Ok(0)
        }
        Action::Start {
            containers,
            attach,
            interactive,
            detach_keys,
        } => {
            if attach || interactive {
                start_attached(client, containers, interactive, detach_keys)
            } else {
                each(&containers, "start", |c| {
                    client
                        .post(&format!("/containers/{}/start", seg(c)), None)
                        .map(|_| ())
                })
            }
        }
        Action::Stop {
            containers,
            timeout,
            signal,
        } => each(&containers, "", |c| {
            let q = stop_query(timeout, &signal);
            client
                .post(&format!("/containers/{}/stop{q}", seg(c)), None)
                .map(|_| ())
        }),
        Action::Restart {
            containers,
            timeout,
            signal,
        } => each(&containers, "", |c| {
            let q = stop_query(timeout, &signal);
            client
                .post(&format!("/containers/{}/restart{q}", seg(c)), None)
                .map(|_| ())
        }),
        Action::Kill { containers, signal } => each(&containers, "", |c| {
            let q = query(&signal.iter().map(|s| ("signal", s.clone())).collect::<Vec<_>>());
            client
                .post(&format!("/containers/{}/kill{q}", seg(c)), None)
                .map(|_| ())
        }),
        Action::Rm {
            containers,
            force,
            volumes,
        } => each(&containers, "", |c| {
            let mut q = Vec::new();
            if force {
                q.push(("force", "1".to_string()));
            }
            if volumes {
                q.push(("v", "1".to_string()));
            }
            client
                .delete(&format!("/containers/{}{}", seg(c), query(&q)))
                .map(|_| ())
        }),
        Action::Ps(p) => ps(client, p),
        Action::Logs(l) => logs(client, l),
        Action::Exec(e) => exec(client, e),
        Action::Attach {
            container,
            detach_keys,
            no_stdin,
        } => attach(client, &container, detach_keys, no_stdin),
        Action::Inspect {
            names,
            format,
            kind,
            size,
        } => inspect(client, names, format, kind, size),
        Action::Top { container, ps_args } => top(client, &container, &ps_args),
        Action::Stats {
            containers,
            all,
            no_stream,
            format,
            no_trunc,
        } => stats(client, containers, all, no_stream, format, no_trunc),
        Action::Wait { containers } => {
            let mut failed = false;
            for c in &containers {
                match client
                    .post(&format!("/containers/{}/wait", seg(c)), None)
                    .and_then(|r| r.json())
                {
                    Ok(v) => println_out(&v["StatusCode"].as_i64().unwrap_or(-1).to_string())?,
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        Action::Rename { container, new_name } => {
            let q = query(&[("name", new_name)]);
            client.post(&format!("/containers/{}/rename{q}", seg(&container)), None)?;
            Ok(0)
        }
        Action::Prune { force, filters } => prune(client, force, filters),
        Action::Version { format } => version(client, format),
        Action::Info { format } => info(client, format),
        Action::Images(i) => images(client, i),
        Action::Rmi {
            images,
            force,
            no_prune,
        } => rmi(client, images, force, no_prune),
        Action::Tag { source, target } => {
            let (repo, tag) = split_repo_tag(&target);
            let tag = if tag.is_empty() { "latest".to_string() } else { tag };
            let q = query(&[("repo", repo), ("tag", tag)]);
            client.post(&format!("/images/{}/tag{q}", seg(&source)), None)?;
            Ok(0)
        }
        Action::Build(b) => super::build::build(client, &b),
        Action::Commit {
            container,
            reference,
            message,
            author,
            changes,
        } => super::build::commit(
            client,
            &container,
            reference.as_deref(),
            message.as_deref(),
            author.as_deref(),
            &changes,
        ),
        Action::Export { container, output } => super::build::export(client, &container, output.as_deref()),
        Action::Save { images, output } => super::build::save(client, &images, output.as_deref()),
        Action::Load { input, quiet } => load(client, input, quiet),
        Action::Import {
            source,
            reference,
            changes,
            message,
        } => import(client, source, reference, changes, message),
    }
}

fn stop_query(timeout: Option<i64>, signal: &Option<String>) -> String {
    let mut q = Vec::new();
    if let Some(t) = timeout {
        q.push(("t", t.to_string()));
    }
    if let Some(s) = signal {
        q.push(("signal", s.clone()));
    }
    query(&q)
}

/// Apply `f` to each container, echo each name on success (as docker does), report errors,
/// and exit 1 if any failed. `summary` names the verb for docker's closing line.
fn each<F>(names: &[String], summary: &str, mut f: F) -> Res
where
    F: FnMut(&str) -> Result<(), ClientError>,
{
    let mut failed = Vec::new();
    for n in names {
        match f(n) {
            Ok(()) => println_out(n)?,
            Err(e @ ClientError::Connect { .. }) => return Err(e.into()),
            Err(e) => {
                eprintln!("{e}");
                failed.push(n.clone());
            }
        }
    }
    if failed.is_empty() {
        return Ok(0);
    }
    if !summary.is_empty() {
        return Err(CmdError::new(
            format!("Error: failed to {summary} containers: {}", failed.join(", ")),
            1,
        ));
    }
    Ok(1)
}

/// docker's run/create error: `shoal: <error>` + help hint, exit 125 (or 126/127).
fn run_error(verb: &str, e: ClientError) -> CmdError {
    let text = e.to_string();
    let code = start_error_code(&text);
    CmdError::new(
        format!("{PROG}: {text}\n\nRun '{PROG} {verb} --help' for more information"),
        code,
    )
}

/// docker's mapping of a start failure to an exit code.
pub fn start_error_code(message: &str) -> i32 {
    if message.contains("executable file not found")
        || message.contains("no such file or directory")
        || message.contains("system cannot find the file specified")
    {
        127
    } else if message.contains("permission denied") || message.contains("is a directory") {
        126
    } else {
        125
    }
}

/// POST /containers/create; prints the daemon's warnings; returns the new ID. A missing image
/// is pulled first (docker's `--pull missing`), when the daemon can pull.
fn create(client: &Client, c: &CreateSpec) -> Result<String, ClientError> {
    let platform = c.platform.as_deref();
    if c.pull == "always" {
        super::registry::pull(client, &c.image, platform, c.quiet, true)?;
    }
    let mut q: Vec<(&str, String)> = c.name.iter().map(|n| ("name", n.clone())).collect();
    if let Some(p) = platform {
        q.push(("platform", p.to_string()));
    }
    let path = format!("/containers/create{}", query(&q));
    let v = match client.post(&path, Some(&c.body)) {
        Err(missing @ ClientError::Api { status: 404, .. })
            if c.pull == "missing"
                && (missing.to_string().contains("No such image")
                    || missing
                        .to_string()
                        .contains("does not match the specified platform")) =>
        {
            if !c.quiet {
                eprintln!("Unable to find image '{}' locally", full_reference(&c.image));
            }
            // POST /images/create?fromImage= with the stored login; progress on stderr.
            match super::registry::pull(client, &c.image, platform, c.quiet, true) {
                Ok(()) => client.post(&path, Some(&c.body))?,
                // A daemon without registry support: the original error says it best.
                Err(ClientError::Api { status: 501, .. }) => return Err(missing),
                Err(e) => return Err(e),
            }
        }
        other => other?,
    }
    .json()?;
    if let Some(ws) = v.get("Warnings").and_then(Value::as_array) {
        for w in ws.iter().filter_map(Value::as_str) {
            eprintln!("WARNING: {w}");
        }
    }
    v.get("Id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ClientError::Protocol("create answered without an Id".into()))
}

/// `busybox` → `busybox:latest`; references with a tag or digest stay as they are.
fn full_reference(image: &str) -> String {
    let (_, tag) = split_repo_tag(image);
    if tag.is_empty() && !image.contains('@') {
        format!("{image}:latest")
    } else {
        image.to_string()
    }
}

fn detach_keys(spec: Option<&str>) -> Result<Vec<u8>, CmdError> {
    session::parse_detach_keys(spec.unwrap_or(session::DEFAULT_DETACH_KEYS)).map_err(|e| CmdError::new(e, 1))
}

/// What a session resizes when the window changes.
#[derive(Clone)]
enum ResizeTarget {
    Container(String),
    Exec(String),
}

fn resize(client: &Client, target: &ResizeTarget) {
    let Some((h, w)) = term::window_size() else { return };
    let q = query(&[("h", h.to_string()), ("w", w.to_string())]);
    let path = match target {
        ResizeTarget::Container(id) => format!("/containers/{id}/resize{q}"),
        ResizeTarget::Exec(id) => format!("/exec/{id}/resize{q}"),
    };
    // A failed resize only leaves the old size; the session goes on.
    let _ = client.post(&path, None);
}

/// Start the signal thread for a session: SIGWINCH resizes a TTY; without a TTY, signals
/// are forwarded to the container (docker's `--sig-proxy`); otherwise a terminating signal
/// restores the terminal and ends the client with 128+N.
fn watch_signals(client: &Client, target: ResizeTarget, tty: bool, container: Option<String>) {
    let client = client.clone();
    let proxy_to = if tty { None } else { container };
    let started = term::spawn_signal_thread(move |ev| match ev {
        SignalEvent::Resize if tty => resize(&client, &target),
        SignalEvent::Resize => {}
        SignalEvent::Signal(name, number) => match &proxy_to {
            Some(c) => {
                let _ = client.post(&format!("/containers/{c}/kill?signal={name}"), None);
            }
            None => {
                term::restore_terminal();
                std::process::exit(128 + number);
            }
        },
    });
    if let Err(e) = started {
        eprintln!("{PROG}: cannot watch signals: {e}");
    }
}

/// Exit code from a `/wait` answer (printing the daemon's error, if any).
fn wait_status(v: &Value) -> i32 {
    if let Some(m) = v
        .pointer("/Error/Message")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
    {
        eprintln!("{PROG}: {m}");
    }
    v.get("StatusCode").and_then(Value::as_i64).unwrap_or(125) as i32
}

/// How long to wait for the daemon to confirm a `/wait` (by sending its response head, as
/// docker does) before starting the container anyway.
const WAIT_REGISTER: std::time::Duration = std::time::Duration::from_millis(100);

fn run(client: &Client, r: RunSpec) -> Res {
    if r.tty && r.interactive && !term::stdin_is_tty() {
        return Err(CmdError::new("the input device is not a TTY", 1));
    }
    let keys = detach_keys(r.detach_keys.as_deref())?;
    let mut r = r;
    if r.tty {
        if let Some((h, w)) = term::window_size() {
            r.create.body["HostConfig"]["ConsoleSize"] = json!([h, w]);
        }
    }
    let id = create(client, &r.create).map_err(|e| run_error("run", e))?;
    if r.detach {
        if let Err(e) = client.post(&format!("/containers/{id}/start"), None) {
            if r.auto_remove {
                let _ = client.delete(&format!("/containers/{id}?force=1"));
            }
            return Err(run_error("run", e));
        }
        println_out(&id)?;
        return Ok(0);
    }
    let b = &r.create.body;
    let want = |k: &str| if b[k].as_bool().unwrap_or(false) { "1" } else { "0" };
    // Register the wait before start so a fast exit cannot be missed.
    let condition = if r.auto_remove { "removed" } else { "next-exit" };
    let mut waiter = client
        .send(
            "POST",
            &format!("/containers/{id}/wait?condition={condition}"),
            None,
        )
        .map_err(|e| run_error("run", e))?;
    waiter
        .wait_registered(WAIT_REGISTER)
        .map_err(|e| run_error("run", e))?;
    let attach_path = format!(
        "/containers/{id}/attach?stream=1&stdin={}&stdout={}&stderr={}",
        want("AttachStdin"),
        want("AttachStdout"),
        want("AttachStderr")
    );
    let hijacked = client
        .hijack(&attach_path, None)
        .map_err(|e| run_error("run", e))?;
    watch_signals(
        client,
        ResizeTarget::Container(id.clone()),
        r.tty,
        Some(id.clone()),
    );
    let raw = if r.tty && r.interactive {
        RawMode::enter()?
    } else {
        None
    };
    if let Err(e) = client.post(&format!("/containers/{id}/start"), None) {
        drop(raw);
        if r.auto_remove {
            // A container that never ran is removed too; a daemon that already did answers
            // 404, which changes nothing.
            let _ = client.delete(&format!("/containers/{id}?force=1"));
        }
        return Err(run_error("run", e));
    }
    if r.tty {
        resize(client, &ResizeTarget::Container(id.clone()));
    }
    let ended = session::run(
        hijacked,
        r.tty,
        r.interactive && b["AttachStdin"].as_bool().unwrap_or(false),
        keys,
    );
    drop(raw);
    match ended? {
        (Ended::Detached, _) => Ok(0),
        (Ended::Eof, _) => {
            let v = waiter.finish().map_err(|e| run_error("run", e))?.json()?;
            Ok(wait_status(&v))
        }
    }
}

fn inspect_container(client: &Client, name: &str) -> Result<Value, ClientError> {
    client.get_json(&format!("/containers/{}/json", seg(name)))
}

fn start_attached(client: &Client, containers: Vec<String>, interactive: bool, keys: Option<String>) -> Res {
    if containers.len() > 1 {
        return Err(CmdError::new(
            "you cannot start and attach multiple containers at once",
            1,
        ));
    }
    let name = &containers[0];
    let info = inspect_container(client, name)?;
    let id = info["Id"].as_str().unwrap_or(name).to_string();
    let tty = info
        .pointer("/Config/Tty")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let stdin = interactive
        && info
            .pointer("/Config/OpenStdin")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    if tty && stdin && !term::stdin_is_tty() {
        return Err(CmdError::new("the input device is not a TTY", 1));
    }
    let keys = detach_keys(keys.as_deref())?;
    let mut waiter = client.send(
        "POST",
        &format!("/containers/{id}/wait?condition=next-exit"),
        None,
    )?;
    waiter.wait_registered(WAIT_REGISTER)?;
    let hijacked = client.hijack(
        &format!(
            "/containers/{id}/attach?stream=1&stdin={}&stdout=1&stderr=1",
            if stdin { 1 } else { 0 }
        ),
        None,
    )?;
    watch_signals(client, ResizeTarget::Container(id.clone()), tty, Some(id.clone()));
    let raw = if tty && stdin { RawMode::enter()? } else { None };
    if let Err(e) = client.post(&format!("/containers/{id}/start"), None) {
        drop(raw);
        return Err(CmdError::new(
            format!("{e}\nError: failed to start containers: {name}"),
            1,
        ));
    }
    if tty {
        resize(client, &ResizeTarget::Container(id.clone()));
    }
    let ended = session::run(hijacked, tty, stdin, keys);
    drop(raw);
    match ended? {
        (Ended::Detached, _) => Ok(0),
        (Ended::Eof, _) => Ok(wait_status(&waiter.finish()?.json()?)),
    }
}

fn attach(client: &Client, name: &str, keys: Option<String>, no_stdin: bool) -> Res {
    let info = inspect_container(client, name)?;
    let id = info["Id"].as_str().unwrap_or(name).to_string();
    if !info
        .pointer("/State/Running")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Err(CmdError::new(
            "You cannot attach to a stopped container, start it first",
            1,
        ));
    }
    if info
        .pointer("/State/Paused")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Err(CmdError::new(
            "You cannot attach to a paused container, unpause it first",
            1,
        ));
    }
    let tty = info
        .pointer("/Config/Tty")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let stdin = !no_stdin
        && info
            .pointer("/Config/OpenStdin")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    if tty && stdin && !term::stdin_is_tty() {
        return Err(CmdError::new("the input device is not a TTY", 1));
    }
    let key_bytes = detach_keys(keys.as_deref())?;
    let mut path = format!(
        "/containers/{id}/attach?stream=1&stdin={}&stdout=1&stderr=1",
        if stdin { 1 } else { 0 }
    );
    if let Some(k) = &keys {
        path.push_str(&format!("&detachKeys={}", query_escape(k)));
    }
    let hijacked = client.hijack(&path, None)?;
    watch_signals(client, ResizeTarget::Container(id.clone()), tty, Some(id.clone()));
    let raw = if tty && stdin { RawMode::enter()? } else { None };
    if tty {
        resize(client, &ResizeTarget::Container(id.clone()));
    }
    let ended = session::run(hijacked, tty, stdin, key_bytes);
    drop(raw);
    match ended? {
        (Ended::Detached, _) => {
            eprintln!("read escape sequence");
            Ok(0)
        }
        (Ended::Eof, _) => {
            let v = client.post(&format!("/containers/{id}/wait"), None)?.json()?;
            Ok(v["StatusCode"].as_i64().unwrap_or(0) as i32)
        }
    }
}

fn exec(client: &Client, e: ExecSpec) -> Res {
    if e.tty && e.interactive && !term::stdin_is_tty() {
        return Err(CmdError::new("the input device is not a TTY", 1));
    }
    let keys = detach_keys(e.detach_keys.as_deref())?;
    let cid = seg(&e.container);
    let created = client
        .post(&format!("/containers/{cid}/exec"), Some(&e.body))?
        .json()?;
    let exec_id = created["Id"]
        .as_str()
        .ok_or_else(|| CmdError::new("exec create answered without an Id", 1))?
        .to_string();
    if e.detach {
        client.post(
            &format!("/exec/{exec_id}/start"),
            Some(&json!({"Detach": true, "Tty": e.tty})),
        )?;
        return Ok(0);
    }
    let mut start = json!({"Detach": false, "Tty": e.tty});
    if e.tty {
        if let Some((h, w)) = term::window_size() {
            start["ConsoleSize"] = json!([h, w]);
        }
    }
    let hijacked: Hijacked = client.hijack(&format!("/exec/{exec_id}/start"), Some(&start))?;
    watch_signals(client, ResizeTarget::Exec(exec_id.clone()), e.tty, None);
    let raw = if e.tty && e.interactive {
        RawMode::enter()?
    } else {
        None
    };
    if e.tty {
        resize(client, &ResizeTarget::Exec(exec_id.clone()));
    }
    let ended = session::run(hijacked, e.tty, e.interactive, keys);
    drop(raw);
    let (ended, system) = ended?;
    if ended == Ended::Detached {
        return Ok(0);
    }
    let v = client.get_json(&format!("/exec/{exec_id}/json"))?;
    if let Some(msg) = system {
        eprintln!("{}", msg.trim_end());
    }
    Ok(v["ExitCode"].as_i64().unwrap_or(126) as i32)
}

fn ps(client: &Client, p: PsSpec) -> Res {
    let mut q = Vec::new();
    if p.all {
        q.push(("all", "1".to_string()));
    }
    if p.last > 0 {
        q.push(("limit", p.last.to_string()));
    }
    if p.size {
        q.push(("size", "1".to_string()));
    }
    if !p.filters.is_empty() {
        q.push(("filters", values::filters_json(&p.filters)));
    }
    let list = client.get_json(&format!("/containers/json{}", query(&q)))?;
    let list = list.as_array().cloned().unwrap_or_default();
    let trunc = !p.no_trunc;
    if p.quiet {
        let mut text = String::new();
        for c in &list {
            let id = c["Id"].as_str().unwrap_or("");
            text.push_str(&if trunc {
                format::short_id(id)
            } else {
                id.to_string()
            });
            text.push('\n');
        }
        out_write(&text)?;
        return Ok(0);
    }
    let t = now();
    let rows: Vec<Value> = list.iter().map(|c| tables::ps_row(c, t, trunc)).collect();
    let default = if p.size {
        format!("{}\t{{{{.Size}}}}", tables::PS_DEFAULT)
    } else {
        tables::PS_DEFAULT.to_string()
    };
    let text = tables::render(p.format.as_deref(), &default, tables::PS_HEADERS, &rows)
        .map_err(|e| CmdError::new(e.0, 1))?;
    out_write(&text)?;
    Ok(0)
}

fn logs(client: &Client, l: LogsSpec) -> Res {
    let info = inspect_container(client, &l.container)?;
    let id = info["Id"].as_str().unwrap_or(&l.container).to_string();
    let tty = info
        .pointer("/Config/Tty")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut q = vec![("stdout", "1".to_string()), ("stderr", "1".to_string())];
    if l.follow {
        q.push(("follow", "1".into()));
    }
    if l.timestamps {
        q.push(("timestamps", "1".into()));
    }
    if l.details {
        q.push(("details", "1".into()));
    }
    if let Some(t) = &l.tail {
        q.push(("tail", t.clone()));
    }
    let t = now();
    for (key, v) in [("since", &l.since), ("until", &l.until)] {
        if let Some(v) = v {
            let ts = values::timestamp_param(v, t)
                .map_err(|e| CmdError::new(format!("invalid value for \"{key}\": {e}"), 1))?;
            q.push((key, ts));
        }
    }
    let resp = client.stream("GET", &format!("/containers/{id}/logs{}", query(&q)), Body::Empty)?;
    let result = if tty {
        session::copy_raw(resp.body, &mut io::stdout().lock()).map(|_| None)
    } else {
        crate::api::client::copy_demuxed(resp.body, &mut io::stdout().lock(), &mut io::stderr().lock())
    };
    result?;
    Ok(0)
}

fn print_template_or_json(values: &[(Value, String)], format: Option<&str>) -> Result<(), CmdError> {
    match format {
        Some(f) => {
            let tmpl = Template::parse(f).map_err(|e| CmdError::new(e.0, 1))?;
            let mut text = String::new();
            for (v, _) in values {
                text.push_str(&tmpl.render(v).map_err(|e| CmdError::new(e.0, 1))?);
                text.push('\n');
            }
            out_write(&text)?;
        }
        None => {
            if values.is_empty() {
                out_write("[]\n")?;
                return Ok(());
            }
            let parts: Vec<String> = values
                .iter()
                .map(|(v, raw)| {
                    reindent_json(raw, "    ", 1)
                        .unwrap_or_else(|| serde_json::to_string_pretty(v).unwrap_or_default())
                })
                .collect();
            out_write(&format!("[\n    {}\n]\n", parts.join(",\n    ")))?;
        }
    }
    Ok(())
}

fn inspect(
    client: &Client,
    names: Vec<String>,
    format: Option<String>,
    kind: Option<String>,
    size: bool,
) -> Res {
    let mut found: Vec<(Value, String)> = Vec::new();
    let mut errors = Vec::new();
    for n in &names {
        let attempt = |path: String| -> Result<Option<(Value, String)>, ClientError> {
            match client.get(&path) {
                Ok(r) => {
                    let v = r.json()?;
                    Ok(Some((v, String::from_utf8_lossy(&r.body).into_owned())))
                }
                Err(ClientError::Api { status: 404, .. }) => Ok(None),
                Err(e) => Err(e),
            }
        };
        let size_q = if size { "?size=1" } else { "" };
        let container = format!("/containers/{}/json{size_q}", seg(n));
        let image = format!("/images/{}/json", seg(n));
        let (hit, missing) = match kind.as_deref() {
            Some("container") => (attempt(container)?, format!("Error: No such container: {n}")),
            Some("image") => (attempt(image)?, format!("Error: No such image: {n}")),
            _ => {
                let hit = match attempt(container)? {
                    Some(h) => Some(h),
                    None => attempt(image)?,
                };
                (hit, format!("Error: No such object: {n}"))
            }
        };
        match hit {
            Some(h) => found.push(h),
            None => errors.push(missing),
        }
    }
    print_template_or_json(&found, format.as_deref())?;
    if errors.is_empty() {
        Ok(0)
    } else {
        Err(CmdError::new(errors.join("\n"), 1))
    }
}

fn top(client: &Client, container: &str, ps_args: &[String]) -> Res {
    let q = if ps_args.is_empty() {
        String::new()
    } else {
        query(&[("ps_args", ps_args.join(" "))])
    };
    let v = client.get_json(&format!("/containers/{}/top{q}", seg(container)))?;
    let mut text = String::new();
    let titles: Vec<String> = v["Titles"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    text.push_str(&titles.join("\t"));
    text.push('\n');
    for p in v["Processes"].as_array().cloned().unwrap_or_default() {
        let cells: Vec<String> = p
            .as_array()
            .map(|a| a.iter().map(|c| c.as_str().unwrap_or("").to_string()).collect())
            .unwrap_or_default();
        text.push_str(&cells.join("\t"));
        text.push('\n');
    }
    out_write(&format::tabwrite_min(&text, 20))?;
    Ok(0)
}

fn stats(
    client: &Client,
    names: Vec<String>,
    all: bool,
    no_stream: bool,
    format: Option<String>,
    no_trunc: bool,
) -> Res {
    let targets: Vec<(String, String)> = if names.is_empty() {
        let list = client.get_json(&format!("/containers/json{}", if all { "?all=1" } else { "" }))?;
        list.as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|c| (c["Id"].as_str().unwrap_or("").to_string(), String::new()))
            .collect()
    } else {
        names.iter().map(|n| (n.clone(), n.clone())).collect()
    };
    loop {
        let mut rows = Vec::new();
        let mut failed = false;
        for (id, _) in &targets {
            match client.get_json(&format!("/containers/{}/stats?stream=0", seg(id))) {
                Ok(s) => rows.push(tables::stats_row(&s, id, !no_trunc)),
                Err(e @ ClientError::Api { .. }) if !names.is_empty() => {
                    eprintln!("{e}");
                    failed = true;
                }
                Err(ClientError::Api { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let text = tables::render(
            format.as_deref(),
            tables::STATS_DEFAULT,
            tables::STATS_HEADERS,
            &rows,
        )
        .map_err(|e| CmdError::new(e.0, 1))?;
        if no_stream {
            out_write(&text)?;
            return Ok(if failed { 1 } else { 0 });
        }
        // Clear the screen and redraw, as docker's live view does.
        out_write(&format!("\x1b[2J\x1b[H{text}"))?;
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn confirm(prompt: &str) -> io::Result<bool> {
    out_write(prompt)?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

fn prune(client: &Client, force: bool, filters: Vec<(String, String)>) -> Res {
    if !force
        && !confirm(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ",
        )?
    {
        return Ok(0);
    }
    let q = if filters.is_empty() {
        String::new()
    } else {
        query(&[("filters", values::filters_json(&filters))])
    };
    let v = client.post(&format!("/containers/prune{q}"), None)?.json()?;
    let mut text = String::new();
    let deleted: Vec<&str> = v["ContainersDeleted"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !deleted.is_empty() {
        text.push_str("Deleted Containers:\n");
        for d in deleted {
            text.push_str(d);
            text.push('\n');
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "Total reclaimed space: {}\n",
        format::human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0), 3)
    ));
    out_write(&text)?;
    Ok(0)
}

fn client_version_json() -> Value {
    json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": crate::api::client::API_VERSION,
        "DefaultAPIVersion": crate::api::client::API_VERSION,
        "Os": std::env::consts::OS,
        "Arch": go_arch(),
        "Context": "default",
    })
}

/// Go's GOARCH spelling of this machine.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

fn version(client: &Client, format: Option<String>) -> Res {
    let cv = client_version_json();
    // docker's template context names the server's API version `APIVersion` (Go field name).
    let server = client.get_json("/version").map(|mut s| {
        if let Some(v) = s.get("ApiVersion").cloned() {
            s["APIVersion"] = v;
        }
        s
    });
    if let Some(f) = format {
        let tmpl = Template::parse(&f).map_err(|e| CmdError::new(e.0, 1))?;
        let doc = json!({"Client": cv, "Server": server.as_ref().ok().cloned().unwrap_or(Value::Null)});
        println_out(&tmpl.render(&doc).map_err(|e| CmdError::new(e.0, 1))?)?;
        return server.map(|_| 0).map_err(Into::into);
    }
    let mut text = format!(
        "Client:\n Version:           {}\n API version:       {}\n OS/Arch:           {}/{}\n Context:           default\n",
        cv["Version"].as_str().unwrap_or(""),
        cv["ApiVersion"].as_str().unwrap_or(""),
        std::env::consts::OS,
        go_arch()
    );
    let s = match server {
        Ok(s) => s,
        Err(e) => {
            out_write(&text)?;
            return Err(e.into());
        }
    };
    let g = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let platform = s
        .pointer("/Platform/Name")
        .and_then(Value::as_str)
        .unwrap_or("shoal");
    text.push_str(&format!("\nServer: {platform}\n Engine:\n"));
    text.push_str(&format!("  Version:          {}\n", g("Version")));
    let min = g("MinAPIVersion");
    let min = if min.is_empty() {
        String::new()
    } else {
        format!(" (minimum version {min})")
    };
    text.push_str(&format!("  API version:      {}{min}\n", g("ApiVersion")));
    if !g("GitCommit").is_empty() {
        text.push_str(&format!("  Git commit:       {}\n", g("GitCommit")));
    }
    if !g("BuildTime").is_empty() {
        text.push_str(&format!("  Built:            {}\n", g("BuildTime")));
    }
    text.push_str(&format!("  OS/Arch:          {}/{}\n", g("Os"), g("Arch")));
    if !g("KernelVersion").is_empty() {
        text.push_str(&format!("  Kernel version:   {}\n", g("KernelVersion")));
    }
    text.push_str(&format!(
        "  Experimental:     {}\n",
        s.get("Experimental").and_then(Value::as_bool).unwrap_or(false)
    ));
    out_write(&text)?;
    Ok(0)
}

fn info(client: &Client, format: Option<String>) -> Res {
    let i = client.get_json("/info")?;
    if let Some(f) = format {
        let tmpl = Template::parse(&f).map_err(|e| CmdError::new(e.0, 1))?;
        println_out(&tmpl.render(&i).map_err(|e| CmdError::new(e.0, 1))?)?;
        return Ok(0);
    }
    let n = |k: &str| i.get(k).and_then(Value::as_i64).unwrap_or(0);
    let s = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut t = format!(
        "Client:\n Version:    {}\n Context:    default\n Debug Mode: false\n\nServer:\n",
        env!("CARGO_PKG_VERSION")
    );
    t.push_str(&format!(
        " Containers: {}\n  Running: {}\n  Paused: {}\n  Stopped: {}\n Images: {}\n",
        n("Containers"),
        n("ContainersRunning"),
        n("ContainersPaused"),
        n("ContainersStopped"),
        n("Images")
    ));
    for (label, key) in [
        ("Server Version", "ServerVersion"),
        ("Storage Driver", "Driver"),
        ("Logging Driver", "LoggingDriver"),
        ("Cgroup Driver", "CgroupDriver"),
        ("Cgroup Version", "CgroupVersion"),
        ("Kernel Version", "KernelVersion"),
        ("Operating System", "OperatingSystem"),
        ("OSType", "OSType"),
        ("Architecture", "Architecture"),
    ] {
        if !s(key).is_empty() {
            t.push_str(&format!(" {label}: {}\n", s(key)));
        }
    }
    if n("NCPU") > 0 {
        t.push_str(&format!(" CPUs: {}\n", n("NCPU")));
    }
    if n("MemTotal") > 0 {
        t.push_str(&format!(
            " Total Memory: {}\n",
            format::binary_size(n("MemTotal") as f64)
        ));
    }
    for (label, key) in [
        ("Name", "Name"),
        ("ID", "ID"),
        ("Docker Root Dir", "DockerRootDir"),
    ] {
        if !s(key).is_empty() {
            t.push_str(&format!(" {label}: {}\n", s(key)));
        }
    }
    out_write(&t)?;
    Ok(0)
}

fn images(client: &Client, i: ImagesSpec) -> Res {
    let mut filters = i.filters.clone();
    if let Some(r) = &i.reference {
        filters.push(("reference".into(), r.clone()));
    }
    let mut q = Vec::new();
    if i.all {
        q.push(("all", "1".to_string()));
    }
    if !filters.is_empty() {
        q.push(("filters", values::filters_json(&filters)));
    }
    let list = client.get_json(&format!("/images/json{}", query(&q)))?;
    let list = list.as_array().cloned().unwrap_or_default();
    let t = now();
    let trunc = !i.no_trunc;
    let format_digest = i.format.as_deref().is_some_and(|f| f.contains("{{.Digest}}"));
    let rows: Vec<Value> = list
        .iter()
        .flat_map(|img| tables::image_rows(img, t, trunc, i.digests, format_digest))
        .collect();
    if i.quiet {
        // One ID per row, repeated for each tag, as docker prints them.
        let ids: Vec<&str> = rows.iter().map(|r| r["ID"].as_str().unwrap_or("")).collect();
        let mut text = ids.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        out_write(&text)?;
        return Ok(0);
    }
    let default = if i.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        tables::IMAGES_DEFAULT
    };
    // As docker: `--digests` with a table format that lacks the column appends it.
    let format = match i.format.as_deref().map(str::trim) {
        Some(f) if i.digests && f.starts_with("table") && f != "table" && !f.contains("{{.Digest}}") => {
            Some(format!("{f}\t{{{{.Digest}}}}"))
        }
        other => other.map(str::to_string),
    };
    let text = tables::render(format.as_deref(), default, tables::IMAGES_HEADERS, &rows)
        .map_err(|e| CmdError::new(e.0, 1))?;
    out_write(&text)?;
    Ok(0)
}

fn rmi(client: &Client, images: Vec<String>, force: bool, no_prune: bool) -> Res {
    let mut failed = false;
    for img in &images {
        let mut q = Vec::new();
        if force {
            q.push(("force", "1".to_string()));
        }
        if no_prune {
            q.push(("noprune", "1".to_string()));
        }
        match client
            .delete(&format!("/images/{}{}", seg(img), query(&q)))
            .and_then(|r| r.json())
        {
            Ok(v) => {
                let mut text = String::new();
                for item in v.as_array().cloned().unwrap_or_default() {
                    if let Some(u) = item.get("Untagged").and_then(Value::as_str) {
                        text.push_str(&format!("Untagged: {u}\n"));
                    }
                    if let Some(d) = item.get("Deleted").and_then(Value::as_str) {
                        text.push_str(&format!("Deleted: {d}\n"));
                    }
                }
                out_write(&text)?;
            }
            Err(e @ ClientError::Connect { .. }) => return Err(e.into()),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Print a JSON message stream (load/import progress); an `error` entry fails the verb.
fn print_json_messages(body: &[u8], quiet: bool) -> Res {
    let mut text = String::new();
    for msg in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        let msg =
            msg.map_err(|e| CmdError::new(format!("invalid progress message from the daemon: {e}"), 1))?;
        if let Some(err) = msg.get("error").and_then(Value::as_str) {
            out_write(&text)?;
            return Err(CmdError::new(err.to_string(), 1));
        }
        if quiet {
            continue;
        }
        if let Some(s) = msg.get("stream").and_then(Value::as_str) {
            text.push_str(s);
        } else if let Some(s) = msg.get("status").and_then(Value::as_str) {
            text.push_str(s);
            if !s.ends_with('\n') {
                text.push('\n');
            }
        }
    }
    out_write(&text)?;
    Ok(0)
}

fn load(client: &Client, input: Option<String>, quiet: bool) -> Res {
    let resp = match input.as_deref() {
        Some(path) if path != "-" => {
            let mut f =
                std::fs::File::open(path).map_err(|e| CmdError::new(format!("open {path}: {e}"), 1))?;
            let len = f.metadata().map(|m| m.len()).ok();
            client.request(
                "POST",
                &format!("/images/load?quiet={}", quiet as u8),
                Body::Stream(&mut f, len, "application/x-tar"),
            )?
        }
        _ => {
            if term::stdin_is_tty() {
                return Err(CmdError::new("requested load from stdin, but stdin is empty", 1));
            }
            let mut stdin = io::stdin().lock();
            client.request(
                "POST",
                &format!("/images/load?quiet={}", quiet as u8),
                Body::Stream(&mut stdin, None, "application/x-tar"),
            )?
        }
    };
    print_json_messages(&resp.body, false)
}

fn import(
    client: &Client,
    source: String,
    reference: Option<String>,
    changes: Vec<String>,
    message: Option<String>,
) -> Res {
    let mut q: Vec<(&str, String)> = Vec::new();
    let is_url = source.starts_with("http://") || source.starts_with("https://");
    q.push(("fromSrc", if is_url { source.clone() } else { "-".to_string() }));
    if let Some(r) = &reference {
        let (repo, tag) = split_repo_tag(r);
        q.push(("repo", repo));
        if !tag.is_empty() {
            q.push(("tag", tag));
        }
    }
    if let Some(m) = message {
        q.push(("message", m));
    }
    for c in changes {
        q.push(("changes", c));
    }
    let path = format!("/images/create{}", query(&q));
    let resp = if is_url {
        client.request("POST", &path, Body::Empty)?
    } else if source == "-" {
        let mut stdin = io::stdin().lock();
        client.request("POST", &path, Body::Stream(&mut stdin, None, "application/x-tar"))?
    } else {
        let mut f =
            std::fs::File::open(&source).map_err(|e| CmdError::new(format!("open {source}: {e}"), 1))?;
        let len = f.metadata().map(|m| m.len()).ok();
        client.request("POST", &path, Body::Stream(&mut f, len, "application/x-tar"))?
    };
    print_json_messages(&resp.body, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_error_codes_like_docker() {
        assert_eq!(
            start_error_code("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(start_error_code("exec /bin/x: no such file or directory"), 127);
        assert_eq!(start_error_code("exec /etc: permission denied"), 126);
        assert_eq!(start_error_code("exec /etc: is a directory"), 126);
        assert_eq!(start_error_code("No such image: nope:latest"), 125);
    }

    #[test]
    fn references_get_docker_default_tag() {
        assert_eq!(full_reference("busybox"), "busybox:latest");
        assert_eq!(full_reference("localhost:5000/bb"), "localhost:5000/bb:latest");
        assert_eq!(full_reference("bb:1"), "bb:1");
        assert_eq!(full_reference("bb@sha256:abc"), "bb@sha256:abc");
    }

    #[test]
    fn path_segments_keep_references() {
        assert_eq!(seg("localhost:5000/bb:1"), "localhost:5000/bb:1");
        assert_eq!(seg("a b"), "a%20b");
        assert_eq!(seg("x?y"), "x%3Fy");
    }
}
