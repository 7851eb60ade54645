//! COPY and ADD: the files they add, as one layer tar written directly (no container).
//! Sources come from the build context (globs allowed), a heredoc, an earlier stage or an
//! image (`--from`); ADD also unpacks local tar archives (plain or gzip).

use super::diff::{header_from, open_nofollow};
use super::dockerignore::glob_match;
use super::rootfs::{components, RootfsView};
use super::{at, shell_lex, temp_path, Builder, Stage, TempGuard};
use crate::image::build::dockerfile::Instruction;
use crate::runtime::user;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs::{self, File, Metadata};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One thing the layer will hold, at `dest` (relative to the image root).
enum Item {
    Dir {
        dest: String,
        meta: Option<Metadata>,
    },
    File {
        dest: String,
        src: PathBuf,
        meta: Metadata,
    },
    Symlink {
        dest: String,
        target: PathBuf,
        meta: Metadata,
    },
    Data {
        dest: String,
        data: Vec<u8>,
    },
    Archive {
        dest: String,
        src: PathBuf,
    },
}

struct Owner {
    uid: u64,
    gid: u64,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = open_nofollow(path) else {
        return false;
    };
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    (n >= 2 && head[..2] == [0x1f, 0x8b]) || (n >= 262 && &head[257..262] == b"ustar")
}

