//! Registry pull and push against Debian's docker-registry (HTTP, HTTPS with a CA the test
//! makes, htpasswd basic auth), with skopeo as the second client, and faults: a connection
//! cut mid-blob, the daemon killed mid-pull, a full disk.
//!
//! Every test thread first joins its lab's network namespace, so the registry, the proxy and
//! skopeo all live on the lab's own loopback, next to the daemon.

mod harness;

use harness::{stderr, stdout, tail, Lab, BIN};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Move this test thread into the lab's network namespace.
fn enter_netns(lab: &Lab) {
    let f = std::fs::File::open(format!("/run/netns/{}", lab.netns)).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a valid namespace fd only changes this thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// A docker-registry process on the lab's loopback with its own storage.
struct Registry {
    child: Child,
    port: u16,
    ip: String,
}

struct RegistryOpts<'a> {
    tls: Option<(&'a Path, &'a Path)>,
    htpasswd: Option<&'a Path>,
}

const LOOPBACK: &str = "127.0.0.1";

impl Registry {
    fn start(dir: &Path, opts: RegistryOpts<'_>) -> Registry {
        Registry::start_on(LOOPBACK, dir, opts)
    }

    fn start_on(ip: &str, dir: &Path, opts: RegistryOpts<'_>) -> Registry {
        let port = free_port();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {ip}:{port}\n",
            dir.join("data").display()
        );
        if let Some((cert, key)) = opts.tls {
            cfg.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        if let Some(h) = opts.htpasswd {
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: shoal-test\n    path: {}\n",
                h.display()
            ));
        }
        std::fs::write(dir.join("config.yml"), cfg).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package docker-registry)");
        // Built first so that its Drop stops the process if it never comes up.
        let registry = Registry {
            child,
            port,
            ip: ip.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect((ip, port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not start on {ip}:{port}: {}",
                std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    let out = harness::run_with_input(Command::new("zstd").args(["-q", "-c", "-"]), data);
    assert!(out.status.success(), "zstd: {}", stderr(&out));
    out.stdout
}

/// A tar with one file of `size` random bytes (incompressible: the blob is as big).
fn random_layer(name: &str, size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size];
    fastrand::fill(&mut data);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, &data[..]).unwrap();
    b.into_inner().unwrap()
}

/// Writes an OCI image layout with one image per architecture (same layers, own config) and
/// an index over them when there are several.
struct Layout {
    dir: PathBuf,
    manifests: Vec<serde_json::Value>,
    /// Indexes of layers stored zstd-compressed instead of gzip.
    zstd_layers: Vec<usize>,
}

