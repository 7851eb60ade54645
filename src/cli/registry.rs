//! `pull`, `push`, `login` and `logout`, shaped like docker's: credentials live in docker's
//! `config.json` (`$DOCKER_CONFIG` or `~/.docker`), `auths.<server>.auth = base64(user:pass)`,
//! and reach the daemon as `X-Registry-Auth`, so existing docker logins work both ways.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use serde_json::{json, Value};

use super::network::{parse_flags, Flags};
use crate::api::client::{query, Body, Client, ClientError};
use crate::image::reference::Reference;
use crate::image::registry::auth;

/// `shoal [-H HOST] pull|push|login|logout ...`; None for every other verb.
pub fn main(argv: &[String]) -> Option<i32> {
    let (host, mut i) = super::leading_host(argv);
    let verb = argv.get(i)?.as_str();
    let verb = match (verb, argv.get(i + 1).map(String::as_str)) {
        ("image", Some(v @ ("pull" | "push"))) => {
            i += 1;
            v
        }
        (v @ ("pull" | "push" | "login" | "logout"), _) => v,
        _ => return None,
    };
    let rest = &argv[i + 1..];
    if rest.iter().any(|w| w == "--help") {
        println!("{}", usage(verb));
        return Some(0);
    }
    Some(super::with_client(host.as_deref(), |client| {
        match verb {
            "pull" => cmd_pull(client, rest),
            "push" => cmd_push(client, rest),
            "login" => cmd_login(client, rest),
            _ => cmd_logout(rest),
        }
        .map(|()| 0)
    }))
}

fn usage(verb: &str) -> &'static str {
    match verb {
        "pull" => "Usage:  shoal pull [OPTIONS] NAME[:TAG|@DIGEST]\n\nDownload an image from a registry\n\nOptions:\n      --platform string   Set platform if server is multi-platform capable\n  -q, --quiet             Suppress verbose output",
        "push" => "Usage:  shoal push [OPTIONS] NAME[:TAG]\n\nUpload an image to a registry\n\nOptions:\n  -q, --quiet   Suppress verbose output",
        "login" => "Usage:  shoal login [OPTIONS] [SERVER]\n\nLog in to a registry.\nIf no server is specified, the default is defined by the daemon.\n\nOptions:\n  -p, --password string   Password\n      --password-stdin    Take the password from stdin\n  -u, --username string   Username",
        _ => "Usage:  shoal logout [SERVER]\n\nLog out from a registry.\nIf no server is specified, the default is defined by the daemon.",
    }
}

fn one_arg(w: &Flags, verb: &str) -> Result<String, String> {
    match w.args.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!(
            "\"shoal {verb}\" requires exactly 1 argument.\nSee 'shoal {verb} --help'.\n\n{}",
            usage(verb).lines().next().unwrap_or("")
        )),
    }
}

/// docker's config directory: `$DOCKER_CONFIG`, else `~/.docker`.
fn config_path() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME").ok_or("HOME is not set; cannot find ~/.docker/config.json")?;
    Ok(PathBuf::from(home).join(".docker").join("config.json"))
}

