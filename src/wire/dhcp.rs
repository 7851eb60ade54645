//! DHCPv4 messages (RFC 2131) and the options a client needs (RFC 2132).
//!
//! Guarantees:
//! - [`Message::parse`] returns an error naming the byte offset or option, never panics, on
//!   any input. Options split over several instances are concatenated (RFC 3396); the
//!   `file`/`sname` fields are read as options when option 52 (overload) says so.
//! - [`Message::emit`] writes a message of at least 300 bytes (the BOOTP minimum some
//!   servers insist on), splitting options longer than 255 bytes (RFC 3396), and
//!   `parse(emit(m)) == m` for every message with a hardware address of at most 16 bytes.
//! - [`Lease::from_ack`] turns an ACK into the values a client applies, with the RFC 2131
//!   §4.4.5 defaults for T1/T2.

use std::fmt;
use std::net::Ipv4Addr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

/// Fixed BOOTP header before the magic cookie (RFC 2131 §2).
const FIXED_LEN: usize = 236;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Smallest message emitted: BOOTP relays and old servers drop shorter ones (RFC 1542 §2.1).
const MIN_EMIT_LEN: usize = 300;
const BROADCAST_FLAG: u16 = 0x8000;

/// Option codes (RFC 2132).
pub mod code {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS_SERVER: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const CLIENT_ID: u8 = 61;
    pub const END: u8 = 255;
}

/// What was wrong with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhcpError {
    /// The message ended inside a field or option starting at this offset.
    Truncated { at: usize },
    /// The four bytes after the fixed header are not 99.130.83.99.
    BadCookie,
    /// `op` is neither BOOTREQUEST (1) nor BOOTREPLY (2).
    BadOp(u8),
    /// `hlen` exceeds the 16 bytes of `chaddr`.
    BadHardwareLength(u8),
    /// An option's value has a length its type does not allow.
    BadOptionLength { code: u8, len: usize },
    /// Option 53 holds a value outside 1..=8.
    BadMessageType(u8),
    /// A value the emitter cannot represent (for example a hardware address over 16 bytes).
    Unrepresentable(&'static str),
}

impl fmt::Display for DhcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DhcpError::Truncated { at } => write!(f, "DHCP message truncated at byte {at}"),
            DhcpError::BadCookie => write!(f, "DHCP message lacks the magic cookie 99.130.83.99"),
            DhcpError::BadOp(op) => write!(f, "DHCP op {op} is neither request (1) nor reply (2)"),
            DhcpError::BadHardwareLength(n) => write!(f, "DHCP hardware address length {n} exceeds 16"),
            DhcpError::BadOptionLength { code, len } => {
                write!(f, "DHCP option {code} has invalid length {len}")
            }
            DhcpError::BadMessageType(t) => write!(f, "DHCP message type {t} is unknown"),
            DhcpError::Unrepresentable(what) => write!(f, "cannot encode DHCP message: {what}"),
        }
    }
}

impl std::error::Error for DhcpError {}

/// BOOTP `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Request = 1,
    Reply = 2,
}

/// Option 53 (RFC 2132 §9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl MessageType {
    fn from_u8(v: u8) -> Result<MessageType, DhcpError> {
        Ok(match v {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            other => return Err(DhcpError::BadMessageType(other)),
        })
    }
}

/// The options shoal reads or sends; others are skipped on parse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub message_type: Option<MessageType>,
    pub subnet_mask: Option<Ipv4Addr>,
    pub routers: Vec<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
    pub hostname: Option<String>,
    pub domain_name: Option<String>,
    pub requested_ip: Option<Ipv4Addr>,
    /// Seconds; 0xffff_ffff means infinite.
    pub lease_time: Option<u32>,
    pub server_id: Option<Ipv4Addr>,
    pub parameter_request_list: Vec<u8>,
    /// Human-readable reason, typically sent with a NAK.
    pub message: Option<String>,
    pub max_message_size: Option<u16>,
    pub renewal_time: Option<u32>,
    pub rebinding_time: Option<u32>,
    pub client_id: Option<Vec<u8>>,
}