impl Layout {
    fn new(dir: &Path) -> Layout {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
            manifests: Vec::new(),
            zstd_layers: Vec::new(),
        }
    }

    fn blob(&self, bytes: &[u8]) -> String {
        let hex = sha256_hex(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    }

    /// Add an image of `tars` (uncompressed layer tars, stored gzipped) for arch/variant.
    fn image(&mut self, tars: &[Vec<u8>], arch: &str, variant: Option<&str>) -> String {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, t) in tars.iter().enumerate() {
            let (blob, media_type) = if self.zstd_layers.contains(&i) {
                (zstd(t), "application/vnd.oci.image.layer.v1.tar+zstd")
            } else {
                (gzip(t), "application/vnd.oci.image.layer.v1.tar+gzip")
            };
            diff_ids.push(format!("sha256:{}", sha256_hex(t)));
            layers.push(serde_json::json!({
                "mediaType": media_type,
                "digest": self.blob(&blob), "size": blob.len(),
            }));
        }
        let mut config = serde_json::json!({
            "architecture": arch, "os": "linux", "created": "2024-01-01T00:00:00Z",
            "config": { "Cmd": ["sh"], "Env": ["PATH=/bin:/usr/bin"] },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        if let Some(v) = variant {
            config["variant"] = v.into();
        }
        let config = serde_json::to_vec(&config).unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": self.blob(&config), "size": config.len() },
            "layers": layers,
        }))
        .unwrap();
        let digest = self.blob(&manifest);
        let mut platform = serde_json::json!({ "architecture": arch, "os": "linux" });
        if let Some(v) = variant {
            platform["variant"] = v.into();
        }
        self.manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": manifest.len(), "platform": platform,
        }));
        format!("sha256:{}", sha256_hex(&config))
    }

    /// Write index.json under `tag`: the single manifest, or a nested index for several.
    fn finish(&self, tag: &str) {
        let top = if self.manifests.len() == 1 {
            let mut m = self.manifests[0].clone();
            m.as_object_mut().unwrap().remove("platform");
            m
        } else {
            let idx = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": self.manifests,
            }))
            .unwrap();
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": self.blob(&idx), "size": idx.len(),
            })
        };
        let mut top = top;
        top["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": tag });
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&serde_json::json!({ "schemaVersion": 2, "manifests": [top] })).unwrap(),
        )
        .unwrap();
    }
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().expect("skopeo");
    assert!(out.status.success(), "skopeo {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Push `layout:tag` to `dest` (a docker:// reference) with skopeo.
fn skopeo_push(layout: &Path, tag: &str, dest: &str, extra: &[&str]) {
    let src = format!("oci:{}:{tag}", layout.display());
    let mut args = vec!["copy", "--quiet", "--dest-tls-verify=false"];
    args.extend_from_slice(extra);
    args.push(&src);
    args.push(dest);
    skopeo(&args);
}

fn busybox_rootfs() -> Vec<u8> {
    std::fs::read(harness::busybox_tar()).unwrap()
}

fn files_under(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn skip(reason: &str) -> bool {
    eprintln!("SKIP: {reason}");
    true
}

fn tools_missing() -> bool {
    !(have("docker-registry") && have("skopeo"))
        && skip("docker-registry and skopeo are needed (tests/lib/deps.sh)")
}

#[test]
fn pull_run_and_push_round_trip_with_skopeo() {
    if tools_missing() {
        return;
    }
    let lab = Lab::new("reg-http");
    enter_netns(&lab);
    let reg = Registry::start(
        &lab.dir.join("registry"),
        RegistryOpts {
            tls: None,
            htpasswd: None,
        },
    );
    let mut layout = Layout::new(&lab.dir.join("layout"));
    // The second layer is zstd-compressed.
    layout.zstd_layers = vec![1];
    let extra = random_layer("data/blob", 300_000);
    let config_digest = layout.image(&[busybox_rootfs(), extra], "amd64", None);
    layout.finish("v1");
    let remote = format!("{}/test/busybox:v1", reg.addr());
    skopeo_push(&lab.dir.join("layout"), "v1", &format!("docker://{remote}"), &[]);

    let out = lab.ok(&["pull", &remote]);
    assert!(out.contains("v1: Pulling from test/busybox"), "{out}");
    assert!(out.contains("Pull complete"), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {remote}")),
        "{out}"
    );
    assert!(out.ends_with(&remote), "{out}");
    // The pull is an event, as dockerd reports it.
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let events = lab.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &until.to_string(),
        "--filter",
        "event=pull",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.ID}}",
    ]);
    assert!(
        events.lines().any(|l| l == format!("image pull {remote}")),
        "{events}"
    );
    let id = lab.ok(&["image", "inspect", "--format", "{{.Id}}", &remote]);
    assert_eq!(id, config_digest, "the image ID is the config digest");
    let ran = lab.ok(&[
        "run",
        "--rm",
        &remote,
        "sh",
        "-c",
        "cat /etc/image-name; wc -c < /data/blob",
    ]);
    assert_eq!(ran.split_whitespace().collect::<Vec<_>>(), ["busybox", "300000"]);
    // Pulling again changes nothing.
    let again = lab.ok(&["pull", &remote]);
    assert!(again.contains("Image is up to date"), "{again}");

    // `run` of a missing image pulls it first, as docker does.
    lab.ok(&["rmi", &remote]);
    let out = lab.shoal(&["run", "--rm", &remote, "cat", "/etc/image-name"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("Unable to find image '{remote}' locally")),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "busybox");

    // Push under a new name; skopeo reads back the same digests.
    let pushed = format!("{}/mine/bb:v2", reg.addr());
    lab.ok(&["tag", &remote, &pushed]);
    let out = lab.ok(&["push", &pushed]);
    assert!(
        out.contains(&format!("The push refers to repository [{}/mine/bb]", reg.addr())),
        "{out}"
    );
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("v2: digest: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest line in {out}"))
        .to_string();
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{pushed}"),
    ]);
    assert_eq!(format!("sha256:{}", sha256_hex(raw.as_bytes())), digest);
    let info: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{pushed}"),
    ]))
    .unwrap();
    assert_eq!(info["Digest"], digest.as_str());
    let cfg: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--config",
        &format!("docker://{pushed}"),
    ]))
    .unwrap();
    let diff_ids: Vec<String> = lab
        .ok(&["image", "inspect", "--format", "{{json .RootFS.Layers}}", &pushed])
        .parse::<serde_json::Value>()
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(info["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(cfg["rootfs"]["diff_ids"], serde_json::json!(diff_ids));
    // skopeo copies the pushed image out and its blobs check out against the manifest.
    let copied = lab.dir.join("copied");
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{pushed}"),
        &format!("dir:{}", copied.display()),
    ]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copied.join("manifest.json")).unwrap()).unwrap();
    for (layer, diff_id) in manifest["layers"].as_array().unwrap().iter().zip(&diff_ids) {
        assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
        let digest = layer["digest"].as_str().unwrap();
        let blob = std::fs::read(copied.join(digest.trim_start_matches("sha256:"))).unwrap();
        assert_eq!(format!("sha256:{}", sha256_hex(&blob)), digest);
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(
            &format!("sha256:{}", sha256_hex(&tar)),
            diff_id,
            "the gzip blob holds the layer's exact tar"
        );
    }
    // A second push finds every blob already there.
    let out = lab.ok(&["push", &pushed]);
    assert_eq!(out.matches("Layer already exists").count(), 2, "{out}");
    // And shoal pulls its own push back to the same image ID, by tag and by digest.
    lab.ok(&["rmi", &pushed]);
    lab.ok(&["pull", &pushed]);
    assert_eq!(lab.ok(&["image", "inspect", "--format", "{{.Id}}", &pushed]), id);
    let by_digest = format!("{}/mine/bb@{digest}", reg.addr());
    let out = lab.ok(&["pull", &by_digest]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(out.ends_with(&by_digest), "{out}");
    // A tag the registry does not have, and a run that needs it.
    let missing = format!("{}/mine/bb:nope", reg.addr());
    let out = lab.shoal(&["pull", &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("manifest for {missing} not found")),
        "{}",
        stderr(&out)
    );
    let out = lab.shoal(&["run", "--rm", &missing]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("not found: manifest unknown"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn multi_platform_index_picks_the_requested_platform() {
    if tools_missing() {
        return;
    }
    let lab = Lab::bare("reg-multi");
    enter_netns(&lab);
    let reg = Registry::start(
        &lab.dir.join("registry"),
        RegistryOpts {
            tls: None,
            htpasswd: None,
        },
    );
    let mut layout = Layout::new(&lab.dir.join("layout"));
    let rootfs = busybox_rootfs();
    layout.image(std::slice::from_ref(&rootfs), "amd64", None);
    layout.image(std::slice::from_ref(&rootfs), "arm64", Some("v8"));
    layout.image(std::slice::from_ref(&rootfs), "arm", Some("v7"));
    layout.image(std::slice::from_ref(&rootfs), "arm", Some("v6"));
    layout.finish("multi");
    let remote = format!("{}/test/multi:multi", reg.addr());
    skopeo_push(
        &lab.dir.join("layout"),
        "multi",
        &format!("docker://{remote}"),
        &["--all"],
    );
    for (platform, want) in [
        ("linux/amd64", "amd64/<no value>"),
        ("linux/arm64", "arm64/v8"),
        ("linux/arm/v7", "arm/v7"),
        ("linux/arm/v6", "arm/v6"),
    ] {
        lab.ok(&["pull", "-q", "--platform", platform, &remote]);
        let got = lab.ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Architecture}}/{{.Variant}}",
            &remote,
        ]);
        assert_eq!(got, want, "--platform {platform}");
    }
    // Without --platform the board's own platform is chosen.
    lab.ok(&["pull", "-q", &remote]);
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64/<no value>",
        "aarch64" => "arm64/v8",
        _ => "arm/v7",
    };
    assert_eq!(
        lab.ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Architecture}}/{{.Variant}}",
            &remote
        ]),
        host
    );
    let out = lab.shoal(&["pull", "--platform", "linux/s390x", &remote]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no matching manifest for linux/s390x"),
        "{}",
        stderr(&out)
    );
}

