//! rtnetlink over a raw NETLINK_ROUTE socket, bound to one network namespace.
//!
//! Guarantees: a [`Netlink`] handle operates in the namespace it was opened in, whatever
//! thread later uses it (the socket is created inside that namespace); every change request
//! waits for the kernel's acknowledgement, and a refusal comes back as an error naming the
//! operation and the link or address.

use super::netns::{self, Netns};
use crate::wire::netlink::{self as wire, LinkChange, LinkInfo, Request};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// One data message of a reply: (message type, payload).
type Payload = (u16, Vec<u8>);

/// An open rtnetlink socket.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

fn os_err(code: i32, what: &str) -> io::Error {
    let e = io::Error::from_raw_os_error(code);
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// A netlink socket of `protocol` (NETLINK_ROUTE, NETLINK_NETFILTER) in the calling thread's
/// namespace.
pub(crate) fn open_socket(protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("opening netlink socket: {e}")));
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Send `msg` (one or more netlink messages) to the kernel.
pub(crate) fn send_to_kernel(fd: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    // SAFETY: zeroed sockaddr_nl is valid; family set; nl_pid 0 addresses the kernel.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: buffer and address are valid for the lengths given.
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Netlink {
    /// Open a socket inside `ns`.
    pub fn open(ns: &Netns) -> io::Result<Netlink> {
        netns::run_in(ns, || {
            Ok(Netlink {
                fd: open_socket(libc::NETLINK_ROUTE)?,
                seq: 1,
            })
        })
    }

    fn send(&mut self, req: Request) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        send_to_kernel(&self.fd, &req.finish(self.seq))?;
        Ok(self.seq)
    }

    /// Receive until the acknowledgement (or DONE) for `seq`; collect RTM_NEWLINK payloads.
    fn collect(&mut self, seq: u32, what: &str) -> io::Result<Vec<LinkInfo>> {
        let payloads = self.collect_raw(seq, what)?.map_err(|code| os_err(code, what))?;
        parse_links(payloads, what)
    }

    /// Like [`Netlink::collect`], with the kernel's refusal as a bare errno.
    /// Every data message answering `seq` as (type, payload), until the ack or DONE.
    fn collect_raw(&mut self, seq: u32, what: &str) -> io::Result<Result<Vec<Payload>, i32>> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut links = Vec::new();
        loop {
            // SAFETY: buf is valid for writes of its length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io::Error::new(
                    e.kind(),
                    format!("{what}: receiving from netlink: {e}"),
                ));
            }
            let replies = wire::parse_replies(&buf[..n as usize])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}")))?;
            for r in replies {
                if r.seq != seq {
                    continue;
                }
                match r.msg_type {
                    wire::NLMSG_ERROR => {
                        let code = wire::error_code(r.payload).map_err(|e| {
                            io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
                        })?;
                        return Ok(if code == 0 { Ok(links) } else { Err(code) });
                    }
                    wire::NLMSG_DONE => return Ok(Ok(links)),
                    other => links.push((other, r.payload.to_vec())),
                }
            }
        }
    }

    fn ack(&mut self, req: Request, what: &str) -> io::Result<()> {
        let seq = self.send(req)?;
        self.collect(seq, what).map(|_| ())
    }

    /// The link called `name`, if any.
    pub fn link(&mut self, name: &str) -> io::Result<Option<LinkInfo>> {
        let seq = self.send(wire::get_link(name))?;
        let what = format!("looking up link {name}");
        match self.collect_raw(seq, &what)? {
            Ok(payloads) => Ok(parse_links(payloads, &what)?.pop()),
            Err(code) if code == libc::ENODEV => Ok(None),
            Err(code) => Err(os_err(code, &format!("looking up link {name}"))),
        }
    }

    /// Every IPv4 address in the namespace as (link index, address, prefix length).
    pub fn addrs_v4(&mut self) -> io::Result<Vec<(u32, Ipv4Addr, u8)>> {
        let seq = self.send(wire::dump_addrs_v4())?;
        let what = "listing addresses";
        let payloads = self.collect_raw(seq, what)?.map_err(|code| os_err(code, what))?;
        payloads
            .iter()
            .filter(|(t, _)| *t == wire::RTM_NEWADDR)
            .filter_map(|(_, p)| wire::parse_addr_v4(p).transpose())
            .collect::<Result<_, _>>()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}")))
    }

    /// Every link in the namespace.
    pub fn links(&mut self) -> io::Result<Vec<LinkInfo>> {
        let seq = self.send(wire::dump_links())?;
        self.collect(seq, "listing links")
    }

    /// The index of link `name`, or NotFound naming it.
    pub fn index(&mut self, name: &str) -> io::Result<u32> {
        self.link(name)?
            .map(|l| l.index)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("link {name} does not exist")))
    }

    /// Create bridge `name` with a fixed hardware address of its own (see [`bridge_mac`]).
    pub fn create_bridge(&mut self, name: &str) -> io::Result<()> {
        self.ack(
            wire::new_bridge(name, bridge_mac(name)),
            &format!("creating bridge {name}"),
        )
    }

    pub fn create_veth(&mut self, name: &str, peer: &str) -> io::Result<()> {
        self.ack(
            wire::new_veth(name, peer, None),
            &format!("creating veth pair {name}/{peer}"),
        )
    }

    /// Create a veth pair whose `peer` end is made directly inside `target`.
    pub fn create_veth_into(&mut self, name: &str, peer: &str, target: &Netns) -> io::Result<()> {
        let file = target.open()?;
        self.ack(
            wire::new_veth(name, peer, Some(file.as_raw_fd())),
            &format!("creating veth pair {name}/{peer} (peer in netns {target:?})"),
        )
    }

    pub fn set_link(&mut self, name: &str, change: &LinkChange) -> io::Result<()> {
        let index = self.index(name)?;
        self.ack(
            wire::set_link(index, change),
            &format!("changing link {name} ({change:?})"),
        )
    }

    pub fn set_up(&mut self, name: &str) -> io::Result<()> {
        self.set_link(
            name,
            &LinkChange {
                up: Some(true),
                ..Default::default()
            },
        )
    }

    /// Move link `name` into the namespace `target` (a namespace file).
    pub fn move_to_netns(&mut self, name: &str, target: &Netns) -> io::Result<()> {
        let file = target.open()?;
        let change = LinkChange {
            netns_fd: Some(file.as_raw_fd()),
            ..Default::default()
        };
        let index = self.index(name)?;
        self.ack(
            wire::set_link(index, &change),
            &format!("moving link {name} into netns {target:?}"),
        )
    }

    pub fn delete_link(&mut self, name: &str) -> io::Result<()> {
        let index = self.index(name)?;
        self.delete_index(index, name)
    }

    /// Delete the link with `index` (`name` is for the error message only). Indexes are not
    /// reused soon, unlike names, so a late deletion never hits a newer link.
    pub fn delete_index(&mut self, index: u32, name: &str) -> io::Result<()> {
        self.ack(wire::del_link(index), &format!("deleting link {name}"))
    }

    pub fn add_addr_v4(&mut self, name: &str, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let index = self.index(name)?;
        self.ack(
            wire::add_addr_v4(index, addr, prefix),
            &format!("adding address {addr}/{prefix} to {name}"),
        )
    }

    pub fn del_addr_v4(&mut self, name: &str, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let index = self.index(name)?;
        self.ack(
            wire::del_addr_v4(index, addr, prefix),
            &format!("removing address {addr}/{prefix} from {name}"),
        )
    }

    /// The default route via `gateway` out of `via`, replacing any other default route.
    pub fn set_default_route_v4(&mut self, gateway: Ipv4Addr, via: &str) -> io::Result<()> {
        let index = self.index(via)?;
        self.ack(
            wire::replace_default_route_v4(gateway, index),
            &format!("setting default route via {gateway} dev {via}"),
        )
    }

    pub fn add_default_route_v4(&mut self, gateway: Ipv4Addr, via: &str) -> io::Result<()> {
        let index = self.index(via)?;
        self.ack(
            wire::add_default_route_v4(gateway, index),
            &format!("adding default route via {gateway} dev {via}"),
        )
    }
}

fn parse_links(payloads: Vec<Payload>, what: &str) -> io::Result<Vec<LinkInfo>> {
    payloads
        .iter()
        .filter(|(t, _)| *t == wire::RTM_NEWLINK)
        .map(|(_, p)| wire::parse_link(p))
        .collect::<Result<_, _>>()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}")))
}

/// A locally administered unicast address derived from the bridge's name: stable across
/// daemon restarts, so neighbours' ARP entries for the gateway stay right.
pub fn bridge_mac(name: &str) -> [u8; 6] {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(name.as_bytes());
    [0x02, 0x42, h[0], h[1], h[2], h[3]]
}
