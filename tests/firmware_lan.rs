//! Three x86_64 firmware VMs on one virtual LAN: tap devices on a bridge inside a network
//! namespace this test creates (nothing is added to the machine's own namespace). Each board
//! gets its address, host name and DNS server by DHCP (`ip=:::::eth0:dhcp`) from dnsmasq
//! serving the bridge inside that namespace and, from a host-network container, sees the DNS
//! server in resolv.conf and reaches the other two (then stays up 40 s so that slower boards
//! can still reach it). Each board also runs `shoal raft-node` (in a host-network container
//! with the board's own shoal binary mounted): the three form a raft cluster over the LAN's
//! cluster port, and this test, from the bridge's namespace, writes through the leader and
//! sees the entry applied on all three.
//! This is the stage the swarm will run on.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ip(args: &[&str]) {
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
}

/// Deletes the namespace (and with it the bridge and taps) however the test ends.
struct Lab {
    ns: String,
    dhcp_server: Option<std::process::Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.dhcp_server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// TCG boots are CPU-bound: the tests here take turns rather than share the cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn image_dir(board: &str) -> PathBuf {
    let dir = repo().join("board/out").join(board);
    // The boot tests may be building the same image: wait on their lock, build if missing.
    std::fs::create_dir_all(repo().join("board/out")).unwrap();
    let status = Command::new("flock")
        .arg(repo().join("board/out/.build-lock"))
        .args([
            "sh",
            "-c",
            r#"[ -e "$1/initramfs.cpio.gz" ] && [ -e "$1/run-qemu.sh" ] || "$2" "$3""#,
            "sh",
        ])
        .arg(&dir)
        .arg(repo().join("board/firmware.sh"))
        .arg(board)
        .status()
        .unwrap();
    assert!(status.success(), "board/firmware.sh {board} failed");
    dir
}

/// The LAN: namespace `shoal-fwlan-TAG-PID` with bridge br0 (10.77.0.1/24), a tap per board
/// (`tapN`) and dnsmasq giving board N (MAC 52:54:00:77:00:N) 10.77.0.N and the name boardN.
/// Returns the lab and a thread that yields dnsmasq's log once it has stopped.
fn lan(tag: &str, boards: &[u8]) -> (Lab, std::thread::JoinHandle<String>) {
    let mut lab = Lab {
        ns: format!("shoal-fwlan-{tag}-{}", std::process::id()),
        dhcp_server: None,
    };
    ip(&["netns", "add", &lab.ns]);
    let inns = |args: &[&str]| {
        let mut full = vec!["-n", lab.ns.as_str()];
        full.extend_from_slice(args);
        ip(&full);
    };
    inns(&["link", "set", "lo", "up"]);
    inns(&["link", "add", "br0", "type", "bridge"]);
    inns(&["link", "set", "br0", "up"]);
    inns(&["addr", "add", "10.77.0.1/24", "dev", "br0"]);
    for n in boards {
        let tap = format!("tap{n}");
        inns(&["tuntap", "add", "dev", &tap, "mode", "tap"]);
        inns(&["link", "set", &tap, "master", "br0"]);
        inns(&["link", "set", &tap, "up"]);
    }
    // The lease file lives in memory: the server only runs as long as the test.
    let mut dnsmasq = Command::new("ip");
    dnsmasq
        .args([
            "netns",
            "exec",
            &lab.ns,
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--leasefile-ro",
        ])
        .args(["--port=0", "--interface=br0", "--bind-interfaces", "--pid-file="])
        .args(["--user=root", "--group=root", "--log-dhcp", "--log-facility=-"])
        .args([
            "--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,10m",
            "--dhcp-option=option:router,10.77.0.1",
            "--dhcp-option=option:dns-server,10.77.0.1",
        ]);
    for n in boards {
        dnsmasq.arg(format!("--dhcp-host=52:54:00:77:00:{n},10.77.0.{n},board{n}"));
    }
    let mut server = dnsmasq
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dnsmasq is installed (package dnsmasq-base)");
    let mut server_log = server.stderr.take().unwrap();
    lab.dhcp_server = Some(server);
    let server_log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = server_log.read_to_string(&mut text);
        text
    });
    (lab, server_log)
}

