//! Client verbs: parse docker-shaped arguments, call the daemon's Docker Engine API, print.
//!
//! Layers: [`args`] turns words into one validated [`args::Action`] (pure), [`commands`]
//! carries it out against the API through [`crate::api::client`], and the pure helpers
//! [`format`], [`tables`], [`template`] and [`values`] shape input and output like docker's.
//! Only [`main`] turns errors into exit codes.

pub mod args;
pub mod build;
pub mod commands;
pub mod compose;
pub mod events;
pub mod format;
pub mod health_flags;
pub mod network;
pub mod registry;
pub mod session;
pub mod system;
pub mod tables;
pub mod template;
pub mod term;
pub mod values;
pub mod volume;

use crate::api::client::{self, Client, HOST_ENV};

/// The `-H HOST` / `--host=HOST` / `-HHOST` words before a verb: the host, and where the verb
/// starts.
pub(crate) fn leading_host(argv: &[String]) -> (Option<String>, usize) {
    let mut host = None;
    let mut i = 0;
    while let Some(a) = argv.get(i) {
        if a == "-H" || a == "--host" {
            host = argv.get(i + 1).cloned();
            i += 2;
        } else if let Some(h) = a.strip_prefix("--host=").or_else(|| a.strip_prefix("-H=")) {
            host = Some(h.to_string());
            i += 1;
        } else if a.starts_with("-H") && a.len() > 2 {
            host = Some(a[2..].to_string());
            i += 1;
        } else {
            break;
        }
    }
    (host, i)
}

/// Run `f` against the daemon named by `-H` (`host`) or SHOAL_HOST; an error is printed and
/// exits 1, as for the top-level verbs. Shared by the verb groups (network, volume, ...).
pub(crate) fn with_client<E: std::fmt::Display>(
    host: Option<&str>,
    f: impl FnOnce(&Client) -> Result<i32, E>,
) -> i32 {
    let env = std::env::var(HOST_ENV).ok();
    let socket = match client::resolve_host(host, env.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    match f(&Client::new(socket)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// Run a client verb; `args` excludes the program name. Returns the process exit code.
pub fn main(argv: &[String]) -> i32 {
    if let Some(code) = network::main(argv) {
        return code;
    }
    if let Some(code) = compose::main(argv) {
        return code;
    }
    if let Some(code) = volume::main(argv) {
        return code;
    }
    if let Some(code) = system::main(argv) {
        return code;
    }
    if let Some(code) = events::main(argv) {
        return code;
    }
    if let Some(code) = registry::main(argv) {
        return code;
    }
    let env = |k: &str| std::env::var(k).ok();
    let inv = match args::parse(argv, &env) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("{}", e.message);
            return e.code;
        }
    };
    let is_run = matches!(inv.action, args::Action::Run(_) | args::Action::Create(_));
    let socket = match client::resolve_host(inv.host.as_deref(), std::env::var(HOST_ENV).ok().as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return if is_run { 125 } else { 1 };
        }
    };
    let client = Client::new(socket);
    match commands::execute(&client, inv.action) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e.message) => 0,
        Err(e) => {
            eprintln!("{}", e.message);
            e.code
        }
    }
}

/// Writing to a closed pipe (`shoal ps | head -1`) ends the output, it is not a failure.
fn is_broken_pipe(message: &str) -> bool {
    message.contains("Broken pipe")
}