/// Make a CA and a server certificate for 127.0.0.1 with openssl; returns (ca, cert, key).
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let sh = |cmd: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd}: {}", stderr(&out));
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=shoal-test-ca 2>/dev/null");
    sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null");
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    sh("openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext.cnf 2>/dev/null");
    (dir.join("ca.crt"), dir.join("server.crt"), dir.join("server.key"))
}

#[test]
fn https_with_basic_auth_login_and_logout() {
    if tools_missing() || (!have("htpasswd") && skip("htpasswd (apache2-utils) is needed")) {
        return;
    }
    let mut lab = Lab::bare("reg-https");
    enter_netns(&lab);
    let (ca, cert, key) = make_certs(&lab.dir.join("certs"));
    let htpasswd = lab.dir.join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", "alice", "s3cret"])
        .output()
        .unwrap();
    std::fs::write(&htpasswd, &out.stdout).unwrap();
    let reg = Registry::start(
        &lab.dir.join("registry"),
        RegistryOpts {
            tls: Some((&cert, &key)),
            htpasswd: Some(&htpasswd),
        },
    );
    let certs_d = lab.dir.join("certs.d");
    // The daemon trusts the CA only through certs.d/<host:port>/ca.crt.
    lab.kill_daemon();
    lab.daemon_args = vec!["--registry-certs-dir".into(), certs_d.display().to_string()];
    lab.start_daemon();
    let mut layout = Layout::new(&lab.dir.join("layout"));
    layout.image(&[busybox_rootfs()], "amd64", None);
    layout.finish("v1");
    let remote = format!("{}/private/bb:v1", reg.addr());
    skopeo_push(
        &lab.dir.join("layout"),
        "v1",
        &format!("docker://{remote}"),
        &["--dest-creds", "alice:s3cret"],
    );

    let docker_config = lab.dir.join("docker-config");
    let cli = |args: &[&str], input: &[u8]| {
        harness::run_with_input(
            Command::new(BIN)
                .arg("-H")
                .arg(lab.host())
                .args(args)
                .env("DOCKER_CONFIG", &docker_config),
            input,
        )
    };
    // Without the CA the TLS handshake fails (and loopback's plain-HTTP fallback too).
    let out = cli(&["pull", &remote], b"");
    assert!(!out.status.success());
    assert!(
        stderr(&out).to_lowercase().contains("certificate") || stderr(&out).contains("HTTPS failed"),
        "{}",
        stderr(&out)
    );
    std::fs::create_dir_all(certs_d.join(reg.addr())).unwrap();
    std::fs::copy(&ca, certs_d.join(reg.addr()).join("ca.crt")).unwrap();
    // Trusted now, but anonymous.
    let out = cli(&["pull", &remote], b"");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unauthorized") || stderr(&out).contains("pull access denied"),
        "{}",
        stderr(&out)
    );
    // A wrong password is refused and stores nothing.
    let out = cli(
        &["login", "-u", "alice", "--password-stdin", &reg.addr()],
        b"wrong\n",
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));
    assert!(!docker_config.join("config.json").exists());
    let out = cli(
        &["login", "-u", "alice", "--password-stdin", &reg.addr()],
        b"s3cret\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Login Succeeded"));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(docker_config.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        cfg["auths"][reg.addr()]["auth"],
        "YWxpY2U6czNjcmV0",
        "base64 of alice:s3cret, as docker stores it"
    );
    let out = cli(&["pull", &remote], b"");
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        tail(&lab.daemon_log(), 20)
    );
    let out = cli(&["run", "--rm", &remote, "cat", "/etc/image-name"], b"");
    assert_eq!(stdout(&out), "busybox", "{}", stderr(&out));
    // The real docker CLI reads the same config.json and sends X-Registry-Auth from it.
    if harness::have_docker() {
        assert!(cli(&["rmi", &remote], b"").status.success());
        let out = lab.docker_ok(&["pull", &remote]);
        assert!(out.contains("Downloaded newer image"), "{out}");
    }
    // Push with the stored login.
    let pushed = format!("{}/private/copy:v1", reg.addr());
    assert!(cli(&["tag", &remote, &pushed], b"").status.success());
    let out = cli(&["push", &pushed], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let ca_arg = format!("--cert-dir={}", certs_d.join(reg.addr()).display());
    let inspected = skopeo(&[
        "inspect",
        &ca_arg,
        "--creds",
        "alice:s3cret",
        &format!("docker://{pushed}"),
    ]);
    assert!(inspected.contains("\"Digest\""), "{inspected}");
    let out = cli(&["logout", &reg.addr()], b"");
    assert!(
        stdout(&out).contains(&format!("Removing login credentials for {}", reg.addr())),
        "{}",
        stdout(&out)
    );
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(docker_config.join("config.json")).unwrap()).unwrap();
    assert!(cfg["auths"].get(reg.addr()).is_none(), "{cfg}");
}

