//! Pure display helpers that make shoal's output read exactly like docker's: human durations
//! ("2 minutes ago"), sizes ("4.1MB", "12.5MiB"), RFC 3339 timestamps, truncated IDs and
//! commands, container status text, and tab-aligned tables.
//!
//! Guarantees: no clock and no I/O here — "now" is always an argument; malformed timestamps
//! give `None`, never a panic.

/// Seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

impl Timestamp {
    pub fn as_f64(self) -> f64 {
        self.secs as f64 + self.nanos as f64 / 1e9
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Civil date of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parse `2024-05-01T12:34:56.123456789Z` or with a `+02:00` offset.
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + (b[i] - b'0') as u32;
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
    }
    let offset = match s.get(i..)? {
        "Z" | "z" => 0,
        rest if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) && &rest[3..4] == ":" => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
    Some(Timestamp { secs, nanos })
}

/// Docker's zero time `0001-01-01T00:00:00Z` means "never".
pub fn is_zero_time(s: &str) -> bool {
    s.is_empty() || s.starts_with("0001-01-01")
}

/// `2024-05-01T12:34:56.123456789Z` (nanoseconds, UTC), as docker's `logs -t` prints.
pub fn format_rfc3339_nanos(t: Timestamp) -> String {
    let days = t.secs.div_euclid(86400);
    let rem = t.secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        t.nanos
    )
}

/// `2024-05-01 12:34:56 +0000 UTC`, as docker prints `CreatedAt`.
pub fn format_go_time(t: Timestamp) -> String {
    let days = t.secs.div_euclid(86400);
    let rem = t.secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// go-units `HumanDuration`: "Less than a second", "3 seconds", "About a minute", "2 hours"...
pub fn human_duration(secs: f64) -> String {
    let seconds = secs as i64;
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = seconds / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (secs / 3600.0).round() as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", (secs / 3600.0) as i64 / 24 / 365)
}

/// "5 minutes ago" for a moment before `now` (both Unix seconds).
pub fn ago(then: f64, now: f64) -> String {
    format!("{} ago", human_duration((now - then).max(0.0)))
}

/// Go's `%.*g`: `precision` significant digits, trailing zeros dropped.
pub fn go_g(v: f64, precision: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if !v.is_finite() {
        return v.to_string();
    }
    let p = precision.max(1);
    // Round to p significant digits first, then decide the notation from the exponent.
    let sci = format!("{:.*e}", p - 1, v);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= p as i32 {
        let mant = strip_zeros(mant);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.abs());
    }
    let decimals = (p as i32 - 1 - exp).max(0) as usize;
    strip_zeros(&format!("{v:.decimals$}"))
}

fn strip_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// go-units `HumanSizeWithPrecision` (decimal units): `4.1MB`, `123B`, `1.23kB`.
pub fn human_size(bytes: f64, precision: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let (v, unit) = scale(bytes, 1000.0, &UNITS);
    format!("{}{unit}", go_g(v, precision))
}

/// go-units `BytesSize` (binary units, 4 digits): `12.5MiB`, `1.944GiB`.
pub fn binary_size(bytes: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let (v, unit) = scale(bytes, 1024.0, &UNITS);
    format!("{}{unit}", go_g(v, 4))
}

