//! Healthchecks: while a container runs, its `Config.Healthcheck` test is exec'd in it every
//! interval, and `State.Health` (status, failing streak, the last five results) follows the
//! results as dockerd's does. Docker's rules, as [`Health::record`] applies them:
//!
//! - the status starts as `starting`; a passing probe makes it `healthy`;
//! - a failing probe increments the streak; at `Retries` consecutive failures the status
//!   becomes `unhealthy`; a failure inside `StartPeriod` does not count while `starting`;
//! - a probe that outlives `Timeout` is killed and counts as a failure (exit code -1).
//!
//! Defaults are docker's: interval 30s, timeout 30s, retries 3, no start period.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::container::Status;
use super::engine::Entry;
use crate::api::types::HealthConfig;
use crate::runtime;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
/// Kept results, as dockerd keeps.
const LOG_ENTRIES: usize = 5;
/// Output kept per result, as dockerd keeps.
const MAX_OUTPUT: usize = 4096;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<HealthResult>,
}

impl Health {
    pub fn starting() -> Health {
        Health {
            status: "starting".into(),
            failing_streak: 0,
            log: Vec::new(),
        }
    }

    /// Applies one probe result; `in_start_period` says whether the container is still
    /// within its start period.
    pub fn record(&mut self, result: HealthResult, retries: u32, in_start_period: bool) {
        let passed = result.exit_code == 0;
        self.log.push(result);
        if self.log.len() > LOG_ENTRIES {
            self.log.remove(0);
        }
        if passed {
            self.status = "healthy".into();
            self.failing_streak = 0;
        } else if !(in_start_period && self.status == "starting") {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = "unhealthy".into();
            }
        }
    }

    /// The suffix `docker ps` shows after "Up ...".
    pub fn ps_suffix(&self) -> &'static str {
        match self.status.as_str() {
            "healthy" => " (healthy)",
            "unhealthy" => " (unhealthy)",
            _ => " (health: starting)",
        }
    }
}

/// The program a test runs: `None` for no healthcheck (absent, empty or `NONE`).
pub fn probe_argv(test: &[String]) -> Option<Vec<String>> {
    match test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
            Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
        }
        _ => None,
    }
}

fn nanos(n: i64, default: Duration) -> Duration {
    if n > 0 {
        Duration::from_nanos(n as u64)
    } else {
        default
    }
}

/// Starts the probe thread for the run that just began. Called with the container's slot
/// locked (from the engine's start path), so the thread takes the lock itself.
pub fn watch(entry: Arc<Entry>) {
    let spawned = std::thread::Builder::new()
        .name(format!("health-{}", &entry.id[..12.min(entry.id.len())]))
        .stack_size(128 * 1024)
        .spawn(move || {
            let (config, run) = {
                let mut slot = entry.lock();
                let Some(hc) = slot.rec.config.healthcheck.clone() else {
                    return;
                };
                if probe_argv(&hc.test).is_none() || slot.rec.state.status != Status::Running {
                    return;
                }
                slot.rec.state.health = Some(Health::starting());
                (hc, slot.starts)
            };
            probe_loop(entry, config, run)
        });
    if let Err(e) = spawned {
        log::error!("cannot start a healthcheck thread: {e}");
    }
}

fn probe_loop(entry: Arc<Entry>, hc: HealthConfig, run: u64) {
    let interval = nanos(hc.interval, DEFAULT_INTERVAL);
    let timeout = nanos(hc.timeout, DEFAULT_TIMEOUT);
    let start_period = nanos(hc.start_period, Duration::ZERO);
    // During the start period docker probes every StartInterval (default 5s) when set.
    let start_interval = nanos(hc.start_interval, interval);
    let retries = if hc.retries > 0 {
        hc.retries as u32
    } else {
        DEFAULT_RETRIES
    };
    let Some(argv) = probe_argv(&hc.test) else { return };
    let began = Instant::now();
    loop {
        let in_start = began.elapsed() < start_period;
        std::thread::sleep(if in_start { start_interval } else { interval });
        let (env, user, cwd) = {
            let slot = entry.lock();
            if slot.starts != run || slot.rec.state.status != Status::Running || slot.removing {
                return;
            }
            let c = &slot.rec.config;
            (
                c.env.clone().unwrap_or_default(),
                c.user.clone(),
                c.working_dir.clone(),
            )
        };
        let result = probe(&entry, &argv, env, user, cwd, timeout);
        let mut slot = entry.lock();
        if slot.starts != run || slot.rec.state.status != Status::Running {
            return;
        }
        let in_start = began.elapsed() < start_period;
        if let Some(h) = slot.rec.state.health.as_mut() {
            h.record(result, retries, in_start);
        }
        drop(slot);
        entry.notify();
    }
}

