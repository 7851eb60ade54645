//! shoal init's DHCP client against a real server: Debian's dnsmasq serves DHCP in one
//! network namespace this test makes, the client runs on a thread inside a second one,
//! joined to the first by a veth pair. Nothing touches the machine's own namespace.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal::init::dhcp::{self, Settings};
use shoal::net::netns::{self, Netns};

const CLIENT_MAC: &str = "52:54:00:66:00:09";

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 is installed");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two namespaces, a veth between them, dnsmasq in the server one; all removed on drop.
struct Lab {
    server_ns: String,
    client_ns: String,
    dir: PathBuf,
    dnsmasq: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    /// `tag` keeps the namespaces of tests running in parallel apart.
    fn new(tag: &str, extra_server_args: &[&str]) -> Lab {
        let id = format!("{tag}{}", std::process::id());
        let dir = std::env::temp_dir().join(format!("shoal-dhcp-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab {
            server_ns: format!("shoal-dhcps-{id}"),
            client_ns: format!("shoal-dhcpc-{id}"),
            dir,
            dnsmasq: None,
            log: Arc::default(),
        };
        let (s, c) = (lab.server_ns.clone(), lab.client_ns.clone());
        ip(&["netns", "add", &s]);
        ip(&["netns", "add", &c]);
        ip(&["-n", &s, "link", "set", "lo", "up"]);
        ip(&["-n", &c, "link", "set", "lo", "up"]);
        ip(&[
            "-n", &s, "link", "add", "dh0", "type", "veth", "peer", "name", "eth0", "netns", &c,
        ]);
        ip(&["-n", &c, "link", "set", "eth0", "address", CLIENT_MAC]);
        ip(&["-n", &s, "addr", "add", "10.66.0.1/24", "dev", "dh0"]);
        ip(&["-n", &s, "link", "set", "dh0", "up"]);
        // A second link in the client namespace whose other end nobody serves.
        ip(&[
            "-n", &c, "link", "add", "quiet0", "type", "veth", "peer", "name", "quiet1",
        ]);
        ip(&["-n", &c, "link", "set", "quiet1", "up"]);
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &s,
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
            ])
            .args(["--port=0", "--interface=dh0", "--bind-interfaces", "--pid-file="])
            .args(["--user=root", "--group=root", "--log-dhcp", "--log-facility=-"])
            .arg(format!("--dhcp-leasefile={}", lab.dir.join("leases").display()))
            .args([
                "--dhcp-range=10.66.0.50,10.66.0.59,255.255.255.0,10m",
                "--dhcp-option=option:router,10.66.0.1",
                "--dhcp-option=option:dns-server,10.66.0.53,10.66.0.54",
                "--dhcp-option=option:domain-name,lab.test",
                "--dhcp-authoritative",
            ])
            .arg(format!("--dhcp-host={CLIENT_MAC},10.66.0.57,board9"))
            .args(extra_server_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dnsmasq is installed (package dnsmasq-base)");
        let stderr = child.stderr.take().unwrap();
        let log = lab.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        lab.dnsmasq = Some(child);
        lab
    }

    fn client<T: Send>(&self, f: impl FnOnce() -> std::io::Result<T> + Send) -> std::io::Result<T> {
        netns::run_in(&Netns::path(format!("/run/netns/{}", self.client_ns)), f)
    }

