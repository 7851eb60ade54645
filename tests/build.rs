//! Dockerfile builds, commit and export against a daemon in a lab: RUN steps really run in
//! containers, layers go through the image store, the results are run again. Needs root,
//! busybox-static and iproute2 (and the docker CLI for the docker test, else it says SKIP).

mod harness;

use harness::{have_docker, run_with_input, stderr, stdout, Lab};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A context directory with the given files (path, content, mode).
fn context(lab: &Lab, name: &str, files: &[(&str, &str, u32)]) -> PathBuf {
    let dir = lab.dir.join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    for (path, content, mode) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
    }
    dir
}

fn build(lab: &Lab, dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    let d = dir.to_str().unwrap();
    args.push(d);
    lab.shoal(&args)
}

fn build_ok(lab: &Lab, dir: &Path, extra: &[&str]) -> String {
    let out = build(lab, dir, extra);
    assert!(
        out.status.success(),
        "build failed:\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
        stdout(&out),
        stderr(&out),
        harness::tail(&lab.daemon_log(), 30)
    );
    stdout(&out)
}

fn image_id(lab: &Lab, name: &str) -> String {
    lab.ok(&["image", "inspect", "--format", "{{.Id}}", name])
}

#[test]
fn multi_stage_build_into_scratch_runs_the_static_program() {
    let lab = Lab::new("build-multistage");
    let dir = context(
        &lab,
        "ctx",
        &[(
            "Dockerfile",
            "# a two-stage build\n\
             FROM busybox AS tools\n\
             RUN mkdir -p /out && cp /bin/busybox /out/hello && echo built > /out/stamp\n\
             \n\
             FROM scratch\n\
             COPY --from=tools /out/hello /bin/busybox\n\
             COPY --from=tools /out/st*mp /\n\
             ENTRYPOINT [\"/bin/busybox\"]\n\
             CMD [\"echo\", \"hello from scratch\"]\n",
            0o644,
        )],
    );
    let out = build_ok(&lab, &dir, &["-t", "hello:1"]);
    assert!(out.contains("Step 1/7 : FROM busybox AS tools"), "{out}");
    assert!(out.contains(" ---> Running in "), "{out}");
    assert!(out.contains("Removing intermediate container"), "{out}");
    assert!(out.contains("Successfully tagged hello:1"), "{out}");
    let run = lab.ok(&["run", "--rm", "hello:1"]);
    assert_eq!(run, "hello from scratch");
    assert_eq!(lab.ok(&["run", "--rm", "hello:1", "cat", "/stamp"]), "built");
    // Only the two COPY layers: nothing of the busybox stage leaked into the scratch image.
    let layers = lab.ok(&[
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        "hello:1",
    ]);
    assert_eq!(layers, "2");
    assert_eq!(lab.ok(&["run", "--rm", "hello:1", "ls", "/bin"]), "busybox");
    let listed = lab.ok(&["run", "--rm", "hello:1", "ls", "/"]);
    for absent in ["out", "usr", "home", "root", "tmp"] {
        assert!(!listed.split_whitespace().any(|n| n == absent), "{listed}");
    }
    // Intermediate containers are gone.
    assert_eq!(lab.ok(&["ps", "-aq"]), "");
}

