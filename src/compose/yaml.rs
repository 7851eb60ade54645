//! A compose file as a position-carrying YAML tree.
//!
//! serde-saphyr does the YAML work (anchors, aliases, `<<` merge keys) under a budget, so an
//! alias bomb or an absurdly deep or large file is refused instead of eating the board's
//! memory. Every node keeps the line and column it was written at, which is what lets later
//! stages name the exact spot of a bad value.
//!
//! Cost: about 490 KiB of a release binary (opt-level z, LTO, stripped, x86_64), measured as
//! a serde_json-only program against the same program parsing YAML with serde-saphyr's
//! `deserialize` feature (which brings granit-parser and annotate-snippets).

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Budget, Options, Spanned};

use super::error::{ComposeError, Pos};

/// Compose files larger than this are refused before parsing: real ones are a few KiB.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in file order; YAML keys are strings in compose.
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

impl Node {
    pub fn new(value: Value) -> Node {
        Node {
            value,
            pos: Pos::NONE,
        }
    }
    pub fn str(s: impl Into<String>) -> Node {
        Node::new(Value::Str(s.into()))
    }
    pub fn map(entries: Vec<(&str, Node)>) -> Node {
        Node::new(Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    (
                        Key {
                            name: k.to_string(),
                            pos: Pos::NONE,
                        },
                        v,
                    )
                })
                .collect(),
        ))
    }
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }
    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match &mut self.value {
            Value::Map(m) => m.iter_mut().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }
    /// Sets `key`, replacing an existing entry in place or appending.
    pub fn set(&mut self, key: &str, value: Node) {
        if let Value::Map(m) = &mut self.value {
            if let Some(slot) = m.iter_mut().find(|(k, _)| k.name == key) {
                slot.1 = value;
            } else {
                m.push((
                    Key {
                        name: key.to_string(),
                        pos: value.pos,
                    },
                    value,
                ));
            }
        }
    }
    pub fn remove(&mut self, key: &str) -> Option<Node> {
        if let Value::Map(m) = &mut self.value {
            let i = m.iter().position(|(k, _)| k.name == key)?;
            return Some(m.remove(i).1);
        }
        None
    }
    /// The scalar as text, the way compose reads scalars where a string is expected.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }
    /// The YAML type's name, for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Seq(_) => "sequence",
            Value::Map(_) => "mapping",
        }
    }
    fn set_file(&mut self, file: u32) {
        self.pos.file = file;
        match &mut self.value {
            Value::Seq(s) => s.iter_mut().for_each(|n| n.set_file(file)),
            Value::Map(m) => m.iter_mut().for_each(|(k, v)| {
                k.pos.file = file;
                v.set_file(file)
            }),
            _ => {}
        }
    }
}

fn pos_of(loc: &serde_saphyr::Location) -> Pos {
    Pos {
        file: 0,
        line: loc.line() as u32,
        col: loc.column() as u32,
    }
}

/// Limits for compose files: small enough that a hostile file cannot exhaust a board.
fn options() -> Options {
    let mut budget = Budget::default();
    budget.max_events = 200_000;
    budget.max_aliases = 2_000;
    budget.max_anchors = 2_000;
    budget.max_recorded_anchor_events = 100_000;
    budget.max_recorded_anchor_bytes = 4 * 1024 * 1024;
    budget.max_depth = 48;
    budget.max_documents = 1;
    budget.max_nodes = 100_000;
    budget.max_total_scalar_bytes = 8 * 1024 * 1024;
    budget.max_merge_keys = 2_000;
    let mut options = Options::default();
    options.budget = Some(budget);
    options
}

