//! The one seam to the kernel for mounts, namespaces, capabilities, seccomp and ptys.
//!
//! Each function is a thin, checked wrapper over one system call: it converts the result into
//! an `io::Error` (the caller adds which path or value was involved) and does nothing else, so
//! the logic deciding *what* to call stays in `runtime/` where it can be read and tested.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use libc::{
    CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUTS, MNT_DETACH,
    MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT, MS_SLAVE,
    MS_STRICTATIME,
};

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A path as a C string; a NUL inside is an `InvalidInput` error naming the path.
pub fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: path contains NUL", path.display()),
        )
    })
}

/// A string as a C string; a NUL inside is an `InvalidInput` error naming the value.
pub fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{s:?} contains NUL")))
}

/// mount(2). `source`, `fstype`, `data` may be absent.
pub fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(cstring).transpose()?;
    let fstype = fstype.map(cstring).transpose()?;
    let data = data.map(cstring).transpose()?;
    let target = cstr(target)?;
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is either null or a valid NUL-terminated string living until return.
    check(unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data) as *const libc::c_void,
        )
    })?;
    Ok(())
}

/// Bind-mount `source` onto `target`.
pub fn bind(source: &Path, target: &Path, recursive: bool) -> io::Result<()> {
    let source = source.to_str().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not UTF-8", source.display()),
        )
    })?;
    let flags = MS_BIND | if recursive { MS_REC } else { 0 };
    mount(Some(source), target, None, flags, None)
}

/// mount_setattr(2) making the mount at `fd` (an `O_PATH` descriptor of its root) and every
/// mount below it read-only. ENOSYS on kernels before 5.12.
pub fn make_tree_readonly(fd: RawFd) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 1;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is an empty NUL-terminated string, `attr` lives until return and its
    // size is passed; the kernel only reads it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret as libc::c_int)?;
    Ok(())
}

/// flock(2) with LOCK_EX: wait for an exclusive lock on the open file or directory `fd`;
/// released when the descriptor is closed.
pub fn lock_exclusive(fd: RawFd) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor the caller owns.
        let r = unsafe { libc::flock(fd, libc::LOCK_EX) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// umount2(2).
pub fn umount2(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let target = cstr(target)?;
    // SAFETY: target is a valid NUL-terminated string.
    check(unsafe { libc::umount2(target.as_ptr(), flags) })?;
    Ok(())
}

/// pivot_root(2).
pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let new_root = cstr(new_root)?;
    let put_old = cstr(put_old)?;
    // SAFETY: both arguments are valid NUL-terminated strings.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    check(ret as libc::c_int)?;
    Ok(())
}

/// mknod(2) of a character device.
pub fn mknod_char(path: &Path, mode: u32, major: u32, minor: u32) -> io::Result<()> {
    let p = cstr(path)?;
    // SAFETY: p is a valid NUL-terminated string.
    check(unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR | mode, libc::makedev(major, minor)) })?;
    Ok(())
}

/// sethostname(2).
pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    check(unsafe { libc::sethostname(name.as_ptr() as *const libc::c_char, name.len()) })?;
    Ok(())
}

/// unshare(2).
pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare takes only flags.
    check(unsafe { libc::unshare(flags) })?;
    Ok(())
}

/// setns(2) into the namespace `fd` refers to.
pub fn setns(fd: RawFd, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: setns takes an fd and flags; a bad fd is reported as EBADF.
    check(unsafe { libc::setns(fd, nstype) })?;
    Ok(())
}

/// clone(2) without a new stack: like fork(2), but entering new namespaces given in `flags`.
/// Returns 0 in the child and the child's pid in the parent.
///
/// # Safety
/// As for fork: the caller must be single-threaded, since the child gets a copy of only the
/// calling thread and any lock held by another thread would stay locked forever.
pub unsafe fn clone_fork(flags: libc::c_int) -> io::Result<libc::pid_t> {
    let all = (flags | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: a null stack makes the child continue on a copy-on-write copy of this stack,
    // exactly like fork(); the argument order (flags, stack, ptid, ctid, tls) is x86_64's and
    // aarch64's; armv7 shares it for these null arguments.
    let ret = unsafe { libc::syscall(libc::SYS_clone, all, 0usize, 0usize, 0usize, 0usize) };
    Ok(check(ret as libc::c_int)? as libc::pid_t)
}

/// fork(2).
///
/// # Safety
/// The caller must be single-threaded (see [`clone_fork`]).
pub unsafe fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: the caller guarantees single-threadedness.
    check(unsafe { libc::fork() })
}

