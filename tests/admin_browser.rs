//! The admin page in a real browser: headless Chromium driven through chromedriver's
//! WebDriver HTTP API, both inside the lab's network namespace. Signs in, sees a running
//! container, stops it, sees the state change, reads its logs (following new lines live),
//! and saves a screenshot of every page (desktop and phone widths). Needs root, iproute2,
//! busybox-static, and Debian's chromium + chromium-driver (tests/lib/deps.sh installs them);
//! says SKIP without them.

mod harness;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use harness::Lab;

const ADMIN_PORT: u16 = 2380;
const DRIVER_PORT: u16 = 9515;
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The browser itself: Debian's /usr/bin/chromium is a wrapper script chromedriver cannot
/// drive (the session never starts).
const CHROMIUM: &str = "/usr/lib/chromium/chromium";

fn connect_in(lab: &Lab, port: u16) -> std::io::Result<TcpStream> {
    let path = format!("/run/netns/{}", lab.netns);
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path)?;
        // SAFETY: setns on an open namespace file only changes this thread's network namespace.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        TcpStream::connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
    })
    .join()
    .unwrap()
}

/// Decode an HTTP/1.1 chunked body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&body[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[eol + 2 + size + 2..];
    }
    out
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 byte {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|c| *c != b'=').collect();
        let mut n = 0u32;
        for (i, c) in data.iter().enumerate() {
            n |= val(*c) << (18 - 6 * i);
        }
        let take = data.len().saturating_sub(1);
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    out
}

struct Browser<'a> {
    lab: &'a Lab,
    driver: Child,
    session: String,
    shots: PathBuf,
}

impl Browser<'_> {
    fn call(lab: &Lab, method: &str, path: &str, body: Option<&Value>) -> Value {
        let mut s = connect_in(lab, DRIVER_PORT).expect("chromedriver listens");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        // WebDriver wants a JSON object on every POST, even an empty one.
        let body = match body {
            Some(b) => b.to_string(),
            None if method == "POST" => "{}".to_string(),
            None => String::new(),
        };
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost:{DRIVER_PORT}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // chromedriver keeps connections open whatever the client asks: read what the head
        // announces, not to the end.
        let mut raw = Vec::new();
        let mut buf = [0u8; 65536];
        let body = loop {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "{method} {path}: connection closed early");
            raw.extend_from_slice(&buf[..n]);
            let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) else {
                continue;
            };
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let rest = &raw[split..];
            if head.contains("transfer-encoding: chunked") {
                if rest.ends_with(b"0\r\n\r\n") {
                    break dechunk(rest);
                }
            } else {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("a Content-Length");
                if rest.len() >= len {
                    break rest[..len].to_vec();
                }
            }
        };
        let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: bad JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        if let Some(err) = v["value"]["error"].as_str() {
            panic!("{method} {path}: {err}: {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    fn cmd(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        Browser::call(
            self.lab,
            method,
            &format!("/session/{}/{what}", self.session),
            body.as_ref(),
        )
    }

    fn goto(&self, path: &str) {
        self.cmd(
            "POST",
            "url",
            Some(json!({ "url": format!("http://127.0.0.1:{ADMIN_PORT}{path}") })),
        );
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap()
            .to_string()
    }

    fn source(&self) -> String {
        self.cmd("GET", "source", None).as_str().unwrap().to_string()
    }

    fn script(&self, js: &str) -> Value {
        self.cmd("POST", "execute/sync", Some(json!({ "script": js, "args": [] })))
    }

    fn wait_for(&self, what: &str, secs: u64, mut f: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("waited {secs}s for {what}; page:\n{}", self.source());
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd("GET", "screenshot", None);
        let png = base64_decode(b64.as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    fn window(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "window/rect",
            Some(json!({ "width": width, "height": height })),
        );
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Browser::call(self.lab, "DELETE", &format!("/session/{}", self.session), None)
        }));
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A browser whose session never started outlives chromedriver: end every process
        // using this lab's own profile directory.
        kill_using(&self.lab.dir.join("chromium-profile"));
    }
}

