//! rtnetlink messages (linux/netlink.h, linux/rtnetlink.h): build requests, parse replies.
//!
//! Netlink uses the host's byte order. Guarantees: builders always produce messages whose
//! lengths and 4-byte attribute padding match what the kernel checks; parsers return an error,
//! never panic, on short or inconsistent input. Only the handful of messages shoal sends are
//! covered: links (bridge, veth, set, delete, get), IPv4 addresses and IPv4 routes.

use std::fmt;
use std::net::Ipv4Addr;

pub const NLMSG_HDR_LEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_NEWROUTE: u16 = 24;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_DUMP: u16 = 0x300;

const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3FFF;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;

const RTA_GATEWAY: u16 = 5;
const RTA_OIF: u16 = 4;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
/// Interface flag "administratively up" (linux/if.h IFF_UP).
pub const IFF_UP: u32 = 0x1;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

/// What was wrong with a netlink reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetlinkError {
    /// The buffer ended inside a structure starting at `at`.
    Truncated { at: usize },
    /// A length field at `at` is smaller than its header or runs past the buffer.
    BadLength { at: usize, len: usize },
}

impl fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetlinkError::Truncated { at } => write!(f, "netlink message truncated at byte {at}"),
            NetlinkError::BadLength { at, len } => {
                write!(f, "netlink length {len} at byte {at} is inconsistent")
            }
        }
    }
}

impl std::error::Error for NetlinkError {}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A request under construction: header, fixed family struct, then attributes.
pub struct Request {
    buf: Vec<u8>,
}

impl Request {
    /// Start a message of `msg_type` with `flags` (NLM_F_REQUEST is always added) followed by
    /// the fixed-size family header `fixed`.
    pub fn new(msg_type: u16, flags: u16, fixed: &[u8]) -> Request {
        let mut buf = vec![0u8; NLMSG_HDR_LEN];
        buf[4..6].copy_from_slice(&msg_type.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(fixed);
        buf.resize(align4(buf.len()), 0);
        Request { buf }
    }

    /// Append one attribute, padded to 4 bytes.
    pub fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = (4 + payload.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    /// Append a NUL-terminated string attribute.
    pub fn attr_str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v)
    }

    /// Open a nested attribute; close it with [`Request::end_nest`] and the returned mark.
    pub fn begin_nest(&mut self, kind: u16) -> usize {
        let mark = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        mark
    }

