//! Layers: unpacking a layer tar (plain, gzip or zstd) into a directory that overlayfs can use
//! as a lower layer, and rebuilding the byte-identical tar from that directory for `save`.
//!
//! Guarantees of [`unpack`]:
//! - Nothing is written outside `dir`: entry paths with `..`, absolute paths, and entries whose
//!   parent is a symlink are refused with an error naming the entry; hardlinks must point at a
//!   file inside the same layer; `trusted.overlay.*` xattrs from the tar are dropped.
//! - Whiteouts become what overlayfs expects: `.wh.NAME` → a 0:0 character device `NAME`,
//!   `.wh..wh..opq` → xattr `trusted.overlay.opaque=y` on the directory.
//! - The diff id (sha256 of the uncompressed tar) and the digest of the raw input are computed
//!   while streaming; the caller compares them with what it expects before making the layer
//!   visible (see `store`), so a layer directory is only ever named after verified content.
//! - No second copy of the data: besides the files, a "tar split" records the tar's headers
//!   and padding and, for each regular file, just its path and size. [`TarRebuilder`] replays it
//!   against the files to produce the original bytes, and checks the diff id at the end.

use super::entry_path::{self, EntryTarget};
use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub const FS_DIR: &str = "fs";
pub const SPLIT_FILE: &str = "tar-split.gz";
pub const META_FILE: &str = "layer.json";
const SHADOW_DIR: &str = "shadow";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Raw (header/padding) bytes are flushed to the split file in records of at most this size.
const RAW_RECORD_MAX: usize = 64 * 1024;

/// What `layer.json` in a layer directory records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerMeta {
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of regular-file content plus symlink lengths (what `docker images` counts).
    pub size: u64,
    /// Length of the uncompressed tar (needed to write a tar header for it in `save`).
    pub tar_size: u64,
    /// Files overwritten later in the same tar: split-record index → path under the layer dir
    /// where the earlier content was kept.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub relocated: BTreeMap<u32, String>,
}

/// The result of unpacking one layer stream.
#[derive(Debug, Clone)]
pub struct Unpacked {
    pub meta: LayerMeta,
    /// `sha256:<hex>` of the bytes as they came in (compressed, if they were).
    pub raw_digest: String,
}

/// `sha256:<hex>` of a hasher's state.
pub fn digest_string(h: Sha256) -> String {
    let bytes = h.finalize();
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Unpack a layer stream (plain tar, gzip or zstd, detected by magic) into the empty
/// directory `dir`, writing `dir/fs`, `dir/tar-split.gz` and `dir/layer.json`.
/// On error `dir` holds garbage the caller must remove.
pub fn unpack(input: impl Read, dir: &Path) -> io::Result<Unpacked> {
    let mut raw = HashingReader {
        inner: input,
        hasher: Sha256::new(),
    };
    let mut head = [0u8; 4];
    let head_len = read_up_to(&mut raw, &mut head)?;
    let head = &head[..head_len];
    let meta = {
        let chained = io::Cursor::new(head.to_vec()).chain(&mut raw);
        let decompressed: Box<dyn Read + '_> = if head.starts_with(&[0x1f, 0x8b]) {
            Box::new(MultiGzDecoder::new(chained))
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            let decoder = ruzstd::decoding::StreamingDecoder::new(chained)
                .map_err(|e| invalid(format!("zstd layer: {e}")))?;
            Box::new(decoder)
        } else {
            Box::new(chained)
        };
        unpack_tar(decompressed, dir)?
    };
    // Whatever follows the compressed stream still belongs to the blob's digest.
    io::copy(&mut raw, &mut io::sink()).map_err(|e| invalid(format!("reading layer stream: {e}")))?;
    Ok(Unpacked {
        meta,
        raw_digest: digest_string(raw.hasher),
    })
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(invalid(format!("reading layer stream: {e}"))),
        }
    }
    Ok(n)
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Shared between the tar reader (which pulls bytes through it) and the unpacker (which tells
/// it where file contents start): hashes the uncompressed tar and writes the split records.
struct SplitState {
    hasher: Sha256,
    pos: u64,
    pending: Vec<u8>,
    /// Bytes still to come that are file content, kept on disk instead of in the split.
    skip: u64,
    out: flate2::write::GzEncoder<BufWriter<File>>,
}

impl SplitState {
    fn observe(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.pos += bytes.len() as u64;
        let skipped = (self.skip.min(bytes.len() as u64)) as usize;
        self.skip -= skipped as u64;
        self.pending.extend_from_slice(&bytes[skipped..]);
        if self.pending.len() >= RAW_RECORD_MAX {
            self.flush_raw()?;
        }
        Ok(())
    }

    fn flush_raw(&mut self) -> io::Result<()> {
        for chunk in self.pending.chunks(RAW_RECORD_MAX) {
            self.out.write_all(b"R")?;
            self.out.write_all(&(chunk.len() as u32).to_le_bytes())?;
            self.out.write_all(chunk)?;
        }
        self.pending.clear();
        Ok(())
    }

    fn begin_file(&mut self, index: u32, path: &str, size: u64) -> io::Result<()> {
        self.flush_raw()?;
        self.out.write_all(b"F")?;
        self.out.write_all(&index.to_le_bytes())?;
        self.out.write_all(&(path.len() as u32).to_le_bytes())?;
        self.out.write_all(path.as_bytes())?;
        self.out.write_all(&size.to_le_bytes())?;
        self.skip = size;
        Ok(())
    }
}

struct RecordingReader<R> {
    inner: R,
    state: Rc<RefCell<SplitState>>,
}

impl<R: Read> Read for RecordingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .inner
            .read(buf)
            .map_err(|e| invalid(format!("reading layer stream: {e}")))?;
        self.state.borrow_mut().observe(&buf[..n])?;
        Ok(n)
    }
}

