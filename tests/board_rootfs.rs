//! The init-system files in rootfs/: the systemd unit passes `systemd-analyze verify` (and a
//! broken copy does not), the BusyBox start script starts and stops a real daemon, and the
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
