//! The engine: every container operation the API offers, over the records on disk, the image
//! store and the runtime. One `Entry` per container holds its record behind a mutex; a condvar
//! wakes waiters (`wait`, `stop`, attach streams) on every state change.
//!
//! Guarantees: a record on disk is always whole (atomic writes); a container the daemon did
//! not see exit is found again at start-up (the shim outlives the daemon); a name is held by
//! one container at a time.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::api::http::{ApiError, ApiResult};
use crate::api::types::{ContainerConfig, CreateRequest};
use crate::image::{Image, ImageError, ImageStore};
use crate::runtime::{self, BindFile, ContainerSpec, ContainerState, LogSpec, NetworkMode, RootfsSpec};
use crate::storage::atomic;
use crate::timefmt;

use super::container::{self, ImageDefaults, Record, RestartPolicy, State, Status};
use super::names::{self, Lookup};

/// Daemon-wide settings the engine needs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub root: PathBuf,
    /// Sub-path under the daemon's own cgroup where containers' cgroups go.
    pub cgroup_parent: String,
    /// `--bip`: address and prefix of the default bridge (None: the built-in default).
    pub bip: Option<String>,
    /// `--dns`: the embedded DNS's upstream servers (empty: those of /etc/resolv.conf).
    pub dns: Vec<std::net::IpAddr>,
    /// Insecure registries and extra CAs for pulls and pushes.
    pub registry: crate::image::registry::RegistryConfig,
}

/// One container: its directory, its record and the condvar announcing changes.
pub struct Entry {
    pub id: String,
    pub dir: PathBuf,
    slot: Mutex<Slot>,
    changed: Condvar,
}

/// The record plus what only lives in memory.
pub struct Slot {
    pub rec: Record,
    /// Number of exits seen since the daemon started (wakes `wait?condition=next-exit`).
    pub exits: u64,
    /// Number of starts seen since the daemon started (attach streams follow each run).
    pub starts: u64,
    /// A removal has been claimed and is under way.
    pub removing: bool,
    pub removed: bool,
}

