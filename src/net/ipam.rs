//! IPv4 address management for one network: pure, serializable, persisted by the caller.
//!
//! Guarantees: an address is handed out at most once until it is released; the network
//! address, the broadcast address and the gateway are never handed out; every address handed
//! out lies inside the subnet and inside `--ip-range` when one is given. Allocation is
//! next-fit from the last address handed out, so a just-released address is not reused at
//! once (a stale DNS entry or ARP cache then points nowhere rather than at a new container).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

/// What went wrong, naming the subnet or address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpamError {
    /// Text that is not `a.b.c.d/len` (or not an address).
    Parse { what: &'static str, value: String },
    /// A subnet too small to hold a gateway and one container (needs /30 or larger).
    TooSmall { subnet: Subnet },
    /// The gateway or range lies outside the subnet.
    Outside {
        what: &'static str,
        value: String,
        subnet: Subnet,
    },
    /// Every allocatable address is in use.
    Exhausted { subnet: Subnet },
    /// The requested address is taken, reserved or not allocatable.
    Unavailable {
        addr: Ipv4Addr,
        subnet: Subnet,
        why: &'static str,
    },
}

impl fmt::Display for IpamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpamError::Parse { what, value } => write!(f, "invalid {what} {value:?}"),
            IpamError::TooSmall { subnet } => write!(f, "subnet {subnet} is too small (need /30 or larger)"),
            IpamError::Outside { what, value, subnet } => {
                write!(f, "{what} {value} is outside subnet {subnet}")
            }
            IpamError::Exhausted { subnet } => write!(f, "no free address left in {subnet}"),
            IpamError::Unavailable { addr, subnet, why } => {
                write!(f, "address {addr} in {subnet} is not available: {why}")
            }
        }
    }
}

impl std::error::Error for IpamError {}

/// An IPv4 prefix, normalised to its network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Subnet {
    /// Parse `a.b.c.d/len`; host bits are cleared (Docker accepts "172.30.0.1/16" for --bip).
    pub fn parse(text: &str, what: &'static str) -> Result<Subnet, IpamError> {
        let err = || IpamError::Parse {
            what,
            value: text.to_string(),
        };
        let (addr, len) = text.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        let prefix: u8 = len.parse().map_err(|_| err())?;
        if prefix > 32 {
            return Err(err());
        }
        Ok(Subnet::new(addr, prefix))
    }

    pub fn new(addr: Ipv4Addr, prefix: u8) -> Subnet {
        let prefix = prefix.min(32);
        Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        }
    }

    pub fn network(&self) -> u32 {
        u32::from(self.addr)
    }
    pub fn broadcast(&self) -> u32 {
        self.network() | !mask(self.prefix)
    }
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == self.network()
    }
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
    /// The first usable address: Docker's default gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network() + 1)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

/// The allocator of one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// Addresses are handed out from this range only (Docker's `--ip-range`).
    pub range: Subnet,
    /// Address → owner (a container id), in address order. Not part of the pool's durable
    /// definition: the network manager rebuilds it from its endpoints at load.
    #[serde(default, skip_serializing)]
    allocated: BTreeMap<Ipv4Addr, String>,
    /// Where the next search starts.
    #[serde(default)]
    next: Option<Ipv4Addr>,
}

impl Pool {
    /// A pool over `subnet` with `gateway` (default: first host) and `ip_range` (default: the
    /// whole subnet).
    pub fn new(subnet: &str, gateway: Option<&str>, ip_range: Option<&str>) -> Result<Pool, IpamError> {
        let subnet = Subnet::parse(subnet, "subnet")?;
        if subnet.prefix > 30 {
            return Err(IpamError::TooSmall { subnet });
        }
        let gateway = match gateway {
            Some(g) => {
                let addr: Ipv4Addr = g.parse().map_err(|_| IpamError::Parse {
                    what: "gateway",
                    value: g.into(),
                })?;
                let n = u32::from(addr);
                if !subnet.contains(addr) || n == subnet.network() || n == subnet.broadcast() {
                    return Err(IpamError::Outside {
                        what: "gateway",
                        value: g.into(),
                        subnet,
                    });
                }
                addr
            }
            None => subnet.first_host(),
        };
        let range = match ip_range {
            Some(r) => {
                let range = Subnet::parse(r, "ip-range")?;
                if !subnet.contains(range.addr) || range.prefix < subnet.prefix {
                    return Err(IpamError::Outside {
                        what: "ip-range",
                        value: r.into(),
                        subnet,
                    });
                }
                range
            }
            None => subnet,
        };
        Ok(Pool {
            subnet,
            gateway,
            range,
            allocated: BTreeMap::new(),
            next: None,
        })
    }

