//! `shoal init`: shoal as PID 1 of a firmware image (or installed as /init).
//!
//! Start-up: API file systems; "/" made a bind mount of the initramfs (so container runtimes
//! can pivot_root); cgroups (v2 when offered); the host name (command line, config or
//! /etc/hostname); then, on a thread, the board's drivers from /etc/shoal/modules and lo and
//! the LAN interface (static `ip=`, or `ip=dhcp`: a lease within 20 s, else keep asking in the
//! background; renewed at T1; its host name when none was chosen), while PID 1 mounts the
//! state partition (`shoal.data=`) or a tmpfs and starts `shoal daemon` (this same binary),
//! restarted with back-off whenever it dies. Other modules load on first use: the kernel runs
//! /sbin/modprobe, which is this binary. A helper process waits for the daemon, loads
//! /etc/shoal/modules.preload in the background, imports the baked-in images at first boot
//! (`NAME.rootfs.tar` as NAME:latest, other `.tar` files through `shoal load`) and, once the
//! LAN is up, runs `shoal.autorun`. PID 1 reaps every orphan.
//!
//! Shutdown on SIGTERM (reboot), SIGUSR2 or SIGUSR1 (power off), or `shoal init poweroff|reboot`:
//! every container is stopped through the API (so each gets its stop signal and timeout),
//! the daemon and then all remaining processes are signalled, a DHCP lease is released,
//! file systems are synced and the state partition remounted read-only, then reboot(2).

pub mod boot;
pub mod check_config;
pub mod cmdline;
pub mod config;
pub mod dhcp;
pub mod modprobe;
pub mod modules;
pub mod net;
pub mod notify;
pub mod selftest;

use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::wire::dhcp as wire_dhcp;
use cmdline::{AfterAutorun, BootParams, IpConfig};
use config::FileConfig;

/// The board's drivers (LAN, disk, RNG), loaded at boot.
const MODULE_LIST: &str = "/etc/shoal/modules";
/// Modules the kernel would load on first use anyway (overlay, bridge, nf_tables, ...):
/// loaded once the daemon is ready, so the first container rarely waits for them.
const PRELOAD_LIST: &str = "/etc/shoal/modules.preload";
/// Where the daemon sends READY=1 to PID 1.
const NOTIFY_PATH: &str = "/run/shoal-init.notify";
/// Set for the first-boot helper when PID 1 has reported the daemon ready.
const SAW_READY_ENV: &str = "SHOAL_INIT_SAW_READY";
/// Created once the LAN is configured (or given up on).
const LAN_DONE: &str = "/run/shoal-lan-done";

macro_rules! say {
    ($($arg:tt)*) => { eprintln!("shoal-init: {}", format!($($arg)*)) };
}

/// What PID 1 is asked to do at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    PowerOff,
    Reboot,
}

/// `shoal init [poweroff|reboot|firstboot]`; returns the exit code (PID 1 never returns).
pub fn main(args: &[String]) -> i32 {
    if std::process::id() == 1 {
        // The kernel hands init the command-line words it does not know itself ("single",
        // a stray word of a broken quote): noted, never fatal, since PID 1 must not exit.
        if !args.is_empty() {
            eprintln!("shoal-init: ignoring arguments from the kernel: {args:?}");
        }
        return pid1();
    }
    match args.first().map(String::as_str) {
        Some("poweroff") => request(Shutdown::PowerOff),
        Some("reboot") => request(Shutdown::Reboot),
        Some("firstboot") => firstboot(),
        Some("--help") | Some("-h") => {
            println!(
                "Usage: shoal init            run as PID 1 (mount, network, daemon, reaper)\n       \
                 shoal init poweroff   ask PID 1 to stop containers and power off\n       \
                 shoal init reboot     ask PID 1 to stop containers and reboot"
            );
            0
        }
        None => {
            eprintln!(
                "shoal init: not PID 1 (use 'shoal init poweroff' or 'shoal init reboot' to ask PID 1)"
            );
            1
        }
        Some(other) => {
            eprintln!("shoal init: unknown argument {other:?}");
            2
        }
    }
}

