//! DHCPv4 client for `ip=dhcp`: one interface, UDP from 0.0.0.0:68 bound to that device
//! (SO_BINDTODEVICE) with broadcast replies requested, so no packet socket is needed.
//!
//! [`acquire`] runs DISCOVER → OFFER → REQUEST → ACK (starting over after a NAK) with
//! doubling retransmissions inside one overall deadline; [`apply`] puts the address and the
//! default route on the link through rtnetlink and writes resolv.conf atomically;
//! [`keep_renewed`] renews at T1 (unicast to the server), rebinds at T2 (broadcast) and
//! starts over when the lease runs out. Everything acts on the calling thread's network
//! namespace, so a test can run it on a thread inside a namespace it made.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::net::netlink::Netlink;
use crate::net::netns::Netns;
use crate::wire::dhcp::{self, Lease, Message, MessageType};

/// What the client needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    pub device: String,
    /// Sent as option 12, so the server can register the name.
    pub hostname: Option<String>,
    /// Overall limit of [`acquire`].
    pub timeout: Duration,
    /// First retransmission wait; doubled up to [`MAX_WAIT`].
    pub first_wait: Duration,
}

impl Settings {
    pub fn new(device: &str) -> Settings {
        Settings {
            device: device.to_string(),
            hostname: None,
            timeout: Duration::from_secs(30),
            first_wait: Duration::from_secs(1),
        }
    }
}

/// Longest wait between two retransmissions while acquiring (RFC 2131 §4.1 caps at 64 s;
/// a booting board is better served by retrying sooner).
const MAX_WAIT: Duration = Duration::from_secs(8);

fn err(kind: io::ErrorKind, msg: String) -> io::Error {
    io::Error::new(kind, msg)
}

/// A UDP socket on port 68 that sends and receives only through `device`.
fn client_socket(device: &str) -> io::Result<UdpSocket> {
    let ctx = |what: &str| {
        let e = io::Error::last_os_error();
        err(e.kind(), format!("DHCP socket on {device}: {what}: {e}"))
    };
    // SAFETY: plain socket(2); the descriptor is owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(ctx("socket"));
    }
    // SAFETY: fd is fresh and owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for (opt, name) in [
        (libc::SO_REUSEADDR, "SO_REUSEADDR"),
        (libc::SO_BROADCAST, "SO_BROADCAST"),
    ] {
        // SAFETY: the option value is a c_int that lives across the call.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(ctx(name));
        }
    }
    // SAFETY: the device name bytes live across the call; the kernel copies at most len.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            device.as_ptr().cast(),
            device.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(ctx("SO_BINDTODEVICE"));
    }
    rustix::net::bind(&fd, &SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, dhcp::CLIENT_PORT)).map_err(|e| {
        let e = io::Error::from(e);
        err(e.kind(), format!("DHCP socket on {device}: binding port 68: {e}"))
    })?;
    Ok(UdpSocket::from(fd))
}

/// The Ethernet address of `device`.
fn mac_of(device: &str) -> io::Result<[u8; 6]> {
    let link = Netlink::open(&Netns::Current)?
        .link(device)?
        .ok_or_else(|| err(io::ErrorKind::NotFound, format!("no network interface {device}")))?;
    link.mac.as_slice().try_into().map_err(|_| {
        err(
            io::ErrorKind::InvalidInput,
            format!("{device} has no Ethernet address"),
        )
    })
}

fn new_xid() -> u32 {
    fastrand::u32(..)
}

