//! NetworkManager end to end inside a lab network namespace made by this test: bridges,
//! "containers" (bare netns files), isolation, the embedded DNS checked with `dig`, forwarding
//! to a fake upstream inside the lab with failover, restart, and cleanup.
//! Nothing touches the machine's root network namespace; no packet leaves the lab.

#[path = "lab/fake_dns.rs"]
mod fake_dns;

use shoal::net::dns_server::Upstreams;
use shoal::net::netlink::Netlink;
use shoal::net::netns::{self, Netns};
use shoal::net::{Config, NetworkManager, NetworkOptions};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

struct Lab {
    tag: String,
    files: Vec<PathBuf>,
    state_dir: PathBuf,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let tag = format!("shoal-nm-{}-{tag}", std::process::id());
        let state_dir = std::env::temp_dir().join(&tag);
        let _ = std::fs::remove_dir_all(&state_dir);
        Lab {
            tag,
            files: Vec::new(),
            state_dir,
        }
    }
    fn netns(&mut self, name: &str) -> (String, PathBuf) {
        let full = format!("{}-{name}", self.tag);
        let path = PathBuf::from("/run/netns").join(&full);
        netns::create(&path).expect("create netns");
        self.files.push(path.clone());
        (full, path)
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

fn sh(ns: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("ip netns exec");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn ping(ns: &str, addr: &str) -> bool {
    sh(ns, &["busybox", "ping", "-c1", "-W2", addr]).0
}

fn dig(ns: &str, server: &str, args: &[&str]) -> String {
    let mut all = vec!["dig", "+time=3", "+tries=1", "-p", "53"];
    let at = format!("@{server}");
    all.push(&at);
    all.extend_from_slice(args);
    sh(ns, &all).1
}

fn dig_short(ns: &str, server: &str, args: &[&str]) -> Vec<String> {
    let mut a = vec!["+short"];
    a.extend_from_slice(args);
    let mut v: Vec<String> = dig(ns, server, &a)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

/// An upstream that reads queries and never answers (forces the timeout path).
fn silent_upstream(lab: &Netns) -> SocketAddr {
    let sock = netns::run_in(lab, || UdpSocket::bind("127.0.0.1:0")).unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while sock.recv_from(&mut buf).is_ok() {}
    });
    addr
}

fn open(lab: &Lab, lab_ns: &Netns, upstreams: Vec<SocketAddr>) -> NetworkManager {
    let config = Config {
        host: lab_ns.clone(),
        dns_port: 53,
        upstreams: Some(Upstreams {
            servers: upstreams,
            timeout: Duration::from_millis(400),
        }),
        firewall: true,
    };
    NetworkManager::open_with(&lab.state_dir, config).unwrap()
}

fn links(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn networks_dns_isolation_restart_cleanup() {
    let mut lab = Lab::new("main");
    let (lab_name, lab_path) = lab.netns("lab");
    let lab_ns = Netns::Path(lab_path.clone());
    Netlink::open(&lab_ns).unwrap().set_up("lo").unwrap();
    let good = fake_dns::upstream(&lab_ns, "127.0.0.1:0", Ipv4Addr::new(192, 0, 2, 77));
    let silent = silent_upstream(&lab_ns);
    // Nothing listens here: the kernel refuses at once.
    let refused: SocketAddr = "127.0.0.1:9".parse().unwrap();

    let mut nm = open(&lab, &lab_ns, vec![silent, refused, good]);
    nm.ensure_default(None).unwrap();
    nm.restore().unwrap();
    let front = nm
        .create(
            "front",
            NetworkOptions {
                subnet: Some("10.77.1.0/24".into()),
                ..Default::default()
            },
        )
        .unwrap();
    nm.create(
        "back",
        NetworkOptions {
            subnet: Some("10.77.2.0/24".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let dup = nm
        .create("front", NetworkOptions::default())
        .unwrap_err()
        .to_string();
    assert!(dup.contains("front"), "{dup}");
    let overlap = nm
        .create(
            "clash",
            NetworkOptions {
                subnet: Some("10.77.0.0/16".into()),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(
        overlap.contains("10.77.0.0/16") && overlap.contains("front"),
        "{overlap}"
    );
    assert_eq!(front.gateway, Some(Ipv4Addr::new(10, 77, 1, 1)));
    let lab_links = links(&lab_name);
    assert!(
        lab_links.contains("shoal0") && lab_links.contains(front.bridge.as_deref().unwrap()),
        "{lab_links}"
    );

    let (c1, c1p) = lab.netns("c1");
    let (_c2, c2p) = lab.netns("c2");
    let (c3, c3p) = lab.netns("c3");
    let web = vec!["web".to_string()];
    let e1 = nm
        .attach("c1c1c1c1c1c1aaaa", "one", &c1p, "front", &web, None)
        .unwrap();
    let e2 = nm
        .attach(
            "c2c2c2c2c2c2bbbb",
            "two",
            &c2p,
            "front",
            &web,
            Some(Ipv4Addr::new(10, 77, 1, 50)),
        )
        .unwrap();
    let e3 = nm
        .attach("c3c3c3c3c3c3cccc", "three", &c3p, "back", &[], None)
        .unwrap();
    assert_eq!(
        (e1.ip, e1.ifname.as_str(), e1.gateway),
        (Ipv4Addr::new(10, 77, 1, 2), "eth0", Ipv4Addr::new(10, 77, 1, 1))
    );
    assert_eq!(e2.ip, Ipv4Addr::new(10, 77, 1, 50));
    assert_eq!(e1.mac, "02:42:0a:4d:01:02");
    let taken = nm
        .attach(
            "c4",
            "four",
            &c3p,
            "front",
            &[],
            Some(Ipv4Addr::new(10, 77, 1, 50)),
        )
        .unwrap_err()
        .to_string();
    assert!(
        taken.contains("10.77.1.50") && taken.contains("front") && taken.contains("in use"),
        "{taken}"
    );
    assert!(!links(&lab_name).contains("vsc4"), "failed attach leaves no veth");

    let addr = sh(&c1, &["ip", "-4", "-o", "addr", "show", "eth0"]).1;
    assert!(addr.contains("10.77.1.2/24"), "{addr}");
    assert!(sh(&c1, &["ip", "route"])
        .1
        .contains("default via 10.77.1.1 dev eth0"));

    assert!(ping(&c1, &e2.ip.to_string()), "same network: reachable");
    assert!(ping(&c3, &e3.gateway.to_string()), "own gateway reachable");
    // Forwarding is on in the lab (non-internal networks), so only the rules keep them apart.
    let fwd = sh(&lab_name, &["cat", "/proc/sys/net/ipv4/ip_forward"]).1;
    assert_eq!(fwd.trim(), "1");
    assert!(!ping(&c3, &e1.ip.to_string()), "other network: isolated");

    // DNS: names, aliases, name.network, short id, AAAA, PTR, TCP, NXDOMAIN, forwarding.
    let gw = nm.dns_server_for("front").unwrap().to_string();
    assert_eq!(gw, "10.77.1.1");
    assert_eq!(dig_short(&c1, &gw, &["two"]), vec!["10.77.1.50"]);
    assert_eq!(dig_short(&c1, &gw, &["web"]), vec!["10.77.1.2", "10.77.1.50"]);
    assert_eq!(dig_short(&c1, &gw, &["two.front"]), vec!["10.77.1.50"]);
    assert_eq!(dig_short(&c1, &gw, &["c2c2c2c2c2c2"]), vec!["10.77.1.50"]);
    let orders: std::collections::HashSet<String> =
        (0..20).map(|_| dig(&c1, &gw, &["+short", "web"])).collect();
    assert!(orders.len() > 1, "A records are shuffled: {orders:?}");
    let aaaa = dig(&c1, &gw, &["AAAA", "two"]);
    assert!(
        aaaa.contains("status: NOERROR") && aaaa.contains("ANSWER: 0"),
        "{aaaa}"
    );
    assert_eq!(dig_short(&c1, &gw, &["-x", "10.77.1.50"]), vec!["two.front."]);
    assert_eq!(dig_short(&c1, &gw, &["+tcp", "two"]), vec!["10.77.1.50"]);
    let nx = dig(&c1, &gw, &["nosuchcontainer"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    assert!(
        dig(&c1, &gw, &["three"]).contains("NXDOMAIN"),
        "names of other networks are not visible"
    );
    let t0 = std::time::Instant::now();
    assert_eq!(
        dig_short(&c1, &gw, &["example.test"]),
        vec!["192.0.2.77"],
        "forwarded past a silent and a refusing upstream"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "the silent upstream was tried first"
    );
    assert_eq!(
        dig_short(&c1, &gw, &["+tcp", "example.test"]),
        vec!["192.0.2.77"],
        "forwarded over TCP"
    );

    // connect: c3 joins front and then reaches and resolves c1.
    let e3b = nm
        .attach("c3c3c3c3c3c3cccc", "three", &c3p, "front", &[], None)
        .unwrap();
    assert_eq!(e3b.ifname, "eth1");
    assert!(ping(&c3, &e1.ip.to_string()), "connected: reachable");
    assert_eq!(dig_short(&c3, &gw, &["one"]), vec!["10.77.1.2"]);
    nm.detach("c3c3c3c3c3c3cccc", "front").unwrap();
    assert!(!sh(&c3, &["ip", "-o", "link"]).1.contains("eth1"));
    assert!(nm
        .detach("c3c3c3c3c3c3cccc", "front")
        .unwrap_err()
        .to_string()
        .contains("front"));

    // Inspect shape.
    let inspect = nm.inspect("front").unwrap();
    assert_eq!(inspect["IPAM"]["Config"][0]["Subnet"], "10.77.1.0/24");
    assert_eq!(
        inspect["Containers"]["c1c1c1c1c1c1aaaa"]["IPv4Address"],
        "10.77.1.2/24"
    );
    assert_eq!(
        nm.list().iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["host", "none", "bridge", "front", "back"]
    );

    // Restart: the state file keeps networks and addresses; DNS comes back.
    nm.shutdown();
    drop(nm);
    // Meanwhile the front bridge vanished (someone deleted it): restore brings it back.
    Netlink::open(&lab_ns)
        .unwrap()
        .delete_link(front.bridge.as_deref().unwrap())
        .unwrap();
    assert!(!ping(&c1, &e2.ip.to_string()));
    let mut nm = open(&lab, &lab_ns, vec![good]);
    nm.restore().unwrap();
    assert!(
        ping(&c1, &e2.ip.to_string()),
        "bridge recreated with the containers back on it"
    );
    assert_eq!(dig_short(&c1, &gw, &["two"]), vec!["10.77.1.50"]);
    let (_c5, c5p) = lab.netns("c5");
    let e5 = nm.attach("c5", "five", &c5p, "front", &[], None).unwrap();
    assert!(
        ![e1.ip, e2.ip].contains(&e5.ip),
        "restart never hands out an address twice"
    );

    // rm refuses while containers are attached; after detaching everything goes.
    let busy = nm.remove("front").unwrap_err().to_string();
    assert!(
        busy.contains("front") && busy.contains("active endpoints"),
        "{busy}"
    );
    for id in ["c1c1c1c1c1c1aaaa", "c2c2c2c2c2c2bbbb", "c5"] {
        nm.detach_all(id).unwrap();
    }
    nm.remove("front").unwrap();
    assert!(!links(&lab_name).contains(front.bridge.as_deref().unwrap()));
    assert!(!links(&lab_name).contains("vsc1"), "no leftover veth");
    assert_eq!(nm.prune().unwrap(), Vec::<String>::new(), "back still has c3");
    nm.detach_all("c3c3c3c3c3c3cccc").unwrap();
    assert_eq!(nm.prune().unwrap(), vec!["back".to_string()]);
    assert!(nm.remove("bridge").is_err());
    nm.destroy_all().unwrap();
    assert!(!links(&lab_name).contains("shoal0"));
    assert!(Path::new(&lab.state_dir).join("networks.json").exists());
}
