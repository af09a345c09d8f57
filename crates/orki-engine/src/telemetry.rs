//! Logging: tracing to stderr and to daily rolling files, for the binaries to set up.
//! Secrets never reach these logs: they are `Secret`s (redacted in `Debug`) and URLs
//! are logged without their query (see `engine::redacted`).

use std::io::IsTerminal;
use std::path::Path;

pub use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::{Error, Result};

/// Logs to stderr and to `<log_dir>/<file_prefix>.YYYY-MM-DD` (kept 14 days).
/// Keep the returned guard alive: dropping it flushes the file writer.
/// `RUST_LOG` tunes the filter (default `info`).
pub fn init(log_dir: &Path, file_prefix: &str) -> Result<WorkerGuard> {
    std::fs::create_dir_all(log_dir).map_err(|source| Error::Io {
        context: format!("creating the log directory {}", log_dir.display()),
        source,
    })?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(file_prefix)
        .filename_suffix("log")
        .max_log_files(14)
        .build(log_dir)
        .map_err(|e| Error::Config(format!("opening log files in {}: {e}", log_dir.display())))?;
    // The writer thread writes what it has drained, then flushes: buffered,
    // that is one write to the file per batch of lines instead of one per line.
    let (file_writer, guard) = tracing_appender::non_blocking(std::io::BufWriter::new(appender));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if std::io::stderr().is_terminal() {
        // A person watching: colours on the terminal, plain text in the file.
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .with(fmt::layer().with_ansi(false).with_writer(file_writer))
            .try_init()
    } else {
        // A service manager or a pipe: each line formatted once, plain, to both.
        registry
            .with(
                fmt::layer()
                    .with_ansi(false)
                    .with_writer(std::io::stderr.and(file_writer)),
            )
            .try_init()
    };
    installed.map_err(|e| Error::Config(format!("logging was already set up: {e}")))?;
    Ok(guard)
}
