//! Kernel module load order from depmod's files (pure).
//!
//! modules.dep lines read `kernel/a/x.ko: kernel/b/y.ko kernel/c/z.ko`, the dependencies
//! listed so that loading them right to left satisfies each before its users. [`load_order`]
//! returns every wanted module after all of its dependencies, each once.
//!
//! The kernel asks for modules by alias (`fs-overlay`, `rtnl-link-bridge`,
//! `nft-expr-ct`) when a feature is first used; [`resolve`] turns such a request into module
//! names through modules.alias (shell-style patterns) and modules.softdep (`pre:` modules
//! that must be loaded first, such as crc32c before libcrc32c).

use std::collections::BTreeMap;

use super::check_config::module_file_name;

/// Module name ("nf_tables") → (path relative to the module dir, dependency paths).
pub type DepMap = BTreeMap<String, (String, Vec<String>)>;

/// Parses modules.dep text.
pub fn parse_modules_dep(text: &str) -> DepMap {
    let mut map = DepMap::new();
    for line in text.lines() {
        let Some((path, deps)) = line.split_once(':') else {
            continue;
        };
        let path = path.trim();
        if path.is_empty() {
            continue;
        }
        let deps = deps.split_whitespace().map(str::to_string).collect();
        map.insert(module_file_name(path), (path.to_string(), deps));
    }
    map
}

/// Paths to load, dependencies first, for the `wanted` module names; unknown names are
/// reported as errors (and skipped).
pub fn load_order(deps: &DepMap, wanted: &[&str]) -> (Vec<String>, Vec<String>) {
    let mut order: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    for name in wanted {
        let key = name.replace('-', "_");
        let Some((path, dep_paths)) = deps.get(&key) else {
            errors.push(format!("module {name} is not in modules.dep"));
            continue;
        };
        // modules.dep lists the full closure; the last one has no dependency among them.
        for p in dep_paths.iter().rev().chain(std::iter::once(path)) {
            if !order.contains(p) {
                order.push(p.clone());
            }
        }
    }
    (order, errors)
}

/// The lines of modules.alias: (pattern, module name).
pub fn parse_aliases(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("alias")).then_some(())?;
            let (pattern, module) = (words.next()?, words.next()?);
            Some((pattern.to_string(), module.replace('-', "_")))
        })
        .collect()
}

/// modules.softdep: module name → the modules to load before it (`pre:`).
pub fn parse_softdeps(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("softdep") {
            continue;
        }
        let Some(module) = words.next() else { continue };
        let mut pre = Vec::new();
        let mut in_pre = false;
        for w in words {
            match w {
                "pre:" => in_pre = true,
                "post:" => in_pre = false,
                name if in_pre => pre.push(name.replace('-', "_")),
                _ => {}
            }
        }
        map.insert(module.replace('-', "_"), pre);
    }
    map
}

/// fnmatch-style matching as modprobe does for aliases: `*`, `?` and `[...]` classes.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matcher with one backtrack point for the last `*`: linear in practice.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => class_match(&p, pi, n[ni]),
            Some(c) if *c == n[ni] => Some(pi + 1),
            _ => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ni += 1;
            }
            (None, Some((sp, sn))) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Matches `c` against the class starting at `p[open] == '['`; the index after `]` when it
/// matches. An unterminated class is a literal `[`.
fn class_match(p: &[char], open: usize, c: char) -> Option<usize> {
    let mut i = open + 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    while let Some(&ch) = p.get(i) {
        if ch == ']' && !first {
            return (found != negate).then_some(i + 1);
        }
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|e| *e != ']') {
            found |= (ch..=p[i + 2]).contains(&c);
            i += 3;
        } else {
            found |= ch == c;
            i += 1;
        }
        first = false;
    }
    (c == '[').then_some(open + 1)
}

/// What a `modprobe NAME` request means.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// Module names to load (each with its dependencies), soft dependencies first.
    Load(Vec<String>),
    /// Built into the kernel: nothing to do.
    BuiltIn,
    NotFound,
}

