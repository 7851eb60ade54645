//! Containers: spec, namespaces, mounts, cgroups v1+v2, capabilities, seccomp, the shim, exec.
//!
//! Guarantees:
//! - [`start`] returns once the container's program has been exec'd (or with the reason it
//!   could not be: 127 not found, 126 cannot invoke, 125 anything else). No sleeps or polling.
//! - Each container has one shim process (this binary, re-executed and detached in its own
//!   session) holding the container's stdio, writing its log and recording its exit in
//!   `exit.json`. The shim does not depend on the daemon: a daemon killed with SIGKILL and
//!   started again finds running containers through the shim's socket and state files.
//! - The rootfs overlay and every mount of the container exist only inside the container's
//!   mount namespace; nothing is mounted on the host.
//!
//! Files in a container dir: `spec.json` (written by [`start`]), `state.json` (pid, start
//! time and cgroups, written by the shim once the program runs), `shim.sock`,
//! `container.log*`, `exit.json` (written atomically and durably by the shim after the exit).
//!
//! `spec.json` and `state.json` describe processes, which a power cut ends anyway: they are
//! replaced by rename (never half-written) but not fsynced, keeping disk flushes out of the
//! start path. The daemon keeps its own durable record of each container.

pub mod caps;
pub mod cgroup;
mod container;
pub mod devices;
pub mod exec;
pub mod logs;
pub mod mount_opts;
mod mounts;
mod proto;
pub mod seccomp;
pub mod shim;
pub mod top;
pub mod user;

pub use cgroup::Stats;
pub use exec::{exec, ExecProcess, ExecSpec};
pub use top::{top, ProcessRow};

use serde::{Deserialize, Serialize};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub(crate) const SPEC_FILE: &str = "spec.json";
pub(crate) const STATE_FILE: &str = "state.json";
pub(crate) const EXIT_FILE: &str = "exit.json";
pub(crate) const SHIM_LOG: &str = "shim.log";
/// The mount point of the rootfs inside the container's mount namespace (empty on the host).
pub(crate) const ROOTFS_DIR: &str = "rootfs";

/// Everything needed to run one container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub id: String,
    pub hostname: String,
    /// argv; argv[0] is looked up in PATH (from `env`) inside the rootfs.
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Created if missing, like Docker.
    pub cwd: String,
    /// "", "name", "uid", "uid:gid", "name:group", resolved from the rootfs's /etc/passwd and
    /// /etc/group (supplementary groups too).
    pub user: String,
    pub tty: bool,
    pub open_stdin: bool,
    pub rootfs: RootfsSpec,
    pub readonly_rootfs: bool,
    /// "NET_ADMIN", "CAP_NET_ADMIN" or "ALL".
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    /// Run a small reaper as PID 1 that forwards signals to the program.
    pub init: bool,
    pub network: NetworkMode,
    /// Sub-path under the daemon's own cgroup in each hierarchy; the container's cgroup is
    /// `<daemon cgroup>/<cgroup_parent>/<id>`.
    pub cgroup_parent: String,
    pub log: LogSpec,
    /// Files bind-mounted into the container (/etc/hosts, /etc/hostname, /etc/resolv.conf).
    pub files: Vec<BindFile>,
    pub stop_signal: i32,
    /// Volumes, binds and tmpfs, mounted in this order (parents first) after the rootfs,
    /// the standard mounts and `files`.
    #[serde(default)]
    pub mounts: Vec<Mount>,
}

/// One mount of a container, applied inside its mount namespace before pivot_root. The
/// destination is resolved inside the rootfs: symlinks in the image cannot lead it out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the container.
    pub destination: String,
    pub kind: MountKind,
    /// Host path of a bind (a volume's data directory or a host directory or file).
    pub source: PathBuf,
    /// Mount option words (`rbind`, `ro`, `rprivate`, `nosuid`, `size=64m`, ...); see
    /// [`mount_opts::parse`].
    pub options: Vec<String>,
    /// Before mounting, copy the image's content at the destination into an empty source.
    pub copy_up: bool,
    /// Bind this path inside `source` instead of all of it, resolved without leaving
    /// `source` (it is content the container controls). Must exist.
    #[serde(default)]
    pub subpath: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    #[default]
    Bind,
    Tmpfs,
}

