//! Streaming endpoints: logs (with follow), attach and exec over hijacked connections, top
//! and stats.
//!
//! Output of a container always comes from its log (the shim writes every byte there first),
//! so an attach made before `start` sees the first line, and `logs -f` and attach share one
//! reader. Input goes to the shim's stdin.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::json;

use super::http::{ApiError, ApiRequest, ApiResult};
use super::types::{ExecConfig, ExecStart};
use crate::daemon::engine::{Engine, Entry};
use crate::runtime;
use crate::runtime::logs::{Follow, LogEntry};
use crate::runtime::Stream;
use crate::timefmt;

/// How often a follower looks for new output (an exit wakes it at once).
const FOLLOW_POLL: Duration = Duration::from_millis(10);

const MUX: &str = "application/vnd.docker.multiplexed-stream";
const RAW: &str = "application/vnd.docker.raw-stream";

/// Which entries `docker logs` shows: `since`/`until` bounds (Unix nanoseconds), then the
/// last `tail` of them.
fn select(
    entries: Vec<LogEntry>,
    since: Option<i128>,
    until: Option<i128>,
    tail: Option<usize>,
) -> Vec<LogEntry> {
    let at = |e: &LogEntry| timefmt::parse(&e.time).unwrap_or(0);
    let mut v: Vec<LogEntry> = entries
        .into_iter()
        .filter(|e| since.is_none_or(|s| at(e) >= s) && until.is_none_or(|u| at(e) <= u))
        .collect();
    if let Some(t) = tail {
        let skip = v.len().saturating_sub(t);
        v.drain(..skip);
    }
    v
}