fn read_config() -> Result<Value, String> {
    let path = config_path()?;
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn write_config(v: &Value) -> Result<(), String> {
    let path = config_path()?;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    crate::storage::atomic::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let text = serde_json::to_vec_pretty(v).map_err(|e| e.to_string())?;
    crate::storage::atomic::write_mode(&path, &text, 0o600).map_err(|e| format!("{}: {e}", path.display()))
}

/// The `X-Registry-Auth` value for the registry `image` lives in (empty JSON when there is
/// no stored login, as docker sends).
pub fn registry_auth_for(image: &str) -> String {
    let registry = Reference::parse(image).map(|r| r.registry).unwrap_or_default();
    let creds = read_config()
        .ok()
        .and_then(|c| auth::lookup_config(&c, &registry))
        .unwrap_or_default();
    auth::encode_registry_auth(&creds)
}

fn cli_error(e: ClientError) -> String {
    match e {
        ClientError::Api { message, .. } => format!("Error response from daemon: {message}"),
        other => other.to_string(),
    }
}

/// Stream a progress response; lines go to `out` unless quiet. Errors in the stream fail.
fn follow_progress(
    resp: crate::api::client::StreamingResponse,
    quiet: bool,
    to_stderr: bool,
) -> Result<(), String> {
    let reader = BufReader::new(resp.body);
    for line in reader.lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(err) = msg.get("error").and_then(Value::as_str) {
            return Err(err.to_string());
        }
        // Like docker without a terminal: byte counters are not printed.
        let has_counts = msg
            .get("progressDetail")
            .and_then(Value::as_object)
            .is_some_and(|d| !d.is_empty());
        if quiet || has_counts {
            continue;
        }
        let text = match (
            msg.get("id").and_then(Value::as_str),
            msg.get("status").and_then(Value::as_str),
        ) {
            (Some(id), Some(status)) => format!("{id}: {status}"),
            (None, Some(status)) => status.to_string(),
            _ => continue,
        };
        if to_stderr {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }
    Ok(())
}

/// Pull `image` through the daemon with the stored credentials; progress to stdout or
/// stderr. Used by `pull` and by `run`/`create` for a missing image.
pub fn pull(
    client: &Client,
    image: &str,
    platform: Option<&str>,
    quiet: bool,
    to_stderr: bool,
) -> Result<(), ClientError> {
    let mut q = vec![("fromImage", image.to_string())];
    if !image.contains('@') {
        let r = Reference::parse(image).map_err(|e| ClientError::Api {
            status: 400,
            message: e.to_string(),
        })?;
        q = vec![
            ("fromImage", r.familiar_repository()),
            ("tag", r.tag.unwrap_or_else(|| "latest".into())),
        ];
    }
    if let Some(p) = platform {
        q.push(("platform", p.to_string()));
    }
    let auth = registry_auth_for(image);
    let resp = client.stream_with(
        "POST",
        &format!("/images/create{}", query(&q)),
        Body::Empty,
        &[("X-Registry-Auth", &auth)],
    )?;
    follow_progress(resp, quiet, to_stderr).map_err(|message| ClientError::Api { status: 500, message })
}

fn cmd_pull(client: &Client, words: &[String]) -> Result<(), String> {
    let w = parse_flags(
        "pull",
        words,
        &[("platform", '\0')],
        &[("quiet", 'q'), ("all-tags", 'a'), ("disable-content-trust", '\0')],
    )?;
    if w.has("all-tags") {
        return Err("pull --all-tags is not supported by shoal; pull each tag".into());
    }
    let image = one_arg(&w, "pull")?;
    let r = Reference::parse(&image).map_err(|e| e.to_string())?;
    let quiet = w.has("quiet");
    let has_tag = image.rsplit('/').next().is_some_and(|last| last.contains(':')) || image.contains('@');
    if !has_tag && !quiet {
        println!("Using default tag: latest");
    }
    pull(client, &image, w.get("platform").as_deref(), quiet, false).map_err(cli_error)?;
    let shown = match (&r.tag, &r.digest) {
        (_, Some(d)) => format!("{}@{d}", r.full_repository()),
        (Some(t), None) => format!("{}:{t}", r.full_repository()),
        (None, None) => r.full_repository(),
    };
    println!("{shown}");
    Ok(())
}

fn cmd_push(client: &Client, words: &[String]) -> Result<(), String> {
    let w = parse_flags(
        "push",
        words,
        &[],
        &[("quiet", 'q'), ("all-tags", 'a'), ("disable-content-trust", '\0')],
    )?;
    let image = one_arg(&w, "push")?;
    let r = Reference::parse(&image).map_err(|e| e.to_string())?;
    if r.digest.is_some() {
        return Err(format!("cannot push a digest reference: {image}"));
    }
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let auth = registry_auth_for(&image);
    let path = format!(
        "/images/{}/push{}",
        r.familiar_repository(),
        query(&[("tag", tag)])
    );
    let resp = client
        .stream_with("POST", &path, Body::Empty, &[("X-Registry-Auth", &auth)])
        .map_err(cli_error)?;
    follow_progress(resp, w.has("quiet"), false)
}

fn cmd_login(client: &Client, words: &[String]) -> Result<(), String> {
    let w = parse_flags(
        "login",
        words,
        &[("username", 'u'), ("password", 'p')],
        &[("password-stdin", '\0')],
    )?;
    let server = match w.args.as_slice() {
        [] => "docker.io".to_string(),
        [s] => auth::server_host(s),
        _ => return Err("\"shoal login\" requires at most 1 argument.\nSee 'shoal login --help'.".into()),
    };
    let username = match w.get("username") {
        Some(u) => u.to_string(),
        None if w.has("password-stdin") => return Err("Must provide --username with --password-stdin".into()),
        None => {
            eprint!("Username: ");
            read_line(&mut std::io::stdin())?
        }
    };
    let password = match (w.get("password"), w.has("password-stdin")) {
        (Some(_), true) => return Err("--password and --password-stdin are mutually exclusive".into()),
        (Some(p), false) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p.to_string()
        }
        (None, true) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| e.to_string())?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => {
            eprint!("Password: ");
            read_line(&mut std::io::stdin())?
        }
    };
    if username.is_empty() || password.is_empty() {
        return Err("Error: Cannot perform an interactive login from a non TTY device".into());
    }
    let body = json!({ "username": username, "password": password, "serveraddress": server });
    client.post("/auth", Some(&body)).map_err(cli_error)?;
    let mut cfg = read_config()?;
    if !cfg.is_object() {
        cfg = json!({});
    }
    let auths = cfg
        .as_object_mut()
        .map(|m| m.entry("auths").or_insert_with(|| json!({})))
        .ok_or("config.json is not an object")?;
    if !auths.is_object() {
        *auths = json!({});
    }
    auths[auth::config_key(&server)] = json!({ "auth": auth::encode_basic(&username, &password) });
    write_config(&cfg)?;
    println!("Login Succeeded");
    Ok(())
}

