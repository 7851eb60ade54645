//! The admin page over real HTTP, inside the lab's network namespace: the token, sign-in,
//! CSRF, the wrong-token back-off, the pages and actions, `/metrics` as Prometheus text, and
//! the guard against slowloris, huge headers and floods (the Docker API socket must keep
//! answering, the daemon's memory must stay put). Needs root, busybox-static and iproute2.

mod harness;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use harness::{eventually, Lab};

const PORT: u16 = 2380;

/// Run `f` on a thread that has joined the lab's network namespace (sockets made there stay
/// in it wherever they are used).
fn in_netns<T: Send + 'static>(lab: &Lab, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{}", lab.netns);
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on an open namespace file only changes this thread's network namespace.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

/// A TCP connection to the admin page from `src` (any 127/8 address inside the namespace).
fn connect_from(lab: &Lab, src: Ipv4Addr) -> TcpStream {
    in_netns(lab, move || {
        use rustix::net::{bind, connect, socket, AddressFamily, SocketType};
        let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        bind(&fd, &SocketAddrV4::new(src, 0)).unwrap();
        connect(&fd, &SocketAddrV4::new(Ipv4Addr::LOCALHOST, PORT)).unwrap();
        TcpStream::from(fd)
    })
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse_resp(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

/// One request; `extra` are whole header lines.
fn request(lab: &Lab, src: Ipv4Addr, method: &str, path: &str, extra: &[String], body: &str) -> Resp {
    let mut s = connect_from(lab, src);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\n");
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_resp(&raw)
}

const ME: Ipv4Addr = Ipv4Addr::LOCALHOST;

struct Session {
    cookie: String,
    csrf: String,
}

fn token_of(lab: &Lab) -> String {
    let out = std::process::Command::new(harness::BIN)
        .args(["admin", "token", "--root"])
        .arg(&lab.root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn login(lab: &Lab, token: &str) -> Session {
    let r = request(lab, ME, "POST", "/login", &[], &format!("token={token}"));
    assert_eq!(r.status, 303, "{r:?}");
    let set = r.header("Set-Cookie").expect("a session cookie").to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let page = get(lab, &cookie, "/");
    assert_eq!(page.status, 200);
    let csrf = page
        .body
        .split("name=csrf value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a CSRF field")
        .to_string();
    Session { cookie, csrf }
}

fn get(lab: &Lab, cookie: &str, path: &str) -> Resp {
    request(lab, ME, "GET", path, &[format!("Cookie: {cookie}")], "")
}

fn post(lab: &Lab, s: &Session, path: &str, form: &str) -> Resp {
    request(
        lab,
        ME,
        "POST",
        path,
        &[
            format!("Cookie: {}", s.cookie),
            format!("Origin: http://127.0.0.1:{PORT}"),
        ],
        &format!("csrf={}&{form}", s.csrf),
    )
}

fn state(lab: &Lab, name: &str) -> String {
    lab.ok(&["inspect", "-f", "{{.State.Status}}", name])
}

fn rss_kib(lab: &Lab) -> u64 {
    let pid = lab.daemon_pid().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Time for a `/_ping` on the Docker API socket.
fn api_ping(lab: &Lab) -> Duration {
    let t0 = Instant::now();
    let mut s = UnixStream::connect(&lab.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.ends_with("OK"), "{out}");
    t0.elapsed()
}

fn admin_lab(name: &str) -> Lab {
    Lab::with_daemon_args(name, &["--admin-addr", &format!("127.0.0.1:{PORT}")])
}

/// A strict reader of Prometheus's text format 0.0.4: every line is a HELP, a TYPE or a
/// sample; names and labels are well-formed; each family is typed once, before its samples;
/// no series repeats. Returns (name with labels, value) pairs.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    fn is_name(s: &str) -> bool {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
    }
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    let mut typed: std::collections::HashMap<String, String> = Default::default();
    let mut helped = std::collections::HashSet::new();
    let mut series = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(is_name(name) && helped.insert(name.to_string()), "{}", at());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(is_name(name), "{}", at());
            assert!(
                matches!(kind, "counter" | "gauge" | "histogram" | "summary" | "untyped"),
                "{}",
                at()
            );
            assert!(
                typed.insert(name.to_string(), kind.to_string()).is_none(),
                "typed twice: {}",
                at()
            );
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{}", at());
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        assert!(is_name(name), "{}", at());
        assert!(typed.contains_key(name), "sample before its TYPE: {}", at());
        let mut rest = &line[name_end..];
        let mut key = name.to_string();
        if let Some(labels) = rest.strip_prefix('{') {
            // name="value" pairs separated by commas; values escape \\, \" and \n.
            let bytes = labels.as_bytes();
            let mut i = 0;
            loop {
                let eq = labels[i..]
                    .find('=')
                    .map(|p| p + i)
                    .unwrap_or_else(|| panic!("{}", at()));
                assert!(is_name(&labels[i..eq]), "bad label name: {}", at());
                assert_eq!(bytes.get(eq + 1), Some(&b'"'), "{}", at());
                i = eq + 2;
                loop {
                    match bytes.get(i) {
                        Some(b'\\') => {
                            assert!(
                                matches!(bytes.get(i + 1), Some(b'\\' | b'"' | b'n')),
                                "bad escape: {}",
                                at()
                            );
                            i += 2;
                        }
                        Some(b'"') => break,
                        Some(_) => i += 1,
                        None => panic!("unterminated label value: {}", at()),
                    }
                }
                i += 1;
                match bytes.get(i) {
                    Some(b',') => i += 1,
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    _ => panic!("expected , or }} after a label: {}", at()),
                }
            }
            key.push('{');
            key.push_str(&labels[..i]);
            rest = &labels[i..];
        }
        let mut parts = rest.trim_start_matches(' ').split(' ');
        let value = parts.next().unwrap();
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {}", at())),
        };
        if let Some(ts) = parts.next() {
            ts.parse::<i64>()
                .unwrap_or_else(|_| panic!("bad timestamp: {}", at()));
        }
        assert!(parts.next().is_none(), "{}", at());
        assert!(series.insert(key.clone()), "repeated series: {}", at());
        out.push((key, v));
    }
    out
}

#[test]
fn every_page_and_action_needs_the_token_and_actions_need_csrf() {
    let lab = admin_lab("admin-auth");
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "echo hello from web; sleep 300",
    ]);
    let token = token_of(&lab);
    assert_eq!(token.len(), 64);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(lab.root.join("admin/token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Without a token: every page, feed and action is refused, and nothing happens.
    for path in [
        "/",
        "/containers",
        "/containers/web",
        "/containers/web/logs/stream",
        "/projects",
        "/images",
        "/networks",
        "/volumes",
        "/events",
        "/events/stream",
        "/metrics",
    ] {
        let r = request(&lab, ME, "GET", path, &[], "");
        assert_eq!(r.status, 401, "GET {path}: {r:?}");
        assert!(!r.body.contains("hello from web") && !r.body.contains("shoal_containers"));
        let r = request(&lab, ME, "GET", path, &["Cookie: shoal_admin=forged".into()], "");
        assert_eq!(r.status, 401, "GET {path} with a forged cookie");
    }
    for (path, form) in [
        ("/containers/web", "do=stop"),
        ("/containers/web", "do=remove"),
        ("/projects/p", "do=stop"),
        ("/images/busybox/remove", ""),
        ("/images/prune", ""),
        ("/networks/prune", ""),
        ("/networks/bridge/remove", ""),
        ("/volumes/prune", ""),
        ("/volumes/v/remove", ""),
        ("/logout", ""),
    ] {
        let r = request(&lab, ME, "POST", path, &[], form);
        assert_eq!(r.status, 401, "POST {path}: {r:?}");
    }
    assert_eq!(state(&lab, "web"), "running");

    // Sign in; the pages answer.
    let s = login(&lab, &token);
    for path in [
        "/",
        "/containers",
        "/containers/web",
        "/projects",
        "/images",
        "/networks",
        "/volumes",
        "/events",
    ] {
        let r = get(&lab, &s.cookie, path);
        assert_eq!(r.status, 200, "GET {path}");
        assert!(r.body.len() <= 50 * 1024, "{path} weighs {} bytes", r.body.len());
        assert!(r.body.contains("name=viewport"), "{path}");
        assert!(r.header("Content-Security-Policy").is_some());
    }
    assert!(get(&lab, &s.cookie, "/containers/web")
        .body
        .contains("hello from web"));

    // Actions: without the CSRF token, with a wrong one, or from another origin: refused.
    let cookie = format!("Cookie: {}", s.cookie);
    let origin = format!("Origin: http://127.0.0.1:{PORT}");
    let r = request(
        &lab,
        ME,
        "POST",
        "/containers/web",
        &[cookie.clone(), origin.clone()],
        "do=stop",
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = request(
        &lab,
        ME,
        "POST",
        "/containers/web",
        std::slice::from_ref(&cookie),
        "csrf=0000&do=stop",
    );
    assert_eq!(r.status, 403);
    let r = request(
        &lab,
        ME,
        "POST",
        "/containers/web",
        &[cookie.clone(), "Origin: http://evil.example".into()],
        &format!("csrf={}&do=stop", s.csrf),
    );
    assert_eq!(r.status, 403);
    let r = request(
        &lab,
        ME,
        "POST",
        "/containers/web",
        &[cookie.clone(), "Referer: http://evil.example/x".into()],
        &format!("csrf={}&do=stop", s.csrf),
    );
    assert_eq!(r.status, 403);
    assert_eq!(state(&lab, "web"), "running");

    // With it: the action happens and the answer leads back.
    let r = post(&lab, &s, "/containers/web", "do=stop&back=%2Fcontainers");
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("Location"), Some("/containers"));
    assert_eq!(state(&lab, "web"), "exited");
    let events = get(&lab, &s.cookie, "/events").body;
    assert!(
        events.contains("<td>die</td>") && events.contains("<td>stop</td>"),
        "{events}"
    );

    // A bearer token works for scripts (no cookie, hence no CSRF to forge).
    let bearer = format!("Authorization: Bearer {token}");
    let r = request(
        &lab,
        ME,
        "POST",
        "/containers/web",
        std::slice::from_ref(&bearer),
        "do=start",
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(state(&lab, "web"), "running");
    let r = request(&lab, ME, "GET", "/metrics", std::slice::from_ref(&bearer), "");
    assert_eq!(r.status, 200);
    assert!(r
        .header("Content-Type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let samples = parse_prometheus(&r.body);
    let value = |k: &str| samples.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    assert_eq!(
        value("shoal_containers{state=\"running\"}"),
        Some(1.0),
        "{}",
        r.body
    );
    assert_eq!(value("shoal_images"), Some(1.0));
    assert!(value("shoal_daemon_resident_memory_bytes").unwrap() > 1e6);
    assert!(samples
        .iter()
        .any(|(n, v)| n.starts_with("shoal_container_memory_bytes{") && *v > 0.0));
    assert!(samples
        .iter()
        .any(|(n, _)| n.starts_with("shoal_build_info{version=")));

    // Images and networks: remove and prune.
    lab.ok(&["network", "create", "junk"]);
    lab.ok(&["tag", "busybox", "busybox:spare"]);
    let imgs = get(&lab, &s.cookie, "/images").body;
    assert!(imgs.contains("busybox:spare"));
    let r = post(&lab, &s, "/networks/prune", "back=%2Fnetworks");
    assert_eq!(r.status, 303);
    assert!(!get(&lab, &s.cookie, "/networks").body.contains("junk"));
    // Volumes: listed; one in use cannot be removed, a free one can.
    lab.ok(&["volume", "create", "spare"]);
    lab.ok(&[
        "run", "-d", "--name", "holder", "-v", "held:/h", "busybox", "sleep", "1000",
    ]);
    let vols = get(&lab, &s.cookie, "/volumes").body;
    assert!(vols.contains("spare") && vols.contains("held"), "{vols}");
    assert!(
        !vols.contains("/volumes/held/remove"),
        "an in-use volume has no Remove button"
    );
    let r = post(&lab, &s, "/volumes/held/remove", "back=%2Fvolumes");
    assert_eq!(r.status, 409, "{}", r.body);
    let r = post(&lab, &s, "/volumes/spare/remove", "back=%2Fvolumes");
    assert_eq!(r.status, 303);
    assert_eq!(lab.ok(&["volume", "ls", "-q"]), "held");
    lab.ok(&["rm", "-f", "holder"]);
    // busybox is in use by `web`: refused with a reason.
    let id = lab.ok(&["image", "inspect", "-f", "{{.Id}}", "busybox"]);
    let r = post(&lab, &s, &format!("/images/{id}/remove"), "");
    assert_eq!(r.status, 409);
    assert!(r.body.contains("is used by container"), "{}", r.body);

    // Log out: the cookie stops working.
    let r = post(&lab, &s, "/logout", "");
    assert_eq!(r.status, 303);
    assert_eq!(get(&lab, &s.cookie, "/").status, 401);

    // Wrong tokens from one address back off that address only, and are logged.
    let other = Ipv4Addr::new(127, 0, 0, 2);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(request(&lab, other, "POST", "/login", &[], "token=wrong").status);
    }
    assert_eq!(statuses[..4], [401, 401, 401, 401], "{statuses:?}");
    assert_eq!(statuses[4], 429, "{statuses:?}");
    let r = request(&lab, other, "POST", "/login", &[], &format!("token={token}"));
    assert_eq!(r.status, 429, "the right token waits too while backing off");
    assert!(r.header("Retry-After").is_some());
    let r = request(
        &lab,
        other,
        "GET",
        "/metrics",
        &["Authorization: Bearer nope".into()],
        "",
    );
    assert_eq!(r.status, 429);
    assert_eq!(
        request(&lab, ME, "GET", "/metrics", std::slice::from_ref(&bearer), "").status,
        200
    );
    assert!(lab.daemon_log().contains("wrong token from 127.0.0.2"));
    // The back-off ends.
    std::thread::sleep(Duration::from_millis(2100));
    let r = request(&lab, other, "POST", "/login", &[], &format!("token={token}"));
    assert_eq!(r.status, 303);
}

#[test]
fn slowloris_huge_headers_and_floods_do_not_hurt() {
    let lab = admin_lab("admin-guard");
    let token = token_of(&lab);
    let s = login(&lab, &token);
    // Warm up every path once, so what follows measures growth, not first use.
    for _ in 0..3 {
        for path in ["/", "/containers", "/images", "/networks", "/events", "/metrics"] {
            assert_eq!(get(&lab, &s.cookie, path).status, 200);
        }
    }
    let rss0 = rss_kib(&lab);

    // Slowloris: 20 clients dribbling a head one header line at a time.
    let mut slow: Vec<TcpStream> = (0..20).map(|_| connect_from(&lab, ME)).collect();
    for c in &mut slow {
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    }
    let started = Instant::now();
    let mut worst_ping = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(4) {
        for c in &mut slow {
            let _ = c.write_all(b"X-Slow: 1\r\n");
        }
        worst_ping = worst_ping.max(api_ping(&lab));
        // Other clients are still served meanwhile.
        assert_eq!(get(&lab, &s.cookie, "/containers").status, 200);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        worst_ping < Duration::from_millis(500),
        "API ping took {worst_ping:?}"
    );
    // The request deadline (10 s) ends them with a 408.
    let mut c = slow.pop().unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(13));
    drop(slow);

    // A 1 MB header: refused after the head cap, never buffered.
    let mut big = connect_from(&lab, ME);
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 1 << 20));
    req.extend_from_slice(b"\r\n\r\n");
    let wrote = big.write_all(&req);
    let mut answer = Vec::new();
    let _ = big.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    // Either the 431 arrives, or the connection is reset while the client is still sending.
    assert!(
        answer.starts_with("HTTP/1.1 431") || wrote.is_err(),
        "{answer:?} {wrote:?}"
    );
    assert_eq!(get(&lab, &s.cookie, "/").status, 200);

    // A flood: 200 connections at once, held open. Those over the cap get 503 at once.
    let flood: Vec<TcpStream> = (0..200).map(|_| connect_from(&lab, ME)).collect();
    let ping = api_ping(&lab);
    assert!(
        ping < Duration::from_millis(500),
        "API ping during the flood took {ping:?}"
    );
    let mut refused = 0;
    for mut c in flood.iter().skip(100) {
        c.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut buf = [0u8; 12];
        if c.read(&mut buf).is_ok_and(|n| n > 0) && buf.starts_with(b"HTTP/1.1 503") {
            refused += 1;
        }
    }
    assert!(
        refused >= 90,
        "only {refused} of the last 100 connections were refused"
    );
    drop(flood);
    // Freed slots are taken again.
    assert!(eventually(5, || get(&lab, &s.cookie, "/").status == 200));

    let rss1 = rss_kib(&lab);
    eprintln!("daemon RSS: {rss0} KiB before, {rss1} KiB after slowloris, 1 MB header and flood");
    assert!(
        rss1 <= rss0 + 2048,
        "daemon RSS grew from {rss0} KiB to {rss1} KiB"
    );
}

