//! nf_tables netlink messages (linux/netfilter/nf_tables.h, nfnetlink.h): a whole table as one
//! batch.
//!
//! shoal owns one table and always replaces it whole, so the only messages needed are: begin
//! a batch, create-or-keep the table, delete it, create it again with its chains and rules,
//! end the batch. The kernel applies a batch as one transaction: either every message of it
//! takes effect or none does. Guarantees: [`replace_table`] and [`delete_table`] emit messages
//! with the lengths, padding and byte orders the kernel checks (attributes in host order,
//! values inside registers in network order where nft puts them so); every message but the
//! batch markers asks for an acknowledgement, and the returned sequence numbers say which.

use super::netlink::{Request, NLM_F_ACK, NLM_F_CREATE};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NLM_F_APPEND: u16 = 0x800;

const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;

/// Netfilter verdicts (linux/netfilter.h).
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
/// The verdict register; data registers start at 1 (16 bytes each).
const NFT_REG_VERDICT: u32 = 0;
pub const REG_1: u32 = 1;
pub const REG_2: u32 = 2;

/// Address families of nfgenmsg.
pub const NFPROTO_IPV4: u8 = 2;
const NFPROTO_UNSPEC: u8 = 0;

/// Where a base chain hooks into the IPv4 stack (NF_INET_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting = 0,
    Input = 1,
    Forward = 2,
    Output = 3,
    Postrouting = 4,
}

/// Base chain types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
}

impl ChainType {
    fn name(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
        }
    }
}

/// What `meta` loads (NFT_META_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    IifName = 6,
    OifName = 7,
    L4Proto = 16,
}

/// Which header `payload` reads from (NFT_PAYLOAD_*_HEADER).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadBase {
    Network = 1,
    Transport = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq = 0,
    Neq = 1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Drop,
    Accept,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    Dnat = 1,
}

/// One nf_tables expression, as the kernel's expression types see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Meta {
        key: MetaKey,
        dreg: u32,
    },
    Payload {
        base: PayloadBase,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    Cmp {
        sreg: u32,
        op: CmpOp,
        data: Vec<u8>,
    },
    /// `dreg = (sreg & mask) ^ xor`, over `mask.len()` bytes.
    Bitwise {
        sreg: u32,
        dreg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    Immediate {
        dreg: u32,
        data: Vec<u8>,
    },
    Verdict(Verdict),
    /// `fib daddr type`: the route type of the destination address (RTN_*), host order u32.
    FibDaddrType {
        dreg: u32,
    },
    /// `ct status`: the connection's status bits (IPS_*), host order u32.
    CtStatus {
        dreg: u32,
    },
    /// NAT to the address in `addr_reg` and the port in `port_reg` (network order).
    Nat {
        kind: NatKind,
        addr_reg: u32,
        port_reg: u32,
    },
    Masquerade,
}

/// A base chain with its rules (each rule a list of expressions, all of which must match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: &'static str,
    pub kind: ChainType,
    pub hook: Hook,
    pub priority: i32,
    pub rules: Vec<Vec<Expr>>,
}

fn nfgenmsg(family: u8, res_id: u16) -> [u8; 4] {
    let id = res_id.to_be_bytes();
    [family, 0, id[0], id[1]]
}

fn nft_request(cmd: u16, flags: u16, family: u8) -> Request {
    Request::new(
        (NFNL_SUBSYS_NFTABLES << 8) | cmd,
        flags | NLM_F_ACK,
        &nfgenmsg(family, 0),
    )
}

fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

fn data_value(r: &mut Request, kind: u16, value: &[u8]) {
    let nest = r.begin_nest(kind);
    r.attr(NFTA_DATA_VALUE, value);
    r.end_nest(nest);
}

