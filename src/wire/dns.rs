//! DNS messages (RFC 1035, EDNS0 from RFC 6891): a checked view, then a typed repr.
//!
//! Guarantees:
//! - [`Packet::new_checked`] accepts any byte slice at least a header long; [`Message::parse`]
//!   returns an error, never panics, on any input. Compression pointers must point strictly
//!   backwards of every earlier pointer in the same name, so a pointer loop or a pointer bomb
//!   ends after at most one pass over the message; a decoded name never exceeds 255 bytes.
//! - [`Message::emit`] writes names compressed (RFC 1035 §4.1.4) and never exceeds the size
//!   limit it is given: records that do not fit are dropped whole and the TC bit is set
//!   (RFC 1035 §4.2.1, RFC 2181 §9). An EDNS0 OPT record is kept even when answers are cut.
//! - `parse(emit(m)) == m` for every message `emit` accepts (names compare case-insensitively,
//!   as RFC 1035 §2.3.3 asks).

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Classic maximum UDP payload without EDNS0 (RFC 1035 §4.2.1).
pub const MAX_UDP_CLASSIC: usize = 512;
/// Length of the fixed header (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;
/// Longest name on the wire, length octets included (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Record types shoal knows by name (RFC 1035 §3.2.2, RFC 3596, RFC 6891).
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const OPT: u16 = 41;
}

/// The Internet class (RFC 1035 §3.2.4).
pub const CLASS_IN: u16 = 1;

/// Response codes (RFC 1035 §4.1.1).
pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
}

/// What was wrong with a message, and at which byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The message ended inside a field that starts at this offset.
    Truncated { at: usize },
    /// A compression pointer at `at` does not point strictly backwards.
    BadPointer { at: usize, target: usize },
    /// A label at `at` uses the reserved 0b01/0b10 length prefix (RFC 1035 §4.1.4).
    BadLabelType { at: usize },
    /// A decoded name is longer than 255 bytes.
    NameTooLong { at: usize },
    /// A label given to the emitter is empty or longer than 63 bytes.
    BadLabel { label: String },
    /// A record's RDATA length disagrees with its type's layout.
    BadRdata { at: usize, rtype: u16 },
    /// A TXT character-string given to the emitter is longer than 255 bytes.
    TxtTooLong,
    /// The message does not fit even without its records.
    TooBig { len: usize, limit: usize },
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::Truncated { at } => write!(f, "DNS message truncated in a field at byte {at}"),
            DnsError::BadPointer { at, target } => {
                write!(
                    f,
                    "DNS compression pointer at byte {at} to {target} does not point backwards"
                )
            }
            DnsError::BadLabelType { at } => write!(f, "DNS label at byte {at} has a reserved type"),
            DnsError::NameTooLong { at } => write!(f, "DNS name at byte {at} is longer than 255 bytes"),
            DnsError::BadLabel { label } => write!(f, "DNS label {label:?} is empty or longer than 63 bytes"),
            DnsError::BadRdata { at, rtype } => {
                write!(f, "DNS record of type {rtype} at byte {at} has malformed data")
            }
            DnsError::TxtTooLong => write!(f, "DNS TXT string longer than 255 bytes"),
            DnsError::TooBig { len, limit } => {
                write!(
                    f,
                    "DNS message of {len} bytes does not fit in {limit} bytes even when truncated"
                )
            }
        }
    }
}

impl std::error::Error for DnsError {}

/// A checked zero-copy view of a DNS message: the header is known to be present.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Wrap `buf`, checking it holds at least a full header (RFC 1035 §4.1.1).
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, DnsError> {
        if buf.len() < HEADER_LEN {
            return Err(DnsError::Truncated { at: buf.len() });
        }
        Ok(Packet { buf })
    }

    fn u16_at(&self, at: usize) -> u16 {
        // Invariant: `new_checked` guaranteed HEADER_LEN bytes and `at + 1 < HEADER_LEN`.
        u16::from_be_bytes([self.buf[at], self.buf[at + 1]])
    }

    pub fn id(&self) -> u16 {
        self.u16_at(0)
    }
    pub fn flags(&self) -> u16 {
        self.u16_at(2)
    }
    pub fn qdcount(&self) -> u16 {
        self.u16_at(4)
    }
    pub fn ancount(&self) -> u16 {
        self.u16_at(6)
    }
    pub fn nscount(&self) -> u16 {
        self.u16_at(8)
    }
    pub fn arcount(&self) -> u16 {
        self.u16_at(10)
    }
    pub fn is_response(&self) -> bool {
        self.flags() & 0x8000 != 0
    }
    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }
}

/// A domain name as its labels (without the root label). Comparison ignores ASCII case.
#[derive(Debug, Clone, Default, Eq)]
pub struct Name {
    labels: Vec<Vec<u8>>,
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.labels.len() == other.labels.len()
            && self
                .labels
                .iter()
                .zip(&other.labels)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }
}

