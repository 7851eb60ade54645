//! Pure row builders and renderers for docker's list outputs (`ps`, `images`, `stats`, `top`).
//!
//! Guarantees: rows are built from the API's JSON exactly as docker's formatter builds them
//! (same field names for `--format`, same header text, same truncation), and rendering a
//! `table` format aligns columns like docker's tabwriter. `now` is an argument; no I/O.

use super::format::{self, ago, ellipsis, human_size, short_id};
use super::template::{Template, TemplateError};
use serde_json::{json, Map, Value};

pub const PS_DEFAULT: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";
pub const IMAGES_DEFAULT: &str = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
pub const STATS_DEFAULT: &str =
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

pub const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
];

pub const IMAGES_HEADERS: &[(&str, &str)] = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("VirtualSize", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
];

pub const STATS_HEADERS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn num_of(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// One `ps` row from an entry of `GET /containers/json`.
pub fn ps_row(c: &Value, now: f64, trunc: bool) -> Value {
    let id = str_of(c, "Id");
    let names: Vec<String> = c
        .get("Names")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|n| n.trim_start_matches('/'))
                // Link aliases (`/other/alias`) are hidden, as docker hides them by default.
                .filter(|n| !n.contains('/'))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let command = str_of(c, "Command");
    let command = if trunc {
        ellipsis(command, 20)
    } else {
        command.to_string()
    };
    let created = num_of(c, "Created");
    let mut image = str_of(c, "Image").to_string();
    if trunc && image.starts_with("sha256:") {
        image = short_id(&image);
    }
    let status = match c.get("Status").and_then(Value::as_str) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => format::status_text(&json!({"Status": str_of(c, "State")}), now),
    };
    let labels: Vec<String> = c
        .get("Labels")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    // Absent sizes read as 0, as docker's typed decoding does.
    let size = {
        let rw = human_size(num_of(c, "SizeRw"), 3);
        let root = num_of(c, "SizeRootFs");
        if root > 0.0 {
            format!("{rw} (virtual {})", human_size(root, 3))
        } else {
            rw
        }
    };
    let networks: Vec<String> = c
        .pointer("/NetworkSettings/Networks")
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let mounts: Vec<String> = c
        .get("Mounts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|m| {
                    let name = str_of(m, "Name");
                    let name = if name.is_empty() {
                        str_of(m, "Source")
                    } else {
                        name
                    };
                    if trunc {
                        ellipsis(name, 15)
                    } else {
                        name.to_string()
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let local_volumes = c
        .get("Mounts")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(|m| str_of(m, "Driver") == "local").count())
        .unwrap_or(0);
    json!({
        "ID": if trunc { short_id(id) } else { id.to_string() },
        "Image": image,
        "Command": quote_go(&command),
        "CreatedAt": format::format_go_time(format::Timestamp { secs: created as i64, nanos: 0 }),
        "RunningFor": ago(created, now),
        "Ports": ports_text(c.get("Ports")),
        "State": str_of(c, "State"),
        "Status": status,
        "Size": size,
        "Names": names.join(","),
        "Labels": labels.join(","),
        "Mounts": mounts.join(","),
        "Networks": networks.join(","),
        "LocalVolumes": local_volumes.to_string(),
        "Platform": null,
    })
}

