//! The container runtime for real: namespaces, overlayfs, cgroups v1, the shim (root only).

mod lab;

use shoal::runtime::{
    self, logs, ContainerSpec, ContainerState, LogSpec, NetworkMode, RootfsSpec, StartError, Stream,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn setup() {
    runtime::set_shim_binary(PathBuf::from(env!("CARGO_BIN_EXE_shoal")));
}

fn spec(s: &lab::Scratch, upper: &Path, work: &Path, args: &[&str]) -> ContainerSpec {
    ContainerSpec {
        id: format!(
            "c{}",
            upper.parent().unwrap().file_name().unwrap().to_string_lossy()
        ),
        hostname: "box".into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        rootfs: RootfsSpec {
            lower: vec![lab::busybox_rootfs().to_path_buf()],
            upper: upper.into(),
            work: work.into(),
        },
        network: NetworkMode::None,
        cgroup_parent: s.cgroup_parent.clone(),
        stop_signal: 15,
        ..ContainerSpec::default()
    }
}

/// Run to completion: (exit code, stdout, stderr) from the log.
fn run_spec(dir: &Path, spec: &ContainerSpec) -> (i32, String, String) {
    runtime::start(dir, spec).unwrap_or_else(|e| panic!("start {:?}: {e:?}", spec.args));
    let exit = runtime::wait(dir).unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    for e in logs::read(dir, None, None).unwrap() {
        let text = String::from_utf8_lossy(&e.line).into_owned();
        match e.stream {
            Stream::Stdout => out.push_str(&text),
            Stream::Stderr => err.push_str(&text),
        }
    }
    runtime::cleanup(dir).unwrap();
    (exit.code, out, err)
}

fn run(s: &lab::Scratch, args: &[&str]) -> (i32, String, String) {
    let (dir, upper, work) = s.container();
    run_spec(&dir, &spec(s, &upper, &work, args))
}

#[test]
fn echo_is_logged_and_exit_recorded() {
    setup();
    let s = lab::Scratch::new("echo");
    let (dir, upper, work) = s.container();
    let spec = spec(&s, &upper, &work, &["sh", "-c", "echo hello; echo oops >&2"]);
    let (code, out, err) = run_spec(&dir, &spec);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "hello\n", "oops\n"));
    match runtime::state(&dir) {
        ContainerState::Exited(e) => assert!(
            e.code == 0 && !e.oom_killed && e.finished_at.ends_with('Z'),
            "{e:?}"
        ),
        other => panic!("{other:?}"),
    }
    // Nothing was mounted on the host.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&s.root.display().to_string()),
        "overlay leaked to the host"
    );
}

fn start_err(s: &lab::Scratch, args: &[&str]) -> (StartError, runtime::ExitInfo) {
    let (dir, upper, work) = s.container();
    let err = runtime::start(&dir, &spec(s, &upper, &work, args)).expect_err("start should fail");
    let exit = runtime::wait(&dir).unwrap();
    (err, exit)
}

#[test]
fn exit_codes_follow_docker() {
    setup();
    let s = lab::Scratch::new("codes");
    assert_eq!(run(&s, &["sh", "-c", "exit 3"]).0, 3);
    let (err, exit) = start_err(&s, &["no-such-program"]);
    assert_eq!((err.code(), exit.code), (127, 127), "{err:?}");
    assert!(err.message().contains("executable file not found"), "{err:?}");
    assert!(exit.error.contains("no-such-program"));
    let (err, _) = start_err(&s, &["/etc/not-executable"]);
    assert_eq!(err.code(), 126, "{err:?}");
    let (err, _) = start_err(&s, &["/no/such/file"]);
    assert_eq!(err.code(), 127, "{err:?}");

    let (dir, upper, work) = s.container();
    let pid = runtime::start(&dir, &spec(&s, &upper, &work, &["sleep", "100"])).unwrap();
    match runtime::state(&dir) {
        ContainerState::Running { pid: p, .. } => assert_eq!(p, pid),
        other => panic!("{other:?}"),
    }
    runtime::kill(&dir, 9).unwrap();
    let exit = runtime::wait(&dir).unwrap();
    assert_eq!(exit.code, 137);
    assert!(
        runtime::kill(&dir, 9).is_err(),
        "killing an exited container must fail"
    );
    runtime::cleanup(&dir).unwrap();
}