impl Entry {
    pub fn lock(&self) -> MutexGuard<'_, Slot> {
        // A poisoned lock means a handler panicked mid-update; the record on disk is still
        // whole, so keep serving with the in-memory value.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until `done` holds or `timeout` passes; returns whether it holds.
    pub fn wait_until(&self, timeout: Option<Duration>, mut done: impl FnMut(&Slot) -> bool) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut slot = self.lock();
        loop {
            if done(&slot) {
                return true;
            }
            match deadline {
                None => slot = self.changed.wait(slot).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    slot = self
                        .changed
                        .wait_timeout(slot, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    pub fn notify(&self) {
        self.changed.notify_all();
    }

    /// Save the record: atomic always; durable (fsynced) unless the container is `--rm`, whose
    /// record is meant to vanish (start-up removes any left by a power cut).
    fn persist(&self, rec: &Record) -> ApiResult<()> {
        let path = self.dir.join("container.json");
        let result = if rec.host_config.auto_remove {
            serde_json::to_vec(rec)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                .and_then(|data| atomic::replace(&path, &data))
        } else {
            atomic::write_json(&path, rec)
        };
        result.map_err(|e| ApiError::internal(format!("saving state of container {}: {e}", self.id)))
    }
}

pub struct Engine {
    pub config: EngineConfig,
    pub images: ImageStore,
    containers: Mutex<BTreeMap<String, Arc<Entry>>>,
    /// Networks, endpoints and published ports (see `daemon::network`).
    pub net: Mutex<crate::net::NetworkManager>,
    pub volumes: super::volumes::VolumeStore,
    /// What happened, for `/events` and the admin page.
    pub events: super::events::EventBus,
}

/// How `wait` decides it is done (Docker's `condition` parameter).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

pub fn image_error(e: ImageError) -> ApiError {
    ApiError::new(e.http_status(), e.to_string())
}

impl Engine {
    /// Open the state under `config.root` and load every container record.
    pub fn open(config: EngineConfig) -> std::io::Result<Arc<Engine>> {
        let cdir = config.root.join("containers");
        atomic::create_dir_all(&cdir)?;
        let images = ImageStore::open(&config.root.join("image"))?;
        let mut net = crate::net::NetworkManager::open(&config.root.join("network"))?;
        if !config.dns.is_empty() {
            net.set_upstreams(crate::net::dns_server::Upstreams {
                servers: config
                    .dns
                    .iter()
                    .map(|ip| std::net::SocketAddr::new(*ip, 53))
                    .collect(),
                timeout: std::time::Duration::from_secs(2),
            });
        }
        net.ensure_default(config.bip.as_deref())?;
        // The kernel side (bridges, DNS listeners, rules) is restored on first use of the
        // manager, see `Engine::net`, so the API is up before the bridge and nf_tables
        // modules have loaded on a board that has just booted.
        let volumes = super::volumes::VolumeStore::open(&config.root.join("volumes"))?;
        let engine = Arc::new(Engine {
            config,
            images,
            containers: Mutex::new(BTreeMap::new()),
            net: Mutex::new(net),
            volumes,
            events: Default::default(),
        });
        for dirent in fs::read_dir(&cdir)? {
            let dir = dirent?.path();
            let file = dir.join("container.json");
            if !file.exists() {
                // A create cut short before its record was written: nothing refers to it.
                let _ = fs::remove_dir_all(&dir);
                continue;
            }
            let rec: Record = match atomic::read_json(&file) {
                Ok(r) => r,
                Err(e) => {
                    log::error!("skipping container in {}: {e}", dir.display());
                    continue;
                }
            };
            let entry = Arc::new(Entry {
                id: rec.id.clone(),
                dir,
                slot: Mutex::new(Slot {
                    rec,
                    exits: 0,
                    starts: 0,
                    removing: false,
                    removed: false,
                }),
                changed: Condvar::new(),
            });
            engine.map().insert(entry.id.clone(), entry);
        }
        Ok(engine)
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Entry>>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reconcile records with reality after a (re)start: reattach to live shims, collect exits
    /// that happened while the daemon was down, start what the restart policies say.
    pub fn recover(self: &Arc<Self>) {
        let entries: Vec<Arc<Entry>> = self.map().values().cloned().collect();
        self.forget_unknown_endpoints(&entries.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
        for entry in entries {
            let mut slot = entry.lock();
            let was = slot.rec.state.clone();
            match runtime::state(&entry.dir) {
                ContainerState::Running { pid, .. } if was.status.is_active() => {
                    slot.rec.state.status = Status::Running;
                    slot.rec.state.pid = pid;
                    drop(slot);
                    self.spawn_monitor(entry.clone());
                    continue;
                }
                ContainerState::Exited(info) if was.status.is_active() => {
                    cleanup(&entry);
                    self.release_network(&entry);
                    apply_exit(&mut slot.rec.state, &info);
                    let _ = entry.persist(&slot.rec);
                }
                _ if was.status.is_active() => {
                    self.release_network(&entry);
                    slot.rec.state.status = Status::Exited;
                    slot.rec.state.pid = 0;
                    slot.rec.state.exit_code = 255;
                    slot.rec.state.error = "the container's shim was gone when the daemon started".into();
                    slot.rec.state.finished_at = timefmt::now();
                    let _ = entry.persist(&slot.rec);
                }
                _ => {}
            }
            if slot.rec.host_config.auto_remove {
                // A `--rm` container that ended while the daemon was away (or before a power
                // cut) is removed now, as it would have been.
                drop(slot);
                if let Err(e) = self.remove_entry(entry.clone(), true) {
                    log::warn!("removing --rm container {}: {}", short(&entry.id), e.message);
                }
                continue;
            }
            let policy = policy_of(&slot.rec);
            if policy.start_on_boot(&was, slot.rec.manually_stopped) {
                log::info!(
                    "starting {} ({}) by its restart policy",
                    slot.rec.name,
                    short(&entry.id)
                );
                if let Err(e) = self.launch(&entry, &mut slot) {
                    log::warn!("restart policy: starting {} failed: {}", slot.rec.name, e.message);
                }
            }
        }
    }

    /// Find a container by full ID, name or unique ID prefix.
    pub fn get(&self, reference: &str) -> ApiResult<Arc<Entry>> {
        let map = self.map();
        let pairs: Vec<(String, String)> = map
            .values()
            .map(|e| (e.id.clone(), e.lock().rec.name.clone()))
            .collect();
        let found = names::resolve(reference, pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())));
        match found {
            Lookup::Found(id) => Ok(map[id].clone()),
            Lookup::Ambiguous => Err(ApiError::bad_request(format!(
                "multiple containers found with provided prefix: {reference}"
            ))),
            Lookup::Missing => Err(ApiError::not_found(format!("No such container: {reference}"))),
        }
    }

    pub fn list(&self) -> Vec<Arc<Entry>> {
        self.map().values().cloned().collect()
    }

    /// `POST /containers/create`.
    pub fn create(&self, name: Option<&str>, req: CreateRequest) -> ApiResult<(String, Vec<String>)> {
        let image_ref = req.config.image.clone();
        if image_ref.is_empty() {
            return Err(ApiError::bad_request("no image specified"));
        }
        let image = self.images.resolve(&image_ref).map_err(image_error)?;
        let hc = req.host_config;
        let policy = RestartPolicy::parse(&hc.restart_policy.name, hc.restart_policy.maximum_retry_count)
            .map_err(ApiError::bad_request)?;
        if hc.auto_remove && policy != RestartPolicy::No {
            return Err(ApiError::bad_request(
                "can't create 'AutoRemove' container with restart policy",
            ));
        }
        validate_host_config(&hc)?;
        let networks = self.initial_networks(&hc, &req.networking_config)?;
        let mut config = container::merge_config(req.config, &image_defaults(&image));
        config.image = image_ref.clone();
        let rec_probe = Record {
            config: config.clone(),
            ..Default::default()
        };
        if rec_probe.argv().is_empty() {
            return Err(ApiError::bad_request("no command specified"));
        }
        let mut mount_points = self.plan_mounts(&hc, &config)?;
        let id = names::new_id()?;
        let mut map = self.map();
        let taken = |n: &str| map.values().any(|e| e.lock().rec.name == n);
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let n = names::validate(n).map_err(ApiError::bad_request)?.to_string();
                if let Some(other) = map.values().find(|e| e.lock().rec.name == n) {
                    return Err(ApiError::conflict(format!(
                        "Conflict. The container name \"/{n}\" is already in use by container \"{}\". \
                         You have to remove (or rename) that container to be able to reuse that name.",
                        other.id
                    )));
                }
                n
            }
            None => {
                let r = names::random_u64();
                (0..100)
                    .map(|i| names::generate(r, i))
                    .find(|n| !taken(n))
                    .unwrap_or_else(|| id[..12].to_string())
            }
        };
        self.create_volumes(&mut mount_points)?;
        let dir = self.config.root.join("containers").join(&id);
        // A `--rm` container's directory need not survive a power cut (see `persist`).
        if hc.auto_remove {
            fs::create_dir_all(&dir)?;
        } else {
            atomic::create_dir_all(&dir)?;
        }
        let rec = Record {
            id: id.clone(),
            name,
            created: timefmt::now(),
            image_id: image.id.clone(),
            image_ref,
            config,
            host_config: hc,
            networks,
            mount_points,
            ..Default::default()
        };
        let entry = Arc::new(Entry {
            id: id.clone(),
            dir,
            slot: Mutex::new(Slot {
                rec,
                exits: 0,
                starts: 0,
                removing: false,
                removed: false,
            }),
            changed: Condvar::new(),
        });
        entry.persist(&entry.lock().rec)?;
        self.container_event(&entry.lock().rec, "create", &[]);
        map.insert(id.clone(), entry);
        Ok((id, Vec::new()))
    }

    /// `POST /containers/{id}/start`; `Ok(false)` when it was already running (HTTP 304).
    pub fn start(self: &Arc<Self>, reference: &str) -> ApiResult<bool> {
        let entry = self.get(reference)?;
        let mut slot = entry.lock();
        match slot.rec.state.status {
            s if s.is_active() => return Ok(false),
            Status::Removing => {
                return Err(ApiError::conflict(format!(
                    "container {} is marked for removal",
                    entry.id
                )))
            }
            _ => {}
        }
        slot.rec.manually_stopped = false;
        slot.rec.restart_count = 0;
        if let Err(e) = self.launch(&entry, &mut slot) {
            // As dockerd: a `--rm` container that cannot start is removed, so clients waiting
            // for `condition=removed` are released.
            if slot.rec.host_config.auto_remove {
                drop(slot);
                if let Err(rm) = self.remove(&entry.id, true) {
                    log::warn!("auto-removing {}: {}", short(&entry.id), rm.message);
                }
            }
            return Err(e);
        }
        Ok(true)
    }

    /// Start the container's process and a monitor thread for it.
    fn launch(self: &Arc<Self>, entry: &Arc<Entry>, slot: &mut Slot) -> ApiResult<()> {
        self.spawn_process(entry, slot)?;
        self.spawn_monitor(entry.clone());
        Ok(())
    }

    fn spawn_process(&self, entry: &Entry, slot: &mut Slot) -> ApiResult<()> {
        let spec = self.spec_for(entry, &slot.rec)?;
        let started = runtime::start(&entry.dir, &spec);
        if started.is_err() {
            self.release_network(entry);
        }
        match started {
            Ok(pid) => {
                let st = &mut slot.rec.state;
                *st = State {
                    status: Status::Running,
                    pid,
                    started_at: timefmt::now(),
                    ..State::default()
                };
                slot.starts += 1;
                entry.persist(&slot.rec)?;
                entry.notify();
                self.container_event(&slot.rec, "start", &[]);
                Ok(())
            }
            Err(e) => {
                let message = format!("failed to create task for container: {e}");
                let st = &mut slot.rec.state;
                st.status = Status::Exited;
                st.pid = 0;
                st.exit_code = e.code();
                st.error = message.clone();
                st.finished_at = timefmt::now();
                slot.exits += 1;
                let _ = entry.persist(&slot.rec);
                entry.notify();
                let status = if e.code() == 125 { 500 } else { 400 };
                Err(ApiError::new(status, message))
            }
        }
    }

    /// Build the runtime's spec from the record and the image's layers.
    fn spec_for(&self, entry: &Entry, rec: &Record) -> ApiResult<ContainerSpec> {
        let image = self.images.resolve(&rec.image_id).map_err(image_error)?;
        let lower = self.images.layer_dirs(&image);
        let hostname = if rec.config.hostname.is_empty() {
            rec.id[..12].to_string()
        } else {
            rec.config.hostname.clone()
        };
        let hc = &rec.host_config;
        // Before the network: a mount that cannot be prepared must not leave an endpoint.
        let mounts = self.runtime_mounts(rec)?;
        let (network, etc) = match super::network::mode_of(&hc.network_mode)? {
            super::network::Mode::Host => (NetworkMode::Host, Default::default()),
            super::network::Mode::None => (NetworkMode::None, Default::default()),
            super::network::Mode::Networks(_) => {
                let (path, etc) = self.connect_at_start(entry, rec, &hostname)?;
                (NetworkMode::Path(path), etc)
            }
        };
        let files = write_etc_files(&entry.dir, &hostname, &network, hc, &etc);
        if files.is_err() {
            self.release_network(entry);
        }
        let files = files?;
        for d in ["upper", "work"] {
            // Recreated at each start if lost: no fsync needed.
            fs::create_dir_all(entry.dir.join(d))?;
        }
        let log = &hc.log_config.config;
        Ok(ContainerSpec {
            id: rec.id.clone(),
            hostname,
            args: rec.argv(),
            env: rec.config.env.clone().unwrap_or_default(),
            cwd: if rec.config.working_dir.is_empty() {
                "/".into()
            } else {
                rec.config.working_dir.clone()
            },
            user: rec.config.user.clone(),
            tty: rec.config.tty,
            open_stdin: rec.config.open_stdin,
            rootfs: RootfsSpec {
                lower,
                upper: entry.dir.join("upper"),
                work: entry.dir.join("work"),
            },
            readonly_rootfs: hc.readonly_rootfs,
            cap_add: hc.cap_add.clone().unwrap_or_default(),
            cap_drop: hc.cap_drop.clone().unwrap_or_default(),
            privileged: hc.privileged,
            memory: (hc.memory > 0).then_some(hc.memory),
            memory_swap: (hc.memory_swap != 0).then_some(hc.memory_swap),
            nano_cpus: (hc.nano_cpus > 0).then_some(hc.nano_cpus),
            pids_limit: hc.pids_limit.filter(|p| *p > 0),
            init: hc.init.unwrap_or(false),
            network,
            cgroup_parent: if hc.cgroup_parent.is_empty() {
                self.config.cgroup_parent.clone()
            } else {
                hc.cgroup_parent.clone()
            },
            log: LogSpec {
                max_size: log
                    .get("max-size")
                    .map(|s| parse_size(s))
                    .transpose()?
                    .unwrap_or(0),
                max_file: log
                    .get("max-file")
                    .map(|s| s.parse::<u32>())
                    .transpose()
                    .map_err(|_| {
                        ApiError::bad_request("invalid value for log-opt max-file: must be a positive number")
                    })?
                    .unwrap_or(1),
            },
            files,
            stop_signal: stop_signal(&rec.config),
            mounts,
        })
    }

    fn spawn_monitor(self: &Arc<Self>, entry: Arc<Entry>) {
        super::health::watch(entry.clone());
        let engine = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("monitor-{}", short(&entry.id)))
            .stack_size(128 * 1024)
            .spawn(move || engine.monitor(entry));
        if let Err(e) = spawned {
            log::error!("cannot start a monitor thread: {e}");
        }
    }

