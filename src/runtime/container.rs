//! The container's first process, from clone to execve: cgroup and namespace entry, the
//! overlay rootfs and the standard mounts (all inside the new mount namespace), pivot_root,
//! masked and read-only paths, the tty, the user, capabilities, no_new_privs, seccomp, and
//! the lookup of the program in the image's PATH. Any failure is written to the error pipe as
//! "<exit code> <message>" and the process exits; a successful execve closes the pipe
//! (close-on-exec), which the shim reads as success.

use super::{caps, seccomp, user, BindFile, ContainerSpec, NetworkMode};
use crate::sys;
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why setting up failed: Docker's exit code and a message.
pub(crate) struct Failure(pub i32, pub String);

impl Failure {
    fn other(what: impl std::fmt::Display) -> Failure {
        Failure(125, what.to_string())
    }
}

/// Wrap an io::Error with what was being done.
fn ctx<T>(r: io::Result<T>, what: impl FnOnce() -> String) -> Result<T, Failure> {
    r.map_err(|e| Failure::other(format!("{}: {e}", what())))
}

/// How the process gets its stdio.
pub(crate) enum Stdio {
    /// stdin (pipe or /dev/null), stdout, stderr from the shim.
    Pipes(OwnedFd, OwnedFd, OwnedFd),
    /// Create a pty inside the container and send its master over this socket.
    Tty(OwnedFd),
}

pub(crate) struct InitContext {
    pub spec: ContainerSpec,
    pub rootfs: PathBuf,
    /// The shim moves this process into the container's cgroups while it sets up its mounts
    /// (a v1 cgroup move waits for an RCU grace period: better spent in parallel), then
    /// writes one byte here.
    pub cgroups_joined: OwnedFd,
    pub stdio: Stdio,
    pub err_pipe: OwnedFd,
}

/// Docker's masked paths: hidden behind /dev/null (files) or an empty read-only tmpfs (dirs).
pub(crate) const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub(crate) const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Run in the cloned child: set up and exec, never returning.
pub(crate) fn run(ctx: InitContext) -> ! {
    let err_fd = ctx.err_pipe.as_raw_fd();
    let Failure(code, msg) = match setup_and_exec(&ctx) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    report_failure(err_fd, code, &msg);
    sys::exit_now(code)
}

pub(crate) fn report_failure(fd: RawFd, code: i32, msg: &str) {
    let line = format!("{code} {msg}");
    // SAFETY: fd is the error pipe's write end, owned by this process; the buffer is valid.
    unsafe { libc::write(fd, line.as_ptr() as *const libc::c_void, line.len()) };
}

