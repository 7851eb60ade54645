//! Dockerfile builds, the way docker's legacy builder does them: each instruction turns the
//! current image into a new (untagged) image, RUN in a container whose overlay upper dir
//! becomes the layer, COPY/ADD by writing a layer tar directly, metadata instructions as
//! `empty_layer` history entries. A step whose inputs did not change is taken from the cache.
//!
//! The cache: `<image root>/build-cache/<key>` holds the image ID a step produced, where the
//! key is the sha256 of the parent image ID, the instruction as expanded (with the build
//! arguments RUN sees) and the digest of the files COPY/ADD read. An entry whose image is gone
//! is a miss. Entries are written atomically after the image they name.
//!
//! RUN containers use the daemon's default bridge network unless the build asks for `none`
//! or `host`; they are removed after their step, whether it worked or not.

mod copy;
pub mod diff;
pub mod dockerfile;
pub mod dockerignore;
mod instruction_args;
pub mod rootfs;
pub mod shell_lex;

use super::config::{self, ConfigFile, History, ImageConfig};
use super::store::{hex_of, tag_name, Pins};
use super::ImageStore;
use crate::storage::atomic;
use dockerfile::{Instruction, LineError};
use instruction_args::{expose_keys, healthcheck, key_values, parse_args};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const CACHE_DIR: &str = "build-cache";
/// `<cache dir>/parents/<image hex>` holds the ID of the image a build step started from.
const PARENTS_DIR: &str = "parents";
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Build arguments every Dockerfile may use without declaring them (kept out of history).
const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// `repo[:tag]` names for the result.
    pub tags: Vec<String>,
    /// Path of the Dockerfile inside the context ("Dockerfile" when empty).
    pub dockerfile: String,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// Labels added to the final image.
    pub labels: BTreeMap<String, String>,
    /// Network of RUN containers: "" (the default bridge), "none" or "host".
    pub network: String,
}

/// What a RUN container runs.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub image_id: String,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub network: String,
}

