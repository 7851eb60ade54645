//! Resolving a container path inside its root filesystem before pivot_root, as if the root
//! were `/`: symlinks in the image (absolute or relative, `..` included) never lead out of
//! the rootfs. Used for the targets of bind-mounted files.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Resolve `path` (absolute, in container terms) under `root`, following symlinks found in
/// the rootfs within it. Missing trailing components are kept as they are (to be created).
pub fn resolve_in_root(root: &Path, path: &str) -> io::Result<PathBuf> {
    let mut todo: Vec<String> = components(path);
    todo.reverse();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            done.pop();
            continue;
        }
        let candidate = root.join(done.iter().collect::<PathBuf>()).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("too many symlinks in {path}"),
                    ));
                }
                let target = std::fs::read_link(&candidate)?;
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    done.clear();
                }
                for c in components(&target).into_iter().rev() {
                    todo.push(c);
                }
            }
            _ => done.push(part),
        }
    }
    Ok(root.join(done.iter().collect::<PathBuf>()))
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let root = std::env::temp_dir().join(format!("shoal-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("real/etc")).unwrap();
        symlink("/real/etc", root.join("etc")).unwrap();
        symlink("../../../../run/x", root.join("real/etc/resolv.conf")).unwrap();
        symlink("/", root.join("real/up")).unwrap();
        assert_eq!(
            resolve_in_root(&root, "/etc/hostname").unwrap(),
            root.join("real/etc/hostname")
        );
        assert_eq!(
            resolve_in_root(&root, "/etc/resolv.conf").unwrap(),
            root.join("run/x")
        );
        assert_eq!(
            resolve_in_root(&root, "/real/up/up/../etc/hosts").unwrap(),
            root.join("real/etc/hosts")
        );
        symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in_root(&root, "/loop/x").is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