/// Sends `msg` to `to` and waits for a reply of one of `kinds`, retransmitting with a
/// doubling wait (from `first_wait`, at most `max_wait`) until `deadline`.
fn exchange(
    sock: &UdpSocket,
    msg: &Message,
    to: SocketAddrV4,
    kinds: &[MessageType],
    deadline: Instant,
    first_wait: Duration,
    max_wait: Duration,
) -> io::Result<Option<Message>> {
    let bytes = msg
        .emit()
        .map_err(|e| err(io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut wait = first_wait;
    let mut buf = [0u8; 1500];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        sock.send_to(&bytes, to)?;
        let resend_at = (now + wait).min(deadline);
        // ±0.5 s of jitter keeps a rack of boards that powered up together apart (RFC 2131 §4.1).
        wait = (wait * 2).min(max_wait) + Duration::from_millis(fastrand::u64(0..500));
        loop {
            let left = resend_at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))?;
            let n = match sock.recv_from(&mut buf) {
                Ok((n, _)) => n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            // Anything else on port 68 (other clients' broadcasts, garbage) is ignored.
            let Ok(reply) = Message::parse(&buf[..n]) else {
                continue;
            };
            if kinds.iter().any(|k| reply.answers(msg.xid, &msg.chaddr, *k)) {
                return Ok(Some(reply));
            }
        }
    }
}

fn broadcast() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::BROADCAST, dhcp::SERVER_PORT)
}

fn nak_error(settings: &Settings, nak: &Message) -> io::Error {
    let server = nak.options.server_id.unwrap_or(nak.siaddr);
    let why = nak.options.message.as_deref().unwrap_or("no reason given");
    err(
        io::ErrorKind::PermissionDenied,
        format!("DHCPNAK from {server} on {}: {why}", settings.device),
    )
}

/// Obtains a lease on `settings.device` (which must exist; it is brought up).
pub fn acquire(settings: &Settings) -> io::Result<Lease> {
    let start = Instant::now();
    let deadline = start + settings.timeout;
    super::net::link_up(&settings.device)?;
    let mac = mac_of(&settings.device)?;
    let sock = client_socket(&settings.device)?;
    let mut naks = Vec::new();
    loop {
        let xid = new_xid();
        let mut discover = Message::client(MessageType::Discover, xid, mac);
        discover.options.hostname = settings.hostname.clone();
        let offer = exchange(
            &sock,
            &discover,
            broadcast(),
            &[MessageType::Offer],
            deadline,
            settings.first_wait,
            MAX_WAIT,
        )?;
        let Some(offer) = offer else {
            let after_naks = if naks.is_empty() {
                String::new()
            } else {
                format!(" (after {})", naks.join("; "))
            };
            return Err(err(
                io::ErrorKind::TimedOut,
                format!(
                    "no DHCP lease on {} within {} s{after_naks}",
                    settings.device,
                    settings.timeout.as_secs_f32()
                ),
            ));
        };
        let mut request = Message::client(MessageType::Request, xid, mac);
        request.secs = start.elapsed().as_secs().min(u64::from(u16::MAX)) as u16;
        request.options.hostname = settings.hostname.clone();
        request.options.requested_ip = Some(offer.yiaddr);
        request.options.server_id = offer.options.server_id;
        let reply = exchange(
            &sock,
            &request,
            broadcast(),
            &[MessageType::Ack, MessageType::Nak],
            deadline,
            settings.first_wait,
            MAX_WAIT,
        )?;
        match reply {
            Some(ack) if ack.options.message_type == Some(MessageType::Ack) => {
                return Lease::from_ack(&ack)
                    .map_err(|e| err(io::ErrorKind::InvalidData, format!("{}: {e}", settings.device)));
            }
            // A NAK (the offer was taken meanwhile) or no answer: start over (RFC 2131 §3.1).
            Some(nak) => naks.push(nak_error(settings, &nak).to_string()),
            None => {}
        }
    }
}

/// Asks to keep using `address` (INIT-REBOOT, RFC 2131 §3.2): an ACK gives the lease, a NAK
/// is a PermissionDenied error naming the server and its reason.
pub fn confirm(settings: &Settings, address: Ipv4Addr) -> io::Result<Lease> {
    let deadline = Instant::now() + settings.timeout;
    super::net::link_up(&settings.device)?;
    let mac = mac_of(&settings.device)?;
    let sock = client_socket(&settings.device)?;
    let mut request = Message::client(MessageType::Request, new_xid(), mac);
    request.options.requested_ip = Some(address);
    request.options.hostname = settings.hostname.clone();
    finish_request(
        settings,
        &sock,
        &request,
        broadcast(),
        deadline,
        settings.first_wait,
    )
}

