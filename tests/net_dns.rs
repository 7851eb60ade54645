//! The embedded DNS server alone, inside a lab namespace made by this test, checked with dig:
//! truncation over UDP and the TCP retry, EDNS0 sizes, SERVFAIL without upstreams, FORMERR.

use shoal::net::dns_server::{DnsEntry, DnsServer, DnsTable, Upstreams};
use shoal::net::netlink::Netlink;
use shoal::net::netns::{self, Netns};
use shoal::wire::dns::{rcode, Message};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, RwLock};
use std::time::Duration;

struct NsFile(PathBuf);

impl Drop for NsFile {
    fn drop(&mut self) {
        let _ = netns::remove(&self.0);
    }
}

fn dig(ns: &str, port: u16, args: &[&str]) -> String {
    let port = port.to_string();
    let mut all = vec![
        "netns",
        "exec",
        ns,
        "dig",
        "+time=2",
        "+tries=1",
        "-p",
        &port,
        "@127.0.0.1",
    ];
    all.extend_from_slice(args);
    let out = Command::new("ip").args(&all).output().expect("dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn answer_count(out: &str) -> usize {
    out.lines()
        .find_map(|l| l.split("ANSWER: ").nth(1))
        .and_then(|r| r.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn truncation_tcp_retry_edns_and_errors() {
    let name = format!("shoal-dns-{}", std::process::id());
    let path = PathBuf::from("/run/netns").join(&name);
    netns::create(&path).unwrap();
    let _guard = NsFile(path.clone());
    let lab = Netns::Path(path);
    Netlink::open(&lab).unwrap().set_up("lo").unwrap();

    let table = Arc::new(RwLock::new(DnsTable::default()));
    for i in 0..60u8 {
        table.write().unwrap().add(DnsEntry {
            network: "n1".into(),
            container_id: format!("replica{i}"),
            names: vec![format!("replica{i}"), "many".into()],
            ip: Ipv4Addr::new(10, 60, 0, 10 + i),
        });
    }
    let server = DnsServer::start(
        &lab,
        table,
        Upstreams {
            servers: vec![],
            timeout: Duration::from_millis(200),
        },
    )
    .unwrap();
    let addr = server.listen("n1", "127.0.0.1:0".parse().unwrap()).unwrap();
    let port = addr.port();

    // RFC 1035 §4.2.1: over 512 bytes on UDP → TC set, answers cut at a record boundary.
    let cut = dig(&name, port, &["+ignore", "+noedns", "many"]);
    assert!(
        cut.contains(" tc ") || cut.contains(" tc;") || cut.contains("flags: qr tc"),
        "{cut}"
    );
    let n = answer_count(&cut);
    assert!(n > 0 && n < 60, "{n} answers in a truncated reply:\n{cut}");
    // dig retries over TCP on TC and then gets all of them.
    let full = dig(&name, port, &["+noedns", "many"]);
    assert_eq!(answer_count(&full), 60, "{full}");
    // RFC 6891 §6.2.5: with a 4096-byte EDNS0 buffer all fit over UDP.
    let edns = dig(&name, port, &["+ignore", "+bufsize=4096", "many"]);
    assert_eq!(answer_count(&edns), 60, "{edns}");
    assert!(!edns.contains("flags: qr tc"), "{edns}");
    assert!(
        edns.contains("OPT PSEUDOSECTION"),
        "EDNS0 answered with OPT: {edns}"
    );

    // No upstream: forwarded names fail with SERVFAIL, not silence.
    assert!(dig(&name, port, &["example.test"]).contains("status: SERVFAIL"));

    // Garbage with an id gets FORMERR; a reply-flagged packet is ignored.
    let sock = netns::run_in(&lab, || UdpSocket::bind("127.0.0.1:0")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let to: SocketAddr = addr;
    sock.send_to(&[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0], to)
        .unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).unwrap();
    let reply = Message::parse_bytes(&buf[..n]).unwrap();
    assert_eq!((reply.header.id, reply.header.rcode), (0x1234, rcode::FORMERR));

    // Stopping frees the port.
    drop(server);
    netns::run_in(&lab, || UdpSocket::bind(to)).expect("port free after the server stops");
}
