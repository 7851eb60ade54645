//! Who may use the admin page: the board's admin token (made at first start from the kernel
//! RNG, kept 0600 under the state dir, or set in the config file), sessions made by logging
//! in with it (HttpOnly, SameSite=Strict cookie), per-session CSRF tokens for actions, and a
//! per-address back-off for wrong tokens. Time comes in as arguments, so the rules are tested
//! without waiting.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::storage::atomic;

pub const COOKIE: &str = "shoal_admin";
/// Sessions kept at once; the least recently used goes first.
const MAX_SESSIONS: usize = 32;
const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// Addresses whose failures are remembered; the oldest is forgotten first.
const MAX_TRACKED: usize = 1024;
/// Wrong tokens allowed before the back-off starts.
const FREE_FAILURES: u32 = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// `<state dir>/admin/token`.
pub fn token_path(root: &Path) -> PathBuf {
    root.join("admin").join("token")
}

/// The stored token, made (32 random bytes, hex) on first use.
pub fn load_or_create_token(root: &Path) -> io::Result<String> {
    let path = token_path(root);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("reading {}: {e}", path.display()),
            ))
        }
    }
    let dir = root.join("admin");
    atomic::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let token = crate::daemon::names::new_id()?;
    atomic::write_mode(&path, format!("{token}\n").as_bytes(), 0o600)?;
    Ok(token)
}

/// Compare without an early exit, so timing does not tell how much of a guess was right.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Session {
    csrf: String,
    last_used: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    blocked_until: Instant,
}

/// Back-off for wrong tokens, per client address.
#[derive(Default)]
pub struct Limiter {
    seen: HashMap<IpAddr, Failures>,
}

impl Limiter {
    /// `Err(wait)` while `ip` must wait before trying again.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.seen.get(&ip) {
            Some(f) if f.blocked_until > now => Err(f.blocked_until - now),
            _ => Ok(()),
        }
    }

    /// Count a wrong token; returns how long `ip` is now blocked.
    pub fn fail(&mut self, ip: IpAddr, now: Instant) -> Duration {
        if !self.seen.contains_key(&ip) && self.seen.len() >= MAX_TRACKED {
            if let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, f)| f.blocked_until)
                .map(|(k, _)| *k)
            {
                self.seen.remove(&oldest);
            }
        }
        let f = self.seen.entry(ip).or_insert(Failures {
            count: 0,
            blocked_until: now,
        });
        f.count += 1;
        let wait = if f.count <= FREE_FAILURES {
            Duration::ZERO
        } else {
            Duration::from_secs(1u64 << (f.count - FREE_FAILURES - 1).min(16)).min(MAX_BACKOFF)
        };
        f.blocked_until = now + wait;
        wait
    }

    pub fn succeed(&mut self, ip: IpAddr) {
        self.seen.remove(&ip);
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A login session, with its CSRF token.
    Session { id: String, csrf: String },
    /// The token in an `Authorization: Bearer` header (scripts; no cookie, so no CSRF).
    Bearer,
}

pub struct Auth {
    token: String,
    sessions: Mutex<HashMap<String, Session>>,
    limiter: Mutex<Limiter>,
}

