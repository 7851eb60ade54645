//! `POST /build` (docker's legacy builder protocol: a tar context as the body, progress as a
//! stream of JSON messages), `POST /commit` and `GET /containers/{id}/export`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::http::{ApiError, ApiRequest, ApiResult};
use crate::daemon::build::{self as engine_build, EngineRunner};
use crate::daemon::engine::Engine;
use crate::image::build::{self, dockerignore, BuildOptions};
use crate::image::commit::CommitOptions;

/// `POST /build`.
pub fn build(engine: &Arc<Engine>, req: &mut ApiRequest) -> ApiResult<()> {
    if req.q("version") == Some("2") {
        return Err(ApiError::bad_request(
            "BuildKit is not supported by shoal; use the legacy builder (DOCKER_BUILDKIT=0)",
        ));
    }
    if req.q("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad_request(
            "building from a remote context is not supported",
        ));
    }
    let json_map = |key: &str| -> ApiResult<BTreeMap<String, Option<String>>> {
        match req.q(key).filter(|s| !s.is_empty()) {
            Some(s) => {
                serde_json::from_str(s).map_err(|e| ApiError::bad_request(format!("invalid {key}: {e}")))
            }
            None => Ok(BTreeMap::new()),
        }
    };
    let build_args: BTreeMap<String, String> = json_map("buildargs")?
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    let labels: BTreeMap<String, String> = json_map("labels")?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    let opts = BuildOptions {
        tags: req.q_all("t").into_iter().filter(|t| !t.is_empty()).collect(),
        dockerfile: req.q("dockerfile").unwrap_or("").to_string(),
        build_args,
        target: req.q("target").map(String::from),
        no_cache: req.flag("nocache"),
        labels,
        network: req.q("networkmode").unwrap_or("").to_string(),
    };
    let quiet = req.flag("q");
    let ctx = build::temp_path(&engine.images, "context");
    let _cleanup = RemoveOnDrop(ctx.clone());
    fs::create_dir_all(&ctx)?;
    unpack_context(&mut *req, &ctx, &opts.dockerfile)
        .map_err(|e| ApiError::bad_request(format!("reading the build context: {e}")))?;
    let mut w = req.stream("application/json")?;
    // False once the client is gone (a write fails), which cancels the build.
    let mut send = |v: serde_json::Value| w.write_all(format!("{v}\n").as_bytes()).is_ok();
    let result = {
        let mut out = |text: &str| quiet || send(json!({ "stream": text }));
        build::build(&engine.images, &EngineRunner(engine), &ctx, &opts, &mut out)
    };
    match result {
        Ok(id) => {
            send(json!({ "aux": { "ID": id } }));
            if quiet {
                send(json!({ "stream": format!("{id}\n") }));
            } else {
                let short = id.strip_prefix("sha256:").unwrap_or(&id);
                let short = &short[..short.len().min(12)];
                send(json!({ "stream": format!("Successfully built {short}\n") }));
                for t in &opts.tags {
                    let shown = crate::image::Reference::parse(t)
                        .ok()
                        .and_then(|r| r.familiar_tagged())
                        .unwrap_or_else(|| t.clone());
                    send(json!({ "stream": format!("Successfully tagged {shown}\n") }));
                }
            }
        }
        Err(e) => {
            send(json!({ "errorDetail": { "message": e }, "error": e }));
        }
    }
    Ok(())
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Unpack the context tar (plain or gzip) into `dir`, then drop what `.dockerignore` excludes
/// (never the Dockerfile or `.dockerignore` themselves), as dockerd does for any client.
fn unpack_context(body: &mut dyn Read, dir: &Path, dockerfile: &str) -> io::Result<()> {
    let mut r = BufReader::new(body);
    let gz = r.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let input: Box<dyn Read + '_> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else {
        Box::new(r)
    };
    let mut ar = tar::Archive::new(input);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    ar.unpack(dir)?;
    let ignore = match fs::read_to_string(dir.join(".dockerignore")) {
        Ok(t) => dockerignore::Matcher::parse(&t),
        Err(_) => return Ok(()),
    };
    let keep = [
        dockerignore::clean(if dockerfile.is_empty() {
            "Dockerfile"
        } else {
            dockerfile
        }),
        ".dockerignore".to_string(),
    ];
    prune(dir, "", &ignore, &keep)
}

fn prune(root: &Path, rel: &str, m: &dockerignore::Matcher, keep: &[String]) -> io::Result<()> {
    for e in fs::read_dir(root.join(rel))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let is_dir = e.file_type()?.is_dir();
        if keep.contains(&r) {
            continue;
        }
        if is_dir {
            // Exceptions may re-include something below an excluded directory.
            if m.excluded(&r) && !m.has_exceptions() {
                fs::remove_dir_all(e.path())?;
            } else {
                prune(root, &r, m, keep)?;
                if m.excluded(&r) {
                    // Kept only if an exception re-included something inside.
                    let _ = fs::remove_dir(e.path());
                }
            }
        } else if m.excluded(&r) {
            fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// `POST /commit?container=…&repo=…&tag=…&comment=…&author=…&changes=…`.
pub fn commit(engine: &Arc<Engine>, req: &mut ApiRequest) -> ApiResult<()> {
    let container = req
        .q("container")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("container is required"))?
        .to_string();
    let reference = match (
        req.q("repo").filter(|r| !r.is_empty()),
        req.q("tag").filter(|t| !t.is_empty()),
    ) {
        (Some(r), Some(t)) => format!("{r}:{t}"),
        (Some(r), None) => r.to_string(),
        (None, Some(_)) => return Err(ApiError::bad_request("a tag needs a repository")),
        (None, None) => String::new(),
    };
    let opts = CommitOptions {
        reference,
        comment: req.q("comment").unwrap_or("").to_string(),
        author: req.q("author").unwrap_or("").to_string(),
        changes: req
            .q_all("changes")
            .iter()
            .flat_map(|c| c.split('\n').map(str::to_string).collect::<Vec<_>>())
            .filter(|l| !l.trim().is_empty())
            .collect(),
    };
    // The body may carry a container config; shoal commits the container's own config.
    let _ = req.body(4 << 20)?;
    let id = engine_build::commit(engine, &container, &opts)?;
    req.respond_json(201, &json!({ "Id": id }));
    Ok(())
}

/// `GET /containers/{id}/export`.
pub fn export(engine: &Arc<Engine>, req: &mut ApiRequest, id: &str) -> ApiResult<()> {
    // Errors that can be seen before the tar starts get a proper status.
    let image_id = engine.get(id)?.lock().rec.image_id.clone();
    engine
        .images
        .resolve(&image_id)
        .map_err(crate::daemon::engine::image_error)?;
    let mut w = req.stream("application/x-tar")?;
    if let Err(e) = engine_build::export(engine, id, &mut w) {
        log::warn!("export of {id}: {}", e.message);
    }
    Ok(())
}
