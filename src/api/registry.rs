//! Registry routes: `POST /images/create?fromImage=` (pull), `POST /images/{name}/push`,
//! `POST /auth`. Progress streams as docker's JSON messages; an error before the first
//! message is an HTTP status, after it an `{"error"}` message, as dockerd does.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::http::{ApiError, ApiRequest, ApiResult, ChunkedWriter};
use crate::daemon::engine::Engine;
use crate::image::reference::Reference;
use crate::image::registry::{self, auth, manifest::Wanted, RegistryError};

/// The registry routes; None for every other request.
pub fn route(
    engine: &Arc<Engine>,
    req: &mut ApiRequest,
    method: &str,
    segs: &[&str],
) -> Option<ApiResult<()>> {
    match (method, segs) {
        ("POST", ["images", "create"]) if req.q("fromImage").is_some() => Some(pull(engine, req)),
        ("POST", ["images", name @ .., "push"]) if !name.is_empty() => {
            let name = name.join("/");
            Some(push(engine, req, &name))
        }
        ("POST", ["auth"]) => Some(login(engine, req)),
        _ => None,
    }
}

fn credentials(req: &ApiRequest) -> ApiResult<Option<auth::Credentials>> {
    match req.header("X-Registry-Auth") {
        Some(h) => auth::decode_registry_auth(h).map_err(ApiError::bad_request),
        None => Ok(None),
    }
}

/// Writes progress lines, sending the response head with the first one.
struct Lazy<'r> {
    req: &'r mut ApiRequest,
    out: Option<ChunkedWriter>,
    broken: bool,
}

impl Lazy<'_> {
    fn send(&mut self, msg: &Value) {
        if self.broken {
            return;
        }
        if self.out.is_none() {
            match self.req.stream("application/json") {
                Ok(w) => self.out = Some(w),
                Err(_) => {
                    self.broken = true;
                    return;
                }
            }
        }
        if let Some(w) = self.out.as_mut() {
            if w.write_all(format!("{msg}\n").as_bytes()).is_err() {
                self.broken = true;
            }
        }
    }

    /// Report the outcome: an HTTP error if nothing was streamed yet.
    fn finish(mut self, result: Result<(), RegistryError>) -> ApiResult<()> {
        match result {
            Ok(()) => {
                if self.out.is_none() {
                    self.req.respond_json(200, &json!({}));
                }
                Ok(())
            }
            Err(e) if self.out.is_none() && !self.broken => Err(ApiError::new(e.status, e.message)),
            Err(e) => {
                self.send(&json!({ "errorDetail": { "message": e.message }, "error": e.message }));
                Ok(())
            }
        }
    }
}

fn pull(engine: &Arc<Engine>, req: &mut ApiRequest) -> ApiResult<()> {
    let from = req.q("fromImage").unwrap_or("").to_string();
    let tag = req.q("tag").unwrap_or("").to_string();
    let name = if tag.is_empty() || from.contains('@') {
        from.clone()
    } else if tag.starts_with("sha256:") {
        format!("{from}@{tag}")
    } else {
        // `fromImage=busybox:1.36&tag=` and `fromImage=busybox&tag=1.36` both occur.
        let (repo, _) = from
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .unwrap_or((&from, ""));
        format!("{repo}:{tag}")
    };
    let reference = Reference::parse(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let platform = match req.q("platform").filter(|p| !p.is_empty()) {
        Some(p) => Some(Wanted::parse(p).map_err(ApiError::bad_request)?),
        None => None,
    };
    let creds = credentials(req)?;
    let lazy = Mutex::new(Lazy {
        req,
        out: None,
        broken: false,
    });
    let sink = |msg: Value| lazy.lock().unwrap_or_else(|p| p.into_inner()).send(&msg);
    let result = registry::pull(
        &engine.images,
        &engine.config.registry,
        registry::PullRequest {
            reference: &reference,
            platform,
            creds,
        },
        &sink,
    );
    match &result {
        Err(e) => log::warn!("pull {reference}: {e}"),
        Ok(_) => {
            let r = reference.to_string();
            let attrs = crate::daemon::events::attrs([("name", r.as_str())]);
            engine.events.emit("image", "pull", &r, attrs);
        }
    }
    lazy.into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .finish(result.map(|_| ()))
}

fn push(engine: &Arc<Engine>, req: &mut ApiRequest, name: &str) -> ApiResult<()> {
    let name = match req.q("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{name}:{t}"),
        None => name.to_string(),
    };
    let reference = Reference::parse(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let creds = credentials(req)?;
    let lazy = Mutex::new(Lazy {
        req,
        out: None,
        broken: false,
    });
    let sink = |msg: Value| lazy.lock().unwrap_or_else(|p| p.into_inner()).send(&msg);
    let result = registry::push(&engine.images, &engine.config.registry, &reference, creds, &sink);
    match &result {
        Err(e) => log::warn!("push {reference}: {e}"),
        Ok(_) => {
            let r = reference.to_string();
            let attrs = crate::daemon::events::attrs([("name", r.as_str())]);
            engine.events.emit("image", "push", &r, attrs);
        }
    }
    lazy.into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .finish(result.map(|_| ()))
}

fn login(engine: &Arc<Engine>, req: &mut ApiRequest) -> ApiResult<()> {
    let body = req.body(1 << 20)?;
    let creds: auth::Credentials =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("POST /auth body: {e}")))?;
    registry::login(&engine.config.registry, &creds).map_err(|e| ApiError::new(e.status, e.message))?;
    req.respond_json(200, &json!({ "Status": "Login Succeeded", "IdentityToken": "" }));
    Ok(())
}
