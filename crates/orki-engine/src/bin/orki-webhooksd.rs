//! `orki-webhooksd serve`: the Orki Webhooks engine without a window;
//! `orki-webhooksd credentials`: what to open the admin UI and post events with.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use orki_engine::config::check_listen_addr;
use orki_engine::retry::{RetryPolicy, parse_schedule};
use orki_engine::{Config, Engine, Error, Secret, Store, private_files, telemetry};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// jemalloc instead of the system allocator: with ten webhooks 15–20 % less
/// CPU per event, less with one, and a smaller resident size under load
/// (docs/BENCHMARKS.md, item 12). Its settings are built in from
/// `.cargo/config.toml`.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "orki-webhooksd",
    version,
    about = "Orki Webhooks: signed, retried webhooks from a local listener"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine and the local HTTP listener until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// Print the admin UI link (with the admin token) and the ingest key of a
    /// data directory, running or not (`serve` prints them only to a terminal).
    Credentials(CredentialsArgs),
}

#[derive(Args)]
struct CredentialsArgs {
    /// Directory of the database [default: ~/.local/share/com.orki.webhooks]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    /// Directory of the database and the logs [default: ~/.local/share/com.orki.webhooks]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Loopback address of the listener [default: 127.0.0.1 and the port from the settings, 8787]
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Extra trusted CA certificates (PEM), on top of the system store. Repeatable.
    #[arg(long = "ca-file", value_name = "PEM")]
    ca_files: Vec<PathBuf>,
    /// Waits between retries of a failed delivery for this run, e.g. 10s,1m,5m,2h
    /// [default: the stored setting, first 5s,30s,2m,5m,30m,2h,5h,10h,10h,14h,20h]
    #[arg(long, value_name = "LIST")]
    retry_schedule: Option<String>,
    /// Allow plain http:// webhook URLs to loopback addresses (for development).
    #[arg(long)]
    allow_http_localhost: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Credentials(args) => credentials(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orki-webhooksd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("HOME is not set; pass --data-dir")?)
                .join(".local/share")
        }
    };
    Ok(base.join("com.orki.webhooks"))
}

fn env_secret(name: &str) -> Option<Secret> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret::new)
}

fn data_dir(given: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(d) => Ok(d.clone()),
        None => default_data_dir(),
    }
}

fn config(args: &ServeArgs) -> anyhow::Result<Config> {
    if let Some(listen) = args.listen {
        check_listen_addr(listen)?;
    }
    let mut config = Config::new(data_dir(args.data_dir.as_ref())?);
    config.ca_files = args.ca_files.clone();
    if let Some(schedule) = &args.retry_schedule {
        config.retry = Some(RetryPolicy {
            schedule: parse_schedule(schedule)?,
            ..RetryPolicy::default()
        });
    }
    config.allow_http_localhost = args.allow_http_localhost;
    config.ingest_key = env_secret("ORKI_INGEST_KEY");
    config.admin_token = env_secret("ORKI_ADMIN_TOKEN");
    config.validate()?;
    Ok(config)
}

/// The runtime: one async thread per core, and few blocking threads. The
/// engine's store calls run on threads of its own; what is left for this pool
/// is name resolution of webhook hosts and closing the writer at shutdown,
/// which need no more than a few.
fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
        .context("starting the async runtime")?
        .block_on(serve_on_runtime(args))
}

