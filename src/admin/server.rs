//! The admin page's handler: tiny_http on the private unix socket the guard feeds. Routes
//! sign-in, pages, actions (POST with CSRF), live feeds (server-sent events) and `/metrics`,
//! calling the engine in-process.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tiny_http::{Header, Method, Request, Response};

use super::auth::{self, Auth, Identity};
use super::data::{self, CpuSamples};
use super::{guard, metrics, pages};
use crate::api::http::{percent_decode, split_url};
use crate::daemon::engine::{image_error, Engine};
use crate::timefmt;

/// Log lines on a container's page.
const LOG_LINES: usize = 100;
/// `?tail=` is capped so a page stays small.
const MAX_LOG_LINES: usize = 1000;
/// Live feeds write a comment this often, so a gone client is noticed.
const PING_EVERY: Duration = Duration::from_secs(15);
const FORM_LIMIT: u64 = 16 << 10;

pub struct Admin {
    pub engine: Arc<Engine>,
    pub auth: Auth,
    pub samples: CpuSamples,
    pub started: Instant,
    /// The daemon's API socket: `compose up` for a project runs as a client of it.
    pub api_socket: std::path::PathBuf,
}

/// Serve requests from tiny_http until it stops; one thread per request (the guard bounds
/// how many connections, hence requests, exist at once).
pub fn serve(admin: Arc<Admin>, server: tiny_http::Server) {
    for rq in server.incoming_requests() {
        let admin = admin.clone();
        let spawned = std::thread::Builder::new()
            .name("admin-req".into())
            .stack_size(256 << 10)
            .spawn(move || handle(&admin, rq));
        if let Err(e) = spawned {
            log::warn!("admin page: cannot start a request thread: {e}");
        }
    }
}

/// What a handler answers (streams write their own response and return None).
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn html(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "text/html; charset=utf-8",
            body: body.into_bytes(),
            headers: Vec::new(),
        }
    }
    fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
            headers: Vec::new(),
        }
    }
    fn redirect(to: &str) -> Reply {
        let mut r = Reply::text(303, "");
        r.headers.push(("Location", to.to_string()));
        r
    }
}

struct Ctx<'a> {
    method: Method,
    path: String,
    query: HashMap<String, String>,
    headers: &'a [Header],
    ip: IpAddr,
    now: Instant,
}

impl Ctx<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
}

fn handle(admin: &Admin, mut rq: Request) {
    let t0 = Instant::now();
    let (path, query) = split_url(rq.url());
    let headers = rq.headers().to_vec();
    let ip = headers
        .iter()
        .find(|h| h.field.equiv(guard::PEER_HEADER))
        .and_then(|h| h.value.as_str().parse().ok())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let ctx = Ctx {
        method: rq.method().clone(),
        path,
        query,
        headers: &headers,
        ip,
        now: t0,
    };
    let mut body = String::new();
    if ctx.method == Method::Post {
        let _ = rq.as_reader().take(FORM_LIMIT).read_to_string(&mut body);
    }
    let form = parse_form(&body);
    match route(admin, &ctx, &form) {
        Routed::Reply(mut reply) => {
            reply.headers.push((
                "Server-Timing",
                format!("app;dur={:.3}", t0.elapsed().as_secs_f64() * 1e3),
            ));
            respond(rq, reply);
        }
        Routed::Stream(kind) => stream(admin, rq, kind),
    }
}

enum Routed {
    Reply(Reply),
    Stream(StreamKind),
}

enum StreamKind {
    Logs(String),
    Events,
}

