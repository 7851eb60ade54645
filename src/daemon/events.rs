//! The daemon's event bus: what happened to containers, images and networks, in Docker's
//! event shapes. A bounded ring keeps the recent past (for `since` and the admin page's
//! feed); subscribers wait on a condvar and read what is newer than the last they saw, so a
//! slow reader never holds memory beyond the ring.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::timefmt;

/// Events kept for replay; older ones are dropped (Docker keeps a similar in-memory window).
pub const CAPACITY: usize = 256;

/// One event. `seq` orders events; subscribers resume after the last one they read.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: u64,
    pub time_nano: i128,
    /// `container`, `image` or `network`.
    pub kind: &'static str,
    pub action: String,
    pub id: String,
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    /// Docker's JSON message (`/events`); containers and images also carry the legacy
    /// `status`/`id`/`from` fields older clients read.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "Type": self.kind,
            "Action": self.action,
            "Actor": { "ID": self.id, "Attributes": self.attributes },
            "scope": "local",
            "time": (self.time_nano / 1_000_000_000) as i64,
            "timeNano": self.time_nano as i64,
        });
        if self.kind == "container" || self.kind == "image" {
            v["status"] = json!(self.action);
            v["id"] = json!(self.id);
            if let Some(image) = self.attributes.get("image") {
                v["from"] = json!(image);
            }
        }
        v
    }
}

struct Ring {
    events: VecDeque<Arc<Event>>,
    next_seq: u64,
}

/// The bus: emit from anywhere, read from any thread.
pub struct EventBus {
    ring: Mutex<Ring>,
    wake: Condvar,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            ring: Mutex::new(Ring {
                events: VecDeque::with_capacity(CAPACITY),
                next_seq: 0,
            }),
            wake: Condvar::new(),
        }
    }
}

impl EventBus {
    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record an event now and wake every subscriber.
    pub fn emit(&self, kind: &'static str, action: &str, id: &str, attributes: BTreeMap<String, String>) {
        let mut ring = self.ring();
        let seq = ring.next_seq;
        ring.next_seq += 1;
        if ring.events.len() == CAPACITY {
            ring.events.pop_front();
        }
        ring.events.push_back(Arc::new(Event {
            seq,
            time_nano: timefmt::now_nanos(),
            kind,
            action: action.to_string(),
            id: id.to_string(),
            attributes,
        }));
        drop(ring);
        self.wake.notify_all();
    }

    /// The sequence number the next event will get: a subscriber starting "now" reads from it.
    pub fn next_seq(&self) -> u64 {
        self.ring().next_seq
    }

    /// The events kept, oldest first.
    pub fn recent(&self) -> Vec<Arc<Event>> {
        self.ring().events.iter().cloned().collect()
    }

    /// Events numbered `from` or later, waiting up to `timeout` for one to arrive. Events
    /// already dropped from the ring are skipped.
    pub fn wait_from(&self, from: u64, timeout: Duration) -> Vec<Arc<Event>> {
        let mut ring = self.ring();
        if ring.next_seq <= from {
            ring = self
                .wake
                .wait_timeout_while(ring, timeout, |r| r.next_seq <= from)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        ring.events.iter().filter(|e| e.seq >= from).cloned().collect()
    }
}

/// Docker's `/events` filters: each key ORs its values, keys AND.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EventFilter {
    filters: BTreeMap<String, Vec<String>>,
}

impl EventFilter {
    pub fn new(filters: BTreeMap<String, Vec<String>>) -> Result<EventFilter, String> {
        for key in filters.keys() {
            if !matches!(
                key.as_str(),
                "type" | "event" | "container" | "image" | "label" | "network"
            ) {
                return Err(format!("invalid filter '{key}'"));
            }
        }
        for t in filters.get("type").into_iter().flatten() {
            if !matches!(
                t.as_str(),
                "container"
                    | "image"
                    | "network"
                    | "volume"
                    | "daemon"
                    | "plugin"
                    | "node"
                    | "service"
                    | "secret"
                    | "config"
            ) {
                return Err(format!("invalid filter 'type={t}'"));
            }
        }
        Ok(EventFilter { filters })
    }

    pub fn matches(&self, e: &Event) -> bool {
        self.filters.iter().all(|(key, values)| {
            values.iter().any(|want| match key.as_str() {
                "type" => e.kind == want,
                // `exec_create: sh` style actions match on the part before the colon.
                "event" => e.action == *want || e.action.split(':').next() == Some(want.as_str()),
                "container" => e.kind == "container" && names_actor(e, want),
                "network" => e.kind == "network" && names_actor(e, want),
                "image" => match e.kind {
                    "image" => names_actor(e, want),
                    _ => e.attributes.get("image").is_some_and(|i| same_image(i, want)),
                },
                "label" => match want.split_once('=') {
                    Some((k, v)) => e.attributes.get(k).is_some_and(|x| x == v),
                    None => e.attributes.contains_key(want.as_str()),
                },
                _ => false,
            })
        })
    }
}

/// An actor is named by its full ID, an ID prefix or its `name` attribute.
fn names_actor(e: &Event, want: &str) -> bool {
    !want.is_empty()
        && (e.id.starts_with(want)
            || e.id
                .strip_prefix("sha256:")
                .is_some_and(|id| id.starts_with(want))
            || e.attributes
                .get("name")
                .is_some_and(|n| n == want || same_image(n, want)))
}

