//! The local terminal: raw mode for `-t` sessions (always restored), window size, and a
//! signal thread that turns SIGWINCH into resize requests and proxies SIGINT/SIGTERM/...
//! to the container when no TTY carries them.
//!
//! Guarantees: [`RawMode`] restores the saved termios when dropped; signals are taken with
//! `sigwait` on one thread (blocked everywhere else), so no async-signal-unsafe handler runs.

use rustix::termios::{self, OptionalActions, Termios};
use std::io;
use std::os::fd::BorrowedFd;

fn stdin_fd() -> BorrowedFd<'static> {
    rustix::stdio::stdin()
}

fn stdout_fd() -> BorrowedFd<'static> {
    rustix::stdio::stdout()
}

pub fn stdin_is_tty() -> bool {
    termios::isatty(stdin_fd())
}

pub fn stdout_is_tty() -> bool {
    termios::isatty(stdout_fd())
}

/// The terminal's (rows, columns), from stdout or else stdin.
pub fn window_size() -> Option<(u16, u16)> {
    [stdout_fd(), stdin_fd()]
        .into_iter()
        .find_map(|fd| termios::tcgetwinsize(fd).ok())
        .filter(|w| w.ws_row > 0 && w.ws_col > 0)
        .map(|w| (w.ws_row, w.ws_col))
}

/// Raw mode on stdin while alive; the previous settings come back on drop.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Enter raw mode if stdin is a terminal; `Ok(None)` when it is not.
    pub fn enter() -> io::Result<Option<RawMode>> {
        if !stdin_is_tty() {
            return Ok(None);
        }
        let saved = termios::tcgetattr(stdin_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        // Keep output post-processing so "\n" from the local side still returns the carriage.
        raw.output_modes.insert(termios::OutputModes::OPOST);
        termios::tcsetattr(stdin_fd(), OptionalActions::Now, &raw)?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Restoring can only fail if stdin went away; nothing more can be done then.
        let _ = termios::tcsetattr(stdin_fd(), OptionalActions::Now, &self.saved);
    }
}

/// Signals forwarded to the container by `--sig-proxy` (docker proxies all but these few).
const PROXIED: &[(libc::c_int, &str)] = &[
    (libc::SIGINT, "SIGINT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGUSR2, "SIGUSR2"),
];

/// What the signal thread reports.
pub enum SignalEvent {
    Resize,
    Forward(&'static str),
}

/// Block SIGWINCH (and the proxied signals when `proxy`) in this thread — call it before
/// spawning other threads so they inherit the mask — and start a thread that calls
/// `on_event` for each one received.
pub fn spawn_signal_thread<F>(proxy: bool, mut on_event: F) -> io::Result<()>
where
    F: FnMut(SignalEvent) + Send + 'static,
{
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGWINCH);
        if proxy {
            for (sig, _) in PROXIED {
                libc::sigaddset(&mut set, *sig);
            }
        }
    }
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    let set_for_thread = set;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: the set is initialised and these signals are blocked in every thread, so
            // sigwait is the one place they are delivered.
            let rc = unsafe { libc::sigwait(&set_for_thread, &mut sig) };
            if rc != 0 {
                continue;
            }
            if sig == libc::SIGWINCH {
                on_event(SignalEvent::Resize);
            } else if let Some((_, name)) = PROXIED.iter().find(|(s, _)| *s == sig) {
                on_event(SignalEvent::Forward(name));
            }
        })?;
    Ok(())
}
