//! Host name lookup for registry connections, without glibc's NSS.
//!
//! A static binary must not call getaddrinfo: glibc would try to load NSS modules at run time
//! (absent or mismatched on a board). shoal resolves a registry host itself, as a stub
//! resolver does: an IP literal as is, then /etc/hosts, then an A query to each nameserver of
//! /etc/resolv.conf in turn (UDP, a timeout per server, the reply's id and question checked),
//! with the search domains for a name without a dot. Guarantees: only the servers the board
//! is configured with are asked; an answer with another id or question is ignored, never
//! trusted; no answer is an error naming the host.

use crate::wire::dns::{rcode, rtype, Header, Message, Name, Question, RData, CLASS_IN};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};

/// The lookup ureq calls for every connection.
#[derive(Debug, Default)]
pub struct BoardResolver;

/// Per-server wait for an answer.
const SERVER_TIMEOUT: Duration = Duration::from_secs(3);

impl Resolver for BoardResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().ok_or(ureq::Error::HostNotFound)?;
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("http") { 80 } else { 443 });
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let ips = lookup(host, &hosts, &resolv_servers(&resolv), &search_domains(&resolv)).map_err(|e| {
            log::warn!("resolving {host}: {e}");
            ureq::Error::HostNotFound
        })?;
        let mut out = self.empty();
        for ip in ips.into_iter().take(16) {
            out.push(SocketAddr::new(ip, port));
        }
        Ok(out)
    }
}