/// A multiplexed-stream frame: type byte (1 stdout, 2 stderr), three zero bytes, big-endian
/// length, payload.
fn frame(stream: Stream, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.push(match stream {
        Stream::Stdout => 1,
        Stream::Stderr => 2,
    });
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// Write entries as docker clients expect them: raw for tty containers, framed otherwise.
fn write_entries(
    w: &mut dyn Write,
    entries: &[LogEntry],
    tty: bool,
    timestamps: bool,
    want: (bool, bool),
) -> io::Result<()> {
    let mut buf = Vec::new();
    for e in entries {
        let wanted = match e.stream {
            Stream::Stdout => want.0,
            Stream::Stderr => want.1,
        };
        if !wanted {
            continue;
        }
        let mut data = Vec::with_capacity(e.line.len() + 32);
        if timestamps {
            data.extend_from_slice(e.time.as_bytes());
            data.push(b' ');
        }
        data.extend_from_slice(&e.line);
        if tty {
            buf.extend_from_slice(&data);
        } else {
            buf.extend_from_slice(&frame(e.stream, &data));
        }
    }
    if buf.is_empty() {
        return Ok(());
    }
    w.write_all(&buf)
}

/// Copy new log output to `w` until the container's next exit after `exits0` was seen (or
/// its removal), then drain what the shim wrote before exiting.
fn follow_until_exit(
    entry: &Entry,
    exits0: u64,
    mut follower: Follow,
    w: &mut dyn Write,
    tty: bool,
    ts: bool,
    want: (bool, bool),
) {
    loop {
        let ended = {
            let s = entry.lock();
            s.removed || s.exits > exits0
        };
        match follower.poll_new() {
            Ok(batch) => {
                if write_entries(w, &batch, tty, ts, want).is_err() {
                    return;
                }
            }
            Err(e) => {
                log::warn!("following logs of {}: {e}", entry.id);
                return;
            }
        }
        if ended {
            return;
        }
        entry.wait_until(Some(FOLLOW_POLL), |s| s.exits > exits0 || s.removed);
    }
}

/// `GET /containers/{id}/logs`.
pub fn logs(engine: &Arc<Engine>, req: &mut ApiRequest, id: &str) -> ApiResult<()> {
    let entry = engine.get(id)?;
    let want = (req.flag("stdout"), req.flag("stderr"));
    if !want.0 && !want.1 {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let now = timefmt::now_nanos();
    let since = match req.q("since").filter(|s| !s.is_empty() && *s != "0") {
        Some(s) => Some(
            timefmt::parse_since(s, now)
                .ok_or_else(|| ApiError::bad_request(format!("invalid since: {s:?}")))?,
        ),
        None => None,
    };
    let until = match req.q("until").filter(|s| !s.is_empty() && *s != "0") {
        Some(s) => Some(
            timefmt::parse_since(s, now)
                .ok_or_else(|| ApiError::bad_request(format!("invalid until: {s:?}")))?,
        ),
        None => None,
    };
    let tail = match req.q("tail").filter(|t| !t.is_empty() && *t != "all") {
        Some(t) => Some(
            t.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid tail: {t:?}")))?,
        ),
        None => None,
    };
    let follow = req.flag("follow") && until.is_none();
    let ts = req.flag("timestamps");
    // Snapshot before reading, so an exit between the read and the follow is not missed.
    let (tty, active, exits0) = {
        let s = entry.lock();
        (s.rec.config.tty, s.rec.state.status.is_active(), s.exits)
    };
    let mut follower = crate::runtime::logs::follow(&entry.dir, None, None)?;
    let entries = select(follower.take_stored(), since, until, tail);
    let mut w = req.stream(if tty { RAW } else { MUX })?;
    if write_entries(&mut w, &entries, tty, ts, want).is_err() || !follow {
        return Ok(());
    }
    if active {
        follow_until_exit(&entry, exits0, follower, &mut w, tty, ts, want);
    }
    Ok(())
}

/// `POST /containers/{id}/attach`: output from the log, input to the shim.
pub fn attach(engine: &Arc<Engine>, req: &mut ApiRequest, id: &str) -> ApiResult<()> {
    let entry = engine.get(id)?;
    // A stopped container may be attached to: `start -a` attaches before it starts.
    let (tty, exits0) = {
        let s = entry.lock();
        (s.rec.config.tty, s.exits)
    };
    let want = (req.flag("stdout"), req.flag("stderr"));
    let stdin = req.flag("stdin");
    let keys = super::detach::parse_keys(
        req.q("detachKeys")
            .filter(|k| !k.is_empty())
            .unwrap_or("ctrl-p,ctrl-q"),
    )
    .map_err(ApiError::bad_request)?;
    let follower = Follow::from_end(&entry.dir);
    let (reader, mut writer) = req.hijack(if tty { RAW } else { MUX })?;
    if stdin {
        let entry = entry.clone();
        let conn = writer.try_clone()?;
        let spawned = std::thread::Builder::new()
            .name("attach-stdin".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                if pump_stdin(&entry, reader, keys) {
                    // Detached: end the client's stream; the container keeps running.
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                }
            });
        if let Err(e) = spawned {
            log::warn!("attach: no stdin thread: {e}");
        }
    }
    if want.0 || want.1 {
        follow_until_exit(&entry, exits0, follower, &mut writer, tty, false, want);
    } else {
        entry.wait_until(None, |s| s.exits > exits0 || s.removed);
    }
    let _ = writer.shutdown(std::net::Shutdown::Both);
    Ok(())
}

/// Forward a client's input to the container's stdin once it runs; EOF closes stdin.
/// Returns true when the client typed the detach keys.
fn pump_stdin(entry: &Entry, mut reader: BufReader<UnixStream>, keys: Vec<u8>) -> bool {
    // Wait for the container to be up (attach comes before start in `docker run -i`).
    let exits0 = entry.lock().exits;
    let up = entry.wait_until(Some(Duration::from_secs(3600)), |s| {
        s.rec.state.status.is_active() || s.removed || s.exits > exits0
    });
    if !up || !entry.lock().rec.state.status.is_active() {
        return false;
    }
    let mut att = match runtime::attach(&entry.dir) {
        Ok(a) => a,
        Err(e) => {
            log::warn!("attach stdin of {}: {e}", entry.id);
            return false;
        }
    };
    let (tty, stdin_once) = {
        let s = entry.lock();
        (s.rec.config.tty, s.rec.config.stdin_once)
    };
    let mut scanner = super::detach::DetachScanner::new(keys);
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // Detach keys only mean something on a terminal, as in docker.
                let (data, detached) = if tty {
                    scanner.feed(&buf[..n])
                } else {
                    (buf[..n].to_vec(), false)
                };
                if !data.is_empty() && att.write_stdin(&data).is_err() {
                    return false;
                }
                if detached {
                    return true;
                }
            }
        }
    }
    // The client's input ended: close the container's stdin when it was opened for this
    // client alone (`run -i`, StdinOnce), as dockerd does; never with a tty, where a client
    // that leaves (docker's CLI handles the detach keys itself) must not end the shell.
    if stdin_once && !tty {
        let _ = att.close_stdin();
    }
    false
}

pub fn resize_container(engine: &Arc<Engine>, id: &str, h: u16, w: u16) -> ApiResult<()> {
    let entry = engine.get(id)?;
    if !entry.lock().rec.state.status.is_active() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            entry.id
        )));
    }
    runtime::resize(&entry.dir, h, w).map_err(|e| ApiError::internal(format!("resizing {}: {e}", entry.id)))
}

