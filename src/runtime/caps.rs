//! Capability sets: names ⇄ numbers and the set a container gets (Docker's default set,
//! adjusted by `--cap-add`/`--cap-drop`, or every capability when privileged).

/// Capability names in kernel numbering order (CAP_CHOWN = 0 ...).
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's default capability set.
pub const DOCKER_DEFAULT: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// The number of a capability given as "NET_ADMIN", "CAP_NET_ADMIN" or "net_admin".
pub fn number(name: &str) -> Option<u32> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES.iter().position(|n| *n == bare).map(|i| i as u32)
}

/// The bit mask of a capability number.
pub fn bit(cap: u32) -> u64 {
    1u64 << cap
}

/// Every capability up to and including `last`.
pub fn all(last: u32) -> u64 {
    if last >= 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    }
}

/// The capability mask for a container or exec: privileged gets every capability up to
/// `last`; otherwise Docker's default set, then `add`, then `drop` ("ALL" allowed in both,
/// with Docker's precedence: dropping ALL then adding some keeps only those added).
pub fn resolve(privileged: bool, add: &[String], drop: &[String], last: u32) -> Result<u64, String> {
    let everything = all(last);
    if privileged {
        return Ok(everything);
    }
    let parse = |list: &[String]| -> Result<(bool, u64), String> {
        let mut mask = 0;
        let mut has_all = false;
        for name in list {
            if name.trim().eq_ignore_ascii_case("ALL") {
                has_all = true;
                continue;
            }
            let n = number(name).ok_or_else(|| format!("unknown capability: {name:?}"))?;
            mask |= bit(n);
        }
        Ok((has_all, mask))
    };
    let (add_all, add_mask) = parse(add)?;
    let (drop_all, drop_mask) = parse(drop)?;
    let mut set: u64 = DOCKER_DEFAULT.iter().filter_map(|n| number(n)).map(bit).sum();
    if drop_all {
        set = 0;
    }
    if add_all {
        set = everything;
    }
    set |= add_mask;
    set &= !drop_mask;
    if drop_all {
        set = add_mask & !drop_mask;
    }
    Ok(set & everything)
}

/// Names of the capabilities in `mask`, in kernel order.
pub fn names(mask: u64) -> Vec<&'static str> {
    NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & bit(*i as u32) != 0)
        .map(|(_, n)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn docker_default_is_0xa80425fb() {
        // The CapEff a root process shows in a default Docker container.
        assert_eq!(resolve(false, &[], &[], 40).unwrap(), 0xa80425fb);
    }

    #[test]
    fn add_and_drop_accept_both_spellings() {
        let m = resolve(false, &s(&["CAP_NET_ADMIN"]), &s(&["chown"]), 40).unwrap();
        assert!(m & bit(number("NET_ADMIN").unwrap()) != 0);
        assert!(m & bit(0) == 0);
    }

    #[test]
    fn drop_all_keeps_only_added() {
        let m = resolve(false, &s(&["NET_RAW"]), &s(&["ALL"]), 40).unwrap();
        assert_eq!(names(m), vec!["NET_RAW"]);
    }

    #[test]
    fn privileged_gets_everything_and_unknown_is_an_error() {
        assert_eq!(resolve(true, &[], &[], 40).unwrap(), all(40));
        assert!(resolve(false, &s(&["FLY"]), &[], 40).unwrap_err().contains("FLY"));
    }
}
