//! Image references (`busybox`, `busybox:1.36`, `registry.lan:5000/team/app:v2`,
//! `busybox@sha256:…`), parsed with Docker's grammar and normalised the way Docker does:
//! a missing registry means `docker.io`, a single-component name on Docker Hub gets `library/`,
//! a missing tag (without a digest) means `latest`.
//!
//! Pure: no I/O. Every rejection says which part of the reference was wrong.

use std::fmt;

/// The registry a reference without one points at.
pub const DEFAULT_REGISTRY: &str = "docker.io";
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
const OFFICIAL_NAMESPACE: &str = "library";
/// Docker's limit on the repository part (registry and path), in bytes.
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with port if any (`docker.io`, `localhost:5000`).
    pub registry: String,
    /// Repository path inside the registry (`library/busybox`, `team/app`).
    pub path: String,
    /// The tag; `None` only when the reference names a digest and no tag.
    pub tag: Option<String>,
    /// `sha256:<hex>` when the reference pins content.
    pub digest: Option<String>,
}

/// Why a string is not a valid reference. Display follows Docker's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceError {
    Empty,
    Uppercase(String),
    InvalidFormat(String),
    NameTooLong(usize),
    InvalidTag(String),
    InvalidDigest(String),
}

impl fmt::Display for ReferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReferenceError::Empty => write!(f, "invalid reference format: empty reference"),
            ReferenceError::Uppercase(name) => {
                write!(
                    f,
                    "invalid reference format: repository name ({name}) must be lowercase"
                )
            }
            ReferenceError::InvalidFormat(what) => write!(f, "invalid reference format: {what}"),
            ReferenceError::NameTooLong(n) => {
                write!(
                    f,
                    "invalid reference format: repository name is {n} bytes, longer than {MAX_NAME_LEN}"
                )
            }
            ReferenceError::InvalidTag(tag) => write!(
                f,
                "invalid reference format: tag {tag:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
            ),
            ReferenceError::InvalidDigest(d) => {
                write!(
                    f,
                    "invalid reference format: digest {d:?} is not sha256:<64 hex digits>"
                )
            }
        }
    }
}

impl std::error::Error for ReferenceError {}

impl Reference {
    /// Parse and normalise `s`.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                validate_digest(digest)?;
                (rest, Some(digest.to_string()))
            }
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/', so "host:5000/app" has none.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag)?;
        }
        if name.is_empty() {
            return Err(ReferenceError::InvalidFormat(format!(
                "{s:?} has no repository name"
            )));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(ReferenceError::NameTooLong(name.len()));
        }
        let (registry, path) = split_registry(name);
        if let Some(registry) = registry {
            validate_registry(registry, s)?;
        }
        let registry = match registry {
            None | Some(LEGACY_DEFAULT_REGISTRY) => DEFAULT_REGISTRY.to_string(),
            Some(r) => r.to_string(),
        };
        validate_path(path, s)?;
        let path = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path.to_string()
        };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            registry,
            path,
            tag,
            digest,
        })
    }

    /// The repository in Docker's short form: `busybox`, `team/app`, `localhost:5000/app`.
    pub fn familiar_repository(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            match self.path.strip_prefix("library/") {
                Some(short) if !short.contains('/') => short.to_string(),
                _ => self.path.clone(),
            }
        } else {
            format!("{}/{}", self.registry, self.path)
        }
    }

    /// The fully qualified repository: `docker.io/library/busybox`.
    pub fn full_repository(&self) -> String {
        format!("{}/{}", self.registry, self.path)
    }

    /// `repo:tag` in short form (what `RepoTags` shows), if the reference has a tag.
    pub fn familiar_tagged(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|t| format!("{}:{t}", self.familiar_repository()))
    }
}