/// `GET /containers/{id}/top`: `ps -ef`-style columns.
pub fn top(engine: &Arc<Engine>, req: &mut ApiRequest, id: &str) -> ApiResult<()> {
    let entry = engine.get(id)?;
    if !entry.lock().rec.state.status.is_active() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            entry.id
        )));
    }
    let rows = runtime::top(&entry.dir)?;
    let titles = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];
    let procs: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| {
            vec![
                r.uid,
                r.pid.to_string(),
                r.ppid.to_string(),
                r.c.to_string(),
                r.stime,
                r.tty,
                r.time,
                r.cmd,
            ]
        })
        .collect();
    req.respond_json(200, &json!({ "Titles": titles, "Processes": procs }));
    Ok(())
}

/// `GET /containers/{id}/stats`: one sample (`stream=false`) or one per second.
pub fn stats(engine: &Arc<Engine>, req: &mut ApiRequest, id: &str) -> ApiResult<()> {
    let entry = engine.get(id)?;
    let stream = req.q("stream").is_none_or(|v| !matches!(v, "0" | "false"));
    let sample = |prev: &serde_json::Value| -> serde_json::Value {
        let (name, running) = {
            let s = entry.lock();
            (s.rec.name.clone(), s.rec.state.status.is_active())
        };
        let st = if running {
            runtime::stats(&entry.dir).ok()
        } else {
            None
        };
        let st = st.unwrap_or_default();
        json!({
            "read": timefmt::now(),
            "preread": prev.get("read").cloned().unwrap_or(json!(timefmt::ZERO)),
            "id": entry.id,
            "name": format!("/{name}"),
            "pids_stats": { "current": st.pids, "limit": st.pids_limit },
            "cpu_stats": {
                "cpu_usage": { "total_usage": st.cpu_total_ns },
                "system_cpu_usage": system_cpu_ns(),
                "online_cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            },
            "precpu_stats": prev.get("cpu_stats").cloned().unwrap_or(json!({ "cpu_usage": { "total_usage": 0 } })),
            // No limit: docker reports the machine's memory, so percentages stay meaningful.
            "memory_stats": { "usage": st.memory_usage, "limit": if st.memory_limit == 0 { host_memory() } else { st.memory_limit }, "stats": {} },
            "networks": {},
        })
    };
    if !stream {
        // Two samples a moment apart so the client can compute a CPU percentage.
        let first = sample(&json!({}));
        std::thread::sleep(Duration::from_millis(100));
        let v = sample(&first);
        req.respond_json(200, &v);
        return Ok(());
    }
    let mut w = req.stream("application/json")?;
    let mut prev = json!({});
    loop {
        let v = sample(&prev);
        if w.write_all(format!("{v}\n").as_bytes()).is_err() {
            return Ok(());
        }
        prev = v;
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The machine's memory in bytes.
pub fn host_memory() -> u64 {
    let info = rustix::system::sysinfo();
    info.totalram as u64 * u64::from(info.mem_unit)
}

/// Total CPU time of the machine in nanoseconds, from /proc/stat (what docker reports).
fn system_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // USER_HZ is 100 on every Linux ABI shoal targets.
    ticks * 10_000_000
}

/// An exec instance: created by `POST /containers/{id}/exec`, run by `POST /exec/{id}/start`.
struct Exec {
    container: String,
    config: ExecConfig,
    running: bool,
    exit_code: Option<i32>,
    pid: u32,
    started: bool,
}

fn execs() -> &'static Mutex<HashMap<String, Exec>> {
    static EXECS: OnceLock<Mutex<HashMap<String, Exec>>> = OnceLock::new();
    EXECS.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock_execs() -> std::sync::MutexGuard<'static, HashMap<String, Exec>> {
    execs().lock().unwrap_or_else(|p| p.into_inner())
}

pub fn exec_create(engine: &Arc<Engine>, req: &mut ApiRequest, id: &str) -> ApiResult<()> {
    let entry = engine.get(id)?;
    let config: ExecConfig = req.json(1 << 20)?;
    if config.cmd.is_empty() {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    if entry.lock().rec.state.status.as_str() != "running" {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            entry.id
        )));
    }
    let exec_id = crate::daemon::names::new_id()?;
    let mut map = lock_execs();
    // Keep the table bounded: forget finished execs beyond the most recent few hundred.
    if map.len() > 512 {
        map.retain(|_, e| e.running || !e.started);
    }
    map.insert(
        exec_id.clone(),
        Exec {
            container: entry.id.clone(),
            config,
            running: false,
            exit_code: None,
            pid: 0,
            started: false,
        },
    );
    req.respond_json(201, &json!({ "Id": exec_id }));
    Ok(())
}