/// Boots board `n` of `image` on the LAN; returns qemu and a thread collecting its console.
fn boot(
    lab: &Lab,
    image: &std::path::Path,
    n: u8,
    mem: &str,
    append: String,
) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns])
        .arg(image.join("run-qemu.sh"))
        .env("APPEND", append)
        .env(
            "NETDEV",
            format!("tap,id=lan,ifname=tap{n},script=no,downscript=no"),
        )
        .env("MAC", format!("52:54:00:77:00:{n}"))
        .env("MEM", mem)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    (child, reader)
}

/// Waits until `deadline` for qemu to end by itself (a power-off); kills it otherwise.
fn wait_power_off(child: &mut std::process::Child, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// The aarch64 firmware's shoal init takes its address, name and DNS server by DHCP too.
#[test]
fn aarch64_board_is_configured_by_dhcp() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let image = image_dir("qemu/aarch64-virt");
    let (lab, server_log) = lan("a64", &[21]);
    let append = "ip=dhcp shoal.autorun=\"run --rm --network host busybox sh -c \
                  'ping -c 1 -w 30 10.77.0.1 >/dev/null && echo board21-reaches-gateway; \
                  grep -q nameserver.10.77.0.1 /etc/resolv.conf && echo board21-has-dns'\" \
                  shoal.then=poweroff"
        .to_string();
    let (mut child, reader) = boot(&lab, &image, 21, "256", append);
    let off = wait_power_off(&mut child, Instant::now() + Duration::from_secs(240));
    drop(lab);
    let (text, log) = (reader.join().unwrap(), server_log.join().unwrap());
    assert!(off, "board21 did not power off\n{text}\n---- dnsmasq ----\n{log}");
    for needle in [
        "eth0: DHCP 10.77.0.21/24 gateway 10.77.0.1",
        "host board21 (from DHCP)",
        "board21-reaches-gateway",
        "board21-has-dns",
        "released the DHCP lease of 10.77.0.21",
    ] {
        assert!(
            text.contains(needle),
            "console lacks {needle}\n{text}\n---- dnsmasq ----\n{log}"
        );
    }
    // At power-off the lease is given back, and the server frees the address.
    assert!(
        log.contains("DHCPRELEASE(br0) 10.77.0.21"),
        "no DHCPRELEASE\n{log}"
    );
    if let Some(line) = text.lines().find(|l| l.contains("eth0: DHCP")) {
        eprintln!("aarch64: {}", line.trim());
    }
}

