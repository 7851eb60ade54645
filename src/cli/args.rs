//! Command-line parsing in two phases, as docker users expect it.
//!
//! 1. [`prepass`] reads the words after the verb with the verb's flag table (docker's cobra
//!    rules): bundled shorts (`-it`, `-dit`), `--flag=value`, `-e=X`, `--rm=false`, and — for
//!    `run`/`create` after the image and `exec` after the container — everything else passed
//!    through untouched even when it starts with `-`. It rewrites them into canonical
//!    `--long value` words followed by `--` and the positionals, and rejects unknown flags
//!    and non-numeric numbers with docker's own wording.
//! 2. argh parses those canonical words into the verb's raw flag struct (the `*Flags` types),
//!    and [`parse`] validates them into one [`Action`] (sizes, cpus, restart policy, env files
//!    and the create body are all checked here, before any request is made).
//!
//! Guarantees: bad input gives an [`ArgError`] with docker's text and exit code (125 for a
//! flag error, 1 for a wrong number of arguments or an unknown command); never a panic.

use super::values::{self, RestartPolicy};
use argh::FromArgs;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Program name used in messages.
pub const PROG: &str = "shoal";

/// A flag of one verb: short letter, long name, and what kind of value it takes.
#[derive(Debug, Clone, Copy)]
pub struct FlagSpec {
    pub short: Option<char>,
    pub long: &'static str,
    pub kind: FlagKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    Bool,
    Str,
    Int,
}

const fn b(short: char, long: &'static str) -> FlagSpec {
    FlagSpec {
        short: if short == ' ' { None } else { Some(short) },
        long,
        kind: FlagKind::Bool,
    }
}
const fn s(short: char, long: &'static str) -> FlagSpec {
    FlagSpec {
        short: if short == ' ' { None } else { Some(short) },
        long,
        kind: FlagKind::Str,
    }
}
const fn i(short: char, long: &'static str) -> FlagSpec {
    FlagSpec {
        short: if short == ' ' { None } else { Some(short) },
        long,
        kind: FlagKind::Int,
    }
}

/// How many positionals a verb takes, with docker's message when the count is wrong.
#[derive(Debug, Clone, Copy)]
pub enum Arity {
    None,
    Exactly(usize),
    AtLeast(usize),
    Between(usize, usize),
}

/// One verb's command-line shape.
#[derive(Debug)]
pub struct VerbSpec {
    pub name: &'static str,
    pub usage: &'static str,
    pub flags: &'static [FlagSpec],
    pub arity: Arity,
    /// After this many positionals, every remaining word is a positional (the command).
    pub passthrough_after: Option<usize>,
}

const RUN_FLAGS: &[FlagSpec] = &[
    b('d', "detach"),
    b('i', "interactive"),
    b('t', "tty"),
    b(' ', "rm"),
    s(' ', "name"),
    s('e', "env"),
    s(' ', "env-file"),
    s('w', "workdir"),
    s('u', "user"),
    s('h', "hostname"),
    s(' ', "entrypoint"),
    s(' ', "restart"),
    s('m', "memory"),
    s(' ', "memory-swap"),
    s(' ', "cpus"),
    i(' ', "pids-limit"),
    b(' ', "init"),
    b(' ', "read-only"),
    s(' ', "cap-add"),
    s(' ', "cap-drop"),
    s(' ', "network"),
    s(' ', "network-alias"),
    s(' ', "ip"),
    s('l', "label"),
    s(' ', "log-opt"),
    s(' ', "log-driver"),
    s(' ', "stop-signal"),
    i(' ', "stop-timeout"),
    s(' ', "health-cmd"),
    s(' ', "health-interval"),
    s(' ', "health-timeout"),
    i(' ', "health-retries"),
    s(' ', "health-start-period"),
    s(' ', "health-start-interval"),
    b(' ', "no-healthcheck"),
    b(' ', "privileged"),
    s('a', "attach"),
    s(' ', "detach-keys"),
    b(' ', "sig-proxy"),
    s(' ', "pull"),
    s('v', "volume"),
    s(' ', "mount"),
    s(' ', "volumes-from"),
    s('p', "publish"),
    b('P', "publish-all"),
    s(' ', "expose"),
    s(' ', "tmpfs"),
    s(' ', "add-host"),
    s(' ', "dns"),
    s(' ', "dns-search"),
    s(' ', "dns-option"),
    s(' ', "shm-size"),
    s(' ', "group-add"),
    s(' ', "platform"),
    b('q', "quiet"),
];

const STOP_FLAGS: &[FlagSpec] = &[i('t', "timeout"), s('s', "signal")];

/// Every verb shoal knows; `container X` and `image X` map onto these.
pub const VERBS: &[VerbSpec] = &[
    VerbSpec {
        name: "run",
        usage: "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
        flags: RUN_FLAGS,
        arity: Arity::AtLeast(1),
        passthrough_after: Some(1),
    },
    VerbSpec {
        name: "create",
        usage: "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
        flags: RUN_FLAGS,
        arity: Arity::AtLeast(1),
        passthrough_after: Some(1),
    },
    VerbSpec {
        name: "start",
        usage: "start [OPTIONS] CONTAINER [CONTAINER...]",
        flags: &[b('a', "attach"), b('i', "interactive"), s(' ', "detach-keys")],
        arity: Arity::AtLeast(1),
        passthrough_after: None,
    },
    VerbSpec {
        name: "stop",
        usage: "stop [OPTIONS] CONTAINER [CONTAINER...]",
        flags: STOP_FLAGS,
        arity: Arity::AtLeast(1),
        passthrough_after: None,
    },
    VerbSpec {
        name: "restart",
        usage: "restart [OPTIONS] CONTAINER [CONTAINER...]",
        flags: STOP_FLAGS,
        arity: Arity::AtLeast(1),
        passthrough_after: None,
    },
    VerbSpec {
        name: "kill",
        usage: "kill [OPTIONS] CONTAINER [CONTAINER...]",
        flags: &[s('s', "signal")],
        arity: Arity::AtLeast(1),
        passthrough_after: None,
    },
    VerbSpec {
        name: "rm",
        usage: "rm [OPTIONS] CONTAINER [CONTAINER...]",
        flags: &[b('f', "force"), b('v', "volumes"), b('l', "link")],
        arity: Arity::AtLeast(1),
        passthrough_after: None,
    },
    VerbSpec {
        name: "ps",
        usage: "ps [OPTIONS]",
        flags: &[
            b('a', "all"),
            b('q', "quiet"),
            b(' ', "no-trunc"),
            s('f', "filter"),
            s(' ', "format"),
            i('n', "last"),
            b('l', "latest"),
            b('s', "size"),
        ],
        arity: Arity::None,
        passthrough_after: None,
    },
    VerbSpec {
        name: "logs",
        usage: "logs [OPTIONS] CONTAINER",
        flags: &[
            b('f', "follow"),
            s('n', "tail"),
            s(' ', "since"),
            s(' ', "until"),
            b('t', "timestamps"),
            b(' ', "details"),
        ],
        arity: Arity::Exactly(1),
        passthrough_after: None,
    },
    VerbSpec {
        name: "exec",
        usage: "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
        flags: &[
            b('d', "detach"),
            b('i', "interactive"),
            b('t', "tty"),
            s('e', "env"),
            s(' ', "env-file"),
            s('w', "workdir"),
            s('u', "user"),
            b(' ', "privileged"),
            s(' ', "detach-keys"),
        ],
        arity: Arity::AtLeast(2),
        passthrough_after: Some(1),
    },
    VerbSpec {
        name: "attach",
        usage: "attach [OPTIONS] CONTAINER",
        flags: &[s(' ', "detach-keys"), b(' ', "no-stdin"), b(' ', "sig-proxy")],
        arity: Arity::Exactly(1),
        passthrough_after: None,
    },
    VerbSpec {
        name: "inspect",
        usage: "inspect [OPTIONS] NAME|ID [NAME|ID...]",
        flags: &[s('f', "format"), b('s', "size"), s(' ', "type")],
        arity: Arity::AtLeast(1),
        passthrough_after: None,
    },
    VerbSpec {
        name: "top",
        usage: "top CONTAINER [ps OPTIONS]",
        flags: &[],
        arity: Arity::AtLeast(1),
        passthrough_after: Some(1),
    },
    VerbSpec {
        name: "stats",
        usage: "stats [OPTIONS] [CONTAINER...]",
        flags: &[
            b('a', "all"),
            b(' ', "no-stream"),
            s(' ', "format"),
            b(' ', "no-trunc"),
        ],
        arity: Arity::AtLeast(0),
        passthrough_after: None,
    },
    VerbSpec {
        name: "wait",
        usage: "wait CONTAINER [CONTAINER...]",
        flags: &[],
        arity: Arity::AtLeast(1),
        passthrough_after: None,
    },
    VerbSpec {
        name: "rename",
        usage: "rename CONTAINER NEW_NAME",
        flags: &[],
        arity: Arity::Exactly(2),
        passthrough_after: None,
    },
    VerbSpec {
        name: "prune",
        usage: "container prune [OPTIONS]",
        flags: &[b('f', "force"), s(' ', "filter")],
        arity: Arity::None,
        passthrough_after: None,
    },
    VerbSpec {
        name: "version",
        usage: "version [OPTIONS]",
        flags: &[s('f', "format")],
        arity: Arity::None,
        passthrough_after: None,
    },
    VerbSpec {
        name: "info",
        usage: "info [OPTIONS]",
        flags: &[s('f', "format")],
        arity: Arity::None,
        passthrough_after: None,
    },
    VerbSpec {
        name: "images",
        usage: "images [OPTIONS] [REPOSITORY[:TAG]]",
        flags: &[
            b('a', "all"),
            b('q', "quiet"),
            b(' ', "no-trunc"),
            s(' ', "format"),
            s('f', "filter"),
            b(' ', "digests"),
        ],
        arity: Arity::Between(0, 1),
        passthrough_after: None,
    },
    VerbSpec {
        name: "rmi",
        usage: "rmi [OPTIONS] IMAGE [IMAGE...]",
        flags: &[b('f', "force"), b(' ', "no-prune")],
        arity: Arity::AtLeast(1),
        passthrough_after: None,
    },
    VerbSpec {
        name: "tag",
        usage: "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
        flags: &[],
        arity: Arity::Exactly(2),
        passthrough_after: None,
    },
    VerbSpec {
        name: "load",
        usage: "load [OPTIONS]",
        flags: &[s('i', "input"), b('q', "quiet")],
        arity: Arity::None,
        passthrough_after: None,
    },
    VerbSpec {
        name: "import",
        usage: "import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
        flags: &[s('c', "change"), s('m', "message")],
        arity: Arity::Between(1, 2),
        passthrough_after: None,
    },
    VerbSpec {
        name: "build",
        usage: "build [OPTIONS] PATH",
        flags: &[
            s('t', "tag"),
            s('f', "file"),
            s(' ', "build-arg"),
            s(' ', "target"),
            b(' ', "no-cache"),
            b('q', "quiet"),
            s(' ', "network"),
            s(' ', "label"),
            b(' ', "rm"),
            b(' ', "force-rm"),
        ],
        arity: Arity::Exactly(1),
        passthrough_after: None,
    },
    VerbSpec {
        name: "commit",
        usage: "commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
        flags: &[
            s('m', "message"),
            s('a', "author"),
            s('c', "change"),
            b('p', "pause"),
        ],
        arity: Arity::Between(1, 2),
        passthrough_after: None,
    },
    VerbSpec {
        name: "export",
        usage: "export [OPTIONS] CONTAINER",
        flags: &[s('o', "output")],
        arity: Arity::Exactly(1),
        passthrough_after: None,
    },
    VerbSpec {
        name: "save",
        usage: "save [OPTIONS] IMAGE [IMAGE...]",
        flags: &[s('o', "output")],
        arity: Arity::AtLeast(1),
        passthrough_after: None,
    },
    VerbSpec {
        name: "image-inspect",
        usage: "image inspect [OPTIONS] IMAGE [IMAGE...]",
        flags: &[s('f', "format")],
        arity: Arity::AtLeast(1),
        passthrough_after: None,
    },
];