fn route(admin: &Admin, ctx: &Ctx, form: &HashMap<String, String>) -> Routed {
    if let Err(wait) = admin.auth.check_rate(ctx.ip, ctx.now) {
        let mut r = Reply::text(429, "too many wrong tokens from this address; try again later\n");
        r.headers.push(("Retry-After", (wait.as_secs() + 1).to_string()));
        return Routed::Reply(r);
    }
    let segs: Vec<&str> = ctx.path.trim_matches('/').split('/').collect();
    let post = ctx.method == Method::Post;
    if ctx.method == Method::Get && segs == ["login"] {
        return Routed::Reply(Reply::html(200, pages::login(None, "/")));
    }
    if post && segs == ["login"] {
        return Routed::Reply(login(admin, ctx, form));
    }
    let identity = admin
        .auth
        .identify(ctx.header("Cookie"), ctx.header("Authorization"), ctx.ip, ctx.now);
    let Some(identity) = identity else {
        let r = if ctx.method == Method::Get && is_page(&segs) {
            Reply::html(401, pages::login(None, &ctx.path))
        } else {
            Reply::text(
                401,
                "sign in first: log in at /login or send Authorization: Bearer <token>\n",
            )
        };
        return Routed::Reply(r);
    };
    let csrf = match &identity {
        Identity::Session { csrf, .. } => csrf.clone(),
        Identity::Bearer => String::new(),
    };
    if post {
        if let Identity::Session { csrf, .. } = &identity {
            let sent = form.get("csrf").map(String::as_str).unwrap_or("");
            if !auth::same(sent, csrf) {
                log::warn!(
                    "admin page: POST {} from {} without a valid CSRF token",
                    ctx.path,
                    ctx.ip
                );
                return Routed::Reply(Reply::text(403, "missing or wrong CSRF token\n"));
            }
            if !auth::same_origin(ctx.header("Host"), ctx.header("Origin"), ctx.header("Referer")) {
                log::warn!(
                    "admin page: POST {} from {} with a foreign origin",
                    ctx.path,
                    ctx.ip
                );
                return Routed::Reply(Reply::text(403, "cross-origin request refused\n"));
            }
        }
        return Routed::Reply(action(admin, &identity, &segs, form, &csrf));
    }
    if ctx.method != Method::Get && ctx.method != Method::Head {
        return Routed::Reply(Reply::text(405, "method not allowed\n"));
    }
    let engine = &admin.engine;
    let reply = match segs.as_slice() {
        [""] => Reply::html(
            200,
            pages::overview(&data::overview(engine, admin.started), &csrf),
        ),
        ["containers"] => Reply::html(
            200,
            pages::containers(&data::containers(engine, &admin.samples, true), &csrf),
        ),
        ["containers", id] => {
            let lines = ctx
                .query
                .get("tail")
                .and_then(|t| t.parse::<usize>().ok())
                .unwrap_or(LOG_LINES)
                .min(MAX_LOG_LINES);
            match data::detail(engine, &admin.samples, id, lines) {
                Some(d) => Reply::html(200, pages::container(&d, &csrf)),
                None => not_found(&csrf, "No such container"),
            }
        }
        ["containers", id, "logs", "stream"] => return Routed::Stream(StreamKind::Logs(id.to_string())),
        ["projects"] => {
            let rows = data::containers(engine, &admin.samples, false);
            Reply::html(200, pages::projects(&data::projects(&rows), &csrf))
        }
        ["images"] => Reply::html(
            200,
            pages::images(
                &data::images(engine),
                &csrf,
                (timefmt::now_nanos() / 1_000_000_000) as i64,
            ),
        ),
        ["networks"] => Reply::html(200, pages::networks(&data::networks(engine), &csrf)),
        ["volumes"] => Reply::html(200, pages::volumes(&data::volumes(engine), &csrf)),
        ["events"] => Reply::html(200, pages::events(&engine.events.recent(), &csrf)),
        ["events", "stream"] => return Routed::Stream(StreamKind::Events),
        ["metrics"] => {
            let rows = data::containers(engine, &admin.samples, true);
            let text = metrics::render(&metrics::Snapshot {
                version: env!("CARGO_PKG_VERSION"),
                arch: crate::api::go_arch(),
                containers: &rows,
                images: engine.images.list().len(),
                networks: engine.net().list().len(),
                volumes: engine.volumes.list().len(),
                daemon_rss: data::daemon_rss(),
                events_kept: engine.events.recent().len(),
            });
            Reply {
                status: 200,
                content_type: metrics::CONTENT_TYPE,
                body: text.into_bytes(),
                headers: Vec::new(),
            }
        }
        _ => not_found(&csrf, "No such page"),
    };
    Routed::Reply(reply)
}

