//! Logging: tracing to stderr and to daily rolling files, for the binaries to set up.
//! Secrets never reach these logs: they are `Secret`s (redacted in `Debug`) and URLs
//! are logged without their query (see `engine::redacted`).

use std::io::{IsTerminal, Write};
use std::path::Path;

pub use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
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
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // The log thread writes what it has drained, then flushes: buffered, that is
    // one write per batch of lines instead of one per line, and (but for a
    // terminal's coloured lines) none on the threads that logged.
    let (installed, guard) = if std::io::stderr().is_terminal() {
        // A person watching: colours on the terminal, at once; plain text in the file.
        let (file_writer, guard) =
            tracing_appender::non_blocking(std::io::BufWriter::new(appender));
        let installed = registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .with(fmt::layer().with_ansi(false).with_writer(file_writer))
            .try_init();
        (installed, guard)
    } else {
        // A service manager or a pipe: each line formatted once, plain, and
        // written to both by the log thread.
        let (writer, guard) =
            tracing_appender::non_blocking(Both::new(appender, std::io::stderr()));
        let installed = registry
            .with(fmt::layer().with_ansi(false).with_writer(writer))
            .try_init();
        (installed, guard)
    };
    installed.map_err(|e| Error::Config(format!("logging was already set up: {e}")))?;
    Ok(guard)
}

/// The log file and stderr, each buffered, for the log thread. A destination
/// that fails (a full disk, a closed stderr) misses the line; the other still
/// gets it and is still flushed (the log thread gives up on a batch, and skips
/// its flush, at the first error it is handed).
struct Both<A: Write, B: Write> {
    first: std::io::BufWriter<A>,
    second: std::io::BufWriter<B>,
}

impl<A: Write, B: Write> Both<A, B> {
    fn new(first: A, second: B) -> Self {
        Self {
            first: std::io::BufWriter::new(first),
            second: std::io::BufWriter::new(second),
        }
    }
}

impl<A: Write, B: Write> Write for Both<A, B> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.first.write_all(buf);
        let _ = self.second.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.first.flush();
        let _ = self.second.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A destination that refuses every write.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn both_get_every_line_once_flushed_and_a_broken_one_does_not_stop_the_other() {
        let mut both = Both::new(Vec::new(), Vec::new());
        both.write_all(b"one\n").expect("write");
        both.write_all(b"two\n").expect("write");
        assert!(both.first.get_ref().is_empty(), "buffered until the flush");
        both.flush().expect("flush");
        assert_eq!(both.first.get_ref(), b"one\ntwo\n");
        assert_eq!(both.second.get_ref(), b"one\ntwo\n");

        // Either side broken: the other gets every line, also one longer
        // than its buffer, and no error reaches the log thread.
        let long = vec![b'x'; 20_000];
        let mut expected = b"line\n".to_vec();
        expected.extend_from_slice(&long);
        let mut pair = Both::new(Broken, Vec::new());
        pair.write_all(b"line\n").expect("write");
        pair.write_all(&long).expect("write");
        pair.flush().expect("flush");
        assert_eq!(pair.second.get_ref(), &expected);
        let mut pair = Both::new(Vec::new(), Broken);
        pair.write_all(b"line\n").expect("write");
        pair.write_all(&long).expect("write");
        pair.flush().expect("flush");
        assert_eq!(pair.first.get_ref(), &expected);
    }
}
