//! Time as Docker prints it: RFC 3339 with nanoseconds in UTC, and back.
//!
//! Pure: callers pass the instant in; `now()` is the only clock read, kept here so that
//! everything else takes time as an argument.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Docker's zero time, shown for "never" (e.g. FinishedAt of a container never stopped).
pub const ZERO: &str = "0001-01-01T00:00:00Z";

/// Nanoseconds since the Unix epoch, now.
pub fn now_nanos() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// `now` as RFC 3339 with nanoseconds.
pub fn now() -> String {
    format_nanos(now_nanos())
}

/// Format Unix nanoseconds as `2026-11-27T20:43:40.123456789Z`.
pub fn format_nanos(nanos: i128) -> String {
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    let frac = nanos.rem_euclid(1_000_000_000) as u32;
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:09}Z")
}

/// Format Unix nanoseconds as Go's `time.RFC3339Nano` does: trailing zeros of the fraction
/// dropped (and the fraction with them when zero). Image configs carry `created` this way;
/// tools that re-encode a config (skopeo, docker) must reproduce the same bytes, or the image
/// ID changes.
pub fn format_go(nanos: i128) -> String {
    let full = format_nanos(nanos);
    let (head, frac) = full.split_at(19);
    let frac = frac.trim_end_matches('Z').trim_end_matches('0');
    if frac == "." {
        format!("{head}Z")
    } else {
        format!("{head}{frac}Z")
    }
}

/// Format a `SystemTime` as RFC 3339 with nanoseconds.
pub fn format_system(t: SystemTime) -> String {
    format_nanos(match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    })
}

/// Parse RFC 3339 into a `SystemTime` (instants before 1970 are refused).
pub fn parse_system(s: &str) -> Option<SystemTime> {
    let n = u64::try_from(parse(s)?).ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(n))
}

/// Parse RFC 3339 into whole Unix seconds (the fraction dropped).
pub fn parse_secs(s: &str) -> Option<i64> {
    parse(s).map(|n| n.div_euclid(1_000_000_000) as i64)
}

/// Format Unix seconds as `2026-11-27T20:43:40Z`.
pub fn format_secs(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Parse RFC 3339 (any fraction, `Z` or `±hh:mm`) into Unix nanoseconds.
pub fn parse(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac: i128 = 0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let mut scaled = r[..digits.min(9)].to_string();
        while scaled.len() < 9 {
            scaled.push('0');
        }
        frac = scaled.parse().ok()?;
        rest = &r[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            if rest.len() != 6 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    let secs = days_from_civil(y, mo as u32, d as u32) * 86400 + h * 3600 + mi * 60 + sec - offset;
    Some(secs as i128 * 1_000_000_000 + frac)
}

/// Parse docker's `--since`/`--until` forms: RFC 3339, Unix seconds (with fraction), or a
/// duration before `now` like `10m`, `1h30m`, `45s`.
pub fn parse_since(s: &str, now_nanos: i128) -> Option<i128> {
    if let Some(t) = parse(s) {
        return Some(t);
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Some((secs * 1e9) as i128);
    }
    parse_duration(s).map(|d| now_nanos - d.as_nanos() as i128)
}

/// Parse Go-style durations: `300ms`, `1.5s`, `2m`, `1h30m`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .bytes()
            .take_while(|c| c.is_ascii_alphabetic() || *c == 0xc2 || *c == 0xb5)
            .count();
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[u..];
    }
    Some(Duration::from_secs_f64(total))
}

/// Seconds since the epoch → (year, month, day, hour, minute, second), proleptic Gregorian.
fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    // Days-to-civil after H. Hinnant's public-domain algorithm description.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (sod / 3600) as u32,
        (sod % 3600 / 60) as u32,
        (sod % 60) as u32,
    )
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_secs(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(
            format_nanos(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
    }

    #[test]
    fn parse_roundtrips_and_handles_offsets() {
        for n in [0i128, 1_700_000_000_123_456_789, 4_102_444_800_000_000_001] {
            assert_eq!(parse(&format_nanos(n)), Some(n));
        }
        assert_eq!(
            parse("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000 * 1_000_000_000)
        );
        assert_eq!(parse("2023-11-14T22:13:20.5Z"), Some(1_700_000_000_500_000_000));
        assert_eq!(parse("2023-13-14T22:13:20Z"), None);
        assert_eq!(parse("garbage"), None);
        assert_eq!(parse("2023-11-14T22:13:20."), None);
    }

    #[test]
    fn go_format_trims_the_fraction() {
        assert_eq!(format_go(1_700_000_000_120_000_000), "2023-11-14T22:13:20.12Z");
        assert_eq!(format_go(1_700_000_000_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_secs("2023-11-14T22:13:20.99Z"), Some(1_700_000_000));
        let t = parse_system("2023-11-14T22:13:20.5Z").unwrap();
        assert_eq!(format_system(t), "2023-11-14T22:13:20.500000000Z");
    }

    #[test]
    fn since_accepts_docker_forms() {
        let now = 1_000 * 1_000_000_000;
        assert_eq!(parse_since("10s", now), Some(990 * 1_000_000_000));
        assert_eq!(
            parse_since("1h30m", 10_000 * 1_000_000_000),
            Some(4_600 * 1_000_000_000)
        );
        assert_eq!(parse_since("12.5", now), Some(12_500_000_000));
        assert_eq!(parse_since("soon", now), None);
    }
}
