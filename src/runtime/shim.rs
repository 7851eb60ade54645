//! The per-container shim: `shoal shim <container-dir> [--attached]`.
//!
//! Started by [`super::start`] with a status pipe on fd 3 (and, attached, a socket on fd 4).
//! It forks once so the starter can reap the first process at once, starts a new session
//! (so it survives the daemon), creates the container's cgroups and init, reports
//! "ok <pid>" or "err <code> <message>" on fd 3, and then serves until the container exits:
//! it copies output to the log and to attached clients, feeds stdin, forwards signals and
//! resizes, and finally writes `exit.json` before closing every connection.

use super::container::{self, InitContext, Stdio};
use super::{cgroup, logs, proto, ContainerSpec, ExitInfo, RunState, StartError, Stream};
use crate::storage::atomic;
use crate::sys::{self, ChildExit};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::SystemTime;

/// The status pipe the starter reads.
pub(crate) const STATUS_FD: RawFd = 3;
/// An attach socket connected before the program runs.
pub(crate) const ATTACH_FD: RawFd = 4;

/// A client stalls the container's output (back-pressure) beyond this much unsent data.
const CLIENT_BACKLOG: usize = 1 << 20;

/// `shoal shim ...`; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("exec") => super::exec::helper_main(&args[1..]),
        Some(dir) => run(Path::new(dir), args.get(1).is_some_and(|a| a == "--attached")),
        None => {
            eprintln!("usage: shoal shim <container-dir>");
            125
        }
    }
}

/// Parse the shim's status line: (pid, error).
pub(crate) fn parse_report(report: &str) -> (u32, Option<StartError>) {
    let report = report.trim_end_matches('\n');
    if let Some(pid) = report.strip_prefix("ok ") {
        if let Ok(pid) = pid.trim().parse() {
            return (pid, None);
        }
    }
    if let Some(rest) = report.strip_prefix("err ") {
        let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
        return (
            0,
            Some(StartError::from_code(
                code.parse().unwrap_or(125),
                msg.to_string(),
            )),
        );
    }
    (
        0,
        Some(StartError::Other(format!(
            "the shim exited without reporting a start ({report:?}); see shim.log"
        ))),
    )
}

fn run(dir: &Path, attached: bool) -> i32 {
    if !sys::fd_is_open(STATUS_FD) {
        eprintln!("shoal shim: fd {STATUS_FD} (status pipe) is not open; the shim is started by the daemon");
        return 125;
    }
    let _ = sys::set_cloexec(STATUS_FD, true);
    // SAFETY: fd 3 is open (checked above) and handed to this process to own.
    let mut status = unsafe { File::from_raw_fd(STATUS_FD) };
    let attach_client = if attached && sys::fd_is_open(ATTACH_FD) {
        let _ = sys::set_cloexec(ATTACH_FD, true);
        // SAFETY: fd 4 is open and handed to this process to own.
        Some(unsafe { UnixStream::from_raw_fd(ATTACH_FD) })
    } else {
        None
    };
    // Detach: the starter reaps this first process at once; the shim lives on in a new
    // session, reparented to init (or the nearest subreaper), unaffected by the daemon.
    // SAFETY: the shim is single-threaded here.
    match unsafe { sys::fork() } {
        Ok(0) => {}
        Ok(_) => sys::exit_now(0),
        Err(e) => {
            let _ = write!(status, "err 125 forking the shim: {e}");
            return 125;
        }
    }
    let _ = sys::setsid();
    match launch(dir) {
        Ok(running) => {
            let _ = write!(status, "ok {}", running.pid);
            drop(status);
            serve(dir, running, attach_client)
        }
        Err(err) => {
            let exit = ExitInfo {
                code: err.code(),
                oom_killed: false,
                finished_at: crate::timefmt::now(),
                error: err.message().to_string(),
            };
            if let Err(e) = atomic::write_json(&dir.join(super::EXIT_FILE), &exit) {
                eprintln!("shoal shim: {e}");
            }
            let _ = write!(status, "err {} {}", err.code(), err.message());
            err.code()
        }
    }
}

