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

    // `shoal save` writes the same kind of archive: to a file with -o, or to a pipe.
    lab.ok(&["tag", "busybox", "second:1"]);
    let saved = lab.dir.join("two.tar");
    lab.ok(&["save", "-o", saved.to_str().unwrap(), "busybox", "second:1"]);
    let listing = Command::new("tar").arg("-tf").arg(&saved).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.lines().any(|l| l == "manifest.json"), "{listing}");
    lab.ok(&["rmi", "busybox", "second:1"]);
    let manifest = Command::new("tar")
        .arg("-xOf")
        .arg(&saved)
        .arg("manifest.json")
        .output()
        .unwrap();
    let manifest = String::from_utf8_lossy(&manifest.stdout).into_owned();
    let out = lab.ok(&["image", "load", "-i", saved.to_str().unwrap()]);
    assert!(
        out.contains("busybox:latest") && out.contains("second:1"),
        "{out}\n{manifest}"
    );
    let piped = lab.shoal(&["image", "save", "second:1"]);
    assert!(
        piped.status.success() && piped.stdout.len() > 100_000,
        "{}",
        stderr(&piped)
    );
    let missing = lab.shoal(&["save", "-o", saved.to_str().unwrap(), "nosuch:image"]);
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("nosuch"), "{}", stderr(&missing));
    // A failed save leaves the earlier file as it was, no partial file beside it.
    assert!(saved.exists() && !lab.dir.join("two.tar.part").exists());
}
