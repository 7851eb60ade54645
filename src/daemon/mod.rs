//! The engine: API socket, container records, images, start-up and shut-down.

/// `shoal daemon [flags]`; returns the exit code.
pub fn main(_args: &[String]) -> i32 {
    125
}
