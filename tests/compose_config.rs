//! Golden tests of `shoal compose config` over fixtures written from the compose spec:
//! every service field shoal models, each interpolation form, `.env`/env_file quoting,
//! merging of several `-f` files, `extends` across files, profiles, anchors and merge keys.
//! Bad files must fail with `file:line:col: key: message` and a non-zero exit.
//!
//! Set SHOAL_UPDATE_GOLDEN=1 to rewrite the expected files after a reviewed change.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compose/fixtures")
}

/// Runs `shoal compose ARGS` in the fixtures directory with a fixed environment.
fn compose(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal"));
    cmd.arg("compose")
        .args(args)
        .current_dir(fixtures())
        .env_clear()
        .env("HOME", "/home/tester");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run shoal");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn golden(name: &str, actual: &str) {
    let dir = fixtures().to_string_lossy().into_owned();
    let actual = actual.replace(&dir, "$FIXTURES");
    let path = fixtures().join(format!("{name}.expected.yml"));
    if std::env::var_os("SHOAL_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(actual, expected, "golden {name} differs");
}

const ENV: &[(&str, &str)] = &[("PLAIN", "plain"), ("EMPTY", ""), ("FROM_SHELL", "shell")];

#[test]
fn full_file_normalises_like_compose_v2() {
    let (code, out, err) = compose(&["-f", "full.yml", "config"], ENV);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("`version` is obsolete"), "{err}");
    golden("full", &out);
}

#[test]
fn override_file_extends_and_profiles() {
    let (code, out, err) = compose(
        &[
            "-f",
            "full.yml",
            "-f",
            "override.yml",
            "--profile",
            "debug",
            "-p",
            "over",
            "config",
        ],
        ENV,
    );
    assert_eq!(code, 0, "{err}");
    golden("override", &out);
}

#[test]
fn shell_environment_wins_over_dotenv() {
    let dir = std::env::temp_dir().join(format!("shoal-compose-dotenv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  app:\n    image: busybox:${TAG}\n    environment:\n      GREETING: ${GREETING}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join(".env"),
        "TAG=from-dotenv\nGREETING=\"hello ${TAG}\"\nCOMPOSE_PROJECT_NAME=fromdotenv\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["compose", "config"])
        .current_dir(&dir)
        .env_clear()
        .env("TAG", "from-shell")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("name: fromdotenv\n"), "{text}");
    assert!(text.contains("image: busybox:from-shell"), "{text}");
    assert!(text.contains("GREETING: hello from-shell"), "{text}");
}

#[test]
fn bad_files_name_file_line_column_and_key() {
    let cases: &[(&str, &str)] = &[
        ("unknown_dep.yml", "unknown_dep.yml:4:18: services.web.depends_on: service \"web\" depends on \"db\", which is not defined"),
        ("cycle.yml", "cycle.yml:4:18: services.a.depends_on: dependency cycle: a -> b -> a"),
        ("bad_port.yml", "bad_port.yml:5:9: services.web.ports: invalid port \"80:80:80:80\""),
        ("bad_volume.yml", "bad_volume.yml:5:9: services.web.volumes: invalid volume specification \"data:relative/path\""),
        ("unknown_key.yml", "unknown_key.yml:4:5: services.web.imgae: unknown service key"),
        ("required_var.yml", "required_var.yml:3:12: services.web.image: required variable NEEDED is missing a value: please set NEEDED"),
        ("bad_yaml.yml", "bad_yaml.yml:3:12: "),
        ("include.yml", "include.yml:1:1: include: not supported by shoal"),
    ];
    for (file, want) in cases {
        let (code, out, err) = compose(&["-f", &format!("errors/{file}"), "config"], &[]);
        assert_ne!(code, 0, "{file} was accepted:\n{out}");
        assert!(out.is_empty(), "{file}: {out}");
        assert!(err.contains(want), "{file}: expected {want:?} in:\n{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn invalid_project_name_is_refused() {
    let (code, _, err) = compose(&["-f", "full.yml", "-p", "Not Valid", "config"], ENV);
    assert_ne!(code, 0);
    assert!(err.contains("invalid project name \"Not Valid\""), "{err}");
}

/// src/compose is pure (design rule): no file system, no clock, no sockets, no runtime.
#[test]
fn compose_model_does_no_io() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/compose");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for banned in [
            "std::fs",
            "rustix",
            "smol",
            "SystemTime",
            "Instant",
            "std::net::Tcp",
            "std::process",
            "std::env",
        ] {
            assert!(!text.contains(banned), "{} uses {banned}", path.display());
        }
    }
}
