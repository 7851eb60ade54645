//! Records → the JSON Docker clients expect (`/containers/json`, `/containers/{id}/json`), and
//! the list filters. Pure: time comes in as `now`.

use serde_json::{json, Value};
use std::collections::BTreeMap;

use crate::daemon::container::{Record, Status};
use crate::timefmt;

/// `Up 3 seconds`, `Exited (0) 5 minutes ago`, `Created`: the STATUS column of `docker ps`.
pub fn status_line(rec: &Record, now_nanos: i128) -> String {
    let since = |t: &str| {
        timefmt::parse(t)
            .map(|t| human_duration(((now_nanos - t).max(0) / 1_000_000_000) as u64))
            .unwrap_or_default()
    };
    let st = &rec.state;
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => format!(
            "Up {}{}",
            since(&st.started_at),
            st.health.as_ref().map(|h| h.ps_suffix()).unwrap_or("")
        ),
        Status::Restarting => format!("Restarting ({}) {} ago", st.exit_code, since(&st.finished_at)),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
        Status::Exited => format!("Exited ({}) {} ago", st.exit_code, since(&st.finished_at)),
    }
}

/// Go's `units.HumanDuration`, which docker prints.
pub fn human_duration(secs: u64) -> String {
    let (m, h) = (secs / 60, (secs as f64 / 3600.0).round() as u64);
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", h / 24 / 365),
    }
}

/// The COMMAND docker shows: the argv joined by spaces.
pub fn command_line(rec: &Record) -> String {
    rec.argv().join(" ")
}

/// One row of `GET /containers/json`.
pub fn summary(rec: &Record, now_nanos: i128) -> Value {
    json!({
        "Id": rec.id,
        "Names": [format!("/{}", rec.name)],
        "Image": rec.image_ref,
        "ImageID": rec.image_id,
        "Command": command_line(rec),
        "Created": timefmt::parse(&rec.created).map(|n| n / 1_000_000_000).unwrap_or(0) as i64,
        "Ports": [],
        "Labels": rec.config.labels.clone().unwrap_or_default(),
        "State": rec.state.status.as_str(),
        "Status": status_line(rec, now_nanos),
        "HostConfig": { "NetworkMode": network_mode(rec) },
        "NetworkSettings": { "Networks": {} },
        "Mounts": mounts(rec),
    })
}

fn network_mode(rec: &Record) -> &str {
    match rec.host_config.network_mode.as_str() {
        "" | "default" => "bridge",
        m => m,
    }
}

/// `Mounts` as docker shows them (tmpfs from `HostConfig.Tmpfs` left out, as docker does).
fn mounts(rec: &Record) -> Vec<Value> {
    rec.mount_points
        .iter()
        .filter(|m| !m.hidden)
        .map(|m| m.to_inspect())
        .collect()
}

/// `GET /containers/{id}/json`.
pub fn inspect(rec: &Record, dir: &std::path::Path) -> Value {
    let st = &rec.state;
    let argv = rec.argv();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let mut v = inspect_body(rec, st, &argv, &path);
    if let Some(h) = &st.health {
        v["State"]["Health"] = json!(h);
    }
    v
}

fn inspect_body(
    rec: &Record,
    st: &super::super::daemon::container::State,
    argv: &[String],
    path: &dyn Fn(&str) -> String,
) -> Value {
    json!({
        "Id": rec.id,
        "Created": rec.created,
        "Path": argv.first().cloned().unwrap_or_default(),
        "Args": argv.get(1..).unwrap_or(&[]),
        "State": {
            "Status": st.status.as_str(),
            "Running": st.status == Status::Running,
            "Paused": false,
            "Restarting": st.status == Status::Restarting,
            "OOMKilled": st.oom_killed,
            "Dead": st.status == Status::Dead,
            "Pid": st.pid,
            "ExitCode": st.exit_code,
            "Error": st.error,
            "StartedAt": st.started_at,
            "FinishedAt": st.finished_at,
        },
        "Image": rec.image_id,
        "ResolvConfPath": path("resolv.conf"),
        "HostnamePath": path("hostname"),
        "HostsPath": path("hosts"),
        "LogPath": path("container.log"),
        "Name": format!("/{}", rec.name),
        "RestartCount": rec.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": rec.host_config,
        "GraphDriver": {
            "Name": "overlay",
            "Data": { "UpperDir": path("upper"), "WorkDir": path("work") },
        },
        "Mounts": mounts(rec),
        "Config": rec.config,
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "SandboxKey": "",
            "Ports": {},
            "IPAddress": "",
            "Gateway": "",
            "MacAddress": "",
            "Networks": {},
        },
    })
}

