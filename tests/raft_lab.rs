//! Real processes in real network namespaces: every `shoal raft-node` runs in a namespace of
//! its own whose `eth0` (10.77.0.N/24) is one end of a veth pair; the other ends sit on a
//! bridge in a lab namespace, where this test's clients live. Faults are real: kill -9 of a
//! process and a link taken down (`ip -n NODE link set eth0 down`). While faults happen,
//! clients write and read the key-value store and the recorded history must be linearizable.
//!
//! Nothing is created in the machine's own namespace and only addresses inside the lab are
//! used; the `Lab` guard kills the processes and deletes the namespaces, even on panic.

#[path = "raft/linearizability.rs"]
mod linearizability;

use linearizability::{Op, OpKind};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const RAFT_PORT: u16 = 7000;
const CLIENT_PORT: u16 = 7001;
/// Keys the clients use: few, so that operations on one key overlap often.
const KEYS: u64 = 4;

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("ip (iproute2) runs");
    assert!(status.success(), "ip {} failed", args.join(" "));
}

/// Move the calling thread (only it) into the network namespace at `path`.
fn enter_netns(path: &str) {
    let ns = File::open(path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
    move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))
        .unwrap_or_else(|e| panic!("setns into {path}: {e}"));
}

/// Node `i` (0-based) listens on 10.77.0.(i+1).
fn node_ip(i: usize) -> String {
    format!("10.77.0.{}", i + 1)
}

fn client_addr(i: usize) -> SocketAddr {
    format!("{}:{CLIENT_PORT}", node_ip(i)).parse().unwrap()
}

/// What became of one request line.
enum Outcome {
    /// No connection: the request never reached the node.
    NotSent,
    Answer(String),
    /// Sent, but no answer came back: it may or may not have taken effect.
    Unknown,
}

fn exchange(addr: SocketAddr, line: &str) -> Outcome {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return Outcome::NotSent;
    };
    if s.set_read_timeout(Some(Duration::from_secs(6))).is_err()
        || s.write_all(format!("{line}\n").as_bytes()).is_err()
    {
        return Outcome::Unknown;
    }
    let mut answer = String::new();
    match BufReader::new(s).read_line(&mut answer) {
        Ok(n) if n > 0 => Outcome::Answer(answer.trim().to_string()),
        _ => Outcome::Unknown,
    }
}

fn ask(addr: SocketAddr, line: &str) -> Option<String> {
    match exchange(addr, line) {
        Outcome::Answer(a) => Some(a),
        _ => None,
    }
}

/// `status` answers `id term role leader commit applied`.
#[derive(Debug)]
struct Status {
    term: u64,
    role: String,
    leader: Option<u64>,
    applied: u64,
}

fn parse_status(line: &str) -> Option<Status> {
    let w: Vec<&str> = line.split(' ').collect();
    if w.len() != 6 {
        return None;
    }
    Some(Status {
        term: w[1].parse().ok()?,
        role: w[2].to_string(),
        leader: w[3].parse().ok(),
        applied: w[5].parse().ok()?,
    })
}

fn status(i: usize) -> Option<Status> {
    parse_status(&ask(client_addr(i), "status")?)
}

/// A lab namespace with a bridge, one namespace per node, and the node processes. The test
/// thread that creates it moves into the lab namespace until the lab is dropped.
struct Lab {
    lab_ns: String,
    node_ns: Vec<String>,
    base: PathBuf,
    key_file: PathBuf,
    children: Vec<Option<Child>>,
    /// The creating thread's own namespace, returned to on drop.
    home_ns: Option<File>,
}

