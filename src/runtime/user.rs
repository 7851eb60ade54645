//! `--user` resolution against the image's own /etc/passwd and /etc/group (never the host's,
//! never NSS): "", "name", "uid", "uid:gid", "name:group", "uid:group", "name:gid".

/// The identity a container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: every group of /etc/group listing the user by name.
    pub groups: Vec<u32>,
    /// The home directory from /etc/passwd ("/" when the user has no entry).
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f.get(5).copied().unwrap_or("/"),
        })
    })
}

/// (name, gid, members) of each /etc/group line.
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 {
            return None;
        }
        let members = f
            .get(3)
            .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolve `user` given the contents of the image's /etc/passwd and /etc/group (empty strings
/// when the files are missing). Errors read like Docker's.
pub fn resolve(user: &str, passwd: &str, group: &str) -> Result<Identity, String> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let by_name = passwd_entries(passwd).find(|e| e.name == user_part);
    let (uid, mut gid, name, home) = match (by_name, user_part.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name), e.home.to_string()),
        (None, Ok(uid)) => match passwd_entries(passwd).find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, Some(e.name), e.home.to_string()),
            None => (uid, 0, None, "/".to_string()),
        },
        (None, Err(_)) => {
            return Err(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            ))
        }
    };
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match group_entries(group).find(|(n, _, _)| *n == g) {
            Some((_, id, _)) => id,
            None => g
                .parse()
                .map_err(|_| format!("unable to find group {g}: no matching entries in group file"))?,
        };
    }
    let mut groups = vec![];
    if let Some(name) = name {
        for (_, id, members) in group_entries(group) {
            if members.contains(&name) && !groups.contains(&id) && id != gid {
                groups.push(id);
            }
        }
    }
    Ok(Identity {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1::/usr/sbin:/bin/false\n\
                          www:x:33:33:www:/var/www:/bin/false\nbad line\n";
    const GROUP: &str = "root:x:0:\ndaemon:x:1:\nwww:x:33:\nwheel:x:10:root,www\naudio:x:29:www\n";

    #[test]
    fn empty_is_root_with_its_groups() {
        let id = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!(
            (id.uid, id.gid, id.groups, id.home.as_str()),
            (0, 0, vec![10], "/root")
        );
    }

    #[test]
    fn name_uid_and_group_forms() {
        let id = resolve("www", PASSWD, GROUP).unwrap();
        assert_eq!((id.uid, id.gid, id.groups), (33, 33, vec![10, 29]));
        let id = resolve("33:wheel", PASSWD, GROUP).unwrap();
        assert_eq!((id.uid, id.gid), (33, 10));
        let id = resolve("1000:1000", PASSWD, GROUP).unwrap();
        assert_eq!(
            (id.uid, id.gid, id.groups.len(), id.home.as_str()),
            (1000, 1000, 0, "/")
        );
        let id = resolve("daemon:5", PASSWD, GROUP).unwrap();
        assert_eq!((id.uid, id.gid), (1, 5));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(resolve("nobody", PASSWD, GROUP)
            .unwrap_err()
            .contains("unable to find user nobody"));
        assert!(resolve("www:staff", PASSWD, GROUP)
            .unwrap_err()
            .contains("unable to find group staff"));
        assert!(resolve("7", "", "").is_ok());
    }
}