/// Asks PID 1 to shut down, with the signals BusyBox init also understands.
pub fn request(kind: Shutdown) -> i32 {
    if let Err(e) = pid1_is_shoal() {
        eprintln!("shoal: {e}");
        return 1;
    }
    let sig = match kind {
        Shutdown::PowerOff => libc::SIGUSR2,
        Shutdown::Reboot => libc::SIGTERM,
    };
    // SAFETY: kill(2) with a constant pid and signal has no memory effects.
    if unsafe { libc::kill(1, sig) } != 0 {
        eprintln!(
            "shoal init: signalling PID 1: {}",
            std::io::Error::last_os_error()
        );
        return 1;
    }
    0
}

/// Only shoal's own init may be signalled: other inits read these signals otherwise
/// (systemd re-executes itself on SIGTERM and dumps its state on SIGUSR2).
fn pid1_is_shoal() -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let file = |path: &str| std::fs::metadata(path).map(|m| (m.dev(), m.ino()));
    let init = file("/proc/1/exe").map_err(|e| format!("cannot tell what PID 1 is: {e}"))?;
    if file("/proc/self/exe").is_ok_and(|me| me == init) {
        return Ok(());
    }
    let name = std::fs::read_link("/proc/1/exe")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "another program".into());
    Err(format!(
        "PID 1 is {name}, not shoal init: power off or reboot through that init system"
    ))
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

/// Makes sure fds 0-2 exist: without /dev/console in the initramfs the kernel starts init
/// with none, and every message would be lost.
fn ensure_console() {
    // SAFETY: fcntl(F_GETFD) only queries the descriptor table.
    if unsafe { libc::fcntl(2, libc::F_GETFD) } >= 0 {
        return;
    }
    // SAFETY: open/dup2 on a constant, NUL-terminated path; descriptors 0-2 are free.
    unsafe {
        let fd = libc::open(c"/dev/console".as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        if fd >= 0 {
            for target in 0..3 {
                if fd != target {
                    libc::dup2(fd, target);
                }
            }
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
}

fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigfillset; sigprocmask only changes
    // this (single-threaded) process's mask. Children get a clean mask from std's spawn.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits up to `timeout` for a blocked signal; `None` on timeout.
fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: set and ts are valid for the call; no siginfo is requested.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Reaps every exited child; returns the pids reaped with their wait status.
fn reap() -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: waitpid with WNOHANG writes only `status`.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return out;
        }
        out.push((pid, status));
    }
}

fn self_exe() -> PathBuf {
    PathBuf::from("/proc/self/exe")
}

fn spawn_daemon(config: &FileConfig, notify: bool) -> Option<i32> {
    let mut cmd = Command::new(self_exe());
    cmd.arg0("shoal").arg("daemon").args(config.daemon_args());
    if notify {
        cmd.env("NOTIFY_SOCKET", NOTIFY_PATH);
    }
    match cmd.spawn() {
        Ok(child) => Some(child.id() as i32),
        Err(e) => {
            say!("starting the daemon: {e}");
            None
        }
    }
}

