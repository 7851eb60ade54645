//! `image prune`, `system df` and `system prune`, shaped like docker's commands and output,
//! over `POST /images/prune`, `GET /system/df` and the other prune routes.
//!
//! Flags parse into [`SysCommand`] (pure, tested); [`run`] carries one out; the `df` table is
//! computed from the API answer by [`df_rows`] (pure, tested), as docker's CLI does.

use serde_json::{json, Value};

use super::format::human_size;
use super::network::parse_flags;
use super::tables;
use crate::api::client::{query, Client, ClientError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SysCommand {
    ImagePrune {
        all: bool,
        force: bool,
        filters: Vec<(String, String)>,
    },
    Df {
        verbose: bool,
        format: Option<String>,
    },
    SystemPrune {
        all: bool,
        volumes: bool,
        force: bool,
        filters: Vec<(String, String)>,
    },
    Help(String),
}

const SYSTEM_HELP: &str = "Usage:  shoal system COMMAND

Manage shoal

Commands:
  df          Show disk usage
  events      Get real time events from the server
  info        Display system-wide information
  prune       Remove unused data
";

pub const DF_DEFAULT: &str = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";
const DF_HEADERS: &[(&str, &str)] = &[
    ("Type", "TYPE"),
    ("TotalCount", "TOTAL"),
    ("Active", "ACTIVE"),
    ("Size", "SIZE"),
    ("Reclaimable", "RECLAIMABLE"),
];

fn filter_pairs(list: &[String]) -> Result<Vec<(String, String)>, String> {
    list.iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("bad format of filter (expected name=value): {f}"))
        })
        .collect()
}

fn no_args(cmd: &str, args: &[String]) -> Result<(), String> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "\"shoal {cmd}\" accepts no arguments.\nSee 'shoal {cmd} --help'."
        ))
    }
}

/// Parse the words after `image prune` (`image == true`) or after `system`.
pub fn parse(image: bool, words: &[String]) -> Result<SysCommand, String> {
    if image {
        let cmd = "image prune";
        let f = parse_flags(cmd, words, &[("filter", ' ')], &[("all", 'a'), ("force", 'f')])?;
        if f.has("help") {
            return Ok(SysCommand::Help(
                "Usage:  shoal image prune [OPTIONS]\n\nRemove unused images\n".into(),
            ));
        }
        no_args(cmd, &f.args)?;
        return Ok(SysCommand::ImagePrune {
            all: f.has("all"),
            force: f.has("force"),
            filters: filter_pairs(&f.all("filter"))?,
        });
    }
    let Some((sub, rest)) = words.split_first() else {
        return Ok(SysCommand::Help(SYSTEM_HELP.into()));
    };
    match sub.as_str() {
        "df" => {
            let f = parse_flags("system df", rest, &[("format", ' ')], &[("verbose", 'v')])?;
            if f.has("help") {
                return Ok(SysCommand::Help(
                    "Usage:  shoal system df [OPTIONS]\n\nShow disk usage\n".into(),
                ));
            }
            no_args("system df", &f.args)?;
            Ok(SysCommand::Df {
                verbose: f.has("verbose"),
                format: f.get("format"),
            })
        }
        "prune" => {
            let f = parse_flags(
                "system prune",
                rest,
                &[("filter", ' ')],
                &[("all", 'a'), ("force", 'f'), ("volumes", ' ')],
            )?;
            if f.has("help") {
                return Ok(SysCommand::Help(
                    "Usage:  shoal system prune [OPTIONS]\n\nRemove unused data\n".into(),
                ));
            }
            no_args("system prune", &f.args)?;
            Ok(SysCommand::SystemPrune {
                all: f.has("all"),
                volumes: f.has("volumes"),
                force: f.has("force"),
                filters: filter_pairs(&f.all("filter"))?,
            })
        }
        "--help" | "-h" => Ok(SysCommand::Help(SYSTEM_HELP.into())),
        other => Err(format!(
            "shoal: unknown command: shoal system {other}\n\nRun 'shoal system --help' for more information"
        )),
    }
}