/// An overlay rootfs, mounted inside the container's mount namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootfsSpec {
    /// Top-most first; must not be empty.
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// A new network namespace with only `lo`, up.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// Join the network namespace at this path (e.g. a bind-mounted /proc/<pid>/ns/net).
    Path(PathBuf),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogSpec {
    /// Rotate when the file would grow past this many bytes; 0 = unbounded.
    pub max_size: u64,
    /// Files kept, the current one included.
    pub max_file: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BindFile {
    pub host: PathBuf,
    /// Absolute path inside the container.
    pub container: String,
    pub readonly: bool,
}

/// Why a container or exec could not be started; `code()` is Docker's exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// The program was not found (127).
    NotFound(String),
    /// The program exists but cannot be run (126).
    CannotInvoke(String),
    /// Anything else (125).
    Other(String),
}

impl StartError {
    pub fn code(&self) -> i32 {
        match self {
            StartError::NotFound(_) => 127,
            StartError::CannotInvoke(_) => 126,
            StartError::Other(_) => 125,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            StartError::NotFound(m) | StartError::CannotInvoke(m) | StartError::Other(m) => m,
        }
    }

    pub(crate) fn from_code(code: i32, msg: String) -> StartError {
        match code {
            127 => StartError::NotFound(msg),
            126 => StartError::CannotInvoke(msg),
            _ => StartError::Other(msg),
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for StartError {}

/// How a container ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The exit code, or 128+N when killed by signal N.
    pub code: i32,
    pub oom_killed: bool,
    /// RFC 3339 with nanoseconds, UTC.
    pub finished_at: String,
    /// Why the program could not start, or why the exit is unknown; empty normally.
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    NotStarted,
    Running { pid: u32, started_at: String },
    Exited(ExitInfo),
}

/// What the shim records once the program runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RunState {
    pub pid: u32,
    pub shim_pid: u32,
    pub started_at: String,
    pub cgroups: cgroup::Cgroups,
}

/// Replace `path` with the JSON of `value` by writing a temp file and renaming it over: a
/// reader sees the old or the new file, never a mix. Not fsynced: for state that describes
/// running processes and so means nothing after a power cut (see the module doc).
pub(crate) fn write_runtime_file<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let data = serde_json::to_vec(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, &data)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io::Error::new(e.kind(), format!("writing {}: {e}", path.display()))
        })
}

/// Which output stream a chunk came from. With a tty everything is `Stdout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

static SHIM_BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Use `path` (a shoal binary) as the shim instead of /proc/self/exe; for programs that link
/// the runtime but are not shoal themselves, such as tests. Only the first call counts.
pub fn set_shim_binary(path: PathBuf) {
    let _ = SHIM_BINARY.set(path);
}

pub(crate) fn shim_binary() -> PathBuf {
    SHIM_BINARY
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"))
}

fn other(e: impl std::fmt::Display) -> StartError {
    StartError::Other(e.to_string())
}

/// Start a container in `dir` (which must exist): writes `spec.json`, spawns the shim and
/// returns the host pid of the container's init once its program has been exec'd.
pub fn start(dir: &Path, spec: &ContainerSpec) -> Result<u32, StartError> {
    start_with(dir, spec, false).map(|(pid, _)| pid)
}

/// Like [`start`], with an attach stream connected before the program runs, so not a byte of
/// its output is missed (`docker run` without `-d`, `docker start -a`). Works even for a
/// program that exits at once: the stream ends after its last output.
pub fn start_attached(dir: &Path, spec: &ContainerSpec) -> Result<(u32, Attach), StartError> {
    let (pid, attach) = start_with(dir, spec, true)?;
    let attach = attach.ok_or_else(|| StartError::Other("shim attach stream missing".into()))?;
    Ok((pid, attach))
}