impl Name {
    /// The root name ".".
    pub fn root() -> Self {
        Name { labels: Vec::new() }
    }

    /// Parse dotted text ("web.example." or "web.example"); checks label and name limits.
    pub fn from_dotted(text: &str) -> Result<Self, DnsError> {
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() {
            return Ok(Name::root());
        }
        Name::from_labels(trimmed.split('.').map(|l| l.as_bytes().to_vec()).collect())
    }

    /// Build from raw labels, checking RFC 1035 §2.3.4 limits.
    pub fn from_labels(labels: Vec<Vec<u8>>) -> Result<Self, DnsError> {
        for label in &labels {
            if label.is_empty() || label.len() > MAX_LABEL_LEN {
                return Err(DnsError::BadLabel {
                    label: String::from_utf8_lossy(label).into_owned(),
                });
            }
        }
        let name = Name { labels };
        if name.wire_len() > MAX_NAME_LEN {
            return Err(DnsError::NameTooLong { at: 0 });
        }
        Ok(name)
    }

    pub fn labels(&self) -> &[Vec<u8>] {
        &self.labels
    }

    /// Length on the wire without compression: each label's length octet and bytes, plus root.
    pub fn wire_len(&self) -> usize {
        self.labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1
    }

    /// Lowercase dotted form without the trailing dot ("" for the root): the lookup key.
    pub fn to_lowercase_key(&self) -> String {
        self.to_string().trim_end_matches('.').to_ascii_lowercase()
    }

    /// Whether `self` equals `suffix` or ends with it (case-insensitive).
    pub fn ends_with(&self, suffix: &Name) -> bool {
        let n = suffix.labels.len();
        self.labels.len() >= n
            && self.labels[self.labels.len() - n..]
                .iter()
                .zip(&suffix.labels)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }
}

impl fmt::Display for Name {
    /// Dotted form with a trailing dot; bytes outside printable ASCII and dots in labels are
    /// escaped as `\DDD` (RFC 1035 §5.1).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.labels.is_empty() {
            return f.write_str(".");
        }
        for label in &self.labels {
            for &b in label {
                if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                    write!(f, "{}", b as char)?;
                } else {
                    write!(f, "\\{b:03}")?;
                }
            }
            f.write_str(".")?;
        }
        Ok(())
    }
}

/// Header fields (RFC 1035 §4.1.1); the section counts are derived from the sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub id: u16,
    pub response: bool,
    pub opcode: u8,
    pub authoritative: bool,
    pub truncated: bool,
    pub recursion_desired: bool,
    pub recursion_available: bool,
    /// The Z, AD and CD bits, kept as they came (RFC 1035 §4.1.1, RFC 4035 §3.2).
    pub z_bits: u8,
    pub rcode: u8,
}

impl Header {
    fn from_flags(id: u16, flags: u16) -> Self {
        Header {
            id,
            response: flags & 0x8000 != 0,
            opcode: ((flags >> 11) & 0xF) as u8,
            authoritative: flags & 0x0400 != 0,
            truncated: flags & 0x0200 != 0,
            recursion_desired: flags & 0x0100 != 0,
            recursion_available: flags & 0x0080 != 0,
            z_bits: ((flags >> 4) & 0x7) as u8,
            rcode: (flags & 0xF) as u8,
        }
    }

    fn flags(&self) -> u16 {
        (u16::from(self.response) << 15)
            | (u16::from(self.opcode & 0xF) << 11)
            | (u16::from(self.authoritative) << 10)
            | (u16::from(self.truncated) << 9)
            | (u16::from(self.recursion_desired) << 8)
            | (u16::from(self.recursion_available) << 7)
            | (u16::from(self.z_bits & 0x7) << 4)
            | u16::from(self.rcode & 0xF)
    }
}

/// A question (RFC 1035 §4.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: Name,
    pub qtype: u16,
    pub qclass: u16,
}

/// Record data for the types shoal understands; anything else is carried as raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Ptr(Name),
    Cname(Name),
    Ns(Name),
    Soa {
        mname: Name,
        rname: Name,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
    /// One or more character-strings (RFC 1035 §3.3.14).
    Txt(Vec<Vec<u8>>),
    /// Any other type, including OPT's options: passed through unchanged (never compressed
    /// into, as RFC 3597 §4 asks for unknown types).
    Other {
        rtype: u16,
        data: Vec<u8>,
    },
}

impl RData {
    pub fn rtype(&self) -> u16 {
        match self {
            RData::A(_) => rtype::A,
            RData::Aaaa(_) => rtype::AAAA,
            RData::Ptr(_) => rtype::PTR,
            RData::Cname(_) => rtype::CNAME,
            RData::Ns(_) => rtype::NS,
            RData::Soa { .. } => rtype::SOA,
            RData::Txt(_) => rtype::TXT,
            RData::Other { rtype, .. } => *rtype,
        }
    }
}

