//! `compose config`: the normalised model printed as YAML in docker compose v2's layout
//! (service keys sorted, long syntax everywhere, names and paths resolved).

use std::collections::BTreeMap;

use super::model::*;
use super::yaml::{Node, Value};

/// A YAML document to print.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    Seq(Vec<Out>),
    Map(Vec<(String, Out)>),
}

fn s(v: impl Into<String>) -> Out {
    Out::Str(v.into())
}

struct MapBuilder(Vec<(String, Out)>);

impl MapBuilder {
    fn new() -> Self {
        MapBuilder(Vec::new())
    }
    fn put(&mut self, k: &str, v: Out) -> &mut Self {
        self.0.push((k.to_string(), v));
        self
    }
    fn opt(&mut self, k: &str, v: &Option<String>) -> &mut Self {
        if let Some(v) = v {
            self.put(k, s(v.clone()));
        }
        self
    }
    fn flag(&mut self, k: &str, v: bool) -> &mut Self {
        if v {
            self.put(k, Out::Bool(true));
        }
        self
    }
    fn list(&mut self, k: &str, v: &[String]) -> &mut Self {
        if !v.is_empty() {
            self.put(k, Out::Seq(v.iter().map(|x| s(x.clone())).collect()));
        }
        self
    }
    fn dict(&mut self, k: &str, v: &BTreeMap<String, String>) -> &mut Self {
        if !v.is_empty() {
            self.put(
                k,
                Out::Map(v.iter().map(|(a, b)| (a.clone(), s(b.clone()))).collect()),
            );
        }
        self
    }
    fn done(&mut self) -> Out {
        Out::Map(std::mem::take(&mut self.0))
    }
}

/// A raw extension node as output.
pub fn node_out(n: &Node) -> Out {
    match &n.value {
        Value::Null => Out::Null,
        Value::Bool(b) => Out::Bool(*b),
        Value::Int(i) => Out::Int(*i),
        Value::Float(f) => s(f.to_string()),
        Value::Str(t) => s(t.clone()),
        Value::Seq(items) => Out::Seq(items.iter().map(node_out).collect()),
        Value::Map(m) => Out::Map(m.iter().map(|(k, v)| (k.name.clone(), node_out(v))).collect()),
    }
}

pub fn project_out(p: &Project) -> Out {
    let mut top = MapBuilder::new();
    top.put("name", s(p.name.clone()));
    top.put(
        "services",
        Out::Map(
            p.services
                .iter()
                .map(|(k, v)| (k.clone(), service_out(v)))
                .collect(),
        ),
    );
    if !p.networks.is_empty() {
        top.put(
            "networks",
            Out::Map(
                p.networks
                    .iter()
                    .map(|(k, n)| (k.clone(), network_out(n)))
                    .collect(),
            ),
        );
    }
    if !p.volumes.is_empty() {
        top.put(
            "volumes",
            Out::Map(
                p.volumes
                    .iter()
                    .map(|(k, v)| (k.clone(), volume_out(v)))
                    .collect(),
            ),
        );
    }
    for (key, objs) in [("secrets", &p.secrets), ("configs", &p.configs)] {
        if !objs.is_empty() {
            top.put(
                key,
                Out::Map(
                    objs.iter()
                        .map(|(k, o)| (k.clone(), file_object_out(o)))
                        .collect(),
                ),
            );
        }
    }
    for (k, v) in &p.extensions {
        top.put(k, node_out(v));
    }
    top.done()
}

