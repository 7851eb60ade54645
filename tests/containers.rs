//! Container verbs through shoal's own CLI against a daemon in a lab (its own network
//! namespace, state dir and cgroup parent). Needs root, busybox-static and iproute2.

mod harness;

use harness::{eventually, stderr, stdout, Lab};

#[test]
fn run_attached_prints_output_and_exit_code() {
    let lab = Lab::new("run-attached");
    let out = lab.shoal(&["run", "--rm", "busybox", "echo", "hello from shoal"]);
    assert_eq!(stdout(&out), "hello from shoal", "stderr: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));

    let out = lab.shoal(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "out");
    assert_eq!(stderr(&out), "err");

    // --rm removed them all.
    assert_eq!(lab.ok(&["ps", "-aq"]), "");
}

#[test]
fn run_detached_then_the_lifecycle_verbs() {
    let lab = Lab::new("lifecycle");
    let id = lab.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "echo started; exec sleep 1000",
    ]);
    assert_eq!(id.len(), 64, "run -d prints the full ID: {id}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));

    let ps = lab.ok(&["ps"]);
    assert!(ps.lines().next().unwrap().starts_with("CONTAINER ID"), "{ps}");
    assert!(
        ps.contains("web") && ps.contains(&id[..12]) && ps.contains("Up "),
        "{ps}"
    );

    assert!(eventually(5, || lab.ok(&["logs", "web"]) == "started"));
    assert_eq!(
        lab.ok(&["inspect", "--format", "{{.State.Status}}", "web"]),
        "running"
    );
    // A 3-character unique prefix is enough.
    assert_eq!(lab.ok(&["inspect", "--format", "{{.Name}}", &id[..3]]), "/web");

    assert_eq!(lab.ok(&["exec", "web", "cat", "/etc/hostname"]), &id[..12]);
    let top = lab.ok(&["top", "web"]);
    assert!(top.contains("sleep 1000"), "{top}");

    let out = lab.shoal(&["rm", "web"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("container is running"), "{}", stderr(&out));

    lab.ok(&["stop", "-t", "1", "web"]);
    assert_eq!(
        lab.ok(&["inspect", "--format", "{{.State.Status}}", "web"]),
        "exited"
    );
    assert_eq!(lab.ok(&["ps", "-q"]), "");
    assert!(lab.ok(&["ps", "-a"]).contains("Exited (143)") || lab.ok(&["ps", "-a"]).contains("Exited (137)"));

    lab.ok(&["start", "web"]);
    assert_eq!(
        lab.ok(&["inspect", "--format", "{{.State.Status}}", "web"]),
        "running"
    );
    lab.ok(&["restart", "-t", "1", "web"]);
    assert_eq!(
        lab.ok(&["inspect", "--format", "{{.State.Running}}", "web"]),
        "true"
    );
    lab.ok(&["kill", "web"]);
    assert_eq!(lab.ok(&["wait", "web"]), "137");
    lab.ok(&["rename", "web", "web2"]);
    lab.ok(&["rm", "web2"]);
    let out = lab.shoal(&["inspect", "web2"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("No such"), "{}", stderr(&out));
}

#[test]
fn errors_are_clear_and_exit_codes_are_dockers() {
    let lab = Lab::new("errors");
    let out = lab.shoal(&["run", "--rm", "nosuchimage:1.0", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("nosuchimage"), "{}", stderr(&out));

    let out = lab.shoal(&["run", "--rm", "busybox", "/no/such/binary"]);
    assert_eq!(out.status.code(), Some(127), "stderr: {}", stderr(&out));

    let out = lab.shoal(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126), "stderr: {}", stderr(&out));

    let out = lab.shoal(&["stop", "nosuchcontainer"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("No such container: nosuchcontainer"),
        "{}",
        stderr(&out)
    );

    lab.ok(&["create", "--name", "dup", "busybox", "true"]);
    let out = lab.shoal(&["create", "--name", "dup", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("is already in use"), "{}", stderr(&out));

    let out = lab.shoal(&["run", "--no-such-flag", "busybox"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("no-such-flag"), "{}", stderr(&out));

    let out = lab.shoal(&["run", "--restart", "sometimes", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn image_config_is_honoured_and_flags_apply() {
    let lab = Lab::new("config");
    let out = lab.ok(&[
        "run",
        "--rm",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "-u",
        "app",
        "-h",
        "box",
        "busybox",
        "sh",
        "-c",
        "echo $A $(pwd) $(id -un) $(hostname)",
    ]);
    assert_eq!(out, "1 /tmp app box");
    // The image's CMD (sh) runs when no command is given; stdin from -i.
    let out = lab.shoal_stdin(&["run", "--rm", "-i", "busybox"], b"echo from stdin\n");
    assert_eq!(stdout(&out), "from stdin");
    let out = lab.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "echo",
        "busybox",
        "via",
        "entrypoint",
    ]);
    assert_eq!(out, "via entrypoint");
    let out = lab.ok(&[
        "run",
        "--rm",
        "--read-only",
        "busybox",
        "sh",
        "-c",
        "touch /x 2>/dev/null && echo writable || echo readonly",
    ]);
    assert_eq!(out, "readonly");
    let out = lab.ok(&[
        "run", "--rm", "--label", "k=v", "--name", "lbl", "-d", "busybox", "sleep", "100",
    ]);
    assert_eq!(
        lab.ok(&["inspect", "--format", "{{index .Config.Labels \"k\"}}", "lbl"]),
        "v"
    );
    assert_eq!(
        lab.ok(&["ps", "--filter", "label=k=v", "--format", "{{.Names}}"]),
        "lbl"
    );
    lab.ok(&["rm", "-f", &out]);
}

#[test]
fn restart_policy_and_daemon_restart_keep_containers() {
    let mut lab = Lab::new("restart");
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo try; exit 1",
    ]);
    assert!(eventually(10, || lab.ok(&[
        "inspect",
        "--format",
        "{{.RestartCount}}",
        "flaky"
    ]) == "2"
        && lab.ok(&["inspect", "--format", "{{.State.Status}}", "flaky"])
            == "exited"));
    assert_eq!(lab.ok(&["logs", "flaky"]).lines().count(), 3);

    lab.ok(&[
        "run",
        "-d",
        "--name",
        "keeper",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
    ]);
    let pid = lab.ok(&["inspect", "--format", "{{.State.Pid}}", "keeper"]);
    lab.kill_daemon();
    std::thread::sleep(std::time::Duration::from_millis(500));
    lab.start_daemon();
    assert_eq!(
        lab.ok(&["inspect", "--format", "{{.State.Status}}", "keeper"]),
        "running"
    );
    assert_eq!(lab.ok(&["inspect", "--format", "{{.State.Pid}}", "keeper"]), pid);
    // Logs written while the daemon was down were captured by the shim.
    assert!(lab.ok(&["logs", "keeper"]).lines().count() >= 3);
    // The exit is still collected by the new daemon.
    lab.ok(&["kill", "keeper"]);
    assert_eq!(lab.ok(&["wait", "keeper"]), "137");

    // An always-restart container comes back when the daemon boots.
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "appliance",
        "--restart",
        "always",
        "busybox",
        "sleep",
        "1000",
    ]);
    let pid = lab.ok(&["inspect", "--format", "{{.State.Pid}}", "appliance"]);
    lab.kill_daemon();
    // The workload dies while the daemon is away (killed by its own pid, nothing else).
    let _ = std::process::Command::new("kill").args(["-9", &pid]).status();
    std::thread::sleep(std::time::Duration::from_millis(300));
    lab.start_daemon();
    assert!(eventually(10, || lab.ok(&[
        "inspect",
        "--format",
        "{{.State.Status}}",
        "appliance"
    ]) == "running"));
}

#[test]
fn logs_options_and_rotation() {
    let lab = Lab::new("logs");
    lab.ok(&[
        "run",
        "--name",
        "lg",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line $i; done",
    ]);
    assert_eq!(lab.ok(&["logs", "--tail", "2", "lg"]), "line 4\nline 5");
    let ts = lab.ok(&["logs", "-t", "lg"]);
    assert!(
        ts.lines().all(|l| l.contains('T') && l.contains("Z line")),
        "{ts}"
    );
    lab.ok(&[
        "run",
        "--name",
        "big",
        "--log-opt",
        "max-size=10k",
        "--log-opt",
        "max-file=2",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done",
    ]);
    let logs = lab.ok(&["logs", "big"]);
    assert!(
        logs.ends_with("line 1999"),
        "{}",
        &logs[logs.len().saturating_sub(100)..]
    );
    assert!(
        logs.len() < 30_000,
        "rotation bounds the logs: {} bytes",
        logs.len()
    );
    let dir = lab.root.join("containers");
    let total: u64 = walk_size(&dir, "container.log");
    assert!(total <= 2 * 11 * 1024, "log files hold {total} bytes");
}

fn walk_size(dir: &std::path::Path, prefix: &str) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            total += walk_size(&p, prefix);
        } else if e.file_name().to_string_lossy().starts_with(prefix) {
            total += e.metadata().unwrap().len();
        }
    }
    total
}