/// setsid(2); an error (already a group leader) is ignored by callers that only need a session.
pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid takes no arguments.
    check(unsafe { libc::setsid() })?;
    Ok(())
}

/// Make `fd` the controlling terminal of this session.
pub fn set_controlling_tty(fd: RawFd) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an int argument.
    check(unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) })?;
    Ok(())
}

/// Set a terminal's window size.
pub fn set_winsize(fd: RawFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives until return.
    check(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) })?;
    Ok(())
}

/// dup2(2).
pub fn dup2(from: RawFd, to: RawFd) -> io::Result<()> {
    // SAFETY: dup2 takes two fds; bad ones are reported as EBADF.
    check(unsafe { libc::dup2(from, to) })?;
    Ok(())
}

/// Put each `from` descriptor at its `to` number (clearing close-on-exec there), even when
/// some `from` already sits on another pair's `to`: all are first moved out of the way.
/// Async-signal-safe (no allocation), for use between fork and exec.
pub fn place_fds(pairs: &[(RawFd, RawFd)]) -> io::Result<()> {
    let mut moved = [0 as RawFd; 8];
    if pairs.len() > moved.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors to place",
        ));
    }
    for (i, (from, _)) in pairs.iter().enumerate() {
        // SAFETY: F_DUPFD_CLOEXEC duplicates onto the lowest free number >= 64.
        moved[i] = check(unsafe { libc::fcntl(*from, libc::F_DUPFD_CLOEXEC, 64) })?;
    }
    for (i, (_, to)) in pairs.iter().enumerate() {
        dup2(moved[i], *to)?;
    }
    Ok(())
}

/// A pipe whose both ends are close-on-exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both fds are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A connected pair of close-on-exec unix stream sockets.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors socketpair writes.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded, so both fds are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Set or clear O_NONBLOCK.
pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL take and return plain ints.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) })?;
    Ok(())
}

/// Set or clear FD_CLOEXEC.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    let flag = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: F_SETFD takes a plain int.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, flag) })?;
    Ok(())
}

/// Is `fd` an open descriptor?
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only inspects the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Open a new pseudo-terminal master from the `ptmx` device at `ptmx`, returning the master and
/// the slave (both close-on-exec).
pub fn open_pty(ptmx: &Path) -> io::Result<(OwnedFd, OwnedFd)> {
    let p = cstr(ptmx)?;
    // SAFETY: p is a valid NUL-terminated string.
    let master = check(unsafe { libc::open(p.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) })?;
    // SAFETY: open succeeded; the fd is ours.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let mut unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int that lives until return.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &mut unlock) })?;
    // TIOCGPTPEER opens the slave through the master, so it works whichever devpts instance
    // the master came from, without a path lookup.
    // SAFETY: TIOCGPTPEER takes open flags as its argument.
    let slave = check(unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: the ioctl returned a fresh fd.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

/// The pty number of a slave fd (the N of /dev/pts/N).
pub fn pty_number(master: RawFd) -> io::Result<u32> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes an unsigned int that lives until return.
    check(unsafe { libc::ioctl(master, libc::TIOCGPTN, &mut n) })?;
    Ok(n)
}

/// Send one fd over a unix socket with SCM_RIGHTS.
pub fn send_fd(sock: RawFd, fd: RawFd) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    // u64 alignment is enough for cmsghdr on every supported target.
    let mut space = [0u64; 8];
    // SAFETY: zeroed msghdr is a valid "empty" message; we fill in the fields below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr() as *mut libc::c_void;
    // SAFETY: CMSG_SPACE is a pure size computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as _;
    // SAFETY: the control buffer is large enough for one cmsg carrying one fd (64 bytes).
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd);
    }
    // SAFETY: msg points at live buffers for the duration of the call.
    let ret = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receive one fd sent with [`send_fd`]; `Ok(None)` when the peer closed without sending.
pub fn recv_fd(sock: RawFd) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    let mut space = [0u64; 8];
    // SAFETY: zeroed msghdr is a valid "empty" message; we fill in the fields below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&space) as _;
    // SAFETY: msg points at live buffers for the duration of the call.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled msg; CMSG_FIRSTHDR returns null when no control data came.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return Ok(None);
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd);
        Ok(Some(OwnedFd::from_raw_fd(fd)))
    }
}

/// Block `signals` in this thread and return a close-on-exec signalfd delivering them.
pub fn signalfd(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    let set = sigset(signals);
    // SAFETY: set is a valid sigset; a null old-set pointer is allowed.
    check(unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })?;
    // SAFETY: -1 asks for a new signalfd; set is valid.
    let fd = check(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })?;
    // SAFETY: signalfd returned a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Read one pending signal number from a signalfd (non-blocking); None when none is pending.
