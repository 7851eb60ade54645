//! The remaining verbs and flags of the container surface through shoal's CLI: the
//! `container`/`image` groups, exec flags, stats, follow, since, start -a, load, version, info.

mod harness;

use harness::{eventually, stderr, stdout, Lab};
use std::process::Command;

#[test]
fn groups_exec_flags_stats_follow_and_info() {
    let lab = Lab::new("verbs");
    let id = lab.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "svc",
        "busybox",
        "sleep",
        "300",
    ]);
    assert!(lab.ok(&["container", "ls", "--no-trunc"]).contains(&id));
    assert_eq!(lab.ok(&["container", "ls", "-q"]), &id[..12]);
    assert!(lab.ok(&["image", "ls"]).contains("busybox"));

    // exec: environment, working dir, user; -d returns at once; -i feeds stdin.
    let out = lab.ok(&[
        "exec",
        "-e",
        "X=42",
        "-w",
        "/tmp",
        "-u",
        "app",
        "svc",
        "sh",
        "-c",
        "echo $X $(pwd) $(id -u)",
    ]);
    assert_eq!(out, "42 /tmp 1000");
    lab.ok(&["exec", "-d", "svc", "sh", "-c", "sleep 1; touch /tmp/detached"]);
    assert!(eventually(5, || lab
        .shoal(&["exec", "svc", "test", "-f", "/tmp/detached"])
        .status
        .success()));
    let out = lab.shoal_stdin(&["exec", "-i", "svc", "cat"], b"through stdin\n");
    assert_eq!(stdout(&out), "through stdin");
    let out = lab.shoal(&["exec", "svc", "/no/such"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));

    let stats = lab.ok(&["stats", "--no-stream", "svc"]);
    assert!(
        stats.starts_with("CONTAINER ID") && stats.contains("svc"),
        "{stats}"
    );

    // logs -f follows until the container exits; --since filters by time.
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "echo one; sleep 1; echo two",
    ]);
    let follow = lab.ok(&["logs", "-f", "talker"]);
    assert_eq!(follow, "one\ntwo");
    assert_eq!(lab.ok(&["logs", "--since", "2030-01-01T00:00:00Z", "talker"]), "");
    // start -a attaches to a stopped container and returns its output and code.
    let out = lab.shoal(&["start", "-a", "talker"]);
    assert_eq!(stdout(&out), "one\ntwo");
    assert_eq!(out.status.code(), Some(0));

    let version = lab.ok(&["version"]);
    assert!(
        version.contains("Server: shoal") && version.contains("1.45"),
        "{version}"
    );
    let info = lab.ok(&["info"]);
    assert!(
        info.contains("Containers: 2") && info.contains("Running: 1"),
        "{info}"
    );
}

#[test]
fn load_docker_save_archives() {
    let lab = Lab::new("load");
    // A docker-save archive of busybox, written by the daemon itself, loads back under a new name.
    let tar = lab.dir.join("saved.tar");
    let st = Command::new("curl")
        .args([
            "-sf",
            "--unix-socket",
            lab.sock.to_str().unwrap(),
            "-o",
            tar.to_str().unwrap(),
        ])
        .arg("http://shoal/images/get?names=busybox")
        .status()
        .expect("curl is needed");
    assert!(st.success());
    lab.ok(&["rmi", "busybox"]);
    let out = lab.ok(&["load", "-i", tar.to_str().unwrap()]);
    assert!(out.contains("Loaded image: busybox:latest"), "{out}");
    assert_eq!(lab.ok(&["run", "--rm", "busybox", "echo", "loaded"]), "loaded");
    let out = lab.shoal_stdin(&["load"], b"not a tar at all");
    assert_ne!(out.status.code(), Some(0));
    assert!(!stderr(&out).is_empty());
}
