//! `/metrics` in Prometheus's text exposition format (version 0.0.4): containers by state,
//! per-container CPU and memory, the daemon's resident memory, images, build info.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::data::ContainerRow;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every state a container can be in, so each series exists even at zero.
const STATES: [&str; 6] = ["created", "running", "restarting", "removing", "exited", "dead"];

/// Escape a label value: backslash, double quote and newline.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub struct Snapshot<'a> {
    pub version: &'a str,
    pub arch: &'a str,
    pub containers: &'a [ContainerRow],
    pub images: usize,
    pub networks: usize,
    pub volumes: usize,
    pub daemon_rss: u64,
    pub events_kept: usize,
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

pub fn render(s: &Snapshot) -> String {
    let mut o = String::with_capacity(1024 + s.containers.len() * 256);
    family(
        &mut o,
        "shoal_build_info",
        "gauge",
        "Version and architecture of the running shoal.",
    );
    let _ = writeln!(
        o,
        "shoal_build_info{{version=\"{}\",arch=\"{}\"}} 1",
        label(s.version),
        label(s.arch)
    );
    family(&mut o, "shoal_containers", "gauge", "Containers by state.");
    let mut by: BTreeMap<&str, usize> = STATES.iter().map(|s| (*s, 0)).collect();
    for c in s.containers {
        *by.entry(c.state.as_str()).or_insert(0) += 1;
    }
    for (state, n) in &by {
        let _ = writeln!(o, "shoal_containers{{state=\"{}\"}} {n}", label(state));
    }
    family(
        &mut o,
        "shoal_container_cpu_seconds_total",
        "counter",
        "CPU time used by a running container, from its cgroup.",
    );
    for c in s.containers {
        if let Some(cpu) = c.cpu_seconds {
            let _ = writeln!(
                o,
                "shoal_container_cpu_seconds_total{{id=\"{}\",name=\"{}\"}} {cpu}",
                label(&c.id),
                label(&c.name)
            );
        }
    }
    family(
        &mut o,
        "shoal_container_memory_bytes",
        "gauge",
        "Memory used by a running container, from its cgroup.",
    );
    for c in s.containers {
        if let Some(mem) = c.memory {
            let _ = writeln!(
                o,
                "shoal_container_memory_bytes{{id=\"{}\",name=\"{}\"}} {mem}",
                label(&c.id),
                label(&c.name)
            );
        }
    }
    family(&mut o, "shoal_images", "gauge", "Images in the store.");
    let _ = writeln!(o, "shoal_images {}", s.images);
    family(
        &mut o,
        "shoal_networks",
        "gauge",
        "Networks, built-in ones included.",
    );
    let _ = writeln!(o, "shoal_networks {}", s.networks);
    family(&mut o, "shoal_volumes", "gauge", "Volumes, named and anonymous.");
    let _ = writeln!(o, "shoal_volumes {}", s.volumes);
    family(&mut o, "shoal_events_kept", "gauge", "Events held for replay.");
    let _ = writeln!(o, "shoal_events_kept {}", s.events_kept);
    family(
        &mut o,
        "shoal_daemon_resident_memory_bytes",
        "gauge",
        "Resident memory of the shoal daemon.",
    );
    let _ = writeln!(o, "shoal_daemon_resident_memory_bytes {}", s.daemon_rss);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_is_well_formed() {
        let rows = vec![ContainerRow {
            id: "abc".into(),
            name: "we\"ird\\name\n".into(),
            state: "running".into(),
            cpu_seconds: Some(1.25),
            memory: Some(4096),
            ..Default::default()
        }];
        let text = render(&Snapshot {
            version: "0.1.0",
            arch: "amd64",
            containers: &rows,
            images: 2,
            networks: 3,
            volumes: 1,
            daemon_rss: 1 << 20,
            events_kept: 0,
        });
        assert!(text.contains("shoal_containers{state=\"running\"} 1\n"));
        assert!(text.contains("shoal_containers{state=\"exited\"} 0\n"));
        assert!(
            text.contains("shoal_container_memory_bytes{id=\"abc\",name=\"we\\\"ird\\\\name\\n\"} 4096\n")
        );
        assert!(text
            .contains("shoal_container_cpu_seconds_total{id=\"abc\",name=\"we\\\"ird\\\\name\\n\"} 1.25\n"));
        for line in text.lines() {
            assert!(line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line.starts_with("shoal_"));
        }
    }
}
