//! `build` (send the context directory, filtered by `.dockerignore`, as a tar to `POST
//! /build` and print the progress as it streams), `commit` and `export`.

use super::commands::CmdError;
use crate::api::client::{query, Body, Client};
use crate::image::build::dockerignore::{self, Matcher};
use serde_json::Value;
use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BuildSpec {
    pub context: String,
    pub tags: Vec<String>,
    pub file: Option<String>,
    /// `KEY=value`, or `KEY` to take the value from the environment.
    pub build_args: Vec<String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub quiet: bool,
    pub network: Option<String>,
    pub labels: Vec<String>,
}

type Res = Result<i32, CmdError>;

fn fail(message: impl Into<String>) -> CmdError {
    CmdError {
        message: message.into(),
        code: 1,
    }
}

/// The context as a tar: every file not excluded by `.dockerignore` (the Dockerfile and
/// `.dockerignore` always go). A Dockerfile from outside the context (or stdin) is added
/// under `extra_name`.
pub fn context_tar(dir: &Path, dockerfile_rel: &str, extra: Option<(&str, &[u8])>) -> io::Result<Vec<u8>> {
    let ignore = fs::read_to_string(dir.join(".dockerignore"))
        .map(|t| Matcher::parse(&t))
        .unwrap_or_default();
    let keep = [dockerignore::clean(dockerfile_rel), ".dockerignore".to_string()];
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    add_dir(&mut b, dir, "", &ignore, &keep)?;
    if let Some((name, data)) = extra {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data)?;
    }
    b.into_inner()
}

fn add_dir(
    b: &mut tar::Builder<Vec<u8>>,
    root: &Path,
    rel: &str,
    m: &Matcher,
    keep: &[String],
) -> io::Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?
        .collect::<Result<_, _>>()?;
    crate::sort::sort_by_key(&mut entries, |e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let kept = keep.contains(&r);
        let excluded = !kept && m.excluded(&r);
        let is_dir = e.file_type()?.is_dir();
        if is_dir {
            if excluded && !m.has_exceptions() {
                continue;
            }
            if !excluded {
                b.append_path_with_name(e.path(), &r)?;
            }
            add_dir(b, root, &r, m, keep)?;
        } else if !excluded {
            b.append_path_with_name(e.path(), &r)
                .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", e.path().display())))?;
        }
    }
    Ok(())
}

/// `build -`: stdin is either a context tar (plain or gzip), or a Dockerfile with no context.
fn stdin_context() -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    io::stdin().read_to_end(&mut data)?;
    let is_tar = data.starts_with(&[0x1f, 0x8b]) || data.get(257..262) == Some(b"ustar".as_slice());
    if is_tar {
        return Ok(data);
    }
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, "Dockerfile", &data[..])?;
    b.into_inner()
}

pub fn build(client: &Client, spec: &BuildSpec) -> Res {
    if spec.context == "-" {
        let tar = stdin_context()?;
        let dockerfile = spec.file.clone().unwrap_or_else(|| "Dockerfile".to_string());
        return send(client, spec, &tar, dockerfile);
    }
    let dir = PathBuf::from(&spec.context);
    if !dir.is_dir() {
        return Err(fail(format!(
            "unable to prepare context: path {:?} not found",
            spec.context
        )));
    }
    // Where the Dockerfile is: inside the context (sent as is), or outside / stdin (added).
    let mut extra: Option<(String, Vec<u8>)> = None;
    let dockerfile_rel = match spec.file.as_deref() {
        None => "Dockerfile".to_string(),
        Some("-") => {
            let mut data = Vec::new();
            io::stdin().read_to_end(&mut data)?;
            extra = Some((".dockerfile.stdin".into(), data));
            ".dockerfile.stdin".to_string()
        }
        Some(f) => {
            let path = Path::new(f);
            let abs_ctx = fs::canonicalize(&dir)?;
            let abs =
                fs::canonicalize(path).map_err(|e| fail(format!("unable to prepare context: {f}: {e}")))?;
            match abs.strip_prefix(&abs_ctx) {
                Ok(rel) => rel.to_string_lossy().into_owned(),
                Err(_) => {
                    let data = fs::read(&abs)?;
                    extra = Some((".dockerfile.outside".into(), data));
                    ".dockerfile.outside".to_string()
                }
            }
        }
    };
    let tar = context_tar(
        &dir,
        &dockerfile_rel,
        extra.as_ref().map(|(n, d)| (n.as_str(), d.as_slice())),
    )
    .map_err(|e| fail(format!("error checking context: {e}")))?;
    send(client, spec, &tar, dockerfile_rel)
}

