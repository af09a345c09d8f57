//! The Orki Webhooks engine: everything the product does, without a window.
//!
//! Local tools post events to the HTTP listener; the engine stores each event
//! and one delivery job per subscribed webhook in a single redb transaction,
//! answers `202` only after that commit, then signs and delivers every job,
//! retrying failures on a backoff schedule that survives restarts. Every
//! attempt is recorded for the delivery log.
//!
//! # Layout
//! - [`config`]: the plain configuration struct built by the binaries, and its validation.
//! - [`engine`]: [`Engine::start`] wires store, listener and scheduler together;
//!   [`EngineHandle`] is the one API both the HTTP layer and the desktop shell call.
//! - [`listener`]: accepts connections and serves the router within limits (header
//!   deadline, idle timeout, header size, connection cap).
//! - [`api`]: the axum router: ingest (`POST /v1/events`) and the admin API, mapping
//!   errors to the JSON error shape in one place.
//! - [`query`]: parsing log queries and replays (shared by HTTP and the window).
//! - [`openapi`]: the OpenAPI document, generated from the handlers.
//! - [`store`] with [`tables`] and [`codec`]: the redb database: registry, events,
//!   deliveries, the due queue and the attempt log. Every business operation is one
//!   write transaction.
//! - [`commit`]: group commit, many writes in one transaction, made durable by
//!   [`wal`], the write-ahead log (or by a durable commit, at checkpoints); the other
//!   store calls run on a few threads of the engine's own (`store_threads`).
//! - [`model`]: records as stored and as shown; [`ids`]: typed, time-ordered ids.
//! - [`delivery`]: the scheduler that reads the due queue and runs attempts with bounded
//!   concurrency, overall and per webhook.
//! - [`outbound`]: the HTTP client (system roots plus extra CAs, no redirects), sending
//!   one signed request and classifying its failure.
//! - [`handshake`]: the ownership check run before a webhook is saved.
//! - [`retention`]: background pruning by age and by database size.
//! - [`signing`]: `X-Hub-Signature-256`. [`retry`]: the pure backoff policy.
//! - [`settings`]: run-time settings persisted in redb (`/v1/settings`).
//! - [`event_types`]: the catalogue of event types with their sample payloads.
//! - [`telemetry`]: tracing to stderr and daily rolling files.
//! - [`private_files`]: the data directory and its files readable by the owner only.
//! - [`ui`]: the admin UI's files, embedded, served at `/` in headless mode.
//! - [`error`]: the crate's error type.

pub mod config;
pub mod delivery;
pub mod engine;
pub mod error;
pub mod event_types;
pub mod handshake;
pub mod http;
pub mod ids;
pub mod listener;
pub mod model;
pub mod outbound;
pub mod private_files;
pub mod query;
pub mod queue;
pub mod retention;
pub mod retry;
pub mod secret;
pub mod settings;
pub mod signing;
pub mod store;
pub mod telemetry;

pub use config::Config;
pub use engine::{Engine, EngineEvent, EngineHandle};
pub use error::{Error, ErrorBody, Result};
pub use secret::Secret;
pub use store::Store;

/// The version sent in `User-Agent` and reported by `/v1/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