#[test]
fn cache_hits_on_rebuild_and_misses_after_a_context_change() {
    let lab = Lab::new("build-cache");
    let dockerfile = "FROM busybox\n\
                      ARG GREETING=hello\n\
                      ENV WHO=${GREETING:-nobody}-world\n\
                      WORKDIR /app\n\
                      RUN echo \"$WHO\" > /app/who\n\
                      COPY data.txt ./\n\
                      RUN cat data.txt >> /app/who\n\
                      LABEL stage=test\n\
                      EXPOSE 8080\n\
                      CMD [\"cat\", \"/app/who\"]\n";
    let dir = context(
        &lab,
        "ctx",
        &[("Dockerfile", dockerfile, 0o644), ("data.txt", "one\n", 0o644)],
    );
    let first = build_ok(&lab, &dir, &["-t", "cached", "--build-arg", "GREETING=hey"]);
    assert!(!first.contains("Using cache"), "{first}");
    let id1 = image_id(&lab, "cached");
    assert_eq!(lab.ok(&["run", "--rm", "cached"]), "hey-world\none");

    let second = build_ok(&lab, &dir, &["-t", "cached", "--build-arg", "GREETING=hey"]);
    assert_eq!(second.matches("Using cache").count(), 9, "{second}");
    assert!(!second.contains("Running in"), "{second}");
    assert_eq!(image_id(&lab, "cached"), id1);

    // A changed build argument re-runs from the ENV step on.
    let other = build_ok(&lab, &dir, &["-t", "cached2", "--build-arg", "GREETING=yo"]);
    assert_eq!(other.matches("Using cache").count(), 1, "{other}");
    assert_eq!(lab.ok(&["run", "--rm", "cached2"]), "yo-world\none");

    // A changed context file misses from its COPY on; the steps before still hit.
    fs::write(dir.join("data.txt"), "two\n").unwrap();
    let third = build_ok(&lab, &dir, &["-t", "cached", "--build-arg", "GREETING=hey"]);
    assert_eq!(third.matches("Using cache").count(), 4, "{third}");
    assert_ne!(image_id(&lab, "cached"), id1);
    assert_eq!(lab.ok(&["run", "--rm", "cached"]), "hey-world\ntwo");

    // --no-cache runs everything again.
    let fresh = build_ok(
        &lab,
        &dir,
        &["--no-cache", "-t", "cached", "--build-arg", "GREETING=hey"],
    );
    assert!(!fresh.contains("Using cache"), "{fresh}");

    // The image config follows the Dockerfile; the history marks metadata steps as empty.
    let cfg = lab.ok(&["image", "inspect", "--format", "{{json .Config}}", "cached"]);
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(cfg["WorkingDir"], "/app");
    assert_eq!(cfg["Labels"]["stage"], "test");
    assert!(cfg["ExposedPorts"].get("8080/tcp").is_some(), "{cfg}");
    assert!(
        cfg["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "WHO=hey-world"),
        "{cfg}"
    );
    let history = Command::new("curl")
        .args(["-sf", "--unix-socket"])
        .arg(&lab.sock)
        .arg("http://shoal/images/cached/history")
        .output()
        .unwrap();
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let rows = history.as_array().unwrap();
    assert_eq!(rows.len(), 9 + 1, "{history}");
    let workdir = rows
        .iter()
        .find(|r| r["CreatedBy"].as_str().unwrap().contains("#(nop) WORKDIR /app"))
        .unwrap();
    assert_eq!(workdir["Size"], 0);
    let copy = rows
        .iter()
        .find(|r| r["CreatedBy"].as_str().unwrap().contains("COPY data.txt"))
        .unwrap();
    assert!(copy["Size"].as_i64().unwrap() > 0, "{copy}");
}

#[test]
fn seed_dockerfiles_build_and_run_on_local_base_images() {
    let lab = Lab::new("build-seed");
    // Local base images under the seed notes' names.
    lab.ok(&["tag", "busybox", "nginx:latest"]);
    lab.ok(&["tag", "busybox", "alpine"]);

    let web = context(
        &lab,
        "web",
        &[
            (
                "Dockerfile",
                "# this same shows how we can extend/change an existing official image from Docker Hub\n\n\
                 FROM nginx:latest\n\
                 # highly recommend you always pin versions for anything beyond dev/learn\n\n\
                 WORKDIR /usr/share/nginx/html\n\
                 # change working directory to root of nginx webhost\n\
                 # using WORKDIR is prefered to using 'RUN cd /some/path'\n\n\
                 COPY index.html index.html\n\n\
                 # I don't have to specify EXPOSE or CMD because they're in my FROM\n",
                0o644,
            ),
            ("index.html", "<h1>hello shoal</h1>\n", 0o644),
        ],
    );
    build_ok(
        &lab,
        &web,
        &["-t", "nginx-with-html", "--label", "org.example.built-by=shoal"],
    );
    let labels = lab.ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        "nginx-with-html",
    ]);
    assert_eq!(labels, r#"{"org.example.built-by":"shoal"}"#);
    assert_eq!(
        lab.ok(&[
            "run",
            "--rm",
            "nginx-with-html",
            "sh",
            "-c",
            "pwd; cat index.html"
        ]),
        "/usr/share/nginx/html\n<h1>hello shoal</h1>"
    );

    let ping = context(
        &lab,
        "ping",
        &[
            (
                "Dockerfile",
                "FROM alpine\n\nCOPY ./docker-entrypoint.sh /\n\nENTRYPOINT [\"/docker-entrypoint.sh\"]\n\nCMD [\"ping\", \"8.8.8.8\"]\n",
                0o644,
            ),
            (
                "docker-entrypoint.sh",
                "#!/bin/sh\nset -e\n\ncat /etc/hosts\necho \"ok i'm done, now let's ping'\"\n\nexec \"$@\"\n",
                0o755,
            ),
        ],
    );
    build_ok(&lab, &ping, &["-t", "pinger"]);
    let cmd = lab.ok(&["image", "inspect", "--format", "{{json .Config.Cmd}}", "pinger"]);
    assert_eq!(cmd, r#"["ping","8.8.8.8"]"#);
    // Run with another command (nothing leaves the lab): the entrypoint script execs it.
    let out = lab.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "pinger",
        "echo",
        "exec worked",
    ]);
    assert!(out.contains("localhost"), "{out}");
    assert!(out.contains("ok i'm done, now let's ping'"), "{out}");
    assert!(out.ends_with("exec worked"), "{out}");
}