    fn why_unusable(&self, addr: Ipv4Addr) -> Option<&'static str> {
        let n = u32::from(addr);
        if !self.subnet.contains(addr) {
            Some("outside the subnet")
        } else if n == self.subnet.network() {
            Some("network address")
        } else if n == self.subnet.broadcast() {
            Some("broadcast address")
        } else if addr == self.gateway {
            Some("gateway")
        } else if self.allocated.contains_key(&addr) {
            Some("already in use")
        } else {
            None
        }
    }

    /// Hand out the next free address in the range to `owner`.
    pub fn allocate(&mut self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        let (lo, hi) = (self.range.network(), self.range.broadcast());
        let start = self
            .next
            .map(u32::from)
            .filter(|n| (lo..=hi).contains(n))
            .unwrap_or(lo);
        let span = u64::from(hi - lo) + 1;
        for step in 0..span {
            // Wrap within [lo, hi]; u64 keeps /0 ranges from overflowing.
            let n = lo + ((u64::from(start - lo) + step) % span) as u32;
            let addr = Ipv4Addr::from(n);
            if self.why_unusable(addr).is_none() {
                self.allocated.insert(addr, owner.to_string());
                self.next = Some(Ipv4Addr::from(if n == hi { lo } else { n + 1 }));
                return Ok(addr);
            }
        }
        Err(IpamError::Exhausted { subnet: self.range })
    }

    /// Hand out exactly `addr` (Docker's `--ip`); it may lie outside `--ip-range` but must be
    /// in the subnet.
    pub fn allocate_specific(&mut self, addr: Ipv4Addr, owner: &str) -> Result<(), IpamError> {
        if let Some(why) = self.why_unusable(addr) {
            return Err(IpamError::Unavailable {
                addr,
                subnet: self.subnet,
                why,
            });
        }
        self.allocated.insert(addr, owner.to_string());
        Ok(())
    }

    /// Forget every allocation.
    pub fn release_all(&mut self) {
        self.allocated.clear();
        self.next = None;
    }

    /// Give `addr` back; returns whether it was allocated.
    pub fn release(&mut self, addr: Ipv4Addr) -> bool {
        self.allocated.remove(&addr).is_some()
    }

    /// Give back every address `owner` holds.
    pub fn release_owner(&mut self, owner: &str) -> Vec<Ipv4Addr> {
        let gone: Vec<Ipv4Addr> = self
            .allocated
            .iter()
            .filter(|(_, o)| o.as_str() == owner)
            .map(|(a, _)| *a)
            .collect();
        for a in &gone {
            self.allocated.remove(a);
        }
        gone
    }

    pub fn owner_of(&self, addr: Ipv4Addr) -> Option<&str> {
        self.allocated.get(&addr).map(String::as_str)
    }

    pub fn allocated(&self) -> impl Iterator<Item = (Ipv4Addr, &str)> {
        self.allocated.iter().map(|(a, o)| (*a, o.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn defaults_reserve_network_gateway_broadcast() {
        let mut p = Pool::new("10.1.0.0/30", None, None).unwrap();
        assert_eq!(p.gateway, Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(p.allocate("a").unwrap(), Ipv4Addr::new(10, 1, 0, 2));
        assert_eq!(
            p.allocate("b").unwrap_err(),
            IpamError::Exhausted { subnet: p.subnet }
        );
    }

    #[test]
    fn never_hands_out_twice_until_released() {
        let mut p = Pool::new("10.2.0.0/24", Some("10.2.0.254"), None).unwrap();
        let mut seen = HashSet::new();
        for i in 0..253 {
            let a = p.allocate(&format!("c{i}")).unwrap();
            assert!(seen.insert(a), "{a} handed out twice");
            assert_ne!(a, p.gateway);
            assert!(p.subnet.contains(a));
            assert!(a != Ipv4Addr::new(10, 2, 0, 0) && a != Ipv4Addr::new(10, 2, 0, 255));
        }
        assert!(p.allocate("more").is_err());
        assert!(p.release(Ipv4Addr::new(10, 2, 0, 7)));
        assert_eq!(p.allocate("again").unwrap(), Ipv4Addr::new(10, 2, 0, 7));
    }

    #[test]
    fn next_fit_does_not_reuse_at_once() {
        let mut p = Pool::new("10.3.0.0/24", None, None).unwrap();
        let a = p.allocate("a").unwrap();
        p.release(a);
        assert_ne!(p.allocate("b").unwrap(), a);
    }

    #[test]
    fn ip_range_limits_dynamic_but_not_specific() {
        let mut p = Pool::new("172.20.0.0/16", Some("172.20.0.1"), Some("172.20.5.0/30")).unwrap();
        let got: Vec<_> = (0..4).map(|i| p.allocate(&i.to_string()).unwrap()).collect();
        assert_eq!(
            got,
            (0..4).map(|i| Ipv4Addr::new(172, 20, 5, i)).collect::<Vec<_>>()
        );
        assert!(p.allocate("x").is_err());
        p.allocate_specific(Ipv4Addr::new(172, 20, 9, 9), "y").unwrap();
    }

    #[test]
    fn specific_address_errors_say_why() {
        let mut p = Pool::new("10.4.0.0/24", None, None).unwrap();
        let err = |p: &mut Pool, a: [u8; 4]| p.allocate_specific(a.into(), "z").unwrap_err().to_string();
        assert!(err(&mut p, [10, 4, 0, 1]).contains("gateway"));
        assert!(err(&mut p, [10, 4, 0, 0]).contains("network address"));
        assert!(err(&mut p, [10, 4, 0, 255]).contains("broadcast"));
        assert!(err(&mut p, [10, 5, 0, 3]).contains("outside"));
        p.allocate_specific([10, 4, 0, 9].into(), "a").unwrap();
        assert!(err(&mut p, [10, 4, 0, 9]).contains("10.4.0.9 in 10.4.0.0/24"));
    }

    #[test]
    fn bad_configuration_is_refused() {
        assert!(Pool::new("10.0.0.0/31", None, None).is_err());
        assert!(Pool::new("10.0.0.0", None, None).is_err());
        assert!(Pool::new("10.0.0.0/33", None, None).is_err());
        assert!(Pool::new("10.0.0.0/24", Some("10.0.1.1"), None).is_err());
        assert!(Pool::new("10.0.0.0/24", Some("10.0.0.255"), None).is_err());
        assert!(Pool::new("10.0.0.0/24", None, Some("10.0.0.0/16")).is_err());
        assert!(Pool::new("10.0.0.0/24", None, Some("10.9.0.0/28")).is_err());
        // --bip style: host bits are cleared.
        assert_eq!(
            Pool::new("172.30.0.1/16", None, None).unwrap().subnet.to_string(),
            "172.30.0.0/16"
        );
    }

    #[test]
    fn release_owner_and_serde_keeps_only_the_definition() {
        let mut p = Pool::new("10.6.0.0/24", None, None).unwrap();
        let a = p.allocate("one").unwrap();
        let b = p.allocate("two").unwrap();
        p.allocate_specific([10, 6, 0, 50].into(), "one").unwrap();
        // Allocations are rebuilt from endpoints by the manager, not stored with the pool.
        let restored: Pool = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(
            (restored.subnet, restored.gateway, restored.range),
            (p.subnet, p.gateway, p.range)
        );
        assert_eq!(restored.allocated().count(), 0);
        // Older files carried them and still load.
        let legacy = r#"{"subnet":{"addr":"10.6.0.0","prefix":24},"gateway":"10.6.0.1",
            "range":{"addr":"10.6.0.0","prefix":24},"allocated":{"10.6.0.2":"one"}}"#;
        let old: Pool = serde_json::from_str(legacy).unwrap();
        assert_eq!(old.owner_of([10, 6, 0, 2].into()), Some("one"));
        let mut restored = restored;
        restored.release_all();
        assert_eq!(p.release_owner("one"), vec![a, Ipv4Addr::new(10, 6, 0, 50)]);
        assert_eq!(p.owner_of(b), Some("two"));
        assert!(p.allocate("three").unwrap() != b);
    }

    #[test]
    fn subnet_overlap() {
        let a = Subnet::parse("10.0.0.0/16", "s").unwrap();
        assert!(a.overlaps(&Subnet::parse("10.0.5.0/24", "s").unwrap()));
        assert!(Subnet::parse("10.0.0.0/8", "s").unwrap().overlaps(&a));
        assert!(!a.overlaps(&Subnet::parse("10.1.0.0/16", "s").unwrap()));
    }
}