fn pid1() -> i32 {
    ensure_console();
    let signals = block_all_signals();
    for e in boot::mount_api_filesystems() {
        say!("{e}");
    }
    say!("kernel started init at {} s", uptime());
    if boot::root_is_initramfs() {
        // In place, no re-exec: PID 1 continues in the new root, and everything it starts
        // runs from there.
        if let Err(e) = boot::leave_initramfs("/.shoal-root") {
            say!("leaving the initramfs: {e} (containers may fail to pivot_root)");
        }
        for e in boot::mount_api_filesystems() {
            say!("{e}");
        }
    }
    ensure_console();
    say!("started at {} s since kernel start", uptime());
    let cgroups = boot::mount_cgroups().unwrap_or_else(|e| {
        say!("{e}");
        "none"
    });
    let params = cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    for w in &params.warnings {
        say!("kernel command line: {w}");
    }
    let config = config::load_or_default(Path::new(config::DEFAULT_PATH)).unwrap_or_else(|e| {
        say!("{e}; using the defaults");
        FileConfig::default()
    });
    // Names given on the command line or in the config win over the DHCP server's.
    let chosen = params.hostname.clone().or_else(|| config.hostname.clone());
    let hostname = chosen
        .clone()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "shoal".to_string());
    if let Err(e) = boot::set_hostname(&hostname) {
        say!("{e}");
    }
    // Drivers and the LAN come up beside the daemon's start: the daemon needs neither (its
    // bridges and rules do not need the uplink), and a DHCP server may take seconds.
    let lan_params = params.clone();
    std::thread::spawn(move || bring_up_lan(&lan_params, chosen));
    let data_device = params.data_device.clone().or_else(|| config.data_device.clone());
    let root = config.root.display().to_string();
    match boot::mount_state(data_device.as_deref(), &root) {
        Ok(what) => say!("state in {root} on {what}"),
        Err(e) => {
            say!("{e}; falling back to tmpfs");
            if let Err(e) = boot::mount_state(None, &root) {
                say!("{e}");
            }
        }
    }
    say!(
        "host {hostname}, cgroup {cgroups}, starting the daemon at {} s",
        uptime()
    );
    supervise(&signals, &config)
}

/// Loads the modules of `list` and says how many and how long (`verb`: "loaded").
fn load_module_list(list: &str, verb: &str) {
    let started = Instant::now();
    let (loaded, errors) = boot::load_modules(Path::new(list), &modprobe::ModuleDir::running());
    for e in errors {
        say!("{e}");
    }
    if loaded > 0 {
        say!(
            "{verb} {loaded} kernel modules in {} ms",
            started.elapsed().as_millis()
        );
    }
}

/// The board's drivers, then lo and the LAN; a host name from DHCP when none was chosen.
/// Ends by creating [`LAN_DONE`], which the first-boot helper waits for before autorun.
fn bring_up_lan(params: &BootParams, chosen: Option<String>) {
    load_module_list(MODULE_LIST, "loaded");
    let lease = bring_up_network(params, chosen.clone());
    let offered = lease
        .and_then(|l| l.hostname)
        .filter(|h| wire_dhcp::is_valid_hostname(h));
    if let (None, Some(name)) = (chosen, offered) {
        match boot::set_hostname(&name) {
            Ok(()) => say!("host {name} (from DHCP)"),
            Err(e) => say!("{e}"),
        }
    }
    if let Err(e) = std::fs::write(LAN_DONE, b"") {
        say!("{LAN_DONE}: {e}");
    }
}

const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Configures lo and the LAN interface from `ip=`; returns the DHCP lease, if one was got.
fn bring_up_network(params: &BootParams, hostname: Option<String>) -> Option<wire_dhcp::Lease> {
    if let Err(e) = net::link_up("lo") {
        say!("{e}");
    }
    match &params.ip {
        None => None,
        Some(IpConfig::Dhcp { device }) => {
            let Some(dev) = device.clone().or_else(net::first_lan_interface) else {
                say!("ip=dhcp: no network interface (virtio_net/driver module missing?)");
                return None;
            };
            let mut settings = dhcp::Settings::new(&dev);
            settings.hostname = hostname;
            settings.timeout = Duration::from_secs(20);
            let started = Instant::now();
            let got = dhcp::acquire(&settings)
                .and_then(|lease| dhcp::apply(&settings, &lease, Path::new(RESOLV_CONF)).map(|()| lease));
            match got {
                Ok(lease) => {
                    let dns: Vec<String> = lease.dns_servers.iter().map(|a| a.to_string()).collect();
                    say!(
                        "{dev}: DHCP {}/{} gateway {} dns {} lease {} s from {} in {} ms (at {} s)",
                        lease.address,
                        lease.prefix_len,
                        shown_or_none(&lease.router),
                        if dns.is_empty() {
                            "none".to_string()
                        } else {
                            dns.join(",")
                        },
                        lease.lease_secs.map_or("infinite".into(), |s| s.to_string()),
                        lease.server,
                        started.elapsed().as_millis(),
                        uptime()
                    );
                    dhcp::hold(&settings, &lease);
                    let (l, resolv) = (lease.clone(), PathBuf::from(RESOLV_CONF));
                    std::thread::spawn(move || {
                        dhcp::keep_renewed(settings, l, started, resolv, |m| say!("{m}"))
                    });
                    Some(lease)
                }
                Err(e) => {
                    say!("{e}; booting without an address, still asking in the background");
                    settings.timeout = Duration::from_secs(60);
                    std::thread::spawn(move || loop {
                        let started = Instant::now();
                        let got = dhcp::acquire(&settings).and_then(|lease| {
                            dhcp::apply(&settings, &lease, Path::new(RESOLV_CONF)).map(|()| lease)
                        });
                        match got {
                            Ok(lease) => {
                                say!("{dev}: DHCP {}/{} (late)", lease.address, lease.prefix_len);
                                dhcp::hold(&settings, &lease);
                                let resolv = PathBuf::from(RESOLV_CONF);
                                dhcp::keep_renewed(settings, lease, started, resolv, |m| say!("{m}"));
                                return;
                            }
                            Err(e) => say!("{e}"),
                        }
                    });
                    None
                }
            }
        }
        Some(IpConfig::Static(ip)) => {
            let device = ip.device.clone().or_else(net::first_lan_interface);
            match device {
                None => say!(
                    "ip={}: no network interface (virtio_net/driver module missing?)",
                    ip.address
                ),
                Some(dev) => match net::configure_static(&dev, ip) {
                    Ok(()) => say!(
                        "{dev}: {}/{} gateway {} (at {} s)",
                        ip.address,
                        ip.prefix_len,
                        shown_or_none(&ip.gateway),
                        uptime()
                    ),
                    Err(e) => say!("{dev}: {e}"),
                },
            }
            None
        }
    }
}

