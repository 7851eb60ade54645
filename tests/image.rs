//! The image store against real archives, real overlayfs mounts and skopeo as a second reader.
//! Needs root (mknod of whiteouts, trusted.* xattrs, mount) and Debian's busybox-static.

use sha2::{Digest, Sha256};
use shoal::image::{ImageError, ImageStore, RemovedItem};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn lab(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shoal-image-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn sha256(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The busybox rootfs tar from the lab script.
fn busybox_rootfs(dir: &Path, name: &str) -> Vec<u8> {
    let out = dir.join(format!("{name}-rootfs.tar"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/busybox-image.sh");
    let status = Command::new("sh")
        .arg(&script)
        .arg(&out)
        .arg(name)
        .status()
        .unwrap();
    assert!(status.success(), "busybox-image.sh failed");
    fs::read(&out).unwrap()
}

enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        let (path, data): (&str, &[u8]) = match e {
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (p, b"")
            }
            E::File(p, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                (p, d)
            }
            E::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_link_name(target).unwrap();
                (p, b"")
            }
        };
        h.set_size(data.len() as u64);
        // Write the name raw: the builder refuses '..', and escape tests need it.
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn config_json(diff_ids: &[String], cmd: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z",
        "config": { "Cmd": [cmd], "Env": ["PATH=/bin"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": diff_ids.iter().map(|_| serde_json::json!({"created_by": "test"})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// A `docker save` tar: layers as `<n>/layer.tar`, config, manifest.json, repositories.
fn docker_save_tar(layers: &[Vec<u8>], config: &[u8], tag: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut paths = Vec::new();
    let add = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    };
    for (i, layer) in layers.iter().enumerate() {
        let p = format!("layer{i}/layer.tar");
        add(&mut b, &p, layer);
        paths.push(p);
    }
    let config_name = format!("{}.json", sha256(config));
    add(&mut b, &config_name, config);
    let manifest = serde_json::json!([{ "Config": config_name, "RepoTags": [tag], "Layers": paths }]);
    add(&mut b, "manifest.json", manifest.to_string().as_bytes());
    b.into_inner().unwrap()
}

fn diff_id(tar: &[u8]) -> String {
    format!("sha256:{}", sha256(tar))
}

/// Mount the layers as overlayfs in a private mount namespace and run `script` with the
/// merged tree at $M. Returns stdout.
fn in_overlay(dirs: &[PathBuf], work: &Path, script: &str) -> String {
    let merged = work.join("merged");
    fs::create_dir_all(&merged).unwrap();
    let lower = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    // A single lower dir needs an upper dir for overlayfs; give it a throwaway one.
    let (upper, wk) = (work.join("upper"), work.join("work"));
    fs::create_dir_all(&upper).unwrap();
    fs::create_dir_all(&wk).unwrap();
    let full = format!(
        "mount -t overlay overlay -o lowerdir={lower},upperdir={},workdir={} {} && M={} && {script}",
        upper.display(),
        wk.display(),
        merged.display(),
        merged.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &full])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "overlay script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn import_busybox_resolve_and_run_in_overlay() {
    let dir = lab("import");
    let store = ImageStore::open(&dir.join("image")).unwrap();
    let rootfs = busybox_rootfs(&dir, "busybox");
    let changes = vec![
        r#"CMD ["sh"]"#.to_string(),
        "ENV FOO=bar".to_string(),
        "WORKDIR /root".to_string(),
    ];
    let id = store
        .import(&rootfs[..], Some("busybox"), &changes, "imported for a test")
        .unwrap();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let hex = &id[7..];
    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox:latest",
        id.as_str(),
        hex,
        &hex[..12],
        &hex[..3],
    ] {
        assert_eq!(store.resolve(name).unwrap().id, id, "resolving {name}");
    }
    let err = store.resolve("nosuch").unwrap_err();
    assert_eq!(err.to_string(), "No such image: nosuch:latest");
    assert_eq!(err.http_status(), 404);
    assert!(matches!(
        store.resolve("Busybox"),
        Err(ImageError::InvalidReference(_))
    ));

    let image = store.resolve("busybox").unwrap();
    assert_eq!(image.config.cmd, Some(vec!["sh".to_string()]));
    assert_eq!(image.config.working_dir.as_deref(), Some("/root"));
    assert_eq!(image.layers, vec![diff_id(&rootfs)]);
    assert!(image.size >= fs::metadata("/bin/busybox").unwrap().len());
    let inspect = store.inspect("busybox").unwrap();
    assert_eq!(inspect["Id"], id.as_str());
    assert_eq!(inspect["RepoTags"][0], "busybox:latest");
    assert_eq!(inspect["Config"]["Env"][0], "FOO=bar");
    assert_eq!(inspect["RootFS"]["Layers"][0], diff_id(&rootfs).as_str());
    assert_eq!(inspect["Comment"], "imported for a test");
    let list = store.list();
    assert_eq!(list.len(), 1);
    let row = serde_json::to_value(&list[0]).unwrap();
    assert_eq!(row["RepoTags"][0], "busybox:latest");
    assert_eq!(row["Containers"], -1);
    assert!(row["Created"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(store.history("busybox").unwrap()[0].id, id);

    let layers = store.layer_dirs(&image);
    assert_eq!(layers.len(), 1);
    let sh = fs::symlink_metadata(layers[0].join("bin/sh")).unwrap();
    assert!(sh.file_type().is_symlink());
    assert_eq!(
        fs::metadata(layers[0].join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    let out = in_overlay(
        &layers,
        &dir,
        "chroot $M /bin/sh -c 'echo hello from $(cat /etc/image-name)'",
    );
    assert_eq!(out.trim(), "hello from busybox");

    // Importing the same rootfs again shares the layer.
    let again = store.import(&rootfs[..], Some("other:1"), &[], "").unwrap();
    assert_ne!(again, id, "different config, different image");
    assert_eq!(dir_names(&dir.join("image/layers")).len(), 1);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_then_load_keeps_ids_and_skopeo_reads_it() {
    let dir = lab("save");
    let a = ImageStore::open(&dir.join("a")).unwrap();
    let rootfs = busybox_rootfs(&dir, "saved");
    let id = a
        .import(&gzip(&rootfs)[..], Some("registry.lan:5000/team/bb:v1"), &[], "")
        .unwrap();
    a.tag("registry.lan:5000/team/bb:v1", "bb:second").unwrap();
    let mut saved = Vec::new();
    a.save(
        &[
            "registry.lan:5000/team/bb:v1".to_string(),
            "bb:second".to_string(),
        ],
        &mut saved,
    )
    .unwrap();
    fs::write(dir.join("saved.tar"), &saved).unwrap();

    let b = ImageStore::open(&dir.join("b")).unwrap();
    let mut lines = b.load(&saved[..]).unwrap();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "Loaded image: bb:second",
            "Loaded image: registry.lan:5000/team/bb:v1"
        ]
    );
    let loaded = b.resolve("bb:second").unwrap();
    assert_eq!(loaded.id, id);
    assert_eq!(loaded.layers, vec![diff_id(&rootfs)]);
    // The rebuilt layer is byte-identical to what was imported.
    assert_eq!(
        fs::read(b.layer_dirs(&loaded)[0].join("bin/busybox")).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );

    // skopeo, a second implementation, accepts the archive and sees the same layer digest.
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            &format!("docker-archive:{}", dir.join("saved.tar").display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["config"]["digest"], id.as_str());
    assert_eq!(manifest["layers"][0]["digest"], diff_id(&rootfs).as_str());
    let copy = Command::new("skopeo")
        .args([
            "copy",
            &format!("docker-archive:{}", dir.join("saved.tar").display()),
            &format!("oci:{}:x", dir.join("oci").display()),
        ])
        .output()
        .unwrap();
    assert!(
        copy.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&copy.stderr)
    );

    // Archives written by skopeo (an OCI archive, and its own docker-archive flavour with
    // top-level layer files and symlinks) load with the same image ID.
    let c = ImageStore::open(&dir.join("c")).unwrap();
    for (dest, name) in [("oci-archive", "sk/oci:1"), ("docker-archive", "sk/docker:1")] {
        let file = dir.join(format!("{dest}.tar"));
        let out = Command::new("skopeo")
            .args([
                "copy",
                &format!("oci:{}:x", dir.join("oci").display()),
                &format!("{dest}:{}:{name}", file.display()),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy to {dest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = c.load(fs::File::open(&file).unwrap()).unwrap();
        assert_eq!(lines, vec![format!("Loaded image: {name}")]);
        assert_eq!(c.resolve(name).unwrap().id, id, "{dest}");
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn whiteouts_and_opaque_dirs_hide_lower_files_in_overlay() {
    let dir = lab("whiteout");
    let store = ImageStore::open(&dir.join("image")).unwrap();
    let bottom = tar_of(&[
        E::Dir("etc/"),
        E::File("etc/keep", b"kept\n"),
        E::File("etc/gone", b"deleted upstairs\n"),
        E::Dir("var/"),
        E::File("var/old1", b"1"),
        E::Dir("var/sub/"),
        E::File("var/sub/old2", b"2"),
        E::Symlink("etc/link", "keep"),
    ]);
    let top = tar_of(&[
        E::Dir("etc/"),
        E::File("etc/.wh.gone", b""),
        E::Dir("var/"),
        E::File("var/.wh..wh..opq", b""),
        E::File("var/new", b"new\n"),
    ]);
    let diff_ids = vec![diff_id(&bottom), diff_id(&top)];
    let config = config_json(&diff_ids, "sh");
    let lines = store
        .load(&docker_save_tar(&[bottom.clone(), gzip(&top)], &config, "layered:1")[..])
        .unwrap();
    assert_eq!(lines, vec!["Loaded image: layered:1"]);
    let image = store.resolve("layered:1").unwrap();
    assert_eq!(image.id, format!("sha256:{}", sha256(&config)));
    let dirs = store.layer_dirs(&image);
    assert_eq!(dirs.len(), 2);
    assert!(
        dirs[0].starts_with(dir.join("image/layers").join(&diff_ids[1][7..])),
        "top-most first: {dirs:?}"
    );
    // On disk: a 0:0 character device and the opaque xattr.
    let wh = fs::symlink_metadata(dirs[0].join("etc/gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    let opq = Command::new("getfattr")
        .args(["-n", "trusted.overlay.opaque", "--only-values"])
        .arg(dirs[0].join("var"))
        .output();
    if let Ok(opq) = opq {
        if opq.status.success() {
            assert_eq!(opq.stdout, b"y");
        }
    }
    let out = in_overlay(
        &dirs,
        &dir,
        "ls $M/etc; echo --; ls $M/var; echo --; cat $M/etc/link",
    );
    assert_eq!(out, "keep\nlink\n--\nnew\n--\nkept\n");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn oci_layout_with_gzip_layer_and_ref_annotation() {
    let dir = lab("oci");
    let store = ImageStore::open(&dir.join("image")).unwrap();
    let layer = tar_of(&[E::Dir("app/"), E::File("app/hello.txt", b"hi oci\n")]);
    let layer_gz = gzip(&layer);
    let config = config_json(&[diff_id(&layer)], "/app/run");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", sha256(&config)), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{}", sha256(&layer_gz)), "size": layer_gz.len() }],
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", sha256(&manifest)), "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": "example.com/team/app:1.0" }
        }],
    }))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in [
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        (format!("blobs/sha256/{}", sha256(&layer_gz)), layer_gz.clone()),
        (format!("blobs/sha256/{}", sha256(&config)), config.clone()),
        (format!("blobs/sha256/{}", sha256(&manifest)), manifest.clone()),
        ("index.json".to_string(), index),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    let archive = b.into_inner().unwrap();
    assert_eq!(
        store.load(&archive[..]).unwrap(),
        vec!["Loaded image: example.com/team/app:1.0"]
    );
    let image = store.resolve("example.com/team/app:1.0").unwrap();
    assert_eq!(image.id, format!("sha256:{}", sha256(&config)));
    assert_eq!(
        fs::read(store.layer_dirs(&image)[0].join("app/hello.txt")).unwrap(),
        b"hi oci\n"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn zstd_rootfs_imports() {
    let dir = lab("zstd");
    let store = ImageStore::open(&dir.join("image")).unwrap();
    let layer = tar_of(&[E::File("z.txt", b"zstd works\n")]);
    let out = Command::new("sh")
        .arg("-c")
        .arg("zstd -q -c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(&layer)?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    let id = store.import(&out.stdout[..], Some("z"), &[], "").unwrap();
    let image = store.resolve(&id).unwrap();
    assert_eq!(image.layers, vec![diff_id(&layer)]);
    assert_eq!(
        fs::read(store.layer_dirs(&image)[0].join("z.txt")).unwrap(),
        b"zstd works\n"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tag_untag_and_rmi_semantics() {
    let dir = lab("rmi");
    let store = ImageStore::open(&dir.join("image")).unwrap();
    let id = store
        .import(&tar_of(&[E::File("a", b"a")])[..], Some("one"), &[], "")
        .unwrap();
    store.tag("one", "two:x").unwrap();
    store.tag(&id[7..19], "localhost:5000/three").unwrap();
    assert_eq!(
        store.resolve("one").unwrap().repo_tags,
        vec!["localhost:5000/three:latest", "one:latest", "two:x"]
    );
    for bad in [
        "Upper",
        "a:b:c",
        "x@sha256:abc",
        "-x",
        &format!("x:{}", "t".repeat(129)),
    ] {
        assert!(
            matches!(store.tag("one", bad), Err(ImageError::InvalidReference(_))),
            "{bad}"
        );
    }
    assert!(matches!(store.tag("nosuch", "x"), Err(ImageError::NotFound(_))));

    // An ID with several tags needs force.
    let err = store.remove(&id, false).unwrap_err();
    assert_eq!(err.http_status(), 409);
    assert!(err.to_string().contains("must be forced"), "{err}");
    // Removing one tag of several only untags.
    assert_eq!(
        store.remove("two:x", false).unwrap(),
        vec![RemovedItem::Untagged("two:x".into())]
    );
    assert_eq!(
        store.remove("localhost:5000/three", false).unwrap(),
        vec![RemovedItem::Untagged("localhost:5000/three:latest".into())]
    );
    assert_eq!(store.list().len(), 1);
    // The last tag deletes the image and its now unused layer.
    let removed = store.remove("one", false).unwrap();
    assert_eq!(
        removed,
        vec![
            RemovedItem::Untagged("one:latest".into()),
            RemovedItem::Deleted(id.clone())
        ]
    );
    assert!(store.list().is_empty());
    assert!(dir_names(&dir.join("image/layers")).is_empty());
    assert!(dir_names(&dir.join("image/images")).is_empty());

    // Shared layers survive until their last image goes; force removes all tags.
    let a = store
        .import(
            &tar_of(&[E::File("s", b"shared")])[..],
            Some("a"),
            &["CMD [\"a\"]".into()],
            "",
        )
        .unwrap();
    let b = store
        .import(
            &tar_of(&[E::File("s", b"shared")])[..],
            Some("b"),
            &["CMD [\"b\"]".into()],
            "",
        )
        .unwrap();
    store.tag("a", "a2").unwrap();
    let removed = store.remove(&a, true).unwrap();
    assert_eq!(removed.len(), 3, "{removed:?}");
    assert_eq!(dir_names(&dir.join("image/layers")).len(), 1);
    store.remove(&b, false).unwrap();
    assert!(dir_names(&dir.join("image/layers")).is_empty());

    // State survives reopening.
    let c = store
        .import(&tar_of(&[E::File("c", b"c")])[..], Some("c:1"), &[], "")
        .unwrap();
    drop(store);
    let store = ImageStore::open(&dir.join("image")).unwrap();
    assert_eq!(store.resolve("c:1").unwrap().id, c);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ambiguous_prefix_is_an_error() {
    let dir = lab("ambiguous");
    let store = ImageStore::open(&dir.join("image")).unwrap();
    let mut ids = Vec::new();
    // 17 images guarantee two share a first hex digit.
    for i in 0..17 {
        ids.push(
            store
                .import(
                    &tar_of(&[E::File("f", format!("{i}").as_bytes())])[..],
                    None,
                    &[],
                    "",
                )
                .unwrap(),
        );
    }
    let mut firsts: Vec<&str> = ids.iter().map(|id| &id[7..8]).collect();
    firsts.sort();
    let dup = firsts.windows(2).find(|w| w[0] == w[1]).unwrap()[0];
    assert!(matches!(store.resolve(dup), Err(ImageError::Ambiguous(_))));
    assert_eq!(store.list().len(), 17);
    assert!(store.list().iter().all(|s| s.repo_tags.is_empty()));
    fs::remove_dir_all(&dir).unwrap();
}

fn assert_store_empty(root: &Path) {
    assert!(
        dir_names(&root.join("layers")).is_empty(),
        "layers left: {:?}",
        dir_names(&root.join("layers"))
    );
    assert!(dir_names(&root.join("images")).is_empty());
    assert!(
        dir_names(&root.join("tmp")).is_empty(),
        "temp left: {:?}",
        dir_names(&root.join("tmp"))
    );
}

#[test]
fn path_escape_is_rejected_and_leaves_nothing() {
    let dir = lab("escape");
    let root = dir.join("image");
    let store = ImageStore::open(&root).unwrap();
    let victim = dir.join("victim");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            tar_of(&[E::File("ok", b"1"), E::File("../../victim", b"pwned")]),
            "../../victim",
        ),
        (tar_of(&[E::File("/abs", b"1")]), "/abs"),
        (
            tar_of(&[
                E::Symlink("out", &dir.display().to_string()),
                E::File("out/victim", b"pwned"),
            ]),
            "out/victim",
        ),
    ];
    for (layer, needle) in cases {
        let config = config_json(&[diff_id(&layer)], "sh");
        let err = store
            .load(&docker_save_tar(&[layer], &config, "evil")[..])
            .unwrap_err();
        assert_eq!(err.http_status(), 400);
        assert!(err.to_string().contains(needle), "{err}");
        assert!(!victim.exists());
        assert!(store.list().is_empty());
        assert_store_empty(&root);
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_or_truncated_layer_leaves_no_image_and_no_layer() {
    let dir = lab("corrupt");
    let root = dir.join("image");
    let store = ImageStore::open(&root).unwrap();
    let good = tar_of(&[E::File("data", &[42u8; 10_000])]);
    let config = config_json(&[diff_id(&good)], "sh");
    // Same size, one byte changed: unpacks fine but the digest does not match the config.
    let mut tampered = good.clone();
    let pos = tampered.iter().position(|b| *b == 42).unwrap();
    tampered[pos] = 43;
    let err = store
        .load(&docker_save_tar(&[tampered], &config, "bad")[..])
        .unwrap_err();
    assert!(err.to_string().contains("config expects"), "{err}");
    assert!(store.list().is_empty());
    assert_store_empty(&root);
    // A gzip layer cut short.
    let gz = gzip(&good);
    let err = store
        .load(&docker_save_tar(&[gz[..gz.len() / 2].to_vec()], &config, "bad")[..])
        .unwrap_err();
    assert_eq!(err.http_status(), 400, "{err}");
    assert!(store.list().is_empty());
    assert_store_empty(&root);
    // An OCI blob whose name is not its digest is refused before it is placed.
    let oci_blob_name = format!("blobs/sha256/{}", "0".repeat(64));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(gz.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, &oci_blob_name, &gz[..]).unwrap();
    let err = store.load(&b.into_inner().unwrap()[..]).unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert_store_empty(&root);
    // The intact archive still loads afterwards.
    store
        .load(&docker_save_tar(&[good], &config, "good")[..])
        .unwrap();
    assert_eq!(
        store.resolve("good").unwrap().id,
        format!("sha256:{}", sha256(&config))
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reopening_collects_what_a_crash_left() {
    let dir = lab("crash");
    let root = dir.join("image");
    let store = ImageStore::open(&root).unwrap();
    let id = store
        .import(&tar_of(&[E::File("f", b"kept")])[..], Some("kept"), &[], "")
        .unwrap();
    drop(store);
    // An unpack cut short, a layer placed for an image whose config never got written, and a
    // temp file of an interrupted atomic write.
    fs::create_dir_all(root.join("tmp/layer-999-0/fs/usr/bin")).unwrap();
    fs::write(root.join("tmp/layer-999-0/fs/usr/bin/half"), b"partial").unwrap();
    let orphan = tar_of(&[E::File("orphan", b"o")]);
    let orphan_store = lab("crash-orphan");
    let other = ImageStore::open(&orphan_store).unwrap();
    let oid = other.import(&orphan[..], None, &[], "").unwrap();
    let orphan_layer = &diff_id(&orphan)[7..];
    drop(other);
    assert!(Command::new("cp")
        .arg("-a")
        .arg(orphan_store.join("layers").join(orphan_layer))
        .arg(root.join("layers"))
        .status()
        .unwrap()
        .success());
    fs::write(root.join("images/.x.json.tmp123"), b"{").unwrap();

    let store = ImageStore::open(&root).unwrap();
    assert!(dir_names(&root.join("tmp")).is_empty());
    assert!(
        !root.join("layers").join(orphan_layer).exists(),
        "unreferenced layer kept"
    );
    assert!(!root.join("images/.x.json.tmp123").exists());
    assert_eq!(store.resolve("kept").unwrap().id, id);
    assert!(store.resolve(&oid).is_err());
    assert_eq!(dir_names(&root.join("layers")).len(), 1);
    fs::remove_dir_all(&dir).unwrap();
    fs::remove_dir_all(&orphan_store).unwrap();
}

/// A private dockerd for one test: its own network namespace (no bridge, no iptables), mount
/// namespace, data and exec roots. Stopped (SIGTERM, then waited for) on drop.
struct Dockerd {
    child: std::process::Child,
    socket: PathBuf,
}

impl Dockerd {
    fn start(dir: &Path) -> Dockerd {
        let socket = dir.join("docker.sock");
        let script = format!(
            "mount -t tmpfs tmpfs /run && exec dockerd --data-root {d}/root --exec-root {d}/exec \
             -H unix://{s} --pidfile {d}/dockerd.pid --bridge=none --iptables=false --ip6tables=false",
            d = dir.display(),
            s = socket.display()
        );
        let log = fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("unshare")
            .args(["-n", "-m", "--propagation", "private", "sh", "-c", &script])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd (Debian docker.io) is needed for this test");
        let d = Dockerd { child, socket };
        for _ in 0..300 {
            if d.docker(&["version"]).status.success() {
                return d;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "dockerd did not come up: {}",
            fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
        );
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of a child this test spawned and has not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

#[test]
fn docker_loads_our_save_and_we_load_docker_save() {
    let dir = lab("docker");
    let dockerd = Dockerd::start(&dir);
    let store = ImageStore::open(&dir.join("image")).unwrap();
    let rootfs = busybox_rootfs(&dir, "docker-peer");
    fs::write(dir.join("rootfs.tar"), &rootfs).unwrap();
    let ours = store
        .import(&rootfs[..], Some("shoal/bb:1"), &[r#"CMD ["sh"]"#.into()], "")
        .unwrap();
    let saved = dir.join("ours.tar");
    store
        .save(&["shoal/bb:1".into()], fs::File::create(&saved).unwrap())
        .unwrap();
    let out = dockerd.docker(&["load", "-i", saved.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "docker load: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = dockerd.docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Config.Cmd}}",
        "shoal/bb:1",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{ours} [sh]")
    );

    let out = dockerd.docker(&[
        "import",
        "--change",
        "ENV A=1",
        dir.join("rootfs.tar").to_str().unwrap(),
        "docker/bb:imp",
    ]);
    assert!(
        out.status.success(),
        "docker import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let docker_saved = dir.join("theirs.tar");
    let out = dockerd.docker(&["save", "-o", docker_saved.to_str().unwrap(), "docker/bb:imp"]);
    assert!(
        out.status.success(),
        "docker save: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = ImageStore::open(&dir.join("fresh")).unwrap();
    assert_eq!(
        fresh.load(fs::File::open(&docker_saved).unwrap()).unwrap(),
        vec!["Loaded image: docker/bb:imp"]
    );
    let image = fresh.resolve("docker/bb:imp").unwrap();
    assert_eq!(image.id, theirs);
    assert_eq!(image.config.env, Some(vec!["A=1".to_string()]));
    // Docker and shoal agree on the size of the same content.
    let out = dockerd.docker(&["image", "inspect", "--format", "{{.Size}}", "docker/bb:imp"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        image.size.to_string()
    );
    drop(dockerd);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn layer_keeps_devices_links_owners_modes_times_and_xattrs() {
    let dir = lab("meta");
    let store = ImageStore::open(&dir.join("image")).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(1000);
        h.set_gid(2000);
        h.set_mtime(1_234_567_890);
        h
    };
    b.append_data(&mut header(tar::EntryType::Directory, 0o750, 0), "d/", &b""[..])
        .unwrap();
    b.append_pax_extensions([
        ("SCHILY.xattr.user.shoal", &b"kept"[..]),
        ("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..]),
    ])
    .unwrap();
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o4755, 5),
        "d/suid",
        &b"hello"[..],
    )
    .unwrap();
    let mut link = header(tar::EntryType::Link, 0o644, 0);
    b.append_link(&mut link, "d/hard", "d/suid").unwrap();
    let mut dev = header(tar::EntryType::Char, 0o620, 0);
    dev.set_device_major(1).unwrap();
    dev.set_device_minor(3).unwrap();
    b.append_data(&mut dev, "d/null", &b""[..]).unwrap();
    b.append_data(&mut header(tar::EntryType::Fifo, 0o600, 0), "d/fifo", &b""[..])
        .unwrap();
    let mut sym = header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut sym, "d/sym", "../../../../etc/shadow")
        .unwrap();
    let layer = b.into_inner().unwrap();
    let id = store.import(&layer[..], None, &[], "").unwrap();
    let fs_dir = store.layer_dirs(&store.resolve(&id).unwrap())[0].clone();

    let d = fs::metadata(fs_dir.join("d")).unwrap();
    assert_eq!(
        (d.mode() & 0o7777, d.uid(), d.gid(), d.mtime()),
        (0o750, 1000, 2000, 1_234_567_890)
    );
    let f = fs::metadata(fs_dir.join("d/suid")).unwrap();
    assert_eq!(
        (f.mode() & 0o7777, f.uid(), f.gid(), f.mtime()),
        (0o4755, 1000, 2000, 1_234_567_890)
    );
    assert_eq!(f.nlink(), 2);
    assert_eq!(fs::metadata(fs_dir.join("d/hard")).unwrap().ino(), f.ino());
    let null = fs::metadata(fs_dir.join("d/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!((null.rdev(), null.mode() & 0o7777), (libc::makedev(1, 3), 0o620));
    assert!(fs::metadata(fs_dir.join("d/fifo")).unwrap().file_type().is_fifo());
    // A symlink pointing "outside" is stored as is: it is only ever resolved inside a container.
    assert_eq!(
        fs::read_link(fs_dir.join("d/sym")).unwrap(),
        Path::new("../../../../etc/shadow")
    );
    let sym = fs::symlink_metadata(fs_dir.join("d/sym")).unwrap();
    assert_eq!((sym.uid(), sym.mtime()), (1000, 1_234_567_890));
    let xattr = |name: &str| {
        let mut buf = [0u8; 64];
        rustix::fs::lgetxattr(fs_dir.join("d/suid"), name, &mut buf[..]).map(|n| buf[..n].to_vec())
    };
    assert_eq!(xattr("user.shoal").unwrap(), b"kept");
    assert!(
        xattr("trusted.overlay.redirect").is_err(),
        "overlay xattrs from an image must be dropped"
    );

    // And the byte-exact tar comes back out through save.
    let mut saved = Vec::new();
    store.save(std::slice::from_ref(&id), &mut saved).unwrap();
    let other = ImageStore::open(&dir.join("other")).unwrap();
    assert_eq!(
        other.load(&saved[..]).unwrap(),
        vec![format!("Loaded image ID: {id}")]
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_imports_of_one_layer_share_it() {
    let dir = lab("concurrent");
    let store = ImageStore::open(&dir.join("image")).unwrap();
    let layer = tar_of(&[E::Dir("x/"), E::File("x/big", &vec![9u8; 1 << 20])]);
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (store, layer) = (&store, &layer);
                s.spawn(move || {
                    store
                        .import(&layer[..], Some(&format!("c:{i}")), &[format!("ENV I={i}")], "")
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(store.list().len(), 4);
    assert_eq!(
        dir_names(&dir.join("image/layers")),
        vec![diff_id(&layer)[7..].to_string()]
    );
    assert!(dir_names(&dir.join("image/tmp")).is_empty());
    for id in &ids {
        store.remove(id, false).unwrap();
    }
    assert!(dir_names(&dir.join("image/layers")).is_empty());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn repo_digests_resolve_survive_reopen_and_go_with_the_last_tag() {
    let dir = lab("digests");
    let root = dir.join("image");
    let digest = format!("sha256:{}", "d".repeat(64));
    let app_ref = format!("app@{digest}");
    let id = {
        let store = ImageStore::open(&root).unwrap();
        let id = store
            .import(&tar_of(&[E::File("a", b"a")])[..], Some("app:1"), &[], "")
            .unwrap();
        store.add_repo_digest("app:1", &app_ref).unwrap();
        store
            .add_repo_digest("app:1", &format!("other@{digest}"))
            .unwrap();
        id
    };
    // Written durably with the tags: a reopened store still resolves the digest reference.
    let store = ImageStore::open(&root).unwrap();
    assert_eq!(store.resolve(&app_ref).unwrap().id, id);
    assert_eq!(
        store.resolve("app:1").unwrap().repo_digests,
        [app_ref.clone(), format!("other@{digest}")]
    );
    assert_eq!(
        store.inspect("app:1").unwrap()["RepoDigests"][0],
        app_ref.as_str()
    );
    assert!(matches!(
        store.add_repo_digest("app:1", "app:2"),
        Err(ImageError::InvalidReference(_))
    ));
    // An unknown digest of a known repository is not found.
    let unknown = format!("app@sha256:{}", "e".repeat(64));
    assert!(matches!(store.resolve(&unknown), Err(ImageError::NotFound(_))));
    // Removing a digest reference only untags it.
    assert_eq!(
        store.remove(&format!("other@{digest}"), false).unwrap(),
        [RemovedItem::Untagged(format!("other@{digest}"))]
    );
    // The last tag of `app` takes the repository's digest references with it.
    assert_eq!(
        store.remove("app:1", false).unwrap(),
        [
            RemovedItem::Untagged("app:1".into()),
            RemovedItem::Untagged(app_ref.clone()),
            RemovedItem::Deleted(id.clone()),
        ]
    );
    // A tag and a digest in two repositories make an ID ambiguous without force.
    let id = store
        .import(&tar_of(&[E::File("b", b"b")])[..], Some("x:1"), &[], "")
        .unwrap();
    store.add_repo_digest("x:1", &format!("y@{digest}")).unwrap();
    assert!(matches!(store.remove(&id, false), Err(ImageError::Conflict(_))));
    assert_eq!(store.remove(&id, true).unwrap().len(), 3);
    let _ = fs::remove_dir_all(&dir);
}
