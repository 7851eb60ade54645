//! Three x86_64 firmware VMs on one virtual LAN: tap devices on a bridge inside a network
//! namespace this test creates (nothing is added to the machine's own namespace). Each board
//! gets its address from `ip=` and, from a host-network container, reaches the other two
//! (then stays up 20 s so that slower boards can still reach it).
//! This is the stage the swarm will run on.

use std::io::Read;
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
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn three_boards_reach_each_other_on_a_bridge_inside_a_test_namespace() {
    let dir = repo().join("board/out/qemu/x86_64");
    // The boot tests may be building the same image: wait on their lock, build if missing.
    std::fs::create_dir_all(repo().join("board/out")).unwrap();
    let status = Command::new("flock")
        .arg(repo().join("board/out/.build-lock"))
        .args([
            "sh",
            "-c",
            r#"[ -e "$1/initramfs.cpio.gz" ] && [ -e "$1/run-qemu.sh" ] || "$2" qemu/x86_64"#,
            "sh",
        ])
        .arg(&dir)
        .arg(repo().join("board/firmware.sh"))
        .status()
        .unwrap();
    assert!(status.success(), "board/firmware.sh qemu/x86_64 failed");
    let lab = Lab {
        ns: format!("shoal-fwlan-{}", std::process::id()),
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
    let boards = [11u8, 12, 13];
    for n in boards {
        let tap = format!("tap{n}");
        inns(&["tuntap", "add", "dev", &tap, "mode", "tap"]);
        inns(&["link", "set", &tap, "master", "br0"]);
        inns(&["link", "set", &tap, "up"]);
    }
    let mut vms = Vec::new();
    for n in boards {
        let others: Vec<String> = boards
            .iter()
            .filter(|o| **o != n)
            .map(|o| format!("10.77.0.{o}"))
            .collect();
        let append = format!(
            "ip=10.77.0.{n}::10.77.0.1:24:board{n}:eth0 \
             shoal.autorun=\"run --rm --network host busybox sh -c 'for p in {}; do \
             ping -c 1 -w 60 $p >/dev/null && echo board{n}-reaches-$p; done; sleep 20'\" shoal.then=poweroff",
            others.join(" ")
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &lab.ns])
            .arg(dir.join("run-qemu.sh"))
            .env("APPEND", append)
            .env(
                "NETDEV",
                format!("tap,id=lan,ifname=tap{n},script=no,downscript=no"),
            )
            .env("MAC", format!("52:54:00:77:00:{n}"))
            .env("MEM", "160")
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
        vms.push((n, child, reader));
    }
    let start = Instant::now();
    let mut results = Vec::new();
    for (n, mut child, reader) in vms {
        let mut ok = false;
        while start.elapsed() < Duration::from_secs(300) {
            if let Some(status) = child.try_wait().unwrap() {
                ok = status.success();
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if !ok {
            let _ = child.kill();
            let _ = child.wait();
        }
        results.push((n, ok, reader.join().unwrap()));
    }
    eprintln!("three boards done in {:.1} s", start.elapsed().as_secs_f64());
    for (n, powered_off, text) in &results {
        assert!(powered_off, "board{n} did not power off\n{text}");
        for o in boards.iter().filter(|o| *o != n) {
            let needle = format!("board{n}-reaches-10.77.0.{o}");
            assert!(text.contains(&needle), "board{n} lacks {needle}\n{text}");
        }
    }
}
