//! The init-system files in rootfs/: the systemd unit passes `systemd-analyze verify` (and a
//! broken copy does not), the BusyBox start script starts and stops a real daemon, OpenRC's
//! own tools start, restart (after a crash) and stop it through the OpenRC service, and the
//! shipped config file is what `shoal daemon` defaults to.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shoal_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_shoal"))
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shoal-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success());
}

/// Runs `systemd-analyze verify` on `unit_text` installed in a private root that has shoal
/// at /usr/bin/shoal and systemd's own units; returns (success, output).
fn verify_unit(unit_text: &str, tag: &str) -> (bool, String) {
    let root = tempdir(tag);
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.join("usr/lib/systemd")).unwrap();
    std::fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
    std::fs::copy(shoal_bin(), root.join("usr/bin/shoal")).unwrap();
    copy_dir(
        Path::new("/usr/lib/systemd/system"),
        &root.join("usr/lib/systemd"),
    );
    std::fs::write(root.join("etc/systemd/system/shoal.service"), unit_text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("shoal.service")
        .output()
        .expect("systemd-analyze is installed (package systemd)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&root).unwrap();
    (out.status.success() && text.trim().is_empty(), text)
}

#[test]
fn systemd_unit_verifies_and_a_broken_one_does_not() {
    let unit = std::fs::read_to_string(repo().join("rootfs/usr/lib/systemd/system/shoal.service")).unwrap();
    for needed in [
        "Type=notify",
        "Restart=on-failure",
        "KillMode=process",
        "Delegate=yes",
    ] {
        assert!(unit.lines().any(|l| l == needed), "unit lacks {needed}");
    }
    let (ok, text) = verify_unit(&unit, "unit-good");
    assert!(ok, "systemd-analyze verify failed:\n{text}");
    let broken = unit
        .replace("Type=notify", "Type=notifyy")
        .replace("/usr/bin/shoal", "/usr/bin/shoal-missing");
    let (ok, text) = verify_unit(&broken, "unit-bad");
    assert!(!ok, "a broken unit passed verification:\n{text}");
}

#[test]
fn busybox_script_starts_and_stops_the_daemon() {
    let t = tempdir("rc");
    let script = repo().join("rootfs/etc/init.d/S60shoal");
    let socket = t.join("s.sock");
    let pidfile = t.join("pid");
    // The daemon makes its default bridge where it runs: give it a throwaway network
    // namespace (`unshare --net`), never the machine's own.
    let run = |verb: &str| {
        Command::new("unshare")
            .args(["--net", "busybox", "sh"])
            .arg(&script)
            .arg(verb)
            .env("DAEMON", shoal_bin())
            .env("PIDFILE", &pidfile)
            .env("LOGFILE", t.join("log"))
            .env("SOCKET", &socket)
            .env(
                "SHOAL_OPTS",
                format!(
                    "--root {} --socket {} --cgroup-parent shoal-rc-test",
                    t.join("root").display(),
                    socket.display()
                ),
            )
            .output()
            .expect("busybox (busybox-static) is installed")
    };
    let out = run("start");
    assert!(
        out.status.success(),
        "start: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(socket.exists(), "no API socket after start");
    // The daemon the script started answers on that socket.
    let version = Command::new(shoal_bin())
        .args(["-H", &format!("unix://{}", socket.display()), "version"])
        .output()
        .unwrap();
    assert!(
        version.status.success() && String::from_utf8_lossy(&version.stdout).contains("Server"),
        "API on {}: {}",
        socket.display(),
        String::from_utf8_lossy(&version.stderr)
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).contains("daemon"));
    assert_eq!(run("status").status.code(), Some(0));
    let out = run("start");
    assert!(String::from_utf8_lossy(&out.stdout).contains("already running"));
    let out = run("stop");
    assert!(
        out.status.success(),
        "stop: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Our own child via busybox: it is gone (or a zombie being reaped by the reaper).
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z"))
        .unwrap_or(false);
    assert!(!alive, "daemon {pid} still running after stop");
    assert_eq!(run("status").status.code(), Some(3));
    assert!(!socket.exists(), "socket left behind");
    std::fs::remove_dir_all(&t).unwrap();
}

#[test]
fn shipped_config_matches_the_daemon_flag_defaults() {
    let text = std::fs::read_to_string(repo().join("rootfs/etc/shoal/config.toml")).unwrap();
    let config = shoal::init::config::parse(&text).unwrap();
    assert_eq!(config, shoal::init::config::FileConfig::default());
    let help = Command::new(shoal_bin())
        .args(["daemon", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains(&format!("default {}", config.root.display())),
        "{help}"
    );
    assert!(
        help.contains(&format!("default {}", config.socket.display())),
        "{help}"
    );
    // Every non-comment, non-section line has a comment block right above it.
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.contains('=') && !l.starts_with('#') {
            assert!(
                i > 0 && lines[i - 1].starts_with('#'),
                "line {} is undocumented: {l}",
                i + 1
            );
        }
    }
}

#[test]
fn check_config_reports_a_missing_required_option_by_name() {
    let t = tempdir("kcfg");
    let cfg = t.join("config");
    std::fs::write(&cfg, "CONFIG_NAMESPACES=y\n# CONFIG_VETH is not set\n").unwrap();
    let out = Command::new(shoal_bin())
        .args(["check-config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // An option only the config can show, absent from the file, is reported by name.
    assert!(text.contains("- CONFIG_SECCOMP_FILTER: MISSING"), "{text}");
    assert!(text.contains("- CONFIG_NAMESPACES: enabled"), "{text}");
    // The exit status follows the verdict line.
    let failed = text.contains("required features are MISSING");
    assert_eq!(out.status.code(), Some(if failed { 1 } else { 0 }), "{text}");
    let out = Command::new(shoal_bin())
        .args(["check-config"])
        .arg(t.join("nope"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&t).unwrap();
}

/// Debian's openrc, librc1 and libeinfo1, unpacked once into the build's target directory.
fn openrc_files() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let cache = target.join("openrc-cache");
    let root = cache.join("root");
    if root.join("sbin/openrc-run").exists() {
        return root;
    }
    std::fs::create_dir_all(&cache).unwrap();
    let out = Command::new("apt-get")
        .args(["download", "openrc", "librc1", "libeinfo1"])
        .current_dir(&cache)
        .output()
        .expect("apt-get");
    assert!(
        out.status.success(),
        "apt-get download openrc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for deb in std::fs::read_dir(&cache).unwrap() {
        let deb = deb.unwrap().path();
        if deb.extension().is_some_and(|e| e == "deb") {
            let status = Command::new("dpkg")
                .arg("-x")
                .arg(&deb)
                .arg(&root)
                .status()
                .unwrap();
            assert!(status.success(), "dpkg -x {}", deb.display());
        }
    }
    root
}

/// Runs OpenRC's real openrc-run and supervise-daemon on the shipped service script, in a
/// private mount, PID and network namespace whose root is the machine's own file system
/// under an overlay that adds OpenRC and shoal: nothing leaks out, and /var/lib/shoal, /run
/// and /var/log there are fresh tmpfs. `localmount` (which the script needs) is a service
/// that does nothing: this machine's mounts are already there.
const OPENRC_SANDBOX: &str = r#"
set -eu
t=$SANDBOX
mount -t tmpfs tmpfs "$t"
mkdir -p "$t/up/usr" "$t/up/etc/init.d" "$t/up/etc/conf.d" "$t/up/usr/local/etc/init.d" "$t/work" "$t/root"
# The packages use /sbin, /bin and /lib; this machine has them merged into /usr.
for d in bin sbin lib; do
    if [ -d "$OPENRC/$d" ]; then mkdir -p "$t/up/usr/$d"; cp -a "$OPENRC/$d/." "$t/up/usr/$d/"; fi
done
cp -a "$OPENRC/usr/." "$t/up/usr/"
cp -a "$OPENRC/etc/." "$t/up/etc/"
touch "$t/up/etc/insserv.conf"
cp "$SHOAL" "$t/up/usr/bin/shoal"
cp "$SCRIPT" "$t/up/etc/init.d/shoal"
printf '#!/sbin/openrc-run\nstart() { einfo "localmount: nothing to mount"; }\n' >"$t/up/etc/init.d/localmount"
chmod +x "$t/up/etc/init.d/localmount"
echo 'SHOAL_OPTS="--cgroup-parent shoal-openrc-test"' >"$t/up/etc/conf.d/shoal"
mount -t overlay overlay -o "lowerdir=/,upperdir=$t/up,workdir=$t/work" "$t/root"
r=$t/root
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount --rbind /dev "$r/dev"
for d in run tmp var/lib/shoal var/log; do mkdir -p "$r/$d"; mount -t tmpfs tmpfs "$r/$d"; done
exec chroot "$r" sh -c '
    # What `openrc sysinit` prepares at boot.
    mkdir -p /run/openrc && cd /run/openrc
    mkdir -p daemons exclusive failed hotplugged inactive options scheduled started starting stopping tmp wasinactive
    touch softlevel
    daemon_pid() { pidof -s /usr/bin/shoal || true; }
    /etc/init.d/shoal start; echo "start-rc=$?"
    shoal version | grep -q "^Server: shoal" && echo "api-answers-after-start"
    /etc/init.d/shoal status; echo "status-rc=$?"
    first=$(daemon_pid); echo "daemon-pid=$first"
    kill -KILL "$first"
    i=0
    while [ $i -lt 100 ]; do
        now=$(daemon_pid)
        if [ -n "$now" ] && [ "$now" != "$first" ] && shoal version >/dev/null 2>&1; then
            echo "respawned-pid=$now"; break
        fi
        i=$((i + 1)); sleep 0.1
    done
    /etc/init.d/shoal stop; echo "stop-rc=$?"
    echo "left=$(daemon_pid)"
    /etc/init.d/shoal status; echo "stopped-status-rc=$?"
    echo "---- /var/log/shoal.log"; cat /var/log/shoal.log
'
"#;

#[test]
fn openrc_service_starts_restarts_after_a_crash_and_stops_the_daemon() {
    let openrc = openrc_files();
    let sandbox = tempdir("openrc");
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--net",
            "--pid",
            "--fork",
            "sh",
            "-c",
        ])
        .arg(OPENRC_SANDBOX)
        .env("SANDBOX", &sandbox)
        .env("OPENRC", &openrc)
        .env("SHOAL", shoal_bin())
        .env("SCRIPT", repo().join("rootfs/etc/openrc/init.d/shoal"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&sandbox);
    for needle in [
        "localmount: nothing to mount",
        "start-rc=0",
        "api-answers-after-start",
        "status-rc=0",
        "respawned-pid=",
        "stop-rc=0",
        "left=\n",
        "stopped-status-rc=3",
        "signal 15: shutting down",
    ] {
        assert!(text.contains(needle), "no {needle:?} in\n{text}");
    }
    // Twice ready: the first start and the one after the crash.
    assert_eq!(text.matches(" ready in ").count(), 2, "{text}");
}

/// `shoal system poweroff` signals PID 1 only when PID 1 is shoal's own init: here it is the
/// machine's init (or unreadable), which must not get the signal.
#[test]
fn system_poweroff_refuses_when_pid_1_is_another_init() {
    for verb in ["poweroff", "reboot"] {
        let out = Command::new(shoal_bin()).args(["system", verb]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "system {verb}: {err}");
        assert!(err.contains("PID 1"), "system {verb}: {err}");
    }
}
