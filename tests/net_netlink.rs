//! netlink and netns operations, checked with iproute2 inside namespaces this test creates.
//! Nothing touches the machine's root network namespace.

use shoal::net::netlink::Netlink;
use shoal::net::netns::{self, Netns};
use shoal::wire::netlink::LinkChange;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

/// Namespaces made by one test, removed on drop even when the test fails.
struct Lab {
    files: Vec<PathBuf>,
}

impl Lab {
    fn new() -> Lab {
        Lab { files: Vec::new() }
    }
    /// A fresh netns at /run/netns/NAME so `ip -n NAME` sees it; made with shoal's own code.
    fn netns(&mut self, tag: &str) -> (String, Netns) {
        let name = format!("shoal-nl-{}-{tag}", std::process::id());
        let path = PathBuf::from("/run/netns").join(&name);
        netns::create(&path).expect("create netns");
        self.files.push(path.clone());
        (name, Netns::Path(path))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = netns::remove(f);
        }
    }
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ping(ns: &str, addr: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "busybox", "ping", "-c1", "-W2", addr])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Plug a "container" netns into `bridge` of the lab: veth, rename to eth0, address, route.
fn plug(lab: &mut Netlink, bridge: &str, host_if: &str, ctr: &Netns, addr: Ipv4Addr, gw: Ipv4Addr) {
    let peer = format!("{host_if}p");
    lab.create_veth(host_if, &peer).unwrap();
    let master = lab.index(bridge).unwrap();
    lab.set_link(
        host_if,
        &LinkChange {
            master: Some(master),
            up: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    lab.move_to_netns(&peer, ctr).unwrap();
    let mut c = Netlink::open(ctr).unwrap();
    c.set_link(
        &peer,
        &LinkChange {
            name: Some("eth0".into()),
            mtu: Some(1400),
            ..Default::default()
        },
    )
    .unwrap();
    c.set_link(
        "eth0",
        &LinkChange {
            mac: Some([0x02, 0x42, 172, 31, 0, addr.octets()[3]]),
            up: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    c.set_up("lo").unwrap();
    c.add_addr_v4("eth0", addr, 24).unwrap();
    c.add_default_route_v4(gw, "eth0").unwrap();
}

#[test]
fn bridges_veths_addresses_routes_and_isolation() {
    let mut lab = Lab::new();
    let (lab_name, lab_ns) = lab.netns("lab");
    let (c1_name, c1) = lab.netns("c1");
    let (c2_name, c2) = lab.netns("c2");
    let (c3_name, c3) = lab.netns("c3");

    let mut nl = Netlink::open(&lab_ns).unwrap();
    for (br, gw) in [
        ("br-a", Ipv4Addr::new(172, 31, 1, 1)),
        ("br-b", Ipv4Addr::new(172, 31, 2, 1)),
    ] {
        nl.create_bridge(br).unwrap();
        nl.add_addr_v4(br, gw, 24).unwrap();
        nl.set_up(br).unwrap();
    }
    let err = nl.create_bridge("br-a").unwrap_err().to_string();
    assert!(err.contains("br-a") && err.contains("exists"), "{err}");
    assert!(nl.link("nope0").unwrap().is_none());
    assert!(nl.delete_link("nope0").unwrap_err().to_string().contains("nope0"));

    plug(
        &mut nl,
        "br-a",
        "vh1",
        &c1,
        Ipv4Addr::new(172, 31, 1, 2),
        Ipv4Addr::new(172, 31, 1, 1),
    );
    plug(
        &mut nl,
        "br-a",
        "vh2",
        &c2,
        Ipv4Addr::new(172, 31, 1, 3),
        Ipv4Addr::new(172, 31, 1, 1),
    );
    plug(
        &mut nl,
        "br-b",
        "vh3",
        &c3,
        Ipv4Addr::new(172, 31, 2, 2),
        Ipv4Addr::new(172, 31, 2, 1),
    );

    let links = ip(&["-n", &lab_name, "-o", "link", "show", "master", "br-a"]);
    assert!(
        links.contains("vh1@") && links.contains("vh2@") && !links.contains("vh3@"),
        "{links}"
    );
    let bridge = ip(&["-n", &lab_name, "-d", "link", "show", "br-a"]);
    assert!(
        bridge.contains("bridge") && bridge.contains("state UP"),
        "{bridge}"
    );
    let eth0 = ip(&["-n", &c1_name, "-o", "link", "show", "eth0"]);
    assert!(
        eth0.contains("mtu 1400") && eth0.contains("02:42:ac:1f:00:02") && eth0.contains("UP"),
        "{eth0}"
    );
    let addr = ip(&["-n", &c1_name, "-o", "-4", "addr", "show", "eth0"]);
    assert!(
        addr.contains("172.31.1.2/24") && addr.contains("brd 172.31.1.255"),
        "{addr}"
    );
    let route = ip(&["-n", &c1_name, "route", "show", "default"]);
    assert!(route.contains("default via 172.31.1.1 dev eth0"), "{route}");

    assert!(ping(&c1_name, "172.31.1.3"), "c1 reaches c2 on the same bridge");
    assert!(ping(&c1_name, "172.31.1.1"), "c1 reaches its gateway");
    // The lab does not forward (a new netns starts with ip_forward=0): no path across bridges.
    assert!(
        !ping(&c3_name, "172.31.1.2"),
        "c3 on another bridge must not reach c1"
    );

    netns::enable_ipv4_forwarding(&lab_ns).unwrap();
    let fwd = Command::new("ip")
        .args(["netns", "exec", &lab_name, "cat", "/proc/sys/net/ipv4/ip_forward"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&fwd.stdout).trim(), "1");

    nl.delete_link("vh2").unwrap();
    assert!(nl.link("vh2").unwrap().is_none());
    let c2_links = Command::new("ip")
        .args(["-n", &c2_name, "-o", "link"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&c2_links.stdout).contains("eth0"),
        "deleting one veth end removes its peer"
    );
    nl.delete_link("br-b").unwrap();
    assert!(!ip(&["-n", &lab_name, "-o", "link"]).contains("br-b"));
}

#[test]
fn netns_file_create_and_remove() {
    let path = PathBuf::from(format!("/run/netns/shoal-nl-{}-solo", std::process::id()));
    netns::create(&path).unwrap();
    assert!(netns::create(&path).is_err(), "creating twice fails");
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    let links = ip(&["-n", &name, "-o", "link"]);
    assert!(links.contains("lo") && links.lines().count() == 1, "{links}");
    netns::remove(&path).unwrap();
    assert!(!path.exists());
    netns::remove(&path).unwrap();
}