fn shown_or_none<T: std::fmt::Display>(value: &Option<T>) -> String {
    value.as_ref().map_or("none".to_string(), |v| v.to_string())
}

/// Restart back-off of the daemon: doubles from 1 s to 30 s; reset once it ran for 60 s.
pub fn next_backoff(previous: Duration, ran_for: Duration) -> Duration {
    if ran_for >= Duration::from_secs(60) {
        return Duration::from_secs(1);
    }
    (previous * 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Starts the first-boot helper; PID 1 only reaps it. `saw_ready`: PID 1 has already
/// reported the daemon ready.
fn spawn_firstboot(saw_ready: bool) {
    let mut helper = Command::new(self_exe());
    helper.arg0("shoal").args(["init", "firstboot"]);
    if saw_ready {
        helper.env(SAW_READY_ENV, "1");
    }
    if let Err(e) = helper.spawn() {
        say!("starting the first-boot helper: {e}");
    }
}

/// Reports each READY=1 the daemon sends (sd_notify, as under systemd's `Type=notify`) and
/// starts the first-boot helper after the first: nothing polls the API while the daemon
/// starts, and the time reported is the daemon's own.
fn watch_ready(sock: UnixDatagram) {
    let mut helper_started = false;
    let mut buf = [0u8; 512];
    loop {
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // Not retried (it would spin); the helper then polls the API itself.
            Err(e) => {
                say!("{NOTIFY_PATH}: {e}; no further readiness reports");
                if !helper_started {
                    spawn_firstboot(false);
                }
                return;
            }
        };
        if !String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1") {
            continue;
        }
        say!("daemon ready at {} s since kernel start", uptime());
        if !helper_started {
            spawn_firstboot(true);
            helper_started = true;
        }
    }
}

