//! The kernel-facing steps of PID 1 start-up: API file systems, leaving the initramfs,
//! host name, kernel modules and the state partition.
//!
//! Each step reports what failed and where; init logs the failure and carries on where that
//! is safe (a board with no network is still worth booting), so these return `Result`s that
//! the caller decides about.

use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::mount::{mount, mount_move, MountFlags};

fn ctx<T>(r: io::Result<T>, what: impl FnOnce() -> String) -> Result<T, String> {
    r.map_err(|e| format!("{}: {e}", what()))
}

/// Mounts `fstype` on `target` unless something is already mounted there (EBUSY).
pub fn mount_fs(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MountFlags,
    data: Option<&CStr>,
) -> Result<(), String> {
    let _ = fs::create_dir_all(target);
    match mount(source, target, fstype, flags, data) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => Ok(()),
        Err(e) => Err(format!("mounting {fstype} on {target}: {e}")),
    }
}

/// /proc, /sys, /dev, /dev/pts, /dev/shm, /run, /tmp.
pub fn mount_api_filesystems() -> Vec<String> {
    let nosuid_noexec_nodev = MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV;
    let mut errors = Vec::new();
    let steps: [(&str, &str, &str, MountFlags, Option<&CStr>); 7] = [
        ("proc", "/proc", "proc", nosuid_noexec_nodev, None),
        ("sysfs", "/sys", "sysfs", nosuid_noexec_nodev, None),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MountFlags::NOSUID,
            Some(c"mode=0755"),
        ),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MountFlags::NOSUID | MountFlags::NOEXEC,
            Some(c"newinstance,ptmxmode=0666,mode=0620"),
        ),
        (
            "shm",
            "/dev/shm",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            Some(c"mode=1777"),
        ),
        (
            "run",
            "/run",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            Some(c"mode=0755"),
        ),
        (
            "tmp",
            "/tmp",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            Some(c"mode=1777"),
        ),
    ];
    for (source, target, fstype, flags, data) in steps {
        if let Err(e) = mount_fs(source, target, fstype, flags, data) {
            errors.push(e);
        }
    }
    if fs::symlink_metadata("/dev/ptmx")
        .map(|m| m.rdev() == 0)
        .unwrap_or(true)
    {
        let _ = fs::remove_file("/dev/ptmx");
        let _ = std::os::unix::fs::symlink("pts/ptmx", "/dev/ptmx");
    }
    errors
}

/// Mounts cgroup2 on /sys/fs/cgroup when the kernel has it (and enables the controllers for
/// children of the root), otherwise a tmpfs with one v1 hierarchy per enabled controller.
/// Returns the mode mounted ("v2" or "v1").
pub fn mount_cgroups() -> Result<&'static str, String> {
    let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let flags = MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV;
    if filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("cgroup2"))
    {
        mount_fs("cgroup2", "/sys/fs/cgroup", "cgroup2", flags, Some(c"nsdelegate"))?;
        let controllers = fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
        for c in controllers.split_whitespace() {
            // One write per controller: a controller that cannot be enabled must not stop
            // the others.
            let _ = fs::write("/sys/fs/cgroup/cgroup.subtree_control", format!("+{c}"));
        }
        return Ok("v2");
    }
    mount_fs("cgroup", "/sys/fs/cgroup", "tmpfs", flags, Some(c"mode=0755"))?;
    let list = fs::read_to_string("/proc/cgroups").unwrap_or_default();
    for line in list.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 || f[3] != "1" {
            continue;
        }
        let target = format!("/sys/fs/cgroup/{}", f[0]);
        let data = CString::new(f[0]).map_err(|e| e.to_string())?;
        mount_fs("cgroup", &target, "cgroup", flags, Some(&data))?;
    }
    Ok("v1")
}

/// Whether "/" is the initial rootfs (initramfs), where pivot_root(2) is refused, so
/// container runtimes cannot use it.
pub fn root_is_initramfs() -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines().any(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        let dash = fields.iter().position(|f| *f == "-");
        fields.get(4) == Some(&"/") && dash.and_then(|d| fields.get(d + 1)) == Some(&"rootfs")
    })
}

