//! Interactive use through a real pseudo-terminal (util-linux `script` provides it):
//! `run -it`, Ctrl-P Ctrl-Q detaching without stopping, `attach`, `exit` ending the shell,
//! with shoal's CLI and with docker's.

mod harness;

use harness::{eventually, Lab};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Run `cmd` on a pty, typing `keys` (each after a pause); returns the exit code.
fn on_tty(cmd: &str, keys: &[&[u8]]) -> Option<i32> {
    let mut child = Command::new("script")
        .args(["-qfec", cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux) is needed");
    let mut stdin = child.stdin.take().unwrap();
    for k in keys {
        std::thread::sleep(Duration::from_millis(1200));
        stdin.write_all(k).unwrap();
        stdin.flush().unwrap();
    }
    for _ in 0..100 {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    None
}

fn detach_and_reattach(lab: &Lab, client: &str, label: &str) {
    let name = format!("tty-{label}");
    let run = format!("{client} -H {} run -it --name {name} busybox sh", lab.host());
    assert_eq!(
        on_tty(&run, &[b"echo hi\n", b"\x10\x11"]),
        Some(0),
        "{client}: detach did not end the client"
    );
    assert_eq!(
        lab.ok(&["inspect", "--format", "{{.State.Status}}", &name]),
        "running",
        "{client}: detaching stopped it"
    );
    let attach = format!("{client} -H {} attach {name}", lab.host());
    assert_eq!(
        on_tty(&attach, &[b"exit 4\n"]),
        Some(4),
        "{client}: attach + exit"
    );
    assert!(eventually(5, || lab.ok(&[
        "inspect",
        "--format",
        "{{.State.Status}}",
        &name
    ]) == "exited"));
    assert_eq!(
        lab.ok(&["inspect", "--format", "{{.State.ExitCode}}", &name]),
        "4"
    );
}

#[test]
fn run_it_detach_attach_exit() {
    let lab = Lab::new("tty");
    detach_and_reattach(&lab, harness::BIN, "shoal");
    if harness::have_docker() {
        detach_and_reattach(&lab, "docker", "docker");
    } else {
        eprintln!("SKIP: no docker CLI for the docker half");
    }
}