fn start_with(dir: &Path, spec: &ContainerSpec, attached: bool) -> Result<(u32, Option<Attach>), StartError> {
    if spec.args.is_empty() {
        return Err(StartError::Other("no command specified".into()));
    }
    if spec.rootfs.lower.is_empty() {
        return Err(StartError::Other(format!(
            "container {}: rootfs has no lower layer",
            spec.id
        )));
    }
    if let ContainerState::Running { pid, .. } = state(dir) {
        return Err(StartError::Other(format!(
            "container in {} is already running (pid {pid})",
            dir.display()
        )));
    }
    for stale in [EXIT_FILE, STATE_FILE] {
        match std::fs::remove_file(dir.join(stale)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(other(e)),
            _ => {}
        }
    }
    write_runtime_file(&dir.join(SPEC_FILE), spec).map_err(other)?;
    let (status_r, status_w) = crate::sys::pipe().map_err(other)?;
    let (client, shim_end) = if attached {
        let (a, b) = crate::sys::socketpair().map_err(other)?;
        (Some(a), Some(b))
    } else {
        (None, None)
    };
    let shim_log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(SHIM_LOG))
        .map_err(|e| other(format!("opening {}: {e}", dir.join(SHIM_LOG).display())))?;
    let mut cmd = std::process::Command::new(shim_binary());
    cmd.arg("shim").arg(dir);
    if attached {
        cmd.arg("--attached");
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(shim_log);
    let status_fd = status_w.as_raw_fd();
    let shim_fd = shim_end.as_ref().map(|f| f.as_raw_fd());
    // SAFETY: the closure runs between fork and exec and only calls fcntl and dup2, which
    // are async-signal-safe; dup2 also clears close-on-exec on the new descriptors.
    unsafe {
        cmd.pre_exec(move || match shim_fd {
            Some(fd) => crate::sys::place_fds(&[(status_fd, shim::STATUS_FD), (fd, shim::ATTACH_FD)]),
            None => crate::sys::place_fds(&[(status_fd, shim::STATUS_FD)]),
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| other(format!("spawning shim {}: {e}", shim_binary().display())))?;
    drop(status_w);
    drop(shim_end);
    let mut report = String::new();
    let read = std::fs::File::from(status_r).read_to_string(&mut report);
    // The shim's first process exits right after forking the detached shim.
    let _ = child.wait();
    read.map_err(|e| other(format!("reading shim status: {e}")))?;
    let (pid, report_err) = shim::parse_report(&report);
    if let Some(err) = report_err {
        return Err(err);
    }
    let attach = client.map(|fd| Attach {
        sock: UnixStream::from(fd),
    });
    Ok((pid, attach))
}

/// The container's state, from its files and its shim.
pub fn state(dir: &Path) -> ContainerState {
    if let Ok(exit) = crate::storage::atomic::read_json::<ExitInfo>(&dir.join(EXIT_FILE)) {
        return ContainerState::Exited(exit);
    }
    let Ok(run) = crate::storage::atomic::read_json::<RunState>(&dir.join(STATE_FILE)) else {
        return ContainerState::NotStarted;
    };
    if proto::connect(dir).is_ok() {
        return ContainerState::Running {
            pid: run.pid,
            started_at: run.started_at,
        };
    }
    // The shim may have finished between the two reads.
    if let Ok(exit) = crate::storage::atomic::read_json::<ExitInfo>(&dir.join(EXIT_FILE)) {
        return ContainerState::Exited(exit);
    }
    ContainerState::Exited(lost_shim(dir))
}

fn lost_shim(dir: &Path) -> ExitInfo {
    ExitInfo {
        code: 255,
        oom_killed: false,
        finished_at: crate::timefmt::now(),
        error: format!("the shim of {} is gone without recording an exit", dir.display()),
    }
}

/// Block until the container has exited; returns how.
pub fn wait(dir: &Path) -> io::Result<ExitInfo> {
    let read_exit = || crate::storage::atomic::read_json::<ExitInfo>(&dir.join(EXIT_FILE));
    if let Ok(e) = read_exit() {
        return Ok(e);
    }
    match proto::connect(dir) {
        Ok(mut sock) => {
            // The shim never writes to an idle connection; EOF means the exit is recorded.
            // A reset means the shim exited before accepting this connection: also the end.
            let mut sink = [0u8; 64];
            loop {
                match sock.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("waiting for {}: {e}", dir.display()),
                        ))
                    }
                }
            }
            read_exit().or_else(|_| Ok(lost_shim(dir)))
        }
        Err(e) => read_exit().or_else(|_| {
            if dir.join(STATE_FILE).exists() {
                Ok(lost_shim(dir))
            } else {
                Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("container in {} is not started ({e})", dir.display()),
                ))
            }
        }),
    }
}

