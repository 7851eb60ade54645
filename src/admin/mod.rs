//! The admin page: a small web page served by the daemon on `--admin-addr` to see and steer
//! the board, behind a token, with a Prometheus `/metrics` endpoint.
//!
//! - [`guard`]: the TCP front door (connection caps, size caps, deadlines)
//! - [`server`]: tiny_http behind the guard; routes, actions, live feeds
//! - [`auth`]: token, sessions, CSRF, wrong-token back-off
//! - [`data`]: what the pages show, gathered from the engine
//! - [`pages`], [`metrics`]: pure rendering

pub mod auth;
pub mod data;
pub mod guard;
pub mod metrics;
pub mod pages;
pub mod server;

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::daemon::engine::Engine;

/// The port the admin page conventionally listens on (`--admin-addr 0.0.0.0:2380`).
pub const DEFAULT_PORT: u16 = 2380;

/// Parse `ADDR:PORT` (`0.0.0.0:2380`, `[::]:2380`, `127.0.0.1:2380`).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("invalid admin address {s:?}: expected ADDR:PORT, e.g. 0.0.0.0:{DEFAULT_PORT}"))
}

/// Start the admin page in the background: bind `addr`, load (or make) the token unless one
/// is configured, and serve until the daemon exits.
pub fn start(
    engine: Arc<Engine>,
    addr: &str,
    configured_token: Option<String>,
    api_socket: PathBuf,
) -> Result<SocketAddr, String> {
    let addr = parse_addr(addr)?;
    let root = engine.config.root.clone();
    let token = match configured_token {
        Some(t) if t.trim().len() >= 16 => t.trim().to_string(),
        Some(_) => return Err("admin_token must be at least 16 characters".into()),
        None => auth::load_or_create_token(&root).map_err(|e| format!("admin token: {e}"))?,
    };
    let listener = TcpListener::bind(addr).map_err(|e| format!("admin page: binding {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let sock = root.join("admin").join("http.sock");
    let backend = bind_backend(&sock)?;
    let server = tiny_http::Server::from_listener(backend, None)
        .map_err(|e| format!("admin page: starting the HTTP server: {e}"))?;
    let admin = Arc::new(server::Admin {
        engine,
        auth: auth::Auth::new(token),
        samples: Default::default(),
        started: Instant::now(),
        api_socket,
    });
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .stack_size(256 << 10)
            .spawn(f)
            .map(|_| ())
            .map_err(|e| format!("admin page: starting a thread: {e}"))
    };
    spawn("admin-http", Box::new(move || server::serve(admin, server)))?;
    spawn(
        "admin-guard",
        Box::new(move || guard::serve(listener, sock, guard::Limits::default())),
    )?;
    Ok(bound)
}

/// The handler's socket, in a directory only root can enter: the guard is the only way in
/// from the network.
fn bind_backend(sock: &Path) -> Result<UnixListener, String> {
    let dir = sock.parent().unwrap_or(Path::new("/"));
    crate::storage::atomic::create_dir_all(dir).map_err(|e| e.to_string())?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    match std::fs::remove_file(sock) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing stale {}: {e}", sock.display())),
    }
    UnixListener::bind(sock).map_err(|e| format!("admin page: binding {}: {e}", sock.display()))
}

const TOKEN_HELP: &str = "Usage:  shoal admin token [--config FILE] [--root DIR]

Print the admin page's token (root only).
";

/// `shoal admin token`: print the configured or stored token.
pub fn cli_main(args: &[String]) -> i32 {
    match token_command(args) {
        Ok(Some(token)) => {
            println!("{token}");
            0
        }
        Ok(None) => {
            print!("{TOKEN_HELP}");
            0
        }
        Err(e) => {
            eprintln!("shoal admin: {e}");
            1
        }
    }
}

fn token_command(args: &[String]) -> Result<Option<String>, String> {
    let mut words = args.iter();
    match words.next().map(String::as_str) {
        Some("token") => {}
        None | Some("--help" | "-h" | "help") => return Ok(None),
        Some(other) => return Err(format!("unknown command {other:?}\n{TOKEN_HELP}")),
    }
    let (mut config, mut root) = (None, None);
    while let Some(w) = words.next() {
        match w.as_str() {
            "--config" => config = Some(words.next().ok_or("--config needs a file")?.clone()),
            "--root" => root = Some(words.next().ok_or("--root needs a directory")?.clone()),
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown flag {other:?}\n{TOKEN_HELP}")),
        }
    }
    if !rustix::process::geteuid().is_root() {
        return Err("the admin token is readable by root only: run as root".into());
    }
    let file = match &config {
        Some(p) => crate::init::config::load(Path::new(p))?,
        None => crate::init::config::load_or_default(Path::new(crate::init::config::DEFAULT_PATH))?,
    };
    if let Some(t) = file.admin_token {
        return Ok(Some(t));
    }
    let root = root.map(std::path::PathBuf::from).unwrap_or(file.root);
    let path = auth::token_path(&root);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_string())),
        Ok(_) => Err(format!("{} is empty", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "no admin token yet in {}: it is made when the daemon first starts with --admin-addr",
            path.display()
        )),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}
