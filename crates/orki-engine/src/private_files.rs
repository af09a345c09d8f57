//! Files only the owner can read. The data directory holds every verify
//! token, payload and response (the database, its write-ahead log, the logs),
//! so on Unix its directories are `0700` and its files `0600`: whatever the
//! process umask, files are created with that mode (`create_dir`,
//! `create_file`, and the log files through `telemetry`), and what an older
//! version left readable is tightened at start ([`secure`]).
//!
//! A umask is process-wide, so the library never relies on (or changes) it.
//! Elsewhere than Unix these functions only create what is missing.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The mode of every directory the engine creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// The mode of every file the engine creates.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and its missing parents) with mode `0700`; an existing one
/// is left as it is (see [`secure`]).
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir).map_err(|source| Error::Io {
        context: format!("creating the directory {}", dir.display()),
        source,
    })
}

/// Creates `path` as an empty file with mode `0600` unless it exists (then it
/// is not opened at all: closing a descriptor of a database file would drop
/// this process's locks on it).
pub(crate) fn create_file(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(Error::Io {
            context: format!("creating {}", path.display()),
            source,
        }),
    }
}

/// Writes `bytes` to `path` as a whole, with mode `0600`: to a temporary file
/// beside it first, then renamed over it, so a reader sees the old contents or
/// the new, never a part.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;

    let io = |source| Error::Io {
        context: format!("writing {}", path.display()),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    let mut file = options.open(&tmp).map_err(io)?;
    // A temporary file left by an older run may have had another mode.
    #[cfg(unix)]
    file.set_permissions(
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(FILE_MODE),
    )
    .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Makes each of `dirs` private: created `0700` when missing; an existing one
/// loses its group and other permission bits, and so does every regular file
/// directly in it (`0644` becomes `0600`). Symbolic links are not followed.
/// Returns what it tightened, to log once logging is set up (call this first,
/// so that the log files are tightened before the logger opens one).
///
/// The directories must be Orki's own (the data directory, the log
/// directory): a shared directory such as `/tmp` (sticky bit) is refused.
pub fn secure<P: AsRef<Path>>(dirs: &[P]) -> Result<Tightened> {
    let mut tightened = Vec::new();
    for dir in dirs {
        let dir = dir.as_ref();
        create_dir(dir)?;
        #[cfg(unix)]
        secure_dir(dir, &mut tightened)?;
    }
    Ok(Tightened(tightened))
}

/// What [`secure`] tightened.
#[derive(Debug, Default, PartialEq, Eq)]
#[must_use = "log it once logging is set up"]
pub struct Tightened(pub Vec<PathBuf>);

impl Tightened {
    /// Logs one line listing what was tightened, if anything.
    pub fn log(&self) {
        if self.0.is_empty() {
            return;
        }
        let paths: Vec<String> = self.0.iter().map(|p| p.display().to_string()).collect();
        tracing::info!(
            count = self.0.len(),
            paths = %paths.join(", "),
            "tightened permissions: only the owner can read or enter these now"
        );
    }
}

#[cfg(unix)]
fn secure_dir(dir: &Path, tightened: &mut Vec<PathBuf>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;

    let io = |what: &str, path: &Path, source| Error::Io {
        context: format!("{what} {}", path.display()),
        source,
    };
    let meta = std::fs::metadata(dir).map_err(|e| io("reading the permissions of", dir, e))?;
    if !meta.is_dir() {
        return Err(Error::Config(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if meta.permissions().mode() & 0o1000 != 0 {
        return Err(Error::Config(format!(
            "{} is a shared directory (like /tmp); choose a directory of Orki Webhooks' own",
            dir.display()
        )));
    }
    tighten(dir, meta.permissions().mode(), tightened)?;
    let entries = std::fs::read_dir(dir).map_err(|e| io("listing", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io("listing", dir, e))?;
        // The entry itself, not what a symbolic link points at.
        let meta = entry
            .metadata()
            .map_err(|e| io("reading the permissions of", &entry.path(), e))?;
        if meta.file_type().is_file() {
            tighten(&entry.path(), meta.permissions().mode(), tightened)?;
        }
    }
    Ok(())
}

/// Clears the group and other bits of `path` if any is set.
#[cfg(unix)]
fn tighten(path: &Path, mode: u32, tightened: &mut Vec<PathBuf>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;

    if mode & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7700)).map_err(
        |source| Error::Io {
            context: format!("making {} private", path.display()),
            source,
        },
    )?;
    tightened.push(path.to_owned());
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o7777
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn created_directories_and_files_are_private_whatever_the_umask() {
        // The test process has the usual umask (022): without the modes given
        // at creation these would be 0755 and 0644.
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("a/b");
        create_dir(&dir).expect("create");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700, "missing parents too");
        let file = dir.join("f");
        create_file(&file).expect("create");
        assert_eq!(mode(&file), 0o600);
        // An existing file is left alone (not truncated, not opened).
        std::fs::write(&file, b"kept").expect("write");
        create_file(&file).expect("exists");
        assert_eq!(std::fs::read(&file).expect("read"), b"kept");
    }

    #[test]
    fn a_written_file_is_private_and_replaced_whole() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("secret");
        write_file(&path, b"first").expect("write");
        assert_eq!(mode(&path), 0o600);
        chmod(&path, 0o644);
        std::fs::write(tmp.path().join("secret.tmp"), b"left over").expect("write");
        chmod(&tmp.path().join("secret.tmp"), 0o644);
        write_file(&path, b"second").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        assert_eq!(mode(&path), 0o600);
        assert!(!tmp.path().join("secret.tmp").exists());
    }

    #[test]
    fn secure_tightens_what_an_older_version_left_readable_and_nothing_else() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = tmp.path().join("data");
        let logs = data.join("logs");
        std::fs::create_dir_all(&logs).expect("dirs");
        chmod(&data, 0o755);
        chmod(&logs, 0o755);
        let db = data.join("orki-webhooks.redb");
        let log = logs.join("orki-webhooksd.2026-12-01.log");
        let script = data.join("owner-exec");
        for f in [&db, &log, &script] {
            std::fs::write(f, b"x").expect("write");
        }
        chmod(&db, 0o644);
        chmod(&log, 0o640);
        chmod(&script, 0o755);
        // A link to a file outside: the link is not followed.
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"x").expect("write");
        chmod(&outside, 0o644);
        std::os::unix::fs::symlink(&outside, data.join("link")).expect("symlink");

        let mut tightened = secure(&[&data, &logs]).expect("secure").0;
        tightened.sort();
        let mut expected = vec![
            data.clone(),
            logs.clone(),
            db.clone(),
            log.clone(),
            script.clone(),
        ];
        expected.sort();
        assert_eq!(tightened, expected);
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&logs), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&log), 0o600);
        assert_eq!(mode(&script), 0o700, "the owner's bits are kept");
        assert_eq!(mode(&outside), 0o644, "a link's target is not touched");

        // Already private: nothing to do, nothing logged.
        assert!(secure(&[&data, &logs]).expect("secure").0.is_empty());
        // Missing: created private.
        let fresh = tmp.path().join("fresh");
        assert!(secure(&[&fresh]).expect("secure").0.is_empty());
        assert_eq!(mode(&fresh), 0o700);
    }

    #[test]
    fn a_shared_directory_is_refused() {
        let tmp = tempfile::tempdir().expect("temp dir");
        chmod(tmp.path(), 0o1777);
        let err = secure(&[tmp.path()]).expect_err("sticky");
        assert!(err.to_string().contains("shared directory"), "{err}");
        assert_eq!(mode(tmp.path()), 0o1777, "left as it was");
    }
}