#[test]
fn fifty_containers_pages_projects_and_memory() {
    let lab = admin_lab("admin-fifty");
    for i in 0..50 {
        let project = format!("com.docker.compose.project=p{}", i % 5);
        let service = format!("com.docker.compose.service=s{i}");
        lab.ok(&[
            "create",
            "--name",
            &format!("c{i:02}"),
            "--label",
            &project,
            "--label",
            &service,
            "-p",
            &format!("{}:80", 10000 + i),
            "busybox",
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 1; done",
        ]);
    }
    for i in 0..10 {
        lab.ok(&["start", &format!("c{i:02}")]);
    }
    let token = token_of(&lab);
    let s = login(&lab, &token);
    let pages = [
        "/",
        "/containers",
        "/containers/c01",
        "/projects",
        "/images",
        "/networks",
        "/events",
    ];
    let mut report = Vec::new();
    for path in pages {
        let mut best = f64::MAX;
        let mut size = 0;
        for _ in 0..5 {
            let r = get(&lab, &s.cookie, path);
            assert_eq!(r.status, 200, "{path}");
            size = r.body.len();
            let dur: f64 = r
                .header("Server-Timing")
                .and_then(|v| v.split("dur=").nth(1))
                .and_then(|v| v.parse().ok())
                .expect("a Server-Timing header");
            best = best.min(dur);
        }
        report.push(format!("{path}: {size} bytes, {best:.2} ms"));
        assert!(size <= 50 * 1024, "{path} weighs {size} bytes");
        // Debug build, cgroup and /proc reads included: a generous bound that still catches
        // anything quadratic. The release numbers are in the benchmark.
        assert!(best <= 50.0, "{path} took {best} ms to build");
    }
    eprintln!(
        "pages with 50 containers (10 running):\n  {}",
        report.join("\n  ")
    );
    let containers = get(&lab, &s.cookie, "/containers").body;
    assert_eq!(containers.matches("<tr><td><a href=\"/containers/").count(), 50);
    assert!(containers.contains("0.0.0.0:10001-&gt;80/tcp"), "ports shown");
    assert_eq!(containers.matches("class=\"s-running\"").count(), 10);

    // A project's containers stop and start together.
    let r = post(&lab, &s, "/projects/p1", "do=start&back=%2Fprojects");
    assert_eq!(r.status, 303, "{r:?}");
    for i in (1..50).step_by(5) {
        assert_eq!(state(&lab, &format!("c{i:02}")), "running");
    }
    let r = post(&lab, &s, "/projects/p1", "do=stop");
    assert_eq!(r.status, 303);
    for i in (1..50).step_by(5) {
        assert_eq!(state(&lab, &format!("c{i:02}")), "exited");
    }
    let projects = get(&lab, &s.cookie, "/projects").body;
    assert!(
        projects.contains("p1 <span class=m>0/10 running</span>"),
        "{projects}"
    );
    // Down: the project's containers and its networks go, other projects stay.
    lab.ok(&[
        "network",
        "create",
        "--label",
        "com.docker.compose.project=p3",
        "p3_default",
    ]);
    lab.ok(&[
        "network",
        "create",
        "--label",
        "com.docker.compose.project=p4",
        "p4_default",
    ]);
    let r = post(&lab, &s, "/projects/p3", "do=down&back=%2Fprojects");
    assert_eq!(r.status, 303, "{r:?}");
    let names = lab.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(
        !names.lines().any(|n| ["c03", "c08", "c48"].contains(&n)),
        "{names}"
    );
    assert!(
        names.lines().any(|n| n == "c04") && names.lines().any(|n| n == "c01"),
        "{names}"
    );
    let nets = lab.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        !nets.contains("p3_default") && nets.contains("p4_default"),
        "{nets}"
    );

    // Memory in use: after a warm-up, 100 rounds of every page move the daemon's RSS by at
    // most 1 MiB.
    for _ in 0..5 {
        for path in pages.iter().chain(&["/metrics"]) {
            get(&lab, &s.cookie, path);
        }
    }
    let rss0 = rss_kib(&lab);
    for _ in 0..100 {
        for path in pages.iter().chain(&["/metrics"]) {
            assert_eq!(get(&lab, &s.cookie, path).status, 200);
        }
    }
    let rss1 = rss_kib(&lab);
    eprintln!("daemon RSS with the admin page in use: {rss0} KiB -> {rss1} KiB after 800 requests");
    assert!(
        rss1 <= rss0 + 1024,
        "daemon RSS grew from {rss0} KiB to {rss1} KiB"
    );
}