fn unpack_tar(tar_stream: impl Read, dir: &Path) -> io::Result<LayerMeta> {
    let root = dir.join(FS_DIR);
    fs::create_dir(&root).map_err(|e| at(&root, e))?;
    let split_path = dir.join(SPLIT_FILE);
    let split_file = File::create(&split_path).map_err(|e| at(&split_path, e))?;
    let state = Rc::new(RefCell::new(SplitState {
        hasher: Sha256::new(),
        pos: 0,
        pending: Vec::new(),
        skip: 0,
        out: flate2::write::GzEncoder::new(BufWriter::new(split_file), flate2::Compression::fast()),
    }));
    let mut archive = tar::Archive::new(RecordingReader {
        inner: tar_stream,
        state: state.clone(),
    });
    let mut unpacker = Unpacker {
        root: root.clone(),
        shadow: dir.join(SHADOW_DIR),
        live_files: HashMap::new(),
        next_index: 0,
        relocated: BTreeMap::new(),
        dirs: HashMap::new(),
        size: 0,
    };
    for entry in archive
        .entries()
        .map_err(|e| invalid(format!("layer tar: {e}")))?
    {
        let mut entry = entry.map_err(|e| invalid(format!("layer tar: {e}")))?;
        unpacker.apply(&mut entry, &state)?;
    }
    unpacker.finish_dirs()?;
    // The end-of-archive blocks and any padding after them are part of the diff id.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink())?;
    drop(rest);
    let state = Rc::try_unwrap(state)
        .map_err(|_| io::Error::other("layer split state still shared after unpacking"))?
        .into_inner();
    let SplitState {
        hasher,
        pos,
        mut pending,
        out,
        ..
    } = state;
    let mut split = SplitState {
        hasher: Sha256::new(),
        pos: 0,
        pending: std::mem::take(&mut pending),
        skip: 0,
        out,
    };
    split.flush_raw()?;
    split.out.write_all(b"E")?;
    let mut buffered = split.out.finish()?;
    buffered.flush()?;
    let meta = LayerMeta {
        diff_id: digest_string(hasher),
        size: unpacker.size,
        tar_size: pos,
        relocated: unpacker.relocated,
    };
    let meta_path = dir.join(META_FILE);
    fs::write(
        &meta_path,
        serde_json::to_vec_pretty(&meta).map_err(io::Error::other)?,
    )
    .map_err(|e| at(&meta_path, e))?;
    Ok(meta)
}