    pub fn end_nest(&mut self, mark: usize) -> &mut Self {
        let len = (self.buf.len() - mark) as u16;
        self.buf[mark..mark + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// Append raw bytes (a nested family header), padded.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    /// Finish with sequence number `seq`: fills in the total length.
    pub fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// `struct ifinfomsg` (16 bytes).
pub fn ifinfomsg(index: i32, flags: u32, change: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = AF_UNSPEC;
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

/// RTM_NEWLINK creating a bridge named `name` with hardware address `mac`. A bridge left to
/// pick its own takes the lowest address among its ports and changes it whenever a port with
/// a lower one joins, which leaves stale gateway entries in the neighbours' ARP caches.
pub fn new_bridge(name: &str, mac: [u8; 6]) -> Request {
    let mut r = Request::new(
        RTM_NEWLINK,
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        &ifinfomsg(0, 0, 0),
    );
    r.attr_str(IFLA_IFNAME, name);
    r.attr(IFLA_ADDRESS, &mac);
    let info = r.begin_nest(IFLA_LINKINFO);
    r.attr_str(IFLA_INFO_KIND, "bridge");
    r.end_nest(info);
    r
}

/// RTM_NEWLINK creating a veth pair `name` ⇄ `peer`; with `peer_netns_fd` the peer is born
/// in that namespace (cheaper than moving it later, which waits for an RCU grace period).
pub fn new_veth(name: &str, peer: &str, peer_netns_fd: Option<i32>) -> Request {
    let mut r = Request::new(
        RTM_NEWLINK,
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        &ifinfomsg(0, 0, 0),
    );
    r.attr_str(IFLA_IFNAME, name);
    let info = r.begin_nest(IFLA_LINKINFO);
    r.attr_str(IFLA_INFO_KIND, "veth");
    let data = r.begin_nest(IFLA_INFO_DATA);
    let peer_nest = r.begin_nest(VETH_INFO_PEER);
    r.raw(&ifinfomsg(0, 0, 0));
    r.attr_str(IFLA_IFNAME, peer);
    if let Some(fd) = peer_netns_fd {
        r.attr(IFLA_NET_NS_FD, &fd.to_ne_bytes());
    }
    r.end_nest(peer_nest);
    r.end_nest(data);
    r.end_nest(info);
    r
}

/// Changes to apply to an existing link in one RTM_NEWLINK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkChange {
    pub name: Option<String>,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    pub up: Option<bool>,
    /// Enslave to this bridge index (0 releases).
    pub master: Option<u32>,
    /// Move into the network namespace open as this fd in the sending process.
    pub netns_fd: Option<i32>,
}

/// RTM_NEWLINK applying `change` to link `index`.
pub fn set_link(index: u32, change: &LinkChange) -> Request {
    let (flags, mask) = match change.up {
        Some(true) => (IFF_UP, IFF_UP),
        Some(false) => (0, IFF_UP),
        None => (0, 0),
    };
    let mut r = Request::new(RTM_NEWLINK, NLM_F_ACK, &ifinfomsg(index as i32, flags, mask));
    if let Some(name) = &change.name {
        r.attr_str(IFLA_IFNAME, name);
    }
    if let Some(mtu) = change.mtu {
        r.attr(IFLA_MTU, &mtu.to_ne_bytes());
    }
    if let Some(mac) = change.mac {
        r.attr(IFLA_ADDRESS, &mac);
    }
    if let Some(master) = change.master {
        r.attr(IFLA_MASTER, &master.to_ne_bytes());
    }
    if let Some(fd) = change.netns_fd {
        r.attr(IFLA_NET_NS_FD, &fd.to_ne_bytes());
    }
    r
}

/// RTM_DELLINK for link `index`.
pub fn del_link(index: u32) -> Request {
    Request::new(RTM_DELLINK, NLM_F_ACK, &ifinfomsg(index as i32, 0, 0))
}

/// RTM_GETLINK for the link called `name` (acknowledged, so a reply always ends with an
/// NLMSG_ERROR carrying the request's sequence number).
pub fn get_link(name: &str) -> Request {
    let mut r = Request::new(RTM_GETLINK, NLM_F_ACK, &ifinfomsg(0, 0, 0));
    r.attr_str(IFLA_IFNAME, name);
    r
}

/// RTM_GETLINK dump of every link.
pub fn dump_links() -> Request {
    Request::new(RTM_GETLINK, NLM_F_DUMP, &ifinfomsg(0, 0, 0))
}

/// RTM_GETADDR dump of every IPv4 address.
pub fn dump_addrs_v4() -> Request {
    Request::new(RTM_GETADDR, NLM_F_DUMP, &[AF_INET, 0, 0, 0, 0, 0, 0, 0])
}

/// An IPv4 RTM_NEWADDR payload as (link index, address, prefix); None for other families.
pub fn parse_addr_v4(payload: &[u8]) -> Result<Option<(u32, Ipv4Addr, u8)>, NetlinkError> {
    if payload.len() < 8 {
        return Err(NetlinkError::Truncated { at: payload.len() });
    }
    if payload[0] != AF_INET {
        return Ok(None);
    }
    let (prefix, index) = (payload[1], ne_u32(payload, 4)?);
    let mut addr = None;
    for (kind, data) in parse_attrs(payload, 8)? {
        // IFA_LOCAL is the interface's own address; IFA_ADDRESS the peer on point-to-point.
        if let (IFA_LOCAL | IFA_ADDRESS, Ok(octets)) = (kind, <[u8; 4]>::try_from(data)) {
            if kind == IFA_LOCAL || addr.is_none() {
                addr = Some(Ipv4Addr::from(octets));
            }
        }
    }
    Ok(addr.map(|a| (index, a, prefix)))
}

/// RTM_NEWADDR adding `addr/prefix` (with its broadcast) to link `index`.
pub fn add_addr_v4(index: u32, addr: Ipv4Addr, prefix: u8) -> Request {
    addr_v4(
        RTM_NEWADDR,
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        index,
        addr,
        prefix,
    )
}

/// RTM_DELADDR of an address [`add_addr_v4`] added.
pub fn del_addr_v4(index: u32, addr: Ipv4Addr, prefix: u8) -> Request {
    addr_v4(RTM_DELADDR, NLM_F_ACK, index, addr, prefix)
}

fn addr_v4(msg_type: u16, flags: u16, index: u32, addr: Ipv4Addr, prefix: u8) -> Request {
    let mut fixed = [0u8; 8];
    fixed[0] = AF_INET;
    fixed[1] = prefix;
    fixed[3] = RT_SCOPE_UNIVERSE;
    fixed[4..8].copy_from_slice(&index.to_ne_bytes());
    let mut r = Request::new(msg_type, flags, &fixed);
    r.attr(IFA_LOCAL, &addr.octets());
    r.attr(IFA_ADDRESS, &addr.octets());
    if prefix < 31 {
        let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
        let bcast = Ipv4Addr::from(u32::from(addr) | host_bits);
        r.attr(IFA_BROADCAST, &bcast.octets());
    }
    r
}

/// RTM_NEWROUTE (`struct rtmsg`, 12 bytes) adding the IPv4 default route via `gateway` out of link `oif`.
pub fn add_default_route_v4(gateway: Ipv4Addr, oif: u32) -> Request {
    default_route_v4(NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, gateway, oif)
}

/// The same, replacing a default route that exists (a DHCP lease naming a new router).
pub fn replace_default_route_v4(gateway: Ipv4Addr, oif: u32) -> Request {
    default_route_v4(NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, gateway, oif)
}

fn default_route_v4(flags: u16, gateway: Ipv4Addr, oif: u32) -> Request {
    let fixed = [
        AF_INET,
        0,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
        // rtm_flags (u32)
        0,
        0,
        0,
        0,
    ];
    let mut r = Request::new(RTM_NEWROUTE, flags, &fixed);
    r.attr(RTA_GATEWAY, &gateway.octets());
    r.attr(RTA_OIF, &oif.to_ne_bytes());
    r
}

/// One message from a reply buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<'a> {
    pub msg_type: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

fn ne_u16(b: &[u8], at: usize) -> Result<u16, NetlinkError> {
    let s = b.get(at..at + 2).ok_or(NetlinkError::Truncated { at })?;
    Ok(u16::from_ne_bytes([s[0], s[1]]))
}

fn ne_u32(b: &[u8], at: usize) -> Result<u32, NetlinkError> {
    let s = b.get(at..at + 4).ok_or(NetlinkError::Truncated { at })?;
    Ok(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// Split a datagram into its messages.
pub fn parse_replies(buf: &[u8]) -> Result<Vec<Reply<'_>>, NetlinkError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDR_LEN <= buf.len() {
        let len = ne_u32(buf, at)? as usize;
        if len < NLMSG_HDR_LEN || at + len > buf.len() {
            return Err(NetlinkError::BadLength { at, len });
        }
        out.push(Reply {
            msg_type: ne_u16(buf, at + 4)?,
            flags: ne_u16(buf, at + 6)?,
            seq: ne_u32(buf, at + 8)?,
            payload: &buf[at + NLMSG_HDR_LEN..at + len],
        });
        at += align4(len);
    }
    Ok(out)
}

/// The errno of an NLMSG_ERROR payload, as a positive number; 0 is an acknowledgement.
pub fn error_code(payload: &[u8]) -> Result<i32, NetlinkError> {
    let code = ne_u32(payload, 0)? as i32;
    Ok(code.checked_neg().unwrap_or(i32::MAX))
}

/// Attributes of a payload after its fixed header of `skip` bytes: (type without flags, data).
pub fn parse_attrs(payload: &[u8], skip: usize) -> Result<Vec<(u16, &[u8])>, NetlinkError> {
    let mut out = Vec::new();
    let mut at = align4(skip);
    while at + 4 <= payload.len() {
        let len = usize::from(ne_u16(payload, at)?);
        let kind = ne_u16(payload, at + 2)? & NLA_TYPE_MASK;
        if len < 4 || at + len > payload.len() {
            return Err(NetlinkError::BadLength { at, len });
        }
        out.push((kind, &payload[at + 4..at + len]));
        at += align4(len);
    }
    Ok(out)
}

/// What shoal needs to know about a link from an RTM_NEWLINK reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub flags: u32,
    pub mtu: u32,
    pub mac: Vec<u8>,
    pub master: Option<u32>,
    pub kind: Option<String>,
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Parse an RTM_NEWLINK payload.
pub fn parse_link(payload: &[u8]) -> Result<LinkInfo, NetlinkError> {
    if payload.len() < 16 {
        return Err(NetlinkError::Truncated { at: payload.len() });
    }
    let mut info = LinkInfo {
        index: ne_u32(payload, 4)?,
        flags: ne_u32(payload, 8)?,
        ..Default::default()
    };
    for (kind, data) in parse_attrs(payload, 16)? {
        match kind {
            IFLA_IFNAME => info.name = c_string(data),
            IFLA_MTU => info.mtu = ne_u32(data, 0)?,
            IFLA_ADDRESS => info.mac = data.to_vec(),
            IFLA_MASTER => info.master = Some(ne_u32(data, 0)?),
            IFLA_LINKINFO => {
                for (k, d) in parse_attrs(data, 0)? {
                    if k == IFLA_INFO_KIND {
                        info.kind = Some(c_string(d));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn veth_request_layout() {
        let msg = new_veth("vh0", "vc0", Some(9)).finish(7);
        let replies = parse_replies(&msg).unwrap();
        assert_eq!(replies.len(), 1);
        let r = &replies[0];
        assert_eq!((r.msg_type, r.seq), (RTM_NEWLINK, 7));
        assert_eq!(r.flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        let attrs = parse_attrs(r.payload, 16).unwrap();
        assert_eq!(attrs[0], (IFLA_IFNAME, &b"vh0\0"[..]));
        assert_eq!(attrs[1].0, IFLA_LINKINFO);
        let info = parse_attrs(attrs[1].1, 0).unwrap();
        assert_eq!(info[0], (IFLA_INFO_KIND, &b"veth\0"[..]));
        let data = parse_attrs(info[1].1, 0).unwrap();
        let peer = parse_attrs(data[0].1, 16).unwrap();
        assert_eq!(peer[0], (IFLA_IFNAME, &b"vc0\0"[..]));
        assert_eq!(peer[1], (IFLA_NET_NS_FD, &9i32.to_ne_bytes()[..]));
        assert_eq!(msg.len() % 4, 0);
    }

    #[test]
    fn link_round_trip_through_parse_link() {
        let change = LinkChange {
            name: Some("eth0".into()),
            mtu: Some(1400),
            master: Some(3),
            ..Default::default()
        };
        let msg = set_link(5, &change).finish(1);
        let replies = parse_replies(&msg).unwrap();
        let link = parse_link(replies[0].payload).unwrap();
        assert_eq!(
            (link.index, link.name.as_str(), link.mtu, link.master),
            (5, "eth0", 1400, Some(3))
        );
    }

    #[test]
    fn addr_round_trip() {
        let msg = add_addr_v4(7, Ipv4Addr::new(10, 1, 2, 3), 16).finish(1);
        let r = &parse_replies(&msg).unwrap()[0];
        assert_eq!(
            parse_addr_v4(r.payload).unwrap(),
            Some((7, Ipv4Addr::new(10, 1, 2, 3), 16))
        );
        assert_eq!(
            parse_addr_v4(&[10, 64, 0, 0, 1, 0, 0, 0]).unwrap(),
            None,
            "IPv6 is skipped"
        );
        assert!(parse_addr_v4(&[2, 24]).is_err());
    }

    #[test]
    fn ack_and_error_codes() {
        let mut msg = Request::new(NLMSG_ERROR, 0, &(-17i32).to_ne_bytes()).finish(2);
        msg.extend(Request::new(NLMSG_ERROR, 0, &0i32.to_ne_bytes()).finish(3));
        let replies = parse_replies(&msg).unwrap();
        assert_eq!(error_code(replies[0].payload).unwrap(), 17);
        assert_eq!(error_code(replies[1].payload).unwrap(), 0);
    }

    #[test]
    fn bad_lengths_are_errors() {
        let mut msg = dump_links().finish(1);
        msg[0] = 200;
        assert!(parse_replies(&msg).is_err());
        assert!(parse_attrs(&[3, 0, 1, 0], 0).is_err());
        assert!(parse_link(&[0; 8]).is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(replies) = parse_replies(&bytes) {
                for r in replies {
                    let _ = parse_link(r.payload);
                    let _ = parse_addr_v4(r.payload);
                    let _ = error_code(r.payload);
                }
            }
            let _ = parse_attrs(&bytes, 0);
        }
    }
}
