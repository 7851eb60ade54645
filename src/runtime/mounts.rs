//! A container's volumes, binds and tmpfs, mounted by its init inside its own mount namespace
//! after the rootfs and before pivot_root.
//!
//! Each destination is resolved inside the rootfs as if the rootfs were `/`: a symlink in the
//! image (or in a volume) is followed but can never lead out of the rootfs, and `..` stops at
//! its top. The mount itself goes through an `O_PATH` descriptor checked to lie inside the
//! rootfs, so a path swapped for a symlink after the check still cannot redirect it.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::container::Failure;
use super::{mount_opts, Mount, MountKind};
use crate::sys;

const MAX_SYMLINKS: u32 = 40;

fn fail(what: String, e: impl std::fmt::Display) -> Failure {
    Failure(125, format!("{what}: {e}"))
}

/// Whether any mount asks for shared or slave propagation: then the container's view of the
/// host must stay a slave (not private) for the propagation to mean anything.
pub(crate) fn wants_propagation(mounts: &[Mount]) -> bool {
    mounts.iter().any(|m| {
        m.options
            .iter()
            .any(|o| matches!(o.as_str(), "shared" | "rshared" | "slave" | "rslave"))
    })
}

/// Mount every entry of `mounts` under `root`, in order.
pub(crate) fn mount_all(mounts: &[Mount], root: &Path) -> Result<(), Failure> {
    if mounts.is_empty() {
        return Ok(());
    }
    // The descriptors' paths read back from /proc are absolute and free of symlinks.
    let root = fs::canonicalize(root).map_err(|e| fail(format!("resolving {}", root.display()), e))?;
    for m in mounts {
        mount_one(m, &root)?;
    }
    Ok(())
}

fn mount_one(m: &Mount, root: &Path) -> Result<(), Failure> {
    let opts =
        mount_opts::parse(&m.options).map_err(|e| fail(format!("mount options of {}", m.destination), e))?;
    let target = resolve_in_root(root, &m.destination)
        .map_err(|e| fail(format!("resolving mount destination {}", m.destination), e))?;
    // A sub-path is held open (checked to be inside the source) and bound through its
    // descriptor, so a symlink in the volume cannot point the bind elsewhere.
    let sub = match (m.kind, m.subpath.is_empty()) {
        (MountKind::Bind, false) => Some(open_subpath(&m.source, &m.subpath).map_err(|e| {
            fail(
                format!("cannot access path {}/{}", m.source.display(), m.subpath),
                e,
            )
        })?),
        _ => None,
    };
    let source = match &sub {
        Some(fd) => fd_path(fd),
        None => m.source.clone(),
    };
    let source_is_dir = match m.kind {
        MountKind::Tmpfs => true,
        MountKind::Bind => fs::metadata(&source)
            .map_err(|e| fail(format!("bind source {}", m.source.display()), e))?
            .is_dir(),
    };
    make_mountpoint(&target, source_is_dir).map_err(|e| {
        fail(
            format!("creating mount point {} in the container", m.destination),
            e,
        )
    })?;
    if m.copy_up && m.kind == MountKind::Bind && source_is_dir {
        copy_up(&target, &m.source).map_err(|e| {
            fail(
                format!(
                    "copying the image's {} into {}",
                    m.destination,
                    m.source.display()
                ),
                e,
            )
        })?;
    }
    let at = open_inside(root, &target).map_err(|e| fail(format!("mount point {}", m.destination), e))?;
    let at_path = fd_path(&at);
    match m.kind {
        MountKind::Bind => {
            let src = source
                .to_str()
                .ok_or_else(|| Failure(125, format!("bind source {} is not UTF-8", m.source.display())))?;
            let rec = if opts.recursive || !opts.bind {
                sys::MS_REC
            } else {
                0
            };
            sys::mount(Some(src), &at_path, None, sys::MS_BIND | rec, None)
                .map_err(|e| fail(format!("binding {} at {}", src, m.destination), e))?;
        }
        MountKind::Tmpfs => {
            let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
            sys::mount(Some("tmpfs"), &at_path, Some("tmpfs"), opts.flags, data)
                .map_err(|e| fail(format!("mounting tmpfs on {}", m.destination), e))?;
        }
    }
    drop(at);
    if (m.kind == MountKind::Bind && opts.flags != 0) || opts.propagation != 0 {
        // The new mount now covers the target: open it again to reach the mount itself.
        let top =
            open_inside(root, &target).map_err(|e| fail(format!("mount point {}", m.destination), e))?;
        let top_path = fd_path(&top);
        if m.kind == MountKind::Bind && opts.flags != 0 {
            let flags = sys::MS_BIND | sys::MS_REMOUNT | opts.flags;
            sys::mount(None, &top_path, None, flags, None)
                .map_err(|e| fail(format!("remounting {} with its options", m.destination), e))?;
            let recursive = opts.recursive || !opts.bind;
            if recursive && opts.flags & sys::MS_RDONLY != 0 {
                // As docker (API 1.44+): read-only reaches the mounts under a bind too, where
                // the kernel can do it (5.12+); older kernels keep the top one read-only.
                match sys::make_tree_readonly(top.as_raw_fd()) {
                    Ok(()) => {}
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EINVAL)) => {}
                    Err(e) => return Err(fail(format!("making {} read-only throughout", m.destination), e)),
                }
            }
        }
        if opts.propagation != 0 {
            sys::mount(None, &top_path, None, opts.propagation, None)
                .map_err(|e| fail(format!("setting the propagation of {}", m.destination), e))?;
        }
    }
    Ok(())
}