#[test]
fn tty_output_and_window_size() {
    setup();
    let s = lab::Scratch::new("tty");
    let (dir, upper, work) = s.container();
    let mut sp = spec(
        &s,
        &upper,
        &work,
        &["sh", "-c", "tty; read x; stty size; echo got $x"],
    );
    sp.tty = true;
    sp.open_stdin = true;
    let (_, mut attach) = runtime::start_attached(&dir, &sp).unwrap();
    attach.resize(30, 100).unwrap();
    attach.write_stdin(b"hi\n").unwrap();
    let mut out = Vec::new();
    while let Some((stream, data)) = attach.read_output() {
        assert_eq!(stream, Stream::Stdout);
        out.extend(data);
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("30 100"), "{out}");
    assert!(out.contains("got hi"), "{out}");
    assert_eq!(runtime::wait(&dir).unwrap().code, 0);
}

#[test]
fn stdin_is_fed_and_closed() {
    setup();
    let s = lab::Scratch::new("stdin");
    let (dir, upper, work) = s.container();
    let mut sp = spec(&s, &upper, &work, &["sh", "-c", "cat; echo done >&2"]);
    sp.open_stdin = true;
    let (_, mut attach) = runtime::start_attached(&dir, &sp).unwrap();
    attach.write_stdin(b"line one\nline two\n").unwrap();
    attach.close_stdin().unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some((stream, data)) = attach.read_output() {
        match stream {
            Stream::Stdout => out.extend(data),
            Stream::Stderr => err.extend(data),
        }
    }
    assert_eq!(String::from_utf8_lossy(&out), "line one\nline two\n");
    assert_eq!(String::from_utf8_lossy(&err), "done\n");
    assert_eq!(runtime::wait(&dir).unwrap().code, 0);
    // Without open_stdin the program reads /dev/null.
    assert_eq!(run(&s, &["sh", "-c", "cat; echo eof"]).1, "eof\n");
}

#[test]
fn hostname_user_and_workdir() {
    setup();
    let s = lab::Scratch::new("ident");
    assert_eq!(run(&s, &["hostname"]).1, "box\n");
    let (dir, upper, work) = s.container();
    let mut sp = spec(&s, &upper, &work, &["sh", "-c", "id; pwd; echo $HOME"]);
    sp.user = "www".into();
    sp.cwd = "/srv/app".into();
    let (code, out, _) = run_spec(&dir, &sp);
    assert_eq!(code, 0);
    assert!(out.contains("uid=33(www) gid=33(www)"), "{out}");
    assert!(out.contains("10(wheel)"), "{out}");
    assert!(out.contains("/srv/app\n/home/www\n"), "{out}");
    let (dir, upper, work) = s.container();
    let mut sp = spec(&s, &upper, &work, &["id"]);
    sp.user = "1000:10".into();
    assert!(run_spec(&dir, &sp).1.starts_with("uid=1000 gid=10(wheel)"));
    let (dir, upper, work) = s.container();
    let mut sp = spec(&s, &upper, &work, &["id"]);
    sp.user = "ghost".into();
    let err = runtime::start(&dir, &sp).unwrap_err();
    assert!(err.message().contains("unable to find user ghost"), "{err:?}");
}

#[test]
fn cannot_see_host_processes_or_mounts() {
    setup();
    let s = lab::Scratch::new("isolation");
    let (code, out, _) = run(&s, &["sh", "-c", "ls -d /proc/[0-9]*; cat /proc/1/cmdline; echo"]);
    assert_eq!(code, 0);
    let pids: Vec<&str> = out.lines().filter(|l| l.starts_with("/proc/")).collect();
    assert!(pids.len() <= 3, "container sees other processes: {pids:?}");
    assert!(out.contains("/proc/1\n") && out.contains("sh\u{0}-c"), "{out}");
    let (_, mounts, _) = run(&s, &["cat", "/proc/self/mountinfo"]);
    let points: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(4)).collect();
    for p in &points {
        let allowed = [
            "/",
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/dev/console",
        ];
        let masked = p.starts_with("/proc/") || p.starts_with("/sys/");
        assert!(
            allowed.contains(p) || masked,
            "unexpected mount {p} in {points:?}"
        );
    }
    assert!(!points.contains(&"/work") && points.len() < 25, "{points:?}");
    let (_, ifaces, _) = run(&s, &["ls", "/sys/class/net"]);
    assert_eq!(ifaces.trim(), "lo", "network none must have only lo");
}

