//! Containers on networks through shoal's own CLI, inside the lab's network namespace:
//! names and aliases across a user network, isolation between networks and `network
//! connect`, published ports (`-p`, `-P`, `port`), /etc files, nothing left behind after
//! exit, `rm` and `network rm`, and a daemon restart keeping networks, addresses and ports.

#[path = "lab/fake_dns.rs"]
mod fake_dns;
mod harness;

use harness::{eventually, stdout, Lab};

fn links(lab: &Lab) -> String {
    stdout(&lab.in_netns(&["ip", "-o", "link"]))
}

fn veths(lab: &Lab) -> Vec<String> {
    links(lab)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| n.starts_with("vs"))
        .collect()
}

/// The veths once the reaper has deleted those of exited containers (it runs in the
/// background, so an exit does not wait for the kernel's grace period).
fn settled_veths(lab: &Lab, expected: usize) -> Vec<String> {
    let mut v = veths(lab);
    for _ in 0..50 {
        if v.len() <= expected {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        v = veths(lab);
    }
    v
}

fn fetch(lab: &Lab, url: &str) -> String {
    stdout(&lab.in_netns(&["curl", "-s", "-m", "2", url]))
}

#[test]
fn user_networks_resolve_names_and_isolate() {
    let lab = Lab::new("net-names");
    lab.ok(&[
        "network",
        "create",
        "--subnet",
        "10.88.0.0/24",
        "--gateway",
        "10.88.0.1",
        "blue",
    ]);
    let ls = lab.ok(&["network", "ls"]);
    let header: Vec<&str> = ls
        .lines()
        .next()
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(header, ["NETWORK ID", "NAME", "DRIVER", "SCOPE"], "{ls}");
    assert!(
        ls.lines()
            .any(|l| l.contains(" blue ") && l.contains("bridge") && l.ends_with("local")),
        "{ls}"
    );

    lab.ok(&[
        "run",
        "-d",
        "--name",
        "alpha",
        "--network",
        "blue",
        "--network-alias",
        "db",
        "--ip",
        "10.88.0.50",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(
        lab.ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.blue.IPAddress}}",
            "alpha"
        ]),
        "10.88.0.50"
    );
    assert_eq!(
        lab.ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.IPAddress}} {{.NetworkSettings.Gateway}}",
            "alpha"
        ]),
        "10.88.0.50 10.88.0.1"
    );
    // A network named by its short id is the same network.
    let blue_id = lab.ok(&["network", "ls", "-q", "--filter", "name=blue"]);
    assert_eq!(blue_id.len(), 12, "{blue_id}");
    let by_id = lab.ok(&[
        "run",
        "--rm",
        "--network",
        &blue_id,
        "busybox",
        "ip",
        "-4",
        "-o",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(by_id.contains("inet 10.88.0."), "{by_id}");
    // /etc/hosts names the container's own address; resolv.conf points at the embedded DNS.
    let hosts = lab.ok(&["exec", "alpha", "cat", "/etc/hosts"]);
    assert!(hosts.lines().any(|l| l.starts_with("10.88.0.50\t")), "{hosts}");
    assert_eq!(
        lab.ok(&["exec", "alpha", "grep", "nameserver", "/etc/resolv.conf"]),
        "nameserver 10.88.0.1"
    );

    lab.ok(&[
        "run",
        "-d",
        "--name",
        "beta",
        "--network",
        "blue",
        "busybox",
        "sh",
        "-c",
        "echo from-b > /tmp/i; exec httpd -f -p 80 -h /tmp",
    ]);
    let look = lab.ok(&["exec", "beta", "nslookup", "db"]);
    assert!(look.contains("10.88.0.50"), "{look}");
    lab.ok(&["exec", "beta", "ping", "-c1", "-W2", "alpha"]);
    assert!(eventually(5, || stdout(&lab.shoal(&[
        "exec",
        "alpha",
        "wget",
        "-q",
        "-O-",
        "http://beta/i"
    ])) == "from-b"));

    // A container on another network reaches neither by name nor by address...
    lab.ok(&["network", "create", "red"]);
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "gamma",
        "--network",
        "red",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(!lab
        .shoal(&["exec", "gamma", "ping", "-c1", "-W1", "10.88.0.50"])
        .status
        .success());
    assert!(!lab
        .shoal(&["exec", "gamma", "nslookup", "alpha"])
        .status
        .success());
    // ...until it is connected, while running.
    lab.ok(&["network", "connect", "--alias", "cee", "blue", "gamma"]);
    lab.ok(&["exec", "gamma", "ping", "-c1", "-W2", "alpha"]);
    // The bridge kept its own hardware address while ports joined: a bridge that adopted the
    // lowest port address would strand alpha's ARP entry for the gateway (and its DNS).
    let bridge = lab.ok(&[
        "network",
        "inspect",
        "-f",
        "{{index .Options \"com.docker.network.bridge.name\"}}",
        "blue",
    ]);
    let mac = shoal::net::netlink::bridge_mac(&bridge);
    let mac = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let line = stdout(&lab.in_netns(&["ip", "-o", "link", "show", &bridge]));
    assert!(line.contains(&format!("link/ether {mac} ")), "{mac}: {line}");
    lab.ok(&["exec", "alpha", "ping", "-c1", "-W2", "cee"]);
    let inspect = lab.ok(&["network", "inspect", "-f", "{{len .Containers}}", "blue"]);
    assert_eq!(inspect, "3");
    lab.ok(&["network", "disconnect", "blue", "gamma"]);
    assert!(!lab
        .shoal(&["exec", "gamma", "ping", "-c1", "-W1", "10.88.0.50"])
        .status
        .success());

    // Removing a network in use fails; once its containers are gone nothing is left.
    assert!(!lab.shoal(&["network", "rm", "blue"]).status.success());
    lab.ok(&["rm", "-f", "alpha", "beta", "gamma"]);
    assert_eq!(settled_veths(&lab, 0), Vec::<String>::new());
    assert_eq!(lab.ok(&["network", "rm", "blue"]), "blue");
    let pruned = lab.ok(&["network", "prune", "-f"]);
    assert_eq!(pruned, "Deleted Networks:\nred");
    assert!(!links(&lab).contains("br-"), "{}", links(&lab));
    assert!(!lab.shoal(&["network", "rm", "bridge"]).status.success());
}

#[test]
fn published_ports_default_bridge_and_cleanup() {
    let lab = Lab::new("net-ports");
    let hosts = lab.ok(&[
        "run",
        "--rm",
        "--add-host",
        "board:host-gateway",
        "busybox",
        "cat",
        "/etc/hosts",
    ]);
    assert!(hosts.contains("172.30.0.1\tboard"), "{hosts}");
    // The default network is Docker's `bridge`; resolv.conf is the host's there.
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "18081:80",
        "-p",
        "127.0.0.1:18082:80",
        "--expose",
        "81",
        "-P",
        "busybox",
        "sh",
        "-c",
        "echo hi > /tmp/i; exec httpd -f -p 80 -h /tmp",
    ]);
    let nets = lab.ok(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{$v.Gateway}}{{end}}",
        "web",
    ]);
    assert_eq!(nets, "bridge 172.30.0.1");
    let ports = lab.ok(&["port", "web"]);
    let lines: Vec<&str> = ports.lines().collect();
    assert!(lines.contains(&"80/tcp -> 0.0.0.0:18081"), "{ports}");
    assert!(lines.contains(&"80/tcp -> 127.0.0.1:18082"), "{ports}");
    let free = lab.ok(&["port", "web", "81"]);
    assert!(free.starts_with("0.0.0.0:") && free != "0.0.0.0:0", "{free}");
    assert!(
        eventually(5, || fetch(&lab, "http://127.0.0.1:18081/i") == "hi"),
        "{}",
        harness::tail(&lab.daemon_log(), 20)
    );
    assert_eq!(fetch(&lab, "http://127.0.0.1:18082/i"), "hi");
    assert_eq!(fetch(&lab, "http://172.30.0.1:18081/i"), "hi");
    assert!(lab
        .ok(&["ps", "--format", "{{.Ports}}"])
        .contains("0.0.0.0:18081->80/tcp"));

    // A container that exits gives back its endpoint and ports.
    lab.ok(&["run", "--name", "brief", "-p", "18090:80", "busybox", "true"]);
    assert_eq!(settled_veths(&lab, 1).len(), 1, "{}", links(&lab));
    assert_eq!(stdout(&lab.shoal(&["port", "brief"])), "");
    lab.ok(&["rm", "brief"]);
    // --network none and host get no endpoint.
    assert_eq!(
        lab.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "ls /sys/class/net | tr '\\n' ' '"
        ]),
        "lo"
    );
    lab.ok(&["rm", "-f", "web"]);
    assert_eq!(settled_veths(&lab, 0), Vec::<String>::new());
    assert!(fetch(&lab, "http://127.0.0.1:18081/i").is_empty());
}

