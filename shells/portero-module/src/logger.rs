//! The `log` crate's records, into Envoy's log (at Envoy's level).

use crate::abi;

struct EnvoyLogger;

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        abi::log_enabled(level_of(metadata.level()))
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        abi::log(
            level_of(record.level()),
            &format!("portero: {}", record.args()),
        );
    }

    fn flush(&self) {}
}

fn level_of(level: log::Level) -> u32 {
    match level {
        log::Level::Error => abi::LOG_ERROR,
        log::Level::Warn => abi::LOG_WARN,
        log::Level::Info => abi::LOG_INFO,
        log::Level::Debug | log::Level::Trace => abi::LOG_DEBUG,
    }
}

static LOGGER: EnvoyLogger = EnvoyLogger;

/// Makes Envoy's log the `log` crate's (once per process).
pub fn install() {
    let _ = log::set_logger(&LOGGER).map(|()| log::set_max_level(log::LevelFilter::Info));
}