/// One service; also the input of the config hash.
pub fn service_out(sv: &Service) -> Out {
    let mut entries: Vec<(String, Out)> = Vec::new();
    let mut put = |k: &str, v: Out| entries.push((k.to_string(), v));
    if let Some(b) = &sv.build {
        let mut m = MapBuilder::new();
        m.put("context", s(b.context.clone()));
        m.opt("dockerfile", &b.dockerfile);
        if !b.args.is_empty() {
            m.put("args", env_out(&b.args));
        }
        m.opt("target", &b.target);
        m.dict("labels", &b.labels);
        put("build", m.done());
    }
    let list = |v: &[String]| Out::Seq(v.iter().map(|x| s(x.clone())).collect());
    if !sv.cap_add.is_empty() {
        put("cap_add", list(&sv.cap_add));
    }
    if !sv.cap_drop.is_empty() {
        put("cap_drop", list(&sv.cap_drop));
    }
    if let Some(c) = &sv.command {
        put("command", list(c));
    }
    if !sv.configs.is_empty() {
        put("configs", Out::Seq(sv.configs.iter().map(file_ref_out).collect()));
    }
    if let Some(c) = &sv.container_name {
        put("container_name", s(c.clone()));
    }
    if !sv.depends_on.is_empty() {
        put(
            "depends_on",
            Out::Map(
                sv.depends_on
                    .iter()
                    .map(|(k, d)| {
                        let mut m = MapBuilder::new();
                        m.put("condition", s(d.condition.as_str()));
                        if d.restart {
                            m.put("restart", Out::Bool(true));
                        }
                        m.put("required", Out::Bool(d.required));
                        (k.clone(), m.done())
                    })
                    .collect(),
            ),
        );
    }
    if let Some(d) = &sv.deploy {
        put("deploy", deploy_out(d));
    }
    if !sv.dns.is_empty() {
        put("dns", list(&sv.dns));
    }
    if let Some(d) = &sv.domainname {
        put("domainname", s(d.clone()));
    }
    if let Some(e) = &sv.entrypoint {
        put("entrypoint", list(e));
    }
    if !sv.env_file.is_empty() {
        put("env_file", list(&sv.env_file));
    }
    if !sv.environment.is_empty() {
        put("environment", env_out(&sv.environment));
    }
    if !sv.expose.is_empty() {
        put("expose", list(&sv.expose));
    }
    if !sv.extra_hosts.is_empty() {
        put("extra_hosts", list(&sv.extra_hosts));
    }
    if let Some(h) = &sv.healthcheck {
        let mut m = MapBuilder::new();
        m.list("test", &h.test);
        m.opt("timeout", &h.timeout).opt("interval", &h.interval);
        if let Some(r) = h.retries {
            m.put("retries", Out::Int(r as i64));
        }
        m.opt("start_period", &h.start_period)
            .opt("start_interval", &h.start_interval)
            .flag("disable", h.disable);
        put("healthcheck", m.done());
    }
    if let Some(h) = &sv.hostname {
        put("hostname", s(h.clone()));
    }
    if let Some(i) = &sv.image {
        put("image", s(i.clone()));
    }
    if let Some(i) = sv.init {
        put("init", Out::Bool(i));
    }
    if !sv.labels.is_empty() {
        put(
            "labels",
            Out::Map(sv.labels.iter().map(|(k, v)| (k.clone(), s(v.clone()))).collect()),
        );
    }
    if let Some(n) = &sv.network_mode {
        put("network_mode", s(n.clone()));
    } else {
        let nets: Vec<(String, Out)> = if sv.networks.is_empty() {
            vec![("default".into(), Out::Null)]
        } else {
            sv.networks
                .iter()
                .map(|(k, n)| {
                    let v = match n {
                        None => Out::Null,
                        Some(n) => {
                            let mut m = MapBuilder::new();
                            m.list("aliases", &n.aliases).opt("ipv4_address", &n.ipv4_address);
                            m.done()
                        }
                    };
                    (k.clone(), v)
                })
                .collect()
        };
        put("networks", Out::Map(nets));
    }
    if !sv.ports.is_empty() {
        put("ports", Out::Seq(sv.ports.iter().map(port_out).collect()));
    }
    if sv.privileged {
        put("privileged", Out::Bool(true));
    }
    if !sv.profiles.is_empty() {
        put("profiles", list(&sv.profiles));
    }
    if let Some(p) = &sv.pull_policy {
        put("pull_policy", s(p.clone()));
    }
    if sv.read_only {
        put("read_only", Out::Bool(true));
    }
    if let Some(r) = &sv.restart {
        put("restart", s(r.clone()));
    }
    if let Some(sc) = sv.scale {
        put("scale", Out::Int(sc as i64));
    }
    if !sv.secrets.is_empty() {
        put("secrets", Out::Seq(sv.secrets.iter().map(file_ref_out).collect()));
    }
    if sv.stdin_open {
        put("stdin_open", Out::Bool(true));
    }
    if let Some(g) = &sv.stop_grace_period {
        put("stop_grace_period", s(g.clone()));
    }
    if let Some(g) = &sv.stop_signal {
        put("stop_signal", s(g.clone()));
    }
    if !sv.tmpfs.is_empty() {
        put("tmpfs", list(&sv.tmpfs));
    }
    if sv.tty {
        put("tty", Out::Bool(true));
    }
    if let Some(u) = &sv.user {
        put("user", s(u.clone()));
    }
    if !sv.volumes.is_empty() {
        put("volumes", Out::Seq(sv.volumes.iter().map(mount_out).collect()));
    }
    if let Some(w) = &sv.working_dir {
        put("working_dir", s(w.clone()));
    }
    for (k, v) in &sv.extensions {
        put(k, node_out(v));
    }
    Out::Map(entries)
}

fn env_out(env: &BTreeMap<String, Option<String>>) -> Out {
    Out::Map(
        env.iter()
            .map(|(k, v)| (k.clone(), v.clone().map(Out::Str).unwrap_or(Out::Null)))
            .collect(),
    )
}