fn request(dir: &Path, kind: u8, payload: &[u8]) -> io::Result<()> {
    let mut sock = proto::connect(dir).map_err(|e| {
        if dir.join(EXIT_FILE).exists() {
            io::Error::new(
                io::ErrorKind::NotConnected,
                format!("container in {} is not running", dir.display()),
            )
        } else {
            e
        }
    })?;
    proto::write_frame(&mut sock, kind, payload)?;
    match proto::read_frame(&mut sock)? {
        Some((proto::OK, _)) => Ok(()),
        Some((proto::ERR, msg)) => Err(io::Error::other(String::from_utf8_lossy(&msg).into_owned())),
        _ => Err(io::Error::new(
            io::ErrorKind::NotConnected,
            format!("container in {} is not running", dir.display()),
        )),
    }
}

/// Send `signal` to the container's init.
pub fn kill(dir: &Path, signal: i32) -> io::Result<()> {
    request(dir, proto::KILL, &signal.to_be_bytes())
}

/// Resize the container's tty.
pub fn resize(dir: &Path, rows: u16, cols: u16) -> io::Result<()> {
    let mut p = rows.to_be_bytes().to_vec();
    p.extend_from_slice(&cols.to_be_bytes());
    request(dir, proto::RESIZE, &p)
}

/// A live connection to a container's stdio.
pub struct Attach {
    sock: UnixStream,
}

/// Attach to a running container: its output from now on, and its stdin.
pub fn attach(dir: &Path) -> io::Result<Attach> {
    let mut sock = proto::connect(dir)?;
    proto::write_frame(&mut sock, proto::ATTACH, &[])?;
    Ok(Attach { sock })
}

impl Attach {
    /// The next chunk of output; `None` once the container has exited and all output was read.
    pub fn read_output(&mut self) -> Option<(Stream, Vec<u8>)> {
        loop {
            match proto::read_frame(&mut self.sock) {
                Ok(Some((proto::STDOUT, data))) => return Some((Stream::Stdout, data)),
                Ok(Some((proto::STDERR, data))) => return Some((Stream::Stderr, data)),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    }

    pub fn write_stdin(&mut self, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(64 * 1024) {
            proto::write_frame(&mut self.sock, proto::STDIN, chunk)?;
        }
        Ok(())
    }

    pub fn close_stdin(&mut self) -> io::Result<()> {
        proto::write_frame(&mut self.sock, proto::CLOSE_STDIN, &[])
    }

    pub fn resize(&mut self, rows: u16, cols: u16) -> io::Result<()> {
        let mut p = rows.to_be_bytes().to_vec();
        p.extend_from_slice(&cols.to_be_bytes());
        proto::write_frame(&mut self.sock, proto::RESIZE, &p)
    }

    /// A second handle on the same stream, e.g. one thread reading output, one writing stdin.
    pub fn try_clone(&self) -> io::Result<Attach> {
        Ok(Attach {
            sock: self.sock.try_clone()?,
        })
    }
}

pub(crate) fn read_cgroups(dir: &Path) -> io::Result<cgroup::Cgroups> {
    Ok(read_run_state(dir)?.cgroups)
}

pub(crate) fn read_run_state(dir: &Path) -> io::Result<RunState> {
    crate::storage::atomic::read_json(&dir.join(STATE_FILE))
}

/// Resource usage of a running container, from its cgroups (v1 or v2).
pub fn stats(dir: &Path) -> io::Result<Stats> {
    read_cgroups(dir)?.stats()
}

/// After the exit: remove the container's cgroups and the shim's runtime files. Logs, spec
/// and exit record stay (they are the container's history until it is removed).
pub fn cleanup(dir: &Path) -> io::Result<()> {
    if let Ok(cg) = read_cgroups(dir) {
        cg.remove()?;
    }
    let _ = std::fs::remove_file(dir.join(proto::SOCKET));
    Ok(())
}