    /// Wait for each exit of the container, record it, and apply the restart policy.
    fn monitor(self: Arc<Self>, entry: Arc<Entry>) {
        let mut delay = Duration::ZERO;
        loop {
            let started = Instant::now();
            let info = match runtime::wait(&entry.dir) {
                Ok(info) => info,
                Err(e) => runtime::ExitInfo {
                    code: 255,
                    oom_killed: false,
                    finished_at: timefmt::now(),
                    error: format!("lost track of the container: {e}"),
                },
            };
            cleanup(&entry);
            self.release_network(&entry);
            let (restart, auto_remove) = {
                let mut slot = entry.lock();
                apply_exit(&mut slot.rec.state, &info);
                slot.exits += 1;
                let policy = policy_of(&slot.rec);
                let restart =
                    policy.should_restart(info.code, slot.rec.manually_stopped, slot.rec.restart_count);
                if restart {
                    slot.rec.state.status = Status::Restarting;
                    slot.rec.restart_count += 1;
                }
                if let Err(e) = entry.persist(&slot.rec) {
                    log::error!("{}", e.message);
                }
                entry.notify();
                if info.oom_killed {
                    self.container_event(&slot.rec, "oom", &[]);
                }
                self.container_event(&slot.rec, "die", &[("exitCode", &info.code.to_string())]);
                (restart, slot.rec.host_config.auto_remove)
            };
            if !restart {
                if auto_remove {
                    if let Err(e) = self.remove(&entry.id, true) {
                        log::warn!("auto-removing {}: {}", short(&entry.id), e.message);
                    }
                }
                return;
            }
            delay = container::restart_delay(delay, started.elapsed());
            // Sleep, but wake early if the user stops or removes the container meanwhile.
            let cancelled = entry.wait_until(Some(delay), |s| s.rec.manually_stopped || s.removed);
            let mut slot = entry.lock();
            if cancelled || slot.rec.state.status != Status::Restarting {
                if slot.rec.state.status == Status::Restarting {
                    slot.rec.state.status = Status::Exited;
                    let _ = entry.persist(&slot.rec);
                    entry.notify();
                }
                return;
            }
            if let Err(e) = self.spawn_process(&entry, &mut slot) {
                log::warn!("restarting {}: {}", slot.rec.name, e.message);
                // A failed start counts as an exit; keep backing off while the policy allows.
                let policy = policy_of(&slot.rec);
                if !policy.should_restart(
                    slot.rec.state.exit_code,
                    slot.rec.manually_stopped,
                    slot.rec.restart_count,
                ) {
                    return;
                }
            }
        }
    }