#[test]
fn live_feeds_stream_logs_and_events() {
    let lab = admin_lab("admin-feeds");
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.2; done",
    ]);
    let token = token_of(&lab);
    let auth = format!("Authorization: Bearer {token}");
    let mut c = connect_from(&lab, ME);
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "GET /containers/talker/logs/stream HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n"
    )
    .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 1024];
    while got.matches("data: tick").count() < 3 {
        let n = c.read(&mut buf).expect("log lines arrive");
        assert!(n > 0, "stream ended: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        got.starts_with("HTTP/1.1 200") && got.contains("text/event-stream"),
        "{got}"
    );
    drop(c);

    let mut e = connect_from(&lab, ME);
    e.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(e, "GET /events/stream HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    lab.ok(&["stop", "-t", "1", "talker"]);
    let mut got = String::new();
    while !got.contains("<td>stop</td>") {
        let n = e.read(&mut buf).expect("events arrive");
        assert!(n > 0, "stream ended: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        got.contains("<td>die</td>") && got.contains("<td>talker</td>"),
        "{got}"
    );
}

#[test]
fn the_prometheus_checker_rejects_malformed_text() {
    let good = "# HELP a_b x\n# TYPE a_b gauge\na_b{l=\"v\\\"q\",m=\"\"} 1.5\na_b 2\n";
    assert_eq!(parse_prometheus(good).len(), 2);
    for bad in [
        "a_b 1\n",                                       // no TYPE
        "# TYPE a_b gauge\na_b{l=\"v} 1\n",              // unterminated value
        "# TYPE a_b gauge\na_b{1l=\"v\"} 1\n",           // bad label name
        "# TYPE a_b gauge\na_b one\n",                   // bad value
        "# TYPE a_b gauge\na_b 1\na_b 2\n",              // repeated series
        "# TYPE a_b gauge\n# TYPE a_b counter\na_b 1\n", // typed twice
        "# TYPE a_b gauge\na_b{l=\"\\x\"} 1\n",          // bad escape
        "# TYPE a_b gauge\na_b 1",                       // no final newline
    ] {
        let r = std::panic::catch_unwind(|| parse_prometheus(bad));
        assert!(r.is_err(), "accepted {bad:?}");
    }
}

#[test]
fn admin_token_command_explains_what_is_missing() {
    let root = std::env::temp_dir().join(format!("shoal-admin-notoken-{}", std::process::id()));
    let out = std::process::Command::new(harness::BIN)
        .args(["admin", "token", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no admin token yet") && err.contains("--admin-addr"),
        "{err}"
    );
    let out = std::process::Command::new(harness::BIN)
        .args(["admin", "tokn"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command \"tokn\""));
    let out = std::process::Command::new(harness::BIN)
        .args(["daemon", "--admin-addr", "board", "--root"])
        .arg(root.join("root"))
        .arg("--socket")
        .arg(root.join("sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid admin address \"board\""));
    assert!(!root.exists(), "nothing is made before the flags are checked");
}

/// The Up button runs `compose up -d` for the project from its own files: stopped services
/// start again, and a changed service is recreated.
#[test]
fn project_up_from_the_page_runs_compose() {
    let lab = admin_lab("admin-up");
    let dir = lab.dir.join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("compose.yaml");
    let write = |v: &str| {
        std::fs::write(
            &file,
            format!(
                "name: upp\nservices:\n  app:\n    image: busybox:latest\n    environment:\n      V: \"{v}\"\n    command: [\"sleep\", \"1000\"]\n"
            ),
        )
        .unwrap()
    };
    write("one");
    let up = std::process::Command::new(harness::BIN)
        .args([
            "-H",
            &lab.host(),
            "compose",
            "-f",
            file.to_str().unwrap(),
            "up",
            "-d",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    lab.ok(&["stop", "upp-app-1"]);
    let s = login(&lab, &token_of(&lab));
    assert!(get(&lab, &s.cookie, "/projects").body.contains("value=up"));
    let r = post(&lab, &s, "/projects/upp", "do=up&back=%2Fprojects");
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(state(&lab, "upp-app-1"), "running");
    let first = lab.ok(&["inspect", "-f", "{{.Id}}", "upp-app-1"]);
    // The file changed on the board: Up recreates the service with the new setting.
    write("two");
    let r = post(&lab, &s, "/projects/upp", "do=up&back=%2Fprojects");
    assert_eq!(r.status, 303, "{}", r.body);
    let env = lab.ok(&["inspect", "-f", "{{json .Config.Env}}", "upp-app-1"]);
    assert!(env.contains("V=two"), "{env}");
    assert_ne!(lab.ok(&["inspect", "-f", "{{.Id}}", "upp-app-1"]), first);
    // A project that compose did not make cannot be brought up.
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "loose",
        "--label",
        "com.docker.compose.project=loose",
        "busybox",
        "sleep",
        "1000",
    ]);
    let r = post(&lab, &s, "/projects/loose", "do=up&back=%2Fprojects");
    assert_eq!(r.status, 409);
    assert!(r.body.contains("not made by compose"), "{}", r.body);
}
