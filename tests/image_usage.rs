//! `images` filters, `image prune`, `system df` and `system prune` against a daemon, checked
//! with shoal's CLI and, where installed, docker's CLI on the same daemon.

mod harness;

use harness::{stderr, Lab};

/// A one-file layer tar.
fn file_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, content).unwrap();
    b.into_inner().unwrap()
}

/// Import a one-file image (tagged `reference` if given, with `changes`); returns its ID.
fn import(lab: &Lab, reference: Option<&str>, content: &str, changes: &[&str]) -> String {
    let mut args = vec!["import"];
    for c in changes {
        args.push("--change");
        args.push(c);
    }
    args.push("-");
    args.extend(reference);
    let out = lab.shoal_stdin(&args, &file_tar("data", content.as_bytes()));
    assert!(out.status.success(), "import: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn short(id: &str) -> &str {
    &id["sha256:".len().."sha256:".len() + 12]
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// Image creation times are whole seconds in the list: space the imports out.
fn next_second() {
    std::thread::sleep(std::time::Duration::from_millis(1100));
}

#[test]
fn images_filters_like_docker() {
    let lab = Lab::new("img-filters");
    next_second();
    import(&lab, Some("a:1"), "a", &["LABEL tier=web"]);
    next_second();
    import(&lab, Some("b:1"), "b", &["LABEL tier=db"]);
    next_second();
    let dangling = import(&lab, None, "untagged", &[]);
    let names = |filter: &str| {
        sorted_lines(&lab.ok(&[
            "images",
            "--filter",
            filter,
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ]))
    };
    assert_eq!(
        lab.ok(&["images", "-q", "--filter", "dangling=true"]),
        short(&dangling)
    );
    assert_eq!(names("dangling=false"), ["a:1", "b:1", "busybox:latest"]);
    assert_eq!(names("label=tier=web"), ["a:1"]);
    assert_eq!(names("label=tier"), ["a:1", "b:1"]);
    assert_eq!(names("before=b:1"), ["a:1", "busybox:latest"]);
    assert_eq!(names("since=a:1"), ["<none>:<none>", "b:1"]);
    assert_eq!(names("reference=b*"), ["b:1", "busybox:latest"]);
    assert_eq!(names("reference=b:*"), ["b:1"]);
    // Positional argument = reference filter.
    assert_eq!(lab.ok(&["images", "--format", "{{.Repository}}", "a"]), "a");
    for (bad, why) in [
        ("colour=red", "invalid filter 'colour'"),
        ("dangling=maybe", "invalid filter 'dangling=maybe'"),
        ("before=nothing:here", "nothing:here"),
    ] {
        let out = lab.shoal(&["images", "--filter", bad]);
        assert!(!out.status.success(), "{bad}");
        assert!(stderr(&out).contains(why), "{bad}: {}", stderr(&out));
    }

    if !harness::have_docker() {
        eprintln!("SKIP (part): docker CLI not installed");
        return;
    }
    assert_eq!(
        lab.docker_ok(&["images", "-q", "--filter", "dangling=true"]),
        short(&dangling)
    );
    assert_eq!(
        lab.docker_ok(&[
            "images",
            "--filter",
            "label=tier=db",
            "--format",
            "{{.Repository}}:{{.Tag}}"
        ]),
        "b:1"
    );
    assert_eq!(
        sorted_lines(&lab.docker_ok(&[
            "images",
            "--filter",
            "since=a:1",
            "--format",
            "{{.Repository}}:{{.Tag}}"
        ])),
        ["<none>:<none>", "b:1"]
    );
}

#[test]
fn image_prune_system_df_and_system_prune() {
    let lab = Lab::new("img-prune");
    let kept = import(&lab, Some("a:1"), "a", &["LABEL keep=yes"]);
    let loose1 = import(&lab, None, "one", &[]);
    let loose2 = import(&lab, None, "two", &[]);
    // An exited container on busybox, with 100000 bytes in its writable layer and 5000 in a
    // named volume.
    lab.ok(&[
        "run",
        "--name",
        "writer",
        "-v",
        "v1:/data",
        "busybox",
        "sh",
        "-c",
        "head -c 100000 /dev/zero > /big; head -c 5000 /dev/zero > /data/f",
    ]);
    let df = lab.ok(&[
        "system",
        "df",
        "--format",
        "{{.Type}}|{{.TotalCount}}|{{.Active}}|{{.Size}}|{{.Reclaimable}}",
    ]);
    let lines: Vec<&str> = df.lines().collect();
    assert_eq!(lines.len(), 4, "{df}");
    assert!(lines[0].starts_with("Images|4|1|"), "{df}");
    assert_eq!(lines[1], "Containers|1|0|100kB|100kB (100%)");
    assert_eq!(lines[2], "Local Volumes|1|1|5kB|0B (0%)");
    assert_eq!(lines[3], "Build Cache|0|0|0B|0B");
    let table = lab.ok(&["system", "df"]);
    assert_eq!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    );
    let verbose = lab.ok(&["system", "df", "-v"]);
    for section in [
        "Images space usage:",
        "Containers space usage:",
        "Local Volumes space usage:",
        "Build cache usage: 0B",
    ] {
        assert!(verbose.contains(section), "{verbose}");
    }
    assert!(
        verbose
            .lines()
            .any(|l| l.starts_with("v1 ") && l.split_whitespace().collect::<Vec<_>>() == ["v1", "1", "5kB"]),
        "{verbose}"
    );

    if harness::have_docker() {
        // docker's CLI computes the same table from the same GET /system/df.
        let theirs = lab.docker_ok(&[
            "system",
            "df",
            "--format",
            "{{.Type}}|{{.TotalCount}}|{{.Active}}|{{.Size}}|{{.Reclaimable}}",
        ]);
        assert_eq!(theirs, df);
        assert!(lab
            .docker_ok(&["system", "df", "-v"])
            .contains("Local Volumes space usage"));
    } else {
        eprintln!("SKIP (part): docker CLI not installed");
    }

    // Default prune: the untagged images only.
    let out = lab.ok(&["image", "prune", "-f"]);
    assert!(out.starts_with("Deleted Images:"), "{out}");
    for id in [&loose1, &loose2] {
        assert!(out.contains(&format!("deleted: {id}")), "{out}");
    }
    assert!(out.contains("Total reclaimed space: "), "{out}");
    let left = sorted_lines(&lab.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    assert_eq!(left, ["a:1", "busybox:latest"]);
    // -a with a label filter: a:1 carries the label, busybox is used by a container.
    let out = lab.ok(&["image", "prune", "-a", "-f", "--filter", "label!=keep=yes"]);
    assert_eq!(out, "Total reclaimed space: 0B");
    let out = lab.ok(&["image", "prune", "-a", "-f"]);
    assert!(
        out.contains("untagged: a:1") && out.contains(&format!("deleted: {kept}")),
        "{out}"
    );
    assert_eq!(lab.ok(&["images", "--format", "{{.Repository}}"]), "busybox");
    let out = lab.shoal(&["image", "prune", "-f", "--filter", "until=soon"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("until=soon"), "{}", stderr(&out));

    if harness::have_docker() {
        let loose3 = import(&lab, None, "three", &[]);
        let out = lab.docker_ok(&["image", "prune", "-f"]);
        assert!(out.contains(&format!("deleted: {loose3}")), "{out}");
    }

    // system prune: the stopped container goes, then (with -a) the image it held.
    let out = lab.ok(&["system", "prune", "-f"]);
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert_eq!(lab.ok(&["ps", "-aq"]), "");
    assert_eq!(lab.ok(&["images", "--format", "{{.Repository}}"]), "busybox");
    let out = lab.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: busybox:latest"), "{out}");
    assert_eq!(lab.ok(&["images", "-q"]), "");
    // The named volume outlives prunes without --volumes -a.
    assert_eq!(lab.ok(&["volume", "ls", "-q"]), "v1");

    if harness::have_docker() {
        let busybox = std::fs::read(harness::busybox_tar()).unwrap();
        let out = lab.shoal_stdin(&["import", "-", "busybox:latest"], &busybox);
        assert!(out.status.success(), "{}", stderr(&out));
        lab.ok(&[
            "run", "--pull", "never", "--name", "again", "-v", "/anon", "busybox", "true",
        ]);
        let out = lab.docker_ok(&["system", "prune", "-a", "-f", "--volumes"]);
        assert!(
            out.contains("Deleted Containers:") && out.contains("untagged: busybox:latest"),
            "{out}"
        );
        assert_eq!(lab.ok(&["ps", "-aq"]), "");
        assert_eq!(lab.ok(&["images", "-q"]), "");
        assert_eq!(lab.ok(&["volume", "ls", "-q"]), "v1");
    }
}

#[test]
fn images_output_matches_docker_cli() {
    if !harness::have_docker() {
        eprintln!("SKIP: docker CLI not installed");
        return;
    }
    let lab = Lab::new("img-vs-docker");
    lab.ok(&["tag", "busybox", "registry.lan:5000/team/bb:2"]);
    lab.ok(&["tag", "busybox", "bb:1"]);
    import(&lab, None, "loose", &[]);
    import(&lab, Some("lbl:1"), "labelled", &["LABEL a=b"]);
    for args in [
        &["images", "-q"][..],
        &["images", "-q", "--no-trunc"],
        &[
            "images",
            "-a",
            "--format",
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}",
        ],
        &[
            "images",
            "--digests",
            "--format",
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}",
        ],
        &[
            "images",
            "--format",
            "{{.Repository}}|{{.Tag}}|{{.Digest}}|{{.Containers}}|{{.SharedSize}}",
        ],
        &["images", "--format", "json"],
        &[
            "images",
            "--filter",
            "dangling=true",
            "--format",
            "{{.ID}} {{.Repository}}",
        ],
        &["images", "bb"],
    ] {
        let ours = lab.ok(args);
        let theirs = lab.docker_ok(args);
        // docker orders the rows of one image's repositories as a Go map iterates (at
        // random): compare the header, then the rows as a set.
        let rows = |s: &str| {
            let mut lines: Vec<String> = s.lines().map(str::to_string).collect();
            let header = if args.iter().any(|a| a.starts_with("table")) || !args.contains(&"--format") {
                lines.remove(0)
            } else {
                String::new()
            };
            lines.sort();
            (header, lines)
        };
        assert_eq!(rows(&ours), rows(&theirs), "{args:?}");
    }
}