impl fmt::Display for Reference {
    /// The familiar form: `busybox:latest`, `team/app@sha256:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.familiar_repository())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// The first component is a registry when it looks like a host: has a '.' or ':' or is
/// `localhost`, or contains an uppercase letter (which a repository path never may).
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn validate_registry(registry: &str, whole: &str) -> Result<(), ReferenceError> {
    let (host, port) = match registry.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (registry, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(ReferenceError::InvalidFormat(format!(
            "registry {registry:?} in {whole:?} is not a host[:port]"
        )))
    }
}

/// Path components: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, separated by '/'.
fn validate_path(path: &str, whole: &str) -> Result<(), ReferenceError> {
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::Uppercase(path.to_string()));
    }
    for component in path.split('/') {
        if !valid_path_component(component) {
            return Err(ReferenceError::InvalidFormat(format!(
                "repository component {component:?} in {whole:?} must be lowercase letters and digits \
                 joined by '.', '_', '__' or '-'"
            )));
        }
    }
    Ok(())
}

fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more '-'.
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Tags: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::InvalidTag(tag.to_string()))
    }
}

fn validate_digest(d: &str) -> Result<(), ReferenceError> {
    match d.strip_prefix("sha256:") {
        Some(hex) if is_sha256_hex(hex) => Ok(()),
        _ => Err(ReferenceError::InvalidDigest(d.to_string())),
    }
}

/// True for exactly 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fam(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn short_names_normalise_like_docker() {
        assert_eq!(fam("busybox"), "busybox:latest");
        assert_eq!(fam("busybox:latest"), "busybox:latest");
        assert_eq!(fam("docker.io/library/busybox:latest"), "busybox:latest");
        assert_eq!(fam("index.docker.io/library/busybox"), "busybox:latest");
        assert_eq!(fam("library/busybox:1.36"), "busybox:1.36");
        assert_eq!(fam("team/app"), "team/app:latest");
        assert_eq!(fam("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(
            fam("registry.lan/a/b/c:v1.2-rc_3"),
            "registry.lan/a/b/c:v1.2-rc_3"
        );
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.full_repository(), "docker.io/library/busybox");
    }

    #[test]
    fn digests_are_kept_and_imply_no_tag() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert!(Reference::parse("busybox@sha256:abc").is_err());
    }

    #[test]
    fn rejects_bad_references_with_docker_wording() {
        let e = Reference::parse("Busybox").unwrap_err();
        assert_eq!(e, ReferenceError::Uppercase("Busybox".into()));
        assert!(e.to_string().contains("must be lowercase"), "{e}");
        for bad in [
            "",
            ":tag",
            "a:",
            "a::b",
            "a/",
            "/a",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "a b",
            "a:ta g",
            "a:-tag",
            "a:.tag",
            "host:x/a",
            "ho_st.com/a",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Reference::parse(&format!("a:{}", "t".repeat(128))).is_ok());
        assert!(Reference::parse(&format!("a:{}", "t".repeat(129))).is_err());
        assert!(Reference::parse(&"a".repeat(256)).is_err());
        assert!(Reference::parse("a__b-c--d.e_f").is_ok());
    }

    /// A tiny deterministic generator so the property below needs no extra crate.
    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state >> 33
    }

    #[test]
    fn parse_never_panics_and_familiar_form_round_trips() {
        let alphabet = b"abcAZ09._-:/@";
        let mut seed = 7u64;
        for _ in 0..20_000 {
            let len = (lcg(&mut seed) % 24) as usize;
            let s: String = (0..len)
                .map(|_| alphabet[(lcg(&mut seed) as usize) % alphabet.len()] as char)
                .collect();
            if let Ok(r) = Reference::parse(&s) {
                let again = Reference::parse(&r.to_string()).unwrap();
                assert_eq!(again, r, "{s:?} → {r} did not round-trip");
                let full = format!("{}:{}", r.full_repository(), r.tag.clone().unwrap_or_default());
                if r.tag.is_some() {
                    assert_eq!(Reference::parse(&full).unwrap(), r, "{full}");
                }
            }
        }
    }
}