struct DirMeta {
    mode: u32,
    mtime: i64,
}

struct Unpacker {
    root: PathBuf,
    shadow: PathBuf,
    /// Regular files whose content the split refers to: path → record index.
    live_files: HashMap<String, u32>,
    next_index: u32,
    relocated: BTreeMap<u32, String>,
    /// Directory modes and mtimes, applied at the end (creating children changes mtimes).
    dirs: HashMap<String, DirMeta>,
    size: u64,
}

struct Attrs {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Unpacker {
    fn apply<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        state: &Rc<RefCell<SplitState>>,
    ) -> io::Result<()> {
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            return Ok(());
        }
        let target =
            entry_path::classify(&entry.path_bytes()).map_err(|e| invalid(format!("layer tar: {e}")))?;
        let attrs = read_attrs(entry).map_err(|e| invalid(format!("layer tar: entry {shown:?}: {e}")))?;
        let ctx = |e: io::Error| io::Error::new(e.kind(), format!("layer tar: entry {shown:?}: {e}"));
        match target {
            EntryTarget::Ignored => Ok(()),
            EntryTarget::Root => {
                if !kind.is_dir() {
                    return Err(invalid(format!(
                        "layer tar: entry {shown:?} names the root but is not a directory"
                    )));
                }
                self.set_owner(&self.root.clone(), &attrs).map_err(ctx)?;
                self.dirs.insert(
                    String::new(),
                    DirMeta {
                        mode: attrs.mode,
                        mtime: attrs.mtime,
                    },
                );
                Ok(())
            }
            EntryTarget::Opaque(dir) => {
                self.check_parents(&dir, &shown)?;
                let path = self.root.join(&dir);
                self.ensure_dir(&dir, &path).map_err(ctx)?;
                rustix::fs::lsetxattr(&path, OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty())
                    .map_err(|e| ctx(io::Error::from(e)))
            }
            EntryTarget::Whiteout(hidden) => {
                self.check_parents(&hidden, &shown)?;
                let path = self.root.join(&hidden);
                self.remove_existing(&hidden, &path).map_err(ctx)?;
                mknod(&path, rustix::fs::FileType::CharacterDevice, 0, 0).map_err(ctx)
            }
            EntryTarget::Path(rel) => {
                self.check_parents(&rel, &shown)?;
                let path = self.root.join(&rel);
                self.apply_path(entry, kind, &rel, &path, &attrs, &shown, state)
                    .map_err(ctx)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_path<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: tar::EntryType,
        rel: &str,
        path: &Path,
        attrs: &Attrs,
        shown: &str,
        state: &Rc<RefCell<SplitState>>,
    ) -> io::Result<()> {
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                self.ensure_dir(rel, path)?;
                self.set_owner(path, attrs)?;
                self.set_xattrs(path, attrs);
                self.dirs.insert(
                    rel.to_string(),
                    DirMeta {
                        mode: attrs.mode,
                        mtime: attrs.mtime,
                    },
                );
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                self.remove_existing(rel, path)?;
                let size = entry.size();
                let index = self.next_index;
                self.next_index += 1;
                // Plain files keep their content only on disk; sparse ones stay in the split.
                let split_content =
                    kind != T::GNUSparse && size > 0 && state.borrow().pos == entry.raw_file_position();
                if split_content {
                    state.borrow_mut().begin_file(index, rel, size)?;
                }
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(path)?;
                let written = io::copy(entry, &mut file)?;
                if written != size {
                    return Err(invalid(format!("content is {written} bytes, header says {size}")));
                }
                if split_content {
                    self.live_files.insert(rel.to_string(), index);
                }
                self.size += written;
                drop(file);
                self.set_owner(path, attrs)?;
                fs::set_permissions(path, fs::Permissions::from_mode(attrs.mode))?;
                self.set_xattrs(path, attrs);
                set_mtime(path, attrs.mtime)?;
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| invalid("symlink without a target".to_string()))?
                    .into_owned();
                self.remove_existing(rel, path)?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), path)?;
                // Docker counts a symlink's own size (its target's length) in the layer size.
                self.size += target.len() as u64;
                self.set_owner(path, attrs)?;
                self.set_xattrs(path, attrs);
                set_mtime(path, attrs.mtime)?;
            }
            T::Link => {
                let raw = entry
                    .link_name_bytes()
                    .ok_or_else(|| invalid("hardlink without a target".to_string()))?
                    .into_owned();
                let target =
                    match entry_path::classify(&raw).map_err(|e| invalid(format!("hardlink target: {e}")))? {
                        EntryTarget::Path(t) => t,
                        _ => return Err(invalid("hardlink target is not a plain path".to_string())),
                    };
                if target == rel {
                    return Err(invalid("hardlink points at itself".to_string()));
                }
                self.check_parents(&target, shown)?;
                let target_path = self.root.join(&target);
                match fs::symlink_metadata(&target_path) {
                    Ok(m) if !m.is_dir() => {}
                    Ok(_) => return Err(invalid(format!("hardlink target {target:?} is a directory"))),
                    Err(_) => {
                        return Err(invalid(format!(
                            "hardlink target {target:?} is not earlier in this layer"
                        )))
                    }
                }
                self.remove_existing(rel, path)?;
                fs::hard_link(&target_path, path)?;
            }
            T::Char | T::Block | T::Fifo => {
                let file_type = match kind {
                    T::Char => rustix::fs::FileType::CharacterDevice,
                    T::Block => rustix::fs::FileType::BlockDevice,
                    _ => rustix::fs::FileType::Fifo,
                };
                let (major, minor) = if kind == T::Fifo {
                    (0, 0)
                } else {
                    let h = entry.header();
                    let bad = |e: io::Error| invalid(format!("device number: {e}"));
                    (
                        h.device_major().map_err(bad)?.unwrap_or(0),
                        h.device_minor().map_err(bad)?.unwrap_or(0),
                    )
                };
                self.remove_existing(rel, path)?;
                mknod(path, file_type, major, minor)?;
                self.set_owner(path, attrs)?;
                fs::set_permissions(path, fs::Permissions::from_mode(attrs.mode))?;
                self.set_xattrs(path, attrs);
                set_mtime(path, attrs.mtime)?;
            }
            other => {
                // GNU long-name records are consumed by the tar reader; anything else (volume
                // labels, multi-volume continuations) has no meaning in a layer.
                log::debug!("layer tar: skipping entry {shown:?} of type {other:?}");
            }
        }
        Ok(())
    }

    /// Every parent of `rel` must be a real directory inside the layer; missing ones are
    /// created. A symlink parent is refused: following it could leave the layer.
    fn check_parents(&mut self, rel: &str, shown: &str) -> io::Result<()> {
        for parent in entry_path::parents(rel) {
            let path = self.root.join(parent);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(invalid(format!(
                        "layer tar: entry {shown:?}: parent {parent:?} is a symlink; refusing to write through it"
                    )))
                }
                Ok(_) => {
                    return Err(invalid(format!("layer tar: entry {shown:?}: parent {parent:?} is not a directory")))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&path).map_err(|e| at(&path, e))?;
                }
                Err(e) => return Err(at(&path, e)),
            }
        }
        Ok(())
    }

    fn ensure_dir(&mut self, rel: &str, path: &Path) -> io::Result<()> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => {
                self.remove_existing(rel, path)?;
                fs::create_dir(path)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(path),
            Err(e) => Err(e),
        }
    }

    /// Remove what is at `path` (a later entry replaces an earlier one). Files the split still
    /// refers to are first hard-linked into the shadow dir so `save` can rebuild the tar.
    fn remove_existing(&mut self, rel: &str, path: &Path) -> io::Result<()> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let prefix = format!("{rel}/");
        let doomed: Vec<(String, u32)> = if meta.is_dir() {
            self.live_files
                .iter()
                .filter(|(p, _)| p.starts_with(&prefix))
                .map(|(p, i)| (p.clone(), *i))
                .collect()
        } else {
            self.live_files
                .get(rel)
                .map(|i| vec![(rel.to_string(), *i)])
                .unwrap_or_default()
        };
        for (file, index) in doomed {
            fs::create_dir_all(&self.shadow)?;
            fs::hard_link(self.root.join(&file), self.shadow.join(index.to_string()))?;
            self.relocated.insert(index, format!("{SHADOW_DIR}/{index}"));
            self.live_files.remove(&file);
        }
        if meta.is_dir() {
            fs::remove_dir_all(path)
        } else {
            fs::remove_file(path)
        }
    }

    fn set_owner(&self, path: &Path, attrs: &Attrs) -> io::Result<()> {
        // Uid/Gid::from_raw panic on u32::MAX ("no change"); read_attrs rejected it already.
        let uid = rustix::fs::Uid::from_raw(attrs.uid);
        let gid = rustix::fs::Gid::from_raw(attrs.gid);
        rustix::fs::chownat(
            rustix::fs::CWD,
            path,
            Some(uid),
            Some(gid),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io::Error::from)
    }

    fn set_xattrs(&self, path: &Path, attrs: &Attrs) {
        for (name, value) in &attrs.xattrs {
            if let Err(e) = rustix::fs::lsetxattr(path, name.as_str(), value, rustix::fs::XattrFlags::empty())
            {
                log::warn!("{}: cannot set xattr {name}: {e}", path.display());
            }
        }
    }

    fn finish_dirs(&mut self) -> io::Result<()> {
        let mut dirs: Vec<(&String, &DirMeta)> = self.dirs.iter().collect();
        // Deepest first, so setting a child's times never disturbs an already-set parent.
        crate::sort::sort_by_key(&mut dirs, |(p, _)| {
            std::cmp::Reverse(p.matches('/').count() + usize::from(!p.is_empty()))
        });
        for (rel, meta) in dirs {
            let path = self.root.join(rel);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                _ => continue,
            }
            fs::set_permissions(&path, fs::Permissions::from_mode(meta.mode)).map_err(|e| at(&path, e))?;
            set_mtime(&path, meta.mtime).map_err(|e| at(&path, e))?;
        }
        Ok(())
    }
}