/// One DHCP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub op: Op,
    pub xid: u32,
    pub secs: u16,
    /// Asks the server to broadcast its reply (a client without an address cannot take
    /// unicast before it has one).
    pub broadcast: bool,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    /// `htype`: 1 is Ethernet.
    pub htype: u8,
    /// The client hardware address (`hlen` bytes of `chaddr`).
    pub chaddr: Vec<u8>,
    pub options: Options,
}

fn ipv4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// Splits an options area into (code, value) pairs, in order; stops at END.
fn scan_options(area: &[u8], base: usize, out: &mut Vec<(u8, Vec<u8>)>) -> Result<(), DhcpError> {
    let mut i = 0;
    while i < area.len() {
        let c = area[i];
        if c == code::PAD {
            i += 1;
            continue;
        }
        if c == code::END {
            return Ok(());
        }
        let len = *area.get(i + 1).ok_or(DhcpError::Truncated { at: base + i })? as usize;
        let value = area
            .get(i + 2..i + 2 + len)
            .ok_or(DhcpError::Truncated { at: base + i })?;
        // Same code again: RFC 3396 concatenation.
        match out.iter_mut().find(|(k, _)| *k == c) {
            Some((_, v)) => v.extend_from_slice(value),
            None => out.push((c, value.to_vec())),
        }
        i += 2 + len;
    }
    Ok(())
}

fn addr_list(c: u8, v: &[u8]) -> Result<Vec<Ipv4Addr>, DhcpError> {
    if v.is_empty() || !v.len().is_multiple_of(4) {
        return Err(DhcpError::BadOptionLength {
            code: c,
            len: v.len(),
        });
    }
    Ok(v.chunks_exact(4).map(|q| ipv4_at(q, 0)).collect())
}

fn one_addr(c: u8, v: &[u8]) -> Result<Ipv4Addr, DhcpError> {
    if v.len() != 4 {
        return Err(DhcpError::BadOptionLength {
            code: c,
            len: v.len(),
        });
    }
    Ok(ipv4_at(v, 0))
}

fn u32_value(c: u8, v: &[u8]) -> Result<u32, DhcpError> {
    let bytes: [u8; 4] = v.try_into().map_err(|_| DhcpError::BadOptionLength {
        code: c,
        len: v.len(),
    })?;
    Ok(u32::from_be_bytes(bytes))
}

