//! `orki-webhooksd serve`: the Orki Webhooks engine without a window.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use orki_engine::config::check_listen_addr;
use orki_engine::retry::{RetryPolicy, parse_schedule};
use orki_engine::{Config, Engine, Secret, Store, private_files, telemetry};
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
    let Command::Serve(args) = cli.command;
    match serve(args) {
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

fn config(args: &ServeArgs) -> anyhow::Result<Config> {
    if let Some(listen) = args.listen {
        check_listen_addr(listen)?;
    }
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => default_data_dir()?,
    };
    let mut config = Config::new(data_dir);
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
    let store = Store::open(&config.database_path())?;
    let listen = match args.listen {
        Some(addr) => addr,
        None => SocketAddr::from(([127, 0, 0, 1], store.load_settings()?.listen_port)),
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (is the port in use?)"))?;
    let cancel = CancellationToken::new();
    let engine = Engine::start(config, store, listener, cancel.clone()).await?;
    let addr = engine.local_addr();
    let handle = engine.handle();
    {
        // On stdout, for the person who started it; never in the log files.
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "Orki Webhooks {} listening on http://{addr}",
            orki_engine::VERSION
        )?;
        writeln!(
            out,
            "Admin UI:   http://{addr}/#token={}",
            handle.admin_token().expose()
        )?;
        writeln!(out, "Ingest key: {}", handle.ingest_key().expose())?;
        out.flush()?;
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    cancel.cancel();
    engine.wait().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