#[test]
fn images_verbs() {
    let lab = Lab::new("images");
    let images = lab.ok(&["images"]);
    assert!(images.starts_with("REPOSITORY"), "{images}");
    assert!(
        images.contains("busybox") && images.contains("latest"),
        "{images}"
    );
    lab.ok(&["tag", "busybox", "mybox:v1"]);
    assert!(lab.ok(&["images"]).contains("mybox"));
    let out = lab.ok(&["rmi", "mybox:v1"]);
    assert!(out.contains("Untagged: mybox:v1"), "{out}");
    assert_eq!(
        lab.ok(&["image", "inspect", "--format", "{{json .Config.Cmd}}", "busybox"]),
        r#"["sh"]"#
    );
    let out = lab.shoal(&["rmi", "nosuch:image"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("No such image"), "{}", stderr(&out));
}

#[test]
fn limits_and_isolation() {
    let lab = Lab::new("isolation");
    // Host processes are invisible: PID 1 is the container's own command.
    let out = lab.ok(&["run", "--rm", "busybox", "sh", "-c", "ps -o pid,comm | wc -l"]);
    assert!(
        out.parse::<u32>().unwrap() <= 4,
        "container sees {out} process lines"
    );
    let out = lab.shoal(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo 1 > /proc/sys/kernel/panic",
    ]);
    assert_ne!(out.status.code(), Some(0));
    // Docker's default capability set.
    let out = lab.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "grep CapEff /proc/self/status",
    ]);
    assert!(out.ends_with("00000000a80425fb"), "{out}");
    let out = lab.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "busybox",
        "sh",
        "-c",
        "grep CapEff /proc/self/status",
    ]);
    assert!(out.ends_with("0000000000000000"), "{out}");
    // A memory hog is OOM-killed and shown as such.
    let out = lab.shoal(&[
        "run",
        "--name",
        "hog",
        "-m",
        "16m",
        "--memory-swap",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_eq!(
        lab.ok(&["inspect", "--format", "{{.State.OOMKilled}}", "hog"]),
        "true"
    );
    // A fork bomb stops at the pids limit (busybox sh gives up when it cannot fork).
    let out = lab.shoal(&[
        "run",
        "--rm",
        "--pids-limit",
        "20",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); done; echo survived",
    ]);
    assert!(
        !stdout(&out).contains("survived"),
        "40 processes started under a pids limit of 20"
    );
    assert!(stderr(&out).contains("can't fork"), "{}", stderr(&out));
}

#[test]
fn rm_container_that_ends_while_the_daemon_is_down_is_removed_at_start() {
    let mut lab = Lab::new("autorm");
    lab.ok(&["run", "-d", "--rm", "--name", "brief", "busybox", "sleep", "1"]);
    lab.kill_daemon();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    lab.start_daemon();
    assert!(
        eventually(5, || lab.ok(&["ps", "-aq"]).is_empty()),
        "{}",
        lab.ok(&["ps", "-a"])
    );
}
