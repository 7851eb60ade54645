//! Network namespaces: run code inside one, make a persistent one, remove it.
//!
//! Guarantees: [`run_in`] switches only a short-lived dedicated thread, so the caller's thread
//! and the rest of the daemon never change namespace; a socket created inside keeps that
//! namespace for its whole life. [`create`] leaves either a bind-mounted namespace file or
//! nothing.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Which network namespace an operation runs in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Netns {
    /// The namespace of the daemon itself.
    #[default]
    Current,
    /// A namespace file: `/proc/PID/ns/net` or a bind-mounted file like `/run/netns/x`.
    Path(std::path::PathBuf),
}

impl Netns {
    pub fn path(p: impl Into<std::path::PathBuf>) -> Netns {
        Netns::Path(p.into())
    }

    /// Open the namespace file (for IFLA_NET_NS_FD); `Current` opens the thread's own.
    pub fn open(&self) -> io::Result<File> {
        let path = match self {
            Netns::Current => Path::new("/proc/thread-self/ns/net"),
            Netns::Path(p) => p.as_path(),
        };
        File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("opening netns {}: {e}", path.display())))
    }
}

/// Move the calling thread into `ns` for good: only for dedicated threads.
pub(crate) fn enter(ns: &Netns) -> io::Result<()> {
    if let Netns::Path(p) = ns {
        let file = ns.open()?;
        // SAFETY: setns on a valid fd we own; it affects only the calling thread, which is a
        // dedicated thread that ends after the closure.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("entering netns {}: {e}", p.display()),
            ));
        }
    }
    Ok(())
}

/// Run `f` on a fresh thread that first joins `ns`; returns what `f` returns.
pub fn run_in<T: Send>(ns: &Netns, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    if *ns == Netns::Current {
        return f();
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns worker thread panicked")))
    })
}

/// Make a new, empty network namespace that outlives every process: a fresh namespace is
/// unshared on a dedicated thread and its handle bind-mounted onto `path`.
pub fn create(path: &Path) -> io::Result<()> {
    let ctx =
        |e: io::Error, what: &str| io::Error::new(e.kind(), format!("{what} netns {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| ctx(e, "creating directory for"))?;
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| ctx(e, "creating"))?;
    let result = std::thread::scope(|s| {
        s.spawn(|| -> io::Result<()> {
            // SAFETY: unshare only changes this thread's namespaces; the thread ends below.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let src = c"/proc/thread-self/ns/net";
            let dst = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
            // SAFETY: both are valid NUL-terminated strings; a bind mount takes no data.
            let rc = unsafe {
                libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns worker thread panicked")))
    });
    if let Err(e) = result {
        let _ = fs::remove_file(path);
        return Err(ctx(e, "bind-mounting"));
    }
    Ok(())
}

/// Unmount and delete a namespace file made by [`create`]. Missing files are fine.
pub fn remove(path: &Path) -> io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let dst = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: valid NUL-terminated path; MNT_DETACH lets it go even while in use.
    let rc = unsafe { libc::umount2(dst.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        // EINVAL: not a mount point (already unmounted); still remove the file.
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(io::Error::new(
                e.kind(),
                format!("unmounting netns {}: {e}", path.display()),
            ));
        }
    }
    fs::remove_file(path)
        .map_err(|e| io::Error::new(e.kind(), format!("removing netns {}: {e}", path.display())))
}

/// Turn on IPv4 forwarding in `ns` (its own /proc/sys/net view).
pub fn enable_ipv4_forwarding(ns: &Netns) -> io::Result<()> {
    run_in(ns, || {
        fs::write("/proc/sys/net/ipv4/ip_forward", b"1")
            .map_err(|e| io::Error::new(e.kind(), format!("writing /proc/sys/net/ipv4/ip_forward: {e}")))
    })
}
