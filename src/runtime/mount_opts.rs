//! Mount options as words (`ro`, `nosuid`, `rbind`, `rslave`, `size=64m`, `mode=1777`) into
//! what mount(2) takes: flags to set, a propagation change, and the file system's data
//! string. Pure; the container's init applies the result.

use libc::c_ulong;

/// Options parsed for one mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// MS_* flags for the mount (or the read-only/nosuid/... remount of a bind).
    pub flags: c_ulong,
    /// MS_PRIVATE/MS_SHARED/MS_SLAVE/MS_UNBINDABLE, with MS_REC for the `r` forms; 0 = none.
    pub propagation: c_ulong,
    /// `bind` or `rbind` was given.
    pub bind: bool,
    pub recursive: bool,
    /// Comma-joined file system options (`size=65536k,mode=1777`).
    pub data: String,
}

/// Parse mount option words; an unknown word or a malformed value is an error naming it.
pub fn parse<S: AsRef<str>>(options: &[S]) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    let mut data = Vec::new();
    for o in options {
        let o = o.as_ref().trim();
        let set = |p: &mut Parsed, f: c_ulong| p.flags |= f;
        let clear = |p: &mut Parsed, f: c_ulong| p.flags &= !f;
        match o {
            "" | "defaults" => {}
            "ro" => set(&mut p, libc::MS_RDONLY),
            "rw" => clear(&mut p, libc::MS_RDONLY),
            "nosuid" => set(&mut p, libc::MS_NOSUID),
            "suid" => clear(&mut p, libc::MS_NOSUID),
            "nodev" => set(&mut p, libc::MS_NODEV),
            "dev" => clear(&mut p, libc::MS_NODEV),
            "noexec" => set(&mut p, libc::MS_NOEXEC),
            "exec" => clear(&mut p, libc::MS_NOEXEC),
            "sync" => set(&mut p, libc::MS_SYNCHRONOUS),
            "async" => clear(&mut p, libc::MS_SYNCHRONOUS),
            "dirsync" => set(&mut p, libc::MS_DIRSYNC),
            "noatime" => set(&mut p, libc::MS_NOATIME),
            "atime" => clear(&mut p, libc::MS_NOATIME),
            "nodiratime" => set(&mut p, libc::MS_NODIRATIME),
            "diratime" => clear(&mut p, libc::MS_NODIRATIME),
            "relatime" => set(&mut p, libc::MS_RELATIME),
            "norelatime" => clear(&mut p, libc::MS_RELATIME),
            "strictatime" => set(&mut p, libc::MS_STRICTATIME),
            "bind" => p.bind = true,
            "rbind" => {
                p.bind = true;
                p.recursive = true;
            }
            "private" => p.propagation = libc::MS_PRIVATE,
            "rprivate" => p.propagation = libc::MS_PRIVATE | libc::MS_REC,
            "shared" => p.propagation = libc::MS_SHARED,
            "rshared" => p.propagation = libc::MS_SHARED | libc::MS_REC,
            "slave" => p.propagation = libc::MS_SLAVE,
            "rslave" => p.propagation = libc::MS_SLAVE | libc::MS_REC,
            "unbindable" => p.propagation = libc::MS_UNBINDABLE,
            "runbindable" => p.propagation = libc::MS_UNBINDABLE | libc::MS_REC,
            _ => match o.split_once('=') {
                Some(("size", v)) => {
                    check_size(v).map_err(|e| format!("invalid tmpfs size {v:?}: {e}"))?;
                    data.push(o.to_string());
                }
                Some(("mode", v)) => {
                    if v.is_empty() || u32::from_str_radix(v, 8).map_or(true, |m| m > 0o7777) {
                        return Err(format!("invalid mode {v:?}: expected octal permission bits"));
                    }
                    data.push(o.to_string());
                }
                Some(("nr_inodes" | "nr_blocks", v)) => {
                    check_size(v).map_err(|e| format!("invalid {o:?}: {e}"))?;
                    data.push(o.to_string());
                }
                Some(("uid" | "gid", v)) => {
                    v.parse::<u32>()
                        .map_err(|_| format!("invalid {o:?}: not a number"))?;
                    data.push(o.to_string());
                }
                Some(("huge" | "mpol" | "tmpcopyup", _)) => data.push(o.to_string()),
                _ => return Err(format!("unknown mount option {o:?}")),
            },
        }
    }
    // Later words win for data keys, as they would for the kernel; keep one of each.
    let mut seen = Vec::new();
    for d in data.iter().rev() {
        let key = d.split('=').next().unwrap_or(d);
        if !seen.iter().any(|(k, _): &(&str, &String)| *k == key) {
            seen.push((key, d));
        }
    }
    seen.reverse();
    p.data = seen
        .into_iter()
        .map(|(_, d)| d.as_str())
        .collect::<Vec<_>>()
        .join(",");
    Ok(p)
}

/// tmpfs sizes: a number with an optional k/m/g/t/p/e suffix, or a percentage of RAM.
fn check_size(v: &str) -> Result<(), &'static str> {
    let digits = v.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', 't', 'T', 'p', 'P', 'e', 'E', '%']);
    let suffix_len = v.len() - digits.len();
    if digits.is_empty() || suffix_len > 1 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a number with an optional k, m or g suffix");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_data() {
        let p = parse(&["noexec", "nosuid", "nodev", "rw", "size=64m", "mode=1777"]).unwrap();
        assert_eq!(p.flags, libc::MS_NOEXEC | libc::MS_NOSUID | libc::MS_NODEV);
        assert_eq!(p.data, "size=64m,mode=1777");
        assert_eq!(p.propagation, 0);
        // A later word undoes an earlier default.
        let p = parse(&["noexec", "exec", "ro"]).unwrap();
        assert_eq!(p.flags, libc::MS_RDONLY);
        let p = parse(&["rbind", "rslave"]).unwrap();
        assert!(p.bind && p.recursive);
        assert_eq!(p.propagation, libc::MS_SLAVE | libc::MS_REC);
        assert_eq!(parse(&["size=1m", "size=2m"]).unwrap().data, "size=2m");
    }

    #[test]
    fn bad_words_are_named() {
        assert!(parse(&["bogus"]).unwrap_err().contains("bogus"));
        assert!(parse(&["size=lots"]).unwrap_err().contains("lots"));
        assert!(parse(&["size=12mm"]).is_err());
        assert!(parse(&["mode=999"]).is_err());
        assert!(parse(&["mode=17777"]).is_err());
        assert!(parse(&["uid=x"]).is_err());
        assert!(parse(&["size=50%"]).is_ok());
    }
}