/// The expression's kernel name and its attributes.
fn encode_expr(r: &mut Request, e: &Expr) {
    let name = match e {
        Expr::Meta { .. } => "meta",
        Expr::Payload { .. } => "payload",
        Expr::Cmp { .. } => "cmp",
        Expr::Bitwise { .. } => "bitwise",
        Expr::Immediate { .. } | Expr::Verdict(_) => "immediate",
        Expr::FibDaddrType { .. } => "fib",
        Expr::CtStatus { .. } => "ct",
        Expr::Nat { .. } => "nat",
        Expr::Masquerade => "masq",
    };
    let elem = r.begin_nest(NFTA_LIST_ELEM);
    r.attr_str(NFTA_EXPR_NAME, name);
    let data = r.begin_nest(NFTA_EXPR_DATA);
    match e {
        Expr::Meta { key, dreg } => {
            r.attr(1, &be32(*dreg)); // NFTA_META_DREG
            r.attr(2, &be32(*key as u32)); // NFTA_META_KEY
        }
        Expr::Payload {
            base,
            offset,
            len,
            dreg,
        } => {
            r.attr(1, &be32(*dreg)); // NFTA_PAYLOAD_DREG
            r.attr(2, &be32(*base as u32)); // NFTA_PAYLOAD_BASE
            r.attr(3, &be32(*offset)); // NFTA_PAYLOAD_OFFSET
            r.attr(4, &be32(*len)); // NFTA_PAYLOAD_LEN
        }
        Expr::Cmp { sreg, op, data } => {
            r.attr(1, &be32(*sreg)); // NFTA_CMP_SREG
            r.attr(2, &be32(*op as u32)); // NFTA_CMP_OP
            data_value(r, 3, data); // NFTA_CMP_DATA
        }
        Expr::Bitwise {
            sreg,
            dreg,
            mask,
            xor,
        } => {
            r.attr(1, &be32(*sreg)); // NFTA_BITWISE_SREG
            r.attr(2, &be32(*dreg)); // NFTA_BITWISE_DREG
            r.attr(3, &be32(mask.len() as u32)); // NFTA_BITWISE_LEN
            data_value(r, 4, mask); // NFTA_BITWISE_MASK
            data_value(r, 5, xor); // NFTA_BITWISE_XOR
        }
        Expr::Immediate { dreg, data } => {
            r.attr(1, &be32(*dreg)); // NFTA_IMMEDIATE_DREG
            data_value(r, 2, data); // NFTA_IMMEDIATE_DATA
        }
        Expr::Verdict(v) => {
            r.attr(1, &be32(NFT_REG_VERDICT));
            let imm = r.begin_nest(2); // NFTA_IMMEDIATE_DATA
            let verdict = r.begin_nest(NFTA_DATA_VERDICT);
            let code = match v {
                Verdict::Drop => NF_DROP,
                Verdict::Accept => NF_ACCEPT,
            };
            r.attr(NFTA_VERDICT_CODE, &be32(code));
            r.end_nest(verdict);
            r.end_nest(imm);
        }
        Expr::FibDaddrType { dreg } => {
            r.attr(1, &be32(*dreg)); // NFTA_FIB_DREG
            r.attr(2, &be32(3)); // NFTA_FIB_RESULT: NFT_FIB_RESULT_ADDRTYPE
            r.attr(3, &be32(2)); // NFTA_FIB_FLAGS: NFTA_FIB_F_DADDR
        }
        Expr::CtStatus { dreg } => {
            r.attr(1, &be32(*dreg)); // NFTA_CT_DREG
            r.attr(2, &be32(2)); // NFTA_CT_KEY: NFT_CT_STATUS
        }
        Expr::Nat {
            kind,
            addr_reg,
            port_reg,
        } => {
            r.attr(1, &be32(*kind as u32)); // NFTA_NAT_TYPE
            r.attr(2, &be32(u32::from(NFPROTO_IPV4))); // NFTA_NAT_FAMILY
            r.attr(3, &be32(*addr_reg)); // NFTA_NAT_REG_ADDR_MIN
            r.attr(5, &be32(*port_reg)); // NFTA_NAT_REG_PROTO_MIN
        }
        Expr::Masquerade => {}
    }
    r.end_nest(data);
    r.end_nest(elem);
}

fn batch_marker(kind: u16) -> Request {
    Request::new(kind, 0, &nfgenmsg(NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES))
}

fn table_msg(cmd: u16, flags: u16, family: u8, table: &str) -> Request {
    let mut r = nft_request(cmd, flags, family);
    r.attr_str(NFTA_TABLE_NAME, table);
    r
}

/// A batch under construction: consecutive sequence numbers from `first_seq`.
struct Batch {
    bytes: Vec<u8>,
    seq: u32,
    acked: Vec<u32>,
}

impl Batch {
    fn new(first_seq: u32) -> Batch {
        let mut b = Batch {
            bytes: Vec::new(),
            seq: first_seq,
            acked: Vec::new(),
        };
        b.push(batch_marker(NFNL_MSG_BATCH_BEGIN), false);
        b
    }

    fn push(&mut self, r: Request, acked: bool) {
        self.bytes.extend_from_slice(&r.finish(self.seq));
        if acked {
            self.acked.push(self.seq);
        }
        self.seq = self.seq.wrapping_add(1);
    }

    fn finish(mut self) -> (Vec<u8>, Vec<u32>) {
        self.push(batch_marker(NFNL_MSG_BATCH_END), false);
        (self.bytes, self.acked)
    }
}

/// Create `table` if missing and delete it: after these two, the table is gone either way.
fn push_drop_table(b: &mut Batch, family: u8, table: &str) {
    b.push(table_msg(NFT_MSG_NEWTABLE, NLM_F_CREATE, family, table), true);
    b.push(table_msg(NFT_MSG_DELTABLE, 0, family, table), true);
}