fn port_out(p: &Port) -> Out {
    let mut m = MapBuilder::new();
    m.opt("name", &p.name);
    m.put("mode", s(p.mode.clone()));
    m.opt("host_ip", &p.host_ip);
    m.put("target", Out::Int(p.target as i64));
    m.opt("published", &p.published);
    m.put("protocol", s(p.protocol.clone()));
    m.done()
}

fn mount_out(v: &Mount) -> Out {
    let mut m = MapBuilder::new();
    m.put("type", s(v.kind.as_str()));
    m.opt("source", &v.source);
    m.put("target", s(v.target.clone()));
    m.flag("read_only", v.read_only);
    match v.kind {
        MountType::Bind => {
            m.put(
                "bind",
                Out::Map(vec![("create_host_path".into(), Out::Bool(v.create_host_path))]),
            );
        }
        MountType::Volume => {
            m.put(
                "volume",
                Out::Map(if v.nocopy {
                    vec![("nocopy".into(), Out::Bool(true))]
                } else {
                    Vec::new()
                }),
            );
        }
        MountType::Tmpfs => {
            if let Some(size) = v.tmpfs_size {
                m.put("tmpfs", Out::Map(vec![("size".into(), Out::Int(size as i64))]));
            }
        }
    }
    m.done()
}

fn file_ref_out(r: &FileRef) -> Out {
    let mut m = MapBuilder::new();
    m.put("source", s(r.source.clone()));
    m.opt("target", &r.target).opt("uid", &r.uid).opt("gid", &r.gid);
    if let Some(mode) = r.mode {
        m.put("mode", Out::Int(mode as i64));
    }
    m.done()
}

fn resources_out(r: &Resources) -> Option<Out> {
    if r == &Resources::default() {
        return None;
    }
    let mut m = MapBuilder::new();
    m.opt("cpus", &r.cpus);
    if let Some(mem) = r.memory {
        m.put("memory", s(mem.to_string()));
    }
    if let Some(p) = r.pids {
        m.put("pids", Out::Int(p));
    }
    Some(m.done())
}

fn deploy_out(d: &Deploy) -> Out {
    let mut m = MapBuilder::new();
    if let Some(r) = d.replicas {
        m.put("replicas", Out::Int(r as i64));
    }
    let mut res = MapBuilder::new();
    if let Some(l) = resources_out(&d.limits) {
        res.put("limits", l);
    }
    if let Some(l) = resources_out(&d.reservations) {
        res.put("reservations", l);
    }
    let res = res.done();
    if res != Out::Map(Vec::new()) {
        m.put("resources", res);
    }
    if let Some(rp) = &d.restart_policy {
        let mut r = MapBuilder::new();
        r.opt("condition", &rp.condition).opt("delay", &rp.delay);
        if let Some(a) = rp.max_attempts {
            r.put("max_attempts", Out::Int(a as i64));
        }
        r.opt("window", &rp.window);
        m.put("restart_policy", r.done());
    }
    m.done()
}

fn network_out(n: &Network) -> Out {
    let mut m = MapBuilder::new();
    m.put("name", s(n.name.clone()));
    m.opt("driver", &n.driver).dict("driver_opts", &n.driver_opts);
    if !n.ipam.is_empty() || n.ipam_driver.is_some() {
        let mut ipam = MapBuilder::new();
        ipam.opt("driver", &n.ipam_driver);
        if !n.ipam.is_empty() {
            ipam.put(
                "config",
                Out::Seq(
                    n.ipam
                        .iter()
                        .map(|c| {
                            let mut cm = MapBuilder::new();
                            cm.opt("subnet", &c.subnet)
                                .opt("gateway", &c.gateway)
                                .opt("ip_range", &c.ip_range);
                            cm.done()
                        })
                        .collect(),
                ),
            );
        }
        m.put("ipam", ipam.done());
    }
    m.flag("internal", n.internal)
        .flag("external", n.external)
        .flag("attachable", n.attachable)
        .flag("enable_ipv6", n.enable_ipv6);
    m.dict("labels", &n.labels);
    m.done()
}

fn volume_out(v: &Volume) -> Out {
    let mut m = MapBuilder::new();
    m.put("name", s(v.name.clone()));
    m.opt("driver", &v.driver)
        .dict("driver_opts", &v.driver_opts)
        .flag("external", v.external)
        .dict("labels", &v.labels);
    m.done()
}

fn file_object_out(o: &FileObject) -> Out {
    let mut m = MapBuilder::new();
    m.put("name", s(o.name.clone()));
    m.opt("file", &o.file)
        .opt("environment", &o.environment)
        .opt("content", &o.content)
        .flag("external", o.external);
    m.done()
}

/// Prints a document: two-space indents, sequences indented under their key, strings quoted
/// only where YAML would read them as something else.
pub fn to_yaml(out: &Out) -> String {
    let mut text = String::new();
    write_value(out, 0, &mut text, true);
    text
}