async fn serve_on_runtime(args: ServeArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
    // Only the owner may read the data: tightens what an older version left open.
    let tightened = private_files::secure(&[config.data_dir.clone(), config.log_dir()])?;
    let _log_guard = telemetry::init(&config.log_dir(), "orki-webhooksd")?;
    tightened.log();
    orki_engine::raise_open_file_limit();
    let store = Store::open(&config.database_path())?;
    let listen = match args.listen {
        Some(addr) => addr,
        None => SocketAddr::from(([127, 0, 0, 1], store.load_settings()?.listen_port)),
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (is the port in use?)"))?;
    let data_dir = config.data_dir.clone();
    let cancel = CancellationToken::new();
    let engine = Engine::start(config, store, listener, cancel.clone()).await?;
    let addr = engine.local_addr();
    let handle = engine.handle();
    let file = running_file(&data_dir);
    let mut shown = Shown {
        listen: addr,
        admin_token: handle.admin_token(),
        ingest_key: handle.ingest_key(),
    };
    // For `orki-webhooksd credentials` while this runs (the database is
    // locked). Not fatal: the engine runs already, and stops cleanly below.
    if let Err(e) = shown.save(&file) {
        tracing::warn!(error = %e, "cannot write the file `orki-webhooksd credentials` reads");
    }
    // Watched before the "listening" line: a service manager may stop it at once.
    let shutdown = shutdown_signal();
    {
        // On stdout, for the person who started it; never in the log files. Not
        // the secrets when stdout is not a terminal: a service manager would
        // keep them in its journal.
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "Orki Webhooks {} listening on http://{addr}",
            orki_engine::VERSION
        )?;
        if std::io::stdout().is_terminal() {
            shown.print(&mut out)?;
        } else {
            writeln!(
                out,
                "Admin UI link and ingest key: orki-webhooksd credentials --data-dir {} \
                 (not printed here: stdout is not a terminal)",
                data_dir.display()
            )?;
        }
        out.flush()?;
    }
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {
                // A key regenerated from the settings: keep the file current.
                let key = handle.ingest_key();
                if key != shown.ingest_key {
                    shown.ingest_key = key;
                    if let Err(e) = shown.save(&file) {
                        tracing::warn!(error = %e, "cannot update the credentials file");
                    }
                }
            }
        }
    }
    tracing::info!("shutting down");
    cancel.cancel();
    engine.wait().await;
    // Stopped, `credentials` reads the database itself.
    let _ = std::fs::remove_file(&file);
    Ok(())
}

/// What `serve` shows a person: where to open the admin UI, and the key to
/// post events with.
#[derive(serde::Serialize, serde::Deserialize)]
struct Shown {
    listen: SocketAddr,
    admin_token: Secret,
    ingest_key: Secret,
}

impl Shown {
    fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "Admin UI:   http://{}/#token={}",
            self.listen,
            self.admin_token.expose()
        )?;
        writeln!(out, "Ingest key: {}", self.ingest_key.expose())
    }

    /// Into the running daemon's file (`0600`, in the `0700` data directory).
    fn save(&self, file: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec(self)?;
        Ok(private_files::write_file(file, &json)?)
    }
}

/// Where a running `serve` keeps what `credentials` prints.
fn running_file(data_dir: &Path) -> PathBuf {
    data_dir.join("orki-webhooksd.credentials")
}

/// `orki-webhooksd credentials`: from the database when no instance runs on
/// the data directory, else from the file the running one keeps; the
/// environment's `ORKI_ADMIN_TOKEN` / `ORKI_INGEST_KEY` win, as for `serve`.
fn credentials(args: CredentialsArgs) -> anyhow::Result<()> {
    let data_dir = data_dir(args.data_dir.as_ref())?;
    let mut config = Config::new(&data_dir);
    config.ingest_key = env_secret("ORKI_INGEST_KEY");
    config.admin_token = env_secret("ORKI_ADMIN_TOKEN");
    config.validate()?;
    let db = config.database_path();
    if !db.exists() {
        anyhow::bail!(
            "there is no database in {} (has `orki-webhooksd serve --data-dir {}` run?)",
            data_dir.display(),
            data_dir.display()
        );
    }
    let mut shown = match Store::open(&db) {
        Ok(store) => {
            let stored = store.credentials()?;
            Shown {
                listen: SocketAddr::from(([127, 0, 0, 1], store.load_settings()?.listen_port)),
                admin_token: stored.admin_token,
                ingest_key: stored.ingest_key,
            }
        }
        Err(Error::AlreadyRunning(_)) => {
            let file = running_file(&data_dir);
            let text = std::fs::read_to_string(&file).with_context(|| {
                format!(
                    "orki-webhooksd is running on {}, but {} cannot be read",
                    data_dir.display(),
                    file.display()
                )
            })?;
            serde_json::from_str(&text).with_context(|| format!("{} is damaged", file.display()))?
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(key) = config.ingest_key {
        shown.ingest_key = key;
    }
    if let Some(token) = config.admin_token {
        shown.admin_token = token;
    }
    let mut out = std::io::stdout().lock();
    shown.print(&mut out)?;
    out.flush()?;
    Ok(())
}

fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    // Registered here, before the caller says it listens, not at the first
    // poll: a SIGTERM right after the "listening" line must stop it cleanly,
    // not kill it.
    #[cfg(unix)]
    let watched = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        )
    };
    async move {
        #[cfg(unix)]
        match watched {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