/// One batch replacing `table` (of `family`) by one holding `chains`: the bytes to send and
/// the sequence numbers whose acknowledgements to wait for.
pub fn replace_table(family: u8, table: &str, chains: &[Chain], first_seq: u32) -> (Vec<u8>, Vec<u32>) {
    let mut b = Batch::new(first_seq);
    push_drop_table(&mut b, family, table);
    b.push(table_msg(NFT_MSG_NEWTABLE, NLM_F_CREATE, family, table), true);
    for c in chains {
        let mut r = nft_request(NFT_MSG_NEWCHAIN, NLM_F_CREATE, family);
        r.attr_str(NFTA_CHAIN_TABLE, table);
        r.attr_str(NFTA_CHAIN_NAME, c.name);
        let hook = r.begin_nest(NFTA_CHAIN_HOOK);
        r.attr(NFTA_HOOK_HOOKNUM, &be32(c.hook as u32));
        r.attr(NFTA_HOOK_PRIORITY, &c.priority.to_be_bytes());
        r.end_nest(hook);
        r.attr(NFTA_CHAIN_POLICY, &be32(NF_ACCEPT));
        r.attr_str(NFTA_CHAIN_TYPE, c.kind.name());
        b.push(r, true);
        for rule in &c.rules {
            let mut r = nft_request(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, family);
            r.attr_str(NFTA_RULE_TABLE, table);
            r.attr_str(NFTA_RULE_CHAIN, c.name);
            let list = r.begin_nest(NFTA_RULE_EXPRESSIONS);
            for e in rule {
                encode_expr(&mut r, e);
            }
            r.end_nest(list);
            b.push(r, true);
        }
    }
    b.finish()
}

/// One batch deleting `table` if it exists.
pub fn delete_table(family: u8, table: &str, first_seq: u32) -> (Vec<u8>, Vec<u32>) {
    let mut b = Batch::new(first_seq);
    push_drop_table(&mut b, family, table);
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::netlink::{parse_attrs, parse_replies};

    #[test]
    fn batch_is_framed_and_acks_every_inner_message() {
        let chain = Chain {
            name: "forward",
            kind: ChainType::Filter,
            hook: Hook::Forward,
            priority: 0,
            rules: vec![vec![
                Expr::Meta {
                    key: MetaKey::IifName,
                    dreg: REG_1,
                },
                Expr::Cmp {
                    sreg: REG_1,
                    op: CmpOp::Eq,
                    data: b"br-a\0\0\0\0\0\0\0\0\0\0\0\0".to_vec(),
                },
                Expr::Verdict(Verdict::Drop),
            ]],
        };
        let (bytes, acked) = replace_table(NFPROTO_IPV4, "shoal", &[chain], 100);
        let msgs = parse_replies(&bytes).unwrap();
        let types: Vec<u16> = msgs.iter().map(|m| m.msg_type).collect();
        // begin, new+del (drop), new table, chain, rule, end.
        assert_eq!(types, [0x10, 0xa00, 0xa02, 0xa00, 0xa03, 0xa06, 0x11]);
        assert_eq!(
            msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (100..107).collect::<Vec<_>>()
        );
        assert_eq!(acked, [101, 102, 103, 104, 105]);
        // The batch markers address the nftables subsystem in network order.
        assert_eq!(msgs[0].payload, [0, 0, 0, 10]);
        assert_eq!(msgs[0].flags & NLM_F_ACK, 0);
        // The rule names its table and chain and holds three expressions.
        let rule = parse_attrs(msgs[5].payload, 4).unwrap();
        assert_eq!(rule[0], (NFTA_RULE_TABLE, &b"shoal\0"[..]));
        assert_eq!(rule[1], (NFTA_RULE_CHAIN, &b"forward\0"[..]));
        let exprs = parse_attrs(rule[2].1, 0).unwrap();
        let names: Vec<&[u8]> = exprs
            .iter()
            .map(|(_, e)| parse_attrs(e, 0).unwrap()[0].1)
            .collect();
        assert_eq!(names, [&b"meta\0"[..], b"cmp\0", b"immediate\0"]);
        // Every message length is a multiple of 4 and they tile the buffer.
        let total: usize = msgs.iter().map(|m| 16 + m.payload.len()).sum();
        assert_eq!(total, bytes.len());
    }

    #[test]
    fn chain_hook_and_priority_are_big_endian() {
        let chain = Chain {
            name: "prerouting",
            kind: ChainType::Nat,
            hook: Hook::Prerouting,
            priority: -100,
            rules: vec![],
        };
        let (bytes, _) = replace_table(NFPROTO_IPV4, "t", &[chain], 1);
        let msgs = parse_replies(&bytes).unwrap();
        let attrs = parse_attrs(msgs[4].payload, 4).unwrap();
        let hook = parse_attrs(attrs[2].1, 0).unwrap();
        assert_eq!(hook[0].1, [0, 0, 0, 0]);
        assert_eq!(hook[1].1, (-100i32).to_be_bytes());
        assert_eq!(attrs[4], (NFTA_CHAIN_TYPE, &b"nat\0"[..]));
    }

    #[test]
    fn delete_is_create_then_delete() {
        let (bytes, acked) = delete_table(NFPROTO_IPV4, "shoal", 7);
        let msgs = parse_replies(&bytes).unwrap();
        assert_eq!(
            msgs.iter().map(|m| m.msg_type).collect::<Vec<_>>(),
            [0x10, 0xa00, 0xa02, 0x11]
        );
        assert_eq!(acked, [8, 9]);
    }
}
