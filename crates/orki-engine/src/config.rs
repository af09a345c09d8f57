//! The engine's configuration: a plain struct with defaults and [`Config::validate`].
//! Binaries read flags and the environment and build it; the engine reads nothing else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::retry::RetryPolicy;
use crate::{Error, Result, Secret};

/// Everything the engine needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the database and the logs live.
    pub data_dir: PathBuf,
    /// PEM files with extra CA certificates to trust on top of the system store.
    pub ca_files: Vec<PathBuf>,
    /// Overrides the stored retry schedule (and the jitter) for this run.
    pub retry: Option<RetryPolicy>,
    /// Forces the setting "allow plain HTTP to localhost" on for this run.
    pub allow_http_localhost: bool,
    /// Overrides the stored ingest key (`ORKI_INGEST_KEY`).
    pub ingest_key: Option<Secret>,
    /// Overrides the stored admin token (`ORKI_ADMIN_TOKEN`).
    pub admin_token: Option<Secret>,
    /// Largest accepted `POST /v1/events` body.
    pub max_event_bytes: usize,
    /// Overrides the stored warning threshold for this run.
    pub warning_threshold: Option<u32>,
    /// Time limit for one delivery attempt and for the handshake.
    pub request_timeout: Duration,
    /// Attempts in flight at once, over all webhooks.
    pub max_in_flight: usize,
    /// Attempts in flight at once to one webhook (twice that while it is the
    /// only webhook with deliveries waiting or in flight).
    pub max_in_flight_per_webhook: usize,
    /// Most due-queue entries kept in memory; past it the scheduler reads the
    /// earliest ones from the database again as it goes.
    pub queue_memory_limit: usize,
    /// Most connections open to the listener at once (fewer if the open-file
    /// limit is lower; see `listener`).
    pub max_connections: usize,
    /// How long a request's headers may take to arrive, and a kept-alive
    /// connection may sit idle, before it is closed.
    pub idle_timeout: Duration,
}

impl Config {
    /// The defaults of SPEC.md for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            ca_files: Vec::new(),
            retry: None,
            allow_http_localhost: false,
            ingest_key: None,
            admin_token: None,
            max_event_bytes: 1024 * 1024,
            warning_threshold: None,
            request_timeout: Duration::from_secs(5),
            max_in_flight: 64,
            max_in_flight_per_webhook: 16,
            queue_memory_limit: 10_000,
            max_connections: 512,
            idle_timeout: Duration::from_secs(20),
        }
    }

    /// The database file inside the data directory.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("orki-webhooks.redb")
    }

    /// The directory of the rolling log files.
    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    /// Checks every field; the error says which one is wrong and why.
    pub fn validate(&self) -> Result<()> {
        if let Some(retry) = &self.retry {
            retry.validate()?;
        }
        crate::outbound::load_ca_files(&self.ca_files)?;
        let bad = |m: String| Err(Error::Config(m));
        if !(1024..=64 * 1024 * 1024).contains(&self.max_event_bytes) {
            return bad(format!(
                "the event size limit must be between 1 KiB and 64 MiB, not {} bytes",
                self.max_event_bytes
            ));
        }
        if self.warning_threshold == Some(0) {
            return bad("the warning threshold must be at least 1".into());
        }
        if self.request_timeout.is_zero() || self.request_timeout > Duration::from_secs(60) {
            return bad("the request timeout must be between 1 ms and 60 s".into());
        }
        if self.max_in_flight == 0 || self.max_in_flight_per_webhook == 0 {
            return bad("concurrency limits must be at least 1".into());
        }
        if self.max_connections < 2 {
            return bad("the connection cap must be at least 2".into());
        }
        if self.idle_timeout < Duration::from_millis(100)
            || self.idle_timeout > Duration::from_secs(600)
        {
            return bad("the idle timeout must be between 100 ms and 10 minutes".into());
        }
        if self.queue_memory_limit == 0 {
            return bad("the in-memory queue limit must be at least 1".into());
        }
        for key in [&self.ingest_key, &self.admin_token].into_iter().flatten() {
            if key.expose().trim().len() < 8 {
                return bad(
                    "ORKI_INGEST_KEY and ORKI_ADMIN_TOKEN must be at least 8 characters".into(),
                );
            }
        }
        if let (Some(i), Some(a)) = (&self.ingest_key, &self.admin_token)
            && i == a
        {
            return bad(
                "the ingest key and the admin token must differ: each opens only its own door"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Checks that a listen address is a loopback address: the listener is for local tools only.
pub fn check_listen_addr(addr: SocketAddr) -> Result<()> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "the listener only binds loopback addresses (127.0.0.1, ::1), not {addr}"
        )))
    }
}
