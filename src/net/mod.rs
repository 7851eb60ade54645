//! Container networking: bridge networks, IPAM, veth plumbing and the embedded DNS.
//!
//! [`NetworkManager`] is what the daemon calls (blocking). Guarantees:
//! - Networks and their address allocations are persisted (`networks.json`, written with
//!   `storage::atomic`) before a call returns, so a daemon restart never hands out an address
//!   twice; [`NetworkManager::restore`] rebuilds missing bridges and DNS listeners from it.
//! - Everything is made through netlink in the manager's namespace (the daemon's, or one
//!   given for tests); container ends live in the container's namespace. No `ip` binary.
//! - A failed attach leaves nothing behind: the veth is deleted and the address released.
//! - Errors name the network, container or address at fault.

pub mod dns_server;
pub mod firewall;
pub mod ipam;
pub mod netlink;
pub mod netns;
pub mod proxy;
pub mod reaper;

use crate::storage::atomic;
use crate::wire::netlink::LinkChange;
use dns_server::{DnsEntry, DnsServer, DnsTable, Upstreams};
pub use firewall::Proto;
use ipam::{Pool, Subnet};
use netlink::Netlink;
use netns::Netns;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Name of the default network, as Docker's.
pub const DEFAULT_NETWORK: &str = "bridge";
/// Bridge interface of the default network.
pub const DEFAULT_BRIDGE: &str = "shoal0";
/// Default `--bip`: gateway and prefix of the default network (not Docker's 172.17, so both
/// can run on one board).
pub const DEFAULT_BIP: &str = "172.30.0.1/16";
/// Docker's option naming the bridge interface.
pub const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";
const STATE_FILE: &str = "networks.json";
const EPHEMERAL_FILE: &str = "endpoints.json";

/// What `network create` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkOptions {
    /// "bridge" (the default when empty); nothing else is supported yet.
    pub driver: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    /// Bridge interface name (`com.docker.network.bridge.name`); default `br-<id12>`.
    pub bridge_name: Option<String>,
}

/// A container's attachment to one network, as the daemon needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// Interface name inside the container (eth0, eth1, ...).
    pub ifname: String,
}

/// Summary of one network (`network ls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub subnet: Option<String>,
    pub gateway: Option<Ipv4Addr>,
    pub bridge: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub created: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct EndpointRecord {
    container_id: String,
    container_name: String,
    endpoint_id: String,
    netns: PathBuf,
    host_ifname: String,
    aliases: Vec<String>,
    endpoint: Endpoint,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct NetworkRecord {
    id: String,
    name: String,
    driver: String,
    created: String,
    internal: bool,
    labels: BTreeMap<String, String>,
    /// Only bridge networks have these.
    bridge: Option<String>,
    pool: Option<Pool>,
    /// Container id → endpoint. Kept in the ephemeral state file (see [`Ephemeral`]); read
    /// here only from files of older versions.
    #[serde(default, skip_serializing)]
    endpoints: BTreeMap<String, EndpointRecord>,
}

impl NetworkRecord {
    fn info(&self) -> NetworkInfo {
        NetworkInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            driver: self.driver.clone(),
            subnet: self.pool.as_ref().map(|p| p.subnet.to_string()),
            gateway: self.pool.as_ref().map(|p| p.gateway),
            bridge: self.bridge.clone(),
            internal: self.internal,
            labels: self.labels.clone(),
            created: self.created.clone(),
        }
    }

    fn is_predefined(&self) -> bool {
        matches!(self.name.as_str(), DEFAULT_NETWORK | "host" | "none")
    }
}

/// A port to publish (`-p [IP:]HOST[-END]:CONTAINER[/PROTO]`, `-P`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Only this host address; None: every address of the board.
    pub host_ip: Option<Ipv4Addr>,
    /// 0 picks a free port (`-P`, or `-p CONTAINER`).
    pub host_port: u16,
    /// With a range `HOST-END`, the first free port of the range is used.
    pub host_port_end: Option<u16>,
    pub container_port: u16,
    pub proto: Proto,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PublishedPort {
    container_id: String,
    /// Resolved: `host_port` is the port in use, `host_port_end` is None.
    mapping: PortMapping,
    target_ip: Ipv4Addr,
    bridge: String,
}

/// The durable part: network definitions (written with fsync).
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    networks: Vec<NetworkRecord>,
    /// Runtime data, persisted separately in [`Ephemeral`].
    #[serde(default, skip_serializing)]
    published: Vec<PublishedPort>,
}

/// What belongs to running containers: endpoints (and so address allocations) and published
/// ports. It must survive a daemon restart, when containers keep running, but not a power
/// cut, after which no container runs and all of it is void. So it is written atomically
/// without waiting for the disk (a container start and exit cost no fsync), and a missing or
/// unreadable file reads as empty.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Ephemeral {
    /// (network id, endpoint).
    endpoints: Vec<(String, EndpointRecord)>,
    published: Vec<PublishedPort>,
}

/// Names of the two ends of one endpoint's veth pair.
struct Link<'a> {
    bridge: &'a str,
    host_if: &'a str,
    ifname: &'a str,
    /// The container's first interface: it carries the default route.
    first: bool,
    mac: [u8; 6],
}

/// How the manager runs; [`NetworkManager::open`] uses the defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Namespace holding the bridges (the daemon's own by default).
    pub host: Netns,
    /// Port of the embedded DNS on each gateway (53; tests may pick another).
    pub dns_port: u16,
    /// Where forwarded queries go; default: the host's /etc/resolv.conf.
    pub upstreams: Option<Upstreams>,
    /// Manage nftables rules (isolation, masquerade) when the kernel has nf_tables.
    pub firewall: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: Netns::Current,
            dns_port: 53,
            upstreams: None,
            firewall: true,
        }
    }
}