fn write_value(out: &Out, indent: usize, text: &mut String, top: bool) {
    match out {
        Out::Map(entries) if !entries.is_empty() => {
            if !top {
                text.push('\n');
            }
            for (k, v) in entries {
                text.push_str(&" ".repeat(indent));
                text.push_str(&scalar(k));
                text.push(':');
                write_child(v, indent + 2, text);
            }
        }
        Out::Seq(items) if !items.is_empty() => {
            if !top {
                text.push('\n');
            }
            for item in items {
                text.push_str(&" ".repeat(indent));
                text.push_str("- ");
                write_seq_item(item, indent + 2, text);
            }
        }
        other => {
            text.push_str(&inline(other));
            text.push('\n');
        }
    }
}

/// The value after `key:`.
fn write_child(v: &Out, indent: usize, text: &mut String) {
    match v {
        Out::Map(e) if !e.is_empty() => write_value(v, indent, text, false),
        Out::Seq(e) if !e.is_empty() => write_value(v, indent, text, false),
        other => {
            text.push(' ');
            text.push_str(&inline(other));
            text.push('\n');
        }
    }
}

/// The value after `- `: a mapping starts on the dash's line.
fn write_seq_item(v: &Out, indent: usize, text: &mut String) {
    match v {
        Out::Map(entries) if !entries.is_empty() => {
            for (i, (k, val)) in entries.iter().enumerate() {
                if i > 0 {
                    text.push_str(&" ".repeat(indent));
                }
                text.push_str(&scalar(k));
                text.push(':');
                write_child(val, indent + 2, text);
            }
        }
        Out::Seq(items) if !items.is_empty() => {
            // Nested sequences are rare in compose; print them in flow style.
            text.push_str(&inline(v));
            let _ = items;
            text.push('\n');
        }
        other => {
            text.push_str(&inline(other));
            text.push('\n');
        }
    }
}

fn inline(v: &Out) -> String {
    match v {
        Out::Null => "null".into(),
        Out::Bool(b) => b.to_string(),
        Out::Int(i) => i.to_string(),
        Out::Str(t) => scalar(t),
        Out::Seq(items) => format!("[{}]", items.iter().map(inline).collect::<Vec<_>>().join(", ")),
        Out::Map(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, v)| format!("{}: {}", scalar(k), inline(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A string scalar, double-quoted when plain style would change its meaning.
pub fn scalar(t: &str) -> String {
    if needs_quotes(t) {
        let mut q = String::from("\"");
        for c in t.chars() {
            match c {
                '"' => q.push_str("\\\""),
                '\\' => q.push_str("\\\\"),
                '\n' => q.push_str("\\n"),
                '\t' => q.push_str("\\t"),
                '\r' => q.push_str("\\r"),
                c if (c as u32) < 0x20 => q.push_str(&format!("\\x{:02x}", c as u32)),
                c => q.push(c),
            }
        }
        q.push('"');
        q
    } else {
        t.to_string()
    }
}

fn needs_quotes(t: &str) -> bool {
    if t.is_empty() || t.trim() != t {
        return true;
    }
    let lower = t.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "null" | "~" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    ) {
        return true;
    }
    if t.parse::<f64>().is_ok()
        || t.parse::<i64>().is_ok()
        || lower.starts_with("0x")
        || lower.starts_with("0o")
        || lower == ".inf"
        || lower == "-.inf"
        || lower == ".nan"
    {
        return true;
    }
    let mut chars = t.chars();
    let first = chars.next().unwrap_or(' ');
    let second = chars.next().unwrap_or(' ');
    // `-x`, `?x` and `:x` stay plain (as go-yaml prints `-c`); a following space would not.
    if "-?:".contains(first) && second == ' ' || t == "-" || ",[]{}#&*!|>'\"%@`".contains(first) {
        return true;
    }
    t.contains(": ") || t.contains(" #") || t.ends_with(':') || t.chars().any(|c| c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_quoting() {
        let doc = Out::Map(vec![
            ("name".into(), s("p")),
            (
                "list".into(),
                Out::Seq(vec![
                    Out::Map(vec![
                        ("target".into(), Out::Int(80)),
                        ("published".into(), s("8080")),
                    ]),
                    s("plain"),
                ]),
            ),
            ("empty".into(), Out::Map(vec![])),
            ("x".into(), Out::Null),
            ("q".into(), s("a: b")),
            ("t".into(), s("true")),
            ("m".into(), s("line1\nline2")),
        ]);
        assert_eq!(
            to_yaml(&doc),
            "name: p\nlist:\n  - target: 80\n    published: \"8080\"\n  - plain\nempty: {}\nx: null\nq: \"a: b\"\nt: \"true\"\nm: \"line1\\nline2\"\n"
        );
    }
}
