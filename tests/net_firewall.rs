//! shoal's nf_tables rules, sent over nfnetlink, read back by the real `nft` inside a network
//! namespace this test makes (never the machine's own).

use shoal::net::firewall::{self, BridgeRules, Dnat, Proto};
use shoal::net::ipam::Subnet;
use shoal::net::netns::{self, Netns};
use shoal::wire::nftables::Expr;
use std::path::PathBuf;
use std::process::Command;

struct Ns(PathBuf);

impl Ns {
    fn new(tag: &str) -> Ns {
        let path = PathBuf::from("/run/netns").join(format!("shoal-fw-{}-{tag}", std::process::id()));
        netns::create(&path).expect("create netns");
        Ns(path)
    }
    fn handle(&self) -> Netns {
        Netns::Path(self.0.clone())
    }
    fn nft_list(&self) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.0.display()))
            .args(["nft", "list", "ruleset"])
            .output()
            .expect("nft");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = netns::remove(&self.0);
    }
}

fn bridge(name: &str, subnet: &str, internal: bool) -> BridgeRules {
    let subnet = Subnet::parse(subnet, "subnet").unwrap();
    BridgeRules {
        bridge: name.into(),
        subnet,
        gateway: subnet.first_host(),
        internal,
    }
}

/// The rule lines of a listing, without indentation, chain headers or braces.
fn rules(listing: &str) -> Vec<String> {
    listing
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("table")
                && !l.starts_with("chain")
                && !l.starts_with("type")
                && *l != "}"
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn ruleset_reads_back_as_nft_would_write_it() {
    let ns = Ns::new("list");
    let bridges = [
        bridge("shoal0", "172.30.0.0/16", false),
        bridge("br-x", "10.9.0.0/24", true),
    ];
    let ports = [
        Dnat {
            host_ip: None,
            host_port: 8080,
            proto: Proto::Tcp,
            target_ip: [172, 30, 0, 2].into(),
            target_port: 80,
        },
        Dnat {
            host_ip: Some([192, 168, 1, 5].into()),
            host_port: 53,
            proto: Proto::Udp,
            target_ip: [172, 30, 0, 3].into(),
            target_port: 5353,
        },
    ];
    firewall::apply(&ns.handle(), &firewall::ruleset(&bridges, &ports)).unwrap();
    let listing = ns.nft_list();
    let got = rules(&listing);
    let want = [
        "ip daddr 172.30.0.1 udp dport 53 iifname != \"shoal0\" iifname != \"lo\" drop",
        "ip daddr 172.30.0.1 tcp dport 53 iifname != \"shoal0\" iifname != \"lo\" drop",
        "ip daddr 10.9.0.1 udp dport 53 iifname != \"br-x\" iifname != \"lo\" drop",
        "ip daddr 10.9.0.1 tcp dport 53 iifname != \"br-x\" iifname != \"lo\" drop",
        "iifname \"shoal0\" oifname \"br-x\" drop",
        "iifname \"br-x\" oifname != \"br-x\" drop",
        "oifname \"br-x\" iifname != \"br-x\" drop",
        "fib daddr type local tcp dport 8080 dnat to 172.30.0.2:80",
        "ip daddr 192.168.1.5 udp dport 53 dnat to 172.30.0.3:5353",
        "fib daddr type local tcp dport 8080 dnat to 172.30.0.2:80",
        "ip daddr 192.168.1.5 udp dport 53 dnat to 172.30.0.3:5353",
        "ip saddr 127.0.0.0/8 oifname \"shoal0\" masquerade",
        "oifname \"shoal0\" ip saddr 172.30.0.0/16 ct status dnat masquerade",
        "ip saddr 127.0.0.0/8 oifname \"br-x\" masquerade",
        "oifname \"br-x\" ip saddr 10.9.0.0/24 ct status dnat masquerade",
        "ip saddr 172.30.0.0/16 oifname != \"shoal0\" masquerade",
    ];
    assert_eq!(got, want, "{listing}");
    for hook in [
        "type filter hook input priority filter; policy accept;",
        "type filter hook forward priority filter; policy accept;",
        "type nat hook prerouting priority dstnat; policy accept;",
        "type nat hook output priority -100; policy accept;",
        "type nat hook postrouting priority srcnat; policy accept;",
    ] {
        assert!(listing.contains(hook), "{hook}\n{listing}");
    }

    // Replacing is whole: a smaller rule set leaves nothing of the bigger one.
    firewall::apply(&ns.handle(), &firewall::ruleset(&bridges[..1], &[])).unwrap();
    let listing = ns.nft_list();
    assert!(
        !listing.contains("br-x") && !listing.contains("dnat to"),
        "{listing}"
    );
    // Deleting twice is fine; afterwards the table is gone.
    firewall::remove(&ns.handle()).unwrap();
    firewall::remove(&ns.handle()).unwrap();
    assert!(!ns.nft_list().contains("table ip shoal"));
}

#[test]
fn a_refused_batch_changes_nothing_and_names_the_error() {
    let ns = Ns::new("refused");
    let good = [bridge("shoal0", "172.30.0.0/16", false)];
    firewall::apply(&ns.handle(), &firewall::ruleset(&good, &[])).unwrap();
    // Masquerading belongs in a nat chain: the kernel refuses the batch as a whole, after
    // the table was already dropped and recreated inside it.
    let mut bad = firewall::ruleset(&[bridge("br-y", "10.1.0.0/24", false)], &[]);
    bad[1].rules.push(vec![Expr::Masquerade]);
    let err = firewall::apply(&ns.handle(), &bad).unwrap_err();
    assert!(err.to_string().contains("nftables"), "{err}");
    let listing = ns.nft_list();
    assert!(
        listing.contains("shoal0") && !listing.contains("br-y"),
        "{listing}"
    );
    firewall::remove(&ns.handle()).unwrap();
}
