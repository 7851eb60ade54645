//! Brings up loopback and the LAN interface with a static IPv4 address and default route,
//! through the classic socket ioctls (SIOCSIFADDR, SIOCSIFNETMASK, SIOCSIFFLAGS, SIOCADDRT),
//! which every kernel has and which need no netlink code in PID 1.

use std::ffi::c_void;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::cmdline::StaticIp;

/// struct ifreq: 16 bytes of name, then a union of at most 24 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    data: [u8; 24],
}

/// struct rtentry, as in <linux/route.h>; the field types give the right layout on both
/// 32- and 64-bit targets.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

fn sockaddr_v4(addr: Ipv4Addr) -> libc::sockaddr {
    // SAFETY: sockaddr is plain bytes; all-zero is a valid (AF_UNSPEC) value.
    let mut sa: libc::sockaddr = unsafe { std::mem::zeroed() };
    sa.sa_family = libc::AF_INET as libc::sa_family_t;
    // sockaddr_in: family, port (2 bytes, zero), then the address in network order.
    for (i, b) in addr.octets().iter().enumerate() {
        sa.sa_data[2 + i] = *b as libc::c_char;
    }
    sa
}

fn ifreq(name: &str) -> io::Result<IfReq> {
    if name.is_empty() || name.len() > 15 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    let mut req = IfReq {
        name: [0; 16],
        data: [0; 24],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    Ok(req)
}

fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the returned descriptor is owned by the OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ioctl<T>(sock: &OwnedFd, request: libc::c_ulong, arg: &mut T, what: &str) -> io::Result<()> {
    // SAFETY: `arg` points to a properly laid out, writable structure of the kind the request
    // expects (ifreq or rtentry), living for the duration of the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request as _, arg as *mut T as *mut c_void) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// Sets IFF_UP on `name`.
pub fn link_up(name: &str) -> io::Result<()> {
    let sock = inet_socket()?;
    let mut req = ifreq(name)?;
    ioctl(
        &sock,
        libc::SIOCGIFFLAGS as libc::c_ulong,
        &mut req,
        &format!("reading flags of {name}"),
    )?;
    let flags = i16::from_ne_bytes([req.data[0], req.data[1]]) | (libc::IFF_UP as i16);
    req.data[..2].copy_from_slice(&flags.to_ne_bytes());
    ioctl(
        &sock,
        libc::SIOCSIFFLAGS as libc::c_ulong,
        &mut req,
        &format!("bringing {name} up"),
    )
}

fn set_sockaddr(req: &mut IfReq, addr: Ipv4Addr) {
    let sa = sockaddr_v4(addr);
    // SAFETY: sockaddr is 16 plain bytes; data has room for 24.
    let bytes: [u8; 16] = unsafe { std::mem::transmute(sa) };
    req.data[..16].copy_from_slice(&bytes);
}

/// The first interface in /sys/class/net that is not loopback, by name order.
pub fn first_lan_interface() -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    names.into_iter().next()
}

/// Gives `device` its address and mask, brings it up and adds the default route.
pub fn configure_static(device: &str, ip: &StaticIp) -> io::Result<()> {
    let sock = inet_socket()?;
    let mut req = ifreq(device)?;
    set_sockaddr(&mut req, ip.address);
    ioctl(
        &sock,
        libc::SIOCSIFADDR as libc::c_ulong,
        &mut req,
        &format!("setting {} on {device}", ip.address),
    )?;
    let mask = Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(ip.prefix_len)).unwrap_or(0));
    let mut req = ifreq(device)?;
    set_sockaddr(&mut req, mask);
    ioctl(
        &sock,
        libc::SIOCSIFNETMASK as libc::c_ulong,
        &mut req,
        &format!("setting netmask {mask} on {device}"),
    )?;
    link_up(device)?;
    if let Some(gw) = ip.gateway {
        let mut dev = device.as_bytes().to_vec();
        dev.push(0);
        let mut route = RtEntry {
            rt_pad1: 0,
            rt_dst: sockaddr_v4(Ipv4Addr::UNSPECIFIED),
            rt_gateway: sockaddr_v4(gw),
            rt_genmask: sockaddr_v4(Ipv4Addr::UNSPECIFIED),
            rt_flags: (libc::RTF_UP | libc::RTF_GATEWAY) as libc::c_ushort,
            rt_pad2: 0,
            rt_pad3: 0,
            rt_pad4: std::ptr::null_mut(),
            rt_metric: 0,
            rt_dev: dev.as_mut_ptr() as *mut libc::c_char,
            rt_mtu: 0,
            rt_window: 0,
            rt_irtt: 0,
        };
        match ioctl(
            &sock,
            libc::SIOCADDRT as libc::c_ulong,
            &mut route,
            &format!("default route via {gw}"),
        ) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
    }
    Ok(())
}