/// `busybox` and `busybox:latest` name the same image.
fn same_image(have: &str, want: &str) -> bool {
    have == want || have.strip_suffix(":latest") == Some(want) || want.strip_suffix(":latest") == Some(have)
}

/// Parse `since`/`until`: Unix seconds with an optional 9-digit fraction (what the docker CLI
/// sends), RFC 3339, or a Go duration meaning "that long ago". Exact to the nanosecond.
pub fn parse_time(s: &str, now_nanos: i128) -> Option<i128> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if !secs.is_empty()
        && secs.bytes().all(|c| c.is_ascii_digit())
        && frac.len() <= 9
        && frac.bytes().all(|c| c.is_ascii_digit())
    {
        let secs: i128 = secs.parse().ok()?;
        let frac: i128 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<9}").parse().ok()?
        };
        return Some(secs * 1_000_000_000 + frac);
    }
    timefmt::parse_since(s, now_nanos)
}

/// Attributes of a container event: name, image, and the container's labels (as Docker).
pub fn container_attributes(
    name: &str,
    image: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut a = labels.cloned().unwrap_or_default();
    a.insert("name".into(), name.to_string());
    a.insert("image".into(), image.to_string());
    a
}

/// Build an attribute map from pairs.
pub fn attrs<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &'static str, action: &str, id: &str, a: BTreeMap<String, String>) -> Event {
        Event {
            seq: 0,
            time_nano: 0,
            kind,
            action: action.into(),
            id: id.into(),
            attributes: a,
        }
    }

    fn filter(pairs: &[(&str, &str)]) -> EventFilter {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        EventFilter::new(m).unwrap()
    }

    #[test]
    fn ring_is_bounded_and_resumes_by_sequence() {
        let bus = EventBus::default();
        for i in 0..CAPACITY + 10 {
            bus.emit("container", "start", &format!("{i}"), BTreeMap::new());
        }
        let recent = bus.recent();
        assert_eq!(recent.len(), CAPACITY);
        assert_eq!(recent[0].id, "10");
        let from = bus.next_seq();
        assert!(bus.wait_from(from, Duration::from_millis(10)).is_empty());
        bus.emit("image", "tag", "x", BTreeMap::new());
        let got = bus.wait_from(from, Duration::from_millis(10));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].action, "tag");
    }

    #[test]
    fn subscriber_wakes_on_emit() {
        let bus = Arc::new(EventBus::default());
        let from = bus.next_seq();
        let b2 = bus.clone();
        let t = std::thread::spawn(move || b2.wait_from(from, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(50));
        bus.emit("network", "create", "n1", BTreeMap::new());
        let got = t.join().unwrap();
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn filters_follow_docker() {
        let c = ev(
            "container",
            "die",
            "abcdef0123",
            attrs([("name", "web"), ("image", "busybox:latest"), ("tier", "front")]),
        );
        assert!(filter(&[("type", "container")]).matches(&c));
        assert!(!filter(&[("type", "image")]).matches(&c));
        assert!(filter(&[("event", "start"), ("event", "die")]).matches(&c));
        assert!(filter(&[("container", "web")]).matches(&c));
        assert!(filter(&[("container", "abcd")]).matches(&c));
        assert!(!filter(&[("container", "db")]).matches(&c));
        assert!(filter(&[("image", "busybox")]).matches(&c));
        assert!(filter(&[("label", "tier=front")]).matches(&c));
        assert!(filter(&[("label", "tier")]).matches(&c));
        assert!(!filter(&[("label", "tier=back")]).matches(&c));
        assert!(!filter(&[("type", "container"), ("event", "start")]).matches(&c));
        let i = ev("image", "tag", "sha256:1234", attrs([("name", "busybox:1")]));
        assert!(filter(&[("image", "busybox:1")]).matches(&i));
        assert!(filter(&[("image", "1234")]).matches(&i));
        assert!(EventFilter::new([("colour".to_string(), vec!["x".to_string()])].into()).is_err());
        assert!(EventFilter::new([("type".to_string(), vec!["boat".to_string()])].into()).is_err());
    }

    #[test]
    fn json_has_docker_shape() {
        let mut e = ev(
            "container",
            "die",
            "abc",
            attrs([("name", "web"), ("image", "busybox"), ("exitCode", "3")]),
        );
        e.time_nano = 1_700_000_000_123_456_789;
        let v = e.to_json();
        assert_eq!(v["Type"], "container");
        assert_eq!(v["Action"], "die");
        assert_eq!(v["Actor"]["ID"], "abc");
        assert_eq!(v["Actor"]["Attributes"]["exitCode"], "3");
        assert_eq!(v["time"], 1_700_000_000i64);
        assert_eq!(v["timeNano"], 1_700_000_000_123_456_789i64);
        assert_eq!(v["status"], "die");
        assert_eq!(v["from"], "busybox");
        assert_eq!(v["scope"], "local");
    }

    #[test]
    fn times_parse_exactly() {
        assert_eq!(
            parse_time("1700000000.000000001", 0),
            Some(1_700_000_000_000_000_001)
        );
        assert_eq!(parse_time("1700000000.5", 0), Some(1_700_000_000_500_000_000));
        assert_eq!(parse_time("1700000000", 0), Some(1_700_000_000_000_000_000));
        assert_eq!(parse_time("10s", 20_000_000_000), Some(10_000_000_000));
        assert_eq!(parse_time("yesterday", 0), None);
    }
}