#[test]
fn daemon_restart_keeps_networks_addresses_and_ports() {
    let mut lab = Lab::new("net-restart");
    lab.ok(&["network", "create", "--subnet", "10.89.0.0/24", "green"]);
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "green",
        "-p",
        "18083:80",
        "busybox",
        "sh",
        "-c",
        "echo kept > /tmp/i; exec httpd -f -p 80 -h /tmp",
    ]);
    let ip = lab.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "srv"]);
    assert!(eventually(5, || fetch(&lab, "http://127.0.0.1:18083/i") == "kept"));

    assert_eq!(lab.stop_daemon(), Some(0));
    lab.start_daemon();
    assert!(lab.ok(&["network", "ls"]).contains("green"));
    assert_eq!(
        lab.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "srv"]),
        ip
    );
    assert_eq!(lab.ok(&["port", "srv"]), "80/tcp -> 0.0.0.0:18083");
    assert!(eventually(5, || fetch(&lab, "http://127.0.0.1:18083/i") == "kept"));
    // The address stays taken: a new container gets another one, and finds `s` by name.
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "tee",
        "--network",
        "green",
        "busybox",
        "sleep",
        "1000",
    ]);
    let ip2 = lab.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "tee"]);
    assert_ne!(ip, ip2);
    assert!(lab.ok(&["exec", "tee", "nslookup", "srv"]).contains(&ip));

    // A stop gives the endpoint back; a start joins again and publishes again.
    lab.ok(&["stop", "-t", "1", "srv"]);
    assert_eq!(
        lab.ok(&["network", "inspect", "-f", "{{len .Containers}}", "green"]),
        "1"
    );
    lab.ok(&["start", "srv"]);
    assert!(eventually(5, || fetch(&lab, "http://127.0.0.1:18083/i") == "kept"));
    lab.ok(&["exec", "tee", "ping", "-c1", "-W2", "srv"]);

    lab.ok(&["rm", "-f", "srv", "tee"]);
    assert_eq!(lab.stop_daemon(), Some(0));
    assert_eq!(settled_veths(&lab, 0), Vec::<String>::new());
    let routes = stdout(&lab.in_netns(&["ip", "route"]));
    // Only the bridges' own subnets stay routed: no per-container route survives.
    assert!(
        routes
            .lines()
            .all(|l| l.contains("dev br-") || l.contains("dev shoal0")),
        "{routes}"
    );
}