#[test]
fn errors_point_at_the_dockerfile_line() {
    let lab = Lab::new("build-errors");
    let cases: &[(&str, &str)] = &[
        (
            "FROM busybox\n\n# comment\nFOO bar\n",
            "Dockerfile:4: unknown instruction: FOO",
        ),
        ("FROM busybox\nRUN echo before\nRUN exit 3\n", "Dockerfile:3: "),
        ("FROM busybox\nCOPY missing.txt /\n", "Dockerfile:2: "),
        ("FROM nosuchimage\n", "Dockerfile:1: "),
        ("FROM busybox\nENV A=${B:?must be set}\n", "Dockerfile:2: "),
        (
            "FROM busybox\n\nRUN --mount=type=cache,target=/x true\n",
            "Dockerfile:3: RUN --mount is not supported",
        ),
        (
            "FROM busybox\nCOPY --frm=x a b\n",
            "Dockerfile:2: unknown flag: --frm",
        ),
    ];
    for (n, (dockerfile, want)) in cases.iter().enumerate() {
        let dir = context(&lab, &format!("ctx{n}"), &[("Dockerfile", dockerfile, 0o644)]);
        let out = build(&lab, &dir, &[]);
        assert_eq!(out.status.code(), Some(1), "{dockerfile}: {}", stdout(&out));
        assert!(
            stderr(&out).contains(want),
            "{dockerfile}: stderr {:?}",
            stderr(&out)
        );
    }
    let dir = context(
        &lab,
        "run",
        &[("Dockerfile", "FROM busybox\nRUN exit 3\n", 0o644)],
    );
    let err = stderr(&build(&lab, &dir, &[]));
    assert!(err.contains("returned a non-zero code: 3"), "{err}");
    // The failed RUN's container is removed too.
    assert_eq!(lab.ok(&["ps", "-aq"]), "");
}