    /// `POST /containers/{id}/stop`; `Ok(false)` when it was not running (HTTP 304).
    pub fn stop(&self, reference: &str, timeout: Option<i64>, signal: Option<&str>) -> ApiResult<bool> {
        let entry = self.get(reference)?;
        let (sig, grace) = {
            let mut slot = entry.lock();
            let status = slot.rec.state.status;
            if !status.is_active() {
                return Ok(false);
            }
            slot.rec.manually_stopped = true;
            if status == Status::Restarting {
                slot.rec.state.status = Status::Exited;
                entry.persist(&slot.rec)?;
                entry.notify();
                return Ok(true);
            }
            entry.persist(&slot.rec)?;
            let sig = match signal {
                Some(s) => container::parse_signal(s)
                    .ok_or_else(|| ApiError::bad_request(format!("invalid signal: {s}")))?,
                None => stop_signal(&slot.rec.config),
            };
            let grace = timeout.or(slot.rec.config.stop_timeout).unwrap_or(10);
            (sig, grace)
        };
        self.terminate(&entry, sig, grace)?;
        self.container_event(&entry.lock().rec, "stop", &[]);
        Ok(true)
    }

    /// Send `sig`, wait `grace` seconds (negative: forever), then SIGKILL and wait for the exit.
    fn terminate(&self, entry: &Entry, sig: i32, grace: i64) -> ApiResult<()> {
        let exits = entry.lock().exits;
        let exited = |s: &Slot| s.exits > exits || !s.rec.state.status.is_active();
        if grace != 0 {
            let _ = runtime::kill(&entry.dir, sig);
            let timeout = (grace > 0).then(|| Duration::from_secs(grace as u64));
            if entry.wait_until(timeout, exited) {
                return Ok(());
            }
        }
        let _ = runtime::kill(&entry.dir, 9);
        if entry.wait_until(Some(Duration::from_secs(30)), exited) {
            Ok(())
        } else {
            Err(ApiError::internal(format!(
                "container {} did not exit after SIGKILL",
                entry.id
            )))
        }
    }