fn scale(mut v: f64, base: f64, units: &[&'static str]) -> (f64, &'static str) {
    let mut i = 0;
    while v >= base && i + 1 < units.len() {
        v /= base;
        i += 1;
    }
    (v, units[i])
}

/// Shorten to `max` characters, the last one an ellipsis, as docker's table cells do.
pub fn ellipsis(s: &str, max: usize) -> String {
    let count = s.chars().count();
    if count <= max || max == 0 {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// A 12-character ID (an image's `sha256:` prefix removed).
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

/// The STATUS text docker shows for a container, from its state, for daemons that do not
/// send one: "Up 3 seconds", "Exited (0) 5 seconds ago", "Created".
pub fn status_text(state: &serde_json::Value, now: f64) -> String {
    let s = |k: &str| state.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let time = |k: &str| {
        parse_rfc3339(s(k))
            .filter(|_| !is_zero_time(s(k)))
            .map(Timestamp::as_f64)
    };
    let status = s("Status");
    match status {
        "running" | "paused" | "restarting" => {
            let since = time("StartedAt")
                .map(|t| human_duration(now - t))
                .unwrap_or_default();
            if status == "restarting" {
                let code = state.get("ExitCode").and_then(|v| v.as_i64()).unwrap_or(0);
                let ago = time("FinishedAt").map(|t| self::ago(t, now)).unwrap_or_default();
                return format!("Restarting ({code}) {ago}");
            }
            let paused = if status == "paused" { " (Paused)" } else { "" };
            format!("Up {since}{paused}")
        }
        "exited" | "dead" => {
            if status == "dead" {
                return "Dead".into();
            }
            let code = state.get("ExitCode").and_then(|v| v.as_i64()).unwrap_or(0);
            match time("FinishedAt") {
                Some(t) => format!("Exited ({code}) {}", ago(t, now)),
                None => format!("Exited ({code})"),
            }
        }
        "removing" => "Removal In Progress".into(),
        _ => "Created".into(),
    }
}

/// Align `\t`-separated cells the way docker's tabwriter (minwidth 10, padding 3) does: each
/// cell followed by a tab is padded to the widest such cell in its column plus 3, at least 10;
/// the last cell of a line is printed as is.
pub fn tabwrite(text: &str) -> String {
    tabwrite_min(text, 10)
}

/// [`tabwrite`] with another minimum cell width (`top` uses 20).
pub fn tabwrite_min(text: &str, min_width: usize) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for cells in &lines {
        for (i, c) in cells.iter().enumerate().take(cells.len().saturating_sub(1)) {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for cells in &lines {
        let last = cells.len().saturating_sub(1);
        for (i, c) in cells.iter().enumerate() {
            out.push_str(c);
            if i < last {
                let width = (widths[i] + 3).max(min_width);
                out.push_str(&" ".repeat(width - c.chars().count()));
            }
        }
        // Go's tabwriter leaves no trailing blanks on a line ending with an empty cell.
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    }
    out
}

/// Re-indent JSON text with `indent` per level, keeping the daemon's key order (docker
/// prints `inspect` with four spaces). `None` when the text is not JSON.
pub fn reindent_json(text: &str, indent: &str, base: usize) -> Option<String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
    let mut out = String::with_capacity(text.len() * 2);
    let mut level = base;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.trim().chars().peekable();
    let newline = |out: &mut String, level: usize| {
        out.push('\n');
        for _ in 0..level {
            out.push_str(indent);
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                // Skip whitespace to see whether the container is empty: `{}` / `[]` stay flat.
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(c);
                    out.push(close);
                } else {
                    out.push(c);
                    level += 1;
                    newline(&mut out, level);
                }
            }
            '}' | ']' => {
                level = level.saturating_sub(1);
                newline(&mut out, level);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, level);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reindent_keeps_key_order() {
        let t =
            r#"{"Id":"a","Args":[],"State":{"Status":"running","Pid":1},"Env":["A=1","B=\"x, y\""],"Z":{}}"#;
        let out = reindent_json(t, "    ", 1).unwrap();
        let expect = "{\n        \"Id\": \"a\",\n        \"Args\": [],\n        \"State\": {\n            \"Status\": \"running\",\n            \"Pid\": 1\n        },\n        \"Env\": [\n            \"A=1\",\n            \"B=\\\"x, y\\\"\"\n        ],\n        \"Z\": {}\n    }";
        assert_eq!(out, expect);
        assert_eq!(reindent_json("{oops", "  ", 0), None);
    }

    #[test]
    fn rfc3339_round_trip() {
        let t = parse_rfc3339("2024-05-01T12:34:56.123456789Z").unwrap();
        assert_eq!(t.secs, 1714566896);
        assert_eq!(t.nanos, 123456789);
        assert_eq!(format_rfc3339_nanos(t), "2024-05-01T12:34:56.123456789Z");
        assert_eq!(
            parse_rfc3339("2024-05-01T14:34:56+02:00").unwrap().secs,
            1714566896
        );
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00.5Z").unwrap(),
            Timestamp {
                secs: 0,
                nanos: 500_000_000
            }
        );
        assert_eq!(
            format_go_time(Timestamp {
                secs: 1714566896,
                nanos: 0
            }),
            "2024-05-01 12:34:56 +0000 UTC"
        );
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z").unwrap().secs, -62135596800);
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2024-05-01T00:00:00",
            "2024-05-01T00:00:00.Z",
            "2024-05-01T00:00:00+0200",
            "2024-0a-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_like_go_units() {
        assert_eq!(human_duration(0.4), "Less than a second");
        assert_eq!(human_duration(1.0), "1 second");
        assert_eq!(human_duration(3.9), "3 seconds");
        assert_eq!(human_duration(60.0), "About a minute");
        assert_eq!(human_duration(119.0), "About a minute");
        assert_eq!(human_duration(120.0), "2 minutes");
        assert_eq!(human_duration(3599.0), "59 minutes");
        assert_eq!(human_duration(3600.0 * 1.4), "About an hour");
        assert_eq!(human_duration(3600.0 * 5.0), "5 hours");
        assert_eq!(human_duration(3600.0 * 50.0), "2 days");
        assert_eq!(human_duration(86400.0 * 20.0), "2 weeks");
        assert_eq!(human_duration(86400.0 * 90.0), "3 months");
        assert_eq!(human_duration(86400.0 * 800.0), "2 years");
        assert_eq!(ago(100.0, 105.0), "5 seconds ago");
    }

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(human_size(0.0, 3), "0B");
        assert_eq!(human_size(123.0, 3), "123B");
        assert_eq!(human_size(1234.0, 3), "1.23kB");
        assert_eq!(human_size(4_100_000.0, 3), "4.1MB");
        assert_eq!(human_size(4_123_456.0, 3), "4.12MB");
        assert_eq!(human_size(1_000_000.0, 3), "1MB");
        assert_eq!(human_size(999.9, 3), "1e+03B");
        assert_eq!(binary_size(13_107_200.0), "12.5MiB");
        assert_eq!(binary_size(2_087_354_368.0), "1.944GiB");
        assert_eq!(binary_size(512.0), "512B");
        assert_eq!(go_g(0.000012345, 3), "1.23e-05");
        assert_eq!(go_g(12.0, 4), "12");
    }

    #[test]
    fn ids_and_ellipsis() {
        assert_eq!(short_id("sha256:0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(ellipsis("sh -c 'echo hi'", 20), "sh -c 'echo hi'");
        assert_eq!(ellipsis("sleep 1000000000000000000", 20), "sleep 1000000000000…");
    }

    #[test]
    fn status_texts() {
        let now = parse_rfc3339("2024-05-01T12:00:10Z").unwrap().as_f64();
        let running = json!({"Status": "running", "StartedAt": "2024-05-01T12:00:07Z"});
        assert_eq!(status_text(&running, now), "Up 3 seconds");
        let exited = json!({"Status": "exited", "ExitCode": 3, "FinishedAt": "2024-05-01T11:58:00Z"});
        assert_eq!(status_text(&exited, now), "Exited (3) 2 minutes ago");
        let created = json!({"Status": "created", "StartedAt": "0001-01-01T00:00:00Z"});
        assert_eq!(status_text(&created, now), "Created");
        let paused = json!({"Status": "paused", "StartedAt": "2024-05-01T11:00:00Z"});
        assert_eq!(status_text(&paused, now), "Up About an hour (Paused)");
    }

    #[test]
    fn tables_like_docker_tabwriter() {
        let t = tabwrite("CONTAINER ID\tIMAGE\tNAMES\n0123456789ab\tbusybox\tweb\n");
        assert_eq!(
            t,
            "CONTAINER ID   IMAGE     NAMES\n0123456789ab   busybox   web\n"
        );
        // Short columns are padded to the 10-character minimum.
        assert_eq!(tabwrite("A\tB\nx\ty\n"), "A         B\nx         y\n");
        // An empty trailing cell leaves no trailing blanks.
        assert_eq!(
            tabwrite("ID\tPORTS\tNAMES\nabc\t\tweb\n"),
            "ID        PORTS     NAMES\nabc                 web\n"
        );
    }
}
