//! `docker top`: the processes of a container (everything in its cgroup), in `ps -ef` columns
//! (UID PID PPID C STIME TTY TIME CMD), read from /proc of the host.

use std::fs;
use std::io;
use std::path::Path;

/// One process, with `ps -ef`'s columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRow {
    pub uid: String,
    pub pid: u32,
    pub ppid: u32,
    /// CPU utilisation over the process's lifetime, in percent.
    pub c: u32,
    pub stime: String,
    pub tty: String,
    pub time: String,
    pub cmd: String,
}

impl ProcessRow {
    pub const TITLES: [&'static str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];

    pub fn cells(&self) -> Vec<String> {
        vec![
            self.uid.clone(),
            self.pid.to_string(),
            self.ppid.to_string(),
            self.c.to_string(),
            self.stime.clone(),
            self.tty.clone(),
            self.time.clone(),
            self.cmd.clone(),
        ]
    }
}

/// The processes of the container in `dir`, by pid.
pub fn top(dir: &Path) -> io::Result<Vec<ProcessRow>> {
    let run = super::read_run_state(dir)?;
    let mut pids = run.cgroups.pids()?;
    pids.sort_unstable();
    // Exec helpers sit in the cgroup but outside the container's pid namespace: not shown.
    let ns = |pid: u32| fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let container_ns = ns(run.pid);
    pids.retain(|p| container_ns.is_none() || ns(*p) == container_ns);
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let ticks = crate::sys::clock_ticks();
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
        .unwrap_or(0);
    let uptime: f64 = fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    Ok(pids
        .into_iter()
        .filter_map(|pid| row(pid, &passwd, ticks, btime, uptime))
        .collect())
}

/// A row from /proc/<pid>; None when the process is gone.
fn row(pid: u32, passwd: &str, ticks: u64, btime: u64, uptime: f64) -> Option<ProcessRow> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let fields = parse_stat(&stat)?;
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:")?.split_whitespace().next()?.parse().ok())?;
    let cpu_ticks = fields.utime + fields.stime;
    let started = fields.starttime as f64 / ticks as f64;
    let elapsed = (uptime - started).max(0.0);
    let c = if elapsed > 0.0 {
        ((cpu_ticks as f64 / ticks as f64) / elapsed * 100.0) as u32
    } else {
        0
    };
    let start_secs = btime + fields.starttime / ticks;
    Some(ProcessRow {
        uid: user_name(passwd, uid),
        pid,
        ppid: fields.ppid,
        c,
        stime: format!("{:02}:{:02}", start_secs % 86_400 / 3600, start_secs % 3600 / 60),
        tty: tty_name(fields.tty_nr),
        time: cpu_time(cpu_ticks / ticks),
        cmd: command(&cmdline, &fields.comm),
    })
}

struct StatFields {
    comm: String,
    ppid: u32,
    tty_nr: u32,
    utime: u64,
    stime: u64,
    starttime: u64,
}

/// Parse /proc/<pid>/stat; the command may contain spaces and parentheses, so fields are
/// counted from the last ')'.
fn parse_stat(stat: &str) -> Option<StatFields> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    // rest[0] is field 3 (state).
    let f = |n: usize| -> Option<u64> { rest.get(n - 3)?.parse().ok() };
    Some(StatFields {
        comm,
        ppid: f(4)? as u32,
        tty_nr: f(7)? as u32,
        utime: f(14)?,
        stime: f(15)?,
        starttime: f(22)?,
    })
}

fn user_name(passwd: &str, uid: u32) -> String {
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| uid.to_string())
}

fn tty_name(tty_nr: u32) -> String {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        0 => "?".to_string(),
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 => format!("tty{minor}"),
        _ => "?".to_string(),
    }
}

fn cpu_time(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

fn command(cmdline: &[u8], comm: &str) -> String {
    let parts: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    if parts.is_empty() {
        format!("[{comm}]")
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_names() {
        let s = "42 (a) b (c)) S 1 42 42 34816 42 4194560 100 0 0 0 250 50 0 0 20 0 1 0 12345 1000 10 18446744073709551615";
        let f = parse_stat(s).unwrap();
        assert_eq!(
            (f.comm.as_str(), f.ppid, f.utime, f.stime, f.starttime),
            ("a) b (c)", 1, 250, 50, 12345)
        );
        assert_eq!(tty_name(f.tty_nr), "pts/0");
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn columns_format_like_ps() {
        assert_eq!(cpu_time(3 * 3600 + 61), "03:01:01");
        assert_eq!(cpu_time(86_400 + 5), "1-00:00:05");
        assert_eq!(command(b"sh\0-c\0sleep 1\0", "sh"), "sh -c sleep 1");
        assert_eq!(command(b"", "kworker"), "[kworker]");
        assert_eq!(user_name("root:x:0:0::/root:/bin/sh\n", 0), "root");
        assert_eq!(user_name("", 1000), "1000");
    }
}
