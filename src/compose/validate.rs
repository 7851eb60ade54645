//! Cross-references inside a project: every name a service uses must exist, and
//! `depends_on` must not loop.

use super::error::{ComposeError, Files};
use super::model::{MountType, Project};

pub fn validate(project: &Project, files: &Files) -> Result<(), ComposeError> {
    for (name, s) in &project.services {
        for (dep, d) in &s.depends_on {
            if !project.services.contains_key(dep) && d.required {
                let why = if project.disabled.contains(dep) {
                    "which is disabled by profiles"
                } else {
                    "which is not defined"
                };
                return Err(files.error(
                    d.pos,
                    &format!("services.{name}.depends_on"),
                    format!("service {name:?} depends on {dep:?}, {why}"),
                ));
            }
        }
        for net in s.networks.keys() {
            if !project.networks.contains_key(net) {
                return Err(files.error(
                    s.pos,
                    &format!("services.{name}.networks"),
                    format!("service {name:?} refers to undefined network {net:?}"),
                ));
            }
        }
        for m in &s.volumes {
            if m.kind == MountType::Volume {
                if let Some(src) = &m.source {
                    if !project.volumes.contains_key(src) {
                        return Err(files.error(
                            s.pos,
                            &format!("services.{name}.volumes"),
                            format!("service {name:?} refers to undefined volume {src:?}"),
                        ));
                    }
                }
            }
        }
        for (what, refs, defined) in [
            ("secret", &s.secrets, &project.secrets),
            ("config", &s.configs, &project.configs),
        ] {
            for r in refs {
                if !defined.contains_key(&r.source) {
                    return Err(files.error(
                        s.pos,
                        &format!("services.{name}.{what}s"),
                        format!("service {name:?} refers to undefined {what} {:?}", r.source),
                    ));
                }
            }
        }
        if let Some(mode) = &s.network_mode {
            if let Some(other) = mode.strip_prefix("service:") {
                if !project.services.contains_key(other) {
                    return Err(files.error(
                        s.pos,
                        &format!("services.{name}.network_mode"),
                        format!("service {other:?} is not defined"),
                    ));
                }
            }
        }
    }
    if let Some(cycle) = find_cycle(project) {
        let first = &project.services[&cycle[0]];
        let pos = first
            .depends_on
            .get(&cycle[1])
            .map(|d| d.pos)
            .unwrap_or(first.pos);
        return Err(files.error(
            pos,
            &format!("services.{}.depends_on", cycle[0]),
            format!("dependency cycle: {}", cycle.join(" -> ")),
        ));
    }
    Ok(())
}

/// A `depends_on` loop as the list of services around it (first repeated at the end).
pub fn find_cycle(project: &Project) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        p: &Project,
        name: &str,
        marks: &mut std::collections::BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(name).copied().unwrap_or(Mark::New) {
            Mark::Done => return None,
            Mark::Open => {
                let start = stack.iter().position(|s| s == name).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(name.to_string());
                return Some(cycle);
            }
            Mark::New => {}
        }
        marks.insert(name.to_string(), Mark::Open);
        stack.push(name.to_string());
        if let Some(s) = p.services.get(name) {
            for dep in s.depends_on.keys() {
                if let Some(c) = visit(p, dep, marks, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        marks.insert(name.to_string(), Mark::Done);
        None
    }
    let mut marks = std::collections::BTreeMap::new();
    for name in project.services.keys() {
        if let Some(c) = visit(project, name, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

/// Services in an order where each comes after what it depends on (names sorted otherwise).
pub fn start_order(project: &Project) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    fn add(p: &Project, name: &str, out: &mut Vec<String>, depth: usize) {
        if out.iter().any(|n| n == name) || depth > p.services.len() {
            return;
        }
        if let Some(s) = p.services.get(name) {
            for dep in s.depends_on.keys() {
                add(p, dep, out, depth + 1);
            }
            out.push(name.to_string());
        }
    }
    for name in project.services.keys() {
        add(project, name, &mut out, 0);
    }
    out
}