/// Intercept `image prune` and `system df|prune`; None for every other command line.
pub fn main(argv: &[String]) -> Option<i32> {
    let (host, i) = super::leading_host(argv);
    let parsed = match (
        argv.get(i).map(String::as_str),
        argv.get(i + 1).map(String::as_str),
    ) {
        (Some("image"), Some("prune")) => parse(true, &argv[i + 2..]),
        (Some("system"), Some("df" | "prune") | None) => parse(false, &argv[i + 1..]),
        _ => return None,
    };
    let command = match parsed {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Some(1);
        }
    };
    let env = std::env::var(crate::api::client::HOST_ENV).ok();
    let socket = match crate::api::client::resolve_host(host.as_deref(), env.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Some(1);
        }
    };
    Some(match run(&Client::new(socket), command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    })
}

fn confirm(warning: &str) -> bool {
    use std::io::Write;
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    matches!(line.trim(), "y" | "Y" | "yes")
}

fn api(e: ClientError) -> String {
    match e {
        ClientError::Api { message, .. } => format!("Error response from daemon: {message}"),
        other => other.to_string(),
    }
}

fn filters_param(filters: &[(String, String)]) -> Vec<(&'static str, String)> {
    if filters.is_empty() {
        return Vec::new();
    }
    vec![("filters", super::values::filters_json(filters))]
}

/// Run one prune route; returns (printed section, bytes reclaimed).
fn prune_section(
    client: &Client,
    path: &str,
    filters: &[(String, String)],
    key: &str,
    title: &str,
) -> Result<(String, u64), String> {
    let v = client
        .post(&format!("{path}{}", query(&filters_param(filters))), None)
        .and_then(|r| r.json())
        .map_err(api)?;
    Ok(prune_text(&v, key, title))
}

/// The section docker prints for a prune answer: `Deleted Images:` and one line per item.
pub fn prune_text(v: &Value, key: &str, title: &str) -> (String, u64) {
    let items = v[key].as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    if !items.is_empty() {
        out.push_str(&format!("{title}:\n"));
        for item in &items {
            let line = match item {
                Value::String(s) => s.clone(),
                _ => match (item["Untagged"].as_str(), item["Deleted"].as_str()) {
                    (Some(t), _) => format!("untagged: {t}"),
                    (_, Some(d)) => format!("deleted: {d}"),
                    _ => continue,
                },
            };
            out.push_str(&line);
            out.push('\n');
        }
        out.push('\n');
    }
    (out, v["SpaceReclaimed"].as_u64().unwrap_or(0))
}

pub fn run(client: &Client, command: SysCommand) -> Result<i32, String> {
    match command {
        SysCommand::Help(h) => print!("{h}"),
        SysCommand::ImagePrune {
            all,
            force,
            mut filters,
        } => {
            let warning = if all {
                "WARNING! This will remove all images without at least one container associated to them."
            } else {
                "WARNING! This will remove all dangling images."
            };
            if !force && !confirm(warning) {
                return Ok(0);
            }
            filters.push(("dangling".into(), (!all).to_string()));
            let (text, space) = prune_section(
                client,
                "/images/prune",
                &filters,
                "ImagesDeleted",
                "Deleted Images",
            )?;
            print!("{text}");
            println!("Total reclaimed space: {}", human_size(space as f64, 4));
        }
        SysCommand::SystemPrune {
            all,
            volumes,
            force,
            filters,
        } => {
            let mut warning = String::from(
                "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n",
            );
            if volumes {
                warning.push_str("  - all anonymous volumes not used by at least one container\n");
            }
            if all {
                warning.push_str(
                    "  - all images without at least one container associated to them\n  - all build cache\n",
                );
            } else {
                warning.push_str("  - all dangling images\n  - unused build cache\n");
            }
            if !force && !confirm(&warning) {
                return Ok(0);
            }
            let mut total = 0;
            let (t, s) = prune_section(
                client,
                "/containers/prune",
                &filters,
                "ContainersDeleted",
                "Deleted Containers",
            )?;
            print!("{t}");
            total += s;
            let (t, _) = prune_section(
                client,
                "/networks/prune",
                &filters,
                "NetworksDeleted",
                "Deleted Networks",
            )?;
            print!("{t}");
            if volumes {
                let vol_filters: Vec<(String, String)> = filters
                    .iter()
                    .filter(|(k, _)| k.starts_with("label"))
                    .cloned()
                    .collect();
                let (t, s) = prune_section(
                    client,
                    "/volumes/prune",
                    &vol_filters,
                    "VolumesDeleted",
                    "Deleted Volumes",
                )?;
                print!("{t}");
                total += s;
            }
            let mut image_filters = filters.clone();
            image_filters.push(("dangling".into(), (!all).to_string()));
            let (t, s) = prune_section(
                client,
                "/images/prune",
                &image_filters,
                "ImagesDeleted",
                "Deleted Images",
            )?;
            print!("{t}");
            total += s;
            println!("Total reclaimed space: {}", human_size(total as f64, 4));
        }
        SysCommand::Df { verbose, format } => {
            let v = client.get_json("/system/df").map_err(api)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            let text = if verbose && format.is_none() {
                df_verbose(&v, now)?
            } else {
                tables::render(format.as_deref(), DF_DEFAULT, DF_HEADERS, &df_rows(&v)).map_err(|e| e.0)?
            };
            print!("{text}");
        }
    }
    Ok(0)
}