    /// `POST /containers/{id}/kill`.
    pub fn kill(&self, reference: &str, signal: &str) -> ApiResult<()> {
        let entry = self.get(reference)?;
        let sig = container::parse_signal(signal)
            .ok_or_else(|| ApiError::bad_request(format!("Invalid signal: {signal}")))?;
        let mut slot = entry.lock();
        if slot.rec.state.status != Status::Running {
            return Err(ApiError::conflict(format!(
                "Cannot kill container: {reference}: Container {} is not running",
                entry.id
            )));
        }
        if sig == 9 || sig == stop_signal(&slot.rec.config) {
            // As dockerd: a kill by the user is a manual stop for the restart policy.
            slot.rec.manually_stopped = true;
            entry.persist(&slot.rec)?;
        }
        self.container_event(&slot.rec, "kill", &[("signal", &sig.to_string())]);
        drop(slot);
        runtime::kill(&entry.dir, sig)
            .map_err(|e| ApiError::internal(format!("Cannot kill container {}: {e}", entry.id)))
    }

    /// `POST /containers/{id}/restart`.
    pub fn restart(
        self: &Arc<Self>,
        reference: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> ApiResult<()> {
        self.stop(reference, timeout, signal)?;
        self.start(reference)?;
        self.container_event(&self.get(reference)?.lock().rec, "restart", &[]);
        Ok(())
    }

    /// `DELETE /containers/{id}`.
    pub fn remove(&self, reference: &str, force: bool) -> ApiResult<()> {
        self.remove_entry(self.get(reference)?, force)
    }

    /// Remove one container. The first caller claims the removal (`removing`), so a user's
    /// `rm -f` and the monitor's auto-remove of a `--rm` container never both delete it.
    fn remove_entry(&self, entry: Arc<Entry>, force: bool) -> ApiResult<()> {
        {
            let mut slot = entry.lock();
            if slot.removing || slot.removed {
                // Someone else (the auto-remove of a `--rm` container) is removing it: the
                // outcome the caller asked for is on its way, so wait for it.
                drop(slot);
                if entry.wait_until(Some(Duration::from_secs(30)), |s| s.removed) {
                    return Ok(());
                }
                return Err(ApiError::conflict(format!(
                    "removal of container {} is already in progress",
                    entry.id
                )));
            }
            if slot.rec.state.status.is_active() {
                if !force {
                    return Err(ApiError::conflict(format!(
                        "cannot remove container \"/{}\": container is running: stop the container \
                         before removing or force remove",
                        slot.rec.name
                    )));
                }
                slot.rec.manually_stopped = true;
            }
            slot.removing = true;
        }
        let active = entry.lock().rec.state.status.is_active();
        if active {
            if let Err(e) = self.terminate(&entry, 9, 0) {
                entry.lock().removing = false;
                return Err(e);
            }
        }
        entry.lock().rec.state.status = Status::Removing;
        cleanup(&entry);
        self.release_network(&entry);
        match fs::remove_dir_all(&entry.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                entry.lock().removing = false;
                return Err(ApiError::internal(format!(
                    "removing {}: {e}",
                    entry.dir.display()
                )));
            }
        }
        self.map().remove(&entry.id);
        let (auto_remove, points) = {
            let slot = entry.lock();
            (slot.rec.host_config.auto_remove, slot.rec.mount_points.clone())
        };
        if auto_remove {
            // As dockerd: a `--rm` container takes its anonymous volumes with it.
            self.remove_anonymous_volumes(&points);
        }
        entry.lock().removed = true;
        entry.notify();
        self.container_event(&entry.lock().rec, "destroy", &[]);
        Ok(())
    }

