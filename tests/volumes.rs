//! Volumes, binds and tmpfs through shoal's CLI and the real docker CLI against a daemon in
//! a lab: named volumes that keep data and are pre-filled from the image, read-only mounts,
//! tmpfs limits, anonymous volumes from the image's VOLUME, --volumes-from, removal rules,
//! prune, inspect, a daemon restart, and symlinks in the image that try to lead a mount out
//! of the container. Needs root, busybox-static, iproute2 and tar.

mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::{stderr, stdout, Lab};

/// `app:latest`: busybox plus /srv/app/seed.txt (directory owned by 1000, mode 750), the
/// symlinks /srv/evil -> /etc and /srv/rel -> ../../../../../../etc, and `VOLUME /srv/app`.
fn app_image(lab: &Lab) {
    let stage = lab.dir.join("stage");
    std::fs::create_dir_all(stage.join("srv/app")).unwrap();
    std::fs::write(stage.join("srv/app/seed.txt"), "seed\n").unwrap();
    std::os::unix::fs::symlink("/etc", stage.join("srv/evil")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc", stage.join("srv/rel")).unwrap();
    let tar = lab.dir.join("app.tar");
    std::fs::copy(harness::busybox_tar(), &tar).unwrap();
    let st = Command::new("tar")
        .args([
            "--numeric-owner",
            "--owner=1000",
            "--group=1000",
            "--mode=u=rwX,g=rX,o=",
        ])
        .arg("-rf")
        .arg(&tar)
        .arg("-C")
        .arg(&stage)
        .arg("./srv")
        .status()
        .unwrap();
    assert!(st.success());
    let out = lab.shoal_stdin(
        &[
            "import",
            "--change",
            r#"CMD ["sh"]"#,
            "--change",
            r#"VOLUME ["/srv/app"]"#,
            "-",
            "app:latest",
        ],
        &std::fs::read(&tar).unwrap(),
    );
    assert!(out.status.success(), "import: {}", stderr(&out));
}

fn host_dir(lab: &Lab, name: &str) -> PathBuf {
    let d = lab.dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn named_volume_keeps_data_is_prefilled_and_ro_is_enforced() {
    let lab = Lab::new("vol-named");
    app_image(&lab);
    // First use creates the volume and fills it from the image's /srv/app, owner and mode too.
    let out = lab.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/srv/app",
        "app",
        "sh",
        "-c",
        "cat /srv/app/seed.txt; stat -c '%u %a' /srv/app; echo more > /srv/app/new",
    ]);
    assert_eq!(out, "seed\n1000 750");
    // Another container, another path, sees what the first wrote.
    let out = lab.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/x",
        "busybox",
        "cat",
        "/x/new",
        "/x/seed.txt",
    ]);
    assert_eq!(out, "more\nseed");
    // The volume is not refilled once it holds data.
    lab.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/srv/app",
        "app",
        "rm",
        "/srv/app/seed.txt",
    ]);
    let out = lab.ok(&["run", "--rm", "-v", "data:/srv/app", "app", "ls", "/srv/app"]);
    assert_eq!(out, "new");
    // nocopy: an empty volume stays empty.
    let out = lab.ok(&[
        "run",
        "--rm",
        "-v",
        "bare:/srv/app:nocopy",
        "app",
        "ls",
        "-A",
        "/srv/app",
    ]);
    assert_eq!(out, "");
    let out = lab.ok(&[
        "run",
        "--rm",
        "--mount",
        "source=bare2,target=/srv/app,volume-nocopy",
        "app",
        "ls",
        "-A",
        "/srv/app",
    ]);
    assert_eq!(out, "");

    // Read-only: writes fail with EROFS, reads work.
    let out = lab.shoal(&[
        "run",
        "--rm",
        "-v",
        "data:/x:ro",
        "busybox",
        "sh",
        "-c",
        "cat /x/new; echo no > /x/f",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "more");
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    let out = lab.shoal(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=data,dst=/x,readonly",
        "busybox",
        "touch",
        "/x/f",
    ]);
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));

    // ls, inspect and the data on the host.
    let ls = lab.ok(&["volume", "ls"]);
    assert!(ls.starts_with("DRIVER    VOLUME NAME\n"), "{ls}");
    assert!(ls.contains("local     data"), "{ls}");
    let mp = lab.ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", "data"]);
    assert!(mp.ends_with("/volumes/data/_data"), "{mp}");
    assert_eq!(
        std::fs::read_to_string(Path::new(&mp).join("new")).unwrap(),
        "more\n"
    );
    let inspect: serde_json::Value = serde_json::from_str(&lab.ok(&["volume", "inspect", "data"])).unwrap();
    assert_eq!(inspect[0]["Driver"], "local");
    assert_eq!(inspect[0]["Scope"], "local");
    assert_eq!(inspect[0]["Name"], "data");

    // In use (even by a stopped container): removal refused with docker's message.
    let holder = lab.ok(&["create", "--name", "holder", "-v", "data:/x", "busybox", "true"]);
    let out = lab.shoal(&["volume", "rm", "data"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("remove data: volume is in use - [{holder}]")),
        "{}",
        stderr(&out)
    );
    let ps = lab.ok(&["ps", "-a", "--format", "{{.Names}} {{.Mounts}}"]);
    assert_eq!(ps, "holder data");
    let mounts = lab.ok(&["inspect", "--format", "{{json .Mounts}}", "holder"]);
    let mounts: serde_json::Value = serde_json::from_str(&mounts).unwrap();
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Name"], "data");
    assert_eq!(mounts[0]["Destination"], "/x");
    assert_eq!(mounts[0]["Driver"], "local");
    assert_eq!(mounts[0]["RW"], true);
    assert_eq!(mounts[0]["Source"], serde_json::json!(mp));
    lab.ok(&["rm", "holder"]);
    assert_eq!(lab.ok(&["volume", "rm", "data"]), "data");
    assert!(!Path::new(&mp).exists());
    let out = lab.shoal(&["volume", "inspect", "data"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("No such volume: data"), "{}", stderr(&out));
    let out = lab.shoal(&["volume", "create", "bad/name"]);
    assert!(
        stderr(&out).contains("includes invalid characters"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bind_mounts_both_ways_and_missing_sources() {
    let lab = Lab::new("vol-bind");
    let h = host_dir(&lab, "share");
    std::fs::write(h.join("from-host"), "hello\n").unwrap();
    let spec = format!("{}:/share", s(&h));
    let out = lab.ok(&[
        "run",
        "--rm",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "cat /share/from-host; echo back > /share/from-ctr",
    ]);
    assert_eq!(out, "hello");
    assert_eq!(std::fs::read_to_string(h.join("from-ctr")).unwrap(), "back\n");
    // A single file, read-only.
    let spec = format!("{}:/etc/greeting:ro", s(&h.join("from-host")));
    let out = lab.shoal(&[
        "run",
        "--rm",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "cat /etc/greeting; echo x >> /etc/greeting",
    ]);
    assert_eq!(stdout(&out), "hello");
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(h.join("from-host")).unwrap(), "hello\n");
    // -v creates a missing host directory; --mount type=bind refuses it.
    let missing = lab.dir.join("made/by/run");
    lab.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/m", s(&missing)),
        "busybox",
        "touch",
        "/m/x",
    ]);
    assert!(missing.join("x").exists());
    let out = lab.shoal(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,src={},dst=/m", s(&lab.dir.join("nope"))),
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("bind source path does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(!lab.dir.join("nope").exists());
    let out = lab.ok(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,src={},dst=/b,readonly", s(&h)),
        "busybox",
        "sh",
        "-c",
        "cat /b/from-host; touch /b/y 2>/dev/null || echo refused",
    ]);
    assert_eq!(out, "hello\nrefused");
    let out = lab.shoal(&["run", "--rm", "-v", "/a:/b:bogus", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("invalid mode: bogus"), "{}", stderr(&out));
}

#[test]
fn tmpfs_size_and_flags() {
    let lab = Lab::new("vol-tmpfs");
    let out = lab.shoal(&[
        "run",
        "--rm",
        "--tmpfs",
        "/t:size=1m",
        "busybox",
        "sh",
        "-c",
        "grep ' /t ' /proc/mounts; dd if=/dev/zero of=/t/big bs=1k count=2048",
    ]);
    assert_ne!(out.status.code(), Some(0));
    let line = stdout(&out);
    assert!(
        line.starts_with("tmpfs /t tmpfs rw,nosuid,nodev,noexec"),
        "{line}"
    );
    assert!(line.contains("size=1024k"), "{line}");
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
    let out = lab.shoal(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,dst=/t,tmpfs-size=524288,tmpfs-mode=1770",
        "busybox",
        "sh",
        "-c",
        "stat -c %a /t; dd if=/dev/zero of=/t/big bs=1k count=1024",
    ]);
    assert_eq!(stdout(&out), "1770");
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
    // Inspect lists --mount tmpfs but not --tmpfs, as docker.
    lab.ok(&[
        "create",
        "--name",
        "tm",
        "--tmpfs",
        "/a",
        "--mount",
        "type=tmpfs,dst=/b",
        "busybox",
        "true",
    ]);
    let m = lab.ok(&[
        "inspect",
        "--format",
        "{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}",
        "tm",
    ]);
    assert_eq!(m, "tmpfs:/b");
}

#[test]
fn anonymous_volumes_volumes_from_and_prune() {
    let lab = Lab::new("vol-anon");
    app_image(&lab);
    lab.ok(&[
        "run", "-d", "--name", "a1", "-v", "/scratch", "app", "sleep", "1000",
    ]);
    let names = lab.ok(&[
        "inspect",
        "--format",
        "{{range .Mounts}}{{.Destination}}={{.Name}} {{end}}",
        "a1",
    ]);
    let mut anon = Vec::new();
    for pair in names.split_whitespace() {
        let (dst, name) = pair.split_once('=').unwrap();
        assert!(dst == "/scratch" || dst == "/srv/app", "{names}");
        assert_eq!(name.len(), 64, "{names}");
        anon.push(name.to_string());
    }
    assert_eq!(anon.len(), 2, "{names}");
    assert_eq!(lab.ok(&["exec", "a1", "cat", "/srv/app/seed.txt"]), "seed");
    let labels = lab.ok(&["volume", "inspect", "--format", "{{json .Labels}}", &anon[0]]);
    assert_eq!(labels, r#"{"com.docker.volume.anonymous":""}"#);

    // --volumes-from shares them (read-only when asked).
    lab.ok(&["exec", "a1", "sh", "-c", "echo shared > /scratch/f"]);
    assert_eq!(
        lab.ok(&[
            "run",
            "--rm",
            "--volumes-from",
            "a1",
            "busybox",
            "cat",
            "/scratch/f"
        ]),
        "shared"
    );
    let out = lab.shoal(&[
        "run",
        "--rm",
        "--volumes-from",
        "a1:ro",
        "busybox",
        "touch",
        "/scratch/g",
    ]);
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    let out = lab.shoal(&["run", "--rm", "--volumes-from", "nosuch", "busybox", "true"]);
    assert!(
        stderr(&out).contains("No such container: nosuch"),
        "{}",
        stderr(&out)
    );

    // rm -v removes the container's anonymous volumes, not named ones.
    lab.ok(&[
        "create",
        "--name",
        "a2",
        "-v",
        "keepme:/k",
        "-v",
        "/gone",
        "busybox",
        "true",
    ]);
    let gone = lab.ok(&[
        "inspect",
        "--format",
        "{{range .Mounts}}{{if eq .Destination \"/gone\"}}{{.Name}}{{end}}{{end}}",
        "a2",
    ]);
    lab.ok(&["rm", "-v", "a2"]);
    let ls = lab.ok(&["volume", "ls", "-q"]);
    assert!(!ls.contains(&gone) && ls.contains("keepme"), "{ls}");
    lab.ok(&["rm", "-f", "-v", "a1"]);
    let ls = lab.ok(&["volume", "ls", "-q"]);
    assert!(anon.iter().all(|a| !ls.contains(a.as_str())), "{ls}");
    // --rm takes its anonymous volumes along too.
    lab.ok(&["run", "--rm", "app", "true"]);
    assert_eq!(lab.ok(&["volume", "ls", "-q"]), "keepme");

    // Prune: anonymous unused ones by default, named ones with --all; used ones never.
    lab.ok(&["create", "--name", "a3", "app", "true"]);
    lab.ok(&["rm", "a3"]);
    lab.ok(&["volume", "create", "--label", "tier=db", "used"]);
    lab.ok(&["create", "--name", "user", "-v", "used:/u", "busybox", "true"]);
    assert_eq!(
        lab.ok(&["volume", "ls", "-q", "--filter", "dangling=true"])
            .lines()
            .count(),
        2
    );
    assert_eq!(
        lab.ok(&["volume", "ls", "-q", "--filter", "label=tier=db"]),
        "used"
    );
    assert_eq!(lab.ok(&["volume", "ls", "-q", "--filter", "name=keep"]), "keepme");
    let out = lab.ok(&["volume", "prune", "-f"]);
    assert!(out.starts_with("Deleted Volumes:\n"), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    let ls = lab.ok(&["volume", "ls", "-q"]);
    assert_eq!(ls, "keepme\nused");
    let out = lab.ok(&["volume", "prune", "-a", "-f"]);
    assert!(out.contains("keepme") && !out.contains("used"), "{out}");
    assert_eq!(lab.ok(&["volume", "ls", "-q"]), "used");
}

#[test]
fn volumes_survive_a_daemon_restart() {
    let mut lab = Lab::new("vol-restart");
    lab.ok(&["volume", "create", "--label", "k=v", "kept"]);
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "keeper",
        "-v",
        "kept:/k",
        "--tmpfs",
        "/t",
        "busybox",
        "sh",
        "-c",
        "echo 1 > /k/f; exec sleep 1000",
    ]);
    assert!(harness::eventually(5, || lab
        .shoal(&["exec", "keeper", "cat", "/k/f"])
        .status
        .success()));
    lab.kill_daemon();
    lab.start_daemon();
    assert_eq!(
        lab.ok(&["volume", "inspect", "--format", "{{.Labels.k}}", "kept"]),
        "v"
    );
    assert_eq!(lab.ok(&["exec", "keeper", "cat", "/k/f"]), "1");
    // A restart mounts everything again from the container's record.
    lab.ok(&["restart", "-t", "0", "keeper"]);
    assert_eq!(
        lab.ok(&[
            "exec",
            "keeper",
            "sh",
            "-c",
            "cat /k/f; grep -c ' /t ' /proc/mounts"
        ]),
        "1\n1"
    );
    let out = lab.shoal(&["volume", "rm", "kept"]);
    assert!(stderr(&out).contains("volume is in use"), "{}", stderr(&out));
}

#[test]
fn image_symlinks_cannot_lead_a_mount_out_of_the_container() {
    let lab = Lab::new("vol-escape");
    app_image(&lab);
    let h = host_dir(&lab, "payload");
    std::fs::write(h.join("marker"), "payload\n").unwrap();
    let probe = format!("shoal-escape-probe-{}", std::process::id());
    // /srv/evil -> /etc in the image: the bind lands on the container's /etc.
    for link in ["/srv/evil", "/srv/rel"] {
        let dst = format!("{link}/{probe}");
        let out = lab.ok(&[
            "run",
            "--rm",
            "-v",
            &format!("{}:{dst}", s(&h)),
            "app",
            "sh",
            "-c",
            &format!("cat /etc/{probe}/marker; grep -c {probe} /proc/self/mountinfo"),
        ]);
        assert_eq!(out, "payload\n1", "{link}");
        assert!(
            !Path::new("/etc").join(&probe).exists(),
            "{link}: a mount point was made on the host"
        );
    }
    // A named volume whose content links out: a later mount through it stays inside too.
    lab.ok(&[
        "run", "--rm", "-v", "trap:/v", "busybox", "ln", "-s", "/etc", "/v/out",
    ]);
    let out = lab.ok(&[
        "run",
        "--rm",
        "-v",
        "trap:/v",
        "-v",
        &format!("{}:/v/out/{probe}", s(&h)),
        "busybox",
        "sh",
        "-c",
        &format!("cat /etc/{probe}/marker"),
    ]);
    assert_eq!(out, "payload");
    assert!(!Path::new("/etc").join(&probe).exists());
    let vol = lab.ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", "trap"]);
    assert!(!Path::new(&vol).join("out").join(&probe).exists());
}

#[test]
fn docker_cli_volumes() {
    if !harness::have_docker() {
        eprintln!("SKIP: no docker CLI on this machine");
        return;
    }
    let lab = Lab::new("vol-docker");
    let d = |args: &[&str]| lab.docker_ok(args);
    assert_eq!(d(&["volume", "create", "--label", "a=b", "dv"]), "dv");
    let ls = d(&["volume", "ls"]);
    assert!(ls.contains("DRIVER") && ls.contains("dv"), "{ls}");
    assert_eq!(d(&["volume", "ls", "-q", "--filter", "label=a=b"]), "dv");
    assert_eq!(
        d(&[
            "volume",
            "inspect",
            "--format",
            "{{.Driver}} {{.Labels.a}} {{.Scope}}",
            "dv"
        ]),
        "local b local"
    );
    assert_eq!(
        d(&[
            "run",
            "--rm",
            "-v",
            "dv:/data",
            "busybox",
            "sh",
            "-c",
            "echo kept > /data/f; cat /data/f"
        ]),
        "kept"
    );
    assert_eq!(
        d(&[
            "run",
            "--rm",
            "--mount",
            "source=dv,target=/d,readonly",
            "busybox",
            "cat",
            "/d/f"
        ]),
        "kept"
    );
    let out = d(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,destination=/t,tmpfs-size=1m",
        "busybox",
        "sh",
        "-c",
        "grep ' /t ' /proc/mounts",
    ]);
    assert!(out.contains("size=1024k"), "{out}");
    d(&["create", "--name", "dc", "-v", "dv:/data", "busybox", "true"]);
    let mounts = d(&[
        "inspect",
        "--format",
        "{{range .Mounts}}{{.Name}}:{{.Destination}}:{{.RW}}{{end}}",
        "dc",
    ]);
    assert_eq!(mounts, "dv:/data:true");
    let out = lab.docker(&["volume", "rm", "dv"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("volume is in use"), "{}", stderr(&out));
    d(&["rm", "dc"]);
    assert_eq!(d(&["volume", "rm", "dv"]), "dv");
    let out = lab.docker(&["volume", "inspect", "dv"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).to_lowercase().contains("no such volume"),
        "{}",
        stderr(&out)
    );
    // docker sends `-v /path` as Config.Volumes: an anonymous volume, gone with `rm -v`.
    d(&["create", "--name", "anon", "-v", "/scratch", "busybox", "true"]);
    let name = d(&["inspect", "--format", "{{range .Mounts}}{{.Name}}{{end}}", "anon"]);
    assert_eq!(name.len(), 64, "{name}");
    assert!(d(&["volume", "ls", "-q"]).contains(&name));
    d(&["rm", "-v", "anon"]);
    assert!(!d(&["volume", "ls", "-q"]).contains(&name));
    d(&["volume", "create", "gone"]);
    let out = d(&["volume", "prune", "-a", "-f"]);
    assert!(out.contains("gone"), "{out}");
}

#[test]
fn local_driver_options_tmpfs_and_bind() {
    let lab = Lab::new("vol-opts");
    lab.ok(&[
        "volume",
        "create",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=1m",
        "tv",
    ]);
    let out = lab.shoal(&[
        "run",
        "--rm",
        "-v",
        "tv:/t",
        "busybox",
        "sh",
        "-c",
        "grep -c ' /t tmpfs ' /proc/mounts; dd if=/dev/zero of=/t/big bs=1k count=2048",
    ]);
    assert_eq!(stdout(&out), "1");
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
    let h = host_dir(&lab, "device");
    let dev = format!("device={}", s(&h));
    lab.ok(&[
        "volume",
        "create",
        "--opt",
        "type=none",
        "--opt",
        "o=bind",
        "--opt",
        &dev,
        "bv",
    ]);
    lab.ok(&[
        "run",
        "--rm",
        "-v",
        "bv:/b",
        "busybox",
        "sh",
        "-c",
        "echo via-volume > /b/f",
    ]);
    assert_eq!(std::fs::read_to_string(h.join("f")).unwrap(), "via-volume\n");
    let opts = lab.ok(&[
        "volume",
        "inspect",
        "--format",
        "{{.Options.type}} {{.Options.o}}",
        "bv",
    ]);
    assert_eq!(opts, "none bind");
    let out = lab.shoal(&[
        "volume",
        "create",
        "--opt",
        "type=nfs",
        "--opt",
        "device=:/x",
        "nv",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not supported"), "{}", stderr(&out));
    // A volume made by --mount with driver options.
    let out = lab.shoal(&[
        "run",
        "--rm",
        "--mount",
        "source=mv,target=/m,volume-opt=type=tmpfs,volume-opt=device=tmpfs",
        "busybox",
        "sh",
        "-c",
        "grep -c ' /m tmpfs ' /proc/mounts",
    ]);
    assert_eq!(stdout(&out), "1", "{}", stderr(&out));
    // ps --filter volume= matches a volume's name or a mount's destination.
    lab.ok(&["create", "--name", "uses-bv", "-v", "bv:/data", "busybox", "true"]);
    lab.ok(&["create", "--name", "other", "busybox", "true"]);
    assert_eq!(
        lab.ok(&["ps", "-a", "--filter", "volume=bv", "--format", "{{.Names}}"]),
        "uses-bv"
    );
    assert_eq!(
        lab.ok(&["ps", "-a", "--filter", "volume=/data", "--format", "{{.Names}}"]),
        "uses-bv"
    );
    // rm -f of a volume that does not exist is quiet, as docker's.
    assert!(lab.shoal(&["volume", "rm", "-f", "nosuch"]).status.success());
    assert!(!lab.shoal(&["volume", "rm", "nosuch"]).status.success());
}

#[test]
fn bind_propagation_rslave_sees_later_host_mounts() {
    let lab = Lab::new("vol-prop");
    let h = host_dir(&lab, "prop");
    std::fs::create_dir_all(h.join("sub")).unwrap();
    let sh = |cmd: &str| {
        let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
        assert!(st.success(), "{cmd}");
    };
    // A shared mount inside the lab's own directory (the lab unmounts it when it ends).
    sh(&format!(
        "mount --bind '{0}' '{0}' && mount --make-shared '{0}'",
        s(&h)
    ));
    let slave = format!("type=bind,src={},dst=/p,bind-propagation=rslave", s(&h));
    lab.ok(&[
        "run", "-d", "--name", "slave", "--mount", &slave, "busybox", "sleep", "1000",
    ]);
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "private",
        "-v",
        &format!("{}:/p", s(&h)),
        "busybox",
        "sleep",
        "1000",
    ]);
    sh(&format!(
        "mount -t tmpfs tmpfs '{0}/sub' && echo late > '{0}/sub/file'",
        s(&h)
    ));
    let seen = lab.shoal(&["exec", "slave", "cat", "/p/sub/file"]);
    let hidden = lab.shoal(&["exec", "private", "ls", "-A", "/p/sub"]);
    let _ = Command::new("umount").arg(h.join("sub")).status();
    let _ = Command::new("umount").arg(&h).status();
    assert_eq!(stdout(&seen), "late", "{}", stderr(&seen));
    assert_eq!(
        stdout(&hidden),
        "",
        "rprivate must not see the host's later mount"
    );
    let p = lab.ok(&[
        "inspect",
        "--format",
        "{{range .Mounts}}{{.Propagation}}{{end}}",
        "slave",
    ]);
    assert_eq!(p, "rslave");
}

#[test]
fn read_only_binds_reach_the_mounts_below() {
    let lab = Lab::new("vol-rro");
    let h = host_dir(&lab, "tree");
    std::fs::create_dir_all(h.join("sub")).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(h.join("sub"))
        .status()
        .unwrap();
    assert!(st.success());
    let out = lab.shoal(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/r:ro", s(&h)),
        "busybox",
        "sh",
        "-c",
        "touch /r/sub/x 2>&1; touch /r/y 2>&1; true",
    ]);
    let rw = lab.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/r", s(&h)),
        "busybox",
        "sh",
        "-c",
        "touch /r/sub/z && echo ok",
    ]);
    let _ = Command::new("umount").arg(h.join("sub")).status();
    let text = stdout(&out);
    assert_eq!(text.matches("Read-only file system").count(), 2, "{text}");
    assert_eq!(rw, "ok");
}