/// Go's `strconv.Quote` for the printable text a command is.
pub fn quote_go(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `0.0.0.0:8080->80/tcp, 443/tcp` from the API's `Ports` list.
pub fn ports_text(ports: Option<&Value>) -> String {
    let Some(list) = ports.and_then(Value::as_array) else {
        return String::new();
    };
    let mut parts: Vec<String> = list
        .iter()
        .map(|p| {
            let private = p.get("PrivatePort").and_then(Value::as_u64).unwrap_or(0);
            let proto = str_of(p, "Type");
            let proto = if proto.is_empty() { "tcp" } else { proto };
            match p.get("PublicPort").and_then(Value::as_u64) {
                Some(public) if public != 0 => {
                    let ip = str_of(p, "IP");
                    let ip = if ip.contains(':') {
                        format!("[{ip}]")
                    } else {
                        ip.to_string()
                    };
                    format!("{ip}:{public}->{private}/{proto}")
                }
                _ => format!("{private}/{proto}"),
            }
        })
        .collect();
    parts.dedup();
    parts.join(", ")
}

/// `images` rows, as docker's CLI builds them: one per repository tag (times each digest of
/// that repository with `digests`), one per repository known only by digest, and a single
/// `<none>` row for an image with no reference at all. `digests` is `--digests`; a format
/// naming `{{.Digest}}` (`format_digest`) also shows the digests of tagged rows.
pub fn image_rows(img: &Value, now: f64, trunc: bool, digests: bool, format_digest: bool) -> Vec<Value> {
    let id = str_of(img, "Id");
    let shown_id = if trunc { short_id(id) } else { id.to_string() };
    let created = num_of(img, "Created");
    let size = human_size(num_of(img, "Size"), 3);
    let names = |key: &str| -> Vec<String> {
        img.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let row = |repo: &str, tag: &str, digest: &str| {
        json!({
            "Repository": repo,
            "Tag": tag,
            "ID": shown_id,
            "Digest": digest,
            "CreatedSince": ago(created, now),
            "CreatedAt": format::format_go_time(format::Timestamp { secs: created as i64, nanos: 0 }),
            "Size": size,
            "VirtualSize": human_size(num_of(img, "Size"), 4),
            "Containers": match img.get("Containers").and_then(Value::as_i64) { Some(n) if n >= 0 => n.to_string(), _ => "N/A".into() },
            "SharedSize": match img.get("SharedSize").and_then(Value::as_f64) { Some(n) if n >= 0.0 => human_size(n, 4), _ => "N/A".into() },
            "UniqueSize": match img.get("SharedSize").and_then(Value::as_f64) { Some(n) if n >= 0.0 => human_size(num_of(img, "Size") - n, 4), _ => "N/A".into() },
        })
    };
    let tags = names("RepoTags");
    let repo_digests = names("RepoDigests");
    if tags.is_empty() && repo_digests.is_empty() {
        return vec![row("<none>", "<none>", "<none>")];
    }
    // Repositories in first-seen order, each with its tags and digests.
    let mut repos: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    fn entry(repos: &mut Vec<(String, Vec<String>, Vec<String>)>, repo: String) -> usize {
        match repos.iter().position(|r| r.0 == repo) {
            Some(i) => i,
            None => {
                repos.push((repo, Vec::new(), Vec::new()));
                repos.len() - 1
            }
        }
    }
    for t in &tags {
        let (repo, tag) = split_repo_tag(t);
        let i = entry(&mut repos, repo);
        repos[i].1.push(tag);
    }
    for d in &repo_digests {
        if let Some((repo, digest)) = d.split_once('@') {
            let i = entry(&mut repos, repo.to_string());
            repos[i].2.push(digest.to_string());
        }
    }
    let mut rows = Vec::new();
    for (repo, repo_tags, repo_digests) in &repos {
        if repo_tags.is_empty() {
            if digests {
                rows.extend(repo_digests.iter().map(|d| row(repo, "<none>", d)));
            } else {
                rows.push(row(repo, "<none>", ""));
            }
            continue;
        }
        for tag in repo_tags {
            if !(digests || format_digest) || repo_digests.is_empty() {
                rows.push(row(repo, tag, "<none>"));
            } else {
                rows.extend(repo_digests.iter().map(|d| row(repo, tag, d)));
            }
        }
    }
    rows
}

/// `repo:tag` → (repo, tag); the tag colon is the last one after the last `/`.
pub fn split_repo_tag(reference: &str) -> (String, String) {
    let slash = reference.rfind('/').map(|i| i + 1).unwrap_or(0);
    match reference[slash..].rfind(':') {
        Some(i) => (
            reference[..slash + i].to_string(),
            reference[slash + i + 1..].to_string(),
        ),
        None => (reference.to_string(), String::new()),
    }
}

/// One `stats` row from `GET /containers/{id}/stats?stream=false`.
pub fn stats_row(s: &Value, fallback_id: &str, trunc: bool) -> Value {
    let p = |path: &str| s.pointer(path).and_then(Value::as_f64).unwrap_or(0.0);
    let cpu_delta = p("/cpu_stats/cpu_usage/total_usage") - p("/precpu_stats/cpu_usage/total_usage");
    let system_delta = p("/cpu_stats/system_cpu_usage") - p("/precpu_stats/system_cpu_usage");
    let mut online = p("/cpu_stats/online_cpus");
    if online == 0.0 {
        online = s
            .pointer("/cpu_stats/cpu_usage/percpu_usage")
            .and_then(Value::as_array)
            .map(|a| a.len())
            .unwrap_or(0) as f64;
    }
    let cpu = if system_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / system_delta * online * 100.0
    } else {
        0.0
    };
    let usage = p("/memory_stats/usage");
    // cgroup v1 reports total_inactive_file, v2 inactive_file: page cache is not "used".
    let inactive = s
        .pointer("/memory_stats/stats/total_inactive_file")
        .or_else(|| s.pointer("/memory_stats/stats/inactive_file"))
        .and_then(Value::as_f64)
        .filter(|v| *v < usage)
        .unwrap_or(0.0);
    let mem = usage - inactive;
    let limit = p("/memory_stats/limit");
    let mem_perc = if limit > 0.0 { mem / limit * 100.0 } else { 0.0 };
    let (mut rx, mut tx) = (0.0, 0.0);
    if let Some(nets) = s.get("networks").and_then(Value::as_object) {
        for n in nets.values() {
            rx += num_of(n, "rx_bytes");
            tx += num_of(n, "tx_bytes");
        }
    }
    let (mut read, mut write) = (0.0, 0.0);
    if let Some(ios) = s
        .pointer("/blkio_stats/io_service_bytes_recursive")
        .and_then(Value::as_array)
    {
        for io in ios {
            match str_of(io, "op").to_ascii_lowercase().as_str() {
                "read" => read += num_of(io, "value"),
                "write" => write += num_of(io, "value"),
                _ => {}
            }
        }
    }
    let id = match str_of(s, "id") {
        "" => fallback_id,
        id => id,
    };
    let name = str_of(s, "name").trim_start_matches('/');
    json!({
        "Container": if name.is_empty() { short_id(id) } else { name.to_string() },
        "ID": if trunc { short_id(id) } else { id.to_string() },
        "Name": if name.is_empty() { "--".to_string() } else { name.to_string() },
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", format::binary_size(mem), format::binary_size(limit)),
        "MemPerc": format!("{mem_perc:.2}%"),
        "NetIO": format!("{} / {}", human_size(rx, 3), human_size(tx, 3)),
        "BlockIO": format!("{} / {}", human_size(read, 3), human_size(write, 3)),
        "PIDs": format!("{}", p("/pids_stats/current") as u64),
    })
}

/// Go's `json.Marshal` escapes `<`, `>` and `&` in strings; docker's `--format json` shows it.
fn escape_html(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Render rows with a `--format` (or the verb's default): `table ...` gets a header and
/// aligned columns, `json` prints each row as JSON, anything else is a template per row.
pub fn render(
    format: Option<&str>,
    default: &str,
    headers: &[(&str, &str)],
    rows: &[Value],
) -> Result<String, TemplateError> {
    let format = match format.map(str::trim) {
        None | Some("") | Some("table") => default,
        Some(f) => f,
    };
    if format == "json" {
        let mut out = String::new();
        for r in rows {
            out.push_str(&escape_html(&serde_json::to_string(r).unwrap_or_default()));
            out.push('\n');
        }
        return Ok(out);
    }
    let (is_table, body) = match format.strip_prefix("table") {
        Some(rest) => (true, rest.trim_start_matches(' ')),
        None => (false, format),
    };
    let tmpl = Template::parse(body)?;
    let mut out = String::new();
    if is_table {
        let header: Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        out.push_str(&tmpl.render(&Value::Object(header))?);
        out.push('\n');
    }
    for r in rows {
        out.push_str(&tmpl.render(r)?);
        out.push('\n');
    }
    Ok(if is_table { format::tabwrite(&out) } else { out })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_700_000_100.0;

    fn container() -> Value {
        json!({
            "Id": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Names": ["/web"],
            "Image": "busybox",
            "Command": "sh -c 'echo hi'",
            "Created": 1_700_000_000u64,
            "State": "running",
            "Status": "Up 3 seconds",
            "Ports": [],
            "Labels": {"tier": "db"},
        })
    }

    #[test]
    fn ps_table_matches_docker() {
        let rows = vec![ps_row(&container(), NOW, true)];
        let out = render(None, PS_DEFAULT, PS_HEADERS, &rows).unwrap();
        let expect = "\
CONTAINER ID   IMAGE     COMMAND             CREATED              STATUS         PORTS     NAMES
0123456789ab   busybox   \"sh -c 'echo hi'\"   About a minute ago   Up 3 seconds             web
";
        assert_eq!(out, expect);
    }

    #[test]
    fn ps_fields_and_custom_formats() {
        let mut c = container();
        c["Command"] = json!("sleep 1000000000000000000");
        c["Names"] = json!(["/web", "/other/alias"]);
        let row = ps_row(&c, NOW, true);
        assert_eq!(row["Command"], "\"sleep 1000000000000…\"");
        assert_eq!(row["Names"], "web");
        assert_eq!(row["Labels"], "tier=db");
        let full = ps_row(&c, NOW, false);
        assert_eq!(full["ID"].as_str().unwrap().len(), 64);
        assert_eq!(full["Command"], "\"sleep 1000000000000000000\"");
        let out = render(
            Some("{{.Names}}\\t{{.ID}}"),
            PS_DEFAULT,
            PS_HEADERS,
            std::slice::from_ref(&row),
        )
        .unwrap();
        assert_eq!(out, "web\t0123456789ab\n");
        let out = render(
            Some("table {{.Names}}\\t{{.State}}"),
            PS_DEFAULT,
            PS_HEADERS,
            std::slice::from_ref(&row),
        )
        .unwrap();
        assert_eq!(out, "NAMES     STATE\nweb       running\n");
        let out = render(
            Some("{{.Label \"tier\"}}"),
            PS_DEFAULT,
            PS_HEADERS,
            std::slice::from_ref(&row),
        )
        .unwrap();
        assert_eq!(out, "db\n");
        let out = render(Some("json"), PS_DEFAULT, PS_HEADERS, &[row]).unwrap();
        assert!(out.starts_with('{') && out.contains("\"Names\":\"web\""));
        let img = image_rows(
            &json!({"Id": "sha256:ab", "RepoTags": [], "Created": 0, "Size": 1_984_000}),
            NOW,
            true,
            false,
            false,
        );
        let out = render(Some("json"), IMAGES_DEFAULT, IMAGES_HEADERS, &img).unwrap();
        assert!(out.contains(r#""Digest":"\u003cnone\u003e""#), "{out}");
        assert!(
            out.contains(r#""Size":"1.98MB""#) && out.contains(r#""VirtualSize":"1.984MB""#),
            "{out}"
        );
    }

    #[test]
    fn ports_and_quoting() {
        let ports = json!([{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}, {"PrivatePort": 443, "Type": "tcp"}]);
        assert_eq!(ports_text(Some(&ports)), "0.0.0.0:8080->80/tcp, 443/tcp");
        assert_eq!(quote_go("a\"b\\\n"), "\"a\\\"b\\\\\\n\"");
    }

    #[test]
    fn images_table_matches_docker() {
        let img = json!({
            "Id": "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
            "RepoTags": ["busybox:latest", "localhost:5000/bb:1"],
            "Created": 1_700_000_000u64 - 7200,
            "Size": 4_100_000,
        });
        let rows = image_rows(&img, NOW, true, false, false);
        let out = render(None, IMAGES_DEFAULT, IMAGES_HEADERS, &rows).unwrap();
        let expect = "\
REPOSITORY       TAG       IMAGE ID       CREATED       SIZE
busybox          latest    fedcba987654   2 hours ago   4.1MB
localhost:5000/bb   1         fedcba987654   2 hours ago   4.1MB
";
        // Column widths come from the widest cell, as tabwriter does.
        let widest = expect
            .replace("busybox          ", "busybox             ")
            .replace("REPOSITORY       ", "REPOSITORY          ");
        assert_eq!(out, widest);
        let untagged = image_rows(
            &json!({"Id": "sha256:ab", "RepoTags": [], "Created": 0, "Size": 0}),
            NOW,
            false,
            false,
            false,
        );
        assert_eq!(untagged[0]["Repository"], "<none>");
        assert_eq!(untagged[0]["Tag"], "<none>");
        assert_eq!(untagged[0]["ID"], "sha256:ab");
        assert_eq!(
            split_repo_tag("localhost:5000/bb"),
            ("localhost:5000/bb".into(), String::new())
        );
    }

    #[test]
    fn image_rows_with_digests_like_docker() {
        let img = json!({
            "Id": "sha256:ab",
            "RepoTags": ["app:1", "app:2"],
            "RepoDigests": ["app@sha256:d1", "other@sha256:d2"],
            "Created": 0,
            "Size": 0,
        });
        let cells = |rows: Vec<Value>| -> Vec<String> {
            rows.iter()
                .map(|r| {
                    format!(
                        "{} {} {}",
                        r["Repository"].as_str().unwrap(),
                        r["Tag"].as_str().unwrap(),
                        r["Digest"].as_str().unwrap()
                    )
                })
                .collect()
        };
        assert_eq!(
            cells(image_rows(&img, NOW, true, false, false)),
            ["app 1 <none>", "app 2 <none>", "other <none> "]
        );
        assert_eq!(
            cells(image_rows(&img, NOW, true, true, false)),
            ["app 1 sha256:d1", "app 2 sha256:d1", "other <none> sha256:d2"]
        );
        // A format naming the digest shows it on tagged rows even without --digests.
        assert_eq!(
            cells(image_rows(&img, NOW, true, false, true))[0],
            "app 1 sha256:d1"
        );
    }

    #[test]
    fn stats_numbers_like_docker() {
        let s = json!({
            "id": "0123456789abcdef0123",
            "name": "/web",
            "cpu_stats": {"cpu_usage": {"total_usage": 200_000_000u64}, "system_cpu_usage": 2_000_000_000u64, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100_000_000u64}, "system_cpu_usage": 1_000_000_000u64},
            "memory_stats": {"usage": 13_107_200u64 + 1_048_576, "limit": 67_108_864u64, "stats": {"total_inactive_file": 1_048_576}},
            "networks": {"eth0": {"rx_bytes": 1234, "tx_bytes": 0}},
            "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4_100_000}, {"op": "Write", "value": 0}]},
            "pids_stats": {"current": 3},
        });
        let row = stats_row(&s, "", true);
        assert_eq!(row["CPUPerc"], "20.00%");
        assert_eq!(row["MemUsage"], "12.5MiB / 64MiB");
        assert_eq!(row["MemPerc"], "19.53%");
        assert_eq!(row["NetIO"], "1.23kB / 0B");
        assert_eq!(row["BlockIO"], "4.1MB / 0B");
        assert_eq!(row["PIDs"], "3");
        assert_eq!(row["Name"], "web");
        assert_eq!(row["ID"], "0123456789ab");
    }
}
