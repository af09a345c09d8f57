//! The real `orki-webhooksd` binary as a child process, for crash and shutdown tests.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Test credentials passed through the environment overrides.
pub const INGEST_KEY: &str = "ik_daemon_ingest_key_0123456789";
/// Test credentials passed through the environment overrides.
pub const ADMIN_TOKEN: &str = "at_daemon_admin_token_0123456789";

/// Where cargo put `orki-webhooksd` (built by `cargo test` with the workspace).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/it-<hash> → target/<profile>/orki-webhooksd
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let bin = dir.join("orki-webhooksd");
    assert!(
        bin.exists(),
        "{} is missing: run the whole suite with `cargo test` from the repository root (it builds the binary)",
        bin.display()
    );
    bin
}

/// Where the daemon started on `data_dir` writes its stderr (a file in it).
pub fn stderr_path(data_dir: &Path) -> PathBuf {
    data_dir.join("stderr.txt")
}

/// How to start the daemon, beyond its arguments.
pub struct Launch<'a> {
    /// Where its stderr goes (not a terminal, as under a service manager).
    pub stderr: PathBuf,
    /// Pass [`INGEST_KEY`] and [`ADMIN_TOKEN`] through the environment;
    /// without them it uses (and on first start makes) the stored ones.
    pub env_credentials: bool,
    /// More `serve` arguments.
    pub extra: &'a [&'a str],
}

/// A running `orki-webhooksd serve`.
pub struct Daemon {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Every line it printed on stdout so far.
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts the daemon on `data_dir` with port 0 and waits for its "listening" line.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let launch = Launch {
            stderr: stderr_path(data_dir),
            env_credentials: true,
            extra,
        };
        Self::spawn(Command::new(binary()), data_dir, launch).await
    }

    /// Like [`Daemon::start`], in the network namespace `netns` (`ip netns
    /// exec`, which also shows it that namespace's `/sys/class/net`).
    pub async fn start_in_netns(netns: &str, data_dir: &Path, extra: &[&str]) -> Self {
        let mut ip = Command::new("ip");
        ip.args(["netns", "exec", netns]).arg(binary());
        let launch = Launch {
            stderr: stderr_path(data_dir),
            env_credentials: true,
            extra,
        };
        Self::spawn(ip, data_dir, launch).await
    }

    /// Like [`Daemon::start`], as `launch` says: `data_dir` need not exist.
    pub async fn launch(data_dir: &Path, launch: Launch<'_>) -> Self {
        Self::spawn(Command::new(binary()), data_dir, launch).await
    }

    /// The lines it printed on stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout lines").clone()
    }

    /// Like [`Daemon::start`], but no file the daemon writes may grow past
    /// `blocks` (the shell's `ulimit -f` units): a disk that fills up. The
    /// signal such a write would raise is ignored, so the write fails instead.
    /// Only the soft limit is set, so `prlimit` can lift it (room again).
    pub async fn start_with_file_limit(data_dir: &Path, extra: &[&str], blocks: u32) -> Self {
        Self::start_after(
            &format!("trap '' XFSZ; ulimit -S -f {blocks}"),
            data_dir,
            extra,
        )
        .await
    }

    /// Like [`Daemon::start`], with at most `files` open files (soft and hard
    /// limit, so the daemon cannot raise it), as on a machine whose limit is low.
    pub async fn start_with_open_file_limit(data_dir: &Path, extra: &[&str], files: u32) -> Self {
        Self::start_after(&format!("ulimit -n {files}"), data_dir, extra).await
    }

    /// Starts the daemon from a shell that runs `prelude` first (limits).
    async fn start_after(prelude: &str, data_dir: &Path, extra: &[&str]) -> Self {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("{prelude}; exec \"$0\" \"$@\""))
            .arg(binary());
        let launch = Launch {
            stderr: stderr_path(data_dir),
            env_credentials: true,
            extra,
        };
        Self::spawn(sh, data_dir, launch).await
    }

    async fn spawn(mut command: Command, data_dir: &Path, launch: Launch<'_>) -> Self {
        // Not a terminal, as under a service manager: see `stderr_path`.
        let stderr = std::fs::File::create(&launch.stderr).expect("stderr file");
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(launch.extra)
            .env_remove("ORKI_INGEST_KEY")
            .env_remove("ORKI_ADMIN_TOKEN")
            .env("RUST_LOG", "debug");
        if launch.env_credentials {
            command
                .env("ORKI_INGEST_KEY", INGEST_KEY)
                .env("ORKI_ADMIN_TOKEN", ADMIN_TOKEN);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn orki-webhooksd");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let printed = Arc::new(Mutex::new(Vec::new()));
        let base = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                printed.lock().expect("stdout lines").push(line.clone());
                if let Some(rest) = line.split("listening on ").nth(1) {
                    return rest.trim().to_owned();
                }
            }
            panic!("orki-webhooksd exited before listening");
        })
        .await
        .expect("orki-webhooksd printed its address in time");
        // Keep draining stdout so the child never blocks on a full pipe.
        let keep = Arc::clone(&printed);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                keep.lock().expect("stdout lines").push(line);
            }
        });
        Self {
            child,
            base,
            stdout: printed,
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    /// SIGKILL: no shutdown of any kind.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("kill");
        self.child.wait().await.expect("wait");
    }

    /// SIGTERM, then wait (at most `within`) for the exit status.
    pub async fn terminate(mut self, within: Duration) -> ExitStatus {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        kill(Pid::from_raw(self.pid()), Signal::SIGTERM).expect("SIGTERM");
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("exited in time")
            .expect("wait")
    }
}