pub enum RunEvent<'a> {
    Started(&'a str),
    Output(&'a [u8]),
}

pub struct RunResult {
    pub container_id: String,
    pub exit_code: i32,
    /// The container's overlay upper dir (valid until `remove`).
    pub upper: PathBuf,
}

/// Runs RUN steps in containers (the daemon's engine).
pub trait Runner {
    /// `events` answers false once nobody listens any more (the client went away): the
    /// runner then stops the container.
    fn run(
        &self,
        req: &RunRequest,
        events: &mut dyn FnMut(RunEvent<'_>) -> bool,
    ) -> Result<RunResult, String>;
    fn remove(&self, container_id: &str);
}

/// The state of one build stage.
#[derive(Clone)]
struct Stage {
    name: Option<String>,
    /// `sha256:…` of the current image; None while a `scratch` stage has no step yet.
    image_id: Option<String>,
    config: ConfigFile,
    /// ARGs declared in this stage with their values (None: declared without a value).
    args: BTreeMap<String, Option<String>>,
    cmd_set: bool,
}

impl Stage {
    fn image_config(&self) -> ImageConfig {
        self.config.config.clone().unwrap_or_default()
    }

    fn env_value(&self, key: &str) -> Option<String> {
        let cfg = self.config.config.as_ref();
        if let Some(env) = cfg.and_then(|c| c.env.as_ref()) {
            for kv in env.iter().rev() {
                if let Some((k, v)) = kv.split_once('=') {
                    if k == key {
                        return Some(v.to_string());
                    }
                }
            }
        }
        self.args.get(key).cloned().flatten()
    }

    fn working_dir(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_string())
    }
}

/// Build the Dockerfile of the context directory `context`. `out` receives the progress text
/// (docker's "Step 1/5 : …" lines) and answers false once nobody reads it; the build then
/// stops before its next step. Returns the image ID (`sha256:…`).
pub fn build(
    store: &ImageStore,
    runner: &dyn Runner,
    context: &Path,
    opts: &BuildOptions,
    out: &mut dyn FnMut(&str) -> bool,
) -> Result<String, String> {
    let name = if opts.dockerfile.is_empty() {
        "Dockerfile"
    } else {
        opts.dockerfile.as_str()
    };
    let rel = rootfs::components(name).join("/");
    let text = fs::read(context.join(&rel))
        .map_err(|e| format!("Cannot locate specified Dockerfile: {name} ({e})"))?;
    let text = String::from_utf8_lossy(&text);
    let df = dockerfile::parse(&text).map_err(|e| e.to_string())?;
    let tags = opts
        .tags
        .iter()
        .map(|t| tag_name(t).map_err(|e| format!("invalid tag {t:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut b = Builder {
        store,
        runner,
        context,
        opts,
        out,
        cancelled: false,
        escape: df.escape,
        global_args: BTreeMap::new(),
        used_args: BTreeSet::new(),
        stages: Vec::new(),
    };
    let id = b.run(&df.instructions)?;
    let unused: Vec<&String> = opts
        .build_args
        .keys()
        .filter(|k| !b.used_args.contains(*k) && !PREDEFINED_ARGS.contains(&k.as_str()))
        .collect();
    if !unused.is_empty() {
        let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
        b.say(&format!(
            "[Warning] One or more build-args [{}] were not consumed\n",
            names.join(" ")
        ));
    }
    for t in &tags {
        store.tag(&id, t).map_err(|e| e.to_string())?;
    }
    Ok(id)
}

struct Builder<'a> {
    store: &'a ImageStore,
    runner: &'a dyn Runner,
    context: &'a Path,
    opts: &'a BuildOptions,
    out: &'a mut dyn FnMut(&str) -> bool,
    /// The progress reader went away.
    cancelled: bool,
    escape: char,
    /// ARGs declared before the first FROM.
    global_args: BTreeMap<String, Option<String>>,
    used_args: BTreeSet<String>,
    /// Finished stages, in order.
    stages: Vec<Stage>,
}

fn at(ins: &Instruction, msg: impl Into<String>) -> String {
    LineError::new(ins.line, msg).to_string()
}

fn short_id(id: &str) -> &str {
    let hex = hex_of(id);
    &hex[..hex.len().min(12)]
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A scratch file or directory under the store's `tmp/` (emptied when the store opens).
pub(crate) fn temp_path(store: &ImageStore, kind: &str) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    store
        .root()
        .join("tmp")
        .join(format!("build-{kind}-{}-{n}", std::process::id()))
}

/// Removes a temp path when dropped.
struct TempGuard(PathBuf);

impl Drop for TempGuard {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0).or_else(|_| fs::remove_dir_all(&self.0));
    }
}