fn read_attrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Attrs> {
    let header = entry.header();
    let old = header.as_old();
    // Some writers leave numeric fields blank (all NUL or spaces); read those as 0.
    let field = |value: io::Result<u64>, raw: &[u8]| match value {
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        other => other,
    };
    let mode = field(header.mode().map(u64::from), &old.mode)? as u32 & 0o7777;
    let owner = |v: u64, what: &str| {
        u32::try_from(v)
            .ok()
            .filter(|v| *v != u32::MAX)
            .ok_or_else(|| invalid(format!("{what} {v} is out of range")))
    };
    let uid = owner(field(header.uid(), &old.uid)?, "uid")?;
    let gid = owner(field(header.gid(), &old.gid)?, "gid")?;
    let mut mtime = i64::try_from(field(header.mtime(), &old.mtime)?).unwrap_or(0);
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                // overlayfs interprets trusted.overlay.*; an image must not smuggle those in.
                if !name.starts_with("trusted.overlay.") {
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            } else if key == "mtime" {
                if let Some(secs) = ext
                    .value()
                    .ok()
                    .and_then(|v| v.split('.').next()?.parse::<i64>().ok())
                {
                    mtime = secs;
                }
            }
        }
    }
    Ok(Attrs {
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })
}

fn mknod(path: &Path, file_type: rustix::fs::FileType, major: u32, minor: u32) -> io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        file_type,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::makedev(major, minor),
    )
    .map_err(io::Error::from)
}