fn percent(part: u64, total: u64) -> String {
    match (part * 100).checked_div(total) {
        Some(pct) => format!("{} ({pct}%)", human_size(part as f64, 4)),
        None => human_size(part as f64, 4),
    }
}

fn u(v: &Value, key: &str) -> u64 {
    v[key].as_i64().filter(|n| *n > 0).unwrap_or(0) as u64
}

/// docker's `system df` summary rows from `GET /system/df`.
pub fn df_rows(v: &Value) -> Vec<Value> {
    let list = |key: &str| v[key].as_array().cloned().unwrap_or_default();
    let images = list("Images");
    let layers = u(v, "LayersSize");
    let used: u64 = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0 && i["SharedSize"].as_i64().unwrap_or(-1) >= 0)
        .map(|i| u(i, "Size").saturating_sub(u(i, "SharedSize")))
        .sum();
    let containers = list("Containers");
    let active = |c: &Value| matches!(c["State"].as_str(), Some("running" | "paused" | "restarting"));
    let c_size: u64 = containers.iter().map(|c| u(c, "SizeRw")).sum();
    let c_free: u64 = containers
        .iter()
        .filter(|c| !active(c))
        .map(|c| u(c, "SizeRw"))
        .sum();
    let volumes = list("Volumes");
    let v_size: u64 = volumes.iter().map(|x| u(&x["UsageData"], "Size")).sum();
    let v_free: u64 = volumes
        .iter()
        .filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) == 0)
        .map(|x| u(&x["UsageData"], "Size"))
        .sum();
    let cache = list("BuildCache");
    let cache_size: u64 = cache
        .iter()
        .filter(|c| c["Shared"] != true)
        .map(|c| u(c, "Size"))
        .sum();
    let cache_free: u64 = cache
        .iter()
        .filter(|c| c["Shared"] != true && c["InUse"] != true)
        .map(|c| u(c, "Size"))
        .sum();
    vec![
        json!({
            "Type": "Images",
            "TotalCount": images.len().to_string(),
            "Active": images.iter().filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0).count().to_string(),
            "Size": human_size(layers as f64, 4),
            "Reclaimable": percent(layers.saturating_sub(used), layers),
        }),
        json!({
            "Type": "Containers",
            "TotalCount": containers.len().to_string(),
            "Active": containers.iter().filter(|c| active(c)).count().to_string(),
            "Size": human_size(c_size as f64, 4),
            "Reclaimable": percent(c_free, c_size),
        }),
        json!({
            "Type": "Local Volumes",
            "TotalCount": volumes.len().to_string(),
            "Active": volumes.iter().filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0).count().to_string(),
            "Size": human_size(v_size as f64, 4),
            "Reclaimable": percent(v_free, v_size),
        }),
        json!({
            "Type": "Build Cache",
            "TotalCount": cache.len().to_string(),
            "Active": cache.iter().filter(|c| c["InUse"] == true).count().to_string(),
            "Size": human_size(cache_size as f64, 4),
            "Reclaimable": human_size(cache_free as f64, 4),
        }),
    ]
}