pub fn exec_inspect(req: &mut ApiRequest, id: &str) -> ApiResult<()> {
    let map = lock_execs();
    let e = map
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))?;
    let v = json!({
        "ID": id,
        "Running": e.running,
        "ExitCode": e.exit_code,
        "ProcessConfig": {
            "tty": e.config.tty,
            "entrypoint": e.config.cmd.first(),
            "arguments": e.config.cmd.get(1..).unwrap_or(&[]),
            "privileged": e.config.privileged,
            "user": e.config.user,
        },
        "OpenStdin": e.config.attach_stdin,
        "OpenStderr": e.config.attach_stderr,
        "OpenStdout": e.config.attach_stdout,
        "CanRemove": false,
        "ContainerID": e.container,
        "DetachKeys": "",
        "Pid": e.pid,
    });
    drop(map);
    req.respond_json(200, &v);
    Ok(())
}

pub fn exec_resize(req: &mut ApiRequest, id: &str) -> ApiResult<()> {
    let h = req.q("h").and_then(|v| v.parse().ok()).unwrap_or(0);
    let w = req.q("w").and_then(|v| v.parse().ok()).unwrap_or(0);
    let pid = {
        let map = lock_execs();
        map.get(id)
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))?
            .pid
    };
    if let Some(pty) = procs().lock().unwrap_or_else(|p| p.into_inner()).get(&pid) {
        let _ = crate::sys::set_winsize(std::os::fd::AsRawFd::as_raw_fd(pty), h, w);
    }
    req.respond_empty(200);
    Ok(())
}

/// The pty masters of running exec processes, by pid, for resizing.
fn procs() -> &'static Mutex<HashMap<u32, std::fs::File>> {
    static PROCS: OnceLock<Mutex<HashMap<u32, std::fs::File>>> = OnceLock::new();
    PROCS.get_or_init(|| Mutex::new(HashMap::new()))
}

fn set_exec(id: &str, f: impl FnOnce(&mut Exec)) {
    if let Some(e) = lock_execs().get_mut(id) {
        f(e);
    }
}