/// The daemon's handle on networking.
pub struct NetworkManager {
    state_path: PathBuf,
    ephemeral_path: PathBuf,
    config: Config,
    state: State,
    nl: Netlink,
    table: Arc<RwLock<DnsTable>>,
    dns: Option<DnsServer>,
    /// Network id → DNS listener address.
    listeners: BTreeMap<String, SocketAddr>,
    /// Bound (not listening) sockets holding published host ports so no other program
    /// takes them; keyed by protocol and port.
    reservations: BTreeMap<(Proto, u16), std::os::fd::OwnedFd>,
    /// Deletes the veths of exited containers in the background (started on first use).
    reaper: Option<reaper::Reaper>,
    /// Userland relays, when the board has no nftables.
    proxy: Option<proxy::Proxy>,
    /// Whether the kernel took a rule set yet (None: not tried).
    nft_works: Option<bool>,
    /// Whether [`NetworkManager::restore`] has put the kernel side in place.
    restored: bool,
}

fn err(kind: io::ErrorKind, msg: String) -> io::Error {
    io::Error::new(kind, msg)
}

fn random_hex(bytes: usize) -> io::Result<String> {
    let mut buf = vec![0u8; bytes];
    crate::sys::fill_id_bytes(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Interface names are at most 15 bytes; keep only characters the kernel accepts.
fn ifname_part(s: &str, n: usize) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric()).take(n).collect()
}

fn valid_ifname(name: &str) -> bool {
    !name.is_empty() && name.len() <= 15 && !name.contains(['/', ' ', ':']) && name != "." && name != ".."
}

impl NetworkManager {
    /// Open with persisted state from `state_dir` (created if missing), in the daemon's own
    /// namespace, DNS on port 53, upstreams from /etc/resolv.conf.
    pub fn open(state_dir: &Path) -> io::Result<Self> {
        Self::open_with(state_dir, Config::default())
    }

