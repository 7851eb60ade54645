//! Kernel module load order from `modules.dep` (pure).
//!
//! modules.dep lines read `kernel/a/x.ko: kernel/b/y.ko kernel/c/z.ko`, the dependencies
//! listed so that loading them right to left satisfies each before its users. [`load_order`]
//! returns every wanted module after all of its dependencies, each once.

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
}