/// The spec of a verb by its canonical name.
pub fn verb(name: &str) -> Option<&'static VerbSpec> {
    VERBS.iter().find(|v| v.name == name)
}

/// A command-line mistake, with docker's message and exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    pub message: String,
    pub code: i32,
}

impl ArgError {
    fn flag(spec: &VerbSpec, msg: impl Into<String>) -> ArgError {
        ArgError {
            message: format!(
                "{}\n\nUsage:  {PROG} {}\n\nRun '{PROG} {} --help' for more information",
                msg.into(),
                spec.usage,
                display_name(spec)
            ),
            code: 125,
        }
    }

    fn arity(spec: &VerbSpec, what: &str) -> ArgError {
        ArgError {
            message: format!(
                "{PROG}: '{PROG} {}' {what}\n\nUsage:  {PROG} {}\n\nSee '{PROG} {} --help' for more information",
                display_name(spec),
                spec.usage,
                display_name(spec)
            ),
            code: 1,
        }
    }

    /// An invalid value found while validating (exit 125, as docker's flag errors).
    fn value(spec: &VerbSpec, flag: &str, value: &str, why: &str) -> ArgError {
        ArgError::flag(
            spec,
            format!("invalid argument \"{value}\" for \"{flag}\" flag: {why}"),
        )
    }
}

fn display_name(spec: &VerbSpec) -> &'static str {
    match spec.name {
        "image-inspect" => "image inspect",
        "prune" => "container prune",
        n => n,
    }
}

fn flag_label(f: &FlagSpec) -> String {
    match f.short {
        Some(c) => format!("-{c}, --{}", f.long),
        None => format!("--{}", f.long),
    }
}

/// Result of the pre-pass: canonical words for argh, or a request for help.
#[derive(Debug, PartialEq, Eq)]
pub enum Prepassed {
    Words(Vec<String>),
    Help,
}

