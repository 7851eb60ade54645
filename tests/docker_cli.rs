//! The real `docker` CLI against shoal's socket: run (-d and attached), ps, logs, exec,
//! inspect, stop, rm, images, version. Skipped with a message only when no docker CLI is
//! installed (.ci/run installs one).

mod harness;

use harness::{eventually, stderr, stdout, Lab};

#[test]
fn docker_cli_drives_shoal() {
    if !harness::have_docker() {
        eprintln!("SKIP: no docker CLI on this machine");
        return;
    }
    let lab = Lab::new("docker-cli");
    let d = |args: &[&str]| lab.docker_ok(args);

    let version = d(&[
        "version",
        "--format",
        "{{.Server.Version}} {{.Server.APIVersion}}",
    ]);
    assert!(version.starts_with(env!("CARGO_PKG_VERSION")), "{version}");

    let images = d(&["images"]);
    assert!(images.contains("busybox"), "{images}");

    assert_eq!(
        d(&["run", "--rm", "busybox", "echo", "hi from docker"]),
        "hi from docker"
    );
    let out = lab.docker(&["run", "--rm", "busybox", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));

    let id = d(&[
        "run",
        "-d",
        "--name",
        "svc",
        "busybox",
        "sh",
        "-c",
        "echo ready; exec sleep 1000",
    ]);
    assert_eq!(id.len(), 64);
    assert!(d(&["ps"]).contains("svc"));
    assert!(eventually(5, || stdout(&lab.docker(&["logs", "svc"])) == "ready"));
    assert_eq!(d(&["exec", "svc", "sh", "-c", "echo $((6*7))"]), "42");
    let out = lab.docker(&["exec", "svc", "sh", "-c", "exit 4"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(d(&["inspect", "--format", "{{.State.Status}}", "svc"]), "running");
    d(&["stop", "-t", "1", "svc"]);
    assert_eq!(d(&["inspect", "--format", "{{.State.Status}}", "svc"]), "exited");
    d(&["rm", "svc"]);
    assert!(!d(&["ps", "-a"]).contains("svc"));

    let out = lab.docker(&["rm", "nosuch"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("No such container"), "{}", stderr(&out));
}
