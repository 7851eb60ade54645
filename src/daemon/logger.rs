//! A small logger: `LEVEL message` lines on stderr, where init systems collect them.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    level: LevelFilter,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }
    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            let level = match record.level() {
                Level::Error => "error",
                Level::Warn => "warn",
                Level::Info => "info",
                Level::Debug => "debug",
                Level::Trace => "trace",
            };
            eprintln!("{} {level} {}", crate::timefmt::now(), record.args());
        }
    }
    fn flush(&self) {}
}

/// Install the logger; `level` is error, warn, info, debug or trace.
pub fn init(level: &str) -> Result<(), String> {
    let level: LevelFilter = level
        .parse()
        .map_err(|_| format!("invalid log level {level:?}"))?;
    let logger = Box::leak(Box::new(StderrLogger { level }));
    log::set_logger(logger).map_err(|e| e.to_string())?;
    log::set_max_level(level);
    Ok(())
}