fn supervise(signals: &libc::sigset_t, config: &FileConfig) -> i32 {
    let _ = std::fs::remove_file(NOTIFY_PATH);
    let notify = match UnixDatagram::bind(NOTIFY_PATH) {
        Ok(sock) => Some(sock),
        Err(e) => {
            say!("{NOTIFY_PATH}: {e}; the first-boot helper polls the API instead");
            None
        }
    };
    let notifying = notify.is_some();
    let mut daemon = spawn_daemon(config, notifying);
    let mut daemon_started = Instant::now();
    let mut backoff = Duration::from_millis(500);
    let mut restart_at: Option<Instant> = None;
    match notify {
        Some(sock) => {
            std::thread::spawn(move || watch_ready(sock));
        }
        None => spawn_firstboot(false),
    }
    loop {
        let sig = wait_signal(signals, Duration::from_millis(500));
        let shutdown = match sig {
            Some(libc::SIGTERM) | Some(libc::SIGINT) => Some(Shutdown::Reboot),
            Some(libc::SIGUSR1) | Some(libc::SIGUSR2) | Some(libc::SIGPWR) => Some(Shutdown::PowerOff),
            _ => None,
        };
        if let Some(kind) = shutdown {
            shut_down(kind, daemon, config);
        }
        for (pid, status) in reap() {
            if Some(pid) == daemon {
                let ran = daemon_started.elapsed();
                backoff = next_backoff(backoff, ran);
                say!(
                    "daemon (pid {pid}) exited with status {status:#x} after {} s; restarting in {} ms",
                    ran.as_secs(),
                    backoff.as_millis()
                );
                daemon = None;
                restart_at = Some(Instant::now() + backoff);
            }
        }
        if daemon.is_none() && restart_at.is_some_and(|t| Instant::now() >= t) {
            daemon = spawn_daemon(config, notifying);
            daemon_started = Instant::now();
            restart_at = None;
        }
    }
}