fn is_page(segs: &[&str]) -> bool {
    matches!(
        segs,
        [""] | ["containers"]
            | ["containers", _]
            | ["projects"]
            | ["images"]
            | ["networks"]
            | ["volumes"]
            | ["events"]
    )
}

fn not_found(csrf: &str, what: &str) -> Reply {
    Reply::html(404, pages::message("Not found", what, csrf, "/"))
}

fn login(admin: &Admin, ctx: &Ctx, form: &HashMap<String, String>) -> Reply {
    if !auth::same_origin(ctx.header("Host"), ctx.header("Origin"), ctx.header("Referer")) {
        return Reply::text(403, "cross-origin request refused\n");
    }
    let token = form.get("token").map(String::as_str).unwrap_or("");
    let next = local_path(form.get("next")).unwrap_or_else(|| "/".to_string());
    if !admin.auth.verify_token(token, ctx.ip, ctx.now) {
        return Reply::html(401, pages::login(Some("Wrong token."), &next));
    }
    match admin.auth.open_session(ctx.now) {
        Ok((id, _)) => {
            log::info!("admin page: signed in from {}", ctx.ip);
            let mut r = Reply::redirect(&next);
            r.headers.push(("Set-Cookie", auth::session_cookie(&id)));
            r
        }
        Err(e) => Reply::text(500, &format!("cannot open a session: {e}\n")),
    }
}

/// Carry out one POST action; answers a redirect back to the page it came from.
fn action(
    admin: &Admin,
    identity: &Identity,
    segs: &[&str],
    form: &HashMap<String, String>,
    csrf: &str,
) -> Reply {
    let engine = &admin.engine;
    let back = local_path(form.get("back")).unwrap_or_else(|| "/".to_string());
    let verb = form.get("do").map(String::as_str).unwrap_or("");
    let result: Result<String, String> = match segs {
        ["logout"] => {
            if let Identity::Session { id, .. } = identity {
                admin.auth.close_session(id);
            }
            let mut r = Reply::redirect("/login");
            r.headers.push((
                "Set-Cookie",
                format!("{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict", auth::COOKIE),
            ));
            return r;
        }
        ["containers", id] => container_action(engine, id, verb).map(|_| back.clone()),
        ["projects", name] if verb == "up" => project_up(admin, name).map(|_| back.clone()),
        ["projects", name] => project_action(engine, name, verb).map(|_| back.clone()),
        ["images", "prune"] => prune_images(engine).map(|_| back.clone()),
        ["images", id, "remove"] => remove_image(engine, id).map(|_| back.clone()),
        ["networks", "prune"] => crate::api::networks::prune(engine)
            .map(|_| back.clone())
            .map_err(|e| e.message),
        ["networks", id, "remove"] => crate::api::networks::remove(engine, id)
            .map(|_| back.clone())
            .map_err(|e| e.message),
        ["volumes", "prune"] => engine
            .volumes
            .prune(&engine.volumes_in_use(), &Default::default())
            .map(|_| back.clone())
            .map_err(|e| e.message),
        ["volumes", name, "remove"] => engine
            .remove_volume(name, false)
            .map(|_| back.clone())
            .map_err(|e| e.message),
        _ => return Reply::html(404, pages::message("Not found", "No such action", csrf, &back)),
    };
    match result {
        Ok(to) => Reply::redirect(&to),
        Err(e) => Reply::html(409, pages::message("Action failed", &e, csrf, &back)),
    }
}

fn container_action(engine: &Arc<Engine>, id: &str, verb: &str) -> Result<(), String> {
    let r = match verb {
        "start" => engine.start(id).map(|_| ()),
        "stop" => engine.stop(id, None, None).map(|_| ()),
        "restart" => engine.restart(id, None, None),
        "remove" => engine.remove(id, true),
        _ => return Err(format!("unknown container action {verb:?}")),
    };
    r.map_err(|e| e.message)
}