fn set_mtime(path: &Path, mtime: i64) -> io::Result<()> {
    let t = rustix::fs::Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

/// Flush everything under `dir` to stable storage (one `syncfs` instead of an fsync per file)
/// so that a rename that makes the layer visible never exposes unwritten data after power loss.
pub fn sync_tree(dir: &Path) -> io::Result<()> {
    let f = File::open(dir).map_err(|e| at(dir, e))?;
    rustix::fs::syncfs(&f).map_err(|e| at(dir, e.into()))
}

/// Replays a layer's split records against its unpacked files: yields the original tar.
/// Fails (at the end) if the result does not hash to the layer's diff id.
pub struct TarRebuilder {
    layer_dir: PathBuf,
    meta: LayerMeta,
    split: flate2::read::GzDecoder<BufReader<File>>,
    current: Source,
    hasher: Sha256,
    produced: u64,
}

enum Source {
    Idle,
    Raw(Vec<u8>, usize),
    File(File, u64, PathBuf),
    Done,
}

impl TarRebuilder {
    pub fn open(layer_dir: &Path) -> io::Result<TarRebuilder> {
        let meta_path = layer_dir.join(META_FILE);
        let meta: LayerMeta = crate::storage::atomic::read_json(&meta_path)?;
        let split_path = layer_dir.join(SPLIT_FILE);
        let split = File::open(&split_path).map_err(|e| at(&split_path, e))?;
        Ok(TarRebuilder {
            layer_dir: layer_dir.to_path_buf(),
            meta,
            split: flate2::read::GzDecoder::new(BufReader::new(split)),
            current: Source::Idle,
            hasher: Sha256::new(),
            produced: 0,
        })
    }

    pub fn tar_size(&self) -> u64 {
        self.meta.tar_size
    }

    fn corrupt(&self, what: &str) -> io::Error {
        invalid(format!("layer {}: {what}", self.layer_dir.display()))
    }

    fn next_record(&mut self) -> io::Result<Source> {
        let mut tag = [0u8; 1];
        self.split
            .read_exact(&mut tag)
            .map_err(|_| self.corrupt("tar split ends early"))?;
        let mut u32buf = [0u8; 4];
        match tag[0] {
            b'R' => {
                self.split.read_exact(&mut u32buf)?;
                let mut data = vec![0u8; u32::from_le_bytes(u32buf) as usize];
                self.split.read_exact(&mut data)?;
                Ok(Source::Raw(data, 0))
            }
            b'F' => {
                self.split.read_exact(&mut u32buf)?;
                let index = u32::from_le_bytes(u32buf);
                self.split.read_exact(&mut u32buf)?;
                let mut path = vec![0u8; u32::from_le_bytes(u32buf) as usize];
                self.split.read_exact(&mut path)?;
                let mut u64buf = [0u8; 8];
                self.split.read_exact(&mut u64buf)?;
                let size = u64::from_le_bytes(u64buf);
                let rel = String::from_utf8(path).map_err(|_| self.corrupt("tar split path is not UTF-8"))?;
                let full = match self.meta.relocated.get(&index) {
                    Some(shadow) => self.layer_dir.join(shadow),
                    None => {
                        if entry_path::normalize(rel.as_bytes()).ok().as_deref() != Some(rel.as_str()) {
                            return Err(self.corrupt("tar split names a path outside the layer"));
                        }
                        self.layer_dir.join(FS_DIR).join(&rel)
                    }
                };
                let file = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&full)
                    .map_err(|e| at(&full, e))?;
                if file.metadata()?.size() != size {
                    return Err(self.corrupt(&format!("{rel} changed size on disk")));
                }
                Ok(Source::File(file, size, full))
            }
            b'E' => Ok(Source::Done),
            _ => Err(self.corrupt("tar split has an unknown record")),
        }
    }
}