impl Builder<'_> {
    fn say(&mut self, s: &str) {
        if !(self.out)(s) {
            self.cancelled = true;
        }
    }

    fn check_cancelled(&self) -> Result<(), String> {
        if self.cancelled {
            return Err("build cancelled: the client went away".into());
        }
        Ok(())
    }

    fn run(&mut self, all: &[Instruction]) -> Result<String, String> {
        // Split into the global ARGs and the stages.
        let first_from = all.iter().position(|i| i.keyword == "FROM");
        let Some(first_from) = first_from else {
            return match all.iter().find(|i| i.keyword != "ARG") {
                Some(i) => Err(at(
                    i,
                    format!("{} before any FROM: no build stage in current context", i.keyword),
                )),
                None => Err("Dockerfile: no FROM instruction: no build stage".into()),
            };
        };
        if let Some(i) = all[..first_from].iter().find(|i| i.keyword != "ARG") {
            return Err(at(
                i,
                format!("{} before any FROM: no build stage in current context", i.keyword),
            ));
        }
        let mut stage_bounds: Vec<(usize, usize)> = Vec::new();
        for (n, i) in all.iter().enumerate().skip(first_from) {
            if i.keyword == "FROM" {
                if let Some(last) = stage_bounds.last_mut() {
                    last.1 = n;
                }
                stage_bounds.push((n, all.len()));
            }
        }
        let mut last_stage = stage_bounds.len() - 1;
        if let Some(target) = self.opts.target.as_deref().filter(|t| !t.is_empty()) {
            last_stage = stage_bounds
                .iter()
                .position(|(s, _)| stage_name(&all[*s]).is_some_and(|n| n.eq_ignore_ascii_case(target)))
                .ok_or_else(|| format!("failed to reach build target {target} in Dockerfile"))?;
        }
        let end = stage_bounds[last_stage].1;
        let total = end;
        let mut step = 0;
        for ins in &all[..first_from] {
            step += 1;
            self.say(&format!("Step {step}/{total} : {}\n", shown(ins)));
            self.global_arg(ins)?;
        }
        for &(start, stop) in &stage_bounds[..=last_stage] {
            let mut stage = None;
            for ins in &all[start..stop] {
                self.check_cancelled()?;
                step += 1;
                self.say(&format!("Step {step}/{total} : {}\n", shown(ins)));
                match stage.as_mut() {
                    None => stage = Some(self.from(ins)?),
                    Some(st) => self.step(st, ins)?,
                }
            }
            if let Some(st) = stage {
                self.stages.push(st);
            }
        }
        let mut last = self.stages.pop().ok_or("no build stage")?;
        if !self.opts.labels.is_empty() {
            let labels = self.opts.labels.clone();
            let text = labels
                .iter()
                .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" ");
            self.metadata(&mut last, &format!("LABEL {text}"), |c| {
                c.labels.get_or_insert_with(BTreeMap::new).extend(labels);
                Ok(())
            })
            .map_err(|e| format!("Dockerfile: build labels: {e}"))?;
        }
        last.image_id
            .ok_or_else(|| "No image was generated. Is your Dockerfile empty?".to_string())
    }

    fn build_arg(&mut self, name: &str) -> Option<String> {
        let v = self.opts.build_args.get(name).cloned();
        if v.is_some() {
            self.used_args.insert(name.to_string());
        }
        v
    }

    /// `ARG` before the first FROM: visible to FROM lines, and to stages that re-declare it.
    fn global_arg(&mut self, ins: &Instruction) -> Result<(), String> {
        let globals = self.global_args.clone();
        let lookup = move |k: &str| globals.get(k).cloned().flatten();
        for (name, default) in parse_args(ins, self.escape, &lookup)? {
            let v = self.build_arg(&name).or(default);
            self.global_args.insert(name, v);
        }
        Ok(())
    }

    fn from(&mut self, ins: &Instruction) -> Result<Stage, String> {
        let globals = self.global_args.clone();
        let lookup = move |k: &str| globals.get(k).cloned().flatten();
        // `--platform` is accepted and ignored: a board builds for its own platform.
        if let Some((k, _)) = ins.flags.iter().find(|(k, _)| k != "platform") {
            return Err(at(ins, format!("FROM --{k} is not supported")));
        }
        let words = shell_lex::words(&ins.rest, self.escape, &lookup).map_err(|e| at(ins, e))?;
        let (base, name) = match words.as_slice() {
            [b] => (b.clone(), None),
            [b, as_, n] if as_.eq_ignore_ascii_case("as") => (b.clone(), Some(n.to_ascii_lowercase())),
            _ => {
                return Err(at(
                    ins,
                    "FROM requires either one or three arguments (FROM image [AS name])",
                ))
            }
        };
        if base.is_empty() {
            return Err(at(ins, "FROM: base name should not be blank"));
        }
        let (image_id, config) = if base.eq_ignore_ascii_case("scratch") {
            let (arch, variant) = config::host_architecture();
            (
                None,
                ConfigFile {
                    architecture: arch.to_string(),
                    os: "linux".into(),
                    variant: variant.map(str::to_string),
                    config: Some(ImageConfig::default()),
                    rootfs: config::RootFs {
                        kind: "layers".into(),
                        diff_ids: Vec::new(),
                    },
                    ..Default::default()
                },
            )
        } else if let Some(st) = self
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(&base.to_ascii_lowercase()))
        {
            (st.image_id.clone(), st.config.clone())
        } else {
            let image = self
                .store
                .resolve(&base)
                .map_err(|e| at(ins, format!("FROM {base}: {e}")))?;
            let cfg = self.load_config(&image.id).map_err(|e| at(ins, e))?;
            (Some(image.id), cfg)
        };
        self.say(&format!(
            " ---> {}\n",
            image_id.as_deref().map(short_id).unwrap_or("")
        ));
        Ok(Stage {
            name,
            image_id,
            config,
            args: BTreeMap::new(),
            cmd_set: false,
        })
    }

    /// The layer directories of a stage's current image, top-most first.
    fn layers_of(&self, st: &Stage) -> Vec<PathBuf> {
        st.config
            .rootfs
            .diff_ids
            .iter()
            .rev()
            .map(|d| self.store.layer_path(hex_of(d)).join(super::layer::FS_DIR))
            .collect()
    }

    /// The layers of an earlier stage (by name or index) or of an image, for `COPY --from`.
    fn layers_of_named(&self, name: &str) -> Result<Vec<PathBuf>, String> {
        let lower = name.to_ascii_lowercase();
        let stage = self
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| name.parse::<usize>().ok().and_then(|i| self.stages.get(i)));
        if let Some(st) = stage {
            return Ok(self.layers_of(st));
        }
        let image = self
            .store
            .resolve(name)
            .map_err(|e| format!("--from={name}: {e}"))?;
        Ok(self.store.layer_dirs(&image))
    }

    fn load_config(&self, id: &str) -> Result<ConfigFile, String> {
        let path = self.store.config_path(hex_of(id));
        let bytes = fs::read(&path).map_err(|e| format!("reading image {id}: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("image {id}: {e}"))
    }

    fn step(&mut self, st: &mut Stage, ins: &Instruction) -> Result<(), String> {
        let escape = self.escape;
        let snapshot = st.clone();
        let lookup = move |k: &str| snapshot.env_value(k);
        let word = |s: &str| shell_lex::word(s, escape, &lookup).map_err(|e| at(ins, e));
        let words = |s: &str| shell_lex::words(s, escape, &lookup).map_err(|e| at(ins, e));
        let original = shown(ins);
        let r = match ins.keyword.as_str() {
            "RUN" => self.run_step(st, ins),
            "COPY" | "ADD" => copy::copy_step(self, st, ins),
            "ARG" => {
                let pairs = parse_args(ins, escape, &lookup)?;
                for (name, default) in &pairs {
                    let global = self.global_args.get(name).cloned().flatten();
                    let v = self.build_arg(name).or(default.clone()).or(global);
                    st.args.insert(name.clone(), v);
                }
                let text = pairs
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                self.metadata(st, &format!("ARG {text}"), |_| Ok(()))
            }
            "ENV" => {
                let pairs = key_values(ins, &words(&ins.rest)?, &word, "ENV")?;
                let text = pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                self.metadata(st, &format!("ENV {text}"), |c| {
                    let env = c.env.get_or_insert_with(Vec::new);
                    for (k, v) in &pairs {
                        let prefix = format!("{k}=");
                        env.retain(|e| !e.starts_with(&prefix) && e != k);
                        env.push(format!("{k}={v}"));
                    }
                    Ok(())
                })
            }
            "LABEL" => {
                let pairs = key_values(ins, &words(&ins.rest)?, &word, "LABEL")?;
                let text = pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(" ");
                self.metadata(st, &format!("LABEL {text}"), |c| {
                    let labels = c.labels.get_or_insert_with(BTreeMap::new);
                    for (k, v) in &pairs {
                        labels.insert(k.clone(), v.clone());
                    }
                    Ok(())
                })
            }
            "MAINTAINER" => {
                let who = word(&ins.rest)?;
                let created_by = format!("MAINTAINER {who}");
                st.config.author = Some(who);
                self.metadata(st, &created_by, |_| Ok(()))
            }
            "WORKDIR" => {
                let dir = word(&ins.rest)?;
                if dir.is_empty() {
                    return Err(at(ins, "WORKDIR requires exactly one argument"));
                }
                let joined = if dir.starts_with('/') {
                    dir
                } else {
                    format!("{}/{dir}", st.working_dir())
                };
                let clean = format!("/{}", rootfs::components(&joined).join("/"));
                self.metadata(st, &format!("WORKDIR {clean}"), |c| {
                    c.working_dir = Some(clean.clone());
                    Ok(())
                })
            }
            "USER" => {
                let user = word(&ins.rest)?;
                if user.is_empty() {
                    return Err(at(ins, "USER requires exactly one argument"));
                }
                self.metadata(st, &format!("USER {user}"), |c| {
                    c.user = Some(user.clone());
                    Ok(())
                })
            }
            "EXPOSE" => {
                let ports = words(&ins.rest)?;
                if ports.is_empty() {
                    return Err(at(ins, "EXPOSE requires at least one argument"));
                }
                let mut keys = Vec::new();
                for p in &ports {
                    keys.extend(expose_keys(p).map_err(|e| at(ins, e))?);
                }
                self.metadata(st, &format!("EXPOSE {}", keys.join(" ")), |c| {
                    let map = c.exposed_ports.get_or_insert_with(BTreeMap::new);
                    for k in &keys {
                        map.insert(k.clone(), Value::Object(Default::default()));
                    }
                    Ok(())
                })
            }
            "VOLUME" => {
                let vols = match &ins.json {
                    Some(v) => v.iter().map(|s| word(s)).collect::<Result<Vec<_>, _>>()?,
                    None => words(&ins.rest)?,
                };
                if vols.iter().all(|v| v.trim().is_empty()) {
                    return Err(at(ins, "VOLUME specified can not be an empty string"));
                }
                self.metadata(st, &format!("VOLUME {vols:?}"), |c| {
                    let map = c.volumes.get_or_insert_with(BTreeMap::new);
                    for v in &vols {
                        map.insert(v.clone(), Value::Object(Default::default()));
                    }
                    Ok(())
                })
            }
            "CMD" | "ENTRYPOINT" => {
                let cmd = match &ins.json {
                    Some(v) => v.clone(),
                    None if ins.rest.is_empty() && ins.keyword == "ENTRYPOINT" => Vec::new(),
                    None => {
                        let mut sh = shell_of(st);
                        sh.push(ins.rest.clone());
                        sh
                    }
                };
                let is_cmd = ins.keyword == "CMD";
                let created_by = format!(
                    "{} {}",
                    ins.keyword,
                    serde_json::to_string(&cmd).unwrap_or_default()
                );
                let cmd_set = st.cmd_set;
                let r = self.metadata(st, &created_by, |c| {
                    if is_cmd {
                        c.cmd = Some(cmd.clone());
                    } else {
                        c.entrypoint = Some(cmd.clone());
                        // As docker: a new ENTRYPOINT drops the CMD inherited from the base.
                        if !cmd_set {
                            c.cmd = None;
                        }
                    }
                    Ok(())
                });
                if is_cmd {
                    st.cmd_set = true;
                }
                r
            }
            "SHELL" => {
                let Some(sh) = ins.json.clone().filter(|s| !s.is_empty()) else {
                    return Err(at(ins, "SHELL requires the arguments to be in JSON form"));
                };
                self.metadata(
                    st,
                    &format!("SHELL {}", serde_json::to_string(&sh).unwrap_or_default()),
                    |c| {
                        c.shell = Some(sh.clone());
                        Ok(())
                    },
                )
            }
            "STOPSIGNAL" => {
                let sig = word(&ins.rest)?;
                if sig.is_empty() {
                    return Err(at(ins, "STOPSIGNAL requires exactly one argument"));
                }
                self.metadata(st, &format!("STOPSIGNAL {sig}"), |c| {
                    c.stop_signal = Some(sig.clone());
                    Ok(())
                })
            }
            "HEALTHCHECK" => {
                let hc = healthcheck(ins).map_err(|e| at(ins, e))?;
                self.metadata(st, &format!("HEALTHCHECK {hc}"), |c| {
                    c.healthcheck = Some(hc.clone());
                    Ok(())
                })
            }
            "ONBUILD" => {
                let trigger = ins.rest.trim().to_string();
                let kw = trigger
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                if kw.is_empty() || matches!(kw.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                    return Err(at(ins, format!("{kw} isn't allowed as an ONBUILD trigger")));
                }
                self.metadata(st, &format!("ONBUILD {trigger}"), |c| {
                    c.on_build.get_or_insert_with(Vec::new).push(trigger.clone());
                    Ok(())
                })
            }
            // Stages are split at FROM before steps run.
            "FROM" => Err(at(ins, "FROM inside a stage")),
            other => Err(at(ins, format!("unknown instruction: {other}"))),
        };
        r.map_err(|e| {
            if e.starts_with("Dockerfile:") {
                e
            } else {
                at(ins, format!("{original}: {e}"))
            }
        })
    }

    fn cache_key(&self, st: &Stage, created_by: &str, extra: &str) -> String {
        let mut h = Sha256::new();
        h.update(st.image_id.as_deref().unwrap_or("scratch"));
        h.update([0]);
        h.update(created_by);
        h.update([0]);
        h.update(extra);
        super::layer::digest_string(h)["sha256:".len()..].to_string()
    }

    /// The cached image for `key`, with its config, unless the cache is off or stale.
    fn cached(&self, key: &str) -> Option<(String, ConfigFile)> {
        if self.opts.no_cache {
            return None;
        }
        let id = fs::read_to_string(self.store.root().join(CACHE_DIR).join(key)).ok()?;
        let id = id.trim().to_string();
        let cfg = self.load_config(&id).ok()?;
        Some((id, cfg))
    }

    /// Use the cached result of a step if there is one.
    fn try_cache(&mut self, st: &mut Stage, key: &str) -> bool {
        match self.cached(key) {
            Some((id, cfg)) => {
                self.say(&format!(" ---> Using cache\n ---> {}\n", short_id(&id)));
                st.image_id = Some(id);
                st.config = cfg;
                true
            }
            None => false,
        }
    }

    /// Record the step's image: the stage's config with `history` appended (and the layer),
    /// committed to the store and remembered under `key`.
    fn commit(
        &mut self,
        st: &mut Stage,
        key: &str,
        created_by: String,
        layer: Option<String>,
        _pins: Pins<'_>,
    ) -> Result<(), String> {
        let mut cfg = st.config.clone();
        let now = crate::timefmt::format_go(crate::timefmt::now_nanos());
        cfg.created = Some(now.clone());
        cfg.history.push(History {
            created: Some(now),
            created_by: Some(created_by),
            empty_layer: layer.is_none(),
            ..Default::default()
        });
        if let Some(diff_id) = layer {
            cfg.rootfs.kind = "layers".into();
            cfg.rootfs.diff_ids.push(diff_id);
        }
        let bytes = serde_json::to_vec(&cfg).map_err(|e| e.to_string())?;
        let hex = self.store.commit_image(&bytes, &[]).map_err(|e| e.to_string())?;
        let id = format!("sha256:{hex}");
        let dir = self.store.root().join(CACHE_DIR);
        atomic::create_dir_all(&dir.join(PARENTS_DIR)).map_err(|e| e.to_string())?;
        if let Some(parent) = &st.image_id {
            atomic::write(&dir.join(PARENTS_DIR).join(&hex), parent.as_bytes()).map_err(|e| e.to_string())?;
        }
        atomic::write(&dir.join(key), id.as_bytes()).map_err(|e| e.to_string())?;
        self.say(&format!(" ---> {}\n", short_id(&id)));
        st.image_id = Some(id);
        st.config = cfg;
        Ok(())
    }

    /// A step that only changes the config.
    fn metadata(
        &mut self,
        st: &mut Stage,
        text: &str,
        change: impl FnOnce(&mut ImageConfig) -> Result<(), String>,
    ) -> Result<(), String> {
        let created_by = format!("/bin/sh -c #(nop) {text}");
        let key = self.cache_key(st, &created_by, "");
        if self.try_cache(st, &key) {
            return Ok(());
        }
        let mut c = st.image_config();
        change(&mut c)?;
        st.config.config = Some(c);
        let pins = self.store.pins();
        self.commit(st, &key, created_by, None, pins)
    }

    /// Make a layer from a tar file and commit the step's image on top of it.
    fn commit_layer(
        &mut self,
        st: &mut Stage,
        key: &str,
        created_by: String,
        tar: &Path,
    ) -> Result<(), String> {
        let mut pins = self.store.pins();
        let f = File::open(tar).map_err(|e| format!("{}: {e}", tar.display()))?;
        let unpacked = self
            .store
            .ingest_layer(io::BufReader::new(f), None, None, &mut pins)
            .map_err(|e| e.to_string())?;
        self.commit(st, key, created_by, Some(unpacked.meta.diff_id), pins)
    }

    fn run_step(&mut self, st: &mut Stage, ins: &Instruction) -> Result<(), String> {
        let mut network = self.opts.network.clone();
        for (k, v) in &ins.flags {
            match (k.as_str(), v.as_str()) {
                ("network", n @ ("default" | "none" | "host")) => network = n.to_string(),
                ("network", other) => {
                    return Err(at(
                        ins,
                        format!("RUN --network={other}: use default, none or host"),
                    ))
                }
                (other, _) => return Err(at(ins, format!("RUN --{other} is not supported by this builder"))),
            }
        }
        let argv = match (&ins.json, ins.heredocs.as_slice()) {
            (Some(v), _) => v.clone(),
            (None, [only])
                if ins
                    .rest
                    .trim_start_matches("<<")
                    .trim_start_matches('-')
                    .trim_matches(|c| c == '"' || c == '\'')
                    == only.name =>
            {
                let mut sh = shell_of(st);
                sh.push(only.content.clone());
                sh
            }
            (None, docs) => {
                let mut script = ins.rest.clone();
                for d in docs {
                    script.push('\n');
                    script.push_str(&d.content);
                    script.push_str(&d.name);
                }
                let mut sh = shell_of(st);
                sh.push(script);
                sh
            }
        };
        if argv.is_empty() || argv[0].is_empty() {
            return Err(at(ins, "RUN needs a command"));
        }
        let Some(image_id) = st.image_id.clone() else {
            return Err(at(
                ins,
                "RUN in a stage FROM scratch with no files: there is no shell to run",
            ));
        };
        // Build arguments reach RUN as environment (the image's ENV wins), as in docker.
        let cfg = st.image_config();
        let env = cfg.env.clone().unwrap_or_default();
        let mut arg_env: Vec<String> = Vec::new();
        for (k, v) in &st.args {
            if let Some(v) = v {
                if !env.iter().any(|e| e.split('=').next() == Some(k.as_str())) {
                    arg_env.push(format!("{k}={v}"));
                }
            }
        }
        let mut hidden_env = Vec::new();
        for k in PREDEFINED_ARGS {
            if let Some(v) = self.opts.build_args.get(*k) {
                self.used_args.insert(k.to_string());
                hidden_env.push(format!("{k}={v}"));
            }
        }
        let shown_cmd = argv.join(" ");
        let created_by = if arg_env.is_empty() {
            shown_cmd.clone()
        } else {
            format!("|{} {} {shown_cmd}", arg_env.len(), arg_env.join(" "))
        };
        let key = self.cache_key(st, &created_by, &serde_json::to_string(&argv).unwrap_or_default());
        if self.try_cache(st, &key) {
            return Ok(());
        }
        let mut full_env = env;
        full_env.extend(arg_env);
        full_env.extend(hidden_env);
        let req = RunRequest {
            image_id,
            argv: argv.clone(),
            env: full_env,
            working_dir: cfg.working_dir.clone().unwrap_or_default(),
            user: cfg.user.clone().unwrap_or_default(),
            network,
        };
        let mut started: Option<String> = None;
        let out = &mut self.out;
        let mut listening = true;
        let result = self.runner.run(&req, &mut |ev| {
            let delivered = match ev {
                RunEvent::Started(id) => {
                    started = Some(id.to_string());
                    out(&format!(" ---> Running in {}\n", &id[..id.len().min(12)]))
                }
                RunEvent::Output(b) => out(&String::from_utf8_lossy(b)),
            };
            listening &= delivered;
            listening
        });
        if !listening {
            self.cancelled = true;
        }
        let tar = temp_path(self.store, "run");
        let _guard = TempGuard(tar.clone());
        // The container's changes as a tar, then the container goes (as docker: before the
        // step's image is reported).
        let written = (|| {
            let r = result.map_err(|e| at(ins, e))?;
            if r.exit_code != 0 {
                return Err(at(
                    ins,
                    format!(
                        "The command '{shown_cmd}' returned a non-zero code: {}",
                        r.exit_code
                    ),
                ));
            }
            let f = File::create(&tar).map_err(|e| format!("{}: {e}", tar.display()))?;
            diff::upper_to_tar(&r.upper, io::BufWriter::new(f))
                .map_err(|e| at(ins, format!("reading the container's changes: {e}")))
        })();
        if let Some(id) = started {
            self.runner.remove(&id);
            self.say(&format!(
                "Removing intermediate container {}\n",
                &id[..id.len().min(12)]
            ));
        }
        self.check_cancelled()?;
        written?;
        self.commit_layer(st, &key, created_by, &tar)
    }
}

/// Fill in `ParentId` from the build records and, unless `all`, hide untagged images that
/// are the parent of another image (a build's intermediate steps), as `docker images` does.
pub fn apply_parents(store: &ImageStore, list: &mut Vec<super::ImageSummary>, all: bool) {
    let dir = store.root().join(CACHE_DIR).join(PARENTS_DIR);
    let Ok(rd) = fs::read_dir(&dir) else { return };
    let mut parent_of = std::collections::HashMap::new();
    for e in rd.flatten() {
        if let Ok(p) = fs::read_to_string(e.path()) {
            parent_of.insert(
                format!("sha256:{}", e.file_name().to_string_lossy()),
                p.trim().to_string(),
            );
        }
    }
    let present: BTreeSet<String> = list.iter().map(|s| s.id.clone()).collect();
    let mut parents = BTreeSet::new();
    for s in list.iter_mut() {
        if let Some(p) = parent_of.get(&s.id).filter(|p| present.contains(*p)) {
            s.parent_id = p.clone();
            parents.insert(p.clone());
        }
    }
    if !all {
        list.retain(|s| !s.repo_tags.is_empty() || !parents.contains(&s.id));
    }
}

/// The image a build step started from, forgetting that record (its child is being removed).
pub fn take_parent(store: &ImageStore, id: &str) -> Option<String> {
    let path = store.root().join(CACHE_DIR).join(PARENTS_DIR).join(hex_of(id));
    let parent = fs::read_to_string(&path).ok()?;
    let _ = fs::remove_file(&path);
    Some(parent.trim().to_string())
}

/// Drop the cache entries naming removed images (a later build would miss on them anyway).
pub fn forget(store: &ImageStore, removed: &[String]) {
    if removed.is_empty() {
        return;
    }
    let dir = store.root().join(CACHE_DIR);
    let Ok(rd) = fs::read_dir(&dir) else { return };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_file())
            && fs::read_to_string(e.path()).is_ok_and(|id| removed.iter().any(|r| r == id.trim()))
        {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Whether an existing image was built on top of `id`.
pub fn has_children(store: &ImageStore, id: &str) -> bool {
    let dir = store.root().join(CACHE_DIR).join(PARENTS_DIR);
    let Ok(rd) = fs::read_dir(&dir) else { return false };
    rd.flatten().any(|e| {
        fs::read_to_string(e.path()).is_ok_and(|p| p.trim() == id)
            && store
                .resolve(&format!("sha256:{}", e.file_name().to_string_lossy()))
                .is_ok()
    })
}

/// The stage name of a FROM line (`FROM x AS name`), without variable expansion.
fn stage_name(ins: &Instruction) -> Option<String> {
    let w: Vec<&str> = ins.rest.split_whitespace().collect();
    match w.as_slice() {
        [_, a, n] if a.eq_ignore_ascii_case("as") => Some(n.to_string()),
        _ => None,
    }
}

/// The instruction as docker prints it in "Step n/m : …".
fn shown(ins: &Instruction) -> String {
    let rest = ins.original.trim_start();
    let after = rest.find(char::is_whitespace).map_or("", |p| &rest[p..]);
    format!("{}{}", ins.keyword, after)
}

fn shell_of(st: &Stage) -> Vec<String> {
    st.config
        .config
        .as_ref()
        .and_then(|c| c.shell.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect())
}
