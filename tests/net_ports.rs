//! Published ports through nftables, inside a lab network namespace made by this test: a
//! second namespace acts as a LAN host; the lab's own loopback acts as the board's localhost.
//! Nothing touches the machine's root network namespace.

use shoal::net::dns_server::Upstreams;
use shoal::net::netlink::Netlink;
use shoal::net::netns::{self, Netns};
use shoal::net::{Config, NetworkManager, PortMapping, Proto};
use shoal::wire::netlink::LinkChange;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

struct Lab {
    tag: String,
    files: Vec<PathBuf>,
    state_dir: PathBuf,
}

impl Lab {
    fn new(name: &str) -> Lab {
        let tag = format!("shoal-np-{}-{name}", std::process::id());
        let state_dir = std::env::temp_dir().join(&tag);
        let _ = std::fs::remove_dir_all(&state_dir);
        Lab {
            tag,
            files: Vec::new(),
            state_dir,
        }
    }
    fn netns(&mut self, name: &str) -> (String, Netns) {
        let full = format!("{}-{name}", self.tag);
        let path = PathBuf::from("/run/netns").join(&full);
        netns::create(&path).expect("create netns");
        self.files.push(path.clone());
        (full, Netns::Path(path))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for f in self.files.iter().rev() {
            let _ = netns::remove(f);
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

fn tcp_get(ns: &Netns, to: SocketAddr) -> std::io::Result<String> {
    netns::run_in(ns, || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
}

fn udp_ask(ns: &Netns, to: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    netns::run_in(ns, || {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.send_to(msg, to)?;
        let mut buf = [0u8; 512];
        let n = s.recv(&mut buf)?;
        Ok(buf[..n].to_vec())
    })
}

/// A TCP greeter on :80 and a UDP echo on :5353 inside the "container".
fn serve(ctr: &Netns) {
    let (tcp, udp) = netns::run_in(ctr, || {
        Ok((TcpListener::bind("0.0.0.0:80")?, UdpSocket::bind("0.0.0.0:5353")?))
    })
    .unwrap();
    std::thread::spawn(move || {
        for s in tcp.incoming().flatten() {
            let peer = s.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
            let mut s = s;
            let _ = s.write_all(format!("hello from c1 to {peer}").as_bytes());
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = udp.recv_from(&mut buf) {
            let mut reply = b"pong:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = udp.send_to(&reply, peer);
        }
    });
}

fn nft_list(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "ruleset"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn published_ports_from_lan_and_localhost() {
    let mut lab = Lab::new("nft");
    let (lab_name, lab_ns) = lab.netns("lab");
    let (_lan_name, lan_ns) = lab.netns("lanhost");
    let (_c1_name, c1_ns) = lab.netns("c1");
    let (_c2_name, c2_ns) = lab.netns("c2");

    // The LAN: lab "lan0" 192.168.77.1/24 ⇄ LAN host "eth0" 192.168.77.2/24.
    let mut nl = Netlink::open(&lab_ns).unwrap();
    nl.set_up("lo").unwrap();
    nl.create_veth("lan0", "lan0p").unwrap();
    nl.add_addr_v4("lan0", Ipv4Addr::new(192, 168, 77, 1), 24)
        .unwrap();
    nl.set_up("lan0").unwrap();
    nl.move_to_netns("lan0p", &lan_ns).unwrap();
    let mut lan = Netlink::open(&lan_ns).unwrap();
    lan.set_link(
        "lan0p",
        &LinkChange {
            name: Some("eth0".into()),
            up: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    lan.set_up("lo").unwrap();
    lan.add_addr_v4("eth0", Ipv4Addr::new(192, 168, 77, 2), 24)
        .unwrap();

    let config = || Config {
        host: lab_ns.clone(),
        dns_port: 53,
        upstreams: Some(Upstreams {
            servers: vec![],
            timeout: Duration::from_millis(100),
        }),
        firewall: true,
    };
    let mut nm = NetworkManager::open_with(&lab.state_dir, config()).unwrap();
    nm.ensure_default(None).unwrap();
    nm.restore().unwrap();
    // A subnet the board is already on is refused; without --subnet a free one is picked.
    let lan_clash = shoal::net::NetworkOptions {
        subnet: Some("192.168.0.0/16".into()),
        ..Default::default()
    };
    let e = nm.create("clash", lan_clash).unwrap_err().to_string();
    assert!(e.contains("192.168.77.0/24") && e.contains("lan0"), "{e}");
    let auto = nm.create("auto", Default::default()).unwrap();
    assert_eq!(auto.subnet.as_deref(), Some("172.31.0.0/16"));
    nm.remove("auto").unwrap();
    let c1_path = match &c1_ns {
        Netns::Path(p) => p.clone(),
        Netns::Current => unreachable!(),
    };
    let e1 = nm.attach("c1", "c1", &c1_path, "bridge", &[], None).unwrap();
    assert_eq!(e1.ip, Ipv4Addr::new(172, 30, 0, 2));
    serve(&c1_ns);

    let tcp = |host_port, end| PortMapping {
        host_ip: None,
        host_port,
        host_port_end: end,
        container_port: 80,
        proto: Proto::Tcp,
    };
    let udp = PortMapping {
        host_ip: None,
        host_port: 0,
        host_port_end: None,
        container_port: 5353,
        proto: Proto::Udp,
    };
    let got = nm
        .publish("c1", &[tcp(8080, None), udp.clone(), tcp(9000, Some(9001))])
        .unwrap();
    assert_eq!(got[0].host_port, 8080);
    assert!(got[1].host_port > 1024, "a free port was picked: {got:?}");
    assert_eq!(got[2].host_port, 9000);
    assert_eq!(nm.published("c1"), got);

    let lab_addr = |port| SocketAddr::from(([192, 168, 77, 1], port));
    let from_lan = tcp_get(&lan_ns, lab_addr(8080)).unwrap();
    assert_eq!(
        from_lan, "hello from c1 to 192.168.77.2",
        "LAN host reaches the container, source kept"
    );
    assert_eq!(
        udp_ask(&lan_ns, lab_addr(got[1].host_port), b"ping").unwrap(),
        b"pong:ping"
    );
    assert!(tcp_get(&lan_ns, lab_addr(9000))
        .unwrap()
        .starts_with("hello from c1"));
    let local = tcp_get(&lab_ns, SocketAddr::from(([127, 0, 0, 1], 8080))).unwrap();
    assert!(
        local.starts_with("hello from c1"),
        "board's localhost reaches it: {local}"
    );
    assert!(tcp_get(&lab_ns, lab_addr(8080))
        .unwrap()
        .starts_with("hello from c1"));

    // The host port is held: a second publish and a local program both fail.
    let c2_path = match &c2_ns {
        Netns::Path(p) => p.clone(),
        Netns::Current => unreachable!(),
    };
    nm.attach("c2", "c2", &c2_path, "bridge", &[], None).unwrap();
    let clash = nm.publish("c2", &[tcp(8080, None)]).unwrap_err().to_string();
    assert!(clash.contains("8080") && clash.contains("c2"), "{clash}");
    assert!(netns::run_in(&lab_ns, || TcpListener::bind("0.0.0.0:8080")).is_err());
    // The embedded DNS serves its network, not the LAN (even with a route to the gateway).
    let dns = |ns: &str| {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "dig",
                "+time=1",
                "+tries=1",
                "@172.30.0.1",
                "c1",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The default bridge only forwards (Docker's has no names); no upstream here: SERVFAIL.
    let answer = dns(&_c2_name);
    assert!(
        answer.contains("status: SERVFAIL"),
        "the DNS answers its own containers: {answer}"
    );
    let route = [
        "-n",
        &_lan_name,
        "route",
        "add",
        "172.30.0.0/16",
        "via",
        "192.168.77.1",
    ];
    assert!(Command::new("ip").args(route).status().unwrap().success());
    assert!(!dns(&_lan_name).contains("status:"), "no answer to the LAN");
    // Hairpin: c2, on c1's network, through the board's LAN address.
    let hairpin = tcp_get(&c2_ns, lab_addr(8080)).unwrap();
    assert_eq!(hairpin, "hello from c1 to 172.30.0.1");
    // A range skips the taken port.
    let ranged = nm.publish("c2", &[tcp(9000, Some(9003))]).unwrap();

    // Outbound: a container reaches a LAN host, masqueraded behind the board's LAN address;
    // a container on an --internal network does not get out at all.
    let lan_server = netns::run_in(&lan_ns, || TcpListener::bind("192.168.77.2:7000")).unwrap();
    std::thread::spawn(move || {
        for mut s in lan_server.incoming().flatten() {
            let peer = s.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
            let _ = s.write_all(format!("lan sees {peer}").as_bytes());
        }
    });
    let lan_addr = SocketAddr::from(([192, 168, 77, 2], 7000));
    assert_eq!(tcp_get(&c1_ns, lan_addr).unwrap(), "lan sees 192.168.77.1");
    let internal = shoal::net::NetworkOptions {
        subnet: Some("10.88.0.0/24".into()),
        internal: true,
        ..Default::default()
    };
    nm.create("sealed", internal).unwrap();
    let (_c3_name, c3_ns) = lab.netns("c3");
    let Netns::Path(c3_path) = c3_ns.clone() else {
        unreachable!()
    };
    nm.attach("c3", "c3", &c3_path, "sealed", &[], None).unwrap();
    // Give the LAN host a route back, so only the firewall can stop the connection.
    let route = Command::new("ip")
        .args([
            "-n",
            &_lan_name,
            "route",
            "add",
            "10.88.0.0/24",
            "via",
            "192.168.77.1",
        ])
        .status()
        .unwrap();
    assert!(route.success());
    assert!(
        tcp_get(&c3_ns, lan_addr).is_err(),
        "internal network has no way out"
    );
    nm.detach_all("c3").unwrap();
    nm.remove("sealed").unwrap();
    assert_eq!(ranged[0].host_port, 9001);

    // Restart keeps published ports.
    nm.shutdown();
    drop(nm);
    let mut nm = NetworkManager::open_with(&lab.state_dir, config()).unwrap();
    nm.restore().unwrap();
    assert_eq!(nm.published("c1"), got);
    assert!(tcp_get(&lan_ns, lab_addr(8080))
        .unwrap()
        .starts_with("hello from c1"));

    // Unpublish and detach leave no rule behind.
    nm.unpublish("c1").unwrap();
    assert!(tcp_get(&lan_ns, lab_addr(8080)).is_err());
    assert!(!nft_list(&lab_name).contains("dport 8080"));
    nm.detach_all("c2").unwrap();
    assert!(
        !nft_list(&lab_name).contains("dport 9001"),
        "detach withdraws the ports"
    );
    nm.destroy_all().unwrap();
    assert!(!nft_list(&lab_name).contains("table ip shoal"));
}

/// Without nftables (here: the firewall turned off) a userland proxy relays published ports.
#[test]
fn published_ports_through_userland_proxy() {
    let mut lab = Lab::new("px");
    let (_lab_name, lab_ns) = lab.netns("lab");
    let (_lan_name, lan_ns) = lab.netns("lanhost");
    let (_c1_name, c1_ns) = lab.netns("c1");
    let mut nl = Netlink::open(&lab_ns).unwrap();
    nl.set_up("lo").unwrap();
    nl.create_veth("lan0", "lan0p").unwrap();
    nl.add_addr_v4("lan0", Ipv4Addr::new(192, 168, 78, 1), 24)
        .unwrap();
    nl.set_up("lan0").unwrap();
    nl.move_to_netns("lan0p", &lan_ns).unwrap();
    let mut lan = Netlink::open(&lan_ns).unwrap();
    lan.set_link(
        "lan0p",
        &LinkChange {
            name: Some("eth0".into()),
            up: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    lan.add_addr_v4("eth0", Ipv4Addr::new(192, 168, 78, 2), 24)
        .unwrap();

    let config = Config {
        host: lab_ns.clone(),
        dns_port: 53,
        upstreams: Some(Upstreams {
            servers: vec![],
            timeout: Duration::from_millis(100),
        }),
        firewall: false,
    };
    let mut nm = NetworkManager::open_with(&lab.state_dir, config).unwrap();
    // --bip given as a bare network: the gateway is its first host.
    nm.ensure_default(Some("10.99.0.0/24")).unwrap();
    nm.restore().unwrap();
    let Netns::Path(c1_path) = c1_ns.clone() else {
        unreachable!()
    };
    nm.attach("c1", "c1", &c1_path, "bridge", &[], None).unwrap();
    serve(&c1_ns);
    let ports = [
        PortMapping {
            host_ip: None,
            host_port: 8080,
            host_port_end: None,
            container_port: 80,
            proto: Proto::Tcp,
        },
        PortMapping {
            host_ip: None,
            host_port: 0,
            host_port_end: None,
            container_port: 5353,
            proto: Proto::Udp,
        },
    ];
    let got = nm.publish("c1", &ports).unwrap();
    let lab_addr = |port| SocketAddr::from(([192, 168, 78, 1], port));
    assert_eq!(
        tcp_get(&lan_ns, lab_addr(8080)).unwrap(),
        "hello from c1 to 10.99.0.1",
        "relayed by the proxy"
    );
    assert_eq!(
        udp_ask(&lan_ns, lab_addr(got[1].host_port), b"x").unwrap(),
        b"pong:x"
    );
    assert_eq!(
        udp_ask(&lan_ns, lab_addr(got[1].host_port), b"y").unwrap(),
        b"pong:y",
        "same flow again"
    );
    assert!(tcp_get(&lab_ns, SocketAddr::from(([127, 0, 0, 1], 8080)))
        .unwrap()
        .starts_with("hello from c1"));
    assert!(nm
        .publish("c1", &ports[..1])
        .unwrap_err()
        .to_string()
        .contains("8080"));
    nm.unpublish("c1").unwrap();
    assert!(tcp_get(&lan_ns, lab_addr(8080)).is_err(), "listener closed");
    nm.destroy_all().unwrap();
}
