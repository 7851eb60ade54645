//! Client verbs: parse docker-shaped arguments, call the daemon's Docker Engine API, print.

pub mod args;
pub mod format;
pub mod session;
pub mod tables;
pub mod template;
pub mod term;
pub mod values;

/// Run a client verb; `args` excludes the program name. Returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    eprintln!("shoal: unknown command {:?}", args.first());
    125
}