/// `system df -v`: one table per kind, as docker prints them.
fn df_verbose(v: &Value, now: f64) -> Result<String, String> {
    let list = |key: &str| v[key].as_array().cloned().unwrap_or_default();
    let mut out = String::from("Images space usage:\n\n");
    let image_rows: Vec<Value> = list("Images")
        .iter()
        .flat_map(|i| tables::image_rows(i, now, true, false, false))
        .collect();
    out.push_str(
        &tables::render(
            None,
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}",
            tables::IMAGES_HEADERS,
            &image_rows,
        )
        .map_err(|e| e.0)?,
    );
    out.push_str("\nContainers space usage:\n\n");
    let container_rows: Vec<Value> = list("Containers")
        .iter()
        .map(|c| {
            let mut row = tables::ps_row(c, now, true);
            let volumes = c["Mounts"]
                .as_array()
                .map(|m| m.iter().filter(|m| m["Type"] == "volume").count())
                .unwrap_or(0);
            row["LocalVolumes"] = json!(volumes.to_string());
            row["Size"] = json!(human_size(u(c, "SizeRw") as f64, 4));
            row
        })
        .collect();
    let mut headers = tables::PS_HEADERS.to_vec();
    headers.push(("LocalVolumes", "LOCAL VOLUMES"));
    out.push_str(
        &tables::render(
            None,
            "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}",
            &headers,
            &container_rows,
        )
        .map_err(|e| e.0)?,
    );
    out.push_str("\nLocal Volumes space usage:\n\n");
    let volume_rows: Vec<Value> = list("Volumes")
        .iter()
        .map(|x| {
            json!({
                "Name": x["Name"],
                "Links": x["UsageData"]["RefCount"].as_i64().unwrap_or(0).to_string(),
                "Size": human_size(u(&x["UsageData"], "Size") as f64, 4),
            })
        })
        .collect();
    out.push_str(
        &tables::render(
            None,
            "table {{.Name}}\t{{.Links}}\t{{.Size}}",
            &[("Name", "VOLUME NAME"), ("Links", "LINKS"), ("Size", "SIZE")],
            &volume_rows,
        )
        .map_err(|e| e.0)?,
    );
    let cache_size: u64 = list("BuildCache").iter().map(|c| u(c, "Size")).sum();
    out.push_str(&format!(
        "\nBuild cache usage: {}\n\nCACHE ID   CACHE TYPE   SIZE      CREATED   LAST USED   USAGE     SHARED\n",
        human_size(cache_size as f64, 4)
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_prune_and_df_flags() {
        assert_eq!(
            parse(true, &words("-a -f --filter until=1h")).unwrap(),
            SysCommand::ImagePrune {
                all: true,
                force: true,
                filters: vec![("until".into(), "1h".into())]
            }
        );
        assert_eq!(
            parse(false, &words("df -v")).unwrap(),
            SysCommand::Df {
                verbose: true,
                format: None
            }
        );
        assert!(parse(true, &words("x"))
            .unwrap_err()
            .contains("accepts no arguments"));
        assert!(parse(true, &words("--filter nope")).unwrap_err().contains("nope"));
        assert!(parse(false, &words("dance"))
            .unwrap_err()
            .contains("unknown command"));
    }

    #[test]
    fn df_rows_like_docker() {
        let v = json!({
            "LayersSize": 10_000_000,
            "Images": [
                {"Size": 6_000_000, "SharedSize": 1_000_000, "Containers": 1},
                {"Size": 5_000_000, "SharedSize": 1_000_000, "Containers": 0},
            ],
            "Containers": [
                {"State": "running", "SizeRw": 100},
                {"State": "exited", "SizeRw": 300},
            ],
            "Volumes": [
                {"UsageData": {"Size": 50, "RefCount": 0}},
                {"UsageData": {"Size": 150, "RefCount": 2}},
            ],
            "BuildCache": [],
        });
        let rows = df_rows(&v);
        let out = tables::render(None, DF_DEFAULT, DF_HEADERS, &rows).unwrap();
        assert_eq!(
            out,
            "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n\
             Images          2         1         10MB      5MB (50%)\n\
             Containers      2         1         400B      300B (75%)\n\
             Local Volumes   2         1         200B      50B (25%)\n\
             Build Cache     0         0         0B        0B\n"
        );
    }

    #[test]
    fn prune_text_lists_what_went() {
        let v =
            json!({"ImagesDeleted": [{"Untagged": "a:1"}, {"Deleted": "sha256:ab"}], "SpaceReclaimed": 5});
        assert_eq!(
            prune_text(&v, "ImagesDeleted", "Deleted Images"),
            (
                "Deleted Images:\nuntagged: a:1\ndeleted: sha256:ab\n\n".to_string(),
                5
            )
        );
        assert_eq!(
            prune_text(&json!({"ImagesDeleted": null}), "ImagesDeleted", "x").0,
            ""
        );
    }
}
