//! `shoal compose` against a real daemon in the lab: lifecycle, names and labels, service
//! names resolving across the project network, isolation between networks, a named volume
//! shared between services and kept across `down` (gone with `down -v`), a file secret at
//! /run/secrets, scaling up and down, idempotent `up` and recreate on change.

mod harness;

use harness::{stderr, stdout, Lab};

fn compose(lab: &Lab, file: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["compose", "-f", file.to_str().unwrap()];
    all.extend_from_slice(args);
    lab.shoal(&all)
}

fn compose_ok(lab: &Lab, file: &std::path::Path, args: &[&str]) -> String {
    let out = compose(lab, file, args);
    assert!(
        out.status.success(),
        "compose {args:?} failed:\n{}\n{}\ndaemon log:\n{}",
        stdout(&out),
        stderr(&out),
        harness::tail(&lab.daemon_log(), 30)
    );
    stdout(&out)
}

/// Names of the lab's containers, sorted.
fn names(lab: &Lab) -> Vec<String> {
    let mut v: Vec<String> = lab
        .ok(&["ps", "-a", "--format", "{{.Names}}"])
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

const STACK: &str = r#"
name: demo
services:
  web:
    image: busybox:latest
    command: ["sh", "-c", "mkdir -p /www && cat /data/greeting > /www/index.html && httpd -f -p 80 -h /www"]
    volumes:
      - shared:/data
    depends_on:
      seed:
        condition: service_completed_successfully
  seed:
    image: busybox:latest
    command: ["sh", "-c", "echo hello-from-web > /data/greeting"]
    volumes:
      - shared:/data
  client:
    image: busybox:latest
    command: ["sleep", "600"]
    environment:
      ROLE: ${ROLE:-client}
    secrets:
      - token
  loner:
    image: busybox:latest
    command: ["sleep", "600"]
    networks: [other]
networks:
  other:
volumes:
  shared:
secrets:
  token:
    file: ./token.txt
"#;

#[test]
fn stack_lifecycle_names_dns_isolation_volume_secret_scale() {
    let lab = Lab::new("compose-life");
    let file = lab.dir.join("compose.yaml");
    std::fs::write(&file, STACK).unwrap();
    std::fs::write(lab.dir.join("token.txt"), "s3cret\n").unwrap();

    compose_ok(&lab, &file, &["up", "-d"]);
    assert_eq!(
        names(&lab),
        ["demo-client-1", "demo-loner-1", "demo-seed-1", "demo-web-1"]
    );
    let labels = lab.ok(&["inspect", "-f", "{{json .Config.Labels}}", "demo-web-1"]);
    for want in [
        r#""com.docker.compose.project":"demo""#,
        r#""com.docker.compose.service":"web""#,
        r#""com.docker.compose.container-number":"1""#,
        r#""com.docker.compose.oneoff":"False""#,
        r#""com.docker.compose.config-hash":"#,
    ] {
        assert!(labels.contains(want), "{want} not in {labels}");
    }
    let nets = lab.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        nets.contains("demo_default") && nets.contains("demo_other"),
        "{nets}"
    );

    // The seed wrote into the named volume; web serves it; client reaches web by service name.
    let body = harness::eventually(20, || {
        let out = compose(
            &lab,
            &file,
            &["exec", "-T", "client", "wget", "-O", "-", "http://web/"],
        );
        stdout(&out).contains("hello-from-web")
    });
    assert!(
        body,
        "client could not fetch http://web/\n{}",
        harness::tail(&lab.daemon_log(), 20)
    );
    // Another network: the name does not resolve and the service is not reachable.
    let out = compose(
        &lab,
        &file,
        &["exec", "-T", "loner", "wget", "-O", "-", "http://web/"],
    );
    assert!(
        !out.status.success(),
        "loner reached web across networks: {}",
        stdout(&out)
    );
    // The file secret.
    let secret = compose_ok(
        &lab,
        &file,
        &["exec", "-T", "client", "cat", "/run/secrets/token"],
    );
    assert_eq!(secret.trim(), "s3cret");

    // ps lists the project's running containers with the service column.
    let ps = compose_ok(&lab, &file, &["ps"]);
    assert!(ps.lines().next().unwrap().starts_with("NAME"), "{ps}");
    assert!(ps.contains("demo-client-1") && ps.contains(" client "), "{ps}");

    // Idempotent: nothing changes on a second up; a changed service alone is recreated.
    let id = |n: &str| lab.ok(&["inspect", "-f", "{{.Id}}", n]);
    let (web, client) = (id("demo-web-1"), id("demo-client-1"));
    compose_ok(&lab, &file, &["up", "-d"]);
    assert_eq!(
        (id("demo-web-1"), id("demo-client-1")),
        (web.clone(), client.clone())
    );
    let out = lab.shoal(&["compose", "-f", file.to_str().unwrap(), "up", "-d"]);
    assert!(out.status.success());
    let changed = std::process::Command::new(harness::BIN)
        .args([
            "-H",
            &lab.host(),
            "compose",
            "-f",
            file.to_str().unwrap(),
            "up",
            "-d",
        ])
        .env("ROLE", "changed")
        .output()
        .unwrap();
    assert!(changed.status.success(), "{}", stderr(&changed));
    assert_eq!(id("demo-web-1"), web);
    assert_ne!(id("demo-client-1"), client);
    let env = lab.ok(&["inspect", "-f", "{{json .Config.Env}}", "demo-client-1"]);
    assert!(env.contains("ROLE=changed"), "{env}");

    // Scale up and down.
    compose_ok(&lab, &file, &["up", "-d", "--scale", "client=3"]);
    assert!(names(&lab).contains(&"demo-client-3".to_string()));
    compose_ok(&lab, &file, &["up", "-d", "--scale", "client=1"]);
    let n = names(&lab);
    assert!(
        n.contains(&"demo-client-1".to_string()) && !n.contains(&"demo-client-2".to_string()),
        "{n:?}"
    );

    // down keeps the named volume; down -v removes it.
    compose_ok(&lab, &file, &["down", "-t", "1"]);
    assert!(names(&lab).is_empty(), "{:?}", names(&lab));
    let nets = lab.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!nets.contains("demo_"), "{nets}");
    assert!(lab.ok(&["volume", "ls", "-q"]).contains("demo_shared"));
    compose_ok(&lab, &file, &["up", "-d", "web"]);
    compose_ok(&lab, &file, &["down", "-v", "-t", "1"]);
    assert!(!lab.ok(&["volume", "ls", "-q"]).contains("demo_shared"));
}