fn finish_request(
    settings: &Settings,
    sock: &UdpSocket,
    request: &Message,
    to: SocketAddrV4,
    deadline: Instant,
    first_wait: Duration,
) -> io::Result<Lease> {
    let kinds = [MessageType::Ack, MessageType::Nak];
    match exchange(
        sock,
        request,
        to,
        &kinds,
        deadline,
        first_wait,
        Duration::from_secs(60),
    )? {
        Some(r) if r.options.message_type == Some(MessageType::Ack) => Lease::from_ack(&r)
            .map_err(|e| err(io::ErrorKind::InvalidData, format!("{}: {e}", settings.device))),
        Some(nak) => Err(nak_error(settings, &nak)),
        None => Err(err(
            io::ErrorKind::TimedOut,
            format!("no answer to the DHCPREQUEST on {}", settings.device),
        )),
    }
}

/// Extends `lease` until `deadline`: unicast to its server (RENEWING) or, with `rebinding`,
/// broadcast to any server (REBINDING). The address must already be on the link.
pub fn renew(settings: &Settings, lease: &Lease, rebinding: bool, deadline: Instant) -> io::Result<Lease> {
    let mac = mac_of(&settings.device)?;
    let sock = client_socket(&settings.device)?;
    let mut request = Message::client(MessageType::Request, new_xid(), mac);
    // The client has an address now: ciaddr set, no requested-ip or server id, and the
    // answer comes back unicast (RFC 2131 §4.3.2).
    request.ciaddr = lease.address;
    request.broadcast = false;
    request.options.hostname = settings.hostname.clone();
    let to = if rebinding {
        broadcast()
    } else {
        SocketAddrV4::new(lease.server, dhcp::SERVER_PORT)
    };
    finish_request(settings, &sock, &request, to, deadline, Duration::from_secs(4))
}

/// Puts the lease on the link: address, default route, and `resolv_conf` (when the lease
/// names DNS servers). An address that exists is kept; the default route is replaced.
pub fn apply(settings: &Settings, lease: &Lease, resolv_conf: &Path) -> io::Result<()> {
    let dev = &settings.device;
    let mut nl = Netlink::open(&Netns::Current)?;
    nl.set_up(dev)?;
    match nl.add_addr_v4(dev, lease.address, lease.prefix_len) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        other => other?,
    }
    if let Some(gw) = lease.router {
        // Replaced, not added: a new lease may name another router.
        nl.set_default_route_v4(gw, dev)?;
    }
    if let Some(text) = lease.resolv_conf() {
        crate::storage::atomic::write(resolv_conf, text.as_bytes())?;
    }
    Ok(())
}

/// Moves the link from lease `old` to lease `new`. The old address stays while a new lease
/// is sought (containers keep working when the server hands it out again); a different new
/// address replaces it. The old one goes first: removing a primary address also removes
/// the secondaries of its subnet, the new one among them.
pub fn switch(settings: &Settings, old: &Lease, new: &Lease, resolv_conf: &Path) -> io::Result<()> {
    if (old.address, old.prefix_len) != (new.address, new.prefix_len) {
        let mut nl = Netlink::open(&Netns::Current)?;
        match nl.del_addr_v4(&settings.device, old.address, old.prefix_len) {
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {}
            other => other?,
        }
    }
    apply(settings, new, resolv_conf)
}

/// The lease held now, for the DHCPRELEASE at shutdown.
static HELD: std::sync::Mutex<Option<(Settings, Lease)>> = std::sync::Mutex::new(None);

/// Records `lease` as the one held on `settings.device` (see [`release_held`]).
pub fn hold(settings: &Settings, lease: &Lease) {
    *HELD.lock().unwrap_or_else(|p| p.into_inner()) = Some((settings.clone(), lease.clone()));
}

