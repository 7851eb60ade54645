//! Merging compose trees: several `-f` files, and a service over the one it `extends`.
//!
//! Reference: compose-spec "Merge and override". Mappings merge key by key, scalars are
//! replaced, and sequences follow the field's rule: `command`, `entrypoint` and
//! `healthcheck.test` are replaced; `ports`, `expose`, `dns`, `cap_add`, `cap_drop`,
//! `env_file`, `profiles`, `tmpfs` are appended without duplicates; `volumes`, `secrets`
//! and `configs` are merged by their target; `environment`, `labels`, `depends_on`,
//! `networks`, `extra_hosts` are merged as mappings whichever syntax each file used.

use super::yaml::{Key, Node, Value};

/// Fields whose list form is turned into a mapping before merging.
const MAPPING_FIELDS: &[&str] = &[
    "environment",
    "labels",
    "depends_on",
    "networks",
    "extra_hosts",
    "sysctls",
];
/// Fields whose sequences are replaced rather than merged.
const REPLACED: &[&str] = &["command", "entrypoint"];
/// Fields merged by the target path each entry mounts at.
const BY_TARGET: &[&str] = &["volumes", "secrets", "configs", "devices"];

/// `[A=1, B]` → `{A: "1", B: null}`; `[svc]` → `{svc: null}`. Mappings stay as they are.
pub fn list_to_mapping(node: &Node) -> Node {
    let Some(items) = node.as_seq() else {
        return node.clone();
    };
    let mut entries: Vec<(Key, Node)> = Vec::new();
    for item in items {
        let Some(text) = item.scalar_text() else { continue };
        let (k, v) = match text.split_once('=') {
            Some((k, v)) => (
                k.to_string(),
                Node {
                    value: Value::Str(v.to_string()),
                    pos: item.pos,
                },
            ),
            None => (
                text.clone(),
                Node {
                    value: Value::Null,
                    pos: item.pos,
                },
            ),
        };
        entries.retain(|(ek, _)| ek.name != k);
        entries.push((
            Key {
                name: k,
                pos: item.pos,
            },
            v,
        ));
    }
    Node {
        value: Value::Map(entries),
        pos: node.pos,
    }
}

/// Normalises the list-or-mapping fields of one service so two files can be merged.
pub fn prepare_service(service: &mut Node) {
    for field in MAPPING_FIELDS {
        if *field == "extra_hosts" {
            continue;
        }
        if let Some(v) = service.get_mut(field) {
            if v.as_seq().is_some() {
                *v = list_to_mapping(v);
            }
        }
    }
}

/// Merges `over` onto `base` as top-level compose files.
pub fn merge_files(base: &mut Node, over: &Node) {
    let Some(entries) = over.as_map() else { return };
    for (k, v) in entries {
        match k.name.as_str() {
            "services" => {
                let services = ensure_map(base, "services", k);
                for (sk, sv) in v.as_map().unwrap_or_default() {
                    let mut sv = sv.clone();
                    prepare_service(&mut sv);
                    match services.get_mut(&sk.name) {
                        Some(existing) => {
                            prepare_service(existing);
                            merge_service(existing, &sv);
                        }
                        None => push(services, sk, sv),
                    }
                }
            }
            _ => match base.get_mut(&k.name) {
                Some(existing) => merge_plain(existing, v),
                None => push(base, k, v.clone()),
            },
        }
    }
}

fn ensure_map<'a>(node: &'a mut Node, key: &str, at: &Key) -> &'a mut Node {
    if node.get(key).is_none_or(|n| n.as_map().is_none()) {
        node.set(
            key,
            Node {
                value: Value::Map(Vec::new()),
                pos: at.pos,
            },
        );
    }
    node.get_mut(key).expect("just set")
}

fn push(map: &mut Node, key: &Key, value: Node) {
    if let Value::Map(m) = &mut map.value {
        m.push((key.clone(), value));
    }
}