/// A TCP proxy on the lab's loopback in front of the registry: logs what clients send,
/// optionally throttles responses, and can cut one connection after N response bytes.
struct Proxy {
    port: u16,
    log: Arc<Mutex<Vec<u8>>>,
    cut_after: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16, bytes_per_sec: u64, cut_after: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Proxy {
            port,
            log: Arc::default(),
            cut_after: Arc::new(AtomicU64::new(cut_after)),
            stop: Arc::default(),
        };
        let (log, cut, stop, rate) = (p.log.clone(), p.cut_after.clone(), p.stop.clone(), bytes_per_sec);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (log, cut) = (log.clone(), cut.clone());
                let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = c_read.read(&mut buf) {
                        if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        log.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let (mut s_read, mut c_write) = (server, client);
                    let mut buf = [0u8; 16384];
                    let mut sent = 0u64;
                    let start = Instant::now();
                    while let Ok(n) = s_read.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let limit = cut.load(Ordering::Relaxed);
                        if limit > 0 && sent + n as u64 > limit {
                            // Cut this connection once, mid-response.
                            cut.store(0, Ordering::Relaxed);
                            let _ = c_write.write_all(&buf[..(limit - sent) as usize]);
                            let _ = c_write.shutdown(std::net::Shutdown::Both);
                            let _ = s_read.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        if c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        sent += n as u64;
                        if rate > 0 {
                            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                            if let Some(wait) = due.checked_sub(start.elapsed()) {
                                std::thread::sleep(wait);
                            }
                        }
                    }
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        p
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).to_ascii_lowercase()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// What the store holds besides complete images: nothing in tmp/, and one layer directory
/// per layer that some image uses.
fn assert_no_leftovers(lab: &Lab) {
    let image_root = lab.root.join("image");
    let tmp = files_under(&image_root.join("tmp"));
    assert!(tmp.is_empty(), "tmp/ holds {tmp:?}");
    let layers = files_under(&image_root.join("layers"));
    let out = lab.ok(&["images", "-q", "--no-trunc"]);
    let mut used = std::collections::BTreeSet::new();
    for id in out.lines() {
        let l = lab.ok(&["image", "inspect", "--format", "{{json .RootFS.Layers}}", id]);
        for d in serde_json::from_str::<Vec<String>>(&l).unwrap() {
            used.insert(d.trim_start_matches("sha256:").to_string());
        }
    }
    let unused: Vec<_> = layers.iter().filter(|l| !used.contains(*l)).collect();
    assert!(unused.is_empty(), "layers no image uses: {unused:?}");
}

fn push_big_image(lab: &Lab, reg: &Registry, layer_bytes: usize) -> String {
    let mut layout = Layout::new(&lab.dir.join("layout"));
    layout.image(
        &[
            busybox_rootfs(),
            random_layer("big/a", layer_bytes),
            random_layer("big/b", layer_bytes / 2),
        ],
        "amd64",
        None,
    );
    layout.finish("big");
    let remote = format!("{}/test/big:big", reg.addr());
    skopeo_push(&lab.dir.join("layout"), "big", &format!("docker://{remote}"), &[]);
    remote
}

#[test]
fn a_connection_cut_mid_blob_resumes_with_range() {
    if tools_missing() {
        return;
    }
    let lab = Lab::new("reg-cut");
    enter_netns(&lab);
    let reg = Registry::start(
        &lab.dir.join("registry"),
        RegistryOpts {
            tls: None,
            htpasswd: None,
        },
    );
    push_big_image(&lab, &reg, 4 << 20);
    let proxy = Proxy::start(reg.port, 0, 3 << 20);
    let via = format!("{}/test/big:big", proxy.addr());
    let out = lab.ok(&["pull", &via]);
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    assert_eq!(
        proxy.cut_after.load(Ordering::Relaxed),
        0,
        "the proxy cut a connection"
    );
    assert!(
        proxy.requests().contains("range: bytes="),
        "the resume used a Range request:\n{}",
        proxy.requests()
    );
    let ran = lab.ok(&["run", "--rm", &via, "sh", "-c", "wc -c < /big/a"]);
    assert_eq!(ran, (4 << 20).to_string());
    assert_no_leftovers(&lab);
}

#[test]
fn a_daemon_killed_mid_pull_leaves_nothing_and_the_next_pull_completes() {
    if tools_missing() {
        return;
    }
    let mut lab = Lab::new("reg-kill");
    enter_netns(&lab);
    let reg = Registry::start(
        &lab.dir.join("registry"),
        RegistryOpts {
            tls: None,
            htpasswd: None,
        },
    );
    push_big_image(&lab, &reg, 6 << 20);
    let proxy = Proxy::start(reg.port, 2 << 20, 0);
    let via = format!("{}/test/big:big", proxy.addr());
    let mut pull = Command::new(BIN)
        .arg("-H")
        .arg(lab.host())
        .args(["pull", &via])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until layers are being unpacked, then SIGKILL the daemon.
    let tmp = lab.root.join("image/tmp");
    assert!(
        harness::eventually(20, || !files_under(&tmp).is_empty()),
        "the pull never started"
    );
    std::thread::sleep(Duration::from_millis(800));
    lab.kill_daemon();
    assert!(!pull.wait().unwrap().success(), "the pull was cut");
    lab.start_daemon();
    let images = lab.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(images, "busybox:latest", "only complete images are listed");
    assert_no_leftovers(&lab);
    drop(proxy);
    let out = lab.ok(&["pull", &format!("{}/test/big:big", reg.addr())]);
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    assert_no_leftovers(&lab);
}

#[test]
fn a_full_disk_fails_clearly_and_keeps_existing_images() {
    if tools_missing() {
        return;
    }
    let mut lab = Lab::bare("reg-full");
    enter_netns(&lab);
    let reg = Registry::start(
        &lab.dir.join("registry"),
        RegistryOpts {
            tls: None,
            htpasswd: None,
        },
    );
    let remote = push_big_image(&lab, &reg, 12 << 20);
    let mut small = Layout::new(&lab.dir.join("small"));
    small.image(&[busybox_rootfs()], "amd64", None);
    small.finish("v1");
    let small_ref = format!("{}/test/small:v1", reg.addr());
    skopeo_push(
        &lab.dir.join("small"),
        "v1",
        &format!("docker://{small_ref}"),
        &[],
    );
    // The state root on a 10 MiB tmpfs.
    lab.kill_daemon();
    let mnt = lab.dir.join("tmpfs-root");
    std::fs::create_dir_all(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=10m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    lab.root = mnt.join("root");
    lab.start_daemon();
    lab.ok(&["pull", &small_ref]);
    let out = lab.shoal(&["pull", &remote]);
    assert!(!out.status.success(), "a 12 MiB layer cannot fit");
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
    let images = lab.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(images, small_ref);
    assert_no_leftovers(&lab);
    assert_eq!(
        lab.ok(&["run", "--rm", &small_ref, "cat", "/etc/image-name"]),
        "busybox"
    );
    // The space is back: the small image pulls again after removal.
    lab.ok(&["rmi", &small_ref]);
    lab.ok(&["pull", &small_ref]);
}

#[test]
fn docker_cli_pulls_and_pushes_through_shoal() {
    if tools_missing() || (!harness::have_docker() && skip("docker CLI not installed")) {
        return;
    }
    let lab = Lab::new("reg-docker");
    enter_netns(&lab);
    let reg = Registry::start(
        &lab.dir.join("registry"),
        RegistryOpts {
            tls: None,
            htpasswd: None,
        },
    );
    let mut layout = Layout::new(&lab.dir.join("layout"));
    layout.image(&[busybox_rootfs()], "amd64", None);
    layout.finish("v1");
    let remote = format!("{}/test/busybox:v1", reg.addr());
    skopeo_push(&lab.dir.join("layout"), "v1", &format!("docker://{remote}"), &[]);
    // docker login goes through POST /auth (the registry here accepts anyone).
    let out = lab.docker_ok(&["login", "-u", "anyone", "-p", "pw", &reg.addr()]);
    assert!(out.contains("Login Succeeded"), "{out}");
    let out = lab.docker_ok(&["pull", &remote]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    let images = lab.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.contains(&remote), "{images}");
    let pushed = format!("{}/docker/pushed:v3", reg.addr());
    lab.docker_ok(&["tag", &remote, &pushed]);
    let out = lab.docker_ok(&["push", &pushed]);
    assert!(out.contains("v3: digest: sha256:"), "{out}");
    lab.docker_ok(&["rmi", &pushed]);
    lab.docker_ok(&["rmi", &remote]);
    lab.docker_ok(&["pull", &pushed]);
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{pushed}"),
    ]);
    assert!(
        out.contains(&format!("sha256:{}", sha256_hex(raw.as_bytes()))),
        "{out}"
    );
}