impl Read for TarRebuilder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match &mut self.current {
                Source::Idle => {
                    self.current = self.next_record()?;
                    if let Source::Done = self.current {
                        let digest = digest_string(std::mem::take(&mut self.hasher));
                        if digest != self.meta.diff_id || self.produced != self.meta.tar_size {
                            return Err(self.corrupt(&format!(
                                "rebuilt tar hashes to {digest}, expected {}: layer content changed on disk",
                                self.meta.diff_id
                            )));
                        }
                    }
                }
                Source::Raw(data, off) => {
                    if *off == data.len() {
                        self.current = Source::Idle;
                        continue;
                    }
                    let n = buf.len().min(data.len() - *off);
                    buf[..n].copy_from_slice(&data[*off..*off + n]);
                    *off += n;
                    self.hasher.update(&buf[..n]);
                    self.produced += n as u64;
                    return Ok(n);
                }
                Source::File(file, remaining, path) => {
                    if *remaining == 0 {
                        self.current = Source::Idle;
                        continue;
                    }
                    let want = buf.len().min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    let n = file.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(invalid(format!("{}: shorter than recorded", path.display())));
                    }
                    *remaining -= n as u64;
                    self.hasher.update(&buf[..n]);
                    self.produced += n as u64;
                    return Ok(n);
                }
                Source::Done => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("shoal-layer-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_size(data.len() as u64);
            h.set_mtime(1_600_000_000);
            h.set_uid(0);
            h.set_gid(0);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            // set_path refuses '..', so write the raw name for escape tests.
            let name = h.as_old_mut().name.as_mut();
            name.fill(0);
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn unpack_then_rebuild_is_byte_identical() {
        let d = tmpdir("rebuild");
        let tar = tar_of(&[
            ("a/", tar::EntryType::Directory, b"", ""),
            ("a/f", tar::EntryType::Regular, b"first", ""),
            ("a/f", tar::EntryType::Regular, b"second version", ""),
            ("a/l", tar::EntryType::Link, b"", "a/f"),
            ("a/s", tar::EntryType::Symlink, b"", "/etc/passwd"),
            ("empty", tar::EntryType::Regular, b"", ""),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let u = unpack(&gz[..], &d).unwrap();
        let mut h = Sha256::new();
        h.update(&tar);
        assert_eq!(u.meta.diff_id, digest_string(h));
        let mut h = Sha256::new();
        h.update(&gz);
        assert_eq!(u.raw_digest, digest_string(h));
        assert_eq!(fs::read(d.join("fs/a/f")).unwrap(), b"second version");
        assert_eq!(fs::read_link(d.join("fs/a/s")).unwrap(), Path::new("/etc/passwd"));
        assert_eq!(u.meta.relocated.len(), 1);
        let mut rebuilt = Vec::new();
        TarRebuilder::open(&d).unwrap().read_to_end(&mut rebuilt).unwrap();
        assert!(rebuilt == tar, "rebuilt tar differs");
        // Tampering is detected.
        fs::write(d.join("fs/a/f"), b"SECOND version").unwrap();
        let err = TarRebuilder::open(&d)
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("changed on disk"), "{err}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn long_names_and_pax_records_rebuild_exactly() {
        let d = tmpdir("long");
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        b.append_pax_extensions([("SCHILY.xattr.user.x", &b"1"[..])])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        h.set_mode(0o600);
        b.append_data(&mut h, "short", &b"hi"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let u = unpack(&tar[..], &d).unwrap();
        assert_eq!(u.meta.tar_size, tar.len() as u64);
        assert_eq!(fs::read(d.join(FS_DIR).join(&long)).unwrap(), b"abc");
        let mut rebuilt = Vec::new();
        TarRebuilder::open(&d).unwrap().read_to_end(&mut rebuilt).unwrap();
        assert!(rebuilt == tar, "rebuilt tar differs");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_escapes_naming_the_entry() {
        for (entries, needle) in [
            (
                vec![("../evil", tar::EntryType::Regular, &b"x"[..], "")],
                "../evil",
            ),
            (vec![("/abs", tar::EntryType::Regular, &b"x"[..], "")], "/abs"),
            (
                vec![
                    ("l", tar::EntryType::Symlink, &b""[..], "/tmp"),
                    ("l/x", tar::EntryType::Regular, b"x", ""),
                ],
                "l/x",
            ),
            (
                vec![("h", tar::EntryType::Link, &b""[..], "../../etc/shadow")],
                "h",
            ),
        ] {
            let d = tmpdir("escape");
            let err = unpack(&tar_of(&entries)[..], &d).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(err.to_string().contains(needle), "{err}");
            fs::remove_dir_all(&d).unwrap();
        }
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let d = tmpdir("trunc");
        let tar = tar_of(&[("f", tar::EntryType::Regular, &[7u8; 5000], "")]);
        let err = unpack(&tar[..2000], &d).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        fs::remove_dir_all(&d).unwrap();
    }
}
