//! A read-only merged view of an image's unpacked layers, as overlayfs would show them, for
//! the builder's own lookups (COPY destinations, `COPY --from`, `--chown` names) without
//! mounting anything. Whiteouts (0:0 character devices) hide lower entries; opaque
//! directories hide lower directory contents.

use std::collections::BTreeMap;
use std::fs::{self, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

pub struct RootfsView {
    /// Layer `fs` directories, top-most first.
    layers: Vec<PathBuf>,
}

fn is_whiteout(m: &Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(rustix::fs::lgetxattr(dir, OPAQUE_XATTR, &mut buf), Ok(n) if n >= 1 && buf[0] == b'y')
}

/// Split a path into its normal components (no `.`/`..`/empty), `..` clamped at the root.
pub fn components(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_string()),
        }
    }
    out
}

impl RootfsView {
    pub fn new(layers: Vec<PathBuf>) -> RootfsView {
        RootfsView { layers }
    }

    /// The host path holding the entry at the (already resolved) components, if visible.
    fn find_exact(&self, comps: &[String]) -> Option<(PathBuf, Metadata)> {
        'layers: for layer in &self.layers {
            // A whiteout or opaque directory on the way down in this layer hides lower ones.
            let mut p = layer.clone();
            for (i, c) in comps.iter().enumerate() {
                p.push(c);
                match fs::symlink_metadata(&p) {
                    // Not in this layer: look in the ones below.
                    Err(_) => continue 'layers,
                    Ok(m) if is_whiteout(&m) => return None,
                    Ok(m) if i + 1 == comps.len() => return Some((p, m)),
                    // A non-directory here hides whatever lower layers hold below that name.
                    Ok(m) if !m.is_dir() => return None,
                    Ok(_) => {
                        let next_here = fs::symlink_metadata(p.join(&comps[i + 1])).is_ok();
                        if !next_here && is_opaque(&p) {
                            return None;
                        }
                    }
                }
            }
            if comps.is_empty() {
                return fs::symlink_metadata(layer).ok().map(|m| (layer.clone(), m));
            }
        }
        None
    }

    /// Resolve `path` inside the image, following symlinks in parent directories (and in the
    /// last component when `follow`), never leaving the image root. Returns the resolved
    /// components and the host path of the entry.
    pub fn resolve(&self, path: &str, follow: bool) -> Option<(Vec<String>, PathBuf, Metadata)> {
        let mut pending: Vec<String> = components(path);
        pending.reverse();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            done.push(c);
            let (host, meta) = self.find_exact(&done)?;
            let last = pending.is_empty();
            if meta.file_type().is_symlink() && (!last || follow) {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                let target = fs::read_link(&host).ok()?.to_string_lossy().into_owned();
                done.pop();
                let base = if target.starts_with('/') {
                    String::new()
                } else {
                    done.join("/")
                };
                let rest: Vec<String> = pending.iter().rev().cloned().collect();
                let mut fresh = components(&format!("{base}/{target}/{}", rest.join("/")));
                fresh.reverse();
                done.clear();
                pending = fresh;
            }
        }
        let (host, meta) = self.find_exact(&done)?;
        Some((done, host, meta))
    }

    pub fn is_dir(&self, path: &str) -> bool {
        self.resolve(path, true).is_some_and(|(_, _, m)| m.is_dir())
    }

    pub fn exists(&self, path: &str) -> bool {
        self.resolve(path, false).is_some()
    }

    /// The merged listing of a resolved directory: name → host path of the visible entry.
    pub fn read_dir(&self, comps: &[String]) -> BTreeMap<String, PathBuf> {
        let mut out = BTreeMap::new();
        let mut hidden = std::collections::BTreeSet::new();
        for layer in &self.layers {
            let dir = layer.join(comps.join("/"));
            let Ok(m) = fs::symlink_metadata(&dir) else {
                continue;
            };
            if is_whiteout(&m) {
                break;
            }
            if !m.is_dir() {
                break;
            }
            if let Ok(rd) = fs::read_dir(&dir) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if out.contains_key(&name) || hidden.contains(&name) {
                        continue;
                    }
                    match e.metadata() {
                        Ok(m) if is_whiteout(&m) => {
                            hidden.insert(name);
                        }
                        Ok(_) => {
                            out.insert(name, e.path());
                        }
                        Err(_) => {}
                    }
                }
            }
            if is_opaque(&dir) {
                break;
            }
        }
        out
    }

    /// A small text file of the image (/etc/passwd), empty when missing.
    pub fn read_text(&self, path: &str) -> String {
        match self.resolve(path, true) {
            Some((_, host, m)) if m.is_file() && m.len() < (1 << 20) => {
                fs::read_to_string(host).unwrap_or_default()
            }
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root_only() {
        let root = std::env::temp_dir().join(format!("shoal-rootfs-view-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::write(root.join("usr/bin/tool"), "t").unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        symlink("/etc/passwd", root.join("escape")).unwrap();
        symlink("../../../../etc/passwd", root.join("usr/climb")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        let view = RootfsView::new(vec![root.clone()]);
        let (comps, host, _) = view.resolve("/bin/tool", true).unwrap();
        assert_eq!(comps, ["usr", "bin", "tool"]);
        assert_eq!(host, root.join("usr/bin/tool"));
        assert!(view.resolve("escape", true).is_none());
        assert!(view.resolve("usr/climb", true).is_none());
        assert!(view.resolve("loop", true).is_none());
        assert!(view.resolve("escape", false).is_some());
        assert!(view.is_dir("bin"));

        // An upper layer's file, whiteout or opaque directory hides the lower layer's entries.
        let upper = root.with_extension("upper");
        let _ = fs::remove_dir_all(&upper);
        fs::create_dir_all(upper.join("opaque")).unwrap();
        fs::create_dir_all(root.join("opaque")).unwrap();
        fs::write(root.join("opaque/old"), "o").unwrap();
        fs::write(upper.join("usr"), "now a file").unwrap();
        let opaque = rustix::fs::lsetxattr(
            upper.join("opaque"),
            OPAQUE_XATTR,
            b"y",
            rustix::fs::XattrFlags::empty(),
        );
        let layered = RootfsView::new(vec![upper.clone(), root.clone()]);
        assert!(layered.resolve("usr/bin/tool", true).is_none());
        assert!(layered.resolve("usr", false).unwrap().2.is_file());
        if opaque.is_ok() {
            // trusted.* xattrs need CAP_SYS_ADMIN; the integration tests cover it as root.
            assert!(layered.resolve("opaque/old", false).is_none());
            assert!(layered.read_dir(&["opaque".to_string()]).is_empty());
        }
        fs::remove_dir_all(&upper).unwrap();
        fs::remove_dir_all(&root).unwrap();
    }
}
