//! The one binary: its first word picks the role.
//!
//! - `shoal daemon ...`  the engine (API socket, containers, images)
//! - `shoal shim ...`    one per container, re-executed by the daemon; never typed by users
//! - anything else       a client verb speaking the Docker Engine API to the daemon
//!
//! Errors become exit codes here only (125 for a daemon/client error, as docker does).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("daemon") => shoal::daemon::main(&args[2..]),
        Some("shim") => shoal::runtime::shim::main(&args[2..]),
        // Hidden: one member of a replicated KV store, for end-to-end raft tests.
        Some("raft-node") => shoal::cluster::node_main(&args[2..]),
        _ => shoal::cli::main(&args[1..]),
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}
