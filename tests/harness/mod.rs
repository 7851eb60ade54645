//! The lab: every integration test gets its own network namespace, state directory, cgroup
//! parent and a daemon started from the built binary, and a busybox image built from
//! Debian's busybox-static. Dropping the lab removes its containers, stops the daemon and
//! deletes everything it made. Nothing here touches the machine's root network namespace.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_shoal");

pub struct Lab {
    pub name: String,
    pub dir: PathBuf,
    pub root: PathBuf,
    pub sock: PathBuf,
    pub netns: String,
    /// Extra `shoal daemon` flags used by the next `start_daemon`.
    pub daemon_args: Vec<String>,
    daemon: Option<Child>,
}

/// A rootfs tar of busybox from tests/lab/busybox-image.sh, built once per test binary.
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let tar = std::env::temp_dir().join(format!("shoal-busybox-{}.tar", std::process::id()));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lab/busybox-image.sh");
        let st = Command::new("sh").arg(script).arg(&tar).status().unwrap();
        assert!(st.success(), "{script} failed");
        tar
    })
}

impl Lab {
    /// A fresh lab with a running daemon and `busybox:latest` imported.
    pub fn new(name: &str) -> Lab {
        let lab = Lab::bare(name);
        let out = lab.shoal_stdin(
            &["import", "--change", r#"CMD ["sh"]"#, "-", "busybox:latest"],
            &std::fs::read(busybox_tar()).unwrap(),
        );
        assert!(
            out.status.success(),
            "import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    /// A lab with a running daemon and no images.
    pub fn bare(name: &str) -> Lab {
        let tag = format!("{name}-{}", std::process::id());
        let dir = std::env::temp_dir().join(format!("shoal-lab-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let netns = format!("shoal-{}", &tag[..tag.len().min(40)]);
        let _ = Command::new("ip").args(["netns", "del", &netns]).status();
        let st = Command::new("ip")
            .args(["netns", "add", &netns])
            .status()
            .expect("ip (iproute2) is needed");
        assert!(st.success(), "ip netns add {netns}");
        let _ = Command::new("ip")
            .args(["-n", &netns, "link", "set", "lo", "up"])
            .status();
        let mut lab = Lab {
            name: name.to_string(),
            root: dir.join("root"),
            sock: dir.join("shoal.sock"),
            dir,
            netns,
            daemon_args: Vec::new(),
            daemon: None,
        };
        lab.start_daemon();
        lab
    }

    pub fn start_daemon(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .unwrap();
        // nsenter joins only the network namespace; `ip netns exec` would also remount /sys
        // and hide the cgroup hierarchies.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .args([BIN, "daemon", "--log-level", "debug"])
            .arg("--root")
            .arg(&self.root)
            .arg("--socket")
            .arg(&self.sock)
            .args(["--cgroup-parent", &format!("lab-{}", self.netns)])
            .args(&self.daemon_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.sock).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("daemon did not come up; log:\n{}", self.daemon_log());
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// SIGKILL the daemon (containers stay with their shims).
    pub fn kill_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            // nsenter execs the daemon, so this pid is the daemon's.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the daemon and wait for it; returns its exit status code.
    pub fn stop_daemon(&mut self) -> Option<i32> {
        let mut c = self.daemon.take()?;
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        c.wait().ok()?.code()
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// Run `shoal -H <lab> args...`.
    pub fn shoal(&self, args: &[&str]) -> Output {
        self.shoal_stdin(args, b"")
    }

    pub fn shoal_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        run_with_input(Command::new(BIN).arg("-H").arg(self.host()).args(args), input)
    }

    /// Run the real `docker` CLI against the lab's daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        run_with_input(
            Command::new("docker")
                .arg("-H")
                .arg(self.host())
                .args(args)
                .env("DOCKER_CONFIG", self.dir.join("docker-config")),
            b"",
        )
    }

    /// `docker args...` that must succeed; returns trimmed stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}\n{}\ndaemon log:\n{}",
            stdout(&out),
            stderr(&out),
            tail(&self.daemon_log(), 30)
        );
        stdout(&out)
    }

    /// `shoal args...` that must succeed; returns trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.shoal(args);
        assert!(
            out.status.success(),
            "shoal {args:?} failed ({:?}):\nstdout: {}\nstderr: {}\ndaemon log tail:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.daemon_log(), 30)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Run a command inside the lab's network namespace.
    pub fn in_netns(&self, cmd: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .args(cmd)
            .output()
            .unwrap()
    }
}

/// Whether a `docker` CLI is installed (the docker tests say SKIP without one).
pub fn have_docker() -> bool {
    Command::new("docker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    out
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim_end().to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim_end().to_string()
}

/// Poll `f` until it returns true or `secs` pass.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.daemon.is_none() && std::os::unix::net::UnixStream::connect(&self.sock).is_err() {
            self.start_daemon();
        }
        let ids = self.shoal(&["ps", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.shoal(&["rm", "-f", id]);
        }
        self.stop_daemon();
        // Shims whose daemon is gone still hold containers: kill what remains in our cgroups.
        let pattern = format!("lab-{}", self.netns);
        if let Ok(out) = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "find /sys/fs/cgroup -type d -name '{pattern}' 2>/dev/null"
            ))
            .output()
        {
            for d in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new("sh")
                    .arg("-c")
                    .arg(format!("find '{d}' -name cgroup.procs | xargs cat 2>/dev/null | xargs -r kill -9; sleep 0.1; find '{d}' -depth -type d -exec rmdir {{}} \\; 2>/dev/null"))
                    .status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
        if std::env::var_os("SHOAL_KEEP_LAB").is_none() && !std::thread::panicking() {
            let _ = Command::new("umount")
                .arg("-R")
                .arg(&self.dir)
                .stderr(Stdio::null())
                .status();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
