//! nftables rules for bridge networks: isolation, `--internal`, masquerading, published ports.
//!
//! Guarantees: all of shoal's rules live in one table, `ip shoal`, replaced as a whole in one
//! nft transaction (never a half-applied rule set); traffic between two shoal bridges is
//! dropped; an internal network's traffic never leaves its bridge; other networks reach the
//! outside through masquerading. A published port is DNATed both for traffic arriving from
//! outside (prerouting) and for the board's own connections (output), including to
//! 127.0.0.1, whose source is then masqueraded to the bridge address (the bridge needs
//! `route_localnet`, see [`enable_route_localnet`]); a container reaching a published port of
//! its own network through the board's address is masqueraded too (hairpin). [`ruleset`] is pure; [`apply`] runs
//! `nft` inside the given namespace.

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
    /// The bridge's own address, where the embedded DNS listens.
    pub gateway: std::net::Ipv4Addr,
    pub internal: bool,
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One published port, resolved: host side and container side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnat {
    /// Only traffic to this host address; None: any local address.
    pub host_ip: Option<std::net::Ipv4Addr>,
    pub host_port: u16,
    pub proto: Proto,
    pub target_ip: std::net::Ipv4Addr,
    pub target_port: u16,
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

/// The complete nft script: recreate table `ip shoal` with rules for `bridges` and `ports`.
pub fn ruleset(bridges: &[BridgeRules], ports: &[Dnat]) -> String {
    let mut s = format!("table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n");
    s.push_str("  set bridges {\n    type ifname\n");
    if !bridges.is_empty() {
        let names: Vec<String> = bridges.iter().map(|b| quoted(&b.bridge)).collect();
        s.push_str(&format!("    elements = {{ {} }}\n", names.join(", ")));
    }
    s.push_str("  }\n");
    // The embedded DNS answers its own network (and the board itself), not the LAN.
    s.push_str("  chain input {\n    type filter hook input priority filter; policy accept;\n");
    for b in bridges {
        let q = quoted(&b.bridge);
        for proto in ["udp", "tcp"] {
            s.push_str(&format!(
                "    ip daddr {} {proto} dport 53 iifname != {{ {q}, \"lo\" }} drop\n",
                b.gateway
            ));
        }
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
    // Only packets addressed to the board itself: forwarded traffic is never hijacked.
    let mut dnat = String::new();
    for p in ports {
        let dst = match p.host_ip {
            Some(ip) => format!("ip daddr {ip}"),
            None => "fib daddr type local".to_string(),
        };
        let proto = p.proto.as_str();
        dnat.push_str(&format!(
            "    {dst} {proto} dport {} dnat ip to {}:{}\n",
            p.host_port, p.target_ip, p.target_port
        ));
    }
    s.push_str("  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n");
    s.push_str(&dnat);
    s.push_str("  }\n");
    s.push_str("  chain output {\n    type nat hook output priority -100; policy accept;\n");
    s.push_str(&dnat);
    s.push_str("  }\n");
    s.push_str("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
    for b in bridges {
        // The board's own connections to 127.0.0.1 on a published port.
        s.push_str(&format!(
            "    ip saddr 127.0.0.0/8 oifname {} masquerade\n",
            quoted(&b.bridge)
        ));
        // Hairpin: a container reaching a published port of its own network through the
        // board's address; without this the reply would bypass the board and be refused.
        let q = quoted(&b.bridge);
        s.push_str(&format!(
            "    oifname {q} ip saddr {} ct status dnat masquerade\n",
            b.subnet
        ));
    }
    for b in bridges.iter().filter(|b| !b.internal) {
        let q = quoted(&b.bridge);
        s.push_str(&format!("    ip saddr {} oifname != {q} masquerade\n", b.subnet));
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

/// Let the board's own 127.0.0.1 connections be routed out of `bridge` after DNAT.
pub fn enable_route_localnet(ns: &Netns, bridge: &str) -> io::Result<()> {
    let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    netns::run_in(ns, || {
        std::fs::write(&path, b"1").map_err(|e| io::Error::new(e.kind(), format!("writing {path}: {e}")))
    })
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
        let b = |name: &str, subnet: &str, internal| {
            let subnet = Subnet::parse(subnet, "s").unwrap();
            BridgeRules {
                bridge: name.into(),
                subnet,
                gateway: subnet.first_host(),
                internal,
            }
        };
        let ports = [
            Dnat {
                host_ip: None,
                host_port: 8080,
                proto: Proto::Tcp,
                target_ip: [172, 30, 0, 2].into(),
                target_port: 80,
            },
            Dnat {
                host_ip: Some([192, 168, 1, 5].into()),
                host_port: 53,
                proto: Proto::Udp,
                target_ip: [172, 30, 0, 3].into(),
                target_port: 5353,
            },
        ];
        let bridges = [
            b("shoal0", "172.30.0.0/16", false),
            b("br-x", "10.9.0.0/24", true),
        ];
        let s = ruleset(&bridges, &ports);
        assert!(s.starts_with("table ip shoal\ndelete table ip shoal\n"));
        assert!(s.contains("elements = { \"shoal0\", \"br-x\" }"));
        assert!(s.contains("iifname \"shoal0\" oifname != \"shoal0\" oifname @bridges drop"));
        assert!(s.contains("iifname \"br-x\" oifname != \"br-x\" drop"));
        assert!(s.contains("ip saddr 172.30.0.0/16 oifname != \"shoal0\" masquerade"));
        assert!(
            !s.contains("10.9.0.0/24 oifname"),
            "internal networks are not masqueraded"
        );
        assert!(s.contains("fib daddr type local tcp dport 8080 dnat ip to 172.30.0.2:80"));
        assert!(s.contains("ip daddr 192.168.1.5 udp dport 53 dnat ip to 172.30.0.3:5353"));
        assert!(s.contains("ip saddr 127.0.0.0/8 oifname \"shoal0\" masquerade"));
        assert_eq!(s.matches("dport 8080").count(), 2, "prerouting and output");
        assert!(s.contains("oifname \"shoal0\" ip saddr 172.30.0.0/16 ct status dnat masquerade"));
        assert!(s.contains("ip daddr 172.30.0.1 udp dport 53 iifname != { \"shoal0\", \"lo\" } drop"));
        assert!(!ruleset(&[], &[]).contains("elements"));
    }
}
