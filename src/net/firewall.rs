//! nftables rules for bridge networks: isolation, `--internal`, masquerading, published ports.
//!
//! Guarantees: all of shoal's rules live in one table, `ip shoal`, replaced as a whole in one
//! nf_tables transaction (never a half-applied rule set); traffic between two shoal bridges is
//! dropped; an internal network's traffic never leaves its bridge; other networks reach the
//! outside through masquerading. A published port is DNATed both for traffic arriving from
//! outside (prerouting) and for the board's own connections (output), including to
//! 127.0.0.1, whose source is then masqueraded to the bridge address (the bridge needs
//! `route_localnet`, see [`enable_route_localnet`]); a container reaching a published port of
//! its own network through the board's address is masqueraded too (hairpin). [`ruleset`] is pure;
//! [`apply`] sends it to the kernel over nfnetlink (no `nft` binary needed on the board).

use super::ipam::Subnet;
use super::netns::{self, Netns};
use crate::wire::netlink;
use crate::wire::nftables::{
    self, Chain, ChainType, CmpOp, Expr, Hook, MetaKey, NatKind, PayloadBase, Verdict, NFPROTO_IPV4, REG_1,
    REG_2,
};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

pub const TABLE: &str = "shoal";

/// What the rules need to know about one bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeRules {
    pub bridge: String,
    pub subnet: Subnet,
    /// The bridge's own address, where the embedded DNS listens.
    pub gateway: Ipv4Addr,
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
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub proto: Proto,
    pub target_ip: Ipv4Addr,
    pub target_port: u16,
}

/// An interface name as `meta iifname`/`oifname` loads it: IFNAMSIZ bytes, zero-padded.
fn ifname(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.resize(16, 0);
    v
}

fn iface(key: MetaKey, op: CmpOp, name: &str) -> [Expr; 2] {
    [
        Expr::Meta { key, dreg: REG_1 },
        Expr::Cmp {
            sreg: REG_1,
            op,
            data: ifname(name),
        },
    ]
}

fn iif(op: CmpOp, name: &str) -> [Expr; 2] {
    iface(MetaKey::IifName, op, name)
}

fn oif(op: CmpOp, name: &str) -> [Expr; 2] {
    iface(MetaKey::OifName, op, name)
}

/// `ip saddr` (offset 12) or `ip daddr` (offset 16) within `subnet`.
fn ip_addr_in(offset: u32, subnet: Subnet) -> Vec<Expr> {
    let mut v = vec![Expr::Payload {
        base: PayloadBase::Network,
        offset,
        len: 4,
        dreg: REG_1,
    }];
    if subnet.prefix < 32 {
        let mask = u32::MAX.checked_shl(32 - u32::from(subnet.prefix)).unwrap_or(0);
        v.push(Expr::Bitwise {
            sreg: REG_1,
            dreg: REG_1,
            mask: mask.to_be_bytes().to_vec(),
            xor: vec![0; 4],
        });
    }
    v.push(Expr::Cmp {
        sreg: REG_1,
        op: CmpOp::Eq,
        data: subnet.network().to_be_bytes().to_vec(),
    });
    v
}

fn saddr_in(subnet: Subnet) -> Vec<Expr> {
    ip_addr_in(12, subnet)
}

fn daddr_is(ip: Ipv4Addr) -> Vec<Expr> {
    ip_addr_in(16, Subnet::new(ip, 32))
}

/// `tcp dport N` / `udp dport N`: the protocol, then the port (network order).
fn dport(proto: Proto, port: u16) -> [Expr; 4] {
    let number = match proto {
        Proto::Tcp => 6u8,
        Proto::Udp => 17,
    };
    [
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: vec![number],
        },
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: 2,
            len: 2,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: port.to_be_bytes().to_vec(),
        },
    ]
}

/// `fib daddr type local`: addressed to the board itself (RTN_LOCAL = 2, host order).
fn to_local_address() -> [Expr; 2] {
    [
        Expr::FibDaddrType { dreg: REG_1 },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: 2u32.to_ne_bytes().to_vec(),
        },
    ]
}

/// `ct status dnat`: the connection was destination-NATed (IPS_DST_NAT = 0x20, host order).
fn was_dnated() -> [Expr; 3] {
    [
        Expr::CtStatus { dreg: REG_1 },
        Expr::Bitwise {
            sreg: REG_1,
            dreg: REG_1,
            mask: 0x20u32.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Neq,
            data: vec![0; 4],
        },
    ]
}

fn dnat_to(ip: Ipv4Addr, port: u16) -> [Expr; 3] {
    [
        Expr::Immediate {
            dreg: REG_1,
            data: ip.octets().to_vec(),
        },
        Expr::Immediate {
            dreg: REG_2,
            data: port.to_be_bytes().to_vec(),
        },
        Expr::Nat {
            kind: NatKind::Dnat,
            addr_reg: REG_1,
            port_reg: REG_2,
        },
    ]
}