/// SIGKILL the processes whose command line names `marker` (a path only this test uses).
fn kill_using(marker: &Path) {
    let marker = marker.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&marker) {
            // SAFETY: kill(2) on a pid read from /proc just now; at worst it is gone (ESRCH).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn start_browser<'a>(lab: &'a Lab, shots: &Path) -> Browser<'a> {
    let log = std::fs::File::create(lab.dir.join("chromedriver.log")).unwrap();
    let driver = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.netns))
        .arg(CHROMEDRIVER)
        .arg(format!("--port={DRIVER_PORT}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while connect_in(lab, DRIVER_PORT).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let profile = lab.dir.join("chromium-profile");
    let caps = json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1200,900",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    }}});
    let mut browser = Browser {
        lab,
        driver,
        session: String::new(),
        shots: shots.to_path_buf(),
    };
    let v = Browser::call(lab, "POST", "/session", Some(&caps));
    browser.session = v["sessionId"].as_str().expect("a session id").to_string();
    browser
}

#[test]
fn sign_in_stop_a_container_and_read_its_logs_in_chromium() {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        eprintln!("SKIP: chromium and chromium-driver are not installed (tests/lib/deps.sh)");
        return;
    }
    let lab = Lab::with_daemon_args(
        "admin-browser",
        &["--admin-addr", &format!("127.0.0.1:{ADMIN_PORT}")],
    );
    let web = lab.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--label",
        "com.docker.compose.project=shop",
        "--label",
        "com.docker.compose.service=web",
        "busybox",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; echo hello from web; while true; do sleep 1; done",
    ]);
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "--label",
        "com.docker.compose.project=shop",
        "--label",
        "com.docker.compose.service=ticker",
        "-p",
        "8080:80",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.3; done",
    ]);
    lab.ok(&["create", "--name", "idle", "busybox", "true"]);
    lab.ok(&["network", "create", "backend"]);
    let token = {
        let out = Command::new(harness::BIN)
            .args(["admin", "token", "--root"])
            .arg(&lab.root)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../admin-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shots = shots.canonicalize().unwrap();
    let b = start_browser(&lab, &shots);

    // Any page first shows the sign-in form.
    b.goto("/containers");
    assert!(b.source().contains("Admin token"));
    b.screenshot("01-login");
    let input = b.find("input[name=token]");
    b.cmd(
        "POST",
        &format!("element/{input}/value"),
        Some(json!({ "text": token })),
    );
    let button = b.find("form[action='/login'] button");
    b.cmd("POST", &format!("element/{button}/click"), None);
    // Signing in leads back to the page asked for.
    b.wait_for("the container list", 10, |b| {
        b.source().contains("<h1>Containers</h1>")
    });
    b.goto("/");
    assert!(b.source().contains("Daemon memory"));
    b.screenshot("02-overview");

    // The container list shows `web` running.
    b.goto("/containers");
    let src = b.source();
    assert!(src.contains(">web</a>") && src.contains("s-running"), "{src}");
    b.screenshot("03-containers");

    // Stop it with its button; the page comes back showing it exited.
    let stop = b.find(&format!("form[action='/containers/{web}'] button[value=stop]"));
    b.cmd("POST", &format!("element/{stop}/click"), None);
    b.wait_for("web to show as exited", 20, |b| {
        let src = b.source();
        let row = src.split(">web</a>").nth(1).unwrap_or("");
        row.split("</tr>").next().unwrap_or("").contains("s-exited")
    });
    assert_eq!(lab.ok(&["inspect", "-f", "{{.State.Status}}", "web"]), "exited");
    b.screenshot("04-containers-after-stop");

    // Its logs: what it printed, including the goodbye from its TERM trap.
    b.goto(&format!("/containers/{}", &web[..12]));
    let logs = b.script("return document.getElementById('logs').textContent");
    let logs = logs.as_str().unwrap();
    assert!(logs.contains("hello from web") && logs.contains("bye"), "{logs}");
    b.screenshot("05-container-web");

    // A running container's logs follow live (EventSource).
    b.goto("/containers/ticker");
    let count = |b: &Browser| {
        b.script("return document.getElementById('logs').textContent")
            .as_str()
            .unwrap()
            .matches("tick ")
            .count()
    };
    let first = count(&b);
    b.wait_for("live log lines", 10, |b| count(b) >= first + 3);
    let live = b.script("return document.getElementById('live').textContent");
    assert_eq!(live.as_str(), Some("following live"));
    b.screenshot("06-container-ticker-live");

    // The other pages render.
    for (name, path, needle) in [
        ("07-projects", "/projects", "shop"),
        ("08-images", "/images", "busybox:latest"),
        ("09-networks", "/networks", "backend"),
        ("10-events", "/events", "<td>die</td>"),
    ] {
        b.goto(path);
        let src = b.source();
        assert!(src.contains(needle), "{path}: {src}");
        b.screenshot(name);
    }
    // The events page follows live too.
    lab.ok(&["start", "web"]);
    b.wait_for("a live start event", 10, |b| {
        b.script("return document.getElementById('ev').rows[0].textContent")
            .as_str()
            .is_some_and(|t| t.contains("start") && t.contains("web"))
    });
    b.screenshot("11-events-live");

    // A phone-sized window: the tables fit, no sideways page scroll.
    b.window(390, 844);
    b.goto("/containers");
    b.screenshot("12-phone-containers");
    let overflow =
        b.script("return document.documentElement.scrollWidth - document.documentElement.clientWidth");
    let wide = b.script(
        "var w=document.documentElement.clientWidth,o=[];document.querySelectorAll('body *').forEach(function(e){\
         var r=e.getBoundingClientRect();if(r.right>w+1)o.push(e.tagName+'.'+e.className+' '+Math.round(r.right))});return o.slice(0,8).join(', ')",
    );
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "page scrolls sideways by {overflow}px: {wide}"
    );
    b.goto("/");
    b.screenshot("13-phone-overview");
    eprintln!("screenshots in {}", shots.display());
}