    /// `POST /containers/{id}/wait`: the exit code once `condition` is met.
    pub fn wait(&self, reference: &str, condition: WaitCondition) -> ApiResult<(i32, String)> {
        let entry = self.get(reference)?;
        let (exits0, active) = {
            let s = entry.lock();
            (s.exits, s.rec.state.status.is_active())
        };
        entry.wait_until(None, |s| match condition {
            WaitCondition::NotRunning => {
                !active || s.exits > exits0 && !s.rec.state.status.is_active() || s.removed
            }
            WaitCondition::NextExit => s.exits > exits0 || s.removed,
            WaitCondition::Removed => s.removed,
        });
        let s = entry.lock();
        Ok((s.rec.state.exit_code, s.rec.state.error.clone()))
    }

    /// `POST /containers/{id}/rename`.
    pub fn rename(&self, reference: &str, new_name: &str) -> ApiResult<()> {
        let new_name = names::validate(new_name)
            .map_err(ApiError::bad_request)?
            .to_string();
        let entry = self.get(reference)?;
        let map = self.map();
        if let Some(other) = map
            .values()
            .find(|e| e.id != entry.id && e.lock().rec.name == new_name)
        {
            return Err(ApiError::conflict(format!(
                "Conflict. The container name \"/{new_name}\" is already in use by container \"{}\". \
                 You have to remove (or rename) that container to be able to reuse that name.",
                other.id
            )));
        }
        let mut slot = entry.lock();
        let old_name = std::mem::replace(&mut slot.rec.name, new_name.clone());
        entry.persist(&slot.rec)?;
        self.container_event(&slot.rec, "rename", &[("oldName", &format!("/{old_name}"))]);
        drop(slot);
        // Containers on user networks are found by their new name from now on.
        self.net()
            .rename_container(&entry.id, &new_name)
            .map_err(|e| ApiError::internal(format!("renaming {}: {e}", short(&entry.id))))
    }