#[test]
fn dockerignore_is_honoured() {
    let lab = Lab::new("build-ignore");
    let dir = context(
        &lab,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY . /ctx/\nCMD [\"find\", \"/ctx\", \"-type\", \"f\"]\n",
                0o644,
            ),
            (
                ".dockerignore",
                "# not these\nsecret.txt\n**/*.log\n!keep.log\nbuild\n",
                0o644,
            ),
            ("secret.txt", "s3cret", 0o600),
            ("app.txt", "app", 0o644),
            ("keep.log", "kept", 0o644),
            ("sub/debug.log", "x", 0o644),
            ("sub/code.txt", "c", 0o644),
            ("build/out.bin", "b", 0o644),
        ],
    );
    build_ok(&lab, &dir, &["-t", "ignored"]);
    let out = lab.ok(&["run", "--rm", "ignored"]);
    let mut files: Vec<&str> = out.lines().collect();
    files.sort();
    assert_eq!(
        files,
        [
            "/ctx/.dockerignore",
            "/ctx/Dockerfile",
            "/ctx/app.txt",
            "/ctx/keep.log",
            "/ctx/sub/code.txt"
        ]
    );
    // The daemon applies .dockerignore itself too, for clients that send everything.
    let raw = lab.dir.join("raw-context.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&raw)
        .arg("-C")
        .arg(&dir)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let posted = Command::new("curl")
        .args(["-sf", "--unix-socket"])
        .arg(&lab.sock)
        .args(["-H", "Content-Type: application/x-tar", "--data-binary"])
        .arg(format!("@{}", raw.display()))
        .arg("http://shoal/v1.45/build?t=raw-ignored&t=raw-second")
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&posted.stdout);
    assert!(
        posted.status.success() && body.contains(r#""aux":{"ID":"sha256:"#),
        "{body}"
    );
    assert!(body.contains("Successfully tagged raw-second:latest"), "{body}");
    let out = lab.ok(&["run", "--rm", "raw-ignored"]);
    let mut raw_files: Vec<&str> = out.lines().collect();
    raw_files.sort();
    assert_eq!(raw_files, files);

    // -f: a Dockerfile from outside the context, or from stdin.
    let outside = lab.dir.join("other.Dockerfile");
    fs::write(
        &outside,
        "FROM busybox\nCOPY app.txt /\nCMD [\"cat\", \"/app.txt\"]\n",
    )
    .unwrap();
    build_ok(&lab, &dir, &["-f", outside.to_str().unwrap(), "-t", "outside"]);
    assert_eq!(lab.ok(&["run", "--rm", "outside"]), "app");
    let out = lab.shoal_stdin(
        &["build", "-f", "-", "-t", "stdin", dir.to_str().unwrap()],
        b"FROM busybox\nCMD [\"echo\", \"from stdin\"]\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lab.ok(&["run", "--rm", "stdin"]), "from stdin");
    // `build -`: a Dockerfile alone, or a whole context tar, on stdin.
    let out = lab.shoal_stdin(
        &["build", "-t", "bare", "-"],
        b"FROM busybox\nCMD [\"echo\", \"bare\"]\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lab.ok(&["run", "--rm", "bare"]), "bare");
    let out = lab.shoal_stdin(&["build", "-t", "from-tar", "-"], &fs::read(&raw).unwrap());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        lab.ok(&["run", "--rm", "from-tar"]),
        lab.ok(&["run", "--rm", "raw-ignored"])
    );
}

#[test]
fn run_changes_become_layers_with_whiteouts() {
    let lab = Lab::new("build-whiteouts");
    let dir = context(
        &lab,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\n\
                 RUN rm /etc/image-name && mkdir -p /data/sub && echo x > /data/sub/f && ln -s /data/sub/f /link\n\
                 RUN rm -r /data/sub && mkdir /data/sub && echo y > /data/sub/g\n\
                 RUN <<EOF\n\
                 echo from heredoc > /heredoc\n\
                 EOF\n\
                 SHELL [\"/bin/sh\", \"-ec\"]\n\
                 RUN test ! -e /data/sub/f\n",
                0o644,
            ),
        ],
    );
    build_ok(&lab, &dir, &["-t", "wh"]);
    let out = lab.ok(&[
        "run",
        "--rm",
        "wh",
        "sh",
        "-c",
        "test -e /etc/image-name && echo present; ls /data/sub; cat /heredoc; readlink /link",
    ]);
    assert_eq!(out, "g\nfrom heredoc\n/data/sub/f");

    // RUN containers join the default bridge, or no network with --network none.
    let nets = context(
        &lab,
        "nets",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort > /nets\n",
            0o644,
        )],
    );
    build_ok(&lab, &nets, &["--network", "none", "-t", "isolated"]);
    assert_eq!(lab.ok(&["run", "--rm", "isolated", "cat", "/nets"]), "lo");
    let per_step = context(
        &lab,
        "per-step",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --network=none tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > /nets\n",
            0o644,
        )],
    );
    build_ok(&lab, &per_step, &["-t", "per-step"]);
    assert_eq!(lab.ok(&["run", "--rm", "per-step", "cat", "/nets"]), "lo");
    build_ok(&lab, &nets, &["--no-cache", "-t", "bridged"]);
    assert_eq!(lab.ok(&["run", "--rm", "bridged", "cat", "/nets"]), "eth0\nlo");
}