/// A started container, as the serving loop needs it.
struct Running {
    pid: i32,
    spec: ContainerSpec,
    cgroups: cgroup::Cgroups,
    listener: UnixListener,
    signals: OwnedFd,
    /// (fd, stream): stdout and stderr pipes, or the pty master as stdout.
    outputs: Vec<(OwnedFd, Stream)>,
    /// Where stdin goes: the pipe, or the pty master.
    stdin: Option<OwnedFd>,
    tty: Option<OwnedFd>,
}

fn launch(dir: &Path) -> Result<Running, StartError> {
    let other = |e: io::Error| StartError::Other(e.to_string());
    let spec: ContainerSpec = atomic::read_json(&dir.join(super::SPEC_FILE)).map_err(other)?;
    let layout = cgroup::discover_self().map_err(other)?;
    let limits = cgroup::Limits {
        memory: spec.memory,
        memory_swap: spec.memory_swap,
        nano_cpus: spec.nano_cpus,
        pids_limit: spec.pids_limit,
        all_devices: spec.privileged,
    };
    let id = if spec.id.is_empty() {
        "container".to_string()
    } else {
        spec.id.clone()
    };
    // The cgroups are made while the container's init sets up its mounts (both take several
    // milliseconds on v1); the init waits for them before it unshares its cgroup namespace.
    let make_cgroups = move |parent: &str| cgroup::create(&layout, parent, &id, &limits);
    launch_in(dir, spec, make_cgroups)
}

fn launch_in(
    dir: &Path,
    spec: ContainerSpec,
    make_cgroups: impl FnOnce(&str) -> io::Result<cgroup::Cgroups>,
) -> Result<Running, StartError> {
    let other = |e: io::Error| StartError::Other(e.to_string());
    let listener = proto::bind(dir).map_err(other)?;
    // Whoever can use the socket can signal the container and type into it: root only.
    {
        use std::os::unix::fs::PermissionsExt;
        let sock = dir.join(proto::SOCKET);
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).map_err(other)?;
    }
    let (err_r, err_w) = sys::pipe().map_err(other)?;
    let mut outputs = vec![];
    let mut stdin = None;
    let (stdio, tty_sock) = if spec.tty {
        let (ours, theirs) = sys::socketpair().map_err(other)?;
        (Stdio::Tty(theirs), Some(ours))
    } else {
        let child_stdin: OwnedFd = if spec.open_stdin {
            let (r, w) = sys::pipe().map_err(other)?;
            stdin = Some(w);
            r
        } else {
            File::open("/dev/null").map_err(other)?.into()
        };
        let (out_r, out_w) = sys::pipe().map_err(other)?;
        let (errp_r, errp_w) = sys::pipe().map_err(other)?;
        outputs.push((out_r, Stream::Stdout));
        outputs.push((errp_r, Stream::Stderr));
        (Stdio::Pipes(child_stdin, out_w, errp_w), None)
    };
    // Blocked before the clone so an immediate exit is not missed; the child unblocks.
    let signals = sys::signalfd(&[libc::SIGCHLD]).map_err(other)?;
    let mut flags = sys::CLONE_NEWNS | sys::CLONE_NEWPID | sys::CLONE_NEWUTS | sys::CLONE_NEWIPC;
    if spec.network == super::NetworkMode::None {
        flags |= sys::CLONE_NEWNET;
    }
    let (joined_r, joined_w) = sys::pipe().map_err(other)?;
    let ctx = InitContext {
        spec: spec.clone(),
        rootfs: dir.join(super::ROOTFS_DIR),
        cgroups_joined: joined_r,
        stdio,
        err_pipe: err_w,
    };
    // SAFETY: the shim is single-threaded.
    let pid = unsafe { sys::clone_fork(flags) }
        .map_err(|e| StartError::Other(format!("creating the container's namespaces: {e}")))?;
    if pid == 0 {
        container::run(ctx)
    }
    drop(ctx);
    let cgroups = match make_cgroups(&spec.cgroup_parent) {
        Ok(c) => c,
        Err(e) => {
            let _ = sys::kill(pid, libc::SIGKILL);
            let _ = sys::waitpid(pid, false);
            return Err(other(e));
        }
    };
    let for_cleanup = cgroups.clone();
    let rest = move || -> Result<Running, StartError> {
        for procs in cgroups.procs_files() {
            let d = procs.parent().unwrap_or(Path::new("/"));
            if let Err(e) = cgroup::write_file(d, "cgroup.procs", &pid.to_string()) {
                let _ = sys::kill(pid, libc::SIGKILL);
                let _ = sys::waitpid(pid, false);
                return Err(StartError::Other(format!(
                    "placing the container in cgroup {}: {e}",
                    d.display()
                )));
            }
        }
        let _ = File::from(joined_w).write_all(b"1");
        let mut tty = None;
        if let Some(sock) = tty_sock {
            // The child sends the pty master once it has created it, or exits having failed.
            if let Ok(Some(master)) = sys::recv_fd(sock.as_raw_fd()) {
                tty = Some(master);
            }
        }
        let mut report = String::new();
        let _ = File::from(err_r).read_to_string(&mut report);
        if !report.is_empty() || (spec.tty && tty.is_none()) {
            let _ = sys::waitpid(pid, false);
            let (code, msg) = report
                .split_once(' ')
                .unwrap_or(("125", "the container's init failed to start"));
            return Err(StartError::from_code(
                code.parse().unwrap_or(125),
                msg.to_string(),
            ));
        }
        if let Some(master) = &tty {
            let dup = |fd: &OwnedFd| fd.try_clone().map_err(other);
            outputs.push((dup(master)?, Stream::Stdout));
            if spec.open_stdin {
                stdin = Some(dup(master)?);
            }
        }
        let state = RunState {
            pid: pid as u32,
            shim_pid: std::process::id(),
            started_at: crate::timefmt::now(),
            cgroups: cgroups.clone(),
        };
        super::write_runtime_file(&dir.join(super::STATE_FILE), &state).map_err(other)?;
        Ok(Running {
            pid,
            spec,
            cgroups,
            listener,
            signals,
            outputs,
            stdin,
            tty,
        })
    };
    let result = rest();
    if result.is_err() {
        let _ = for_cleanup.remove();
    }
    result
}