#[test]
fn volume_subpath_stays_inside_the_volume() {
    let lab = Lab::new("vol-subpath");
    lab.ok(&[
        "run",
        "--rm",
        "-v",
        "sp:/v",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /v/site && echo page > /v/site/index.html && ln -s /etc /v/esc && ln -s ../../../.. /v/up",
    ]);
    let out = lab.ok(&[
        "run",
        "--rm",
        "--mount",
        "source=sp,target=/www,volume-subpath=site,readonly",
        "busybox",
        "ls",
        "/www",
    ]);
    assert_eq!(out, "index.html");
    // Symlinks in the volume resolve inside the volume: /etc is not there, so no mount.
    for sub in ["esc", "up/etc"] {
        let out = lab.shoal(&[
            "run",
            "--rm",
            "--mount",
            &format!("source=sp,target=/x,volume-subpath={sub}"),
            "busybox",
            "ls",
            "/x",
        ]);
        assert_ne!(out.status.code(), Some(0), "{sub}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("cannot access path"),
            "{sub}: {}",
            stderr(&out)
        );
    }
    // `up` resolves to the volume's own top.
    let out = lab.ok(&[
        "run",
        "--rm",
        "--mount",
        "source=sp,target=/x,volume-subpath=up",
        "busybox",
        "ls",
        "/x",
    ]);
    assert_eq!(out, "esc\nsite\nup");
    let out = lab.shoal(&[
        "run",
        "--rm",
        "--mount",
        "source=sp,target=/x,volume-subpath=../x",
        "busybox",
        "true",
    ]);
    assert!(
        stderr(&out).contains("relative path within the volume"),
        "{}",
        stderr(&out)
    );
}