impl Auth {
    pub fn new(token: String) -> Auth {
        Auth {
            token,
            sessions: Mutex::new(HashMap::new()),
            limiter: Mutex::new(Limiter::default()),
        }
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(wait)` while `ip` is backing off.
    pub fn check_rate(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        self.limiter().check(ip, now)
    }

    /// Check a presented token, counting failures against `ip` and logging them.
    pub fn verify_token(&self, presented: &str, ip: IpAddr, now: Instant) -> bool {
        if same(presented.trim(), &self.token) {
            self.limiter().succeed(ip);
            return true;
        }
        let wait = self.limiter().fail(ip, now);
        log::warn!(
            "admin page: wrong token from {ip}{}",
            if wait.is_zero() {
                String::new()
            } else {
                format!("; refusing it for {}s", wait.as_secs())
            }
        );
        false
    }

    /// A new session after a good login: (session id, CSRF token).
    pub fn open_session(&self, now: Instant) -> io::Result<(String, String)> {
        let id = crate::daemon::names::new_id()?;
        let csrf = crate::daemon::names::new_id()?;
        let mut sessions = self.sessions();
        sessions.retain(|_, s| now.saturating_duration_since(s.last_used) < SESSION_IDLE);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                last_used: now,
            },
        );
        Ok((id, csrf))
    }

    pub fn close_session(&self, id: &str) {
        self.sessions().remove(id);
    }

    /// The identity of a request from its cookie header and authorization header.
    pub fn identify(
        &self,
        cookie_header: Option<&str>,
        authorization: Option<&str>,
        ip: IpAddr,
        now: Instant,
    ) -> Option<Identity> {
        if let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) {
            return self.verify_token(token, ip, now).then_some(Identity::Bearer);
        }
        let id = cookie_value(cookie_header?, COOKIE)?;
        let mut sessions = self.sessions();
        let s = sessions.get_mut(id)?;
        if now.saturating_duration_since(s.last_used) >= SESSION_IDLE {
            sessions.remove(id);
            return None;
        }
        s.last_used = now;
        Some(Identity::Session {
            id: id.to_string(),
            csrf: s.csrf.clone(),
        })
    }
}

/// One cookie's value from a `Cookie:` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `Set-Cookie` value for a session.
pub fn session_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict")
}

/// Whether an action's `Origin` (or, without one, `Referer`) names this same host. Absent
/// both, the CSRF token alone decides (some clients send neither).
pub fn same_origin(host: Option<&str>, origin: Option<&str>, referer: Option<&str>) -> bool {
    let Some(source) = origin.or(referer) else {
        return true;
    };
    let Some(host) = host else { return false };
    let rest = source
        .strip_prefix("http://")
        .or_else(|| source.strip_prefix("https://"));
    match rest {
        Some(r) => r.split('/').next() == Some(host),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 9));

    #[test]
    fn wrong_tokens_back_off_per_address() {
        let auth = Auth::new("secret".into());
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert!(!auth.verify_token("nope", IP, t0));
            assert!(auth.check_rate(IP, t0).is_ok());
        }
        assert!(!auth.verify_token("nope", IP, t0));
        assert_eq!(auth.check_rate(IP, t0), Err(Duration::from_secs(1)));
        assert!(!auth.verify_token("nope", IP, t0 + Duration::from_secs(1)));
        assert_eq!(
            auth.check_rate(IP, t0 + Duration::from_secs(1)),
            Err(Duration::from_secs(2))
        );
        let other = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 10));
        assert!(auth.check_rate(other, t0).is_ok());
        assert!(auth.verify_token("secret", IP, t0 + Duration::from_secs(5)));
        assert!(auth.check_rate(IP, t0 + Duration::from_secs(5)).is_ok());
        let mut l = Limiter::default();
        for _ in 0..100 {
            l.fail(IP, t0);
        }
        assert_eq!(l.check(IP, t0), Err(MAX_BACKOFF));
    }

    #[test]
    fn sessions_and_bearer() {
        let auth = Auth::new("secret".into());
        let t0 = Instant::now();
        let (id, csrf) = auth.open_session(t0).unwrap();
        let cookie = format!("a=b; {COOKIE}={id}");
        assert_eq!(
            auth.identify(Some(&cookie), None, IP, t0),
            Some(Identity::Session {
                id: id.clone(),
                csrf: csrf.clone()
            })
        );
        assert_eq!(auth.identify(Some("shoal_admin=forged"), None, IP, t0), None);
        assert_eq!(
            auth.identify(None, Some("Bearer secret"), IP, t0),
            Some(Identity::Bearer)
        );
        assert_eq!(auth.identify(None, Some("Bearer guess"), IP, t0), None);
        assert_eq!(auth.identify(Some(&cookie), None, IP, t0 + SESSION_IDLE), None);
        for _ in 0..MAX_SESSIONS + 5 {
            auth.open_session(t0).unwrap();
        }
        assert!(auth.sessions().len() <= MAX_SESSIONS);
        assert!(session_cookie("x").contains("HttpOnly; SameSite=Strict"));
    }

    #[test]
    fn origins() {
        assert!(same_origin(Some("board:8080"), Some("http://board:8080"), None));
        assert!(same_origin(
            Some("board:8080"),
            None,
            Some("http://board:8080/containers")
        ));
        assert!(!same_origin(
            Some("board:8080"),
            Some("http://evil.example"),
            None
        ));
        assert!(!same_origin(Some("board:8080"), Some("null"), None));
        assert!(same_origin(Some("board:8080"), None, None));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }

    #[test]
    fn token_is_made_once_and_private() {
        let dir = std::env::temp_dir().join(format!("shoal-admin-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let t1 = load_or_create_token(&dir).unwrap();
        assert_eq!(t1.len(), 64);
        assert_eq!(load_or_create_token(&dir).unwrap(), t1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(token_path(&dir)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