#[test]
fn three_boards_reach_each_other_on_a_bridge_inside_a_test_namespace() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = image_dir("qemu/x86_64");
    let boards = [11u8, 12, 13];
    let (lab, server_log) = lan("x86", &boards);
    let mut vms = Vec::new();
    for n in boards {
        let others: Vec<String> = boards
            .iter()
            .filter(|o| **o != n)
            .map(|o| format!("10.77.0.{o}"))
            .collect();
        let peers: Vec<String> = boards
            .iter()
            .filter(|o| **o != n)
            .map(|o| format!("--peer {o}=10.77.0.{o}:{RAFT_PORT}"))
            .collect();
        let append = format!(
            "ip=:::::eth0:dhcp \
             shoal.autorun=\"run -d --name raft --network host -v /usr/bin/shoal:/sbin/shoal:ro busybox \
             sh -c 'echo {key} >/key && exec shoal raft-node --id {n} --data /raft \
             --listen 10.77.0.{n}:{RAFT_PORT} --client 10.77.0.{n}:{CLIENT_PORT} --key-file /key \
             {peers} --bootstrap'\" \
             shoal.autorun=\"run --rm --network host busybox sh -c 'grep -q nameserver.10.77.0.1 /etc/resolv.conf \
             && echo board{n}-has-dns; for p in {}; do \
             ping -c 1 -w 60 $p >/dev/null && echo board{n}-reaches-$p; done; sleep 40'\" shoal.then=poweroff",
            others.join(" "),
            key = "5a".repeat(32),
            peers = peers.join(" "),
        );
        let (child, reader) = boot(&lab, &dir, n, "160", append);
        vms.push((n, child, reader));
    }
    let netns = shoal::net::netns::Netns::path(format!("/run/netns/{}", lab.ns));
    let raft = std::thread::spawn(move || {
        shoal::net::netns::run_in(&netns, || Ok(raft_write_is_replicated(&boards)))
            .unwrap_or_else(|e| Err(e.to_string()))
    });
    let start = Instant::now();
    let mut results = Vec::new();
    for (n, mut child, reader) in vms {
        let ok = wait_power_off(&mut child, start + Duration::from_secs(300));
        results.push((n, ok, reader.join().unwrap()));
    }
    eprintln!("three boards done in {:.1} s", start.elapsed().as_secs_f64());
    drop(lab);
    let raft = raft.join().unwrap();
    let server_log = server_log.join().unwrap();
    for (n, powered_off, text) in &results {
        if let Some(line) = text.lines().find(|l| l.contains("eth0: DHCP")) {
            eprintln!("board{n}: {}", line.trim());
        }
        assert!(
            powered_off,
            "board{n} did not power off\n{text}\n---- dnsmasq ----\n{server_log}"
        );
        for needle in [
            format!("eth0: DHCP 10.77.0.{n}/24 gateway 10.77.0.1"),
            format!("host board{n} (from DHCP)"),
            format!("board{n}-has-dns"),
        ] {
            assert!(
                text.contains(&needle),
                "board{n} lacks {needle}\n{text}\n---- dnsmasq ----\n{server_log}"
            );
        }
        for o in boards.iter().filter(|o| *o != n) {
            let needle = format!("board{n}-reaches-10.77.0.{o}");
            assert!(text.contains(&needle), "board{n} lacks {needle}\n{text}");
        }
    }
    match raft {
        Ok(summary) => eprintln!("raft over the LAN: {summary}"),
        Err(e) => panic!("raft cluster of the three boards: {e}"),
    }
}

const RAFT_PORT: u16 = 7946;
const CLIENT_PORT: u16 = 7947;

/// One request line to a raft-node's client port; the answer line.
fn ask(board: u8, line: &str) -> Result<String, String> {
    let addr = SocketAddr::from(([10, 77, 0, board], CLIENT_PORT));
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut answer = String::new();
    BufReader::new(s)
        .read_line(&mut answer)
        .map_err(|e| format!("{addr}: {e}"))?;
    Ok(answer.trim().to_string())
}

/// `status` as (role, leader, applied): the answer is `id term role leader commit applied`.
fn status(board: u8) -> Option<(String, String, u64)> {
    let a = ask(board, "status").ok()?;
    let f: Vec<&str> = a.split_whitespace().collect();
    Some((
        f.get(2)?.to_string(),
        f.get(3)?.to_string(),
        f.get(5)?.parse().ok()?,
    ))
}

/// Waits for a leader among the boards, writes through it, and waits until every board has
/// applied that entry: raft traffic crossed the LAN between every pair that needed it.
fn raft_write_is_replicated(boards: &[u8]) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut last = String::new();
    let (leader, index) = loop {
        if Instant::now() > deadline {
            return Err(format!("no write went through a leader; last: {last}"));
        }
        std::thread::sleep(Duration::from_millis(500));
        let Some(&leader) = boards
            .iter()
            .find(|b| status(**b).is_some_and(|(role, _, _)| role == "leader"))
        else {
            last = "no leader yet".into();
            continue;
        };
        match ask(leader, "put lan-key from-the-test") {
            Ok(a) if a.starts_with("ok ") => {
                break (leader, a[3..].parse::<u64>().map_err(|e| format!("{a:?}: {e}"))?);
            }
            Ok(a) => last = format!("put via board{leader}: {a}"),
            Err(e) => last = e,
        }
    };
    let value = ask(leader, "get lan-key")?;
    if value != "value from-the-test" {
        return Err(format!("get on the leader board{leader}: {value}"));
    }
    loop {
        let all: Vec<_> = boards.iter().map(|b| (*b, status(*b))).collect();
        let done = all.iter().all(|(_, s)| {
            s.as_ref()
                .is_some_and(|(_, l, applied)| *l == leader.to_string() && *applied >= index)
        });
        if done {
            return Ok(format!(
                "leader board{leader}, entry {index} applied on all: {all:?}"
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("entry {index} not applied everywhere: {all:?}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