    /// Announce a container event with Docker's attributes (name, image, labels, extras).
    pub fn container_event(&self, rec: &Record, action: &str, extra: &[(&str, &str)]) {
        let mut attrs =
            super::events::container_attributes(&rec.name, &rec.image_ref, rec.config.labels.as_ref());
        for (k, v) in extra {
            attrs.insert(k.to_string(), v.to_string());
        }
        self.events.emit("container", action, &rec.id, attrs);
    }

    /// Whether an image is used by any container (rmi refuses without force).
    pub fn image_users(&self, image_id: &str) -> Vec<String> {
        self.map()
            .values()
            .filter(|e| e.lock().rec.image_id == image_id)
            .map(|e| e.id.clone())
            .collect()
    }
}

/// Release what the runtime held for a finished container (cgroups); failures only warn, as
/// the container is gone either way.
fn cleanup(entry: &Entry) {
    if let Err(e) = runtime::cleanup(&entry.dir) {
        log::warn!("cleaning up after {}: {e}", short(&entry.id));
    }
}

fn apply_exit(state: &mut State, info: &runtime::ExitInfo) {
    state.status = Status::Exited;
    state.pid = 0;
    state.exit_code = info.code;
    state.oom_killed = info.oom_killed;
    state.error = info.error.clone();
    state.finished_at = info.finished_at.clone();
}

fn policy_of(rec: &Record) -> RestartPolicy {
    let p = &rec.host_config.restart_policy;
    RestartPolicy::parse(&p.name, p.maximum_retry_count).unwrap_or(RestartPolicy::No)
}

fn stop_signal(config: &ContainerConfig) -> i32 {
    config
        .stop_signal
        .as_deref()
        .and_then(container::parse_signal)
        .unwrap_or(15)
}

pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The image's config as defaults for a new container.
pub fn image_defaults(image: &Image) -> ImageDefaults {
    let c = &image.config;
    ImageDefaults {
        env: c.env.clone().unwrap_or_default(),
        cmd: c.cmd.clone(),
        entrypoint: c.entrypoint.clone(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        user: c.user.clone().unwrap_or_default(),
        labels: c.labels.clone().unwrap_or_default(),
        exposed_ports: c.exposed_ports.clone(),
        volumes: c.volumes.clone(),
        stop_signal: c.stop_signal.clone(),
        healthcheck: c.healthcheck.clone().and_then(|h| serde_json::from_value(h).ok()),
    }
}

fn validate_host_config(hc: &crate::api::types::HostConfig) -> ApiResult<()> {
    if hc.memory != 0 && hc.memory < 6 * 1024 * 1024 {
        return Err(ApiError::bad_request("Minimum memory limit allowed is 6MB"));
    }
    if hc.nano_cpus < 0 {
        return Err(ApiError::bad_request(
            "Range of CPUs is from 0.01 to the number of CPUs available",
        ));
    }
    if let Some(ms) = hc.log_config.config.get("max-size") {
        parse_size(ms)?;
    }
    if !matches!(hc.log_config.kind.as_str(), "" | "json-file" | "local") {
        return Err(ApiError::bad_request(format!(
            "logging driver \"{}\" is not supported (json-file only)",
            hc.log_config.kind
        )));
    }
    for cap in hc.cap_add.iter().flatten().chain(hc.cap_drop.iter().flatten()) {
        if !cap.eq_ignore_ascii_case("ALL") && runtime::caps::number(cap).is_none() {
            return Err(ApiError::bad_request(format!("invalid capability: {cap}")));
        }
    }
    Ok(())
}

/// Docker's size syntax for log options: `10m`, `512k`, `1g`, plain bytes.
pub fn parse_size(s: &str) -> ApiResult<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<f64>()
        .ok()
        .filter(|n| *n >= 0.0)
        .map(|n| (n * mult as f64) as u64)
        .ok_or_else(|| ApiError::bad_request(format!("invalid size: '{s}'")))
}

