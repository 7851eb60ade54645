//! `docker exec`: run another program in a running container, in all its namespaces and its
//! cgroup, with the same hardening as the container (capabilities, no_new_privs, seccomp).
//!
//! The caller's process stays free of forks (the daemon is multi-threaded): [`exec`] spawns
//! `shoal shim exec <dir> <spec-json>`, a small helper that joins the container and forks the
//! program (a pid namespace applies to children only), reports "ok <pid>" or
//! "err <code> <message>" on fd 3, forwards signals and exits with the program's status.

use super::container::{self, Failure};
use super::{caps, user, StartError};
use crate::sys;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// What to run in the container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecSpec {
    pub args: Vec<String>,
    /// Complete environment (the daemon merges the container's with `-e`).
    pub env: Vec<String>,
    /// "" = "/".
    pub cwd: String,
    pub user: String,
    pub tty: bool,
    pub open_stdin: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
}

/// A running exec'd program.
pub struct ExecProcess {
    /// Host pid of the program.
    pub pid: u32,
    /// Present with `open_stdin` (and no tty).
    pub stdin: Option<File>,
    /// Present without a tty.
    pub stdout: Option<File>,
    pub stderr: Option<File>,
    /// The pty master with a tty: read output from it, write input to it.
    pub pty: Option<File>,
    helper: Child,
}

impl ExecProcess {
    /// Wait for the program; its exit code, or 128+N for signal N.
    pub fn wait(&mut self) -> io::Result<i32> {
        let status = self.helper.wait()?;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    /// Send a signal to the program. Sent directly, not through the helper: SIGKILL cannot be
    /// forwarded. The pid cannot have been reused while the helper, its parent, has not reaped it.
    pub fn kill(&self, signal: i32) -> io::Result<()> {
        sys::kill(self.pid as i32, signal)
    }

    pub fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        match &self.pty {
            Some(p) => sys::set_winsize(p.as_raw_fd(), rows, cols),
            None => Err(io::Error::new(io::ErrorKind::InvalidInput, "exec has no tty")),
        }
    }
}

/// Start `spec` inside the running container of `dir`.
pub fn exec(dir: &Path, spec: &ExecSpec) -> Result<ExecProcess, StartError> {
    let other = |e: io::Error| StartError::Other(e.to_string());
    if spec.args.is_empty() {
        return Err(StartError::Other("no command specified".into()));
    }
    if !matches!(super::state(dir), super::ContainerState::Running { .. }) {
        return Err(StartError::Other(format!(
            "container in {} is not running",
            dir.display()
        )));
    }
    let json = serde_json::to_string(spec).map_err(|e| StartError::Other(e.to_string()))?;
    let mut cmd = Command::new(super::shim_binary());
    cmd.arg("shim").arg("exec").arg(dir).arg(json);
    let mut pty = None;
    let mut pty_sock = None;
    if spec.tty {
        // The pty is made inside the container (its own devpts), so the program sees a
        // /dev/pts/N that exists there; the helper sends the master back on fd 4.
        let (ours, theirs) = sys::socketpair().map_err(other)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        pty_sock = Some((ours, theirs));
    } else {
        cmd.stdin(if spec.open_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let (status_r, status_w) = sys::pipe().map_err(other)?;
    let status_fd = status_w.as_raw_fd();
    let pty_fd = pty_sock.as_ref().map(|(_, theirs)| theirs.as_raw_fd());
    // SAFETY: only dup2 (async-signal-safe) runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || match pty_fd {
            Some(fd) => sys::place_fds(&[(status_fd, super::shim::STATUS_FD), (fd, super::shim::ATTACH_FD)]),
            None => sys::place_fds(&[(status_fd, super::shim::STATUS_FD)]),
        });
    }
    let mut helper = cmd
        .spawn()
        .map_err(|e| StartError::Other(format!("spawning exec helper: {e}")))?;
    drop(cmd);
    drop(status_w);
    let pty_sock = pty_sock.map(|(ours, _theirs)| ours);
    let mut report = String::new();
    let _ = File::from(status_r).read_to_string(&mut report);
    let (pid, err) = super::shim::parse_report(&report);
    if let Some(err) = err {
        let _ = helper.wait();
        return Err(err);
    }
    if let Some(sock) = pty_sock {
        match sys::recv_fd(sock.as_raw_fd()) {
            Ok(Some(master)) => pty = Some(File::from(master)),
            _ => return Err(StartError::Other("the exec helper sent no pty".into())),
        }
    }
    let take = |o: Option<OwnedFd>| o.map(File::from);
    Ok(ExecProcess {
        pid,
        stdin: take(helper.stdin.take().map(OwnedFd::from)),
        stdout: take(helper.stdout.take().map(OwnedFd::from)),
        stderr: take(helper.stderr.take().map(OwnedFd::from)),
        pty,
        helper,
    })
}