/// Resolves a module name or alias, as modprobe does: a module of that name, else every
/// module whose alias pattern matches, else a built-in module.
pub fn resolve(
    request: &str,
    deps: &DepMap,
    aliases: &[(String, String)],
    softdeps: &BTreeMap<String, Vec<String>>,
    builtin: &[String],
) -> Resolved {
    let key = request.replace('-', "_");
    let mut names: Vec<String> = if deps.contains_key(&key) {
        vec![key.clone()]
    } else {
        aliases
            .iter()
            .filter(|(pattern, _)| glob_match(pattern, request))
            .map(|(_, m)| m.clone())
            .collect()
    };
    names.dedup();
    if names.is_empty() {
        return if builtin.contains(&key) {
            Resolved::BuiltIn
        } else {
            Resolved::NotFound
        };
    }
    let mut out = Vec::new();
    for name in names {
        for pre in softdeps.get(&name).into_iter().flatten() {
            if deps.contains_key(pre) && !out.contains(pre) {
                out.push(pre.clone());
            }
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Resolved::Load(out)
}

/// Module names in modules.builtin (paths such as `kernel/fs/ext4/ext4.ko`).
pub fn parse_builtin(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(module_file_name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/net/bridge/br_netfilter.ko: kernel/net/bridge/bridge.ko kernel/net/802/stp.ko kernel/net/llc/llc.ko\n\
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko\n\
kernel/net/802/stp.ko: kernel/net/llc/llc.ko\n\
kernel/net/llc/llc.ko:\n\
kernel/drivers/net/veth.ko:\n";

    #[test]
    fn dependencies_come_first_and_once() {
        let deps = parse_modules_dep(DEP);
        let (order, errors) = load_order(&deps, &["veth", "br_netfilter", "bridge", "nope"]);
        assert_eq!(
            order,
            vec![
                "kernel/drivers/net/veth.ko",
                "kernel/net/llc/llc.ko",
                "kernel/net/802/stp.ko",
                "kernel/net/bridge/bridge.ko",
                "kernel/net/bridge/br_netfilter.ko",
            ]
        );
        assert_eq!(errors, vec!["module nope is not in modules.dep"]);
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert!(parse_modules_dep("no colon here\n: x\n").is_empty());
    }

    #[test]
    fn glob_patterns_match_as_fnmatch() {
        assert!(glob_match("fs-overlay", "fs-overlay"));
        assert!(!glob_match("fs-overlay", "fs-overlayfs"));
        assert!(glob_match(
            "pci:v00001AF4d*sv*sd*bc*sc*i*",
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
        ));
        assert!(glob_match("nft-expr-?-ct", "nft-expr-2-ct"));
        assert!(glob_match("virtio:d00000001v*", "virtio:d00000001v00001AF4"));
        assert!(!glob_match("virtio:d00000001v*", "virtio:d00000002v00001AF4"));
        assert!(glob_match("net-pf-[0-9]*", "net-pf-16"));
        assert!(!glob_match("net-pf-[!0-9]", "net-pf-1"));
        assert!(glob_match("a*b*c", "aXXbYYbc"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("[", "x"));
        assert!(glob_match("[", "["));
    }

    #[test]
    fn requests_resolve_by_name_alias_softdep_and_builtin() {
        let deps = parse_modules_dep(
            "kernel/fs/overlayfs/overlay.ko:\nkernel/lib/libcrc32c.ko:\nkernel/arch/x86/crypto/crc32c-intel.ko:\nkernel/net/netfilter/nf_tables.ko: kernel/lib/libcrc32c.ko\n",
        );
        let aliases = parse_aliases(
            "# Aliases extracted from modules themselves.\nalias fs-overlay overlay\nalias nfnetlink-subsys-10 nf_tables\nalias crypto-crc32c crc32c-intel\nbogus line\n",
        );
        let soft =
            parse_softdeps("# Soft dependencies\nsoftdep libcrc32c pre: crc32c-intel crc32c post: x\n");
        let builtin = parse_builtin("kernel/fs/ext4/ext4.ko\n");
        let r = |n: &str| resolve(n, &deps, &aliases, &soft, &builtin);
        assert_eq!(r("overlay"), Resolved::Load(vec!["overlay".into()]));
        assert_eq!(r("fs-overlay"), Resolved::Load(vec!["overlay".into()]));
        assert_eq!(r("nfnetlink-subsys-10"), Resolved::Load(vec!["nf_tables".into()]));
        assert_eq!(
            r("libcrc32c"),
            Resolved::Load(vec!["crc32c_intel".into(), "libcrc32c".into()])
        );
        assert_eq!(r("crc32c-intel"), Resolved::Load(vec!["crc32c_intel".into()]));
        assert_eq!(r("ext4"), Resolved::BuiltIn);
        assert_eq!(r("fs-nope"), Resolved::NotFound);
    }
}