pub fn read_signalfd(fd: RawFd) -> Option<u32> {
    // SAFETY: signalfd_siginfo is plain data; zeroed is a valid value.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: info is a writable buffer of `size` bytes.
    let n = unsafe { libc::read(fd, &mut info as *mut _ as *mut libc::c_void, size) };
    (n == size as isize).then_some(info.ssi_signo)
}

fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set; sigaddset only sets bits in it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Block every signal; returns nothing (cannot fail with a valid set).
pub fn block_all_signals() {
    // SAFETY: sigfillset initialises the set; the old-set pointer may be null.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Wait for any signal (all must be blocked first); returns its number.
pub fn wait_any_signal() -> io::Result<libc::c_int> {
    // SAFETY: the set is initialised by sigfillset; info may be null.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        check(libc::sigwaitinfo(&set, std::ptr::null_mut()))
    }
}

/// Restore what a freshly exec'd program expects: no blocked signals and default dispositions
/// for the signals the Rust runtime or this process changed.
pub fn reset_signals() {
    // SAFETY: sigemptyset initialises the set; signal() with SIG_DFL is always valid.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

/// Close every descriptor from `first` up (close_range(2), with a loop for older kernels).
pub fn close_fds_from(first: RawFd) {
    // SAFETY: close_range takes plain ints and only closes descriptors.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, 0) };
    if ret < 0 {
        for fd in first..1024 {
            // SAFETY: closing a descriptor number; an unused one gives EBADF, which is fine.
            unsafe { libc::close(fd) };
        }
    }
}

/// kill(2).
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill takes plain ints.
    check(unsafe { libc::kill(pid, signal) })?;
    Ok(())
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    Code(i32),
    Signal(i32),
}

impl ChildExit {
    /// The shell convention: the exit code, or 128+N for signal N.
    pub fn code(self) -> i32 {
        match self {
            ChildExit::Code(c) => c,
            ChildExit::Signal(s) => 128 + s,
        }
    }
}

/// waitpid(2); `Ok(None)` with `nohang` when no child has changed state.
pub fn waitpid(pid: i32, nohang: bool) -> io::Result<Option<(i32, ChildExit)>> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid int to write into.
        let ret = unsafe { libc::waitpid(pid, &mut status, if nohang { libc::WNOHANG } else { 0 }) };
        if ret < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if ret == 0 {
            return Ok(None);
        }
        let exit = if libc::WIFSIGNALED(status) {
            ChildExit::Signal(libc::WTERMSIG(status))
        } else {
            ChildExit::Code(libc::WEXITSTATUS(status))
        };
        return Ok(Some((ret, exit)));
    }
}

/// _exit(2): leave at once without running destructors or atexit handlers (used in forked
/// children, whose copies of the parent's buffers must not be flushed twice).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and takes a plain int.
    unsafe { libc::_exit(code) }
}

/// execve(2); returns only on failure.
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: path, argv and envp are NUL-terminated arrays of valid strings living until return.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    io::Error::last_os_error()
}

/// umask(2).
pub fn umask(mask: u32) {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) };
}

/// setgroups, setgid, setuid (in that order, so the gid change is still permitted).
pub fn set_ids(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
    let groups: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY: the pointer and length describe `groups`.
    check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) })?;
    // Raw syscalls change only this thread's ids; the process is single-threaded here, and
    // glibc's setuid would try to signal other threads that do not exist in a forked child.
    // SAFETY: the syscalls take plain ints.
    check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) } as libc::c_int)?;
    // SAFETY: as above.
    check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) } as libc::c_int)?;
    Ok(())
}

/// prctl(PR_SET_KEEPCAPS): keep the permitted set across the uid change.
pub fn set_keepcaps(on: bool) -> io::Result<()> {
    // SAFETY: PR_SET_KEEPCAPS takes an int flag.
    check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, on as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

/// Drop capability `cap` from the bounding set.
pub fn capbset_drop(cap: u32) -> io::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes the capability number.
    check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

/// Clear the ambient capability set.
pub fn clear_ambient() -> io::Result<()> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointer.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    Ok(())
}

/// The highest capability number this kernel knows.
pub fn cap_last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// The capabilities in this process's bounding set (a container can hold no others).
pub fn bounding_set() -> u64 {
    let mut mask = 0u64;
    for cap in 0..=cap_last_cap().min(63) {
        // SAFETY: PR_CAPBSET_READ takes the capability number and returns 0 or 1.
        if unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) } == 1 {
            mask |= 1 << cap;
        }
    }
    mask
}