/// The `filters` parameter: `{"status":["running"]}` or the older `{"status":{"running":true}}`.
pub fn parse_filters(raw: Option<&str>) -> Result<BTreeMap<String, Vec<String>>, String> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let v: Value = serde_json::from_str(raw).map_err(|e| format!("invalid filter: {e}"))?;
    let obj = v.as_object().ok_or("invalid filter: not a JSON object")?;
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let values: Vec<String> = match v {
            Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
            Value::Object(o) => o.keys().cloned().collect(),
            Value::String(s) => vec![s.clone()],
            _ => return Err(format!("invalid filter '{k}'")),
        };
        out.insert(k.clone(), values);
    }
    Ok(out)
}

/// Whether a container passes `docker ps --filter` (each key ORs its values, except `label`
/// whose values all must match; keys AND).
pub fn matches(rec: &Record, filters: &BTreeMap<String, Vec<String>>) -> Result<bool, String> {
    for (key, values) in filters {
        let ok = match key.as_str() {
            "status" => {
                for v in values {
                    if !matches!(
                        v.as_str(),
                        "created" | "restarting" | "running" | "removing" | "paused" | "exited" | "dead"
                    ) {
                        return Err(format!("invalid filter 'status={v}'"));
                    }
                }
                values.iter().any(|v| v == rec.state.status.as_str())
            }
            "name" => values
                .iter()
                .any(|v| rec.name.contains(v.trim_start_matches('/'))),
            "id" => values.iter().any(|v| rec.id.starts_with(v.as_str())),
            "exited" => {
                rec.state.status == Status::Exited
                    && values.iter().any(|v| v.parse() == Ok(rec.state.exit_code))
            }
            // As dockerd: every label condition must hold (docker-compose relies on it).
            "label" => values.iter().all(|v| {
                let labels = rec.config.labels.clone().unwrap_or_default();
                match v.split_once('=') {
                    Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
                    None => labels.contains_key(v.as_str()),
                }
            }),
            "ancestor" => values.iter().any(|v| {
                rec.image_ref == *v
                    || rec.image_ref == format!("{v}:latest")
                    || rec.image_id == *v
                    || rec
                        .image_id
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:"))
            }),
            // A volume's name (a bind's source) or a mount's destination, as docker matches.
            "volume" => values.iter().any(|v| {
                rec.mount_points.iter().any(|m| {
                    let name = if m.name.is_empty() { &m.source } else { &m.name };
                    name == v || m.destination == *v
                })
            }),
            "health" | "network" | "publish" | "expose" | "is-task" | "since" | "before" => true,
            other => return Err(format!("invalid filter '{other}'")),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_go_units() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(7200), "2 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }

    #[test]
    fn filters_parse_both_shapes_and_match() {
        let f = parse_filters(Some(r#"{"status":{"exited":true},"name":["web"]}"#)).unwrap();
        let mut rec = Record {
            name: "my-web".into(),
            ..Default::default()
        };
        rec.state.status = Status::Exited;
        assert!(matches(&rec, &f).unwrap());
        rec.name = "db".into();
        assert!(!matches(&rec, &f).unwrap());
        let bad = parse_filters(Some(r#"{"colour":["red"]}"#)).unwrap();
        assert!(matches(&rec, &bad).is_err());
        assert!(parse_filters(Some("{nope")).is_err());
        let bad_status = parse_filters(Some(r#"{"status":["sleeping"]}"#)).unwrap();
        assert!(matches(&rec, &bad_status).is_err());
    }

    #[test]
    fn status_lines() {
        let mut rec = Record::default();
        assert_eq!(status_line(&rec, 0), "Created");
        rec.state.status = Status::Exited;
        rec.state.exit_code = 3;
        rec.state.finished_at = timefmt::format_secs(100);
        assert_eq!(status_line(&rec, 105 * 1_000_000_000), "Exited (3) 5 seconds ago");
    }
}
