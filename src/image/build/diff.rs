//! Layer tars written by the builder: the upper directory of a RUN or commit container, with
//! overlayfs whiteouts turned into OCI `.wh.` entries, and the files a COPY adds.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Top-level directories that are mounted over while a container runs: anything the upper
/// dir holds there is a mount point the runtime made, not a change of the image.
const MOUNTED_DIRS: &[&str] = &["proc", "sys", "dev"];
/// Files bind-mounted from the daemon; when the image lacked them the runtime created empty
/// ones in the upper dir as mount points.
const BIND_FILES: &[&str] = &["etc/hosts", "etc/hostname", "etc/resolv.conf"];

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Open a file for reading without following a symlink in its last component: the trees the
/// builder reads (upper dirs, layers, the context) belong to containers and users, and a
/// file swapped for a symlink must not make the daemon read a host file.
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| at(path, e))
}

/// A tar header carrying the metadata of `m` (owner, mode, mtime).
pub fn header_from(m: &Metadata, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(m.mode() & 0o7777);
    h.set_uid(m.uid() as u64);
    h.set_gid(m.gid() as u64);
    h.set_mtime(m.mtime().max(0) as u64);
    h.set_size(0);
    h
}

/// Write the changes an overlay upper dir records as a layer tar.
pub fn upper_to_tar(upper: &Path, out: impl Write) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    walk(upper, "", &mut b, &mut links)?;
    b.into_inner()?.flush()
}

fn walk<W: Write>(
    dir: &Path,
    rel: &str,
    b: &mut tar::Builder<W>,
    links: &mut HashMap<(u64, u64), String>,
) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|e| at(dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| at(dir, e))?;
    names.sort();
    for name in names {
        let name = name.to_string_lossy().into_owned();
        let path = dir.join(&name);
        let entry = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if rel.is_empty() && MOUNTED_DIRS.contains(&name.as_str()) {
            continue;
        }
        let m = fs::symlink_metadata(&path).map_err(|e| at(&path, e))?;
        let ft = m.file_type();
        if BIND_FILES.contains(&entry.as_str()) && ft.is_file() && m.len() == 0 {
            continue;
        }
        if ft.is_char_device() && m.rdev() == 0 {
            let wh = match rel {
                "" => format!(".wh.{name}"),
                r => format!("{r}/.wh.{name}"),
            };
            let mut h = header_from(&m, tar::EntryType::Regular);
            h.set_mode(0o644);
            b.append_data(&mut h, &wh, io::empty())?;
        } else if ft.is_dir() {
            let mut h = header_from(&m, tar::EntryType::Directory);
            b.append_data(&mut h, format!("{entry}/"), io::empty())?;
            let mut buf = [0u8; 4];
            let opaque = matches!(rustix::fs::lgetxattr(&path, OPAQUE_XATTR, &mut buf), Ok(n) if n >= 1 && buf[0] == b'y');
            if opaque {
                let mut h = header_from(&m, tar::EntryType::Regular);
                h.set_mode(0o644);
                b.append_data(&mut h, format!("{entry}/.wh..wh..opq"), io::empty())?;
            }
            walk(&path, &entry, b, links)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(|e| at(&path, e))?;
            let mut h = header_from(&m, tar::EntryType::Symlink);
            b.append_link(&mut h, &entry, target)?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                if let Some(first) = links.get(&(m.dev(), m.ino())) {
                    let mut h = header_from(&m, tar::EntryType::Link);
                    b.append_link(&mut h, &entry, first)?;
                    continue;
                }
                links.insert((m.dev(), m.ino()), entry.clone());
            }
            let mut h = header_from(&m, tar::EntryType::Regular);
            h.set_size(m.len());
            let f = open_nofollow(&path)?;
            b.append_data(&mut h, &entry, f)?;
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_fifo() {
                tar::EntryType::Fifo
            } else if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            };
            let mut h = header_from(&m, kind);
            let rdev = m.rdev();
            h.set_device_major(libc::major(rdev))?;
            h.set_device_minor(libc::minor(rdev))?;
            b.append_data(&mut h, &entry, io::empty())?;
        }
        // Sockets are not part of images.
    }
    Ok(())
}
