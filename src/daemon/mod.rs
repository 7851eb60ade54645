//! The daemon: opens the state root, reconciles containers with their shims, serves the API
//! socket, and stops cleanly on SIGTERM/SIGINT. Containers are held by their shims, so they
//! keep running across a daemon restart or upgrade.

pub mod build;
pub mod container;
mod container_mounts;
pub mod engine;
pub mod events;
pub mod health;
pub mod logger;
pub mod mounts;
pub mod names;
pub mod network;
pub mod volumes;

use std::path::PathBuf;

use argh::FromArgs;

use engine::{Engine, EngineConfig};

/// Run the shoal daemon in the foreground.
#[derive(FromArgs, Debug)]
struct DaemonArgs {
    /// configuration file (default /etc/shoal/config.toml; flags win over it)
    #[argh(option)]
    config: Option<PathBuf>,
    /// state directory (default /var/lib/shoal)
    #[argh(option)]
    root: Option<PathBuf>,
    /// API socket path (default /run/shoal/shoal.sock)
    #[argh(option)]
    socket: Option<PathBuf>,
    /// cgroup under the daemon's own cgroup for containers (default shoal)
    #[argh(option)]
    cgroup_parent: Option<String>,
    /// log level: error, warn, info, debug (default info)
    #[argh(option)]
    log_level: Option<String>,
    /// address and prefix of the default bridge network (default 172.30.0.1/16)
    #[argh(option)]
    bip: Option<String>,
    /// upstream DNS server of the embedded DNS (repeatable; default: /etc/resolv.conf's)
    #[argh(option)]
    dns: Vec<std::net::IpAddr>,
    /// serve the admin page on ADDR:PORT (off unless set; conventionally 0.0.0.0:2380)
    #[argh(option)]
    admin_addr: Option<String>,
    /// a registry (host:port or IPv4 CIDR) that may be reached over plain HTTP (repeatable)
    #[argh(option)]
    insecure_registry: Vec<String>,
    /// directory of per-registry CA certificates, <dir>/<host:port>/*.crt (default /etc/shoal/certs.d)
    #[argh(option)]
    registry_certs_dir: Option<PathBuf>,
}

/// What the daemon runs with: built-in defaults, then the config file, then flags.
struct Settings {
    root: PathBuf,
    socket: PathBuf,
    cgroup_parent: String,
    log_level: String,
    bip: Option<String>,
    dns: Vec<std::net::IpAddr>,
    admin_addr: Option<String>,
    admin_token: Option<String>,
    registry: crate::image::registry::RegistryConfig,
}

fn settings(args: DaemonArgs) -> Result<Settings, String> {
    let file = match &args.config {
        Some(path) => crate::init::config::load(path)?,
        None => {
            crate::init::config::load_or_default(std::path::Path::new(crate::init::config::DEFAULT_PATH))?
        }
    };
    let admin_addr = args.admin_addr.or(file.admin_addr);
    if let Some(addr) = &admin_addr {
        // Refused before anything is opened or bound.
        crate::admin::parse_addr(addr)?;
    }
    Ok(Settings {
        root: args.root.unwrap_or(file.root),
        socket: args.socket.unwrap_or(file.socket),
        cgroup_parent: args.cgroup_parent.unwrap_or(file.cgroup_parent),
        log_level: args.log_level.unwrap_or(file.log_level),
        bip: args.bip,
        dns: if args.dns.is_empty() { file.dns } else { args.dns },
        admin_addr,
        admin_token: file.admin_token,
        registry: {
            let mut r = crate::image::registry::RegistryConfig {
                insecure: file.insecure_registries.clone(),
                ..Default::default()
            };
            r.insecure.extend(args.insecure_registry);
            if let Some(dir) = args.registry_certs_dir.or(file.registry_certs_dir.clone()) {
                r.certs_dir = dir;
            }
            r
        },
    })
}

/// `shoal daemon [flags]`; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let parsed = match DaemonArgs::from_args(&["shoal daemon"], &strs) {
        Ok(a) => a,
        Err(early) => {
            return match early.status {
                Ok(()) => {
                    println!("{}", early.output);
                    0
                }
                Err(()) => {
                    eprintln!("{}", early.output.trim_end());
                    eprintln!("See 'shoal daemon --help'.");
                    125
                }
            };
        }
    };
    match settings(parsed).and_then(run) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shoal daemon: {e}");
            1
        }
    }
}

fn run(args: Settings) -> Result<(), String> {
    let started = std::time::Instant::now();
    logger::init(&args.log_level)?;
    if args.cgroup_parent.contains("..")
        || args.cgroup_parent.starts_with('/') && args.cgroup_parent.len() == 1
    {
        return Err(format!("invalid --cgroup-parent {:?}", args.cgroup_parent));
    }
    // Signals are taken by one thread with sigwait; block them before any thread starts.
    let signals = block_signals();
    let config = EngineConfig {
        root: args.root.clone(),
        cgroup_parent: args.cgroup_parent.clone(),
        bip: args.bip.clone(),
        dns: args.dns.clone(),
        registry: args.registry.clone(),
    };
    let engine =
        Engine::open(config).map_err(|e| format!("opening state in {}: {e}", args.root.display()))?;
    let listener = crate::api::bind(&args.socket).map_err(|e| e.to_string())?;
    // Containers to restart restore the networks first; otherwise networks come back in the
    // background, and requests that need them wait for it.
    engine.recover();
    let warm = engine.clone();
    std::thread::Builder::new()
        .name("net-restore".into())
        .spawn(move || drop(warm.net()))
        .map_err(|e| format!("starting the network restore thread: {e}"))?;
    if let Some(addr) = &args.admin_addr {
        let bound = crate::admin::start(
            engine.clone(),
            addr,
            args.admin_token.clone(),
            args.socket.clone(),
        )?;
        log::info!("admin page on http://{bound}/");
    }
    let socket = args.socket.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let sig = wait_signal(&signals);
            log::info!("signal {sig}: shutting down (containers keep running under their shims)");
            let _ = std::fs::remove_file(&socket);
            std::process::exit(0);
        })
        .map_err(|e| format!("starting the signal thread: {e}"))?;
    // Tell systemd (Type=notify) or shoal's own init that the API is up.
    if let Err(e) = crate::init::notify::notify("READY=1") {
        log::warn!("{e}");
    }
    log::info!(
        "shoal {} ready in {} ms: API on unix://{}, state in {}",
        env!("CARGO_PKG_VERSION"),
        started.elapsed().as_millis(),
        args.socket.display(),
        args.root.display()
    );
    crate::api::serve(engine, listener);
    Ok(())
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it; pthread_sigmask
    // only changes this thread's mask, inherited by threads spawned afterwards.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is an initialised signal set blocked in this thread; sigwait writes the
    // number of the signal taken into `sig`.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}