fn setup_and_exec(c: &InitContext) -> Result<std::convert::Infallible, Failure> {
    let spec = &c.spec;
    sys::umask(0);
    let _ = sys::setsid();
    match &spec.network {
        NetworkMode::None => ctx(sys::loopback_up(), || "bringing up lo".into())?,
        NetworkMode::Host => {}
        NetworkMode::Path(p) => {
            let f = ctx(fs::File::open(p), || {
                format!("opening network namespace {}", p.display())
            })?;
            ctx(sys::setns(f.as_raw_fd(), sys::CLONE_NEWNET), || {
                format!("joining network namespace {}", p.display())
            })?;
        }
    }
    if let Stdio::Pipes(stdin, stdout, stderr) = &c.stdio {
        for (fd, to) in [(stdin, 0), (stdout, 1), (stderr, 2)] {
            ctx(sys::dup2(fd.as_raw_fd(), to), || "setting up stdio".into())?;
        }
    }
    // Private, unless a mount asks for shared or slave propagation: then a slave, so that
    // host mounts still reach it and nothing the container mounts reaches the host.
    let propagation = if super::mounts::wants_propagation(&spec.mounts) {
        sys::MS_SLAVE
    } else {
        sys::MS_PRIVATE
    };
    ctx(
        sys::mount(None, Path::new("/"), None, sys::MS_REC | propagation, None),
        || "making mounts private".into(),
    )?;
    mount_rootfs(spec, &c.rootfs)?;
    mount_standard(spec, &c.rootfs)?;
    bind_files(&spec.files, &c.rootfs)?;
    super::mounts::mount_all(&spec.mounts, &c.rootfs)?;
    pivot_into(&c.rootfs)?;
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    let id = user::resolve(&spec.user, &passwd, &group).map_err(Failure::other)?;
    if let Stdio::Tty(sock) = &c.stdio {
        setup_tty(sock.as_raw_fd(), id.uid)?;
    }
    if !spec.privileged {
        mask_paths()?;
    }
    if spec.readonly_rootfs {
        let flags = sys::MS_BIND | sys::MS_REMOUNT | sys::MS_RDONLY;
        ctx(sys::mount(None, Path::new("/"), None, flags, None), || {
            "making rootfs read-only".into()
        })?;
    }
    wait_for_cgroups(c.cgroups_joined.as_raw_fd())?;
    // The container's cgroups become the root of its own cgroup namespace.
    ctx(sys::unshare(sys::CLONE_NEWCGROUP), || {
        "creating cgroup namespace".into()
    })?;
    if !spec.hostname.is_empty() {
        ctx(sys::sethostname(&spec.hostname), || {
            format!("setting hostname {:?}", spec.hostname)
        })?;
    }
    let env = container_env(&spec.env, &id.home);
    let cwd = if spec.cwd.is_empty() {
        "/"
    } else {
        spec.cwd.as_str()
    };
    ctx(fs::create_dir_all(cwd), || {
        format!("creating working directory {cwd}")
    })?;
    ctx(std::env::set_current_dir(cwd), || {
        format!("changing to working directory {cwd}")
    })?;
    sys::umask(0o022);
    let program = find_program(&spec.args[0], &env)?;
    let cap_mask = caps::resolve(
        spec.privileged,
        &spec.cap_add,
        &spec.cap_drop,
        sys::cap_last_cap(),
    )
    .map_err(Failure::other)?;
    harden(&id, cap_mask, spec.privileged)?;
    if spec.init {
        reaper(c.err_pipe.as_raw_fd())?;
    }
    exec(&program, &spec.args, &env)
}

fn wait_for_cgroups(fd: RawFd) -> Result<(), Failure> {
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: reading one byte into a valid buffer.
        let n = unsafe { libc::read(fd, byte.as_mut_ptr() as *mut libc::c_void, 1) };
        if n == 1 {
            return Ok(());
        }
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return Err(Failure::other(
            "the shim could not place the container in its cgroups",
        ));
    }
}

/// Apply identity, capabilities, no_new_privs and seccomp to the current process.
pub(crate) fn harden(id: &user::Identity, cap_mask: u64, privileged: bool) -> Result<(), Failure> {
    // "All" means all that this process may still hand out (a daemon may run with a reduced
    // bounding set itself).
    let cap_mask = cap_mask & sys::bounding_set();
    for cap in 0..=sys::cap_last_cap() {
        if cap_mask & caps::bit(cap) == 0 {
            ctx(sys::capbset_drop(cap), || {
                format!("dropping capability {cap} from the bounding set")
            })?;
        }
    }
    ctx(sys::set_keepcaps(true), || "keeping capabilities".into())?;
    ctx(sys::set_ids(id.uid, id.gid, &id.groups), || {
        format!("switching to uid {} gid {}", id.uid, id.gid)
    })?;
    ctx(sys::set_keepcaps(false), || "resetting keepcaps".into())?;
    // Like Docker: root keeps the set through execve; any other uid ends up with empty
    // effective and permitted sets (only the bounding set stays).
    ctx(sys::capset(cap_mask, cap_mask, 0), || {
        "setting capabilities".into()
    })?;
    let _ = sys::clear_ambient();
    ctx(sys::set_no_new_privs(), || "setting no_new_privs".into())?;
    if !privileged {
        let filter = seccomp::to_kernel(&seccomp::program(cap_mask));
        ctx(sys::seccomp_filter(&filter), || {
            "installing seccomp filter".into()
        })?;
    }
    Ok(())
}