pub fn exec_start(engine: &Arc<Engine>, req: &mut ApiRequest, id: &str) -> ApiResult<()> {
    let start: ExecStart = req.json(1 << 20)?;
    let (container, config) = {
        let mut map = lock_execs();
        let e = map
            .get_mut(id)
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))?;
        if e.started {
            return Err(ApiError::conflict(format!(
                "Error: Exec command {id} has already run"
            )));
        }
        e.started = true;
        (e.container.clone(), e.config.clone())
    };
    let entry = engine.get(&container)?;
    let (env, user, cwd) = {
        let s = entry.lock();
        if s.rec.state.status.as_str() != "running" {
            return Err(ApiError::conflict(format!(
                "Container {} is not running",
                entry.id
            )));
        }
        let mut env = s.rec.config.env.clone().unwrap_or_default();
        for kv in config.env.clone().unwrap_or_default() {
            let key = kv.split('=').next().unwrap_or("").to_string();
            env.retain(|e| e.split('=').next() != Some(key.as_str()));
            env.push(kv);
        }
        let user = if config.user.is_empty() {
            s.rec.config.user.clone()
        } else {
            config.user.clone()
        };
        let cwd = if config.working_dir.is_empty() {
            s.rec.config.working_dir.clone()
        } else {
            config.working_dir.clone()
        };
        (env, user, cwd)
    };
    let tty = config.tty || start.tty;
    let spec = runtime::ExecSpec {
        args: config.cmd.clone(),
        env,
        cwd: if cwd.is_empty() { "/".into() } else { cwd },
        user,
        tty,
        open_stdin: config.attach_stdin && !start.detach,
        privileged: config.privileged,
        cap_add: Vec::new(),
        cap_drop: Vec::new(),
    };
    // As dockerd: an attached exec answers 101 first, so a failure to start is reported on the
    // stream and in the exec's exit code (126/127), which clients read afterwards.
    let mut hijacked = if start.detach {
        None
    } else {
        Some(req.hijack(if tty { RAW } else { MUX })?)
    };
    let mut proc = match runtime::exec(&entry.dir, &spec) {
        Ok(p) => p,
        Err(e) => {
            set_exec(id, |x| x.exit_code = Some(e.code()));
            let message = format!("OCI runtime exec failed: {e}");
            if let Some((_, mut w)) = hijacked.take() {
                let line = format!("{message}\n");
                let frame = if tty {
                    line.into_bytes()
                } else {
                    frame(Stream::Stderr, line.as_bytes())
                };
                let _ = w.write_all(&frame);
                let _ = w.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            return Err(ApiError::new(if e.code() == 125 { 500 } else { 400 }, message));
        }
    };
    let pid = proc.pid;
    set_exec(id, |x| {
        x.running = true;
        x.pid = pid;
    });
    if let Some(pty) = proc.pty.as_ref().and_then(|p| p.try_clone().ok()) {
        if let Some((h, w)) = config
            .console_size
            .as_ref()
            .filter(|s| s.len() == 2)
            .map(|s| (s[0], s[1]))
        {
            let _ = crate::sys::set_winsize(std::os::fd::AsRawFd::as_raw_fd(&pty), h, w);
        }
        procs().lock().unwrap_or_else(|p| p.into_inner()).insert(pid, pty);
    }
    let finish = |code: i32| {
        procs().lock().unwrap_or_else(|p| p.into_inner()).remove(&pid);
        set_exec(id, |x| {
            x.running = false;
            x.exit_code = Some(code);
        });
    };
    if start.detach {
        let id = id.to_string();
        let spawned = std::thread::Builder::new()
            .name("exec-detached".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let code = proc.wait().unwrap_or(126);
                procs().lock().unwrap_or_else(|p| p.into_inner()).remove(&pid);
                set_exec(&id, |x| {
                    x.running = false;
                    x.exit_code = Some(code);
                });
            });
        if let Err(e) = spawned {
            log::warn!("exec: no waiter thread: {e}");
        }
        req.respond_empty(200);
        return Ok(());
    }
    let Some((mut reader, writer)) = hijacked else {
        return Err(ApiError::internal("exec stream was not hijacked"));
    };
    let writer = Arc::new(Mutex::new(writer));
    let mut pumps = Vec::new();
    let stdin = if tty {
        proc.pty
            .as_ref()
            .filter(|_| spec.open_stdin)
            .and_then(|p| p.try_clone().ok())
    } else {
        proc.stdin.take()
    };
    let outputs: Vec<(std::fs::File, Stream)> = if tty {
        proc.pty.take().map(|p| (p, Stream::Stdout)).into_iter().collect()
    } else {
        [
            (proc.stdout.take(), Stream::Stdout),
            (proc.stderr.take(), Stream::Stderr),
        ]
        .into_iter()
        .filter_map(|(f, s)| f.map(|f| (f, s)))
        .collect()
    };
    if let Some(mut stdin) = stdin {
        // Not joined: a client that never closes its input must not hold the exec open.
        let _ = std::thread::Builder::new()
            .name("exec-stdin".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = io::copy(&mut reader, &mut stdin);
            });
    }
    for (out, stream) in outputs {
        let writer = writer.clone();
        pumps.push(
            std::thread::Builder::new()
                .name("exec-out".into())
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut out = out;
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match out.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let msg = if tty {
                            buf[..n].to_vec()
                        } else {
                            frame(stream, &buf[..n])
                        };
                        let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
                        if w.write_all(&msg).is_err() {
                            break;
                        }
                    }
                }),
        );
    }
    let code = proc.wait().unwrap_or(126);
    for p in pumps.into_iter().flatten() {
        let _ = p.join();
    }
    finish(code);
    let w = writer.lock().unwrap_or_else(|p| p.into_inner());
    let _ = w.shutdown(std::net::Shutdown::Both);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_applies_since_until_tail() {
        let mk = |n: i128| LogEntry {
            stream: Stream::Stdout,
            time: timefmt::format_nanos(n),
            line: vec![],
        };
        let all: Vec<_> = (1..=5).map(mk).collect();
        let at = |v: Vec<LogEntry>| {
            v.iter()
                .map(|e| timefmt::parse(&e.time).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(at(select(all.clone(), Some(2), Some(4), None)), [2, 3, 4]);
        assert_eq!(at(select(all, None, None, Some(2))), [4, 5]);
    }

    #[test]
    fn frames_have_docker_header() {
        assert_eq!(frame(Stream::Stderr, b"hi"), [2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
        assert_eq!(frame(Stream::Stdout, b"")[0], 1);
    }
}