#[test]
fn proc_sys_and_masked_paths_are_protected() {
    setup();
    let s = lab::Scratch::new("procsys");
    let (code, _, err) = run(&s, &["sh", "-c", "echo 1 > /proc/sys/vm/drop_caches"]);
    assert_ne!(code, 0, "wrote /proc/sys");
    assert!(err.contains("Read-only file system"), "{err}");
    assert_ne!(run(&s, &["sh", "-c", "echo b > /proc/sysrq-trigger"]).0, 0);
    assert_ne!(run(&s, &["touch", "/sys/kernel/x"]).0, 0);
    let (_, out, err) = run(
        &s,
        &["sh", "-c", "wc -c < /proc/timer_list; ls /sys/firmware | wc -l"],
    );
    assert_eq!(out, "0\n0\n", "{err}");
}

/// A device node the host itself can read (the disk may be closed to this sandbox too, which
/// would make a disk-only check pass for the wrong reason): /dev/vcs, char 7:0.
fn host_readable_device() -> (&'static str, u32, u32) {
    let mut f = std::fs::File::open("/dev/vcs").expect("/dev/vcs must be readable on the host");
    let mut b = [0u8; 1];
    assert_eq!(
        std::io::Read::read(&mut f, &mut b).unwrap(),
        1,
        "host cannot read /dev/vcs"
    );
    ("/dev/vcs", 7, 0)
}

#[test]
fn device_nodes_outside_the_allow_list_cannot_be_read() {
    setup();
    let s = lab::Scratch::new("vcs");
    let (_, major, minor) = host_readable_device();
    let script =
        format!("mknod /tmp/vcs c {major} {minor} && head -c 1 /dev/zero | wc -c && head -c 1 /tmp/vcs");
    let (code, out, err) = run(&s, &["sh", "-c", &script]);
    assert_ne!(code, 0, "read a host device: {out}");
    assert_eq!(out, "1\n");
    assert!(err.contains("Operation not permitted"), "{err}");
}

#[test]
fn host_disk_device_cannot_be_read() {
    setup();
    let s = lab::Scratch::new("mknod");
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata("/").unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let script =
        format!("mknod /tmp/disk b {major} {minor} && ls -l /tmp/disk && head -c 16 /tmp/disk > /tmp/out");
    let (code, out, err) = run(&s, &["sh", "-c", &script]);
    assert_ne!(code, 0, "read the host disk: {out}");
    assert!(
        out.contains("/tmp/disk"),
        "mknod itself is allowed, as in Docker: {out} {err}"
    );
    assert!(err.contains("Operation not permitted"), "{err}");
}

#[test]
fn capabilities_are_dockers_default_set() {
    setup();
    let s = lab::Scratch::new("caps");
    let (_, out, _) = run(
        &s,
        &[
            "grep",
            "-E",
            "^(CapEff|CapPrm|CapBnd|CapInh|NoNewPrivs|Seccomp):",
            "/proc/self/status",
        ],
    );
    let field = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
    };
    assert_eq!(field("CapEff:").as_deref(), Some("00000000a80425fb"), "{out}");
    assert_eq!(field("CapPrm:").as_deref(), Some("00000000a80425fb"));
    assert_eq!(field("CapBnd:").as_deref(), Some("00000000a80425fb"));
    assert_eq!(field("CapInh:").as_deref(), Some("0000000000000000"));
    assert_eq!(field("NoNewPrivs:").as_deref(), Some("1"));
    assert_eq!(field("Seccomp:").as_deref(), Some("2"));
    let (dir, upper, work) = s.container();
    let mut sp = spec(
        &s,
        &upper,
        &work,
        &["grep", "-E", "^Cap(Eff|Bnd):", "/proc/self/status"],
    );
    sp.user = "www".into();
    sp.cap_add = vec!["NET_ADMIN".into()];
    sp.cap_drop = vec!["CAP_CHOWN".into()];
    let out = run_spec(&dir, &sp).1;
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("CapBnd:\t00000000a80435fa"), "{out}");
    // seccomp: keyctl and unshare are refused.
    let (code, _, err) = run(&s, &["unshare", "-n", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "{err}");
}

