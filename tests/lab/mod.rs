//! Lab helpers for integration tests: a busybox rootfs built once per test run from Debian's
//! busybox-static, and per-test scratch dirs and cgroup parents that are removed afterwards.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// A busybox rootfs (shared, read-only by convention: use it as an overlay lower layer).
/// Built once (into a temp dir renamed into place, so concurrent test binaries agree) and
/// reused; users and groups: root, daemon, www (33, in wheel), nobody.
pub fn busybox_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let done = std::env::temp_dir().join("shoal-lab-busybox-v1");
        if done.join("bin/sh").exists() {
            return done;
        }
        let root = std::env::temp_dir().join(format!("shoal-lab-busybox-tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root", "home/www"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::copy(BUSYBOX, root.join("bin/busybox"))
            .unwrap_or_else(|e| panic!("copying {BUSYBOX} (apt-get install busybox-static): {e}"));
        // Relative links (what `busybox --install -s` makes inside the image), so they resolve
        // inside the container too.
        let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
        assert!(list.status.success(), "busybox --list failed");
        for applet in String::from_utf8_lossy(&list.stdout)
            .lines()
            .filter(|a| *a != "busybox")
        {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
             www:x:33:33:www:/home/www:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .unwrap();
        fs::write(
            root.join("etc/group"),
            "root:x:0:\ndaemon:x:1:\nwheel:x:10:www\ntty:x:5:\nwww:x:33:\nnogroup:x:65534:\n",
        )
        .unwrap();
        fs::write(root.join("etc/not-executable"), "#!/bin/sh\necho no\n").unwrap();
        if fs::rename(&root, &done).is_err() {
            // Another test binary won the race; its copy is identical.
            let _ = fs::remove_dir_all(&root);
        }
        done
    })
}

/// A per-test scratch area: a container dir, overlay upper/work dirs and a cgroup parent.
pub struct Scratch {
    pub root: PathBuf,
    pub cgroup_parent: String,
    count: std::cell::Cell<u32>,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let root = std::env::temp_dir().join(format!("shoal-rt-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        Scratch {
            root,
            cgroup_parent: format!("shoal-test-{}-{name}", std::process::id()),
            count: 0.into(),
        }
    }

    /// A fresh container dir with its own upper and work dirs: (dir, upper, work).
    pub fn container(&self) -> (PathBuf, PathBuf, PathBuf) {
        let n = self.count.get();
        self.count.set(n + 1);
        let base = self.root.join(format!("c{n}"));
        let (dir, upper, work) = (base.join("dir"), base.join("upper"), base.join("work"));
        for d in [&dir, &upper, &work] {
            fs::create_dir_all(d).unwrap();
        }
        (dir, upper, work)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // A failed test may leave containers running: stop them before removing their files.
        for n in 0..self.count.get() {
            let dir = self.root.join(format!("c{n}")).join("dir");
            if matches!(
                shoal::runtime::state(&dir),
                shoal::runtime::ContainerState::Running { .. }
            ) {
                let _ = shoal::runtime::kill(&dir, 9);
                let _ = shoal::runtime::wait(&dir);
            }
            let _ = shoal::runtime::cleanup(&dir);
        }
        let _ = fs::remove_dir_all(&self.root);
        // The per-test cgroup parent in each hierarchy (the containers' own are gone by now).
        if let Ok(cg) = fs::read_to_string("/proc/self/cgroup") {
            for line in cg.lines() {
                let mut p = line.splitn(3, ':');
                let (_, ctrls, own) = (p.next(), p.next().unwrap_or(""), p.next().unwrap_or("/"));
                let first = ctrls.split(',').next().unwrap_or("").trim_start_matches("name=");
                let mount = if ctrls.is_empty() {
                    "unified".to_string()
                } else {
                    ctrls.to_string()
                };
                for base in [
                    format!("/sys/fs/cgroup/{mount}"),
                    format!("/sys/fs/cgroup/{first}"),
                ] {
                    let _ = fs::remove_dir(
                        Path::new(&base)
                            .join(own.trim_start_matches('/'))
                            .join(&self.cgroup_parent),
                    );
                }
            }
        }
    }
}