fn text(v: &[u8]) -> String {
    // Servers pad names with NULs now and then.
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

impl Options {
    fn from_pairs(pairs: &[(u8, Vec<u8>)]) -> Result<Options, DhcpError> {
        let mut o = Options::default();
        for (c, v) in pairs {
            let c = *c;
            let bad = || DhcpError::BadOptionLength {
                code: c,
                len: v.len(),
            };
            match c {
                code::MESSAGE_TYPE => {
                    let [t] = v.as_slice() else { return Err(bad()) };
                    o.message_type = Some(MessageType::from_u8(*t)?);
                }
                code::SUBNET_MASK => o.subnet_mask = Some(one_addr(c, v)?),
                code::ROUTER => o.routers = addr_list(c, v)?,
                code::DNS_SERVER => o.dns_servers = addr_list(c, v)?,
                code::HOSTNAME => o.hostname = Some(text(v)),
                code::DOMAIN_NAME => o.domain_name = Some(text(v)),
                code::REQUESTED_IP => o.requested_ip = Some(one_addr(c, v)?),
                code::LEASE_TIME => o.lease_time = Some(u32_value(c, v)?),
                code::SERVER_ID => o.server_id = Some(one_addr(c, v)?),
                code::PARAMETER_REQUEST_LIST => o.parameter_request_list = v.clone(),
                code::MESSAGE => o.message = Some(text(v)),
                code::MAX_MESSAGE_SIZE => {
                    let [a, b] = v.as_slice() else { return Err(bad()) };
                    o.max_message_size = Some(u16::from_be_bytes([*a, *b]));
                }
                code::RENEWAL_TIME => o.renewal_time = Some(u32_value(c, v)?),
                code::REBINDING_TIME => o.rebinding_time = Some(u32_value(c, v)?),
                code::CLIENT_ID => o.client_id = Some(v.clone()),
                _ => {}
            }
        }
        Ok(o)
    }

    /// (code, value) pairs in the order they are emitted.
    fn to_pairs(&self) -> Vec<(u8, Vec<u8>)> {
        let mut p: Vec<(u8, Vec<u8>)> = Vec::new();
        let addrs = |a: &[Ipv4Addr]| a.iter().flat_map(|x| x.octets()).collect::<Vec<u8>>();
        if let Some(t) = self.message_type {
            p.push((code::MESSAGE_TYPE, vec![t as u8]));
        }
        if let Some(id) = &self.client_id {
            p.push((code::CLIENT_ID, id.clone()));
        }
        if let Some(a) = self.requested_ip {
            p.push((code::REQUESTED_IP, a.octets().to_vec()));
        }
        if let Some(a) = self.server_id {
            p.push((code::SERVER_ID, a.octets().to_vec()));
        }
        if let Some(s) = self.max_message_size {
            p.push((code::MAX_MESSAGE_SIZE, s.to_be_bytes().to_vec()));
        }
        if !self.parameter_request_list.is_empty() {
            p.push((code::PARAMETER_REQUEST_LIST, self.parameter_request_list.clone()));
        }
        if let Some(m) = self.subnet_mask {
            p.push((code::SUBNET_MASK, m.octets().to_vec()));
        }
        if !self.routers.is_empty() {
            p.push((code::ROUTER, addrs(&self.routers)));
        }
        if !self.dns_servers.is_empty() {
            p.push((code::DNS_SERVER, addrs(&self.dns_servers)));
        }
        if let Some(h) = &self.hostname {
            p.push((code::HOSTNAME, h.as_bytes().to_vec()));
        }
        if let Some(d) = &self.domain_name {
            p.push((code::DOMAIN_NAME, d.as_bytes().to_vec()));
        }
        if let Some(t) = self.lease_time {
            p.push((code::LEASE_TIME, t.to_be_bytes().to_vec()));
        }
        if let Some(t) = self.renewal_time {
            p.push((code::RENEWAL_TIME, t.to_be_bytes().to_vec()));
        }
        if let Some(t) = self.rebinding_time {
            p.push((code::REBINDING_TIME, t.to_be_bytes().to_vec()));
        }
        if let Some(m) = &self.message {
            p.push((code::MESSAGE, m.as_bytes().to_vec()));
        }
        p
    }
}

impl Message {
    /// Parses one message from a UDP payload.
    pub fn parse(b: &[u8]) -> Result<Message, DhcpError> {
        if b.len() < FIXED_LEN + 4 {
            return Err(DhcpError::Truncated {
                at: b.len().min(FIXED_LEN),
            });
        }
        let op = match b[0] {
            1 => Op::Request,
            2 => Op::Reply,
            other => return Err(DhcpError::BadOp(other)),
        };
        let hlen = b[2];
        if hlen > 16 {
            return Err(DhcpError::BadHardwareLength(hlen));
        }
        if b[FIXED_LEN..FIXED_LEN + 4] != MAGIC_COOKIE {
            return Err(DhcpError::BadCookie);
        }
        let mut pairs = Vec::new();
        scan_options(&b[FIXED_LEN + 4..], FIXED_LEN + 4, &mut pairs)?;
        // Option 52: 1 = `file` holds options, 2 = `sname`, 3 = both (RFC 2132 §9.3).
        if let Some(pos) = pairs.iter().position(|(c, _)| *c == code::OVERLOAD) {
            let (_, v) = pairs.remove(pos);
            let [which] = v.as_slice() else {
                return Err(DhcpError::BadOptionLength {
                    code: code::OVERLOAD,
                    len: v.len(),
                });
            };
            if which & 1 != 0 {
                scan_options(&b[108..236], 108, &mut pairs)?;
            }
            if which & 2 != 0 {
                scan_options(&b[44..108], 44, &mut pairs)?;
            }
        }
        Ok(Message {
            op,
            htype: b[1],
            xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            secs: u16::from_be_bytes([b[8], b[9]]),
            broadcast: u16::from_be_bytes([b[10], b[11]]) & BROADCAST_FLAG != 0,
            ciaddr: ipv4_at(b, 12),
            yiaddr: ipv4_at(b, 16),
            siaddr: ipv4_at(b, 20),
            giaddr: ipv4_at(b, 24),
            chaddr: b[28..28 + hlen as usize].to_vec(),
            options: Options::from_pairs(&pairs)?,
        })
    }

    /// Encodes the message; `sname` and `file` are left empty.
    pub fn emit(&self) -> Result<Vec<u8>, DhcpError> {
        if self.chaddr.len() > 16 {
            return Err(DhcpError::Unrepresentable(
                "hardware address longer than 16 bytes",
            ));
        }
        let mut b = vec![0u8; FIXED_LEN];
        b[0] = self.op as u8;
        b[1] = self.htype;
        b[2] = self.chaddr.len() as u8;
        b[4..8].copy_from_slice(&self.xid.to_be_bytes());
        b[8..10].copy_from_slice(&self.secs.to_be_bytes());
        let flags = if self.broadcast { BROADCAST_FLAG } else { 0 };
        b[10..12].copy_from_slice(&flags.to_be_bytes());
        b[12..16].copy_from_slice(&self.ciaddr.octets());
        b[16..20].copy_from_slice(&self.yiaddr.octets());
        b[20..24].copy_from_slice(&self.siaddr.octets());
        b[24..28].copy_from_slice(&self.giaddr.octets());
        b[28..28 + self.chaddr.len()].copy_from_slice(&self.chaddr);
        b.extend_from_slice(&MAGIC_COOKIE);
        for (c, v) in self.options.to_pairs() {
            if v.is_empty() {
                b.extend_from_slice(&[c, 0]);
            }
            for chunk in v.chunks(255) {
                b.push(c);
                b.push(chunk.len() as u8);
                b.extend_from_slice(chunk);
            }
        }
        b.push(code::END);
        if b.len() < MIN_EMIT_LEN {
            b.resize(MIN_EMIT_LEN, code::PAD);
        }
        Ok(b)
    }

    /// A client message of `kind` from Ethernet address `mac`, asking for the options a
    /// board needs.
    pub fn client(kind: MessageType, xid: u32, mac: [u8; 6]) -> Message {
        Message {
            op: Op::Request,
            xid,
            secs: 0,
            broadcast: true,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            htype: 1,
            chaddr: mac.to_vec(),
            options: Options {
                message_type: Some(kind),
                parameter_request_list: vec![
                    code::SUBNET_MASK,
                    code::ROUTER,
                    code::DNS_SERVER,
                    code::HOSTNAME,
                    code::DOMAIN_NAME,
                    code::LEASE_TIME,
                    code::RENEWAL_TIME,
                    code::REBINDING_TIME,
                ],
                max_message_size: Some(1500),
                ..Options::default()
            },
        }
    }

    /// Whether this is a server's reply of `kind` to the client exchange `xid` of `mac`.
    pub fn answers(&self, xid: u32, mac: &[u8], kind: MessageType) -> bool {
        self.op == Op::Reply
            && self.xid == xid
            && self.chaddr == mac
            && self.options.message_type == Some(kind)
    }
}

/// A lease from an ACK, with times in seconds (`None` = infinite).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub router: Option<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
    pub hostname: Option<String>,
    pub domain_name: Option<String>,
    pub server: Ipv4Addr,
    pub lease_secs: Option<u32>,
    pub renew_secs: Option<u32>,
    pub rebind_secs: Option<u32>,
}

