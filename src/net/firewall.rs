//! nftables rules for bridge networks: isolation, `--internal`, masquerading.
//!
//! Guarantees: all of shoal's rules live in one table, `ip shoal`, replaced as a whole in one
//! nft transaction (never a half-applied rule set); traffic between two shoal bridges is
//! dropped; an internal network's traffic never leaves its bridge; other networks reach the
//! outside through masquerading. [`ruleset`] is pure; [`apply`] runs `nft` inside the given
//! namespace.

use super::ipam::Subnet;
use super::netns::{self, Netns};
use std::io::{self, Write};
use std::process::{Command, Stdio};

pub const TABLE: &str = "shoal";

/// What the rules need to know about one bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeRules {
    pub bridge: String,
    pub subnet: Subnet,
    pub internal: bool,
}

/// Whether an `nft` binary is on PATH.
pub fn available() -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("nft").is_file()))
        .unwrap_or(false)
}

fn quoted(name: &str) -> String {
    // Interface names never hold quotes (checked at network creation); be safe anyway.
    format!("\"{}\"", name.replace('"', ""))
}

/// The complete nft script: recreate table `ip shoal` with rules for `bridges`.
pub fn ruleset(bridges: &[BridgeRules]) -> String {
    let mut s = format!("table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n");
    s.push_str("  set bridges {\n    type ifname\n");
    if !bridges.is_empty() {
        let names: Vec<String> = bridges.iter().map(|b| quoted(&b.bridge)).collect();
        s.push_str(&format!("    elements = {{ {} }}\n", names.join(", ")));
    }
    s.push_str("  }\n");
    s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    for b in bridges {
        let q = quoted(&b.bridge);
        if b.internal {
            s.push_str(&format!("    iifname {q} oifname != {q} drop\n"));
            s.push_str(&format!("    oifname {q} iifname != {q} drop\n"));
        } else {
            s.push_str(&format!("    iifname {q} oifname != {q} oifname @bridges drop\n"));
        }
    }
    s.push_str("  }\n");
    s.push_str("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
    for b in bridges.iter().filter(|b| !b.internal) {
        s.push_str(&format!(
            "    ip saddr {} oifname != {} masquerade\n",
            b.subnet,
            quoted(&b.bridge)
        ));
    }
    s.push_str("  }\n}\n");
    s
}

fn run_nft(ns: &Netns, args: &[&str], stdin: Option<&str>) -> io::Result<()> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.map(str::to_string);
    // The child inherits the namespace of the thread that forks it.
    netns::run_in(ns, move || {
        let mut child = Command::new("nft")
            .args(&args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("running nft: {e}")))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "nft {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    })
}

/// Replace shoal's table in `ns` with `script` (from [`ruleset`]).
pub fn apply(ns: &Netns, script: &str) -> io::Result<()> {
    run_nft(ns, &["-f", "-"], Some(script))
}

/// Delete shoal's table in `ns`, if it exists.
pub fn remove(ns: &Netns) -> io::Result<()> {
    run_nft(
        ns,
        &["-f", "-"],
        Some(&format!("table ip {TABLE}\ndelete table ip {TABLE}\n")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_isolates_and_masquerades() {
        let b = |name: &str, subnet: &str, internal| BridgeRules {
            bridge: name.into(),
            subnet: Subnet::parse(subnet, "s").unwrap(),
            internal,
        };
        let s = ruleset(&[
            b("shoal0", "172.30.0.0/16", false),
            b("br-x", "10.9.0.0/24", true),
        ]);
        assert!(s.starts_with("table ip shoal\ndelete table ip shoal\n"));
        assert!(s.contains("elements = { \"shoal0\", \"br-x\" }"));
        assert!(s.contains("iifname \"shoal0\" oifname != \"shoal0\" oifname @bridges drop"));
        assert!(s.contains("iifname \"br-x\" oifname != \"br-x\" drop"));
        assert!(s.contains("ip saddr 172.30.0.0/16 oifname != \"shoal0\" masquerade"));
        assert!(
            !s.contains("10.9.0.0/24 oifname"),
            "internal networks are not masqueraded"
        );
        assert!(!ruleset(&[]).contains("elements"));
    }
}
