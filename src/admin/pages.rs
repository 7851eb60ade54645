//! The admin pages as HTML: pure functions from data to a string. One small stylesheet and a
//! few lines of script are inlined (no external assets); every page works without script,
//! which only adds live log and event feeds.

use std::fmt::Write;

use super::data::{ContainerRow, Detail, ImageRow, NetworkRow, Overview, Project, VolumeRow};
use crate::daemon::events::Event;
use crate::timefmt;

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#f6f7f9}\
header{background:#1d3557;color:#fff;padding:.5em 1em;display:flex;flex-wrap:wrap;align-items:center;gap:.3em .9em}\
header a{color:#fff;text-decoration:none}main{padding:1em;max-width:70em}table{border-collapse:collapse;width:100%;background:#fff}\
th,td{padding:.35em .5em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}th{background:#eef}\
.s-running{color:#1a7f37;font-weight:bold}.s-exited,.s-dead{color:#b42318}.s-created,.s-restarting{color:#9a6700}\
form.i{display:inline;margin:0}button{font:inherit;padding:.2em .6em;margin:.1em;border:1px solid #889;border-radius:4px;background:#fff}\
button.d{border-color:#b42318;color:#b42318}pre{background:#111;color:#eee;padding:.6em;overflow:auto;max-height:30em;font-size:13px}\
.cards{display:flex;flex-wrap:wrap;gap:.6em}.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em .9em;min-width:9em}\
.card b{display:block;font-size:1.3em}.tw{overflow-x:auto}.m{color:#666;font-size:.9em}input{font:inherit;padding:.3em}\
@media(max-width:40em){.hide-s{display:none}main{padding:.5em}th,td{padding:.3em}button{padding:.2em .4em}}";

/// Destructive buttons ask first where scripting is on.
const DANGER: &str = " class=d onclick=\"return confirm('Sure?')\"";

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `3d 4h`, `5h 2m`, `42s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60);
    match () {
        _ if d > 0 => format!("{d}d {h}h"),
        _ if h > 0 => format!("{h}h {m}m"),
        _ if m > 0 => format!("{m}m {}s", secs % 60),
        _ => format!("{secs}s"),
    }
}

fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

/// The frame of every signed-in page.
pub fn layout(title: &str, csrf: &str, body: &str) -> String {
    let mut h = String::with_capacity(body.len() + 2048);
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>{} - shoal</title><style>{STYLE}</style></head><body><header><b>shoal</b>\
         <a href=/>Overview</a><a href=/containers>Containers</a><a href=/projects>Projects</a>\
         <a href=/images>Images</a><a href=/networks>Networks</a><a href=/volumes>Volumes</a>\
         <a href=/events>Events</a><form class=i method=post action=/logout><input type=hidden name=csrf value=\"{}\">\
         <button>Log out</button></form></header><main><h1>{}</h1>",
        esc(title),
        esc(csrf),
        esc(title)
    );
    h.push_str(body);
    h.push_str("</main></body></html>");
    h
}

/// A POST button: the action, the CSRF token and where to come back to.
pub fn button(action: &str, label: &str, csrf: &str, back: &str, danger: bool) -> String {
    format!(
        "<form class=i method=post action=\"{}\"><input type=hidden name=csrf value=\"{}\">\
         <input type=hidden name=back value=\"{}\"><button{}>{}</button></form>",
        esc(action),
        esc(csrf),
        esc(back),
        if danger { DANGER } else { "" },
        esc(label)
    )
}

/// The sign-in form; `next` is the page to go to afterwards.
pub fn login(message: Option<&str>, next: &str) -> String {
    let msg = message
        .map(|m| format!("<p class=s-exited>{}</p>", esc(m)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\"><title>Log in - shoal</title>\
         <style>{STYLE}</style></head><body><header><b>shoal</b></header><main><h1>Log in</h1>{msg}\
         <form method=post action=/login><input type=hidden name=next value=\"{}\"><p><label>Admin token<br>\
         <input type=password name=token autocomplete=current-password size=40 autofocus></label></p>\
         <p><button>Log in</button></p></form><p class=m>The token is printed by \
         <code>shoal admin token</code> on the board.</p></main></body></html>",
        esc(next)
    )
}

pub fn overview(o: &Overview, csrf: &str) -> String {
    let h = &o.host;
    let mut b = String::new();
    let card = |b: &mut String, label: &str, value: &str| {
        let _ = write!(b, "<div class=card>{}<b>{}</b></div>", esc(label), esc(value));
    };
    b.push_str("<div class=cards>");
    card(&mut b, "Board", &h.hostname);
    card(&mut b, "shoal", &h.version);
    card(&mut b, "Architecture", &h.arch);
    card(&mut b, "Uptime", &duration(h.uptime_secs));
    card(&mut b, "Load", &h.load);
    card(
        &mut b,
        "Memory used",
        &format!(
            "{} / {}",
            bytes(h.mem_total.saturating_sub(h.mem_available)),
            bytes(h.mem_total)
        ),
    );
    card(
        &mut b,
        "Disk used (state)",
        &format!("{} / {}", bytes(h.disk_used), bytes(h.disk_total)),
    );
    card(&mut b, "Daemon memory", &bytes(h.daemon_rss));
    b.push_str("</div><h2>Resources</h2><div class=cards>");
    let total: usize = o.by_state.values().sum();
    let _ = write!(
        b,
        "<div class=card><a href=/containers>Containers</a><b>{total}</b>"
    );
    for (state, n) in &o.by_state {
        let _ = write!(b, "<span class=s-{0}>{0}: {1}</span> ", esc(state), n);
    }
    b.push_str("</div>");
    let _ = write!(
        b,
        "<div class=card><a href=/images>Images</a><b>{}</b></div>\
         <div class=card><a href=/networks>Networks</a><b>{}</b></div>\
         <div class=card><a href=/volumes>Volumes</a><b>{}</b></div>\
         <div class=card><a href=/projects>Compose projects</a><b>{}</b></div></div>\
         <p class=m>Kernel {}, state in {}, daemon up {}. <a href=/metrics>Metrics</a></p>",
        o.images,
        o.networks,
        o.volumes,
        o.projects,
        esc(&h.kernel),
        esc(&h.state_dir),
        duration(h.daemon_uptime_secs)
    );
    layout("Overview", csrf, &b)
}

/// Several actions on one thing: one form, one button per action (`do=<verb>`), so a long
/// table carries one CSRF field per row.
pub fn buttons(action: &str, verbs: &[(&str, &str, bool)], csrf: &str, back: &str) -> String {
    let mut b = format!(
        "<form class=i method=post action=\"{}\"><input type=hidden name=csrf value=\"{}\">\
         <input type=hidden name=back value=\"{}\">",
        esc(action),
        esc(csrf),
        esc(back)
    );
    for (verb, label, danger) in verbs {
        let _ = write!(
            b,
            "<button name=do value={}{}>{}</button>",
            esc(verb),
            if *danger { DANGER } else { "" },
            esc(label)
        );
    }
    b.push_str("</form>");
    b
}

fn container_actions(r: &ContainerRow, csrf: &str, back: &str) -> String {
    let verbs: &[(&str, &str, bool)] = if r.state == "running" || r.state == "restarting" {
        &[
            ("stop", "Stop", false),
            ("restart", "Restart", false),
            ("remove", "Remove", true),
        ]
    } else {
        &[("start", "Start", false), ("remove", "Remove", true)]
    };
    buttons(&format!("/containers/{}", r.id), verbs, csrf, back)
}

fn usage(r: &ContainerRow) -> (String, String) {
    let cpu = match (r.cpu_percent, r.cpu_seconds) {
        (Some(p), _) => format!("{p:.1}%"),
        // No earlier sample yet: the CPU time used so far.
        (None, Some(s)) => format!("{s:.2}s total"),
        _ => String::new(),
    };
    (cpu, r.memory.map(bytes).unwrap_or_default())
}

fn container_table(rows: &[ContainerRow], csrf: &str, back: &str) -> String {
    let mut b = String::from(
        "<div class=tw><table><tr><th>Name</th><th class=hide-s>Image</th><th>State</th>\
         <th class=hide-s>Ports</th><th>CPU</th><th>Memory</th><th></th></tr>",
    );
    for r in rows {
        let (cpu, mem) = usage(r);
        let _ = write!(
            b,
            "<tr><td><a href=\"/containers/{}\">{}</a></td><td class=hide-s>{}</td>\
             <td><span class=\"s-{}\">{}</span><br><span class=m>{}</span></td>\
             <td class=hide-s>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(short(&r.id)),
            esc(&r.name),
            esc(&r.image),
            esc(&r.state),
            esc(&r.state),
            esc(&r.status),
            esc(&r.ports),
            cpu,
            mem,
            container_actions(r, csrf, back)
        );
    }
    if rows.is_empty() {
        b.push_str("<tr><td colspan=7>No containers.</td></tr>");
    }
    b.push_str("</table></div>");
    b
}

pub fn containers(rows: &[ContainerRow], csrf: &str) -> String {
    let mut b = container_table(rows, csrf, "/containers");
    b.push_str("<p><a href=/containers>Refresh</a></p>");
    layout("Containers", csrf, &b)
}

pub fn container(d: &Detail, csrf: &str) -> String {
    let r = &d.row;
    let (cpu, mem) = usage(r);
    let back = format!("/containers/{}", r.id);
    let mut b = String::new();
    let _ = write!(
        b,
        "<p><span class=\"s-{}\">{}</span> {} &middot; image {} &middot; id {}{}{}{}</p><p>{}</p>",
        esc(&r.state),
        esc(&r.state),
        esc(&r.status),
        esc(&r.image),
        esc(short(&r.id)),
        if r.ports.is_empty() {
            String::new()
        } else {
            format!(" &middot; ports {}", esc(&r.ports))
        },
        if cpu.is_empty() {
            String::new()
        } else {
            format!(" &middot; CPU {cpu}")
        },
        if mem.is_empty() {
            String::new()
        } else {
            format!(" &middot; memory {mem}")
        },
        container_actions(r, csrf, &back)
    );
    let _ = write!(
        b,
        "<h2>Logs</h2><pre id=logs>{}</pre><p><a href=\"{}\">Refresh</a> \
         <span id=live class=m></span></p>\
         <details><summary>Inspect</summary><pre>{}</pre></details>\
         <script>(function(){{var l=document.getElementById('logs'),s=document.getElementById('live');\
         if(!window.EventSource)return;var e=new EventSource('/containers/{}/logs/stream');\
         e.onopen=function(){{s.textContent='following live'}};\
         e.onmessage=function(m){{l.textContent+=m.data+'\\n';l.scrollTop=l.scrollHeight}};\
         e.onerror=function(){{s.textContent='not following (reload to retry)';e.close()}};\
         l.scrollTop=l.scrollHeight}})()</script>",
        d.logs.iter().map(|l| esc(l) + "\n").collect::<String>(),
        esc(&back),
        esc(&d.inspect),
        esc(&r.id)
    );
    layout(&r.name, csrf, &b)
}

pub fn projects(projects: &[Project], csrf: &str) -> String {
    let mut b = String::new();
    if projects.is_empty() {
        b.push_str("<p>No compose projects (containers labelled com.docker.compose.project).</p>");
    }
    for p in projects {
        let running = p.containers.iter().filter(|c| c.state == "running").count();
        let _ = write!(
            b,
            "<h2>{} <span class=m>{running}/{} running</span></h2><p>{}</p><div class=tw><table>\
             <tr><th>Service</th><th>Container</th><th>State</th></tr>",
            esc(&p.name),
            p.containers.len(),
            buttons(
                &format!("/projects/{}", p.name),
                &[
                    ("up", "Up", false),
                    ("start", "Start all", false),
                    ("stop", "Stop all", false),
                    ("down", "Down", true)
                ],
                csrf,
                "/projects"
            ),
        );
        for c in &p.containers {
            let _ = write!(
                b,
                "<tr><td>{}</td><td><a href=\"/containers/{}\">{}</a></td>\
                 <td><span class=\"s-{}\">{}</span> <span class=m>{}</span></td></tr>",
                esc(c.service.as_deref().unwrap_or("")),
                esc(short(&c.id)),
                esc(&c.name),
                esc(&c.state),
                esc(&c.state),
                esc(&c.status)
            );
        }
        b.push_str("</table></div>");
    }
    layout("Compose projects", csrf, &b)
}

pub fn images(rows: &[ImageRow], csrf: &str, now_secs: i64) -> String {
    let mut b = format!(
        "<p>{}</p><div class=tw><table><tr><th>Tags</th><th>ID</th><th>Size</th>\
         <th class=hide-s>Created</th><th></th></tr>",
        button(
            "/images/prune",
            "Prune unused untagged images",
            csrf,
            "/images",
            true
        )
    );
    for i in rows {
        let tags = if i.tags.is_empty() {
            "&lt;none&gt;".to_string()
        } else {
            i.tags.iter().map(|t| esc(t)).collect::<Vec<_>>().join("<br>")
        };
        let _ = write!(
            b,
            "<tr><td>{tags}</td><td>{}</td><td>{}</td><td class=hide-s>{} ago</td><td>{}{}</td></tr>",
            esc(short(&i.id)),
            bytes(i.size),
            duration((now_secs - i.created).max(0) as u64),
            if i.in_use {
                "<span class=m>in use</span> "
            } else {
                ""
            },
            button(
                &format!("/images/{}/remove", i.id),
                "Remove",
                csrf,
                "/images",
                true
            )
        );
    }
    if rows.is_empty() {
        b.push_str("<tr><td colspan=5>No images.</td></tr>");
    }
    b.push_str("</table></div>");
    layout("Images", csrf, &b)
}

pub fn networks(rows: &[NetworkRow], csrf: &str) -> String {
    let mut b = format!(
        "<p>{}</p><div class=tw><table><tr><th>Name</th><th>Driver</th><th>Subnet</th>\
         <th>Containers</th><th></th></tr>",
        button(
            "/networks/prune",
            "Prune unused networks",
            csrf,
            "/networks",
            true
        )
    );
    for n in rows {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&n.name),
            esc(&n.driver),
            esc(&n.subnet),
            n.containers,
            if n.builtin {
                String::new()
            } else {
                button(
                    &format!("/networks/{}/remove", n.id),
                    "Remove",
                    csrf,
                    "/networks",
                    true,
                )
            }
        );
    }
    b.push_str("</table></div>");
    layout("Networks", csrf, &b)
}

pub fn volumes(rows: &[VolumeRow], csrf: &str) -> String {
    let mut b = format!(
        "<p>{}</p><div class=tw><table><tr><th>Name</th><th class=hide-s>Driver</th><th></th></tr>",
        button(
            "/volumes/prune",
            "Prune unused anonymous volumes",
            csrf,
            "/volumes",
            true
        )
    );
    for v in rows {
        let _ = write!(
            b,
            "<tr><td>{}{}</td><td class=hide-s>{}</td><td>{}</td></tr>",
            esc(&v.name),
            if v.anonymous {
                " <span class=m>(anonymous)</span>"
            } else {
                ""
            },
            esc(&v.driver),
            if v.in_use {
                "<span class=m>in use</span>".to_string()
            } else {
                button(
                    &format!("/volumes/{}/remove", v.name),
                    "Remove",
                    csrf,
                    "/volumes",
                    true,
                )
            }
        );
    }
    if rows.is_empty() {
        b.push_str("<tr><td colspan=3>No volumes.</td></tr>");
    }
    b.push_str("</table></div>");
    layout("Volumes", csrf, &b)
}

/// One event as a table row (also what the live feed inserts).
pub fn event_row(e: &Event) -> String {
    let name = e.attributes.get("name").map(String::as_str).unwrap_or("");
    let extra: Vec<String> = e
        .attributes
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "exitCode" | "signal" | "container" | "oldName"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "<tr><td class=m>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=m>{}</td></tr>",
        esc(&timefmt::format_nanos(e.time_nano)[..19].replace('T', " ")),
        esc(e.kind),
        esc(&e.action),
        esc(if name.is_empty() { short(&e.id) } else { name }),
        esc(&extra.join(" "))
    )
}

pub fn events(events: &[std::sync::Arc<Event>], csrf: &str) -> String {
    let mut b = String::from(
        "<p><a href=/events>Refresh</a> <span id=live class=m></span></p><div class=tw><table>\
         <thead><tr><th>Time (UTC)</th><th>Type</th><th>Action</th><th>Name</th><th></th></tr></thead><tbody id=ev>",
    );
    for e in events.iter().rev() {
        b.push_str(&event_row(e));
    }
    b.push_str(
        "</tbody></table></div><script>(function(){var t=document.getElementById('ev'),\
         s=document.getElementById('live');if(!window.EventSource)return;\
         var e=new EventSource('/events/stream');e.onopen=function(){s.textContent='live'};\
         e.onmessage=function(m){t.insertAdjacentHTML('afterbegin',m.data)};\
         e.onerror=function(){s.textContent='not live (reload to retry)';e.close()}})()</script>",
    );
    layout("Events", csrf, &b)
}

pub fn message(title: &str, text: &str, csrf: &str, back: &str) -> String {
    layout(
        title,
        csrf,
        &format!("<p>{}</p><p><a href=\"{}\">Back</a></p>", esc(text), esc(back)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn row(i: usize) -> ContainerRow {
        ContainerRow {
            id: format!("{i:064x}"),
            name: format!("service-{i}-<b>"),
            image: "registry.example/team/app:1.2.3".into(),
            state: if i.is_multiple_of(3) { "exited" } else { "running" }.into(),
            status: "Up 3 hours".into(),
            ports: "0.0.0.0:8080->80/tcp".into(),
            cpu_percent: Some(1.5),
            cpu_seconds: Some(12.0),
            memory: Some(12 << 20),
            project: Some(format!("p{}", i % 5)),
            service: Some(format!("svc{i}")),
        }
    }

    #[test]
    fn escaping_is_complete() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let html = containers(&[row(1)], "tok\"en");
        assert!(html.contains("service-1-&lt;b&gt;"));
        assert!(!html.contains("service-1-<b>"));
        assert!(html.contains("value=\"tok&quot;en\""));
    }

    #[test]
    fn actions_are_post_forms_with_csrf() {
        let html = containers(&[row(1), row(3)], "CSRF123");
        assert!(html.contains("action=\"/containers/") && html.contains("name=do value=stop"));
        assert!(html.contains("name=do value=start"));
        let forms = html.matches("<form").count();
        assert_eq!(forms, html.matches("name=csrf value=\"CSRF123\"").count());
        assert!(html.matches("method=post").count() == forms);
        assert!(html.contains("name=viewport"));
    }

    #[test]
    fn fifty_containers_render_fast_and_small() {
        let rows: Vec<ContainerRow> = (0..50).map(row).collect();
        let detail = Detail {
            row: row(1),
            inspect: "{\n  \"Id\": \"x\"\n}".repeat(60),
            logs: (0..100)
                .map(|i| format!("log line {i} with some text in it"))
                .collect(),
        };
        let ps = super::super::data::projects(&rows);
        let csrf = "c".repeat(64);
        let render = || {
            [
                containers(&rows, &csrf),
                projects(&ps, &csrf),
                container(&detail, &csrf),
                overview(&Overview::default(), &csrf),
            ]
        };
        // The best of a few runs: the machine may be busy with other work.
        let took = (0..5)
            .map(|_| {
                let t0 = Instant::now();
                std::hint::black_box(render());
                t0.elapsed()
            })
            .min()
            .unwrap();
        // (Not when emulated, as the foreign targets' unit tests are in CI.)
        let emulated = std::env::var("SHOAL_TEST_EMULATED").is_ok_and(|v| !v.is_empty());
        assert!(
            emulated || took.as_millis() <= 5,
            "rendering 4 pages took {took:?}"
        );
        let pages = render();
        for p in &pages {
            assert!(p.len() <= 50 * 1024, "page weighs {} bytes", p.len());
        }
    }

    #[test]
    fn units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(duration(90061), "1d 1h");
        assert_eq!(duration(3700), "1h 1m");
        assert_eq!(duration(42), "42s");
    }
}