/// Phase 1: docker's flag grammar → canonical `--long value ... -- positionals`.
pub fn prepass(spec: &VerbSpec, args: &[String]) -> Result<Prepassed, ArgError> {
    let mut flags: Vec<String> = Vec::new();
    let mut positionals: Vec<String> = Vec::new();
    let mut idx = 0;
    let push_value = |flags: &mut Vec<String>, f: &FlagSpec, v: String| -> Result<(), ArgError> {
        if f.kind == FlagKind::Int && v.trim().parse::<i64>().is_err() {
            return Err(ArgError::flag(
                spec,
                format!("invalid argument \"{v}\" for \"{}\" flag: strconv.ParseInt: parsing \"{v}\": invalid syntax", flag_label(f)),
            ));
        }
        flags.push(format!("--{}", f.long));
        flags.push(if f.kind == FlagKind::Int {
            v.trim().to_string()
        } else {
            v
        });
        Ok(())
    };
    let push_bool = |flags: &mut Vec<String>, f: &FlagSpec, v: Option<&str>| -> Result<(), ArgError> {
        let on = match v {
            None => true,
            Some(t) => parse_go_bool(t).ok_or_else(|| {
                ArgError::flag(
                    spec,
                    format!("invalid argument \"{t}\" for \"{}\" flag: strconv.ParseBool: parsing \"{t}\": invalid syntax", flag_label(f)),
                )
            })?,
        };
        if on && !flags.iter().any(|w| w == &format!("--{}", f.long)) {
            flags.push(format!("--{}", f.long));
        }
        Ok(())
    };
    while idx < args.len() {
        let a = &args[idx];
        idx += 1;
        if let Some(n) = spec.passthrough_after {
            if positionals.len() >= n {
                positionals.push(a.clone());
                continue;
            }
        }
        if a == "--" {
            positionals.extend(args[idx..].iter().cloned());
            break;
        }
        if a == "--help" {
            return Ok(Prepassed::Help);
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let f = spec
                .flags
                .iter()
                .find(|f| f.long == name)
                .ok_or_else(|| ArgError::flag(spec, format!("unknown flag: --{name}")))?;
            if f.kind == FlagKind::Bool {
                push_bool(&mut flags, f, inline)?;
            } else {
                let v = match inline {
                    Some(v) => v.to_string(),
                    None => {
                        let v = args.get(idx).ok_or_else(|| {
                            ArgError::flag(spec, format!("flag needs an argument: --{name}"))
                        })?;
                        idx += 1;
                        v.clone()
                    }
                };
                push_value(&mut flags, f, v)?;
            }
            continue;
        }
        if a.len() > 1 && a.starts_with('-') {
            let cluster: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < cluster.len() {
                let c = cluster[j];
                let f =
                    spec.flags.iter().find(|f| f.short == Some(c)).ok_or_else(|| {
                        ArgError::flag(spec, format!("unknown shorthand flag: '{c}' in {a}"))
                    })?;
                let rest: String = cluster[j + 1..].iter().collect();
                if f.kind == FlagKind::Bool {
                    if let Some(v) = rest.strip_prefix('=') {
                        push_bool(&mut flags, f, Some(v))?;
                        break;
                    }
                    push_bool(&mut flags, f, None)?;
                    j += 1;
                    continue;
                }
                let v = if !rest.is_empty() {
                    rest.strip_prefix('=').unwrap_or(&rest).to_string()
                } else {
                    let v = args.get(idx).ok_or_else(|| {
                        ArgError::flag(spec, format!("flag needs an argument: '{c}' in -{c}"))
                    })?;
                    idx += 1;
                    v.clone()
                };
                push_value(&mut flags, f, v)?;
                break;
            }
            continue;
        }
        positionals.push(a.clone());
    }
    let count = positionals.len();
    let wrong = match spec.arity {
        Arity::None if count > 0 => Some("accepts no arguments".to_string()),
        Arity::Exactly(n) if count != n => Some(if n == 1 {
            "requires 1 argument".to_string()
        } else {
            format!("requires {n} arguments")
        }),
        Arity::AtLeast(n) if count < n => Some(format!(
            "requires at least {n} argument{}",
            if n == 1 { "" } else { "s" }
        )),
        Arity::Between(lo, hi) if count < lo || count > hi => {
            Some(format!("requires at least {lo} and at most {hi} arguments"))
        }
        _ => None,
    };
    if let Some(what) = wrong {
        return Err(ArgError::arity(spec, &what));
    }
    flags.push("--".into());
    flags.extend(positionals);
    Ok(Prepassed::Words(flags))
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Phase 2 helper: argh over canonical words.
fn argh_parse<T: FromArgs>(spec: &VerbSpec, words: &[String]) -> Result<T, ArgError> {
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    let cmd = format!("{PROG} {}", display_name(spec));
    T::from_args(&[cmd.as_str()], &refs).map_err(|e| ArgError::flag(spec, e.output.trim_end().to_string()))
}

/// The help for a verb: docker's usage line, then argh's description and options.
fn argh_help<T: FromArgs>(spec: &VerbSpec) -> String {
    let cmd = format!("{PROG} {}", display_name(spec));
    let generated = match T::from_args(&[cmd.as_str()], &["--help"]) {
        Err(e) => e.output,
        Ok(_) => String::new(),
    };
    // argh's own first line is its usage synopsis; docker's is shorter and names the operands.
    let body = generated.split_once('\n').map(|(_, rest)| rest).unwrap_or("");
    format!("Usage:  {PROG} {}\n{body}", spec.usage)
}

// ---- Phase-2 raw flag structs (argh). Names match the flag tables above. ----

#[derive(FromArgs, Debug, Default)]
#[argh(help_triggers("--help"))]
/// Create and run a new container from an image.
pub struct RunFlags {
    /// run container in background and print container ID
    #[argh(switch, short = 'd')]
    pub detach: bool,
    /// keep STDIN open even if not attached
    #[argh(switch, short = 'i')]
    pub interactive: bool,
    /// allocate a pseudo-TTY
    #[argh(switch, short = 't')]
    pub tty: bool,
    /// automatically remove the container when it exits
    #[argh(switch)]
    pub rm: bool,
    /// assign a name to the container
    #[argh(option)]
    pub name: Option<String>,
    /// set environment variables
    #[argh(option, short = 'e')]
    pub env: Vec<String>,
    /// read in a file of environment variables
    #[argh(option)]
    pub env_file: Vec<String>,
    /// working directory inside the container
    #[argh(option, short = 'w')]
    pub workdir: Option<String>,
    /// username or UID (format: <name|uid>[:<group|gid>])
    #[argh(option, short = 'u')]
    pub user: Option<String>,
    /// container host name
    #[argh(option, short = 'h')]
    pub hostname: Option<String>,
    /// overwrite the default ENTRYPOINT of the image
    #[argh(option)]
    pub entrypoint: Option<String>,
    /// restart policy to apply when a container exits (no, always, on-failure[:N], unless-stopped)
    #[argh(option)]
    pub restart: Option<String>,
    /// memory limit
    #[argh(option, short = 'm')]
    pub memory: Option<String>,
    /// swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[argh(option)]
    pub memory_swap: Option<String>,
    /// number of CPUs
    #[argh(option)]
    pub cpus: Option<String>,
    /// tune container pids limit (set -1 for unlimited)
    #[argh(option)]
    pub pids_limit: Option<i64>,
    /// run an init inside the container that forwards signals and reaps processes
    #[argh(switch)]
    pub init: bool,
    /// mount the container's root filesystem as read only
    #[argh(switch)]
    pub read_only: bool,
    /// add Linux capabilities
    #[argh(option)]
    pub cap_add: Vec<String>,
    /// drop Linux capabilities
    #[argh(option)]
    pub cap_drop: Vec<String>,
    /// connect a container to a network (bridge, host, none or a user network)
    #[argh(option)]
    pub network: Option<String>,
    /// add a network-scoped alias for the container
    #[argh(option)]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[argh(option)]
    pub ip: Option<String>,
    /// set meta data on a container
    #[argh(option, short = 'l')]
    pub label: Vec<String>,
    /// log driver options (max-size=10m, max-file=3)
    #[argh(option)]
    pub log_opt: Vec<String>,
    /// logging driver for the container
    #[argh(option)]
    pub log_driver: Option<String>,
    /// signal to stop the container
    #[argh(option)]
    pub stop_signal: Option<String>,
    /// timeout (in seconds) to stop a container
    #[argh(option)]
    pub stop_timeout: Option<i64>,
    /// command to run to check health
    #[argh(option)]
    pub health_cmd: Option<String>,
    /// time between running the check
    #[argh(option)]
    pub health_interval: Option<String>,
    /// maximum time to allow one check to run
    #[argh(option)]
    pub health_timeout: Option<String>,
    /// consecutive failures needed to report unhealthy
    #[argh(option)]
    pub health_retries: Option<i64>,
    /// start period for the container to initialize before counting retries
    #[argh(option)]
    pub health_start_period: Option<String>,
    /// time between checks during the start period
    #[argh(option)]
    pub health_start_interval: Option<String>,
    /// disable any container-specified HEALTHCHECK
    #[argh(switch)]
    pub no_healthcheck: bool,
    /// give extended privileges to this container
    #[argh(switch)]
    pub privileged: bool,
    /// attach to STDIN, STDOUT or STDERR
    #[argh(option, short = 'a')]
    pub attach: Vec<String>,
    /// override the key sequence for detaching a container
    #[argh(option)]
    pub detach_keys: Option<String>,
    /// proxy received signals to the process
    #[argh(switch)]
    pub sig_proxy: bool,
    /// pull image before running ("always", "missing", "never")
    #[argh(option)]
    pub pull: Option<String>,
    /// bind mount a volume (SRC:DST[:OPTS])
    #[argh(option, short = 'v')]
    pub volume: Vec<String>,
    /// attach a filesystem mount to the container (type=bind|volume|tmpfs,...)
    #[argh(option)]
    pub mount: Vec<String>,
    /// mount volumes from the specified container(s)
    #[argh(option)]
    pub volumes_from: Vec<String>,
    /// publish a container's port(s) to the host
    #[argh(option, short = 'p')]
    pub publish: Vec<String>,
    /// publish all exposed ports to random ports
    #[argh(switch, short = 'P')]
    pub publish_all: bool,
    /// expose a port or a range of ports
    #[argh(option)]
    pub expose: Vec<String>,
    /// mount a tmpfs directory (DST[:OPTS])
    #[argh(option)]
    pub tmpfs: Vec<String>,
    /// add a custom host-to-IP mapping (host:ip)
    #[argh(option)]
    pub add_host: Vec<String>,
    /// set custom DNS servers
    #[argh(option)]
    pub dns: Vec<String>,
    /// set custom DNS search domains
    #[argh(option)]
    pub dns_search: Vec<String>,
    /// set DNS options
    #[argh(option)]
    pub dns_option: Vec<String>,
    /// size of /dev/shm
    #[argh(option)]
    pub shm_size: Option<String>,
    /// add additional groups to join
    #[argh(option)]
    pub group_add: Vec<String>,
    /// set platform if server is multi-platform capable
    #[argh(option)]
    pub platform: Option<String>,
    /// suppress the pull output
    #[argh(switch, short = 'q')]
    pub quiet: bool,
    /// IMAGE [COMMAND] [ARG...]
    #[argh(positional, greedy)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Start one or more stopped containers.
pub struct StartFlags {
    /// attach STDOUT/STDERR and forward signals
    #[argh(switch, short = 'a')]
    pub attach: bool,
    /// attach container's STDIN
    #[argh(switch, short = 'i')]
    pub interactive: bool,
    /// override the key sequence for detaching a container
    #[argh(option)]
    pub detach_keys: Option<String>,
    /// CONTAINER [CONTAINER...]
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Stop (or restart) one or more running containers.
pub struct StopFlags {
    /// seconds to wait before killing the container
    #[argh(option, short = 't')]
    pub timeout: Option<i64>,
    /// signal to send to the container
    #[argh(option, short = 's')]
    pub signal: Option<String>,
    /// CONTAINER [CONTAINER...]
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Kill one or more running containers.
pub struct KillFlags {
    /// signal to send to the container
    #[argh(option, short = 's')]
    pub signal: Option<String>,
    /// CONTAINER [CONTAINER...]
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Remove one or more containers.
pub struct RmFlags {
    /// force the removal of a running container (uses SIGKILL)
    #[argh(switch, short = 'f')]
    pub force: bool,
    /// remove anonymous volumes associated with the container
    #[argh(switch, short = 'v')]
    pub volumes: bool,
    /// remove the specified link
    #[argh(switch, short = 'l')]
    pub link: bool,
    /// CONTAINER [CONTAINER...]
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// List containers.
pub struct PsFlags {
    /// show all containers (default shows just running)
    #[argh(switch, short = 'a')]
    pub all: bool,
    /// only display container IDs
    #[argh(switch, short = 'q')]
    pub quiet: bool,
    /// don't truncate output
    #[argh(switch)]
    pub no_trunc: bool,
    /// filter output based on conditions provided
    #[argh(option, short = 'f')]
    pub filter: Vec<String>,
    /// format output using a custom template
    #[argh(option)]
    pub format: Option<String>,
    /// show n last created containers (includes all states)
    #[argh(option, short = 'n', default = "-1")]
    pub last: i64,
    /// show the latest created container (includes all states)
    #[argh(switch, short = 'l')]
    pub latest: bool,
    /// display total file sizes
    #[argh(switch, short = 's')]
    pub size: bool,
    /// none
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Fetch the logs of a container.
pub struct LogsFlags {
    /// follow log output
    #[argh(switch, short = 'f')]
    pub follow: bool,
    /// number of lines to show from the end of the logs
    #[argh(option, short = 'n')]
    pub tail: Option<String>,
    /// show logs since timestamp or relative (e.g. 42m)
    #[argh(option)]
    pub since: Option<String>,
    /// show logs before a timestamp or relative (e.g. 42m)
    #[argh(option)]
    pub until: Option<String>,
    /// show timestamps
    #[argh(switch, short = 't')]
    pub timestamps: bool,
    /// show extra details provided to logs
    #[argh(switch)]
    pub details: bool,
    /// CONTAINER
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Execute a command in a running container.
pub struct ExecFlags {
    /// detached mode: run command in the background
    #[argh(switch, short = 'd')]
    pub detach: bool,
    /// keep STDIN open even if not attached
    #[argh(switch, short = 'i')]
    pub interactive: bool,
    /// allocate a pseudo-TTY
    #[argh(switch, short = 't')]
    pub tty: bool,
    /// set environment variables
    #[argh(option, short = 'e')]
    pub env: Vec<String>,
    /// read in a file of environment variables
    #[argh(option)]
    pub env_file: Vec<String>,
    /// working directory inside the container
    #[argh(option, short = 'w')]
    pub workdir: Option<String>,
    /// username or UID
    #[argh(option, short = 'u')]
    pub user: Option<String>,
    /// give extended privileges to the command
    #[argh(switch)]
    pub privileged: bool,
    /// override the key sequence for detaching a container
    #[argh(option)]
    pub detach_keys: Option<String>,
    /// CONTAINER COMMAND [ARG...]
    #[argh(positional, greedy)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Attach local standard input, output, and error streams to a running container.
pub struct AttachFlags {
    /// override the key sequence for detaching a container
    #[argh(option)]
    pub detach_keys: Option<String>,
    /// do not attach STDIN
    #[argh(switch)]
    pub no_stdin: bool,
    /// proxy all received signals to the process
    #[argh(switch)]
    pub sig_proxy: bool,
    /// CONTAINER
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Return low-level information on containers or images.
pub struct InspectFlags {
    /// format output using a custom template
    #[argh(option, short = 'f')]
    pub format: Option<String>,
    /// display total file sizes if the type is container
    #[argh(switch, short = 's')]
    pub size: bool,
    /// only inspect objects of the given type
    #[argh(option)]
    pub r#type: Option<String>,
    /// NAME|ID [NAME|ID...]
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// A verb with only positional arguments (top, wait, rename, tag).
pub struct PlainFlags {
    /// arguments
    #[argh(positional, greedy)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Display a live stream of container(s) resource usage statistics.
pub struct StatsFlags {
    /// show all containers (default shows just running)
    #[argh(switch, short = 'a')]
    pub all: bool,
    /// disable streaming stats and only pull the first result
    #[argh(switch)]
    pub no_stream: bool,
    /// format output using a custom template
    #[argh(option)]
    pub format: Option<String>,
    /// do not truncate output
    #[argh(switch)]
    pub no_trunc: bool,
    /// [CONTAINER...]
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Remove all stopped containers.
pub struct PruneFlags {
    /// do not prompt for confirmation
    #[argh(switch, short = 'f')]
    pub force: bool,
    /// provide filter values (e.g. "until=<timestamp>")
    #[argh(option)]
    pub filter: Vec<String>,
    /// none
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Show version or system information.
pub struct FormatOnlyFlags {
    /// format output using a custom template
    #[argh(option, short = 'f')]
    pub format: Option<String>,
    /// arguments
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// List images.
pub struct ImagesFlags {
    /// show all images (default hides intermediate images)
    #[argh(switch, short = 'a')]
    pub all: bool,
    /// only show image IDs
    #[argh(switch, short = 'q')]
    pub quiet: bool,
    /// don't truncate output
    #[argh(switch)]
    pub no_trunc: bool,
    /// format output using a custom template
    #[argh(option)]
    pub format: Option<String>,
    /// filter output based on conditions provided
    #[argh(option, short = 'f')]
    pub filter: Vec<String>,
    /// show digests
    #[argh(switch)]
    pub digests: bool,
    /// [REPOSITORY[:TAG]]
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Remove one or more images.
pub struct RmiFlags {
    /// force removal of the image
    #[argh(switch, short = 'f')]
    pub force: bool,
    /// do not delete untagged parents
    #[argh(switch)]
    pub no_prune: bool,
    /// IMAGE [IMAGE...]
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Load an image from a tar archive or STDIN.
pub struct LoadFlags {
    /// read from tar archive file, instead of STDIN
    #[argh(option, short = 'i')]
    pub input: Option<String>,
    /// suppress the load output
    #[argh(switch, short = 'q')]
    pub quiet: bool,
    /// none
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Import the contents from a tarball to create a filesystem image.
pub struct ImportFlags {
    /// apply Dockerfile instruction to the created image
    #[argh(option, short = 'c')]
    pub change: Vec<String>,
    /// set commit message for imported image
    #[argh(option, short = 'm')]
    pub message: Option<String>,
    /// file|- [REPOSITORY[:TAG]]
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Build an image from a Dockerfile.
pub struct BuildFlags {
    /// name and optionally a tag in the "name:tag" format
    #[argh(option, short = 't')]
    pub tag: Vec<String>,
    /// name of the Dockerfile (default: "PATH/Dockerfile")
    #[argh(option, short = 'f')]
    pub file: Option<String>,
    /// set build-time variables
    #[argh(option)]
    pub build_arg: Vec<String>,
    /// set the target build stage to build
    #[argh(option)]
    pub target: Option<String>,
    /// do not use cache when building the image
    #[argh(switch)]
    pub no_cache: bool,
    /// suppress the build output and print image ID on success
    #[argh(switch, short = 'q')]
    pub quiet: bool,
    /// set the networking mode for the RUN instructions during build (default "default")
    #[argh(option)]
    pub network: Option<String>,
    /// set metadata for an image
    #[argh(option)]
    pub label: Vec<String>,
    /// remove intermediate containers after a successful build (always done)
    #[argh(switch)]
    pub rm: bool,
    /// always remove intermediate containers (always done)
    #[argh(switch)]
    pub force_rm: bool,
    /// PATH
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Create a new image from a container's changes.
pub struct CommitFlags {
    /// commit message
    #[argh(option, short = 'm')]
    pub message: Option<String>,
    /// author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[argh(option, short = 'a')]
    pub author: Option<String>,
    /// apply Dockerfile instruction to the created image
    #[argh(option, short = 'c')]
    pub change: Vec<String>,
    /// pause container during commit (accepted; the changes are read as they are)
    #[argh(switch, short = 'p')]
    pub pause: bool,
    /// CONTAINER [REPOSITORY[:TAG]]
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Save one or more images to a tar archive (streamed to STDOUT by default).
pub struct SaveFlags {
    /// write to a file, instead of STDOUT
    #[argh(option, short = 'o')]
    pub output: Option<String>,
    /// IMAGE...
    #[argh(positional)]
    pub args: Vec<String>,
}

#[derive(FromArgs, Debug)]
#[argh(help_triggers("--help"))]
/// Export a container's filesystem as a tar archive.
pub struct ExportFlags {
    /// write to a file, instead of STDOUT
    #[argh(option, short = 'o')]
    pub output: Option<String>,
    /// CONTAINER
    #[argh(positional)]
    pub args: Vec<String>,
}

// ---- Phase-2 validated actions ----

/// A validated container-create request: the query name and the JSON body the API takes.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSpec {
    pub name: Option<String>,
    pub image: String,
    /// When to pull the image: "missing" (docker's default), "always" or "never".
    pub pull: String,
    /// Print no pull progress (`-q`).
    pub quiet: bool,
    /// `--platform`: the image variant to use and to pull (`linux/arm64`).
    pub platform: Option<String>,
    pub body: Value,
}

/// `run` = create + (attach) + start (+ wait).
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    pub create: CreateSpec,
    pub detach: bool,
    pub interactive: bool,
    pub tty: bool,
    pub auto_remove: bool,
    pub detach_keys: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecSpec {
    pub container: String,
    pub detach: bool,
    pub interactive: bool,
    pub tty: bool,
    pub detach_keys: Option<String>,
    /// Body of POST /containers/{id}/exec.
    pub body: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PsSpec {
    pub all: bool,
    pub quiet: bool,
    pub no_trunc: bool,
    pub filters: Vec<(String, String)>,
    pub format: Option<String>,
    pub last: i64,
    pub size: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogsSpec {
    pub container: String,
    pub follow: bool,
    pub tail: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub timestamps: bool,
    pub details: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImagesSpec {
    pub all: bool,
    pub quiet: bool,
    pub no_trunc: bool,
    pub format: Option<String>,
    pub filters: Vec<(String, String)>,
    pub reference: Option<String>,
    pub digests: bool,
}

/// The whole command surface of the client: one validated action per invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Help(String),
    ClientVersion,
    Run(RunSpec),
    Create(CreateSpec),
    Start {
        containers: Vec<String>,
        attach: bool,
        interactive: bool,
        detach_keys: Option<String>,
    },
    Stop {
        containers: Vec<String>,
        timeout: Option<i64>,
        signal: Option<String>,
    },
    Restart {
        containers: Vec<String>,
        timeout: Option<i64>,
        signal: Option<String>,
    },
    Kill {
        containers: Vec<String>,
        signal: Option<String>,
    },
    Rm {
        containers: Vec<String>,
        force: bool,
        volumes: bool,
    },
    Ps(PsSpec),
    Logs(LogsSpec),
    Exec(ExecSpec),
    Attach {
        container: String,
        detach_keys: Option<String>,
        no_stdin: bool,
    },
    Inspect {
        names: Vec<String>,
        format: Option<String>,
        kind: Option<String>,
        size: bool,
    },
    Top {
        container: String,
        ps_args: Vec<String>,
    },
    Stats {
        containers: Vec<String>,
        all: bool,
        no_stream: bool,
        format: Option<String>,
        no_trunc: bool,
    },
    Wait {
        containers: Vec<String>,
    },
    Rename {
        container: String,
        new_name: String,
    },
    Prune {
        force: bool,
        filters: Vec<(String, String)>,
    },
    Version {
        format: Option<String>,
    },
    Info {
        format: Option<String>,
    },
    Images(ImagesSpec),
    Build(super::build::BuildSpec),
    Commit {
        container: String,
        reference: Option<String>,
        message: Option<String>,
        author: Option<String>,
        changes: Vec<String>,
    },
    Export {
        container: String,
        output: Option<String>,
    },
    Save {
        images: Vec<String>,
        output: Option<String>,
    },
    Rmi {
        images: Vec<String>,
        force: bool,
        no_prune: bool,
    },
    Tag {
        source: String,
        target: String,
    },
    Load {
        input: Option<String>,
        quiet: bool,
    },
    Import {
        source: String,
        reference: Option<String>,
        changes: Vec<String>,
        message: Option<String>,
    },
}

/// A parsed command line: where the daemon is, and what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub host: Option<String>,
    pub action: Action,
}

const TOP_HELP: &str = "Usage:  shoal [OPTIONS] COMMAND

Containers, compose and a small swarm for little Linux boards

Common Commands:
  run         Create and run a new container from an image
  build       Build an image from a Dockerfile
  exec        Execute a command in a running container
  ps          List containers
  images      List images
  pull        Download an image from a registry
  push        Upload an image to a registry
  logs        Fetch the logs of a container
  version     Show the shoal version information
  info        Display system-wide information

Management Commands:
  container   Manage containers
  image       Manage images
  network     Manage networks (and `port CONTAINER` lists published ports)
  system      Manage shoal (df: disk usage, prune: remove unused data)
  volume      Manage volumes

Commands:
  attach commit create export inspect kill load import login logout rename restart rm rmi start
  stats stop tag top wait

Daemon:
  daemon      Run the daemon in the foreground

Global Options:
  -H, --host string   Daemon socket to connect to (unix://PATH; default from SHOAL_HOST or
                      unix:///run/shoal/shoal.sock)
  -v, --version       Print version information and quit
      --help          Print usage
";

fn group_help(group: &str) -> String {
    let commands = if group == "container" {
        "attach commit create exec export inspect kill logs ls rename restart rm run start stats stop top wait prune"
    } else {
        "build import inspect load ls prune rm tag"
    };
    format!(
        "Usage:  {PROG} {group} COMMAND\n\nManage {group}s\n\nCommands:\n  {commands}\n\nRun '{PROG} {group} COMMAND --help' for more information on a command.\n"
    )
}

/// Map `container X` / `image X` and top-level words to a canonical verb name.
fn canonical_verb(group: Option<&str>, word: &str) -> Option<&'static str> {
    let v = match (group, word) {
        (Some("container"), "ls" | "list" | "ps") => "ps",
        (Some("container"), "remove" | "rm") => "rm",
        (Some("container"), "prune") => "prune",
        (
            Some("container"),
            w @ ("run" | "create" | "start" | "stop" | "restart" | "kill" | "logs" | "exec" | "attach"
            | "inspect" | "top" | "stats" | "wait" | "rename"),
        ) => return verb(w).map(|s| s.name),
        (Some("image"), "ls" | "list") => "images",
        (Some("image"), "rm" | "remove") => "rmi",
        (Some("image"), "inspect") => "image-inspect",
        (Some("image"), w @ ("tag" | "load" | "import" | "build" | "save")) => {
            return verb(w).map(|s| s.name)
        }
        (Some("container"), w @ ("commit" | "export")) => return verb(w).map(|s| s.name),
        (None, w) if w != "prune" && w != "image-inspect" => return verb(w).map(|s| s.name),
        _ => return None,
    };
    Some(v)
}

/// Parse the words after the program name into an [`Invocation`].
pub fn parse(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Invocation, ArgError> {
    let mut host = None;
    let mut idx = 0;
    // Global flags come before the verb.
    while let Some(a) = args.get(idx) {
        if a == "-H" || a == "--host" {
            host = Some(args.get(idx + 1).cloned().ok_or_else(|| ArgError {
                message: format!("flag needs an argument: {a}\n\nRun '{PROG} --help' for more information"),
                code: 125,
            })?);
            idx += 2;
        } else if let Some(h) = a.strip_prefix("--host=").or_else(|| a.strip_prefix("-H=")) {
            host = Some(h.to_string());
            idx += 1;
        } else if a.starts_with("-H") && a.len() > 2 {
            host = Some(a[2..].to_string());
            idx += 1;
        } else if a == "-v" || a == "--version" {
            return Ok(Invocation {
                host,
                action: Action::ClientVersion,
            });
        } else if a == "--help" || a == "-h" {
            return Ok(Invocation {
                host,
                action: Action::Help(TOP_HELP.into()),
            });
        } else if a.starts_with('-') {
            return Err(ArgError {
                message: format!("unknown flag: {a}\n\nRun '{PROG} --help' for more information"),
                code: 125,
            });
        } else {
            break;
        }
    }
    let Some(first) = args.get(idx) else {
        return Ok(Invocation {
            host,
            action: Action::Help(TOP_HELP.into()),
        });
    };
    idx += 1;
    let group = match first.as_str() {
        "container" | "image" => Some(first.as_str()),
        "help" => {
            return Ok(Invocation {
                host,
                action: Action::Help(TOP_HELP.into()),
            })
        }
        _ => None,
    };
    let word = match group {
        Some(g) => match args.get(idx) {
            Some(w) if w != "--help" => {
                idx += 1;
                w.as_str()
            }
            _ => {
                return Ok(Invocation {
                    host,
                    action: Action::Help(group_help(g)),
                })
            }
        },
        None => first.as_str(),
    };
    let name = canonical_verb(group, word).ok_or_else(|| {
        let full = match group {
            Some(g) => format!("{g} {word}"),
            None => word.to_string(),
        };
        ArgError {
            message: format!(
                "{PROG}: unknown command: {PROG} {full}\n\nRun '{PROG} --help' for more information"
            ),
            code: 1,
        }
    })?;
    // Every canonical name has a spec: canonical_verb only returns names from VERBS.
    let spec = verb(name).ok_or_else(|| ArgError {
        message: format!("unknown verb {name}"),
        code: 1,
    })?;
    let action = parse_verb(spec, &args[idx..], env)?;
    Ok(Invocation { host, action })
}

fn parse_verb(
    spec: &VerbSpec,
    rest: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Action, ArgError> {
    let words = match prepass(spec, rest)? {
        Prepassed::Words(w) => w,
        Prepassed::Help => return Ok(Action::Help(help_for(spec))),
    };
    // Indexing `f.args` below is in bounds: the pre-pass checked each verb's arity.
    Ok(match spec.name {
        "run" | "create" => {
            let f: RunFlags = argh_parse(spec, &words)?;
            let run = validate_run(spec, f, env)?;
            if spec.name == "create" {
                Action::Create(run.create)
            } else {
                Action::Run(run)
            }
        }
        "start" => {
            let f: StartFlags = argh_parse(spec, &words)?;
            Action::Start {
                containers: f.args,
                attach: f.attach,
                interactive: f.interactive,
                detach_keys: f.detach_keys,
            }
        }
        "stop" | "restart" => {
            let f: StopFlags = argh_parse(spec, &words)?;
            if spec.name == "stop" {
                Action::Stop {
                    containers: f.args,
                    timeout: f.timeout,
                    signal: f.signal,
                }
            } else {
                Action::Restart {
                    containers: f.args,
                    timeout: f.timeout,
                    signal: f.signal,
                }
            }
        }
        "kill" => {
            let f: KillFlags = argh_parse(spec, &words)?;
            Action::Kill {
                containers: f.args,
                signal: f.signal,
            }
        }
        "rm" => {
            let f: RmFlags = argh_parse(spec, &words)?;
            Action::Rm {
                containers: f.args,
                force: f.force,
                volumes: f.volumes,
            }
        }
        "ps" => {
            let f: PsFlags = argh_parse(spec, &words)?;
            let filters = parse_filters(spec, &f.filter)?;
            check_template(spec, f.format.as_deref())?;
            let last = if f.latest { 1 } else { f.last };
            Action::Ps(PsSpec {
                all: f.all || last > 0,
                quiet: f.quiet,
                no_trunc: f.no_trunc,
                filters,
                format: f.format,
                last,
                size: f.size,
            })
        }
        "logs" => {
            let f: LogsFlags = argh_parse(spec, &words)?;
            let container = first(&f.args);
            Action::Logs(LogsSpec {
                container,
                follow: f.follow,
                tail: f.tail,
                since: f.since,
                until: f.until,
                timestamps: f.timestamps,
                details: f.details,
            })
        }
        "exec" => {
            let f: ExecFlags = argh_parse(spec, &words)?;
            Action::Exec(validate_exec(spec, f, env)?)
        }
        "attach" => {
            let f: AttachFlags = argh_parse(spec, &words)?;
            Action::Attach {
                container: first(&f.args),
                detach_keys: f.detach_keys,
                no_stdin: f.no_stdin,
            }
        }
        "inspect" | "image-inspect" => {
            let f: InspectFlags = argh_parse(spec, &words)?;
            check_template(spec, f.format.as_deref())?;
            let kind = if spec.name == "image-inspect" {
                Some("image".to_string())
            } else {
                f.r#type
            };
            if let Some(k) = kind.as_deref() {
                if k != "container" && k != "image" {
                    return Err(ArgError::flag(
                        spec,
                        format!("\"{k}\" is not a valid value for --type"),
                    ));
                }
            }
            Action::Inspect {
                names: f.args,
                format: f.format,
                kind,
                size: f.size,
            }
        }
        "top" => {
            let f: PlainFlags = argh_parse(spec, &words)?;
            Action::Top {
                container: first(&f.args),
                ps_args: f.args[1..].to_vec(),
            }
        }
        "stats" => {
            let f: StatsFlags = argh_parse(spec, &words)?;
            check_template(spec, f.format.as_deref())?;
            Action::Stats {
                containers: f.args,
                all: f.all,
                no_stream: f.no_stream,
                format: f.format,
                no_trunc: f.no_trunc,
            }
        }
        "wait" => Action::Wait {
            containers: argh_parse::<PlainFlags>(spec, &words)?.args,
        },
        "rename" => {
            let f: PlainFlags = argh_parse(spec, &words)?;
            Action::Rename {
                container: f.args[0].clone(),
                new_name: f.args[1].clone(),
            }
        }
        "prune" => {
            let f: PruneFlags = argh_parse(spec, &words)?;
            Action::Prune {
                force: f.force,
                filters: parse_filters(spec, &f.filter)?,
            }
        }
        "version" | "info" => {
            let f: FormatOnlyFlags = argh_parse(spec, &words)?;
            check_template(spec, f.format.as_deref())?;
            if spec.name == "version" {
                Action::Version { format: f.format }
            } else {
                Action::Info { format: f.format }
            }
        }
        "images" => {
            let f: ImagesFlags = argh_parse(spec, &words)?;
            check_template(spec, f.format.as_deref())?;
            Action::Images(ImagesSpec {
                all: f.all,
                quiet: f.quiet,
                no_trunc: f.no_trunc,
                format: f.format,
                filters: parse_filters(spec, &f.filter)?,
                reference: f.args.first().cloned(),
                digests: f.digests,
            })
        }
        "rmi" => {
            let f: RmiFlags = argh_parse(spec, &words)?;
            Action::Rmi {
                images: f.args,
                force: f.force,
                no_prune: f.no_prune,
            }
        }
        "tag" => {
            let f: PlainFlags = argh_parse(spec, &words)?;
            Action::Tag {
                source: f.args[0].clone(),
                target: f.args[1].clone(),
            }
        }
        "build" => {
            let f: BuildFlags = argh_parse(spec, &words)?;
            Action::Build(super::build::BuildSpec {
                context: f.args[0].clone(),
                tags: f.tag,
                file: f.file,
                build_args: f.build_arg,
                target: f.target,
                no_cache: f.no_cache,
                quiet: f.quiet,
                network: f.network,
                labels: f.label,
            })
        }
        "commit" => {
            let f: CommitFlags = argh_parse(spec, &words)?;
            Action::Commit {
                container: f.args[0].clone(),
                reference: f.args.get(1).cloned(),
                message: f.message,
                author: f.author,
                changes: f.change,
            }
        }
        "save" => {
            let f: SaveFlags = argh_parse(spec, &words)?;
            Action::Save {
                images: f.args,
                output: f.output,
            }
        }
        "export" => {
            let f: ExportFlags = argh_parse(spec, &words)?;
            Action::Export {
                container: f.args[0].clone(),
                output: f.output,
            }
        }
        "load" => {
            let f: LoadFlags = argh_parse(spec, &words)?;
            Action::Load {
                input: f.input,
                quiet: f.quiet,
            }
        }
        "import" => {
            let f: ImportFlags = argh_parse(spec, &words)?;
            Action::Import {
                source: f.args[0].clone(),
                reference: f.args.get(1).cloned(),
                changes: f.change,
                message: f.message,
            }
        }
        other => {
            return Err(ArgError {
                message: format!("unknown verb {other}"),
                code: 1,
            })
        }
    })
}

/// The first positional; the pre-pass has already checked the count.
fn first(args: &[String]) -> String {
    args.first().cloned().unwrap_or_default()
}

fn help_for(spec: &VerbSpec) -> String {
    match spec.name {
        "run" | "create" => argh_help::<RunFlags>(spec),
        "start" => argh_help::<StartFlags>(spec),
        "stop" | "restart" => argh_help::<StopFlags>(spec),
        "kill" => argh_help::<KillFlags>(spec),
        "rm" => argh_help::<RmFlags>(spec),
        "ps" => argh_help::<PsFlags>(spec),
        "logs" => argh_help::<LogsFlags>(spec),
        "exec" => argh_help::<ExecFlags>(spec),
        "attach" => argh_help::<AttachFlags>(spec),
        "inspect" | "image-inspect" => argh_help::<InspectFlags>(spec),
        "stats" => argh_help::<StatsFlags>(spec),
        "prune" => argh_help::<PruneFlags>(spec),
        "version" | "info" => argh_help::<FormatOnlyFlags>(spec),
        "images" => argh_help::<ImagesFlags>(spec),
        "rmi" => argh_help::<RmiFlags>(spec),
        "build" => argh_help::<BuildFlags>(spec),
        "commit" => argh_help::<CommitFlags>(spec),
        "export" => argh_help::<ExportFlags>(spec),
        "save" => argh_help::<SaveFlags>(spec),
        "load" => argh_help::<LoadFlags>(spec),
        "import" => argh_help::<ImportFlags>(spec),
        _ => format!("Usage:  {PROG} {}\n", spec.usage),
    }
}

fn parse_filters(spec: &VerbSpec, items: &[String]) -> Result<Vec<(String, String)>, ArgError> {
    items
        .iter()
        .map(|f| values::parse_filter(f).map_err(|e| ArgError::value(spec, "-f, --filter", f, &e)))
        .collect()
}

fn check_template(spec: &VerbSpec, format: Option<&str>) -> Result<(), ArgError> {
    if let Some(f) = format {
        let body = f.trim().strip_prefix("table").unwrap_or(f);
        if !matches!(f.trim(), "json" | "table" | "raw" | "") {
            super::template::Template::parse(body).map_err(|e| ArgError {
                message: e.0,
                code: 1,
            })?;
        }
    }
    let _ = spec;
    Ok(())
}

fn collect_env(
    spec: &VerbSpec,
    env_files: &[String],
    env: &[String],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ArgError> {
    let mut out = Vec::new();
    for path in env_files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ArgError::flag(spec, format!("open {path}: {}", io_text(&e))))?;
        out.extend(values::parse_env_file(&text, path, lookup).map_err(|e| ArgError::flag(spec, e))?);
    }
    for item in env {
        if let Some(v) = values::expand_env(item, lookup).map_err(|e| ArgError::flag(spec, e))? {
            out.push(v);
        }
    }
    Ok(out)
}

/// Go-style text for an I/O error ("no such file or directory").
fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Validate `run`/`create` flags into the create body Docker's API expects.
pub fn validate_run(
    spec: &VerbSpec,
    f: RunFlags,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<RunSpec, ArgError> {
    let image = f.args[0].clone();
    let cmd: Vec<String> = f.args[1..].to_vec();
    let is_run = spec.name == "run";
    let detach = f.detach || !is_run;
    if is_run && f.detach && f.rm {
        // Allowed, as docker allows it; the daemon removes on exit.
    }
    let pull = f.pull.clone().unwrap_or_else(|| "missing".into());
    if !matches!(pull.as_str(), "missing" | "always" | "never") {
        return Err(ArgError::flag(
            spec,
            format!("invalid pull option: '{pull}': must be one of \"always\", \"missing\" or \"never\""),
        ));
    }
    let restart = match f.restart.as_deref() {
        Some(r) => values::parse_restart(r).map_err(|e| ArgError::flag(spec, e))?,
        None => RestartPolicy {
            name: "no".into(),
            maximum_retry_count: 0,
        },
    };
    if f.rm && restart.name != "no" {
        return Err(ArgError::flag(spec, "Conflicting options: --restart and --rm"));
    }
    let memory = match f.memory.as_deref() {
        Some(m) => values::parse_ram(m).map_err(|e| ArgError::value(spec, "-m, --memory", m, &e))?,
        None => 0,
    };
    let memory_swap = match f.memory_swap.as_deref() {
        Some(m) => values::parse_swap(m).map_err(|e| ArgError::value(spec, "--memory-swap", m, &e))?,
        None => 0,
    };
    let nano_cpus = match f.cpus.as_deref() {
        Some(c) => values::parse_cpus(c).map_err(|e| ArgError::value(spec, "--cpus", c, &e))?,
        None => 0,
    };
    let log_config = values::parse_log_opts(&f.log_opt).map_err(|e| ArgError::flag(spec, e))?;
    let env = collect_env(spec, &f.env_file, &f.env, lookup)?;
    let labels = values::parse_labels(&f.label);
    let mut attach_streams: Vec<String> = f.attach.iter().map(|s| s.to_ascii_lowercase()).collect();
    for s in &attach_streams {
        if !matches!(s.as_str(), "stdin" | "stdout" | "stderr") {
            return Err(ArgError::flag(spec, format!("invalid argument \"{s}\" for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR")));
        }
    }
    if is_run && f.detach && !attach_streams.is_empty() {
        return Err(ArgError::flag(spec, "Conflicting options: -a and -d"));
    }
    if attach_streams.is_empty() && !detach {
        attach_streams = vec!["stdout".into(), "stderr".into()];
        if f.interactive {
            attach_streams.insert(0, "stdin".into());
        }
    }
    let has = |s: &str| attach_streams.iter().any(|x| x == s);
    let entrypoint: Value = match f.entrypoint.as_deref() {
        Some("") => json!([""]),
        Some(e) => json!([e]),
        None => Value::Null,
    };
    let mut host_config = json!({
        "AutoRemove": f.rm,
        "RestartPolicy": {"Name": restart.name, "MaximumRetryCount": restart.maximum_retry_count},
        "Memory": memory,
        "MemorySwap": memory_swap,
        "NanoCpus": nano_cpus,
        "ReadonlyRootfs": f.read_only,
        "CapAdd": f.cap_add,
        "CapDrop": f.cap_drop,
        "NetworkMode": f.network.clone().unwrap_or_else(|| "default".into()),
        "Privileged": f.privileged,
        "LogConfig": {"Type": f.log_driver.clone().unwrap_or_else(|| "json-file".into()), "Config": log_config},
    });
    if let Some(p) = f.pids_limit {
        host_config["PidsLimit"] = json!(p);
    }
    let mut exposed = serde_json::Map::new();
    let mut bindings = serde_json::Map::new();
    for spec_text in &f.publish {
        let maps = values::parse_publish(spec_text)
            .map_err(|e| ArgError::value(spec, "-p, --publish", spec_text, &e))?;
        for m in maps {
            exposed.insert(m.container.clone(), json!({}));
            let entry = bindings.entry(m.container).or_insert_with(|| json!([]));
            if let Some(list) = entry.as_array_mut() {
                list.push(json!({"HostIp": m.host_ip, "HostPort": m.host_port}));
            }
        }
    }
    for e in &f.expose {
        let maps = values::parse_publish(e).map_err(|err| ArgError::value(spec, "--expose", e, &err))?;
        for m in maps {
            exposed.insert(m.container, json!({}));
        }
    }
    for v in &f.volume {
        values::check_volume(v).map_err(|e| ArgError::value(spec, "-v, --volume", v, &e))?;
    }
    let mut tmpfs = serde_json::Map::new();
    for t in &f.tmpfs {
        let (dst, opts) = t.split_once(':').unwrap_or((t.as_str(), ""));
        tmpfs.insert(dst.to_string(), json!(opts));
    }
    if let Some(size) = f.shm_size.as_deref() {
        let bytes = values::parse_ram(size).map_err(|e| ArgError::value(spec, "--shm-size", size, &e))?;
        host_config["ShmSize"] = json!(bytes);
    }
    host_config["Binds"] = json!(f.volume);
    let mut mounts = Vec::new();
    for m in &f.mount {
        mounts.push(super::volume::parse_mount_flag(m).map_err(|e| ArgError::value(spec, "--mount", m, &e))?);
    }
    host_config["Mounts"] = json!(mounts);
    host_config["VolumesFrom"] = json!(f.volumes_from);
    host_config["PortBindings"] = Value::Object(bindings);
    host_config["PublishAllPorts"] = json!(f.publish_all);
    host_config["Tmpfs"] = Value::Object(tmpfs);
    host_config["ExtraHosts"] = json!(f.add_host);
    host_config["Dns"] = json!(f.dns);
    host_config["DnsSearch"] = json!(f.dns_search);
    host_config["DnsOptions"] = json!(f.dns_option);
    host_config["GroupAdd"] = json!(f.group_add);
    if f.init {
        host_config["Init"] = json!(true);
    }
    let mut body = json!({
        "Image": image,
        "Tty": f.tty,
        "OpenStdin": f.interactive,
        "StdinOnce": f.interactive && !detach,
        "AttachStdin": has("stdin"),
        "AttachStdout": has("stdout"),
        "AttachStderr": has("stderr"),
        "Env": env,
        "Cmd": if cmd.is_empty() { Value::Null } else { json!(cmd) },
        "Entrypoint": entrypoint,
        "Labels": labels,
        "ExposedPorts": exposed,
        "HostConfig": host_config,
    });
    let set = |body: &mut Value, key: &str, v: &Option<String>| {
        if let Some(v) = v {
            body[key] = json!(v);
        }
    };
    set(&mut body, "Hostname", &f.hostname);
    if !f.network_alias.is_empty() || f.ip.is_some() {
        let net = f.network.clone().unwrap_or_else(|| "default".into());
        let mut endpoint = json!({ "Aliases": f.network_alias });
        if let Some(ip) = &f.ip {
            endpoint["IPAMConfig"] = json!({ "IPv4Address": ip });
        }
        body["NetworkingConfig"] = json!({ "EndpointsConfig": { net: endpoint } });
    }
    set(&mut body, "User", &f.user);
    set(&mut body, "WorkingDir", &f.workdir);
    set(&mut body, "StopSignal", &f.stop_signal);
    if let Some(t) = f.stop_timeout {
        body["StopTimeout"] = json!(t);
    }
    let health = super::health_flags::HealthFlags {
        cmd: f.health_cmd.clone(),
        interval: f.health_interval.clone(),
        timeout: f.health_timeout.clone(),
        retries: f.health_retries,
        start_period: f.health_start_period.clone(),
        start_interval: f.health_start_interval.clone(),
        none: f.no_healthcheck,
    };
    if let Some(h) = super::health_flags::healthcheck(&health).map_err(|e| ArgError::flag(spec, e))? {
        body["Healthcheck"] = h;
    }
    if let Some(name) = &f.name {
        if name.is_empty()
            || !name
                .trim_start_matches('/')
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(ArgError::flag(
                spec,
                format!("Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"),
            ));
        }
    }
    Ok(RunSpec {
        create: CreateSpec {
            name: f.name,
            image: f.args[0].clone(),
            pull,
            quiet: f.quiet,
            platform: f.platform.filter(|p| !p.is_empty()),
            body,
        },
        detach: f.detach,
        interactive: f.interactive,
        tty: f.tty,
        auto_remove: f.rm,
        detach_keys: f.detach_keys,
    })
}

fn validate_exec(
    spec: &VerbSpec,
    f: ExecFlags,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<ExecSpec, ArgError> {
    let env = collect_env(spec, &f.env_file, &f.env, lookup)?;
    let mut body = json!({
        "AttachStdin": f.interactive && !f.detach,
        "AttachStdout": !f.detach,
        "AttachStderr": !f.detach,
        "Tty": f.tty,
        "Env": env,
        "Cmd": f.args[1..].to_vec(),
        "Privileged": f.privileged,
    });
    if let Some(w) = &f.workdir {
        body["WorkingDir"] = json!(w);
    }
    if let Some(u) = &f.user {
        body["User"] = json!(u);
    }
    if let Some(k) = &f.detach_keys {
        body["DetachKeys"] = json!(k);
    }
    Ok(ExecSpec {
        container: f.args[0].clone(),
        detach: f.detach,
        interactive: f.interactive,
        tty: f.tty,
        detach_keys: f.detach_keys,
        body,
    })
}

/// Labels of a create body as a sorted map (used by tests and by `ps` filters).
pub fn labels_of(body: &Value) -> BTreeMap<String, String> {
    body.get("Labels")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_ok(v: &[&str]) -> Action {
        parse(&words(v), &no_env)
            .unwrap_or_else(|e| panic!("{v:?}: {}", e.message))
            .action
    }

    fn parse_err(v: &[&str]) -> ArgError {
        parse(&words(v), &no_env).unwrap_err()
    }

    fn pre(verb_name: &str, v: &[&str]) -> Vec<String> {
        match prepass(verb(verb_name).unwrap(), &words(v)).unwrap() {
            Prepassed::Words(w) => w,
            Prepassed::Help => panic!("help"),
        }
    }

    #[test]
    fn prepass_bundles_equals_and_passthrough() {
        assert_eq!(
            pre("run", &["-it", "busybox", "sh"]),
            words(&["--interactive", "--tty", "--", "busybox", "sh"])
        );
        assert_eq!(
            pre("run", &["-dit", "--name=web", "busybox"]),
            words(&[
                "--detach",
                "--interactive",
                "--tty",
                "--name",
                "web",
                "--",
                "busybox"
            ])
        );
        assert_eq!(
            pre("run", &["-eFOO=1", "-e=BAR=2", "-e", "BAZ", "img"]),
            words(&["--env", "FOO=1", "--env", "BAR=2", "--env", "BAZ", "--", "img"])
        );
        assert_eq!(
            pre("run", &["--rm", "busybox", "ls", "-la", "--rm", "--", "-x"]),
            words(&["--rm", "--", "busybox", "ls", "-la", "--rm", "--", "-x"])
        );
        assert_eq!(
            pre("run", &["--rm=false", "-d=true", "img"]),
            words(&["--detach", "--", "img"])
        );
        assert_eq!(
            pre("run", &["-h", "box", "-m64m", "img"]),
            words(&["--hostname", "box", "--memory", "64m", "--", "img"])
        );
        assert_eq!(
            pre("exec", &["-it", "web", "sh", "-c", "ls -l"]),
            words(&["--interactive", "--tty", "--", "web", "sh", "-c", "ls -l"])
        );
        assert_eq!(pre("rm", &["web", "-f"]), words(&["--force", "--", "web"]));
        assert_eq!(
            pre("ps", &["-aq", "--filter", "status=exited"]),
            words(&["--all", "--quiet", "--filter", "status=exited", "--"])
        );
        assert_eq!(pre("logs", &["-n5", "web"]), words(&["--tail", "5", "--", "web"]));
        assert_eq!(
            pre("top", &["web", "-eo", "pid"]),
            words(&["--", "web", "-eo", "pid"])
        );
        assert_eq!(pre("import", &["-", "img:1"]), words(&["--", "-", "img:1"]));
        assert_eq!(
            prepass(verb("run").unwrap(), &words(&["--help"])).unwrap(),
            Prepassed::Help
        );
    }

    #[test]
    fn prepass_errors_like_docker() {
        let e = parse_err(&["run", "--foo", "img"]);
        assert_eq!(e.code, 125);
        assert!(
            e.message
                .starts_with("unknown flag: --foo\n\nUsage:  shoal run [OPTIONS] IMAGE"),
            "{}",
            e.message
        );
        assert!(e.message.ends_with("Run 'shoal run --help' for more information"));
        let e = parse_err(&["run", "-Z", "img"]);
        assert!(
            e.message.starts_with("unknown shorthand flag: 'Z' in -Z"),
            "{}",
            e.message
        );
        let e = parse_err(&["ps", "-n", "abc"]);
        assert_eq!(e.code, 125);
        assert!(
            e.message
                .starts_with("invalid argument \"abc\" for \"-n, --last\" flag"),
            "{}",
            e.message
        );
        let e = parse_err(&["rm"]);
        assert_eq!(e.code, 1);
        assert!(
            e.message
                .starts_with("shoal: 'shoal rm' requires at least 1 argument"),
            "{}",
            e.message
        );
        let e = parse_err(&["rename", "a"]);
        assert!(
            e.message
                .starts_with("shoal: 'shoal rename' requires 2 arguments"),
            "{}",
            e.message
        );
        assert_eq!(parse_err(&["ps", "x"]).code, 1);
        assert_eq!(parse_err(&["frob"]).code, 1);
        assert_eq!(parse_err(&["run", "--name"]).code, 125);
        assert_eq!(parse_err(&["run", "-m", "12q", "img"]).code, 125);
        assert!(parse_err(&["run", "-m", "12q", "img"])
            .message
            .starts_with("invalid argument \"12q\" for \"-m, --memory\" flag: invalid suffix: 'q'"));
        assert!(parse_err(&["run", "--cpus", "abc", "img"]).message.starts_with(
            "invalid argument \"abc\" for \"--cpus\" flag: failed to parse abc as a rational number"
        ));
        assert!(parse_err(&["run", "--rm", "--restart", "always", "img"])
            .message
            .starts_with("Conflicting options: --restart and --rm"));
        assert!(parse_err(&["run", "--rm=maybe", "img"])
            .message
            .contains("strconv.ParseBool"));
        assert_eq!(parse_err(&["ps", "--format", "{{.ID"]).code, 1);
    }

    #[test]
    fn run_builds_the_create_body() {
        let Action::Run(r) = parse_ok(&[
            "run",
            "-dit",
            "--rm",
            "--name",
            "web",
            "-e",
            "A=1",
            "-w",
            "/srv",
            "-u",
            "1000:1000",
            "-h",
            "box",
            "--entrypoint",
            "/bin/sh",
            "-m",
            "64m",
            "--memory-swap",
            "-1",
            "--cpus",
            "1.5",
            "--pids-limit",
            "50",
            "--init",
            "--read-only",
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "MKNOD",
            "--network",
            "none",
            "-l",
            "tier=db",
            "--log-opt",
            "max-size=10m",
            "--log-opt",
            "max-file=3",
            "--stop-signal",
            "SIGINT",
            "--privileged",
            "busybox",
            "-c",
            "echo hi",
        ]) else {
            panic!("not a run")
        };
        assert!(r.detach && r.interactive && r.tty && r.auto_remove);
        assert_eq!(r.create.name.as_deref(), Some("web"));
        let b = &r.create.body;
        assert_eq!(b["Image"], "busybox");
        assert_eq!(b["Cmd"], json!(["-c", "echo hi"]));
        assert_eq!(b["Entrypoint"], json!(["/bin/sh"]));
        assert_eq!(b["Env"], json!(["A=1"]));
        assert_eq!(b["WorkingDir"], "/srv");
        assert_eq!(b["User"], "1000:1000");
        assert_eq!(b["Hostname"], "box");
        assert_eq!(b["StopSignal"], "SIGINT");
        assert_eq!(b["Tty"], true);
        assert_eq!(b["OpenStdin"], true);
        assert_eq!(b["AttachStdout"], false);
        let h = &b["HostConfig"];
        assert_eq!(h["AutoRemove"], true);
        assert_eq!(h["Memory"], 64 << 20);
        assert_eq!(h["MemorySwap"], -1);
        assert_eq!(h["NanoCpus"], 1_500_000_000i64);
        assert_eq!(h["PidsLimit"], 50);
        assert_eq!(h["Init"], true);
        assert_eq!(h["ReadonlyRootfs"], true);
        assert_eq!(h["CapAdd"], json!(["NET_ADMIN"]));
        assert_eq!(h["CapDrop"], json!(["MKNOD"]));
        assert_eq!(h["NetworkMode"], "none");
        assert_eq!(h["Privileged"], true);
        assert_eq!(
            h["LogConfig"],
            json!({"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}})
        );
        assert_eq!(labels_of(b)["tier"], "db");
    }

    #[test]
    fn ports_volumes_and_extras() {
        let Action::Run(r) = parse_ok(&[
            "run",
            "-p",
            "8080:80",
            "-p127.0.0.1:53:53/udp",
            "--expose",
            "9000",
            "-v",
            "data:/data",
            "-v",
            "/srv:/srv:ro",
            "--tmpfs",
            "/run:size=1m",
            "--add-host",
            "db:10.0.0.2",
            "--dns",
            "1.1.1.1",
            "--shm-size",
            "64m",
            "img",
        ]) else {
            panic!()
        };
        let b = &r.create.body;
        assert_eq!(
            b["ExposedPorts"],
            json!({"80/tcp": {}, "53/udp": {}, "9000/tcp": {}})
        );
        let h = &b["HostConfig"];
        assert_eq!(
            h["PortBindings"]["80/tcp"],
            json!([{"HostIp": "", "HostPort": "8080"}])
        );
        assert_eq!(
            h["PortBindings"]["53/udp"],
            json!([{"HostIp": "127.0.0.1", "HostPort": "53"}])
        );
        assert_eq!(h["Binds"], json!(["data:/data", "/srv:/srv:ro"]));
        assert_eq!(h["Tmpfs"], json!({"/run": "size=1m"}));
        assert_eq!(h["ExtraHosts"], json!(["db:10.0.0.2"]));
        assert_eq!(h["Dns"], json!(["1.1.1.1"]));
        assert_eq!(h["ShmSize"], 64 << 20);
        assert_eq!(parse_err(&["run", "-p", "x:80", "img"]).code, 125);
        assert_eq!(parse_err(&["run", "-v", "data:rel", "img"]).code, 125);
    }

    #[test]
    fn attached_run_defaults_and_restart() {
        let Action::Run(r) = parse_ok(&["run", "-i", "--restart", "on-failure:3", "img"]) else {
            panic!()
        };
        let b = &r.create.body;
        assert_eq!(b["AttachStdin"], true);
        assert_eq!(b["AttachStdout"], true);
        assert_eq!(b["StdinOnce"], true);
        assert_eq!(b["Cmd"], Value::Null);
        assert_eq!(
            b["HostConfig"]["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        let Action::Create(c) = parse_ok(&["create", "--entrypoint", "", "img"]) else {
            panic!()
        };
        assert_eq!(c.body["Entrypoint"], json!([""]));
        assert_eq!(c.body["AttachStdout"], false);
    }

    #[test]
    fn env_lookup_and_env_file() {
        let dir = std::env::temp_dir().join(format!("shoal-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("app.env");
        std::fs::write(&file, "# c\nX=1\nHOME\n").unwrap();
        let lookup = |k: &str| {
            if k == "HOME" {
                Some("/root".to_string())
            } else {
                None
            }
        };
        let args = words(&[
            "run",
            "--env-file",
            file.to_str().unwrap(),
            "-e",
            "HOME",
            "-e",
            "GONE",
            "img",
        ]);
        let Action::Run(r) = parse(&args, &lookup).unwrap().action else {
            panic!()
        };
        assert_eq!(r.create.body["Env"], json!(["X=1", "HOME=/root", "HOME=/root"]));
        let args = words(&["run", "--env-file", "/nonexistent/x.env", "img"]);
        assert!(parse(&args, &lookup)
            .unwrap_err()
            .message
            .starts_with("open /nonexistent/x.env: no such file"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn groups_globals_and_other_verbs() {
        let inv = parse(
            &words(&["-H", "unix:///tmp/x.sock", "container", "ls", "-a"]),
            &no_env,
        )
        .unwrap();
        assert_eq!(inv.host.as_deref(), Some("unix:///tmp/x.sock"));
        assert!(matches!(inv.action, Action::Ps(PsSpec { all: true, .. })));
        assert!(matches!(
            parse_ok(&["image", "ls", "-q"]),
            Action::Images(ImagesSpec { quiet: true, .. })
        ));
        assert!(matches!(
            parse_ok(&["image", "rm", "-f", "x"]),
            Action::Rmi { force: true, .. }
        ));
        match parse_ok(&["image", "inspect", "x"]) {
            Action::Inspect { kind, .. } => assert_eq!(kind.as_deref(), Some("image")),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_ok(&["--version"]), Action::ClientVersion);
        assert!(matches!(parse_ok(&["run", "--help"]), Action::Help(_)));
        assert_eq!(
            parse_ok(&["stop", "-t", "3", "a", "b"]),
            Action::Stop {
                containers: words(&["a", "b"]),
                timeout: Some(3),
                signal: None
            }
        );
        assert_eq!(
            parse_ok(&["kill", "-s", "HUP", "a"]),
            Action::Kill {
                containers: words(&["a"]),
                signal: Some("HUP".into())
            }
        );
        assert_eq!(
            parse_ok(&["rm", "-fv", "a"]),
            Action::Rm {
                containers: words(&["a"]),
                force: true,
                volumes: true
            }
        );
        match parse_ok(&["logs", "-ft", "--tail", "10", "--since", "5m", "web"]) {
            Action::Logs(l) => {
                assert!(l.follow && l.timestamps);
                assert_eq!(l.tail.as_deref(), Some("10"));
                assert_eq!(l.since.as_deref(), Some("5m"));
                assert_eq!(l.container, "web");
            }
            other => panic!("{other:?}"),
        }
        match parse_ok(&[
            "exec", "-it", "-e", "A=1", "-w", "/", "-u", "root", "web", "sh", "-c", "id -u",
        ]) {
            Action::Exec(e) => {
                assert_eq!(e.container, "web");
                assert_eq!(e.body["Cmd"], json!(["sh", "-c", "id -u"]));
                assert_eq!(e.body["AttachStdin"], true);
                assert_eq!(e.body["User"], "root");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_ok(&["import", "-c", "CMD [\"sh\"]", "-m", "msg", "-", "img:1"]),
            Action::Import {
                source: "-".into(),
                reference: Some("img:1".into()),
                changes: words(&["CMD [\"sh\"]"]),
                message: Some("msg".into())
            }
        );
        assert_eq!(
            parse_ok(&["load", "-i", "x.tar"]),
            Action::Load {
                input: Some("x.tar".into()),
                quiet: false
            }
        );
        assert_eq!(
            parse_ok(&["top", "web", "aux"]),
            Action::Top {
                container: "web".into(),
                ps_args: words(&["aux"])
            }
        );
        assert!(matches!(
            parse_ok(&["ps", "-l"]),
            Action::Ps(PsSpec {
                last: 1,
                all: true,
                ..
            })
        ));
        assert!(matches!(
            parse_ok(&["container", "prune", "-f"]),
            Action::Prune { force: true, .. }
        ));
    }

    /// Arbitrary words never panic the parser (a cheap deterministic fuzz).
    #[test]
    fn arbitrary_words_never_panic() {
        let pool = [
            "run",
            "exec",
            "ps",
            "-it",
            "-dit",
            "--rm",
            "-e",
            "--name=",
            "-",
            "--",
            "-p",
            "x:y",
            "-m",
            "1q",
            "--cpus",
            ".",
            "-t",
            "-n",
            "--format",
            "{{",
            "image",
            "container",
            "ls",
            "-H",
            "--help",
            "=",
            "-e=",
            "--restart",
            "on-failure:",
            "-v",
            ":",
            "top",
            "logs",
            "inspect",
            "--type",
            "é",
            "-é",
            "--log-opt",
        ];
        let mut seed: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = (seed % 7) as usize;
            let mut v = Vec::new();
            let mut x = seed;
            for _ in 0..n {
                v.push(pool[(x % pool.len() as u64) as usize].to_string());
                x = x.rotate_left(9).wrapping_mul(6364136223846793005);
            }
            let _ = parse(&v, &no_env);
        }
    }

    /// Every flag in the tables is accepted by its argh struct (the two phases agree).
    #[test]
    fn flag_tables_match_argh_structs() {
        for spec in VERBS {
            for f in spec.flags {
                let mut args = Vec::new();
                let long = format!("--{}", f.long);
                args.push(long.as_str());
                if f.kind != FlagKind::Bool {
                    args.push("1");
                }
                let positionals: &[&str] = match spec.arity {
                    Arity::None => &[],
                    Arity::Exactly(2) | Arity::AtLeast(2) => &["a", "b"],
                    _ => &["a"],
                };
                args.extend_from_slice(positionals);
                let mut full = vec![if spec.name == "image-inspect" {
                    "image"
                } else if spec.name == "prune" {
                    "container"
                } else {
                    spec.name
                }];
                if spec.name == "image-inspect" {
                    full.push("inspect");
                }
                if spec.name == "prune" {
                    full.push("prune");
                }
                full.extend(args);
                let r = parse(&words(&full), &no_env);
                if let Err(e) = &r {
                    // Only value validation may reject "1" (e.g. --restart 1, --attach 1).
                    assert!(
                        !e.message.contains("Unrecognized") && !e.message.starts_with("unknown"),
                        "{full:?}: {}",
                        e.message
                    );
                }
            }
        }
    }
}
