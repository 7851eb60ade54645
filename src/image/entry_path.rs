//! Validation of the paths inside a layer tar, before anything touches the disk.
//!
//! Guarantees: a path that passes is a relative path of plain components (no `..`, no root,
//! no NUL), so joining it to a layer directory stays inside that directory as long as no parent
//! component is a symlink (the unpacker checks that part against the disk). Whiteout names
//! (`.wh.NAME`, `.wh..wh..opq`) are recognised here. Pure: no I/O.

use std::fmt;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// AUFS metadata entries (`.wh..wh.plnk`, `.wh..wh.aufs`) start with this and carry no meaning
/// for overlayfs.
const AUFS_META_PREFIX: &str = ".wh..wh.";

/// What a validated entry path means for the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryTarget {
    /// The layer's root directory itself (`./` or `/`-less empty path).
    Root,
    /// An ordinary path, as '/'-joined components.
    Path(String),
    /// `dir/.wh.name`: `dir/name` is deleted by this layer.
    Whiteout(String),
    /// `dir/.wh..wh..opq`: `dir` hides everything below it from lower layers ("" = the root).
    Opaque(String),
    /// AUFS bookkeeping to skip.
    Ignored,
}

/// Why an entry path was refused. Holds the path as found in the tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    Absolute(String),
    ParentComponent(String),
    Nul(String),
    NotUtf8(String),
    BadWhiteout(String),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Absolute(p) => write!(f, "entry {p:?} is an absolute path"),
            PathError::ParentComponent(p) => {
                write!(f, "entry {p:?} contains '..' and would escape the layer")
            }
            PathError::Nul(p) => write!(f, "entry {p:?} contains a NUL byte"),
            PathError::NotUtf8(p) => write!(f, "entry {p:?} is not valid UTF-8"),
            PathError::BadWhiteout(p) => write!(f, "entry {p:?} is a whiteout without a name"),
        }
    }
}

/// Normalise a tar entry path into plain relative components: drops `.` components, empty
/// components and a trailing '/', refuses absolute paths and `..`.
pub fn normalize(raw: &[u8]) -> Result<String, PathError> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let s = std::str::from_utf8(raw).map_err(|_| PathError::NotUtf8(shown.clone()))?;
    if s.contains('\0') {
        return Err(PathError::Nul(shown));
    }
    if s.starts_with('/') {
        return Err(PathError::Absolute(shown));
    }
    let mut parts = Vec::new();
    for component in s.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(PathError::ParentComponent(shown)),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// Classify an entry path of a layer tar.
pub fn classify(raw: &[u8]) -> Result<EntryTarget, PathError> {
    let path = normalize(raw)?;
    if path.is_empty() {
        return Ok(EntryTarget::Root);
    }
    let (parent, name) = match path.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", path.as_str()),
    };
    if name == OPAQUE_MARKER {
        return Ok(EntryTarget::Opaque(parent.to_string()));
    }
    if name.starts_with(AUFS_META_PREFIX) {
        return Ok(EntryTarget::Ignored);
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        if hidden.is_empty() {
            return Err(PathError::BadWhiteout(String::from_utf8_lossy(raw).into_owned()));
        }
        let target = if parent.is_empty() {
            hidden.to_string()
        } else {
            format!("{parent}/{hidden}")
        };
        return Ok(EntryTarget::Whiteout(target));
    }
    Ok(EntryTarget::Path(path))
}

/// Every proper prefix of `path` (`a`, `a/b` for `a/b/c`), shallowest first: the parents the
/// unpacker must find to be real directories before it creates `path`.
pub fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_dots_and_slashes() {
        assert_eq!(normalize(b"./bin/sh").unwrap(), "bin/sh");
        assert_eq!(normalize(b"bin//./sh/").unwrap(), "bin/sh");
        assert_eq!(normalize(b"./").unwrap(), "");
        assert_eq!(classify(b"./").unwrap(), EntryTarget::Root);
        assert_eq!(classify(b"etc/").unwrap(), EntryTarget::Path("etc".into()));
    }

    #[test]
    fn refuses_escapes() {
        assert!(matches!(normalize(b"/etc/passwd"), Err(PathError::Absolute(_))));
        assert!(matches!(normalize(b"../x"), Err(PathError::ParentComponent(_))));
        assert!(matches!(
            normalize(b"a/../../x"),
            Err(PathError::ParentComponent(_))
        ));
        assert!(matches!(normalize(b"a/.."), Err(PathError::ParentComponent(_))));
        assert!(matches!(normalize(b"a\0b"), Err(PathError::Nul(_))));
        assert!(matches!(normalize(b"\xff"), Err(PathError::NotUtf8(_))));
        let msg = normalize(b"a/../../etc/shadow").unwrap_err().to_string();
        assert!(msg.contains("a/../../etc/shadow"), "{msg}");
        // A name that merely contains dots is fine.
        assert_eq!(normalize(b"a/..b/c...").unwrap(), "a/..b/c...");
    }

    #[test]
    fn recognises_whiteouts() {
        assert_eq!(
            classify(b"etc/.wh.passwd").unwrap(),
            EntryTarget::Whiteout("etc/passwd".into())
        );
        assert_eq!(classify(b".wh.tmp").unwrap(), EntryTarget::Whiteout("tmp".into()));
        assert_eq!(
            classify(b"./var/.wh..wh..opq").unwrap(),
            EntryTarget::Opaque("var".into())
        );
        assert_eq!(classify(b".wh..wh..opq").unwrap(), EntryTarget::Opaque("".into()));
        assert_eq!(
            classify(b".wh..wh.plnk/123.4").unwrap(),
            EntryTarget::Path(".wh..wh.plnk/123.4".into())
        );
        assert_eq!(classify(b"x/.wh..wh.aufs").unwrap(), EntryTarget::Ignored);
        assert!(matches!(classify(b"x/.wh."), Err(PathError::BadWhiteout(_))));
        assert!(classify(b"../.wh.x").is_err());
    }

    #[test]
    fn parents_are_listed_shallowest_first() {
        assert_eq!(parents("a/b/c").collect::<Vec<_>>(), vec!["a", "a/b"]);
        assert_eq!(parents("a").count(), 0);
    }

    #[test]
    fn validated_paths_never_escape() {
        // Every accepted path joined to a root stays below it lexically.
        let alphabet: &[&[u8]] = &[b"a", b".", b"..", b"/", b".wh.", b"b"];
        let mut seed = 11u64;
        for _ in 0..20_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut s = Vec::new();
            let mut x = seed;
            for _ in 0..(seed >> 60) + 1 {
                s.extend_from_slice(alphabet[(x % alphabet.len() as u64) as usize]);
                x /= alphabet.len() as u64;
            }
            if let Ok(p) = normalize(&s) {
                assert!(
                    !p.starts_with('/') && !p.split('/').any(|c| c == ".." || c == "."),
                    "{p:?}"
                );
            }
        }
    }
}