#[test]
fn docker_cli_legacy_builder_works() {
    if !have_docker() {
        eprintln!("SKIP: no docker CLI");
        return;
    }
    let lab = Lab::new("build-docker");
    let dir = context(
        &lab,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nARG V=0\nCOPY msg.txt /msg.txt\nRUN echo \"v$V\" >> /msg.txt\nCMD [\"cat\", \"/msg.txt\"]\n",
                0o644,
            ),
            ("msg.txt", "from docker build\n", 0o644),
        ],
    );
    let out = run_with_input(
        Command::new("docker")
            .arg("-H")
            .arg(lab.host())
            .args([
                "build",
                "-t",
                "viadocker:1",
                "-t",
                "viadocker:2",
                "--build-arg",
                "V=7",
            ])
            .arg(&dir)
            .env("DOCKER_BUILDKIT", "0")
            .env("DOCKER_CONFIG", lab.dir.join("docker-config")),
        b"",
    );
    assert!(
        out.status.success(),
        "docker build: {}\n{}\n{}",
        stdout(&out),
        stderr(&out),
        harness::tail(&lab.daemon_log(), 20)
    );
    let text = stdout(&out);
    assert!(text.contains("Step 4/5 : RUN echo \"v$V\" >> /msg.txt"), "{text}");
    assert!(text.contains("Successfully built"), "{text}");
    assert!(text.contains("Successfully tagged viadocker:2"), "{text}");
    assert_eq!(lab.ok(&["run", "--rm", "viadocker:1"]), "from docker build\nv7");
    assert_eq!(image_id(&lab, "viadocker:1"), image_id(&lab, "viadocker:2"));
    // -q prints only the image ID (a fully cached rebuild here).
    let quiet = run_with_input(
        Command::new("docker")
            .arg("-H")
            .arg(lab.host())
            .args(["build", "-q", "--build-arg", "V=7"])
            .arg(&dir)
            .env("DOCKER_BUILDKIT", "0")
            .env("DOCKER_CONFIG", lab.dir.join("docker-config")),
        b"",
    );
    assert_eq!(
        stdout(&quiet),
        image_id(&lab, "viadocker:1"),
        "{}",
        stderr(&quiet)
    );
    // The legacy builder's error stream reaches docker's exit status.
    let bad = context(&lab, "bad", &[("Dockerfile", "FROM busybox\nRUN false\n", 0o644)]);
    let out = run_with_input(
        Command::new("docker")
            .arg("-H")
            .arg(lab.host())
            .arg("build")
            .arg(&bad)
            .env("DOCKER_BUILDKIT", "0")
            .env("DOCKER_CONFIG", lab.dir.join("docker-config")),
        b"",
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("returned a non-zero code: 1"),
        "{}",
        stderr(&out)
    );
    // docker commit / export against shoal too.
    lab.ok(&["run", "--name", "d1", "busybox", "sh", "-c", "echo d > /d.txt"]);
    let id = lab.docker_ok(&["commit", "d1", "dcommit:1"]);
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(lab.ok(&["run", "--rm", "dcommit:1", "cat", "/d.txt"]), "d");
}