struct Client {
    sock: UnixStream,
    decoder: proto::Decoder,
    attached: bool,
    out: Vec<u8>,
}

impl Client {
    fn new(sock: UnixStream, attached: bool) -> Client {
        let _ = sock.set_nonblocking(true);
        Client {
            sock,
            decoder: proto::Decoder::default(),
            attached,
            out: vec![],
        }
    }

    /// Send what is queued; false when the client is gone.
    fn flush(&mut self) -> bool {
        while !self.out.is_empty() {
            match self.sock.write(&self.out) {
                Ok(0) => return false,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

fn serve(dir: &Path, mut r: Running, attach_client: Option<UnixStream>) -> i32 {
    let mut log = match logs::Writer::open(dir, &r.spec.log) {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!("shoal shim: {e}; output will not be logged");
            None
        }
    };
    let _ = r.listener.set_nonblocking(true);
    let mut clients: Vec<Client> = attach_client.into_iter().map(|s| Client::new(s, true)).collect();
    let mut pending_stdin: Vec<u8> = vec![];
    let mut close_stdin_after_pending = false;
    if let Some(fd) = &r.stdin {
        let _ = sys::set_nonblocking(fd.as_raw_fd(), true);
    }
    let mut exited: Option<ChildExit> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if exited.is_some() && r.outputs.is_empty() {
            break;
        }
        let backlogged = clients.iter().any(|c| c.out.len() > CLIENT_BACKLOG);
        let mut fds = vec![
            pollfd(r.signals.as_raw_fd(), libc::POLLIN),
            pollfd(r.listener.as_raw_fd(), libc::POLLIN),
        ];
        let out_base = fds.len();
        for (fd, _) in &r.outputs {
            fds.push(pollfd(fd.as_raw_fd(), if backlogged { 0 } else { libc::POLLIN }));
        }
        let stdin_idx = fds.len();
        let stdin_events = if pending_stdin.is_empty() {
            0
        } else {
            libc::POLLOUT
        };
        fds.push(pollfd(
            r.stdin.as_ref().map_or(-1, |f| f.as_raw_fd()),
            stdin_events,
        ));
        let client_base = fds.len();
        for c in &clients {
            let ev = libc::POLLIN | if c.out.is_empty() { 0 } else { libc::POLLOUT };
            fds.push(pollfd(c.sock.as_raw_fd(), ev));
        }
        // Once the init has exited, its output ends as soon as the namespace is torn down;
        // the timeout only guards against a descriptor leaked to a process outside it.
        let timeout = if exited.is_some() { 2000 } else { -1 };
        let ready = match sys::poll(&mut fds, timeout) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("shoal shim: poll: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        if ready == 0 && exited.is_some() {
            r.outputs.clear();
            continue;
        }
        if fds[0].revents != 0 {
            while sys::read_signalfd(r.signals.as_raw_fd()).is_some() {}
            while let Ok(Some((pid, how))) = sys::waitpid(-1, true) {
                if pid == r.pid {
                    exited = Some(how);
                }
            }
        }
        if fds[1].revents != 0 {
            while let Ok((sock, _)) = r.listener.accept() {
                clients.push(Client::new(sock, false));
            }
        }
        let mut closed_outputs = vec![];
        for (i, (fd, stream)) in r.outputs.iter().enumerate() {
            if fds[out_base + i].revents == 0 {
                continue;
            }
            match read_fd(fd.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => closed_outputs.push(i),
                Ok(n) => {
                    let data = &buf[..n];
                    if let Some(w) = &mut log {
                        if let Err(e) = w.write(*stream, data, SystemTime::now()) {
                            eprintln!("shoal shim: writing log: {e}");
                        }
                    }
                    let kind = if *stream == Stream::Stdout {
                        proto::STDOUT
                    } else {
                        proto::STDERR
                    };
                    let frame = proto::encode(kind, data);
                    for c in clients.iter_mut().filter(|c| c.attached) {
                        c.out.extend_from_slice(&frame);
                    }
                }
            }
        }
        for i in closed_outputs.into_iter().rev() {
            r.outputs.remove(i);
        }
        if fds[stdin_idx].revents != 0 {
            feed_stdin(&mut r, &mut pending_stdin, &mut close_stdin_after_pending);
        }
        let mut gone = vec![];
        for (i, c) in clients.iter_mut().enumerate() {
            let rev = fds.get(client_base + i).map_or(0, |f| f.revents);
            if rev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                match c.sock.read(&mut buf) {
                    Ok(0) => {
                        gone.push(i);
                        continue;
                    }
                    Ok(n) => c.decoder.push(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        gone.push(i);
                        continue;
                    }
                }
                loop {
                    match c.decoder.next_frame() {
                        Ok(Some((kind, payload))) => handle(
                            kind,
                            &payload,
                            c,
                            &mut r,
                            exited.is_some(),
                            &mut pending_stdin,
                            &mut close_stdin_after_pending,
                        ),
                        Ok(None) => break,
                        Err(_) => {
                            gone.push(i);
                            break;
                        }
                    }
                }
            }
            if !c.flush() && !gone.contains(&i) {
                gone.push(i);
            }
        }
        if !pending_stdin.is_empty() || close_stdin_after_pending {
            feed_stdin(&mut r, &mut pending_stdin, &mut close_stdin_after_pending);
        }
        gone.sort_unstable();
        gone.dedup();
        for i in gone.into_iter().rev() {
            clients.remove(i);
        }
    }
    finish(dir, r, exited, log, clients)
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is a valid writable buffer of buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn feed_stdin(r: &mut Running, pending: &mut Vec<u8>, close_after: &mut bool) {
    let Some(fd) = &r.stdin else {
        pending.clear();
        return;
    };
    while !pending.is_empty() {
        // SAFETY: pending is a valid buffer of pending.len() bytes.
        let n = unsafe {
            libc::write(
                fd.as_raw_fd(),
                pending.as_ptr() as *const libc::c_void,
                pending.len(),
            )
        };
        if n > 0 {
            pending.drain(..n as usize);
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return,
            _ => {
                // The reader is gone: input can no longer be delivered.
                pending.clear();
                r.stdin = None;
                return;
            }
        }
    }
    if *close_after {
        *close_after = false;
        if r.tty.is_some() {
            // A terminal has no half-close: send end-of-file (^D) as a typed key would.
            if let Some(fd) = &r.stdin {
                // SAFETY: writing one byte from a static buffer.
                unsafe { libc::write(fd.as_raw_fd(), b"\x04".as_ptr() as *const libc::c_void, 1) };
            }
        }
        r.stdin = None;
    }
}

fn handle(
    kind: u8,
    payload: &[u8],
    c: &mut Client,
    r: &mut Running,
    exited: bool,
    pending_stdin: &mut Vec<u8>,
    close_after: &mut bool,
) {
    let reply = |c: &mut Client, result: Result<(), String>| {
        let frame = match result {
            Ok(()) => proto::encode(proto::OK, &[]),
            Err(m) => proto::encode(proto::ERR, m.as_bytes()),
        };
        c.out.extend_from_slice(&frame);
    };
    match kind {
        proto::ATTACH => c.attached = true,
        proto::STDIN => {
            if r.stdin.is_some() && pending_stdin.len() < CLIENT_BACKLOG {
                pending_stdin.extend_from_slice(payload);
            }
        }
        proto::CLOSE_STDIN => *close_after = true,
        proto::KILL => {
            let result = match <[u8; 4]>::try_from(payload) {
                _ if exited => Err("container is not running".to_string()),
                Ok(b) => sys::kill(r.pid, i32::from_be_bytes(b))
                    .map_err(|e| format!("signalling pid {}: {e}", r.pid)),
                Err(_) => Err("bad kill request".to_string()),
            };
            reply(c, result);
        }
        proto::RESIZE => {
            let result = match (&r.tty, payload) {
                (Some(master), [r0, r1, c0, c1]) => {
                    let (rows, cols) = (u16::from_be_bytes([*r0, *r1]), u16::from_be_bytes([*c0, *c1]));
                    sys::set_winsize(master.as_raw_fd(), rows, cols).map_err(|e| format!("resizing tty: {e}"))
                }
                (None, _) => Err("the container has no tty".to_string()),
                _ => Err("bad resize request".to_string()),
            };
            reply(c, result);
        }
        _ => reply(c, Err(format!("unknown request {kind}"))),
    }
}

fn finish(
    dir: &Path,
    r: Running,
    exited: Option<ChildExit>,
    log: Option<logs::Writer>,
    mut clients: Vec<Client>,
) -> i32 {
    if let Some(mut w) = log {
        let _ = w.flush(SystemTime::now());
    }
    let code = exited.map_or(255, ChildExit::code);
    let exit = ExitInfo {
        code,
        oom_killed: r.cgroups.oom_killed(),
        finished_at: crate::timefmt::now(),
        error: String::new(),
    };
    let mut status = 0;
    // Renamed into place first (readers see it complete at once) and made durable below,
    // after the waiters are released: a disk flush must not delay `docker run --rm`.
    let exit_path = dir.join(super::EXIT_FILE);
    let recorded = super::write_runtime_file(&exit_path, &exit);
    if let Err(e) = &recorded {
        eprintln!("shoal shim: recording the exit: {e}");
        status = 125;
    }
    let _ = std::fs::remove_file(dir.join(proto::SOCKET));
    // Closing the listener resets connections not yet accepted: their clients see the end.
    drop(r.listener);
    // Deliver the last output to attached clients; a client that does not read is dropped.
    for c in clients.iter_mut() {
        let _ = c.sock.set_nonblocking(false);
        let _ = c.sock.set_write_timeout(Some(std::time::Duration::from_secs(2)));
        let _ = c.sock.write_all(&c.out);
    }
    drop(clients);
    if recorded.is_ok() {
        let synced = File::open(&exit_path)
            .and_then(|f| f.sync_all())
            .and_then(|()| atomic::sync_dir(dir));
        if let Err(e) = synced {
            // fsync errors are not retried: the data may already be lost.
            eprintln!("shoal shim: syncing {}: {e}", exit_path.display());
            status = 125;
        }
    }
    if let Err(e) = r.cgroups.remove() {
        eprintln!("shoal shim: {e}");
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse() {
        assert_eq!(parse_report("ok 42"), (42, None));
        assert_eq!(
            parse_report("err 127 exec: \"x\": not found").1,
            Some(StartError::NotFound("exec: \"x\": not found".into()))
        );
        assert!(matches!(parse_report("").1, Some(StartError::Other(_))));
    }
}