/// Merges one service definition onto another with the per-field rules.
pub fn merge_service(base: &mut Node, over: &Node) {
    let Some(entries) = over.as_map() else { return };
    for (k, v) in entries {
        let name = k.name.as_str();
        let Some(existing) = base.get_mut(name) else {
            push(base, k, v.clone());
            continue;
        };
        if REPLACED.contains(&name) || v.is_null() {
            *existing = v.clone();
        } else if BY_TARGET.contains(&name) {
            merge_by_target(existing, v);
        } else if name == "healthcheck" {
            merge_plain(existing, v);
        } else if name == "build" || name == "extends" {
            // `build: .` over a mapping (or the reverse) replaces it only in its context.
            match (&mut existing.value, &v.value) {
                (Value::Map(_), Value::Map(_)) => merge_plain(existing, v),
                (Value::Map(_), Value::Str(_)) => existing.set("context", v.clone()),
                _ => *existing = v.clone(),
            }
        } else {
            merge_plain(existing, v);
        }
    }
}

/// Generic rule: mappings merge, sequences append unique entries, scalars are replaced.
fn merge_plain(base: &mut Node, over: &Node) {
    match (&mut base.value, &over.value) {
        (Value::Map(_), Value::Map(entries)) => {
            for (k, v) in entries {
                match base.get_mut(&k.name) {
                    Some(existing) => merge_plain(existing, v),
                    None => push(base, k, v.clone()),
                }
            }
        }
        (Value::Seq(items), Value::Seq(more)) => {
            for m in more {
                if !items.iter().any(|i| same_value(i, m)) {
                    items.push(m.clone());
                }
            }
        }
        _ => *base = over.clone(),
    }
}

/// Structural equality that ignores where a value was written.
fn same_value(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Seq(x), Value::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| p.0.name == q.0.name && same_value(&p.1, &q.1))
        }
        (x, y) => x == y,
    }
}

/// The path an entry of `volumes`/`secrets`/`configs` occupies in the container.
fn target_of(node: &Node) -> Option<String> {
    if let Some(t) = node.get("target").and_then(Node::scalar_text) {
        return Some(t);
    }
    if let Some(source) = node.get("source").and_then(Node::scalar_text) {
        return Some(source);
    }
    let text = node.scalar_text()?;
    let parts: Vec<&str> = text.split(':').collect();
    Some(match parts.len() {
        1 => parts[0].to_string(),
        _ => parts[1].to_string(),
    })
}

fn merge_by_target(base: &mut Node, over: &Node) {
    let (Value::Seq(items), Some(more)) = (&mut base.value, over.as_seq()) else {
        *base = over.clone();
        return;
    };
    for m in more {
        let t = target_of(m);
        match items.iter_mut().find(|i| t.is_some() && target_of(i) == t) {
            Some(slot) => *slot = m.clone(),
            None => items.push(m.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::yaml::parse;

    fn merged(a: &str, b: &str) -> Node {
        let mut base = parse(a, 0, "a").unwrap();
        merge_files(&mut base, &parse(b, 1, "b").unwrap());
        base
    }

    fn texts(n: &Node) -> Vec<String> {
        n.as_seq()
            .unwrap()
            .iter()
            .map(|i| i.scalar_text().unwrap_or_else(|| format!("{:?}", i.value)))
            .collect()
    }

    #[test]
    fn override_file_rules() {
        let root = merged(
            "services:\n  web:\n    image: a\n    command: [x, y]\n    ports: ['80:80']\n    environment: [A=1, B=2]\n    volumes: ['d:/data', '/h:/logs']\n",
            "services:\n  web:\n    image: b\n    command: [z]\n    ports: ['80:80', '443:443']\n    environment: {B: '3', C: '4'}\n    volumes: ['e:/data']\n  db:\n    image: pg\n",
        );
        let web = root.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.get("image").unwrap().scalar_text().unwrap(), "b");
        assert_eq!(texts(web.get("command").unwrap()), ["z"]);
        assert_eq!(texts(web.get("ports").unwrap()), ["80:80", "443:443"]);
        let env = web.get("environment").unwrap();
        let pairs: Vec<(String, String)> = env
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.name.clone(), v.scalar_text().unwrap()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("A".into(), "1".into()),
                ("B".into(), "3".into()),
                ("C".into(), "4".into())
            ]
        );
        assert_eq!(texts(web.get("volumes").unwrap()), ["e:/data", "/h:/logs"]);
        assert!(root.get("services").unwrap().get("db").is_some());
    }
}