fn b64url(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A token server as docker's Bearer flow expects: Basic auth in, a JWT signed with a key
/// whose certificate the registry trusts (sent in the `x5c` header) out.
struct TokenServer {
    port: u16,
    issued: Arc<AtomicU64>,
}

impl TokenServer {
    fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let issued = Arc::new(AtomicU64::new(0));
        let (dir, expected, count) = (
            dir.to_path_buf(),
            format!("Basic {}", {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            }),
            issued.clone(),
        );
        let cert_pem = std::fs::read_to_string(dir.join("token.crt")).unwrap();
        let der_b64: String = cert_pem.lines().filter(|l| !l.starts_with("-----")).collect();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let authorized = head.lines().any(|l| {
                    l.to_ascii_lowercase().starts_with("authorization:") && l[14..].trim() == expected
                });
                if !authorized {
                    let _ = conn.write_all(
                        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                }
                let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
                let mut access = Vec::new();
                for pair in query.split('&') {
                    if let Some(scope) = pair.strip_prefix("scope=") {
                        let scope = percent_decode(scope);
                        let parts: Vec<&str> = scope.splitn(3, ':').collect();
                        if let [kind, name, actions] = parts.as_slice() {
                            access.push(serde_json::json!({
                                "type": kind, "name": name,
                                "actions": actions.split(',').collect::<Vec<_>>(),
                            }));
                        }
                    }
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header = serde_json::json!({ "typ": "JWT", "alg": "RS256", "x5c": [der_b64] });
                let claims = serde_json::json!({
                    "iss": "shoal-test-issuer", "sub": "alice", "aud": "shoal-test",
                    "exp": now + 600, "nbf": now - 10, "iat": now - 10,
                    "jti": format!("t{}", count.fetch_add(1, Ordering::Relaxed)), "access": access,
                });
                let signing_input = format!(
                    "{}.{}",
                    b64url(header.to_string().as_bytes()),
                    b64url(claims.to_string().as_bytes())
                );
                let input_file = dir.join(format!("jwt-{}", std::process::id()));
                std::fs::write(&input_file, &signing_input).unwrap();
                let sig = Command::new("openssl")
                    .args(["dgst", "-sha256", "-sign"])
                    .arg(dir.join("token.key"))
                    .arg(&input_file)
                    .output()
                    .unwrap();
                let token = format!("{signing_input}.{}", b64url(&sig.stdout));
                let body = serde_json::json!({ "token": token, "expires_in": 600 }).to_string();
                let _ = conn.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        TokenServer { port, issued }
    }
}

#[test]
fn bearer_token_auth_through_a_token_server() {
    if tools_missing() {
        return;
    }
    let lab = Lab::new("reg-token");
    enter_netns(&lab);
    let certs = lab.dir.join("token-certs");
    std::fs::create_dir_all(&certs).unwrap();
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=shoal-token",
        ])
        .arg("-keyout")
        .arg(certs.join("token.key"))
        .arg("-out")
        .arg(certs.join("token.crt"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let tokens = TokenServer::start(&certs, "bob", "t0ken-pw");
    let reg_dir = lab.dir.join("registry");
    std::fs::create_dir_all(&reg_dir).unwrap();
    // docker-registry's token auth: the realm, service and issuer the JWTs must name.
    let reg = {
        let port = free_port();
        let cfg = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: shoal-test\n    issuer: shoal-test-issuer\n    rootcertbundle: {}\n",
            reg_dir.join("data").display(),
            tokens.port,
            certs.join("token.crt").display()
        );
        std::fs::write(reg_dir.join("config.yml"), cfg).unwrap();
        let log = std::fs::File::create(reg_dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(reg_dir.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            port,
            ip: LOOPBACK.to_string(),
        };
        assert!(harness::eventually(20, || TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()));
        registry
    };
    let remote = format!("{}/team/bb:v1", reg.addr());
    let docker_config = lab.dir.join("docker-config");
    let cli = |args: &[&str], input: &[u8]| {
        harness::run_with_input(
            Command::new(BIN)
                .arg("-H")
                .arg(lab.host())
                .args(args)
                .env("DOCKER_CONFIG", &docker_config),
            input,
        )
    };
    // Anonymous: the token server refuses.
    assert!(cli(&["tag", "busybox", &remote], b"").status.success());
    let out = cli(&["push", &remote], b"");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));
    let out = cli(
        &["login", "-u", "bob", "--password-stdin", &reg.addr()],
        b"t0ken-pw\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&["push", &remote], b"");
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        std::fs::read_to_string(reg_dir.join("registry.log")).unwrap_or_default()
    );
    let before = tokens.issued.load(Ordering::Relaxed);
    assert!(before >= 2, "the login and the push each got a token");
    assert!(cli(&["rmi", &remote], b"").status.success());
    let out = cli(&["pull", &remote], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(tokens.issued.load(Ordering::Relaxed) > before);
    let out = cli(&["run", "--rm", &remote, "cat", "/etc/image-name"], b"");
    assert_eq!(stdout(&out), "busybox", "{}", stderr(&out));
}

#[test]
fn concurrent_pulls_of_the_same_layers_download_them_once() {
    if tools_missing() {
        return;
    }
    let lab = Lab::bare("reg-twice");
    enter_netns(&lab);
    let reg = Registry::start(
        &lab.dir.join("registry"),
        RegistryOpts {
            tls: None,
            htpasswd: None,
        },
    );
    push_big_image(&lab, &reg, 3 << 20);
    let info: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/test/big:big", reg.addr()),
    ]))
    .unwrap();
    // Slow enough that the two pulls overlap.
    let proxy = Proxy::start(reg.port, 3 << 20, 0);
    let via = format!("{}/test/big:big", proxy.addr());
    let spawn = || {
        Command::new(BIN)
            .arg("-H")
            .arg(lab.host())
            .args(["pull", &via])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{}\n{}",
        stderr(&a),
        stderr(&b)
    );
    let requests = proxy.requests();
    for layer in info["Layers"].as_array().unwrap() {
        let get = format!("get /v2/test/big/blobs/{}", layer.as_str().unwrap());
        assert_eq!(requests.matches(&get).count(), 1, "{get} once:\n{requests}");
    }
    let waited = stdout(&a).contains("Waiting") || stdout(&b).contains("Waiting");
    assert!(
        waited,
        "one pull waited for the other:\n{}\n{}",
        stdout(&a),
        stdout(&b)
    );
    assert_eq!(lab.ok(&["images", "-q"]).lines().count(), 1);
    assert_no_leftovers(&lab);
}

