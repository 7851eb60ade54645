//! The daemon's event stream (`GET /events`) through shoal's CLI and the real docker CLI.
//! Needs root, busybox-static and iproute2; the docker part is skipped without a docker CLI.

mod harness;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness::{have_docker, stderr, stdout, Lab, BIN};

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn lines_json(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
        .collect()
}

#[test]
fn lifecycle_events_replay_with_since_and_until() {
    let lab = Lab::new("events-replay");
    // Exactly now: the lab's image import was reported before its response came back, so it
    // lies before t0, and everything below comes after it.
    let t0 = format!("{:.9}", unix_now());
    let id = lab.ok(&[
        "create",
        "--name",
        "ev1",
        "--label",
        "tier=front",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    lab.ok(&["start", "ev1"]);
    lab.ok(&["wait", "ev1"]);
    lab.ok(&["rename", "ev1", "ev2"]);
    lab.ok(&["tag", "busybox", "busybox:events"]);
    lab.ok(&["network", "create", "evnet"]);
    lab.ok(&["rm", "ev2"]);
    lab.ok(&["network", "rm", "evnet"]);
    lab.ok(&["rmi", "busybox:events"]);
    let t1 = format!("{:.9}", unix_now() + 0.001);

    let out = lab.ok(&["events", "--since", &t0, "--until", &t1, "--format", "{{json .}}"]);
    let evs = lines_json(&out);
    let seen: Vec<String> = evs
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["Type"].as_str().unwrap(),
                e["Action"].as_str().unwrap()
            )
        })
        .collect();
    let want = [
        "container create",
        "container start",
        "container die",
        "container rename",
        "image tag",
        "network create",
        "container destroy",
        "network destroy",
        "image untag",
    ];
    assert_eq!(seen, want, "events: {out}");
    let die = &evs[2];
    assert_eq!(die["Actor"]["ID"], id.as_str());
    assert_eq!(die["Actor"]["Attributes"]["exitCode"], "3");
    assert_eq!(die["Actor"]["Attributes"]["name"], "ev1");
    assert_eq!(die["Actor"]["Attributes"]["image"], "busybox");
    assert_eq!(die["Actor"]["Attributes"]["tier"], "front");
    assert_eq!(die["scope"], "local");
    assert!(die["timeNano"].as_i64().unwrap() / 1_000_000_000 == die["time"].as_i64().unwrap());
    assert_eq!(evs[3]["Actor"]["Attributes"]["oldName"], "/ev1");

    // Filters: type and event AND; values of one key OR.
    let out = lab.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "-f",
        "type=container",
        "-f",
        "event=start",
        "-f",
        "event=die",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(out, "start\ndie");
    let out = lab.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "-f",
        "label=tier=front",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(out, "create\nstart\ndie\nrename\ndestroy");
    let out = lab.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "-f",
        "container=ev2",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(out, "rename\ndestroy");
    // The default line names the time, type, action, actor and attributes.
    let out = lab.ok(&["events", "--since", &t0, "--until", &t1, "-f", "event=die"]);
    assert!(
        out.contains(&format!(
            " container die {id} (exitCode=3, image=busybox, name=ev1, tier=front)"
        )),
        "{out}"
    );

    // Bad input is named.
    let out = lab.shoal(&["events", "--since", &t0, "--until", &t1, "-f", "colour=blue"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("invalid filter 'colour'"),
        "{}",
        stderr(&out)
    );
    let out = lab.shoal(&["events", "--since", "someday"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("--since"), "{}", stderr(&out));

    if !have_docker() {
        eprintln!("SKIP docker part: no docker CLI");
        return;
    }
    let out = lab.docker_ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "--format",
        "{{.Type}} {{.Action}}",
    ]);
    assert_eq!(out.lines().collect::<Vec<_>>(), want, "docker events: {out}");
    let out = lab.docker_ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "--filter",
        "type=network",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert_eq!(out, "create evnet\ndestroy evnet");
    let out = lab.docker_ok(&["events", "--since", &t0, "--until", &t1, "--filter", "event=die"]);
    assert!(
        out.contains(&format!("container die {id}")) && out.contains("exitCode=3"),
        "{out}"
    );
}

#[test]
fn live_stream_follows_new_events() {
    let lab = Lab::new("events-live");
    let mut child = Command::new(BIN)
        .args([
            "-H",
            &lab.host(),
            "events",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout_pipe = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout_pipe).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // The subscription is made when the response head arrives; give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    lab.ok(&["run", "-d", "--name", "live1", "busybox", "sleep", "30"]);
    lab.ok(&["kill", "live1"]);
    let mut got = Vec::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(10)) {
        got.push(l);
        if got.last().is_some_and(|l| l == "container die live1") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        got,
        [
            "container create live1",
            "container start live1",
            "container kill live1",
            "container die live1"
        ],
        "daemon log: {}",
        harness::tail(&lab.daemon_log(), 20)
    );
    // A client that went away does not keep its stream: the daemon still answers at once.
    let started = std::time::Instant::now();
    assert_eq!(stdout(&lab.shoal(&["ps", "-aq"])).lines().count(), 1);
    assert!(started.elapsed() < Duration::from_secs(2));
}