fn mkdirs(p: &Path) -> Result<(), Failure> {
    ctx(fs::create_dir_all(p), || format!("creating {}", p.display()))
}

fn mount_rootfs(spec: &ContainerSpec, root: &Path) -> Result<(), Failure> {
    let r = &spec.rootfs;
    if r.lower.is_empty() {
        return Err(Failure::other("rootfs has no lower layer"));
    }
    let lower: Vec<String> = r.lower.iter().map(|p| p.display().to_string()).collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        r.upper.display(),
        r.work.display()
    );
    if data.len() >= 4096 {
        return Err(Failure::other(format!(
            "overlay options are {} bytes, over the kernel's page limit",
            data.len()
        )));
    }
    mkdirs(root)?;
    ctx(
        sys::mount(Some("overlay"), root, Some("overlay"), 0, Some(&data)),
        || format!("mounting overlay ({data}) on {}", root.display()),
    )
}

fn mount_standard(spec: &ContainerSpec, root: &Path) -> Result<(), Failure> {
    use sys::{MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_STRICTATIME};
    let m = |src: &str, target: &str, fstype: &str, flags, data: Option<&str>| -> Result<(), Failure> {
        let t = root.join(target);
        mkdirs(&t)?;
        ctx(sys::mount(Some(src), &t, Some(fstype), flags, data), || {
            format!("mounting {fstype} on /{target}")
        })
    };
    m("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)?;
    m(
        "tmpfs",
        "dev",
        "tmpfs",
        MS_NOSUID | MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    let dev = root.join("dev");
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let p = dev.join(name);
        ctx(sys::mknod_char(&p, 0o666, major, minor), || {
            format!("creating /dev/{name}")
        })?;
    }
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        ctx(std::os::unix::fs::symlink(target, dev.join(link)), || {
            format!("linking /dev/{link}")
        })?;
    }
    m(
        "devpts",
        "dev/pts",
        "devpts",
        MS_NOSUID | MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    m(
        "shm",
        "dev/shm",
        "tmpfs",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )?;
    m(
        "mqueue",
        "dev/mqueue",
        "mqueue",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        None,
    )?;
    let ro = if spec.privileged { 0 } else { MS_RDONLY };
    m(
        "sysfs",
        "sys",
        "sysfs",
        MS_NOSUID | MS_NODEV | MS_NOEXEC | ro,
        None,
    )?;
    if spec.tty {
        ctx(fs::File::create(dev.join("console")), || {
            "creating /dev/console".into()
        })?;
    }
    Ok(())
}

/// Bind the daemon's files (hosts, hostname, resolv.conf) into the rootfs. The target is
/// resolved without following symlinks, so an image cannot point a mount at a host path: a
/// symlink in the last component is replaced by a plain file (in the container's upper
/// layer), one in a parent directory is an error.
fn bind_files(files: &[BindFile], root: &Path) -> Result<(), Failure> {
    for f in files {
        let rel = Path::new(&f.container);
        if !rel.is_absolute()
            || rel
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(Failure::other(format!(
                "bind target {:?} must be an absolute path without ..",
                f.container
            )));
        }
        let mut target = root.to_path_buf();
        let parts: Vec<_> = rel.components().skip(1).collect();
        for (i, part) in parts.iter().enumerate() {
            target.push(part);
            let last = i + 1 == parts.len();
            match fs::symlink_metadata(&target) {
                Ok(m) if m.file_type().is_symlink() && last => {
                    ctx(fs::remove_file(&target), || {
                        format!("replacing symlink {}", f.container)
                    })?;
                }
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(Failure::other(format!(
                        "bind target {}: a parent directory is a symlink",
                        f.container
                    )));
                }
                Ok(_) => continue,
                Err(_) if !last => mkdirs(&target)?,
                Err(_) => {}
            }
            if last {
                ctx(fs::File::create(&target), || format!("creating {}", f.container))?;
            }
        }
        ctx(sys::bind(&f.host, &target, false), || {
            format!("binding {} at {}", f.host.display(), f.container)
        })?;
        if f.readonly {
            let flags = sys::MS_BIND | sys::MS_REMOUNT | sys::MS_RDONLY;
            ctx(sys::mount(None, &target, None, flags, None), || {
                format!("making {} read-only", f.container)
            })?;
        }
    }
    Ok(())
}