/// Tells the server the held lease is no longer used (DHCPRELEASE, RFC 2131 §4.4.6), so the
/// address is free at once; the address stays on the link until power-off. Unanswered by
/// design: nothing is waited for.
pub fn release_held() -> io::Result<Option<Ipv4Addr>> {
    let Some((settings, lease)) = HELD.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return Ok(None);
    };
    let mac = mac_of(&settings.device)?;
    let sock = client_socket(&settings.device)?;
    let mut release = Message::client(MessageType::Release, new_xid(), mac);
    release.broadcast = false;
    release.ciaddr = lease.address;
    release.options.server_id = Some(lease.server);
    release.options.parameter_request_list.clear();
    release.options.max_message_size = None;
    let bytes = release
        .emit()
        .map_err(|e| err(io::ErrorKind::InvalidInput, e.to_string()))?;
    let to = SocketAddrV4::new(lease.server, dhcp::SERVER_PORT);
    sock.send_to(&bytes, to).map_err(|e| {
        err(
            e.kind(),
            format!("{}: sending DHCPRELEASE to {to}: {e}", settings.device),
        )
    })?;
    Ok(Some(lease.address))
}

/// Keeps `lease` (obtained at `obtained`) alive for good: renews at T1, rebinds at T2, and
/// after an expiry acquires a new lease and applies it. `log` receives one line per event.
/// Returns only for an infinite lease.
pub fn keep_renewed(
    settings: Settings,
    mut lease: Lease,
    mut obtained: Instant,
    resolv_conf: PathBuf,
    log: impl Fn(String),
) {
    loop {
        let (Some(t1), Some(t2), Some(total)) = (lease.renew_secs, lease.rebind_secs, lease.lease_secs)
        else {
            return;
        };
        let at = |secs: u32| obtained + Duration::from_secs(u64::from(secs));
        std::thread::sleep(at(t1).saturating_duration_since(Instant::now()));
        let mut renewed = None;
        while renewed.is_none() && Instant::now() < at(total) {
            let rebinding = Instant::now() >= at(t2);
            let until = if rebinding { at(total) } else { at(t2) };
            let started = Instant::now();
            match renew(&settings, &lease, rebinding, until) {
                Ok(l) => renewed = Some((l, started)),
                Err(e) => {
                    log(format!("{}: renewing {}: {e}", settings.device, lease.address));
                    // A NAK ends the lease at once; otherwise keep trying until T2/expiry.
                    if e.kind() == io::ErrorKind::PermissionDenied {
                        break;
                    }
                }
            }
        }
        match renewed {
            Some((l, at)) if l.address == lease.address => {
                log(format!(
                    "{}: lease of {} renewed for {} s",
                    settings.device,
                    l.address,
                    l.lease_secs.map_or("infinite".to_string(), |s| s.to_string())
                ));
                if l.dns_servers != lease.dns_servers || l.router != lease.router {
                    if let Err(e) = apply(&settings, &l, &resolv_conf) {
                        log(format!("{}: {e}", settings.device));
                    }
                }
                lease = l;
                obtained = at;
                hold(&settings, &lease);
            }
            _ => {
                // The old address stays on the link: containers keep working if the new
                // lease hands out the same one, which is what servers usually do.
                log(format!(
                    "{}: lease of {} ended; asking for a new one",
                    settings.device, lease.address
                ));
                loop {
                    let started = Instant::now();
                    match acquire(&settings)
                        .and_then(|l| switch(&settings, &lease, &l, &resolv_conf).map(|()| l))
                    {
                        Ok(l) => {
                            log(format!(
                                "{}: new lease {}/{}",
                                settings.device, l.address, l.prefix_len
                            ));
                            lease = l;
                            obtained = started;
                            hold(&settings, &lease);
                            break;
                        }
                        Err(e) => log(format!("{}: {e}", settings.device)),
                    }
                }
            }
        }
    }
}