/// Concatenate matchers and a final statement into one rule.
fn rule<const N: usize>(parts: [&[Expr]; N]) -> Vec<Expr> {
    parts.iter().flat_map(|p| p.iter().cloned()).collect()
}

const DROP: &[Expr] = &[Expr::Verdict(Verdict::Drop)];
const MASQUERADE: &[Expr] = &[Expr::Masquerade];

/// The chains of table `ip shoal` for `bridges` and `ports`.
pub fn ruleset(bridges: &[BridgeRules], ports: &[Dnat]) -> Vec<Chain> {
    use CmpOp::{Eq, Neq};
    // The embedded DNS answers its own network (and the board itself), not the LAN.
    let mut input = Vec::new();
    for b in bridges {
        for proto in [Proto::Udp, Proto::Tcp] {
            input.push(rule([
                &daddr_is(b.gateway),
                &dport(proto, 53),
                &iif(Neq, &b.bridge),
                &iif(Neq, "lo"),
                DROP,
            ]));
        }
    }
    let mut forward = Vec::new();
    for b in bridges {
        if b.internal {
            forward.push(rule([&iif(Eq, &b.bridge), &oif(Neq, &b.bridge), DROP]));
            forward.push(rule([&oif(Eq, &b.bridge), &iif(Neq, &b.bridge), DROP]));
        } else {
            for other in bridges.iter().filter(|o| o.bridge != b.bridge) {
                forward.push(rule([&iif(Eq, &b.bridge), &oif(Eq, &other.bridge), DROP]));
            }
        }
    }
    // Only packets addressed to the board itself: forwarded traffic is never hijacked.
    let dnat: Vec<Vec<Expr>> = ports
        .iter()
        .map(|p| {
            let dst: Vec<Expr> = match p.host_ip {
                Some(ip) => daddr_is(ip),
                None => to_local_address().to_vec(),
            };
            rule([
                &dst,
                &dport(p.proto, p.host_port),
                &dnat_to(p.target_ip, p.target_port),
            ])
        })
        .collect();
    let mut postrouting = Vec::new();
    for b in bridges {
        // The board's own connections to 127.0.0.1 on a published port.
        let loopback = Subnet::new(Ipv4Addr::new(127, 0, 0, 0), 8);
        postrouting.push(rule([&saddr_in(loopback), &oif(Eq, &b.bridge), MASQUERADE]));
        // Hairpin: a container reaching a published port of its own network through the
        // board's address; without this the reply would bypass the board and be refused.
        postrouting.push(rule([
            &oif(Eq, &b.bridge),
            &saddr_in(b.subnet),
            &was_dnated(),
            MASQUERADE,
        ]));
    }
    for b in bridges.iter().filter(|b| !b.internal) {
        postrouting.push(rule([&saddr_in(b.subnet), &oif(Neq, &b.bridge), MASQUERADE]));
    }
    let chain = |name, kind, hook, priority, rules| Chain {
        name,
        kind,
        hook,
        priority,
        rules,
    };
    vec![
        chain("input", ChainType::Filter, Hook::Input, 0, input),
        chain("forward", ChainType::Filter, Hook::Forward, 0, forward),
        chain("prerouting", ChainType::Nat, Hook::Prerouting, -100, dnat.clone()),
        chain("output", ChainType::Nat, Hook::Output, -100, dnat),
        chain("postrouting", ChainType::Nat, Hook::Postrouting, 100, postrouting),
    ]
}

/// An nfnetlink socket inside a namespace.
struct NfSocket(OwnedFd);

impl NfSocket {
    fn open() -> io::Result<NfSocket> {
        let fd = super::netlink::open_socket(libc::NETLINK_NETFILTER)?;
        // A kernel that never answers must not hang the daemon.
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: tv is a valid timeval for the length given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NfSocket(fd))
    }

    /// Send one batch and wait for the acknowledgement of every sequence number in `acked`;
    /// the first refusal is the error (the kernel then has applied nothing).
    fn transact(&self, batch: &[u8], acked: &[u32]) -> io::Result<()> {
        super::netlink::send_to_kernel(&self.0, batch)?;
        let mut waiting: Vec<u32> = acked.to_vec();
        let mut buf = vec![0u8; 64 * 1024];
        while !waiting.is_empty() {
            // SAFETY: buf is valid for writes of its length.
            let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let replies = netlink::parse_replies(&buf[..n as usize])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            for r in replies.iter().filter(|r| r.msg_type == netlink::NLMSG_ERROR) {
                let code = netlink::error_code(r.payload)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(code));
                }
                waiting.retain(|s| *s != r.seq);
            }
        }
        Ok(())
    }
}

fn transact_in(ns: &Netns, what: &str, batch: (Vec<u8>, Vec<u32>)) -> io::Result<()> {
    netns::run_in(ns, || NfSocket::open()?.transact(&batch.0, &batch.1))
        .map_err(|e| io::Error::new(e.kind(), format!("{what} (nftables over netlink): {e}")))
}