    fn server_log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The server's log once `done` holds for it (dnsmasq writes its log after the reply it
    /// describes, so a line may lag the client's view), or after 5 s.
    fn server_log_when(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.server_log();
            if done(&log) || Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn settings(device: &str) -> Settings {
    let mut s = Settings::new(device);
    s.timeout = Duration::from_secs(15);
    s.first_wait = Duration::from_millis(500);
    s
}

#[test]
fn dnsmasq_leases_an_address_route_and_dns_and_renews_it() {
    let lab = Lab::new("a", &[]);
    let resolv = lab.dir.join("resolv.conf");
    let s = settings("eth0");

    // INIT-REBOOT with an address from another network: the authoritative server says no.
    let nak = lab
        .client(|| dhcp::confirm(&s, Ipv4Addr::new(10, 99, 0, 7)))
        .expect_err("a foreign address was confirmed");
    assert_eq!(nak.kind(), std::io::ErrorKind::PermissionDenied, "{nak}");
    assert!(
        nak.to_string().contains("DHCPNAK from 10.66.0.1 on eth0"),
        "{nak}"
    );

    let started = Instant::now();
    let lease = lab
        .client(|| {
            let lease = dhcp::acquire(&s)?;
            dhcp::apply(&s, &lease, &resolv)?;
            Ok(lease)
        })
        .unwrap_or_else(|e| panic!("{e}\n---- dnsmasq ----\n{}", lab.server_log()));
    eprintln!("lease in {} ms: {lease:?}", started.elapsed().as_millis());
    assert_eq!(lease.address, Ipv4Addr::new(10, 66, 0, 57));
    assert_eq!(lease.prefix_len, 24);
    assert_eq!(lease.router, Some(Ipv4Addr::new(10, 66, 0, 1)));
    assert_eq!(lease.server, Ipv4Addr::new(10, 66, 0, 1));
    assert_eq!(
        lease.dns_servers,
        vec![Ipv4Addr::new(10, 66, 0, 53), Ipv4Addr::new(10, 66, 0, 54)]
    );
    assert_eq!(lease.lease_secs, Some(600));
    assert_eq!((lease.renew_secs, lease.rebind_secs), (Some(300), Some(525)));
    assert_eq!(lease.hostname.as_deref(), Some("board9"));

    let addrs = ip(&["-n", &lab.client_ns, "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains("inet 10.66.0.57/24"), "{addrs}");
    let routes = ip(&["-n", &lab.client_ns, "-4", "route", "show", "default"]);
    assert!(routes.contains("default via 10.66.0.1 dev eth0"), "{routes}");
    assert_eq!(
        std::fs::read_to_string(&resolv).unwrap(),
        "# written by shoal init from DHCP\nsearch lab.test\nnameserver 10.66.0.53\nnameserver 10.66.0.54\n"
    );
    // The configured link really works: the server answers a ping from the client side.
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.client_ns,
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "5",
            "10.66.0.1",
        ])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );
    let leases = std::fs::read_to_string(lab.dir.join("leases")).unwrap();
    assert!(leases.contains(&format!("{CLIENT_MAC} 10.66.0.57")), "{leases}");

    // Applying again (a renewal that changed nothing) is not an error.
    lab.client(|| dhcp::apply(&s, &lease, &resolv)).unwrap();

    // RENEWING (unicast to the server) and REBINDING (broadcast) both extend the lease.
    let deadline = Instant::now() + Duration::from_secs(15);
    for rebinding in [false, true] {
        let renewed = lab
            .client(|| dhcp::renew(&s, &lease, rebinding, deadline))
            .unwrap_or_else(|e| panic!("renew (rebinding {rebinding}): {e}\n{}", lab.server_log()));
        assert_eq!(renewed.address, lease.address);
        assert_eq!(renewed.lease_secs, Some(600));
    }
    let acks_in = |log: &str| log.matches("DHCPACK(dh0) 10.66.0.57").count();
    let log = lab.server_log_when(|l| acks_in(l) >= 3);
    let acks = acks_in(&log);
    assert_eq!(acks, 3, "expected one ACK for the lease and two renewals\n{log}");
    assert!(log.contains("DHCPNAK(dh0) 10.99.0.7"), "{log}");
}

#[test]
fn no_server_means_a_timeout_naming_the_device() {
    let lab = Lab::new("t", &[]);
    let mut s = settings("quiet0");
    s.timeout = Duration::from_secs(3);
    let started = Instant::now();
    let e = lab
        .client(|| dhcp::acquire(&s))
        .expect_err("a lease from nowhere");
    let took = started.elapsed();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    assert!(
        e.to_string().contains("no DHCP lease on quiet0 within 3 s"),
        "{e}"
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    let missing = lab
        .client(|| dhcp::acquire(&settings("nosuch0")))
        .expect_err("no such link");
    assert!(missing.to_string().contains("nosuch0"), "{missing}");
}

/// The background renewal loop of a booted board: with T1 ≈ 2 s and T2 = 4 s from the server
/// it renews by itself, and the server sees the renewals.
#[test]
fn the_renewal_loop_renews_at_t1() {
    let lab = Lab::new("r", &["--dhcp-option=option:T1,2", "--dhcp-option=option:T2,4"]);
    let s = settings("eth0");
    let resolv = lab.dir.join("resolv.conf");
    let obtained = Instant::now();
    let lease = lab
        .client(|| {
            let lease = dhcp::acquire(&s)?;
            dhcp::apply(&s, &lease, &resolv)?;
            Ok(lease)
        })
        .unwrap();
    // dnsmasq rounds the T1 it is given (2 s here comes out as 2 or 3 s).
    let t1 = lease.renew_secs.expect("a finite lease has a T1");
    assert!((2..=3).contains(&t1), "T1 {t1}");
    assert_eq!(lease.rebind_secs, Some(4));
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let ns = Netns::path(format!("/run/netns/{}", lab.client_ns));
    let s2 = s.clone();
    // The loop runs for good, as on a board; the thread ends with the test process.
    std::thread::spawn(move || {
        netns::run_in(&ns, move || {
            dhcp::keep_renewed(s2, lease, obtained, resolv, move |m| {
                let _ = tx.send(m);
            });
            Ok(())
        })
    });
    let mut events = Vec::new();
    while events.len() < 2 {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(m) => events.push(m),
            Err(e) => panic!("{e} after {events:?}\n{}", lab.server_log()),
        }
    }
    let took = obtained.elapsed();
    for e in &events {
        assert_eq!(e, "eth0: lease of 10.66.0.57 renewed for 600 s", "{events:?}");
    }
    // Two renewals, each T1 after the previous one.
    let t1 = Duration::from_secs(u64::from(t1));
    assert!(
        took >= t1 * 2 && took < t1 * 2 + Duration::from_secs(3),
        "took {took:?}"
    );
    let log = lab.server_log_when(|l| l.matches("DHCPACK(dh0) 10.66.0.57").count() >= 3);
    assert!(log.matches("DHCPACK(dh0) 10.66.0.57").count() >= 3, "{log}");
}

/// A new lease with another address replaces the old address (and the default route), and
/// at shutdown the held lease is given back with a DHCPRELEASE the server acts on.
#[test]
fn a_changed_lease_replaces_the_address_and_release_frees_it() {
    let lab = Lab::new("m", &[]);
    let s = settings("eth0");
    let resolv = lab.dir.join("resolv.conf");
    // The board held 10.66.0.99 from an earlier lease, through a router that is gone.
    ip(&["-n", &lab.client_ns, "link", "set", "eth0", "up"]);
    ip(&[
        "-n",
        &lab.client_ns,
        "addr",
        "add",
        "10.66.0.99/24",
        "dev",
        "eth0",
    ]);
    ip(&[
        "-n",
        &lab.client_ns,
        "route",
        "add",
        "default",
        "via",
        "10.66.0.254",
    ]);
    let lease = lab.client(|| dhcp::acquire(&s)).unwrap();
    assert_eq!(lease.address, Ipv4Addr::new(10, 66, 0, 57));
    let mut old = lease.clone();
    old.address = Ipv4Addr::new(10, 66, 0, 99);
    old.router = Some(Ipv4Addr::new(10, 66, 0, 254));
    lab.client(|| dhcp::switch(&s, &old, &lease, &resolv)).unwrap();
    let addrs = ip(&["-n", &lab.client_ns, "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains("10.66.0.57/24"), "{addrs}");
    assert!(!addrs.contains("10.66.0.99"), "the old address stayed\n{addrs}");
    let routes = ip(&["-n", &lab.client_ns, "-4", "route", "show", "default"]);
    assert_eq!(routes.trim(), "default via 10.66.0.1 dev eth0", "{routes}");
    // Switching to the same lease again changes nothing and is not an error.
    lab.client(|| dhcp::switch(&s, &lease, &lease, &resolv)).unwrap();

    let leases = || std::fs::read_to_string(lab.dir.join("leases")).unwrap_or_default();
    assert!(leases().contains("10.66.0.57"), "{}", leases());
    dhcp::hold(&s, &lease);
    let released = lab.client(dhcp::release_held).unwrap();
    assert_eq!(released, Some(lease.address));
    let deadline = Instant::now() + Duration::from_secs(5);
    while leases().contains("10.66.0.57") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = lab.server_log_when(|l| l.contains("DHCPRELEASE(dh0) 10.66.0.57"));
    assert!(log.contains("DHCPRELEASE(dh0) 10.66.0.57"), "{log}");
    assert!(
        !leases().contains("10.66.0.57"),
        "lease kept after release: {}",
        leases()
    );
    // Nothing held any more: a second release sends nothing.
    assert_eq!(lab.client(dhcp::release_held).unwrap(), None);
}
