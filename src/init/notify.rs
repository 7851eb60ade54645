//! sd_notify: tells a supervisor (systemd with `Type=notify`, or shoal's own init) that the
//! daemon is ready, by sending `READY=1` as one datagram to `$NOTIFY_SOCKET`.
//!
//! Without `$NOTIFY_SOCKET` nothing is sent and `Ok(false)` is returned, so calling it under
//! OpenRC or BusyBox init is harmless. An `@` prefix names a Linux abstract socket.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyTarget {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

/// Interprets the value of `$NOTIFY_SOCKET`; `None` for values that name no socket.
pub fn parse_target(value: &str) -> Option<NotifyTarget> {
    if let Some(name) = value.strip_prefix('@') {
        return Some(NotifyTarget::Abstract(name.as_bytes().to_vec()));
    }
    if value.starts_with('/') {
        return Some(NotifyTarget::Path(PathBuf::from(value)));
    }
    None
}

/// Sends `state` (e.g. `"READY=1"` or `"STOPPING=1"`) to `$NOTIFY_SOCKET`.
/// Returns whether a notification was sent.
pub fn notify(state: &str) -> io::Result<bool> {
    let value = match std::env::var("NOTIFY_SOCKET") {
        Ok(v) => v,
        Err(_) => return Ok(false),
    };
    let target = parse_target(&value).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("NOTIFY_SOCKET={value:?} is not a socket path"),
        )
    })?;
    send(&target, state)?;
    Ok(true)
}

/// Sends one notification datagram to `target`.
pub fn send(target: &NotifyTarget, state: &str) -> io::Result<()> {
    let addr = match target {
        NotifyTarget::Path(p) => SocketAddr::from_pathname(p)?,
        NotifyTarget::Abstract(name) => SocketAddr::from_abstract_name(name)?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("sending {state:?} to NOTIFY_SOCKET {target:?}: {e}"),
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("/run/systemd/notify"),
            Some(NotifyTarget::Path("/run/systemd/notify".into()))
        );
        assert_eq!(parse_target("@sd"), Some(NotifyTarget::Abstract(b"sd".to_vec())));
        assert_eq!(parse_target("relative"), None);
        assert_eq!(parse_target(""), None);
    }

    #[test]
    fn ready_reaches_a_listening_socket() {
        let dir = std::env::temp_dir().join(format!("shoal-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        send(&NotifyTarget::Path(path.clone()), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let name = format!("shoal-notify-test-{}", std::process::id());
        let abs = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        send(&NotifyTarget::Abstract(name.into_bytes()), "STOPPING=1").unwrap();
        let n = abs.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