fn pivot_into(root: &Path) -> Result<(), Failure> {
    ctx(std::env::set_current_dir(root), || {
        format!("entering {}", root.display())
    })?;
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves
    // only the container's tree, without needing a directory for the old root.
    ctx(sys::pivot_root(Path::new("."), Path::new(".")), || {
        "pivot_root".into()
    })?;
    ctx(sys::umount2(Path::new("."), sys::MNT_DETACH), || {
        "detaching the old root".into()
    })?;
    ctx(std::env::set_current_dir("/"), || "entering /".into())
}

fn setup_tty(sock: RawFd, uid: u32) -> Result<(), Failure> {
    let (master, slave) = ctx(sys::open_pty(Path::new("/dev/pts/ptmx")), || {
        "creating the container's pty".into()
    })?;
    let n = ctx(sys::pty_number(master.as_raw_fd()), || {
        "reading the pty number".into()
    })?;
    // SAFETY: fchown on an fd we own, with plain ids (tty group 5 as devpts' gid= option).
    unsafe { libc::fchown(slave.as_raw_fd(), uid, 5) };
    ctx(sys::send_fd(sock, master.as_raw_fd()), || {
        "handing the pty to the shim".into()
    })?;
    drop(master);
    let path = PathBuf::from(format!("/dev/pts/{n}"));
    ctx(sys::bind(&path, Path::new("/dev/console"), false), || {
        "binding /dev/console".into()
    })?;
    for to in 0..3 {
        ctx(sys::dup2(slave.as_raw_fd(), to), || "setting up the tty".into())?;
    }
    ctx(sys::set_controlling_tty(0), || {
        "setting the controlling tty".into()
    })
}

fn mask_paths() -> Result<(), Failure> {
    for p in MASKED_PATHS {
        let path = Path::new(p);
        let Ok(meta) = fs::metadata(path) else { continue };
        let r = if meta.is_dir() {
            sys::mount(Some("tmpfs"), path, Some("tmpfs"), sys::MS_RDONLY, Some("size=0"))
        } else {
            sys::bind(Path::new("/dev/null"), path, false)
        };
        ctx(r, || format!("masking {p}"))?;
    }
    for p in READONLY_PATHS {
        let path = Path::new(p);
        if fs::symlink_metadata(path).is_err() {
            continue;
        }
        ctx(sys::bind(path, path, true), || format!("binding {p}"))?;
        let flags =
            sys::MS_BIND | sys::MS_REMOUNT | sys::MS_RDONLY | sys::MS_NOSUID | sys::MS_NODEV | sys::MS_NOEXEC;
        ctx(sys::mount(None, path, None, flags, None), || {
            format!("making {p} read-only")
        })?;
    }
    Ok(())
}

/// The environment with PATH and HOME filled in when the image did not set them.
pub(crate) fn container_env(env: &[String], home: &str) -> Vec<String> {
    let mut env = env.to_vec();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    env
}

/// Find `name` like execvp, in the PATH of `env`, classifying failures as Docker does.
/// An OS error as Go (and so docker's CLI, which matches on it) spells it:
/// "no such file or directory", without Rust's " (os error 2)".
fn errno_text(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    text.to_lowercase()
}

