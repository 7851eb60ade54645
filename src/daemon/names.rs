//! Container names and IDs: generated names like docker's (`adjective_surname`), name
//! validation, and resolution of a user's reference (full ID, name, or unique ID prefix).

const ADJECTIVES: &[&str] = &[
    "admiring",
    "brave",
    "busy",
    "calm",
    "clever",
    "cool",
    "dazzling",
    "eager",
    "elastic",
    "epic",
    "focused",
    "friendly",
    "gallant",
    "happy",
    "hopeful",
    "jolly",
    "keen",
    "kind",
    "lucid",
    "modest",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "tender",
    "upbeat",
    "vibrant",
    "wizardly",
    "youthful",
    "zealous",
];

const SURNAMES: &[&str] = &[
    "agnesi", "babbage", "bohr", "curie", "darwin", "dijkstra", "einstein", "euler", "fermi", "galileo",
    "goldberg", "hamilton", "hopper", "hypatia", "johnson", "kepler", "knuth", "lamport", "liskov",
    "lovelace", "maxwell", "meitner", "noether", "pascal", "ritchie", "shannon", "thompson", "torvalds",
    "turing", "wozniak",
];

/// A docker-style name from 64 random bits; `attempt` > 0 appends a digit, as docker does on
/// a collision.
pub fn generate(random: u64, attempt: u32) -> String {
    let a = ADJECTIVES[(random % ADJECTIVES.len() as u64) as usize];
    let s = SURNAMES[((random >> 32) % SURNAMES.len() as u64) as usize];
    if attempt == 0 {
        format!("{a}_{s}")
    } else {
        format!("{a}_{s}{}", (random >> 16) % 10 + u64::from(attempt))
    }
}

/// Docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, a leading `/` allowed.
pub fn validate(name: &str) -> Result<&str, String> {
    let n = name.strip_prefix('/').unwrap_or(name);
    let mut chars = n.chars();
    let ok = n.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(n)
    } else {
        Err(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        ))
    }
}

/// A new 64-hex-character ID.
pub fn new_id() -> std::io::Result<String> {
    let mut buf = [0u8; 32];
    crate::sys::fill_id_bytes(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// 64 random bits for name generation.
pub fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    let _ = crate::sys::fill_id_bytes(&mut buf);
    u64::from_le_bytes(buf)
}

/// What a reference matched.
#[derive(Debug, PartialEq)]
pub enum Lookup<'a> {
    Found(&'a str),
    Missing,
    Ambiguous,
}

/// Resolve `reference` among `(id, name)` pairs as dockerd does: full ID, then exact name,
/// then a unique ID prefix.
pub fn resolve<'a>(reference: &str, entries: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Lookup<'a> {
    let name = reference.strip_prefix('/').unwrap_or(reference);
    if reference.is_empty() {
        return Lookup::Missing;
    }
    if let Some((id, _)) = entries.clone().find(|(id, _)| *id == reference) {
        return Lookup::Found(id);
    }
    if let Some((id, _)) = entries.clone().find(|(_, n)| *n == name) {
        return Lookup::Found(id);
    }
    let mut found = entries.filter(|(id, _)| id.starts_with(reference));
    match (found.next(), found.next()) {
        (Some((id, _)), None) => Lookup::Found(id),
        (Some(_), Some(_)) => Lookup::Ambiguous,
        _ => Lookup::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_valid() {
        for r in [0u64, 1, u64::MAX, 0xdead_beef_cafe_f00d] {
            for attempt in 0..3 {
                let n = generate(r, attempt);
                assert!(validate(&n).is_ok(), "{n}");
            }
        }
    }

    #[test]
    fn validates_names_like_docker() {
        assert_eq!(validate("/web"), Ok("web"));
        assert_eq!(validate("db-1.local_x"), Ok("db-1.local_x"));
        assert!(validate("a").is_err());
        assert!(validate("-x").is_err());
        assert!(validate("bad name").is_err());
        assert!(validate("").is_err());
    }

    #[test]
    fn resolves_id_name_and_prefix() {
        let list = [("abc123", "web"), ("abd456", "db"), ("fff000", "abc")];
        let it = list.iter().map(|(a, b)| (*a, *b));
        assert_eq!(resolve("abc123", it.clone()), Lookup::Found("abc123"));
        assert_eq!(resolve("web", it.clone()), Lookup::Found("abc123"));
        assert_eq!(resolve("/db", it.clone()), Lookup::Found("abd456"));
        // An exact name wins over an ID prefix.
        assert_eq!(resolve("abc", it.clone()), Lookup::Found("fff000"));
        assert_eq!(resolve("ab", it.clone()), Lookup::Ambiguous);
        assert_eq!(resolve("abd", it.clone()), Lookup::Found("abd456"));
        assert_eq!(resolve("zzz", it.clone()), Lookup::Missing);
        assert_eq!(resolve("", it), Lookup::Missing);
    }
}