impl Lab {
    fn new(tag: &str, nodes: usize) -> Lab {
        let prefix = format!("srl{}{tag}", std::process::id());
        let base = std::env::temp_dir().join(format!("shoal-raft-lab-{prefix}"));
        let mut lab = Lab {
            lab_ns: format!("{prefix}-lab"),
            node_ns: (1..=nodes).map(|n| format!("{prefix}-n{n}")).collect(),
            key_file: base.join("cluster.key"),
            base,
            children: (0..nodes).map(|_| None).collect(),
            home_ns: None,
        };
        // Leftovers of an earlier run that had the same process id.
        lab.delete_namespaces();
        let _ = std::fs::remove_dir_all(&lab.base);
        std::fs::create_dir_all(&lab.base).unwrap();
        std::fs::write(&lab.key_file, "77".repeat(32)).unwrap();

        let l = lab.lab_ns.clone();
        ip(&["netns", "add", &l]);
        ip(&["-n", &l, "link", "set", "lo", "up"]);
        ip(&["-n", &l, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &l, "addr", "add", "10.77.0.254/24", "dev", "br0"]);
        ip(&["-n", &l, "link", "set", "br0", "up"]);
        for (i, ns) in lab.node_ns.clone().iter().enumerate() {
            let port = format!("v{}", i + 1);
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            // Created inside the lab namespace; the peer end goes straight into the node's.
            ip(&[
                "-n", &l, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ]);
            ip(&["-n", &l, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &l, "link", "set", &port, "up"]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", node_ip(i)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
        }
        lab.home_ns = Some(File::open("/proc/thread-self/ns/net").expect("own netns"));
        enter_netns(&format!("/run/netns/{l}"));
        lab
    }

    fn start(&mut self, i: usize) {
        let data = self.base.join(format!("n{}", i + 1));
        let log = File::options()
            .create(true)
            .append(true)
            .open(data.with_extension("log"))
            .unwrap();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.node_ns[i]))
            .arg(env!("CARGO_BIN_EXE_shoal"))
            .arg("raft-node")
            .args(["--id", &(i + 1).to_string(), "--data", data.to_str().unwrap()])
            .args(["--listen", &format!("{}:{RAFT_PORT}", node_ip(i))])
            .args(["--client", &format!("{}:{CLIENT_PORT}", node_ip(i))])
            .args(["--key-file", self.key_file.to_str().unwrap()])
            .args(["--snapshot-every", "50", "--bootstrap"])
            .stderr(log);
        for p in (0..self.node_ns.len()).filter(|p| *p != i) {
            cmd.args(["--peer", &format!("{}={}:{RAFT_PORT}", p + 1, node_ip(p))]);
        }
        // nsenter joins the namespace and execs shoal: the child's pid is the node's.
        self.children[i] = Some(cmd.spawn().expect("nsenter starts"));
    }

    fn start_all(&mut self) {
        for i in 0..self.node_ns.len() {
            self.start(i);
        }
    }

    /// kill -9.
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn set_link(&self, i: usize, state: &str) {
        ip(&["-n", &self.node_ns[i], "link", "set", "eth0", state]);
    }

    /// The node among `among` that says it leads.
    fn leader_among(&self, among: &[usize]) -> Option<usize> {
        among
            .iter()
            .copied()
            .find(|&i| self.children[i].is_some() && status(i).is_some_and(|s| s.role == "leader"))
    }

    fn wait_leader(&self, among: &[usize], within: Duration) -> usize {
        let start = Instant::now();
        loop {
            if let Some(l) = self.leader_among(among) {
                return l;
            }
            assert!(
                start.elapsed() < within,
                "no leader among {among:?} within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ask node `i` from inside its own namespace (reachable even while its link is down).
    fn status_from_inside(&self, i: usize) -> Option<Status> {
        let path = format!("/run/netns/{}", self.node_ns[i]);
        std::thread::spawn(move || {
            enter_netns(&path);
            status(i)
        })
        .join()
        .unwrap()
    }

    fn delete_namespaces(&self) {
        for ns in self.node_ns.iter().chain([&self.lab_ns]) {
            if std::path::Path::new("/run/netns").join(ns).exists() {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            if let Some(mut c) = self.children[i].take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if let Some(home) = self.home_ns.take() {
            let _ = move_into_link_name_space(home.as_fd(), Some(LinkNameSpaceType::Network));
        }
        self.delete_namespaces();
        if std::thread::panicking() {
            for i in 0..self.node_ns.len() {
                let log = self.base.join(format!("n{}.log", i + 1));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                eprintln!("--- node {} log tail:", i + 1);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Client threads in the lab namespace: random puts (unique values) and gets on `KEYS` keys,
/// puts sent to the node believed to lead, gets to any node. Every operation is recorded.
struct Clients {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    threads: Vec<JoinHandle<Vec<Op>>>,
}

impl Clients {
    /// Spawned from the test thread, so the client threads start in the lab namespace too.
    fn start(count: u64, nodes: usize) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let threads = (0..count)
            .map(|client| {
                let (stop, acked) = (stop.clone(), acked.clone());
                std::thread::spawn(move || client_loop(client, nodes, epoch, &stop, &acked))
            })
            .collect();
        Clients { stop, acked, threads }
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Wait until `more` further puts were acknowledged.
    fn wait_progress(&self, more: u64, within: Duration, what: &str) {
        let goal = self.acked() + more;
        let start = Instant::now();
        while self.acked() < goal {
            assert!(
                start.elapsed() < within,
                "{what}: only {} of {goal} puts acknowledged after {within:?}",
                self.acked()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(mut self) -> Vec<Op> {
        self.stop.store(true, Ordering::Relaxed);
        let mut history = Vec::new();
        for t in self.threads.drain(..) {
            history.extend(t.join().expect("client thread"));
        }
        history
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn client_loop(client: u64, nodes: usize, epoch: Instant, stop: &AtomicBool, acked: &AtomicU64) -> Vec<Op> {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (client + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let now = || epoch.elapsed().as_micros() as u64;
    let mut history = Vec::new();
    let mut leader = 0usize;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = (next() % KEYS) as u8;
        if next() % 2 == 0 {
            seq += 1;
            let value = (client << 32) | seq;
            let call = now();
            let ret = match exchange(client_addr(leader), &format!("put k{key} {value}")) {
                Outcome::Answer(a) if a.starts_with("ok") => {
                    acked.fetch_add(1, Ordering::Relaxed);
                    Some(now())
                }
                Outcome::Answer(a) if a.starts_with("redirect") => {
                    // Refused before being proposed: it never happened.
                    leader = match a.split(' ').nth(1).and_then(|l| l.parse::<usize>().ok()) {
                        Some(l) if (1..=nodes).contains(&l) => l - 1,
                        _ => {
                            std::thread::sleep(Duration::from_millis(20));
                            (leader + 1) % nodes
                        }
                    };
                    continue;
                }
                Outcome::NotSent => {
                    leader = (leader + 1) % nodes;
                    continue;
                }
                // `err ...` (leadership lost, timeout) or no answer: the outcome is unknown.
                Outcome::Answer(_) | Outcome::Unknown => {
                    leader = (leader + 1) % nodes;
                    None
                }
            };
            history.push(Op {
                client,
                key,
                kind: OpKind::Put(value),
                call,
                ret,
            });
        } else {
            let node = (next() % nodes as u64) as usize;
            let call = now();
            let read = match exchange(client_addr(node), &format!("get k{key}")) {
                Outcome::Answer(a) if a == "none" => Some(None),
                Outcome::Answer(a) => a
                    .strip_prefix("value ")
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Some),
                _ => None,
            };
            // A read without an answer constrains nothing.
            if let Some(value) = read {
                history.push(Op {
                    client,
                    key,
                    kind: OpKind::Get(value),
                    call,
                    ret: Some(now()),
                });
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    history
}

fn check_history(history: &[Op]) {
    let puts = history
        .iter()
        .filter(|o| matches!(o.kind, OpKind::Put(_)))
        .count();
    let unknown = history.iter().filter(|o| o.ret.is_none()).count();
    let start = Instant::now();
    if let Err(e) = linearizability::check(history) {
        panic!("{e}");
    }
    println!(
        "history of {} operations ({puts} puts, {unknown} of unknown outcome) is linearizable \
         (checked in {:?})",
        history.len(),
        start.elapsed()
    );
    assert!(history.len() > 50, "too few operations: {}", history.len());
    // The same history with one read answering a value nobody wrote must be rejected.
    let mut forged = history.to_vec();
    let read = forged
        .iter_mut()
        .find(|o| matches!(o.kind, OpKind::Get(Some(_))))
        .expect("some read returned a value");
    read.kind = OpKind::Get(Some(u64::MAX));
    assert!(
        linearizability::check(&forged).is_err(),
        "the checker accepted a forged read"
    );
}

/// Put `key value` through whichever of `among` leads, retrying until acknowledged.
fn put_via_leader(lab: &Lab, among: &[usize], key: &str, value: &str, within: Duration) -> usize {
    let start = Instant::now();
    loop {
        let l = lab.wait_leader(among, within);
        if ask(client_addr(l), &format!("put {key} {value}")).is_some_and(|a| a.starts_with("ok")) {
            return l;
        }
        assert!(
            start.elapsed() < within,
            "put {key} not acknowledged within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until node `i` serves `key` = `value` from its own state (a ReadIndex read is
/// answered by the node once it has applied up to the leader's commit index).
fn wait_caught_up(i: usize, key: &str, value: &str, within: Duration) {
    let start = Instant::now();
    let want = format!("value {value}");
    loop {
        let answer = ask(client_addr(i), &format!("get {key}"));
        if answer.as_deref() == Some(want.as_str()) {
            return;
        }
        assert!(
            start.elapsed() < within,
            "node {} did not catch up within {within:?}: get {key} = {answer:?}",
            i + 1
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_nodes_leader_killed_and_restarted_under_load() {
    let mut lab = Lab::new("kill", 3);
    lab.start_all();
    let all = [0, 1, 2];
    let leader = lab.wait_leader(&all, Duration::from_secs(10));
    let clients = Clients::start(3, 3);
    clients.wait_progress(20, Duration::from_secs(10), "before the kill");

    lab.kill(leader);
    let killed = Instant::now();
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let new_leader = put_via_leader(&lab, &rest, "marker", "after-kill", Duration::from_secs(10));
    println!(
        "kill -9 of node {}: node {} leads and took a write after {:?}",
        leader + 1,
        new_leader + 1,
        killed.elapsed()
    );
    clients.wait_progress(20, Duration::from_secs(10), "after the kill");

    lab.start(leader);
    wait_caught_up(leader, "marker", "after-kill", Duration::from_secs(15));
    let lead = status(new_leader).expect("leader answers status");
    let restarted = status(leader).expect("restarted node answers status");
    assert!(restarted.role == "follower", "restarted node: {restarted:?}");
    assert_eq!(restarted.leader, Some(new_leader as u64 + 1));
    assert_eq!(restarted.term, lead.term);
    clients.wait_progress(10, Duration::from_secs(10), "after the restart");
    check_history(&clients.finish());
}

#[test]
fn three_nodes_follower_link_cut_and_healed_under_load() {
    let mut lab = Lab::new("cut", 3);
    lab.start_all();
    let all = [0, 1, 2];
    let leader = lab.wait_leader(&all, Duration::from_secs(10));
    let clients = Clients::start(3, 3);
    clients.wait_progress(20, Duration::from_secs(10), "before the cut");
    let term_before = status(leader).expect("leader answers").term;

    let cut = (leader + 1) % 3;
    lab.set_link(cut, "down");
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != cut).collect();
    // The two remaining nodes are a majority: writes keep being committed.
    clients.wait_progress(30, Duration::from_secs(10), "while a follower is cut off");
    put_via_leader(&lab, &rest, "marker", "during-cut", Duration::from_secs(10));
    let inside = lab
        .status_from_inside(cut)
        .expect("cut-off node answers from inside");
    assert_ne!(
        inside.role, "leader",
        "a cut-off follower cannot lead: {inside:?}"
    );

    lab.set_link(cut, "up");
    let healed = Instant::now();
    wait_caught_up(cut, "marker", "during-cut", Duration::from_secs(15));
    println!(
        "node {} caught up {:?} after its link came back",
        cut + 1,
        healed.elapsed()
    );
    let term_after = status(lab.wait_leader(&all, Duration::from_secs(5))).map(|s| s.term);
    println!("term before the cut {term_before}, after healing {term_after:?}");
    clients.wait_progress(10, Duration::from_secs(10), "after healing");
    check_history(&clients.finish());
}

#[test]
fn five_nodes_partitioned_leader_is_replaced_and_steps_down() {
    let mut lab = Lab::new("part", 5);
    lab.start_all();
    let all = [0, 1, 2, 3, 4];
    let old = lab.wait_leader(&all, Duration::from_secs(10));
    let clients = Clients::start(4, 5);
    clients.wait_progress(20, Duration::from_secs(10), "before the partition");
    let old_term = status(old).expect("leader answers").term;

    lab.set_link(old, "down");
    let cut_at = Instant::now();
    let majority: Vec<usize> = all.iter().copied().filter(|&i| i != old).collect();
    let new = put_via_leader(&lab, &majority, "marker", "partitioned", Duration::from_secs(10));
    println!(
        "leader {} cut off: node {} leads the majority and took a write after {:?}",
        old + 1,
        new + 1,
        cut_at.elapsed()
    );
    let new_status = status(new).expect("new leader answers");
    assert!(
        new_status.term > old_term,
        "new leader's {new_status:?}, old term {old_term}"
    );
    clients.wait_progress(20, Duration::from_secs(10), "in the majority");

    // CheckQuorum: the isolated leader stops leading within an election timeout.
    let start = Instant::now();
    loop {
        let inside = lab
            .status_from_inside(old)
            .expect("isolated node answers from inside");
        if inside.role != "leader" {
            println!(
                "isolated old leader no longer leads, seen {:?} after the cut: {inside:?}",
                cut_at.elapsed()
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "isolated leader still leads: {inside:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    lab.set_link(old, "up");
    wait_caught_up(old, "marker", "partitioned", Duration::from_secs(15));
    let back = status(old).expect("old leader answers after healing");
    let lead = lab.wait_leader(&all, Duration::from_secs(5));
    assert_ne!(lead, old, "the old leader took over again");
    assert_eq!(back.role, "follower", "old leader after healing: {back:?}");
    assert_eq!(
        back.leader,
        Some(lead as u64 + 1),
        "old leader after healing: {back:?}"
    );
    clients.wait_progress(10, Duration::from_secs(10), "after healing");
    let history = clients.finish();
    check_history(&history);
    let applied: Vec<u64> = all.iter().filter_map(|&i| status(i).map(|s| s.applied)).collect();
    println!("applied indexes after the run: {applied:?}");
}