    pub fn open_with(state_dir: &Path, config: Config) -> io::Result<Self> {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| err(e.kind(), format!("creating {}: {e}", state_dir.display())))?;
        let state_path = state_dir.join(STATE_FILE);
        let mut state: State = if state_path.exists() {
            atomic::read_json(&state_path)?
        } else {
            State::default()
        };
        let ephemeral_path = state_dir.join(EPHEMERAL_FILE);
        if ephemeral_path.exists() {
            match atomic::read_json::<Ephemeral>(&ephemeral_path) {
                Ok(eph) => {
                    for (net_id, e) in eph.endpoints {
                        if let Some(n) = state.networks.iter_mut().find(|n| n.id == net_id) {
                            n.endpoints.insert(e.container_id.clone(), e);
                        }
                    }
                    state.published = eph.published;
                }
                Err(e) => log::warn!("starting with no endpoints: {e}"),
            }
        }
        // Allocations are exactly the endpoints' addresses.
        for n in &mut state.networks {
            if let Some(pool) = n.pool.as_mut() {
                pool.release_all();
                for e in n.endpoints.values() {
                    let _ = pool.allocate_specific(e.endpoint.ip, &e.container_id);
                }
            }
        }
        let nl = Netlink::open(&config.host)?;
        Ok(NetworkManager {
            state_path,
            ephemeral_path,
            config,
            state,
            nl,
            table: Arc::new(RwLock::new(DnsTable::default())),
            dns: None,
            listeners: BTreeMap::new(),
            reservations: BTreeMap::new(),
            proxy: None,
            reaper: None,
            nft_works: None,
            restored: false,
        })
    }

    /// Write the network definitions, durably.
    fn persist(&self) -> io::Result<()> {
        atomic::write_json(&self.state_path, &self.state)
    }

    /// Write endpoints and published ports: atomic, not fsynced (see [`Ephemeral`]).
    fn persist_endpoints(&self) -> io::Result<()> {
        let eph = Ephemeral {
            endpoints: self
                .state
                .networks
                .iter()
                .flat_map(|n| n.endpoints.values().map(|e| (n.id.clone(), e.clone())))
                .collect(),
            published: self.state.published.clone(),
        };
        let data = serde_json::to_vec(&eph).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        atomic::replace(&self.ephemeral_path, &data)
    }

    fn find(&self, name_or_id: &str) -> io::Result<usize> {
        let by_name = self
            .state
            .networks
            .iter()
            .position(|n| n.name == name_or_id || n.id == name_or_id);
        let found = by_name.or_else(|| {
            let matches: Vec<usize> = (0..self.state.networks.len())
                .filter(|&i| !name_or_id.is_empty() && self.state.networks[i].id.starts_with(name_or_id))
                .collect();
            (matches.len() == 1).then(|| matches[0])
        });
        found.ok_or_else(|| err(io::ErrorKind::NotFound, format!("network {name_or_id} not found")))
    }

    /// A container's own upstream servers (`--dns` on a user network): the embedded DNS
    /// forwards its outside queries there instead of to the board's.
    pub fn set_container_upstreams(&self, container_id: &str, servers: &[IpAddr]) {
        let servers = servers.iter().map(|ip| SocketAddr::new(*ip, 53)).collect();
        self.table().set_upstreams_of(container_id, servers);
    }

    /// A container was renamed: its endpoints and names follow.
    pub fn rename_container(&mut self, container_id: &str, new_name: &str) -> io::Result<()> {
        let mut renamed = Vec::new();
        for n in &mut self.state.networks {
            if let Some(e) = n.endpoints.get_mut(container_id) {
                e.container_name = new_name.trim_start_matches('/').to_string();
                renamed.push((n.name.clone(), e.clone()));
            }
        }
        if renamed.is_empty() {
            return Ok(());
        }
        for (network, e) in &renamed {
            self.register_dns(network, e);
        }
        self.persist_endpoints()
    }

    fn table(&self) -> std::sync::RwLockWriteGuard<'_, DnsTable> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    fn dns(&mut self) -> io::Result<&DnsServer> {
        if self.dns.is_none() {
            let upstreams = match &self.config.upstreams {
                Some(u) => u.clone(),
                None => {
                    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
                    Upstreams::from_resolv_conf(&text)
                }
            };
            self.dns = Some(DnsServer::start(
                &self.config.host,
                self.table.clone(),
                upstreams,
            )?);
        }
        // Invariant: set just above when it was None.
        self.dns
            .as_ref()
            .ok_or_else(|| io::Error::other("dns server not started"))
    }

    /// Create (or, with `exists_ok`, adopt) the bridge of network `i` with its gateway address.
    fn bring_up_bridge(&mut self, i: usize) -> io::Result<()> {
        let net = &self.state.networks[i];
        let (Some(bridge), Some(pool)) = (net.bridge.clone(), net.pool.clone()) else {
            return Ok(());
        };
        if self.nl.link(&bridge)?.is_none() {
            self.nl.create_bridge(&bridge)?;
        }
        match self.nl.add_addr_v4(&bridge, pool.gateway, pool.subnet.prefix) {
            Ok(()) => {}
            Err(e) if e.to_string().contains("exists") => {}
            Err(e) => return Err(e),
        }
        self.nl.set_up(&bridge)?;
        if !net.internal {
            netns::enable_ipv4_forwarding(&self.config.host)?;
        }
        Ok(())
    }

    fn start_dns_for(&mut self, i: usize) -> io::Result<()> {
        let net = self.state.networks[i].clone();
        let Some(pool) = &net.pool else { return Ok(()) };
        if net.name == DEFAULT_NETWORK {
            self.table().set_forward_only(&net.name);
        }
        if self.listeners.contains_key(&net.id) {
            return Ok(());
        }
        let addr = SocketAddr::new(IpAddr::V4(pool.gateway), self.config.dns_port);
        // A resolver already bound to *:53 on the board (dnsmasq, say) must not stop the
        // network from working: containers then get the host's resolvers instead
        // (`dns_server_for` answers None).
        match self.dns().and_then(|d| d.listen(&net.name, addr)) {
            Ok(bound) => {
                self.listeners.insert(net.id.clone(), bound);
            }
            Err(e) => log::warn!("network {}: no embedded DNS: {e}", net.name),
        }
        Ok(())
    }

    fn register_dns(&self, network: &str, e: &EndpointRecord) {
        let mut names = vec![e.container_name.trim_start_matches('/').to_string()];
        names.extend(e.aliases.iter().cloned());
        names.push(e.container_id.chars().take(12).collect());
        self.table().add(DnsEntry {
            network: network.to_string(),
            container_id: e.container_id.clone(),
            names,
            ip: e.endpoint.ip,
        });
    }

    /// Replace the rule set. The first time, a kernel that cannot take it (no
    /// nf_tables on the board) switches the manager to no rules and the userland proxy,
    /// rather than failing the daemon; later failures are errors.
    fn apply_firewall(&mut self) -> io::Result<()> {
        if !self.use_nft() {
            return Ok(());
        }
        let result = self.try_apply_firewall();
        match (&result, self.nft_works) {
            (Ok(()), _) => self.nft_works = Some(true),
            (Err(e), None) => {
                log::warn!("nftables unusable, using no rules and the userland proxy: {e}");
                self.nft_works = Some(false);
                return Ok(());
            }
            (Err(_), Some(_)) => {}
        }
        result
    }

    fn try_apply_firewall(&self) -> io::Result<()> {
        let bridges: Vec<firewall::BridgeRules> = self
            .state
            .networks
            .iter()
            .filter_map(|n| {
                Some(firewall::BridgeRules {
                    bridge: n.bridge.clone()?,
                    subnet: n.pool.as_ref()?.subnet,
                    gateway: n.pool.as_ref()?.gateway,
                    internal: n.internal,
                })
            })
            .collect();
        let ports: Vec<firewall::Dnat> = self
            .state
            .published
            .iter()
            .map(|p| firewall::Dnat {
                host_ip: p.mapping.host_ip,
                host_port: p.mapping.host_port,
                proto: p.mapping.proto,
                target_ip: p.target_ip,
                target_port: p.mapping.container_port,
            })
            .collect();
        for b in self.state.published.iter().map(|p| &p.bridge) {
            firewall::enable_route_localnet(&self.config.host, b)?;
        }
        firewall::apply(&self.config.host, &firewall::ruleset(&bridges, &ports))
    }

    /// Bind (without listening) `proto` port `port` on `ip` in the manager's namespace.
    fn reserve(
        &self,
        proto: Proto,
        ip: Option<Ipv4Addr>,
        port: u16,
    ) -> io::Result<(u16, std::os::fd::OwnedFd)> {
        use rustix::net::{AddressFamily, SocketAddrV4, SocketType};
        netns::run_in(&self.config.host, || {
            let kind = if proto == Proto::Tcp {
                SocketType::STREAM
            } else {
                SocketType::DGRAM
            };
            let to_io = |e: rustix::io::Errno| io::Error::from_raw_os_error(e.raw_os_error());
            // CLOEXEC: shims started later must not inherit the port, or it stays bound
            // after its container's endpoint is gone.
            let fd =
                rustix::net::socket_with(AddressFamily::INET, kind, rustix::net::SocketFlags::CLOEXEC, None)
                    .map_err(to_io)?;
            let addr = SocketAddrV4::new(ip.unwrap_or(Ipv4Addr::UNSPECIFIED), port);
            rustix::net::bind(&fd, &addr).map_err(to_io)?;
            // getsockname through std, which works on any bound inet socket.
            let probe = std::net::UdpSocket::from(fd);
            let bound = probe.local_addr()?.port();
            Ok((bound, probe.into()))
        })
    }

    fn use_nft(&self) -> bool {
        self.config.firewall && self.nft_works != Some(false)
    }

    /// Hold `port` (0: any) for `m`: a bound socket under nftables, else a proxy listener.
    fn hold_port(&mut self, m: &PortMapping, port: u16, target_ip: Ipv4Addr) -> io::Result<u16> {
        if self.use_nft() {
            let (bound, fd) = self.reserve(m.proto, m.host_ip, port)?;
            self.reservations.insert((m.proto, bound), fd);
            return Ok(bound);
        }
        if self.proxy.is_none() {
            self.proxy = Some(proxy::Proxy::start(&self.config.host)?);
        }
        let listen = SocketAddr::new(IpAddr::V4(m.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED)), port);
        let target = SocketAddr::new(IpAddr::V4(target_ip), m.container_port);
        // Invariant: started just above.
        let proxy = self
            .proxy
            .as_ref()
            .ok_or_else(|| io::Error::other("proxy not started"))?;
        Ok(proxy.add(m.proto, listen, target)?.port())
    }

    /// Let go of a held host port.
    fn release_port(&mut self, proto: Proto, port: u16) {
        self.reservations.remove(&(proto, port));
        if let Some(p) = &self.proxy {
            p.remove(proto, port);
        }
    }

    /// Pick and hold the host port for `m`.
    fn claim_port(&mut self, m: &PortMapping, target_ip: Ipv4Addr) -> io::Result<u16> {
        let candidates: Vec<u16> = match m.host_port_end {
            Some(end) if m.host_port > 0 && end >= m.host_port => (m.host_port..=end).collect(),
            _ => vec![m.host_port],
        };
        let mut last_err = None;
        for port in candidates {
            let ours = self
                .state
                .published
                .iter()
                .any(|p| p.mapping.proto == m.proto && p.mapping.host_port == port);
            if port != 0 && ours {
                last_err = Some(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "already published by another container",
                ));
                continue;
            }
            match self.hold_port(m, port, target_ip) {
                Ok(bound) => return Ok(bound),
                Err(e) => last_err = Some(e),
            }
        }
        let e = last_err.unwrap_or_else(|| io::Error::other("empty port range"));
        let range = match m.host_port_end {
            Some(end) => format!("{}-{end}", m.host_port),
            None => m.host_port.to_string(),
        };
        Err(err(
            e.kind(),
            format!("host port {range}/{}: {e}", m.proto.as_str()),
        ))
    }

    /// Publish `ports` of a container (to its address on its first bridge network). Returns
    /// the mappings with the host ports chosen. With nftables the kernel forwards (DNAT);
    /// without, a userland proxy relays.
    pub fn publish(&mut self, container_id: &str, ports: &[PortMapping]) -> io::Result<Vec<PortMapping>> {
        let target = self.state.networks.iter().find_map(|n| {
            let e = n.endpoints.get(container_id)?;
            Some((e.endpoint.ip, n.bridge.clone()?))
        });
        let Some((target_ip, bridge)) = target else {
            return Err(err(
                io::ErrorKind::NotFound,
                format!("container {container_id} is on no bridge network: nothing to publish to"),
            ));
        };
        let mut done = Vec::new();
        for m in ports {
            match self.claim_port(m, target_ip) {
                Ok(host_port) => {
                    let mapping = PortMapping {
                        host_port,
                        host_port_end: None,
                        ..m.clone()
                    };
                    done.push(mapping.clone());
                    self.state.published.push(PublishedPort {
                        container_id: container_id.to_string(),
                        mapping,
                        target_ip,
                        bridge: bridge.clone(),
                    });
                }
                Err(e) => {
                    let _ = self.unpublish(container_id);
                    return Err(err(e.kind(), format!("publishing ports of {container_id}: {e}")));
                }
            }
        }
        self.persist_endpoints()?;
        if let Err(e) = self.apply_firewall() {
            let _ = self.unpublish(container_id);
            return Err(e);
        }
        Ok(done)
    }

    /// The published ports of a container (`shoal port`).
    pub fn published(&self, container_id: &str) -> Vec<PortMapping> {
        self.state
            .published
            .iter()
            .filter(|p| p.container_id == container_id)
            .map(|p| p.mapping.clone())
            .collect()
    }

    /// Withdraw every published port of a container.
    pub fn unpublish(&mut self, container_id: &str) -> io::Result<()> {
        let (gone, kept): (Vec<PublishedPort>, Vec<PublishedPort>) =
            std::mem::take(&mut self.state.published)
                .into_iter()
                .partition(|p| p.container_id == container_id);
        self.state.published = kept;
        if gone.is_empty() {
            // Nothing was published: no state write, no firewall rebuild on this hot path
            // (every container exit and removal passes here).
            return Ok(());
        }
        for p in &gone {
            self.release_port(p.mapping.proto, p.mapping.host_port);
        }
        self.persist_endpoints()?;
        self.apply_firewall()
    }

    /// Make sure the predefined networks exist: `bridge` (on `shoal0`, subnet from `bip`,
    /// default 172.30.0.1/16), `host` and `none`, as records: [`NetworkManager::restore`] brings
    /// the bridge up.
    pub fn ensure_default(&mut self, bip: Option<&str>) -> io::Result<()> {
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if self.find(name).is_err() {
                self.state.networks.push(NetworkRecord {
                    id: random_hex(32)?,
                    name: name.into(),
                    driver: driver.into(),
                    created: crate::timefmt::now(),
                    internal: false,
                    labels: BTreeMap::new(),
                    bridge: None,
                    pool: None,
                    endpoints: BTreeMap::new(),
                });
            }
        }
        let bip = bip.unwrap_or(DEFAULT_BIP);
        if self.find(DEFAULT_NETWORK).is_err() {
            // `--bip` names the bridge's own address; a bare network address means "first host".
            let subnet = Subnet::parse(bip, "--bip")
                .map_err(|e| err(io::ErrorKind::InvalidInput, format!("--bip {bip}: {e}")))?;
            let given = bip.split('/').next().unwrap_or(bip);
            let gateway = if given.parse() == Ok(subnet.addr) {
                subnet.first_host().to_string()
            } else {
                given.to_string()
            };
            let pool = Pool::new(bip, Some(&gateway), None)
                .map_err(|e| err(io::ErrorKind::InvalidInput, format!("--bip {bip}: {e}")))?;
            let host = self.host_subnets()?;
            self.check_overlap(&pool.subnet, &host)?;
            self.state.networks.push(NetworkRecord {
                id: random_hex(32)?,
                name: DEFAULT_NETWORK.into(),
                driver: "bridge".into(),
                created: crate::timefmt::now(),
                internal: false,
                labels: BTreeMap::new(),
                bridge: Some(DEFAULT_BRIDGE.into()),
                pool: Some(pool),
                endpoints: BTreeMap::new(),
            });
        }
        self.persist()
    }

    /// Subnets of the addresses the board has on interfaces that are not shoal's bridges.
    fn host_subnets(&mut self) -> io::Result<Vec<(String, Subnet)>> {
        let names: std::collections::HashMap<u32, String> =
            self.nl.links()?.into_iter().map(|l| (l.index, l.name)).collect();
        let ours: Vec<&str> = self
            .state
            .networks
            .iter()
            .filter_map(|n| n.bridge.as_deref())
            .chain([DEFAULT_BRIDGE])
            .collect();
        Ok(self
            .nl
            .addrs_v4()?
            .into_iter()
            .filter_map(|(index, addr, prefix)| {
                let name = names.get(&index).cloned().unwrap_or_else(|| format!("#{index}"));
                (!ours.contains(&name.as_str())).then(|| (name, Subnet::new(addr, prefix)))
            })
            .collect())
    }

    /// A new network's subnet must not overlap another network's, nor a subnet the board is on
    /// (`host`, from [`NetworkManager::host_subnets`]): its addresses would be unreachable.
    fn check_overlap(&self, subnet: &Subnet, host: &[(String, Subnet)]) -> io::Result<()> {
        for n in &self.state.networks {
            if let Some(p) = n.pool.as_ref().filter(|p| p.subnet.overlaps(subnet)) {
                let msg = format!(
                    "subnet {subnet} overlaps subnet {} of network {}",
                    p.subnet, n.name
                );
                return Err(err(io::ErrorKind::AlreadyExists, msg));
            }
        }
        if let Some((ifname, s)) = host.iter().find(|(_, s)| s.overlaps(subnet)) {
            let msg = format!("subnet {subnet} overlaps {s} of the board's interface {ifname}");
            return Err(err(io::ErrorKind::AlreadyExists, msg));
        }
        Ok(())
    }

    /// A free /16 for a network created without `--subnet`.
    fn pick_subnet(&self, host: &[(String, Subnet)]) -> io::Result<String> {
        let candidates = std::iter::once((172, 31)).chain((200..=254).map(|b| (10, b)));
        for (a, b) in candidates {
            let s = Subnet::new(Ipv4Addr::new(a, b, 0, 0), 16);
            if self.check_overlap(&s, host).is_ok() {
                return Ok(s.to_string());
            }
        }
        Err(err(
            io::ErrorKind::AddrNotAvailable,
            "no free subnet left for a new network".into(),
        ))
    }

    /// `network create`.
    pub fn create(&mut self, name: &str, opts: NetworkOptions) -> io::Result<NetworkInfo> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(err(
                io::ErrorKind::InvalidInput,
                format!("invalid network name {name:?}"),
            ));
        }
        if self.find(name).is_ok() {
            return Err(err(
                io::ErrorKind::AlreadyExists,
                format!("network with name {name} already exists"),
            ));
        }
        let driver = if opts.driver.is_empty() {
            "bridge".to_string()
        } else {
            opts.driver.clone()
        };
        if driver != "bridge" {
            return Err(err(
                io::ErrorKind::Unsupported,
                format!("network {name}: driver {driver} is not supported"),
            ));
        }
        let host = self.host_subnets()?;
        let subnet = match &opts.subnet {
            Some(s) => s.clone(),
            None => self.pick_subnet(&host)?,
        };
        let pool = Pool::new(&subnet, opts.gateway.as_deref(), opts.ip_range.as_deref())
            .map_err(|e| err(io::ErrorKind::InvalidInput, format!("network {name}: {e}")))?;
        self.check_overlap(&pool.subnet, &host)
            .map_err(|e| err(e.kind(), format!("network {name}: {e}")))?;
        let id = random_hex(32)?;
        let bridge = opts
            .bridge_name
            .clone()
            .unwrap_or_else(|| format!("br-{}", &id[..12]));
        if !valid_ifname(&bridge) {
            return Err(err(
                io::ErrorKind::InvalidInput,
                format!("network {name}: invalid bridge name {bridge:?}"),
            ));
        }
        if self
            .state
            .networks
            .iter()
            .any(|n| n.bridge.as_deref() == Some(&bridge))
        {
            return Err(err(
                io::ErrorKind::AlreadyExists,
                format!("network {name}: bridge {bridge} is used by another network"),
            ));
        }
        let mut labels = opts.labels.clone();
        labels.retain(|k, _| !k.is_empty());
        self.state.networks.push(NetworkRecord {
            id,
            name: name.to_string(),
            driver,
            created: crate::timefmt::now(),
            internal: opts.internal,
            labels,
            bridge: Some(bridge),
            pool: Some(pool),
            endpoints: BTreeMap::new(),
        });
        let i = self.state.networks.len() - 1;
        let made = self
            .bring_up_bridge(i)
            .and_then(|_| self.start_dns_for(i))
            .and_then(|_| self.persist());
        if let Err(e) = made {
            let net = self.state.networks.remove(i);
            if let Some(b) = &net.bridge {
                let _ = self.nl.delete_link(b);
            }
            if let Some(addr) = self.listeners.remove(&net.id) {
                if let Some(d) = &self.dns {
                    d.unlisten(addr);
                }
            }
            return Err(err(e.kind(), format!("network {name}: {e}")));
        }
        self.apply_firewall()?;
        Ok(self.state.networks[i].info())
    }

    /// `network rm`: refuses predefined networks and networks with containers attached.
    pub fn remove(&mut self, name_or_id: &str) -> io::Result<()> {
        let i = self.find(name_or_id)?;
        let net = &self.state.networks[i];
        if net.is_predefined() {
            return Err(err(
                io::ErrorKind::PermissionDenied,
                format!("{} is a pre-defined network and cannot be removed", net.name),
            ));
        }
        if !net.endpoints.is_empty() {
            let names: Vec<&str> = net
                .endpoints
                .values()
                .map(|e| e.container_name.as_str())
                .collect();
            return Err(err(
                io::ErrorKind::ResourceBusy,
                format!("network {} has active endpoints ({})", net.name, names.join(", ")),
            ));
        }
        let net = self.state.networks.remove(i);
        self.persist()?;
        if let Some(addr) = self.listeners.remove(&net.id) {
            if let Some(d) = &self.dns {
                d.unlisten(addr);
            }
        }
        self.table().remove_network(&net.name);
        if let Some(b) = &net.bridge {
            match self.nl.delete_link(b) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(e.kind(), format!("network {}: {e}", net.name))),
            }
        }
        self.apply_firewall()
    }

    pub fn list(&self) -> Vec<NetworkInfo> {
        self.state.networks.iter().map(NetworkRecord::info).collect()
    }

    /// `network inspect`, in Docker's JSON shape.
    pub fn inspect(&self, name_or_id: &str) -> io::Result<serde_json::Value> {
        let net = &self.state.networks[self.find(name_or_id)?];
        let config: Vec<serde_json::Value> = net
            .pool
            .iter()
            .map(|p| {
                let mut c =
                    serde_json::json!({"Subnet": p.subnet.to_string(), "Gateway": p.gateway.to_string()});
                if p.range != p.subnet {
                    c["IPRange"] = p.range.to_string().into();
                }
                c
            })
            .collect();
        let containers: serde_json::Map<String, serde_json::Value> = net
            .endpoints
            .values()
            .map(|e| {
                (
                    e.container_id.clone(),
                    serde_json::json!({
                        "Name": e.container_name,
                        "EndpointID": e.endpoint_id,
                        "MacAddress": e.endpoint.mac,
                        "IPv4Address": format!("{}/{}", e.endpoint.ip, e.endpoint.prefix),
                        "IPv6Address": "",
                    }),
                )
            })
            .collect();
        let mut options = serde_json::Map::new();
        if let Some(b) = &net.bridge {
            options.insert(BRIDGE_NAME_OPTION.into(), b.clone().into());
        }
        Ok(serde_json::json!({
            "Name": net.name,
            "Id": net.id,
            "Created": net.created,
            "Scope": "local",
            "Driver": net.driver,
            "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": {}, "Config": config},
            "Internal": net.internal,
            "Attachable": false,
            "Ingress": false,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": containers,
            "Options": options,
            "Labels": net.labels,
        }))
    }

    /// `network prune`: remove user networks without containers; returns their names.
    pub fn prune(&mut self) -> io::Result<Vec<String>> {
        let unused: Vec<String> = self
            .state
            .networks
            .iter()
            .filter(|n| !n.is_predefined() && n.endpoints.is_empty())
            .map(|n| n.id.clone())
            .collect();
        let mut removed = Vec::new();
        for id in unused {
            let name = self.state.networks[self.find(&id)?].name.clone();
            self.remove(&id)?;
            removed.push(name);
        }
        Ok(removed)
    }

    /// Connect a container (its network namespace file, e.g. `/proc/PID/ns/net`) to `network`.
    /// The first network a container joins gives it its default route. The container is
    /// resolvable on this network by its name, its short id and every name in `aliases`
    /// (network aliases, plus its hostname and compose service name when it has them), each
    /// also as `name.network`.
    ///
    /// The endpoint (address, interface names) is persisted once, before any link is made: a
    /// crash midway leaves a recorded endpoint without links, which `detach` clears, and
    /// never an address in use that the state does not know.
    pub fn attach(
        &mut self,
        container_id: &str,
        container_name: &str,
        netns_path: &Path,
        network: &str,
        aliases: &[String],
        requested_ip: Option<Ipv4Addr>,
    ) -> io::Result<Endpoint> {
        let i = self.find(network)?;
        let net = &self.state.networks[i];
        let net_name = net.name.clone();
        let ctx = |e: io::Error| {
            err(
                e.kind(),
                format!("connecting {container_name} to network {net_name}: {e}"),
            )
        };
        let (Some(bridge), Some(_)) = (net.bridge.clone(), net.pool.as_ref()) else {
            let e = err(
                io::ErrorKind::Unsupported,
                format!("network driver {} has no endpoints", net.driver),
            );
            return Err(ctx(e));
        };
        if net.endpoints.contains_key(container_id) {
            return Err(ctx(err(io::ErrorKind::AlreadyExists, "already connected".into())));
        }
        let net_id = net.id.clone();

        // Names first (nothing to undo yet): the next free ethN inside, a veth name outside.
        let container_ns = Netns::Path(netns_path.to_path_buf());
        let mut c = Netlink::open(&container_ns).map_err(ctx)?;
        let taken: Vec<String> = c.links().map_err(ctx)?.into_iter().map(|l| l.name).collect();
        let ifname = (0..)
            .map(|n| format!("eth{n}"))
            .find(|n| !taken.contains(n))
            .unwrap_or_default();
        let first = !taken.iter().any(|n| n.starts_with("eth"));
        let mut host_if = format!("vs{}{}", ifname_part(container_id, 7), &net_id[..4]);
        // Ids sharing a prefix would collide on the name: fall back to a random one.
        if !matches!(self.nl.link(&host_if), Ok(None)) {
            host_if = format!("vs{}", random_hex(6)?);
        }

        let pool = self.state.networks[i]
            .pool
            .as_mut()
            .ok_or_else(|| io::Error::other("pool vanished"))?;
        let ip = match requested_ip {
            Some(ip) => pool.allocate_specific(ip, container_id).map(|_| ip),
            None => pool.allocate(container_id),
        }
        .map_err(|e| ctx(err(io::ErrorKind::AddrNotAvailable, e.to_string())))?;
        let (prefix, gateway) = (pool.subnet.prefix, pool.gateway);
        let o = ip.octets();
        let mac = [0x02, 0x42, o[0], o[1], o[2], o[3]];
        let mac_text = mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let endpoint = Endpoint {
            ip,
            prefix,
            gateway,
            mac: mac_text,
            ifname: ifname.clone(),
        };
        let record = EndpointRecord {
            container_id: container_id.to_string(),
            container_name: container_name.trim_start_matches('/').to_string(),
            endpoint_id: random_hex(32)?,
            netns: netns_path.to_path_buf(),
            host_ifname: host_if.clone(),
            aliases: aliases.to_vec(),
            endpoint: endpoint.clone(),
        };
        self.state.networks[i]
            .endpoints
            .insert(container_id.to_string(), record.clone());
        let plumbed = self.persist_endpoints().and_then(|_| {
            let link = Link {
                bridge: &bridge,
                host_if: &host_if,
                ifname: &ifname,
                first,
                mac,
            };
            self.plumb(&mut c, &container_ns, &link, ip, prefix, gateway)
        });
        if let Err(e) = plumbed {
            self.state.networks[i].endpoints.remove(container_id);
            let _ = self.nl.delete_link(&host_if);
            self.release_ip(i, ip);
            let _ = self.persist_endpoints();
            return Err(ctx(e));
        }
        self.register_dns(&net_name, &record);
        Ok(endpoint)
    }

    fn release_ip(&mut self, i: usize, ip: Ipv4Addr) {
        if let Some(p) = self.state.networks[i].pool.as_mut() {
            p.release(ip);
        }
    }

    /// veth pair, host end on the bridge, container end as `ifname`, addressed, up, with the
    /// default route when it is the container's first interface.
    fn plumb(
        &mut self,
        c: &mut Netlink,
        container_ns: &Netns,
        link: &Link<'_>,
        ip: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
    ) -> io::Result<()> {
        let bridge_index = self.nl.index(link.bridge)?;
        let mtu = self
            .nl
            .link(link.bridge)?
            .map(|l| l.mtu)
            .filter(|&m| m > 0)
            .unwrap_or(1500);
        // The container end is born in its namespace under its final name: moving a link
        // between namespaces waits for an RCU grace period (about 20 ms here).
        self.nl
            .create_veth_into(link.host_if, link.ifname, container_ns)?;
        let host_change = LinkChange {
            master: Some(bridge_index),
            mtu: Some(mtu),
            up: Some(true),
            ..Default::default()
        };
        self.nl.set_link(link.host_if, &host_change)?;
        let inner = LinkChange {
            mac: Some(link.mac),
            mtu: Some(mtu),
            up: Some(true),
            ..Default::default()
        };
        c.set_link(link.ifname, &inner)?;
        c.set_up("lo")?;
        c.add_addr_v4(link.ifname, ip, prefix)?;
        if link.first {
            c.add_default_route_v4(gateway, link.ifname)?;
        }
        Ok(())
    }

    /// Disconnect a container from `network`: its veth goes, its address is released.
    pub fn detach(&mut self, container_id: &str, network: &str) -> io::Result<()> {
        self.detach_with(container_id, network, false)
    }

    /// As [`NetworkManager::detach`]; with `later` the veth is deleted by the reaper thread
    /// (for containers that are gone: nothing can use the link any more).
    fn detach_with(&mut self, container_id: &str, network: &str, later: bool) -> io::Result<()> {
        let i = self.find(network)?;
        let net_name = self.state.networks[i].name.clone();
        let Some(rec) = self.state.networks[i].endpoints.remove(container_id) else {
            return Err(err(
                io::ErrorKind::NotFound,
                format!("container {container_id} is not connected to network {net_name}"),
            ));
        };
        // The host end is gone already when the container's namespace died with it.
        let deleted = if later {
            self.delete_later(&rec.host_ifname)
        } else {
            self.nl.delete_link(&rec.host_ifname)
        };
        match deleted {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                self.state.networks[i]
                    .endpoints
                    .insert(container_id.to_string(), rec);
                return Err(err(
                    e.kind(),
                    format!("disconnecting from network {net_name}: {e}"),
                ));
            }
        }
        self.release_ip(i, rec.endpoint.ip);
        self.table().remove(container_id, &net_name);
        let (gone, kept): (Vec<PublishedPort>, Vec<PublishedPort>) =
            std::mem::take(&mut self.state.published)
                .into_iter()
                .partition(|p| p.target_ip == rec.endpoint.ip);
        self.state.published = kept;
        let had_ports = !gone.is_empty();
        for p in gone {
            self.release_port(p.mapping.proto, p.mapping.host_port);
        }
        self.persist_endpoints()?;
        if had_ports {
            self.apply_firewall()?;
        }
        Ok(())
    }

    /// Queue the deletion of link `name` on the reaper thread.
    fn delete_later(&mut self, name: &str) -> io::Result<()> {
        let index = self.nl.index(name)?;
        if self.reaper.is_none() {
            self.reaper = Some(reaper::Reaper::start(&self.config.host)?);
        }
        if let Some(r) = &self.reaper {
            r.delete(index, name);
        }
        Ok(())
    }

    /// Disconnect a container whose processes are all gone from every network; its veths are
    /// deleted in the background, so its exit does not wait for the kernel.
    pub fn detach_all_exited(&mut self, container_id: &str) -> io::Result<()> {
        self.detach_all_with(container_id, true)
    }

    /// Disconnect a container from every network (container removal).
    pub fn detach_all(&mut self, container_id: &str) -> io::Result<()> {
        self.detach_all_with(container_id, false)
    }

    fn detach_all_with(&mut self, container_id: &str, later: bool) -> io::Result<()> {
        let nets: Vec<String> = self
            .state
            .networks
            .iter()
            .filter(|n| n.endpoints.contains_key(container_id))
            .map(|n| n.id.clone())
            .collect();
        for id in nets {
            self.detach_with(container_id, &id, later)?;
        }
        Ok(())
    }

    /// The networks a container is on, with its endpoint on each.
    pub fn endpoints_of(&self, container_id: &str) -> Vec<(String, Endpoint)> {
        self.state
            .networks
            .iter()
            .filter_map(|n| {
                n.endpoints
                    .get(container_id)
                    .map(|e| (n.name.clone(), e.endpoint.clone()))
            })
            .collect()
    }

    /// The nameserver to put in resolv.conf of a container on `network`; None when the
    /// embedded DNS could not listen there (use the host's resolvers then).
    pub fn dns_server_for(&self, network: &str) -> Option<IpAddr> {
        let net = &self.state.networks[self.find(network).ok()?];
        self.listeners.get(&net.id).map(|a| a.ip())
    }

    /// The DNS listener (address and port) of `network`, for tests and diagnostics.
    pub fn dns_listener(&self, network: &str) -> Option<SocketAddr> {
        let net = &self.state.networks[self.find(network).ok()?];
        self.listeners.get(&net.id).copied()
    }

    /// Replace the upstream resolvers (`--dns` of the daemon, or a changed resolv.conf).
    pub fn set_upstreams(&mut self, upstreams: Upstreams) {
        if let Some(d) = &self.dns {
            d.set_upstreams(upstreams.clone());
        }
        self.config.upstreams = Some(upstreams);
    }

    /// On daemon start: bring back bridges that are missing (with the surviving veths of
    /// running containers back on them), the DNS listeners, names, held ports and rules.
    /// Allocations are kept as persisted.
    pub fn restore(&mut self) -> io::Result<()> {
        // A kernel without nfnetlink gets the userland proxy from the first port on.
        if self.nft_works.is_none() && self.config.firewall && !firewall::available(&self.config.host) {
            self.nft_works = Some(false);
        }
        for i in 0..self.state.networks.len() {
            let name = self.state.networks[i].name.clone();
            self.bring_up_bridge(i)
                .and_then(|_| self.start_dns_for(i))
                .map_err(|e| err(e.kind(), format!("restoring network {name}: {e}")))?;
            let endpoints: Vec<EndpointRecord> = self.state.networks[i].endpoints.values().cloned().collect();
            let bridge = self.state.networks[i].bridge.clone();
            for e in &endpoints {
                self.register_dns(&name, e);
                // A recreated bridge has no ports: put surviving host ends back on it.
                if let (Some(bridge), Some(link)) = (&bridge, self.nl.link(&e.host_ifname)?) {
                    let master = self.nl.index(bridge)?;
                    if link.master != Some(master) {
                        let change = LinkChange {
                            master: Some(master),
                            up: Some(true),
                            ..Default::default()
                        };
                        self.nl.set_link(&e.host_ifname, &change)?;
                    }
                }
            }
        }
        for p in self.state.published.clone() {
            if let Err(e) = self.hold_port(&p.mapping, p.mapping.host_port, p.target_ip) {
                // Under nftables the port stays published (DNAT wins over a local listener);
                // through the proxy it does not, and the log says so.
                log::warn!(
                    "published port {}/{}: {e}",
                    p.mapping.host_port,
                    p.mapping.proto.as_str()
                );
            }
        }
        self.apply_firewall()?;
        self.restored = true;
        Ok(())
    }

    /// Whether [`NetworkManager::restore`] has succeeded since the manager was opened.
    pub fn is_restored(&self) -> bool {
        self.restored
    }

    /// On daemon stop: stop the DNS server. Bridges, veths and rules stay, since containers
    /// keep running across a daemon restart and all of it is in the persisted state.
    pub fn shutdown(&mut self) {
        self.listeners.clear();
        self.dns = None;
        self.proxy = None;
        self.reservations.clear();
    }

    /// Remove every bridge and rule this manager made (uninstall, and test cleanup).
    pub fn destroy_all(&mut self) -> io::Result<()> {
        self.shutdown();
        for n in &self.state.networks {
            for e in n.endpoints.values() {
                let _ = self.nl.delete_link(&e.host_ifname);
            }
            if let Some(b) = &n.bridge {
                let _ = self.nl.delete_link(b);
            }
        }
        self.state.networks.clear();
        self.state.published.clear();
        self.reservations.clear();
        self.persist()?;
        self.persist_endpoints()?;
        if self.use_nft() {
            firewall::remove(&self.config.host)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manager_can_move_between_threads() {
        fn is_send<T: Send>() {}
        is_send::<NetworkManager>();
    }

    #[test]
    fn interface_names() {
        assert_eq!(ifname_part("ab/c:d-e1234567", 7), "abcde12");
        assert!(valid_ifname("br-0123456789a"));
        assert!(!valid_ifname("br-0123456789abc"));
        assert!(!valid_ifname("a b") && !valid_ifname("") && !valid_ifname("a/b"));
    }
}