pub(super) fn copy_step(b: &mut Builder<'_>, st: &mut Stage, ins: &Instruction) -> Result<(), String> {
    let is_add = ins.keyword == "ADD";
    let escape = b.escape;
    let snapshot = st.clone();
    let lookup = move |k: &str| snapshot.env_value(k);
    let expand = |s: &str| shell_lex::word(s, escape, &lookup).map_err(|e| at(ins, e));
    for (k, _) in &ins.flags {
        let ok = matches!(k.as_str(), "from" | "chown" | "chmod" | "link") || (is_add && k == "checksum");
        if !ok {
            return Err(at(ins, format!("unknown flag: --{k}")));
        }
    }
    let mut args: Vec<String> = match &ins.json {
        Some(v) => v.iter().map(|s| expand(s)).collect::<Result<_, _>>()?,
        None => shell_lex::words(&ins.rest, escape, &lookup).map_err(|e| at(ins, e))?,
    };
    if args.len() < 2 {
        return Err(at(
            ins,
            format!("{} requires at least two arguments", ins.keyword),
        ));
    }
    let dest_raw = args.pop().unwrap_or_default();
    let dest_is_dir_syntax = dest_raw.ends_with('/') || dest_raw.ends_with("/.") || dest_raw == ".";
    let dest_abs = if dest_raw.starts_with('/') {
        dest_raw.clone()
    } else {
        format!("{}/{dest_raw}", st.working_dir())
    };
    let dest = components(&dest_abs).join("/");
    let view = RootfsView::new(b.layers_of(st));
    let owner = match ins.flag("chown") {
        Some(spec) => {
            let spec = expand(spec)?;
            let id = user::resolve(
                &spec,
                &view.read_text("/etc/passwd"),
                &view.read_text("/etc/group"),
            )
            .map_err(|e| at(ins, format!("--chown={spec}: {e}")))?;
            Some(Owner {
                uid: id.uid as u64,
                gid: id.gid as u64,
            })
        }
        None => None,
    };
    let chmod = match ins.flag("chmod") {
        Some(m) => Some(
            u32::from_str_radix(m, 8)
                .map_err(|_| at(ins, format!("invalid --chmod={m}: not an octal mode")))?
                & 0o7777,
        ),
        None => None,
    };
    // Resolve the sources to host paths.
    let mut sources: Vec<(String, Option<PathBuf>, Option<Vec<u8>>)> = Vec::new();
    let from = ins.flag("from").map(&expand).transpose()?;
    let from_view = match &from {
        Some(name) => Some(RootfsView::new(b.layers_of_named(name).map_err(|e| at(ins, e))?)),
        None => None,
    };
    let ctx_view = RootfsView::new(vec![b.context.to_path_buf()]);
    for src in &args {
        if let Some(name) = src.strip_prefix("<<") {
            let name = name
                .trim_start_matches('-')
                .trim_matches(|c| c == '"' || c == '\'');
            let doc = ins
                .heredocs
                .iter()
                .find(|d| d.name == name)
                .ok_or_else(|| at(ins, format!("no heredoc named {name}")))?;
            let content = if doc.expand {
                expand(&doc.content)?
            } else {
                doc.content.clone()
            };
            sources.push((name.to_string(), None, Some(content.into_bytes())));
            continue;
        }
        if is_add && (src.starts_with("http://") || src.starts_with("https://") || src.starts_with("git@")) {
            return Err(at(ins, format!("ADD from a URL is not supported: {src}")));
        }
        if let Some(v) = &from_view {
            let pattern = components(src).join("/");
            if has_glob(&pattern) {
                let depth = pattern.split('/').count();
                let mut matches = Vec::new();
                walk_view(v, &mut Vec::new(), depth, &mut |rel, host| {
                    if glob_match(&pattern, rel) {
                        matches.push((
                            rel.rsplit('/').next().unwrap_or(rel).to_string(),
                            host.to_path_buf(),
                        ));
                    }
                });
                if matches.is_empty() {
                    return Err(at(
                        ins,
                        format!("{} failed: no source files were specified", ins.keyword),
                    ));
                }
                for (name, host) in matches {
                    sources.push((name, Some(host), None));
                }
                continue;
            }
            let (_, host, _) = v.resolve(src, true).ok_or_else(|| {
                at(
                    ins,
                    format!(
                        "{} failed: {src}: no such file or directory in {}",
                        ins.keyword,
                        from.as_deref().unwrap_or("")
                    ),
                )
            })?;
            let name = components(src).last().cloned().unwrap_or_default();
            sources.push((name, Some(host), None));
            continue;
        }
        let raw = src.trim_start_matches('/');
        let clean = components(raw).join("/");
        if depth_escapes(raw) {
            return Err(at(
                ins,
                format!("forbidden path outside the build context: {src}"),
            ));
        }
        if has_glob(&clean) {
            let mut matches = Vec::new();
            walk_context(b.context, "", &mut |rel| {
                if glob_match(&clean, rel) {
                    matches.push(rel.to_string());
                }
            });
            matches.sort();
            if matches.is_empty() {
                return Err(at(
                    ins,
                    format!("{} failed: no source files were specified", ins.keyword),
                ));
            }
            for m in matches {
                let name = m.rsplit('/').next().unwrap_or(&m).to_string();
                let (_, host, _) = ctx_view.resolve(&m, true).ok_or_else(|| {
                    at(
                        ins,
                        format!(
                            "{} failed: {m}: a symlink that leads nowhere in the context",
                            ins.keyword
                        ),
                    )
                })?;
                sources.push((name, Some(host), None));
            }
        } else {
            // Symlinks are followed inside the context only, never out to the host.
            let Some((_, host, _)) = ctx_view.resolve(&clean, true) else {
                return Err(at(
                    ins,
                    format!(
                        "{} failed: file not found in build context or excluded by .dockerignore: stat {clean}: file does not exist",
                        ins.keyword
                    ),
                ));
            };
            let name = components(&clean).last().cloned().unwrap_or_default();
            sources.push((name, Some(host), None));
        }
    }
    if sources.len() > 1 && !dest_is_dir_syntax {
        return Err(at(
            ins,
            format!(
                "When using {} with more than one source file, the destination must be a directory and end with a /",
                ins.keyword
            ),
        ));
    }
    let dest_is_dir = dest_is_dir_syntax || sources.len() > 1 || dest.is_empty() || view.is_dir(&dest);
    let mut items = Vec::new();
    for (name, host, data) in sources {
        let target = if dest_is_dir {
            join(&dest, &name)
        } else {
            dest.clone()
        };
        if let Some(data) = data {
            items.push(Item::Data { dest: target, data });
            continue;
        }
        let host = host.unwrap_or_default();
        // Already resolved: a source that was a symlink is its (confined) target here.
        let meta = fs::symlink_metadata(&host).map_err(|e| at(ins, format!("{}: {e}", host.display())))?;
        if meta.is_dir() {
            items.push(Item::Dir {
                dest: dest.clone(),
                meta: (!view.exists(&dest)).then_some(meta),
            });
            add_tree(&host, &dest, &mut items).map_err(|e| at(ins, e.to_string()))?;
        } else if is_add && from.is_none() && is_archive(&host) {
            items.push(Item::Archive {
                dest: dest.clone(),
                src: host,
            });
        } else {
            items.push(Item::File {
                dest: target,
                src: host,
                meta,
            });
        }
    }
    // Parent directories the image lacks are created (owned like the copied files).
    let mut parents = BTreeSet::new();
    for it in &items {
        let d = item_dest(it);
        let comps = components(d);
        for i in 1..comps.len() {
            let p = comps[..i].join("/");
            if !view.exists(&p) {
                parents.insert(p);
            }
        }
        if matches!(it, Item::Archive { .. }) && !d.is_empty() && !view.exists(d) {
            parents.insert(d.to_string());
        }
    }
    let digest = content_digest(&items, &owner, chmod).map_err(|e| at(ins, e.to_string()))?;
    let srcs_shown = match &from {
        Some(f) => format!("--from={f} {}", args.join(" ")),
        None => args.join(" "),
    };
    let created_by = format!("/bin/sh -c #(nop) {} {srcs_shown} in /{dest} ", ins.keyword);
    let extra = format!(
        "{digest} chown={:?} chmod={chmod:?}",
        owner.as_ref().map(|o| (o.uid, o.gid))
    );
    let key = b.cache_key(st, &created_by, &extra);
    if b.try_cache(st, &key) {
        return Ok(());
    }
    let tar = temp_path(b.store, "copy");
    let _guard = TempGuard(tar.clone());
    let f = File::create(&tar).map_err(|e| format!("{}: {e}", tar.display()))?;
    write_tar(io::BufWriter::new(f), &parents, &items, &owner, chmod).map_err(|e| at(ins, e.to_string()))?;
    b.commit_layer(st, &key, created_by, &tar)
}