/// Open `subpath` inside `base` as the container would resolve it with `base` as its root.
fn open_subpath(base: &Path, subpath: &str) -> io::Result<OwnedFd> {
    let base = fs::canonicalize(base)?;
    let inner = resolve_in_root(&base, &format!("/{subpath}"))?;
    open_inside(&base, &inner)
}

/// `/proc/self/fd/N`: mounting there mounts on the file the descriptor holds.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Open `path` without following a final symlink and check that what was opened is inside
/// `root`.
fn open_inside(root: &Path, path: &Path) -> io::Result<OwnedFd> {
    let c = sys::cstr(path)?;
    // SAFETY: c is a valid NUL-terminated path; the result is checked before use.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let real = fs::read_link(fd_path(&fd))?;
    if !real.starts_with(root) {
        return Err(io::Error::other(format!(
            "{} resolves to {} outside the container",
            path.display(),
            real.display()
        )));
    }
    Ok(fd)
}

/// Resolve `dest` (absolute, inside the container) to a host path under `root`, following
/// symlinks as the container would see them: absolute targets restart at `root`, `..` never
/// climbs above it. Components that do not exist yet are kept as they are.
pub(crate) fn resolve_in_root(root: &Path, dest: &str) -> io::Result<PathBuf> {
    let mut pending: VecDeque<OsString> = parts(Path::new(dest));
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(&resolved).join(&part);
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::other(format!("too many symlinks resolving {dest}")));
                }
                let target = fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut next = parts(&target);
                next.extend(pending);
                pending = next;
            }
            Ok(_) => resolved.push(&part),
            Err(e) if e.kind() == io::ErrorKind::NotFound => resolved.push(&part),
            Err(e) => return Err(e),
        }
    }
    Ok(root.join(resolved))
}

fn parts(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(x) => Some(x.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// A directory for a directory source, an empty file for a file source.
fn make_mountpoint(target: &Path, dir: bool) -> io::Result<()> {
    if dir {
        return fs::create_dir_all(target);
    }
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(target)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Docker's volume pre-fill: when `volume` is empty and the image has a directory at the
/// destination, copy its content (and the directory's owner and mode) into the volume.
fn copy_up(image_dir: &Path, volume: &Path) -> io::Result<()> {
    let Ok(meta) = fs::symlink_metadata(image_dir) else {
        return Ok(());
    };
    if !meta.is_dir() || fs::read_dir(volume)?.next().is_some() {
        return Ok(());
    }
    copy_tree(image_dir, volume)?;
    std::os::unix::fs::chown(volume, Some(meta.uid()), Some(meta.gid()))?;
    fs::set_permissions(volume, fs::Permissions::from_mode(meta.mode() & 0o7777))
}

/// Copy a tree without following symlinks: directories, regular files and symlinks, with
/// owners and modes. Device nodes, fifos and sockets are skipped.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let meta = fs::symlink_metadata(&src)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(&dst)?;
            copy_tree(&src, &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if ft.is_file() {
            let mut r = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&src)?;
            let mut w = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&dst)?;
            io::copy(&mut r, &mut w)?;
        } else {
            continue;
        }
        std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid()))?;
        if !ft.is_symlink() {
            // After chown, which clears set-id bits.
            fs::set_permissions(&dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("shoal-mounts-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = scratch("resolve");
        fs::create_dir_all(root.join("real/dir")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("evil")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/shadow", root.join("real/up")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        // An absolute symlink restarts at the rootfs, not at the host's /.
        assert_eq!(
            resolve_in_root(&root, "/evil/passwd").unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(&root, "/real/up").unwrap(),
            root.join("etc/shadow")
        );
        assert_eq!(
            resolve_in_root(&root, "/abs/dir/x").unwrap(),
            root.join("real/dir/x")
        );
        assert_eq!(resolve_in_root(&root, "/../../new").unwrap(), root.join("new"));
        assert!(resolve_in_root(&root, "/loop/x").is_err());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn open_inside_refuses_what_escapes() {
        let root = scratch("open");
        let outside = scratch("open-outside");
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        assert!(open_inside(&root, &root.join("link/.")).is_err());
        fs::create_dir(root.join("d")).unwrap();
        assert!(open_inside(&root, &root.join("d")).is_ok());
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn copy_up_fills_only_an_empty_volume() {
        let d = scratch("copyup");
        let (img, vol) = (d.join("img"), d.join("vol"));
        fs::create_dir_all(img.join("sub")).unwrap();
        fs::write(img.join("sub/f"), b"hello").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", img.join("link")).unwrap();
        fs::set_permissions(&img, fs::Permissions::from_mode(0o750)).unwrap();
        fs::create_dir(&vol).unwrap();
        copy_up(&img, &vol).unwrap();
        assert_eq!(fs::read(vol.join("sub/f")).unwrap(), b"hello");
        assert_eq!(
            fs::read_link(vol.join("link")).unwrap(),
            PathBuf::from("/etc/passwd")
        );
        assert_eq!(fs::metadata(&vol).unwrap().mode() & 0o7777, 0o750);
        // Not empty any more: a second copy leaves what the volume holds.
        fs::write(vol.join("sub/f"), b"changed").unwrap();
        copy_up(&img, &vol).unwrap();
        assert_eq!(fs::read(vol.join("sub/f")).unwrap(), b"changed");
        // Nothing at the destination in the image: nothing to copy.
        copy_up(&d.join("missing"), &d.join("vol")).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }
}
