//! The Docker Engine API (a subset, version 1.45): JSON types, the HTTP server on the unix
//! socket, the routes, streaming endpoints; and the HTTP client shoal's CLI uses.

pub mod build;
pub mod client;
pub mod detach;
pub mod events;
pub mod http;
pub mod images;
pub mod networks;
pub mod registry;
pub mod render;
pub mod routes;
pub mod streams;
pub mod types;
pub mod volumes;

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::daemon::engine::Engine;

/// The API version shoal advertises in `/_ping` and `/version`.
pub const API_VERSION: &str = "1.45";
/// The oldest API version clients may negotiate down to.
pub const MIN_API_VERSION: &str = "1.24";

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;

/// GOARCH naming of this machine, as Docker reports it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// Bind the API socket (mode 0660, refusing to steal one a live daemon listens on).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another daemon is already listening on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    // Created under a restrictive umask so there is no moment with a wider mode.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o117));
    let listener = UnixListener::bind(path);
    rustix::process::umask(old);
    let listener =
        listener.map_err(|e| io::Error::new(e.kind(), format!("binding {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Serve the API until the listener fails; one thread per connection.
pub fn serve(engine: Arc<Engine>, listener: UnixListener) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                log::warn!("accept: {e}");
                continue;
            }
        };
        if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            log::warn!("refusing API connection: {MAX_CONNECTIONS} already open");
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let (engine, active2) = (engine.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("api".into())
            .stack_size(2 << 20)
            .spawn(move || {
                http::serve_connection(conn, &|req| routes::handle(&engine, req));
                active2.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::Relaxed);
            log::error!("cannot start an API thread: {e}");
        }
    }
}
