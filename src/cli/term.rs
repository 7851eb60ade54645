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

/// Raw mode on stdin while alive; the previous settings come back on drop, or from
/// [`restore_terminal`] when a signal ends the process first.
pub struct RawMode {
    saved: Termios,
}

/// The settings to put back, while raw mode is on.
static SAVED: std::sync::Mutex<Option<Termios>> = std::sync::Mutex::new(None);

/// Put the terminal back as it was before raw mode (no-op when raw mode is off).
pub fn restore_terminal() {
    let saved = match SAVED.lock() {
        Ok(mut g) => g.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    if let Some(t) = saved {
        // Restoring can only fail if stdin went away; nothing more can be done then.
        let _ = termios::tcsetattr(stdin_fd(), OptionalActions::Now, &t);
    }
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
        if let Ok(mut g) = SAVED.lock() {
            *g = Some(saved.clone());
        }
        termios::tcsetattr(stdin_fd(), OptionalActions::Now, &raw)?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Ok(mut g) = SAVED.lock() {
            *g = None;
        }
        // Restoring can only fail if stdin went away; nothing more can be done then.
        let _ = termios::tcsetattr(stdin_fd(), OptionalActions::Now, &self.saved);
    }
}

/// Signals forwarded to the container by `--sig-proxy`, or that end a session cleanly.
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
    /// A signal to forward or to end on: its name and number.
    Signal(&'static str, i32),
}

/// Block SIGWINCH and the [`PROXIED`] signals in this thread — call it before spawning other
/// threads so they inherit the mask — and start a thread that calls `on_event` for each one
/// received (so the terminal is restored however the session ends).
pub fn spawn_signal_thread<F>(mut on_event: F) -> io::Result<()>
where
    F: FnMut(SignalEvent) + Send + 'static,
{
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGWINCH);
        for (sig, _) in PROXIED {
            libc::sigaddset(&mut set, *sig);
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
                on_event(SignalEvent::Signal(name, sig));
            }
        })?;
    Ok(())
}