#[test]
fn plain_http_only_for_insecure_registries() {
    if tools_missing() {
        return;
    }
    let mut lab = Lab::new("reg-insecure");
    enter_netns(&lab);
    // A LAN-like address on the lab's own loopback device (inside its namespace).
    let out = lab.in_netns(&["ip", "addr", "add", "10.77.0.1/32", "dev", "lo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reg = Registry::start_on(
        "10.77.0.1",
        &lab.dir.join("registry"),
        RegistryOpts {
            tls: None,
            htpasswd: None,
        },
    );
    let remote = format!("{}/lan/bb:v1", reg.addr());
    lab.ok(&["tag", "busybox", &remote]);
    let out = lab.shoal(&["push", &remote]);
    assert!(
        !out.status.success(),
        "plain HTTP to a registry not listed as insecure"
    );
    assert!(stderr(&out).contains("insecure-registries"), "{}", stderr(&out));
    lab.kill_daemon();
    lab.daemon_args = vec!["--insecure-registry".into(), "10.77.0.0/16".into()];
    lab.start_daemon();
    lab.ok(&["push", &remote]);
    lab.ok(&["rmi", &remote]);
    lab.ok(&["pull", &remote]);
    assert_eq!(
        lab.ok(&["run", "--rm", &remote, "cat", "/etc/image-name"]),
        "busybox"
    );
}

/// Reads one HTTP request head (up to the blank line); None at EOF.
fn read_head(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// In front of a registry: blob GETs are answered with a redirect to a blob server on
/// another port (like a registry handing out storage URLs); everything else is forwarded.
/// The blob server serves the layout's blobs and records whether requests carried
/// Authorization.
struct Redirector {
    port: u16,
    blob_requests: Arc<Mutex<Vec<String>>>,
}

impl Redirector {
    fn start(upstream: u16, blobs: PathBuf) -> Redirector {
        let blob_server = TcpListener::bind("127.0.0.1:0").unwrap();
        let blob_port = blob_server.local_addr().unwrap().port();
        let blob_requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = blob_requests.clone();
        std::thread::spawn(move || {
            for conn in blob_server.incoming() {
                let Ok(mut conn) = conn else { continue };
                let Some(head) = read_head(&mut conn) else {
                    continue;
                };
                seen.lock().unwrap().push(head.clone());
                let path = head.split_whitespace().nth(1).unwrap_or("");
                let hex = path.rsplit("sha256:").next().unwrap_or("");
                let resp = match std::fs::read(blobs.join(hex)) {
                    Ok(data) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            data.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(&data);
                        r
                    }
                    Err(_) => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
                    }
                };
                let _ = conn.write_all(&resp);
            }
        });
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = front.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in front.incoming() {
                let Ok(mut conn) = conn else { continue };
                std::thread::spawn(move || {
                    while let Some(head) = read_head(&mut conn) {
                        let mut words = head.split_whitespace();
                        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                        if method == "GET" && path.contains("/blobs/sha256:") {
                            let digest = path.rsplit('/').next().unwrap_or("");
                            let redirect = format!(
                                "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{blob_port}/storage/{digest}\r\nContent-Length: 0\r\n\r\n"
                            );
                            if conn.write_all(redirect.as_bytes()).is_err() {
                                return;
                            }
                            continue;
                        }
                        // Forward one request on its own upstream connection, then close.
                        let head = head.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
                        let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                            return;
                        };
                        let _ = up.write_all(head.as_bytes());
                        let _ = std::io::copy(&mut up, &mut conn);
                        return;
                    }
                });
            }
        });
        Redirector { port, blob_requests }
    }
}