/// The container's resolv.conf, as docker makes it. On a user network the embedded DNS
/// (`embedded`) is the only nameserver and forwards outside names to the container's `--dns`
/// servers or the board's; elsewhere `--dns` servers, else the board's own resolv.conf
/// (`host`) without its loopback servers, which a container cannot reach.
fn resolv_conf(hc: &crate::api::types::HostConfig, embedded: Option<std::net::IpAddr>, host: &str) -> String {
    let mut out = String::new();
    let own: Vec<&String> = hc.dns.iter().flatten().collect();
    match embedded {
        Some(ns) => out.push_str(&format!("nameserver {ns}\n")),
        None if !own.is_empty() => {
            for s in own {
                out.push_str(&format!("nameserver {s}\n"));
            }
        }
        None => {
            for line in host.lines() {
                let loopback = line
                    .trim()
                    .strip_prefix("nameserver")
                    .and_then(|a| a.trim().parse::<std::net::IpAddr>().ok())
                    .is_some_and(|ip| ip.is_loopback());
                let keep = line.trim_start().starts_with("nameserver") && !loopback;
                if keep {
                    out.push_str(line.trim());
                    out.push('\n');
                }
            }
        }
    }
    let search: Vec<&str> = match &hc.dns_search {
        Some(v) if !v.is_empty() => v.iter().map(String::as_str).collect(),
        _ => host
            .lines()
            .filter_map(|l| l.trim().strip_prefix("search "))
            .flat_map(str::split_whitespace)
            .collect(),
    };
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    let mut options: Vec<&str> = hc.dns_options.iter().flatten().map(String::as_str).collect();
    if embedded.is_some() && !options.iter().any(|o| o.starts_with("ndots:")) {
        options.insert(0, "ndots:0");
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// Write /etc/hostname, /etc/hosts and /etc/resolv.conf for the container, as docker does.
fn write_etc_files(
    dir: &Path,
    hostname: &str,
    network: &NetworkMode,
    hc: &crate::api::types::HostConfig,
    etc: &super::network::EtcNet,
) -> ApiResult<Vec<BindFile>> {
    let mut hosts = String::new();
    if matches!(network, NetworkMode::Host) {
        hosts = fs::read_to_string("/etc/hosts").unwrap_or_default();
    } else {
        hosts.push_str(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
             ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        );
        if let Some(ip) = etc.ip {
            hosts.push_str(&format!("{ip}\t{hostname}\n"));
        }
    }
    for extra in hc.extra_hosts.iter().flatten() {
        if let Some((name, ip)) = extra.split_once(':').or_else(|| extra.split_once('=')) {
            // Docker's `host-gateway`: the board as the container sees it.
            let ip = match (ip, etc.gateway) {
                ("host-gateway", Some(gw)) => gw.to_string(),
                _ => ip.to_string(),
            };
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    let resolv = resolv_conf(
        hc,
        etc.nameserver,
        &fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    );
    let files = [
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts),
        ("resolv.conf", resolv),
    ];
    let mut binds = Vec::new();
    for (name, content) in files {
        let host = dir.join(name);
        // Regenerated at every start, so not state: no fsync on the start path.
        fs::write(&host, content.as_bytes())
            .map_err(|e| ApiError::internal(format!("writing {}: {e}", host.display())))?;
        binds.push(BindFile {
            host,
            container: format!("/etc/{name}"),
            readonly: false,
        });
    }
    Ok(binds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::HostConfig;

    #[test]
    fn resolv_conf_like_docker() {
        let host =
            "# made by dhcp\nnameserver 127.0.0.53\nnameserver 192.168.1.1\nsearch lan\noptions edns0\n";
        let none = HostConfig::default();
        // Default bridge: the board's servers that a container can reach, its search list.
        assert_eq!(
            resolv_conf(&none, None, host),
            "nameserver 192.168.1.1\nsearch lan\n"
        );
        // User network: only the embedded DNS, ndots:0 unless given.
        let gw = Some("10.88.0.1".parse().unwrap());
        assert_eq!(
            resolv_conf(&none, gw, host),
            "nameserver 10.88.0.1\nsearch lan\noptions ndots:0\n"
        );
        let own = HostConfig {
            dns: Some(vec!["9.9.9.9".into()]),
            dns_search: Some(vec!["a.example".into(), "b.example".into()]),
            dns_options: Some(vec!["ndots:2".into(), "timeout:1".into()]),
            ..Default::default()
        };
        // --dns goes to the embedded server's upstreams, not into the file.
        assert_eq!(
            resolv_conf(&own, gw, host),
            "nameserver 10.88.0.1\nsearch a.example b.example\noptions ndots:2 timeout:1\n"
        );
        assert_eq!(
            resolv_conf(&own, None, host),
            "nameserver 9.9.9.9\nsearch a.example b.example\noptions ndots:2 timeout:1\n"
        );
    }

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("10m").unwrap(), 10 << 20);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("2MB").unwrap(), 2 << 20);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("-1m").is_err());
    }
}