#[test]
fn bip_sets_the_default_bridge() {
    let mut lab = Lab::new("net-bip");
    assert_eq!(lab.stop_daemon(), Some(0));
    // Forget the default network made by the first start, as on a fresh board.
    std::fs::remove_file(lab.root.join("network/networks.json")).unwrap();
    let _ = lab.in_netns(&["ip", "link", "del", "shoal0"]);
    let mut daemon = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.netns))
        .args([harness::BIN, "daemon", "--bip", "10.123.0.1/24", "--root"])
        .arg(&lab.root)
        .arg("--socket")
        .arg(&lab.sock)
        .args(["--cgroup-parent", &format!("lab-{}", lab.netns)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(eventually(20, || std::os::unix::net::UnixStream::connect(
        &lab.sock
    )
    .is_ok()));
    let subnet = lab.shoal(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
        "bridge",
    ]);
    let ip = lab.shoal(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "ip -4 -o addr show eth0 | awk '{print $4}'",
    ]);
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = std::fs::remove_file(&lab.sock);
    lab.start_daemon();
    assert_eq!(stdout(&subnet), "10.123.0.0/24 10.123.0.1");
    assert!(stdout(&ip).starts_with("10.123.0."), "{}", stdout(&ip));
}

/// A second namespace wired to the lab by a veth pair plays a host on the board's LAN.
#[test]
fn published_port_reached_from_a_lan_host() {
    let lab = Lab::new("net-lan");
    let lan = format!("{}-lan", &lab.netns[..lab.netns.len().min(30)]);
    let sh = |cmd: &str| {
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .status()
            .unwrap();
        assert!(st.success(), "{cmd}");
    };
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &lan])
        .status();
    sh(&format!("ip netns add {lan}"));
    let ns = &lab.netns;
    sh(&format!(
        "ip -n {ns} link add lan0 type veth peer name eth0 netns {lan} && \
         ip -n {ns} addr add 10.201.0.1/24 dev lan0 && ip -n {ns} link set lan0 up && \
         ip -n {lan} addr add 10.201.0.2/24 dev eth0 && ip -n {lan} link set eth0 up && \
         ip -n {lan} link set lo up"
    ));
    lab.ok(&["network", "create", "apps"]);
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "apps",
        "-p",
        "18085:80",
        "busybox",
        "sh",
        "-c",
        "echo lan-ok > /tmp/i; exec httpd -f -p 80 -h /tmp",
    ]);
    let from_lan = || {
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &lan,
                "curl",
                "-s",
                "-m",
                "2",
                "http://10.201.0.1:18085/i",
            ])
            .output()
            .unwrap();
        stdout(&out)
    };
    let reached = eventually(5, || from_lan() == "lan-ok");
    lab.ok(&["rm", "-f", "web"]);
    let after_rm = from_lan();
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &lan])
        .status();
    assert!(
        reached,
        "LAN host could not reach the published port:\n{}",
        harness::tail(&lab.daemon_log(), 20)
    );
    assert_eq!(after_rm, "", "port still published after rm");
}