/// Nameservers of resolv.conf text, port 53.
pub fn resolv_servers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().split(['%', ' ', '\t']).next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The `search` (or `domain`) list of resolv.conf text; the last such line wins.
pub fn search_domains(text: &str) -> Vec<String> {
    text.lines()
        .rev()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("search ").or_else(|| l.strip_prefix("domain "))
        })
        .map(|rest| rest.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Addresses /etc/hosts text gives `host` (case-insensitive, comments ignored).
pub fn hosts_lookup(text: &str, host: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        if words.any(|w| w.eq_ignore_ascii_case(host)) && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// An A query for `name` with `id`.
pub fn a_query(name: &str, id: u16) -> Result<Vec<u8>, String> {
    let name = Name::from_dotted(name).map_err(|e| format!("{name}: {e}"))?;
    let m = Message {
        header: Header {
            id,
            recursion_desired: true,
            ..Default::default()
        },
        questions: vec![Question {
            name,
            qtype: rtype::A,
            qclass: CLASS_IN,
        }],
        ..Default::default()
    };
    m.emit(512).map_err(|e| e.to_string())
}

/// What a reply to [`a_query`] says: Some(addresses) when it answers that question (empty for
/// NXDOMAIN or no data), None when it is not a reply to it at all.
pub fn a_answers(reply: &[u8], query: &[u8]) -> Option<Result<Vec<IpAddr>, u8>> {
    let q = Message::parse_bytes(query).ok()?;
    let r = Message::parse_bytes(reply).ok()?;
    if !r.header.response || r.header.id != q.header.id || r.questions != q.questions {
        return None;
    }
    if r.header.rcode != rcode::NOERROR {
        return Some(Err(r.header.rcode));
    }
    Some(Ok(r
        .answers
        .iter()
        .filter_map(|a| match a.data {
            RData::A(ip) => Some(IpAddr::V4(ip)),
            _ => None,
        })
        .collect()))
}

fn ask(server: SocketAddr, name: &str) -> Result<Vec<IpAddr>, String> {
    // An unpredictable id (RFC 5452): the first line of defence against spoofed answers.
    let mut id = [0u8; 2];
    rustix::rand::getrandom(&mut id, rustix::rand::GetRandomFlags::empty()).map_err(|e| e.to_string())?;
    let id = u16::from_ne_bytes(id);
    let query = a_query(name, id)?;
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    sock.connect(server).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(SERVER_TIMEOUT))
        .map_err(|e| e.to_string())?;
    sock.send(&query).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    loop {
        let n = sock.recv(&mut buf).map_err(|e| format!("{server}: {e}"))?;
        match a_answers(&buf[..n], &query) {
            Some(Ok(ips)) => return Ok(ips),
            Some(Err(code)) => return Err(format!("{server}: answer code {code}")),
            None => continue,
        }
    }
}

/// Resolve `host`: an IP literal, then `hosts`, then each of `servers` for the name (and,
/// for a name without a dot, the name in each search domain first).
pub fn lookup(
    host: &str,
    hosts: &str,
    servers: &[SocketAddr],
    search: &[String],
) -> Result<Vec<IpAddr>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let from_hosts = hosts_lookup(hosts, host);
    if !from_hosts.is_empty() {
        return Ok(from_hosts);
    }
    if servers.is_empty() {
        return Err("no nameserver in /etc/resolv.conf".into());
    }
    let mut names: Vec<String> = Vec::new();
    if !host.contains('.') {
        names.extend(search.iter().map(|d| format!("{host}.{d}")));
    }
    names.push(host.to_string());
    let mut last = String::from("no answer");
    for name in &names {
        for server in servers {
            match ask(*server, name) {
                Ok(ips) if !ips.is_empty() => return Ok(ips),
                Ok(_) => {
                    last = format!("{server}: no address for {name}");
                    break;
                }
                Err(e) => last = e,
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_resolv_conf() {
        let hosts = "127.0.0.1 localhost\n10.0.0.9  Reg.Lan reg # the LAN registry\n# 10.0.0.8 reg\n";
        assert_eq!(
            hosts_lookup(hosts, "reg.lan"),
            vec!["10.0.0.9".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            hosts_lookup(hosts, "reg"),
            vec!["10.0.0.9".parse::<IpAddr>().unwrap()]
        );
        assert!(hosts_lookup(hosts, "other").is_empty());
        let resolv = "nameserver 192.168.1.1\nnameserver fe80::1%eth0\nsearch lan home\n";
        assert_eq!(resolv_servers(resolv).len(), 2);
        assert_eq!(search_domains(resolv), ["lan", "home"]);
    }

    #[test]
    fn literals_skip_every_lookup() {
        assert_eq!(
            lookup("10.1.2.3", "", &[], &[]).unwrap(),
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            lookup("[::1]", "", &[], &[]).unwrap(),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
        assert!(lookup("registry.example", "", &[], &[])
            .unwrap_err()
            .contains("no nameserver"));
    }

    #[test]
    fn replies_must_match_the_query() {
        let q = a_query("reg.example", 7).unwrap();
        let query = Message::parse_bytes(&q).unwrap();
        let mut r = Message::response_to(&query, rcode::NOERROR);
        r.answers.push(crate::wire::dns::Record {
            name: query.questions[0].name.clone(),
            class: CLASS_IN,
            ttl: 60,
            data: RData::A([10, 0, 0, 5].into()),
        });
        let good = r.emit(512).unwrap();
        assert_eq!(a_answers(&good, &q), Some(Ok(vec!["10.0.0.5".parse().unwrap()])));
        let mut other = r.clone();
        other.header.id = 8;
        assert_eq!(a_answers(&other.emit(512).unwrap(), &q), None);
        let nx = Message::response_to(&query, rcode::NXDOMAIN).emit(512).unwrap();
        assert_eq!(a_answers(&nx, &q), Some(Err(rcode::NXDOMAIN)));
        assert_eq!(a_answers(b"garbage", &q), None);
    }

    /// A resolver on loopback answering every A query with 10.0.0.5, after one decoy with a
    /// wrong id that must be ignored.
    #[test]
    fn asks_a_nameserver_and_ignores_decoys() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = server.recv_from(&mut buf) {
                let q = Message::parse_bytes(&buf[..n]).unwrap();
                let mut decoy = Message::response_to(&q, rcode::NOERROR);
                decoy.header.id = q.header.id.wrapping_add(1);
                let _ = server.send_to(&decoy.emit(512).unwrap(), peer);
                let mut r = Message::response_to(&q, rcode::NOERROR);
                r.answers.push(crate::wire::dns::Record {
                    name: q.questions[0].name.clone(),
                    class: CLASS_IN,
                    ttl: 60,
                    data: RData::A([10, 0, 0, 5].into()),
                });
                let _ = server.send_to(&r.emit(512).unwrap(), peer);
            }
        });
        let ips = lookup("registry.example", "", &[addr], &[]).unwrap();
        assert_eq!(ips, vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
    }
}