/// Runs one probe with a deadline; output is capped at [`MAX_OUTPUT`].
fn probe(
    entry: &Entry,
    argv: &[String],
    env: Vec<String>,
    user: String,
    cwd: String,
    timeout: Duration,
) -> HealthResult {
    let start = crate::timefmt::now();
    let spec = runtime::ExecSpec {
        args: argv.to_vec(),
        env,
        cwd: if cwd.is_empty() { "/".into() } else { cwd },
        user,
        ..runtime::ExecSpec::default()
    };
    let (exit_code, output) = match runtime::exec(&entry.dir, &spec) {
        Err(e) => (e.code() as i64, e.to_string()),
        Ok(mut proc) => {
            let readers: Vec<_> = [proc.stdout.take(), proc.stderr.take()]
                .into_iter()
                .flatten()
                .map(|mut f| {
                    std::thread::spawn(move || {
                        let mut buf = Vec::new();
                        let _ = (&mut f).take(MAX_OUTPUT as u64 * 4).read_to_end(&mut buf);
                        buf
                    })
                })
                .collect();
            let pid = proc.pid;
            let (tx, rx) = std::sync::mpsc::channel();
            let waiter = std::thread::spawn(move || {
                let code = proc.wait().map(i64::from).unwrap_or(-1);
                let _ = tx.send(code);
            });
            let code = match rx.recv_timeout(timeout) {
                Ok(c) => c,
                Err(_) => {
                    let _ = crate::sys::kill(pid as i32, libc::SIGKILL);
                    let _ = rx.recv();
                    -1
                }
            };
            let _ = waiter.join();
            let mut out = Vec::new();
            for r in readers {
                out.extend(r.join().unwrap_or_default());
            }
            out.truncate(MAX_OUTPUT);
            let mut text = String::from_utf8_lossy(&out).into_owned();
            if code == -1 {
                text = format!("Health check exceeded timeout ({}s)", timeout.as_secs_f64());
            }
            (code, text)
        }
    };
    HealthResult {
        start,
        end: crate::timefmt::now(),
        exit_code,
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: i64) -> HealthResult {
        HealthResult {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn transitions_follow_dockerd() {
        let mut h = Health::starting();
        h.record(result(1), 3, true);
        assert_eq!(
            (h.status.as_str(), h.failing_streak),
            ("starting", 0),
            "start period forgives"
        );
        h.record(result(1), 3, false);
        h.record(result(1), 3, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 2));
        h.record(result(1), 3, false);
        assert_eq!(h.status, "unhealthy");
        h.record(result(0), 3, false);
        assert_eq!(
            (h.status.as_str(), h.failing_streak, h.ps_suffix()),
            ("healthy", 0, " (healthy)")
        );
        for _ in 0..10 {
            h.record(result(0), 3, false);
        }
        assert_eq!(h.log.len(), LOG_ENTRIES);
    }

    #[test]
    fn test_forms() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(probe_argv(&v(&["CMD", "true"])), Some(v(&["true"])));
        assert_eq!(
            probe_argv(&v(&["CMD-SHELL", "exit 1"])),
            Some(v(&["/bin/sh", "-c", "exit 1"]))
        );
        assert_eq!(probe_argv(&v(&["NONE"])), None);
        assert_eq!(probe_argv(&[]), None);
    }
}
