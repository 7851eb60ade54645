//! `shoal events`: the daemon's event stream, shaped like `docker events`.
//!
//! [`parse`] turns the flags into an [`EventsCommand`] (pure, tested); [`run`] streams.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};

use serde_json::Value;

use super::template::Template;
use crate::api::client::{query, Body, Client};
use crate::daemon::events::parse_time;
use crate::timefmt;

const HELP: &str = "Usage:  shoal events [OPTIONS]

Get real time events from the server

Options:
  -f, --filter filter   Filter output based on conditions provided
      --format string   Format the output using the given Go template
      --since string    Show all events created since timestamp
      --until string    Stream events until this timestamp
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsCommand {
    /// The API's `since`/`until`: Unix seconds with a nanosecond fraction.
    pub since: Option<String>,
    pub until: Option<String>,
    pub filters: BTreeMap<String, Vec<String>>,
    pub format: Option<String>,
}

/// Parse `events` flags; `now_nanos` turns durations (`10m`) into timestamps as docker does.
pub fn parse(words: &[String], now_nanos: i128) -> Result<Option<EventsCommand>, String> {
    let mut cmd = EventsCommand {
        since: None,
        until: None,
        filters: BTreeMap::new(),
        format: None,
    };
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        i += 1;
        if w == "--help" || w == "-h" {
            return Ok(None);
        }
        let (name, inline) = match w.split_once('=') {
            Some((n, v)) if n.starts_with('-') => (n, Some(v.to_string())),
            _ => (w, None),
        };
        let name = match name {
            "-f" | "--filter" => "filter",
            "--format" => "format",
            "--since" => "since",
            "--until" => "until",
            other => {
                return Err(format!(
                    "unknown flag or argument: {other}\nSee 'shoal events --help'."
                ))
            }
        };
        let value = match inline {
            Some(v) => v,
            None => {
                let v = words
                    .get(i)
                    .cloned()
                    .ok_or_else(|| format!("flag needs an argument: --{name}\nSee 'shoal events --help'."))?;
                i += 1;
                v
            }
        };
        match name {
            "filter" => {
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| format!("bad format of filter (expected name=value): {value}"))?;
                cmd.filters.entry(k.to_string()).or_default().push(v.to_string());
            }
            "format" => cmd.format = Some(value),
            _ => {
                let t = parse_time(&value, now_nanos)
                    .ok_or_else(|| format!("invalid value for --{name}: {value:?} is not a time"))?;
                let stamp = format!(
                    "{}.{:09}",
                    t.div_euclid(1_000_000_000),
                    t.rem_euclid(1_000_000_000)
                );
                if name == "since" {
                    cmd.since = Some(stamp);
                } else {
                    cmd.until = Some(stamp);
                }
            }
        }
    }
    Ok(Some(cmd))
}

/// Docker's default line: `TIME TYPE ACTION ID (k=v, ...)`.
pub fn default_line(v: &Value) -> String {
    let nanos = v["timeNano"].as_i64().unwrap_or(0) as i128;
    let attrs: Vec<String> = v["Actor"]["Attributes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    let mut line = format!(
        "{} {} {} {}",
        timefmt::format_nanos(nanos),
        v["Type"].as_str().unwrap_or(""),
        v["Action"].as_str().unwrap_or(""),
        v["Actor"]["ID"].as_str().unwrap_or("")
    );
    if !attrs.is_empty() {
        line.push_str(&format!(" ({})", attrs.join(", ")));
    }
    line
}

pub fn run(client: &Client, cmd: EventsCommand) -> Result<i32, String> {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if let Some(s) = &cmd.since {
        pairs.push(("since", s.clone()));
    }
    if let Some(u) = &cmd.until {
        pairs.push(("until", u.clone()));
    }
    if !cmd.filters.is_empty() {
        pairs.push(("filters", serde_json::to_string(&cmd.filters).unwrap_or_default()));
    }
    let template = match cmd.format.as_deref() {
        None | Some("") => None,
        Some(t) => Some(Template::parse(t).map_err(|e| format!("template parsing error: {}", e.0))?),
    };
    let resp = client
        .stream("GET", &format!("/events{}", query(&pairs)), Body::Empty)
        .map_err(|e| e.to_string())?;
    let reader = BufReader::new(resp.body);
    let stdout = std::io::stdout();
    for line in reader.lines() {
        let line = line.map_err(|e| format!("reading events: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| format!("daemon sent invalid JSON: {e}"))?;
        let text = match &template {
            Some(t) => t.render(&v).map_err(|e| format!("template: {}", e.0))?,
            None => default_line(&v),
        };
        let mut out = stdout.lock();
        if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
            return Ok(0);
        }
    }
    Ok(0)
}

/// Entry from the client dispatcher: `Some(code)` when `argv` is an `events` command.
pub fn main(argv: &[String]) -> Option<i32> {
    let (host, i) = super::leading_host(argv);
    if argv.get(i)? != "events" {
        return None;
    }
    let cmd = match parse(&argv[i + 1..], timefmt::now_nanos()) {
        Ok(Some(c)) => c,
        Ok(None) => {
            print!("{HELP}");
            return Some(0);
        }
        Err(e) => {
            eprintln!("{e}");
            return Some(125);
        }
    };
    Some(super::with_client(host.as_deref(), |c| run(c, cmd)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_become_api_parameters() {
        let now = 1_700_000_600_000_000_000;
        let c = parse(
            &words("--since 10m --until=1700000700.5 -f type=container -f event=die --filter event=start"),
            now,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.since.as_deref(), Some("1700000000.000000000"));
        assert_eq!(c.until.as_deref(), Some("1700000700.500000000"));
        assert_eq!(c.filters["event"], vec!["die", "start"]);
        assert_eq!(c.filters["type"], vec!["container"]);
        assert!(parse(&words("--since tomorrow"), now).is_err());
        assert!(parse(&words("-f nofilter"), now).is_err());
        assert!(parse(&words("--bogus"), now).is_err());
        assert!(parse(&words("--help"), now).unwrap().is_none());
    }

    #[test]
    fn default_line_matches_docker() {
        let v = serde_json::json!({"Type":"container","Action":"start","Actor":{"ID":"abc","Attributes":{"image":"busybox","name":"web"}},"timeNano":1_700_000_000_000_000_001i64});
        assert_eq!(
            default_line(&v),
            "2023-11-14T22:13:20.000000001Z container start abc (image=busybox, name=web)"
        );
    }
}