#[test]
fn bad_file_fails_before_touching_the_daemon() {
    let lab = Lab::new("compose-bad");
    let file = lab.dir.join("compose.yaml");
    std::fs::write(
        &file,
        "services:\n  web:\n    image: busybox\n    ports: [\"99999:80\"]\n",
    )
    .unwrap();
    let out = compose(&lab, &file, &["up", "-d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("compose.yaml:4:13: services.web.ports: invalid port"),
        "{}",
        stderr(&out)
    );
    assert!(names(&lab).is_empty());
}

const HEALTH: &str = r#"
services:
  db:
    image: busybox:latest
    command: ["sh", "-c", "sleep 3; touch /ready; exec sleep 600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/ready"]
      interval: 500ms
      retries: 30
  app:
    image: busybox:latest
    command: ["sleep", "600"]
    depends_on:
      db:
        condition: service_healthy
"#;

#[test]
fn service_healthy_waits_for_a_passing_healthcheck() {
    let lab = Lab::new("compose-health");
    let file = lab.dir.join("compose.yaml");
    std::fs::write(&file, HEALTH).unwrap();
    let began = std::time::Instant::now();
    compose_ok(&lab, &file, &["-p", "hc", "up", "-d"]);
    assert!(
        began.elapsed() >= std::time::Duration::from_secs(3),
        "up did not wait: {:?}",
        began.elapsed()
    );
    let health = lab.ok(&["inspect", "-f", "{{.State.Health.Status}}", "hc-db-1"]);
    assert_eq!(health, "healthy");
    let log = lab.ok(&["inspect", "-f", "{{json .State.Health.Log}}", "hc-db-1"]);
    assert!(log.contains("\"ExitCode\":0"), "{log}");
    // app started only after db was healthy: its start is after db's first passing probe.
    let app_started = lab.ok(&["inspect", "-f", "{{.State.StartedAt}}", "hc-app-1"]);
    let first_pass = lab.ok(&[
        "inspect",
        "-f",
        "{{range .State.Health.Log}}{{if eq .ExitCode 0}}{{.End}} {{end}}{{end}}",
        "hc-db-1",
    ]);
    let first_pass = first_pass.split_whitespace().next().unwrap_or("").to_string();
    assert!(!first_pass.is_empty());
    let ps = lab.ok(&["ps"]);
    assert!(ps.contains("(healthy)"), "{ps}");
    assert!(
        app_started.as_str() >= first_pass.as_str() || log.matches("ExitCode").count() == 5,
        "app {app_started} before healthy {first_pass}"
    );
    compose_ok(&lab, &file, &["-p", "hc", "down", "-t", "1"]);
    // `up --wait` returns once every service with a healthcheck is healthy.
    compose_ok(&lab, &file, &["-p", "hc", "up", "--wait", "--no-deps", "db"]);
    assert_eq!(
        lab.ok(&["inspect", "-f", "{{.State.Health.Status}}", "hc-db-1"]),
        "healthy"
    );
    assert_eq!(names(&lab), ["hc-db-1"]);
    compose_ok(&lab, &file, &["-p", "hc", "down", "-t", "1"]);
    // An unhealthy dependency fails `up` with a clear error.
    std::fs::write(
        &file,
        HEALTH
            .replace(r#"["CMD", "test", "-f", "/ready"]"#, r#"["CMD-SHELL", "exit 1"]"#)
            .replace("retries: 30", "retries: 2"),
    )
    .unwrap();
    let out = compose(&lab, &file, &["-p", "hc", "up", "-d"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("hc-db-1 is unhealthy"), "{}", stderr(&out));
    compose_ok(&lab, &file, &["-p", "hc", "down", "-t", "1"]);
}

/// The seed notes' first file, verbatim: drupal and postgres with four named volumes.
const SEED_DRUPAL: &str = "version: '2'

services:
  drupal:
    image: drupal
    ports:
      - \"8080:80\"
    volumes:
      - drupal-modules:/var/www/html/modules
      - drupal-profiles:/var/www/html/profiles
      - drupal-sites:/var/www/html/sites
      - drupal-themes:/var/www/html/themes
  postgres:
    image: postgres
    environment:
      - POSTGRES_PASSWORD=mypasswd

volumes:
  drupal-modules:
  drupal-profiles:
  drupal-sites:
  drupal-themes:
";

/// Stand-ins under the names the seed file uses: busybox serving HTTP on 80, and a sleeper.
fn stand_in_images(lab: &Lab) {
    let tar = std::fs::read(harness::busybox_tar()).unwrap();
    for (name, cmd) in [
        (
            "drupal:latest",
            r#"CMD ["sh", "-c", "mkdir -p /www && echo drupal-stand-in > /www/index.html && exec httpd -f -p 80 -h /www"]"#,
        ),
        (
            "postgres:latest",
            r#"CMD ["sh", "-c", "test -n \"$POSTGRES_PASSWORD\" && exec sleep 3600"]"#,
        ),
    ] {
        let out = lab.shoal_stdin(&["import", "--change", cmd, "-", name], &tar);
        assert!(out.status.success(), "import {name}: {}", stderr(&out));
    }
}

fn http_code(lab: &Lab, url: &str) -> String {
    stdout(&lab.in_netns(&["curl", "-s", "-m", "3", url]))
}

#[test]
fn seed_drupal_file_runs_verbatim_and_down_v_removes_its_volumes() {
    let lab = Lab::new("compose-seed");
    stand_in_images(&lab);
    let dir = lab.dir.join("Drupal_Site");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("docker-compose.yaml");
    std::fs::write(&file, SEED_DRUPAL).unwrap();
    let out = compose(&lab, &file, &["up", "-d"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        harness::tail(&lab.daemon_log(), 20)
    );
    assert!(stderr(&out).contains("`version` is obsolete"), "{}", stderr(&out));
    // The project name is the directory's, normalised.
    assert_eq!(names(&lab), ["drupal_site-drupal-1", "drupal_site-postgres-1"]);
    let vols = lab.ok(&["volume", "ls", "-q"]);
    for v in ["modules", "profiles", "sites", "themes"] {
        assert!(vols.contains(&format!("drupal_site_drupal-{v}")), "{vols}");
    }
    assert!(harness::eventually(10, || http_code(
        &lab,
        "http://127.0.0.1:8080/"
    )
    .contains("drupal-stand-in")));
    let state = lab.ok(&["inspect", "-f", "{{.State.Status}}", "drupal_site-postgres-1"]);
    assert_eq!(state, "running", "POSTGRES_PASSWORD did not reach the container");
    compose_ok(&lab, &file, &["down", "-v", "-t", "1"]);
    assert!(names(&lab).is_empty());
    let vols = lab.ok(&["volume", "ls", "-q"]);
    assert!(!vols.contains("drupal_site_"), "{vols}");
}

#[test]
fn debian_docker_compose_drives_shoal() {
    if std::process::Command::new("docker-compose")
        .arg("version")
        .output()
        .is_err()
    {
        panic!("docker-compose (Debian's 1.29) is needed: tests/lib/deps.sh installs it");
    }
    let lab = Lab::new("compose-dc");
    stand_in_images(&lab);
    let dir = lab.dir.join("dc");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("docker-compose.yml"), SEED_DRUPAL).unwrap();
    let dc = |args: &[&str]| {
        std::process::Command::new("docker-compose")
            .args(args)
            .current_dir(&dir)
            .env("DOCKER_HOST", lab.host())
            .env("COMPOSE_INTERACTIVE_NO_CLI", "1")
            .output()
            .unwrap()
    };
    let out = dc(&["up", "-d"]);
    assert!(
        out.status.success(),
        "docker-compose up: {}\n{}\n{}",
        stdout(&out),
        stderr(&out),
        harness::tail(&lab.daemon_log(), 20)
    );
    assert_eq!(names(&lab), ["dc_drupal_1", "dc_postgres_1"]);
    assert!(harness::eventually(10, || http_code(
        &lab,
        "http://127.0.0.1:8080/"
    )
    .contains("drupal-stand-in")));
    let out = dc(&["ps"]);
    assert!(out.status.success(), "docker-compose ps: {}", stderr(&out));
    let ps = stdout(&out);
    assert!(
        ps.contains("dc_drupal_1") && ps.contains("Up") && ps.contains("8080->80/tcp"),
        "{ps}"
    );
    // shoal's compose sees docker-compose's project by its labels.
    let ours = lab.ok(&[
        "compose",
        "-p",
        "dc",
        "-f",
        dir.join("docker-compose.yml").to_str().unwrap(),
        "ps",
    ]);
    assert!(ours.contains("dc_postgres_1"), "{ours}");
    let out = dc(&["down", "-v"]);
    assert!(
        out.status.success(),
        "docker-compose down: {}\n{}",
        stderr(&out),
        harness::tail(&lab.daemon_log(), 20)
    );
    assert!(names(&lab).is_empty());
}

const THREE: &str = r#"
services:
  a:
    image: busybox:latest
    command: ["sleep", "600"]
    volumes: [one:/one]
  b:
    image: busybox:latest
    command: ["sleep", "600"]
    volumes: [two:/two]
  c:
    image: busybox:latest
    command: ["sleep", "600"]
    networks: [back]
networks:
  back:
volumes:
  one:
  two:
"#;

/// `compose up -d` of three services with a network and two volumes, against three
/// `shoal run -d` of the same containers; prints both times (the issue's aim is ≤ 3×).
#[test]
fn up_time_of_a_three_service_stack() {
    let lab = Lab::new("compose-time");
    let file = lab.dir.join("compose.yaml");
    std::fs::write(&file, THREE).unwrap();
    let mut runs = Vec::new();
    let mut ups = Vec::new();
    for round in 0..3 {
        let t = std::time::Instant::now();
        for n in ["a", "b", "c"] {
            lab.ok(&[
                "run",
                "-d",
                "--name",
                &format!("r{round}{n}"),
                "busybox:latest",
                "sleep",
                "600",
            ]);
        }
        runs.push(t.elapsed());
        let t = std::time::Instant::now();
        compose_ok(&lab, &file, &["-p", &format!("t{round}"), "up", "-d"]);
        ups.push(t.elapsed());
        assert_eq!(
            lab.ok(&[
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.compose.project=t{round}")
            ])
            .lines()
            .count(),
            3
        );
    }
    runs.sort();
    ups.sort();
    eprintln!(
        "compose up -d (3 services, 1 network, 2 volumes): median {:?}; 3 x shoal run -d: median {:?}; ratio {:.2}",
        ups[1],
        runs[1],
        ups[1].as_secs_f64() / runs[1].as_secs_f64()
    );
}

/// The seed notes' second project, verbatim: a proxy built from nginx.Dockerfile in front of
/// a web server with a bind-mounted html folder.
const SEED_PROXY: &str = "version: '2'

# 仅使用 nginx.conf 到 image

services:
  proxy:
    build:
      context: .
      dockerfile: nginx.Dockerfile
    ports:
      - '80:80'
  web:
    image: httpd
    volumes:
      - ./html:/usr/local/apache2/htdocs/
";

const NGINX_DOCKERFILE: &str = "FROM nginx:1.13\n\nCOPY nginx.conf /etc/nginx/conf.d/default.conf\n";

const NGINX_CONF: &str = "server {

  listen 80;

  location / {

    proxy_pass         http://web;
    proxy_redirect     off;
    proxy_set_header   Host $host;
    proxy_set_header   X-Real-IP $remote_addr;
    proxy_set_header   X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header   X-Forwarded-Host $server_name;

  }
}
";

/// A stand-in "nginx": answers each connection on :80 with what `proxy_pass` in its
/// default.conf serves, so the COPY in nginx.Dockerfile decides where requests go.
const PROXY_STAND_IN: &str = r#"#!/bin/sh
read -r request
target=$(sed -n 's/.*proxy_pass *http:\/\/\([^;]*\);.*/\1/p' /etc/nginx/conf.d/default.conf)
body=$(wget -q -O- "http://$target/")
printf 'HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n%s\n' "$body"
"#;

#[test]
fn seed_proxy_file_builds_and_serves_through_the_proxy() {
    let lab = Lab::new("compose-proxy");
    let tar = std::fs::read(harness::busybox_tar()).unwrap();
    let cmd = r#"CMD ["httpd", "-f", "-p", "80", "-h", "/usr/local/apache2/htdocs"]"#;
    let out = lab.shoal_stdin(&["import", "--change", cmd, "-", "httpd:latest"], &tar);
    assert!(out.status.success(), "{}", stderr(&out));
    let nginx = lab.dir.join("nginx-stand-in");
    std::fs::create_dir_all(&nginx).unwrap();
    std::fs::write(nginx.join("proxy.sh"), PROXY_STAND_IN).unwrap();
    std::fs::write(
        nginx.join("Dockerfile"),
        "FROM busybox:latest\nCOPY proxy.sh /proxy.sh\nRUN chmod 755 /proxy.sh && mkdir -p /etc/nginx/conf.d\nCMD [\"nc\", \"-ll\", \"-p\", \"80\", \"-e\", \"/proxy.sh\"]\n",
    )
    .unwrap();
    lab.ok(&["build", "-t", "nginx:1.13", nginx.to_str().unwrap()]);

    let dir = lab.dir.join("site");
    std::fs::create_dir_all(dir.join("html")).unwrap();
    std::fs::write(dir.join("docker-compose.yml"), SEED_PROXY).unwrap();
    std::fs::write(dir.join("nginx.Dockerfile"), NGINX_DOCKERFILE).unwrap();
    std::fs::write(dir.join("nginx.conf"), NGINX_CONF).unwrap();
    std::fs::write(dir.join("html/index.html"), "<h1>agency template</h1>\n").unwrap();
    let file = dir.join("docker-compose.yml");
    compose_ok(&lab, &file, &["up", "-d"]);
    assert_eq!(names(&lab), ["site-proxy-1", "site-web-1"]);
    assert!(lab
        .ok(&["images", "--format", "{{.Repository}}"])
        .contains("site-proxy"));
    let mut last = String::new();
    let served = harness::eventually(15, || {
        last = http_code(&lab, "http://127.0.0.1:80/");
        last.contains("agency template")
    });
    assert!(served, "through the proxy: {last:?}");
    compose_ok(&lab, &file, &["down", "--rmi", "local", "-t", "1"]);
    assert!(names(&lab).is_empty());
    let images = lab.ok(&["images", "--format", "{{.Repository}}"]);
    assert!(
        !images.contains("site-proxy") && images.contains("httpd"),
        "{images}"
    );
}

/// A UDP port published by compose reaches the engine as a udp binding. (The busybox test
/// image has no UDP server applet, so no datagram is exchanged here.)
#[test]
fn udp_port_is_published_as_udp() {
    let lab = Lab::new("compose-udp");
    let file = lab.dir.join("compose.yaml");
    std::fs::write(
        &file,
        "services:\n  time:\n    image: busybox:latest\n    command: [\"sleep\", \"600\"]\n    ports:\n      - \"5123:123/udp\"\n      - target: 53\n        published: \"5353\"\n        protocol: udp\n",
    )
    .unwrap();
    compose_ok(&lab, &file, &["-p", "udp", "up", "-d"]);
    let port = lab.ok(&["port", "udp-time-1"]);
    assert!(port.contains("123/udp -> 0.0.0.0:5123"), "{port}");
    assert!(port.contains("53/udp -> 0.0.0.0:5353"), "{port}");
    assert!(!port.contains("/tcp"), "{port}");
    compose_ok(&lab, &file, &["-p", "udp", "down", "-t", "1"]);
}

#[test]
fn other_verbs_stop_start_restart_logs_run_rm_ls_top() {
    let lab = Lab::new("compose-verbs");
    let file = lab.dir.join("compose.yaml");
    std::fs::write(
        &file,
        "name: verbs\nservices:\n  talker:\n    image: busybox:latest\n    command: [\"sh\", \"-c\", \"echo said-hello; exec sleep 600\"]\n",
    )
    .unwrap();
    compose_ok(&lab, &file, &["up", "-d"]);
    let state = |lab: &Lab| lab.ok(&["inspect", "-f", "{{.State.Status}}", "verbs-talker-1"]);
    assert!(harness::eventually(5, || compose_ok(&lab, &file, &["logs"])
        .contains("verbs-talker-1 | said-hello")));
    compose_ok(&lab, &file, &["stop", "-t", "1"]);
    assert_eq!(state(&lab), "exited");
    compose_ok(&lab, &file, &["start"]);
    assert_eq!(state(&lab), "running");
    let before = lab.ok(&["inspect", "-f", "{{.State.StartedAt}}", "verbs-talker-1"]);
    compose_ok(&lab, &file, &["restart", "-t", "1"]);
    assert_ne!(
        lab.ok(&["inspect", "-f", "{{.State.StartedAt}}", "verbs-talker-1"]),
        before
    );
    let ls = compose_ok(&lab, &file, &["ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("verbs") && l.contains("running(1)")),
        "{ls}"
    );
    let top = compose_ok(&lab, &file, &["top"]);
    assert!(top.contains("sleep 600"), "{top}");
    // A one-off: its own container, labelled oneoff, removed with --rm; its exit code returned.
    let out = compose(
        &lab,
        &file,
        &["run", "--rm", "-T", "talker", "sh", "-c", "echo one-off; exit 3"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stdout(&out).contains("one-off"), "{}", stdout(&out));
    assert_eq!(names(&lab), ["verbs-talker-1"]);
    compose_ok(&lab, &file, &["stop", "-t", "1"]);
    compose_ok(&lab, &file, &["rm", "-f"]);
    assert!(names(&lab).is_empty());
    compose_ok(&lab, &file, &["down"]);
}

/// The healthcheck flags of `run` (the same State.Health compose's service_healthy reads).
#[test]
fn run_health_flags_drive_state_health() {
    let lab = Lab::new("health-flags");
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "good",
        "--health-cmd",
        "true",
        "--health-interval",
        "300ms",
        "busybox:latest",
        "sleep",
        "600",
    ]);
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "bad",
        "--health-cmd",
        "echo failing; exit 1",
        "--health-interval",
        "300ms",
        "--health-retries",
        "2",
        "busybox:latest",
        "sleep",
        "600",
    ]);
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "none",
        "--no-healthcheck",
        "busybox:latest",
        "sleep",
        "600",
    ]);
    assert!(harness::eventually(10, || lab.ok(&[
        "inspect",
        "-f",
        "{{.State.Health.Status}}",
        "good"
    ]) == "healthy"));
    assert!(harness::eventually(10, || lab.ok(&[
        "inspect",
        "-f",
        "{{.State.Health.Status}}",
        "bad"
    ]) == "unhealthy"));
    let bad = lab.ok(&[
        "inspect",
        "-f",
        "{{.State.Health.FailingStreak}} {{(index .State.Health.Log 0).Output}}",
        "bad",
    ]);
    assert!(
        bad.starts_with('2') || bad.starts_with('3') || bad.starts_with('4'),
        "{bad}"
    );
    assert!(bad.contains("failing"), "{bad}");
    let ps = lab.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        ps.lines()
            .any(|l| l.starts_with("good ") && l.ends_with("(healthy)")),
        "{ps}"
    );
    assert!(
        ps.lines()
            .any(|l| l.starts_with("bad ") && l.ends_with("(unhealthy)")),
        "{ps}"
    );
    assert!(
        ps.lines()
            .any(|l| l.starts_with("none ") && !l.contains("health")),
        "{ps}"
    );
    let out = lab.shoal(&["run", "-d", "--health-interval", "soon", "busybox:latest"]);
    assert!(
        !out.status.success() && stderr(&out).contains("invalid duration"),
        "{}",
        stderr(&out)
    );
}

/// `up` without -d prints the services' logs and stops them on Ctrl-C.
#[test]
fn attached_up_follows_logs_and_ctrl_c_stops() {
    use std::io::{BufRead, BufReader};
    let lab = Lab::new("compose-attached");
    let file = lab.dir.join("compose.yaml");
    std::fs::write(&file, "name: att\nservices:\n  ticker:\n    image: busybox:latest\n    command: [\"sh\", \"-c\", \"echo tick-started; exec sleep 600\"]\n").unwrap();
    let mut child = std::process::Command::new(harness::BIN)
        .args(["-H", &lab.host(), "compose", "-f", file.to_str().unwrap(), "up"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert_eq!(first, "att-ticker-1 | tick-started");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(
        lab.ok(&["inspect", "-f", "{{.State.Status}}", "att-ticker-1"]),
        "exited"
    );
    compose_ok(&lab, &file, &["down"]);
}