#[test]
fn memory_hog_is_oom_killed() {
    setup();
    let s = lab::Scratch::new("oom");
    let (dir, upper, work) = s.container();
    let mut sp = spec(
        &s,
        &upper,
        &work,
        &["sh", "-c", "a=aaaaaaaaaaaaaaaa; while true; do a=$a$a; done"],
    );
    sp.memory = Some(32 << 20);
    sp.memory_swap = Some(32 << 20);
    runtime::start(&dir, &sp).unwrap();
    let exit = runtime::wait(&dir).unwrap();
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!(exit.code, 137);
    runtime::cleanup(&dir).unwrap();
}

#[test]
fn fork_bomb_stops_at_pids_limit() {
    setup();
    let s = lab::Scratch::new("pids");
    let (dir, upper, work) = s.container();
    let mut sp = spec(
        &s,
        &upper,
        &work,
        &[
            "sh",
            "-c",
            "sh -c 'for i in $(seq 1 60); do sleep 60 & done'; echo spawned; exec sleep 60",
        ],
    );
    sp.pids_limit = Some(20);
    runtime::start(&dir, &sp).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !logs::read(&dir, None, None)
        .unwrap()
        .iter()
        .any(|e| e.line == b"spawned\n")
    {
        assert!(Instant::now() < deadline, "the loop never finished");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = runtime::stats(&dir).unwrap();
    assert_eq!(stats.pids_limit, 20);
    assert!(stats.pids <= 20 && stats.pids >= 10, "{stats:?}");
    let rows = runtime::top(&dir).unwrap();
    assert!(
        rows.len() <= 20 && rows.iter().any(|r| r.cmd.starts_with("sleep")),
        "{rows:?}"
    );
    let errors: String = logs::read(&dir, None, None)
        .unwrap()
        .iter()
        .filter(|e| e.stream == Stream::Stderr)
        .map(|e| String::from_utf8_lossy(&e.line).into_owned())
        .collect();
    assert!(
        errors.contains("can't fork") || errors.contains("Resource temporarily unavailable"),
        "{errors}"
    );
    runtime::kill(&dir, 9).unwrap();
    assert_eq!(runtime::wait(&dir).unwrap().code, 137);
    runtime::cleanup(&dir).unwrap();
}

/// Not a test on its own: the stand-in daemon for `container_survives_sigkill_of_its_starter`,
/// run as a child process of the test binary. Without its variable it does nothing.
#[test]
fn zz_stand_in_daemon() {
    let Ok(dir) = std::env::var("SHOAL_TEST_STAND_IN_DIR") else {
        return;
    };
    setup();
    let spec: ContainerSpec =
        serde_json::from_str(&std::env::var("SHOAL_TEST_STAND_IN_SPEC").unwrap()).unwrap();
    let pid = runtime::start(Path::new(&dir), &spec).unwrap();
    println!("started {pid}");
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn container_survives_sigkill_of_its_starter() {
    setup();
    let s = lab::Scratch::new("survive");
    let (dir, upper, work) = s.container();
    let sp = spec(
        &s,
        &upper,
        &work,
        &[
            "sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
        ],
    );
    let mut daemon = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "zz_stand_in_daemon", "--nocapture", "--test-threads=1"])
        .env("SHOAL_TEST_STAND_IN_DIR", &dir)
        .env("SHOAL_TEST_STAND_IN_SPEC", serde_json::to_string(&sp).unwrap())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(daemon.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
            "stand-in died"
        );
        if line.contains("started ") {
            break;
        }
    }
    let pid: i32 = line.trim().rsplit("started ").next().unwrap().parse().unwrap();
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = logs::read(&dir, None, None).unwrap().len();
    assert!(
        matches!(runtime::state(&dir), ContainerState::Running { .. }),
        "{:?}",
        runtime::state(&dir)
    );
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        logs::read(&dir, None, None).unwrap().len() > before,
        "logs stopped after the starter died"
    );
    // A new "daemon" (this process) attaches, signals and collects the exit code.
    let mut attach = runtime::attach(&dir).unwrap();
    let (_, chunk) = attach.read_output().unwrap();
    assert!(String::from_utf8_lossy(&chunk).contains("tick"));
    runtime::kill(&dir, 9).unwrap();
    while attach.read_output().is_some() {}
    assert_eq!(runtime::wait(&dir).unwrap().code, 137);
    runtime::cleanup(&dir).unwrap();
}