#[test]
fn commit_and_export() {
    let lab = Lab::new("build-commit");
    lab.ok(&[
        "run",
        "--name",
        "c1",
        "-e",
        "KEPT=yes",
        "busybox",
        "sh",
        "-c",
        "echo changed > /etc/changed; rm /etc/image-name; mkdir -p /srv/www",
    ]);
    let id = lab.ok(&[
        "commit",
        "-m",
        "my change",
        "-a",
        "tester",
        "-c",
        r#"CMD ["cat", "/etc/changed"]"#,
        "--change",
        "WORKDIR /srv/www",
        "c1",
        "committed:v1",
    ]);
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(lab.ok(&["run", "--rm", "committed:v1"]), "changed");
    assert_eq!(
        lab.ok(&[
            "run",
            "--rm",
            "committed:v1",
            "sh",
            "-c",
            "pwd; echo $KEPT; test -e /etc/image-name || echo gone"
        ]),
        "/srv/www\nyes\ngone"
    );
    let comment = lab.ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Comment}} {{.Author}}",
        "committed:v1",
    ]);
    assert_eq!(comment, "my change tester");

    let tar = lab.dir.join("c1.tar");
    lab.ok(&["export", "-o", tar.to_str().unwrap(), "c1"]);
    let listing = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    let listing = stdout(&listing);
    let names: Vec<&str> = listing.lines().collect();
    assert!(names.contains(&"etc/changed"), "{listing}");
    assert!(names.contains(&"bin/busybox"), "{listing}");
    assert!(!names.contains(&"etc/image-name"), "{listing}");
    let content = Command::new("tar")
        .arg("-xOf")
        .arg(&tar)
        .arg("etc/changed")
        .output()
        .unwrap();
    assert_eq!(stdout(&content), "changed");
    // Every --change of an import applies (they arrive as repeated query parameters).
    let out = lab.shoal_stdin(
        &[
            "import",
            "-c",
            "ENV A=1",
            "-c",
            r#"CMD ["sh", "-c", "echo $A"]"#,
            "-",
            "imported:1",
        ],
        &fs::read(harness::busybox_tar()).unwrap(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lab.ok(&["run", "--rm", "imported:1"]), "1");
    // Bad input: a missing container is a clear error.
    let out = lab.shoal(&["commit", "nosuch", "x:1"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("nosuch"), "{}", stderr(&out));
}

#[test]
fn copy_and_add_forms_stages_and_target() {
    let lab = Lab::new("build-copy");
    let dir = context(
        &lab,
        "ctx",
        &[
            (
                "Dockerfile",
                "ARG BASE=busybox\n\
                 FROM ${BASE} AS base\n\
                 RUN echo base > /base\n\
                 \n\
                 FROM base AS second\n\
                 COPY --chown=app:extra files/*.txt /dst/\n\
                 COPY dir /tree\n\
                 ADD archive.tar.gz /unpacked/\n\
                 ADD plain.txt /plain-added.txt\n\
                 COPY --chmod=600 files/a.txt /secret\n\
                 COPY <<EOF /greeting\n\
                 hello $HOSTNAME_UNSET-there\n\
                 EOF\n\
                 \n\
                 FROM base AS never\n\
                 RUN exit 1\n",
                0o644,
            ),
            ("files/a.txt", "a", 0o644),
            ("files/b.txt", "b", 0o644),
            ("files/c.md", "c", 0o644),
            ("dir/sub/x", "x", 0o644),
            ("plain.txt", "plain", 0o644),
            ("src/inside/file.txt", "from the archive", 0o644),
        ],
    );
    let st = Command::new("tar")
        .arg("-czf")
        .arg(dir.join("archive.tar.gz"))
        .arg("-C")
        .arg(dir.join("src"))
        .arg("inside")
        .status()
        .unwrap();
    assert!(st.success());
    let out = build_ok(&lab, &dir, &["--target", "second", "-t", "second"]);
    assert!(
        !out.contains("exit 1"),
        "the stage after the target was built: {out}"
    );
    let check = lab.ok(&[
        "run",
        "--rm",
        "second",
        "sh",
        "-c",
        "cat /base; ls /dst; stat -c '%u:%g' /dst/a.txt; cat /tree/sub/x; echo; \
         cat /unpacked/inside/file.txt; echo; cat /plain-added.txt; echo; stat -c %a /secret; cat /greeting",
    ]);
    assert_eq!(
        check,
        "base\na.txt\nb.txt\n1000:2000\nx\nfrom the archive\nplain\n600\nhello -there"
    );
    // Without --target the failing last stage is built, and fails.
    let out = build(&lab, &dir, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Dockerfile:16: "), "{}", stderr(&out));
    // Intermediate images are hidden from `images` and shown by `images -a`.
    let listed = lab.ok(&["images", "--format", "{{.Repository}}"]);
    assert!(!listed.contains("<none>"), "{listed}");
    let all = lab.ok(&["images", "-a", "--format", "{{.Repository}}"]);
    assert!(all.contains("<none>"), "{all}");
    // rmi takes the untagged build steps below the image with it, down to busybox.
    let removed = lab.ok(&["rmi", "second"]);
    assert_eq!(removed.matches("Deleted:").count(), 7, "{removed}");
    assert_eq!(
        lab.ok(&["images", "-a", "--format", "{{.Repository}}"]),
        "busybox"
    );
    // Their cache entries went with them.
    let cache = lab.root.join("image/build-cache");
    let entries: Vec<_> = fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert!(entries.is_empty(), "{entries:?}");
    // A multi-file COPY needs a directory destination.
    let bad = context(
        &lab,
        "bad",
        &[
            ("Dockerfile", "FROM busybox\nCOPY a b /notadir\n", 0o644),
            ("a", "", 0o644),
            ("b", "", 0o644),
        ],
    );
    let err = stderr(&build(&lab, &bad, &[]));
    assert!(
        err.contains("Dockerfile:2: ") && err.contains("must be a directory"),
        "{err}"
    );
}

#[test]
fn a_build_whose_client_goes_away_stops() {
    use std::io::{BufRead, BufReader};
    let lab = Lab::new("build-cancel");
    let dir = context(
        &lab,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN while true; do echo tick; sleep 0.2; done\nRUN echo never\n",
            0o644,
        )],
    );
    let mut child = Command::new(harness::BIN)
        .arg("-H")
        .arg(lab.host())
        .arg("build")
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap() == "tick"), "the RUN step never printed");
    child.kill().unwrap();
    child.wait().unwrap();
    drop(lines);
    // The RUN container is stopped and removed, and no image comes of it.
    assert!(
        harness::eventually(20, || lab.ok(&["ps", "-aq"]).is_empty()),
        "build container still there: {}",
        lab.ok(&["ps", "-a"])
    );
    assert_eq!(lab.ok(&["images", "-aq"]).lines().count(), 1);
}