/// Makes "/" a bind mount of the initramfs instead of the initramfs itself (as switch_root
/// would, without copying a byte): the bind mount has a parent mount, so pivot_root(2) in a
/// container's mount namespace is allowed. The calling process ends up in the new root.
pub fn leave_initramfs(new_root: &str) -> Result<(), String> {
    for api in ["/proc", "/sys", "/dev", "/run", "/tmp"] {
        let _ = rustix::mount::unmount(api, rustix::mount::UnmountFlags::DETACH);
    }
    let _ = fs::create_dir_all(new_root);
    ctx(
        rustix::mount::mount_bind("/", new_root).map_err(io::Error::from),
        || format!("binding / on {new_root}"),
    )?;
    ctx(std::env::set_current_dir(new_root), || {
        format!("entering {new_root}")
    })?;
    ctx(mount_move(".", "/").map_err(io::Error::from), || {
        format!("moving {new_root} onto /")
    })?;
    ctx(rustix::process::chroot(".").map_err(io::Error::from), || {
        "chroot into the new root".to_string()
    })?;
    ctx(std::env::set_current_dir("/"), || "entering /".to_string())?;
    Ok(())
}

/// Sets the kernel host name.
pub fn set_hostname(name: &str) -> Result<(), String> {
    rustix::system::sethostname(name.as_bytes()).map_err(|e| format!("setting host name {name:?}: {e}"))
}

/// Loads the modules named in `list_file` (one name or alias per line, `#` comments) with
/// their dependencies from `dir`. Returns (modules loaded, errors); a missing list is empty.
pub fn load_modules(list_file: &Path, dir: &super::modprobe::ModuleDir) -> (usize, Vec<String>) {
    let list = fs::read_to_string(list_file).unwrap_or_default();
    let mut loaded = 0;
    let mut errors = Vec::new();
    for name in list
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
    {
        match dir.load(name) {
            Ok(n) => loaded += n,
            Err(e) => errors.push(e),
        }
    }
    (loaded, errors)
}

/// Loads one module file; `Ok(false)` when the kernel already had it.
pub fn load_one(path: &Path) -> Result<bool, String> {
    let file = fs::File::open(path).map_err(|e| format!("opening module {}: {e}", path.display()))?;
    let name = path.to_string_lossy();
    // Compressed modules are handed to the kernel to decompress (MODULE_INIT_COMPRESSED_FILE).
    let flags = if name.ends_with(".xz") || name.ends_with(".zst") || name.ends_with(".gz") {
        4
    } else {
        0
    };
    match rustix::system::finit_module(&file, c"", flags) {
        Ok(()) => Ok(true),
        // EXIST: already loaded or built in. NODEV: a driver for hardware this board lacks
        // (e.g. crc32c-intel on a CPU without SSE4.2); nothing to do.
        Err(rustix::io::Errno::EXIST) | Err(rustix::io::Errno::NODEV) => Ok(false),
        Err(e) => Err(format!("loading module {}: {e}", path.display())),
    }
}

/// Mounts `device` on `target` (trying the usual file systems), or a tmpfs when `device` is
/// `None`. Waits up to 5 s for the device node to appear.
pub fn mount_state(device: Option<&str>, target: &str) -> Result<String, String> {
    let _ = fs::create_dir_all(target);
    let device = match device {
        None => {
            mount_fs(
                "shoal-state",
                target,
                "tmpfs",
                MountFlags::empty(),
                Some(c"mode=0711"),
            )?;
            return Ok("tmpfs".to_string());
        }
        Some(d) => d,
    };
    for _ in 0..50 {
        if Path::new(device).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut tried = Vec::new();
    for fstype in ["ext4", "btrfs", "f2fs", "xfs"] {
        match mount(device, target, fstype, MountFlags::NOATIME, None) {
            Ok(()) => return Ok(format!("{device} ({fstype})")),
            Err(e) => tried.push(format!("{fstype}: {e}")),
        }
    }
    Err(format!("mounting {device} on {target}: {}", tried.join(", ")))
}