/// A resource record (RFC 1035 §4.1.3). For OPT (RFC 6891 §6.1.2) `class` is the sender's
/// UDP payload size and `ttl` holds the extended rcode, version and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: Name,
    pub class: u16,
    pub ttl: u32,
    pub data: RData,
}

impl Record {
    pub fn is_opt(&self) -> bool {
        self.data.rtype() == rtype::OPT
    }
}

/// A whole message, typed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub header: Header,
    pub questions: Vec<Question>,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

/// Cursor over the message bytes; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DnsError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(DnsError::Truncated { at: self.pos })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, DnsError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DnsError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DnsError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Read a possibly compressed name (RFC 1035 §4.1.4) and leave the cursor after it.
    fn name(&mut self) -> Result<Name, DnsError> {
        let start = self.pos;
        let mut labels = Vec::new();
        let mut wire_len = 1usize;
        let mut pos = self.pos;
        // Every pointer must point below this bound, which only shrinks: no loops.
        let mut bound = self.pos;
        let mut resume: Option<usize> = None;
        loop {
            let len = *self.buf.get(pos).ok_or(DnsError::Truncated { at: pos })?;
            match len & 0xC0 {
                0x00 if len == 0 => {
                    pos += 1;
                    break;
                }
                0x00 => {
                    let len = usize::from(len);
                    let label = self
                        .buf
                        .get(pos + 1..pos + 1 + len)
                        .ok_or(DnsError::Truncated { at: pos })?;
                    wire_len += len + 1;
                    if wire_len > MAX_NAME_LEN {
                        return Err(DnsError::NameTooLong { at: start });
                    }
                    labels.push(label.to_vec());
                    pos += 1 + len;
                }
                0xC0 => {
                    let low = *self.buf.get(pos + 1).ok_or(DnsError::Truncated { at: pos })?;
                    let target = (usize::from(len & 0x3F) << 8) | usize::from(low);
                    if target >= bound {
                        return Err(DnsError::BadPointer { at: pos, target });
                    }
                    if resume.is_none() {
                        resume = Some(pos + 2);
                    }
                    bound = target;
                    pos = target;
                }
                _ => return Err(DnsError::BadLabelType { at: pos }),
            }
        }
        self.pos = resume.unwrap_or(pos);
        Ok(Name { labels })
    }

    fn question(&mut self) -> Result<Question, DnsError> {
        Ok(Question {
            name: self.name()?,
            qtype: self.u16()?,
            qclass: self.u16()?,
        })
    }

    fn record(&mut self) -> Result<Record, DnsError> {
        let name = self.name()?;
        let rtype = self.u16()?;
        let class = self.u16()?;
        let ttl = self.u32()?;
        let rdlen = usize::from(self.u16()?);
        let rdata_at = self.pos;
        let raw = self.take(rdlen)?;
        let bad = DnsError::BadRdata { at: rdata_at, rtype };
        let end = rdata_at + rdlen;
        // Names inside RDATA may point anywhere earlier in the message, so parse them
        // with a reader over the whole buffer, then check they stayed inside RDATA.
        let mut inner = Reader {
            buf: self.buf,
            pos: rdata_at,
        };
        let data = match rtype {
            rtype::A => RData::A(Ipv4Addr::from(<[u8; 4]>::try_from(raw).map_err(|_| bad.clone())?)),
            rtype::AAAA => RData::Aaaa(Ipv6Addr::from(
                <[u8; 16]>::try_from(raw).map_err(|_| bad.clone())?,
            )),
            rtype::PTR | rtype::CNAME | rtype::NS => {
                let target = inner.name()?;
                if inner.pos != end {
                    return Err(bad);
                }
                match rtype {
                    rtype::PTR => RData::Ptr(target),
                    rtype::CNAME => RData::Cname(target),
                    _ => RData::Ns(target),
                }
            }
            rtype::SOA => {
                let mname = inner.name()?;
                let rname = inner.name()?;
                if inner.pos + 20 != end {
                    return Err(bad);
                }
                RData::Soa {
                    mname,
                    rname,
                    serial: inner.u32()?,
                    refresh: inner.u32()?,
                    retry: inner.u32()?,
                    expire: inner.u32()?,
                    minimum: inner.u32()?,
                }
            }
            rtype::TXT => {
                let mut strings = Vec::new();
                let mut txt = Reader { buf: raw, pos: 0 };
                while txt.pos < raw.len() {
                    let n = usize::from(txt.u8()?);
                    strings.push(txt.take(n).map_err(|_| bad.clone())?.to_vec());
                }
                if strings.is_empty() {
                    return Err(bad);
                }
                RData::Txt(strings)
            }
            _ => RData::Other {
                rtype,
                data: raw.to_vec(),
            },
        };
        Ok(Record {
            name,
            class,
            ttl,
            data,
        })
    }
}