/// Whether the kernel in `ns` speaks nfnetlink at all.
pub fn available(ns: &Netns) -> bool {
    netns::run_in(ns, NfSocket::open).is_ok()
}

/// Replace shoal's table in `ns` with `chains` (from [`ruleset`]), in one transaction.
pub fn apply(ns: &Netns, chains: &[Chain]) -> io::Result<()> {
    let batch = nftables::replace_table(NFPROTO_IPV4, TABLE, chains, 1);
    transact_in(ns, "replacing table ip shoal", batch)
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
    transact_in(
        ns,
        "deleting table ip shoal",
        nftables::delete_table(NFPROTO_IPV4, TABLE, 1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(name: &str, subnet: &str, internal: bool) -> BridgeRules {
        let subnet = Subnet::parse(subnet, "s").unwrap();
        BridgeRules {
            bridge: name.into(),
            subnet,
            gateway: subnet.first_host(),
            internal,
        }
    }

    fn chain<'a>(chains: &'a [Chain], name: &str) -> &'a Chain {
        chains.iter().find(|c| c.name == name).unwrap()
    }

    /// The interface names a rule compares against, in order.
    fn names(rule: &[Expr]) -> Vec<String> {
        rule.iter()
            .filter_map(|e| match e {
                Expr::Cmp { data, .. } if data.len() == 16 => {
                    Some(String::from_utf8_lossy(data).trim_end_matches('\0').to_string())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn isolation_pairs_every_bridge_and_seals_internal_ones() {
        let bridges = [
            b("shoal0", "172.30.0.0/16", false),
            b("br-a", "10.9.0.0/24", false),
            b("br-x", "10.8.0.0/24", true),
        ];
        let chains = ruleset(&bridges, &[]);
        let fwd = &chain(&chains, "forward").rules;
        let pairs: Vec<Vec<String>> = fwd.iter().map(|r| names(r)).collect();
        assert!(pairs.contains(&vec!["shoal0".into(), "br-a".into()]));
        assert!(pairs.contains(&vec!["br-a".into(), "shoal0".into()]));
        assert!(pairs.contains(&vec!["shoal0".into(), "br-x".into()]));
        // br-x: nothing in or out of its bridge but itself.
        assert!(fwd.iter().any(|r| names(r) == ["br-x", "br-x"]
            && matches!(r[1], Expr::Cmp { op: CmpOp::Eq, .. })
            && matches!(r[3], Expr::Cmp { op: CmpOp::Neq, .. })));
        assert!(fwd
            .iter()
            .all(|r| r.last() == Some(&Expr::Verdict(Verdict::Drop))));
        // Internal networks are not masqueraded to the outside.
        let post = &chain(&chains, "postrouting").rules;
        let outward: Vec<&Vec<Expr>> = post
            .iter()
            .filter(|r| {
                r.iter()
                    .any(|e| matches!(e, Expr::Cmp { op: CmpOp::Neq, data, .. } if data.len() == 16))
            })
            .collect();
        assert_eq!(outward.len(), 2, "shoal0 and br-a only");
        assert!(outward.iter().all(|r| r.last() == Some(&Expr::Masquerade)));
        assert!(ruleset(&[], &[]).iter().all(|c| c.rules.is_empty()));
    }

    #[test]
    fn subnet_match_masks_then_compares_network_order() {
        let v = saddr_in(Subnet::parse("10.9.0.0/24", "s").unwrap());
        assert_eq!(
            v[1],
            Expr::Bitwise {
                sreg: REG_1,
                dreg: REG_1,
                mask: vec![255, 255, 255, 0],
                xor: vec![0; 4]
            }
        );
        assert_eq!(
            v[2],
            Expr::Cmp {
                sreg: REG_1,
                op: CmpOp::Eq,
                data: vec![10, 9, 0, 0]
            }
        );
        // A single address needs no mask.
        assert_eq!(daddr_is(Ipv4Addr::new(1, 2, 3, 4)).len(), 2);
    }

    #[test]
    fn published_ports_dnat_in_prerouting_and_output() {
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
        let chains = ruleset(&[b("shoal0", "172.30.0.0/16", false)], &ports);
        for name in ["prerouting", "output"] {
            let rules = &chain(&chains, name).rules;
            assert_eq!(rules.len(), 2);
            assert_eq!(rules[0][0], Expr::FibDaddrType { dreg: REG_1 });
            assert!(rules[0].contains(&Expr::Cmp {
                sreg: REG_1,
                op: CmpOp::Eq,
                data: vec![0x1f, 0x90]
            }));
            assert!(rules[0].ends_with(&dnat_to([172, 30, 0, 2].into(), 80)));
            assert!(rules[1].starts_with(&daddr_is([192, 168, 1, 5].into())));
            assert!(rules[1].contains(&Expr::Cmp {
                sreg: REG_1,
                op: CmpOp::Eq,
                data: vec![17]
            }));
        }
        assert_eq!(chain(&chains, "prerouting").priority, -100);
        assert_eq!(chain(&chains, "postrouting").priority, 100);
    }
}
