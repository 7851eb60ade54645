//! The one binary: its first word picks the role.
//!
//! - `shoal daemon ...`  the engine (API socket, containers, images)
//! - `shoal shim ...`    one per container, re-executed by the daemon; never typed by users
//! - `shoal init`      PID 1 of a firmware image (also when the binary is named `init`)
//! - `shoal modprobe`   (also as /sbin/modprobe) loads a kernel module by name or alias
//! - `shoal check-config` kernel features shoal needs, present or missing
//! - `shoal system poweroff|reboot` asks shoal's init to stop containers and power off
//! - anything else       a client verb speaking the Docker Engine API to the daemon
//!
//! Errors become exit codes here only (125 for a daemon/client error, as docker does).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|name| name.to_str());
    match invoked_as {
        Some("init") => return ExitCode::from(shoal::init::main(&args[1..]).clamp(0, 255) as u8),
        // The kernel's module loader helper on a firmware image (/sbin/modprobe).
        Some("modprobe") => {
            return ExitCode::from(shoal::init::modprobe::main(&args[1..]).clamp(0, 255) as u8)
        }
        _ => {}
    }
    let code = match args.get(1).map(String::as_str) {
        Some("modprobe") => shoal::init::modprobe::main(&args[2..]),
        Some("init") => shoal::init::main(&args[2..]),
        Some("check-config") => shoal::init::check_config::main(&args[2..]),
        Some("self-test") => shoal::init::selftest::main(&args[2..]),
        Some("daemon") => shoal::daemon::main(&args[2..]),
        Some("admin") => shoal::admin::cli_main(&args[2..]),
        // Ask shoal's init (PID 1) to stop containers gracefully, sync and power off/reboot.
        Some("system") if args.get(2).is_some_and(|v| v == "poweroff") => {
            shoal::init::request(shoal::init::Shutdown::PowerOff)
        }
        Some("system") if args.get(2).is_some_and(|v| v == "reboot") => {
            shoal::init::request(shoal::init::Shutdown::Reboot)
        }
        Some("shim") => shoal::runtime::shim::main(&args[2..]),
        // Hidden: one member of a replicated KV store, for end-to-end raft tests.
        Some("raft-node") => shoal::cluster::node_main(&args[2..]),
        _ => shoal::cli::main(&args[1..]),
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}