impl Message {
    /// Parse a whole message from a checked view.
    pub fn parse(packet: &Packet<'_>) -> Result<Message, DnsError> {
        let header = Header::from_flags(packet.id(), packet.flags());
        let mut reader = Reader {
            buf: packet.bytes(),
            pos: HEADER_LEN,
        };
        // Counts are untrusted: no preallocation from them; each entry consumes bytes.
        let mut msg = Message {
            header,
            ..Default::default()
        };
        for _ in 0..packet.qdcount() {
            msg.questions.push(reader.question()?);
        }
        for _ in 0..packet.ancount() {
            msg.answers.push(reader.record()?);
        }
        for _ in 0..packet.nscount() {
            msg.authorities.push(reader.record()?);
        }
        for _ in 0..packet.arcount() {
            msg.additionals.push(reader.record()?);
        }
        Ok(msg)
    }

    /// Parse raw bytes (view + typed repr in one call).
    pub fn parse_bytes(buf: &[u8]) -> Result<Message, DnsError> {
        Message::parse(&Packet::new_checked(buf)?)
    }

    /// The EDNS0 OPT record, if any (RFC 6891 §6.1.1).
    pub fn opt(&self) -> Option<&Record> {
        self.additionals.iter().find(|r| r.is_opt())
    }

    /// The largest UDP response the sender of this query accepts: its EDNS0 payload size,
    /// never less than 512 (RFC 6891 §6.2.5), or 512 without EDNS0.
    pub fn max_udp_response(&self) -> usize {
        self.opt()
            .map(|o| usize::from(o.class).max(MAX_UDP_CLASSIC))
            .unwrap_or(MAX_UDP_CLASSIC)
    }

    /// A response skeleton for this query: same id, opcode, RD and question; RA set.
    pub fn response_to(query: &Message, rcode: u8) -> Message {
        Message {
            header: Header {
                id: query.header.id,
                response: true,
                opcode: query.header.opcode,
                recursion_desired: query.header.recursion_desired,
                recursion_available: true,
                rcode,
                ..Default::default()
            },
            questions: query.questions.clone(),
            ..Default::default()
        }
    }

    /// Emit with name compression into at most `limit` bytes. When the records do not fit,
    /// the records that fit are kept in order, the OPT record (if any) is kept, and TC is set.
    pub fn emit(&self, limit: usize) -> Result<Vec<u8>, DnsError> {
        let mut w = Writer::default();
        w.buf.extend_from_slice(&[0; HEADER_LEN]);
        for q in &self.questions {
            w.name(&q.name)?;
            w.u16(q.qtype);
            w.u16(q.qclass);
        }
        let opt = self.opt();
        let opt_len = match opt {
            Some(o) => Writer::default().record_len(o)?,
            None => 0,
        };
        if w.buf.len() + opt_len > limit {
            return Err(DnsError::TooBig {
                len: w.buf.len() + opt_len,
                limit,
            });
        }
        let budget = limit - opt_len;
        let mut counts = [0u16; 3];
        let mut truncated = false;
        let sections = [&self.answers, &self.authorities, &self.additionals];
        'sections: for (i, records) in sections.iter().enumerate() {
            for r in records.iter().filter(|r| !r.is_opt()) {
                let mark = w.buf.len();
                w.record(r)?;
                if w.buf.len() > budget {
                    w.rollback(mark);
                    truncated = true;
                    break 'sections;
                }
                counts[i] += 1;
            }
        }
        let mut arcount = counts[2];
        if let Some(o) = opt {
            w.record(o)?;
            arcount += 1;
        }
        let mut header = self.header;
        header.truncated |= truncated;
        let fields = [
            header.id,
            header.flags(),
            self.questions.len() as u16,
            counts[0],
            counts[1],
            arcount,
        ];
        for (i, v) in fields.iter().enumerate() {
            w.buf[2 * i..2 * i + 2].copy_from_slice(&v.to_be_bytes());
        }
        Ok(w.buf)
    }
}

/// Output buffer with the compression table: lowercase name suffix → offset.
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
    suffixes: HashMap<Vec<u8>, u16>,
}

impl Writer {
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Forget everything written from `mark` on, including compression targets there.
    fn rollback(&mut self, mark: usize) {
        self.buf.truncate(mark);
        self.suffixes.retain(|_, off| usize::from(*off) < mark);
    }

    fn suffix_key(labels: &[Vec<u8>]) -> Vec<u8> {
        let mut key = Vec::new();
        for l in labels {
            key.push(l.len() as u8);
            key.extend(l.iter().map(u8::to_ascii_lowercase));
        }
        key
    }