#[test]
fn blob_redirects_are_followed_without_credentials() {
    if tools_missing() || (!have("htpasswd") && skip("htpasswd (apache2-utils) is needed")) {
        return;
    }
    let lab = Lab::bare("reg-redirect");
    enter_netns(&lab);
    let htpasswd = lab.dir.join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", "carol", "pw"])
        .output()
        .unwrap();
    std::fs::write(&htpasswd, &out.stdout).unwrap();
    let reg = Registry::start(
        &lab.dir.join("registry"),
        RegistryOpts {
            tls: None,
            htpasswd: Some(&htpasswd),
        },
    );
    let mut layout = Layout::new(&lab.dir.join("layout"));
    layout.image(&[busybox_rootfs()], "amd64", None);
    layout.finish("v1");
    skopeo_push(
        &lab.dir.join("layout"),
        "v1",
        &format!("docker://{}/test/redir:v1", reg.addr()),
        &["--dest-creds", "carol:pw"],
    );
    let front = Redirector::start(reg.port, lab.dir.join("layout/blobs/sha256"));
    let remote = format!("127.0.0.1:{}/test/redir:v1", front.port);
    let docker_config = lab.dir.join("docker-config");
    let cli = |args: &[&str], input: &[u8]| {
        harness::run_with_input(
            Command::new(BIN)
                .arg("-H")
                .arg(lab.host())
                .args(args)
                .env("DOCKER_CONFIG", &docker_config),
            input,
        )
    };
    let login = format!("127.0.0.1:{}", front.port);
    let out = cli(&["login", "-u", "carol", "--password-stdin", &login], b"pw\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&["pull", &remote], b"");
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        tail(&lab.daemon_log(), 20)
    );
    let requests = front.blob_requests.lock().unwrap().clone();
    assert_eq!(
        requests.len(),
        2,
        "the config and the layer came from the blob server: {requests:?}"
    );
    for r in &requests {
        assert!(
            !r.to_ascii_lowercase().contains("authorization:"),
            "credentials leaked to another host:\n{r}"
        );
    }
    let out = cli(&["run", "--rm", &remote, "cat", "/etc/image-name"], b"");
    assert_eq!(stdout(&out), "busybox", "{}", stderr(&out));
}

/// A layer holding one file with the given content.
fn file_layer(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, content).unwrap();
    b.into_inner().unwrap()
}

/// The digest of the manifest a registry serves for `reference`.
fn remote_digest(reference: &str) -> String {
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{reference}"),
    ]);
    format!("sha256:{}", sha256_hex(raw.as_bytes()))
}