pub(crate) fn find_program(name: &str, env: &[String]) -> Result<PathBuf, Failure> {
    if name.is_empty() {
        return Err(Failure(
            127,
            "exec: \"\": executable file not found in $PATH".into(),
        ));
    }
    if name.contains('/') {
        return match fs::metadata(name) {
            Ok(_) => Ok(PathBuf::from(name)),
            Err(e) => Err(Failure(
                127,
                format!("exec: {name:?}: stat {name}: {}", errno_text(&e)),
            )),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut denied = None;
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        let Ok(meta) = fs::metadata(&candidate) else {
            continue;
        };
        use std::os::unix::fs::PermissionsExt;
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            return Ok(candidate);
        }
        denied.get_or_insert(candidate);
    }
    match denied {
        Some(p) => Err(Failure(
            126,
            format!("exec: {:?}: permission denied", p.display().to_string()),
        )),
        None => Err(Failure(
            127,
            format!("exec: {name:?}: executable file not found in $PATH"),
        )),
    }
}

/// execve, returning the failure classified: missing → 127, not runnable → 126.
pub(crate) fn exec(
    program: &Path,
    args: &[String],
    env: &[String],
) -> Result<std::convert::Infallible, Failure> {
    let to_c = |s: &str| CString::new(s).map_err(|_| Failure::other(format!("{s:?} contains NUL")));
    let path = CString::new(program.as_os_str().as_bytes())
        .map_err(|_| Failure::other("program path contains NUL"))?;
    let argv = args.iter().map(|a| to_c(a)).collect::<Result<Vec<_>, _>>()?;
    let envp = env.iter().map(|e| to_c(e)).collect::<Result<Vec<_>, _>>()?;
    sys::reset_signals();
    let err = sys::execve(&path, &argv, &envp);
    let shown = program.display();
    Err(match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => {
            Failure(127, format!("exec: \"{shown}\": {}", errno_text(&err)))
        }
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::ENOEXEC) | Some(libc::EISDIR)
        | Some(libc::ETXTBSY) => Failure(126, format!("exec: \"{shown}\": {}", errno_text(&err))),
        _ => Failure::other(format!("exec: \"{shown}\": {}", errno_text(&err))),
    })
}

/// With `--init`: fork; the child goes on to exec the program while this process stays as
/// PID 1, reaping zombies and forwarding signals, and exits with the program's status.
fn reaper(err_pipe: RawFd) -> Result<(), Failure> {
    sys::block_all_signals();
    // SAFETY: the container's init is single-threaded.
    let child = ctx(unsafe { sys::fork() }, || "forking the init's child".into())?;
    if child == 0 {
        return Ok(());
    }
    // Keep only stdio: the error pipe must be decided by the program's execve alone, and the
    // shim's descriptors (status pipe, sockets) must not live on in a process that never execs.
    let _ = err_pipe;
    sys::close_fds_from(3);
    let _ = io::stdout().flush();
    loop {
        let Ok(sig) = sys::wait_any_signal() else { continue };
        if sig != libc::SIGCHLD {
            let _ = sys::kill(child, sig);
            continue;
        }
        while let Ok(Some((pid, how))) = sys::waitpid(-1, true) {
            if pid == child {
                sys::exit_now(how.code());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_gets_defaults_only_when_missing() {
        let e = container_env(&["A=1".into()], "/root");
        assert!(e.contains(&format!("PATH={DEFAULT_PATH}")) && e.contains(&"HOME=/root".to_string()));
        let e = container_env(&["PATH=/x".into(), "HOME=/h".into()], "/root");
        assert_eq!(e, vec!["PATH=/x".to_string(), "HOME=/h".to_string()]);
    }

    #[test]
    fn program_lookup_classifies_like_docker() {
        let env = vec!["PATH=/nonexistent:/bin".to_string()];
        assert!(find_program("sh", &env).is_ok());
        assert_eq!(
            find_program("no-such-program-here", &env).err().map(|f| f.0),
            Some(127)
        );
        assert_eq!(find_program("/no/such", &env).err().map(|f| f.0), Some(127));
        let env = vec!["PATH=/etc".to_string()];
        assert_eq!(find_program("passwd", &env).err().map(|f| f.0), Some(126));
    }
}