/// Parses one compose file; `file` is its index for positions, `name` is used in errors.
pub fn parse(text: &str, file: u32, name: &str) -> Result<Node, ComposeError> {
    let at = |line: u32, col: u32, message: String| ComposeError {
        file: name.to_string(),
        line,
        col,
        key: String::new(),
        message,
    };
    if text.len() > MAX_FILE_BYTES {
        return Err(at(
            0,
            0,
            format!(
                "file is {} bytes, more than the {MAX_FILE_BYTES} allowed",
                text.len()
            ),
        ));
    }
    if text.trim().is_empty() {
        return Err(at(0, 0, "empty compose file".into()));
    }
    let mut root: Node = match serde_saphyr::from_str_with_options::<Node>(text, options()) {
        Ok(n) => n,
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|l| (l.line() as u32, l.column() as u32))
                .unwrap_or((0, 0));
            // The crate's Display includes a source snippet; the first line is the reason.
            let text = e.to_string();
            let reason = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid YAML")
                .trim();
            return Err(at(line, col, reason.to_string()));
        }
    };
    root.set_file(file);
    if root.as_map().is_none() {
        return Err(at(
            root.pos.line,
            root.pos.col,
            format!("top level must be a mapping, not a {}", root.kind()),
        ));
    }
    Ok(root)
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            value: s.value,
            pos: pos_of(&s.referenced),
        })
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<KeyText>::deserialize(d)?;
        Ok(Key {
            name: s.value.0,
            pos: pos_of(&s.referenced),
        })
    }
}

/// A mapping key: compose keys are strings, but `80: x` or `true: x` are read as their text.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Str(s) => Ok(KeyText(s)),
            Value::Int(i) => Ok(KeyText(i.to_string())),
            Value::Bool(b) => Ok(KeyText(b.to_string())),
            Value::Float(f) => Ok(KeyText(f.to_string())),
            Value::Null => Ok(KeyText(String::new())),
            _ => Err(serde::de::Error::custom("mapping keys must be scalars")),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
                Value::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
                i64::try_from(v)
                    .map(Value::Int)
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
                Ok(Value::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Value, E> {
                Ok(Value::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                let mut out = Vec::new();
                while let Some(n) = a.next_element::<Node>()? {
                    out.push(n);
                }
                Ok(Value::Seq(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                let mut out: Vec<(Key, Node)> = Vec::new();
                while let Some(k) = a.next_key::<Key>()? {
                    let v = a.next_value::<Node>()?;
                    // Keys from a `<<` merge come first only if not set: the crate resolves
                    // that; a plain duplicate in one mapping is rejected by the crate.
                    if let Some(slot) = out.iter_mut().find(|(ok, _)| ok.name == k.name) {
                        slot.1 = v;
                    } else {
                        out.push((k, v));
                    }
                }
                Ok(Value::Map(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_anchors_and_merge_keys() {
        let text =
            "x-base: &base\n  restart: always\n  image: a\nservices:\n  web:\n    <<: *base\n    image: b\n";
        let root = parse(text, 3, "c.yml").unwrap();
        let web = root.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.get("image").unwrap().value, Value::Str("b".into()));
        assert_eq!(web.get("restart").unwrap().value, Value::Str("always".into()));
        let image = web.get("image").unwrap();
        assert_eq!((image.pos.file, image.pos.line, image.pos.col), (3, 7, 12));
    }

    #[test]
    fn scalar_types_are_kept() {
        let root = parse("a: 1\nb: '1'\nc: true\nd: ~\ne: 1.5\n", 0, "f").unwrap();
        assert_eq!(root.get("a").unwrap().value, Value::Int(1));
        assert_eq!(root.get("b").unwrap().value, Value::Str("1".into()));
        assert_eq!(root.get("c").unwrap().value, Value::Bool(true));
        assert!(root.get("d").unwrap().is_null());
        assert_eq!(root.get("e").unwrap().value, Value::Float(1.5));
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse(&text, 0, "bomb.yml").unwrap_err();
        assert_eq!(e.file, "bomb.yml");
    }

    #[test]
    fn huge_and_bad_files_are_refused_with_a_place() {
        let big = "a: b\n".repeat(MAX_FILE_BYTES / 4);
        assert!(parse(&big, 0, "big.yml")
            .unwrap_err()
            .message
            .contains("more than"));
        let e = parse("services:\n  web:\n    image: [a\n", 0, "bad.yml").unwrap_err();
        assert!(e.line >= 3, "{e}");
        let e = parse("- a\n- b\n", 0, "list.yml").unwrap_err();
        assert!(e.message.contains("mapping"), "{e}");
    }
}