#[test]
fn exec_joins_the_running_container() {
    setup();
    let s = lab::Scratch::new("exec");
    let (dir, upper, work) = s.container();
    runtime::start(&dir, &spec(&s, &upper, &work, &["sleep", "100"])).unwrap();
    let mut p = runtime::exec(
        &dir,
        &runtime::ExecSpec {
            args: vec!["sh".into(), "-c".into(), "echo $((1+2)); hostname; cat /proc/1/cmdline; echo; grep CapEff /proc/self/status; id -u; exit 4".into()],
            env: vec!["PATH=/bin".into()],
            user: "www".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(p.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert_eq!(p.wait().unwrap(), 4);
    assert_eq!(out, "3\nbox\nsleep\u{0}100\u{0}\nCapEff:\t0000000000000000\n33\n");
    let err = runtime::exec(
        &dir,
        &runtime::ExecSpec {
            args: vec!["nope".into()],
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    assert_eq!(err.code(), 127);
    // With a tty and stdin.
    let mut p = runtime::exec(
        &dir,
        &runtime::ExecSpec {
            args: vec!["sh".into()],
            tty: true,
            open_stdin: true,
            ..Default::default()
        },
    )
    .unwrap();
    let mut pty = p.pty.take().unwrap();
    std::io::Write::write_all(&mut pty, b"tty; exit 5\n").unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = std::io::Read::read(&mut pty, &mut buf) {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    assert_eq!(p.wait().unwrap(), 5);
    assert!(
        String::from_utf8_lossy(&seen).contains("/dev/pts/"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    runtime::kill(&dir, 9).unwrap();
    runtime::wait(&dir).unwrap();
    runtime::cleanup(&dir).unwrap();
}

#[test]
fn logs_rotate_and_follow() {
    setup();
    let s = lab::Scratch::new("rotate");
    let (dir, upper, work) = s.container();
    let mut sp = spec(
        &s,
        &upper,
        &work,
        &[
            "sh",
            "-c",
            "for i in $(seq 1 200); do echo line $i; done; sleep 0.3; echo last",
        ],
    );
    sp.log = LogSpec {
        max_size: 2000,
        max_file: 2,
    };
    runtime::start(&dir, &sp).unwrap();
    let followed: Vec<_> = logs::follow(&dir, None, None)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(followed.last().unwrap().line, b"last\n");
    assert_eq!(runtime::wait(&dir).unwrap().code, 0);
    assert!(dir.join("container.log.1").exists() && !dir.join("container.log.2").exists());
    assert!(std::fs::metadata(dir.join("container.log")).unwrap().len() <= 2000);
    let kept = logs::read(&dir, None, None).unwrap();
    assert!(kept.len() < 201 && kept[kept.len() - 2].line == b"line 200\n");
    assert_eq!(logs::read(&dir, None, Some(2)).unwrap().len(), 2);
    runtime::cleanup(&dir).unwrap();
}

#[test]
fn init_reaps_and_forwards_signals() {
    setup();
    let s = lab::Scratch::new("init");
    let (dir, upper, work) = s.container();
    let mut sp = spec(
        &s,
        &upper,
        &work,
        &[
            "sh",
            "-c",
            "echo $$; trap 'echo term; exit 7' TERM; while true; do sleep 0.1; done",
        ],
    );
    sp.init = true;
    runtime::start(&dir, &sp).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while logs::read(&dir, None, None).unwrap().is_empty() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    runtime::kill(&dir, libc::SIGTERM).unwrap();
    assert_eq!(runtime::wait(&dir).unwrap().code, 7);
    let out: Vec<_> = logs::read(&dir, None, None)
        .unwrap()
        .into_iter()
        .map(|e| e.line)
        .collect();
    assert_eq!(
        out,
        vec![b"2\n".to_vec(), b"term\n".to_vec()],
        "the program is not PID 1 under --init"
    );
    runtime::cleanup(&dir).unwrap();
}

#[test]
fn readonly_rootfs_and_bind_files() {
    setup();
    let s = lab::Scratch::new("readonly");
    let (dir, upper, work) = s.container();
    let hosts = s.root.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost box\n").unwrap();
    let mut sp = spec(
        &s,
        &upper,
        &work,
        &[
            "sh",
            "-c",
            "cat /etc/hosts; touch /x || echo rofs; echo hi > /dev/shm/ok && echo shm",
        ],
    );
    sp.readonly_rootfs = true;
    sp.files = vec![runtime::BindFile {
        host: hosts,
        container: "/etc/hosts".into(),
        readonly: true,
    }];
    let (code, out, _) = run_spec(&dir, &sp);
    assert_eq!(code, 0);
    assert_eq!(out, "127.0.0.1 localhost box\nrofs\nshm\n");
}

#[test]
fn empty_lower_list_is_an_error() {
    setup();
    let s = lab::Scratch::new("nolower");
    let (dir, upper, work) = s.container();
    let mut sp = spec(&s, &upper, &work, &["true"]);
    sp.rootfs.lower.clear();
    assert_eq!(runtime::start(&dir, &sp).unwrap_err().code(), 125);
}

#[test]
fn privileged_and_host_network() {
    setup();
    let s = lab::Scratch::new("privileged");
    let (dir, upper, work) = s.container();
    let mut sp = spec(&s, &upper, &work, &["sh", "-c", "grep CapEff /proc/self/status; grep Seccomp: /proc/self/status; ls /sys/class/net | wc -l; touch /sys/kernel/x 2>&1 | grep -c Read-only; true"]);
    sp.privileged = true;
    sp.network = NetworkMode::Host;
    let (code, out, _) = run_spec(&dir, &sp);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(code, 0, "{out}");
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = status
        .lines()
        .find(|l| l.starts_with("CapBnd:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap();
    assert_eq!(lines[0], format!("CapEff:\t{bounding}"), "{out}");
    assert_eq!(lines[1], "Seccomp:\t0", "{out}");
    let host_ifaces = std::fs::read_dir("/sys/class/net").unwrap().count();
    assert_eq!(
        lines[2].parse::<usize>().unwrap(),
        host_ifaces,
        "host network expected"
    );
    assert_eq!(
        lines[3], "0",
        "/sys should be writable-mounted when privileged: {out}"
    );
}

#[test]
fn a_running_container_cannot_be_started_twice_and_top_lists_it() {
    setup();
    let s = lab::Scratch::new("twice");
    let (dir, upper, work) = s.container();
    let sp = spec(&s, &upper, &work, &["sleep", "100"]);
    let pid = runtime::start(&dir, &sp).unwrap();
    let err = runtime::start(&dir, &sp).unwrap_err();
    assert!(err.message().contains("already running"), "{err:?}");
    let mut helper = runtime::exec(
        &dir,
        &runtime::ExecSpec {
            args: vec!["sleep".into(), "5".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let rows = runtime::top(&dir).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1].cmd, "sleep 5");
    helper.kill(9).unwrap();
    assert_eq!(helper.wait().unwrap(), 137);
    let rows = runtime::top(&dir).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].pid, rows[0].uid.as_str(), rows[0].cmd.as_str()),
        (pid, "root", "sleep 100")
    );
    let stats = runtime::stats(&dir).unwrap();
    assert!(stats.memory_usage > 0 && stats.pids == 1, "{stats:?}");
    runtime::kill(&dir, 9).unwrap();
    assert_eq!(runtime::wait(&dir).unwrap().code, 137);
    runtime::cleanup(&dir).unwrap();
}

/// cgroup v2 has no devices.allow: the policy is an eBPF program. The hybrid host has an
/// (empty) cgroup2 hierarchy, where device programs work all the same: prove it for real
/// with a device this process can read outside the cgroup.
#[test]
fn v2_device_program_blocks_the_host_disk() {
    let unified = Path::new("/sys/fs/cgroup/unified");
    assert!(
        unified.join("cgroup.procs").exists(),
        "this test expects cgroup2 at {}",
        unified.display()
    );
    let dir = unified.join(format!("shoal-test-{}-devices", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    runtime::cgroup::restrict_devices_v2(&dir).unwrap();
    let (device, _, _) = host_readable_device();
    let script = format!(
        "echo $$ > {}/cgroup.procs && head -c 3 /dev/zero | wc -c && head -c 1 {device} | wc -c",
        dir.display()
    );
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let _ = std::fs::remove_dir(&dir);
    assert_eq!(stdout, "3\n0\n", "{stderr}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
}