/// POST the context and print the progress as it streams; an `error` message fails the verb.
fn send(client: &Client, spec: &BuildSpec, tar: &[u8], dockerfile_rel: String) -> Res {
    let mut args = serde_json::Map::new();
    for a in &spec.build_args {
        match a.split_once('=') {
            Some((k, v)) => {
                args.insert(k.to_string(), Value::String(v.to_string()));
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    args.insert(a.clone(), Value::String(v));
                }
            }
        }
    }
    let mut labels = serde_json::Map::new();
    for l in &spec.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), Value::String(v.to_string()));
    }
    let mut q: Vec<(&str, String)> = spec.tags.iter().map(|t| ("t", t.clone())).collect();
    q.push(("dockerfile", dockerfile_rel));
    if !args.is_empty() {
        q.push(("buildargs", Value::Object(args).to_string()));
    }
    if !labels.is_empty() {
        q.push(("labels", Value::Object(labels).to_string()));
    }
    if let Some(t) = &spec.target {
        q.push(("target", t.clone()));
    }
    if spec.no_cache {
        q.push(("nocache", "1".into()));
    }
    if spec.quiet {
        q.push(("q", "1".into()));
    }
    if let Some(n) = &spec.network {
        q.push(("networkmode", n.clone()));
    }
    q.push(("rm", "1".into()));
    let path = format!("/build{}", query(&q));
    let resp = client.stream("POST", &path, Body::Bytes(tar, "application/x-tar"))?;
    let mut reader = io::BufReader::new(resp.body);
    let mut stdout = io::stdout().lock();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let msg: Value = serde_json::from_str(line.trim())
            .map_err(|e| fail(format!("invalid progress message from the daemon: {e}")))?;
        if let Some(err) = msg.get("error").and_then(Value::as_str) {
            stdout.flush()?;
            return Err(fail(err.to_string()));
        }
        if let Some(s) = msg.get("stream").and_then(Value::as_str) {
            stdout.write_all(s.as_bytes())?;
            stdout.flush()?;
        }
    }
    Ok(0)
}

pub fn commit(
    client: &Client,
    container: &str,
    reference: Option<&str>,
    message: Option<&str>,
    author: Option<&str>,
    changes: &[String],
) -> Res {
    let mut q: Vec<(&str, String)> = vec![("container", container.to_string())];
    if let Some(r) = reference {
        let (repo, tag) = super::tables::split_repo_tag(r);
        q.push(("repo", repo));
        if !tag.is_empty() {
            q.push(("tag", tag));
        }
    }
    if let Some(m) = message {
        q.push(("comment", m.to_string()));
    }
    if let Some(a) = author {
        q.push(("author", a.to_string()));
    }
    for c in changes {
        q.push(("changes", c.clone()));
    }
    let resp = client.request("POST", &format!("/commit{}", query(&q)), Body::Empty)?;
    let v = resp.json()?;
    println!("{}", v.get("Id").and_then(Value::as_str).unwrap_or(""));
    Ok(0)
}

pub fn export(client: &Client, container: &str, output: Option<&str>) -> Res {
    let path = format!(
        "/containers/{}/export",
        crate::api::client::query_escape(container)
    );
    download(client, &path, output)
}