/// `shoal shim exec <dir> <spec-json>`: join the container, fork the program, report, relay.
pub(crate) fn helper_main(args: &[String]) -> i32 {
    if !sys::fd_is_open(super::shim::STATUS_FD) {
        eprintln!("shoal shim exec: fd 3 (status pipe) is not open; exec is started by the daemon");
        return 125;
    }
    let _ = sys::set_cloexec(super::shim::STATUS_FD, true);
    if sys::fd_is_open(super::shim::ATTACH_FD) {
        let _ = sys::set_cloexec(super::shim::ATTACH_FD, true);
    }
    // SAFETY: fd 3 is open and handed to this process to own.
    let mut status = unsafe { File::from_raw_fd(super::shim::STATUS_FD) };
    let (dir, json) = match args {
        [dir, json] => (Path::new(dir), json),
        _ => {
            let _ = write!(status, "err 125 usage: shoal shim exec <dir> <spec-json>");
            return 125;
        }
    };
    let spec: ExecSpec = match serde_json::from_str(json) {
        Ok(s) => s,
        Err(e) => {
            let _ = write!(status, "err 125 bad exec spec: {e}");
            return 125;
        }
    };
    match join_and_fork(dir, &spec) {
        Ok(child) => {
            let _ = write!(status, "ok {child}");
            drop(status);
            relay(child)
        }
        Err(Failure(code, msg)) => {
            let _ = write!(status, "err {code} {msg}");
            code
        }
    }
}

fn join_and_fork(dir: &Path, spec: &ExecSpec) -> Result<i32, Failure> {
    let fail = |what: String| move |e: io::Error| Failure(125, format!("{what}: {e}"));
    let run = super::read_run_state(dir).map_err(fail("reading container state".into()))?;
    let cgroups = super::read_cgroups(dir).map_err(fail("reading container cgroups".into()))?;
    let kinds = [
        ("cgroup", sys::CLONE_NEWCGROUP),
        ("ipc", sys::CLONE_NEWIPC),
        ("uts", sys::CLONE_NEWUTS),
        ("net", sys::CLONE_NEWNET),
        ("pid", sys::CLONE_NEWPID),
        ("mnt", sys::CLONE_NEWNS),
    ];
    let mut namespaces = vec![];
    for (name, kind) in kinds {
        let path = format!("/proc/{}/ns/{name}", run.pid);
        let f = File::open(&path).map_err(fail(format!("opening {path}")))?;
        namespaces.push((f, kind, path));
    }
    for procs in cgroups.procs_files() {
        let d = procs.parent().unwrap_or(Path::new("/"));
        super::cgroup::write_file(d, "cgroup.procs", "0")
            .map_err(fail(format!("joining cgroup {}", d.display())))?;
    }
    for (f, kind, path) in &namespaces {
        sys::setns(f.as_raw_fd(), *kind).map_err(fail(format!("joining {path}")))?;
    }
    drop(namespaces);
    let slave = if spec.tty {
        let (master, slave) = sys::open_pty(Path::new("/dev/pts/ptmx"))
            .map_err(fail("creating a pty in the container".into()))?;
        sys::send_fd(super::shim::ATTACH_FD, master.as_raw_fd())
            .map_err(fail("handing over the pty".into()))?;
        Some(slave)
    } else {
        None
    };
    let (err_r, err_w) = sys::pipe().map_err(fail("creating a pipe".into()))?;
    sys::block_all_signals();
    // SAFETY: the helper is single-threaded.
    let child = unsafe { sys::fork() }.map_err(fail("forking".into()))?;
    if child == 0 {
        drop(err_r);
        if let Some(slave) = &slave {
            for to in 0..3 {
                let _ = sys::dup2(slave.as_raw_fd(), to);
            }
        }
        let Failure(code, msg) = match program(spec) {
            Ok(never) => match never {},
            Err(f) => f,
        };
        container::report_failure(err_w.as_raw_fd(), code, &msg);
        sys::exit_now(code);
    }
    drop(err_w);
    let mut report = String::new();
    let _ = File::from(err_r).read_to_string(&mut report);
    if !report.is_empty() {
        let _ = sys::waitpid(child, false);
        let (code, msg) = report.split_once(' ').unwrap_or(("125", "exec failed"));
        return Err(Failure(code.parse().unwrap_or(125), msg.to_string()));
    }
    Ok(child)
}

/// In the forked child, inside the container: identity, hardening, exec.
fn program(spec: &ExecSpec) -> Result<std::convert::Infallible, Failure> {
    let _ = sys::setsid();
    if spec.tty {
        sys::set_controlling_tty(0).map_err(|e| Failure(125, format!("setting the controlling tty: {e}")))?;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let id = user::resolve(&spec.user, &passwd, &group).map_err(|e| Failure(125, e))?;
    let env = container::container_env(&spec.env, &id.home);
    let cwd = if spec.cwd.is_empty() {
        "/"
    } else {
        spec.cwd.as_str()
    };
    std::env::set_current_dir(cwd)
        .map_err(|e| Failure(125, format!("changing to working directory {cwd}: {e}")))?;
    let program = container::find_program(&spec.args[0], &env)?;
    let mask = caps::resolve(
        spec.privileged,
        &spec.cap_add,
        &spec.cap_drop,
        sys::cap_last_cap(),
    )
    .map_err(|e| Failure(125, e))?;
    container::harden(&id, mask, spec.privileged)?;
    container::exec(&program, &spec.args, &env)
}

/// Forward signals to the program and exit as it did.
fn relay(child: i32) -> i32 {
    loop {
        let Ok(sig) = sys::wait_any_signal() else { continue };
        if sig != libc::SIGCHLD {
            let _ = sys::kill(child, sig);
            continue;
        }
        while let Ok(Some((pid, how))) = sys::waitpid(-1, true) {
            if pid == child {
                return how.code();
            }
        }
    }
}
