//! Networking through the real `docker` CLI against shoal's socket: `network create/ls/
//! inspect/connect/disconnect/rm/prune`, names across a user network, `run -p`, `-P`, `port`.
//! Everything happens inside the lab's network namespace. Skipped with a message only when
//! no docker CLI is installed.

mod harness;

use harness::{eventually, stderr, stdout, Lab};

fn links(lab: &Lab) -> String {
    stdout(&lab.in_netns(&["ip", "-o", "link"]))
}

#[test]
fn docker_cli_networks_names_and_ports() {
    if !harness::have_docker() {
        eprintln!("SKIP: no docker CLI on this machine");
        return;
    }
    let lab = Lab::new("docker-net");
    let d = |args: &[&str]| lab.docker_ok(args);

    let id = d(&[
        "network",
        "create",
        "--subnet",
        "10.77.0.0/24",
        "--label",
        "app=x",
        "front",
    ]);
    assert_eq!(id.len(), 64, "{id}");
    let ls = d(&["network", "ls"]);
    assert!(ls.starts_with("NETWORK ID"), "{ls}");
    for n in ["bridge", "host", "none", "front"] {
        assert!(
            ls.lines().any(|l| l.split_whitespace().nth(1) == Some(n)),
            "{n} missing:\n{ls}"
        );
    }
    assert_eq!(
        d(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
            "front"
        ]),
        "10.77.0.0/24"
    );
    assert_eq!(d(&["network", "ls", "-q", "--filter", "label=app=x"]), id[..12]);

    d(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "front",
        "--network-alias",
        "www",
        "busybox",
        "sleep",
        "1000",
    ]);
    let ip = d(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.front.IPAddress}}",
        "web",
    ]);
    assert!(ip.starts_with("10.77.0."), "{ip}");
    // Name and alias resolve through the embedded DNS; ping reaches the address.
    let out = d(&[
        "run",
        "--rm",
        "--network",
        "front",
        "busybox",
        "sh",
        "-c",
        "nslookup www && ping -c1 -W2 web",
    ]);
    assert!(out.contains(&ip), "{out}");

    // Another network cannot reach it until connected.
    d(&["network", "create", "back"]);
    d(&[
        "run",
        "-d",
        "--name",
        "other",
        "--network",
        "back",
        "busybox",
        "sleep",
        "1000",
    ]);
    let out = lab.docker(&["exec", "other", "ping", "-c1", "-W1", &ip]);
    assert!(!out.status.success(), "isolation broken: {}", stdout(&out));
    d(&["network", "connect", "--alias", "o2", "front", "other"]);
    d(&["exec", "other", "ping", "-c1", "-W2", "web"]);
    d(&["exec", "web", "ping", "-c1", "-W2", "o2"]);
    let listed = d(&["ps", "--format", "{{.Names}} {{.Networks}}", "-f", "name=other"]);
    assert!(
        listed == "other back,front" || listed == "other front,back",
        "{listed}"
    );
    let nets = d(&["inspect", "-f", "{{len .NetworkSettings.Networks}}", "other"]);
    assert_eq!(nets, "2");
    d(&["network", "disconnect", "front", "other"]);
    // Connected while created, joined at start.
    d(&[
        "create",
        "--name",
        "later",
        "--network",
        "back",
        "busybox",
        "sleep",
        "1000",
    ]);
    d(&["network", "connect", "front", "later"]);
    d(&["start", "later"]);
    d(&["exec", "later", "ping", "-c1", "-W2", "www"]);
    let out = lab.docker(&["run", "--rm", "--network", "container:later", "busybox", "true"]);
    assert!(stderr(&out).contains("not supported"), "{}", stderr(&out));
    assert!(!lab
        .docker(&["exec", "other", "ping", "-c1", "-W1", &ip])
        .status
        .success());

    // Published ports: reached from the lab on its loopback; `port` and `ps` show them.
    d(&[
        "run",
        "-d",
        "--name",
        "srv",
        "-p",
        "18080:8080",
        "-p",
        "127.0.0.1::9090",
        "busybox",
        "sh",
        "-c",
        "echo hello > /tmp/i; exec httpd -f -p 8080 -h /tmp",
    ]);
    let ports = d(&["port", "srv"]);
    assert!(ports.contains("8080/tcp -> 0.0.0.0:18080"), "{ports}");
    assert!(ports.contains("9090/tcp -> 127.0.0.1:"), "{ports}");
    assert!(d(&["ps", "--format", "{{.Ports}}", "-f", "name=srv"]).contains("0.0.0.0:18080->8080/tcp"));
    let fetched = eventually(5, || {
        stdout(&lab.in_netns(&["curl", "-s", "-m", "2", "http://127.0.0.1:18080/i"])) == "hello"
    });
    assert!(
        fetched,
        "published port not reachable; daemon log:\n{}",
        harness::tail(&lab.daemon_log(), 20)
    );
    // -P: exposed ports to free host ports.
    d(&[
        "run", "-d", "--name", "all", "--expose", "7000", "-P", "busybox", "sleep", "1000",
    ]);
    let p = d(&["port", "all", "7000"]);
    assert!(p.starts_with("0.0.0.0:"), "{p}");

    // rm, network rm and prune leave no veth and no bridge behind.
    d(&["rm", "-f", "web", "other", "srv", "all", "later"]);
    // (Exited containers' veths are deleted in the background: allow it a moment.)
    assert!(
        eventually(2, || !links(&lab).contains("vs")),
        "veth left:\n{}",
        links(&lab)
    );
    d(&["network", "rm", "front"]);
    assert!(!d(&["network", "ls"]).contains("front"));
    let pruned = d(&["network", "prune", "-f"]);
    assert!(pruned.contains("back"), "{pruned}");
    assert!(!links(&lab).contains("br-"), "bridge left:\n{}", links(&lab));
    assert!(!lab.docker(&["network", "rm", "bridge"]).status.success());
}