/// True when a relative path climbs above its start (`../x`, `a/../../x`).
fn depth_escapes(raw: &str) -> bool {
    let mut depth: i64 = 0;
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn item_dest(it: &Item) -> &str {
    match it {
        Item::Dir { dest, .. }
        | Item::File { dest, .. }
        | Item::Symlink { dest, .. }
        | Item::Data { dest, .. }
        | Item::Archive { dest, .. } => dest,
    }
}

fn walk_context(root: &Path, rel: &str, f: &mut dyn FnMut(&str)) {
    let dir = root.join(rel);
    let Ok(rd) = fs::read_dir(&dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = join(rel, &name);
        f(&r);
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_context(root, &r, f);
        }
    }
}

/// Every entry of an image down to `depth` path components, in name order, with its host path.
fn walk_view(view: &RootfsView, comps: &mut Vec<String>, depth: usize, f: &mut dyn FnMut(&str, &Path)) {
    for (name, host) in view.read_dir(comps) {
        comps.push(name);
        f(&comps.join("/"), &host);
        let is_dir = fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir());
        if is_dir && comps.len() < depth {
            walk_view(view, comps, depth, f);
        }
        comps.pop();
    }
}

/// The contents of a source directory, under `dest`.
fn add_tree(src: &Path, dest: &str, items: &mut Vec<Item>) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(src)?.collect::<Result<_, _>>()?;
    crate::sort::sort_by_key(&mut entries, |e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let d = join(dest, &name);
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            items.push(Item::Dir {
                dest: d.clone(),
                meta: Some(meta),
            });
            add_tree(&path, &d, items)?;
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(&path)?;
            items.push(Item::Symlink {
                dest: d,
                target,
                meta,
            });
        } else if meta.is_file() {
            items.push(Item::File {
                dest: d,
                src: path,
                meta,
            });
        }
    }
    Ok(())
}

/// What the cache key needs to know about the files: paths, modes and content.
fn content_digest(items: &[Item], _owner: &Option<Owner>, _chmod: Option<u32>) -> io::Result<String> {
    let mut h = Sha256::new();
    for it in items {
        h.update(item_dest(it).as_bytes());
        h.update([0]);
        match it {
            Item::Dir { meta, .. } => {
                h.update(format!("d{:o}", meta.as_ref().map_or(0o755, |m| m.mode())));
            }
            Item::File { src, meta, .. } => {
                h.update(format!("f{:o}:{}:", meta.mode(), meta.len()));
                io::copy(&mut open_nofollow(src)?, &mut h)?;
            }
            Item::Archive { src, .. } => {
                h.update("a");
                io::copy(&mut open_nofollow(src)?, &mut h)?;
            }
            Item::Symlink { target, .. } => {
                h.update(format!("l{}", target.display()));
            }
            Item::Data { data, .. } => {
                h.update("c");
                h.update(data);
            }
        }
        h.update([0]);
    }
    Ok(crate::image::layer::digest_string(h))
}