/// Start or stop every container of a compose project, all at once (as compose does, so a
/// project of containers that each take their stop timeout does not take the sum of them).
/// `compose up -d` for a project, from the compose files and directory its containers were
/// made from (their `com.docker.compose.project.*` labels), run by this same binary as a
/// client of the daemon: recreated services are recreated, stopped ones started.
fn project_up(admin: &Admin, name: &str) -> Result<(), String> {
    let labels = admin
        .engine
        .list()
        .iter()
        .find_map(|e| {
            let slot = e.lock();
            let l = slot.rec.config.labels.clone()?;
            (l.get(data::PROJECT_LABEL).map(String::as_str) == Some(name)).then_some(l)
        })
        .ok_or_else(|| format!("no containers in project {name:?}"))?;
    let workdir = labels
        .get(crate::compose::plan::LABEL_WORKDIR)
        .ok_or_else(|| format!("project {name:?} was not made by compose (no working_dir label)"))?;
    let mut args = vec![
        "-H".to_string(),
        format!("unix://{}", admin.api_socket.display()),
        "compose".into(),
        "-p".into(),
        name.to_string(),
    ];
    for f in labels
        .get(crate::compose::plan::LABEL_FILES)
        .map(|f| f.split(',').filter(|f| !f.is_empty()).collect::<Vec<_>>())
        .unwrap_or_default()
    {
        args.extend(["-f".to_string(), f.to_string()]);
    }
    args.extend(["up".to_string(), "-d".to_string()]);
    let out = std::process::Command::new("/proc/self/exe")
        .args(&args)
        .current_dir(workdir)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running compose up: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = err.lines().rev().take(5).collect();
    Err(tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
}

fn project_action(engine: &Arc<Engine>, name: &str, verb: &str) -> Result<(), String> {
    if !matches!(verb, "start" | "stop" | "down") {
        return Err(format!("unknown project action {verb:?}"));
    }
    let members: Vec<String> = engine
        .list()
        .iter()
        .filter(|e| {
            let s = e.lock();
            let labels = s.rec.config.labels.as_ref();
            labels
                .and_then(|l| l.get(data::PROJECT_LABEL))
                .is_some_and(|p| p == name)
        })
        .map(|e| e.id.clone())
        .collect();
    if members.is_empty() {
        return Err(format!("no containers in project {name:?}"));
    }
    let errors: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = members
            .iter()
            .map(|id| {
                scope.spawn(move || match verb {
                    "start" => engine.start(id).map(|_| ()),
                    // `compose down`: containers go (volumes stay), then the project's networks.
                    "down" => engine.remove(id, true),
                    _ => engine.stop(id, None, None).map(|_| ()),
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.message),
                Err(_) => Some("a container action panicked".to_string()),
            })
            .collect()
    });
    let mut errors = errors;
    if verb == "down" && errors.is_empty() {
        let networks: Vec<String> = engine
            .net()
            .list()
            .into_iter()
            .filter(|n| n.labels.get(data::PROJECT_LABEL).is_some_and(|p| p == name))
            .map(|n| n.id)
            .collect();
        for id in networks {
            if let Err(e) = crate::api::networks::remove(engine, &id) {
                errors.push(e.message);
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn remove_image(engine: &Engine, id: &str) -> Result<(), String> {
    let image = engine.images.resolve(id).map_err(|e| image_error(e).message)?;
    if let Some(user) = engine.image_users(&image.id).first() {
        return Err(format!(
            "image {} is used by container {}: remove the container first",
            id,
            &user[..12]
        ));
    }
    let removed = engine
        .images
        .remove(&image.id, true)
        .map_err(|e| image_error(e).message)?;
    for r in removed {
        let (action, what) = match r {
            crate::image::RemovedItem::Untagged(t) => ("untag", t),
            crate::image::RemovedItem::Deleted(d) => ("delete", d),
        };
        engine.events.emit(
            "image",
            action,
            &what,
            crate::daemon::events::attrs([("name", id)]),
        );
    }
    Ok(())
}

/// Remove untagged images no container uses.
fn prune_images(engine: &Engine) -> Result<(), String> {
    for i in engine.images.list() {
        if i.repo_tags.is_empty() && engine.image_users(&i.id).is_empty() {
            remove_image(engine, &i.id)?;
        }
    }
    Ok(())
}

/// A path on this site to send the browser back to; anything else (`//host`, `http:...`,
/// backslashes browsers read as slashes) is refused so a form cannot redirect elsewhere.
fn local_path(p: Option<&String>) -> Option<String> {
    p.filter(|p| p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') && !p.contains(['\r', '\n']))
        .cloned()
}

/// `a=1&b=x+y` into a map (last value wins).
pub fn parse_form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

fn respond(rq: Request, reply: Reply) {
    let mut resp = Response::from_data(reply.body)
        .with_status_code(reply.status)
        .with_header(header("Content-Type", reply.content_type));
    for (k, v) in security_headers().into_iter().chain(reply.headers) {
        resp = resp.with_header(header(k, &v));
    }
    let _ = rq.respond(resp);
}

fn header(k: &str, v: &str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes())
        .unwrap_or_else(|_| Header::from_bytes(&b"X-Invalid"[..], &b"1"[..]).expect("static header"))
}

fn security_headers() -> Vec<(&'static str, String)> {
    vec![
        ("Cache-Control", "no-store".into()),
        ("X-Content-Type-Options", "nosniff".into()),
        ("X-Frame-Options", "DENY".into()),
        ("Referrer-Policy", "same-origin".into()),
        (
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
                .into(),
        ),
    ]
}

/// One server-sent event: every line of `text` as a `data:` line.
pub fn sse_event(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split('\n') {
        out.push_str("data: ");
        out.push_str(line.trim_end_matches('\r'));
        out.push('\n');
    }
    out.push('\n');
    out
}

/// Live feeds: a text/event-stream answer written as things happen, until the client leaves
/// (a write fails) or the container is gone.
fn stream(admin: &Admin, rq: Request, kind: StreamKind) {
    let engine = &admin.engine;
    let entry = match &kind {
        StreamKind::Logs(id) => match engine.get(id) {
            Ok(e) => Some(e),
            Err(e) => return respond(rq, Reply::text(404, &format!("{}\n", e.message))),
        },
        StreamKind::Events => None,
    };
    let mut w = rq.into_writer();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
                X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n: shoal\n\n";
    if w.write_all(head.as_bytes()).and_then(|_| w.flush()).is_err() {
        return;
    }
    let mut last_write = Instant::now();
    match entry {
        Some(entry) => {
            let mut follow = crate::runtime::logs::Follow::from_end(&entry.dir);
            loop {
                if entry.lock().removed {
                    return;
                }
                let lines = follow.poll_new().unwrap_or_default();
                let mut out = String::new();
                for e in lines {
                    out.push_str(&sse_event(
                        String::from_utf8_lossy(&e.line).trim_end_matches('\n'),
                    ));
                }
                if out.is_empty() && last_write.elapsed() >= PING_EVERY {
                    out.push_str(": ping\n\n");
                }
                if !out.is_empty() {
                    if w.write_all(out.as_bytes()).and_then(|_| w.flush()).is_err() {
                        return;
                    }
                    last_write = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        None => {
            let mut next = engine.events.next_seq();
            loop {
                let events = engine.events.wait_from(next, PING_EVERY);
                let mut out = String::new();
                for e in &events {
                    next = e.seq + 1;
                    out.push_str(&sse_event(&pages::event_row(e)));
                }
                if out.is_empty() {
                    out.push_str(": ping\n\n");
                }
                if w.write_all(out.as_bytes()).and_then(|_| w.flush()).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_sse() {
        let f = parse_form("csrf=ab%2Fc&back=%2Fcontainers&token=a+b");
        assert_eq!(f["csrf"], "ab/c");
        assert_eq!(f["back"], "/containers");
        assert_eq!(f["token"], "a b");
        assert_eq!(sse_event("one\ntwo"), "data: one\ndata: two\n\n");
        let p = |s: &str| local_path(Some(&s.to_string()));
        assert_eq!(p("/containers"), Some("/containers".into()));
        assert_eq!(p("//evil.example/"), None);
        assert_eq!(p("/\\evil.example"), None);
        assert_eq!(p("https://evil.example/"), None);
        assert_eq!(p("/x\r\nSet-Cookie: a=b"), None);
    }
}
