//! Arguments of the instructions that only change the image config (ARG, ENV, LABEL,
//! EXPOSE, HEALTHCHECK), parsed into values. Pure.

use super::dockerfile::{self, Instruction};
use super::{at, shell_lex};
use serde_json::Value;

/// `ARG a b=c`: names and expanded defaults.
pub(super) fn parse_args(
    ins: &Instruction,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, Option<String>)>, String> {
    let words = shell_lex::words(&ins.rest, escape, lookup).map_err(|e| at(ins, e))?;
    if words.is_empty() {
        return Err(at(ins, "ARG requires at least one argument"));
    }
    let mut out = Vec::new();
    for w in words {
        let (k, v) = match w.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (w, None),
        };
        if k.is_empty() {
            return Err(at(ins, "ARG names can not be blank"));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// `KEY=value ...` pairs, or the legacy `KEY value with spaces` form.
pub(super) fn key_values(
    ins: &Instruction,
    words: &[String],
    word: &dyn Fn(&str) -> Result<String, String>,
    what: &str,
) -> Result<Vec<(String, String)>, String> {
    let Some(first) = words.first() else {
        return Err(at(ins, format!("{what} requires at least one argument")));
    };
    if !first.contains('=') {
        // Legacy form: the first word is the key, the rest of the line the value.
        let raw = ins.rest.trim_start();
        let after = raw.find(char::is_whitespace).map_or("", |p| raw[p..].trim());
        if after.is_empty() {
            return Err(at(ins, format!("{what} must have two arguments")));
        }
        return Ok(vec![(first.clone(), word(after)?)]);
    }
    let mut out = Vec::new();
    for w in words {
        match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_string(), v.to_string())),
            _ => return Err(at(ins, format!("{what} names can not be blank: {w:?}"))),
        }
    }
    Ok(out)
}

/// `80`, `80/udp`, `8000-8002/tcp` → the ExposedPorts keys.
pub(super) fn expose_keys(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let bad = || format!("invalid containerPort: {ports}");
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if lo > hi || hi - lo > 1024 {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// A Go duration ("30s", "1m30s", "500ms") in nanoseconds.
fn go_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration {s:?}");
    if s == "0" {
        return Ok(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Ok(total as i64)
}

/// The HEALTHCHECK config value: `NONE`, or flags then `CMD …`.
pub(super) fn healthcheck(ins: &Instruction) -> Result<Value, String> {
    let rest = ins.rest.trim();
    if rest.eq_ignore_ascii_case("NONE") {
        return Ok(serde_json::json!({ "Test": ["NONE"] }));
    }
    let (kw, cmd) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if !kw.eq_ignore_ascii_case("CMD") {
        return Err("HEALTHCHECK requires NONE or CMD followed by the command".into());
    }
    let cmd = cmd.trim();
    if cmd.is_empty() {
        return Err("HEALTHCHECK CMD requires a command".into());
    }
    let test: Vec<String> = match dockerfile::exec_form(cmd) {
        Some(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
        None => vec!["CMD-SHELL".to_string(), cmd.to_string()],
    };
    let mut v = serde_json::json!({ "Test": test });
    for (flag, field) in [
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
        ("start-interval", "StartInterval"),
    ] {
        if let Some(d) = ins.flag(flag) {
            v[field] = Value::from(go_duration(d)?);
        }
    }
    if let Some(r) = ins.flag("retries") {
        let n: i64 = r.parse().map_err(|_| format!("invalid --retries {r:?}"))?;
        if n < 0 {
            return Err("--retries cannot be negative".into());
        }
        v["Retries"] = Value::from(n);
    }
    for (k, _) in &ins.flags {
        if !matches!(
            k.as_str(),
            "interval" | "timeout" | "start-period" | "start-interval" | "retries"
        ) {
            return Err(format!("unknown flag: --{k}"));
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expose_and_durations() {
        assert_eq!(expose_keys("80").unwrap(), ["80/tcp"]);
        assert_eq!(expose_keys("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(expose_keys("8000-8002").unwrap().len(), 3);
        assert!(expose_keys("x").is_err());
        assert_eq!(go_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(go_duration("500ms").unwrap(), 500_000_000);
        assert!(go_duration("5").is_err());
    }

    #[test]
    fn healthcheck_forms() {
        let df = dockerfile::parse("HEALTHCHECK --interval=5s --retries=3 CMD wget -q localhost\nHEALTHCHECK NONE\nHEALTHCHECK CMD [\"true\"]\n").unwrap();
        let v = healthcheck(&df.instructions[0]).unwrap();
        assert_eq!(v["Test"], serde_json::json!(["CMD-SHELL", "wget -q localhost"]));
        assert_eq!(v["Interval"], 5_000_000_000i64);
        assert_eq!(v["Retries"], 3);
        assert_eq!(
            healthcheck(&df.instructions[1]).unwrap()["Test"],
            serde_json::json!(["NONE"])
        );
        assert_eq!(
            healthcheck(&df.instructions[2]).unwrap()["Test"],
            serde_json::json!(["CMD", "true"])
        );
    }

    proptest::proptest! {
        #[test]
        fn instruction_arguments_never_panic(s in "\\PC{0,60}") {
            let _ = expose_keys(&s);
            let _ = go_duration(&s);
            if let Ok(df) = dockerfile::parse(&format!("HEALTHCHECK {s}\nENV {s}\nARG {s}")) {
                let env = |_: &str| None;
                let word = |x: &str| shell_lex::word(x, '\\', &env);
                for ins in &df.instructions {
                    let _ = healthcheck(ins);
                    let _ = parse_args(ins, '\\', &env);
                    if let Ok(ws) = shell_lex::words(&ins.rest, '\\', &env) {
                        let _ = key_values(ins, &ws, &word, "ENV");
                    }
                }
            }
        }
    }

    #[test]
    fn env_pairs_and_legacy_form() {
        let df = dockerfile::parse("ENV A=1 B=\"two words\"\nENV C three words\nENV =x\n").unwrap();
        let env = |_: &str| None;
        let word = |s: &str| shell_lex::word(s, '\\', &env);
        let ws = |i: &Instruction| shell_lex::words(&i.rest, '\\', &env).unwrap();
        let i0 = &df.instructions[0];
        assert_eq!(
            key_values(i0, &ws(i0), &word, "ENV").unwrap(),
            [
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "two words".to_string())
            ]
        );
        let i1 = &df.instructions[1];
        assert_eq!(
            key_values(i1, &ws(i1), &word, "ENV").unwrap(),
            [("C".to_string(), "three words".to_string())]
        );
        let i2 = &df.instructions[2];
        assert!(key_values(i2, &ws(i2), &word, "ENV")
            .unwrap_err()
            .starts_with("Dockerfile:3:"));
    }
}