    fn name(&mut self, name: &Name) -> Result<(), DnsError> {
        // Names built by hand (struct literal inside this module) are trusted; others went
        // through `from_labels`. Check anyway so emit never writes an unparsable name.
        if name.wire_len() > MAX_NAME_LEN {
            return Err(DnsError::NameTooLong { at: self.buf.len() });
        }
        for i in 0..name.labels.len() {
            let key = Writer::suffix_key(&name.labels[i..]);
            if let Some(&off) = self.suffixes.get(&key) {
                self.u16(0xC000 | off);
                return Ok(());
            }
            let label = &name.labels[i];
            if label.is_empty() || label.len() > MAX_LABEL_LEN {
                return Err(DnsError::BadLabel {
                    label: String::from_utf8_lossy(label).into_owned(),
                });
            }
            // Pointers hold 14 bits of offset.
            if self.buf.len() < 0x4000 {
                self.suffixes.insert(key, self.buf.len() as u16);
            }
            self.buf.push(label.len() as u8);
            self.buf.extend_from_slice(label);
        }
        self.buf.push(0);
        Ok(())
    }

    fn record_len(&mut self, r: &Record) -> Result<usize, DnsError> {
        self.record(r)?;
        Ok(self.buf.len())
    }

    fn record(&mut self, r: &Record) -> Result<(), DnsError> {
        self.name(&r.name)?;
        self.u16(r.data.rtype());
        self.u16(r.class);
        self.u32(r.ttl);
        let len_at = self.buf.len();
        self.u16(0);
        match &r.data {
            RData::A(a) => self.buf.extend_from_slice(&a.octets()),
            RData::Aaaa(a) => self.buf.extend_from_slice(&a.octets()),
            RData::Ptr(n) | RData::Cname(n) | RData::Ns(n) => self.name(n)?,
            RData::Soa {
                mname,
                rname,
                serial,
                refresh,
                retry,
                expire,
                minimum,
            } => {
                self.name(mname)?;
                self.name(rname)?;
                for v in [serial, refresh, retry, expire, minimum] {
                    self.u32(*v);
                }
            }
            RData::Txt(strings) => {
                if strings.is_empty() {
                    return Err(DnsError::BadRdata {
                        at: len_at,
                        rtype: rtype::TXT,
                    });
                }
                for s in strings {
                    let n = u8::try_from(s.len()).map_err(|_| DnsError::TxtTooLong)?;
                    self.buf.push(n);
                    self.buf.extend_from_slice(s);
                }
            }
            RData::Other { data, rtype } => {
                if data.len() > usize::from(u16::MAX) {
                    return Err(DnsError::BadRdata {
                        at: len_at,
                        rtype: *rtype,
                    });
                }
                self.buf.extend_from_slice(data)
            }
        }
        let rdlen = self.buf.len() - len_at - 2;
        let rdlen = u16::try_from(rdlen).map_err(|_| DnsError::BadRdata {
            at: len_at,
            rtype: r.data.rtype(),
        })?;
        self.buf[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        Ok(())
    }
}

/// The reverse-lookup name of an IPv4 address: `d.c.b.a.in-addr.arpa` (RFC 1035 §3.5).
pub fn ptr_name_v4(addr: Ipv4Addr) -> Name {
    let o = addr.octets();
    let labels = [o[3], o[2], o[1], o[0]]
        .iter()
        .map(|b| b.to_string().into_bytes())
        .chain([b"in-addr".to_vec(), b"arpa".to_vec()])
        .collect();
    Name { labels }
}

/// The IPv4 address a `d.c.b.a.in-addr.arpa` name stands for, if it is one.
pub fn parse_ptr_v4(name: &Name) -> Option<Ipv4Addr> {
    let l = name.labels();
    if l.len() != 6 || !l[4].eq_ignore_ascii_case(b"in-addr") || !l[5].eq_ignore_ascii_case(b"arpa") {
        return None;
    }
    let mut octets = [0u8; 4];
    for (i, label) in l[..4].iter().enumerate() {
        let text = std::str::from_utf8(label).ok()?;
        // Reject "01" and "+1": only canonical decimal octets name an address.
        if text.len() > 1 && text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        octets[3 - i] = text.parse().ok()?;
    }
    Some(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> Name {
        Name::from_dotted(s).unwrap()
    }

    fn a_record(n: &str, ip: [u8; 4]) -> Record {
        Record {
            name: name(n),
            class: CLASS_IN,
            ttl: 600,
            data: RData::A(Ipv4Addr::from(ip)),
        }
    }

    fn query(n: &str, qtype: u16) -> Message {
        Message {
            header: Header {
                id: 0xBEEF,
                recursion_desired: true,
                ..Default::default()
            },
            questions: vec![Question {
                name: name(n),
                qtype,
                qclass: CLASS_IN,
            }],
            ..Default::default()
        }
    }

    /// RFC 1035 §4.1.1: header layout, flags bit by bit.
    #[test]
    fn header_flags_layout() {
        let bytes = [0x12, 0x34, 0x85, 0x83, 0, 1, 0, 2, 0, 3, 0, 4];
        let p = Packet::new_checked(&bytes).unwrap();
        assert_eq!(p.id(), 0x1234);
        assert_eq!((p.qdcount(), p.ancount(), p.nscount(), p.arcount()), (1, 2, 3, 4));
        let h = Header::from_flags(p.id(), p.flags());
        assert!(h.response && h.authoritative && h.recursion_desired && h.recursion_available);
        assert!(!h.truncated);
        assert_eq!((h.opcode, h.rcode), (0, rcode::NXDOMAIN));
        assert_eq!(h.flags(), 0x8583);
    }

    #[test]
    fn short_header_is_an_error() {
        assert_eq!(
            Packet::new_checked(&[0; 11]).unwrap_err(),
            DnsError::Truncated { at: 11 }
        );
    }

    /// RFC 1035 §4.1.2 and §4.1.3 with the compression example of §4.1.4:
    /// F.ISI.ARPA, FOO.F.ISI.ARPA (pointer to F.ISI.ARPA), ARPA (pointer into it).
    #[test]
    fn compression_example_from_rfc1035_4_1_4() {
        let mut msg = vec![0u8; 12];
        msg[5] = 3; // three questions
        let f_isi_arpa = msg.len();
        msg.extend_from_slice(b"\x01F\x03ISI\x04ARPA\x00\x00\x01\x00\x01");
        msg.extend_from_slice(b"\x03FOO");
        msg.extend_from_slice(&(0xC000u16 | f_isi_arpa as u16).to_be_bytes());
        msg.extend_from_slice(b"\x00\x01\x00\x01");
        msg.extend_from_slice(&(0xC000u16 | (f_isi_arpa + 6) as u16).to_be_bytes());
        msg.extend_from_slice(b"\x00\x01\x00\x01");
        let m = Message::parse_bytes(&msg).unwrap();
        let names: Vec<String> = m.questions.iter().map(|q| q.name.to_string()).collect();
        assert_eq!(names, ["F.ISI.ARPA.", "FOO.F.ISI.ARPA.", "ARPA."]);
    }

    /// RFC 1035 §4.1.4: emit compresses repeated suffixes, case-insensitively.
    #[test]
    fn emit_compresses_names() {
        let mut m = Message::response_to(&query("web.lab", rtype::A), rcode::NOERROR);
        m.answers = vec![
            a_record("web.lab", [10, 0, 0, 2]),
            a_record("WEB.LAB", [10, 0, 0, 3]),
        ];
        let bytes = m.emit(512).unwrap();
        // Header 12 + question (9 + 4) + two answers of pointer(2) + 10 + 4.
        assert_eq!(bytes.len(), 12 + 13 + 2 * 16);
        assert_eq!(&bytes[25..27], &[0xC0, 12]);
        assert_eq!(Message::parse_bytes(&bytes).unwrap(), m);
    }

    /// RFC 1035 §4.1.4: a pointer to itself or forwards is refused, not followed.
    #[test]
    fn pointer_loops_are_refused() {
        let mut msg = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert_eq!(
            Message::parse_bytes(&msg).unwrap_err(),
            DnsError::BadPointer { at: 12, target: 12 }
        );
        // Two pointers pointing at each other: 12 → 14 is forward.
        let mut msg = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&[0xC0, 14, 0xC0, 12, 0, 1, 0, 1]);
        assert!(matches!(
            Message::parse_bytes(&msg),
            Err(DnsError::BadPointer { .. })
        ));
    }

    /// A chain of pointers, each adding a 63-byte label, would decode to far more than 255
    /// bytes: the decoder stops at the RFC 1035 §2.3.4 limit instead of building it.
    #[test]
    fn pointer_bomb_stops_at_name_limit() {
        // Two answers: an unknown-type record whose RDATA holds the chain links, then a
        // record whose owner name points at the last link.
        let mut msg = vec![0, 0, 0x81, 0x80, 0, 0, 0, 2, 0, 0, 0, 0];
        msg.extend_from_slice(&[0, 0x01, 0x2C, 0, 1, 0, 0, 0, 0]); // root, type 300, IN, ttl
        let links = 6;
        msg.extend_from_slice(&[0, 0]); // RDLENGTH, set below
        let first = msg.len();
        msg.push(0); // the chain ends at a root label
        let mut prev = first;
        for _ in 0..links {
            let here = msg.len();
            msg.push(63);
            msg.extend_from_slice(&[b'b'; 63]);
            msg.extend_from_slice(&(0xC000u16 | prev as u16).to_be_bytes());
            prev = here;
        }
        let rdlen = (msg.len() - first) as u16;
        msg[first - 2..first].copy_from_slice(&rdlen.to_be_bytes());
        msg.extend_from_slice(&(0xC000u16 | prev as u16).to_be_bytes());
        msg.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
        assert_eq!(
            Message::parse_bytes(&msg).unwrap_err(),
            DnsError::NameTooLong {
                at: first + rdlen as usize
            }
        );
    }

    /// RFC 1035 §2.3.4: labels of at most 63 bytes, names of at most 255.
    #[test]
    fn name_limits() {
        assert!(Name::from_dotted(&"a".repeat(63)).is_ok());
        assert!(Name::from_dotted(&"a".repeat(64)).is_err());
        assert!(Name::from_dotted("a..b").is_err());
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(Name::from_dotted(&long).is_err());
        assert_eq!(Name::from_dotted(".").unwrap(), Name::root());
    }

    /// RFC 1035 §3.3 (CNAME, NS, PTR, SOA, TXT) and RFC 3596 §2.2 (AAAA) round-trip.
    #[test]
    fn all_record_types_round_trip() {
        let mut m = Message::response_to(&query("x.lab", rtype::A), rcode::NOERROR);
        m.header.authoritative = true;
        m.answers = vec![
            Record {
                name: name("alias.lab"),
                class: CLASS_IN,
                ttl: 5,
                data: RData::Cname(name("x.lab")),
            },
            a_record("x.lab", [172, 30, 0, 2]),
            Record {
                name: name("x.lab"),
                class: CLASS_IN,
                ttl: 5,
                data: RData::Aaaa(Ipv6Addr::LOCALHOST),
            },
            Record {
                name: ptr_name_v4([172, 30, 0, 2].into()),
                class: CLASS_IN,
                ttl: 5,
                data: RData::Ptr(name("x.lab")),
            },
            Record {
                name: name("x.lab"),
                class: CLASS_IN,
                ttl: 5,
                data: RData::Txt(vec![b"hello".to_vec(), b"".to_vec(), vec![0xFF; 255]]),
            },
        ];
        m.authorities = vec![
            Record {
                name: name("lab"),
                class: CLASS_IN,
                ttl: 5,
                data: RData::Ns(name("ns.lab")),
            },
            Record {
                name: name("lab"),
                class: CLASS_IN,
                ttl: 5,
                data: RData::Soa {
                    mname: name("ns.lab"),
                    rname: name("hostmaster.lab"),
                    serial: 1,
                    refresh: 2,
                    retry: 3,
                    expire: 4,
                    minimum: 5,
                },
            },
        ];
        let bytes = m.emit(4096).unwrap();
        assert_eq!(Message::parse_bytes(&bytes).unwrap(), m);
    }

    /// RFC 6891 §6.1.2: OPT carries the payload size in CLASS; its options pass through.
    #[test]
    fn edns0_opt_passthrough_and_size() {
        let mut q = query("x.lab", rtype::A);
        q.additionals.push(Record {
            name: Name::root(),
            class: 1232,
            ttl: 0x0000_8000,
            data: RData::Other {
                rtype: rtype::OPT,
                data: vec![0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8],
            },
        });
        let parsed = Message::parse_bytes(&q.emit(512).unwrap()).unwrap();
        assert_eq!(parsed, q);
        assert_eq!(parsed.max_udp_response(), 1232);
        assert_eq!(query("x", rtype::A).max_udp_response(), 512);
    }

    /// RFC 1035 §4.2.1 / RFC 2181 §9: a reply over the limit is cut at a record boundary with
    /// TC set; the OPT record survives (RFC 6891 §7).
    #[test]
    fn truncation_sets_tc_and_keeps_opt() {
        let mut m = Message::response_to(&query("many.lab", rtype::A), rcode::NOERROR);
        m.answers = (0..100).map(|i| a_record("many.lab", [10, 0, 0, i])).collect();
        m.additionals.push(Record {
            name: Name::root(),
            class: 512,
            ttl: 0,
            data: RData::Other {
                rtype: rtype::OPT,
                data: vec![],
            },
        });
        let bytes = m.emit(512).unwrap();
        assert!(bytes.len() <= 512);
        let parsed = Message::parse_bytes(&bytes).unwrap();
        assert!(parsed.header.truncated);
        assert!(parsed.answers.len() < 100 && !parsed.answers.is_empty());
        assert_eq!(parsed.answers[..], m.answers[..parsed.answers.len()]);
        assert!(parsed.opt().is_some());
        // Everything fits over TCP's 65535 limit: no TC.
        let full = Message::parse_bytes(&m.emit(65535).unwrap()).unwrap();
        assert!(!full.header.truncated);
        assert_eq!(full, m);
    }

    #[test]
    fn ptr_names() {
        let n = ptr_name_v4(Ipv4Addr::new(172, 30, 0, 7));
        assert_eq!(n.to_string(), "7.0.30.172.in-addr.arpa.");
        assert_eq!(parse_ptr_v4(&n), Some(Ipv4Addr::new(172, 30, 0, 7)));
        assert_eq!(parse_ptr_v4(&name("07.0.30.172.in-addr.arpa")), None);
        assert_eq!(parse_ptr_v4(&name("256.0.30.172.in-addr.arpa")), None);
        assert_eq!(parse_ptr_v4(&name("0.30.172.in-addr.arpa")), None);
    }

    /// RDATA whose embedded name runs past RDLENGTH is malformed (RFC 1035 §3.2.1).
    #[test]
    fn rdata_length_mismatch_is_an_error() {
        let mut m = Message::response_to(&query("x.lab", rtype::PTR), rcode::NOERROR);
        m.answers.push(Record {
            name: name("x.lab"),
            class: CLASS_IN,
            ttl: 1,
            data: RData::Ptr(name("y.lab")),
        });
        let mut bytes = m.emit(512).unwrap();
        // RDLENGTH sits right before the PTR target; shorten it by one.
        // "y" then a pointer to the question's "lab".
        let target = b"\x01y\xC0";
        let pos = bytes.windows(target.len()).position(|w| w == target).unwrap();
        bytes[pos - 1] -= 1;
        assert!(Message::parse_bytes(&bytes).is_err());
    }

    fn arb_name() -> impl Strategy<Value = Name> {
        prop::collection::vec(prop::collection::vec(any::<u8>(), 1..12), 0..5)
            .prop_map(|labels| Name::from_labels(labels).unwrap())
    }

    fn arb_rdata() -> impl Strategy<Value = RData> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|o| RData::A(o.into())),
            any::<[u8; 16]>().prop_map(|o| RData::Aaaa(o.into())),
            arb_name().prop_map(RData::Ptr),
            arb_name().prop_map(RData::Cname),
            arb_name().prop_map(RData::Ns),
            (arb_name(), arb_name(), any::<[u32; 5]>()).prop_map(|(mname, rname, v)| RData::Soa {
                mname,
                rname,
                serial: v[0],
                refresh: v[1],
                retry: v[2],
                expire: v[3],
                minimum: v[4],
            }),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..4).prop_map(RData::Txt),
            (300u16..400, prop::collection::vec(any::<u8>(), 0..30))
                .prop_map(|(rtype, data)| RData::Other { rtype, data }),
        ]
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        (arb_name(), any::<u16>(), any::<u32>(), arb_rdata()).prop_map(|(name, class, ttl, data)| Record {
            name,
            class,
            ttl,
            data,
        })
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        (
            any::<(u16, bool, bool, bool, bool, bool)>(),
            0u8..16,
            0u8..8,
            0u8..16,
            prop::collection::vec((arb_name(), any::<u16>(), any::<u16>()), 0..3),
            prop::collection::vec(arb_record(), 0..6),
            prop::collection::vec(arb_record(), 0..3),
            prop::collection::vec(arb_record(), 0..3),
        )
            .prop_map(
                |((id, qr, aa, tc, rd, ra), opcode, z_bits, rc, qs, an, ns, ar)| Message {
                    header: Header {
                        id,
                        response: qr,
                        opcode,
                        authoritative: aa,
                        truncated: tc,
                        recursion_desired: rd,
                        recursion_available: ra,
                        z_bits,
                        rcode: rc,
                    },
                    questions: qs
                        .into_iter()
                        .map(|(name, qtype, qclass)| Question { name, qtype, qclass })
                        .collect(),
                    answers: an,
                    authorities: ns,
                    additionals: ar,
                },
            )
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = Message::parse_bytes(&bytes);
        }

        /// Header followed by random bytes with plausible counts exercises the deeper paths.
        #[test]
        fn parse_never_panics_with_counts(counts in any::<[u8; 4]>(), tail in prop::collection::vec(any::<u8>(), 0..400)) {
            let mut bytes = vec![0, 1, 0x81, 0x80, 0, counts[0] % 4, 0, counts[1] % 8, 0, counts[2] % 4, 0, counts[3] % 4];
            bytes.extend(tail);
            let _ = Message::parse_bytes(&bytes);
        }

        #[test]
        fn emit_parse_round_trip(m in arb_message()) {
            let bytes = m.emit(65535).unwrap();
            prop_assert_eq!(Message::parse_bytes(&bytes).unwrap(), m);
        }

        #[test]
        fn truncated_emit_is_a_prefix_and_fits(m in arb_message(), limit in 12usize..700) {
            if let Ok(bytes) = m.emit(limit) {
                prop_assert!(bytes.len() <= limit);
                let parsed = Message::parse_bytes(&bytes).unwrap();
                prop_assert_eq!(&parsed.questions, &m.questions);
                prop_assert_eq!(&parsed.answers[..], &m.answers[..parsed.answers.len()]);
            }
        }
    }
}