#[test]
fn repo_digests_are_recorded_listed_and_resolved() {
    if tools_missing() {
        return;
    }
    let mut lab = Lab::new("reg-digests");
    enter_netns(&lab);
    let reg = Registry::start(
        &lab.dir.join("registry"),
        RegistryOpts {
            tls: None,
            htpasswd: None,
        },
    );
    let mut layout = Layout::new(&lab.dir.join("layout"));
    layout.image(&[busybox_rootfs()], "amd64", None);
    layout.finish("v1");
    let repo = format!("{}/test/dig", reg.addr());
    let remote = format!("{repo}:v1");
    skopeo_push(&lab.dir.join("layout"), "v1", &format!("docker://{remote}"), &[]);
    let digest = remote_digest(&remote);
    let repo_digest = format!("{repo}@{digest}");

    lab.ok(&["pull", "-q", &remote]);
    let id = lab.ok(&["image", "inspect", "--format", "{{.Id}}", &remote]);
    let digests_of =
        |lab: &Lab, name: &str| lab.ok(&["image", "inspect", "--format", "{{json .RepoDigests}}", name]);
    assert_eq!(digests_of(&lab, &remote), format!("[\"{repo_digest}\"]"));
    // `images --digests`: docker's columns, the digest on the tag's row.
    let table = lab.ok(&["images", "--digests"]);
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["REPOSITORY", "TAG", "DIGEST", "IMAGE", "ID", "CREATED", "SIZE"]
    );
    let row = lines
        .find(|l| l.starts_with(&repo))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..4],
        [
            repo.as_str(),
            "v1",
            digest.as_str(),
            &id["sha256:".len().."sha256:".len() + 12]
        ]
    );
    // Without --digests the column is not there.
    assert!(!lab.ok(&["images"]).contains(&digest));
    // The digest reference names the same image, and survives a daemon restart.
    assert_eq!(
        lab.ok(&["image", "inspect", "--format", "{{.Id}}", &repo_digest]),
        id
    );
    lab.stop_daemon();
    lab.start_daemon();
    assert_eq!(digests_of(&lab, &remote), format!("[\"{repo_digest}\"]"));

    // Removing the last tag of the repository drops its digest reference too (as docker).
    let out = lab.ok(&["rmi", &remote]);
    assert!(out.contains(&format!("Untagged: {repo_digest}")), "{out}");
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    // A pull by digest brings back the same image, known only by that digest.
    let out = lab.ok(&["pull", &repo_digest]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert_eq!(
        lab.ok(&["image", "inspect", "--format", "{{.Id}}", &repo_digest]),
        id
    );
    assert_eq!(
        lab.ok(&[
            "images",
            "--digests",
            "--format",
            "{{.Repository}} {{.Tag}} {{.Digest}}"
        ]),
        format!("busybox latest <none>\n{repo} <none> {digest}")
    );
    assert_eq!(
        lab.ok(&[
            "images",
            "--format",
            "{{.Repository}}|{{.Tag}}|{{.Digest}}",
            "--filter",
            &format!("reference={repo}")
        ]),
        format!("{repo}|<none>|")
    );
    let ran = lab.ok(&["run", "--rm", &repo_digest, "cat", "/etc/image-name"]);
    assert_eq!(ran, "busybox");

    // A push records the digest the registry now serves.
    let pushed = format!("{}/test/pushed:p1", reg.addr());
    lab.ok(&["tag", &repo_digest, &pushed]);
    let out = lab.ok(&["push", &pushed]);
    let pushed_digest = remote_digest(&pushed);
    assert!(out.contains(&format!("p1: digest: {pushed_digest}")), "{out}");
    let pushed_ref = format!("{}/test/pushed@{pushed_digest}", reg.addr());
    // Sorted, as docker lists them.
    assert_eq!(
        digests_of(&lab, &pushed),
        format!("[\"{repo_digest}\",\"{pushed_ref}\"]")
    );

    if harness::have_docker() {
        let out = lab.docker_ok(&[
            "images",
            "--digests",
            "--format",
            "{{.Repository}} {{.Tag}} {{.Digest}}",
        ]);
        let mut rows: Vec<&str> = out.lines().collect();
        rows.sort();
        let want_pushed = format!("{}/test/pushed p1 {pushed_digest}", reg.addr());
        let want_dig = format!("{repo} <none> {digest}");
        let mut want = vec!["busybox latest <none>", want_pushed.as_str(), want_dig.as_str()];
        want.sort();
        assert_eq!(rows, want);
        let inspect = lab.docker_ok(&[
            "image",
            "inspect",
            "--format",
            "{{index .RepoDigests 1}}",
            &pushed,
        ]);
        assert_eq!(inspect, pushed_ref);
        // docker's pull by digest (fromImage=repo&tag=sha256:…) finds the same image.
        let out = lab.docker_ok(&["pull", &repo_digest]);
        assert!(out.contains(&format!("Digest: {digest}")), "{out}");
        assert_eq!(
            lab.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &repo_digest]),
            id
        );
    } else {
        eprintln!("SKIP (part): docker CLI not installed");
    }
}

#[test]
fn run_and_create_platform_pull_that_variant() {
    if tools_missing() {
        return;
    }
    let lab = Lab::bare("reg-platform");
    enter_netns(&lab);
    let reg = Registry::start(
        &lab.dir.join("registry"),
        RegistryOpts {
            tls: None,
            htpasswd: None,
        },
    );
    // Same busybox, plus a file naming the variant, so a run shows which one it got.
    let mut layout = Layout::new(&lab.dir.join("layout"));
    let rootfs = busybox_rootfs();
    layout.image(
        &[rootfs.clone(), file_layer("etc/variant", b"amd64\n")],
        "amd64",
        None,
    );
    layout.image(
        &[rootfs.clone(), file_layer("etc/variant", b"arm64\n")],
        "arm64",
        Some("v8"),
    );
    layout.finish("multi");
    let remote = format!("{}/test/multi:multi", reg.addr());
    skopeo_push(
        &lab.dir.join("layout"),
        "multi",
        &format!("docker://{remote}"),
        &["--all"],
    );
    let arch = |lab: &Lab| lab.ok(&["image", "inspect", "--format", "{{.Architecture}}", &remote]);

    let out = lab.shoal(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        &remote,
        "cat",
        "/etc/variant",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "arm64");
    assert_eq!(arch(&lab), "arm64");
    // The local image is for arm64 now: asking for amd64 pulls that variant.
    let out = lab.shoal(&["create", "--platform", "linux/amd64", &remote]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Unable to find image"), "{}", stderr(&out));
    assert_eq!(arch(&lab), "amd64");
    // A matching local image is used as it is.
    let out = lab.shoal(&["create", "--platform", "linux/amd64", &remote]);
    assert!(
        out.status.success() && !stderr(&out).contains("Unable to find"),
        "{}",
        stderr(&out)
    );
    let out = lab.shoal(&["run", "--rm", "--platform", "linux/", &remote, "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("invalid platform"), "{}", stderr(&out));

    if harness::have_docker() {
        let out = lab.docker_ok(&[
            "run",
            "--rm",
            "--platform",
            "linux/arm64",
            &remote,
            "cat",
            "/etc/variant",
        ]);
        assert_eq!(out, "arm64");
        assert_eq!(arch(&lab), "arm64");
    } else {
        eprintln!("SKIP (part): docker CLI not installed");
    }
}