fn own(h: &mut tar::Header, owner: &Option<Owner>) {
    match owner {
        Some(o) => {
            h.set_uid(o.uid);
            h.set_gid(o.gid);
        }
        None => {
            h.set_uid(0);
            h.set_gid(0);
        }
    }
}

fn dir_header(meta: Option<&Metadata>, owner: &Option<Owner>, chmod: Option<u32>) -> tar::Header {
    let mut h = match meta {
        Some(m) => header_from(m, tar::EntryType::Directory),
        None => {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_mtime(0);
            h.set_size(0);
            h
        }
    };
    if let Some(m) = chmod {
        h.set_mode(m);
    }
    own(&mut h, owner);
    h
}

fn write_tar(
    out: impl Write,
    parents: &BTreeSet<String>,
    items: &[Item],
    owner: &Option<Owner>,
    chmod: Option<u32>,
) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    for p in parents {
        let mut h = dir_header(None, owner, None);
        b.append_data(&mut h, format!("{p}/"), io::empty())?;
    }
    for it in items {
        match it {
            Item::Dir { dest, meta } => {
                if dest.is_empty() || parents.contains(dest) {
                    continue;
                }
                let Some(meta) = meta else { continue };
                let mut h = dir_header(Some(meta), owner, chmod);
                b.append_data(&mut h, format!("{dest}/"), io::empty())?;
            }
            Item::File { dest, src, meta } => {
                let mut h = header_from(meta, tar::EntryType::Regular);
                if let Some(m) = chmod {
                    h.set_mode(m);
                }
                own(&mut h, owner);
                h.set_size(meta.len());
                b.append_data(&mut h, dest, BufReader::new(open_nofollow(src)?))?;
            }
            Item::Symlink { dest, target, meta } => {
                let mut h = header_from(meta, tar::EntryType::Symlink);
                own(&mut h, owner);
                b.append_link(&mut h, dest, target)?;
            }
            Item::Data { dest, data } => {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(chmod.unwrap_or(0o644));
                h.set_mtime(0);
                own(&mut h, owner);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, dest, &data[..])?;
            }
            Item::Archive { dest, src } => {
                let f = BufReader::new(open_nofollow(src)?);
                let mut gz_check = [0u8; 2];
                open_nofollow(src)?.read_exact(&mut gz_check).ok();
                let input: Box<dyn Read> = if gz_check == [0x1f, 0x8b] {
                    Box::new(flate2::read::MultiGzDecoder::new(f))
                } else {
                    Box::new(f)
                };
                let mut ar = tar::Archive::new(input);
                for e in ar.entries()? {
                    let mut e = e?;
                    let path = crate::image::entry_path::normalize(&e.path_bytes()).map_err(|err| {
                        io::Error::new(io::ErrorKind::InvalidData, format!("{}: {err}", src.display()))
                    })?;
                    if path.is_empty() {
                        continue;
                    }
                    let out_path = join(dest, &path);
                    let mut h = e.header().clone();
                    if owner.is_some() {
                        own(&mut h, owner);
                    }
                    let kind = h.entry_type();
                    if kind.is_symlink() || kind.is_hard_link() {
                        let target = e.link_name()?.map(|t| t.into_owned()).unwrap_or_default();
                        let target = if kind.is_hard_link() {
                            PathBuf::from(join(dest, &components(&target.to_string_lossy()).join("/")))
                        } else {
                            target
                        };
                        b.append_link(&mut h, &out_path, target)?;
                    } else if kind.is_dir() {
                        b.append_data(&mut h, format!("{out_path}/"), io::empty())?;
                    } else if kind.is_file() || kind == tar::EntryType::Continuous {
                        let size = h.size()?;
                        b.append_data(&mut h, &out_path, (&mut e).take(size))?;
                    } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
                        b.append_data(&mut h, &out_path, io::empty())?;
                    }
                }
            }
        }
    }
    b.into_inner()?.flush()
}