const INFINITE: u32 = u32::MAX;

/// The classful default mask's prefix, for a server that sends no subnet mask (RFC 2131
/// leaves it to the client; classful is what the kernel's own ipconfig assumes).
fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// A prefix length from a contiguous mask, or `None` for a mask with holes.
pub fn mask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let len = bits.leading_ones();
    (bits.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

impl Lease {
    /// The lease an ACK grants; an error names what makes it unusable.
    pub fn from_ack(ack: &Message) -> Result<Lease, String> {
        let o = &ack.options;
        if o.message_type != Some(MessageType::Ack) {
            return Err(format!("expected a DHCPACK, got {:?}", o.message_type));
        }
        if ack.yiaddr.is_unspecified() || ack.yiaddr.is_broadcast() || ack.yiaddr.is_multicast() {
            return Err(format!("DHCPACK assigns the unusable address {}", ack.yiaddr));
        }
        let prefix_len = match o.subnet_mask {
            Some(m) => mask_prefix(m).ok_or_else(|| format!("DHCPACK subnet mask {m} has holes"))?,
            None => classful_prefix(ack.yiaddr),
        };
        let lease = o.lease_time.unwrap_or(INFINITE);
        let (lease_secs, renew_secs, rebind_secs) = if lease == INFINITE {
            (None, None, None)
        } else {
            // RFC 2131 §4.4.5: T1 = 0.5 and T2 = 0.875 of the lease unless the server says;
            // a server's T1/T2 beyond the lease are ignored.
            let t1 = o.renewal_time.filter(|t| *t < lease).unwrap_or(lease / 2);
            let t2 = o
                .rebinding_time
                .filter(|t| *t < lease && *t >= t1)
                .unwrap_or((u64::from(lease) * 7 / 8) as u32)
                .max(t1);
            (Some(lease), Some(t1), Some(t2))
        };
        Ok(Lease {
            address: ack.yiaddr,
            prefix_len,
            router: o.routers.first().copied(),
            dns_servers: o.dns_servers.clone(),
            hostname: o.hostname.clone().filter(|h| !h.is_empty()),
            domain_name: o.domain_name.clone().filter(|d| !d.is_empty()),
            server: o.server_id.unwrap_or(ack.siaddr),
            lease_secs,
            renew_secs,
            rebind_secs,
        })
    }

    /// The text of /etc/resolv.conf for this lease, or `None` without DNS servers.
    pub fn resolv_conf(&self) -> Option<String> {
        if self.dns_servers.is_empty() {
            return None;
        }
        let mut s = String::from("# written by shoal init from DHCP\n");
        if let Some(d) = self.domain_name.as_deref().filter(|d| is_valid_hostname(d)) {
            s.push_str(&format!("search {d}\n"));
        }
        for ns in &self.dns_servers {
            s.push_str(&format!("nameserver {ns}\n"));
        }
        Some(s)
    }
}

/// A name fit for sethostname and resolv.conf: dot-separated labels of letters, digits and
/// inner hyphens, 63 bytes a label, 253 in all (RFC 1123 §2.1). Server text is untrusted.
pub fn is_valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn ack() -> Message {
        let mut m = Message::client(MessageType::Ack, 7, MAC);
        m.op = Op::Reply;
        m.yiaddr = Ipv4Addr::new(10, 9, 0, 50);
        m.options = Options {
            message_type: Some(MessageType::Ack),
            subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            routers: vec![Ipv4Addr::new(10, 9, 0, 1)],
            dns_servers: vec![Ipv4Addr::new(10, 9, 0, 53), Ipv4Addr::new(10, 9, 0, 54)],
            lease_time: Some(3600),
            server_id: Some(Ipv4Addr::new(10, 9, 0, 1)),
            hostname: Some("board7".into()),
            domain_name: Some("lan".into()),
            ..Options::default()
        };
        m
    }

    #[test]
    fn discover_layout_matches_rfc_2131() {
        let b = Message::client(MessageType::Discover, 0x1234_5678, MAC)
            .emit()
            .unwrap();
        assert_eq!(b.len(), 300);
        assert_eq!(&b[..4], &[1, 1, 6, 0]);
        assert_eq!(&b[4..8], &[0x12, 0x34, 0x56, 0x78]);
        assert_eq!(&b[10..12], &[0x80, 0]);
        assert_eq!(&b[28..34], &MAC);
        assert_eq!(&b[236..240], &MAGIC_COOKIE);
        assert_eq!(&b[240..243], &[53, 1, 1]);
    }

    #[test]
    fn ack_becomes_a_lease_with_default_timers() {
        let back = Message::parse(&ack().emit().unwrap()).unwrap();
        assert!(back.answers(7, &MAC, MessageType::Ack));
        assert!(!back.answers(8, &MAC, MessageType::Ack));
        assert!(!back.answers(7, &MAC, MessageType::Offer));
        let l = Lease::from_ack(&back).unwrap();
        assert_eq!(l.address, Ipv4Addr::new(10, 9, 0, 50));
        assert_eq!(l.prefix_len, 24);
        assert_eq!(l.router, Some(Ipv4Addr::new(10, 9, 0, 1)));
        assert_eq!(
            (l.lease_secs, l.renew_secs, l.rebind_secs),
            (Some(3600), Some(1800), Some(3150))
        );
        assert_eq!(
            l.resolv_conf().unwrap(),
            "# written by shoal init from DHCP\nsearch lan\nnameserver 10.9.0.53\nnameserver 10.9.0.54\n"
        );
    }

    #[test]
    fn lease_edge_cases() {
        let mut m = ack();
        m.options.lease_time = None;
        m.options.subnet_mask = None;
        let l = Lease::from_ack(&m).unwrap();
        assert_eq!((l.lease_secs, l.prefix_len), (None, 8));
        m.options.subnet_mask = Some(Ipv4Addr::new(255, 0, 255, 0));
        assert!(Lease::from_ack(&m).unwrap_err().contains("holes"));
        let mut m = ack();
        m.options.renewal_time = Some(100);
        m.options.rebinding_time = Some(50);
        let l = Lease::from_ack(&m).unwrap();
        assert_eq!((l.renew_secs, l.rebind_secs), (Some(100), Some(3150)));
        let mut m = ack();
        m.yiaddr = Ipv4Addr::UNSPECIFIED;
        assert!(Lease::from_ack(&m).is_err());
        m.options.message_type = Some(MessageType::Nak);
        assert!(Lease::from_ack(&m).is_err());
    }

    #[test]
    fn split_options_and_overload_are_read() {
        let mut b = Message::client(MessageType::Offer, 1, MAC).emit().unwrap();
        b.truncate(240);
        // Router split in two instances, DNS in `file` through option 52.
        b.extend_from_slice(&[53, 1, 2, 3, 2, 10, 0, 3, 2, 0, 1, 52, 1, 1, 255]);
        b[108..116].copy_from_slice(&[6, 4, 10, 0, 0, 53, 255, 0]);
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.options.routers, vec![Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(m.options.dns_servers, vec![Ipv4Addr::new(10, 0, 0, 53)]);
    }

    #[test]
    fn malformed_messages_name_the_problem() {
        let good = ack().emit().unwrap();
        assert_eq!(
            Message::parse(&good[..100]),
            Err(DhcpError::Truncated { at: 100 })
        );
        let mut b = good.clone();
        b[236] = 0;
        assert_eq!(Message::parse(&b), Err(DhcpError::BadCookie));
        let mut b = good.clone();
        b[0] = 9;
        assert_eq!(Message::parse(&b), Err(DhcpError::BadOp(9)));
        let mut b = good.clone();
        b[2] = 17;
        assert_eq!(Message::parse(&b), Err(DhcpError::BadHardwareLength(17)));
        let mut b = good[..240].to_vec();
        b.extend_from_slice(&[1, 3, 255, 255, 255, 255]);
        assert_eq!(
            Message::parse(&b),
            Err(DhcpError::BadOptionLength { code: 1, len: 3 })
        );
        let mut b = good[..240].to_vec();
        b.extend_from_slice(&[53, 1, 9]);
        assert_eq!(Message::parse(&b), Err(DhcpError::BadMessageType(9)));
        let mut b = good[..240].to_vec();
        b.extend_from_slice(&[6, 8, 1, 2]);
        assert_eq!(Message::parse(&b), Err(DhcpError::Truncated { at: 240 }));
    }

    #[test]
    fn long_options_are_split_on_emit() {
        let mut m = ack();
        m.options.dns_servers = (0..100).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let b = m.emit().unwrap();
        assert_eq!(Message::parse(&b).unwrap(), m);
    }

    #[test]
    fn hostnames_are_checked() {
        assert!(is_valid_hostname("board-1.lan"));
        for bad in ["", "-a", "a-", "a..b", "a b", "a;rm", &"x".repeat(64)] {
            assert!(!is_valid_hostname(bad), "{bad:?}");
        }
    }

    fn addr() -> impl Strategy<Value = Ipv4Addr> {
        any::<u32>().prop_map(Ipv4Addr::from)
    }

    fn message_type() -> impl Strategy<Value = MessageType> {
        (1u8..=8).prop_map(|v| MessageType::from_u8(v).unwrap())
    }

    fn options() -> impl Strategy<Value = Options> {
        (
            (
                proptest::option::of(message_type()),
                proptest::option::of(addr()),
                prop::collection::vec(addr(), 0..4),
                prop::collection::vec(addr(), 0..80),
                proptest::option::of("[a-z0-9-]{0,300}"),
                proptest::option::of("[a-z.]{0,20}"),
                proptest::option::of(addr()),
                proptest::option::of(any::<u32>()),
            ),
            (
                proptest::option::of(addr()),
                prop::collection::vec(1u8..255, 0..10),
                proptest::option::of("[ -~]{0,40}"),
                proptest::option::of(any::<u16>()),
                proptest::option::of(any::<u32>()),
                proptest::option::of(any::<u32>()),
                proptest::option::of(prop::collection::vec(any::<u8>(), 0..20)),
            ),
        )
            .prop_map(
                |((t, mask, r, d, h, dn, req, lt), (sid, prl, msg, mms, t1, t2, cid))| Options {
                    message_type: t,
                    subnet_mask: mask,
                    routers: r,
                    dns_servers: d,
                    hostname: h,
                    domain_name: dn,
                    requested_ip: req,
                    lease_time: lt,
                    server_id: sid,
                    parameter_request_list: prl,
                    message: msg,
                    max_message_size: mms,
                    renewal_time: t1,
                    rebinding_time: t2,
                    client_id: cid,
                },
            )
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
            let _ = Message::parse(&bytes);
        }

        #[test]
        fn parse_never_panics_after_a_valid_header(tail in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut b = ack().emit().unwrap();
            b.truncate(240);
            b.extend_from_slice(&tail);
            if let Ok(m) = Message::parse(&b) {
                let _ = Lease::from_ack(&m);
            }
        }

        #[test]
        fn emit_then_parse_is_identity(
            xid in any::<u32>(), secs in any::<u16>(), bcast in any::<bool>(),
            a in addr(), y in addr(), s in addr(), g in addr(), htype in any::<u8>(),
            chaddr in prop::collection::vec(any::<u8>(), 0..=16), reply in any::<bool>(),
            options in options(),
        ) {
            let m = Message {
                op: if reply { Op::Reply } else { Op::Request },
                xid, secs, broadcast: bcast, ciaddr: a, yiaddr: y, siaddr: s, giaddr: g,
                htype, chaddr, options,
            };
            let b = m.emit().unwrap();
            prop_assert!(b.len() >= MIN_EMIT_LEN);
            prop_assert_eq!(Message::parse(&b).unwrap(), m);
        }
    }
}