fn read_line(r: &mut dyn Read) -> Result<String, String> {
    let mut line = String::new();
    BufReader::new(r)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn cmd_logout(words: &[String]) -> Result<(), String> {
    let w = parse_flags("logout", words, &[], &[])?;
    let server = match w.args.as_slice() {
        [] => "docker.io".to_string(),
        [s] => auth::server_host(s),
        _ => return Err("\"shoal logout\" requires at most 1 argument.".into()),
    };
    let key = auth::config_key(&server);
    let mut cfg = read_config()?;
    let removed = cfg
        .get_mut("auths")
        .and_then(Value::as_object_mut)
        .map(|a| {
            let before = a.len();
            a.retain(|k, _| auth::server_host(k) != server && *k != key);
            before != a.len()
        })
        .unwrap_or(false);
    if !removed {
        println!("Not logged in to {key}");
        return Ok(());
    }
    println!("Removing login credentials for {key}");
    write_config(&cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(ws: &[&str]) -> Vec<String> {
        ws.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_parse_like_docker() {
        let w = parse_flags(
            "logout",
            &words(&["-u", "me", "--password-stdin", "reg:5000"]),
            &[("username", 'u'), ("password", 'p')],
            &[("password-stdin", '\0')],
        )
        .unwrap();
        assert_eq!(w.get("username").as_deref(), Some("me"));
        assert!(w.has("password-stdin"));
        assert_eq!(w.args, vec!["reg:5000"]);
        let w = parse_flags(
            "logout",
            &words(&["--platform=linux/arm/v7", "-q", "x"]),
            &[("platform", '\0')],
            &[("quiet", 'q')],
        )
        .unwrap();
        assert_eq!(w.get("platform").as_deref(), Some("linux/arm/v7"));
        assert!(w.has("quiet"));
        assert!(parse_flags("pull", &words(&["--bogus"]), &[], &[])
            .unwrap_err()
            .contains("--bogus"));
        assert!(parse_flags("pull", &words(&["-u"]), &[("username", 'u')], &[])
            .unwrap_err()
            .contains("argument"));
    }
}