#[test]
fn own_dns_servers_and_rename_on_a_user_network() {
    let lab = Lab::new("net-owndns");
    // The container's own upstream: a fake resolver inside the lab, on a loopback address no
    // host resolv.conf names, so only queries sent to it get its answer.
    let lab_ns = shoal::net::netns::Netns::Path(format!("/run/netns/{}", lab.netns).into());
    fake_dns::upstream(&lab_ns, "127.0.0.77:53", [192, 0, 2, 77].into());
    lab.ok(&["network", "create", "green"]);
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "one",
        "--network",
        "green",
        "--dns",
        "127.0.0.77",
        "--dns-search",
        "corp.example",
        "busybox",
        "sleep",
        "1000",
    ]);
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "two",
        "--network",
        "green",
        "busybox",
        "sleep",
        "1000",
    ]);
    // resolv.conf names only the embedded DNS; --dns became its upstream for this container.
    let resolv = lab.ok(&["exec", "one", "cat", "/etc/resolv.conf"]);
    let gateway = lab.ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        "green",
    ]);
    assert!(
        resolv.starts_with(&format!("nameserver {gateway}\n")) && !resolv.contains("127.0.0.77"),
        "{resolv}"
    );
    assert!(resolv.contains("search corp.example"), "{resolv}");
    let out = lab.ok(&["exec", "one", "nslookup", "outside.example"]);
    assert!(out.contains("192.0.2.77"), "{out}");
    // Names on the network still come from the embedded DNS, not from the upstream.
    let two_ip = lab.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.green.IPAddress}}",
        "two",
    ]);
    // (Fully qualified: with a search list, `two` is first tried as two.corp.example, which
    // the catch-all fake upstream answers, as any resolver would.)
    let out = lab.ok(&["exec", "one", "nslookup", "two."]);
    assert!(out.contains(&two_ip), "{out}");
    // A container without --dns does not use the other's upstream.
    let other = stdout(&lab.shoal(&["exec", "two", "nslookup", "outside.example"]));
    assert!(!other.contains("192.0.2.77"), "{other}");

    // A renamed container is found by its new name only.
    let one_ip = lab.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.green.IPAddress}}",
        "one",
    ]);
    lab.ok(&["rename", "one", "uno"]);
    let out = lab.ok(&["exec", "two", "nslookup", "uno"]);
    assert!(out.contains(&one_ip), "{out}");
    assert!(!lab.shoal(&["exec", "two", "nslookup", "one"]).status.success());
    // And the rename survives a restart of the container.
    lab.ok(&["restart", "-t", "1", "uno"]);
    let out = lab.ok(&["exec", "two", "nslookup", "uno"]);
    let uno_ip = lab.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.green.IPAddress}}",
        "uno",
    ]);
    assert!(out.contains(&uno_ip), "{out}");
    lab.ok(&["rm", "-f", "uno", "two"]);
}

#[test]
fn published_port_comes_back_after_other_containers_started() {
    // The socket holding a published host port must not leak into shims started later:
    // otherwise the port stays bound after its container stops and the restart fails.
    let lab = Lab::new("net-portback");
    let serve = ["sh", "-c", "echo back > /tmp/i; exec httpd -f -p 80 -h /tmp"];
    let mut run = vec!["run", "-d", "--name", "web", "-p", "18095:80", "busybox"];
    run.extend(serve);
    lab.ok(&run);
    lab.ok(&["run", "-d", "--name", "other", "busybox", "sleep", "1000"]);
    lab.ok(&["stop", "-t", "1", "web"]);
    lab.ok(&["start", "web"]);
    assert!(
        eventually(5, || fetch(&lab, "http://127.0.0.1:18095/i") == "back"),
        "{}",
        harness::tail(&lab.daemon_log(), 20)
    );
    lab.ok(&["rm", "-f", "web", "other"]);
}
