//! Logging: tracing to stderr and to daily rolling files, for the binaries to set up.
//! Secrets never reach these logs: they are `Secret`s (redacted in `Debug`) and URLs
//! are logged without their query (see `engine::redacted`).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, NaiveDate, Utc};

pub use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::{Error, Result};

/// Logs to stderr and to `<log_dir>/<file_prefix>.YYYY-MM-DD.log` (kept 14
/// days; the directory `0700`, the files `0600` on Unix, see
/// [`crate::private_files`]). Keep the returned guard alive: dropping it
/// flushes the file writer. `RUST_LOG` tunes the filter (default `info`).
pub fn init(log_dir: &Path, file_prefix: &str) -> Result<WorkerGuard> {
    let appender = private_appender(log_dir, file_prefix, Box::new(SystemTime::now))?;
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

/// Where [`DailyFiles`] reads the time (the tests move it on).
type Clock = Box<dyn Fn() -> SystemTime + Send>;

/// The suffix of the log files.
const SUFFIX: &str = "log";

/// The daily rolling appender of `init`, its files created `0600`.
fn private_appender(
    log_dir: &Path,
    file_prefix: &str,
    clock: Clock,
) -> Result<PrivateDaily<RollingFileAppender>> {
    crate::private_files::create_dir(log_dir)?;
    let mut files = DailyFiles {
        dir: log_dir.to_owned(),
        prefix: file_prefix.to_owned(),
        made: None,
        clock,
    };
    // The appender opens today's file as it is built: create it first.
    files.prepare_today();
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(Rotation::DAILY)
        .filename_prefix(file_prefix)
        .filename_suffix(SUFFIX)
        // Today's file already exists when the appender prunes (made just
        // before), so keeping 14 takes 15 here.
        .max_log_files(15)
        .build(log_dir)
        .map_err(|e| Error::Config(format!("opening log files in {}: {e}", log_dir.display())))?;
    // Midnight may have passed while it was built.
    files.prepare_today();
    Ok(PrivateDaily {
        inner: appender,
        files,
    })
}

/// The days' log file names, made private before the appender opens them.
///
/// tracing-appender creates each day's file with the default mode (`0666`
/// less the process umask, so usually `0644`) and has no option for it; the
/// umask is process-wide and not the library's to change. It opens the file
/// in append mode, creating it only when missing, so a file made `0600` before
/// the appender rolls over to it keeps that mode.
struct DailyFiles {
    dir: PathBuf,
    prefix: String,
    /// The UTC day whose file was last made private.
    made: Option<NaiveDate>,
    clock: Clock,
}

impl DailyFiles {
    /// The file tracing-appender writes on `day` (UTC), the same name it forms
    /// (`<prefix>.YYYY-MM-DD.<suffix>`; checked against it in the tests).
    fn path(&self, day: NaiveDate) -> PathBuf {
        self.dir.join(format!(
            "{}.{}.{SUFFIX}",
            self.prefix,
            day.format("%Y-%m-%d")
        ))
    }

    /// Makes today's file private once per day: created `0600` when missing,
    /// tightened when it exists with a wider mode (a file tracing-appender
    /// created itself, when midnight passed between our clock and its own).
    /// Failures are not fatal: the directory is `0700` anyway, and the log
    /// thread has nowhere to report them.
    fn prepare_today(&mut self) {
        let today = DateTime::<Utc>::from((self.clock)()).date_naive();
        if self.made == Some(today) {
            return;
        }
        self.made = Some(today);
        let path = self.path(today);
        let _ = crate::private_files::create_file(&path);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::symlink_metadata(&path)
                && meta.is_file()
                && meta.permissions().mode() & 0o077 != 0
            {
                let private = std::fs::Permissions::from_mode(crate::private_files::FILE_MODE);
                let _ = std::fs::set_permissions(&path, private);
            }
        }
    }
}

/// A daily rolling appender whose every file is `0600`: each day's file is
/// made before the appender rolls over to it (see [`DailyFiles`]).
struct PrivateDaily<W: Write> {
    inner: W,
    files: DailyFiles,
}

impl<W: Write> Write for PrivateDaily<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Before: the usual case, the file exists before the appender rolls to
        // it. After: in case midnight passed between the two clocks.
        self.files.prepare_today();
        let written = self.inner.write(buf);
        self.files.prepare_today();
        written
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
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
    fn the_file_made_in_advance_is_the_one_tracing_appender_writes() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut plain = tracing_appender::rolling::Builder::new()
            .rotation(Rotation::DAILY)
            .filename_prefix("orki-test")
            .filename_suffix(SUFFIX)
            .build(tmp.path())
            .expect("appender");
        plain.write_all(b"x\n").expect("write");
        plain.flush().expect("flush");
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        let files = DailyFiles {
            dir: tmp.path().to_owned(),
            prefix: "orki-test".into(),
            made: None,
            clock: Box::new(SystemTime::now),
        };
        let today = files.path(Utc::now().date_naive());
        assert_eq!(names, [today.file_name().expect("name")]);
    }

    #[cfg(unix)]
    #[test]
    fn every_log_file_is_private_on_the_first_day_and_the_next() {
        use std::os::unix::fs::PermissionsExt;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};

        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        let tmp = tempfile::tempdir().expect("temp dir");
        let logs = tmp.path().join("logs");
        let days_ahead = Arc::new(AtomicU64::new(0));
        let ahead = Arc::clone(&days_ahead);
        let clock: Clock = Box::new(move || {
            SystemTime::now()
                + std::time::Duration::from_secs(86_400 * ahead.load(Ordering::SeqCst))
        });
        // The test process has the usual umask (022): tracing-appender alone
        // would make the directory 0755 and the files 0644.
        let mut appender = private_appender(&logs, "orki-test", clock).expect("appender");
        appender.write_all(b"one\n").expect("write");
        appender.flush().expect("flush");
        assert_eq!(mode(&logs), 0o700);
        let today = Utc::now().date_naive();
        let first = appender.files.path(today);
        assert_eq!(
            std::fs::read(&first).expect("read"),
            b"one\n",
            "the appender writes the file made for it"
        );
        assert_eq!(mode(&first), 0o600);

        // The next day (only this clock moves: tracing-appender's cannot be
        // moved from outside): its file is made private before the appender
        // rolls over to it.
        days_ahead.store(1, Ordering::SeqCst);
        appender.write_all(b"two\n").expect("write");
        let second = appender.files.path(today + chrono::Days::new(1));
        assert_eq!(mode(&second), 0o600);
        // A file for the day after that, there already and readable (made by
        // tracing-appender itself when midnight passed between the clocks):
        // tightened.
        let third = appender.files.path(today + chrono::Days::new(2));
        std::fs::write(&third, b"").expect("write");
        std::fs::set_permissions(&third, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        days_ahead.store(2, Ordering::SeqCst);
        appender.write_all(b"three\n").expect("write");
        assert_eq!(mode(&third), 0o600);
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