/// `shoal save`: the images as one `docker save` archive.
pub fn save(client: &Client, images: &[String], output: Option<&str>) -> Res {
    let query: Vec<String> = images
        .iter()
        .map(|i| format!("names={}", crate::api::client::query_escape(i)))
        .collect();
    download(client, &format!("/images/get?{}", query.join("&")), output)
}

/// Stream a GET response to `output`, or to stdout when it is not a terminal.
fn download(client: &Client, path: &str, output: Option<&str>) -> Res {
    if output.is_none() && super::term::stdout_is_tty() {
        return Err(fail(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    let mut resp = client.stream("GET", path, Body::Empty)?;
    match output {
        Some(file) => {
            // Written beside the target and renamed, so a failed transfer leaves no partial file.
            let tmp = format!("{file}.part");
            let mut f = fs::File::create(&tmp).map_err(|e| fail(format!("open {file}: {e}")))?;
            io::copy(&mut resp.body, &mut f)?;
            f.sync_all()?;
            fs::rename(&tmp, file)?;
        }
        None => {
            io::copy(&mut resp.body, &mut io::stdout().lock())?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::{parse, Action};

    fn action(words: &[&str]) -> Action {
        let w: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        parse(&w, &|_| None)
            .unwrap_or_else(|e| panic!("{words:?}: {}", e.message))
            .action
    }

    #[test]
    fn verbs_parse_like_docker() {
        match action(&[
            "build",
            "-t",
            "a:1",
            "--tag=b",
            "-f",
            "x/Dockerfile",
            "--build-arg",
            "K=v",
            "--target",
            "t",
            "--no-cache",
            "-q",
            ".",
        ]) {
            Action::Build(b) => {
                assert_eq!(b.context, ".");
                assert_eq!(b.tags, ["a:1", "b"]);
                assert_eq!(b.file.as_deref(), Some("x/Dockerfile"));
                assert_eq!(b.build_args, ["K=v"]);
                assert_eq!(b.target.as_deref(), Some("t"));
                assert!(b.no_cache && b.quiet);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(action(&["image", "build", "ctx"]), Action::Build(_)));
        assert_eq!(
            action(&[
                "commit",
                "-m",
                "msg",
                "-c",
                "CMD [\"sh\"]",
                "--change",
                "ENV A=1",
                "c1",
                "r:t"
            ]),
            Action::Commit {
                container: "c1".into(),
                reference: Some("r:t".into()),
                message: Some("msg".into()),
                author: None,
                changes: vec!["CMD [\"sh\"]".into(), "ENV A=1".into()],
            }
        );
        assert_eq!(
            action(&["container", "export", "-o", "f.tar", "c1"]),
            Action::Export {
                container: "c1".into(),
                output: Some("f.tar".into())
            }
        );
        let w: Vec<String> = ["build"].iter().map(|s| s.to_string()).collect();
        assert!(parse(&w, &|_| None).is_err());
    }

    #[test]
    fn context_tar_leaves_out_ignored_files() {
        let dir = std::env::temp_dir().join(format!("shoal-ctx-tar-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (p, c) in [
            ("Dockerfile", "FROM x"),
            (
                ".dockerignore",
                "*.log\nDockerfile\nnode_modules\n!node_modules/keep\n",
            ),
            ("a.log", "l"),
            ("src/main.c", "c"),
            ("node_modules/dep/index.js", "d"),
            ("node_modules/keep", "k"),
        ] {
            let path = dir.join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, c).unwrap();
        }
        let tar = context_tar(&dir, "Dockerfile", Some((".dockerfile.stdin", b"FROM y"))).unwrap();
        let mut names: Vec<String> = tar::Archive::new(&tar[..])
            .entries()
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string()
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".dockerfile.stdin",
                ".dockerignore",
                "Dockerfile",
                "node_modules/keep",
                "src",
                "src/main.c"
            ]
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