/// The first-boot helper: waits for the API, loads baked-in images once, runs the autorun
/// command, then asks PID 1 to power off/reboot when told so.
fn firstboot() -> i32 {
    let config = config::load_or_default(Path::new(config::DEFAULT_PATH)).unwrap_or_default();
    let params = cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    let start = Instant::now();
    let client = crate::api::client::Client::new(config.socket.clone());
    loop {
        if client
            .get("/_ping")
            .map(|r| r.head.status == 200)
            .unwrap_or(false)
        {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            say!(
                "the daemon did not answer on {} within 120 s",
                config.socket.display()
            );
            return 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if std::env::var_os(SAW_READY_ENV).is_none() {
        say!("daemon ready at {} s since kernel start", uptime());
    }
    let preload = std::thread::spawn(|| load_module_list(PRELOAD_LIST, "preloaded"));
    let host = format!("unix://{}", config.socket.display());
    preload_images(&config, &host);
    // Autorun commands may need the LAN (pulls, peers): wait for init's LAN set-up.
    let waiting = Instant::now();
    while !Path::new(LAN_DONE).exists() && waiting.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if params.autorun.is_empty() {
        let _ = preload.join();
        return 0;
    }
    for words in &params.autorun {
        say!("autorun: shoal {}", words.join(" "));
        let status = Command::new(self_exe())
            .arg0("shoal")
            .args(words)
            .env("DOCKER_HOST", &host)
            .status();
        match status {
            Ok(s) => say!("autorun exited with {}", s.code().unwrap_or(-1)),
            Err(e) => say!("autorun: {e}"),
        }
    }
    let _ = preload.join();
    report_rss();
    match params.after_autorun {
        AfterAutorun::Stay => 0,
        AfterAutorun::PowerOff => request(Shutdown::PowerOff),
        AfterAutorun::Reboot => request(Shutdown::Reboot),
    }
}

/// Resident memory of shoal's own processes, by role, from /proc (kB).
fn report_rss() {
    let (mut init, mut daemon, mut shims, mut nshims) = (0u64, 0u64, 0u64, 0usize);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        match (pid, argv.get(1).copied()) {
            (1, _) => init = rss,
            (_, Some(b"daemon")) => daemon += rss,
            (_, Some(b"shim")) => {
                shims += rss;
                nshims += 1
            }
            _ => {}
        }
    }
    say!("rss kB: init {init}, daemon {daemon}, {nshims} shims {shims}");
}

fn preload_images(config: &FileConfig, host: &str) {
    let Ok(entries) = std::fs::read_dir(&config.preload_dir) else {
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    files.sort();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let marker = config.root.join(format!(".preloaded-{name}"));
        if marker.exists() {
            continue;
        }
        let t = Instant::now();
        let mut cmd = Command::new(self_exe());
        cmd.arg0("shoal").env("DOCKER_HOST", host);
        // NAME.rootfs.tar is a plain root file system: imported as NAME:latest; any other
        // .tar is a `docker save` / OCI archive.
        match name.strip_suffix(".rootfs.tar") {
            Some(repo) => cmd.arg("import").arg(&file).arg(format!("{repo}:latest")),
            None => cmd.args(["load", "-q", "-i"]).arg(&file),
        };
        let status = cmd.status();
        match status {
            Ok(s) if s.success() => {
                say!("loaded {name} in {} ms", t.elapsed().as_millis());
                if let Err(e) = crate::storage::atomic::write(&marker, b"") {
                    say!("recording {}: {e}", marker.display());
                }
            }
            Ok(s) => say!("loading {name} failed with {}", s.code().unwrap_or(-1)),
            Err(e) => say!("loading {name}: {e}"),
        }
    }
}

/// Stops containers through the API, then the daemon and everything else; syncs; reboots.
fn shut_down(kind: Shutdown, daemon: Option<i32>, config: &FileConfig) -> ! {
    say!("{kind:?} requested at {} s: stopping containers", uptime());
    stop_containers(&config.socket, config.stop_timeout);
    if let Some(pid) = daemon {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        wait_for_exit(Some(pid), Duration::from_secs(5));
    }
    // SAFETY: kill(-1, ...) signals every process except PID 1 itself.
    unsafe { libc::kill(-1, libc::SIGTERM) };
    wait_for_exit(None, Duration::from_secs(2));
    // SAFETY: as above.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    wait_for_exit(None, Duration::from_millis(500));
    match dhcp::release_held() {
        Ok(Some(addr)) => say!("released the DHCP lease of {addr}"),
        Ok(None) => {}
        Err(e) => say!("{e}"),
    }
    rustix::fs::sync();
    let root = config.root.display().to_string();
    if let Err(e) = rustix::mount::mount_remount(root.as_str(), rustix::mount::MountFlags::RDONLY, "") {
        say!("remounting {root} read-only: {e}");
    }
    rustix::fs::sync();
    let cmd = match kind {
        Shutdown::PowerOff => rustix::system::RebootCommand::PowerOff,
        Shutdown::Reboot => rustix::system::RebootCommand::Restart,
    };
    say!("{kind:?} at {} s", uptime());
    let err = rustix::system::reboot(cmd);
    say!("reboot(2) failed: {err:?}");
    // PID 1 must not exit (the kernel would panic); keep reaping.
    loop {
        reap();
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn stop_containers(socket: &Path, timeout: u32) {
    let client = crate::api::client::Client::new(socket.to_path_buf());
    let list = match client.get_json("/containers/json") {
        Ok(v) => v,
        Err(e) => {
            say!("listing containers: {e}");
            return;
        }
    };
    let ids: Vec<String> = list
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("Id").and_then(|i| i.as_str()).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    // In parallel: every container gets its full timeout, not a share of it.
    let handles: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let client = crate::api::client::Client::new(socket.to_path_buf());
            std::thread::spawn(move || {
                let path = format!("/containers/{id}/stop?t={timeout}");
                if let Err(e) = client.post(&path, None) {
                    say!("stopping {}: {e}", &id[..id.len().min(12)]);
                }
            })
        })
        .collect();
    let n = handles.len();
    for h in handles {
        let _ = h.join();
    }
    say!("stopped {n} containers");
}

/// Reaps until `pid` (or, for `None`, every child) is gone or `limit` passes.
fn wait_for_exit(pid: Option<i32>, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        let reaped = reap();
        if let Some(p) = pid {
            if reaped.iter().any(|(r, _)| *r == p) {
                return;
            }
        } else {
            // SAFETY: waitpid with WNOHANG and no status pointer only queries.
            let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
            if r < 0 {
                return; // ECHILD: no children left
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Duration::from_millis(500);
        let mut seen = Vec::new();
        for _ in 0..7 {
            b = next_backoff(b, Duration::from_secs(1));
            seen.push(b.as_secs());
        }
        assert_eq!(seen, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(next_backoff(b, Duration::from_secs(61)), Duration::from_secs(1));
    }
}