/// capset(2) with 64-bit masks (version 3 header).
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let lo = |m: u64| m as u32;
    let hi = |m: u64| (m >> 32) as u32;
    let data = [
        Data {
            effective: lo(effective),
            permitted: lo(permitted),
            inheritable: lo(inheritable),
        },
        Data {
            effective: hi(effective),
            permitted: hi(permitted),
            inheritable: hi(inheritable),
        },
    ];
    // SAFETY: header and data are laid out as the kernel's v3 structures and live until return.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    check(ret as libc::c_int)?;
    Ok(())
}

/// prctl(PR_SET_NO_NEW_PRIVS).
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes an int flag.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    Ok(())
}

/// Install a classic-BPF seccomp filter (requires no_new_privs or CAP_SYS_ADMIN).
pub fn seccomp_filter(program: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr() as *mut _,
    };
    // SAFETY: prog points at `program`, which lives until return.
    check(unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const _ as libc::c_ulong,
            0,
            0,
        )
    })?;
    Ok(())
}

/// Bring the loopback interface up in the current network namespace.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket takes plain ints.
    let sock = check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: the fd is fresh and ours.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: ifreq is plain data; zeroed is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq that lives until return.
    unsafe {
        check(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        check(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req))?;
    }
    Ok(())
}

/// poll(2) with a timeout in milliseconds (-1 = forever); EINTR counts as "nothing ready".
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: fds is a valid mutable slice of pollfd.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(n as usize)
}

/// Filesystem magic of the filesystem holding `path` (statfs f_type).
pub fn fs_magic(path: &Path) -> io::Result<i64> {
    let p = cstr(path)?;
    // SAFETY: statfs is plain data; zeroed is valid.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: p is valid and st is writable.
    check(unsafe { libc::statfs(p.as_ptr(), &mut st) })?;
    Ok(st.f_type as i64)
}

/// The cgroup2 filesystem magic.
pub const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Clock ticks per second (for /proc/<pid>/stat times).
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf takes a plain int.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Number of online CPUs.
pub fn online_cpus() -> u32 {
    // SAFETY: sysconf takes a plain int.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as u32
}

/// Load a BPF_PROG_TYPE_CGROUP_DEVICE program (encoded instructions) and attach it to the
/// cgroup v2 directory `cgroup` (BPF_F_ALLOW_MULTI, so other managers' programs stay).
/// The attachment holds the program; the fds are closed on return.
pub fn attach_device_program(cgroup: &Path, insns: &[u64]) -> io::Result<()> {
    #[repr(C)]
    #[derive(Default)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        rest: [u64; 16],
    }
    #[repr(C)]
    #[derive(Default)]
    struct ProgAttach {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
        replace_bpf_fd: u32,
        rest: [u32; 11],
    }
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_ATTACH: libc::c_long = 8;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    const BPF_CGROUP_DEVICE: u32 = 6;
    const BPF_F_ALLOW_MULTI: u32 = 2;
    let license = b"GPL\0";
    let load = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..ProgLoad::default()
    };
    // SAFETY: `load` is a valid bpf_attr prefix (zero-padded) pointing at live buffers.
    let prog = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &load,
            std::mem::size_of::<ProgLoad>(),
        )
    };
    let prog = check(prog as libc::c_int)?;
    // SAFETY: the syscall returned a fresh fd.
    let prog = unsafe { OwnedFd::from_raw_fd(prog) };
    let dir = std::fs::File::open(cgroup)?;
    let attach = ProgAttach {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..ProgAttach::default()
    };
    // SAFETY: `attach` is a valid bpf_attr prefix (zero-padded).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach,
            std::mem::size_of::<ProgAttach>(),
        )
    };
    check(ret as libc::c_int)?;
    Ok(())
}

/// Fills `buf` with random bytes for identifiers (container, network and volume IDs,
/// generated names): unique, not secret. GRND_INSECURE does not wait for the kernel's pool to
/// be seeded, which on a board that has just booted takes a second or more; kernels before
/// 5.6 refuse the flag, and then the waiting call is used. Secrets (tokens, keys) must use
/// the waiting call.
pub fn fill_id_bytes(buf: &mut [u8]) -> io::Result<()> {
    use rustix::rand::{getrandom, GetRandomFlags};
    let mut filled = 0;
    let mut flags = GetRandomFlags::INSECURE;
    while filled < buf.len() {
        match getrandom(&mut buf[filled..], flags) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INVAL) if flags == GetRandomFlags::INSECURE => {
                flags = GetRandomFlags::empty();
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(io::Error::from_raw_os_error(e.raw_os_error())),
        }
    }
    Ok(())
}
